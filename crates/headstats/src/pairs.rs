//! Head × head distances (Clark et al. 2019, §6): the Jensen–Shannon divergence between two
//! heads' attention distributions, summed over the query rows of one batch row.

use ingest::{RowSource, SlabBuffer, SlabId};
use polars::prelude::*;
use rayon::prelude::*;

use crate::{Result, StatsError};

/// All heads of a batch row are held at once; beyond this the request is refused.
const MEMORY_LIMIT: usize = 1 << 30;
/// Smoothing of each distribution before the divergence: p' = 0.999·p + 0.001/n.
const SMOOTHING: f64 = 1e-3;

/// The distance between two heads.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadDistance {
    pub a: SlabId,
    pub b: SlabId,
    pub jsd: f64,
}

/// JSD between every ordered pair of the selected heads of batch row `batch` (natural log),
/// summed over the valid query rows; a head against itself is 0.
pub fn head_distances(src: &impl RowSource, batch: u32) -> Result<Vec<HeadDistance>> {
    let heads: Vec<SlabId> = src
        .slabs()
        .into_iter()
        .filter(|s| s.batch == batch)
        .collect();
    let (nq, nk) = (src.valid_queries(batch).len(), src.valid_keys(batch).len());
    let bytes = heads.len() * nq * nk * 8;
    if bytes > MEMORY_LIMIT {
        return Err(StatsError::Limit(format!(
            "--pairs holds every head of a batch row at once: {} heads × {nq} × {nk} is {bytes} bytes, more than {MEMORY_LIMIT}; select fewer with --layers/--heads",
            heads.len()
        )));
    }
    let floor = SMOOTHING / nk.max(1) as f64;
    let mut buf = SlabBuffer::default();
    let mut smoothed = Vec::with_capacity(heads.len());
    for &id in &heads {
        let m: Vec<f64> = src
            .valid_matrix(id, &mut buf)?
            .into_iter()
            .map(|a| (1.0 - SMOOTHING) * a as f64 + floor)
            .collect();
        smoothed.push(m);
    }
    // Σ p ln p of each head's rows: JSD = ½Σp ln p + ½Σq ln q − Σ m ln m, m = (p + q)/2.
    let self_terms: Vec<f64> = smoothed
        .iter()
        .map(|m| m.iter().map(|p| p * p.ln()).sum())
        .collect();
    let pairs: Vec<(usize, usize)> = (0..heads.len())
        .flat_map(|i| (0..heads.len()).map(move |j| (i, j)))
        .collect();
    let values: Vec<f64> = pairs
        .par_iter()
        .map(|&(i, j)| {
            if i == j {
                return 0.0;
            }
            let mixed: f64 = smoothed[i]
                .iter()
                .zip(&smoothed[j])
                .map(|(p, q)| {
                    let m = 0.5 * (p + q);
                    m * m.ln()
                })
                .sum();
            (0.5 * self_terms[i] + 0.5 * self_terms[j] - mixed).max(0.0)
        })
        .collect();
    Ok(pairs
        .into_iter()
        .zip(values)
        .map(|((i, j), jsd)| HeadDistance {
            a: heads[i],
            b: heads[j],
            jsd,
        })
        .collect())
}

/// `layer_a, head_a, layer_b, head_b, jsd` (with `batch` first).
pub fn distance_frame(d: &[HeadDistance]) -> Result<DataFrame> {
    let u16s = |name: &str, f: &dyn Fn(&HeadDistance) -> u16| {
        UInt16Chunked::from_vec(name.into(), d.iter().map(f).collect()).into_column()
    };
    Ok(DataFrame::new(
        d.len(),
        vec![
            UInt32Chunked::from_vec("batch".into(), d.iter().map(|x| x.a.batch).collect())
                .into_column(),
            u16s("layer_a", &|x| x.a.layer),
            u16s("head_a", &|x| x.a.head),
            u16s("layer_b", &|x| x.b.layer),
            u16s("head_b", &|x| x.b.head),
            Float64Chunked::from_vec("jsd".into(), d.iter().map(|x| x.jsd).collect()).into_column(),
        ],
    )?)
}
