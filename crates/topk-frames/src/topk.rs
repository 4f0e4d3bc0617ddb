//! `topk`: the k highest-scoring keys of every valid query row, as frame chunks.

use frame_sink::TokenDictionary;
use ingest::{RowSource, SlabBuffer, SlabId};
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{FrameError, Result};
use crate::frame::{f32_col, split_by, token_col, u16_col, u32_col};
use crate::rank::{
    key_position, key_score, rank_key, select_top, select_top_sparse, select_top_sparse_row,
    Selection,
};
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
    /// Rank only keys whose score is > 0 (a Longformer row has at most x + w + 1 of them).
    pub nonzero: bool,
    /// Rows per frame chunk (at least one slab per chunk).
    pub chunk_rows: usize,
}

/// The columns of one topk chunk.
#[derive(Default)]
struct TopkColumns {
    batch: Vec<u32>,
    layer: Vec<u16>,
    head: Vec<u16>,
    query_position: Vec<u32>,
    query_token: Vec<u32>,
    position: Vec<u32>,
    token: Vec<u32>,
    rank: Vec<u32>,
    score: Vec<f32>,
}

impl TopkColumns {
    fn into_frame(self, tokens: Option<&TokenDictionary>) -> Result<DataFrame> {
        let n = self.batch.len();
        let columns = vec![
            u32_col("batch", self.batch),
            u16_col("layer", self.layer),
            u16_col("head", self.head),
            u32_col("query_position", self.query_position),
            token_col("query_token", tokens, self.query_token, n),
            u32_col("position", self.position),
            token_col("token", tokens, self.token, n),
            u32_col("rank", self.rank),
            f32_col("score", self.score),
        ];
        Ok(DataFrame::new(n, columns)?)
    }
}

/// The selected rows of one slab when their number is not known beforehand (`nonzero`).
struct SlabSelection {
    id: SlabId,
    query_position: Vec<u32>,
    position: Vec<u32>,
    rank: Vec<u32>,
    score: Vec<f32>,
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

    /// Whether `ids` hold enough scores to share among threads: waking them costs more than
    /// ranking a few rows (a generation step's one query per slab), most of all when other
    /// threads (a model's) hold the cores. The rows are the same either way.
    fn is_worth_threads(&self, ids: &[SlabId]) -> bool {
        const SCORES_PER_THREADED_CHUNK: usize = 1 << 16;
        let keys = self.src.dims().keys;
        let scores: usize = ids
            .iter()
            .map(|id| self.src.valid_queries(id.batch).len() * keys)
            .sum();
        scores >= SCORES_PER_THREADED_CHUNK
    }

    /// An empty frame with the topk schema.
    pub fn empty(&self) -> Result<DataFrame> {
        self.build(&[])
    }

    fn build(&self, ids: &[SlabId]) -> Result<DataFrame> {
        if self.options.nonzero {
            return self.build_nonzero(ids);
        }
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
        if self.src.is_seekable() && self.is_worth_threads(ids) {
            parts.into_par_iter().try_for_each(fill)?;
        } else {
            parts.into_iter().try_for_each(fill)?;
        }
        TopkColumns {
            batch,
            layer,
            head,
            query_position,
            query_token,
            position,
            token,
            rank,
            score,
        }
        .into_frame(self.tokens)
    }

    /// `nonzero` chunks: each slab selects into its own vectors (how many keys score > 0 is
    /// known only after reading), then the chunk's columns are assembled in slab order.
    fn build_nonzero(&self, ids: &[SlabId]) -> Result<DataFrame> {
        let select = |&id: &SlabId| {
            with_scratch(|s| self.select_nonzero(id, &mut s.slab, &mut s.selection, &mut s.keys))
        };
        let parts: Vec<SlabSelection> = if self.src.is_seekable() {
            ids.par_iter().map(select).collect::<Result<_>>()?
        } else {
            ids.iter().map(select).collect::<Result<_>>()?
        };
        let mut c = TopkColumns::default();
        for part in parts {
            let (n, id) = (part.position.len(), part.id);
            c.batch.extend(std::iter::repeat_n(id.batch, n));
            c.layer.extend(std::iter::repeat_n(id.layer, n));
            c.head.extend(std::iter::repeat_n(id.head, n));
            if let Some(t) = self.tokens {
                let codes = t.row(id.batch);
                c.query_token
                    .extend(part.query_position.iter().map(|&q| codes[q as usize]));
                c.token
                    .extend(part.position.iter().map(|&p| codes[p as usize]));
            }
            c.query_position.extend(part.query_position);
            c.position.extend(part.position);
            c.rank.extend(part.rank);
            c.score.extend(part.score);
        }
        c.into_frame(self.tokens)
    }

    fn select_nonzero(
        &self,
        id: SlabId,
        buf: &mut SlabBuffer,
        sel: &mut Selection,
        positive: &mut Vec<u32>,
    ) -> Result<SlabSelection> {
        let mut out = SlabSelection {
            id,
            query_position: Vec::new(),
            position: Vec::new(),
            rank: Vec::new(),
            score: Vec::new(),
        };
        let keys = self.src.valid_keys(id.batch);
        let k = self.options.k.unwrap_or(usize::MAX);
        let mut push = |q: u32, best: &[u64], score_of: &dyn Fn(u32) -> f32| {
            for (j, &key) in best.iter().enumerate() {
                let p = key_position(key);
                out.query_position.push(q);
                out.position.push(p);
                out.rank.push(j as u32 + 1);
                out.score.push(score_of(p));
            }
        };
        if self.src.has_sparse_rows() {
            let mut scores = Vec::new();
            self.src.for_each_sparse_row(id, buf, |_, q, row| {
                positive.clear();
                scores.clear();
                for (p, x) in row.entries() {
                    if x > 0.0 {
                        positive.push(p);
                        scores.push(x);
                    }
                }
                select_top_sparse(positive, &scores, positive, k, sel);
                push(q, &sel.best, &|p| sparse_score(positive, &scores, p));
            })?;
        } else {
            self.src.for_each_query_row(id, buf, |_, q, row| {
                positive.clear();
                positive.extend(keys.iter().copied().filter(|&p| row[p as usize] > 0.0));
                select_top(row, Some(positive), k, sel);
                push(q, &sel.best, &|p| row[p as usize]);
            })?;
        }
        Ok(out)
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
        // `score_of(j, p)`: the score of the j-th best key, at position p.
        let mut write = |i: usize, q: u32, best: &[u64], score_of: &dyn Fn(usize, u32) -> f32| {
            let span = i * per..(i + 1) * per;
            r.query_position[span.clone()].fill(q);
            for (j, &key) in best.iter().enumerate() {
                let p = key_position(key);
                r.position[span.start + j] = p;
                r.rank[span.start + j] = j as u32 + 1;
                r.score[span.start + j] = score_of(j, p);
            }
            if let Some(codes) = codes {
                r.query_token[span.clone()].fill(codes[q as usize]);
                for (t, &p) in r.token[span.clone()].iter_mut().zip(&r.position[span]) {
                    *t = codes[p as usize];
                }
            }
        };
        let mut short = None;
        let ranked = self
            .src
            .for_each_ranked_row(id, buf, |i, q, positions, scores| {
                if positions.len() < per {
                    short.get_or_insert(positions.len());
                    return;
                }
                sel.best.clear();
                sel.best.extend(
                    positions[..per]
                        .iter()
                        .zip(scores)
                        .map(|(&p, &x)| rank_key(x, p)),
                );
                write(i, q, &sel.best, &|j, _| scores[j]);
            })?;
        if let Some(n) = short {
            return Err(FrameError::Usage(format!(
                "-k {per}: the layer came ranked with {n} keys per query"
            )));
        }
        if ranked {
            return Ok(());
        }
        if self.src.has_sparse_rows() {
            let valid = self.src.valid_keys(id.batch);
            self.src.for_each_sparse_row(id, buf, |i, q, row| {
                select_top_sparse_row(row, valid, k, sel);
                let best = &sel.best;
                write(i, q, best, &|j, p| {
                    key_score(best[j]).unwrap_or_else(|| row.score_at(p))
                });
            })?;
        } else {
            self.src.for_each_query_row(id, buf, |i, q, row| {
                select_top(row, keys, k, sel);
                write(i, q, &sel.best, &|_, p| row[p as usize]);
            })?;
        }
        Ok(())
    }
}

/// The score of key `p` in a sparse row (0 when it is not listed).
fn sparse_score(keys: &[u32], scores: &[f32], p: u32) -> f32 {
    keys.binary_search(&p).map_or(0.0, |j| scores[j])
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
