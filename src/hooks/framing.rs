//! The stream framing of external hooks (see [`super::process`] for the table): a 32-byte
//! little-endian header per frame. Shared by the pipe, the socket hooks and the shared-memory
//! messages ([`super::shm`]).

use super::Frame;

pub const MAGIC: &[u8; 4] = b"MWF1";
pub const HEADER_LEN: usize = 32;

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
