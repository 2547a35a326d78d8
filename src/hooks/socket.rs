//! `socket` hooks: the frames of a hook branch, in the framing of [`super::process`], served on
//! a TCP port (`listen = "127.0.0.1:7000"`) or a Unix socket (`listen = "unix:/path"`) to any
//! number of subscribers. Each subscriber has a queue of 2 frames: one that reads slowly skips
//! frames, never holds up the others or the pipeline. Subscribers only read; anything they
//! write is ignored.

use super::process::header;
use super::{Frame, FrameHook, HookEvent};
use crate::events::{Event, EventBus};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Frames waiting per subscriber.
const QUEUE: usize = 2;

type Subscribers = Arc<Mutex<Vec<SyncSender<Arc<Vec<u8>>>>>>;

pub struct SocketHook {
    subscribers: Subscribers,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    /// The Unix socket's file, removed when the hook stops.
    unix_path: Option<PathBuf>,
}

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl SocketHook {
    /// Listens on `listen` ("HOST:PORT" or "unix:PATH") and accepts subscribers on a thread.
    pub fn bind(listen: &str, pipeline: &str, events: EventBus) -> Result<SocketHook, String> {
        let (listener, unix_path) = match listen.strip_prefix("unix:") {
            Some(path) => {
                let path = PathBuf::from(path);
                // A socket file left by an earlier run (not any other kind of file).
                if std::fs::symlink_metadata(&path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(&path);
                }
                let l = std::os::unix::net::UnixListener::bind(&path)
                    .map_err(|e| format!("socket hook cannot listen on {}: {e}", path.display()))?;
                (Listener::Unix(l), Some(path))
            }
            None => {
                let l = std::net::TcpListener::bind(listen)
                    .map_err(|e| format!("socket hook cannot listen on {listen}: {e}"))?;
                (Listener::Tcp(l), None)
            }
        };
        let nonblocking = match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        };
        nonblocking.map_err(|e| format!("socket hook on {listen}: {e}"))?;
        let mut hook = SocketHook {
            subscribers: Subscribers::default(),
            stop: Arc::new(AtomicBool::new(false)),
            acceptor: None,
            unix_path,
        };
        let (subscribers, stop) = (hook.subscribers.clone(), hook.stop.clone());
        let (pipeline, what) = (pipeline.to_string(), listen.to_string());
        let acceptor = std::thread::Builder::new()
            .name("hook-socket".into())
            .spawn(move || accept(listener, subscribers, stop, pipeline, what, events))
            .map_err(|e| format!("cannot start a socket hook thread: {e}"))?;
        hook.acceptor = Some(acceptor);
        tracing::info!("socket hook serving frames on {listen}");
        Ok(hook)
    }
}

/// Takes subscribers until the hook stops; each gets a writer thread and a queue of 2 frames.
fn accept(
    listener: Listener,
    subscribers: Subscribers,
    stop: Arc<AtomicBool>,
    pipeline: String,
    listen: String,
    events: EventBus,
) {
    while !stop.load(Ordering::Relaxed) {
        let accepted: std::io::Result<(Box<dyn Write + Send>, String)> = match &listener {
            Listener::Tcp(l) => l.accept().and_then(|(s, peer)| {
                s.set_nonblocking(false)?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s) as Box<dyn Write + Send>, peer.to_string()))
            }),
            Listener::Unix(l) => l.accept().and_then(|(s, _)| {
                s.set_nonblocking(false)?;
                Ok((Box::new(s) as Box<dyn Write + Send>, "unix".to_string()))
            }),
        };
        match accepted {
            Ok((mut stream, peer)) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(QUEUE);
                let spawned = std::thread::Builder::new()
                    .name("hook-socket-out".into())
                    .spawn(move || {
                        for frame in rx {
                            if stream.write_all(&frame).is_err() {
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
                    events.publish(Event::new(
                        "hook",
                        &pipeline,
                        serde_json::json!({ "hook": listen, "kind": "subscriber", "fields": { "peer": peer } }),
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
        // Framed once, shared by every subscriber's queue.
        let length: usize = (0..frame.n_planes())
            .map(|p| frame.plane_data(p).len())
            .sum();
        let mut bytes = Vec::with_capacity(super::process::HEADER_LEN + length);
        bytes.extend_from_slice(&header(frame, length));
        for p in 0..frame.n_planes() {
            bytes.extend_from_slice(frame.plane_data(p));
        }
        let bytes = Arc::new(bytes);
        // A full queue skips this frame for that subscriber; a gone one leaves the list.
        subscribers.retain(|s| {
            !matches!(
                s.try_send(bytes.clone()),
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
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}
