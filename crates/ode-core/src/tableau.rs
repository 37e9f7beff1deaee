//! Butcher tableaus: every explicit Runge-Kutta method is data run by one engine.

use crate::error::{OdeError, Result};

/// How a method produces output between step ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Interpolation {
    /// Cubic Hermite interpolation from the states and derivatives at both step ends
    /// (third-order accurate; costs one extra evaluation at the step end for non-FSAL methods,
    /// which the next step then reuses).
    Hermite,
    /// The method's own continuous extension `y(t0 + θh) = y0 + h Σ_i b_i(θ) k_i` with
    /// `b_i(θ) = Σ_p coeffs[i][p] θ^(p+1)`.
    Polynomial(Vec<Vec<f64>>),
}

/// An explicit Runge-Kutta method: Butcher tableau, orders and interpolation, checked on
/// construction (rows of `a` sum to `c`, weights sum to 1, error weights sum to 0).
#[derive(Debug, Clone, PartialEq)]
pub struct ButcherTableau {
    /// Short name (`"dopri5"`).
    pub name: &'static str,
    /// Stage times `c_i` (fractions of the step).
    pub c: Vec<f64>,
    /// Strictly lower-triangular coupling coefficients; row `i` has `i` entries.
    pub a: Vec<Vec<f64>>,
    /// Solution weights `b_i`.
    pub b: Vec<f64>,
    /// Error weights `b_i - b̂_i` of the embedded method, for adaptive stepping.
    pub b_err: Option<Vec<f64>>,
    /// Order of the solution.
    pub order: usize,
    /// Order of the embedded solution (the error estimate is of order `embedded_order + 1`).
    pub embedded_order: Option<usize>,
    /// Dense output.
    pub interpolation: Interpolation,
    fsal: bool,
}

const TOL: f64 = 1e-12;

impl ButcherTableau {
    /// Builds and validates a tableau. FSAL ("first same as last") is derived: the last stage
    /// is evaluated at `c = 1` on exactly the solution weights, so it equals the next step's first.
    pub fn new(
        name: &'static str,
        c: Vec<f64>,
        a: Vec<Vec<f64>>,
        b: Vec<f64>,
        b_err: Option<Vec<f64>>,
        order: usize,
        embedded_order: Option<usize>,
        interpolation: Interpolation,
    ) -> Result<Self> {
        let bad = |reason: String| OdeError::InvalidTableau {
            name: name.to_string(),
            reason,
        };
        let s = c.len();
        if s == 0 {
            return Err(bad("no stages".into()));
        }
        if c[0] != 0.0 {
            return Err(bad(format!("c[0] must be 0, got {}", c[0])));
        }
        if a.len() != s || b.len() != s {
            return Err(bad(format!(
                "{s} stages but a has {} rows and b {} entries",
                a.len(),
                b.len()
            )));
        }
        for (i, row) in a.iter().enumerate() {
            if row.len() != i {
                return Err(bad(format!(
                    "row {i} of a must have {i} entries (explicit method), got {}",
                    row.len()
                )));
            }
            let sum: f64 = row.iter().sum();
            if (sum - c[i]).abs() > TOL * (1.0 + c[i].abs()) {
                return Err(bad(format!("row {i} of a sums to {sum}, but c[{i}] = {}", c[i])));
            }
        }
        let sb: f64 = b.iter().sum();
        if (sb - 1.0).abs() > TOL {
            return Err(bad(format!("weights b sum to {sb}, not 1")));
        }
        if let Some(e) = &b_err {
            if e.len() != s {
                return Err(bad(format!("error weights have {} entries, not {s}", e.len())));
            }
            let se: f64 = e.iter().sum();
            if se.abs() > TOL {
                return Err(bad(format!("error weights sum to {se}, not 0")));
            }
            if embedded_order.is_none() {
                return Err(bad("error weights given without an embedded order".into()));
            }
        }
        if let Interpolation::Polynomial(p) = &interpolation {
            if p.len() != s {
                return Err(bad(format!("dense output has {} rows, not {s}", p.len())));
            }
            // b_i(1) must reproduce the solution weights.
            for (i, row) in p.iter().enumerate() {
                let at1: f64 = row.iter().sum();
                if (at1 - b[i]).abs() > 1e-10 {
                    return Err(bad(format!("dense output b_{i}(1) = {at1} != b_{i} = {}", b[i])));
                }
            }
        }
        let fsal = s > 1 && c[s - 1] == 1.0 && a[s - 1].iter().zip(&b).all(|(x, y)| x == y) && b[s - 1] == 0.0;
        Ok(Self {
            name,
            c,
            a,
            b,
            b_err,
            order,
            embedded_order,
            interpolation,
            fsal,
        })
    }

    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.c.len()
    }

    /// Whether the last stage of a step is the first of the next (saves one evaluation a step).
    pub fn is_fsal(&self) -> bool {
        self.fsal
    }

    /// Whether the method has an embedded error estimate and so can adapt its step.
    pub fn is_adaptive(&self) -> bool {
        self.b_err.is_some()
    }
}

/// The built-in methods. Names parse from strings as the tuning guide writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Forward Euler, order 1, fixed step (`"euler"`).
    Euler,
    /// Explicit midpoint, order 2, fixed step (`"midpoint"`).
    Midpoint,
    /// Heun's method, order 2 with embedded Euler: adaptive (`"heun2"`, torchdiffeq's `adaptive_heun`).
    Heun2,
    /// Kutta's 3/8-rule fourth-order method, fixed step. This is what torchdiffeq (and the
    /// tuning guide) call `"rk4"`; `"rk4_38"` is accepted too.
    Rk4,
    /// The classic fourth-order Runge-Kutta method, fixed step (`"rk4_classic"`).
    Rk4Classic,
    /// Bogacki-Shampine 3(2), FSAL, adaptive (`"bosh3"`).
    Bosh3,
    /// Dormand-Prince 5(4), FSAL, adaptive, with Shampine's fourth-order dense output as in
    /// torchdiffeq (`"dopri5"`).
    Dopri5,
    /// Tsitouras 5(4), FSAL, adaptive, with its free fourth-order interpolant (`"tsit5"`).
    Tsit5,
}

impl Method {
    /// The method's validated tableau.
    pub fn tableau(self) -> ButcherTableau {
        build(self).expect("built-in tableaus are valid (checked by tests)")
    }
}

// In order of increasing cost.
crate::choice_names!(Method, "solver" {
    Euler => "euler",
    Midpoint => "midpoint",
    Heun2 => "heun2" | "adaptive_heun",
    Rk4 => "rk4" | "rk4_38",
    Rk4Classic => "rk4_classic",
    Bosh3 => "bosh3",
    Dopri5 => "dopri5",
    Tsit5 => "tsit5",
}, error = |name, known| OdeError::UnknownSolver {
    name,
    known: known.to_string(),
});

// A coefficient table: one arm per method, its Butcher tableau written out (the three with an
// error estimate in their own functions below).
fn build(m: Method) -> Result<ButcherTableau> {
    use Interpolation::Hermite;
    match m {
        Method::Euler => ButcherTableau::new("euler", vec![0.0], vec![vec![]], vec![1.0], None, 1, None, Hermite),
        Method::Midpoint => ButcherTableau::new(
            "midpoint",
            vec![0.0, 0.5],
            vec![vec![], vec![0.5]],
            vec![0.0, 1.0],
            None,
            2,
            None,
            Hermite,
        ),
        Method::Heun2 => ButcherTableau::new(
            "heun2",
            vec![0.0, 1.0],
            vec![vec![], vec![1.0]],
            vec![0.5, 0.5],
            Some(vec![0.5 - 1.0, 0.5]),
            2,
            Some(1),
            Hermite,
        ),
        Method::Rk4Classic => ButcherTableau::new(
            "rk4_classic",
            vec![0.0, 0.5, 0.5, 1.0],
            vec![vec![], vec![0.5], vec![0.0, 0.5], vec![0.0, 0.0, 1.0]],
            vec![1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
            None,
            4,
            None,
            Hermite,
        ),
        Method::Rk4 => ButcherTableau::new(
            "rk4",
            vec![0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0],
            vec![vec![], vec![1.0 / 3.0], vec![-1.0 / 3.0, 1.0], vec![1.0, -1.0, 1.0]],
            vec![1.0 / 8.0, 3.0 / 8.0, 3.0 / 8.0, 1.0 / 8.0],
            None,
            4,
            None,
            Hermite,
        ),
        Method::Bosh3 => bosh3(),
        Method::Dopri5 => dopri5(),
        Method::Tsit5 => tsit5(),
    }
}

/// Bogacki & Shampine (1989), "A 3(2) pair of Runge-Kutta formulas".
fn bosh3() -> Result<ButcherTableau> {
    let b = vec![2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0];
    let bh = [7.0 / 24.0, 1.0 / 4.0, 1.0 / 3.0, 1.0 / 8.0];
    ButcherTableau::new(
        "bosh3",
        vec![0.0, 0.5, 0.75, 1.0],
        vec![vec![], vec![0.5], vec![0.0, 0.75], b[..3].to_vec()],
        b.clone(),
        Some(b.iter().zip(bh).map(|(x, y)| x - y).collect()),
        3,
        Some(2),
        Interpolation::Hermite,
    )
}

/// Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae", with its dense output.
fn dopri5() -> Result<ButcherTableau> {
    let b = vec![
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ];
    let bh = [
        5179.0 / 57600.0,
        0.0,
        7571.0 / 16695.0,
        393.0 / 640.0,
        -92097.0 / 339200.0,
        187.0 / 2100.0,
        1.0 / 40.0,
    ];
    let dense = dopri5_dense(&b);
    ButcherTableau::new(
        "dopri5",
        vec![0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0],
        vec![
            vec![],
            vec![1.0 / 5.0],
            vec![3.0 / 40.0, 9.0 / 40.0],
            vec![44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
            vec![19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
            vec![
                9017.0 / 3168.0,
                -355.0 / 33.0,
                46732.0 / 5247.0,
                49.0 / 176.0,
                -5103.0 / 18656.0,
            ],
            b[..6].to_vec(),
        ],
        b.clone(),
        Some(b.iter().zip(bh).map(|(x, y)| x - y).collect()),
        5,
        Some(4),
        Interpolation::Polynomial(dense),
    )
}

/// Tsitouras (2011), "Runge-Kutta pairs of order 5(4) satisfying only the first column
/// simplifying assumption", with his free fourth-order interpolant.
fn tsit5() -> Result<ButcherTableau> {
    let b = vec![
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
        0.0,
    ];
    let b_err = vec![
        -0.001_780_011_052_225_777,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1.0 / 66.0,
    ];
    let a = vec![
        vec![],
        vec![0.161],
        vec![-0.008480655492356989, 0.335480655492357],
        vec![2.897153057105493, -6.359448489975075, 4.3622954328695815],
        vec![
            5.325864828439257,
            -11.748883564062828,
            7.4955393428898365,
            -0.09249506636175525,
        ],
        vec![
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ],
        b[..6].to_vec(),
    ];
    let c = vec![0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0];
    // Tsitouras' free fourth-order interpolant, b_i(θ) = Σ_p r_ip θ^p, expanded.
    let dense = vec![
        vec![1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        vec![0.0, 0.1317, -0.2234, 0.1017],
        vec![0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
        vec![0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
        vec![0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        vec![0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
        vec![0.0, 1.5, -4.0, 2.5],
    ];
    ButcherTableau::new(
        "tsit5",
        c,
        a,
        b,
        Some(b_err),
        5,
        Some(4),
        Interpolation::Polynomial(dense),
    )
}

/// The embedded error weights torchdiffeq uses where they differ from the tableau's: its dopri5
/// (`_DORMAND_PRINCE_SHAMPINE_TABLEAU`) compares with Shampine's fourth-order solution, whose
/// error is 2/3 of Dormand & Prince's embedded one. Written as torchdiffeq writes them, so the
/// weights round alike. Other tableaus: `None` (the same weights as torchdiffeq's, or no
/// torchdiffeq counterpart).
pub(crate) fn torchdiffeq_error_weights(tableau: &ButcherTableau) -> Option<Vec<f64>> {
    (tableau.name == "dopri5" && tableau.b_err == Method::Dopri5.tableau().b_err).then(|| {
        vec![
            35.0 / 384.0 - 1951.0 / 21600.0,
            0.0,
            500.0 / 1113.0 - 22642.0 / 50085.0,
            125.0 / 192.0 - 451.0 / 720.0,
            -2187.0 / 6784.0 - -12231.0 / 42400.0,
            11.0 / 84.0 - 649.0 / 6300.0,
            -1.0 / 60.0,
        ]
    })
}

/// Dopri5's dense output as `b_i(θ)` polynomials: the quartic through `y0`, `y1`, the
/// fourth-order midpoint value of Shampine (1986) and the derivatives at both ends, as in
/// torchdiffeq (`_interp_fit` with `DPS_C_MID`), rewritten in terms of the stages.
fn dopri5_dense(b: &[f64]) -> Vec<Vec<f64>> {
    let c_mid = [
        6025192743.0 / 30085553152.0 / 2.0,
        0.0,
        51252292925.0 / 65400821598.0 / 2.0,
        -2691868925.0 / 45128329728.0 / 2.0,
        187940372067.0 / 1594534317056.0 / 2.0,
        -1776094331.0 / 19743644256.0 / 2.0,
        11237099.0 / 235043384.0 / 2.0,
    ];
    // With Y1 = (y1 - y0)/h = Σ b_i k_i, Ym = (y_mid - y0)/h = Σ c_mid_i k_i, f0 = k_1, f1 = k_7:
    // p(θ)/h = f0 θ + (f1 - 4 f0 - 5 Y1 + 16 Ym) θ² + (5 f0 - 3 f1 + 14 Y1 - 32 Ym) θ³
    //        + (2 f1 - 2 f0 - 8 Y1 + 16 Ym) θ⁴.
    (0..7)
        .map(|i| {
            let f0 = if i == 0 { 1.0 } else { 0.0 };
            let f1 = if i == 6 { 1.0 } else { 0.0 };
            vec![
                f0,
                f1 - 4.0 * f0 - 5.0 * b[i] + 16.0 * c_mid[i],
                5.0 * f0 - 3.0 * f1 + 14.0 * b[i] - 32.0 * c_mid[i],
                2.0 * f1 - 2.0 * f0 - 8.0 * b[i] + 16.0 * c_mid[i],
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tableaus_validate() {
        for m in Method::ALL {
            let t = m.tableau();
            assert_eq!(t.name, m.name());
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert!(Method::Dopri5.tableau().is_fsal());
        assert!(Method::Bosh3.tableau().is_fsal());
        assert!(Method::Tsit5.tableau().is_fsal());
        assert!(!Method::Rk4.tableau().is_fsal());
        assert!(Method::Heun2.tableau().is_adaptive());
        assert!(!Method::Euler.tableau().is_adaptive());
    }

    #[test]
    fn guide_names_parse() {
        assert_eq!("rk4".parse::<Method>().unwrap(), Method::Rk4);
        assert_eq!("rk4_38".parse::<Method>().unwrap(), Method::Rk4);
        assert_eq!("dopri5".parse::<Method>().unwrap(), Method::Dopri5);
        assert_eq!("euler".parse::<Method>().unwrap(), Method::Euler);
        let err = "dopri8".parse::<Method>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown solver 'dopri8'"), "{msg}");
        assert!(msg.contains("dopri5") && msg.contains("rk4_classic"), "{msg}");
    }

    #[test]
    fn dopri5_dense_matches_conditions() {
        // p(1/2) must be the Shampine midpoint and p'(1) the FSAL stage.
        let t = Method::Dopri5.tableau();
        let Interpolation::Polynomial(p) = &t.interpolation else {
            panic!()
        };
        let mid: Vec<f64> = p
            .iter()
            .map(|r| r.iter().enumerate().map(|(k, c)| c * 0.5f64.powi(k as i32 + 1)).sum())
            .collect();
        assert!((mid[0] - 6025192743.0 / 30085553152.0 / 2.0).abs() < 1e-15);
        let d1: Vec<f64> = p
            .iter()
            .map(|r| r.iter().enumerate().map(|(k, c)| c * (k as f64 + 1.0)).sum())
            .collect();
        for (i, v) in d1.iter().enumerate() {
            let want = if i == 6 { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-12, "b'_{i}(1) = {v}");
        }
    }

    #[test]
    fn invalid_tableaus_are_rejected() {
        let e = ButcherTableau::new(
            "bad",
            vec![0.0, 0.5],
            vec![vec![], vec![0.4]],
            vec![0.5, 0.5],
            None,
            2,
            None,
            Interpolation::Hermite,
        )
        .unwrap_err();
        assert!(e.to_string().contains("row 1 of a sums to 0.4, but c[1] = 0.5"), "{e}");
        let e = ButcherTableau::new(
            "bad",
            vec![0.0],
            vec![vec![]],
            vec![0.9],
            None,
            1,
            None,
            Interpolation::Hermite,
        )
        .unwrap_err();
        assert!(e.to_string().contains("weights b sum to 0.9"), "{e}");
        let e = ButcherTableau::new(
            "bad",
            vec![0.0, 1.0],
            vec![vec![], vec![1.0]],
            vec![0.5, 0.5],
            Some(vec![0.1, 0.0]),
            2,
            Some(1),
            Interpolation::Hermite,
        )
        .unwrap_err();
        assert!(e.to_string().contains("error weights sum to 0.1"), "{e}");
    }
}
