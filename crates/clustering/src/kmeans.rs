//! KMeans for each k of a range (linfa-clustering) and the silhouette that picks k.

use linfa::prelude::*;
use linfa_clustering::{KMeans, KMeansInit};
use linfa_nn::distance::Distance;
use ndarray::{Array2, ArrayView, ArrayView2, Axis, Dimension};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;
use rayon::prelude::*;

use crate::rows::HeadRows;
use crate::{ClusterError, Result};

/// The k range and the KMeans settings.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub k_min: usize,
    pub k_max: usize,
    /// Seed of the k-means++ initialisation (each k starts from the same seed).
    pub seed: u64,
    /// Restarts per k; the one with the lowest inertia is kept.
    pub n_init: usize,
    pub max_iter: u64,
    /// Convergence, relative as in scikit-learn: a run stops when the squared shift of all
    /// centroids falls below `tolerance` × the mean per-key variance of the rows.
    pub tolerance: f64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            k_min: 2,
            k_max: 9,
            seed: 0,
            n_init: 10,
            max_iter: 300,
            tolerance: 1e-4,
        }
    }
}

/// The fit of one k.
#[derive(Debug, Clone, PartialEq)]
pub struct KScore {
    pub k: usize,
    /// Mean euclidean silhouette of the labels.
    pub silhouette: f64,
    /// Sum of squared distances of the rows to their cluster's mean (scikit-learn's `inertia_`).
    pub inertia: f64,
}

/// Scores of every k and the labels of the chosen one.
#[derive(Debug, Clone)]
pub struct Clustering {
    pub scores: Vec<KScore>,
    /// Index into `scores` of the chosen k.
    pub chosen: usize,
    /// Cluster of each row for the chosen k, numbered in order of first appearance.
    pub labels: Vec<u32>,
    /// Labels of every k, in the order of `scores`.
    pub all_labels: Vec<Vec<u32>>,
}

impl Clustering {
    pub fn chosen_k(&self) -> usize {
        self.scores[self.chosen].k
    }
}

/// Clusters `rows` for every k in `opts.k_min..=opts.k_max` and picks the k with the highest
/// silhouette (the lowest k on ties). The silhouette needs 2 ≤ k < number of rows.
pub fn cluster_head(rows: &HeadRows, opts: &ClusterOptions) -> Result<Clustering> {
    let n = rows.values.nrows();
    if opts.k_min < 2 || opts.k_max < opts.k_min || opts.k_max >= n {
        return Err(ClusterError::Input {
            path: rows.source.clone(),
            reason: format!(
                "k range {}-{} is invalid for {n} rows (the silhouette needs 2 ≤ k < rows)",
                opts.k_min, opts.k_max
            ),
        });
    }
    let distances = pairwise_distances(rows.values.view());
    let mut scores = Vec::new();
    let mut all_labels = Vec::new();
    for k in opts.k_min..=opts.k_max {
        let (labels, inertia) = kmeans(rows.values.view(), k, opts)?;
        scores.push(KScore {
            k,
            silhouette: silhouette(&distances, &labels),
            inertia,
        });
        all_labels.push(labels);
    }
    let chosen = (0..scores.len())
        .reduce(|best, i| {
            if scores[i].silhouette > scores[best].silhouette {
                i
            } else {
                best
            }
        })
        .expect("the k range is not empty");
    Ok(Clustering {
        labels: all_labels[chosen].clone(),
        scores,
        chosen,
        all_labels,
    })
}

/// Labels (numbered by first appearance) and inertia of KMeans with `k` clusters.
fn kmeans(x: ArrayView2<f64>, k: usize, opts: &ClusterOptions) -> Result<(Vec<u32>, f64)> {
    let rng = Xoshiro256Plus::seed_from_u64(opts.seed);
    let data = DatasetBase::from(x);
    // linfa compares the (unsquared) distance between successive centroid sets.
    let shift = (opts.tolerance * mean_variance(x)).sqrt();
    let model = KMeans::params_with(k, rng, LanesL2)
        .init_method(KMeansInit::KMeansPlusPlus)
        .n_runs(opts.n_init.max(1))
        .max_n_iterations(opts.max_iter.max(1))
        .tolerance(shift.max(f64::MIN_POSITIVE))
        .fit(&data)
        .map_err(|e| ClusterError::KMeans(e.to_string()))?;
    let centroids = model.centroids();
    let assigned: Vec<usize> = x
        .axis_iter(Axis(0))
        .map(|row| {
            (0..k)
                .map(|c| LanesL2.rdistance(row, centroids.row(c)))
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |best, (c, d)| if d < best.1 { (c, d) } else { best },
                )
                .0
        })
        .collect();
    let inertia = within_cluster_squares(x, &assigned, k);
    Ok((first_appearance(&assigned), inertia))
}

/// Sum of squared distances of the rows to the mean of their cluster (scikit-learn's
/// `inertia_` at convergence; linfa's centroids also weigh in the previous centroid).
fn within_cluster_squares(x: ArrayView2<f64>, labels: &[usize], k: usize) -> f64 {
    let mut means = Array2::<f64>::zeros((k, x.ncols()));
    let mut counts = vec![0usize; k];
    for (row, &c) in x.axis_iter(Axis(0)).zip(labels) {
        means.row_mut(c).zip_mut_with(&row, |m, v| *m += v);
        counts[c] += 1;
    }
    for (mut m, &n) in means.axis_iter_mut(Axis(0)).zip(&counts) {
        m.mapv_inplace(|v| v / n.max(1) as f64);
    }
    x.axis_iter(Axis(0))
        .zip(labels)
        .map(|(row, &c)| LanesL2.rdistance(row, means.row(c)))
        .sum()
}

/// Mean over keys (columns) of the variance of the rows: scikit-learn's tolerance scale.
fn mean_variance(x: ArrayView2<f64>) -> f64 {
    let var = x.var_axis(Axis(0), 0.0);
    var.mean().unwrap_or(0.0)
}

/// Euclidean distance for linfa's KMeans with eight independent partial sums, so the
/// compiler vectorises it (linfa's `L2Dist` sums in one chain: 90% of a 2,048-row run).
#[derive(Debug, Clone)]
struct LanesL2;

impl Distance<f64> for LanesL2 {
    fn distance<D: Dimension>(&self, a: ArrayView<f64, D>, b: ArrayView<f64, D>) -> f64 {
        self.rdistance(a, b).sqrt()
    }

    fn rdistance<D: Dimension>(&self, a: ArrayView<f64, D>, b: ArrayView<f64, D>) -> f64 {
        match (a.as_slice(), b.as_slice()) {
            (Some(x), Some(y)) => squared_distance(x, y),
            _ => a.iter().zip(b.iter()).map(|(p, q)| (p - q) * (p - q)).sum(),
        }
    }

    fn rdist_to_dist(&self, rdist: f64) -> f64 {
        rdist.sqrt()
    }

    fn dist_to_rdist(&self, dist: f64) -> f64 {
        dist * dist
    }
}

/// Squared euclidean distance; an AVX2 copy of the same loop (same order of operations, so
/// the same result) is chosen at run time.
fn squared_distance(x: &[f64], y: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { squared_distance_avx2(x, y) };
    }
    squared_distance_lanes(x, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn squared_distance_avx2(x: &[f64], y: &[f64]) -> f64 {
    squared_distance_lanes(x, y)
}

#[inline(always)]
fn squared_distance_lanes(x: &[f64], y: &[f64]) -> f64 {
    let mut lanes = [0f64; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(p, q)| (p - q) * (p - q))
        .sum();
    for (a, b) in xc.zip(yc) {
        for i in 0..8 {
            let d = a[i] - b[i];
            lanes[i] += d * d;
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Renumbers labels so that cluster 0 is the first row's, 1 the next new one's, and so on.
fn first_appearance(labels: &[usize]) -> Vec<u32> {
    let mut map: Vec<Option<u32>> = vec![None; labels.iter().max().map_or(0, |m| m + 1)];
    let mut next = 0;
    labels
        .iter()
        .map(|&l| {
            *map[l].get_or_insert_with(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

/// Euclidean distances between all rows (n × n), through the Gram matrix as scikit-learn's
/// `euclidean_distances` computes them, with an exact zero diagonal.
fn pairwise_distances(x: ArrayView2<f64>) -> Array2<f64> {
    let gram = x.dot(&x.t());
    let norms: Vec<f64> = (0..x.nrows()).map(|i| gram[[i, i]]).collect();
    let mut d = gram;
    d.indexed_iter_mut().for_each(|((i, j), v)| {
        *v = if i == j {
            0.0
        } else {
            (norms[i] + norms[j] - 2.0 * *v).max(0.0).sqrt()
        };
    });
    d
}

/// Mean silhouette of `labels` given the pairwise `distances`, as scikit-learn's
/// `silhouette_score`: s = (b − a) / max(a, b) per sample, 0 for a sample alone in its cluster.
/// Samples are scored in parallel and summed in order, so the value does not depend on the
/// thread count.
pub fn silhouette(distances: &Array2<f64>, labels: &[u32]) -> f64 {
    let k = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut sizes = vec![0usize; k];
    labels.iter().for_each(|&l| sizes[l as usize] += 1);
    if sizes.iter().filter(|&&s| s > 0).count() < 2 {
        return f64::NAN;
    }
    let per_sample: Vec<f64> = (0..labels.len())
        .into_par_iter()
        .map(|i| {
            let own = labels[i] as usize;
            if sizes[own] == 1 {
                return 0.0;
            }
            let mut sums = vec![0f64; k];
            for (d, &l) in distances.row(i).iter().zip(labels) {
                sums[l as usize] += d;
            }
            let a = sums[own] / (sizes[own] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != own && sizes[c] > 0)
                .map(|c| sums[c] / sizes[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let m = a.max(b);
            if m > 0.0 {
                (b - a) / m
            } else {
                0.0
            }
        })
        .collect();
    per_sample.iter().sum::<f64>() / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn silhouette_of_a_hand_worked_example() {
        // Points 0, 1 on a line in cluster 0 and 10 in cluster 1.
        // s(0) = (10 − 1)/10, s(1) = (9 − 1)/9, s(10) = 0 (alone in its cluster).
        let x = array![[0.0], [1.0], [10.0]];
        let d = pairwise_distances(x.view());
        let s = silhouette(&d, &[0, 0, 1]);
        let want = (0.9 + 8.0 / 9.0 + 0.0) / 3.0;
        assert!((s - want).abs() < 1e-12, "{s} vs {want}");
    }

    #[test]
    fn distances_are_euclidean() {
        let x = array![[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]];
        let d = pairwise_distances(x.view());
        assert_eq!(d[[0, 1]], 5.0);
        assert_eq!(d[[0, 2]], 10.0);
        assert_eq!(d[[2, 1]], 5.0);
        assert_eq!(d[[1, 1]], 0.0);
    }

    #[test]
    fn lane_distance_equals_the_plain_sum() {
        let x: Vec<f64> = (0..19).map(|i| i as f64 * 0.37).collect();
        let y: Vec<f64> = (0..19).map(|i| (i * i) as f64 * 0.01).collect();
        let plain: f64 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
        assert!((squared_distance(&x, &y) - plain).abs() < 1e-12 * plain);
    }

    #[test]
    fn labels_are_numbered_by_first_appearance() {
        assert_eq!(first_appearance(&[2, 2, 0, 1, 0]), vec![0, 0, 1, 2, 1]);
    }

    #[test]
    fn two_separated_blobs_are_found() {
        let mut flat = Vec::new();
        for i in 0..10 {
            let t = i as f64 * 0.01;
            flat.extend([t, 1.0 - t]);
            flat.extend([5.0 + t, 5.0 - t]);
        }
        let rows = HeadRows {
            slab: ingest::SlabId {
                batch: 0,
                layer: 0,
                head: 0,
            },
            rows: crate::RowSet::All,
            positions: (0..20).collect(),
            values: Array2::from_shape_vec((20, 2), flat).unwrap(),
            source: "test".into(),
        };
        let c = cluster_head(
            &rows,
            &ClusterOptions {
                k_min: 2,
                k_max: 4,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.chosen_k(), 2);
        let want: Vec<u32> = (0..20).map(|i| i % 2).collect();
        assert_eq!(c.labels, want);
        // Inertia of k = 2 by hand: each blob's points sit on a line around their mean.
        let spread: f64 = (0..10)
            .map(|i| 2.0 * ((i as f64 - 4.5) * 0.01).powi(2))
            .sum();
        assert!((c.scores[0].inertia - 2.0 * spread).abs() < 1e-9);
    }
}
