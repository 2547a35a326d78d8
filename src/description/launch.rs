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
    let at = |needle: &str| locate(launch, file_text, needle);
    let message = err.message().to_string();
    match err.kind::<gst::ParseError>() {
        Some(gst::ParseError::NoSuchElement) => {
            let missing = ctx.missing_elements();
            let name = missing
                .first()
                .map(|s| s.to_string())
                .or_else(|| quoted(&message, 0))
                .unwrap_or_default();
            Err((at(&name), elements::explain_missing(&name)))
        }
        Some(gst::ParseError::NoSuchProperty) | Some(gst::ParseError::CouldNotSetProperty) => {
            let prop = quoted(&message, 0).unwrap_or_default();
            Err((at(&format!("{prop}=")), format!("in `launch`: {message}")))
        }
        _ => Err((
            launch.span.clone(),
            format!("`launch` does not parse: {message}"),
        )),
    }
}

/// The n-th "quoted" word of a GStreamer error message.
fn quoted(message: &str, n: usize) -> Option<String> {
    message.split('"').nth(2 * n + 1).map(str::to_string)
}

/// The span of `needle` inside the launch string as written in the file. When the TOML string
/// uses escapes (so file text and value differ) this falls back to the whole value.
fn locate(launch: &Launch, file_text: &str, needle: &str) -> Range<usize> {
    let whole = launch.span.clone();
    let Some(raw) = file_text.get(whole.clone()) else {
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
    let body = &raw[body_start..];
    if needle.is_empty() || !body.starts_with(launch.text.as_str()) {
        return whole;
    }
    match find_word(&launch.text, needle) {
        Some(i) => {
            let start = whole.start + body_start + i;
            start..start + needle.len()
        }
        None => whole,
    }
}

/// The first occurrence of `needle` that is not part of a longer name.
fn find_word(hay: &str, needle: &str) -> Option<usize> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    hay.match_indices(needle).map(|(i, _)| i).find(|&i| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        before.is_none_or(|c| !is_name(c))
            && (needle.ends_with('=') || after.is_none_or(|c| !is_name(c)))
    })
}

#[cfg(test)]
mod tests {
    use super::find_word;

    #[test]
    fn finds_whole_words_only() {
        assert_eq!(find_word("x264enk ! x264enc", "x264enc"), Some(10));
        assert_eq!(find_word("src pattern=1 xpattern=2", "pattern="), Some(4));
        assert_eq!(find_word("videotestsrc0", "videotestsrc"), None);
    }
}
