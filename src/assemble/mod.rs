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

mod build;
mod camera;
mod encoder;
mod hooks;
mod jpeg_tcp;
mod ladder;
mod outputs;

pub use encoder::EncoderChoice;
pub use jpeg_tcp::{JpegDecoder, JpegInTap, JpegOutTap};
pub use ladder::LadderRung;

use camera::camera_chain;
use hooks::{plan_decoded_hooks, plan_hooks};
use outputs::plan_outputs;

use crate::description::{
    AudioCodec, CameraFormat, CameraSource, Container, Description, Diagnostic, Form, Output,
    Source, VideoCodec, elements,
};
use crate::hooks::HookTap;
use crate::record::Retention;
use gst::prelude::*;
use std::path::Path;

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
    /// File outputs, written by readers of the stream hub.
    pub files: Vec<FileTap>,
    /// WebRTC outputs: where their encoded streams leave the pipeline.
    pub webrtc: Vec<WebRtcTap>,
    /// TCP outputs served by readers of the stream hub (a published stream's), not by a
    /// branch of the pipeline.
    pub tcp: Vec<TcpTap>,
    /// RTSP outputs, mounts of the embedded RTSP server (readers of the stream hub).
    pub rtsp: Vec<StreamTap>,
    /// HLS outputs, written by readers of the stream hub and served over HTTP.
    pub hls: Vec<HlsTap>,
    /// WHIP outputs: sessions publishing the stream to other servers.
    pub whip: Vec<WhipTap>,
    /// A whep source: where the ingest's stream is pulled from (instead of published to it).
    pub pull: Option<WhepPull>,
    /// Record outputs, written by readers of the stream hub.
    pub records: Vec<RecordTap>,
    /// Set for webrtc-source pipelines: built per publisher, fed at `video_in` / `audio_in`.
    pub ingest: Option<IngestTap>,
    /// Frame hooks: their appsinks and what runs on them.
    pub hooks: Vec<HookTap>,
    /// Hooks of a stream kept as it arrives: where it leaves the pipeline for the reader that
    /// decodes it for them (the hooks' appsinks are in that reader's pipeline).
    pub hook_decoder: Option<HookDecoder>,
    /// The buffer-flow watchdog, when the source has one.
    pub stall: Option<StallWatch>,
    /// A jpeg-tcp source: where its senders' frames enter.
    pub jpeg_in: Option<jpeg_tcp::JpegInTap>,
    /// jpeg-tcp outputs: where their frames leave, and the receivers they go to.
    pub jpeg_out: Vec<jpeg_tcp::JpegOutTap>,
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
        // Frames come when a sender sends them; a silent sender is not a stalled pipeline.
        Source::JpegTcp(_) => (false, jpeg_tcp::APPSRC),
        Source::Uri(u) => (is_live_uri(u.uri.get_ref()), "decode"),
        Source::WebRtc(_) | Source::Room(_) | Source::Whep(_) => (false, "source"),
    }
}

/// What a webrtc-source pipeline accepts from publishers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IngestTap {
    pub codec: VideoCodec,
    pub audio: bool,
    /// A room: this many publishers at once, each a stream of its own (None: one publisher).
    pub room: Option<u32>,
}

/// The decoder of a stream's hooks, a reader of the hub: the appsink it reads and its launch
/// line (`appsrc name=video`, the decoder, then the hooks' branches).
#[derive(Debug, Clone, PartialEq)]
pub struct HookDecoder {
    pub video_sink: String,
    pub launch: String,
}

/// Where a whep source pulls its stream from.
#[derive(Debug, Clone, PartialEq)]
pub struct WhepPull {
    pub url: String,
    pub token: Option<String>,
}

/// A WHIP output: its stream (as WebRTC viewers take it) and where it is published.
#[derive(Debug, Clone, PartialEq)]
pub struct WhipTap {
    pub stream: StreamTap,
    pub url: String,
    pub token: Option<String>,
    pub ice_servers: Vec<String>,
}

/// An HLS output's stream and its segmenting.
#[derive(Debug, Clone, PartialEq)]
pub struct HlsTap {
    pub stream: StreamTap,
    pub segment: std::time::Duration,
    pub playlist_length: u32,
}

/// Where an output's encoded streams leave the pipeline for a reader of the stream hub.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamTap {
    /// The output's index in the description.
    pub index: usize,
    pub video_sink: String,
    /// The audio appsink and the codec it carries.
    pub audio_sink: Option<(String, AudioCodec)>,
    pub codec: VideoCodec,
}

impl StreamTap {
    /// A recorder's launch line: appsrcs `video` (and `audio`) into the muxer `out{index}_mux`
    /// and the file sink `out{index}_sink` (named as in the source's pipeline before readers):
    /// `video` is what comes before the muxer (parser, muxer), `audio` the audio parser.
    fn recorder_launch(
        &self,
        video: &str,
        sink: &str,
        audio: impl Fn(AudioCodec) -> &'static str,
    ) -> String {
        const APPSRC: &str = "appsrc format=time is-live=true";
        let i = self.index;
        let mut launch =
            format!("{APPSRC} name=video ! {video} name=out{i}_mux ! {sink} name=out{i}_sink");
        if let Some((_, codec)) = &self.audio_sink {
            let parser = audio(*codec);
            launch.push_str(&format!(" {APPSRC} name=audio ! {parser} ! out{i}_mux."));
        }
        launch
    }
}

/// A `file` output, written by a reader of the stream hub ([`crate::hub::record`]): where its
/// encoded streams leave the pipeline, and the file (`{time}` is replaced by each run's start).
#[derive(Debug, Clone, PartialEq)]
pub struct FileTap {
    pub stream: StreamTap,
    pub container: Container,
    pub path: String,
}

impl FileTap {
    /// The reader's launch line (its file sink's location is set per run).
    pub fn launch(&self) -> String {
        let muxer = match self.container {
            Container::MpegTs => "mpegtsmux",
            Container::Mp4 => "mp4mux",
            // (WebRTC, RTSP and HLS outputs are never files.)
            Container::Matroska
            | Container::WebRtc
            | Container::Rtsp
            | Container::Hls
            | Container::Jpeg => "matroskamux",
            Container::WebM => "webmmux",
        };
        let video = format!("{}{muxer}", video_parser(self.stream.codec));
        self.stream
            .recorder_launch(&video, "filesink", |codec| match codec {
                AudioCodec::Aac => "aacparse",
                AudioCodec::Opus => "opusparse",
            })
    }
}

/// A `record` output, written by a reader of the stream hub ([`crate::hub::record`]): where
/// its encoded streams leave the pipeline, and how its segments are cut and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordTap {
    pub stream: StreamTap,
    pub container: Container,
    pub segment: std::time::Duration,
    pub retention: Retention,
}

impl RecordTap {
    pub fn extension(&self) -> &'static str {
        match self.container {
            Container::Mp4 => "mp4",
            _ => "mkv",
        }
    }

    /// The reader's launch line, whose first segment's muxer and file sink the segment writer
    /// takes as the templates of every segment's. The writer links segments' muxers at run
    /// time: the formats they take are fixed here, so the parsers negotiate them before any
    /// muxer is linked. The file sink writes unbuffered: muxed data reaches the kernel at once.
    pub fn launch(&self) -> String {
        let parse = match self.stream.codec {
            VideoCodec::H264 => {
                "h264parse config-interval=-1 ! video/x-h264,stream-format=avc,alignment=au ! "
            }
            codec => video_parser(codec),
        };
        let video = format!("{parse}{}", self.muxer());
        let sink = "filesink async=false buffer-mode=unbuffered";
        self.stream
            .recorder_launch(&video, sink, |codec| match codec {
                AudioCodec::Aac => "aacparse ! audio/mpeg,stream-format=raw",
                AudioCodec::Opus => "opusparse",
            })
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
    /// The encoder ladder, top first (the top is `video_sink`); empty without one.
    pub ladder: Vec<LadderRung>,
}

/// A TCP output served from the stream hub: where its encoded streams leave the pipeline and
/// where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpTap {
    pub stream: StreamTap,
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
        files: Vec::new(),
        webrtc: Vec::new(),
        tcp: Vec::new(),
        rtsp: Vec::new(),
        hls: Vec::new(),
        whip: Vec::new(),
        pull: None,
        records: Vec::new(),
        ingest: None,
        hooks: Vec::new(),
        hook_decoder: None,
        stall: stall_watch(desc, false, None, None),
        jpeg_in: None,
        jpeg_out: Vec::new(),
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
        return plan_ingest(desc, w, None);
    }
    if let Source::Room(r) = source {
        return plan_ingest(desc, &r.publisher(), Some(r.max_participants));
    }
    if let Source::Whep(w) = source {
        let mut plan = plan_ingest(desc, &w.publisher(), None)?;
        plan.pull = Some(WhepPull {
            url: w.url.get_ref().clone(),
            token: w.token.clone(),
        });
        return Ok(plan);
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
        Source::WebRtc(_) | Source::Room(_) | Source::Whep(_) => {
            unreachable!("ingest sources are planned by plan_ingest")
        }
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
        Source::JpegTcp(j) => {
            want_audio = false;
            jpeg_tcp::chain(j, s.encode.codec, &size_caps)
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

    // 4. Outputs, and the ladder's smaller encodings for the webrtc outputs.
    let mut outs = plan_outputs(desc, s, s.encode.codec, want_audio, None, &mut chains);
    if let (Some(rungs), Some(_)) = (s.ladder(), &enc) {
        let framerate = framerate.unwrap_or(30);
        ladder::plan(&rungs, &mut outs.webrtc, &mut chains, profile, |bitrate| {
            let encode = crate::description::Encode {
                bitrate,
                ..s.encode.clone()
            };
            encoder::choose(&encode, framerate).map_err(&source_err)
        })?;
        chosen.push(("ladder", ladder::describe(&rungs)));
    }

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
        files: outs.files,
        webrtc: outs.webrtc,
        tcp: outs.tcp,
        rtsp: outs.rtsp,
        hls: outs.hls,
        whip: outs.whip,
        pull: None,
        records: outs.records,
        ingest: None,
        hooks: hooks.taps,
        hook_decoder: None,
        stall: {
            let (live, named) = source_liveness(source);
            stall_watch(desc, live, Some("video_raw"), Some(named))
        },
        jpeg_in: match source {
            Source::JpegTcp(j) => Some(jpeg_tcp::tap(j, s.encode.codec)),
            _ => None,
        },
        jpeg_out: outs.jpeg,
    })
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
    let (hooks, hook_decoder) = plan_decoded_hooks(s, &desc.name, &mut chains);
    let launch = chains.join("  ");
    check_elements(desc, &launch)?;
    if let Some(decoder) = &hook_decoder {
        check_elements(desc, &decoder.launch)?;
    }
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
        files: outs.files,
        webrtc: outs.webrtc,
        tcp: outs.tcp,
        rtsp: outs.rtsp,
        hls: outs.hls,
        whip: outs.whip,
        pull: None,
        records: outs.records,
        ingest: None,
        hooks,
        hook_decoder,
        stall: {
            let (live, named) = source_liveness(&s.source.value);
            stall_watch(desc, live, Some("video_in"), Some(named))
        },
        jpeg_in: None,
        jpeg_out: outs.jpeg,
    })
}

/// A webrtc-source (ingest) pipeline: whatever a publisher sends is depayloaded into
/// `video_in` / `audio_in` by its session; from there on it is an ordinary plan of outputs,
/// without encoders (the publisher's codec is kept).
fn plan_ingest(
    desc: &Description,
    w: &crate::description::WebRtcSource,
    room: Option<u32>,
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
    let (hooks, hook_decoder) = plan_decoded_hooks(s, &desc.name, &mut chains);
    let launch = chains.join("  ");
    check_elements(desc, &launch)?;
    if let Some(decoder) = &hook_decoder {
        check_elements(desc, &decoder.launch)?;
    }
    Ok(Plan {
        name: desc.name.clone(),
        launch,
        chosen: Vec::new(),
        source: s.source.value.summary(),
        outputs: outs.summaries,
        looping: false,
        decode: None,
        files: outs.files,
        webrtc: outs.webrtc,
        tcp: outs.tcp,
        rtsp: outs.rtsp,
        hls: outs.hls,
        whip: outs.whip,
        pull: None,
        records: outs.records,
        hooks,
        hook_decoder,
        // A publisher that goes silent ends its session (the peer timeout).
        stall: None,
        jpeg_in: None,
        jpeg_out: outs.jpeg,
        ingest: Some(IngestTap {
            codec: w.codec,
            audio: w.audio,
            room,
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

/// The launch text of an installed encoder of `codec` at `kbps`.
pub fn audio_encoder(codec: AudioCodec, kbps: u32) -> Result<String, String> {
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
