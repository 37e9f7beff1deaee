//! Helpers shared by the `ode` command's end-to-end tests.

use std::path::Path;
use std::process::Command;

/// Runs the built `ode` binary with `args`: (success, stdout, stderr).
pub fn ode(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ode"))
        .args(args)
        .output()
        .expect("run ode");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small model and dataset for fast CLI runs (latent 8, hidden 16, context 8, horizon 4,
/// 300 rows).
pub const SMALL: [&str; 10] = [
    "--latent-dim",
    "8",
    "--hidden-dim",
    "16",
    "--context-len",
    "8",
    "--horizon",
    "4",
    "--rows",
    "300",
];

/// A JSON file, parsed.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Small training settings for `ode search` trials (300 rows, hidden 12, context 8, horizon 4,
/// 2 epochs).
pub const SEARCH_SMALL: [&str; 10] = [
    "--rows",
    "300",
    "--hidden-dim",
    "12",
    "--context-len",
    "8",
    "--horizon",
    "4",
    "--epochs",
    "2",
];

/// An external program a test needs (`env_var`, else `default` on PATH), if `--version` runs;
/// otherwise None after a skip message, or a failure when `require_var` is `1` (as in CI).
pub fn external_tool(env_var: &str, default: &str, require_var: &str, how: &str) -> Option<String> {
    let exe = std::env::var(env_var).unwrap_or_else(|_| default.into());
    let runs = Command::new(&exe)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if runs {
        return Some(exe);
    }
    if std::env::var(require_var).as_deref() == Ok("1") {
        panic!("{require_var}=1 but `{exe} --version` does not run: {how}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n********** SKIPPED: no {default} ({how}) **********\n"
    );
    None
}

/// The `<figure>` with `id` in `html`, or a failure naming what is there.
pub fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<figure class=\"plot\" id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no plot '{id}' in the report"));
    let end = html[start..].find("</figure>").expect("figure closes") + start;
    &html[start..end]
}

/// The texts of the SVG `<text>` elements in `html`, trimmed.
pub fn texts(html: &str) -> Vec<&str> {
    html.split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>').and_then(|(_, rest)| rest.split_once("</text>")))
        .map(|(inner, _)| inner.trim())
        .collect()
}

/// Headless Chromium (`ODE_CHROMIUM`, or `chromium` on PATH), or None after a skip message;
/// with `ODE_REQUIRE_CHROMIUM=1` (CI) a missing one fails.
pub fn chromium() -> Option<String> {
    let how = "apt-get install chromium fonts-dejavu-core, or set ODE_CHROMIUM";
    external_tool("ODE_CHROMIUM", "chromium", "ODE_REQUIRE_CHROMIUM", how)
}

/// `html` rendered by headless Chromium in a `w`×`h` window: RGBA rows.
pub fn screenshot(chrome: &str, dir: &std::path::Path, html: &str, (w, h): (u32, u32)) -> Vec<u8> {
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

/// How the charts of a figure sit: side by side, each `width` pixels wide, their axes from
/// `top` pixels down (below a panel's caption) to the x labels.
#[derive(Clone, Copy)]
pub struct Charts {
    /// Width of one chart.
    pub width: usize,
    /// First pixel row inside the axes.
    pub top: usize,
}

/// A figure of one 640-pixel chart.
pub const WHOLE: Charts = Charts { width: 640, top: 14 };
/// A figure of 320-pixel panels with captions.
pub const PANELS: Charts = Charts { width: 320, top: 40 };

/// Renders figure `id` of `html` alone with Chromium and checks every chart in it: inside its
/// axes (right of the y labels, above the x labels) the lines and marks are drawn, and not
/// over everything.
pub fn assert_rendered(chrome: &str, dir: &Path, html: &str, id: &str, charts: Charts) {
    let chart = charts.width;
    let f = figure(html, id);
    let svg = &f[f.find("<svg").expect("an svg")..];
    let width: usize = svg
        .split_once("width=\"")
        .and_then(|(_, r)| r.split_once('"'))
        .and_then(|(w, _)| w.parse().ok())
        .expect("the svg has a width");
    let page = format!("<!DOCTYPE html><html><body style=\"margin:0;background:#fff\">{svg}</body></html>");
    let rgba = screenshot(chrome, dir, &page, (width as u32, 320));
    // A line plot inks hundreds of pixels; a scatter of few points a dozen or more per mark.
    let marks_per_chart = svg.matches("<circle").count() * chart / width;
    let least = (12 * marks_per_chart).min(300);
    for left in (0..width).step_by(chart) {
        let (mut ink, mut total) = (0usize, 0usize);
        for y in charts.top..266 {
            for x in left + 90..left + chart - 20 {
                let p = &rgba[(y * width + x) * 4..][..3];
                total += 1;
                ink += usize::from(p.iter().any(|&c| c < 200));
            }
        }
        assert!(
            ink > least && ink < total / 2,
            "{id} at x {left}: {ink} of {total} pixels drawn"
        );
    }
}

/// Parses a report as XML (it is well-formed: every element closed, the SVG inline, only
/// numeric character references) and returns each plot's `id` with its number of `<circle>`
/// marks; a parse error fails the test with the position.
pub fn parsed_plots(html: &str) -> std::collections::BTreeMap<String, usize> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("the report does not parse: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "html");
    doc.descendants()
        .filter(|n| n.has_tag_name("figure") && n.attribute("class") == Some("plot"))
        .map(|f| {
            let id = f.attribute("id").expect("a plot has an id").to_string();
            let svg = f.children().find(|c| c.tag_name().name() == "svg");
            let svg = svg.unwrap_or_else(|| panic!("plot {id} has no svg"));
            let circles = svg.descendants().filter(|n| n.tag_name().name() == "circle").count();
            (id, circles)
        })
        .collect()
}
