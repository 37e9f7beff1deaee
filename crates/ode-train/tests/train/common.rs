//! What the test modules share.

use ode_train::ModelConfig;

/// SplitMix64's next value as a uniform draw in [0, 1): deterministic test inputs.
pub fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// A small model for gradient checks (f64): three features, two targets, latent 4, hidden 6,
/// context 5, horizon 4, `dt` 0.3, the given solver, tolerance and gradient method.
pub fn config(solver: &str, use_adjoint: bool, tol: f64) -> ModelConfig {
    ModelConfig {
        input_dim: 3,
        output_dim: 2,
        latent_dim: 4,
        hidden_dim: 6,
        context_len: 5,
        horizon: 4,
        dt: 0.3,
        solver: solver.parse().unwrap(),
        rtol: tol,
        atol: tol,
        use_adjoint,
        ..ModelConfig::default()
    }
}
