//! Where everything lives in the arena, the one storage buffer of a solve: [`Layout`] (float
//! offsets of every region for a chunk of rows), [`ParamOffsets`] (the field's tensors inside a
//! parameter block) and the coefficient block of `rk.wgsl`.

use crate::shaders::{DENSE_MAX, field};
use ode_core::{ButcherTableau, Interpolation};

/// Most partial sums of a split reduction (tiled schedule).
const MAX_SPLITS: usize = 128;
/// Fewest reduction terms per partial sum.
const MIN_SPLIT: usize = 1024;

/// Partial sums a reduction of `k` terms is split into.
pub(crate) fn splits_for(k: usize) -> usize {
    k.div_ceil(MIN_SPLIT).clamp(1, MAX_SPLITS)
}

/// Float offsets of every region of the arena for a chunk of `rows` samples and `n_out` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Layout {
    pub rows: usize,
    pub n_out: usize,
    pub adjoint: bool,
    pub params: usize,
    pub gtheta: usize,
    pub tab: usize,
    pub ts: usize,
    pub count: usize,
    pub ctl: usize,
    pub y: usize,
    pub ynew: usize,
    pub a: usize,
    pub anew: usize,
    pub kend: usize,
    pub out: usize,
    pub gout: usize,
    pub zin: usize,
    pub ain: usize,
    pub k: usize,
    pub ka: usize,
    pub h1: usize,
    pub h2: usize,
    pub g1: usize,
    pub g2: usize,
    pub wts: usize,
    pub partial: usize,
    pub total: usize,
}

/// The field's sizes as the arena sees them: latent `l`, hidden `m`, stages `s`, parameters `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub l: usize,
    pub m: usize,
    pub s: usize,
    pub p: usize,
}

impl Layout {
    /// The regions for `rows` samples and `n_out` output times; with `adjoint`, also those of
    /// the backward pass (adjoint state, stage inputs and parameter gradient).
    pub fn new(rows: usize, n_out: usize, adjoint: bool, dims: Dims) -> Self {
        let Dims { l, m, s, p } = dims;
        let mut at = 0usize;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let (rl, rm) = (rows * l, rows * m);
        let sa = if adjoint { s } else { 1 };
        let adj = |n: usize| if adjoint { n } else { 0 };
        let mut lay = Layout {
            rows,
            n_out,
            adjoint,
            params: take(p),
            gtheta: take(adj(p)),
            tab: take(tableau_block_len(s)),
            ts: take(n_out),
            count: take(4),
            ctl: take(field::FIELDS * rows),
            y: take(rl),
            ynew: take(rl),
            a: take(adj(rl)),
            anew: take(adj(rl)),
            kend: take(rl),
            out: take(n_out * rl),
            gout: take(adj(n_out * rl)),
            zin: take(sa.max(2) * rl),
            ain: take(adj(s.max(2) * rl)),
            k: take(s.max(2) * rl),
            ka: take(adj(s.max(2) * rl)),
            h1: take(sa * rm),
            h2: take(sa * rm),
            g1: take(sa * rm),
            g2: take(sa * rm),
            wts: take(sa * rows),
            partial: take(adj(splits_for(s * rows) * (m * l).max(m * m))),
            total: 0,
        };
        lay.total = at;
        lay
    }
}

/// Offsets of the six field tensors in a flat parameter block starting at `base`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamOffsets {
    pub w0: usize,
    pub b0: usize,
    pub w1: usize,
    pub b1: usize,
    pub w2: usize,
    pub b2: usize,
}

impl ParamOffsets {
    /// The tensors of a field of latent size `l` and hidden size `m` ([`ode_core::Mlp`] order).
    pub fn new(base: usize, l: usize, m: usize) -> Self {
        let w0 = base;
        let b0 = w0 + m * l;
        let w1 = b0 + m;
        let b1 = w1 + m * m;
        let w2 = b1 + m;
        let b2 = w2 + l * m;
        Self { w0, b0, w1, b1, w2, b2 }
    }
}

/// Floats of the coefficient block of an `s`-stage tableau.
fn tableau_block_len(s: usize) -> usize {
    s * s + 3 * s + DENSE_MAX * s
}

/// The coefficient block of `rk.wgsl`: a[S·S], b[S], e[S], c[S], dense[S·5].
pub(crate) fn tableau_block(t: &ButcherTableau) -> Vec<f32> {
    let s = t.stages();
    let mut v = vec![0.0f32; tableau_block_len(s)];
    for (i, row) in t.a.iter().enumerate() {
        for (j, &x) in row.iter().enumerate() {
            v[i * s + j] = x as f32;
        }
    }
    for j in 0..s {
        v[s * s + j] = t.b[j] as f32;
        v[s * s + s + j] = t.b_err.as_ref().map_or(0.0, |e| e[j] as f32);
        v[s * s + 2 * s + j] = t.c[j] as f32;
    }
    if let Interpolation::Polynomial(p) = &t.interpolation {
        for (j, row) in p.iter().enumerate() {
            for (m, &x) in row.iter().enumerate() {
                v[s * s + 3 * s + j * DENSE_MAX + m] = x as f32;
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_disjoint_and_cover_the_arena() {
        let dims = Dims {
            l: 3,
            m: 8,
            s: 7,
            p: 200,
        };
        for adjoint in [false, true] {
            let lay = Layout::new(5, 4, adjoint, dims);
            let per_row = Layout::new(6, 4, adjoint, dims).total - lay.total;
            assert!(per_row > 0 && lay.total > per_row);
            assert_eq!(lay.params, 0);
            assert!(lay.ts < lay.count && lay.count < lay.ctl && lay.partial <= lay.total);
            assert_eq!(
                lay.gtheta == lay.tab,
                !adjoint,
                "the parameter gradient only in the adjoint layout"
            );
        }
    }

    #[test]
    fn parameter_offsets_follow_the_mlp_order() {
        let p = ParamOffsets::new(10, 3, 8);
        assert_eq!((p.w0, p.b0, p.w1, p.b1, p.w2, p.b2), (10, 34, 42, 106, 114, 138));
        assert_eq!(p.b2 + 3, 10 + ode_core::Mlp::<f32>::param_count(3, 8));
    }
}
