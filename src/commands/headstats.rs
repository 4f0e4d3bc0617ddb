//! `headstats`: one row of published measures per head; `--pairs`: head × head distances.

use headstats::{distance_frame, head_distances, head_stats, stats_frame, TokenClasses};
use ingest::RowSource;
use serde_json::json;

use super::{
    dataset, metadata, open_extra_sink, open_input, open_sink, selection_options, write_frames,
    Input,
};
use crate::cli::HeadstatsArgs;
use crate::CliError;

pub fn headstats(a: &HeadstatsArgs, show_progress: bool) -> Result<(), CliError> {
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let classes = TokenClasses {
        cls: words(&a.cls_tokens),
        sep: words(&a.sep_tokens),
        punct: words(&a.punct_tokens),
    };
    let mut options = selection_options(&a.input);
    options["cls_tokens"] = json!(classes.cls);
    options["sep_tokens"] = json!(classes.sep);
    options["punct_tokens"] = json!(classes.punct);
    options["sink_threshold"] = json!(a.sink_threshold);
    if dataset::is_dataset_run(&a.input, &a.output, &a.dataset) {
        if a.pairs.is_some() {
            return Err(CliError::usage(
                "--pairs compares the heads of one file: run it file by file",
            ));
        }
        let run = dataset::DatasetRun {
            command: "headstats",
            input: &a.input,
            output: &a.output,
            dataset: &a.dataset,
            options,
            show_progress,
        };
        return dataset::run(run, |args, frames| {
            let input = open_input(args)?;
            with_row_source!(&input, args, |src, _spans| {
                let stats = stats_frame(&head_stats(src, &classes, a.sink_threshold)?)?;
                let empty = stats.clear();
                frames.push(stats);
                Ok((empty, src.dims()))
            })
        });
    }
    let sink = open_sink(&a.output)?;
    let pairs_sink = open_extra_sink(&a.pairs, &a.output)?;
    let input = open_input(&a.input)?;
    let (stats, pairs) = with_row_source!(&input, &a.input, |src, _spans| run(src, &classes, a)?);
    let meta = metadata("headstats", &a.input, &input, options);
    if let (Some(s), Some(p)) = (pairs_sink, pairs) {
        write_frames(s, &meta, &[p])?;
    }
    write_frames(sink, &meta, &[stats])
}

type Frames = (
    polars::prelude::DataFrame,
    Option<polars::prelude::DataFrame>,
);

fn run(
    src: &impl RowSource,
    classes: &TokenClasses,
    a: &HeadstatsArgs,
) -> Result<Frames, CliError> {
    let stats = stats_frame(&head_stats(src, classes, a.sink_threshold)?)?;
    let pairs = match (&a.pairs, src.slabs().first()) {
        (Some(_), Some(first)) => Some(distance_frame(&head_distances(src, first.batch)?)?),
        _ => None,
    };
    Ok((stats, pairs))
}
