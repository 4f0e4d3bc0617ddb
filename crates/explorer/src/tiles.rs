//! Max-pooled, quantised heatmap tiles of every head: a thumbnail and a pyramid of levels.

use ingest::{RowSource, SlabBuffer, SlabId};
use rayon::prelude::*;

use crate::encode::deflate;
use crate::Result;

/// The largest code: values are quantised to `0..=CODE_MAX` on a square-root scale.
pub const CODE_MAX: u8 = 23;

/// Sizes of the tiles.
#[derive(Debug, Clone, Copy)]
pub struct TileOptions {
    /// Thumbnail side in cells at most (the overview grid).
    pub thumbnail: usize,
    /// Side of the finest detail level at most (full resolution below it).
    pub finest: usize,
    /// Deflated bytes a head's level may take on average in [`choose_detail`] (0: no limit).
    /// A level has four times the cells of the next coarser one, and is only compressed
    /// when four times that level's bytes stay within this (deflating a level that will not
    /// be embedded is most of the time of a 4,096-token head).
    pub budget: usize,
}

impl Default for TileOptions {
    fn default() -> Self {
        TileOptions {
            thumbnail: 64,
            finest: 1024,
            budget: 0,
        }
    }
}

/// One pooled level of a head: `rows × cols` codes, row-major, deflated.
#[derive(Debug, Clone)]
pub struct Level {
    pub rows: usize,
    pub cols: usize,
    pub deflated: Vec<u8>,
}

/// The tiles of one head, over its valid queries (rows) and valid keys (columns).
#[derive(Debug, Clone)]
pub struct HeadTiles {
    pub id: SlabId,
    /// The largest value of the head: code `c` stands for `(c / CODE_MAX)² · scale`.
    pub scale: f32,
    /// The thumbnail: `thumb_rows × thumb_cols` codes (not compressed: the page deflates all
    /// thumbnails of a batch row together).
    pub thumb_rows: usize,
    pub thumb_cols: usize,
    pub thumb: Vec<u8>,
    /// Detail levels, finest first; each halves the one before, down to twice the
    /// thumbnail's size (levels too large for [`TileOptions::budget`] are left out).
    pub levels: Vec<Level>,
}

/// Max-pools every selected head of `src` (in parallel over heads when the source is
/// seekable; one head's rows in memory per thread).
pub fn head_tiles(src: &impl RowSource, opts: TileOptions) -> Result<Vec<HeadTiles>> {
    let slabs = src.slabs();
    let one = |buf: &mut SlabBuffer, id: &SlabId| one_head(src, *id, buf, opts);
    if src.is_seekable() {
        slabs
            .par_iter()
            .map_init(SlabBuffer::default, one)
            .collect()
    } else {
        let mut buf = SlabBuffer::default();
        slabs.iter().map(|id| one(&mut buf, id)).collect()
    }
}

/// Bins of `n` positions into `m` cells: position `i` goes to `i · m / n`.
fn bins(n: usize, m: usize) -> Vec<u32> {
    (0..n).map(|i| (i * m / n.max(1)) as u32).collect()
}

fn one_head(
    src: &impl RowSource,
    id: SlabId,
    buf: &mut SlabBuffer,
    opts: TileOptions,
) -> Result<HeadTiles> {
    let keys = src.valid_keys(id.batch);
    let (nq, nk) = (src.valid_queries(id.batch).len(), keys.len());
    let (rows, cols) = (nq.min(opts.finest.max(1)), nk.min(opts.finest.max(1)));
    let col_bin = bins(nk, cols);
    let mut fine = vec![0f32; rows * cols];
    let contiguous = keys.first() == Some(&0) && keys.last().map(|&k| k as usize + 1) == Some(nk);
    src.for_each_query_row(id, buf, |i, _q, row| {
        let r = i * rows / nq;
        let acc = &mut fine[r * cols..(r + 1) * cols];
        if contiguous && cols == nk {
            for (a, &v) in acc.iter_mut().zip(&row[..nk]) {
                if v > *a {
                    *a = v;
                }
            }
        } else if contiguous && nk % cols == 0 {
            // Whole blocks of keys per cell: a plain maximum per block (vectorises).
            let f = nk / cols;
            for (a, block) in acc.iter_mut().zip(row[..nk].chunks_exact(f)) {
                let m = block
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
                if m > *a {
                    *a = m;
                }
            }
        } else if contiguous {
            for (&v, &c) in row[..nk].iter().zip(&col_bin) {
                let a = &mut acc[c as usize];
                if v > *a {
                    *a = v;
                }
            }
        } else {
            for (&k, &c) in keys.iter().zip(&col_bin) {
                let v = row[k as usize];
                let a = &mut acc[c as usize];
                if v > *a {
                    *a = v;
                }
            }
        }
    })?;
    let scale = fine.iter().fold(0f32, |m, &v| if v > m { v } else { m });
    let codes: Vec<u8> = fine.iter().map(|&v| quantise(v, scale)).collect();
    drop(fine);
    let (tr, tc) = (rows.min(opts.thumbnail), cols.min(opts.thumbnail));
    let thumb = pool_to(&codes, rows, cols, tr, tc);
    // The pyramid, finest first, then deflated from the coarsest up.
    let mut pyramid = vec![(rows, cols, codes)];
    loop {
        let (r, c, cur) = pyramid.last().expect("the finest level");
        if (*r).max(*c) <= opts.thumbnail.max(1) * 2 {
            break;
        }
        let (nr, nc) = (r.div_ceil(2), c.div_ceil(2));
        let next = pool_to(cur, *r, *c, nr, nc);
        pyramid.push((nr, nc, next));
    }
    let mut levels: Vec<Level> = Vec::with_capacity(pyramid.len());
    for (rows, cols, codes) in pyramid.into_iter().rev() {
        if let Some(coarser) = levels.last() {
            if opts.budget > 0 && coarser.deflated.len() * 4 > opts.budget {
                break;
            }
        }
        levels.push(Level {
            rows,
            cols,
            deflated: deflate(&codes)?,
        });
    }
    levels.reverse();
    Ok(HeadTiles {
        id,
        scale,
        thumb_rows: tr,
        thumb_cols: tc,
        thumb,
        levels,
    })
}

/// `round(CODE_MAX · sqrt(v / scale))`; 0 for anything not above 0 (NaN included).
fn quantise(v: f32, scale: f32) -> u8 {
    if v > 0.0 && scale > 0.0 {
        let c = (CODE_MAX as f32 * (v / scale).min(1.0).sqrt()).round();
        c as u8
    } else {
        0
    }
}

/// Max-pools a `rows × cols` code grid into `nr × nc` (cell `i` goes to `i · nr / rows`).
/// Codes are monotone in the value, so pooling codes equals quantising pooled values.
fn pool_to(codes: &[u8], rows: usize, cols: usize, nr: usize, nc: usize) -> Vec<u8> {
    if (nr, nc) == (rows, cols) {
        return codes.to_vec();
    }
    let col_bin = bins(cols, nc);
    let mut out = vec![0u8; nr * nc];
    for (i, row) in codes.chunks_exact(cols.max(1)).enumerate() {
        let r = i * nr / rows;
        let acc = &mut out[r * nc..(r + 1) * nc];
        for (&v, &c) in row.iter().zip(&col_bin) {
            let a = &mut acc[c as usize];
            *a = (*a).max(v);
        }
    }
    out
}

/// The detail level of every head: the finest pyramid level whose side is at most a common
/// cap, the cap chosen as large as possible with the deflated levels of all heads together
/// within `budget` bytes (the coarsest levels when none fits).
pub fn choose_detail(tiles: &[HeadTiles], budget: usize) -> Vec<usize> {
    let finest = tiles
        .iter()
        .map(|t| t.levels[0].rows.max(t.levels[0].cols))
        .max()
        .unwrap_or(1);
    let pick = |t: &HeadTiles, cap: usize| {
        t.levels
            .iter()
            .position(|l| l.rows.max(l.cols) <= cap)
            .unwrap_or(t.levels.len() - 1)
    };
    let mut cap = finest;
    loop {
        let total: usize = tiles
            .iter()
            .map(|t| t.levels[pick(t, cap)].deflated.len())
            .sum();
        if total <= budget || cap <= 1 || tiles.iter().all(|t| pick(t, cap) + 1 == t.levels.len()) {
            return tiles.iter().map(|t| pick(t, cap)).collect();
        }
        cap = cap.div_ceil(2).min(cap - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantise_is_monotone_and_bounded() {
        let mut last = 0;
        for i in 0..=1000 {
            let c = quantise(i as f32 / 1000.0, 1.0);
            assert!(c >= last && c <= CODE_MAX);
            last = c;
        }
        assert_eq!(quantise(1.0, 1.0), CODE_MAX);
        assert_eq!(quantise(f32::NAN, 1.0), 0);
        assert_eq!(quantise(-1.0, 1.0), 0);
        assert_eq!(quantise(0.5, 0.0), 0);
    }

    #[test]
    fn pooling_keeps_a_single_hot_cell() {
        let mut codes = vec![0u8; 100 * 100];
        codes[57 * 100 + 93] = CODE_MAX;
        let p = pool_to(&codes, 100, 100, 7, 7);
        assert_eq!(p.iter().filter(|&&c| c == CODE_MAX).count(), 1);
        assert_eq!(p[(57 * 7 / 100) * 7 + 93 * 7 / 100], CODE_MAX);
    }
}
