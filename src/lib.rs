//! # attnframes — transformer attention as long-format frames
//!
//! The `attnframes` command line over [`attnframes_app`], the application layer (re-exported
//! here as [`app`]): every command is a typed function there, usable from Rust directly.
//! This crate holds the clap types ([`cli`]), their conversion into the application layer's
//! options, one small file per command, the progress bar, and `main`; no arithmetic on
//! attention lives here.
//!
//! Open an input, run `topk`, get a polars `DataFrame`:
//!
//! ```
//! use attnframes::app::{topk, InputOptions, OutputOptions, Quiet, TopkOptions};
//!
//! let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
//! let input = InputOptions {
//!     tokens: Some(format!("{examples}/tokens.json").into()),
//!     attention_mask: Some(format!("{examples}/attention_mask.npy").into()),
//!     ..InputOptions::file(format!("{examples}/attentions.npy"))
//! };
//! let options = TopkOptions { k: 5, ..Default::default() };
//! let frame = topk(&input, &options, &OutputOptions::default(), &Quiet)?.into_frame()?;
//! // 3 sentences × 6 layers × 12 heads, 5 keys for every valid query.
//! assert_eq!(frame.get_column_names()[..3], ["batch", "layer", "head"]);
//! assert_eq!(frame.height() % 5, 0);
//! # Ok::<(), attnframes::app::Error>(())
//! ```
//!
//! The binary's own entry is [`main_with_args`].

pub mod cli;
mod commands;
mod convert;
mod progress;

pub use attnframes_app as app;

use std::ffi::OsString;
use std::io::IsTerminal;

use app::ErrorKind;
use clap::Parser;

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

/// Runs the CLI on `args` (the first is the program name) and returns the process exit code:
/// 0, 1 on bad input, 2 on usage. Messages go to stderr as one `error: …` line.
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
    let bar = progress::Bar::new(!cli.quiet && std::io::stderr().is_terminal());
    let threads = cli.threads.map(|n| n as usize);
    let result = app::with_threads(threads, || commands::run(cli.command, &bar)).and_then(|r| r);
    match result {
        Ok(()) => 0,
        Err(e) => match e.kind() {
            // The reader of stdout stopped reading (`… | head`): nothing went wrong here.
            ErrorKind::ClosedPipe => 0,
            // Only a caller's Progress interrupts; the CLI's signals exit in their own thread.
            ErrorKind::Interrupted => 130,
            kind => {
                eprintln!("error: {}", e.to_string().replace('\n', " "));
                if kind == ErrorKind::Usage {
                    2
                } else {
                    1
                }
            }
        },
    }
}
