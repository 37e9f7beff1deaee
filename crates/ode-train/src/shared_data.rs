//! Where tests and examples find the development data shared between projects (ETTh1 and
//! friends), which lives outside the repository: `../shared/data` beside the checkout, as in CI.
//!
//! - `ODE_SHARED_DATA_DIR=/some/dir` looks there instead (another layout).
//! - `ODE_REQUIRE_SHARED_DATA=1` (set in CI) makes a missing file a test failure instead of a
//!   skip, so the tests that need the data cannot pass vacuously.
//!
//! ```
//! // A test that needs real data skips (printing why) where the data is absent.
//! let Some(etth1) = ode_train::shared_data::path("ETTh1.csv") else { return };
//! assert!(etth1.is_file());
//! ```

use std::path::PathBuf;

/// Environment variable naming the shared data folder (overrides the default location).
pub const DIR_ENV: &str = "ODE_SHARED_DATA_DIR";

/// Environment variable that, set to `1`, makes [`path`] panic when the file is missing.
pub const REQUIRE_ENV: &str = "ODE_REQUIRE_SHARED_DATA";

/// The shared data folder: `$ODE_SHARED_DATA_DIR` if set, else `shared/data` beside the
/// repository this crate was built from (`CARGO_MANIFEST_DIR/../../../shared/data`).
pub fn dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
    }
}

/// Whether `ODE_REQUIRE_SHARED_DATA=1`.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).as_deref() == Ok("1")
}

/// The path of shared data file `name` (e.g. `"ETTh1.csv"`) if it exists. When it does not,
/// prints a `SKIPPED` line on stderr and returns `None`, so the caller can skip.
///
/// # Panics
/// When the file is missing and `ODE_REQUIRE_SHARED_DATA=1` (CI), with a message saying where
/// it looked and how to point elsewhere.
pub fn path(name: &str) -> Option<PathBuf> {
    let p = dir().join(name);
    if p.is_file() {
        return Some(p);
    }
    let why = format!(
        "shared data file {} not found; put the shared data beside the checkout (../shared/data) or set \
         {DIR_ENV} to its folder",
        p.display()
    );
    assert!(!required(), "{why} ({REQUIRE_ENV}=1 makes this an error)");
    eprintln!("SKIPPED: {why}");
    None
}
