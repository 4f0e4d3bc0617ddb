use std::io::Write;

use ingest::{IngestError, RowSource, SlabBuffer, SlabId};

/// Errors of the dense conversion: bad input, or the output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DenseError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("{0}")]
    Output(#[from] std::io::Error),
}

/// Writes the dense (L, B, H, S, S) float32 `.npy` of the selected slabs of `src` to `out`:
/// the header first, then every (layer, batch, head) matrix row by row, one row in memory at a
/// time. Rows of padded queries are 0. `on_slab(done)` is called after each matrix.
pub fn write_dense(
    src: &impl RowSource,
    out: &mut impl Write,
    mut on_slab: impl FnMut(u64),
) -> Result<(), DenseError> {
    let slabs = src.slabs();
    let dims = src.dims();
    let layers = sorted_unique(slabs.iter().map(|s| s.layer));
    let batches = sorted_unique(slabs.iter().map(|s| s.batch));
    let heads = sorted_unique(slabs.iter().map(|s| s.head));
    let n = dims.queries;
    out.write_all(&ingest::npy::header_bytes(
        "<f4",
        &[layers.len(), batches.len(), heads.len(), n, dims.keys],
    ))?;
    let zero_row = vec![0u8; dims.keys * 4];
    let mut done = 0u64;
    let mut buf = SlabBuffer::default();
    for &layer in &layers {
        for &batch in &batches {
            for &head in &heads {
                let mut next = 0usize;
                let mut result = Ok(());
                src.for_each_query_row(SlabId { batch, layer, head }, &mut buf, |_, q, row| {
                    if result.is_err() {
                        return;
                    }
                    result = (next..q as usize)
                        .try_for_each(|_| out.write_all(&zero_row))
                        .and_then(|_| out.write_all(f32_bytes(row)));
                    next = q as usize + 1;
                })?;
                result?;
                (next..n).try_for_each(|_| out.write_all(&zero_row))?;
                done += 1;
                on_slab(done);
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn sorted_unique<T: Ord>(values: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = values.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The little-endian bytes of `values` (the `.npy` is `<f4`).
fn f32_bytes(values: &[f32]) -> &[u8] {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: f32 has no padding and any alignment suits u8; the length is exact.
        unsafe {
            std::slice::from_raw_parts(values.as_ptr() as *const u8, std::mem::size_of_val(values))
        }
    }
    #[cfg(not(target_endian = "little"))]
    compile_error!("attnframes writes little-endian .npy files on little-endian machines only");
}
