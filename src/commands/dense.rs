use attnframes_app as app;

use crate::cli::DenseArgs;
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &DenseArgs, bar: &Bar) -> app::Result<()> {
    app::dense(&convert::input(&a.input), &a.output, bar)
}
