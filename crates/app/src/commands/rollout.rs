//! `rollout`: attention rollout ranked like `topk`, and per-position relevance.

use ingest::RowSource;
use rollout::RolloutSource;
use serde_json::json;
use topk_frames::TopkFrames;

use crate::error::{Error, Result};
use crate::input::{open_source, token_dictionary, with_pieces, Rows};
use crate::metadata::{metadata, selection_options};
use crate::options::{InputOptions, OutputOptions, RolloutOptions};
use crate::output::{open_extra_sink, write_extra, Frames, MainOutput};
use crate::progress::{advance, Progress};

/// Attention rollout (Abnar & Zuidema 2020): per layer l, J_l = Â_l · J_{l−1} with
/// Â = 0.5·(fused heads) + 0.5·I, rows renormalised; ranked like [`topk`](crate::topk)
/// without the `head` column, for the layers `input.layers` selects (all by default; the
/// chain always runs through every layer). With `relevance`, per (batch, layer, position)
/// the max over queries of J_l[q, k] goes there.
///
/// # Errors
/// `Usage` for `k` = 0; `BadInput`, `Io` as [`topk`](crate::topk).
pub fn rollout(
    input: &InputOptions,
    options: &RolloutOptions,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    if options.k == 0 {
        return Err(Error::usage("-k must be at least 1"));
    }
    let mut out = MainOutput::open(output)?;
    let relevance_sink = open_extra_sink(&options.relevance, output)?;
    // The chain runs through every layer; `layers` picks the cumulative layers written.
    let every_layer = InputOptions {
        layers: None,
        ..input.clone()
    };
    let source = open_source(&every_layer, progress)?;
    let written_layers: Vec<u16> = match &input.layers {
        Some(spec) => ingest::parse_selection(Some(spec), source.dims().layers, "layer")
            .map_err(|reason| ingest::IngestError::invalid(input.attn(), reason))?
            .into_iter()
            .map(|l| l as u16)
            .collect(),
        None => (0..source.dims().layers as u16).collect(),
    };
    let meta = {
        let mut o = selection_options(input);
        o["fuse"] = json!(format!("{:?}", options.fuse).to_lowercase());
        o["k"] = json!((!options.all).then_some(options.k));
        o["all"] = json!(options.all);
        metadata("rollout", input, &source, o)
    };
    let rows = Rows::of(&source, input)?;
    let spans = rows.spans();
    let rollout = RolloutSource::new(&rows, options.fuse, &written_layers)?;
    let tokens = token_dictionary(&rows)?;
    let mut frames = TopkFrames::new(
        &rollout,
        tokens.as_ref(),
        topk_frames::TopkOptions {
            k: (!options.all).then_some(options.k as usize),
            nonzero: false,
            chunk_rows: output.row_group_size as usize,
        },
    )?;
    out.sink.set_metadata(meta.clone());
    progress.start(frames.progress().1 as u64, "layers");
    // Rollout fuses the heads: the frame has no head column.
    let empty = with_pieces(frames.empty()?.drop("head")?, &spans)?;
    while let Some(chunk) = frames.next() {
        out.sink
            .write(&with_pieces(chunk?.drop("head")?, &spans)?)?;
        advance(progress, frames.progress().0 as u64)?;
    }
    progress.finish();
    if let Some(s) = relevance_sink {
        write_extra(s, &meta, &[rollout.relevance_frame()?])?;
    }
    out.finish(&empty)
}
