//! Wiring: option structs from the CLI, source → analysis → sink.

use std::io::{IsTerminal, Write};

use frame_sink::{
    AtomicOutput, Compression, FrameSink, OutputTarget, SinkOptions, TokenDictionary,
};
use indicatif::{ProgressBar, ProgressStyle};
use ingest::{AttentionSource, RowSource, SourceOptions, TokenSpec};
use longformer_dense::SlidingWindowAttention;
use polars::prelude::DataFrame;
use serde_json::{json, Value};
use topk_frames::{received_frame, Normalize, ReceivedOptions, Reduce, TopkFrames, TopkOptions};

use crate::cli::*;
use crate::CliError;

/// Runs `$body` with `$src` bound to the opened input as a row source — dense or Longformer,
/// merged into words with `--words` — and `$spans` to the words' piece positions (or None).
macro_rules! with_row_source {
    ($input:expr, $args:expr, |$src:ident, $spans:ident| $body:expr) => {{
        let from = $args
            .words
            .then(|| $crate::commands::word_from($args.word_from));
        match ($input, from) {
            (Input::Dense(s), None) => {
                let ($src, $spans) = (s, None::<$crate::commands::PieceSpans>);
                $body
            }
            (Input::Dense(s), Some(from)) => {
                let merged = ingest::WordMerged::new(s, from, $args.attn())?;
                let ($src, $spans) = (&merged, Some($crate::commands::PieceSpans::of(&merged)));
                $body
            }
            (Input::Longformer(s), None) => {
                let ($src, $spans) = (s, None::<$crate::commands::PieceSpans>);
                $body
            }
            (Input::Longformer(s), Some(from)) => {
                let merged = ingest::WordMerged::new(s, from, $args.attn())?;
                let ($src, $spans) = (&merged, Some($crate::commands::PieceSpans::of(&merged)));
                $body
            }
        }
    }};
}

mod cluster;
mod dataset;
mod headstats;
mod melt;
mod plot;
mod rollout;
mod view;

/// Runs a parsed command; with `capture`, its main output's frames are kept there.
pub fn run(cli: Cli, capture: Option<frame_sink::FrameCapture>) -> Result<(), CliError> {
    // A pool of its own rather than the global one: the Python binding runs many commands in
    // one process, each with its own --threads.
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(n) = cli.threads {
        pool = pool.num_threads(n as usize);
    }
    let pool = pool
        .build()
        .map_err(|e| CliError::usage(format!("--threads: {e}")))?;
    pool.install(|| match capture {
        Some(c) => capturing(c, || dispatch(cli)),
        None => dispatch(cli),
    })
}

fn dispatch(cli: Cli) -> Result<(), CliError> {
    let show_progress = !cli.quiet && std::io::stderr().is_terminal();
    match cli.command {
        Command::Inspect(a) => inspect(&a),
        Command::Topk(a) => topk(&a, show_progress),
        Command::Received(a) => received(&a, show_progress),
        Command::Dense(a) => dense(&a, show_progress),
        Command::Similarity(a) => similarity(&a),
        Command::Compare(a) => compare(&a),
        Command::Melt(a) => melt::melt(&a, show_progress),
        Command::Cluster(a) => cluster::cluster(&a),
        Command::Plot(a) => plot::plot(&a),
        Command::Headstats(a) => headstats::headstats(&a, show_progress),
        Command::Rollout(a) => rollout::rollout(&a, show_progress),
        Command::View(a) => view::view(&a),
    }
}

fn inspect(a: &InspectArgs) -> Result<(), CliError> {
    let mut all = Vec::new();
    for f in &a.files {
        all.push(ingest::summarize(
            f,
            a.attn_key.as_deref(),
            a.layout.as_deref(),
        )?);
    }
    let text = if a.json {
        serde_json::to_string_pretty(&all).expect("summary serialises") + "\n"
    } else {
        all.iter().map(describe).collect()
    };
    // A closed pipe (`inspect … | head`) is not an error worth a message.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn describe(s: &ingest::TensorSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let key = match (&s.key, s.stacked) {
        (Some(k), Some(n)) => format!(" ('{k}': {n} arrays stacked as layers)"),
        (None, Some(n)) => format!(" ({n} arrays stacked as layers)"),
        (Some(k), None) => format!(" (array '{k}')"),
        (None, None) => String::new(),
    };
    let dims: Vec<String> = s.shape.iter().map(|d| d.to_string()).collect();
    let order = if s.fortran_order {
        " Fortran order"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "{}\n  format     {}{key}\n  dtype      {}",
        s.path, s.format, s.dtype
    );
    let _ = writeln!(out, "  shape      ({}){order}", dims.join(", "));
    let _ = match &s.layout {
        Some(l) => writeln!(out, "  layout     {l}"),
        None => writeln!(
            out,
            "  layout     unknown: {}",
            s.layout_note.as_deref().unwrap_or("")
        ),
    };
    if let Some(b) = s.bytes_on_disk {
        let _ = writeln!(out, "  on disk    {b} bytes");
    }
    if let (Some(nan), Some(inf)) = (s.nan, s.inf) {
        let _ = writeln!(out, "  NaN / Inf  {nan} / {inf}");
    }
    if !s.row_sums.is_empty() {
        let lo = s
            .row_sums
            .iter()
            .map(|h| h.min)
            .fold(f64::INFINITY, f64::min);
        let hi = s
            .row_sums
            .iter()
            .map(|h| h.max)
            .fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            out,
            "  row sums   {lo:.6} … {hi:.6} over every head (1 = rows are probabilities)"
        );
        let _ = writeln!(out, "  per (layer, head) row-sum range:");
        for h in &s.row_sums {
            let _ = writeln!(
                out,
                "    layer {:>3} head {:>3}  {:.6} … {:.6}",
                h.layer, h.head, h.min, h.max
            );
        }
    }
    out
}

pub(crate) fn source_options(a: &InputArgs) -> SourceOptions {
    SourceOptions {
        attn: a.attn().to_path_buf(),
        attn_array: None,
        attn_key: a.attn_key.clone(),
        layout: a.layout.clone(),
        attention_mask: a.attention_mask.clone(),
        padding_mask: a.padding_mask.clone(),
        tokens: match (&a.tokens, &a.input_ids, &a.vocab) {
            (Some(t), _, _) => TokenSpec::File(t.clone()),
            (None, Some(ids), Some(vocab)) => TokenSpec::Ids {
                ids: ids.clone(),
                vocab: vocab.clone(),
            },
            _ => TokenSpec::None,
        },
        head_importance: a.head_importance.clone(),
        layers: a.layers.clone(),
        heads: a.heads.clone(),
        batch: a.batch.clone(),
        allow_nan: a.allow_nan,
    }
}

const MASK_CONVENTIONS: &str = "HF's attention_mask (--attention-mask) uses 1 for real tokens, PyTorch's key_padding_mask (--padding-mask) uses True for padding";

/// The opened input: a dense tensor, or Longformer's sliding-window and global tensors.
pub(crate) enum Input {
    Dense(AttentionSource),
    Longformer(SlidingWindowAttention),
}

pub(crate) fn open_input(a: &InputArgs) -> Result<Input, CliError> {
    if a.attn.len() > 1 {
        return Err(CliError::usage(
            "--attn: several files (a dataset) are taken by topk, received and headstats",
        ));
    }
    if a.vocab.is_some() && a.input_ids.is_none() {
        return Err(CliError::usage(
            "--vocab needs --input-ids (or --tokens-dir)",
        ));
    }
    let opts = source_options(a);
    let input = if a.longformer() {
        Input::Longformer(SlidingWindowAttention::open(
            &opts,
            a.global_attn.as_deref(),
            a.global_mask.as_deref(),
        )?)
    } else {
        let src = AttentionSource::open(&opts)?;
        if let Some(hint) = src.sliding_window_hint() {
            eprintln!("warning: {hint}");
        }
        Input::Dense(src)
    };
    if let Some(mask) = opts.attention_mask.as_ref().or(opts.padding_mask.as_ref()) {
        let problem = match &input {
            Input::Dense(src) => ingest::mask_problem(src)?,
            Input::Longformer(src) => ingest::mask_problem(src)?,
        };
        if let Some(problem) = problem {
            let reason = format!("{problem}; {MASK_CONVENTIONS}");
            return Err(ingest::IngestError::invalid(mask, reason).into());
        }
    }
    Ok(input)
}

impl Input {
    pub(crate) fn shapes(&self) -> Value {
        match self {
            Input::Dense(s) => json!({
                "attn": s.tensor.shape, "layout": s.layout.letters(), "dtype": s.tensor.element.name(),
            }),
            Input::Longformer(s) => json!({
                "attn": s.sliding.shape, "global_attn": s.global.as_ref().map(|g| &g.shape), "layout": "LBHQK",
                "dtype": s.sliding.element.name(), "window": s.w, "global_slots": s.x,
            }),
        }
    }
}

pub(crate) fn token_dictionary(src: &impl RowSource) -> Result<Option<TokenDictionary>, CliError> {
    let Some(t) = src.tokens() else {
        return Ok(None);
    };
    let rows = (0..t.batch_rows()).map(|b| t.row(b).iter().map(String::as_str));
    Ok(Some(TokenDictionary::new(rows)?))
}

pub(crate) fn path_str(p: &Option<std::path::PathBuf>) -> Value {
    p.as_ref()
        .map_or(Value::Null, |p| Value::String(p.display().to_string()))
}

/// The `attnframes` metadata: command, inputs, shapes, options, version.
pub(crate) fn metadata(command: &str, a: &InputArgs, input: &Input, options: Value) -> String {
    metadata_json(command, input_paths(a), input.shapes(), options)
}

/// The input files of a one-file run, as given.
pub(crate) fn input_paths(a: &InputArgs) -> Value {
    json!({
        "attn": a.attn().display().to_string(),
        "attn_key": a.attn_key,
        "global_attn": path_str(&a.global_attn),
        "global_mask": path_str(&a.global_mask),
        "attention_mask": path_str(&a.attention_mask),
        "padding_mask": path_str(&a.padding_mask),
        "tokens": path_str(&a.tokens),
        "input_ids": path_str(&a.input_ids),
        "vocab": path_str(&a.vocab),
        "head_importance": path_str(&a.head_importance),
    })
}

/// The metadata JSON from its parts.
pub(crate) fn metadata_json(command: &str, inputs: Value, shapes: Value, options: Value) -> String {
    json!({
        "command": command,
        "inputs": inputs,
        "shapes": shapes,
        "options": options,
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string()
}

thread_local! {
    /// Set by the Python binding: the main output's frames are kept here instead of written.
    static CAPTURE: std::cell::RefCell<Option<frame_sink::FrameCapture>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the main output of any command captured in memory.
fn capturing<T>(capture: frame_sink::FrameCapture, f: impl FnOnce() -> T) -> T {
    CAPTURE.with(|c| *c.borrow_mut() = Some(capture));
    let out = f();
    CAPTURE.with(|c| *c.borrow_mut() = None);
    out
}

/// Creates the sink first, so that output problems (a missing directory, `-o -` without
/// `--format`) are reported before any input is read.
pub(crate) fn open_sink(o: &OutputArgs) -> Result<FrameSink, CliError> {
    if let Some(capture) = CAPTURE.with(|c| c.borrow().clone()) {
        return Ok(FrameSink::capture(capture));
    }
    open_sink_at(&o.output, o)
}

/// A second output (`--scores`, `--overlap`, …) with the main output's format options, when
/// asked for.
pub(crate) fn open_extra_sink(
    output: &Option<String>,
    o: &OutputArgs,
) -> Result<Option<FrameSink>, CliError> {
    output.as_deref().map(|p| open_sink_at(p, o)).transpose()
}

/// A sink at `output` with the format options of `o`.
fn open_sink_at(output: &str, o: &OutputArgs) -> Result<FrameSink, CliError> {
    let format = o.format.map(|f| match f {
        FormatArg::Parquet => "parquet",
        FormatArg::Csv => "csv",
        FormatArg::Ipc => "ipc",
    });
    let target = OutputTarget::parse(output, format)?;
    Ok(FrameSink::create(&target, sink_options(o))?)
}

/// Compression and row-group size from the command line.
pub(crate) fn sink_options(o: &OutputArgs) -> SinkOptions {
    SinkOptions {
        compression: match o.compression {
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::None => Compression::None,
        },
        row_group_size: o.row_group_size as usize,
        metadata_json: String::new(),
    }
}

pub(crate) fn selection_options(a: &InputArgs) -> Value {
    json!({"layers": a.layers, "heads": a.heads, "batch": a.batch, "layout": a.layout, "allow_nan": a.allow_nan})
}

/// Where a command's frames go: its sink, or a list (one file of a dataset run).
pub(crate) trait FrameOut {
    fn put(&mut self, df: DataFrame) -> Result<(), CliError>;
}

impl FrameOut for FrameSink {
    fn put(&mut self, df: DataFrame) -> Result<(), CliError> {
        self.write(&df)?;
        Ok(())
    }
}

impl FrameOut for Vec<DataFrame> {
    fn put(&mut self, df: DataFrame) -> Result<(), CliError> {
        self.push(df);
        Ok(())
    }
}

fn topk_options(a: &TopkArgs) -> Value {
    let mut options = selection_options(&a.input);
    options["k"] = json!((!a.all).then_some(a.k));
    options["all"] = json!(a.all);
    options["nonzero"] = json!(a.nonzero);
    options
}

fn topk(a: &TopkArgs, show_progress: bool) -> Result<(), CliError> {
    if dataset::is_dataset_run(&a.input, &a.output, &a.dataset) {
        let run = dataset::DatasetRun {
            command: "topk",
            input: &a.input,
            output: &a.output,
            dataset: &a.dataset,
            options: topk_options(a),
            show_progress,
        };
        return dataset::run(run, |args, frames| {
            let input = open_input(args)?;
            with_row_source!(&input, args, |src, spans| Ok((
                topk_on(a, src, spans, frames, false)?,
                src.dims()
            )))
        });
    }
    let mut sink = open_sink(&a.output)?;
    let input = open_input(&a.input)?;
    sink.set_metadata(metadata("topk", &a.input, &input, topk_options(a)));
    let empty = with_row_source!(&input, &a.input, |src, spans| topk_on(
        a,
        src,
        spans,
        &mut sink,
        show_progress
    ))?;
    sink.finish(&empty)?;
    Ok(())
}

/// Puts the top-k frames of `src` to `out`; returns the frame's schema (no rows).
fn topk_on(
    a: &TopkArgs,
    src: &impl RowSource,
    spans: Option<PieceSpans>,
    out: &mut impl FrameOut,
    show_progress: bool,
) -> Result<DataFrame, CliError> {
    let tokens = token_dictionary(src)?;
    let mut frames = TopkFrames::new(
        src,
        tokens.as_ref(),
        TopkOptions {
            k: (!a.all).then_some(a.k as usize),
            nonzero: a.nonzero,
            chunk_rows: a.output.row_group_size as usize,
        },
    )?;
    let bar = progress_bar(show_progress, frames.progress().1 as u64, "slabs");
    let empty = with_pieces(frames.empty()?, &spans)?;
    while let Some(chunk) = frames.next() {
        out.put(with_pieces(chunk?, &spans)?)?;
        bar.set_position(frames.progress().0 as u64);
    }
    bar.finish_and_clear();
    Ok(empty)
}

fn received_options(a: &ReceivedArgs) -> (ReceivedOptions, Value) {
    let opts = ReceivedOptions {
        normalize: match a.normalize {
            NormalizeArg::None => Normalize::None,
            NormalizeArg::Minmax => Normalize::MinMax,
        },
        reduce: match a.reduce {
            ReduceArg::None => Reduce::None,
            ReduceArg::Heads => Reduce::Heads,
            ReduceArg::Layers => Reduce::Layers,
            ReduceArg::All => Reduce::All,
        },
        k: a.k.map(|k| k as usize),
    };
    let mut options = selection_options(&a.input);
    options["normalize"] = json!(format!("{:?}", opts.normalize).to_lowercase());
    options["reduce"] = json!(format!("{:?}", opts.reduce).to_lowercase());
    options["k"] = json!(opts.k);
    (opts, options)
}

fn received(a: &ReceivedArgs, show_progress: bool) -> Result<(), CliError> {
    let (opts, options) = received_options(a);
    if dataset::is_dataset_run(&a.input, &a.output, &a.dataset) {
        let run = dataset::DatasetRun {
            command: "received",
            input: &a.input,
            output: &a.output,
            dataset: &a.dataset,
            options,
            show_progress,
        };
        return dataset::run(run, |args, frames| {
            let input = open_input(args)?;
            with_row_source!(&input, args, |src, spans| {
                let df = received_on(src, spans, opts)?;
                let empty = df.clear();
                frames.push(df);
                Ok((empty, src.dims()))
            })
        });
    }
    let sink = open_sink(&a.output)?;
    let input = open_input(&a.input)?;
    let df = with_row_source!(&input, &a.input, |src, spans| received_on(src, spans, opts))?;
    let meta = metadata("received", &a.input, &input, options);
    write_frames(sink, &meta, &[df])
}

fn received_on(
    src: &impl RowSource,
    spans: Option<PieceSpans>,
    opts: ReceivedOptions,
) -> Result<DataFrame, CliError> {
    let tokens = token_dictionary(src)?;
    with_pieces(received_frame(src, tokens.as_ref(), opts)?, &spans)
}

fn dense(a: &DenseArgs, show_progress: bool) -> Result<(), CliError> {
    no_words(&a.input, "dense")?;
    if !a.input.longformer() {
        return Err(CliError::usage(
            "dense needs --global-attn or --sliding-window (the HF Longformer sliding-window format)",
        ));
    }
    let mut out = AtomicOutput::create(&a.output)?;
    let Input::Longformer(src) = open_input(&a.input)? else {
        unreachable!("--global-attn and --sliding-window open a Longformer input")
    };
    let bar = progress_bar(show_progress, src.slabs().len() as u64, "slabs");
    let written = longformer_dense::write_dense(&src, &mut out, |done| bar.set_position(done));
    bar.finish_and_clear();
    written.map_err(|e| match e {
        longformer_dense::DenseError::Output(io) => CliError::from(out.error(io)),
        other => CliError::from(other),
    })?;
    out.commit()?;
    Ok(())
}

fn similarity(a: &SimilarityArgs) -> Result<(), CliError> {
    if !(0.0..=100.0).contains(&a.percentile) {
        return Err(CliError::usage(format!(
            "--percentile {} is not within 0..100",
            a.percentile
        )));
    }
    let sink = open_sink(&a.output)?;
    let overlap = open_extra_sink(&a.overlap, &a.output)?;
    // The scopes are defined over every layer and head of the tensor.
    let input = open_input(&InputArgs {
        layers: None,
        heads: None,
        ..a.input.clone()
    })?;
    with_row_source!(&input, &a.input, |src, spans| similarity_on(
        a, src, spans, &input, sink, overlap
    ))
}

fn similarity_on(
    a: &SimilarityArgs,
    src: &impl RowSource,
    spans: Option<PieceSpans>,
    input: &Input,
    sink: FrameSink,
    overlap_sink: Option<FrameSink>,
) -> Result<(), CliError> {
    let dims = src.dims();
    let attributions = match &spans {
        None => similarity::Attributions::open(&a.attributions, dims.batch, dims.keys)?,
        // Attribution to a word: the sum over its pieces.
        Some(s) => similarity::Attributions::open(&a.attributions, dims.batch, s.token_positions)?
            .summed_over_groups(&s.pieces, dims.keys),
    };
    let tokens = token_dictionary(src)?;
    let (mut metrics, overlap) =
        similarity::similarity_frames(src, tokens.as_ref(), &attributions, a.percentile)?;
    let mut overlap = with_pieces(overlap, &spans)?;
    if let Some(path) = &a.example_ids {
        let ids = similarity::read_example_ids(path, dims.batch)?;
        metrics = similarity::with_example_ids(metrics, &ids)?;
        overlap = similarity::with_example_ids(overlap, &ids)?;
    }
    let mut options = selection_options(&a.input);
    options["percentile"] = json!(a.percentile);
    options["attributions"] = json!(a.attributions.display().to_string());
    let meta = metadata("similarity", &a.input, input, options);
    if let Some(o) = overlap_sink {
        write_frames(o, &meta, &[overlap])?;
    }
    write_frames(sink, &meta, &[metrics])
}

/// Writes `frames` (at least one) to `sink` with the `attnframes` metadata and renames it into
/// place. Commands with several outputs finish their main output last.
pub(crate) fn write_frames(
    mut sink: FrameSink,
    meta: &str,
    frames: &[DataFrame],
) -> Result<(), CliError> {
    sink.set_metadata(meta.to_string());
    for f in frames {
        sink.write(f)?;
    }
    sink.finish(&frames[0])?;
    Ok(())
}

pub(crate) fn channel_list(spec: &str) -> Vec<String> {
    spec.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fn compare(a: &CompareArgs) -> Result<(), CliError> {
    no_words(&a.input, "compare")?;
    if a.input.longformer() {
        return Err(CliError::usage(
            "compare takes dense attention runs (no --global-attn or --sliding-window)",
        ));
    }
    let sink = open_sink(&a.output)?;
    let blocks_sink = open_extra_sink(&a.blocks, &a.output)?;
    let run_a = AttentionSource::open(&source_options(&a.input))?;
    let run_b = AttentionSource::open(&SourceOptions {
        attn: a.attn_b.clone(),
        ..source_options(&a.input)
    })?;
    if run_a.dims != run_b.dims {
        return Err(ingest::IngestError::invalid(
            &a.attn_b,
            format!(
                "shape {:?} does not match run A's {:?}",
                run_b.tensor.shape, run_a.tensor.shape
            ),
        )
        .into());
    }
    let channels_a = channel_list(&a.channels_a);
    let channels_b = a
        .channels_b
        .as_deref()
        .map_or_else(|| channels_a.clone(), channel_list);
    let seq = run_a.dims.keys;
    if run_a.dims.queries != seq {
        return Err(ingest::IngestError::invalid(
            a.input.attn(),
            "compare needs square attention".to_string(),
        )
        .into());
    }
    let blocks = similarity::ChannelBlocks::new(
        &channels_a,
        &channels_b,
        a.block,
        seq,
        a.input.attn(),
        &a.attn_b,
    )?;
    let result = similarity::compare_runs(&run_a, &run_b, &blocks)?;
    if let Some(path) = &a.plot {
        let id = match (a.layer, a.head) {
            (Some(layer), Some(head)) => {
                let batch = run_a.slabs().first().map_or(0, |s| s.batch);
                let id = ingest::SlabId { batch, layer, head };
                if !run_a.slabs().contains(&id) {
                    return Err(CliError::usage(format!(
                        "--layer {layer} --head {head} is not among the compared heads"
                    )));
                }
                id
            }
            _ => result
                .least_similar
                .ok_or_else(|| CliError::usage("no head to plot"))?,
        };
        let (ma, mb) = similarity::head_matrices(&run_a, &run_b, id, &blocks)?;
        let bytes = compare_figure(a, ma, mb, seq, &channels_a, id)?;
        let mut out = AtomicOutput::create(path)?;
        out.write_all(&bytes)
            .map_err(|e| CliError::from(out.error(e)))?;
        out.commit()?;
    }
    let (comparison, block_means) = (result.heads, result.blocks);
    let mut options = selection_options(&a.input);
    options["attn_b"] = json!(a.attn_b.display().to_string());
    options["channels_a"] = json!(channels_a);
    options["channels_b"] = json!(channels_b);
    options["block"] = json!(a.block);
    let meta = metadata("compare", &a.input, &Input::Dense(run_a), options);
    if let Some(s) = blocks_sink {
        write_frames(s, &meta, &[block_means])?;
    }
    write_frames(sink, &meta, &[comparison])
}

/// A, B in A's channel order (one colour scale, top `--vmax`), and A − B (diverging).
fn compare_figure(
    a: &CompareArgs,
    ma: Vec<f32>,
    mb: Vec<f32>,
    n: usize,
    channels: &[String],
    id: ingest::SlabId,
) -> Result<Vec<u8>, CliError> {
    let path = a.plot.as_deref().unwrap_or_default();
    let format = figures::ImageFormat::from_path(path)
        .ok_or_else(|| CliError::usage(format!("--plot {path}: expected .png or .svg")))?;
    let diff: Vec<f32> = ma.iter().zip(&mb).map(|(x, y)| x - y).collect();
    let panel = |title: &str, values: Vec<f32>, colormap, symmetric| figures::Panel {
        title: format!(
            "{title} (layer {}, head {}, batch {})",
            id.layer, id.head, id.batch
        ),
        matrix: figures::Matrix {
            rows: n,
            cols: n,
            values,
        },
        row_labels: Vec::new(),
        col_labels: Vec::new(),
        colormap,
        symmetric,
    };
    let cmap = plot::colormap(a.figure.colormap.unwrap_or(ColormapArg::Viridis));
    let panels = [
        panel("run A", ma, cmap, false),
        panel("run B", mb, cmap, false),
        panel("A − B", diff, figures::Colormap::RdBu, true),
    ];
    let opts = figures::FigureOptions {
        columns: 3,
        shared_scale: true,
        blocks: Some(figures::Blocks {
            names: channels.to_vec(),
            size: a.block,
        }),
        ..plot::figure_options(&a.figure)?
    };
    Ok(figures::render(&panels, &opts, format)?)
}

/// `--words` only means something to the analyses that rank or measure positions.
pub(crate) fn no_words(a: &InputArgs, command: &str) -> Result<(), CliError> {
    if a.words {
        return Err(CliError::usage(format!(
            "--words is not supported by {command} (topk, received, similarity, headstats and rollout take it)"
        )));
    }
    Ok(())
}

pub(crate) fn word_from(w: WordFromArg) -> ingest::WordFrom {
    match w {
        WordFromArg::Mean => ingest::WordFrom::Mean,
        WordFromArg::First => ingest::WordFrom::First,
        WordFromArg::Max => ingest::WordFrom::Max,
    }
}

/// The token positions of every word, per batch row (for `--words` outputs).
pub(crate) struct PieceSpans {
    pub pieces: Vec<Vec<Vec<u32>>>,
    /// Token positions of the input before merging.
    pub token_positions: usize,
}

impl PieceSpans {
    pub(crate) fn of<S: RowSource>(m: &ingest::WordMerged<'_, S>) -> PieceSpans {
        let batch = m.dims().batch as u32;
        PieceSpans {
            pieces: (0..batch)
                .map(|b| m.words(b).iter().map(|w| w.pieces.clone()).collect())
                .collect(),
            token_positions: m.annotations().tokens().map_or(0, |t| t.row(0).len()),
        }
    }
}

/// With `--words`: `first_piece, last_piece` after `position` (and `query_first_piece,
/// query_last_piece` after `query_position`), the token positions each word spans.
pub(crate) fn with_pieces(
    df: DataFrame,
    spans: &Option<PieceSpans>,
) -> Result<DataFrame, CliError> {
    use polars::prelude::*;
    let Some(spans) = spans else {
        return Ok(df);
    };
    let batch: Vec<u32> = df.column("batch")?.u32()?.into_no_null_iter().collect();
    let mut df = df;
    for (col, prefix) in [("position", ""), ("query_position", "query_")] {
        let Ok(c) = df.column(col) else { continue };
        let words: Vec<u32> = c.u32()?.into_no_null_iter().collect();
        let span = |pick: fn(&[u32]) -> u32| -> Vec<u32> {
            batch
                .iter()
                .zip(&words)
                .map(|(&b, &w)| pick(&spans.pieces[b as usize][w as usize]))
                .collect()
        };
        let first = UInt32Chunked::from_vec(format!("{prefix}first_piece").into(), span(|p| p[0]));
        let last = UInt32Chunked::from_vec(
            format!("{prefix}last_piece").into(),
            span(|p| *p.last().expect("a word has pieces")),
        );
        let at = df.get_column_index(col).expect("column exists") + 1;
        df.insert_column(at, last.into_column())?;
        df.insert_column(at, first.into_column())?;
    }
    Ok(df)
}

pub(crate) fn progress_bar(show: bool, total: u64, unit: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} {{msg}} {{elapsed}} (eta {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}
