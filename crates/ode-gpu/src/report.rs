//! Per-sample statistics and failures decoded from the control block the kernels leave in the
//! arena.

use crate::shaders::{field, status};
use ode_core::{OdeError, SampleStats, SolveOptions};

/// Per-sample statistics and failures from the control block of `n` rows starting at `r0`.
pub(crate) fn sample_report(
    ctl: &[f32],
    n: usize,
    r0: usize,
    opts: &SolveOptions<f32>,
    adjoint: bool,
) -> (Vec<SampleStats>, Vec<(usize, OdeError)>) {
    let f = |fld: usize, b: usize| ctl[fld * n + b];
    let mut stats = Vec::with_capacity(n);
    let mut fails = Vec::new();
    for b in 0..n {
        stats.push(SampleStats {
            nfe: f(field::NFE, b) as usize,
            accepted: f(field::ACC, b) as usize,
            rejected: f(field::REJ, b) as usize,
        });
        let t = f(field::T, b) as f64;
        let sample = r0 + b;
        let st = f(field::ST, b);
        let what = if adjoint { "adjoint state" } else { "state" };
        let e = if st == status::UNDERFLOW {
            OdeError::StepSizeUnderflow {
                t,
                h: f(field::HS, b).abs() as f64,
                min_step: (opts.min_step as f64).max(t.abs() * f32::EPSILON as f64 * 4.0),
                sample,
            }
        } else if st == status::MAX_STEPS {
            OdeError::MaxStepsExceeded {
                t,
                max_num_steps: opts.max_num_steps,
                sample,
            }
        } else if st == status::NON_FINITE {
            OdeError::NonFinite { what, t, sample }
        } else if st == status::RUNNING {
            // Cannot happen (the step budget stops every sample); never report a partial solve.
            OdeError::MaxStepsExceeded {
                t,
                max_num_steps: opts.max_num_steps,
                sample,
            }
        } else {
            continue;
        };
        fails.push((sample, e));
    }
    (stats, fails)
}
