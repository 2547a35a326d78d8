//! jpeg-tcp sources: a listener per pipeline takes one sender at a time (a tutorial's
//! Raspberry Pi, OpenCV frames as JPEG over a raw socket) and pushes its frames into the
//! current run's appsrc. Further connections wait in the listen backlog until the sender
//! leaves; a sender that comes back (the tutorial's client reconnects every second) goes on
//! with the same stream. A malformed frame closes that sender's connection, with the reason
//! logged and a `jpeg_sender_error` event; the pipeline goes on and the next sender is taken.
//!
//! The listener outlives a run of the pipeline (a restart hands it the new appsrc), and goes
//! when the pipeline stops.
//!
//! jpeg-tcp outputs go the other way: a sender per output connects to its receiver (the
//! tutorials' "AI server"), again every second while it cannot, and writes each JPEG frame
//! the pipeline hands it in the receiver's framing. Frames that come while it is not
//! connected, or faster than the receiver reads, are dropped and counted.

use super::Readers;
use super::jpeg_framing::{Decoder, Frame};
use crate::assemble::{JpegInTap, JpegOutTap, Plan};
use crate::events::{Event, EventBus};
use gst::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a jpeg-tcp source's sender is doing, for the API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JpegInStatus {
    pub listen: String,
    pub framing: String,
    /// The connected sender's address.
    pub sender: Option<String>,
    /// Frames pushed into the pipeline since the service started, of every sender.
    pub frames: u64,
    /// Frames dropped because the pipeline was not taking them (restarting, or busy).
    pub dropped: u64,
    /// Senders whose connection was closed for a malformed frame.
    pub rejected: u64,
    pub last_error: Option<String>,
    /// The size of the latest frame.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The stream's size (`WIDTHxHEIGHT`): the first frame's of the run (evened for H.264),
    /// which frames of another size are scaled to; None when `width`/`height` are asked.
    pub stream_size: Option<String>,
    /// How long ago (ms) the sender stamped the latest frame (ascii-base64 carries its
    /// time; both clocks are taken to be UTC).
    pub sender_latency_ms: Option<f64>,
}

/// The current run's way in: its appsrc, and the crop that odd sizes set.
struct Feed {
    appsrc: gst_app::AppSrc,
    /// The videocrop that evens odd sizes (H.264).
    even: Option<gst::Element>,
}

impl Feed {
    /// The run of `pipeline`; when no size is asked, its size is fixed at its first decoded
    /// frame's (shown in `status`).
    fn new(
        pipeline: &gst::Pipeline,
        tap: &JpegInTap,
        status: &Arc<Mutex<JpegInStatus>>,
    ) -> Result<Feed, String> {
        let appsrc = pipeline
            .by_name(&tap.appsrc)
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| format!("the assembled pipeline has no appsrc {}", tap.appsrc))?;
        let element = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| format!("the assembled pipeline has no {name}"))
        };
        let even = tap.even.as_deref().map(element).transpose()?;
        lock(status).stream_size = None;
        if let Some(size) = tap.size.as_deref().map(element).transpose()? {
            let decoded = element(&tap.decoder)?
                .static_pad("src")
                .ok_or("the JPEG decoder has no src pad")?;
            fix_size_at_first_frame(&decoded, size, even.is_some(), status.clone());
        }
        Ok(Feed { appsrc, even })
    }

    /// Readies the pipeline for a frame of `width`x`height`: an odd last row or column
    /// cropped (H.264).
    fn fit(&self, width: u32, height: u32) {
        let Some(even) = &self.even else { return };
        for (property, odd) in [("right", width % 2), ("bottom", height % 2)] {
            let odd = odd as i32;
            if even.property::<i32>(property) != odd {
                even.set_property(property, odd);
            }
        }
    }
}

/// Fixes a run's size at its first decoded frame's (evened for H.264, whose crop comes
/// first): `size`'s caps are set as the decoder announces that frame's, before they reach it.
/// Frames of another size later are scaled to it. From the decoded frame, not the JPEG's
/// header: a frame whose header lies does not decode, and fixes nothing.
fn fix_size_at_first_frame(
    decoded: &gst::Pad,
    size: gst::Element,
    even: bool,
    status: Arc<Mutex<JpegInStatus>>,
) {
    decoded.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        let Some(event) = info.event() else {
            return gst::PadProbeReturn::Ok;
        };
        let gst::EventView::Caps(caps) = event.view() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(s) = caps.caps().structure(0) else {
            return gst::PadProbeReturn::Ok;
        };
        let (Ok(mut w), Ok(mut h)) = (s.get::<i32>("width"), s.get::<i32>("height")) else {
            return gst::PadProbeReturn::Ok;
        };
        if even {
            (w, h) = (w - w % 2, h - h % 2);
        }
        if w < 2 || h < 2 {
            // Nothing an encoder takes: the next frame may do.
            return gst::PadProbeReturn::Ok;
        }
        let fixed = gst::Caps::builder("video/x-raw")
            .field("width", w)
            .field("height", h)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build();
        size.set_property("caps", &fixed);
        lock(&status).stream_size = Some(format!("{w}x{h}"));
        gst::PadProbeReturn::Remove
    });
}

struct Listener {
    tap: JpegInTap,
    /// The current run's way in; None between runs.
    target: Arc<Mutex<Option<Feed>>>,
    status: Arc<Mutex<JpegInStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a jpeg-tcp output is doing, for the API.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JpegOutStatus {
    pub output: String,
    pub connect: String,
    pub framing: String,
    pub connected: bool,
    /// Frames written to receivers since the pipeline started.
    pub sent: u64,
    /// Frames dropped: no receiver, or one that did not keep up.
    pub dropped: u64,
    pub error: Option<String>,
}

struct Sending {
    status: Arc<Mutex<JpegOutStatus>>,
    task: tokio::task::JoinHandle<()>,
    /// The decoder of a stream kept as it arrives (set to NULL when the sender goes).
    decoder: Option<super::OwnPipeline>,
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The jpeg-tcp sources' listeners and the jpeg-tcp outputs' senders, by pipeline name.
#[derive(Default)]
pub struct JpegSources {
    running: Mutex<HashMap<String, Listener>>,
    sending: Mutex<HashMap<String, Vec<Sending>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl JpegSources {
    /// Pipeline `name`'s jpeg-tcp outputs.
    pub fn outputs(&self, name: &str) -> Vec<JpegOutStatus> {
        lock(&self.sending)
            .get(name)
            .map(|all| all.iter().map(|s| lock(&s.status).clone()).collect())
            .unwrap_or_default()
    }

    /// Starts a sender for each jpeg-tcp output of this run.
    fn send(&self, name: &str, pipeline: &gst::Pipeline, plan: &Plan) -> Result<(), String> {
        let mut started = Vec::new();
        for tap in &plan.jpeg_out {
            let decoder = match &tap.decoder {
                Some(d) => Some(decoder(name, pipeline, tap.index, d)?),
                None => None,
            };
            let frames_from = decoder.as_ref().map_or(pipeline, |d| &d.pipeline);
            let appsink = frames_from
                .by_name(&tap.sink)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .ok_or_else(|| format!("{} has no appsink {}", frames_from.name(), tap.sink))?;
            let status = Arc::new(Mutex::new(JpegOutStatus {
                output: format!("out{}", tap.index),
                connect: tap.connect.clone(),
                framing: tap.framing.name().into(),
                ..JpegOutStatus::default()
            }));
            // The newest two frames wait for the socket; more are dropped, counted.
            // The buffer itself goes to the sender (a reference, not a copy of the JPEG).
            let (tx, rx) = tokio::sync::mpsc::channel::<gst::Buffer>(2);
            let counted = status.clone();
            appsink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |sink| {
                        let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if let Some(buffer) = sample.buffer_owned()
                            && tx.try_send(buffer).is_err()
                        {
                            lock(&counted).dropped += 1;
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
            let task = tokio::spawn(send_frames(
                name.to_string(),
                tap.clone(),
                rx,
                status.clone(),
            ));
            if let Some(d) = &decoder {
                // Its errors are its output's: logged and shown in its status.
                let (name, status) = (name.to_string(), status.clone());
                super::on_errors(&d.pipeline, move |_, error| {
                    tracing::warn!("{name}: jpeg-tcp output's decoder: {error}");
                    lock(&status).error = Some(format!("cannot decode the stream: {error}"));
                })?;
                super::start_decoding(&d.pipeline, "jpeg_keyframes")?;
            }
            started.push(Sending {
                status,
                task,
                decoder,
            });
        }
        // The old run's senders (and decoders) go outside the lock.
        let _old = if started.is_empty() {
            lock(&self.sending).remove(name)
        } else {
            // Counts go on across runs: the new senders start from the old ones' figures.
            let mut sending = lock(&self.sending);
            if let Some(old) = sending.get(name) {
                for (new, old) in started.iter().zip(old) {
                    let old = lock(&old.status).clone();
                    let mut new = lock(&new.status);
                    new.sent = old.sent;
                    new.dropped = old.dropped;
                }
            }
            sending.insert(name.to_string(), started)
        };
        Ok(())
    }

    /// The sender of pipeline `name`, if its source is jpeg-tcp.
    pub fn status(&self, name: &str) -> Option<JpegInStatus> {
        lock(&self.running)
            .get(name)
            .map(|l| lock(&l.status).clone())
    }
}

impl Readers for JpegSources {
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &Plan,
        events: &EventBus,
    ) -> Result<(), String> {
        self.send(name, pipeline, plan)?;
        let Some(tap) = &plan.jpeg_in else {
            return Ok(());
        };
        let mut running = lock(&self.running);
        if let Some(l) = running.get(name)
            && l.tap == *tap
        {
            let feed = Feed::new(pipeline, tap, &l.status)?;
            *lock(&l.target) = Some(feed);
            return Ok(());
        }
        running.remove(name);
        // Bound here, so an address that cannot be used fails the start with why.
        let std_listener = std::net::TcpListener::bind(&tap.listen)
            .map_err(|e| format!("jpeg-tcp source cannot listen on {}: {e}", tap.listen))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("jpeg-tcp source on {}: {e}", tap.listen))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| format!("jpeg-tcp source on {}: {e}", tap.listen))?;
        tracing::info!(
            "{name}: jpeg-tcp source listens on {} ({})",
            tap.listen,
            tap.framing.name()
        );
        let status = Arc::new(Mutex::new(JpegInStatus {
            listen: tap.listen.clone(),
            framing: tap.framing.name().into(),
            ..JpegInStatus::default()
        }));
        let target = Arc::new(Mutex::new(Some(Feed::new(pipeline, tap, &status)?)));
        let serving = Serving {
            name: name.to_string(),
            tap: tap.clone(),
            target: target.clone(),
            status: status.clone(),
            events: events.clone(),
        };
        let task = tokio::spawn(serving.run(listener));
        running.insert(
            name.to_string(),
            Listener {
                tap: tap.clone(),
                target,
                status,
                task,
            },
        );
        Ok(())
    }

    fn playing(&self, _name: &str, _pipeline: &gst::Pipeline) {}

    /// Restarting (or a publisher gone): the listener stays (senders stay connected); frames
    /// wait for the next run by being dropped, counted. Outputs' decoders go (their stream
    /// did); the outputs' figures stay for the next run's senders to go on from.
    fn suspend(&self, name: &str) {
        if let Some(l) = lock(&self.running).get(name) {
            *lock(&l.target) = None;
        }
        let decoders: Vec<_> = lock(&self.sending)
            .get_mut(name)
            .map(|all| all.iter_mut().filter_map(|s| s.decoder.take()).collect())
            .unwrap_or_default();
        drop(decoders);
    }

    fn detach(&self, name: &str) {
        let _listener = lock(&self.running).remove(name);
        let _senders = lock(&self.sending).remove(name);
    }

    /// What each jpeg-tcp output's decoder (on a stream kept as it arrives) dropped.
    fn dropped(&self, name: &str) -> Vec<(String, u64)> {
        lock(&self.sending)
            .get(name)
            .map(|all| {
                all.iter()
                    .filter_map(|s| s.decoder.as_ref())
                    .map(|d| (d.output.clone(), d.links.iter().map(|l| l.dropped()).sum()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One pipeline's listener at work.
struct Serving {
    name: String,
    tap: JpegInTap,
    target: Arc<Mutex<Option<Feed>>>,
    status: Arc<Mutex<JpegInStatus>>,
    events: EventBus,
}

impl Serving {
    /// Takes senders one at a time, for as long as the pipeline lives.
    async fn run(self, listener: tokio::net::TcpListener) {
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("{}: jpeg-tcp accept failed: {e}", self.name);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            let peer = peer.to_string();
            tracing::info!("{}: jpeg-tcp sender {peer} connected", self.name);
            lock(&self.status).sender = Some(peer.clone());
            self.publish(
                "jpeg_sender_connected",
                serde_json::json!({ "sender": peer }),
            );
            let result = self.read_sender(socket).await;
            lock(&self.status).sender = None;
            match result {
                Ok(()) => {
                    tracing::info!("{}: jpeg-tcp sender {peer} left", self.name);
                    self.publish("jpeg_sender_left", serde_json::json!({ "sender": peer }));
                }
                Err(why) => {
                    tracing::warn!("{}: jpeg-tcp sender {peer} disconnected: {why}", self.name);
                    {
                        let mut s = lock(&self.status);
                        s.rejected += 1;
                        s.last_error = Some(why.clone());
                    }
                    self.publish(
                        "jpeg_sender_error",
                        serde_json::json!({ "sender": peer, "error": why }),
                    );
                }
            }
        }
    }

    fn publish(&self, kind: &str, fields: serde_json::Value) {
        self.events.publish(Event::new(kind, &self.name, fields));
    }

    /// Reads frames until the sender leaves (`Ok`) or sends one that is malformed (`Err`).
    async fn read_sender(&self, mut socket: tokio::net::TcpStream) -> Result<(), String> {
        let mut decoder = Decoder::new(self.tap.framing, self.tap.max_frame_bytes);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match socket.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                // A reset is a sender gone (killed, unplugged), not a malformed stream.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(format!("reading failed: {e}")),
            };
            decoder.push(&buf[..n]);
            while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                self.push(frame)?;
            }
        }
    }

    /// Checks a frame's JPEG and pushes it into the pipeline (dropped, counted, when the
    /// pipeline is not taking frames now).
    fn push(&self, frame: Frame) -> Result<(), String> {
        let (width, height) = jpeg_size(&frame.jpeg)?;
        let latency = frame.sender_time.map(|t| {
            let now = chrono::Utc::now().naive_utc();
            (now - t).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
        });
        let mut buffer = gst::Buffer::from_mut_slice(frame.jpeg);
        if let Some(t) = frame.sender_time
            && let Some(ns) = t.and_utc().timestamp_nanos_opt()
            && let Ok(ns) = u64::try_from(ns)
            && let Some(b) = buffer.get_mut()
        {
            // The sender's time travels with the frame (hooks read it).
            gst::ReferenceTimestampMeta::add(
                b,
                &sender_time_caps(),
                gst::ClockTime::from_nseconds(ns),
                gst::ClockTime::NONE,
            );
        }
        let pushed = match lock(&self.target).as_ref() {
            Some(feed) => {
                feed.fit(width, height);
                feed.appsrc.push_buffer(buffer).is_ok()
            }
            None => false,
        };
        let mut s = lock(&self.status);
        if pushed {
            s.frames += 1;
        } else {
            s.dropped += 1;
        }
        s.width = Some(width);
        s.height = Some(height);
        if latency.is_some() {
            s.sender_latency_ms = latency;
        }
        Ok(())
    }
}

/// A jpeg-tcp output's sender: connects (again every second while it cannot) and writes each
/// frame in the receiver's framing, until the run ends (its frames' channel closes).
async fn send_frames(
    name: String,
    tap: JpegOutTap,
    mut frames: tokio::sync::mpsc::Receiver<gst::Buffer>,
    status: Arc<Mutex<JpegOutStatus>>,
) {
    let retry = std::time::Duration::from_secs(1);
    loop {
        let mut socket = match tokio::net::TcpStream::connect(&tap.connect).await {
            Ok(s) => s,
            Err(e) => {
                let error = format!("cannot connect to {}: {e}", tap.connect);
                if lock(&status).error.as_deref() != Some(error.as_str()) {
                    tracing::warn!("{name}: jpeg-tcp output {error}");
                }
                lock(&status).error = Some(error);
                // Frames that come meanwhile are dropped (counted as they fail to queue).
                let deadline = tokio::time::Instant::now() + retry;
                while let Ok(frame) = tokio::time::timeout_at(deadline, frames.recv()).await {
                    if frame.is_none() {
                        return;
                    }
                    lock(&status).dropped += 1;
                }
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        tracing::info!("{name}: jpeg-tcp output connected to {}", tap.connect);
        {
            let mut s = lock(&status);
            s.connected = true;
            s.error = None;
        }
        let ended = loop {
            let Some(jpeg) = frames.recv().await else {
                // The stream is gone (the run ended, or its publisher left): so is the
                // connection.
                lock(&status).connected = false;
                return;
            };
            let Ok(jpeg) = jpeg.map_readable() else {
                continue;
            };
            let now = chrono::Utc::now().naive_utc();
            let bytes = super::jpeg_framing::encode(tap.framing, &jpeg, now);
            if let Err(e) = socket.write_all(&bytes).await {
                break format!("{} went away: {e}", tap.connect);
            }
            lock(&status).sent += 1;
        };
        tracing::info!("{name}: jpeg-tcp output: {ended}");
        {
            let mut s = lock(&status);
            s.connected = false;
            s.error = Some(ended);
        }
        tokio::time::sleep(retry).await;
    }
}

/// What a decoder may hold back before it drops (it skips to the next keyframe).
const DECODER_BEHIND: gst::ClockTime = gst::ClockTime::from_seconds(2);

/// The decoder of output `index` on a stream kept as it arrives: a reader pipeline of its own,
/// fed from the source's encoded video behind a bounded queue (not yet playing).
fn decoder(
    name: &str,
    source: &gst::Pipeline,
    index: usize,
    d: &crate::assemble::JpegDecoder,
) -> Result<super::OwnPipeline, String> {
    let output = format!("out{index}");
    let reader = super::reader_pipeline(&d.launch, &format!("{name}-{output}-jpeg"))?;
    let (_, link) = super::feed(source, &d.encoded_sink, &reader, "video", DECODER_BEHIND)?;
    Ok(super::OwnPipeline {
        pipeline: reader,
        output,
        links: vec![link],
    })
}

/// The caps of the reference timestamp a jpeg-tcp frame carries: the sender's clock, UTC.
pub fn sender_time_caps() -> gst::Caps {
    gst::Caps::new_empty_simple(crate::hooks::SENDER_TIME)
}

/// The largest picture side taken (8K video is 7680 wide): a header that claims more is
/// refused before anything is decoded or allocated for it.
const MAX_SIDE: u32 = 8192;

/// A JPEG's picture size, from its headers; why not when they do not read.
fn jpeg_size(jpeg: &[u8]) -> Result<(u32, u32), String> {
    let cursor = zune_jpeg::zune_core::bytestream::ZCursor::new(jpeg);
    let mut decoder = zune_jpeg::JpegDecoder::new(cursor);
    decoder
        .decode_headers()
        .map_err(|e| format!("a frame is not a JPEG that decodes: {e:?}"))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or("a frame is not a JPEG that decodes: it has no size")?;
    match (u32::try_from(w), u32::try_from(h)) {
        (Ok(w), Ok(h)) if w > MAX_SIDE || h > MAX_SIDE => Err(format!(
            "a frame's JPEG claims {w}x{h}: larger than {MAX_SIDE}x{MAX_SIDE}"
        )),
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!("a frame's JPEG has an impossible size {w}x{h}")),
    }
}
