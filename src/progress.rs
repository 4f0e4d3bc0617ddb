//! The CLI's progress bar (on stderr, when it is a terminal and not `--quiet`) and warnings.

use std::sync::OnceLock;

use attnframes_app::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// An indicatif bar made when work starts; warnings go to stderr as `warning: …` lines.
pub struct Bar {
    show: bool,
    bar: OnceLock<ProgressBar>,
}

impl Bar {
    pub fn new(show: bool) -> Bar {
        Bar {
            show,
            bar: OnceLock::new(),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(bar) = self.bar.get() {
            f(bar);
        }
    }
}

impl Progress for Bar {
    fn start(&self, total: u64, unit: &str) {
        if !self.show {
            return;
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {unit} {{msg}} {{elapsed}} (eta {{eta}})"
            ))
            .expect("valid template"),
        );
        let _ = self.bar.set(bar);
    }

    fn set(&self, done: u64) {
        self.with_bar(|b| b.set_position(done));
    }

    fn message(&self, text: &str) {
        self.with_bar(|b| b.set_message(text.to_string()));
    }

    fn finish(&self) {
        self.with_bar(ProgressBar::finish_and_clear);
    }

    fn warn(&self, text: &str) {
        eprintln!("warning: {text}");
    }
}
