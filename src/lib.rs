//! # attnframes — transformer attention as long-format frames
//!
//! The `attnframes` binary wires the workspace's crates together: [`ingest`] opens the
//! tensor and gives a row source, an analysis from [`topk_frames`] turns it into polars frames,
//! and [`frame_sink`] writes them (Parquet, CSV, Arrow IPC; files atomically, or stdout).
//! This facade holds the CLI ([`cli`]) and the wiring only; no arithmetic on attention lives
//! here.
//!
//! ```no_run
//! let code = attnframes::main_with_args(["attnframes", "topk", "--attn", "a.npy", "-k", "5", "-o", "t.parquet"]);
//! assert_eq!(code, 0);
//! ```

pub mod cli;
mod commands;

pub use frame_sink;
pub use ingest;
pub use topk_frames;

use std::ffi::OsString;

use clap::Parser;

/// An error meant for the user: one line, and whether it is a usage error (exit 2).
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub usage: bool,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: true,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        let e: anyhow::Error = e.into();
        let usage = matches!(
            e.downcast_ref::<topk_frames::FrameError>(),
            Some(topk_frames::FrameError::Usage(_))
        ) || matches!(
            e.downcast_ref::<frame_sink::SinkError>(),
            Some(frame_sink::SinkError::Usage(_))
        );
        CliError {
            message: e.to_string(),
            usage,
        }
    }
}

/// Runs the CLI on `args` and returns the process exit code (0, 1 on bad input, 2 on usage).
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match commands::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            let line = e.message.replace('\n', " ");
            eprintln!("error: {line}");
            if e.usage {
                2
            } else {
                1
            }
        }
    }
}
