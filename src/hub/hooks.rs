//! The hooks of a stream that arrives encoded (a publisher's, a passthrough pull): their
//! decoder is a reader of the stream, a pipeline of its own (`appsrc → decodebin → tee`, then
//! the hooks' branches) fed behind a 2 s leaky, counted queue. Decoding never runs in the
//! source's pipeline, so it never holds up the recording or the viewers; a decoder that cannot
//! keep up loses frames until the next keyframe, and one that fails is a hook error event.

use crate::assemble::{HookDecoder, Plan};
use crate::events::Event;
use crate::hooks::{HookHost, RunningHooks};
use gst::prelude::*;
use gst_utils::streamproducer::ConsumerSettings;

/// What the decoder may hold back before it drops.
const MAX_BEHIND: gst::ClockTime = gst::ClockTime::from_seconds(2);
/// How far the decoder's running time is ahead of the source's (nothing in it waits).
const CLOCK_MARGIN: gst::ClockTime = gst::ClockTime::from_seconds(10);

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
    let reader = gst::parse::launch(&decoder.launch)
        .map_err(|e| format!("cannot build the hooks' decoder: {}", e.message()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the hooks' decoder is not a pipeline".to_string())?;
    reader.set_property("name", format!("{name}-hooks"));
    let mut running = RunningHooks::start(name, &reader, &plan.hooks, host)?;
    report_errors(&reader, name, host)?;

    let appsrc = reader
        .by_name("video")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or("the hooks' decoder has no appsrc")?;
    let (_, producer) = super::producer(source, &decoder.video_sink)?;
    // The stream's end is the hooks': they see it to its last frame.
    producer.set_forward_events([gst::EventType::Gap, gst::EventType::Eos]);
    let settings = ConsumerSettings {
        max_time: MAX_BEHIND,
        ..ConsumerSettings::default()
    };
    let link = producer
        .add_consumer_with(&appsrc, settings)
        .map_err(|e| format!("cannot attach the hooks' decoder: {e}"))?;
    let clock = gst::SystemClock::obtain();
    reader.use_clock(Some(&clock));
    reader.set_start_time(gst::ClockTime::NONE);
    reader.set_base_time(clock.time().saturating_sub(CLOCK_MARGIN));
    reader
        .set_state(gst::State::Playing)
        .map_err(|_| "the hooks' decoder did not start".to_string())?;
    running.fed_by(reader, Box::new(link));
    Ok(running)
}

/// Errors in the decoder or a hook's branch are the hooks' problem: said, and sent as hook
/// events (from GStreamer's threads: the sync handler only logs and publishes).
fn report_errors(reader: &gst::Pipeline, name: &str, host: &HookHost) -> Result<(), String> {
    let bus = reader.bus().ok_or("the hooks' decoder has no bus")?;
    let (name, events) = (name.to_string(), host.events.clone());
    bus.set_sync_handler(move |_, msg| {
        if let gst::MessageView::Error(e) = msg.view() {
            let error = crate::pipeline::describe_error(msg, &e.error(), e.debug().as_deref());
            tracing::warn!("{name}: hook branch: {error}");
            let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
            events.publish(Event::hook(
                &name,
                &element,
                "error",
                serde_json::json!({ "error": error }),
            ));
        }
        gst::BusSyncReply::Drop
    });
    Ok(())
}
