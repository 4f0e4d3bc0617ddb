//! Mutated tensor files, token files and selections: every reader returns a value or a typed
//! error — never a panic. Seeds are fixed, so a failure reproduces; `cargo test -- --ignored`
//! runs the long version.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ingest::{parse_selection, AttentionSource, SourceOptions, TensorFile, Tokens, Vocab};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Counts the bytes live on the heap and the peak since the last reset, so a test can bound
/// what opening a file may allocate.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The tests of this file run one at a time, so the heap counters see one test only.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` and returns how far the heap grew above where it started.
fn heap_growth(f: impl FnOnce()) -> usize {
    let start = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(start, Ordering::Relaxed);
    f();
    PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(start)
}

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
    let _one = exclusive();
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
            // The bound derived from the file length: a few copies of the file (an inflated
            // member, a slab, its f32 conversion) plus fixed buffers.
            let bound = 16 * bytes.len() + (8 << 20);
            let grew = heap_growth(|| open_everything(dir.path(), &format!("m.{ext}"), &bytes));
            prop_assert!(
                grew <= bound,
                "{grew} bytes allocated for a {}-byte file",
                bytes.len()
            );
            Ok(())
        })
        .unwrap();
}

/// Valid files of every container and header variant the readers accept.
const MUTATED: [&str; 14] = [
    "minilm/attentions_f16.npy",
    "minilm/attentions_fortran.npy",
    "odd/be_f4.npy",
    "odd/v2.npy",
    "odd/v3.npy",
    "minilm/attentions.npz",
    "odd/compressed.npz",
    "odd/zip64_path.npz",
    "minilm/attentions_bf16.safetensors",
    "odd/unaligned.safetensors",
    "torch/tuple.pt",
    "torch/dict.pt",
    "torch/view_t.pt",
    "torch/per_layer.npz",
];

#[test]
fn mutated_npy_npz_safetensors_pytorch_never_panic() {
    for f in MUTATED {
        fuzz_file(f, 1000);
    }
}

#[test]
#[ignore = "long run: 100,000 mutated files per fixture"]
fn mutated_files_long_run() {
    for f in MUTATED {
        fuzz_file(f, 100_000);
    }
}

/// Runs `check` on `cases` values of `strategy` with a fixed seed, one test at a time.
fn run_cases<S: Strategy>(
    cases: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let _one = exclusive();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    runner.run(&strategy, check).unwrap();
}

/// Random bytes as an npy header, with and without the magic string.
fn npy_headers(cases: u32) {
    run_cases(cases, prop::collection::vec(any::<u8>(), 0..300), |bytes| {
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend(&bytes);
        let _ = ingest::npy::parse_header(&with_magic);
        let _ = ingest::npy::parse_header(&bytes);
        Ok(())
    });
}

/// Selection strings: a selection only ever holds indices of the axis.
fn selections(cases: u32) {
    run_cases(cases, ("[0-9,\\- ]{0,20}", 0usize..50), |(spec, n)| {
        if let Ok(v) = parse_selection(Some(&spec), n, "layer") {
            prop_assert!(v.iter().all(|&i| i < n));
        }
        Ok(())
    });
}

/// Token lists (.txt, .json) and vocabularies (vocab.txt, vocab.json, tokenizer.json): valid
/// JSON shapes with odd contents as well as arbitrary text.
fn token_files(cases: u32) {
    let json_like = prop_oneof![
        "\\PC{0,200}",
        prop::collection::vec("\\PC{0,8}", 0..6).prop_map(|v| serde_json::to_string(&v).unwrap()),
        prop::collection::vec(prop::collection::vec("[a-z#]{0,4}", 0..4), 0..4)
            .prop_map(|v| serde_json::to_string(&v).unwrap()),
        prop::collection::btree_map("\\PC{0,6}", any::<i64>(), 0..6).prop_map(|m| {
            serde_json::json!({"model": {"vocab": m}, "added_tokens": [{"id": -1, "content": "x"}]}).to_string()
        }),
    ];
    run_cases(cases, (json_like, 0usize..3), |(text, kind)| {
        let dir = tempfile::tempdir().unwrap();
        let (tokens, vocab) = [
            ("t.json", "vocab.json"),
            ("t.txt", "vocab.txt"),
            ("t.json", "tokenizer.json"),
        ][kind];
        std::fs::write(dir.path().join(tokens), &text).unwrap();
        let _ = Tokens::from_file(&dir.path().join(tokens), 2, 3);
        std::fs::write(dir.path().join(vocab), &text).unwrap();
        if let Ok(v) = Vocab::load(&dir.path().join(vocab)) {
            let _ = v.token(-1);
            let _ = v.token(i64::MAX);
        }
        Ok(())
    });
}

#[test]
fn random_headers_selections_and_token_files_never_panic() {
    npy_headers(2000);
    selections(2000);
    token_files(1000);
}

#[test]
#[ignore = "long run: 100,000 cases per parser"]
fn random_parser_inputs_long_run() {
    npy_headers(100_000);
    selections(100_000);
    token_files(100_000);
}
