//! A dataset: a directory of Parquet parts that DuckDB, pyarrow, pandas and polars read as one
//! table.
//!
//! With partition columns, rows go to hive folders such as `layer=03/` — zero-padded, so that
//! the names sort as the numbers do; the column then lives in the path and not in the files,
//! as Spark and DuckDB write it and as pyarrow requires. Each folder holds `part-NNNNN.parquet`
//! files of at most `max_rows_per_file` rows, all with the same schema and metadata, rows in
//! the order they came, row groups cut at the row-group size. Parts are written under
//! temporary names and renamed together at the end, then `_SUCCESS` is written: a run that
//! fails or is killed leaves no visible part.
//!
//! Shards: shard i of n numbers its parts i, i + n, i + 2n, … so that n processes writing into
//! one directory never pick the same name. Each writes `_SUCCESS.shard-i-of-n`; the shard that
//! finds all n markers writes `_SUCCESS`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::writer::{
    FrameSink, OutputFormat, OutputTarget, PendingFile, Result, SinkError, SinkOptions,
};

/// One of `count` deterministic slices of the work (0-based `index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `i/n` with 0 ≤ i < n.
    pub fn parse(spec: &str) -> Result<Shard> {
        let usage = || {
            SinkError::Usage(format!(
                "--shard {spec}: expected i/n with 0 <= i < n (the i-th of n slices, from 0)"
            ))
        };
        let (i, n) = spec.split_once('/').ok_or_else(usage)?;
        let (index, count) = (
            i.trim().parse::<u32>().map_err(|_| usage())?,
            n.trim().parse::<u32>().map_err(|_| usage())?,
        );
        if index >= count {
            return Err(usage());
        }
        Ok(Shard { index, count })
    }

    /// The items of `0..len` this shard takes: a contiguous slice, the same for any machine.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        let at = |i: u32| (len as u128 * i as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    fn marker(&self) -> String {
        format!("_SUCCESS.shard-{}-of-{}", self.index, self.count)
    }
}

#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// Integer columns whose values name the hive folders, outermost first.
    pub partition_by: Vec<String>,
    pub max_rows_per_file: u64,
    pub shard: Option<Shard>,
    /// Compression, row-group size and metadata of every part.
    pub sink: SinkOptions,
}

/// What a finished dataset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSummary {
    pub rows: u64,
    pub parts: usize,
}

/// Writes frames into a dataset directory (see the module documentation).
pub struct DatasetSink {
    dir: PathBuf,
    options: DatasetOptions,
    widths: Vec<usize>,
    partitions: BTreeMap<Vec<u64>, Partition>,
    done: Vec<PendingFile>,
    buffered: usize,
    rows: u64,
    created: Vec<PathBuf>,
    finished: bool,
}

/// The rows of one partition key: buffered until a row group is full, then written to the
/// open part.
struct Partition {
    folder: PathBuf,
    next_number: u64,
    part: Option<FrameSink>,
    part_rows: u64,
    buffer: Vec<DataFrame>,
    buffered: usize,
}

impl DatasetSink {
    /// Creates `dir` if needed. An unsharded run replaces an earlier dataset there but refuses
    /// a directory holding anything else; a shard only clears its own marker.
    pub fn create(dir: &Path, options: DatasetOptions) -> Result<DatasetSink> {
        if options.max_rows_per_file == 0 {
            return Err(SinkError::Usage(
                "--max-rows-per-file must be at least 1".into(),
            ));
        }
        if options.sink.row_group_size == 0 {
            return Err(SinkError::Usage(
                "--row-group-size must be at least 1".into(),
            ));
        }
        let bad = |reason: String| SinkError::Output {
            path: dir.to_path_buf(),
            reason,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(bad("exists and is not a directory".into()));
        }
        let created = create_dirs(dir).map_err(|e| bad(format!("cannot create ({e})")))?;
        match &options.shard {
            None => {
                if let Some(other) = foreign_entry(dir).map_err(|e| bad(e.to_string()))? {
                    return Err(bad(format!(
                        "holds {other}, which is not part of an attnframes dataset: choose a new or empty directory"
                    )));
                }
            }
            Some(shard) => {
                for name in [shard.marker(), "_SUCCESS".to_string()] {
                    remove_if_present(&dir.join(name)).map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        let widths = vec![2; options.partition_by.len()];
        Ok(DatasetSink {
            dir: dir.to_path_buf(),
            options,
            widths,
            partitions: BTreeMap::new(),
            done: Vec::new(),
            buffered: 0,
            rows: 0,
            created,
            finished: false,
        })
    }

    /// Digits of each partition folder's number (at least 2): from the size of its axis, so
    /// that every run over the same model names its folders alike.
    pub fn set_key_widths(&mut self, widths: &[usize]) {
        for (w, &n) in self.widths.iter_mut().zip(widths) {
            *w = n.max(2);
        }
    }

    /// Routes the rows of `df` to their partitions.
    pub fn write(&mut self, df: &DataFrame) -> Result<()> {
        let keys = self.key_values(df)?;
        let n = df.height();
        let mut start = 0;
        while start < n {
            let mut end = start + 1;
            while end < n && keys.iter().all(|k| k[end] == k[start]) {
                end += 1;
            }
            let key: Vec<u64> = keys.iter().map(|k| k[start]).collect();
            self.push(key, df.slice(start as i64, end - start))?;
            start = end;
        }
        self.rows += n as u64;
        Ok(())
    }

    /// Each partition column as u64 values.
    fn key_values(&self, df: &DataFrame) -> Result<Vec<Vec<u64>>> {
        self.options
            .partition_by
            .iter()
            .map(|name| {
                let usage = |why: String| SinkError::Usage(format!("--partition-by {name}: {why}"));
                let col = df.column(name).map_err(|_| {
                    let names: Vec<&str> = df.get_column_names().iter().map(|c| c.as_str()).collect();
                    usage(format!("the frame has no such column (its columns: {})", names.join(", ")))
                })?;
                if !col.dtype().is_unsigned_integer() {
                    return Err(usage(format!(
                        "only integer columns such as layer, head or batch can name folders ({name} is {})",
                        col.dtype()
                    )));
                }
                let values = col
                    .cast(&DataType::UInt64)
                    .and_then(|c| c.u64().map(|c| c.into_no_null_iter().collect()))
                    .map_err(|e| usage(e.to_string()))?;
                Ok(values)
            })
            .collect()
    }

    fn push(&mut self, key: Vec<u64>, rows: DataFrame) -> Result<()> {
        let len = rows.height();
        let partition = match self.partitions.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut folder = self.dir.clone();
                for ((name, value), width) in self
                    .options
                    .partition_by
                    .iter()
                    .zip(e.key())
                    .zip(&self.widths)
                {
                    folder.push(format!("{name}={value:0width$}"));
                }
                e.insert(Partition {
                    folder,
                    next_number: self.options.shard.map_or(0, |s| s.index as u64),
                    part: None,
                    part_rows: 0,
                    buffer: Vec::new(),
                    buffered: 0,
                })
            }
        };
        partition.buffer.push(rows);
        partition.buffered += len;
        self.buffered += len;
        let group = self.options.sink.row_group_size;
        if partition.buffered >= group {
            let folder = partition.folder.clone();
            self.flush(&folder, false)?;
        }
        // Many partitions each short of a row group: write the largest buffer out early, so
        // memory stays bounded whatever the number of folders.
        while self.buffered > 4 * group {
            let largest = self
                .partitions
                .values()
                .max_by_key(|p| p.buffered)
                .map(|p| p.folder.clone())
                .expect("rows are buffered somewhere");
            self.flush(&largest, true)?;
        }
        Ok(())
    }

    /// Writes the buffered rows of the partition in `folder`: whole row groups, or (with
    /// `all`) everything.
    fn flush(&mut self, folder: &Path, all: bool) -> Result<()> {
        let group = self.options.sink.row_group_size;
        let Some(p) = self.partitions.values_mut().find(|p| p.folder == folder) else {
            return Ok(());
        };
        let take = if all {
            p.buffered
        } else {
            p.buffered / group * group
        };
        if take == 0 {
            return Ok(());
        }
        let err = |e: PolarsError| SinkError::Output {
            path: folder.to_path_buf(),
            reason: e.to_string(),
        };
        let mut merged = p.buffer.remove(0);
        for f in p.buffer.drain(..) {
            merged.vstack_mut(&f).map_err(err)?;
        }
        let rest = merged.slice(take as i64, merged.height() - take);
        let head = merged.slice(0, take);
        p.buffered = rest.height();
        if rest.height() > 0 {
            p.buffer.push(rest);
        }
        self.buffered -= take;
        let head = drop_columns(head, &self.options.partition_by);
        self.write_parts(folder, &head)
    }

    /// Appends `rows` to the partition's parts, starting a new part at the size limit.
    fn write_parts(&mut self, folder: &Path, rows: &DataFrame) -> Result<()> {
        let max = self.options.max_rows_per_file;
        let stride = self.options.shard.map_or(1, |s| s.count as u64);
        let mut offset = 0usize;
        while offset < rows.height() {
            let p = self
                .partitions
                .values_mut()
                .find(|p| p.folder == folder)
                .expect("partition exists");
            if p.part.is_none() {
                let path = p.folder.join(format!("part-{:05}.parquet", p.next_number));
                p.next_number += stride;
                p.part_rows = 0;
                let made = create_dirs(&p.folder).map_err(|e| SinkError::Output {
                    path: p.folder.clone(),
                    reason: format!("cannot create ({e})"),
                })?;
                self.created.extend(made);
                let target = OutputTarget {
                    path: Some(path),
                    format: OutputFormat::Parquet,
                };
                p.part = Some(FrameSink::create(&target, self.options.sink.clone())?);
            }
            let room = (max - p.part_rows) as usize;
            let n = room.min(rows.height() - offset);
            let piece = rows.slice(offset as i64, n);
            p.part.as_mut().expect("open part").write(&piece)?;
            p.part_rows += n as u64;
            offset += n;
            if p.part_rows == max {
                let sink = p.part.take().expect("open part");
                let (_, file) = sink.finish_pending(&piece)?;
                self.done.push(file);
            }
        }
        Ok(())
    }

    /// Writes what is buffered, renames every part into place, then the markers. `empty`
    /// gives the schema of the one empty part an unpartitioned dataset gets when no row came.
    pub fn finish(mut self, empty: &DataFrame) -> Result<DatasetSummary> {
        let folders: Vec<PathBuf> = self.partitions.values().map(|p| p.folder.clone()).collect();
        for folder in &folders {
            self.flush(folder, true)?;
        }
        let empty = drop_columns(empty.clone(), &self.options.partition_by);
        for p in self.partitions.values_mut() {
            if let Some(sink) = p.part.take() {
                self.done.push(sink.finish_pending(&empty)?.1);
            }
        }
        if self.rows == 0 && self.options.partition_by.is_empty() {
            let number = self.options.shard.map_or(0, |s| s.index);
            let target = OutputTarget {
                path: Some(self.dir.join(format!("part-{number:05}.parquet"))),
                format: OutputFormat::Parquet,
            };
            let sink = FrameSink::create(&target, self.options.sink.clone())?;
            self.done.push(sink.finish_pending(&empty)?.1);
        }
        let dir_err = |e: std::io::Error| SinkError::Output {
            path: self.dir.clone(),
            reason: e.to_string(),
        };
        if self.options.shard.is_none() {
            remove_earlier_dataset(&self.dir).map_err(dir_err)?;
        }
        let parts = self.done.len();
        for file in self.done.drain(..) {
            file.commit()?;
        }
        self.finished = true;
        let summary = format!(
            "{{\"rows\": {}, \"parts\": {parts}, \"attnframes\": {}}}\n",
            self.rows, self.options.sink.metadata_json
        );
        match self.options.shard {
            None => write_marker(&self.dir, "_SUCCESS", &summary).map_err(dir_err)?,
            Some(shard) => {
                write_marker(&self.dir, &shard.marker(), &summary).map_err(dir_err)?;
                let all_done = (0..shard.count).all(|i| {
                    let s = Shard {
                        index: i,
                        count: shard.count,
                    };
                    self.dir.join(s.marker()).exists()
                });
                if all_done {
                    write_marker(&self.dir, "_SUCCESS", "").map_err(dir_err)?;
                }
            }
        }
        Ok(DatasetSummary {
            rows: self.rows,
            parts,
        })
    }
}

impl Drop for DatasetSink {
    /// An unfinished dataset: the parts' temporaries go with their sinks; folders this run
    /// created are removed when they are left empty.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for p in self.partitions.values_mut() {
            p.part.take();
        }
        self.done.clear();
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn drop_columns(df: DataFrame, names: &[String]) -> DataFrame {
    names
        .iter()
        .fold(df, |df, name| df.drop(name).unwrap_or_else(|_| df.clone()))
}

/// A dataset's own files: parts, markers, hive folders and our temporaries.
fn is_dataset_entry(name: &str, is_dir: bool) -> bool {
    if is_dir {
        return name.contains('=');
    }
    name.starts_with("_SUCCESS")
        || is_part(name)
        || (name.starts_with(".part-") && name.ends_with(".tmp"))
}

fn is_part(name: &str) -> bool {
    name.strip_prefix("part-")
        .and_then(|r| r.strip_suffix(".parquet"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The first entry under `dir` that is not a dataset's own.
fn foreign_entry(dir: &Path) -> std::io::Result<Option<String>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type()?.is_dir();
        if !is_dataset_entry(&name, is_dir) {
            return Ok(Some(name));
        }
        if is_dir {
            if let Some(inner) = foreign_entry(&entry.path())? {
                return Ok(Some(format!("{name}/{inner}")));
            }
        }
    }
    Ok(None)
}

/// Removes the visible parts and markers of an earlier run (not the temporaries of this one),
/// and hive folders left empty.
fn remove_earlier_dataset(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if name.contains('=') {
                remove_earlier_dataset(&entry.path())?;
                // Fails, as it should, while the folder still holds anything.
                let _ = std::fs::remove_dir(entry.path());
            }
        } else if is_part(&name) || name.starts_with("_SUCCESS") {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A marker file, written whole (temporary + rename).
fn write_marker(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let temp = dir.join(format!(".{name}.attnframes-{}.tmp", std::process::id()));
    std::fs::write(&temp, text)?;
    std::fs::rename(&temp, dir.join(name))
}

/// Creates `dir` and its missing parents; returns those it created, outermost first, so that
/// removing them in reverse (when empty) leaves the tree as it was.
fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    std::fs::create_dir_all(dir)?;
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(layers: &[u16]) -> DataFrame {
        let n = layers.len() as u32;
        df!("layer" => layers, "position" => (0..n).collect::<Vec<u32>>()).unwrap()
    }

    fn options(partition_by: &[&str], max: u64, group: usize) -> DatasetOptions {
        DatasetOptions {
            partition_by: partition_by.iter().map(|s| s.to_string()).collect(),
            max_rows_per_file: max,
            shard: None,
            sink: SinkOptions {
                row_group_size: group,
                ..SinkOptions::default()
            },
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in walk(dir) {
            out.push(e.strip_prefix(dir).unwrap().display().to_string());
        }
        out.sort();
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flat_map(|e| {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    vec![p]
                }
            })
            .collect()
    }

    #[test]
    fn shard_slices_cover_the_list_once() {
        for n in 1..9u32 {
            let mut seen = Vec::new();
            for i in 0..n {
                seen.extend(Shard { index: i, count: n }.range(23));
            }
            assert_eq!(seen, (0..23).collect::<Vec<_>>());
        }
        assert!(Shard::parse("2/2").is_err());
        assert!(Shard::parse("x").is_err());
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
    }

    #[test]
    fn partitions_become_padded_folders_with_bounded_parts() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("ds");
        let mut sink = DatasetSink::create(&out, options(&["layer"], 3, 2)).unwrap();
        sink.write(&frame(&[0, 0, 0, 0, 11])).unwrap();
        sink.write(&frame(&[11, 0])).unwrap();
        let summary = sink.finish(&frame(&[])).unwrap();
        assert_eq!(summary, DatasetSummary { rows: 7, parts: 3 });
        assert_eq!(
            files(&out),
            [
                "_SUCCESS",
                "layer=00/part-00000.parquet",
                "layer=00/part-00001.parquet",
                "layer=11/part-00000.parquet"
            ]
        );
        let part = std::fs::File::open(out.join("layer=00/part-00001.parquet")).unwrap();
        let df = ParquetReader::new(part).finish().unwrap();
        // Rows in arrival order; the partition column lives in the folder name.
        assert_eq!(df.get_column_names(), ["position"]);
        let pos: Vec<u32> = df
            .column("position")
            .unwrap()
            .u32()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(pos, [3, 1]);
    }

    #[test]
    fn a_failed_run_leaves_nothing_and_a_rerun_replaces() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("ds");
        let mut sink = DatasetSink::create(&out, options(&["layer"], 1, 1)).unwrap();
        sink.write(&frame(&[1, 2, 3])).unwrap();
        drop(sink);
        assert!(!out.exists());
        let mut sink = DatasetSink::create(&out, options(&["layer"], 10, 10)).unwrap();
        sink.write(&frame(&[1, 2, 2])).unwrap();
        sink.finish(&frame(&[])).unwrap();
        let mut sink = DatasetSink::create(&out, options(&[], 10, 10)).unwrap();
        sink.write(&frame(&[5])).unwrap();
        sink.finish(&frame(&[])).unwrap();
        assert_eq!(files(&out), ["_SUCCESS", "part-00000.parquet"]);
    }

    #[test]
    fn foreign_files_are_refused_and_missing_columns_are_usage_errors() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("notes.txt"), "mine").unwrap();
        assert!(matches!(
            DatasetSink::create(d.path(), options(&[], 10, 10)),
            Err(SinkError::Output { .. })
        ));
        let out = d.path().join("ds");
        let mut sink = DatasetSink::create(&out, options(&["head"], 10, 10)).unwrap();
        assert!(matches!(sink.write(&frame(&[1])), Err(SinkError::Usage(_))));
    }

    #[test]
    fn shards_number_parts_apart_and_the_last_writes_success() {
        let d = tempfile::tempdir().unwrap();
        for index in [1, 0] {
            let mut o = options(&["layer"], 1, 1);
            o.shard = Some(Shard { index, count: 2 });
            let mut sink = DatasetSink::create(d.path(), o).unwrap();
            sink.write(&frame(&[4, 4])).unwrap();
            sink.finish(&frame(&[])).unwrap();
            let success = d.path().join("_SUCCESS").exists();
            assert_eq!(success, index == 0);
        }
        assert_eq!(
            files(d.path()),
            [
                "_SUCCESS",
                "_SUCCESS.shard-0-of-2",
                "_SUCCESS.shard-1-of-2",
                "layer=04/part-00000.parquet",
                "layer=04/part-00001.parquet",
                "layer=04/part-00002.parquet",
                "layer=04/part-00003.parquet"
            ]
        );
    }
}
