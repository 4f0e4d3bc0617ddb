//! `received`: attention each key receives, summed over the valid queries.

use polars::prelude::DataFrame;
use serde_json::{json, Value};
use topk_frames::received_frame;

use crate::dataset::{self, DatasetRun};
use crate::error::{Error, Result};
use crate::input::{open_source, token_dictionary, with_pieces, Rows};
use crate::metadata::{metadata, selection_options};
use crate::options::{InputOptions, OutputOptions, ReceivedOptions};
use crate::output::{Frames, MainOutput};
use crate::progress::Progress;

/// The received-attention frame of `input`: per (batch, layer, head) — fewer with `reduce` —
/// and valid key `position` u32 with its `token`, the `score` f32 (the sum over valid queries,
/// after min-max with `normalize`) and its `rank` u32 (1 = most received; ties to the lower
/// position). Several inputs (a dataset) add `example_id` first.
///
/// # Errors
/// As [`topk`](crate::topk): `Usage` for `k` = 0, `BadInput`, `Io`.
pub fn received(
    input: &InputOptions,
    options: &ReceivedOptions,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    if options.k == Some(0) {
        return Err(Error::usage("-k must be at least 1"));
    }
    let analysis = analysis_options(options);
    let meta_options = received_metadata(input, &analysis);
    if dataset::is_dataset_run(input, output, &options.dataset) {
        let run = DatasetRun::new("received", input, output, &options.dataset, meta_options);
        return dataset::run(run, progress, |rows, frames| {
            let df = received_of(rows, analysis)?;
            let empty = df.clear();
            frames.push(df);
            Ok(empty)
        });
    }
    let out = MainOutput::open(output)?;
    let source = open_source(input, progress)?;
    let df = received_of(&Rows::of(&source, input)?, analysis)?;
    let meta = metadata("received", input, &source, meta_options);
    out.write_all(&meta, &[df])
}

/// The analysis crate's options of `options`.
pub(crate) fn analysis_options(options: &ReceivedOptions) -> topk_frames::ReceivedOptions {
    topk_frames::ReceivedOptions {
        normalize: options.normalize,
        reduce: options.reduce,
        k: options.k.map(|k| k as usize),
    }
}

pub(crate) fn received_metadata(input: &InputOptions, o: &topk_frames::ReceivedOptions) -> Value {
    let mut options = selection_options(input);
    options["normalize"] = json!(format!("{:?}", o.normalize).to_lowercase());
    options["reduce"] = json!(format!("{:?}", o.reduce).to_lowercase());
    options["k"] = json!(o.k);
    options
}

pub(crate) fn received_of(rows: &Rows<'_>, o: topk_frames::ReceivedOptions) -> Result<DataFrame> {
    let tokens = token_dictionary(rows)?;
    with_pieces(received_frame(rows, tokens.as_ref(), o)?, &rows.spans())
}
