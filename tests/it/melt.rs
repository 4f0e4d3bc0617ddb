use super::*;

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
