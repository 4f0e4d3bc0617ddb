//! Many examples, one dataset: the input list (globs expanded), per-file tokens and example
//! ids, files analysed in parallel windows and written in list order — to one file, or to a
//! dataset directory (hive folders, bounded parts, `_SUCCESS`), optionally one shard of it.

use std::path::{Path, PathBuf};

use frame_sink::{adopt_dictionaries, with_private_dictionaries, DatasetSink, LabelColumn, Shard};
use ingest::{Dims, IngestError, RowSource};
use polars::prelude::*;
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::input::{open_source, Rows};
use crate::metadata::{input_paths, metadata_json, path_str};
use crate::options::{DatasetOptions, Destination, ExampleIdFrom, InputOptions, OutputOptions};
use crate::output::{sink_options, Frames, MainOutput};
use crate::progress::{advance, Progress, Quiet};

/// The frames of one input file, in order, the frame's schema when it has no rows, and the
/// file's dimensions.
pub(crate) struct FileFrames {
    pub frames: Vec<DataFrame>,
    pub empty: DataFrame,
    pub dims: Dims,
}

/// One example file and the base of its `example_id`.
struct ExampleFile {
    path: PathBuf,
    id: String,
}

/// A command run over many files.
pub(crate) struct DatasetRun<'a> {
    pub command: &'static str,
    pub input: &'a InputOptions,
    pub output: &'a OutputOptions,
    pub dataset: &'a DatasetOptions,
    pub options: Value,
}

/// True when the options ask for a dataset run: several inputs or a glob, a directory
/// output, or an option only a dataset has.
pub(crate) fn is_dataset_run(
    input: &InputOptions,
    output: &OutputOptions,
    d: &DatasetOptions,
) -> bool {
    let several = input.attn.len() > 1
        || (input.attn_array.is_none() && input.attn.iter().any(|p| is_glob(p)));
    (several && !input.generation_steps)
        || directory_output(output).is_some()
        || d.tokens_dir.is_some()
        || d.shard.is_some()
        || !d.partition_by.is_empty()
}

fn is_glob(p: &Path) -> bool {
    p.to_string_lossy().contains(['*', '?', '['])
}

/// The dataset directory `output` names (a trailing `/`, or a directory that exists).
fn directory_output(output: &OutputOptions) -> Option<&str> {
    match &output.destination {
        Destination::Path(out) if out.ends_with('/') || Path::new(out).is_dir() => Some(out),
        _ => None,
    }
}

enum Output {
    File(MainOutput),
    Dataset(DatasetSink),
}

impl Output {
    fn write(&mut self, df: &DataFrame) -> Result<()> {
        match self {
            Output::File(s) => s.sink.write(df)?,
            Output::Dataset(s) => s.write(df)?,
        }
        Ok(())
    }
}

impl<'a> DatasetRun<'a> {
    pub fn new(
        command: &'static str,
        input: &'a InputOptions,
        output: &'a OutputOptions,
        dataset: &'a DatasetOptions,
        options: Value,
    ) -> Self {
        DatasetRun {
            command,
            input,
            output,
            dataset,
            options,
        }
    }
}

/// Runs `frames_of` over the rows of every file of the input list (this shard of it) — it
/// puts one file's frames into the list it is given and returns their schema — and writes
/// the frames, each with its `example_id`, in list order whatever the number of threads.
pub(crate) fn run(
    r: DatasetRun<'_>,
    progress: &dyn Progress,
    frames_of: impl Fn(&Rows<'_>, &mut Vec<DataFrame>) -> Result<DataFrame> + Sync,
) -> Result<Frames> {
    if r.input.longformer() {
        return Err(Error::usage(
            "--global-attn/--sliding-window: a Longformer input is one file (pair); run it file by file",
        ));
    }
    if r.input.generation_steps {
        return Err(Error::usage(
            "--generation-steps: the steps are one example; write it to a file or to memory (a dataset's directory, partitions and shards take examples)",
        ));
    }
    if r.input.attn_array.is_some() {
        return Err(Error::usage(
            "a dataset (a directory output, partitions, shards) is made from attention files; write an array to a file or to memory, or add arrays to a stream",
        ));
    }
    let per_file = |args: &InputOptions| {
        let source = open_source(args, &Quiet)?;
        let rows = Rows::of(&source, args)?;
        let mut frames = Vec::new();
        let empty = frames_of(&rows, &mut frames)?;
        Ok(FileFrames {
            frames,
            empty,
            dims: rows.dims(),
        })
    };
    let d = r.dataset;
    let shard = d.shard.as_deref().map(Shard::parse).transpose()?;
    check_directory_options(r.output, d, shard)?;
    let files = example_files(&r.input.attn, d.example_id_from)?;
    let meta = metadata(&r, files.len(), shard);
    let mut writer = DatasetWriter::create(r.output, d, shard, meta)?;
    let mine = &files[shard.map_or(0..files.len(), |s| s.range(files.len()))];
    progress.start(mine.len() as u64, "files");
    // A window of files at a time: every core busy, a bounded number of files' frames held.
    // The frames of one window are written while the next window is analysed.
    let window = 2 * rayon::current_num_threads();
    let mut ready: Vec<(&ExampleFile, Result<FileFrames>)> = Vec::new();
    for chunk in mine.chunks(window) {
        let (results, wrote) = rayon::join(
            || -> Vec<Result<FileFrames>> {
                chunk
                    .par_iter()
                    .map(|f| with_private_dictionaries(|| per_file(&file_input(r.input, d, f)?)))
                    .collect()
            },
            || write_window(std::mem::take(&mut ready), &mut writer, progress),
        );
        wrote?;
        ready = chunk.iter().zip(results).collect();
    }
    write_window(ready, &mut writer, progress)?;
    let frames = writer.finish()?;
    progress.finish();
    Ok(frames)
}

/// Writes the frames of a window of files, in list order, each with its `example_id`.
fn write_window(
    ready: Vec<(&ExampleFile, Result<FileFrames>)>,
    writer: &mut DatasetWriter,
    progress: &dyn Progress,
) -> Result<()> {
    for (file, result) in ready {
        let frames = result?;
        let labels = example_labels(&file.id, frames.dims.batch);
        writer.write_example(&file.id, &labels, frames)?;
        advance(progress, writer.examples)?;
        progress.message(&format!("{} rows", writer.rows));
    }
    Ok(())
}

/// The frames of many examples written to one output, each with its `example_id`: a file
/// (or memory), or a dataset directory.
pub(crate) struct DatasetWriter {
    out: Output,
    partition_by: Vec<String>,
    /// Examples (files or batches) and rows written so far.
    pub examples: u64,
    pub rows: u64,
    /// The first example's schema, for an output with no rows.
    empty: Option<DataFrame>,
}

impl DatasetWriter {
    /// A writer to `output`: a dataset directory (partitioned, one shard of it) or a file,
    /// every part carrying `meta`.
    pub fn create(
        output: &OutputOptions,
        d: &DatasetOptions,
        shard: Option<Shard>,
        meta: String,
    ) -> Result<DatasetWriter> {
        let out = if let Some(dir) = directory_output(output) {
            let mut sink = sink_options(output);
            sink.metadata_json = meta;
            Output::Dataset(DatasetSink::create(
                Path::new(dir),
                frame_sink::DatasetOptions {
                    partition_by: d.partition_by.clone(),
                    max_rows_per_file: d.max_rows_per_file,
                    shard,
                    sink,
                },
            )?)
        } else {
            check_directory_options(output, d, shard)?;
            let mut main = MainOutput::open(output)?;
            main.sink.set_metadata(meta);
            main.sink.set_several_dictionaries();
            Output::File(main)
        };
        Ok(DatasetWriter {
            out,
            partition_by: d.partition_by.clone(),
            examples: 0,
            rows: 0,
            empty: None,
        })
    }

    /// Writes one example's frames (made under private token dictionaries), `labels` its
    /// `example_id` per batch row; `id` is the example's own (the schema's one label).
    pub fn write_example(&mut self, id: &str, labels: &[String], frames: FileFrames) -> Result<()> {
        let FileFrames {
            frames,
            empty,
            dims,
        } = frames;
        self.write_frames(id, labels, &empty, &dims, frames.into_iter().map(Ok))
    }

    /// As [`write_example`](DatasetWriter::write_example), with the frames made one at a
    /// time as they are written.
    pub fn write_frames(
        &mut self,
        id: &str,
        labels: &[String],
        empty: &DataFrame,
        dims: &Dims,
        frames: impl Iterator<Item = Result<DataFrame>>,
    ) -> Result<()> {
        self.set_schema(id, empty, dims)?;
        for df in frames {
            let df = df?;
            self.rows += df.height() as u64;
            let df = adopt_dictionaries(df)?;
            self.out.write(&with_example_id(df, labels)?)?;
        }
        self.examples += 1;
        Ok(())
    }

    /// Sets the output's columns (`empty`, with `example_id` first) and its partition folders'
    /// widths (from `dims`), unless an example set them before.
    pub fn set_schema(&mut self, id: &str, empty: &DataFrame, dims: &Dims) -> Result<()> {
        if self.empty.is_none() {
            if let Output::Dataset(s) = &mut self.out {
                s.set_key_widths(&key_widths(&self.partition_by, dims));
            }
            let empty = adopt_dictionaries(empty.clone())?;
            self.empty = Some(with_example_id(empty, &[id.to_string()])?);
        }
        Ok(())
    }

    /// Finishes the output; the frames kept in memory when it goes there.
    pub fn finish(self) -> Result<Frames> {
        let empty = self.empty.unwrap_or_default();
        match self.out {
            Output::File(s) => s.finish(&empty),
            Output::Dataset(s) => {
                s.finish(&empty)?;
                Ok(Frames::default())
            }
        }
    }
}

/// Partitions and shards are a dataset directory's.
fn check_directory_options(
    output: &OutputOptions,
    d: &DatasetOptions,
    shard: Option<Shard>,
) -> Result<()> {
    if directory_output(output).is_none() && (shard.is_some() || !d.partition_by.is_empty()) {
        return Err(Error::usage(
            "--partition-by and --shard write a dataset: give a directory, -o DIR/",
        ));
    }
    Ok(())
}

/// The `example_id` of each batch row of an example: its id, or `id:batch` when it holds
/// several batch rows.
pub(crate) fn example_labels(id: &str, batch_rows: usize) -> Vec<String> {
    if batch_rows > 1 {
        (0..batch_rows).map(|b| format!("{id}:{b}")).collect()
    } else {
        vec![id.to_string()]
    }
}

/// Each `--attn` value, a glob's matches in sorted order, or in natural order (`step_2`
/// before `step_10`) when `natural`.
pub(crate) fn expand_globs(attn: &[PathBuf], natural: bool) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for p in attn {
        if p.as_os_str() == "-" {
            return Err(Error::usage(
                "--attn -: standard input is one file; several inputs are files",
            ));
        }
        if !is_glob(p) {
            paths.push(p.clone());
            continue;
        }
        let pattern = p.to_string_lossy();
        let mut matches: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| Error::usage(format!("--attn {pattern}: {e}")))?
            .filter_map(Result::ok)
            .filter(|m| m.is_file())
            .collect();
        if matches.is_empty() {
            return Err(IngestError::invalid(p, "no file matches this pattern").into());
        }
        if natural {
            matches.sort_by(|a, b| ingest::natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        }
        paths.extend(matches);
    }
    Ok(paths)
}

/// The input list: each `--attn` value, a glob expanded in sorted order.
fn example_files(attn: &[PathBuf], from: ExampleIdFrom) -> Result<Vec<ExampleFile>> {
    let paths = expand_globs(attn, false)?;
    let mut files: Vec<ExampleFile> = paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let id = match from {
                ExampleIdFrom::Index => i.to_string(),
                ExampleIdFrom::Stem => stem(&path),
            };
            ExampleFile { path, id }
        })
        .collect();
    if from == ExampleIdFrom::Stem {
        let mut seen = std::collections::HashMap::new();
        for f in &files {
            if let Some(other) = seen.insert(f.id.as_str(), &f.path) {
                return Err(Error::usage(format!(
                    "{} and {} have the same stem {}: use --example-id-from index",
                    other.display(),
                    f.path.display(),
                    f.id
                )));
            }
        }
    }
    files.shrink_to_fit();
    Ok(files)
}

/// The file name without its extension (`.npy`, `.npz`, `.safetensors`).
fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// The one-file input of `f`: its tensor and, with --tokens-dir, its tokens.
fn file_input(a: &InputOptions, d: &DatasetOptions, f: &ExampleFile) -> Result<InputOptions> {
    let mut args = InputOptions {
        attn: vec![f.path.clone()],
        ..a.clone()
    };
    let Some(dir) = &d.tokens_dir else {
        return Ok(args);
    };
    let stem = stem(&f.path);
    if a.vocab.is_some() {
        let ids = dir.join(format!("{stem}.ids.npy"));
        if !ids.is_file() {
            return Err(IngestError::invalid(
                dir,
                format!("no token ids for {stem} ({stem}.ids.npy)"),
            )
            .into());
        }
        args.input_ids = Some(ids.into());
        return Ok(args);
    }
    let found = ["json", "txt"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file());
    match found {
        Some(t) => {
            args.tokens = Some(t);
            Ok(args)
        }
        None => Err(IngestError::invalid(
            dir,
            format!("no tokens for {stem} (looked for {stem}.json and {stem}.txt)"),
        )
        .into()),
    }
}

/// `example_id` as the first column: `labels[batch]` for each row.
fn with_example_id(mut df: DataFrame, labels: &[String]) -> Result<DataFrame> {
    let column = if labels.len() > 1 {
        let batch: Vec<u32> = df.column("batch")?.u32()?.into_no_null_iter().collect();
        LabelColumn::new("example_id", labels)?.column(batch.iter().map(|&b| b as usize))
    } else {
        LabelColumn::new("example_id", labels)?.column(std::iter::repeat_n(0, df.height()))
    };
    df.insert_column(0, column)?;
    Ok(df)
}

/// Digits of each partition folder's number, from the size of its axis.
fn key_widths(partition_by: &[String], dims: &Dims) -> Vec<usize> {
    partition_by
        .iter()
        .map(|c| {
            let n = match c.as_str() {
                "layer" => dims.layers,
                "head" => dims.heads,
                "batch" => dims.batch,
                _ => 0,
            };
            n.saturating_sub(1).to_string().len()
        })
        .collect()
}

/// The `attnframes` metadata of every part: the inputs as given, not one file's shapes (files
/// may differ in sequence length).
fn metadata(r: &DatasetRun<'_>, files: usize, shard: Option<Shard>) -> String {
    let a = r.input;
    let d = r.dataset;
    let mut options = r.options.clone();
    options["partition_by"] = json!(d.partition_by);
    options["max_rows_per_file"] = json!(d.max_rows_per_file);
    options["example_id_from"] = json!(format!("{:?}", d.example_id_from).to_lowercase());
    let mut inputs = input_paths(a);
    inputs["attn"] = json!(a
        .attn
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>());
    inputs["files"] = json!(files);
    inputs["shard"] = json!(shard.map(|s| format!("{}/{}", s.index, s.count)));
    inputs["tokens_dir"] = path_str(&d.tokens_dir);
    metadata_json(r.command, inputs, Value::Null, options)
}
