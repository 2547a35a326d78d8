//! What a description that arrives over the API may contain.
//!
//! A file in the pipelines directory is the operator's; a description sent with `PUT` comes
//! from whoever holds an `admin` token, which should not be enough to read or write arbitrary
//! files, open devices other than cameras, or run commands on the server. So, by default,
//! descriptions sent over the API may not use the elements of [`DEFAULT_DENY`] in a raw
//! `launch` line (or as a forced encoder), structured `file` sources and outputs, `file:` URIs,
//! `unix:` hook sockets or snapshot paths of their own (`--api-allow-paths`), or `process`
//! hooks (`--api-allow-process`). The operator can name more elements to deny, allow some back,
//! or switch to an allow-list (only the elements named).

use super::{Description, Diagnostic, Diagnostics, Form, Hook, Output, Source};
use std::ops::Range;

/// Elements that read or write files, file descriptors, shared memory or sound/video devices.
pub const DEFAULT_DENY: &[&str] = &[
    "filesrc",
    "filesink",
    "multifilesrc",
    "multifilesink",
    "splitmuxsrc",
    "splitmuxsink",
    "giosrc",
    "giosink",
    "fdsrc",
    "fdsink",
    "shmsrc",
    "shmsink",
    "v4l2sink",
    "alsasrc",
    "alsasink",
    "pulsesrc",
    "pulsesink",
    "dvbsrc",
];

/// The rules for descriptions sent over the API.
#[derive(Debug, Clone)]
pub struct ApiPolicy {
    /// Elements refused.
    pub deny: Vec<String>,
    /// If set, the only elements accepted in a raw `launch` line (and as a forced encoder).
    pub allow_only: Option<Vec<String>>,
    /// Structured paths on the server (file sources and outputs, `file:` URIs, unix sockets,
    /// snapshot paths).
    pub allow_paths: bool,
    /// `process` hooks (they run a command).
    pub allow_process: bool,
}

impl Default for ApiPolicy {
    fn default() -> Self {
        ApiPolicy {
            deny: DEFAULT_DENY.iter().map(|s| s.to_string()).collect(),
            allow_only: None,
            allow_paths: false,
            allow_process: false,
        }
    }
}

impl ApiPolicy {
    /// `--api-allow-element NAME` takes NAME off the deny list.
    pub fn allow(&mut self, element: &str) {
        self.deny.retain(|d| d != element);
    }

    fn element_problem(&self, factory: &str) -> Option<String> {
        if let Some(only) = &self.allow_only
            && !only.iter().any(|a| a == factory)
        {
            return Some(format!(
                "element `{factory}` is not on the allow-list for descriptions sent over the API ({})",
                only.join(", ")
            ));
        }
        self.deny.iter().any(|d| d == factory).then(|| {
            format!(
                "element `{factory}` is not allowed in descriptions sent over the API: it reads or writes files or devices (the operator can permit it with --api-allow-element {factory})"
            )
        })
    }

    /// Every rule `desc` breaks, at its place in the text.
    pub fn check(&self, desc: &Description) -> Result<(), Diagnostics> {
        let mut problems: Vec<Diagnostic> = Vec::new();
        let mut flag = |span: Option<Range<usize>>, message: String| {
            problems.push(desc.diagnostic(span, message));
        };
        let paths = "descriptions sent over the API may not name paths on the server (the operator can permit it with --api-allow-paths)";
        match &desc.form {
            Form::Raw(launch) => {
                for (factory, span) in super::launch::factories(launch, &desc.text) {
                    if let Some(p) = self.element_problem(&factory) {
                        flag(Some(span), p);
                    }
                }
            }
            Form::Structured(s) => {
                match &s.source.value {
                    Source::File(f) if !self.allow_paths => flag(
                        Some(f.path.span()),
                        format!("a `file` source reads a path: {paths}"),
                    ),
                    Source::Uri(u) if !self.allow_paths && is_file_uri(u.uri.get_ref()) => flag(
                        Some(u.uri.span()),
                        format!("a `file:` URI reads a path: {paths}"),
                    ),
                    _ => {}
                }
                if let Some(encoder) = &s.encode.encoder
                    && let Some(p) = self.element_problem(encoder.get_ref())
                {
                    flag(Some(encoder.span()), p);
                }
                for out in &s.outputs {
                    if let Output::File(f) = &out.value
                        && !self.allow_paths
                    {
                        flag(
                            Some(f.path.span()),
                            format!("a `file` output writes a path: {paths}"),
                        );
                    }
                }
                for hook in &s.hooks {
                    match &hook.value {
                        Hook::Process(p) if !self.allow_process => flag(
                            Some(p.command.span()),
                            "a `process` hook runs a command on the server: descriptions sent over the API may not (the operator can permit it with --api-allow-process)".into(),
                        ),
                        Hook::Socket(k)
                            if !self.allow_paths && k.listen.get_ref().starts_with("unix:") =>
                        {
                            flag(Some(k.listen.span()), format!("a unix socket is a path: {paths}"))
                        }
                        Hook::Snapshot(snap)
                            if !self.allow_paths && snap.path != super::types::default_snapshot_path() =>
                        {
                            flag(Some(hook.span.clone()), format!("a snapshot `path` of its own writes a path: {paths}"))
                        }
                        _ => {}
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(problems))
        }
    }
}

fn is_file_uri(uri: &str) -> bool {
    uri.trim_start()
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("file:"))
}
