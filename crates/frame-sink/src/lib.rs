//! # frame-sink — the one place attnframes writes frames
//!
//! Every command hands its frames, chunk by chunk, to a [`FrameSink`]: the format comes from
//! the output's extension (or `--format` for stdout), Parquet row groups are cut to a bounded
//! size, the `attnframes` key-value metadata is attached, and a file is written to a temporary
//! name beside the target and renamed only when [`FrameSink::finish`] succeeds — a failed or
//! interrupted run leaves nothing half-written where the output is expected.
//!
//! [`DatasetSink`] writes a directory instead: hive folders per partition key (`layer=03/`),
//! numbered parts of bounded size, `_SUCCESS` last, and shards that never pick the same part
//! name. [`FrameSink::capture`] keeps the frames in memory (the Python binding).
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
mod dataset;
mod delta;
mod parquet;
mod temps;
mod tokens;
mod writer;

pub use arrow::{arrow_schema, arrow_stream, record_batch};
pub use dataset::{DatasetOptions, DatasetSink, DatasetSummary, Shard};
pub use temps::remove_live_temporaries;
pub use tokens::{
    adopt_dictionaries, null_token_column, with_private_dictionaries, LabelColumn, TokenDictionary,
};
pub use writer::{
    AtomicOutput, Compression, FrameCapture, FrameSink, OutputFormat, OutputTarget, PendingFile,
    SinkError, SinkOptions,
};
