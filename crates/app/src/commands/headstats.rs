//! `headstats`: one row of published measures per head; `pairs`: head × head distances.

use headstats::{distance_frame, head_distances, head_stats, stats_frame, TokenClasses};
use ingest::RowSource;
use serde_json::json;

use crate::dataset::{self, DatasetRun};
use crate::error::{Error, Result};
use crate::input::{open_source, Rows};
use crate::metadata::{metadata, selection_options};
use crate::options::{HeadstatsOptions, InputOptions, OutputOptions};
use crate::output::{open_extra_sink, write_extra, Frames, MainOutput};
use crate::progress::Progress;

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
    let classes = TokenClasses {
        cls: options.cls_tokens.clone(),
        sep: options.sep_tokens.clone(),
        punct: options.punct_tokens.clone(),
    };
    let mut meta_options = selection_options(input);
    meta_options["cls_tokens"] = json!(classes.cls);
    meta_options["sep_tokens"] = json!(classes.sep);
    meta_options["punct_tokens"] = json!(classes.punct);
    meta_options["sink_threshold"] = json!(options.sink_threshold);
    if dataset::is_dataset_run(input, output, &options.dataset) {
        if options.pairs.is_some() {
            return Err(Error::usage(
                "--pairs compares the heads of one file: run it file by file",
            ));
        }
        let run = DatasetRun::new("headstats", input, output, &options.dataset, meta_options);
        return dataset::run(run, progress, |rows, frames| {
            let stats = stats_frame(&head_stats(rows, &classes, options.sink_threshold)?)?;
            let empty = stats.clear();
            frames.push(stats);
            Ok(empty)
        });
    }
    let out = MainOutput::open(output)?;
    let pairs_sink = open_extra_sink(&options.pairs, output)?;
    let source = open_source(input, progress)?;
    let rows = Rows::of(&source, input)?;
    let stats = stats_frame(&head_stats(&rows, &classes, options.sink_threshold)?)?;
    let meta = metadata("headstats", input, &source, meta_options);
    if let (Some(sink), Some(first)) = (pairs_sink, rows.slabs().first()) {
        let pairs = distance_frame(&head_distances(&rows, first.batch)?)?;
        write_extra(sink, &meta, &[pairs])?;
    }
    out.write_all(&meta, &[stats])
}
