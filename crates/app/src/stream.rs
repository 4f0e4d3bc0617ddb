//! Batches of attention into one output as they arrive: each batch is analysed when it is
//! added and only its frames are kept, so a study of many batches never holds more than one.
//! A batch may also arrive layer by layer, as a model computes it: each layer is analysed on
//! arrival and what needs the whole batch (received's min-max and reductions, the batch-major
//! row order) is finished at its last layer.

use ::headstats::{head_stats, stats_frame, HeadStats};
use ::rollout::{LayerChains, RolloutSource};
use frame_sink::{with_private_dictionaries, Shard, TokenDictionary};
use std::sync::Arc;

use ingest::{Dims, Dtype, Element, RowSource, SharedArray};
use polars::prelude::{Column, DataFrame, IntoColumn, UInt16Chunked, UInt32Chunked};
use serde_json::{json, Value};
use topk_frames::ReceivedSums;

use crate::commands::{headstats, received, rollout, topk};
use crate::dataset::{example_labels, DatasetWriter, FileFrames};
use crate::error::{Error, ErrorKind, Result};
use crate::input::{open_source, token_dictionary, with_pieces, PieceSpans, Rows};
use crate::metadata::metadata_json;
use crate::options::{
    DatasetOptions, HeadstatsOptions, InputOptions, OutputOptions, ReceivedOptions, RolloutOptions,
    TopkOptions,
};
use crate::output::Frames;
use crate::progress::Quiet;

/// The analysis a stream runs on every batch.
#[derive(Debug, Clone)]
pub enum StreamCommand {
    Topk(TopkOptions),
    Received(ReceivedOptions),
    Headstats(HeadstatsOptions),
    /// Rollout of each batch (its relevance output aside), written as a dataset is.
    Rollout(RolloutOptions, DatasetOptions),
}

impl StreamCommand {
    /// What a stream cannot take, refused before any batch: `k` = 0, and the extra outputs
    /// that only their command writes.
    fn check(&self) -> Result<()> {
        let k_zero = match self {
            StreamCommand::Topk(o) => o.k == 0,
            StreamCommand::Received(o) => o.k == Some(0),
            StreamCommand::Rollout(o, _) => o.k == 0,
            StreamCommand::Headstats(_) => false,
        };
        if k_zero {
            return Err(Error::usage("-k must be at least 1"));
        }
        let extra = match self {
            StreamCommand::Headstats(o) if o.pairs.is_some() => Some("pairs"),
            StreamCommand::Rollout(o, _) if o.relevance.is_some() => Some("relevance"),
            _ => None,
        };
        match extra {
            Some(name) => Err(Error::usage(format!(
                "--{name}: written by the {} command over a file, not by a stream",
                self.name()
            ))),
            None => Ok(()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            StreamCommand::Topk(_) => "topk",
            StreamCommand::Received(_) => "received",
            StreamCommand::Headstats(_) => "headstats",
            StreamCommand::Rollout(..) => "rollout",
        }
    }

    fn dataset(&self) -> &DatasetOptions {
        match self {
            StreamCommand::Topk(o) => &o.dataset,
            StreamCommand::Received(o) => &o.dataset,
            StreamCommand::Headstats(o) => &o.dataset,
            StreamCommand::Rollout(_, d) => d,
        }
    }

    fn metadata(&self, base: &InputOptions) -> Value {
        let mut options = match self {
            StreamCommand::Topk(o) => topk::topk_metadata(base, o),
            StreamCommand::Received(o) => {
                received::received_metadata(base, &received::analysis_options(o))
            }
            StreamCommand::Headstats(o) => headstats::headstats_metadata(base, o),
            StreamCommand::Rollout(o, _) => rollout::rollout_metadata(base, o),
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
    /// The batch arriving layer by layer, until its last layer.
    layered: Option<LayeredBatch>,
    /// Layers per batch: given, or learnt from the first batch that arrived layer by layer.
    layers_per_batch: Option<u16>,
}

/// What a batch arriving layer by layer keeps until its last layer: per layer, only what its
/// command needs of it.
struct LayeredBatch {
    example_ids: Option<Vec<String>>,
    /// The first layer's dimensions; every later layer must match them (of a generation step:
    /// its own layer 0's; B and H stay those of step 0).
    dims: Dims,
    next_layer: u16,
    /// The generation step whose layers arrive (None: a batch without steps).
    step: Option<u32>,
    kept: Kept,
}

enum Kept {
    /// topk: each selected layer's rows, cut per batch row (see [`Piece`]); `empty` has the
    /// frame's schema.
    Frames {
        pieces: Vec<Piece>,
        empty: Option<DataFrame>,
        /// Generation steps: the latest step's tokens (they cover every key so far), which
        /// give the pieces their token columns when written.
        step_tokens: Option<TokenDictionary>,
    },
    /// received: the column sums of every selected layer, the batch's valid keys, tokens and
    /// word spans.
    Received {
        sums: ReceivedSums,
        valid_keys: Vec<Vec<u32>>,
        tokens: Option<TokenDictionary>,
        spans: Option<PieceSpans>,
    },
    /// headstats: each selected head's statistics.
    Stats(Vec<HeadStats>),
    /// rollout: the chain of every batch row (one n × n J each), and the selected layers'
    /// rows as topk keeps them (`tokens` is always None: its pieces keep theirs).
    Rollout {
        chains: LayerChains,
        pieces: Vec<Piece>,
        empty: Option<DataFrame>,
        tokens: Option<TokenDictionary>,
    },
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
        command.check()?;
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
            layered: None,
            layers_per_batch: None,
        })
    }

    /// Sets the number of layers of every batch that arrives layer by layer, so the last one
    /// finishes its batch at once and a `layers` selection can be resolved (a model's layer
    /// count, as `capture` knows it). Without it the first such batch ends when the next one
    /// starts or the stream finishes, and later batches must have as many layers.
    ///
    /// # Errors
    /// `Usage` for 0 layers.
    pub fn set_layers_per_batch(&mut self, layers: u16) -> Result<()> {
        if layers == 0 {
            return Err(Error::usage("num_layers must be at least 1"));
        }
        self.layers_per_batch = Some(layers);
        Ok(())
    }

    /// Analyses one batch — `batch` gives its attention (an array or a file), masks and
    /// tokens; the stream's selections apply — and writes its frames. `example_ids` names
    /// each batch row (default: the batch's index, `index:row` when it has several rows).
    ///
    /// # Errors
    /// As the command's function; `Usage` when `example_ids` does not have one id per batch
    /// row.
    pub fn add(&mut self, batch: InputOptions, example_ids: Option<&[String]>) -> Result<()> {
        self.end_batch()?;
        let input = InputOptions {
            layout: batch.layout.clone().or(self.base.layout.clone()),
            sliding_window: self.base.sliding_window,
            layers: self.base.layers.clone(),
            heads: self.base.heads.clone(),
            batch: self.base.batch.clone(),
            allow_nan: self.base.allow_nan,
            words: self.base.words,
            ..batch
        };
        let frames = with_private_dictionaries(|| self.frames_of(&input))?;
        self.write_batch(frames, example_ids)
    }

    /// Writes one batch's frames with an `example_id` per batch row.
    fn write_batch(&mut self, frames: FileFrames, example_ids: Option<&[String]>) -> Result<()> {
        let index = self.writer.examples.to_string();
        let labels = labels(&index, example_ids, frames.dims.batch)?;
        let id = example_ids.map_or(&index, |ids| &ids[0]);
        self.writer.write_example(id, &labels, frames)
    }

    fn frames_of(&self, input: &InputOptions) -> Result<FileFrames> {
        // Rollout's chain runs through every layer; `layers` picks the layers written.
        let every_layer = InputOptions {
            layers: None,
            ..input.clone()
        };
        let rollout = matches!(self.command, StreamCommand::Rollout(..));
        let opened = if rollout { &every_layer } else { input };
        let source = open_source(opened, &Quiet)?;
        let rows = Rows::of(&source, opened)?;
        let mut frames = Vec::new();
        let output = OutputOptions {
            row_group_size: self.row_group_size,
            ..Default::default()
        };
        let empty = match &self.command {
            StreamCommand::Topk(o) => topk::topk_into(&rows, o, &output, &mut frames, &Quiet)?,
            StreamCommand::Rollout(o, _) => {
                let written = rollout::written_layers(input, rows.dims().layers)?;
                let joint = RolloutSource::new(&rows, o.fuse, &written)?;
                rollout::ranked_into(&joint, &rows, o, &output, &mut frames, &Quiet)?
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
    pub fn finish(mut self) -> Result<Frames> {
        self.end_batch()?;
        if self.writer.examples == 0 {
            // No batch came: the output still gets the columns a batch would have written.
            if let Ok(frames) = self.frames_of_no_batch() {
                self.writer.set_schema("", &frames.empty, &frames.dims)?;
            }
        }
        self.writer.finish()
    }

    /// The command's frames over a batch of one position (one query attending to one key),
    /// whose schema is every batch's.
    fn frames_of_no_batch(&self) -> Result<FileFrames> {
        let one = SharedArray {
            name: "<no batch>".into(),
            element: Element::little(Dtype::F32),
            shape: vec![1; 5],
            bytes: Arc::new(1f32.to_le_bytes().to_vec()),
        };
        let input = InputOptions {
            token_lists: self.base.words.map(|_| vec![vec!["x".to_string()]]),
            words: self.base.words,
            ..InputOptions::array(one)
        };
        with_private_dictionaries(|| self.frames_of(&input))
    }

    /// Analyses one layer of a batch: `batch` gives that layer's attention (B, H, Q, K) —
    /// layout `BHQK` unless it names another; Longformer's pair as (1, B, H, S, x + w + 1)
    /// and (1, B, H, S_pad, x) — with the batch's masks and tokens; `layer` is
    /// its index in the model. Layer 0 starts a batch (finishing the previous one); the layers
    /// of a batch arrive in order, each with the first one's B, H, Q and K. `example_ids` as
    /// for [`add`](FrameStream::add), given with any layer of the batch.
    ///
    /// # Errors
    /// `BadInput`, naming the layer and the batch, for a layer out of order, a tensor that is
    /// not one layer, dimensions that differ from the batch's first layer, or a layer past the
    /// layers per batch; as [`add`](FrameStream::add) otherwise.
    pub fn add_layer(
        &mut self,
        batch: InputOptions,
        layer: u16,
        example_ids: Option<Vec<String>>,
    ) -> Result<()> {
        self.add_step_layer(batch, None, layer, example_ids)
    }

    /// [`add_layer`](FrameStream::add_layer) for a batch that a model generates step by step
    /// (`generate()` with a KV cache): `step` 0 is the prompt, (B, H, P, P); each later step
    /// brings one query per row, (B, H, 1, P + t), whose position is the last (the query axis's
    /// rule). Step 0's layer 0 starts the batch; every step brings all its layers in order, with
    /// its own masks and tokens (they grow with the sequence). The batch is one example per row,
    /// written when the next batch starts or the stream finishes, its rows ordered as one
    /// forward pass over the whole sequence orders them. Only topk takes steps.
    ///
    /// # Errors
    /// `Usage` for another command; `BadInput` naming the layer and the batch for a step out of
    /// order, a step before the last one's layers are all in, or another B or H than step 0's;
    /// as [`add_layer`](FrameStream::add_layer) otherwise.
    pub fn add_step_layer(
        &mut self,
        batch: InputOptions,
        step: Option<u32>,
        layer: u16,
        example_ids: Option<Vec<String>>,
    ) -> Result<()> {
        if step.is_some() && !matches!(self.command, StreamCommand::Topk(_)) {
            return Err(Error::usage(format!(
                "step: only topk ranks a generation step by step ({} needs the whole sequence)",
                self.command.name()
            )));
        }
        if layer == 0 && step.unwrap_or(0) == 0 {
            self.end_batch()?;
        } else if layer == 0 {
            self.next_step(step.unwrap_or(0))?;
        }
        let result = self.keep_layer_of_batch(batch, layer, step, example_ids);
        if result.is_err() {
            // A batch missing a layer cannot be finished: it is dropped whole, and the next
            // batch starts at layer 0 with the same index.
            self.layered = None;
        }
        result?;
        let pending = self.layered.as_mut().expect("kept above");
        pending.next_layer += 1;
        if step.is_none() && self.layers_per_batch == Some(pending.next_layer) {
            self.end_batch()?;
        }
        Ok(())
    }

    /// Opens step `step` of the batch being generated, once the step before has all its layers.
    fn next_step(&mut self, step: u32) -> Result<()> {
        let at = self.writer.examples;
        let layers = self.layers_per_batch;
        let Some(pending) = self.layered.as_mut() else {
            return Err(layer_error(
                0,
                at,
                format!("step {step}: a generated batch starts at step 0"),
            ));
        };
        let last = pending.step.unwrap_or(0);
        if pending.step.is_none() || step != last + 1 {
            self.layered = None;
            return Err(layer_error(
                0,
                at,
                format!("step {step}: expected step {}", last + 1),
            ));
        }
        if layers.is_some_and(|n| pending.next_layer != n) {
            let done = pending.next_layer;
            self.layered = None;
            return Err(layer_error(
                done,
                at,
                format!("missing: step {last} ended after {done} layers"),
            ));
        }
        self.layers_per_batch = Some(pending.next_layer);
        pending.step = Some(step);
        pending.next_layer = 0;
        Ok(())
    }

    fn keep_layer_of_batch(
        &mut self,
        batch: InputOptions,
        layer: u16,
        step: Option<u32>,
        example_ids: Option<Vec<String>>,
    ) -> Result<()> {
        // A layer past the last belongs to the batch just finished, not to a new one.
        let at = match &self.layered {
            None if layer > 0 => self.writer.examples.saturating_sub(1),
            _ => self.writer.examples,
        };
        if let Some(n) = self.layers_per_batch.filter(|&n| layer >= n) {
            return Err(layer_error(
                layer,
                at,
                format!("num_layers is {n}: the layers are 0..{}", n - 1),
            ));
        }
        let expected = self.layered.as_ref().map_or(0, |p| p.next_layer);
        if layer != expected {
            return Err(layer_error(
                layer,
                self.writer.examples,
                format!("the layers of a batch arrive in order: expected layer {expected}"),
            ));
        }
        let at = self.writer.examples;
        let sliding_window = self.base.sliding_window;
        // A Longformer layer comes as (1, B, H, S, x + w + 1): its source reads LBHQK only.
        let one_layer = (!(sliding_window || batch.global_attn.is_some())).then(|| "BHQK".into());
        let input = InputOptions {
            layout: batch.layout.clone().or(one_layer),
            sliding_window,
            layers: None,
            heads: self.base.heads.clone(),
            batch: self.base.batch.clone(),
            allow_nan: self.base.allow_nan,
            words: self.base.words,
            ..batch
        };
        let selected = self.layer_selected(layer)?;
        with_private_dictionaries(|| {
            // The layer's own source numbers it 0: its messages get the model's index instead.
            let named = |e: Error| match e.kind() {
                ErrorKind::BadInput => {
                    layer_error(layer, at, e.to_string().replace(" at layer 0, ", " at "))
                }
                _ => e,
            };
            let source = open_source(&input, &Quiet).map_err(named)?;
            let rows = Rows::of(&source, &input).map_err(named)?;
            let dims = rows.dims();
            if dims.layers != 1 {
                return Err(layer_error(
                    layer,
                    at,
                    format!(
                        "a layer's attention is (B, H, Q, K); this has {} layers",
                        dims.layers
                    ),
                ));
            }
            if let Some(ids) = &example_ids {
                labels("", Some(ids), dims.batch)?;
            }
            match &mut self.layered {
                // A step's layer 0 sets the step's Q and K; B and H stay the batch's.
                Some(p) if layer == 0 && step.is_some() => {
                    let this_step = Dims {
                        queries: dims.queries,
                        keys: dims.keys,
                        ..p.dims
                    };
                    check_same_dims(&this_step, &dims, layer, at)?;
                    p.dims = this_step;
                }
                Some(p) => check_same_dims(&p.dims, &dims, layer, at)?,
                None => {
                    self.layered = Some(LayeredBatch {
                        example_ids: None,
                        dims,
                        next_layer: 0,
                        step,
                        kept: self.empty_kept(),
                    })
                }
            }
            let pending = self.layered.as_mut().expect("set above");
            if example_ids.is_some() {
                pending.example_ids = example_ids;
            }
            let command = &self.command;
            let rows_per_group = self.row_group_size;
            let place = Place { layer, step };
            keep_layer(
                command,
                rows_per_group,
                &rows,
                place,
                selected,
                &mut pending.kept,
            )
            .map_err(named)
        })
    }

    /// Drops the batch arriving layer by layer, if any, unwritten (its model run failed); the
    /// next batch starts at layer 0 with the same index.
    pub fn drop_batch(&mut self) {
        self.layered = None;
    }

    /// Whether the stream's `layers` selection keeps `layer` of a batch arriving by layer.
    fn layer_selected(&self, layer: u16) -> Result<bool> {
        let Some(spec) = &self.base.layers else {
            return Ok(true);
        };
        let Some(n) = self.layers_per_batch else {
            return Err(Error::usage(
                "layers: a selection over batches that arrive layer by layer needs the layer \
                 count first (num_layers)",
            ));
        };
        let picked = ingest::parse_selection(Some(spec), n as usize, "layer")
            .map_err(|reason| Error::usage(format!("layers: {reason}")))?;
        Ok(picked.contains(&(layer as usize)))
    }

    fn empty_kept(&self) -> Kept {
        match &self.command {
            StreamCommand::Topk(_) => Kept::Frames {
                pieces: Vec::new(),
                empty: None,
                step_tokens: None,
            },
            StreamCommand::Received(_) => Kept::Received {
                sums: ReceivedSums::default(),
                valid_keys: Vec::new(),
                tokens: None,
                spans: None,
            },
            StreamCommand::Headstats(_) => Kept::Stats(Vec::new()),
            StreamCommand::Rollout(o, _) => Kept::Rollout {
                chains: LayerChains::new(o.fuse),
                pieces: Vec::new(),
                empty: None,
                tokens: None,
            },
        }
    }

    /// Finishes the batch arriving layer by layer, if any: its frames, batch-major as a
    /// whole batch's, go to the output.
    ///
    /// # Errors
    /// `BadInput` when the batch has fewer layers than the layers per batch; as
    /// [`add`](FrameStream::add) otherwise.
    pub fn end_batch(&mut self) -> Result<()> {
        let Some(pending) = self.layered.take() else {
            return Ok(());
        };
        let at = self.writer.examples;
        let layers = pending.next_layer;
        match self.layers_per_batch {
            Some(n) if layers != n => {
                return Err(layer_error(
                    layers,
                    at,
                    format!("missing: the batch ended after {layers} of {n} layers"),
                ))
            }
            Some(_) => {}
            None => self.layers_per_batch = Some(layers),
        }
        let dims = Dims {
            layers: layers as usize,
            ..pending.dims
        };
        let (frames, empty) = match pending.kept {
            Kept::Frames {
                pieces,
                empty,
                step_tokens: tokens,
            }
            | Kept::Rollout {
                pieces,
                empty,
                tokens,
                ..
            } => {
                let empty = empty.unwrap_or_default();
                let frames = batch_major(pieces)?
                    .into_iter()
                    .map(|p| p.restored(&empty, tokens.as_ref()));
                let index = self.writer.examples.to_string();
                let labels = labels(&index, pending.example_ids.as_deref(), dims.batch)?;
                let id = pending.example_ids.as_ref().map_or(&index, |ids| &ids[0]);
                return self.writer.write_frames(id, &labels, &empty, &dims, frames);
            }
            Kept::Received {
                sums,
                valid_keys,
                tokens,
                spans,
            } => {
                let StreamCommand::Received(o) = &self.command else {
                    unreachable!("received keeps sums");
                };
                let keys: Vec<&[u32]> = valid_keys.iter().map(Vec::as_slice).collect();
                let options = received::analysis_options(o);
                let df = sums.into_frame(&keys, tokens.as_ref(), options)?;
                let df = with_pieces(df, &spans)?;
                let empty = df.clear();
                (vec![df], empty)
            }
            Kept::Stats(mut stats) => {
                stats.sort_by_key(|s| (s.slab.batch, s.slab.layer, s.slab.head));
                let df = stats_frame(&stats)?;
                let empty = df.clear();
                (vec![df], empty)
            }
        };
        let frames = FileFrames {
            frames,
            empty,
            dims,
        };
        self.write_batch(frames, pending.example_ids.as_deref())
    }
}

/// Analyses one layer (a one-layer source) and keeps what the command needs of it.
/// Where a kept layer sits: its layer, and its generation step if any.
#[derive(Clone, Copy)]
struct Place {
    layer: u16,
    step: Option<u32>,
}

fn keep_layer(
    command: &StreamCommand,
    row_group_size: u64,
    rows: &Rows<'_>,
    place: Place,
    selected: bool,
    kept: &mut Kept,
) -> Result<()> {
    let layer = place.layer;
    if let (
        StreamCommand::Rollout(o, _),
        Kept::Rollout {
            chains,
            pieces,
            empty,
            ..
        },
    ) = (command, &mut *kept)
    {
        // The chain takes every layer; only the selected ones are written.
        chains.push(rows)?;
        if selected {
            let output = OutputOptions {
                row_group_size,
                ..Default::default()
            };
            let mut frames = Vec::new();
            let joint = chains.current(rows);
            let schema = rollout::ranked_into(&joint, rows, o, &output, &mut frames, &Quiet)?;
            empty.get_or_insert(schema);
            for df in frames {
                pieces.extend(Piece::cut(df, place, rows.tokens().is_none())?);
            }
        }
        return Ok(());
    }
    if !selected {
        return Ok(());
    }
    match (command, kept) {
        (
            StreamCommand::Topk(o),
            Kept::Frames {
                pieces,
                empty,
                step_tokens,
            },
        ) => {
            let output = OutputOptions {
                row_group_size,
                ..Default::default()
            };
            let mut frames = Vec::new();
            let schema = topk::topk_into(rows, o, &output, &mut frames, &Quiet)?;
            empty.get_or_insert(schema);
            // A generation step's pieces leave their tokens out: the last step's dictionary
            // gives them all at the end, so the steps' pieces can be joined.
            let steps = place.step.is_some();
            if steps && layer == 0 {
                *step_tokens = token_dictionary(rows)?;
            }
            for df in frames {
                pieces.extend(Piece::cut(df, place, steps || rows.tokens().is_none())?);
            }
        }
        (
            StreamCommand::Received(_),
            Kept::Received {
                sums,
                valid_keys,
                tokens,
                spans,
            },
        ) => {
            sums.append_layer(ReceivedSums::of(rows)?, layer);
            if valid_keys.is_empty() {
                let batch = rows.dims().batch as u32;
                *valid_keys = (0..batch).map(|b| rows.valid_keys(b).to_vec()).collect();
                *tokens = token_dictionary(rows)?;
                *spans = rows.spans();
            }
        }
        (StreamCommand::Headstats(o), Kept::Stats(all)) => {
            let stats = head_stats(rows, &headstats::token_classes(o), o.sink_threshold)?;
            all.extend(stats.into_iter().map(|mut s| {
                s.slab.layer = layer;
                s
            }));
        }
        _ => unreachable!("a stream keeps what its command needs"),
    }
    Ok(())
}

/// The rows of one layer and one batch row of a topk frame, without what a batch arriving
/// layer by layer need not hold for every layer until its last: the columns that are the same
/// in every row (`batch`, `layer`), null (the tokens, when there are none) or runs (`head`,
/// `query_position`, and `rank` = 1, 2, … along each query's rows). What is left is mostly
/// `position` and `score`: 8 of a topk row's 32 bytes.
struct Piece {
    batch: u32,
    layer: u16,
    /// The piece's first head; a generation step's pieces hold one head each, so that the
    /// steps' rows of a head come together.
    head: u16,
    step: u32,
    queries: Vec<QueryRun>,
    rows: DataFrame,
}

/// One query's rows in a piece.
struct QueryRun {
    head: u16,
    query_position: u32,
    rows: u32,
}

const RUN_COLUMNS: [&str; 5] = ["batch", "layer", "head", "query_position", "rank"];

impl Piece {
    /// `df` (a one-layer frame in batch order) cut at batch rows, and at heads for a
    /// generation step.
    fn cut(df: DataFrame, place: Place, no_tokens: bool) -> Result<Vec<Piece>> {
        let batch: Vec<u32> = df.column("batch")?.u32()?.into_no_null_iter().collect();
        // Rollout's frame has no head column: its one fused head is 0.
        let head: Vec<u16> = match df.column("head") {
            Ok(c) => c.u16()?.into_no_null_iter().collect(),
            Err(_) => vec![0; batch.len()],
        };
        let query: Vec<u32> = df
            .column("query_position")?
            .u32()?
            .into_no_null_iter()
            .collect();
        let mut dropped = RUN_COLUMNS.to_vec();
        if no_tokens {
            dropped.extend(["query_token", "token"]);
        }
        let rows = df.drop_many(dropped);
        let mut pieces = Vec::new();
        let mut start = 0;
        let same_piece = |i: usize, j: usize| {
            batch[i] == batch[j] && (place.step.is_none() || head[i] == head[j])
        };
        while start < batch.len() {
            let end = start
                + (start..batch.len())
                    .take_while(|&j| same_piece(start, j))
                    .count();
            let mut queries = Vec::new();
            let mut i = start;
            while i < end {
                let same = |j: &usize| head[*j] == head[i] && query[*j] == query[i];
                let run = (i..end).take_while(same).count();
                queries.push(QueryRun {
                    head: head[i],
                    query_position: query[i],
                    rows: run as u32,
                });
                i += run;
            }
            pieces.push(Piece {
                batch: batch[start],
                layer: place.layer,
                head: head[start],
                step: place.step.unwrap_or(0),
                queries,
                rows: rows.slice(start as i64, end - start),
            });
            start = end;
        }
        Ok(pieces)
    }

    /// The piece's rows with every column of `empty`, in its order; token columns it left out
    /// come from `tokens` when given.
    fn restored(self, empty: &DataFrame, tokens: Option<&TokenDictionary>) -> Result<DataFrame> {
        let n = self.rows.height();
        let mut head = Vec::with_capacity(n);
        let mut query = Vec::with_capacity(n);
        let mut rank = Vec::with_capacity(n);
        for q in &self.queries {
            head.extend(std::iter::repeat_n(q.head, q.rows as usize));
            query.extend(std::iter::repeat_n(q.query_position, q.rows as usize));
            rank.extend(1..=q.rows);
        }
        // In the order of RUN_COLUMNS.
        let mut runs = [
            UInt32Chunked::from_vec("batch".into(), vec![self.batch; n]).into_column(),
            UInt16Chunked::from_vec("layer".into(), vec![self.layer; n]).into_column(),
            UInt16Chunked::from_vec("head".into(), head).into_column(),
            UInt32Chunked::from_vec("query_position".into(), query).into_column(),
            UInt32Chunked::from_vec("rank".into(), rank).into_column(),
        ]
        .map(Some);
        let columns = empty
            .columns()
            .iter()
            .map(|c| {
                let name = c.name().as_str();
                if let Some(i) = RUN_COLUMNS.iter().position(|&r| r == name) {
                    return Ok(runs[i].take().expect("each column once"));
                }
                match (self.rows.column(name), tokens, name) {
                    (Ok(kept), _, _) => Ok(kept.clone()),
                    (Err(_), Some(t), "query_token") => {
                        let codes = self.queries.iter().flat_map(|q| {
                            std::iter::repeat_n(t.code(self.batch, q.query_position), q.rows as _)
                        });
                        Ok(t.column(name, codes.collect()))
                    }
                    (Err(_), Some(t), "token") => {
                        let positions = self.rows.column("position")?.u32()?;
                        let codes = positions
                            .into_no_null_iter()
                            .map(|p| t.code(self.batch, p))
                            .collect();
                        Ok(t.column(name, codes))
                    }
                    (Err(_), _, _) => Ok(Column::full_null(c.name().clone(), n, c.dtype())),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DataFrame::new(n, columns)?)
    }
}

/// `pieces` batch-major, as a whole batch's frames are (a stable sort keeps each layer's pieces
/// in their order, and a head's steps in theirs), with the pieces of one (batch, layer, head)
/// joined: a generation's steps bring one small piece each.
fn batch_major(mut pieces: Vec<Piece>) -> Result<Vec<Piece>> {
    pieces.sort_by_key(|p| (p.batch, p.layer, p.head, p.step));
    let mut joined: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match joined.last_mut() {
            Some(last) if (last.batch, last.layer, last.head) == (p.batch, p.layer, p.head) => {
                last.queries.extend(p.queries);
                last.rows.vstack_mut(&p.rows)?;
            }
            _ => joined.push(p),
        }
    }
    Ok(joined)
}

/// Each batch row's `example_id`: `example_ids`, or the batch's running index `index`.
fn labels(index: &str, example_ids: Option<&[String]>, rows: usize) -> Result<Vec<String>> {
    match example_ids {
        None => Ok(example_labels(index, rows)),
        Some(ids) if ids.len() == rows => Ok(ids.to_vec()),
        Some(ids) => Err(Error::usage(format!(
            "example_ids: {} ids for a batch of {rows} rows",
            ids.len()
        ))),
    }
}

/// The error of layer `layer` of batch `at` (the stream's running batch index).
fn layer_error(layer: u16, at: u64, what: impl std::fmt::Display) -> Error {
    Error::BadBatch(format!("layer {layer} of batch {at}: {what}"))
}

fn check_same_dims(first: &Dims, this: &Dims, layer: u16, at: u64) -> Result<()> {
    let shape = |d: &Dims| (d.batch, d.heads, d.queries, d.keys);
    if shape(first) != shape(this) {
        let (b, h, q, k) = shape(this);
        let (b0, h0, q0, k0) = shape(first);
        return Err(layer_error(
            layer,
            at,
            format!("(B, H, Q, K) = ({b}, {h}, {q}, {k}) but layer 0 had ({b0}, {h0}, {q0}, {k0})"),
        ));
    }
    Ok(())
}
