//! Run vs run: two attention tensors whose tokens are channel blocks (EEG electrodes × time),
//! with run B's blocks permuted (rows and columns) into run A's channel order.

use std::path::Path;

use ingest::{IngestError, RowSource, SlabBuffer, SlabId};
use polars::prelude::*;
use rayon::prelude::*;

use crate::Result;

/// Channel names of both runs and the block length; maps A's positions to B's.
#[derive(Debug, Clone)]
pub struct ChannelBlocks {
    pub channels: Vec<String>,
    pub block: usize,
    /// `b_position[p]` = the position in run B of A's position p.
    pub(crate) b_position: Vec<usize>,
}

impl ChannelBlocks {
    /// `channels_b` must hold the same names as `channels_a`; `channels × block` must equal
    /// the sequence length `seq`. Errors name the file the lists describe.
    pub fn new(
        channels_a: &[String],
        channels_b: &[String],
        block: usize,
        seq: usize,
        path_a: &Path,
        path_b: &Path,
    ) -> Result<Self, IngestError> {
        if block == 0 || channels_a.len() * block != seq {
            return Err(IngestError::invalid(
                path_a,
                format!(
                    "{} channels × block {block} = {} is not the sequence length {seq}",
                    channels_a.len(),
                    channels_a.len() * block
                ),
            ));
        }
        let missing: Vec<&str> = channels_a
            .iter()
            .filter(|c| !channels_b.contains(c))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = channels_b
            .iter()
            .filter(|c| !channels_a.contains(c))
            .map(String::as_str)
            .collect();
        let mut unique = channels_a.to_vec();
        unique.sort();
        unique.dedup();
        if !missing.is_empty()
            || !extra.is_empty()
            || unique.len() != channels_a.len()
            || channels_b.len() != channels_a.len()
        {
            return Err(IngestError::invalid(
                path_b,
                format!(
                    "--channels-b must be a permutation of --channels-a (missing: [{}], extra: [{}], {} vs {} names)",
                    missing.join(", "),
                    extra.join(", "),
                    channels_a.len(),
                    channels_b.len()
                ),
            ));
        }
        let b_position = channels_a
            .iter()
            .flat_map(|c| {
                let j = channels_b
                    .iter()
                    .position(|x| x == c)
                    .expect("checked above");
                (j * block..(j + 1) * block).collect::<Vec<_>>()
            })
            .collect();
        Ok(ChannelBlocks {
            channels: channels_a.to_vec(),
            block,
            b_position,
        })
    }
}

/// One (batch, layer, head) of both runs, B reordered, with its metrics and block means.
struct SlabComparison {
    id: SlabId,
    metrics: [f64; 8],
    blocks: [Vec<f64>; 2],
}

/// Per-thread matrix of run B, reused across heads (fresh memory costs page faults).
#[derive(Default)]
struct Matrices {
    b: Vec<f32>,
    buf: SlabBuffer,
}

thread_local! {
    static MATRICES: std::cell::RefCell<Matrices> = std::cell::RefCell::new(Matrices::default());
}

pub(crate) fn read_matrix(
    src: &impl RowSource,
    id: SlabId,
    buf: &mut SlabBuffer,
    m: &mut Vec<f32>,
) -> Result<()> {
    let n = src.dims().keys;
    m.clear();
    m.resize(src.dims().queries * n, 0.0);
    src.for_each_query_row(id, buf, |_, q, row| {
        m[q as usize * n..(q as usize + 1) * n].copy_from_slice(row)
    })?;
    Ok(())
}

/// Run B's matrix is read whole (its rows are needed in A's channel order); run A is streamed
/// row by row against it.
fn compare_slab(
    a: &impl RowSource,
    b: &impl RowSource,
    id: SlabId,
    blocks: &ChannelBlocks,
) -> Result<SlabComparison> {
    MATRICES.with(|m| {
        let m = &mut *m.borrow_mut();
        read_matrix(b, id, &mut m.buf, &mut m.b)?;
        let n = blocks.b_position.len();
        let mut acc = SlabAccumulator::new(blocks);
        let rows_b = &m.b;
        // Padded queries (with a mask) count as zero rows, as in the whole-matrix metrics.
        let mut next = 0usize;
        let zeros = vec![0f32; n];
        a.for_each_query_row(id, &mut m.buf, |_, q, ra| {
            for z in next..q as usize {
                acc.add_row(z, &zeros, &rows_b[blocks.b_position[z] * n..][..n]);
            }
            acc.add_row(
                q as usize,
                ra,
                &rows_b[blocks.b_position[q as usize] * n..][..n],
            );
            next = q as usize + 1;
        })?;
        for z in next..n {
            acc.add_row(z, &zeros, &rows_b[blocks.b_position[z] * n..][..n]);
        }
        Ok(acc.finish(id))
    })
}

/// Sums over one pair of row segments, in independent lanes so the compiler vectorises.
#[derive(Default, Clone, Copy)]
struct Sums {
    a: f64,
    b: f64,
    ab: f64,
    aa: f64,
    bb: f64,
    abs_diff: f64,
    max_diff: f64,
    /// Σ ½a·ln((a+ε)/(m+ε)) + ½b·ln((b+ε)/(m+ε)), m = (a+b)/2: the row's JSD terms.
    jsd: f64,
    max_a: f64,
    max_b: f64,
}

/// Jain & Wallace's ε in the Jensen–Shannon divergence.
const JSD_EPS: f32 = 1e-10;

/// Values per block of the JSD pass: f32 lanes within a block, f64 across blocks.
const JSD_BLOCK: usize = 128;

/// Σ of the JSD terms of two segments, in its own pass: eight f32 lanes, so the three
/// logarithms per entry run eight at a time (inlined into the AVX2 copy of the caller).
#[inline(always)]
fn jsd_sum(xa: &[f32], xb: &[f32]) -> f64 {
    let mut total = 0f64;
    for (ba, bb) in xa.chunks(JSD_BLOCK).zip(xb.chunks(JSD_BLOCK)) {
        let mut lanes = [0f32; LANES];
        let (ca, cb) = (ba.chunks_exact(LANES), bb.chunks_exact(LANES));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (ya, yb) in ca.zip(cb) {
            for i in 0..LANES {
                lanes[i] += jsd_term(ya[i], yb[i]);
            }
        }
        total += lanes.iter().map(|&v| v as f64).sum::<f64>();
        total += ra
            .iter()
            .zip(rb)
            .map(|(&x, &y)| jsd_term(x, y) as f64)
            .sum::<f64>();
    }
    total
}

#[inline(always)]
fn jsd_term(x: f32, y: f32) -> f32 {
    let m = 0.5 * (x + y);
    let lm = ingest::ln_f32(m + JSD_EPS);
    0.5 * x * (ingest::ln_f32(x + JSD_EPS) - lm) + 0.5 * y * (ingest::ln_f32(y + JSD_EPS) - lm)
}

fn segment_sums(xa: &[f32], xb: &[f32]) -> Sums {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { segment_sums_avx2(xa, xb) };
    }
    segment_sums_portable(xa, xb)
}

/// The same loop compiled for AVX2 (four f64 per instruction instead of two).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn segment_sums_avx2(xa: &[f32], xb: &[f32]) -> Sums {
    segment_sums_portable(xa, xb)
}

/// Lanes per accumulator: enough independent chains to hide the latency of f64 additions.
const LANES: usize = 8;

#[inline(always)]
fn segment_sums_portable(xa: &[f32], xb: &[f32]) -> Sums {
    // Sums start at 0; maxima at NaN, which `f64::max` replaces by the first number, so that
    // NaN entries are skipped and a segment without a number keeps NaN (the NaN rule).
    let mut lanes = [[0f64; LANES]; 9];
    for maxima in &mut lanes[6..] {
        *maxima = [f64::NAN; LANES];
    }
    let (ca, cb) = (xa.chunks_exact(LANES), xb.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (ya, yb) in ca.zip(cb) {
        for i in 0..LANES {
            let (x, y) = (ya[i] as f64, yb[i] as f64);
            lanes[7][i] = lanes[7][i].max(x);
            lanes[8][i] = lanes[8][i].max(y);
            let d = (x - y).abs();
            lanes[0][i] += x;
            lanes[1][i] += y;
            lanes[2][i] += x * y;
            lanes[3][i] += x * x;
            lanes[4][i] += y * y;
            lanes[5][i] += d;
            lanes[6][i] = lanes[6][i].max(d);
        }
    }
    for (&x, &y) in ra.iter().zip(rb) {
        let (x, y) = (x as f64, y as f64);
        lanes[7][0] = lanes[7][0].max(x);
        lanes[8][0] = lanes[8][0].max(y);
        let d = (x - y).abs();
        lanes[0][0] += x;
        lanes[1][0] += y;
        lanes[2][0] += x * y;
        lanes[3][0] += x * x;
        lanes[4][0] += y * y;
        lanes[5][0] += d;
        lanes[6][0] = lanes[6][0].max(d);
    }
    let sum = |l: &[f64; LANES]| l.iter().sum::<f64>();
    Sums {
        a: sum(&lanes[0]),
        b: sum(&lanes[1]),
        ab: sum(&lanes[2]),
        aa: sum(&lanes[3]),
        bb: sum(&lanes[4]),
        abs_diff: sum(&lanes[5]),
        max_diff: lanes[6].iter().copied().fold(f64::NAN, f64::max),
        jsd: jsd_sum(xa, xb),
        max_a: lanes[7].iter().copied().fold(f64::NAN, f64::max),
        max_b: lanes[8].iter().copied().fold(f64::NAN, f64::max),
    }
}

/// Running sums of one (batch, layer, head), fed A's rows in order. B's row for A's row q is
/// row `p[q]`, and the key block of A's channel j is B's block of that channel, so every inner
/// loop runs over two contiguous segments. Pearson comes from the sums (n·Σab − ΣaΣb over the
/// square roots of the same for a and b), in f64.
struct SlabAccumulator<'b> {
    blocks: &'b ChannelBlocks,
    b_block: Vec<usize>,
    total: Sums,
    block_sums: [Vec<f64>; 2],
}

impl<'b> SlabAccumulator<'b> {
    fn new(blocks: &'b ChannelBlocks) -> Self {
        let (c, w) = (blocks.channels.len(), blocks.block);
        SlabAccumulator {
            blocks,
            b_block: (0..c).map(|j| blocks.b_position[j * w] / w).collect(),
            total: Sums {
                max_diff: f64::NAN,
                max_a: f64::NAN,
                max_b: f64::NAN,
                ..Sums::default()
            },
            block_sums: [vec![0f64; c * c], vec![0f64; c * c]],
        }
    }

    fn add_row(&mut self, q: usize, ra: &[f32], rb: &[f32]) {
        let (c, w) = (self.blocks.channels.len(), self.blocks.block);
        let base = (q / w) * c;
        for (j, &jb) in self.b_block.iter().enumerate() {
            let s = segment_sums(&ra[j * w..(j + 1) * w], &rb[jb * w..(jb + 1) * w]);
            self.block_sums[0][base + j] += s.a;
            self.block_sums[1][base + j] += s.b;
            let t = &mut self.total;
            t.a += s.a;
            t.b += s.b;
            t.ab += s.ab;
            t.aa += s.aa;
            t.bb += s.bb;
            t.abs_diff += s.abs_diff;
            t.max_diff = t.max_diff.max(s.max_diff);
            t.jsd += s.jsd;
            t.max_a = t.max_a.max(s.max_a);
            t.max_b = t.max_b.max(s.max_b);
        }
    }

    fn finish(mut self, id: SlabId) -> SlabComparison {
        let n = self.blocks.b_position.len();
        let t = self.total;
        let len = (n * n) as f64;
        let cov = len * t.ab - t.a * t.b;
        let (var_a, var_b) = (len * t.aa - t.a * t.a, len * t.bb - t.b * t.b);
        let per = (self.blocks.block * self.blocks.block) as f64;
        for s in &mut self.block_sums {
            s.iter_mut().for_each(|v| *v /= per);
        }
        SlabComparison {
            id,
            metrics: [
                t.ab / (t.aa.sqrt() * t.bb.sqrt()),
                cov / (var_a.sqrt() * var_b.sqrt()),
                t.abs_diff / len,
                t.max_diff,
                t.jsd / n as f64,
                0.5 * t.abs_diff / n as f64,
                t.max_a,
                t.max_b,
            ],
            blocks: self.block_sums,
        }
    }
}

/// A column of maxima: NaN (no number seen) is null, by the NaN rule.
fn maxima(name: &str, values: Vec<f64>) -> Column {
    Float64Chunked::from_iter_options(
        name.into(),
        values.into_iter().map(|v| (!v.is_nan()).then_some(v)),
    )
    .into_column()
}

/// What [`compare_runs`] returns.
pub struct RunComparison {
    /// `batch, layer, head, cosine, pearson, mean_abs_diff, max_abs_diff, jsd_mean, tvd_mean,
    /// max_attention_a, max_attention_b`.
    pub heads: DataFrame,
    /// `run, batch, layer, head, query_channel, key_channel, mean_attention`.
    pub blocks: DataFrame,
    /// The head whose cosine is lowest (the one worth looking at first).
    pub least_similar: Option<SlabId>,
}

/// Compares two runs with the same shape, head by head.
pub fn compare_runs(
    a: &impl RowSource,
    b: &impl RowSource,
    blocks: &ChannelBlocks,
) -> Result<RunComparison> {
    let parts: Vec<SlabComparison> = a
        .slabs()
        .par_iter()
        .map(|&id| compare_slab(a, b, id, blocks))
        .collect::<Result<_>>()?;
    let least_similar = parts
        .iter()
        .filter(|p| !p.metrics[0].is_nan())
        .min_by(|x, y| x.metrics[0].total_cmp(&y.metrics[0]))
        .map(|p| p.id);
    let n = parts.len();
    let mut metric_cols: [Vec<f64>; 8] = Default::default();
    let c = blocks.channels.len();
    let mut blk = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for part in &parts {
        for (col, v) in metric_cols.iter_mut().zip(part.metrics) {
            col.push(v);
        }
        for (run, means) in ["a", "b"].iter().zip(&part.blocks) {
            for (i, &m) in means.iter().enumerate() {
                blk.0.push(*run);
                blk.1.push(part.id.batch);
                blk.2.push(part.id.layer);
                blk.3.push(part.id.head);
                blk.4.push(blocks.channels[i / c].as_str());
                blk.5.push(blocks.channels[i % c].as_str());
                blk.6.push(m);
            }
        }
    }
    let [cos, pear, mean_abs, max_abs, jsd, tvd, max_a, max_b] = metric_cols;
    let comparison = DataFrame::new(
        n,
        vec![
            UInt32Chunked::from_vec("batch".into(), parts.iter().map(|p| p.id.batch).collect())
                .into_column(),
            UInt16Chunked::from_vec("layer".into(), parts.iter().map(|p| p.id.layer).collect())
                .into_column(),
            UInt16Chunked::from_vec("head".into(), parts.iter().map(|p| p.id.head).collect())
                .into_column(),
            Float64Chunked::from_vec("cosine".into(), cos).into_column(),
            Float64Chunked::from_vec("pearson".into(), pear).into_column(),
            Float64Chunked::from_vec("mean_abs_diff".into(), mean_abs).into_column(),
            maxima("max_abs_diff", max_abs),
            Float64Chunked::from_vec("jsd_mean".into(), jsd).into_column(),
            Float64Chunked::from_vec("tvd_mean".into(), tvd).into_column(),
            maxima("max_attention_a", max_a),
            maxima("max_attention_b", max_b),
        ],
    )?;
    let m = blk.0.len();
    let block_frame = DataFrame::new(
        m,
        vec![
            StringChunked::from_iter_values("run".into(), blk.0.into_iter()).into_column(),
            UInt32Chunked::from_vec("batch".into(), blk.1).into_column(),
            UInt16Chunked::from_vec("layer".into(), blk.2).into_column(),
            UInt16Chunked::from_vec("head".into(), blk.3).into_column(),
            StringChunked::from_iter_values("query_channel".into(), blk.4.into_iter())
                .into_column(),
            StringChunked::from_iter_values("key_channel".into(), blk.5.into_iter()).into_column(),
            Float64Chunked::from_vec("mean_attention".into(), blk.6).into_column(),
        ],
    )?;
    Ok(RunComparison {
        heads: comparison,
        blocks: block_frame,
        least_similar,
    })
}

/// Checks that two runs can be compared: the same shape, and square attention (one sequence
/// of channel blocks for queries and keys). Returns the sequence length.
pub fn check_runs(
    run_a: &ingest::AttentionSource,
    run_b: &ingest::AttentionSource,
    path_a: &Path,
    path_b: &Path,
) -> Result<usize, IngestError> {
    if run_a.dims != run_b.dims {
        return Err(IngestError::invalid(
            path_b,
            format!(
                "shape {:?} does not match run A's {:?}",
                run_b.tensor.shape, run_a.tensor.shape
            ),
        ));
    }
    if run_a.dims.queries != run_a.dims.keys {
        return Err(IngestError::invalid(
            path_a,
            "compare needs square attention",
        ));
    }
    Ok(run_a.dims.keys)
}

/// A − B, element by element, of two matrices of the same size.
pub fn difference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Any channel lists, block and length: a permutation of the positions or an error.
    fn channel_lists(cases: u32) {
        let names = prop::collection::vec("[A-Z0-9']{0,3}", 0..8);
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
            ..Config::default()
        });
        runner
            .run(
                &(names.clone(), names, 0usize..5, 0usize..40),
                |(a, b, block, seq)| {
                    let p = Path::new("run.npy");
                    if let Ok(c) = ChannelBlocks::new(&a, &b, block, seq, p, p) {
                        let mut seen = c.b_position.clone();
                        seen.sort_unstable();
                        prop_assert_eq!(seen, (0..seq).collect::<Vec<_>>());
                    }
                    Ok(())
                },
            )
            .unwrap();
    }

    #[test]
    fn any_channel_lists_give_a_permutation_or_an_error() {
        channel_lists(3000);
    }

    #[test]
    #[ignore = "long run: 100,000 channel lists"]
    fn channel_lists_long_run() {
        channel_lists(100_000);
    }
}
