use super::*;

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
