use attnframes_app as app;

use crate::cli::TopkArgs;
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &TopkArgs, bar: &Bar) -> app::Result<()> {
    let options = app::TopkOptions {
        k: a.k,
        all: a.all,
        nonzero: a.nonzero,
        dataset: convert::dataset(&a.dataset),
    };
    app::topk(
        &convert::input(&a.input),
        &options,
        &convert::output(&a.output),
        bar,
    )
    .map(drop)
}
