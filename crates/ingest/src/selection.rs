//! Index selections such as `0,3,8-11`.

/// Parses `spec` (comma-separated indices and inclusive ranges) against an axis of
/// `n` entries; returns the sorted, de-duplicated indices. `None` selects everything.
pub fn parse_selection(spec: Option<&str>, n: usize, what: &str) -> Result<Vec<usize>, String> {
    let Some(spec) = spec else {
        return Ok((0..n).collect());
    };
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| -> Result<usize, String> {
            s.trim()
                .parse()
                .map_err(|_| format!("--{what}s '{spec}': '{s}' is not an index"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            return Err(format!("--{what}s '{spec}': range {part} is empty"));
        }
        if b >= n {
            return Err(format!(
                "{what} {b} out of range 0..{} (the tensor has {n})",
                n.saturating_sub(1)
            ));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err(format!("--{what}s '{spec}' selects nothing"));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(
            parse_selection(Some("0,3,8-11"), 12, "layer").unwrap(),
            vec![0, 3, 8, 9, 10, 11]
        );
        assert_eq!(
            parse_selection(Some("3,1-2,3"), 4, "head").unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(parse_selection(None, 3, "batch").unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn rejects_out_of_range_and_junk() {
        assert!(parse_selection(Some("7"), 2, "layer")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_selection(Some("a"), 2, "layer").is_err());
        assert!(parse_selection(Some("2-1"), 4, "layer").is_err());
        assert!(parse_selection(Some(","), 4, "layer").is_err());
    }
}
