//! Line plots (SVG) of the evaluation: a panel per context or sparsity, a line per method.

use std::path::Path;

use plotters::prelude::*;

use crate::setup::Error;

/// One line of a panel.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Index into the palette (a method keeps its color across panels).
    pub color: usize,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// One chart.
pub struct Panel {
    /// Its caption.
    pub title: String,
    /// Its lines.
    pub series: Vec<Series>,
}

/// Axes shared by the panels of a figure.
pub struct Axes<'a> {
    /// X axis label.
    pub x: &'a str,
    /// Y axis label.
    pub y: &'a str,
    /// Whether x is drawn on a log scale.
    pub log_x: bool,
}

/// Draws `panels` side by side into the SVG file `path`.
pub fn draw(path: &Path, axes: &Axes, panels: &[Panel]) -> Result<(), Error> {
    let root = SVGBackend::new(path, (520 * panels.len().max(1) as u32, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, panel) in root.split_evenly((1, panels.len().max(1))).iter().zip(panels) {
        let points = || panel.series.iter().flat_map(|s| s.points.iter().copied());
        let (x_min, x_max) = bounds(points().map(|p| p.0));
        let (y_min, y_max) = bounds(points().map(|p| p.1));
        let (y_min, y_max) = (y_min - 0.05 * (y_max - y_min), y_max + 0.05 * (y_max - y_min));
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&panel.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55);
        if axes.log_x {
            let mut chart =
                builder.build_cartesian_2d((x_min / 1.2..x_max * 1.2).log_scale(), y_min..y_max)?;
            chart.configure_mesh().x_desc(axes.x).y_desc(axes.y).draw()?;
            draw_lines(&mut chart, &panel.series)?;
        } else {
            let mut chart = builder.build_cartesian_2d(x_min - 0.5..x_max + 0.5, y_min..y_max)?;
            chart.configure_mesh().x_desc(axes.x).y_desc(axes.y).draw()?;
            draw_lines(&mut chart, &panel.series)?;
        }
    }
    root.present()?;
    Ok(())
}

fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), Error>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for s in series {
        let color = PALETTE[s.color % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw()?;
    Ok(())
}

/// Distinct colors: black, red, green, blue, orange, purple, brown, teal.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

/// Min and max of `values`, widened when equal; `(0, 1)` when empty.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0))
    } else {
        (lo, hi)
    }
}
