use std::path::Path;

use ingest::{
    mask_positions, row_blocks, Annotations, Dims, IngestError, MappedF32, Result, RowSource,
    SlabBuffer, SlabId, SourceOptions, SparseRow, TensorFile, TensorInput,
};

/// HF Longformer sliding-window + global attention, read slab by slab as attention rows.
pub struct SlidingWindowAttention {
    pub sliding: TensorFile,
    /// The sliding tensor mapped, when its rows can be read in place (see
    /// [`TensorFile::map_f32`]).
    sliding_map: Option<MappedF32>,
    /// The global tensor; `None` when there are no global tokens (x = 0).
    pub global: Option<TensorFile>,
    dims: Dims,
    /// Number of global slots.
    pub x: usize,
    /// Attention window (even).
    pub w: usize,
    /// Length of the global tensor's (padded) sequence axis.
    global_len: usize,
    /// Global positions of each batch row, ascending (slot t = the t-th).
    globals: Vec<Vec<u32>>,
    /// Per batch row: whether each position is a valid key.
    key_valid: Vec<Vec<bool>>,
    pub annotations: Annotations,
}

fn invalid(path: &Path, reason: String) -> IngestError {
    IngestError::invalid(path, reason)
}

impl SlidingWindowAttention {
    /// `opts.attn` is the sliding tensor (L, B, H, S, x + w + 1), `global_attn` the global one
    /// (L, B, H, S_pad ≥ S, x); `global_mask` (B, S) marks the global positions (without it,
    /// x = 1 means position 0). Without `global_attn`, or with an empty one (x = 0), there are
    /// no global tokens: what `LongformerModel` returns without a `global_attention_mask`.
    pub fn open(
        opts: &SourceOptions,
        global_attn: Option<&TensorInput>,
        global_mask: Option<&TensorInput>,
    ) -> Result<Self> {
        let mut sliding = opts.open_attn()?;
        let global = global_attn.map(TensorInput::open).transpose()?;
        for t in std::iter::once(&sliding).chain(&global) {
            if !t.element.is_float() {
                return Err(invalid(
                    &t.path,
                    format!(
                        "attention must be float16/32/64 (or bfloat16), got {}",
                        t.element.name()
                    ),
                ));
            }
            if t.shape.len() != 5 {
                return Err(invalid(
                    &t.path,
                    format!(
                        "Longformer attention must be 5-D (L, B, H, S, …), got shape {:?}",
                        t.shape
                    ),
                ));
            }
            if t.fortran_order {
                return Err(invalid(&t.path, "Fortran-order Longformer tensors are not supported; save with np.ascontiguousarray".into()));
            }
        }
        if let Some(l) = opts.layout.as_deref() {
            if !l.eq_ignore_ascii_case("LBHQK") {
                return Err(invalid(
                    &sliding.path,
                    format!("--layout {l}: Longformer tensors are read as LBHQK"),
                ));
            }
        }
        let ss = sliding.shape.clone();
        let (s, last) = (ss[3], ss[4]);
        let (x, global_len) = match &global {
            None => (0, s),
            Some(g) => {
                let gs = &g.shape;
                if ss[..3] != gs[..3] {
                    return Err(invalid(&g.path, format!("shape {gs:?} does not match the sliding attentions {ss:?} in (layers, batch, heads)")));
                }
                if gs[3] < s {
                    return Err(invalid(
                        &g.path,
                        format!(
                            "global sequence length {} is shorter than the sequence length {s}",
                            gs[3]
                        ),
                    ));
                }
                (gs[4], gs[3])
            }
        };
        let w = last.checked_sub(x + 1).filter(|&w| w >= 2 && w % 2 == 0).ok_or_else(|| {
            invalid(
                &sliding.path,
                format!("last dimension {last} is not x + w + 1 for x = {x} global slots (from the global tensor) and an even window w ≥ 2"),
            )
        })?;
        // An empty global tensor carries nothing to read.
        let mut global = global.filter(|_| x > 0);
        let dims = Dims {
            layers: ss[0],
            batch: ss[1],
            heads: ss[2],
            queries: s,
            keys: s,
        };
        let globals = match (global_mask, &global) {
            (Some(p), _) => read_global_mask(p, dims.batch, s, x)?,
            (None, None) => vec![Vec::new(); dims.batch],
            (None, Some(_)) if x == 1 => vec![vec![0]; dims.batch],
            (None, Some(global)) => {
                return Err(invalid(
                    &global.path,
                    format!(
                        "{x} global slots: give --global-mask to say which positions are global"
                    ),
                ));
            }
        };
        let annotations = Annotations::load(opts, dims, &sliding.path)?;
        let key_valid = (0..dims.batch as u32)
            .map(|b| {
                let mut valid = vec![false; s];
                for &k in annotations.valid_keys(b) {
                    valid[k as usize] = true;
                }
                valid
            })
            .collect();
        for t in std::iter::once(&mut sliding).chain(&mut global) {
            if !t.is_seekable() {
                t.load_into_memory()?;
            }
        }
        Ok(SlidingWindowAttention {
            sliding_map: sliding.map_f32()?,
            sliding,
            global,
            dims,
            x,
            w,
            global_len,
            globals,
            key_valid,
            annotations,
        })
    }

    /// Global positions of batch row `b`.
    pub fn global_positions(&self, b: u32) -> &[u32] {
        &self.globals[b as usize]
    }

    fn slab_index(&self, s: SlabId) -> u64 {
        ((s.layer as u64 * self.dims.batch as u64) + s.batch as u64) * self.dims.heads as u64
            + s.head as u64
    }
}

fn read_global_mask(
    mask: &TensorInput,
    batch: usize,
    seq: usize,
    x: usize,
) -> Result<Vec<Vec<u32>>> {
    let globals = mask_positions(mask, batch, seq)?;
    let most = globals.iter().map(Vec::len).max().unwrap_or(0);
    if most != x {
        return Err(invalid(
            mask.name(),
            format!("marks at most {most} global tokens in a row, but the global tensor has x = {x} slots"),
        ));
    }
    Ok(globals)
}

impl RowSource for SlidingWindowAttention {
    fn dims(&self) -> Dims {
        self.dims
    }

    fn annotations(&self) -> &Annotations {
        &self.annotations
    }

    fn is_seekable(&self) -> bool {
        true
    }

    fn has_sparse_rows(&self) -> bool {
        true
    }

    fn for_each_query_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        mut f: impl FnMut(usize, u32, &[f32]),
    ) -> Result<()> {
        let (n, x, half) = (self.dims.queries, self.x, self.w / 2);
        let globals = &self.globals[s.batch as usize];
        let SlabBuffer {
            bytes,
            values,
            extra,
            row,
            ..
        } = buf;
        row.resize(n, 0.0);
        self.for_each_raw_row(s, bytes, values, extra, |i, q, raw| {
            match raw {
                RawRow::Global { slot, rows } => {
                    for (k, r) in row.iter_mut().enumerate() {
                        *r = rows[k * x + slot];
                    }
                }
                RawRow::Window(local) => {
                    row.fill(0.0);
                    // Key q − w/2 + c for c in 0..=w, clipped to the sequence.
                    let (lo, hi) = self.window(q);
                    for c in lo..hi {
                        row[q + c - half] += local[x + c];
                    }
                    for (t, &g) in globals.iter().enumerate() {
                        row[g as usize] += local[t];
                    }
                }
            }
            self.annotations.scale(s, row);
            f(i, q as u32, row);
        })
    }

    /// The window and the global slots in key order, O(x + w) a row. When no key is padding
    /// and no head importance scales the row, the window after its last global key is lent
    /// as stored (the whole window when no global key falls inside it), between the merged
    /// entries before it and the global slots after it; otherwise every entry is merged into
    /// a list. The same sums, in the same order, as the dense row of
    /// [`for_each_query_row`](Self::for_each_query_row).
    fn for_each_sparse_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        mut f: impl FnMut(usize, u32, SparseRow<'_>),
    ) -> Result<()> {
        let (n, x, half) = (self.dims.queries, self.x, self.w / 2);
        let globals = &self.globals[s.batch as usize];
        let is_key = &self.key_valid[s.batch as usize];
        let lent = self.valid_keys(s.batch).len() == n && !self.annotations.has_head_importance();
        let SlabBuffer {
            bytes,
            values,
            extra,
            sparse_keys: keys,
            sparse_scores: scores,
            ..
        } = buf;
        self.for_each_raw_row(s, bytes, values, extra, |i, q, raw| {
            keys.clear();
            scores.clear();
            let push = |keys: &mut Vec<u32>, scores: &mut Vec<f32>, k: usize, v: f32| {
                if is_key[k] {
                    keys.push(k as u32);
                    scores.push(v);
                }
            };
            match raw {
                RawRow::Global { slot, rows } => {
                    // A full row: only its entries that are not 0 are listed.
                    for k in 0..n {
                        let v = rows[k * x + slot];
                        if v != 0.0 {
                            push(keys, scores, k, v);
                        }
                    }
                }
                RawRow::Window(local) => {
                    let (lo, hi) = self.window(q);
                    let (first, end) = (q + lo - half, q + hi - half);
                    let before = globals.partition_point(|&g| (g as usize) < first);
                    let inside = globals.partition_point(|&g| (g as usize) < end);
                    let window = &local[x + lo..x + hi];
                    // The global keys before the window and the window up to its last global
                    // key (where the two add) are merged into the list; the rest of the
                    // window is lent, when it can be, else merged too.
                    let split = match (lent, inside.checked_sub(1)) {
                        (false, _) => window.len(),
                        (true, Some(last)) if last >= before => globals[last] as usize + 1 - first,
                        (true, _) => 0,
                    };
                    for (t, &g) in globals.iter().enumerate().take(before) {
                        push(keys, scores, g as usize, 0.0 + local[t]);
                    }
                    let mut t = before;
                    for (c, &w) in window[..split].iter().enumerate() {
                        let k = first + c;
                        let mut v = 0.0 + w;
                        if t < inside && globals[t] as usize == k {
                            v += local[t];
                            t += 1;
                        }
                        push(keys, scores, k, v);
                    }
                    if lent {
                        let row = SparseRow {
                            before_keys: keys,
                            before_scores: scores,
                            run_start: (first + split) as u32,
                            run: &window[split..],
                            after_keys: &globals[inside..],
                            after_scores: &local[inside..globals.len()],
                        };
                        return f(i, q as u32, row);
                    }
                    for (t, &g) in globals.iter().enumerate().skip(inside) {
                        push(keys, scores, g as usize, 0.0 + local[t]);
                    }
                }
            }
            self.annotations.scale(s, scores);
            f(i, q as u32, SparseRow::listed(keys, scores));
        })
    }
}

/// Query `q`'s row: its slot of the global rows `extra` if it is global, else its row of
/// `rows` (sliding-tensor rows from query `first` on, `width` values each).
fn raw_row<'a>(
    globals: &[u32],
    extra: &'a [f32],
    rows: &'a [f32],
    q: usize,
    first: usize,
    width: usize,
) -> RawRow<'a> {
    match globals.iter().position(|&g| g as usize == q) {
        Some(slot) => RawRow::Global { slot, rows: extra },
        None => RawRow::Window(&rows[(q - first) * width..(q - first + 1) * width]),
    }
}

/// One query's row as stored: a global query's column of the global tensor, or the window
/// (and global slots) of the sliding tensor.
enum RawRow<'a> {
    Global { slot: usize, rows: &'a [f32] },
    Window(&'a [f32]),
}

impl SlidingWindowAttention {
    /// The window slots `lo..hi` of query `q` that fall inside the sequence.
    fn window(&self, q: usize) -> (usize, usize) {
        let (n, half) = (self.dims.queries, self.w / 2);
        (half.saturating_sub(q), (n + half - q).min(self.w + 1))
    }

    /// Reads slab `s` block by block and calls `f(i, q, raw)` for every valid query.
    fn for_each_raw_row(
        &self,
        s: SlabId,
        bytes: &mut Vec<u8>,
        values: &mut Vec<f32>,
        extra: &mut Vec<f32>,
        mut f: impl FnMut(usize, usize, RawRow<'_>),
    ) -> Result<()> {
        let (n, x) = (self.dims.queries, self.x);
        let width = x + self.w + 1;
        let slab = self.slab_index(s);
        let globals = &self.globals[s.batch as usize];
        // The global rows of this slab: (S, x), its first S of S_pad rows.
        extra.resize(n * x, 0.0);
        if let Some(global) = &self.global {
            global.read_f32(slab * (self.global_len * x) as u64, extra, bytes)?;
            self.annotations
                .check_finite(&global.path, s, 0, x, extra)?;
        }
        let queries = self.valid_queries(s.batch);
        // Blocks of rows read in place from the map, or read into one reused buffer (straight
        // into f32 when the file holds little-endian f32) where there is none; the map's
        // pages are released behind the reader, so resident memory stays a few blocks.
        let per_block = ((1 << 16) / width).max(1);
        let extra: &[f32] = extra;
        let slab_start = slab as usize * n * width;
        let mut released = slab_start;
        for (run, first, last) in row_blocks(queries, per_block) {
            let start = slab_start + first * width;
            let len = (last + 1 - first) * width;
            let rows: &[f32] = match &self.sliding_map {
                Some(map) => &map.values()[start..start + len],
                None => {
                    values.resize(len, 0.0);
                    self.sliding.read_f32(start as u64, values, bytes)?;
                    values
                }
            };
            self.annotations
                .check_finite(&self.sliding.path, s, first, width, rows)?;
            for i in run {
                let q = queries[i] as usize;
                f(i, q, raw_row(globals, extra, rows, q, first, width));
            }
            if let Some(map) = &self.sliding_map {
                released = map.release(released..start + len, false);
            }
        }
        if let Some(map) = &self.sliding_map {
            map.release(released..slab_start + n * width, true);
        }
        Ok(())
    }
}
