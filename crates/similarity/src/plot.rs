//! The picture of one compared head: A, B in A's channel order, and A − B side by side, with
//! lines between the channel blocks. Pixels are drawn here; the `png` crate encodes them.

use ingest::{RowSource, SlabId};

use crate::runs::{read_matrix, ChannelBlocks};
use crate::Result;

/// A's and B-reordered's matrices of one (batch, layer, head), row-major n × n.
pub fn head_matrices(
    a: &impl RowSource,
    b: &impl RowSource,
    id: SlabId,
    blocks: &ChannelBlocks,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut buf = ingest::SlabBuffer::default();
    let (mut ma, mut raw_b) = (Vec::new(), Vec::new());
    read_matrix(a, id, &mut buf, &mut ma)?;
    read_matrix(b, id, &mut buf, &mut raw_b)?;
    let n = blocks.b_position.len();
    let p = &blocks.b_position;
    let mb = (0..n * n).map(|i| raw_b[p[i / n] * n + p[i % n]]).collect();
    Ok((ma, mb))
}

const WHITE: [u8; 3] = [255, 255, 255];
const PURPLE: [u8; 3] = [63, 0, 125];
const BLUE: [u8; 3] = [33, 102, 172];
const RED: [u8; 3] = [178, 24, 43];
const DIVIDER: [u8; 3] = [150, 150, 150];

fn mix(from: [u8; 3], to: [u8; 3], t: f32) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    [0, 1, 2].map(|i| (from[i] as f32 + (to[i] as f32 - from[i] as f32) * t).round() as u8)
}

/// RGB PNG bytes: A and B on one white→purple scale (0 to `vmax`, default the larger
/// maximum), A − B on blue←white→red (± its largest magnitude).
pub fn comparison_png(
    a: &[f32],
    b: &[f32],
    n: usize,
    block: usize,
    vmax: Option<f32>,
) -> Result<Vec<u8>, png::EncodingError> {
    let cell = (240 / n).max(1);
    let (panel, gap) = (n * cell, 8);
    let (width, height) = (3 * panel + 4 * gap, panel + 2 * gap);
    let mut px = vec![255u8; width * height * 3];
    let top = vmax.unwrap_or_else(|| a.iter().chain(b).copied().fold(0.0, f32::max));
    let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let span = diff.iter().fold(0f32, |m, d| m.max(d.abs()));
    let colour = |panel_index: usize, v: f32| match panel_index {
        2 if v < 0.0 => mix(WHITE, BLUE, -v / span),
        2 => mix(WHITE, RED, v / span),
        _ => mix(WHITE, PURPLE, v / top),
    };
    for (i, m) in [a, b, &diff[..]].into_iter().enumerate() {
        let x0 = gap + i * (panel + gap);
        for q in 0..n {
            for k in 0..n {
                let rgb = colour(i, m[q * n + k]);
                for dy in 0..cell {
                    let row = (gap + q * cell + dy) * width;
                    for dx in 0..cell {
                        let at = (row + x0 + k * cell + dx) * 3;
                        px[at..at + 3].copy_from_slice(&rgb);
                    }
                }
            }
        }
        for line in (block..n).step_by(block.max(1)) {
            let off = line * cell;
            for t in 0..panel {
                for (x, y) in [(x0 + off, gap + t), (x0 + t, gap + off)] {
                    let at = (y * width + x) * 3;
                    px[at..at + 3].copy_from_slice(&DIVIDER);
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(&px)?;
    w.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_of_three_panels() {
        let a = vec![0.25f32; 16];
        let b: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
        let bytes = comparison_png(&a, &b, 4, 2, None).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), (3 * 240 + 32, 240 + 16));
    }
}
