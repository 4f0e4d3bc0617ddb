//! # headstats — the published per-head measures, in one pass
//!
//! [`head_stats`] reads every selected (batch, layer, head) of any
//! [`RowSource`](ingest::RowSource) once and computes, over its valid queries and keys (head
//! importance already applied by the source):
//!
//! - entropy as Clark et al. (2019) compute it (A' = 0.9999·A + 0.0001/n, natural log, mean
//!   over queries), normalised by ln n; causal heads (every row zero beyond its query) use the
//!   n keys each row can see;
//! - mean attention distance, self / previous / next-token mass, [CLS] / [SEP] / punctuation
//!   mass (Clark et al. §3–4);
//! - the attention-sink α₀ of Gu et al. (2024): mean attention the first position receives;
//! - the largest entry and the key that receives most in total;
//! - TransformerLens' head-detector "mul" scores Σ(A⊙P)/ΣA for the previous-token, duplicate-
//!   token and induction patterns.
//!
//! [`head_distances`] gives Clark et al.'s head × head Jensen–Shannon distances for one batch
//! row. [`stats_frame`] and [`distance_frame`] turn the results into frames.
//!
//! ```no_run
//! use headstats::{head_stats, stats_frame, TokenClasses};
//! use ingest::{AttentionSource, SourceOptions};
//!
//! let src = AttentionSource::open(&SourceOptions { attn: "attentions.npy".into(), ..Default::default() })?;
//! let stats = head_stats(&src, &TokenClasses::default(), 0.3)?;
//! println!("{}", stats_frame(&stats)?);
//! # Ok::<(), headstats::StatsError>(())
//! ```

mod kernel;
mod pairs;
mod stats;

pub use pairs::{distance_frame, head_distances, HeadDistance};
pub use stats::{head_stats, stats_frame, HeadStats, TokenClasses};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Polars(#[from] polars::prelude::PolarsError),
    /// The request cannot be served within bounded memory, or does not fit the input.
    #[error("{0}")]
    Limit(String),
}

pub type Result<T, E = StatsError> = std::result::Result<T, E>;
