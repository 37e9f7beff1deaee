//! The [`Ctl`] uniform that the per-sample passes of `rk.wgsl` read: where their data lives in
//! the arena, the tableau's shape and the step control options.

use crate::layout::Layout;
use crate::shaders::{Ctl, ctl_flags};
use ode_core::{ButcherTableau, Interpolation, SolveOptions, Tolerance};

/// The [`Ctl`] flags of a tableau and options, and the dense-output degree (0 for Hermite).
fn flags_of(t: &ButcherTableau, opts: &SolveOptions<f32>) -> (u32, usize) {
    let adaptive = t.b_err.is_some() && opts.step_size.is_none();
    let mut flags = 0;
    if adaptive {
        flags |= ctl_flags::ADAPTIVE;
    }
    if t.is_fsal() {
        flags |= ctl_flags::FSAL;
    }
    let dense_deg = match &t.interpolation {
        Interpolation::Polynomial(p) => {
            flags |= ctl_flags::DENSE;
            p.iter().map(Vec::len).max().unwrap_or(0)
        }
        Interpolation::Hermite => 0,
    };
    if opts.step_size.is_some() {
        flags |= ctl_flags::STEP_SIZE;
    }
    if opts.max_step.is_some() {
        flags |= ctl_flags::MAX_STEP;
    }
    if opts.first_step.is_some() {
        flags |= ctl_flags::FIRST_STEP;
    }
    (flags, dense_deg)
}

/// The uniform of stage `stage`'s passes of a forward solve (or, with `adjoint`, a backward
/// one) of a `dim`-dimensional state laid out as `lay`.
pub(crate) fn ctl(
    t: &ButcherTableau,
    dim: usize,
    lay: &Layout,
    opts: &SolveOptions<f32>,
    adjoint: bool,
    stage: usize,
) -> Ctl {
    let (flags, dense_deg) = flags_of(t, opts);
    let pid = &opts.controller;
    let tol = |x: &Tolerance<f32>| x.get(0);
    let u = |x: usize| x as u32;
    Ctl {
        rows: u(lay.rows),
        dim: u(dim),
        stages: u(t.stages()),
        n_out: u(lay.n_out),
        y: u(lay.y),
        ynew: u(lay.ynew),
        ystage: u(lay.zin),
        k: u(lay.k),
        out: u(lay.out),
        ts: u(lay.ts),
        ctl: u(lay.ctl),
        tab: u(lay.tab),
        stage: u(stage),
        flags,
        max_steps: opts.max_num_steps.min(u32::MAX as usize) as u32,
        count: u(lay.count),
        rtol: tol(&opts.rtol),
        atol: tol(&opts.atol),
        step_size: opts.step_size.unwrap_or(0.0),
        max_step: opts.max_step.unwrap_or(0.0),
        min_step: opts.min_step,
        safety: pid.safety as f32,
        min_factor: pid.min_factor as f32,
        max_factor: pid.max_factor as f32,
        b1: (pid.pcoeff + pid.icoeff + pid.dcoeff) as f32,
        b2: -(pid.pcoeff + 2.0 * pid.dcoeff) as f32,
        b3: pid.dcoeff as f32,
        err_order: t.embedded_order.map_or(1.0, |q| q as f32 + 1.0),
        order: t.order as f32,
        first_step: opts.first_step.unwrap_or(0.0),
        dense_deg: u(dense_deg),
        kend: u(lay.kend),
        a: u(lay.a),
        anew: u(lay.anew),
        ain: u(lay.ain),
        ka: u(lay.ka),
        gout: u(lay.gout),
        wts: u(lay.wts),
        // The sign of the time direction is fixed per call: see `dir_slots`.
        dir: if adjoint { -1.0 } else { 1.0 },
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ode_core::Method;

    #[test]
    fn flags_follow_the_tableau_and_options() {
        let dopri = Method::Dopri5.tableau();
        let (flags, deg) = flags_of(&dopri, &SolveOptions::default());
        assert_eq!(flags, ctl_flags::ADAPTIVE | ctl_flags::FSAL | ctl_flags::DENSE);
        assert!(deg > 0);
        let fixed = SolveOptions::default().step_size(0.1);
        let (flags, _) = flags_of(&dopri, &fixed);
        assert_eq!(
            flags & (ctl_flags::ADAPTIVE | ctl_flags::STEP_SIZE),
            ctl_flags::STEP_SIZE
        );
        assert_eq!(flags_of(&Method::Rk4.tableau(), &SolveOptions::default()), (0, 0));
    }
}
