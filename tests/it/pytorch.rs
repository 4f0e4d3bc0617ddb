use super::*;

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
