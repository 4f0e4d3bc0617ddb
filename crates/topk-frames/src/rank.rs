//! Ranking keys and the per-row selection kernel.
//!
//! A score and its position pack into one `u64` whose natural order is the contract's
//! ranking order: higher score first, ties (equal f32, with -0.0 = +0.0) to the lower
//! position, NaN after every number. Sorting or selecting on these keys needs no fix-up.

/// Order-preserving map of an f32 to u32 (NaN lowest, -0.0 equal to +0.0).
#[inline(always)]
pub fn order_bits(x: f32) -> u32 {
    if x.is_nan() {
        return 0;
    }
    let b = (x + 0.0).to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Ranking key: larger key = better rank.
#[inline(always)]
pub fn rank_key(score: f32, position: u32) -> u64 {
    ((order_bits(score) as u64) << 32) | (!position) as u64
}

/// Position encoded in a key.
#[inline(always)]
pub fn key_position(key: u64) -> u32 {
    !(key as u32)
}

/// Reused buffers of [`select_top`]; `best` holds the result.
#[derive(Debug, Default)]
pub struct Selection {
    /// Keys of the k best entries, best first.
    pub best: Vec<u64>,
    maxima: Vec<f32>,
}

const BLOCK: usize = 16;

/// Fills `sel.best` with the keys of the `k` best entries of `row` (restricted to `keys`
/// when given: the positions to consider, ascending), best first.
pub fn select_top(row: &[f32], keys: Option<&[u32]>, k: usize, sel: &mut Selection) {
    let best = &mut sel.best;
    best.clear();
    let n = keys.map_or(row.len(), <[u32]>::len);
    let k = k.min(n);
    if k == 0 {
        return;
    }
    match keys {
        Some(ks) => best.extend(ks.iter().map(|&p| rank_key(row[p as usize], p))),
        None if k * 4 >= n || row.len() / BLOCK < k => {
            best.extend(row.iter().enumerate().map(|(p, &x)| rank_key(x, p as u32)))
        }
        None => {
            if !candidates_by_block_maxima(row, k, &mut sel.maxima, best) {
                best.clear();
                best.extend(row.iter().enumerate().map(|(p, &x)| rank_key(x, p as u32)));
            }
        }
    }
    if best.len() > k {
        best.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        best.truncate(k);
    }
    best.sort_unstable_by(|a, b| b.cmp(a));
}

/// [`select_top`] for a sparse row: `keys`/`scores` are its listed entries (keys ascending,
/// all valid; every entry that is not 0 is listed), and every other key of `valid` scores 0.
/// Only the first k unlisted keys can rank among the best k, so a row costs O(entries + k),
/// not O(valid keys).
pub fn select_top_sparse(
    keys: &[u32],
    scores: &[f32],
    valid: &[u32],
    k: usize,
    sel: &mut Selection,
) {
    let k = k.min(valid.len());
    if k == 0 {
        sel.best.clear();
        return;
    }
    // Usually k listed entries are positive: then no 0, listed or not, ranks among them, and
    // the selection runs on the scores alone with their indices as positions (ascending as
    // the keys are, so ties go the same way).
    if k <= scores.len() {
        select_top(scores, None, k, sel);
        if scores[key_position(sel.best[k - 1]) as usize] > 0.0 {
            for key in &mut sel.best {
                let j = key_position(*key) as usize;
                *key = rank_key(scores[j], keys[j]);
            }
            return;
        }
    }
    let best = &mut sel.best;
    best.clear();
    best.extend(keys.iter().zip(scores).map(|(&p, &x)| rank_key(x, p)));
    let mut listed = keys.iter().peekable();
    let zeros = valid.iter().filter(|&&p| {
        while listed.next_if(|&&l| l < p).is_some() {}
        listed.peek() != Some(&&p)
    });
    best.extend(zeros.take(k).map(|&p| rank_key(0.0, p)));
    if best.len() > k {
        best.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        best.truncate(k);
    }
    best.sort_unstable_by(|a, b| b.cmp(a));
}

/// Two vectorisable passes instead of a heap: the k-th largest of the blocks' maxima is a
/// score that at least k entries reach, so every entry of the top k is ≥ it. The second
/// pass keeps the keys of those entries — usually little more than k. Returns false when
/// fewer than k numbers qualify (a row with NaN), for the caller to rank every entry.
fn candidates_by_block_maxima(
    row: &[f32],
    k: usize,
    maxima: &mut Vec<f32>,
    cand: &mut Vec<u64>,
) -> bool {
    maxima.clear();
    // `if x > m` skips NaN, so a block of NaN only has the maximum -inf.
    maxima.extend(row.chunks(BLOCK).map(|b| {
        b.iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }));
    let (_, &mut floor, _) = maxima.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    for (b, block) in row.chunks(BLOCK).enumerate() {
        if block.iter().fold(false, |hit, &x| hit | (x >= floor)) {
            for (i, &x) in block.iter().enumerate() {
                if x >= floor {
                    cand.push(rank_key(x, (b * BLOCK + i) as u32));
                }
            }
        }
    }
    cand.len() >= k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The contract's order by a plain stable sort: score descending, NaN last, ties to the
    /// lower position.
    fn by_plain_sort(row: &[f32], keys: &[u32]) -> Vec<u32> {
        let mut idx: Vec<u32> = keys.to_vec();
        idx.sort_by(|&a, &b| {
            let (x, y) = (row[a as usize], row[b as usize]);
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => y.partial_cmp(&x).unwrap(),
            }
        });
        idx
    }

    #[test]
    fn hand_worked_row() {
        let row = [0.1, 0.4, 0.1, f32::NAN, 0.4, -0.0, 0.0];
        let mut sel = Selection::default();
        select_top(&row, None, 7, &mut sel);
        let got: Vec<u32> = sel.best.iter().map(|&k| key_position(k)).collect();
        assert_eq!(got, vec![1, 4, 0, 2, 5, 6, 3]);
        select_top(&row, Some(&[0, 2, 4]), 2, &mut sel);
        let got: Vec<u32> = sel.best.iter().map(|&k| key_position(k)).collect();
        assert_eq!(got, vec![4, 0]);
    }

    proptest! {
        #[test]
        fn sparse_rows_rank_as_their_dense_rows(
            row in prop::collection::vec(prop_oneof![Just(0.0f32), Just(0.0f32), Just(-0.0f32), Just(0.5f32), -1.0f32..1.0, Just(f32::NAN)], 1..300),
            k in 1usize..400,
            masked in any::<bool>(),
        ) {
            let valid: Vec<u32> = (0..row.len() as u32).filter(|p| !masked || p % 3 != 1).collect();
            // Every entry that is not 0 is listed, and some zeros too.
            let (keys, scores): (Vec<u32>, Vec<f32>) = valid
                .iter()
                .filter(|&&p| row[p as usize] != 0.0 || p % 5 == 0)
                .map(|&p| (p, row[p as usize]))
                .unzip();
            let (mut dense, mut sparse) = (Selection::default(), Selection::default());
            select_top(&row, Some(&valid), k, &mut dense);
            select_top_sparse(&keys, &scores, &valid, k, &mut sparse);
            prop_assert_eq!(dense.best, sparse.best);
        }

        #[test]
        fn matches_a_stable_sort(
            row in prop::collection::vec(prop_oneof![Just(0.5f32), Just(0.0f32), Just(-0.0f32), -1.0f32..1.0, Just(f32::NAN)], 1..700),
            k in 1usize..60,
            masked in any::<bool>(),
        ) {
            let keys: Vec<u32> = (0..row.len() as u32).filter(|p| !masked || p % 3 != 1).collect();
            let mut sel = Selection::default();
            select_top(&row, masked.then_some(&keys[..]), k, &mut sel);
            let got: Vec<u32> = sel.best.iter().map(|&k| key_position(k)).collect();
            let mut want = by_plain_sort(&row, &keys);
            want.truncate(k);
            prop_assert_eq!(got, want);
        }
    }
}
