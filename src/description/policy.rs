//! What a description that arrives over the API may contain.
//!
//! A file in the pipelines directory is the operator's and keeps its freedom; a description
//! sent with `PUT` comes from whoever holds an `admin` token, which should not be enough to
//! read or write files on the server, open devices or run commands. A list of refused elements
//! can never be complete (a new plugin, another spelling of the same access), so it is turned
//! around: over the API
//! - a raw `launch` line (and a forced encoder) may use only the elements of an allow-list
//!   ([`DEFAULT_ALLOW`]: test sources, network sources and sinks, converters, encoders,
//!   decoders, parsers, payloaders, muxers, queues and tees), checked on every element of the
//!   parsed graph, bins' children included;
//! - no property may name a path or a non-network URI (`--api-allow-paths`) or a device
//!   (`--api-allow-devices`), whatever the element; nor may x264/x265 options or multipass
//!   modes, which read and write files of their own;
//! - structured sources may not read files or non-network URIs, open cameras
//!   (`--api-allow-devices`), and hooks may not run commands (`--api-allow-process`) or use
//!   paths of their own.

use super::launch::Placed;
use super::{Description, Diagnostic, Diagnostics, Form, Hook, Output, Source};
use std::ops::Range;

/// Elements a raw launch line sent over the API may use: none of them reads or writes a file
/// or opens a device unless a property tells it to, and those properties are checked too.
pub const DEFAULT_ALLOW: &[&str] = &[
    // Structure.
    "pipeline",
    "bin",
    "queue",
    "multiqueue",
    "tee",
    "capsfilter",
    "identity",
    "fakesrc",
    "fakesink",
    "valve",
    "funnel",
    "input-selector",
    "output-selector",
    "concat",
    // Test sources.
    "videotestsrc",
    "audiotestsrc",
    // Network sources and sinks.
    "tcpclientsrc",
    "tcpserversrc",
    "tcpclientsink",
    "tcpserversink",
    "udpsrc",
    "udpsink",
    "multiudpsink",
    "rtspsrc",
    "srtsrc",
    "srtsink",
    "souphttpsrc",
    "rtpbin",
    "rtpjitterbuffer",
    "rtpptdemux",
    "rtpssrcdemux",
    // Converters and overlays.
    "videoconvert",
    "videoscale",
    "videorate",
    "videoconvertscale",
    "videoflip",
    "videocrop",
    "videobox",
    "videobalance",
    "deinterlace",
    "compositor",
    "audioconvert",
    "audioresample",
    "audiorate",
    "audiomixer",
    "volume",
    "level",
    "textoverlay",
    "timeoverlay",
    "clockoverlay",
    "capssetter",
    // Encoders.
    "x264enc",
    "x265enc",
    "openh264enc",
    "vp8enc",
    "vp9enc",
    "theoraenc",
    "opusenc",
    "avenc_aac",
    "voaacenc",
    "fdkaacenc",
    "lamemp3enc",
    "vorbisenc",
    "jpegenc",
    "pngenc",
    // Decoders.
    "avdec_h264",
    "avdec_h265",
    "openh264dec",
    "vp8dec",
    "vp9dec",
    "theoradec",
    "opusdec",
    "avdec_aac",
    "faad",
    "vorbisdec",
    "jpegdec",
    "pngdec",
    // Parsers.
    "h264parse",
    "h265parse",
    "vp9parse",
    "av1parse",
    "aacparse",
    "opusparse",
    "mpegaudioparse",
    "jpegparse",
    "tsparse",
    // Payloaders and depayloaders.
    "rtph264pay",
    "rtph264depay",
    "rtph265pay",
    "rtph265depay",
    "rtpvp8pay",
    "rtpvp8depay",
    "rtpvp9pay",
    "rtpvp9depay",
    "rtpopuspay",
    "rtpopusdepay",
    "rtpmp4apay",
    "rtpmp4adepay",
    "rtpmp4gpay",
    "rtpmp4gdepay",
    "rtpjpegpay",
    "rtpjpegdepay",
    "rtpL16pay",
    "rtpL16depay",
    "rtppcmupay",
    "rtppcmudepay",
    "rtppcmapay",
    "rtppcmadepay",
    "rtpmp2tpay",
    "rtpmp2tdepay",
    // Muxers and demuxers (their temporary-file properties are checked like any path).
    "mpegtsmux",
    "matroskamux",
    "webmmux",
    "mp4mux",
    "qtmux",
    "flvmux",
    "oggmux",
    "tsdemux",
    "matroskademux",
    "qtdemux",
    "flvdemux",
    "oggdemux",
];

/// URI schemes that reach the network, not the server's files.
const NETWORK_SCHEMES: &[&str] = &[
    "rtsp", "rtsps", "rtspt", "rtsph", "rtspu", "http", "https", "srt", "rtmp", "rtmps", "rtp",
    "udp", "tcp", "ws", "wss",
];

/// Properties of allowed elements that make them read or write files although their names
/// do not say so: (element, property, the values that do; empty: any value).
const FILE_BY_OPTION: &[(&str, &str, &[&str])] = &[
    // x264's and x265's own options include dump and statistics files.
    ("x264enc", "option-string", &[]),
    ("x265enc", "option-string", &[]),
    // Multipass encoding keeps its statistics in a file.
    ("x264enc", "pass", &["pass1", "pass2", "pass3"]),
    ("vp8enc", "multipass-mode", &["first-pass", "last-pass"]),
    ("vp9enc", "multipass-mode", &["first-pass", "last-pass"]),
    (
        "theoraenc",
        "multipass-mode",
        &["first-pass", "second-pass"],
    ),
];

/// Property types that hold only a value: numbers, strings, enums, flags, caps, fractions and
/// arrays of values.
fn plain_type(ty: glib::Type) -> bool {
    use glib::types::StaticType;
    [
        glib::Type::BOOL,
        glib::Type::I8,
        glib::Type::U8,
        glib::Type::I32,
        glib::Type::U32,
        glib::Type::I_LONG,
        glib::Type::U_LONG,
        glib::Type::I64,
        glib::Type::U64,
        glib::Type::F32,
        glib::Type::F64,
        glib::Type::STRING,
        gst::Caps::static_type(),
        gst::Fraction::static_type(),
        gst::Array::static_type(),
        glib::ValueArray::static_type(),
    ]
    .contains(&ty)
        || ty.is_a(glib::Type::ENUM)
        || ty.is_a(glib::Type::FLAGS)
}

/// What kind of server resource a property value names, if any.
#[derive(Debug, PartialEq, Eq)]
enum Names {
    Path,
    Device,
}

/// Whether property `name` = `value` names a path or a device: by its name (location, uri,
/// path, file, dir, template, socket; device), unless the value is a network URI.
fn names(property: &str, value: &str) -> Option<Names> {
    let p = property.to_ascii_lowercase();
    if p.contains("device") {
        return Some(Names::Device);
    }
    let pathlike = [
        "location", "uri", "path", "file", "dir", "template", "socket",
    ]
    .iter()
    .any(|w| p.contains(w));
    (pathlike && !is_network_uri(value)).then_some(Names::Path)
}

/// `rtsp://…`, `https://…`, `srt://…`: a URI whose scheme reaches the network.
pub fn is_network_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    rest.starts_with("//")
        && NETWORK_SCHEMES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
}

/// The rules for descriptions sent over the API.
#[derive(Debug, Clone)]
pub struct ApiPolicy {
    /// Elements accepted in a raw `launch` line and as a forced encoder.
    pub allow: Vec<String>,
    /// Paths and non-network URIs on the server (file sources and outputs, `file:` URIs,
    /// unix sockets, snapshot paths, element properties naming files).
    pub allow_paths: bool,
    /// Devices: camera sources, element properties naming devices.
    pub allow_devices: bool,
    /// `process` hooks (they run a command).
    pub allow_process: bool,
}

impl Default for ApiPolicy {
    fn default() -> Self {
        ApiPolicy {
            allow: DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect(),
            allow_paths: false,
            allow_devices: false,
            allow_process: false,
        }
    }
}

const PATHS: &str = "descriptions sent over the API may not name paths or non-network URIs on the server (the operator can permit it with --api-allow-paths)";
const DEVICES: &str = "descriptions sent over the API may not open devices (the operator can permit it with --api-allow-devices)";

impl ApiPolicy {
    /// `--api-allow-element NAME` adds NAME to the allow-list.
    pub fn allow(&mut self, element: &str) {
        if !self.allow.iter().any(|a| a == element) {
            self.allow.push(element.to_string());
        }
    }

    /// `--api-deny-element NAME` takes NAME off the allow-list.
    pub fn deny(&mut self, element: &str) {
        self.allow.retain(|a| a != element);
    }

    fn element_problem(&self, factory: &str, inside: Option<&str>) -> Option<String> {
        if self.allow.iter().any(|a| a == factory) {
            return None;
        }
        let within = inside
            .map(|b| format!(" (inside `{b}`)"))
            .unwrap_or_default();
        Some(format!(
            "element `{factory}`{within} is not on the list of elements descriptions sent over the API may use (test sources, network sources and sinks, converters, encoders, decoders, parsers, payloaders, muxers, queues and tees; see README, Security); the operator can permit it with --api-allow-element {factory}"
        ))
    }

    fn property_problem(&self, factory: &str, property: &str, value: &str) -> Option<String> {
        let by_option = FILE_BY_OPTION.iter().any(|(f, p, values)| {
            *f == factory && *p == property && (values.is_empty() || values.contains(&value))
        });
        let what = if by_option {
            Names::Path
        } else {
            names(property, value)?
        };
        match what {
            Names::Path if !self.allow_paths => Some(format!(
                "property `{property}` of `{factory}` reads or writes files on the server: {PATHS}"
            )),
            Names::Device if !self.allow_devices => Some(format!(
                "property `{property}` of `{factory}` names a device: {DEVICES}"
            )),
            _ => None,
        }
    }

    /// The elements a launch line would make, checked before GStreamer builds any of them (so
    /// an element that is not allowed is never even created: some crash on odd property
    /// values).
    pub(super) fn precheck(&self, launch: &super::Launch) -> Vec<(usize, String)> {
        super::launch::makers(&launch.text)
            .into_iter()
            .filter_map(|(at, maker)| match maker {
                super::launch::Maker::Factory(f) => self.element_problem(f, None).map(|p| (at, p)),
                super::launch::Maker::Uri(u) => Some((
                    at,
                    format!(
                        "`{u}` makes an element from a URI or path: descriptions sent over the API may not (a structured `uri` source pulls network URIs)"
                    ),
                )),
                super::launch::Maker::Unclear(w) => Some((
                    at,
                    format!(
                        "`{w}` cannot be checked (only caps stand quoted on their own): descriptions sent over the API may not use it"
                    ),
                )),
                // What the line says, whether or not the element would keep the value.
                super::launch::Maker::Property {
                    element,
                    name,
                    value,
                } => self.assignment_problem(element, name, value).map(|p| (at, p)),
            })
            .collect()
    }

    /// What is wrong with `name=value` set on an element of `element` in a raw line: a path or
    /// device, a property of a bin's child (which cannot be checked), or a value of a type that
    /// can carry more than a value (a structure: rtpbin's `fec-encoders` holds launch lines).
    fn assignment_problem(&self, element: Option<&str>, name: &str, value: &str) -> Option<String> {
        let factory = element.unwrap_or("an element");
        if name.contains("::") {
            return Some(format!(
                "`{name}` sets a property of a bin's child, which cannot be checked: descriptions sent over the API may not"
            ));
        }
        if let Some(p) = self.property_problem(factory, name, value) {
            return Some(p);
        }
        let ty = super::launch::property_type(element?, name)?;
        (!plain_type(ty)).then(|| {
            format!(
                "property `{name}` of `{factory}` takes a {}, which descriptions sent over the API may not set (only numbers, strings, enums, flags, caps and fractions)",
                ty.name()
            )
        })
    }

    /// The problems of one element of a launch line.
    fn placed_problems(&self, e: &Placed) -> Vec<(Range<usize>, String)> {
        let mut out = Vec::new();
        if let Some(p) = self.element_problem(&e.factory, e.inside.as_deref()) {
            out.push((e.span.clone(), p));
        }
        for (property, value, span) in &e.changed {
            if let Some(p) = self.property_problem(&e.factory, property, value) {
                out.push((span.clone(), p));
            }
        }
        out
    }

    /// Every rule `desc` breaks, at its place in the text.
    pub fn check(&self, desc: &Description) -> Result<(), Diagnostics> {
        let mut problems: Vec<Diagnostic> = Vec::new();
        let mut flag = |span: Option<Range<usize>>, message: String| {
            if !problems.iter().any(|p| p.message == message) {
                problems.push(desc.diagnostic(span, message));
            }
        };
        match &desc.form {
            Form::Raw(launch) => {
                for e in super::launch::elements(launch, &desc.text) {
                    for (span, p) in self.placed_problems(&e) {
                        flag(Some(span), p);
                    }
                }
            }
            Form::Structured(s) => {
                match &s.source.value {
                    Source::File(f) if !self.allow_paths => flag(
                        Some(f.path.span()),
                        format!("a `file` source reads a path: {PATHS}"),
                    ),
                    Source::Uri(u) if !self.allow_paths && !is_network_uri(u.uri.get_ref()) => {
                        flag(
                            Some(u.uri.span()),
                            format!(
                                "this URI is not a network URI ({}): {PATHS}",
                                NETWORK_SCHEMES.join(", ")
                            ),
                        )
                    }
                    Source::Camera(c) if !self.allow_devices => flag(
                        Some(if c.device.span().is_empty() {
                            s.source.span.clone()
                        } else {
                            c.device.span()
                        }),
                        format!("a `camera` source opens a device: {DEVICES}"),
                    ),
                    _ => {}
                }
                if let Some(encoder) = &s.encode.encoder
                    && let Some(p) = self.element_problem(encoder.get_ref(), None)
                {
                    flag(Some(encoder.span()), p);
                }
                for out in &s.outputs {
                    if let Output::File(f) = &out.value
                        && !self.allow_paths
                    {
                        flag(
                            Some(f.path.span()),
                            format!("a `file` output writes a path: {PATHS}"),
                        );
                    }
                }
                for hook in &s.hooks {
                    self.check_hook(hook, &mut flag);
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(problems))
        }
    }

    fn check_hook(
        &self,
        hook: &super::Located<Hook>,
        flag: &mut impl FnMut(Option<Range<usize>>, String),
    ) {
        match &hook.value {
            Hook::Process(p) if !self.allow_process => flag(
                Some(p.command.span()),
                "a `process` hook runs a command on the server: descriptions sent over the API may not (the operator can permit it with --api-allow-process)".into(),
            ),
            Hook::Socket(k) if !self.allow_paths && k.listen.get_ref().starts_with("unix:") => {
                flag(Some(k.listen.span()), format!("a unix socket is a path: {PATHS}"))
            }
            Hook::Snapshot(snap)
                if !self.allow_paths && snap.path != super::hooks::default_snapshot_path() =>
            {
                flag(
                    Some(hook.span.clone()),
                    format!("a snapshot `path` of its own writes a path: {PATHS}"),
                )
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_that_name_paths_or_devices() {
        assert_eq!(names("location", "/etc/passwd"), Some(Names::Path));
        assert_eq!(names("location", "rtsp://cam/live"), None);
        assert_eq!(names("uri", "FILE:///etc/passwd"), Some(Names::Path));
        assert_eq!(names("uri", "srt://host:7001"), None);
        assert_eq!(names("temp-template", "/tmp/x"), Some(Names::Path));
        assert_eq!(names("moov-recovery-file", "/tmp/x"), Some(Names::Path));
        assert_eq!(names("device", "/dev/video0"), Some(Names::Device));
        assert_eq!(names("bitrate", "2000"), None);
        assert!(!is_network_uri("http:/etc/passwd"));
        assert!(!is_network_uri("gopher://x"));
        assert!(is_network_uri("HTTPS://example.org/x"));
    }

    #[test]
    fn options_that_write_files() {
        let policy = ApiPolicy::default();
        assert!(
            policy
                .property_problem("x264enc", "option-string", "dump-yuv=/tmp/x")
                .is_some()
        );
        assert!(
            policy
                .property_problem("x264enc", "pass", "pass1")
                .is_some()
        );
        assert!(
            policy
                .property_problem("x264enc", "pass", "quant")
                .is_none()
        );
        assert!(
            policy
                .property_problem("x264enc", "bitrate", "900")
                .is_none()
        );
        let open = ApiPolicy {
            allow_paths: true,
            ..ApiPolicy::default()
        };
        assert!(
            open.property_problem("x264enc", "option-string", "x")
                .is_none()
        );
    }
}
