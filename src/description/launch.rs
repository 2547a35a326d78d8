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

/// What a word of a launch line makes, read without GStreamer (so nothing is built).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Maker<'a> {
    /// An element of this factory (also a typed bin, `rtpbin.( ... )`).
    Factory(&'a str),
    /// An element made from a URI or a path (`file:///x`, `/x`).
    Uri(&'a str),
    /// `name=value` (quotes removed) set on the element the last `Factory` made, if any;
    /// `child::name` sets a property of a bin's child.
    Property {
        element: Option<&'a str>,
        name: &'a str,
        value: &'a str,
    },
    /// A word this reading cannot classify with certainty (a quoted word that is not caps).
    Unclear(&'a str),
}

/// `prop=value`, as gst-launch's lexer reads an assignment: an identifier, `=`, a value.
fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    let identifier = (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '%' | ':'));
    identifier.then_some((name, value))
}

/// `video/x-raw`, `video/x-raw,width=640`: a caps filter's media type starts the word.
fn is_caps(word: &str) -> bool {
    caps_start(word) == Some(0)
}

/// The words of a launch line that make elements or set properties, with their byte offsets,
/// following gst-launch's lexer but erring on the side of seeing an element: links (`!`, `:`),
/// caps, references (`t.`, `t.src_0`), presets and parentheses make nothing; a word that
/// cannot be read with certainty is `Unclear`.
pub(super) fn makers<'a>(line: &'a str) -> Vec<(usize, Maker<'a>)> {
    // Words separated by unquoted whitespace, `!`, `;` and the parentheses of bins (not those
    // of a typed caps value, `format=(string)I420`).
    let mut words: Vec<(usize, &str)> = Vec::new();
    let mut start = None;
    let mut typed = false;
    let mut prev = None;
    for (i, c, outside) in scan(line) {
        if outside && c == '(' && matches!(prev, Some('=') | Some(',')) {
            typed = true;
        }
        let sep = outside && !typed && (c.is_whitespace() || matches!(c, '!' | '(' | ')' | ';'));
        if outside && c == ')' && typed {
            typed = false;
        }
        prev = Some(c);
        if sep {
            if let Some(s) = start.take() {
                words.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push((s, &line[s..]));
    }
    let next_char = |end: usize| line[end..].trim_start().chars().next();
    let mut current: Option<&str> = None;
    let mut out = Vec::new();
    for (at, w) in words {
        if let Some(quoted) = w.strip_prefix('"').or_else(|| w.strip_prefix('\'')) {
            // Only caps stand quoted on their own (`! "video/x-raw, format=I420" !`).
            current = None;
            if !is_caps(quoted) {
                out.push((at, Maker::Unclear(w)));
            }
            continue;
        }
        if let Some((name, value)) = assignment(w) {
            let unquote = |v: &'a str| {
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v)
            };
            out.push((
                at,
                Maker::Property {
                    element: current,
                    name,
                    value: unquote(value),
                },
            ));
            continue;
        }
        if w.contains("://") {
            current = None;
            out.push((at, Maker::Uri(w)));
            continue;
        }
        // What is left may hold several tokens: `caps:element` (a `:` link), `element@preset=x`.
        let mut offset = at;
        for piece in w.split([':', '@']) {
            let piece_at = offset;
            offset += piece.len() + 1;
            let end = piece_at + piece.len();
            let made = if piece.contains('/') {
                current = None;
                (!is_caps(piece)).then_some(Maker::Uri(piece))
            } else if piece.is_empty() || piece.contains('=') {
                // Between links, or a caps field or preset name: nothing made.
                None
            } else if let Some(bin) = piece.strip_suffix('.')
                && next_char(end) == Some('(')
            {
                Some(Maker::Factory(bin))
            } else if piece.contains('.') {
                // A reference (`t.`, `t.src_0`): what follows sets nothing here.
                current = None;
                None
            } else if piece.ends_with(',') {
                // A caps field list continues after a comma (`video/x-raw, format=I420`).
                None
            } else {
                Some(Maker::Factory(piece))
            };
            if let Some(m) = made {
                if let Maker::Factory(f) = m {
                    current = Some(f);
                }
                out.push((piece_at, m));
            }
        }
    }
    out
}

/// The type of property `name` of elements of `factory`, read from its class (no element is
/// made); None if there is no such factory or property.
pub(super) fn property_type(factory: &str, name: &str) -> Option<glib::Type> {
    let factory = gst::ElementFactory::find(factory)?.load().ok()?;
    let class = glib::Class::<glib::Object>::from_type(factory.element_type())?;
    class.find_property(name).map(|p| p.value_type())
}

/// One element of a parsed launch line, as the API policy needs to see it.
pub(super) struct Placed {
    pub factory: String,
    /// The factory of the bin it sits in (hlssink2 holds a splitmuxsink), if not the top.
    pub inside: Option<String>,
    /// Its first mention in the file (the whole value when it cannot be pinned down; an
    /// element a bin made for itself points at the bin).
    pub span: Range<usize>,
    /// Properties that differ from their defaults: (name, value as text, span of `name=`).
    pub changed: Vec<(String, String, Range<usize>)>,
}

/// Every element of a (valid) launch line, bins' children included, with the properties the
/// line (or a bin, for its children) set.
pub(super) fn elements(launch: &Launch, file_text: &str) -> Vec<Placed> {
    let Ok(top) = gst::parse::launch(&launch.text) else {
        return Vec::new();
    };
    let mut all = vec![top.clone()];
    if let Some(bin) = top.downcast_ref::<gst::Bin>() {
        all.extend(bin.iterate_recurse().into_iter().flatten());
    }
    let words = tokens(&launch.text);
    let word_of = |name: &str| words.iter().find(|(_, w)| *w == name).map(|(i, _)| *i);
    let placed = all
        .iter()
        .filter_map(|e| {
            let factory = e.factory()?.name().to_string();
            let inside = e
                .parent()
                .and_then(|p| p.downcast::<gst::Element>().ok())
                .filter(|p| *p != top)
                .and_then(|p| p.factory())
                .map(|f| f.name().to_string());
            let at = word_of(&factory).or_else(|| inside.as_deref().and_then(word_of));
            let changed = changed_properties(e)
                .into_iter()
                .map(|(name, value)| {
                    // The first `name=` after the element's word.
                    let prop = format!("{name}=");
                    let token = words
                        .iter()
                        .skip_while(|(i, _)| at.is_some_and(|a| *i < a))
                        .find(|(_, w)| w.starts_with(&prop))
                        .map(|(i, _)| *i)
                        .or(at);
                    (name, value, locate(launch, file_text, token))
                })
                .collect();
            Some(Placed {
                factory,
                inside,
                span: locate(launch, file_text, at),
                changed,
            })
        })
        .collect();
    let _ = top.set_state(gst::State::Null);
    placed
}

/// The readable, writable string and enum properties of `e` whose value is not the default,
/// as text (enums by nick). Other types cannot name a path and are left out (serializing
/// every type is not safe: some serializers crash on a default value).
fn changed_properties(e: &gst::Element) -> Vec<(String, String)> {
    e.list_properties()
        .iter()
        .filter(|p| {
            p.flags()
                .contains(glib::ParamFlags::READABLE | glib::ParamFlags::WRITABLE)
                && !matches!(p.name(), "name" | "parent")
        })
        .filter_map(|p| {
            let value = e.property_value(p.name());
            let default = p.default_value();
            let text = |v: &glib::Value| -> Option<Option<String>> {
                if v.type_() == glib::Type::STRING {
                    v.get::<Option<String>>().ok()
                } else if v.type_().is_a(glib::Type::ENUM) {
                    Some(glib::EnumValue::from_value(v).map(|(_, ev)| ev.nick().to_string()))
                } else {
                    None
                }
            };
            let now = text(&value)?;
            (now != text(default)?).then(|| (p.name().to_string(), now.unwrap_or_default()))
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

/// [`locate`] for a word known to start at byte `at` of the value.
pub(super) fn locate_word(launch: &Launch, file_text: &str, at: usize) -> Range<usize> {
    locate(launch, file_text, Some(at))
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
    fn element_makers_are_read_without_gstreamer() {
        use super::{Maker, makers};
        let m = |line| {
            makers(line)
                .into_iter()
                .map(|(_, m)| m)
                .filter(|m| !matches!(m, Maker::Property { .. }))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            m(
                "videotestsrc is-live=true ! video/x-raw,width=640 ! x264enc ! tee name=t t. ! queue ! fakesink"
            ),
            vec![
                Maker::Factory("videotestsrc"),
                Maker::Factory("x264enc"),
                Maker::Factory("tee"),
                Maker::Factory("queue"),
                Maker::Factory("fakesink")
            ]
        );
        assert_eq!(
            m(
                "file:///etc/passwd ! a ( b loc=\"x y\" ) rtpbin.( c ) /etc/x ! \"video/x-raw, format=I420\" ! d"
            ),
            vec![
                Maker::Uri("file:///etc/passwd"),
                Maker::Factory("a"),
                Maker::Factory("b"),
                Maker::Factory("rtpbin"),
                Maker::Factory("c"),
                Maker::Uri("/etc/x"),
                Maker::Factory("d")
            ]
        );
        assert_eq!(
            m("a!video/x-raw, format=I420, width=2!b @preset=x t.src_0 ! .sink"),
            vec![Maker::Factory("a"), Maker::Factory("b")]
        );
        // Spellings that hide an element from a simpler reading.
        assert_eq!(
            m("a ! video/x-raw,a=1:v4l2src"),
            vec![Maker::Factory("a"), Maker::Factory("v4l2src")]
        );
        assert_eq!(
            m("a ! fakesink v4l2src@preset=x"),
            vec![
                Maker::Factory("a"),
                Maker::Factory("fakesink"),
                Maker::Factory("v4l2src")
            ]
        );
        assert_eq!(
            m("a ! fakesink \"v4l2src device=/dev/video0\""),
            vec![
                Maker::Factory("a"),
                Maker::Factory("fakesink"),
                Maker::Unclear("\"v4l2src device=/dev/video0\"")
            ]
        );
        // Typed caps values are not bins.
        assert_eq!(
            m("a ! video/x-raw,format=(string)I420,width=(int)2 ! b"),
            vec![Maker::Factory("a"), Maker::Factory("b")]
        );
        assert_eq!(
            makers("a b::c::location=\"/x y\" ! d"),
            vec![
                (0, Maker::Factory("a")),
                (
                    2,
                    Maker::Property {
                        element: Some("a"),
                        name: "b::c::location",
                        value: "/x y"
                    }
                ),
                (26, Maker::Factory("d"))
            ]
        );
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
