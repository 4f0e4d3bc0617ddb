//! Run vs run: two attention tensors whose tokens are channel blocks (EEG electrodes × time),
//! with run B's blocks permuted (rows and columns) into run A's channel order.

use std::path::Path;

use ingest::{IngestError, RowSource, SlabBuffer, SlabId};
use polars::prelude::*;
use rayon::prelude::*;

use crate::metrics::cosine;
use crate::Result;

/// Channel names of both runs and the block length; maps A's positions to B's.
#[derive(Debug, Clone)]
pub struct ChannelBlocks {
    pub channels: Vec<String>,
    pub block: usize,
    /// `b_position[p]` = the position in run B of A's position p.
    b_position: Vec<usize>,
}

impl ChannelBlocks {
    /// `channels_b` must hold the same names as `channels_a`; `channels × block` must equal
    /// the sequence length `seq`. Errors name the file the lists describe.
    pub fn new(
        channels_a: &[String],
        channels_b: &[String],
        block: usize,
        seq: usize,
        path_a: &Path,
        path_b: &Path,
    ) -> Result<Self, IngestError> {
        if block == 0 || channels_a.len() * block != seq {
            return Err(IngestError::invalid(
                path_a,
                format!(
                    "{} channels × block {block} = {} is not the sequence length {seq}",
                    channels_a.len(),
                    channels_a.len() * block
                ),
            ));
        }
        let missing: Vec<&str> = channels_a
            .iter()
            .filter(|c| !channels_b.contains(c))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = channels_b
            .iter()
            .filter(|c| !channels_a.contains(c))
            .map(String::as_str)
            .collect();
        let mut unique = channels_a.to_vec();
        unique.sort();
        unique.dedup();
        if !missing.is_empty()
            || !extra.is_empty()
            || unique.len() != channels_a.len()
            || channels_b.len() != channels_a.len()
        {
            return Err(IngestError::invalid(
                path_b,
                format!(
                    "--channels-b must be a permutation of --channels-a (missing: [{}], extra: [{}], {} vs {} names)",
                    missing.join(", "),
                    extra.join(", "),
                    channels_a.len(),
                    channels_b.len()
                ),
            ));
        }
        let b_position = channels_a
            .iter()
            .flat_map(|c| {
                let j = channels_b
                    .iter()
                    .position(|x| x == c)
                    .expect("checked above");
                (j * block..(j + 1) * block).collect::<Vec<_>>()
            })
            .collect();
        Ok(ChannelBlocks {
            channels: channels_a.to_vec(),
            block,
            b_position,
        })
    }
}

/// One (batch, layer, head) of both runs, B reordered, with its metrics and block means.
struct SlabComparison {
    id: SlabId,
    metrics: [f64; 4],
    blocks: [Vec<f64>; 2],
}

fn read_matrix(src: &impl RowSource, id: SlabId, buf: &mut SlabBuffer) -> Result<Vec<f64>> {
    let n = src.dims().keys;
    let mut m = vec![0f64; src.dims().queries * n];
    src.for_each_query_row(id, buf, |_, q, row| {
        m[q as usize * n..(q as usize + 1) * n]
            .iter_mut()
            .zip(row)
            .for_each(|(d, &v)| *d = v as f64);
    })?;
    Ok(m)
}

fn block_means(m: &[f64], n: usize, blocks: &ChannelBlocks) -> Vec<f64> {
    let c = blocks.channels.len();
    let mut out = vec![0f64; c * c];
    for q in 0..n {
        for k in 0..n {
            out[(q / blocks.block) * c + k / blocks.block] += m[q * n + k];
        }
    }
    let per = (blocks.block * blocks.block) as f64;
    out.iter_mut().for_each(|v| *v /= per);
    out
}

fn compare_slab(
    a: &impl RowSource,
    b: &impl RowSource,
    id: SlabId,
    blocks: &ChannelBlocks,
) -> Result<SlabComparison> {
    let mut buf = SlabBuffer::default();
    let n = a.dims().keys;
    let ma = read_matrix(a, id, &mut buf)?;
    let raw_b = read_matrix(b, id, &mut buf)?;
    let p = &blocks.b_position;
    let mb: Vec<f64> = (0..n * n).map(|i| raw_b[p[i / n] * n + p[i % n]]).collect();
    let len = (n * n) as f64;
    let (mean_a, mean_b) = (ma.iter().sum::<f64>() / len, mb.iter().sum::<f64>() / len);
    let (mut cov, mut var_a, mut var_b, mut abs_sum, mut abs_max) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (x, y) in ma.iter().zip(&mb) {
        let (dx, dy) = (x - mean_a, y - mean_b);
        cov += dx * dy;
        var_a += dx * dx;
        var_b += dy * dy;
        let d = (x - y).abs();
        abs_sum += d;
        abs_max = abs_max.max(d);
    }
    Ok(SlabComparison {
        id,
        metrics: [
            cosine(&ma, &mb),
            cov / (var_a.sqrt() * var_b.sqrt()),
            abs_sum / len,
            abs_max,
        ],
        blocks: [block_means(&ma, n, blocks), block_means(&mb, n, blocks)],
    })
}

/// The comparison frame (`batch, layer, head, cosine, pearson, mean_abs_diff, max_abs_diff`)
/// and the block frame (`run, batch, layer, head, query_channel, key_channel,
/// mean_attention`) of two runs with the same shape.
pub fn compare_runs(
    a: &impl RowSource,
    b: &impl RowSource,
    blocks: &ChannelBlocks,
) -> Result<(DataFrame, DataFrame)> {
    let parts: Vec<SlabComparison> = a
        .slabs()
        .par_iter()
        .map(|&id| compare_slab(a, b, id, blocks))
        .collect::<Result<_>>()?;
    let n = parts.len();
    let mut metric_cols: [Vec<f64>; 4] = Default::default();
    let c = blocks.channels.len();
    let mut blk = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for part in &parts {
        for (col, v) in metric_cols.iter_mut().zip(part.metrics) {
            col.push(v);
        }
        for (run, means) in ["a", "b"].iter().zip(&part.blocks) {
            for (i, &m) in means.iter().enumerate() {
                blk.0.push(*run);
                blk.1.push(part.id.batch);
                blk.2.push(part.id.layer);
                blk.3.push(part.id.head);
                blk.4.push(blocks.channels[i / c].as_str());
                blk.5.push(blocks.channels[i % c].as_str());
                blk.6.push(m);
            }
        }
    }
    let [cos, pear, mean_abs, max_abs] = metric_cols;
    let comparison = DataFrame::new(
        n,
        vec![
            UInt32Chunked::from_vec("batch".into(), parts.iter().map(|p| p.id.batch).collect())
                .into_column(),
            UInt16Chunked::from_vec("layer".into(), parts.iter().map(|p| p.id.layer).collect())
                .into_column(),
            UInt16Chunked::from_vec("head".into(), parts.iter().map(|p| p.id.head).collect())
                .into_column(),
            Float64Chunked::from_vec("cosine".into(), cos).into_column(),
            Float64Chunked::from_vec("pearson".into(), pear).into_column(),
            Float64Chunked::from_vec("mean_abs_diff".into(), mean_abs).into_column(),
            Float64Chunked::from_vec("max_abs_diff".into(), max_abs).into_column(),
        ],
    )?;
    let m = blk.0.len();
    let block_frame = DataFrame::new(
        m,
        vec![
            StringChunked::from_iter_values("run".into(), blk.0.into_iter()).into_column(),
            UInt32Chunked::from_vec("batch".into(), blk.1).into_column(),
            UInt16Chunked::from_vec("layer".into(), blk.2).into_column(),
            UInt16Chunked::from_vec("head".into(), blk.3).into_column(),
            StringChunked::from_iter_values("query_channel".into(), blk.4.into_iter())
                .into_column(),
            StringChunked::from_iter_values("key_channel".into(), blk.5.into_iter()).into_column(),
            Float64Chunked::from_vec("mean_attention".into(), blk.6).into_column(),
        ],
    )?;
    Ok((comparison, block_frame))
}
