//! Every output byte of the README's commands stays as it was: each line of
//! `tests/golden/cases.txt` runs from the repository root and every file it writes is compared
//! with the one kept in `tests/golden/<case>/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{bin, stderr};

struct Case {
    name: String,
    args: Vec<String>,
    stdout_to: Option<String>,
}

fn cases(root: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(root.join("tests/golden/cases.txt")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (name, command) = line.split_once(" | ").expect("`name | command`");
            let (command, stdout_to) = match command.split_once(" > ") {
                Some((c, file)) => (c, Some(file.trim().to_string())),
                None => (command, None),
            };
            Case {
                name: name.trim().to_string(),
                args: command.split_whitespace().map(str::to_string).collect(),
                stdout_to,
            }
        })
        .collect()
}

/// Every file under `dir`, by its path relative to `dir`.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    files
}

fn run_case(root: &Path, case: &Case, out: &Path) {
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| a.replace("OUT/", &format!("{}/", out.display())))
        .collect();
    let o = bin()
        .args(&args)
        .current_dir(root)
        .output()
        .expect("binary runs");
    assert!(o.status.success(), "{}: {}", case.name, stderr(&o));
    if let Some(file) = &case.stdout_to {
        std::fs::write(out.join(file), &o.stdout).unwrap();
    }
}

#[test]
fn golden_outputs_of_the_readme_commands() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var("ATTNFRAMES_GOLDEN").as_deref() == Ok("update");
    let mut differ = Vec::new();
    for case in cases(root) {
        let out = tempfile::tempdir().unwrap();
        run_case(root, &case, out.path());
        let got = files_under(out.path());
        let kept_dir = root.join("tests/golden").join(&case.name);
        if update {
            let _ = std::fs::remove_dir_all(&kept_dir);
            for (rel, bytes) in &got {
                let path = kept_dir.join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            continue;
        }
        let kept = files_under(&kept_dir);
        if got.keys().ne(kept.keys()) {
            differ.push(format!(
                "{}: wrote {:?}, golden has {:?}",
                case.name,
                got.keys().collect::<Vec<_>>(),
                kept.keys().collect::<Vec<_>>()
            ));
            continue;
        }
        for (rel, bytes) in &got {
            if kept[rel] != *bytes {
                differ.push(format!("{}: {} differs", case.name, rel.display()));
            }
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}
