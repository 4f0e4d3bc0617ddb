use super::*;

/// Runs with the repository as working directory, so paths in messages are relative.
fn run_in_repo(args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

#[test]
fn help_snapshots() {
    for cmd in [
        "topk",
        "received",
        "inspect",
        "dense",
        "similarity",
        "compare",
        "melt",
        "cluster",
        "plot",
        "headstats",
        "rollout",
        "view",
    ] {
        let o = run_in_repo(&[cmd, "--help"]);
        assert!(o.status.success());
        insta::assert_snapshot!(format!("help_{cmd}"), String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn error_line_snapshots() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("o.parquet");
    let out = out.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 6] = [
        (
            "truncated",
            vec![
                "topk",
                "--attn",
                "tests/fixtures/bad/truncated.npy",
                "-o",
                out,
            ],
        ),
        (
            "nan",
            vec![
                "topk",
                "--attn",
                "tests/fixtures/bad/nan_attn.npy",
                "-o",
                out,
            ],
        ),
        (
            "int32",
            vec![
                "topk",
                "--attn",
                "tests/fixtures/bad/int32_attn.npy",
                "-o",
                out,
            ],
        ),
        ("missing", vec!["inspect", "tests/fixtures/nope.npy"]),
        (
            "layer_range",
            vec![
                "topk",
                "--attn",
                "tests/fixtures/minilm/attentions.npy",
                "--layers",
                "9",
                "-o",
                out,
            ],
        ),
        (
            "npz_key",
            vec![
                "topk",
                "--attn",
                "tests/fixtures/minilm/attentions.npz",
                "--attn-key",
                "nope",
                "-o",
                out,
            ],
        ),
    ];
    for (name, args) in cases {
        let o = run_in_repo(&args);
        assert_eq!(o.status.code(), Some(1), "{name}");
        insta::assert_snapshot!(format!("error_{name}"), String::from_utf8_lossy(&o.stderr));
    }
}
