//! Line plots as inline SVG, drawn with plotters: one `<figure>` per plot, each line's points
//! marked (one circle per point), reference values as dashed-free horizontal lines.

use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of a plot: its legend name, its (x, y) points and how it is drawn.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub look: Look,
}

impl Series {
    /// A line through `points` with a mark on each, in the colour of its position.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            look: Look::default(),
        }
    }

    /// The same series drawn as `look` says.
    pub fn with(self, look: Look) -> Self {
        Self { look, ..self }
    }
}

/// How a series is drawn; the default is a line with a circle on every point, coloured by
/// the series' position, in the legend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Look {
    /// Palette index instead of the series' position.
    pub color: Option<usize>,
    /// Marks only, no line (a scatter plot).
    pub points_only: bool,
    /// Left out of the legend (the second and later series of a kind).
    pub unlabelled: bool,
    /// A cross over the last point (a trial pruned there).
    pub cut: bool,
}

/// A horizontal reference line (a baseline's score), drawn without point marks.
pub struct Reference {
    /// Legend name.
    pub name: String,
    /// Its value.
    pub y: f64,
}

/// What a plot shows: its element id, title and axis labels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figure<'a> {
    /// The `id` of the `<figure>` (tests and links find the plot by it).
    pub id: &'a str,
    /// Caption above the plot.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
    /// Names of the x values 0, 1, 2, … (a categorical axis), instead of numbers.
    pub x_names: Option<&'a [String]>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];

/// One panel of a [`panel_plot`]: its caption and lines.
pub struct Panel {
    /// Caption above the panel.
    pub caption: String,
    /// Its lines.
    pub series: Vec<Series>,
}

/// What one chart draws: labels, lines and reference lines.
struct Chart<'a> {
    caption: Option<&'a str>,
    x_label: &'a str,
    y_label: &'a str,
    x_names: Option<&'a [String]>,
    series: &'a [Series],
    refs: &'a [Reference],
}

/// The finite points of `s`.
fn finite(s: &Series) -> impl Iterator<Item = (f64, f64)> + '_ {
    s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite())
}

/// The padded x and y ranges of a chart's finite points and reference values, or `None` when
/// there is no finite point.
fn bounds(series: &[Series], refs: &[Reference]) -> Option<((f64, f64), (f64, f64))> {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in series.iter().flat_map(finite) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return None;
    }
    for r in refs.iter().filter(|r| r.y.is_finite()) {
        (y0, y1) = (y0.min(r.y), y1.max(r.y));
    }
    let pad = ((y1 - y0) * 0.05).max(y1.abs() * 1e-3).max(1e-12);
    // Marks at the ends stay clear of the axes.
    let xpad = if x1 > x0 { (x1 - x0) * 0.03 } else { 0.5 };
    Some(((x0 - xpad, x1 + xpad), (y0 - pad, y1 + pad)))
}

/// The note that stands in for a plot without a finite point.
fn empty(fig: &Figure<'_>) -> String {
    format!(
        "<figure class=\"plot empty\" id=\"{}\"><figcaption>{}: nothing to plot</figcaption></figure>",
        fig.id, fig.title
    )
}

/// `svg` wrapped in the `<figure>` of `fig`, the legend after the title.
fn figure(fig: &Figure<'_>, legend: &str, svg: &str) -> String {
    format!(
        "<figure class=\"plot\" id=\"{}\"><figcaption>{}<br/>{legend}</figcaption>{svg}</figure>",
        fig.id, fig.title
    )
}

/// The plot as a `<figure>` holding an SVG of 640×320 pixels; an empty note instead when no
/// series has a finite point.
pub fn line_plot(fig: &Figure<'_>, series: &[Series], refs: &[Reference]) -> String {
    let Some(mut b) = bounds(series, refs) else {
        return empty(fig);
    };
    if fig.x_names.is_some() {
        // Room around the first and last category.
        b.0 = (b.0.0.min(0.0) - 0.5, b.0.1.max(0.0) + 0.5);
    }
    let chart = Chart {
        caption: None,
        x_label: fig.x_label,
        y_label: fig.y_label,
        x_names: fig.x_names,
        series,
        refs,
    };
    let mut svg = String::new();
    let drawn: Drawn = (|| {
        let root = SVGBackend::with_string(&mut svg, (640, 320)).into_drawing_area();
        draw(&root, &chart, b)?;
        Ok(root.present()?)
    })();
    drawn.expect("drawing into a string does not fail");
    figure(fig, &legend(series, refs), &svg)
}

/// Panels side by side (320×320 pixels each) in one `<figure>`, each with its own axes
/// ranges and the figure's axis labels; the legend (the first panel's lines) is in the caption,
/// where it covers no data. Panels without a finite point stay blank; an empty note when none
/// has one.
pub fn panel_plot(fig: &Figure<'_>, panels: &[Panel]) -> String {
    if panels.iter().all(|p| bounds(&p.series, &[]).is_none()) {
        return empty(fig);
    }
    let mut svg = String::new();
    draw_panels(&mut svg, fig, panels).expect("drawing into a string does not fail");
    figure(fig, &legend(&panels[0].series, &[]), &svg)
}

/// The legend, for the caption (where it covers no data): a dot in each labelled series'
/// colour and a dash in each reference line's, with their names.
fn legend(series: &[Series], refs: &[Reference]) -> String {
    let key = |color: usize, mark: &str, name: &str| {
        let RGBColor(r, g, b) = COLORS[color % COLORS.len()];
        format!(
            " <span class=\"key\" style=\"color:rgb({r},{g},{b})\">{mark}&#160;{}</span>",
            super::escape(name)
        )
    };
    let lines = series
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.look.unlabelled)
        .map(|(i, s)| key(s.look.color.unwrap_or(i), "&#9679;", &s.name));
    let references = refs
        .iter()
        .filter(|r| r.y.is_finite())
        .enumerate()
        .map(|(i, r)| key(series.len() + i, "&#8212;", &r.name));
    lines.chain(references).collect()
}

fn draw_panels(svg: &mut String, fig: &Figure<'_>, panels: &[Panel]) -> Drawn {
    let root = SVGBackend::with_string(svg, (320 * panels.len() as u32, 320)).into_drawing_area();
    root.fill(&WHITE)?;
    for (p, area) in panels.iter().zip(root.split_evenly((1, panels.len()))) {
        let Some(b) = bounds(&p.series, &[]) else { continue };
        let chart = Chart {
            caption: Some(&p.caption),
            x_label: fig.x_label,
            y_label: fig.y_label,
            x_names: None,
            series: &p.series,
            refs: &[],
        };
        draw(&area, &chart, b)?;
    }
    root.present()?;
    Ok(())
}

/// An x tick: the name of category `v` on a categorical axis (none between categories),
/// otherwise the number.
fn x_tick(names: Option<&[String]>, v: f64) -> String {
    match names {
        Some(n) if (v - v.round()).abs() < 1e-6 && v > -0.5 => n.get(v.round() as usize).cloned().unwrap_or_default(),
        Some(_) => String::new(),
        None => tick(v),
    }
}

/// An axis tick: whole numbers without decimals, others with up to four significant digits.
fn tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Draws `c` on `area` over the ranges `(x, y)`: axes, lines with a mark per point (a cross
/// on the last of a cut series) and reference lines.
fn draw(area: &DrawingArea<SVGBackend<'_>, Shift>, c: &Chart<'_>, (x, y): ((f64, f64), (f64, f64))) -> Drawn {
    area.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(area);
    if let Some(caption) = c.caption {
        builder.caption(caption, ("sans-serif", 13));
    }
    let mut chart = builder
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    chart
        .configure_mesh()
        .x_desc(c.x_label)
        .y_desc(c.y_label)
        .x_label_formatter(&|v| x_tick(c.x_names, *v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, s) in c.series.iter().enumerate() {
        let look = s.look;
        let color = COLORS[look.color.unwrap_or(i) % COLORS.len()];
        let pts: Vec<(f64, f64)> = finite(s).collect();
        let line = if look.points_only { &[][..] } else { &pts[..] };
        chart.draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        if let Some(&last) = pts.last().filter(|_| look.cut) {
            chart.draw_series([Cross::new(last, 6, BLACK.stroke_width(2))])?;
        }
    }
    for (i, r) in c.refs.iter().filter(|r| r.y.is_finite()).enumerate() {
        let color = COLORS[(c.series.len() + i) % COLORS.len()];
        chart.draw_series(LineSeries::new([(x.0, r.y), (x.1, r.y)], color.stroke_width(1)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Figure, Panel, Reference, Series, line_plot, panel_plot, tick};

    #[test]
    fn a_plot_has_its_labels_one_circle_per_point_and_its_reference_lines() {
        let fig = Figure {
            id: "p",
            title: "Loss",
            x_label: "epoch",
            y_label: "val_rmse",
            ..Default::default()
        };
        let s = Series::new("val", (1..=7).map(|e| (e as f64, 1.0 / e as f64)).collect());
        let r = Reference {
            name: "persistence".into(),
            y: 0.9,
        };
        let html = line_plot(&fig, &[s], &[r]);
        assert!(html.starts_with("<figure class=\"plot\" id=\"p\">"), "{html}");
        assert_eq!(html.matches("<circle").count(), 7);
        for text in ["epoch", "val_rmse", "persistence", "Loss"] {
            assert!(html.contains(text), "{text} missing");
        }
        let empty = line_plot(&fig, &[], &[]);
        assert!(empty.contains("nothing to plot") && !empty.contains("<svg"));
    }

    #[test]
    fn panels_sit_side_by_side_with_the_legend_in_the_caption() {
        let fig = Figure {
            id: "f",
            title: "Forecasts",
            x_label: "rows",
            y_label: "OT",
            ..Default::default()
        };
        let line = |name: &str, n: usize| Series::new(name, (0..n).map(|k| (k as f64, (k * k) as f64)).collect());
        let panels = [
            Panel {
                caption: "window 0".into(),
                series: vec![line("truth", 5), line("forecast", 5)],
            },
            Panel {
                caption: "window 9".into(),
                series: vec![line("truth", 4), Series::new("forecast", vec![(1.0, f64::NAN)])],
            },
        ];
        let html = panel_plot(&fig, &panels);
        assert!(html.contains("width=\"640\"") && html.contains("window 9"), "{html}");
        assert_eq!(html.matches("<circle").count(), 5 + 5 + 4);
        let caption = &html[..html.find("<svg").unwrap()];
        assert!(caption.contains("truth") && caption.contains("forecast"), "{caption}");
        let blank = [Panel {
            caption: "w".into(),
            series: vec![line("truth", 0)],
        }];
        assert!(panel_plot(&fig, &blank).contains("nothing to plot"));
    }

    #[test]
    fn ticks_drop_needless_decimals() {
        assert_eq!(tick(-20.0), "-20");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(0.123456), "0.1235");
        assert_eq!(tick(1234.56), "1235");
    }
}
