//! The forward solve, phase by phase: the workspace one solve runs in and the phases the
//! solver loop in [`Solver`](crate::Solver) calls for every step: initial step, step choice,
//! stages, error estimate, accept/reject, step-size adaptation, and commit of the outputs.
//!
//! Every phase works on the `active` samples (those still running). In per-sample mode a
//! sample that fails stops alone (its error kept for the report); in shared mode the first
//! failure ends the solve.

use crate::Scalar;
use crate::control::{self, Batch, ControlState};
use crate::error::{OdeError, Result};
use crate::field::VectorField;
use crate::options::{SolveOptions, StepMode};
use crate::rk::{Coeffs, StepRow, Zeros, all_finite};
use crate::solution::{Report, SampleStats};
use crate::tape::Tape;
use std::ops::Range;

/// What one solve holds fixed: the method, the options, the output times and the batch.
#[derive(Debug)]
pub(crate) struct Setup<'a, T> {
    /// The method's coefficients.
    pub(crate) rk: &'a Coeffs<T>,
    /// The options.
    pub(crate) opts: &'a SolveOptions<T>,
    /// Output times (the first is the initial time).
    pub(crate) ts: &'a [T],
    /// Number of samples.
    pub(crate) batch: usize,
    /// State dimension.
    pub(crate) dim: usize,
    /// One step size for the whole batch.
    pub(crate) shared: bool,
    /// Error-controlled steps (an embedded method without a fixed `step_size`).
    pub(crate) adaptive: bool,
    /// Adaptive steps that may run past the last output time (torchdiffeq's rules).
    pub(crate) overshoot: bool,
    /// `+1` forward in time, `-1` backward.
    pub(crate) dir: T,
    /// The last output time.
    pub(crate) t_end: T,
}

impl<'a, T: Scalar> Setup<'a, T> {
    /// The setup of a solve through `ts` (at least two times) of `batch` samples of `dim` values.
    pub(crate) fn new(rk: &'a Coeffs<T>, opts: &'a SolveOptions<T>, ts: &'a [T], batch: usize, dim: usize) -> Self {
        let t_end = ts[ts.len() - 1];
        // An embedded method given a step size runs at that constant step, without error control.
        let adaptive = rk.b_err.is_some() && opts.step_size.is_none();
        Self {
            rk,
            opts,
            ts,
            batch,
            dim,
            shared: opts.step_mode == StepMode::Shared,
            adaptive,
            overshoot: adaptive && opts.controller_kind.overshoots(),
            dir: if t_end > ts[0] { T::one() } else { -T::one() },
            t_end,
        }
    }

    /// Sample `r`'s range in the batch buffers.
    #[inline]
    fn row(&self, r: usize) -> Range<usize> {
        r * self.dim..(r + 1) * self.dim
    }

    /// Where a sample whose next output is `next_out` steps towards: the end, or for fixed
    /// steps without a step size, the next output (one step per output interval).
    #[inline]
    fn target(&self, next_out: usize) -> T {
        if self.adaptive || self.opts.step_size.is_some() {
            self.t_end
        } else {
            self.ts[next_out]
        }
    }

    fn batch_shape(&self) -> Batch {
        Batch {
            rows: self.batch,
            dim: self.dim,
            shared: self.shared,
        }
    }
}

/// Evaluates the field on chosen rows of the batch (gathering them when not all are chosen)
/// and keeps the work counters: batched evaluations, and each sample's evaluations and steps.
#[derive(Debug, Default)]
pub(crate) struct Evaluator<T> {
    t: Vec<T>,
    input: Vec<T>,
    output: Vec<T>,
    /// Batched evaluations.
    pub(crate) nfe: usize,
    /// Per-sample counters (evaluations here, steps in [`Workspace::commit`]).
    pub(crate) stats: Vec<SampleStats>,
}

impl<T: Scalar> Evaluator<T> {
    fn reset(&mut self, batch: usize, dim: usize, reshaped: bool) {
        if reshaped {
            self.input = vec![T::zero(); batch * dim];
            self.output = vec![T::zero(); batch * dim];
        }
        self.t.clear();
        self.t.reserve(batch);
        self.nfe = 0;
        self.stats.clear();
        self.stats.resize(batch, SampleStats::default());
    }

    /// `output[r] = f(times[r], input[r])` for the listed rows (whole-batch buffers); no
    /// allocation either way.
    pub(crate) fn eval<F: VectorField<T> + ?Sized>(
        &mut self,
        f: &mut F,
        rows: &[usize],
        times: &[T],
        input: &[T],
        output: &mut [T],
    ) {
        if rows.is_empty() {
            return;
        }
        self.nfe += 1;
        for &r in rows {
            self.stats[r].nfe += 1;
        }
        if rows.len() == self.stats.len() {
            f.eval(times, input, output);
            return;
        }
        let dim = f.dim();
        let m = rows.len();
        self.t.clear();
        for (j, &r) in rows.iter().enumerate() {
            self.t.push(times[r]);
            self.input[j * dim..(j + 1) * dim].copy_from_slice(&input[r * dim..(r + 1) * dim]);
        }
        f.eval(&self.t, &self.input[..m * dim], &mut self.output[..m * dim]);
        for (j, &r) in rows.iter().enumerate() {
            output[r * dim..(r + 1) * dim].copy_from_slice(&self.output[j * dim..(j + 1) * dim]);
        }
    }
}

/// Scratch space and per-sample state of a solve, kept between solves so repeated solves of
/// the same shape allocate nothing.
#[derive(Debug, Default)]
pub(crate) struct Workspace<T> {
    batch: usize,
    dim: usize,
    // Step buffers (batch × dim).
    k: Vec<Vec<T>>,
    k_end: Vec<T>,
    y: Vec<T>,
    y_new: Vec<T>,
    y_stage: Vec<T>,
    t_eval: Vec<T>,
    evals: Evaluator<T>,
    // Per-sample state.
    t: Vec<T>,
    h: Vec<T>,
    h_step: Vec<T>,
    ctrl: Vec<ControlState>,
    k1_valid: Vec<bool>,
    next_out: Vec<usize>,
    live: Vec<bool>,
    status: Vec<Option<OdeError>>,
    accepted: Vec<bool>,
    // Row lists: the running samples, and those a partial evaluation covers.
    active: Vec<usize>,
    rows: Vec<usize>,
    // Hairer's initial step: norm pairs, and (h0, d1) per sample.
    norms: Vec<(f64, f64)>,
    probe: Vec<[f64; 2]>,
    /// In shared mode, the sample with the largest error at the last try.
    culprit: usize,
    /// Whether a sample finished or failed since the active list was last pruned.
    dropped: bool,
}

impl<T: Scalar> Workspace<T> {
    /// Sizes the buffers for a solve and resets the per-sample state.
    pub(crate) fn ensure(&mut self, stages: usize, batch: usize, dim: usize) {
        let w = batch * dim;
        let reshaped = self.batch != batch || self.dim != dim || self.k.len() != stages;
        if reshaped {
            self.k = vec![vec![T::zero(); w]; stages];
            for v in [&mut self.k_end, &mut self.y, &mut self.y_new, &mut self.y_stage] {
                *v = vec![T::zero(); w];
            }
            self.batch = batch;
            self.dim = dim;
        }
        self.evals.reset(batch, dim, reshaped);
        for v in [&mut self.t, &mut self.h, &mut self.h_step, &mut self.t_eval] {
            v.clear();
            v.resize(batch, T::zero());
        }
        let fill = |v: &mut Vec<bool>, x: bool| {
            v.clear();
            v.resize(batch, x);
        };
        fill(&mut self.k1_valid, false);
        fill(&mut self.live, true);
        fill(&mut self.accepted, false);
        self.ctrl.clear();
        self.ctrl.resize(batch, ControlState::default());
        self.next_out.clear();
        self.next_out.resize(batch, 1);
        self.status.clear();
        self.status.resize(batch, None);
        self.probe.clear();
        self.probe.resize(batch, [0.0; 2]);
        self.active.clear();
        self.active.reserve(batch);
        self.rows.clear();
        self.rows.reserve(batch);
        self.culprit = 0;
        self.dropped = false;
    }

    /// Every sample starts at `ts[0]` from its row of `y0`, which is also the first output.
    pub(crate) fn start(&mut self, s: &Setup<'_, T>, y0: &[T], out: &mut [T]) {
        self.y.copy_from_slice(y0);
        out[..s.batch * s.dim].copy_from_slice(y0);
        self.t.fill(s.ts[0]);
        self.active.clear();
        self.active.extend(0..s.batch);
    }

    /// Drops finished and failed samples from the active list; false when none is left.
    #[inline]
    pub(crate) fn retain_live(&mut self) -> bool {
        if self.dropped {
            let live = &self.live;
            self.active.retain(|&r| live[r]);
            self.dropped = false;
        }
        !self.active.is_empty()
    }

    /// Marks sample `r` failed; in shared mode the first failure is kept to end the solve.
    fn fail(&mut self, r: usize, e: OdeError, shared_fail: &mut Option<OdeError>, shared: bool) {
        self.live[r] = false;
        self.dropped = true;
        if shared {
            if shared_fail.is_none() {
                *shared_fail = Some(e);
            }
        } else {
            self.status[r] = Some(e);
        }
    }

    /// Marks sample `r` failed at once: the error of the solve in shared mode.
    fn fail_now(&mut self, r: usize, e: OdeError, shared: bool) -> Result<()> {
        if shared {
            return Err(e);
        }
        self.live[r] = false;
        self.dropped = true;
        self.status[r] = Some(e);
        Ok(())
    }

    /// The first step sizes of an adaptive solve: `first_step` when given, otherwise Hairer's
    /// algorithm, whose derivative at the start becomes the first stage.
    pub(crate) fn initial_step<F: VectorField<T> + ?Sized>(&mut self, f: &mut F, s: &Setup<'_, T>) -> Result<()> {
        if let Some(h) = s.opts.first_step {
            let dir = s.dir;
            self.h.iter_mut().for_each(|x| *x = dir * h.abs());
            return Ok(());
        }
        let (opts, dim) = (s.opts, s.dim);
        self.evals.eval(f, &self.active, &self.t, &self.y, &mut self.k[0]);
        for r in 0..s.batch {
            self.k1_valid[r] = true;
            if !all_finite(&self.k[0][s.row(r)]) {
                let e = OdeError::NonFinite {
                    what: "derivative",
                    t: s.ts[0].f64(),
                    sample: r,
                };
                self.fail_now(r, e, s.shared)?;
            }
        }
        let (y, k0) = (&self.y, &self.k[0]);
        control::rms_pairs(&mut self.norms, s.batch_shape(), |j| {
            let sc = control::state_scale(opts, j % dim, y[j]);
            (y[j].f64() / sc, k0[j].f64() / sc)
        });
        // An explicit Euler step of the trial size h0.
        for r in 0..s.batch {
            let (d0, d1) = self.norms[r];
            let h0 = control::trial_step(d0, d1);
            let h0t = s.dir * T::c(h0);
            self.t_eval[r] = self.t[r] + h0t;
            self.probe[r] = [h0, d1];
            for i in s.row(r) {
                self.y_stage[i] = self.y[i] + h0t * self.k[0][i];
            }
        }
        self.evals
            .eval(f, &self.active, &self.t_eval, &self.y_stage, &mut self.k_end);
        let (y, k0, k1) = (&self.y, &self.k[0], &self.k_end);
        control::rms_pairs(&mut self.norms, s.batch_shape(), |j| {
            let sc = control::state_scale(opts, j % dim, y[j]);
            (y[j].f64() / sc, (k1[j] - k0[j]).f64() / sc)
        });
        let order = s.opts.controller_kind.initial_step_order(s.rk.order);
        for r in 0..s.batch {
            let [h0, d1] = self.probe[r];
            let h = control::initial_step(h0, d1, self.norms[r].1, order);
            self.h[r] = s.dir * T::c(h);
        }
        Ok(())
    }

    /// Each active sample's step `h_step` towards its target, or its failure: over the step
    /// budget, or no step possible (below `min_step` or the resolution of `t`).
    #[inline]
    pub(crate) fn choose_steps(&mut self, s: &Setup<'_, T>) -> Result<()> {
        let mut shared_fail: Option<OdeError> = None;
        for idx in 0..self.active.len() {
            let r = self.active[idx];
            match self.step_of(s, r) {
                Ok(h) => self.h_step[r] = h,
                Err(e) => self.fail(r, e, &mut shared_fail, s.shared),
            }
        }
        shared_fail.map_or(Ok(()), Err)
    }

    #[inline]
    fn step_of(&self, s: &Setup<'_, T>, r: usize) -> Result<T> {
        let t = self.t[r];
        let st = self.evals.stats[r];
        if st.accepted + st.rejected >= s.opts.max_num_steps {
            return Err(OdeError::MaxStepsExceeded {
                t: t.f64(),
                max_num_steps: s.opts.max_num_steps,
                sample: r,
            });
        }
        let h = if s.overshoot {
            s.opts.free_step(t, self.h[r], s.dir)
        } else {
            s.opts
                .next_step(s.adaptive, t, s.target(self.next_out[r]), self.h[r], s.dir)
        };
        h.map_err(|hf| {
            // In shared mode, blame the sample with the largest error at the last try.
            let sample = if s.shared { self.culprit } else { r };
            control::no_step_error("state", self.ctrl[r].nonfinite, t, hf, sample)
        })
    }

    /// The first stage `k1 = f(t, y)` where it is not carried over from the previous step (FSAL,
    /// the end derivative of Hermite output, or a rejected try); a non-finite one fails.
    #[inline]
    pub(crate) fn first_stage<F: VectorField<T> + ?Sized>(&mut self, f: &mut F, s: &Setup<'_, T>) -> Result<()> {
        let (active, k1_valid) = (&self.active, &self.k1_valid);
        self.rows.clear();
        self.rows.extend(active.iter().copied().filter(|&r| !k1_valid[r]));
        self.evals.eval(f, &self.rows, &self.t, &self.y, &mut self.k[0]);
        for &r in self.rows.iter() {
            self.k1_valid[r] = true;
        }
        for idx in 0..self.rows.len() {
            let r = self.rows[idx];
            if !all_finite(&self.k[0][s.row(r)]) {
                let e = OdeError::NonFinite {
                    what: "derivative",
                    t: self.t[r].f64(),
                    sample: r,
                };
                self.fail_now(r, e, s.shared)?;
            }
        }
        Ok(())
    }

    /// The remaining stages of the step and its solution `y_new`.
    #[inline]
    pub(crate) fn stages<F: VectorField<T> + ?Sized>(&mut self, f: &mut F, s: &Setup<'_, T>) {
        for i in 1..s.rk.stages {
            let (done, todo) = self.k.split_at_mut(i);
            for &r in self.active.iter() {
                let (h, row) = (self.h_step[r], s.row(r));
                self.t_eval[r] = s.rk.stage_time(i, self.t[r], h);
                let dst = &mut self.y_stage[row.clone()];
                s.rk.stage_input(i, h, &self.y[row.clone()], done, row, dst);
            }
            self.evals
                .eval(f, &self.active, &self.t_eval, &self.y_stage, &mut todo[0]);
        }
        for &r in self.active.iter() {
            let row = s.row(r);
            let dst = &mut self.y_new[row.clone()];
            s.rk.solution(self.h_step[r], &self.y[row.clone()], &self.k, row, dst, Zeros::Skip);
        }
    }

    /// Error ratios of adaptive steps: the RMS of the scaled embedded error (NaN for a
    /// non-finite `y_new`) per sample, or over the batch in shared mode, which also notes the
    /// culprit for error messages: the largest error, a NaN one above all.
    #[inline]
    pub(crate) fn error_estimate(&mut self, s: &Setup<'_, T>) {
        let Some(be) = s.rk.error_weights(s.opts.controller_kind).filter(|_| s.adaptive) else {
            return;
        };
        let (mut shared_sum, mut shared_cnt) = (0.0f64, 0usize);
        let mut worst = (0usize, -1.0f64);
        for &r in self.active.iter() {
            let step = StepRow {
                y: &self.y,
                y_new: &self.y_new,
                k: &self.k,
                f_end: &self.k_end,
                row: s.row(r),
                h: self.h_step[r],
            };
            let mut sum = s.rk.scaled_error_sq(be, &step, s.opts);
            if !all_finite(&self.y_new[s.row(r)]) {
                sum = f64::NAN;
            }
            if s.shared {
                shared_sum += sum;
                shared_cnt += s.dim;
                if !worst.1.is_nan() && (sum.is_nan() || sum > worst.1) {
                    worst = (r, sum);
                }
            } else {
                self.ctrl[r].ratio = (sum / s.dim as f64).sqrt();
            }
        }
        if s.shared {
            self.culprit = worst.0;
            let ratio = (shared_sum / shared_cnt as f64).sqrt();
            for &r in self.active.iter() {
                self.ctrl[r].ratio = ratio;
            }
        }
    }

    /// Accepts or rejects each try: by its error ratio, or for fixed steps by a finite state,
    /// without which the sample fails.
    #[inline]
    pub(crate) fn accept_reject(&mut self, s: &Setup<'_, T>) -> Result<()> {
        for idx in 0..self.active.len() {
            let r = self.active[idx];
            let ok = if s.adaptive {
                self.ctrl[r].accepts()
            } else {
                all_finite(&self.y_new[s.row(r)])
            };
            self.accepted[r] = ok;
            if !s.adaptive && !ok {
                let e = OdeError::NonFinite {
                    what: "state",
                    t: (self.t[r] + self.h_step[r]).f64(),
                    sample: r,
                };
                self.fail_now(r, e, s.shared)?;
            }
        }
        Ok(())
    }

    /// The derivative at the step end for Hermite output of non-FSAL methods, only where an
    /// output time falls strictly inside an accepted step (listed in `rows`); the next step
    /// reuses it as its first stage.
    #[inline]
    pub(crate) fn end_derivative<F: VectorField<T> + ?Sized>(&mut self, f: &mut F, s: &Setup<'_, T>) {
        self.rows.clear();
        if s.rk.dense.is_some() || s.rk.fsal {
            return;
        }
        for &r in self.active.iter() {
            if self.accepted[r] && self.next_out[r] < s.ts.len() {
                let tn = self.t[r] + self.h_step[r];
                if (s.ts[self.next_out[r]] - tn) * s.dir < T::zero() {
                    self.rows.push(r);
                    self.t_eval[r] = tn;
                }
            }
        }
        self.evals
            .eval(f, &self.rows, &self.t_eval, &self.y_new, &mut self.k_end);
    }

    /// The controller's next step for every try, accepted or not; in shared mode the batch
    /// takes the last sample's.
    #[inline]
    pub(crate) fn adapt_step_size(&mut self, s: &Setup<'_, T>) {
        if !s.adaptive {
            return;
        }
        let mut last: Option<T> = None;
        for &r in self.active.iter() {
            let factor = self.ctrl[r].adapt(control::Rules::of(s.opts), self.accepted[r], s.rk.err_order);
            let hn = self.h_step[r] * T::c(factor);
            self.h[r] = hn;
            last = Some(hn);
        }
        if let Some(hn) = last.filter(|_| s.shared) {
            for &r in self.active.iter() {
                self.h[r] = hn;
            }
        }
    }

    /// Commits the accepted steps (counting the rejected ones): records them on the tape,
    /// writes the outputs they pass, and moves their samples to the step end.
    #[inline]
    pub(crate) fn commit(&mut self, s: &Setup<'_, T>, out: &mut [T], mut tape: Option<&mut Tape<T>>) {
        if let Some(tp) = tape.as_deref_mut() {
            tp.begin_iteration();
        }
        for idx in 0..self.active.len() {
            let r = self.active[idx];
            if !self.accepted[r] {
                self.evals.stats[r].rejected += 1;
                continue;
            }
            self.evals.stats[r].accepted += 1;
            let (t, h) = (self.t[r], self.h_step[r]);
            let tn = control::step_end(t, h, s.target(self.next_out[r]));
            if let Some(tp) = tape.as_deref_mut() {
                tp.record_step(r, t, h, &self.y[s.row(r)]);
            }
            self.write_outputs(s, r, tn, out, tape.as_deref_mut());
            self.advance(s, r, tn);
        }
    }

    /// Dense output: writes sample `r`'s outputs inside its step `(t, tn]`.
    #[inline]
    fn write_outputs(&mut self, s: &Setup<'_, T>, r: usize, tn: T, out: &mut [T], mut tape: Option<&mut Tape<T>>) {
        // Most steps of a fine fixed-step grid pass no output time.
        let next = self.next_out[r];
        if next >= s.ts.len() || (s.ts[next] - tn) * s.dir > T::zero() {
            return;
        }
        let (t, row, w) = (self.t[r], s.row(r), s.batch * s.dim);
        let f_end = if s.rk.fsal {
            &self.k[s.rk.stages - 1]
        } else {
            &self.k_end
        };
        let step = StepRow {
            y: &self.y,
            y_new: &self.y_new,
            k: &self.k,
            f_end,
            row: row.clone(),
            h: self.h_step[r],
        };
        while self.next_out[r] < s.ts.len() {
            let kidx = self.next_out[r];
            let tk = s.ts[kidx];
            if (tk - tn) * s.dir > T::zero() {
                break;
            }
            let dst = &mut out[kidx * w + row.start..kidx * w + row.end];
            let theta = (tk - t) / step.h;
            if let Some(tp) = tape.as_deref_mut() {
                tp.record_output(kidx, (tk != tn).then_some(theta));
            }
            if tk == tn {
                dst.copy_from_slice(&self.y_new[row.clone()]);
            } else {
                debug_assert!(s.rk.dense.is_some() || s.rk.fsal || self.rows.binary_search(&r).is_ok());
                s.rk.interpolate(&step, theta, dst);
            }
            self.next_out[r] += 1;
        }
    }

    /// Moves sample `r` to the end `tn` of its accepted step and carries its first stage over
    /// when known (FSAL, or the Hermite end derivative).
    #[inline]
    fn advance(&mut self, s: &Setup<'_, T>, r: usize, tn: T) {
        let row = s.row(r);
        self.y[row.clone()].copy_from_slice(&self.y_new[row.clone()]);
        self.t[r] = tn;
        if s.rk.fsal {
            let (k0, rest) = self.k.split_first_mut().expect("stages");
            k0[row.clone()].copy_from_slice(&rest[s.rk.stages - 2][row]);
            self.k1_valid[r] = true;
        } else if self.rows.binary_search(&r).is_ok() {
            self.k[0][row.clone()].copy_from_slice(&self.k_end[row]);
            self.k1_valid[r] = true;
        } else {
            self.k1_valid[r] = false;
        }
        // Only torchdiffeq's rules step past the end.
        if (tn - s.t_end) * s.dir >= T::zero() {
            self.live[r] = false;
            self.dropped = true;
        }
    }

    /// The work counters, and the failed samples: with `throw`, the first failure is the
    /// error; otherwise their outputs after the failure are NaN.
    pub(crate) fn report(&mut self, s: &Setup<'_, T>, out: &mut [T]) -> Result<Report> {
        let stats = &self.evals.stats;
        let mut report = Report::default();
        report.stats.nfe = self.evals.nfe;
        report.stats.per_sample.extend_from_slice(stats);
        if s.shared {
            if let Some(s0) = stats.first() {
                report.stats.accepted = s0.accepted;
                report.stats.rejected = s0.rejected;
            }
        } else {
            report.stats.accepted = stats.iter().map(|s| s.accepted).sum();
            report.stats.rejected = stats.iter().map(|s| s.rejected).sum();
        }
        let w = s.batch * s.dim;
        for r in 0..s.batch {
            if let Some(e) = self.status[r].take() {
                if s.opts.throw {
                    return Err(e);
                }
                for kidx in self.next_out[r]..s.ts.len() {
                    out[kidx * w..(kidx + 1) * w][s.row(r)].fill(T::nan());
                }
                report.failures.push(e);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::{Setup, Workspace};
    use crate::control::{self, ControlState};
    use crate::error::OdeError;
    use crate::field::{FnField, VectorField};
    use crate::options::{SolveOptions, StepMode};
    use crate::rk::{Coeffs, hermite_weights};
    use crate::tableau::Method;
    use crate::tape::Tape;

    /// `dy/dt = -y`, or NaN where `y > 3`.
    fn decay() -> impl VectorField<f64> {
        FnField::new(1, |_t: f64, y: &[f64], dy: &mut [f64]| {
            dy[0] = if y[0] > 3.0 { f64::NAN } else { -y[0] }
        })
    }

    struct Case {
        rk: Coeffs<f64>,
        opts: SolveOptions<f64>,
        ts: Vec<f64>,
    }

    impl Case {
        fn new(m: Method, opts: SolveOptions<f64>, ts: &[f64]) -> Self {
            Self {
                rk: Coeffs::new(&m.tableau()),
                opts,
                ts: ts.to_vec(),
            }
        }

        fn setup(&self, batch: usize) -> Setup<'_, f64> {
            Setup::new(&self.rk, &self.opts, &self.ts, batch, 1)
        }
    }

    fn started(s: &Setup<'_, f64>, y0: &[f64], out: &mut [f64]) -> Workspace<f64> {
        let mut ws = Workspace::default();
        ws.ensure(s.rk.stages, s.batch, s.dim);
        ws.start(s, y0, out);
        ws
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-13 * b.abs().max(1.0)
    }

    #[test]
    fn every_sample_starts_at_the_first_time() {
        let c = Case::new(Method::Rk4, SolveOptions::default(), &[0.5, 1.0]);
        let s = c.setup(2);
        let mut out = vec![0.0; 4];
        let ws = started(&s, &[1.0, 2.0], &mut out);
        assert_eq!((&out[..2], &ws.y[..]), (&[1.0, 2.0][..], &[1.0, 2.0][..]));
        assert_eq!((ws.t.clone(), ws.active.clone()), (vec![0.5, 0.5], vec![0, 1]));
        assert!(!s.adaptive && !s.shared && s.dir == 1.0 && s.t_end == 1.0);
    }

    #[test]
    fn the_initial_step_is_hairers_and_keeps_the_first_derivative() {
        let opts = SolveOptions::default().rtol(1e-3).atol(1e-6);
        let c = Case::new(Method::Dopri5, opts.clone(), &[0.0, 1.0]);
        let s = c.setup(2);
        let (y0, mut out) = ([1.0, 2.0], vec![0.0; 4]);
        let mut ws = started(&s, &y0, &mut out);
        ws.initial_step(&mut decay(), &s).unwrap();
        for (r, y) in y0.into_iter().enumerate() {
            let sc = 1e-6 + 1e-3 * y;
            let (d0, d1) = (y / sc, y / sc);
            let h0 = control::trial_step(d0, d1);
            let dd = ((-(y - h0 * y)) - (-y)).abs() / sc;
            assert!(close(ws.h[r], control::initial_step(h0, d1, dd, 5)), "sample {r}");
        }
        assert_eq!(
            (ws.evals.nfe, ws.k1_valid.clone(), ws.k[0].clone()),
            (2, vec![true; 2], vec![-1.0, -2.0])
        );
        // A given first step, backwards in time.
        let c = Case::new(Method::Dopri5, opts.first_step(0.25), &[1.0, 0.0]);
        let s = c.setup(2);
        let mut ws = started(&s, &y0, &mut out);
        ws.initial_step(&mut decay(), &s).unwrap();
        assert_eq!((ws.h.clone(), ws.evals.nfe), (vec![-0.25; 2], 0));
    }

    #[test]
    fn a_sample_over_its_step_budget_fails_alone_or_fails_the_shared_solve() {
        let opts = SolveOptions::default().max_num_steps(3);
        let c = Case::new(Method::Euler, opts.clone(), &[0.0, 0.5, 1.0]);
        let s = c.setup(2);
        let mut out = vec![0.0; 6];
        let mut ws = started(&s, &[1.0, 2.0], &mut out);
        ws.evals.stats[0].accepted = 3;
        ws.choose_steps(&s).unwrap();
        assert!(!ws.live[0] && matches!(ws.status[0], Some(OdeError::MaxStepsExceeded { sample: 0, .. })));
        // Fixed steps without a step size: one step per output interval.
        assert_eq!(ws.h_step[1], 0.5);
        let c = Case::new(Method::Euler, opts.step_mode(StepMode::Shared), &[0.0, 0.5, 1.0]);
        let s = c.setup(2);
        let mut ws = started(&s, &[1.0, 2.0], &mut out);
        ws.evals.stats[1].rejected = 3;
        let e = ws.choose_steps(&s).unwrap_err();
        assert!(matches!(e, OdeError::MaxStepsExceeded { sample: 1, .. }));
    }

    #[test]
    fn the_first_stage_is_evaluated_only_where_not_carried_over() {
        let c = Case::new(Method::Euler, SolveOptions::default(), &[0.0, 1.0]);
        let s = c.setup(3);
        let mut out = vec![0.0; 6];
        let mut ws = started(&s, &[1.0, 2.0, 4.0], &mut out);
        ws.k1_valid[1] = true;
        ws.k[0][1] = 7.0;
        ws.first_stage(&mut decay(), &s).unwrap();
        assert_eq!(ws.evals.nfe, 1);
        assert_eq!(ws.evals.stats.iter().map(|s| s.nfe).collect::<Vec<_>>(), vec![1, 0, 1]);
        assert_eq!(&ws.k[0][..2], &[-1.0, 7.0]);
        // y = 4 has a NaN derivative: that sample fails.
        assert!(!ws.live[2] && matches!(ws.status[2], Some(OdeError::NonFinite { what: "derivative", .. })));
        assert!(ws.live[0] && ws.live[1]);
    }

    #[test]
    fn the_stages_give_the_methods_solution() {
        let c = Case::new(Method::Rk4Classic, SolveOptions::default(), &[0.0, 1.0]);
        let s = c.setup(2);
        let (y0, mut out) = ([1.0, 2.0], vec![0.0; 4]);
        let mut ws = started(&s, &y0, &mut out);
        ws.h_step.fill(0.1);
        ws.first_stage(&mut decay(), &s).unwrap();
        ws.stages(&mut decay(), &s);
        let h: f64 = 0.1;
        let growth = 1.0 - h + h * h / 2.0 - h.powi(3) / 6.0 + h.powi(4) / 24.0;
        for r in 0..2 {
            assert!(close(ws.y_new[r], y0[r] * growth));
        }
        assert_eq!(ws.evals.nfe, 4);
    }

    /// Heun's method on `dy/dt = -y`: the embedded error is `h²y/2`.
    #[test]
    fn the_error_ratio_is_the_scaled_rms_of_the_embedded_error() {
        for shared in [false, true] {
            let mode = if shared { StepMode::Shared } else { StepMode::PerSample };
            let opts = SolveOptions::default().rtol(1e-3).atol(1e-3).step_mode(mode);
            let c = Case::new(Method::Heun2, opts, &[0.0, 1.0]);
            let s = c.setup(2);
            let (y0, mut out) = ([1.0, 2.0], vec![0.0; 4]);
            let mut ws = started(&s, &y0, &mut out);
            ws.h_step.fill(0.1);
            ws.first_stage(&mut decay(), &s).unwrap();
            ws.stages(&mut decay(), &s);
            ws.error_estimate(&s);
            let e: Vec<f64> = y0.iter().map(|y| 0.5 * 0.01 * y / (1e-3 + 1e-3 * y)).collect();
            if shared {
                let rms = ((e[0] * e[0] + e[1] * e[1]) / 2.0).sqrt();
                assert!(close(ws.ctrl[0].ratio, rms) && ws.ctrl[1].ratio == ws.ctrl[0].ratio);
                assert_eq!(ws.culprit, 1);
            } else {
                assert!(close(ws.ctrl[0].ratio, e[0]) && close(ws.ctrl[1].ratio, e[1]));
            }
        }
    }

    #[test]
    fn tries_pass_on_their_error_ratio_or_for_fixed_steps_on_a_finite_state() {
        let c = Case::new(Method::Heun2, SolveOptions::default(), &[0.0, 1.0]);
        let s = c.setup(2);
        let mut out = vec![0.0; 4];
        let mut ws = started(&s, &[1.0, 2.0], &mut out);
        ws.ctrl[0].ratio = 0.9;
        ws.ctrl[1].ratio = 1.1;
        ws.accept_reject(&s).unwrap();
        assert_eq!(ws.accepted, vec![true, false]);
        let c = Case::new(Method::Euler, SolveOptions::default(), &[0.0, 1.0]);
        let s = c.setup(2);
        let mut ws = started(&s, &[1.0, 2.0], &mut out);
        ws.h_step.fill(0.5);
        ws.y_new[1] = f64::INFINITY;
        ws.accept_reject(&s).unwrap();
        assert_eq!(ws.accepted, vec![true, false]);
        assert!(matches!(ws.status[1], Some(OdeError::NonFinite { what: "state", t, sample: 1 }) if t == 0.5));
    }

    #[test]
    fn the_end_derivative_is_taken_only_where_an_output_falls_inside_a_step() {
        let c = Case::new(Method::Rk4, SolveOptions::default(), &[0.0, 0.3, 1.0]);
        let s = c.setup(2);
        let mut out = vec![0.0; 6];
        let mut ws = started(&s, &[1.0, 2.0], &mut out);
        ws.h_step.copy_from_slice(&[0.5, 0.2]);
        ws.accepted.fill(true);
        ws.y_new.copy_from_slice(&[0.5, 1.5]);
        ws.end_derivative(&mut decay(), &s);
        assert_eq!((ws.rows.clone(), ws.k_end[0], ws.evals.nfe), (vec![0], -0.5, 1));
        // Methods with their own dense output or FSAL need none.
        let c = Case::new(Method::Bosh3, SolveOptions::default(), &[0.0, 0.3, 1.0]);
        let s = c.setup(2);
        let mut ws = started(&s, &[1.0, 2.0], &mut out);
        ws.h_step.fill(0.5);
        ws.accepted.fill(true);
        ws.end_derivative(&mut decay(), &s);
        assert!(ws.rows.is_empty() && ws.evals.nfe == 0);
    }

    #[test]
    fn the_controller_sets_the_next_steps_one_for_the_batch_in_shared_mode() {
        for shared in [false, true] {
            let mode = if shared { StepMode::Shared } else { StepMode::PerSample };
            let c = Case::new(Method::Heun2, SolveOptions::default().step_mode(mode), &[0.0, 1.0]);
            let s = c.setup(2);
            let mut out = vec![0.0; 4];
            let mut ws = started(&s, &[1.0, 2.0], &mut out);
            ws.h_step.fill(0.1);
            ws.ctrl[0].ratio = 0.5;
            ws.ctrl[1].ratio = 2.0;
            ws.accepted.copy_from_slice(&[true, false]);
            ws.adapt_step_size(&s);
            let rules = control::Rules::of(&c.opts);
            let f0 = ControlState {
                ratio: 0.5,
                ..Default::default()
            }
            .adapt(rules, true, 2.0);
            let f1 = ControlState {
                ratio: 2.0,
                ..Default::default()
            }
            .adapt(rules, false, 2.0);
            if shared {
                assert_eq!(ws.h, vec![0.1 * f1; 2]);
            } else {
                assert_eq!(ws.h, vec![0.1 * f0, 0.1 * f1]);
            }
            assert_eq!(ws.ctrl[0].hist, [0.5, 1.0]);
            assert_eq!(ws.ctrl[1].hist, [1.0, 1.0]);
        }
    }

    #[test]
    fn commit_writes_the_outputs_inside_accepted_steps_and_moves_on() {
        let c = Case::new(
            Method::Rk4,
            SolveOptions::default().step_size(0.5),
            &[0.0, 0.25, 0.5, 1.0],
        );
        let s = c.setup(2);
        let (y0, mut out) = ([1.0, 2.0], vec![0.0; 8]);
        let mut ws = started(&s, &y0, &mut out);
        let mut tape = Tape::new();
        tape.start(1, 2, 4);
        let f = &mut decay();
        ws.choose_steps(&s).unwrap();
        ws.first_stage(f, &s).unwrap();
        ws.stages(f, &s);
        ws.accept_reject(&s).unwrap();
        ws.accepted[1] = false;
        ws.end_derivative(f, &s);
        ws.commit(&s, &mut out, Some(&mut tape));
        let y1 = ws.y_new[0];
        let [h00, h10, h01, h11] = hermite_weights(0.5, 0.5);
        assert_eq!(out[2], h00 * y0[0] + h10 * -y0[0] + h01 * y1 + h11 * -y1);
        assert_eq!((out[4], ws.y[0], ws.t[0], ws.next_out[0]), (y1, y1, 0.5, 3));
        assert_eq!((ws.k[0][0], ws.k1_valid[0]), (-y1, true));
        assert_eq!((ws.y[1], ws.t[1], ws.next_out[1]), (y0[1], 0.0, 1));
        let st = &ws.evals.stats;
        assert_eq!(
            (st[0].accepted, st[0].rejected, st[1].accepted, st[1].rejected),
            (1, 0, 0, 1)
        );
        assert_eq!(
            (tape.num_steps(), tape.outs.clone()),
            (1, vec![(1, Some(0.5)), (2, None)])
        );
    }

    #[test]
    fn the_report_sums_the_counters_and_blanks_failed_samples() {
        for throw in [false, true] {
            let c = Case::new(Method::Euler, SolveOptions::default().throw(throw), &[0.0, 0.5, 1.0]);
            let s = c.setup(2);
            let mut out = vec![1.0; 6];
            let mut ws = started(&s, &[1.0, 2.0], &mut out);
            ws.evals.nfe = 5;
            ws.evals.stats[0].accepted = 2;
            ws.evals.stats[1].accepted = 1;
            ws.next_out = vec![3, 2];
            ws.status[1] = Some(OdeError::NonFinite {
                what: "state",
                t: 0.7,
                sample: 1,
            });
            let report = ws.report(&s, &mut out);
            if throw {
                assert!(matches!(report, Err(OdeError::NonFinite { sample: 1, .. })));
                continue;
            }
            let report = report.unwrap();
            assert_eq!(
                (report.stats.nfe, report.stats.accepted, report.failures.len()),
                (5, 3, 1)
            );
            assert!(out[5].is_nan() && out[4] == 1.0 && out[3] == 1.0);
        }
    }
}
