//! Description files: the TOML a user writes in `pipelines/NAME.toml`.
//!
//! Two forms share the same options (`autostart`, `restart`, `backoff`, `description`):
//! - *raw*: `launch = "<gst-launch-1.0 line>"` runs exactly that pipeline;
//! - *structured*: a `[source]`, an optional `[encode]` and `[[output]]` tables that
//!   [`crate::assemble`] turns into a pipeline.
//!
//! Parsing keeps byte spans of every key and value, so that every problem — TOML syntax, an
//! unknown key, a wrong type, an element GStreamer does not have, a launch line that does not
//! parse — is reported as `FILE:LINE:COL: message` at the offending spot.

mod diagnostic;
pub mod elements;
mod hooks;
mod jpeg_tcp;
mod ladder;
mod launch;
mod outputs;
pub mod policy;
mod types;
mod units;
mod validate;

pub use diagnostic::{Diagnostic, Diagnostics, line_col};
pub use hooks::{HOOK_FORMATS, Hook, HookTransport, RustHook, SnapshotHook, StatsHook};
pub use jpeg_tcp::{DEFAULT_MAX_FRAME_BYTES, JpegFraming, JpegTcpOutput, JpegTcpSource};
pub use ladder::{Ladder, Rung};
pub use outputs::{Container, FileOutput, Output, RecordOutput, TcpOutput, WebRtcOutput};
pub use policy::ApiPolicy;
pub use types::{
    AudioCodec, Backoff, CameraFormat, CameraSource, Encode, FileSource, Options, Passthrough,
    RestartPolicy, RoomSource, Source, StallTimeout, TcpSource, TestSource, UriSource, VideoCodec,
    WebRtcSource,
};

use serde::Deserialize;
use serde_spanned::Spanned;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A description file that parsed and passed static validation.
#[derive(Debug, Clone)]
pub struct Description {
    /// The pipeline's name: the file stem.
    pub name: String,
    pub path: PathBuf,
    /// The file's text, kept so later stages (assembly, camera checks) can point into it.
    pub text: String,
    pub options: Options,
    pub form: Form,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    Raw(Launch),
    Structured(Structured),
}

/// A raw gst-launch line, with the span of its TOML string value.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub text: String,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Structured {
    pub source: Located<Source>,
    pub encode: Encode,
    pub outputs: Vec<Located<Output>>,
    pub hooks: Vec<Located<Hook>>,
}

impl Structured {
    /// The ladder's rungs, top (the source's size at the encode's bitrate) first; None without
    /// a ladder or without a known source size.
    pub fn ladder(&self) -> Option<Vec<Rung>> {
        let ladder = self.encode.ladder.as_ref()?;
        let (w, h, _) = self.source.value.video_size();
        let top = Rung {
            width: w?,
            height: h?,
            bitrate: self.encode.bitrate,
        };
        Some(ladder.get_ref().rungs(top))
    }

    /// Whether the source's stream is kept as it arrives (published, pulled over WHEP, or
    /// passed through): there is no decoded video to scale, transform or encode again.
    pub fn kept_as_arrives(&self) -> bool {
        matches!(
            self.source.value,
            Source::WebRtc(_) | Source::Room(_) | Source::Whep(_)
        ) || self.passthrough().is_some()
    }

    /// Whether (and as what) the source's stream goes to the outputs without decoding.
    pub fn passthrough(&self) -> Option<Passthrough> {
        let (explicit, codec, audio_codec, audio) = match &self.source.value {
            Source::Tcp(t) => (t.passthrough, t.codec, t.audio_codec, t.audio),
            Source::Uri(u) => (u.passthrough, u.codec, u.audio_codec, u.audio),
            _ => return None,
        };
        let (w, h, fps) = self.source.value.video_size();
        let only_records = self
            .outputs
            .iter()
            .all(|o| matches!(o.value, Output::Record(_)));
        let default = only_records && w.is_none() && h.is_none() && fps.is_none();
        explicit.unwrap_or(default).then_some(Passthrough {
            codec,
            audio: audio.then_some(audio_codec),
        })
    }
}

/// A value with the span of the table it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl Description {
    /// A diagnostic pointing at `span` of this file.
    pub fn diagnostic(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at_span(&self.path, &self.text, span, message)
    }

    pub fn form_name(&self) -> &'static str {
        match self.form {
            Form::Raw(_) => "raw",
            Form::Structured(_) => "structured",
        }
    }
}

/// Reads and validates `path`. The pipeline name is the file stem.
pub fn load(path: &Path) -> Result<Description, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::at(
            path,
            "",
            0,
            format!("cannot read the description file: {e}"),
        )
    })?;
    parse(path, &text)
}

/// `NAME.toml`, not a hidden or temporary file (`PUT` writes `.put-*.tmp` and renames;
/// editors leave `.#NAME.toml` locks).
pub fn is_description(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'))
}

/// Validates a description given its text; `path` names it in errors and gives the name.
pub fn parse(path: &Path, text: &str) -> Result<Description, Diagnostics> {
    parse_with(path, text, None)
}

/// Validates a description sent over the API and holds it to `policy`. A raw line's elements
/// are checked against the allow-list before GStreamer builds any of them.
pub fn parse_for_api(
    path: &Path,
    text: &str,
    policy: &ApiPolicy,
) -> Result<Description, Diagnostics> {
    let desc = parse_with(path, text, Some(policy))?;
    policy.check(&desc)?;
    Ok(desc)
}

fn parse_with(
    path: &Path,
    text: &str,
    policy: Option<&ApiPolicy>,
) -> Result<Description, Diagnostics> {
    let name = pipeline_name(path).map_err(|m| Diagnostic::at(path, text, 0, m))?;
    let diag = |span: Option<Range<usize>>, msg: String| Diagnostic::at_span(path, text, span, msg);
    let toml_diag = |e: toml::de::Error| diag(e.span(), describe_toml_error(e.message()));

    let root = DeTable::parse(text).map_err(toml_diag)?;
    let root_span = root.span();
    let table = root.into_inner();

    let top = TopLevel::deserialize(ValueDeserializer::from(Spanned::new(
        root_span.clone(),
        DeValue::Table(table.clone()),
    )))
    .map_err(toml_diag)?;

    let options = Options {
        description: top.description,
        autostart: top.autostart.unwrap_or(true),
        restart: top.restart.unwrap_or_default(),
        backoff: top.backoff.unwrap_or_default(),
        stall_timeout: top.stall_timeout.map(|t| t.0),
    };
    if options.backoff.initial > options.backoff.max {
        return Err(diag(
            find_key(&table, "backoff"),
            "backoff.initial is longer than backoff.max".into(),
        )
        .into());
    }

    let form = match (top.launch, find(&table, "source")) {
        (Some(launch), None) => {
            for key in ["encode", "output", "hook"] {
                if let Some(span) = find_key(&table, key) {
                    return Err(diag(
                        Some(span),
                        format!("`{key}` belongs to the structured form; a file with `launch` runs exactly that line"),
                    )
                    .into());
                }
            }
            let launch = Launch {
                span: launch.span(),
                text: launch.into_inner(),
            };
            if let Some(policy) = policy {
                let problems: Vec<Diagnostic> = policy
                    .precheck(&launch)
                    .into_iter()
                    .map(|(at, msg)| diag(Some(launch::locate_word(&launch, text, at)), msg))
                    .collect();
                if !problems.is_empty() {
                    return Err(Diagnostics(problems));
                }
            }
            launch::validate(&launch, text).map_err(|(span, msg)| diag(Some(span), msg))?;
            Form::Raw(launch)
        }
        (Some(launch), Some(_)) => {
            return Err(diag(
                Some(launch.span()),
                "a file has either `launch` (raw form) or a [source] table (structured form), not both".into(),
            )
            .into());
        }
        (None, Some(source)) => {
            let source = Located {
                span: source.span(),
                value: parse_kinded::<Source>(source, "source").map_err(|(s, m)| diag(s, m))?,
            };
            let outputs =
                parse_kinded_array::<Output>(&table, "output").map_err(|(s, m)| diag(s, m))?;
            let hooks = parse_kinded_array::<Hook>(&table, "hook").map_err(|(s, m)| diag(s, m))?;
            if outputs.is_empty() && hooks.is_empty() {
                return Err(diag(
                    Some(source.span.clone()),
                    "a structured pipeline needs at least one [[output]] (e.g. kind = \"tcp\", port = 5000) or [[hook]]".into(),
                )
                .into());
            }
            let structured = Structured {
                source,
                encode: top.encode.unwrap_or_default(),
                outputs,
                hooks,
            };
            validate::validate(&structured).map_err(|(at, m)| {
                let span = match at {
                    validate::Where::Span(span) => Some(span),
                    validate::Where::Key(table_name, key) => find(&table, table_name)
                        .and_then(|t| match t.get_ref() {
                            DeValue::Table(t) => find(t, key).map(|v| v.span()),
                            _ => None,
                        })
                        .or(Some(structured.source.span.clone())),
                };
                diag(span, m)
            })?;
            Form::Structured(structured)
        }
        (None, None) => {
            return Err(diag(
                None,
                "nothing to run: write `launch = \"<gst-launch-1.0 line>\"` (raw form) or a [source] table with [[output]] tables (structured form)".into(),
            )
            .into());
        }
    };

    Ok(Description {
        name,
        path: path.to_path_buf(),
        text: text.to_string(),
        options,
        form,
    })
}

/// Pipeline names come from file stems and appear in URLs and paths: keep them plain.
pub fn pipeline_name(path: &Path) -> Result<String, String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| "the file name is not valid UTF-8".to_string())?;
    validate_name(stem)?;
    Ok(stem.to_string())
}

/// A pipeline name: letters, digits, `-` and `_`, starting with a letter or digit.
/// The pipeline a stream belongs to: a room participant's (`room/participant`) is the room's.
pub fn pipeline_of(stream: &str) -> &str {
    stream.split('/').next().unwrap_or(stream)
}

pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid pipeline name: use up to 64 letters, digits, `-` and `_`"
        ))
    }
}

/// The top level of a description file. `source` and `output` are checked here only for
/// presence; they are deserialized by kind in [`parse_kinded`] so their errors keep spans.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopLevel {
    description: Option<String>,
    autostart: Option<bool>,
    restart: Option<RestartPolicy>,
    backoff: Option<Backoff>,
    stall_timeout: Option<StallTimeout>,
    launch: Option<Spanned<String>>,
    encode: Option<Encode>,
    #[allow(dead_code)]
    source: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    output: Option<serde::de::IgnoredAny>,
    #[allow(dead_code)]
    hook: Option<serde::de::IgnoredAny>,
}

fn find<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

fn find_key(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(k, _)| k.span())
}

/// A table whose `kind` key picks the Rust type it deserializes into.
pub(crate) trait Kinded: Sized {
    const KINDS: &'static [&'static str];
    fn deserialize_kind(kind: &str, de: ValueDeserializer<'_>) -> Result<Self, toml::de::Error>;
}

type SpannedMessage = (Option<Range<usize>>, String);

/// A `[[key]]` array of kinded tables (absent = empty).
fn parse_kinded_array<T: Kinded>(
    table: &DeTable<'_>,
    key: &str,
) -> Result<Vec<Located<T>>, SpannedMessage> {
    let Some(value) = find(table, key) else {
        return Ok(Vec::new());
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Err((
            Some(value.span()),
            format!("`{key}` must be an array of tables: write each one as [[{key}]]"),
        ));
    };
    items
        .iter()
        .map(|item| {
            Ok(Located {
                span: item.span(),
                value: parse_kinded::<T>(item, key)?,
            })
        })
        .collect()
}

fn parse_kinded<T: Kinded>(value: &Spanned<DeValue<'_>>, what: &str) -> Result<T, SpannedMessage> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err((Some(value.span()), format!("`{what}` must be a table")));
    };
    let kinds = T::KINDS.join(", ");
    let Some(kind) = find(table, "kind") else {
        return Err((
            Some(value.span()),
            format!("[{what}] needs a `kind`: one of {kinds}"),
        ));
    };
    let Some(kind_name) = kind.get_ref().as_str() else {
        return Err((
            Some(kind.span()),
            format!("`kind` must be a string: one of {kinds}"),
        ));
    };
    if !T::KINDS.contains(&kind_name) {
        let near = T::KINDS
            .iter()
            .min_by_key(|k| strsim::damerau_levenshtein(kind_name, k))
            .filter(|k| strsim::damerau_levenshtein(kind_name, k) <= 2)
            .map(|k| format!("; did you mean `{k}`?"))
            .unwrap_or_default();
        return Err((
            Some(kind.span()),
            format!("unknown {what} kind `{kind_name}` (expected one of {kinds}){near}"),
        ));
    }
    // The kind has been read: the rest of the table must match that kind's fields exactly.
    let rest: DeTable<'_> = table
        .iter()
        .filter(|(k, _)| k.get_ref().as_ref() != "kind")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let de = ValueDeserializer::from(Spanned::new(value.span(), DeValue::Table(rest)));
    T::deserialize_kind(kind_name, de).map_err(|e| (e.span(), describe_toml_error(e.message())))
}

/// toml/serde messages, with a "did you mean" for misspelt keys.
fn describe_toml_error(message: &str) -> String {
    let message = message.trim();
    // serde: "unknown field `widht`, expected one of `device`, `width`, ..."
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let near = candidates
            .iter()
            .min_by_key(|c| strsim::damerau_levenshtein(field, c))
            .filter(|c| strsim::damerau_levenshtein(field, c) <= 2);
        let valid = if candidates.is_empty() {
            "no keys are allowed here".to_string()
        } else {
            format!("valid keys: {}", candidates.join(", "))
        };
        return match near {
            Some(near) => format!("unknown key `{field}`; did you mean `{near}`? ({valid})"),
            None => format!("unknown key `{field}` ({valid})"),
        };
    }
    message.to_string()
}
