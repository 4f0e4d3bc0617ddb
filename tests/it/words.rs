use super::*;

#[test]
fn words_merge_pieces_by_hand() {
    let d = tempfile::tempdir().unwrap();
    let toks = ["[CLS]", "play", "##ing", "fast", "[SEP]"];
    let n = toks.len();
    // Row q: weight (q + 1)·(k + 1) + 1 at key k, normalised to sum 1.
    let mut a = vec![0f32; n * n];
    for q in 0..n {
        let w: Vec<f32> = (0..n).map(|k| ((q + 1) * (k + 1) + 1) as f32).collect();
        let s: f32 = w.iter().sum();
        for k in 0..n {
            a[q * n + k] = w[k] / s;
        }
    }
    let x = d.path().join("a.npy");
    write_npy(&x, &[n, n], &a);
    let t = d.path().join("t.json");
    std::fs::write(&t, serde_json::to_string(&toks).unwrap()).unwrap();
    let groups: [&[usize]; 4] = [&[0], &[1, 2], &[3], &[4]];
    for (from, combine) in [("mean", 0), ("first", 1), ("max", 2)] {
        let out = d.path().join(format!("w_{from}.csv"));
        let o = run(&[
            "topk",
            "--attn",
            x.to_str().unwrap(),
            "--tokens",
            t.to_str().unwrap(),
            "--words",
            "--word-from",
            from,
            "--all",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (header, rows) = read_csv(&out);
        assert_eq!(
            header,
            [
                "batch",
                "layer",
                "head",
                "query_position",
                "query_first_piece",
                "query_last_piece",
                "query_token",
                "position",
                "first_piece",
                "last_piece",
                "token",
                "rank",
                "score"
            ]
        );
        // By hand: to a word = sum over its pieces; from a word = mean / first / max (renormalised).
        let to_words = |q: usize| -> Vec<f64> {
            groups
                .iter()
                .map(|g| g.iter().map(|&k| a[q * n + k] as f64).sum())
                .collect()
        };
        let mut want = vec![vec![0f64; 4]; 4];
        for (w, g) in groups.iter().enumerate() {
            let rows_of: Vec<Vec<f64>> = g.iter().map(|&q| to_words(q)).collect();
            want[w] = match combine {
                0 => (0..4)
                    .map(|k| rows_of.iter().map(|r| r[k]).sum::<f64>() / g.len() as f64)
                    .collect(),
                1 => rows_of[0].clone(),
                _ => {
                    let m: Vec<f64> = (0..4)
                        .map(|k| rows_of.iter().map(|r| r[k]).fold(0.0, f64::max))
                        .collect();
                    let s: f64 = m.iter().sum();
                    m.iter().map(|v| v / s).collect()
                }
            };
        }
        assert_eq!(rows.len(), 16);
        let mut sums = [0f64; 4];
        for r in &rows {
            let (qw, kw): (usize, usize) = (r[3].parse().unwrap(), r[7].parse().unwrap());
            let score: f64 = r[12].parse().unwrap();
            assert!(
                (score - want[qw][kw]).abs() < 1e-6,
                "{from}: word {qw} → {kw}: {score} vs {}",
                want[qw][kw]
            );
            sums[qw] += score;
        }
        assert!(
            sums.iter().all(|s| (s - 1.0).abs() < 1e-5),
            "rows sum to 1: {sums:?}"
        );
        let playing: Vec<&Vec<String>> = rows.iter().filter(|r| r[7] == "1").collect();
        assert!(
            playing
                .iter()
                .all(|r| r[8] == "1" && r[9] == "2" && r[10] == "playing"),
            "{playing:?}"
        );
    }
    // Commands without a word-level meaning refuse it.
    let o = run(&[
        "dense",
        "--attn",
        x.to_str().unwrap(),
        "--words",
        "-o",
        d.path().join("d.npy").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}
