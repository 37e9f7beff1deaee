//! Connections to the PostgreSQL store over TLS, and passwords from a pgpass file.
//!
//! The tests need the server of `ODE_POSTGRES_URL` (see `tests/postgres.rs`) serving TLS with a
//! certificate for 127.0.0.1 signed by the CA in the PEM file `ODE_POSTGRES_TLS_CA`, and a
//! second CA that signed nothing the server shows in `ODE_POSTGRES_TLS_OTHER_CA` (`.ci/run`
//! makes both with openssl and configures the server). Without them each test prints SKIPPED
//! and passes, unless `ODE_REQUIRE_POSTGRES=1`, which makes it fail. The test of servers
//! without TLS needs no server: a listener that answers the TLS request with "no" stands in.

use ode_search::pg_connect::{PgTarget, SslMode};
use ode_search::{PostgresStore, StudyStore};
use std::io::{Read, Write};
use std::net::TcpListener;

/// The server's URL and the two CA files, or `None` after a loud skip line.
fn setup(test: &str) -> Option<(String, String, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("ODE_POSTGRES_URL"),
        var("ODE_POSTGRES_TLS_CA"),
        var("ODE_POSTGRES_TLS_OTHER_CA"),
    ) {
        (Some(url), Some(ca), Some(other)) => Some((url, ca, other)),
        _ => {
            assert!(
                std::env::var("ODE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "ODE_REQUIRE_POSTGRES=1 but ODE_POSTGRES_URL, ODE_POSTGRES_TLS_CA or ODE_POSTGRES_TLS_OTHER_CA is not set"
            );
            let msg = format!("{test}: SKIPPED (no ODE_POSTGRES_URL, ODE_POSTGRES_TLS_CA, ODE_POSTGRES_TLS_OTHER_CA)");
            let _ = writeln!(std::io::stderr(), "\n********** {msg} **********\n");
            None
        }
    }
}

/// `url` with `params` added to its query.
fn with(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// Whether the session is encrypted, as the server sees it.
fn encrypted(url: &str) -> Result<bool, String> {
    let mut client = PgTarget::parse(url)
        .and_then(PgTarget::connect)
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[test]
fn verify_full_with_the_test_ca_connects_encrypted_and_the_store_works() {
    let Some((url, ca, _)) = setup("verify_full_with_the_test_ca_connects_encrypted") else {
        return;
    };
    let tls = with(&url, &format!("sslmode=verify-full&sslrootcert={ca}"));
    assert_eq!(PgTarget::parse(&tls).unwrap().ssl_mode(), SslMode::VerifyFull);
    assert_eq!(encrypted(&tls), Ok(true));
    assert_eq!(
        encrypted(&with(&url, &format!("sslmode=verify-ca&sslrootcert={ca}"))),
        Ok(true)
    );
    // The study store itself, in a schema of its own, over the verified connection.
    let schema = format!("ode_tls_{}", std::process::id());
    let mut admin = PgTarget::parse(&tls).unwrap().connect().unwrap();
    admin.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let store = PostgresStore::connect(&with(&tls, &format!("options=-csearch_path%3D{schema}")));
    let names = store.and_then(|mut s| {
        s.open_study("tls")?;
        s.study_names()
    });
    admin.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).unwrap();
    assert_eq!(names.unwrap(), ["tls"]);
}

#[test]
fn a_certificate_from_another_ca_or_for_another_name_is_refused() {
    let Some((url, ca, other)) = setup("a_certificate_from_another_ca_or_for_another_name_is_refused") else {
        return;
    };
    for mode in ["verify-full", "verify-ca", "require"] {
        let e = encrypted(&with(&url, &format!("sslmode={mode}&sslrootcert={other}"))).unwrap_err();
        assert!(
            e.contains(&format!("cannot connect (sslmode={mode}")) && e.contains("UnknownIssuer"),
            "{mode}: {e}"
        );
    }
    // The server's certificate names 127.0.0.1 only: "localhost" passes the chain check of
    // verify-ca but not verify-full's name check.
    if url.contains("@127.0.0.1") {
        let local = url.replace("@127.0.0.1", "@localhost");
        assert_eq!(
            encrypted(&with(&local, &format!("sslmode=verify-ca&sslrootcert={ca}"))),
            Ok(true)
        );
        let e = encrypted(&with(&local, &format!("sslmode=verify-full&sslrootcert={ca}"))).unwrap_err();
        assert!(e.contains("not valid for name") && e.contains("localhost"), "{e}");
    }
    let e = encrypted(&with(&url, "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")).unwrap_err();
    assert!(e.contains("cannot read sslrootcert /nonexistent/ca.pem"), "{e}");
}

#[test]
fn require_encrypts_prefer_is_the_default_and_disable_does_not_encrypt() {
    let Some((url, _, _)) = setup("require_encrypts_prefer_is_the_default_and_disable_does_not_encrypt") else {
        return;
    };
    assert_eq!(encrypted(&with(&url, "sslmode=require")), Ok(true));
    assert_eq!(encrypted(&url), Ok(true), "prefer (the default) uses the server's TLS");
    assert_eq!(encrypted(&with(&url, "sslmode=disable")), Ok(false));
}

#[test]
fn the_password_comes_from_a_pgpass_file_when_the_url_has_none() {
    let Some((url, ca, _)) = setup("the_password_comes_from_a_pgpass_file_when_the_url_has_none") else {
        return;
    };
    let cfg: postgres::Config = url.parse().unwrap();
    let (Some(user), Some(password)) = (cfg.get_user(), cfg.get_password()) else {
        panic!("ODE_POSTGRES_URL names a user and a password");
    };
    let host = match &cfg.get_hosts()[0] {
        postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("ODE_POSTGRES_URL has a TCP host, not {other:?}"),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let db = cfg.get_dbname().unwrap_or(user);
    let password = String::from_utf8(password.to_vec()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    // Escapes and wildcards: the first line names another database, the second matches.
    std::fs::write(
        &pgpass,
        format!(
            "# test\n{host}:{port}:not_{db}:{user}:wrong\n*:{port}:{db}:{user}:{}\n",
            password.replace(':', "\\:")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let no_pw = format!(
        "postgresql://{user}@{host}:{port}/{db}?sslmode=verify-full&sslrootcert={ca}&passfile={}",
        pgpass.display()
    );
    assert_eq!(encrypted(&no_pw), Ok(true));
    // A file others may read is ignored (with a warning): no password, so no connection.
    if std::env::var_os("PGPASSWORD").is_some() {
        return; // the password would come from there
    }
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = encrypted(&no_pw).unwrap_err();
    assert!(e.contains("password"), "{e}");
}

/// What a server without TLS sees of a client: the first message (8 bytes: length and code) is
/// answered `N`; then the next message's length and code, or `None` when the client hangs up.
fn first_two_messages(sslmode: &str) -> ([u8; 8], Option<[u8; 8]>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut first = [0u8; 8];
        conn.read_exact(&mut first).unwrap();
        conn.write_all(b"N").unwrap();
        let mut second = [0u8; 8];
        let second = conn.read_exact(&mut second).ok().map(|()| second);
        (first, second) // dropping the connection ends the client's attempt
    });
    let url = format!("postgresql://u:pw@127.0.0.1:{port}/db?{sslmode}connect_timeout=5");
    let err = match PgTarget::parse(&url).unwrap().connect() {
        Ok(_) => panic!("connected to a server that hung up"),
        Err(e) => e.to_string(),
    };
    let (first, second) = server.join().unwrap();
    (first, second, err)
}

#[test]
fn prefer_falls_back_to_plain_on_a_server_without_tls_and_require_does_not() {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]; // 80877103
    const PROTOCOL_3: [u8; 4] = [0, 3, 0, 0]; // a StartupMessage's protocol version
    for mode in ["", "sslmode=prefer&"] {
        let (first, second, err) = first_two_messages(mode);
        assert_eq!(first, SSL_REQUEST, "{mode}: the client asks for TLS first");
        let second = second.unwrap_or_else(|| panic!("{mode}: the client hung up: {err}"));
        assert_eq!(second[4..], PROTOCOL_3, "{mode}: then starts a plain session");
    }
    let (first, second, err) = first_two_messages("sslmode=require&");
    assert_eq!(first, SSL_REQUEST);
    assert_eq!(second, None, "require sends nothing in the clear");
    assert!(err.contains("sslmode=require") && err.contains("TLS"), "{err}");
    let (first, _, _) = first_two_messages("sslmode=disable&");
    assert_eq!(first[4..], PROTOCOL_3, "disable starts in the clear");
}

/// A server that agrees to TLS and then sends garbage: the first 8 bytes the client sends on
/// its next connection (a plain retry), or zeros when it made none (the test's own connection,
/// made once the client has given up, stands in for it).
fn retry_after_a_failed_handshake(sslmode: &str) -> ([u8; 8], String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 8];
        conn.read_exact(&mut request).unwrap();
        conn.write_all(b"SHTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        drop(conn);
        let (mut next, _) = listener.accept().unwrap();
        let mut first = [0u8; 8];
        next.read_exact(&mut first).unwrap();
        first
    });
    let url = format!("postgresql://u:pw@127.0.0.1:{port}/db?{sslmode}connect_timeout=5");
    let err = match PgTarget::parse(&url).unwrap().connect() {
        Ok(_) => panic!("connected to a server that hung up"),
        Err(e) => e.to_string(),
    };
    if !server.is_finished() {
        let _ = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| c.write_all(&[0; 8]));
    }
    (server.join().unwrap(), err)
}

#[test]
fn prefer_retries_in_plain_after_a_failed_tls_handshake_and_require_does_not() {
    let (retry, err) = retry_after_a_failed_handshake("");
    assert_eq!(
        retry[4..],
        [0, 3, 0, 0],
        "prefer retries with a plain StartupMessage: {err}"
    );
    let (retry, err) = retry_after_a_failed_handshake("sslmode=require&");
    assert_eq!(retry, [0; 8], "require makes no second connection");
    assert!(err.contains("TLS handshake"), "{err}");
}
