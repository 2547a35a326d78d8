//! The encoder ladder: below the shared encoder, one scaler and encoder per smaller rung, fed
//! from the raw video behind a closed valve (a rung nobody watches scales and encodes
//! nothing), fanned out to the viewers of the pipeline's webrtc output like the top encoding.
//!
//! ```text
//! video_raw ─ valve(rung1_valve, closed) ─ queue(leaky) ─ videoscale ─ encoder ─ parse ─ queue(leaky) ─ appsink(out{i}_rung1)
//! ```

use super::{EncoderChoice, WebRtcTap};
use crate::description::{Diagnostic, Rung, VideoCodec};

/// One rung of a webrtc output's ladder: its size and bitrate, the appsink its stream leaves
/// by, and (below the top) the valve that starts and stops its encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderRung {
    pub rung: Rung,
    pub sink: String,
    /// None for the top rung, whose encoder always runs.
    pub valve: Option<String>,
    /// The rung's encoder (for its output counter).
    pub encoder: Option<String>,
}

/// `1280x720 2000k, 640x360 700k, ...` for `check` and the API's choices.
pub fn describe(rungs: &[Rung]) -> String {
    rungs
        .iter()
        .map(|r| format!("{} {}k", r.label(), r.bitrate))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds the rungs below the top (`rungs[0]`) to the launch, and their appsinks to every
/// webrtc output.
pub(super) fn plan(
    rungs: &[Rung],
    webrtc: &mut [WebRtcTap],
    chains: &mut Vec<String>,
    profile: &str,
    encoder_at: impl Fn(u32) -> Result<EncoderChoice, Diagnostic>,
) -> Result<(), Diagnostic> {
    const BRANCH_QUEUE: &str =
        "leaky=downstream max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0";
    // Viewers address a pipeline's first webrtc output; the ladder serves it.
    let (Some(top), Some(tap)) = (rungs.first(), webrtc.first_mut()) else {
        return Ok(());
    };
    tap.ladder.push(LadderRung {
        rung: *top,
        sink: tap.video_sink.clone(),
        valve: None,
        encoder: Some("video_encoder".into()),
    });
    let i = tap.index;
    let parse = if tap.codec == VideoCodec::H264 {
        " ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"
    } else {
        ""
    };
    for (k, rung) in rungs.iter().enumerate().skip(1) {
        let enc = encoder_at(rung.bitrate)?;
        // The valve is first: while it is closed, nothing of this rung runs.
        chains.push(format!(
            "video_raw. ! valve name=rung{k}_valve drop=true ! queue name=rung{k}_queue leaky=downstream max-size-buffers=3 max-size-bytes=0 max-size-time=0 ! videoscale ! video/x-raw,width={},height={} ! {} name=rung{k}_encoder{profile}{parse} ! queue name=out{i}_rung{k}_queue {BRANCH_QUEUE} ! appsink name=out{i}_rung{k} sync=false async=false",
            rung.width, rung.height, enc.launch
        ));
        tap.ladder.push(LadderRung {
            rung: *rung,
            sink: format!("out{i}_rung{k}"),
            valve: Some(format!("rung{k}_valve")),
            encoder: Some(format!("rung{k}_encoder")),
        });
    }
    Ok(())
}
