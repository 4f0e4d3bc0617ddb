//! Batches of attention into one output as they arrive: each batch is analysed when it is
//! added and only its frames are kept, so a study of many batches never holds more than one.

use frame_sink::{with_private_dictionaries, Shard};
use ingest::RowSource;
use serde_json::{json, Value};

use crate::commands::{headstats, received, topk};
use crate::dataset::{example_labels, DatasetWriter, FileFrames};
use crate::error::{Error, Result};
use crate::input::{open_source, Rows};
use crate::metadata::metadata_json;
use crate::options::{
    DatasetOptions, HeadstatsOptions, InputOptions, OutputOptions, ReceivedOptions, TopkOptions,
};
use crate::output::Frames;
use crate::progress::Quiet;

/// The analysis a stream runs on every batch.
#[derive(Debug, Clone)]
pub enum StreamCommand {
    Topk(TopkOptions),
    Received(ReceivedOptions),
    Headstats(HeadstatsOptions),
}

impl StreamCommand {
    fn name(&self) -> &'static str {
        match self {
            StreamCommand::Topk(_) => "topk",
            StreamCommand::Received(_) => "received",
            StreamCommand::Headstats(_) => "headstats",
        }
    }

    fn dataset(&self) -> &DatasetOptions {
        match self {
            StreamCommand::Topk(o) => &o.dataset,
            StreamCommand::Received(o) => &o.dataset,
            StreamCommand::Headstats(o) => &o.dataset,
        }
    }

    fn metadata(&self, base: &InputOptions) -> Value {
        let mut options = match self {
            StreamCommand::Topk(o) => topk::topk_metadata(base, o),
            StreamCommand::Received(o) => {
                received::received_metadata(base, &received::analysis_options(o))
            }
            StreamCommand::Headstats(o) => headstats::headstats_metadata(base, o),
        };
        let d = self.dataset();
        options["partition_by"] = json!(d.partition_by);
        options["max_rows_per_file"] = json!(d.max_rows_per_file);
        options["example_id_from"] = json!("index");
        options
    }
}

/// One output fed batch by batch: the frames of each [`add`](FrameStream::add)ed batch are
/// written with an `example_id` per batch row, as a dataset run over the batches saved as
/// files writes them (`--example-id-from index`). The output appears whole at
/// [`finish`](FrameStream::finish); a stream dropped unfinished leaves nothing behind.
pub struct FrameStream {
    command: StreamCommand,
    base: InputOptions,
    row_group_size: u64,
    writer: DatasetWriter,
}

impl FrameStream {
    /// A stream of `command` to `output` (a file, a dataset directory `dir/` with the
    /// command's partitioning and shard, or memory). `base` holds what every batch shares:
    /// selections, layout, words, `allow_nan`; each batch brings its own arrays.
    ///
    /// # Errors
    /// `Usage` for partitions or a shard without a directory, `Io` for an output that cannot
    /// be created.
    pub fn create(
        command: StreamCommand,
        base: InputOptions,
        output: &OutputOptions,
    ) -> Result<FrameStream> {
        let d = command.dataset();
        let shard = d.shard.as_deref().map(Shard::parse).transpose()?;
        let meta = metadata_json(
            command.name(),
            json!({"attn": "<stream>"}),
            Value::Null,
            command.metadata(&base),
        );
        let writer = DatasetWriter::create(output, d, shard, meta)?;
        Ok(FrameStream {
            command,
            base,
            row_group_size: output.row_group_size,
            writer,
        })
    }

    /// Analyses one batch — `batch` gives its attention (an array or a file), masks and
    /// tokens; the stream's selections apply — and writes its frames. `example_ids` names
    /// each batch row (default: the batch's index, `index:row` when it has several rows).
    ///
    /// # Errors
    /// As the command's function; `Usage` when `example_ids` does not have one id per batch
    /// row.
    pub fn add(&mut self, batch: InputOptions, example_ids: Option<&[String]>) -> Result<()> {
        let input = InputOptions {
            layout: batch.layout.clone().or(self.base.layout.clone()),
            layers: self.base.layers.clone(),
            heads: self.base.heads.clone(),
            batch: self.base.batch.clone(),
            allow_nan: self.base.allow_nan,
            words: self.base.words,
            ..batch
        };
        let frames = with_private_dictionaries(|| self.frames_of(&input))?;
        let index = self.writer.examples.to_string();
        let labels = match example_ids {
            None => example_labels(&index, frames.dims.batch),
            Some(ids) if ids.len() == frames.dims.batch => ids.to_vec(),
            Some(ids) => {
                return Err(Error::usage(format!(
                    "example_ids: {} ids for a batch of {} rows",
                    ids.len(),
                    frames.dims.batch
                )))
            }
        };
        let id = match example_ids {
            Some(ids) => &ids[0],
            None => &index,
        };
        self.writer.write_example(id, &labels, frames)
    }

    fn frames_of(&self, input: &InputOptions) -> Result<FileFrames> {
        let source = open_source(input, &Quiet)?;
        let rows = Rows::of(&source, input)?;
        let mut frames = Vec::new();
        let empty = match &self.command {
            StreamCommand::Topk(o) => {
                let output = OutputOptions {
                    row_group_size: self.row_group_size,
                    ..Default::default()
                };
                topk::topk_into(&rows, o, &output, &mut frames, &Quiet)?
            }
            StreamCommand::Received(o) => {
                let df = received::received_of(&rows, received::analysis_options(o))?;
                let empty = df.clear();
                frames.push(df);
                empty
            }
            StreamCommand::Headstats(o) => {
                let df = headstats::stats_of(&rows, o)?;
                let empty = df.clear();
                frames.push(df);
                empty
            }
        };
        Ok(FileFrames {
            frames,
            empty,
            dims: rows.dims(),
        })
    }

    /// Finishes the output: renames it (or its parts and `_SUCCESS`) into place, or returns
    /// the frames when it goes to memory.
    ///
    /// # Errors
    /// `Io` when the output cannot be finished.
    pub fn finish(self) -> Result<Frames> {
        self.writer.finish()
    }
}
