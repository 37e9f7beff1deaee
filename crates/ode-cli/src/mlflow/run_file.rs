//! `mlflow_run.json` in an `ode train` folder: the MLflow run the training logs to and the
//! params that run holds, so that `ode train --resume` goes on with the same run.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file's name in the training's `--out` folder.
pub const FILE: &str = "mlflow_run.json";

/// Where a training's run lives on the server, and what it holds already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    /// The tracking server (as checked by `--tracking-uri`).
    pub tracking_uri: String,
    /// The experiment's name, as given when the run was created.
    pub experiment: String,
    /// The experiment's id on the server.
    pub experiment_id: String,
    /// The run's id on the server.
    pub run_id: String,
    /// The run's name.
    pub run_name: String,
    /// The run's artifact root, where the checkpoint and report go.
    pub artifact_uri: Option<String>,
    /// Every param logged to the run, by the key it was logged under.
    pub params: BTreeMap<String, String>,
}

impl RunFile {
    /// The file in `dir`, if there is one; an error names the file when it cannot be read.
    pub fn read(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{} is not an MLflow run record: {e}", path.display()))
    }

    /// Writes the file into `dir` (through a temporary file, so a crash leaves the old one).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(tmp, dir.join(FILE))
    }
}

/// The key under which param `name` = `value` goes to a run that holds `params`, when the
/// training resumed at `first_epoch`; `None` when the run has that value already.
///
/// MLflow refuses to change a logged param, so a value that changed on resume is logged as
/// `NAME.from_epoch_N` (then `NAME.from_epoch_N_2`, … if that key is taken by another value).
pub fn param_key(params: &BTreeMap<String, String>, name: &str, value: &str, first_epoch: usize) -> Option<String> {
    let base = format!("{name}.from_epoch_{first_epoch}");
    let candidates = std::iter::once(name.to_string())
        .chain(std::iter::once(base.clone()))
        .chain((2..).map(|i| format!("{base}_{i}")));
    for key in candidates {
        match params.get(&key) {
            None => return Some(key),
            Some(v) if v == value => return None,
            Some(_) => {}
        }
    }
    unreachable!("the candidate keys never run out")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_param_is_logged_once_and_a_changed_one_under_its_epoch() {
        let p = held(&[("learning_rate", "0.01")]);
        assert_eq!(param_key(&p, "seed", "1", 4).as_deref(), Some("seed"));
        assert_eq!(param_key(&p, "learning_rate", "0.01", 4), None);
        assert_eq!(
            param_key(&p, "learning_rate", "0.001", 4).as_deref(),
            Some("learning_rate.from_epoch_4")
        );
        let p = held(&[("learning_rate", "0.01"), ("learning_rate.from_epoch_4", "0.001")]);
        assert_eq!(param_key(&p, "learning_rate", "0.001", 4), None);
        assert_eq!(
            param_key(&p, "learning_rate", "0.002", 4).as_deref(),
            Some("learning_rate.from_epoch_4_2")
        );
    }

    #[test]
    fn the_file_round_trips_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunFile::read(dir.path()).unwrap(), None);
        let f = RunFile {
            tracking_uri: "http://127.0.0.1:5000".into(),
            experiment: "Default".into(),
            experiment_id: "0".into(),
            run_id: "abc".into(),
            run_name: "run".into(),
            artifact_uri: Some("mlflow-artifacts:/0/abc/artifacts".into()),
            params: held(&[("seed", "1")]),
        };
        f.write(dir.path()).unwrap();
        assert_eq!(RunFile::read(dir.path()).unwrap(), Some(f));
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        let e = RunFile::read(dir.path()).unwrap_err();
        assert!(e.contains(FILE) && e.contains("not an MLflow run record"), "{e}");
    }
}
