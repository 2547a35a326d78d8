//! The checks of a structured description that serde cannot express: ranges, combinations of
//! source and outputs, what a webrtc source can be relayed and recorded to.

use super::elements;
use super::hooks::*;
use super::outputs::*;
use super::types::*;
use std::ops::Range;
use std::time::Duration;

/// Where a semantic error points: a span, or a key of a top-level table (resolved against the
/// parsed file, so `bitrate = 5` is reported at `bitrate`, not at its table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Where {
    Span(Range<usize>),
    Key(&'static str, &'static str),
}

pub(super) fn validate(s: &super::Structured) -> Result<(), (Where, String)> {
    validate_source_video(s)?;
    validate_bitrates(s)?;
    for out in &s.outputs {
        if let Output::Whip(w) = &out.value {
            validate_whip(w)?;
        }
    }
    validate_ladder(s)?;
    for hook in &s.hooks {
        validate_hook(s, hook)?;
    }
    for out in &s.outputs {
        if let Output::JpegTcp(j) = &out.value {
            validate_jpeg_output(s, j, &out.span)?;
        }
    }
    validate_jpeg_source(s)?;
    if let Source::WebRtc(w) = &s.source.value {
        return validate_ingest(s, w);
    }
    if let Source::Whep(w) = &s.source.value {
        check_endpoint(&w.url, "WHEP")?;
        return validate_ingest(s, &w.publisher())
            .map_err(|(at, msg)| (at, msg.replace("webrtc source", "whep source")));
    }
    if let Source::Room(r) = &s.source.value {
        return validate_room(s, r);
    }
    if let Some(p) = s.passthrough() {
        return validate_passthrough(s, &p);
    }
    validate_encoder(s)?;
    validate_outputs(s)
}

/// The source's picture: size, framerate, a test source's frames and pattern.
fn validate_source_video(s: &super::Structured) -> Result<(), (Where, String)> {
    let (w, h, fps) = s.source.value.video_size();
    for (key, v, lo, hi) in [("width", w, 16, 7680), ("height", h, 16, 4320)] {
        if let Some(v) = v
            && (v < lo || v > hi || v % 2 != 0)
        {
            return Err((
                Where::Key("source", key),
                format!("{key} {v} is out of range: use an even number from {lo} to {hi}"),
            ));
        }
    }
    if let Some(f) = fps
        && !(1..=240).contains(&f)
    {
        return Err((
            Where::Key("source", "framerate"),
            format!("framerate {f} is out of range: use 1 to 240"),
        ));
    }
    if let Source::Test(t) = &s.source.value
        && t.frames.is_some_and(|n| n == 0 || n > i32::MAX as u64)
    {
        return Err((
            Where::Key("source", "frames"),
            format!("frames must be from 1 to {}", i32::MAX),
        ));
    }
    if let Source::Test(t) = &s.source.value
        && !videotestsrc_has_pattern(t.pattern.get_ref())
    {
        return Err((
            Where::Span(t.pattern.span()),
            format!(
                "unknown test pattern `{}` (try smpte, ball, snow, black, white, gamut, colors)",
                t.pattern.get_ref()
            ),
        ));
    }
    Ok(())
}

fn validate_bitrates(s: &super::Structured) -> Result<(), (Where, String)> {
    if !(16..=100_000).contains(&s.encode.bitrate) {
        return Err((
            Where::Key("encode", "bitrate"),
            format!(
                "bitrate {} kbit/s is out of range: use 16 to 100000",
                s.encode.bitrate
            ),
        ));
    }
    if !(8..=512).contains(&s.encode.audio_bitrate) {
        return Err((
            Where::Key("encode", "audio_bitrate"),
            format!(
                "audio_bitrate {} kbit/s is out of range: use 8 to 512",
                s.encode.audio_bitrate
            ),
        ));
    }
    Ok(())
}

/// A hook's format, command, transform and address.
fn validate_hook(
    s: &super::Structured,
    hook: &super::Located<Hook>,
) -> Result<(), (Where, String)> {
    let format = match &hook.value {
        Hook::Rust(r) => Some(&r.format),
        Hook::Socket(sock) => Some(&sock.format),
        Hook::Process(p) => {
            if p.command.get_ref().is_empty() {
                return Err((
                    Where::Span(p.command.span()),
                    "`command` needs a program, e.g. [\"python3\", \"scripts/examples/detect.py\"]"
                        .into(),
                ));
            }
            Some(&p.format)
        }
        _ => None,
    };
    if let Some(format) = format
        && !HOOK_FORMATS.contains(&format.get_ref().as_str())
    {
        return Err((
            Where::Span(format.span()),
            format!(
                "unknown hook format `{}`: use {}",
                format.get_ref(),
                HOOK_FORMATS.join(", ")
            ),
        ));
    }
    if let Some(mode) = hook.value.transform() {
        if s.kept_as_arrives() {
            return Err((
                Where::Span(mode.span()),
                "a transform changes the video the outputs carry, which needs re-encoding; this source's stream is kept as it arrives (webrtc, passthrough), so hooks here can only observe".into(),
            ));
        }
        let (w, h, fps, budget) = match &hook.value {
            Hook::Rust(r) => (r.width, r.height, r.fps, r.budget),
            Hook::Process(p) => (p.width, p.height, p.fps, p.budget),
            _ => (None, None, None, Duration::ZERO),
        };
        if budget < Duration::from_millis(1) || budget > Duration::from_secs(1) {
            return Err((
                Where::Span(hook.span.clone()),
                format!(
                    "budget {} is out of range: use 1ms to 1s (frames wait at most one frame interval anyway)",
                    humantime::format_duration(budget)
                ),
            ));
        }
        if w.is_some() || h.is_some() || fps.is_some() {
            return Err((
                Where::Span(hook.span.clone()),
                "a transform works on the video the outputs carry: drop width/height/fps (set them in [source])".into(),
            ));
        }
    }
    if let Hook::Socket(sock) = &hook.value {
        let listen = sock.listen.get_ref();
        let valid = match listen.strip_prefix("unix:") {
            Some(path) => !path.is_empty(),
            None => listen.parse::<std::net::SocketAddr>().is_ok(),
        };
        if !valid {
            return Err((
                Where::Span(sock.listen.span()),
                format!(
                    "`{listen}` is not an address to listen on: use HOST:PORT (e.g. \"127.0.0.1:7000\") or unix:PATH"
                ),
            ));
        }
        if let Some(t) = &sock.transport
            && *t.get_ref() == HookTransport::Shm
            && !listen.starts_with("unix:")
        {
            return Err((
                Where::Span(t.span()),
                "transport = \"shm\" shares memory with the reader: it needs listen = \"unix:PATH\" (a TCP reader may be on another machine)".into(),
            ));
        }
    }
    Ok(())
}

fn validate_jpeg_source(s: &super::Structured) -> Result<(), (Where, String)> {
    if let Source::JpegTcp(j) = &s.source.value {
        let listen = j.listen.get_ref();
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                Where::Span(j.listen.span()),
                format!(
                    "`{listen}` is not an address to listen on: use HOST:PORT (e.g. \"0.0.0.0:8485\")"
                ),
            ));
        }
        if !(1024..=(256 << 20)).contains(&j.max_frame_bytes) {
            return Err((
                Where::Key("source", "max_frame_bytes"),
                format!(
                    "max_frame_bytes {} is out of range: use 1024 to 268435456 (256 MiB)",
                    j.max_frame_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// A passthrough source's stream goes out as it arrives: only outputs that carry it.
fn validate_passthrough(s: &super::Structured, p: &Passthrough) -> Result<(), (Where, String)> {
    let (w, h, fps) = s.source.value.video_size();
    if w.is_some() || h.is_some() || fps.is_some() {
        return Err((
            Where::Span(s.source.span.clone()),
            "passthrough keeps the stream as it arrives: drop width/height/framerate or set passthrough = false".into(),
        ));
    }
    for out in &s.outputs {
        let container = out.value.container();
        if p.audio == Some(AudioCodec::Aac) && container == Container::WebRtc {
            return Err((
                Where::Span(out.span.clone()),
                "a passthrough source sends its AAC audio as it arrives, and WebRTC carries Opus only: set audio = false in [source] (video only), or passthrough = false to re-encode".into(),
            ));
        }
        if !container.carries(p.codec) || container == Container::WebM {
            return Err((
                Where::Span(out.span.clone()),
                format!(
                    "a passthrough source sends {} as it arrives, which this {} output cannot carry; set passthrough = false to re-encode",
                    p.codec.name(),
                    out.value.kind()
                ),
            ));
        }
    }
    Ok(())
}

/// A chosen encoder is installed and produces the codec.
fn validate_encoder(s: &super::Structured) -> Result<(), (Where, String)> {
    let codec = s.encode.codec;
    if let Some(enc) = &s.encode.encoder {
        let name = enc.get_ref();
        if !elements::is_installed(name) {
            return Err((Where::Span(enc.span()), elements::explain_missing(name)));
        }
        if let Some(produces) = elements::mismatched_output(name, codec.caps_name()) {
            return Err((
                Where::Span(enc.span()),
                format!(
                    "encoder `{name}` does not produce {} (it produces {produces}); pick a {} encoder or change codec",
                    codec.name(),
                    codec.name()
                ),
            ));
        }
    }
    Ok(())
}

/// What the outputs of an encoded stream need: a known container, distinct ports, the codec.
fn validate_outputs(s: &super::Structured) -> Result<(), (Where, String)> {
    let codec = s.encode.codec;
    let mut tcp_ports = std::collections::BTreeSet::new();
    for out in &s.outputs {
        if let Output::File(f) = &out.value
            && Container::from_path(f.path.get_ref()).is_none()
        {
            return Err((
                Where::Span(f.path.span()),
                format!(
                    "cannot tell the container of `{}`: end the path with .mkv, .webm, .mp4 or .ts",
                    f.path.get_ref()
                ),
            ));
        }
        if let Output::Record(r) = &out.value {
            if r.container().is_none() {
                return Err((
                    Where::Span(r.container.span()),
                    format!(
                        "unknown record container `{}`: use \"mkv\" or \"mp4\"",
                        r.container.get_ref()
                    ),
                ));
            }
            if r.segment < Duration::from_secs(1) {
                return Err((
                    Where::Span(out.span.clone()),
                    "segment must be at least 1s".into(),
                ));
            }
        }
        if let Output::Tcp(t) = &out.value
            && !tcp_ports.insert((t.host.clone(), t.port))
        {
            return Err((
                Where::Span(out.span.clone()),
                format!("two tcp outputs use {}:{}", t.host, t.port),
            ));
        }
        let container = out.value.container();
        if !container.carries(codec) {
            let fits: Vec<&str> = VideoCodec::ALL
                .iter()
                .filter(|c| container.carries(**c))
                .map(|c| c.name())
                .collect();
            return Err((
                Where::Span(out.span.clone()),
                format!(
                    "{} output cannot carry {} video ({} carries {}); set [encode] codec = \"{}\"",
                    out.value.kind(),
                    codec.name(),
                    container.name(),
                    fits.join(", "),
                    fits.first().copied().unwrap_or("h264"),
                ),
            ));
        }
    }
    Ok(())
}

/// A WHIP or WHEP endpoint is an HTTP(S) URL with a host.
fn check_endpoint(url: &serde_spanned::Spanned<String>, what: &str) -> Result<(), (Where, String)> {
    let text = url.get_ref();
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
        return Err((
            Where::Span(url.span()),
            format!(
                "`{}` is not a {what} endpoint: use http(s)://HOST[:PORT]/PATH",
                crate::redact::redact(text)
            ),
        ));
    }
    Ok(())
}

/// A WHIP endpoint is an HTTP(S) URL; ICE servers are STUN or TURN URLs as webrtcbin takes
/// them.
fn validate_whip(w: &WhipOutput) -> Result<(), (Where, String)> {
    check_endpoint(&w.url, "WHIP")?;
    for server in &w.ice_servers {
        let s = server.get_ref();
        if !["stun://", "turn://", "turns://"]
            .iter()
            .any(|p| s.starts_with(p) && s.len() > p.len())
        {
            return Err((
                Where::Span(server.span()),
                format!(
                    "`{}` is not an ICE server: use stun://HOST:PORT or turn(s)://USER:PASSWORD@HOST:PORT",
                    crate::redact::redact(s)
                ),
            ));
        }
    }
    Ok(())
}

/// A room is an ingest per participant: outputs that are one per participant (viewers,
/// recordings in a directory each), not one port or one file that all would share.
fn validate_room(s: &super::Structured, r: &RoomSource) -> Result<(), (Where, String)> {
    if r.max_participants == 0 || r.max_participants > 64 {
        return Err((
            Where::Key("source", "max_participants"),
            "max_participants must be between 1 and 64".into(),
        ));
    }
    for out in &s.outputs {
        if matches!(
            out.value,
            Output::Tcp(_) | Output::File(_) | Output::Rtsp(_) | Output::Hls(_) | Output::Whip(_)
        ) {
            return Err((
                Where::Span(out.span.clone()),
                format!(
                    "a room has a stream per participant: a {} output would be shared by all of them; use webrtc and record outputs",
                    out.value.kind()
                ),
            ));
        }
    }
    validate_ingest(s, &r.publisher())
        .map_err(|(at, msg)| (at, msg.replace("webrtc source", "room")))
}

/// An ingest keeps the publisher's codecs: only outputs that carry them without re-encoding.
fn validate_ingest(s: &super::Structured, w: &WebRtcSource) -> Result<(), (Where, String)> {
    if w.codec == VideoCodec::Av1 {
        return Err((
            Where::Key("source", "codec"),
            "a webrtc source accepts h264, vp8 or vp9 (GStreamer 1.22 has no AV1 depayloader)"
                .into(),
        ));
    }
    for out in &s.outputs {
        let container = out.value.container();
        // Relayed to WebRTC viewers as it arrives, or recorded as it arrives.
        let relayed = matches!(out.value, Output::WebRtc(_) | Output::Whip(_));
        if matches!(out.value, Output::JpegTcp(_)) {
            // Decoded for it by a reader of its own.
            continue;
        }
        if matches!(out.value, Output::Tcp(_) | Output::Rtsp(_) | Output::Hls(_)) {
            if w.codec == VideoCodec::H264 {
                continue;
            }
            return Err((
                Where::Span(out.span.clone()),
                format!(
                    "a {} output carries H.264 here: this webrtc source takes {} (set codec = \"h264\", or use a webrtc or record output)",
                    out.value.kind(),
                    w.codec.name()
                ),
            ));
        }
        let recorded = matches!(out.value, Output::Record(_) | Output::File(_))
            && matches!(container, Container::Matroska | Container::WebM)
            && container.carries(w.codec);
        if !relayed && !recorded {
            return Err((
                Where::Span(out.span.clone()),
                format!(
                    "a webrtc source is relayed and recorded as it arrives ({} video, Opus audio): use a webrtc output, a tcp output (H.264), a record output (container \"mkv\"), a .mkv/.webm file output or a jpeg-tcp output",
                    w.codec.name()
                ),
            ));
        }
    }
    Ok(())
}

fn videotestsrc_has_pattern(nick: &str) -> bool {
    use gst::glib::prelude::*;
    let Ok(src) = gst::ElementFactory::make("videotestsrc").build() else {
        // No videotestsrc at all: assembly reports the missing element.
        return true;
    };
    let Some(pspec) = src.find_property("pattern") else {
        return true;
    };
    let Some(pspec) = pspec.downcast_ref::<gst::glib::ParamSpecEnum>() else {
        return true;
    };
    let class = pspec.enum_class();
    class.value_by_nick(nick).is_some() || class.value_by_name(nick).is_some()
}

/// A ladder needs an encoder of its own to feed (not a stream relayed as it arrives), a known
/// top size, WebRTC viewers to serve, and rungs that shrink.
fn validate_ladder(s: &super::Structured) -> Result<(), (Where, String)> {
    let Some(ladder) = &s.encode.ladder else {
        return Ok(());
    };
    let at = |msg: String| Err((Where::Span(ladder.span()), msg));
    if s.kept_as_arrives() {
        return at("a ladder encodes the raw video again at smaller sizes, but this source's stream is kept as it arrives (webrtc, whep, passthrough); publishers can send simulcast layers instead".into());
    }
    if s.encode.codec == VideoCodec::Av1 {
        return at(
            "a ladder serves WebRTC viewers, which get H.264, VP8 or VP9 here, not AV1".into(),
        );
    }
    if !s
        .outputs
        .iter()
        .any(|o| matches!(o.value, Output::WebRtc(_)))
    {
        return at("a ladder serves WebRTC viewers: add a `webrtc` output".into());
    }
    match s.ladder() {
        Some(rungs) => super::ladder::check(&rungs).or_else(at),
        None => at("a ladder needs the source's size: set width and height in [source]".into()),
    }
}

/// A jpeg-tcp output: a receiver's HOST:PORT, a rate and quality in range, and one stream
/// (a room has one per participant).
fn validate_jpeg_output(
    s: &super::Structured,
    j: &super::JpegTcpOutput,
    span: &std::ops::Range<usize>,
) -> Result<(), (Where, String)> {
    let connect = j.connect.get_ref();
    let valid = connect
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        return Err((
            Where::Span(j.connect.span()),
            format!(
                "`{connect}` is not a receiver's address: use HOST:PORT (e.g. \"192.168.1.10:8485\")"
            ),
        ));
    }
    if !(1..=60).contains(&j.fps) {
        return Err((
            Where::Span(span.clone()),
            format!("fps {} is out of range: use 1 to 60", j.fps),
        ));
    }
    if !(1..=100).contains(&j.quality) {
        return Err((
            Where::Span(span.clone()),
            format!("quality {} is out of range: use 1 to 100", j.quality),
        ));
    }
    if matches!(s.source.value, Source::Room(_)) {
        return Err((
            Where::Span(span.clone()),
            "a room has a stream per participant, and a jpeg-tcp output sends one stream to one receiver: use a `process` hook, which sees each participant's frames".into(),
        ));
    }
    Ok(())
}
