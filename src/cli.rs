//! The command line: clap types only; `run` turns them into option structs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "attnframes",
    version,
    about = "Transformer attention tensors as long-format frames (Parquet, CSV, Arrow IPC)"
)]
pub struct Cli {
    /// No progress bar.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Worker threads (default: all cores). Output is identical for any value.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Shape, dtype, format, layout, row-sum ranges and NaN/Inf counts of tensor files.
    Inspect(InspectArgs),
    /// For every (batch, layer, head, query) the k highest-scoring keys.
    Topk(TopkArgs),
    /// Attention each key receives, summed over the valid queries.
    Received(ReceivedArgs),
    /// Longformer sliding-window + global attention as a dense (L,B,H,S,S) float32 .npy.
    Dense(DenseArgs),
    /// Attention vs token attributions: cosine variants, rank correlations, top-set overlap.
    Similarity(SimilarityArgs),
    /// Run vs run: B's channel blocks permuted into A's order, then compared per head.
    Compare(CompareArgs),
    /// Any tensor as a long frame: one index column per axis, then `value`.
    Melt(MeltArgs),
    /// KMeans on the attention rows of one head for each k; k chosen by silhouette.
    Cluster(ClusterArgs),
    /// Heatmaps (PNG/SVG) of heads, layer × head grids, channel blocks; token text heatmaps (HTML/LaTeX).
    Plot(PlotArgs),
    /// Per-head statistics: entropy, distance, self/prev/next/[CLS]/[SEP] mass, sinks, head-detector scores.
    Headstats(HeadstatsArgs),
    /// Attention rollout (Abnar & Zuidema 2020) as a rank frame, and per-position relevance.
    Rollout(RolloutArgs),
    /// One self-contained HTML page to explore attention: layer × head overview, one head with
    /// pan and zoom, top-k on hover, text coloured by received attention, headstats table.
    View(ViewArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Tensor files (.npy, .npz, .safetensors, PyTorch .pt/.pth/.bin).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Array name inside .npz/.safetensors/.pt, or a pattern ('arr_*') whose arrays are
    /// stacked as layers.
    #[arg(long)]
    pub attn_key: Option<String>,
    /// Axis letters (L B H Q K) for the row-sum statistics.
    #[arg(long)]
    pub layout: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Where the attention comes from and what of it is used.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Attention tensor: .npy (C or Fortran order), .npz, .safetensors, a torch.save file
    /// (.pt/.pth/.bin: a tensor, a tuple or list of per-layer tensors, or a dict of them), or -
    /// for an .npy on stdin. topk, received and headstats take several files or a quoted glob ('runs/*.npy'):
    /// one example per file, an `example_id` column added.
    #[arg(long, num_args = 1.., required = true)]
    pub attn: Vec<PathBuf>,
    /// Array name inside .npz/.safetensors/.pt (default: `attentions`, else the only array),
    /// or a pattern ('arr_*', 'layer_*') whose arrays are stacked as layers in natural order.
    #[arg(long)]
    pub attn_key: Option<String>,
    /// Axis letters L B H Q K (default LBHQK for 5-D, HQK for 3-D, QK for 2-D; 4-D needs it).
    #[arg(long)]
    pub layout: Option<String>,
    /// (B,S) HF attention_mask, 1 = real token, 0 = padding: padded queries and keys are left out.
    #[arg(long)]
    pub attention_mask: Option<PathBuf>,
    /// (B,S) PyTorch key_padding_mask / src_key_padding_mask, True (nonzero) = padding.
    #[arg(long, conflicts_with = "attention_mask")]
    pub padding_mask: Option<PathBuf>,
    /// Tokens: .txt (one per line) or .json (a list, or a list of lists per batch row).
    #[arg(long, conflicts_with = "input_ids")]
    pub tokens: Option<PathBuf>,
    /// Token ids (B,S) .npy, turned into tokens with --vocab.
    #[arg(long, requires = "vocab")]
    pub input_ids: Option<PathBuf>,
    /// vocab.txt, vocab.json or tokenizer.json for --input-ids (or --tokens-dir's ids).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// (L,H) head importance: each head's attention is multiplied by it first.
    #[arg(long)]
    pub head_importance: Option<PathBuf>,
    /// Layers to use, e.g. 0,3,8-11 (tensor numbering is kept).
    #[arg(long)]
    pub layers: Option<String>,
    /// Heads to use, e.g. 0-5.
    #[arg(long)]
    pub heads: Option<String>,
    /// Batch rows to use, e.g. 2.
    #[arg(long)]
    pub batch: Option<String>,
    /// Accept NaN/Inf in attention instead of failing; NaN is then skipped by max/min/argmax,
    /// makes every sum it enters NaN, and ranks last (the README's NaN rule).
    #[arg(long)]
    pub allow_nan: bool,
    /// The position of query row 0 among the key positions [default: K − Q when there are
    /// fewer queries than keys, as in generate()'s steps with a KV cache; 0 when square]
    #[arg(long, value_name = "N", conflicts_with = "cross_attention")]
    pub query_offset: Option<usize>,
    /// The queries are another sequence's (an encoder-decoder's cross-attention): query
    /// positions 0..Q; masks and tokens describe the keys' sequence.
    #[arg(long)]
    pub cross_attention: bool,
    /// --attn holds the steps of one generate() call (output_attentions=True,
    /// return_dict_in_generate=True), read as one example over the whole generated sequence:
    /// one file per step (a glob in natural order), or one .pt (the saved attentions tuple),
    /// .npz or .safetensors holding every step (its arrays in natural order, or those an
    /// --attn-key pattern matches). Masks and tokens cover the sequence the steps attend over.
    #[arg(long, conflicts_with_all = ["query_offset", "cross_attention", "global_attn", "sliding_window"])]
    pub generation_steps: bool,
    /// Longformer global attentions (L,B,H,S_pad,x): --attn is then HF's sliding-window tensor.
    #[arg(long)]
    pub global_attn: Option<PathBuf>,
    /// --attn is HF Longformer's sliding-window tensor (L,B,H,S,x+w+1); without --global-attn
    /// it has no global token (x = 0), as LongformerModel returns without a global_attention_mask.
    #[arg(long)]
    pub sliding_window: bool,
    /// (B,S) HF global_attention_mask, nonzero = global (needed when x > 1).
    #[arg(long, requires = "global_attn")]
    pub global_mask: Option<PathBuf>,
    /// Merge subword tokens into words (WordPiece ##, SentencePiece ▁, BPE Ġ) first: positions
    /// index words (topk, received, similarity, headstats, rollout).
    #[arg(long)]
    pub words: bool,
    /// A word's row from its pieces' rows: mean (Clark et al.), first, or max (renormalised).
    #[arg(long, value_enum, default_value = "mean", requires = "words")]
    pub word_from: WordFromArg,
}

impl InputArgs {
    /// The attention file of a one-file run (the first given).
    pub fn attn(&self) -> &std::path::Path {
        &self.attn[0]
    }

    /// The input is HF Longformer's sliding-window format (with or without global tokens).
    pub fn longformer(&self) -> bool {
        self.global_attn.is_some() || self.sliding_window
    }
}

/// Many examples as one dataset: per-file tokens, example ids, and `-o DIR/` (a trailing slash
/// or an existing directory) for a Parquet dataset: numbered parts, hive folders with
/// --partition-by, `_SUCCESS` written last.
#[derive(Debug, Clone, Args)]
#[command(
    next_help_heading = "Datasets (several --attn files or a glob; -o DIR/ writes a Parquet dataset)"
)]
pub struct DatasetArgs {
    /// Per-file tokens: <stem>.json or <stem>.txt in DIR (with --vocab: ids in <stem>.ids.npy).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tokens", "input_ids"])]
    pub tokens_dir: Option<PathBuf>,
    /// example_id from the file stem (`stem`, or `stem:batch` for files of several batch rows)
    /// or from the file's index in the input list.
    #[arg(long, value_enum, default_value = "stem")]
    pub example_id_from: ExampleIdArg,
    /// With -o DIR/: hive folders per value of these columns, e.g. layer or layer,head.
    #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
    pub partition_by: Vec<String>,
    /// With -o DIR/: rows per part file at most.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rows_per_file: u64,
    /// Process the i-th of n contiguous slices of the input list (0 <= i < n); with -o DIR/.
    #[arg(long, value_name = "i/n")]
    pub shard: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExampleIdArg {
    Stem,
    Index,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WordFromArg {
    Mean,
    First,
    Max,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Parquet,
    Csv,
    Ipc,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    Snappy,
    None,
}

/// Where the frame goes.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output: .parquet, .csv, .arrow/.ipc; - for stdout (needs --format).
    #[arg(long, short)]
    pub output: String,
    /// Output format (overrides the extension; required with -o -).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Parquet compression.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compression: CompressionArg,
    /// Rows per Parquet row group (and Arrow record batch).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub row_group_size: u64,
}

#[derive(Debug, Args)]
pub struct TopkArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Keys per query (clamped to the number of valid keys).
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub k: u64,
    /// Rank every valid key (overrides -k).
    #[arg(long)]
    pub all: bool,
    /// Rank only keys whose score is > 0 (with Longformer input, the window and the globals).
    #[arg(long)]
    pub nonzero: bool,
    #[command(flatten)]
    pub dataset: DatasetArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NormalizeArg {
    None,
    Minmax,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReduceArg {
    None,
    Heads,
    Layers,
    All,
}

#[derive(Debug, Args)]
pub struct ReceivedArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Min-max normalise over every selected (batch, layer, head, position) before reducing.
    #[arg(long, value_enum, default_value = "none")]
    pub normalize: NormalizeArg,
    /// Sum over heads, layers or both after normalising.
    #[arg(long, value_enum, default_value = "none")]
    pub reduce: ReduceArg,
    /// Keep ranks ≤ k (default: every rank).
    #[arg(short, value_parser = clap::value_parser!(u64).range(1..))]
    pub k: Option<u64>,
    #[command(flatten)]
    pub dataset: DatasetArgs,
}

#[derive(Debug, Args)]
pub struct DenseArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output .npy, or - for stdout.
    #[arg(long, short)]
    pub output: String,
}

#[derive(Debug, Args)]
pub struct SimilarityArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Token attributions (B,S) or (S,) .npy, e.g. captum summed over the hidden dimension.
    #[arg(long)]
    pub attributions: PathBuf,
    /// Percentile of the top sets (numpy's linear interpolation).
    #[arg(long, default_value_t = 95.0)]
    pub percentile: f64,
    /// Also write the positions in either top set, per batch row and scope.
    #[arg(long)]
    pub overlap: Option<String>,
    /// One id per batch row (.txt): adds an `example_id` column to both outputs.
    #[arg(long)]
    pub example_ids: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The second run (same shape as --attn).
    #[arg(long)]
    pub attn_b: PathBuf,
    /// Channel names of run A in token order, e.g. "SP1,SP2,TO1" (quote names with ').
    #[arg(long)]
    pub channels_a: String,
    /// Channel names of run B (default: A's order).
    #[arg(long)]
    pub channels_b: Option<String>,
    /// Tokens (time points) per channel block.
    #[arg(long)]
    pub block: usize,
    /// Also write the channel × channel block means of both runs.
    #[arg(long)]
    pub blocks: Option<String>,
    /// Draw A, B reordered and A − B of one head (.png or .svg), with channel dividers and names.
    #[arg(long)]
    pub plot: Option<String>,
    /// Layer of the plotted head (default: the head with the lowest cosine).
    #[arg(long, requires = "head")]
    pub layer: Option<u16>,
    /// Head of the plotted head.
    #[arg(long, requires = "layer")]
    pub head: Option<u16>,
    #[command(flatten)]
    pub figure: FigureArgs,
}

#[derive(Debug, Args)]
pub struct MeltArgs {
    /// Tensor: .npy, .npz, .safetensors, .pt (any float, integer or bool dtype); with
    /// --generation-steps, the steps' files or the one file holding every step.
    #[arg(long, num_args = 1.., required = true)]
    pub attn: Vec<PathBuf>,
    /// Array name inside .npz/.safetensors/.pt, or a pattern ('arr_*') whose arrays are
    /// stacked as a first axis.
    #[arg(long)]
    pub attn_key: Option<String>,
    /// One column name per axis, e.g. layer,head,position,dim (layer/head are u16, others u32);
    /// '' for a 0-d tensor (one value, one row).
    #[arg(
        long,
        required_unless_present = "generation_steps",
        conflicts_with = "generation_steps"
    )]
    pub axes: Option<String>,
    /// Tokens (.txt or .json): axes named position / query_position get token / query_token.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// --attn holds the steps of one generate() call (see topk --help): columns batch, layer,
    /// head, query_position, position, value over the whole sequence, each row over the keys
    /// its step holds.
    #[arg(long)]
    pub generation_steps: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RowsArg {
    All,
    Even,
    Odd,
    /// Even and odd separately, in one call.
    Both,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Labels of the chosen k: .parquet, .csv, .arrow.
    #[command(flatten)]
    pub output: OutputArgs,
    /// Layer of the clustered head.
    #[arg(long)]
    pub layer: u16,
    /// Head of the clustered head.
    #[arg(long)]
    pub head: u16,
    /// Values of k to try, e.g. 2-9 (2 ≤ k < number of rows).
    #[arg(long, default_value = "2-9")]
    pub k_range: String,
    /// Query rows: every valid row, the even or odd query positions, or both (even and odd
    /// clustered separately; every output has a `rows` column).
    #[arg(long, value_enum, default_value = "all")]
    pub rows: RowsArg,
    /// Also write k, silhouette, inertia and chosen for every k.
    #[arg(long)]
    pub scores: Option<String>,
    /// Seed of the k-means++ initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// KMeans restarts per k (the lowest inertia is kept).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub n_init: u64,
    /// Input features per query position: (S, F) or (B, S, F) .npy.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Write the one-vs-rest linear SVM from features to clusters: coefficients, intercept, accuracy.
    #[arg(long, requires = "features")]
    pub coefs: Option<String>,
    /// Penalty C of the linear SVM (L2 regularisation, hinge loss).
    #[arg(long, default_value_t = 1.0)]
    pub svm_c: f64,
    /// Composite figure (.png or .svg): silhouette against k, the even/odd quadrants in cluster
    /// order, cluster and feature strips.
    #[arg(long)]
    pub plot: Option<String>,
    #[command(flatten)]
    pub figure: FigureArgs,
}

/// Options every figure takes.
#[derive(Debug, Clone, Args)]
pub struct FigureArgs {
    /// Colour map (default: viridis; purples for the cluster composite).
    #[arg(long, value_enum)]
    pub colormap: Option<ColormapArg>,
    /// Bottom of the colour scale.
    #[arg(long)]
    pub vmin: Option<f32>,
    /// Top of the colour scale (e.g. 0.05 to make figures of several runs comparable).
    #[arg(long)]
    pub vmax: Option<f32>,
    /// Write each cell's value in it (small matrices).
    #[arg(long)]
    pub annotate: bool,
    /// Resolution: pixel sizes and fonts scale with dpi / 100.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(25..=600))]
    pub dpi: u32,
    /// Image size in pixels, e.g. 1600x900 (the layout is fitted into it).
    #[arg(long)]
    pub size: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColormapArg {
    Viridis,
    NipySpectral,
    Purples,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output: .png or .svg (heatmaps), .html or .tex (--text).
    #[arg(long, short)]
    pub output: String,
    /// Layer of the head to draw.
    #[arg(long)]
    pub layer: Option<u16>,
    /// Head to draw.
    #[arg(long)]
    pub head: Option<u16>,
    /// Every selected layer (rows) × head (columns) in one figure.
    #[arg(long, conflicts_with_all = ["layer", "head"])]
    pub grid: bool,
    /// One colour scale for every panel of a grid.
    #[arg(long)]
    pub shared_scale: bool,
    #[command(flatten)]
    pub figure: FigureArgs,
    /// Channel names in token order, e.g. "SP1,SP2,TO1": dividers and names instead of tokens.
    #[arg(long, requires = "block")]
    pub channels: Option<String>,
    /// Tokens (time points) per channel block.
    #[arg(long, requires = "channels")]
    pub block: Option<usize>,
    /// Token text heatmap: each token coloured by the attention it receives (.html or .tex).
    #[arg(long, conflicts_with_all = ["grid", "channels"])]
    pub text: bool,
}

#[derive(Debug, Args)]
pub struct HeadstatsArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Tokens counted by cls_mass (whitespace-separated).
    #[arg(long, default_value = "[CLS] <s>")]
    pub cls_tokens: String,
    /// Tokens counted by sep_mass (whitespace-separated).
    #[arg(long, default_value = "[SEP] </s>")]
    pub sep_tokens: String,
    /// Tokens counted by punct_mass (whitespace-separated).
    #[arg(long, default_value = ". ,")]
    pub punct_tokens: String,
    /// `sink` is true when the first position receives more than this on average (α₀).
    #[arg(long, default_value_t = 0.3)]
    pub sink_threshold: f64,
    /// Also write the head × head Jensen–Shannon distances of the first selected batch row.
    #[arg(long)]
    pub pairs: Option<String>,
    #[command(flatten)]
    pub dataset: DatasetArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FuseArg {
    Mean,
    Max,
    Min,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// How heads are fused into one matrix per layer.
    #[arg(long, value_enum, default_value = "mean")]
    pub fuse: FuseArg,
    /// Keys per query (clamped to the number of valid keys).
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub k: u64,
    /// Rank every valid key (overrides -k).
    #[arg(long)]
    pub all: bool,
    /// Also write per (batch, layer, position) the relevance max over queries of J_l[q, k].
    #[arg(long)]
    pub relevance: Option<String>,
}

#[derive(Debug, Args)]
pub struct ViewArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output page (.html): one file, no network, opens with a double click.
    #[arg(long, short)]
    pub output: String,
    /// Keys listed per query on hover (clamped to the number of valid keys).
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub k: u64,
    /// Colour map of the heatmaps.
    #[arg(long, value_enum, default_value = "viridis")]
    pub colormap: ColormapArg,
    /// Thumbnail side in cells at most (the overview is max-pooled to it).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(8..=256))]
    pub thumbnail: u64,
    /// Side of a head's heatmap in cells at most (longer heads are max-pooled to it).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..=4096))]
    pub max_detail: u64,
    /// Compressed heatmap bytes per head on average, in KiB: the finest level that fits is
    /// embedded (full resolution when it fits, else max-pooled by 2, 4, …).
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub detail_kib: u64,
    /// Page title (default: the attention file's name).
    #[arg(long)]
    pub title: Option<String>,
}
