//! Opening a study store from its URL, and showing a URL without its password.

use crate::store::StudyStore;
use std::path::Path;

/// Opens a store from a `sqlite:PATH` (its folder is created) or `postgresql://…` URL; the
/// error names the URL without its password.
pub fn open_store(url: &str) -> Result<Box<dyn StudyStore>, String> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = Path::new(path.trim_start_matches("//"));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        return Ok(Box::new(crate::SqliteStore::open(path).map_err(|e| e.to_string())?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(crate::PostgresStore::connect(url).map_err(|e| e.to_string())?));
    }
    Err(format!(
        "--storage must look like sqlite:PATH or postgresql://USER:PASSWORD@HOST/DB, got '{}'",
        shown_url(url)
    ))
}

/// A storage URL as messages show it: SQLite paths as they are, anything else without its
/// password.
pub fn shown_url(url: &str) -> String {
    if url.starts_with("sqlite:") {
        url.to_string()
    } else {
        crate::postgres::redact(url)
    }
}
