//! The encoder ladder: below the shared encoder, one scaler and encoder per smaller rung, fed
//! from the raw video behind a closed valve (a rung nobody watches scales and encodes
//! nothing), fanned out to the viewers of the pipeline's webrtc output like the top encoding.
//!
//! ```text
//! video_raw ─ valve(rung1_valve, closed) ─ queue(leaky) ─ videoscale ─ encoder ─ parse ─ queue(leaky) ─ appsink(out{i}_rung1)
//! ```
//!
//! A simulcast publisher's layers are a ladder too, encoded by the publisher: its top layer
//! feeds `video_in` like any publisher's stream, each lower one a chain of its own (no valve,
//! nothing to encode):
//!
//! ```text
//! layer1_in ─ parse ─ queue(leaky) ─ appsink(out{i}_layer1)
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
    /// A simulcast publisher's layer (its rid): sent as the publisher encodes it, its size
    /// and bitrate measured as it arrives.
    pub layer: Option<String>,
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
        layer: None,
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
            layer: None,
        });
    }
    Ok(())
}

/// Size and bitrate a simulcast layer is taken to have until it is measured: the top's
/// (2 Mbit/s), then a third of the one above, as browsers send them.
fn layer_guess(k: usize) -> Rung {
    Rung {
        width: 0,
        height: 0,
        bitrate: (2000 / 3u32.pow(k as u32)).max(50),
    }
}

impl super::Plan {
    /// This publisher plan with a simulcast publisher's layers, `rids` top first, as the
    /// ladder of its webrtc output: the top arrives at `video_in`, layer k at `layer{k}_in`.
    /// Unchanged without a webrtc output (only the top layer is then kept).
    pub fn with_layers(&self, rids: &[String]) -> super::Plan {
        const BRANCH_QUEUE: &str =
            "leaky=downstream max-size-time=3000000000 max-size-buffers=0 max-size-bytes=0";
        let mut plan = self.clone();
        let Some(tap) = plan.webrtc.first_mut() else {
            return plan;
        };
        let i = tap.index;
        let parse = match tap.codec {
            VideoCodec::H264 => {
                "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au ! "
            }
            _ => "",
        };
        tap.ladder = vec![LadderRung {
            rung: layer_guess(0),
            sink: tap.video_sink.clone(),
            valve: None,
            encoder: None,
            layer: rids.first().cloned(),
        }];
        for (k, rid) in rids.iter().enumerate().skip(1) {
            plan.launch.push_str(&format!(
                "  queue name=layer{k}_in ! {parse}queue name=out{i}_layer{k}_queue {BRANCH_QUEUE} ! appsink name=out{i}_layer{k} sync=false async=false"
            ));
            tap.ladder.push(LadderRung {
                rung: layer_guess(k),
                sink: format!("out{i}_layer{k}"),
                valve: None,
                encoder: None,
                layer: Some(rid.clone()),
            });
        }
        plan
    }

    /// Where the publisher's layer k arrives (see [`super::Plan::with_layers`]); `None` for
    /// a layer this plan does not keep.
    pub fn layer_head(&self, k: usize) -> Option<String> {
        match k {
            0 => Some("video_in".into()),
            _ => self
                .webrtc
                .first()
                .filter(|t| k < t.ladder.len())
                .map(|_| format!("layer{k}_in")),
        }
    }
}
