//! `ode report` and the report `ode train` writes: one self-contained HTML file whose plots
//! have labelled axes and one mark per epoch.

use crate::common;
use common::{PANELS, SMALL, WHOLE, assert_rendered, chromium, figure, ode, texts};

/// Trains the small spiral model into `out` with `extra` flags; fails the test if it fails.
fn train_spiral(out: &std::path::Path, extra: &[&str]) {
    train_on(out, &["--dataset", "spiral"], extra);
}

/// Trains the small model on `source` (data flags) into `out`; fails the test if it fails.
fn train_on(out: &std::path::Path, source: &[&str], extra: &[&str]) {
    let mut args = vec!["train", "--quiet", "--out", out.to_str().unwrap()];
    args.extend(source);
    args.extend(extra);
    args.extend(SMALL);
    let (ok, _, err) = ode(&args);
    assert!(ok, "{err}");
}

#[test]
fn train_writes_a_self_contained_report_with_a_mark_per_epoch_and_report_rewrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_spiral(&run, &["--epochs", "3", "--solver", "rk4"]);
    let html = std::fs::read_to_string(run.join("report.html")).expect("ode train wrote report.html");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // Self-contained: nothing fetched, no scripts.
    for outside in ["http://", "https://", "<script", "<link", "src="] {
        let svg_ns = html.matches("http://www.w3.org/2000/svg").count();
        let hits = html.matches(outside).count() - if outside == "http://" { svg_ns } else { 0 };
        assert_eq!(hits, 0, "the report refers to something outside it: {outside}");
    }
    for (id, y_label, lines) in [
        ("loss", "loss / RMSE", 2),
        ("nfe", "NFE", 2),
        ("steps", "steps", 2),
        ("seconds", "seconds", 2),
    ] {
        let f = figure(&html, id);
        let labels = texts(f);
        assert!(
            f.contains("<svg") && labels.contains(&"epoch") && labels.contains(&y_label),
            "{id}: {labels:?}"
        );
        assert_eq!(
            f.matches("<circle").count(),
            3 * lines,
            "{id}: one mark per epoch and line"
        );
    }
    // The baselines are reference lines of the learning curves.
    let loss = figure(&html, "loss");
    let caption = &loss[..loss.find("<svg").unwrap()];
    for b in ["train_loss", "val_rmse", "persistence", "window_mean", "linear_ar"] {
        assert!(caption.contains(b), "no {b} in the legend: {caption}");
    }
    // The HTML parses, and holds these plots with these marks.
    let plots = common::parsed_plots(&html);
    for (id, circles) in &plots {
        assert_eq!(figure(&html, id).matches("<circle").count(), *circles, "{id}");
    }
    let ids: Vec<&str> = plots.keys().map(String::as_str).collect();
    assert_eq!(ids, ["forecast-0", "forecast-1", "loss", "nfe", "seconds", "steps"]);
    // Forecasts: a figure per target, a panel per window with context, truth and forecast.
    let fc = common::json(&run.join("forecasts.json"));
    let windows = fc["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 3, "{fc}");
    for (q, t) in windows[0]["targets"].as_array().unwrap().iter().enumerate() {
        let name = t["name"].as_str().unwrap();
        let f = figure(&html, &format!("forecast-{q}"));
        let labels = texts(f);
        let y_label = format!("{name} (data units)");
        assert!(
            labels.contains(&"rows from the forecast origin") && labels.contains(&y_label.as_str()),
            "{name}: {labels:?}"
        );
        let marks: usize = windows
            .iter()
            .map(|w| {
                let t = &w["targets"][q];
                let len = |k: &str| t[k].as_array().map_or(0, Vec::len);
                len("context") + len("truth") + len("forecast")
            })
            .sum();
        assert_eq!(marks, 3 * (8 + 4 + 4), "{name}: context 8, horizon 4, 3 windows");
        assert_eq!(f.matches("<circle").count(), marks, "{name}: one mark per value");
    }
    assert!(html.contains("<table id=\"summary\">") && html.contains("best_val_rmse"));
    assert!(
        html.contains("solver = &quot;rk4&quot;") || html.contains("solver = \"rk4\""),
        "config shown"
    );

    // `ode report` writes the same report elsewhere; --no-report writes none.
    let out = dir.path().join("r.html");
    let (ok, stdout, err) = ode(&["report", run.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(ok && stdout.contains("wrote"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), html);
    let quiet_run = dir.path().join("run2");
    train_spiral(&quiet_run, &["--epochs", "1", "--no-report"]);
    assert!(quiet_run.join("summary.json").exists() && !quiet_run.join("report.html").exists());
}

/// The rows of a CSV file without quoting: header, then cells by column name.
fn csv_rows(path: &std::path::Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_string).collect();
    lines
        .map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect())
        .collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn forecasts_are_the_checkpoints_forecasts_in_data_units_and_outlive_the_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run, pred) = (
        dir.path().join("d.csv"),
        dir.path().join("run"),
        dir.path().join("p.csv"),
    );
    let data_s = data.to_str().unwrap();
    let (ok, _, err) = ode(&[
        "data",
        "generate",
        "--dataset",
        "spiral",
        "--rows",
        "300",
        "--out",
        data_s,
    ]);
    assert!(ok, "{err}");
    train_on(&run, &["--data", data_s], &["--epochs", "2", "--solver", "rk4"]);
    let ckpt = run.join("checkpoint.safetensors");
    let args = ["predict", "--checkpoint", ckpt.to_str().unwrap(), "--data", data_s];
    let (ok, _, err) = ode(&[&args[..], &["--out", pred.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    let (table, predicted) = (csv_rows(&data), csv_rows(&pred));
    let fc = common::json(&run.join("forecasts.json"));
    assert_eq!(fc["split"], "val");
    let mut last_row = 0;
    for w in fc["windows"].as_array().unwrap() {
        let first = w["first_row"].as_u64().unwrap() as usize;
        assert!(first > last_row, "windows in order: {fc}");
        last_row = first;
        for t in w["targets"].as_array().unwrap() {
            let name = t["name"].as_str().unwrap();
            let values =
                |k: &str| -> Vec<f64> { t[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
            let cell = |rows: &[std::collections::HashMap<String, String>], r: usize, col: &str| -> f64 {
                rows[r][col].parse().unwrap()
            };
            for (k, (truth, forecast)) in values("truth").into_iter().zip(values("forecast")).enumerate() {
                let row = first + k;
                let at = |p: &std::collections::HashMap<String, String>| {
                    p["row"] == row.to_string() && p["step"] == (k + 1).to_string()
                };
                let p = predicted
                    .iter()
                    .position(at)
                    .expect("ode predict forecasts the row at this step");
                assert!(
                    close(forecast, cell(&predicted, p, &format!("{name}_pred")), 1e-5),
                    "{name} row {row}"
                );
                assert!(
                    close(truth, cell(&predicted, p, &format!("{name}_actual")), 1e-6),
                    "{name} row {row}"
                );
                assert!(
                    close(truth, cell(&table, row, name), 1e-5),
                    "{name} row {row}: the data"
                );
            }
            for (k, v) in values("context").into_iter().enumerate() {
                assert!(close(v, cell(&table, first - 8 + k, name), 1e-5), "{name} context {k}");
            }
        }
    }
    // The report needs the run directory only.
    std::fs::remove_file(&data).unwrap();
    let (ok, _, err) = ode(&["report", run.to_str().unwrap()]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_eq!(figure(&html, "forecast-1").matches("<circle").count(), 3 * 16);
}

#[test]
fn report_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = ode(&["report", dir.path().to_str().unwrap()]);
    assert!(
        !ok && err.contains("metrics.jsonl") && err.contains("ode train --out"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        "{\"metric\":\"val_rmse\",\"step\":1,\"value\":0.5}\nnot json\n",
    )
    .unwrap();
    let (ok, _, err) = ode(&["report", dir.path().to_str().unwrap()]);
    assert!(!ok && err.contains("metrics.jsonl, line 2"), "{err}");
    // A malformed summary or forecasts file is named in the report, which is still written.
    std::fs::write(
        dir.path().join("metrics.jsonl"),
        "{\"metric\":\"val_rmse\",\"step\":1,\"value\":0.5}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("summary.json"), "{\"best_val_rmse\": ").unwrap();
    std::fs::write(dir.path().join("forecasts.json"), "[]").unwrap();
    let (ok, _, err) = ode(&["report", dir.path().to_str().unwrap()]);
    assert!(ok, "{err}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("summary.json is malformed"), "{html}");
    assert!(
        html.contains("forecasts not shown") && html.contains("forecasts.json"),
        "{html}"
    );
}

#[test]
fn chromium_renders_every_plot_of_the_report_with_ink_inside_its_axes() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_spiral(&run, &["--epochs", "4"]);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for id in ["loss", "nfe", "steps", "seconds"] {
        assert_rendered(&chrome, dir.path(), &html, id, WHOLE);
    }
    for id in ["forecast-0", "forecast-1"] {
        assert_rendered(&chrome, dir.path(), &html, id, PANELS);
    }
}
