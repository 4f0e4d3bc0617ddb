//! A layer reduced where it was computed (a GPU, by `attnframes._device`): each query's best
//! keys already ranked, and each key's received sum, with the masks, tokens and selections of
//! the dense layer it came from. What the analyses read of it is what they would have computed
//! from that layer; its rows themselves are not there.

use std::path::{Path, PathBuf};

use crate::annotations::Annotations;
use crate::dtype::Dtype;
use crate::error::{bail, IngestError, Result};
use crate::row_source::RowSource;
use crate::source::{Dims, SlabBuffer, SlabId, SourceOptions};
use crate::tensor::{TensorFile, TensorInput};

/// What a device computed of one layer (B, H, Q, K).
#[derive(Debug, Clone, Default)]
pub struct ReducedInput {
    /// Q and K of the layer.
    pub queries: usize,
    pub keys: usize,
    /// (B, H, Q, k) int32/int64 key positions, best first, each query's k best by the ranking
    /// order (score descending, NaN last, ties to the lower position), over the valid keys;
    /// entries past the valid keys are −1 or a masked position.
    pub positions: Option<TensorInput>,
    /// (B, H, Q, k) float32: the scores at `positions`.
    pub scores: Option<TensorInput>,
    /// (B, H, K) float64: each key's attention summed over the valid queries in query order,
    /// as [`RowSource::received`] adds them.
    pub sums: Option<TensorInput>,
    /// The first NaN or ±Inf of the layer's valid query rows, in (B, H, Q, K) C order: its
    /// flat index and value. Without `allow_nan`, reading its slab raises the error reading
    /// the layer's rows would.
    pub non_finite: Option<(u64, f32)>,
}

/// Each query's best keys, flat (B, H, Q, k).
struct Ranked {
    k: usize,
    positions: Vec<i64>,
    scores: Vec<f32>,
}

/// One reduced layer as a row source of one layer: ranked rows and received sums only.
pub struct ReducedLayer {
    dims: Dims,
    annotations: Annotations,
    ranked: Option<Ranked>,
    sums: Option<Vec<f64>>,
    /// The first NaN or ±Inf where NaN is not allowed: its slab, query position, key, value.
    non_finite: Option<(SlabId, usize, usize, f32)>,
    path: PathBuf,
}

impl ReducedLayer {
    /// Opens `input` with the masks, tokens and selections of `opts` (its `attn` names the
    /// layer in messages).
    ///
    /// # Errors
    /// Neither ranked rows nor sums; positions that are not (B, H, Q, k) integers with scores
    /// (B, H, Q, k) float32 beside them; sums that are not (B, H, K) float64; arrays that
    /// disagree on B or H; head importance (a device applies it itself); and the errors of
    /// the annotations.
    pub fn open(opts: &SourceOptions, input: &ReducedInput) -> Result<ReducedLayer> {
        let path = opts.attn.clone();
        if opts.head_importance.is_some() {
            bail!(
                &path,
                "a reduced layer has its head importance applied where it was reduced"
            );
        }
        let (q, k) = (input.queries, input.keys);
        let mut bh: Option<(usize, usize)> = None;
        let mut agree = |b: usize, h: usize, what: &str| -> Result<()> {
            match bh {
                Some(seen) if seen != (b, h) => bail!(
                    &path,
                    "{what} has (B, H) = ({b}, {h}), the ranked keys ({}, {})",
                    seen.0,
                    seen.1
                ),
                _ => {
                    bh = Some((b, h));
                    Ok(())
                }
            }
        };
        let ranked = match (&input.positions, &input.scores) {
            (Some(p), Some(s)) => {
                let (positions, scores) = (p.open()?, s.open()?);
                let [b, h, nq, nk] = four_dims(&positions)?;
                if nq != q || positions.element.is_float() {
                    bail!(
                        p.name(),
                        "ranked positions must be (B, H, {q}, k) integers, got {:?} of {}",
                        positions.shape,
                        positions.element.name()
                    );
                }
                if scores.shape != positions.shape || scores.element.dtype != Dtype::F32 {
                    bail!(
                        s.name(),
                        "ranked scores must be float32 of the positions' shape {:?}, got {:?} of {}",
                        positions.shape,
                        scores.shape,
                        scores.element.name()
                    );
                }
                agree(b, h, "ranked positions")?;
                Some(Ranked {
                    k: nk,
                    positions: i64_values(&positions)?,
                    scores: f32_values(&scores)?,
                })
            }
            (None, None) => None,
            _ => bail!(
                &path,
                "ranked keys need both their positions and their scores"
            ),
        };
        let sums = match &input.sums {
            Some(s) => {
                let t = s.open()?;
                let [b, h, nk] = match t.shape.as_slice() {
                    &[b, h, nk] => [b, h, nk],
                    shape => bail!(s.name(), "received sums must be (B, H, {k}), got {shape:?}"),
                };
                if nk != k || t.element.dtype != Dtype::F64 {
                    bail!(
                        s.name(),
                        "received sums must be (B, H, {k}) float64, got {:?} of {}",
                        t.shape,
                        t.element.name()
                    );
                }
                agree(b, h, "received sums")?;
                Some(t.to_f64_vec()?)
            }
            None => None,
        };
        let Some((batch, heads)) = bh else {
            bail!(&path, "a reduced layer needs ranked keys or received sums");
        };
        let dims = Dims {
            layers: 1,
            batch,
            heads,
            queries: q,
            keys: k,
        };
        let annotations = Annotations::load(opts, dims, &path)?;
        // Raised when its slab is read, as a layer's rows raise it.
        let non_finite = input
            .non_finite
            .filter(|_| !opts.allow_nan)
            .map(|(at, value)| {
                let at = at as usize;
                let (key, row) = (at % k, at / k);
                let (query, slab) = (row % q, row / q);
                let s = SlabId {
                    batch: (slab / heads) as u32,
                    layer: 0,
                    head: (slab % heads) as u16,
                };
                (s, query + annotations.query_offset(), key, value)
            });
        Ok(ReducedLayer {
            dims,
            annotations,
            ranked,
            sums,
            non_finite,
            path,
        })
    }

    /// The error of a NaN or ±Inf in slab `s`, as reading its rows would raise it.
    fn check_finite(&self, s: SlabId) -> Result<()> {
        match self.non_finite {
            Some((at, query, key, value)) if at == s => Err(crate::annotations::non_finite(
                &self.path, s, query, key, value,
            )),
            _ => Ok(()),
        }
    }

    fn not_reduced(&self, what: &str) -> IngestError {
        IngestError::invalid(
            &self.path,
            format!("a layer reduced on its device holds {what}; this needs its attention rows"),
        )
    }
}

/// The four axes of a (B, H, Q, k) array.
fn four_dims(t: &TensorFile) -> Result<[usize; 4]> {
    match t.shape.as_slice() {
        &[b, h, q, k] => Ok([b, h, q, k]),
        shape => bail!(&t.path, "ranked keys must be (B, H, Q, k), got {shape:?}"),
    }
}

/// An integer array's values in storage order (a device's output: C order), read at once.
fn i64_values(t: &TensorFile) -> Result<Vec<i64>> {
    if t.fortran_order {
        return t.to_i64_vec();
    }
    let w = t.element.size();
    let mut raw = vec![0u8; t.len() as usize * w];
    t.read_at(0, &mut raw)?;
    Ok(raw.chunks_exact(w).map(|b| t.element.to_i64(b)).collect())
}

/// A float32 array's values as stored (NaN payloads and signed zeros kept).
fn f32_values(t: &TensorFile) -> Result<Vec<f32>> {
    let mut out = vec![0f32; t.len() as usize];
    let mut scratch = Vec::new();
    t.read_f32(0, &mut out, &mut scratch)?;
    Ok(out)
}

impl RowSource for ReducedLayer {
    fn dims(&self) -> Dims {
        self.dims
    }

    fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    fn is_seekable(&self) -> bool {
        true
    }

    fn for_each_query_row(
        &self,
        _: SlabId,
        _: &mut SlabBuffer,
        _: impl FnMut(usize, u32, &[f32]),
    ) -> Result<()> {
        Err(self.not_reduced(self.what()))
    }

    fn for_each_ranked_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        mut f: impl FnMut(usize, u32, &[u32], &[f32]),
    ) -> Result<bool> {
        let Some(r) = &self.ranked else {
            return Err(self.not_reduced(self.what()));
        };
        self.check_finite(s)?;
        let Dims { heads, queries, .. } = self.dims;
        let valid = self.valid_keys(s.batch);
        let offset = self.annotations.query_offset();
        for (i, &q) in self.valid_queries(s.batch).iter().enumerate() {
            let row = (s.batch as usize * heads + s.head as usize) * queries + q as usize - offset;
            let (positions, scores) = (&r.positions[row * r.k..][..r.k], &r.scores[row * r.k..]);
            buf.sparse_keys.clear();
            buf.sparse_scores.clear();
            for (j, &p) in positions.iter().enumerate() {
                if p >= 0 && valid.binary_search(&(p as u32)).is_ok() {
                    buf.sparse_keys.push(p as u32);
                    buf.sparse_scores.push(scores[j]);
                }
            }
            f(i, q, &buf.sparse_keys, &buf.sparse_scores);
        }
        Ok(true)
    }

    fn received(&self, s: SlabId, _: &mut SlabBuffer) -> Result<Vec<f64>> {
        let Some(sums) = &self.sums else {
            return Err(self.not_reduced(self.what()));
        };
        self.check_finite(s)?;
        let Dims { heads, keys, .. } = self.dims;
        let at = (s.batch as usize * heads + s.head as usize) * keys;
        Ok(self
            .valid_keys(s.batch)
            .iter()
            .map(|&k| sums[at + k as usize])
            .collect())
    }
}

impl ReducedLayer {
    fn what(&self) -> &'static str {
        match (&self.ranked, &self.sums) {
            (Some(_), Some(_)) => "ranked keys and received sums only",
            (Some(_), None) => "ranked keys only",
            _ => "received sums only",
        }
    }

    /// The shapes the layer came with, for the `attnframes` metadata.
    pub fn shape(&self) -> [usize; 4] {
        let d = self.dims;
        [d.batch, d.heads, d.queries, d.keys]
    }

    /// How many keys each query's ranked row holds (None without ranked rows).
    pub fn ranked_k(&self) -> Option<usize> {
        self.ranked.as_ref().map(|r| r.k)
    }

    /// The file or array messages name.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
