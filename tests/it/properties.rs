use super::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn any_axis_order_gives_the_same_frame(perm in Just([0usize, 1, 2, 3, 4]).prop_shuffle(), seed in 0u64..1000) {
        let d = tempfile::tempdir().unwrap();
        let shape = [2, 2, 3, 5, 5];
        let data = tensor(shape.iter().product(), seed);
        let base = d.path().join("base.npy");
        write_npy(&base, &shape, &data);
        let (pdata, pshape) = permuted(&data, shape, &perm);
        let other = d.path().join("perm.npy");
        write_npy(&other, &pshape, &pdata);
        let letters: String = perm.iter().map(|&a| ['L', 'B', 'H', 'Q', 'K'][a]).collect();
        let (a, b) = (d.path().join("a.csv"), d.path().join("b.csv"));
        let oa = run(&["topk", "--attn", base.to_str().unwrap(), "-k", "3", "-o", a.to_str().unwrap()]);
        let ob = run(&["topk", "--attn", other.to_str().unwrap(), "--layout", &letters, "-k", "3", "-o", b.to_str().unwrap()]);
        prop_assert!(oa.status.success() && ob.status.success(), "{}", stderr(&ob));
        prop_assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    }

    #[test]
    fn any_thread_count_gives_identical_bytes(threads in 1u32..5, all in any::<bool>()) {
        let d = tempfile::tempdir().unwrap();
        let attn = fixture("minilm/attentions.npy");
        let mut outs = Vec::new();
        for t in [1, threads] {
            let out = d.path().join(format!("t{t}.parquet"));
            let mut args = vec!["--threads".to_string(), t.to_string(), "topk".into(), "--attn".into(), attn.to_str().unwrap().into(),
                "--tokens".into(), fixture("minilm/tokens.json").to_str().unwrap().into(), "--row-group-size".into(), "5000".into(),
                "-o".into(), out.to_str().unwrap().into()];
            if all { args.push("--all".into()); }
            let o = bin().args(&args).output().unwrap();
            prop_assert!(o.status.success(), "{}", stderr(&o));
            outs.push(std::fs::read(&out).unwrap());
        }
        prop_assert!(outs[0] == outs[1], "--threads {} changed the bytes", threads);
    }
}
