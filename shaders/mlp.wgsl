// Layers of the batched MLP vector field and of its vector-Jacobian products, as one tiled
// matrix kernel with an epilogue:
//
//   C(r, n) = epilogue( alpha · Σ_k s(k) · A(r, k) · B(k, n) )
//
// with every operand addressed by offset and strides into the one `arena` buffer, so the same
// kernel computes
//   - a forward layer          h = tanh(x · Wᵀ + b)          (B = Wᵀ by strides, bias, tanh),
//   - the last forward layer   f = h · Wᵀ + b                 (bias only),
//   - a state VJP through tanh g = (v · W) ⊙ (1 − h²)         (B = W, `aux` = h),
//   - a parameter VJP          dW += Σ_rows s · gᵀ x          (A = gᵀ by strides, k-scale s,
//                              db += Σ_rows s · g              B = ones, accumulate).
// The k-scale carries the adjoint's per-sample, per-stage quadrature weights.
//
// Two schedules of the same product: `gemm` stages 64×64 tiles in workgroup memory and gives
// each invocation a 4×4 block of C in registers (for GPUs);
// `gemm_rows` gives each invocation one row and four columns with no workgroup memory and no
// barriers (for CPU adapters such as lavapipe, where barriers are expensive). The host picks one
// per adapter; both are tested against the CPU.

// Workgroup sizes, one per role, equal to the host's constants of the same names in
// `crates/ode-gpu/src/shaders.rs` (it sizes its grids by them; a test checks they agree): the tiled
// kernel runs GEMM_WG × GEMM_WG invocations, the one-invocation-per-row (or per-output) passes WG.
const GEMM_WG: u32 = 16u;
const WG: u32 = 64u;

// Epilogue and operand flags (`Gemm.flags`).
const F_BIAS: u32 = 1u;        // add arena[bias_off + n]
const F_TANH: u32 = 2u;        // apply tanh
const F_DTANH: u32 = 4u;       // multiply by 1 − aux(r, n)²
const F_ACCUM: u32 = 8u;       // C += result instead of C = result
const F_KSCALE: u32 = 16u;     // scale A(r, k) by arena[scale_off + k]
const F_BONES: u32 = 32u;      // B(k, n) = 1 (column sums)
const F_STAGE: u32 = 64u;      // A is a Runge-Kutta stage input, formed on load (see `a_at`)

// One matrix product; 112 bytes, asserted on the Rust side (`ode_gpu::shaders::Gemm`).
// With `k_split > 0` (tiled schedule, long reductions), workgroup z sums only k in
// [z·k_split, (z+1)·k_split) into its own partial C at c_off + z·c_split; `reduce_partials`
// then adds the partials up. That spreads a reduction over the whole batch across the device.
struct Gemm {
    m: u32, n: u32, k: u32, flags: u32,
    a_off: u32, a_rs: u32, a_cs: u32, b_off: u32,
    b_rs: u32, b_cs: u32, c_off: u32, c_rs: u32,
    c_cs: u32, bias_off: u32, aux_off: u32, aux_rs: u32,
    scale_off: u32, alpha: f32, k_split: u32, c_split: u32,
    // F_STAGE: A(r, k) = y(r, k) + h_r · Σ_{j<st_n} a_j · k_j(r, k), with y at a_off (row stride
    // a_rs), the stages k_j at st_k + j·st_stride, h_r at st_hs + r and a_j at st_tab + j. This
    // fuses the stage combination of an RK step into the first layer of the field.
    st_k: u32, st_stride: u32, st_hs: u32, st_tab: u32,
    st_n: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

// Every float the solver touches: parameters, states, stages, activations, outputs.
@group(0) @binding(0) var<storage, read_write> arena: array<f32>;
// This dispatch's product (a 256-byte slot of a buffer of them, by dynamic offset).
@group(0) @binding(1) var<uniform> g: Gemm;

// A(r, k), with the stage combination when F_STAGE and the k-scale when F_KSCALE.
fn a_at(r: u32, k: u32) -> f32 {
    var av = arena[g.a_off + r * g.a_rs + k * g.a_cs];
    if ((g.flags & F_STAGE) != 0u) {
        var sum = 0.0;
        for (var j = 0u; j < g.st_n; j = j + 1u) {
            let aj = arena[g.st_tab + j];
            if (aj != 0.0) {
                sum = sum + aj * arena[g.st_k + j * g.st_stride + r * g.a_rs + k * g.a_cs];
            }
        }
        av = av + arena[g.st_hs + r] * sum;
    }
    if ((g.flags & F_KSCALE) != 0u) {
        let s = arena[g.scale_off + k];
        // A zero weight drops the row even where it holds a NaN (a finished sample).
        av = select(av * s, 0.0, s == 0.0);
    }
    return av;
}

// Output tile of one workgroup of `gemm` (each invocation computes a 4×4 block of it; the host's
// `GEMM_TILE`) and the reduction depth staged per round.
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [BK][BM]
var<workgroup> tile_b: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(GEMM_WG, GEMM_WG, 1)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.y * GEMM_WG + lid.x;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    var k_begin = 0u;
    var k_end = g.k;
    var c_base = g.c_off;
    if (g.k_split > 0u) {
        k_begin = wid.z * g.k_split;
        k_end = min(g.k, k_begin + g.k_split);
        c_base = g.c_off + wid.z * g.c_split;
    }
    let ones = (g.flags & F_BONES) != 0u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // k_begin and k_end depend on the workgroup only: the loop and its barriers are uniform.
    for (var t = k_begin; t < k_end; t = t + BK) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = tid + i * (GEMM_WG * GEMM_WG);
            // A tile: consecutive invocations take consecutive k of one row.
            let am = e / BK;
            let ak = e % BK;
            let r = row0 + am;
            let k = t + ak;
            var av = 0.0;
            if (r < g.m && k < k_end) {
                av = a_at(r, k);
            }
            tile_a[ak * BM + am] = av;
            // B tile: consecutive invocations take consecutive columns of one k.
            let bk = e / BN;
            let bn = e % BN;
            let kb = t + bk;
            let c = col0 + bn;
            var bv = 0.0;
            if (kb < k_end && c < g.n) {
                bv = select(arena[g.b_off + kb * g.b_rs + c * g.b_cs], 1.0, ones);
            }
            tile_b[bk * BN + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let ai = kk * BM + lid.y * 4u;
            let bi = kk * BN + lid.x * 4u;
            let a = vec4<f32>(tile_a[ai], tile_a[ai + 1u], tile_a[ai + 2u], tile_a[ai + 3u]);
            let b = vec4<f32>(tile_b[bi], tile_b[bi + 1u], tile_b[bi + 2u], tile_b[bi + 3u]);
            acc0 = fma(vec4<f32>(a.x), b, acc0);
            acc1 = fma(vec4<f32>(a.y), b, acc1);
            acc2 = fma(vec4<f32>(a.z), b, acc2);
            acc3 = fma(vec4<f32>(a.w), b, acc3);
        }
        workgroupBarrier();
    }
    let accs = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let c = col0 + lid.x * 4u + j;
            if (r < g.m && c < g.n) {
                if (g.k_split > 0u) {
                    // A partial sum: raw, epilogue-free (reduce_partials applies ACCUM).
                    arena[c_base + r * g.c_rs + c * g.c_cs] = accs[i][j];
                } else {
                    store(r, c, accs[i][j]);
                }
            }
        }
    }
}

// Adds `k` partial sums (stride a_cs) of `m` values at a_off into C at c_off (accumulating
// when F_ACCUM), finishing a split reduction.
@compute @workgroup_size(WG, 1, 1)
fn reduce_partials(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= g.m) {
        return;
    }
    var v = 0.0;
    for (var z = 0u; z < g.k; z = z + 1u) {
        v = v + arena[g.a_off + z * g.a_cs + i];
    }
    if ((g.flags & F_ACCUM) != 0u) {
        v = v + arena[g.c_off + i];
    }
    arena[g.c_off + i] = v;
}

// The epilogue of C(row, col) from the raw sum `acc`.
fn store(row: u32, col: u32, acc: f32) {
    var v = g.alpha * acc;
    if ((g.flags & F_BIAS) != 0u) {
        v = v + arena[g.bias_off + col];
    }
    if ((g.flags & F_TANH) != 0u) {
        // Clamped: some drivers compute tanh through exp and return NaN for large inputs;
        // tanh(±15) is ±1 in f32.
        v = tanh(clamp(v, -15.0, 15.0));
    }
    if ((g.flags & F_DTANH) != 0u) {
        let h = arena[g.aux_off + row * g.aux_rs + col];
        v = v * (1.0 - h * h);
    }
    let ci = g.c_off + row * g.c_rs + col * g.c_cs;
    if ((g.flags & F_ACCUM) != 0u) {
        v = v + arena[ci];
    }
    arena[ci] = v;
}

// Output columns per invocation of `gemm_rows` (the host's `ROWS_COLS`).
const COLS: u32 = 4u;

// One row and four columns per invocation: x indexes rows (WG per workgroup), y column blocks.
@compute @workgroup_size(WG, 1, 1)
fn gemm_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let c0 = gid.y * COLS;
    if (row >= g.m) {
        return;
    }
    // Out-of-range columns read the last valid one and are not stored.
    let last = g.n - 1u;
    let b_cols = vec4<u32>(min(c0, last), min(c0 + 1u, last), min(c0 + 2u, last), min(c0 + 3u, last)) * g.b_cs;
    let ones = (g.flags & F_BONES) != 0u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < g.k; k = k + 1u) {
        let a = a_at(row, k);
        if (ones) {
            acc = acc + vec4<f32>(a);
        } else {
            let bb = g.b_off + k * g.b_rs;
            let bv = vec4<f32>(arena[bb + b_cols.x], arena[bb + b_cols.y], arena[bb + b_cols.z], arena[bb + b_cols.w]);
            acc = fma(vec4<f32>(a), bv, acc);
        }
    }
    for (var j = 0u; j < COLS; j = j + 1u) {
        if (c0 + j < g.n) {
            store(row, c0 + j, acc[j]);
        }
    }
}
