//! [`DataError`]: everything reading data or building a dataset can fail with.

use thiserror::Error;

/// Everything reading data or building a [`Dataset`](super::Dataset) can fail with.
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
        /// [`Table::write_csv`](super::Table::write_csv) would write the row on).
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
    /// Windows given as arrays ([`Split::from_windows`](super::Split::from_windows)) with a
    /// wrong shape or a non-finite value; the message names the array, its shape and the entry.
    #[error("{reason}")]
    Windows {
        /// What is wrong, with the array's name and shape.
        reason: String,
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
    /// A [`Table`](super::Table) built in code whose parts do not fit together.
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

/// A csv crate error while `action`-ing `file`: I/O errors as [`DataError::Io`], the rest as
/// [`DataError::Malformed`] at the parser's line.
pub(super) fn csv_error(file: &str, action: &'static str, e: csv::Error) -> DataError {
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
