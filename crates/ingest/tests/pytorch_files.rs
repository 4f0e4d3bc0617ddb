//! PyTorch files written by real `torch.save` (tests/fixtures/torch/make.py), and per-layer
//! arrays in `.npz`/`.safetensors`: each read value for value against the same data saved
//! with `np.save`.

use std::path::{Path, PathBuf};

use ingest::{AttentionSource, Container, RowSource, SlabBuffer, SourceOptions, TensorFile};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/torch")
        .join(p)
}

fn values(name: &str, key: Option<&str>) -> (Vec<usize>, Vec<f64>) {
    let t = TensorFile::open(&fixture(name), key).unwrap_or_else(|e| panic!("{name}: {e}"));
    (t.shape.clone(), t.to_f64_vec().unwrap())
}

fn assert_same(name: &str, key: Option<&str>, expected: &str) {
    assert_eq!(
        values(name, key),
        values(expected, None),
        "{name} {key:?} vs {expected}"
    );
}

fn error(name: &str, key: Option<&str>) -> String {
    match TensorFile::open(&fixture(name), key) {
        Ok(t) => panic!("{name} opened as {:?}", t.shape),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_way_of_saving_reads_the_same_values() {
    for name in ["stacked.pt", "tuple.pt", "list.pt", "dict.pt"] {
        assert_same(name, None, "expected.npy");
    }
    assert_same("dict.pt", Some("attentions"), "expected.npy");
    assert_same("f16.pt", None, "expected_f16.npy");
    assert_same("bf16.pt", None, "expected_bf16.npy");
    assert_same("view.pt", None, "expected_view.npy");
    assert_same("view_t.pt", None, "expected_view_t.npy");
    assert_same("per_layer.npz", Some("arr_*"), "expected.npy");
    assert_same("per_layer.safetensors", Some("layer_*"), "expected.npy");
    for part in ["encoder", "decoder", "cross"] {
        let key = format!("{part}_attentions");
        assert_same("encdec.pt", Some(&key), &format!("expected_{part}.npy"));
    }
    let t = TensorFile::open(&fixture("tuple.pt"), None).unwrap();
    assert_eq!(
        (t.container, t.stacked, t.key.as_deref()),
        (Container::Pytorch, Some(3), None)
    );
    for (name, dtype) in [
        ("f16.pt", "float16"),
        ("bf16.pt", "bfloat16"),
        ("tuple.pt", "float32"),
    ] {
        let t = TensorFile::open(&fixture(name), None).unwrap();
        assert_eq!(t.element.name(), dtype);
    }
    let t = TensorFile::open(&fixture("dict.pt"), Some("input_ids")).unwrap();
    assert_eq!(t.to_i64_vec().unwrap(), [0, 1, 2, 3]);
}

#[test]
fn slabs_match_the_npy_slab_by_slab() {
    let open = |name: &str, key: Option<&str>| {
        AttentionSource::open(&SourceOptions {
            attn: fixture(name),
            attn_key: key.map(str::to_string),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let expected = open("expected.npy", None);
    for (name, key) in [
        ("stacked.pt", None),
        ("tuple.pt", None),
        ("dict.pt", None),
        ("per_layer.npz", Some("arr_*")),
        ("per_layer.safetensors", Some("layer_*")),
    ] {
        let src = open(name, key);
        assert_eq!(src.dims, expected.dims);
        let (mut a, mut b) = (SlabBuffer::default(), SlabBuffer::default());
        for s in expected.slabs() {
            expected.read_slab(s, &mut a).unwrap();
            src.read_slab(s, &mut b).unwrap();
            assert_eq!(a.values, b.values, "{name} {s:?}");
            // Rows 1..3 alone: a read that starts inside a stacked part.
            src.read_rows(s, 1..3, &mut b).unwrap();
            assert_eq!(b.values, a.values[4..12], "{name} {s:?}");
        }
    }
}

#[test]
fn a_file_without_the_usual_extension_is_recognised_by_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attentions");
    std::fs::copy(fixture("tuple.pt"), &path).unwrap();
    let t = TensorFile::open(&path, None).unwrap();
    assert_eq!(t.container, Container::Pytorch);
    std::fs::copy(fixture("bad_legacy.pt"), &path).unwrap();
    let e = TensorFile::open(&path, None).err().unwrap().to_string();
    assert!(e.contains("legacy torch.save file"), "{e}");
}

#[test]
fn several_per_layer_arrays_suggest_a_pattern() {
    let e = error("per_layer.npz", None);
    assert!(
        e.ends_with("several arrays (arr_0, arr_1, arr_2); name one with --attn-key, or stack the 3 arrays of shape [1, 2, 4, 4] as layers with --attn-key 'arr_*'"),
        "{e}"
    );
    let e = error("per_layer.safetensors", None);
    assert!(e.contains("--attn-key 'layer_*'"), "{e}");
    let e = error("encdec.pt", None);
    assert!(
        e.ends_with("several arrays (cross_attentions, decoder_attentions, encoder_attentions); name one with --attn-key"),
        "{e}"
    );
}

#[test]
fn bad_files_say_what_is_wrong() {
    let cases = [
        ("bad_legacy.pt", "legacy torch.save file"),
        ("bad_class.pt", "names fractions.Fraction"),
        (
            "bad_shapes.pt",
            "differ in shape: '[0]' is [1, 2, 4, 4], '[1]' is [1, 2, 3, 4]",
        ),
        ("bad_empty.pt", "is an empty tuple"),
        (
            "bad_short.pt",
            "storage '0' holds 192 bytes, shorter than the 96 elements",
        ),
    ];
    for (name, want) in cases {
        let e = error(name, None);
        assert!(e.contains(want), "{name}: {e}");
    }
    let e = error("dict.pt", Some("x*"));
    assert!(e.contains("no array matches 'x*'"), "{e}");
}

#[test]
fn truncated_archives_are_errors() {
    let bytes = std::fs::read(fixture("tuple.pt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.pt");
    for len in [0, 3, 10, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..len]).unwrap();
        assert!(TensorFile::open(&path, None).is_err(), "{len} bytes");
    }
}
