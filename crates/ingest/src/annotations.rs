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
        let valid = match (&opts.attention_mask, &opts.padding_mask) {
            (Some(_), Some(p)) => bail!(
                p.name(),
                "give one mask: an attention mask (1 = real token) or a padding mask (True = padding), not both"
            ),
            (Some(p), None) => Some(read_mask(p, nb, nq, nk)?),
            (None, Some(p)) => Some(
                read_mask(p, nb, nq, nk)?
                    .into_iter()
                    .map(|padded| complement(&padded, nk))
                    .collect(),
            ),
            (None, None) => None,
        };
        let (valid_keys, valid_queries) = match valid {
            Some(v) => (v.clone(), v),
            None => (
                vec![(0..nk as u32).collect(); nb],
                vec![(0..nq as u32).collect(); nb],
            ),
        };
        let tokens = match &opts.tokens {
            TokenSpec::None => None,
            TokenSpec::File(p) => Some(Tokens::from_file(p, nb, square(attn_path, nq, nk)?)?),
            TokenSpec::Lists(lists) => Some(Tokens::from_lists(
                Path::new("<tokens list>"),
                lists,
                nb,
                square(attn_path, nq, nk)?,
            )?),
            TokenSpec::Ids { ids, vocab } => Some(Tokens::from_ids(
                ids,
                vocab,
                nb,
                square(attn_path, nq, nk)?,
            )?),
        };
        let head_importance = match &opts.head_importance {
            Some(p) => Some(read_head_importance(p, nl, nh)?),
            None => None,
        };
        Ok(Annotations {
            valid_keys,
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
        bail!(
            path,
            "attention contains {} at layer {}, batch {}, head {}, query {}, key {} (use --allow-nan to rank it last)",
            values[i], s.layer, s.batch, s.head, first_row + i / row_len, i % row_len
        );
    }
}

/// True when no value is NaN or ±Inf; written so that the compiler vectorises it (an early
/// exit per value, as `position` has, is several times slower on a hot path).
fn all_finite(values: &[f32]) -> bool {
    values
        .chunks(64)
        .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
}

fn square(path: &Path, nq: usize, nk: usize) -> Result<usize> {
    if nq != nk {
        bail!(
            path,
            "tokens and masks need square attention, got {nq} queries × {nk} keys"
        );
    }
    Ok(nq)
}

/// The positions `0..n` not in `positions` (both ascending).
fn complement(positions: &[u32], n: usize) -> Vec<u32> {
    (0..n as u32)
        .filter(|p| positions.binary_search(p).is_err())
        .collect()
}

fn read_mask(input: &TensorInput, batch: usize, nq: usize, nk: usize) -> Result<Vec<Vec<u32>>> {
    if nq != nk {
        bail!(
            input.name(),
            "an attention mask needs square attention, got {nq} queries × {nk} keys"
        );
    }
    mask_positions(input, batch, nk)
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
