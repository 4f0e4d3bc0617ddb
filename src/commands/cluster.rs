use attnframes_app as app;

use crate::cli::{ClusterArgs, RowsArg};
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &ClusterArgs, bar: &Bar) -> app::Result<()> {
    let options = app::ClusterOptions {
        layer: a.layer,
        head: a.head,
        k_range: a.k_range.clone(),
        rows: match a.rows {
            RowsArg::All => app::ClusterRows::All,
            RowsArg::Even => app::ClusterRows::Even,
            RowsArg::Odd => app::ClusterRows::Odd,
            RowsArg::Both => app::ClusterRows::Both,
        },
        scores: a.scores.clone(),
        seed: a.seed,
        n_init: a.n_init,
        features: a.features.clone().map(Into::into),
        coefs: a.coefs.clone(),
        svm_c: a.svm_c,
        plot: a.plot.clone(),
        figure: convert::figure(&a.figure),
    };
    app::cluster(
        &convert::input(&a.input),
        &options,
        &convert::output(&a.output),
        bar,
    )
    .map(drop)
}
