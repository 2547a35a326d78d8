//! `[source] kind = "jpeg-tcp"`: JPEG frames pushed over a raw TCP socket, as the tutorials'
//! OpenCV programs send them (a Raspberry Pi to an "AI server").

use serde::Deserialize;
use serde_spanned::Spanned;

/// How each JPEG frame is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum JpegFraming {
    /// A 64-byte ASCII length, the base64 of the JPEG, a 64-byte ASCII time (the tutorial's).
    #[serde(rename = "ascii-base64")]
    AsciiBase64,
    /// A 4-byte big-endian length, then the JPEG.
    #[serde(rename = "u32be")]
    U32Be,
}

impl JpegFraming {
    pub fn name(self) -> &'static str {
        match self {
            JpegFraming::AsciiBase64 => "ascii-base64",
            JpegFraming::U32Be => "u32be",
        }
    }
}

/// Largest frame accepted by default: 8 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = 8 << 20;

fn default_max_frame_bytes() -> u64 {
    DEFAULT_MAX_FRAME_BYTES
}

/// One sender at a time connects to `listen` and sends JPEG frames at its own pace; they
/// become a live video stream (timestamped as they arrive), sized as the JPEGs are unless
/// `width`/`height` scale them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JpegTcpSource {
    /// HOST:PORT to listen on.
    pub listen: Spanned<String>,
    pub framing: JpegFraming,
    /// A frame longer than this (as its framing counts it) closes the sender's connection.
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: u64,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

fn default_fps() -> u32 {
    10
}

fn default_quality() -> u32 {
    90
}

/// `[[output]] kind = "jpeg-tcp"`: the stream's frames, JPEG-encoded, sent to a receiver that
/// listens (the tutorials' "AI server") in its framing; reconnects every second when it goes
/// away, and drops frames (counted) rather than hold up the pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JpegTcpOutput {
    /// HOST:PORT of the receiver.
    pub connect: Spanned<String>,
    pub framing: JpegFraming,
    /// At most this many frames a second.
    #[serde(default = "default_fps")]
    pub fps: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// JPEG quality, 1 to 100.
    #[serde(default = "default_quality")]
    pub quality: u32,
}
