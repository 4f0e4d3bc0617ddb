use attnframes_app as app;

use crate::cli::{NormalizeArg, ReceivedArgs, ReduceArg};
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &ReceivedArgs, bar: &Bar) -> app::Result<()> {
    let options = app::ReceivedOptions {
        normalize: match a.normalize {
            NormalizeArg::None => app::Normalize::None,
            NormalizeArg::Minmax => app::Normalize::MinMax,
        },
        reduce: match a.reduce {
            ReduceArg::None => app::Reduce::None,
            ReduceArg::Heads => app::Reduce::Heads,
            ReduceArg::Layers => app::Reduce::Layers,
            ReduceArg::All => app::Reduce::All,
        },
        k: a.k,
        dataset: convert::dataset(&a.dataset),
    };
    app::received(
        &convert::input(&a.input),
        &options,
        &convert::output(&a.output),
        bar,
    )
    .map(drop)
}
