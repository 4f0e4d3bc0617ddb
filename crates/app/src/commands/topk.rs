//! `topk`: for every (batch, layer, head, query) the k highest-scoring keys.

use polars::prelude::DataFrame;
use serde_json::{json, Value};
use topk_frames::TopkFrames;

use crate::dataset::{self, DatasetRun};
use crate::error::{Error, Result};
use crate::input::{open_source, token_dictionary, with_pieces, Rows};
use crate::metadata::{metadata, selection_options};
use crate::options::{InputOptions, OutputOptions, TopkOptions};
use crate::output::{FrameOut, Frames, MainOutput};
use crate::progress::{advance, Progress, Quiet};

/// The top-k frame of `input`: columns `batch` u32, `layer` u16, `head` u16,
/// `query_position` u32, `query_token`, `rank` u32 (1-based; ties go to the lower position),
/// `position` u32, `token`, `score` f32 — tokens dictionary-encoded, null without tokens.
/// Several inputs (a dataset) add `example_id` first.
///
/// # Errors
/// [`Error`] of kind `Usage` for `k` = 0 or options that do not fit; `BadInput` for a tensor,
/// mask or token file that is not what it must be; `Io` for a file that cannot be read or
/// written.
pub fn topk(
    input: &InputOptions,
    options: &TopkOptions,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    if options.k == 0 {
        return Err(Error::usage("-k must be at least 1"));
    }
    let meta_options = topk_metadata(input, options);
    if dataset::is_dataset_run(input, output, &options.dataset) {
        let run = DatasetRun::new("topk", input, output, &options.dataset, meta_options);
        return dataset::run(run, progress, |rows, frames| {
            topk_into(rows, options, output, frames, &Quiet)
        });
    }
    let mut out = MainOutput::open(output)?;
    let source = open_source(input, progress)?;
    out.sink
        .set_metadata(metadata("topk", input, &source, meta_options));
    let rows = Rows::of(&source, input)?;
    let empty = topk_into(&rows, options, output, &mut out.sink, progress)?;
    out.finish(&empty)
}

pub(crate) fn topk_metadata(input: &InputOptions, o: &TopkOptions) -> Value {
    let mut options = selection_options(input);
    options["k"] = json!((!o.all).then_some(o.k));
    options["all"] = json!(o.all);
    options["nonzero"] = json!(o.nonzero);
    options
}

/// Puts the top-k frames of `rows` to `out`; returns the frame's schema (no rows).
pub(crate) fn topk_into(
    rows: &Rows<'_>,
    o: &TopkOptions,
    output: &OutputOptions,
    out: &mut (impl FrameOut + Send),
    progress: &dyn Progress,
) -> Result<DataFrame> {
    let spans = rows.spans();
    let tokens = token_dictionary(rows)?;
    let mut frames = TopkFrames::new(
        rows,
        tokens.as_ref(),
        topk_frames::TopkOptions {
            k: (!o.all).then_some(o.k as usize),
            nonzero: o.nonzero,
            chunk_rows: output.row_group_size as usize,
        },
    )?;
    progress.start(frames.progress().1 as u64, "slabs");
    let empty = with_pieces(frames.empty()?, &spans)?;
    // Chunk i is written while chunk i + 1 is computed: the writer's columns and the
    // next slabs share the threads, so neither phase leaves a core idle.
    let mut next = frames.next();
    while let Some(chunk) = next {
        let chunk = with_pieces(chunk?, &spans)?;
        let (put, following) = rayon::join(|| out.put(chunk), || frames.next());
        put?;
        next = following;
        advance(progress, frames.progress().0 as u64)?;
    }
    progress.finish();
    Ok(empty)
}
