//! # rollout — attention rollout as a row source
//!
//! Attention rollout (Abnar & Zuidema 2020, §3): per layer the heads are fused
//! (Ā_l = mean over heads, or max / min), the residual connection is added and rows are
//! renormalised (Â_l = rownorm(Ā_l + I)), and layers are chained: J_1 = Â_1,
//! J_l = Â_l · J_(l−1). [`RolloutSource`] computes J_l in f64 over the valid positions, layer by
//! layer, and is itself a [`RowSource`](ingest::RowSource) whose slab (batch, l, 0) holds the
//! rows of J_l — so `topk-frames` ranks it like any attention, and only three S × S f64
//! matrices are ever held (Â_l, J_(l−1), and the product). The product is computed in row
//! blocks of fixed size in parallel (matrixmultiply's kernels), so the bits do not depend on
//! the thread count.
//!
//! [`LayerChains`] is the same chain fed one layer at a time, as a model computes its layers
//! (one J per batch row, nothing of the layers before): `attnframes.capture` streams rollout
//! with it.
//!
//! [`RolloutSource::relevance_frame`] gives, per written (batch, layer, position), the
//! relevance max_q J_l[q, k] of the paper's correlation study.
//!
//! ```no_run
//! use ingest::{AttentionSource, RowSource, SourceOptions};
//! use rollout::{Fuse, RolloutSource};
//!
//! let src = AttentionSource::open(&SourceOptions { attn: "attentions.npy".into(), ..Default::default() })?;
//! let layers: Vec<u16> = (0..src.dims().layers as u16).collect();
//! let rollout = RolloutSource::new(&src, Fuse::Mean, &layers)?;
//! // rollout.slabs() are (batch, layer, 0); its rows are the rows of J_layer.
//! # Ok::<(), rollout::RolloutError>(())
//! ```

mod chains;
mod source;

pub use chains::{CurrentJoint, LayerChains};
pub use source::{Fuse, RolloutSource};

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Polars(#[from] polars::prelude::PolarsError),
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = RolloutError> = std::result::Result<T, E>;
