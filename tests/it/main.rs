//! End-to-end tests of the `attnframes` binary. Every expected number is computed here
//! independently (plain sorts, column sums, hand-worked min-max), never copied from a run.
//! One binary, a module per area (as ripgrep's `tests/tests.rs`); shared helpers live here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use proptest::prelude::*;

mod basics;
mod cluster_and_plot;
mod compare;
mod dataset;
mod golden;
mod headstats_rollout;
mod longformer;
mod melt;
mod properties;
mod pytorch;
mod queries;
mod robustness;
mod similarity;
mod snapshots;
mod steps;
mod stream;
mod view;
mod words;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attnframes"))
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a little-endian f32 `.npy` (C order).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let mut bytes = ingest::npy::header_bytes("<f4", shape);
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// Parses a CSV the binary wrote (no quoted fields in these tests) into rows of fields.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    (
        header,
        lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect(),
    )
}

/// A deterministic pseudo-random tensor with ties (values on a coarse grid).
fn tensor(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 16) as f32 / 16.0
        })
        .collect()
}

/// (query, [(position, score)] best first) by a plain stable sort.
fn plain_topk(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
    idx.into_iter()
        .take(k)
        .map(|p| (p as u32, row[p]))
        .collect()
}

/// One line `error: <file>: …`, exit 1, no panic, nothing left in the output folder.
fn assert_clean_failure(args: &[&str], names: &str, out_dir: &Path) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
    assert!(err.starts_with("error:") && err.contains(names), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read_dir(out_dir).unwrap().count(),
        0,
        "output left behind"
    );
}

fn read_f64(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let t = ingest::TensorFile::open(path, None).unwrap();
    (t.shape.clone(), t.to_f64_vec().unwrap())
}

/// The same tensor with its axes permuted, read back with the matching --layout.
fn permuted(data: &[f32], shape: [usize; 5], perm: &[usize; 5]) -> (Vec<f32>, Vec<usize>) {
    let new_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let mut strides = [0usize; 5];
    let mut acc = 1;
    for a in (0..5).rev() {
        strides[a] = acc;
        acc *= shape[a];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = [0usize; 5];
    for _ in 0..data.len() {
        let off: usize = (0..5).map(|i| idx[i] * strides[perm[i]]).sum();
        out.push(data[off]);
        for i in (0..5).rev() {
            idx[i] += 1;
            if idx[i] < new_shape[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    (out, new_shape)
}
