//! DELTA_BINARY_PACKED pages of u16 and u32 columns, byte for byte the pages polars-parquet
//! makes, made without its per-value cost.
//!
//! polars-parquet 0.55's encoder divides by a run-time block length for every value, and on
//! a rank frame its index columns (batch, layer, head, query_position, position, rank) were
//! the largest part of the write: 11-18% of `topk -k 10`'s CPU on LED-16k shapes.
//! This module does the same steps block by block (the divisions become slice bounds) and
//! packs with polars-parquet's own bit packer, so the pages, their statistics and the file
//! are unchanged; a test compares every byte with polars-parquet's pages.

use polars_arrow::array::{Array, PrimitiveArray};
use polars_arrow::datatypes::ArrowDataType;
use polars_arrow::types::NativeType;
use polars_parquet::parquet::encoding::{bitpacked, uleb128, zigzag_leb128};
use polars_parquet::parquet::metadata::Descriptor;
use polars_parquet::parquet::page::{DataPage, DataPageHeader, DataPageHeaderV1};
use polars_parquet::parquet::schema::types::PrimitiveType;
use polars_parquet::parquet::schema::Repetition;
use polars_parquet::parquet::statistics::PrimitiveStatistics;
use polars_parquet::parquet::CowBuffer;
use polars_parquet::write::{
    write_def_levels, Encoding, Page, ParquetType, StatisticsOptions, Version, WriteOptions,
};

/// Values a block holds, and its one miniblock: polars-parquet's layout.
const BLOCK: usize = 256;

/// What polars-parquet aims a page at when no size is set (`WriteOptions::data_page_size`).
const PAGE_BYTES: usize = 1 << 20;

/// The pages polars-parquet's `array_to_columns` makes of `array` with `encoding`, when they
/// are delta pages of a u16 or u32 column without a validity bitmap, written as version 1
/// pages with the default statistics; None otherwise (the caller then asks polars-parquet).
pub fn delta_pages(
    array: &dyn Array,
    field: &ParquetType,
    encoding: &[Encoding],
    options: WriteOptions,
) -> Option<Vec<Page>> {
    let ParquetType::PrimitiveType(type_) = field else {
        return None;
    };
    if encoding != [Encoding::DeltaBinaryPacked]
        || options.version != Version::V1
        || options.data_page_size.is_some()
        || !is_default(&options.statistics)
        || array.validity().is_some()
    {
        return None;
    }
    let optional = match type_.field_info.repetition {
        Repetition::Optional => true,
        Repetition::Required => false,
        Repetition::Repeated => return None,
    };
    let any = array.as_any();
    match array.dtype() {
        ArrowDataType::UInt16 => Some(pages(
            any.downcast_ref::<PrimitiveArray<u16>>()?.values(),
            type_,
            optional,
        )),
        ArrowDataType::UInt32 => Some(pages(
            any.downcast_ref::<PrimitiveArray<u32>>()?.values(),
            type_,
            optional,
        )),
        _ => None,
    }
}

fn is_default(s: &StatisticsOptions) -> bool {
    let d = StatisticsOptions::default();
    (s.min_value, s.max_value, s.null_count, s.distinct_count)
        == (d.min_value, d.max_value, d.null_count, d.distinct_count)
}

/// Values that convert to Parquet's INT32 as polars-parquet converts them (`as` casts).
trait Int32Value: NativeType + Ord {
    fn int32(self) -> i32;
}

impl Int32Value for u16 {
    #[inline(always)]
    fn int32(self) -> i32 {
        i32::from(self)
    }
}

impl Int32Value for u32 {
    #[inline(always)]
    fn int32(self) -> i32 {
        self as i32
    }
}

/// One page per run of rows that polars-parquet gives a page: about 1 MiB of plain values.
fn pages<T: Int32Value>(values: &[T], type_: &PrimitiveType, optional: bool) -> Vec<Page> {
    let rows_per_page = (PAGE_BYTES / (size_of::<T>() + 1)).max(1);
    values
        .chunks(rows_per_page)
        .map(|rows| Page::Data(page(rows, type_, optional)))
        .collect()
}

fn page<T: Int32Value>(rows: &[T], type_: &PrimitiveType, optional: bool) -> DataPage {
    // Index columns pack to well under half their plain size; the buffer grows if not.
    let mut buffer = Vec::with_capacity(size_of_val(rows) / 2 + 64);
    write_def_levels(&mut buffer, optional, None, rows.len(), Version::V1)
        .expect("levels of a column without nulls");
    let range = encode(rows, &mut buffer);
    let statistics = PrimitiveStatistics::<i32> {
        primitive_type: type_.clone(),
        null_count: Some(0),
        distinct_count: None,
        min_value: range.map(|(min, _)| min.int32()),
        max_value: range.map(|(_, max)| max.int32()),
    };
    let header = DataPageHeader::V1(DataPageHeaderV1 {
        num_values: rows.len() as i32,
        encoding: Encoding::DeltaBinaryPacked.into(),
        definition_level_encoding: Encoding::Rle.into(),
        repetition_level_encoding: Encoding::Rle.into(),
        statistics: Some(statistics.serialize()),
    });
    let descriptor = Descriptor {
        primitive_type: type_.clone(),
        max_def_level: 0,
        max_rep_level: 0,
    };
    DataPage::new(header, CowBuffer::Owned(buffer), descriptor, rows.len())
}

/// Appends `values` as DELTA_BINARY_PACKED; returns their least and greatest (None when
/// there are none), the page's statistics.
fn encode<T: Int32Value>(values: &[T], buffer: &mut Vec<u8>) -> Option<(T, T)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { encode_avx2(values, buffer) };
    }
    encode_blocks(values, buffer)
}

/// [`encode_blocks`] compiled for AVX2, whose 64-bit comparisons take each block's least and
/// greatest delta four lanes at a time (the baseline's SSE2 has none).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn encode_avx2<T: Int32Value>(values: &[T], buffer: &mut Vec<u8>) -> Option<(T, T)> {
    encode_blocks(values, buffer)
}

/// polars-parquet's choices: blocks of 256 values in one miniblock, deltas of the INT32
/// values taken in 64 bits, and the last block's miniblock padded with what the block before
/// left in its slots (the padding is never read; it is kept so that the bytes are
/// polars-parquet's).
#[inline(always)]
fn encode_blocks<T: Int32Value>(values: &[T], buffer: &mut Vec<u8>) -> Option<(T, T)> {
    let mut leb = [0u8; 10];
    for n in [BLOCK, 1, values.len()] {
        let len = uleb128::encode(n as u64, &mut leb);
        buffer.extend_from_slice(&leb[..len]);
    }
    let Some((&first, rest)) = values.split_first() else {
        put_zigzag(buffer, 0);
        return None;
    };
    put_zigzag(buffer, i64::from(first.int32()));
    let (mut least, mut greatest) = (first, first);
    let mut prev = i64::from(first.int32());
    let mut deltas = [0i64; BLOCK];
    let mut packed = [0u64; BLOCK];
    for block in rest.chunks(BLOCK) {
        least = block.iter().fold(least, |m, &x| m.min(x));
        greatest = block.iter().fold(greatest, |m, &x| m.max(x));
        let deltas = &mut deltas[..block.len()];
        for (d, &x) in deltas.iter_mut().zip(block) {
            let x = i64::from(x.int32());
            *d = x.wrapping_sub(prev);
            prev = x;
        }
        let min = deltas.iter().fold(i64::MAX, |m, &d| m.min(d));
        let max = deltas.iter().fold(i64::MIN, |m, &d| m.max(d));
        for (p, &d) in packed.iter_mut().zip(deltas.iter()) {
            *p = d.wrapping_sub(min) as u64;
        }
        let bits = 64 - max.abs_diff(min).leading_zeros() as usize;
        put_zigzag(buffer, min);
        buffer.push(bits as u8);
        if bits > 0 {
            let start = buffer.len();
            buffer.resize(start + (BLOCK * bits).div_ceil(8), 0);
            bitpacked::encode(&packed, bits, &mut buffer[start..]);
        }
    }
    Some((least, greatest))
}

fn put_zigzag(buffer: &mut Vec<u8>, x: i64) {
    let (bytes, len) = zigzag_leb128::encode(x);
    buffer.extend_from_slice(&bytes[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars_arrow::array::{Array, PrimitiveArray};
    use polars_arrow::datatypes::Field;
    use polars_parquet::write::{array_to_columns, to_parquet_type, CompressionOptions};

    fn options() -> WriteOptions {
        WriteOptions {
            statistics: StatisticsOptions::default(),
            compression: CompressionOptions::Uncompressed,
            version: Version::V1,
            data_page_size: None,
        }
    }

    /// Header (as text: the thrift types compare no other way) and bytes of each page.
    fn described(pages: impl IntoIterator<Item = Page>) -> Vec<(String, Vec<u8>)> {
        pages
            .into_iter()
            .map(|p| match p {
                Page::Data(p) => (format!("{:?}", p.header()), p.buffer().to_vec()),
                Page::Dict(_) => panic!("a dictionary page"),
            })
            .collect()
    }

    fn assert_same_pages(array: Box<dyn Array>, nullable: bool) {
        let field = Field::new("x".into(), array.dtype().clone(), nullable);
        let type_ = to_parquet_type(&field).unwrap();
        let encoding = [Encoding::DeltaBinaryPacked];
        let ours = delta_pages(array.as_ref(), &type_, &encoding, options()).expect("our pages");
        let theirs: Vec<Page> = array_to_columns(array.as_ref(), type_, options(), &encoding)
            .unwrap()
            .into_iter()
            .flatten()
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(described(ours), described(theirs));
    }

    #[test]
    fn edge_lengths_and_values() {
        for len in [0, 1, 2, 255, 256, 257, 513, 209_715, 209_716, 500_000] {
            let ramp: Vec<u32> = (0..len as u32)
                .map(|i| i.wrapping_mul(2_654_435_761))
                .collect();
            assert_same_pages(PrimitiveArray::from_vec(ramp).boxed(), true);
            let runs: Vec<u16> = (0..len).map(|i| (i / 10) as u16).collect();
            assert_same_pages(PrimitiveArray::from_vec(runs).boxed(), false);
        }
        let extremes = vec![u32::MAX, 0, u32::MAX, 1 << 31, (1 << 31) - 1, 7];
        assert_same_pages(PrimitiveArray::from_vec(extremes).boxed(), true);
    }

    #[test]
    fn other_columns_are_left_to_polars() {
        let type_ = |a: &dyn Array| {
            to_parquet_type(&Field::new("x".into(), a.dtype().clone(), true)).unwrap()
        };
        let floats = PrimitiveArray::from_vec(vec![1.0f32]);
        let delta = [Encoding::DeltaBinaryPacked];
        assert!(delta_pages(&floats, &type_(&floats), &delta, options()).is_none());
        let with_nulls = PrimitiveArray::<u32>::from(vec![Some(1), None]);
        assert!(delta_pages(&with_nulls, &type_(&with_nulls), &delta, options()).is_none());
        let plain = PrimitiveArray::from_vec(vec![1u32]);
        assert!(delta_pages(&plain, &type_(&plain), &[Encoding::Plain], options()).is_none());
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pages_are_polars_parquets(
            values in prop::collection::vec(any::<u32>(), 0..2000),
            spread in 0u32..32,
            nullable in any::<bool>(),
        ) {
            let narrow: Vec<u32> = values.iter().map(|&x| x >> spread).collect();
            assert_same_pages(PrimitiveArray::from_vec(narrow).boxed(), nullable);
            let short: Vec<u16> = values.iter().map(|&x| (x >> spread) as u16).collect();
            assert_same_pages(PrimitiveArray::from_vec(short).boxed(), nullable);
        }

        #[test]
        fn every_copy_of_the_encoder_writes_the_same_bytes(
            values in prop::collection::vec(any::<u32>(), 0..2000),
            spread in 0u32..32,
        ) {
            let values: Vec<u32> = values.iter().map(|&x| x >> spread).collect();
            let (mut dispatched, mut portable) = (Vec::new(), Vec::new());
            let range = encode(&values, &mut dispatched);
            prop_assert_eq!(range, encode_blocks(&values, &mut portable));
            prop_assert_eq!(dispatched, portable);
        }
    }
}
