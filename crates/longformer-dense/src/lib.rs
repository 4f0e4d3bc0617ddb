//! # longformer-dense — HF Longformer attention without S × S matrices
//!
//! `LongformerModel(..., output_attentions=True)` returns two tensors per layer, stacked to
//! `attentions` (L, B, H, S, x + w + 1) and `global_attentions` (L, B, H, S_pad, x):
//!
//! - for a non-global query q, entries `0..x` are its attention to the x global tokens (slot t
//!   = the t-th global position of that batch row, ascending) and entries `x + c` its
//!   attention to key `q − w/2 + c`; keys outside the sequence, padded keys and global keys
//!   are 0 there (a global key's attention is in its slot);
//! - the row of a global query is all 0 there and is column t of `global_attentions` instead
//!   (its first S entries; HF pads that axis to a multiple of w);
//! - slots beyond a row's number of globals hold uniform rows and are ignored;
//! - called without a `global_attention_mask`, the model has no global token: x = 0, the last
//!   axis is w + 1 and `global_attentions` is `None` (an empty (…, 0) tensor is taken too).
//!
//! [`SlidingWindowAttention`] opens the two tensors and implements [`ingest::RowSource`]: each
//! valid query's row is assembled in a reused buffer of S scores (a window of w + 1 plus x
//! globals scattered into zeros), one row at a time, so `topk` and `received` run on Longformer
//! input unchanged and no S × S matrix is ever built. [`write_dense`] streams the dense
//! (L, B, H, S, S) float32 `.npy` from the same rows.
//!
//! The original notebook's `create_head_matrix` hard-codes the offset 257 (= 1 + 512/2), so it
//! supports one global token at position 0 and w = 512 only, and drops the first non-zero
//! window entry as "the global column"; here any window, any number of globals and padding
//! work, with the global positions from `global_attention_mask`.
//!
//! ```no_run
//! use ingest::{RowSource, SlabBuffer, SourceOptions, TensorInput};
//! use longformer_dense::SlidingWindowAttention;
//!
//! let opts = SourceOptions { attn: "attentions.npy".into(), ..Default::default() };
//! let global = TensorInput::from("global_attentions.npy"); // or an array read in place
//! let src = SlidingWindowAttention::open(&opts, Some(&global), None)?;
//! let mut buf = SlabBuffer::default();
//! let first = src.slabs()[0];
//! src.for_each_query_row(first, &mut buf, |_, q, row| println!("query {q}: {} keys", row.len()))?;
//! # Ok::<(), ingest::IngestError>(())
//! ```

mod dense;
mod sliding;

pub use dense::{write_dense, DenseError};
pub use sliding::SlidingWindowAttention;
