/// Errors of the analyses: bad input found while reading, or a frame that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error("building a frame: {0}")]
    Polars(#[from] polars::error::PolarsError),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = FrameError> = std::result::Result<T, E>;
