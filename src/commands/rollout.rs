use attnframes_app as app;

use crate::cli::{FuseArg, RolloutArgs};
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &RolloutArgs, bar: &Bar) -> app::Result<()> {
    let options = app::RolloutOptions {
        fuse: match a.fuse {
            FuseArg::Mean => app::Fuse::Mean,
            FuseArg::Max => app::Fuse::Max,
            FuseArg::Min => app::Fuse::Min,
        },
        k: a.k,
        all: a.all,
        relevance: a.relevance.clone(),
    };
    app::rollout(
        &convert::input(&a.input),
        &options,
        &convert::output(&a.output),
        bar,
    )
    .map(drop)
}
