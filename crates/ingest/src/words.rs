//! Word-level attention: subword tokens merged into words (Clark et al. 2019, §4.1).

use crate::annotations::Annotations;
use crate::error::{IngestError, Result};
use crate::row_source::RowSource;
use crate::source::{Dims, SlabBuffer, SlabId};
use crate::tokens::Tokens;
use crate::wordrule::word_pieces;

/// How a word's row is made from its pieces' rows (attention *from* a word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordFrom {
    /// The mean of the pieces' rows (Clark et al.): still sums to 1.
    #[default]
    Mean,
    /// The first piece's row.
    First,
    /// The elementwise maximum of the pieces' rows, renormalised to sum to 1.
    Max,
}

/// One word: its pieces (valid token positions, ascending) and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub pieces: Vec<u32>,
    pub text: String,
}

/// Groups the valid positions of a token row into words by the word rule
/// ([`word_pieces`](crate::word_pieces)): a word's text is its pieces' visible text.
pub fn group_words(tokens: &[String], valid: &[u32]) -> Vec<Word> {
    let row: Vec<&str> = valid.iter().map(|&p| tokens[p as usize].as_str()).collect();
    let mut words: Vec<Word> = Vec::new();
    for (&p, piece) in valid.iter().zip(word_pieces(&row)) {
        match words.last_mut() {
            Some(w) if !piece.starts_word => {
                w.pieces.push(p);
                w.text.push_str(&piece.text);
            }
            _ => words.push(Word {
                pieces: vec![p],
                text: piece.text,
            }),
        }
    }
    words
}

/// A row source whose positions are words: attention *to* a word is the sum over its pieces,
/// attention *from* a word combines its pieces' rows ([`WordFrom`]). Every analysis runs on
/// it unchanged; `position` columns then index words.
pub struct WordMerged<'a, S: RowSource> {
    inner: &'a S,
    from: WordFrom,
    /// Per batch row of the inner source: its words.
    words: Vec<Vec<Word>>,
    /// Per batch row: 0..number of words.
    positions: Vec<Vec<u32>>,
    tokens: Tokens,
    width: usize,
}

impl<'a, S: RowSource> WordMerged<'a, S> {
    /// Merges the tokens of `inner` (which must have tokens, and the same valid queries as
    /// keys). `name` is the input named in errors.
    pub fn new(inner: &'a S, from: WordFrom, name: &std::path::Path) -> Result<Self> {
        let tokens = inner.tokens().ok_or_else(|| {
            IngestError::invalid(
                name,
                "--words needs tokens (--tokens, or --input-ids with --vocab)",
            )
        })?;
        let dims = inner.dims();
        let mut words = Vec::with_capacity(dims.batch);
        for b in 0..dims.batch as u32 {
            let keys = inner.valid_keys(b);
            if inner.valid_queries(b) != keys {
                return Err(IngestError::invalid(
                    name,
                    "--words needs the same valid positions for queries and keys",
                ));
            }
            words.push(group_words(tokens.row(b as usize), keys));
        }
        let width = words.iter().map(Vec::len).max().unwrap_or(0);
        let positions = words
            .iter()
            .map(|w| (0..w.len() as u32).collect())
            .collect();
        let rows = words
            .iter()
            .map(|w| {
                let mut r: Vec<String> = w.iter().map(|x| x.text.clone()).collect();
                r.resize(width, String::new());
                r
            })
            .collect();
        Ok(WordMerged {
            inner,
            from,
            words,
            positions,
            tokens: Tokens::from_rows(rows),
            width,
        })
    }

    /// The words of batch row `b`.
    pub fn words(&self, b: u32) -> &[Word] {
        &self.words[b as usize]
    }
}

impl<S: RowSource> RowSource for WordMerged<'_, S> {
    fn dims(&self) -> Dims {
        Dims {
            queries: self.width,
            keys: self.width,
            ..self.inner.dims()
        }
    }

    fn annotations(&self) -> &Annotations {
        self.inner.annotations()
    }

    fn slabs(&self) -> Vec<SlabId> {
        self.inner.slabs()
    }

    fn valid_queries(&self, b: u32) -> &[u32] {
        &self.positions[b as usize]
    }

    fn valid_keys(&self, b: u32) -> &[u32] {
        &self.positions[b as usize]
    }

    fn tokens(&self) -> Option<&Tokens> {
        Some(&self.tokens)
    }

    fn is_seekable(&self) -> bool {
        self.inner.is_seekable()
    }

    fn for_each_query_row(
        &self,
        s: SlabId,
        buf: &mut SlabBuffer,
        mut f: impl FnMut(usize, u32, &[f32]),
    ) -> Result<()> {
        let words = &self.words[s.batch as usize];
        // Which word each valid token position belongs to, and which piece of it.
        let mut word_of = vec![(u32::MAX, 0usize); self.inner.dims().keys];
        for (w, word) in words.iter().enumerate() {
            for (i, &p) in word.pieces.iter().enumerate() {
                word_of[p as usize] = (w as u32, i);
            }
        }
        let mut merged = vec![0f32; self.width];
        let mut acc = vec![0f64; self.width];
        self.inner.for_each_query_row(s, buf, |_, q, row| {
            let (w, piece) = word_of[q as usize];
            let word = &words[w as usize];
            // Attention to each word: the sum over its pieces (entries beyond the row's words
            // stay 0).
            for (k, kw) in words.iter().enumerate() {
                merged[k] = kw.pieces.iter().map(|&p| row[p as usize]).sum();
            }
            if piece == 0 {
                acc.iter_mut().for_each(|a| {
                    *a = match self.from {
                        WordFrom::Max => f64::NEG_INFINITY,
                        _ => 0.0,
                    }
                });
            }
            for (a, &m) in acc.iter_mut().zip(&merged).take(words.len()) {
                let m = m as f64;
                *a = match self.from {
                    WordFrom::Mean => *a + m,
                    WordFrom::First if piece == 0 => m,
                    WordFrom::First => *a,
                    WordFrom::Max => a.max(m),
                };
            }
            if piece + 1 == word.pieces.len() {
                let n = words.len();
                let scale = match self.from {
                    WordFrom::Mean => 1.0 / word.pieces.len() as f64,
                    WordFrom::First => 1.0,
                    WordFrom::Max => 1.0 / acc[..n].iter().sum::<f64>(),
                };
                for (m, a) in merged.iter_mut().zip(&acc).take(n) {
                    *m = (a * scale) as f32;
                }
                f(w as usize, w, &merged);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wordpiece_and_sentencepiece_words() {
        let wp = toks(&[
            "[CLS]", "the", "window", "##s", "##ill", "##", "[SEP]", "[PAD]",
        ]);
        let w = group_words(&wp, &[0, 1, 2, 3, 4, 5, 6]);
        let texts: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["[CLS]", "the", "windowsill", "##", "[SEP]"]);
        assert_eq!(w[2].pieces, vec![2, 3, 4]);
        let sp = toks(&["<s>", "▁The", "▁window", "s", "ill", "▁.", "</s>"]);
        let w = group_words(&sp, &[0, 1, 2, 3, 4, 5, 6]);
        let texts: Vec<&str> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["<s>", "The", "windowsill", ".", "</s>"]);
        let bpe = toks(&["Ġthe", "Ġcat", "s", "Ġsat"]);
        assert_eq!(group_words(&bpe, &[0, 1, 2, 3]).len(), 3);
    }
}
