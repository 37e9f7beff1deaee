//! Solver options: tolerances, step control, batch mode and limits.

use crate::Scalar;
use crate::controller_kind::ControllerKind;
use crate::error::{OdeError, Result};

/// How the samples of a batch share step sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StepMode {
    /// One step size for the whole batch; the error norm is the RMS over every entry of the
    /// batch (torchdiffeq's behaviour: a sample's result depends on its batch-mates).
    Shared,
    /// Each sample has its own step size and accept/reject decisions (like torchode): a sample's
    /// result equals solving it alone, and one failing sample does not stop the others.
    #[default]
    PerSample,
}

crate::choice_names!(StepMode, "step mode" { Shared => "shared", PerSample => "per_sample" | "per-sample" });

/// A relative or absolute tolerance: one value for every component, or one per component.
#[derive(Debug, Clone, PartialEq)]
pub enum Tolerance<T> {
    /// The same tolerance for every state component.
    Scalar(T),
    /// One tolerance per state component (length = state dimension).
    PerComponent(Vec<T>),
}

impl<T: Scalar> Tolerance<T> {
    /// The tolerance of component `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> T {
        match self {
            Tolerance::Scalar(v) => *v,
            Tolerance::PerComponent(v) => v[i],
        }
    }

    pub(crate) fn validate(&self, name: &'static str, dim: Option<usize>) -> Result<()> {
        // The label is built only on failure, so validating allocates nothing.
        let check = |label: &dyn Fn() -> String, v: T| {
            if !v.is_finite() || v < T::zero() {
                Err(OdeError::InvalidTolerance {
                    name: label(),
                    value: v.f64(),
                    reason: "tolerances must be finite and non-negative",
                })
            } else {
                Ok(())
            }
        };
        match self {
            Tolerance::Scalar(v) => check(&|| name.to_string(), *v),
            Tolerance::PerComponent(v) => {
                if let Some(dim) = dim.filter(|&d| d != v.len()) {
                    return Err(OdeError::ShapeMismatch {
                        what: if name == "rtol" {
                            "rtol (per component)"
                        } else {
                            "atol (per component)"
                        },
                        expected: dim,
                        got: v.len(),
                    });
                }
                v.iter()
                    .enumerate()
                    .try_for_each(|(i, &x)| check(&|| format!("{name}[{i}]"), x))
            }
        }
    }
}

impl<T> From<T> for Tolerance<T> {
    fn from(v: T) -> Self {
        Tolerance::Scalar(v)
    }
}

impl<T> From<Vec<T>> for Tolerance<T> {
    fn from(v: Vec<T>) -> Self {
        Tolerance::PerComponent(v)
    }
}

/// A PID step-size controller (Söderlind): the next step is
/// `h · clamp(safety · r_n^(-β1/k) · r_{n-1}^(-β2/k) · r_{n-2}^(-β3/k), min_factor, max_factor)`
/// with `k` the error estimate's order, `β1 = p + i + d`, `β2 = -(p + 2d)`, `β3 = d`.
///
/// The default (`i = 1`, `p = d = 0`) is the integral controller of torchdiffeq's dopri5 and of
/// the reference-model contract: `h · clamp(0.9 · r^(-1/5), 0.2, 10)` for dopri5. Rejected
/// steps use the integral part only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PidController {
    /// Safety factor applied to the optimal step.
    pub safety: f64,
    /// Smallest factor a step may shrink by.
    pub min_factor: f64,
    /// Largest factor a step may grow by.
    pub max_factor: f64,
    /// Proportional coefficient.
    pub pcoeff: f64,
    /// Integral coefficient.
    pub icoeff: f64,
    /// Derivative coefficient.
    pub dcoeff: f64,
}

impl Default for PidController {
    fn default() -> Self {
        Self {
            safety: 0.9,
            min_factor: 0.2,
            max_factor: 10.0,
            pcoeff: 0.0,
            icoeff: 1.0,
            dcoeff: 0.0,
        }
    }
}

impl PidController {
    /// A PI controller with the coefficients of Hairer & Wanner (p = 0.4, i = 0.3 scaled by
    /// the order as diffrax suggests: `pcoeff = 0.4`, `icoeff = 0.3`), smoother on hard problems.
    pub fn pi() -> Self {
        Self {
            pcoeff: 0.4,
            icoeff: 0.3,
            ..Self::default()
        }
    }

    /// Step factor after a step with error ratio `r` (previous ratios `r1`, `r2`), error order `k`.
    pub(crate) fn factor(&self, accepted: bool, r: f64, r1: f64, r2: f64, k: f64) -> f64 {
        if !r.is_finite() {
            return self.min_factor;
        }
        if r == 0.0 {
            return self.max_factor;
        }
        let f = if accepted {
            let b1 = self.pcoeff + self.icoeff + self.dcoeff;
            let b2 = -(self.pcoeff + 2.0 * self.dcoeff);
            let b3 = self.dcoeff;
            // A zero exponent is skipped: `x^0` is exactly 1, and the default integral
            // controller has two of them (pow dominates the controller's cost).
            let pow = |x: f64, b: f64| if b == 0.0 { 1.0 } else { x.powf(-b / k) };
            self.safety * pow(r, b1) * pow(r1, b2) * pow(r2, b3)
        } else {
            self.safety * r.powf(-1.0 / k)
        };
        f.clamp(self.min_factor, self.max_factor)
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, value, reason| Err(OdeError::InvalidOption { name, value, reason });
        if !(self.safety > 0.0 && self.safety <= 1.0) {
            return bad("controller.safety", self.safety, "must be in (0, 1]");
        }
        if !(self.min_factor > 0.0 && self.min_factor < 1.0) {
            return bad("controller.min_factor", self.min_factor, "must be in (0, 1)");
        }
        if !(self.max_factor > 1.0 && self.max_factor.is_finite()) {
            return bad("controller.max_factor", self.max_factor, "must be finite and > 1");
        }
        Ok(())
    }
}

/// Everything that configures a solve besides the method. Build with [`Default`] and the
/// chaining setters:
///
/// ```
/// use ode_core::{SolveOptions, StepMode};
/// let opts = SolveOptions::<f64>::default().rtol(1e-6).atol(1e-8).step_mode(StepMode::Shared);
/// assert_eq!(opts.max_num_steps, 100_000);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SolveOptions<T> {
    /// Relative tolerance (adaptive methods). Default `1e-4`, the tuning guide's.
    pub rtol: Tolerance<T>,
    /// Absolute tolerance (adaptive methods). Default `1e-5`, the tuning guide's.
    pub atol: Tolerance<T>,
    /// Shared or per-sample step sizes. Default per-sample.
    pub step_mode: StepMode,
    /// Step-size controller (adaptive methods).
    pub controller: PidController,
    /// Whose step-size rules adaptive methods follow: this project's or torchdiffeq's.
    pub controller_kind: ControllerKind,
    /// First step size; `None` selects it by Hairer's algorithm (adaptive methods).
    pub first_step: Option<T>,
    /// Constant step size. For fixed-step methods `None` steps on the output grid (one step per
    /// interval); an adaptive method given a step size runs at that step without error control.
    pub step_size: Option<T>,
    /// Largest step an adaptive method may take; `None` for no limit.
    pub max_step: Option<T>,
    /// Smallest step an adaptive method may take before failing with a step-size underflow.
    pub min_step: T,
    /// Budget of steps (accepted plus rejected) per sample.
    pub max_num_steps: usize,
    /// In per-sample mode, return an error when any sample fails (`true`, the default), or
    /// return the solution with the failures listed and the failed samples' later outputs NaN.
    pub throw: bool,
}

impl<T: Scalar> Default for SolveOptions<T> {
    fn default() -> Self {
        Self {
            rtol: Tolerance::Scalar(T::c(1e-4)),
            atol: Tolerance::Scalar(T::c(1e-5)),
            step_mode: StepMode::default(),
            controller: PidController::default(),
            controller_kind: ControllerKind::Default,
            first_step: None,
            step_size: None,
            max_step: None,
            min_step: T::zero(),
            max_num_steps: 100_000,
            throw: true,
        }
    }
}

impl<T: Scalar> SolveOptions<T> {
    /// Sets the relative tolerance (a scalar or a per-component `Vec`).
    pub fn rtol(mut self, rtol: impl Into<Tolerance<T>>) -> Self {
        self.rtol = rtol.into();
        self
    }
    /// Sets the absolute tolerance (a scalar or a per-component `Vec`).
    pub fn atol(mut self, atol: impl Into<Tolerance<T>>) -> Self {
        self.atol = atol.into();
        self
    }
    /// Sets the batch step mode.
    pub fn step_mode(mut self, mode: StepMode) -> Self {
        self.step_mode = mode;
        self
    }
    /// Sets the step-size controller.
    pub fn controller(mut self, c: PidController) -> Self {
        self.controller = c;
        self
    }
    /// Sets whose step-size rules adaptive methods follow.
    pub fn controller_kind(mut self, kind: ControllerKind) -> Self {
        self.controller_kind = kind;
        self
    }
    /// Sets the first step of adaptive methods.
    pub fn first_step(mut self, h: T) -> Self {
        self.first_step = Some(h);
        self
    }
    /// Sets the step size of fixed-step methods.
    pub fn step_size(mut self, h: T) -> Self {
        self.step_size = Some(h);
        self
    }
    /// Sets the largest adaptive step.
    pub fn max_step(mut self, h: T) -> Self {
        self.max_step = Some(h);
        self
    }
    /// Sets the smallest adaptive step.
    pub fn min_step(mut self, h: T) -> Self {
        self.min_step = h;
        self
    }
    /// Sets the step budget per sample.
    pub fn max_num_steps(mut self, n: usize) -> Self {
        self.max_num_steps = n;
        self
    }
    /// Sets whether per-sample failures are returned as an error.
    pub fn throw(mut self, throw: bool) -> Self {
        self.throw = throw;
        self
    }

    /// Checks every option against the state dimension `dim`.
    pub fn validate(&self, dim: usize) -> Result<()> {
        self.validate_for(Some(dim))
    }

    /// Checks every option; the lengths of per-component tolerances only when `dim` is known.
    pub(crate) fn validate_for(&self, dim: Option<usize>) -> Result<()> {
        self.rtol.validate("rtol", dim)?;
        self.atol.validate("atol", dim)?;
        let count = match dim {
            Some(d) => d,
            None => match (&self.rtol, &self.atol) {
                (Tolerance::PerComponent(a), Tolerance::PerComponent(b)) => a.len().min(b.len()),
                (Tolerance::PerComponent(a), _) | (_, Tolerance::PerComponent(a)) => a.len(),
                _ => 1,
            },
        };
        for i in 0..count {
            if self.rtol.get(i) == T::zero() && self.atol.get(i) == T::zero() {
                return Err(OdeError::InvalidTolerance {
                    name: format!("atol[{i}]"),
                    value: 0.0,
                    reason: "rtol and atol are both zero: the error test can never pass; set atol > 0",
                });
            }
        }
        self.controller.validate()?;
        self.controller_kind.validate(&self.controller)?;
        let pos = |name, v: Option<T>| match v {
            Some(h) if !(h.is_finite() && h != T::zero()) => Err(OdeError::InvalidOption {
                name,
                value: h.f64(),
                reason: "must be finite and non-zero",
            }),
            _ => Ok(()),
        };
        pos("first_step", self.first_step)?;
        pos("step_size", self.step_size)?;
        pos("max_step", self.max_step)?;
        if !(self.min_step.is_finite() && self.min_step >= T::zero()) {
            return Err(OdeError::InvalidOption {
                name: "min_step",
                value: self.min_step.f64(),
                reason: "must be finite and non-negative",
            });
        }
        if self.max_num_steps == 0 {
            return Err(OdeError::InvalidOption {
                name: "max_num_steps",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// How close (in units of the floating-point resolution of the times involved) a step's end
/// must come to the point it aims at to land on it exactly: a step ending this close short of
/// an output time would leave a sliver too small to step over, and one ending this close past it
/// overshoots only by round-off.
pub const SNAP_ULPS: f64 = 32.0;

/// The gap below which a step from `t` towards `target` lands on `target`: [`SNAP_ULPS`] ulps of
/// the larger of `|t|` and `|target|`.
#[inline]
pub fn snap_gap<T: Scalar>(t: T, target: T) -> T {
    t.abs().max(target.abs()) * T::epsilon() * T::c(SNAP_ULPS)
}

impl<T: Scalar> SolveOptions<T> {
    /// The step to take from `t` towards `target` (direction `dir`): the adaptive `proposal`,
    /// the fixed `step_size`, or the whole remaining interval; capped by `max_step`.
    ///
    /// A step that reaches `target`, or would end within round-off of it ([`snap_gap`]), lands
    /// on it exactly; landing is never an error, however short the remaining sliver. Otherwise
    /// `Err((h, floor))` when an adaptive step is below `min_step` or the resolution of `t`, or
    /// when the controller has shrunk it below that and below what remains (repeated rejections
    /// right before the target, which landing must not retry forever).
    pub(crate) fn next_step(&self, adaptive: bool, t: T, target: T, proposal: T, dir: T) -> Result<T, (T, T)> {
        let remaining = target - t;
        let mut h = if adaptive {
            proposal
        } else if let Some(hs) = self.step_size {
            dir * hs.abs()
        } else {
            remaining
        };
        let mut capped = false;
        if let Some(mx) = self.max_step {
            if h.abs() > mx.abs() {
                h = dir * mx.abs();
                capped = true;
            }
        }
        let floor = self.min_step.max(t.abs() * T::epsilon() * T::c(4.0));
        if adaptive && h.abs() < floor && h.abs() < remaining.abs() {
            return Err((h, floor));
        }
        // The relative test keeps f64 behaviour as before; the ulp test is what fires in f32.
        if h.abs() >= remaining.abs() * T::c(1.0 - 1e-12) {
            return Ok(remaining);
        }
        let left = (remaining - h).abs();
        if left <= snap_gap(t, target) {
            if !capped {
                return Ok(remaining);
            }
            // A step capped by `max_step` is not stretched past the cap: it leaves what it
            // leaves, or, when that would be a sliver, two halves of what remains.
            if left < floor {
                return Ok(remaining / T::c(2.0));
            }
        }
        if adaptive && t + h == t {
            return Err((h, floor));
        }
        Ok(h)
    }

    /// The adaptive step from `t` under torchdiffeq's rules: the `proposal` as it is (capped by
    /// `max_step`), which may run past the last output time. `Err((h, floor))` as
    /// [`next_step`](Self::next_step) when it is below `min_step` or the resolution of `t`.
    pub(crate) fn free_step(&self, t: T, proposal: T, dir: T) -> Result<T, (T, T)> {
        let h = match self.max_step {
            Some(mx) if proposal.abs() > mx.abs() => dir * mx.abs(),
            _ => proposal,
        };
        let floor = self.min_step.max(t.abs() * T::epsilon() * T::c(4.0));
        if h.abs() < floor || t + h == t {
            return Err((h, floor));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::{SNAP_ULPS, SolveOptions};
    use crate::Scalar;

    /// From `t`, a proposal ending `k` ulps short of (`k > 0`) or past (`k < 0`) `target`, then
    /// whatever remains: every step is accepted, and the walk ends exactly on `target`.
    fn walk<T: Scalar>(t0: T, target: T, k: i64, adaptive: bool) -> usize {
        let opts = SolveOptions::<T>::default();
        let dir = if target > t0 { T::one() } else { -T::one() };
        let aim = target.ulps(-k * if dir > T::zero() { 1 } else { -1 });
        let (mut t, mut proposal, mut steps) = (t0, aim - t0, 0);
        while t != target {
            let h = opts
                .next_step(adaptive, t, target, proposal, dir)
                .unwrap_or_else(|(h, floor)| panic!("t {t} -> {target} (k {k}): step {h} below {floor}"));
            t = if h == target - t { target } else { t + h };
            proposal = proposal * T::c(10.0);
            steps += 1;
            assert!(steps <= 2, "t0 {t0} -> {target} (k {k}): more than two steps");
        }
        steps
    }

    fn every_gap<T: Scalar>() {
        let times = [0.1, 0.45, 1.0, 1.1, 1.2, 3.0, 24.0, 1000.0];
        for &a in &[0.0, 0.05, -2.0] {
            for &b in &times {
                for (t0, target) in [(a, b), (b, a), (-b, a), (a, -b)] {
                    let (t0, target) = (T::c(t0), T::c(target));
                    if t0 == target || target == T::zero() {
                        continue;
                    }
                    for k in (-64..=64).filter(|&k| k != 0) {
                        for adaptive in [true, false] {
                            let steps = walk(t0, target, k, adaptive);
                            if k <= SNAP_ULPS as i64 {
                                assert_eq!(steps, 1, "{t0} -> {target}, k {k}: a near miss lands");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn steps_near_the_target_land_on_it_in_f32() {
        every_gap::<f32>();
    }

    #[test]
    fn steps_near_the_target_land_on_it_in_f64() {
        every_gap::<f64>();
    }

    #[test]
    fn capped_steps_are_not_stretched_past_max_step() {
        // At t = 1000 in f32 the snap gap (3.8e-3) is wider than max_step.
        let opts = SolveOptions::<f32>::default().max_step(1e-3);
        let (t, target) = (1000.0f32, 1000.004f32);
        let h = opts.next_step(true, t, target, 1.0, 1.0).unwrap();
        assert!(h <= 1e-3 * (1.0 + 1e-6), "step {h} exceeds max_step");
        // A capped step that would leave a sliver below the resolution splits what remains.
        let target = 1000.0f32 + 1e-3 + 2.0 * 6.1035156e-5;
        let h = opts.next_step(true, t, target, 1.0, 1.0).unwrap();
        assert_eq!(h, (target - t) / 2.0);
        let t1 = t + h;
        assert_eq!(
            opts.next_step(true, t1, target, 1.0, 1.0),
            Ok(target - t1),
            "then lands"
        );
    }

    #[test]
    fn repeated_rejections_before_the_target_still_underflow() {
        let opts = SolveOptions::<f32>::default();
        // 20 ulps before the target, a proposal shrunk to 1 ulp is an underflow, not a landing.
        let target = 1.5f32;
        let t = target.ulps(-20);
        assert!(opts.next_step(true, t, target, target.ulps(-19) - t, 1.0).is_err());
        assert_eq!(
            opts.next_step(true, t, target, 1e-9, 1.0),
            Err((1e-9, t * f32::EPSILON * 4.0))
        );
        // A proposal at least as long as what remains lands, however short that is.
        assert_eq!(opts.next_step(true, t, target, 1.0, 1.0), Ok(target - t));
    }

    #[test]
    fn steps_towards_zero_land_on_it() {
        for (t0, dir) in [(1.2f32, -1.0f32), (-0.45, 1.0)] {
            let opts = SolveOptions::<f32>::default();
            for k in 1..=64 {
                // Start k ulps (of t0's scale) short of 0, and aim at 0 from there.
                let t = -dir * k as f32 * t0.abs() * f32::EPSILON / 8.0;
                let h = opts.next_step(true, t, 0.0, dir * 0.1, dir).unwrap();
                assert_eq!(t + h, 0.0, "from {t}");
            }
        }
    }

    #[test]
    fn tiny_non_landing_steps_still_underflow() {
        let opts = SolveOptions::<f32>::default();
        // A proposal of 1e-9 from t = 1 towards 2 is far from landing and below the resolution.
        assert!(opts.next_step(true, 1.0, 2.0, 1e-9, 1.0).is_err());
        assert_eq!(opts.next_step(true, 1.0, 2.0, 0.5, 1.0), Ok(0.5));
    }
}
