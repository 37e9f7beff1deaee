//! CSV files: [`Table::read_csv`] (time column detection, cells, line numbers as an editor counts
//! them, errors that name file, line and column) and [`Table::write_csv`].

use super::error::csv_error;
use super::time_order::check_time_order;
use super::{DataError, Table};
use std::collections::HashSet;
use std::path::Path;

/// Header names (compared case-insensitively) that mark the first column as the time column.
///
/// `t` is included so that a generated table (see [`crate::generate`]) written with
/// [`Table::write_csv`] reads back with the same features.
pub const TIME_HEADERS: [&str; 5] = ["date", "time", "timestamp", "datetime", "t"];

/// Cell contents (compared case-insensitively, after trimming) read as a missing value, like an
/// empty cell.
pub const MISSING_TOKENS: [&str; 6] = ["na", "n/a", "null", "none", "nil", "?"];

/// How [`Table::read_csv_with`] reads a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// The time column's name; `None` to detect it (see [`Table::read_csv`]).
    pub time_column: Option<String>,
    /// Sort the rows by time (with a warning) instead of refusing a file whose times are out of
    /// order. Duplicated times are an error either way.
    pub sort_time: bool,
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

/// The data rows of a file.
struct Rows {
    /// The numeric cells, row-major.
    data: Vec<f64>,
    /// The time column's cells, one per row (empty without a time column).
    times: Vec<String>,
    /// The byte offset of each row's time cell's record, for its line in errors.
    starts: Vec<u64>,
}

/// A CSV file being read record by record; errors name the file and the line as an editor
/// counts it.
struct Records<'a> {
    file: &'a str,
    bytes: &'a [u8],
    reader: csv::Reader<&'a [u8]>,
    /// The record read last.
    record: csv::StringRecord,
}

impl<'a> Records<'a> {
    fn new(file: &'a str, bytes: &'a [u8]) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        Self {
            file,
            bytes,
            reader,
            record: csv::StringRecord::new(),
        }
    }

    /// Reads the next record; false at the end of the file.
    fn advance(&mut self) -> Result<bool, DataError> {
        let (file, bytes) = (self.file, self.bytes);
        self.reader.read_record(&mut self.record).map_err(|e| {
            let line = line_at(bytes, e.position());
            match csv_error(file, "read", e) {
                DataError::Malformed { file, message, .. } => DataError::Malformed { file, line, message },
                other => other,
            }
        })
    }

    /// Reads the next record; [`DataError::EmptyFile`] at the end of the file.
    fn expect_record(&mut self) -> Result<(), DataError> {
        if self.advance()? {
            Ok(())
        } else {
            Err(DataError::EmptyFile {
                file: self.file.to_string(),
            })
        }
    }

    /// The line of the current record. Counted only on error: counting from the file's start is
    /// linear in its size.
    fn line(&self) -> u64 {
        line_at(self.bytes, self.record.position())
    }

    /// The current record as the header row: names trimmed, a byte-order mark dropped, an empty
    /// or repeated name refused.
    fn header(&self) -> Result<Vec<String>, DataError> {
        let mut header: Vec<String> = self.record.iter().map(|s| s.trim().to_string()).collect();
        if let Some(first) = header.first_mut() {
            *first = first.trim_start_matches('\u{feff}').trim().to_string();
        }
        check_header(self.file, &header)?;
        Ok(header)
    }

    /// The data rows from the current record to the end of the file, with the time column
    /// `time_idx`.
    fn rows(&mut self, header: &[String], time_idx: Option<usize>) -> Result<Rows, DataError> {
        let mut data = Vec::new();
        let mut times = Vec::new();
        let mut starts = Vec::new();
        loop {
            if self.record.len() != header.len() {
                return Err(DataError::Ragged {
                    file: self.file.to_string(),
                    line: self.line(),
                    expected: header.len(),
                    found: self.record.len(),
                });
            }
            for (j, cell) in self.record.iter().enumerate() {
                if Some(j) == time_idx {
                    times.push(cell.to_string());
                    starts.push(self.record.position().map_or(0, csv::Position::byte));
                    continue;
                }
                data.push(self.value(cell, &header[j])?);
            }
            if !self.advance()? {
                break;
            }
        }
        Ok(Rows { data, times, starts })
    }

    /// A cell of numeric column `column` in the current record.
    fn value(&self, cell: &str, column: &str) -> Result<f64, DataError> {
        let (file, line, column) = (|| self.file.to_string(), || self.line(), || column.to_string());
        match parse_cell(cell) {
            Cell::Value(v) => Ok(v),
            Cell::Missing => Err(DataError::MissingValue {
                file: file(),
                line: line(),
                column: column(),
            }),
            Cell::NonFinite => Err(DataError::NonFinite {
                file: file(),
                line: line(),
                column: column(),
                value: cell.to_string(),
            }),
            Cell::NonNumeric => Err(DataError::NonNumeric {
                file: file(),
                line: line(),
                column: column(),
                value: cell.to_string(),
            }),
        }
    }
}

/// The index of the header's column `name`, asked for as the time column.
fn time_column_named(file: &str, header: &[String], name: &str) -> Result<usize, DataError> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| DataError::UnknownColumn {
            file: file.to_string(),
            name: name.to_string(),
            role: "time_column",
            available: header.to_vec(),
        })
}

/// The first column, if its header is one of [`TIME_HEADERS`] or its cell in the first data row
/// `first_row` is not a number.
fn detect_time_column(header: &[String], first_row: &csv::StringRecord) -> Option<usize> {
    let by_name = TIME_HEADERS.iter().any(|t| header[0].eq_ignore_ascii_case(t));
    let by_value = matches!(first_row.get(0).map(parse_cell), Some(Cell::NonNumeric));
    (by_name || by_value).then_some(0)
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
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| DataError::Io {
            file: file.clone(),
            action: "read",
            source,
        })?;
        let mut records = Records::new(&file, &bytes);
        records.expect_record()?;
        let header = records.header()?;
        let named_time = match options.time_column.as_deref() {
            Some(name) => Some(time_column_named(&file, &header, name)?),
            None => None,
        };
        records.expect_record()?;
        let time_idx = named_time.or_else(|| detect_time_column(&header, &records.record));
        if header.len() - usize::from(time_idx.is_some()) == 0 {
            return Err(DataError::NoFeatures { file: file.clone() });
        }
        let columns: Vec<String> = (0..header.len())
            .filter(|&j| Some(j) != time_idx)
            .map(|j| header[j].clone())
            .collect();
        let Rows {
            mut data,
            mut times,
            starts,
        } = records.rows(&header, time_idx)?;
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
}
