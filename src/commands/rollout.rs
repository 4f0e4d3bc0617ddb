//! `rollout`: attention rollout ranked like `topk`, and per-position relevance.

use ingest::RowSource;
use rollout::{Fuse, RolloutSource};
use serde_json::json;
use topk_frames::{TopkFrames, TopkOptions};

use super::{
    metadata, open_extra_sink, open_input, open_sink, progress_bar, selection_options,
    token_dictionary, with_pieces, Input,
};
use crate::cli::{FuseArg, InputArgs, RolloutArgs};
use crate::CliError;

pub fn rollout(a: &RolloutArgs, show_progress: bool) -> Result<(), CliError> {
    let sink = open_sink(&a.output)?;
    let relevance_sink = open_extra_sink(&a.relevance, &a.output)?;
    // The chain runs through every layer; --layers picks the cumulative layers written.
    let input_args = InputArgs {
        layers: None,
        ..a.input.clone()
    };
    let input = open_input(&input_args)?;
    let write = match &a.input.layers {
        Some(spec) => {
            let layers = match &input {
                Input::Dense(s) => s.dims().layers,
                Input::Longformer(s) => s.dims().layers,
            };
            ingest::parse_selection(Some(spec), layers, "layer")
                .map_err(|reason| ingest::IngestError::invalid(a.input.attn(), reason))?
                .into_iter()
                .map(|l| l as u16)
                .collect()
        }
        None => Vec::new(),
    };
    let meta = {
        let mut options = selection_options(&a.input);
        options["fuse"] = json!(format!("{:?}", a.fuse).to_lowercase());
        options["k"] = json!((!a.all).then_some(a.k));
        options["all"] = json!(a.all);
        metadata("rollout", &a.input, &input, options)
    };
    let ctx = Context {
        a,
        write,
        meta,
        show_progress,
    };
    with_row_source!(&input, &a.input, |src, spans| ctx.run(
        src,
        spans,
        sink,
        relevance_sink
    ))
}

struct Context<'a> {
    a: &'a RolloutArgs,
    write: Vec<u16>,
    meta: String,
    show_progress: bool,
}

impl Context<'_> {
    fn run(
        &self,
        src: &impl RowSource,
        spans: Option<super::PieceSpans>,
        mut sink: frame_sink::FrameSink,
        relevance_sink: Option<frame_sink::FrameSink>,
    ) -> Result<(), CliError> {
        let fuse = match self.a.fuse {
            FuseArg::Mean => Fuse::Mean,
            FuseArg::Max => Fuse::Max,
            FuseArg::Min => Fuse::Min,
        };
        let all_layers: Vec<u16> = (0..src.dims().layers as u16).collect();
        let write = if self.write.is_empty() {
            &all_layers
        } else {
            &self.write
        };
        let rollout = RolloutSource::new(src, fuse, write)?;
        let tokens = token_dictionary(src)?;
        let mut frames = TopkFrames::new(
            &rollout,
            tokens.as_ref(),
            TopkOptions {
                k: (!self.a.all).then_some(self.a.k as usize),
                nonzero: false,
                chunk_rows: self.a.output.row_group_size as usize,
            },
        )?;
        sink.set_metadata(self.meta.clone());
        let bar = progress_bar(self.show_progress, frames.progress().1 as u64, "layers");
        // Rollout fuses the heads: the frame has no head column.
        let empty = with_pieces(frames.empty()?.drop("head")?, &spans)?;
        while let Some(chunk) = frames.next() {
            sink.write(&with_pieces(chunk?.drop("head")?, &spans)?)?;
            bar.set_position(frames.progress().0 as u64);
        }
        bar.finish_and_clear();
        if let Some(mut s) = relevance_sink {
            let rel = rollout.relevance_frame()?;
            s.set_metadata(self.meta.clone());
            s.write(&rel)?;
            s.finish(&rel)?;
        }
        sink.finish(&empty)?;
        Ok(())
    }
}
