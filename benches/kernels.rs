//! Criterion benches of the two hot paths: the per-row selection kernel and building topk
//! frames (selection plus filling the typed columns) from a tensor file.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ingest::{AttentionSource, SourceOptions};
use topk_frames::rank::{select_top, Selection};
use topk_frames::{TopkFrames, TopkOptions};

/// Softmax-like rows: a few large entries over a floor, deterministic.
fn rows(n_rows: usize, n: usize) -> Vec<f32> {
    let mut x = 0x2545F4914F6CDD1Du64;
    (0..n_rows * n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32).powi(8)
        })
        .collect()
}

fn selection(c: &mut Criterion) {
    let mut g = c.benchmark_group("select_top");
    for &(n, k) in &[(512usize, 10usize), (2048, 10), (512, 512)] {
        let data = rows(64, n);
        g.throughput(Throughput::Elements((64 * n) as u64));
        g.bench_with_input(BenchmarkId::new(format!("n{n}"), k), &k, |b, &k| {
            let mut sel = Selection::default();
            b.iter(|| {
                for row in data.chunks_exact(n) {
                    select_top(black_box(row), None, k, &mut sel);
                }
                sel.best.len()
            })
        });
    }
    g.finish();
}

fn write_npy(path: &std::path::Path, shape: &[usize], data: &[f32]) {
    let mut bytes = ingest::npy::header_bytes("<f4", shape);
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

fn frames(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("attn.npy");
    let (l, h, s) = (4, 12, 256);
    write_npy(&path, &[l, 1, h, s, s], &rows(l * h * s, s));
    let src = AttentionSource::open(&SourceOptions {
        attn: path,
        ..Default::default()
    })
    .unwrap();
    let mut g = c.benchmark_group("topk_frames");
    g.sample_size(10);
    for k in [Some(10), None] {
        let rows_out = l * h * s * k.unwrap_or(s);
        g.throughput(Throughput::Elements(rows_out as u64));
        g.bench_function(
            format!("k={}", k.map_or("all".into(), |k| k.to_string())),
            |b| {
                b.iter(|| {
                    let frames = TopkFrames::new(
                        &src,
                        None,
                        TopkOptions {
                            k,
                            nonzero: false,
                            chunk_rows: 1 << 20,
                        },
                    )
                    .unwrap();
                    frames.map(|f| f.unwrap().height()).sum::<usize>()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, selection, frames);
criterion_main!(benches);
