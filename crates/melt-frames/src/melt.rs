//! The melt itself: index grids filled run by run, values decoded chunk by chunk.

use frame_sink::TokenDictionary;
use ingest::{Dtype, IngestError, TensorFile, Tokens};
use polars::prelude::*;

use crate::{MeltError, Result};

/// How many rows each frame holds at most.
#[derive(Debug, Clone, Copy)]
pub struct MeltOptions {
    pub chunk_rows: usize,
}

/// The Arrow type `value` gets for an element type.
#[derive(Debug, Clone, Copy)]
enum ValueKind {
    F32,
    F64,
    I32,
    U32,
    I64,
    U64,
    Bool,
}

impl ValueKind {
    fn of(dtype: Dtype) -> ValueKind {
        match dtype {
            Dtype::F16 | Dtype::BF16 | Dtype::F32 => ValueKind::F32,
            Dtype::F64 => ValueKind::F64,
            Dtype::Bool => ValueKind::Bool,
            Dtype::Int { bytes: 8, signed } => {
                if signed {
                    ValueKind::I64
                } else {
                    ValueKind::U64
                }
            }
            Dtype::Int {
                bytes: 4,
                signed: false,
            } => ValueKind::U32,
            Dtype::Int { .. } => ValueKind::I32,
        }
    }
}

/// One index column: its name, axis length, C-order stride and whether it is u16.
struct Axis {
    name: String,
    len: u64,
    stride: u64,
    narrow: bool,
    token: Option<String>,
}

/// The frames of one tensor, chunk by chunk (an iterator of `Result<DataFrame>`).
pub struct MeltFrames<'a> {
    tensor: &'a TensorFile,
    axes: Vec<Axis>,
    batch_axis: Option<usize>,
    tokens: Option<TokenDictionary>,
    kind: ValueKind,
    chunk_rows: u64,
    next_row: u64,
    scratch: Vec<u8>,
}

impl<'a> MeltFrames<'a> {
    /// Checks the axis names against the tensor (one per axis, unique, not `value` or a token
    /// column's name, `layer`/`head` within u16) and the tokens against the position axes.
    pub fn new(
        tensor: &'a TensorFile,
        names: &[String],
        tokens: Option<&Tokens>,
        opts: MeltOptions,
    ) -> Result<MeltFrames<'a>> {
        let shape = &tensor.shape;
        if names.len() != shape.len() {
            return Err(MeltError::Axes(format!(
                "--axes names {} axes but {} is {}-D {:?}",
                names.len(),
                tensor.path.display(),
                shape.len(),
                shape
            )));
        }
        let axes = index_axes(names, shape, tokens.is_some())?;
        let batch_axis = names.iter().position(|n| n == "batch");
        let tokens = tokens
            .map(|t| token_dictionary(t, &axes, batch_axis, tensor))
            .transpose()?;
        Ok(MeltFrames {
            tensor,
            axes,
            batch_axis,
            tokens,
            kind: ValueKind::of(tensor.element.dtype),
            chunk_rows: opts.chunk_rows.max(1) as u64,
            next_row: 0,
            scratch: Vec::new(),
        })
    }

    /// Rows written so far and rows in all.
    pub fn progress(&self) -> (u64, u64) {
        (self.next_row, self.tensor.len())
    }

    /// A zero-row frame with the output schema (for a tensor with no elements).
    pub fn empty(&mut self) -> Result<DataFrame> {
        self.frame(0, 0)
    }

    fn frame(&mut self, start: u64, end: u64) -> Result<DataFrame> {
        let n = (end - start) as usize;
        let mut columns = Vec::with_capacity(self.axes.len() * 2 + 1);
        let batches = self.batch_axis.map(|a| index_grid(&self.axes[a], start, n));
        for axis in &self.axes {
            let grid = index_grid(axis, start, n);
            if let (Some(dict), Some(token)) = (&self.tokens, &axis.token) {
                let codes = grid
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| dict.code(batches.as_ref().map_or(0, |b| b[i]), p))
                    .collect();
                columns.push(index_column(axis, grid));
                columns.push(dict.column(token, codes));
            } else {
                columns.push(index_column(axis, grid));
            }
        }
        columns.push(self.values(start, n)?);
        Ok(DataFrame::new(n, columns)?)
    }

    fn values(&mut self, start: u64, n: usize) -> Result<Column> {
        let e = self.tensor.element;
        let w = e.size();
        self.read_elements(start, n)?;
        let raw = &self.scratch;
        let each = |i: usize| &raw[i * w..(i + 1) * w];
        let col = match self.kind {
            ValueKind::F32 => {
                let mut out = vec![0f32; n];
                e.floats_to_f32(raw, &mut out);
                Float32Chunked::from_vec("value".into(), out).into_column()
            }
            ValueKind::F64 => {
                let out = (0..n).map(|i| e.to_f64(each(i))).collect();
                Float64Chunked::from_vec("value".into(), out).into_column()
            }
            ValueKind::I32 => {
                let out = (0..n).map(|i| e.to_i64(each(i)) as i32).collect();
                Int32Chunked::from_vec("value".into(), out).into_column()
            }
            ValueKind::U32 => {
                let out = (0..n).map(|i| e.to_i64(each(i)) as u32).collect();
                UInt32Chunked::from_vec("value".into(), out).into_column()
            }
            ValueKind::I64 => {
                let out = (0..n).map(|i| e.to_i64(each(i))).collect();
                Int64Chunked::from_vec("value".into(), out).into_column()
            }
            ValueKind::U64 => {
                let out = (0..n).map(|i| u64_value(each(i), e.big_endian)).collect();
                UInt64Chunked::from_vec("value".into(), out).into_column()
            }
            ValueKind::Bool => {
                let out: Vec<bool> = raw.iter().map(|&b| b != 0).collect();
                BooleanChunked::from_slice("value".into(), &out).into_column()
            }
        };
        Ok(col)
    }

    /// Raw bytes of logical (C-order) elements `start..start + n` into `scratch`.
    fn read_elements(&mut self, start: u64, n: usize) -> Result<()> {
        let t = self.tensor;
        let w = t.element.size();
        self.scratch.resize(n * w, 0);
        if !t.fortran_order || t.shape.len() < 2 {
            t.read_at(start * w as u64, &mut self.scratch)?;
            return Ok(());
        }
        // Fortran order: each logical element sits at the offset its storage strides give.
        let strides = t.strides();
        for (i, chunk) in self.scratch.chunks_exact_mut(w).enumerate() {
            let offset: u64 = self
                .axes
                .iter()
                .zip(&strides)
                .map(|(a, s)| ((start + i as u64) / a.stride % a.len) * s)
                .sum();
            t.read_at(offset * w as u64, chunk)?;
        }
        Ok(())
    }
}

impl Iterator for MeltFrames<'_> {
    type Item = Result<DataFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        let total = self.tensor.len();
        if self.next_row >= total {
            return None;
        }
        let start = self.next_row;
        let end = (start + self.chunk_rows).min(total);
        self.next_row = end;
        Some(self.frame(start, end))
    }
}

fn u64_value(b: &[u8], big_endian: bool) -> u64 {
    let a: [u8; 8] = b.try_into().expect("8-byte element");
    if big_endian {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

fn index_axes(names: &[String], shape: &[usize], with_tokens: bool) -> Result<Vec<Axis>> {
    let mut axes: Vec<Axis> = Vec::with_capacity(names.len());
    let mut stride = 1u64;
    for (name, &len) in names.iter().zip(shape).rev() {
        let narrow = name == "layer" || name == "head";
        if narrow && len > u16::MAX as usize + 1 {
            return Err(MeltError::Axes(format!(
                "axis '{name}' has {len} entries, more than a u16 column holds"
            )));
        }
        if len as u64 > u32::MAX as u64 + 1 {
            return Err(MeltError::Axes(format!(
                "axis '{name}' has {len} entries, more than a u32 column holds"
            )));
        }
        let token = match name.as_str() {
            "position" if with_tokens => Some("token".to_string()),
            "query_position" if with_tokens => Some("query_token".to_string()),
            _ => None,
        };
        axes.push(Axis {
            name: name.clone(),
            len: len as u64,
            stride,
            narrow,
            token,
        });
        stride *= len as u64;
    }
    axes.reverse();
    let mut seen: Vec<&str> = vec!["value"];
    for a in &axes {
        for n in std::iter::once(a.name.as_str()).chain(a.token.as_deref()) {
            if n.is_empty() || seen.contains(&n) {
                return Err(MeltError::Axes(format!(
                    "--axes: column name '{n}' is empty or used twice (with 'value' and token columns)"
                )));
            }
            seen.push(n);
        }
    }
    Ok(axes)
}

fn token_dictionary(
    tokens: &Tokens,
    axes: &[Axis],
    batch_axis: Option<usize>,
    tensor: &TensorFile,
) -> Result<TokenDictionary> {
    let batch_rows = batch_axis.map_or(1, |a| axes[a].len as usize);
    let fits = tokens.batch_rows() >= batch_rows
        && axes
            .iter()
            .filter(|a| a.token.is_some())
            .all(|a| (0..batch_rows).all(|b| tokens.row(b).len() == a.len as usize));
    if !fits {
        return Err(IngestError::invalid(
            &tensor.path,
            "the tokens do not match the position axes (one token per position, one row per batch)"
                .to_string(),
        )
        .into());
    }
    let rows = (0..batch_rows).map(|b| tokens.row(b).iter().map(String::as_str));
    Ok(TokenDictionary::new(rows)?)
}

/// The C-order index of `axis` for flat rows `start..start + n`, filled run by run.
fn index_grid(axis: &Axis, start: u64, n: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(n);
    let mut row = start;
    while out.len() < n {
        let value = (row / axis.stride % axis.len) as u32;
        let run = (axis.stride - row % axis.stride).min((n - out.len()) as u64);
        out.extend(std::iter::repeat_n(value, run as usize));
        row += run;
    }
    out
}

fn index_column(axis: &Axis, grid: Vec<u32>) -> Column {
    if axis.narrow {
        let narrow: Vec<u16> = grid.into_iter().map(|v| v as u16).collect();
        UInt16Chunked::from_vec(axis.name.as_str().into(), narrow).into_column()
    } else {
        UInt32Chunked::from_vec(axis.name.as_str().into(), grid).into_column()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(len: u64, stride: u64) -> Axis {
        Axis {
            name: "a".into(),
            len,
            stride,
            narrow: false,
            token: None,
        }
    }

    #[test]
    fn index_grid_matches_division_for_any_window() {
        // Axis of length 3 and stride 4 in a (2, 3, 4) tensor: index = row / 4 % 3.
        let a = axis(3, 4);
        for start in 0..24u64 {
            for n in 0..(24 - start as usize) {
                let want: Vec<u32> = (start..start + n as u64)
                    .map(|r| (r / 4 % 3) as u32)
                    .collect();
                assert_eq!(index_grid(&a, start, n), want, "start {start} n {n}");
            }
        }
    }

    #[test]
    fn axis_names_must_be_unique_and_fit() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(index_axes(&names(&["a", "a"]), &[2, 2], false).is_err());
        assert!(index_axes(&names(&["a", "value"]), &[2, 2], false).is_err());
        assert!(index_axes(&names(&["position", "token"]), &[2, 2], true).is_err());
        assert!(index_axes(&names(&["layer", "x"]), &[70_000, 2], false).is_err());
        let ok = index_axes(&names(&["layer", "head", "dim"]), &[2, 3, 4], false).unwrap();
        assert_eq!(
            ok.iter().map(|a| a.stride).collect::<Vec<_>>(),
            vec![12, 4, 1]
        );
    }
}
