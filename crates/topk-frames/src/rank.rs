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

/// Fills `best` with the keys of the `k` best entries of `row` (restricted to `keys` when
/// given: the positions to consider, ascending), best first.
pub fn select_top(row: &[f32], keys: Option<&[u32]>, k: usize, best: &mut Vec<u64>) {
    best.clear();
    let n = keys.map_or(row.len(), <[u32]>::len);
    let k = k.min(n);
    if k == 0 {
        return;
    }
    if k * 4 >= n {
        match keys {
            Some(ks) => best.extend(ks.iter().map(|&p| rank_key(row[p as usize], p))),
            None => best.extend(row.iter().enumerate().map(|(p, &x)| rank_key(x, p as u32))),
        }
        best.sort_unstable_by(|a, b| b.cmp(a));
        best.truncate(k);
        return;
    }
    let push = |key: u64, best: &mut Vec<u64>| {
        if best.len() == k {
            if key <= best[k - 1] {
                return;
            }
            best.pop();
        }
        let at = best.partition_point(|&b| b > key);
        best.insert(at, key);
    };
    match keys {
        Some(ks) => {
            for &p in ks {
                push(rank_key(row[p as usize], p), best);
            }
        }
        None => {
            for (p, &x) in row[..k].iter().enumerate() {
                push(rank_key(x, p as u32), best);
            }
            // The k-th best score so far: a later entry must beat it strictly (an equal
            // score at a higher position ranks lower), which a float compare decides without
            // building keys. NaN thresholds (fewer than k numbers seen) take the key path.
            let mut threshold = row[key_position(best[k - 1]) as usize];
            for (p, &x) in row.iter().enumerate().skip(k) {
                if x > threshold || threshold.is_nan() {
                    let key = rank_key(x, p as u32);
                    if key > best[k - 1] {
                        push(key, best);
                        threshold = row[key_position(best[k - 1]) as usize];
                    }
                }
            }
        }
    }
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
        let mut best = Vec::new();
        select_top(&row, None, 7, &mut best);
        let got: Vec<u32> = best.iter().map(|&k| key_position(k)).collect();
        assert_eq!(got, vec![1, 4, 0, 2, 5, 6, 3]);
        select_top(&row, Some(&[0, 2, 4]), 2, &mut best);
        let got: Vec<u32> = best.iter().map(|&k| key_position(k)).collect();
        assert_eq!(got, vec![4, 0]);
    }

    proptest! {
        #[test]
        fn matches_a_stable_sort(
            row in prop::collection::vec(prop_oneof![Just(0.5f32), Just(0.0f32), Just(-0.0f32), -1.0f32..1.0, Just(f32::NAN)], 1..200),
            k in 1usize..60,
            masked in any::<bool>(),
        ) {
            let keys: Vec<u32> = (0..row.len() as u32).filter(|p| !masked || p % 3 != 1).collect();
            let mut best = Vec::new();
            select_top(&row, masked.then_some(&keys[..]), k, &mut best);
            let got: Vec<u32> = best.iter().map(|&k| key_position(k)).collect();
            let mut want = by_plain_sort(&row, &keys);
            want.truncate(k);
            prop_assert_eq!(got, want);
        }
    }
}
