//! Tests of the data pipeline (`ode_train::data`) and the built-in generators (`ode_train::generate`).

use ode_train::data::{DataConfig, DataError, Dataset, Scaler, SplitSizes, Table};
use ode_train::generate::{DATASETS, columns, generate, sample_dt, vector_field};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn write_file(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Reads `contents` as `name` in a fresh tempdir; returns the result and the path as displayed.
fn read_str(name: &str, contents: &str, time: Option<&str>) -> (Result<Table, DataError>, String) {
    read_bytes(name, contents.as_bytes(), time)
}

fn read_bytes(name: &str, contents: &[u8], time: Option<&str>) -> (Result<Table, DataError>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = write_file(dir.path(), name, contents);
    (Table::read_csv(&p, time), p.display().to_string())
}

fn read_err(name: &str, contents: &str, time: Option<&str>) -> (DataError, String) {
    let (r, path) = read_str(name, contents, time);
    match r {
        Ok(t) => panic!("expected an error reading {name}, got {t:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(&path), "message does not name the file {path}: {msg}");
            (e, msg)
        }
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message lacks {p:?}: {msg}");
    }
}

/// `n` rows × `cols` numeric columns `c0..`, value `100·row + col`, so a value names its cell.
fn encoded(n: usize, cols: usize) -> Table {
    assert!(cols < 100);
    Table {
        columns: (0..cols).map(|j| format!("c{j}")).collect(),
        data: (0..n)
            .flat_map(|r| (0..cols).map(move |j| (100 * r + j) as f64))
            .collect(),
        time: None,
    }
}

fn cfg(c: usize, h: usize) -> DataConfig {
    DataConfig {
        context_len: c,
        horizon: h,
        ..DataConfig::default()
    }
}

fn names(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

/// Denormalises a flattened buffer and rounds it back to the integer cell codes.
fn decode(values: &[f32], scaler: &Scaler) -> Vec<i64> {
    let d = scaler.dim();
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| scaler.denormalize(i % d, f64::from(v)).round() as i64)
        .collect()
}

/// The expected codes of rows `rows` of columns `cols` of an [`encoded`] table, time-major.
fn codes(rows: std::ops::Range<usize>, cols: &[usize]) -> Vec<i64> {
    rows.flat_map(|r| cols.iter().map(move |&j| (100 * r + j) as i64))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading CSV: success paths
// ---------------------------------------------------------------------------------------------

#[test]
fn reads_numeric_csv_without_time_column() {
    let (t, _) = read_str("a.csv", "x,a\n1,2.5\n3,-4e-1\n", None);
    let t = t.unwrap();
    assert_eq!(t.columns, ["x", "a"]);
    assert_eq!(t.data, [1.0, 2.5, 3.0, -0.4]);
    assert_eq!(t.time, None);
    assert_eq!(t.num_rows(), 2);
    assert_eq!(t.num_columns(), 2);
    assert_eq!(t.column_index("a"), Some(1));
    assert_eq!(t.column_index("nope"), None);
    assert_eq!(t.column(1), [2.5, -0.4]);
    assert_eq!(t.get(1, 0), 3.0);
}

#[test]
fn time_column_detected_by_header_name_case_insensitive() {
    for header in ["date", "Date", "TIME", "timestamp", "DateTime", "t"] {
        let (t, _) = read_str("a.csv", &format!("{header},a,b\n0,1,2\n1,3,4\n"), None);
        let t = t.unwrap();
        assert_eq!(t.columns, ["a", "b"], "header {header}");
        assert_eq!(t.data, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            t.time,
            Some((header.to_string(), vec!["0".to_string(), "1".to_string()]))
        );
    }
}

#[test]
fn time_column_detected_by_non_numeric_first_cell() {
    let (t, _) = read_str("a.csv", "when,a\nmonday,1\ntuesday,2\n", None);
    let t = t.unwrap();
    assert_eq!(t.columns, ["a"]);
    assert_eq!(
        t.time.unwrap(),
        ("when".to_string(), vec!["monday".to_string(), "tuesday".to_string()])
    );
}

#[test]
fn first_column_with_numeric_first_cell_is_a_feature() {
    let (t, _) = read_str("a.csv", "step,a\n1,10\n2,20\n", None);
    let t = t.unwrap();
    assert_eq!(t.columns, ["step", "a"]);
    assert!(t.time.is_none());
}

#[test]
fn named_time_column_anywhere() {
    let (t, _) = read_str("a.csv", "a,stamp,b\n1,s1,2\n3,s2,4\n", Some("stamp"));
    let t = t.unwrap();
    assert_eq!(t.columns, ["a", "b"]);
    assert_eq!(t.data, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(t.time.unwrap().1, ["s1", "s2"]);
    // Naming a numeric-looking column as the time column takes it out of the features.
    let (t, _) = read_str("a.csv", "a,b\n1,2\n3,4\n", Some("b"));
    let t = t.unwrap();
    assert_eq!(t.columns, ["a"]);
    assert_eq!(
        t.time.unwrap(),
        ("b".to_string(), vec!["2".to_string(), "4".to_string()])
    );
}

#[test]
fn quotes_whitespace_crlf_bom_and_blank_lines() {
    let (t, _) = read_str(
        "a.csv",
        "\u{feff}date,\"a\", b \r\n\"2020-01-01, 00:00\", 1.5 ,\" 2\"\r\n\r\n2020-01-02,3,4\r\n",
        None,
    );
    let t = t.unwrap();
    assert_eq!(t.columns, ["a", "b"]);
    assert_eq!(t.data, [1.5, 2.0, 3.0, 4.0]);
    let (name, times) = t.time.unwrap();
    assert_eq!(name, "date");
    assert_eq!(times, ["2020-01-01, 00:00", "2020-01-02"]);
}

#[test]
fn write_csv_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let t = Table {
        columns: vec!["a".into(), "b".into()],
        data: vec![0.1, -1e-300, 1.0 / 3.0, 12345.678901234567, 2e20, -0.0],
        time: Some(("date".into(), vec!["d1".into(), "d,2".into(), "d3".into()])),
    };
    let p = dir.path().join("out.csv");
    t.write_csv(&p).unwrap();
    let back = Table::read_csv(&p, None).unwrap();
    assert_eq!(back, t);
    // Without a time column.
    let t2 = encoded(5, 3);
    t2.write_csv(&p).unwrap();
    assert_eq!(Table::read_csv(&p, None).unwrap(), t2);
    // Writing to a directory that does not exist is an Io error naming the file.
    let bad = dir.path().join("no/such/dir/out.csv");
    let e = t.write_csv(&bad).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("out.csv"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Reading CSV: every error names file, line and column
// ---------------------------------------------------------------------------------------------

#[test]
fn io_error_for_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("missing.csv");
    let e = Table::read_csv(&p, None).unwrap_err();
    assert!(matches!(&e, DataError::Io { action: "read", .. }), "{e:?}");
    assert_mentions(&e.to_string(), &[&p.display().to_string(), "check the path"]);
}

#[test]
fn missing_value_names_line_and_column() {
    let (e, msg) = read_err("miss.csv", "a,b,c\n1,2,3\n4,,6\n", None);
    match e {
        DataError::MissingValue { line, column, .. } => {
            assert_eq!(line, 3);
            assert_eq!(column, "b");
        }
        other => panic!("{other:?}"),
    }
    assert_mentions(&msg, &["line 3", "column 'b'", "missing value", "fill"]);
    for token in ["NA", "null", "n/a", "None", "?"] {
        let (e, _) = read_err("miss.csv", &format!("date,a,b\nx,1,2\ny,3,{token}\n"), None);
        assert!(
            matches!(&e, DataError::MissingValue { line: 3, column, .. } if column == "b"),
            "{token}: {e:?}"
        );
    }
}

#[test]
fn non_numeric_names_line_column_and_value() {
    let (e, msg) = read_err("nn.csv", "date,a,b\n2020,1,2\n2021,3,4\n2022,5,1.2.3\n", None);
    match e {
        DataError::NonNumeric {
            line, column, value, ..
        } => {
            assert_eq!((line, column.as_str(), value.as_str()), (4, "b", "1.2.3"));
        }
        other => panic!("{other:?}"),
    }
    assert_mentions(&msg, &["line 4", "column 'b'", "'1.2.3'", "not a number"]);
    // A first column that starts numeric and later is not: an error, not a time column.
    let (e, _) = read_err("nn.csv", "x,a\n1,2\nfoo,3\n", None);
    assert!(
        matches!(&e, DataError::NonNumeric { line: 3, column, .. } if column == "x"),
        "{e:?}"
    );
    // Decimal commas (quoted) are not numbers.
    let (e, _) = read_err("nn.csv", "a,b\n1,\"1,5\"\n", None);
    assert!(matches!(&e, DataError::NonNumeric { line: 2, .. }), "{e:?}");
}

#[test]
fn non_finite_cells_are_rejected() {
    for token in ["NaN", "nan", "inf", "-inf", "+inf", "Infinity", "-infinity", "1e999"] {
        let (e, msg) = read_err("nf.csv", &format!("a,b\n1,2\n3,4\n{token},5\n"), None);
        match &e {
            DataError::NonFinite {
                line, column, value, ..
            } => {
                assert_eq!((*line, column.as_str(), value.as_str()), (4, "a", token));
            }
            other => panic!("{token}: {other:?}"),
        }
        assert_mentions(&msg, &["line 4", "column 'a'", "not finite"]);
    }
}

#[test]
fn ragged_rows_name_the_line() {
    let (e, msg) = read_err("rag.csv", "a,b,c\n1,2,3\n4,5\n", None);
    assert!(
        matches!(
            e,
            DataError::Ragged {
                line: 3,
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{e:?}"
    );
    assert_mentions(&msg, &["line 3", "ragged", "2 fields", "3 columns"]);
    let (e, _) = read_err("rag.csv", "a,b\n1,2\n3,4\n5,6,\n", None);
    assert!(
        matches!(
            e,
            DataError::Ragged {
                line: 4,
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn line_numbers_count_blank_lines_and_quoted_newlines() {
    // A blank line is skipped but still counted.
    let (e, _) = read_err("blank.csv", "a,b\n1,2\n\n3,x\n", None);
    assert!(matches!(e, DataError::NonNumeric { line: 4, .. }), "{e:?}");
    // A quoted time cell spanning two lines.
    let (e, _) = read_err("quoted.csv", "date,a\n\"2020\n01\",1\n2021,x\n", None);
    assert!(matches!(e, DataError::NonNumeric { line: 4, .. }), "{e:?}");
    // CRLF line endings, with blank lines.
    let (e, _) = read_err("crlf.csv", "a,b\r\n1,2\r\n3,nan\r\n", None);
    assert!(
        matches!(&e, DataError::NonFinite { line: 3, column, .. } if column == "b"),
        "{e:?}"
    );
    let (e, _) = read_err("crlf.csv", "a,b\r\n1,2\r\n\r\n\r\n3,4,5\r\n", None);
    assert!(matches!(e, DataError::Ragged { line: 5, .. }), "{e:?}");
    // Blank lines before the header; old Mac CR-only endings.
    let (e, _) = read_err("lead.csv", "\n\na,b\n1,\n", None);
    assert!(matches!(e, DataError::MissingValue { line: 4, .. }), "{e:?}");
    let (e, _) = read_err("cr.csv", "a,b\r1,2\r3,x\r", None);
    assert!(matches!(e, DataError::NonNumeric { line: 3, .. }), "{e:?}");
}

#[test]
fn empty_file_and_header_only() {
    for contents in ["", "\n\n", "a,b,c\n", "date,a\n"] {
        let (e, msg) = read_err("empty.csv", contents, None);
        assert!(matches!(e, DataError::EmptyFile { .. }), "{contents:?}: {e:?}");
        assert_mentions(&msg, &["no data rows"]);
    }
}

#[test]
fn no_features_when_only_a_time_column() {
    let (e, msg) = read_err("nof.csv", "date\n2020-01-01\n2020-01-02\n", None);
    assert!(matches!(e, DataError::NoFeatures { .. }), "{e:?}");
    assert_mentions(&msg, &["no numeric feature columns", "comma-separated"]);
    // A semicolon-separated file is one non-numeric column.
    let (e, _) = read_err("semi.csv", "date;a\n2020;1\n", None);
    assert!(matches!(e, DataError::NoFeatures { .. }), "{e:?}");
    // Naming the only column as the time column.
    let (e, _) = read_err("nof.csv", "a\n1\n2\n", Some("a"));
    assert!(matches!(e, DataError::NoFeatures { .. }), "{e:?}");
}

#[test]
fn unknown_time_column_lists_available() {
    let (e, msg) = read_err("u.csv", "date,a,b\nx,1,2\n", Some("stamp"));
    match e {
        DataError::UnknownColumn {
            name, role, available, ..
        } => {
            assert_eq!(name, "stamp");
            assert_eq!(role, "time_column");
            assert_eq!(available, ["date", "a", "b"]);
        }
        other => panic!("{other:?}"),
    }
    assert_mentions(&msg, &["'stamp'", "time_column", "date, a, b"]);
}

#[test]
fn bad_headers() {
    let (e, msg) = read_err("dup.csv", "a,b,a\n1,2,3\n", None);
    assert!(matches!(e, DataError::BadHeader { .. }), "{e:?}");
    assert_mentions(&msg, &["line 1", "'a'", "more than once"]);
    let (e, msg) = read_err("noname.csv", "a,,b\n1,2,3\n", None);
    assert!(matches!(e, DataError::BadHeader { .. }), "{e:?}");
    assert_mentions(&msg, &["column 2", "empty name"]);
}

#[test]
fn invalid_utf8_is_malformed() {
    let (r, path) = read_bytes("bin.csv", b"a,b\n1,2\n3,\xff\xfe\n", None);
    let e = r.unwrap_err();
    assert!(matches!(e, DataError::Malformed { line: 3, .. }), "{e:?}");
    assert_mentions(&e.to_string(), &[&path, "line 3", "UTF-8"]);
}

// ---------------------------------------------------------------------------------------------
// Tables built in code
// ---------------------------------------------------------------------------------------------

#[test]
fn table_validation() {
    let mut t = encoded(4, 2);
    t.validate("mem").unwrap();
    t.data[5] = f64::NAN;
    let e = t.validate("mem").unwrap_err();
    assert!(
        matches!(&e, DataError::NonFinite { line: 4, column, .. } if column == "c1"),
        "{e:?}"
    );
    let e = Dataset::from_table(&t, &cfg(1, 1), "mem").unwrap_err();
    assert!(matches!(e, DataError::NonFinite { .. }), "{e:?}");

    let mut t = encoded(4, 2);
    t.data.pop();
    let e = t.validate("mem").unwrap_err();
    assert!(matches!(e, DataError::InvalidTable { .. }), "{e:?}");
    assert!(e.to_string().contains("mem"));

    let mut t = encoded(4, 2);
    t.time = Some(("t".into(), vec!["0".into()]));
    assert!(matches!(t.validate("mem"), Err(DataError::InvalidTable { .. })));

    let mut t = encoded(4, 2);
    t.columns[1] = "c0".into();
    assert!(matches!(t.validate("mem"), Err(DataError::InvalidTable { .. })));

    let t = Table {
        columns: vec![],
        data: vec![],
        time: None,
    };
    assert!(matches!(t.validate("mem"), Err(DataError::NoFeatures { .. })));
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn config_defaults_and_serde() {
    let d = DataConfig::default();
    assert_eq!((d.context_len, d.horizon), (24, 12));
    assert_eq!((d.train_frac, d.test_frac), (0.7, 0.2));
    assert_eq!((d.features.clone(), d.targets.clone()), (None, None));
    assert_eq!((d.max_train_windows, d.max_val_windows), (None, None));
    d.validate().unwrap();

    let full = DataConfig {
        features: names(&["a", "b"]),
        targets: names(&["b"]),
        max_train_windows: Some(10),
        ..cfg(8, 4)
    };
    let json = serde_json::to_string(&full).unwrap();
    let back: DataConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, full);
    // Missing keys take the defaults.
    let partial: DataConfig = serde_json::from_str(r#"{"horizon": 6, "features": ["OT"]}"#).unwrap();
    assert_eq!(
        partial,
        DataConfig {
            horizon: 6,
            features: names(&["OT"]),
            ..DataConfig::default()
        }
    );
}

#[test]
fn config_validation_errors() {
    let cases: Vec<(DataConfig, &str)> = vec![
        (cfg(0, 12), "context_len"),
        (cfg(24, 0), "horizon"),
        (
            DataConfig {
                train_frac: 0.0,
                ..DataConfig::default()
            },
            "train_frac",
        ),
        (
            DataConfig {
                train_frac: 1.0,
                ..DataConfig::default()
            },
            "train_frac",
        ),
        (
            DataConfig {
                train_frac: f64::NAN,
                ..DataConfig::default()
            },
            "train_frac",
        ),
        (
            DataConfig {
                test_frac: -0.1,
                ..DataConfig::default()
            },
            "test_frac",
        ),
        (
            DataConfig {
                test_frac: 0.0,
                ..DataConfig::default()
            },
            "test_frac",
        ),
        (
            DataConfig {
                train_frac: 0.8,
                test_frac: 0.2,
                ..DataConfig::default()
            },
            "train_frac + test_frac",
        ),
        (
            DataConfig {
                max_train_windows: Some(0),
                ..DataConfig::default()
            },
            "max_train_windows",
        ),
        (
            DataConfig {
                max_val_windows: Some(0),
                ..DataConfig::default()
            },
            "max_val_windows",
        ),
        (
            DataConfig {
                features: Some(vec![]),
                ..DataConfig::default()
            },
            "features",
        ),
        (
            DataConfig {
                targets: names(&["a", "a"]),
                ..DataConfig::default()
            },
            "targets",
        ),
    ];
    for (c, expected) in cases {
        let e = c.validate().unwrap_err();
        match &e {
            DataError::InvalidConfig { name, .. } => assert_eq!(name, expected, "{e}"),
            other => panic!("{expected}: {other:?}"),
        }
        assert!(e.to_string().starts_with(&format!("invalid {expected} = ")), "{e}");
        // from_table checks the configuration first.
        let e2 = Dataset::from_table(&encoded(1000, 2), &c, "mem").unwrap_err();
        assert!(matches!(e2, DataError::InvalidConfig { .. }), "{e2:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Splits and windows
// ---------------------------------------------------------------------------------------------

#[test]
fn split_sizes_follow_the_informer_formulas() {
    // (n, train, val, test), computed with Python's int(n * 0.7) and int(n * 0.2).
    let expected = [
        (10, 7, 1, 2),
        (17, 11, 3, 3),
        (36, 25, 4, 7),
        (100, 70, 10, 20),
        (101, 70, 11, 20),
        (999, 699, 101, 199),
        (1000, 700, 100, 200),
        (1234, 863, 125, 246),
        (17420, 12194, 1742, 3484),
    ];
    let d = DataConfig::default();
    for (n, train, val, test) in expected {
        assert_eq!(d.split_sizes(n), SplitSizes { train, val, test }, "n = {n}");
    }
    let custom = DataConfig {
        train_frac: 0.6,
        test_frac: 0.25,
        ..DataConfig::default()
    };
    assert_eq!(
        custom.split_sizes(1000),
        SplitSizes {
            train: 600,
            val: 150,
            test: 250
        }
    );
    assert_eq!(
        custom.split_sizes(333),
        SplitSizes {
            train: 199,
            val: 51,
            test: 83
        }
    );
}

#[test]
fn dataset_splits_are_chronological_and_sized() {
    for (n, train, val, test) in [
        (36, 25, 4, 7),
        (100, 70, 10, 20),
        (101, 70, 11, 20),
        (1234, 863, 125, 246),
    ] {
        let ds = Dataset::from_table(&encoded(n, 2), &cfg(2, 2), "mem").unwrap();
        assert_eq!(
            (ds.train.rows(), ds.val.rows(), ds.test.rows()),
            (train, val, test),
            "n = {n}"
        );
        assert_eq!(
            (ds.train.start_row(), ds.val.start_row(), ds.test.start_row()),
            (0, train, train + val)
        );
        assert_eq!(
            (ds.train.name(), ds.val.name(), ds.test.name()),
            ("train", "val", "test")
        );
        assert_eq!(ds.num_rows(), n);
        for s in [&ds.train, &ds.val, &ds.test] {
            assert_eq!(s.num_windows(), s.rows() + 1 - 4, "{} n = {n}", s.name());
            assert_eq!(s.available_windows(), s.num_windows());
            assert_eq!(s.features().len(), s.rows() * 2);
            assert_eq!(s.targets().len(), s.rows() * 2);
            // The split's first row is table row start_row.
            let first = ds.feature_scaler.denormalize(0, f64::from(s.features()[0])).round() as usize;
            assert_eq!(first, 100 * s.start_row());
        }
    }
}

#[test]
fn windows_hold_the_right_rows_time_major() {
    let (n, c, h, d) = (60, 3, 2, 3);
    let ds = Dataset::from_table(&encoded(n, d), &cfg(c, h), "mem").unwrap();
    assert_eq!(
        (ds.input_dim(), ds.output_dim(), ds.context_len, ds.horizon),
        (3, 3, 3, 2)
    );
    assert_eq!(ds.features, ["c0", "c1", "c2"]);
    assert_eq!(ds.targets, ds.features);
    // 60 rows: train 42, val 6, test 12; windows r - C - H + 1.
    assert_eq!(
        (ds.train.num_windows(), ds.val.num_windows(), ds.test.num_windows()),
        (38, 2, 8)
    );
    let all = [0usize, 1, 2];
    for (split, idx) in [
        (&ds.train, vec![0usize, 7, 37, 7]),
        (&ds.val, vec![1, 0]),
        (&ds.test, vec![0, 7]),
    ] {
        assert_eq!(
            (
                split.context_len(),
                split.horizon(),
                split.input_dim(),
                split.output_dim()
            ),
            (c, h, d, d)
        );
        let b = idx.len();
        let mut ctx = vec![f32::NAN; b * c * d];
        let mut tgt = vec![f32::NAN; b * h * d];
        split.fill_batch(&idx, &mut ctx, &mut tgt);
        let got_ctx = decode(&ctx, &ds.feature_scaler);
        let got_tgt = decode(&tgt, &ds.target_scaler);
        for (k, &i) in idx.iter().enumerate() {
            let s = split.start_row() + i;
            assert_eq!(
                got_ctx[k * c * d..(k + 1) * c * d],
                codes(s..s + c, &all)[..],
                "{} window {i}",
                split.name()
            );
            assert_eq!(got_tgt[k * h * d..(k + 1) * h * d], codes(s + c..s + c + h, &all)[..]);
            assert_eq!(split.target_start_row(i), s + c);
        }
        // The stored values are exactly the f32 of the f64 z-score.
        let i = idx[0];
        let row = split.start_row() + i;
        assert_eq!(ctx[1], ds.feature_scaler.normalize(1, (100 * row + 1) as f64) as f32);
    }
}

#[test]
fn feature_and_target_selection_by_name_and_order() {
    let t = encoded(100, 4);
    let config = DataConfig {
        features: names(&["c2", "c0"]),
        targets: names(&["c3", "c2"]),
        ..cfg(4, 3)
    };
    let ds = Dataset::from_table(&t, &config, "mem").unwrap();
    assert_eq!(ds.features, ["c2", "c0"]);
    assert_eq!(ds.targets, ["c3", "c2"]);
    assert_eq!((ds.input_dim(), ds.output_dim()), (2, 2));
    let mut ctx = vec![0.0; 4 * 2];
    let mut tgt = vec![0.0; 3 * 2];
    ds.train.fill_batch(&[10], &mut ctx, &mut tgt);
    assert_eq!(decode(&ctx, &ds.feature_scaler), codes(10..14, &[2, 0]));
    assert_eq!(decode(&tgt, &ds.target_scaler), codes(14..17, &[3, 2]));
    // Each target is scaled with its own column's training statistics.
    let train = ds.train.rows();
    for (k, col) in [(0, 3usize), (1, 2)] {
        let vals: Vec<f64> = (0..train).map(|r| (100 * r + col) as f64).collect();
        let mean = vals.iter().sum::<f64>() / train as f64;
        assert!((ds.target_scaler.mean[k] - mean).abs() < 1e-9);
    }
    assert_eq!(ds.target_scaler.std[1], ds.feature_scaler.std[0]);
    assert_eq!(ds.target_scaler.mean[1], ds.feature_scaler.mean[0]);

    // Targets default to the (selected) features.
    let config = DataConfig {
        features: names(&["c1"]),
        ..cfg(4, 3)
    };
    let ds = Dataset::from_table(&t, &config, "mem").unwrap();
    assert_eq!(
        (ds.features.clone(), ds.targets.clone()),
        (vec!["c1".to_string()], vec!["c1".to_string()])
    );
}

#[test]
fn unknown_feature_or_target_lists_available_columns() {
    let mut t = encoded(100, 3);
    t.time = Some(("date".into(), (0..100).map(|i| i.to_string()).collect()));
    for (config, role, name) in [
        (
            DataConfig {
                features: names(&["c0", "OT"]),
                ..cfg(2, 2)
            },
            "features",
            "OT",
        ),
        (
            DataConfig {
                targets: names(&["c9"]),
                ..cfg(2, 2)
            },
            "targets",
            "c9",
        ),
        (
            DataConfig {
                features: names(&["date"]),
                ..cfg(2, 2)
            },
            "features",
            "date",
        ),
    ] {
        let e = Dataset::from_table(&t, &config, "my.csv").unwrap_err();
        match &e {
            DataError::UnknownColumn {
                name: n,
                role: r,
                available,
                file,
            } => {
                assert_eq!((n.as_str(), *r, file.as_str()), (name, role, "my.csv"));
                assert_eq!(available, &["c0", "c1", "c2"]);
            }
            other => panic!("{other:?}"),
        }
        assert_mentions(&e.to_string(), &["my.csv", &format!("'{name}'"), role, "c0, c1, c2"]);
    }
}

#[test]
fn too_few_rows_names_the_split() {
    // 30 rows with the default C = 24, H = 12: train has 21 rows.
    let e = Dataset::from_table(&encoded(30, 2), &DataConfig::default(), "short.csv").unwrap_err();
    assert!(
        matches!(
            e,
            DataError::TooFewRows {
                rows: 21,
                needed: 36,
                split: "train",
                ..
            }
        ),
        "{e:?}"
    );
    assert_mentions(&e.to_string(), &["short.csv", "train split has 21 rows", "36"]);
    // Enough for train but not for val: 200 rows, train 150, test 40, val 10 < 20.
    let config = DataConfig {
        train_frac: 0.75,
        ..cfg(10, 10)
    };
    let e = Dataset::from_table(&encoded(200, 2), &config, "short.csv").unwrap_err();
    assert!(
        matches!(
            e,
            DataError::TooFewRows {
                rows: 10,
                needed: 20,
                split: "val",
                ..
            }
        ),
        "{e:?}"
    );
    // Exactly one window is enough.
    let config = DataConfig {
        train_frac: 0.7,
        ..cfg(5, 5)
    };
    let ds = Dataset::from_table(&encoded(100, 2), &config, "ok").unwrap();
    assert_eq!(ds.val.num_windows(), 1);
    // A test split too short for a window is allowed and has none.
    let config = DataConfig {
        test_frac: 0.05,
        ..cfg(5, 5)
    };
    let ds = Dataset::from_table(&encoded(100, 2), &config, "ok").unwrap();
    assert_eq!(
        (ds.test.rows(), ds.test.num_windows(), ds.test.available_windows()),
        (5, 0, 0)
    );
}

#[test]
fn caps_take_the_first_windows() {
    let t = encoded(200, 2);
    let uncapped = Dataset::from_table(&t, &cfg(4, 2), "mem").unwrap();
    let config = DataConfig {
        max_train_windows: Some(5),
        max_val_windows: Some(1000),
        ..cfg(4, 2)
    };
    let ds = Dataset::from_table(&t, &config, "mem").unwrap();
    assert_eq!(ds.train.num_windows(), 5);
    assert_eq!(ds.train.available_windows(), 140 - 6 + 1);
    assert_eq!(ds.val.num_windows(), uncapped.val.num_windows());
    assert_eq!(ds.test.num_windows(), uncapped.test.num_windows());
    // The capped windows are the first ones, in time order.
    let (mut a, mut b) = (vec![0.0; 5 * 4 * 2], vec![0.0; 5 * 2 * 2]);
    let (mut a2, mut b2) = (a.clone(), b.clone());
    ds.train.fill_batch(&[0, 1, 2, 3, 4], &mut a, &mut b);
    uncapped.train.fill_batch(&[0, 1, 2, 3, 4], &mut a2, &mut b2);
    assert_eq!((a, b), (a2, b2));
}

#[test]
#[should_panic(expected = "out of range")]
fn fill_batch_rejects_a_window_beyond_the_cap() {
    let config = DataConfig {
        max_train_windows: Some(5),
        ..cfg(4, 2)
    };
    let ds = Dataset::from_table(&encoded(200, 2), &config, "mem").unwrap();
    let (mut a, mut b) = (vec![0.0; 4 * 2], vec![0.0; 2 * 2]);
    ds.train.fill_batch(&[5], &mut a, &mut b);
}

#[test]
#[should_panic(expected = "ctx must hold")]
fn fill_batch_rejects_a_wrong_buffer() {
    let ds = Dataset::from_table(&encoded(200, 2), &cfg(4, 2), "mem").unwrap();
    let (mut a, mut b) = (vec![0.0; 4 * 2 + 1], vec![0.0; 2 * 2]);
    ds.train.fill_batch(&[0], &mut a, &mut b);
}

// ---------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------

#[test]
fn scaler_uses_training_rows_only_with_population_std() {
    // 20 rows: train = 14 rows cycling 1..=7 (mean 4, population std 2, sample std 2.16),
    // then val and test rows far away that must not affect the statistics.
    let data: Vec<f64> = (0..20)
        .map(|r| if r < 14 { (r % 7 + 1) as f64 } else { 1000.0 + r as f64 })
        .collect();
    let t = Table {
        columns: vec!["v".into()],
        data,
        time: None,
    };
    let ds = Dataset::from_table(&t, &cfg(1, 1), "mem").unwrap();
    assert_eq!(ds.train.rows(), 14);
    assert_eq!(ds.feature_scaler.mean, [4.0]);
    assert_eq!(ds.feature_scaler.std, [2.0]);
    assert_eq!(ds.target_scaler, ds.feature_scaler);
    assert!(ds.warnings.is_empty());
    // Normalised training rows are (x - 4) / 2.
    let expected: Vec<f32> = (0..14).map(|r| ((r % 7 + 1) as f32 - 4.0) / 2.0).collect();
    assert_eq!(ds.train.features(), &expected[..]);
    assert_eq!(ds.val.features()[0], ((1014.0 - 4.0) / 2.0) as f32);
}

#[test]
fn scaler_fit_and_inverse() {
    let names: Vec<String> = vec!["a".into(), "b".into()];
    // Row-major 3 × 2.
    let s = Scaler::fit(&[1.0, 10.0, 2.0, 20.0, 3.0, 60.0], &names);
    assert_eq!(s.dim(), 2);
    assert_eq!(s.mean, [2.0, 30.0]);
    assert!((s.std[0] - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert!((s.std[1] - (1400.0f64 / 3.0).sqrt()).abs() < 1e-12);
    for (j, x) in [(0, 2.5), (1, -7.0)] {
        let z = s.normalize(j, x);
        assert_eq!(z, (x - s.mean[j]) / s.std[j]);
        assert!((s.denormalize(j, z) - x).abs() < 1e-12);
    }
    let mut rows = vec![1.0, 10.0, 3.0, 60.0];
    s.normalize_rows(&mut rows);
    assert_eq!(rows[0], s.normalize(0, 1.0));
    assert_eq!(rows[3], s.normalize(1, 60.0));
    let mut f: Vec<f32> = rows.iter().map(|&v| v as f32).collect();
    s.denormalize_rows(&mut f);
    for (got, want) in f.iter().zip([1.0, 10.0, 3.0, 60.0]) {
        assert!((f64::from(*got) - want).abs() < 1e-4, "{got} vs {want}");
    }
    // Serialisable (it goes into the checkpoint metadata).
    let back: Scaler = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}

#[test]
fn constant_columns_get_std_one() {
    // 0.1 seven times: the naive mean is not exactly 0.1, the std must still be exactly 1.
    let (s, constant) = Scaler::fit_quiet(&[0.1; 7], 1);
    assert_eq!((s.mean[0], s.std[0], constant), (0.1, 1.0, vec![0]));
    let s = Scaler::fit(&[5.0, 1.0, 5.0, 2.0], &["k".to_string(), "v".to_string()]);
    assert_eq!((s.mean[0], s.std[0]), (5.0, 1.0));
    assert_eq!(s.std[1], 0.5);
}

#[test]
fn constant_training_column_warns_and_uses_std_one() {
    // Column k is constant (5) over the 70 training rows and varies afterwards.
    let n = 100;
    let data: Vec<f64> = (0..n)
        .flat_map(|r| [r as f64, if r < 70 { 5.0 } else { r as f64 }])
        .collect();
    let t = Table {
        columns: vec!["v".into(), "k".into()],
        data,
        time: None,
    };
    let ds = Dataset::from_table(&t, &cfg(2, 2), "flat.csv").unwrap();
    assert_eq!(ds.feature_scaler.mean[1], 5.0);
    assert_eq!(ds.feature_scaler.std[1], 1.0);
    assert_ne!(ds.feature_scaler.std[0], 1.0);
    // One warning (targets = features are not warned twice), naming the column and the file.
    assert_eq!(ds.warnings.len(), 1, "{:?}", ds.warnings);
    assert_mentions(&ds.warnings[0], &["warning", "'k'", "flat.csv", "std = 1"]);
    // Normalised: x - 5.
    assert!(ds.train.features().iter().skip(1).step_by(2).all(|&v| v == 0.0));
    assert_eq!(ds.val.features()[1], (70.0 - 5.0) as f32);
    // No warning when the constant column is not used.
    let config = DataConfig {
        features: names(&["v"]),
        ..cfg(2, 2)
    };
    assert!(
        Dataset::from_table(&t, &config, "flat.csv")
            .unwrap()
            .warnings
            .is_empty()
    );
    // A constant target that is not a feature warns too.
    let config = DataConfig {
        features: names(&["v"]),
        targets: names(&["k"]),
        ..cfg(2, 2)
    };
    let ds = Dataset::from_table(&t, &config, "flat.csv").unwrap();
    assert_eq!(ds.warnings.len(), 1);
    assert_eq!(ds.target_scaler.std, [1.0]);
}

// ---------------------------------------------------------------------------------------------
// Whole pipeline from a file
// ---------------------------------------------------------------------------------------------

#[test]
fn dataset_from_csv_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("date,a,b\n");
    for r in 0..50 {
        text.push_str(&format!("2020-01-{r:02},{},{}\n", 100 * r, 100 * r + 1));
    }
    let p = write_file(dir.path(), "ok.csv", text.as_bytes());
    let ds = Dataset::from_csv(&p, None, &cfg(3, 2)).unwrap();
    assert_eq!(ds.time_column.as_deref(), Some("date"));
    assert_eq!(ds.source, p.display().to_string());
    assert_eq!(ds.features, ["a", "b"]);
    assert_eq!(ds.config, cfg(3, 2));
    let (mut c, mut t) = (vec![0.0; 6], vec![0.0; 4]);
    ds.val.fill_batch(&[0], &mut c, &mut t);
    assert_eq!(decode(&c, &ds.feature_scaler), codes(35..38, &[0, 1]));
    // Errors from the file come through with its name.
    let p = write_file(dir.path(), "bad.csv", b"date,a\n2020,1\n2021,\n");
    let e = Dataset::from_csv(&p, None, &cfg(3, 2)).unwrap_err();
    assert_mentions(&e.to_string(), &["bad.csv", "line 3", "column 'a'"]);
}

#[test]
fn etth1_loads_with_the_published_split_sizes() {
    let Some(path) = ode_train::shared_data::path("ETTh1.csv") else {
        return;
    };
    let t = Table::read_csv(&path, None).unwrap();
    assert_eq!(t.num_rows(), 17420);
    assert_eq!(t.columns, ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]);
    let (name, times) = t.time.as_ref().unwrap();
    assert_eq!(name, "date");
    assert_eq!(times[0], "2016-07-01 00:00:00");
    assert_eq!(t.data[6], 30.5310001373291);
    let ds = Dataset::from_table(&t, &DataConfig::default(), "ETTh1.csv").unwrap();
    assert_eq!((ds.input_dim(), ds.output_dim()), (7, 7));
    assert_eq!((ds.train.rows(), ds.val.rows(), ds.test.rows()), (12194, 1742, 3484));
    assert_eq!(ds.train.num_windows(), 12194 - 36 + 1);
    assert_eq!(ds.val.num_windows(), 1742 - 36 + 1);
    assert_eq!(ds.test.num_windows(), 3484 - 36 + 1);
    assert!(ds.warnings.is_empty());
    // The OT statistics are those of the first 12194 rows.
    let ot: Vec<f64> = t.column(6)[..12194].to_vec();
    let mean = ot.iter().sum::<f64>() / 12194.0;
    let std = (ot.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 12194.0).sqrt();
    assert!((ds.feature_scaler.mean[6] - mean).abs() < 1e-9);
    assert!((ds.feature_scaler.std[6] - std).abs() < 1e-9);
    // Normalised training features have mean ~0 and std ~1.
    let col: Vec<f64> = ds
        .train
        .features()
        .iter()
        .skip(6)
        .step_by(7)
        .map(|&v| f64::from(v))
        .collect();
    let m = col.iter().sum::<f64>() / col.len() as f64;
    let s = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / col.len() as f64).sqrt();
    assert!(m.abs() < 1e-5 && (s - 1.0).abs() < 1e-5, "mean {m} std {s}");
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// An independent classic RK4 integration with a tiny step, as ground truth.
fn rk4_reference(f: impl Fn(&[f64], &mut [f64]), y0: &[f64], t_end: f64, steps: usize) -> Vec<f64> {
    let n = y0.len();
    let h = t_end / steps as f64;
    let mut y = y0.to_vec();
    let (mut k1, mut k2, mut k3, mut k4, mut tmp) =
        (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for _ in 0..steps {
        f(&y, &mut k1);
        for i in 0..n {
            tmp[i] = y[i] + 0.5 * h * k1[i];
        }
        f(&tmp, &mut k2);
        for i in 0..n {
            tmp[i] = y[i] + 0.5 * h * k2[i];
        }
        f(&tmp, &mut k3);
        for i in 0..n {
            tmp[i] = y[i] + h * k3[i];
        }
        f(&tmp, &mut k4);
        for i in 0..n {
            y[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
    }
    y
}

#[test]
fn generators_follow_their_equations() {
    // The equations written out independently of the generator.
    let spiral = |y: &[f64], dy: &mut [f64]| {
        // (y**3) @ [[-0.1, 2.0], [-2.0, -0.1]]
        let (a, b) = (y[0].powi(3), y[1].powi(3));
        dy[0] = a * -0.1 + b * -2.0;
        dy[1] = a * 2.0 + b * -0.1;
    };
    let lv = |y: &[f64], dy: &mut [f64]| {
        let (alpha, beta, gamma, delta) = (1.5, 1.0, 3.0, 1.0);
        dy[0] = alpha * y[0] - beta * y[0] * y[1];
        dy[1] = delta * y[0] * y[1] - gamma * y[1];
    };
    let five = |y: &[f64], dy: &mut [f64]| {
        dy[0] = y[1];
        dy[1] = -y[0] - 0.02 * y[1] + 0.2 * (y[2] - y[0]);
        dy[2] = y[3];
        dy[3] = -2.89 * y[2] - 0.02 * y[3] + 0.2 * (y[0] - y[2]);
        dy[4] = 0.05 * (y[0] * y[0] + y[2] * y[2] - y[4]);
    };
    type Rhs<'a> = &'a dyn Fn(&[f64], &mut [f64]);
    let cases: [(&str, Rhs, Vec<f64>, f64); 3] = [
        ("spiral", &spiral, vec![2.0, 0.0], 0.025),
        ("lotka-volterra", &lv, vec![1.0, 1.0], 0.05),
        ("five-channel", &five, vec![1.0, 0.0, 0.0, 1.0, 0.0], 0.1),
    ];
    for (name, f, y0, dt) in cases {
        assert_eq!(sample_dt(name).unwrap(), dt);
        let rows = 401;
        let t = generate(name, rows, 0, 0.0).unwrap();
        let d = y0.len();
        assert_eq!(t.data[..d], y0[..], "{name} starts at y0");
        for k in [1usize, 57, 400] {
            let want = rk4_reference(f, &y0, k as f64 * dt, k * 400);
            for j in 0..d {
                let got = t.get(k, j);
                assert!(
                    (got - want[j]).abs() < 1e-6 * (1.0 + want[j].abs()),
                    "{name} row {k} col {j}: {got} vs {}",
                    want[j]
                );
            }
        }
        // The exported vector field is the same one.
        let (mut a, mut b) = (vec![0.0; d], vec![0.0; d]);
        let y: Vec<f64> = (0..d).map(|j| 0.3 + 0.2 * j as f64).collect();
        vector_field(name, &y, &mut a).unwrap();
        f(&y, &mut b);
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn generated_tables_have_names_times_and_signal() {
    let expected_cols: [&[&str]; 3] = [&["x", "y"], &["prey", "predator"], &["c0", "c1", "c2", "c3", "c4"]];
    assert_eq!(DATASETS, ["spiral", "lotka-volterra", "five-channel"]);
    for (name, cols) in DATASETS.iter().zip(expected_cols) {
        assert_eq!(columns(name).unwrap(), cols);
        let t = generate(name, 1000, 3, 0.01).unwrap();
        assert_eq!(t.columns, cols);
        assert_eq!(t.num_rows(), 1000);
        let (tname, times) = t.time.as_ref().unwrap();
        assert_eq!(tname, "t");
        let dt = sample_dt(name).unwrap();
        assert_eq!(times[0], "0");
        assert_eq!(times[1], dt.to_string());
        assert_eq!(times[999].parse::<f64>().unwrap(), (999.0 * dt * 1e6).round() / 1e6);
        t.validate(name).unwrap();
        for j in 0..cols.len() {
            let c = t.column(j);
            let m = c.iter().sum::<f64>() / c.len() as f64;
            let s = (c.iter().map(|v| (v - m).powi(2)).sum::<f64>() / c.len() as f64).sqrt();
            assert!(s > 0.05, "{name} column {j} is nearly flat: std {s}");
        }
        // The project's default data goes through the default pipeline.
        let ds = Dataset::from_table(&t, &DataConfig::default(), name).unwrap();
        assert_eq!(ds.input_dim(), cols.len());
        assert_eq!(ds.time_column.as_deref(), Some("t"));
        assert!(ds.train.num_windows() > 600);
    }
    // A single row is the initial state.
    let one = generate("spiral", 1, 0, 0.0).unwrap();
    assert_eq!(one.data, [2.0, 0.0]);
    // `_` for `-`, any case.
    assert_eq!(
        generate("Lotka_Volterra", 10, 0, 0.0).unwrap(),
        generate("lotka-volterra", 10, 0, 0.0).unwrap()
    );
}

#[test]
fn generation_is_deterministic_per_seed() {
    for name in DATASETS {
        let a = generate(name, 300, 42, 0.05).unwrap();
        assert_eq!(a, generate(name, 300, 42, 0.05).unwrap(), "{name}");
        let b = generate(name, 300, 43, 0.05).unwrap();
        assert_ne!(a.data, b.data, "{name}: different seeds give different noise");
        // Without noise the seed does not matter.
        assert_eq!(
            generate(name, 300, 1, 0.0).unwrap(),
            generate(name, 300, 2, 0.0).unwrap()
        );
    }
}

#[test]
fn noise_has_the_requested_level() {
    for name in DATASETS {
        let rows = 4000;
        let clean = generate(name, rows, 7, 0.0).unwrap();
        let noisy = generate(name, rows, 7, 0.1).unwrap();
        let d = clean.num_columns();
        for j in 0..d {
            let c = clean.column(j);
            let cm = c.iter().sum::<f64>() / rows as f64;
            let cs = (c.iter().map(|v| (v - cm).powi(2)).sum::<f64>() / rows as f64).sqrt();
            let r: Vec<f64> = noisy.column(j).iter().zip(&c).map(|(a, b)| a - b).collect();
            let rm = r.iter().sum::<f64>() / rows as f64;
            let rs = (r.iter().map(|v| (v - rm).powi(2)).sum::<f64>() / rows as f64).sqrt();
            let ratio = rs / (0.1 * cs);
            assert!((ratio - 1.0).abs() < 0.05, "{name} column {j}: noise std ratio {ratio}");
            assert!(rm.abs() < 0.1 * cs * 0.06, "{name} column {j}: noise mean {rm}");
            // Roughly Gaussian: about 68% within one sigma.
            let within = r.iter().filter(|v| v.abs() < 0.1 * cs).count() as f64 / rows as f64;
            assert!((within - 0.6827).abs() < 0.03, "{name} column {j}: {within}");
        }
    }
}

#[test]
fn generator_errors() {
    let e = generate("sprial", 100, 0, 0.0).unwrap_err();
    assert!(matches!(e, DataError::UnknownDataset { .. }), "{e:?}");
    assert_mentions(&e.to_string(), &["'sprial'", "spiral, lotka-volterra, five-channel"]);
    assert!(matches!(sample_dt("nope"), Err(DataError::UnknownDataset { .. })));
    assert!(matches!(columns("nope"), Err(DataError::UnknownDataset { .. })));
    let e = generate("spiral", 0, 0, 0.0).unwrap_err();
    assert!(
        matches!(&e, DataError::InvalidConfig { name, .. } if name == "rows"),
        "{e:?}"
    );
    for noise in [-0.1, f64::NAN, f64::INFINITY] {
        let e = generate("spiral", 10, 0, noise).unwrap_err();
        assert!(
            matches!(&e, DataError::InvalidConfig { name, .. } if name == "noise"),
            "{e:?}"
        );
    }
}

#[test]
fn generated_table_round_trips_through_csv() {
    let dir = tempfile::tempdir().unwrap();
    for name in DATASETS {
        let t = generate(name, 200, 5, 0.02).unwrap();
        let p = dir.path().join(format!("{name}.csv"));
        t.write_csv(&p).unwrap();
        assert_eq!(Table::read_csv(&p, None).unwrap(), t, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn windows_match_the_formula_for_any_shape(
        n in 2usize..400,
        c in 1usize..12,
        h in 1usize..12,
        d in 1usize..4,
        train_frac in 0.3f64..0.8,
        test_frac in 0.05f64..0.19,
        pick in any::<prop::sample::Index>(),
    ) {
        let config = DataConfig { train_frac, test_frac, ..cfg(c, h) };
        let sizes = config.split_sizes(n);
        prop_assert_eq!(sizes.train, (train_frac * n as f64).floor() as usize);
        prop_assert_eq!(sizes.test, (test_frac * n as f64).floor() as usize);
        prop_assert_eq!(sizes.train + sizes.val + sizes.test, n);
        match Dataset::from_table(&encoded(n, d), &config, "prop") {
            Err(DataError::TooFewRows { split, rows, needed, .. }) => {
                prop_assert_eq!(needed, c + h);
                prop_assert!(rows < needed);
                prop_assert!(
                    (split == "train" && rows == sizes.train) ||
                    (split == "val" && rows == sizes.val && sizes.train >= c + h)
                );
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            Ok(ds) => {
                prop_assert!(sizes.train >= c + h && sizes.val >= c + h);
                let all: Vec<usize> = (0..d).collect();
                for split in [&ds.train, &ds.val, &ds.test] {
                    let expected = (split.rows() + 1).saturating_sub(c + h);
                    prop_assert_eq!(split.num_windows(), expected);
                    if expected == 0 {
                        continue;
                    }
                    let i = pick.index(expected);
                    let (mut ctx, mut tgt) = (vec![0.0; c * d], vec![0.0; h * d]);
                    split.fill_batch(&[i], &mut ctx, &mut tgt);
                    let s = split.start_row() + i;
                    prop_assert_eq!(decode(&ctx, &ds.feature_scaler), codes(s..s + c, &all));
                    prop_assert_eq!(decode(&tgt, &ds.target_scaler), codes(s + c..s + c + h, &all));
                }
            }
        }
    }
}

#[test]
fn windows_given_as_arrays_are_batched_one_by_one_and_checked() {
    use ode_train::data::Split;
    // Three windows, C = 2, D = 1, H = 1, O = 2: window i's context is [10i, 10i + 1].
    let x: Vec<f32> = (0..3).flat_map(|i| [10.0 * i as f32, 10.0 * i as f32 + 1.0]).collect();
    let y: Vec<f32> = (0..3).flat_map(|i| [-(i as f32), 100.0 + i as f32]).collect();
    let s = Split::from_windows("train", x.clone(), y.clone(), (3, 2, 1), (1, 2)).unwrap();
    assert!(s.is_stacked());
    assert_eq!(
        (s.num_windows(), s.available_windows(), s.context_len(), s.horizon()),
        (3, 3, 2, 1)
    );
    let (mut ctx, mut tgt) = (vec![0.0f32; 4], vec![0.0f32; 4]);
    s.fill_batch(&[2, 0], &mut ctx, &mut tgt);
    assert_eq!(ctx, [20.0, 21.0, 0.0, 1.0]);
    assert_eq!(tgt, [-2.0, 102.0, 0.0, 100.0]);

    let e = Split::from_windows("train", x[..5].to_vec(), y.clone(), (3, 2, 1), (1, 2)).unwrap_err();
    assert!(
        e.to_string().contains("X holds 5 values, not the 6 of shape [3, 2, 1]"),
        "{e}"
    );
    let mut bad = y.clone();
    bad[3] = f32::INFINITY;
    let e = Split::from_windows("val", x.clone(), bad, (3, 2, 1), (1, 2)).unwrap_err();
    assert!(e.to_string().contains("val windows: Y[1, 0, 1] is inf"), "{e}");
    let e = Split::from_windows("train", Vec::new(), Vec::new(), (0, 2, 1), (1, 2)).unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
}
