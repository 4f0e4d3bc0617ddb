//! One file per command: its arguments turned into the application layer's options, then
//! the application layer's function.

mod cluster;
mod compare;
mod dense;
mod headstats;
mod inspect;
mod melt;
mod plot;
mod received;
mod rollout;
mod similarity;
mod topk;
mod view;

use attnframes_app::Result;

use crate::cli::Command;
use crate::progress::Bar;

/// Runs a parsed command with its progress shown on `bar`.
pub fn run(command: Command, bar: &Bar) -> Result<()> {
    match command {
        Command::Inspect(a) => inspect::run(&a),
        Command::Topk(a) => topk::run(&a, bar),
        Command::Received(a) => received::run(&a, bar),
        Command::Dense(a) => dense::run(&a, bar),
        Command::Similarity(a) => similarity::run(&a, bar),
        Command::Compare(a) => compare::run(&a),
        Command::Melt(a) => melt::run(&a, bar),
        Command::Cluster(a) => cluster::run(&a, bar),
        Command::Plot(a) => plot::run(&a, bar),
        Command::Headstats(a) => headstats::run(&a, bar),
        Command::Rollout(a) => rollout::run(&a, bar),
        Command::View(a) => view::run(&a, bar),
    }
}
