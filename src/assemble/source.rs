//! The first part of a structured pipeline: raw video (and audio) from the source, ending in
//! the tees `video_raw` and `audio_raw`.

use super::*;

/// The source's part of the launch line.
pub(super) struct RawSource {
    /// The video chain, to be continued by the hooks and the `video_raw` tee.
    pub video: String,
    /// Further chains: audio, the decodebin.
    pub chains: Vec<String>,
    /// The decodebin whose pads are linked at run time.
    pub decode: Option<DecodeLinks>,
    pub looping: bool,
    pub want_audio: bool,
}

/// The raw video and audio of `s`'s source (not an ingest or passthrough source), with what
/// was chosen for it on this machine added to `chosen`.
pub(super) fn raw_source(
    desc: &Description,
    s: &crate::description::Structured,
    chosen: &mut Vec<(&'static str, String)>,
) -> Result<RawSource, Diagnostic> {
    let source = &s.source.value;
    let mut chains: Vec<String> = Vec::new();
    let mut decode = None;
    let mut looping = false;
    let (width, height, framerate) = source.video_size();
    let size_caps = raw_caps("video/x-raw", width, height, framerate);
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
    Ok(RawSource {
        video,
        chains,
        decode,
        looping,
        want_audio,
    })
}

/// Whether a source delivers live (a clock-paced or network stream), and the element named
/// when it stalls.
pub(super) fn source_liveness(source: &Source) -> (bool, &'static str) {
    match source {
        Source::Test(_) | Source::Camera(_) | Source::Tcp(_) => (true, "source"),
        Source::File(_) => (false, "source"),
        // Frames come when a sender sends them; a silent sender is not a stalled pipeline.
        Source::JpegTcp(_) => (false, jpeg_tcp::APPSRC),
        Source::Uri(u) => (is_live_uri(u.uri.get_ref()), "decode"),
        Source::WebRtc(_) | Source::Room(_) | Source::Whep(_) => (false, "source"),
    }
}

/// A decodebin whose pads appear at run time and are linked to named branch heads.
#[derive(Debug, Clone)]
pub(super) struct DecodeLinks {
    pub element: String,
    pub video_head: String,
    pub audio_head: Option<String>,
    /// Passthrough: the encoded video and audio caps the description promised.
    pub expect_video: Option<&'static str>,
    pub expect_audio: Option<&'static str>,
}

impl DecodeLinks {
    /// The decodebin named `decode` feeding `video_in`; `audio_in` is added when audio is kept.
    pub(super) fn video_only() -> DecodeLinks {
        DecodeLinks {
            element: "decode".into(),
            video_head: "video_in".into(),
            audio_head: None,
            expect_video: None,
            expect_audio: None,
        }
    }
}

/// `media,width=..,height=..,framerate=../1` with only the fields that are set.
pub(super) fn raw_caps(media: &str, w: Option<u32>, h: Option<u32>, fps: Option<u32>) -> String {
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
pub(super) fn uri_scheme(uri: &str) -> Option<&str> {
    let (scheme, _) = uri.split_once("://")?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

pub(super) fn is_live_uri(uri: &str) -> bool {
    let scheme = uri_scheme(uri).map(|s| s.to_ascii_lowercase());
    matches!(
        scheme.as_deref(),
        Some("rtsp" | "rtsps" | "rtspt" | "rtmp" | "srt" | "udp" | "rtp")
    )
}
