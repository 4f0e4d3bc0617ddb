use super::*;

fn lf(case: &str, file: &str) -> String {
    fixture(&format!("longformer_{case}/{file}"))
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn longformer_sparse_rows_equal_the_dense_path() {
    let d = tempfile::tempdir().unwrap();
    for case in ["single", "multi"] {
        let dense = d.path().join(format!("{case}.npy"));
        let masks = [
            "--global-mask".to_string(),
            lf(case, "global_attention_mask.npy"),
            "--attention-mask".into(),
            lf(case, "attention_mask.npy"),
        ];
        let mut args = vec![
            "dense".to_string(),
            "--attn".into(),
            lf(case, "attentions.npy"),
            "--global-attn".into(),
            lf(case, "global_attentions.npy"),
        ];
        args.extend(masks.iter().cloned());
        args.extend(["-o".into(), dense.to_str().unwrap().into()]);
        let o = bin().args(&args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        for analysis in [
            vec!["topk", "-k", "5"],
            vec!["topk", "--all"],
            vec!["topk", "--nonzero"],
            vec!["received"],
            vec![
                "received",
                "--normalize",
                "minmax",
                "--reduce",
                "heads",
                "-k",
                "10",
            ],
            vec!["headstats"],
            vec!["rollout", "-k", "3"],
        ] {
            let (a, b) = (d.path().join("sparse.csv"), d.path().join("dense.csv"));
            let mut sparse: Vec<String> = analysis.iter().map(|s| s.to_string()).collect();
            sparse.extend([
                "--attn".into(),
                lf(case, "attentions.npy"),
                "--global-attn".into(),
                lf(case, "global_attentions.npy"),
            ]);
            sparse.extend(masks.iter().cloned());
            sparse.extend([
                "--tokens".into(),
                lf(case, "tokens.json"),
                "-o".into(),
                a.to_str().unwrap().into(),
            ]);
            let mut dense_args: Vec<String> = analysis.iter().map(|s| s.to_string()).collect();
            dense_args.extend([
                "--attn".into(),
                dense.to_str().unwrap().into(),
                "--attention-mask".into(),
                lf(case, "attention_mask.npy"),
            ]);
            dense_args.extend([
                "--tokens".into(),
                lf(case, "tokens.json"),
                "-o".into(),
                b.to_str().unwrap().into(),
            ]);
            for args in [&sparse, &dense_args] {
                let o = bin().args(args).output().unwrap();
                assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            }
            let (sparse, dense) = (
                std::fs::read_to_string(&a).unwrap(),
                std::fs::read_to_string(&b).unwrap(),
            );
            if analysis[0] == "headstats" {
                // The sparse path adds the unlisted zeros' entropy in closed form, in another
                // order than the dense lanes: equal values, not equal bits.
                assert_csv_close(&sparse, &dense, 1e-6);
            } else {
                assert!(
                    sparse == dense,
                    "{case} {analysis:?}: sparse and dense frames differ"
                );
            }
        }
    }
}

/// A file's rows are read in place from a map of it, a stream's into a buffer: the frames
/// must be the same bytes.
#[test]
fn mapped_and_read_longformer_rows_give_the_same_frames() {
    let d = tempfile::tempdir().unwrap();
    for analysis in [vec!["topk", "-k", "5"], vec!["received"], vec!["headstats"]] {
        let mut outputs = Vec::new();
        for (n, attn) in [lf("multi", "attentions.npy"), "-".into()]
            .iter()
            .enumerate()
        {
            let out = d.path().join(format!("{n}.csv"));
            let mut args: Vec<String> = analysis.iter().map(|s| s.to_string()).collect();
            args.extend([
                "--attn".into(),
                attn.clone(),
                "--global-attn".into(),
                lf("multi", "global_attentions.npy"),
                "--global-mask".into(),
                lf("multi", "global_attention_mask.npy"),
                "--attention-mask".into(),
                lf("multi", "attention_mask.npy"),
                "-o".into(),
                out.to_str().unwrap().into(),
            ]);
            let stdin = std::fs::File::open(lf("multi", "attentions.npy")).unwrap();
            let o = bin().args(&args).stdin(stdin).output().unwrap();
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            outputs.push(std::fs::read(out).unwrap());
        }
        assert!(
            outputs[0] == outputs[1],
            "{analysis:?}: mapped and read rows differ"
        );
    }
}

/// Two CSV texts with the same cells, numbers equal within relative `tol`.
fn assert_csv_close(a: &str, b: &str, tol: f64) {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    assert_eq!(la.len(), lb.len());
    for (ra, rb) in la.iter().zip(&lb) {
        for (x, y) in ra.split(',').zip(rb.split(',')) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(u), Ok(v)) if u != v => {
                    assert!(
                        (u - v).abs() <= tol * u.abs().max(v.abs()),
                        "{x} vs {y} in\n{ra}\n{rb}"
                    )
                }
                _ => assert_eq!(x, y),
            }
        }
    }
}

#[test]
fn longformer_dense_rows_are_probabilities() {
    let d = tempfile::tempdir().unwrap();
    for case in ["single", "multi"] {
        let out = d.path().join("dense.npy");
        let o = run(&[
            "dense",
            "--attn",
            &lf(case, "attentions.npy"),
            "--global-attn",
            &lf(case, "global_attentions.npy"),
            "--global-mask",
            &lf(case, "global_attention_mask.npy"),
            "--attention-mask",
            &lf(case, "attention_mask.npy"),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (shape, dense) = read_f64(&out);
        let (_, mask) = read_f64(&fixture(&format!("longformer_{case}/attention_mask.npy")));
        let (_, gmask) = read_f64(&fixture(&format!(
            "longformer_{case}/global_attention_mask.npy"
        )));
        let (gshape, global) = read_f64(&fixture(&format!(
            "longformer_{case}/global_attentions.npy"
        )));
        let [l, b, h, s, _] = shape[..] else {
            panic!("5-D")
        };
        let (sg, x) = (gshape[3], gshape[4]);
        for (li, bi, hi) in
            (0..l).flat_map(|li| (0..b).flat_map(move |bi| (0..h).map(move |hi| (li, bi, hi))))
        {
            let slab = &dense[((li * b + bi) * h + hi) * s * s..][..s * s];
            let globals: Vec<usize> = (0..s).filter(|&p| gmask[bi * s + p] != 0.0).collect();
            for q in 0..s {
                let row = &slab[q * s..(q + 1) * s];
                if mask[bi * s + q] == 0.0 {
                    assert!(
                        row.iter().all(|&v| v == 0.0),
                        "{case}: padded row {q} is not 0"
                    );
                    continue;
                }
                let sum: f64 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{case}: row {q} sums to {sum}");
                for k in (0..s).filter(|&k| mask[bi * s + k] == 0.0) {
                    assert_eq!(row[k], 0.0, "{case}: padded column {k}");
                }
                if let Some(t) = globals.iter().position(|&g| g == q) {
                    let g = &global[((li * b + bi) * h + hi) * sg * x..];
                    for k in 0..s {
                        assert_eq!(row[k] as f32, g[k * x + t] as f32, "{case}: global row {q}");
                    }
                }
            }
        }
    }
}

#[test]
fn longformer_tiny_hand_built_case() {
    // S = 10, w = 4, x = 2, globals at 0 and 5; entries in hundredths. Rows 0 and 5 are the
    // global queries; every other row has its window q-2..q+2 plus the two global keys.
    #[rustfmt::skip]
    let dense: [[u32; 10]; 10] = [
        [10, 10, 10, 10, 10, 10, 10, 10, 10, 10],
        [20, 30, 25, 15,  0, 10,  0,  0,  0,  0],
        [ 5, 10, 40, 20, 15, 10,  0,  0,  0,  0],
        [10,  5, 10, 40, 20, 15,  0,  0,  0,  0],
        [10,  0,  5, 10, 40, 20, 15,  0,  0,  0],
        [ 1,  2,  3,  4,  5, 30, 25, 15, 10,  5],
        [10,  0,  0,  0,  5, 20, 40, 15, 10,  0],
        [10,  0,  0,  0,  0, 15, 10, 40, 20,  5],
        [10,  0,  0,  0,  0, 10,  5, 15, 40, 20],
        [20,  0,  0,  0,  0, 10,  0, 10, 20, 40],
    ];
    let v = |q: usize, k: usize| dense[q][k] as f32 / 100.0;
    let (s, w, globals) = (10usize, 4usize, [0usize, 5]);
    let x = globals.len();
    // HF's tensors for that matrix: window entries of global keys are 0 (their score is in
    // the slot), rows of global queries are 0 in the sliding tensor and live in the global one.
    let mut sliding = vec![0f32; s * (x + w + 1)];
    for q in (0..s).filter(|q| !globals.contains(q)) {
        let row = &mut sliding[q * (x + w + 1)..(q + 1) * (x + w + 1)];
        for (t, &g) in globals.iter().enumerate() {
            row[t] = v(q, g);
        }
        for c in 0..=w {
            let k = q as isize - (w / 2) as isize + c as isize;
            if (0..s as isize).contains(&k) && !globals.contains(&(k as usize)) {
                row[x + c] = v(q, k as usize);
            }
        }
    }
    let s_pad = 12;
    let mut global = vec![0.99f32; s_pad * x]; // rows past S are HF padding, ignored
    for (t, &g) in globals.iter().enumerate() {
        for k in 0..s {
            global[k * x + t] = v(g, k);
        }
    }
    let d = tempfile::tempdir().unwrap();
    let (sp, gp, mp, out) = (
        d.path().join("s.npy"),
        d.path().join("g.npy"),
        d.path().join("m.npy"),
        d.path().join("d.npy"),
    );
    write_npy(&sp, &[1, 1, 1, s, x + w + 1], &sliding);
    write_npy(&gp, &[1, 1, 1, s_pad, x], &global);
    let mask: Vec<f32> = (0..s).map(|p| globals.contains(&p) as u8 as f32).collect();
    write_npy(&mp, &[1, s], &mask);
    let o = run(&[
        "dense",
        "--attn",
        sp.to_str().unwrap(),
        "--global-attn",
        gp.to_str().unwrap(),
        "--global-mask",
        mp.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, got) = read_f64(&out);
    assert_eq!(shape, [1, 1, 1, s, s]);
    for q in 0..s {
        for k in 0..s {
            assert_eq!(got[q * s + k] as f32, v(q, k), "dense[{q}][{k}]");
        }
    }
}

#[test]
fn longformer_malformed_inputs() {
    let d = tempfile::tempdir().unwrap();
    let p = |name: &str| d.path().join(name).to_str().unwrap().to_string();
    let outd = d.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    let out = outd.join("d.npy");
    let out = out.to_str().unwrap();
    write_npy(
        Path::new(&p("sliding.npy")),
        &[2, 1, 3, 8, 6],
        &[0.1; 2 * 3 * 8 * 6],
    ); // x = 1, w = 4
    write_npy(
        Path::new(&p("global.npy")),
        &[2, 1, 3, 8, 1],
        &[0.1; 2 * 3 * 8],
    );
    write_npy(
        Path::new(&p("odd_w.npy")),
        &[2, 1, 3, 8, 7],
        &[0.1; 2 * 3 * 8 * 7],
    );
    write_npy(
        Path::new(&p("global_heads.npy")),
        &[2, 1, 2, 8, 1],
        &[0.1; 2 * 2 * 8],
    );
    write_npy(
        Path::new(&p("global_short.npy")),
        &[2, 1, 3, 6, 1],
        &[0.1; 2 * 3 * 6],
    );
    write_npy(
        Path::new(&p("sliding_x2.npy")),
        &[2, 1, 3, 8, 7],
        &[0.1; 2 * 3 * 8 * 7],
    ); // x = 2, w = 4
    write_npy(
        Path::new(&p("global_x2.npy")),
        &[2, 1, 3, 8, 2],
        &[0.1; 2 * 3 * 8 * 2],
    );
    write_npy(
        Path::new(&p("mask_three.npy")),
        &[1, 8],
        &[1., 0., 1., 0., 1., 0., 0., 0.],
    );
    for (sliding, global, extra, culprit) in [
        ("odd_w.npy", "global.npy", None, "odd_w.npy"),
        ("sliding.npy", "global_heads.npy", None, "global_heads.npy"),
        ("sliding.npy", "global_short.npy", None, "global_short.npy"),
        ("sliding_x2.npy", "global_x2.npy", None, "global_x2.npy"),
        (
            "sliding_x2.npy",
            "global_x2.npy",
            Some("mask_three.npy"),
            "mask_three.npy",
        ),
    ] {
        let mut args = vec![
            "dense".to_string(),
            "--attn".into(),
            p(sliding),
            "--global-attn".into(),
            p(global),
            "-o".into(),
            out.into(),
        ];
        if let Some(m) = extra {
            args.extend(["--global-mask".into(), p(m)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clean_failure(&args, culprit, &outd);
    }
}

#[test]
fn nonzero_is_the_full_ranking_without_its_zeros() {
    let d = tempfile::tempdir().unwrap();
    for case in ["single", "multi"] {
        let (all, nz) = (d.path().join("all.csv"), d.path().join("nz.csv"));
        let base = [
            "topk",
            "--all",
            "--attn",
            &lf(case, "attentions.npy"),
            "--global-attn",
            &lf(case, "global_attentions.npy"),
            "--global-mask",
            &lf(case, "global_attention_mask.npy"),
            "--attention-mask",
            &lf(case, "attention_mask.npy"),
        ]
        .map(str::to_string);
        for (out, extra) in [(&all, None), (&nz, Some("--nonzero"))] {
            let mut args: Vec<String> = base.to_vec();
            args.extend(extra.map(str::to_string));
            args.extend(["-o".into(), out.to_str().unwrap().into()]);
            let o = bin().args(&args).output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
        }
        let (_, all_rows) = read_csv(&all);
        let (_, nz_rows) = read_csv(&nz);
        let positive: Vec<Vec<String>> = all_rows
            .into_iter()
            .filter(|r| r[8].parse::<f32>().unwrap() > 0.0)
            .collect();
        assert!(
            !nz_rows.is_empty() && nz_rows.len() < read_csv(&all).1.len(),
            "{case}"
        );
        assert_eq!(nz_rows, positive, "{case}");
    }
}
