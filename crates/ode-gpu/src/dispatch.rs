//! Single dispatches: [`Op`] (entry point, uniform slot, workgroup grid), the matrix products of
//! `mlp.wgsl` as [`Gemm`] uniforms and their grids under either [`GemmSchedule`], and
//! [`OpBuilder`], which collects the uniform slots the ops read.

use crate::layout::splits_for;
use crate::shaders::{Entry, GEMM_TILE, Gemm, ROWS_COLS, SLOT, gemm_flags as gf};

/// How the matrix products are scheduled on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmSchedule {
    /// 64×64 output tiles staged in workgroup memory by 16×16 invocations (`gemm`): for GPUs.
    /// The default on them.
    Tiled,
    /// One row and four columns per invocation, no workgroup memory or barriers
    /// (`gemm_rows`): for CPU adapters such as lavapipe. The default on them.
    Rows,
}

/// One dispatch: entry point, uniform slot (byte offset) and workgroup grid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub entry: Entry,
    pub slot: u32,
    pub groups: (u32, u32, u32),
}

impl Op {
    /// `entry` over `n` invocations (one per sample or element), in workgroups of the entry's
    /// size.
    pub fn cover(entry: Entry, slot: u32, n: usize) -> Self {
        Op {
            entry,
            slot,
            groups: groups(n as u64, entry.workgroup_size()[0] as u64),
        }
    }

    /// `entry` as one workgroup (a pass that strides over the rows itself).
    pub fn single(entry: Entry, slot: u32) -> Self {
        Op {
            entry,
            slot,
            groups: (1, 1, 1),
        }
    }
}

/// `C = A · Wᵀ` for a row-major `A` (`m × k`) at `a`, a PyTorch weight `W` (`n × k`) at `w` and a
/// row-major `C` (`m × n`) at `c`: a forward layer.
pub(crate) fn times_wt(m: usize, n: usize, k: usize, a: usize, w: usize, c: usize) -> Gemm {
    Gemm {
        b_rs: 1,
        b_cs: k as u32,
        ..times_w(m, n, k, a, w, c)
    }
}

/// `C = A · W` for a row-major `A` (`m × k`) at `a`, `W` (`k × n`) at `w` and a row-major `C`
/// (`m × n`) at `c`: a layer's state VJP.
pub(crate) fn times_w(m: usize, n: usize, k: usize, a: usize, w: usize, c: usize) -> Gemm {
    Gemm {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        a_off: a as u32,
        a_rs: k as u32,
        a_cs: 1,
        b_off: w as u32,
        b_rs: n as u32,
        b_cs: 1,
        c_off: c as u32,
        c_rs: n as u32,
        c_cs: 1,
        alpha: 1.0,
        ..Default::default()
    }
}

impl Gemm {
    /// Adds the bias at `bias` and the epilogue `flags` (e.g. tanh).
    pub(crate) fn bias(self, bias: usize, flags: u32) -> Self {
        Gemm {
            flags: self.flags | gf::BIAS | flags,
            bias_off: bias as u32,
            ..self
        }
    }

    /// Multiplies by `1 − h²` of the activations at `h` (same shape as C): back through tanh.
    pub(crate) fn dtanh(self, h: usize) -> Self {
        Gemm {
            flags: self.flags | gf::DTANH,
            aux_off: h as u32,
            aux_rs: self.n,
            ..self
        }
    }
}

/// Collects uniform slots and makes the ops that read them.
#[derive(Debug)]
pub(crate) struct OpBuilder {
    /// The uniform slots, `SLOT` bytes each.
    pub blob: Vec<u8>,
    schedule: GemmSchedule,
}

impl OpBuilder {
    pub fn new(schedule: GemmSchedule) -> Self {
        Self {
            blob: Vec::new(),
            schedule,
        }
    }

    /// Appends a uniform slot holding `bytes`; returns its byte offset.
    pub fn push(&mut self, bytes: &[u8]) -> u32 {
        let off = self.blob.len();
        self.blob.extend_from_slice(bytes);
        self.blob.resize(off + SLOT as usize, 0);
        off as u32
    }

    /// The matrix product `g` under the schedule.
    pub fn gemm(&mut self, g: Gemm) -> Op {
        let slot = self.push(bytemuck::bytes_of(&g));
        match self.schedule {
            GemmSchedule::Tiled => Op {
                entry: Entry::Gemm,
                slot,
                groups: (
                    div_up(g.n as u64, GEMM_TILE as u64) as u32,
                    div_up(g.m as u64, GEMM_TILE as u64) as u32,
                    if g.k_split > 0 { g.k.div_ceil(g.k_split) } else { 1 },
                ),
            },
            GemmSchedule::Rows => Op {
                entry: Entry::GemmRows,
                slot,
                groups: (
                    div_up(g.m as u64, Entry::GemmRows.workgroup_size()[0] as u64) as u32,
                    div_up(g.n as u64, ROWS_COLS as u64) as u32,
                    1,
                ),
            },
        }
    }

    /// A reduction over a long `k` (the batch): on the tiled schedule split into partial sums at
    /// `partial` and added up by a second pass, so the whole device works on it.
    pub fn gemm_long_k(&mut self, g: Gemm, partial: usize) -> Vec<Op> {
        let splits = splits_for(g.k as usize);
        if self.schedule == GemmSchedule::Rows || splits == 1 {
            return vec![self.gemm(g)];
        }
        let count = g.m * g.n;
        let k_split = g.k.div_ceil(splits as u32);
        let part = self.gemm(Gemm {
            k_split,
            c_split: count,
            c_off: partial as u32,
            c_rs: g.n,
            c_cs: 1,
            ..g
        });
        let reduce = Gemm {
            m: count,
            k: g.k.div_ceil(k_split),
            flags: g.flags & gf::ACCUM,
            a_off: partial as u32,
            a_cs: count,
            c_off: g.c_off,
            ..Default::default()
        };
        let slot = self.push(bytemuck::bytes_of(&reduce));
        vec![part, Op::cover(Entry::ReducePartials, slot, count as usize)]
    }
}

fn div_up(a: u64, b: u64) -> u64 {
    a.div_ceil(b).max(1)
}

/// A 2-D grid of `wg`-wide workgroups covering `n` invocations (rows of at most 65535).
fn groups(n: u64, wg: u64) -> (u32, u32, u32) {
    let total = div_up(n, wg);
    if total <= 65535 {
        (total as u32, 1, 1)
    } else {
        (65535, total.div_ceil(65535) as u32, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cover_every_invocation() {
        assert_eq!(groups(1, 64), (1, 1, 1));
        assert_eq!(groups(65, 64), (2, 1, 1));
        assert_eq!(groups(65535 * 64 + 1, 64), (65535, 2, 1));
        let op = Op::cover(Entry::FwdInit, 0, 129);
        assert_eq!(op.groups, (3, 1, 1));
    }

    #[test]
    fn both_schedules_cover_the_product() {
        let g = times_wt(100, 70, 5, 0, 0, 0);
        let tiled = OpBuilder::new(GemmSchedule::Tiled).gemm(g);
        assert_eq!((tiled.entry, tiled.groups), (Entry::Gemm, (2, 2, 1)));
        let rows = OpBuilder::new(GemmSchedule::Rows).gemm(g);
        assert_eq!((rows.entry, rows.groups), (Entry::GemmRows, (2, 18, 1)));
    }

    #[test]
    fn long_reductions_split_only_on_the_tiled_schedule() {
        let g = times_w(8, 3, 5000, 0, 0, 0);
        let mut tiled = OpBuilder::new(GemmSchedule::Tiled);
        let ops = tiled.gemm_long_k(g, 1000);
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].groups.2, 5, "one workgroup layer per partial sum");
        assert_eq!(ops[1].entry, Entry::ReducePartials);
        assert_eq!(tiled.blob.len(), 2 * SLOT as usize);
        assert_eq!(OpBuilder::new(GemmSchedule::Rows).gemm_long_k(g, 1000).len(), 1);
    }
}
