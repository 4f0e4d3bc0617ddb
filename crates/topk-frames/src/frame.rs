//! Building polars columns from typed vectors the analyses fill directly.

use frame_sink::{null_token_column, TokenDictionary};
use polars::prelude::*;

pub fn u32_col(name: &str, v: Vec<u32>) -> Column {
    UInt32Chunked::from_vec(name.into(), v).into_column()
}

pub fn u16_col(name: &str, v: Vec<u16>) -> Column {
    UInt16Chunked::from_vec(name.into(), v).into_column()
}

pub fn f32_col(name: &str, v: Vec<f32>) -> Column {
    Float32Chunked::from_vec(name.into(), v).into_column()
}

/// A token column from codes, or all null when no tokens were given.
pub fn token_col(
    name: &str,
    dict: Option<&TokenDictionary>,
    codes: Vec<u32>,
    len: usize,
) -> Column {
    match dict {
        Some(d) => d.column(name, codes),
        None => null_token_column(name, len),
    }
}

/// Cuts `v` into consecutive mutable pieces of the given lengths.
pub fn split_by<'a, T>(mut v: &'a mut [T], lens: &[usize]) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(lens.len());
    for &n in lens {
        let (head, tail) = v.split_at_mut(n);
        out.push(head);
        v = tail;
    }
    out
}
