//! # similarity — does what the model attends to agree with what an attribution says matters?
//!
//! For every batch row, two attention vectors over the valid positions, taken from any
//! [`ingest::RowSource`] (masks and head importance applied there): scope `last_layer` = the
//! attention each position receives in the last layer, summed over heads; `all_layers` = summed
//! over every layer and head. Each is compared with the row's attributions (e.g. captum
//! `LayerIntegratedGradients` summed over the hidden dimension) by the [`METRICS`] of
//! [`compare`]: cosine variants (raw, min-max normalised, median/mean/percentile thresholded,
//! ordinal ranks, top ranks), Spearman, Pearson, Kendall's tau-b and the Jaccard index of the
//! two top-percentile sets. [`similarity_frames`] returns the metrics frame and the overlap
//! frame (the positions in either top set, and which).
//!
//! [`compare_runs`] compares two runs whose tokens are channel blocks (EEG electrodes × time
//! points): run B's blocks are permuted into run A's channel order ([`ChannelBlocks`]), then
//! each (batch, layer, head) gets cosine, Pearson, mean and max absolute difference, and
//! optionally the channel × channel block means of both runs.
//!
//! The original notebook computes its all-layers percentile threshold from the last-layer vector
//! and its "top ranks" variant zeroes the top ranks instead of keeping them; here each vector
//! has its own threshold and the top n − ceil(n·p/100) ranks are kept.
//!
//! ```no_run
//! use ingest::{AttentionSource, SourceOptions};
//! use similarity::{similarity_frames, Attributions};
//!
//! let src = AttentionSource::open(&SourceOptions { attn: "attentions.npy".into(), ..Default::default() })?;
//! let attr = Attributions::open(&"attributions.npy".into(), 1, 20)?;
//! let (metrics, overlap) = similarity_frames(&src, None, &attr, 95.0)?;
//! println!("{metrics}\n{overlap}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod metrics;
mod plot;
mod runs;

use std::path::Path;

use frame_sink::{null_token_column, TokenDictionary};
use ingest::{IngestError, RowSource, SlabBuffer, TensorInput};
use polars::prelude::*;
use rayon::prelude::*;

pub use metrics::{compare, Comparison, METRICS};
pub use plot::head_matrices;
pub use runs::{check_runs, compare_runs, difference, ChannelBlocks, RunComparison};

/// Errors: bad input, or a frame that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SimilarityError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("building a frame: {0}")]
    Polars(#[from] PolarsError),
}

pub type Result<T, E = SimilarityError> = std::result::Result<T, E>;

/// Token attributions per batch row and position.
pub struct Attributions {
    values: Vec<f64>,
    seq: usize,
    shared: bool,
}

impl Attributions {
    /// Reads (batch, seq) attributions, or (seq,) shared by every batch row.
    pub fn open(
        input: &TensorInput,
        batch: usize,
        seq: usize,
    ) -> Result<Attributions, IngestError> {
        let path = input.name();
        let t = input.open()?;
        let shared = match t.shape.as_slice() {
            [b, s] if *b == batch && *s == seq => false,
            [s] if *s == seq => true,
            shape => {
                return Err(IngestError::invalid(
                    path,
                    format!("attributions of shape {shape:?} do not match (batch, sequence) = ({batch}, {seq})"),
                ))
            }
        };
        let values = t.to_f64_vec()?;
        if let Some(x) = values.iter().find(|x| !x.is_finite()) {
            return Err(IngestError::invalid(
                path,
                format!("attributions contain {x}"),
            ));
        }
        Ok(Attributions {
            values,
            seq,
            shared,
        })
    }

    /// Attributions of groups of positions (e.g. the pieces of each word): per batch row,
    /// `groups[b][g]` lists the positions summed into group `g`; rows have `width` groups.
    pub fn summed_over_groups(&self, groups: &[Vec<Vec<u32>>], width: usize) -> Attributions {
        let mut values = Vec::with_capacity(groups.len() * width);
        for (b, row_groups) in groups.iter().enumerate() {
            let row = self.row(b as u32);
            let mut out: Vec<f64> = row_groups
                .iter()
                .map(|g| g.iter().map(|&p| row[p as usize]).sum())
                .collect();
            out.resize(width, 0.0);
            values.extend(out);
        }
        Attributions {
            values,
            seq: width,
            shared: false,
        }
    }

    fn row(&self, b: u32) -> &[f64] {
        let r = if self.shared { 0 } else { b as usize };
        &self.values[r * self.seq..(r + 1) * self.seq]
    }
}

/// The attention each valid key receives in every (layer, head) of batch row `b`, summed over
/// the valid queries: `[layer][valid key]`, summed over heads.
fn received_by_layer(src: &impl RowSource, b: u32) -> Result<Vec<Vec<f64>>> {
    let dims = src.dims();
    let keys = src.valid_keys(b);
    let slabs: Vec<_> = src.slabs().into_iter().filter(|s| s.batch == b).collect();
    let sums: Vec<(u16, Vec<f64>)> = slabs
        .par_iter()
        .map_init(SlabBuffer::default, |buf, &s| {
            Ok((s.layer, src.received(s, buf)?))
        })
        .collect::<Result<_, IngestError>>()?;
    let mut by_layer = vec![vec![0f64; keys.len()]; dims.layers];
    for (l, v) in sums {
        by_layer[l as usize]
            .iter_mut()
            .zip(v)
            .for_each(|(a, x)| *a += x);
    }
    Ok(by_layer)
}

/// The metrics frame (`batch, scope`, then [`METRICS`]) and the overlap frame (`batch, scope,
/// position, token, attention_norm, attribution_norm, membership`) of every selected batch row.
pub fn similarity_frames(
    src: &impl RowSource,
    tokens: Option<&TokenDictionary>,
    attributions: &Attributions,
    percentile: f64,
) -> Result<(DataFrame, DataFrame)> {
    let mut batches: Vec<u32> = src.slabs().iter().map(|s| s.batch).collect();
    batches.dedup();
    let mut m_batch = Vec::new();
    let mut m_scope = Vec::new();
    let mut m_values: Vec<Vec<f64>> = vec![Vec::new(); METRICS.len()];
    let (mut o_batch, mut o_scope, mut o_pos, mut o_tok) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut o_att, mut o_attr, mut o_member) = (Vec::new(), Vec::new(), Vec::new());
    for b in batches {
        let keys = src.valid_keys(b);
        let by_layer = received_by_layer(src, b)?;
        let last = by_layer.last().cloned().unwrap_or_default();
        let all = by_layer.iter().fold(vec![0f64; keys.len()], |mut acc, l| {
            acc.iter_mut().zip(l).for_each(|(a, x)| *a += x);
            acc
        });
        let row = attributions.row(b);
        let attr: Vec<f64> = keys.iter().map(|&k| row[k as usize]).collect();
        for (scope, attention) in [("last_layer", &last), ("all_layers", &all)] {
            let c = compare(&attr, attention, percentile);
            m_batch.push(b);
            m_scope.push(scope);
            for (col, v) in m_values.iter_mut().zip(c.values) {
                col.push(v);
            }
            for (i, &k) in keys.iter().enumerate() {
                let (in_attr, in_att) = (c.attribution_top[i] > 0.0, c.attention_top[i] > 0.0);
                if !(in_attr || in_att) {
                    continue;
                }
                o_batch.push(b);
                o_scope.push(scope);
                o_pos.push(k);
                o_tok.push(tokens.map_or(0, |t| t.code(b, k)));
                o_att.push(c.attention_top[i] as f32);
                o_attr.push(c.attribution_top[i] as f32);
                o_member.push(match (in_att, in_attr) {
                    (true, true) => "both",
                    (true, false) => "attention_only",
                    _ => "attribution_only",
                });
            }
        }
    }
    let n = m_batch.len();
    let mut columns = vec![
        UInt32Chunked::from_vec("batch".into(), m_batch).into_column(),
        StringChunked::from_iter_values("scope".into(), m_scope.into_iter()).into_column(),
    ];
    for (name, v) in METRICS.iter().zip(m_values) {
        columns.push(Float64Chunked::from_vec((*name).into(), v).into_column());
    }
    let metrics = DataFrame::new(n, columns)?;
    let n = o_batch.len();
    let token = match tokens {
        Some(t) => t.column("token", o_tok),
        None => null_token_column("token", n),
    };
    let overlap = DataFrame::new(
        n,
        vec![
            UInt32Chunked::from_vec("batch".into(), o_batch).into_column(),
            StringChunked::from_iter_values("scope".into(), o_scope.into_iter()).into_column(),
            UInt32Chunked::from_vec("position".into(), o_pos).into_column(),
            token,
            Float32Chunked::from_vec("attention_norm".into(), o_att).into_column(),
            Float32Chunked::from_vec("attribution_norm".into(), o_attr).into_column(),
            StringChunked::from_iter_values("membership".into(), o_member.into_iter())
                .into_column(),
        ],
    )?;
    Ok((metrics, overlap))
}

/// Reads one example id per batch row (a `.txt`, one per line).
pub fn read_example_ids(path: &Path, batch: usize) -> Result<Vec<String>, IngestError> {
    let text = std::fs::read_to_string(path).map_err(|e| IngestError::io(path, e))?;
    let ids: Vec<String> = text
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    if ids.len() != batch {
        return Err(IngestError::invalid(
            path,
            format!("{} example ids for batch size {batch}", ids.len()),
        ));
    }
    Ok(ids)
}

/// Puts an `example_id` column (the id of each row's batch) in front of a frame with a
/// `batch` column, so that frames of many files concatenate into one dataset.
pub fn with_example_ids(mut df: DataFrame, ids: &[String]) -> Result<DataFrame> {
    let batch = df.column("batch")?.u32()?.clone();
    let values: Vec<&str> = batch
        .into_no_null_iter()
        .map(|b| ids[b as usize].as_str())
        .collect();
    let column =
        StringChunked::from_iter_values("example_id".into(), values.into_iter()).into_column();
    df.insert_column(0, column)?;
    Ok(df)
}
