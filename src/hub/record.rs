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

use super::Readers;
use crate::assemble::{FileTap, Plan, RecordTap};
use crate::events::{Event, EventBus};
use crate::record::Recordings;
use gst::prelude::*;
use gst_utils::streamproducer::ConsumptionLink;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
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
    running: Mutex<HashMap<String, Vec<RecordReader>>>,
}

struct RecordReader {
    pipeline: gst::Pipeline,
    /// Where the reader's data comes from: ended once these have seen end-of-stream.
    sources: Vec<gst::glib::WeakRef<gst_app::AppSink>>,
    appsrcs: Vec<gst_app::AppSrc>,
    /// Set once the last segment is complete, or the reader failed.
    done: watch::Receiver<bool>,
    /// The output it writes, `out{N}`.
    output: String,
    links: Vec<ConsumptionLink>,
}

impl RecordReaders {
    pub fn new(recordings: Arc<Recordings>) -> Arc<RecordReaders> {
        Arc::new(RecordReaders {
            recordings,
            running: Mutex::default(),
        })
    }

    fn take(&self, name: &str) -> Vec<RecordReader> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .unwrap_or_default()
    }

    /// Builds and starts the recorder of record output `tap`'s appsinks in `source`.
    fn start_record(
        &self,
        name: &str,
        source: &gst::Pipeline,
        tap: &RecordTap,
        events: &EventBus,
    ) -> Result<RecordReader, String> {
        let dir = self.recordings.dir().join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        self.recordings.set_retention(name, tap.retention);
        let pipeline =
            super::reader_pipeline(&tap.launch(), &format!("{name}-record{}", tap.index))?;
        let spec = crate::record::writer::WriterSpec {
            pipeline: name.to_string(),
            muxer: format!("out{}_mux", tap.index),
            sink: format!("out{}_sink", tap.index),
            extension: tap.extension(),
            segment: tap.segment,
        };
        crate::record::writer::attach(&pipeline, spec, &self.recordings)?;
        let done = watch_bus(&pipeline, name, tap.index, events)?;
        let audio = tap.audio_sink.as_ref().map(|(sink, _)| sink.as_str());
        start(pipeline, source, (tap.index, &tap.video_sink, audio), done)
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
    let pipeline = super::reader_pipeline(&tap.launch(), &format!("{name}-file{}", tap.index))?;
    pipeline
        .by_name(&format!("out{}_sink", tap.index))
        .ok_or("the file writer has no file sink")?
        .set_property("location", &path);
    let done = watch_bus(&pipeline, name, tap.index, events)?;
    let audio = tap.audio_sink.as_ref().map(|(sink, _)| sink.as_str());
    start(pipeline, source, (tap.index, &tap.video_sink, audio), done)
}

/// Feeds a recorder's appsrcs `video` (and `audio`) from the appsinks of `source`, with its
/// end forwarded (its last file is finished), and starts it.
fn start(
    pipeline: gst::Pipeline,
    source: &gst::Pipeline,
    (index, video, audio): (usize, &str, Option<&str>),
    done: watch::Receiver<bool>,
) -> Result<RecordReader, String> {
    let tracks = [Some((video, "video")), audio.map(|sink| (sink, "audio"))];
    let (mut sources, mut appsrcs, mut links) = (Vec::new(), Vec::new(), Vec::new());
    for (appsink, appsrc) in tracks.into_iter().flatten() {
        let (sink, appsrc, link) = super::feed(source, appsink, &pipeline, appsrc, MAX_BEHIND)?;
        sources.push(sink.downgrade());
        appsrcs.push(appsrc);
        links.push(link);
    }
    super::play_ahead(&pipeline)?;
    Ok(RecordReader {
        pipeline,
        sources,
        appsrcs,
        done,
        output: format!("out{index}"),
        links,
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
    /// Ends the reader: waits (bounded) for the source's end-of-stream to arrive when the run
    /// drained, ends its streams itself otherwise, and waits for the last segment.
    async fn finish(mut self, name: &str, drained: bool) {
        let deadline = tokio::time::Instant::now() + FINISH_WITHIN;
        if drained {
            while !self
                .sources
                .iter()
                .all(|s| s.upgrade().is_none_or(|s| s.is_eos()))
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for appsrc in &self.appsrcs {
            // After the forwarded EOS (if any): refused, harmless.
            let _ = appsrc.end_of_stream();
        }
        if tokio::time::timeout_at(deadline, self.done.wait_for(|done| *done))
            .await
            .is_err()
        {
            tracing::warn!(
                "{name}: the recording did not finish within {} s",
                FINISH_WITHIN.as_secs()
            );
        }
        let dropped: u64 = self.links.iter().map(|l| l.dropped()).sum();
        if dropped > 0 {
            tracing::warn!("{name}: the recorder fell behind and dropped {dropped} buffers");
        }
        self.links.clear();
        crate::pipeline::teardown(self.pipeline.clone()).await;
    }
}

impl Drop for RecordReader {
    fn drop(&mut self) {
        // Not finished (the run was dropped): the file stays as written so far.
        let _ = self.pipeline.set_state(gst::State::Null);
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
        let old = std::mem::replace(
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(name.to_string())
                .or_default(),
            readers,
        );
        drop(old);
        Ok(())
    }

    fn playing(&self, _name: &str, _pipeline: &gst::Pipeline) {}

    fn finish<'a>(
        &'a self,
        name: &'a str,
        drained: bool,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            for reader in self.take(name) {
                reader.finish(name, drained).await;
            }
        })
    }

    fn pipelines(&self, name: &str) -> Vec<gst::Pipeline> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .get(name)
            .map(|readers| readers.iter().map(|r| r.pipeline.clone()).collect())
            .unwrap_or_default()
    }

    fn dropped(&self, name: &str) -> Vec<(String, u64)> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .get(name)
            .map(|readers| {
                let dropped = |r: &RecordReader| r.links.iter().map(|l| l.dropped()).sum();
                readers
                    .iter()
                    .map(|r| (r.output.clone(), dropped(r)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn suspend(&self, name: &str) {
        self.detach(name);
    }

    fn detach(&self, name: &str) {
        drop(self.take(name));
    }

    fn open_ingest(
        &self,
        _name: &str,
        _plan: Plan,
        _recordings: Arc<Recordings>,
        _hooks: crate::hooks::HookHost,
        _relay_to: Weak<dyn Readers>,
    ) {
    }

    fn close_ingest<'a>(&'a self, name: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move { self.detach(name) })
    }
}
