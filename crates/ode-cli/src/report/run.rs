//! The report of one training run: learning curves against the baselines, solver work per
//! epoch, the summary and the configuration, from the files `ode train --out DIR` writes.

use super::plot::{Figure, Panel, Reference, Series, line_plot, panel_plot};
use super::{escape, page, warning};
use crate::forecasts::{self, Forecasts};
use ode_train::Baselines;
use ode_train::verdict::best_epoch_warning;
use std::collections::BTreeMap;
use std::path::Path;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The per-epoch metrics of a run (`metrics.jsonl`): name → (epoch, value), and the logged
/// parameters in order.
#[derive(Default)]
struct Metrics {
    series: BTreeMap<String, Vec<(f64, f64)>>,
    params: Vec<(String, String)>,
}

impl Metrics {
    /// Reads `metrics.jsonl`; a line that is not a metric or a parameter is an error naming it.
    fn read(path: &Path) -> Res<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read {}: {e} (is this a directory `ode train --out` wrote?)",
                path.display()
            )
        })?;
        let mut m = Metrics::default();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |why: String| format!("{}, line {}: {why}", path.display(), i + 1);
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            if let Some(name) = v["metric"].as_str() {
                let (Some(step), Some(value)) = (v["step"].as_f64(), v["value"].as_f64()) else {
                    return Err(bad("a metric needs a numeric step and value".into()).into());
                };
                m.series.entry(name.to_string()).or_default().push((step, value));
            } else if let Some(name) = v["param"].as_str() {
                let value = v["value"]
                    .as_str()
                    .map_or_else(|| v["value"].to_string(), str::to_string);
                m.params.push((name.to_string(), value));
            }
        }
        Ok(m)
    }

    /// The epochs of metric `name` (steps from 1; a resumed run's repeats keep the last).
    fn per_epoch(&self, name: &str) -> Series {
        let mut by_epoch = BTreeMap::new();
        for &(step, v) in self.series.get(name).into_iter().flatten().filter(|p| p.0 >= 1.0) {
            by_epoch.insert(step as u64, v);
        }
        Series::new(name, by_epoch.into_iter().map(|(e, v)| (e as f64, v)).collect())
    }

    /// The baselines' validation RMSE (`baseline_*` at step 0), as reference lines.
    fn baselines(&self) -> Vec<Reference> {
        self.series
            .iter()
            .filter(|(k, _)| k.starts_with("baseline_") && !k.ends_with("_lambda"))
            .filter_map(|(k, v)| {
                v.last().map(|p| Reference {
                    name: k.replacen("baseline_", "", 1),
                    y: p.1,
                })
            })
            .collect()
    }
}

/// Writes the HTML report of run directory `dir` to `out`.
pub fn write_run_report(dir: &Path, out: &Path) -> Res<()> {
    let metrics = Metrics::read(&dir.join("metrics.jsonl"))?;
    let summary_path = dir.join("summary.json");
    let summary: Result<serde_json::Value, String> = match std::fs::read_to_string(&summary_path) {
        Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{} is malformed: {e}", summary_path.display())),
        Err(_) => Err("no summary.json (the run did not finish)".into()),
    };
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
    let forecasts = match forecasts::read(dir) {
        Ok(Some(f)) => forecast_plots(&f),
        Ok(None) => format!(
            "<p>no {} (written by `ode train` at the end of training)</p>",
            forecasts::FILE
        ),
        Err(e) => format!("<p>forecasts not shown: {}</p>", escape(&e.to_string())),
    };
    let html = page(
        &format!("Training run {}", dir.display()),
        &body(&metrics, summary.as_ref().map_err(String::as_str), &config, &forecasts),
    );
    std::fs::write(out, html).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(())
}

/// Targets whose forecasts a report plots (the first ones in output order).
const MAX_TARGETS: usize = 8;

/// One figure per target (up to [`MAX_TARGETS`]): a panel per window with the target's
/// context, the truth and the forecast, against the rows from the forecast origin.
fn forecast_plots(f: &Forecasts) -> String {
    let targets = f.windows.first().map_or(0, |w| w.targets.len());
    let mut html = String::new();
    for q in 0..targets.min(MAX_TARGETS) {
        let name = &f.windows[0].targets[q].name;
        let title = format!(
            "{} on {} windows (data units): forecast of the best checkpoint{} against the truth",
            escape(name),
            f.split,
            f.epoch.map_or(String::new(), |e| format!(" (epoch {e})"))
        );
        let y_label = format!("{name} (data units)");
        let id = format!("forecast-{q}");
        let fig = Figure {
            id: &id,
            title: &title,
            x_label: "rows from the forecast origin",
            y_label: &y_label,
            ..Default::default()
        };
        let panels: Vec<Panel> = f.windows.iter().map(|w| window_panel(w, q)).collect();
        html += &panel_plot(&fig, &panels);
    }
    if targets > MAX_TARGETS {
        html += &format!(
            "<p>{} more targets not plotted (see {})</p>",
            targets - MAX_TARGETS,
            forecasts::FILE
        );
    }
    html
}

/// Target `q` in window `w`: context rows at −C+1…0, truth and forecast at 1…H.
fn window_panel(w: &forecasts::WindowForecast, q: usize) -> Panel {
    let t = &w.targets[q];
    let ahead = |v: &[f64]| v.iter().enumerate().map(|(k, &y)| ((k + 1) as f64, y)).collect();
    let mut series = Vec::new();
    if let Some(ctx) = &t.context {
        let c = ctx.len() as f64;
        series.push(Series::new(
            "context",
            ctx.iter().enumerate().map(|(k, &y)| (k as f64 + 1.0 - c, y)).collect(),
        ));
    }
    series.push(Series::new("truth", ahead(&t.truth)));
    series.push(Series::new("forecast", ahead(&t.forecast)));
    let when = w.time.as_deref().map_or(String::new(), |t| format!(", {t}"));
    Panel {
        caption: format!("window {} (row {}{when})", w.window, w.first_row),
        series,
    }
}

fn body(m: &Metrics, summary: Result<&serde_json::Value, &str>, config: &str, forecasts: &str) -> String {
    let epochs = |names: &[&str]| names.iter().map(|n| m.per_epoch(n)).collect::<Vec<_>>();
    let fig = |id, title, y_label| Figure {
        id,
        title,
        x_label: "epoch",
        y_label,
        ..Default::default()
    };
    let plots = [
        line_plot(
            &fig(
                "loss",
                "Learning curves (normalised units) against the baselines on the validation windows",
                "loss / RMSE",
            ),
            &epochs(&["train_loss", "val_rmse"]),
            &m.baselines(),
        ),
        line_plot(
            &fig(
                "nfe",
                "Function evaluations per sample, summed over the epoch (ode_solver_steps)",
                "NFE",
            ),
            &epochs(&["nfe_forward", "nfe_backward"]),
            &[],
        ),
        line_plot(
            &fig(
                "steps",
                "Forward solver steps per sample, summed over the epoch",
                "steps",
            ),
            &epochs(&["accepted_steps", "rejected_steps"]),
            &[],
        ),
        line_plot(
            &fig("seconds", "Time per epoch", "seconds"),
            &epochs(&["train_seconds", "seconds"]),
            &[],
        ),
    ];
    let mut html = String::from("<h2>Summary</h2>\n");
    html += &warning(summary.ok().and_then(verdict));
    html += &summary_table(summary);
    html += "\n<h2>Plots</h2>\n";
    html += &plots.concat();
    html += "\n<h2>Forecasts</h2>\n";
    html += forecasts;
    html += "\n<h2>Parameters</h2>\n<table>";
    for (k, v) in &m.params {
        html += &format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    html += "</table>\n<h2>Configuration (config.toml)</h2>\n<pre>";
    html += &escape(config);
    html += "</pre>";
    html
}

/// The warning `ode train` ended with when a baseline beats the best epoch, from `summary.json`.
fn verdict(s: &serde_json::Value) -> Option<String> {
    let b: Baselines = serde_json::from_value(s["baselines"].clone()).ok()?;
    let epoch = usize::try_from(s["best_epoch"].as_u64()?).ok()?;
    best_epoch_warning(epoch, s["best_val_rmse"].as_f64()?, s["skill"].as_f64(), &b)
}

/// The headline numbers of `summary.json`, or why there are none.
fn summary_table(summary: Result<&serde_json::Value, &str>) -> String {
    let s = match summary {
        Ok(s) => s,
        Err(why) => return format!("<p>{}</p>", escape(why)),
    };
    let keys = [
        "device",
        "best_val_rmse",
        "best_epoch",
        "final_val_rmse",
        "skill",
        "epochs",
        "stopped_early",
        "train_seconds_per_epoch",
        "nfe_forward_per_epoch",
        "nfe_backward_per_epoch",
        "total_seconds",
        "error",
    ];
    let mut t = String::from("<table id=\"summary\">");
    for k in keys {
        let v = match &s[k] {
            serde_json::Value::Null => continue,
            serde_json::Value::Number(n) if n.is_f64() => format!("{:.6}", n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(x) => x.clone(),
            other => other.to_string(),
        };
        t += &format!("<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    t + "</table>"
}
