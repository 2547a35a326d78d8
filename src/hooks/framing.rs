//! The stream framing of external hooks (see [`super::process`] for the table): a 32-byte
//! little-endian header per frame. Shared by the pipe, the socket hooks and the shared-memory
//! messages ([`super::shm`]). A hook with `sender_time = true` gets magic `MWF2` instead,
//! and 8 more bytes after the header: the time the frame's sender stamped it.

use super::Frame;

pub const MAGIC: &[u8; 4] = b"MWF1";
/// A frame followed by its sender's time.
pub const MAGIC_TIMED: &[u8; 4] = b"MWF2";
pub const HEADER_LEN: usize = 32;
/// The sender's time of a frame that has none.
pub const NO_TIME: u64 = u64::MAX;

/// How a frame is announced: its header, and for a hook that asked for it, its sender's time
/// (nanoseconds since the Unix epoch, UTC; [`NO_TIME`] when it has none).
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub header: [u8; HEADER_LEN],
    pub sender_time: Option<u64>,
}

impl Head {
    /// `frame`'s, with a payload of `length` bytes; `timed`: with its sender's time (`MWF2`).
    pub fn new(frame: &Frame, length: usize, timed: bool) -> Head {
        let mut header = header(frame, length);
        let sender_time = timed.then(|| {
            header[..4].copy_from_slice(MAGIC_TIMED);
            frame
                .sender_time()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_nanos()).ok())
                .unwrap_or(NO_TIME)
        });
        Head {
            header,
            sender_time,
        }
    }

    /// The bytes before the pixels on a stream.
    pub fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.header)?;
        if let Some(t) = self.sender_time {
            out.write_all(&t.to_le_bytes())?;
        }
        Ok(())
    }
}

/// The 32-byte header of `frame` with a payload of `length` bytes.
pub fn header(frame: &Frame, length: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&frame.width().to_le_bytes());
    h[8..12].copy_from_slice(&frame.height().to_le_bytes());
    let code: &[u8] = match frame.format() {
        "GRAY8" => b"GRAY",
        other => other.as_bytes(),
    };
    let n = code.len().min(4);
    h[12..12 + n].copy_from_slice(&code[..n]);
    h[16..20].copy_from_slice(&(frame.stride(0) as u32).to_le_bytes());
    let pts = frame.pts().map_or(u64::MAX, |d| d.as_nanos() as u64);
    h[20..28].copy_from_slice(&pts.to_le_bytes());
    h[28..32].copy_from_slice(&(length as u32).to_le_bytes());
    h
}
