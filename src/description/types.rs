//! The serde types of a description file, one struct per table kind.

use super::Kinded;
use serde::Deserialize;
use serde_spanned::Spanned;
use std::time::Duration;
use toml::de::ValueDeserializer;

use super::units::duration;

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
pub(super) fn default_host() -> String {
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
