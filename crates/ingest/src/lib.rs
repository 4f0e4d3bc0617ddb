//! # ingest — attention tensors in, f32 slabs out
//!
//! `ingest` knows files, not analyses. It opens attention tensors saved by numpy, torch or
//! safetensors, checks every header against the file before allocating, and hands the
//! analyses one Q × K slab at a time through [`AttentionSource`], the dense row source.
//!
//! - [`TensorFile`]: an opened `.npy` (C or Fortran order, format versions 1–3), `.npz`
//!   member (stored: positioned reads; deflated: inflated once), `.safetensors` tensor,
//!   PyTorch file (`torch.save`'s zip format, read by a restricted unpickler that runs no
//!   code; storages read in place, strided views included), or an `.npy` stream on stdin
//!   (`-`). Per-layer arrays (a tuple of tensors, or the arrays an `--attn-key` pattern such
//!   as `'arr_*'` matches) are stacked as the layer axis without copying. Element types f16,
//!   bf16, f32, f64 (either byte order); integer and bool arrays are read for masks and ids.
//! - [`Layout`]: axis letters `L B H Q K`; 5-D defaults to `LBHQK`, 3-D `HQK`, 2-D `QK`.
//! - [`RowSource`]: the abstraction every analysis consumes — valid query rows, slab by slab.
//! - [`AttentionSource`]: the dense [`RowSource`]: the selected `(batch, layer, head)` slabs in
//!   canonical order with the attention mask, head importance, selections and [`Tokens`]
//!   applied once.
//! - [`GenerationSteps`]: the steps of one `generate()` call (the prompt's square, then one
//!   query row per new token) as the row source of the whole generated sequence.
//! - [`ReducedLayer`]: one layer reduced on its device (ranked keys, received sums), as a
//!   row source that the analyses read as they would the layer.
//! - [`WordMerged`]: a row source over words instead of subword tokens (`--words`).
//! - [`summarize`]: what `attnframes inspect` prints.
//!
//! Every error is an [`IngestError`] naming the file at fault.
//!
//! ```no_run
//! use ingest::{AttentionSource, RowSource, SlabBuffer, SourceOptions};
//!
//! let src = AttentionSource::open(&SourceOptions {
//!     attn: "attentions.npy".into(),
//!     layers: Some("11".into()),
//!     ..Default::default()
//! })?;
//! let mut buf = SlabBuffer::default();
//! for id in src.slabs() {
//!     src.read_slab(id, &mut buf)?; // buf.values: queries × keys, row-major
//!     let row0: f32 = buf.values[..src.dims.keys].iter().sum();
//!     println!("layer {} head {}: row 0 sums to {row0}", id.layer, id.head);
//! }
//! # Ok::<(), ingest::IngestError>(())
//! ```

mod annotations;
pub mod dtype;
mod error;
mod inspect;
mod kernels;
pub mod layout;
mod names;
pub mod npy;
mod pytorch;
mod reduced;
mod row_source;
mod selection;
mod source;
mod sparse_row;
mod steps;
mod tensor;
mod tokens;
mod wordrule;
mod words;

pub use annotations::{mask_positions, Annotations, QueryPositions};
pub use dtype::{Dtype, Element};
pub use error::{IngestError, Result};
pub use inspect::{summarize, HeadRowSums, TensorSummary};
pub use kernels::{add_row_f64, ln_f32, ln_f32_by, mul_add};
pub use layout::Layout;
pub use names::natural_cmp;
pub use reduced::{ReducedInput, ReducedLayer};
pub use row_source::{mask_problem, RowSource};
pub use selection::parse_selection;
pub use source::{row_blocks, AttentionSource, Dims, SlabBuffer, SlabId, SourceOptions, TokenSpec};
pub use sparse_row::SparseRow;
pub use steps::GenerationSteps;
pub use tensor::{Container, MappedF32, SharedArray, TensorFile, TensorInput};
pub use tokens::{Tokens, Vocab};
pub use wordrule::{is_special, word_pieces, Piece};
pub use words::{group_words, Word, WordFrom, WordMerged};
