//! `cluster`: KMeans on the rows of one head, k by silhouette; the SVM from input features to
//! clusters; the composite figure.

use std::collections::HashMap;

use clustering::{
    cluster_head, coefficient_frame, label_frame, parity_quadrants, score_frame, svm_coefficients,
    ClusterOptions, Clustering, Features, HeadRows, RowSet,
};
use figures::{ClusterFigure, Colormap, ImageFormat, Matrix, RowStrip, SilhouetteCurve};
use ingest::{RowSource, SlabBuffer, SlabId};
use polars::prelude::DataFrame;
use serde_json::json;

use crate::commands::plot::figure_options;
use crate::error::{Error, Result};
use crate::input::{no_words, open_source, token_dictionary};
use crate::metadata::{metadata, selection_options};
use crate::options::{ClusterOptions as Options, ClusterRows, InputOptions, OutputOptions};
use crate::output::{commit_bytes, open_extra_sink, write_extra, Frames, MainOutput};
use crate::progress::Progress;

/// The frames of one call, every row set's appended.
#[derive(Default)]
struct Outputs {
    labels: Vec<DataFrame>,
    scores: Vec<DataFrame>,
    coefs: Vec<DataFrame>,
    figure: Option<Vec<u8>>,
}

/// KMeans (k-means++, scikit-learn's convergence) on the valid attention rows of one head
/// (`layer`, `head`, the first selected batch row) for each k of `k_range`; the chosen k has
/// the highest silhouette. The frame: per row `rows`, `query_position`, `query_token`,
/// `cluster`. With `scores`, k/silhouette/inertia/chosen; with `features` and `coefs`, the
/// one-vs-rest linear SVM's coefficients; with `plot`, the composite figure.
///
/// # Errors
/// `Usage` for a bad `k_range`, `n_init` = 0 or a plot extension; `BadInput`, `Io` as
/// [`topk`](crate::topk).
pub fn cluster(
    input: &InputOptions,
    a: &Options,
    output: &OutputOptions,
    progress: &dyn Progress,
) -> Result<Frames> {
    no_words(input, "cluster")?;
    if a.n_init == 0 {
        return Err(Error::usage("--n-init must be at least 1"));
    }
    if a.coefs.is_some() && !(a.svm_c > 0.0 && a.svm_c.is_finite()) {
        return Err(Error::usage(format!(
            "--svm-c {} must be a positive number",
            a.svm_c
        )));
    }
    let (k_min, k_max) = parse_k_range(&a.k_range)?;
    let plot_format = a
        .plot
        .as_deref()
        .map(|p| {
            ImageFormat::from_path(p)
                .ok_or_else(|| Error::usage(format!("--plot {p}: expected .png or .svg")))
        })
        .transpose()?;
    let labels_out = MainOutput::open(output)?;
    let scores_sink = open_extra_sink(&a.scores, output)?;
    let coefs_sink = open_extra_sink(&a.coefs, output)?;
    let plot_out = a
        .plot
        .as_deref()
        .map(frame_sink::AtomicOutput::create)
        .transpose()?;
    let input_args = InputOptions {
        layers: Some(a.layer.to_string()),
        heads: Some(a.head.to_string()),
        batch: Some(input.batch.clone().unwrap_or_else(|| "0".into())),
        ..input.clone()
    };
    let source = open_source(&input_args, progress)?;
    let outputs = cluster_on(a, &source, &input_args, plot_format, k_min, k_max)?;
    let mut options = selection_options(&input_args);
    options["k_range"] = json!(a.k_range);
    options["rows"] = json!(format!("{:?}", a.rows).to_lowercase());
    options["seed"] = json!(a.seed);
    options["n_init"] = json!(a.n_init);
    options["features"] = json!(a.features.as_ref().map(|p| p.name().display().to_string()));
    options["svm_c"] = json!(a.svm_c);
    let meta = metadata("cluster", &input_args, &source, options);
    if let (Some(out), Some(bytes)) = (plot_out, &outputs.figure) {
        commit_bytes(out, bytes)?;
    }
    for (sink, frames) in [(scores_sink, &outputs.scores), (coefs_sink, &outputs.coefs)] {
        if let Some(sink) = sink {
            write_extra(sink, &meta, frames)?;
        }
    }
    labels_out.write_all(&meta, &outputs.labels)
}

fn cluster_on(
    a: &Options,
    src: &impl RowSource,
    input: &InputOptions,
    plot_format: Option<ImageFormat>,
    k_min: usize,
    k_max: usize,
) -> Result<Outputs> {
    let id: SlabId = src.slabs()[0];
    let dims = src.dims();
    let features = a
        .features
        .as_ref()
        .map(|p| Features::open(p, dims.batch, dims.queries))
        .transpose()?;
    let opts = ClusterOptions {
        k_min,
        k_max,
        seed: a.seed,
        n_init: a.n_init as usize,
        ..Default::default()
    };
    let sets = match a.rows {
        ClusterRows::All => vec![RowSet::All],
        ClusterRows::Even => vec![RowSet::Even],
        ClusterRows::Odd => vec![RowSet::Odd],
        ClusterRows::Both => vec![RowSet::Even, RowSet::Odd],
    };
    let tokens = token_dictionary(src)?;
    let mut out = Outputs::default();
    let mut clustered = Vec::new();
    for rows in sets {
        let head_rows = HeadRows::read(src, input.attn(), id, rows)?;
        let result = cluster_head(&head_rows, &opts)?;
        out.labels
            .push(label_frame(&head_rows, &result, tokens.as_ref())?);
        out.scores.push(score_frame(rows, &result)?);
        if let (Some(f), true) = (&features, a.coefs.is_some()) {
            let x = f.rows(id.batch, &head_rows.positions);
            let coefs = svm_coefficients(x.view(), &result.labels, a.svm_c)?;
            out.coefs.push(coefficient_frame(&head_rows, &coefs)?);
        }
        clustered.push((head_rows, result));
    }
    if let Some(format) = plot_format {
        let figure = composite(a, src, id, &clustered, features.as_ref())?;
        let opts = figure_options(&a.figure)?;
        out.figure = Some(figures::render_cluster_figure(&figure, &opts, format)?);
    }
    Ok(out)
}

/// The composite's data: silhouette curves, quadrants in cluster order, per-row strips.
fn composite(
    a: &Options,
    src: &impl RowSource,
    id: SlabId,
    clustered: &[(HeadRows, Clustering)],
    features: Option<&Features>,
) -> Result<ClusterFigure> {
    let cluster_of: HashMap<u32, u32> = clustered
        .iter()
        .flat_map(|(rows, result)| {
            rows.positions
                .iter()
                .copied()
                .zip(result.labels.iter().copied())
        })
        .collect();
    let values = src.valid_matrix(id, &mut SlabBuffer::default())?;
    let quadrants = parity_quadrants(
        &values,
        src.valid_queries(id.batch),
        src.valid_keys(id.batch),
        &|p| cluster_of.get(&p).copied(),
    );
    let strip = |q: &clustering::Quadrant| RowStrip {
        clusters: q.rows.iter().map(|p| cluster_of.get(p).copied()).collect(),
        features: features.map(|f| {
            f.rows(id.batch, &q.rows)
                .rows()
                .into_iter()
                .map(|r| r.to_vec())
                .collect()
        }),
    };
    let strips = [strip(&quadrants[0]), strip(&quadrants[2])];
    let curves = clustered
        .iter()
        .map(|(rows, result)| SilhouetteCurve {
            name: format!("{} rows", rows.rows.name()),
            points: result.scores.iter().map(|s| (s.k, s.silhouette)).collect(),
            chosen: result.chosen_k(),
        })
        .collect();
    Ok(ClusterFigure {
        title: format!("layer {}, head {}, batch {}", id.layer, id.head, id.batch),
        curves,
        quadrants: quadrants.map(|q| Matrix {
            rows: q.rows.len(),
            cols: q.cols.len(),
            values: q.values,
        }),
        strips,
        colormap: a.figure.colormap.unwrap_or(Colormap::Purples),
    })
}

/// `a-b` with 2 ≤ a ≤ b (or a single k).
fn parse_k_range(spec: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::usage(format!(
            "--k-range {spec}: expected a range such as 2-9, from 2 up"
        ))
    };
    let (lo, hi) = spec.split_once('-').unwrap_or((spec, spec));
    let lo: usize = lo.trim().parse().map_err(|_| bad())?;
    let hi: usize = hi.trim().parse().map_err(|_| bad())?;
    if lo < 2 || hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}
