//! optuna-dashboard opens a study `ode search` wrote: its HTTP API lists the study, names the
//! objective `val_rmse` and shows the trials with the values and parameters we stored.
//!
//! Needs optuna-dashboard (pinned in `tests/optuna-dashboard-requirements.txt`): the executable
//! in `ODE_OPTUNA_DASHBOARD`, or `optuna-dashboard` on PATH. Without it the test skips with a
//! message, unless `ODE_REQUIRE_OPTUNA_DASHBOARD=1` (CI), where it fails.

use crate::common;
use common::{SEARCH_SMALL, external_tool, ode};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SPACE: &str = "[params.latent_dim]\nchoices = [4, 8]\n[params.solver]\nchoices = [\"euler\", \"rk4\"]\n";

/// The dashboard executable, or None (after the skip message) when there is none.
fn dashboard() -> Option<String> {
    let how = "pip install -r crates/ode-cli/tests/optuna-dashboard-requirements.txt and set ODE_OPTUNA_DASHBOARD \
               to its optuna-dashboard";
    external_tool(
        "ODE_OPTUNA_DASHBOARD",
        "optuna-dashboard",
        "ODE_REQUIRE_OPTUNA_DASHBOARD",
        how,
    )
}

/// The dashboard server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the dashboard on a free local port for the SQLite file `db`.
fn serve(exe: &str, db: &Path, dir: &Path) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(dir.join("dashboard.log")).unwrap();
    let child = Command::new(exe)
        .arg(format!("sqlite:///{}", db.display()))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("optuna-dashboard starts");
    (Server(child), port)
}

/// `GET path` over plain HTTP/1.0: the status code and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((code, body.to_string()))
}

/// Polls `path` until the server answers 200 (or fails the test after a minute).
fn get_when_up(server: &mut Server, port: u16, path: &str, log: &Path) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Ok((200, body)) = get(port, path) {
            return serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        }
        let exited = server.0.try_wait().unwrap();
        if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("optuna-dashboard did not serve {path} ({exited:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn optuna_dashboard_shows_an_ode_search_study_with_its_metric_name() {
    let Some(exe) = dashboard() else { return };
    let dir = tempfile::tempdir().unwrap();
    let space = dir.path().join("space.toml");
    std::fs::write(&space, SPACE).unwrap();
    let db = dir.path().join("s.db");
    let storage = format!("sqlite:{}", db.display());
    let best = dir.path().join("best.toml");
    let mut args = vec![
        "search",
        "--dataset",
        "spiral",
        "--space",
        space.to_str().unwrap(),
        "--strategy",
        "grid",
        "--storage",
        &storage,
        "--study",
        "dash",
        "--best-config",
        best.to_str().unwrap(),
    ];
    args.extend(SEARCH_SMALL);
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
    let (ok, out, err) = ode(&["study", "export", "--storage", &storage, "--study", "dash"]);
    assert!(ok, "{err}");
    let ours: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();

    let (mut server, port) = serve(&exe, &db, dir.path());
    let log = dir.path().join("dashboard.log");
    let studies = get_when_up(&mut server, port, "/api/studies", &log);
    let study = studies["study_summaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["study_name"] == "dash")
        .unwrap_or_else(|| panic!("no study 'dash' in {studies:#}"));
    let id = study["study_id"].as_i64().unwrap();
    let detail = get_when_up(&mut server, port, &format!("/api/studies/{id}"), &log);
    assert_eq!(detail["objective_names"], serde_json::json!(["val_rmse"]), "{detail:#}");
    assert_eq!(detail["directions"], serde_json::json!(["minimize"]));

    let trials = detail["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{detail:#}");
    for t in trials {
        let mine = ours
            .iter()
            .find(|o| o["number"] == t["number"])
            .unwrap_or_else(|| panic!("trial {} not in our export", t["number"]));
        assert_eq!(t["state"], "Complete");
        let value = t["values"][0].as_f64().unwrap();
        assert!(
            (value - mine["value"].as_f64().unwrap()).abs() < 1e-12,
            "{t:#}\n{mine:#}"
        );
        let shown = |name: &str| {
            t["params"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["param_external_value"].as_str().unwrap().to_string())
        };
        let solver = mine["params"]["solver"].as_str().unwrap();
        assert_eq!(shown("solver").as_deref(), Some(solver), "{t:#}");
        assert_eq!(
            shown("latent_dim"),
            Some(mine["params"]["latent_dim"].to_string()),
            "{t:#}"
        );
        // Two epochs reported per trial: the learning curve the dashboard plots.
        assert_eq!(t["intermediate_values"].as_array().unwrap().len(), 2, "{t:#}");
    }
}
