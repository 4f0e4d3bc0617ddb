//! Opening an input: a dense tensor or Longformer's sliding-window pair, as one row source,
//! merged into words when asked. Dispatch is two enums that implement `RowSource` by
//! delegation, so every analysis is compiled once for them.

use std::path::Path;

use frame_sink::TokenDictionary;
use ingest::{
    AttentionSource, Dims, GenerationSteps, ReducedLayer, RowSource, SlabBuffer, SlabId,
    SourceOptions, TokenSpec, Tokens, WordMerged,
};
use longformer_dense::SlidingWindowAttention;
use polars::prelude::*;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::options::InputOptions;
use crate::progress::Progress;

/// The opened attention: a dense tensor, or Longformer's sliding-window and global tensors.
// One `Source` lives per opened input, so the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Source {
    Dense(AttentionSource),
    Longformer(SlidingWindowAttention),
    /// The steps of one `generate()` call, as the whole generated sequence.
    Steps(GenerationSteps),
    /// One layer reduced on its device: ranked keys and received sums.
    Reduced(ReducedLayer),
}

/// Implements `RowSource` for an enum whose every variant holds a row source, by calling
/// the variant's own method: the analyses are generic over `RowSource`, so each is compiled
/// once for the enum and the match costs one branch per call (per slab, not per row).
macro_rules! delegate_row_source {
    ($enum:ident$(<$lt:lifetime>)?, $($variant:ident),+) => {
        impl$(<$lt>)? RowSource for $enum$(<$lt>)? {
            fn dims(&self) -> Dims {
                match self { $($enum::$variant(s) => s.dims()),+ }
            }
            fn annotations(&self) -> &ingest::Annotations {
                match self { $($enum::$variant(s) => s.annotations()),+ }
            }
            fn slabs(&self) -> Vec<SlabId> {
                match self { $($enum::$variant(s) => s.slabs()),+ }
            }
            fn valid_queries(&self, b: u32) -> &[u32] {
                match self { $($enum::$variant(s) => s.valid_queries(b)),+ }
            }
            fn valid_keys(&self, b: u32) -> &[u32] {
                match self { $($enum::$variant(s) => s.valid_keys(b)),+ }
            }
            fn tokens(&self) -> Option<&Tokens> {
                match self { $($enum::$variant(s) => s.tokens()),+ }
            }
            fn is_seekable(&self) -> bool {
                match self { $($enum::$variant(s) => s.is_seekable()),+ }
            }
            fn for_each_query_row(
                &self,
                slab: SlabId,
                buf: &mut SlabBuffer,
                f: impl FnMut(usize, u32, &[f32]),
            ) -> ingest::Result<()> {
                match self { $($enum::$variant(s) => s.for_each_query_row(slab, buf, f)),+ }
            }
            fn has_sparse_rows(&self) -> bool {
                match self { $($enum::$variant(s) => s.has_sparse_rows()),+ }
            }
            fn for_each_sparse_row(
                &self,
                slab: SlabId,
                buf: &mut SlabBuffer,
                f: impl FnMut(usize, u32, ingest::SparseRow<'_>),
            ) -> ingest::Result<()> {
                match self { $($enum::$variant(s) => s.for_each_sparse_row(slab, buf, f)),+ }
            }
            fn for_each_ranked_row(
                &self,
                slab: SlabId,
                buf: &mut SlabBuffer,
                f: impl FnMut(usize, u32, &[u32], &[f32]),
            ) -> ingest::Result<bool> {
                match self { $($enum::$variant(s) => s.for_each_ranked_row(slab, buf, f)),+ }
            }
            fn valid_matrix(&self, slab: SlabId, buf: &mut SlabBuffer) -> ingest::Result<Vec<f32>> {
                match self { $($enum::$variant(s) => s.valid_matrix(slab, buf)),+ }
            }
            fn received(&self, slab: SlabId, buf: &mut SlabBuffer) -> ingest::Result<Vec<f64>> {
                match self { $($enum::$variant(s) => s.received(slab, buf)),+ }
            }
        }
    };
}

delegate_row_source!(Source, Dense, Longformer, Steps, Reduced);

impl Source {
    /// The input's shapes for the `attnframes` metadata.
    pub(crate) fn shapes(&self) -> Value {
        match self {
            Source::Dense(s) => json!({
                "attn": s.tensor.shape, "layout": s.layout.letters(), "dtype": s.tensor.element.name(),
            }),
            Source::Longformer(s) => json!({
                "attn": s.sliding.shape, "global_attn": s.global.as_ref().map(|g| &g.shape), "layout": "LBHQK",
                "dtype": s.sliding.element.name(), "window": s.w, "global_slots": s.x,
            }),
            Source::Reduced(s) => json!({
                "attn": s.shape(), "layout": "BHQK", "reduced": true, "ranked_k": s.ranked_k(),
            }),
            Source::Steps(s) => json!({
                "generation_steps": s.tensors().map(|t| &t.shape).collect::<Vec<_>>(),
                "dtype": s.tensors().next().map(|t| t.element.name()),
            }),
        }
    }
}

/// The rows an analysis reads: the source's token positions, or its words.
pub enum Rows<'a> {
    Tokens(&'a Source),
    Words(WordMerged<'a, Source>),
}

delegate_row_source!(Rows<'a>, Tokens, Words);

impl<'a> Rows<'a> {
    /// The rows of `source`: merged into words when `input.words` asks for it.
    pub(crate) fn of(source: &'a Source, input: &InputOptions) -> Result<Rows<'a>> {
        Ok(match input.words {
            None => Rows::Tokens(source),
            Some(from) => Rows::Words(WordMerged::new(source, from, input.attn())?),
        })
    }

    /// The token positions every word spans (None without words).
    pub(crate) fn spans(&self) -> Option<PieceSpans> {
        let Rows::Words(m) = self else {
            return None;
        };
        let batch = m.dims().batch as u32;
        Some(PieceSpans {
            pieces: (0..batch)
                .map(|b| m.words(b).iter().map(|w| w.pieces.clone()).collect())
                .collect(),
            token_positions: m.annotations().tokens().map_or(0, |t| t.row(0).len()),
        })
    }
}

/// The token positions of every word, per batch row (for outputs over words).
pub(crate) struct PieceSpans {
    pub pieces: Vec<Vec<Vec<u32>>>,
    /// Token positions of the input before merging.
    pub token_positions: usize,
}

/// Over words: `first_piece, last_piece` after `position` (and `query_first_piece,
/// query_last_piece` after `query_position`), the token positions each word spans.
pub(crate) fn with_pieces(df: DataFrame, spans: &Option<PieceSpans>) -> Result<DataFrame> {
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

/// The token strings of `src` as the frames' shared dictionary.
pub(crate) fn token_dictionary(src: &impl RowSource) -> Result<Option<TokenDictionary>> {
    let Some(t) = src.tokens() else {
        return Ok(None);
    };
    let rows = (0..t.batch_rows()).map(|b| t.row(b).iter().map(String::as_str));
    Ok(Some(TokenDictionary::new(rows)?))
}

/// The ingest options of `a`.
pub(crate) fn source_options(a: &InputOptions) -> SourceOptions {
    SourceOptions {
        attn: a.attn().to_path_buf(),
        attn_array: a.attn_array.clone(),
        attn_key: a.attn_key.clone(),
        layout: a.layout.clone(),
        attention_mask: a.attention_mask.clone(),
        padding_mask: a.padding_mask.clone(),
        tokens: token_spec(a),
        head_importance: a.head_importance.clone(),
        layers: a.layers.clone(),
        heads: a.heads.clone(),
        batch: a.batch.clone(),
        allow_nan: a.allow_nan,
        queries: a.queries,
    }
}

/// Where the tokens of `a` come from: lists, a file, or ids and a vocabulary.
fn token_spec(a: &InputOptions) -> TokenSpec {
    if let Some(lists) = &a.token_lists {
        return TokenSpec::Lists(lists.clone());
    }
    match (&a.tokens, &a.input_ids, &a.vocab) {
        (Some(t), _, _) => TokenSpec::File(t.clone()),
        (None, Some(ids), Some(vocab)) => TokenSpec::Ids {
            ids: ids.clone(),
            vocab: vocab.clone(),
        },
        _ => TokenSpec::None,
    }
}

const MASK_CONVENTIONS: &str = "HF's attention_mask (--attention-mask) uses 1 for real tokens, PyTorch's key_padding_mask (--padding-mask) uses True for padding";

/// Opens the one-file input `a` (dense or Longformer), checking its padding mask's
/// convention; a dense tensor that looks like Longformer's sliding window is warned about.
pub(crate) fn open_source(a: &InputOptions, progress: &dyn Progress) -> Result<Source> {
    if a.attn.len() > 1 && !a.generation_steps {
        return Err(Error::usage(
            "--attn: several files (a dataset) are taken by topk, received and headstats",
        ));
    }
    if a.attn.is_empty() {
        return Err(Error::usage("--attn: no attention input given"));
    }
    if a.vocab.is_some() && a.input_ids.is_none() {
        return Err(Error::usage("--vocab needs --input-ids (or --tokens-dir)"));
    }
    if a.input_ids.is_some() && a.vocab.is_none() && a.token_lists.is_none() && a.tokens.is_none() {
        return Err(Error::usage("--input-ids needs --vocab"));
    }
    let opts = source_options(a);
    let source = if let Some(reduced) = &a.reduced {
        Source::Reduced(ReducedLayer::open(&opts, reduced)?)
    } else if a.generation_steps {
        Source::Steps(open_steps(a, &opts)?)
    } else if a.longformer() {
        Source::Longformer(SlidingWindowAttention::open(
            &opts,
            a.global_attn.as_ref(),
            a.global_mask.as_ref(),
        )?)
    } else {
        let src = AttentionSource::open(&opts)?;
        if let Some(hint) = src.sliding_window_hint() {
            progress.warn(&hint);
        }
        Source::Dense(src)
    };
    let mask = opts.attention_mask.as_ref().or(opts.padding_mask.as_ref());
    // A reduced layer has no rows to check the mask against; its device used the mask.
    let has_rows = !matches!(source, Source::Reduced(_));
    if let Some(mask) = mask.filter(|_| has_rows) {
        if let Some(problem) = ingest::mask_problem(&source)? {
            let reason = format!("{problem}; {MASK_CONVENTIONS}");
            return Err(ingest::IngestError::invalid(mask.name(), reason).into());
        }
    }
    Ok(source)
}

/// The generation steps of `a`: the files given, one step each, or the steps in the one file.
pub(crate) fn open_steps(a: &InputOptions, opts: &SourceOptions) -> Result<GenerationSteps> {
    if a.longformer() || a.attn_array.is_some() {
        return Err(Error::usage(
            "--generation-steps: the steps are files (a Longformer pair or an array is not)",
        ));
    }
    if !a.attn_steps.is_empty() {
        let tensors = a
            .attn_steps
            .iter()
            .map(ingest::TensorFile::from_shared)
            .collect::<ingest::Result<_>>()?;
        return Ok(GenerationSteps::open(tensors, opts)?);
    }
    let key = a.attn_key.as_deref();
    let tensors = match crate::dataset::expand_globs(&a.attn, true)?.as_slice() {
        [one] => ingest::TensorFile::open_steps(one, key)?,
        several => several
            .iter()
            .map(|p| ingest::TensorFile::open(p, key))
            .collect::<ingest::Result<_>>()?,
    };
    Ok(GenerationSteps::open(tensors, opts)?)
}

/// Words only mean something to the analyses that rank or measure positions.
pub(crate) fn no_words(a: &InputOptions, command: &str) -> Result<()> {
    if a.words.is_some() {
        return Err(Error::usage(format!(
            "--words is not supported by {command} (topk, received, similarity, headstats and rollout take it)"
        )));
    }
    Ok(())
}

/// The name a figure or page gives the input: its file name.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
