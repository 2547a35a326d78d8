//! Secrets out of log lines and messages: `token=` values, URL passwords and PEM private
//! keys. A leaf.

/// Keys whose values are secrets: `token=` in URLs, credentials of GStreamer elements in
/// launch lines (`user-pw=`, `proxy-pw=`, `passphrase=`, ...).
const SECRET_KEYS: &[&str] = &[
    "token=",
    "passphrase=",
    "password=",
    "passwd=",
    "-pw=",
    "secret=",
];

/// `text` (a URL, a launch line, or a message holding them) fit for a log line or a status:
/// the value of every secret key ([`SECRET_KEYS`]) and the password of every
/// `user:password@` replaced by `REDACTED` (our own signalling URLs carry the service's
/// token; users' URIs and launch lines may carry theirs), and every PEM private key too (the
/// DTLS elements' `pem` property reads back the service's certificate with its key).
pub fn redact(text: &str) -> String {
    let keyless = without_private_keys(text);
    let text = keyless.as_str();
    let ends = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>');
    // user:password@ after every `://`, up to the last `@` before the URL ends (a password
    // may hold `/`, `?` or `#` unencoded).
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = at + 3;
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = after.find(ends).unwrap_or(after.len());
        match after[..end].rfind('@') {
            Some(amp) => {
                let userinfo = &after[..amp];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:REDACTED")),
                    None => out.push_str(userinfo),
                }
                rest = &after[amp..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    // KEY=VALUE anywhere, whatever the case of the key.
    let text = out;
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    loop {
        let next = SECRET_KEYS
            .iter()
            .filter_map(|k| lower[from..].find(k).map(|i| (from + i, k.len())))
            .min();
        let Some((at, len)) = next else { break };
        let value_start = at + len;
        out.push_str(&text[from..value_start]);
        // `key="a value"`, or `key=\"a value\"` inside a Graphviz label: the quotes stay.
        if let Some(q) = ["\\\"", "\""]
            .into_iter()
            .find(|q| text[value_start..].starts_with(q))
        {
            let inner = value_start + q.len();
            let close = text[inner..].find(q).map_or(text.len(), |e| inner + e);
            out.push_str(q);
            out.push_str("REDACTED");
            from = close;
            continue;
        }
        let value_end = text[value_start..]
            .find(|c: char| c == '&' || c == '#' || c == '\\' || ends(c))
            .map_or(text.len(), |e| value_start + e);
        if value_end > value_start {
            out.push_str("REDACTED");
        }
        from = value_end;
    }
    out.push_str(&text[from..]);
    out
}

/// `text` with each PEM private key block (`-----BEGIN … PRIVATE KEY-----` to its `END`
/// line, or to the end of the text when cut short) replaced by `REDACTED PRIVATE KEY`.
fn without_private_keys(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    const KEY: &str = "PRIVATE KEY-----";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(BEGIN) {
        let label = &rest[at + BEGIN.len()..];
        // The label ends at the first `-----`; only private keys are secret.
        let is_key = label
            .find("-----")
            .is_some_and(|e| label[..e + 5].ends_with(KEY));
        if !is_key {
            out.push_str(&rest[..at + BEGIN.len()]);
            rest = label;
            continue;
        }
        out.push_str(&rest[..at]);
        out.push_str("REDACTED PRIVATE KEY");
        rest = match label.find("-----END ") {
            Some(e) => {
                let after = &label[e + "-----END ".len()..];
                after.find("-----").map_or("", |k| &after[k + 5..])
            }
            None => "",
        };
    }
    out.push_str(rest);
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
            redact(
                "rtspsrc location=rtsp://u:pa/ss#1@cam/x user-pw=hunter2 ! srtsink passphrase=\"a b\""
            ),
            "rtspsrc location=rtsp://u:REDACTED@cam/x user-pw=REDACTED ! srtsink passphrase=\"REDACTED\""
        );
        assert_eq!(redact("x264enc key-int-max=30"), "x264enc key-int-max=30");
        // Inside a Graphviz label (escaped quotes, literal \n).
        assert_eq!(
            redact(r#"label="rtspsrc\nuser-pw=\"hunter2\"\nproxy-pw=x\nlatency=0""#),
            r#"label="rtspsrc\nuser-pw=\"REDACTED\"\nproxy-pw=REDACTED\nlatency=0""#
        );
        assert_eq!(
            redact("Could not open rtsp://a:b@h:554/x (after http://c:d@e/f)"),
            "Could not open rtsp://a:REDACTED@h:554/x (after http://c:REDACTED@e/f)"
        );
    }

    #[test]
    fn private_keys_are_redacted_and_certificates_kept() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            redact(pem),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\nREDACTED PRIVATE KEY\n"
        );
        assert_eq!(
            redact("a -----BEGIN EC PRIVATE KEY-----\nMHc"),
            "a REDACTED PRIVATE KEY"
        );
        assert_eq!(redact("-----BEGIN "), "-----BEGIN ");
    }
}
