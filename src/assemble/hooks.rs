//! The hook branches of a plan: transforms on the raw video's path, observe hooks behind
//! queues of their own, and hooks of a stream that arrives encoded (decoded once for them).

use super::*;

/// The hooks of a plan: transforms on the raw video's path, observe hooks' branches.
pub(super) struct PlannedHooks {
    /// Appended to the raw video chain before its tee (empty without transforms).
    pub(super) path: String,
    pub(super) branches: Vec<String>,
    pub(super) taps: Vec<HookTap>,
}

/// Each observe hook reads `video_raw` behind a queue of 2 frames that drops the oldest, then
/// an appsink that keeps 1: a slow hook loses frames, never holds the tee (and so the outputs).
/// Each transform is an `identity` on the path whose probe hands frames to the hook (within
/// its budget), behind one small queue that takes the waiting off the source's thread.
pub(super) fn plan_hooks(s: &crate::description::Structured, name: &str) -> PlannedHooks {
    use crate::description::Hook;
    let mut planned = PlannedHooks {
        path: String::new(),
        branches: Vec::new(),
        taps: Vec::new(),
    };
    for (i, hook) in s.hooks.iter().enumerate() {
        let element = format!("hook{i}");
        let HookShape {
            name,
            kind,
            format,
            size: (w, h, rate),
            jpeg,
            options,
        } = shape(&hook.value, name);
        let budget = match &hook.value {
            Hook::Rust(r) if hook.value.transform().is_some() => Some(r.budget),
            Hook::Process(p) if hook.value.transform().is_some() => Some(p.budget),
            _ => None,
        };
        // Observe hooks only: a transform gets the format it asks for on the path.
        let convert = match budget {
            None => crate::hooks::convert::Wanted::for_format(&format),
            Some(_) => None,
        };
        if budget.is_some() {
            // validate() has made sure a transform has no size or rate of its own.
            if planned.path.is_empty() {
                planned.path.push_str(
                    " ! queue name=transform_queue max-size-buffers=3 max-size-bytes=0 max-size-time=0",
                );
            }
            planned.path.push_str(&format!(
                " ! videoconvert ! video/x-raw,format={format} ! identity name=hook_t{i} silent=true"
            ));
        } else {
            let delivered = if convert.is_some() {
                // RGB, BGR and GRAY8 are made from I420 in the hook's own thread, only for
                // the frames it takes (hooks::convert); the branch only scales and re-times.
                "I420"
            } else {
                format.as_str()
            };
            let chain = observe_branch(&element, delivered, (w, h, rate.as_deref()), jpeg);
            planned.branches.push(chain);
        }
        planned.taps.push(HookTap {
            element: if budget.is_some() {
                format!("hook_t{i}")
            } else {
                element
            },
            name,
            kind: kind.to_string(),
            options,
            budget,
            convert,
        });
    }
    planned
}

/// What a hook is registered as and the frames it takes.
struct HookShape {
    /// The registered name (a Rust hook's), or what names the hook (a command, an address).
    name: String,
    kind: &'static str,
    format: String,
    /// Width, height and framerate (as caps text), where the hook sets them.
    size: (Option<u32>, Option<u32>, Option<String>),
    /// The branch ends in jpegenc (snapshots).
    jpeg: bool,
    options: crate::hooks::HookOptions,
}

fn shape(hook: &crate::description::Hook, pipeline: &str) -> HookShape {
    use crate::description::Hook;
    let mut options = crate::hooks::HookOptions::new();
    let fps = |f: Option<u32>| f.map(|f| format!("{f}/1"));
    let (name, kind, format, size, jpeg) = match hook {
        Hook::Rust(r) => {
            options = r.options.clone();
            (
                r.name.get_ref().clone(),
                "rust",
                r.format.get_ref().clone(),
                (r.width, r.height, fps(r.fps)),
                false,
            )
        }
        Hook::Process(p) => {
            options.insert("command".into(), serde_json::json!(p.command.get_ref()));
            (
                p.command.get_ref().last().cloned().unwrap_or_default(),
                "process",
                p.format.get_ref().clone(),
                (p.width, p.height, fps(p.fps)),
                false,
            )
        }
        Hook::Socket(sock) => {
            options.insert("listen".into(), sock.listen.get_ref().clone().into());
            (
                sock.listen.get_ref().clone(),
                "socket",
                sock.format.get_ref().clone(),
                (sock.width, sock.height, fps(sock.fps)),
                false,
            )
        }
        Hook::Motion(m) => {
            if let Some(t) = m.threshold {
                options.insert("threshold".into(), t.into());
            }
            // Small and few frames are plenty to see movement.
            (
                "motion".to_string(),
                "rust",
                "GRAY8".to_string(),
                (
                    m.width.or(Some(160)),
                    m.height.or(Some(120)),
                    Some(format!("{}/1", m.fps.unwrap_or(10))),
                ),
                false,
            )
        }
        Hook::Stats(st) => {
            if let Some(every) = st.every {
                options.insert("every".into(), every.into());
            }
            (
                "stats".to_string(),
                "rust",
                "RGB".to_string(),
                (st.width, st.height, fps(st.fps)),
                false,
            )
        }
        Hook::Snapshot(sn) => {
            options.insert("path".into(), sn.path.replace("{name}", pipeline).into());
            // One frame per `every`: framerate 1000/ms.
            let ms = sn.every.as_millis().max(1);
            (
                "snapshot".to_string(),
                "snapshot",
                "I420".to_string(),
                (sn.width, sn.height, Some(format!("1000/{ms}"))),
                true,
            )
        }
    };
    if hook.shared_memory() {
        options.insert("transport".into(), "shm".into());
    }
    if matches!(hook, Hook::Process(p) if p.sender_time)
        || matches!(hook, Hook::Socket(k) if k.sender_time)
    {
        options.insert("sender_time".into(), true.into());
    }
    HookShape {
        name,
        kind,
        format,
        size,
        jpeg,
        options,
    }
}

/// An observe hook's branch off `video_raw`: a queue of 2 that drops the oldest, scaled and
/// re-timed if asked, into an appsink that keeps 1. Every element is named hook…: errors from
/// this branch are the hook's, not the pipeline's (see hooks::from_hook_branch).
fn observe_branch(
    element: &str,
    format: &str,
    (w, h, rate): (Option<u32>, Option<u32>, Option<&str>),
    jpeg: bool,
) -> String {
    let mut chain = format!(
        "video_raw. ! queue name={element}_queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! videoconvert name={element}_convert"
    );
    if w.is_some() || h.is_some() {
        chain.push_str(&format!(" ! videoscale name={element}_scale"));
    }
    if rate.is_some() {
        chain.push_str(&format!(" ! videorate name={element}_rate"));
    }
    let mut caps = format!("video/x-raw,format={format}");
    if let Some(w) = w {
        caps.push_str(&format!(",width={w}"));
    }
    if let Some(h) = h {
        caps.push_str(&format!(",height={h}"));
    }
    if let Some(r) = rate {
        caps.push_str(&format!(",framerate={r}"));
    }
    chain.push_str(&format!(
        " ! capsfilter name={element}_caps caps={}",
        quote(&caps)
    ));
    if jpeg {
        chain.push_str(&format!(" ! jpegenc name={element}_jpeg"));
    }
    // Not async: a live source that has nothing to send yet (a jpeg-tcp source before
    // its first sender) must not hold a hooks-only pipeline short of PLAYING.
    chain.push_str(&format!(
        " ! appsink name={element} sync=false async=false max-buffers=1 drop=true"
    ));
    chain
}

/// Hooks on a stream that is kept as it arrives (ingest, passthrough): the encoded video
/// leaves the pipeline at an appsink behind a leaky queue (2 s), and a reader of the hub
/// decodes it for them in a pipeline of its own ([`crate::hub::hooks`]), so decoding never
/// holds up the recording; if it cannot keep up, the hooks see gaps until the next keyframe.
/// Only observe hooks (validate() checks).
pub(super) fn plan_decoded_hooks(
    s: &crate::description::Structured,
    name: &str,
    chains: &mut Vec<String>,
) -> (Vec<HookTap>, Option<HookDecoder>) {
    if s.hooks.is_empty() {
        return (Vec::new(), None);
    }
    const TAP: &str = "hooks_video";
    chains.push(format!(
        "video_enc. ! queue name=hooks_decode_queue leaky=downstream max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 ! appsink name={TAP} sync=false async=false"
    ));
    let hooks = plan_hooks(s, name);
    let mut launch = vec![
        "appsrc name=video format=time is-live=true ! identity name=hooks_keyframes ! decodebin name=hooks_decode ! videoconvert name=hooks_decode_convert ! tee name=video_raw allow-not-linked=true".to_string(),
    ];
    launch.extend(hooks.branches);
    let decoder = HookDecoder {
        video_sink: TAP.into(),
        launch: launch.join("  "),
    };
    (hooks.taps, Some(decoder))
}
