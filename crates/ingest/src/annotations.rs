//! What every row source applies besides its tensor: selections, the attention mask,
//! tokens and head importance — loaded and checked once, the same for dense and sparse inputs.

use std::path::Path;

use crate::error::{bail, IngestError, Result};
use crate::selection::parse_selection;
use crate::source::{Dims, SlabId, SourceOptions, TokenSpec};
use crate::tensor::TensorInput;
use crate::tokens::Tokens;

/// Selections, masks, tokens and head importance of one input.
pub struct Annotations {
    /// Valid (non-padded) key positions of each batch row, ascending.
    valid_keys: Vec<Vec<u32>>,
    /// The position of the first query row: query row i is position `query_offset + i`.
    query_offset: usize,
    /// Valid query positions (the mask's positions too when there is one).
    valid_queries: Vec<Vec<u32>>,
    tokens: Option<Tokens>,
    head_importance: Option<Vec<f64>>,
    heads_total: usize,
    pub layers: Vec<u16>,
    pub heads: Vec<u16>,
    pub batches: Vec<u32>,
    pub allow_nan: bool,
}

/// Which positions of the keys' sequence the query axis holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueryPositions {
    /// Positions 0..Q when Q = K; when Q < K, the last Q positions, as the queries of a KV
    /// cache are (`generate()`'s steps after the prompt: (B, H, 1, P + t)); when Q > K, another
    /// sequence's (cross-attention).
    #[default]
    Auto,
    /// Query row i is position `first + i`.
    Offset(usize),
    /// The queries are another sequence's (an encoder-decoder's cross-attention): query
    /// positions 0..Q of that sequence; masks and tokens describe the keys' sequence.
    Cross,
}

impl Annotations {
    /// Loads everything `opts` names besides the tensor, checked against `dims`; errors about
    /// selections name `attn_path`.
    pub fn load(opts: &SourceOptions, dims: Dims, attn_path: &Path) -> Result<Annotations> {
        let Dims {
            layers: nl,
            batch: nb,
            heads: nh,
            queries: nq,
            keys: nk,
        } = dims;
        let sel = |spec: &Option<String>, n: usize, what: &str| {
            parse_selection(spec.as_deref(), n, what)
                .map_err(|r| IngestError::invalid(attn_path, r))
        };
        let layers = sel(&opts.layers, nl, "layer")?
            .into_iter()
            .map(|i| i as u16)
            .collect();
        let heads = sel(&opts.heads, nh, "head")?
            .into_iter()
            .map(|i| i as u16)
            .collect();
        let batches = sel(&opts.batch, nb, "batch")?
            .into_iter()
            .map(|i| i as u32)
            .collect();
        // None: the queries are another sequence's (cross-attention).
        let offset = query_offset(opts.queries, nq, nk, attn_path)?;
        let valid = match (&opts.attention_mask, &opts.padding_mask) {
            (Some(_), Some(p)) => bail!(
                p.name(),
                "give one mask: an attention mask (1 = real token) or a padding mask (True = padding), not both"
            ),
            (Some(p), None) => Some(mask_positions(p, nb, nk)?),
            (None, Some(p)) => Some(
                mask_positions(p, nb, nk)?
                    .into_iter()
                    .map(|padded| complement(&padded, nk))
                    .collect(),
            ),
            (None, None) => None,
        };
        let all_queries = || -> Vec<u32> {
            let first = offset.unwrap_or(0) as u32;
            (first..first + nq as u32).collect()
        };
        let (valid_keys, valid_queries) = match (valid, offset) {
            (Some(v), Some(first)) => {
                let rows = first as u32..(first + nq) as u32;
                let queries = v
                    .iter()
                    .map(|keys| keys.iter().copied().filter(|p| rows.contains(p)).collect())
                    .collect();
                (v, queries)
            }
            // A mask describes the keys' sequence: cross-attention's queries are all kept.
            (Some(v), None) => (v, vec![all_queries(); nb]),
            (None, _) => (vec![(0..nk as u32).collect(); nb], vec![all_queries(); nb]),
        };
        let positions = match &opts.tokens {
            TokenSpec::None => 0,
            _ => token_positions(offset, nq, nk, attn_path)?,
        };
        let tokens = match &opts.tokens {
            TokenSpec::None => None,
            TokenSpec::File(p) => Some(Tokens::from_file(p, nb, positions)?),
            TokenSpec::Lists(lists) => Some(Tokens::from_lists(
                Path::new("<tokens list>"),
                lists,
                nb,
                positions,
            )?),
            TokenSpec::Ids { ids, vocab } => Some(Tokens::from_ids(ids, vocab, nb, positions)?),
        };
        let head_importance = match &opts.head_importance {
            Some(p) => Some(read_head_importance(p, nl, nh)?),
            None => None,
        };
        Ok(Annotations {
            valid_keys,
            query_offset: offset.unwrap_or(0),
            valid_queries,
            tokens,
            head_importance,
            heads_total: nh,
            layers,
            heads,
            batches,
            allow_nan: opts.allow_nan,
        })
    }

    /// The selected slabs in canonical order: batch, then layer, then head.
    pub fn slabs(&self) -> Vec<SlabId> {
        let mut out = Vec::with_capacity(self.batches.len() * self.layers.len() * self.heads.len());
        for &batch in &self.batches {
            for &layer in &self.layers {
                for &head in &self.heads {
                    out.push(SlabId { batch, layer, head });
                }
            }
        }
        out
    }

    pub fn valid_keys(&self, b: u32) -> &[u32] {
        &self.valid_keys[b as usize]
    }

    pub fn valid_queries(&self, b: u32) -> &[u32] {
        &self.valid_queries[b as usize]
    }

    /// The position of query row 0: K − Q when the queries are the last positions (a KV
    /// cache's), else 0.
    pub fn query_offset(&self) -> usize {
        self.query_offset
    }

    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    pub fn has_head_importance(&self) -> bool {
        self.head_importance.is_some()
    }

    /// Multiplies `values` (rows of slab `s`) by the head's importance, if any.
    pub fn scale(&self, s: SlabId, values: &mut [f32]) {
        if let Some(hi) = &self.head_importance {
            let f = hi[s.layer as usize * self.heads_total + s.head as usize];
            for v in values {
                *v = (*v as f64 * f) as f32;
            }
        }
    }

    /// An error naming `path` when `values` (rows of `row_len` values, the first being
    /// `first_row` of slab `s`) hold NaN or ±Inf, unless they are allowed.
    pub fn check_finite(
        &self,
        path: &Path,
        s: SlabId,
        first_row: usize,
        row_len: usize,
        values: &[f32],
    ) -> Result<()> {
        if self.allow_nan || all_finite(values) {
            return Ok(());
        }
        let i = values
            .iter()
            .position(|v| !v.is_finite())
            .expect("a value is not finite");
        Err(non_finite(
            path,
            s,
            first_row + i / row_len,
            i % row_len,
            values[i],
        ))
    }
}

/// The error for a NaN or ±Inf `value` at query position `query`, key `key` of slab `s`.
pub fn non_finite(path: &Path, s: SlabId, query: usize, key: usize, value: f32) -> IngestError {
    IngestError::invalid(
        path,
        format!(
            "attention contains {value} at layer {}, batch {}, head {}, query {query}, key {key} (use --allow-nan to rank it last)",
            s.layer, s.batch, s.head
        ),
    )
}

/// True when no value is NaN or ±Inf; written so that the compiler vectorises it (an early
/// exit per value, as `position` has, is several times slower on a hot path). AVX-512 and
/// AVX2 copies are chosen at run time.
fn all_finite(values: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        return unsafe { all_finite_avx512(values) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { all_finite_avx2(values) };
    }
    all_finite_portable(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn all_finite_avx512(values: &[f32]) -> bool {
    all_finite_portable(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn all_finite_avx2(values: &[f32]) -> bool {
    all_finite_portable(values)
}

/// The magnitude bits of every value of a chunk, their maximum below infinity's: integer
/// operations only, which vectorise without the comparisons' masks.
#[inline(always)]
fn all_finite_portable(values: &[f32]) -> bool {
    values.chunks(256).all(|c| {
        c.iter()
            .fold(0u32, |most, v| most.max(v.to_bits() & 0x7fff_ffff))
            < 0x7f80_0000
    })
}

/// The positions `0..n` not in `positions` (both ascending).
fn complement(positions: &[u32], n: usize) -> Vec<u32> {
    (0..n as u32)
        .filter(|p| positions.binary_search(p).is_err())
        .collect()
}

/// Where the query rows sit among the K positions of the keys' sequence; None when they are
/// another sequence's (cross-attention: `Cross`, or more queries than keys).
fn query_offset(q: QueryPositions, nq: usize, nk: usize, path: &Path) -> Result<Option<usize>> {
    Ok(match q {
        QueryPositions::Auto if nq <= nk => Some(nk - nq),
        QueryPositions::Auto | QueryPositions::Cross => None,
        QueryPositions::Offset(first) if first + nq <= nk => Some(first),
        QueryPositions::Offset(first) => bail!(
            path,
            "--query-offset {first}: {nq} queries from position {first} pass the {nk} keys"
        ),
    })
}

/// How many positions a batch row's tokens name: the K positions of the keys' sequence.
fn token_positions(offset: Option<usize>, nq: usize, nk: usize, path: &Path) -> Result<usize> {
    match offset {
        Some(_) => Ok(nk),
        None => bail!(
            path,
            "tokens name one sequence, but these {nq} queries attend to another one of {nk} keys (cross-attention): leave the tokens out"
        ),
    }
}

/// The nonzero positions of each batch row of a (batch, seq) mask — or of a (seq,) mask
/// shared by every row — such as HF's `attention_mask` or `global_attention_mask`.
pub fn mask_positions(input: &TensorInput, batch: usize, seq: usize) -> Result<Vec<Vec<u32>>> {
    let path = input.name();
    let m = input.open()?;
    let rows = match m.shape.as_slice() {
        [b, s] if *b == batch && *s == seq => batch,
        [s] if *s == seq => 1,
        shape => bail!(
            path,
            "mask shape {shape:?} does not match (batch, sequence) = ({batch}, {seq})"
        ),
    };
    let v = m.to_f64_vec()?;
    let positions: Vec<Vec<u32>> = (0..rows)
        .map(|r| {
            (0..seq)
                .filter(|&p| v[r * seq + p] != 0.0)
                .map(|p| p as u32)
                .collect()
        })
        .collect();
    Ok(if rows == 1 {
        vec![positions[0].clone(); batch]
    } else {
        positions
    })
}

fn read_head_importance(input: &TensorInput, layers: usize, heads: usize) -> Result<Vec<f64>> {
    let path = input.name();
    let t = input.open()?;
    if t.shape != [layers, heads] {
        bail!(
            path,
            "head importance shape {:?} does not match (layers, heads) = ({layers}, {heads})",
            t.shape
        );
    }
    let v = t.to_f64_vec()?;
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        bail!(path, "head importance contains {x}");
    }
    Ok(v)
}
