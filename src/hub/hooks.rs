//! The hooks of a stream that arrives encoded (a publisher's, a passthrough pull): their
//! decoder is a reader of the stream, a pipeline of its own (`appsrc → decodebin → tee`, then
//! the hooks' branches) fed behind a 2 s leaky, counted queue. Decoding never runs in the
//! source's pipeline, so it never holds up the recording or the viewers; a decoder that cannot
//! keep up loses frames until the next keyframe, and one that fails is a hook error event.

use crate::assemble::{HookDecoder, Plan};
use crate::events::Event;
use crate::hooks::{HookHost, RunningHooks};
use gst::prelude::*;

/// What the decoder may hold back before it drops.
const MAX_BEHIND: gst::ClockTime = gst::ClockTime::from_seconds(2);

/// Starts the plan's hooks on `pipeline` (built, not yet playing): on its own branches, or,
/// for a stream kept as it arrives, on a decoder that reads it.
pub fn start(
    name: &str,
    pipeline: &gst::Pipeline,
    plan: &Plan,
    host: &HookHost,
) -> Result<RunningHooks, String> {
    match &plan.hook_decoder {
        None => RunningHooks::start(name, pipeline, &plan.hooks, host),
        Some(decoder) => start_decoded(name, pipeline, plan, decoder, host),
    }
}

fn start_decoded(
    name: &str,
    source: &gst::Pipeline,
    plan: &Plan,
    decoder: &HookDecoder,
    host: &HookHost,
) -> Result<RunningHooks, String> {
    let reader = super::reader_pipeline(&decoder.launch, &format!("{name}-hooks"))?;
    let mut running = RunningHooks::start(name, &reader, &plan.hooks, host)?;
    report_errors(&reader, name, host)?;
    // The stream's end is the hooks': they see it to its last frame.
    let (_, link) = super::feed(source, &decoder.video_sink, &reader, "video", MAX_BEHIND)?;
    super::start_decoding(&reader, "hooks_keyframes")?;
    running.fed_by(reader, Box::new(link));
    Ok(running)
}

/// Errors in the decoder or a hook's branch are the hooks' problem: said, and sent as hook
/// events.
fn report_errors(reader: &gst::Pipeline, name: &str, host: &HookHost) -> Result<(), String> {
    let (name, events) = (name.to_string(), host.events.clone());
    super::on_errors(reader, move |msg, error| {
        tracing::warn!("{name}: hook branch: {error}");
        let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
        events.publish(Event::hook(
            &name,
            &element,
            "error",
            serde_json::json!({ "error": error }),
        ));
    })
}
