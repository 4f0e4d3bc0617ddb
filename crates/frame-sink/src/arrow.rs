//! DataFrame → Arrow record batches for the writers.

use std::sync::Arc;

use polars::prelude::*;
use polars_arrow::array::ArrayRef;
use polars_arrow::datatypes::ArrowSchema;
use polars_arrow::record_batch::RecordBatch;

/// The Arrow schema of `df`'s columns.
pub fn arrow_schema(df: &DataFrame, compat: CompatLevel) -> ArrowSchema {
    df.columns()
        .iter()
        .map(|c| c.field().to_arrow(compat))
        .collect()
}

/// One record batch of a single-chunk `df`. Categorical columns become dictionaries over the
/// whole mapping — the same dictionary in every batch, built without touching the rows —
/// where polars' own export re-maps every row through a hash map to a compact dictionary
/// (that alone cost as much as writing a `topk --all` frame).
pub fn record_batch(
    df: &DataFrame,
    schema: &Arc<ArrowSchema>,
    compat: CompatLevel,
) -> PolarsResult<RecordBatch> {
    let arrays = df
        .columns()
        .iter()
        .map(|c| match c.dtype() {
            DataType::Categorical(..) => Ok(Box::new(c.cat32()?.to_arrow(compat)) as ArrayRef),
            _ => Ok(c.as_materialized_series().rechunk().to_arrow(0, compat)),
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    RecordBatch::try_new(df.height(), schema.clone(), arrays)
}
