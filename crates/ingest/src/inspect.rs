//! What `inspect` reports about a tensor file: header facts plus one streamed pass of statistics.

use std::path::Path;

use crate::error::Result;
use crate::row_source::RowSource;
use crate::source::{AttentionSource, SlabBuffer, SourceOptions};
use crate::tensor::TensorFile;

/// Row-sum range of one (layer, head) over every batch row and query.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HeadRowSums {
    pub layer: u16,
    pub head: u16,
    pub min: f64,
    pub max: f64,
}

/// Facts about one tensor file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorSummary {
    pub path: String,
    pub format: String,
    pub key: Option<String>,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    /// How many arrays were stacked as the first (layer) axis, when they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacked: Option<usize>,
    pub bytes_on_disk: Option<u64>,
    /// Axis letters used, or None when the rank has no default and none was given.
    pub layout: Option<String>,
    pub layout_note: Option<String>,
    pub nan: Option<u64>,
    pub inf: Option<u64>,
    pub row_sums: Vec<HeadRowSums>,
}

/// Reads `path` once, slab by slab.
pub fn summarize(path: &Path, key: Option<&str>, layout: Option<&str>) -> Result<TensorSummary> {
    let t = TensorFile::open(path, key)?;
    let mut s = TensorSummary {
        path: path.display().to_string(),
        format: t.container.name().to_string(),
        key: t.key.clone(),
        dtype: t.element.name(),
        shape: t.shape.clone(),
        fortran_order: t.fortran_order,
        stacked: t.stacked,
        bytes_on_disk: t.file_bytes,
        layout: None,
        layout_note: None,
        nan: None,
        inf: None,
        row_sums: Vec::new(),
    };
    if !t.element.is_float() {
        s.layout_note = Some("not a float tensor: no attention statistics".into());
        return Ok(s);
    }
    if let Err(e) = crate::layout::Layout::resolve(layout, &t.shape, path) {
        s.layout_note = Some(match e {
            crate::IngestError::Invalid { reason, .. } => reason,
            other => other.to_string(),
        });
        return Ok(s);
    }
    drop(t);
    let src = AttentionSource::open(&SourceOptions {
        attn: path.to_path_buf(),
        attn_key: key.map(str::to_string),
        layout: layout.map(str::to_string),
        allow_nan: true,
        ..Default::default()
    })?;
    s.layout = Some(src.layout.letters());
    let (mut nan, mut inf) = (0u64, 0u64);
    let nk = src.dims.keys;
    let mut buf = SlabBuffer::default();
    let mut sums: Vec<HeadRowSums> = Vec::new();
    for id in src.slabs() {
        src.read_slab(id, &mut buf)?;
        nan += buf.values.iter().filter(|v| v.is_nan()).count() as u64;
        inf += buf.values.iter().filter(|v| v.is_infinite()).count() as u64;
        let (lo, hi) = buf.values.chunks_exact(nk).fold(
            (f64::INFINITY, f64::NEG_INFINITY),
            |(lo, hi), row| {
                let r: f64 = row.iter().map(|&v| v as f64).sum();
                if r.is_nan() {
                    (lo, hi)
                } else {
                    (lo.min(r), hi.max(r))
                }
            },
        );
        match sums
            .iter_mut()
            .find(|h| h.layer == id.layer && h.head == id.head)
        {
            Some(h) => {
                h.min = h.min.min(lo);
                h.max = h.max.max(hi);
            }
            None => sums.push(HeadRowSums {
                layer: id.layer,
                head: id.head,
                min: lo,
                max: hi,
            }),
        }
    }
    sums.sort_by_key(|h| (h.layer, h.head));
    s.nan = Some(nan);
    s.inf = Some(inf);
    s.row_sums = sums;
    Ok(s)
}
