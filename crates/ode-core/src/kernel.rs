//! The small dense matrix product behind the MLP field: `C (+)= A · B` with `A` (`m × k`),
//! `B` (`k × n`) and `C` (`m × n`) row-major and contiguous.
//!
//! The shapes of Neural ODE training (a batch of 8 to a few thousand rows, inner sizes 16 to
//! 256) are too small for a general GEMM's packing to pay off, so this kernel works on the
//! operands in place: a 4 × 16 register tile of `C` accumulates rank-1 updates from a row of `B`
//! and four broadcast entries of `A`. It allocates nothing. On x86-64 with AVX2 and FMA (checked
//! at run time) the same code is compiled with those features, so the tile lives in eight
//! 256-bit registers.

use crate::Scalar;

const MR: usize = 4;
const NR: usize = 16;

/// `C = A·B` (`accumulate = false`) or `C += A·B` (`accumulate = true`).
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn gemm<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T], accumulate: bool) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm: operand shorter than its shape"
    );
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled with.
            #[allow(unsafe_code)]
            unsafe {
                gemm_avx2(m, k, n, a, b, c, accumulate)
            };
            return;
        }
    }
    gemm_body(m, k, n, a, b, c, accumulate);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gemm_avx2<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T], accumulate: bool) {
    gemm_body(m, k, n, a, b, c, accumulate);
}

#[inline(always)]
fn gemm_body<T: Scalar>(m: usize, k: usize, n: usize, a: &[T], b: &[T], c: &mut [T], accumulate: bool) {
    let n_full = n - n % NR;
    let m_full = m - m % MR;
    // Full 4 × 16 tiles.
    for i0 in (0..m_full).step_by(MR) {
        for j0 in (0..n_full).step_by(NR) {
            let mut acc = [[T::zero(); NR]; MR];
            if accumulate {
                for (i, row) in acc.iter_mut().enumerate() {
                    row.copy_from_slice(&c[(i0 + i) * n + j0..(i0 + i) * n + j0 + NR]);
                }
            }
            for p in 0..k {
                let brow: &[T; NR] = b[p * n + j0..p * n + j0 + NR].try_into().expect("tile");
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = a[(i0 + i) * k + p];
                    for j in 0..NR {
                        row[j] = av.mul_add(brow[j], row[j]);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                c[(i0 + i) * n + j0..(i0 + i) * n + j0 + NR].copy_from_slice(row);
            }
        }
    }
    // Row tail (fewer than 4 rows) over the full column tiles, one row at a time.
    for i in m_full..m {
        for j0 in (0..n_full).step_by(NR) {
            let mut acc = [T::zero(); NR];
            if accumulate {
                acc.copy_from_slice(&c[i * n + j0..i * n + j0 + NR]);
            }
            for p in 0..k {
                let av = a[i * k + p];
                let brow: &[T; NR] = b[p * n + j0..p * n + j0 + NR].try_into().expect("tile");
                for j in 0..NR {
                    acc[j] = av.mul_add(brow[j], acc[j]);
                }
            }
            c[i * n + j0..i * n + j0 + NR].copy_from_slice(&acc);
        }
    }
    // Column tail (fewer than 16 columns), every row.
    if n_full < n {
        let w = n - n_full;
        for i in 0..m {
            let mut acc = [T::zero(); NR];
            if accumulate {
                acc[..w].copy_from_slice(&c[i * n + n_full..i * n + n]);
            }
            for p in 0..k {
                let av = a[i * k + p];
                let brow = &b[p * n + n_full..p * n + n];
                for j in 0..w {
                    acc[j] = av.mul_add(brow[j], acc[j]);
                }
            }
            c[i * n + n_full..i * n + n].copy_from_slice(&acc[..w]);
        }
    }
}

/// Writes the transpose of `a` (`rows × cols`, row-major) into `at` (`cols × rows`).
pub fn transpose<T: Scalar>(rows: usize, cols: usize, a: &[T], at: &mut [T]) {
    for r in 0..rows {
        for c in 0..cols {
            at[c * rows + r] = a[r * cols + c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &mut [f64], acc: bool) {
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                c[i * n + j] = if acc { c[i * n + j] + s } else { s };
            }
        }
    }

    #[test]
    fn matches_the_naive_product_on_every_tail() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for (m, k, n) in [
            (1, 1, 1),
            (4, 16, 16),
            (7, 5, 33),
            (16, 32, 64),
            (3, 64, 17),
            (9, 1, 48),
            (0, 3, 4),
            (5, 0, 20),
        ] {
            let a: Vec<f64> = (0..m * k).map(|_| rnd()).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rnd()).collect();
            let c0: Vec<f64> = (0..m * n).map(|_| rnd()).collect();
            for acc in [false, true] {
                let (mut want, mut got) = (c0.clone(), c0.clone());
                naive(m, k, n, &a, &b, &mut want, acc);
                gemm(m, k, n, &a, &b, &mut got, acc);
                for (x, y) in got.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-12, "({m},{k},{n}) acc {acc}: {x} vs {y}");
                }
                let af: Vec<f32> = a.iter().map(|&v| v as f32).collect();
                let bf: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                let mut gf: Vec<f32> = c0.iter().map(|&v| v as f32).collect();
                gemm(m, k, n, &af, &bf, &mut gf, acc);
                for (x, y) in gf.iter().zip(&want) {
                    assert!((*x as f64 - y).abs() < 1e-5, "f32 ({m},{k},{n}) acc {acc}: {x} vs {y}");
                }
            }
        }
    }
}
