//! `plot`: heatmaps and grids (PNG/SVG), token text heatmaps (HTML/LaTeX).

use std::io::Write;

use figures::{Blocks, Colormap, FigureOptions, ImageFormat, Matrix, Panel};
use frame_sink::AtomicOutput;
use ingest::{RowSource, SlabBuffer};
use polars::prelude::DataFrame;
use topk_frames::{received_frame, Normalize, ReceivedOptions, Reduce};

use super::{channel_list, open_input, Input};
use crate::cli::{ColormapArg, FigureArgs, InputArgs, PlotArgs};
use crate::CliError;

enum Output {
    Image(ImageFormat),
    Html,
    Latex,
}

fn output_kind(a: &PlotArgs) -> Result<Output, CliError> {
    let ext = a
        .output
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match (a.text, ext.as_str()) {
        (true, "html" | "htm") => Ok(Output::Html),
        (true, "tex") => Ok(Output::Latex),
        (true, _) => Err(CliError::usage(format!(
            "-o {}: --text writes .html or .tex",
            a.output
        ))),
        (false, _) => ImageFormat::from_path(&a.output)
            .map(Output::Image)
            .ok_or_else(|| CliError::usage(format!("-o {}: heatmaps are .png or .svg", a.output))),
    }
}

pub fn plot(a: &PlotArgs) -> Result<(), CliError> {
    super::no_words(&a.input, "plot")?;
    let kind = output_kind(a)?;
    if !a.text && !a.grid && (a.layer.is_none() || a.head.is_none()) {
        return Err(CliError::usage(
            "plot needs --layer and --head (or --grid, or --text)",
        ));
    }
    let mut out = AtomicOutput::create(&a.output)?;
    let input_args = InputArgs {
        layers: a.layer.map(|l| l.to_string()).or(a.input.layers.clone()),
        heads: a.head.map(|h| h.to_string()).or(a.input.heads.clone()),
        // One batch row per figure: the first selected.
        batch: Some(first_of(a.input.batch.as_deref())),
        ..a.input.clone()
    };
    let input = open_input(&input_args)?;
    let bytes = match (&input, kind) {
        (Input::Dense(src), Output::Image(f)) => heatmap(a, src, f)?,
        (Input::Longformer(src), Output::Image(f)) => heatmap(a, src, f)?,
        (Input::Dense(src), text) => text_heatmap(src, text)?,
        (Input::Longformer(src), text) => text_heatmap(src, text)?,
    };
    out.write_all(&bytes)
        .map_err(|e| CliError::from(out.error(e)))?;
    out.commit()?;
    Ok(())
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
pub(crate) fn figure_options(f: &FigureArgs) -> Result<FigureOptions, CliError> {
    let size = f.size.as_deref().map(parse_size).transpose()?;
    if let (Some(lo), Some(hi)) = (f.vmin, f.vmax) {
        if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
            return Err(CliError::usage(format!(
                "--vmin {lo} must be below --vmax {hi}"
            )));
        }
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
fn parse_size(spec: &str) -> Result<(u32, u32), CliError> {
    let bad = || {
        CliError::usage(format!(
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

pub(crate) fn colormap(c: ColormapArg) -> Colormap {
    match c {
        ColormapArg::Viridis => Colormap::Viridis,
        ColormapArg::NipySpectral => Colormap::NipySpectral,
        ColormapArg::Purples => Colormap::Purples,
    }
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

fn heatmap(a: &PlotArgs, src: &impl RowSource, format: ImageFormat) -> Result<Vec<u8>, CliError> {
    let slabs = src.slabs();
    let mut buf = SlabBuffer::default();
    let mut panels = Vec::with_capacity(slabs.len());
    for &id in &slabs {
        let (queries, keys) = (src.valid_queries(id.batch), src.valid_keys(id.batch));
        let title = if a.grid {
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
            colormap: colormap(a.figure.colormap.unwrap_or(ColormapArg::Viridis)),
            symmetric: false,
        });
    }
    let blocks = match (&a.channels, a.block) {
        (Some(names), Some(size)) => {
            let names = channel_list(names);
            let keys = src.valid_keys(slabs[0].batch).len();
            if names.len() * size != keys {
                return Err(ingest::IngestError::invalid(
                    a.input.attn(),
                    format!("{} channels × block {size} ≠ {keys} positions", names.len()),
                )
                .into());
            }
            Some(Blocks { names, size })
        }
        _ => None,
    };
    let mut heads: Vec<u16> = slabs.iter().map(|s| s.head).collect();
    heads.sort_unstable();
    heads.dedup();
    let opts = FigureOptions {
        columns: heads.len(),
        shared_scale: a.shared_scale,
        blocks,
        ..figure_options(&a.figure)?
    };
    Ok(figures::render(&panels, &opts, format)?)
}

/// Tokens of the first selected batch row coloured by the attention they receive: summed
/// over every selected layer and head, as `received --normalize minmax --reduce all`.
fn text_heatmap(src: &impl RowSource, kind: Output) -> Result<Vec<u8>, CliError> {
    let frame: DataFrame = received_frame(
        src,
        None,
        ReceivedOptions {
            normalize: Normalize::MinMax,
            reduce: Reduce::All,
            k: None,
        },
    )?;
    let frame = frame.sort(["position"], Default::default())?;
    let positions: Vec<u32> = frame
        .column("position")?
        .u32()?
        .into_no_null_iter()
        .collect();
    let weights: Vec<f32> = frame
        .column("score")?
        .f32()?
        .iter()
        .map(|v| v.unwrap_or(f32::NAN))
        .collect();
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
