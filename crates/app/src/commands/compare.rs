//! `compare`: run against run, run B's channel blocks permuted into A's order.

use ingest::{AttentionSource, SlabId, SourceOptions};
use serde_json::json;

use crate::commands::plot::figure_options;
use crate::error::{Error, Result};
use crate::input::{no_words, source_options, Source};
use crate::metadata::{metadata, selection_options};
use crate::options::{Colormap, CompareOptions, InputOptions, OutputOptions, TensorInput};
use crate::output::{open_extra_sink, write_extra, write_file, Frames, MainOutput};

/// The per-head comparison of run A (`input`) and run B (`options.attn_b`): cosine,
/// Pearson, Spearman and the mean absolute difference of every (batch, layer, head) after
/// B's channel blocks are put in A's order. With `blocks`, the channel × channel block means
/// of both runs; with `plot`, A, B and A − B of one head.
///
/// # Errors
/// `Usage` for words or a Longformer input; `BadInput` for runs of different shapes,
/// non-square attention, or channel lists that do not fit; `Io` as [`topk`](crate::topk).
pub fn compare(
    input: &InputOptions,
    options: &CompareOptions,
    output: &OutputOptions,
) -> Result<Frames> {
    no_words(input, "compare")?;
    if input.longformer() || input.generation_steps {
        return Err(Error::usage(
            "compare takes dense attention runs (no --global-attn, --sliding-window or --generation-steps)",
        ));
    }
    let out = MainOutput::open(output)?;
    let blocks_sink = open_extra_sink(&options.blocks, output)?;
    let run_a = AttentionSource::open(&source_options(input))?;
    let run_b = AttentionSource::open(&SourceOptions {
        attn: options.attn_b.name().to_path_buf(),
        attn_array: match &options.attn_b {
            TensorInput::Array(a) => Some(a.clone()),
            TensorInput::File(_) => None,
        },
        ..source_options(input)
    })?;
    let path_b = options.attn_b.name();
    let seq = similarity::check_runs(&run_a, &run_b, input.attn(), path_b)?;
    let channels_a = &options.channels_a;
    let channels_b = options.channels_b.as_ref().unwrap_or(channels_a);
    let blocks = similarity::ChannelBlocks::new(
        channels_a,
        channels_b,
        options.block,
        seq,
        input.attn(),
        path_b,
    )?;
    let result = similarity::compare_runs(&run_a, &run_b, &blocks)?;
    if let Some(path) = &options.plot {
        let id = plotted_head(options, &run_a, result.least_similar)?;
        let (ma, mb) = similarity::head_matrices(&run_a, &run_b, id, &blocks)?;
        let bytes = compare_figure(options, path, ma, mb, seq, id)?;
        write_file(path, &bytes)?;
    }
    let mut meta_options = selection_options(input);
    meta_options["attn_b"] = json!(path_b.display().to_string());
    meta_options["channels_a"] = json!(channels_a);
    meta_options["channels_b"] = json!(channels_b);
    meta_options["block"] = json!(options.block);
    let meta = metadata("compare", input, &Source::Dense(run_a), meta_options);
    if let Some(s) = blocks_sink {
        write_extra(s, &meta, &[result.blocks])?;
    }
    out.write_all(&meta, &[result.heads])
}

/// The head to draw: the one asked for, else the least similar.
fn plotted_head(
    options: &CompareOptions,
    run_a: &AttentionSource,
    least_similar: Option<SlabId>,
) -> Result<SlabId> {
    use ingest::RowSource;
    match (options.layer, options.head) {
        (Some(layer), Some(head)) => {
            let slabs = run_a.slabs();
            let batch = slabs.first().map_or(0, |s| s.batch);
            let id = SlabId { batch, layer, head };
            if !slabs.contains(&id) {
                return Err(Error::usage(format!(
                    "--layer {layer} --head {head} is not among the compared heads"
                )));
            }
            Ok(id)
        }
        _ => least_similar.ok_or_else(|| Error::usage("no head to plot")),
    }
}

/// A, B in A's channel order (one colour scale, top `vmax`), and A − B (diverging).
fn compare_figure(
    options: &CompareOptions,
    path: &str,
    ma: Vec<f32>,
    mb: Vec<f32>,
    n: usize,
    id: SlabId,
) -> Result<Vec<u8>> {
    let format = figures::ImageFormat::from_path(path)
        .ok_or_else(|| Error::usage(format!("--plot {path}: expected .png or .svg")))?;
    let diff = similarity::difference(&ma, &mb);
    let panel = |title: &str, values: Vec<f32>, colormap, symmetric| figures::Panel {
        title: format!(
            "{title} (layer {}, head {}, batch {})",
            id.layer, id.head, id.batch
        ),
        matrix: figures::Matrix {
            rows: n,
            cols: n,
            values,
        },
        row_labels: Vec::new(),
        col_labels: Vec::new(),
        colormap,
        symmetric,
    };
    let cmap = options.figure.colormap.unwrap_or(Colormap::Viridis);
    let panels = [
        panel("run A", ma, cmap, false),
        panel("run B", mb, cmap, false),
        panel("A − B", diff, figures::Colormap::RdBu, true),
    ];
    let opts = figures::FigureOptions {
        columns: 3,
        shared_scale: true,
        blocks: Some(figures::Blocks {
            names: options.channels_a.clone(),
            size: options.block,
        }),
        ..figure_options(&options.figure)?
    };
    Ok(figures::render(&panels, &opts, format)?)
}
