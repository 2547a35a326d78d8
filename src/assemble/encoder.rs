//! Choosing and tuning the video encoder: hardware first, then software, tuned for live.

use crate::description::{Encode, VideoCodec, elements};
use gst::prelude::*;

/// The encoder picked for a pipeline, as a gst-launch fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    pub factory: String,
    pub hardware: bool,
    /// `factory prop=value ...` ready to splice into a launch line.
    pub launch: String,
}

impl EncoderChoice {
    pub fn describe(&self) -> String {
        let kind = if self.hardware {
            "hardware"
        } else {
            "software"
        };
        format!("{} ({kind})", self.factory)
    }
}

/// Candidates per codec, best first. Hardware encoders register only where their device or
/// driver exists, and are additionally checked by opening them (state READY).
fn candidates(codec: VideoCodec) -> (&'static [&'static str], &'static [&'static str]) {
    match codec {
        VideoCodec::H264 => (
            &[
                "vah264enc",
                "vah264lpenc",
                "vaapih264enc",
                "nvh264enc",
                "qsvh264enc",
                "v4l2h264enc",
            ],
            &["x264enc", "openh264enc"],
        ),
        VideoCodec::Vp8 => (&["vaapivp8enc", "v4l2vp8enc"], &["vp8enc"]),
        VideoCodec::Vp9 => (&["vavp9enc", "vaapivp9enc", "qsvvp9enc"], &["vp9enc"]),
        VideoCodec::Av1 => (
            &["vaav1enc", "nvav1enc", "qsvav1enc"],
            &["av1enc", "svtav1enc", "rav1enc"],
        ),
    }
}

/// Picks the encoder for `encode` given the frame rate (for GOP length in frames).
pub fn choose(encode: &Encode, framerate: u32) -> Result<EncoderChoice, String> {
    let (hardware, software) = candidates(encode.codec);
    let factory = match &encode.encoder {
        Some(forced) => forced.get_ref().clone(),
        None => {
            let hw = hardware.iter().find(|f| usable(f));
            match hw.or_else(|| software.iter().find(|f| elements::is_installed(f))) {
                Some(f) => f.to_string(),
                None => {
                    let wanted = software.first().copied().unwrap_or("x264enc");
                    return Err(format!(
                        "no {} encoder is installed: {}",
                        encode.codec.name().to_uppercase(),
                        elements::explain_missing(wanted)
                    ));
                }
            }
        }
    };
    let element = gst::ElementFactory::make(&factory)
        .build()
        .map_err(|_| elements::explain_missing(&factory))?;
    let gop = (encode.keyframe_interval.as_secs_f64() * framerate as f64)
        .round()
        .max(1.0) as u64;
    let kbps = encode.bitrate as u64;
    let bps = kbps * 1000;
    let mut launch = factory.clone();
    for (prop, value) in tuning(&factory, kbps, bps, gop) {
        // Set only what this element (and this version of it) has.
        if element.find_property(prop).is_some() {
            launch.push_str(&format!(" {prop}={value}"));
        }
    }
    Ok(EncoderChoice {
        hardware: hardware.contains(&factory.as_str()),
        factory,
        launch,
    })
}

/// A hardware encoder counts only if it opens: a registered element may still lack a device.
fn usable(factory: &str) -> bool {
    let Ok(el) = gst::ElementFactory::make(factory).build() else {
        return false;
    };
    let ok = el.set_state(gst::State::Ready).is_ok();
    let _ = el.set_state(gst::State::Null);
    ok
}

/// Live settings per encoder: constant bitrate, no B-frames or lookahead, a keyframe every
/// `gop` frames, the fastest preset.
fn tuning(factory: &str, kbps: u64, bps: u64, gop: u64) -> Vec<(&'static str, String)> {
    let s = |v: &str| v.to_string();
    match factory {
        "x264enc" => vec![
            ("tune", s("zerolatency")),
            ("speed-preset", s("ultrafast")),
            ("bitrate", kbps.to_string()),
            ("key-int-max", gop.to_string()),
            ("bframes", s("0")),
        ],
        "openh264enc" => vec![
            ("bitrate", bps.to_string()),
            ("gop-size", gop.to_string()),
            ("rate-control", s("bitrate")),
            ("complexity", s("low")),
            ("usage-type", s("camera")),
        ],
        "vah264enc" | "vah264lpenc" | "vavp9enc" | "vaav1enc" => vec![
            ("bitrate", kbps.to_string()),
            ("key-int-max", gop.to_string()),
            ("b-frames", s("0")),
            ("rate-control", s("cbr")),
        ],
        "vaapih264enc" | "vaapivp8enc" | "vaapivp9enc" => vec![
            ("bitrate", kbps.to_string()),
            ("keyframe-period", gop.to_string()),
            ("max-bframes", s("0")),
            ("rate-control", s("cbr")),
        ],
        "nvh264enc" | "nvav1enc" => vec![
            ("bitrate", kbps.to_string()),
            ("gop-size", gop.to_string()),
            ("bframes", s("0")),
            ("zerolatency", s("true")),
            ("rc-mode", s("cbr")),
        ],
        "qsvh264enc" | "qsvvp9enc" | "qsvav1enc" => vec![
            ("bitrate", kbps.to_string()),
            ("gop-size", gop.to_string()),
            ("b-frames", s("0")),
            ("low-latency", s("true")),
        ],
        "v4l2h264enc" | "v4l2vp8enc" => vec![(
            "extra-controls",
            format!("\"controls,video_bitrate={bps},video_gop_size={gop}\""),
        )],
        "vp8enc" | "vp9enc" => vec![
            ("target-bitrate", bps.to_string()),
            ("deadline", s("1")),
            ("cpu-used", s("8")),
            ("end-usage", s("cbr")),
            ("lag-in-frames", s("0")),
            ("keyframe-max-dist", gop.to_string()),
            ("threads", s("2")),
            ("row-mt", s("true")),
        ],
        "av1enc" => vec![
            ("target-bitrate", kbps.to_string()),
            ("usage-profile", s("realtime")),
            ("cpu-used", s("10")),
            ("end-usage", s("cbr")),
            // av1enc leaves both bounds at 0, and libaom's CBR rate control then aborts the
            // process (assertion in rc_pick_q_and_bounds_no_stats_cbr): give it a real range.
            ("min-quantizer", s("4")),
            ("max-quantizer", s("56")),
            ("lag-in-frames", s("0")),
            ("keyframe-max-dist", gop.to_string()),
            ("threads", s("2")),
            ("row-mt", s("true")),
        ],
        "svtav1enc" => vec![
            ("target-bitrate", kbps.to_string()),
            ("preset", s("12")),
            ("intra-period-length", gop.to_string()),
        ],
        "rav1enc" => vec![
            ("bitrate", bps.to_string()),
            ("speed-preset", s("10")),
            ("low-latency", s("true")),
            ("max-key-frame-interval", gop.to_string()),
        ],
        _ => vec![],
    }
}
