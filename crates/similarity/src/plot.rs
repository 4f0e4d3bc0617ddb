//! The matrices of one compared head, for `compare --plot`: A, and B in A's channel order
//! (the `figures` crate draws them).

use ingest::{RowSource, SlabId};

use crate::runs::{read_matrix, ChannelBlocks};
use crate::Result;

/// A's and B-reordered's matrices of one (batch, layer, head), row-major n × n.
pub fn head_matrices(
    a: &impl RowSource,
    b: &impl RowSource,
    id: SlabId,
    blocks: &ChannelBlocks,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut buf = ingest::SlabBuffer::default();
    let (mut ma, mut raw_b) = (Vec::new(), Vec::new());
    read_matrix(a, id, &mut buf, &mut ma)?;
    read_matrix(b, id, &mut buf, &mut raw_b)?;
    let n = blocks.b_position.len();
    let p = &blocks.b_position;
    let mb = (0..n * n).map(|i| raw_b[p[i / n] * n + p[i % n]]).collect();
    Ok((ma, mb))
}
