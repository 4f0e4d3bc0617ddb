//! The `attnframes` key-value metadata every output carries: command, inputs, shapes,
//! options, version.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::input::Source;
use crate::options::{InputOptions, QueryPositions};
use ingest::TensorInput;

/// The metadata of a one-file run.
pub(crate) fn metadata(command: &str, a: &InputOptions, source: &Source, options: Value) -> String {
    metadata_json(command, input_paths(a), source.shapes(), options)
}

/// The input files of a one-file run, as given.
pub(crate) fn input_paths(a: &InputOptions) -> Value {
    json!({
        "attn": a.attn().display().to_string(),
        "attn_key": a.attn_key,
        "global_attn": input_str(&a.global_attn),
        "global_mask": input_str(&a.global_mask),
        "attention_mask": input_str(&a.attention_mask),
        "padding_mask": input_str(&a.padding_mask),
        "tokens": match &a.token_lists {
            Some(_) => json!("<tokens list>"),
            None => path_str(&a.tokens),
        },
        "input_ids": input_str(&a.input_ids),
        "vocab": path_str(&a.vocab),
        "head_importance": input_str(&a.head_importance),
    })
}

/// The metadata JSON from its parts.
pub(crate) fn metadata_json(command: &str, inputs: Value, shapes: Value, options: Value) -> String {
    json!({
        "command": command,
        "inputs": inputs,
        "shapes": shapes,
        "options": options,
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string()
}

/// A tensor input as given: its path, or the array's name.
pub(crate) fn input_str(input: &Option<TensorInput>) -> Value {
    input.as_ref().map_or(Value::Null, |i| {
        Value::String(i.name().display().to_string())
    })
}

pub(crate) fn path_str(p: &Option<PathBuf>) -> Value {
    p.as_ref()
        .map_or(Value::Null, |p| Value::String(p.display().to_string()))
}

/// The selection options every frame's metadata lists.
pub(crate) fn selection_options(a: &InputOptions) -> Value {
    let mut o = json!({"layers": a.layers, "heads": a.heads, "batch": a.batch, "layout": a.layout, "allow_nan": a.allow_nan});
    // Only when given: the metadata of a run without them stays as it was.
    match a.queries {
        QueryPositions::Auto => {}
        QueryPositions::Offset(first) => o["query_offset"] = json!(first),
        QueryPositions::Cross => o["cross_attention"] = json!(true),
    }
    o
}
