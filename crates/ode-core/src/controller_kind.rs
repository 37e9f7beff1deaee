//! Whose step-size rules an adaptive solve follows: this project's, or torchdiffeq's exactly, so
//! that a comparison with torchdiffeq can be made at identical step counts.

use crate::error::{OdeError, Result};
use crate::options::PidController;

/// The step-size rules of adaptive solves (`controller` in configs and on the command line).
///
/// ```
/// use ode_core::ControllerKind;
/// let kind: ControllerKind = "torchdiffeq".parse()?;
/// assert_eq!(kind.name(), "torchdiffeq");
/// assert_eq!(ControllerKind::default(), ControllerKind::Default);
/// # Ok::<(), ode_core::OdeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ControllerKind {
    /// This project's rules: Hairer's initial step with the exponent `1/(order + 1)`, the
    /// [`PidController`] after every try (an accepted step may shrink the next one), and a last
    /// step that lands on the last output time (on each output time in the adjoint).
    #[default]
    Default,
    /// torchdiffeq's rules exactly (`rk_common.py`, `misc.py`): the initial step's exponent is
    /// `1/order` (torchdiffeq passes `order - 1` to Hairer's algorithm), the next step is
    /// `h · min(max_factor, max(safety / ratio^(1/k), d))` with `d = 1` when `ratio < 1` (an
    /// accepted step never shrinks the next) and `d = min_factor` otherwise, and steps run past
    /// the last output time, which is interpolated. The adjoint starts every output interval
    /// afresh (first derivative and initial step), as torchdiffeq's `odeint_adjoint` solves each
    /// interval with a new solver.
    Torchdiffeq,
}

impl ControllerKind {
    /// Whether the last step of a solve (or of an adjoint interval) may run past its end.
    #[inline]
    pub(crate) fn overshoots(self) -> bool {
        self == ControllerKind::Torchdiffeq
    }

    /// Whether the adjoint starts every output interval afresh (first derivative, initial step
    /// and controller), as torchdiffeq solves each interval with a new solver.
    #[inline]
    pub(crate) fn restarts_intervals(self) -> bool {
        self == ControllerKind::Torchdiffeq
    }

    /// The order passed to Hairer's initial-step formula, whose exponent is `1/(that + 1)`.
    #[inline]
    pub(crate) fn initial_step_order(self, order: usize) -> usize {
        match self {
            ControllerKind::Default => order,
            ControllerKind::Torchdiffeq => order.saturating_sub(1),
        }
    }

    /// The factor the step of a try is multiplied by for the next try: error ratio `r` (and the
    /// PID memory `r1`, `r2` of the default rules), error order `k`.
    #[inline]
    pub(crate) fn factor(self, pid: &PidController, accepted: bool, r: f64, [r1, r2]: [f64; 2], k: f64) -> f64 {
        match self {
            ControllerKind::Default => pid.factor(accepted, r, r1, r2, k),
            ControllerKind::Torchdiffeq => torchdiffeq_factor(pid, r, k),
        }
    }

    /// Checks that the PID settings mean something under these rules: torchdiffeq's controller
    /// has no proportional or derivative terms.
    pub(crate) fn validate(self, pid: &PidController) -> Result<()> {
        let integral = pid.pcoeff == 0.0 && pid.icoeff == 1.0 && pid.dcoeff == 0.0;
        if self == ControllerKind::Torchdiffeq && !integral {
            return Err(OdeError::InvalidOption {
                name: "controller",
                value: pid.pcoeff,
                reason: "controller = torchdiffeq is torchdiffeq's integral controller: \
                         pcoeff = 0, icoeff = 1, dcoeff = 0 (set controller = default for a PID controller)",
            });
        }
        Ok(())
    }
}

crate::choice_names!(ControllerKind, "controller" { Default => "default", Torchdiffeq => "torchdiffeq" });

/// torchdiffeq's `_optimal_step_size`, with a non-finite ratio shrinking the step as much as
/// allowed (where torchdiffeq would carry the NaN into the step and fail).
fn torchdiffeq_factor(pid: &PidController, r: f64, k: f64) -> f64 {
    if !r.is_finite() {
        return pid.min_factor;
    }
    if r == 0.0 {
        return pid.max_factor;
    }
    let floor = if r < 1.0 { 1.0 } else { pid.min_factor };
    (pid.safety / r.powf(1.0 / k)).max(floor).min(pid.max_factor)
}

#[cfg(test)]
mod tests {
    use super::ControllerKind;
    use crate::options::PidController;

    #[test]
    fn torchdiffeqs_factor_never_shrinks_after_an_accepted_step() {
        let (pid, k) = (PidController::default(), ControllerKind::Torchdiffeq);
        // ratio 0.99: 0.9 / 0.99^(1/5) < 1, so torchdiffeq keeps the step; the default shrinks it.
        assert_eq!(k.factor(&pid, true, 0.99, [1.0, 1.0], 5.0), 1.0);
        let d = ControllerKind::Default.factor(&pid, true, 0.99, [1.0, 1.0], 5.0);
        assert!(d < 1.0, "{d}");
        // ratio exactly 1 is accepted but may shrink (torchdiffeq tests ratio < 1).
        assert_eq!(k.factor(&pid, true, 1.0, [1.0, 1.0], 5.0), 0.9);
        // A small ratio grows the step by safety / r^(1/k), computed as torchdiffeq does.
        assert_eq!(k.factor(&pid, true, 1e-3, [1.0, 1.0], 5.0), 0.9 / 1e-3f64.powf(0.2));
        assert_eq!(k.factor(&pid, true, 1e-9, [1.0, 1.0], 5.0), 10.0);
        assert_eq!(k.factor(&pid, true, 0.0, [1.0, 1.0], 5.0), 10.0);
        // A rejected try shrinks by at most min_factor; a non-finite one by min_factor.
        assert_eq!(k.factor(&pid, false, 4.0, [1.0, 1.0], 5.0), 0.9 / 4.0f64.powf(0.2));
        assert_eq!(k.factor(&pid, false, 1e9, [1.0, 1.0], 5.0), 0.2);
        assert_eq!(k.factor(&pid, false, f64::NAN, [1.0, 1.0], 5.0), 0.2);
    }

    #[test]
    fn the_initial_step_exponent_is_one_over_the_order() {
        assert_eq!(ControllerKind::Torchdiffeq.initial_step_order(5), 4);
        assert_eq!(ControllerKind::Default.initial_step_order(5), 5);
        assert!(ControllerKind::Torchdiffeq.overshoots() && !ControllerKind::Default.overshoots());
        assert!(ControllerKind::Torchdiffeq.restarts_intervals() && !ControllerKind::Default.restarts_intervals());
    }

    #[test]
    fn names_round_trip_and_pid_terms_are_refused() {
        for k in ControllerKind::ALL {
            assert_eq!(k.name().parse::<ControllerKind>().unwrap(), k);
        }
        let e = "pid".parse::<ControllerKind>().unwrap_err().to_string();
        assert!(e.contains("default, torchdiffeq"), "{e}");
        let pi = PidController::pi();
        assert!(ControllerKind::Default.validate(&pi).is_ok());
        let e = ControllerKind::Torchdiffeq.validate(&pi).unwrap_err().to_string();
        assert!(e.contains("pcoeff = 0"), "{e}");
    }
}
