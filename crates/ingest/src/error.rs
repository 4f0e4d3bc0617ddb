use std::path::{Path, PathBuf};

/// Every way reading an input can fail; each variant names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

impl IngestError {
    pub fn invalid(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        IngestError::Invalid {
            path: path.as_ref().to_path_buf(),
            reason: reason.into(),
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        let source = match source.kind() {
            std::io::ErrorKind::NotFound => {
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
            }
            std::io::ErrorKind::UnexpectedEof => std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file ends before the data its header announces",
            ),
            _ => source,
        };
        IngestError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            IngestError::Io { path, .. } | IngestError::Invalid { path, .. } => path,
        }
    }
}

pub type Result<T, E = IngestError> = std::result::Result<T, E>;

/// `bail!(path, "format", args…)`: return an [`IngestError::Invalid`] about `path`.
macro_rules! bail {
    ($path:expr, $($arg:tt)*) => {
        return Err($crate::error::IngestError::invalid($path, format!($($arg)*)))
    };
}
pub(crate) use bail;
