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
mod source;

pub use encoder::EncoderChoice;
pub use jpeg_tcp::{JpegDecoder, JpegInTap, JpegOutTap};
pub use ladder::LadderRung;

use camera::camera_chain;
use hooks::{plan_decoded_hooks, plan_hooks};
use outputs::plan_outputs;
use source::{DecodeLinks, RawSource, is_live_uri, raw_caps, raw_source, source_liveness};

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
    let framerate = source.video_size().2;

    // 1. Raw video (and audio) from the source, ending in tees `video_raw` / `audio_raw`.
    let RawSource {
        mut video,
        mut chains,
        decode,
        looping,
        want_audio,
    } = raw_source(desc, s, &mut chosen)?;
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
    if want_audio {
        plan_audio_encoders(s, &mut chosen, &mut chains).map_err(&source_err)?;
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

/// One audio encoder per codec the outputs need, each fanned out by a tee `audio_CODEC`.
fn plan_audio_encoders(
    s: &crate::description::Structured,
    chosen: &mut Vec<(&'static str, String)>,
    chains: &mut Vec<String>,
) -> Result<(), String> {
    let mut audio_codecs: Vec<AudioCodec> = Vec::new();
    for out in &s.outputs {
        let c = out.value.container().audio_codec();
        if !audio_codecs.contains(&c) {
            audio_codecs.push(c);
        }
    }
    for codec in &audio_codecs {
        let enc = audio_encoder(*codec, s.encode.audio_bitrate)?;
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
    Ok(())
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
