//! A `record` output's writer: one muxer and file sink per segment, fed with the output's
//! encoded video (and audio) as it arrives.
//!
//! Nothing here holds media back to decide where a segment ends (splitmuxsink keeps a whole
//! group of pictures in memory for that, so a publisher that sends keyframes only when asked
//! loses everything since its last one in a crash). Every buffer goes straight into the current
//! segment's muxer, which writes a Matroska cluster at least every second (MP4: a fragment at
//! every keyframe), through an unbuffered file sink.
//!
//! Segments start on keyframes. The first one opens at the stream's first keyframe (a stream
//! that never delivers one leaves no file behind); once a segment is long enough the writer
//! asks upstream for a keyframe (the encoder, or a publisher through RTCP PLI/FIR), repeating
//! the request every second until one arrives, and that keyframe starts the next segment's
//! file. The old segment is finalized beside the running stream: its video ends at the cut,
//! its audio at the first audio buffer at or after the cut time, then end-of-stream finishes
//! the file (index, duration) and its elements are removed.
//!
//! The assembled `muxer ! sink` are never run: they are the templates every segment's muxer
//! and sink are made from. All the work happens in pad probes on the streaming threads: the
//! video thread decides cuts and relinks video, the audio thread relinks audio; no thread
//! relinks another's pad, and end-of-stream is sent only after the state lock is released (a
//! muxer may finish, and reach this writer's own probe, inside that call).

use super::Recordings;
use gst::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a record output's segments are written.
#[derive(Debug, Clone)]
pub struct WriterSpec {
    /// The pipeline (recordings go to `{dir}/{pipeline}/`).
    pub pipeline: String,
    /// The assembled muxer and file sink that segments are made like.
    pub muxer: String,
    pub sink: String,
    /// File extension of segments.
    pub extension: &'static str,
    /// Cut after this long, on the next keyframe.
    pub segment: Duration,
    /// Give every segment a subtitle track for [`Captions`] (where the muxer has one).
    pub captions: bool,
}

/// Element message posted on the bus when a record output has finished its last segment at
/// end-of-stream (the pipeline's own EOS may never come when other sinks are live).
pub const FINISHED_MESSAGE: &str = "mediaweave-record-finished";

/// Ask for a keyframe this long before a segment is due, so the cut lands near its length.
const KEYFRAME_LEAD: gst::ClockTime = gst::ClockTime::from_mseconds(300);
/// Repeat the request this often while none arrives (a request or its RTCP may be lost).
const REQUEST_EVERY: gst::ClockTime = gst::ClockTime::from_seconds(1);

/// The elements and input pads of one segment.
struct Segment {
    muxer: gst::Element,
    sink: gst::Element,
    path: PathBuf,
    video: gst::Pad,
    audio: Option<gst::Pad>,
    /// The subtitle track's input.
    text: Option<gst::Pad>,
}

#[derive(Default)]
struct State {
    current: Option<Segment>,
    /// Running time of the current segment's first video buffer.
    started: gst::ClockTime,
    /// When a keyframe was last asked for.
    requested: Option<gst::ClockTime>,
    /// Audio has yet to move to the current segment, from its first buffer at or after this
    /// running time on; the previous segment's audio pad, if there was one, ends then.
    audio_pending: Option<(gst::ClockTime, Option<gst::Pad>)>,
    /// Segments started so far (names the elements of the next one).
    count: u32,
    /// The running time of the last video buffer and when it passed, to time captions.
    last_video: Option<(gst::ClockTime, std::time::Instant)>,
}

/// How long a chat line said before a recording's first segment waits for it.
const EARLY_LINE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a caption stays on screen.
const CAPTION_SHOWN: gst::ClockTime = gst::ClockTime::from_seconds(5);

/// Lines written into a record output's segments as a subtitle track (a room's chat), timed
/// to when they are said.
#[derive(Clone)]
pub struct Captions(Arc<Writer>);

impl Captions {
    /// Writes `line` into the current segment at the stream's present moment. Blocking (the
    /// muxer takes it when the video catches up): call it off the async threads.
    ///
    /// A line said before the first segment began (the publisher's first keyframe is still
    /// on its way) waits for it, up to [`EARLY_LINE_WAIT`], and shows at its start.
    pub fn say(&self, line: &str) {
        let writer = &self.0;
        let deadline = std::time::Instant::now() + EARLY_LINE_WAIT;
        let (pad, pts) = loop {
            {
                // Video may flow well before the first segment (which waits for a keyframe):
                // the line waits for the segment, not for the video.
                let state = writer.lock();
                if let (Some(current), Some((rt, seen))) = (&state.current, state.last_video) {
                    let now = rt + gst::ClockTime::from_nseconds(seen.elapsed().as_nanos() as u64);
                    let pts = now.saturating_sub(state.started);
                    let Some(pad) = current.text.clone() else {
                        tracing::debug!(
                            "{}: caption not written: no subtitle track",
                            writer.spec.pipeline
                        );
                        return;
                    };
                    break (pad, pts);
                }
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    "{}: no recording began within {} s: chat line not recorded",
                    writer.spec.pipeline,
                    EARLY_LINE_WAIT.as_secs()
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        tracing::debug!("{}: caption at {pts}: {line}", writer.spec.pipeline);
        let mut buffer = gst::Buffer::from_slice(line.as_bytes().to_vec());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(pts);
            b.set_duration(CAPTION_SHOWN);
        }
        if let Err(e) = pad.chain(buffer) {
            // The segment was cut meanwhile: the line missed it.
            tracing::debug!("{}: caption not written: {e:?}", writer.spec.pipeline);
        }
    }
}

/// Lives as long as the probes on its input pads (which hold it); it holds the pipeline's
/// objects weakly or through the current segment only, so nothing keeps them alive in a cycle.
struct Writer {
    spec: WriterSpec,
    recordings: Arc<Recordings>,
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    /// What each segment's muxer and sink are made like.
    muxer_template: gst::Element,
    sink_template: gst::Element,
    audio_src: Option<gst::glib::WeakRef<gst::Pad>>,
    runtime: Option<tokio::runtime::Handle>,
    state: Mutex<State>,
}

/// Takes over the record output assembled as `muxer ! sink` in a built pipeline (before it
/// plays): the two leave the pipeline and become the templates of every segment's elements.
pub fn attach(
    pipeline: &gst::Pipeline,
    spec: WriterSpec,
    recordings: &Arc<Recordings>,
) -> Result<Captions, String> {
    let muxer = pipeline
        .by_name(&spec.muxer)
        .ok_or_else(|| format!("the assembled pipeline has no muxer {}", spec.muxer))?;
    let sink = pipeline
        .by_name(&spec.sink)
        .ok_or_else(|| format!("the assembled pipeline has no file sink {}", spec.sink))?;
    let (mut video_src, mut audio_src) = (None, None);
    for pad in muxer.sink_pads() {
        let Some(peer) = pad.peer() else { continue };
        let _ = peer.unlink(&pad);
        let kind = pad
            .pad_template()
            .map(|t| t.name_template().to_string())
            .unwrap_or_default();
        if kind.starts_with("video") {
            video_src = Some(peer);
        } else if kind.starts_with("audio") {
            audio_src = Some(peer);
        }
        muxer.release_request_pad(&pad);
    }
    let video_src = video_src.ok_or("the recorder has no video input")?;
    muxer.unlink(&sink);
    pipeline
        .remove_many([&muxer, &sink])
        .map_err(|e| e.to_string())?;
    let writer = Arc::new(Writer {
        recordings: recordings.clone(),
        pipeline: pipeline.downgrade(),
        muxer_template: muxer,
        sink_template: sink,
        audio_src: audio_src.as_ref().map(|src| src.downgrade()),
        runtime: tokio::runtime::Handle::try_current().ok(),
        state: Mutex::new(State::default()),
        spec,
    });

    let w = writer.clone();
    video_src.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |pad, info| match &info.data {
            Some(gst::PadProbeData::Buffer(buffer)) => w.on_video(pad, buffer),
            Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                w.on_video_eos();
                gst::PadProbeReturn::Ok
            }
            _ => gst::PadProbeReturn::Ok,
        },
    );
    if let Some(audio_src) = &audio_src {
        let w = writer.clone();
        audio_src.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |pad, info| match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => match running_time(pad, buffer) {
                    Some(rt) => w.on_audio(pad, Some(rt)),
                    None => gst::PadProbeReturn::Ok,
                },
                // Audio ends while it waits to move: the new segment must see the end too,
                // or its muxer would wait for audio forever.
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                    w.on_audio(pad, None)
                }
                _ => gst::PadProbeReturn::Ok,
            },
        );
    }
    Ok(Captions(writer))
}

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Video: keyframe requests, the first segment and cuts. Frames before the first keyframe
    /// have no segment to go to (a segment starts on a keyframe) and are dropped.
    fn on_video(self: &Arc<Self>, pad: &gst::Pad, buffer: &gst::BufferRef) -> gst::PadProbeReturn {
        let Some(rt) = running_time(pad, buffer) else {
            return gst::PadProbeReturn::Ok;
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let mut state = self.lock();
        state.last_video = Some((rt, std::time::Instant::now()));
        let due = self.spec.segment.as_nanos() as u64;
        let want = match &state.current {
            None => Some(rt),
            Some(_) => {
                let elapsed = rt.saturating_sub(state.started).nseconds();
                (elapsed + KEYFRAME_LEAD.nseconds() >= due)
                    .then(|| state.started + gst::ClockTime::from_nseconds(due))
            }
        };
        let Some(wanted_at) = want else {
            return gst::PadProbeReturn::Ok;
        };
        if keyframe
            && state
                .audio_pending
                .as_ref()
                .is_none_or(|(_, old)| old.is_none())
        {
            let ended = self.start_segment(&mut state, pad, rt);
            drop(state);
            // After the lock: the old muxer may finish right here and reach watch_sink.
            if let Some((old_video, old_text)) = ended {
                if let Some(text) = old_text {
                    text.send_event(gst::event::Eos::new());
                }
                old_video.send_event(gst::event::Eos::new());
            }
            return gst::PadProbeReturn::Ok;
        }
        let ask = state
            .requested
            .is_none_or(|at| rt.saturating_sub(at) >= REQUEST_EVERY);
        let waiting_for_first = state.current.is_none();
        if ask {
            state.requested = Some(rt);
        }
        drop(state);
        if ask {
            // An encoder places the keyframe exactly when the segment is due; a publisher
            // (RTCP PLI/FIR) sends one as soon as it can.
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .running_time(wanted_at)
                .all_headers(true)
                .build();
            pad.send_event(event);
        }
        if waiting_for_first {
            gst::PadProbeReturn::Drop
        } else {
            gst::PadProbeReturn::Ok
        }
    }

    /// Starts a segment at the keyframe at `rt`: video goes to its muxer from this buffer on,
    /// audio follows from the audio thread. Returns the previous segment's video and subtitle
    /// pads, to be ended once the lock is released.
    fn start_segment(
        self: &Arc<Self>,
        state: &mut State,
        video_src: &gst::Pad,
        rt: gst::ClockTime,
    ) -> Option<(gst::Pad, Option<gst::Pad>)> {
        let next = match self.new_segment(state.count, rt) {
            Ok(next) => next,
            Err(e) => {
                // Keep writing into the current segment rather than lose anything.
                tracing::error!("{}: cannot start a segment: {e}", self.spec.pipeline);
                state.started = rt;
                return None;
            }
        };
        state.count += 1;
        let old = state.current.take();
        if let Some(old) = &old {
            let _ = video_src.unlink(&old.video);
        }
        if video_src.link(&next.video).is_err() {
            tracing::error!(
                "{}: cannot link video to {}",
                self.spec.pipeline,
                next.path.display()
            );
        }
        if next.audio.is_some() {
            state.audio_pending = Some((rt, old.as_ref().and_then(|o| o.audio.clone())));
        }
        self.recordings.opened(&self.spec.pipeline, &next.path);
        if let Some(runtime) = &self.runtime {
            // Retention scans the directory: not on a streaming thread.
            let (rec, name) = (self.recordings.clone(), self.spec.pipeline.clone());
            runtime.spawn_blocking(move || rec.enforce_retention(&name));
        }
        state.current = Some(next);
        state.started = rt;
        state.requested = None;
        old.map(|o| (o.video, o.text))
    }

    /// A muxer and file sink made like the templates, playing, writing the next segment's
    /// file; its inputs start at running time zero.
    fn new_segment(self: &Arc<Self>, n: u32, rt: gst::ClockTime) -> Result<Segment, String> {
        let pipeline = self.pipeline.upgrade().ok_or("the pipeline is gone")?;
        let suffix = |name: &str| match n {
            0 => name.to_string(),
            n => format!("{name}_{n}"),
        };
        let muxer = copy(&self.muxer_template, &suffix(&self.spec.muxer))?;
        let sink = copy(&self.sink_template, &suffix(&self.spec.sink))?;
        let path = self
            .recordings
            .next_segment(&self.spec.pipeline, self.spec.extension);
        sink.set_property("location", path.to_string_lossy().as_ref());
        let offset = -(rt.nseconds() as i64);
        let request = |template: &str| -> Option<gst::Pad> {
            let pad = muxer.request_pad_simple(template)?;
            pad.set_offset(offset);
            Some(pad)
        };
        let video = request("video_%u").ok_or("the muxer gives no video input")?;
        // Audio that has already ended is not carried into a new segment.
        let audio_alive = self
            .audio_src
            .as_ref()
            .and_then(|a| a.upgrade())
            .is_some_and(|a| a.sticky_event::<gst::event::Eos>(0).is_none());
        let audio = if audio_alive {
            request("audio_%u")
        } else {
            None
        };
        let has_subtitles = muxer.pad_template("subtitle_%u").is_some();
        let text = (self.spec.captions && has_subtitles)
            .then(|| muxer.request_pad_simple("subtitle_%u"))
            .flatten();
        let segment = Segment {
            muxer: muxer.clone(),
            sink: sink.clone(),
            path,
            video,
            audio,
            text,
        };
        self.watch_sink(&segment);
        pipeline
            .add_many([&muxer, &sink])
            .map_err(|e| e.to_string())?;
        let started = muxer.link(&sink).is_ok()
            && sink.sync_state_with_parent().is_ok()
            && muxer.sync_state_with_parent().is_ok();
        if !started {
            let _ = muxer.set_state(gst::State::Null);
            let _ = sink.set_state(gst::State::Null);
            let _ = pipeline.remove_many([&muxer, &sink]);
            return Err(format!("cannot write {}", segment.path.display()));
        }
        if let Some(text) = &segment.text {
            // The subtitle stream begins with the segment (its track is in the header), each
            // line timed from the segment's start; it is sparse: the muxer never waits for it.
            let id = format!("{}-chat-{n}", self.spec.pipeline);
            text.send_event(gst::event::StreamStart::new(&id));
            let caps = gst::Caps::builder("text/x-raw")
                .field("format", "utf8")
                .build();
            text.send_event(gst::event::Caps::new(&caps));
            let time = gst::FormattedSegment::<gst::ClockTime>::new();
            text.send_event(gst::event::Segment::new(&time));
        }
        Ok(segment)
    }

    /// Audio: moves to the current segment at its first buffer at or after the cut (`rt`), or
    /// at its end-of-stream (`None`). Audio from before the first segment has nowhere to go.
    fn on_audio(&self, pad: &gst::Pad, rt: Option<gst::ClockTime>) -> gst::PadProbeReturn {
        let mut state = self.lock();
        if state.current.is_none() {
            return match rt {
                Some(_) => gst::PadProbeReturn::Drop,
                None => gst::PadProbeReturn::Ok,
            };
        }
        let Some((cut, old)) = state.audio_pending.clone() else {
            return gst::PadProbeReturn::Ok;
        };
        if rt.is_some_and(|rt| rt < cut) {
            // Still the previous segment's (or, before the first cut, nobody's).
            return match old {
                Some(_) => gst::PadProbeReturn::Ok,
                None => gst::PadProbeReturn::Drop,
            };
        }
        state.audio_pending = None;
        let new = state.current.as_ref().and_then(|s| s.audio.clone());
        drop(state);
        if let Some(old) = &old {
            let _ = pad.unlink(old);
        }
        if let Some(new) = new {
            let _ = pad.link(&new);
        }
        if let Some(old) = old {
            old.send_event(gst::event::Eos::new());
        }
        gst::PadProbeReturn::Ok
    }

    /// The video ended: the subtitle track ends with it (the muxer finishes when every
    /// input has); before any segment started, there is nothing to finish: say so at once.
    fn on_video_eos(&self) {
        let text = self.lock().current.as_ref().map(|c| c.text.clone());
        if let Some(text) = text {
            if let Some(text) = text {
                text.send_event(gst::event::Eos::new());
            }
            return;
        }
        if let Some(pipeline) = self.pipeline.upgrade() {
            let s = gst::Structure::builder(FINISHED_MESSAGE).build();
            let _ = pipeline.post_message(gst::message::Element::builder(s).src(&pipeline).build());
        }
    }

    /// Watches the end-of-stream reaching a segment's file sink: the file is complete. An old
    /// segment's end stays here (its sink must not count as the pipeline's end) and its
    /// elements go; the current one's passes on, the output's stream having ended.
    fn watch_sink(self: &Arc<Self>, segment: &Segment) {
        let Some(pad) = segment.sink.static_pad("sink") else {
            return;
        };
        let weak = Arc::downgrade(self);
        // Weak: the probe lives in the sink's own pad.
        let (path, muxer, sink) = (
            segment.path.clone(),
            segment.muxer.downgrade(),
            segment.sink.downgrade(),
        );
        pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            let is_eos = matches!(&info.data, Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos);
            let Some(writer) = weak.upgrade().filter(|_| is_eos) else {
                return gst::PadProbeReturn::Ok;
            };
            let (Some(muxer), Some(sink)) = (muxer.upgrade(), sink.upgrade()) else {
                return gst::PadProbeReturn::Ok;
            };
            writer.recordings.closed(&writer.spec.pipeline, &path);
            let current = writer
                .lock()
                .current
                .as_ref()
                .is_some_and(|c| c.sink == sink);
            if current {
                let s = gst::Structure::builder(FINISHED_MESSAGE)
                    .field("location", path.to_string_lossy().as_ref())
                    .build();
                let _ = sink.post_message(gst::message::Element::builder(s).src(&sink).build());
                return gst::PadProbeReturn::Ok;
            }
            if let Some(pipeline) = writer.pipeline.upgrade() {
                // Not from this streaming thread: its elements' state changes wait for it.
                pipeline.call_async(move |p| {
                    let _ = muxer.set_state(gst::State::Null);
                    let _ = sink.set_state(gst::State::Null);
                    let _ = p.remove_many([&muxer, &sink]);
                });
            }
            // Consumed here (Handled, not Drop: gstreamer-rs takes the event out of the probe
            // info, and GStreamer 1.22 then unrefs the empty slot of a dropped event).
            gst::PadProbeReturn::Handled
        });
    }
}

/// A new element of `template`'s factory, named `name`, with every property set on the
/// template that can be set again (location aside).
fn copy(template: &gst::Element, name: &str) -> Result<gst::Element, String> {
    let factory = template.factory().ok_or("an element without a factory")?;
    let element = factory
        .create()
        .name(name)
        .build()
        .map_err(|e| e.to_string())?;
    for spec in template.list_properties() {
        let flags = spec.flags();
        let settable = flags.contains(gst::glib::ParamFlags::READWRITE)
            && !flags.contains(gst::glib::ParamFlags::CONSTRUCT_ONLY)
            && !matches!(spec.name(), "name" | "parent" | "location");
        if settable {
            element.set_property_from_value(spec.name(), &template.property_value(spec.name()));
        }
    }
    Ok(element)
}

/// The buffer's running time on `pad`, from its timestamp and the pad's segment.
fn running_time(pad: &gst::Pad, buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    let ts = buffer.dts_or_pts()?;
    let segment = pad.sticky_event::<gst::event::Segment>(0)?;
    let segment = segment.segment().downcast_ref::<gst::ClockTime>()?.clone();
    segment.to_running_time(ts)
}
