//! [`Plan`]: the dispatch sequences of one arena layout (field, VJP, the forward solve's
//! prologue and attempted step, the adjoint's) and the uniform slots they read, built by
//! [`PlanSpec::build`].

use crate::control::ctl;
use crate::dispatch::{GemmSchedule, Op, OpBuilder, times_w, times_wt};
use crate::layout::{Layout, ParamOffsets};
use crate::shaders::{Entry, Gemm, field, gemm_flags as gf};
use ode_core::{ButcherTableau, SolveOptions};

/// The dispatch sequences of one layout and the uniform slots they read.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub layout: Layout,
    /// The uniform slots, written to the device once per plan.
    pub blob: Vec<u8>,
    pub fwd_prologue: Vec<Op>,
    pub fwd_attempt: Vec<Op>,
    pub adj_prologue: Vec<Op>,
    pub adj_attempt: Vec<Op>,
    pub field: Vec<Op>,
    pub vjp: Vec<Op>,
    pub count: Vec<Op>,
    /// Field evaluations per forward attempt and in the forward prologue (batched calls).
    pub fwd_evals: (usize, usize),
}

/// What a plan depends on besides the layout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanSpec<'a> {
    pub tableau: &'a ButcherTableau,
    pub opts: &'a SolveOptions<f32>,
    pub adj_opts: &'a SolveOptions<f32>,
    pub schedule: GemmSchedule,
    pub latent: usize,
    pub hidden: usize,
}

/// Makes the ops of one layout: the field, its VJPs and the parameter VJPs at given regions.
struct Sequences {
    ops: OpBuilder,
    lay: Layout,
    l: usize,
    m: usize,
    s: usize,
    /// The field's parameters (at the start of the arena).
    p: ParamOffsets,
    /// Their gradient.
    gt: ParamOffsets,
}

impl Sequences {
    /// The field from the rows at `x` into `y` with activations in stage `st` of h1/h2.
    /// With `stage = Some(i)` the first layer forms stage i's input from y and the stages on
    /// load (fused stage combination; `x` is then y).
    fn field(&mut self, x: usize, y: usize, st: usize, stage: Option<usize>) -> Vec<Op> {
        let (lay, p, r, l, m) = (self.lay, self.p, self.lay.rows, self.l, self.m);
        let (h1, h2) = (lay.h1 + st * r * m, lay.h2 + st * r * m);
        let mut first = times_wt(r, m, l, x, p.w0, h1).bias(p.b0, gf::TANH);
        if let Some(i) = stage {
            first.flags |= gf::STAGE;
            first.st_k = lay.k as u32;
            first.st_stride = (r * l) as u32;
            first.st_hs = (lay.ctl + field::HS * r) as u32;
            first.st_tab = (lay.tab + i * self.s) as u32;
            first.st_n = i as u32;
        }
        vec![
            self.ops.gemm(first),
            self.ops.gemm(times_wt(r, m, m, h1, p.w1, h2).bias(p.b1, gf::TANH)),
            self.ops.gemm(times_wt(r, l, m, h2, p.w2, y).bias(p.b2, 0)),
        ]
    }

    /// Backward through the field at stage `st`: ka = alpha · (ain ᵀ∂f/∂z), through tanh
    /// with the stage's activations.
    fn vjp(&mut self, st: usize, alpha: f32) -> Vec<Op> {
        let (lay, p, r, l, m) = (self.lay, self.p, self.lay.rows, self.l, self.m);
        let (h1, h2) = (lay.h1 + st * r * m, lay.h2 + st * r * m);
        let (g1, g2) = (lay.g1 + st * r * m, lay.g2 + st * r * m);
        let (ain, ka) = (lay.ain + st * r * l, lay.ka + st * r * l);
        vec![
            self.ops.gemm(times_w(r, m, l, ain, p.w2, g2).dtanh(h2)),
            self.ops.gemm(times_w(r, m, m, g2, p.w1, g1).dtanh(h1)),
            self.ops.gemm(Gemm {
                alpha,
                ..times_w(r, l, m, g1, p.w0, ka)
            }),
        ]
    }

    /// The field and its VJP at adjoint stage `i` (inputs in zin[i] and ain[i]).
    fn stage_eval(&mut self, i: usize) -> Vec<Op> {
        let (lay, r, l) = (self.lay, self.lay.rows, self.l);
        let mut v = self.field(lay.zin + i * r * l, lay.k + i * r * l, i, None);
        v.extend(self.vjp(i, -1.0));
        v
    }

    /// Parameter VJPs summed over `stages × rows` with the quadrature weights at `wts`.
    fn param_vjps(&mut self, stages: usize) -> Vec<Op> {
        let (lay, gt, l, m) = (self.lay, self.gt, self.l, self.m);
        let kk = stages * lay.rows;
        [
            self.param_gemm(kk, (m, l), (lay.g1, m), Some(lay.zin), gt.w0),
            self.param_gemm(kk, (m, 1), (lay.g1, m), None, gt.b0),
            self.param_gemm(kk, (m, m), (lay.g2, m), Some(lay.h1), gt.w1),
            self.param_gemm(kk, (m, 1), (lay.g2, m), None, gt.b1),
            self.param_gemm(kk, (l, m), (lay.ain, l), Some(lay.h2), gt.w2),
            self.param_gemm(kk, (l, 1), (lay.ain, l), None, gt.b2),
        ]
        .concat()
    }

    /// `C += Σ_k wts(k) · A(k)ᵀ B(k)` over `kk` rows for a `shape.0 × shape.1` gradient at `c`:
    /// `A` at `a.0` with row stride `a.1`, `B` at `b` (or ones, for a bias).
    fn param_gemm(
        &mut self,
        kk: usize,
        shape: (usize, usize),
        a: (usize, usize),
        b: Option<usize>,
        c: usize,
    ) -> Vec<Op> {
        let (mo, no) = shape;
        let flags = gf::KSCALE | gf::ACCUM | if b.is_none() { gf::BONES } else { 0 };
        let g = Gemm {
            m: mo as u32,
            n: no as u32,
            k: kk as u32,
            flags,
            a_off: a.0 as u32,
            a_rs: 1,
            a_cs: a.1 as u32,
            b_off: b.unwrap_or(0) as u32,
            b_rs: no as u32,
            b_cs: 1,
            c_off: c as u32,
            c_rs: no as u32,
            c_cs: 1,
            scale_off: self.lay.wts as u32,
            alpha: 1.0,
            ..Default::default()
        };
        self.ops.gemm_long_k(g, self.lay.partial)
    }
}

impl PlanSpec<'_> {
    /// The dispatch sequences of layout `lay`.
    pub fn build(&self, lay: Layout) -> Plan {
        let (l, m, s) = (self.latent, self.hidden, self.tableau.stages());
        let mut seq = Sequences {
            ops: OpBuilder::new(self.schedule),
            lay,
            l,
            m,
            s,
            p: ParamOffsets::new(0, l, m),
            gt: ParamOffsets::new(lay.gtheta, l, m),
        };
        let fwd: Vec<u32> = (0..s)
            .map(|i| {
                seq.ops
                    .push(bytemuck::bytes_of(&ctl(self.tableau, l, &lay, self.opts, false, i)))
            })
            .collect();
        let adj: Vec<u32> = (0..s)
            .map(|i| {
                seq.ops
                    .push(bytemuck::bytes_of(&ctl(self.tableau, l, &lay, self.adj_opts, true, i)))
            })
            .collect();
        let mut plan = Plan {
            layout: lay,
            ..Default::default()
        };
        self.forward(&mut seq, &mut plan, &fwd);
        if lay.adjoint {
            // Standalone VJP at stage 0 (inputs in zin[0], ain[0]; weights 1).
            plan.vjp = seq.field(lay.zin, lay.k, 0, None);
            plan.vjp.extend(seq.vjp(0, 1.0));
            plan.vjp.extend(seq.param_vjps(1));
            self.adjoint(&mut seq, &mut plan, &adj);
        }
        plan.blob = seq.ops.blob;
        plan
    }

    /// The field alone, the forward prologue and attempted step, and the running count, reading
    /// the forward uniforms `fwd` (one per stage).
    fn forward(&self, seq: &mut Sequences, plan: &mut Plan, fwd: &[u32]) {
        let (lay, r, l, s) = (seq.lay, seq.lay.rows, seq.l, seq.s);
        let t = self.tableau;
        let adaptive = t.b_err.is_some() && self.opts.step_size.is_none();
        let hairer = adaptive && self.opts.first_step.is_none();
        plan.field = seq.field(lay.y, lay.k, 0, None);
        plan.fwd_prologue.push(Op::cover(Entry::FwdInit, fwd[0], r));
        plan.fwd_prologue.extend(plan.field.iter().copied());
        plan.fwd_evals.1 = 1;
        if hairer {
            plan.fwd_prologue.push(Op::cover(Entry::FwdInitA, fwd[0], r));
            plan.fwd_prologue.extend(seq.field(lay.zin, lay.k + r * l, 0, None));
            plan.fwd_prologue.push(Op::cover(Entry::FwdInitB, fwd[0], r));
            plan.fwd_evals.1 += 1;
        }
        plan.fwd_attempt.push(Op::cover(Entry::FwdChoose, fwd[0], r));
        for i in 1..s {
            if self.schedule == GemmSchedule::Tiled {
                // Fused: the first layer forms the stage input itself (one pass fewer per stage;
                // each row's combination is recomputed per 64-column tile, at most twice here).
                plan.fwd_attempt.extend(seq.field(lay.y, lay.k + i * r * l, 0, Some(i)));
            } else {
                // Rows schedule: every 4 columns would recompute it; a separate pass is cheaper.
                plan.fwd_attempt.push(Op::cover(Entry::StageInput, fwd[i], r * l));
                plan.fwd_attempt.extend(seq.field(lay.zin, lay.k + i * r * l, 0, None));
            }
        }
        plan.fwd_evals.0 = s - 1;
        if t.is_fsal() {
            plan.fwd_attempt.push(Op::cover(Entry::FwdSolutionFinish, fwd[0], r));
        } else {
            // The derivative at the step end (Hermite output, next first stage) sits between.
            plan.fwd_attempt.push(Op::cover(Entry::FwdSolution, fwd[0], r));
            plan.fwd_attempt.extend(seq.field(lay.ynew, lay.kend, 0, None));
            plan.fwd_attempt.push(Op::cover(Entry::FwdFinish, fwd[0], r));
            plan.fwd_evals.0 += 1;
        }
        plan.count.push(Op::single(Entry::CountActive, fwd[0]));
    }

    /// The adjoint's prologue and attempted step (stages, step control, parameter VJPs),
    /// reading the adjoint uniforms `adj` (one per stage).
    fn adjoint(&self, seq: &mut Sequences, plan: &mut Plan, adj: &[u32]) {
        let (r, l, s) = (seq.lay.rows, seq.l, seq.s);
        let adaptive = self.tableau.b_err.is_some() && self.adj_opts.step_size.is_none();
        let hairer = adaptive && self.adj_opts.first_step.is_none();
        plan.adj_prologue.push(Op::cover(Entry::AdjInit, adj[0], r));
        if hairer {
            plan.adj_prologue.push(Op::cover(Entry::AdjStageInput, adj[0], r * l));
            plan.adj_prologue.extend(seq.stage_eval(0));
            plan.adj_prologue.push(Op::cover(Entry::AdjInitA, adj[0], r));
            plan.adj_prologue.extend(seq.stage_eval(1));
            plan.adj_prologue.push(Op::cover(Entry::AdjInitB, adj[0], r));
        }
        plan.adj_attempt.push(Op::cover(Entry::AdjChoose, adj[0], r));
        for i in 0..s {
            plan.adj_attempt.push(Op::cover(Entry::AdjStageInput, adj[i], r * l));
            plan.adj_attempt.extend(seq.stage_eval(i));
        }
        plan.adj_attempt.push(Op::cover(Entry::AdjFinish, adj[0], r));
        plan.adj_attempt.extend(seq.param_vjps(s));
    }
}
