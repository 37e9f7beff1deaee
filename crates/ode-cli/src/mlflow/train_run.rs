//! The MLflow run of `ode train`: a new run, or with `--resume` the run the resumed training
//! logged to (named in its folder's [`RunFile`]), so that one training is one run however often
//! it was stopped and resumed.

use super::run::MlflowRun;
use super::run_file::{self, RunFile};
use super::sender::{Experiment, NewRun, RunHandle, Sender};
use super::{Mlflow, Res, TrackingArgs, client, source_tags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The training `ode train --resume` goes on with.
#[derive(Debug, Clone, Copy)]
pub struct ResumeFrom<'a> {
    /// The folder of the resumed checkpoint (where its [`RunFile`] is, if it was tracked).
    pub dir: &'a Path,
    /// The last epoch the checkpoint had trained.
    pub epoch: usize,
}

/// The MLflow run of `ode train`, as a tracker; it keeps the training folder's [`RunFile`].
pub struct TrainRun {
    sender: Sender,
    run: Option<MlflowRun>,
    handle: RunHandle,
    flush_timeout: Duration,
    /// The record of the run, kept in `out` once the server has given its id.
    record: RunFile,
    out: PathBuf,
    /// The record changed since it was last written.
    dirty: bool,
    /// The first epoch this process trains (a param that changed on resume is logged under it).
    first_epoch: usize,
}

impl TrainRun {
    /// Starts the run when `--tracker mlflow`: with `resume`, the resumed training's run when
    /// it is on the same server and experiment (and `--run-name`, if given, names it); else a
    /// new run named `--run-name` or after the `out` folder, tagged with the solver and the
    /// source.
    pub fn start(args: &TrackingArgs, out: &Path, solver: &str, resume: Option<ResumeFrom<'_>>) -> Res<Option<Self>> {
        let Some(m) = args.mlflow()? else {
            return Ok(None);
        };
        let sender = Sender::start(client::Client::new(&m.uri))
            .map_err(|e| format!("MLflow: cannot start the sending thread: {e}"))?;
        let previous = resume.and_then(|r| continued_run(args, &m, r));
        let (handle, record) = match previous {
            Some(record) => {
                let handle = sender.known_run(
                    &record.run_name,
                    &record.run_id,
                    &record.experiment_id,
                    record.artifact_uri.as_deref(),
                );
                sender.reopen(handle);
                eprintln!(
                    "tracking in MLflow at {}: experiment '{}', run '{}' ({}) goes on",
                    m.uri, m.experiment, record.run_name, record.run_id
                );
                (handle, record)
            }
            None => new_run(&sender, &m, run_name(args, out), solver),
        };
        Ok(Some(Self {
            run: Some(MlflowRun::new(sender.clone(), handle)),
            sender,
            handle,
            flush_timeout: m.flush_timeout,
            record,
            out: out.to_path_buf(),
            dirty: true,
            first_epoch: resume.map_or(1, |r| r.epoch + 1),
        }))
    }

    fn run(&mut self) -> &mut MlflowRun {
        self.run.as_mut().expect("the run ends only in finish or drop")
    }

    /// Writes the run's record into the training folder once the server has given the run's id
    /// (a warning if it cannot be written: only a later `--resume` would miss it).
    fn save(&mut self) {
        if !self.dirty {
            return;
        }
        if self.record.run_id.is_empty() {
            let Some((id, experiment_id)) = self.sender.run_id(self.handle, Duration::ZERO) else {
                return;
            };
            self.record.run_id = id;
            self.record.experiment_id = experiment_id;
            self.record.artifact_uri = self.sender.artifact_uri(self.handle);
        }
        self.dirty = false;
        if let Err(e) = self.record.write(&self.out) {
            eprintln!(
                "warning: cannot write {}: {e} (a later --resume would start a new MLflow run)",
                self.out.join(run_file::FILE).display()
            );
        }
    }

    /// Uploads the artifacts (`checkpoint.safetensors`, `report.html` and `forecasts.json` of
    /// the training folder, those that exist), sets the device tag and the status (`FINISHED`,
    /// or `FAILED` when `ok` is false), and waits (bounded) for everything to be sent.
    pub fn finish(mut self, device: &str, ok: bool) {
        if let Some(mut run) = self.run.take() {
            run.tag("device", device);
            for name in ["checkpoint.safetensors", "report.html", crate::forecasts::FILE] {
                run.artifact(&self.out.join(name), name);
            }
            run.end(if ok { "FINISHED" } else { "FAILED" });
        }
    }
}

/// A new run's name: `--run-name`, else the training folder's name.
fn run_name(args: &TrackingArgs, out: &Path) -> String {
    args.run_name.clone().unwrap_or_else(|| {
        std::path::absolute(out)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "ode-train".into())
    })
}

/// A new run on `m`'s server, and its record (without the id the server will give it).
fn new_run(sender: &Sender, m: &Mlflow, name: String, solver: &str) -> (RunHandle, RunFile) {
    let mut tags = source_tags("ode train");
    tags.push(("solver".into(), solver.into()));
    let handle = sender.create_run(NewRun {
        experiment: Experiment::Name(m.experiment.clone()),
        name: name.clone(),
        tags,
        parent: None,
    });
    eprintln!(
        "tracking in MLflow at {}: experiment '{}', run '{name}'",
        m.uri, m.experiment
    );
    let record = RunFile {
        tracking_uri: m.uri.clone(),
        experiment: m.experiment.clone(),
        experiment_id: String::new(),
        run_id: String::new(),
        run_name: name,
        artifact_uri: None,
        params: BTreeMap::new(),
    };
    (handle, record)
}

/// The record of the resumed training's run when this training goes on with it: same server,
/// same experiment, and the same name if `--run-name` is given. Says why when it does not.
fn continued_run(args: &TrackingArgs, m: &Mlflow, resume: ResumeFrom<'_>) -> Option<RunFile> {
    let record = match RunFile::read(resume.dir) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("warning: {e}; logging to a new MLflow run");
            return None;
        }
    };
    let why_not = if record.run_id.is_empty() {
        Some("it has no run id".to_string())
    } else if record.tracking_uri != m.uri {
        Some(format!("it logged to {}", record.tracking_uri))
    } else if record.experiment != m.experiment {
        Some(format!("it logged to experiment '{}'", record.experiment))
    } else {
        args.run_name
            .as_ref()
            .filter(|n| **n != record.run_name)
            .map(|_| format!("its run is named '{}'", record.run_name))
    };
    match why_not {
        None => Some(record),
        Some(why) => {
            eprintln!(
                "MLflow: a new run rather than the resumed training's run {} ({why})",
                record.run_id
            );
            None
        }
    }
}

impl ode_train::Tracker for TrainRun {
    /// A param the run holds with the same value is not sent again; one that changed on resume
    /// goes under `NAME.from_epoch_N` (see [`run_file::param_key`]).
    fn log_param(&mut self, name: &str, value: &str) {
        let Some(key) = run_file::param_key(&self.record.params, name, value, self.first_epoch) else {
            return;
        };
        self.run().log_param(&key, value);
        self.record.params.insert(key, value.to_string());
        self.dirty = true;
        self.save();
    }

    fn log_metric(&mut self, name: &str, value: f64, step: usize) {
        self.run().log_metric(name, value, step);
        self.save();
    }
}

impl Drop for TrainRun {
    /// Ends the run (as `FAILED` unless [`TrainRun::finish`] ended it), flushes, and writes the
    /// run's record if the server gave its id only now.
    fn drop(&mut self) {
        drop(self.run.take());
        self.sender.close(self.flush_timeout);
        self.save();
    }
}
