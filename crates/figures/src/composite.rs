//! The clustering notebook's composite figure: silhouette against k for each row set, the four
//! attention quadrants (even/odd queries × even/odd keys) with rows and columns ordered by
//! cluster, and beside them a strip of cluster labels and a strip of feature signs per row.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::colormap::Colormap;
use crate::heatmap::{
    colour_bar, draw_cells, draw_error, encode_png, Metrics, BAR_W, FONT, GAP, LABEL_PX, TITLE_PX,
};
use crate::{FigureOptions, ImageFormat, Matrix, Result};

/// Silhouette score against k for one row set, with its chosen k.
#[derive(Debug, Clone)]
pub struct SilhouetteCurve {
    pub name: String,
    pub points: Vec<(usize, f64)>,
    pub chosen: usize,
}

/// What is known about each row of a quadrant row (in drawing order): its cluster, when its
/// row set was clustered, and its input features, when given.
#[derive(Debug, Clone, Default)]
pub struct RowStrip {
    pub clusters: Vec<Option<u32>>,
    pub features: Option<Vec<Vec<f64>>>,
}

/// Everything the composite shows.
#[derive(Debug, Clone)]
pub struct ClusterFigure {
    pub title: String,
    pub curves: Vec<SilhouetteCurve>,
    /// even × even, even × odd, odd × even, odd × odd (queries × keys), rows and columns
    /// already in cluster order.
    pub quadrants: [Matrix; 4],
    /// Rows of the even and the odd queries, in the quadrants' row order.
    pub strips: [RowStrip; 2],
    pub colormap: Colormap,
}

/// matplotlib's tab10, for cluster labels.
const TAB10: [u32; 10] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22,
    0x17becf,
];
const CHART_W: i32 = 360;
const CHART_H: i32 = 300;
const QUADRANT_PX: i32 = 220;
const STRIP_W: i32 = 14;

fn rgb(c: u32) -> RGBColor {
    RGBColor((c >> 16) as u8, (c >> 8) as u8, c as u8)
}

/// Pixel positions of every part.
struct Layout {
    m: Metrics,
    chart: (i32, i32),
    top: i32,
    quad_x: i32,
    cell: f64,
    col_w: [i32; 2],
    row_h: [i32; 2],
    strip_x: i32,
    feature_w: i32,
    bar_x: i32,
    width: i32,
    height: i32,
}

impl Layout {
    fn new(fig: &ClusterFigure, m: Metrics) -> Layout {
        let q = &fig.quadrants;
        let longest = [q[0].rows, q[0].cols, q[3].rows, q[3].cols]
            .into_iter()
            .max()
            .unwrap_or(1)
            .max(1);
        let cell = m.px(QUADRANT_PX) as f64 / longest as f64;
        let px = |n: usize| (n as f64 * cell).round() as i32;
        let (col_w, row_h) = (
            [px(q[0].cols), px(q[1].cols)],
            [px(q[0].rows), px(q[2].rows)],
        );
        let (gap, title) = (m.px(GAP), m.font(TITLE_PX) as i32);
        let chart = (m.px(CHART_W), m.px(CHART_H));
        let top = title + m.px(24);
        let quad_x = gap + chart.0 + 3 * gap;
        let strip_x = quad_x + col_w[0] + m.px(8) + col_w[1] + gap;
        let features = fig
            .strips
            .iter()
            .filter_map(|s| s.features.as_ref()?.first().map(Vec::len))
            .max()
            .unwrap_or(0) as i32;
        let feature_w = if features > 0 {
            m.px((features * 8).min(160))
        } else {
            0
        };
        let strip_w = m.px(STRIP_W);
        let bar_x = strip_x
            + strip_w
            + if feature_w > 0 {
                m.px(8) + feature_w
            } else {
                0
            }
            + gap;
        let heading = title + m.px(6);
        let quad_bottom = top + heading + row_h[0] + m.px(8) + heading + row_h[1];
        Layout {
            m,
            chart,
            top,
            quad_x,
            cell,
            col_w,
            row_h,
            strip_x,
            feature_w,
            bar_x,
            width: bar_x + m.px(BAR_W + 70),
            height: quad_bottom.max(top + chart.1) + gap + m.px(10),
        }
    }

    /// Top-left corner of quadrant `i` (0 = even × even, …, 3 = odd × odd).
    fn quadrant_at(&self, i: usize) -> (i32, i32) {
        let m = self.m;
        let title = m.font(TITLE_PX) as i32 + m.px(6);
        let x = self.quad_x
            + if i % 2 == 1 {
                self.col_w[0] + m.px(8)
            } else {
                0
            };
        let y = self.top
            + title
            + if i >= 2 {
                self.row_h[0] + m.px(8) + title
            } else {
                0
            };
        (x, y)
    }
}

/// Renders the composite; `opts.vmin`/`opts.vmax` fix the quadrants' colour scale.
pub fn render_cluster_figure(
    fig: &ClusterFigure,
    opts: &FigureOptions,
    format: ImageFormat,
) -> Result<Vec<u8>> {
    crate::register_font()?;
    let (m, (w, h)) = Metrics::fit(opts, |m| {
        let l = Layout::new(fig, m);
        (l.width, l.height)
    });
    let layout = Layout::new(fig, m);
    match format {
        ImageFormat::Png => {
            let mut rgb = vec![255u8; w as usize * h as usize * 3];
            draw(
                &BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area(),
                fig,
                &layout,
                opts,
            )?;
            encode_png(&rgb, w, h)
        }
        ImageFormat::Svg => {
            let mut svg = String::new();
            draw(
                &SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area(),
                fig,
                &layout,
                opts,
            )?;
            Ok(svg.into_bytes())
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &ClusterFigure,
    layout: &Layout,
    opts: &FigureOptions,
) -> Result<()> {
    root.fill(&WHITE).map_err(draw_error)?;
    let m = layout.m;
    let title = TextStyle::from((FONT, m.font(TITLE_PX + 2)).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(
        fig.title.clone(),
        (layout.width / 2, m.px(8)),
        title,
    ))
    .map_err(draw_error)?;
    silhouette_chart(root, fig, layout)?;
    let (lo, hi) = quadrant_scale(fig, opts);
    let names = ["even × even", "even × odd", "odd × even", "odd × odd"];
    let heading = TextStyle::from((FONT, m.font(TITLE_PX - 1)).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, m) in fig.quadrants.iter().enumerate() {
        let (x, y) = layout.quadrant_at(i);
        let size = (layout.col_w[i % 2], layout.row_h[i / 2]);
        root.draw(&Text::new(
            names[i],
            (x + size.0 / 2, y - 4),
            heading.clone(),
        ))
        .map_err(draw_error)?;
        if m.rows > 0 && m.cols > 0 {
            let pooled = m.max_pool(size.1.max(1) as usize, size.0.max(1) as usize);
            draw_cells(root, &pooled, fig.colormap, (lo, hi), (x, y), size)?;
        }
    }
    for (r, strip) in fig.strips.iter().enumerate() {
        let y = layout.quadrant_at(2 * r).1;
        draw_strips(root, strip, layout, y, r == 0)?;
    }
    let bar_y = layout.quadrant_at(0).1;
    let bar_h = layout.quadrant_at(2).1 + layout.row_h[1] - bar_y;
    colour_bar(
        root,
        m,
        fig.colormap,
        (lo, hi),
        (layout.bar_x, bar_y),
        bar_h,
    )
}

fn quadrant_scale(fig: &ClusterFigure, opts: &FigureOptions) -> (f32, f32) {
    let (lo, hi) = fig
        .quadrants
        .iter()
        .filter(|m| m.rows > 0 && m.cols > 0)
        .map(Matrix::range)
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), (lo, hi)| {
            (a.min(lo), b.max(hi))
        });
    let (lo, hi) = if lo > hi { (0.0, 0.0) } else { (lo, hi) };
    (opts.vmin.unwrap_or(lo), opts.vmax.unwrap_or(hi))
}

/// Cluster labels (tab10 colours, grey when the row set was not clustered) and feature signs
/// (red > 0, blue < 0) of each row.
fn draw_strips<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    strip: &RowStrip,
    layout: &Layout,
    y: i32,
    headings: bool,
) -> Result<()> {
    let m = layout.m;
    let strip_w = m.px(STRIP_W);
    let row_y = |r: usize| y + (r as f64 * layout.cell).round() as i32;
    for (r, c) in strip.clusters.iter().enumerate() {
        let colour = c.map_or(RGBColor(220, 220, 220), |c| rgb(TAB10[c as usize % 10]));
        root.draw(&Rectangle::new(
            [
                (layout.strip_x, row_y(r)),
                (layout.strip_x + strip_w, row_y(r + 1).max(row_y(r) + 1)),
            ],
            colour.filled(),
        ))
        .map_err(draw_error)?;
    }
    let fx = layout.strip_x + strip_w + m.px(8);
    if let Some(features) = &strip.features {
        let n = features.first().map_or(0, Vec::len).max(1);
        let fw = layout.feature_w as f64 / n as f64;
        for (r, row) in features.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let colour = match v.partial_cmp(&0.0) {
                    Some(std::cmp::Ordering::Greater) => rgb(0xd62728),
                    Some(std::cmp::Ordering::Less) => rgb(0x1f77b4),
                    _ => RGBColor(240, 240, 240),
                };
                let (xa, xb) = (
                    fx + (j as f64 * fw).round() as i32,
                    fx + ((j + 1) as f64 * fw).round() as i32,
                );
                root.draw(&Rectangle::new(
                    [
                        (xa, row_y(r)),
                        (xb.max(xa + 1), row_y(r + 1).max(row_y(r) + 1)),
                    ],
                    colour.filled(),
                ))
                .map_err(draw_error)?;
            }
        }
    }
    if headings {
        let style = TextStyle::from((FONT, m.font(LABEL_PX - 1)).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Bottom));
        // Two lines, so that the headings of the narrow strips do not overlap.
        let line = m.font(LABEL_PX) as i32 + 2;
        root.draw(&Text::new(
            "cluster",
            (layout.strip_x, y - 4 - line),
            style.clone(),
        ))
        .map_err(draw_error)?;
        if strip.features.is_some() {
            root.draw(&Text::new("features (sign)", (fx, y - 4), style))
                .map_err(draw_error)?;
        }
    }
    Ok(())
}

/// Silhouette against k, one line per row set, the chosen k ringed.
fn silhouette_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &ClusterFigure,
    layout: &Layout,
) -> Result<()> {
    let m = layout.m;
    let area = root
        .clone()
        .shrink((m.px(GAP), layout.top), (layout.chart.0, layout.chart.1));
    let points = fig.curves.iter().flat_map(|c| c.points.iter());
    let (k_lo, k_hi) = points
        .clone()
        .fold((usize::MAX, 0), |(a, b), &(k, _)| (a.min(k), b.max(k)));
    let (s_lo, s_hi) = points
        .filter(|(_, s)| s.is_finite())
        .fold((0f64, 0f64), |(a, b), &(_, s)| (a.min(s), b.max(s)));
    let (k_lo, k_hi) = if k_lo > k_hi {
        (2, 3)
    } else {
        (k_lo, k_hi.max(k_lo + 1))
    };
    let mut chart = ChartBuilder::on(&area)
        .caption("silhouette score", (FONT, m.font(TITLE_PX)))
        .x_label_area_size(m.px(36) as u32)
        .y_label_area_size(m.px(48) as u32)
        .margin(m.px(8) as u32)
        .build_cartesian_2d(
            k_lo as f64 - 0.5..k_hi as f64 + 0.5,
            s_lo - 0.05..(s_hi + 0.05).max(s_lo + 0.1),
        )
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("k")
        .y_desc("silhouette")
        .x_labels(k_hi - k_lo + 1)
        .x_label_formatter(&|k| format!("{k:.0}"))
        .label_style((FONT, m.font(LABEL_PX)))
        .draw()
        .map_err(draw_error)?;
    for (i, curve) in fig.curves.iter().enumerate() {
        let colour = rgb(TAB10[i % 10]);
        let line: Vec<(f64, f64)> = curve.points.iter().map(|&(k, s)| (k as f64, s)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
            .map_err(draw_error)?
            .label(curve.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                line.iter()
                    .map(|&p| Circle::new(p, m.px(3), colour.filled())),
            )
            .map_err(draw_error)?;
        if let Some(&(k, s)) = curve.points.iter().find(|(k, _)| *k == curve.chosen) {
            chart
                .draw_series([Circle::new((k as f64, s), m.px(8), colour.stroke_width(2))])
                .map_err(draw_error)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, m.font(LABEL_PX)))
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}
