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
// Two schedules of the same product: `gemm` stages 16×16 tiles in workgroup memory (for GPUs);
// `gemm_rows` gives each invocation one row and four columns with no workgroup memory and no
// barriers (for CPU adapters such as lavapipe, where barriers are expensive). The host picks one
// per adapter; both are tested against the CPU.

const TILE: u32 = 16u;

// Epilogue and operand flags (`Gemm.flags`).
const F_BIAS: u32 = 1u;        // add arena[bias_off + n]
const F_TANH: u32 = 2u;        // apply tanh
const F_DTANH: u32 = 4u;       // multiply by 1 − aux(r, n)²
const F_ACCUM: u32 = 8u;       // C += result instead of C = result
const F_KSCALE: u32 = 16u;     // scale A(r, k) by arena[scale_off + k]
const F_BONES: u32 = 32u;      // B(k, n) = 1 (column sums)

// One matrix product; 80 bytes, asserted on the Rust side (`ode_gpu::shaders::Gemm`).
struct Gemm {
    m: u32, n: u32, k: u32, flags: u32,
    a_off: u32, a_rs: u32, a_cs: u32, b_off: u32,
    b_rs: u32, b_cs: u32, c_off: u32, c_rs: u32,
    c_cs: u32, bias_off: u32, aux_off: u32, aux_rs: u32,
    scale_off: u32, alpha: f32, _pad0: u32, _pad1: u32,
}

// Every float the solver touches: parameters, states, stages, activations, outputs.
@group(0) @binding(0) var<storage, read_write> arena: array<f32>;
// This dispatch's product (a 256-byte slot of a buffer of them, by dynamic offset).
@group(0) @binding(1) var<uniform> g: Gemm;

var<workgroup> tile_a: array<array<f32, 16>, 16>;
var<workgroup> tile_b: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let ntiles = (g.k + TILE - 1u) / TILE;
    var acc = 0.0;
    for (var t = 0u; t < ntiles; t = t + 1u) {
        let ka = t * TILE + lid.x;
        var av = 0.0;
        if (row < g.m && ka < g.k) {
            av = arena[g.a_off + row * g.a_rs + ka * g.a_cs];
            if ((g.flags & F_KSCALE) != 0u) {
                let s = arena[g.scale_off + ka];
                // A zero weight drops the row even where it holds a NaN (a finished sample).
                av = select(av * s, 0.0, s == 0.0);
            }
        }
        tile_a[lid.y][lid.x] = av;
        let kb = t * TILE + lid.y;
        var bv = 0.0;
        if (kb < g.k && col < g.n) {
            if ((g.flags & F_BONES) != 0u) {
                bv = 1.0;
            } else {
                bv = arena[g.b_off + kb * g.b_rs + col * g.b_cs];
            }
        }
        tile_b[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = fma(tile_a[lid.y][i], tile_b[i][lid.x], acc);
        }
        workgroupBarrier();
    }
    if (row >= g.m || col >= g.n) {
        return;
    }
    store(row, col, acc);
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

const COLS: u32 = 4u;

// One row and four columns per invocation: x indexes rows (64 per workgroup), y column blocks.
@compute @workgroup_size(64, 1, 1)
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
    let kscale = (g.flags & F_KSCALE) != 0u;
    var acc = vec4<f32>(0.0);
    let a_base = g.a_off + row * g.a_rs;
    for (var k = 0u; k < g.k; k = k + 1u) {
        var a = arena[a_base + k * g.a_cs];
        if (kscale) {
            let s = arena[g.scale_off + k];
            a = select(a * s, 0.0, s == 0.0);
        }
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
