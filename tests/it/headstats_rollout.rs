use super::*;

/// Runs `headstats` on a (1, 1, H, n, n) tensor of the given heads and returns rows by name.
fn headstats_of(
    heads: &[Vec<f32>],
    n: usize,
    tokens: Option<&[&str]>,
) -> Vec<std::collections::HashMap<String, String>> {
    let d = tempfile::tempdir().unwrap();
    let x = d.path().join("a.npy");
    write_npy(&x, &[1, 1, heads.len(), n, n], &heads.concat());
    let out = d.path().join("h.csv");
    let mut args = vec![
        "headstats".to_string(),
        "--attn".into(),
        x.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    if let Some(t) = tokens {
        let tp = d.path().join("t.json");
        std::fs::write(&tp, serde_json::to_string(t).unwrap()).unwrap();
        args.extend(["--tokens".to_string(), tp.display().to_string()]);
    }
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = read_csv(&out);
    rows.into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

fn num(row: &std::collections::HashMap<String, String>, c: &str) -> f64 {
    row[c]
        .parse()
        .unwrap_or_else(|_| panic!("{c} = {:?}", row[c]))
}

#[test]
fn headstats_on_hand_built_heads() {
    let n = 6;
    let uniform = vec![1.0 / n as f32; n * n];
    let identity: Vec<f32> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    // Previous token: row q puts everything on q − 1 (row 0 on itself).
    let previous: Vec<f32> = (0..n * n)
        .map(|i| {
            let (q, k) = (i / n, i % n);
            if k + 1 == q || q == 0 && k == 0 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    // A sink: every row puts 0.7 on position 0 and spreads the rest.
    let sink: Vec<f32> = (0..n * n)
        .map(|i| {
            if i % n == 0 {
                0.7
            } else {
                0.3 / (n - 1) as f32
            }
        })
        .collect();
    let tokens = ["[CLS]", "a", "b", "a", "b", "[SEP]"];
    let rows = headstats_of(
        &[uniform, identity, previous.clone(), sink],
        n,
        Some(&tokens),
    );
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    // Uniform rows: normalised entropy 1, mean distance = mean |q − k| over the grid.
    let grid_distance = (0..n * n)
        .map(|i| (i / n).abs_diff(i % n) as f64)
        .sum::<f64>()
        / (n * n) as f64;
    assert!(close(num(&rows[0], "entropy_norm"), 1.0), "{:?}", rows[0]);
    assert!(close(num(&rows[0], "mean_distance"), grid_distance));
    assert!(close(num(&rows[0], "cls_mass"), 1.0 / 6.0));
    // Identity: all mass on self, distance 0, entropy near 0 (only the smoothing floor).
    assert!(close(num(&rows[1], "self_mass"), 1.0));
    assert!(close(num(&rows[1], "mean_distance"), 0.0));
    assert!(num(&rows[1], "entropy_norm") < 0.01);
    // The identity is causal (nothing beyond the query); uniform rows are not.
    assert_eq!(rows[1]["causal"], "true");
    assert_eq!(rows[0]["causal"], "false");
    // Previous-token head: prev_mass 5/6 (row 0 has no previous key), prev_token_score 5/6.
    assert!(close(num(&rows[2], "prev_mass"), 5.0 / 6.0));
    assert!(close(num(&rows[2], "prev_token_score"), 5.0 / 6.0));
    // Duplicates: queries 3 ("a") and 4 ("b") repeat positions 1 and 2; the previous-token
    // head puts nothing there (3 → 2, 4 → 3), but its induction pattern — the token after an
    // earlier copy — holds 3 → 2 and 4 → 3: 2 of 6 units of attention.
    assert!(close(num(&rows[2], "duplicate_token_score"), 0.0));
    assert!(close(num(&rows[2], "induction_score"), 2.0 / 6.0));
    // Sink: α₀ = 0.7, flagged; position 0 receives the most; [SEP] mass 0.3/5.
    assert!(close(num(&rows[3], "sink_alpha0"), 0.7));
    assert_eq!(rows[3]["sink"], "true");
    assert_eq!(rows[3]["argmax_position"], "0");
    assert!(close(num(&rows[3], "sep_mass"), 0.3 / 5.0));
    assert!(close(num(&rows[3], "max_attention"), 0.7));
    // Without tokens the token classes are null.
    let plain = headstats_of(&[previous], n, None);
    assert_eq!(plain[0]["cls_mass"], "");
    assert_eq!(plain[0]["induction_score"], "");
}

#[test]
fn rollout_of_identity_heads_is_the_identity_and_rows_sum_to_one() {
    let d = tempfile::tempdir().unwrap();
    let n = 5;
    let identity: Vec<f32> = (0..n * n)
        .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
        .collect();
    let uniform = vec![1.0 / n as f32; n * n];
    // Layer 0: identity heads → Â = rownorm(2I) = I. Layer 1: uniform → Â = (U + I)/2.
    let x = d.path().join("a.npy");
    write_npy(
        &x,
        &[2, 1, 2, n, n],
        &[identity.clone(), identity, uniform.clone(), uniform].concat(),
    );
    let out = d.path().join("r.csv");
    let o = run(&[
        "rollout",
        "--attn",
        x.to_str().unwrap(),
        "--all",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = read_csv(&out);
    assert_eq!(
        header[..8],
        [
            "batch",
            "layer",
            "query_position",
            "query_token",
            "position",
            "token",
            "rank",
            "score"
        ]
    );
    for r in &rows {
        let (layer, q, k, score): (u16, usize, usize, f64) = (
            r[1].parse().unwrap(),
            r[2].parse().unwrap(),
            r[4].parse().unwrap(),
            r[7].parse().unwrap(),
        );
        let want = match layer {
            0 => {
                if q == k {
                    1.0
                } else {
                    0.0
                }
            }
            // J_1 = Â_1 · I = (U + I)/2: 0.5 + 0.1 on the diagonal, 0.1 elsewhere.
            _ => {
                if q == k {
                    0.6
                } else {
                    0.1
                }
            }
        };
        assert!((score - want).abs() < 1e-6, "{r:?}");
    }
    assert_eq!(rows.len(), 2 * n * n);
}

#[test]
fn rollout_bytes_do_not_depend_on_threads() {
    let d = tempfile::tempdir().unwrap();
    // 600 positions: the product runs in three row blocks.
    let n = 600;
    let data: Vec<f32> = tensor(2 * 2 * n * n, 5).iter().map(|v| v + 0.01).collect();
    let x = d.path().join("a.npy");
    write_npy(&x, &[2, 1, 2, n, n], &data);
    let outs: Vec<Vec<u8>> = ["1", "3"]
        .iter()
        .map(|t| {
            let out = d.path().join(format!("r{t}.parquet"));
            let o = run(&[
                "--threads",
                t,
                "rollout",
                "--attn",
                x.to_str().unwrap(),
                "-k",
                "3",
                "-o",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            std::fs::read(out).unwrap()
        })
        .collect();
    assert_eq!(outs[0], outs[1]);
}
