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
    // GStreamer's parser recovers from a dangling link badly (after a caps filter it links
    // elements that are in no bin yet: a GStreamer-CRITICAL), and says only "syntax error":
    // catch it first, at its spot.
    if let Some(at) = dangling_link(&launch.text) {
        return Err((
            locate(launch, file_text, Some(at)),
            "in `launch`: this `!` links to nothing (an element or caps must stand on each side)"
                .into(),
        ));
    }
    if let Some(at) = unclosed_quote(&launch.text) {
        return Err((
            locate(launch, file_text, Some(at)),
            "in `launch`: this quote is never closed".into(),
        ));
    }
    if let Some(at) = bad_media_type(&launch.text) {
        return Err((
            locate(launch, file_text, Some(at)),
            "in `launch`: a caps filter's media type starts with a letter (`video/x-raw`)".into(),
        ));
    }
    // The same for any error near a caps filter (a syntax error, an unknown element): the
    // structure (caps filters as plain elements) is parsed first and its error reported; the
    // line itself is parsed only once its structure holds together.
    let structure = caps_as_elements(&launch.text);
    let (err, ctx) = match parse(&structure) {
        Err(failed) => failed,
        Ok(()) if structure == launch.text => return Ok(()),
        Ok(()) => match parse(&launch.text) {
            Err(failed) => failed,
            Ok(()) => return Ok(()),
        },
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
    for (i, c, outside) in scan(line) {
        if outside && c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// Where a quote opens that nothing closes.
fn unclosed_quote(line: &str) -> Option<usize> {
    let mut open = None;
    for (i, c, outside) in scan(line) {
        // Quotes that open or close a string are not "outside"; escaped ones are skipped.
        if c == '"' && !outside && !line[..i].ends_with('\\') {
            open = if open.is_some() { None } else { Some(i) };
        }
    }
    open
}

/// The characters of a launch line, each with whether it stands outside quotes (quotes and
/// backslash escapes themselves do not). As in gst-launch, a quote opens a quoted string only
/// at the start of a word or value (`name="a b"`, `! "video/x-raw, width=640" !`); inside a
/// word (`a"b`) it is an ordinary character.
fn scan(line: &str) -> impl Iterator<Item = (usize, char, bool)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    let mut prev: Option<char> = None;
    line.char_indices().map(move |(i, c)| {
        let starts_word =
            prev.is_none_or(|p| p.is_whitespace() || matches!(p, '=' | '!' | '(' | ')'));
        let outside = match c {
            _ if escaped => {
                escaped = false;
                false
            }
            '\\' => {
                escaped = true;
                false
            }
            '"' if quoted || starts_word => {
                quoted = !quoted;
                false
            }
            _ => !quoted,
        };
        prev = Some(c);
        (i, c, outside)
    })
}

/// Parses a launch line the way gst-launch-1.0 does, dropping what it built.
fn parse(text: &str) -> Result<(), (glib::Error, gst::ParseContext)> {
    let mut ctx = gst::ParseContext::new();
    match gst::parse::launch_full(text, Some(&mut ctx), gst::ParseFlags::FATAL_ERRORS) {
        Ok(element) => {
            let _ = element.set_state(gst::State::Null);
            Ok(())
        }
        Err(e) => Err((e, ctx)),
    }
}

/// The byte offset of a `!` with nothing to link on one side (at the start, after another `!`
/// or a `(`, or at the end or before a `)`), outside quotes.
fn dangling_link(line: &str) -> Option<usize> {
    // Where the latest `!` is while nothing has followed it yet.
    let mut open_link: Option<usize> = None;
    let mut something = false;
    for (i, c, outside) in scan(line) {
        match c {
            _ if outside && c.is_whitespace() => continue,
            '!' if outside => {
                if !something {
                    return Some(i);
                }
                open_link = Some(i);
                something = false;
                continue;
            }
            '(' if outside => {
                // `a ! ( b )`: the bin is what the link reaches; inside, nothing yet.
                open_link = None;
                something = false;
                continue;
            }
            ')' if outside => {
                if let (Some(at), false) = (open_link, something) {
                    return Some(at);
                }
            }
            _ => {}
        }
        open_link = None;
        something = true;
    }
    open_link
}

/// The parts of a launch line between unquoted `!`s, each with its byte offset.
fn operands(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c, outside) in scan(line) {
        if outside && c == '!' {
            out.push((start, &line[start..i]));
            start = i + 1;
        }
    }
    out.push((start, &line[start..]));
    out
}

/// Where a caps filter operand's media type starts (`video/x-raw,...`, quoted or not), if the
/// operand is one.
fn caps_start(operand: &str) -> Option<usize> {
    let t = operand.trim_start();
    let t = t.strip_prefix('"').unwrap_or(t);
    let name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let (kind, rest) = t.split_once('/')?;
    let sub: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (name(kind) && name(&sub)).then(|| operand.len() - t.len())
}

/// The line with every caps filter (`! video/x-raw,width=640 !`) replaced by `identity`:
/// the same structure without filtered links.
fn caps_as_elements(line: &str) -> String {
    let parts: Vec<&str> = operands(line)
        .into_iter()
        .map(|(_, o)| {
            if caps_start(o).is_some() {
                " identity "
            } else {
                o
            }
        })
        .collect();
    parts.join("!")
}

/// A caps filter whose media type GStreamer would refuse with a critical (it must start with
/// a letter): its offset.
fn bad_media_type(line: &str) -> Option<usize> {
    operands(line).into_iter().find_map(|(at, o)| {
        let start = caps_start(o)?;
        let first = o[start..].chars().next()?;
        (!first.is_ascii_alphabetic()).then_some(at + start)
    })
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
    use super::{bad_media_type, caps_as_elements, dangling_link, tokens};

    #[test]
    fn unclosed_quotes_are_found() {
        assert_eq!(super::unclosed_quote("a name=\"x y\" ! b"), None);
        assert_eq!(super::unclosed_quote("a name=\"x \\\" y\""), None);
        assert_eq!(super::unclosed_quote("\"e!0/6!"), Some(0));
        assert_eq!(super::unclosed_quote("a x=b\"c ! d"), None);
    }

    #[test]
    fn media_types_start_with_a_letter() {
        assert_eq!(bad_media_type("a ! video/x-raw ! b"), None);
        assert_eq!(bad_media_type("a ! 0/a ! b"), Some(4));
        assert_eq!(bad_media_type("a !\"9p/x\"! b"), Some(4));
    }

    #[test]
    fn caps_filters_become_elements() {
        assert_eq!(
            caps_as_elements("a ! video/x-raw,width=640 ! b"),
            "a ! identity ! b"
        );
        assert_eq!(
            caps_as_elements("a !\"video/x-raw, format=(string)I420\"! b name=\"c/d ! e\""),
            "a ! identity ! b name=\"c/d ! e\""
        );
        assert_eq!(
            caps_as_elements("filesrc location=/a/b ! c"),
            "filesrc location=/a/b ! c"
        );
    }

    #[test]
    fn dangling_links_are_found() {
        assert_eq!(dangling_link("a ! b ! c"), None);
        assert_eq!(dangling_link("a!video/x-raw!b"), None);
        assert_eq!(dangling_link("a ! b t. ! c name=\"x ! !\""), None);
        assert_eq!(dangling_link("bin. ( a ! b ) ! c"), None);
        assert_eq!(dangling_link("a ! b !"), Some(6));
        assert_eq!(dangling_link("! a"), Some(0));
        assert_eq!(dangling_link("a ! ! b"), Some(4));
        assert_eq!(dangling_link("( a ! ) ! b"), Some(4));
        assert_eq!(dangling_link("( ! a )"), Some(2));
    }

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
