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
