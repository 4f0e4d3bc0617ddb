//! The rows to cluster, and the frames that report the result.

use frame_sink::TokenDictionary;
use ingest::{RowSource, SlabBuffer, SlabId};
use ndarray::Array2;
use polars::prelude::*;

use crate::kmeans::Clustering;
use crate::Result;

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
            RowSet::Even => position % 2 == 0,
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

/// `batch, layer, head, query_position, query_token, cluster` for the chosen k.
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
    Ok(DataFrame::new(
        n,
        vec![
            UInt32Chunked::from_vec("batch".into(), vec![s.batch; n]).into_column(),
            UInt16Chunked::from_vec("layer".into(), vec![s.layer; n]).into_column(),
            UInt16Chunked::from_vec("head".into(), vec![s.head; n]).into_column(),
            UInt32Chunked::from_vec("query_position".into(), rows.positions.clone()).into_column(),
            token,
            UInt32Chunked::from_vec("cluster".into(), result.labels.clone()).into_column(),
        ],
    )?)
}

/// `k, silhouette, inertia, chosen`, one row per k of the range.
pub fn score_frame(result: &Clustering) -> Result<DataFrame> {
    let chosen = result.chosen_k();
    let s = &result.scores;
    let n = s.len();
    Ok(DataFrame::new(
        n,
        vec![
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
