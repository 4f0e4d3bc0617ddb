//! Compact binary arrays for the page: byte-plane shuffling, deflate (zlib format, which the
//! browser's `DecompressionStream('deflate')` reads), base64.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;

use crate::Result;

/// zlib-wrapped deflate of `bytes`.
pub fn deflate(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut z = ZlibEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::new(6),
    );
    z.write_all(bytes)?;
    Ok(z.finish()?)
}

/// Splits `bytes`, an array of `width`-byte little-endian values, into byte planes (every
/// value's first byte, then every second byte, …): high bytes of similar numbers repeat, and
/// deflate finds them.
pub fn shuffle(bytes: &[u8], width: usize) -> Vec<u8> {
    let n = bytes.len() / width;
    let mut out = vec![0u8; n * width];
    for (i, v) in bytes.chunks_exact(width).enumerate() {
        for (b, &x) in v.iter().enumerate() {
            out[b * n + i] = x;
        }
    }
    out
}

/// The top-k rows of one head for the page: `per` entries per valid query (in query order,
/// best first), deflated as `[mode][4 planes of n position words][2 planes of n score words]`.
/// Positions are stored as they are (mode 0) or, when that is smaller, as the zigzag-coded
/// difference `position − query` (mode 1: a sliding window gives small numbers). Scores are
/// f16, each query's later scores as the (wrapping) difference of their bits from the score
/// before (scores fall with the rank, so these are small). Planes: every value's first byte,
/// then every second byte, …
pub fn encode_topk(
    queries: &[u32],
    per: usize,
    positions: &[u32],
    scores: &[f32],
) -> Result<Vec<u8>> {
    let n = positions.len();
    let mut raw = Vec::with_capacity(n * 4);
    let mut deltas = Vec::with_capacity(n * 4);
    let mut words = Vec::with_capacity(n * 2);
    for (i, &q) in queries.iter().enumerate() {
        let span = (i * per).min(n)..((i + 1) * per).min(n);
        let mut prev = 0u16;
        for (j, (&p, &s)) in positions[span.clone()]
            .iter()
            .zip(&scores[span])
            .enumerate()
        {
            raw.extend_from_slice(&p.to_le_bytes());
            let d = p.wrapping_sub(q) as i32;
            deltas.extend_from_slice(&(((d << 1) ^ (d >> 31)) as u32).to_le_bytes());
            let bits = half::f16::from_f32(s).to_bits();
            let word = if j == 0 {
                bits
            } else {
                prev.wrapping_sub(bits)
            };
            words.extend_from_slice(&word.to_le_bytes());
            prev = bits;
        }
    }
    // The mode that compresses a sample of the positions better.
    let sample = SAMPLE.min(n) * 4;
    let differences = deflate(&shuffle(&deltas[..sample], 4))?.len()
        < deflate(&shuffle(&raw[..sample], 4))?.len();
    let (mode, pos) = if differences { (1, deltas) } else { (0, raw) };
    let mut all = Vec::with_capacity(1 + n * 6);
    all.push(mode);
    all.extend_from_slice(&shuffle(&pos, 4));
    all.extend_from_slice(&shuffle(&words, 2));
    deflate(&all)
}

/// Positions compressed both ways to choose the mode.
const SAMPLE: usize = 1 << 14;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(ALPHABET[(n >> 18) as usize & 63]);
        out.push(ALPHABET[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            ALPHABET[n as usize & 63]
        } else {
            b'='
        });
    }
    String::from_utf8(out).expect("base64 is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn shuffle_splits_planes() {
        assert_eq!(shuffle(&[1, 2, 3, 4, 5, 6], 2), vec![1, 3, 5, 2, 4, 6]);
    }

    #[test]
    fn a_sliding_window_is_stored_as_differences() {
        let queries: Vec<u32> = (0..500).collect();
        let positions: Vec<u32> = queries.iter().map(|&q| q.saturating_sub(1)).collect();
        let z = encode_topk(&queries, 1, &positions, &vec![0.5; 500]).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&z[..]), &mut raw).unwrap();
        assert_eq!(raw[0], 1);
    }

    #[test]
    fn topk_round_trips_through_its_description() {
        let queries = [3u32, 7];
        let positions = [3u32, 0, 9, 2];
        let scores = [0.5f32, 0.25, 0.75, -0.125];
        let z = encode_topk(&queries, 2, &positions, &scores).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&z[..]), &mut raw).unwrap();
        let n = 4;
        let (d, w) = raw[1..].split_at(n * 4);
        for i in 0..n {
            let word = u32::from_le_bytes([d[i], d[n + i], d[2 * n + i], d[3 * n + i]]);
            let p = match raw[0] {
                0 => word,
                _ => {
                    queries[i / 2].wrapping_add(((word >> 1) as i32 ^ -((word & 1) as i32)) as u32)
                }
            };
            assert_eq!(p, positions[i]);
        }
        let word = |i: usize| u16::from_le_bytes([w[i], w[n + i]]);
        for q in 0..2 {
            let first = word(2 * q);
            let second = first.wrapping_sub(word(2 * q + 1));
            assert_eq!(half::f16::from_bits(first).to_f32(), scores[2 * q]);
            assert_eq!(half::f16::from_bits(second).to_f32(), scores[2 * q + 1]);
        }
    }
}
