//! A jpeg-tcp source's head: an appsrc the stream hub's listener pushes each sender's JPEG
//! frames into (see [`crate::hub::jpeg_tcp`]), decoded to raw video as they come.
//!
//! ```text
//! appsrc(jpeg_in, live, timestamped on arrival) ─ jpegparse ─ jpegdec [─ videocrop(jpeg_even)] ─ videoconvert ─ videoscale ─ caps
//! ```
//!
//! H.264 cannot carry an odd width or height in 4:2:0 (its cropping counts in pairs of
//! pixels), and x264 refuses one: for an H.264 stream a frame of odd size loses its last row
//! or column (`jpeg_even`, set by the listener as sizes change). VP8 and VP9 keep any size.
//!
//! The stream keeps one size: the asked `width`/`height`, else its first frame's (the caps
//! `jpeg_size`, which the listener sets as the decoder announces a run's first frame). A sender that changes
//! size mid-stream is scaled to it (with borders where the shape differs), so encoders,
//! recordings and viewers never see the size change.

use crate::description::{JpegFraming, JpegTcpOutput, JpegTcpSource, VideoCodec};

/// Where a jpeg-tcp source's frames enter the pipeline, and how its senders are read.
#[derive(Debug, Clone, PartialEq)]
pub struct JpegInTap {
    /// The appsrc's name.
    pub appsrc: String,
    pub listen: String,
    pub framing: JpegFraming,
    pub max_frame_bytes: usize,
    /// The videocrop that makes odd sizes even (H.264), if there is one.
    pub even: Option<String>,
    /// The capsfilter that holds the stream to its first frame's size, when no size is asked.
    pub size: Option<String>,
    /// The JPEG decoder, whose first caps give that size.
    pub decoder: String,
}

pub(super) const APPSRC: &str = "jpeg_in";
const EVEN: &str = "jpeg_even";
const SIZE: &str = "jpeg_size";
const DECODER: &str = "jpeg_decode";

/// Whether frames must have an even size for the encoder of `codec`.
fn needs_even(j: &JpegTcpSource, codec: VideoCodec) -> bool {
    codec == VideoCodec::H264 && j.width.is_none() && j.height.is_none()
}

/// The raw video chain of a jpeg-tcp source (`size_caps`: the asked size, if any).
pub(super) fn chain(j: &JpegTcpSource, codec: VideoCodec, size_caps: &str) -> String {
    // Frames come at the sender's pace; what waits when the
    // pipeline is busy is bounded (the listener drops a frame rather than queue more).
    // jpegdec never fails the pipeline: the listener checks each JPEG before it is pushed,
    // and a frame that still does not decode is dropped with a warning.
    // x264 takes a variable rate (0/1) and times frames by their timestamps; libvpx's
    // encoders make nothing without a nominal rate, so VP8/VP9 are told 30 (frames are still
    // timed as they arrive).
    let rate = if codec == VideoCodec::H264 {
        "0/1"
    } else {
        "30/1"
    };
    let mut v = format!(
        "appsrc name={APPSRC} is-live=true do-timestamp=true format=time block=false max-bytes=33554432 caps=image/jpeg,framerate={rate} ! jpegparse ! jpegdec name={DECODER} max-errors=-1"
    );
    if needs_even(j, codec) {
        v.push_str(&format!(" ! videocrop name={EVEN}"));
    }
    v.push_str(" ! videoconvert ! videoscale");
    if asks_size(j) {
        v.push_str(&format!(" ! {size_caps}"));
    } else {
        // Any size until the listener fixes it at the first frame's.
        v.push_str(&format!(" ! capsfilter name={SIZE}"));
    }
    v
}

fn asks_size(j: &JpegTcpSource) -> bool {
    j.width.is_some() || j.height.is_some()
}

pub(super) fn tap(j: &JpegTcpSource, codec: VideoCodec) -> JpegInTap {
    JpegInTap {
        even: needs_even(j, codec).then(|| EVEN.to_string()),
        size: (!asks_size(j)).then(|| SIZE.to_string()),
        decoder: DECODER.into(),
        appsrc: APPSRC.into(),
        listen: j.listen.get_ref().clone(),
        framing: j.framing,
        max_frame_bytes: usize::try_from(j.max_frame_bytes).unwrap_or(usize::MAX),
    }
}

/// A jpeg-tcp output: where its JPEG frames leave the pipeline, and where they go.
#[derive(Debug, Clone, PartialEq)]
pub struct JpegOutTap {
    /// The output's index in the description.
    pub index: usize,
    /// The appsink its frames leave by (in the decoder's pipeline when there is one).
    pub sink: String,
    pub connect: String,
    pub framing: JpegFraming,
    /// For a stream kept as it arrives: the reader that decodes it for this output.
    pub decoder: Option<JpegDecoder>,
}

/// The decoder of a jpeg-tcp output on a stream kept as it arrives, a reader of the hub: the
/// source's appsink it reads the encoded video from, and its own launch line (`appsrc
/// name=video`, a keyframe watch `jpeg_keyframes`, decodebin, then the output's branch).
#[derive(Debug, Clone, PartialEq)]
pub struct JpegDecoder {
    pub encoded_sink: String,
    pub launch: String,
}

/// From raw video to the output's appsink: at most `fps` frames a second (dropped, not
/// re-timed), scaled if asked, JPEG-encoded, into a 1-frame appsink that drops the older (the
/// sender takes what is newest; a slow receiver costs frames, never the pipeline's pace).
fn to_jpeg(j: &JpegTcpOutput, sink: &str) -> String {
    let mut size = String::new();
    if let Some(w) = j.width {
        size.push_str(&format!(",width={w}"));
    }
    if let Some(h) = j.height {
        size.push_str(&format!(",height={h}"));
    }
    format!(
        "videorate drop-only=true max-rate={} ! videoscale ! videoconvert ! video/x-raw,format=I420{size} ! jpegenc quality={} ! appsink name={sink} sync=false async=false max-buffers=1 drop=true",
        j.fps, j.quality
    )
}

/// Output `i`'s tap: its frames leave by appsink `out{i}_jpeg` (of the pipeline, until a
/// decoder is given).
fn out_tap(i: usize, j: &JpegTcpOutput) -> JpegOutTap {
    JpegOutTap {
        index: i,
        sink: format!("out{i}_jpeg"),
        connect: j.connect.get_ref().clone(),
        framing: j.framing,
        decoder: None,
    }
}

/// Output `i`'s branch off the raw video.
pub(super) fn output(i: usize, j: &JpegTcpOutput) -> (String, JpegOutTap) {
    let tap = out_tap(i, j);
    let chain = format!(
        "video_raw. ! queue name=out{i}_jpeg_queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! {}",
        to_jpeg(j, &tap.sink)
    );
    (chain, tap)
}

/// Output `i` on a stream kept as it arrives: the encoded video leaves behind a 2 s leaky
/// queue for a decoder of its own (a reader, [`crate::hub::jpeg_tcp`]), so decoding never
/// holds up the recording or the viewers; one that cannot keep up skips to the next keyframe.
pub(super) fn output_decoded(i: usize, j: &JpegTcpOutput) -> (String, JpegOutTap) {
    let encoded_sink = format!("out{i}_jpeg_video");
    let chain = format!(
        "video_enc. ! queue name=out{i}_jpeg_queue leaky=downstream max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! appsink name={encoded_sink} sync=false async=false"
    );
    let mut tap = out_tap(i, j);
    let launch = format!(
        "appsrc name=video format=time is-live=true ! identity name=jpeg_keyframes ! decodebin ! videoconvert ! {}",
        to_jpeg(j, &tap.sink)
    );
    tap.decoder = Some(JpegDecoder {
        encoded_sink,
        launch,
    });
    (chain, tap)
}
