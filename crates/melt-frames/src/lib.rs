//! # melt-frames — any tensor as a long frame
//!
//! [`MeltFrames`] turns a tensor of any shape and element type (floats, integers, bools) into
//! a long frame: one index column per axis, named by the caller, holding the C-order index
//! grid, then `value`. Chunks of at most `chunk_rows` rows are read one at a time, so a
//! tensor of any size melts in bounded memory, like `topk --all`.
//!
//! - Index columns: `layer` and `head` are u16, every other axis u32 (an axis too long for
//!   its type is an error).
//! - `value` keeps the element type: float32 and float64 as they are; float16 and bfloat16
//!   widened to float32 (Arrow writers have no half type); int8/int16/int32 and uint8/uint16
//!   as int32, uint32 as uint32, int64 as int64, uint64 as uint64; bool as boolean.
//! - With [`Tokens`], each axis named `position` or `query_position` gets its token column
//!   (`token`, `query_token`) right after it; the token row comes from the `batch` axis when
//!   there is one.
//! - [`StepFrames`] melts the steps of one `generate()` call ([`ingest::GenerationSteps`]):
//!   each row's entries over the keys its step holds, with the whole sequence's positions.
//!
//! ```no_run
//! use ingest::TensorFile;
//! use melt_frames::{MeltFrames, MeltOptions};
//!
//! let tensor = TensorFile::open("keys.npy".as_ref(), None)?;
//! let axes = ["layer", "head", "position", "dim"].map(String::from).to_vec();
//! let mut frames = MeltFrames::new(&tensor, &axes, None, MeltOptions { chunk_rows: 1 << 20 })?;
//! while let Some(chunk) = frames.next() {
//!     println!("{} rows", chunk?.height());
//! }
//! # Ok::<(), melt_frames::MeltError>(())
//! ```

mod melt;
mod steps;

pub use melt::{MeltFrames, MeltOptions};
pub use steps::StepFrames;

/// What can go wrong while melting.
#[derive(Debug, thiserror::Error)]
pub enum MeltError {
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Polars(#[from] polars::prelude::PolarsError),
    /// The axis names do not fit the tensor (a usage error).
    #[error("{0}")]
    Axes(String),
}

pub type Result<T, E = MeltError> = std::result::Result<T, E>;
