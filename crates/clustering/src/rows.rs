//! The rows to cluster, and the frames that report the result.

use frame_sink::TokenDictionary;
use ingest::{RowSource, SlabBuffer, SlabId};
use ndarray::Array2;
use polars::prelude::*;

use crate::kmeans::Clustering;
use crate::svm::ClusterCoefficients;
use crate::{ClusterError, Result};

/// Which valid query rows are clustered: all, or the interleaved halves the clustering
/// notebook treats separately (even positions = its x queries, odd = its y queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSet {
    All,
    Even,
    Odd,
}

impl RowSet {
    fn keeps(self, position: u32) -> bool {
        match self {
            RowSet::All => true,
            RowSet::Even => position.is_multiple_of(2),
            RowSet::Odd => position % 2 == 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RowSet::All => "all",
            RowSet::Even => "even",
            RowSet::Odd => "odd",
        }
    }
}

/// The attention rows of one head: one row per selected valid query, one column per valid
/// key, in f64 (KMeans and the distances are computed in f64).
pub struct HeadRows {
    pub slab: SlabId,
    pub rows: RowSet,
    /// Query position of each row.
    pub positions: Vec<u32>,
    pub values: Array2<f64>,
    /// The input's name, for error messages.
    pub source: String,
}

impl HeadRows {
    /// Reads the rows of `slab` from `src` (masks and head importance already applied there).
    pub fn read(
        src: &impl RowSource,
        source: &std::path::Path,
        slab: SlabId,
        rows: RowSet,
    ) -> Result<HeadRows> {
        let keys = src.valid_keys(slab.batch).to_vec();
        let mut positions = Vec::new();
        let mut flat = Vec::new();
        let mut buf = SlabBuffer::default();
        src.for_each_query_row(slab, &mut buf, |_, q, row| {
            if rows.keeps(q) {
                positions.push(q);
                flat.extend(keys.iter().map(|&k| row[k as usize] as f64));
            }
        })?;
        // By the NaN rule a NaN enters every distance, so no cluster can hold its row; refuse
        // it as scikit-learn's KMeans does, naming the first such row.
        if let Some(i) = flat.iter().position(|v| v.is_nan()) {
            return Err(ClusterError::Input {
                path: source.display().to_string(),
                reason: format!(
                    "the row of query position {} (batch {}, layer {}, head {}) holds NaN: KMeans needs rows of numbers",
                    positions[i / keys.len().max(1)],
                    slab.batch,
                    slab.layer,
                    slab.head
                ),
            });
        }
        let values = Array2::from_shape_vec((positions.len(), keys.len()), flat)
            .expect("one value per (row, valid key)");
        Ok(HeadRows {
            slab,
            rows,
            positions,
            values,
            source: source.display().to_string(),
        })
    }
}

/// `batch, layer, head, rows` of `n` rows of one head.
fn head_columns(rows: &HeadRows, n: usize) -> Vec<Column> {
    let s = rows.slab;
    vec![
        UInt32Chunked::from_vec("batch".into(), vec![s.batch; n]).into_column(),
        UInt16Chunked::from_vec("layer".into(), vec![s.layer; n]).into_column(),
        UInt16Chunked::from_vec("head".into(), vec![s.head; n]).into_column(),
        rows_column(rows.rows, n),
    ]
}

fn rows_column(rows: RowSet, n: usize) -> Column {
    StringChunked::from_iter_values("rows".into(), std::iter::repeat_n(rows.name(), n))
        .into_column()
}

/// `batch, layer, head, rows, query_position, query_token, cluster` for the chosen k.
pub fn label_frame(
    rows: &HeadRows,
    result: &Clustering,
    tokens: Option<&TokenDictionary>,
) -> Result<DataFrame> {
    let n = rows.positions.len();
    let s = rows.slab;
    let token = match tokens {
        Some(d) => d.column(
            "query_token",
            rows.positions.iter().map(|&q| d.code(s.batch, q)).collect(),
        ),
        None => frame_sink::null_token_column("query_token", n),
    };
    let mut columns = head_columns(rows, n);
    columns.extend([
        UInt32Chunked::from_vec("query_position".into(), rows.positions.clone()).into_column(),
        token,
        UInt32Chunked::from_vec("cluster".into(), result.labels.clone()).into_column(),
    ]);
    Ok(DataFrame::new(n, columns)?)
}

/// `rows, k, silhouette, inertia, chosen`, one row per k of the range.
pub fn score_frame(rows: RowSet, result: &Clustering) -> Result<DataFrame> {
    let chosen = result.chosen_k();
    let s = &result.scores;
    let n = s.len();
    Ok(DataFrame::new(
        n,
        vec![
            rows_column(rows, n),
            UInt32Chunked::from_vec("k".into(), s.iter().map(|x| x.k as u32).collect())
                .into_column(),
            Float64Chunked::from_vec(
                "silhouette".into(),
                s.iter().map(|x| x.silhouette).collect(),
            )
            .into_column(),
            Float64Chunked::from_vec("inertia".into(), s.iter().map(|x| x.inertia).collect())
                .into_column(),
            BooleanChunked::from_slice(
                "chosen".into(),
                &s.iter().map(|x| x.k == chosen).collect::<Vec<_>>(),
            )
            .into_column(),
        ],
    )?)
}

/// `batch, layer, head, rows, cluster, feature, coef, intercept, accuracy`: one row per
/// (classifier, feature).
pub fn coefficient_frame(rows: &HeadRows, coefs: &[ClusterCoefficients]) -> Result<DataFrame> {
    let width = coefs.first().map_or(0, |c| c.coef.len());
    let n = coefs.len() * width;
    let each = |f: &dyn Fn(&ClusterCoefficients) -> f64| -> Vec<f64> {
        coefs
            .iter()
            .flat_map(|c| std::iter::repeat_n(f(c), width))
            .collect()
    };
    let mut columns = head_columns(rows, n);
    columns.extend([
        UInt32Chunked::from_vec(
            "cluster".into(),
            coefs
                .iter()
                .flat_map(|c| std::iter::repeat_n(c.cluster, width))
                .collect(),
        )
        .into_column(),
        UInt32Chunked::from_vec(
            "feature".into(),
            coefs.iter().flat_map(|_| 0..width as u32).collect(),
        )
        .into_column(),
        Float64Chunked::from_vec(
            "coef".into(),
            coefs.iter().flat_map(|c| c.coef.clone()).collect(),
        )
        .into_column(),
        Float64Chunked::from_vec("intercept".into(), each(&|c| c.intercept)).into_column(),
        Float64Chunked::from_vec("accuracy".into(), each(&|c| c.accuracy)).into_column(),
    ]);
    Ok(DataFrame::new(n, columns)?)
}

/// One parity quadrant of a head: query rows × key columns, each in cluster order.
#[derive(Debug, Clone, PartialEq)]
pub struct Quadrant {
    pub rows: Vec<u32>,
    pub cols: Vec<u32>,
    /// Row-major `rows.len() × cols.len()`.
    pub values: Vec<f32>,
}

/// The four quadrants even × even, even × odd, odd × even, odd × odd of a head's valid matrix
/// (`values`: `queries.len() × keys.len()`), positions sorted by `cluster_of` (positions
/// without a cluster last), then by position.
pub fn parity_quadrants(
    values: &[f32],
    queries: &[u32],
    keys: &[u32],
    cluster_of: &dyn Fn(u32) -> Option<u32>,
) -> [Quadrant; 4] {
    let ordered = |positions: &[u32], parity: u32| -> Vec<(usize, u32)> {
        let mut v: Vec<(usize, u32)> = positions
            .iter()
            .enumerate()
            .filter(|(_, &p)| p % 2 == parity)
            .map(|(i, &p)| (i, p))
            .collect();
        v.sort_by_key(|&(_, p)| (cluster_of(p).unwrap_or(u32::MAX), p));
        v
    };
    let quadrant = |qp: u32, kp: u32| {
        let (rows, cols) = (ordered(queries, qp), ordered(keys, kp));
        let values = rows
            .iter()
            .flat_map(|&(qi, _)| {
                cols.iter()
                    .map(move |&(ki, _)| values[qi * keys.len() + ki])
            })
            .collect();
        Quadrant {
            rows: rows.iter().map(|r| r.1).collect(),
            cols: cols.iter().map(|c| c.1).collect(),
            values,
        }
    };
    [
        quadrant(0, 0),
        quadrant(0, 1),
        quadrant(1, 0),
        quadrant(1, 1),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadrants_split_by_parity_and_order_by_cluster() {
        // A 4 × 4 matrix with value 10·q + k; clusters: position 2 → 0, position 0 → 1.
        let values: Vec<f32> = (0..16).map(|i| (10 * (i / 4) + i % 4) as f32).collect();
        let p = [0u32, 1, 2, 3];
        let cluster = |pos: u32| match pos {
            2 => Some(0),
            0 => Some(1),
            _ => None,
        };
        let q = parity_quadrants(&values, &p, &p, &cluster);
        assert_eq!(q[0].rows, vec![2, 0]);
        assert_eq!(q[0].cols, vec![2, 0]);
        assert_eq!(q[0].values, vec![22.0, 20.0, 2.0, 0.0]);
        assert_eq!(q[1].values, vec![21.0, 23.0, 1.0, 3.0]);
        assert_eq!(q[3].rows, vec![1, 3]);
        assert_eq!(q[3].values, vec![11.0, 13.0, 31.0, 33.0]);
    }
}
