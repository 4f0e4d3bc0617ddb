use attnframes_app as app;

use crate::cli::SimilarityArgs;
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &SimilarityArgs, bar: &Bar) -> app::Result<()> {
    let options = app::SimilarityOptions {
        attributions: a.attributions.clone().into(),
        percentile: a.percentile,
        overlap: a.overlap.clone(),
        example_ids: a.example_ids.clone(),
    };
    app::similarity(
        &convert::input(&a.input),
        &options,
        &convert::output(&a.output),
        bar,
    )
    .map(drop)
}
