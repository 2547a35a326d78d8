//! `socket` hooks: the frames of a hook branch, in the framing of [`super::process`], served on
//! a TCP port (`listen = "127.0.0.1:7000"`) or a Unix socket (`listen = "unix:/path"`) to any
//! number of subscribers (at most [`MAX_SUBSCRIBERS`]). Each subscriber has a queue of 2
//! frames: one that reads slowly skips frames, never holds up the others or the pipeline; one
//! that stops reading for [`WRITE_TIMEOUT`] is disconnected. Subscribers only read; anything
//! they write is ignored — except with `transport = "shm"` (Unix sockets only): then each
//! subscriber gets a ring of shared memory of its own and frame messages (see [`super::shm`]),
//! and tells when it is done with a frame.

use super::framing::Head;
use super::{Frame, FrameHook, HookEvent};
use crate::events::{Event, EventBus};
use gst_video::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Frames waiting per subscriber.
const QUEUE: usize = 2;
/// Subscribers at once; more are turned away.
pub const MAX_SUBSCRIBERS: usize = 16;
/// A subscriber that takes no bytes for this long is disconnected.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to keep trying an address an earlier run of the hook is still letting go of.
const BIND_RETRY: Duration = Duration::from_secs(2);

/// A frame for the subscribers: its header and a reference to the buffer (no pixel copy).
struct Shared {
    head: Head,
    buffer: gst::Buffer,
    info: gst_video::VideoInfo,
}

impl Shared {
    /// Into a subscriber's shared memory, announced on its socket (see [`super::shm::Ring::deliver`]).
    fn put_into(
        &self,
        ring: &mut super::shm::Ring,
        stream: &mut std::os::unix::net::UnixStream,
    ) -> std::io::Result<()> {
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(&self.buffer, &self.info)
            .map_err(|_| std::io::Error::other("cannot map the frame"))?;
        let planes: Vec<&[u8]> = (0..frame.n_planes())
            .map(|p| frame.plane_data(p).unwrap_or(&[]))
            .collect();
        ring.deliver(stream, &self.head, &planes)
    }

    fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.head.write_to(out)?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(&self.buffer, &self.info)
            .map_err(|_| std::io::Error::other("cannot map the frame"))?;
        for p in 0..frame.n_planes() {
            out.write_all(frame.plane_data(p).unwrap_or(&[]))?;
        }
        Ok(())
    }
}

type Subscribers = Arc<Mutex<Vec<SyncSender<Arc<Shared>>>>>;

pub struct SocketHook {
    /// Frames carry their sender's time.
    sender_time: bool,
    subscribers: Subscribers,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    /// The Unix socket's file and its inode, removed when the hook stops (if still ours).
    unix_path: Option<(PathBuf, u64)>,
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl SocketHook {
    fn listen(listen: &str) -> std::io::Result<(Listener, Option<(PathBuf, u64)>)> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Some(path) = listen.strip_prefix("unix:") else {
            return Ok((Listener::Tcp(std::net::TcpListener::bind(listen)?), None));
        };
        let path = PathBuf::from(path);
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            // A socket left by an earlier run may go; a live one (or any other file) stays.
            let live = std::os::unix::net::UnixStream::connect(&path).is_ok();
            if !meta.file_type().is_socket() || live {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "the path is in use",
                ));
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        let inode = std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
        Ok((Listener::Unix(listener), Some((path, inode))))
    }

    /// Listens on `listen` ("HOST:PORT" or "unix:PATH") and accepts subscribers on a thread;
    /// `shared_memory`: frames go through shared memory (Unix sockets only); `sender_time`:
    /// frames carry their sender's time (`MWF2`/`MWS2`).
    pub fn bind(
        listen: &str,
        shared_memory: bool,
        sender_time: bool,
        pipeline: &str,
        events: EventBus,
    ) -> Result<SocketHook, String> {
        let deadline = std::time::Instant::now() + BIND_RETRY;
        let (listener, unix_path) = loop {
            match Self::listen(listen) {
                Ok(bound) => break bound,
                // The previous run of this pipeline may be closing it right now.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("socket hook cannot listen on {listen}: {e}")),
            }
        };
        let nonblocking = match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        };
        nonblocking.map_err(|e| format!("socket hook on {listen}: {e}"))?;
        let mut hook = SocketHook {
            sender_time,
            subscribers: Subscribers::default(),
            stop: Arc::new(AtomicBool::new(false)),
            acceptor: None,
            unix_path,
        };
        let (subscribers, stop) = (hook.subscribers.clone(), hook.stop.clone());
        let (pipeline, what) = (pipeline.to_string(), listen.to_string());
        let acceptor = std::thread::Builder::new()
            .name("hook-socket".into())
            .spawn(move || {
                accept(
                    listener,
                    shared_memory,
                    subscribers,
                    stop,
                    pipeline,
                    what,
                    events,
                )
            })
            .map_err(|e| format!("cannot start a socket hook thread: {e}"))?;
        hook.acceptor = Some(acceptor);
        tracing::info!("socket hook serving frames on {listen}");
        Ok(hook)
    }
}

/// A subscriber's connection, and how frames reach it.
enum Subscriber {
    Stream(Box<dyn Write + Send>),
    Shm(std::os::unix::net::UnixStream, super::shm::Ring),
}

impl Subscriber {
    fn send(&mut self, frame: &Shared) -> std::io::Result<()> {
        match self {
            Subscriber::Stream(out) => frame.write_to(out),
            Subscriber::Shm(stream, ring) => frame.put_into(ring, stream),
        }
    }
}

/// Takes subscribers until the hook stops; each gets a writer thread and a queue of 2 frames.
fn accept(
    listener: Listener,
    shared_memory: bool,
    subscribers: Subscribers,
    stop: Arc<AtomicBool>,
    pipeline: String,
    listen: String,
    events: EventBus,
) {
    while !stop.load(Ordering::Relaxed) {
        let accepted: std::io::Result<(Subscriber, String)> = match &listener {
            Listener::Tcp(l) => l.accept().and_then(|(s, peer)| {
                s.set_nonblocking(false)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                let _ = s.set_nodelay(true);
                Ok((Subscriber::Stream(Box::new(s)), peer.to_string()))
            }),
            Listener::Unix(l) => l.accept().and_then(|(s, _)| {
                s.set_nonblocking(false)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                let subscriber = if shared_memory {
                    let ring = super::shm::Ring::new("socket-hook")?;
                    ring.hello(&s)?;
                    Subscriber::Shm(s, ring)
                } else {
                    Subscriber::Stream(Box::new(s))
                };
                Ok((subscriber, "unix".to_string()))
            }),
        };
        match accepted {
            Ok((_, peer))
                if subscribers.lock().unwrap_or_else(|p| p.into_inner()).len()
                    >= MAX_SUBSCRIBERS =>
            {
                tracing::warn!(
                    "{pipeline}: frame subscriber {peer} turned away: {MAX_SUBSCRIBERS} already"
                );
            }
            Ok((mut subscriber, peer)) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Shared>>(QUEUE);
                let spawned = std::thread::Builder::new()
                    .name("hook-socket-out".into())
                    .spawn(move || {
                        for frame in rx {
                            if subscriber.send(&frame).is_err() {
                                return;
                            }
                        }
                    });
                if spawned.is_ok() {
                    subscribers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(tx);
                    tracing::info!("{pipeline}: frame subscriber {peer} on {listen}");
                    events.publish(Event::hook(
                        &pipeline,
                        &listen,
                        "subscriber",
                        serde_json::json!({ "peer": peer }),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::debug!("socket hook on {listen}: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl FrameHook for SocketHook {
    fn on_frame(&mut self, frame: &Frame) -> Option<HookEvent> {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subscribers.is_empty() {
            return None;
        }
        // Framed once and shared by every subscriber's queue: the header, and a reference to
        // the buffer whose planes each writer thread sends (the pixels are not copied).
        let length: usize = (0..frame.n_planes())
            .map(|p| frame.plane_data(p).len())
            .sum();
        let (buffer, info) = frame.shared();
        let shared = Arc::new(Shared {
            head: Head::new(frame, length, self.sender_time),
            buffer,
            info,
        });
        // A full queue skips this frame for that subscriber; a gone one leaves the list.
        subscribers.retain(|s| {
            !matches!(
                s.try_send(shared.clone()),
                Err(TrySendError::Disconnected(_))
            )
        });
        None
    }
}

impl Drop for SocketHook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the queues ends the writer threads.
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // The listener closes within 50 ms; a restart can then listen on the same address.
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        if let Some((path, inode)) = &self.unix_path {
            use std::os::unix::fs::MetadataExt;
            // Only our own socket: a newer run may have bound the path since.
            if std::fs::metadata(path).is_ok_and(|m| m.ino() == *inode) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
