//! Ranking keys and the per-row selection kernel.
//!
//! A score and its position pack into one `u64` whose natural order is the contract's
//! ranking order: higher score first, ties (equal f32, with -0.0 = +0.0) to the lower
//! position, NaN after every number. Sorting or selecting on these keys needs no fix-up.

use ingest::SparseRow;

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

/// The score a key was made from, -0.0 read as +0.0; `None` for NaN, whose bits a key does
/// not keep.
#[inline(always)]
pub fn key_score(key: u64) -> Option<f32> {
    match (key >> 32) as u32 {
        0 => None,
        b if b & 0x8000_0000 != 0 => Some(f32::from_bits(b & 0x7fff_ffff)),
        b => Some(f32::from_bits(!b)),
    }
}

/// Reused buffers of [`select_top`]; `best` holds the result.
#[derive(Debug, Default)]
pub struct Selection {
    /// Keys of the k best entries, best first.
    pub best: Vec<u64>,
    maxima: Vec<f32>,
    /// A lent sparse row copied into a list, when it must be.
    listed_keys: Vec<u32>,
    listed_scores: Vec<f32>,
}

/// Entries a candidate check looks at together (one vectorised comparison each).
const BLOCK: usize = 16;

/// Lanes of [`candidates_by_lane_maxima`] for `k`: two to four per wanted key, so that the
/// floor is a high score and few entries beyond the k best reach it (on led16k, more lanes
/// cost more in finding the floor than they save in candidates).
fn lanes_for(k: usize) -> usize {
    (2 * k).next_power_of_two().max(BLOCK)
}

/// Fills `sel.best` with the keys of the `k` best entries of `row` (restricted to `keys`
/// when given: the positions to consider, ascending), best first.
pub fn select_top(row: &[f32], keys: Option<&[u32]>, k: usize, sel: &mut Selection) {
    sel.best.clear();
    let n = keys.map_or(row.len(), <[u32]>::len);
    let k = k.min(n);
    if k == 0 {
        return;
    }
    match keys {
        Some(ks) => sel
            .best
            .extend(ks.iter().map(|&p| rank_key(row[p as usize], p))),
        None => {
            if !push_candidates(row, 0, k, sel) {
                sel.best.clear();
                sel.best
                    .extend(row.iter().enumerate().map(|(p, &x)| rank_key(x, p as u32)));
            }
        }
    }
    keep_best(&mut sel.best, k);
}

/// Pushes onto `sel.best` the keys of the entries of `row` (at positions `offset + i`) that
/// can be among its k best: every entry of a short row, else those that reach the
/// lane-maxima floor. False when fewer than k qualify (a row with NaN), some pushed already.
fn push_candidates(row: &[f32], offset: u32, k: usize, sel: &mut Selection) -> bool {
    if row.len() < 2 * lanes_for(k) {
        sel.best
            .extend((offset..).zip(row).map(|(p, &x)| rank_key(x, p)));
        return true;
    }
    candidates_by_lane_maxima(row, offset, k, sel)
}

/// Sorts `keys` (distinct) best first and keeps `k` of them: a few are ranked by counting,
/// many are cut to k first and sorted.
fn keep_best(keys: &mut Vec<u64>, k: usize) {
    if keys.len() <= COUNTED {
        rank_by_counting(keys);
        keys.truncate(k);
        return;
    }
    if keys.len() > k {
        keys.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        keys.truncate(k);
    }
    keys.sort_unstable_by(|a, b| b.cmp(a));
    keys.truncate(k);
}

/// The most keys [`rank_by_counting`] takes.
const COUNTED: usize = 32;

/// Sorts at most [`COUNTED`] distinct keys best first by counting, for each, the keys above
/// it: its place. n² comparisons, but vectorised and without a branch to mispredict, where an
/// insertion sort of the 12–20 candidates of a row mispredicts about every other comparison.
fn rank_by_counting(keys: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { rank_by_counting_avx2(keys) };
    }
    rank_by_counting_portable(keys);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rank_by_counting_avx2(keys: &mut [u64]) {
    rank_by_counting_portable(keys);
}

#[inline(always)]
fn rank_by_counting_portable(keys: &mut [u64]) {
    let mut placed = [0u64; COUNTED];
    for &key in keys.iter() {
        let above = keys
            .iter()
            .map(|&other| usize::from(other > key))
            .sum::<usize>();
        placed[above] = key;
    }
    keys.copy_from_slice(&placed[..keys.len()]);
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
    keep_best(best, k);
}

/// [`select_top_sparse`] for a row as a source lends it: when its run holds k positive
/// entries, the candidates are the run's entries that reach the lane-maxima floor (as in
/// [`select_top`]) and the few listed entries around it, and nothing is copied; otherwise
/// (a short run, NaN, fewer than k positive scores) the row is listed and ranked whole.
pub fn select_top_sparse_row(row: SparseRow<'_>, valid: &[u32], k: usize, sel: &mut Selection) {
    let k = k.min(valid.len());
    if k > 0 && row.run.len() >= k {
        sel.best.clear();
        if push_candidates(row.run, row.run_start, k, sel) {
            let best = &mut sel.best;
            let around = [
                (row.before_keys, row.before_scores),
                (row.after_keys, row.after_scores),
            ];
            for (keys, scores) in around {
                best.extend(keys.iter().zip(scores).map(|(&p, &x)| rank_key(x, p)));
            }
            keep_best(best, k);
            if key_score(best[k - 1]).is_some_and(|x| x > 0.0) {
                return;
            }
        }
    }
    if row.run.is_empty() && row.before_keys.is_empty() {
        return select_top_sparse(row.after_keys, row.after_scores, valid, k, sel);
    }
    let (mut keys, mut scores) = (
        std::mem::take(&mut sel.listed_keys),
        std::mem::take(&mut sel.listed_scores),
    );
    row.flatten_into(&mut keys, &mut scores);
    select_top_sparse(&keys, &scores, valid, k, sel);
    (sel.listed_keys, sel.listed_scores) = (keys, scores);
}

/// Two vectorisable passes instead of a heap. Entry i belongs to lane i mod L; the k-th
/// largest of the L lanes' maxima is a score that at least k entries (of k different lanes)
/// reach, so every entry of the top k is ≥ it. The maxima are taken column-wise over rows
/// of L entries (independent lanes, so the compiler vectorises the pass), and the second
/// pass keeps the keys of the entries ≥ the floor (entry i at position `offset + i`) —
/// usually little more than k. Returns false when fewer than k numbers qualify (a row with
/// NaN), for the caller to rank every entry.
fn candidates_by_lane_maxima(row: &[f32], offset: u32, k: usize, sel: &mut Selection) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("popcnt")
    {
        // SAFETY: the CPU has AVX-512F and POPCNT, checked just above.
        return unsafe { candidates_avx512(row, offset, k, sel) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { candidates_avx2(row, offset, k, sel) };
    }
    candidates(row, offset, k, sel)
}

/// [`candidates`] compiled for AVX2: eight lanes a comparison instead of four, the same
/// results (maxima and comparisons are exact).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn candidates_avx2(row: &[f32], offset: u32, k: usize, sel: &mut Selection) -> bool {
    candidates(row, offset, k, sel)
}

/// [`candidates`] compiled for AVX-512, without a branch per block: each block's hits are
/// one mask register, and the positions it selects are compressed into a small buffer (a
/// register compress and a full store, however many hit) whose keys are made afterwards.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn candidates_avx512(row: &[f32], offset: u32, k: usize, sel: &mut Selection) -> bool {
    use std::arch::x86_64::{
        _mm512_add_epi32, _mm512_cmp_ps_mask, _mm512_loadu_ps, _mm512_maskz_compress_epi32,
        _mm512_set1_epi32, _mm512_set1_ps, _mm512_setr_epi32, _mm512_storeu_si512, _CMP_GE_OQ,
    };
    const SEGMENT: usize = 16 * BLOCK;
    let Selection {
        best: cand, maxima, ..
    } = sel;
    let start = cand.len();
    // SAFETY (the three calls): the CPU has AVX-512F, as this function requires.
    let floor = match lanes_for(k) {
        16 => unsafe { floor_by_registers::<1>(row, k) },
        32 => unsafe { floor_by_registers::<2>(row, k) },
        64 => unsafe { floor_by_registers::<4>(row, k) },
        _ => lane_floor(row, k, maxima),
    };
    let f = _mm512_set1_ps(floor);
    let step = _mm512_set1_epi32(BLOCK as i32);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    // Room for a segment's block hits and one more full store.
    let mut hits = [0u32; SEGMENT + BLOCK];
    for (s, segment) in row.chunks(SEGMENT).enumerate() {
        let first = s * SEGMENT;
        let mut at = _mm512_add_epi32(_mm512_set1_epi32(first as i32), lanes);
        let mut n = 0;
        let mut blocks = segment.chunks_exact(BLOCK);
        for block in &mut blocks {
            // SAFETY: a block is 16 floats; n ≤ SEGMENT − BLOCK before a block's store, so
            // the 16 lanes written at n stay inside `hits`.
            unsafe {
                let m = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_loadu_ps(block.as_ptr()), f);
                let packed = _mm512_maskz_compress_epi32(m, at);
                _mm512_storeu_si512(hits.as_mut_ptr().add(n).cast(), packed);
                n += m.count_ones() as usize;
            }
            at = _mm512_add_epi32(at, step);
        }
        cand.extend(
            hits[..n]
                .iter()
                .map(|&i| rank_key(row[i as usize], offset + i)),
        );
        let end = offset as usize + first + segment.len();
        push_tail(cand, blocks.remainder(), floor, end);
    }
    cand.len() - start >= k
}

/// [`floor_by_lanes`] for 16·R lanes in R AVX-512 registers: the same maxima (`vmaxps`
/// keeps the running maximum where the entry is NaN, as `if x > m` does), counted with
/// masked adds, so the same floor.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn floor_by_registers<const R: usize>(row: &[f32], k: usize) -> f32 {
    use std::arch::x86_64::{
        _mm512_cmp_ps_mask, _mm512_cmpge_epi32_mask, _mm512_loadu_ps, _mm512_mask_add_epi32,
        _mm512_mask_max_ps, _mm512_max_ps, _mm512_reduce_max_ps, _mm512_set1_epi32, _mm512_set1_ps,
        _mm512_setzero_si512, _mm512_storeu_ps, _CMP_LE_OQ,
    };
    let mut lanes = [_mm512_set1_ps(f32::NEG_INFINITY); R];
    let mut parts = row.chunks_exact(BLOCK * R);
    for part in &mut parts {
        for (r, m) in lanes.iter_mut().enumerate() {
            // SAFETY: a part is 16·R floats; register r loads its r-th 16.
            *m = _mm512_max_ps(unsafe { _mm512_loadu_ps(part.as_ptr().add(BLOCK * r)) }, *m);
        }
    }
    let mut maxima = [f32::NEG_INFINITY; 64];
    for (r, m) in lanes.iter().enumerate() {
        // SAFETY: 16·R ≤ 64 floats are stored.
        unsafe { _mm512_storeu_ps(maxima.as_mut_ptr().add(BLOCK * r), *m) };
    }
    for (m, &x) in maxima.iter_mut().zip(parts.remainder()) {
        *m = if x > *m { x } else { *m };
    }
    for (r, m) in lanes.iter_mut().enumerate() {
        // SAFETY: as the stores above.
        *m = unsafe { _mm512_loadu_ps(maxima.as_ptr().add(BLOCK * r)) };
    }
    let (one, mut reached) = (_mm512_set1_epi32(1), [_mm512_setzero_si512(); R]);
    for &x in &maxima[..BLOCK * R] {
        let x = _mm512_set1_ps(x);
        for (c, &m) in reached.iter_mut().zip(&lanes) {
            *c = _mm512_mask_add_epi32(*c, _mm512_cmp_ps_mask::<_CMP_LE_OQ>(m, x), *c, one);
        }
    }
    let (k, mut floor) = (
        _mm512_set1_epi32(k as i32),
        _mm512_set1_ps(f32::NEG_INFINITY),
    );
    for (&c, &m) in reached.iter().zip(&lanes) {
        floor = _mm512_mask_max_ps(floor, _mm512_cmpge_epi32_mask(c, k), floor, m);
    }
    _mm512_reduce_max_ps(floor)
}

#[inline(always)]
fn candidates(row: &[f32], offset: u32, k: usize, sel: &mut Selection) -> bool {
    let Selection {
        best: cand, maxima, ..
    } = sel;
    let start = cand.len();
    let floor = lane_floor(row, k, maxima);
    let mut blocks = row.chunks_exact(BLOCK);
    for (b, block) in (&mut blocks).enumerate() {
        let block: &[f32; BLOCK] = block.try_into().expect("a block");
        push_reaching(
            cand,
            block,
            reaching(block, floor),
            offset as usize + b * BLOCK,
        );
    }
    push_tail(cand, blocks.remainder(), floor, offset as usize + row.len());
    cand.len() - start >= k
}

/// Pushes the keys of the entries of `tail` (the last ones of a row that ends before
/// position `end`) that reach `floor`.
#[inline(always)]
fn push_tail(cand: &mut Vec<u64>, tail: &[f32], floor: f32, end: usize) {
    let hits = tail
        .iter()
        .enumerate()
        .fold(0u32, |bits, (i, &x)| bits | (u32::from(x >= floor) << i));
    push_reaching(cand, tail, hits, end - tail.len());
}

/// The k-th largest of the maxima of [`lanes_for`]`(k)` lanes of `row`.
#[inline(always)]
fn lane_floor(row: &[f32], k: usize, maxima: &mut Vec<f32>) -> f32 {
    match lanes_for(k) {
        16 => floor_by_lanes::<16>(row, k),
        32 => floor_by_lanes::<32>(row, k),
        64 => floor_by_lanes::<64>(row, k),
        lanes => {
            lane_maxima_dyn(row, lanes, maxima);
            *maxima
                .select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a))
                .1
        }
    }
}

/// The k-th largest of the maxima of `L` lanes (k ≤ L), with fixed-size arrays that the
/// compiler keeps in vector registers. `if x > m` skips NaN, so a lane of NaN only has the
/// maximum -inf. The k-th largest maximum is counted, not selected: it is the largest
/// maximum that at least k maxima reach, and counting is branch-free vector comparisons
/// where a quickselect mispredicts.
#[inline(always)]
fn floor_by_lanes<const L: usize>(row: &[f32], k: usize) -> f32 {
    let mut maxima = [f32::NEG_INFINITY; L];
    let mut parts = row.chunks_exact(L);
    for part in &mut parts {
        for (m, &x) in maxima.iter_mut().zip(part) {
            *m = if x > *m { x } else { *m };
        }
    }
    for (m, &x) in maxima.iter_mut().zip(parts.remainder()) {
        *m = if x > *m { x } else { *m };
    }
    let mut reached = [0u32; L];
    for &x in &maxima {
        for (r, &m) in reached.iter_mut().zip(&maxima) {
            *r += u32::from(x >= m);
        }
    }
    let k = k as u32;
    maxima
        .iter()
        .zip(&reached)
        .fold(f32::NEG_INFINITY, |floor, (&m, &r)| {
            if r >= k && m > floor {
                m
            } else {
                floor
            }
        })
}

/// The lanes' maxima when their number is known only at run time (large k).
#[inline(always)]
fn lane_maxima_dyn(row: &[f32], lanes: usize, maxima: &mut Vec<f32>) {
    maxima.clear();
    maxima.resize(lanes, f32::NEG_INFINITY);
    for part in row.chunks(lanes) {
        for (m, &x) in maxima.iter_mut().zip(part) {
            *m = if x > *m { x } else { *m };
        }
    }
}

/// One bit per entry of `block` that is ≥ `floor` (NaN never is), without a branch per
/// entry: four SSE comparisons and their sign masks on x86-64.
#[inline(always)]
fn reaching(block: &[f32; BLOCK], floor: f32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cmpge_ps, _mm_loadu_ps, _mm_movemask_ps, _mm_set1_ps};
        // SAFETY: SSE is part of x86-64; each load reads 4 of the block's 16 floats.
        unsafe {
            let f = _mm_set1_ps(floor);
            (0..BLOCK / 4).fold(0u32, |bits, i| {
                let v = _mm_loadu_ps(block.as_ptr().add(4 * i));
                bits | ((_mm_movemask_ps(_mm_cmpge_ps(v, f)) as u32) << (4 * i))
            })
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    block
        .iter()
        .enumerate()
        .fold(0u32, |bits, (i, &x)| bits | (u32::from(x >= floor) << i))
}

/// Pushes the keys of the entries of `block` (starting at position `start`) set in `hits`.
#[inline(always)]
fn push_reaching(cand: &mut Vec<u64>, block: &[f32], mut hits: u32, start: usize) {
    while hits != 0 {
        let i = hits.trailing_zeros() as usize;
        cand.push(rank_key(block[i], (start + i) as u32));
        hits &= hits - 1;
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
        fn lane_floors_are_the_kth_largest_lane_maximum(
            row in prop::collection::vec(prop_oneof![Just(0.5f32), Just(f32::NAN), -1.0f32..1.0], 1..200),
            k in 1usize..16,
        ) {
            let mut maxima = [f32::NEG_INFINITY; 16];
            for (i, &x) in row.iter().enumerate() {
                if x > maxima[i % 16] {
                    maxima[i % 16] = x;
                }
            }
            maxima.sort_by(|a, b| b.total_cmp(a));
            prop_assert_eq!(floor_by_lanes::<16>(&row, k), maxima[k - 1]);
        }

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn register_floors_are_the_lane_floors(
            row in prop::collection::vec(prop_oneof![Just(0.5f32), Just(f32::NAN), Just(-0.0f32), -1.0f32..1.0], 1..300),
            k in 1usize..16,
        ) {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                let got = unsafe {
                    [
                        floor_by_registers::<1>(&row, k),
                        floor_by_registers::<2>(&row, k),
                        floor_by_registers::<4>(&row, k),
                    ]
                };
                let want = [
                    floor_by_lanes::<16>(&row, k),
                    floor_by_lanes::<32>(&row, k),
                    floor_by_lanes::<64>(&row, k),
                ];
                prop_assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits));
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn every_copy_of_the_candidate_search_finds_the_same_candidates(
            row in prop::collection::vec(prop_oneof![Just(0.5f32), Just(f32::NAN), -1.0f32..1.0], 64..1100),
            k in 1usize..40,
            offset in 0u32..5000,
        ) {
            use std::arch::is_x86_feature_detected as has;
            let search = |copy: usize| {
                let mut sel = Selection { best: vec![7], ..Selection::default() };
                // SAFETY: each copy runs only where the CPU has its features, checked below.
                let enough = unsafe {
                    match copy {
                        0 => candidates(&row, offset, k, &mut sel),
                        1 => candidates_avx2(&row, offset, k, &mut sel),
                        _ => candidates_avx512(&row, offset, k, &mut sel),
                    }
                };
                (enough, sel.best)
            };
            let portable = search(0);
            if has!("avx2") {
                prop_assert_eq!(&search(1), &portable);
            }
            if has!("avx512f") && has!("popcnt") {
                prop_assert_eq!(&search(2), &portable);
            }
        }

        #[test]
        fn counting_ranks_as_a_sort(keys in prop::collection::btree_set(any::<u64>(), 0..=COUNTED)) {
            let mut counted: Vec<u64> = keys.iter().copied().collect();
            rank_by_counting(&mut counted);
            let sorted: Vec<u64> = keys.iter().rev().copied().collect();
            prop_assert_eq!(counted, sorted);
        }

        #[test]
        fn keys_give_back_their_scores(x in any::<f32>(), p in any::<u32>()) {
            match key_score(rank_key(x, p)) {
                Some(y) => prop_assert_eq!(y.to_bits(), (x + 0.0).to_bits()),
                None => prop_assert!(x.is_nan()),
            }
        }

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
