//! `melt`: any tensor as a long frame.

use ingest::{TensorFile, Tokens};
use melt_frames::MeltFrames;
use serde_json::json;

use crate::error::{Error, Result};
use crate::metadata::{metadata_json, path_str};
use crate::options::{MeltOptions, OutputOptions};
use crate::output::{Frames, MainOutput};
use crate::progress::{advance, Progress};

/// Fortran-order tensors up to this size are read into memory first (one read instead of
/// one per element).
const FORTRAN_IN_MEMORY: u64 = 1 << 30;

/// Any tensor (float, integer or bool) as a long frame: one index column per axis, named by
/// `axes` (`layer`/`head` u16, others u32), then `value` (f32 for floats, i64 for integers,
/// bool); `token`/`query_token` for axes named `position`/`query_position` with `tokens`.
///
/// # Errors
/// `Usage` when `axes` does not name every axis, or tokens have no position axis; `BadInput`,
/// `Io` as [`topk`](crate::topk).
pub fn melt(
    options: &MeltOptions,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    let axes = &options.axes;
    let mut out = MainOutput::open(output)?;
    let mut tensor = TensorFile::open(&options.attn, options.attn_key.as_deref())?;
    if tensor.fortran_order && tensor.data_bytes()? <= FORTRAN_IN_MEMORY {
        tensor.load_into_memory()?;
    }
    let tokens = match &options.tokens {
        Some(path) => Some(read_tokens(path, &tensor, axes)?),
        None => None,
    };
    let mut frames = MeltFrames::new(
        &tensor,
        axes,
        tokens.as_ref(),
        melt_frames::MeltOptions {
            chunk_rows: output.row_group_size as usize,
        },
    )
    .map_err(usage_if_axes)?;
    out.sink.set_metadata(metadata_json(
        "melt",
        json!({"attn": options.attn.display().to_string(), "attn_key": options.attn_key, "tokens": path_str(&options.tokens)}),
        json!({"attn": tensor.shape, "dtype": tensor.element.name()}),
        json!({"axes": axes}),
    ));
    progress.start(frames.progress().1, "values");
    let empty = frames.empty()?;
    while let Some(chunk) = frames.next() {
        out.sink.write(&chunk?)?;
        advance(progress, frames.progress().0)?;
    }
    let result = out.finish(&empty)?;
    progress.finish();
    Ok(result)
}

/// Tokens sized by the tensor: one row per `batch` entry (1 without a batch axis), one token
/// per entry of the first position axis.
fn read_tokens(path: &std::path::Path, t: &TensorFile, axes: &[String]) -> Result<Tokens> {
    let size_of = |name: &str| axes.iter().position(|n| n == name).map(|i| t.shape[i]);
    let seq = size_of("position").or_else(|| size_of("query_position"));
    let Some(seq) = seq else {
        return Err(Error::usage(
            "--tokens needs an axis named position or query_position",
        ));
    };
    Ok(Tokens::from_file(path, size_of("batch").unwrap_or(1), seq)?)
}

fn usage_if_axes(e: melt_frames::MeltError) -> Error {
    match e {
        melt_frames::MeltError::Axes(m) => Error::usage(m),
        other => other.into(),
    }
}
