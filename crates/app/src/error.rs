//! One error type for every command, sorted into the kinds a caller acts on.

use std::path::PathBuf;

/// What went wrong in a command. Each message names the file or the option at fault, on one
/// line; [`Error::kind`] tells the CLI its exit code and Python its exception class.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Options that do not fit together or a value out of range, named as the CLI spells
    /// the option (`--percentile 120 is not within 0..100`).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error(transparent)]
    Sink(#[from] frame_sink::SinkError),
    #[error(transparent)]
    Frame(#[from] topk_frames::FrameError),
    #[error(transparent)]
    Similarity(#[from] similarity::SimilarityError),
    #[error(transparent)]
    Melt(#[from] melt_frames::MeltError),
    #[error(transparent)]
    Cluster(#[from] clustering::ClusterError),
    #[error(transparent)]
    Figure(#[from] figures::FigureError),
    #[error(transparent)]
    Stats(#[from] headstats::StatsError),
    #[error(transparent)]
    Rollout(#[from] rollout::RolloutError),
    #[error(transparent)]
    Explorer(#[from] explorer::ExplorerError),
    #[error(transparent)]
    Dense(#[from] longformer_dense::DenseError),
    #[error(transparent)]
    Polars(#[from] polars::prelude::PolarsError),
    /// A file being written failed (a full disk, a closed directory).
    #[error("{}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    /// A stream's batch that does not fit the batches before it, naming the layer and the
    /// batch (`layer 3 of batch 2: …`).
    #[error("{0}")]
    BadBatch(String),
    /// The caller asked the command to stop ([`Progress::cancelled`](crate::Progress::cancelled)).
    #[error("interrupted")]
    Interrupted,
    /// A broken promise inside attnframes; never the input's fault.
    #[error("internal: {0}")]
    Internal(String),
}

/// The kinds of [`Error`]: the CLI exits 2 on `Usage` and 1 otherwise (0 on a closed pipe);
/// Python raises `ValueError` for `Usage` and `BadInput`, `OSError` for `Io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Usage,
    BadInput,
    /// A file could not be opened, read or written.
    Io,
    /// The reader of stdout went away (`… | head`): nothing went wrong here.
    ClosedPipe,
    /// The caller stopped the command.
    Interrupted,
}

impl Error {
    pub(crate) fn usage(message: impl Into<String>) -> Error {
        Error::Usage(message.into())
    }

    pub fn kind(&self) -> ErrorKind {
        use frame_sink::SinkError;
        match self {
            Error::Usage(_) | Error::Frame(topk_frames::FrameError::Usage(_)) => ErrorKind::Usage,
            Error::Sink(SinkError::Usage(_)) => ErrorKind::Usage,
            Error::Sink(SinkError::ClosedPipe) => ErrorKind::ClosedPipe,
            Error::Interrupted => ErrorKind::Interrupted,
            Error::Sink(SinkError::Output { .. }) | Error::Output { .. } => ErrorKind::Io,
            Error::Ingest(e)
            | Error::Frame(topk_frames::FrameError::Ingest(e))
            | Error::Similarity(similarity::SimilarityError::Ingest(e))
            | Error::Melt(melt_frames::MeltError::Ingest(e))
            | Error::Cluster(clustering::ClusterError::Ingest(e))
            | Error::Stats(headstats::StatsError::Ingest(e))
            | Error::Rollout(rollout::RolloutError::Ingest(e))
            | Error::Explorer(explorer::ExplorerError::Ingest(e))
            | Error::Dense(longformer_dense::DenseError::Ingest(e)) => match e {
                ingest::IngestError::Io { .. } => ErrorKind::Io,
                ingest::IngestError::Invalid { .. } => ErrorKind::BadInput,
            },
            _ => ErrorKind::BadInput,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
