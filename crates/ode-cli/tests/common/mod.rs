//! Helpers shared by the `ode` command's end-to-end tests.

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
