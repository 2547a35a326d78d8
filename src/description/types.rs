//! The serde types of a description file, one struct per table kind.

use super::Kinded;
use serde::{Deserialize, Deserializer};
use serde_spanned::Spanned;
use std::time::Duration;
use toml::de::ValueDeserializer;

/// Options shared by both forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub description: Option<String>,
    /// Start when the service starts (default true).
    pub autostart: bool,
    pub restart: RestartPolicy,
    pub backoff: Backoff,
    /// How long the source may deliver no video before the run counts as failed; None: the
    /// default for the source (10 s for live sources, off otherwise); zero: off.
    pub stall_timeout: Option<Duration>,
}

/// A `stall_timeout` as written: a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StallTimeout(#[serde(deserialize_with = "duration")] pub Duration);

/// What the supervisor does when a pipeline ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after errors and after end-of-stream.
    Always,
    /// Restart after errors; end-of-stream stops it.
    #[default]
    OnFailure,
    /// Never restart.
    Never,
}

/// Exponential backoff between restarts: `initial`, doubled per consecutive failure, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    #[serde(deserialize_with = "duration")]
    pub initial: Duration,
    #[serde(deserialize_with = "duration")]
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before restart number `attempt` (1-based) of a run of failures.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// The longest duration a description may give: longer values are typos, and unbounded ones
/// would overflow timers.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration written as seconds (`2`, `0.5`) or as text (`"500ms"`, `"1m 30s"`), at most a day.
pub(super) fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration: seconds (2, 0.5) or text (\"500ms\", \"2s\")")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            bounded(
                Duration::from_secs(v.min(MAX_DURATION.as_secs() + 1)),
                &v.to_string(),
            )
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!(
                    "{v} is negative: a duration is 0 or more"
                ))),
            }
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            if v.is_finite() && v >= 0.0 && v <= MAX_DURATION.as_secs_f64() {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(E::custom(format!(
                    "{v} is not a number of seconds from 0 to {}",
                    MAX_DURATION.as_secs()
                )))
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            let d = humantime::parse_duration(v).map_err(|e| {
                E::custom(format!(
                    "`{v}` is not a duration ({e}); write seconds (2, 0.5) or text (\"500ms\", \"2s\")"
                ))
            })?;
            bounded(d, v)
        }
    }
    fn bounded<E: serde::de::Error>(d: Duration, written: &str) -> Result<Duration, E> {
        if d <= MAX_DURATION {
            Ok(d)
        } else {
            Err(E::custom(format!(
                "duration {written} is longer than a day"
            )))
        }
    }
    de.deserialize_any(Visitor)
}

/// A retention age: like [`duration`] but up to ten years ("7d", "12 weeks").
fn age<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de)?;
    let d = humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. \"7d\" or \"12h\""
        ))
    })?;
    if d > Duration::from_secs(3650 * 24 * 3600) {
        return Err(serde::de::Error::custom(format!(
            "`{text}` is longer than ten years"
        )));
    }
    Ok(Some(d))
}

/// A size in bytes, written as a number or as text ("500MB", "10 GiB").
fn size<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size: bytes (1000000) or text (\"500MB\", \"10GiB\")")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative: a size is 0 or more")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            v.parse::<bytesize::ByteSize>()
                .map(|b| b.as_u64())
                .map_err(|e| E::custom(format!("`{v}` is not a size ({e}); write e.g. \"500MB\"")))
        }
    }
    de.deserialize_any(Visitor).map(Some)
}

// ---------------------------------------------------------------------------------------------
// [encode]

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    #[default]
    H264,
    Vp8,
    Vp9,
    Av1,
}

impl VideoCodec {
    pub const ALL: [VideoCodec; 4] = [
        VideoCodec::H264,
        VideoCodec::Vp8,
        VideoCodec::Vp9,
        VideoCodec::Av1,
    ];

    /// The caps name of this codec's encoded stream.
    pub fn caps_name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "video/x-h264",
            VideoCodec::Vp8 => "video/x-vp8",
            VideoCodec::Vp9 => "video/x-vp9",
            VideoCodec::Av1 => "video/x-av1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::Vp8 => "vp8",
            VideoCodec::Vp9 => "vp9",
            VideoCodec::Av1 => "av1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    Aac,
    Opus,
}

impl AudioCodec {
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Aac => "aac",
            AudioCodec::Opus => "opus",
        }
    }
}

/// `[encode]`: how raw video (and audio) is encoded. One encoder per codec, shared by outputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Encode {
    pub codec: VideoCodec,
    /// Video bitrate in kbit/s.
    pub bitrate: u32,
    /// Time between keyframes; short so new TCP clients and viewers start fast.
    #[serde(deserialize_with = "duration")]
    pub keyframe_interval: Duration,
    /// Force an encoder element instead of choosing one (e.g. "openh264enc").
    pub encoder: Option<Spanned<String>>,
    /// Audio bitrate in kbit/s.
    pub audio_bitrate: u32,
    /// Smaller encodings beside this one, for WebRTC viewers on slower links.
    pub ladder: Option<Box<Spanned<super::ladder::Ladder>>>,
}

impl Default for Encode {
    fn default() -> Self {
        Encode {
            codec: VideoCodec::H264,
            bitrate: 2000,
            keyframe_interval: Duration::from_secs(1),
            encoder: None,
            audio_bitrate: 128,
            ladder: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// [source]

fn default_device() -> Spanned<String> {
    Spanned::new(0..0, "/dev/video0".to_string())
}
fn default_host() -> String {
    "127.0.0.1".to_string()
}
fn yes() -> bool {
    true
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_framerate() -> u32 {
    30
}
fn default_pattern() -> Spanned<String> {
    Spanned::new(0..0, "smpte".to_string())
}

// The source structs repeat their shared keys (audio, width, height, framerate) on purpose:
// serde's `flatten` cannot be combined with `deny_unknown_fields`, and the latter is what turns
// a misspelt key into an "unknown key `widht`; did you mean `width`?" error at its line.

/// What a v4l2 camera is asked to deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraFormat {
    /// Raw if the camera offers it at the requested size, else MJPEG, else H.264.
    #[default]
    Auto,
    Raw,
    Mjpeg,
    H264,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSource {
    #[serde(default = "default_device")]
    pub device: Spanned<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<u32>,
    #[serde(default)]
    pub format: CameraFormat,
}

/// Live test video (videotestsrc with a clock overlay) and a test tone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSource {
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_framerate")]
    pub framerate: u32,
    /// A videotestsrc pattern: smpte, ball, snow, ...
    #[serde(default = "default_pattern")]
    pub pattern: Spanned<String>,
    /// Draw the wall-clock time on the picture.
    #[serde(default = "yes")]
    pub clock: bool,
    #[serde(default = "yes")]
    pub audio: bool,
    /// Stop (end of stream) after this many frames; unbounded when absent.
    pub frames: Option<u64>,
}

/// Any container GStreamer can demux, decoded; played at its own pace.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    pub path: Spanned<String>,
    /// Start over at the end instead of ending.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    #[serde(default = "yes")]
    pub audio: bool,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<u32>,
}

/// Anything uridecodebin plays: rtsp://, http(s)://, file://.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UriSource {
    pub uri: Spanned<String>,
    #[serde(default = "yes")]
    pub audio: bool,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<u32>,
    /// Record the stream as it arrives (parse and mux, no decoding or encoding). Default: yes
    /// when every output is a `record` and no width/height/framerate is asked for.
    pub passthrough: Option<bool>,
    /// The video codec that arrives, for passthrough (default h264).
    #[serde(default)]
    pub codec: VideoCodec,
    /// The audio codec that arrives, for passthrough (default aac).
    #[serde(default = "default_pull_audio")]
    pub audio_codec: AudioCodec,
}

fn default_pull_audio() -> AudioCodec {
    AudioCodec::Aac
}

/// An MPEG-TS stream read from a TCP server (e.g. another pipeline's tcp output).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSource {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u16,
    #[serde(default = "yes")]
    pub audio: bool,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub framerate: Option<u32>,
    /// Record the stream as it arrives (parse and mux, no decoding or encoding). Default: yes
    /// when every output is a `record` and no width/height/framerate is asked for.
    pub passthrough: Option<bool>,
    /// The video codec that arrives, for passthrough (default h264).
    #[serde(default)]
    pub codec: VideoCodec,
    /// The audio codec that arrives, for passthrough (default aac).
    #[serde(default = "default_pull_audio")]
    pub audio_codec: AudioCodec,
}

/// A WebRTC publisher (WHIP, or the `/publish` page over the signalling protocol) sends the
/// stream; outputs keep its codec (no re-encoding). One publisher at a time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcSource {
    /// The video codec accepted from publishers: "h264" (default), "vp8" or "vp9".
    #[serde(default)]
    pub codec: VideoCodec,
    #[serde(default = "yes")]
    pub audio: bool,
}

/// A video room: up to `max_participants` WebRTC publishers at once (WHIP `POST
/// /whip/{room}`, or the `/room/{room}` page), each relayed to its watchers and recorded as
/// it arrives, with one chat for the room.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomSource {
    /// The video codec participants must send: "h264" (default), "vp8" or "vp9".
    #[serde(default)]
    pub codec: VideoCodec,
    #[serde(default = "yes")]
    pub audio: bool,
    /// Most participants at once; one more is refused with 503 (default 8).
    #[serde(default = "default_max_participants")]
    pub max_participants: u32,
}

fn default_max_participants() -> u32 {
    8
}

impl RoomSource {
    /// What each participant's stream is, as for a webrtc source.
    pub fn publisher(&self) -> WebRtcSource {
        WebRtcSource {
            codec: self.codec,
            audio: self.audio,
        }
    }
}

/// A stream pulled from a WHEP server (another mediaweave's `/whep/{name}`, MediaMTX) and
/// treated like a published one: relayed, recorded, hooked, never re-encoded; pulled again
/// with backoff when it ends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhepSource {
    /// The WHEP endpoint (`http(s)://host/whep/name`).
    pub url: Spanned<String>,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// The video codec asked for: "h264" (default), "vp8" or "vp9".
    #[serde(default)]
    pub codec: VideoCodec,
    #[serde(default = "yes")]
    pub audio: bool,
}

impl WhepSource {
    /// What the pulled stream is, as a publisher's would be.
    pub fn publisher(&self) -> WebRtcSource {
        WebRtcSource {
            codec: self.codec,
            audio: self.audio,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Camera(CameraSource),
    WebRtc(WebRtcSource),
    Room(RoomSource),
    Whep(WhepSource),
    Test(TestSource),
    File(FileSource),
    Uri(UriSource),
    Tcp(TcpSource),
    JpegTcp(super::jpeg_tcp::JpegTcpSource),
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Camera(_) => "camera",
            Source::Test(_) => "test",
            Source::File(_) => "file",
            Source::Uri(_) => "uri",
            Source::Tcp(_) => "tcp",
            Source::JpegTcp(_) => "jpeg-tcp",
            Source::WebRtc(_) => "webrtc",
            Source::Room(_) => "room",
            Source::Whep(_) => "whep",
        }
    }

    /// A short human summary, for `list` and logs.
    pub fn summary(&self) -> String {
        match self {
            Source::Camera(c) => format!("camera {}", c.device.get_ref()),
            Source::Test(t) => format!("test {}x{}@{}", t.width, t.height, t.framerate),
            Source::File(f) => format!("file {}", f.path.get_ref()),
            // Shown to viewers (status, `list`): without a password or token it may carry.
            Source::Uri(u) => format!("uri {}", crate::redact::redact(u.uri.get_ref())),
            Source::Tcp(t) => format!("tcp {}:{}", t.host, t.port),
            Source::JpegTcp(j) => format!("jpeg-tcp {} ({})", j.listen.get_ref(), j.framing.name()),
            Source::WebRtc(w) => format!("webrtc publisher ({})", w.codec.name()),
            Source::Room(r) => format!("room of up to {} ({})", r.max_participants, r.codec.name()),
            Source::Whep(w) => format!(
                "whep from {} ({})",
                crate::redact::redact(w.url.get_ref()),
                w.codec.name()
            ),
        }
    }

    /// Requested output size and rate, where the user set them (test sources always do).
    pub fn video_size(&self) -> (Option<u32>, Option<u32>, Option<u32>) {
        match self {
            Source::Camera(c) => (c.width, c.height, c.framerate),
            Source::Test(t) => (Some(t.width), Some(t.height), Some(t.framerate)),
            Source::File(f) => (f.width, f.height, f.framerate),
            Source::Uri(u) => (u.width, u.height, u.framerate),
            Source::Tcp(t) => (t.width, t.height, t.framerate),
            // Frames come at the sender's pace.
            Source::JpegTcp(j) => (j.width, j.height, None),
            Source::WebRtc(_) | Source::Room(_) | Source::Whep(_) => (None, None, None),
        }
    }
}

/// What a pull source (tcp, uri) sends when it is recorded as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passthrough {
    pub codec: VideoCodec,
    pub audio: Option<AudioCodec>,
}

impl super::Structured {
    /// The ladder's rungs, top (the source's size at the encode's bitrate) first; None without
    /// a ladder or without a known source size.
    pub fn ladder(&self) -> Option<Vec<super::Rung>> {
        let ladder = self.encode.ladder.as_ref()?;
        let (w, h, _) = self.source.value.video_size();
        let top = super::Rung {
            width: w?,
            height: h?,
            bitrate: self.encode.bitrate,
        };
        Some(ladder.get_ref().rungs(top))
    }

    /// Whether the source's stream is kept as it arrives (published, pulled over WHEP, or
    /// passed through): there is no decoded video to scale, transform or encode again.
    pub fn kept_as_arrives(&self) -> bool {
        matches!(
            self.source.value,
            Source::WebRtc(_) | Source::Room(_) | Source::Whep(_)
        ) || self.passthrough().is_some()
    }

    /// Whether (and as what) the source's stream goes to the outputs without decoding.
    pub fn passthrough(&self) -> Option<Passthrough> {
        let (explicit, codec, audio_codec, audio) = match &self.source.value {
            Source::Tcp(t) => (t.passthrough, t.codec, t.audio_codec, t.audio),
            Source::Uri(u) => (u.passthrough, u.codec, u.audio_codec, u.audio),
            _ => return None,
        };
        let (w, h, fps) = self.source.value.video_size();
        let only_records = self
            .outputs
            .iter()
            .all(|o| matches!(o.value, Output::Record(_)));
        let default = only_records && w.is_none() && h.is_none() && fps.is_none();
        explicit.unwrap_or(default).then_some(Passthrough {
            codec,
            audio: audio.then_some(audio_codec),
        })
    }
}

impl Kinded for Source {
    const KINDS: &'static [&'static str] = &[
        "camera", "test", "file", "uri", "tcp", "jpeg-tcp", "webrtc", "room", "whep",
    ];
    fn deserialize_kind(kind: &str, de: ValueDeserializer<'_>) -> Result<Self, toml::de::Error> {
        Ok(match kind {
            "camera" => Source::Camera(CameraSource::deserialize(de)?),
            "test" => Source::Test(TestSource::deserialize(de)?),
            "file" => Source::File(FileSource::deserialize(de)?),
            "uri" => Source::Uri(UriSource::deserialize(de)?),
            "webrtc" => Source::WebRtc(WebRtcSource::deserialize(de)?),
            "room" => Source::Room(RoomSource::deserialize(de)?),
            "whep" => Source::Whep(WhepSource::deserialize(de)?),
            "jpeg-tcp" => Source::JpegTcp(super::jpeg_tcp::JpegTcpSource::deserialize(de)?),
            _ => Source::Tcp(TcpSource::deserialize(de)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// [[output]]

/// MPEG-TS over TCP (tcpserversink): any number of clients (ffplay, OpenCV, VLC, GStreamer);
/// each new client starts at the next keyframe.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpOutput {
    #[serde(default = "default_host")]
    pub host: String,
    pub port: u16,
}

/// A local recording. `path` may use `{name}` (the pipeline) and `{time}` (UTC start time,
/// so every start writes a new file); the extension picks the container.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOutput {
    pub path: Spanned<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// How an output packages the encoded streams: a container, or WebRTC's RTP.
pub enum Container {
    Matroska,
    WebM,
    Mp4,
    MpegTs,
    WebRtc,
    /// RTP over RTSP (the embedded RTSP server).
    Rtsp,
    /// HLS: MPEG-TS segments and a playlist, served over HTTP.
    Hls,
    /// JPEG frames over TCP, encoded from the decoded video (whatever the stream's codec).
    Jpeg,
}

impl Container {
    pub fn from_path(path: &str) -> Option<Container> {
        let ext = std::path::Path::new(path)
            .extension()?
            .to_str()?
            .to_ascii_lowercase();
        Some(match ext.as_str() {
            "mkv" => Container::Matroska,
            "webm" => Container::WebM,
            "mp4" | "m4v" | "mov" => Container::Mp4,
            "ts" | "m2ts" => Container::MpegTs,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Container::Matroska => "Matroska",
            Container::WebM => "WebM",
            Container::Mp4 => "MP4",
            Container::MpegTs => "MPEG-TS",
            Container::WebRtc => "WebRTC",
            Container::Rtsp => "RTSP",
            Container::Hls => "HLS",
            Container::Jpeg => "JPEG over TCP",
        }
    }

    pub fn carries(self, codec: VideoCodec) -> bool {
        use VideoCodec::*;
        match self {
            Container::Matroska | Container::Jpeg => true,
            Container::WebM => matches!(codec, Vp8 | Vp9 | Av1),
            Container::Mp4 => matches!(codec, H264 | Vp9 | Av1),
            // (HLS segments are MPEG-TS.)
            Container::MpegTs | Container::Hls => matches!(codec, H264),
            // Browsers decode these; AV1 needs rtpav1pay, which GStreamer 1.22 does not have.
            Container::WebRtc => matches!(codec, H264 | Vp8 | Vp9),
            // What players and NVRs take over RTSP.
            Container::Rtsp => matches!(codec, H264),
        }
    }

    /// The audio codec this container gets: AAC where players expect it, Opus otherwise.
    pub fn audio_codec(self) -> AudioCodec {
        match self {
            Container::Mp4 | Container::MpegTs | Container::Rtsp | Container::Hls => {
                AudioCodec::Aac
            }
            Container::Matroska | Container::WebM | Container::WebRtc | Container::Jpeg => {
                AudioCodec::Opus
            }
        }
    }
}

/// Live viewing in browsers and WebRTC peers: any number of viewers, each with its own leaky
/// branch, negotiated over the signalling protocol (`/ws`), WHEP or `POST /offer`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcOutput {
    /// Register as a producer on this signalling server instead of the embedded one
    /// (e.g. a gst-webrtc-signalling-server at ws://host:8443).
    pub signalling_url: Option<Spanned<String>>,
    /// Most viewers at once; more get an error (default 64).
    #[serde(default = "default_max_viewers")]
    pub max_viewers: u32,
    /// Send the pipeline's hook events to every viewer on the data channel (as
    /// `{"event": {...}}` text messages, beside chat lines).
    #[serde(default)]
    pub hook_events: bool,
}

fn default_max_viewers() -> u32 {
    64
}

/// Segmented, crash-safe recording into `{recordings}/{pipeline}/{UTC start}.{ext}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordOutput {
    /// "mkv" (Matroska; default) or "mp4" (fragmented MP4).
    #[serde(default = "default_record_container")]
    pub container: Spanned<String>,
    /// Length of each segment file.
    #[serde(default = "default_segment", deserialize_with = "duration")]
    pub segment: Duration,
    /// Segments older than this are deleted.
    #[serde(default, deserialize_with = "age")]
    pub max_age: Option<Duration>,
    /// The oldest segments are deleted while the pipeline's recordings take more than this.
    #[serde(default, deserialize_with = "size")]
    pub max_total_size: Option<u64>,
}

fn default_record_container() -> Spanned<String> {
    Spanned::new(0..0, "mkv".to_string())
}

fn default_segment() -> Duration {
    Duration::from_secs(600)
}

impl RecordOutput {
    pub fn container(&self) -> Option<Container> {
        match self.container.get_ref().as_str() {
            "mkv" => Some(Container::Matroska),
            "mp4" => Some(Container::Mp4),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Tcp(TcpOutput),
    File(FileOutput),
    WebRtc(WebRtcOutput),
    Record(RecordOutput),
    Rtsp(RtspOutput),
    Hls(HlsOutput),
    Whip(WhipOutput),
    JpegTcp(super::jpeg_tcp::JpegTcpOutput),
}

/// Publishes the stream (as encoded, or relayed as published) to a WHIP server: another
/// mediaweave, Janus, MediaMTX, LiveKit, Cloudflare. Reconnects with backoff.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhipOutput {
    /// The WHIP endpoint (`http(s)://host/whip/name`).
    pub url: Spanned<String>,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// STUN and TURN servers for this connection (`stun://host:port`,
    /// `turn(s)://user:password@host:port`); the service's own when empty.
    #[serde(default)]
    pub ice_servers: Vec<Spanned<String>>,
}

/// Served by the embedded RTSP server at `rtsp://HOST:PORT/{name}` (`serve --rtsp-listen`):
/// any number of clients, over TCP or UDP, from the stream as it is encoded or published.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspOutput {}

/// Served by the HTTP server at `/hls/{name}/index.m3u8`: MPEG-TS segments of `segment`
/// length, the playlist naming the last `playlist_length`; older segments are deleted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsOutput {
    /// Length of each segment: whole seconds, 1 to 60 (each starts on a keyframe).
    #[serde(default = "default_hls_segment", deserialize_with = "hls_segment")]
    pub segment: Duration,
    /// Segments the playlist names, 1 to 100.
    #[serde(
        default = "default_playlist_length",
        deserialize_with = "playlist_length"
    )]
    pub playlist_length: u32,
}

fn default_hls_segment() -> Duration {
    Duration::from_secs(1)
}

fn default_playlist_length() -> u32 {
    6
}

fn hls_segment<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let d = duration(de)?;
    if d.subsec_nanos() != 0 || !(1..=60).contains(&d.as_secs()) {
        return Err(serde::de::Error::custom(format!(
            "an HLS segment is whole seconds from 1 to 60, not {}",
            humantime::format_duration(d)
        )));
    }
    Ok(d)
}

fn playlist_length<'de, D: Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    let n = i64::deserialize(de)?;
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "playlist_length is the number of segments a playlist names, 1 to 100, not {n}"
            ))
        })
}

impl Output {
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Tcp(_) => "tcp",
            Output::File(_) => "file",
            Output::WebRtc(_) => "webrtc",
            Output::Record(_) => "record",
            Output::Rtsp(_) => "rtsp",
            Output::Hls(_) => "hls",
            Output::Whip(_) => "whip",
            Output::JpegTcp(_) => "jpeg-tcp",
        }
    }

    pub fn summary(&self) -> String {
        match self {
            Output::Tcp(t) => format!("tcp://{}:{}", t.host, t.port),
            Output::File(f) => format!("file {}", f.path.get_ref()),
            Output::Record(r) => format!(
                "record {} every {}",
                r.container.get_ref(),
                humantime::format_duration(r.segment)
            ),
            Output::WebRtc(w) => match &w.signalling_url {
                Some(url) => format!("webrtc via {}", crate::redact::redact(url.get_ref())),
                None => "webrtc".to_string(),
            },
            Output::Rtsp(_) => "rtsp".to_string(),
            Output::Whip(w) => format!("whip to {}", crate::redact::redact(w.url.get_ref())),
            Output::Hls(h) => format!(
                "hls {} segments × {}",
                humantime::format_duration(h.segment),
                h.playlist_length
            ),
            Output::JpegTcp(j) => format!(
                "jpeg-tcp to {} ({}, {} fps)",
                j.connect.get_ref(),
                j.framing.name(),
                j.fps
            ),
        }
    }

    pub fn container(&self) -> Container {
        match self {
            Output::Tcp(_) => Container::MpegTs,
            Output::WebRtc(_) => Container::WebRtc,
            Output::Rtsp(_) => Container::Rtsp,
            Output::Hls(_) => Container::Hls,
            Output::Whip(_) => Container::WebRtc,
            Output::JpegTcp(_) => Container::Jpeg,
            // validate() has checked the name.
            Output::Record(r) => r.container().unwrap_or(Container::Matroska),
            // validate() has checked the extension.
            Output::File(f) => {
                Container::from_path(f.path.get_ref()).unwrap_or(Container::Matroska)
            }
        }
    }
}

impl Kinded for Output {
    const KINDS: &'static [&'static str] = &[
        "tcp", "file", "webrtc", "record", "rtsp", "hls", "whip", "jpeg-tcp",
    ];
    fn deserialize_kind(kind: &str, de: ValueDeserializer<'_>) -> Result<Self, toml::de::Error> {
        Ok(match kind {
            "tcp" => Output::Tcp(TcpOutput::deserialize(de)?),
            "webrtc" => Output::WebRtc(WebRtcOutput::deserialize(de)?),
            "record" => Output::Record(RecordOutput::deserialize(de)?),
            "rtsp" => Output::Rtsp(RtspOutput::deserialize(de)?),
            "hls" => Output::Hls(HlsOutput::deserialize(de)?),
            "whip" => Output::Whip(WhipOutput::deserialize(de)?),
            "jpeg-tcp" => Output::JpegTcp(super::jpeg_tcp::JpegTcpOutput::deserialize(de)?),
            _ => Output::File(FileOutput::deserialize(de)?),
        })
    }
}
