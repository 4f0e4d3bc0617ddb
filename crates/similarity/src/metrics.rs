//! The metrics of attention vs attribution on two vectors, in f64, as numpy/scipy define them.

/// Names of the metric columns, in output order.
pub const METRICS: [&str; 11] = [
    "cosine_raw",
    "cosine_normalized",
    "cosine_median_threshold",
    "cosine_mean_threshold",
    "cosine_ranks",
    "cosine_top_percentile",
    "cosine_ranks_top_percentile",
    "spearman",
    "pearson",
    "kendall_tau_b",
    "jaccard_top",
];

/// Metrics of one (batch, scope), plus the thresholded vectors behind the overlap sets.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub values: [f64; 11],
    /// min-max(|attr|) with values below the p-th percentile set to 0.
    pub attribution_top: Vec<f64>,
    /// min-max(attention) with values below the p-th percentile set to 0.
    pub attention_top: Vec<f64>,
}

/// cos(a, b); NaN when either is a zero vector.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// (v − min) / (max − min); a constant vector gives NaN, as numpy does.
pub fn minmax(v: &[f64]) -> Vec<f64> {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    v.iter().map(|x| (x - lo) / (hi - lo)).collect()
}

/// numpy's default (linear) percentile, including its two-sided interpolation.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = p / 100.0 * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(s.len() - 1);
    let t = pos - lo as f64;
    let (a, b) = (s[lo], s[hi]);
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// 0-based ascending ordinal ranks, ties in position order (scipy's `rankdata(ordinal) − 1`).
pub fn ordinal_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]).then(i.cmp(&j)));
    let mut r = vec![0.0; v.len()];
    for (rank, &i) in order.iter().enumerate() {
        r[i] = rank as f64;
    }
    r
}

/// Average ranks (1-based, ties share their mean rank), as used by Spearman's rho.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Pearson's r; NaN when either vector is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va.sqrt() * vb.sqrt())
}

pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&average_ranks(a), &average_ranks(b))
}

/// Kendall's tau-b (ties corrected), as `scipy.stats.kendalltau(variant="b")`.
pub fn kendall_tau_b(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len();
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let da = a[i].partial_cmp(&a[j]).unwrap_or(std::cmp::Ordering::Equal);
            let db = b[i].partial_cmp(&b[j]).unwrap_or(std::cmp::Ordering::Equal);
            use std::cmp::Ordering::Equal;
            match (da, db) {
                (Equal, Equal) => {}
                (Equal, _) => ties_a += 1,
                (_, Equal) => ties_b += 1,
                _ if da == db => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let (c, d) = (concordant as f64, discordant as f64);
    (c - d) / ((c + d + ties_a as f64) * (c + d + ties_b as f64)).sqrt()
}

/// Top n − ceil(n·p/100) ranks kept, computed exactly for p with up to 9 decimals.
pub fn top_percentile_cut(n: usize, p: f64) -> usize {
    let scaled = (p * 1e9).round() as u128; // p = scaled / 1e9
    let num = n as u128 * scaled;
    let den = 100u128 * 1_000_000_000;
    num.div_ceil(den) as usize
}

fn zero_below(v: &[f64], threshold: f64) -> Vec<f64> {
    v.iter()
        .map(|&x| if x < threshold { 0.0 } else { x })
        .collect()
}

/// All metrics for attributions `attr` (signed) and attention `att` over the same positions.
/// A NaN in either vector enters every metric, so each is NaN (scipy's `nan_policy=
/// "propagate"`), and no position is in a top set.
pub fn compare(attr: &[f64], att: &[f64], p: f64) -> Comparison {
    if attr.iter().chain(att).any(|x| x.is_nan()) {
        return Comparison {
            values: [f64::NAN; 11],
            attribution_top: vec![0.0; attr.len()],
            attention_top: vec![0.0; att.len()],
        };
    }
    let abs: Vec<f64> = attr.iter().map(|x| x.abs()).collect();
    let (an, tn) = (minmax(&abs), minmax(att));
    let median = |v: &[f64]| percentile(v, 50.0);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ra, rt) = (ordinal_ranks(&abs), ordinal_ranks(att));
    let attribution_top = zero_below(&an, percentile(&an, p));
    let attention_top = zero_below(&tn, percentile(&tn, p));
    let cut = top_percentile_cut(attr.len(), p) as f64;
    let keep_top = |r: &[f64]| {
        r.iter()
            .map(|&x| if x >= cut { x } else { 0.0 })
            .collect::<Vec<_>>()
    };
    let sa: Vec<bool> = attribution_top.iter().map(|&x| x > 0.0).collect();
    let st: Vec<bool> = attention_top.iter().map(|&x| x > 0.0).collect();
    let both = sa.iter().zip(&st).filter(|(a, b)| **a && **b).count();
    let either = sa.iter().zip(&st).filter(|(a, b)| **a || **b).count();
    let values = [
        cosine(attr, att),
        cosine(&an, &tn),
        cosine(&zero_below(&an, median(&an)), &zero_below(&tn, median(&tn))),
        cosine(&zero_below(&an, mean(&an)), &zero_below(&tn, mean(&tn))),
        cosine(&ra, &rt),
        cosine(&attribution_top, &attention_top),
        cosine(&keep_top(&ra), &keep_top(&rt)),
        spearman(&abs, att),
        pearson(&abs, att),
        kendall_tau_b(&abs, att),
        if either == 0 {
            f64::NAN
        } else {
            both as f64 / either as f64
        },
    ];
    Comparison {
        values,
        attribution_top,
        attention_top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12 || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn hand_worked_values() {
        // cos([1,0],[1,1]) = 1/√2
        assert!(close(
            cosine(&[1.0, 0.0], &[1.0, 1.0]),
            std::f64::consts::FRAC_1_SQRT_2
        ));
        assert!(cosine(&[0.0, 0.0], &[1.0, 1.0]).is_nan());
        assert_eq!(minmax(&[2.0, 4.0, 3.0]), vec![0.0, 1.0, 0.5]);
        assert!(minmax(&[3.0, 3.0]).iter().all(|x| x.is_nan()));
        // numpy: np.percentile([1,2,3,4], 95) = 3.85; median of [1,2,3,4] = 2.5
        assert!(close(percentile(&[4.0, 1.0, 3.0, 2.0], 95.0), 3.85));
        assert!(close(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), 2.5));
        // ties in position order: [0.5, 0.1, 0.5] -> [1, 0, 2]
        assert_eq!(ordinal_ranks(&[0.5, 0.1, 0.5]), vec![1.0, 0.0, 2.0]);
        // scipy: spearmanr([1,2,2,3],[1,3,2,4]) = 0.9486832980505138
        assert!(
            (spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]) - 0.9486832980505138).abs()
                < 1e-12
        );
        // scipy: kendalltau([1,2,2,3],[1,3,2,4], variant="b") = 0.9128709291752769
        assert!(
            (kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]) - 0.9128709291752769)
                .abs()
                < 1e-12
        );
        assert!(close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]), 1.0));
        // 102 of 2048 kept at p = 95; 20 of 400 at p = 95; p = 90 on 40 keeps 4
        assert_eq!(2048 - top_percentile_cut(2048, 95.0), 102);
        assert_eq!(400 - top_percentile_cut(400, 95.0), 20);
        assert_eq!(40 - top_percentile_cut(40, 90.0), 4);
    }

    #[test]
    fn identical_vectors_agree_fully() {
        let v = [0.1, 0.5, 0.2, 0.9, 0.3];
        let c = compare(&v, &v, 60.0);
        for (name, x) in METRICS.iter().zip(c.values) {
            assert!((x - 1.0).abs() < 1e-12, "{name} = {x}");
        }
    }
}
