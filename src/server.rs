//! `mediaweave serve`: the supervisor plus the HTTP API on one listener.

use crate::events::EventBus;
use crate::http;
use crate::record::Recordings;
use crate::signalling::server::Hub;
use crate::supervisor::{Supervisor, SupervisorConfig};
use crate::webrtc::output::WebRtcConfig;
use crate::webrtc::registry::Registry;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the HTTP API listens; port 0 picks a free port (see [`Server::addr`]).
    pub listen: SocketAddr,
    pub pipelines_dir: PathBuf,
    pub supervisor: SupervisorConfig,
    pub webrtc: WebRtcConfig,
    /// Where record outputs write `{pipeline}/{UTC start}.{ext}` segments.
    pub recordings_dir: PathBuf,
    /// The configured tokens; none means open, and then only loopback unless `insecure`.
    pub auth: crate::auth::Auth,
    /// Allow listening beyond loopback without any token.
    pub insecure: bool,
    /// Serve HTTPS and WSS with this certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Where the RTSP server listens (from the first `rtsp` output on).
    pub rtsp_listen: SocketAddr,
}

/// Where the RTSP server listens unless told otherwise (`serve --rtsp-listen`).
pub const DEFAULT_RTSP_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8554);

/// A running service. Dropping it without [`Server::shutdown`] leaves pipelines running until
/// the runtime ends; call `shutdown` to finalize outputs.
pub struct Server {
    pub addr: SocketAddr,
    pub supervisor: Arc<Supervisor>,
    /// The embedded signalling server's state.
    pub hub: Arc<Hub>,
    /// The WebRTC outputs and ingest points, and every session.
    pub webrtc: Arc<Registry>,
    /// The `hls` outputs' segmenters and their directories.
    pub hls: Arc<crate::hub::hls::HlsReaders>,
    /// `http://ADDR` or `https://ADDR`.
    pub url: String,
    stop_http: Option<watch::Sender<bool>>,
    http: JoinHandle<()>,
    /// The loopback listener for our own signalling clients, with TLS.
    internal: Option<JoinHandle<()>>,
    /// Hot reload of the pipelines directory; None if it cannot be watched.
    watch: Option<crate::reload::DirWatch>,
    /// The Socket.IO chat's clients and the task that brings them the WebRTC chats.
    socketio: Option<http::socketio::SocketChat>,
}

/// The service's tokens, with one only this process knows for its own signalling clients
/// (None when the service is open); an open service listens on loopback only, unless
/// `--insecure`.
fn tokens(config: &ServerConfig) -> anyhow::Result<(Arc<crate::auth::Auth>, Option<String>)> {
    let mut auth = config.auth.clone();
    if auth.is_open() {
        if !config.listen.ip().is_loopback() && !config.insecure {
            anyhow::bail!(
                "refusing to listen on {} without any token: anyone who reaches it could run pipelines, read files and record. Configure tokens (--tokens FILE or MEDIAWEAVE_TOKENS; `mediaweave token new` makes one), listen on 127.0.0.1, or pass --insecure",
                config.listen
            );
        }
        tracing::warn!(
            "NO TOKENS CONFIGURED: everyone who can reach {} may view, publish and administer (see README, Security)",
            config.listen
        );
    }
    // Our own signalling clients (producers, the publish door) join the embedded server
    // with a token only this process knows.
    let internal = (!auth.is_open()).then(|| {
        let t = crate::auth::new_token();
        auth.add_internal(&t);
        t
    });
    Ok((Arc::new(auth), internal))
}

/// The service's listener, its TLS, and with TLS a plain loopback listener for its own
/// signalling clients.
struct Listeners {
    listener: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    internal_listener: Option<tokio::net::TcpListener>,
}

impl Listeners {
    async fn bind(config: &ServerConfig) -> anyhow::Result<Listeners> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tls = match &config.tls {
            Some((cert, key)) => {
                // One process-wide crypto provider (ring, already used for certificates).
                let _ = rustls::crypto::ring::default_provider().install_default();
                Some(
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                        .await
                        .with_context(|| {
                            format!(
                                "cannot load the TLS certificate {} and key {}",
                                cert.display(),
                                key.display()
                            )
                        })?,
                )
            }
            None => None,
        };
        // Our own signalling clients speak plain WebSocket: with TLS they get a listener of
        // their own on loopback (tokens still apply there).
        let internal_listener = match tls {
            Some(_) => Some(
                tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                    .await
                    .context("cannot open the loopback listener for internal signalling")?,
            ),
            None => None,
        };
        Ok(Listeners {
            listener,
            addr,
            tls,
            internal_listener,
        })
    }
}

impl Server {
    /// Binds the listener, loads the pipelines directory and starts serving.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        crate::init()?;
        let (auth, internal) = tokens(&config)?;
        let Listeners {
            listener,
            addr,
            tls,
            internal_listener,
        } = Listeners::bind(&config).await?;
        // One event stream for the whole service: pipelines, viewers, publishers, recordings.
        let events = EventBus::default();
        let webrtc = Registry::new(config.webrtc.clone());
        // Our own producers reach the embedded signalling server over loopback when the
        // service listens on every interface.
        let local = match &internal_listener {
            Some(l) => l.local_addr()?,
            None if addr.ip().is_unspecified() => {
                std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
            }
            None => addr,
        };
        webrtc.set_embedded_signalling(match &internal {
            Some(token) => format!("ws://{local}/ws?token={token}"),
            None => format!("ws://{local}/ws"),
        });
        let recordings = Recordings::new(config.recordings_dir.clone(), events.clone());
        // Left by a crash between opening a segment and writing to it.
        let rec = recordings.clone();
        tokio::task::spawn_blocking(move || rec.remove_empty()).await?;
        let hls = Arc::new(crate::hub::hls::HlsReaders::default());
        let jpeg_in = Arc::new(crate::hub::jpeg_tcp::JpegSources::default());
        let supervisor = Supervisor::new(
            config.supervisor.clone(),
            crate::hub::ReaderSet::new(vec![
                webrtc.clone(),
                Arc::new(crate::hub::tcp::TcpReaders::default()),
                jpeg_in.clone(),
                crate::hub::record::RecordReaders::new(recordings.clone()),
                hls.clone(),
                Arc::new(crate::hub::rtsp::RtspReaders::new(
                    config.rtsp_listen,
                    auth.clone(),
                )),
            ]),
            recordings.clone(),
            events.clone(),
        );
        tokio::task::spawn_blocking(crate::webrtc::warm_up);
        let hub = Hub::new(webrtc.limits().clone());
        // Validation builds elements (blocking GStreamer calls): off the async threads.
        let (sup, dir) = (supervisor.clone(), config.pipelines_dir.clone());
        tokio::task::spawn_blocking(move || sup.load_dir(&dir))
            .await?
            .with_context(|| {
                format!(
                    "cannot read the pipelines directory {}",
                    config.pipelines_dir.display()
                )
            })?;
        let watch = match crate::reload::watch(&config.pipelines_dir, supervisor.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} for changes (no hot reload): {e}",
                    config.pipelines_dir.display()
                );
                None
            }
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let (socketio_layer, socketio) = http::socketio::SocketChat::start(webrtc.clone());
        let app = http::router(
            http::AppState {
                supervisor: supervisor.clone(),
                hub: hub.clone(),
                webrtc: webrtc.clone(),
                recordings: recordings.clone(),
                auth,
                hls: hls.clone(),
                jpeg_in,
            },
            socketio_layer,
        );
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let limits = webrtc.limits().clone();
        let http = http::listen::serve(
            listener.into_std()?,
            app.clone(),
            tls,
            limits.clone(),
            stopped(stop_rx.clone()),
        )?;
        let internal = match internal_listener {
            Some(l) => Some(http::listen::serve(
                l.into_std()?,
                app,
                None,
                limits,
                stopped(stop_rx.clone()),
            )?),
            None => None,
        };
        tracing::info!("serving on {scheme}://{addr}");
        Ok(Server {
            addr,
            url: format!("{scheme}://{addr}"),
            supervisor,
            hub,
            webrtc,
            hls,
            stop_http: Some(stop_tx),
            http,
            internal,
            watch,
            socketio: Some(socketio),
        })
    }

    /// Stops every pipeline cleanly (end-of-stream, bounded wait) and the HTTP server.
    pub async fn shutdown(mut self) {
        // No reload may start a pipeline while they stop.
        self.watch.take();
        self.supervisor.shutdown().await;
        // Every viewer's and publisher's pipeline is gone before serve returns.
        self.webrtc.shutdown().await;
        if let Some(socketio) = self.socketio.take() {
            socketio.shutdown().await;
        }
        if let Some(tx) = self.stop_http.take() {
            let _ = tx.send(true);
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.http).await;
        if let Some(internal) = self.internal.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), internal).await;
        }
    }
}
