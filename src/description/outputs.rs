//! The `[[output]]` tables of a description file.

use super::Kinded;
use super::types::*;
use super::units::{age, duration, size};
use serde::{Deserialize, Deserializer};
use serde_spanned::Spanned;
use std::time::Duration;
use toml::de::ValueDeserializer;

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
