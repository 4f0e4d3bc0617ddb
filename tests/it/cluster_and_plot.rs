use super::*;

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
