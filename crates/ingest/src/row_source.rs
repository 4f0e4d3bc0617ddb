//! The one abstraction every analysis consumes.

use crate::annotations::Annotations;
use crate::error::Result;
use crate::source::{Dims, SlabBuffer, SlabId};
use crate::sparse_row::SparseRow;
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

    /// True when [`for_each_sparse_row`](Self::for_each_sparse_row) is the source's own form
    /// and cheaper than dense rows (Longformer's window: at most x + w + 1 entries of S).
    fn has_sparse_rows(&self) -> bool {
        false
    }

    /// Calls `f(i, q, row)` for every valid query `q` of slab `s` (the i-th valid one), in
    /// ascending order: the row's entries at valid keys, keys ascending, with masks and head
    /// importance applied as in [`for_each_query_row`](Self::for_each_query_row). Every entry
    /// that is not 0 (NaN included) is listed; every valid key not listed scores 0 (a listed
    /// entry may be 0 too). The default gathers the entries that are not 0 from the dense
    /// rows.
    fn for_each_sparse_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        mut f: impl FnMut(usize, u32, SparseRow<'_>),
    ) -> Result<()> {
        let valid = self.valid_keys(s.batch);
        let (mut keys, mut scores) = (Vec::new(), Vec::new());
        self.for_each_query_row(s, buf, |i, q, row| {
            keys.clear();
            scores.clear();
            for &k in valid {
                let a = row[k as usize];
                if a != 0.0 {
                    keys.push(k);
                    scores.push(a);
                }
            }
            f(i, q, SparseRow::listed(&keys, &scores))
        })
    }

    /// When the source holds each row's best keys already ranked (a layer reduced on its
    /// device: [`ReducedLayer`](crate::ReducedLayer)), calls `f(i, q, positions, scores)` for
    /// every valid query `q` of slab `s` (the i-th valid one) with its ranked valid keys, best
    /// first, and returns true; false, calling nothing, for a source of rows.
    fn for_each_ranked_row(
        &self,
        _s: SlabId,
        _buf: &mut SlabBuffer,
        _f: impl FnMut(usize, u32, &[u32], &[f32]),
    ) -> Result<bool> {
        Ok(false)
    }

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
        if self.has_sparse_rows() {
            // Unlisted keys add 0, so the sums are those of the dense rows, in row order.
            self.for_each_sparse_row(s, buf, |_, _, row| {
                for (first, scores) in row.runs() {
                    let first = first as usize;
                    crate::add_row_f64(&mut acc[first..first + scores.len()], scores);
                }
            })?;
        } else {
            self.for_each_query_row(s, buf, |_, _, row| crate::add_row_f64(&mut acc, row))?;
        }
        Ok(self
            .valid_keys(s.batch)
            .iter()
            .map(|&k| acc[k as usize])
            .collect())
    }
}

/// What is wrong with the padding mask of `src`, when it is plainly the other convention
/// (PyTorch's `key_padding_mask`, True = padding, given where HF's `attention_mask`, 1 = real
/// token, was meant — or the reverse). In the first selected slab of every batch row:
/// - the mask keeps no position at all (a real batch row has at least one token);
/// - or, in a row with padding, the kept queries give the kept keys no attention (at most
///   1e-6 of what the dropped keys receive) while the dropped keys receive some, or the kept
///   queries attend nowhere (HF Longformer zeroes padded queries' rows), where softmax rows of
///   real tokens sum to 1 (not checked under head importance, which may zero a head).
///
/// `None` when nothing looks wrong or the source cannot be read twice (a stream).
pub fn mask_problem(src: &impl RowSource) -> Result<Option<String>> {
    let mut slabs = src.slabs();
    slabs.dedup_by_key(|s| s.batch);
    if let Some(s) = slabs.iter().find(|s| src.valid_keys(s.batch).is_empty()) {
        return Ok(Some(format!(
            "the mask keeps no position of batch row {}",
            s.batch
        )));
    }
    if !src.is_seekable() {
        return Ok(None);
    }
    let keys = src.dims().keys;
    let scaled = src.annotations().has_head_importance();
    let mut checked = 0;
    let mut buf = SlabBuffer::default();
    for s in slabs {
        let valid = src.valid_keys(s.batch);
        if valid.len() == keys {
            continue;
        }
        let (mut to_valid, mut total) = (0f64, 0f64);
        src.for_each_query_row(s, &mut buf, |_, _, row| {
            to_valid += valid.iter().map(|&k| row[k as usize] as f64).sum::<f64>();
            total += row.iter().map(|&a| a as f64).sum::<f64>();
        })?;
        let to_padded = total - to_valid;
        let drops_the_attended = to_padded > 0.0 && to_valid <= 1e-6 * to_padded;
        let attends_nowhere = total == 0.0 && !scaled;
        if !(drops_the_attended || attends_nowhere) {
            return Ok(None);
        }
        checked += 1;
    }
    Ok((checked > 0).then(|| {
        "the mask looks inverted: the positions it keeps receive no attention while those it drops do".to_string()
    }))
}
