//! The page: plain vectors in, one HTML string out.

use serde_json::{json, Value};

use crate::encode::{base64, deflate, shuffle};
use crate::tiles::{HeadTiles, CODE_MAX};
use crate::{ExplorerError, Result};

const TEMPLATE: &str = include_str!("../assets/view.html");
const CSS: &str = include_str!("../assets/view.css");
const JS: &str = include_str!("../assets/view.js");

/// One column of the headstats table (one value per head, in the page's head order across
/// batch rows): numbers, booleans or nulls.
#[derive(Debug, Clone)]
pub struct StatColumn {
    pub name: String,
    pub values: Vec<Value>,
}

/// One head of one batch row.
#[derive(Debug, Clone)]
pub struct HeadData {
    pub tiles: HeadTiles,
    /// Which of `tiles.levels` the page embeds as the head's heatmap.
    pub detail: usize,
    /// [`encode_topk`](crate::encode_topk) of the head's top-k rows.
    pub topk: Vec<u8>,
    /// Attention received by each valid key (sum over the valid queries).
    pub received: Vec<f32>,
}

/// One batch row: its valid positions, tokens and heads (canonical layer, head order).
#[derive(Debug, Clone)]
pub struct BatchRow {
    pub batch: u32,
    pub queries: Vec<u32>,
    pub keys: Vec<u32>,
    /// Tokens of every position of the row, when given.
    pub tokens: Option<Vec<String>>,
    /// Top-k entries per valid query.
    pub per: usize,
    pub heads: Vec<HeadData>,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct Page {
    pub title: String,
    /// A line describing the input (file names, shapes).
    pub source: String,
    pub k: usize,
    /// 256 colours of the heatmap colour map, dark to bright.
    pub colormap: Vec<[u8; 3]>,
    pub batches: Vec<BatchRow>,
    pub stats: Vec<StatColumn>,
}

/// Collects the page's binary arrays as `<script>` elements of base64 text.
struct Blobs {
    html: String,
    n: usize,
}

impl Blobs {
    fn add(&mut self, deflated: &[u8]) -> usize {
        let id = self.n;
        self.n += 1;
        self.html.push_str(&format!(
            "<script type=\"application/octet-stream\" id=\"b{id}\">{}</script>\n",
            base64(deflated)
        ));
        id
    }
}

/// The words of a token row (ingest's `--words` rule), each as its pieces `[position, text]`
/// with WordPiece `##` and SentencePiece/BPE markers dropped from the shown text.
fn words(tokens: &[String], keys: &[u32]) -> Value {
    let marked = |t: &str| t.starts_with('▁') || t.starts_with('Ġ');
    let sentencepiece = keys.iter().any(|&p| marked(&tokens[p as usize]));
    let words: Vec<Value> = ingest::group_words(tokens, keys)
        .iter()
        .map(|w| {
            let pieces: Vec<Value> = w
                .pieces
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    let t = tokens[p as usize].as_str();
                    let shown = if sentencepiece {
                        t.trim_start_matches(['▁', 'Ġ'])
                    } else if i > 0 {
                        &t[2..]
                    } else {
                        t
                    };
                    json!([p, shown])
                })
                .collect();
            Value::Array(pieces)
        })
        .collect();
    Value::Array(words)
}

fn f32_blob(values: impl Iterator<Item = f32>) -> Result<Vec<u8>> {
    let bytes: Vec<u8> = values.flat_map(f32::to_le_bytes).collect();
    deflate(&shuffle(&bytes, 4))
}

/// The page as one HTML document.
pub fn render(page: &Page) -> Result<String> {
    if page.colormap.len() != 256 {
        return Err(ExplorerError::Invalid(
            "the colour map needs 256 colours".into(),
        ));
    }
    let mut blobs = Blobs {
        html: String::new(),
        n: 0,
    };
    let mut batches = Vec::new();
    for row in &page.batches {
        let Some(first) = row.heads.first() else {
            continue;
        };
        let (tr, tc) = (first.tiles.thumb_rows, first.tiles.thumb_cols);
        let thumbs: Vec<u8> = row
            .heads
            .iter()
            .flat_map(|h| h.tiles.thumb.iter().copied())
            .collect();
        let thumb_blob = blobs.add(&deflate(&thumbs)?);
        let received_blob = blobs.add(&f32_blob(
            row.heads.iter().flat_map(|h| h.received.iter().copied()),
        )?);
        let mut heads = Vec::new();
        for h in &row.heads {
            let level = &h.tiles.levels[h.detail];
            let detail = blobs.add(&level.deflated);
            let topk = blobs.add(&h.topk);
            heads.push(json!({
                "layer": h.tiles.id.layer,
                "head": h.tiles.id.head,
                "scale": h.tiles.scale,
                "detail": {"rows": level.rows, "cols": level.cols, "blob": detail},
                "topk": topk,
            }));
        }
        batches.push(json!({
            "batch": row.batch,
            "queries": row.queries,
            "keys": row.keys,
            "tokens": row.tokens,
            "words": row.tokens.as_ref().map(|t| words(t, &row.keys)),
            "per": row.per,
            "thumb": {"rows": tr, "cols": tc, "blob": thumb_blob},
            "received": received_blob,
            "heads": heads,
        }));
    }
    let colormap: Vec<u8> = page.colormap.iter().flatten().copied().collect();
    let meta = json!({
        "title": page.title,
        "source": page.source,
        "k": page.k,
        "codeMax": CODE_MAX,
        "colormap": base64(&colormap),
        "batches": batches,
        "stats": {
            "columns": page.stats.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
            "values": page.stats.iter().map(|c| c.values.clone()).collect::<Vec<_>>(),
        },
    });
    // `</` may not appear inside a script element; `<\/` is the same JSON string.
    let meta = meta.to_string().replace("</", "<\\/");
    let title = html_escape(&page.title);
    fill(
        TEMPLATE,
        &[
            ("TITLE", &title),
            ("CSS", CSS),
            ("META", &meta),
            ("BLOBS", &blobs.html),
            ("JS", JS),
        ],
    )
}

/// The template with each `{{NAME}}` replaced, in one pass (a value is never scanned again).
fn fill(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let end = rest[at..]
            .find("}}")
            .ok_or_else(|| ExplorerError::Invalid("unclosed placeholder in the template".into()))?;
        let name = &rest[at + 2..at + end];
        let value = values
            .iter()
            .find(|v| v.0 == name)
            .ok_or_else(|| ExplorerError::Invalid(format!("unknown placeholder {name}")))?;
        out.push_str(value.1);
        rest = &rest[at + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_follow_the_word_rule() {
        let t = toks(&["[CLS]", "play", "##ing", "now", "[SEP]"]);
        let w = words(&t, &[0, 1, 2, 3, 4]);
        assert_eq!(
            w,
            json!([
                [[0, "[CLS]"]],
                [[1, "play"], [2, "ing"]],
                [[3, "now"]],
                [[4, "[SEP]"]]
            ])
        );
        let t = toks(&["<s>", "▁play", "ing", "▁now", "</s>"]);
        let w = words(&t, &[0, 1, 2, 3, 4]);
        assert_eq!(
            w,
            json!([
                [[0, "<s>"]],
                [[1, "play"], [2, "ing"]],
                [[3, "now"]],
                [[4, "</s>"]]
            ])
        );
    }

    #[test]
    fn a_page_closes_its_script_elements() {
        let page = Page {
            title: "a </script> title".into(),
            source: "x".into(),
            k: 3,
            colormap: vec![[0, 0, 0]; 256],
            batches: vec![],
            stats: vec![StatColumn {
                name: "</script>".into(),
                values: vec![],
            }],
        };
        let html = render(&page).unwrap();
        assert_eq!(
            html.matches("</script>").count(),
            html.matches("<script").count()
        );
        assert!(html.contains("a &lt;/script&gt; title"));
    }
}
