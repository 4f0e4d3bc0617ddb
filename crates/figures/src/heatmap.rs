//! Heatmap panels laid out in a grid, drawn with plotters on a PNG or SVG canvas.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::colormap::Colormap;
use crate::{FigureError, Result};

/// A row-major `rows × cols` matrix of values.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

impl Matrix {
    pub(crate) fn at(&self, r: usize, c: usize) -> f32 {
        self.values[r * self.cols + c]
    }

    /// The finite minimum and maximum (0, 0 when there is none).
    pub(crate) fn range(&self) -> (f32, f32) {
        let (lo, hi) = self
            .values
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if lo > hi {
            (0.0, 0.0)
        } else {
            (lo, hi)
        }
    }

    /// Max-pooled to at most `max_rows × max_cols` bins: each bin shows the largest value of
    /// the cells it covers, so a sharp peak stays visible however far the matrix shrinks.
    pub fn max_pool(&self, max_rows: usize, max_cols: usize) -> Matrix {
        let (br, bc) = (
            self.rows.min(max_rows.max(1)),
            self.cols.min(max_cols.max(1)),
        );
        if (br, bc) == (self.rows, self.cols) {
            return self.clone();
        }
        let span = |i: usize, bins: usize, n: usize| (i * n / bins)..((i + 1) * n / bins);
        let mut values = Vec::with_capacity(br * bc);
        for r in 0..br {
            for c in 0..bc {
                let m = span(r, br, self.rows)
                    .flat_map(|rr| span(c, bc, self.cols).map(move |cc| (rr, cc)))
                    .map(|(rr, cc)| self.at(rr, cc))
                    .filter(|v| !v.is_nan())
                    .fold(f32::NAN, |m, v| if m.is_nan() { v } else { m.max(v) });
                values.push(m);
            }
        }
        Matrix {
            rows: br,
            cols: bc,
            values,
        }
    }
}

/// One heatmap: a matrix, its title, its axis labels (empty = none) and its colours.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub matrix: Matrix,
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    pub colormap: Colormap,
    /// Centre the scale on 0 (± the panel's largest magnitude), for differences; such a
    /// panel ignores the shared scale and `vmin`/`vmax`.
    pub symmetric: bool,
}

/// Channel blocks: `names[i]` covers positions `i·size … (i+1)·size − 1` on both axes.
#[derive(Debug, Clone)]
pub struct Blocks {
    pub names: Vec<String>,
    pub size: usize,
}

/// How panels are laid out and decorated.
#[derive(Debug, Clone, Default)]
pub struct FigureOptions {
    /// Panels per figure row (at least 1).
    pub columns: usize,
    /// One colour scale (the overall minimum and maximum) for every non-symmetric panel.
    pub shared_scale: bool,
    /// Fixed bottom of the colour scale (default: the minimum).
    pub vmin: Option<f32>,
    /// Fixed top of the colour scale (default: the maximum).
    pub vmax: Option<f32>,
    /// Write each cell's value in it (when cells are large enough to hold the text).
    pub annotate: bool,
    /// Divider lines and block names instead of per-position labels.
    pub blocks: Option<Blocks>,
    /// Edge of one panel's heat area in pixels at 100 dpi (default 480 for one panel, 240 in
    /// a grid).
    pub panel_px: Option<u32>,
    /// Pixel sizes and fonts scale with `dpi / 100` (0 counts as 100).
    pub dpi: u32,
    /// The image size in pixels: the layout is scaled to fit in it (overrides `dpi`).
    pub size: Option<(u32, u32)>,
}

/// Pixel sizes at a resolution: base sizes are for 100 dpi.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metrics {
    scale: f64,
}

impl Metrics {
    pub(crate) fn px(self, v: i32) -> i32 {
        (v as f64 * self.scale).round() as i32
    }

    pub(crate) fn font(self, v: u32) -> u32 {
        ((v as f64 * self.scale).round() as u32).max(4)
    }

    /// The metrics of `opts`: `dpi / 100`, or with `size` the scale at which the layout
    /// (`natural(metrics)` = its width and height) fits, and the canvas size.
    pub(crate) fn fit(
        opts: &FigureOptions,
        natural: impl Fn(Metrics) -> (i32, i32),
    ) -> (Metrics, (u32, u32)) {
        let base = Metrics {
            scale: if opts.dpi == 0 {
                1.0
            } else {
                opts.dpi as f64 / 100.0
            },
        };
        match opts.size {
            None => {
                let (w, h) = natural(base);
                (base, (w.max(1) as u32, h.max(1) as u32))
            }
            Some((w, h)) => {
                let (nw, nh) = natural(Metrics { scale: 1.0 });
                let scale = (w as f64 / nw.max(1) as f64).min(h as f64 / nh.max(1) as f64);
                let mut m = Metrics { scale };
                // Rounding can overshoot by a pixel or two: shrink until it fits.
                while {
                    let (fw, fh) = natural(m);
                    (fw > w as i32 || fh > h as i32) && m.scale > 0.05
                } {
                    m.scale *= 0.98;
                }
                (m, (w.max(1), h.max(1)))
            }
        }
    }
}

/// Image encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

impl ImageFormat {
    /// From a file name's extension (`.png`, `.svg`).
    pub fn from_path(path: &str) -> Option<ImageFormat> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(ImageFormat::Png),
            "svg" => Some(ImageFormat::Svg),
            _ => None,
        }
    }
}

/// SVG files get at most this many cells per axis (a rectangle per cell).
const SVG_MAX_BINS: usize = 192;
pub(crate) const FONT: &str = "sans-serif";
pub(crate) const LABEL_PX: u32 = 11;
pub(crate) const TITLE_PX: u32 = 14;
pub(crate) const GAP: i32 = 16;
pub(crate) const BAR_W: i32 = 12;
/// Cell edge that holds a written value such as `0.35`.
const ANNOTATED_CELL: i32 = 30;

/// Panel geometry in pixels, the same for every slot of the grid.
struct Slot {
    m: Metrics,
    heat_w: i32,
    heat_h: i32,
    left: i32,
    top: i32,
    bottom: i32,
    right: i32,
}

impl Slot {
    fn width(&self) -> i32 {
        self.left + self.heat_w + self.right
    }
    fn height(&self) -> i32 {
        self.top + self.heat_h + self.bottom
    }
}

/// Renders `panels` (at least one) as one image.
pub fn render(panels: &[Panel], opts: &FigureOptions, format: ImageFormat) -> Result<Vec<u8>> {
    crate::register_font()?;
    if panels.is_empty() {
        return Err(FigureError::Empty);
    }
    let columns = opts.columns.clamp(1, panels.len());
    let target = opts
        .panel_px
        .unwrap_or(if panels.len() == 1 { 480 } else { 240 }) as i32;
    let max_bins = match format {
        ImageFormat::Png => usize::MAX,
        ImageFormat::Svg => SVG_MAX_BINS,
    };
    let scales = scales(panels, opts);
    let min_cell = if opts.annotate { ANNOTATED_CELL } else { 1 };
    let rows = panels.len().div_ceil(columns);
    let geometry =
        |m: Metrics| slot_geometry(m, panels, m.px(target), min_cell, opts.blocks.as_ref());
    let (m, (w, h)) = Metrics::fit(opts, |m| {
        let slot = geometry(m);
        (
            slot.width() * columns as i32 + m.px(GAP),
            slot.height() * rows as i32 + m.px(GAP),
        )
    });
    let slot = geometry(m);
    let figure = Figure {
        panels,
        max_bins,
        scales: &scales,
        slot: &slot,
        columns,
        opts,
    };
    match format {
        ImageFormat::Png => {
            let mut rgb = vec![255u8; w as usize * h as usize * 3];
            figure.draw(BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area())?;
            encode_png(&rgb, w, h)
        }
        ImageFormat::Svg => {
            let mut svg = String::new();
            figure.draw(SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area())?;
            Ok(svg.into_bytes())
        }
    }
}

/// Everything laid out, ready to draw on any backend.
struct Figure<'a> {
    panels: &'a [Panel],
    /// Cells per axis at most (SVG draws a rectangle per cell); PNG pools to the pixels.
    max_bins: usize,
    scales: &'a [(f32, f32)],
    slot: &'a Slot,
    columns: usize,
    opts: &'a FigureOptions,
}

impl Figure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(draw_error)?;
        let slot = self.slot;
        for (i, panel) in self.panels.iter().enumerate() {
            let bins = |px: i32| (px.max(1) as usize).min(self.max_bins);
            let m = &panel.matrix.max_pool(bins(slot.heat_h), bins(slot.heat_w));
            let x0 = slot.m.px(GAP) / 2 + (i % self.columns) as i32 * slot.width();
            let y0 = slot.m.px(GAP) / 2 + (i / self.columns) as i32 * slot.height();
            draw_panel(&root, panel, m, self.scales[i], slot, (x0, y0), self.opts)?;
        }
        root.present().map_err(draw_error)
    }
}

pub(crate) fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

pub(crate) fn draw_error<E: std::error::Error + Send + Sync>(
    e: DrawingAreaErrorKind<E>,
) -> FigureError {
    FigureError::Draw(e.to_string())
}

/// The colour scale of each panel: its own or the shared range, ends fixed by `vmin`/`vmax`;
/// symmetric panels centred on 0.
fn scales(panels: &[Panel], opts: &FigureOptions) -> Vec<(f32, f32)> {
    let overall = panels
        .iter()
        .filter(|p| !p.symmetric)
        .map(|p| p.matrix.range())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), (lo, hi)| {
            (a.min(lo), b.max(hi))
        });
    panels
        .iter()
        .map(|p| {
            let (lo, hi) = p.matrix.range();
            if p.symmetric {
                let m = lo.abs().max(hi.abs());
                return (-m, m);
            }
            let (lo, hi) = if opts.shared_scale { overall } else { (lo, hi) };
            (opts.vmin.unwrap_or(lo), opts.vmax.unwrap_or(hi))
        })
        .collect()
}

/// Heat area as large as `target` allows with square cells, margins for the labels.
fn slot_geometry(
    metrics: Metrics,
    panels: &[Panel],
    target: i32,
    min_cell: i32,
    blocks: Option<&Blocks>,
) -> Slot {
    let (mut heat_w, mut heat_h) = (1, 1);
    for m in panels.iter().map(|p| &p.matrix) {
        let longest = m.rows.max(m.cols).max(1) as i32;
        // Annotated cells grow to hold their text while the panel stays within 2× its size.
        let cell = (target as f64 / longest as f64)
            .max(metrics.px(min_cell).min(2 * target / longest) as f64)
            .min(metrics.px(48) as f64);
        // A matrix larger than the target is max-pooled to it: the area never exceeds it.
        let extent = |n: usize| ((cell * n as f64).round() as i32).clamp(1, target.max(1));
        heat_w = heat_w.max(extent(m.cols));
        heat_h = heat_h.max(extent(m.rows));
    }
    let label_chars =
        |labels: &[String]| labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let (row_chars, col_chars) = match blocks {
        Some(b) => (label_chars(&b.names), label_chars(&b.names)),
        None => (
            panels
                .iter()
                .map(|p| label_chars(&p.row_labels))
                .max()
                .unwrap_or(0),
            panels
                .iter()
                .map(|p| label_chars(&p.col_labels))
                .max()
                .unwrap_or(0),
        ),
    };
    let margin = |chars: usize| metrics.px((chars.min(16) as i32 * 7 + 6).max(8));
    Slot {
        m: metrics,
        heat_w,
        heat_h,
        left: margin(row_chars),
        top: metrics.px(TITLE_PX as i32 + 10),
        bottom: margin(col_chars),
        right: metrics.px(GAP + BAR_W + 56),
    }
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
    m: &Matrix,
    (lo, hi): (f32, f32),
    slot: &Slot,
    (x0, y0): (i32, i32),
    opts: &FigureOptions,
) -> Result<()> {
    let (hx, hy) = (x0 + slot.left, y0 + slot.top);
    let cell_w = slot.heat_w as f64 / m.cols as f64;
    let cell_h = slot.heat_h as f64 / m.rows as f64;
    draw_cells(
        root,
        m,
        panel.colormap,
        (lo, hi),
        (hx, hy),
        (slot.heat_w, slot.heat_h),
    )?;
    let downsampled = m.rows != panel.matrix.rows || m.cols != panel.matrix.cols;
    if opts.annotate && !downsampled && cell_w >= 24.0 && cell_h >= 12.0 {
        annotate_cells(root, panel, m, (lo, hi), (hx, hy), (cell_w, cell_h))?;
    }
    let m = slot.m;
    let title = TextStyle::from((FONT, m.font(TITLE_PX)).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    root.draw(&Text::new(
        panel.title.clone(),
        (hx + slot.heat_w / 2, hy - 6),
        title,
    ))
    .map_err(draw_error)?;
    let area = HeatArea {
        x: hx,
        y: hy,
        w: slot.heat_w,
        h: slot.heat_h,
        rows: panel.matrix.rows,
        cols: panel.matrix.cols,
        m,
    };
    match &opts.blocks {
        Some(b) => {
            let [r, g, bl] = panel.colormap.divider();
            draw_blocks(root, b, RGBColor(r, g, bl).stroke_width(1), &area)?
        }
        None => {
            let y_labels = thinned(&panel.row_labels, slot.heat_h / m.px(12).max(1));
            let x_labels = thinned(&panel.col_labels, slot.heat_w / m.px(12).max(1));
            axis_labels(root, &y_labels, &x_labels, &area)?;
        }
    }
    colour_bar(
        root,
        m,
        panel.colormap,
        (lo, hi),
        (hx + slot.heat_w + m.px(GAP), hy),
        slot.heat_h,
    )
}

/// The cells of `m` filling the `w × h` pixels at `(x, y)`, coloured on the scale `lo..hi`.
pub(crate) fn draw_cells<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &Matrix,
    colormap: Colormap,
    (lo, hi): (f32, f32),
    (x, y): (i32, i32),
    (w, h): (i32, i32),
) -> Result<()> {
    let (cell_w, cell_h) = (w as f64 / m.cols as f64, h as f64 / m.rows as f64);
    let px = |v: f64| v.round() as i32;
    for r in 0..m.rows {
        for c in 0..m.cols {
            let [red, g, b] = colormap.rgb(scaled(m.at(r, c), lo, hi));
            let (xa, ya) = (x + px(c as f64 * cell_w), y + px(r as f64 * cell_h));
            let (xb, yb) = (
                x + px((c + 1) as f64 * cell_w),
                y + px((r + 1) as f64 * cell_h),
            );
            root.draw(&Rectangle::new(
                [(xa, ya), (xb, yb)],
                RGBColor(red, g, b).filled(),
            ))
            .map_err(draw_error)?;
        }
    }
    Ok(())
}

/// Where a panel's heat area sits, and the matrix (before pooling) it shows.
struct HeatArea {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
    rows: usize,
    cols: usize,
    m: Metrics,
}

impl HeatArea {
    /// Pixel x of a (fractional) column position.
    fn to_x(&self, pos: f64) -> i32 {
        self.x + (pos * self.w as f64 / self.cols as f64).round() as i32
    }

    /// Pixel y of a (fractional) row position.
    fn to_y(&self, pos: f64) -> i32 {
        self.y + (pos * self.h as f64 / self.rows as f64).round() as i32
    }
}

fn annotate_cells<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
    m: &Matrix,
    (lo, hi): (f32, f32),
    (hx, hy): (i32, i32),
    (cell_w, cell_h): (f64, f64),
) -> Result<()> {
    let size = (cell_w * 0.3).clamp(8.0, 13.0) as u32;
    for r in 0..m.rows {
        for c in 0..m.cols {
            let v = m.at(r, c);
            let [red, g, b] = panel.colormap.rgb(scaled(v, lo, hi));
            let light = 0.299 * red as f32 + 0.587 * g as f32 + 0.114 * b as f32 > 140.0;
            let style = TextStyle::from((FONT, size).into_font())
                .color(if light { &BLACK } else { &WHITE })
                .pos(Pos::new(HPos::Center, VPos::Center));
            let at = (
                hx + ((c as f64 + 0.5) * cell_w).round() as i32,
                hy + ((r as f64 + 0.5) * cell_h).round() as i32,
            );
            root.draw(&Text::new(format!("{v:.2}"), at, style))
                .map_err(draw_error)?;
        }
    }
    Ok(())
}

/// `v` on the scale `lo..hi` as 0..1; a scale of zero width puts everything in the middle.
pub(crate) fn scaled(v: f32, lo: f32, hi: f32) -> f32 {
    if v.is_nan() {
        f32::NAN
    } else if hi > lo {
        (v - lo) / (hi - lo)
    } else {
        0.5
    }
}

/// Every n-th label (position, text), so that at most `room` labels are shown.
fn thinned(labels: &[String], room: i32) -> Vec<(usize, String)> {
    if labels.is_empty() {
        return Vec::new();
    }
    let room = room.max(1) as usize;
    let step = labels.len().div_ceil(room).max(1);
    labels
        .iter()
        .enumerate()
        .step_by(step)
        .map(|(i, l)| (i, shorten(l)))
        .collect()
}

fn shorten(label: &str) -> String {
    if label.chars().count() <= 16 {
        label.to_string()
    } else {
        label.chars().take(15).chain(['…']).collect()
    }
}

fn axis_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    y_labels: &[(usize, String)],
    x_labels: &[(usize, String)],
    area: &HeatArea,
) -> Result<()> {
    let font = (FONT, area.m.font(LABEL_PX)).into_font();
    let left = TextStyle::from(font.clone())
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, l) in y_labels {
        root.draw(&Text::new(
            l.clone(),
            (area.x - 4, area.to_y(*i as f64 + 0.5)),
            left.clone(),
        ))
        .map_err(draw_error)?;
    }
    let below = TextStyle::from(font.transform(FontTransform::Rotate270))
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, l) in x_labels {
        let at = (area.to_x(*i as f64 + 0.5), area.y + area.h + 4);
        root.draw(&Text::new(l.clone(), at, below.clone()))
            .map_err(draw_error)?;
    }
    Ok(())
}

fn draw_blocks<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    blocks: &Blocks,
    line: ShapeStyle,
    area: &HeatArea,
) -> Result<()> {
    let (rows, cols) = (area.rows, area.cols);
    for i in 1..blocks.names.len() {
        let p = (i * blocks.size) as f64;
        if i * blocks.size < cols {
            root.draw(&PathElement::new(
                vec![(area.to_x(p), area.y), (area.to_x(p), area.y + area.h)],
                line,
            ))
            .map_err(draw_error)?;
        }
        if i * blocks.size < rows {
            root.draw(&PathElement::new(
                vec![(area.x, area.to_y(p)), (area.x + area.w, area.to_y(p))],
                line,
            ))
            .map_err(draw_error)?;
        }
    }
    let names: Vec<String> = blocks.names.iter().map(|n| shorten(n)).collect();
    let centre = |i: usize| (i as f64 + 0.5) * blocks.size as f64;
    let y: Vec<(f64, String)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (centre(i), n.clone()))
        .collect();
    let font = (FONT, area.m.font(LABEL_PX)).into_font();
    let left = TextStyle::from(font.clone())
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    let below = TextStyle::from(font.transform(FontTransform::Rotate270))
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (p, n) in &y {
        if *p < rows as f64 {
            root.draw(&Text::new(
                n.clone(),
                (area.x - 4, area.to_y(*p)),
                left.clone(),
            ))
            .map_err(draw_error)?;
        }
        if *p < cols as f64 {
            root.draw(&Text::new(
                n.clone(),
                (area.to_x(*p), area.y + area.h + 4),
                below.clone(),
            ))
            .map_err(draw_error)?;
        }
    }
    Ok(())
}

/// A vertical gradient from `lo` (bottom) to `hi` (top) with its end and middle values.
pub(crate) fn colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: Metrics,
    colormap: Colormap,
    (lo, hi): (f32, f32),
    (x, y): (i32, i32),
    height: i32,
) -> Result<()> {
    for i in 0..height {
        let t = 1.0 - i as f32 / (height - 1).max(1) as f32;
        let [r, g, b] = colormap.rgb(t);
        root.draw(&Rectangle::new(
            [(x, y + i), (x + m.px(BAR_W), y + i + 1)],
            RGBColor(r, g, b).filled(),
        ))
        .map_err(draw_error)?;
    }
    root.draw(&Rectangle::new(
        [(x, y), (x + m.px(BAR_W), y + height)],
        BLACK.stroke_width(1),
    ))
    .map_err(draw_error)?;
    let style = TextStyle::from((FONT, m.font(LABEL_PX - 1)).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (v, at) in [(hi, y), ((lo + hi) / 2.0, y + height / 2), (lo, y + height)] {
        root.draw(&Text::new(
            tick(v),
            (x + m.px(BAR_W) + 4, at),
            style.clone(),
        ))
        .map_err(draw_error)?;
    }
    Ok(())
}

/// A short number for the colour bar.
fn tick(v: f32) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            values: (0..rows * cols).map(|i| i as f32).collect(),
        }
    }

    #[test]
    fn max_pool_keeps_the_largest_value_of_each_bin() {
        let m = matrix(4, 4).max_pool(2, 2);
        // Bins cover rows/cols {0,1} and {2,3}: maxima at (1,1)=5, (1,3)=7, (3,1)=13, (3,3)=15.
        assert_eq!(m.values, vec![5.0, 7.0, 13.0, 15.0]);
        let uneven = matrix(3, 5).max_pool(2, 2);
        // Row bins {0}, {1,2}; column bins {0,1}, {2,3,4}.
        assert_eq!(uneven.values, vec![1.0, 4.0, 11.0, 14.0]);
    }

    #[test]
    fn labels_are_thinned_to_the_room_there_is() {
        let labels: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let kept = thinned(&labels, 20);
        assert_eq!(kept.len(), 20);
        assert_eq!(kept[1].0, 5);
    }

    #[test]
    fn shared_and_symmetric_scales() {
        let p = |values: Vec<f32>, symmetric| Panel {
            title: String::new(),
            matrix: Matrix {
                rows: 1,
                cols: 2,
                values,
            },
            row_labels: vec![],
            col_labels: vec![],
            colormap: Colormap::Viridis,
            symmetric,
        };
        let panels = [
            p(vec![0.0, 1.0], false),
            p(vec![2.0, 5.0], false),
            p(vec![-3.0, 2.0], true),
        ];
        let mut opts = FigureOptions::default();
        assert_eq!(
            scales(&panels, &opts),
            vec![(0.0, 1.0), (2.0, 5.0), (-3.0, 3.0)]
        );
        opts.shared_scale = true;
        assert_eq!(
            scales(&panels, &opts),
            vec![(0.0, 5.0), (0.0, 5.0), (-3.0, 3.0)]
        );
        opts.vmax = Some(0.05);
        assert_eq!(scales(&panels, &opts)[1], (0.0, 0.05));
    }
}
