//! Edge side of a tunnel session: TLS accept, hello, HTTP/2 client, control stream.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::{SessionCtx, Shared, codes, new_stream_limit};
use crate::auth::AuthError;
use crate::body::boxed;
use crate::io::ChannelBody;
use crate::proto::control::{AgentMessage, EdgeMessage, MAX_CONTROL_LEN};
use crate::proto::frame::{self, Decoder, FrameError};
use crate::proto::hello::{Hello, HelloReply, MAX_HELLO_LEN};
use crate::proto::{CONN_WINDOW, MAX_FRAME_SIZE, PROTOCOL_VERSION, STREAM_WINDOW, meta};

use super::registry::SessionLink;

/// How long a killed session may take to close by itself.
const KILL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("handshake timed out")]
    Timeout,
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("hello: {0}")]
    Frame(#[from] FrameError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("http/2: {0}")]
    H2(#[from] hyper::Error),
    #[error("control stream: {0}")]
    Control(String),
}

pub(crate) async fn serve_tunnel(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let shared = shared.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle_agent(shared, acceptor, tcp, peer).await {
                            tracing::info!(%peer, error = %e, "tunnel session ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "tunnel accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

async fn handle_agent(
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<(), SessionError> {
    let _ = tcp.set_nodelay(true);
    let limits = shared.cfg.limits.clone();
    // TLS and hello under one deadline, before any session state exists.
    let (mut tls, hello) = tokio::time::timeout(limits.handshake_timeout, async {
        let mut tls = acceptor
            .accept(crate::io::tunnel_transport(tcp))
            .await
            .map_err(SessionError::Tls)?;
        let hello: Hello = frame::read_frame(&mut tls, MAX_HELLO_LEN).await?;
        Ok::<_, SessionError>((tls, hello))
    })
    .await
    .map_err(|_| SessionError::Timeout)??;

    let verdict = if hello.version != PROTOCOL_VERSION {
        Err((
            codes::VERSION,
            format!(
                "unsupported protocol version {} (this edge speaks {PROTOCOL_VERSION})",
                hello.version
            ),
        ))
    } else {
        let auth = shared.auth.clone();
        let token = hello.authtoken.clone();
        let check = tokio::task::spawn_blocking(move || auth.authenticate(&token));
        match tokio::time::timeout(limits.handshake_timeout, check).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(AuthError::Store(format!("authentication task failed: {e}"))),
            Err(_) => Err(AuthError::Store("authentication timed out".into())),
        }
        .map_err(|e| (codes::AUTH, e.to_string()))
    };
    let principal = match verdict {
        Ok(p) => p,
        Err((code, reason)) => {
            shared
                .metrics
                .handshakes_refused
                .fetch_add(1, Ordering::Relaxed);
            let reply = HelloReply::Refuse {
                code: code.into(),
                reason: reason.clone(),
            };
            let _ = tokio::time::timeout(
                limits.handshake_timeout,
                frame::write_frame(&mut tls, &reply, MAX_HELLO_LEN),
            )
            .await;
            return Err(SessionError::Refused(reason));
        }
    };
    let sid = shared.next_id();
    let resume = match hello.resume_token {
        Some(t) if !t.is_empty() && t.len() <= 128 => t,
        _ => hex::encode(rand::random::<[u8; 16]>()),
    };
    let reply = HelloReply::Accept {
        session_id: format!("s_{sid:x}"),
        resume_token: resume.clone(),
    };
    tokio::time::timeout(
        limits.handshake_timeout,
        frame::write_frame(&mut tls, &reply, MAX_HELLO_LEN),
    )
    .await
    .map_err(|_| SessionError::Timeout)??;

    let switch = Arc::new(KillSwitch::default());
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .keep_alive_interval(limits.heartbeat_interval)
        .keep_alive_timeout(limits.heartbeat_timeout)
        .keep_alive_while_idle(true)
        .max_concurrent_reset_streams(256)
        .handshake(TokioIo::new(Killable {
            inner: tls,
            switch: switch.clone(),
        }))
        .await?;
    let mut conn_task = tokio::spawn(conn);
    let ctx = SessionCtx {
        link: SessionLink {
            id: sid,
            sender: sender.clone(),
            streams: new_stream_limit(limits.max_streams_per_session),
        },
        owner: principal.name.clone(),
        resume,
        lease: Arc::from(shared.auth.open_session(&principal, peer)),
    };
    shared
        .metrics
        .sessions_active
        .fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, session = sid, principal = %principal.name, "agent connected");
    let result = run_session(&shared, ctx, sender, &mut conn_task, &switch).await;
    // Streams still open on a draining session get the drain timeout, then the connection is
    // cut (HTTP/2 keeps a connection alive while any stream is, e.g. a stalled response).
    let drain = limits.drain_timeout;
    tokio::spawn(async move {
        tokio::time::sleep(drain).await;
        switch.kill();
    });
    let offline = shared.registry().session_gone(sid);
    shared
        .metrics
        .sessions_active
        .fetch_sub(1, Ordering::Relaxed);
    conn_task.abort();
    tracing::info!(%peer, session = sid, endpoints_offline = offline, "agent disconnected");
    result
}

async fn run_session(
    shared: &Arc<Shared>,
    ctx: SessionCtx,
    mut sender: http2::SendRequest<crate::body::Body>,
    conn_task: &mut tokio::task::JoinHandle<Result<(), hyper::Error>>,
    switch: &KillSwitch,
) -> Result<(), SessionError> {
    let (tx, body) = ChannelBody::new(64);
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("https://wicket{}", meta::CONTROL_PATH))
        .version(http::Version::HTTP_2)
        .body(boxed(body))
        .map_err(|e| SessionError::Control(e.to_string()))?;
    let limits = &shared.cfg.limits;
    let res = tokio::time::timeout(limits.handshake_timeout, sender.send_request(req))
        .await
        .map_err(|_| SessionError::Timeout)??;
    if !res.status().is_success() {
        return Err(SessionError::Control(format!(
            "agent answered {}",
            res.status()
        )));
    }
    let mut incoming = res.into_body();
    let mut decoder = Decoder::new(MAX_CONTROL_LEN);
    let mut shutdown = shared.shutdown.clone();
    let mut draining = false;
    let (out_tx, mut out_rx) = mpsc::channel::<EdgeMessage>(64);
    loop {
        tokio::select! {
            f = incoming.frame(), if !draining => {
                let Some(f) = f else {
                    break;
                };
                let f = f?;
                let Ok(data) = f.into_data() else { continue };
                decoder.extend(&data);
                while let Some(msg) = decoder.next_message::<AgentMessage>()? {
                    let changes_endpoints = !matches!(msg, AgentMessage::UpdatePolicy { .. });
                    let reply = handle_message(shared, &ctx, msg);
                    if changes_endpoints {
                        let urls = shared.registry().urls_of(ctx.link.id);
                        ctx.lease.endpoints_changed(&urls);
                    }
                    send(&tx, &reply).await?;
                }
            }
            Some(m) = out_rx.recv() => send(&tx, &m).await?,
            reason = ctx.lease.closed() => {
                tracing::info!(session = ctx.link.id, %reason, "closing session");
                shared.registry().session_gone(ctx.link.id);
                let _ = send(&tx, &EdgeMessage::Shutdown { reason, reconnect: false }).await;
                // Give the agent a moment to read the reason, then cut the connection.
                let _ = tokio::time::timeout(KILL_GRACE, &mut *conn_task).await;
                switch.kill();
                return Ok(());
            }
            r = &mut *conn_task => {
                return match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(SessionError::H2(e)),
                    Err(e) => Err(SessionError::Control(e.to_string())),
                };
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() >= super::STOPPED {
                    switch.kill();
                    return Ok(());
                }
                if draining {
                    continue;
                }
                draining = true;
                // Ask the agent to drain (it answers with GOAWAY); new streams stop here
                // because the listeners have stopped accepting.
                let _ = out_tx.try_send(EdgeMessage::Shutdown {
                    reason: "edge is shutting down".into(),
                    reconnect: true,
                });
            }
        }
    }
    // The agent closed its control stream: it is draining, or it handed its endpoints over to
    // another session (token rotation). Route nothing new here, then drop every handle this
    // task holds on the connection: the HTTP/2 client shuts down once the request tasks that
    // picked this session before the handover have opened their streams, and the connection
    // closes when those streams finish. New streams never race a GOAWAY from the agent.
    drop((tx, incoming, out_rx));
    let SessionCtx { link, lease, .. } = ctx;
    let n = shared.registry().session_gone(link.id);
    tracing::info!(
        session = link.id,
        endpoints_offline = n,
        "agent is draining"
    );
    drop(link);
    drop(sender);
    tokio::select! {
        _ = tokio::time::timeout(limits.drain_timeout, &mut *conn_task) => {}
        reason = lease.closed() => {
            tracing::info!(%reason, "closing a draining session");
        }
    }
    Ok(())
}

async fn send(tx: &mpsc::Sender<Bytes>, msg: &EdgeMessage) -> Result<(), SessionError> {
    let bytes = frame::encode(msg, MAX_CONTROL_LEN)?;
    tx.send(Bytes::from(bytes))
        .await
        .map_err(|_| SessionError::Control("control stream closed".into()))
}

fn handle_message(shared: &Arc<Shared>, ctx: &SessionCtx, msg: AgentMessage) -> EdgeMessage {
    match msg {
        AgentMessage::Bind(req) => match shared.bind(ctx, &req) {
            Ok((endpoint_id, url)) => EdgeMessage::Bound {
                request_id: req.request_id,
                endpoint_id,
                url,
            },
            Err(refusal) => {
                tracing::info!(name = %req.name, code = %refusal.code, message = %refusal.message, "bind refused");
                EdgeMessage::Refused {
                    request_id: req.request_id,
                    refusal,
                }
            }
        },
        AgentMessage::Unbind {
            request_id,
            endpoint_id,
        } => match shared.unbind(ctx, &endpoint_id) {
            Ok(()) => EdgeMessage::Done { request_id },
            Err(refusal) => EdgeMessage::Refused {
                request_id,
                refusal,
            },
        },
        AgentMessage::UpdatePolicy {
            request_id,
            endpoint_id,
            policy,
        } => match shared.update_policy(ctx, &endpoint_id, policy.as_ref()) {
            Ok(()) => EdgeMessage::Done { request_id },
            Err(refusal) => EdgeMessage::Refused {
                request_id,
                refusal,
            },
        },
    }
}

/// Cuts a tunnel connection from outside the HTTP/2 tasks: hyper keeps the connection (in its
/// own task) alive while any stream is open, so a killed or stopped session with a stalled
/// response would otherwise linger, and its agent would never learn that the session ended.
#[derive(Debug, Default)]
struct KillSwitch {
    killed: AtomicBool,
    waker: AtomicWaker,
}

impl KillSwitch {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.waker.wake();
    }

    /// Registers the connection task's waker; an error once killed.
    fn check(&self, cx: &Context<'_>) -> std::io::Result<()> {
        self.waker.register(cx.waker());
        if self.killed.load(Ordering::SeqCst) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "session closed by the edge",
            ));
        }
        Ok(())
    }
}

/// The tunnel connection's IO, failing every read and write once its [`KillSwitch`] is set.
#[derive(Debug)]
struct Killable<S> {
    inner: S,
    switch: Arc<KillSwitch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Killable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Killable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    /// Perf: h2 writes a DATA frame's head and payload in one vectored write (one TLS record,
    /// one `sendmsg`) when the transport says it can, rather than copying or writing twice.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.switch.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
