//! `cluster`: KMeans on the rows of one head, k by silhouette.

use clustering::{cluster_head, label_frame, score_frame, ClusterOptions, HeadRows, RowSet};
use ingest::{RowSource, SlabId};
use serde_json::json;

use super::{
    metadata, open_input, open_sink, open_sink_at, selection_options, token_dictionary, Input,
};
use crate::cli::{ClusterArgs, InputArgs, RowsArg};
use crate::CliError;

pub fn cluster(a: &ClusterArgs) -> Result<(), CliError> {
    let (k_min, k_max) = parse_k_range(&a.k_range)?;
    let mut labels_sink = open_sink(&a.output)?;
    let scores_sink = a
        .scores
        .as_deref()
        .map(|o| open_sink_at(o, &a.output))
        .transpose()?;
    let input_args = InputArgs {
        layers: Some(a.layer.to_string()),
        heads: Some(a.head.to_string()),
        batch: Some(a.input.batch.clone().unwrap_or_else(|| "0".into())),
        ..a.input.clone()
    };
    let input = open_input(&input_args)?;
    let rows = match a.rows {
        RowsArg::All => RowSet::All,
        RowsArg::Even => RowSet::Even,
        RowsArg::Odd => RowSet::Odd,
    };
    let opts = ClusterOptions {
        k_min,
        k_max,
        seed: a.seed,
        n_init: a.n_init as usize,
        ..Default::default()
    };
    let (labels, scores) = match &input {
        Input::Dense(src) => cluster_on(src, &input_args, rows, &opts)?,
        Input::Longformer(src) => cluster_on(src, &input_args, rows, &opts)?,
    };
    let mut options = selection_options(&input_args);
    options["k_range"] = json!(a.k_range);
    options["rows"] = json!(rows.name());
    options["seed"] = json!(a.seed);
    options["n_init"] = json!(a.n_init);
    let meta = metadata("cluster", &input_args, &input, options);
    labels_sink.set_metadata(meta.clone());
    labels_sink.write(&labels)?;
    if let Some(mut s) = scores_sink {
        s.set_metadata(meta);
        s.write(&scores)?;
        s.finish(&scores)?;
    }
    labels_sink.finish(&labels)?;
    Ok(())
}

fn cluster_on(
    src: &impl RowSource,
    a: &InputArgs,
    rows: RowSet,
    opts: &ClusterOptions,
) -> Result<(polars::prelude::DataFrame, polars::prelude::DataFrame), CliError> {
    let id: SlabId = src.slabs()[0];
    let head_rows = HeadRows::read(src, &a.attn, id, rows)?;
    let result = cluster_head(&head_rows, opts)?;
    let tokens = token_dictionary(src)?;
    Ok((
        label_frame(&head_rows, &result, tokens.as_ref())?,
        score_frame(&result)?,
    ))
}

/// `a-b` with 2 ≤ a ≤ b (or a single k).
fn parse_k_range(spec: &str) -> Result<(usize, usize), CliError> {
    let bad = || {
        CliError::usage(format!(
            "--k-range {spec}: expected a range such as 2-9, from 2 up"
        ))
    };
    let (lo, hi) = spec.split_once('-').unwrap_or((spec, spec));
    let lo: usize = lo.trim().parse().map_err(|_| bad())?;
    let hi: usize = hi.trim().parse().map_err(|_| bad())?;
    if lo < 2 || hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}
