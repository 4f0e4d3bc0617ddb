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
        let cats = categories("token");
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
    let cats = categories("token");
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

/// A Categorical column over a few labels (a dataset's `example_id`, one per batch row of a
/// file): each row names its label by index.
pub struct LabelColumn {
    name: PlSmallStr,
    dtype: DataType,
    codes: Vec<u32>,
}

impl LabelColumn {
    pub fn new(name: &str, labels: &[String]) -> PolarsResult<LabelColumn> {
        let cats = categories(name);
        let mapping = cats.mapping();
        let codes = labels
            .iter()
            .map(|l| mapping.insert_cat(l))
            .collect::<PolarsResult<Vec<u32>>>()?;
        Ok(LabelColumn {
            name: name.into(),
            dtype: DataType::Categorical(cats, mapping),
            codes,
        })
    }

    /// The column whose rows hold the labels at `indices`.
    pub fn column(&self, indices: impl Iterator<Item = usize>) -> Column {
        let codes: Vec<u32> = indices.map(|i| self.codes[i]).collect();
        let phys = UInt32Chunked::from_vec(self.name.clone(), codes);
        // SAFETY: every code came from this mapping.
        let ca = unsafe {
            Categorical32Chunked::from_cats_and_dtype_unchecked(phys, self.dtype.clone())
        };
        ca.into_series().into_column()
    }
}

const NAMESPACE: &str = "attnframes";

thread_local! {
    /// Inside [`with_private_dictionaries`]: how deep.
    static PRIVATE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

static PRIVATE_COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `f` with dictionaries of its own. Files analysed in parallel would otherwise insert
/// their tokens into one shared mapping in whatever order the threads run, and the codes —
/// so the bytes written — would change from run to run. [`adopt_dictionaries`] moves the
/// frames into the shared mappings afterwards, in a fixed order.
pub fn with_private_dictionaries<T>(f: impl FnOnce() -> T) -> T {
    PRIVATE.with(|p| p.set(p.get() + 1));
    let out = f();
    PRIVATE.with(|p| p.set(p.get() - 1));
    out
}

/// Re-codes the Categorical columns that [`with_private_dictionaries`] made into the shared
/// mappings of their names, inserting their strings in the order of their own codes.
pub fn adopt_dictionaries(mut df: DataFrame) -> PolarsResult<DataFrame> {
    let names: Vec<PlSmallStr> = df.get_column_names_owned();
    for name in names {
        let col = df.column(&name)?;
        let DataType::Categorical(cats, mapping) = col.dtype() else {
            continue;
        };
        if cats.namespace() == NAMESPACE {
            continue;
        }
        let shared = categories(cats.name());
        let shared_mapping = shared.mapping();
        let table = (0..mapping.num_cats_upper_bound() as u32)
            .map(|c| {
                mapping
                    .cat_to_str(c)
                    .map_or(Ok(0), |s| shared_mapping.insert_cat(s))
            })
            .collect::<PolarsResult<Vec<u32>>>()?;
        // Null rows hold code 0 beneath their null bit, which may be no code at all.
        let phys = col
            .cat32()?
            .physical()
            .apply_values(|c| table.get(c as usize).copied().unwrap_or(0));
        let dtype = DataType::Categorical(shared, shared_mapping);
        // SAFETY: every valid code came from the shared mapping through `table`.
        let ca = unsafe { Categorical32Chunked::from_cats_and_dtype_unchecked(phys, dtype) };
        df.with_column(ca.into_series().into_column())?;
    }
    Ok(df)
}

/// The categories of a column. Fixed names: polars writes them into the Arrow schema, and a
/// random one would make two runs on the same input differ in their bytes. Columns of one name
/// share a mapping while any of them lives, so the chunks of a dataset part concatenate.
/// Under [`with_private_dictionaries`], a mapping of its own.
fn categories(name: &str) -> Arc<Categories> {
    let namespace = if PRIVATE.with(|p| p.get() > 0) {
        let n = PRIVATE_COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PlSmallStr::from(format!("{NAMESPACE}-private-{n}"))
    } else {
        PlSmallStr::from_static(NAMESPACE)
    };
    Categories::new(PlSmallStr::from(name), namespace, CategoricalPhysical::U32)
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
