//! Which input features separate the clusters: a one-vs-rest linear SVM (linfa-svm's C-SVC
//! with a linear kernel: hinge loss, L2 regularisation, unregularised intercept) from each
//! row's feature vector to its cluster.

use linfa::prelude::*;
use linfa_svm::Svm;
use ndarray::{Array1, Array2, ArrayView2};

use crate::{ClusterError, Result};

/// Per query position, an input feature vector: (S, F), or (B, S, F) per batch row.
pub struct Features {
    path: String,
    batch_rows: usize,
    seq: usize,
    width: usize,
    values: Vec<f64>,
}

impl Features {
    /// Reads `input` and checks it against `batch` rows of `seq` positions.
    pub fn open(input: &ingest::TensorInput, batch: usize, seq: usize) -> Result<Features> {
        let path = input.name();
        let t = input.open()?;
        let bad = |reason: String| ClusterError::Input {
            path: path.display().to_string(),
            reason,
        };
        let (batch_rows, s, width) = match t.shape[..] {
            [s, f] => (1, s, f),
            [b, s, f] if b == batch => (b, s, f),
            _ => {
                return Err(bad(format!(
                "features of shape {:?}: expected (S, F) or (B, S, F) with B = {batch}, S = {seq}",
                t.shape
            )))
            }
        };
        if s != seq || width == 0 {
            return Err(bad(format!(
                "features of shape {:?}: expected {seq} positions and at least one feature",
                t.shape
            )));
        }
        let values = t.to_f64_vec()?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(bad("features contain NaN or Inf".into()));
        }
        Ok(Features {
            path: path.display().to_string(),
            batch_rows,
            seq,
            width,
            values,
        })
    }

    /// Number of features per position.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The feature rows of `positions` in batch row `batch`.
    pub fn rows(&self, batch: u32, positions: &[u32]) -> Array2<f64> {
        let b = if self.batch_rows == 1 {
            0
        } else {
            batch as usize
        };
        let mut out = Array2::zeros((positions.len(), self.width));
        for (mut row, &p) in out.rows_mut().into_iter().zip(positions) {
            let start = (b * self.seq + p as usize) * self.width;
            row.assign(&ndarray::ArrayView1::from(
                &self.values[start..start + self.width],
            ));
        }
        out
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

/// One linear classifier: cluster `cluster` (the positive class) against the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterCoefficients {
    pub cluster: u32,
    pub coef: Vec<f64>,
    pub intercept: f64,
    /// Share of the training rows this classifier puts on the right side.
    pub accuracy: f64,
}

/// One-vs-rest linear SVMs with penalty `c` from `x` (rows × features) to `labels`
/// (0..k). With two clusters there is one classifier, for cluster 1 (as scikit-learn's
/// `LinearSVC` gives one coefficient vector).
pub fn svm_coefficients(
    x: ArrayView2<f64>,
    labels: &[u32],
    c: f64,
) -> Result<Vec<ClusterCoefficients>> {
    let k = labels.iter().max().map_or(0, |&m| m + 1);
    let positives: Vec<u32> = if k <= 2 { vec![1] } else { (0..k).collect() };
    positives
        .into_iter()
        .map(|cluster| one_vs_rest(x, labels, cluster, c))
        .collect()
}

fn one_vs_rest(
    x: ArrayView2<f64>,
    labels: &[u32],
    cluster: u32,
    c: f64,
) -> Result<ClusterCoefficients> {
    let targets: Array1<bool> = labels.iter().map(|&l| l == cluster).collect();
    let data = DatasetBase::new(x.to_owned(), targets.clone());
    let model: Svm<f64, bool> = Svm::<f64, bool>::params()
        .linear_kernel()
        .pos_neg_weights(c, c)
        .fit(&data)
        .map_err(|e| ClusterError::Svm(e.to_string()))?;
    // The decision function is w·x − ρ; w is read off by evaluating it on unit vectors.
    let width = x.ncols();
    let mut unit = Array1::<f64>::zeros(width);
    let coef = (0..width)
        .map(|j| {
            unit[j] = 1.0;
            let w = model.weighted_sum(&unit);
            unit[j] = 0.0;
            w
        })
        .collect::<Vec<_>>();
    let intercept = -model.rho;
    let right = x
        .rows()
        .into_iter()
        .zip(&targets)
        .filter(|(row, &t)| {
            let score: f64 = row.iter().zip(&coef).map(|(a, w)| a * w).sum::<f64>() + intercept;
            (score >= 0.0) == t
        })
        .count();
    Ok(ClusterCoefficients {
        cluster,
        coef,
        intercept,
        accuracy: right as f64 / labels.len().max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_separable_pair_gets_the_max_margin_line() {
        // Two points per class on a line (the second feature is constant): the max-margin
        // boundary is x = 0.5 with margins at 0 and 1, so with a large C, w = (2, 0), b = −1.
        let x = array![[0.0, 1.0], [-1.0, 1.0], [1.0, 1.0], [2.0, 1.0]];
        let c = svm_coefficients(x.view(), &[0, 0, 1, 1], 1000.0).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].cluster, 1);
        assert!((c[0].coef[0] - 2.0).abs() < 1e-6, "{:?}", c[0]);
        assert!(c[0].coef[1].abs() < 1e-6, "{:?}", c[0]);
        assert!((c[0].intercept + 1.0).abs() < 1e-6, "{:?}", c[0]);
        assert_eq!(c[0].accuracy, 1.0);
    }

    #[test]
    fn three_clusters_give_one_classifier_each() {
        let x = array![
            [3.0, 0.0],
            [3.5, 0.2],
            [0.0, 3.0],
            [0.2, 3.5],
            [-3.0, -3.0],
            [-3.5, -3.2]
        ];
        let c = svm_coefficients(x.view(), &[0, 0, 1, 1, 2, 2], 1.0).unwrap();
        assert_eq!(
            c.iter().map(|c| c.cluster).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(c.iter().all(|c| c.accuracy == 1.0));
        assert!(c[0].coef[0] > 0.0 && c[1].coef[1] > 0.0 && c[2].coef[0] < 0.0);
    }
}
