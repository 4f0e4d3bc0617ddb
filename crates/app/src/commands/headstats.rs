//! `headstats`: one row of published measures per head; `pairs`: head × head distances.

use headstats::{distance_frame, head_distances, head_stats, stats_frame, TokenClasses};
use ingest::RowSource;
use polars::prelude::DataFrame;
use serde_json::{json, Value};

use crate::dataset::{self, DatasetRun};
use crate::error::{Error, Result};
use crate::input::{open_source, Rows};
use crate::metadata::{metadata, selection_options};
use crate::options::{HeadstatsOptions, InputOptions, OutputOptions};
use crate::output::{open_extra_sink, write_extra, Frames, MainOutput};
use crate::progress::Progress;

/// The token classes whose mass `options` counts.
pub(crate) fn token_classes(options: &HeadstatsOptions) -> TokenClasses {
    TokenClasses {
        cls: options.cls_tokens.clone(),
        sep: options.sep_tokens.clone(),
        punct: options.punct_tokens.clone(),
    }
}

pub(crate) fn headstats_metadata(input: &InputOptions, options: &HeadstatsOptions) -> Value {
    let mut meta = selection_options(input);
    meta["cls_tokens"] = json!(options.cls_tokens);
    meta["sep_tokens"] = json!(options.sep_tokens);
    meta["punct_tokens"] = json!(options.punct_tokens);
    meta["sink_threshold"] = json!(options.sink_threshold);
    meta
}

/// The headstats frame of `rows`.
pub(crate) fn stats_of(rows: &Rows<'_>, options: &HeadstatsOptions) -> Result<DataFrame> {
    Ok(stats_frame(&head_stats(
        rows,
        &token_classes(options),
        options.sink_threshold,
    )?)?)
}

/// Per (batch, layer, head): smoothed entropy (nats, Clark et al. 2019), mean attention
/// distance, self/previous/next/[CLS]/[SEP]/punctuation mass, first-position mass and the
/// `sink` flag (Xiao et al. 2023), and head-detector scores. With `pairs`, the head × head
/// Jensen–Shannon distances of the first selected batch row go there.
///
/// # Errors
/// `Usage` for `pairs` over a dataset; `BadInput`, `Io` as [`topk`](crate::topk).
pub fn headstats(
    input: &InputOptions,
    options: &HeadstatsOptions,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    let meta_options = headstats_metadata(input, options);
    if dataset::is_dataset_run(input, output, &options.dataset) {
        if options.pairs.is_some() {
            return Err(Error::usage(
                "--pairs compares the heads of one file: run it file by file",
            ));
        }
        let run = DatasetRun::new("headstats", input, output, &options.dataset, meta_options);
        return dataset::run(run, progress, |rows, frames| {
            let stats = stats_of(rows, options)?;
            let empty = stats.clear();
            frames.push(stats);
            Ok(empty)
        });
    }
    let out = MainOutput::open(output)?;
    let pairs_sink = open_extra_sink(&options.pairs, output)?;
    let source = open_source(input, progress)?;
    let rows = Rows::of(&source, input)?;
    let stats = stats_of(&rows, options)?;
    let meta = metadata("headstats", input, &source, meta_options);
    if let (Some(sink), Some(first)) = (pairs_sink, rows.slabs().first()) {
        let pairs = distance_frame(&head_distances(&rows, first.batch)?)?;
        write_extra(sink, &meta, &[pairs])?;
    }
    out.write_all(&meta, &[stats])
}
