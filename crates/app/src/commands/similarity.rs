//! `similarity`: attention against token attributions.

use ingest::RowSource;
use serde_json::json;

use crate::error::{Error, Result};
use crate::input::{open_source, token_dictionary, with_pieces, Rows};
use crate::metadata::{metadata, selection_options};
use crate::options::{InputOptions, OutputOptions, SimilarityOptions};
use crate::output::{open_extra_sink, write_extra, Frames, MainOutput};
use crate::progress::Progress;

/// The similarity frame of `input` against `options.attributions`: per batch row and scope
/// (each head, each layer's mean, the mean of all) the cosine variants, Spearman and Kendall
/// rank correlations (scipy's conventions) and the top-set overlap at `percentile`. With
/// `overlap`, the positions in either top set are written there too.
///
/// # Errors
/// `Usage` for a percentile outside 0..=100; `BadInput` for attributions whose shape does not
/// fit the attention; `Io` as [`topk`](crate::topk).
pub fn similarity(
    input: &InputOptions,
    options: &SimilarityOptions,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    if !(0.0..=100.0).contains(&options.percentile) {
        return Err(Error::usage(format!(
            "--percentile {} is not within 0..100",
            options.percentile
        )));
    }
    let out = MainOutput::open(output)?;
    let overlap_sink = open_extra_sink(&options.overlap, output)?;
    // The scopes are defined over every layer and head of the tensor.
    let every_head = InputOptions {
        layers: None,
        heads: None,
        ..input.clone()
    };
    let source = open_source(&every_head, progress)?;
    let rows = Rows::of(&source, input)?;
    let spans = rows.spans();
    let dims = rows.dims();
    let attributions = match &spans {
        None => similarity::Attributions::open(&options.attributions, dims.batch, dims.keys)?,
        // Attribution to a word: the sum over its pieces.
        Some(s) => {
            similarity::Attributions::open(&options.attributions, dims.batch, s.token_positions)?
                .summed_over_groups(&s.pieces, dims.keys)
        }
    };
    let tokens = token_dictionary(&rows)?;
    let (mut metrics, overlap) =
        similarity::similarity_frames(&rows, tokens.as_ref(), &attributions, options.percentile)?;
    let mut overlap = with_pieces(overlap, &spans)?;
    if let Some(path) = &options.example_ids {
        let ids = similarity::read_example_ids(path, dims.batch)?;
        metrics = similarity::with_example_ids(metrics, &ids)?;
        overlap = similarity::with_example_ids(overlap, &ids)?;
    }
    let mut meta_options = selection_options(input);
    meta_options["percentile"] = json!(options.percentile);
    meta_options["attributions"] = json!(options.attributions.name().display().to_string());
    let meta = metadata("similarity", input, &source, meta_options);
    if let Some(o) = overlap_sink {
        write_extra(o, &meta, &[overlap])?;
    }
    out.write_all(&meta, &[metrics])
}
