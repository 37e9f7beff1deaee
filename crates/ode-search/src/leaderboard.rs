//! The leaderboard of a study (complete trials best first, the Pareto front of training time
//! against `val_rmse` marked) and the warning that ends a search when a baseline beats its
//! best trial.

use crate::store::{TrialRecord, TrialState};
use ode_train::Baseline;
use ode_train::verdict::Standing;

/// A row of the leaderboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The trial.
    pub trial: TrialRecord,
    /// Its training seconds (user attribute), if recorded.
    pub train_seconds: Option<f64>,
    /// Whether no other complete trial is both faster and at least as accurate.
    pub pareto: bool,
}

/// Complete trials best first (lowest `val_rmse`), with the Pareto front of training seconds
/// against `val_rmse` marked; other trials follow by number.
pub fn leaderboard(trials: &[TrialRecord]) -> Vec<Entry> {
    let secs = |t: &TrialRecord| t.user_attrs.get("train_seconds").and_then(|v| v.as_f64());
    let complete: Vec<&TrialRecord> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some())
        .collect();
    let mut rows: Vec<Entry> = complete
        .iter()
        .map(|t| {
            let (v, s) = (t.value.unwrap_or(f64::INFINITY), secs(t).unwrap_or(f64::INFINITY));
            let dominated = complete.iter().any(|o| {
                let (ov, os) = (o.value.unwrap_or(f64::INFINITY), secs(o).unwrap_or(f64::INFINITY));
                o.trial_id != t.trial_id && ov <= v && os <= s && (ov < v || os < s)
            });
            Entry {
                trial: (*t).clone(),
                train_seconds: secs(t),
                pareto: !dominated,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        a.trial
            .value
            .partial_cmp(&b.trial.value)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    rows.extend(
        trials
            .iter()
            .filter(|t| !(t.state == TrialState::Complete && t.value.is_some()))
            .map(|t| Entry {
                trial: t.clone(),
                train_seconds: secs(t),
                pareto: false,
            }),
    );
    rows
}

/// The warning to end a search with when its best complete trial does not beat every baseline
/// (read back from the `baseline_<name>` and `skill` attributes that
/// [`crate::driver::baseline_attrs`] records); `None` when it beats them all, or without one.
pub fn best_trial_warning(trials: &[TrialRecord]) -> Option<String> {
    let best = leaderboard(trials)
        .into_iter()
        .find(|e| e.trial.state == TrialState::Complete)?;
    let t = &best.trial;
    let attr = |name: &str| t.user_attrs.get(name).and_then(|v| v.as_f64());
    let what = format!("the best trial (#{})", t.number);
    Standing {
        what: &what,
        val_rmse: t.value?,
        skill: attr("skill"),
        baselines: Baseline::ALL
            .into_iter()
            .filter_map(|b| Some((b, attr(&format!("baseline_{}", b.key()))?)))
            .collect(),
    }
    .warning()
}
