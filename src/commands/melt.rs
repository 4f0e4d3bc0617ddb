//! `melt`: any tensor → long frame.

use ingest::{TensorFile, Tokens};
use melt_frames::{MeltFrames, MeltOptions};
use serde_json::json;

use super::{metadata_json, open_sink, path_str, progress_bar};
use crate::cli::MeltArgs;
use crate::CliError;

/// Fortran-order tensors up to this size are read into memory first (one read instead of
/// one per element).
const FORTRAN_IN_MEMORY: u64 = 1 << 30;

pub fn melt(a: &MeltArgs, show_progress: bool) -> Result<(), CliError> {
    // `--axes ''` names no axis: a 0-d tensor (one value) melts to one row.
    let axes: Vec<String> = match a.axes.trim() {
        "" => Vec::new(),
        names => names.split(',').map(|n| n.trim().to_string()).collect(),
    };
    let mut sink = open_sink(&a.output)?;
    let mut tensor = TensorFile::open(&a.attn, a.attn_key.as_deref())?;
    if tensor.fortran_order && tensor.data_bytes()? <= FORTRAN_IN_MEMORY {
        tensor.load_into_memory()?;
    }
    let tokens = match &a.tokens {
        Some(path) => Some(read_tokens(path, &tensor, &axes)?),
        None => None,
    };
    let mut frames = MeltFrames::new(
        &tensor,
        &axes,
        tokens.as_ref(),
        MeltOptions {
            chunk_rows: a.output.row_group_size as usize,
        },
    )
    .map_err(usage_if_axes)?;
    sink.set_metadata(metadata_json(
        "melt",
        json!({"attn": a.attn.display().to_string(), "attn_key": a.attn_key, "tokens": path_str(&a.tokens)}),
        json!({"attn": tensor.shape, "dtype": tensor.element.name()}),
        json!({"axes": axes}),
    ));
    let bar = progress_bar(show_progress, frames.progress().1, "values");
    let empty = frames.empty()?;
    while let Some(chunk) = frames.next() {
        sink.write(&chunk?)?;
        bar.set_position(frames.progress().0);
    }
    sink.finish(&empty)?;
    bar.finish_and_clear();
    Ok(())
}

/// Tokens sized by the tensor: one row per `batch` entry (1 without a batch axis), one token
/// per entry of the first position axis.
fn read_tokens(
    path: &std::path::Path,
    t: &TensorFile,
    axes: &[String],
) -> Result<Tokens, CliError> {
    let size_of = |name: &str| axes.iter().position(|n| n == name).map(|i| t.shape[i]);
    let seq = size_of("position").or_else(|| size_of("query_position"));
    let Some(seq) = seq else {
        return Err(CliError::usage(
            "--tokens needs an axis named position or query_position",
        ));
    };
    Ok(Tokens::from_file(path, size_of("batch").unwrap_or(1), seq)?)
}

fn usage_if_axes(e: melt_frames::MeltError) -> CliError {
    match e {
        melt_frames::MeltError::Axes(m) => CliError::usage(m),
        other => other.into(),
    }
}
