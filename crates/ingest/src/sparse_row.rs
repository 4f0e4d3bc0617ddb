//! One query's row in sparse form, as a source lends it without copying.

use std::ops::Range;

/// One query's row in sparse form (see
/// [`RowSource::for_each_sparse_row`](crate::RowSource::for_each_sparse_row)): its listed
/// entries in ascending key order, in three parts — a few listed entries `before`, a `run` of
/// scores at the consecutive keys `run_start, run_start + 1, …`, and a few listed entries
/// `after`. A Longformer window row is its global keys before the window, the window as
/// stored in the sliding tensor, and the global keys after it: nothing is copied. Every key
/// of `before` is below `run_start`; every key of `after` is at or past the run's end; all
/// listed keys are valid. Scores may be -0.0 (read as 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct SparseRow<'a> {
    pub before_keys: &'a [u32],
    pub before_scores: &'a [f32],
    pub run_start: u32,
    pub run: &'a [f32],
    pub after_keys: &'a [u32],
    pub after_scores: &'a [f32],
}

impl<'a> SparseRow<'a> {
    /// A row given as listed entries only (`keys` ascending): an empty run at key 0, and
    /// every entry after it.
    pub fn listed(keys: &'a [u32], scores: &'a [f32]) -> Self {
        SparseRow {
            after_keys: keys,
            after_scores: scores,
            ..SparseRow::default()
        }
    }

    /// The number of listed entries.
    pub fn len(&self) -> usize {
        self.before_keys.len() + self.run.len() + self.after_keys.len()
    }

    /// True when nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys of the run.
    pub fn run_keys(&self) -> Range<u32> {
        self.run_start..self.run_start + self.run.len() as u32
    }

    /// The runs of consecutive listed keys as (first key, scores), in ascending key order.
    pub fn runs(&self) -> impl Iterator<Item = (u32, &'a [f32])> + 'a {
        let part = |keys: &'a [u32], scores: &'a [f32]| {
            key_runs(keys).map(move |r| (keys[r.start], &scores[r]))
        };
        let run = (!self.run.is_empty()).then_some((self.run_start, self.run));
        part(self.before_keys, self.before_scores)
            .chain(run)
            .chain(part(self.after_keys, self.after_scores))
    }

    /// Every listed entry as (key, score), in ascending key order.
    pub fn entries(&self) -> impl Iterator<Item = (u32, f32)> + 'a {
        self.runs()
            .flat_map(|(first, scores)| (first..).zip(scores.iter().copied()))
    }

    /// The listed entries copied into `keys` and `scores` (cleared first), -0.0 read as 0.
    pub fn flatten_into(&self, keys: &mut Vec<u32>, scores: &mut Vec<f32>) {
        keys.clear();
        scores.clear();
        for (k, v) in self.entries() {
            keys.push(k);
            scores.push(0.0 + v);
        }
    }

    /// The score at key `p`; 0 when `p` is not listed.
    pub fn score_at(&self, p: u32) -> f32 {
        let listed =
            |keys: &[u32], scores: &[f32]| keys.binary_search(&p).map_or(0.0, |j| scores[j]);
        if self.run_keys().contains(&p) {
            self.run[(p - self.run_start) as usize]
        } else if p < self.run_start {
            listed(self.before_keys, self.before_scores)
        } else {
            listed(self.after_keys, self.after_scores)
        }
    }

    /// How many listed keys are ≤ `p`.
    pub fn listed_up_to(&self, p: u32) -> usize {
        let before = self.before_keys.partition_point(|&k| k <= p);
        if p < self.run_start {
            return before;
        }
        let run = ((p - self.run_start) as usize + 1).min(self.run.len());
        before + run + self.after_keys.partition_point(|&k| k <= p)
    }

    /// The scores of the listed keys above `p`, in key order.
    pub fn scores_above(&self, p: u32) -> impl Iterator<Item = f32> + 'a {
        let cut = |keys: &[u32]| keys.partition_point(|&k| k <= p);
        let run_from = (p.saturating_add(1).max(self.run_start) - self.run_start) as usize;
        self.before_scores[cut(self.before_keys)..]
            .iter()
            .chain(&self.run[run_from.min(self.run.len())..])
            .chain(&self.after_scores[cut(self.after_keys)..])
            .copied()
    }

    /// Σ of the scores at `wanted` (ascending keys), in key order, f64: unlisted keys add 0.
    pub fn sum_at(&self, wanted: &[u32]) -> f64 {
        let listed = |mut sum: f64, keys: &[u32], scores: &[f32], wanted: &[u32]| {
            let mut j = 0;
            for &w in wanted {
                while j < keys.len() && keys[j] < w {
                    j += 1;
                }
                if j < keys.len() && keys[j] == w {
                    sum += scores[j] as f64;
                }
            }
            sum
        };
        let run = self.run_keys();
        let lo = wanted.partition_point(|&w| w < run.start);
        let hi = wanted.partition_point(|&w| w < run.end);
        let mut sum = listed(0.0, self.before_keys, self.before_scores, &wanted[..lo]);
        for &w in &wanted[lo..hi] {
            sum += self.run[(w - run.start) as usize] as f64;
        }
        listed(sum, self.after_keys, self.after_scores, &wanted[hi..])
    }
}

/// The runs of consecutive keys in `keys` (ascending, distinct) as index ranges, first run
/// first. A run starting at `start` ends before the smallest j with keys[j] − keys[start] ≠
/// j − start, a condition that holds from some j on, so each run costs one binary search: a
/// Longformer row (a window and a few global keys) is a handful of runs of O(log m) each.
fn key_runs(keys: &[u32]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start == keys.len() {
            return None;
        }
        let first = keys[start] as usize;
        let breaks_at = |j: usize| keys[j] as usize - first != j - start;
        let (mut lo, mut hi) = (start + 1, keys.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if breaks_at(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let run = start..lo;
        start = lo;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_split_row_reads_as_its_listed_entries(
            keys in prop::collection::btree_set(0u32..200, 0..60),
            cut in (0usize..60, 0usize..60),
            p in 0u32..210,
        ) {
            // The same entries as one list and as before/run/after, where the run is the
            // longest stretch of consecutive keys from the cut on.
            let keys: Vec<u32> = keys.into_iter().collect();
            let scores: Vec<f32> = keys.iter().map(|&k| k as f32 * 0.5 - 30.0).collect();
            let flat = SparseRow::listed(&keys, &scores);
            let start = cut.0.min(keys.len());
            let end = key_runs(&keys[start..]).next().map_or(start, |r| start + r.end);
            let split = SparseRow {
                before_keys: &keys[..start],
                before_scores: &scores[..start],
                run_start: keys.get(start).copied().unwrap_or_else(|| keys.last().map_or(0, |&k| k + 1)),
                run: &scores[start..end],
                after_keys: &keys[end..],
                after_scores: &scores[end..],
            };
            let wanted: Vec<u32> = (0..210).filter(|w| w % (cut.1 as u32 + 1) == 0).collect();
            for row in [flat, split] {
                prop_assert_eq!(row.len(), keys.len());
                let entries: Vec<(u32, f32)> = row.entries().collect();
                let want: Vec<(u32, f32)> = keys.iter().copied().zip(scores.iter().copied()).collect();
                prop_assert_eq!(entries, want);
                let at = keys.binary_search(&p).map_or(0.0, |j| scores[j]);
                prop_assert_eq!(row.score_at(p), at);
                prop_assert_eq!(row.listed_up_to(p), keys.partition_point(|&k| k <= p));
                let above: Vec<f32> = row.scores_above(p).collect();
                prop_assert_eq!(&above[..], &scores[keys.partition_point(|&k| k <= p)..]);
                let sum: f64 = wanted.iter().map(|&w| keys.binary_search(&w).map_or(0.0, |j| scores[j] as f64)).sum();
                prop_assert_eq!(row.sum_at(&wanted), sum);
                for (first, part) in row.runs() {
                    let j = keys.binary_search(&first).unwrap();
                    prop_assert_eq!(&keys[j..j + part.len()], &(first..first + part.len() as u32).collect::<Vec<_>>()[..]);
                }
            }
        }
    }
}
