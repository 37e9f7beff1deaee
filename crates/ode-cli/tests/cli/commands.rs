//! End-to-end runs of the `ode` binary.

use crate::common;
use common::ode;

#[test]
fn solve_prints_a_table_and_statistics() {
    let (ok, out, err) = ode(&[
        "solve",
        "--problem",
        "harmonic",
        "--solver",
        "dopri5",
        "--rtol",
        "1e-8",
        "--atol",
        "1e-10",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("harmonic with dopri5 (f64)"), "{out}");
    assert!(out.contains("function evaluations (nfe):"), "{out}");
    assert!(
        out.contains("accepted steps:") && out.contains("rejected steps:"),
        "{out}"
    );
    // 11 output rows (t = 0, 1, ..., 10).
    assert_eq!(
        out.lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .count(),
        11,
        "{out}"
    );
}

#[test]
fn solve_json_matches_the_exact_solution() {
    for solver in ["dopri5", "tsit5", "bosh3"] {
        let (ok, out, err) = ode(&[
            "solve",
            "--problem",
            "harmonic",
            "--solver",
            solver,
            "--rtol",
            "1e-9",
            "--atol",
            "1e-11",
            "--t-end",
            "6",
            "--json",
        ]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let ts = v["ts"].as_array().unwrap();
        let ys = v["ys"].as_array().unwrap();
        assert_eq!(ts.len(), 11);
        for (t, y) in ts.iter().zip(ys) {
            let t = t.as_f64().unwrap();
            let x = y[0].as_f64().unwrap();
            assert!((x - t.cos()).abs() < 1e-7, "{solver}: x({t}) = {x}, cos = {}", t.cos());
        }
        assert!(v["exact_max_abs_error"].as_f64().unwrap() < 1e-7);
        assert!(v["nfe"].as_u64().unwrap() > 0 && v["accepted_steps"].as_u64().unwrap() > 0);
    }
}

#[test]
fn solve_runs_every_problem_and_solver() {
    for problem in ["exp-decay", "harmonic", "lotka-volterra", "van-der-pol"] {
        for solver in [
            "euler",
            "midpoint",
            "heun2",
            "rk4",
            "rk4_classic",
            "bosh3",
            "dopri5",
            "tsit5",
        ] {
            let (ok, out, err) = ode(&[
                "solve",
                "--problem",
                problem,
                "--solver",
                solver,
                "--json",
                "--step-size",
                "0.01",
            ]);
            assert!(ok, "{problem}/{solver}: {err}");
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(
                v["ys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|r| r.as_array().unwrap())
                    .all(|x| x.as_f64().is_some())
            );
        }
    }
}

#[test]
fn solve_backward_in_time_and_f32() {
    let (ok, out, err) = ode(&[
        "solve",
        "--problem",
        "exp-decay",
        "--t-start",
        "2",
        "--t-end",
        "0",
        "--y0",
        "0.36787944117144233",
        "--precision",
        "f32",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let last = v["ys"].as_array().unwrap().last().unwrap()[0].as_f64().unwrap();
    assert!((last - 1.0).abs() < 1e-4, "y(0) = {last}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (ok, _, err) = ode(&["solve", "--solver", "dopri8"]);
    assert!(!ok);
    assert!(
        err.contains("unknown solver 'dopri8'") && err.contains("dopri5"),
        "{err}"
    );
    let (ok, _, err) = ode(&["solve", "--problem", "harmonic", "--y0", "1,2,3"]);
    assert!(!ok);
    assert!(
        err.contains("--y0 has 3 values but problem harmonic has dimension 2"),
        "{err}"
    );
    let (ok, _, err) = ode(&["solve", "--rtol", "-1"]);
    assert!(!ok);
    assert!(err.contains("invalid tolerance rtol = -1"), "{err}");
    let (ok, _, err) = ode(&["solve", "--precision", "f16"]);
    assert!(!ok);
    assert!(err.contains("--precision must be f32 or f64"), "{err}");
    let (ok, _, err) = ode(&["solve", "--problem", "lorenz"]);
    assert!(!ok);
    assert!(
        err.contains("invalid problem 'lorenz': expected one of exp-decay"),
        "{err}"
    );
}

/// A reader that closes the pipe early (`ode solve … | head`) stops `ode` quietly, with the
/// status a shell shows for a process that SIGPIPE stopped, not with a panic.
#[test]
fn a_closed_pipe_stops_output_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(["solve", "--n-out", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().starts_with("lotka-volterra with dopri5"));
    lines.next().unwrap().unwrap();
    // About 9 MB of table: far more than a pipe buffers, so `ode` is still writing.
    drop(lines);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{err}");
    assert!(err.is_empty(), "{err}");
}

/// Any other failure to write the output is named, with status 1.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_under_the_output_is_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(["solve", "--n-out", "5"])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write to standard output: No space left on device"),
        "{err}"
    );
}
