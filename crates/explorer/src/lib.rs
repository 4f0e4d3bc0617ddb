//! # explorer — attention as one self-contained HTML page
//!
//! `attnframes view` writes a page that opens from disk with no server and no network: a
//! layer × head overview of max-pooled thumbnails, one head's heatmap with pan and zoom, the
//! top-k keys of a query on hover, the tokens as running text coloured by received
//! attention, and a sortable `headstats` table linked to the grid.
//!
//! This crate does two things:
//!
//! - [`head_tiles`]: from any [`ingest::RowSource`], per (batch, layer, head) a max-pooled
//!   thumbnail and a pyramid of max-pooled detail levels, quantised to 24 levels on a square-root
//!   scale (`value ≈ (code / 23)² · scale`) and deflated. One head at a time per thread, so
//!   memory stays bounded at any sequence length. [`choose_detail`] picks the finest level
//!   that fits a byte budget.
//! - [`render`]: a [`Page`] of plain vectors (tiles, the top-k rows and received sums the
//!   analyses computed, headstats columns, tokens) as one HTML string. Binary arrays travel
//!   as base64 of deflated, byte-plane-shuffled little-endian arrays and are decoded in the
//!   page with typed arrays and `DecompressionStream`; the JavaScript and CSS are inline.
//!
//! The top-k, received and headstats numbers are not computed here: the caller hands over
//! what `topk-frames` and `headstats` produced, so the page agrees with the Parquet frames.

mod encode;
mod page;
mod tiles;

pub use encode::{base64, deflate, encode_topk, shuffle};
pub use page::{render, BatchRow, HeadData, Page, StatColumn};
pub use tiles::{choose_detail, head_tiles, HeadTiles, Level, TileOptions, CODE_MAX};

/// What can go wrong while building a page.
#[derive(Debug, thiserror::Error)]
pub enum ExplorerError {
    #[error(transparent)]
    Ingest(#[from] ingest::IngestError),
    #[error("compression failed: {0}")]
    Compress(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = ExplorerError> = std::result::Result<T, E>;
