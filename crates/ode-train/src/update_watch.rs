//! Remembers the last parameter update so that a solver failure right after a large one can be
//! blamed on it: the remedy then is a smaller or clipped update, not looser tolerances.

/// How much larger than the running mean a batch loss must be to count as a jump.
const LOSS_JUMP: f64 = 3.0;

/// The last batch's loss and gradient norm, and the running mean loss of the epoch.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UpdateWatch {
    last: Option<(f64, f64)>,
    loss_sum: f64,
    batches: usize,
}

impl UpdateWatch {
    /// Records a batch's loss and its gradient norm before clipping.
    pub(crate) fn record(&mut self, loss: f64, grad_norm: f64) {
        self.last = Some((loss, grad_norm));
        self.loss_sum += loss;
        self.batches += 1;
    }

    /// Why the last update was large, if it was: its gradient norm reached the clip, or its loss
    /// jumped above [`LOSS_JUMP`] times the mean of the batches before it.
    pub(crate) fn large_update(&self, clip: Option<f64>) -> Option<String> {
        let (loss, norm) = self.last?;
        if let Some(c) = clip.filter(|c| *c > 0.0 && norm >= *c) {
            return Some(format!(
                "the previous batch's gradient norm {norm:.3} hit the clip ({c})"
            ));
        }
        let before = self.batches - 1;
        if before > 0 {
            let mean = (self.loss_sum - loss) / before as f64;
            if loss > LOSS_JUMP * mean {
                return Some(format!(
                    "the previous batch's loss jumped to {loss:.4} (mean {mean:.4} before it)"
                ));
            }
        }
        None
    }

    /// The sentence the trainer appends to a solver failure: the likely cause and its remedy.
    pub(crate) fn cause(&self, clip: Option<f64>, underflow: bool) -> String {
        match self.large_update(clip) {
            Some(why) if underflow => format!(
                " Likely cause: a large parameter update just before this batch ({why}) made the \
                 dynamics hard to integrate; remedies (the tuning guide's \"NaN losses\" list): lower \
                 the learning rate, clip gradients harder (gradient_clip), or use a more stable solver \
                 (rk4 instead of euler). Loosening rtol/atol does not address this."
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::UpdateWatch;

    #[test]
    fn blames_a_clipped_or_jumping_update_only() {
        let mut w = UpdateWatch::default();
        assert!(w.large_update(Some(1.0)).is_none(), "no update yet");
        w.record(0.5, 0.3);
        w.record(0.4, 0.2);
        assert!(w.large_update(Some(1.0)).is_none());
        assert_eq!(w.cause(Some(1.0), true), "");
        w.record(0.45, 1.0);
        assert!(w.large_update(Some(1.0)).unwrap().contains("hit the clip"));
        assert!(w.large_update(None).is_none(), "no clip, no jump");
        w.record(5.0, 0.1);
        let why = w.large_update(Some(1.0)).unwrap();
        assert!(why.contains("jumped to 5.0000"), "{why}");
        let c = w.cause(Some(1.0), true);
        assert!(
            c.contains("lower the learning rate") && c.contains("rk4 instead of euler"),
            "{c}"
        );
        assert_eq!(w.cause(Some(1.0), false), "", "only underflows get this remedy");
    }
}
