//! The stream hub's interface to the supervisor: how a running pipeline's streams reach the
//! readers that live outside its GStreamer pipeline.
//!
//! A pipeline's encoded tracks (its shared encoder's output, or what a publisher sends) end in
//! appsinks, one per track; [`Readers::attach`] turns them into named streams whose readers
//! (today: WebRTC viewers, each a pipeline of its own) attach and detach at run time, each
//! behind its own bounded, leaky, counted queue (gstreamer-utils' `StreamProducer` with one
//! appsrc per reader). The supervisor only knows this trait; [`crate::webrtc`] implements it,
//! so dependencies run one way: supervisor → hub ← webrtc.

use crate::assemble::{Plan, WebRtcTap};
use crate::events::EventBus;
use crate::hooks::HookHost;
use crate::record::Recordings;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Where the supervisor hands each run of a pipeline.
pub trait Readers: Send + Sync {
    /// A freshly built pipeline (not yet playing): its taps become streams. A pipeline that
    /// restarts after an error keeps its waiting readers, which follow the new run.
    fn attach(
        &self,
        name: &str,
        pipeline: &gst::Pipeline,
        taps: &[WebRtcTap],
        events: &EventBus,
    ) -> Result<(), String>;

    /// The pipeline plays: readers are served from now on (its clock and base time are
    /// final), and its streams are announced (signalling producers).
    fn playing(&self, name: &str, pipeline: &gst::Pipeline);

    /// The pipeline failed and will restart: its readers wait for the next run (bounded).
    fn suspend(&self, name: &str);

    /// The pipeline stopped: its readers end.
    fn detach(&self, name: &str);

    /// A pipeline whose source is published to it (a webrtc source): open it to publishers;
    /// each publisher's pipeline is attached to the readers like a run.
    fn open_ingest(&self, name: &str, plan: Plan, recordings: Arc<Recordings>, hooks: HookHost);

    /// Close it again: the publisher (if any) ends and its recording is finalized first.
    fn close_ingest<'a>(&'a self, name: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}
