use super::*;

#[test]
fn similarity_hand_built_scopes_and_errors() {
    let d = tempfile::tempdir().unwrap();
    // 2 layers, 1 batch row, 1 head, 3 positions. Received (column sums):
    // layer 0: [1.0, 1.5, 0.5]; layer 1 (the last): [0.5, 0.5, 2.0]; all layers: [1.5, 2.0, 2.5].
    let attn = [
        0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5, // layer 0
        0.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0, // layer 1
    ];
    let (ap, tp, out) = (
        d.path().join("a.npy"),
        d.path().join("t.npy"),
        d.path().join("s.csv"),
    );
    write_npy(&ap, &[2, 1, 1, 3, 3], &attn);
    // Attributions equal to the all-layers vector: that scope agrees perfectly.
    write_npy(&tp, &[3], &[1.5, 2.0, 2.5]);
    let o = run(&[
        "similarity",
        "--attn",
        ap.to_str().unwrap(),
        "--attributions",
        tp.to_str().unwrap(),
        "--percentile",
        "50",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = read_csv(&out);
    assert_eq!(&header[..3], ["batch", "scope", "cosine_raw"]);
    assert_eq!(header.len(), 13);
    let all = rows.iter().find(|r| r[1] == "all_layers").unwrap();
    for (name, v) in header[2..].iter().zip(&all[2..]) {
        let v: f64 = v.parse().unwrap();
        assert!((v - 1.0).abs() < 1e-9, "all_layers {name} = {v}");
    }
    // last layer [0.5, 0.5, 2.0] vs [1.5, 2.0, 2.5]: cosine by hand = 6.75 / (√4.5 · √12.5) = 0.9;
    // Kendall's tau-b: pairs (0,1) tied in x only, (0,2) and (1,2) concordant → 2 / √(3·2).
    let last = rows.iter().find(|r| r[1] == "last_layer").unwrap();
    let val = |name: &str| -> f64 {
        last[header.iter().position(|h| h == name).unwrap()]
            .parse()
            .unwrap()
    };
    assert!((val("cosine_raw") - 0.9).abs() < 1e-9);
    assert!((val("kendall_tau_b") - 2.0 / 6f64.sqrt()).abs() < 1e-9);

    let wrong = d.path().join("wrong.npy");
    write_npy(&wrong, &[4], &[1.0; 4]);
    let outd = d.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    let o2 = outd.join("s.parquet");
    assert_clean_failure(
        &[
            "similarity",
            "--attn",
            ap.to_str().unwrap(),
            "--attributions",
            wrong.to_str().unwrap(),
            "-o",
            o2.to_str().unwrap(),
        ],
        "wrong.npy",
        &outd,
    );
}
