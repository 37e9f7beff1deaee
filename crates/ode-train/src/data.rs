//! The data pipeline of the reference model (`reference-model.md`, "Data pipeline").
//!
//! A CSV file (or a generated [`Table`]) becomes a [`Dataset`]: the numeric columns are split
//! chronologically into train, validation and test rows with the Informer/Autoformer "custom"
//! split sizes, z-scored with the training split's mean and population standard deviation, and
//! cut into sliding windows (stride 1) inside each split. [`Split::fill_batch`] copies a batch of
//! windows into caller-owned buffers without allocating.
//!
//! ```
//! use ode_train::data::{DataConfig, Dataset, Table};
//! // 100 rows of two numeric columns.
//! let rows: Vec<f64> = (0..100).flat_map(|i| [i as f64, (i as f64 * 0.1).sin()]).collect();
//! let table = Table {
//!     columns: vec!["a".into(), "b".into()],
//!     data: rows,
//!     time: None,
//! };
//! let cfg = DataConfig { context_len: 4, horizon: 2, ..DataConfig::default() };
//! let ds = Dataset::from_table(&table, &cfg, "example").unwrap();
//! assert_eq!((ds.train.rows(), ds.val.rows(), ds.test.rows()), (70, 10, 20));
//! assert_eq!(ds.train.num_windows(), 70 - 4 - 2 + 1);
//! let (mut ctx, mut tgt) = (vec![0.0f32; 2 * 4 * 2], vec![0.0f32; 2 * 2 * 2]);
//! ds.train.fill_batch(&[0, 5], &mut ctx, &mut tgt);
//! ```

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;
use thiserror::Error;

/// Header names (compared case-insensitively) that mark the first column as the time column.
///
/// `t` is included so that a generated table (see [`crate::generate`]) written with
/// [`Table::write_csv`] reads back with the same features.
pub const TIME_HEADERS: [&str; 5] = ["date", "time", "timestamp", "datetime", "t"];

/// Cell contents (compared case-insensitively, after trimming) read as a missing value, like an
/// empty cell.
pub const MISSING_TOKENS: [&str; 6] = ["na", "n/a", "null", "none", "nil", "?"];

/// Everything reading data or building a [`Dataset`] can fail with.
///
/// Every variant names where the problem is. `line` fields count lines of the file as a text
/// editor does: the header is line 1, so the first data row is line 2.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("cannot {action} {file}: {source}; check the path and its permissions")]
    Io {
        /// The file.
        file: String,
        /// `"open"`, `"read"`, `"create"` or `"write"`.
        action: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV syntax is broken (e.g. invalid UTF-8).
    #[error("{file}, line {line}: malformed CSV: {message}; the file must be UTF-8 text, comma-separated")]
    Malformed {
        /// The file.
        file: String,
        /// Line where the problem was detected (0 when unknown).
        line: u64,
        /// The CSV parser's description.
        message: String,
    },
    /// The header row is unusable (an empty or duplicated column name).
    #[error("{file}, line 1 (header): {reason}")]
    BadHeader {
        /// The file.
        file: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An empty (or `NA`, `null`, ...) cell in a numeric column.
    #[error(
        "{file}, line {line}, column '{column}': missing value; every cell of a numeric column needs a \
         number: fill it (e.g. interpolate), drop the row, or leave the column out with `features`"
    )]
    MissingValue {
        /// The file.
        file: String,
        /// Line in the file (header = line 1).
        line: u64,
        /// Column name.
        column: String,
    },
    /// A cell of a numeric column that does not parse as a number.
    #[error(
        "{file}, line {line}, column '{column}': '{value}' is not a number; numeric columns need plain \
         numbers such as 1.5 or -2e-3: fix the cell, or if this is the time column name it as such"
    )]
    NonNumeric {
        /// The file.
        file: String,
        /// Line in the file (header = line 1).
        line: u64,
        /// Column name.
        column: String,
        /// The cell as written.
        value: String,
    },
    /// A NaN or infinite cell.
    #[error(
        "{file}, line {line}, column '{column}': value '{value}' is not finite (NaN or ±inf); replace it \
         with a real number (e.g. interpolate) or drop the row"
    )]
    NonFinite {
        /// The file (or the table's source name).
        file: String,
        /// Line in the file (header = line 1; for a table not read from a file, the line
        /// [`Table::write_csv`] would write the row on).
        line: u64,
        /// Column name.
        column: String,
        /// The value as written.
        value: String,
    },
    /// A row with more or fewer fields than the header.
    #[error(
        "{file}, line {line}: ragged row with {found} fields but the header has {expected} columns; every \
         row needs exactly one value per column: check for missing or extra commas and unbalanced quotes"
    )]
    Ragged {
        /// The file.
        file: String,
        /// Line in the file (header = line 1).
        line: u64,
        /// Number of header columns.
        expected: usize,
        /// Number of fields in the row.
        found: usize,
    },
    /// Two rows of the time column out of order (an earlier time after a later one) or with the
    /// same time.
    #[error(
        "{file}, line {line}, column '{column}': time '{value}' {} the time '{previous}' on line \
         {previous_line}; rows must be in strictly increasing time order: sort the file by time and remove \
         duplicated rows, or have the rows sorted when read (--sort-time, or sort_time = true in the \
         config file; duplicated times stay an error)",
        if *repeated { "repeats" } else { "is earlier than" }
    )]
    TimeOrder {
        /// The file.
        file: String,
        /// Line of the offending row (header = line 1).
        line: u64,
        /// The time column's name.
        column: Box<str>,
        /// The offending time, as written.
        value: Box<str>,
        /// Whether the time equals the earlier row's (else it is before it).
        repeated: bool,
        /// The time it is compared with, as written.
        previous: Box<str>,
        /// Line of that time.
        previous_line: u64,
    },
    /// A time cell that cannot be read like the column's first value.
    #[error(
        "{file}, line {line}, column '{column}': time '{value}' cannot be read as {} like the column's \
         first value '{first}'; every time must have the same form (numbers, or dates such as \
         2016-07-01 00:00:00) so that the rows' order can be checked: fix the cell or drop the row",
        if *date { "a date" } else { "a number" }
    )]
    BadTime {
        /// The file.
        file: String,
        /// Line of the offending row (header = line 1).
        line: u64,
        /// The time column's name.
        column: Box<str>,
        /// The cell as written.
        value: Box<str>,
        /// Whether the column's first value is a date (else a number).
        date: bool,
        /// The column's first value.
        first: Box<str>,
    },
    /// A column named in the configuration does not exist.
    #[error(
        "{file}: unknown column '{name}' in {role}; the available columns are: {}; check the spelling \
         (names are case-sensitive)",
        available.join(", ")
    )]
    UnknownColumn {
        /// The file (or the table's source name).
        file: String,
        /// The name that was asked for.
        name: String,
        /// Where it was named: `"time_column"`, `"features"` or `"targets"`.
        role: &'static str,
        /// The names it could have been.
        available: Vec<String>,
    },
    /// A split has fewer rows than one window needs.
    #[error(
        "{file}: the {split} split has {rows} rows but one window needs context_len + horizon = {needed} \
         rows; use a longer series, a smaller context_len or horizon, or change train_frac/test_frac"
    )]
    TooFewRows {
        /// The file (or the table's source name).
        file: String,
        /// Number of rows in the split.
        rows: usize,
        /// Rows one window needs.
        needed: usize,
        /// `"train"`, `"val"` or `"test"`.
        split: &'static str,
    },
    /// The file has no data rows.
    #[error("{file} has no data rows (the file is empty or has only a header); a CSV needs a header row and data rows")]
    EmptyFile {
        /// The file.
        file: String,
    },
    /// No numeric column is left to use as a feature.
    #[error(
        "{file} has no numeric feature columns besides the time column; add numeric columns, or check \
         that the file is comma-separated"
    )]
    NoFeatures {
        /// The file (or the table's source name).
        file: String,
    },
    /// A configuration value is out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidConfig {
        /// The setting.
        name: String,
        /// Its value, as written.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// A [`Table`] built in code whose parts do not fit together.
    #[error("{file}: inconsistent table: {reason}")]
    InvalidTable {
        /// The table's source name.
        file: String,
        /// What does not fit.
        reason: String,
    },
    /// [`crate::generate::generate`] was asked for a dataset it does not know.
    #[error("unknown built-in dataset '{name}'; the built-in datasets are: {}; or give a CSV file", available.join(", "))]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// The built-in names.
        available: Vec<String>,
    },
    /// Integrating a built-in dataset failed.
    #[error("generating the built-in dataset '{name}' failed: {source}")]
    Generate {
        /// The dataset.
        name: String,
        /// The solver's error.
        source: ode_core::OdeError,
    },
}

/// A numeric table: named columns of `f64` and an optional time column of labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Names of the numeric columns, in file order (the time column excluded).
    pub columns: Vec<String>,
    /// Values, row-major: `rows × columns.len()`.
    pub data: Vec<f64>,
    /// The time column's name and its cells as written, one per row; not a feature.
    pub time: Option<(String, Vec<String>)>,
}

enum Cell {
    Value(f64),
    Missing,
    NonFinite,
    NonNumeric,
}

fn parse_cell(cell: &str) -> Cell {
    let c = cell.trim();
    if c.is_empty() || MISSING_TOKENS.iter().any(|m| c.eq_ignore_ascii_case(m)) {
        return Cell::Missing;
    }
    match c.parse::<f64>() {
        Ok(v) if v.is_finite() => Cell::Value(v),
        Ok(_) => Cell::NonFinite,
        Err(_) => Cell::NonNumeric,
    }
}

fn csv_error(file: &str, action: &'static str, e: csv::Error) -> DataError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Io {
            file: file.to_string(),
            action,
            source,
        },
        _ => DataError::Malformed {
            file: file.to_string(),
            line,
            message,
        },
    }
}

/// The line (1-based, as an editor counts them) on which the record at `pos` starts.
///
/// The csv crate's own line counter miscounts CRLF endings and skipped blank lines, so the line
/// is counted here from the byte offset: the reader reports the offset just after the previous
/// record's first terminator byte, so line breaks there are skipped first.
fn line_at(bytes: &[u8], pos: Option<&csv::Position>) -> u64 {
    pos.map_or(0, |p| line_of_byte(bytes, p.byte()))
}

/// The line (1-based) of the record that starts at byte offset `byte` (see [`line_at`]).
fn line_of_byte(bytes: &[u8], byte: u64) -> u64 {
    let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(bytes.len());
    while start < bytes.len() && matches!(bytes[start], b'\n' | b'\r') {
        start += 1;
    }
    let head = &bytes[..start];
    let breaks = head
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && head.get(i + 1) != Some(&b'\n')))
        .count();
    1 + breaks as u64
}

/// How [`Table::read_csv_with`] reads a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The time column's name; `None` to detect it (see [`Table::read_csv`]).
    pub time_column: Option<String>,
    /// Sort the rows by time (with a warning) instead of refusing a file whose times are out of
    /// order. Duplicated times are an error either way.
    pub sort_time: bool,
}

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
fn check_time_order(
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

/// Refuses a header with an empty or a repeated column name.
fn check_header(file: &str, header: &[String]) -> Result<(), DataError> {
    let mut seen = HashSet::new();
    for (j, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(DataError::BadHeader {
                file: file.to_string(),
                reason: format!(
                    "column {} has an empty name; give every column a name in the header row",
                    j + 1
                ),
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(DataError::BadHeader {
                file: file.to_string(),
                reason: format!("column name '{name}' appears more than once; rename one of them"),
            });
        }
    }
    Ok(())
}

impl Table {
    /// Reads a comma-separated file with a header row.
    ///
    /// The time column is `time_column` if given (an unknown name is an error), else the first
    /// column if its header is one of [`TIME_HEADERS`] (case-insensitive) or its first data cell
    /// is not a number. Every other column must hold a finite number in every row; cells are
    /// trimmed, quotes are honoured and blank lines are skipped. A time column of numbers or
    /// dates must increase strictly (see [`read_csv_with`](Self::read_csv_with) to sort it
    /// instead). Errors name the file, the line and the column.
    pub fn read_csv(path: impl AsRef<Path>, time_column: Option<&str>) -> Result<Table, DataError> {
        let options = ReadOptions {
            time_column: time_column.map(str::to_string),
            sort_time: false,
        };
        Self::read_csv_with(path, &options)
    }

    /// [`read_csv`](Self::read_csv) with options: with `sort_time`, rows whose times are out of
    /// order are sorted by time (stable) with a warning on stderr instead of refused.
    ///
    /// Time cells are compared as numbers when the column's first cell is a number, as dates
    /// (`YYYY-MM-DD` or `YYYY/MM/DD`, an optional `HH:MM[:SS[.fff]]` and zone) when it is a
    /// date, and not at all otherwise (labels). A later cell of another form is an error.
    pub fn read_csv_with(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Table, DataError> {
        let time_column = options.time_column.as_deref();
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            file: file.clone(),
            action: "read",
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(&bytes[..]);
        let mut record = csv::StringRecord::new();
        let read = |reader: &mut csv::Reader<&[u8]>, record: &mut csv::StringRecord| {
            reader.read_record(record).map_err(|e| {
                let line = line_at(&bytes, e.position());
                match csv_error(&file, "read", e) {
                    DataError::Malformed { file, message, .. } => DataError::Malformed { file, line, message },
                    other => other,
                }
            })
        };

        if !read(&mut reader, &mut record)? {
            return Err(DataError::EmptyFile { file });
        }
        let mut header: Vec<String> = record.iter().map(|s| s.trim().to_string()).collect();
        if let Some(first) = header.first_mut() {
            *first = first.trim_start_matches('\u{feff}').trim().to_string();
        }
        check_header(&file, &header)?;
        let named_time = match time_column {
            Some(name) => Some(
                header
                    .iter()
                    .position(|h| h == name)
                    .ok_or_else(|| DataError::UnknownColumn {
                        file: file.clone(),
                        name: name.to_string(),
                        role: "time_column",
                        available: header.clone(),
                    })?,
            ),
            None => None,
        };

        if !read(&mut reader, &mut record)? {
            return Err(DataError::EmptyFile { file });
        }
        let time_idx = named_time.or_else(|| {
            let by_name = TIME_HEADERS.iter().any(|t| header[0].eq_ignore_ascii_case(t));
            let by_value = matches!(record.get(0).map(parse_cell), Some(Cell::NonNumeric));
            (by_name || by_value).then_some(0)
        });
        if header.len() - usize::from(time_idx.is_some()) == 0 {
            return Err(DataError::NoFeatures { file });
        }

        let columns: Vec<String> = (0..header.len())
            .filter(|&j| Some(j) != time_idx)
            .map(|j| header[j].clone())
            .collect();
        let mut data = Vec::new();
        let mut times = Vec::new();
        let mut starts = Vec::new();
        loop {
            // Counted only on error: counting from the file's start is linear in its size.
            let line = || line_at(&bytes, record.position());
            if record.len() != header.len() {
                return Err(DataError::Ragged {
                    file,
                    line: line(),
                    expected: header.len(),
                    found: record.len(),
                });
            }
            for (j, cell) in record.iter().enumerate() {
                if Some(j) == time_idx {
                    times.push(cell.to_string());
                    starts.push(record.position().map_or(0, csv::Position::byte));
                    continue;
                }
                let column = || header[j].clone();
                match parse_cell(cell) {
                    Cell::Value(v) => data.push(v),
                    Cell::Missing => {
                        return Err(DataError::MissingValue {
                            file,
                            line: line(),
                            column: column(),
                        });
                    }
                    Cell::NonFinite => {
                        return Err(DataError::NonFinite {
                            file,
                            line: line(),
                            column: column(),
                            value: cell.to_string(),
                        });
                    }
                    Cell::NonNumeric => {
                        return Err(DataError::NonNumeric {
                            file,
                            line: line(),
                            column: column(),
                            value: cell.to_string(),
                        });
                    }
                }
            }
            if !read(&mut reader, &mut record)? {
                break;
            }
        }
        if let Some(j) = time_idx {
            let line = |i: usize| line_of_byte(&bytes, starts[i]);
            if let Some(order) = check_time_order(&file, &header[j], &times, line, options.sort_time)? {
                let w = columns.len();
                data = order.iter().flat_map(|&r| data[r * w..(r + 1) * w].to_vec()).collect();
                times = order.iter().map(|&r| times[r].clone()).collect();
            }
        }
        Ok(Table {
            columns,
            data,
            time: time_idx.map(|j| (header[j].clone(), times)),
        })
    }

    /// Writes the table as CSV: the time column first (if any), then the numeric columns.
    /// Numbers are written in Rust's shortest round-trip form, so [`read_csv`](Self::read_csv)
    /// reads back exactly the same values.
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<(), DataError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        self.validate(&file)?;
        let mut w = csv::Writer::from_path(path).map_err(|e| csv_error(&file, "create", e))?;
        let werr = |e: csv::Error| csv_error(&file, "write", e);
        let mut header: Vec<&str> = Vec::with_capacity(self.columns.len() + 1);
        if let Some((name, _)) = &self.time {
            header.push(name);
        }
        header.extend(self.columns.iter().map(String::as_str));
        w.write_record(&header).map_err(werr)?;
        let cols = self.columns.len();
        let mut fields: Vec<String> = Vec::with_capacity(cols + 1);
        for r in 0..self.num_rows() {
            fields.clear();
            if let Some((_, t)) = &self.time {
                fields.push(t[r].clone());
            }
            fields.extend(self.data[r * cols..(r + 1) * cols].iter().map(|v| v.to_string()));
            w.write_record(&fields).map_err(werr)?;
        }
        w.flush().map_err(|source| DataError::Io {
            file: file.clone(),
            action: "write",
            source,
        })
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        match (self.columns.len(), &self.time) {
            (0, Some((_, t))) => t.len(),
            (0, None) => 0,
            (c, _) => self.data.len() / c,
        }
    }

    /// Number of numeric columns.
    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }

    /// Index of the numeric column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The values of numeric column `j`, top to bottom.
    pub fn column(&self, j: usize) -> Vec<f64> {
        let c = self.columns.len();
        self.data.iter().skip(j).step_by(c).copied().collect()
    }

    /// The value at `row`, numeric column `col`.
    pub fn get(&self, row: usize, col: usize) -> f64 {
        self.data[row * self.columns.len() + col]
    }

    /// Checks that the parts fit together (data length, time column length, distinct names)
    /// and that every value is finite; `source` names the table in errors.
    pub fn validate(&self, source: &str) -> Result<(), DataError> {
        let invalid = |reason: String| DataError::InvalidTable {
            file: source.to_string(),
            reason,
        };
        let cols = self.columns.len();
        if cols == 0 {
            return Err(DataError::NoFeatures {
                file: source.to_string(),
            });
        }
        if self.data.len() % cols != 0 {
            return Err(invalid(format!(
                "data has {} values, not a multiple of the {cols} columns",
                self.data.len()
            )));
        }
        let rows = self.data.len() / cols;
        if let Some((name, t)) = &self.time {
            if t.len() != rows {
                return Err(invalid(format!(
                    "time column '{name}' has {} entries but the data has {rows} rows",
                    t.len()
                )));
            }
        }
        let mut seen = HashSet::new();
        for name in &self.columns {
            if !seen.insert(name.as_str()) {
                return Err(invalid(format!("column name '{name}' appears more than once")));
            }
        }
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(DataError::NonFinite {
                file: source.to_string(),
                line: (i / cols + 2) as u64,
                column: self.columns[i % cols].clone(),
                value: self.data[i].to_string(),
            });
        }
        Ok(())
    }
}

/// How a [`Dataset`] is cut from a table. Serialisable, so it can sit in a TOML run
/// configuration and in the checkpoint metadata; missing keys take the defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataConfig {
    /// Rows of context the encoder sees, `C` (default 24).
    pub context_len: usize,
    /// Rows forecast, `H` (default 12).
    pub horizon: usize,
    /// Feature columns in this order; `None` for every numeric column in file order.
    pub features: Option<Vec<String>>,
    /// Target columns in this order; `None` for the features. Any numeric column may be a target.
    pub targets: Option<Vec<String>>,
    /// Fraction of rows in the training split, `n_train = floor(train_frac · n)` (default 0.7).
    pub train_frac: f64,
    /// Fraction of rows in the test split, `n_test = floor(test_frac · n)` (default 0.2); the
    /// validation split gets the rest.
    pub test_frac: f64,
    /// Use only the first this many training windows (in time order).
    pub max_train_windows: Option<usize>,
    /// Use only the first this many validation windows (in time order).
    pub max_val_windows: Option<usize>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            context_len: 24,
            horizon: 12,
            features: None,
            targets: None,
            train_frac: 0.7,
            test_frac: 0.2,
            max_train_windows: None,
            max_val_windows: None,
        }
    }
}

/// Row counts of the three chronological splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSizes {
    /// `floor(train_frac · n)`, the first rows.
    pub train: usize,
    /// `n - train - test`, the rows after the training rows.
    pub val: usize,
    /// `floor(test_frac · n)`, the last rows.
    pub test: usize,
}

impl DataConfig {
    /// Checks every setting: `context_len` and `horizon` at least 1, both fractions in (0, 1)
    /// with a sum below 1, caps at least 1, and column lists non-empty without repeats.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |name: &str, value: String, reason: &str| DataError::InvalidConfig {
            name: name.to_string(),
            value,
            reason: reason.to_string(),
        };
        if self.context_len == 0 {
            return Err(bad("context_len", "0".into(), "it must be at least 1 row"));
        }
        if self.horizon == 0 {
            return Err(bad("horizon", "0".into(), "it must be at least 1 row"));
        }
        for (name, v) in [("train_frac", self.train_frac), ("test_frac", self.test_frac)] {
            if !(v > 0.0 && v < 1.0) {
                return Err(bad(
                    name,
                    v.to_string(),
                    "it must be a fraction strictly between 0 and 1",
                ));
            }
        }
        let sum = self.train_frac + self.test_frac;
        if sum >= 1.0 {
            return Err(bad(
                "train_frac + test_frac",
                sum.to_string(),
                "the sum must be below 1 so that the validation split gets rows (e.g. 0.7 and 0.2)",
            ));
        }
        for (name, cap) in [
            ("max_train_windows", self.max_train_windows),
            ("max_val_windows", self.max_val_windows),
        ] {
            if cap == Some(0) {
                return Err(bad(
                    name,
                    "0".into(),
                    "a cap must be at least 1; leave it out for no cap",
                ));
            }
        }
        for (name, list) in [("features", &self.features), ("targets", &self.targets)] {
            if let Some(list) = list {
                if list.is_empty() {
                    return Err(bad(
                        name,
                        "[]".into(),
                        "name at least one column, or leave it out for the default",
                    ));
                }
                let mut seen = HashSet::new();
                for c in list {
                    if !seen.insert(c.as_str()) {
                        return Err(bad(name, format!("{list:?}"), &format!("column '{c}' is named twice")));
                    }
                }
            }
        }
        Ok(())
    }

    /// The split sizes for `n` rows: `train = floor(train_frac · n)`, `test = floor(test_frac · n)`,
    /// `val = n - train - test` (the Informer/Autoformer "custom" loader's sizes).
    pub fn split_sizes(&self, n: usize) -> SplitSizes {
        let train = (self.train_frac * n as f64).floor() as usize;
        let test = (self.test_frac * n as f64).floor() as usize;
        SplitSizes {
            train,
            val: n - train - test,
            test,
        }
    }
}

/// Per-column z-score statistics: `normalised = (x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Mean of each column, data units.
    pub mean: Vec<f64>,
    /// Population standard deviation (ddof = 0) of each column, data units; 1 for a constant column.
    pub std: Vec<f64>,
}

impl Scaler {
    /// Fits the statistics of row-major `data` (`rows × names.len()`), printing a warning to
    /// stderr that names each constant column (its std is set to 1).
    ///
    /// # Panics
    /// If `data.len()` is not a multiple of `names.len()`.
    pub fn fit(data: &[f64], names: &[String]) -> Scaler {
        let (scaler, constant) = Self::fit_quiet(data, names.len());
        for j in constant {
            eprintln!(
                "{}",
                constant_column_warning(&names[j], scaler.mean[j], data.len() / names.len(), None)
            );
        }
        scaler
    }

    /// Fits the statistics of row-major `data` (`rows × dim`) without printing; returns the
    /// indices of the constant columns (whose std is set to 1) as well.
    ///
    /// A column is constant when all its values are equal (then its mean is that value exactly).
    /// Otherwise the mean is `Σx / rows` and the std `sqrt(Σ(x - mean)² / rows)`.
    ///
    /// # Panics
    /// If `dim` is 0 or `data.len()` is not a multiple of `dim`.
    pub fn fit_quiet(data: &[f64], dim: usize) -> (Scaler, Vec<usize>) {
        assert!(
            dim > 0 && data.len() % dim == 0,
            "Scaler: {} values do not fill rows of {dim}",
            data.len()
        );
        let rows = data.len() / dim;
        let mut mean = vec![0.0; dim];
        let mut std = vec![1.0; dim];
        let mut constant = Vec::new();
        for j in 0..dim {
            let col = || data.iter().skip(j).step_by(dim);
            let first = data.get(j).copied().unwrap_or(0.0);
            if col().all(|&v| v == first) {
                mean[j] = first;
                constant.push(j);
                continue;
            }
            let m = col().sum::<f64>() / rows as f64;
            let var = col().map(|&v| (v - m) * (v - m)).sum::<f64>() / rows as f64;
            mean[j] = m;
            std[j] = var.sqrt();
            if std[j] == 0.0 {
                std[j] = 1.0;
                constant.push(j);
            }
        }
        (Scaler { mean, std }, constant)
    }

    /// Number of columns.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// `(value - mean[index]) / std[index]`.
    pub fn normalize(&self, index: usize, value: f64) -> f64 {
        (value - self.mean[index]) / self.std[index]
    }

    /// `value · std[index] + mean[index]`, back to data units.
    pub fn denormalize(&self, index: usize, value: f64) -> f64 {
        value * self.std[index] + self.mean[index]
    }

    /// Normalises row-major rows of [`dim`](Self::dim) values in place.
    ///
    /// # Panics
    /// If `values.len()` is not a multiple of the dimension.
    pub fn normalize_rows(&self, values: &mut [f64]) {
        let d = self.dim();
        assert!(
            d > 0 && values.len() % d == 0,
            "Scaler: {} values do not fill rows of {d}",
            values.len()
        );
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.normalize(i % d, *v);
        }
    }

    /// Maps row-major rows of [`dim`](Self::dim) normalised values (e.g. a forecast, time-major)
    /// back to data units in place, computing in `f64`.
    ///
    /// # Panics
    /// If `values.len()` is not a multiple of the dimension.
    pub fn denormalize_rows(&self, values: &mut [f32]) {
        let d = self.dim();
        assert!(
            d > 0 && values.len() % d == 0,
            "Scaler: {} values do not fill rows of {d}",
            values.len()
        );
        for (i, v) in values.iter_mut().enumerate() {
            *v = self.denormalize(i % d, f64::from(*v)) as f32;
        }
    }
}

fn constant_column_warning(name: &str, value: f64, rows: usize, source: Option<&str>) -> String {
    let of = source.map(|s| format!(" of {s}")).unwrap_or_default();
    format!(
        "warning: column '{name}' is constant ({value}) over the {rows} training rows{of}: its std is 0, so it \
         is scaled with std = 1; it gives the model no information, consider leaving it out with `features`"
    )
}

/// One chronological split (train, val or test): its normalised rows and its windows.
///
/// Window `i` uses the split's rows `[i, i + C)` as context and `[i + C, i + C + H)` as targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    name: &'static str,
    start_row: usize,
    rows: usize,
    features: Vec<f32>,
    targets: Vec<f32>,
    input_dim: usize,
    output_dim: usize,
    context_len: usize,
    horizon: usize,
    num_windows: usize,
}

impl Split {
    /// `"train"`, `"val"` or `"test"`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Table row of the split's first row.
    pub fn start_row(&self) -> usize {
        self.start_row
    }

    /// Number of rows in the split.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of windows used: `rows - C - H + 1` (0 if negative), capped by the configuration.
    pub fn num_windows(&self) -> usize {
        self.num_windows
    }

    /// Number of windows the split's rows allow, before any cap: `max(rows - C - H + 1, 0)`.
    pub fn available_windows(&self) -> usize {
        (self.rows + 1).saturating_sub(self.context_len + self.horizon)
    }

    /// Normalised feature rows, row-major `rows × input_dim`.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Normalised target rows, row-major `rows × output_dim`.
    pub fn targets(&self) -> &[f32] {
        &self.targets
    }

    /// Number of features `D`.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// Number of targets `O`.
    pub fn output_dim(&self) -> usize {
        self.output_dim
    }

    /// Context length `C`.
    pub fn context_len(&self) -> usize {
        self.context_len
    }

    /// Horizon `H`.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Table row of window `i`'s first target row (the first forecast row).
    pub fn target_start_row(&self, i: usize) -> usize {
        self.start_row + i + self.context_len
    }

    /// Copies the windows `window_indices` (a batch of `B`) into `ctx` (`B × C·D`: each window's
    /// context rows flattened time-major, row 0's `D` features first) and `tgt` (`B × H·O`, the
    /// same layout). Allocates nothing.
    ///
    /// # Panics
    /// If a buffer's length is not exactly `B·C·D` (`B·H·O`) or an index is not below
    /// [`num_windows`](Self::num_windows).
    pub fn fill_batch(&self, window_indices: &[usize], ctx: &mut [f32], tgt: &mut [f32]) {
        let (c, h, d, o) = (self.context_len, self.horizon, self.input_dim, self.output_dim);
        let b = window_indices.len();
        assert_eq!(
            ctx.len(),
            b * c * d,
            "fill_batch: ctx must hold B·C·D = {b}·{c}·{d} values"
        );
        assert_eq!(
            tgt.len(),
            b * h * o,
            "fill_batch: tgt must hold B·H·O = {b}·{h}·{o} values"
        );
        for (k, &i) in window_indices.iter().enumerate() {
            assert!(
                i < self.num_windows,
                "fill_batch: window {i} out of range: the {} split has {} windows",
                self.name,
                self.num_windows
            );
            ctx[k * c * d..(k + 1) * c * d].copy_from_slice(&self.features[i * d..(i + c) * d]);
            tgt[k * h * o..(k + 1) * h * o].copy_from_slice(&self.targets[(i + c) * o..(i + c + h) * o]);
        }
    }
}

/// A table cut into normalised train/val/test splits of windows, ready for training.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where the data came from (a path or a generator name), as used in errors.
    pub source: String,
    /// Name of the time column, if the table has one.
    pub time_column: Option<String>,
    /// Feature column names, in model input order.
    pub features: Vec<String>,
    /// Target column names, in model output order.
    pub targets: Vec<String>,
    /// Statistics of the features over the training split.
    pub feature_scaler: Scaler,
    /// Statistics of the targets over the training split (each target with its own column's).
    pub target_scaler: Scaler,
    /// Context length `C`.
    pub context_len: usize,
    /// Horizon `H`.
    pub horizon: usize,
    /// Training split: the first `floor(train_frac · n)` rows.
    pub train: Split,
    /// Validation split: the rows after the training rows.
    pub val: Split,
    /// Test split: the last `floor(test_frac · n)` rows.
    pub test: Split,
    /// The configuration the dataset was built with.
    pub config: DataConfig,
    /// Warnings raised while building (already printed to stderr), e.g. constant columns.
    pub warnings: Vec<String>,
}

fn resolve(
    table: &Table,
    names: Option<&Vec<String>>,
    default: &[usize],
    role: &'static str,
    source: &str,
) -> Result<Vec<usize>, DataError> {
    let Some(names) = names else {
        return Ok(default.to_vec());
    };
    names
        .iter()
        .map(|n| {
            table.column_index(n).ok_or_else(|| DataError::UnknownColumn {
                file: source.to_string(),
                name: n.clone(),
                role,
                available: table.columns.clone(),
            })
        })
        .collect()
}

fn gather(table: &Table, rows: std::ops::Range<usize>, cols: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for r in rows {
        out.extend(cols.iter().map(|&j| table.get(r, j)));
    }
    out
}

fn normalized(table: &Table, rows: std::ops::Range<usize>, cols: &[usize], scaler: &Scaler) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for r in rows {
        out.extend(
            cols.iter()
                .enumerate()
                .map(|(k, &j)| scaler.normalize(k, table.get(r, j)) as f32),
        );
    }
    out
}

impl Dataset {
    /// Reads `path` with [`Table::read_csv`] and builds the dataset with [`from_table`](Self::from_table).
    pub fn from_csv(
        path: impl AsRef<Path>,
        time_column: Option<&str>,
        config: &DataConfig,
    ) -> Result<Dataset, DataError> {
        let path = path.as_ref();
        let table = Table::read_csv(path, time_column)?;
        Dataset::from_table(&table, config, &path.display().to_string())
    }

    /// Builds the splits, scalers and windows from `table` as the contract fixes them;
    /// `source_name` names the data in errors and warnings.
    ///
    /// Errors: an invalid configuration, an unknown feature or target name (listing the
    /// available columns), or a train or val split shorter than one window (`C + H` rows). A
    /// test split too short for a window is allowed and has no windows.
    pub fn from_table(table: &Table, config: &DataConfig, source_name: &str) -> Result<Dataset, DataError> {
        Self::build(table, config, source_name, None)
    }

    /// Like [`from_table`](Self::from_table), but normalises with given statistics (a
    /// checkpoint's) instead of fitting them on this table's training split.
    pub fn from_table_with_scalers(
        table: &Table,
        config: &DataConfig,
        source_name: &str,
        feature_scaler: Scaler,
        target_scaler: Scaler,
    ) -> Result<Dataset, DataError> {
        Self::build(table, config, source_name, Some((feature_scaler, target_scaler)))
    }

    /// Every window of the whole table (all rows as one split, stride 1), normalised with the
    /// given statistics: what `ode predict` forecasts.
    pub fn whole_table(
        table: &Table,
        config: &DataConfig,
        source_name: &str,
        feature_scaler: &Scaler,
        target_scaler: &Scaler,
    ) -> Result<Split, DataError> {
        table.validate(source_name)?;
        let all: Vec<usize> = (0..table.num_columns()).collect();
        let feat = resolve(table, config.features.as_ref(), &all, "features", source_name)?;
        let targ = resolve(table, config.targets.as_ref(), &feat, "targets", source_name)?;
        let (c, h, n) = (config.context_len, config.horizon, table.num_rows());
        if n < c + h {
            return Err(DataError::TooFewRows {
                file: source_name.to_string(),
                rows: n,
                needed: c + h,
                split: "whole file",
            });
        }
        if feature_scaler.dim() != feat.len() || target_scaler.dim() != targ.len() {
            return Err(DataError::InvalidConfig {
                name: "features".into(),
                value: format!("{} features, {} targets", feat.len(), targ.len()),
                reason: format!(
                    "the statistics cover {} features and {} targets; use the columns the model was trained on",
                    feature_scaler.dim(),
                    target_scaler.dim()
                ),
            });
        }
        Ok(Split {
            name: "all",
            start_row: 0,
            rows: n,
            features: normalized(table, 0..n, &feat, feature_scaler),
            targets: normalized(table, 0..n, &targ, target_scaler),
            input_dim: feat.len(),
            output_dim: targ.len(),
            context_len: c,
            horizon: h,
            num_windows: n + 1 - c - h,
        })
    }

    fn build(
        table: &Table,
        config: &DataConfig,
        source_name: &str,
        fixed: Option<(Scaler, Scaler)>,
    ) -> Result<Dataset, DataError> {
        config.validate()?;
        table.validate(source_name)?;
        let all: Vec<usize> = (0..table.num_columns()).collect();
        let feat = resolve(table, config.features.as_ref(), &all, "features", source_name)?;
        let targ = resolve(table, config.targets.as_ref(), &feat, "targets", source_name)?;
        let (c, h) = (config.context_len, config.horizon);
        let n = table.num_rows();
        let sizes = config.split_sizes(n);
        for (split, rows) in [("train", sizes.train), ("val", sizes.val)] {
            if rows < c + h {
                return Err(DataError::TooFewRows {
                    file: source_name.to_string(),
                    rows,
                    needed: c + h,
                    split,
                });
            }
        }

        let names = |idx: &[usize]| idx.iter().map(|&j| table.columns[j].clone()).collect::<Vec<_>>();
        let (features, targets) = (names(&feat), names(&targ));
        let ((feature_scaler, const_f), (target_scaler, const_t)) = match fixed {
            Some((f, t)) => ((f, Vec::new()), (t, Vec::new())),
            None => (
                Scaler::fit_quiet(&gather(table, 0..sizes.train, &feat), feat.len()),
                Scaler::fit_quiet(&gather(table, 0..sizes.train, &targ), targ.len()),
            ),
        };
        let mut warnings: Vec<String> = Vec::new();
        let warn_list = const_f
            .iter()
            .map(|&k| (&features[k], feature_scaler.mean[k]))
            .chain(const_t.iter().map(|&k| (&targets[k], target_scaler.mean[k])));
        for (name, value) in warn_list {
            let w = constant_column_warning(name, value, sizes.train, Some(source_name));
            if !warnings.contains(&w) {
                eprintln!("{w}");
                warnings.push(w);
            }
        }

        let make = |name: &'static str, start: usize, rows: usize, cap: Option<usize>| {
            let range = start..start + rows;
            let available = (rows + 1).saturating_sub(c + h);
            Split {
                name,
                start_row: start,
                rows,
                features: normalized(table, range.clone(), &feat, &feature_scaler),
                targets: normalized(table, range, &targ, &target_scaler),
                input_dim: feat.len(),
                output_dim: targ.len(),
                context_len: c,
                horizon: h,
                num_windows: cap.map_or(available, |m| m.min(available)),
            }
        };
        let train = make("train", 0, sizes.train, config.max_train_windows);
        let val = make("val", sizes.train, sizes.val, config.max_val_windows);
        let test = make("test", sizes.train + sizes.val, sizes.test, None);
        Ok(Dataset {
            source: source_name.to_string(),
            time_column: table.time.as_ref().map(|(name, _)| name.clone()),
            features,
            targets,
            feature_scaler,
            target_scaler,
            context_len: c,
            horizon: h,
            train,
            val,
            test,
            config: config.clone(),
            warnings,
        })
    }

    /// Number of features `D` (the model's `input_dim`).
    pub fn input_dim(&self) -> usize {
        self.features.len()
    }

    /// Number of targets `O` (the model's `output_dim`).
    pub fn output_dim(&self) -> usize {
        self.targets.len()
    }

    /// Total number of rows over the three splits.
    pub fn num_rows(&self) -> usize {
        self.train.rows + self.val.rows + self.test.rows
    }
}
