//! Small numeric kernels shared by the analyses.

/// `acc += row` in f64: the column sums every `received`-like analysis needs. An AVX2 copy of
/// the loop is chosen at run time (four f32 → f64 conversions per instruction instead of two).
pub fn add_row_f64(acc: &mut [f64], row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { add_row_avx2(acc, row) };
        return;
    }
    add_row_portable(acc, row);
}

#[inline(always)]
fn add_row_portable(acc: &mut [f64], row: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a += v as f64;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_row_avx2(acc: &mut [f64], row: &[f32]) {
    add_row_portable(acc, row);
}

/// ln x for x > 0 (normal floats), error below 2e-7 (relative, or absolute near 1): x = m·2^e
/// with m in [√½, √2), then ln m = f − f²/2 + f³·P(f), f = m − 1, with the minimax polynomial P
/// of Cephes' `logf`. No division, so eight lanes run at the speed of multiplies.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    let f = m - 1.0;
    let z = f * f;
    let mut p = 7.037_683_6e-2_f32;
    for c in [
        -1.151_461e-1_f32,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ] {
        p = p * f + c;
    }
    f + (f * z * p - 0.5 * z) + e as f32 * std::f32::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_is_accurate_across_the_range() {
        let mut x = 1e-30f32;
        while x < 1e30 {
            let want = (x as f64).ln();
            let got = ln_f32(x) as f64;
            assert!(
                (got - want).abs() <= 2e-7 * want.abs().max(1.0),
                "ln {x}: {got} vs {want}"
            );
            x *= 1.37;
        }
        assert_eq!(ln_f32(1.0), 0.0);
    }
}
