//! `mediaweave ctl`: the HTTP API from the command line, against a running server.
//! Every verb is one request; errors print the server's `{"error": ...}` sentence.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

/// What `ctl` can do; one variant per verb (see `mediaweave ctl --help`).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Verb {
    /// Every pipeline with its state.
    List,
    /// One pipeline's full status (JSON).
    Status {
        name: String,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Restart {
        name: String,
    },
    /// Send end-of-stream: the pipeline drains and ends as if its source had ended.
    Eos {
        name: String,
    },
    /// Create or replace a pipeline from a description file ("-" reads standard input).
    Put {
        name: String,
        file: String,
    },
    /// Stop a pipeline and delete its description file.
    Delete {
        name: String,
    },
    /// Print a pipeline's description file.
    Description {
        name: String,
    },
    /// The elements of a running pipeline.
    Elements {
        name: String,
    },
    /// Read an element property of a running pipeline.
    Get {
        name: String,
        element: String,
        property: String,
    },
    /// Set an element property of a running pipeline (VALUE as JSON, or as plain text).
    Set {
        name: String,
        element: String,
        property: String,
        value: String,
    },
    /// Follow the event stream (state changes, errors, viewers, recordings, hooks...).
    Events {
        /// Only this pipeline's events.
        name: Option<String>,
    },
    /// Print the Prometheus metrics.
    Metrics,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// The bearer token of this invocation (`--token` / `MEDIAWEAVE_TOKEN`), if any.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// One request; the body of a success, or the server's error sentence.
fn call(method: &str, url: &str, body: Option<String>) -> Result<String, String> {
    let agent = agent();
    let token = TOKEN.get().map(String::as_str);
    let with = |r| crate::cli::bearer(r, token);
    let response = match (method, body) {
        ("GET", _) => with(agent.get(url)).call(),
        ("DELETE", _) => with(agent.delete(url)).call(),
        ("POST", _) => crate::cli::bearer(agent.post(url), token).send_empty(),
        ("PUT", Some(b)) => crate::cli::bearer(agent.put(url), token).send(b.as_str()),
        _ => return Err(format!("unsupported request {method}")),
    };
    let mut response = response.map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if status >= 400 {
        let sentence = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(format!("{status}: {sentence}"));
    }
    Ok(text)
}

fn pretty(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_string())
}

/// Runs one verb against `server` (e.g. `http://127.0.0.1:8080`), with `token` if given.
pub fn run(server: &str, token: Option<&str>, verb: Verb) -> ExitCode {
    if let Some(t) = token {
        let _ = TOKEN.set(t.to_string());
    }
    let base = server.trim_end_matches('/');
    let p = |name: &str| format!("{base}/api/pipelines/{name}");
    let result = match verb {
        Verb::List => call("GET", &format!("{base}/api/pipelines"), None).map(|t| {
            let all: Vec<serde_json::Value> = serde_json::from_str(&t).unwrap_or_default();
            let mut out = String::new();
            for s in all {
                let error = s["reload_error"]
                    .as_str()
                    .map(|e| format!("  (edit rejected: {})", first_line(e)))
                    .or_else(|| s["error"].as_str().map(|e| format!("  {}", first_line(e))))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "{:<24} {:<9} viewers {:<3} restarts {}{}\n",
                    s["name"].as_str().unwrap_or("?"),
                    s["state"].as_str().unwrap_or("?"),
                    s["viewers"].as_array().map(|v| v.len()).unwrap_or(0),
                    s["restarts"],
                    error
                ));
            }
            out
        }),
        Verb::Status { name } => call("GET", &p(&name), None).map(|t| pretty(&t) + "\n"),
        Verb::Start { name } => action(&p(&name), "start"),
        Verb::Stop { name } => action(&p(&name), "stop"),
        Verb::Restart { name } => action(&p(&name), "restart"),
        Verb::Eos { name } => action(&p(&name), "eos"),
        Verb::Put { name, file } => read_input(&file).and_then(|text| {
            call("PUT", &p(&name), Some(text)).map(|t| {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                format!(
                    "{name}: {} ({})\n",
                    v["result"].as_str().unwrap_or("ok"),
                    v["state"].as_str().unwrap_or("?")
                )
            })
        }),
        Verb::Delete { name } => {
            call("DELETE", &p(&name), None).map(|_| format!("{name}: deleted\n"))
        }
        Verb::Description { name } => call("GET", &format!("{}/description", p(&name)), None),
        Verb::Elements { name } => call("GET", &format!("{}/elements", p(&name)), None).map(|t| {
            let all: Vec<serde_json::Value> = serde_json::from_str(&t).unwrap_or_default();
            all.iter()
                .map(|e| {
                    format!(
                        "{:<40} {}\n",
                        e["path"].as_str().unwrap_or("?"),
                        e["factory"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        }),
        Verb::Get {
            name,
            element,
            property,
        } => call(
            "GET",
            &format!("{}/elements/{element}/properties/{property}", p(&name)),
            None,
        )
        .map(|t| value_line(&t)),
        Verb::Set {
            name,
            element,
            property,
            value,
        } => {
            // `2000`, `true` and `"text"` are JSON; anything else is taken as a string.
            let json = serde_json::from_str::<serde_json::Value>(&value)
                .unwrap_or(serde_json::Value::String(value));
            call(
                "PUT",
                &format!("{}/elements/{element}/properties/{property}", p(&name)),
                Some(json.to_string()),
            )
            .map(|t| value_line(&t))
        }
        Verb::Events { name } => follow_events(base, name.as_deref()),
        Verb::Metrics => call("GET", &format!("{base}/metrics"), None),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// POSTs an action; a start that is still under way is followed (up to 30 s) to its outcome.
fn action(url: &str, what: &str) -> Result<String, String> {
    call("POST", &format!("{url}/{what}"), None).map(|t| {
        let mut v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while v["state"] == "starting" && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            match call("GET", url, None).and_then(|t| {
                serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string())
            }) {
                Ok(now) => v = now,
                Err(_) => break,
            }
        }
        let error = v["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        format!(
            "{}: {}{error}\n",
            v["name"].as_str().unwrap_or("?"),
            v["state"].as_str().unwrap_or("?")
        )
    })
}

fn value_line(text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    format!("{}\n", v["value"])
}

fn read_input(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))
    }
}

/// Prints one event per line until the server closes the stream.
fn follow_events(base: &str, only: Option<&str>) -> Result<String, String> {
    let mut url = format!(
        "{}/api/events",
        base.replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    // Browsers' WebSockets cannot send headers; the service takes the token in the query.
    if let Some(t) = TOKEN.get() {
        url.push_str(&format!("?token={t}"));
    }
    let (mut ws, _) = tokio_tungstenite::tungstenite::connect(&url)
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    loop {
        let msg = ws.read().map_err(|e| format!("event stream ended: {e}"))?;
        let Ok(text) = msg.into_text() else { continue };
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if only.is_some_and(|n| ev["pipeline"] != n) {
            continue;
        }
        println!(
            "{} {:<18} {:<16} {}",
            ev["time"].as_str().unwrap_or(""),
            ev["type"].as_str().unwrap_or(""),
            ev["pipeline"].as_str().unwrap_or(""),
            ev["fields"]
        );
    }
}
