//! The CLI commands behind `src/main.rs`: check, list, run, graph, serve.

use crate::assemble;
use crate::description::{self, Description};
use crate::server::{Server, ServerConfig};
use crate::supervisor::{State, Status, Supervisor, SupervisorConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `mediaweave check FILE...`: validates files; prints `FILE:LINE:COL: message` per problem.
pub fn check(files: &[PathBuf]) -> ExitCode {
    if let Err(e) = crate::init() {
        eprintln!("cannot initialize GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    let mut ok = true;
    for file in files {
        match description::load(file)
            .map_err(|d| d.to_string())
            .and_then(|desc| {
                assemble::plan(&desc)
                    .map(|plan| (desc, plan))
                    .map_err(|d| d.to_string())
            }) {
            Ok((desc, plan)) => {
                println!("{}: ok ({})", file.display(), one_line(&desc, &plan));
                for (role, element) in &plan.chosen {
                    println!("  {role}: {element}");
                }
                println!("  launch: {}", plan.launch);
            }
            Err(errors) => {
                ok = false;
                eprintln!("{errors}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn one_line(desc: &Description, plan: &assemble::Plan) -> String {
    format!(
        "{}: {} → {}",
        desc.form_name(),
        plan.source,
        if plan.outputs.is_empty() {
            "-".to_string()
        } else {
            plan.outputs.join(", ")
        }
    )
}

/// `mediaweave list`: every description file, with state from a running server if reachable.
pub fn list(dir: &Path, server: &str) -> ExitCode {
    // A running server knows what runs (API-created pipelines too); local files are read only
    // when none answers, so `list` works from any directory while a server runs.
    let unreachable = match fetch_statuses(server) {
        Ok(statuses) => {
            list_statuses(&statuses);
            return ExitCode::SUCCESS;
        }
        Err(e) => e,
    };
    if let Err(e) = crate::init() {
        eprintln!("cannot initialize GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) => {
            eprintln!(
                "no server answers at {server} ({unreachable}), and cannot read the pipelines directory {}: {e}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    files.sort();
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        match description::load(file) {
            Err(diags) => {
                errors.push(diags.to_string());
                rows.push([
                    name,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "invalid".into(),
                ]);
            }
            Ok(desc) => {
                let (source, outputs, encoder) = match assemble::plan(&desc) {
                    Ok(plan) => (
                        plan.source.clone(),
                        plan.outputs.join(", "),
                        plan.chosen
                            .iter()
                            .find(|(r, _)| *r == "video encoder")
                            .map(|(_, e)| e.clone())
                            .unwrap_or_else(|| "-".into()),
                    ),
                    Err(d) => {
                        // Not runnable here and now (e.g. no camera): still say what it is.
                        errors.push(d.to_string());
                        let (source, outputs) = describe_form(&desc);
                        (source, outputs, "-".into())
                    }
                };
                // No server runs it: no state to show.
                rows.push([
                    name,
                    desc.form_name().into(),
                    source,
                    outputs,
                    encoder,
                    "-".into(),
                ]);
            }
        }
    }
    print_table(
        &["NAME", "FORM", "SOURCE", "OUTPUTS", "ENCODER", "STATE"],
        &rows,
    );
    println!(
        "\n(from {}: no server answers at {server}: {unreachable})",
        dir.display()
    );
    for e in errors {
        println!("\n{e}");
    }
    ExitCode::SUCCESS
}

/// The table of what a running server reports.
fn list_statuses(statuses: &[Status]) {
    let mut errors = Vec::new();
    let rows: Vec<[String; 6]> = statuses
        .iter()
        .map(|s| {
            if let Some(err) = s.error.as_ref().or(s.reload_error.as_ref()) {
                errors.push(format!("{}: {err}", s.name));
            }
            let encoder = s
                .chosen
                .iter()
                .find(|c| c.role == "video encoder")
                .map(|c| c.element.clone());
            [
                s.name.clone(),
                s.form.clone().unwrap_or_else(|| "-".into()),
                s.source.clone().unwrap_or_else(|| "-".into()),
                if s.outputs.is_empty() {
                    "-".into()
                } else {
                    s.outputs.join(", ")
                },
                encoder.unwrap_or_else(|| "-".into()),
                s.state.as_str().into(),
            ]
        })
        .collect();
    print_table(
        &["NAME", "FORM", "SOURCE", "OUTPUTS", "ENCODER", "STATE"],
        &rows,
    );
    for e in errors {
        println!("\n{e}");
    }
}

/// Source and outputs as written in the description, for when it cannot be planned.
fn describe_form(desc: &Description) -> (String, String) {
    match &desc.form {
        description::Form::Structured(s) => (
            s.source.value.summary(),
            s.outputs
                .iter()
                .map(|o| o.value.summary())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        description::Form::Raw(_) => ("?".into(), "?".into()),
    }
}

fn fetch_statuses(server: &str) -> Result<Vec<Status>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let url = format!("{}/api/pipelines", server.trim_end_matches('/'));
    let mut response = with_token(agent.get(&url))
        .call()
        .map_err(|e| e.to_string())?;
    response
        .body_mut()
        .read_json::<Vec<Status>>()
        .map_err(|e| e.to_string())
}

/// Adds `Authorization: Bearer $MEDIAWEAVE_TOKEN` when that variable is set.
fn with_token<B>(request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    bearer(request, std::env::var("MEDIAWEAVE_TOKEN").ok().as_deref())
}

/// Adds `Authorization: Bearer TOKEN` when there is a token.
pub(crate) fn bearer<B>(
    request: ureq::RequestBuilder<B>,
    token: Option<&str>,
) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) if !t.is_empty() => request.header("Authorization", format!("Bearer {t}")),
        _ => request,
    }
}

fn print_table(header: &[&str], rows: &[[String; 6]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Finds the description file for `NAME` (in `dir`) or a path.
fn resolve(target: &str, dir: &Path) -> PathBuf {
    let as_path = PathBuf::from(target);
    if as_path.extension().is_some_and(|e| e == "toml") || as_path.is_file() {
        as_path
    } else {
        dir.join(format!("{target}.toml"))
    }
}

/// `mediaweave run NAME|FILE`: runs one pipeline in the foreground until Ctrl-C.
pub async fn run(target: &str, dir: &Path) -> ExitCode {
    if let Err(e) = crate::init() {
        eprintln!("cannot initialize GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    let path = resolve(target, dir);
    let desc = match description::load(&path) {
        Ok(d) => d,
        Err(diags) => {
            eprintln!("{diags}");
            return ExitCode::FAILURE;
        }
    };
    match assemble::plan(&desc) {
        Ok(plan) => {
            println!("{}: {}", desc.name, one_line(&desc, &plan));
            for (role, element) in &plan.chosen {
                println!("  {role}: {element}");
            }
            println!("  launch: {}", plan.launch);
        }
        Err(d) => {
            eprintln!("{d}");
            return ExitCode::FAILURE;
        }
    }
    let mut desc = desc;
    // In the foreground the user asked for it to run now.
    desc.options.autostart = true;
    let name = desc.name.clone();
    let events = crate::events::EventBus::default();
    let recordings = crate::record::Recordings::new(PathBuf::from("recordings"), events.clone());
    let sup = Supervisor::new(
        SupervisorConfig::default(),
        crate::hub::ReaderSet::new(vec![
            crate::webrtc::registry::Registry::new(Default::default()),
            std::sync::Arc::new(crate::hub::tcp::TcpReaders::default()),
            crate::hub::record::RecordReaders::new(recordings.clone()),
            std::sync::Arc::new(crate::hub::hls::HlsReaders::default()),
            std::sync::Arc::new(crate::hub::rtsp::RtspReaders::new(
                crate::server::DEFAULT_RTSP_LISTEN,
                Default::default(),
            )),
        ]),
        recordings,
        events,
    );
    sup.add(desc);
    let Some(mut status) = sup.subscribe(&name) else {
        return ExitCode::FAILURE;
    };
    let mut last = (State::Stopped, None::<String>);
    let mut failed = false;
    // Created once: a signal that arrives while a state line is printed is not lost.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        let current: Status = status.borrow_and_update().clone();
        if (current.state, current.error.clone()) != last {
            print_state(&current);
            last = (current.state, current.error.clone());
            failed = current.state == State::Failed;
            let ended = matches!(current.state, State::Stopped | State::Failed)
                && current.retry_in.is_none();
            if ended {
                break;
            }
        }
        tokio::select! {
            changed = status.changed() => if changed.is_err() { break },
            _ = &mut signal => {
                println!("stopping (end-of-stream, then stop)…");
                sup.shutdown().await;
                let state = sup.get(&name).map(|s| s.state).unwrap_or(State::Stopped);
                println!("{name}: {}", state.as_str());
                return if state == State::Stopped { ExitCode::SUCCESS } else { ExitCode::FAILURE };
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_state(s: &Status) {
    let time = chrono::Local::now().format("%H:%M:%S");
    match (&s.error, s.state) {
        (Some(e), State::Failed) => {
            let retry = s
                .retry_in
                .map(|r| format!(" (restarting in {r:.1} s)"))
                .unwrap_or_default();
            println!("[{time}] {}: failed{retry}: {e}", s.name);
        }
        _ => println!("[{time}] {}: {}", s.name, s.state.as_str()),
    }
}

/// `mediaweave graph NAME|FILE`: the live graph from a server running NAME, otherwise the
/// pipeline the file describes (built, never run). SVG when `output` ends in `.svg`.
pub fn graph(target: &str, dir: &Path, output: Option<&Path>, server: &str) -> ExitCode {
    if let Err(e) = crate::init() {
        eprintln!("cannot initialize GStreamer: {e}");
        return ExitCode::FAILURE;
    }
    let dot = match live_dot(target, server) {
        Some(dot) => dot,
        None => match local_dot(target, dir) {
            Ok(dot) => dot,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let as_svg = output.is_some_and(|o| o.extension().is_some_and(|e| e == "svg"));
    let text = if as_svg {
        match crate::graph::svg(&dot) {
            Ok(svg) => svg,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        dot
    };
    match output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, text.as_bytes()) {
                eprintln!("cannot write {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}

/// The running pipeline's DOT from a server, if one runs `target` (a name, not a file).
fn live_dot(target: &str, server: &str) -> Option<String> {
    description::validate_name(target).ok()?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!(
        "{}/api/pipelines/{target}/graph.dot",
        server.trim_end_matches('/')
    );
    with_token(agent.get(&url))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()
}

/// Builds (never runs) the pipeline a description file describes and dumps its DOT.
fn local_dot(target: &str, dir: &Path) -> Result<String, String> {
    let path = resolve(target, dir);
    let plan = description::load(&path)
        .map_err(|d| d.to_string())
        .and_then(|d| assemble::plan(&d).map_err(|d| d.to_string()))?;
    // Drawing the graph builds the pipeline but never runs it (its readers, recorders
    // among them, are not drawn).
    let pipeline = plan.build()?;
    Ok(crate::graph::dot(&pipeline))
}

/// `mediaweave token new`: a random token, and the entry for the token file (its hash only).
pub fn token_new(name: &str, scopes: &[String]) -> ExitCode {
    let token = crate::auth::new_token();
    let hash = crate::auth::hex(&crate::auth::hash(&token));
    let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
    println!("token: {token}");
    println!("\n# for the token file (--tokens FILE); the token itself is not stored");
    println!(
        "[[token]]\nname = {name:?}\nsha256 = \"{hash}\"\nscopes = [{}]",
        scopes.join(", ")
    );
    ExitCode::SUCCESS
}

/// Who may reach `serve` and how: tokens, TLS, origins.
pub struct Access {
    /// The token file.
    pub tokens: Option<PathBuf>,
    /// Listen beyond loopback without tokens.
    pub insecure: bool,
    /// Certificate and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Web origins whose pages may call the service.
    pub allow_origins: Vec<String>,
    /// What descriptions sent over the API may contain.
    pub api_policy: crate::description::ApiPolicy,
    /// Where the RTSP server listens.
    pub rtsp_listen: SocketAddr,
}

/// `mediaweave serve`: runs until SIGINT/SIGTERM, then stops every pipeline cleanly.
pub async fn serve(
    listen: SocketAddr,
    dir: PathBuf,
    recordings_dir: PathBuf,
    webrtc: crate::webrtc::output::WebRtcConfig,
    access: Access,
) -> ExitCode {
    let env_tokens = std::env::var("MEDIAWEAVE_TOKENS").ok();
    let mut auth = match crate::auth::Auth::load(access.tokens.as_deref(), env_tokens.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    auth.allowed_origins = access.allow_origins;
    let config = ServerConfig {
        auth,
        insecure: access.insecure,
        tls: access.tls,
        listen,
        pipelines_dir: dir,
        supervisor: SupervisorConfig {
            api_policy: access.api_policy,
            ..SupervisorConfig::default()
        },
        webrtc,
        recordings_dir,
        rtsp_listen: access.rtsp_listen,
    };
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("mediaweave serving on {}", server.url);
    shutdown_signal().await;
    tracing::info!("shutting down: stopping pipelines");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
