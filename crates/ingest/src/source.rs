//! The dense row source: attention slabs (one Q × K matrix per batch, layer, head) in
//! canonical order, with masks, head importance, selections and tokens applied once.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::dtype::{Dtype, Element};

use crate::annotations::{Annotations, QueryPositions};
use crate::error::{bail, Result};
use crate::layout::{self, Layout};
use crate::row_source::RowSource;
use crate::tensor::{SharedArray, TensorFile, TensorInput};

/// Where the token strings come from.
#[derive(Debug, Clone, Default)]
pub enum TokenSpec {
    #[default]
    None,
    File(PathBuf),
    /// Lists in memory: one per batch row, or one for every row.
    Lists(Vec<Vec<String>>),
    Ids {
        ids: TensorInput,
        vocab: PathBuf,
    },
}

/// Everything that defines a dense attention input.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// The attention file; with `attn_array`, only the name messages give the array.
    pub attn: PathBuf,
    /// The attention as an array in memory, read in place instead of `attn`'s file.
    pub attn_array: Option<SharedArray>,
    pub attn_key: Option<String>,
    pub layout: Option<String>,
    /// (B, S) HF `attention_mask`: nonzero = a real token, 0 = padding.
    pub attention_mask: Option<TensorInput>,
    /// (B, S) PyTorch `key_padding_mask` / `src_key_padding_mask`: nonzero (True) = padding.
    pub padding_mask: Option<TensorInput>,
    pub tokens: TokenSpec,
    pub head_importance: Option<TensorInput>,
    pub layers: Option<String>,
    pub heads: Option<String>,
    pub batch: Option<String>,
    pub allow_nan: bool,
    /// Which positions the query rows are (default: the last Q of K, all when square).
    pub queries: QueryPositions,
}

impl SourceOptions {
    /// The attention tensor: the in-memory array when there is one, else `attn`'s file.
    pub fn open_attn(&self) -> Result<TensorFile> {
        match &self.attn_array {
            Some(array) => TensorFile::from_shared(array),
            None => TensorFile::open(&self.attn, self.attn_key.as_deref()),
        }
    }
}

/// One (batch, layer, head) slab, numbered as in the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlabId {
    pub batch: u32,
    pub layer: u16,
    pub head: u16,
}

/// Sizes of the canonical axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub layers: usize,
    pub batch: usize,
    pub heads: usize,
    pub queries: usize,
    pub keys: usize,
}

/// How one slab sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlabPlan {
    /// Q × K row-major block: row blocks are read with positioned reads.
    Contiguous,
    /// Anything else (keys before queries, Fortran order): the data is in memory and
    /// gathered element by element.
    Strided,
}

/// Slabs of at least this many bytes are memory-mapped rather than copied.
const MAP_MIN_BYTES: usize = 4 << 20;

/// Rows per block so that one block of f32 values stays in the L2 cache.
const BLOCK_VALUES: usize = 1 << 16;

/// Reused per-thread scratch for reading slabs.
#[derive(Default)]
pub struct SlabBuffer {
    /// Raw bytes before conversion.
    pub bytes: Vec<u8>,
    /// Rows as read (queries × keys for dense slabs).
    pub values: Vec<f32>,
    /// Second input of a source that combines two tensors (Longformer's global rows).
    pub extra: Vec<f32>,
    /// One assembled row, for sources whose rows are not stored as such.
    pub row: Vec<f32>,
    /// One sparse row: its keys (ascending) and their scores.
    pub sparse_keys: Vec<u32>,
    pub sparse_scores: Vec<f32>,
}

/// A dense attention tensor opened for analysis: the row source every analysis consumes.
pub struct AttentionSource {
    pub tensor: TensorFile,
    pub layout: Layout,
    pub dims: Dims,
    strides: [u64; 5],
    plan: SlabPlan,
    /// Selections, masks, tokens and head importance.
    pub annotations: Annotations,
}

impl AttentionSource {
    pub fn open(opts: &SourceOptions) -> Result<AttentionSource> {
        Self::of_tensor(opts.open_attn()?, opts)
    }

    /// The source of an opened `tensor`, with everything else of `opts`.
    pub fn of_tensor(tensor: TensorFile, opts: &SourceOptions) -> Result<AttentionSource> {
        let path = tensor.path.clone();
        if !tensor.element.is_float() {
            bail!(
                &path,
                "attention must be float16/32/64 (or bfloat16), got {}",
                tensor.element.name()
            );
        }
        let layout = Layout::resolve(opts.layout.as_deref(), &tensor.shape, &path)?;
        let [nl, nb, nh, nq, nk] = layout.canonical_shape(&tensor.shape);
        if nq == 0 || nk == 0 || nl == 0 || nb == 0 || nh == 0 {
            bail!(&path, "tensor {:?} has an empty axis", tensor.shape);
        }
        let dims = Dims {
            layers: nl,
            batch: nb,
            heads: nh,
            queries: nq,
            keys: nk,
        };
        let strides = layout.canonical_strides(&tensor.strides());
        let plan = if strides[layout::K] == 1 && strides[layout::Q] == nk as u64 {
            SlabPlan::Contiguous
        } else {
            SlabPlan::Strided
        };
        let annotations = Annotations::load(opts, dims, &path)?;
        let mut source = AttentionSource {
            tensor,
            layout,
            dims,
            strides,
            plan,
            annotations,
        };
        // Slabs that are not contiguous, or a stream whose order is not slab order, are
        // read from memory (the file's own order cannot be followed slab by slab).
        let stream_out_of_order = !source.tensor.is_seekable() && !source.offsets_ascend();
        if source.plan == SlabPlan::Strided || stream_out_of_order {
            source.tensor.load_into_memory()?;
        }
        Ok(source)
    }

    fn offsets_ascend(&self) -> bool {
        let offs: Vec<u64> = self.slabs().iter().map(|&s| self.slab_offset(s)).collect();
        offs.windows(2).all(|w| w[0] < w[1])
    }

    pub fn path(&self) -> &Path {
        &self.tensor.path
    }

    /// A warning for a tensor that looks like HF Longformer's sliding-window tensor read as
    /// dense attention: a key axis that is odd (a window w + 1), at least 3 and shorter than
    /// the query axis, with no tokens to say what the keys are. `None` otherwise.
    pub fn sliding_window_hint(&self) -> Option<String> {
        let Dims { queries, keys, .. } = self.dims;
        let looks_banded = keys % 2 == 1 && keys >= 3 && keys < queries;
        (looks_banded && RowSource::tokens(self).is_none()).then(|| {
            format!(
                "{}: the key axis ({keys}) is odd and shorter than the query axis ({queries}), as in Longformer's sliding-window tensor (L,B,H,S,x+w+1); if it is one, add --sliding-window (no global tokens) or --global-attn",
                self.tensor.path.display()
            )
        })
    }

    fn slab_offset(&self, s: SlabId) -> u64 {
        s.layer as u64 * self.strides[layout::L]
            + s.batch as u64 * self.strides[layout::B]
            + s.head as u64 * self.strides[layout::H]
    }

    /// Query rows per block such that a block of values fits in cache: analyses read a slab
    /// block by block with [`read_rows`](Self::read_rows) and work on it while it is hot.
    pub fn rows_per_block(&self) -> usize {
        (BLOCK_VALUES / self.dims.keys).max(1)
    }

    /// Large little-endian f32 slabs in a file with nothing to apply are read in place through
    /// a short-lived memory map: no copy, and the kernel maps page-cache pages in batches
    /// (when the slab's rows are one region of the file: not across a strided view's gaps).
    /// Small slabs are copied with positioned reads: for them, the map and unmap (a TLB
    /// shootdown on every other core) cost more than the copy.
    fn zero_copy(&self) -> bool {
        self.plan == SlabPlan::Contiguous
            && self.dims.queries * self.dims.keys * 4 >= MAP_MIN_BYTES
            && self.tensor.element == Element::little(Dtype::F32)
            && !self.annotations.has_head_importance()
            && self.tensor.file_aligned(4)
            && cfg!(target_endian = "little")
    }

    /// Calls `f` on each valid row of a mapped slab; false (nothing called) when the rows are
    /// not one region of the file.
    fn for_each_mapped_row(
        &self,
        s: SlabId,
        f: &mut impl FnMut(usize, u32, &[f32]),
    ) -> Result<bool> {
        let nk = self.dims.keys;
        let off = self.annotations.query_offset();
        let queries = self.valid_queries(s.batch);
        let (Some(&first), Some(&last)) = (queries.first(), queries.last()) else {
            return Ok(true);
        };
        // Rows of the slab, not positions.
        let (first, last) = (first as usize - off, last as usize - off);
        let start = (self.slab_offset(s) + (first * nk) as u64) * 4;
        let len = (last + 1 - first) * nk * 4;
        let Some(map) = self.tensor.map(start, len)? else {
            return Ok(false);
        };
        // SAFETY: the map holds `len` bytes, f32-aligned (checked in `zero_copy`; maps start
        // on a page), and every bit pattern is a valid f32.
        let values: &[f32] =
            unsafe { std::slice::from_raw_parts(map.as_ptr() as *const f32, len / 4) };
        for (run, block_first, block_last) in row_blocks(queries, self.rows_per_block()) {
            let (block_first, block_last) = (block_first - off, block_last - off);
            let block = &values[(block_first - first) * nk..(block_last + 1 - first) * nk];
            self.check_finite(s, block_first, block)?;
            for i in run {
                let at = (queries[i] as usize - off - first) * nk;
                f(i, queries[i], &values[at..at + nk]);
            }
        }
        Ok(true)
    }

    /// `values`: rows of slab `s` from row `first_row` (messages give query positions).
    fn check_finite(&self, s: SlabId, first_row: usize, values: &[f32]) -> Result<()> {
        let first = first_row + self.annotations.query_offset();
        self.annotations
            .check_finite(self.path(), s, first, self.dims.keys, values)
    }

    /// Fills `buf.values` with the whole slab (queries × keys, row-major).
    pub fn read_slab(&self, s: SlabId, buf: &mut SlabBuffer) -> Result<()> {
        self.read_rows(s, 0..self.dims.queries, buf)
    }

    /// Fills `buf.values` with query rows `rows` of the slab (len × keys, row-major),
    /// converted to f32 and multiplied by the head's importance. NaN/Inf is an error unless
    /// allowed. On a stream, rows must be requested in ascending order.
    pub fn read_rows(&self, s: SlabId, rows: Range<usize>, buf: &mut SlabBuffer) -> Result<()> {
        let nk = self.dims.keys;
        let n = rows.len() * nk;
        let e = self.tensor.element;
        let w = e.size();
        let start = self.slab_offset(s) + (rows.start * nk) as u64;
        buf.values.resize(n, 0.0);
        match self.plan {
            SlabPlan::Contiguous if e == Element::little(Dtype::F32) => {
                // SAFETY: any byte pattern is a valid f32; the slice covers exactly `n` floats.
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(buf.values.as_mut_ptr() as *mut u8, n * 4)
                };
                self.tensor.read_at(start * 4, bytes)?;
            }
            SlabPlan::Contiguous => self
                .tensor
                .read_f32(start, &mut buf.values, &mut buf.bytes)?,
            SlabPlan::Strided => {
                let (sq, sk) = (self.strides[layout::Q], self.strides[layout::K]);
                let base = self.slab_offset(s);
                let mut one = [0u8; 8];
                for (i, q) in rows.clone().enumerate() {
                    for k in 0..nk {
                        let off = (base + q as u64 * sq + k as u64 * sk) * w as u64;
                        self.tensor.read_at(off, &mut one[..w])?;
                        buf.values[i * nk + k] = e.to_f64(&one[..w]) as f32;
                    }
                }
            }
        }
        self.check_finite(s, rows.start, &buf.values)?;
        self.annotations.scale(s, &mut buf.values);
        Ok(())
    }
}

impl RowSource for AttentionSource {
    fn dims(&self) -> Dims {
        self.dims
    }

    fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    fn is_seekable(&self) -> bool {
        self.tensor.is_seekable()
    }

    fn for_each_query_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        mut f: impl FnMut(usize, u32, &[f32]),
    ) -> Result<()> {
        if self.zero_copy() && self.for_each_mapped_row(s, &mut f)? {
            return Ok(());
        }
        let nk = self.dims.keys;
        let off = self.annotations.query_offset();
        let queries = self.valid_queries(s.batch);
        for (run, first, last) in row_blocks(queries, self.rows_per_block()) {
            self.read_rows(s, first - off..last + 1 - off, buf)?;
            for i in run {
                let at = (queries[i] as usize - first) * nk;
                f(i, queries[i], &buf.values[at..at + nk]);
            }
        }
        Ok(())
    }
}

/// Splits ascending `queries` into runs whose rows fit one block: (indices into `queries`,
/// first row, last row) of each run.
pub fn row_blocks(
    queries: &[u32],
    per_block: usize,
) -> impl Iterator<Item = (Range<usize>, usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let first = *queries.get(i)? as usize;
        let end = i + queries[i..].partition_point(|&q| (q as usize) < first + per_block);
        let run = (i..end, first, queries[end - 1] as usize);
        i = end;
        Some(run)
    })
}
