use attnframes_app as app;

use crate::cli::ViewArgs;
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &ViewArgs, bar: &Bar) -> app::Result<()> {
    let options = app::ViewOptions {
        output: a.output.clone(),
        k: a.k,
        colormap: convert::colormap(a.colormap),
        thumbnail: a.thumbnail,
        max_detail: a.max_detail,
        detail_kib: a.detail_kib,
        title: a.title.clone(),
    };
    app::view(&convert::input(&a.input), &options, bar)
}
