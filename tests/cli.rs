//! End-to-end tests of the `attnframes` binary. Every expected number is computed here
//! independently (plain sorts, column sums, hand-worked min-max), never copied from a run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use proptest::prelude::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attnframes"))
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes a little-endian f32 `.npy` (C order).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let mut bytes = ingest::npy::header_bytes("<f4", shape);
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// Parses a CSV the binary wrote (no quoted fields in these tests) into rows of fields.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    (
        header,
        lines
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect(),
    )
}

/// A deterministic pseudo-random tensor with ties (values on a coarse grid).
fn tensor(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 16) as f32 / 16.0
        })
        .collect()
}

/// (query, [(position, score)] best first) by a plain stable sort.
fn plain_topk(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap());
    idx.into_iter()
        .take(k)
        .map(|p| (p as u32, row[p]))
        .collect()
}

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

/// One line `error: <file>: …`, exit 1, no panic, nothing left in the output folder.
fn assert_clean_failure(args: &[&str], names: &str, out_dir: &Path) {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
    assert!(err.starts_with("error:") && err.contains(names), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read_dir(out_dir).unwrap().count(),
        0,
        "output left behind"
    );
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

// ---------------------------------------------------------------- PyTorch files, per-layer arrays

fn torch_fixture(p: &str) -> String {
    fixture(&format!("torch/{p}")).to_str().unwrap().to_string()
}

/// What `cmd` writes (CSV bytes, or inspect's report without its file lines) for `input`.
fn output_of(cmd: &[&str], input: &[String], out: &Path) -> Vec<u8> {
    let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    if cmd[0] == "inspect" {
        args.extend(input.iter().cloned());
        let o = bin().args(&args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        // Path, format, size and (for f16/bf16 references saved as f32) dtype differ by design;
        // the shape, layout and statistics not.
        return text
            .lines()
            .filter(|l| {
                !["  format", "  on disk", "  dtype"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .skip(1)
            .flat_map(|l| [l.as_bytes(), b"\n"].concat())
            .collect();
    }
    args.push("--attn".into());
    args.extend(input.iter().cloned());
    args.extend(["-o".into(), out.to_str().unwrap().into()]);
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    std::fs::read(out).unwrap()
}

#[test]
fn pytorch_files_and_per_layer_arrays_give_the_npy_frames() {
    let d = tempfile::tempdir().unwrap();
    let key = |k: &str| vec!["--attn-key".to_string(), k.to_string()];
    // (reference .npy, the same data saved another way, its --attn-key, square attention)
    let cases: Vec<(&str, &str, Vec<String>, bool)> = vec![
        ("expected.npy", "stacked.pt", vec![], true),
        ("expected.npy", "tuple.pt", vec![], true),
        ("expected.npy", "list.pt", vec![], true),
        ("expected.npy", "dict.pt", vec![], true),
        ("expected.npy", "dict.pt", key("attentions"), true),
        ("expected.npy", "per_layer.npz", key("arr_*"), true),
        (
            "expected.npy",
            "per_layer.safetensors",
            key("layer_*"),
            true,
        ),
        ("expected_f16.npy", "f16.pt", vec![], true),
        ("expected_bf16.npy", "bf16.pt", vec![], true),
        ("expected_view.npy", "view.pt", vec![], true),
        ("expected_view_t.npy", "view_t.pt", vec![], true),
        (
            "expected_encoder.npy",
            "encdec.pt",
            key("encoder_attentions"),
            true,
        ),
        (
            "expected_decoder.npy",
            "encdec.pt",
            key("decoder_attentions"),
            true,
        ),
        (
            "expected_cross.npy",
            "encdec.pt",
            key("cross_attentions"),
            false,
        ),
    ];
    let commands: [(&[&str], bool); 7] = [
        (&["topk", "-k", "3"], false),
        (&["topk", "--all"], false),
        (&["received", "--normalize", "minmax"], false),
        (&["headstats"], true),
        (&["rollout", "-k", "2"], true),
        (&["melt", "--axes", "layer,batch,head,query,key"], false),
        (&["inspect"], false),
    ];
    let out = d.path().join("o.csv");
    for (reference, variant, extra, square) in &cases {
        for (cmd, needs_square) in commands {
            if needs_square && !square {
                continue;
            }
            let want = output_of(cmd, &[torch_fixture(reference)], &out);
            let mut input = vec![torch_fixture(variant)];
            let mut cmd = cmd.to_vec();
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            if cmd[0] == "inspect" || cmd[0] == "melt" {
                cmd.extend(&extra);
            } else {
                input.extend(extra.iter().map(|s| s.to_string()));
            }
            let got = output_of(&cmd, &input, &out);
            assert!(
                want == got,
                "{variant} {extra:?} {cmd:?}: frames differ from {reference}\n{}\n---\n{}",
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            );
        }
    }
}

#[test]
fn a_dataset_of_pytorch_files_equals_one_of_npy_files() {
    let d = tempfile::tempdir().unwrap();
    for dir in ["pt", "npy"] {
        std::fs::create_dir(d.path().join(dir)).unwrap();
    }
    for stem in ["a", "b"] {
        std::fs::copy(
            fixture("torch/tuple.pt"),
            d.path().join(format!("pt/{stem}.pt")),
        )
        .unwrap();
        std::fs::copy(
            fixture("torch/expected.npy"),
            d.path().join(format!("npy/{stem}.npy")),
        )
        .unwrap();
    }
    let frames: Vec<Vec<u8>> = ["pt/*.pt", "npy/*.npy"]
        .iter()
        .map(|glob| {
            let out = d.path().join("o.csv");
            let pattern = d.path().join(glob);
            output_of(
                &["topk", "-k", "2"],
                &[pattern.to_str().unwrap().into()],
                &out,
            )
        })
        .collect();
    assert!(frames[0] == frames[1], "datasets differ");
    assert!(String::from_utf8_lossy(&frames[0]).starts_with("example_id,"));
}

#[test]
fn bad_pytorch_files_fail_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let outd = d.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    let out = outd.join("o.parquet");
    let out = out.to_str().unwrap();
    let truncated = d.path().join("truncated.pt");
    let bytes = std::fs::read(fixture("torch/tuple.pt")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let truncated = truncated.to_str().unwrap().to_string();
    let cases = [
        (
            torch_fixture("bad_legacy.pt"),
            vec![],
            "legacy torch.save file",
        ),
        (
            torch_fixture("bad_class.pt"),
            vec![],
            "names fractions.Fraction",
        ),
        (torch_fixture("bad_shapes.pt"), vec![], "differ in shape"),
        (torch_fixture("bad_empty.pt"), vec![], "is an empty tuple"),
        (
            torch_fixture("bad_short.pt"),
            vec![],
            "shorter than the 96 elements",
        ),
        (
            truncated,
            vec![],
            "truncated.pt: not a valid PyTorch zip archive",
        ),
        (
            torch_fixture("per_layer.npz"),
            vec![],
            "with --attn-key 'arr_*'",
        ),
        (
            torch_fixture("encdec.pt"),
            vec!["--attn-key", "cross*"],
            "'cross*' matches entry 'cross_attentions', which is not one tensor",
        ),
    ];
    for (file, extra, want) in cases {
        let mut args = vec!["topk", "--attn", &file];
        args.extend(extra);
        args.extend(["-o", out]);
        assert_clean_failure(&args, want, &outd);
    }
}

/// The same tensor with its axes permuted, read back with the matching --layout.
fn permuted(data: &[f32], shape: [usize; 5], perm: &[usize; 5]) -> (Vec<f32>, Vec<usize>) {
    let new_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
    let mut strides = [0usize; 5];
    let mut acc = 1;
    for a in (0..5).rev() {
        strides[a] = acc;
        acc *= shape[a];
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = [0usize; 5];
    for _ in 0..data.len() {
        let off: usize = (0..5).map(|i| idx[i] * strides[perm[i]]).sum();
        out.push(data[off]);
        for i in (0..5).rev() {
            idx[i] += 1;
            if idx[i] < new_shape[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    (out, new_shape)
}

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

// ---------------------------------------------------------------- Longformer

fn lf(case: &str, file: &str) -> String {
    fixture(&format!("longformer_{case}/{file}"))
        .to_str()
        .unwrap()
        .to_string()
}

fn read_f64(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let t = ingest::TensorFile::open(path, None).unwrap();
    (t.shape.clone(), t.to_f64_vec().unwrap())
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

// ---------------------------------------------------------------- similarity

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

// ---------------------------------------------------------------- compare

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

/// Writes an `.npy` with the given numpy type string and raw little-endian element bytes.
fn write_raw_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let mut bytes = ingest::npy::header_bytes(descr, shape);
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn melt_is_the_c_order_index_grid_with_tokens() {
    let d = tempfile::tempdir().unwrap();
    // (batch 2, query_position 3, position 3) int32 values 100·b + 10·q + k.
    let values: Vec<i32> = (0..2)
        .flat_map(|b| (0..3).flat_map(move |q| (0..3).map(move |k| 100 * b + 10 * q + k)))
        .collect();
    let x = d.path().join("x.npy");
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_raw_npy(&x, "<i4", &[2, 3, 3], &raw);
    let tokens = d.path().join("t.json");
    std::fs::write(&tokens, r#"[["a","b","c"],["x","y","z"]]"#).unwrap();
    let out = d.path().join("m.csv");
    let o = run(&[
        "melt",
        "--attn",
        x.to_str().unwrap(),
        "--axes",
        "batch,query_position,position",
        "--tokens",
        tokens.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = read_csv(&out);
    assert_eq!(
        header,
        [
            "batch",
            "query_position",
            "query_token",
            "position",
            "token",
            "value"
        ]
    );
    assert_eq!(rows.len(), 18);
    let names = [["a", "b", "c"], ["x", "y", "z"]];
    for (i, r) in rows.iter().enumerate() {
        let (b, q, k) = (i / 9, i / 3 % 3, i % 3);
        assert_eq!(r[0], b.to_string());
        assert_eq!(r[1], q.to_string());
        assert_eq!(r[2], names[b][q]);
        assert_eq!(r[3], k.to_string());
        assert_eq!(r[4], names[b][k]);
        assert_eq!(r[5], (100 * b + 10 * q + k).to_string());
    }
    // Axis names must match the tensor: a usage error.
    let o = run(&[
        "melt",
        "--attn",
        x.to_str().unwrap(),
        "--axes",
        "a,b",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn melt_keeps_float64_and_reads_fortran_order() {
    let d = tempfile::tempdir().unwrap();
    // A (2, 3) float64 array stored in Fortran order: storage is column by column.
    let logical = [[0.5f64, 1.25, -2.0], [3.0, 1e-300, 7.75]];
    let storage: Vec<u8> = (0..3)
        .flat_map(|c| (0..2).map(move |r| logical[r][c]))
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut bytes = ingest::npy::header_bytes("<f8", &[2, 3]);
    let (from, to) = (b"'fortran_order': False,", b"'fortran_order': True, ");
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + to.len()].copy_from_slice(to);
    let x = d.path().join("f.npy");
    bytes.extend(storage);
    std::fs::write(&x, bytes).unwrap();
    let out = d.path().join("m.csv");
    let o = run(&[
        "melt",
        "--attn",
        x.to_str().unwrap(),
        "--axes",
        "layer,dim",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, rows) = read_csv(&out);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            r[2].parse::<f64>().unwrap(),
            logical[i / 3][i % 3],
            "row {i}"
        );
    }
}

#[test]
fn cluster_is_the_same_for_any_thread_count_and_recovers_planted_rows() {
    let d = tempfile::tempdir().unwrap();
    // 12 rows over 12 keys in three planted groups: group g puts 0.9 on key g, the rest spread.
    let (s, groups) = (12usize, [0usize, 1, 2, 1, 0, 2, 2, 0, 1, 1, 2, 0]);
    let mut a = vec![0f32; s * s];
    for (q, &g) in groups.iter().enumerate() {
        for k in 0..s {
            a[q * s + k] = if k == g {
                0.9
            } else {
                0.1 / 11.0 + (q * 7 + k) as f32 * 1e-5
            };
        }
    }
    let x = d.path().join("a.npy");
    write_npy(&x, &[1, 1, 1, s, s], &a);
    let mut outputs = Vec::new();
    for threads in ["1", "3"] {
        let (labels, scores) = (
            d.path().join(format!("l{threads}.parquet")),
            d.path().join(format!("s{threads}.csv")),
        );
        let o = run(&[
            "--threads",
            threads,
            "cluster",
            "--attn",
            x.to_str().unwrap(),
            "--layer",
            "0",
            "--head",
            "0",
            "--k-range",
            "2-5",
            "-o",
            labels.to_str().unwrap(),
            "--scores",
            scores.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        outputs.push((
            std::fs::read(&labels).unwrap(),
            std::fs::read(&scores).unwrap(),
        ));
        let (header, rows) = read_csv(&scores);
        assert_eq!(header, ["rows", "k", "silhouette", "inertia", "chosen"]);
        let chosen: Vec<&str> = rows
            .iter()
            .filter(|r| r[4] == "true")
            .map(|r| r[1].as_str())
            .collect();
        assert_eq!(chosen, ["3"]);
    }
    assert_eq!(
        outputs[0], outputs[1],
        "output differs between 1 and 3 threads"
    );
    // Labels, numbered by first appearance, are the planted groups.
    let csv = d.path().join("l.csv");
    let o = run(&[
        "cluster",
        "--attn",
        x.to_str().unwrap(),
        "--layer",
        "0",
        "--head",
        "0",
        "--k-range",
        "2-5",
        "--rows",
        "even",
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (header, rows) = read_csv(&csv);
    assert_eq!(
        header,
        [
            "batch",
            "layer",
            "head",
            "rows",
            "query_position",
            "query_token",
            "cluster"
        ]
    );
    let positions: Vec<String> = rows.iter().map(|r| r[4].clone()).collect();
    assert_eq!(positions, ["0", "2", "4", "6", "8", "10"]);
    // Even rows: groups 0, 2, 0, 2, 1, 2 → first-appearance labels 0, 1, 0, 1, 2, 1.
    let labels: Vec<String> = rows.iter().map(|r| r[6].clone()).collect();
    assert_eq!(labels, ["0", "1", "0", "1", "2", "1"]);
    // k must stay below the number of rows.
    let o = run(&[
        "cluster",
        "--attn",
        x.to_str().unwrap(),
        "--layer",
        "0",
        "--head",
        "0",
        "--k-range",
        "2-12",
        "-o",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: ") && stderr(&o).contains("a.npy"),
        "{}",
        stderr(&o)
    );
}

/// Decoded RGB pixels of a PNG: (width, height, pixels).
fn decode_png(path: &Path) -> (usize, usize, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px = buf[..info.buffer_size()]
        .chunks(3)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width as usize, info.height as usize, px)
}

/// Lengths of the runs of non-white pixels at least `min` long along a line of pixels.
fn long_runs(line: impl Iterator<Item = [u8; 3]>, min: usize) -> Vec<usize> {
    let mut runs = Vec::new();
    let mut n = 0;
    for p in line.chain([[255, 255, 255]]) {
        if p != [255, 255, 255] {
            n += 1;
        } else {
            if n >= min {
                runs.push(n);
            }
            n = 0;
        }
    }
    runs
}

#[test]
fn plot_heatmaps_and_grids_measured_on_the_image() {
    let d = tempfile::tempdir().unwrap();
    // (L 3, B 1, H 2, 6, 6) with values that differ per cell.
    let a: Vec<f32> = (0..3 * 2 * 36)
        .map(|i| ((i * 37) % 101) as f32 / 101.0 + 0.01)
        .collect();
    let x = d.path().join("a.npy");
    write_npy(&x, &[3, 1, 2, 6, 6], &a);
    let single = d.path().join("h.png");
    let o = run(&[
        "plot",
        "--attn",
        x.to_str().unwrap(),
        "--layer",
        "1",
        "--head",
        "1",
        "-o",
        single.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (w, h, px) = decode_png(&single);
    let colours: std::collections::HashSet<[u8; 3]> = px.iter().copied().collect();
    assert!(colours.len() > 20, "{} colours", colours.len());
    // One heat area of 6 cells of 48 px (cells are capped at 48 px), plus margins.
    let mid = h / 2;
    let runs = long_runs(px[mid * w..(mid + 1) * w].iter().copied(), 30);
    assert_eq!(runs, vec![6 * 48], "runs along the middle row");

    let grid = d.path().join("g.png");
    let o = run(&[
        "plot",
        "--attn",
        x.to_str().unwrap(),
        "--grid",
        "--annotate",
        "-o",
        grid.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (w, h, px) = decode_png(&grid);
    // Panels of a grid: 2 heads across, 3 layers down, each heat area 6 × 40 px.
    let first_heat_row = (0..h)
        .find(|&y| !long_runs(px[y * w..(y + 1) * w].iter().copied(), 200).is_empty())
        .unwrap();
    let across = long_runs(
        px[(first_heat_row + 5) * w..(first_heat_row + 6) * w]
            .iter()
            .copied(),
        200,
    );
    assert_eq!(across, vec![240, 240]);
    let first_heat_col = (0..w)
        .find(|&x| {
            px[(first_heat_row + 5) * w + x] != [255, 255, 255]
                && long_runs((0..h).map(|y| px[y * w + x]), 200).len() == 3
        })
        .unwrap();
    let down = long_runs((0..h).map(|y| px[y * w + first_heat_col + 3]), 200);
    assert_eq!(down, vec![240, 240, 240]);

    // A 2,048 × 2,048 head is max-pooled to a 480-pixel heat area.
    let n = 2048;
    let big: Vec<f32> = (0..n * n)
        .map(|i| if i % 4099 == 0 { 1.0 } else { 1e-4 })
        .collect();
    let bx = d.path().join("big.npy");
    write_npy(&bx, &[n, n], &big);
    let bp = d.path().join("big.png");
    let o = run(&[
        "plot",
        "--attn",
        bx.to_str().unwrap(),
        "--layer",
        "0",
        "--head",
        "0",
        "-o",
        bp.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (w, h, px) = decode_png(&bp);
    let runs = long_runs(px[h / 2 * w..(h / 2 + 1) * w].iter().copied(), 100);
    assert_eq!(runs, vec![480]);
    // The diagonal's sparse peaks survive max-pooling: yellow appears.
    assert!(px.iter().any(|p| p[0] > 200 && p[1] > 200 && p[2] < 100));
}

#[test]
fn plot_text_latex_escapes_every_special_character() {
    let d = tempfile::tempdir().unwrap();
    let toks = [
        "#", "%", "&", "_", "^", "{", "}", "\\", "~", "$", "play", "##ing",
    ];
    let s = toks.len();
    let a: Vec<f32> = (0..s * s).map(|i| (i % s) as f32 + 1.0).collect();
    let x = d.path().join("a.npy");
    write_npy(&x, &[s, s], &a);
    let t = d.path().join("t.json");
    std::fs::write(&t, serde_json::to_string(&toks).unwrap()).unwrap();
    let tex = d.path().join("t.tex");
    let o = run(&[
        "plot",
        "--attn",
        x.to_str().unwrap(),
        "--tokens",
        t.to_str().unwrap(),
        "--text",
        "-o",
        tex.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = std::fs::read_to_string(&tex).unwrap();
    for want in [
        r"\strut \#}",
        r"\strut \%}",
        r"\strut \&}",
        r"\strut \_}",
        r"\strut \textasciicircum{}}",
        r"\strut \{}",
        r"\strut \}}",
        r"\strut \textbackslash{}}",
        r"\strut \textasciitilde{}}",
        r"\strut \$}",
        r"{\strut play}\colorbox",
    ] {
        assert!(doc.contains(want), "missing {want} in {doc}");
    }
    assert_eq!(doc.matches(r"\colorbox").count(), s);
    // Column k receives s·(k+1) in total: the last token gets the full colour, the first none.
    assert!(doc.contains(r"\colorbox{red!0.0}{\strut \#}"), "{doc}");
    assert!(doc.contains(r"\colorbox{red!100.0}{\strut ing}"), "{doc}");
    // An image extension with --text is a usage error.
    let o = run(&[
        "plot",
        "--attn",
        x.to_str().unwrap(),
        "--text",
        "-o",
        d.path().join("t.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}

fn planted(file: &str) -> Vec<i64> {
    let bytes = std::fs::read(fixture(&format!("cluster_features/{file}"))).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize + 10;
    bytes[header_len..]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn cluster_features(rows: &str, dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let (l, s, c) = (
        dir.join(format!("l_{rows}.csv")),
        dir.join(format!("s_{rows}.csv")),
        dir.join(format!("c_{rows}.csv")),
    );
    let mut args = vec![
        "cluster",
        "--attn",
        "",
        "--layer",
        "0",
        "--head",
        "0",
        "--rows",
        rows,
        "--k-range",
        "2-6",
        "--features",
        "",
        "-o",
        l.to_str().unwrap(),
        "--scores",
        s.to_str().unwrap(),
        "--coefs",
        c.to_str().unwrap(),
    ];
    let (attn, feats) = (
        fixture("cluster_features/attentions.npy"),
        fixture("cluster_features/features.npy"),
    );
    args[2] = attn.to_str().unwrap();
    args[12] = feats.to_str().unwrap();
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    (l, s, c)
}

#[test]
fn cluster_svm_recovers_the_planted_features() {
    let d = tempfile::tempdir().unwrap();
    let (l, _, c) = cluster_features("both", d.path(), &[]);
    let (_, labels) = read_csv(&l);
    let (header, coefs) = read_csv(&c);
    assert_eq!(
        header,
        [
            "batch",
            "layer",
            "head",
            "rows",
            "cluster",
            "feature",
            "coef",
            "intercept",
            "accuracy"
        ]
    );
    // Planted: even rows by x0 − x1 > 0, odd rows by x2 + x3 > 0.
    for (rows, file, signs) in [
        ("even", "planted_even.npy", [1.0, -1.0]),
        ("odd", "planted_odd.npy", [1.0, 1.0]),
    ] {
        let planted = planted(file);
        let ours: Vec<(usize, u32)> = labels
            .iter()
            .filter(|r| r[3] == rows)
            .map(|r| (r[4].parse().unwrap(), r[6].parse().unwrap()))
            .collect();
        // Cluster 1 (the SVM's positive class) is planted class 1 or 0: the signs follow.
        let flip = if planted[ours.iter().find(|(_, c)| *c == 1).unwrap().0] == 1 {
            1.0
        } else {
            -1.0
        };
        for &(p, c) in &ours {
            assert_eq!(
                (planted[p] == 1) == (c == 1),
                flip > 0.0,
                "row {p}: labels are not the planted partition"
            );
        }
        let vec: Vec<&Vec<String>> = coefs.iter().filter(|r| r[3] == rows).collect();
        assert_eq!(vec.len(), 4, "one classifier of four features for k = 2");
        assert!(
            vec.iter()
                .all(|r| r[4] == "1" && r[8].parse::<f64>().unwrap() == 1.0),
            "{vec:?}"
        );
        let planted_features = if rows == "even" { [0, 1] } else { [2, 3] };
        for (f, sign) in planted_features.iter().zip(signs) {
            let coef: f64 = vec[*f][6].parse().unwrap();
            assert!(coef * sign * flip > 0.3, "{rows} feature {f}: coef {coef}");
        }
    }
    // --rows both is the two separate runs, row for row.
    let mut separate = Vec::new();
    for rows in ["even", "odd"] {
        let (l, s, c) = cluster_features(rows, d.path(), &[]);
        separate.push([read_csv(&l).1, read_csv(&s).1, read_csv(&c).1]);
    }
    let s = read_csv(&d.path().join("s_both.csv")).1;
    assert_eq!(
        labels,
        [separate[0][0].clone(), separate[1][0].clone()].concat()
    );
    assert_eq!(s, [separate[0][1].clone(), separate[1][1].clone()].concat());
    assert_eq!(
        coefs,
        [separate[0][2].clone(), separate[1][2].clone()].concat()
    );
}

#[test]
fn cluster_composite_has_its_panels() {
    let d = tempfile::tempdir().unwrap();
    let png = d.path().join("c.png");
    cluster_features("both", d.path(), &["--plot", png.to_str().unwrap()]);
    let (w, h, px) = decode_png(&png);
    let colours: std::collections::HashSet<[u8; 3]> = px.iter().copied().collect();
    assert!(colours.len() > 20, "{} colours", colours.len());
    // Right of the silhouette chart: two quadrants across (24 even and 24 odd keys in 220 px),
    // and two down (24 even and 24 odd queries).
    let right = |y: usize| px[y * w + w / 3..(y + 1) * w].iter().copied();
    let top = (0..h)
        .find(|&y| !long_runs(right(y), 150).is_empty())
        .unwrap();
    assert_eq!(long_runs(right(top + 10), 150), vec![220, 220]);
    let x = (w / 3..w)
        .find(|&x| px[(top + 10) * w + x] != [255, 255, 255])
        .unwrap()
        + 10;
    assert_eq!(
        long_runs((0..h).map(|y| px[y * w + x]), 150),
        vec![220, 220]
    );
    // --dpi scales the layout: twice the resolution, about twice the pixels each way.
    let hires = d.path().join("hi.png");
    cluster_features(
        "both",
        d.path(),
        &["--plot", hires.to_str().unwrap(), "--dpi", "200"],
    );
    let (w2, h2, _) = decode_png(&hires);
    assert!(
        (w2 as f64 / w as f64 - 2.0).abs() < 0.05 && (h2 as f64 / h as f64 - 2.0).abs() < 0.05,
        "{w}x{h} → {w2}x{h2}"
    );
    // --size fits the same figure into the pixels asked for.
    let sized = d.path().join("s.png");
    cluster_features(
        "both",
        d.path(),
        &["--plot", sized.to_str().unwrap(), "--size", "800x450"],
    );
    let (w, h, _) = decode_png(&sized);
    assert_eq!((w, h), (800, 450));
}

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

#[test]
fn plot_grid_of_a_4d_key_tensor() {
    let d = tempfile::tempdir().unwrap();
    // (layer 2, head 3, position 4, dim 5): key vectors, not attention — any values.
    let keys: Vec<f32> = (0..2 * 3 * 4 * 5)
        .map(|i| ((i * 13) % 17) as f32 - 8.0)
        .collect();
    let x = d.path().join("k.npy");
    write_npy(&x, &[2, 3, 4, 5], &keys);
    let png = d.path().join("k.png");
    let o = run(&[
        "plot",
        "--attn",
        x.to_str().unwrap(),
        "--layout",
        "LHQK",
        "--grid",
        "--annotate",
        "-o",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (w, h, px) = decode_png(&png);
    // 3 panels across (heads), 2 down (layers); 4 × 5 cells of 48 px (the cap) is 192 × 240.
    let top = (0..h)
        .find(|&y| !long_runs(px[y * w..(y + 1) * w].iter().copied(), 150).is_empty())
        .unwrap();
    assert_eq!(
        long_runs(px[(top + 3) * w..(top + 4) * w].iter().copied(), 150),
        vec![240, 240, 240]
    );
    let x0 = (0..w)
        .find(|&x| px[(top + 3) * w + x] != [255, 255, 255])
        .unwrap()
        + 3;
    assert_eq!(
        long_runs((0..h).map(|y| px[y * w + x0]), 150),
        vec![192, 192]
    );
}

/// Starts `topk --all` on an `.npy` streamed through stdin, sends the header and the first of
/// two slabs, and waits until the output's temporary exists (the second slab never comes).
fn stalled_topk(dir: &Path) -> (std::process::Child, std::process::ChildStdin) {
    use std::io::Write;
    let mut child = bin()
        .args([
            "topk",
            "--attn",
            "-",
            "--all",
            "--row-group-size",
            "4",
            "-o",
        ])
        .arg(dir.join("out.parquet"))
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut bytes = ingest::npy::header_bytes("<f4", &[1, 1, 2, 4, 4]);
    bytes.extend((0..16).flat_map(|i| (i as f32 / 120.0).to_le_bytes()));
    stdin.write_all(&bytes).unwrap();
    stdin.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while temporaries(dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (child, stdin)
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.parquet.attnframes-"))
        .collect()
}

fn send(signal: &str, child: &std::process::Child) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn interrupted_runs_leave_no_output_and_no_temporary() {
    use std::os::unix::process::ExitStatusExt;
    let d = tempfile::tempdir().unwrap();
    // Ctrl-C: the temporary is removed and the exit status is 130.
    let (mut child, _stdin) = stalled_topk(d.path());
    send("-INT", &child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "nothing is left"
    );
    // SIGTERM: the same, with 143.
    let (mut child, _stdin) = stalled_topk(d.path());
    send("-TERM", &child);
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(std::fs::read_dir(d.path()).unwrap().next().is_none());
    // SIGKILL cannot be caught: no output appears, the temporary stays, and the next run
    // towards the same target sweeps it.
    let (mut child, stdin) = stalled_topk(d.path());
    send("-KILL", &child);
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    drop(stdin);
    assert!(!d.path().join("out.parquet").exists());
    assert_eq!(temporaries(d.path()).len(), 1);
    let o = run(&[
        "topk",
        "--attn",
        fixture("minilm/attentions.npy").to_str().unwrap(),
        "-k",
        "2",
        "-o",
        d.path().join("out.parquet").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        temporaries(d.path()).is_empty(),
        "the stale temporary is swept"
    );
    // A failed run never truncates a good output: the old file stays byte for byte.
    let good = std::fs::read(d.path().join("out.parquet")).unwrap();
    let o = run(&[
        "topk",
        "--attn",
        fixture("bad/truncated.npy").to_str().unwrap(),
        "-o",
        d.path().join("out.parquet").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(std::fs::read(d.path().join("out.parquet")).unwrap(), good);
}

#[test]
fn full_disk_and_closed_pipe() {
    use std::io::{BufRead, BufReader};
    let d = tempfile::tempdir().unwrap();
    let attn = fixture("minilm/attentions.npy");
    // A file-size limit of 20 blocks: writes fail with EFBIG (SIGXFSZ ignored, as a shell's
    // `trap '' XFSZ` leaves it for the exec'd program).
    let out = d.path().join("big.parquet");
    let o = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 20; trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_attnframes"))
        .args([
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "--all",
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ")
            && err.contains("big.parquet")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "no output, no temporary"
    );
    // Reading one line of a CSV stream and closing the pipe: a quiet exit 0, as ripgrep does.
    let mut child = bin()
        .args([
            "topk",
            "--attn",
            attn.to_str().unwrap(),
            "--all",
            "-o",
            "-",
            "--format",
            "csv",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("batch,layer,head"));
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // The same for a byte output: `dense -o -` (1 MB, more than a pipe holds) read for a few
    // bytes. Longformer input: S = 256, one global slot, window w = 16.
    let (s, w) = (256usize, 16usize);
    let sliding = d.path().join("sliding.npy");
    let global = d.path().join("global.npy");
    write_npy(
        &sliding,
        &[1, 1, 4, s, w + 2],
        &vec![1.0 / (w + 2) as f32; 4 * s * (w + 2)],
    );
    write_npy(&global, &[1, 1, 4, s, 1], &vec![1.0 / s as f32; 4 * s]);
    let mut child = bin()
        .args([
            "dense",
            "--attn",
            sliding.to_str().unwrap(),
            "--global-attn",
            global.to_str().unwrap(),
            "-o",
            "-",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut magic = [0u8; 6];
    std::io::Read::read_exact(&mut child.stdout.take().unwrap(), &mut magic).unwrap();
    assert_eq!(&magic, b"\x93NUMPY");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn hostile_header_sizes_are_refused_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    for (name, shape) in [
        ("overflow.npy", "(4294967296, 4294967296, 4294967296)"),
        ("huge.npy", "(1, 1, 12, 1000000, 1000000)"),
    ] {
        let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let mut h = header.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((h.len() as u16).to_le_bytes());
        bytes.extend(h);
        bytes.extend([0u8; 64]);
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = d.path().join("o.parquet");
        for cmd in [
            vec!["topk"],
            vec!["melt", "--axes", "a,b,c,d,e"],
            vec!["headstats"],
        ] {
            let mut args: Vec<&str> = cmd.clone();
            args.extend(["--attn", p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            if shape.matches(',').count() == 2 && cmd[0] == "melt" {
                args[2] = "a,b,c";
            }
            let o = run(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd:?} {name}: {err}");
            assert!(err.starts_with("error: ") && err.contains(name), "{err}");
            assert!(
                err.chars().any(|c| c.is_ascii_digit()),
                "the numbers are in the message: {err}"
            );
            assert!(!d.path().join("o.parquet").exists());
        }
    }
}

#[test]
fn every_command_writes_the_same_bytes_for_any_thread_count() {
    let d = tempfile::tempdir().unwrap();
    let (a, m, t) = (
        fixture("minilm/attentions.npy"),
        fixture("minilm/attention_mask.npy"),
        fixture("minilm/tokens.json"),
    );
    let (a, m, t) = (
        a.to_str().unwrap(),
        m.to_str().unwrap(),
        t.to_str().unwrap(),
    );
    let attr = fixture("minilm/attributions.npy");
    let run_b = fixture("spacetime/run_b.npy");
    let run_a = fixture("spacetime/run_a.npy");
    let base = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        v.extend(["--attn", a, "--attention-mask", m, "--tokens", t].map(String::from));
        v
    };
    let commands: Vec<Vec<String>> = vec![
        base(&["topk", "-k", "5"]),
        base(&["topk", "--all", "--words"]),
        base(&["received", "--normalize", "minmax", "--reduce", "heads"]),
        [
            base(&["similarity"]),
            vec!["--attributions".into(), attr.display().to_string()],
        ]
        .concat(),
        base(&["headstats"]),
        base(&["rollout", "-k", "3"]),
        base(&[
            "cluster",
            "--layer",
            "3",
            "--head",
            "2",
            "--batch",
            "2",
            "--rows",
            "both",
            "--k-range",
            "2-4",
        ]),
        vec![
            "melt".into(),
            "--attn".into(),
            a.into(),
            "--axes".into(),
            "layer,batch,head,query_position,position".into(),
        ],
        vec![
            "compare".into(),
            "--attn".into(),
            run_a.display().to_string(),
            "--attn-b".into(),
            run_b.display().to_string(),
            "--channels-a".into(),
            "SP1,SP2,TO1,TO2,TO'1,TO'2".into(),
            "--channels-b".into(),
            "SP2,TO1,TO2,TO'1,TO'2,SP1".into(),
            "--block".into(),
            "6".into(),
        ],
    ];
    for cmd in &commands {
        for ext in ["parquet", "csv", "arrow"] {
            let outputs: Vec<Vec<u8>> = ["1", "2", "8"]
                .iter()
                .map(|threads| {
                    let out = d.path().join(format!("o{threads}.{ext}"));
                    let o = bin()
                        .arg("--threads")
                        .arg(threads)
                        .args(cmd)
                        .arg("-o")
                        .arg(&out)
                        .output()
                        .unwrap();
                    assert!(o.status.success(), "{cmd:?}: {}", stderr(&o));
                    std::fs::read(&out).unwrap()
                })
                .collect();
            assert!(
                outputs.windows(2).all(|w| w[0] == w[1]),
                "{cmd:?} .{ext} differs between 1, 2 and 8 threads"
            );
        }
    }
}

#[test]
#[ignore = "soak: 1,000 sequential runs and 50 concurrent ones (about a minute)"]
fn soak_sequential_and_concurrent_runs() {
    let d = tempfile::tempdir().unwrap();
    let a = fixture("minilm/attentions.npy");
    let args = |out: &Path| -> Vec<String> {
        [
            "topk",
            "--attn",
            a.to_str().unwrap(),
            "-k",
            "3",
            "-o",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let reference = d.path().join("reference.parquet");
    assert!(bin().args(args(&reference)).status().unwrap().success());
    let want = std::fs::read(&reference).unwrap();
    for i in 0..1000 {
        let out = d.path().join("seq.parquet");
        let o = bin().args(args(&out)).output().unwrap();
        assert!(o.status.success(), "run {i}: {}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), want, "run {i}");
    }
    let children: Vec<_> = (0..50)
        .map(|i| {
            bin()
                .args(args(&d.path().join(format!("c{i}.parquet"))))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for i in 0..50 {
        assert_eq!(
            std::fs::read(d.path().join(format!("c{i}.parquet"))).unwrap(),
            want
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Every row of a Parquet file or dataset directory as a CSV line of `columns` (hive folder
/// keys added as columns), sorted: equal row sets give equal vectors.
fn parquet_rows(path: &Path, columns: &[&str]) -> Vec<String> {
    use polars::prelude::*;
    fn frames(path: &Path, keys: &[(String, u16)], out: &mut Vec<DataFrame>) {
        if path.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let mut keys = keys.to_vec();
                if let Some((k, v)) = name.split_once('=') {
                    keys.push((k.to_string(), v.parse().unwrap()));
                }
                if p.is_dir() || name.ends_with(".parquet") {
                    frames(&p, &keys, out);
                }
            }
            return;
        }
        let mut df = ParquetReader::new(std::fs::File::open(path).unwrap())
            .finish()
            .unwrap();
        for (k, v) in keys {
            df.with_column(Column::new(k.as_str().into(), vec![*v; df.height()]))
                .unwrap();
        }
        out.push(df);
    }
    let mut dfs = Vec::new();
    frames(path, &[], &mut dfs);
    let mut lines = Vec::new();
    for df in dfs {
        let mut df = df.select(columns.iter().copied()).unwrap();
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .include_header(false)
            .finish(&mut df)
            .unwrap();
        lines.extend(String::from_utf8(buf).unwrap().lines().map(str::to_string));
    }
    lines.sort();
    lines
}

/// Five example files of different lengths, with tokens for each.
fn example_dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("attn")).unwrap();
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    for i in 0..5usize {
        let s = 5 + i;
        let data = tensor(2 * 3 * s * s, i as u64 + 1);
        write_npy(
            &dir.join(format!("attn/ex{i}.npy")),
            &[2, 1, 3, s, s],
            &data,
        );
        let tokens: Vec<String> = (0..s).map(|p| format!("w{i}_{p}")).collect();
        std::fs::write(
            dir.join(format!("tokens/ex{i}.json")),
            serde_json::to_string(&tokens).unwrap(),
        )
        .unwrap();
    }
}

const TOPK_COLUMNS: [&str; 10] = [
    "example_id",
    "batch",
    "layer",
    "head",
    "query_position",
    "query_token",
    "position",
    "token",
    "rank",
    "score",
];

#[test]
fn a_dataset_holds_each_files_own_rows() {
    let d = tempfile::tempdir().unwrap();
    example_dataset(d.path());
    let p = |s: &str| d.path().join(s).display().to_string();
    // Each file on its own, example_id added here.
    let mut want = Vec::new();
    for i in 0..5 {
        let out = p(&format!("ex{i}.csv"));
        let o = run(&[
            "topk",
            "--attn",
            &p(&format!("attn/ex{i}.npy")),
            "--tokens",
            &p(&format!("tokens/ex{i}.json")),
            "-k",
            "3",
            "-o",
            &out,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let (_, rows) = read_csv(Path::new(&out));
        want.extend(rows.into_iter().map(|r| format!("ex{i},{}", r.join(","))));
    }
    want.sort();
    let glob = p("attn/*.npy");
    let o = run(&[
        "topk",
        "--attn",
        &glob,
        "--tokens-dir",
        &p("tokens"),
        "-k",
        "3",
        "-o",
        &p("out/"),
        "--partition-by",
        "layer",
        "--max-rows-per-file",
        "100",
        "--row-group-size",
        "40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = parquet_rows(&d.path().join("out"), &TOPK_COLUMNS);
    assert_eq!(got, want);
    // Two zero-padded layer folders, parts of at most 100 rows, _SUCCESS.
    let mut layers: Vec<String> = std::fs::read_dir(d.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    layers.sort();
    assert_eq!(layers, ["_SUCCESS", "layer=00", "layer=01"]);
    for e in std::fs::read_dir(d.path().join("out/layer=01")).unwrap() {
        let part = e.unwrap().path();
        let name = part.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "{name}"
        );
        let rows = parquet_rows(&part, &["batch", "head", "rank"]).len();
        assert!((1..=100).contains(&rows), "{name}: {rows} rows");
    }
    // Several files into one file: the same rows.
    let o = run(&[
        "topk",
        "--attn",
        &p("attn/ex0.npy"),
        &p("attn/ex1.npy"),
        &p("attn/ex2.npy"),
        &p("attn/ex3.npy"),
        &p("attn/ex4.npy"),
        "--tokens-dir",
        &p("tokens"),
        "-k",
        "3",
        "-o",
        &p("all.parquet"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        parquet_rows(&d.path().join("all.parquet"), &TOPK_COLUMNS),
        want
    );
}

#[test]
fn shards_union_to_the_whole_and_threads_do_not_matter() {
    let d = tempfile::tempdir().unwrap();
    example_dataset(d.path());
    let p = |s: &str| d.path().join(s).display().to_string();
    let glob = p("attn/*.npy");
    let args = |out: &str| -> Vec<String> {
        [
            "received",
            "--attn",
            &glob,
            "--tokens-dir",
            &p("tokens"),
            "-o",
            out,
            "--partition-by",
            "layer,head",
            "--example-id-from",
            "index",
        ]
        .map(str::to_string)
        .to_vec()
    };
    let run_owned = |extra: &[&str], out: &str| {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend(args(out));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = run(&refs);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run_owned(&["--threads", "1"], &p("whole/"));
    run_owned(&["--threads", "2"], &p("whole2/"));
    for i in 0..3 {
        let mut a = args(&p("sharded/"));
        a.extend(["--shard".to_string(), format!("{i}/3")]);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = run(&refs);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(d.path().join("sharded/_SUCCESS").exists(), i == 2);
    }
    let columns = [
        "example_id",
        "batch",
        "layer",
        "head",
        "position",
        "token",
        "score",
    ];
    let whole = parquet_rows(&d.path().join("whole"), &columns);
    assert_eq!(whole.len(), (5..10).map(|s| 2 * 3 * s).sum::<usize>());
    assert_eq!(parquet_rows(&d.path().join("sharded"), &columns), whole);
    // Byte-identical for any thread count.
    for layer in ["layer=00", "layer=01"] {
        for head in ["head=00", "head=01", "head=02"] {
            let part = format!("{layer}/{head}/part-00000.parquet");
            assert_eq!(
                std::fs::read(d.path().join("whole").join(&part)).unwrap(),
                std::fs::read(d.path().join("whole2").join(&part)).unwrap(),
                "{part}"
            );
        }
    }
}

#[test]
fn dataset_mistakes_are_one_line() {
    let d = tempfile::tempdir().unwrap();
    example_dataset(d.path());
    let p = |s: &str| d.path().join(s).display().to_string();
    let cases: [(Vec<String>, i32, &str); 5] = [
        (
            vec![p("none/*.npy"), "-o".into(), p("o/")],
            1,
            "no file matches this pattern",
        ),
        (
            vec![
                p("attn/*.npy"),
                "-o".into(),
                p("o.parquet"),
                "--partition-by".into(),
                "layer".into(),
            ],
            2,
            "give a directory",
        ),
        (
            vec![
                p("attn/ex0.npy"),
                p("tokens/../attn/ex0.npy"),
                "-o".into(),
                p("o/"),
            ],
            2,
            "have the same stem ex0",
        ),
        (
            vec![
                p("attn/*.npy"),
                "--tokens-dir".into(),
                p("attn"),
                "-o".into(),
                p("o/"),
            ],
            1,
            "no tokens for ex0",
        ),
        (
            vec![
                p("attn/*.npy"),
                "-o".into(),
                p("o/"),
                "--shard".into(),
                "3/3".into(),
            ],
            2,
            "0 <= i < n",
        ),
    ];
    for (args, code, text) in cases {
        let mut a = vec!["topk".to_string(), "--attn".to_string()];
        a.extend(args);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = run(&refs);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{a:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(text), "{err}");
        assert!(!d.path().join("o").exists() && !d.path().join("o.parquet").exists());
    }
}

// ---------------------------------------------------------------- view

#[test]
fn view_writes_one_self_contained_page() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("v.html");
    let o = run(&[
        "view",
        "--attn",
        fixture("minilm/attentions.npy").to_str().unwrap(),
        "--tokens",
        fixture("minilm/tokens.json").to_str().unwrap(),
        "--attention-mask",
        fixture("minilm/attention_mask.npy").to_str().unwrap(),
        "-k",
        "4",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Nothing is fetched: no external script, style or image.
    for needle in ["src=\"http", "href=\"http", "<link", "@import", "url(http"] {
        assert!(!html.contains(needle), "{needle}");
    }
    // Per batch row: thumbnails and received sums; per head: detail and top-k.
    let (l, b, h) = (6, 3, 12);
    assert_eq!(
        html.matches("type=\"application/octet-stream\"").count(),
        b * 2 + b * l * h * 2
    );
    let meta = html
        .split("<script type=\"application/json\" id=\"meta\">")
        .nth(1)
        .unwrap();
    let meta = meta.split("</script>").next().unwrap();
    let meta: serde_json::Value = serde_json::from_str(meta).unwrap();
    assert_eq!(meta["k"], 4);
    assert_eq!(meta["batches"].as_array().unwrap().len(), b);
    assert_eq!(meta["batches"][0]["keys"].as_array().unwrap().len(), 13);
    // 13 valid tokens, full resolution.
    assert_eq!(meta["batches"][0]["heads"][0]["detail"]["rows"], 13);
    assert_eq!(meta["stats"]["columns"][3], "entropy");
    // windowsill's two pieces form one word.
    let words = meta["batches"][0]["words"].as_array().unwrap();
    assert!(words.iter().any(|w| w.as_array().unwrap().len() == 2));
}

#[test]
fn view_bad_input_fails_cleanly() {
    let d = tempfile::tempdir().unwrap();
    let outd = d.path().join("out");
    std::fs::create_dir(&outd).unwrap();
    let out = outd.join("v.html");
    let out = out.to_str().unwrap();
    for (file, name) in [
        ("bad/truncated.npy", "truncated.npy"),
        ("bad/nan_attn.npy", "nan_attn.npy"),
        ("bad/int32_attn.npy", "int32_attn.npy"),
    ] {
        assert_clean_failure(
            &["view", "--attn", fixture(file).to_str().unwrap(), "-o", out],
            name,
            &outd,
        );
    }
    // Not an .html output, or --words: usage errors.
    let attn = fixture("minilm/attentions.npy");
    for args in [
        vec!["view", "--attn", attn.to_str().unwrap(), "-o", "v.png"],
        vec![
            "view",
            "--attn",
            attn.to_str().unwrap(),
            "--tokens",
            fixture("minilm/tokens.json").to_str().unwrap(),
            "--words",
            "-o",
            out,
        ],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
        assert!(stderr(&o).starts_with("error:"), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read_dir(&outd).unwrap().count(), 0);
}
