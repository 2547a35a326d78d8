//! The JPEG-over-TCP framings of the tutorials' programs, sans I/O: bytes in, frames out (or
//! why the stream is malformed). A Raspberry Pi sender writes, per frame, either
//!
//! - `ascii-base64`: a 64-byte field with the payload's length as ASCII digits padded with
//!   spaces, that many bytes of base64-encoded JPEG, then a 64-byte field with the sender's
//!   time (`%Y-%m-%d %H:%M:%S.%f`, UTC) padded with spaces; or
//! - `u32be`: a 4-byte big-endian length, then that many bytes of JPEG.

use crate::description::JpegFraming;
use base64::Engine;

/// The fixed fields of the ascii-base64 framing.
const FIELD: usize = 64;

/// One frame as it arrived: its JPEG, and the time the sender stamped it with (UTC), if its
/// framing carries one that reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub jpeg: Vec<u8>,
    pub sender_time: Option<chrono::NaiveDateTime>,
}

/// Why a sender's stream cannot be read on: its connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the length field {0:?} is not a number")]
    BadLength(String),
    #[error("a frame of {len} bytes is over max_frame_bytes ({max})")]
    TooLarge { len: usize, max: usize },
    #[error("a frame's data is not valid base64")]
    BadBase64,
    #[error("a frame is empty")]
    Empty,
}

/// Reads frames out of the bytes a sender wrote, in any pieces.
pub struct Decoder {
    framing: JpegFraming,
    max: usize,
    buf: Vec<u8>,
    /// Where the unread bytes start in `buf`.
    at: usize,
}

impl Decoder {
    /// `max`: the largest frame accepted (its payload's length as the framing counts it).
    pub fn new(framing: JpegFraming, max: usize) -> Decoder {
        Decoder {
            framing,
            max,
            buf: Vec::new(),
            at: 0,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        // What was read is dropped before the buffer grows.
        if self.at > 0 && self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        } else if self.at > (1 << 20) {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = &self.buf[self.at..];
        let (frame, used) = match self.framing {
            JpegFraming::U32Be => {
                let Some(head) = rest.get(..4) else {
                    return Ok(None);
                };
                let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                self.check(len)?;
                let Some(jpeg) = rest.get(4..4 + len) else {
                    return Ok(None);
                };
                let frame = Frame {
                    jpeg: jpeg.to_vec(),
                    sender_time: None,
                };
                (frame, 4 + len)
            }
            JpegFraming::AsciiBase64 => {
                let Some(head) = rest.get(..FIELD) else {
                    return Ok(None);
                };
                let text = String::from_utf8_lossy(head);
                let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
                let len: usize = digits
                    .parse()
                    .ok()
                    .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| FrameError::BadLength(digits.chars().take(64).collect()))?;
                self.check(len)?;
                let Some(data) = rest.get(FIELD..FIELD + len) else {
                    return Ok(None);
                };
                let Some(time) = rest.get(FIELD + len..FIELD + len + FIELD) else {
                    return Ok(None);
                };
                let jpeg = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| FrameError::BadBase64)?;
                let frame = Frame {
                    jpeg,
                    sender_time: read_time(time),
                };
                (frame, FIELD + len + FIELD)
            }
        };
        self.at += used;
        Ok(Some(frame))
    }

    fn check(&self, len: usize) -> Result<(), FrameError> {
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        Ok(())
    }
}

/// The sender's time field: `%Y-%m-%d %H:%M:%S.%f` (UTC), padded; None when it does not read.
fn read_time(field: &[u8]) -> Option<chrono::NaiveDateTime> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// Writes one frame in `framing` (what a `jpeg-tcp` output sends); `now`: the time field.
pub fn encode(framing: JpegFraming, jpeg: &[u8], now: chrono::NaiveDateTime) -> Vec<u8> {
    match framing {
        JpegFraming::U32Be => {
            let mut out = Vec::with_capacity(4 + jpeg.len());
            out.extend_from_slice(&(jpeg.len() as u32).to_be_bytes());
            out.extend_from_slice(jpeg);
            out
        }
        JpegFraming::AsciiBase64 => {
            let data = base64::engine::general_purpose::STANDARD.encode(jpeg);
            let time = now.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            let mut out = Vec::with_capacity(2 * FIELD + data.len());
            out.extend_from_slice(format!("{:<FIELD$}", data.len()).as_bytes());
            out.extend_from_slice(data.as_bytes());
            out.extend_from_slice(format!("{time:<FIELD$}").as_bytes());
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time() -> chrono::NaiveDateTime {
        chrono::NaiveDateTime::parse_from_str("2026-12-05 07:40:01.250000", "%Y-%m-%d %H:%M:%S%.f")
            .expect("time")
    }

    #[test]
    fn frames_come_out_whole_whatever_the_pieces() {
        for framing in [JpegFraming::AsciiBase64, JpegFraming::U32Be] {
            let mut wire = encode(framing, b"\xff\xd8one\xff\xd9", time());
            wire.extend(encode(framing, b"\xff\xd8two\xff\xd9", time()));
            for piece in [1, 3, 64, 1000] {
                let mut d = Decoder::new(framing, 1 << 20);
                let mut got = Vec::new();
                for chunk in wire.chunks(piece) {
                    d.push(chunk);
                    while let Some(f) = d.next_frame().expect("frame") {
                        got.push(f);
                    }
                }
                assert_eq!(got.len(), 2, "{framing:?} in pieces of {piece}");
                assert_eq!(got[1].jpeg, b"\xff\xd8two\xff\xd9");
                let expected = (framing == JpegFraming::AsciiBase64).then(time);
                assert_eq!(got[0].sender_time, expected);
            }
        }
    }

    #[test]
    fn the_tutorials_fields_read_as_python_pads_them() {
        // str(len(data)).ljust(64), data, datetime.utcnow().strftime(...).ljust(64)
        let data = "/9j/2Q==";
        let wire = format!(
            "{:<64}{data}{:<64}",
            data.len(),
            "2026-12-05 07:40:01.250000"
        );
        let mut d = Decoder::new(JpegFraming::AsciiBase64, 100);
        d.push(wire.as_bytes());
        let f = d.next_frame().expect("frame").expect("whole");
        assert_eq!(f.jpeg, b"\xff\xd8\xff\xd9");
        assert_eq!(f.sender_time, Some(time()));
    }

    #[test]
    fn malformed_streams_say_what_is_wrong() {
        let mut d = Decoder::new(JpegFraming::AsciiBase64, 100);
        d.push(format!("{:<64}", "12x").as_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::BadLength("12x".into())));
        let mut d = Decoder::new(JpegFraming::AsciiBase64, 100);
        d.push(format!("{:<64}", "-5").as_bytes());
        assert!(matches!(d.next_frame(), Err(FrameError::BadLength(_))));
        let mut d = Decoder::new(JpegFraming::AsciiBase64, 100);
        d.push(format!("{:<64}", 101).as_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        let mut d = Decoder::new(JpegFraming::AsciiBase64, 100);
        d.push(format!("{:<64}!!!!{:<64}", 4, "").as_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::BadBase64));
        let mut d = Decoder::new(JpegFraming::U32Be, 100);
        d.push(&200u32.to_be_bytes());
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge { len: 200, max: 100 })
        );
        let mut d = Decoder::new(JpegFraming::U32Be, 100);
        d.push(&0u32.to_be_bytes());
        assert_eq!(d.next_frame(), Err(FrameError::Empty));
    }

    #[test]
    fn an_unreadable_time_keeps_the_frame() {
        let wire = format!("{:<64}/9j/2Q=={:<64}", 8, "yesterday");
        let mut d = Decoder::new(JpegFraming::AsciiBase64, 100);
        d.push(wire.as_bytes());
        let f = d.next_frame().expect("frame").expect("whole");
        assert_eq!(f.sender_time, None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_end_in_frames_or_an_error(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600), base64 in proptest::bool::ANY) {
            let framing = if base64 { JpegFraming::AsciiBase64 } else { JpegFraming::U32Be };
            let mut d = Decoder::new(framing, 256);
            d.push(&bytes);
            for _ in 0..700 {
                match d.next_frame() {
                    Ok(Some(f)) => proptest::prop_assert!(!f.jpeg.is_empty()),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
