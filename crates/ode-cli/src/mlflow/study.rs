//! A search in MLflow: one parent run per study (named after it) and a child run per attempt
//! at a trial (`trial-N`, tagged `mlflow.parentRunId`). The parent's id is kept in the study
//! (attribute [`PARENT_RUN_KEY`]), so `ode worker`s on other machines attach their trials to it.

use super::batch::Record;
use super::run::MlflowRun;
use super::sender::{Experiment, NewRun, RunHandle, Sender};
use super::{Res, TrackingArgs, client::Client, source_tags};
use ode_search::driver::SearchConfig;
use ode_search::store::StudyStore;
use ode_search::trial_tracker::{TrialTracker, TrialTrackerFn};
use ode_train::Device;
use std::path::Path;
use std::time::Duration;

/// Study attribute: the id of the study's parent run.
pub const PARENT_RUN_KEY: &str = "mlflow:parent_run_id";
/// Study attribute: the id of the parent run's experiment (its trials' runs go there too).
pub const EXPERIMENT_KEY: &str = "mlflow:experiment_id";

/// Longest wait at the start of a search for the server to create a new parent run, whose id
/// the study keeps.
const PARENT_WAIT: Duration = Duration::from_secs(10);

/// The MLflow side of `ode search` and `ode worker`.
pub struct StudyRuns {
    sender: Sender,
    parent: RunHandle,
    experiment: Experiment,
    flush_timeout: Duration,
}

impl StudyRuns {
    /// When `--tracker mlflow`: the study's parent run, the one its attributes name, else a new
    /// one named `--run-name` or after the study (its id is saved in the study once the server
    /// has created it).
    pub fn start(
        args: &TrackingArgs,
        store: &mut dyn StudyStore,
        study: i64,
        cfg: &SearchConfig,
        command: &str,
    ) -> Res<Option<Self>> {
        let Some(m) = args.mlflow()? else {
            return Ok(None);
        };
        let sender = Sender::start(Client::new(&m.uri)).map_err(|e| format!("MLflow: cannot start a thread: {e}"))?;
        let attrs = store.study_attrs(study)?;
        let known = |k: &str| attrs.get(k).and_then(|v| v.as_str()).map(String::from);
        let name = args.run_name.clone().unwrap_or_else(|| cfg.study.clone());
        let runs = match (known(PARENT_RUN_KEY), known(EXPERIMENT_KEY)) {
            (Some(run_id), Some(exp)) => {
                eprintln!(
                    "tracking in MLflow at {}: trials are child runs of the study's run {run_id} (experiment {exp})",
                    m.uri
                );
                StudyRuns {
                    parent: sender.known_run(&name, &run_id, &exp, None),
                    experiment: Experiment::Id(exp),
                    sender,
                    flush_timeout: m.flush_timeout,
                }
            }
            _ => {
                let mut tags = source_tags(command);
                tags.push(("study".into(), cfg.study.clone()));
                let parent = sender.create_run(NewRun {
                    experiment: Experiment::Name(m.experiment.clone()),
                    name: name.clone(),
                    tags,
                    parent: None,
                });
                let runs = StudyRuns {
                    parent,
                    experiment: Experiment::Name(m.experiment.clone()),
                    sender,
                    flush_timeout: m.flush_timeout,
                };
                runs.log_study(cfg);
                runs.save_parent(store, study, &m.uri, &m.experiment, &name)?;
                runs
            }
        };
        Ok(Some(runs))
    }

    /// Saves the new parent run's id in the study once the server has created it (waiting a
    /// little), and logs the study's settings to it.
    fn save_parent(&self, store: &mut dyn StudyStore, study: i64, uri: &str, experiment: &str, name: &str) -> Res<()> {
        match self.sender.run_id(
            self.parent,
            PARENT_WAIT.min(self.flush_timeout.max(Duration::from_secs(1))),
        ) {
            Some((run_id, exp)) => {
                store.set_study_attr(study, PARENT_RUN_KEY, &run_id.clone().into())?;
                store.set_study_attr(study, EXPERIMENT_KEY, &exp.into())?;
                eprintln!(
                    "tracking in MLflow at {uri}: experiment '{experiment}', run '{name}' ({run_id}) with a child run \
                     per trial"
                );
            }
            None => eprintln!(
                "warning: MLflow: the study's run '{name}' is not created yet, so its id is not in the study: trials \
                 of this process become its child runs once it is, `ode worker`s started meanwhile make their own"
            ),
        }
        Ok(())
    }

    /// Logs the study's settings as params of a new parent run (params never change).
    fn log_study(&self, cfg: &SearchConfig) {
        let strategy = match cfg.strategy {
            ode_search::Strategy::Grid => "grid".to_string(),
            ode_search::Strategy::Random { trials } => format!("random ({trials} trials)"),
            ode_search::Strategy::Asha {
                trials,
                reduction_factor,
                min_epochs,
            } => format!("asha ({trials} trials, reduction factor {reduction_factor}, min epochs {min_epochs})"),
        };
        let params = [
            ("strategy", strategy),
            ("study_seed", cfg.seed.to_string()),
            ("space", cfg.space.to_toml()),
            ("base", cfg.base.to_toml()),
        ];
        for (key, value) in params.into_iter().filter(|(_, v)| !v.trim().is_empty()) {
            self.sender.log(self.parent, Record::Param { key: key.into(), value });
        }
    }

    /// The per-trial trackers for [`SearchConfig::trial_tracker`]: a child run `trial-N` of
    /// the parent, tagged with the trial number and the device it is configured to train on.
    pub fn trial_trackers(&self, cfg: &SearchConfig) -> TrialTrackerFn {
        let (sender, parent, experiment) = (self.sender.clone(), self.parent, self.experiment.clone());
        let device = match cfg.base.clone().resolve(None).train.device {
            Device::Cpu => format!("cpu ({} threads)", cfg.threads_per_trial.max(1)),
            d => d.name().to_string(),
        };
        let source = source_tags("ode search trial");
        TrialTrackerFn::new(move |number, _params| -> Box<dyn TrialTracker> {
            let mut tags = source.clone();
            tags.push(("trial".into(), number.to_string()));
            tags.push(("device".into(), device.clone()));
            let run = sender.create_run(NewRun {
                experiment: experiment.clone(),
                name: format!("trial-{number}"),
                tags,
                parent: Some(parent),
            });
            Box::new(MlflowRun::new(sender.clone(), run))
        })
    }

    /// Uploads `artifacts` (path, artifact name; those that exist) to the parent run and ends
    /// it (`FINISHED`, or `FAILED` when `ok` is false), then waits (bounded) for everything to
    /// be sent (as on drop). Only the search that runs the study calls it, not workers.
    pub fn finish(self, ok: bool, artifacts: &[(&Path, &str)]) {
        for &(path, name) in artifacts {
            match std::fs::read(path) {
                Ok(bytes) => self.sender.artifact(self.parent, name, bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("warning: MLflow: cannot read {} to upload it: {e}", path.display()),
            }
        }
        self.sender.end(self.parent, if ok { "FINISHED" } else { "FAILED" });
    }
}

impl Drop for StudyRuns {
    /// Waits (bounded) for everything queued to be sent.
    fn drop(&mut self) {
        self.sender.close(self.flush_timeout);
    }
}
