//! Axis letters: which file axis is layer (L), batch (B), head (H), query (Q) and key (K).

use std::path::Path;

use crate::error::{bail, Result};

/// Index of each canonical axis in `[L, B, H, Q, K]`.
pub const L: usize = 0;
pub const B: usize = 1;
pub const H: usize = 2;
pub const Q: usize = 3;
pub const K: usize = 4;
const LETTERS: [char; 5] = ['L', 'B', 'H', 'Q', 'K'];

/// The canonical role of every axis of a tensor file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `axes[i]` = canonical index of file axis i.
    axes: Vec<usize>,
}

impl Layout {
    /// `spec` as given with `--layout`, or the default for the tensor's rank:
    /// 5-D LBHQK, 3-D HQK, 2-D QK; 4-D has no default.
    pub fn resolve(spec: Option<&str>, shape: &[usize], path: &Path) -> Result<Layout> {
        let nd = shape.len();
        let letters = match spec {
            Some(s) => s.trim().to_ascii_uppercase(),
            None => match nd {
                5 => "LBHQK".into(),
                3 => "HQK".into(),
                2 => "QK".into(),
                4 => bail!(path, "4-D tensor {shape:?} is ambiguous: give --layout (letters L B H Q K, e.g. LHQK)"),
                _ => bail!(path, "a {nd}-D tensor {shape:?} cannot be attention (expected 2 to 5 axes)"),
            },
        };
        if letters.chars().count() != nd {
            bail!(
                path,
                "--layout {letters} names {} axes but the tensor has {nd}: shape {shape:?}",
                letters.chars().count()
            );
        }
        let mut axes = Vec::with_capacity(nd);
        for c in letters.chars() {
            let Some(i) = LETTERS.iter().position(|&l| l == c) else {
                bail!(path, "--layout {letters}: '{c}' is not one of L B H Q K");
            };
            if axes.contains(&i) {
                bail!(path, "--layout {letters}: '{c}' appears twice");
            }
            axes.push(i);
        }
        if !axes.contains(&Q) || !axes.contains(&K) {
            bail!(path, "--layout {letters} must contain Q and K");
        }
        Ok(Layout { axes })
    }

    /// The letters, in file axis order.
    pub fn letters(&self) -> String {
        self.axes.iter().map(|&i| LETTERS[i]).collect()
    }

    /// Sizes of `[L, B, H, Q, K]`; an absent axis has size 1.
    pub fn canonical_shape(&self, shape: &[usize]) -> [usize; 5] {
        let mut out = [1; 5];
        for (&c, &n) in self.axes.iter().zip(shape) {
            out[c] = n;
        }
        out
    }

    /// Element strides of `[L, B, H, Q, K]` given the file's strides; 0 for an absent axis.
    pub fn canonical_strides(&self, strides: &[u64]) -> [u64; 5] {
        let mut out = [0; 5];
        for (&c, &s) in self.axes.iter().zip(strides) {
            out[c] = s;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_permutations() {
        let p = Path::new("x.npy");
        let l = Layout::resolve(None, &[2, 3, 4, 5, 5], p).unwrap();
        assert_eq!(l.letters(), "LBHQK");
        let l = Layout::resolve(Some("bhlqk"), &[3, 4, 2, 5, 5], p).unwrap();
        assert_eq!(l.canonical_shape(&[3, 4, 2, 5, 5]), [2, 3, 4, 5, 5]);
        assert_eq!(l.canonical_strides(&[1, 2, 3, 4, 5]), [3, 1, 2, 4, 5]);
        let l = Layout::resolve(None, &[4, 5, 5], p).unwrap();
        assert_eq!(l.canonical_shape(&[4, 5, 5]), [1, 1, 4, 5, 5]);
    }

    #[test]
    fn rejects_ambiguous_and_wrong() {
        let p = Path::new("x.npy");
        assert!(Layout::resolve(None, &[2, 4, 5, 5], p).is_err());
        assert!(Layout::resolve(Some("LBHQK"), &[2, 4, 5, 5], p).is_err());
        assert!(Layout::resolve(Some("LLQK"), &[2, 4, 5, 5], p).is_err());
        assert!(Layout::resolve(Some("LBHX"), &[2, 4, 5, 5], p).is_err());
        assert!(Layout::resolve(Some("LBHQ"), &[2, 4, 5, 5], p).is_err());
        assert!(Layout::resolve(None, &[5], p).is_err());
    }
}
