//! TCP readers: a stream served as MPEG-TS to any number of TCP clients (ffplay, VLC, OpenCV,
//! GStreamer's `tcpclientsrc`), from a small pipeline of its own fed by the stream's producers
//! (`appsrc → parser → mpegtsmux → tcpserversink`), so the source's pipeline never holds the
//! socket: a port that cannot be bound costs that output (a warning and a `reader_error`
//! event), not the stream. A pipeline's TCP outputs listen while it runs; a relayed
//! publisher's, while the publisher is live: clients are let go when it leaves, as MediaMTX
//! lets a path's readers go.
//!
//! A client that connects gets the stream at once and asks the source for a keyframe
//! (upstream; a publisher gets an RTCP PLI), again each second until one has passed, so its
//! decoder does not wait for a publisher's next keyframe (browsers and aiortc send none
//! unasked).

use super::{CLOCK_MARGIN, HasPipeline, OwnPipeline, ReaderTable, Readers};
use crate::assemble::{Plan, TcpTap};
use crate::description::{AudioCodec, VideoCodec};
use crate::events::{Event, EventBus};
use gst::prelude::*;

/// The running TCP readers, by pipeline name.
#[derive(Default)]
pub struct TcpReaders {
    running: ReaderTable<TcpReader>,
}

struct TcpReader {
    own: OwnPipeline,
    /// Where it listens, for logs and events.
    endpoint: String,
    events: EventBus,
}

impl HasPipeline for TcpReader {
    fn own(&self) -> &OwnPipeline {
        &self.own
    }
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element {factory} is not installed"))
}

/// Builds (not starts) one TCP reader of `tap`'s appsinks in `source`.
fn build(
    name: &str,
    source: &gst::Pipeline,
    tap: &TcpTap,
    events: &EventBus,
) -> Result<TcpReader, String> {
    let endpoint = format!("tcp://{}:{}", tap.host, tap.port);
    let pipeline = gst::Pipeline::with_name(&format!("{name}-tcp{}", tap.stream.index));
    let mux = make("mpegtsmux")?;
    let sink = gst::ElementFactory::make("tcpserversink")
        .name(format!("out{}_sink", tap.stream.index))
        .property("host", &tap.host)
        .property("port", i32::from(tap.port))
        // Frames go out as they arrive: the source paces them.
        .property("sync", false)
        .property("async", false)
        .build()
        .map_err(|_| "GStreamer element tcpserversink is not installed".to_string())?;
    // A client gets the stream from the moment it connects (its decoder starts at the
    // keyframe it asked for, see ask_for_keyframes); one that falls more than 5 s behind is
    // dropped rather than buffered without bound.
    sink.set_property_from_str("sync-method", "latest");
    sink.set_property_from_str("recover-policy", "keyframe");
    sink.set_property_from_str("unit-format", "time");
    sink.set_property("units-soft-max", 2_000_000_000i64);
    sink.set_property("units-max", 5_000_000_000i64);
    pipeline
        .add_many([&mux, &sink])
        .map_err(|e| e.to_string())?;
    mux.link(&sink).map_err(|e| e.to_string())?;

    let mut links = Vec::new();
    let mut video_parse = None;
    let video_parser = match tap.stream.codec {
        VideoCodec::H264 => "h264parse",
        VideoCodec::Av1 => "av1parse",
        // Parsed already: a stand-in where keyframe requests go up and keyframes come down.
        VideoCodec::Vp8 | VideoCodec::Vp9 => "identity",
    };
    let tracks = [
        Some((tap.stream.video_sink.as_str(), video_parser, true)),
        tap.stream.audio_sink.as_ref().map(|(sink, codec)| {
            let parser = match codec {
                AudioCodec::Aac => "aacparse",
                AudioCodec::Opus => "opusparse",
            };
            (sink.as_str(), parser, false)
        }),
    ];
    for (appsink, parser, is_video) in tracks.into_iter().flatten() {
        let appsrc = gst_app::AppSrc::builder()
            .format(gst::Format::Time)
            .is_live(true)
            .build();
        let parse = make(parser)?;
        if parser == "h264parse" {
            // SPS/PPS before every keyframe, so a client can join at any of them.
            parse.set_property("config-interval", -1i32);
        }
        if is_video {
            video_parse = Some(parse.clone());
        }
        pipeline
            .add_many([appsrc.upcast_ref(), &parse])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([appsrc.upcast_ref(), &parse, &mux])
            .map_err(|e| format!("cannot link {parser} into mpegtsmux: {e}"))?;
        links.push(
            super::producer(source, appsink)?
                .1
                .add_consumer(&appsrc)
                .map_err(|e| format!("cannot attach the TCP reader: {e}"))?,
        );
    }

    if let Some(parse) = &video_parse {
        ask_for_keyframes(&sink, parse);
    }
    Ok(TcpReader {
        own: OwnPipeline {
            pipeline,
            output: format!("out{}", tap.stream.index),
            links,
        },
        endpoint,
        events: events.clone(),
    })
}

/// A client that connects asks the source for a keyframe ([`super::KeyframeAsker`]): it must
/// not wait for the publisher's next keyframe of its own accord (browsers and aiortc send
/// none unasked).
fn ask_for_keyframes(sink: &gst::Element, parse: &gst::Element) {
    let Some(asker) = super::KeyframeAsker::on(parse, None) else {
        return;
    };
    sink.connect("client-added", false, move |_| {
        asker.ask();
        None
    });
}

impl TcpReader {
    /// Starts it on the source's clock; a port that cannot be bound is said, and the stream
    /// goes on without this reader.
    fn start(&self, name: &str, clock: Option<(gst::Clock, gst::ClockTime)>) -> bool {
        if let Some((clock, base)) = clock {
            self.own.pipeline.use_clock(Some(&clock));
            self.own.pipeline.set_start_time(gst::ClockTime::NONE);
            self.own
                .pipeline
                .set_base_time(base.saturating_sub(CLOCK_MARGIN));
        }
        if self.own.pipeline.set_state(gst::State::Playing).is_ok() {
            tracing::info!("{name}: serving {} (MPEG-TS)", self.endpoint);
            return true;
        }
        let error = self
            .own
            .pipeline
            .bus()
            .and_then(|bus| bus.pop_filtered(&[gst::MessageType::Error]))
            .and_then(|msg| match msg.view() {
                gst::MessageView::Error(e) => Some(crate::pipeline::describe_error(
                    &msg,
                    &e.error(),
                    e.debug().as_deref(),
                )),
                _ => None,
            })
            .unwrap_or_else(|| "the TCP reader did not start".into());
        tracing::warn!("{name}: cannot serve {}: {error}", self.endpoint);
        self.events.publish(Event::new(
            "reader_error",
            name,
            serde_json::json!({ "reader": self.endpoint, "error": error }),
        ));
        false
    }
}

impl Readers for TcpReaders {
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &Plan,
        events: &EventBus,
    ) -> Result<(), String> {
        let mut readers = Vec::new();
        for tap in &plan.tcp {
            readers.push(build(name, pipeline, tap, events)?);
        }
        // A run replaces the previous run's readers (their clients are let go).
        self.running.replace(name, readers);
        Ok(())
    }

    fn playing(&self, name: &str, pipeline: &gst::Pipeline) {
        let clock = pipeline
            .clock()
            .map(|c| (c, pipeline.base_time().unwrap_or(gst::ClockTime::ZERO)));
        // One that cannot listen is dropped; the others serve.
        self.running.with(name, |readers| {
            readers.retain(|r| r.start(name, clock.clone()))
        });
    }

    /// Their sinks are named as in-pipeline TCP outputs' were, `out{index}_sink`.
    fn pipelines(&self, name: &str) -> Vec<gst::Pipeline> {
        self.running.pipelines(name)
    }

    fn dropped(&self, name: &str) -> Vec<(String, u64)> {
        self.running.dropped(name)
    }

    fn detach(&self, name: &str) {
        drop(self.running.take(name));
    }
}
