//! The report of a study: the leaderboard, the Pareto front of training seconds against
//! val_rmse, val_rmse against each searched parameter, every trial's per-epoch val_rmse (pruned
//! trials cut at their rung) and the failed trials with their reasons.

use super::plot::{Figure, Look, Series, line_plot};
use super::{escape, page, warning};
use crate::search::{attr, text};
use ode_search::driver::Entry;
use ode_search::store::TrialRecord;
use ode_search::{TrialState, leaderboard};
use std::collections::BTreeSet;
use std::path::Path;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Palette indices: complete trials, the Pareto front, failed and pruned trials.
const COMPLETE: usize = 0;
const FRONT: usize = 2;
const FAILED: usize = 1;
const PRUNED: usize = 4;

/// Writes the HTML report of study `name` (whose trials are `trials`, from the store shown as
/// `store`) to `out`.
pub fn write_study_report(name: &str, store: &str, trials: &[TrialRecord], out: &Path) -> Res<()> {
    let html = page(&format!("Study {name}"), &body(store, trials));
    std::fs::write(out, html).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(())
}

/// A trial's score: the objective of a complete trial, the best epoch of a pruned one.
fn score(t: &TrialRecord) -> Option<f64> {
    t.value.or_else(|| {
        (t.state == TrialState::Pruned)
            .then(|| t.intermediate.values().copied().fold(f64::NAN, f64::min))
            .filter(|v| v.is_finite())
    })
}

fn body(store: &str, trials: &[TrialRecord]) -> String {
    let board = leaderboard(trials);
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    let mut html = format!(
        "<p>{} trials in {}: {} complete, {} pruned, {} failed, {} running, {} waiting.</p>\n",
        trials.len(),
        escape(store),
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Fail),
        count(TrialState::Running),
        count(TrialState::Waiting)
    );
    html += &warning(ode_search::leaderboard::best_trial_warning(trials));
    html += "<h2>Plots</h2>\n";
    html += &pareto_plot(&board);
    html += &curves_plot(trials);
    for name in param_names(trials) {
        html += &param_plot(trials, &name);
    }
    html += "\n<h2>Leaderboard</h2>\n";
    html += &leaderboard_table(&board);
    html += "\n<h2>Failed trials</h2>\n";
    html += &failed_table(trials);
    html
}

/// Every trial: complete ones best first (`*` on the Pareto front), then the others by number.
fn leaderboard_table(board: &[Entry]) -> String {
    let mut t = String::from(
        "<table id=\"leaderboard\"><tr><th>rank</th><th>trial</th><th>state</th><th>val_rmse</th>\
         <th>skill</th><th>train s</th><th>epochs</th><th>Pareto</th><th>parameters</th></tr>",
    );
    for (i, e) in board.iter().enumerate() {
        let tr = &e.trial;
        let num = |v: Option<f64>, digits: usize| v.map_or("-".into(), |x| format!("{x:.digits$}"));
        let rank = if tr.state == TrialState::Complete {
            (i + 1).to_string()
        } else {
            "-".into()
        };
        t += &format!(
            "<tr><td>{rank}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            tr.number,
            tr.state.optuna_name(),
            num(score(tr), 5),
            num(attr(tr, "skill"), 3),
            num(e.train_seconds, 2),
            tr.intermediate.len(),
            if e.pareto { "*" } else { "" },
            escape(&params_text(tr))
        );
    }
    t + "</table>"
}

/// A trial's parameters as `name=value`, floats to four significant digits.
fn params_text(t: &TrialRecord) -> String {
    let short = |v: &toml::Value| match v {
        toml::Value::Float(x) => format!("{}", format!("{x:.3e}").parse::<f64>().unwrap_or(*x)),
        other => text(other),
    };
    t.params
        .iter()
        .map(|(k, v)| format!("{k}={}", short(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Complete trials as points of training seconds against val_rmse, the front as a line.
fn pareto_plot(board: &[Entry]) -> String {
    let complete: Vec<&Entry> = board.iter().filter(|e| e.trial.state == TrialState::Complete).collect();
    let point = |e: &&Entry| Some((e.train_seconds?, e.trial.value?));
    let mut front: Vec<(f64, f64)> = complete.iter().filter(|e| e.pareto).filter_map(point).collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0));
    let scatter = Look {
        color: Some(COMPLETE),
        points_only: true,
        ..Look::default()
    };
    let series = [
        Series::new("complete trials", complete.iter().filter_map(point).collect()).with(scatter),
        Series::new("Pareto front", front).with(Look {
            color: Some(FRONT),
            ..Look::default()
        }),
    ];
    let fig = Figure {
        id: "pareto",
        title: "Training time against accuracy: the Pareto front of complete trials",
        x_label: "training seconds",
        y_label: "val_rmse",
        ..Figure::default()
    };
    line_plot(&fig, &series, &[])
}

/// Every trial's val_rmse per epoch: complete, pruned (a cross where it was cut) and failed.
fn curves_plot(trials: &[TrialRecord]) -> String {
    let mut seen = BTreeSet::new();
    let series: Vec<Series> = trials
        .iter()
        .filter(|t| !t.intermediate.is_empty())
        .map(|t| {
            let (kind, color) = match t.state {
                TrialState::Complete => ("complete", COMPLETE),
                TrialState::Pruned => ("pruned (× at the rung)", PRUNED),
                TrialState::Fail => ("failed", FAILED),
                _ => ("running", 5),
            };
            let look = Look {
                color: Some(color),
                unlabelled: !seen.insert(kind),
                cut: t.state == TrialState::Pruned,
                ..Look::default()
            };
            let points = t.intermediate.iter().map(|(&e, &v)| (e as f64, v)).collect();
            Series::new(kind, points).with(look)
        })
        .collect();
    let fig = Figure {
        id: "curves",
        title: "val_rmse per epoch of every trial",
        x_label: "epoch",
        y_label: "val_rmse",
        ..Figure::default()
    };
    line_plot(&fig, &series, &[])
}

/// The parameters any trial has, in name order.
fn param_names(trials: &[TrialRecord]) -> BTreeSet<String> {
    trials.iter().flat_map(|t| t.params.keys().cloned()).collect()
}

/// How a parameter's values sit on an x axis.
enum Axis {
    /// Numbers as they are.
    Linear,
    /// Positive numbers spanning two decades or more: log10 of the value.
    Log,
    /// Anything else: the index of the value's text among the sorted distinct texts.
    Categories(Vec<String>),
}

fn axis_of(values: &[&toml::Value]) -> Axis {
    let nums: Option<Vec<f64>> = values
        .iter()
        .map(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .collect();
    match nums {
        Some(n)
            if n.iter().all(|&x| x > 0.0)
                && n.iter().copied().fold(0.0, f64::max) >= 100.0 * n.iter().copied().fold(f64::MAX, f64::min) =>
        {
            Axis::Log
        }
        Some(_) => Axis::Linear,
        None => {
            let names: BTreeSet<String> = values.iter().map(|v| text(v)).collect();
            Axis::Categories(names.into_iter().collect())
        }
    }
}

impl Axis {
    fn x(&self, v: &toml::Value) -> Option<f64> {
        let num = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        match self {
            Axis::Linear => num,
            Axis::Log => num.map(f64::log10),
            Axis::Categories(names) => names.iter().position(|n| *n == text(v)).map(|i| i as f64),
        }
    }
}

/// val_rmse against parameter `name`: complete trials, and pruned ones at their best epoch.
fn param_plot(trials: &[TrialRecord], name: &str) -> String {
    let values: Vec<&toml::Value> = trials.iter().filter_map(|t| t.params.get(name)).collect();
    let axis = axis_of(&values);
    let points = |state: TrialState| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> = trials
            .iter()
            .filter(|t| t.state == state)
            .filter_map(|t| Some((axis.x(t.params.get(name)?)?, score(t)?)))
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    };
    let look = |color| Look {
        color: Some(color),
        points_only: true,
        ..Look::default()
    };
    let series = [
        Series::new("complete", points(TrialState::Complete)).with(look(COMPLETE)),
        Series::new("pruned (best epoch)", points(TrialState::Pruned)).with(look(PRUNED)),
    ];
    let x_label = match &axis {
        Axis::Log => format!("log10({name})"),
        _ => name.to_string(),
    };
    let (id, title) = (format!("param-{name}"), format!("val_rmse against {name}"));
    let fig = Figure {
        id: &id,
        title: &title,
        x_label: &x_label,
        y_label: "val_rmse",
        x_names: match &axis {
            Axis::Categories(n) => Some(n),
            _ => None,
        },
    };
    line_plot(&fig, &series, &[])
}

/// The failed trials with the reason each failed.
fn failed_table(trials: &[TrialRecord]) -> String {
    let failed: Vec<&TrialRecord> = trials.iter().filter(|t| t.state == TrialState::Fail).collect();
    if failed.is_empty() {
        return "<p>none</p>".into();
    }
    let mut t =
        String::from("<table id=\"failed\"><tr><th>trial</th><th>attempts</th><th>reason</th><th>parameters</th></tr>");
    for tr in failed {
        let reason = tr
            .user_attrs
            .get("fail_reason")
            .and_then(|v| v.as_str())
            .unwrap_or("(no reason recorded)");
        t += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            tr.number,
            tr.attempt,
            escape(reason),
            escape(&params_text(tr))
        );
    }
    t + "</table>"
}

#[cfg(test)]
mod tests {
    use super::{Axis, axis_of, params_text, score};
    use ode_search::TrialState;
    use ode_search::store::TrialRecord;

    fn trial(state: TrialState, value: Option<f64>, epochs: &[f64]) -> TrialRecord {
        TrialRecord {
            trial_id: 1,
            number: 0,
            state,
            params: [("gradient_clip".to_string(), toml::Value::Float(1.2366484647099276))].into(),
            value,
            intermediate: epochs.iter().enumerate().map(|(e, &v)| (e as u64 + 1, v)).collect(),
            user_attrs: Default::default(),
            attempt: 1,
            worker: None,
        }
    }

    #[test]
    fn a_pruned_trial_scores_its_best_epoch_a_failed_one_nothing() {
        assert_eq!(score(&trial(TrialState::Complete, Some(0.2), &[0.3, 0.2])), Some(0.2));
        assert_eq!(score(&trial(TrialState::Pruned, None, &[0.5, 0.4, 0.45])), Some(0.4));
        assert_eq!(score(&trial(TrialState::Fail, None, &[0.5])), None);
        assert_eq!(score(&trial(TrialState::Pruned, None, &[])), None);
    }

    #[test]
    fn parameters_are_linear_log_or_categories() {
        let axis = |vals: &[toml::Value]| axis_of(&vals.iter().collect::<Vec<_>>());
        let lr = [toml::Value::Float(1e-4), toml::Value::Float(1e-2)];
        assert!(matches!(axis(&lr), Axis::Log));
        assert_eq!(axis(&lr).x(&lr[0]), Some(-4.0));
        let dims = [toml::Value::Integer(16), toml::Value::Integer(128)];
        assert!(matches!(axis(&dims), Axis::Linear));
        let solvers = [
            toml::Value::from("rk4"),
            toml::Value::from("euler"),
            toml::Value::from("rk4"),
        ];
        let a = axis(&solvers);
        assert!(matches!(&a, Axis::Categories(n) if n == &["euler", "rk4"]));
        assert_eq!(a.x(&solvers[0]), Some(1.0));
        assert_eq!(
            params_text(&trial(TrialState::Complete, None, &[])),
            "gradient_clip=1.237"
        );
    }
}
