//! Generation steps (`--generation-steps`): the steps of one `generate()` call read as the
//! one example of the whole sequence equal a causal forward pass over that sequence.

use std::path::Path;

use super::{assert_clean_failure, read_csv, run, stderr, tensor, write_npy};

const L: usize = 2;
const B: usize = 2;
const H: usize = 2;
/// Prompt length, and the whole sequence's: 12 steps, so that `step_10` sorts after `step_2`.
const P: usize = 4;
const S: usize = 15;

/// A causal (L, B, H, S, S) tensor of rows summing to 1 (zeros after the diagonal), written
/// as `forward.npy`.
fn causal(dir: &Path) -> Vec<f32> {
    let mut full = tensor(L * B * H * S * S, 11);
    for (i, row) in full.chunks_mut(S).enumerate() {
        let q = i % S;
        row[q + 1..].fill(0.0);
        let sum: f32 = row[..=q].iter().sum();
        row[..=q].iter_mut().for_each(|v| *v /= sum);
    }
    write_npy(&dir.join("forward.npy"), &[L, B, H, S, S], &full);
    full
}

/// Rows `rows` over keys `0..keys` of every slab of `full`, as (L, B, H, rows, keys).
fn cut(full: &[f32], rows: std::ops::Range<usize>, keys: usize) -> Vec<f32> {
    full.chunks(S * S)
        .flat_map(|slab| {
            rows.clone()
                .flat_map(move |q| slab[q * S..q * S + keys].to_vec())
        })
        .collect()
}

/// The steps with a KV cache, one file each: the prompt's square, then one row per position.
fn cached_steps(dir: &Path, full: &[f32]) {
    write_npy(
        &dir.join("step_0.npy"),
        &[L, B, H, P, P],
        &cut(full, 0..P, P),
    );
    for p in P..S {
        let t = p - P + 1;
        let step = cut(full, p..p + 1, p + 1);
        write_npy(
            &dir.join(format!("step_{t}.npy")),
            &[L, B, H, 1, p + 1],
            &step,
        );
    }
}

fn csv(dir: &Path, command: &str, attn: &[&str], extra: &[&str]) -> Vec<Vec<String>> {
    let out = dir.join(format!("{command}.csv"));
    let mut args = vec![command, "--attn"];
    args.extend(attn);
    args.extend(extra);
    args.extend(["-o", out.to_str().unwrap()]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    read_csv(&out).1
}

#[test]
fn cached_steps_equal_the_forward_pass_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = causal(d);
    cached_steps(d, &full);
    let forward = d.join("forward.npy");
    let glob = d.join("step_*.npy");
    let (forward, glob) = (forward.to_str().unwrap(), glob.to_str().unwrap());
    for (command, extra) in [
        ("topk", vec!["-k", "3"]),
        ("topk", vec!["--all"]),
        ("received", vec!["--reduce", "layers"]),
        ("headstats", vec![]),
        ("rollout", vec!["-k", "2"]),
    ] {
        let want = csv(d, command, &[forward], &extra);
        let mut steps_extra = extra.clone();
        steps_extra.push("--generation-steps");
        assert_eq!(csv(d, command, &[glob], &steps_extra), want, "{command}");
    }
}

#[test]
fn steps_without_a_cache_take_their_last_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = causal(d);
    // use_cache=False: every step recomputes the square of the sequence so far.
    let mut paths = Vec::new();
    for (t, k) in (P..=S).enumerate() {
        let path = d.join(format!("square_{t}.npy"));
        write_npy(&path, &[L, B, H, k, k], &cut(&full, 0..k, k));
        paths.push(path.to_str().unwrap().to_string());
    }
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let forward = d.join("forward.npy");
    let want = csv(d, "topk", &[forward.to_str().unwrap()], &["-k", "2"]);
    let got = csv(d, "topk", &paths, &["-k", "2", "--generation-steps"]);
    assert_eq!(got, want);
}

#[test]
fn melted_steps_hold_each_rows_own_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = causal(d);
    cached_steps(d, &full);
    let glob = d.join("step_*.npy");
    let rows = csv(
        d,
        "melt",
        &[glob.to_str().unwrap()],
        &["--generation-steps"],
    );
    let keys = |q: usize| if q < P { P } else { q + 1 };
    assert_eq!(rows.len(), L * B * H * (0..S).map(keys).sum::<usize>());
    for r in &rows {
        let at: Vec<usize> = r[..5].iter().map(|v| v.parse().unwrap()).collect();
        let (b, l, h, q, k) = (at[0], at[1], at[2], at[3], at[4]);
        assert!(k < keys(q));
        let want = full[(((l * B + b) * H + h) * S + q) * S + k];
        assert_eq!(r[5].parse::<f32>().unwrap(), want);
    }
}

#[test]
fn steps_that_do_not_follow_each_other_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = causal(d);
    cached_steps(d, &full);
    let s = |t: usize| {
        d.join(format!("step_{t}.npy"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let out = d.join("x.parquet");
    let out = out.to_str().unwrap();
    let gap = run(&[
        "topk",
        "--generation-steps",
        "--attn",
        &s(0),
        &s(2),
        "-o",
        out,
    ]);
    assert!(
        stderr(&gap).contains("step 1 has 1 query rows over 6 keys"),
        "{}",
        stderr(&gap)
    );
    // One array is one step: the prompt alone is a generation, a later step alone is not.
    let prompt = run(&["topk", "--generation-steps", "--attn", &s(0), "-o", out]);
    assert!(prompt.status.success(), "{}", stderr(&prompt));
    let not_first = run(&["topk", "--generation-steps", "--attn", &s(1), "-o", out]);
    assert!(
        stderr(&not_first).contains("step 0 has 1 query rows over"),
        "{}",
        stderr(&not_first)
    );
    write_npy(
        &d.join("other.npy"),
        &[L, 1, H, 1, P + 1],
        &[0.2; L * H * (P + 1)],
    );
    let other = d.join("other.npy");
    let batch = run(&[
        "topk",
        "--generation-steps",
        "--attn",
        &s(0),
        other.to_str().unwrap(),
        "-o",
        out,
    ]);
    assert!(stderr(&batch).contains("step 1 has (L, B, H) = (2, 1, 2), step 0 has (2, 2, 2)"));
    assert!(
        stderr(&batch).starts_with(&format!("error: {}: ", other.display())),
        "the bad step's file is named: {}",
        stderr(&batch)
    );
    // A mask of `out.sequences`' length is one position too long; only then the hint.
    let mask = |name: &str, rows: usize, len: usize| {
        let path = d.join(name);
        write_npy(&path, &[rows, len], &vec![1.0; rows * len]);
        path.to_str().unwrap().to_string()
    };
    let (long, wide) = (mask("long.npy", B, S + 1), mask("wide.npy", B + 1, S));
    let steps: Vec<String> = (0..=S - P).map(s).collect();
    let with_mask = |m: &str| {
        let mut args = vec!["topk", "--generation-steps", "--attn"];
        args.extend(steps.iter().map(String::as_str));
        args.extend(["--attention-mask", m, "-o", out]);
        stderr(&run(&args))
    };
    assert!(with_mask(&long).contains("generate()'s last token is never fed back"));
    let wrong_batch = with_mask(&wide);
    assert!(
        wrong_batch.contains("does not match (batch, sequence) = (2, 15)"),
        "{wrong_batch}"
    );
    assert!(!wrong_batch.contains("never fed back"), "{wrong_batch}");
    let offset = run(&[
        "topk",
        "--generation-steps",
        "--attn",
        &s(0),
        "--query-offset",
        "1",
        "-o",
        out,
    ]);
    assert_eq!(offset.status.code(), Some(2), "{}", stderr(&offset));
    let empty = tempfile::tempdir().unwrap();
    let dataset = empty.path().join("out/");
    let o = run(&[
        "topk",
        "--generation-steps",
        "--attn",
        &s(0),
        &s(1),
        "-o",
        dataset.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("error: --generation-steps: the steps are one example"));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    assert_clean_failure(
        &[
            "received",
            "--generation-steps",
            "--attn",
            &s(0),
            &s(2),
            "-o",
            out,
        ],
        "step 1 has 1 query rows",
        empty.path(),
    );
}
