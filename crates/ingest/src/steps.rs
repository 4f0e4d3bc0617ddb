//! Generation steps: the attention `generate()` returns step by step, read as the one example
//! of the whole generated sequence.
//!
//! `generate(..., output_attentions=True, return_dict_in_generate=True).attentions` holds one
//! entry per step: the prompt's (B, H, P, P), then, with a KV cache, (B, H, 1, P + t) for
//! step t, whose one query is the last position. A step may hold more queries than it adds
//! (without a cache every step is square and recomputes all its rows); its new positions are
//! then its last rows. Row p of the whole sequence comes from the step that added position
//! p, its keys past that step's K scoring 0, as the causal mask of one forward pass over the
//! whole sequence makes them: the rows equal that pass's rows up to the cache's float order.

use crate::annotations::Annotations;
use crate::error::{bail, IngestError, Result};
use crate::row_source::RowSource;
use crate::source::{row_blocks, AttentionSource, Dims, SlabBuffer, SlabId, SourceOptions};
use crate::tensor::TensorFile;

/// One generation step: its tensor, and the positions it adds to the sequence.
struct Step {
    source: AttentionSource,
    /// The first position this step adds (the steps before cover the positions below it).
    first: usize,
}

/// The steps of one `generate()` call as the row source of the whole sequence: K = Q = the
/// last step's keys; masks and tokens describe those K positions.
pub struct GenerationSteps {
    steps: Vec<Step>,
    dims: Dims,
    annotations: Annotations,
}

impl GenerationSteps {
    /// Opens `tensors`, the steps in order, each (L, B, H, Q_t, K_t) in `opts.layout`; masks,
    /// tokens, head importance and selections come from `opts` and index the last step's
    /// K_t positions (`attn`/`attn_array` of `opts` are not read).
    ///
    /// # Errors
    /// No steps; a step of other L, B or H than the first; a first step that is not square
    /// (it must hold the prompt's every row); a step that adds no position, or holds too few
    /// query rows to cover the positions it adds; explicit query positions (`--query-offset`,
    /// cross-attention); and the errors of every step's tensor and of the annotations.
    pub fn open(tensors: Vec<TensorFile>, opts: &SourceOptions) -> Result<GenerationSteps> {
        let Some(first) = tensors.first() else {
            bail!(&opts.attn, "no generation steps given");
        };
        let path = first.path.clone();
        if opts.queries != crate::QueryPositions::Auto {
            bail!(
                &path,
                "generation steps place their queries themselves (the new positions of each step): leave out --query-offset and --cross-attention"
            );
        }
        let bare = SourceOptions {
            layout: opts.layout.clone(),
            allow_nan: opts.allow_nan,
            ..SourceOptions::default()
        };
        let mut steps: Vec<Step> = Vec::with_capacity(tensors.len());
        let mut covered = 0;
        for (t, tensor) in tensors.into_iter().enumerate() {
            let (name, at) = (step_name(t, &tensor), tensor.path.clone());
            let source = AttentionSource::of_tensor(tensor, &bare).map_err(|e| match e {
                IngestError::Invalid { path, reason } => {
                    IngestError::invalid(path, format!("{name}: {reason}"))
                }
                other => other,
            })?;
            let d = source.dims;
            if let Some(s0) = steps.first() {
                let d0 = s0.source.dims;
                if (d.layers, d.batch, d.heads) != (d0.layers, d0.batch, d0.heads) {
                    bail!(
                        &at,
                        "{name} has (L, B, H) = ({}, {}, {}), step 0 has ({}, {}, {})",
                        d.layers,
                        d.batch,
                        d.heads,
                        d0.layers,
                        d0.batch,
                        d0.heads
                    );
                }
            }
            if d.keys <= covered {
                bail!(
                    &at,
                    "{name} has {} keys, so it adds no position to the {covered} of the steps before",
                    d.keys
                );
            }
            if d.queries > d.keys || d.keys - d.queries > covered {
                bail!(
                    &at,
                    "{name} has {} query rows over {} keys: they must be the last positions and cover the ones it adds, {covered}..{} (the first step is the prompt's square)",
                    d.queries, d.keys, d.keys
                );
            }
            steps.push(Step {
                source,
                first: covered,
            });
            covered = d.keys;
        }
        let d0 = steps[0].source.dims;
        let dims = Dims {
            queries: covered,
            keys: covered,
            ..d0
        };
        let annotations = Annotations::load(opts, dims, &path).map_err(|e| match e {
            // A mask or token list of `out.sequences`' length holds one position more.
            IngestError::Invalid { path: p, reason }
                if p != path && names_number(&reason, covered + 1) =>
            {
                IngestError::invalid(p, format!("{reason}; the steps attend over {covered} positions: generate()'s last token is never fed back, so leave it out (sequences[:, :-1])"))
            }
            other => other,
        })?;
        Ok(GenerationSteps {
            steps,
            dims,
            annotations,
        })
    }

    /// How many steps there are.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Always false: a generation has its prompt step.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// How many keys the row of position `q` holds: the K of the step that added `q` (the
    /// keys after them score 0).
    pub fn keys_of(&self, q: u32) -> usize {
        let after = self.steps.partition_point(|s| s.first <= q as usize);
        self.steps[after.max(1) - 1].source.dims.keys
    }

    /// The steps' tensors, in order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorFile> {
        self.steps.iter().map(|s| &s.source.tensor)
    }
}

/// Whether `text` holds the number `n` as a whole word ("[2, 12]" holds 12, "112" does not).
fn names_number(text: &str, n: usize) -> bool {
    let n = n.to_string();
    text.split(|c: char| !c.is_ascii_digit()).any(|w| w == n)
}

/// How messages name step `t`: its index, and its key in a file of several steps.
fn step_name(t: usize, tensor: &TensorFile) -> String {
    match &tensor.key {
        Some(key) => format!("step {t} ('{key}')"),
        None => format!("step {t}"),
    }
}

impl RowSource for GenerationSteps {
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
        let n = self.dims.keys;
        let queries = self.valid_queries(s.batch);
        let mut row = std::mem::take(&mut buf.row);
        row.resize(n, 0.0);
        let mut done = 0;
        for (t, step) in self.steps.iter().enumerate() {
            let end = self.steps.get(t + 1).map_or(n, |next| next.first);
            let count = queries[done..].partition_point(|&q| (q as usize) < end);
            let mine = &queries[done..done + count];
            let src = &step.source;
            let (nk, offset) = (src.dims.keys, src.annotations.query_offset());
            for (run, first, last) in row_blocks(mine, src.rows_per_block()) {
                src.read_rows(s, first - offset..last + 1 - offset, buf)?;
                for i in run {
                    let at = (mine[i] as usize - first) * nk;
                    row[..nk].copy_from_slice(&buf.values[at..at + nk]);
                    row[nk..].fill(0.0);
                    self.annotations.scale(s, &mut row[..nk]);
                    f(done + i, mine[i], &row);
                }
            }
            done += count;
        }
        buf.row = row;
        Ok(())
    }
}
