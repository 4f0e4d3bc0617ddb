//! # frame-sink — the one place attnframes writes frames
//!
//! Every command hands its frames, chunk by chunk, to a [`FrameSink`]: the format comes from
//! the output's extension (or `--format` for stdout), Parquet row groups are cut to a bounded
//! size, the `attnframes` key-value metadata is attached, and a file is written to a temporary
//! name beside the target and renamed only when [`FrameSink::finish`] succeeds — a failed or
//! interrupted run leaves nothing half-written where the output is expected.
//!
//! [`TokenDictionary`] turns per-batch token lists into one polars Categorical mapping, so
//! token columns are filled with `u32` codes and written dictionary-encoded.
//!
//! ```no_run
//! use frame_sink::{FrameSink, OutputTarget, SinkOptions};
//! use polars::prelude::*;
//!
//! let target = OutputTarget::parse("ranks.parquet", None)?;
//! let mut sink = FrameSink::create(&target, SinkOptions::default())?;
//! let df = df!("position" => [0u32, 1], "score" => [0.7f32, 0.3])?;
//! sink.write(&df)?;
//! sink.finish(&df)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod arrow;
mod parquet;
mod temps;
mod tokens;
mod writer;

pub use temps::remove_live_temporaries;
pub use tokens::{null_token_column, TokenDictionary};
pub use writer::{
    AtomicOutput, Compression, FrameSink, OutputFormat, OutputTarget, SinkError, SinkOptions,
};
