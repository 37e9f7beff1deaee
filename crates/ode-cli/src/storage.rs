//! `--storage` values, shown without their password.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// A `--storage` URL (`sqlite:PATH` or `postgresql://…`). `Display` and `Debug` show it without
/// its password ([`ode_search::postgres::redact`]), so messages can name the store; it derefs to
/// the full URL, which only connecting uses.
#[derive(Clone, PartialEq, Eq)]
pub struct StorageUrl(String);

impl FromStr for StorageUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl StorageUrl {
    /// Whether the URL carries a password that messages mask (so a command shown to be copied
    /// must get the password some other way).
    pub fn has_password(&self) -> bool {
        shown(&self.0) != self.0
    }
}

impl Deref for StorageUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shown(&self.0))
    }
}

impl fmt::Debug for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorageUrl({:?})", shown(&self.0))
    }
}

/// A storage URL as messages show it: SQLite paths as they are, anything else without its
/// password.
pub fn shown(url: &str) -> String {
    ode_search::shown_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_print_without_their_password() {
        let u: StorageUrl = "postgresql://ode:hunter2@h/db".parse().unwrap();
        assert_eq!(&*u, "postgresql://ode:hunter2@h/db");
        assert_eq!(u.to_string(), "postgresql://ode:***@h/db");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(u.has_password());
        assert!(!"postgresql://ode@h/db".parse::<StorageUrl>().unwrap().has_password());
        assert_eq!(shown("sqlite:runs/x.db"), "sqlite:runs/x.db");
        assert_eq!(shown("postgre://ode:hunter2@h/db"), "postgre://ode:***@h/db");
    }
}
