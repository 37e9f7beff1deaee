//! Scans every `f32` in [0, 12] and prints `ode_core::tanh_f32`'s max absolute and relative
//! error against f64 `tanh`, and its value past the clamp: the figures its doc comment and
//! tests state. `cargo run --release -p ode-benches --bin tanh-error` (about a minute); the
//! coefficients come from `benches/tanh/fit.py`.

use ode_core::tanh_f32;

/// The worst error seen and where.
#[derive(Default)]
struct Worst {
    err: f64,
    at: f32,
}

impl Worst {
    fn see(&mut self, err: f64, at: f32) {
        if err > self.err {
            *self = Self { err, at };
        }
    }
}

fn main() {
    let (mut abs, mut rel) = (Worst::default(), Worst::default());
    let mut odd = true;
    for bits in 0..=12.0f32.to_bits() {
        let x = f32::from_bits(bits);
        let y = tanh_f32(x);
        let (exact, got) = ((x as f64).tanh(), y as f64);
        abs.see((got - exact).abs(), x);
        if x >= 1e-30 {
            rel.see((got / exact - 1.0).abs(), x);
        }
        odd &= tanh_f32(-x).to_bits() == (-y).to_bits();
    }
    println!("every f32 in [0, 12]: max abs error {:.4e} at x = {}", abs.err, abs.at);
    println!(
        "every f32 in [1e-30, 12]: max relative error {:.4e} at x = {}",
        rel.err, rel.at
    );
    println!("odd (tanh(-x) = -tanh(x) bit for bit): {odd}");
    println!("past the clamp: 1 - tanh(1e30) = {:.4e}", 1.0 - tanh_f32(1e30) as f64);
}
