use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use polars::io::SerWriter;
use polars::prelude::*;
use polars_arrow::datatypes::{ArrowSchema, Metadata};
use polars_arrow::io::ipc::write::{FileWriter, StreamWriter, WriteOptions};
use polars_parquet::write::{CompressionOptions, KeyValue, ZstdLevel};

use crate::arrow::{arrow_schema, record_batch};
use crate::parquet::ParquetFrameWriter;
use crate::temps::{release, temp_path};

/// What can go wrong while writing; each variant names the output.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{}: {reason}", path.display())]
    Output { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
    /// The reader of stdout went away (`… -o - | head -1`): not a failure of the command.
    #[error("<stdout>: the reader closed the pipe")]
    ClosedPipe,
}

/// True when `e` is (or wraps) a broken pipe.
fn is_broken_pipe(e: &PolarsError) -> bool {
    match e {
        PolarsError::IO { error, .. } => error.kind() == std::io::ErrorKind::BrokenPipe,
        PolarsError::Context { error, .. } => is_broken_pipe(error),
        _ => false,
    }
}

pub(crate) type Result<T> = std::result::Result<T, SinkError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Parquet,
    Csv,
    /// Arrow IPC file (random access) for a path, Arrow IPC stream for stdout.
    Ipc,
}

impl OutputFormat {
    pub fn parse(name: &str) -> Option<OutputFormat> {
        match name.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(OutputFormat::Parquet),
            "csv" => Some(OutputFormat::Csv),
            "ipc" | "arrow" | "feather" => Some(OutputFormat::Ipc),
            _ => None,
        }
    }
}

/// Where frames go: a file (format from its extension) or stdout (format required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTarget {
    pub path: Option<PathBuf>,
    pub format: OutputFormat,
}

impl OutputTarget {
    /// `-o` and `--format`: `-` means stdout and needs a format; a path's extension wins
    /// unless `--format` is given. Unknown extensions are Parquet.
    pub fn parse(out: &str, format: Option<&str>) -> Result<OutputTarget> {
        let explicit = match format {
            Some(f) => Some(OutputFormat::parse(f).ok_or_else(|| {
                SinkError::Usage(format!("--format {f}: expected parquet, csv or ipc"))
            })?),
            None => None,
        };
        if out == "-" {
            return match explicit {
                Some(OutputFormat::Parquet) => Err(SinkError::Usage(
                    "-o - cannot stream Parquet (it needs a seekable file): use --format csv or ipc".into(),
                )),
                Some(f) => Ok(OutputTarget { path: None, format: f }),
                None => Err(SinkError::Usage("-o - writes to stdout and needs --format csv|ipc".into())),
            };
        }
        let path = PathBuf::from(out);
        let by_ext = path
            .extension()
            .and_then(|e| e.to_str())
            .and_then(OutputFormat::parse)
            .unwrap_or(OutputFormat::Parquet);
        Ok(OutputTarget {
            format: explicit.unwrap_or(by_ext),
            path: Some(path),
        })
    }

    pub fn display(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<stdout>".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Snappy,
    None,
}

impl Compression {
    pub fn parse(name: &str) -> Option<Compression> {
        match name {
            "zstd" => Some(Compression::Zstd),
            "snappy" => Some(Compression::Snappy),
            "none" | "uncompressed" => Some(Compression::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub compression: Compression,
    /// Largest Parquet row group (and IPC record batch); larger chunks are split.
    pub row_group_size: usize,
    /// JSON stored under the `attnframes` key (Parquet key-value metadata, IPC schema metadata).
    pub metadata_json: String,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            compression: Compression::Zstd,
            row_group_size: 1 << 20,
            metadata_json: "{}".into(),
        }
    }
}

/// Arrow IPC with plain (large) strings: pyarrow cannot cast dictionaries of string views.
const IPC_COMPAT: CompatLevel = CompatLevel::oldest();

enum Writer {
    Parquet(Box<ParquetFrameWriter<BufWriter<File>>>),
    Csv(polars::io::csv::write::BatchedWriter<Box<dyn Write + Send>>),
    IpcFile(FileWriter<BufWriter<File>>, Arc<ArrowSchema>),
    IpcStream(StreamWriter<Box<dyn Write + Send>>, Arc<ArrowSchema>),
    /// Frames kept for the caller ([`FrameSink::capture`]).
    Memory(Vec<DataFrame>),
}

/// The single frame writer. Create it, [`write`](FrameSink::write) chunks whose schema stays
/// the same, then [`finish`](FrameSink::finish); dropping it unfinished removes the temporary.
pub struct FrameSink {
    target: OutputTarget,
    options: SinkOptions,
    /// The temporary being written; removed when the sink is dropped unfinished.
    file: PendingFile,
    writer: Option<Writer>,
    rows: u64,
    capture: Option<FrameCapture>,
    /// The frames carry dictionaries that differ (one per example): an IPC file, which takes
    /// one dictionary per column, gets their values as plain strings.
    several_dictionaries: bool,
}

/// Where a memory sink puts its frames: the Python binding returns them instead of a file.
pub type FrameCapture = Arc<std::sync::Mutex<Vec<DataFrame>>>;

impl FrameSink {
    /// A sink that keeps its frames in `capture` (appended at [`finish`](FrameSink::finish)).
    pub fn capture(capture: FrameCapture) -> FrameSink {
        FrameSink {
            target: OutputTarget {
                path: None,
                format: OutputFormat::Ipc,
            },
            options: SinkOptions::default(),
            file: PendingFile::none(),
            writer: Some(Writer::Memory(Vec::new())),
            rows: 0,
            capture: Some(capture),
            several_dictionaries: false,
        }
    }

    /// Checks that the output can be created; the writer itself starts with the first chunk.
    pub fn create(target: &OutputTarget, options: SinkOptions) -> Result<FrameSink> {
        if options.row_group_size == 0 {
            return Err(SinkError::Usage(
                "--row-group-size must be at least 1".into(),
            ));
        }
        let file = match &target.path {
            Some(p) => PendingFile {
                temp: Some(temp_path(p)?),
                path: Some(p.clone()),
            },
            None => PendingFile::none(),
        };
        Ok(FrameSink {
            target: target.clone(),
            options,
            file,
            writer: None,
            rows: 0,
            capture: None,
            several_dictionaries: false,
        })
    }

    fn err(&self, reason: impl std::fmt::Display) -> SinkError {
        SinkError::Output {
            path: self
                .target
                .path
                .clone()
                .unwrap_or_else(|| "<stdout>".into()),
            reason: reason.to_string(),
        }
    }

    fn open_file(&self) -> Result<BufWriter<File>> {
        let temp = self
            .file
            .temp
            .as_ref()
            .expect("file target has a temporary");
        let f = File::create(temp).map_err(|e| self.err(format!("cannot create ({e})")))?;
        Ok(BufWriter::with_capacity(1 << 20, f))
    }

    fn arrow_metadata(&self) -> Arc<Metadata> {
        let mut m = Metadata::new();
        m.insert(
            "attnframes".into(),
            self.options.metadata_json.as_str().into(),
        );
        Arc::new(m)
    }

    fn start(&mut self, df: &DataFrame) -> Result<Writer> {
        let schema = df.schema();
        let stdout = || -> Box<dyn Write + Send> {
            Box::new(BufWriter::with_capacity(1 << 20, std::io::stdout()))
        };
        let ipc_schema = arrow_schema(df, IPC_COMPAT);
        let w = match (self.target.format, self.target.path.is_some()) {
            (OutputFormat::Parquet, _) => {
                let compression = match self.options.compression {
                    // Level 1, Arrow C++'s (and so pyarrow's) default. zstd's own default, 3,
                    // costs more CPU and gave no smaller file: led16k's topk frame is 63.3 MB
                    // at either level.
                    Compression::Zstd => CompressionOptions::Zstd(ZstdLevel::try_new(1).ok()),
                    Compression::Snappy => CompressionOptions::Snappy,
                    Compression::None => CompressionOptions::Uncompressed,
                };
                let w = ParquetFrameWriter::new(
                    self.open_file()?,
                    arrow_schema(df, CompatLevel::newest()),
                    compression,
                )
                .map_err(|e| self.err(e))?;
                Writer::Parquet(Box::new(w))
            }
            (OutputFormat::Csv, is_file) => {
                let out: Box<dyn Write + Send> = if is_file {
                    Box::new(self.open_file()?)
                } else {
                    stdout()
                };
                let w = CsvWriter::new(out)
                    .include_header(true)
                    .batched(schema)
                    .map_err(|e| self.err(e))?;
                Writer::Csv(w)
            }
            (OutputFormat::Ipc, true) => {
                let schema = Arc::new(ipc_schema);
                let mut w = FileWriter::new(
                    self.open_file()?,
                    schema.clone(),
                    None,
                    WriteOptions { compression: None },
                );
                w.set_custom_schema_metadata(self.arrow_metadata());
                w.start().map_err(|e| self.err(e))?;
                Writer::IpcFile(w, schema)
            }
            (OutputFormat::Ipc, false) => {
                let mut w = StreamWriter::new(stdout(), WriteOptions { compression: None });
                w.set_custom_schema_metadata(self.arrow_metadata());
                w.start(&ipc_schema, None).map_err(|e| self.err(e))?;
                Writer::IpcStream(w, Arc::new(ipc_schema))
            }
        };
        Ok(w)
    }

    /// Says that the frames to come carry different dictionaries (a dataset or stream of
    /// several examples into one file). Parquet, CSV and IPC streams take that as it is; an
    /// Arrow IPC file allows one dictionary per column, so its dictionary columns are written
    /// as plain strings.
    pub fn set_several_dictionaries(&mut self) {
        self.several_dictionaries = true;
    }

    /// `df` as this sink's format takes it (see [`set_several_dictionaries`](Self::set_several_dictionaries)).
    fn as_written(&self, df: &DataFrame) -> Result<DataFrame> {
        let ipc_file = self.target.format == OutputFormat::Ipc && self.target.path.is_some();
        if !(self.several_dictionaries && ipc_file) {
            return Ok(df.clone());
        }
        let columns = df
            .columns()
            .iter()
            .map(|c| match c.dtype() {
                DataType::Categorical(..) | DataType::Enum(..) => c.cast(&DataType::String),
                _ => Ok(c.clone()),
            })
            .collect::<PolarsResult<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        DataFrame::new(df.height(), columns).map_err(|e| self.err(e))
    }

    /// Sets the `attnframes` metadata JSON; takes effect when the first chunk starts the file.
    pub fn set_metadata(&mut self, json: String) {
        self.options.metadata_json = json;
    }

    /// Writes one chunk; chunks longer than the row-group size are cut.
    pub fn write(&mut self, df: &DataFrame) -> Result<()> {
        let mut df = self.as_written(df)?;
        if self.writer.is_none() {
            let w = self.start(&df)?;
            self.writer = Some(w);
        }
        df.rechunk_mut_par();
        let step = self.options.row_group_size;
        let mut offset = 0usize;
        while offset < df.height() {
            let piece = df.slice(offset as i64, step);
            offset += piece.height();
            self.write_piece(&piece)?;
        }
        self.rows += df.height() as u64;
        Ok(())
    }

    fn write_piece(&mut self, df: &DataFrame) -> Result<()> {
        let writer = self.writer.as_mut().expect("started");
        let r = match writer {
            Writer::Parquet(w) => w.write(df),
            Writer::Csv(w) => w.write_batch(df),
            Writer::IpcFile(w, schema) => {
                record_batch(df, schema, IPC_COMPAT).and_then(|b| w.write(&b, None))
            }
            Writer::IpcStream(w, schema) => {
                record_batch(df, schema, IPC_COMPAT).and_then(|b| w.write(&b, None))
            }
            Writer::Memory(frames) => {
                frames.push(df.clone());
                Ok(())
            }
        };
        r.map_err(|e| self.write_error(e))
    }

    /// The error of a failed write; a broken pipe on stdout is [`SinkError::ClosedPipe`].
    fn write_error(&self, e: PolarsError) -> SinkError {
        if self.target.path.is_none() && is_broken_pipe(&e) {
            SinkError::ClosedPipe
        } else {
            self.err(e)
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Completes the output (footer, flush, rename into place); returns the rows written.
    /// `empty` gives the schema when no chunk was written.
    pub fn finish(self, empty: &DataFrame) -> Result<u64> {
        let (rows, file) = self.finish_pending(empty)?;
        file.commit()?;
        Ok(rows)
    }

    /// Completes the output under its temporary name: the caller renames it into place with
    /// [`PendingFile::commit`] (a dataset renames all its parts only when every one is done).
    pub fn finish_pending(mut self, empty: &DataFrame) -> Result<(u64, PendingFile)> {
        if self.writer.is_none() {
            let empty = self.as_written(empty)?;
            self.writer = Some(self.start(&empty)?);
        }
        let writer = self.writer.take().expect("started");
        let r: std::result::Result<(), String> = match writer {
            Writer::Parquet(w) => {
                let kv = vec![KeyValue {
                    key: "attnframes".into(),
                    value: Some(self.options.metadata_json.clone()),
                }];
                w.finish(kv)
                    .map_err(|e| e.to_string())
                    .and_then(|mut out| out.flush().map_err(|e| e.to_string()))
            }
            Writer::Csv(mut w) => w.finish().map_err(|e| e.to_string()),
            Writer::IpcFile(mut w, _) => w
                .finish()
                .map_err(|e| e.to_string())
                .and_then(|_| w.into_inner().flush().map_err(|e| e.to_string())),
            Writer::IpcStream(mut w, _) => w
                .finish()
                .map_err(|e| e.to_string())
                .and_then(|_| w.into_inner().flush().map_err(|e| e.to_string())),
            Writer::Memory(frames) => {
                let capture = self.capture.as_ref().expect("a memory sink has a capture");
                let mut captured = capture.lock().unwrap_or_else(|e| e.into_inner());
                if frames.is_empty() {
                    captured.push(empty.clone());
                }
                captured.extend(frames);
                Ok(())
            }
        };
        r.map_err(|e| self.err(e))?;
        Ok((self.rows, self.file))
    }
}

/// A finished output still under its temporary name; dropped uncommitted, it is removed.
pub struct PendingFile {
    temp: Option<PathBuf>,
    path: Option<PathBuf>,
}

impl PendingFile {
    /// Nothing to rename: stdout or memory.
    fn none() -> PendingFile {
        PendingFile {
            temp: None,
            path: None,
        }
    }

    /// Renames the file into place (nothing to do for stdout).
    pub fn commit(mut self) -> Result<()> {
        if let (Some(temp), Some(path)) = (self.temp.take(), &self.path) {
            let moved = std::fs::rename(&temp, path);
            release(&temp);
            moved.map_err(|e| SinkError::Output {
                path: path.clone(),
                reason: format!("cannot move the finished file into place ({e})"),
            })?;
        }
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if let Some(t) = &self.temp {
            let _ = std::fs::remove_file(t);
            release(t);
        }
    }
}

/// A byte output (such as a dense `.npy`) written like the frames: to a temporary beside the
/// target, renamed by [`commit`](AtomicOutput::commit); `-` is stdout. Dropped uncommitted,
/// the temporary is removed.
pub struct AtomicOutput {
    /// The temporary and its target; removed when dropped uncommitted.
    pending: PendingFile,
    /// The temporary file, to sync before the rename.
    file: Option<File>,
    /// Bytes handed to the file so far, and how many of them are already written back.
    written: u64,
    synced: u64,
    out: BufWriter<Box<dyn Write + Send>>,
}

impl AtomicOutput {
    pub fn create(out: &str) -> Result<AtomicOutput> {
        let (pending, sink, file): (_, Box<dyn Write + Send>, _) = if out == "-" {
            (PendingFile::none(), Box::new(std::io::stdout()), None)
        } else {
            let path = PathBuf::from(out);
            let temp = temp_path(&path)?;
            let file = File::create(&temp).map_err(|e| SinkError::Output {
                path: path.clone(),
                reason: format!("cannot create ({e})"),
            })?;
            let handle = file.try_clone().ok();
            let pending = PendingFile {
                temp: Some(temp),
                path: Some(path),
            };
            (pending, Box::new(file), handle)
        };
        Ok(AtomicOutput {
            pending,
            file,
            written: 0,
            synced: 0,
            // Large writes: a dense .npy is gigabytes, and fewer system calls keep it disk-bound.
            out: BufWriter::with_capacity(8 << 20, sink),
        })
    }

    /// The error of a failed write, naming the output; a broken pipe on stdout is
    /// [`SinkError::ClosedPipe`].
    pub fn error(&self, e: std::io::Error) -> SinkError {
        let path = &self.pending.path;
        if path.is_none() && e.kind() == std::io::ErrorKind::BrokenPipe {
            return SinkError::ClosedPipe;
        }
        SinkError::Output {
            path: path.clone().unwrap_or_else(|| "<stdout>".into()),
            reason: e.to_string(),
        }
    }

    /// Flushes, syncs the data to disk (a multi-GB output is then really written when the
    /// command returns, as `dd conv=fdatasync` measures it) and moves the file into place.
    pub fn commit(mut self) -> Result<()> {
        self.out.flush().map_err(|e| self.error(e))?;
        if let Some(f) = &self.file {
            f.sync_data().map_err(|e| self.error(e))?;
        }
        self.pending.commit()
    }
}

/// Write-back window of [`AtomicOutput`]: a multi-GB output is pushed to disk and dropped
/// from the page cache in steps of this size instead of filling memory with dirty pages
/// (whose reclaim, not the disk, then sets the pace).
const WRITE_BACK_BYTES: u64 = 256 << 20;

impl AtomicOutput {
    /// Starts write-back of what was written since the last step and waits for the step
    /// before, whose pages are then dropped from the cache.
    fn write_back(&mut self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.written - self.synced < 2 * WRITE_BACK_BYTES {
            return Ok(());
        }
        self.out.flush()?;
        let fd = file.as_raw_fd();
        let (done, upto) = (self.synced, self.written - WRITE_BACK_BYTES);
        // SAFETY: plain system calls on an open descriptor with in-range offsets.
        unsafe {
            libc::sync_file_range(
                fd,
                upto as i64,
                (self.written - upto) as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            );
            libc::sync_file_range(
                fd,
                done as i64,
                (upto - done) as i64,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
            libc::posix_fadvise(
                fd,
                done as i64,
                (upto - done) as i64,
                libc::POSIX_FADV_DONTNEED,
            );
        }
        self.synced = upto;
        Ok(())
    }
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n as u64;
        self.write_back()?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_from_extension_and_format() {
        let t = OutputTarget::parse("a/b.csv", None).unwrap();
        assert_eq!(t.format, OutputFormat::Csv);
        assert_eq!(
            OutputTarget::parse("x.arrow", None).unwrap().format,
            OutputFormat::Ipc
        );
        assert_eq!(
            OutputTarget::parse("x.parquet", None).unwrap().format,
            OutputFormat::Parquet
        );
        assert!(matches!(
            OutputTarget::parse("-", None),
            Err(SinkError::Usage(_))
        ));
        assert!(matches!(
            OutputTarget::parse("-", Some("parquet")),
            Err(SinkError::Usage(_))
        ));
        assert_eq!(OutputTarget::parse("-", Some("ipc")).unwrap().path, None);
    }

    #[test]
    fn unfinished_output_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let target =
            OutputTarget::parse(d.path().join("x.parquet").to_str().unwrap(), None).unwrap();
        let mut sink = FrameSink::create(&target, SinkOptions::default()).unwrap();
        sink.write(&df!("a" => [1u32, 2]).unwrap()).unwrap();
        drop(sink);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let target = OutputTarget::parse("/no/such/dir/x.parquet", None).unwrap();
        assert!(FrameSink::create(&target, SinkOptions::default()).is_err());
    }

    #[test]
    fn atomic_output_appears_only_when_committed() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("x.npy");
        let mut out = AtomicOutput::create(target.to_str().unwrap()).unwrap();
        out.write_all(b"abc").unwrap();
        drop(out);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        let mut out = AtomicOutput::create(target.to_str().unwrap()).unwrap();
        out.write_all(b"abc").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"abc");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
