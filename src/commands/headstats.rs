use attnframes_app as app;

use crate::cli::HeadstatsArgs;
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &HeadstatsArgs, bar: &Bar) -> app::Result<()> {
    let options = app::HeadstatsOptions {
        cls_tokens: convert::words(&a.cls_tokens),
        sep_tokens: convert::words(&a.sep_tokens),
        punct_tokens: convert::words(&a.punct_tokens),
        sink_threshold: a.sink_threshold,
        pairs: a.pairs.clone(),
        dataset: convert::dataset(&a.dataset),
    };
    app::headstats(
        &convert::input(&a.input),
        &options,
        &convert::output(&a.output),
        bar,
    )
    .map(drop)
}
