//! Small numeric kernels shared by the analyses.

/// `acc += row` in f64: the column sums every `received`-like analysis needs. An AVX-512 or
/// AVX2 copy of the loop is chosen at run time (eight or four f32 → f64 conversions per
/// instruction instead of two).
pub fn add_row_f64(acc: &mut [f64], row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F, checked just above.
        unsafe { add_row_avx512(acc, row) };
        return;
    }
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
#[target_feature(enable = "avx512f")]
unsafe fn add_row_avx512(acc: &mut [f64], row: &[f32]) {
    add_row_portable(acc, row);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_row_avx2(acc: &mut [f64], row: &[f32]) {
    add_row_portable(acc, row);
}

/// ln x for x > 0 (normal floats), relative error below 1e-7: x = m·2^e with m in
/// [√½, √2), then ln m = 2·atanh(t), t = (m − 1)/(m + 1), |t| ≤ 0.172, by its series to t⁹.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    ln_f32_by::<false>(x)
}

/// [`ln_f32`] with its series in fused multiply-adds when `FUSED` (for code compiled with
/// FMA, where they cost one instruction each; one rounding each, so the result may differ
/// from `ln_f32`'s in the last bit).
#[inline(always)]
pub fn ln_f32_by<const FUSED: bool>(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series = [2.0 / 7.0, 2.0 / 5.0, 2.0 / 3.0, 2.0]
        .into_iter()
        .fold(2.0 / 9.0, |p, c| mul_add::<FUSED>(t2, p, c));
    mul_add::<FUSED>(e as f32, std::f32::consts::LN_2, t * series)
}

/// a·b + c, in one fused operation when `FUSED`.
#[inline(always)]
pub fn mul_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
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

    #[test]
    fn fused_ln_is_as_accurate() {
        let mut x = 1e-30f32;
        while x < 1e30 {
            let (want, got) = ((x as f64).ln(), ln_f32_by::<true>(x) as f64);
            assert!(
                (got - want).abs() <= 2e-7 * want.abs().max(1.0),
                "ln {x}: {got} vs {want}"
            );
            x *= 1.37;
        }
    }
}
