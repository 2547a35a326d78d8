//! The output branches of a plan: each output reads the encoded tees behind its own leaky
//! queue and ends in appsinks, the taps the stream hub's readers attach to.

use super::*;

/// What the outputs of a structured description add to a plan.
pub(super) struct PlannedOutputs {
    pub(super) summaries: Vec<String>,
    pub(super) files: Vec<FileTap>,
    pub(super) webrtc: Vec<WebRtcTap>,
    pub(super) tcp: Vec<TcpTap>,
    pub(super) rtsp: Vec<StreamTap>,
    pub(super) hls: Vec<HlsTap>,
    pub(super) whip: Vec<WhipTap>,
    pub(super) records: Vec<RecordTap>,
    pub(super) jpeg: Vec<super::jpeg_tcp::JpegOutTap>,
}

/// The output branches: each reads the `video_enc` (and `audio_<codec>`) tee behind its own
/// leaky queue (3 s), so a stalled output drops its own data.
pub(super) fn plan_outputs(
    desc: &Description,
    s: &crate::description::Structured,
    codec: VideoCodec,
    want_audio: bool,
    audio_as_is: Option<AudioCodec>,
    chains: &mut Vec<String>,
) -> PlannedOutputs {
    const BRANCH_QUEUE: &str =
        "leaky=downstream max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0";
    let mut files = Vec::new();
    let mut outputs = Vec::new();
    let mut webrtc = Vec::new();
    let mut tcp = Vec::new();
    let mut rtsp = Vec::new();
    let mut hls = Vec::new();
    let mut whip = Vec::new();
    let mut records = Vec::new();
    let mut jpeg = Vec::new();
    for (i, out) in s.outputs.iter().enumerate() {
        // JPEG over TCP encodes the decoded frames, not the encoded stream (a stream kept as
        // it arrives is decoded for it by a reader).
        if let Output::JpegTcp(j) = &out.value {
            outputs.push(out.value.summary());
            let (chain, tap) = if s.kept_as_arrives() {
                super::jpeg_tcp::output_decoded(i, j)
            } else {
                super::jpeg_tcp::output(i, j)
            };
            chains.push(chain);
            jpeg.push(tap);
            continue;
        }
        let container = out.value.container();
        // Passthrough keeps the arriving audio codec; otherwise each container gets its own.
        let audio_codec = audio_as_is.unwrap_or_else(|| container.audio_codec());
        let video_queue = format!("video_enc. ! queue name=out{i}_video_queue {BRANCH_QUEUE}");
        let audio_queue = format!(
            "audio_{}. ! queue name=out{i}_audio_queue {BRANCH_QUEUE}",
            audio_codec.name()
        );
        outputs.push(out.value.summary());
        // Every output is a reader of the stream hub, outside this pipeline: its streams
        // leave here as they are encoded (WebRTC viewers take H.264 as byte-stream AUs).
        let video_chain = match (&out.value, codec) {
            (
                Output::WebRtc(_) | Output::Whip(_) | Output::Rtsp(_) | Output::Hls(_),
                VideoCodec::H264,
            ) => format!(
                "{video_queue} ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"
            ),
            _ => video_queue,
        };
        let (video_sink, audio_sink) = appsink_tap(
            chains,
            i,
            &video_chain,
            want_audio.then_some(audio_queue.as_str()),
        );
        let stream = StreamTap {
            index: i,
            video_sink,
            audio_sink: audio_sink.map(|sink| (sink, audio_codec)),
            codec,
        };
        match &out.value {
            // Segments written by hub::record.
            Output::Record(r) => records.push(RecordTap {
                stream,
                container,
                segment: r.segment,
                retention: Retention {
                    max_age: r.max_age,
                    max_total_size: r.max_total_size,
                },
            }),
            // Encoded once, handed to per-viewer pipelines by appsink → StreamProducer.
            Output::WebRtc(w) => webrtc.push(WebRtcTap {
                index: i,
                video_sink: stream.video_sink,
                audio_sink: stream.audio_sink.map(|(sink, _)| sink),
                codec,
                signalling_url: w.signalling_url.as_ref().map(|u| u.get_ref().clone()),
                max_viewers: w.max_viewers,
                hook_events: w.hook_events,
                ladder: Vec::new(),
            }),
            // Served by hub::tcp: a port that cannot be bound costs that output, not the stream.
            Output::Tcp(t) => tcp.push(TcpTap {
                stream,
                host: t.host.clone(),
                port: t.port,
            }),
            // A mount of hub::rtsp's server.
            Output::Rtsp(_) => rtsp.push(stream),
            // A session of webrtc's WHIP client, like a viewer's.
            Output::Whip(w) => whip.push(WhipTap {
                stream,
                url: w.url.get_ref().clone(),
                token: w.token.clone(),
                ice_servers: w.ice_servers.iter().map(|s| s.get_ref().clone()).collect(),
            }),
            // Segments and a playlist written by hub::hls, served over HTTP.
            Output::Hls(h) => hls.push(HlsTap {
                stream,
                segment: h.segment,
                playlist_length: h.playlist_length,
            }),
            Output::JpegTcp(_) => unreachable!("jpeg-tcp outputs are planned above"),
            // Muxed and written by hub::record, like a record output.
            Output::File(f) => files.push(FileTap {
                stream,
                container,
                path: f.path.get_ref().replace("{name}", &desc.name),
            }),
        }
    }

    PlannedOutputs {
        summaries: outputs,
        files,
        webrtc,
        tcp,
        rtsp,
        hls,
        whip,
        records,
        jpeg,
    }
}

/// Output `i`'s streams leave the pipeline for the stream hub: `video` (and `audio`) chains
/// end in appsinks `out{i}_video` (`out{i}_audio`), whose names it returns. sync=false: a
/// frame goes out the moment it is encoded (the source paces it); async=false: nothing waits
/// for them to preroll (a publisher's pipeline plays as soon as its first media arrives,
/// whichever branch it reaches first).
fn appsink_tap(
    chains: &mut Vec<String>,
    i: usize,
    video: &str,
    audio: Option<&str>,
) -> (String, Option<String>) {
    chains.push(format!(
        "{video} ! appsink name=out{i}_video sync=false async=false"
    ));
    let audio_sink = audio.map(|chain| {
        chains.push(format!(
            "{chain} ! appsink name=out{i}_audio sync=false async=false"
        ));
        format!("out{i}_audio")
    });
    (format!("out{i}_video"), audio_sink)
}
