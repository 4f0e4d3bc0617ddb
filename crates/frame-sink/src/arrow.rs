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

/// `frames` (one schema) as an Arrow C stream of record batches — what the Arrow PyCapsule
/// interface hands to pyarrow and polars, which take the buffers without copying them.
pub fn arrow_stream(frames: Vec<DataFrame>) -> PolarsResult<polars_arrow::ffi::ArrowArrayStream> {
    use polars_arrow::array::StructArray;
    use polars_arrow::datatypes::{ArrowDataType, Field};
    let first = frames
        .first()
        .ok_or_else(|| polars_err!(NoData: "no frame to export"))?;
    // Plain large strings, not string views: readable by every pyarrow and polars version.
    let compat = CompatLevel::oldest();
    let schema = Arc::new(arrow_schema(first, compat));
    let dtype = ArrowDataType::Struct(schema.iter_values().cloned().collect());
    let batches: Vec<PolarsResult<ArrayRef>> = frames
        .into_iter()
        .map(|mut df| {
            df.rechunk_mut();
            let batch = record_batch(&df, &schema, compat)?;
            let len = batch.len();
            let array = StructArray::new(dtype.clone(), len, batch.into_arrays(), None);
            Ok(Box::new(array) as ArrayRef)
        })
        .collect();
    let field = Field::new("".into(), dtype.clone(), false);
    Ok(polars_arrow::ffi::export_iterator(
        Box::new(batches.into_iter()),
        field,
    ))
}
