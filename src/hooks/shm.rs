//! The shared-memory transport of external hooks (`transport = "shm"` on `process` and
//! `socket` hooks): the pixels go into a ring of frame slots in a memory file (`memfd`) that the
//! reader maps, and the stream carries only a small message per frame. The reader builds its
//! image (a numpy array) on the mapping without copying, and no pixel crosses the stream.
//!
//! The stream is a Unix socket (a `process` hook's stdin is one end of a socket pair; a
//! `socket` hook's subscribers connect to `unix:PATH`):
//!
//! 1. **hello**, once, service → reader: 16 bytes, `MWR1`, u32 version 1, u64 zero, with the
//!    memory file's descriptor attached (`SCM_RIGHTS`).
//! 2. **frame**, service → reader: 48 bytes: the 32-byte header of the stream framing (see
//!    [`super::framing`]) with magic `MWS1` (its length: the pixel bytes), then u64 `offset`
//!    of the pixels in the memory file and u64 `seq`, the frame's sequence number. For a
//!    hook with `sender_time = true`: magic `MWS2`, and 8 more bytes, the sender's time (56).
//! 3. **done**, reader → service: u64 `seq`: the reader is finished with every frame up to
//!    `seq` (mediaweave_frames.py sends it when the next frame is asked for).
//!
//! A slot is written again only once the reader is done with its frame; when the reader holds
//! every slot, new frames skip it (as frames skip any slow reader). The memory only grows, when
//! frames get larger: a reader maps it again when a frame lies beyond its mapping.
//!
//! All little-endian. The service writes the slots with `pwrite`; it never maps the memory.

use super::framing::Head;
use std::fs::File;
use std::io::{IoSlice, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;

pub const HELLO: &[u8; 4] = b"MWR1";
pub const MAGIC: &[u8; 4] = b"MWS1";
/// A frame message followed by the sender's time.
pub const MAGIC_TIMED: &[u8; 4] = b"MWS2";
/// Bytes of a frame message (without the sender's time).
pub const MESSAGE_LEN: usize = 48;
/// Bytes of a frame message with the sender's time.
const TIMED_LEN: usize = MESSAGE_LEN + 8;
/// Frames in flight: one being read, two waiting.
const SLOTS: usize = 3;
const PAGE: u64 = 4096;

pub struct Ring {
    memory: File,
    /// Where the current layout's slots begin, and their size.
    base: u64,
    slot_size: u64,
    /// The frame (seq) each slot holds.
    slots: [Option<u64>; SLOTS],
    next_seq: u64,
    /// The reader is done with every frame up to this one.
    done: Option<u64>,
    /// Bytes of a `done` message read in part.
    partial: Vec<u8>,
}

impl Ring {
    pub fn new(name: &str) -> std::io::Result<Ring> {
        let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
        Ok(Ring {
            memory: File::from(fd),
            base: 0,
            slot_size: 0,
            slots: [None; SLOTS],
            next_seq: 1,
            done: None,
            partial: Vec::new(),
        })
    }

    /// Sends the hello with the memory file's descriptor.
    pub fn hello(&self, stream: &UnixStream) -> std::io::Result<()> {
        let mut hello = [0u8; 16];
        hello[..4].copy_from_slice(HELLO);
        hello[4..8].copy_from_slice(&1u32.to_le_bytes());
        let fds = [self.memory.as_fd()];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
        control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
        let sent = rustix::net::sendmsg(
            stream,
            &[IoSlice::new(&hello)],
            &mut control,
            rustix::net::SendFlags::empty(),
        )?;
        if sent != hello.len() {
            return Err(std::io::Error::other("the hello went out in part"));
        }
        Ok(())
    }

    /// Takes the `done` messages waiting on `stream`, without blocking. An error means the
    /// reader is gone.
    pub fn read_done(&mut self, stream: &UnixStream) -> std::io::Result<()> {
        let mut buf = [0u8; 256];
        loop {
            match rustix::net::recv(stream, &mut buf, rustix::net::RecvFlags::DONTWAIT) {
                Ok((0, _)) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok((n, _)) => self.take_done(&buf[..n]),
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn take_done(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        let whole = self.partial.len() / 8 * 8;
        for chunk in self.partial[..whole].chunks_exact(8) {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(chunk);
            let seq = u64::from_le_bytes(seq);
            self.done = Some(self.done.map_or(seq, |d| d.max(seq)));
        }
        self.partial.drain(..whole);
    }

    /// A frame to the reader at the other end of `stream`: takes its `done` messages, writes
    /// the frame into a free slot and announces it. A reader that still holds every slot skips
    /// the frame. An error means the reader is gone.
    pub fn deliver(
        &mut self,
        stream: &mut UnixStream,
        head: &Head,
        planes: &[&[u8]],
    ) -> std::io::Result<()> {
        self.read_done(stream)?;
        match self.put(head, planes)? {
            Some((message, len)) => stream.write_all(&message[..len]),
            None => Ok(()),
        }
    }

    /// Writes a frame (its stream header and planes) into a free slot and returns the message
    /// announcing it; None when the reader holds every slot (the frame skips it).
    fn put(
        &mut self,
        head: &Head,
        planes: &[&[u8]],
    ) -> std::io::Result<Option<([u8; TIMED_LEN], usize)>> {
        let length: u64 = planes.iter().map(|p| p.len() as u64).sum();
        if length > self.slot_size {
            // A new layout past the old one: slots the reader may still hold stay untouched.
            self.base += self.slot_size * SLOTS as u64;
            self.slot_size = length.div_ceil(PAGE) * PAGE;
            self.memory
                .set_len(self.base + self.slot_size * SLOTS as u64)?;
            self.slots = [None; SLOTS];
        }
        let done = self.done;
        let Some(slot) = self
            .slots
            .iter()
            .position(|s| s.is_none_or(|seq| done.is_some_and(|d| seq <= d)))
        else {
            return Ok(None);
        };
        let offset = self.base + slot as u64 * self.slot_size;
        let mut at = offset;
        for plane in planes {
            self.memory.write_all_at(plane, at)?;
            at += plane.len() as u64;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots[slot] = Some(seq);
        let mut message = [0u8; TIMED_LEN];
        message[..32].copy_from_slice(&head.header);
        message[..4].copy_from_slice(MAGIC);
        message[32..40].copy_from_slice(&offset.to_le_bytes());
        message[40..48].copy_from_slice(&seq.to_le_bytes());
        let len = match head.sender_time {
            Some(t) => {
                message[..4].copy_from_slice(MAGIC_TIMED);
                message[48..56].copy_from_slice(&t.to_le_bytes());
                TIMED_LEN
            }
            None => MESSAGE_LEN,
        };
        Ok(Some((message, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(length: u32) -> Head {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(b"MWF1");
        h[28..32].copy_from_slice(&length.to_le_bytes());
        Head {
            header: h,
            sender_time: None,
        }
    }

    #[test]
    fn frames_fill_the_slots_until_the_reader_is_done_with_them() {
        let mut ring = Ring::new("test").expect("memfd");
        let pixels = vec![7u8; 5000];
        let mut offsets = Vec::new();
        for _ in 0..SLOTS {
            let (m, len) = ring
                .put(&header(5000), &[&pixels])
                .expect("put")
                .expect("a slot");
            assert_eq!((&m[..4], len), (&MAGIC[..], MESSAGE_LEN));
            offsets.push(u64::from_le_bytes(m[32..40].try_into().expect("8")));
        }
        assert_eq!(offsets, vec![0, 8192, 16384], "page-aligned slots");
        assert!(
            ring.put(&header(5000), &[&pixels]).expect("put").is_none(),
            "all held"
        );
        ring.take_done(&1u64.to_le_bytes());
        let (m, _) = ring
            .put(&header(5000), &[&pixels])
            .expect("put")
            .expect("slot 0 again");
        assert_eq!(u64::from_le_bytes(m[32..40].try_into().expect("8")), 0);
        assert_eq!(u64::from_le_bytes(m[40..48].try_into().expect("8")), 4);
        let mut back = vec![0u8; 5000];
        ring.memory.read_exact_at(&mut back, 0).expect("read");
        assert_eq!(back, pixels);
    }

    #[test]
    fn larger_frames_get_a_new_layout_past_the_old_one() {
        let mut ring = Ring::new("test").expect("memfd");
        ring.put(&header(100), &[&[1u8; 100]]).expect("put");
        let (m, _) = ring
            .put(&header(10000), &[&vec![2u8; 10000]])
            .expect("put")
            .expect("slot");
        let offset = u64::from_le_bytes(m[32..40].try_into().expect("8"));
        assert_eq!(offset, 3 * 4096, "past the three small slots");
    }

    #[test]
    fn a_timed_frame_carries_its_senders_time_after_the_message() {
        let mut ring = Ring::new("test").expect("memfd");
        let mut head = header(10);
        head.sender_time = Some(1_764_000_000_123_456_789);
        let (m, len) = ring.put(&head, &[&[0u8; 10]]).expect("put").expect("slot");
        assert_eq!((&m[..4], len), (&MAGIC_TIMED[..], MESSAGE_LEN + 8));
        assert_eq!(
            u64::from_le_bytes(m[48..56].try_into().expect("8")),
            1_764_000_000_123_456_789
        );
    }

    #[test]
    fn done_messages_may_arrive_in_pieces() {
        let mut ring = Ring::new("test").expect("memfd");
        let bytes = 9u64.to_le_bytes();
        ring.take_done(&bytes[..3]);
        assert_eq!(ring.done, None);
        ring.take_done(&bytes[3..]);
        assert_eq!(ring.done, Some(9));
    }
}
