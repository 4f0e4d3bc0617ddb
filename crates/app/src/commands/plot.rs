//! `plot`: heatmaps and grids (PNG/SVG), token text heatmaps (HTML/LaTeX).

use figures::{Blocks, Colormap, FigureOptions, ImageFormat, Matrix, Panel};
use ingest::{RowSource, SlabBuffer};

use crate::error::{Error, Result};
use crate::input::{no_words, open_source};
use crate::options::{FigureStyle, InputOptions, PlotOptions};
use crate::output::commit_bytes;
use crate::progress::Progress;

enum Output {
    Image(ImageFormat),
    Html,
    Latex,
}

fn output_kind(o: &PlotOptions) -> Result<Output> {
    let ext = o
        .output
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match (o.text, ext.as_str()) {
        (true, "html" | "htm") => Ok(Output::Html),
        (true, "tex") => Ok(Output::Latex),
        (true, _) => Err(Error::usage(format!(
            "-o {}: --text writes .html or .tex",
            o.output
        ))),
        (false, _) => ImageFormat::from_path(&o.output)
            .map(Output::Image)
            .ok_or_else(|| Error::usage(format!("-o {}: heatmaps are .png or .svg", o.output))),
    }
}

/// Draws one head (`layer`, `head`), a layer × head grid, or a token text heatmap of
/// `input`'s first selected batch row, and writes it to `options.output` atomically.
///
/// # Errors
/// `Usage` for a missing head or a wrong extension; `BadInput`, `Io` as
/// [`topk`](crate::topk).
pub fn plot(input: &InputOptions, options: &PlotOptions, progress: &dyn Progress) -> Result<()> {
    no_words(input, "plot")?;
    let kind = output_kind(options)?;
    if !options.text && !options.grid && (options.layer.is_none() || options.head.is_none()) {
        return Err(Error::usage(
            "plot needs --layer and --head (or --grid, or --text)",
        ));
    }
    let out = frame_sink::AtomicOutput::create(&options.output)?;
    let one_batch = InputOptions {
        layers: options
            .layer
            .map(|l| l.to_string())
            .or(input.layers.clone()),
        heads: options.head.map(|h| h.to_string()).or(input.heads.clone()),
        // One batch row per figure: the first selected.
        batch: Some(first_of(input.batch.as_deref())),
        ..input.clone()
    };
    let source = open_source(&one_batch, progress)?;
    let bytes = match kind {
        Output::Image(f) => heatmap(options, input, &source, f)?,
        text => text_heatmap(&source, text)?,
    };
    commit_bytes(out, &bytes)
}

/// The first index of a selection such as `2`, `2-4` or `1,3` (0 without one).
fn first_of(selection: Option<&str>) -> String {
    selection
        .and_then(|s| s.split([',', '-']).next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".into())
}

/// The figure options every picture takes: scale ends, cell values, resolution, size.
pub(crate) fn figure_options(f: &FigureStyle) -> Result<FigureOptions> {
    let size = f.size.as_deref().map(parse_size).transpose()?;
    if let (Some(lo), Some(hi)) = (f.vmin, f.vmax) {
        if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
            return Err(Error::usage(format!(
                "--vmin {lo} must be below --vmax {hi}"
            )));
        }
    }
    if !(25..=600).contains(&f.dpi) {
        return Err(Error::usage(format!(
            "--dpi {} is not within 25 and 600",
            f.dpi
        )));
    }
    Ok(FigureOptions {
        annotate: f.annotate,
        vmin: f.vmin,
        vmax: f.vmax,
        dpi: f.dpi,
        size,
        ..Default::default()
    })
}

/// `WxH` in pixels.
fn parse_size(spec: &str) -> Result<(u32, u32)> {
    let bad = || {
        Error::usage(format!(
            "--size {spec}: expected WIDTHxHEIGHT in pixels, e.g. 1600x900"
        ))
    };
    let (w, h) = spec.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(16..=20_000).contains(&w) || !(16..=20_000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Position labels: the tokens when given, else the position numbers.
fn labels(src: &impl RowSource, batch: u32, positions: &[u32]) -> Vec<String> {
    match src.tokens() {
        Some(t) => positions
            .iter()
            .map(|&p| t.row(batch as usize)[p as usize].clone())
            .collect(),
        None => positions.iter().map(u32::to_string).collect(),
    }
}

fn heatmap(
    o: &PlotOptions,
    input: &InputOptions,
    src: &impl RowSource,
    format: ImageFormat,
) -> Result<Vec<u8>> {
    let slabs = src.slabs();
    let mut buf = SlabBuffer::default();
    let mut panels = Vec::with_capacity(slabs.len());
    for &id in &slabs {
        let (queries, keys) = (src.valid_queries(id.batch), src.valid_keys(id.batch));
        let title = if o.grid {
            format!("layer {}, head {}", id.layer, id.head)
        } else {
            format!("layer {}, head {}, batch {}", id.layer, id.head, id.batch)
        };
        panels.push(Panel {
            title,
            matrix: Matrix {
                rows: queries.len(),
                cols: keys.len(),
                values: src.valid_matrix(id, &mut buf)?,
            },
            row_labels: labels(src, id.batch, queries),
            col_labels: labels(src, id.batch, keys),
            colormap: o.figure.colormap.unwrap_or(Colormap::Viridis),
            symmetric: false,
        });
    }
    let blocks = match (&o.channels, o.block) {
        (Some(names), Some(size)) => {
            let keys = src.valid_keys(slabs[0].batch).len();
            if names.len() * size != keys {
                return Err(ingest::IngestError::invalid(
                    input.attn(),
                    format!("{} channels × block {size} ≠ {keys} positions", names.len()),
                )
                .into());
            }
            Some(Blocks {
                names: names.clone(),
                size,
            })
        }
        _ => None,
    };
    let mut heads: Vec<u16> = slabs.iter().map(|s| s.head).collect();
    heads.sort_unstable();
    heads.dedup();
    let opts = FigureOptions {
        columns: heads.len(),
        shared_scale: o.shared_scale,
        blocks,
        ..figure_options(&o.figure)?
    };
    Ok(figures::render(&panels, &opts, format)?)
}

/// Tokens of the first selected batch row coloured by the attention they receive.
fn text_heatmap(src: &impl RowSource, kind: Output) -> Result<Vec<u8>> {
    let (positions, weights) = topk_frames::received_weights(src)?;
    let batch = src.slabs()[0].batch;
    let pieces = ingest::word_pieces(&labels(src, batch, &positions));
    let doc = match kind {
        Output::Latex => figures::text_heatmap_latex(&pieces, &weights),
        _ => figures::text_heatmap_html(
            &pieces,
            &weights,
            &format!("Attention received, batch row {batch}"),
        ),
    };
    Ok(doc.into_bytes())
}
