//! Line plots as inline SVG, drawn with plotters: one `<figure>` per plot, each line's points
//! marked (one circle per point), reference values as dashed-free horizontal lines.

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

/// The plot as a `<figure>` holding an SVG of 640×320 pixels; an empty note instead when no
/// series has a finite point.
pub fn line_plot(fig: &Figure<'_>, series: &[Series], refs: &[Reference]) -> String {
    let finite = |x: f64, y: f64| x.is_finite() && y.is_finite();
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|&(x, y)| finite(x, y));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return format!(
            "<figure class=\"plot empty\" id=\"{}\"><figcaption>{}: nothing to plot</figcaption></figure>",
            fig.id, fig.title
        );
    }
    for r in refs.iter().filter(|r| r.y.is_finite()) {
        (y0, y1) = (y0.min(r.y), y1.max(r.y));
    }
    let pad = ((y1 - y0) * 0.05).max(y1.abs() * 1e-3).max(1e-12);
    let xpad = if x1 > x0 { 0.0 } else { 0.5 };
    let mut svg = String::new();
    draw(
        &mut svg,
        fig,
        series,
        refs,
        (x0 - xpad, x1 + xpad),
        (y0 - pad, y1 + pad),
    )
    .expect("drawing into a string does not fail");
    format!(
        "<figure class=\"plot\" id=\"{}\"><figcaption>{}</figcaption>{svg}</figure>",
        fig.id, fig.title
    )
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn draw(
    svg: &mut String,
    fig: &Figure<'_>,
    series: &[Series],
    refs: &[Reference],
    x: (f64, f64),
    y: (f64, f64),
) -> Drawn {
    let root = SVGBackend::with_string(svg, (640, 320)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)?;
    chart
        .configure_mesh()
        .x_desc(fig.x_label)
        .y_desc(fig.y_label)
        .light_line_style(WHITE)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 12))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
            .label(s.name.as_str())
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 16, ly)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    for (i, r) in refs.iter().filter(|r| r.y.is_finite()).enumerate() {
        let c = COLORS[(series.len() + i) % COLORS.len()].mix(0.7);
        chart
            .draw_series(LineSeries::new([(x.0, r.y), (x.1, r.y)], c.stroke_width(1)))?
            .label(r.name.as_str())
            .legend(move |(lx, ly)| PathElement::new(vec![(lx, ly), (lx + 16, ly)], c.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Figure, Reference, Series, line_plot};

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
}
