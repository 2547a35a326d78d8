//! Recorders: a stream written to files by a small pipeline of its own (`appsrc → parser →
//! muxer → filesink`), fed by the stream's producers: a `record` output's segments (cut and
//! named by [`crate::record::writer`]) or a `file` output's file, one per run. The source's pipeline never holds a file: a disk that stalls or
//! fails costs the recording its own data (dropped after 3 s, counted; or the reader ends with
//! a `reader_error` event) while viewers and the other readers go on.
//!
//! A run's end reaches the reader as end-of-stream: the producers forward the source's EOS,
//! and [`Readers::finish`] waits (bounded) until the last segment is complete. A run that
//! failed gets its EOS from the reader itself, so even then the segment gets its index. The
//! reader of a relayed publisher lives as long as the publisher: the next one starts a new
//! segment.

use super::{HasPipeline, OwnPipeline, ReaderTable, Readers};
use crate::assemble::{FileTap, Plan, RecordTap, StreamTap};
use crate::events::{Event, EventBus};
use crate::record::Recordings;
use gst::prelude::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a reader may hold back while the disk is slow before it drops (as the branch queues
/// of the source's pipeline do).
const MAX_BEHIND: gst::ClockTime = gst::ClockTime::from_seconds(3);
/// How long a run's end may take to reach the readers, and their last segments to finish.
const FINISH_WITHIN: Duration = Duration::from_secs(5);

/// The running recorders (record and file outputs), by pipeline name.
pub struct RecordReaders {
    recordings: Arc<Recordings>,
    running: ReaderTable<RecordReader>,
}

/// A recorder; one that goes unfinished (its run dropped) leaves its file as written so far.
struct RecordReader {
    own: OwnPipeline,
    appsrcs: Vec<gst_app::AppSrc>,
    /// Set once the last segment is complete, or the reader failed.
    done: watch::Receiver<bool>,
    /// Writes a room's chat into the segments, while the reader lives.
    chat: Option<Chat>,
}

/// The task that captions a room participant's recording with the room's chat; it goes with
/// its reader.
struct Chat(tokio::task::JoinHandle<()>);

impl Drop for Chat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes every line of room `room`'s chat (its `chat` events) into the recording, as
/// "name: text", timed to when it was said.
async fn write_chat(
    room: String,
    captions: crate::record::writer::Captions,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    "{room}: {n} event(s) missed: chat lines may be missing from recordings"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        if event.kind != "chat" || event.pipeline != room {
            continue;
        }
        let from = event.fields["from"].as_str().unwrap_or("?");
        let line = format!("{from}: {}", event.fields["text"].as_str().unwrap_or(""));
        let captions = captions.clone();
        let _ = tokio::task::spawn_blocking(move || captions.say(&line)).await;
    }
}

impl RecordReaders {
    pub fn new(recordings: Arc<Recordings>) -> Arc<RecordReaders> {
        Arc::new(RecordReaders {
            recordings,
            running: ReaderTable::default(),
        })
    }

    /// Builds and starts the recorder of record output `tap`'s appsinks in `source`.
    fn start_record(
        &self,
        name: &str,
        source: &gst::Pipeline,
        tap: &RecordTap,
        events: &EventBus,
    ) -> Result<RecordReader, String> {
        // A room participant's stream (`room/participant`): the room's chat is recorded too.
        let room = name.split_once('/').map(|(room, _)| room);
        let dir = self.recordings.dir().join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        self.recordings.set_retention(name, tap.retention);
        let pipeline =
            super::reader_pipeline(&tap.launch(), &format!("{name}-record{}", tap.stream.index))?;
        let spec = crate::record::writer::WriterSpec {
            pipeline: name.to_string(),
            muxer: format!("out{}_mux", tap.stream.index),
            sink: format!("out{}_sink", tap.stream.index),
            extension: tap.extension(),
            segment: tap.segment,
            captions: room.is_some(),
        };
        let captions = crate::record::writer::attach(&pipeline, spec, &self.recordings)?;
        let done = watch_bus(&pipeline, name, tap.stream.index, events)?;
        let mut reader = start(pipeline, source, &tap.stream, done)?;
        if let Some(room) = room {
            reader.chat = Some(Chat(tokio::spawn(write_chat(
                room.to_string(),
                captions,
                events.subscribe(),
            ))));
        }
        Ok(reader)
    }
}

/// Builds and starts the recorder of file output `tap` (one file per run: `{time}` is its
/// start; missing directories are made).
fn start_file(
    name: &str,
    source: &gst::Pipeline,
    tap: &FileTap,
    events: &EventBus,
) -> Result<RecordReader, String> {
    let started = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let path = tap.path.replace("{time}", &started);
    if let Some(dir) = std::path::Path::new(&path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
    }
    let index = tap.stream.index;
    let pipeline = super::reader_pipeline(&tap.launch(), &format!("{name}-file{index}"))?;
    pipeline
        .by_name(&format!("out{index}_sink"))
        .ok_or("the file writer has no file sink")?
        .set_property("location", &path);
    let done = watch_bus(&pipeline, name, index, events)?;
    start(pipeline, source, &tap.stream, done)
}

/// Feeds a recorder's appsrcs `video` (and `audio`) from the appsinks of `stream` in `source`,
/// with its end forwarded (its last file is finished), and starts it.
fn start(
    pipeline: gst::Pipeline,
    source: &gst::Pipeline,
    stream: &StreamTap,
    done: watch::Receiver<bool>,
) -> Result<RecordReader, String> {
    let audio = stream
        .audio_sink
        .as_ref()
        .map(|(sink, _)| (sink.as_str(), "audio"));
    let tracks = [Some((stream.video_sink.as_str(), "video")), audio];
    let (mut appsrcs, mut links) = (Vec::new(), Vec::new());
    for (appsink, appsrc) in tracks.into_iter().flatten() {
        let (appsrc, link) = super::feed(source, appsink, &pipeline, appsrc, MAX_BEHIND)?;
        appsrcs.push(appsrc);
        links.push(link);
    }
    super::play_ahead(&pipeline)?;
    Ok(RecordReader {
        own: OwnPipeline {
            pipeline,
            output: format!("out{}", stream.index),
            links,
        },
        appsrcs,
        done,
        chat: None,
    })
}

/// Follows a reader's bus from GStreamer's threads (a sync handler only sends): its last
/// segment finished, or it failed (said, with a `reader_error` event).
fn watch_bus(
    pipeline: &gst::Pipeline,
    name: &str,
    index: usize,
    events: &EventBus,
) -> Result<watch::Receiver<bool>, String> {
    let bus = pipeline.bus().ok_or("the recorder has no bus")?;
    let (tx, rx) = watch::channel(false);
    let (name, events) = (name.to_string(), events.clone());
    bus.set_sync_handler(move |_, msg| {
        match msg.view() {
            // A record output's last segment is complete, or a file output's file.
            gst::MessageView::Element(e)
                if e.structure()
                    .is_some_and(|s| s.name() == crate::record::writer::FINISHED_MESSAGE) =>
            {
                tx.send_replace(true);
            }
            gst::MessageView::Eos(_) => {
                tx.send_replace(true);
            }
            gst::MessageView::Error(e) => {
                let error = crate::pipeline::describe_error(msg, &e.error(), e.debug().as_deref());
                tracing::warn!("{name}: output {index} failed: {error}");
                events.publish(Event::new(
                    "reader_error",
                    &name,
                    serde_json::json!({ "reader": format!("out{index}"), "error": error }),
                ));
                tx.send_replace(true);
            }
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
    Ok(rx)
}

impl RecordReader {
    /// Ends the reader: after a drained run the source's end-of-stream is on its way (the
    /// producers forward it behind the last buffers); after a failed one it ends its streams
    /// itself. Then it waits (bounded) for the last segment or file.
    async fn finish(mut self, name: &str, drained: bool) {
        if !drained {
            for appsrc in &self.appsrcs {
                let _ = appsrc.end_of_stream();
            }
        }
        if tokio::time::timeout(FINISH_WITHIN, self.done.wait_for(|done| *done))
            .await
            .is_err()
        {
            tracing::warn!(
                "{name}: the recording did not finish within {} s",
                FINISH_WITHIN.as_secs()
            );
        }
        let dropped: u64 = self.own.links.iter().map(|l| l.dropped()).sum();
        if dropped > 0 {
            tracing::warn!("{name}: the recorder fell behind and dropped {dropped} buffers");
        }
        self.own.links.clear();
        crate::pipeline::teardown(self.own.pipeline.clone()).await;
    }
}

impl HasPipeline for RecordReader {
    fn own(&self) -> &OwnPipeline {
        &self.own
    }
}

impl Readers for RecordReaders {
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        plan: &Plan,
        events: &EventBus,
    ) -> Result<(), String> {
        let mut readers = Vec::new();
        for tap in &plan.records {
            readers.push(self.start_record(name, pipeline, tap, events)?);
        }
        for tap in &plan.files {
            readers.push(start_file(name, pipeline, tap, events)?);
        }
        self.running.replace(name, readers);
        Ok(())
    }

    fn playing(&self, _name: &str, _pipeline: &gst::Pipeline) {}

    fn finish<'a>(
        &'a self,
        name: &'a str,
        drained: bool,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            for reader in self.running.take(name) {
                reader.finish(name, drained).await;
            }
        })
    }

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
