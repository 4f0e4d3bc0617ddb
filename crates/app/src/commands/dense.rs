//! `dense`: Longformer's sliding-window and global attention as one dense tensor.

use ingest::RowSource;

use crate::error::{Error, Result};
use crate::input::{no_words, open_source, Source};
use crate::options::InputOptions;
use crate::progress::Progress;

/// Writes the dense (L, B, H, S, S) float32 `.npy` of a Longformer input to `output` (a path,
/// or `-` for stdout), one row at a time; the file appears only when complete.
///
/// # Errors
/// `Usage` when the input is not Longformer's format (`global_attn` or `sliding_window`) or
/// is generation steps;
/// `BadInput`, `Io` as [`topk`](crate::topk).
pub fn dense(input: &InputOptions, output: &str, progress: &dyn Progress) -> Result<()> {
    no_words(input, "dense")?;
    if input.generation_steps {
        return Err(Error::usage(
            "dense writes Longformer's sliding-window attention as dense rows; --generation-steps is for the commands that analyse attention (topk, received, headstats, melt, ...)",
        ));
    }
    if !input.longformer() {
        return Err(Error::usage(
            "dense needs --global-attn or --sliding-window (the HF Longformer sliding-window format)",
        ));
    }
    let mut out = frame_sink::AtomicOutput::create(output)?;
    let Source::Longformer(src) = open_source(input, progress)? else {
        return Err(Error::Internal(
            "a Longformer input opened as a dense one".into(),
        ));
    };
    progress.start(src.slabs().len() as u64, "slabs");
    let written = longformer_dense::write_dense(&src, &mut out, |done| progress.set(done));
    progress.finish();
    written.map_err(|e| match e {
        longformer_dense::DenseError::Output(io) => Error::from(out.error(io)),
        other => Error::from(other),
    })?;
    out.commit()?;
    Ok(())
}
