//! `inspect`: what tensor files hold.

use crate::error::Result;
use crate::options::InspectOptions;

/// Shape, dtype, container, layout, row-sum ranges and NaN/Inf counts of each file.
///
/// # Errors
/// `BadInput` for a file that is not a tensor; `Io` for one that cannot be read.
pub fn inspect(options: &InspectOptions) -> Result<Vec<ingest::TensorSummary>> {
    options
        .files
        .iter()
        .map(|f| {
            ingest::summarize(f, options.attn_key.as_deref(), options.layout.as_deref())
                .map_err(Into::into)
        })
        .collect()
}
