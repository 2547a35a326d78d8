//! The `mediaweave` command line. The work lives in the library (`mediaweave::cli`).

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mediaweave",
    version,
    about = "Named GStreamer pipelines as a service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum TokenVerb {
    /// Print a new random token and its token-file entry (the file keeps only its hash).
    New {
        #[arg(long, default_value = "token")]
        name: String,
        /// admin, view, view:NAME, publish, publish:NAME (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
}

// Parsed once per process: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run every pipeline in the pipelines directory and serve the HTTP API.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the RTSP server of `rtsp` outputs listens (rtsp://ADDR/{pipeline}).
        #[arg(long, default_value = "127.0.0.1:8554", value_name = "ADDR")]
        rtsp_listen: SocketAddr,
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
        /// Where record outputs write their segments ({pipeline}/{UTC start}.{ext}).
        #[arg(long, default_value = "recordings")]
        recordings: PathBuf,
        /// Local address for WebRTC host candidates (repeatable). Default: 127.0.0.1 when
        /// listening on loopback, else every interface.
        #[arg(long = "ice-address", value_name = "IP")]
        ice_addresses: Vec<String>,
        /// STUN server for WebRTC, e.g. stun://stun.example.org:3478.
        #[arg(long)]
        stun_server: Option<String>,
        /// TURN server for WebRTC (repeatable), e.g. turn://user:pass@host:3478.
        #[arg(long = "turn-server", value_name = "URL")]
        turn_servers: Vec<String>,
        /// Register webrtc outputs on this signalling server (e.g. a gst-webrtc-signalling-server
        /// at ws://host:8443) instead of the embedded /ws, unless a description names its own.
        #[arg(long, value_name = "URL")]
        signalling_url: Option<String>,
        /// Token file (TOML [[token]] entries with name, sha256, scopes); the environment
        /// variable MEDIAWEAVE_TOKENS may hold the same TOML.
        #[arg(long, env = "MEDIAWEAVE_TOKENS_FILE", value_name = "FILE")]
        tokens: Option<PathBuf>,
        /// Listen beyond loopback even though no token is configured (anyone may do anything).
        #[arg(long)]
        insecure: bool,
        /// A web origin (e.g. https://app.example.org, or *) whose pages may call the API,
        /// WHIP/WHEP and the WebSockets (repeatable); the service's own pages always may.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
        /// Take this element off the list of elements descriptions sent over the API may use
        /// (repeatable).
        #[arg(long = "api-deny-element", value_name = "ELEMENT")]
        api_deny: Vec<String>,
        /// Let descriptions sent over the API use this element too (repeatable). Its
        /// properties that name paths or devices are still checked.
        #[arg(long = "api-allow-element", value_name = "ELEMENT")]
        api_allow: Vec<String>,
        /// Let descriptions sent over the API use only these elements, instead of the default
        /// list (repeatable).
        #[arg(long = "api-only-element", value_name = "ELEMENT")]
        api_only: Vec<String>,
        /// Let descriptions sent over the API name paths and non-network URIs on the server
        /// (file sources/outputs, file: URIs, unix sockets, snapshot paths, element
        /// properties such as `location`).
        #[arg(long)]
        api_allow_paths: bool,
        /// Let descriptions sent over the API open devices (camera sources, element
        /// properties such as `device`).
        #[arg(long)]
        api_allow_devices: bool,
        /// Let descriptions sent over the API have process hooks (they run commands).
        #[arg(long)]
        api_allow_process: bool,
        /// WebRTC viewers in total, over every pipeline (503 beyond).
        #[arg(long, default_value_t = 500)]
        max_viewers: usize,
        /// WebRTC publishers in total (503 beyond).
        #[arg(long, default_value_t = 32)]
        max_publishers: usize,
        /// New sessions (WHEP, WHIP, /offer, signalling connections) per second per client
        /// address, with bursts of twice that; 429 beyond; 0 turns it off. Loopback clients
        /// are not limited (a proxy in front limits its own clients).
        #[arg(long, default_value_t = 20)]
        session_rate: u32,
        /// WebRTC sessions that have not completed ICE and DTLS yet, in total (503 beyond;
        /// each gets 10 s to connect). Connected peers are never evicted for them.
        #[arg(long, default_value_t = 64)]
        max_pending: usize,
        /// The same per client address (loopback clients are held to the total only).
        #[arg(long, default_value_t = 8)]
        max_pending_per_address: usize,
        /// Open HTTP connections in total (beyond, new ones are closed at once).
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// The same per client address (loopback clients are held to the total only).
        #[arg(long, default_value_t = 64)]
        max_connections_per_address: usize,
        /// Signalling WebSocket connections (`/ws`) in total (503 beyond).
        #[arg(long, default_value_t = 512)]
        max_signalling: usize,
        /// The same per client address (loopback clients are held to the total only).
        #[arg(long, default_value_t = 16)]
        max_signalling_per_address: usize,
        /// Seconds a connected WebRTC peer may stay silent (no packet of any kind: RTCP
        /// reports, media, DTLS) before its session ends; how fast a vanished viewer or
        /// publisher is noticed.
        #[arg(long, value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..))]
        peer_timeout: u64,
        /// Seconds viewers wait for a pipeline that failed, or a relayed stream whose
        /// publisher left, to come back (they go on with no new offer) before their sessions end.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        resume_grace: u64,
        /// Serve HTTPS and WSS with this certificate (PEM, chain first); needs --tls-key.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Make tokens for the token file.
    Token {
        #[command(subcommand)]
        verb: TokenVerb,
    },
    /// Run one pipeline (a name in the pipelines directory, or a file) in the foreground.
    Run {
        target: String,
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
    },
    /// Validate description files; prints FILE:LINE:COL: message for each problem.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the pipelines, with their state from a running server.
    List {
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Draw a pipeline's graph: the live one from a running server, else the one its file
    /// describes. Graphviz DOT, or SVG when the output file ends in .svg.
    Graph {
        target: String,
        #[arg(long, default_value = "pipelines")]
        pipelines: PathBuf,
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(
            long,
            env = "MEDIAWEAVE_SERVER",
            default_value = "http://127.0.0.1:8080"
        )]
        server: String,
    },
    /// Control a running server: start, stop, put, set properties, follow events, ...
    Ctl {
        #[arg(
            long,
            env = "MEDIAWEAVE_SERVER",
            default_value = "http://127.0.0.1:8080"
        )]
        server: String,
        /// Bearer token for a server that has tokens configured.
        #[arg(long, env = "MEDIAWEAVE_TOKEN")]
        token: Option<String>,
        #[command(subcommand)]
        verb: mediaweave::ctl::Verb,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` prints its own line per state change; info logs would repeat them.
    let default_filter = match cli.command {
        Command::Run { .. } => "mediaweave=warn",
        _ => "mediaweave=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Check { files } => mediaweave::cli::check(&files),
        Command::List { pipelines, server } => mediaweave::cli::list(&pipelines, &server),
        Command::Graph {
            target,
            pipelines,
            output,
            server,
        } => mediaweave::cli::graph(&target, &pipelines, output.as_deref(), &server),
        Command::Ctl {
            server,
            token,
            verb,
        } => mediaweave::ctl::run(&server, token.as_deref(), verb),
        Command::Token {
            verb: TokenVerb::New { name, scopes },
        } => mediaweave::cli::token_new(&name, &scopes),
        Command::Serve {
            listen,
            rtsp_listen,
            pipelines,
            recordings,
            mut ice_addresses,
            stun_server,
            turn_servers,
            signalling_url,
            tokens,
            insecure,
            tls_cert,
            tls_key,
            allow_origins,
            api_deny,
            api_allow,
            api_only,
            api_allow_paths,
            api_allow_devices,
            api_allow_process,
            max_viewers,
            max_publishers,
            session_rate,
            max_pending,
            max_pending_per_address,
            max_connections,
            max_connections_per_address,
            max_signalling,
            max_signalling_per_address,
            peer_timeout,
            resume_grace,
        } => {
            let mut api_policy = mediaweave::description::ApiPolicy {
                allow_paths: api_allow_paths,
                allow_devices: api_allow_devices,
                allow_process: api_allow_process,
                ..Default::default()
            };
            if !api_only.is_empty() {
                api_policy.allow = api_only;
            }
            for element in &api_allow {
                api_policy.allow(element);
            }
            for element in &api_deny {
                api_policy.deny(element);
            }
            if ice_addresses.is_empty() && listen.ip().is_loopback() {
                ice_addresses.push("127.0.0.1".into());
            }
            let webrtc = mediaweave::webrtc::output::WebRtcConfig {
                ice: mediaweave::webrtc::types::IceConfig {
                    addresses: ice_addresses,
                    stun_server,
                    turn_servers,
                },
                signalling_url,
                peer_timeout: std::time::Duration::from_secs(peer_timeout),
                resume_grace: std::time::Duration::from_secs(resume_grace),
                limits: std::sync::Arc::new({
                    let mut limits = mediaweave::limits::Limits::new(
                        max_viewers,
                        max_publishers,
                        session_rate,
                        false,
                    );
                    limits.pending.max_total = max_pending;
                    limits.pending.max_per_address = max_pending_per_address;
                    limits.connections.max_total = max_connections;
                    limits.connections.max_per_address = max_connections_per_address;
                    limits.signalling.max_total = max_signalling;
                    limits.signalling.max_per_address = max_signalling_per_address;
                    limits
                }),
                ..Default::default()
            };
            runtime().block_on(mediaweave::cli::serve(
                listen,
                pipelines,
                recordings,
                webrtc,
                mediaweave::cli::Access {
                    tokens,
                    insecure,
                    tls: tls_cert.zip(tls_key),
                    allow_origins,
                    api_policy,
                    rtsp_listen,
                },
            ))
        }
        Command::Run { target, pipelines } => {
            runtime().block_on(mediaweave::cli::run(&target, &pipelines))
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}
