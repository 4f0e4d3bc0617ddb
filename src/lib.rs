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
    /// Stdout's reader went away.
    pub closed_pipe: bool,
    /// A file could not be opened, read or written (the Python binding raises `OSError`).
    pub io: bool,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: true,
            closed_pipe: false,
            io: false,
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
        let closed_pipe = matches!(
            e.downcast_ref::<frame_sink::SinkError>(),
            Some(frame_sink::SinkError::ClosedPipe)
        );
        let io = matches!(
            e.downcast_ref::<ingest::IngestError>(),
            Some(ingest::IngestError::Io { .. })
        ) || matches!(
            e.downcast_ref::<frame_sink::SinkError>(),
            Some(frame_sink::SinkError::Output { .. })
        );
        CliError {
            message: e.to_string(),
            usage,
            closed_pipe,
            io,
        }
    }
}

/// Keeps freed buffers in the heap. Row blocks, frame columns and Parquet pages of a few MB
/// are allocated and freed once per slab or file; with glibc's defaults many are fresh memory
/// maps whose pages are faulted in and zeroed each time — on a 200-file dataset run that was
/// 0.4 s of system time and 10% of the wall time.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two thresholds of the allocator, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Ctrl-C and `kill` stop a command cleanly: SIGINT and SIGTERM are blocked in every thread
/// (threads started later inherit the mask) and a watcher thread waits for them, removes the
/// temporaries being written, and exits with 128 + the signal (130 for Ctrl-C), as shells
/// expect. A signal handler could not do this safely; a thread in `sigwait` can.
pub fn stop_cleanly_on_interrupt() {
    // SAFETY: plain libc calls on a local signal set; the mask is set before any other thread
    // of this process exists, so all of them inherit it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return;
        }
        std::thread::spawn(move || {
            let mut signal = 0;
            if libc::sigwait(&set, &mut signal) == 0 {
                frame_sink::remove_live_temporaries();
                std::process::exit(128 + signal);
            }
        });
    }
}

/// Runs the CLI on `args` (the first is the program name) as a library call: the same
/// options and messages, no exit. With `capture`, the main output's frames are returned
/// instead of written (its `-o` value is not used).
pub fn run_captured<I, T>(
    args: I,
    capture: bool,
) -> Result<Option<Vec<polars::prelude::DataFrame>>, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = cli::Cli::try_parse_from(args).map_err(|e| {
        let text = e.render().to_string();
        let line = text.lines().next().unwrap_or_default();
        CliError::usage(line.strip_prefix("error: ").unwrap_or(line).to_string())
    })?;
    if !capture {
        return commands::run(cli, None).map(|()| None);
    }
    let frames = frame_sink::FrameCapture::default();
    commands::run(cli, Some(frames.clone()))?;
    let frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Some(frames))
}

/// Runs the CLI on `args` and returns the process exit code (0, 1 on bad input, 2 on usage).
pub fn main_with_args<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        // Help and version go to stdout whole; a usage error is one line, as every error is.
        Err(e) if e.use_stderr() => {
            let text = e.render().to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad usage"));
            return 2;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    match commands::run(cli, None) {
        Ok(()) => 0,
        // The reader of stdout stopped reading (`… | head`): nothing went wrong here.
        Err(e) if e.closed_pipe => 0,
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
