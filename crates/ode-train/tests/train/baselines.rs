//! The baselines against hand-computed values on a tiny series, and the ridge fit against a
//! direct nalgebra solve.

use nalgebra::DMatrix;
use ode_train::baselines::{self, Baseline, BaselineConfig, linear_forecast, normal_equations, ridge_solve};
use ode_train::data::{DataConfig, Dataset, Table};
use ode_train::verdict::Standing;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 60 rows: train rows 0..42, val rows 42..48, test rows 48..60 (0.7 / 0.2 split). Column `a`
/// in the validation rows is 1, 4, 2, 5, 3, 0; column `b` is `a · 10 + 1` everywhere.
fn tiny() -> Table {
    let val = [1.0, 4.0, 2.0, 5.0, 3.0, 0.0];
    let a: Vec<f64> = (0..60)
        .map(|t| {
            if (42..48).contains(&t) {
                val[t - 42]
            } else {
                ((t * 7) % 11) as f64
            }
        })
        .collect();
    Table {
        columns: vec!["a".into(), "b".into()],
        data: a.iter().flat_map(|&v| [v, v * 10.0 + 1.0]).collect(),
        time: None,
    }
}

fn tiny_ds(features: &[&str], targets: &[&str], max_val: Option<usize>) -> Dataset {
    let cfg = DataConfig {
        context_len: 3,
        horizon: 2,
        features: Some(features.iter().map(|s| s.to_string()).collect()),
        targets: Some(targets.iter().map(|s| s.to_string()).collect()),
        max_val_windows: max_val,
        ..DataConfig::default()
    };
    Dataset::from_table(&tiny(), &cfg, "tiny").unwrap()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
        "{what}: got {got}, want {want}"
    );
}

fn units(b: &baselines::Baselines, which: Baseline, target: usize) -> Option<f64> {
    b.get(which).unwrap().rmse_data_units[target]
}

#[test]
fn naive_baselines_match_hand_computed_values() {
    let ds = tiny_ds(&["a"], &["a"], None);
    assert_eq!(ds.val.num_windows(), 2);
    let b = baselines::for_dataset(&ds, Some(2)).unwrap();
    assert_eq!(b.windows, 2);
    // Window 0: context 1, 4, 2; targets 5, 3. Window 1: context 4, 2, 5; targets 3, 0.
    // Persistence: window 0 forecasts 2 (errors 3, 1: 10), window 1 forecasts 5 (errors 2, 5:
    // 29); RMSE = sqrt(39 / 4).
    close(
        units(&b, Baseline::Persistence, 0).unwrap(),
        (39.0f64 / 4.0).sqrt(),
        "persistence",
    );
    // Window mean: 7/3 (errors 8/3, 2/3: 68/9) and 11/3 (errors 2/3, 11/3: 125/9);
    // RMSE = sqrt(193 / 36).
    close(
        units(&b, Baseline::WindowMean, 0).unwrap(),
        (193.0f64 / 36.0).sqrt(),
        "window mean",
    );
    // Seasonal naive, season 2: step k reads context row 3 + k − 2·(k/2 + 1), rows 1 and 2:
    // window 0 forecasts 4, 2 (errors 1, 1: 2), window 1 forecasts 2, 5 (errors 1, 5: 26);
    // RMSE = sqrt(28 / 4).
    close(
        units(&b, Baseline::SeasonalNaive, 0).unwrap(),
        7.0f64.sqrt(),
        "seasonal naive",
    );
    // The normalised RMSE is the data-unit RMSE over the training std of `a`.
    let std = ds.target_scaler.std[0];
    close(
        b.persistence().unwrap() * std,
        (39.0f64 / 4.0).sqrt(),
        "normalised persistence",
    );
    assert_eq!(b.season, Some(2));

    // Season 3 = context_len: steps read rows 0 and 1: window 0 forecasts 1, 4 (errors 4, −1:
    // 17), window 1 forecasts 4, 2 (errors −1, −2: 5); RMSE = sqrt(22 / 4).
    let b3 = baselines::for_dataset(&ds, Some(3)).unwrap();
    close(
        units(&b3, Baseline::SeasonalNaive, 0).unwrap(),
        5.5f64.sqrt(),
        "season 3",
    );
    // No season: no seasonal baseline.
    let none = baselines::for_dataset(&ds, None).unwrap();
    assert!(none.get(Baseline::SeasonalNaive).is_none());
    assert_eq!(none.scores.len(), 3);
}

#[test]
fn baselines_honour_the_validation_cap() {
    // Only window 0 (as the trainer's validation with max_val_windows = 1): persistence
    // sqrt(10 / 2), window mean sqrt(68 / 18).
    let ds = tiny_ds(&["a"], &["a"], Some(1));
    let b = baselines::for_dataset(&ds, None).unwrap();
    assert_eq!(b.windows, 1);
    close(
        units(&b, Baseline::Persistence, 0).unwrap(),
        5.0f64.sqrt(),
        "capped persistence",
    );
    close(
        units(&b, Baseline::WindowMean, 0).unwrap(),
        (68.0f64 / 18.0).sqrt(),
        "capped mean",
    );
}

#[test]
fn targets_that_are_not_features_are_skipped_and_named() {
    // Target b = 10·a + 1 is not a feature: persistence covers a only.
    let ds = tiny_ds(&["a"], &["a", "b"], None);
    let b = baselines::for_dataset(&ds, None).unwrap();
    assert_eq!(b.targets_not_features, vec!["b".to_string()]);
    assert_eq!(units(&b, Baseline::Persistence, 1), None);
    close(
        units(&b, Baseline::Persistence, 0).unwrap(),
        (39.0f64 / 4.0).sqrt(),
        "persistence of a",
    );
    close(
        b.persistence().unwrap() * ds.target_scaler.std[0],
        (39.0f64 / 4.0).sqrt(),
        "covers a only",
    );
    // The linear AR forecasts every target.
    assert!(units(&b, Baseline::LinearAr, 1).is_some());
    assert!(b.summary_line().contains("not features"), "{}", b.summary_line());
    // Skill compares the model on the covered targets only: a model with a's persistence
    // error and any error on b has skill 0.
    let p = units(&b, Baseline::Persistence, 0).unwrap();
    let skill = b.skill(123.0, &[p, 99.0]).unwrap();
    assert!(skill.abs() < 1e-9, "{skill}");

    // With no target among the features there is no persistence and so no skill.
    let only_b = tiny_ds(&["a"], &["b"], None);
    let nb = baselines::for_dataset(&only_b, None).unwrap();
    assert!(nb.persistence().is_none());
    assert_eq!(nb.skill(0.5, &[1.0]), None);
}

#[test]
fn a_season_beyond_the_context_is_refused() {
    let ds = tiny_ds(&["a"], &["a"], None);
    for s in [0, 4] {
        let e = baselines::for_dataset(&ds, Some(s)).unwrap_err().to_string();
        assert!(e.contains("season") && e.contains("context_len = 3"), "{e}");
    }
}

#[test]
fn skill_and_warning_follow_persistence() {
    let ds = tiny_ds(&["a"], &["a"], None);
    let b = baselines::for_dataset(&ds, None).unwrap();
    let p = b.persistence().unwrap();
    close(b.skill(p * 0.5, &[0.0]).unwrap(), 0.5, "half the error");
    close(b.skill(p * 1.5, &[0.0]).unwrap(), -0.5, "worse");
    let w = Standing::new("the model", p * 1.5, Some(-0.5), &b).warning().unwrap();
    assert!(
        w.contains("the model does not beat persistence") && w.contains("--context-len"),
        "{w}"
    );
}

/// A model's standing with these baselines' RMSE (persistence, window mean, linear AR).
fn standing(val_rmse: f64, skill: Option<f64>, p: f64, mean: f64, ar: f64) -> Standing<'static> {
    Standing {
        what: "the model",
        val_rmse,
        skill,
        baselines: vec![
            (Baseline::Persistence, p),
            (Baseline::WindowMean, mean),
            (Baseline::LinearAr, ar),
        ],
    }
}

#[test]
fn the_warning_names_every_baseline_that_wins() {
    // Better than all three: no warning.
    assert_eq!(standing(0.2, Some(0.6), 0.5, 0.4, 0.3).warning(), None);
    // Beats persistence, loses to linear AR only.
    let s = standing(0.2, Some(0.6), 0.5, 0.4, 0.1);
    assert_eq!(s.beaten_by(), vec![(Baseline::LinearAr, 0.1)]);
    let w = s.warning().unwrap();
    assert!(
        w.contains("the model beats persistence (skill +0.600) but not linear AR (0.1000)"),
        "{w}"
    );
    assert!(
        w.contains("val_rmse 0.2000 against 0.1000 for a ridge regression"),
        "{w}"
    );
    assert!(
        w.contains("--epochs") && !w.contains("does not beat persistence"),
        "{w}"
    );
    // Loses to two: both named, the best first.
    let s = standing(0.2, Some(0.6), 0.5, 0.15, 0.19);
    assert_eq!(
        s.beaten_by(),
        vec![(Baseline::WindowMean, 0.15), (Baseline::LinearAr, 0.19)]
    );
    let w = s.warning().unwrap();
    assert!(w.contains("but not window mean (0.1500), linear AR (0.1900)"), "{w}");
    assert!(w.contains("against 0.1500 for the mean of the context window"), "{w}");
    // A tie counts as losing: the simpler forecast is at least as good.
    assert_eq!(standing(0.2, Some(0.6), 0.5, 0.4, 0.2).beaten_by().len(), 1);
    // Losing to persistence gives the persistence warning, whatever else wins.
    let w = standing(0.6, Some(-0.2), 0.5, 0.4, 0.1).warning().unwrap();
    assert!(
        w.contains("does not beat persistence: val_rmse 0.6000 against 0.5000"),
        "{w}"
    );
}

#[test]
fn naive_baselines_are_compared_on_the_targets_they_cover() {
    // Two targets, one not a feature: val_rmse (1.0) covers both, persistence (0.5) and the
    // window mean only the feature one, where the model's error is 0.5 · (1 − 0.2) = 0.4.
    let s = standing(1.0, Some(0.2), 0.5, 0.45, 2.0);
    assert!(s.beaten_by().is_empty(), "{:?}", s.beaten_by());
    let s = standing(1.0, Some(0.2), 0.5, 0.35, 0.9);
    assert_eq!(
        s.beaten_by(),
        vec![(Baseline::WindowMean, 0.35), (Baseline::LinearAr, 0.9)]
    );
}

#[test]
fn the_standing_of_a_run_holds_its_baselines() {
    let ds = tiny_ds(&["a"], &["a"], None);
    let b = baselines::for_dataset(&ds, None).unwrap();
    let s = Standing::new("m", 1.0, None, &b);
    let names: Vec<Baseline> = s.baselines.iter().map(|(x, _)| *x).collect();
    let expected: Vec<Baseline> = b.scores.iter().map(|x| x.baseline).collect();
    assert_eq!(names, expected);
    assert_eq!(s.baselines[0].1, b.persistence().unwrap());
}

fn random_ds(seed: u64) -> Dataset {
    let cfg = DataConfig {
        context_len: 3,
        horizon: 2,
        ..DataConfig::default()
    };
    Dataset::from_table(&random_table(seed), &cfg, "random").unwrap()
}

fn random_table(seed: u64) -> Table {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let rows = 120;
    let mut a = 0.0f64;
    let data = (0..rows)
        .flat_map(|t| {
            a = 0.8 * a + rng.random::<f64>() - 0.5;
            [a, (t as f64 * 0.3).sin() + 0.1 * rng.random::<f64>()]
        })
        .collect();
    Table {
        columns: vec!["a".into(), "b".into()],
        data,
        time: None,
    }
}

/// X (windows × C·D, then a column of ones) and Y (windows × H·O), materialised.
fn design(split: &ode_train::data::Split) -> (DMatrix<f64>, DMatrix<f64>, Vec<Vec<f32>>) {
    let (c, h, d, o) = (
        split.context_len(),
        split.horizon(),
        split.input_dim(),
        split.output_dim(),
    );
    let n = split.num_windows();
    let (mut x, mut y) = (DMatrix::zeros(n, c * d + 1), DMatrix::zeros(n, h * o));
    let mut ctxs = Vec::new();
    for i in 0..n {
        let (mut ctx, mut tgt) = (vec![0f32; c * d], vec![0f32; h * o]);
        split.fill_batch(&[i], &mut ctx, &mut tgt);
        for (k, v) in ctx.iter().enumerate() {
            x[(i, k)] = *v as f64;
        }
        x[(i, c * d)] = 1.0;
        for (k, v) in tgt.iter().enumerate() {
            y[(i, k)] = *v as f64;
        }
        ctxs.push(ctx);
    }
    (x, y, ctxs)
}

#[test]
fn ridge_matches_a_direct_solve() {
    let ds = random_ds(7);
    let (x, y, _) = design(&ds.train);
    let n = ds.train.num_windows();
    let (xtx, xty) = normal_equations(&ds.train);
    assert!((&xtx - x.transpose() * &x).amax() < 1e-9 * xtx.amax());
    assert!((&xty - x.transpose() * &y).amax() < 1e-9 * xty.amax().max(1.0));
    for lambda in [1e-3, 0.1, 10.0] {
        let mut pen = DMatrix::<f64>::identity(x.ncols(), x.ncols()) * (n as f64 * lambda);
        pen[(x.ncols() - 1, x.ncols() - 1)] = 0.0; // the intercept is not penalised
        let direct = (x.transpose() * &x + pen).try_inverse().unwrap() * x.transpose() * &y;
        let w = ridge_solve(&xtx, &xty, n, lambda).unwrap();
        assert!((&w - &direct).amax() < 1e-8 * direct.amax().max(1.0), "λ {lambda}");
    }
}

#[test]
fn ridge_lambda_is_the_one_with_the_lowest_validation_rmse() {
    let ds = random_ds(11);
    let (x, y, _) = design(&ds.train);
    let (_, yv, ctxs) = design(&ds.val);
    let n = ds.train.num_windows();
    let grid = [1e-4, 1e-2, 1.0, 100.0];
    // Each λ's validation RMSE from a direct solve, forecast window by window.
    let rmse: Vec<f64> = grid
        .iter()
        .map(|&lambda| {
            let mut pen = DMatrix::<f64>::identity(x.ncols(), x.ncols()) * (n as f64 * lambda);
            pen[(x.ncols() - 1, x.ncols() - 1)] = 0.0;
            let w = (x.transpose() * &x + pen).try_inverse().unwrap() * x.transpose() * &y;
            let mut sse = 0.0;
            for (i, ctx) in ctxs.iter().enumerate() {
                for (k, p) in linear_forecast(&w, ctx).iter().enumerate() {
                    sse += (p - yv[(i, k)]).powi(2);
                }
            }
            (sse / (yv.nrows() * yv.ncols()) as f64).sqrt()
        })
        .collect();
    let best = (0..grid.len()).min_by(|&a, &b| rmse[a].total_cmp(&rmse[b])).unwrap();
    // The grid must matter for the test to mean something.
    let spread = rmse.iter().cloned().fold(0.0, f64::max) - rmse.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(spread > 1e-3, "{rmse:?}");
    let cfg = BaselineConfig {
        lambdas: grid.to_vec(),
        ..BaselineConfig::for_dataset(&ds, None)
    };
    let b = baselines::compute(&ds.train, &ds.val, &cfg).unwrap();
    assert_eq!(b.ridge_lambda, grid[best], "{rmse:?}");
    close(b.get(Baseline::LinearAr).unwrap().rmse, rmse[best], "linear AR RMSE");
    let by_module = baselines::ridge_val_rmse(&ds.train, &ds.val, &grid);
    for (a, b) in by_module.iter().zip(&rmse) {
        close(*a, *b, "ridge_val_rmse");
    }
}

#[test]
fn baselines_serialise_with_snake_case_names() {
    let ds = tiny_ds(&["a"], &["a"], None);
    let b = baselines::for_dataset(&ds, Some(2)).unwrap();
    let v = serde_json::to_value(&b).unwrap();
    let names: Vec<&str> = v["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["baseline"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["persistence", "window_mean", "seasonal_naive", "linear_ar"]);
    let back: baselines::Baselines = serde_json::from_value(v).unwrap();
    assert_eq!(back, b);
}

#[test]
fn the_trainer_logs_baselines_and_skill_without_changing_validation() {
    use ode_train::{MemoryTracker, ModelConfig, NeuralOdeModel, TrainConfig, Trainer};
    let table = ode_train::generate::generate("lotka-volterra", 200, 0, 0.01).unwrap();
    let cfg = DataConfig {
        context_len: 8,
        horizon: 4,
        ..DataConfig::default()
    };
    let ds = Dataset::from_table(&table, &cfg, "lv").unwrap();
    let mc = ModelConfig {
        input_dim: ds.input_dim(),
        output_dim: ds.output_dim(),
        latent_dim: 4,
        hidden_dim: 8,
        context_len: 8,
        horizon: 4,
        solver: "euler".parse().unwrap(),
        ..ModelConfig::default()
    };
    let tc = TrainConfig {
        epochs: 2,
        threads: Some(1),
        ..TrainConfig::default()
    };
    let b = baselines::for_dataset(&ds, None).unwrap();
    let run = |with: bool| {
        let mut tracker = MemoryTracker::default();
        let model = NeuralOdeModel::seeded(mc.clone(), 0).unwrap();
        let mut trainer = Trainer::new(model, tc.clone(), &mut tracker).unwrap();
        if with {
            trainer = trainer.with_baselines(b.clone());
        }
        let h = trainer.fit(&ds.train, &ds.val).unwrap();
        drop(trainer);
        (h, tracker)
    };
    let (plain, plain_tracker) = run(false);
    let (scored, tracker) = run(true);
    assert_eq!(plain.val_rmse(), scored.val_rmse(), "baselines change nothing else");
    assert!(plain.epochs.iter().all(|e| e.skill.is_none()));
    assert!(!plain_tracker.metrics.contains_key("skill"));
    let p = b.persistence().unwrap();
    assert_eq!(tracker.metrics["baseline_persistence"], vec![(0, p)]);
    assert_eq!(tracker.metrics["baseline_linear_ar_lambda"], vec![(0, b.ridge_lambda)]);
    let skills = &tracker.metrics["skill"];
    assert_eq!(skills.len(), 2);
    for (e, (step, s)) in scored.epochs.iter().zip(skills) {
        assert_eq!(*step, e.epoch);
        assert!((s - (1.0 - e.val_rmse / p)).abs() < 1e-12);
        assert_eq!(e.skill, Some(*s));
    }
}

/// 60 rows: train rows 0..42 as in [`tiny`], val rows 42..54, and the 6 test rows 54..60 given
/// (train_frac 0.7, test_frac 0.1); one column `a`.
fn tiny_with_test(test: [f64; 6]) -> Dataset {
    let a: Vec<f64> = (0..60)
        .map(|t| if t >= 54 { test[t - 54] } else { ((t * 7) % 11) as f64 })
        .collect();
    let table = Table {
        columns: vec!["a".into()],
        data: a,
        time: None,
    };
    let cfg = DataConfig {
        context_len: 3,
        horizon: 2,
        test_frac: 0.1,
        ..DataConfig::default()
    };
    Dataset::from_table(&table, &cfg, "tiny").unwrap()
}

#[test]
fn test_split_baselines_match_hand_computed_values() {
    let ds = tiny_with_test([2.0, 6.0, 3.0, 1.0, 4.0, 7.0]);
    assert_eq!((ds.train.rows(), ds.val.rows(), ds.test.num_windows()), (42, 12, 2));
    // A λ so large that the ridge keeps only its (unpenalised) intercept: step k forecasts the
    // mean of the training windows' step-k targets, rows 3 + k .. 41 + k of `a`.
    let cfg = BaselineConfig {
        season: Some(2),
        lambdas: vec![1e12],
        ..BaselineConfig::for_dataset(&ds, Some(2))
    };
    let b = baselines::compute_on(&ds.train, &ds.val, &ds.test, &cfg).unwrap();
    assert_eq!((b.split.as_str(), b.windows), ("test", 2));
    let mae = |which: Baseline| b.get(which).unwrap().mae_data_units[0].unwrap();
    // Window 0: context 2, 6, 3; targets 1, 4. Window 1: context 6, 3, 1; targets 4, 7.
    // Persistence forecasts 3 (errors 2, −1) and 1 (errors −3, −6): SSE 50, SAE 12.
    close(
        units(&b, Baseline::Persistence, 0).unwrap(),
        12.5f64.sqrt(),
        "persistence",
    );
    close(mae(Baseline::Persistence), 3.0, "persistence MAE");
    // Window mean 11/3 (errors 8/3, −1/3) and 10/3 (errors −2/3, −11/3): SSE 190/9, SAE 22/3.
    close(
        units(&b, Baseline::WindowMean, 0).unwrap(),
        (190.0f64 / 36.0).sqrt(),
        "window mean",
    );
    close(mae(Baseline::WindowMean), 11.0 / 6.0, "window mean MAE");
    // Season 2 reads context rows 1 and 2: forecasts 6, 3 (errors 5, −1) and 3, 1 (errors
    // −1, −6): SSE 63, SAE 13.
    close(
        units(&b, Baseline::SeasonalNaive, 0).unwrap(),
        (63.0f64 / 4.0).sqrt(),
        "seasonal naive",
    );
    close(mae(Baseline::SeasonalNaive), 13.0 / 4.0, "seasonal naive MAE");
    let a = |t: usize| ((t * 7) % 11) as f64;
    let m = |k: usize| (3 + k..41 + k).map(a).sum::<f64>() / 38.0;
    let (m0, m1) = (m(0), m(1));
    let errors = [m0 - 1.0, m1 - 4.0, m0 - 4.0, m1 - 7.0];
    let want = (errors.iter().map(|e| e * e).sum::<f64>() / 4.0).sqrt();
    close(units(&b, Baseline::LinearAr, 0).unwrap(), want, "linear AR");
    let want_mae = errors.iter().map(|e| e.abs()).sum::<f64>() / 4.0;
    close(mae(Baseline::LinearAr), want_mae, "linear AR MAE");
    // Normalised units: data units over the training std, for RMSE and MAE alike.
    let std = ds.target_scaler.std[0];
    let p = b.get(Baseline::Persistence).unwrap();
    close(p.rmse, 12.5f64.sqrt() / std, "normalised persistence");
    close(p.mae, 3.0 / std, "normalised persistence MAE");
    assert!(
        b.summary_line().starts_with("baselines on 2 test windows:"),
        "{}",
        b.summary_line()
    );
}

#[test]
fn the_ridge_lambda_is_chosen_on_validation_whatever_the_test_split_holds() {
    let grid = [1e-4, 1e-2, 1.0, 100.0];
    let cfg_of = |ds: &Dataset| BaselineConfig {
        lambdas: grid.to_vec(),
        ..BaselineConfig::for_dataset(ds, None)
    };
    let table = random_table(11);
    let dc = DataConfig {
        context_len: 3,
        horizon: 2,
        ..DataConfig::default()
    };
    let ds = Dataset::from_table(&table, &dc, "random").unwrap();
    // The same table with the test rows (the last 24) replaced by noise around a new level.
    let mut changed = table.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let test_start = (changed.num_rows() - ds.test.rows()) * 2;
    for v in &mut changed.data[test_start..] {
        *v = 3.0 + 4.0 * rng.random::<f64>();
    }
    let ds2 = Dataset::from_table(&changed, &dc, "random").unwrap();
    assert_eq!(ds.val, ds2.val, "only the test split differs");
    assert_ne!(ds.test, ds2.test);
    let on_val = baselines::compute(&ds.train, &ds.val, &cfg_of(&ds)).unwrap();
    let t1 = baselines::compute_on(&ds.train, &ds.val, &ds.test, &cfg_of(&ds)).unwrap();
    let t2 = baselines::compute_on(&ds2.train, &ds2.val, &ds2.test, &cfg_of(&ds2)).unwrap();
    // The λ with the lowest validation RMSE, whatever the test split holds.
    let val_rmse = baselines::ridge_val_rmse(&ds.train, &ds.val, &grid);
    let best = (0..grid.len())
        .min_by(|&a, &b| val_rmse[a].total_cmp(&val_rmse[b]))
        .unwrap();
    assert_eq!(on_val.ridge_lambda, grid[best]);
    assert_eq!(t1.ridge_lambda, grid[best]);
    assert_eq!(t2.ridge_lambda, grid[best]);
    // Choosing on the changed test split would have picked another λ, so the test can fail.
    let test_rmse = baselines::ridge_val_rmse(&ds2.train, &ds2.test, &grid);
    let on_test = (0..grid.len())
        .min_by(|&a, &b| test_rmse[a].total_cmp(&test_rmse[b]))
        .unwrap();
    assert_ne!(on_test, best, "{test_rmse:?} vs {val_rmse:?}");
    // The scores are the test split's: they changed with it, and equal the fit's test RMSE.
    let ar = |b: &baselines::Baselines| b.get(Baseline::LinearAr).unwrap().rmse;
    assert!((ar(&t1) - ar(&t2)).abs() > 1e-3, "{} {}", ar(&t1), ar(&t2));
    close(ar(&t2), test_rmse[best], "linear AR on test");
    close(ar(&on_val), val_rmse[best], "linear AR on val");
    assert_eq!((t1.split.as_str(), t1.windows), ("test", ds.test.num_windows()));
    assert_eq!(
        on_val,
        baselines::compute_on(&ds.train, &ds.val, &ds.val, &cfg_of(&ds)).unwrap()
    );
}

#[test]
fn an_evaluated_split_without_windows_is_refused_by_name() {
    let ds = tiny_ds(&["a"], &["a"], None);
    let cfg = DataConfig {
        context_len: 3,
        horizon: 2,
        test_frac: 0.05,
        ..DataConfig::default()
    };
    let short = Dataset::from_table(&tiny(), &cfg, "tiny").unwrap();
    assert_eq!(short.test.num_windows(), 0);
    let e = baselines::for_dataset_split(&short, &short.test, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("test split") && e.contains("fewer than one window"), "{e}");
    assert!(baselines::for_dataset_split(&ds, &ds.test, None).is_ok());
}
