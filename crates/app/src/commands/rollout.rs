//! `rollout`: attention rollout ranked like `topk`, and per-position relevance.

use ingest::RowSource;
use polars::prelude::DataFrame;
use rollout::RolloutSource;
use serde_json::{json, Value};
use topk_frames::TopkFrames;

use crate::error::{Error, Result};
use crate::input::{open_source, token_dictionary, with_pieces, Rows};
use crate::metadata::{metadata, selection_options};
use crate::options::{InputOptions, OutputOptions, RolloutOptions};
use crate::output::{open_extra_sink, write_extra, FrameOut, Frames, MainOutput};
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
    let written_layers = written_layers(input, source.dims().layers)?;
    let meta = metadata("rollout", input, &source, rollout_metadata(input, options));
    let rows = Rows::of(&source, input)?;
    let rollout = RolloutSource::new(&rows, options.fuse, &written_layers)?;
    out.sink.set_metadata(meta.clone());
    let empty = ranked_into(&rollout, &rows, options, output, &mut out.sink, progress)?;
    if let Some(s) = relevance_sink {
        write_extra(s, &meta, &[rollout.relevance_frame()?])?;
    }
    out.finish(&empty)
}

/// The cumulative layers `input.layers` picks of a source of `layers` layers (every one by
/// default).
pub(crate) fn written_layers(input: &InputOptions, layers: usize) -> Result<Vec<u16>> {
    Ok(match &input.layers {
        Some(spec) => ingest::parse_selection(Some(spec), layers, "layer")
            .map_err(|reason| ingest::IngestError::invalid(input.attn(), reason))?
            .into_iter()
            .map(|l| l as u16)
            .collect(),
        None => (0..layers as u16).collect(),
    })
}

pub(crate) fn rollout_metadata(input: &InputOptions, options: &RolloutOptions) -> Value {
    let mut o = selection_options(input);
    o["fuse"] = json!(format!("{:?}", options.fuse).to_lowercase());
    o["k"] = json!((!options.all).then_some(options.k));
    o["all"] = json!(options.all);
    o
}

/// Ranks the rows of `joint` (J_l, as a row source over `rows`' positions) like topk, without
/// the head column (rollout fuses the heads), into `out`; returns the frame's schema.
pub(crate) fn ranked_into(
    joint: &impl RowSource,
    rows: &Rows<'_>,
    options: &RolloutOptions,
    output: &OutputOptions,
    out: &mut impl FrameOut,
    progress: &dyn Progress,
) -> Result<DataFrame> {
    let spans = rows.spans();
    let tokens = token_dictionary(rows)?;
    let mut frames = TopkFrames::new(
        joint,
        tokens.as_ref(),
        topk_frames::TopkOptions {
            k: (!options.all).then_some(options.k as usize),
            nonzero: false,
            chunk_rows: output.row_group_size as usize,
        },
    )?;
    progress.start(frames.progress().1 as u64, "layers");
    let empty = with_pieces(frames.empty()?.drop("head")?, &spans)?;
    while let Some(chunk) = frames.next() {
        out.put(with_pieces(chunk?.drop("head")?, &spans)?)?;
        advance(progress, frames.progress().0 as u64)?;
    }
    progress.finish();
    Ok(empty)
}
