//! # attnframes-app — every attnframes command as a typed Rust function
//!
//! The layer between the analysis crates and their users: the `attnframes` CLI, the Python
//! package and Rust programs all call these functions. Each takes typed options (every
//! struct has a `Default` equal to the CLI's defaults), opens the input ([`ingest`], dense or
//! Longformer, merged into words when asked), runs the analysis and sends the frames to an
//! [`OutputOptions`] destination: a file, stdout, a Parquet dataset directory, or back to the
//! caller as polars `DataFrame`s ([`Destination::Memory`], the default).
//!
//! No function prints, exits or reads the command line. Errors are one [`Error`] whose
//! [`kind`](Error::kind) says usage, bad input, I/O or closed pipe; progress and warnings go
//! to a [`Progress`] the caller chooses ([`Quiet`] shows nothing).
//!
//! ```no_run
//! use attnframes_app::{topk, InputOptions, OutputOptions, Quiet, TopkOptions};
//!
//! let input = InputOptions {
//!     tokens: Some("tokens.json".into()),
//!     attention_mask: Some("attention_mask.npy".into()),
//!     ..InputOptions::file("attentions.npy")
//! };
//! let frame = topk(&input, &TopkOptions { k: 5, ..Default::default() }, &OutputOptions::default(), &Quiet)?
//!     .into_frame()?;
//! println!("{frame}");
//! # Ok::<(), attnframes_app::Error>(())
//! ```
//!
//! Work runs on the current rayon pool; [`with_threads`] runs it on a pool of its own.

pub(crate) mod commands;
mod dataset;
mod error;
mod input;
mod metadata;
pub mod options;
mod output;
mod progress;
mod stream;

pub use commands::cluster::cluster;
pub use commands::compare::compare;
pub use commands::dense::dense;
pub use commands::headstats::headstats;
pub use commands::inspect::inspect;
pub use commands::melt::melt;
pub use commands::plot::plot;
pub use commands::received::received;
pub use commands::rollout::rollout;
pub use commands::similarity::similarity;
pub use commands::topk::topk;
pub use commands::view::view;
pub use error::{Error, ErrorKind, Result};
pub use ingest::TensorSummary;
pub use options::*;
pub use output::Frames;
pub use progress::{Progress, Quiet};
pub use stream::{FrameStream, StreamCommand};

/// Runs `work` on a rayon pool of `threads` workers (all cores when None); the output of
/// every command is the same for any number.
///
/// # Errors
/// `Usage` when the pool cannot be built (e.g. 0 threads).
pub fn with_threads<T: Send>(threads: Option<usize>, work: impl FnOnce() -> T + Send) -> Result<T> {
    // Without a count the global pool (one thread per core) serves: building a pool starts
    // and joins its threads, which costs more than a small call (a stream's layer) itself.
    let Some(n) = threads else {
        return Ok(work());
    };
    if n == 0 {
        return Err(Error::Usage("--threads must be at least 1".into()));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| Error::Usage(format!("--threads: {e}")))?;
    Ok(pool.install(work))
}
