use attnframes_app as app;

use crate::cli::MeltArgs;
use crate::convert;
use crate::progress::Bar;

pub fn run(a: &MeltArgs, bar: &Bar) -> app::Result<()> {
    let options = app::MeltOptions {
        attn: a.attn.clone(),
        attn_key: a.attn_key.clone(),
        // `--axes ''` names no axis: a 0-d tensor (one value) melts to one row.
        axes: match a.axes.as_deref().map(str::trim) {
            None | Some("") => Vec::new(),
            Some(names) => names.split(',').map(|n| n.trim().to_string()).collect(),
        },
        tokens: a.tokens.clone(),
        generation_steps: a.generation_steps,
    };
    app::melt(&options, &convert::output(&a.output), bar).map(drop)
}
