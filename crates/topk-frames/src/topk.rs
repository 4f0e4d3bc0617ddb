//! `topk`: the k highest-scoring keys of every valid query row, as frame chunks.

use frame_sink::TokenDictionary;
use ingest::{RowSource, SlabBuffer, SlabId};
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{FrameError, Result};
use crate::frame::{f32_col, split_by, token_col, u16_col, u32_col};
use crate::rank::{key_position, select_top, Selection};
use crate::scratch::with_scratch;

/// Column names of a topk frame, in order.
pub const TOPK_COLUMNS: [&str; 9] = [
    "batch",
    "layer",
    "head",
    "query_position",
    "query_token",
    "position",
    "token",
    "rank",
    "score",
];

#[derive(Debug, Clone, Copy)]
pub struct TopkOptions {
    /// Keys per query row; `None` ranks every valid key (`--all`).
    pub k: Option<usize>,
    /// Rows per frame chunk (at least one slab per chunk).
    pub chunk_rows: usize,
}

/// Streams the topk frame of a source in chunks of about `chunk_rows` rows, in canonical
/// order (batch, layer, head, query_position, rank). Slabs of a chunk are processed in
/// parallel, each writing into its own fixed rows, so the bytes do not depend on threads.
pub struct TopkFrames<'a, S: RowSource> {
    src: &'a S,
    tokens: Option<&'a TokenDictionary>,
    slabs: Vec<SlabId>,
    next: usize,
    options: TopkOptions,
}

/// The rows of one slab inside a chunk's columns.
struct SlabRows<'c> {
    id: SlabId,
    batch: &'c mut [u32],
    layer: &'c mut [u16],
    head: &'c mut [u16],
    query_position: &'c mut [u32],
    query_token: &'c mut [u32],
    position: &'c mut [u32],
    token: &'c mut [u32],
    rank: &'c mut [u32],
    score: &'c mut [f32],
}

impl<'a, S: RowSource> TopkFrames<'a, S> {
    pub fn new(
        src: &'a S,
        tokens: Option<&'a TokenDictionary>,
        options: TopkOptions,
    ) -> Result<Self> {
        if options.k == Some(0) {
            return Err(FrameError::Usage("-k must be at least 1".into()));
        }
        Ok(TopkFrames {
            slabs: src.slabs(),
            src,
            tokens,
            next: 0,
            options,
        })
    }

    /// Slabs done so far and in all (for progress).
    pub fn progress(&self) -> (usize, usize) {
        (self.next, self.slabs.len())
    }

    fn per_query(&self, b: u32) -> usize {
        let nk = self.src.valid_keys(b).len();
        self.options.k.map_or(nk, |k| k.min(nk))
    }

    fn slab_rows(&self, id: SlabId) -> usize {
        self.src.valid_queries(id.batch).len() * self.per_query(id.batch)
    }

    /// An empty frame with the topk schema.
    pub fn empty(&self) -> Result<DataFrame> {
        self.build(&[])
    }

    fn build(&self, ids: &[SlabId]) -> Result<DataFrame> {
        let lens: Vec<usize> = ids.iter().map(|&id| self.slab_rows(id)).collect();
        let n: usize = lens.iter().sum();
        let tok_lens: Vec<usize> = if self.tokens.is_some() {
            lens.clone()
        } else {
            vec![0; lens.len()]
        };
        let tok_n = if self.tokens.is_some() { n } else { 0 };
        let mut batch = vec![0u32; n];
        let mut layer = vec![0u16; n];
        let mut head = vec![0u16; n];
        let mut query_position = vec![0u32; n];
        let mut query_token = vec![0u32; tok_n];
        let mut position = vec![0u32; n];
        let mut token = vec![0u32; tok_n];
        let mut rank = vec![0u32; n];
        let mut score = vec![0f32; n];
        let parts: Vec<SlabRows> = ids
            .iter()
            .zip(split_by(&mut batch, &lens))
            .zip(split_by(&mut layer, &lens))
            .zip(split_by(&mut head, &lens))
            .zip(split_by(&mut query_position, &lens))
            .zip(split_by(&mut query_token, &tok_lens))
            .zip(split_by(&mut position, &lens))
            .zip(split_by(&mut token, &tok_lens))
            .zip(split_by(&mut rank, &lens))
            .zip(split_by(&mut score, &lens))
            .map(
                |(
                    (
                        (
                            (
                                (((((id, batch), layer), head), query_position), query_token),
                                position,
                            ),
                            token,
                        ),
                        rank,
                    ),
                    score,
                )| SlabRows {
                    id: *id,
                    batch,
                    layer,
                    head,
                    query_position,
                    query_token,
                    position,
                    token,
                    rank,
                    score,
                },
            )
            .collect();
        let fill =
            |rows: SlabRows| with_scratch(|s| self.fill_slab(&mut s.slab, &mut s.selection, rows));
        if self.src.is_seekable() {
            parts.into_par_iter().try_for_each(fill)?;
        } else {
            parts.into_iter().try_for_each(fill)?;
        }
        let columns = vec![
            u32_col("batch", batch),
            u16_col("layer", layer),
            u16_col("head", head),
            u32_col("query_position", query_position),
            token_col("query_token", self.tokens, query_token, n),
            u32_col("position", position),
            token_col("token", self.tokens, token, n),
            u32_col("rank", rank),
            f32_col("score", score),
        ];
        Ok(DataFrame::new(n, columns)?)
    }

    fn fill_slab(&self, buf: &mut SlabBuffer, sel: &mut Selection, r: SlabRows) -> Result<()> {
        let id = r.id;
        r.batch.fill(id.batch);
        r.layer.fill(id.layer);
        r.head.fill(id.head);
        let keys = self.src.valid_keys(id.batch);
        let keys = (keys.len() < self.src.dims().keys).then_some(keys);
        let per = self.per_query(id.batch);
        let k = self.options.k.unwrap_or(usize::MAX);
        let codes = self.tokens.map(|t| t.row(id.batch));
        self.src.for_each_query_row(id, buf, |i, q, row| {
            select_top(row, keys, k, sel);
            let span = i * per..(i + 1) * per;
            r.query_position[span.clone()].fill(q);
            for (j, &key) in sel.best.iter().enumerate() {
                let p = key_position(key);
                r.position[span.start + j] = p;
                r.rank[span.start + j] = j as u32 + 1;
                r.score[span.start + j] = row[p as usize];
            }
            if let Some(codes) = codes {
                r.query_token[span.clone()].fill(codes[q as usize]);
                for (t, &p) in r.token[span.clone()].iter_mut().zip(&r.position[span]) {
                    *t = codes[p as usize];
                }
            }
        })?;
        Ok(())
    }
}

impl<S: RowSource> Iterator for TopkFrames<'_, S> {
    type Item = Result<DataFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.slabs.len() {
            return None;
        }
        let start = self.next;
        let mut rows = 0usize;
        while self.next < self.slabs.len()
            && (self.next == start
                || rows + self.slab_rows(self.slabs[self.next]) <= self.options.chunk_rows)
        {
            rows += self.slab_rows(self.slabs[self.next]);
            self.next += 1;
        }
        let ids = self.slabs[start..self.next].to_vec();
        Some(self.build(&ids))
    }
}
