//! # attnframes-python — the application layer's commands as Python functions
//!
//! `_native.<command>(input, options, output)` runs one command of [`attnframes_app`] with
//! the options given as three dicts of Python values (the package `attnframes`, beside this
//! crate, builds them from its functions' keyword parameters). The attention array, when one
//! is given, is read in place at its numpy address, the array held while it is read: no
//! copy, no file. Frames kept in
//! memory come back as an [`ArrowStream`] — an object with the Arrow PyCapsule interface
//! (`__arrow_c_stream__`) that `polars.DataFrame(...)` and `pyarrow.table(...)` take without
//! copying a buffer.
//!
//! Errors raise `ValueError` (bad options or input), `OSError` (a file that cannot be opened,
//! read or written) or `TypeError` (a value of the wrong type), with the application layer's
//! one-line message; the package renames the CLI's flags in them to its parameters.

use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;

use attnframes_app as app;
use pyo3::exceptions::{PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict};

/// The name the Arrow PyCapsule interface gives a stream capsule.
const STREAM_CAPSULE: &CStr = c"arrow_array_stream";

/// Frames kept in memory, exported once as an Arrow C stream.
#[pyclass(module = "attnframes._native")]
struct ArrowStream {
    frames: Option<Vec<polars::prelude::DataFrame>>,
}

/// The exported stream. It holds raw pointers, so it is not `Send` by itself; the capsule
/// only hands it to the consumer (pyarrow or polars), which moves it out under the GIL. What
/// is left is released when the capsule drops it.
struct StreamCapsule {
    _stream: polars_arrow::ffi::ArrowArrayStream,
}

// SAFETY: see `StreamCapsule`; the stream's private data is owned by the stream alone.
unsafe impl Send for StreamCapsule {}

#[pymethods]
impl ArrowStream {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The frame's own schema is the only one offered (the interface allows ignoring it).
        let _ = requested_schema;
        let frames = self
            .frames
            .take()
            .ok_or_else(|| PyValueError::new_err("this result was already read"))?;
        let stream =
            frame_sink::arrow_stream(frames).map_err(|e| PyValueError::new_err(e.to_string()))?;
        PyCapsule::new_with_value(py, StreamCapsule { _stream: stream }, STREAM_CAPSULE)
    }
}

/// A C-contiguous numpy array's memory, the array held (so not freed) while a command reads
/// it. The buffer protocol's `PyBuffer` would do the same, but the limited API of Python 3.9
/// (this wheel's abi3 floor) lacks it.
struct ArrayBytes {
    _owner: Py<PyAny>,
    address: usize,
    len: usize,
}

impl AsRef<[u8]> for ArrayBytes {
    fn as_ref(&self) -> &[u8] {
        if self.address == 0 {
            return &[];
        }
        // SAFETY: `address` and `len` are the data pointer and byte size of the C-contiguous
        // array `_owner` holds alive; attnframes only reads it.
        unsafe { std::slice::from_raw_parts(self.address as *const u8, self.len) }
    }
}

/// One dict of options, read key by key; a value of the wrong type names its key.
struct Options<'a, 'py>(&'a Bound<'py, PyDict>);

impl<'py> Options<'_, 'py> {
    fn get<T: for<'a> FromPyObject<'a, 'py>>(&self, key: &str) -> PyResult<Option<T>> {
        match self.0.get_item(key)? {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => v.extract::<T>().map(Some).map_err(|e| {
                let e: PyErr = e.into();
                // A negative or too large integer is a bad value, not a bad type.
                if e.is_instance_of::<PyOverflowError>(v.py()) {
                    PyValueError::new_err(format!("{key}: {v} is out of range"))
                } else {
                    PyTypeError::new_err(format!("{key}: {e}"))
                }
            }),
        }
    }

    fn or<T: for<'a> FromPyObject<'a, 'py>>(&self, key: &str, default: T) -> PyResult<T> {
        Ok(self.get(key)?.unwrap_or(default))
    }

    fn path(&self, key: &str) -> PyResult<Option<PathBuf>> {
        Ok(self.get::<String>(key)?.map(PathBuf::from))
    }

    /// A tensor given as a path (a string) or as an array (a dict the package made of it).
    fn tensor(&self, key: &str) -> PyResult<Option<app::TensorInput>> {
        match self.0.get_item(key)? {
            None => Ok(None),
            Some(v) if v.is_none() => Ok(None),
            Some(v) => match v.cast::<PyDict>() {
                Ok(array) => Ok(Some(app::TensorInput::Array(shared_array(array, key)?))),
                Err(_) => Ok(self.path(key)?.map(app::TensorInput::File)),
            },
        }
    }

    /// A string option that must be one of `choices`; returns its index.
    fn choice(&self, key: &str, choices: &[&str], default: usize) -> PyResult<usize> {
        let Some(value) = self.get::<String>(key)? else {
            return Ok(default);
        };
        choices.iter().position(|c| *c == value).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{key}: expected one of {}; got '{value}'",
                choices
                    .iter()
                    .map(|c| format!("'{c}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }
}

/// An array given for `name`: the C-contiguous ndarray (`owner`), its data `address` and
/// `nbytes`, numpy dtype string (`<f4`) and shape, as the package reads them off the array.
fn shared_array(array: &Bound<'_, PyDict>, name: &str) -> PyResult<app::SharedArray> {
    let o = Options(array);
    let owner = array
        .get_item("owner")?
        .ok_or_else(|| PyValueError::new_err(format!("{name}: an array without data")))?;
    let bytes = ArrayBytes {
        _owner: owner.unbind(),
        address: o.or("address", 0)?,
        len: o.or("nbytes", 0)?,
    };
    let dtype: String = o.or("dtype", String::new())?;
    let element = ingest::npy::parse_descr(&dtype)
        .map_err(|e| PyValueError::new_err(format!("{name}: {e}")))?;
    Ok(app::SharedArray {
        name: PathBuf::from(format!("<{name} array>")),
        element,
        shape: o.or("shape", Vec::new())?,
        bytes: Arc::new(bytes),
    })
}

/// A layer reduced on its device (`attnframes._device`): Q, K and its arrays read in place.
fn reduced_input(d: &Bound<'_, PyDict>) -> PyResult<app::ReducedInput> {
    let o = Options(d);
    let array = |key: &str| -> PyResult<Option<app::TensorInput>> {
        match d.get_item(key)? {
            Some(a) if !a.is_none() => Ok(Some(app::TensorInput::Array(shared_array(
                a.cast::<PyDict>()?,
                key,
            )?))),
            _ => Ok(None),
        }
    };
    Ok(app::ReducedInput {
        queries: o.or("queries", 0)?,
        keys: o.or("keys", 0)?,
        positions: array("positions")?,
        scores: array("scores")?,
        sums: array("sums")?,
        non_finite: match o.get::<u64>("non_finite_index")? {
            Some(at) => Some((at, o.or("non_finite_value", f32::NAN)?)),
            None => None,
        },
    })
}

fn input_options(d: &Bound<'_, PyDict>) -> PyResult<app::InputOptions> {
    let o = Options(d);
    let attn_array = match d.get_item("attn_array")? {
        Some(a) if !a.is_none() => Some(shared_array(a.cast::<PyDict>()?, "attn")?),
        _ => None,
    };
    let attn: Vec<String> = o.or("attn", Vec::new())?;
    Ok(app::InputOptions {
        attn: match &attn_array {
            Some(a) => vec![a.name.clone()],
            None => attn.into_iter().map(PathBuf::from).collect(),
        },
        attn_array,
        attn_key: o.get("attn_key")?,
        layout: o.get("layout")?,
        attention_mask: o.tensor("attention_mask")?,
        padding_mask: o.tensor("padding_mask")?,
        tokens: o.path("tokens")?,
        token_lists: o.get("token_lists")?,
        input_ids: o.tensor("input_ids")?,
        vocab: o.path("vocab")?,
        head_importance: o.tensor("head_importance")?,
        layers: o.get("layers")?,
        heads: o.get("heads")?,
        batch: o.get("batch")?,
        allow_nan: o.or("allow_nan", false)?,
        queries: match (
            o.get::<usize>("query_offset")?,
            o.or("cross_attention", false)?,
        ) {
            (Some(_), true) => {
                return Err(PyValueError::new_err(
                    "query_offset and cross_attention: give one",
                ))
            }
            (Some(first), false) => app::QueryPositions::Offset(first),
            (None, true) => app::QueryPositions::Cross,
            (None, false) => app::QueryPositions::Auto,
        },
        generation_steps: o.or("generation_steps", false)?,
        reduced: match d.get_item("reduced")? {
            Some(r) if !r.is_none() => Some(reduced_input(r.cast::<PyDict>()?)?),
            _ => None,
        },
        attn_steps: match d.get_item("attn_steps")? {
            Some(list) if !list.is_none() => list
                .try_iter()?
                .enumerate()
                .map(|(t, step)| shared_array(step?.cast::<PyDict>()?, &format!("step {t}")))
                .collect::<PyResult<_>>()?,
            _ => Vec::new(),
        },
        global_attn: o.tensor("global_attn")?,
        sliding_window: o.or("sliding_window", false)?,
        global_mask: o.tensor("global_mask")?,
        words: match o.or("words", false)? {
            false => None,
            true => Some(
                [
                    app::WordFrom::Mean,
                    app::WordFrom::First,
                    app::WordFrom::Max,
                ][o.choice("word_from", &["mean", "first", "max"], 0)?],
            ),
        },
    })
}

fn output_options(d: &Bound<'_, PyDict>) -> PyResult<app::OutputOptions> {
    let o = Options(d);
    let defaults = app::OutputOptions::default();
    Ok(app::OutputOptions {
        destination: match o.get::<String>("out")? {
            Some(path) => app::Destination::Path(path),
            None => app::Destination::Memory,
        },
        format: match o.get::<String>("format")? {
            None => None,
            Some(_) => Some(
                [
                    app::OutputFormat::Parquet,
                    app::OutputFormat::Csv,
                    app::OutputFormat::Ipc,
                ][o.choice("format", &["parquet", "csv", "ipc"], 0)?],
            ),
        },
        compression: [
            app::Compression::Zstd,
            app::Compression::Snappy,
            app::Compression::None,
        ][o.choice("compression", &["zstd", "snappy", "none"], 0)?],
        row_group_size: o.or("row_group_size", defaults.row_group_size)?,
    })
}

fn dataset_options(d: &Bound<'_, PyDict>) -> PyResult<app::DatasetOptions> {
    let o = Options(d);
    let defaults = app::DatasetOptions::default();
    Ok(app::DatasetOptions {
        tokens_dir: o.path("tokens_dir")?,
        example_id_from: [app::ExampleIdFrom::Stem, app::ExampleIdFrom::Index]
            [o.choice("example_id_from", &["stem", "index"], 0)?],
        partition_by: o.or("partition_by", Vec::new())?,
        max_rows_per_file: o.or("max_rows_per_file", defaults.max_rows_per_file)?,
        shard: o.get("shard")?,
    })
}

const COLORMAPS: [app::Colormap; 3] = [
    app::Colormap::Viridis,
    app::Colormap::NipySpectral,
    app::Colormap::Purples,
];
const COLORMAP_NAMES: [&str; 3] = ["viridis", "nipy_spectral", "purples"];

fn figure_style(d: &Bound<'_, PyDict>) -> PyResult<app::FigureStyle> {
    let o = Options(d);
    Ok(app::FigureStyle {
        colormap: match o.get::<String>("colormap")? {
            None => None,
            Some(_) => Some(COLORMAPS[o.choice("colormap", &COLORMAP_NAMES, 0)?]),
        },
        vmin: o.get("vmin")?,
        vmax: o.get("vmax")?,
        annotate: o.or("annotate", false)?,
        dpi: o.or("dpi", 100)?,
        size: o.get("size")?,
    })
}

/// The exception of an application-layer error: `OSError` for I/O, else `ValueError`.
fn raise(e: app::Error) -> PyErr {
    match e.kind() {
        app::ErrorKind::Io => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// The progress of a Python call: nothing shown; cancelled once Ctrl-C reached the caller.
#[derive(Default)]
struct Interruptible(AtomicBool);

impl app::Progress for Interruptible {
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `work` on a thread of its own, without the GIL, on a pool of `threads` workers.
/// Meanwhile this thread checks Python's signals every 50 ms: Ctrl-C asks the work to stop
/// after its current unit (a slab, a file, a layer) and raises `KeyboardInterrupt` once it has.
fn interruptible<T: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    work: impl FnOnce(&dyn app::Progress) -> app::Result<T> + Send,
) -> PyResult<T> {
    let progress = Interruptible::default();
    let (done, result) = std::sync::mpsc::channel();
    let result = std::sync::Mutex::new(result);
    std::thread::scope(|scope| {
        let progress = &progress;
        scope.spawn(move || {
            let _ = done.send(app::with_threads(threads, || work(progress)).and_then(|r| r));
        });
        let mut signal = None;
        loop {
            let waited = py.detach(|| {
                let result = result.lock().unwrap_or_else(|e| e.into_inner());
                result.recv_timeout(std::time::Duration::from_millis(50))
            });
            match waited {
                Ok(outcome) => {
                    return match signal {
                        Some(interrupt) => Err(interrupt),
                        None => outcome.map_err(raise),
                    }
                }
                Err(RecvTimeoutError::Timeout) if signal.is_none() => {
                    if let Err(interrupt) = py.check_signals() {
                        progress.0.store(true, Ordering::Relaxed);
                        signal = Some(interrupt);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(PyValueError::new_err(
                        "internal: the command's thread stopped",
                    ))
                }
            }
        }
    })
}

/// Runs a frame command interruptibly; frames come back as a stream.
fn frames(
    py: Python<'_>,
    threads: Option<usize>,
    work: impl FnOnce(&dyn app::Progress) -> app::Result<app::Frames> + Send,
) -> PyResult<Option<ArrowStream>> {
    let chunks = interruptible(py, threads, work)?.into_chunks();
    Ok((!chunks.is_empty()).then_some(ArrowStream {
        frames: Some(chunks),
    }))
}

fn threads(d: &Bound<'_, PyDict>) -> PyResult<Option<usize>> {
    Options(d).get("threads")
}

/// The signature every frame command of the app layer shares.
type FrameCommand<O> =
    fn(&app::InputOptions, &O, &app::OutputOptions, &dyn app::Progress) -> app::Result<app::Frames>;

/// Runs a frame command: its input and output from their dicts, its own options by `parse`.
fn frame_command<O: Sync>(
    py: Python<'_>,
    (input, options, output): (&Bound<'_, PyDict>, &Bound<'_, PyDict>, &Bound<'_, PyDict>),
    command: FrameCommand<O>,
    parse: impl FnOnce(&Options<'_, '_>) -> PyResult<O>,
) -> PyResult<Option<ArrowStream>> {
    let (inp, out) = (input_options(input)?, output_options(output)?);
    let opts = parse(&Options(options))?;
    frames(py, threads(options)?, |progress| {
        command(&inp, &opts, &out, progress)
    })
}

fn topk_options(o: &Options<'_, '_>) -> PyResult<app::TopkOptions> {
    Ok(app::TopkOptions {
        k: o.or("k", 10)?,
        all: o.or("all", false)?,
        nonzero: o.or("nonzero", false)?,
        dataset: dataset_options(o.0)?,
    })
}

#[pyfunction]
fn topk(
    py: Python<'_>,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    frame_command(py, (input, options, output), app::topk, topk_options)
}

fn received_options(o: &Options<'_, '_>) -> PyResult<app::ReceivedOptions> {
    Ok(app::ReceivedOptions {
        normalize: [app::Normalize::None, app::Normalize::MinMax]
            [o.choice("normalize", &["none", "minmax"], 0)?],
        reduce: [
            app::Reduce::None,
            app::Reduce::Heads,
            app::Reduce::Layers,
            app::Reduce::All,
        ][o.choice("reduce", &["none", "heads", "layers", "all"], 0)?],
        k: o.get("k")?,
        dataset: dataset_options(o.0)?,
    })
}

#[pyfunction]
fn received(
    py: Python<'_>,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    frame_command(
        py,
        (input, options, output),
        app::received,
        received_options,
    )
}

fn headstats_options(o: &Options<'_, '_>) -> PyResult<app::HeadstatsOptions> {
    let defaults = app::HeadstatsOptions::default();
    Ok(app::HeadstatsOptions {
        cls_tokens: o.or("cls_tokens", defaults.cls_tokens)?,
        sep_tokens: o.or("sep_tokens", defaults.sep_tokens)?,
        punct_tokens: o.or("punct_tokens", defaults.punct_tokens)?,
        sink_threshold: o.or("sink_threshold", defaults.sink_threshold)?,
        pairs: o.get("pairs")?,
        dataset: dataset_options(o.0)?,
    })
}

#[pyfunction]
fn headstats(
    py: Python<'_>,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    frame_command(
        py,
        (input, options, output),
        app::headstats,
        headstats_options,
    )
}

#[pyfunction]
fn similarity(
    py: Python<'_>,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    frame_command(py, (input, options, output), app::similarity, |o| {
        Ok(app::SimilarityOptions {
            attributions: o.tensor("attributions")?.unwrap_or_default(),
            percentile: o.or("percentile", 95.0)?,
            overlap: o.get("overlap")?,
            example_ids: o.path("example_ids")?,
        })
    })
}

#[pyfunction]
fn rollout(
    py: Python<'_>,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    frame_command(py, (input, options, output), app::rollout, rollout_options)
}

fn rollout_options(o: &Options<'_, '_>) -> PyResult<app::RolloutOptions> {
    Ok(app::RolloutOptions {
        fuse: [app::Fuse::Mean, app::Fuse::Max, app::Fuse::Min]
            [o.choice("fuse", &["mean", "max", "min"], 0)?],
        k: o.or("k", 10)?,
        all: o.or("all", false)?,
        relevance: o.get("relevance")?,
    })
}

#[pyfunction]
fn compare(
    py: Python<'_>,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    // compare runs one pass with nothing to report, so it ignores the progress.
    let compare: FrameCommand<app::CompareOptions> =
        |inp, opts, out, _| app::compare(inp, opts, out);
    frame_command(py, (input, options, output), compare, |o| {
        Ok(app::CompareOptions {
            attn_b: o.tensor("attn_b")?.unwrap_or_default(),
            channels_a: o.or("channels_a", Vec::new())?,
            channels_b: o.get("channels_b")?,
            block: o.or("block", 0)?,
            blocks: o.get("blocks")?,
            plot: o.get("plot")?,
            layer: o.get("layer")?,
            head: o.get("head")?,
            figure: figure_style(o.0)?,
        })
    })
}

#[pyfunction]
fn cluster(
    py: Python<'_>,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    frame_command(py, (input, options, output), app::cluster, |o| {
        let defaults = app::ClusterOptions::default();
        Ok(app::ClusterOptions {
            layer: o.or("layer", 0)?,
            head: o.or("head", 0)?,
            k_range: o.or("k_range", defaults.k_range)?,
            rows: [
                app::ClusterRows::All,
                app::ClusterRows::Even,
                app::ClusterRows::Odd,
                app::ClusterRows::Both,
            ][o.choice("rows", &["all", "even", "odd", "both"], 0)?],
            scores: o.get("scores")?,
            seed: o.or("seed", 0)?,
            n_init: o.or("n_init", defaults.n_init)?,
            features: o.tensor("features")?,
            coefs: o.get("coefs")?,
            svm_c: o.or("svm_c", defaults.svm_c)?,
            plot: o.get("plot")?,
            figure: figure_style(options)?,
        })
    })
}

#[pyfunction]
fn melt(
    py: Python<'_>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Option<ArrowStream>> {
    let o = Options(options);
    let out = output_options(output)?;
    let attn: Vec<String> = o.or("attn", Vec::new())?;
    let opts = app::MeltOptions {
        attn: attn.into_iter().map(PathBuf::from).collect(),
        attn_key: o.get("attn_key")?,
        axes: o.or("axes", Vec::new())?,
        tokens: o.path("tokens")?,
        generation_steps: o.or("generation_steps", false)?,
    };
    frames(py, threads(options)?, |progress| {
        app::melt(&opts, &out, progress)
    })
}

#[pyfunction]
fn plot(py: Python<'_>, input: &Bound<'_, PyDict>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let o = Options(options);
    let inp = input_options(input)?;
    let opts = app::PlotOptions {
        output: o.or("out", String::new())?,
        layer: o.get("layer")?,
        head: o.get("head")?,
        grid: o.or("grid", false)?,
        shared_scale: o.or("shared_scale", false)?,
        figure: figure_style(options)?,
        channels: o.get("channels")?,
        block: o.get("block")?,
        text: o.or("text", false)?,
    };
    interruptible(py, threads(options)?, |progress| {
        app::plot(&inp, &opts, progress)
    })
}

#[pyfunction]
fn view(py: Python<'_>, input: &Bound<'_, PyDict>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let o = Options(options);
    let inp = input_options(input)?;
    let defaults = app::ViewOptions::default();
    let opts = app::ViewOptions {
        output: o.or("out", String::new())?,
        k: o.or("k", defaults.k)?,
        colormap: COLORMAPS[o.choice("colormap", &COLORMAP_NAMES, 0)?],
        thumbnail: o.or("thumbnail", defaults.thumbnail)?,
        max_detail: o.or("max_detail", defaults.max_detail)?,
        detail_kib: o.or("detail_kib", defaults.detail_kib)?,
        title: o.get("title")?,
    };
    interruptible(py, threads(options)?, |progress| {
        app::view(&inp, &opts, progress)
    })
}

#[pyfunction]
fn dense(py: Python<'_>, input: &Bound<'_, PyDict>, options: &Bound<'_, PyDict>) -> PyResult<()> {
    let o = Options(options);
    let inp = input_options(input)?;
    let out: String = o.or("out", String::new())?;
    interruptible(py, threads(options)?, |progress| {
        app::dense(&inp, &out, progress)
    })
}

/// A stream of batches into one output (`attnframes.stream`): the app layer's `FrameStream`,
/// finished by `finish` or dropped (leaving nothing) by `abort`.
#[pyclass(module = "attnframes._native")]
struct Stream {
    // A Mutex makes the class Sync, as pyo3 requires; the GIL already serialises the calls.
    inner: std::sync::Mutex<Option<app::FrameStream>>,
    threads: Option<usize>,
}

impl Stream {
    fn inner(&self) -> std::sync::MutexGuard<'_, Option<app::FrameStream>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Stream {
    /// Analyses one batch, or with `layer` one layer of a batch: `input` has its arrays (read
    /// in place), `example_ids` one id per batch row.
    #[pyo3(signature = (input, example_ids=None, layer=None, step=None))]
    fn add(
        &mut self,
        py: Python<'_>,
        input: &Bound<'_, PyDict>,
        example_ids: Option<Vec<String>>,
        layer: Option<u16>,
        step: Option<u32>,
    ) -> PyResult<()> {
        let batch = input_options(input)?;
        let mut inner = self.inner();
        let stream = open_stream(&mut inner)?;
        let threads = self.threads;
        match (layer, step) {
            // One layer is small work, called once per layer (and step) while a model runs:
            // it runs on this thread, without the GIL, rather than on a thread of its own
            // that waits for a core the model's threads hold.
            (Some(l), step) => py
                .detach(|| {
                    app::with_threads(threads, || {
                        stream.add_step_layer(batch, step, l, example_ids)
                    })
                    .and_then(|r| r)
                })
                .map_err(raise),
            (None, None) => {
                interruptible(py, threads, |_| stream.add(batch, example_ids.as_deref()))
            }
            (None, Some(_)) => Err(PyValueError::new_err("step: give the layer too")),
        }
    }

    /// Finishes the batch arriving layer by layer, if any.
    fn end_batch(&mut self, py: Python<'_>) -> PyResult<()> {
        let mut inner = self.inner();
        let stream = open_stream(&mut inner)?;
        interruptible(py, self.threads, |_| stream.end_batch())
    }

    /// Drops the batch arriving layer by layer, unwritten.
    fn drop_batch(&mut self) -> PyResult<()> {
        open_stream(&mut self.inner())?.drop_batch();
        Ok(())
    }

    /// Sets the layers of every batch that arrives layer by layer.
    fn set_layers_per_batch(&mut self, layers: u16) -> PyResult<()> {
        open_stream(&mut self.inner())?
            .set_layers_per_batch(layers)
            .map_err(raise)
    }

    /// Finishes the output; the frames when it goes to memory.
    fn finish(&mut self, py: Python<'_>) -> PyResult<Option<ArrowStream>> {
        let stream = self
            .inner()
            .take()
            .ok_or_else(|| PyValueError::new_err("this stream is closed"))?;
        frames(py, self.threads, |_| stream.finish())
    }

    /// Drops the stream unfinished: nothing it wrote is left.
    fn abort(&mut self) {
        self.inner().take();
    }
}

fn open_stream(inner: &mut Option<app::FrameStream>) -> PyResult<&mut app::FrameStream> {
    inner
        .as_mut()
        .ok_or_else(|| PyValueError::new_err("this stream is closed"))
}

/// Opens a stream of `command` ("topk", "received", "headstats" or "rollout").
#[pyfunction]
fn stream(
    command: &str,
    input: &Bound<'_, PyDict>,
    options: &Bound<'_, PyDict>,
    output: &Bound<'_, PyDict>,
) -> PyResult<Stream> {
    let o = Options(options);
    let command = match command {
        "topk" => app::StreamCommand::Topk(topk_options(&o)?),
        "received" => app::StreamCommand::Received(received_options(&o)?),
        "headstats" => app::StreamCommand::Headstats(headstats_options(&o)?),
        "rollout" => app::StreamCommand::Rollout(rollout_options(&o)?, dataset_options(options)?),
        other => {
            return Err(PyValueError::new_err(format!(
                "command: expected one of 'topk', 'received', 'headstats', 'rollout'; got '{other}'"
            )))
        }
    };
    let inner = app::FrameStream::create(command, input_options(input)?, &output_options(output)?)
        .map_err(raise)?;
    Ok(Stream {
        inner: std::sync::Mutex::new(Some(inner)),
        threads: threads(options)?,
    })
}

/// The summaries as JSON text (the package parses it into dicts).
#[pyfunction]
fn inspect(py: Python<'_>, options: &Bound<'_, PyDict>) -> PyResult<String> {
    let o = Options(options);
    let opts = app::InspectOptions {
        files: o
            .or("files", Vec::<String>::new())?
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        attn_key: o.get("attn_key")?,
        layout: o.get("layout")?,
    };
    let summaries = py.detach(|| app::inspect(&opts)).map_err(raise)?;
    serde_json::to_string(&summaries).map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(topk, m)?)?;
    m.add_function(wrap_pyfunction!(received, m)?)?;
    m.add_function(wrap_pyfunction!(headstats, m)?)?;
    m.add_function(wrap_pyfunction!(similarity, m)?)?;
    m.add_function(wrap_pyfunction!(rollout, m)?)?;
    m.add_function(wrap_pyfunction!(compare, m)?)?;
    m.add_function(wrap_pyfunction!(cluster, m)?)?;
    m.add_function(wrap_pyfunction!(melt, m)?)?;
    m.add_function(wrap_pyfunction!(plot, m)?)?;
    m.add_function(wrap_pyfunction!(view, m)?)?;
    m.add_function(wrap_pyfunction!(dense, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add_function(wrap_pyfunction!(stream, m)?)?;
    m.add_class::<ArrowStream>()?;
    m.add_class::<Stream>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
