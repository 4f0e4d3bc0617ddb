use attnframes_app as app;

use crate::cli::CompareArgs;
use crate::convert;

pub fn run(a: &CompareArgs) -> app::Result<()> {
    let options = app::CompareOptions {
        attn_b: a.attn_b.clone().into(),
        channels_a: convert::channel_list(&a.channels_a),
        channels_b: a.channels_b.as_deref().map(convert::channel_list),
        block: a.block,
        blocks: a.blocks.clone(),
        plot: a.plot.clone(),
        layer: a.layer,
        head: a.head,
        figure: convert::figure(&a.figure),
    };
    app::compare(
        &convert::input(&a.input),
        &options,
        &convert::output(&a.output),
    )
    .map(drop)
}
