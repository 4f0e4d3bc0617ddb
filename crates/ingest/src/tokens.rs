//! Token strings per batch row: from a token list (`.txt`/`.json`) or from ids plus a vocabulary.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{bail, IngestError, Result};
use crate::tensor::TensorInput;

/// The tokens of every batch row (rows may share one list).
#[derive(Debug, Clone)]
pub struct Tokens {
    rows: Vec<Arc<Vec<String>>>,
}

impl Tokens {
    /// Tokens of batch row `b`, indexed by position.
    pub fn row(&self, b: usize) -> &[String] {
        &self.rows[b]
    }

    /// Tokens given row by row.
    pub fn from_rows(rows: Vec<Vec<String>>) -> Tokens {
        Tokens {
            rows: rows.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn batch_rows(&self) -> usize {
        self.rows.len()
    }

    /// Reads `.txt` (one token per line) or `.json` (a list, or a list of lists per batch row).
    /// A single list applies to every batch row.
    pub fn from_file(path: &Path, batch: usize, seq: usize) -> Result<Tokens> {
        let text = std::fs::read_to_string(path).map_err(|e| IngestError::io(path, e))?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let rows: Vec<Arc<Vec<String>>> = if is_json {
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| IngestError::invalid(path, format!("not valid JSON ({e})")))?;
            let Value::Array(items) = v else {
                bail!(path, "expected a JSON list of tokens or a list of lists");
            };
            if !items.is_empty() && items.iter().all(Value::is_array) {
                items
                    .iter()
                    .map(|r| json_list(path, r).map(Arc::new))
                    .collect::<Result<_>>()?
            } else {
                std::iter::repeat_n(Arc::new(json_list(path, &Value::Array(items))?), batch)
                    .collect()
            }
        } else {
            let mut lines: Vec<String> = text
                .split('\n')
                .map(|l| l.trim_end_matches('\r').to_string())
                .collect();
            if lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            std::iter::repeat_n(Arc::new(lines), batch).collect()
        };
        let t = Tokens { rows };
        t.check_shape(path, batch, seq)?;
        Ok(t)
    }

    /// Tokens given as lists in memory: one list per batch row, or a single list for every
    /// row. `name` is what messages call them.
    pub fn from_lists(
        name: &Path,
        lists: &[Vec<String>],
        batch: usize,
        seq: usize,
    ) -> Result<Tokens> {
        let rows = match lists {
            [one] => std::iter::repeat_n(Arc::new(one.clone()), batch).collect(),
            _ => lists.iter().cloned().map(Arc::new).collect(),
        };
        let t = Tokens { rows };
        t.check_shape(name, batch, seq)?;
        Ok(t)
    }

    /// Token strings for `ids` (B,S) or (S,) through `vocab` (`vocab.txt`, `vocab.json`
    /// or `tokenizer.json`), as `convert_ids_to_tokens` does.
    pub fn from_ids(
        ids_input: &TensorInput,
        vocab_path: &Path,
        batch: usize,
        seq: usize,
    ) -> Result<Tokens> {
        let ids_path = ids_input.name();
        let ids = ids_input.open()?;
        let shape = ids.shape.clone();
        let ok = shape == [batch, seq] || (shape == [seq] && batch >= 1);
        if !ok {
            bail!(
                ids_path,
                "ids shape {shape:?} does not match (batch, sequence) = ({batch}, {seq})"
            );
        }
        let values = ids.to_i64_vec()?;
        let vocab = Vocab::load(vocab_path)?;
        let rows_in = if shape.len() == 1 { 1 } else { batch };
        let mut rows = Vec::with_capacity(rows_in);
        for r in 0..rows_in {
            let row = values[r * seq..(r + 1) * seq]
                .iter()
                .map(|&id| {
                    vocab.token(id).map(str::to_string).ok_or_else(|| {
                        IngestError::invalid(
                            ids_path,
                            format!(
                                "id {id} is not in the vocabulary {} ({} entries)",
                                vocab_path.display(),
                                vocab.len()
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            rows.push(Arc::new(row));
        }
        if rows_in == 1 {
            rows = vec![rows[0].clone(); batch];
        }
        Ok(Tokens { rows })
    }

    fn check_shape(&self, path: &Path, batch: usize, seq: usize) -> Result<()> {
        if self.rows.len() != batch {
            bail!(
                path,
                "{} token rows for batch size {batch}",
                self.rows.len()
            );
        }
        for (b, r) in self.rows.iter().enumerate() {
            if r.len() != seq {
                bail!(
                    path,
                    "{} tokens in row {b} for sequence length {seq}",
                    r.len()
                );
            }
        }
        Ok(())
    }
}

fn json_list(path: &Path, v: &Value) -> Result<Vec<String>> {
    let Value::Array(items) = v else {
        bail!(path, "expected a list of tokens");
    };
    items
        .iter()
        .map(|t| match t {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => bail!(path, "token {other} is not a string"),
        })
        .collect()
}

/// id → token of a model vocabulary.
pub struct Vocab {
    by_id: HashMap<i64, String>,
}

impl Vocab {
    pub fn load(path: &Path) -> Result<Vocab> {
        let text = std::fs::read_to_string(path).map_err(|e| IngestError::io(path, e))?;
        let mut by_id = HashMap::new();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
        {
            let mut lines: Vec<&str> = text.split('\n').collect();
            if lines.last() == Some(&"") {
                lines.pop();
            }
            for (i, t) in lines.into_iter().enumerate() {
                by_id.insert(i as i64, t.trim_end_matches('\r').to_string());
            }
            return Ok(Vocab { by_id });
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| IngestError::invalid(path, format!("not valid JSON ({e})")))?;
        let bad =
            || IngestError::invalid(path, "expected vocab.json (token → id) or a tokenizer.json");
        if let Some(model) = v.get("model") {
            match model.get("vocab") {
                Some(Value::Object(m)) => insert_token_ids(&mut by_id, m).ok_or_else(bad)?,
                Some(Value::Array(list)) => {
                    for (i, e) in list.iter().enumerate() {
                        let t = e.get(0).and_then(Value::as_str).ok_or_else(bad)?;
                        by_id.insert(i as i64, t.to_string());
                    }
                }
                _ => return Err(bad()),
            }
            for a in v
                .get("added_tokens")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(id), Some(content)) = (
                    a.get("id").and_then(Value::as_i64),
                    a.get("content").and_then(Value::as_str),
                ) else {
                    return Err(bad());
                };
                by_id.insert(id, content.to_string());
            }
        } else {
            insert_token_ids(&mut by_id, v.as_object().ok_or_else(bad)?).ok_or_else(bad)?;
        }
        Ok(Vocab { by_id })
    }

    pub fn token(&self, id: i64) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn insert_token_ids(
    by_id: &mut HashMap<i64, String>,
    m: &serde_json::Map<String, Value>,
) -> Option<()> {
    for (t, id) in m {
        by_id.insert(id.as_i64()?, t.clone());
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn lists_per_row_and_shared() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "t.json", r#"[["a","b"],["c","d"]]"#);
        let t = Tokens::from_file(&p, 2, 2).unwrap();
        assert_eq!(t.row(1), ["c", "d"]);
        let p = write(&d, "t.txt", "x\ny\n");
        let t = Tokens::from_file(&p, 3, 2).unwrap();
        assert_eq!(t.row(2), ["x", "y"]);
        assert!(Tokens::from_file(&p, 3, 3).is_err());
        let p = write(&d, "flat.json", r#"["[CLS]","hi","[SEP]"]"#);
        assert_eq!(Tokens::from_file(&p, 2, 3).unwrap().row(0)[1], "hi");
    }

    #[test]
    fn vocab_kinds() {
        let d = tempfile::tempdir().unwrap();
        let v = Vocab::load(&write(&d, "vocab.txt", "[PAD]\nhello\n")).unwrap();
        assert_eq!(v.token(1), Some("hello"));
        let v = Vocab::load(&write(&d, "vocab.json", r#"{"a": 0, "b": 1}"#)).unwrap();
        assert_eq!(v.token(1), Some("b"));
        let v = Vocab::load(&write(
            &d,
            "tokenizer.json",
            r#"{"model": {"vocab": {"x": 0}}, "added_tokens": [{"id": 5, "content": "<extra>"}]}"#,
        ))
        .unwrap();
        assert_eq!(v.token(5), Some("<extra>"));
        assert_eq!(v.token(0), Some("x"));
        assert_eq!(v.token(3), None);
    }
}
