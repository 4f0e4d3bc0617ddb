//! Generation steps as a long frame: the entries each step holds for the positions it adds.

use frame_sink::TokenDictionary;
use ingest::{GenerationSteps, RowSource, SlabBuffer, SlabId};
use polars::prelude::*;

use crate::Result;

/// The frames of one generation's steps, chunk by chunk (an iterator of
/// `Result<DataFrame>`): `batch` u32, `layer` u16, `head` u16, `query_position` u32
/// (`query_token`), `position` u32 (`token`), `value` f32. Row p holds the keys its step
/// holds, 0..K_t (with a KV cache, keys 0..=p: the lower triangle a forward pass over the
/// whole sequence computes; the keys after K_t, which no step holds, are left out). Rows come
/// in (batch, layer, head, query_position, position) order, one slab read at a time.
pub struct StepFrames<'a> {
    src: &'a GenerationSteps,
    slabs: Vec<SlabId>,
    next_slab: usize,
    tokens: Option<TokenDictionary>,
    chunk_rows: usize,
    /// The rows of the slab read last that are not yet out.
    pending: Option<DataFrame>,
    buf: SlabBuffer,
    rows_out: u64,
}

impl<'a> StepFrames<'a> {
    /// The frames of `src`, at most `chunk_rows` rows each; token columns when `src` has
    /// tokens.
    pub fn new(src: &'a GenerationSteps, chunk_rows: usize) -> Result<StepFrames<'a>> {
        let tokens = match src.tokens() {
            Some(t) => Some(TokenDictionary::new(
                (0..t.batch_rows()).map(|b| t.row(b).iter().map(String::as_str)),
            )?),
            None => None,
        };
        Ok(StepFrames {
            src,
            slabs: src.slabs(),
            next_slab: 0,
            tokens,
            chunk_rows: chunk_rows.max(1),
            pending: None,
            buf: SlabBuffer::default(),
            rows_out: 0,
        })
    }

    /// Rows written so far and rows in all.
    pub fn progress(&self) -> (u64, u64) {
        let per_slab: u64 = (0..self.src.dims().keys as u32)
            .map(|q| self.src.keys_of(q) as u64)
            .sum();
        (self.rows_out, per_slab * self.slabs.len() as u64)
    }

    /// A zero-row frame with the output schema.
    pub fn empty(&self) -> Result<DataFrame> {
        let s = SlabId {
            batch: 0,
            layer: 0,
            head: 0,
        };
        self.frame(s, Vec::new(), Vec::new(), Vec::new())
    }

    fn slab_frame(&mut self, s: SlabId) -> Result<DataFrame> {
        let (mut queries, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        let src = self.src;
        src.for_each_query_row(s, &mut self.buf, |_, q, row| {
            let n = src.keys_of(q);
            queries.extend(std::iter::repeat_n(q, n));
            keys.extend(0..n as u32);
            values.extend_from_slice(&row[..n]);
        })?;
        self.frame(s, queries, keys, values)
    }

    fn frame(
        &self,
        s: SlabId,
        queries: Vec<u32>,
        keys: Vec<u32>,
        values: Vec<f32>,
    ) -> Result<DataFrame> {
        let n = values.len();
        let mut columns = vec![
            UInt32Chunked::full("batch".into(), s.batch, n).into_column(),
            UInt16Chunked::full("layer".into(), s.layer, n).into_column(),
            UInt16Chunked::full("head".into(), s.head, n).into_column(),
        ];
        let token_codes = |positions: &[u32]| -> Vec<u32> {
            let dict = self.tokens.as_ref().expect("asked with tokens");
            positions.iter().map(|&p| dict.code(s.batch, p)).collect()
        };
        for (name, token, positions) in [
            ("query_position", "query_token", queries),
            ("position", "token", keys),
        ] {
            let codes = self.tokens.as_ref().map(|_| token_codes(&positions));
            columns.push(UInt32Chunked::from_vec(name.into(), positions).into_column());
            if let (Some(dict), Some(codes)) = (&self.tokens, codes) {
                columns.push(dict.column(token, codes));
            }
        }
        columns.push(Float32Chunked::from_vec("value".into(), values).into_column());
        Ok(DataFrame::new(n, columns)?)
    }
}

impl Iterator for StepFrames<'_> {
    type Item = Result<DataFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(df) = self.pending.take().filter(|df| df.height() > 0) {
                let n = self.chunk_rows.min(df.height());
                self.pending = Some(df.slice(n as i64, df.height() - n));
                self.rows_out += n as u64;
                return Some(Ok(df.slice(0, n)));
            }
            let s = *self.slabs.get(self.next_slab)?;
            self.next_slab += 1;
            match self.slab_frame(s) {
                Ok(df) => self.pending = Some(df),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
