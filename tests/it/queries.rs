//! The query axis: a generation step's queries are the last positions of the sequence
//! (`generate()` with a KV cache gives (L, B, H, 1, P + t)); `--query-offset` places them;
//! `--cross-attention` keeps queries from another sequence.

use std::path::Path;

use super::{read_csv, run, stderr, tensor, write_npy};

const L: usize = 2;
const B: usize = 2;
const H: usize = 3;
const S: usize = 7;

/// A square (L, B, H, S, S) tensor of rows summing to 1, and its last query row alone: the
/// step that generated position S − 1.
fn square_and_last_step(dir: &Path) -> Vec<f32> {
    let mut square = tensor(L * B * H * S * S, 5);
    for row in square.chunks_mut(S) {
        let sum: f32 = row.iter().sum::<f32>() + 1.0;
        row.iter_mut()
            .for_each(|v| *v = (*v + 1.0 / S as f32) / sum);
    }
    write_npy(&dir.join("square.npy"), &[L, B, H, S, S], &square);
    let step: Vec<f32> = square
        .chunks(S * S)
        .flat_map(|slab| slab[(S - 1) * S..].to_vec())
        .collect();
    write_npy(&dir.join("step.npy"), &[L, B, H, 1, S], &step);
    let tokens: Vec<Vec<String>> = (0..B)
        .map(|b| (0..S).map(|p| format!("w{b}_{p}")).collect())
        .collect();
    std::fs::write(
        dir.join("tokens.json"),
        serde_json::to_string(&tokens).unwrap(),
    )
    .unwrap();
    square
}

fn topk_csv(dir: &Path, attn: &str, extra: &[&str]) -> Vec<Vec<String>> {
    let out = dir.join(format!(
        "{attn}.{}.csv",
        extra.join("_").replace(['-', '/', '.'], "")
    ));
    let attn = dir.join(attn);
    let mut args = vec!["topk", "--attn", attn.to_str().unwrap(), "-k", "3"];
    args.extend(extra);
    args.extend(["-o", out.to_str().unwrap()]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    read_csv(&out).1
}

#[test]
fn a_steps_rows_are_the_last_rows_of_the_whole_sequence() {
    let dir = tempfile::tempdir().unwrap();
    square_and_last_step(dir.path());
    let tokens = dir.path().join("tokens.json");
    let tokens = tokens.to_str().unwrap();
    let step = topk_csv(dir.path(), "step.npy", &["--tokens", tokens]);
    let square: Vec<Vec<String>> = topk_csv(dir.path(), "square.npy", &["--tokens", tokens])
        .into_iter()
        .filter(|r| r[3] == (S - 1).to_string())
        .collect();
    assert_eq!(step.len(), L * B * H * 3);
    assert_eq!(step, square);
    assert_eq!(step[0][3..5], ["6".to_string(), "w0_6".to_string()]);
}

#[test]
fn a_mask_and_an_offset_index_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    square_and_last_step(dir.path());
    // Left padding, the usual setting for generation: row 1's first two positions are padding.
    let mask = [1i64, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1];
    let mut bytes = ingest::npy::header_bytes("<i8", &[B, S]);
    bytes.extend(mask.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(dir.path().join("mask.npy"), bytes).unwrap();
    let mask = dir.path().join("mask.npy");
    let rows = topk_csv(
        dir.path(),
        "step.npy",
        &["--attention-mask", mask.to_str().unwrap()],
    );
    for r in rows.iter().filter(|r| r[0] == "1") {
        assert_eq!(r[3], "6");
        assert!(
            r[5].parse::<u32>().unwrap() >= 2,
            "a padded key ranked: {r:?}"
        );
    }
    let rows = topk_csv(dir.path(), "step.npy", &["--query-offset", "4"]);
    assert!(rows.iter().all(|r| r[3] == "4"));
    let o = run(&[
        "topk",
        "--attn",
        dir.path().join("step.npy").to_str().unwrap(),
        "--query-offset",
        "7",
        "-o",
        dir.path().join("never.csv").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with("--query-offset 7: 1 queries from position 7 pass the 7 keys\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cross_attention_keeps_its_queries_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    // 3 target queries attending to 7 source keys.
    let data = tensor(L * B * H * 3 * S, 9);
    write_npy(&dir.path().join("cross.npy"), &[L, B, H, 3, S], &data);
    let last = topk_csv(dir.path(), "cross.npy", &[]);
    let cross = topk_csv(dir.path(), "cross.npy", &["--cross-attention"]);
    let queries = |rows: &[Vec<String>]| {
        let mut q: Vec<String> = rows.iter().map(|r| r[3].clone()).collect();
        q.sort();
        q.dedup();
        q
    };
    assert_eq!(queries(&last), ["4", "5", "6"]);
    assert_eq!(queries(&cross), ["0", "1", "2"]);
    let scores = |rows: &[Vec<String>]| rows.iter().map(|r| r[8].clone()).collect::<Vec<_>>();
    assert_eq!(scores(&last), scores(&cross));
    square_and_last_step(dir.path());
    let o = run(&[
        "topk",
        "--attn",
        dir.path().join("cross.npy").to_str().unwrap(),
        "--cross-attention",
        "--tokens",
        dir.path().join("tokens.json").to_str().unwrap(),
        "-o",
        dir.path().join("never.csv").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("(cross-attention): leave the tokens out"),
        "{}",
        stderr(&o)
    );
}
