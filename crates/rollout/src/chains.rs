//! Rollout fed one layer at a time, as a model computes its layers: one J per batch row.

use ingest::{RowSource, SlabBuffer, SlabId};
use ndarray::Array2;

use crate::source::{block_product, check_square, for_each_joint_row, fuse_heads, fused_head_rows};
use crate::{Fuse, Result, RolloutError};

/// The rollout chains of a batch whose layers arrive one at a time: after each
/// [`push`](LayerChains::push), J of the layers so far for every batch row (n × n f64 over its
/// valid positions) — all that rollout keeps of the layers before. The arithmetic is
/// [`RolloutSource`](crate::RolloutSource)'s, in the same order, so the bits are the same.
pub struct LayerChains {
    fuse: Fuse,
    batches: Vec<u32>,
    joints: Vec<Array2<f64>>,
}

impl LayerChains {
    pub fn new(fuse: Fuse) -> LayerChains {
        LayerChains {
            fuse,
            batches: Vec::new(),
            joints: Vec::new(),
        }
    }

    /// Multiplies the next layer — `layer`, a source of one layer with every head — into the
    /// chain of each of its batch rows.
    ///
    /// # Errors
    /// `Input` when a batch row's valid queries are not its valid keys, or when the layer has
    /// other batch rows or valid positions than the first; `Ingest` when a row cannot be read.
    pub fn push(&mut self, layer: &impl RowSource) -> Result<()> {
        let slabs = layer.slabs();
        let mut batches: Vec<u32> = slabs.iter().map(|s| s.batch).collect();
        batches.dedup();
        let mut heads: Vec<u16> = slabs.iter().map(|s| s.head).collect();
        heads.sort_unstable();
        heads.dedup();
        check_square(layer, &batches)?;
        let first = self.joints.is_empty();
        if !first && batches != self.batches {
            return Err(RolloutError::Input(
                "rollout: a layer with other batch rows than the first".into(),
            ));
        }
        let mut buf = SlabBuffer::default();
        for (i, &b) in batches.iter().enumerate() {
            let n = layer.valid_keys(b).len();
            if !first && self.joints[i].nrows() != n {
                return Err(RolloutError::Input(format!(
                    "rollout: batch row {b} has {n} valid positions, {} in the first layer",
                    self.joints[i].nrows()
                )));
            }
            let mut fused = Array2::zeros((n, n));
            let id = slabs[0].layer;
            fuse_heads(layer, &heads, self.fuse, &mut fused, b, id, &mut buf)?;
            if first {
                self.joints.push(fused);
            } else {
                let mut product = Array2::zeros((n, n));
                block_product(&fused, &self.joints[i], &mut product);
                self.joints[i] = product;
            }
        }
        self.batches = batches;
        Ok(())
    }

    /// J of the layers pushed so far as a source of one layer and one head over `layer`'s
    /// positions, tokens and layer number (the last layer pushed): its rows are J's rows.
    pub fn current<'a, S: RowSource>(&'a self, layer: &'a S) -> CurrentJoint<'a, S> {
        let id = layer.slabs().first().map_or(0, |s| s.layer);
        CurrentJoint {
            chains: self,
            inner: layer,
            slabs: self
                .batches
                .iter()
                .map(|&batch| SlabId {
                    batch,
                    layer: id,
                    head: 0,
                })
                .collect(),
        }
    }
}

/// J after the layers pushed so far, as a row source (see [`LayerChains::current`]).
pub struct CurrentJoint<'a, S: RowSource> {
    chains: &'a LayerChains,
    inner: &'a S,
    slabs: Vec<SlabId>,
}

impl<S: RowSource> RowSource for CurrentJoint<'_, S> {
    fused_head_rows!();

    fn is_seekable(&self) -> bool {
        true
    }

    fn for_each_query_row(
        &self,
        s: SlabId,
        _buf: &mut SlabBuffer,
        f: impl FnMut(usize, u32, &[f32]),
    ) -> ingest::Result<()> {
        let i = self.chains.batches.binary_search(&s.batch).map_err(|_| {
            ingest::IngestError::invalid(
                std::path::Path::new("rollout"),
                format!("batch row {} is not in the chain", s.batch),
            )
        })?;
        let positions = self.inner.valid_keys(s.batch);
        for_each_joint_row(&self.chains.joints[i], positions, self.inner.dims().keys, f);
        Ok(())
    }
}
