//! HLS readers: a stream cut into MPEG-TS segments with a live playlist, for players that
//! speak neither WebRTC nor RTSP (phones' browsers, smart TVs, hls.js, ffmpeg, VLC). One small
//! pipeline per output, fed by the stream's producers as encoded or published:
//! `appsrc → h264parse → hlssink2` (video never re-encoded), the audio as AAC (a publisher's
//! Opus is transcoded, since HLS players expect AAC in MPEG-TS).
//!
//! GStreamer's `hlssink2` (plugins-bad) writes the files: segments start on keyframes, which
//! the reader asks the source for when none has come for a segment's length (a publisher gets
//! a PLI; the shared encoder's keyframe interval is 1 s by default), and hlssink2 deletes
//! segments that have left the playlist, keeping two more than the playlist names for players
//! that read a slightly older playlist. The files live in a temporary directory of the
//! service's own (`mediaweave-hls-*`, removed at exit), one directory per pipeline emptied at
//! each run; the HTTP server serves them at `/hls/{name}/…`.

use super::{HasPipeline, OwnPipeline, ReaderTable, Readers};
use crate::assemble::{HlsTap, Plan};
use crate::description::AudioCodec;
use crate::events::{Event, EventBus};
use gst::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The playlist's file name in a pipeline's directory.
pub const PLAYLIST: &str = "index.m3u8";

/// How much of the stream a segmenter may fall behind before its queue drops.
const MAX_BEHIND: gst::ClockTime = gst::ClockTime::from_seconds(3);

/// The running HLS readers and the directory their files go to.
#[derive(Default)]
pub struct HlsReaders {
    root: Mutex<Option<tempfile::TempDir>>,
    running: ReaderTable<HlsReader>,
}

struct HlsReader {
    own: OwnPipeline,
    dir: PathBuf,
}

impl HasPipeline for HlsReader {
    fn own(&self) -> &OwnPipeline {
        &self.own
    }
}

impl Drop for HlsReader {
    fn drop(&mut self) {
        // Stopped first (OwnPipeline's drop runs after this), then nothing is left to serve.
        let _ = self.own.pipeline.set_state(gst::State::Null);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl HlsReaders {
    /// The directory of `name`'s segments and playlist while it has an HLS output running.
    pub fn dir(&self, name: &str) -> Option<PathBuf> {
        self.running
            .with(name, |readers| readers.first().map(|r| r.dir.clone()))
            .flatten()
    }

    /// `name`'s directory, created empty under the service's temporary directory.
    fn fresh_dir(&self, name: &str) -> Result<PathBuf, String> {
        let mut root = self.root.lock().unwrap_or_else(|p| p.into_inner());
        if root.is_none() {
            *root = Some(
                tempfile::Builder::new()
                    .prefix("mediaweave-hls-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a directory for HLS segments: {e}"))?,
            );
        }
        let dir = root
            .as_ref()
            .map(|r| r.path().join(name))
            .ok_or("no HLS directory")?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }
}

/// The segmenter's launch line: appsrcs `video` (and `audio`) into `hlssink2`.
fn launch(tap: &HlsTap, dir: &Path) -> Result<String, String> {
    let i = tap.stream.index;
    const APPSRC: &str = "appsrc format=time is-live=true";
    let seconds = tap.segment.as_secs().max(1);
    let quote = |p: PathBuf| format!("\"{}\"", p.display().to_string().replace('"', "\\\""));
    let mut line = format!(
        "hlssink2 name=out{i}_sink target-duration={seconds} send-keyframe-requests=false playlist-length={} max-files={} \
         location={} playlist-location={} \
         {APPSRC} name=video ! h264parse name=video_parse ! out{i}_sink.video",
        tap.playlist_length,
        tap.playlist_length + 2,
        quote(dir.join("segment%05d.ts")),
        quote(dir.join(PLAYLIST)),
    );
    match tap.stream.audio_sink.as_ref().map(|(_, codec)| *codec) {
        Some(AudioCodec::Aac) => {
            line.push_str(&format!(
                " {APPSRC} name=audio ! aacparse ! out{i}_sink.audio"
            ));
        }
        Some(AudioCodec::Opus) => {
            let aac = crate::assemble::audio_encoder(AudioCodec::Aac, 128)?;
            line.push_str(&format!(
                " {APPSRC} name=audio ! opusparse ! opusdec ! audioconvert ! audioresample ! {aac} ! aacparse ! out{i}_sink.audio"
            ));
        }
        None => {}
    }
    Ok(line)
}

/// Builds and starts one HLS reader of `tap`'s appsinks in `source`.
fn start(
    readers: &HlsReaders,
    name: &str,
    source: &gst::Pipeline,
    tap: &HlsTap,
    events: &EventBus,
) -> Result<HlsReader, String> {
    let dir = readers.fresh_dir(name)?;
    let index = tap.stream.index;
    let pipeline = super::reader_pipeline(&launch(tap, &dir)?, &format!("{name}-hls{index}"))?;
    watch_bus(&pipeline, name, index, events)?;
    let audio = tap
        .stream
        .audio_sink
        .as_ref()
        .map(|(sink, _)| (sink, "audio"));
    let mut links = Vec::new();
    for (appsink, appsrc) in [Some((&tap.stream.video_sink, "video")), audio]
        .into_iter()
        .flatten()
    {
        links.push(super::feed(source, appsink, &pipeline, appsrc, MAX_BEHIND)?.1);
    }
    // Segments start on keyframes: the first is asked for now, the later ones whenever none
    // has come for a segment's length (a publisher sends none unasked, and hlssink2's own
    // requests, timed ahead, are not answered by one).
    if let Some(asker) = pipeline
        .by_name("video_parse")
        .and_then(|parse| super::KeyframeAsker::on(&parse, Some(tap.segment)))
    {
        asker.ask();
    }
    super::play_ahead(&pipeline)?;
    tracing::info!("{name}: serving HLS at /hls/{name}/{PLAYLIST}");
    Ok(HlsReader {
        own: OwnPipeline {
            pipeline,
            output: format!("out{index}"),
            links,
        },
        dir,
    })
}

/// A segmenter that fails (a full disk) is said, with a `reader_error` event; the stream and
/// its other readers go on.
fn watch_bus(
    pipeline: &gst::Pipeline,
    name: &str,
    index: usize,
    events: &EventBus,
) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("the HLS segmenter has no bus")?;
    let (name, events) = (name.to_string(), events.clone());
    bus.set_sync_handler(move |_, msg| {
        if let gst::MessageView::Error(e) = msg.view() {
            let error = crate::pipeline::describe_error(msg, &e.error(), e.debug().as_deref());
            tracing::warn!("{name}: HLS output {index} failed: {error}");
            events.publish(Event::new(
                "reader_error",
                &name,
                serde_json::json!({ "reader": format!("out{index}"), "error": error }),
            ));
        }
        gst::BusSyncReply::Drop
    });
    Ok(())
}

impl Readers for HlsReaders {
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &Plan,
        events: &EventBus,
    ) -> Result<(), String> {
        // One playlist per pipeline: `/hls/{name}/index.m3u8` (its first hls output).
        let Some(tap) = plan.hls.first() else {
            return Ok(());
        };
        // The previous run's segments go before this run's directory is made.
        drop(self.running.take(name));
        match start(self, name, pipeline, tap, events) {
            Ok(reader) => self.running.replace(name, vec![reader]),
            Err(e) => {
                tracing::warn!("{name}: output {}: {e}", tap.stream.index);
                events.publish(Event::new(
                    "reader_error",
                    name,
                    serde_json::json!({ "reader": format!("out{}", tap.stream.index), "error": e }),
                ));
            }
        }
        Ok(())
    }

    fn playing(&self, _name: &str, _pipeline: &gst::Pipeline) {}

    fn pipelines(&self, name: &str) -> Vec<gst::Pipeline> {
        self.running.pipelines(name)
    }

    fn dropped(&self, name: &str) -> Vec<(String, u64)> {
        self.running.dropped(name)
    }

    fn detach(&self, name: &str) {
        drop(self.running.take(name));
    }
}
