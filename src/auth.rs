//! Who may do what: bearer tokens with scopes.
//!
//! Tokens are configured as SHA-256 hashes (a token file, or the same TOML in the
//! `MEDIAWEAVE_TOKENS` environment variable), never in clear. Scopes:
//! - `view` / `view:NAME`: watch a pipeline (WHEP, `/offer`, signalling), read its status,
//!   events, recordings, snapshot and graph;
//! - `publish` / `publish:NAME`: publish into a webrtc-source pipeline (WHIP, the `/publish`
//!   page); the signalling WebSocket takes any valid token;
//! - `admin`: everything, including API writes, element properties, descriptions and metrics.
//!
//! A request carries its token as `Authorization: Bearer TOKEN`, or as `?token=TOKEN` where a
//! browser cannot set headers (the signalling WebSocket, `<video>` sources, the page's links).
//! With no token configured, everything is open and the service must listen on loopback only
//! (`--insecure` overrides that).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// One configured token: a name for logs, the SHA-256 of the secret, what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    /// Lowercase hex SHA-256 of the token (`mediaweave token new` prints it).
    pub sha256: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Static page assets and the API description.
    Nothing,
    /// Any valid token.
    AnyToken,
    View(Option<String>),
    Publish(String),
    Admin,
}

/// What a valid token grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub admin: bool,
    /// None: no view scope; Some(None): every pipeline; Some(Some(list)): these.
    view: Option<Option<Vec<String>>>,
    publish: Option<Option<Vec<String>>>,
    /// The service's own signalling clients: register producers and take sessions with
    /// browser publishers on `/ws`, nothing else (no HTTP endpoint, no view of pipelines).
    pub service: bool,
}

fn add(slot: &mut Option<Option<Vec<String>>>, pipeline: Option<&str>) {
    match (pipeline, slot.as_mut()) {
        (None, _) => *slot = Some(None),
        (Some(_), Some(None)) => {}
        (Some(p), Some(Some(list))) => list.push(p.to_string()),
        (Some(p), None) => *slot = Some(Some(vec![p.to_string()])),
    }
}

fn allows(slot: &Option<Option<Vec<String>>>, pipeline: &str) -> bool {
    match slot {
        None => false,
        Some(None) => true,
        Some(Some(list)) => list.iter().any(|p| p == pipeline),
    }
}

impl Grant {
    /// Everything: the service's own clients, and every request when no token is configured.
    pub fn all(name: &str) -> Grant {
        Grant {
            name: name.to_string(),
            admin: true,
            view: Some(None),
            publish: Some(None),
            service: false,
        }
    }

    /// What this process's own signalling clients may do (see [`Grant::service`]).
    pub fn service() -> Grant {
        Grant {
            name: "internal".to_string(),
            service: true,
            ..Grant::default()
        }
    }

    fn parse(entry: &TokenEntry) -> Result<Grant, String> {
        let mut g = Grant {
            name: entry.name.clone(),
            ..Grant::default()
        };
        for scope in &entry.scopes {
            let (kind, pipeline) = match scope.split_once(':') {
                Some((k, p)) if p != "*" => (k, Some(p)),
                Some((k, _)) => (k, None),
                None => (scope.as_str(), None),
            };
            if let Some(p) = pipeline {
                crate::description::validate_name(p)
                    .map_err(|e| format!("token `{}`: scope `{scope}`: {e}", entry.name))?;
            }
            match kind {
                "admin" if pipeline.is_none() => g.admin = true,
                "view" => add(&mut g.view, pipeline),
                "publish" => add(&mut g.publish, pipeline),
                _ => {
                    return Err(format!(
                        "token `{}`: unknown scope `{scope}` (use admin, view, view:NAME, publish, publish:NAME)",
                        entry.name
                    ));
                }
            }
        }
        Ok(g)
    }

    /// A room's participant (`room/participant`: its stream, its recordings) is covered by
    /// the room's scope.
    pub fn can_view(&self, pipeline: &str) -> bool {
        self.admin || allows(&self.view, crate::description::pipeline_of(pipeline))
    }

    pub fn can_view_all(&self) -> bool {
        self.admin || self.view == Some(None)
    }

    pub fn can_publish(&self, pipeline: &str) -> bool {
        self.admin || allows(&self.publish, pipeline)
    }

    /// Whether this grant covers `need` (a valid token was presented).
    pub fn covers(&self, need: &Need) -> bool {
        match need {
            Need::Nothing | Need::AnyToken => true,
            Need::View(Some(p)) => self.can_view(p),
            // Lists are filtered to what the token may view; it needs to view something.
            Need::View(None) => self.admin || self.view.is_some(),
            Need::Publish(p) => self.can_publish(p),
            Need::Admin => self.admin,
        }
    }
}

/// The configured tokens, as (hash, grant), and the web origins allowed to call the service.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<([u8; 32], Grant)>,
    /// Origins (`https://app.example.org`) whose pages may call the API, WHIP/WHEP and the
    /// WebSockets; pages served by the service itself always may.
    pub allowed_origins: Vec<String>,
}

impl Auth {
    /// Reads the token file and/or the `MEDIAWEAVE_TOKENS` text (same TOML format).
    pub fn load(file: Option<&Path>, env_text: Option<&str>) -> Result<Auth, String> {
        let mut auth = Auth::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
            auth.add_toml(&text, &path.display().to_string())?;
        }
        if let Some(text) = env_text {
            auth.add_toml(text, "MEDIAWEAVE_TOKENS")?;
        }
        Ok(auth)
    }

    fn add_toml(&mut self, text: &str, origin: &str) -> Result<(), String> {
        let file: TokenFile = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let (l, c) = crate::description::line_col(text, s.start);
                    format!(":{l}:{c}")
                })
                .unwrap_or_default();
            format!("{origin}{at}: {}", e.message())
        })?;
        for entry in file.token {
            let hash = parse_hash(&entry.sha256).ok_or_else(|| {
                format!(
                    "{origin}: token `{}`: sha256 must be 64 hex digits (see `mediaweave token new`)",
                    entry.name
                )
            })?;
            let grant = Grant::parse(&entry).map_err(|e| format!("{origin}: {e}"))?;
            self.tokens.push((hash, grant));
        }
        Ok(())
    }

    /// Adds a token known only to this process (its own signalling clients).
    pub fn add_internal(&mut self, token: &str) {
        self.tokens.push((hash(token), Grant::service()));
    }

    /// True when no token is configured: every request is allowed.
    pub fn is_open(&self) -> bool {
        self.tokens.iter().all(|(_, g)| g.name == "internal")
    }

    /// The grant of a presented token, if it is one of ours. Compares every configured hash
    /// without stopping early.
    pub fn check(&self, token: &str) -> Option<&Grant> {
        let presented = hash(token);
        let mut found = None;
        for (h, grant) in &self.tokens {
            let same = h
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
            if same && found.is_none() {
                found = Some(grant);
            }
        }
        found
    }
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// A new random token (256 bits, hex).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("{}{}", a.simple(), b.simple())
}

/// Whether a browser request from `origin` may reach the service listening as `host` (the
/// request's Host header): same origin, or allowed by `--allow-origin`.
pub fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let same = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .is_some_and(|authority| Some(authority) == host);
    same || allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// What `(method, path)` needs. Unknown paths need a token too (they answer 404 anyway).
pub fn need(method: &axum::http::Method, path: &str) -> Need {
    use axum::http::Method;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let read = method == Method::GET || method == Method::HEAD;
    if method == Method::OPTIONS {
        // CORS preflights carry no credentials; the request that follows is checked.
        return Need::Nothing;
    }
    match parts.as_slice() {
        [""]
        | ["app.js"]
        | ["token.js"]
        | ["style.css"]
        | ["publish"]
        | ["publish.js"]
        | ["room.js"]
        | ["room", _]
            if read =>
        {
            Need::Nothing
        }
        ["api", "openapi.json"] if read => Need::Nothing,
        ["ws"] => Need::AnyToken,
        ["metrics"] => Need::Admin,
        ["api", "events"] => Need::View(None),
        ["api", "pipelines"] if read => Need::View(None),
        ["api", "recordings"] if read => Need::View(None),
        ["api", "pipelines", name] if read => Need::View(Some(name.to_string())),
        [
            "api",
            "pipelines",
            name,
            "snapshot.jpg" | "graph.svg" | "graph.dot",
        ] if read => Need::View(Some(name.to_string())),
        // A room's participant: `/whep/{room}/{participant}[/{session}]`.
        ["whep", name] | ["whep", name, _] | ["whep", name, _, _] => {
            Need::View(Some(name.to_string()))
        }
        ["offer", name] | ["offer", name, _] => Need::View(Some(name.to_string())),
        // `POST /offer` picks a pipeline itself: it needs every pipeline.
        ["offer"] => Need::View(Some("*".to_string())),
        ["whip", name] | ["whip", name, _] => Need::Publish(name.to_string()),
        ["hls", pipeline, _] if read => Need::View(Some(pipeline.to_string())),
        ["recordings", pipeline, _] | ["recordings", pipeline, _, _] if read => {
            Need::View(Some(pipeline.to_string()))
        }
        _ => Need::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn grant(scopes: &[&str]) -> Grant {
        Grant::parse(&TokenEntry {
            name: "t".into(),
            sha256: String::new(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        })
        .expect("scopes")
    }

    #[test]
    fn scopes_cover_what_they_say() {
        let viewer = grant(&["view:cam"]);
        assert!(viewer.covers(&need(&Method::GET, "/api/pipelines/cam")));
        assert!(!viewer.covers(&need(&Method::GET, "/api/pipelines/other")));
        assert!(viewer.covers(&need(&Method::POST, "/whep/cam")));
        assert!(!viewer.covers(&need(&Method::POST, "/whip/cam")));
        assert!(!viewer.covers(&need(&Method::PUT, "/api/pipelines/cam")));
        assert!(!viewer.covers(&need(&Method::POST, "/api/pipelines/cam/stop")));
        assert!(!viewer.covers(&need(&Method::GET, "/api/pipelines/cam/elements")));
        // A description may hold credentials in URIs: it is the administrator's.
        assert!(!viewer.covers(&need(&Method::GET, "/api/pipelines/cam/description")));
        assert!(!viewer.covers(&need(&Method::POST, "/offer")));
        assert!(viewer.covers(&need(&Method::GET, "/recordings/cam/x.mkv")));
        assert!(!viewer.covers(&need(&Method::DELETE, "/recordings/cam/x.mkv")));
        let all = grant(&["view"]);
        assert!(all.covers(&need(&Method::POST, "/offer")));
        let publisher = grant(&["publish:inbox"]);
        assert!(publisher.covers(&need(&Method::POST, "/whip/inbox")));
        assert!(!publisher.covers(&need(&Method::POST, "/whip/other")));
        assert!(!publisher.covers(&need(&Method::GET, "/api/pipelines")));
        let admin = grant(&["admin"]);
        assert!(admin.covers(&need(&Method::PUT, "/api/pipelines/x")));
        assert!(admin.covers(&need(&Method::GET, "/metrics")));
        assert_eq!(need(&Method::GET, "/"), Need::Nothing);
        assert_eq!(need(&Method::POST, "/"), Need::Admin);
    }

    #[test]
    fn the_service_grant_covers_only_the_websocket() {
        let service = Grant::service();
        assert!(service.covers(&need(&Method::GET, "/ws")));
        for (m, p) in [
            (Method::GET, "/metrics"),
            (Method::GET, "/api/pipelines"),
            (Method::GET, "/api/pipelines/cam"),
            (Method::GET, "/api/pipelines/cam/description"),
            (Method::PUT, "/api/pipelines/cam"),
            (Method::POST, "/whep/cam"),
            (Method::POST, "/whip/inbox"),
            (Method::GET, "/recordings/cam/x.mkv"),
        ] {
            assert!(!service.covers(&need(&m, p)), "{m} {p}");
        }
    }

    #[test]
    fn origins_are_same_or_allowed() {
        let allowed = vec!["https://app.example.org".to_string()];
        assert!(origin_allowed(
            "http://127.0.0.1:8080",
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            "http://evil.example",
            Some("127.0.0.1:8080"),
            &[]
        ));
        assert!(origin_allowed(
            "https://app.example.org",
            Some("x:1"),
            &allowed
        ));
        assert!(!origin_allowed(
            "https://app.example.org.evil",
            Some("x:1"),
            &allowed
        ));
        assert!(!origin_allowed("null", Some("127.0.0.1:8080"), &[]));
    }

    #[test]
    fn bad_configuration_is_explained() {
        let e = Auth::load(
            None,
            Some("[[token]]\nname = \"a\"\nsha256 = \"12\"\nscopes = [\"admin\"]\n"),
        )
        .expect_err("short hash");
        assert!(e.contains("sha256 must be 64 hex digits"), "{e}");
        let h = hex(&hash("x"));
        let e = Auth::load(
            None,
            Some(&format!(
                "[[token]]\nname = \"a\"\nsha256 = \"{h}\"\nscopes = [\"root\"]\n"
            )),
        )
        .expect_err("bad scope");
        assert!(e.contains("unknown scope `root`"), "{e}");
        let e = Auth::load(None, Some("[[token]]\nname = \"a\"\nsha = 1\n")).expect_err("key");
        assert!(e.starts_with("MEDIAWEAVE_TOKENS:3:1:"), "{e}");
        let ok = Auth::load(
            None,
            Some(&format!(
                "[[token]]\nname = \"a\"\nsha256 = \"{h}\"\nscopes = [\"view:cam\"]\n"
            )),
        )
        .expect("valid");
        assert!(!ok.is_open());
        assert_eq!(ok.check("x").map(|g| g.name.as_str()), Some("a"));
        assert!(ok.check("y").is_none());
    }
}
