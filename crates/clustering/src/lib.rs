//! # clustering — KMeans on the attention rows of one head
//!
//! The clustering notebook's analysis as data: the valid query rows of one
//! (batch, layer, head) — restricted to the valid keys, head importance applied, optionally
//! only the even or odd query positions — are clustered with KMeans for every k of a range,
//! and k is chosen by the euclidean silhouette score.
//!
//! - [`HeadRows`]: the rows to cluster, read from any [`RowSource`](ingest::RowSource).
//! - [`cluster_head`]: KMeans (linfa-clustering: k-means++ initialisation, `n_init` restarts
//!   from one seeded generator, so results depend on `seed` only — never on the thread
//!   count) and the silhouette of each k; the best k has the highest silhouette, the lowest k
//!   on ties.
//! - [`silhouette`]: scikit-learn's `silhouette_score` (a sample alone in its cluster scores
//!   0), from one pairwise-distance matrix shared by every k.
//! - [`svm_coefficients`]: which input [`Features`] separate the clusters — one-vs-rest
//!   linear SVMs (linfa-svm, hinge loss, L2 penalty `C`) from each row's features to its
//!   cluster, with coefficients, intercept and training accuracy.
//! - [`label_frame`], [`score_frame`], [`coefficient_frame`]: the outputs, `batch, layer,
//!   head, rows, query_position, query_token, cluster`; `rows, k, silhouette, inertia,
//!   chosen`; `batch, layer, head, rows, cluster, feature, coef, intercept, accuracy`.
//!
//! ```no_run
//! use clustering::{cluster_head, ClusterOptions, HeadRows, RowSet};
//! use ingest::{AttentionSource, SlabId, SourceOptions};
//!
//! let src = AttentionSource::open(&SourceOptions { attn: "attentions.npy".into(), ..Default::default() })?;
//! let rows = HeadRows::read(&src, "attentions.npy".as_ref(), SlabId { batch: 0, layer: 5, head: 3 }, RowSet::All)?;
//! let result = cluster_head(&rows, &ClusterOptions { k_min: 2, k_max: 9, ..Default::default() })?;
//! println!("best k = {}", result.chosen_k());
//! # Ok::<(), clustering::ClusterError>(())
//! ```

mod kmeans;
mod rows;
mod svm;

pub use kmeans::{cluster_head, silhouette, ClusterOptions, Clustering, KScore};
pub use rows::{
    coefficient_frame, label_frame, parity_quadrants, score_frame, HeadRows, Quadrant, RowSet,
};
pub use svm::{svm_coefficients, ClusterCoefficients, Features};

/// What can go wrong while clustering.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Polars(#[from] polars::prelude::PolarsError),
    /// The request does not fit the data (k range, head out of range): names the input file.
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    #[error("KMeans failed: {0}")]
    KMeans(String),
    #[error("the linear SVM failed: {0}")]
    Svm(String),
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
