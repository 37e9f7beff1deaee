//! An in-process [`StudyStore`]: clones share one study set, so several worker threads can use
//! it; nothing survives the process. For tests and throwaway searches.

use crate::store::{Claimed, ParamDistribution, StoreError, StudyStore, TrialRecord, TrialState};
use crate::strategy::Params;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Default)]
struct Inner {
    studies: Vec<String>,
    study_attrs: BTreeMap<(i64, String), serde_json::Value>,
    trials: Vec<(i64, TrialRecord, Option<Instant>)>,
}

/// A study store in memory; `clone()` gives another handle on the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn owned(
    inner: &mut Inner,
    trial_id: i64,
    attempt: u32,
) -> Result<&mut (i64, TrialRecord, Option<Instant>), StoreError> {
    let t = inner
        .trials
        .iter_mut()
        .find(|t| t.1.trial_id == trial_id)
        .ok_or(StoreError::Backend {
            location: "memory".into(),
            reason: format!("no trial {trial_id}"),
        })?;
    if t.1.attempt != attempt {
        return Err(StoreError::Fenced {
            trial_id,
            attempt,
            current: t.1.attempt,
        });
    }
    Ok(t)
}

impl StudyStore for MemoryStore {
    fn open_study(&mut self, name: &str) -> Result<i64, StoreError> {
        Ok(self.with(|s| match s.studies.iter().position(|n| n == name) {
            Some(i) => i as i64,
            None => {
                s.studies.push(name.to_string());
                (s.studies.len() - 1) as i64
            }
        }))
    }

    fn study_names(&mut self) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|s| s.studies.clone()))
    }

    fn enqueue(
        &mut self,
        study: i64,
        number: u64,
        params: &Params,
        _dists: &BTreeMap<String, ParamDistribution>,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            if !s.trials.iter().any(|t| t.0 == study && t.1.number == number) {
                let trial_id = s.trials.len() as i64;
                s.trials.push((
                    study,
                    TrialRecord {
                        trial_id,
                        number,
                        state: TrialState::Waiting,
                        params: params.clone(),
                        value: None,
                        intermediate: BTreeMap::new(),
                        user_attrs: BTreeMap::new(),
                        attempt: 0,
                        worker: None,
                    },
                    None,
                ));
            }
        });
        Ok(())
    }

    fn claim(
        &mut self,
        study: i64,
        worker: &str,
        lease_seconds: f64,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, StoreError> {
        Ok(self.with(|s| {
            for t in s
                .trials
                .iter_mut()
                .filter(|t| t.0 == study && t.1.state == TrialState::Running)
            {
                if t.2.is_some_and(|h| h.elapsed().as_secs_f64() > lease_seconds) {
                    if t.1.attempt >= max_attempts {
                        t.1.state = TrialState::Fail;
                        t.1.user_attrs.insert(
                            "fail_reason".into(),
                            format!("lost its worker {} times", t.1.attempt).into(),
                        );
                    } else {
                        t.1.state = TrialState::Waiting;
                    }
                }
            }
            let next = s
                .trials
                .iter_mut()
                .filter(|t| t.0 == study && t.1.state == TrialState::Waiting)
                .min_by_key(|t| t.1.number)?;
            next.1.state = TrialState::Running;
            next.1.attempt += 1;
            next.1.worker = Some(worker.to_string());
            next.2 = Some(Instant::now());
            Some(Claimed {
                trial_id: next.1.trial_id,
                number: next.1.number,
                attempt: next.1.attempt,
                params: next.1.params.clone(),
            })
        }))
    }

    fn heartbeat(&mut self, trial_id: i64, attempt: u32) -> Result<(), StoreError> {
        self.with(|s| owned(s, trial_id, attempt).map(|t| t.2 = Some(Instant::now())))
    }

    fn report(&mut self, trial_id: i64, attempt: u32, step: u64, value: f64) -> Result<(), StoreError> {
        self.with(|s| {
            owned(s, trial_id, attempt).map(|t| {
                t.1.intermediate.insert(step, value);
            })
        })
    }

    fn set_attr(
        &mut self,
        trial_id: i64,
        attempt: u32,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            owned(s, trial_id, attempt).map(|t| {
                t.1.user_attrs.insert(key.to_string(), value.clone());
            })
        })
    }

    fn finish(&mut self, trial_id: i64, attempt: u32, state: TrialState, value: Option<f64>) -> Result<(), StoreError> {
        self.with(|s| {
            owned(s, trial_id, attempt).map(|t| {
                t.1.state = state;
                t.1.value = value;
            })
        })
    }

    fn set_study_attr(&mut self, study: i64, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.with(|s| s.study_attrs.insert((study, key.to_string()), value.clone()));
        Ok(())
    }

    fn study_attrs(&mut self, study: i64) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        Ok(self.with(|s| {
            s.study_attrs
                .iter()
                .filter(|((id, _), _)| *id == study)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect()
        }))
    }

    fn trials(&mut self, study: i64) -> Result<Vec<TrialRecord>, StoreError> {
        Ok(self.with(|s| {
            let mut v: Vec<TrialRecord> = s.trials.iter().filter(|t| t.0 == study).map(|t| t.1.clone()).collect();
            v.sort_by_key(|t| t.number);
            v
        }))
    }
}
