//! Search spaces and the grid/random strategies.

use ode_search::space::{TOLERANCES, to_run_config};
use ode_search::{Distribution, SearchSpace, grid, random_trial};
use std::collections::BTreeSet;
use toml::Value;

const SPACE: &str = r#"
[params.latent_dim]
choices = [16, 32]
[params.solver]
choices = ["euler", "dopri5"]
[params.learning_rate]
low = 1e-4
high = 1e-2
log = true
grid = 3
[params.tolerances]
choices = [[1e-3, 1e-4], [1e-5, 1e-6]]
[params.epochs]
value = 3
[params.hidden_dim]
low = 32
high = 128
step = 32
"#;

#[test]
fn grid_enumerates_the_full_product_in_a_fixed_order() {
    let space = SearchSpace::from_toml(SPACE, "test").unwrap();
    let g = grid(&space).unwrap();
    // epochs 1 × hidden 4 × latent 2 × lr 3 × (euler without tolerances + dopri5 × tolerances 2):
    // the tolerances are conditional on an adaptive solver.
    assert_eq!(g.len(), 4 * 2 * 3 * (1 + 2));
    let distinct: BTreeSet<String> = g.iter().map(|p| format!("{p:?}")).collect();
    assert_eq!(distinct.len(), g.len(), "no configuration twice");
    // Names in order; the last (tolerances) varies fastest.
    assert_eq!(g[0]["hidden_dim"], Value::Integer(32));
    assert_eq!(g[0]["solver"], Value::String("euler".into()));
    assert!(!g[0].contains_key(TOLERANCES), "euler has no tolerances");
    assert_eq!(g[1]["solver"], g[2]["solver"]);
    assert_ne!(g[1][TOLERANCES], g[2][TOLERANCES]);
    assert_eq!(g[1][TOLERANCES], g[4][TOLERANCES]);
    let lrs: BTreeSet<String> = g.iter().map(|p| p["learning_rate"].to_string()).collect();
    assert_eq!(lrs.len(), 3);
    let lr: Vec<f64> = g.iter().map(|p| p["learning_rate"].as_float().unwrap()).collect();
    assert!(
        lr.iter().any(|v| (v - 1e-3).abs() < 1e-12),
        "log-spaced middle point is 1e-3"
    );
    assert_eq!(grid(&space).unwrap(), g, "deterministic");
    // Every grid point is a valid `ode train` configuration.
    for p in &g {
        let rc = to_run_config(p).unwrap();
        let r = rc.resolve(None);
        assert_eq!(r.train.epochs, 3);
        assert_eq!(p.contains_key(TOLERANCES), r.model.solver.name() == "dopri5");
        if r.model.solver.name() == "dopri5" {
            assert!(r.model.rtol == 1e-3 || r.model.rtol == 1e-5);
        }
    }
}

#[test]
fn guide_default_space_matches_the_tuning_guide() {
    let s = SearchSpace::guide_default();
    let names: Vec<&str> = s.params.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "batch_size",
            "gradient_clip",
            "hidden_dim",
            "latent_dim",
            "learning_rate",
            "normalization",
            "solver",
            "tolerances"
        ]
    );
    // batch 2 × clip 2 × hidden 3 × latent 3 × lr 2 × normalization 2 × (euler, rk4 without
    // tolerances + dopri5 × 3 tolerance pairs).
    assert_eq!(grid(&s).unwrap().len(), 2 * 2 * 3 * 3 * 2 * 2 * (2 + 3));
    for k in 0..50 {
        let (p, _) = random_trial(&s, 7, k);
        let lr = p["learning_rate"].as_float().unwrap();
        assert!((1e-4..=1e-3).contains(&lr));
        let clip = p["gradient_clip"].as_float().unwrap();
        assert!((0.5..=2.0).contains(&clip));
        to_run_config(&p).unwrap();
    }
}

#[test]
fn random_trials_depend_only_on_the_study_seed_and_the_index() {
    let space = SearchSpace::from_toml(SPACE, "test").unwrap();
    let a: Vec<_> = (0..20).map(|k| random_trial(&space, 42, k)).collect();
    // Any order of drawing (as workers would) gives the same trials.
    let b: Vec<_> = (0..20)
        .rev()
        .map(|k| random_trial(&space, 42, k))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(a, b);
    let c: Vec<_> = (0..20).map(|k| random_trial(&space, 43, k)).collect();
    assert_ne!(a, c, "another seed, other trials");
    let seeds: BTreeSet<u64> = a.iter().map(|t| t.1).collect();
    assert_eq!(seeds.len(), 20, "each trial its own training seed");
    // Values stay in range, ints on their step.
    for (p, _) in &a {
        let h = p["hidden_dim"].as_integer().unwrap();
        assert!((32..=128).contains(&h) && h % 32 == 0, "{h}");
        let lr = p["learning_rate"].as_float().unwrap();
        assert!((1e-4..=1e-2).contains(&lr));
    }
    // Log-uniform: about a third of the draws per decade-third, not clustered near the top.
    let small = (0..300)
        .filter(|&k| random_trial(&space, 1, k).0["learning_rate"].as_float().unwrap() < 1e-3)
        .count();
    assert!((100..200).contains(&small), "{small} of 300 below 1e-3");
}

#[test]
fn invalid_spaces_are_rejected_with_the_parameter_named() {
    let cases = [
        (
            "[params.latent_dims]\nchoices = [1]\n",
            "unknown parameter 'latent_dims'",
        ),
        (
            "[params.latent_dim]\nchoices = []\n",
            "parameter 'latent_dim': the choice list is empty",
        ),
        (
            "[params.learning_rate]\nlow = 1e-2\nhigh = 1e-3\n",
            "parameter 'learning_rate': low 0.01 > high 0.001",
        ),
        (
            "[params.learning_rate]\nlow = 0.0\nhigh = 1e-3\nlog = true\n",
            "a log range must not touch 0",
        ),
        (
            "[params.hidden_dim]\nlow = 0\nhigh = 64\nlog = true\n",
            "a log range must be above 0",
        ),
        (
            "[params.solver]\nchoices = [\"euler\"]\nvalue = \"rk4\"\n",
            "give exactly one of",
        ),
        (
            "[params.latent_dim]\nchoices = [\"big\"]\n",
            "parameter 'latent_dim': value \"big\" is not valid here",
        ),
        ("[params.latent_dim]\nchoices = [16\n", "search space test"),
    ];
    for (text, want) in cases {
        let e = SearchSpace::from_toml(text, "test").unwrap_err().to_string();
        assert!(e.contains(want), "for {text:?}: {e}");
    }
    let space = SearchSpace::from_toml("[params.learning_rate]\nlow = 1e-4\nhigh = 1e-3\n", "test").unwrap();
    assert!(matches!(
        space.params["learning_rate"],
        Distribution::Float { grid: None, .. }
    ));
    let e = grid(&space).unwrap_err().to_string();
    assert!(e.contains("needs `grid = N`"), "{e}");
}

#[test]
fn spaces_round_trip_through_toml() {
    for space in [
        SearchSpace::from_toml(SPACE, "test").unwrap(),
        SearchSpace::guide_default(),
    ] {
        let back = SearchSpace::from_toml(&space.to_toml(), "round trip").unwrap();
        assert_eq!(back, space);
    }
}

#[test]
fn conditional_parameters_are_only_drawn_where_they_apply() {
    let space = SearchSpace::from_toml(
        "[params.solver]\nchoices = [\"euler\", \"rk4\", \"dopri5\"]\n\
         [params.tolerances]\nchoices = [[1e-3, 1e-4], [1e-5, 1e-6]]\n\
         [params.normalization]\nchoices = [\"global\", \"window\"]\n\
         [params.revin]\nchoices = [false, true]\n\
         [params.latent_dim]\nchoices = [8, 16, 32]\n",
        "test",
    )
    .unwrap();
    let mut kinds = BTreeSet::new();
    for k in 0..200 {
        let (p, _) = random_trial(&space, 11, k);
        let adaptive = p["solver"].as_str() == Some("dopri5");
        let window = p["normalization"].as_str() == Some("window");
        assert_eq!(p.contains_key(TOLERANCES), adaptive, "trial {k}: {p:?}");
        assert_eq!(p.contains_key("revin"), window, "trial {k}: {p:?}");
        kinds.insert((adaptive, window));
        let r = to_run_config(&p).unwrap().resolve(None);
        r.model.validate().unwrap();
    }
    assert_eq!(kinds.len(), 4, "every combination drawn");
    for k in 0..20 {
        assert_eq!(
            random_trial(&space, 11, k),
            random_trial(&space, 11, k),
            "deterministic"
        );
    }
    // Grid: euler 1 + rk4 1 + dopri5 2, times global 1 + window 2, times latent 3.
    assert_eq!(grid(&space).unwrap().len(), (1 + 1 + 2) * (1 + 2) * 3);
}
