use super::*;

#[test]
fn topk_matches_a_plain_sort() {
    let d = tempfile::tempdir().unwrap();
    let (l, b, h, s) = (2, 2, 3, 7);
    let data = tensor(l * b * h * s * s, 1);
    let attn = d.path().join("a.npy");
    write_npy(&attn, &[l, b, h, s, s], &data);
    let out = d.path().join("t.csv");
    let o = run(&[
        "topk",
        "--attn",
        attn.to_str().unwrap(),
        "-k",
        "3",
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
            "query_token",
            "position",
            "token",
            "rank",
            "score"
        ]
    );
    let mut expected = Vec::new();
    for bb in 0..b {
        for ll in 0..l {
            for hh in 0..h {
                for q in 0..s {
                    let off = (((ll * b + bb) * h + hh) * s + q) * s;
                    for (r, (p, sc)) in plain_topk(&data[off..off + s], 3).into_iter().enumerate() {
                        expected.push(vec![
                            bb.to_string(),
                            ll.to_string(),
                            hh.to_string(),
                            q.to_string(),
                            String::new(),
                            p.to_string(),
                            String::new(),
                            (r + 1).to_string(),
                            sc.to_string(),
                        ]);
                    }
                }
            }
        }
    }
    assert_eq!(rows, expected);
}

#[test]
fn received_is_column_sums_and_minmax_by_hand() {
    let d = tempfile::tempdir().unwrap();
    // One layer, one batch row, two heads, 3×3: hand-checked column sums.
    let data = [
        0.5, 0.25, 0.25, 0.0, 1.0, 0.0, 0.25, 0.25, 0.5, // head 0: sums 0.75, 1.5, 0.75
        1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5, 0.0, 0.5, // head 1: sums 2.5, 0, 0.5
    ];
    let attn = d.path().join("a.npy");
    write_npy(&attn, &[1, 1, 2, 3, 3], &data);
    let out = d.path().join("r.csv");
    let o = run(&[
        "received",
        "--attn",
        attn.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = read_csv(&out);
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r[2].clone(), r[3].clone(), r[6].clone()))
        .collect();
    let want = [
        ("0", "1", "1"),
        ("0", "0", "2"),
        ("0", "2", "3"),
        ("1", "0", "1"),
        ("1", "2", "2"),
        ("1", "1", "3"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    let scores: Vec<f32> = rows.iter().map(|r| r[5].parse().unwrap()).collect();
    assert_eq!(scores, [1.5, 0.75, 0.75, 2.5, 0.5, 0.0]);

    // minmax over all six sums (lo 0, hi 2.5), then summed over heads:
    // position 0: 0.75/2.5 + 2.5/2.5 = 1.3; 1: 0.6 + 0 = 0.6; 2: 0.3 + 0.2 = 0.5.
    let o = run(&[
        "received",
        "--attn",
        attn.to_str().unwrap(),
        "--normalize",
        "minmax",
        "--reduce",
        "heads",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = read_csv(&out);
    assert_eq!(
        header,
        ["batch", "layer", "position", "token", "score", "rank"]
    );
    let got: Vec<(u32, f32)> = rows
        .iter()
        .map(|r| (r[2].parse().unwrap(), r[4].parse().unwrap()))
        .collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2]);
    for (g, w) in got.iter().zip([1.3f32, 0.6, 0.5]) {
        assert!((g.1 - w).abs() < 1e-6, "{g:?} vs {w}");
    }
}

#[test]
fn tokens_and_ids_give_the_fixture_tokens() {
    let d = tempfile::tempdir().unwrap();
    let tokens: Vec<Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(fixture("minilm/tokens.json")).unwrap())
            .unwrap();
    for extra in [
        vec![
            "--tokens",
            fixture("minilm/tokens.json")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
        ],
        vec![
            "--input-ids",
            fixture("minilm/input_ids.npy")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
            "--vocab",
            fixture("minilm/vocab.txt")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
        ],
        vec![
            "--input-ids",
            fixture("minilm/input_ids.npy")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
            "--vocab",
            fixture("minilm/tokenizer.json")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
        ],
    ] {
        let out = d.path().join("t.csv");
        let mut args = vec![
            "topk",
            "--attn",
            fixture("minilm/attentions.npy")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
            "-k",
            "2",
            "--layers",
            "5",
            "-o",
            out.to_str().unwrap().to_string().leak(),
        ];
        args.extend(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let (_, rows) = read_csv(&out);
        assert_eq!(rows.len(), 3 * 12 * 20 * 2);
        for r in &rows {
            let b: usize = r[0].parse().unwrap();
            let (q, p): (usize, usize) = (r[3].parse().unwrap(), r[5].parse().unwrap());
            assert_eq!(r[4], tokens[b][q]);
            assert_eq!(r[6], tokens[b][p]);
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let attn = fixture("minilm/attentions.npy");
    for args in [
        vec![
            "--threads",
            "0",
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "-o",
            "x.parquet",
        ],
        vec!["topk", "--attn", attn.to_str().unwrap(), "-o", "-"],
        vec![
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "-k",
            "0",
            "-o",
            "x.parquet",
        ],
        vec![
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "--row-group-size",
            "0",
            "-o",
            "x.parquet",
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error:"), "{}", stderr(&o));
        assert!(!Path::new("x.parquet").exists());
    }
}

#[test]
fn bad_inputs_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o.parquet");
    let out = out.to_str().unwrap();
    // A header that claims more data than the file holds.
    let big = d.path().join("in/claims_more.npy");
    std::fs::create_dir(d.path().join("in")).unwrap();
    write_npy(&big, &[1, 1, 1, 4, 4], &[0.25; 8]);
    let outd = d.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    let out_in = outd.join("o.parquet");
    let out_in = out_in.to_str().unwrap();
    assert_clean_failure(
        &["topk", "--attn", big.to_str().unwrap(), "-o", out_in],
        "claims_more.npy",
        &outd,
    );
    assert_clean_failure(
        &[
            "topk",
            "--attn",
            fixture("bad/truncated.npy").to_str().unwrap(),
            "-o",
            out_in,
        ],
        "truncated.npy",
        &outd,
    );
    assert_clean_failure(
        &[
            "topk",
            "--attn",
            fixture("bad/nan_attn.npy").to_str().unwrap(),
            "-o",
            out_in,
        ],
        "nan_attn.npy",
        &outd,
    );
    assert_clean_failure(
        &[
            "received",
            "--attn",
            fixture("bad/int32_attn.npy").to_str().unwrap(),
            "-o",
            out_in,
        ],
        "int32_attn.npy",
        &outd,
    );
    // An output directory that does not exist.
    let missing = d.path().join("nope/o.parquet");
    let o = run(&[
        "topk",
        "--attn",
        fixture("minilm/attentions.npy").to_str().unwrap(),
        "-o",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!d.path().join("nope").exists());
    let _ = out;
}

#[test]
fn allow_nan_ranks_nan_last() {
    let d = tempfile::tempdir().unwrap();
    let attn = d.path().join("a.npy");
    write_npy(
        &attn,
        &[1, 1, 1, 2, 4],
        &[0.1, f32::NAN, 0.7, 0.2, f32::NAN, 0.0, 0.0, f32::INFINITY],
    );
    let out = d.path().join("t.csv");
    let o = run(&[
        "topk",
        "--attn",
        attn.to_str().unwrap(),
        "--all",
        "--allow-nan",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = read_csv(&out);
    let order: Vec<&str> = rows.iter().map(|r| r[5].as_str()).collect();
    assert_eq!(order, ["2", "3", "0", "1", "3", "1", "2", "0"]);
}

#[test]
fn formats_agree() {
    let d = tempfile::tempdir().unwrap();
    let attn = fixture("minilm/attentions.npy");
    for (variant, extra) in [
        ("minilm/attentions_fortran.npy", vec![]),
        ("minilm/attentions.npz", vec![]),
        ("minilm/attentions_BHLQK.npy", vec!["--layout", "BHLQK"]),
    ] {
        let a = d.path().join("a.csv");
        let b = d.path().join("b.csv");
        let o = run(&[
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "--layers",
            "5",
            "-k",
            "4",
            "-o",
            a.to_str().unwrap(),
        ]);
        assert!(o.status.success());
        let mut args = vec![
            "topk",
            "--attn",
            fixture(variant).to_str().unwrap().to_string().leak(),
            "-k",
            "4",
            "-o",
            b.to_str().unwrap().to_string().leak(),
        ];
        args.extend(extra);
        let o = run(&args);
        assert!(o.status.success(), "{variant}: {}", stderr(&o));
        let (_, ra) = read_csv(&a);
        let (_, rb) = read_csv(&b);
        // The variants hold layer 5 only (as layer 0) except the BHLQK copy.
        let strip = |rows: Vec<Vec<String>>| {
            rows.into_iter()
                .map(|mut r| {
                    r[1].clear();
                    r
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(ra), strip(rb), "{variant}");
    }
}
