//! The WGSL sources (kept in the workspace's top-level `shaders/` folder, reached through the
//! crate's `shaders` link so the crate packages on its own) and everything the host shares with
//! them: the uniform structs they read, flags, control fields, status codes, workgroup sizes and
//! the compute entry points.

use bytemuck::{Pod, Zeroable};

/// `shaders/mlp.wgsl`: the tiled matrix kernel with the epilogues of the MLP field's layers,
/// its state VJP and its parameter VJPs.
pub const MLP_WGSL: &str = include_str!("../shaders/mlp.wgsl");
/// `shaders/rk.wgsl`: Runge-Kutta stages, the fused per-sample step control with dense output,
/// and the adjoint's augmented backward dynamics.
pub const RK_WGSL: &str = include_str!("../shaders/rk.wgsl");

/// Byte stride between uniform slots (a multiple of every adapter's uniform offset alignment).
pub const SLOT: u64 = 256;

/// Workgroup width of the one-invocation-per-item passes: every pass of `rk.wgsl` but
/// `count_active` (one invocation per sample or per element), and `gemm_rows` (one per row) and
/// `reduce_partials` (one per output) of `mlp.wgsl` (`const WG` in both files).
pub const WG: u32 = 64;
/// Workgroup edge of the tiled matrix kernel `gemm` (`GEMM_WG × GEMM_WG` invocations,
/// `const GEMM_WG` of `mlp.wgsl`).
pub const GEMM_WG: u32 = 16;
/// Workgroup width of `count_active`, the one-workgroup count of running samples
/// (`const COUNT_WG` of `rk.wgsl`).
pub const COUNT_WG: u32 = 256;
/// Output tile edge of `gemm`: each invocation computes a 4×4 block (`BM` and `BN` of
/// `mlp.wgsl`).
pub const GEMM_TILE: u32 = 4 * GEMM_WG;
/// Output columns per invocation of `gemm_rows` (`COLS` of `mlp.wgsl`).
pub const ROWS_COLS: u32 = 4;
/// Largest dense-output polynomial degree the shaders evaluate (`DENSE_MAX` of `rk.wgsl`).
pub const DENSE_MAX: usize = 5;

/// Epilogue and operand flags of [`Gemm`] (must match `mlp.wgsl`).
pub mod gemm_flags {
    /// Add a bias row.
    pub const BIAS: u32 = 1;
    /// Apply tanh.
    pub const TANH: u32 = 2;
    /// Multiply by `1 − aux²` (backward through tanh).
    pub const DTANH: u32 = 4;
    /// Accumulate into the output.
    pub const ACCUM: u32 = 8;
    /// Scale the reduction index by a weight vector.
    pub const KSCALE: u32 = 16;
    /// Right operand of ones (column sums).
    pub const BONES: u32 = 32;
    /// Left operand formed on load as a Runge-Kutta stage input (fused stage combination).
    pub const STAGE: u32 = 64;
}

/// Flags of [`Ctl`] (must match `rk.wgsl`).
pub mod ctl_flags {
    /// Error control on.
    pub const ADAPTIVE: u32 = 1;
    /// The last stage is the next step's first.
    pub const FSAL: u32 = 2;
    /// Polynomial dense output.
    pub const DENSE: u32 = 4;
    /// A constant step size is set.
    pub const STEP_SIZE: u32 = 8;
    /// A largest step is set.
    pub const MAX_STEP: u32 = 16;
    /// A first step is set.
    pub const FIRST_STEP: u32 = 32;
}

/// One matrix product of `mlp.wgsl` (`struct Gemm`): `C(r, n) = epilogue(alpha · Σ_k s(k)·A(r, k)·B(k, n))`,
/// operands addressed by float offsets and strides into the arena.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct Gemm {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub a_off: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_off: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub c_off: u32,
    pub c_rs: u32,
    pub c_cs: u32,
    pub bias_off: u32,
    pub aux_off: u32,
    pub aux_rs: u32,
    pub scale_off: u32,
    pub alpha: f32,
    pub k_split: u32,
    pub c_split: u32,
    pub st_k: u32,
    pub st_stride: u32,
    pub st_hs: u32,
    pub st_tab: u32,
    pub st_n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}
const _: () = assert!(std::mem::size_of::<Gemm>() == 112);

/// Layout and options of the per-sample passes of `rk.wgsl` (`struct Ctl`); offsets in floats.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct Ctl {
    pub rows: u32,
    pub dim: u32,
    pub stages: u32,
    pub n_out: u32,
    pub y: u32,
    pub ynew: u32,
    pub ystage: u32,
    pub k: u32,
    pub out: u32,
    pub ts: u32,
    pub ctl: u32,
    pub tab: u32,
    pub stage: u32,
    pub flags: u32,
    pub max_steps: u32,
    pub count: u32,
    pub rtol: f32,
    pub atol: f32,
    pub step_size: f32,
    pub max_step: f32,
    pub min_step: f32,
    pub safety: f32,
    pub min_factor: f32,
    pub max_factor: f32,
    pub b1: f32,
    pub b2: f32,
    pub b3: f32,
    pub err_order: f32,
    pub order: f32,
    pub first_step: f32,
    pub dense_deg: u32,
    pub kend: u32,
    pub a: u32,
    pub anew: u32,
    pub ain: u32,
    pub ka: u32,
    pub gout: u32,
    pub wts: u32,
    pub dir: f32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<Ctl>() == 160);

/// Per-sample control fields of `rk.wgsl` (field `f` of sample `b` at `ctl + f·rows + b`).
pub mod field {
    /// Current time.
    pub const T: usize = 0;
    /// Step size of the current attempt (of the refused step after an underflow).
    pub const HS: usize = 2;
    /// Status code.
    pub const ST: usize = 3;
    /// Accepted steps.
    pub const ACC: usize = 5;
    /// Rejected steps.
    pub const REJ: usize = 6;
    /// Field evaluations.
    pub const NFE: usize = 11;
    /// Number of fields.
    pub const FIELDS: usize = 14;
}

/// Per-sample status codes written by `rk.wgsl`.
pub mod status {
    /// Still integrating.
    pub const RUNNING: f32 = 0.0;
    /// Reached the last output time.
    #[allow(
        dead_code,
        reason = "the host takes every status but the failures as done; kept to mirror rk.wgsl"
    )]
    pub const DONE: f32 = 1.0;
    /// The step size fell below the minimum.
    pub const UNDERFLOW: f32 = 2.0;
    /// The step budget ran out.
    pub const MAX_STEPS: f32 = 3.0;
    /// A state or derivative became NaN or infinite.
    pub const NON_FINITE: f32 = 4.0;
}

/// Compute entry points, in the order the context creates their pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Entry {
    Gemm,
    GemmRows,
    ReducePartials,
    FwdInit,
    FwdInitA,
    FwdInitB,
    FwdChoose,
    StageInput,
    FwdSolution,
    FwdFinish,
    FwdSolutionFinish,
    CountActive,
    AdjInit,
    AdjInitA,
    AdjInitB,
    AdjChoose,
    AdjStageInput,
    AdjFinish,
}

impl Entry {
    /// Every entry point.
    pub const ALL: [Entry; 18] = [
        Entry::Gemm,
        Entry::GemmRows,
        Entry::ReducePartials,
        Entry::FwdInit,
        Entry::FwdInitA,
        Entry::FwdInitB,
        Entry::FwdChoose,
        Entry::StageInput,
        Entry::FwdSolution,
        Entry::FwdFinish,
        Entry::FwdSolutionFinish,
        Entry::CountActive,
        Entry::AdjInit,
        Entry::AdjInitA,
        Entry::AdjInitB,
        Entry::AdjChoose,
        Entry::AdjStageInput,
        Entry::AdjFinish,
    ];

    /// The `@workgroup_size` of the entry point, which dispatches size their grids by.
    pub fn workgroup_size(self) -> [u32; 3] {
        match self {
            Entry::Gemm => [GEMM_WG, GEMM_WG, 1],
            Entry::CountActive => [COUNT_WG, 1, 1],
            _ => [WG, 1, 1],
        }
    }

    /// The WGSL function name and whether it lives in `mlp.wgsl` (else `rk.wgsl`).
    pub fn name(self) -> (&'static str, bool) {
        match self {
            Entry::Gemm => ("gemm", true),
            Entry::GemmRows => ("gemm_rows", true),
            Entry::ReducePartials => ("reduce_partials", true),
            Entry::FwdInit => ("fwd_init", false),
            Entry::FwdInitA => ("fwd_init_a", false),
            Entry::FwdInitB => ("fwd_init_b", false),
            Entry::FwdChoose => ("fwd_choose", false),
            Entry::StageInput => ("stage_input", false),
            Entry::FwdSolution => ("fwd_solution", false),
            Entry::FwdFinish => ("fwd_finish", false),
            Entry::FwdSolutionFinish => ("fwd_solution_finish", false),
            Entry::CountActive => ("count_active", false),
            Entry::AdjInit => ("adj_init", false),
            Entry::AdjInitA => ("adj_init_a", false),
            Entry::AdjInitB => ("adj_init_b", false),
            Entry::AdjChoose => ("adj_choose", false),
            Entry::AdjStageInput => ("adj_stage_input", false),
            Entry::AdjFinish => ("adj_finish", false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `const NAME: u32 = V;` in `src`.
    fn wgsl_u32(src: &str, name: &str) -> u32 {
        let prefix = format!("const {name}: u32 = ");
        let rest = src
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no `const {name}: u32` in the shader"));
        let value = rest.split(';').next().unwrap().trim().trim_end_matches('u');
        value.parse().unwrap_or_else(|e| panic!("const {name} = {value}: {e}"))
    }

    #[test]
    fn shared_constants_agree_with_the_shaders() {
        for (file, src, name, host) in [
            ("mlp.wgsl", MLP_WGSL, "WG", WG),
            ("rk.wgsl", RK_WGSL, "WG", WG),
            ("mlp.wgsl", MLP_WGSL, "GEMM_WG", GEMM_WG),
            ("rk.wgsl", RK_WGSL, "COUNT_WG", COUNT_WG),
            ("mlp.wgsl", MLP_WGSL, "BM", GEMM_TILE),
            ("mlp.wgsl", MLP_WGSL, "BN", GEMM_TILE),
            ("mlp.wgsl", MLP_WGSL, "COLS", ROWS_COLS),
            ("rk.wgsl", RK_WGSL, "DENSE_MAX", DENSE_MAX as u32),
        ] {
            assert_eq!(wgsl_u32(src, name), host, "{file}: const {name}");
        }
    }

    #[test]
    fn every_entry_point_names_its_workgroup_size_constant() {
        for e in Entry::ALL {
            let (name, in_mlp) = e.name();
            let src = if in_mlp { MLP_WGSL } else { RK_WGSL };
            let at = src
                .find(&format!("\nfn {name}("))
                .unwrap_or_else(|| panic!("no entry point {name}"));
            let attr = src[..at].lines().last().unwrap_or_default();
            let args = attr
                .strip_prefix("@compute @workgroup_size(")
                .and_then(|a| a.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name}: expected `@compute @workgroup_size(…)`, found `{attr}`"));
            let mut size = [1u32; 3];
            for (d, arg) in args.split(',').map(str::trim).enumerate() {
                // Sizes are named constants; only unused dimensions may be a literal 1.
                size[d] = if arg == "1" { 1 } else { wgsl_u32(src, arg) };
            }
            assert_eq!(size, e.workgroup_size(), "{name}: @workgroup_size({args})");
        }
    }
}
