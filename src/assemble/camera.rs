//! Cameras: what a V4L2 device offers, and the source chain that asks for it.

use super::*;

/// The v4l2 part of a camera pipeline and a sentence saying what was negotiated.
pub(super) fn camera_chain(
    desc: &Description,
    cam: &CameraSource,
    table_span: &std::ops::Range<usize>,
    w: Option<u32>,
    h: Option<u32>,
    fps: Option<u32>,
) -> Result<(String, String), Diagnostic> {
    let device = cam.device.get_ref();
    let span = if cam.device.span().is_empty() {
        table_span.clone()
    } else {
        cam.device.span()
    };
    let err = |m: String| desc.diagnostic(Some(span.clone()), m);
    if !device.starts_with("/dev/") || device.split('/').any(|part| part == "..") {
        return Err(err(format!(
            "camera device `{device}` is not under /dev (a camera is a device such as /dev/video0)"
        )));
    }
    if !Path::new(device).exists() {
        return Err(err(format!(
            "camera device `{device}` does not exist (no camera connected? `ls /dev/video*` lists cameras; set `device` to use another)"
        )));
    }
    {
        use std::os::unix::fs::FileTypeExt;
        // Through any symlink (/dev/v4l/by-id/...): it must end at a character device.
        let is_device = std::fs::metadata(device).is_ok_and(|m| m.file_type().is_char_device());
        if !is_device {
            return Err(err(format!(
                "camera device `{device}` is not a device (a camera is a character device such as /dev/video0)"
            )));
        }
    }
    let format = match cam.format {
        CameraFormat::Auto => probe_camera(device, w, h, fps).map_err(&err)?,
        f => f,
    };
    let size = match (w, h, fps) {
        (Some(w), Some(h), Some(f)) => format!(" {w}x{h}@{f}"),
        (Some(w), Some(h), None) => format!(" {w}x{h}"),
        _ => String::new(),
    };
    let src = format!("v4l2src name=source device={}", quote(device));
    Ok(match format {
        CameraFormat::Auto | CameraFormat::Raw => (
            format!("{src} ! {}", raw_caps("video/x-raw", w, h, fps)),
            format!("raw{size}"),
        ),
        CameraFormat::Mjpeg => (
            format!("{src} ! {} ! jpegdec", raw_caps("image/jpeg", w, h, fps)),
            format!("MJPEG{size}, decoded by jpegdec"),
        ),
        CameraFormat::H264 => (
            format!(
                "{src} ! {} ! h264parse ! avdec_h264",
                raw_caps("video/x-h264", w, h, fps)
            ),
            format!("H.264{size}, decoded by avdec_h264"),
        ),
    })
}

/// Opens the camera and picks raw, else MJPEG, else H.264 at the requested size and rate.
pub(super) fn probe_camera(
    device: &str,
    w: Option<u32>,
    h: Option<u32>,
    fps: Option<u32>,
) -> Result<CameraFormat, String> {
    let src = gst::ElementFactory::make("v4l2src")
        .property("device", device)
        .build()
        .map_err(|_| elements::explain_missing("v4l2src"))?;
    if src.set_state(gst::State::Ready).is_err() {
        let _ = src.set_state(gst::State::Null);
        return Err(format!(
            "cannot open camera `{device}` (busy, not a capture device, or no permission)"
        ));
    }
    let offered = src
        .static_pad("src")
        .map(|p| p.query_caps(None))
        .unwrap_or_else(gst::Caps::new_empty);
    let _ = src.set_state(gst::State::Null);
    for (media, format) in [
        ("video/x-raw", CameraFormat::Raw),
        ("image/jpeg", CameraFormat::Mjpeg),
        ("video/x-h264", CameraFormat::H264),
    ] {
        let Ok(wanted) = raw_caps(media, w, h, fps).parse::<gst::Caps>() else {
            continue;
        };
        if offered.can_intersect(&wanted) {
            return Ok(format);
        }
    }
    Err(format!(
        "camera `{device}` offers neither raw, MJPEG nor H.264 at the requested size/rate; it offers: {offered}"
    ))
}
