//! Secrets out of log lines and messages: `token=` values and URL passwords. A leaf.

/// `text` (a URL, or a message holding URLs) fit for a log line: the value of every `token=`
/// query parameter and the password of every `user:password@` replaced by `REDACTED` (our own
/// signalling URLs carry the service's token; users' URIs may carry theirs).
pub fn redact(text: &str) -> String {
    let ends = |c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '>');
    // user:password@ in the authority after every `://`.
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = at + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find(ends).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:REDACTED@")),
                    None => out.push_str(&format!("{userinfo}@")),
                }
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    // token=VALUE anywhere, whatever the case of `token`.
    let text = out;
    let mut out = String::with_capacity(text.len());
    let mut tail = text.as_str();
    while let Some(at) = tail.to_ascii_lowercase().find("token=") {
        let value_start = at + "token=".len();
        out.push_str(&tail[..value_start]);
        let value_end = tail[value_start..]
            .find(|c: char| c == '&' || c == '#' || c == '"' || c.is_whitespace())
            .map_or(tail.len(), |e| value_start + e);
        if value_end > value_start {
            out.push_str("REDACTED");
        }
        tail = &tail[value_end..];
    }
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_urls_are_redacted() {
        assert_eq!(
            redact("ws://127.0.0.1:8080/ws?token=938e5bfd"),
            "ws://127.0.0.1:8080/ws?token=REDACTED"
        );
        assert_eq!(
            redact("rtsp://cam:hunter2@10.0.0.5/live?a=1&Token=x&b=2"),
            "rtsp://cam:REDACTED@10.0.0.5/live?a=1&Token=REDACTED&b=2"
        );
        assert_eq!(
            redact("http://h/p?access_token=s"),
            "http://h/p?access_token=REDACTED"
        );
        assert_eq!(redact("wss://u@h/ws"), "wss://u@h/ws");
        assert_eq!(
            redact("not a url token=abc def"),
            "not a url token=REDACTED def"
        );
        assert_eq!(redact("x?token="), "x?token=");
        assert_eq!(
            redact("Could not open rtsp://a:b@h:554/x (after http://c:d@e/f)"),
            "Could not open rtsp://a:REDACTED@h:554/x (after http://c:REDACTED@e/f)"
        );
    }
}
