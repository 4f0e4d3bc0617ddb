//! Mutated tensor files, token files and selections: every reader returns a value or a typed
//! error — never a panic. Seeds are fixed, so a failure reproduces; `cargo test -- --ignored`
//! runs the long version.

use std::path::{Path, PathBuf};

use ingest::{parse_selection, AttentionSource, SourceOptions, TensorFile, Tokens, Vocab};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(p)
}

/// A valid file with one mutation: bit flips, a truncation, inserted bytes, or a huge number
/// written over a stretch of the first 200 bytes (where the headers are).
fn mutated(original: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = original.len();
    let head = n.min(200);
    prop_oneof![
        prop::collection::vec((0..head, 0u8..8), 1..6).prop_map({
            let o = original.clone();
            move |flips| {
                let mut v = o.clone();
                for (at, bit) in flips {
                    v[at] ^= 1 << bit;
                }
                v
            }
        }),
        (0..n).prop_map({
            let o = original.clone();
            move |len| o[..len].to_vec()
        }),
        (0..head, prop::collection::vec(any::<u8>(), 1..16)).prop_map({
            let o = original.clone();
            move |(at, bytes)| {
                let mut v = o.clone();
                v.splice(at..at, bytes);
                v
            }
        }),
        (
            0..head,
            prop::sample::select(vec![
                "99999999999999999999",
                "4294967296",
                "-1",
                "1e308",
                "0"
            ])
        )
            .prop_map({
                let o = original;
                move |(at, text)| {
                    let mut v = o.clone();
                    let end = (at + text.len()).min(v.len());
                    v.splice(at..end, text.bytes());
                    v
                }
            }),
    ]
}

/// Opens a mutated copy as a tensor and, when that works, as an attention source that reads
/// every slab: any error is fine, a panic is not.
fn open_everything(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    if let Ok(t) = TensorFile::open(&path, None) {
        let _ = t.to_f64_vec();
    }
    if let Ok(src) = AttentionSource::open(&SourceOptions {
        attn: path.clone(),
        layout: Some("LBHQK".into()),
        ..Default::default()
    }) {
        let mut buf = ingest::SlabBuffer::default();
        for s in ingest::RowSource::slabs(&src) {
            let _ = src.read_slab(s, &mut buf);
        }
    }
}

fn fuzz_file(fixture_name: &str, cases: u32) {
    let original = std::fs::read(fixture(fixture_name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ext = Path::new(fixture_name)
        .extension()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    runner
        .run(&mutated(original), |bytes| {
            open_everything(dir.path(), &format!("m.{ext}"), &bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn mutated_npy_npz_safetensors_never_panic() {
    for f in [
        "minilm/attentions_f16.npy",
        "minilm/attentions_fortran.npy",
        "minilm/attentions.npz",
        "minilm/attentions_bf16.safetensors",
    ] {
        fuzz_file(f, 300);
    }
}

#[test]
#[ignore = "long run: 25,000 cases per container"]
fn mutated_files_long_run() {
    for f in [
        "minilm/attentions_f16.npy",
        "minilm/attentions_fortran.npy",
        "minilm/attentions.npz",
        "minilm/attentions_bf16.safetensors",
    ] {
        fuzz_file(f, 25_000);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_npy_header_parses_or_errors(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend(&bytes);
        let _ = ingest::npy::parse_header(&with_magic);
        let _ = ingest::npy::parse_header(&bytes);
    }

    #[test]
    fn any_selection_parses_or_errors(spec in "[0-9,\\- ]{0,20}", n in 0usize..50) {
        if let Ok(v) = parse_selection(Some(&spec), n, "layer") {
            prop_assert!(v.iter().all(|&i| i < n));
        }
    }

    #[test]
    fn any_token_file_reads_or_errors(text in "\\PC{0,200}", json in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if json { "t.json" } else { "t.txt" });
        std::fs::write(&path, &text).unwrap();
        let _ = Tokens::from_file(&path, 2, 3);
        let vocab = dir.path().join(if json { "vocab.json" } else { "vocab.txt" });
        std::fs::write(&vocab, &text).unwrap();
        let _ = Vocab::load(&vocab);
    }
}
