//! Remembers the last parameter update so that a step-size underflow right after a large one
//! can be blamed on it: the remedy then is a smaller or clipped update, not looser tolerances.

use ode_core::OdeError;
use std::fmt;

/// How much larger than the epoch's mean so far a batch loss must be to count as a jump.
const LOSS_JUMP: f64 = 3.0;

/// Why the update before a solver failure was large.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LargeUpdate {
    /// The gradient norm (before clipping) reached the clip threshold.
    Clipped {
        /// Gradient norm before clipping.
        grad_norm: f64,
        /// The `gradient_clip` threshold.
        clip: f64,
    },
    /// The batch loss jumped above [`LOSS_JUMP`] times the epoch's mean before it.
    LossJump {
        /// The batch loss.
        loss: f64,
        /// Mean batch loss of the epoch before it.
        mean: f64,
    },
}

impl fmt::Display for LargeUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LargeUpdate::Clipped { grad_norm, clip } => {
                write!(
                    f,
                    "the previous batch's gradient norm {grad_norm:.3} hit the clip ({clip})"
                )
            }
            LargeUpdate::LossJump { loss, mean } => {
                write!(
                    f,
                    "the previous batch's loss jumped to {loss:.4} (mean {mean:.4} before it)"
                )
            }
        }
    }
}

/// The message of a solver failure during training: an underflow after a large update names
/// that update as the likely cause and the tuning guide's "NaN losses" remedies, instead of the
/// solver's generic advice; anything else is the solver's own message.
pub(crate) fn solver_failure_message(source: &OdeError, cause: Option<&LargeUpdate>) -> String {
    match (source, cause) {
        (OdeError::StepSizeUnderflow { t, h, min_step, sample }, Some(c)) => format!(
            "step size underflow at t = {t} in sample {sample}: step {h:e} is below the minimum \
             {min_step:e}. Likely cause: a large parameter update just before this batch ({c}) made \
             the dynamics hard to integrate; remedies (the tuning guide's \"NaN losses\" list): lower \
             the learning rate, clip gradients harder (gradient_clip), or use a more stable solver \
             (rk4 instead of euler); loosening rtol/atol does not address this"
        ),
        _ => source.to_string(),
    }
}

/// The last batch's loss and gradient norm, and the epoch's batch losses so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UpdateWatch {
    last: Option<(f64, f64)>,
    loss_sum: f64,
    batches: usize,
}

impl UpdateWatch {
    /// Starts an epoch: the mean starts afresh, the last update is kept.
    pub(crate) fn new_epoch(&mut self) {
        self.loss_sum = 0.0;
        self.batches = 0;
    }

    /// Records a batch's loss and its gradient norm before clipping.
    pub(crate) fn record(&mut self, loss: f64, grad_norm: f64) {
        self.last = Some((loss, grad_norm));
        self.loss_sum += loss;
        self.batches += 1;
    }

    /// The large update to blame for `source`, if it is a step-size underflow and the last
    /// update was large.
    pub(crate) fn cause(&self, source: &OdeError, clip: Option<f64>) -> Option<LargeUpdate> {
        if !matches!(source, OdeError::StepSizeUnderflow { .. }) {
            return None;
        }
        let (loss, grad_norm) = self.last?;
        if let Some(clip) = clip.filter(|c| *c > 0.0 && grad_norm >= *c) {
            return Some(LargeUpdate::Clipped { grad_norm, clip });
        }
        let before = self.batches.checked_sub(1).filter(|&b| b > 0)?;
        let mean = (self.loss_sum - loss) / before as f64;
        (loss > LOSS_JUMP * mean).then_some(LargeUpdate::LossJump { loss, mean })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn underflow() -> OdeError {
        OdeError::StepSizeUnderflow {
            t: 1.0,
            h: 1e-9,
            min_step: 4e-7,
            sample: 3,
        }
    }

    #[test]
    fn blames_a_clipped_or_jumping_update_only() {
        let u = underflow();
        let mut w = UpdateWatch::default();
        assert_eq!(w.cause(&u, Some(1.0)), None, "no update yet");
        w.record(0.5, 0.3);
        w.record(0.4, 0.2);
        assert_eq!(w.cause(&u, Some(1.0)), None);
        w.record(0.45, 1.0);
        assert!(matches!(w.cause(&u, Some(1.0)), Some(LargeUpdate::Clipped { .. })));
        assert_eq!(w.cause(&u, None), None, "no clip, no jump");
        w.record(5.0, 0.1);
        let Some(LargeUpdate::LossJump { loss, mean }) = w.cause(&u, Some(1.0)) else {
            panic!("a jump to 5.0 after losses near 0.45 is large");
        };
        assert_eq!(loss, 5.0);
        assert!((mean - 0.45).abs() < 1e-12, "{mean}");
        let budget = OdeError::MaxStepsExceeded {
            t: 1.0,
            max_num_steps: 10,
            sample: 0,
        };
        assert_eq!(
            w.cause(&budget, Some(1.0)),
            None,
            "only underflows are blamed on updates"
        );
        // A new epoch starts the mean afresh but remembers the last update.
        w.new_epoch();
        assert!(matches!(w.cause(&u, Some(0.05)), Some(LargeUpdate::Clipped { .. })));
        assert_eq!(w.cause(&u, Some(1.0)), None, "no mean to jump from yet");
    }

    #[test]
    fn the_message_names_the_cause_and_the_guides_remedy_not_looser_tolerances() {
        let c = LargeUpdate::Clipped {
            grad_norm: 3.2,
            clip: 1.0,
        };
        let m = solver_failure_message(&underflow(), Some(&c));
        assert!(m.starts_with("step size underflow at t = 1 in sample 3"), "{m}");
        assert!(m.contains("gradient norm 3.200 hit the clip (1)"), "{m}");
        for remedy in [
            "lower the learning rate",
            "clip gradients harder",
            "rk4 instead of euler",
        ] {
            assert!(m.contains(remedy), "{m}");
        }
        assert!(!m.contains("loosen rtol/atol,"), "no generic tolerance advice: {m}");
        assert_eq!(solver_failure_message(&underflow(), None), underflow().to_string());
    }
}
