//! Keyframes for joining viewers: which frames a viewer may start on, and how often the
//! source is asked for one.
//!
//! - A viewer starts on an IDR access unit only. `h264parse` flags every I-slice frame as a
//!   keyframe, and publishers' encoders (x264's scene cuts, for one) send non-IDR I-frames that
//!   carry no SPS/PPS: a viewer started on one would offer H.264 without its parameters and its
//!   decoder could not begin. [`mark_h264_keyframes`] makes only IDR access units keyframes on
//!   the way into the stream producer, so a new viewer waits for (and asks for) a real one.
//! - Every viewer that needs a keyframe asks upstream (a join, a PLI or FIR from its browser).
//!   Upstream is the shared encoder, or, for a relayed stream, the publisher (the request
//!   becomes an RTCP PLI). [`throttle_requests`] lets one request through per
//!   [`MIN_REQUEST_INTERVAL`], and sends one more at the end of the interval if any was held
//!   back: a crowd of joins does not flood the source, and no viewer's request is lost.
//! - A viewer's own request (its browser's PLI or FIR) comes out of its RTP session naming
//!   the SSRC we send it on. Upstream of a relayed stream is the publisher's RTP session,
//!   which takes a request's `ssrc` field for one of its own sources; finding none, it drops
//!   the request. [`throttle_requests`] (and [`clean_requests`], for a WHIP output's one
//!   peer) takes those fields off where requests enter the stream's pipeline: the
//!   publisher's session then fills in its own (the layer the request came up from) and asks
//!   the publisher. Otherwise a viewer of a relayed stream who lost a keyframe would wait for
//!   somebody else's request.
//! - A viewer that has just connected asks once more ([`on_connect_request`]): the keyframe
//!   its answer waited for went out before its transport was up. That request has an
//!   interval of its own; in the joins' interval it would wait behind the join's own request,
//!   up to half a second of a black picture for every viewer.

use gst::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most one keyframe request per stream this often (and one more of viewers that have
/// just connected).
pub const MIN_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// Marks a keyframe request made as a viewer connects.
const ON_CONNECT: &str = "mediaweave-on-connect";

/// The keyframe request of a viewer that has just connected.
pub fn on_connect_request() -> gst::Event {
    request(true)
}

fn request(on_connect: bool) -> gst::Event {
    let builder = gst_video::UpstreamForceKeyUnitEvent::builder().all_headers(true);
    match on_connect {
        true => builder.other_field(ON_CONNECT, true).build(),
        false => builder.build(),
    }
}

/// The fields a viewer's RTP session puts in its request that name the viewer's stream, not
/// the source's (see the module's notes).
const VIEWER_FIELDS: [&str; 2] = ["ssrc", "payload"];

/// Takes the viewer's stream's fields off a keyframe request going upstream.
fn strip_viewer_fields(event: &mut gst::Event) {
    let Some(s) = event.structure() else {
        return;
    };
    if VIEWER_FIELDS.iter().any(|f| s.has_field(*f)) {
        event
            .make_mut()
            .structure_mut()
            .remove_fields(VIEWER_FIELDS);
    }
}

/// Takes the fields naming its peer's stream off every keyframe request going upstream from
/// `appsink`: for a reader with one peer of its own (a WHIP output), which needs no throttle.
pub fn clean_requests(appsink: &gst::Element) {
    let Some(pad) = appsink.static_pad("sink") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = info.data.as_mut()
            && gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok()
        {
            strip_viewer_fields(event);
        }
        gst::PadProbeReturn::Ok
    });
}

/// Whether `event` is a keyframe request made as a viewer connected.
fn is_on_connect(event: &gst::EventRef) -> bool {
    event.structure().is_some_and(|s| s.has_field(ON_CONNECT))
}

/// Whether an H.264 byte-stream access unit holds an IDR slice (NAL type 5). Reads NAL headers
/// up to the first slice: parameter sets, SEI and delimiters come before it in an access unit.
pub fn h264_access_unit_is_idr(au: &[u8]) -> bool {
    let mut i = 0;
    while i + 3 < au.len() {
        // A start code is 00 00 01 (a four-byte 00 00 00 01 ends the same way).
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            match au[i + 3] & 0x1f {
                5 => return true,
                1..=4 => return false,
                _ => {}
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// Flags every access unit that is not an IDR as a delta unit, on `appsink`'s sink pad
/// (byte-stream, one access unit per buffer).
pub fn mark_h264_keyframes(appsink: &gst::Element) {
    let Some(pad) = appsink.static_pad("sink") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return gst::PadProbeReturn::Ok;
        }
        let idr = buffer
            .map_readable()
            .is_ok_and(|map| h264_access_unit_is_idr(&map));
        if !idr {
            buffer.make_mut().set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        gst::PadProbeReturn::Ok
    });
}

/// How a stream's keyframe requests went: passed on upstream, or held back because one had
/// just been passed on.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub forwarded: AtomicU64,
    pub suppressed: AtomicU64,
}

/// What becomes of a keyframe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Passed on upstream now.
    Forward,
    /// Held back; one request goes upstream at this time on behalf of all held back until
    /// then (schedule it).
    Defer(Instant),
    /// Held back; a deferred request is already scheduled.
    Coalesce,
}

/// One request per interval, and none lost: a request held back is answered by one sent at
/// the end of the interval (a viewer whose PLI arrived just after another's still gets its
/// keyframe, at most an interval later). The pure rule behind [`throttle_requests`].
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    deferred: bool,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: None,
            deferred: false,
        }
    }

    /// What to do with a request made at `now`.
    pub fn admit(&mut self, now: Instant) -> Decision {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                if std::mem::replace(&mut self.deferred, true) {
                    Decision::Coalesce
                } else {
                    Decision::Defer(last + self.interval)
                }
            }
            _ => {
                self.last = Some(now);
                self.deferred = false;
                Decision::Forward
            }
        }
    }
}

/// Holds back keyframe requests going upstream from `appsink` (where every viewer's request
/// of a stream producer arrives) to one per [`MIN_REQUEST_INTERVAL`], sending one at the end
/// of the interval for those held back; requests of viewers that have just connected apart
/// from the others. Counts both outcomes. What passes names no viewer's stream.
pub fn throttle_requests(appsink: &gst::Element, counts: Arc<RequestCounts>) {
    let Some(pad) = appsink.static_pad("sink") else {
        return;
    };
    let throttles = [false, true].map(|_| Mutex::new(Throttle::new(MIN_REQUEST_INTERVAL)));
    let c = counts;
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |pad, info| {
        let Some(event) = info.event() else {
            return gst::PadProbeReturn::Ok;
        };
        if gst_video::UpstreamForceKeyUnitEvent::parse(event).is_err() {
            return gst::PadProbeReturn::Ok;
        }
        let now = Instant::now();
        let on_connect = is_on_connect(event);
        let decision = throttles[usize::from(on_connect)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(now);
        match decision {
            Decision::Forward => {
                if let Some(gst::PadProbeData::Event(event)) = info.data.as_mut() {
                    strip_viewer_fields(event);
                }
                c.forwarded.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    "keyframe request from {} passed upstream",
                    pad.parent()
                        .map(|p| p.name().to_string())
                        .unwrap_or_default()
                );
                return gst::PadProbeReturn::Ok;
            }
            Decision::Defer(at) => {
                request_later(pad, at.saturating_duration_since(now), on_connect)
            }
            Decision::Coalesce => {}
        }
        c.suppressed.fetch_add(1, Ordering::Relaxed);
        // Handled, not Drop: the binding already owns (and frees) the event, and GStreamer
        // 1.22 frees a dropped event again (a critical per request).
        gst::PadProbeReturn::Handled
    });
}

/// Pushes a keyframe request upstream from `pad` after `delay`, on the system clock's thread
/// (the probe sees it again, and by then lets it pass).
fn request_later(pad: &gst::Pad, delay: Duration, on_connect: bool) {
    use gst::prelude::ClockExtManual;
    let clock = gst::SystemClock::obtain();
    let now = clock.time();
    let at = now + gst::ClockTime::from_nseconds(u64::try_from(delay.as_nanos()).unwrap_or(0));
    let pad = pad.downgrade();
    let id = clock.new_single_shot_id(at);
    let _ = id.wait_async(move |_, _, _| {
        if let Some(pad) = pad.upgrade() {
            let _ = pad.push_event(request(on_connect));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connecting_viewers_request_is_told_apart() {
        gst::init().ok();
        assert!(is_on_connect(&on_connect_request()));
        assert!(!is_on_connect(&request(false)));
        // A PLI reaches the producer as a plain request.
        let pli = gst_video::UpstreamForceKeyUnitEvent::builder().build();
        assert!(!is_on_connect(&pli));
        assert!(gst_video::UpstreamForceKeyUnitEvent::parse(&on_connect_request()).is_ok());
    }

    /// A viewer's PLI as its RTP session makes it, pushed up from a real appsink: what goes
    /// on upstream keeps what it asks for and drops the viewer's SSRC and payload type.
    #[test]
    fn a_request_passed_upstream_names_no_viewer_stream() {
        passes_upstream_clean(|sink| throttle_requests(sink, Arc::new(RequestCounts::default())));
        passes_upstream_clean(clean_requests);
    }

    fn passes_upstream_clean(install: impl Fn(&gst::Element)) {
        gst::init().ok();
        let pipeline = gst::parse::launch(
            "videotestsrc is-live=true ! identity name=up ! appsink name=sink sync=false",
        )
        .expect("the test pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let sink = pipeline.by_name("sink").expect("appsink");
        install(&sink);
        let (tx, rx) = std::sync::mpsc::channel();
        let up = pipeline.by_name("up").expect("identity");
        up.static_pad("src").expect("its src pad").add_probe(
            gst::PadProbeType::EVENT_UPSTREAM,
            move |_, info| {
                if let Some(s) = info.event().and_then(|e| e.structure())
                    && s.name() == "GstForceKeyUnit"
                {
                    let _ = tx.send(s.to_owned());
                }
                gst::PadProbeReturn::Ok
            },
        );
        pipeline.set_state(gst::State::Playing).expect("playing");
        let pli = gst::event::CustomUpstream::new(
            gst::Structure::builder("GstForceKeyUnit")
                .field("ssrc", 0x1234_5678u32)
                .field("payload", 96u32)
                .field("all-headers", false)
                .build(),
        );
        let pad = sink.static_pad("sink").expect("its sink pad");
        let _ = pad.push_event(pli);
        let got = rx.recv_timeout(Duration::from_secs(5));
        pipeline.set_state(gst::State::Null).expect("stopped");
        let got = got.expect("the request went upstream");
        assert!(!got.has_field("ssrc"), "{got}");
        assert!(!got.has_field("payload"), "{got}");
        assert_eq!(got.get::<bool>("all-headers"), Ok(false), "{got}");
    }

    #[test]
    fn an_idr_access_unit_is_a_keyframe() {
        // AUD, SPS, PPS, IDR slice.
        let au = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88,
        ];
        assert!(h264_access_unit_is_idr(&au));
    }

    #[test]
    fn a_non_idr_i_frame_is_not() {
        // AUD, then a non-IDR slice (x264's scene-cut I-frame): no parameter sets with it.
        let au = [
            0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x41, 0x9a, 0x21, 0, 0, 1, 0x65,
        ];
        assert!(!h264_access_unit_is_idr(&au));
    }

    #[test]
    fn nothing_recognisable_is_not() {
        assert!(!h264_access_unit_is_idr(&[]));
        assert!(!h264_access_unit_is_idr(&[0, 0, 1]));
        assert!(!h264_access_unit_is_idr(&[0x65, 0x65, 0x65, 0x65]));
    }

    #[test]
    fn one_request_per_interval_and_none_lost() {
        let mut t = Throttle::new(Duration::from_millis(500));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(t.admit(start), Decision::Forward);
        // Held back: the first one schedules a request for the end of the interval...
        assert_eq!(t.admit(at(10)), Decision::Defer(at(500)));
        // ...which answers the others held back meanwhile.
        assert_eq!(t.admit(at(499)), Decision::Coalesce);
        // The scheduled one arrives and passes.
        assert_eq!(t.admit(at(500)), Decision::Forward);
        assert_eq!(t.admit(at(600)), Decision::Defer(at(1000)));
        assert_eq!(t.admit(at(1000)), Decision::Forward);
        // Quiet for a while: the next passes at once.
        assert_eq!(t.admit(at(3000)), Decision::Forward);
    }
}
