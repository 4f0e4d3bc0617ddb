//! Which named array(s) of a container `--attn-key` picks: one name, or a pattern
//! (`'arr_*'`, `'layer_*'`) whose matches are stacked as layers in natural order.

use std::cmp::Ordering;
use std::path::Path;

use crate::error::{bail, Result};

/// What a key picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pick {
    /// One array, by name.
    One(String),
    /// Every array matching the pattern, in natural order (`arr_2` before `arr_10`).
    Stack { pattern: String, names: Vec<String> },
}

/// True when `key` is a pattern rather than a name.
pub(crate) fn is_pattern(key: &str) -> bool {
    key.contains(['*', '?'])
}

/// Picks from `names`: `key` (a name or a pattern), else `attentions` if present, else the
/// only array. `shape_of` gives an array's shape, asked only to word the error for several
/// arrays (so that the pattern stacking them can be suggested).
pub(crate) fn pick(
    path: &Path,
    key: Option<&str>,
    names: &[&str],
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
) -> Result<Pick> {
    match key {
        Some(k) if is_pattern(k) => {
            let mut matched: Vec<String> = names
                .iter()
                .filter(|n| matches(k, n))
                .map(|n| n.to_string())
                .collect();
            if matched.is_empty() {
                bail!(path, "no array matches '{k}' (has: {})", listing(names));
            }
            matched.sort_by(|a, b| natural_cmp(a, b));
            Ok(Pick::Stack {
                pattern: k.to_string(),
                names: matched,
            })
        }
        Some(k) if names.contains(&k) => Ok(Pick::One(k.to_string())),
        Some(k) => bail!(path, "no array named '{k}' (has: {})", listing(names)),
        None if names.contains(&"attentions") => Ok(Pick::One("attentions".to_string())),
        None if names.len() == 1 => Ok(Pick::One(names[0].to_string())),
        None if names.is_empty() => bail!(path, "contains no arrays"),
        None => match suggest_pattern(names, shape_of) {
            Some((pattern, n, shape)) => bail!(
                path,
                "several arrays ({}); name one with --attn-key, or stack the {n} arrays of shape {shape:?} as layers with --attn-key '{pattern}'",
                listing(names)
            ),
            // np.savez(*arrays) of different shapes: often the steps of one generate() call.
            None if names.iter().all(|n| is_positional(n)) => bail!(
                path,
                "several arrays ({}); name one with --attn-key (or, for the steps of one generate() call, read them with --generation-steps)",
                listing(names)
            ),
            None => bail!(
                path,
                "several arrays ({}); name one with --attn-key",
                listing(names)
            ),
        },
    }
}

/// Whether `name` is one np.savez gives a positional array (`arr_0`, `arr_1`, …).
fn is_positional(name: &str) -> bool {
    name.strip_prefix("arr_")
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Names for a message: all of them when few, else the first and last few (natural order).
fn listing(names: &[&str]) -> String {
    let mut sorted = names.to_vec();
    sorted.sort_by(|a, b| natural_cmp(a, b));
    if sorted.len() <= 8 {
        return sorted.join(", ");
    }
    format!(
        "{}, …, {}; {} arrays",
        sorted[..3].join(", "),
        sorted[sorted.len() - 2..].join(", "),
        sorted.len()
    )
}

/// The largest group of at least two arrays sharing one 4-D shape (per-layer attention
/// saved one array per layer), as (pattern, count, shape). The pattern is the group's common
/// name prefix without trailing digits, then `*`.
fn suggest_pattern(
    names: &[&str],
    shape_of: impl Fn(&str) -> Option<Vec<usize>>,
) -> Option<(String, usize, Vec<usize>)> {
    let mut groups: Vec<(Vec<usize>, Vec<&str>)> = Vec::new();
    for &n in names {
        let Some(shape) = shape_of(n).filter(|s| s.len() == 4) else {
            continue;
        };
        match groups.iter_mut().find(|(s, _)| *s == shape) {
            Some((_, members)) => members.push(n),
            None => groups.push((shape, vec![n])),
        }
    }
    let (shape, members) = groups.into_iter().max_by_key(|(_, m)| m.len())?;
    if members.len() < 2 {
        return None;
    }
    let first = members[0];
    let common = members.iter().fold(first.len(), |len, m| {
        first
            .bytes()
            .zip(m.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count()
    });
    let prefix = first[..common].trim_end_matches(|c: char| c.is_ascii_digit());
    // The prefix may end inside a multi-byte character; fall back to matching everything.
    let prefix = if first.is_char_boundary(prefix.len()) {
        prefix
    } else {
        ""
    };
    Some((format!("{prefix}*"), members.len(), shape))
}

/// Shell-style match: `*` any run of characters, `?` one character.
fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Natural order: runs of digits compare as numbers, so `layer_2` < `layer_10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let ord = na.len().cmp(&nb.len()).then(na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_counts_numbers() {
        let mut v = vec!["arr_10", "arr_2", "arr_1", "arr_0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["arr_0", "arr_1", "arr_2", "arr_10"]);
        assert_eq!(natural_cmp("a02", "a2"), Ordering::Equal);
        assert_eq!(natural_cmp("layer_9x", "layer_10"), Ordering::Less);
    }

    #[test]
    fn patterns_match_like_a_shell() {
        assert!(matches("arr_*", "arr_10"));
        assert!(matches("*_attentions", "decoder_attentions"));
        assert!(matches("l?yer_*", "layer_0"));
        assert!(!matches("arr_*", "other"));
        assert!(matches("*", ""));
        assert!(!matches("a*b*c", "aXbYd"));
    }

    #[test]
    fn several_4d_arrays_suggest_their_pattern() {
        let names = ["arr_0", "arr_1", "arr_10", "mask"];
        let shape = |n: &str| {
            Some(if n == "mask" {
                vec![2, 3]
            } else {
                vec![1, 2, 3, 3]
            })
        };
        let e = pick(Path::new("a.npz"), None, &names, shape).unwrap_err();
        assert!(
            e.to_string().contains(
                "stack the 3 arrays of shape [1, 2, 3, 3] as layers with --attn-key 'arr_*'"
            ),
            "{e}"
        );
        let p = pick(Path::new("a.npz"), Some("arr_*"), &names, |_| None).unwrap();
        assert_eq!(
            p,
            Pick::Stack {
                pattern: "arr_*".into(),
                names: vec!["arr_0".into(), "arr_1".into(), "arr_10".into()]
            }
        );
        let e = pick(Path::new("a.npz"), Some("x_*"), &names, |_| None).unwrap_err();
        assert!(e.to_string().contains("no array matches 'x_*'"), "{e}");
    }
}
