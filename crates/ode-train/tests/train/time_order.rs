//! A time column must increase: rows out of order, duplicated times and unreadable times are
//! errors naming the file, line and column, unless sorting is asked for.

use ode_train::data::{DataError, ReadOptions, Table};
use std::path::PathBuf;

fn read(contents: &str, sort_time: bool) -> (Result<Table, DataError>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("times.csv");
    std::fs::write(&p, contents).unwrap();
    let options = ReadOptions {
        time_column: None,
        sort_time,
    };
    (Table::read_csv_with(&p, &options), p, dir)
}

fn err(contents: &str, sort_time: bool) -> String {
    let (r, p, _dir) = read(contents, sort_time);
    let e = r.expect_err("the file was accepted").to_string();
    assert!(e.contains(&p.display().to_string()), "no file name in: {e}");
    e
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "'{p}' missing from: {msg}");
    }
}

const DECREASING: &str = "date,a\n2016-07-01 00:00:00,1\n2016-07-01 01:00:00,2\n2016-07-01 03:00:00,3\n\
                          2016-07-01 02:00:00,4\n2016-07-01 04:00:00,5\n";

#[test]
fn a_time_going_back_is_an_error_naming_the_line() {
    let e = err(DECREASING, false);
    assert_mentions(
        &e,
        &[
            "line 5",
            "column 'date'",
            "'2016-07-01 02:00:00' is earlier than",
            "'2016-07-01 03:00:00' on line 4",
            "--sort-time",
        ],
    );
    // The default reader refuses it too.
    let (_, p, _dir) = read(DECREASING, false);
    assert!(matches!(
        Table::read_csv(&p, None),
        Err(DataError::TimeOrder { line: 5, .. })
    ));
}

#[test]
fn a_duplicated_time_is_an_error_sorted_or_not() {
    let dup = "t,a\n0.1,1\n0.2,2\n0.2,3\n0.3,4\n";
    let e = err(dup, false);
    assert_mentions(&e, &["line 4", "column 't'", "'0.2' repeats", "line 3"]);
    // Blank lines do not shift the line numbers.
    let e = err("t,a\n0.1,1\n\n0.2,2\n0.2,3\n", false);
    assert_mentions(&e, &["line 5", "'0.2' repeats", "on line 4"]);
    // Sorting cannot decide between two rows of the same time.
    let e = err("t,a\n3,1\n1,2\n2,3\n1,4\n", true);
    assert_mentions(&e, &["line 5", "'1' repeats", "on line 3"]);
}

#[test]
fn an_unreadable_time_in_the_middle_is_an_error() {
    let e = err(
        "date,a\n2016-07-01 00:00,1\n2016-07-01 01:00,2\n2016-07-0x 02:00,3\n2016-07-01 03:00,4\n",
        false,
    );
    assert_mentions(
        &e,
        &[
            "line 4",
            "column 'date'",
            "'2016-07-0x 02:00'",
            "a date",
            "'2016-07-01 00:00'",
        ],
    );
    let e = err("time,a\n1,1\n2,2\nthree,3\n", false);
    assert_mentions(&e, &["line 4", "'three'", "a number"]);
    let e = err("date,a\n2016-02-28,1\n2016-02-30,2\n", false);
    assert_mentions(&e, &["line 3", "'2016-02-30'"]);
}

#[test]
fn sorting_on_request_reorders_the_rows_with_their_values() {
    let (t, _, _dir) = read(DECREASING, true);
    let t = t.unwrap();
    let (_, times) = t.time.as_ref().unwrap();
    assert_eq!(times[2], "2016-07-01 02:00:00");
    assert_eq!(times[3], "2016-07-01 03:00:00");
    assert_eq!(t.data, [1.0, 2.0, 4.0, 3.0, 5.0], "each value moves with its time");
}

#[test]
fn increasing_times_of_every_form_are_accepted() {
    for ok in [
        "date,a\n2016-07-01 00:00:00,1\n2016-07-01 01:00:00,2\n2016-07-02 00:00:00,3\n",
        "date,a\n2016/12/31,1\n2017/01/01,2\n2017/1/2,3\n",
        "date,a\n2016-07-01T00:00:00Z,1\n2016-07-01T00:30:00.5Z,2\n2016-07-01T00:30:01Z,3\n",
        // 01:00+02:00 is 23:00 the day before in UTC: later than 22:00Z.
        "date,a\n2016-06-30T22:00:00Z,1\n2016-07-01T01:00:00+02:00,2\n2016-07-01T00:00:00Z,3\n",
        "t,a\n-1.5,1\n0,2\n1e3,3\n",
        // Labels are not times: their order is not checked.
        "name,a\nb,1\na,2\nc,3\n",
    ] {
        let (t, _, _dir) = read(ok, false);
        assert!(t.is_ok(), "{ok}: {}", t.unwrap_err());
    }
    // A zone offset is taken into account: 01:00+02:00 is before 00:00Z.
    let e = err("date,a\n2016-07-01T00:00:00Z,1\n2016-07-01T01:00:00+02:00,2\n", false);
    assert_mentions(&e, &["line 3", "is earlier than"]);
}

#[test]
fn generated_tables_still_read_back() {
    let t = ode_train::generate::generate("spiral", 50, 0, 0.0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.csv");
    t.write_csv(&p).unwrap();
    assert_eq!(Table::read_csv(&p, None).unwrap(), t);
}
