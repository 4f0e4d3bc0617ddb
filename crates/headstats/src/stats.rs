//! One row of statistics per (batch, layer, head), from one pass over its rows.

use ingest::{RowSource, SlabBuffer, SlabId};
use polars::prelude::*;
use rayon::prelude::*;

use crate::kernel;
use crate::Result;

/// Which tokens count as [CLS], [SEP] and punctuation for the `*_mass` columns.
#[derive(Debug, Clone)]
pub struct TokenClasses {
    pub cls: Vec<String>,
    pub sep: Vec<String>,
    pub punct: Vec<String>,
}

impl Default for TokenClasses {
    fn default() -> Self {
        let v = |s: &[&str]| s.iter().map(|t| t.to_string()).collect();
        TokenClasses {
            cls: v(&["[CLS]", "<s>"]),
            sep: v(&["[SEP]", "</s>"]),
            punct: v(&[".", ","]),
        }
    }
}

/// The statistics of one head. `None` where tokens are needed and none were given, or where
/// the head has no valid query.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadStats {
    pub slab: SlabId,
    pub entropy: f64,
    pub entropy_norm: f64,
    pub cls_entropy: f64,
    pub mean_distance: f64,
    pub self_mass: f64,
    pub prev_mass: f64,
    pub next_mass: f64,
    pub cls_mass: Option<f64>,
    pub sep_mass: Option<f64>,
    pub punct_mass: Option<f64>,
    pub sink_alpha0: f64,
    /// `sink_alpha0` above the threshold; `None` when α₀ is NaN.
    pub sink: Option<bool>,
    /// The largest entry, NaN skipped; `None` when the head has no number.
    pub max_attention: Option<f64>,
    /// The key with the largest column sum (lower position on ties), NaN sums skipped;
    /// `None` when every column sum is NaN.
    pub argmax_position: Option<u32>,
    pub prev_token_score: f64,
    pub duplicate_token_score: Option<f64>,
    pub induction_score: Option<f64>,
    pub causal: bool,
}

/// Per batch row: the key positions of each token class and, per valid query, its duplicate-
/// and induction-pattern keys (TransformerLens' detection patterns on the valid positions).
struct BatchKeys {
    classes: Option<[Vec<u32>; 3]>,
    duplicate: Option<Vec<Vec<u32>>>,
    induction: Option<Vec<Vec<u32>>>,
}

fn batch_keys(src: &impl RowSource, b: u32, classes: &TokenClasses) -> BatchKeys {
    let keys = src.valid_keys(b);
    let Some(tokens) = src.tokens() else {
        return BatchKeys {
            classes: None,
            duplicate: None,
            induction: None,
        };
    };
    let row = tokens.row(b as usize);
    let of = |set: &[String]| -> Vec<u32> {
        keys.iter()
            .copied()
            .filter(|&k| set.iter().any(|t| *t == row[k as usize]))
            .collect()
    };
    let valid = |p: u32| keys.binary_search(&p).is_ok();
    let queries = src.valid_queries(b);
    let duplicate = queries
        .iter()
        .map(|&q| {
            keys.iter()
                .copied()
                .filter(|&k| k < q && row[k as usize] == row[q as usize])
                .collect()
        })
        .collect();
    let induction = queries
        .iter()
        .map(|&q| {
            keys.iter()
                .copied()
                .filter(|&k| {
                    k >= 1 && k <= q && valid(k - 1) && row[k as usize - 1] == row[q as usize]
                })
                .collect()
        })
        .collect();
    BatchKeys {
        classes: Some([of(&classes.cls), of(&classes.sep), of(&classes.punct)]),
        duplicate: Some(duplicate),
        induction: Some(induction),
    }
}

/// Sums over the rows of one head.
#[derive(Default)]
struct Sums {
    rows: usize,
    entropy: f64,
    entropy_norm: (f64, usize),
    causal_entropy: f64,
    causal_entropy_norm: (f64, usize),
    first_entropy: (f64, f64),
    causal: bool,
    distance: f64,
    self_mass: f64,
    prev_mass: f64,
    next_mass: f64,
    classes: [f64; 3],
    alpha0: f64,
    max: f64,
    total: f64,
    duplicate: f64,
    induction: f64,
}

impl Sums {
    /// Row `i`'s smoothed entropy `h` over its `n` visible keys.
    fn add_entropy(&mut self, i: usize, h: f64, n: usize) {
        self.entropy += h;
        if let Some(v) = normalised(h, n) {
            self.entropy_norm.0 += v;
            self.entropy_norm.1 += 1;
        }
        if i == 0 {
            self.first_entropy.0 = h;
        }
    }

    /// Row `i`'s masses at the query `q`, its neighbours, the first valid key, the token
    /// classes and the head-detector patterns: `at(p)` is the row's score at position `p` (0
    /// off the valid keys), `sum_at(keys)` the sum of its scores at valid `keys`.
    fn add_masses(
        &mut self,
        bk: &BatchKeys,
        i: usize,
        q: u32,
        first_valid: Option<&u32>,
        at: impl Fn(i64) -> f64,
        sum_at: impl Fn(&[u32]) -> f64,
    ) {
        let q = q as i64;
        self.self_mass += at(q);
        self.prev_mass += at(q - 1);
        self.next_mass += at(q + 1);
        self.alpha0 += first_valid.map_or(0.0, |&k| at(k as i64));
        if let Some(classes) = &bk.classes {
            for (acc, set) in self.classes.iter_mut().zip(classes) {
                *acc += sum_at(set);
            }
        }
        let sum_of = |lists: &Option<Vec<Vec<u32>>>| lists.as_ref().map_or(0.0, |l| sum_at(&l[i]));
        self.duplicate += sum_of(&bk.duplicate);
        self.induction += sum_of(&bk.induction);
        self.rows += 1;
    }

    /// Row `i`'s entropy `h` over the `seen` keys up to its query (a causal head's).
    fn add_causal_entropy(&mut self, i: usize, h: f64, seen: usize) {
        self.causal_entropy += h;
        if let Some(v) = normalised(h, seen) {
            self.causal_entropy_norm.0 += v;
            self.causal_entropy_norm.1 += 1;
        }
        if i == 0 {
            self.first_entropy.1 = h;
        }
    }
}

/// Clark et al.'s smoothing: a' = 0.9999·a + 0.0001/n.
const SMOOTH_SCALE: f32 = 0.9999;
const SMOOTH_MASS: f32 = 1e-4;

/// Entropy divided by ln n; a row with a single visible key has no choice to measure, and is
/// left out of the mean (the first row of a causal head).
fn normalised(h: f64, n: usize) -> Option<f64> {
    (n > 1).then(|| h / (n as f64).ln())
}

/// Statistics of every selected head, in the source's slab order (parallel over heads; the
/// result does not depend on the thread count). `sink_threshold` sets the `sink` flag.
pub fn head_stats(
    src: &impl RowSource,
    classes: &TokenClasses,
    sink_threshold: f64,
) -> Result<Vec<HeadStats>> {
    let slabs = src.slabs();
    let mut batches: Vec<u32> = slabs.iter().map(|s| s.batch).collect();
    batches.dedup();
    let keys_of: Vec<(u32, BatchKeys)> = batches
        .iter()
        .map(|&b| (b, batch_keys(src, b, classes)))
        .collect();
    let one = |buf: &mut SlabBuffer, &id: &SlabId| -> Result<HeadStats> {
        let bk = &keys_of
            .iter()
            .find(|(b, _)| *b == id.batch)
            .expect("batch keys")
            .1;
        if src.has_sparse_rows() {
            one_head_sparse(src, id, bk, buf, sink_threshold)
        } else {
            one_head(src, id, bk, buf, sink_threshold)
        }
    };
    if src.is_seekable() {
        slabs
            .par_iter()
            .map_init(SlabBuffer::default, one)
            .collect()
    } else {
        let mut buf = SlabBuffer::default();
        slabs.iter().map(|id| one(&mut buf, id)).collect()
    }
}

/// The smoothed entropy term −s·ln s of an entry that is 0 before smoothing (s = the floor),
/// through the row kernel: the same logarithm (fused where the CPU has FMA) as the zeros of a
/// dense row get, so sparse and dense rows sum the same terms.
fn zero_entry_entropy(floor: f32) -> f64 {
    kernel::row_sums(&[0.0], None, 0, SMOOTH_SCALE, floor).entropy
}

/// [`one_head`] on sparse rows (Longformer's window): every statistic in O(entries) a row,
/// the n − m unlisted keys of a row (score 0) entering in closed form — m entries of the
/// smoothed entropy floor each, nothing in the sums, 0 in the maximum.
fn one_head_sparse(
    src: &impl RowSource,
    id: SlabId,
    bk: &BatchKeys,
    buf: &mut SlabBuffer,
    sink_threshold: f64,
) -> Result<HeadStats> {
    let valid = src.valid_keys(id.batch);
    let n = valid.len();
    let floor = SMOOTH_MASS / n as f32;
    let zero_entropy = zero_entry_entropy(floor);
    let mut col = vec![0f64; src.dims().keys];
    let mut s = Sums {
        causal: true,
        max: f64::NAN,
        ..Default::default()
    };
    let (mut keys, mut scores) = (Vec::new(), Vec::new());
    src.for_each_sparse_row(id, buf, |i, q, row| {
        let m = row.len();
        let at = |p: i64| u32::try_from(p).map_or(0.0, |p| row.score_at(p) as f64);
        let seen = valid.partition_point(|&k| k <= q);
        if s.causal && row.scores_above(q).any(|a| a != 0.0) {
            s.causal = false;
        }
        // Runs of consecutive keys (a window, a global key) go through the dense kernel.
        let mut sums = kernel::RowSums {
            max: f32::NAN,
            ..Default::default()
        };
        for (k0, part) in row.runs() {
            let run = kernel::row_sums(part, Some(k0), q, SMOOTH_SCALE, floor);
            sums.entropy += run.entropy;
            sums.total += run.total;
            sums.distance += run.distance;
            sums.max = sums.max.max(run.max);
            ingest::add_row_f64(&mut col[k0 as usize..k0 as usize + part.len()], part);
        }
        s.add_entropy(i, sums.entropy + (n - m) as f64 * zero_entropy, n);
        if s.causal {
            // Every listed key after q scores 0: the row's entries up to q, as one list.
            row.flatten_into(&mut keys, &mut scores);
            let listed_seen = row.listed_up_to(q);
            let floor_c = SMOOTH_MASS / seen.max(1) as f32;
            let hc = kernel::row_sums(&scores[..listed_seen], None, q, SMOOTH_SCALE, floor_c)
                .entropy
                + (seen - listed_seen) as f64 * zero_entry_entropy(floor_c);
            s.add_causal_entropy(i, hc, seen);
        }
        s.total += sums.total;
        let row_max = if m < n { sums.max.max(0.0) } else { sums.max };
        s.max = s.max.max(row_max as f64);
        s.distance += sums.distance;
        s.add_masses(bk, i, q, valid.first(), at, |wanted| row.sum_at(wanted));
    })?;
    Ok(finish(id, &s, valid, &col, bk, sink_threshold))
}

fn one_head(
    src: &impl RowSource,
    id: SlabId,
    bk: &BatchKeys,
    buf: &mut SlabBuffer,
    sink_threshold: f64,
) -> Result<HeadStats> {
    let keys = src.valid_keys(id.batch);
    let n = keys.len();
    let is_key = |p: i64| p >= 0 && keys.binary_search(&(p as u32)).is_ok();
    let mut col = vec![0f64; src.dims().keys];
    let mut s = Sums {
        causal: true,
        max: f64::NAN,
        ..Default::default()
    };
    // Contiguous valid keys (the usual right-padding) are read as one slice.
    let first_key = keys
        .first()
        .copied()
        .filter(|&k0| keys.last() == Some(&(k0 + n as u32 - 1)));
    let mut gathered = Vec::new();
    src.for_each_query_row(id, buf, |i, q, row| {
        let qi = q as i64;
        let values: &[f32] = match first_key {
            Some(k0) => &row[k0 as usize..k0 as usize + n],
            None => {
                gathered.clear();
                gathered.extend(keys.iter().map(|&k| row[k as usize]));
                &gathered
            }
        };
        // Valid keys up to and including q, and whether everything beyond q is exactly 0.
        let seen = keys.partition_point(|&k| k <= q);
        if s.causal && values[seen..].iter().any(|&a| a != 0.0) {
            s.causal = false;
        }
        let sums = kernel::row_sums(values, first_key, q, SMOOTH_SCALE, SMOOTH_MASS / n as f32);
        s.add_entropy(i, sums.entropy, n);
        if s.causal {
            let floor = SMOOTH_MASS / seen.max(1) as f32;
            let hc = kernel::row_sums(&values[..seen], None, q, SMOOTH_SCALE, floor).entropy;
            s.add_causal_entropy(i, hc, seen);
        }
        s.total += sums.total;
        s.max = s.max.max(sums.max as f64);
        match first_key {
            Some(k0) => {
                s.distance += sums.distance;
                ingest::add_row_f64(&mut col[k0 as usize..k0 as usize + n], values);
            }
            None => {
                for (&k, &a) in keys.iter().zip(values) {
                    s.distance += a as f64 * (qi - k as i64).unsigned_abs() as f64;
                    col[k as usize] += a as f64;
                }
            }
        }
        let at = |p: i64| {
            if is_key(p) {
                row[p as usize] as f64
            } else {
                0.0
            }
        };
        s.add_masses(bk, i, q, keys.first(), at, |wanted| {
            wanted.iter().map(|&k| row[k as usize] as f64).sum::<f64>()
        });
    })?;
    Ok(finish(id, &s, keys, &col, bk, sink_threshold))
}

fn finish(
    id: SlabId,
    s: &Sums,
    keys: &[u32],
    col: &[f64],
    bk: &BatchKeys,
    threshold: f64,
) -> HeadStats {
    let rows = s.rows.max(1) as f64;
    let mean = |v: f64| if s.rows == 0 { f64::NAN } else { v / rows };
    let causal = s.causal && s.rows > 0;
    let (entropy, entropy_norm, cls_entropy) = if causal {
        (s.causal_entropy, s.causal_entropy_norm, s.first_entropy.1)
    } else {
        (s.entropy, s.entropy_norm, s.first_entropy.0)
    };
    let argmax_position = keys
        .iter()
        .copied()
        .filter(|&k| !col[k as usize].is_nan())
        .fold(None, |best: Option<u32>, k| match best {
            Some(b) if col[b as usize] >= col[k as usize] => Some(b),
            _ => Some(k),
        });
    let ratio = |v: f64| v / s.total;
    let alpha0 = mean(s.alpha0);
    HeadStats {
        slab: id,
        entropy: mean(entropy),
        entropy_norm: entropy_norm.0 / entropy_norm.1 as f64,
        cls_entropy: if s.rows == 0 { f64::NAN } else { cls_entropy },
        mean_distance: mean(s.distance),
        self_mass: mean(s.self_mass),
        prev_mass: mean(s.prev_mass),
        next_mass: mean(s.next_mass),
        cls_mass: bk.classes.as_ref().map(|_| mean(s.classes[0])),
        sep_mass: bk.classes.as_ref().map(|_| mean(s.classes[1])),
        punct_mass: bk.classes.as_ref().map(|_| mean(s.classes[2])),
        sink_alpha0: alpha0,
        sink: (!alpha0.is_nan()).then_some(alpha0 > threshold),
        max_attention: (!s.max.is_nan()).then_some(s.max),
        argmax_position,
        prev_token_score: ratio(s.prev_mass),
        duplicate_token_score: bk.duplicate.as_ref().map(|_| ratio(s.duplicate)),
        induction_score: bk.induction.as_ref().map(|_| ratio(s.induction)),
        causal,
    }
}

/// The `headstats` frame: `batch, layer, head`, then every statistic.
pub fn stats_frame(stats: &[HeadStats]) -> Result<DataFrame> {
    let n = stats.len();
    let f = |name: &str, get: &dyn Fn(&HeadStats) -> f64| {
        Float64Chunked::from_vec(name.into(), stats.iter().map(get).collect()).into_column()
    };
    let opt = |name: &str, get: &dyn Fn(&HeadStats) -> Option<f64>| {
        Float64Chunked::from_iter_options(name.into(), stats.iter().map(get)).into_column()
    };
    let flag = |name: &str, get: &dyn Fn(&HeadStats) -> bool| {
        BooleanChunked::from_slice(name.into(), &stats.iter().map(get).collect::<Vec<_>>())
            .into_column()
    };
    Ok(DataFrame::new(
        n,
        vec![
            UInt32Chunked::from_vec("batch".into(), stats.iter().map(|s| s.slab.batch).collect())
                .into_column(),
            UInt16Chunked::from_vec("layer".into(), stats.iter().map(|s| s.slab.layer).collect())
                .into_column(),
            UInt16Chunked::from_vec("head".into(), stats.iter().map(|s| s.slab.head).collect())
                .into_column(),
            f("entropy", &|s| s.entropy),
            f("entropy_norm", &|s| s.entropy_norm),
            f("cls_entropy", &|s| s.cls_entropy),
            f("mean_distance", &|s| s.mean_distance),
            f("self_mass", &|s| s.self_mass),
            f("prev_mass", &|s| s.prev_mass),
            f("next_mass", &|s| s.next_mass),
            opt("cls_mass", &|s| s.cls_mass),
            opt("sep_mass", &|s| s.sep_mass),
            opt("punct_mass", &|s| s.punct_mass),
            f("sink_alpha0", &|s| s.sink_alpha0),
            BooleanChunked::from_iter_options("sink".into(), stats.iter().map(|s| s.sink))
                .into_column(),
            opt("max_attention", &|s| s.max_attention),
            UInt32Chunked::from_iter_options(
                "argmax_position".into(),
                stats.iter().map(|s| s.argmax_position),
            )
            .into_column(),
            f("prev_token_score", &|s| s.prev_token_score),
            opt("duplicate_token_score", &|s| s.duplicate_token_score),
            opt("induction_score", &|s| s.induction_score),
            flag("causal", &|s| s.causal),
        ],
    )?)
}
