//! Typed options of every command. Each struct has a `Default` equal to the CLI's defaults,
//! so a caller sets only what differs:
//!
//! ```
//! use attnframes_app::{InputOptions, TopkOptions};
//! let input = InputOptions { layers: Some("0-2".into()), ..InputOptions::file("attentions.npy") };
//! let topk = TopkOptions { k: 5, ..Default::default() };
//! assert_eq!(input.attn[0].to_str(), Some("attentions.npy"));
//! assert!(!topk.all);
//! ```

use std::path::{Path, PathBuf};

pub use figures::Colormap;
pub use frame_sink::{Compression, OutputFormat};
pub use ingest::{QueryPositions, ReducedInput, SharedArray, TensorInput, WordFrom};
pub use rollout::Fuse;
pub use topk_frames::{Normalize, Reduce};

/// Where the attention comes from and what of it is used.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// Attention tensors: `.npy` (C or Fortran order), `.npz`, `.safetensors`, a `torch.save`
    /// file, or `-` for an `.npy` on stdin. Several files or a glob (`runs/*.npy`) are a
    /// dataset, one example per file (topk, received and headstats).
    pub attn: Vec<PathBuf>,
    /// The attention as an array in memory, read in place (the one `attn` entry is then its
    /// name in messages, e.g. `<attn array>`).
    pub attn_array: Option<SharedArray>,
    /// Array name inside `.npz`/`.safetensors`/`.pt` (default `attentions`, else the only
    /// array), or a pattern (`arr_*`) whose arrays are stacked as layers.
    pub attn_key: Option<String>,
    /// Axis letters L B H Q K (default LBHQK for 5-D, HQK for 3-D, QK for 2-D; 4-D needs it).
    pub layout: Option<String>,
    /// (B, S) HF `attention_mask`, 1 = real token, 0 = padding (a file or an array).
    pub attention_mask: Option<TensorInput>,
    /// (B, S) PyTorch `key_padding_mask`, True (nonzero) = padding.
    pub padding_mask: Option<TensorInput>,
    /// Tokens: `.txt` (one per line) or `.json` (a list, or a list of lists per batch row).
    pub tokens: Option<PathBuf>,
    /// Tokens as lists in memory instead of a file: one list per batch row, or one list for
    /// every row.
    pub token_lists: Option<Vec<Vec<String>>>,
    /// Token ids (B, S), turned into tokens with `vocab`.
    pub input_ids: Option<TensorInput>,
    /// `vocab.txt`, `vocab.json` or `tokenizer.json` for `input_ids`.
    pub vocab: Option<PathBuf>,
    /// (L, H) head importance: each head's attention is multiplied by it first.
    pub head_importance: Option<TensorInput>,
    /// Layers, heads and batch rows to use, e.g. `0,3,8-11` (tensor numbering is kept).
    pub layers: Option<String>,
    pub heads: Option<String>,
    pub batch: Option<String>,
    /// Accept NaN/Inf in attention (the README's NaN rule) instead of failing.
    pub allow_nan: bool,
    /// Which positions the query rows are: by default the last Q of the K key positions (all
    /// of them when square); `Offset(n)`; or `Cross`, another sequence's.
    pub queries: QueryPositions,
    /// `attn` holds the steps of one `generate()` call, read as one example over the whole
    /// generated sequence: several files (one step each, in order) or one `.pt` (the saved
    /// `attentions` tuple), `.npz` or `.safetensors` (its arrays in natural order, or those
    /// the `attn_key` pattern matches).
    pub generation_steps: bool,
    /// With `generation_steps`: the steps as arrays in memory, each (L, B, H, Q_t, K_t) in
    /// order, read in place instead of `attn`'s files.
    pub attn_steps: Vec<SharedArray>,
    /// One layer reduced where it was computed (a GPU): its ranked keys and received sums
    /// instead of its rows; `topk` and `received` read it as they would the layer.
    pub reduced: Option<ReducedInput>,
    /// Longformer global attentions (L, B, H, S_pad, x): `attn` is then HF's sliding-window
    /// tensor (L, B, H, S, x + w + 1).
    pub global_attn: Option<TensorInput>,
    /// `attn` is Longformer's sliding-window tensor even without `global_attn` (x = 0).
    pub sliding_window: bool,
    /// (B, S) HF `global_attention_mask`, nonzero = global (needed when x > 1).
    pub global_mask: Option<TensorInput>,
    /// Merge word pieces into words first (WordPiece `##`, SentencePiece `▁`, BPE `Ġ`); a
    /// word's row from its pieces' rows by this rule. Positions then index words.
    pub words: Option<WordFrom>,
}

impl InputOptions {
    /// One attention file, nothing else set.
    pub fn file(path: impl Into<PathBuf>) -> InputOptions {
        InputOptions {
            attn: vec![path.into()],
            ..Default::default()
        }
    }

    /// An in-memory array (its name is what messages call it).
    pub fn array(array: SharedArray) -> InputOptions {
        InputOptions {
            attn: vec![array.name.clone()],
            attn_array: Some(array),
            ..Default::default()
        }
    }

    /// The attention file of a one-file run (the first given).
    pub fn attn(&self) -> &Path {
        self.attn.first().map_or(Path::new(""), PathBuf::as_path)
    }

    /// The input is Longformer's sliding-window format (with or without global tokens).
    pub fn longformer(&self) -> bool {
        self.global_attn.is_some() || self.sliding_window
    }
}

/// Where a command's frames go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Destination {
    /// Returned to the caller as polars frames.
    #[default]
    Memory,
    /// A file (`.parquet`, `.csv`, `.arrow`/`.ipc`), `-` for stdout (needs a format), or a
    /// directory (a trailing `/`, or one that exists) for a Parquet dataset.
    Path(String),
}

/// How and where frames are written.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    pub destination: Destination,
    /// The format (default: from the extension; needed for stdout).
    pub format: Option<OutputFormat>,
    /// Parquet compression (default zstd).
    pub compression: Compression,
    /// Rows per Parquet row group and Arrow record batch (default 1,048,576).
    pub row_group_size: u64,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            destination: Destination::Memory,
            format: None,
            compression: Compression::Zstd,
            row_group_size: 1 << 20,
        }
    }
}

impl OutputOptions {
    /// Frames written to `path` (a file, `-`, or `dir/`).
    pub fn to(path: impl Into<String>) -> OutputOptions {
        OutputOptions {
            destination: Destination::Path(path.into()),
            ..Default::default()
        }
    }
}

/// Where a dataset's `example_id` comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExampleIdFrom {
    /// The file stem (`stem:batch` for files of several batch rows).
    #[default]
    Stem,
    /// The file's index in the input list.
    Index,
}

/// Many examples as one dataset (several `attn` files or a glob).
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// Per-file tokens: `<stem>.json` or `<stem>.txt` here (with `vocab`: `<stem>.ids.npy`).
    pub tokens_dir: Option<PathBuf>,
    pub example_id_from: ExampleIdFrom,
    /// With a directory destination: hive folders per value of these columns.
    pub partition_by: Vec<String>,
    /// With a directory destination: rows per part file at most (default 10,000,000).
    pub max_rows_per_file: u64,
    /// `i/n`: the i-th of n contiguous slices of the input list; with a directory.
    pub shard: Option<String>,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions {
            tokens_dir: None,
            example_id_from: ExampleIdFrom::Stem,
            partition_by: Vec::new(),
            max_rows_per_file: 10_000_000,
            shard: None,
        }
    }
}

/// `topk`: for every (batch, layer, head, query) the k highest-scoring keys.
#[derive(Debug, Clone)]
pub struct TopkOptions {
    /// Keys per query, at least 1, clamped to the valid keys (default 10).
    pub k: u64,
    /// Rank every valid key (overrides `k`).
    pub all: bool,
    /// Rank only keys whose score is > 0.
    pub nonzero: bool,
    pub dataset: DatasetOptions,
}

impl Default for TopkOptions {
    fn default() -> Self {
        TopkOptions {
            k: 10,
            all: false,
            nonzero: false,
            dataset: DatasetOptions::default(),
        }
    }
}

/// `received`: attention each key receives, summed over the valid queries.
#[derive(Debug, Clone, Default)]
pub struct ReceivedOptions {
    /// Min-max over every selected (batch, layer, head, position) before reducing.
    pub normalize: Normalize,
    /// Sum over heads, layers or both after normalising.
    pub reduce: Reduce,
    /// Keep ranks ≤ k (default: every rank).
    pub k: Option<u64>,
    pub dataset: DatasetOptions,
}

/// `similarity`: attention vs token attributions.
#[derive(Debug, Clone)]
pub struct SimilarityOptions {
    /// Token attributions (B, S) or (S,), float.
    pub attributions: TensorInput,
    /// Percentile of the top sets, 0..=100 (numpy's linear interpolation; default 95).
    pub percentile: f64,
    /// Also write the positions in either top set here.
    pub overlap: Option<String>,
    /// One id per batch row (`.txt`): adds an `example_id` column.
    pub example_ids: Option<PathBuf>,
}

impl Default for SimilarityOptions {
    fn default() -> Self {
        SimilarityOptions {
            attributions: TensorInput::default(),
            percentile: 95.0,
            overlap: None,
            example_ids: None,
        }
    }
}

/// Options every figure takes.
#[derive(Debug, Clone)]
pub struct FigureStyle {
    /// Colour map (default viridis; purples for the cluster composite).
    pub colormap: Option<Colormap>,
    pub vmin: Option<f32>,
    pub vmax: Option<f32>,
    /// Write each cell's value in it.
    pub annotate: bool,
    /// Resolution, 25..=600 (default 100): sizes scale with dpi / 100.
    pub dpi: u32,
    /// Image size in pixels, `WIDTHxHEIGHT`.
    pub size: Option<String>,
}

impl Default for FigureStyle {
    fn default() -> Self {
        FigureStyle {
            colormap: None,
            vmin: None,
            vmax: None,
            annotate: false,
            dpi: 100,
            size: None,
        }
    }
}

/// `compare`: run vs run with channel blocks.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// The second run (same shape as the input).
    pub attn_b: TensorInput,
    /// Channel names of run A in token order.
    pub channels_a: Vec<String>,
    /// Channel names of run B (default: A's order).
    pub channels_b: Option<Vec<String>>,
    /// Tokens (time points) per channel block.
    pub block: usize,
    /// Also write the channel × channel block means here.
    pub blocks: Option<String>,
    /// Draw A, B reordered and A − B of one head here (`.png` or `.svg`).
    pub plot: Option<String>,
    /// The plotted head (default: the head with the lowest cosine).
    pub layer: Option<u16>,
    pub head: Option<u16>,
    pub figure: FigureStyle,
}

/// `melt`: any tensor as a long frame.
#[derive(Debug, Clone, Default)]
pub struct MeltOptions {
    /// The tensor (any float, integer or bool dtype); with `generation_steps`, the steps'
    /// files (one each) or the one file holding every step.
    pub attn: Vec<PathBuf>,
    pub attn_key: Option<String>,
    /// One column name per axis (empty for a 0-d tensor); with `generation_steps`, none.
    pub axes: Vec<String>,
    /// `attn` holds the steps of one `generate()` call (as
    /// [`InputOptions::generation_steps`]): the columns are then `batch, layer, head,
    /// query_position, position, value` over the whole sequence, each row over the keys its
    /// step holds.
    pub generation_steps: bool,
    /// Tokens for the axes named `position` / `query_position`.
    pub tokens: Option<PathBuf>,
}

/// Which query rows `cluster` clusters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClusterRows {
    #[default]
    All,
    Even,
    Odd,
    /// Even and odd separately, in one call.
    Both,
}

/// `cluster`: KMeans on the attention rows of one head.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub layer: u16,
    pub head: u16,
    /// Values of k to try, e.g. `2-9` (default).
    pub k_range: String,
    pub rows: ClusterRows,
    /// Also write k, silhouette, inertia and chosen for every k here.
    pub scores: Option<String>,
    /// Seed of the k-means++ initialisation (default 0).
    pub seed: u64,
    /// KMeans restarts per k, at least 1 (default 10).
    pub n_init: u64,
    /// Input features per query position: (S, F) or (B, S, F).
    pub features: Option<TensorInput>,
    /// Write the one-vs-rest linear SVM's coefficients here (needs `features`).
    pub coefs: Option<String>,
    /// Penalty C of the linear SVM (default 1).
    pub svm_c: f64,
    /// Composite figure here (`.png` or `.svg`).
    pub plot: Option<String>,
    pub figure: FigureStyle,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            layer: 0,
            head: 0,
            k_range: "2-9".into(),
            rows: ClusterRows::All,
            scores: None,
            seed: 0,
            n_init: 10,
            features: None,
            coefs: None,
            svm_c: 1.0,
            plot: None,
            figure: FigureStyle::default(),
        }
    }
}

/// `plot`: heatmaps (PNG/SVG) and token text heatmaps (HTML/LaTeX).
#[derive(Debug, Clone, Default)]
pub struct PlotOptions {
    /// Output: `.png` or `.svg`, or `.html`/`.tex` with `text`.
    pub output: String,
    pub layer: Option<u16>,
    pub head: Option<u16>,
    /// Every selected layer (rows) × head (columns) in one figure.
    pub grid: bool,
    /// One colour scale for every panel of a grid.
    pub shared_scale: bool,
    pub figure: FigureStyle,
    /// Channel names in token order, with `block` tokens each.
    pub channels: Option<Vec<String>>,
    pub block: Option<usize>,
    /// Token text heatmap instead of a matrix.
    pub text: bool,
}

/// `headstats`: per-head statistics.
#[derive(Debug, Clone)]
pub struct HeadstatsOptions {
    /// Tokens counted by `cls_mass` (default `[CLS]`, `<s>`).
    pub cls_tokens: Vec<String>,
    /// Tokens counted by `sep_mass` (default `[SEP]`, `</s>`).
    pub sep_tokens: Vec<String>,
    /// Tokens counted by `punct_mass` (default `.`, `,`).
    pub punct_tokens: Vec<String>,
    /// `sink` is true when the first position receives more than this on average (α₀,
    /// default 0.3).
    pub sink_threshold: f64,
    /// Also write the head × head Jensen–Shannon distances here.
    pub pairs: Option<String>,
    pub dataset: DatasetOptions,
}

impl Default for HeadstatsOptions {
    fn default() -> Self {
        let words = |s: &str| s.split_whitespace().map(str::to_string).collect();
        HeadstatsOptions {
            cls_tokens: words("[CLS] <s>"),
            sep_tokens: words("[SEP] </s>"),
            punct_tokens: words(". ,"),
            sink_threshold: 0.3,
            pairs: None,
            dataset: DatasetOptions::default(),
        }
    }
}

/// `rollout`: attention rollout (Abnar & Zuidema 2020) ranked like `topk`.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    /// How heads are fused into one matrix per layer (default mean).
    pub fuse: Fuse,
    /// Keys per query, at least 1 (default 10).
    pub k: u64,
    /// Rank every valid key (overrides `k`).
    pub all: bool,
    /// Also write per (batch, layer, position) the relevance here.
    pub relevance: Option<String>,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            fuse: Fuse::Mean,
            k: 10,
            all: false,
            relevance: None,
        }
    }
}

/// `view`: one self-contained HTML page to explore attention.
#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// The page (`.html`).
    pub output: String,
    /// Keys listed per query on hover, 1..=1000 (default 10).
    pub k: u64,
    pub colormap: Colormap,
    /// Thumbnail side in cells at most, 8..=256 (default 64).
    pub thumbnail: u64,
    /// Side of a head's heatmap in cells at most, 16..=4096 (default 1024).
    pub max_detail: u64,
    /// Compressed heatmap bytes per head on average, KiB (default 48).
    pub detail_kib: u64,
    /// Page title (default: the attention file's name).
    pub title: Option<String>,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            output: String::new(),
            k: 10,
            colormap: Colormap::Viridis,
            thumbnail: 64,
            max_detail: 1024,
            detail_kib: 48,
            title: None,
        }
    }
}

/// `inspect`: what a tensor file holds.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    pub files: Vec<PathBuf>,
    pub attn_key: Option<String>,
    /// Axis letters for the row-sum statistics.
    pub layout: Option<String>,
}
