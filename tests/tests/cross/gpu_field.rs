//! The GPU MLP field and its VJPs against the CPU reference (f64), on batch sizes that are not
//! multiples of the workgroup sizes and on seeded random weights.
//!
//! Tolerance (f32 on the GPU against f64): every value within `1e-5 + 1e-4·|ref|`; parameter
//! gradients (sums over the batch) within `2e-4·max|ref|` of each tensor entry.

use ode_core::{Mlp, VectorField};
use ode_gpu::GpuSolver;
use ode_tests::{gpu_or_skip, seeded_mlp, seeded_values, to_f32, worst_ratio};

const BATCHES: [usize; 5] = [1, 7, 64, 1000, 5000];

#[test]
fn field_and_vjps_match_the_cpu_reference() {
    let Some(ctx) = gpu_or_skip("field_and_vjps_match_the_cpu_reference") else {
        return;
    };
    for (latent, hidden, seed) in [(8usize, 32usize, 1u64), (5, 17, 2)] {
        let mut cpu: Mlp<f64> = seeded_mlp(latent, hidden, seed, 1.5);
        let params32 = to_f32(cpu.params());
        let mut gpu = GpuSolver::new(
            ctx.clone(),
            ode_core::Method::Rk4,
            Default::default(),
            latent,
            hidden,
            params32,
        )
        .unwrap();
        for &batch in &BATCHES {
            let y = seeded_values(batch * latent, seed * 31 + batch as u64, 2.0);
            let v = seeded_values(batch * latent, seed * 37 + batch as u64, 1.0);
            let n = batch * latent;
            // Forward.
            let mut f_ref = vec![0.0; n];
            cpu.eval(&vec![0.0; batch], &y, &mut f_ref);
            let mut f_gpu = vec![0.0f32; n];
            gpu.eval(&to_f32(&y), &mut f_gpu).unwrap();
            let r = worst_ratio(&f_gpu, &f_ref, 1e-4, 1e-5);
            assert!(r <= 1.0, "field L{latent} M{hidden} batch {batch}: ratio {r}");
            // VJPs.
            let mut gy_ref = vec![0.0; n];
            let mut gp_ref = vec![0.0; cpu.num_params()];
            cpu.vjp(&y, &v, None, &mut gy_ref, Some(&mut gp_ref));
            let mut gy = vec![0.0f32; n];
            let mut fo = vec![0.0f32; n];
            let mut gp = vec![0.0f32; cpu.num_params()];
            gpu.vjp(&to_f32(&y), &to_f32(&v), Some(&mut fo), &mut gy, Some(&mut gp))
                .unwrap();
            let r = worst_ratio(&gy, &gy_ref, 1e-4, 1e-5);
            assert!(r <= 1.0, "state VJP L{latent} M{hidden} batch {batch}: ratio {r}");
            assert!(worst_ratio(&fo, &f_ref, 1e-4, 1e-5) <= 1.0, "VJP f_out batch {batch}");
            for (name, _, off) in cpu.tensors() {
                let len = Mlp::<f64>::shapes_of(latent, hidden)
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, s)| s.iter().product::<usize>())
                    .unwrap();
                let rf = &gp_ref[off..off + len];
                let scale = rf.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                let r = worst_ratio(&gp[off..off + len], rf, 0.0, 2e-4 * scale.max(1e-30));
                assert!(r <= 1.0, "{name} VJP L{latent} M{hidden} batch {batch}: ratio {r}");
            }
        }
    }
}
