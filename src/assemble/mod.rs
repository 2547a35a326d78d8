//! From a [`Description`] to a `gst::Pipeline`.
//!
//! Assembly happens in two steps. [`plan`] decides everything that depends on the machine
//! (which encoder is installed, what the camera offers) and writes the result as a gst-launch
//! line, so `mediaweave check` can show exactly what will run. [`Plan::build`] parses that line
//! into a pipeline and wires the few dynamic parts a launch line cannot express (decodebin pads,
//! time-stamped file names).
//!
//! The structured graph is "encode once, fan out":
//!
//! ```text
//! source ─ videoconvert ─ tee(video_raw) ─ queue(leaky) ─ encoder ─ tee(video_enc) ─┬─ queue ─ parse ─ mux ─ sink  (output 0)
//!                                                                                   └─ queue ─ parse ─ mux ─ sink  (output 1)
//! audio  ─ audioconvert ─ tee(audio_raw) ─ queue(leaky) ─ aac/opus encoder ─ tee ─ queue ─ parse ─┘ (into each mux)
//! ```
//!
//! Every branch after a tee starts with a leaky queue, so a stalled output drops its own data
//! instead of blocking the encoder and the other outputs.

mod encoder;

pub use encoder::EncoderChoice;

use crate::description::{
    AudioCodec, CameraFormat, CameraSource, Container, Description, Diagnostic, Form, Output,
    Source, VideoCodec, elements,
};
use crate::hooks::HookTap;
use crate::record::{Recordings, Retention};
use gst::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// What will run, and why: the launch line plus the choices made on this machine.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    /// The complete pipeline as a gst-launch-1.0 line.
    pub launch: String,
    /// Machine-dependent choices, e.g. ("video encoder", "x264enc (software)").
    pub chosen: Vec<(&'static str, String)>,
    /// One-line summary of the source.
    pub source: String,
    /// One-line summary of each output.
    pub outputs: Vec<String>,
    /// Seek back to the start at the end (file sources with `loop = true`).
    pub looping: bool,
    decode: Option<DecodeLinks>,
    /// (filesink element name, path template with `{time}`).
    file_sinks: Vec<(String, String)>,
    /// WebRTC outputs: where their encoded streams leave the pipeline.
    pub webrtc: Vec<WebRtcTap>,
    /// TCP outputs served by readers of the stream hub (a published stream's), not by a
    /// branch of the pipeline.
    pub tcp: Vec<TcpTap>,
    /// Record outputs: their muxers and sinks.
    pub records: Vec<RecordTap>,
    /// Set for webrtc-source pipelines: built per publisher, fed at `video_in` / `audio_in`.
    pub ingest: Option<IngestTap>,
    /// Frame hooks: their appsinks and what runs on them.
    pub hooks: Vec<HookTap>,
    /// The buffer-flow watchdog, when the source has one.
    pub stall: Option<StallWatch>,
}

/// A source that stops delivering video without an error is noticed: when nothing passes
/// `counted` for `timeout`, the run has stalled, and `source` is named as the culprit.
#[derive(Debug, Clone, PartialEq)]
pub struct StallWatch {
    /// The element whose sink pad the source's video passes; None: every source element's
    /// output (raw launch lines).
    pub counted: Option<String>,
    /// The element a stall is reported against; None: the first source element.
    pub source: Option<String>,
    pub timeout: std::time::Duration,
}

/// Live sources are watched unless `stall_timeout = 0`; others only when it is set.
const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn stall_watch(
    desc: &Description,
    live: bool,
    counted: Option<&str>,
    source: Option<&str>,
) -> Option<StallWatch> {
    let timeout = match desc.options.stall_timeout {
        Some(t) => t,
        None if live => DEFAULT_STALL_TIMEOUT,
        None => return None,
    };
    (!timeout.is_zero()).then(|| StallWatch {
        counted: counted.map(str::to_string),
        source: source.map(str::to_string),
        timeout,
    })
}

/// Whether a source delivers live (a clock-paced or network stream), and the element named
/// when it stalls.
fn source_liveness(source: &Source) -> (bool, &'static str) {
    match source {
        Source::Test(_) | Source::Camera(_) | Source::Tcp(_) => (true, "source"),
        Source::File(_) => (false, "source"),
        Source::Uri(u) => (is_live_uri(u.uri.get_ref()), "decode"),
        Source::WebRtc(_) => (false, "source"),
    }
}

/// What a webrtc-source pipeline accepts from publishers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IngestTap {
    pub codec: VideoCodec,
    pub audio: bool,
}

/// A `record` output: its first segment's muxer and file sink (the writer makes the next ones
/// alike), and how its segments are cut and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordTap {
    pub muxer: String,
    pub sink: String,
    pub container: Container,
    pub segment: std::time::Duration,
    pub retention: Retention,
}

impl RecordTap {
    fn extension(&self) -> &'static str {
        match self.container {
            Container::Mp4 => "mp4",
            _ => "mkv",
        }
    }

    /// A muxer that loses at most about a second in a crash: what it has muxed reaches the
    /// unbuffered file sink at once, and it never holds much.
    fn muxer(&self) -> &'static str {
        match self.container {
            // Fragmented MP4, readable without a final index. mp4mux cuts fragments only at
            // keyframes, so with 0.5 s every keyframe starts one: a crash loses about one
            // keyframe interval (Matroska, below, does not depend on keyframes).
            Container::Mp4 => "mp4mux fragment-duration=500",
            // Matroska: a cluster at least every second, keyframe or not.
            _ => "matroskamux max-cluster-duration=1000000000 min-cluster-duration=0",
        }
    }
}

/// Where a `webrtc` output's encoded streams leave the main pipeline (appsinks), and how it is
/// to be offered.
#[derive(Debug, Clone, PartialEq)]
pub struct WebRtcTap {
    /// The output's index in the description.
    pub index: usize,
    pub video_sink: String,
    pub audio_sink: Option<String>,
    pub codec: VideoCodec,
    pub signalling_url: Option<String>,
    pub max_viewers: u32,
    /// Forward the pipeline's hook events to viewers on the data channel.
    pub hook_events: bool,
}

/// A TCP output served from the stream hub: where its encoded streams leave the pipeline
/// (H.264 video, Opus audio) and where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpTap {
    /// The output's index in the description.
    pub index: usize,
    pub video_sink: String,
    pub audio_sink: Option<String>,
    pub host: String,
    pub port: u16,
}

/// A decodebin whose pads appear at run time and are linked to named branch heads.
#[derive(Debug, Clone)]
struct DecodeLinks {
    element: String,
    video_head: String,
    audio_head: Option<String>,
    /// Passthrough: the encoded video and audio caps the description promised.
    expect_video: Option<&'static str>,
    expect_audio: Option<&'static str>,
}

/// Decides how `desc` runs on this machine. Errors point into the description file.
pub fn plan(desc: &Description) -> Result<Plan, Diagnostic> {
    match &desc.form {
        Form::Raw(launch) => plan_raw(desc, &launch.text),
        Form::Structured(_) => plan_structured(desc),
    }
}

fn plan_raw(desc: &Description, launch: &str) -> Result<Plan, Diagnostic> {
    let (source, outputs) = summarize_launch(launch);
    Ok(Plan {
        name: desc.name.clone(),
        launch: launch.to_string(),
        chosen: Vec::new(),
        source,
        outputs,
        looping: false,
        decode: None,
        file_sinks: Vec::new(),
        webrtc: Vec::new(),
        tcp: Vec::new(),
        records: Vec::new(),
        ingest: None,
        hooks: Vec::new(),
        stall: stall_watch(desc, false, None, None),
    })
}

/// Source and sink element names of a launch line, for `list`.
fn summarize_launch(launch: &str) -> (String, Vec<String>) {
    let Ok(element) = gst::parse::launch(launch) else {
        return ("?".into(), Vec::new());
    };
    let mut sources = Vec::new();
    let mut sinks = Vec::new();
    let mut visit = |e: &gst::Element| {
        if let Some(f) = e.factory() {
            let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default();
            if klass.contains("Source") {
                sources.push(f.name().to_string());
            } else if klass.contains("Sink") {
                sinks.push(f.name().to_string());
            }
        }
    };
    match element.downcast_ref::<gst::Bin>() {
        Some(bin) => bin
            .iterate_recurse()
            .into_iter()
            .flatten()
            .for_each(|e| visit(&e)),
        None => visit(&element),
    }
    sources.reverse();
    sinks.reverse();
    (sources.join(", "), sinks)
}

fn plan_structured(desc: &Description) -> Result<Plan, Diagnostic> {
    let Form::Structured(s) = &desc.form else {
        unreachable!("plan_structured is only called for the structured form")
    };
    let source = &s.source.value;
    if let Source::WebRtc(w) = source {
        return plan_ingest(desc, w);
    }
    if let Some(p) = s.passthrough() {
        return plan_passthrough(desc, s, p);
    }
    let source_err = |msg: String| desc.diagnostic(Some(s.source.span.clone()), msg);
    let mut chosen = Vec::new();
    let mut chains: Vec<String> = Vec::new();
    let mut decode = None;
    let mut looping = false;

    let (width, height, framerate) = source.video_size();
    let size_caps = raw_caps("video/x-raw", width, height, framerate);

    // 1. Raw video (and audio) from the source, ending in tees `video_raw` / `audio_raw`.
    let want_audio;
    let mut video = match source {
        Source::Test(t) => {
            want_audio = t.audio;
            // `frames`: a stream of exactly that many frames (and about as much audio).
            let (video_count, audio_count) = match t.frames {
                Some(n) => (
                    format!(" num-buffers={n}"),
                    format!(
                        " num-buffers={n} samplesperbuffer={}",
                        48000 / t.framerate.max(1)
                    ),
                ),
                None => (String::new(), String::new()),
            };
            let mut v = format!(
                "videotestsrc name=source is-live=true{video_count} pattern={} ! {size_caps}",
                t.pattern.get_ref()
            );
            if t.clock {
                v.push_str(
                    " ! clockoverlay halignment=right valignment=top shaded-background=true font-desc=\"Sans 20\"",
                );
            }
            if t.audio {
                chains.push(format!(
                    "audiotestsrc is-live=true{audio_count} wave=sine freq=440 volume=0.2 ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! tee name=audio_raw allow-not-linked=true"
                ));
            }
            v
        }
        Source::Camera(c) => {
            want_audio = false;
            let (chain, what) = camera_chain(desc, c, &s.source.span, width, height, framerate)?;
            chosen.push(("camera format", what));
            chain
        }
        Source::File(f) => {
            want_audio = f.audio;
            looping = f.looping;
            let path = f.path.get_ref();
            if !Path::new(path).is_file() {
                return Err(
                    desc.diagnostic(Some(f.path.span()), format!("file `{path}` does not exist"))
                );
            }
            chains.push(format!(
                "filesrc name=source location={} ! decodebin name=decode",
                quote(path)
            ));
            decode = Some(DecodeLinks::video_only());
            // A file decodes as fast as the CPU allows: clocksync plays it at its own pace.
            "queue name=video_in ! clocksync".into()
        }
        Source::Uri(u) => {
            want_audio = u.audio;
            let uri = u.uri.get_ref();
            if uri_scheme(uri).is_none() {
                return Err(desc.diagnostic(
                    Some(u.uri.span()),
                    format!("`{uri}` is not a URI (expected e.g. rtsp://host/path or http://...)"),
                ));
            }
            chains.push(format!("uridecodebin name=decode uri={}", quote(uri)));
            decode = Some(DecodeLinks::video_only());
            if is_live_uri(uri) {
                "queue name=video_in".into()
            } else {
                "queue name=video_in ! clocksync".into()
            }
        }
        Source::WebRtc(_) => unreachable!("ingest sources are planned by plan_ingest"),
        Source::Tcp(t) => {
            want_audio = t.audio;
            // timeout: a dead or unreachable server fails the pipeline (and so restarts it)
            // instead of blocking it for minutes.
            chains.push(format!(
                "tcpclientsrc name=source host={} port={} timeout=10 ! decodebin name=decode",
                quote(&t.host),
                t.port
            ));
            decode = Some(DecodeLinks::video_only());
            "queue name=video_in".into()
        }
    };
    if let Some(d) = &mut decode {
        if want_audio {
            let pace = if video.contains("clocksync") {
                " ! clocksync"
            } else {
                ""
            };
            chains.push(format!(
                "queue name=audio_in{pace} ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2 ! tee name=audio_raw allow-not-linked=true"
            ));
            d.audio_head = Some("audio_in".into());
        }
        video.push_str(" ! videoconvert");
        if width.is_some() || height.is_some() {
            video.push_str(" ! videoscale");
        }
        if framerate.is_some() {
            video.push_str(" ! videorate");
        }
        if width.is_some() || height.is_some() || framerate.is_some() {
            video.push_str(&format!(" ! {size_caps}"));
        }
    }
    // Transform hooks sit on the raw video before it fans out; observe hooks branch off it.
    let hooks = plan_hooks(s, &desc.name);
    video.push_str(&hooks.path);
    // The raw video is I420, what encoders take and what observe hooks' branches deliver (the
    // RGB a hook may want is made in its own thread): a source left to pick its own format
    // draws in whatever comes first in its list, converted again for each consumer.
    video.push_str(
        " ! videoconvert ! video/x-raw,format=I420 ! tee name=video_raw allow-not-linked=true",
    );
    chains.insert(0, video);

    // 2. One video encoder, fanned out by the `video_enc` tee; none when no output needs one
    // (a pipeline of hooks only).
    let enc = if s.outputs.is_empty() {
        None
    } else {
        let enc = encoder::choose(&s.encode, framerate.unwrap_or(30)).map_err(|m| {
            let span = s.encode.encoder.as_ref().map(|e| e.span());
            desc.diagnostic(span.or(Some(s.source.span.clone())), m)
        })?;
        chosen.push(("video encoder", enc.describe()));
        Some(enc)
    };
    let for_browsers = s
        .outputs
        .iter()
        .any(|o| matches!(o.value, Output::WebRtc(_)));
    // Browsers and aiortc decode constrained-baseline H.264 everywhere; ask the encoder for it.
    let profile = if for_browsers && s.encode.codec == VideoCodec::H264 {
        " ! video/x-h264,profile=constrained-baseline"
    } else {
        ""
    };
    // 8-bit 4:2:0 into the encoder: x264enc lists Y444 (and 10-bit) first and would otherwise
    // make High 4:4:4 streams that browsers and most players cannot decode, at twice the cost.
    if let Some(enc) = &enc {
        chains.push(format!(
            "video_raw. ! queue name=video_encode_queue leaky=downstream max-size-buffers=3 max-size-bytes=0 max-size-time=0 ! videoconvert ! video/x-raw,format={{I420,NV12}} ! {} name=video_encoder{profile} ! tee name=video_enc allow-not-linked=true",
            enc.launch
        ));
    }

    // 3. Audio encoders: one per codec the outputs need.
    let mut audio_codecs: Vec<AudioCodec> = Vec::new();
    if want_audio {
        for out in &s.outputs {
            let c = out.value.container().audio_codec();
            if !audio_codecs.contains(&c) {
                audio_codecs.push(c);
            }
        }
    }
    for codec in &audio_codecs {
        let enc = audio_encoder(*codec, s.encode.audio_bitrate).map_err(&source_err)?;
        chosen.push((
            "audio encoder",
            enc.split(' ').next().unwrap_or_default().to_string(),
        ));
        chains.push(format!(
            "audio_raw. ! queue leaky=downstream max-size-time=1000000000 max-size-buffers=0 max-size-bytes=0 ! audioconvert ! audioresample ! {enc} name=audio_encoder_{} ! tee name=audio_{} allow-not-linked=true",
            codec.name(),
            codec.name()
        ));
    }

    // 4. Outputs.
    let outs = plan_outputs(desc, s, s.encode.codec, want_audio, None, &mut chains);

    // 5. Observe hooks: a bounded, leaky branch each off the raw video.
    chains.extend(hooks.branches);

    let launch = chains.join("  ");
    check_elements(desc, &launch)?;
    Ok(Plan {
        name: desc.name.clone(),
        launch,
        chosen,
        source: source.summary(),
        outputs: outs.summaries,
        looping,
        decode,
        file_sinks: outs.file_sinks,
        webrtc: outs.webrtc,
        tcp: outs.tcp,
        records: outs.records,
        ingest: None,
        hooks: hooks.taps,
        stall: {
            let (live, named) = source_liveness(source);
            stall_watch(desc, live, Some("video_raw"), Some(named))
        },
    })
}

/// The hooks of a plan: transforms on the raw video's path, observe hooks' branches.
struct PlannedHooks {
    /// Appended to the raw video chain before its tee (empty without transforms).
    path: String,
    branches: Vec<String>,
    taps: Vec<HookTap>,
}

/// Each observe hook reads `video_raw` behind a queue of 2 frames that drops the oldest, then
/// an appsink that keeps 1: a slow hook loses frames, never holds the tee (and so the outputs).
/// Each transform is an `identity` on the path whose probe hands frames to the hook (within
/// its budget), behind one small queue that takes the waiting off the source's thread.
fn plan_hooks(s: &crate::description::Structured, name: &str) -> PlannedHooks {
    use crate::description::Hook;
    let mut planned = PlannedHooks {
        path: String::new(),
        branches: Vec::new(),
        taps: Vec::new(),
    };
    for (i, hook) in s.hooks.iter().enumerate() {
        let element = format!("hook{i}");
        let mut options = crate::hooks::HookOptions::new();
        let fps = |f: Option<u32>| f.map(|f| format!("{f}/1"));
        // (registered name, kind, format, width, height, rate, ends in jpegenc)
        let (name, kind, format, (w, h, rate), jpeg) = match &hook.value {
            Hook::Rust(r) => {
                options = r.options.clone();
                (
                    r.name.get_ref().clone(),
                    "rust",
                    r.format.get_ref().clone(),
                    (r.width, r.height, fps(r.fps)),
                    false,
                )
            }
            Hook::Process(p) => {
                options.insert("command".into(), serde_json::json!(p.command.get_ref()));
                (
                    p.command.get_ref().last().cloned().unwrap_or_default(),
                    "process",
                    p.format.get_ref().clone(),
                    (p.width, p.height, fps(p.fps)),
                    false,
                )
            }
            Hook::Socket(sock) => {
                options.insert("listen".into(), sock.listen.get_ref().clone().into());
                (
                    sock.listen.get_ref().clone(),
                    "socket",
                    sock.format.get_ref().clone(),
                    (sock.width, sock.height, fps(sock.fps)),
                    false,
                )
            }
            Hook::Motion(m) => {
                if let Some(t) = m.threshold {
                    options.insert("threshold".into(), t.into());
                }
                // Small and few frames are plenty to see movement.
                (
                    "motion".to_string(),
                    "rust",
                    "GRAY8".to_string(),
                    (
                        m.width.or(Some(160)),
                        m.height.or(Some(120)),
                        Some(format!("{}/1", m.fps.unwrap_or(10))),
                    ),
                    false,
                )
            }
            Hook::Stats(st) => {
                if let Some(every) = st.every {
                    options.insert("every".into(), every.into());
                }
                (
                    "stats".to_string(),
                    "rust",
                    "RGB".to_string(),
                    (st.width, st.height, fps(st.fps)),
                    false,
                )
            }
            Hook::Snapshot(sn) => {
                options.insert("path".into(), sn.path.replace("{name}", name).into());
                // One frame per `every`: framerate 1000/ms.
                let ms = sn.every.as_millis().max(1);
                (
                    "snapshot".to_string(),
                    "snapshot",
                    "I420".to_string(),
                    (sn.width, sn.height, Some(format!("1000/{ms}"))),
                    true,
                )
            }
        };
        if hook.value.shared_memory() {
            options.insert("transport".into(), "shm".into());
        }
        let budget = match &hook.value {
            Hook::Rust(r) if hook.value.transform().is_some() => Some(r.budget),
            Hook::Process(p) if hook.value.transform().is_some() => Some(p.budget),
            _ => None,
        };
        // Observe hooks only: a transform gets the format it asks for on the path.
        let convert = match budget {
            None => crate::hooks::convert::Wanted::for_format(&format),
            Some(_) => None,
        };
        if budget.is_some() {
            // validate() has made sure a transform has no size or rate of its own.
            if planned.path.is_empty() {
                planned.path.push_str(
                    " ! queue name=transform_queue max-size-buffers=3 max-size-bytes=0 max-size-time=0",
                );
            }
            planned.path.push_str(&format!(
                " ! videoconvert ! video/x-raw,format={format} ! identity name=hook_t{i} silent=true"
            ));
        } else {
            // Every element is named hook…: errors from this branch are the hook's, not the
            // pipeline's (see hooks::from_hook_branch).
            let mut chain = format!(
                "video_raw. ! queue name={element}_queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! videoconvert name={element}_convert"
            );
            if w.is_some() || h.is_some() {
                chain.push_str(&format!(" ! videoscale name={element}_scale"));
            }
            if rate.is_some() {
                chain.push_str(&format!(" ! videorate name={element}_rate"));
            }
            // RGB, BGR and GRAY8 are made from I420 in the hook's own thread, only for the
            // frames it takes (hooks::convert); the branch itself only scales and re-times.
            let delivered = if convert.is_some() {
                "I420"
            } else {
                format.as_str()
            };
            let mut caps = format!("video/x-raw,format={delivered}");
            if let Some(w) = w {
                caps.push_str(&format!(",width={w}"));
            }
            if let Some(h) = h {
                caps.push_str(&format!(",height={h}"));
            }
            if let Some(r) = &rate {
                caps.push_str(&format!(",framerate={r}"));
            }
            chain.push_str(&format!(
                " ! capsfilter name={element}_caps caps={}",
                quote(&caps)
            ));
            if jpeg {
                chain.push_str(&format!(" ! jpegenc name={element}_jpeg"));
            }
            chain.push_str(&format!(
                " ! appsink name={element} sync=false max-buffers=1 drop=true"
            ));
            planned.branches.push(chain);
        }
        planned.taps.push(HookTap {
            element: if budget.is_some() {
                format!("hook_t{i}")
            } else {
                element
            },
            name,
            kind: kind.to_string(),
            options,
            budget,
            convert,
        });
    }
    planned
}

/// Hooks on a stream that is kept as it arrives (ingest, passthrough): a decoder of their
/// own behind a leaky queue (2 s), so decoding never holds up the recording; if it cannot keep
/// up, the hooks see gaps until the next keyframe. Only observe hooks (validate() checks).
fn plan_decoded_hooks(
    s: &crate::description::Structured,
    name: &str,
    chains: &mut Vec<String>,
) -> Vec<HookTap> {
    if s.hooks.is_empty() {
        return Vec::new();
    }
    chains.push(
        "video_enc. ! queue name=hooks_decode_queue leaky=downstream max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! decodebin name=hooks_decode ! videoconvert name=hooks_decode_convert ! tee name=video_raw allow-not-linked=true".into(),
    );
    let hooks = plan_hooks(s, name);
    chains.extend(hooks.branches);
    hooks.taps
}

/// What the outputs of a structured description add to a plan.
struct PlannedOutputs {
    summaries: Vec<String>,
    file_sinks: Vec<(String, String)>,
    webrtc: Vec<WebRtcTap>,
    tcp: Vec<TcpTap>,
    records: Vec<RecordTap>,
}

/// The output branches: each reads the `video_enc` (and `audio_<codec>`) tee behind its own
/// leaky queue (3 s), so a stalled output drops its own data.
fn plan_outputs(
    desc: &Description,
    s: &crate::description::Structured,
    codec: VideoCodec,
    want_audio: bool,
    audio_as_is: Option<AudioCodec>,
    chains: &mut Vec<String>,
) -> PlannedOutputs {
    const BRANCH_QUEUE: &str =
        "leaky=downstream max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0";
    let mut file_sinks = Vec::new();
    let mut outputs = Vec::new();
    let mut webrtc = Vec::new();
    let mut tcp = Vec::new();
    let mut records = Vec::new();
    let published = matches!(s.source.value, crate::description::Source::WebRtc(_));
    for (i, out) in s.outputs.iter().enumerate() {
        let container = out.value.container();
        // Passthrough keeps the arriving audio codec; otherwise each container gets its own.
        let audio_codec = audio_as_is.unwrap_or_else(|| container.audio_codec());
        let video_queue = format!("video_enc. ! queue name=out{i}_video_queue {BRANCH_QUEUE}");
        let audio_queue = format!(
            "audio_{}. ! queue name=out{i}_audio_queue {BRANCH_QUEUE}",
            audio_codec.name()
        );
        outputs.push(out.value.summary());
        if let Output::Record(r) = &out.value {
            // The first segment's muxer and sink; the writer (record::writer, wired by build())
            // names the files, cuts segments on keyframes it asks for and finalizes them beside
            // the running stream. The file sink writes unbuffered: muxed data reaches the
            // kernel at once.
            let tap = RecordTap {
                muxer: format!("out{i}_mux"),
                sink: format!("out{i}_sink"),
                container,
                segment: r.segment,
                retention: Retention {
                    max_age: r.max_age,
                    max_total_size: r.max_total_size,
                },
            };
            // The writer links segments' muxers at run time: the formats they take are fixed
            // here, so the parsers negotiate them before any muxer is linked.
            let parse = match codec {
                VideoCodec::H264 => {
                    "h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au ! "
                }
                _ => video_parser(codec),
            };
            chains.push(format!(
                "{video_queue} ! {parse}{} name={} ! filesink name={} async=false buffer-mode=unbuffered",
                tap.muxer(),
                tap.muxer,
                tap.sink,
            ));
            if want_audio {
                let parser = match audio_codec {
                    AudioCodec::Aac => "aacparse ! audio/mpeg,stream-format=raw",
                    AudioCodec::Opus => "opusparse",
                };
                chains.push(format!("{audio_queue} ! {parser} ! {}.", tap.muxer));
            }
            records.push(tap);
            continue;
        }
        if let Output::WebRtc(w) = &out.value {
            // Encoded once, handed to per-viewer pipelines by appsink → StreamProducer.
            let parse = match codec {
                VideoCodec::H264 => {
                    " ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"
                }
                _ => "",
            };
            // sync=false: frames go to viewers the moment they are encoded (the source paces
            // them), not held until the pipeline's reported latency has passed.
            // async=false: nothing waits for them to preroll (a publisher's pipeline plays as
            // soon as its first media arrives, whichever branch it reaches first).
            chains.push(format!(
                "{video_queue}{parse} ! appsink name=out{i}_video sync=false async=false"
            ));
            if want_audio {
                chains.push(format!(
                    "{audio_queue} ! appsink name=out{i}_audio sync=false async=false"
                ));
            }
            webrtc.push(WebRtcTap {
                index: i,
                video_sink: format!("out{i}_video"),
                audio_sink: want_audio.then(|| format!("out{i}_audio")),
                codec,
                signalling_url: w.signalling_url.as_ref().map(|u| u.get_ref().clone()),
                max_viewers: w.max_viewers,
                hook_events: w.hook_events,
            });
            continue;
        }
        if let (Output::Tcp(t), true) = (&out.value, published) {
            // A published stream lives only while its publisher does: a reader of the hub
            // serves it, outside the publisher's pipeline, while there is one.
            chains.push(format!(
                "{video_queue} ! appsink name=out{i}_video sync=false async=false"
            ));
            if want_audio {
                chains.push(format!(
                    "{audio_queue} ! appsink name=out{i}_audio sync=false async=false"
                ));
            }
            tcp.push(TcpTap {
                index: i,
                video_sink: format!("out{i}_video"),
                audio_sink: want_audio.then(|| format!("out{i}_audio")),
                host: t.host.clone(),
                port: t.port,
            });
            continue;
        }
        let mux = format!("out{i}_mux");
        let muxer = match container {
            Container::MpegTs => "mpegtsmux",
            Container::Mp4 => "mp4mux",
            Container::Matroska | Container::WebRtc => "matroskamux",
            Container::WebM => "webmmux",
        };
        let sink = match &out.value {
            Output::Tcp(t) => format!(
                "tcpserversink name=out{i}_sink host={} port={} sync-method=next-keyframe recover-policy=keyframe unit-format=time units-soft-max=2000000000 units-max=5000000000",
                quote(&t.host),
                t.port
            ),
            Output::File(f) => {
                let template = f.path.get_ref().replace("{name}", &desc.name);
                file_sinks.push((format!("out{i}_sink"), template.clone()));
                format!("filesink name=out{i}_sink location={}", quote(&template))
            }
            Output::WebRtc(_) | Output::Record(_) => {
                unreachable!("webrtc and record outputs are handled above")
            }
        };
        chains.push(format!(
            "{video_queue} ! {}{muxer} name={mux} ! {sink}",
            video_parser(codec)
        ));
        if want_audio {
            let parser = match audio_codec {
                AudioCodec::Aac => "aacparse",
                AudioCodec::Opus => "opusparse",
            };
            chains.push(format!("{audio_queue} ! {parser} ! {mux}."));
        }
    }

    PlannedOutputs {
        summaries: outputs,
        file_sinks,
        webrtc,
        tcp,
        records,
    }
}

/// A pull source recorded as it arrives: decodebin stopped at the encoded streams, the declared
/// codecs' parsers at the branch heads, no decoders or encoders.
fn plan_passthrough(
    desc: &Description,
    s: &crate::description::Structured,
    p: crate::description::Passthrough,
) -> Result<Plan, Diagnostic> {
    // decodebin's `caps`: stop at any encoded stream (after demuxing, depayloading and parsing)
    // instead of decoding; one pad per stream, whatever the transport. Every encoded format is
    // listed so a stream that is not the declared codec arrives as what it is and is reported.
    const ENCODED: &str = "video/x-h264;video/x-h265;video/x-vp8;video/x-vp9;video/x-av1;video/mpeg;image/jpeg;audio/mpeg;audio/x-opus;audio/x-ac3;audio/x-eac3;audio/x-vorbis;audio/x-flac;audio/x-alaw;audio/x-mulaw";
    let caps = quote(ENCODED);
    let src = match &s.source.value {
        Source::Tcp(t) => format!(
            "tcpclientsrc name=source host={} port={} timeout=10 ! decodebin name=decode caps={caps}",
            quote(&t.host),
            t.port
        ),
        Source::Uri(u) => format!(
            "uridecodebin name=decode uri={} caps={caps}",
            quote(u.uri.get_ref())
        ),
        _ => unreachable!("only pull sources pass through"),
    };
    // WebRTC viewers get frames as they come (their appsinks do not sync): a file or HTTP
    // stream is played at its own pace for them, as a decoded one would be.
    let pace = match &s.source.value {
        Source::Uri(u)
            if !is_live_uri(u.uri.get_ref())
                && s.outputs
                    .iter()
                    .any(|o| matches!(o.value, Output::WebRtc(_))) =>
        {
            " ! clocksync"
        }
        _ => "",
    };
    let mut chains = vec![
        src,
        format!(
            "queue name=video_in{pace} ! {}tee name=video_enc allow-not-linked=true",
            video_parser(p.codec)
        ),
    ];
    if let Some(a) = p.audio {
        let parser = match a {
            AudioCodec::Aac => "aacparse",
            AudioCodec::Opus => "opusparse",
        };
        chains.push(format!(
            "queue name=audio_in{pace} ! {parser} ! tee name=audio_{} allow-not-linked=true",
            a.name()
        ));
    }
    let outs = plan_outputs(desc, s, p.codec, p.audio.is_some(), p.audio, &mut chains);
    let hooks = plan_decoded_hooks(s, &desc.name, &mut chains);
    let launch = chains.join("  ");
    check_elements(desc, &launch)?;
    Ok(Plan {
        name: desc.name.clone(),
        launch,
        chosen: vec![(
            "passthrough",
            format!("{} kept as it arrives", p.codec.name()),
        )],
        source: s.source.value.summary(),
        outputs: outs.summaries,
        looping: false,
        decode: Some(DecodeLinks {
            element: "decode".into(),
            video_head: "video_in".into(),
            audio_head: p.audio.map(|_| "audio_in".into()),
            expect_video: Some(p.codec.caps_name()),
            expect_audio: p.audio.map(|a| match a {
                AudioCodec::Aac => "audio/mpeg",
                AudioCodec::Opus => "audio/x-opus",
            }),
        }),
        file_sinks: outs.file_sinks,
        webrtc: outs.webrtc,
        tcp: outs.tcp,
        records: outs.records,
        ingest: None,
        hooks,
        stall: {
            let (live, named) = source_liveness(&s.source.value);
            stall_watch(desc, live, Some("video_in"), Some(named))
        },
    })
}

/// A webrtc-source (ingest) pipeline: whatever a publisher sends is depayloaded into
/// `video_in` / `audio_in` by its session; from there on it is an ordinary plan of outputs,
/// without encoders (the publisher's codec is kept).
fn plan_ingest(
    desc: &Description,
    w: &crate::description::WebRtcSource,
) -> Result<Plan, Diagnostic> {
    let Form::Structured(s) = &desc.form else {
        unreachable!("plan_ingest is only called for the structured form")
    };
    let mut chains = vec![format!(
        "queue name=video_in ! {}tee name=video_enc allow-not-linked=true",
        video_parser(w.codec)
    )];
    if w.audio {
        chains.push(
            "queue name=audio_in ! opusparse ! tee name=audio_opus allow-not-linked=true".into(),
        );
    }
    let outs = plan_outputs(
        desc,
        s,
        w.codec,
        w.audio,
        Some(AudioCodec::Opus),
        &mut chains,
    );
    let hooks = plan_decoded_hooks(s, &desc.name, &mut chains);
    let launch = chains.join("  ");
    check_elements(desc, &launch)?;
    Ok(Plan {
        name: desc.name.clone(),
        launch,
        chosen: Vec::new(),
        source: s.source.value.summary(),
        outputs: outs.summaries,
        looping: false,
        decode: None,
        file_sinks: outs.file_sinks,
        webrtc: outs.webrtc,
        tcp: outs.tcp,
        records: outs.records,
        hooks,
        // A publisher that goes silent ends its session (the peer timeout).
        stall: None,
        ingest: Some(IngestTap {
            codec: w.codec,
            audio: w.audio,
        }),
    })
}

impl DecodeLinks {
    /// The decodebin named `decode` feeding `video_in`; `audio_in` is added when audio is kept.
    fn video_only() -> DecodeLinks {
        DecodeLinks {
            element: "decode".into(),
            video_head: "video_in".into(),
            audio_head: None,
            expect_video: None,
            expect_audio: None,
        }
    }
}

/// Names every element of the assembled line that is not installed, with its Debian package.
fn check_elements(desc: &Description, launch: &str) -> Result<(), Diagnostic> {
    let mut ctx = gst::ParseContext::new();
    if let Err(e) = gst::parse::launch_full(launch, Some(&mut ctx), gst::ParseFlags::FATAL_ERRORS) {
        let missing = ctx.missing_elements();
        let msg = match missing.first() {
            Some(name) => elements::explain_missing(name),
            None => format!("the assembled pipeline does not parse: {}", e.message()),
        };
        return Err(desc.diagnostic(None, msg));
    }
    Ok(())
}

fn video_parser(codec: VideoCodec) -> &'static str {
    match codec {
        // config-interval=-1: SPS/PPS before every keyframe, so TCP clients can join anywhere.
        VideoCodec::H264 => "h264parse config-interval=-1 ! ",
        VideoCodec::Av1 => "av1parse ! ",
        VideoCodec::Vp8 | VideoCodec::Vp9 => "",
    }
}

fn audio_encoder(codec: AudioCodec, kbps: u32) -> Result<String, String> {
    let bps = u64::from(kbps) * 1000;
    let candidates: &[&str] = match codec {
        AudioCodec::Aac => &["avenc_aac", "fdkaacenc", "voaacenc", "faac"],
        AudioCodec::Opus => &["opusenc"],
    };
    let Some(found) = candidates.iter().find(|f| elements::is_installed(f)) else {
        return Err(format!(
            "no {} audio encoder is installed: {}",
            codec.name().to_uppercase(),
            elements::explain_missing(candidates[0])
        ));
    };
    Ok(format!("{found} bitrate={bps}"))
}

/// `media,width=..,height=..,framerate=../1` with only the fields that are set.
fn raw_caps(media: &str, w: Option<u32>, h: Option<u32>, fps: Option<u32>) -> String {
    let mut caps = media.to_string();
    if let Some(w) = w {
        caps.push_str(&format!(",width={w}"));
    }
    if let Some(h) = h {
        caps.push_str(&format!(",height={h}"));
    }
    if let Some(f) = fps {
        caps.push_str(&format!(",framerate={f}/1"));
    }
    caps
}

/// The scheme of `scheme://...`, when `uri` has that shape (RFC 3986 §3.1 characters).
fn uri_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

fn is_live_uri(uri: &str) -> bool {
    let scheme = uri_scheme(uri).map(|s| s.to_ascii_lowercase());
    matches!(
        scheme.as_deref(),
        Some("rtsp" | "rtsps" | "rtspt" | "rtmp" | "srt" | "udp" | "rtp")
    )
}

/// The v4l2 part of a camera pipeline and a sentence saying what was negotiated.
fn camera_chain(
    desc: &Description,
    cam: &CameraSource,
    table_span: &std::ops::Range<usize>,
    w: Option<u32>,
    h: Option<u32>,
    fps: Option<u32>,
) -> Result<(String, String), Diagnostic> {
    let device = cam.device.get_ref();
    let span = if cam.device.span().is_empty() {
        table_span.clone()
    } else {
        cam.device.span()
    };
    let err = |m: String| desc.diagnostic(Some(span.clone()), m);
    if !device.starts_with("/dev/") || device.split('/').any(|part| part == "..") {
        return Err(err(format!(
            "camera device `{device}` is not under /dev (a camera is a device such as /dev/video0)"
        )));
    }
    if !Path::new(device).exists() {
        return Err(err(format!(
            "camera device `{device}` does not exist (no camera connected? `ls /dev/video*` lists cameras; set `device` to use another)"
        )));
    }
    {
        use std::os::unix::fs::FileTypeExt;
        // Through any symlink (/dev/v4l/by-id/...): it must end at a character device.
        let is_device = std::fs::metadata(device).is_ok_and(|m| m.file_type().is_char_device());
        if !is_device {
            return Err(err(format!(
                "camera device `{device}` is not a device (a camera is a character device such as /dev/video0)"
            )));
        }
    }
    let format = match cam.format {
        CameraFormat::Auto => probe_camera(device, w, h, fps).map_err(&err)?,
        f => f,
    };
    let size = match (w, h, fps) {
        (Some(w), Some(h), Some(f)) => format!(" {w}x{h}@{f}"),
        (Some(w), Some(h), None) => format!(" {w}x{h}"),
        _ => String::new(),
    };
    let src = format!("v4l2src name=source device={}", quote(device));
    Ok(match format {
        CameraFormat::Auto | CameraFormat::Raw => (
            format!("{src} ! {}", raw_caps("video/x-raw", w, h, fps)),
            format!("raw{size}"),
        ),
        CameraFormat::Mjpeg => (
            format!("{src} ! {} ! jpegdec", raw_caps("image/jpeg", w, h, fps)),
            format!("MJPEG{size}, decoded by jpegdec"),
        ),
        CameraFormat::H264 => (
            format!(
                "{src} ! {} ! h264parse ! avdec_h264",
                raw_caps("video/x-h264", w, h, fps)
            ),
            format!("H.264{size}, decoded by avdec_h264"),
        ),
    })
}

/// Opens the camera and picks raw, else MJPEG, else H.264 at the requested size and rate.
fn probe_camera(
    device: &str,
    w: Option<u32>,
    h: Option<u32>,
    fps: Option<u32>,
) -> Result<CameraFormat, String> {
    let src = gst::ElementFactory::make("v4l2src")
        .property("device", device)
        .build()
        .map_err(|_| elements::explain_missing("v4l2src"))?;
    if src.set_state(gst::State::Ready).is_err() {
        let _ = src.set_state(gst::State::Null);
        return Err(format!(
            "cannot open camera `{device}` (busy, not a capture device, or no permission)"
        ));
    }
    let offered = src
        .static_pad("src")
        .map(|p| p.query_caps(None))
        .unwrap_or_else(gst::Caps::new_empty);
    let _ = src.set_state(gst::State::Null);
    for (media, format) in [
        ("video/x-raw", CameraFormat::Raw),
        ("image/jpeg", CameraFormat::Mjpeg),
        ("video/x-h264", CameraFormat::H264),
    ] {
        let Ok(wanted) = raw_caps(media, w, h, fps).parse::<gst::Caps>() else {
            continue;
        };
        if offered.can_intersect(&wanted) {
            return Ok(format);
        }
    }
    Err(format!(
        "camera `{device}` offers neither raw, MJPEG nor H.264 at the requested size/rate; it offers: {offered}"
    ))
}

/// Quotes a property value for a launch line when it needs it.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@%+-".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

impl Plan {
    /// Parses the launch line into a pipeline named after the description and wires its dynamic
    /// parts. The pipeline is returned in the NULL state. Record outputs write into
    /// `recordings`.
    pub fn build(&self, recordings: &Arc<Recordings>) -> Result<gst::Pipeline, String> {
        let element = gst::parse::launch_full(&self.launch, None, gst::ParseFlags::FATAL_ERRORS)
            .map_err(|e| format!("cannot build the pipeline: {}", e.message()))?;
        let pipeline = match element.downcast::<gst::Pipeline>() {
            Ok(p) => p,
            Err(element) => {
                // A one-element launch line gives the element itself.
                let p = gst::Pipeline::new();
                p.add(&element).map_err(|e| e.to_string())?;
                p
            }
        };
        pipeline.set_property("name", &self.name);

        let started = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        for (sink, template) in &self.file_sinks {
            let path = template.replace("{time}", &started);
            if let Some(dir) = Path::new(&path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
            }
            if let Some(el) = pipeline.by_name(sink) {
                el.set_property("location", &path);
            }
        }
        if let Some(links) = &self.decode {
            wire_decode(&pipeline, links)?;
        }
        for tap in &self.records {
            self.wire_record(&pipeline, tap, recordings)?;
        }
        Ok(pipeline)
    }
}

impl Plan {
    /// Hands a record output to its segment writer, which names each segment after its UTC
    /// start time and keeps the pipeline's recordings within their retention limits.
    fn wire_record(
        &self,
        pipeline: &gst::Pipeline,
        tap: &RecordTap,
        recordings: &Arc<Recordings>,
    ) -> Result<(), String> {
        let dir = recordings.dir().join(&self.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        recordings.set_retention(&self.name, tap.retention);
        let spec = crate::record::writer::WriterSpec {
            pipeline: self.name.clone(),
            muxer: tap.muxer.clone(),
            sink: tap.sink.clone(),
            extension: tap.extension(),
            segment: tap.segment,
        };
        crate::record::writer::attach(pipeline, spec, recordings)
    }

    /// How many outputs report their own end after EOS: a [`crate::record::writer::FINISHED_MESSAGE`]
    /// per record output, an EOS at the file sink of each file output.
    pub fn finalizing_outputs(&self) -> usize {
        self.records.len() + self.file_sinks.len()
    }

    /// The file sinks of file outputs, by element name.
    pub fn file_sink_names(&self) -> impl Iterator<Item = &str> {
        self.file_sinks.iter().map(|(name, _)| name.as_str())
    }

    /// Ends the stream so that every sink drains and finalizes. Sources behind a decodebin are
    /// often read in pull mode by a demuxer, which ignores EOS sent to the source element, so
    /// there EOS goes into the decoded branches instead.
    pub fn send_eos(&self, pipeline: &gst::Pipeline) {
        if let Some(ingest) = &self.ingest {
            // The publisher's branches end here; EOS into them drains every output.
            let heads = ["video_in"]
                .into_iter()
                .chain(ingest.audio.then_some("audio_in"));
            for head in heads {
                if let Some(pad) = pipeline.by_name(head).and_then(|e| e.static_pad("sink")) {
                    pad.send_event(gst::event::Eos::new());
                }
            }
            return;
        }
        let Some(links) = &self.decode else {
            pipeline.send_event(gst::event::Eos::new());
            return;
        };
        let heads = [Some(&links.video_head), links.audio_head.as_ref()];
        for head in heads.into_iter().flatten() {
            if let Some(pad) = pipeline.by_name(head).and_then(|e| e.static_pad("sink")) {
                pad.send_event(gst::event::Eos::new());
            }
        }
    }
}

/// Links decodebin's video/audio pads to the branch heads as they appear; at no-more-pads,
/// ends (EOS) any branch that got no stream, so muxers do not wait for it forever.
fn wire_decode(pipeline: &gst::Pipeline, links: &DecodeLinks) -> Result<(), String> {
    let decode = pipeline
        .by_name(&links.element)
        .ok_or("the assembled pipeline has no decoder")?;
    let head = |name: &str| pipeline.by_name(name).and_then(|e| e.static_pad("sink"));
    let video = head(&links.video_head);
    let audio = links.audio_head.as_deref().and_then(head);
    let (v, a) = (video.clone(), audio.clone());
    let (expect_video, expect_audio) = (links.expect_video, links.expect_audio);
    decode.connect_pad_added(move |element, pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(media) = caps.structure(0).map(|s| s.name().to_string()) else {
            return;
        };
        let is_video = media.starts_with("video/") || media.starts_with("image/");
        let (expected, key) = if is_video {
            (expect_video, "codec")
        } else {
            (expect_audio, "audio_codec")
        };
        if let Some(expected) = expected.filter(|e| media != *e) {
            // End the refused branch: muxers would otherwise hold the
            // other stream waiting for it, and the pipeline could not even be stopped.
            let head = if is_video { v.as_ref() } else { a.as_ref() };
            if let Some(head) = head.filter(|h| !h.is_linked()) {
                head.send_event(gst::event::Eos::new());
            }
            let what = if is_video { "video" } else { "audio" };
            element.post_error_message(gst::error_msg!(
                gst::StreamError::Format,
                [
                    "the stream's {} is {}, not {}: set `{}` in [source] (or passthrough = false to re-encode)",
                    what,
                    media,
                    expected,
                    key
                ]
            ));
            return;
        }
        let target = if media.starts_with("video/") {
            v.as_ref()
        } else if media.starts_with("audio/") {
            a.as_ref()
        } else {
            None
        };
        if let Some(target) = target.filter(|t| !t.is_linked())
            && let Err(e) = pad.link(target) {
                tracing::warn!("cannot link decoded {media} stream: {e:?}");
            }
    });
    decode.connect_no_more_pads(move |_| {
        for head in [video.as_ref(), audio.as_ref()].into_iter().flatten() {
            if !head.is_linked() {
                head.send_event(gst::event::Eos::new());
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("/tmp/a.mkv"), "/tmp/a.mkv");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("x\"y"), "\"x\\\"y\"");
    }
}
