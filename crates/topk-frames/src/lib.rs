//! # topk-frames — what each token attends to, and what it receives
//!
//! Two analyses over any [`ingest::RowSource`] (the dense [`ingest::AttentionSource`], or a
//! sparse source that fills the same rows), each producing polars frames for the frame sink:
//!
//! - [`TopkFrames`]: for every (batch, layer, head, valid query) the k best valid keys —
//!   columns [`TOPK_COLUMNS`] — streamed in chunks of bounded size, so a `--all` table of
//!   hundreds of millions of rows never sits in memory. Slabs are processed in parallel with
//!   rayon, each into its own rows, so the output is the same for any thread count.
//! - [`received_frame`]: R\[b,l,h,k\] = Σ over valid queries of A\[l,b,h,q,k\], optionally
//!   min-max normalised over everything selected, then summed over heads and/or layers
//!   ([`Reduce`]) and ranked per remaining group.
//!
//! Ranking follows [`rank`]: rank 1 = highest score, ties to the lower position, NaN last.
//!
//! ```no_run
//! use ingest::{AttentionSource, SourceOptions};
//! use topk_frames::{TopkFrames, TopkOptions};
//!
//! let src = AttentionSource::open(&SourceOptions { attn: "attentions.npy".into(), ..Default::default() })?;
//! for chunk in TopkFrames::new(&src, None, TopkOptions { k: Some(5), nonzero: false, chunk_rows: 1 << 20 })? {
//!     let df = chunk?;
//!     println!("{} rows", df.height());
//! }
//! # Ok::<(), topk_frames::FrameError>(())
//! ```

mod error;
mod frame;
pub mod rank;
mod received;
mod scratch;
mod topk;

pub use error::{FrameError, Result};
pub use received::{
    received_frame, received_weights, Normalize, ReceivedOptions, ReceivedSums, Reduce,
};
pub use topk::{TopkFrames, TopkOptions, TOPK_COLUMNS};
