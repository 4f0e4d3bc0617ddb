//! Progress and warnings of long work, reported to whoever runs the command: the CLI draws a
//! bar on a terminal, Python and library users get nothing unless they ask.

use crate::error::{Error, Result};

/// Receives a command's progress and its warnings. Every method has an empty default, so an
/// implementation picks what it shows. Called from the command's own thread only.
pub trait Progress: Sync {
    /// Work starts: `total` units (`"slabs"`, `"files"`, `"layers"`, `"values"`).
    fn start(&self, total: u64, unit: &str) {
        let _ = (total, unit);
    }
    /// `done` units of the total are finished.
    fn set(&self, done: u64) {
        let _ = done;
    }
    /// A short status beside the count, e.g. rows written so far.
    fn message(&self, text: &str) {
        let _ = text;
    }
    /// The work is over (or abandoned).
    fn finish(&self) {}
    /// Something the user should know that does not stop the command, e.g. that a tensor
    /// looks like Longformer's sliding-window format.
    fn warn(&self, text: &str) {
        let _ = text;
    }
    /// Asked after each unit of work (a slab's frames, a file, a layer, a chunk of values):
    /// true stops the command with [`Error::Interrupted`], its outputs removed.
    fn cancelled(&self) -> bool {
        false
    }
}

/// Reports `done` units and stops the command when the caller asks it to.
pub(crate) fn advance(progress: &dyn Progress, done: u64) -> Result<()> {
    progress.set(done);
    if progress.cancelled() {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {}
