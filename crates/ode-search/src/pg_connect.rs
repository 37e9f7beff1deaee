//! Connecting the PostgreSQL store: the libpq options the `postgres` crate does not parse
//! (`sslmode=verify-ca|verify-full`, `sslrootcert`, `passfile`), TLS with rustls, the password
//! from `PGPASSWORD` or a pgpass file, and URLs shown without their password ([`redact`]).
//!
//! A storage URL is `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?KEY=VALUE&...]` (or a libpq
//! `key=value ...` connection string). Besides what the `postgres` crate takes (`options`,
//! `application_name`, `connect_timeout`, `channel_binding`, `target_session_attrs`, ...) the
//! keys handled here are:
//!
//! * `sslmode` ([`SslMode`], as libpq): `disable`; `prefer` (the default: TLS when the server
//!   offers it, else plain, also when the TLS handshake fails; the certificate is not checked); `require` (TLS or no connection,
//!   certificate not checked, unless `sslrootcert` is given: then as `verify-ca`, like libpq);
//!   `verify-ca` (the server's certificate chains to a root in `sslrootcert`); `verify-full`
//!   (that, and the certificate names the host: a DNS name or IP address in its SAN).
//! * `sslrootcert=PATH`: PEM file of the trusted root certificates (default
//!   `~/.postgresql/root.crt`, as libpq).
//! * `passfile=PATH`: the pgpass file (default `PGPASSFILE`, else `~/.pgpass`).
//!
//! Any other key is refused with an error naming it. The password, when the URL has none,
//! comes from `PGPASSWORD`, else from the pgpass file: lines `host:port:database:user:password`,
//! `*` matching anything, `\:` and `\\` escaping, `#` comments, the first matching line winning
//! (a Unix-socket host matches `localhost`); a file readable by group or others is ignored
//! with a warning, as libpq does.

use crate::store::StoreError;
use crate::store::bad;
use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// How a connection uses TLS (libpq's `sslmode`, less `allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, else plain (also when the TLS handshake fails); the
    /// certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless a root certificate file
    /// is named: then as [`SslMode::VerifyCa`]).
    Require,
    /// TLS with a certificate that chains to a trusted root.
    VerifyCa,
    /// TLS with a certificate that chains to a trusted root and names the host.
    VerifyFull,
}

impl SslMode {
    /// The name in URLs (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => return Err("sslmode=allow is not supported (use disable or prefer)".into()),
            other => {
                return Err(format!(
                    "sslmode '{other}' is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options the `postgres` crate parses itself (passed on to it).
const PASSED_ON: [&str; 18] = [
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// Options handled here.
const OURS: [&str; 3] = ["sslmode", "sslrootcert", "passfile"];

/// A parsed storage URL: the `postgres` crate's settings plus the TLS and password-file options
/// it does not know. Its `Debug` shows no password.
pub struct PgTarget {
    config: Config,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
    passfile: Option<PathBuf>,
    location: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("location", &self.location)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_cert", &self.root_cert)
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Parses a `postgresql://` URL or a `key=value` connection string (see the
    /// [module docs](self)); errors name the option at fault and show the URL redacted.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let location = redact(url);
        let err = |m: String| bad(&location, m);
        let (rest, ours) = split_options(url).map_err(err)?;
        let mut config = Config::from_str(&rest).map_err(|e| err(format!("invalid connection URL: {e}")))?;
        let mut ssl_mode = SslMode::Prefer;
        let (mut root_cert, mut passfile) = (None, None);
        for (k, v) in ours {
            match k.as_str() {
                "sslmode" => ssl_mode = v.parse().map_err(err)?,
                "sslrootcert" if v == "system" => {
                    return Err(err(
                        "sslrootcert=system is not supported: name a PEM file of root certificates".into(),
                    ));
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(v)),
                _ => passfile = Some(PathBuf::from(v)),
            }
        }
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
        Ok(Self {
            config,
            ssl_mode,
            root_cert,
            passfile,
            location,
        })
    }

    /// The URL without its password, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The TLS mode asked for.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Connects: the password from the URL, else `PGPASSWORD`, else the pgpass file; TLS as
    /// `sslmode` says. Errors name the URL (redacted), the TLS mode and the cause.
    pub fn connect(mut self) -> Result<Client, StoreError> {
        if self.config.get_password().is_none() {
            if let Some(pw) = self.password_from_env() {
                self.config.password(pw);
            }
        }
        let what = format!("cannot connect (sslmode={})", self.ssl_mode);
        let fail = |e: postgres::Error| bad(&self.location, format!("{what}: {}", self.explain(error_text(&e))));
        let result = match self.tls_config().map_err(|m| bad(&self.location, m))? {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)),
        };
        match result {
            // As libpq, `prefer` tries a plain session when the TLS one cannot be set up.
            Err(e) if self.ssl_mode == SslMode::Prefer && e.to_string().contains("TLS handshake") => {
                let mut plain = self.config.clone();
                plain.ssl_mode(postgres::config::SslMode::Disable);
                plain.connect(NoTls).map_err(fail)
            }
            r => r.map_err(fail),
        }
    }

    /// A connection error with what the usual causes mean here.
    fn explain(&self, text: String) -> String {
        if text.contains("UnknownIssuer") {
            let roots = self
                .root_cert
                .as_ref()
                .map_or("~/.postgresql/root.crt".into(), |p| p.display().to_string());
            format!("{text} (no CA in sslrootcert {roots} signed the server's certificate)")
        } else if text.contains("password missing") {
            format!("{text} (the URL has none, PGPASSWORD is not set and no pgpass line matches)")
        } else {
            text
        }
    }

    /// `PGPASSWORD`, else the matching line of the pgpass file.
    fn password_from_env(&self) -> Option<String> {
        if let Some(pw) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
            return Some(pw);
        }
        let file = self
            .passfile
            .clone()
            .or_else(|| {
                std::env::var_os("PGPASSFILE")
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| home().map(|h| h.join(".pgpass")))?;
        let host = match (self.config.get_hosts().first(), self.config.get_hostaddrs().first()) {
            (Some(Host::Tcp(h)), _) => h.clone(),
            (None, Some(addr)) => addr.to_string(),
            _ => "localhost".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432).to_string();
        let user = self.config.get_user()?;
        let db = self.config.get_dbname().unwrap_or(user);
        let text = read_pgpass(&file)?;
        pgpass_lookup(&text, [host.as_str(), port.as_str(), db, user])
    }

    /// The rustls configuration for the TLS mode (`None`: plain only).
    fn tls_config(&self) -> Result<Option<ClientConfig>, String> {
        let roots = match self.ssl_mode {
            SslMode::Disable => return Ok(None),
            SslMode::Prefer => None,
            SslMode::Require => self.root_cert.as_deref().map(load_roots).transpose()?,
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let path = match &self.root_cert {
                    Some(p) => p.clone(),
                    None => home()
                        .map(|h| h.join(".postgresql/root.crt"))
                        .filter(|p| p.exists())
                        .ok_or_else(|| {
                            format!(
                                "sslmode={} checks the server's certificate: name the root certificates with \
                                 sslrootcert=PATH (or put them in ~/.postgresql/root.crt)",
                                self.ssl_mode
                            )
                        })?,
                };
                Some(load_roots(&path)?)
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = ServerCheck {
            roots: roots.map(Arc::new),
            names: self.ssl_mode == SslMode::VerifyFull,
            algs: provider.signature_verification_algorithms,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(check))
            .with_no_client_auth();
        Ok(Some(config))
    }
}

/// A `postgres` error with its causes (the TLS handshake's reason, the server's message).
fn error_text(e: &postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return d.to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// The root certificates in a PEM file; errors name the file.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("sslrootcert {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {shown}: not a usable root certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {shown} holds no PEM certificate"));
    }
    Ok(roots)
}

/// Checks the server's certificate as the TLS mode asks: nothing (`roots` `None`: encryption
/// without authentication, libpq's `require`), the chain, or the chain and the host name. The
/// handshake signatures are always checked against the certificate's key.
struct ServerCheck {
    roots: Option<Arc<RootCertStore>>,
    names: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for ServerCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCheck")
            .field("roots", &self.roots.as_ref().map(|r| r.len()))
            .field("names", &self.names)
            .finish()
    }
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algs.all)?;
            if self.names {
                verify_server_name(&cert, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The pgpass file's text, or `None` (with a warning once per file when it is readable by
/// group or others, or not a plain file; silently when it does not exist).
fn read_pgpass(path: &Path) -> Option<String> {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let warn = |why: &str| {
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        if warned.get_or_insert_with(HashSet::new).insert(path.to_path_buf()) {
            eprintln!("warning: password file {} {why}; it is ignored", path.display());
        }
    };
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        warn("is not a plain file");
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warn("has group or world access (permissions should be u=rw, 0600, or less)");
            return None;
        }
    }
    std::fs::read_to_string(path).ok()
}

/// The password of the first pgpass line matching `[host, port, database, user]` (`*` matches
/// anything; `\` escapes the next character).
fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let fields = pgpass_fields(line);
            let matches = fields.len() >= 5 && fields.iter().zip(want).all(|(f, w)| f == "*" || f == w);
            matches.then(|| fields[4].clone())
        })
}

/// A pgpass line's `:`-separated fields, escapes removed.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("one field").extend(chars.next()),
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// Splits the options handled here off a URL or connection string: what is left for the
/// `postgres` crate, and the (key, value) pairs taken, values decoded. Unknown keys are errors.
fn split_options(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    let check = |key: &str| {
        if PASSED_ON.contains(&key) || OURS.contains(&key) {
            Ok(())
        } else {
            Err(format!(
                "connection option '{key}' is not supported (supported: {}, {})",
                OURS.join(", "),
                PASSED_ON.join(", ")
            ))
        }
    };
    let mut ours = Vec::new();
    if let Some((head, query)) = url_query(url) {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(k)?;
            check(&key)?;
            if OURS.contains(&key.as_str()) {
                ours.push((key, percent_decode(v)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            head.to_string()
        } else {
            format!("{head}?{}", kept.join("&"))
        };
        return Ok((rest, ours));
    }
    if is_url(url) {
        return Ok((url.to_string(), ours));
    }
    let mut kept = Vec::new();
    for (key, value) in key_values(url)? {
        check(&key)?;
        if OURS.contains(&key.as_str()) {
            ours.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), ours))
}

fn is_url(url: &str) -> bool {
    url.starts_with("postgresql://") || url.starts_with("postgres://")
}

/// A URL's part before the query and the query, as the `postgres` crate reads URLs (the
/// credentials end at the first `@`, the query starts at the next `?`).
fn url_query(url: &str) -> Option<(&str, &str)> {
    if !is_url(url) {
        return None;
    }
    let after_creds = url.find('@').map_or(0, |at| at + 1);
    let q = after_creds + url[after_creds..].find('?')?;
    Some((&url[..q], &url[q + 1..]))
}

/// `%XX` decoding of a URL component.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in URL component '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("URL component '{s}' is not UTF-8 once decoded"))
}

/// The pairs of a libpq `key=value key='quoted \' value'` connection string.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            return Ok(pairs);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(format!("connection string: '=' expected after '{key}'"));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = it.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match it.next() {
                Some('\'') if quoted => break,
                Some(c) if !quoted && c.is_whitespace() => break,
                Some('\\') => value.extend(it.next()),
                Some(c) => value.push(c),
                None if quoted => return Err(format!("connection string: unterminated quoted value of '{key}'")),
                None => break,
            }
        }
        pairs.push((key, value));
    }
}

/// The URL (`SCHEME://...`) or `key=value` connection string with its password (the
/// `USER:PASSWORD@` part of a URL, any option whose name contains `password`) replaced by
/// `***`. A connection string that does not parse is not shown at all.
pub fn redact(url: &str) -> String {
    const MASK: &str = "***";
    let is_secret = |key: &str| key.to_ascii_lowercase().contains("password");
    let scheme_end = url
        .find("://")
        .filter(|&i| i > 0 && url[..i].chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)));
    if let Some(i) = scheme_end {
        let (scheme, rest) = url.split_at(i + 3);
        // As the postgres crate reads it, credentials end at the first '@' (so a '/' or '?' in
        // the password stays masked); a raw '@' in the password (which should be
        // percent-encoded) leaves more '@'s before the host's end: mask up to the last of them.
        // The password starts after the first ':' of the credentials.
        let mut end = rest.find('@');
        while let Some(at) = end {
            let host_end = rest[at + 1..].find(['/', '?']).map_or(rest.len(), |i| at + 1 + i);
            match rest[at + 1..host_end].rfind('@') {
                Some(i) => end = Some(at + 1 + i),
                None => break,
            }
        }
        let (creds, tail) = match end {
            Some(at) => (&rest[..at], &rest[at..]),
            None => ("", rest),
        };
        let creds = match creds.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}"),
            None => creds.to_string(),
        };
        let (main, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut shown = format!("{scheme}{creds}{main}");
        if tail.contains('?') {
            let pairs: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_secret(&percent_decode(k).unwrap_or_else(|_| k.into())) => format!("{k}={MASK}"),
                    _ => p.to_string(),
                })
                .collect();
            shown = format!("{shown}?{}", pairs.join("&"));
        }
        return shown;
    }
    match key_values(url) {
        Ok(pairs) => pairs
            .iter()
            .map(|(k, v)| {
                if is_secret(k) {
                    format!("{k}={MASK}")
                } else if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
                    format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "(a connection string that does not parse; not shown)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgresql://ode:secret@127.0.0.1/db?options=-c"),
            "postgresql://ode:***@127.0.0.1/db?options=-c"
        );
        assert_eq!(redact("postgresql://ode@host/db"), "postgresql://ode@host/db");
        assert_eq!(redact("host=h user=u password=p"), "host=h user=u password=***");
        // A '/' or '?' in the password (the postgres crate reads up to the first '@').
        assert_eq!(redact("postgres://u:pa/ss?x@h/db"), "postgres://u:***@h/db");
        // A raw '@' in the password.
        assert_eq!(redact("postgresql://u:p@ss@h/db"), "postgresql://u:***@h/db");
        assert_eq!(
            redact("postgresql://u:a@b@c@h:5432/db?x=1"),
            "postgresql://u:***@h:5432/db?x=1"
        );
        assert_eq!(
            redact("postgresql://h/db?sslmode=require&password=secret&x=1"),
            "postgresql://h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            redact("postgresql://h/db?pass%77ord=secret"),
            "postgresql://h/db?pass%77ord=***"
        );
        assert_eq!(
            redact("host=h password='a secret' sslpassword=x user=u"),
            "host=h password=*** sslpassword=*** user=u"
        );
        assert!(!redact("host=h password='unterminated secret").contains("secret"));
    }

    #[test]
    fn ssl_modes_parse_and_bad_ones_are_named() {
        for m in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(m.as_str().parse::<SslMode>(), Ok(m));
        }
        assert!("verify_full".parse::<SslMode>().unwrap_err().contains("'verify_full'"));
        assert!("allow".parse::<SslMode>().unwrap_err().contains("allow"));
    }

    #[test]
    fn our_options_are_split_off_urls_and_connection_strings() {
        let (rest, ours) =
            split_options("postgresql://u:p@h:5433/db?sslmode=verify-full&options=-c%20x&sslrootcert=%2Ftmp%2Fca.crt")
                .unwrap();
        assert_eq!(rest, "postgresql://u:p@h:5433/db?options=-c%20x");
        let ours: Vec<(&str, &str)> = ours.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(ours, [("sslmode", "verify-full"), ("sslrootcert", "/tmp/ca.crt")]);
        let (rest, ours) = split_options("postgresql://u@h/db?passfile=/p").unwrap();
        assert_eq!((rest.as_str(), ours.len()), ("postgresql://u@h/db", 1));
        let (rest, ours) = split_options("host=h user='o d e' sslmode=require password=a\\'b").unwrap();
        assert_eq!(rest, "host='h' user='o d e' password='a\\'b'");
        assert_eq!(ours, [("sslmode".to_string(), "require".to_string())]);
        let cfg = Config::from_str(&rest).unwrap();
        assert_eq!((cfg.get_user(), cfg.get_password()), (Some("o d e"), Some(&b"a'b"[..])));
        let e = split_options("postgresql://u@h/db?sslcert=/c.pem").unwrap_err();
        assert!(e.contains("'sslcert' is not supported"), "{e}");
        let e = split_options("host=h bogus=1").unwrap_err();
        assert!(e.contains("'bogus'"), "{e}");
    }

    #[test]
    fn bad_urls_get_errors_that_name_the_option_without_the_password() {
        let e = PgTarget::parse("postgresql://u:hunter2@h/db?sslmode=verify").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("sslmode 'verify'") && !e.contains("hunter2"), "{e}");
        let e = PgTarget::parse("postgresql://u:hunter2@h/db?sslkey=k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'sslkey'") && !e.contains("hunter2"), "{e}");
        let t = PgTarget::parse("postgresql://u:hunter2@h/db?sslmode=verify-ca&sslrootcert=/x").unwrap();
        assert_eq!(t.ssl_mode(), SslMode::VerifyCa);
        assert!(!format!("{t:?}").contains("hunter2"));
        let e = t.tls_config().unwrap_err();
        assert!(e.contains("cannot read sslrootcert /x"), "{e}");
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    other:5432:*:ode:wrong\n\
                    127.0.0.1:5432:ode_test:ode:first\\:pw\\\\x\n\
                    *:*:*:ode:fallback\n";
        assert_eq!(
            pgpass_lookup(text, ["127.0.0.1", "5432", "ode_test", "ode"]).as_deref(),
            Some("first:pw\\x")
        );
        assert_eq!(
            pgpass_lookup(text, ["127.0.0.1", "5433", "ode_test", "ode"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup(text, ["h", "5432", "db", "someone"]), None);
        assert_eq!(pgpass_lookup("h:5432:db:u\n", ["h", "5432", "db", "u"]), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_pgpass_file_readable_by_others_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_pgpass(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_pgpass(&path).as_deref(), Some("*:*:*:*:pw\n"));
        assert_eq!(read_pgpass(&dir.path().join("missing")), None);
    }
}
