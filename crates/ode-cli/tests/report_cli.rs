//! `ode report` and the report `ode train` writes: one self-contained HTML file whose plots
//! have labelled axes and one mark per epoch.

mod common;
use common::{SMALL, external_tool, ode};

/// The `<figure>` with `id` in `html`, or a failure naming what is there.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure class=\"plot\" id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no plot '{id}' in the report"));
    let end = html[start..].find("</figure>").expect("figure closes") + start;
    &html[start..end]
}

/// The texts of the SVG `<text>` elements in `html`, trimmed.
fn texts(html: &str) -> Vec<&str> {
    html.split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>').and_then(|(_, rest)| rest.split_once("</text>")))
        .map(|(inner, _)| inner.trim())
        .collect()
}

/// Trains the small spiral model into `out` with `extra` flags; fails the test if it fails.
fn train_spiral(out: &std::path::Path, extra: &[&str]) {
    let mut args = vec![
        "train",
        "--dataset",
        "spiral",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ];
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
    for b in ["persistence", "window_mean", "linear_ar"] {
        assert!(texts(loss).contains(&b), "no {b} line");
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
}

/// Headless Chromium (`ODE_CHROMIUM`, or `chromium` on PATH), or None after a skip message;
/// with `ODE_REQUIRE_CHROMIUM=1` (CI) a missing one fails.
fn chromium() -> Option<String> {
    let how = "apt-get install chromium fonts-dejavu-core, or set ODE_CHROMIUM";
    external_tool("ODE_CHROMIUM", "chromium", "ODE_REQUIRE_CHROMIUM", how)
}

/// `html` rendered by headless Chromium in a `w`×`h` window: RGBA rows.
fn screenshot(chrome: &str, dir: &std::path::Path, html: &str, (w, h): (u32, u32)) -> Vec<u8> {
    let page = dir.join("page.html");
    let png = dir.join("page.png");
    std::fs::write(&page, html).unwrap();
    let _ = std::fs::remove_file(&png);
    let out = std::process::Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg("--hide-scrollbars")
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(png.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (w, h));
    let channels = info.color_type.samples();
    buf.chunks(channels).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}

#[test]
fn chromium_renders_every_plot_of_the_report_with_ink_inside_its_axes() {
    let Some(chrome) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    train_spiral(&run, &["--epochs", "4"]);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for id in ["loss", "nfe", "steps", "seconds"] {
        let f = figure(&html, id);
        let svg = &f[f.find("<svg").expect("an svg")..];
        let page = format!("<!DOCTYPE html><html><body style=\"margin:0;background:#fff\">{svg}</body></html>");
        let rgba = screenshot(&chrome, dir.path(), &page, (640, 320));
        // Inside the axes (the chart area right of the y labels, above the x labels): the
        // lines and marks must be drawn, and not over everything.
        let (mut ink, mut total) = (0usize, 0usize);
        for y in 20..260 {
            for x in 100..620 {
                let p = &rgba[(y * 640 + x) * 4..][..3];
                total += 1;
                ink += usize::from(p.iter().any(|&c| c < 200));
            }
        }
        assert!(ink > 400 && ink < total / 2, "{id}: {ink} of {total} pixels drawn");
    }
}
