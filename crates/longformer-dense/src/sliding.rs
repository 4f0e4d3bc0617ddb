use std::path::Path;

use ingest::{
    mask_positions, row_blocks, Annotations, Dims, IngestError, Result, RowSource, SlabBuffer,
    SlabId, SourceOptions, TensorFile,
};

/// HF Longformer sliding-window + global attention, read slab by slab as attention rows.
pub struct SlidingWindowAttention {
    pub sliding: TensorFile,
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
        global_attn: Option<&Path>,
        global_mask: Option<&Path>,
    ) -> Result<Self> {
        let mut sliding = TensorFile::open(&opts.attn, opts.attn_key.as_deref())?;
        let global = global_attn.map(|g| TensorFile::open(g, None)).transpose()?;
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
        for t in std::iter::once(&mut sliding).chain(&mut global) {
            if !t.is_seekable() {
                t.load_into_memory()?;
            }
        }
        Ok(SlidingWindowAttention {
            sliding,
            global,
            dims,
            x,
            w,
            global_len,
            globals,
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

fn read_global_mask(path: &Path, batch: usize, seq: usize, x: usize) -> Result<Vec<Vec<u32>>> {
    let globals = mask_positions(path, batch, seq)?;
    let most = globals.iter().map(Vec::len).max().unwrap_or(0);
    if most != x {
        return Err(invalid(
            path,
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

    fn for_each_query_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        mut f: impl FnMut(usize, u32, &[f32]),
    ) -> Result<()> {
        let (n, x, half) = (self.dims.queries, self.x, self.w / 2);
        let width = x + self.w + 1;
        let slab = self.slab_index(s);
        let globals = &self.globals[s.batch as usize];
        // The global rows of this slab: (S, x), its first S of S_pad rows.
        buf.extra.resize(n * x, 0.0);
        if let Some(global) = &self.global {
            global.read_f32(
                slab * (self.global_len * x) as u64,
                &mut buf.extra,
                &mut buf.bytes,
            )?;
            self.annotations
                .check_finite(&global.path, s, 0, x, &buf.extra)?;
        }
        buf.row.resize(n, 0.0);
        let queries = self.valid_queries(s.batch);
        let per_block = ((1 << 16) / width).max(1);
        for (run, first, last) in row_blocks(queries, per_block) {
            buf.values.resize((last + 1 - first) * width, 0.0);
            self.sliding.read_f32(
                (slab * n as u64 + first as u64) * width as u64,
                &mut buf.values,
                &mut buf.bytes,
            )?;
            self.annotations
                .check_finite(&self.sliding.path, s, first, width, &buf.values)?;
            for i in run {
                let q = queries[i] as usize;
                let row = &mut buf.row;
                if let Some(t) = globals.iter().position(|&g| g as usize == q) {
                    for (k, r) in row.iter_mut().enumerate() {
                        *r = buf.extra[k * x + t];
                    }
                } else {
                    let local = &buf.values[(q - first) * width..(q - first + 1) * width];
                    row.fill(0.0);
                    // Key q − w/2 + c for c in 0..=w, clipped to the sequence.
                    let lo = half.saturating_sub(q);
                    let hi = (n + half - q).min(self.w + 1);
                    for c in lo..hi {
                        row[q + c - half] += local[x + c];
                    }
                    for (t, &g) in globals.iter().enumerate() {
                        row[g as usize] += local[t];
                    }
                }
                self.annotations.scale(s, row);
                f(i, q as u32, row);
            }
        }
        Ok(())
    }
}
