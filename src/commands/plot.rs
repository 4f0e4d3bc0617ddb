use attnframes_app as app;

use crate::cli::PlotArgs;
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &PlotArgs, bar: &Bar) -> app::Result<()> {
    let options = app::PlotOptions {
        output: a.output.clone(),
        layer: a.layer,
        head: a.head,
        grid: a.grid,
        shared_scale: a.shared_scale,
        figure: convert::figure(&a.figure),
        channels: a.channels.as_deref().map(convert::channel_list),
        block: a.block,
        text: a.text,
    };
    app::plot(&convert::input(&a.input), &options, bar)
}
