//! A Parquet writer over polars-parquet that chooses each column's encoding.
//!
//! polars' own batched writer asks for dictionary encoding on every primitive column and
//! then decides per chunk, hashing float columns to find out: on a `topk --all` frame that is
//! most of the write time. Here floats are written plain (scores are nearly unique), u16 and
//! u32 columns delta-encoded (runs, small ranges and rank sequences pack to a few bits a
//! value; [`delta`] makes those pages), token columns keep dictionary + RLE, and each row
//! group's columns are encoded and compressed in parallel.

use std::io::Write;
use std::sync::Arc;

use polars::prelude::{CompatLevel, DataFrame, PolarsError, PolarsResult};
use polars_arrow::datatypes::{ArrowDataType, ArrowSchema};
use polars_parquet::read::ParquetError;
use polars_parquet::write::{
    array_to_columns, fallible_streaming_iterator, get_dtype_encoding, schema_to_metadata_key,
    to_parquet_schema, CompressedPage, CompressionOptions, Compressor, DynIter,
    DynStreamingIterator, Encoding, FileWriter, KeyValue, ParquetType, StatisticsOptions, Version,
    WriteOptions,
};
use rayon::prelude::*;

use crate::arrow::record_batch;
use crate::delta;

pub struct ParquetFrameWriter<W: Write> {
    writer: FileWriter<W>,
    schema: Arc<ArrowSchema>,
    fields: Vec<ParquetType>,
    encodings: Vec<Vec<Encoding>>,
    options: WriteOptions,
}

impl<W: Write> ParquetFrameWriter<W> {
    pub fn new(out: W, schema: ArrowSchema, compression: CompressionOptions) -> PolarsResult<Self> {
        let options = WriteOptions {
            statistics: StatisticsOptions::default(),
            compression,
            version: Version::V1,
            data_page_size: None,
        };
        let fields = to_parquet_schema(&schema)?.fields().to_vec();
        let encodings = schema
            .iter_values()
            .map(|f| match f.dtype {
                ArrowDataType::Float32 | ArrowDataType::Float64 => vec![Encoding::Plain],
                ArrowDataType::UInt16 | ArrowDataType::UInt32 => vec![Encoding::DeltaBinaryPacked],
                _ => get_dtype_encoding(&f.dtype),
            })
            .collect();
        Ok(ParquetFrameWriter {
            schema: Arc::new(schema.clone()),
            writer: FileWriter::try_new(out, schema, options)?,
            fields,
            encodings,
            options,
        })
    }

    /// Writes `df` (one chunk) as one row group.
    pub fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        {
            let batch = record_batch(df, &self.schema, CompatLevel::newest())?;
            let rows = batch.len() as u64;
            let columns: Vec<Vec<CompressedPage>> = batch
                .columns()
                .par_iter()
                .zip(&self.fields)
                .zip(&self.encodings)
                .map(|((array, field), encoding)| {
                    encode(array.as_ref(), field, encoding, self.options)
                })
                .collect::<PolarsResult<Vec<Vec<Vec<CompressedPage>>>>>()?
                .into_iter()
                .flatten()
                .collect();
            let group = columns.iter().map(|pages| {
                Ok(DynStreamingIterator::new(
                    fallible_streaming_iterator::convert(pages.iter().map(Ok)),
                ))
            });
            self.writer.write(rows, DynIter::new(group))?;
        }
        Ok(())
    }

    /// Writes the footer with `metadata` and the Arrow schema; returns the inner writer.
    pub fn finish(mut self, metadata: Vec<KeyValue>) -> PolarsResult<W> {
        let mut kv = vec![schema_to_metadata_key(self.writer.schema())];
        kv.extend(metadata);
        self.writer.end(Some(kv))?;
        Ok(self.writer.into_inner())
    }
}

/// Encodes and compresses one column: its pages per leaf.
fn encode(
    array: &dyn polars_arrow::array::Array,
    field: &ParquetType,
    encoding: &[Encoding],
    options: WriteOptions,
) -> PolarsResult<Vec<Vec<CompressedPage>>> {
    let leaves = match delta::delta_pages(array, field, encoding, options) {
        Some(pages) => vec![DynIter::new(pages.into_iter().map(Ok))],
        None => array_to_columns(array, field.clone(), options, encoding)?,
    };
    leaves
        .into_iter()
        .map(|pages| {
            let pages =
                pages.map(|p| p.map_err(|e| ParquetError::FeatureNotSupported(e.to_string())));
            Compressor::new_from_vec(pages, options.compression, vec![])
                .collect::<Result<Vec<CompressedPage>, ParquetError>>()
                .map_err(PolarsError::from)
        })
        .collect()
}
