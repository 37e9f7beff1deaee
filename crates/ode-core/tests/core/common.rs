//! What the test modules share: deterministic random inputs and the MLP case of the gradient
//! tests.

use ode_core::Mlp;

/// SplitMix64's next value as a uniform draw in [0, 1): deterministic test inputs.
pub fn splitmix(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// An MLP field (f64), a batch of initial states, output times and the weights of the loss
/// `Σ w ⊙ outputs`.
pub struct Case {
    pub mlp: Mlp<f64>,
    pub y0: Vec<f64>,
    pub ts: Vec<f64>,
    pub w: Vec<f64>,
}

/// A [`Case`] drawn from `seed`: weights uniform within ±1.5/√fan_in, states and loss weights
/// uniform in [-1, 1), output times `0, dt, …, n·dt`.
pub fn case(seed: u64, (latent, hidden, batch): (usize, usize, usize), n: usize, dt: f64) -> Case {
    let mut s = seed;
    let mlp = Mlp::new(latent, hidden, |fan_in| {
        (2.0 * splitmix(&mut s) - 1.0) * 1.5 / (fan_in as f64).sqrt()
    });
    let y0: Vec<f64> = (0..batch * latent).map(|_| 2.0 * splitmix(&mut s) - 1.0).collect();
    let ts: Vec<f64> = (0..=n).map(|k| k as f64 * dt).collect();
    let w: Vec<f64> = (0..ts.len() * batch * latent)
        .map(|_| 2.0 * splitmix(&mut s) - 1.0)
        .collect();
    Case { mlp, y0, ts, w }
}
