//! The time column's order: cells read as numbers or dates, checked to increase strictly, or the
//! row order that sorts them.

use super::DataError;

/// The form of a time column's cells, set by its first cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    Number,
    Date,
}

/// `s` as a number of at most `max_len` ASCII digits (no sign).
fn digits(s: &str, max_len: usize) -> Option<u32> {
    (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d` (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// A date `YYYY-MM-DD` or `YYYY/MM/DD`, optionally followed (after a space or `T`) by
/// `HH:MM[:SS[.fff]]` and a zone (`Z`, `+HH:MM`, `-HHMM`), as seconds since 1970 (UTC).
fn parse_date(s: &str) -> Option<f64> {
    let (date, rest) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let sep = if date.contains('-') { '-' } else { '/' };
    let mut parts = date.split(sep);
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 {
        return None;
    }
    let (y, m, d) = (digits(y, 4)? as i64, digits(m, 2)? as i64, digits(d, 2)? as i64);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[m as usize - 1] {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) as f64 * 86_400.0;
    if rest.is_empty() {
        return Some(secs);
    }
    let (clock, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let mut hms = clock.split(':');
    let (h, mi) = (digits(hms.next()?, 2)?, digits(hms.next()?, 2)?);
    let sec: f64 = match hms.next() {
        Some(x) if x.bytes().all(|b| b.is_ascii_digit() || b == b'.') => x.parse().ok()?,
        Some(_) => return None,
        None => 0.0,
    };
    if hms.next().is_some() || h > 24 || (h == 24 && (mi, sec) != (0, 0.0)) || mi > 59 || !(0.0..61.0).contains(&sec) {
        return None;
    }
    secs += f64::from(h * 3600 + mi * 60) + sec;
    if !zone.is_empty() && !zone.eq_ignore_ascii_case("z") {
        let sign = if zone.starts_with('-') { 1.0 } else { -1.0 };
        let z = zone[1..].replace(':', "");
        let (zh, zm) = (
            digits(z.get(..2)?, 2)?,
            digits(z.get(2..).filter(|r| !r.is_empty()).unwrap_or("0"), 2)?,
        );
        secs += sign * f64::from(zh * 3600 + zm * 60);
    }
    Some(secs)
}

/// A time cell as a key that orders rows: a finite number, or a date in seconds.
fn time_key(cell: &str) -> Option<(TimeKind, f64)> {
    let c = cell.trim();
    if let Ok(v) = c.parse::<f64>() {
        return v.is_finite().then_some((TimeKind::Number, v));
    }
    parse_date(c).map(|v| (TimeKind::Date, v))
}

/// Checks that `times` increase strictly. A column whose first cell is neither a number nor a
/// date holds labels and is not checked (with a warning). With `sort`, returns the row order that sorts the
/// times (stable) and warns on stderr; duplicated times are an error either way.
pub(super) fn check_time_order(
    file: &str,
    column: &str,
    times: &[String],
    line: impl Fn(usize) -> u64,
    sort: bool,
) -> Result<Option<Vec<usize>>, DataError> {
    let Some((kind, _)) = times.first().and_then(|t| time_key(t)) else {
        if let Some(first) = times.first() {
            eprintln!(
                "warning: {file}: time column '{column}' starts with '{first}', neither a number nor a date \
                 such as 2016-07-01 00:00:00, so the rows' time order cannot be checked; make sure the file \
                 is sorted by time"
            );
        }
        return Ok(None);
    };
    let mut keys = Vec::with_capacity(times.len());
    for (i, t) in times.iter().enumerate() {
        match time_key(t) {
            Some((k, v)) if k == kind => keys.push(v),
            _ => {
                return Err(DataError::BadTime {
                    file: file.to_string(),
                    line: line(i),
                    column: column.into(),
                    value: t.as_str().into(),
                    date: kind == TimeKind::Date,
                    first: times[0].as_str().into(),
                });
            }
        }
    }
    let order_error = |i: usize, prev: usize| DataError::TimeOrder {
        file: file.to_string(),
        line: line(i),
        column: column.into(),
        value: times[i].as_str().into(),
        repeated: keys[i] == keys[prev],
        previous: times[prev].as_str().into(),
        previous_line: line(prev),
    };
    let Some(first_bad) = (1..keys.len()).find(|&i| keys[i] <= keys[i - 1]) else {
        return Ok(None);
    };
    if !sort {
        return Err(order_error(first_bad, first_bad - 1));
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
    if let Some(w) = order.windows(2).find(|w| keys[w[0]] == keys[w[1]]) {
        let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
        return Err(order_error(b, a));
    }
    eprintln!(
        "warning: {file}: the rows are not in time order (line {} is earlier than line {}); sorted them by \
         column '{column}' as asked (sort_time)",
        line(first_bad),
        line(first_bad - 1)
    );
    Ok(Some(order))
}
