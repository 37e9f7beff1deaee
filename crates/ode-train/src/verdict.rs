//! Whether a model beats its reference forecasts, and the warning that ends a run or a search
//! when it does not.
//!
//! A tuned Neural ODE that loses to persistence, to the context mean, to the value one season
//! earlier or to a ridge regression on the context is not worth its cost, and a user who reads
//! only the best `val_rmse` cannot tell. [`Standing::warning`] says so, names the baselines that
//! win, and lists what to try.
//!
//! ```
//! use ode_train::Baseline;
//! use ode_train::verdict::Standing;
//!
//! let s = Standing {
//!     what: "the best trial (#4)",
//!     val_rmse: 0.114,
//!     skill: Some(0.76),
//!     baselines: vec![(Baseline::Persistence, 0.479), (Baseline::LinearAr, 0.028)],
//! };
//! assert_eq!(s.beaten_by(), vec![(Baseline::LinearAr, 0.028)]);
//! let w = s.warning().unwrap();
//! assert!(w.starts_with("the best trial (#4) beats persistence (skill +0.760) but not linear AR (0.0280)"));
//! ```

use crate::baselines::{Baseline, Baselines};

/// What to try when a model loses to a baseline (the tuning guide's "Poor accuracy" list and
/// the project's own levers).
const TRY: &str = "Try: a longer context (--context-len; context_len in Python and TOML); per-window \
     normalisation if not used yet (--normalization window; normalization = \"window\"; in a search space, \
     normalization = [\"window\"]); the tuning guide's \"Poor accuracy\" list: increase latent_dim or hidden_dim, \
     use dopri5, tighten rtol/atol, train longer (--epochs)";

/// A model's validation score next to its baselines' (all normalised RMSE on the same windows).
#[derive(Debug, Clone, PartialEq)]
pub struct Standing<'a> {
    /// Names the model in the message (`the best model (epoch 3)`, `the best trial (#4)`).
    pub what: &'a str,
    /// Its validation RMSE over every target.
    pub val_rmse: f64,
    /// Its skill against persistence, `1 − rmse / rmse_persistence`, over the targets
    /// persistence covers (see [`Baselines::skill`]); `None` without persistence.
    pub skill: Option<f64>,
    /// Each baseline computed, with its validation RMSE.
    pub baselines: Vec<(Baseline, f64)>,
}

impl<'a> Standing<'a> {
    /// The standing of a model with `val_rmse` and `skill` against a run's baselines.
    pub fn new(what: &'a str, val_rmse: f64, skill: Option<f64>, b: &Baselines) -> Self {
        let baselines = b.scores.iter().map(|s| (s.baseline, s.rmse)).collect();
        Standing {
            what,
            val_rmse,
            skill,
            baselines,
        }
    }

    /// The baselines at least as good as the model, best first.
    ///
    /// Persistence, window mean and seasonal naive skip a target that is not a feature, so they
    /// are compared with the model's RMSE over the targets they cover, `rmse_persistence ·
    /// (1 − skill)` (the same restriction [`Baselines::skill`] makes); linear AR covers every
    /// target and is compared with `val_rmse`.
    pub fn beaten_by(&self) -> Vec<(Baseline, f64)> {
        let persistence = self.rmse(Baseline::Persistence);
        let naive_model = match (persistence, self.skill) {
            (Some(p), Some(s)) => p * (1.0 - s),
            _ => self.val_rmse,
        };
        let mut out: Vec<(Baseline, f64)> = self
            .baselines
            .iter()
            .copied()
            .filter(|(b, rmse)| {
                let model = if *b == Baseline::LinearAr {
                    self.val_rmse
                } else {
                    naive_model
                };
                rmse.is_finite() && *rmse <= model
            })
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out
    }

    /// The warning to end a run or a search with when the model does not beat every baseline,
    /// naming the ones that win and what to try (without a `warning:` prefix, which the CLI
    /// adds and Python's `UserWarning` does not need); `None` when it beats them all.
    pub fn warning(&self) -> Option<String> {
        let beaten_by = self.beaten_by();
        let (what, rmse) = (self.what, self.val_rmse);
        if let (Some(p), Some(skill)) = (self.rmse(Baseline::Persistence), self.skill.filter(|s| *s <= 0.0)) {
            return Some(format!(
                "{what} does not beat persistence: val_rmse {rmse:.4} against {p:.4} for repeating the \
                 last observed value (skill {skill:+.3}), so the naive forecast is at least as good. {TRY}"
            ));
        }
        let (best, best_rmse) = *beaten_by.first()?;
        let names: Vec<String> = beaten_by
            .iter()
            .map(|(b, r)| format!("{} ({r:.4})", b.label()))
            .collect();
        let lead = match self.skill {
            Some(s) => format!("beats persistence (skill {s:+.3}) but not"),
            None => "does not beat".to_string(),
        };
        Some(format!(
            "{what} {lead} {}: val_rmse {rmse:.4} against {best_rmse:.4} for {}, so the simpler forecast is \
             at least as good. {TRY}",
            names.join(", "),
            describe(best)
        ))
    }

    fn rmse(&self, b: Baseline) -> Option<f64> {
        self.baselines.iter().find(|(x, _)| *x == b).map(|(_, r)| *r)
    }
}

/// The warning for a training run's best epoch, named `the best model (epoch N)`, as `ode
/// train`, its report and Python's `fit` give it; `None` when the epoch beats every baseline.
pub fn best_epoch_warning(epoch: usize, val_rmse: f64, skill: Option<f64>, b: &Baselines) -> Option<String> {
    let what = format!("the best model (epoch {epoch})");
    Standing::new(&what, val_rmse, skill, b).warning()
}

/// What a baseline forecasts, for people.
fn describe(b: Baseline) -> &'static str {
    match b {
        Baseline::Persistence => "repeating the last observed value",
        Baseline::WindowMean => "the mean of the context window",
        Baseline::SeasonalNaive => "repeating the value one season earlier",
        Baseline::LinearAr => "a ridge regression from the context window (linear AR)",
    }
}
