use super::*;

/// Permutes the channel blocks (rows and columns) of every head of a (L,B,H,S,S) tensor:
/// new block i = old block `order[i]`.
fn permute_blocks(data: &[f32], shape: [usize; 5], order: &[usize], block: usize) -> Vec<f32> {
    let s = shape[3];
    let pos: Vec<usize> = order
        .iter()
        .flat_map(|&c| c * block..(c + 1) * block)
        .collect();
    let mut out = vec![0f32; data.len()];
    for (slab_out, slab) in out.chunks_exact_mut(s * s).zip(data.chunks_exact(s * s)) {
        for q in 0..s {
            for k in 0..s {
                slab_out[q * s + k] = slab[pos[q] * s + pos[k]];
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn compare_with_any_permutation_is_identity(order in Just(vec![0usize, 1, 2, 3]).prop_shuffle(), seed in 0u64..100) {
        let d = tempfile::tempdir().unwrap();
        let (shape, block) = ([2usize, 1, 2, 8, 8], 2usize);
        let names = ["C3", "C4", "O'1", "O'2"];
        let data = tensor(shape.iter().product(), seed);
        let b_data = permute_blocks(&data, shape, &order, block);
        let (pa, pb, out) = (d.path().join("a.npy"), d.path().join("b.npy"), d.path().join("c.csv"));
        write_npy(&pa, &shape, &data);
        write_npy(&pb, &shape, &b_data);
        let channels_b: Vec<&str> = order.iter().map(|&i| names[i]).collect();
        let o = run(&["compare", "--attn", pa.to_str().unwrap(), "--attn-b", pb.to_str().unwrap(),
            "--channels-a", &names.join(","), "--channels-b", &channels_b.join(","), "--block", "2", "-o", out.to_str().unwrap()]);
        prop_assert!(o.status.success(), "{}", stderr(&o));
        let (header, rows) = read_csv(&out);
        prop_assert_eq!(&header[3..], ["cosine", "pearson", "mean_abs_diff", "max_abs_diff", "jsd_mean", "tvd_mean",
            "max_attention_a", "max_attention_b"]);
        prop_assert_eq!(rows.len(), 4);
        for r in rows {
            let v: Vec<f64> = r[3..].iter().map(|x| x.parse().unwrap()).collect();
            prop_assert!((v[0] - 1.0).abs() < 1e-12 && (v[1] - 1.0).abs() < 1e-12, "{:?}", v);
            prop_assert!(v[2] == 0.0 && v[3] == 0.0, "{:?}", v);
            // Identical distributions: no divergence, no variation distance, equal maxima.
            prop_assert!(v[4].abs() < 1e-7 && v[5] == 0.0 && v[6] == v[7], "{:?}", v);
        }
    }
}

#[test]
fn compare_blocks_and_errors() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (
        fixture("spacetime/run_a.npy"),
        fixture("spacetime/run_b.npy"),
    );
    let (out, blocks) = (d.path().join("c.csv"), d.path().join("b.csv"));
    let chan_a = "SP1,SP2,TO1,TO2,TO'1,TO'2";
    let o = run(&[
        "compare",
        "--attn",
        a.to_str().unwrap(),
        "--attn-b",
        b.to_str().unwrap(),
        "--channels-a",
        chan_a,
        "--channels-b",
        "SP2,TO1,TO2,TO'1,TO'2,SP1",
        "--block",
        "6",
        "-o",
        out.to_str().unwrap(),
        "--blocks",
        blocks.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The fixture's run B is run A with its blocks permuted: every head compares as identical,
    // and both runs give the same block means.
    let (_, rows) = read_csv(&out);
    assert!(rows.iter().all(|r| r[6].parse::<f64>().unwrap() == 0.0));
    let (bh, brows) = read_csv(&blocks);
    assert_eq!(
        bh,
        [
            "run",
            "batch",
            "layer",
            "head",
            "query_channel",
            "key_channel",
            "mean_attention"
        ]
    );
    let (ra, rb): (Vec<_>, Vec<_>) = brows.iter().partition(|r| r[0] == "a");
    assert_eq!(ra.len(), 6 * 12 * 36);
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x[1..6], y[1..6]);
        assert!((x[6].parse::<f64>().unwrap() - y[6].parse::<f64>().unwrap()).abs() < 1e-15);
    }
    // Each block mean is the mean of that 6×6 block, checked by hand for the first head.
    let (shape, raw) = read_f64(&a);
    let s = shape[3];
    let mean = |qc: usize, kc: usize| {
        (0..6)
            .flat_map(|q| (0..6).map(move |k| (q, k)))
            .map(|(q, k)| raw[(qc * 6 + q) * s + kc * 6 + k])
            .sum::<f64>()
            / 36.0
    };
    for (i, r) in ra.iter().take(36).enumerate() {
        assert!((r[6].parse::<f64>().unwrap() - mean(i / 6, i % 6)).abs() < 1e-12);
    }

    let outd = d.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    let o2 = outd.join("c.parquet");
    let o2 = o2.to_str().unwrap();
    // Not a permutation: TO1 spelled T01 (as the original notebook does in one cell).
    assert_clean_failure(
        &[
            "compare",
            "--attn",
            a.to_str().unwrap(),
            "--attn-b",
            b.to_str().unwrap(),
            "--channels-a",
            chan_a,
            "--channels-b",
            "SP2,T01,TO2,TO'1,TO'2,SP1",
            "--block",
            "6",
            "-o",
            o2,
        ],
        "missing: [TO1], extra: [T01]",
        &outd,
    );
    assert_clean_failure(
        &[
            "compare",
            "--attn",
            a.to_str().unwrap(),
            "--attn-b",
            b.to_str().unwrap(),
            "--channels-a",
            chan_a,
            "--block",
            "5",
            "-o",
            o2,
        ],
        "run_a.npy",
        &outd,
    );
    let other = d.path().join("other.npy");
    write_npy(&other, &[6, 1, 12, 36, 35], &vec![0.1; 6 * 12 * 36 * 35]);
    assert_clean_failure(
        &[
            "compare",
            "--attn",
            a.to_str().unwrap(),
            "--attn-b",
            other.to_str().unwrap(),
            "--channels-a",
            chan_a,
            "--block",
            "6",
            "-o",
            o2,
        ],
        "other.npy",
        &outd,
    );
}

#[test]
fn compare_plot_and_similarity_example_ids() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (
        fixture("spacetime/run_a.npy"),
        fixture("spacetime/run_b.npy"),
    );
    let (out, png) = (d.path().join("c.csv"), d.path().join("c.png"));
    let o = run(&[
        "compare",
        "--attn",
        a.to_str().unwrap(),
        "--attn-b",
        b.to_str().unwrap(),
        "--channels-a",
        "SP1,SP2,TO1,TO2,TO'1,TO'2",
        "--channels-b",
        "SP2,TO1,TO2,TO'1,TO'2,SP1",
        "--block",
        "6",
        "-o",
        out.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
        "--layer",
        "2",
        "--head",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&png)
        .unwrap()
        .starts_with(b"\x89PNG\r\n\x1a\n"));

    let ids = d.path().join("ids.txt");
    std::fs::write(&ids, "first\nsecond\nthird\n").unwrap();
    let (sim, ov) = (d.path().join("s.csv"), d.path().join("o.csv"));
    let o = run(&[
        "similarity",
        "--attn",
        fixture("minilm/attentions.npy").to_str().unwrap(),
        "--attention-mask",
        fixture("minilm/attention_mask.npy").to_str().unwrap(),
        "--attributions",
        fixture("minilm/attributions.npy").to_str().unwrap(),
        "--example-ids",
        ids.to_str().unwrap(),
        "-o",
        sim.to_str().unwrap(),
        "--overlap",
        ov.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [&sim, &ov] {
        let (header, rows) = read_csv(f);
        assert_eq!(header[..2], ["example_id", "batch"]);
        for r in rows {
            let want = ["first", "second", "third"][r[1].parse::<usize>().unwrap()];
            assert_eq!(r[0], want);
        }
    }
}
