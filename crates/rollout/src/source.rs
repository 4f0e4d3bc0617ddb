//! The chain of fused, residual-added, renormalised layers, advanced as slabs are asked for.

use std::sync::Mutex;

use ingest::{RowSource, SlabBuffer, SlabId};
use ndarray::{s, Array2, Axis};
use polars::prelude::*;
use rayon::prelude::*;

use crate::{Result, RolloutError};

/// How the heads of a layer become one matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fuse {
    Mean,
    Max,
    Min,
}

/// Rows per block of the parallel product: fixed, so the result does not depend on threads.
const PRODUCT_ROWS: usize = 256;

/// Where the chain stands: batch row, last layer multiplied in, and J over the valid positions.
struct Chain {
    batch: Option<u32>,
    layer: Option<u16>,
    joint: Array2<f64>,
    fused: Array2<f64>,
    product: Array2<f64>,
    relevance: Vec<(SlabId, Vec<f64>)>,
}

/// Attention rollout of an attention row source, as a row source of J_l.
pub struct RolloutSource<'a, S: RowSource> {
    inner: &'a S,
    fuse: Fuse,
    slabs: Vec<SlabId>,
    /// Every layer of the inner source, in order: the chain multiplies them all.
    layers: Vec<u16>,
    heads: Vec<u16>,
    chain: Mutex<Chain>,
}

impl<'a, S: RowSource> RolloutSource<'a, S> {
    /// Rollout of `inner` (all its selected layers and heads), written for the cumulative
    /// layers in `write` (each must be one of the inner source's layers).
    pub fn new(inner: &'a S, fuse: Fuse, write: &[u16]) -> Result<Self> {
        let inner_slabs = inner.slabs();
        let mut layers: Vec<u16> = inner_slabs.iter().map(|s| s.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        let mut heads: Vec<u16> = inner_slabs.iter().map(|s| s.head).collect();
        heads.sort_unstable();
        heads.dedup();
        let mut batches: Vec<u32> = inner_slabs.iter().map(|s| s.batch).collect();
        batches.dedup();
        check_square(inner, &batches)?;
        let slabs = batches
            .iter()
            .flat_map(|&batch| {
                layers
                    .iter()
                    .filter(|l| write.contains(l))
                    .map(move |&layer| SlabId {
                        batch,
                        layer,
                        head: 0,
                    })
            })
            .collect();
        Ok(RolloutSource {
            inner,
            fuse,
            slabs,
            layers,
            heads,
            chain: Mutex::new(Chain {
                batch: None,
                layer: None,
                joint: Array2::zeros((0, 0)),
                fused: Array2::zeros((0, 0)),
                product: Array2::zeros((0, 0)),
                relevance: Vec::new(),
            }),
        })
    }

    /// Brings the chain of batch row `b` to layer `target`, multiplying in every layer between.
    fn advance(&self, chain: &mut Chain, b: u32, target: u16, buf: &mut SlabBuffer) -> Result<()> {
        let n = self.inner.valid_keys(b).len();
        if chain.batch != Some(b) || chain.layer.is_some_and(|l| l > target) {
            chain.batch = Some(b);
            chain.layer = None;
            for m in [&mut chain.joint, &mut chain.fused, &mut chain.product] {
                if m.dim() != (n, n) {
                    *m = Array2::zeros((n, n));
                }
            }
        }
        for &layer in self.layers.iter().filter(|&&l| l <= target) {
            if chain.layer.is_some_and(|done| done >= layer) {
                continue;
            }
            self.fuse_layer(&mut chain.fused, b, layer, buf)?;
            if chain.layer.is_none() {
                chain.joint.assign(&chain.fused);
            } else {
                block_product(&chain.fused, &chain.joint, &mut chain.product);
                std::mem::swap(&mut chain.joint, &mut chain.product);
            }
            chain.layer = Some(layer);
        }
        Ok(())
    }

    fn fuse_layer(
        &self,
        out: &mut Array2<f64>,
        b: u32,
        layer: u16,
        buf: &mut SlabBuffer,
    ) -> Result<()> {
        fuse_heads(self.inner, &self.heads, self.fuse, out, b, layer, buf)
    }

    /// `batch, layer, position, token, relevance` for every slab read so far (in slab order):
    /// relevance = max over queries of J_l[q, k], NaN skipped (null when every entry is NaN).
    pub fn relevance_frame(&self) -> Result<DataFrame> {
        let chain = self.chain.lock().expect("rollout chain");
        let tokens = self.inner.tokens();
        let (mut batch, mut layer, mut position, mut token, mut value) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, rel) in &chain.relevance {
            for (&k, &r) in self.inner.valid_keys(id.batch).iter().zip(rel) {
                batch.push(id.batch);
                layer.push(id.layer);
                position.push(k);
                token.push(tokens.map(|t| t.row(id.batch as usize)[k as usize].clone()));
                value.push(r);
            }
        }
        let n = batch.len();
        Ok(DataFrame::new(
            n,
            vec![
                UInt32Chunked::from_vec("batch".into(), batch).into_column(),
                UInt16Chunked::from_vec("layer".into(), layer).into_column(),
                UInt32Chunked::from_vec("position".into(), position).into_column(),
                StringChunked::from_iter_options("token".into(), token.into_iter()).into_column(),
                // A key whose column is NaN throughout has no maximum: null.
                Float64Chunked::from_iter_options(
                    "relevance".into(),
                    value.into_iter().map(|v| (!v.is_nan()).then_some(v)),
                )
                .into_column(),
            ],
        )?)
    }
}

/// Â_l = rownorm(fuse(heads) + I) over the valid positions of batch row `b` (`out` is n × n,
/// n its valid positions).
pub(crate) fn fuse_heads(
    inner: &impl RowSource,
    heads: &[u16],
    fuse: Fuse,
    out: &mut Array2<f64>,
    b: u32,
    layer: u16,
    buf: &mut SlabBuffer,
) -> Result<()> {
    // Max and min start at NaN, which `f64::max`/`min` replace by the first number: NaN
    // entries are skipped, and an entry NaN in every head stays NaN (the NaN rule).
    out.fill(match fuse {
        Fuse::Mean => 0.0,
        Fuse::Max | Fuse::Min => f64::NAN,
    });
    let keys = inner.valid_keys(b);
    for &head in heads {
        // Rows arrive in order of the valid queries, which are the valid keys.
        inner.for_each_query_row(
            SlabId {
                batch: b,
                layer,
                head,
            },
            buf,
            |i, _, row| {
                let mut target = out.row_mut(i);
                for (o, &k) in target.iter_mut().zip(keys) {
                    let v = row[k as usize] as f64;
                    *o = match fuse {
                        Fuse::Mean => *o + v,
                        Fuse::Max => o.max(v),
                        Fuse::Min => o.min(v),
                    };
                }
            },
        )?;
    }
    if fuse == Fuse::Mean {
        let h = heads.len() as f64;
        out.mapv_inplace(|v| v / h);
    }
    for (i, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        row[i] += 1.0;
        let sum: f64 = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    Ok(())
}

/// Rollout needs every batch row's valid queries to be its valid keys.
pub(crate) fn check_square(inner: &impl RowSource, batches: &[u32]) -> Result<()> {
    for b in batches {
        if inner.valid_queries(*b) != inner.valid_keys(*b) {
            return Err(RolloutError::Input(
                "rollout needs square attention over the same valid positions".into(),
            ));
        }
    }
    Ok(())
}

/// Calls `f(i, q, row)` for each row of `joint` (J over `positions`), spread into a row of
/// `keys` f32 with zeros elsewhere; returns each column's maximum (NaN skipped).
pub(crate) fn for_each_joint_row(
    joint: &Array2<f64>,
    positions: &[u32],
    keys: usize,
    mut f: impl FnMut(usize, u32, &[f32]),
) -> Vec<f64> {
    let mut row = vec![0f32; keys];
    let mut relevance = vec![f64::NAN; positions.len()];
    for (i, (&q, j)) in positions.iter().zip(joint.axis_iter(Axis(0))).enumerate() {
        for ((&k, &v), r) in positions.iter().zip(j.iter()).zip(relevance.iter_mut()) {
            row[k as usize] = v as f32;
            *r = r.max(v);
        }
        f(i, q, &row);
    }
    relevance
}

/// out = a · b, computed in blocks of `PRODUCT_ROWS` rows in parallel.
pub(crate) fn block_product(a: &Array2<f64>, b: &Array2<f64>, out: &mut Array2<f64>) {
    let n = a.nrows();
    let blocks: Vec<_> = out.axis_chunks_iter_mut(Axis(0), PRODUCT_ROWS).collect();
    blocks
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut block)| {
            let rows = i * PRODUCT_ROWS..((i + 1) * PRODUCT_ROWS).min(n);
            ndarray::linalg::general_mat_mul(1.0, &a.slice(s![rows, ..]), b, 0.0, &mut block);
        });
}

/// The row-source methods a rollout source takes from the source it fuses (`self.inner`): one
/// fused head, its own `self.slabs`, the inner positions and tokens.
macro_rules! fused_head_rows {
    () => {
        fn dims(&self) -> ingest::Dims {
            ingest::Dims {
                heads: 1,
                ..self.inner.dims()
            }
        }

        fn annotations(&self) -> &ingest::Annotations {
            self.inner.annotations()
        }

        fn slabs(&self) -> Vec<ingest::SlabId> {
            self.slabs.clone()
        }

        fn valid_queries(&self, b: u32) -> &[u32] {
            self.inner.valid_queries(b)
        }

        fn valid_keys(&self, b: u32) -> &[u32] {
            self.inner.valid_keys(b)
        }

        fn tokens(&self) -> Option<&ingest::Tokens> {
            self.inner.tokens()
        }
    };
}
pub(crate) use fused_head_rows;

impl<S: RowSource> RowSource for RolloutSource<'_, S> {
    fused_head_rows!();

    /// The chain advances as slabs are read, so they must come in order, one at a time.
    fn is_seekable(&self) -> bool {
        false
    }

    fn for_each_query_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        f: impl FnMut(usize, u32, &[f32]),
    ) -> ingest::Result<()> {
        let mut chain = self.chain.lock().expect("rollout chain");
        self.advance(&mut chain, s.batch, s.layer, buf)
            .map_err(|e| match e {
                RolloutError::Ingest(e) => e,
                other => {
                    ingest::IngestError::invalid(std::path::Path::new("rollout"), other.to_string())
                }
            })?;
        let positions = self.inner.valid_keys(s.batch);
        let keys = self.inner.dims().keys;
        let relevance = for_each_joint_row(&chain.joint, positions, keys, f);
        chain.relevance.push((s, relevance));
        Ok(())
    }
}
