use super::*;

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

#[test]
fn a_failed_dataset_removes_the_parents_it_created() {
    let d = tempfile::tempdir().unwrap();
    let (ok, bad) = (d.path().join("ok.npy"), d.path().join("bad.npy"));
    write_npy(&ok, &[1, 1, 1, 2, 2], &[0.5; 4]);
    write_npy(&bad, &[1, 1, 1, 2, 2], &[0.5, f32::NAN, 0.5, 0.5]);
    let out = d.path().join("made/deep/o/");
    let o = run(&[
        "topk",
        "--attn",
        ok.to_str().unwrap(),
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("contains NaN"), "{}", stderr(&o));
    assert!(!d.path().join("made").exists(), "made/ is left behind");
}
