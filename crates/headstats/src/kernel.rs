//! The per-row pass of `headstats`, written so the compiler vectorises it: eight lanes, a
//! branch-free natural logarithm ([`ingest::ln_f32_by`]), f32 lanes within blocks, f64 across
//! blocks. Copies for AVX-512 and for AVX2, both with fused multiply-adds (the same sums to
//! the bit as each other; without FMA the last bits may differ), are chosen at run time.

use ingest::{ln_f32_by, mul_add};

/// Sums of one row over a run of keys.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RowSums {
    /// −Σ a'·ln a' with a' = scale·a + floor.
    pub entropy: f64,
    /// Σ a.
    pub total: f64,
    /// Σ a·|q − k| (only when key positions were given).
    pub distance: f64,
    /// The largest value, NaN skipped (NaN when every value is NaN).
    pub max: f32,
}

const LANES: usize = 8;

/// The sums of `values` (the row's scores at consecutive keys `first_key, first_key + 1, …`
/// when `first_key` is given) for the query at position `q`.
pub fn row_sums(values: &[f32], first_key: Option<u32>, q: u32, scale: f32, floor: f32) -> RowSums {
    let spec = RowSpec {
        first_key,
        q,
        scale,
        floor,
    };
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vl") && std::arch::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has AVX-512VL and FMA, checked just above.
        return unsafe { row_sums_avx512(values, spec) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { row_sums_avx2(values, spec) };
    }
    row_sums_lanes::<false>(values, spec)
}

/// [`row_sums`]' arguments besides the values.
#[derive(Debug, Clone, Copy)]
struct RowSpec {
    first_key: Option<u32>,
    q: u32,
    scale: f32,
    floor: f32,
}

/// [`row_sums_lanes`] with AVX-512's 32 vector registers, where the logarithm's constants and
/// the lanes' sums all stay: the same eight lanes and operations as the AVX2 copy.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,fma")]
unsafe fn row_sums_avx512(values: &[f32], spec: RowSpec) -> RowSums {
    row_sums_lanes::<true>(values, spec)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_sums_avx2(values: &[f32], spec: RowSpec) -> RowSums {
    row_sums_lanes::<true>(values, spec)
}

/// Values per block: within a block the lanes add in f32 (a block's partial sums are small),
/// blocks add in f64.
const BLOCK: usize = 128;

#[inline(always)]
fn row_sums_lanes<const FUSED: bool>(values: &[f32], spec: RowSpec) -> RowSums {
    let RowSpec {
        first_key,
        q,
        scale,
        floor,
    } = spec;
    let base = first_key.map_or(0.0, |k| k as f32) - q as f32;
    // `f32::max` skips NaN, so a NaN start stays only where every value is NaN.
    let mut out = RowSums {
        max: f32::NAN,
        ..RowSums::default()
    };
    let mut max = [f32::NAN; LANES];
    for (b, block) in values.chunks(BLOCK).enumerate() {
        let mut entropy = [0f32; LANES];
        let mut total = [0f32; LANES];
        let mut distance = [0f32; LANES];
        let chunks = block.chunks_exact(LANES);
        let tail = chunks.remainder();
        let offset = (b * BLOCK) as f32 + base;
        for (c, chunk) in chunks.enumerate() {
            let from_q = (c * LANES) as f32 + offset;
            for l in 0..LANES {
                let a = chunk[l];
                let s = mul_add::<FUSED>(scale, a, floor);
                entropy[l] = mul_add::<FUSED>(-s, ln_f32_by::<FUSED>(s), entropy[l]);
                total[l] += a;
                distance[l] = mul_add::<FUSED>(a, (from_q + l as f32).abs(), distance[l]);
                max[l] = max[l].max(a);
            }
        }
        let start = block.len() - tail.len();
        for (i, &a) in tail.iter().enumerate() {
            let s = mul_add::<FUSED>(scale, a, floor);
            out.entropy -= (s * ln_f32_by::<FUSED>(s)) as f64;
            out.total += a as f64;
            out.distance += (a * ((start + i) as f32 + offset).abs()) as f64;
            out.max = out.max.max(a);
        }
        out.entropy += entropy.iter().map(|&v| v as f64).sum::<f64>();
        out.total += total.iter().map(|&v| v as f64).sum::<f64>();
        out.distance += distance.iter().map(|&v| v as f64).sum::<f64>();
    }
    out.max = max.iter().copied().fold(out.max, f32::max);
    if first_key.is_none() {
        out.distance = 0.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_and_avx512_copies_agree_to_the_bit() {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx512vl") && has!("fma")) {
            return;
        }
        let values: Vec<f32> = (0..1025)
            .map(|i| ((i * 7919) % 1009) as f32 / 4e5)
            .collect();
        for n in [7, 128, 1025] {
            let spec = RowSpec {
                first_key: Some(3),
                q: 500,
                scale: 0.9999,
                floor: 1e-4 / n as f32,
            };
            // SAFETY: the CPU has AVX-512VL and FMA (so AVX2), checked above.
            let (a, b) = unsafe {
                (
                    row_sums_avx2(&values[..n], spec),
                    row_sums_avx512(&values[..n], spec),
                )
            };
            assert_eq!(a, b);
        }
    }

    #[test]
    fn sums_match_a_plain_loop() {
        let values: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 1000.0)
            .collect();
        let (q, k0, scale, floor) = (11u32, 3u32, 0.9999f32, 1e-4f32 / 37.0);
        let got = row_sums(&values, Some(k0), q, scale, floor);
        let mut want = (0f64, 0f64, 0f64);
        for (i, &a) in values.iter().enumerate() {
            let s = (scale * a + floor) as f64;
            want.0 -= s * s.ln();
            want.1 += a as f64;
            want.2 += a as f64 * (k0 as f64 + i as f64 - q as f64).abs();
        }
        assert!((got.entropy - want.0).abs() < 1e-6 * want.0.abs());
        assert!((got.total - want.1).abs() < 1e-6 * want.1);
        assert!((got.distance - want.2).abs() < 1e-6 * want.2);
        assert_eq!(got.max, values.iter().copied().fold(0.0, f32::max));
    }
}
