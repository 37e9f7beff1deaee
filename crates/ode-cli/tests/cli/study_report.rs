//! The study report: `ode search` writes it at the end and `ode report --study` rewrites it:
//! leaderboard, Pareto front, per-epoch curves (pruned trials cut), val_rmse per parameter,
//! failed trials with their reasons.

use crate::common;
use common::{WHOLE, assert_rendered, chromium, figure, ode, texts};
use std::path::Path;

/// Learning rates of 1e12 blow up: of the 8 ASHA trials (one worker, so the pruning is
/// reproducible) some fail, some are pruned, some complete.
const SPACE: &str = "[params.learning_rate]\nchoices = [0.003, 1e12]\n[params.solver]\nchoices = [\"euler\", \"rk4\"]\n\
                     [params.hidden_dim]\nlow = 8\nhigh = 32\n";

/// Runs the ASHA study `s` into `dir/s.db`, its report to `dir/study.html`; returns the storage URL.
fn search(dir: &Path) -> String {
    let space = dir.join("space.toml");
    std::fs::write(&space, SPACE).unwrap();
    let db = format!("sqlite:{}", dir.join("s.db").display());
    let report = dir.join("study.html");
    let (ok, _, err) = ode(&[
        "search",
        "--dataset",
        "spiral",
        "--space",
        space.to_str().unwrap(),
        "--strategy",
        "asha",
        "--trials",
        "8",
        "--workers",
        "1",
        "--reduction-factor",
        "2",
        "--storage",
        &db,
        "--study",
        "s",
        "--report",
        report.to_str().unwrap(),
        "--best-config",
        "/dev/null",
        "--rows",
        "300",
        "--context-len",
        "8",
        "--horizon",
        "4",
        "--epochs",
        "4",
    ]);
    assert!(ok && err.contains("study report written to"), "{err}");
    db
}

fn trials(db: &str) -> Vec<serde_json::Value> {
    let (ok, out, err) = ode(&["study", "show", "--storage", db, "--study", "s", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The number of `<tr>` rows of the table with `id`, header excluded.
fn rows(html: &str, id: &str) -> usize {
    let start = html
        .find(&format!("<table id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no table {id}"));
    let end = html[start..].find("</table>").unwrap() + start;
    html[start..end].matches("<tr>").count() - 1
}

#[test]
fn search_writes_a_study_report_of_every_trial_that_ode_report_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let db = search(dir.path());
    let html = std::fs::read_to_string(dir.path().join("study.html")).unwrap();
    let trials = trials(&db);
    let state = |s: &str| trials.iter().filter(|t| t["state"] == s).collect::<Vec<_>>();
    let (complete, pruned, failed) = (state("COMPLETE"), state("PRUNED"), state("FAIL"));
    assert_eq!(
        (complete.len(), pruned.len(), failed.len()),
        (2, 3, 3),
        "the space's outcome changed"
    );
    assert_eq!(rows(&html, "leaderboard"), 8);
    // The HTML parses and holds the plots: Pareto, curves, one per parameter.
    let plots = common::parsed_plots(&html);
    let ids: Vec<&str> = plots.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "curves",
            "param-hidden_dim",
            "param-learning_rate",
            "param-solver",
            "pareto"
        ]
    );
    for (id, circles) in &plots {
        assert_eq!(figure(&html, id).matches("<circle").count(), *circles, "{id}");
    }
    // Pareto front: a mark per complete trial, and one per trial on the front.
    let on_front = complete.iter().filter(|t| t["pareto"] == true).count();
    let pareto = figure(&html, "pareto");
    assert!(texts(pareto).contains(&"training seconds") && texts(pareto).contains(&"val_rmse"));
    assert_eq!(pareto.matches("<circle").count(), complete.len() + on_front);
    // Curves: a mark per reported epoch of every trial, a cross (two strokes) per pruned one.
    let epochs: usize = trials
        .iter()
        .map(|t| t["intermediate_values"].as_object().unwrap().len())
        .sum();
    let curves = figure(&html, "curves");
    assert!(texts(curves).contains(&"epoch"), "{:?}", texts(curves));
    assert_eq!(curves.matches("<circle").count(), epochs);
    let crosses = curves.matches("stroke=\"#000000\" stroke-width=\"2\"").count();
    assert_eq!(crosses, 2 * pruned.len(), "pruned trials are cut visibly");
    // val_rmse per parameter: complete and pruned trials, categorical values named.
    for name in ["learning_rate", "solver", "hidden_dim"] {
        let f = figure(&html, &format!("param-{name}"));
        let labels = texts(f);
        assert!(labels.iter().any(|l| l.contains(name)), "{name}: {labels:?}");
        let scored = |ts: &[&serde_json::Value]| ts.iter().filter(|t| t["params"].get(name).is_some()).count();
        assert_eq!(
            f.matches("<circle").count(),
            scored(&complete) + scored(&pruned),
            "{name}"
        );
    }
    let solver = texts(figure(&html, "param-solver"));
    assert!(solver.contains(&"euler") && solver.contains(&"rk4"), "{solver:?}");
    // Failed trials with their reasons.
    assert_eq!(rows(&html, "failed"), failed.len());
    assert!(html.contains("non-finite"), "the reasons are shown");
    // `ode report --study` writes the same report; an unknown study is named.
    let again = dir.path().join("again.html");
    let (ok, _, err) = ode(&[
        "report",
        "--study",
        "s",
        "--storage",
        &db,
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), html);
    let (ok, _, err) = ode(&["report", "--study", "nope", "--storage", &db]);
    assert!(!ok && err.contains("no study named 'nope'"), "{err}");
    // Re-running the finished study writes the report next to --best-config by default.
    let best = dir.path().join("sub").join("b.toml");
    std::fs::create_dir_all(best.parent().unwrap()).unwrap();
    let space = dir.path().join("space.toml");
    let rerun = |extra: &[&str]| {
        let mut args = vec!["search", "--dataset", "spiral", "--space", space.to_str().unwrap()];
        args.extend(["--strategy", "asha", "--trials", "8", "--storage", &db, "--study", "s"]);
        args.extend(["--rows", "300", "--context-len", "8", "--horizon", "4", "--epochs", "4"]);
        args.extend(["--best-config", best.to_str().unwrap(), "--reduction-factor", "2"]);
        args.extend(extra);
        let (ok, _, err) = ode(&args);
        assert!(ok, "{err}");
    };
    rerun(&["--no-report"]);
    let beside = dir.path().join("sub").join("s-report.html");
    assert!(!beside.exists(), "--no-report writes none");
    rerun(&[]);
    assert!(beside.exists(), "the default report sits next to --best-config");
    let (ok, _, err) = ode(&["report"]);
    assert!(!ok && err.contains("--study"), "{err}");
}

#[test]
fn chromium_renders_the_study_plots_with_ink_inside_their_axes() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    search(dir.path());
    let html = std::fs::read_to_string(dir.path().join("study.html")).unwrap();
    for id in [
        "pareto",
        "curves",
        "param-learning_rate",
        "param-solver",
        "param-hidden_dim",
    ] {
        assert_rendered(&chrome, dir.path(), &html, id, WHOLE);
    }
}
