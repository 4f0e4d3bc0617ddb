//! The `.npy` header: magic, version 1–3, and the Python-literal dict that names
//! `descr`, `fortran_order` and `shape`.

use crate::dtype::{Dtype, Element};

/// What an `.npy` header says about the array that follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    pub element: Element,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Bytes from the start of the file (or member) to the first element.
    pub data_offset: u64,
}

const MAGIC: &[u8] = b"\x93NUMPY";
/// No real header is this long; a larger length field is a corrupt file.
const MAX_HEADER_LEN: usize = 1 << 20;

/// How many bytes must be read to know the full header length: magic, version, length.
pub const PREAMBLE_LEN: usize = 12;

/// Parses the fixed preamble and returns the total header length (data offset).
pub fn header_len(preamble: &[u8]) -> Result<usize, String> {
    if preamble.len() < 10 || &preamble[..6] != MAGIC {
        return Err("not an .npy file (bad magic)".into());
    }
    let (len, fixed) = match preamble[6] {
        1 => (u16::from_le_bytes([preamble[8], preamble[9]]) as usize, 10),
        2 | 3 => {
            if preamble.len() < 12 {
                return Err("truncated .npy header".into());
            }
            let l = u32::from_le_bytes(preamble[8..12].try_into().expect("4 bytes")) as usize;
            (l, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    if len > MAX_HEADER_LEN {
        return Err(format!("header length {len} is not plausible"));
    }
    Ok(fixed + len)
}

/// Parses a whole header (`bytes` holds at least `header_len` bytes).
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    let total = header_len(bytes)?;
    if bytes.len() < total {
        return Err("truncated .npy header".into());
    }
    let fixed = if bytes[6] == 1 { 10 } else { 12 };
    let text = std::str::from_utf8(&bytes[fixed..total])
        .map_err(|_| "the .npy header is not text".to_string())?;
    let dict = parse_dict(text)?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (k, v) in dict {
        match (k.as_str(), v) {
            ("descr", Literal::Str(s)) => descr = Some(s),
            ("fortran_order", Literal::Bool(b)) => fortran = Some(b),
            ("shape", Literal::Tuple(t)) => shape = Some(t),
            ("descr", _) => return Err("structured dtypes are not supported".into()),
            (k, _) => return Err(format!("unexpected header entry '{k}'")),
        }
    }
    let descr = descr.ok_or("header has no 'descr'")?;
    Ok(NpyHeader {
        element: parse_descr(&descr)?,
        fortran_order: fortran.ok_or("header has no 'fortran_order'")?,
        shape: shape.ok_or("header has no 'shape'")?,
        data_offset: total as u64,
    })
}

/// A version 1 `.npy` header for a C-order array of `descr` (e.g. `<f4`) and `shape`,
/// padded so the data starts on a 64-byte boundary, as numpy writes it.
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend([1, 0]);
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

/// `<f4`, `>f8`, `|b1`, `<i8`, … → element type and byte order.
pub fn parse_descr(descr: &str) -> Result<Element, String> {
    let bad = || format!("unsupported dtype '{descr}'");
    let mut chars = descr.chars();
    let (order, rest) = match chars.next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.as_str()),
        _ => ('=', descr),
    };
    let mut rest_chars = rest.chars();
    let kind = rest_chars.next().ok_or_else(bad)?;
    // The size follows the kind letter, whatever its width in bytes (a damaged header can
    // put any character there).
    let bytes: u8 = rest_chars.as_str().parse().map_err(|_| bad())?;
    let dtype = match (kind, bytes) {
        ('f', 2) => Dtype::F16,
        ('f', 4) => Dtype::F32,
        ('f', 8) => Dtype::F64,
        ('i', 1 | 2 | 4 | 8) => Dtype::Int {
            bytes,
            signed: true,
        },
        ('u', 1 | 2 | 4 | 8) => Dtype::Int {
            bytes,
            signed: false,
        },
        ('b', 1) => Dtype::Bool,
        _ => return Err(bad()),
    };
    Ok(Element {
        dtype,
        big_endian: order == '>',
    })
}

#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// A tiny reader for the one Python literal numpy writes: a dict of str → str | bool | int tuple.
fn parse_dict(text: &str) -> Result<Vec<(String, Literal)>, String> {
    let mut p = Parser {
        s: text.trim().as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        let value = p.literal()?;
        out.push((key, value));
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("malformed .npy header: expected '{}'", c as char))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_ws();
        let q = *self.s.get(self.i).ok_or("malformed .npy header")?;
        if q != b'\'' && q != b'"' {
            return Err("malformed .npy header: expected a string".into());
        }
        let start = self.i + 1;
        let end = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or("malformed .npy header: unterminated string")?;
        self.i = start + end + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + end]).into_owned())
    }

    fn literal(&mut self) -> Result<Literal, String> {
        self.skip_ws();
        match self.s.get(self.i) {
            Some(b'\'' | b'"') => Ok(Literal::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                let mut dims = Vec::new();
                loop {
                    if self.eat(b')') {
                        break;
                    }
                    dims.push(self.integer()?);
                    if !self.eat(b',') {
                        self.expect(b')')?;
                        break;
                    }
                }
                Ok(Literal::Tuple(dims))
            }
            _ if self.s[self.i..].starts_with(b"True") => {
                self.i += 4;
                Ok(Literal::Bool(true))
            }
            _ if self.s[self.i..].starts_with(b"False") => {
                self.i += 5;
                Ok(Literal::Bool(false))
            }
            _ => Err("malformed .npy header: unexpected value".into()),
        }
    }

    fn integer(&mut self) -> Result<usize, String> {
        self.skip_ws();
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // A trailing `L` is how Python 2 wrote longs.
        let digits = std::str::from_utf8(&self.s[start..self.i]).expect("ascii digits");
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        digits
            .parse()
            .map_err(|_| format!("malformed .npy header: bad dimension '{digits}'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multibyte_kind_is_an_unsupported_dtype_not_a_panic() {
        assert!(parse_descr("Ȼ<f4").is_err());
        assert!(parse_descr("<Ȼ4").is_err());
        assert!(parse_descr("").is_err());
        assert_eq!(parse_descr("<f4").unwrap().dtype, Dtype::F32);
    }

    fn header(version: u8, dict: &str) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(version);
        v.push(0);
        if version == 1 {
            v.extend((dict.len() as u16).to_le_bytes());
        } else {
            v.extend((dict.len() as u32).to_le_bytes());
        }
        v.extend(dict.as_bytes());
        v
    }

    #[test]
    fn reads_every_version() {
        let d = "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 3, 12), }\n";
        for v in 1..=3 {
            let h = parse_header(&header(v, d)).unwrap();
            assert_eq!(h.shape, vec![6, 3, 12]);
            assert!(!h.fortran_order);
            assert_eq!(h.element, Element::little(Dtype::F32));
            assert_eq!(
                h.data_offset as usize,
                if v == 1 { 10 } else { 12 } + d.len()
            );
        }
    }

    #[test]
    fn reads_scalars_big_endian_and_fortran() {
        let h = parse_header(&header(
            1,
            "{'descr': '>f8', 'fortran_order': True, 'shape': (), }",
        ))
        .unwrap();
        assert!(h.shape.is_empty());
        assert!(h.fortran_order);
        assert!(h.element.big_endian);
        let h = parse_header(&header(
            1,
            "{'shape': (7,), 'fortran_order': False, 'descr': '|b1'}",
        ))
        .unwrap();
        assert_eq!(h.shape, vec![7]);
        assert_eq!(h.element.dtype, Dtype::Bool);
    }

    #[test]
    fn written_headers_read_back() {
        for shape in [vec![3], vec![2, 1, 4, 5, 5], vec![]] {
            let h = header_bytes("<f4", &shape);
            assert_eq!(h.len() % 64, 0);
            let parsed = parse_header(&h).unwrap();
            assert_eq!(parsed.shape, shape);
            assert_eq!(parsed.data_offset as usize, h.len());
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_header(b"\x93NUMPX\x01\x00\x00\x00").is_err());
        assert!(parse_header(&header(
            1,
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}"
        ))
        .is_err());
        assert!(parse_header(&header(1, "{'descr': '<f4', 'shape': (1,)}")).is_err());
        assert!(parse_header(&header(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1"
        ))
        .is_err());
        assert!(parse_header(&header(4, "{}")).is_err());
    }
}
