//! The command line's arguments as the application layer's option structs.

use attnframes_app as app;

use crate::cli::*;

pub fn input(a: &InputArgs) -> app::InputOptions {
    app::InputOptions {
        attn: a.attn.clone(),
        attn_array: None,
        attn_key: a.attn_key.clone(),
        layout: a.layout.clone(),
        attention_mask: a.attention_mask.clone().map(Into::into),
        padding_mask: a.padding_mask.clone().map(Into::into),
        tokens: a.tokens.clone(),
        token_lists: None,
        input_ids: a.input_ids.clone().map(Into::into),
        vocab: a.vocab.clone(),
        head_importance: a.head_importance.clone().map(Into::into),
        layers: a.layers.clone(),
        heads: a.heads.clone(),
        batch: a.batch.clone(),
        allow_nan: a.allow_nan,
        queries: match (a.query_offset, a.cross_attention) {
            (Some(first), _) => app::QueryPositions::Offset(first),
            (None, true) => app::QueryPositions::Cross,
            (None, false) => app::QueryPositions::Auto,
        },
        generation_steps: a.generation_steps,
        attn_steps: Vec::new(),
        reduced: None,
        global_attn: a.global_attn.clone().map(Into::into),
        sliding_window: a.sliding_window,
        global_mask: a.global_mask.clone().map(Into::into),
        words: a.words.then_some(match a.word_from {
            WordFromArg::Mean => app::WordFrom::Mean,
            WordFromArg::First => app::WordFrom::First,
            WordFromArg::Max => app::WordFrom::Max,
        }),
    }
}

pub fn output(o: &OutputArgs) -> app::OutputOptions {
    app::OutputOptions {
        destination: app::Destination::Path(o.output.clone()),
        format: o.format.map(|f| match f {
            FormatArg::Parquet => app::OutputFormat::Parquet,
            FormatArg::Csv => app::OutputFormat::Csv,
            FormatArg::Ipc => app::OutputFormat::Ipc,
        }),
        compression: match o.compression {
            CompressionArg::Zstd => app::Compression::Zstd,
            CompressionArg::Snappy => app::Compression::Snappy,
            CompressionArg::None => app::Compression::None,
        },
        row_group_size: o.row_group_size,
    }
}

pub fn dataset(d: &DatasetArgs) -> app::DatasetOptions {
    app::DatasetOptions {
        tokens_dir: d.tokens_dir.clone(),
        example_id_from: match d.example_id_from {
            ExampleIdArg::Stem => app::ExampleIdFrom::Stem,
            ExampleIdArg::Index => app::ExampleIdFrom::Index,
        },
        partition_by: d.partition_by.clone(),
        max_rows_per_file: d.max_rows_per_file,
        shard: d.shard.clone(),
    }
}

pub fn colormap(c: ColormapArg) -> app::Colormap {
    match c {
        ColormapArg::Viridis => app::Colormap::Viridis,
        ColormapArg::NipySpectral => app::Colormap::NipySpectral,
        ColormapArg::Purples => app::Colormap::Purples,
    }
}

pub fn figure(f: &FigureArgs) -> app::FigureStyle {
    app::FigureStyle {
        colormap: f.colormap.map(colormap),
        vmin: f.vmin,
        vmax: f.vmax,
        annotate: f.annotate,
        dpi: f.dpi,
        size: f.size.clone(),
    }
}

/// A comma-separated list of channel names, blanks dropped.
pub fn channel_list(spec: &str) -> Vec<String> {
    spec.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whitespace-separated tokens.
pub fn words(spec: &str) -> Vec<String> {
    spec.split_whitespace().map(str::to_string).collect()
}
