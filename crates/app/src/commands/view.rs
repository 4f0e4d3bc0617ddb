//! `view`: one self-contained HTML page to explore attention. The numbers come from the
//! analyses (topk-frames' top-k and received sums, headstats); `explorer` pools the heatmap
//! tiles and renders the page.

use explorer::{BatchRow, HeadData, Page, StatColumn, TileOptions};
use headstats::{head_stats, stats_frame, TokenClasses};
use ingest::{RowSource, SlabId};
use polars::prelude::*;
use rayon::prelude::*;
use serde_json::Value;
use topk_frames::{received_frame, ReceivedOptions, TopkFrames, TopkOptions};

use crate::error::{Error, Result};
use crate::input::{file_name, no_words, open_source, Source};
use crate::options::{InputOptions, ViewOptions};

use crate::output::commit_bytes;
use crate::progress::Progress;

/// Writes one self-contained HTML page (no network) to explore `input`: a layer × head
/// overview of max-pooled thumbnails, one head with pan and zoom, the top-k keys of a query
/// on hover (`topk`'s rows), text coloured by received attention, and the `headstats` table.
///
/// # Errors
/// `Usage` for words or an output that is not `.html`; `BadInput`, `Io` as
/// [`topk`](crate::topk).
pub fn view(input: &InputOptions, a: &ViewOptions, progress: &dyn Progress) -> Result<()> {
    no_words(input, "view")?;
    for (name, value, lo, hi) in [
        ("-k", a.k, 1, 1000),
        ("--thumbnail", a.thumbnail, 8, 256),
        ("--max-detail", a.max_detail, 16, 4096),
        ("--detail-kib", a.detail_kib, 1, 65536),
    ] {
        if !(lo..=hi).contains(&value) {
            return Err(Error::usage(format!(
                "{name} {value} is not within {lo} and {hi}"
            )));
        }
    }
    let ext = a
        .output
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(ext.as_str(), "html" | "htm") || a.output == "-" {
        return Err(Error::usage(format!(
            "-o {}: view writes an .html file",
            a.output
        )));
    }
    let out = frame_sink::AtomicOutput::create(&a.output)?;
    let source = open_source(input, progress)?;
    let html = page(a, input, &source)?;
    commit_bytes(out, html.as_bytes())
}

fn explorer_error(e: explorer::ExplorerError) -> Error {
    match e {
        explorer::ExplorerError::Ingest(e) => Error::from(e),
        other => Error::from(other),
    }
}

fn page(a: &ViewOptions, input: &InputOptions, src: &Source) -> Result<String> {
    let slabs = src.slabs();
    let tiles = explorer::head_tiles(
        src,
        TileOptions {
            thumbnail: a.thumbnail as usize,
            finest: a.max_detail as usize,
            budget: a.detail_kib as usize * 1024,
        },
    )
    .map_err(explorer_error)?;
    let detail = explorer::choose_detail(&tiles, a.detail_kib as usize * 1024 * tiles.len());
    let topk = topk_rows(src, a.k as usize, &slabs)?;
    let received = received_sums(src, &slabs)?;
    let stats = stats_columns(src)?;

    let mut heads: Vec<HeadData> = tiles
        .into_iter()
        .zip(detail)
        .zip(topk)
        .zip(received)
        .map(|(((tiles, detail), topk), received)| HeadData {
            tiles,
            detail,
            topk,
            received,
        })
        .collect();
    let mut batches = Vec::new();
    let mut batch_ids: Vec<u32> = slabs.iter().map(|s| s.batch).collect();
    batch_ids.dedup();
    for b in batch_ids {
        let n = heads.iter().take_while(|h| h.tiles.id.batch == b).count();
        let rest = heads.split_off(n);
        let nk = src.valid_keys(b).len();
        batches.push(BatchRow {
            batch: b,
            queries: src.valid_queries(b).to_vec(),
            keys: src.valid_keys(b).to_vec(),
            tokens: src.tokens().map(|t| t.row(b as usize).to_vec()),
            per: (a.k as usize).min(nk),
            heads: std::mem::replace(&mut heads, rest),
        });
    }
    let colormap = a.colormap;
    let name = file_name(input.attn());
    let page = Page {
        title: a
            .title
            .clone()
            .unwrap_or_else(|| format!("attnframes view: {name}")),
        source: format!("{name} {}", src.shapes()),
        k: a.k as usize,
        colormap: (0..256).map(|i| colormap.rgb(i as f32 / 255.0)).collect(),
        batches,
        stats,
    };
    explorer::render(&page).map_err(explorer_error)
}

/// The top-k rows of every slab as `topk` computes them, encoded for the page.
fn topk_rows(src: &impl RowSource, k: usize, slabs: &[SlabId]) -> Result<Vec<Vec<u8>>> {
    let frames = TopkFrames::new(
        src,
        None,
        TopkOptions {
            k: Some(k),
            nonzero: false,
            chunk_rows: 1 << 22,
        },
    )?;
    let mut positions: Vec<u32> = Vec::new();
    let mut scores: Vec<f32> = Vec::new();
    for chunk in frames {
        let chunk = chunk?;
        positions.extend(chunk.column("position")?.u32()?.into_no_null_iter());
        scores.extend(chunk.column("score")?.f32()?.into_no_null_iter());
    }
    // Rows are in canonical order: slab by slab, per valid query `min(k, valid keys)` rows.
    let mut spans = Vec::with_capacity(slabs.len());
    let mut at = 0;
    for s in slabs {
        let per = k.min(src.valid_keys(s.batch).len());
        let n = src.valid_queries(s.batch).len() * per;
        spans.push((s.batch, per, at..at + n));
        at += n;
    }
    if at != positions.len() {
        return Err(Error::Internal(format!(
            "{} top-k rows where {at} were expected",
            positions.len()
        )));
    }
    spans
        .into_par_iter()
        .map(|(b, per, span)| {
            explorer::encode_topk(
                src.valid_queries(b),
                per,
                &positions[span.clone()],
                &scores[span],
            )
            .map_err(explorer_error)
        })
        .collect()
}

/// Attention received by each valid key of every slab, as `received` (and `plot --text`)
/// compute it.
fn received_sums(src: &impl RowSource, slabs: &[SlabId]) -> Result<Vec<Vec<f32>>> {
    let frame = received_frame(src, None, ReceivedOptions::default())?;
    let col = |name: &str| -> Result<Vec<u32>> {
        let c = frame.column(name)?.cast(&DataType::UInt32)?;
        Ok(c.u32()?.into_no_null_iter().collect())
    };
    let (batch, layer, head, position) =
        (col("batch")?, col("layer")?, col("head")?, col("position")?);
    let score: Vec<f32> = frame
        .column("score")?
        .f32()?
        .iter()
        .map(|v| v.unwrap_or(f32::NAN))
        .collect();
    let mut out: Vec<Vec<f32>> = slabs
        .iter()
        .map(|s| vec![f32::NAN; src.valid_keys(s.batch).len()])
        .collect();
    let mut slab = 0;
    for r in 0..batch.len() {
        let id = SlabId {
            batch: batch[r],
            layer: layer[r] as u16,
            head: head[r] as u16,
        };
        // Rows come group by group in slab order.
        while slabs[slab] != id {
            slab += 1;
        }
        let keys = src.valid_keys(id.batch);
        if let Ok(j) = keys.binary_search(&position[r]) {
            out[slab][j] = score[r];
        }
    }
    Ok(out)
}

/// The `headstats` frame, column by column, for the page's table.
fn stats_columns(src: &impl RowSource) -> Result<Vec<StatColumn>> {
    let frame = stats_frame(&head_stats(src, &TokenClasses::default(), 0.3)?)?;
    let mut out = Vec::new();
    for c in frame.columns() {
        let values: Vec<Value> = if c.dtype() == &DataType::Boolean {
            c.bool()?
                .iter()
                .map(|v| v.map_or(Value::Null, Value::Bool))
                .collect()
        } else {
            c.cast(&DataType::Float64)?
                .f64()?
                .iter()
                .map(|v| v.map_or(Value::Null, |x| serde_json::json!(x)))
                .collect()
        };
        out.push(StatColumn {
            name: c.name().to_string(),
            values,
        });
    }
    Ok(out)
}
