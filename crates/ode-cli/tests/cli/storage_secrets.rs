//! No output of `ode` (and nothing it stores in a study) contains the password of a
//! `--storage` URL: `ode search`, `ode worker` and `ode study` run against a working URL, a
//! wrong password, a host where nothing listens, bad TLS options and a malformed URL, and every
//! stdout and stderr is searched for the password.
//!
//! Needs `ODE_POSTGRES_SENTINEL_URL`: a role on the test server whose password is a sentinel
//! string found nowhere else (at least 12 characters), allowed to create schemas (`.ci/run`
//! makes `ode_sentinel`). Without it the test prints SKIPPED and passes, unless
//! `ODE_REQUIRE_POSTGRES=1`, which makes it fail.

use ode_search::pg_connect::PgTarget;
use std::process::Command;

/// Runs `ode` with `env` added; (success, stdout + stderr).
fn ode(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(args)
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent/pgpass")
        .envs(env.iter().copied())
        .output()
        .expect("run ode");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A schema of the test's own, dropped when this goes (also when the test fails).
struct Schema {
    admin: postgres::Client,
    name: String,
}

impl Schema {
    fn create(url: &str, name: &str) -> Schema {
        let mut admin = PgTarget::parse(url)
            .and_then(PgTarget::connect)
            .expect("the sentinel URL connects");
        admin.batch_execute(&format!("CREATE SCHEMA {name}")).unwrap();
        Schema {
            admin,
            name: name.to_string(),
        }
    }
}

impl Schema {
    /// The number of text values stored in the schema's studies (names, study and trial
    /// attributes), and how many of them contain `needle`.
    fn text_rows(&mut self, needle: &str) -> (i64, i64) {
        let schema = &self.name;
        let all_text = format!(
            "SELECT value_json AS t FROM {schema}.study_user_attributes \
             UNION ALL SELECT value_json FROM {schema}.study_system_attributes \
             UNION ALL SELECT value_json FROM {schema}.trial_user_attributes \
             UNION ALL SELECT value_json FROM {schema}.trial_system_attributes \
             UNION ALL SELECT study_name FROM {schema}.studies"
        );
        let row = self
            .admin
            .query_one(
                &format!("SELECT count(*), count(*) FILTER (WHERE v.t LIKE $1) FROM ({all_text}) v"),
                &[&format!("%{needle}%")],
            )
            .unwrap();
        (row.get(0), row.get(1))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// `url` with `params` added to its query.
fn with(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

#[test]
fn no_output_or_study_attribute_shows_the_storage_password() {
    let Some(url) = std::env::var("ODE_POSTGRES_SENTINEL_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("ODE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "ODE_REQUIRE_POSTGRES=1 but ODE_POSTGRES_SENTINEL_URL is not set"
        );
        eprintln!("********** no_output_shows_the_storage_password: SKIPPED (no ODE_POSTGRES_SENTINEL_URL) **********");
        return;
    };
    let (sentinel, host_port) = password_and_host(&url);
    assert!(sentinel.len() >= 12, "the sentinel password is at least 12 characters");
    let schema = format!("ode_sentinel_{}", std::process::id());
    let mut db = Schema::create(&url, &schema);
    let good = with(&url, &format!("options=-csearch_path%3D{schema}"));
    let wrong_pw = good.replace(&format!(":{sentinel}@"), &format!(":{sentinel}x@"));
    let no_server = good.replace(&format!("@{host_port}/"), "@127.0.0.1:1/");
    let bad_tls = with(&good, "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    let bad_option = with(&good, "sslkey=/k.pem");
    let bad_scheme = good.replacen("postgresql", "postgre", 1);
    assert!(wrong_pw != good && no_server != good && bad_scheme != good);
    let out = tempfile::tempdir().unwrap();
    let best = out.path().join("best.toml");
    let small = [
        "--best-config",
        best.to_str().unwrap(),
        "--dataset",
        "five-channel",
        "--rows",
        "300",
        "--hidden-dim",
        "8",
        "--context-len",
        "8",
        "--horizon",
        "4",
        "--epochs",
        "1",
    ];
    let mut outputs = Vec::new();
    let mut run = |args: Vec<&str>, env: &[(&str, &str)], want_ok: bool| {
        let (ok, text) = ode(&args, env);
        assert_eq!(ok, want_ok, "ode {args:?}: {text}");
        assert!(!text.contains(&sentinel), "ode {args:?} printed the password: {text}");
        outputs.push(text);
    };
    for storage in [&good, &wrong_pw, &no_server, &bad_tls, &bad_option, &bad_scheme] {
        let ok = storage == &good;
        let mut search = vec![
            "search",
            "--storage",
            storage,
            "--study",
            "s",
            "--trials",
            "2",
            "--workers",
            "1",
        ];
        search.extend(small);
        run(search, &[], ok);
        run(
            vec!["worker", "--storage", storage, "--study", "s", "--workers", "1"],
            &[],
            ok,
        );
        run(vec!["study", "list", "--storage", storage], &[], ok);
        run(vec!["study", "show", "--storage", storage, "--study", "s"], &[], ok);
        run(vec!["study", "export", "--storage", storage, "--study", "s"], &[], ok);
    }
    let mut enqueue = vec!["search", "--storage", &good, "--study", "q", "--workers", "0"];
    enqueue.extend(small);
    run(enqueue, &[], true);
    // The password from PGPASSWORD instead of the URL.
    let no_pw = good.replace(&format!(":{sentinel}@"), "@");
    run(
        vec!["study", "list", "--storage", &no_pw],
        &[("PGPASSWORD", &sentinel)],
        true,
    );
    // ... or from the pgpass file PGPASSFILE names, or else ~/.pgpass; none: no connection.
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("*:*:*:*:{sentinel}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (pgpass, home) = (pgpass.to_str().unwrap(), home.path().to_str().unwrap());
    let list = vec!["study", "list", "--storage", &no_pw];
    run(list.clone(), &[("PGPASSFILE", pgpass)], true);
    run(list.clone(), &[("PGPASSFILE", ""), ("HOME", home)], true);
    let empty = tempfile::tempdir().unwrap();
    run(
        list,
        &[("PGPASSFILE", ""), ("HOME", empty.path().to_str().unwrap())],
        false,
    );
    let (good_ok, wrong_ok) = (&outputs[0], &outputs[5]);
    assert!(
        good_ok.contains("study 's' in postgresql://") && good_ok.contains(":***@"),
        "{good_ok}"
    );
    assert!(wrong_ok.contains("password authentication failed"), "{wrong_ok}");
    assert!(outputs.iter().any(|o| o.contains("'sslkey' is not supported")));
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("cannot read sslrootcert /nonexistent/ca.pem"))
    );
    // Nothing stored in the study holds the password either.
    let (rows, stored) = db.text_rows(&sentinel);
    let dataset = db.text_rows("five-channel").1;
    assert!(dataset > 0, "the search finds what the study stores (its dataset)");
    drop(db);
    assert!(rows > 10, "the study definition and the trials' attributes are stored");
    assert_eq!(stored, 0, "a study or trial attribute holds the password");
}

/// The password and the `HOST[:PORT]` of a `postgresql://USER:PASSWORD@HOST[:PORT]/DB` URL.
fn password_and_host(url: &str) -> (String, String) {
    let rest = url.split_once("://").expect("a postgresql:// URL").1;
    let (creds, tail) = rest.split_once('@').expect("USER:PASSWORD@ in the URL");
    let password = creds.split_once(':').expect("a password in the URL").1;
    (
        password.to_string(),
        tail.split(['/', '?']).next().unwrap_or_default().to_string(),
    )
}
