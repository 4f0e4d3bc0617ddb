//! Where frames go: a file or stdout through a [`FrameSink`], or back to the caller.

use frame_sink::{FrameCapture, FrameSink, OutputTarget, SinkOptions};
use polars::prelude::DataFrame;

use crate::error::{Error, Result};
use crate::options::{Destination, OutputOptions};

/// A command's main frame, in the chunks it was made in (each at most `row_group_size`
/// rows, in output order); empty when the frames were written to a destination.
#[derive(Debug, Default)]
pub struct Frames {
    chunks: Vec<DataFrame>,
}

impl Frames {
    pub fn chunks(&self) -> &[DataFrame] {
        &self.chunks
    }

    pub fn into_chunks(self) -> Vec<DataFrame> {
        self.chunks
    }

    /// The chunks as one frame (their columns' chunks are kept, nothing is copied).
    pub fn into_frame(self) -> Result<DataFrame> {
        let mut chunks = self.chunks.into_iter();
        let Some(mut frame) = chunks.next() else {
            return Ok(DataFrame::empty());
        };
        for chunk in chunks {
            frame.vstack_mut_owned(chunk)?;
        }
        Ok(frame)
    }
}

/// The main output of a command: a sink, and the frames it keeps when they go to memory.
pub(crate) struct MainOutput {
    pub sink: FrameSink,
    capture: Option<FrameCapture>,
}

impl MainOutput {
    /// Creates the sink first, so that output problems (a missing directory, stdout without
    /// a format) are reported before any input is read.
    pub fn open(o: &OutputOptions) -> Result<MainOutput> {
        if o.row_group_size == 0 {
            return Err(Error::usage("--row-group-size must be at least 1"));
        }
        match &o.destination {
            Destination::Memory => {
                let capture = FrameCapture::default();
                Ok(MainOutput {
                    sink: FrameSink::capture(capture.clone()),
                    capture: Some(capture),
                })
            }
            Destination::Path(path) => Ok(MainOutput {
                sink: open_sink_at(path, o)?,
                capture: None,
            }),
        }
    }

    /// Finishes the output (`empty` gives the schema when no frame was written) and returns
    /// the frames kept in memory.
    pub fn finish(self, empty: &DataFrame) -> Result<Frames> {
        self.sink.finish(empty)?;
        let chunks = match self.capture {
            Some(c) => std::mem::take(&mut *c.lock().unwrap_or_else(|e| e.into_inner())),
            None => Vec::new(),
        };
        Ok(Frames { chunks })
    }

    /// Writes `frames` (at least one) with the `attnframes` metadata and finishes.
    pub fn write_all(mut self, meta: &str, frames: &[DataFrame]) -> Result<Frames> {
        put_all(&mut self.sink, meta, frames)?;
        self.finish(&frames[0])
    }
}

/// Writes `frames` (at least one) to a second output with the metadata and finishes it.
/// Commands with several outputs finish their main output last.
pub(crate) fn write_extra(mut sink: FrameSink, meta: &str, frames: &[DataFrame]) -> Result<()> {
    put_all(&mut sink, meta, frames)?;
    sink.finish(&frames[0])?;
    Ok(())
}

/// Sets the `attnframes` metadata of `sink` and writes `frames` to it.
fn put_all(sink: &mut FrameSink, meta: &str, frames: &[DataFrame]) -> Result<()> {
    sink.set_metadata(meta.to_string());
    for f in frames {
        sink.write(f)?;
    }
    Ok(())
}

/// A second output (`--scores`, `--overlap`, …) with the main output's format options, when
/// asked for.
pub(crate) fn open_extra_sink(
    output: &Option<String>,
    o: &OutputOptions,
) -> Result<Option<FrameSink>> {
    output.as_deref().map(|p| open_sink_at(p, o)).transpose()
}

/// A sink at `output` with the format options of `o`.
pub(crate) fn open_sink_at(output: &str, o: &OutputOptions) -> Result<FrameSink> {
    let format = o.format.map(|f| match f {
        frame_sink::OutputFormat::Parquet => "parquet",
        frame_sink::OutputFormat::Csv => "csv",
        frame_sink::OutputFormat::Ipc => "ipc",
    });
    let target = OutputTarget::parse(output, format)?;
    Ok(FrameSink::create(&target, sink_options(o))?)
}

/// Compression and row-group size of `o`.
pub(crate) fn sink_options(o: &OutputOptions) -> SinkOptions {
    SinkOptions {
        compression: o.compression,
        row_group_size: o.row_group_size as usize,
        metadata_json: String::new(),
    }
}

/// Writes `bytes` (a figure, a page) to `path` atomically.
pub(crate) fn write_file(path: &str, bytes: &[u8]) -> Result<()> {
    commit_bytes(frame_sink::AtomicOutput::create(path)?, bytes)
}

/// Writes `bytes` to `out`, created before the input was read, and renames it into place.
pub(crate) fn commit_bytes(mut out: frame_sink::AtomicOutput, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    out.write_all(bytes)
        .map_err(|e| Error::from(out.error(e)))?;
    out.commit()?;
    Ok(())
}

/// Where a command's frames go: its sink, or a list (one file of a dataset run).
pub(crate) trait FrameOut {
    fn put(&mut self, df: DataFrame) -> Result<()>;
}

impl FrameOut for FrameSink {
    fn put(&mut self, df: DataFrame) -> Result<()> {
        self.write(&df)?;
        Ok(())
    }
}

impl FrameOut for Vec<DataFrame> {
    fn put(&mut self, df: DataFrame) -> Result<()> {
        self.push(df);
        Ok(())
    }
}
