//! # figures — the pictures researchers look at
//!
//! Drawing only: callers hand over matrices and token weights, `figures` returns the bytes of
//! a PNG, SVG, HTML or LaTeX file. plotters draws (with DejaVu Sans embedded through the
//! `dejavu` crate, so labels look the same on every machine and no system font is needed);
//! the `png` crate encodes.
//!
//! - [`Panel`] + [`render`]: one heatmap or a grid of them ([`FigureOptions::columns`]), each
//!   panel titled, with token labels on both axes (thinned to one per 12 px), a colour bar,
//!   its own or a shared colour scale, optional cell values ([`FigureOptions::annotate`]) and
//!   optional channel blocks ([`Blocks`]: divider lines and block names, the EEG look).
//!   A matrix larger than the pixel grid is max-pooled to it ([`Matrix::max_pool`]), so a
//!   2,048 × 2,048 head renders in well under a second and a single hot cell stays visible.
//! - [`ClusterFigure`] + [`render_cluster_figure`]: the clustering composite — silhouette
//!   against k per row set, the four even/odd attention quadrants in cluster order, and strips
//!   of cluster labels and feature signs per row.
//! - [`Colormap`]: viridis (default), nipy_spectral, Purples, RdBu (differences).
//! - [`text_heatmap_html`], [`text_heatmap_latex`]: tokens coloured by weight.
//!
//! ```
//! use figures::{render, Colormap, FigureOptions, ImageFormat, Matrix, Panel};
//!
//! let panel = Panel {
//!     title: "layer 0, head 0".into(),
//!     matrix: Matrix { rows: 2, cols: 2, values: vec![0.9, 0.1, 0.4, 0.6] },
//!     row_labels: vec!["a".into(), "cat".into()],
//!     col_labels: vec!["a".into(), "cat".into()],
//!     colormap: Colormap::Viridis,
//!     symmetric: false,
//! };
//! let png = render(&[panel], &FigureOptions { columns: 1, ..Default::default() }, ImageFormat::Png)?;
//! assert!(png.starts_with(b"\x89PNG"));
//! # Ok::<(), figures::FigureError>(())
//! ```

mod colormap;
mod composite;
mod heatmap;
mod text;

pub use colormap::Colormap;
pub use composite::{render_cluster_figure, ClusterFigure, RowStrip, SilhouetteCurve};
pub use heatmap::{render, Blocks, FigureOptions, ImageFormat, Matrix, Panel};
pub use text::{latex_escape, text_heatmap_html, text_heatmap_latex};

/// What can go wrong while drawing.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("nothing to draw")]
    Empty,
    #[error("drawing failed: {0}")]
    Draw(String),
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
}

pub type Result<T, E = FigureError> = std::result::Result<T, E>;

/// Makes the embedded DejaVu Sans plotters' `sans-serif` (once per process).
fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .is_ok()
    });
    if *ok {
        Ok(())
    } else {
        Err(FigureError::Draw("the embedded font did not load".into()))
    }
}
