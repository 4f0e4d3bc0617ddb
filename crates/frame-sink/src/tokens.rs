use std::sync::Arc;

use polars::prelude::*;
use polars_arrow::array::PrimitiveArray;
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::ArrowDataType;

/// One Categorical mapping for every token string of a run, with the code of each
/// (batch row, position). All strings are inserted before any frame is built, so every
/// chunk carries the same dictionary (Arrow IPC files forbid replacing it).
pub struct TokenDictionary {
    dtype: DataType,
    codes: Vec<Vec<u32>>,
}

impl TokenDictionary {
    /// `rows[b][p]` = token of position `p` in batch row `b`.
    pub fn new<'a, R, I>(rows: R) -> PolarsResult<TokenDictionary>
    where
        R: IntoIterator<Item = I>,
        I: IntoIterator<Item = &'a str>,
    {
        let cats = token_categories();
        let mapping = cats.mapping();
        let codes = rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|t| mapping.insert_cat(t))
                    .collect::<PolarsResult<Vec<u32>>>()
            })
            .collect::<PolarsResult<Vec<_>>>()?;
        Ok(TokenDictionary {
            dtype: DataType::Categorical(cats, mapping),
            codes,
        })
    }

    /// Code of the token at `position` of batch row `batch`.
    #[inline]
    pub fn code(&self, batch: u32, position: u32) -> u32 {
        self.codes[batch as usize][position as usize]
    }

    /// Codes of batch row `batch`, indexed by position.
    pub fn row(&self, batch: u32) -> &[u32] {
        &self.codes[batch as usize]
    }

    /// A token column from codes filled by the caller.
    pub fn column(&self, name: &str, codes: Vec<u32>) -> Column {
        let phys = UInt32Chunked::from_vec(name.into(), codes);
        // SAFETY: every code came from `self.code`, i.e. from this mapping.
        let ca = unsafe {
            Categorical32Chunked::from_cats_and_dtype_unchecked(phys, self.dtype.clone())
        };
        ca.into_series().into_column()
    }
}

/// An all-null token column of `len` rows (no tokens were given): a categorical like the
/// token columns, whose codes are all null. (A null String column costs more to materialise
/// than the rest of a small frame.)
pub fn null_token_column(name: &str, len: usize) -> Column {
    let cats = token_categories();
    let dtype = DataType::Categorical(cats.clone(), cats.mapping());
    // Built from fresh vectors: `full_null` materialises polars' shared zero buffer, which
    // costs more than the rest of a small run.
    let validity = Bitmap::from_u8_vec(vec![0u8; len.div_ceil(8)], len);
    let codes = PrimitiveArray::new(
        ArrowDataType::UInt32,
        vec![0u32; len].into(),
        Some(validity),
    );
    let phys = UInt32Chunked::with_chunk(name.into(), codes);
    // SAFETY: every code is null.
    let ca = unsafe { Categorical32Chunked::from_cats_and_dtype_unchecked(phys, dtype) };
    ca.into_series().into_column()
}

/// The categories of token columns. A fixed name: polars writes it into the Arrow schema, and
/// a random one would make two runs on the same input differ in their bytes.
fn token_categories() -> Arc<Categories> {
    Categories::new(
        PlSmallStr::from_static("token"),
        PlSmallStr::from_static("attnframes"),
        CategoricalPhysical::U32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decode_to_their_strings() {
        let d = TokenDictionary::new([vec!["[CLS]", "a", "b"], vec!["[CLS]", "b", "c"]]).unwrap();
        assert_eq!(d.code(0, 0), d.code(1, 0));
        assert_eq!(d.code(0, 2), d.code(1, 1));
        let col = d.column("token", vec![d.code(1, 2), d.code(0, 1)]);
        let s = col
            .as_materialized_series()
            .cast(&DataType::String)
            .unwrap();
        let v: Vec<Option<&str>> = (0..s.len()).map(|i| s.str().unwrap().get(i)).collect();
        assert_eq!(v, vec![Some("c"), Some("a")]);
    }
}
