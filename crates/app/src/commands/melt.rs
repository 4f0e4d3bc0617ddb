//! `melt`: any tensor as a long frame.

use ingest::{TensorFile, Tokens};
use melt_frames::{MeltFrames, StepFrames};
use polars::prelude::DataFrame;
use serde_json::json;

use crate::error::{Error, Result};
use crate::input::{open_steps, source_options};
use crate::metadata::{metadata_json, path_str};
use crate::options::{InputOptions, MeltOptions, OutputOptions};
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
    if options.generation_steps {
        return melt_steps(options, output, progress);
    }
    let axes = &options.axes;
    let attn = match options.attn.as_slice() {
        [one] => one,
        [] => return Err(Error::usage("--attn: no tensor given")),
        _ => {
            return Err(Error::usage(
                "--attn: melt takes one tensor (several files only as --generation-steps)",
            ))
        }
    };
    let mut out = MainOutput::open(output)?;
    let mut tensor = TensorFile::open(attn, options.attn_key.as_deref())?;
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
        json!({"attn": attn.display().to_string(), "attn_key": options.attn_key, "tokens": path_str(&options.tokens)}),
        json!({"attn": tensor.shape, "dtype": tensor.element.name()}),
        json!({"axes": axes}),
    ));
    let empty = frames.empty()?;
    write_chunks(out, &mut frames, MeltFrames::progress, empty, progress)
}

/// Writes every chunk of `frames` to `out`, with progress in values (`progress_of`: values
/// written so far and in all), and finishes it (`empty` gives the schema of no rows).
fn write_chunks<I: Iterator<Item = melt_frames::Result<DataFrame>>>(
    mut out: MainOutput,
    frames: &mut I,
    progress_of: impl Fn(&I) -> (u64, u64),
    empty: DataFrame,
    progress: &dyn Progress,
) -> Result<Frames> {
    progress.start(progress_of(frames).1, "values");
    while let Some(chunk) = frames.next() {
        out.sink.write(&chunk?)?;
        advance(progress, progress_of(frames).0)?;
    }
    let result = out.finish(&empty)?;
    progress.finish();
    Ok(result)
}

/// The steps of one generation as a long frame (see [`melt_frames::StepFrames`]).
fn melt_steps(
    options: &MeltOptions,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    if !options.axes.is_empty() {
        return Err(Error::usage(
            "--axes: generation steps have their own columns (batch, layer, head, query_position, position)",
        ));
    }
    let input = InputOptions {
        attn: options.attn.clone(),
        attn_key: options.attn_key.clone(),
        tokens: options.tokens.clone(),
        generation_steps: true,
        ..InputOptions::default()
    };
    let steps = open_steps(&input, &source_options(&input))?;
    let mut out = MainOutput::open(output)?;
    let mut frames = StepFrames::new(&steps, output.row_group_size as usize)?;
    out.sink.set_metadata(metadata_json(
        "melt",
        json!({"attn": options.attn.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(), "attn_key": options.attn_key, "tokens": path_str(&options.tokens)}),
        json!({"generation_steps": steps.tensors().map(|t| &t.shape).collect::<Vec<_>>()}),
        json!({"generation_steps": true}),
    ));
    let empty = frames.empty()?;
    write_chunks(out, &mut frames, StepFrames::progress, empty, progress)
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
