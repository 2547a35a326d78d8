//! RTSP readers: one embedded RTSP server (gst-rtsp-server, `serve --rtsp-listen`) for every
//! pipeline, a mount `/{name}` per pipeline with an `rtsp` output. A mount's media is shared by
//! all its clients (TCP or UDP transport) and fed by the stream's producers as it is encoded or
//! published, never re-encoded: `appsrc → parser → payloader`, H.264 and the audio (AAC or
//! Opus). The server listens from the first mount on; a port that cannot be bound costs the RTSP
//! outputs (a warning and a `reader_error` event), never the stream. With tokens, a client
//! needs one that may view the pipeline, as the Basic-auth password ([`super::rtsp_auth`]).
//!
//! A media runs on its source's clock with its base time moved back by [`CLOCK_MARGIN`], as
//! the other readers do, so every buffer is due when it arrives; a new media asks the source
//! for a keyframe, so the first client does not wait for the next one.

use super::{CLOCK_MARGIN, Readers};
use crate::assemble::{Plan, StreamTap};
use crate::auth::Auth;
use crate::description::AudioCodec;
use crate::events::{Event, EventBus};
use gst::prelude::*;
use gst_rtsp_server::prelude::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The RTSP server and its mounts.
pub struct RtspReaders {
    listen: SocketAddr,
    /// The service's tokens, when it has any: clients then need one that may view the mount.
    auth: Option<Arc<Auth>>,
    server: Mutex<Option<Server>>,
    /// The mounted pipelines.
    mounted: Mutex<HashMap<String, String>>,
}

/// The server, attached to a main context of its own that a thread runs.
struct Server {
    server: gst_rtsp_server::RTSPServer,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl RtspReaders {
    /// `auth`: the service's tokens; with none configured every client may play every mount.
    pub fn new(listen: SocketAddr, auth: Arc<Auth>) -> RtspReaders {
        RtspReaders {
            listen,
            auth: (!auth.is_open()).then_some(auth),
            server: Mutex::new(None),
            mounted: Mutex::new(HashMap::new()),
        }
    }

    /// The server, started (listening) on first use.
    fn server(&self) -> Result<gst_rtsp_server::RTSPServer, String> {
        let mut slot = self.server.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.server.clone());
        }
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address(&self.listen.ip().to_string());
        server.set_service(&self.listen.port().to_string());
        if let Some(auth) = &self.auth {
            server.set_auth(Some(&super::rtsp_auth::TokenAuth::new(auth.clone())));
        }
        let context = glib::MainContext::new();
        server
            .attach(Some(&context))
            .map_err(|e| format!("the RTSP server cannot listen on {}: {e}", self.listen))?;
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let looping = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || looping.run())
            .map_err(|e| format!("cannot start the RTSP server's thread: {e}"))?;
        tracing::info!("RTSP server listening on rtsp://{}", self.listen);
        *slot = Some(Server {
            server: server.clone(),
            main_loop,
            thread: Some(thread),
        });
        Ok(server)
    }

    fn mount(&self, name: &str, source: &gst::Pipeline, tap: &StreamTap) -> Result<(), String> {
        let server = self.server()?;
        let mounts = server
            .mount_points()
            .ok_or("the RTSP server has no mount points")?;
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(&launch(tap));
        factory.set_shared(true);
        let (_, video) = super::producer(source, &tap.video_sink)?;
        let audio = match &tap.audio_sink {
            Some((sink, _)) => Some(super::producer(source, sink)?.1),
            None => None,
        };
        let source = source.downgrade();
        let mount = name.to_string();
        factory.connect_media_configure(move |_, media| {
            if let Err(e) = configure(media, &source, &video, audio.as_ref()) {
                tracing::warn!("{mount}: RTSP media: {e}");
            }
        });
        let path = format!("/{name}");
        mounts.add_factory(&path, factory);
        self.mounted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), path);
        Ok(())
    }

    fn unmount(&self, name: &str) {
        let path = self
            .mounted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let server = self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|s| s.server.clone());
        if let (Some(path), Some(mounts)) = (path, server.and_then(|s| s.mount_points())) {
            mounts.remove_factory(&path);
        }
    }
}

/// A mount's media: `video` (H.264) into `pay0`, `audio` into `pay1`.
fn launch(tap: &StreamTap) -> String {
    let src = |name: &str| format!("appsrc name={name} is-live=true format=time");
    let mut line = format!(
        "( {} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency",
        src("video")
    );
    match tap.audio_sink.as_ref().map(|(_, codec)| codec) {
        Some(AudioCodec::Aac) => line.push_str(&format!(
            " {} ! aacparse ! rtpmp4gpay name=pay1 pt=97",
            src("audio")
        )),
        Some(AudioCodec::Opus) => line.push_str(&format!(
            " {} ! opusparse ! rtpopuspay name=pay1 pt=97",
            src("audio")
        )),
        None => {}
    }
    line.push_str(" )");
    line
}

/// A new media of the mount (its first client): on the source's clock, its appsrcs fed by the
/// stream's producers for as long as it is prepared, and a keyframe asked for.
fn configure(
    media: &gst_rtsp_server::RTSPMedia,
    source: &gst::glib::WeakRef<gst::Pipeline>,
    video: &gst_utils::streamproducer::StreamProducer,
    audio: Option<&gst_utils::streamproducer::StreamProducer>,
) -> Result<(), String> {
    let source = source.upgrade().ok_or("the stream has ended")?;
    let element = media.element();
    let bin = element
        .downcast_ref::<gst::Bin>()
        .ok_or("the media is not a bin")?;
    if let Some(pipeline) = element
        .parent()
        .and_then(|p| p.downcast::<gst::Pipeline>().ok())
        && let (Some(clock), Some(base)) = (source.clock(), source.base_time())
    {
        pipeline.use_clock(Some(&clock));
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(base.saturating_sub(CLOCK_MARGIN));
    }
    let appsrc = |name: &str| -> Result<gst_app::AppSrc, String> {
        bin.by_name(name)
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| format!("the media has no appsrc {name}"))
    };
    let video_src = appsrc("video")?;
    let mut links = vec![
        video
            .add_consumer(&video_src)
            .map_err(|e| format!("cannot feed the media: {e}"))?,
    ];
    if let Some(audio) = audio {
        links.push(
            audio
                .add_consumer(&appsrc("audio")?)
                .map_err(|e| format!("cannot feed the media: {e}"))?,
        );
    }
    if let Some(pad) = video_src.static_pad("src") {
        let request = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        pad.send_event(request);
    }
    // The feeds last as long as the media is prepared (clients come and go within).
    let links = Mutex::new(Some(links));
    media.connect_unprepared(move |_| {
        drop(links.lock().unwrap_or_else(|p| p.into_inner()).take());
    });
    Ok(())
}

impl Readers for RtspReaders {
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &Plan,
        events: &EventBus,
    ) -> Result<(), String> {
        // One mount per pipeline: `rtsp://HOST:PORT/{name}` (its first rtsp output).
        let Some(tap) = plan.rtsp.first() else {
            return Ok(());
        };
        self.unmount(name);
        if let Err(e) = self.mount(name, pipeline, tap) {
            tracing::warn!("{name}: output {}: {e}", tap.index);
            events.publish(Event::new(
                "reader_error",
                name,
                serde_json::json!({ "reader": format!("out{}", tap.index), "error": e }),
            ));
        }
        Ok(())
    }

    fn playing(&self, _name: &str, _pipeline: &gst::Pipeline) {}

    fn detach(&self, name: &str) {
        self.unmount(name);
    }
}
