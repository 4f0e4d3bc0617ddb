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
