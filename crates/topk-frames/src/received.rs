//! `received`: how much attention each key receives, summed over the valid queries.

use frame_sink::TokenDictionary;
use ingest::{RowSource, SlabId};
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{FrameError, Result};
use crate::frame::{f32_col, token_col, u16_col, u32_col};
use crate::rank::{key_position, rank_key};
use crate::scratch::with_scratch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Normalize {
    #[default]
    None,
    /// One minimum and one maximum over every selected (batch, layer, head, valid key) sum,
    /// applied before reducing.
    MinMax,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduce {
    #[default]
    None,
    Heads,
    Layers,
    All,
}

impl Reduce {
    fn over_heads(self) -> bool {
        matches!(self, Reduce::Heads | Reduce::All)
    }

    fn over_layers(self) -> bool {
        matches!(self, Reduce::Layers | Reduce::All)
    }

    /// Output columns, in order.
    pub fn columns(self) -> Vec<&'static str> {
        [
            "batch", "layer", "head", "position", "token", "score", "rank",
        ]
        .into_iter()
        .filter(|c| !(*c == "layer" && self.over_layers() || *c == "head" && self.over_heads()))
        .collect()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReceivedOptions {
    pub normalize: Normalize,
    pub reduce: Reduce,
    /// Keep ranks ≤ k; `None` keeps every rank.
    pub k: Option<usize>,
}

/// Column sums of one slab over its valid queries, for its valid keys (f64).
/// The received frame of a source (one chunk: it has one row per selected key and group).
pub fn received_frame(
    src: &impl RowSource,
    tokens: Option<&TokenDictionary>,
    opts: ReceivedOptions,
) -> Result<DataFrame> {
    if opts.k == Some(0) {
        return Err(FrameError::Usage("-k must be at least 1".into()));
    }
    let sums = ReceivedSums::of(src)?;
    let keys: Vec<&[u32]> = (0..src.dims().batch as u32)
        .map(|b| src.valid_keys(b))
        .collect();
    sums.into_frame(&keys, tokens, opts)
}

/// The column sums of every selected slab of a source, before normalizing, reducing and
/// ranking: what a stream keeps of each layer until its batch's last layer arrives, so the
/// min-max and the reduction over layers see the whole batch.
#[derive(Debug, Default)]
pub struct ReceivedSums {
    slabs: Vec<SlabId>,
    sums: Vec<Vec<f64>>,
}

impl ReceivedSums {
    /// The sums of `src`'s slabs (f64, one per valid key), in slab order.
    pub fn of(src: &impl RowSource) -> Result<ReceivedSums> {
        let slabs = src.slabs();
        let sums_of = |&id: &SlabId| with_scratch(|s| src.received(id, &mut s.slab));
        let sums: Vec<Vec<f64>> = if src.is_seekable() {
            slabs
                .par_iter()
                .map(sums_of)
                .collect::<Result<_, ingest::IngestError>>()?
        } else {
            slabs
                .iter()
                .map(sums_of)
                .collect::<Result<_, ingest::IngestError>>()?
        };
        Ok(ReceivedSums { slabs, sums })
    }

    /// Adds `other`'s slabs as layer `layer` (a one-layer source's slabs are layer 0).
    pub fn append_layer(&mut self, other: ReceivedSums, layer: u16) {
        self.slabs
            .extend(other.slabs.into_iter().map(|id| SlabId { layer, ..id }));
        self.sums.extend(other.sums);
    }

    /// The received frame: min-max over every sum with `normalize`, then the reduction and
    /// the ranks. Slabs are taken in (batch, layer, head) order whatever order they were
    /// added in; `valid_keys[b]` are batch row b's valid key positions.
    pub fn into_frame(
        self,
        valid_keys: &[&[u32]],
        tokens: Option<&TokenDictionary>,
        opts: ReceivedOptions,
    ) -> Result<DataFrame> {
        let ReceivedSums { slabs, mut sums } = self;
        if opts.normalize == Normalize::MinMax {
            let all = sums.iter().flatten().filter(|v| !v.is_nan());
            let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
            let span = hi - lo;
            for v in sums.iter_mut().flatten() {
                *v = (*v - lo) / span;
            }
        }
        // Groups after reducing: slabs are in (batch, layer, head) order, so reduced groups are
        // runs of consecutive slabs sharing the kept keys.
        let group_of = |id: SlabId| {
            (
                id.batch,
                if opts.reduce.over_layers() {
                    0
                } else {
                    id.layer
                },
                if opts.reduce.over_heads() { 0 } else { id.head },
            )
        };
        let mut groups: Vec<((u32, u16, u16), Vec<f64>)> = Vec::new();
        let mut order: Vec<usize> = (0..slabs.len()).collect();
        order.sort_by_key(|&i| (group_of(slabs[i]), slabs[i].layer, slabs[i].head));
        for i in order {
            let g = group_of(slabs[i]);
            match groups.last_mut() {
                Some((last, acc)) if *last == g => {
                    acc.iter_mut().zip(&sums[i]).for_each(|(a, v)| *a += v)
                }
                _ => groups.push((g, sums[i].clone())),
            }
        }
        let mut cols = ReceivedColumns::default();
        for ((b, l, h), acc) in groups {
            let keys = valid_keys[b as usize];
            let scores: Vec<f32> = acc.iter().map(|&v| v as f32).collect();
            let mut ranked: Vec<u64> = scores
                .iter()
                .zip(keys)
                .map(|(&s, &p)| rank_key(s, p))
                .collect();
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            let keep = opts.k.unwrap_or(usize::MAX).min(ranked.len());
            let by_pos = |p: u32| keys.binary_search(&p).expect("ranked key is valid");
            for (r, &key) in ranked[..keep].iter().enumerate() {
                let p = key_position(key);
                cols.batch.push(b);
                cols.layer.push(l);
                cols.head.push(h);
                cols.position.push(p);
                if let Some(t) = tokens {
                    cols.token.push(t.code(b, p));
                }
                cols.score.push(scores[by_pos(p)]);
                cols.rank.push(r as u32 + 1);
            }
        }
        cols.into_frame(tokens, opts.reduce)
    }
}

#[derive(Default)]
struct ReceivedColumns {
    batch: Vec<u32>,
    layer: Vec<u16>,
    head: Vec<u16>,
    position: Vec<u32>,
    token: Vec<u32>,
    score: Vec<f32>,
    rank: Vec<u32>,
}

impl ReceivedColumns {
    fn into_frame(self, tokens: Option<&TokenDictionary>, reduce: Reduce) -> Result<DataFrame> {
        let n = self.batch.len();
        let mut columns = vec![u32_col("batch", self.batch)];
        if !reduce.over_layers() {
            columns.push(u16_col("layer", self.layer));
        }
        if !reduce.over_heads() {
            columns.push(u16_col("head", self.head));
        }
        columns.push(u32_col("position", self.position));
        columns.push(token_col("token", tokens, self.token, n));
        columns.push(f32_col("score", self.score));
        columns.push(u32_col("rank", self.rank));
        Ok(DataFrame::new(n, columns)?)
    }
}

/// The weights of a token text heatmap (as bertviz's and Clark et al.'s text views colour
/// tokens): for a source of one selected batch row, the attention each valid key receives,
/// summed over every selected layer, head and valid query after a min-max over the slabs —
/// `received --normalize minmax --reduce all`. Returns the key positions ascending and their
/// weights in 0..=1 (NaN where attention was NaN).
pub fn received_weights(src: &impl RowSource) -> Result<(Vec<u32>, Vec<f32>)> {
    let frame = received_frame(
        src,
        None,
        ReceivedOptions {
            normalize: Normalize::MinMax,
            reduce: Reduce::All,
            k: None,
        },
    )?;
    let frame = frame.sort(["position"], Default::default())?;
    let positions = frame
        .column("position")?
        .u32()?
        .into_no_null_iter()
        .collect();
    let weights = frame
        .column("score")?
        .f32()?
        .iter()
        .map(|v| v.unwrap_or(f32::NAN))
        .collect();
    Ok((positions, weights))
}
