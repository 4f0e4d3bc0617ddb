//! Element types of tensor files and their conversion to f32 / f64 / i64.

use half::{bf16, f16};

/// The element type of a tensor as stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F16,
    BF16,
    F32,
    F64,
    Int { bytes: u8, signed: bool },
    Bool,
}

/// An element type plus its byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    pub dtype: Dtype,
    pub big_endian: bool,
}

impl Element {
    pub fn little(dtype: Dtype) -> Self {
        Element {
            dtype,
            big_endian: false,
        }
    }

    pub fn size(&self) -> usize {
        match self.dtype {
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::Int { bytes, .. } => bytes as usize,
            Dtype::Bool => 1,
        }
    }

    pub fn is_float(&self) -> bool {
        matches!(
            self.dtype,
            Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64
        )
    }

    /// numpy's name for the type (`float32`, `int64`, …), with `>` for big-endian.
    pub fn name(&self) -> String {
        let base = match self.dtype {
            Dtype::F16 => "float16".to_string(),
            Dtype::BF16 => "bfloat16".to_string(),
            Dtype::F32 => "float32".to_string(),
            Dtype::F64 => "float64".to_string(),
            Dtype::Int { bytes, signed } => {
                format!("{}int{}", if signed { "" } else { "u" }, bytes as u32 * 8)
            }
            Dtype::Bool => "bool".to_string(),
        };
        if self.big_endian && self.size() > 1 {
            format!("{base} (big-endian)")
        } else {
            base
        }
    }

    fn raw<const N: usize>(&self, b: &[u8]) -> [u8; N] {
        let mut a: [u8; N] = b[..N].try_into().expect("element width");
        if self.big_endian {
            a.reverse();
        }
        a
    }

    /// One element as f64 (integers and bools converted).
    pub fn to_f64(&self, b: &[u8]) -> f64 {
        match self.dtype {
            Dtype::F16 => f16::from_le_bytes(self.raw(b)).to_f64(),
            Dtype::BF16 => bf16::from_le_bytes(self.raw(b)).to_f64(),
            Dtype::F32 => f32::from_le_bytes(self.raw(b)) as f64,
            Dtype::F64 => f64::from_le_bytes(self.raw(b)),
            Dtype::Int { .. } | Dtype::Bool => self.to_i64(b) as f64,
        }
    }

    /// One element as i64; floats are truncated (callers check `is_float` first).
    pub fn to_i64(&self, b: &[u8]) -> i64 {
        match self.dtype {
            Dtype::Bool => (b[0] != 0) as i64,
            Dtype::Int { bytes: 1, signed } => {
                if signed {
                    b[0] as i8 as i64
                } else {
                    b[0] as i64
                }
            }
            Dtype::Int { bytes: 2, signed } => {
                let a = self.raw::<2>(b);
                if signed {
                    i16::from_le_bytes(a) as i64
                } else {
                    u16::from_le_bytes(a) as i64
                }
            }
            Dtype::Int { bytes: 4, signed } => {
                let a = self.raw::<4>(b);
                if signed {
                    i32::from_le_bytes(a) as i64
                } else {
                    u32::from_le_bytes(a) as i64
                }
            }
            Dtype::Int { signed, .. } => {
                let a = self.raw::<8>(b);
                if signed {
                    i64::from_le_bytes(a)
                } else {
                    u64::from_le_bytes(a).min(i64::MAX as u64) as i64
                }
            }
            _ => self.to_f64(b) as i64,
        }
    }

    /// Converts a run of float elements to f32 (`out.len()` elements from `bytes`).
    pub fn floats_to_f32(&self, bytes: &[u8], out: &mut [f32]) {
        let w = self.size();
        debug_assert_eq!(bytes.len(), out.len() * w);
        match (self.dtype, self.big_endian) {
            (Dtype::F32, false) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes(c.try_into().expect("4 bytes"));
                }
            }
            (Dtype::F16, false) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            (Dtype::BF16, false) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
                }
            }
            (Dtype::F64, false) => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                    *o = f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32;
                }
            }
            _ => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(w)) {
                    *o = self.to_f64(c) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_each_float_width() {
        let e = Element::little(Dtype::F16);
        let mut out = [0f32; 2];
        let bytes: Vec<u8> = [f16::from_f32(0.5), f16::from_f32(-2.0)]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        e.floats_to_f32(&bytes, &mut out);
        assert_eq!(out, [0.5, -2.0]);

        let e = Element::little(Dtype::BF16);
        let bytes: Vec<u8> = [bf16::from_f32(0.25)]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let mut one = [0f32; 1];
        e.floats_to_f32(&bytes, &mut one);
        assert_eq!(one, [0.25]);

        let e = Element {
            dtype: Dtype::F32,
            big_endian: true,
        };
        e.floats_to_f32(&0.75f32.to_be_bytes(), &mut one);
        assert_eq!(one, [0.75]);

        let e = Element::little(Dtype::F64);
        e.floats_to_f32(&0.1f64.to_le_bytes(), &mut one);
        assert_eq!(one, [0.1f64 as f32]);
    }

    #[test]
    fn integers_keep_sign() {
        let e = Element::little(Dtype::Int {
            bytes: 2,
            signed: true,
        });
        assert_eq!(e.to_i64(&(-3i16).to_le_bytes()), -3);
        assert_eq!(e.name(), "int16");
    }
}
