//! Step-size control shared by the forward and the adjoint solves: Hairer's initial step, the
//! controller's accept/reject decision and next step, where a step lands, and the error of a
//! step that cannot be taken.

use crate::Scalar;
use crate::controller_kind::ControllerKind;
use crate::error::OdeError;
use crate::options::{PidController, SolveOptions};

/// A batch's shape, and whether its samples share one step size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Number of samples.
    pub(crate) rows: usize,
    /// Values per sample.
    pub(crate) dim: usize,
    /// One step size for the whole batch (norms are taken over it).
    pub(crate) shared: bool,
}

/// Pairs of RMS norms for Hairer's initial step: `pick(j)` gives two scaled values at flat
/// index `j`; `norms[r]` receives their RMS over sample `r`, or over the whole batch (the same
/// pair in every row) when the step is shared.
pub(crate) fn rms_pairs(norms: &mut Vec<(f64, f64)>, batch: Batch, mut pick: impl FnMut(usize) -> (f64, f64)) {
    norms.clear();
    for r in 0..batch.rows {
        let (mut s0, mut s1) = (0.0, 0.0);
        for i in 0..batch.dim {
            let (x0, x1) = pick(r * batch.dim + i);
            s0 += x0 * x0;
            s1 += x1 * x1;
        }
        norms.push((s0, s1));
    }
    if batch.shared {
        let n = (batch.rows * batch.dim) as f64;
        let (s0, s1) = norms.iter().fold((0.0, 0.0), |acc, x| (acc.0 + x.0, acc.1 + x.1));
        let v = ((s0 / n).sqrt(), (s1 / n).sqrt());
        norms.iter_mut().for_each(|x| *x = v);
    } else {
        let n = batch.dim as f64;
        norms.iter_mut().for_each(|x| *x = ((x.0 / n).sqrt(), (x.1 / n).sqrt()));
    }
}

/// The scale `atol_i + rtol_i·|y|` of a state value in Hairer's norms, in `f64`.
#[inline]
pub(crate) fn state_scale<T: Scalar>(opts: &SolveOptions<T>, i: usize, y: T) -> f64 {
    (opts.atol.get(i) + opts.rtol.get(i) * y.abs()).f64()
}

/// Hairer, Nørsett & Wanner (1993), II.4 (torchdiffeq's `_select_initial_step`), first part:
/// the trial step `h0` from the norms of the state (`d0`) and of its derivative (`d1`).
#[inline]
pub(crate) fn trial_step(d0: f64, d1: f64) -> f64 {
    if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 }
}

/// Hairer's initial step, second part: from the trial step `h0`, the derivative's norm `d1`
/// and the norm of the derivative's change over `h0` (`dd`), for a method of order `order`.
#[inline]
pub(crate) fn initial_step(h0: f64, d1: f64, dd: f64, order: usize) -> f64 {
    let d2 = dd / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / (order as f64 + 1.0))
    };
    let h = (100.0 * h0).min(h1);
    if h.is_finite() { h } else { 1e-6 }
}

/// The step-size rules a solve follows: the controller's settings and whose rules apply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// The controller's settings.
    pub(crate) pid: &'a PidController,
    /// Whose rules.
    pub(crate) kind: ControllerKind,
}

impl<'a> Rules<'a> {
    /// The rules of a solve with options `opts`.
    pub(crate) fn of<T>(opts: &'a SolveOptions<T>) -> Self {
        Self {
            pid: &opts.controller,
            kind: opts.controller_kind,
        }
    }
}

/// One sample's step-size controller: the last error ratio and the memory of accepted ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ControlState {
    /// Error ratio of the last try (≤ 1 accepts); NaN when its state was not finite.
    pub(crate) ratio: f64,
    /// Ratios of the two previously accepted steps (PID memory).
    pub(crate) hist: [f64; 2],
    /// Whether the last try's ratio was not finite (then a step underflow is reported as a
    /// non-finite state).
    pub(crate) nonfinite: bool,
}

impl Default for ControlState {
    fn default() -> Self {
        Self {
            ratio: 0.0,
            hist: [1.0, 1.0],
            nonfinite: false,
        }
    }
}

impl ControlState {
    /// Whether the last try passes the error test.
    #[inline]
    pub(crate) fn accepts(&self) -> bool {
        self.ratio <= 1.0
    }

    /// After a try that was `accepted` or not: the factor its step is multiplied by for the
    /// next try (error order `err_order`); remembers the ratio of an accepted step.
    #[inline]
    pub(crate) fn adapt(&mut self, rules: Rules<'_>, accepted: bool, err_order: f64) -> f64 {
        let r1 = self.hist[0];
        let factor = rules.kind.factor(rules.pid, accepted, self.ratio, self.hist, err_order);
        self.nonfinite = !self.ratio.is_finite();
        if accepted {
            self.hist = [self.ratio.max(1e-10), r1];
        }
        factor
    }
}

/// Where a step `h` from `t` towards `target` ends: on `target` exactly when it is the whole
/// remaining interval.
#[inline]
pub(crate) fn step_end<T: Scalar>(t: T, h: T, target: T) -> T {
    if h == target - t { target } else { t + h }
}

/// The error when no step can be taken from `t` (`h` below `floor`, as
/// [`SolveOptions::next_step`] reports): a non-finite `what` when the controller shrank the step
/// after a non-finite try, otherwise a step-size underflow.
pub(crate) fn no_step_error<T: Scalar>(
    what: &'static str,
    nonfinite: bool,
    t: T,
    (h, floor): (T, T),
    sample: usize,
) -> OdeError {
    if nonfinite {
        OdeError::NonFinite {
            what,
            t: t.f64(),
            sample,
        }
    } else {
        OdeError::StepSizeUnderflow {
            t: t.f64(),
            h: h.abs().f64(),
            min_step: floor.f64(),
            sample,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Batch, ControlState, Rules, initial_step, no_step_error, rms_pairs, step_end, trial_step};
    use crate::controller_kind::ControllerKind;
    use crate::error::OdeError;
    use crate::options::PidController;

    #[test]
    fn hairers_trial_step_and_initial_step() {
        assert_eq!(trial_step(1e-6, 1.0), 1e-6);
        assert_eq!(trial_step(1.0, 1e-6), 1e-6);
        assert_eq!(trial_step(2.0, 4.0), 0.01 * 2.0 / 4.0);
        // d2 = dd / h0; h1 = (0.01 / max(d1, d2))^(1/(order+1)); h = min(100 h0, h1).
        let h1 = (0.01f64 / 3.0).powf(1.0 / 5.0);
        assert_eq!(initial_step(0.5, 2.0, 1.5, 4), h1);
        assert_eq!(initial_step(1e-4, 2.0, 0.0, 4), 100.0 * 1e-4);
        // A flat problem: a thousandth of the trial step, at least 1e-6.
        assert_eq!(initial_step(0.5, 0.0, 0.0, 4), 0.5e-3);
        assert_eq!(initial_step(1e-4, 0.0, 0.0, 4), 1e-6);
        assert_eq!(initial_step(f64::NAN, f64::NAN, 1.0, 4), 1e-6);
    }

    #[test]
    fn rms_pairs_per_sample_or_over_the_batch() {
        let v = [1.0, 3.0, 2.0, 2.0];
        let mut norms = Vec::new();
        let per = Batch {
            rows: 2,
            dim: 2,
            shared: false,
        };
        rms_pairs(&mut norms, per, |j| (v[j], 2.0 * v[j]));
        assert_eq!(norms, vec![(5f64.sqrt(), 20f64.sqrt()), (2.0, 4.0)]);
        rms_pairs(&mut norms, Batch { shared: true, ..per }, |j| (v[j], 0.0));
        assert_eq!(norms, vec![(4.5f64.sqrt(), 0.0); 2]);
    }

    #[test]
    fn the_controller_remembers_accepted_ratios_only() {
        let pid = PidController::default();
        let rules = Rules {
            pid: &pid,
            kind: ControllerKind::Default,
        };
        let mut c = ControlState {
            ratio: 0.5,
            ..ControlState::default()
        };
        assert!(c.accepts());
        let f = c.adapt(rules, true, 5.0);
        assert_eq!(f, (0.9 * 0.5f64.powf(-1.0 / 5.0)).clamp(0.2, 10.0));
        assert_eq!(c.hist, [0.5, 1.0]);
        c.ratio = 4.0;
        assert!(!c.accepts());
        assert_eq!(c.adapt(rules, false, 5.0), 0.9 * 4.0f64.powf(-1.0 / 5.0));
        assert_eq!(c.hist, [0.5, 1.0]);
        assert!(!c.nonfinite);
        c.ratio = f64::NAN;
        assert!(!c.accepts());
        assert_eq!(c.adapt(rules, false, 5.0), pid.min_factor);
        assert!(c.nonfinite);
    }

    #[test]
    fn a_step_over_the_whole_interval_lands_on_its_end() {
        let (t, target) = (0.1f64, 0.7f64);
        assert_eq!(step_end(t, target - t, target), target);
        assert_eq!(step_end(t, 0.2, target), t + 0.2);
        let e = no_step_error("state", true, 1.0f64, (1e-20, 1e-15), 3);
        assert!(matches!(
            e,
            OdeError::NonFinite {
                what: "state",
                sample: 3,
                ..
            }
        ));
        let e = no_step_error("state", false, 1.0f64, (-1e-20, 1e-15), 3);
        assert!(
            matches!(e, OdeError::StepSizeUnderflow { h, min_step, sample: 3, .. } if h == 1e-20 && min_step == 1e-15)
        );
    }
}
