//! The one abstraction every analysis consumes.

use crate::annotations::Annotations;
use crate::error::Result;
use crate::source::{Dims, SlabBuffer, SlabId};
use crate::tokens::Tokens;

/// Attention rows, slab by slab: for each selected (batch, layer, head) in canonical order,
/// the rows of its valid queries over all keys, with masks and head importance already
/// applied. Dense tensors implement it with [`AttentionSource`](crate::AttentionSource); a
/// sparse format (Longformer's sliding window) implements it by scattering each row into
/// the row buffer, so no analysis needs to know where rows come from.
pub trait RowSource: Sync {
    /// Sizes of the canonical axes.
    fn dims(&self) -> Dims;

    /// Selections, masks, tokens and head importance of the input.
    fn annotations(&self) -> &Annotations;

    /// The selected slabs in canonical order: batch, then layer, then head.
    fn slabs(&self) -> Vec<SlabId> {
        self.annotations().slabs()
    }

    /// Valid query positions of batch row `b`, ascending.
    fn valid_queries(&self, b: u32) -> &[u32] {
        self.annotations().valid_queries(b)
    }

    /// Valid key positions of batch row `b`, ascending.
    fn valid_keys(&self, b: u32) -> &[u32] {
        self.annotations().valid_keys(b)
    }

    /// Token strings, when given.
    fn tokens(&self) -> Option<&Tokens> {
        self.annotations().tokens()
    }

    /// True when slabs may be read concurrently and in any order (false for a stream).
    fn is_seekable(&self) -> bool;

    /// Calls `f(i, q, row)` for every valid query `q` of slab `s` (the i-th valid one), in
    /// ascending order; `row` holds the scores of all keys (`dims().keys` of them).
    fn for_each_query_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        f: impl FnMut(usize, u32, &[f32]),
    ) -> Result<()>;

    /// Slab `s` as a matrix over its valid queries × valid keys, row-major.
    fn valid_matrix(&self, s: SlabId, buf: &mut SlabBuffer) -> Result<Vec<f32>> {
        let keys = self.valid_keys(s.batch);
        let mut out = Vec::with_capacity(self.valid_queries(s.batch).len() * keys.len());
        self.for_each_query_row(s, buf, |_, _, row| {
            out.extend(keys.iter().map(|&k| row[k as usize]))
        })?;
        Ok(out)
    }

    /// The attention each valid key of slab `s` receives: the sum over the valid queries, in
    /// f64, one value per entry of `valid_keys`.
    fn received(&self, s: SlabId, buf: &mut SlabBuffer) -> Result<Vec<f64>> {
        let mut acc = vec![0f64; self.dims().keys];
        self.for_each_query_row(s, buf, |_, _, row| crate::add_row_f64(&mut acc, row))?;
        Ok(self
            .valid_keys(s.batch)
            .iter()
            .map(|&k| acc[k as usize])
            .collect())
    }
}
