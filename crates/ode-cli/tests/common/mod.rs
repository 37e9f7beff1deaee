//! Helpers shared by the `ode` command's end-to-end tests.

// Each test file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Runs the built `ode` binary with `args`: (success, stdout, stderr).
pub fn ode(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(args)
        .output()
        .expect("run ode");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small model and dataset for fast CLI runs (latent 8, hidden 16, context 8, horizon 4,
/// 300 rows).
pub const SMALL: [&str; 10] = [
    "--latent-dim",
    "8",
    "--hidden-dim",
    "16",
    "--context-len",
    "8",
    "--horizon",
    "4",
    "--rows",
    "300",
];

/// A JSON file, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Small training settings for `ode search` trials (300 rows, hidden 12, context 8, horizon 4,
/// 2 epochs).
pub const SEARCH_SMALL: [&str; 10] = [
    "--rows",
    "300",
    "--hidden-dim",
    "12",
    "--context-len",
    "8",
    "--horizon",
    "4",
    "--epochs",
    "2",
];

/// An external program a test needs (`env_var`, else `default` on PATH), if `--version` runs;
/// otherwise None after a skip message, or a failure when `require_var` is `1` (as in CI).
pub fn external_tool(env_var: &str, default: &str, require_var: &str, how: &str) -> Option<String> {
    let exe = std::env::var(env_var).unwrap_or_else(|_| default.into());
    let runs = Command::new(&exe)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some(exe);
    }
    if std::env::var(require_var).as_deref() == Ok("1") {
        panic!("{require_var}=1 but `{exe} --version` does not run: {how}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n********** SKIPPED: no {default} ({how}) **********\n"
    );
    None
}
