//! Serving the router on a TCP listener, plain or TLS, so that no client can hold connections
//! open for free: a client must send its first bytes (enough to tell the HTTP version) and
//! then a request's headers within `header_timeout` each (hyper's header timer also closes a
//! keep-alive connection that stays idle that long; request bodies have the same time, see
//! `http::router`), and open connections are capped in total and per address
//! (`Limits::connections`; a refused connection is closed at once and counted).

use crate::limits::{Limits, Pass};
use axum::Router;
use axum_server::accept::{Accept, DefaultAcceptor};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Serves `app` on `listener` until `stop` completes (then finishes open requests for up to
/// 3 s); with `tls`, as HTTPS and WSS.
pub fn serve(
    listener: std::net::TcpListener,
    app: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    limits: Arc<Limits>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        stop.await;
        h.graceful_shutdown(Some(Duration::from_secs(3)));
    });
    let header_timeout = limits.header_timeout;
    let capped = Capped {
        inner: (),
        limits,
        first_bytes: header_timeout,
    };
    // The client's address reaches the handlers (limits and rates are per address).
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let task = match tls {
        None => {
            let mut server =
                axum_server::from_tcp(listener)?.acceptor(capped.around(DefaultAcceptor));
            configure(server.http_builder(), header_timeout);
            tokio::spawn(async move {
                if let Err(e) = server.handle(handle).serve(make).await {
                    tracing::error!("HTTP server failed: {e}");
                }
            })
        }
        Some(tls) => {
            // Counted over TLS: the first bytes that count are a request's; the handshake's
            // time counts against the same deadline.
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(tls);
            let mut server = axum_server::from_tcp(listener)?.acceptor(capped.around(tls));
            configure(server.http_builder(), header_timeout);
            tokio::spawn(async move {
                if let Err(e) = server.handle(handle).serve(make).await {
                    tracing::error!("HTTPS server failed: {e}");
                }
            })
        }
    };
    Ok(task)
}

fn configure(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    header_timeout: Duration,
) {
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
}

/// Admits a connection only under the connection caps; the stream carries its place.
#[derive(Clone)]
struct Capped<A> {
    inner: A,
    limits: Arc<Limits>,
    /// How long a connection may stay without sending anything at all (before hyper knows
    /// which HTTP version it speaks, its own timers do not run).
    first_bytes: Duration,
}

impl Capped<()> {
    fn around<A>(self, inner: A) -> Capped<A> {
        Capped {
            inner,
            limits: self.limits,
            first_bytes: self.first_bytes,
        }
    }
}

type Accepted<S, V> = Pin<Box<dyn Future<Output = io::Result<(Counted<S>, V)>> + Send>>;

impl<A, S> Accept<TcpStream, S> for Capped<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Counted<A::Stream>;
    type Service = A::Service;
    type Future = Accepted<A::Stream, A::Service>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let client = stream.peer_addr().ok().map(|a| a.ip());
        match self.limits.connections.enter(self.limits.address(client)) {
            Ok(pass) => {
                let silent_until = Box::pin(tokio::time::sleep(self.first_bytes));
                let inner = self.inner.accept(stream, service);
                Box::pin(async move {
                    let (stream, service) = inner.await?;
                    Ok((
                        Counted {
                            inner: stream,
                            _pass: pass,
                            silent_until: Some(silent_until),
                            received: 0,
                        },
                        service,
                    ))
                })
            }
            Err(why) => {
                tracing::debug!("connection refused: {why}");
                Box::pin(std::future::ready(Err(io::Error::other(why))))
            }
        }
    }
}

/// A connection's stream holding its place under the caps until it closes, and failing its
/// reads if nothing at all arrives in time.
pub struct Counted<S> {
    inner: S,
    _pass: Pass,
    /// Until the first bytes arrive: when they must have arrived by.
    silent_until: Option<Pin<Box<tokio::time::Sleep>>>,
    received: usize,
}

/// Bytes hyper reads to tell HTTP/1 from HTTP/2 (the HTTP/2 preface), with no timer of its
/// own: until that many arrived, the first-bytes deadline holds.
const SNIFFED: usize = 24;

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.received += buf.filled().len() - before;
                if self.received >= SNIFFED {
                    self.silent_until = None;
                }
            }
            Poll::Pending => {
                if let Some(deadline) = self.silent_until.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing in time",
                    )));
                }
            }
            _ => {}
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
