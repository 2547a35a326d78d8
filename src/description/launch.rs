//! Checking a raw `launch` line the way gst-launch-1.0 would parse it, with positions.

use super::{Launch, elements};
use gst::prelude::*;
use std::ops::Range;

/// Parses the launch line (building, then dropping, its elements) and reports the first
/// problem at the spot of the line it concerns.
pub(super) fn validate(launch: &Launch, file_text: &str) -> Result<(), (Range<usize>, String)> {
    if launch.text.trim().is_empty() {
        return Err((launch.span.clone(), "`launch` is empty".into()));
    }
    let mut ctx = gst::ParseContext::new();
    let result =
        gst::parse::launch_full(&launch.text, Some(&mut ctx), gst::ParseFlags::FATAL_ERRORS);
    let err = match result {
        Ok(element) => {
            // Parsing only: do not leave anything behind.
            let _ = element.set_state(gst::State::Null);
            return Ok(());
        }
        Err(e) => e,
    };
    let at = |token: Option<usize>| locate(launch, file_text, token);
    let message = err.message().to_string();
    let tokens = tokens(&launch.text);
    match err.kind::<gst::ParseError>() {
        Some(gst::ParseError::NoSuchElement) => {
            let missing = ctx.missing_elements();
            let name = missing
                .first()
                .map(|s| s.to_string())
                .or_else(|| quoted(&message, 0))
                .unwrap_or_default();
            let token = tokens.iter().find(|(_, t)| *t == name).map(|(i, _)| *i);
            Err((at(token), elements::explain_missing(&name)))
        }
        Some(gst::ParseError::NoSuchProperty) | Some(gst::ParseError::CouldNotSetProperty) => {
            // "no property \"p\" in element \"e\"": the first `p=` after element `e`.
            let prop = format!("{}=", quoted(&message, 0).unwrap_or_default());
            let element = quoted(&message, 1).unwrap_or_default();
            let after = tokens.iter().position(|(_, t)| *t == element).unwrap_or(0);
            let token = tokens[after..]
                .iter()
                .find(|(_, t)| t.starts_with(&prop))
                .map(|(i, _)| *i);
            Err((at(token), format!("in `launch`: {message}")))
        }
        _ => Err((
            launch.span.clone(),
            format!("`launch` does not parse: {message}"),
        )),
    }
}

/// The element factories a (valid) launch line uses, each with the span of its first mention
/// in the file (the whole value when it cannot be pinned down).
pub(super) fn factories(launch: &Launch, file_text: &str) -> Vec<(String, Range<usize>)> {
    let Ok(top) = gst::parse::launch(&launch.text) else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    let mut note = |e: &gst::Element| {
        if let Some(f) = e.factory() {
            let name = f.name().to_string();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    };
    note(&top);
    if let Some(bin) = top.downcast_ref::<gst::Bin>() {
        for e in bin.iterate_recurse().into_iter().flatten() {
            note(&e);
        }
    }
    let _ = top.set_state(gst::State::Null);
    let words = tokens(&launch.text);
    names
        .into_iter()
        .map(|name| {
            let token = words.iter().find(|(_, w)| *w == name).map(|(i, _)| *i);
            let span = locate(launch, file_text, token);
            (name, span)
        })
        .collect()
}

/// Whitespace-separated words of a launch line with their byte offsets; a double-quoted
/// part (a property value with spaces) stays inside its word.
fn tokens(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push((s, &line[s..i]));
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// The n-th "quoted" word of a GStreamer error message.
fn quoted(message: &str, n: usize) -> Option<String> {
    message.split('"').nth(2 * n + 1).map(str::to_string)
}

/// The span, in the file, of the launch-line word starting at byte `token` of the value. When
/// the TOML string uses escapes (so file text and value differ) this falls back to the value.
fn locate(launch: &Launch, file_text: &str, token: Option<usize>) -> Range<usize> {
    let whole = launch.span.clone();
    let (Some(token), Some(raw)) = (token, file_text.get(whole.clone())) else {
        return whole;
    };
    let quote_len = ["\"\"\"", "'''", "\"", "'"]
        .iter()
        .find(|q| raw.starts_with(**q))
        .map_or(0, |q| q.len());
    // A multi-line string may start with a newline that is not part of the value.
    let mut body_start = quote_len;
    if quote_len == 3 && raw[body_start..].starts_with('\n') {
        body_start += 1;
    }
    if !raw[body_start..].starts_with(launch.text.as_str()) {
        return whole;
    }
    let start = whole.start + body_start + token;
    start..start + 1
}

#[cfg(test)]
mod tests {
    use super::tokens;

    #[test]
    fn words_keep_quoted_values_together() {
        let t = tokens("filesrc location=\"/a b/x264enk\" ! x264enk");
        assert_eq!(
            t,
            vec![
                (0, "filesrc"),
                (8, "location=\"/a b/x264enk\""),
                (32, "!"),
                (34, "x264enk")
            ]
        );
    }
}
