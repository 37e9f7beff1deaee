//! Line plots as inline SVG, drawn with plotters: one `<figure>` per plot, each line's points
//! marked (one circle per point), reference values as dashed-free horizontal lines.

use plotters::coord::Shift;
use plotters::prelude::*;

/// One line of a plot: its legend name and its (x, y) points.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// The points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A horizontal reference line (a baseline's score), drawn without point marks.
pub struct Reference {
    /// Legend name.
    pub name: String,
    /// Its value.
    pub y: f64,
}

/// What a plot shows: its element id, title and axis labels.
pub struct Figure<'a> {
    /// The `id` of the `<figure>` (tests and links find the plot by it).
    pub id: &'a str,
    /// Caption above the plot.
    pub title: &'a str,
    /// X axis label.
    pub x_label: &'a str,
    /// Y axis label.
    pub y_label: &'a str,
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

/// What one chart draws: labels, lines, reference lines, whether it has the legend.
struct Chart<'a> {
    caption: Option<&'a str>,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
    refs: &'a [Reference],
    legend: bool,
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
    let xpad = if x1 > x0 { 0.0 } else { 0.5 };
    Some(((x0 - xpad, x1 + xpad), (y0 - pad, y1 + pad)))
}

/// The note that stands in for a plot without a finite point.
fn empty(fig: &Figure<'_>) -> String {
    format!(
        "<figure class=\"plot empty\" id=\"{}\"><figcaption>{}: nothing to plot</figcaption></figure>",
        fig.id, fig.title
    )
}

/// `svg` wrapped in the `<figure>` of `fig`.
fn figure(fig: &Figure<'_>, svg: &str) -> String {
    format!(
        "<figure class=\"plot\" id=\"{}\"><figcaption>{}</figcaption>{svg}</figure>",
        fig.id, fig.title
    )
}

/// The plot as a `<figure>` holding an SVG of 640×320 pixels; an empty note instead when no
/// series has a finite point.
pub fn line_plot(fig: &Figure<'_>, series: &[Series], refs: &[Reference]) -> String {
    let Some(b) = bounds(series, refs) else {
        return empty(fig);
    };
    let chart = Chart {
        caption: None,
        x_label: fig.x_label,
        y_label: fig.y_label,
        series,
        refs,
        legend: true,
    };
    let mut svg = String::new();
    let drawn: Drawn = (|| {
        let root = SVGBackend::with_string(&mut svg, (640, 320)).into_drawing_area();
        draw(&root, &chart, b)?;
        Ok(root.present()?)
    })();
    drawn.expect("drawing into a string does not fail");
    figure(fig, &svg)
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
    let names: Vec<&str> = panels[0].series.iter().map(|s| s.name.as_str()).collect();
    let legend: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let RGBColor(r, g, b) = COLORS[i % COLORS.len()];
            format!(" <span class=\"key\" style=\"color:rgb({r},{g},{b})\">&#9679; {n}</span>")
        })
        .collect();
    let caption = Figure {
        title: &format!("{}{legend}", fig.title),
        ..*fig
    };
    figure(&caption, &svg)
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
            series: &p.series,
            refs: &[],
            legend: false,
        };
        draw(&area, &chart, b)?;
    }
    root.present()?;
    Ok(())
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

/// Draws `c` on `area` over the ranges `(x, y)`: axes, lines with a mark per point, reference
/// lines and (if asked) the legend.
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
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, s) in c.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = finite(s).collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 16, ly)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    for (i, r) in c.refs.iter().filter(|r| r.y.is_finite()).enumerate() {
        let color = COLORS[(c.series.len() + i) % COLORS.len()].mix(0.7);
        chart
            .draw_series(LineSeries::new([(x.0, r.y), (x.1, r.y)], color.stroke_width(1)))?
            .label(r.name.as_str())
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 16, ly)], color.stroke_width(1)));
    }
    if c.legend {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
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
        };
        let s = Series {
            name: "val".into(),
            points: (1..=7).map(|e| (e as f64, 1.0 / e as f64)).collect(),
        };
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
        };
        let line = |name: &str, n: usize| Series {
            name: name.into(),
            points: (0..n).map(|k| (k as f64, (k * k) as f64)).collect(),
        };
        let panels = [
            Panel {
                caption: "window 0".into(),
                series: vec![line("truth", 5), line("forecast", 5)],
            },
            Panel {
                caption: "window 9".into(),
                series: vec![
                    line("truth", 4),
                    Series {
                        name: "forecast".into(),
                        points: vec![(1.0, f64::NAN)],
                    },
                ],
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
