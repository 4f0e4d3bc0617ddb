//! The application layer's `FrameStream` (what `attnframes.stream` and `attnframes.capture`
//! run): batches added layer by layer give the rows of the same batches added whole.

use std::path::PathBuf;

use attnframes::app::{
    ErrorKind, FrameStream, HeadstatsOptions, InputOptions, Normalize, OutputOptions,
    ReceivedOptions, RolloutOptions, StreamCommand, TopkOptions,
};

use super::{tensor, write_npy};

const LAYERS: usize = 3;

/// Two batches (2 rows, 2 heads, 5 and 7 positions) of row-stochastic attention, saved whole
/// (L, B, H, S, S) and per layer (B, H, S, S).
fn batches(dir: &std::path::Path) -> Vec<(PathBuf, Vec<PathBuf>)> {
    [5usize, 7]
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let per_layer = 2 * 2 * s * s;
            let mut data = tensor(LAYERS * per_layer, 11 + i as u64);
            for row in data.chunks_mut(s) {
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
            let whole = dir.join(format!("b{i}.npy"));
            write_npy(&whole, &[LAYERS, 2, 2, s, s], &data);
            let layers = (0..LAYERS)
                .map(|l| {
                    let path = dir.join(format!("b{i}_l{l}.npy"));
                    write_npy(
                        &path,
                        &[2, 2, s, s],
                        &data[l * per_layer..(l + 1) * per_layer],
                    );
                    path
                })
                .collect();
            (whole, layers)
        })
        .collect()
}

fn file(path: &std::path::Path) -> InputOptions {
    InputOptions {
        attn: vec![path.to_path_buf()],
        ..Default::default()
    }
}

fn commands() -> Vec<StreamCommand> {
    vec![
        StreamCommand::Topk(TopkOptions {
            k: 3,
            ..Default::default()
        }),
        StreamCommand::Received(ReceivedOptions {
            normalize: Normalize::MinMax,
            ..Default::default()
        }),
        StreamCommand::Headstats(HeadstatsOptions::default()),
        StreamCommand::Rollout(RolloutOptions::default(), Default::default()),
    ]
}

#[test]
fn batches_by_layer_give_the_rows_of_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let saved = batches(dir.path());
    for command in commands() {
        let out = OutputOptions::default();
        let mut whole =
            FrameStream::create(command.clone(), InputOptions::default(), &out).unwrap();
        let mut by_layer =
            FrameStream::create(command.clone(), InputOptions::default(), &out).unwrap();
        for (batch, layers) in &saved {
            whole.add(file(batch), None).unwrap();
            for (l, layer) in layers.iter().enumerate() {
                by_layer.add_layer(file(layer), l as u16, None).unwrap();
            }
        }
        let want = whole.finish().unwrap().into_frame().unwrap();
        let got = by_layer.finish().unwrap().into_frame().unwrap();
        assert!(want.height() > 0);
        assert!(got.equals_missing(&want), "{command:?}:\n{got}\n{want}");
    }
}

#[test]
fn a_layer_out_of_order_or_missing_names_the_layer_and_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let saved = batches(dir.path());
    let layers = &saved[0].1;
    let open = || {
        let mut s = FrameStream::create(
            commands().remove(1),
            InputOptions::default(),
            &OutputOptions::default(),
        )
        .unwrap();
        s.set_layers_per_batch(LAYERS as u16).unwrap();
        s
    };
    let mut s = open();
    let e = s.add_layer(file(&layers[1]), 1, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadInput);
    assert_eq!(
        e.to_string(),
        "layer 1 of batch 0: the layers of a batch arrive in order: expected layer 0"
    );
    let mut s = open();
    s.add_layer(file(&layers[0]), 0, None).unwrap();
    s.add_layer(file(&layers[1]), 1, None).unwrap();
    let e = s.add_layer(file(&layers[0]), 0, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "layer 2 of batch 0: missing: the batch ended after 2 of 3 layers"
    );
    let mut s = open();
    let e = s.add_layer(file(&saved[0].0), 0, None).unwrap_err();
    assert!(e.to_string().starts_with("layer 0 of batch 0: "), "{e}");
    let e = s
        .add_layer(file(&layers[0]), 0, Some(vec!["only one".into()]))
        .unwrap_err();
    assert_eq!(e.to_string(), "example_ids: 1 ids for a batch of 2 rows");
}

/// Writes `values` as an `.npy` of `descr` ('<i8', '<f8') and `shape`.
fn write_npy_bytes(path: &std::path::Path, descr: &str, shape: &[usize], values: Vec<u8>) {
    let mut bytes = ingest::npy::header_bytes(descr, shape);
    bytes.extend(values);
    std::fs::write(path, bytes).unwrap();
}

/// A layer reduced where it was computed (its ranked keys and received sums, made here by a
/// plain sort and a plain sum) gives the rows of the layer itself.
#[test]
fn layers_reduced_on_their_device_give_the_rows_of_the_layers() {
    use attnframes::app::{ReducedInput, TensorInput};
    let dir = tempfile::tempdir().unwrap();
    let saved = batches(dir.path());
    let k = 3;
    for command in &commands()[..2] {
        let out = OutputOptions::default();
        let mut dense =
            FrameStream::create(command.clone(), InputOptions::default(), &out).unwrap();
        let mut reduced =
            FrameStream::create(command.clone(), InputOptions::default(), &out).unwrap();
        for (i, (_, layers)) in saved.iter().enumerate() {
            for (l, layer) in layers.iter().enumerate() {
                dense.add_layer(file(layer), l as u16, None).unwrap();
                let t = ingest::TensorFile::open(layer, None).unwrap();
                let s = t.shape[3];
                let mut values = vec![0f32; t.len() as usize];
                t.read_f32(0, &mut values, &mut Vec::new()).unwrap();
                let (mut positions, mut scores, mut sums) = (vec![], vec![], vec![]);
                for slab in values.chunks(s * s) {
                    let mut acc = vec![0f64; s];
                    for row in slab.chunks(s) {
                        for (p, x) in super::plain_topk(row, k) {
                            positions.extend((p as i64).to_le_bytes());
                            scores.extend(x.to_le_bytes());
                        }
                        acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x as f64);
                    }
                    sums.extend(acc.iter().flat_map(|a| a.to_le_bytes()));
                }
                let name = |what: &str| dir.path().join(format!("r{i}_{l}_{what}.npy"));
                write_npy_bytes(&name("positions"), "<i8", &[2, 2, s, k], positions);
                write_npy_bytes(&name("scores"), "<f4", &[2, 2, s, k], scores);
                write_npy_bytes(&name("sums"), "<f8", &[2, 2, s], sums);
                let input = InputOptions {
                    attn: vec!["<reduced layer>".into()],
                    reduced: Some(ReducedInput {
                        queries: s,
                        keys: s,
                        positions: Some(TensorInput::File(name("positions"))),
                        scores: Some(TensorInput::File(name("scores"))),
                        sums: Some(TensorInput::File(name("sums"))),
                        non_finite: None,
                    }),
                    ..Default::default()
                };
                reduced.add_layer(input, l as u16, None).unwrap();
            }
        }
        let want = dense.finish().unwrap().into_frame().unwrap();
        let got = reduced.finish().unwrap().into_frame().unwrap();
        assert!(got.equals_missing(&want), "{command:?}:\n{got}\n{want}");
    }
}
