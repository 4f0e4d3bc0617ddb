//! The one word rule: where words start in a row of subword tokens, and how each token reads
//! in running text. `--words` ([`group_words`](crate::group_words)), `plot --text` and every
//! other place that shows or merges words call [`word_pieces`].
//!
//! The conventions of the four tokenizer families:
//! - WordPiece (BERT): `##piece` continues the word before it;
//! - SentencePiece (T5, XLM-R, Llama 2): `▁` marks a word start (it stands for a space); a
//!   piece without it continues the word; byte-fallback pieces `<0x0A>` stand for one byte;
//! - byte-level BPE (GPT-2, RoBERTa, Llama 3): each byte is written as one character of
//!   GPT-2's byte↔unicode table (`Ġ` = space, `Ċ` = newline, `Ã©` = the two bytes of `é`); a
//!   piece starting with a space starts a word. Pieces are decoded back to their bytes, so the
//!   text shows `é` and line breaks;
//! - in every family, a piece that is whitespace (a newline, say) is a word of its own and ends
//!   the word before it, and special tokens (`[CLS]`, `<s>`, `</s>`, `<|endoftext|>`) never
//!   join a word.

/// One token as shown in running text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The visible text: markers (`##`, `▁`, a leading `Ġ`) removed, bytes decoded. A
    /// multi-byte character split across pieces shows in the piece where it completes.
    pub text: String,
    /// This piece starts a word (false: it continues the word before it, with no space).
    pub starts_word: bool,
    /// The piece is whitespace only (its text holds the whitespace, a newline included).
    pub whitespace: bool,
}

/// `[CLS]`, `<s>`, `</s>`, `<|endoftext|>`, `<pad>` … but not a byte-fallback piece `<0x0A>`.
pub fn is_special(t: &str) -> bool {
    let bracketed =
        t.starts_with('[') && t.ends_with(']') || t.starts_with('<') && t.ends_with('>');
    bracketed && t.len() > 2 && byte_fallback(t).is_none()
}

/// SentencePiece's byte-fallback piece `<0xHH>`: the byte it stands for.
fn byte_fallback(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// GPT-2's `bytes_to_unicode` inverted: the byte a character of a byte-level vocabulary
/// stands for. Printable Latin-1 bytes stand for themselves; the other 68 bytes were moved
/// to U+0100 … U+0143 in byte order.
fn byte_of(c: char) -> Option<u8> {
    let kept = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let u = c as u32;
    if u < 256 {
        return kept(u).then_some(u as u8);
    }
    let n = u.checked_sub(256)? as usize;
    (0u32..256).filter(|&b| !kept(b)).nth(n).map(|b| b as u8)
}

/// A row is byte-level BPE when some piece carries a byte-level space or newline (`Ġ`, `Ċ`)
/// and every character of every non-special piece is in the byte alphabet.
fn is_byte_level<S: AsRef<str>>(tokens: &[S]) -> bool {
    let ordinary = || tokens.iter().map(AsRef::as_ref).filter(|t| !is_special(t));
    ordinary().any(|t| t.contains(['Ġ', 'Ċ']))
        && ordinary().all(|t| t.chars().all(|c| byte_of(c).is_some()))
}

/// What one token contributes before the row's pieces are tied together.
struct Raw {
    bytes: Vec<u8>,
    special: bool,
    /// Starts with a word-start marker (`▁`, a byte-level space) or is not a `##` piece.
    marked: bool,
    wordpiece_continuation: bool,
}

fn raw_piece(t: &str, byte_level: bool) -> Raw {
    let plain = |bytes: Vec<u8>, marked| Raw {
        bytes,
        special: false,
        marked,
        wordpiece_continuation: false,
    };
    if is_special(t) {
        return Raw {
            bytes: t.as_bytes().to_vec(),
            special: true,
            marked: true,
            wordpiece_continuation: false,
        };
    }
    if byte_level {
        let bytes: Vec<u8> = t.chars().filter_map(byte_of).collect();
        let marked = bytes.first() == Some(&b' ');
        return plain(bytes, marked);
    }
    if let Some(b) = byte_fallback(t) {
        return plain(vec![b], b == b' ');
    }
    if let Some(rest) = t.strip_prefix("##").filter(|r| !r.is_empty()) {
        return Raw {
            bytes: rest.as_bytes().to_vec(),
            special: false,
            marked: false,
            wordpiece_continuation: true,
        };
    }
    let text = t.replace('▁', " ");
    let marked = text.starts_with(' ');
    plain(text.into_bytes(), marked)
}

/// The pieces of a row of tokens, in order. The convention is taken from the whole row: a
/// row with word-start markers (`▁`, `Ġ`) starts words at the marked pieces; any other row
/// starts words at every piece but `##` pieces.
pub fn word_pieces<S: AsRef<str>>(tokens: &[S]) -> Vec<Piece> {
    let byte_level = is_byte_level(tokens);
    let raws: Vec<Raw> = tokens
        .iter()
        .map(|t| raw_piece(t.as_ref(), byte_level))
        .collect();
    let markers = byte_level || tokens.iter().any(|t| t.as_ref().starts_with('▁'));
    let is_space =
        |r: &Raw| !r.special && !r.bytes.is_empty() && r.bytes.iter().all(u8::is_ascii_whitespace);
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::with_capacity(raws.len());
    for (i, r) in raws.iter().enumerate() {
        let whitespace = is_space(r);
        // A newline ends a word: after a piece ending in one, and at a piece starting with one.
        let after_boundary = i == 0
            || raws[i - 1].special
            || is_space(&raws[i - 1])
            || raws[i - 1].bytes.last() == Some(&b'\n');
        let starts_word = after_boundary
            || r.special
            || whitespace
            || r.bytes.first() == Some(&b'\n')
            || if markers {
                r.marked
            } else {
                !r.wordpiece_continuation
            };
        if starts_word {
            pending.clear();
        }
        // The word-start marker is a space: it separates words and is not shown.
        let shown = if starts_word && !whitespace && !r.special {
            let spaces = r.bytes.iter().take_while(|&&b| b == b' ').count();
            &r.bytes[spaces..]
        } else {
            &r.bytes[..]
        };
        pending.extend_from_slice(shown);
        let text = take_complete_utf8(&mut pending, whitespace || r.special);
        out.push(Piece {
            text,
            starts_word,
            whitespace,
        });
    }
    out
}

/// The text of the complete characters at the front of `bytes`, removed from it; an
/// incomplete character at the end stays for the next piece unless `flush` is set (invalid
/// bytes read as U+FFFD).
fn take_complete_utf8(bytes: &mut Vec<u8>, flush: bool) -> String {
    let complete = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() && !flush => e.valid_up_to(),
        Err(_) => bytes.len(),
    };
    let text = String::from_utf8_lossy(&bytes[..complete]).into_owned();
    bytes.drain(..complete);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row's words as text, joined by `|`.
    fn words(tokens: &[&str]) -> String {
        let mut out = String::new();
        for (i, p) in word_pieces(tokens).iter().enumerate() {
            if i > 0 && p.starts_word {
                out.push('|');
            }
            out.push_str(&p.text);
        }
        out
    }

    #[test]
    fn wordpiece() {
        assert_eq!(
            words(&["[CLS]", "the", "play", "##ing", "##", "[SEP]"]),
            "[CLS]|the|playing|##|[SEP]"
        );
    }

    #[test]
    fn sentencepiece() {
        assert_eq!(
            words(&["▁The", "▁house", "▁is", "▁wunder", "bar", ".", "</s>"]),
            "The|house|is|wunderbar.|</s>"
        );
        // Byte fallback: a newline piece ends the word, and the next piece starts one.
        assert_eq!(words(&["▁a", "b", "<0x0A>", "c", "▁d"]), "ab|\n|c|d");
    }

    #[test]
    fn byte_level_bpe_is_decoded() {
        assert_eq!(
            words(&[
                "<|endoftext|>",
                "Hello",
                "Ġwin",
                "dows",
                "Ġcaf",
                "Ã©",
                "Ġ<",
                "script",
                ">",
                "Ċ",
                "The",
                "Ġend"
            ]),
            "<|endoftext|>|Hello|windows|café|<script>|\n|The|end"
        );
    }

    #[test]
    fn a_character_split_across_pieces_shows_where_it_completes() {
        // 'é' is the bytes C3 A9, written Ã and ©; here in two pieces.
        let p = word_pieces(&["Ġcaf", "Ã", "©", "Ġx"]);
        assert_eq!(p[1].text, "");
        assert_eq!(p[2].text, "é");
        assert!(!p[1].starts_word && !p[2].starts_word && p[3].starts_word);
    }

    #[test]
    fn a_newline_inside_pieces_ends_the_word() {
        assert_eq!(words(&["▁a", ">\n", "b", "\nc", "d"]), "a>\n|b|\ncd");
    }

    #[test]
    fn special_tokens_never_join() {
        assert_eq!(words(&["▁a", "<s>", "b", "▁c"]), "a|<s>|b|c");
        assert_eq!(words(&["[CLS]", "##x"]), "[CLS]|x");
    }

    #[test]
    fn the_byte_table_round_trips() {
        assert_eq!(byte_of('Ġ'), Some(b' '));
        assert_eq!(byte_of('Ċ'), Some(b'\n'));
        assert_eq!(byte_of('A'), Some(b'A'));
        assert_eq!(byte_of('Ã'), Some(0xC3));
        assert_eq!(byte_of('\u{143}'), Some(0xAD));
        assert_eq!(byte_of('▁'), None);
        let all: std::collections::BTreeSet<u8> = (0u32..0x144)
            .filter_map(char::from_u32)
            .filter_map(byte_of)
            .collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn accented_wordpiece_text_is_not_byte_decoded() {
        assert_eq!(words(&["café", "##s", "naïve"]), "cafés|naïve");
    }
}
