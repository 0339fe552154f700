//! The agent: dials the edge, authenticates, binds its endpoints and serves the streams the
//! edge opens by forwarding them to local upstreams. Reconnects with jittered backoff.

mod backoff;
mod config;
mod forward;
mod pool;
mod proxied;
pub mod tls_termination;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

pub use backoff::Backoff;
pub use config::{
    AgentConfig, AgentSection, ConfigError, EndpointConfig, EndpointSpec, ProxyVersionConfig,
    Upstream, UpstreamConfig, UpstreamProtocol, parse_upstream, read_policy,
};

use crate::body::boxed;
use crate::io::ChannelBody;
use crate::proto::control::{AgentMessage, BindRequest, EdgeMessage, MAX_CONTROL_LEN, Refusal};
use crate::proto::frame::{self, Decoder};
use crate::proto::hello::{Hello, HelloReply, MAX_HELLO_LEN};
use crate::proto::{PROTOCOL_VERSION, meta};
use forward::LocalEndpoint;

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The edge refused the agent; retrying will not help.
    #[error("the edge refused the connection ({code}): {reason}")]
    Refused {
        /// Error code.
        code: String,
        /// Reason.
        reason: String,
    },
    /// A connection attempt failed (retried).
    #[error("{0}")]
    Connect(String),
    /// The agent has stopped; it cannot take requests any more.
    #[error("the agent has stopped")]
    Stopped,
    /// A token rotation did not complete; the agent keeps serving on its current session.
    #[error("token rotation failed: {0}")]
    Rotation(String),
}

/// Options that are not part of the config file.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Override of the TLS server name checked on the edge certificate (default: the host of
    /// `connect_url`).
    pub server_name: Option<String>,
    /// First reconnect delay ceiling.
    pub backoff_base: Duration,
    /// Largest reconnect delay.
    pub backoff_cap: Duration,
    /// How often policy files are checked for changes.
    pub policy_poll: Duration,
    /// The agent's config file. When set, it is re-read every `policy_poll`; a changed
    /// `agent.authtoken` switches the running agent to the new token without dropping requests
    /// (the path of [`AgentHandle::rotate_token`]). Other changes need a restart.
    pub config_path: Option<PathBuf>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            server_name: None,
            backoff_base: Duration::from_millis(50),
            backoff_cap: Duration::from_secs(30),
            policy_poll: Duration::from_secs(2),
            config_path: None,
        }
    }
}

/// The state of one endpoint, as last reported by the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointState {
    /// Waiting for a session.
    Pending,
    /// Serving at this URL.
    Bound {
        /// Public URL.
        url: String,
    },
    /// The edge refused it.
    Refused(Refusal),
}

/// What the agent is doing, observable through [`AgentHandle::status`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// A session is established.
    pub connected: bool,
    /// Sessions established so far.
    pub sessions: u64,
    /// Endpoint states by name.
    pub endpoints: BTreeMap<String, EndpointState>,
    /// The reason the agent stopped for good, if it did.
    pub fatal: Option<String>,
    /// The last connection error.
    pub last_error: Option<String>,
}

/// A running agent.
#[derive(Debug)]
pub struct AgentHandle {
    status: watch::Receiver<AgentStatus>,
    stop: Arc<Notify>,
    rotate: mpsc::Sender<RotateRequest>,
    task: tokio::task::JoinHandle<()>,
}

/// A request to switch to a new authtoken, answered once the switch is done or has failed.
type RotateRequest = (String, oneshot::Sender<Result<(), AgentError>>);

impl AgentHandle {
    /// A receiver of status changes.
    pub fn status(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Waits until `pred` holds for the status (or the agent stopped for good).
    pub async fn wait_for(&self, pred: impl Fn(&AgentStatus) -> bool) -> AgentStatus {
        let mut rx = self.status.clone();
        if let Ok(s) = rx.wait_for(|s| pred(s) || s.fatal.is_some()).await {
            return s.clone();
        }
        rx.borrow().clone()
    }

    /// Switches the agent to `authtoken` without dropping requests (make before break).
    ///
    /// The agent dials a second session with the new token and its resume token and binds
    /// every endpoint on it; the edge hands each endpoint over to the new session (a rotated
    /// token is the same principal to the edge). Only then the old session is drained: its
    /// control stream is closed and GOAWAY sent, so in-flight streams finish on it while new
    /// ones go to the new session. Returns once the new session has answered every bind.
    ///
    /// When the new token is refused, the agent keeps serving on the old session and the
    /// error says why. When no session is up, the token is simply used for the next dial.
    pub async fn rotate_token(&self, authtoken: impl Into<String>) -> Result<(), AgentError> {
        let (tx, rx) = oneshot::channel();
        self.rotate
            .send((authtoken.into(), tx))
            .await
            .map_err(|_| AgentError::Stopped)?;
        rx.await.map_err(|_| AgentError::Stopped)?
    }

    /// Graceful stop: drains in-flight streams (GOAWAY), then closes.
    pub async fn shutdown(mut self) {
        self.stop.notify_one();
        if tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The agent.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Validates `config` and starts connecting. `base_dir` resolves relative policy paths.
    pub fn start(
        config: AgentConfig,
        base_dir: PathBuf,
        options: AgentOptions,
    ) -> Result<AgentHandle, AgentError> {
        let specs = config.resolve(&base_dir)?;
        Self::start_with(config.agent, specs, options)
    }

    /// Starts with already-resolved endpoints (used by the quick commands).
    pub fn start_with(
        section: AgentSection,
        specs: Vec<EndpointSpec>,
        options: AgentOptions,
    ) -> Result<AgentHandle, AgentError> {
        let tls = Arc::new(crate::tls::tunnel_client_config(&section.connect_cas)?);
        let mut endpoints = Vec::new();
        for spec in specs {
            endpoints.push(Arc::new(LocalEndpoint::new(spec)?));
        }
        let status = AgentStatus {
            endpoints: endpoints
                .iter()
                .map(|e| (e.spec.name.clone(), EndpointState::Pending))
                .collect(),
            ..AgentStatus::default()
        };
        let (tx, rx) = watch::channel(status);
        let stop = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            authtoken: Mutex::new(section.authtoken.clone()),
            section,
            options,
            tls,
            endpoints,
            status: tx,
            resume: Mutex::new(None),
        });
        let (rotate, rotate_rx) = mpsc::channel(4);
        if let Some(path) = inner.options.config_path.clone() {
            tokio::spawn(watch_config(
                path,
                inner.authtoken(),
                inner.options.policy_poll,
                rotate.clone(),
            ));
        }
        let task = tokio::spawn(run(inner, stop.clone(), rotate_rx));
        Ok(AgentHandle {
            status: rx,
            stop,
            rotate,
            task,
        })
    }
}

#[derive(Debug)]
struct Inner {
    section: AgentSection,
    options: AgentOptions,
    tls: Arc<rustls::ClientConfig>,
    endpoints: Vec<Arc<LocalEndpoint>>,
    status: watch::Sender<AgentStatus>,
    resume: Mutex<Option<String>>,
    /// The authtoken presented by the next dial (replaced by a rotation).
    authtoken: Mutex<String>,
}

impl Inner {
    fn authtoken(&self) -> String {
        self.authtoken
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_authtoken(&self, token: String) {
        match self.authtoken.lock() {
            Ok(mut t) => *t = token,
            Err(p) => *p.into_inner() = token,
        }
    }
}

/// How long a session whose endpoints moved to another session waits for the edge to close it
/// before draining it itself (GOAWAY).
const HANDOVER_DRAIN: Duration = Duration::from_secs(30);

/// Longest an edge-requested drain may keep a session open before the agent closes it.
const EDGE_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Controls one session from the run loop.
#[derive(Debug, Default)]
struct SessionCtl {
    /// Drain and close the session (control stream closed, GOAWAY, in-flight streams finish).
    stop: Notify,
    /// The session's endpoints moved to another session: close the control stream and let
    /// the edge close the connection once it has no use for it (no GOAWAY race with streams
    /// the edge opens for requests routed just before the handover).
    handed_over: Notify,
    /// Signalled once the edge has answered every bind of the session's first round.
    ready: Notify,
}

type SessionTask = tokio::task::JoinHandle<Result<SessionEnd, AgentError>>;

fn spawn_session(inner: &Arc<Inner>) -> (SessionTask, Arc<SessionCtl>) {
    let ctl = Arc::new(SessionCtl::default());
    let task = tokio::spawn(session(inner.clone(), ctl.clone()));
    (task, ctl)
}

async fn join_session(task: &mut SessionTask) -> Result<SessionEnd, AgentError> {
    match task.await {
        Ok(r) => r,
        Err(e) => Err(AgentError::Connect(format!("session task failed: {e}"))),
    }
}

enum SessionEnd {
    /// Local stop requested.
    Stopped,
    /// The edge asked us to go away; reconnect unless told otherwise.
    EdgeShutdown { reconnect: bool, reason: String },
    /// The connection ended.
    Closed,
}

async fn run(inner: Arc<Inner>, stop: Arc<Notify>, mut rotate: mpsc::Receiver<RotateRequest>) {
    let mut backoff = Backoff::new(inner.options.backoff_base, inner.options.backoff_cap);
    // Sessions handed over by a rotation, draining their in-flight streams.
    let mut draining: JoinSet<()> = JoinSet::new();
    let mut draining_ctls: Vec<std::sync::Weak<SessionCtl>> = Vec::new();
    loop {
        let started = Instant::now();
        let (mut cur, mut ctl) = spawn_session(&inner);
        let result = loop {
            tokio::select! {
                r = join_session(&mut cur) => break r,
                () = stop.notified() => {
                    ctl.stop.notify_one();
                    for c in draining_ctls.iter().filter_map(std::sync::Weak::upgrade) {
                        c.stop.notify_one();
                    }
                    let _ = join_session(&mut cur).await;
                    while draining.join_next().await.is_some() {}
                    return;
                }
                Some((token, reply)) = rotate.recv() => {
                    match handover(&inner, token, &mut cur, &mut draining).await {
                        Handover::Switched(task, new_ctl) => {
                            ctl.handed_over.notify_one();
                            draining_ctls.retain(|c| c.strong_count() > 0);
                            draining_ctls.push(Arc::downgrade(&ctl));
                            let old = std::mem::replace(&mut cur, task);
                            draining.spawn(async move {
                                let _ = old.await;
                            });
                            ctl = new_ctl;
                            let _ = reply.send(Ok(()));
                        }
                        Handover::Failed(e) => {
                            let _ = reply.send(Err(e));
                        }
                        Handover::OldEnded(r, task, new_ctl) => {
                            // The old session ended during the switch; the new one carries on.
                            cur = task;
                            ctl = new_ctl;
                            let _ = reply.send(Ok(()));
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "old session failed during rotation");
                            }
                        }
                    }
                }
                Some(_) = draining.join_next(), if !draining.is_empty() => {}
            }
        };
        // Pick up a rotation requested while no session was up: the next dial uses it.
        while let Ok((token, reply)) = rotate.try_recv() {
            inner.set_authtoken(token);
            let _ = reply.send(Ok(()));
        }
        inner.status.send_modify(|s| {
            s.connected = false;
            for st in s.endpoints.values_mut() {
                if matches!(st, EndpointState::Bound { .. }) {
                    *st = EndpointState::Pending;
                }
            }
        });
        match result {
            Ok(SessionEnd::Stopped) => return,
            Ok(SessionEnd::EdgeShutdown {
                reconnect: false,
                reason,
            }) => {
                tracing::error!(%reason, "the edge closed the session for good");
                inner.status.send_modify(|s| s.fatal = Some(reason));
                return;
            }
            Ok(SessionEnd::EdgeShutdown { reason, .. }) => {
                tracing::info!(%reason, "the edge is draining this session; reconnecting");
            }
            Ok(SessionEnd::Closed) => tracing::warn!("session closed; reconnecting"),
            Err(AgentError::Refused { code, reason }) => {
                let msg = format!("{reason} ({code})");
                tracing::error!(%msg, "the edge refused the agent");
                inner.status.send_modify(|s| s.fatal = Some(msg));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "session failed");
                inner
                    .status
                    .send_modify(|s| s.last_error = Some(e.to_string()));
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                () = stop.notified() => return,
                Some((token, reply)) = rotate.recv() => {
                    inner.set_authtoken(token);
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }
}

/// Re-reads the config file at `path` and rotates to its authtoken when that changes. Ends with
/// the agent.
async fn watch_config(
    path: PathBuf,
    mut token: String,
    every: Duration,
    rotate: mpsc::Sender<RotateRequest>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if rotate.is_closed() {
            return;
        }
        let read = tokio::task::spawn_blocking({
            let path = path.clone();
            move || AgentConfig::load(&path)
        })
        .await;
        let config = match read {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot re-read the agent config; keeping the current one");
                continue;
            }
            Err(_) => continue,
        };
        if config.agent.authtoken == token {
            continue;
        }
        tracing::info!(path = %path.display(), "the authtoken changed in the config; rotating");
        let (tx, rx) = oneshot::channel();
        if rotate
            .send((config.agent.authtoken.clone(), tx))
            .await
            .is_err()
        {
            return;
        }
        match rx.await {
            Ok(Ok(())) => token = config.agent.authtoken,
            // Tried once per change: a refused token is not retried until the file changes.
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the config's new authtoken was not taken");
                token = config.agent.authtoken;
            }
            Err(_) => return,
        }
    }
}

enum Handover {
    /// The new session is up and has answered every bind; the old one should drain.
    Switched(SessionTask, Arc<SessionCtl>),
    /// The new session could not be established; the old one keeps serving.
    Failed(AgentError),
    /// The old session ended while the new one was being set up.
    OldEnded(Result<SessionEnd, AgentError>, SessionTask, Arc<SessionCtl>),
}

/// Dials a session with `token` next to the running one (`cur`) and waits until the edge has
/// answered all its binds (which moves the endpoints over to it).
async fn handover(
    inner: &Arc<Inner>,
    token: String,
    cur: &mut SessionTask,
    draining: &mut JoinSet<()>,
) -> Handover {
    let previous = inner.authtoken();
    inner.set_authtoken(token);
    let (mut next, ctl) = spawn_session(inner);
    tracing::info!("rotating the authtoken: opening a session with the new token");
    loop {
        tokio::select! {
            () = ctl.ready.notified() => {
                tracing::info!("the new session serves every endpoint; draining the old one");
                return Handover::Switched(next, ctl);
            }
            r = join_session(&mut next) => {
                inner.set_authtoken(previous);
                let e = match r {
                    Err(e) => e,
                    Ok(_) => AgentError::Rotation("the new session closed before binding".into()),
                };
                tracing::warn!(error = %e, "token rotation failed; keeping the current session");
                return Handover::Failed(AgentError::Rotation(e.to_string()));
            }
            r = join_session(cur) => return Handover::OldEnded(r, next, ctl),
            Some(_) = draining.join_next(), if !draining.is_empty() => {}
        }
    }
}

async fn session(inner: Arc<Inner>, ctl: Arc<SessionCtl>) -> Result<SessionEnd, AgentError> {
    let section = &inner.section;
    let target = section
        .connect_url
        .strip_prefix("tls://")
        .unwrap_or(&section.connect_url)
        .trim_end_matches('/')
        .to_owned();
    let host = match target.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
        None => {
            return Err(AgentError::Connect(format!(
                "connect_url `{target}` needs a port"
            )));
        }
    };
    let name = inner.options.server_name.clone().unwrap_or(host);
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|_| AgentError::Connect(format!("invalid server name `{name}`")))?;
    let deadline = Duration::from_secs(10);
    let tcp = tokio::time::timeout(deadline, TcpStream::connect(&target))
        .await
        .map_err(|_| AgentError::Connect(format!("connecting to `{target}` timed out")))?
        .map_err(|e| AgentError::Connect(format!("connecting to `{target}`: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(inner.tls.clone());
    let mut tls = tokio::time::timeout(
        deadline,
        connector.connect(server_name, crate::io::tunnel_transport(tcp)),
    )
    .await
    .map_err(|_| AgentError::Connect("tls handshake timed out".into()))?
    .map_err(|e| AgentError::Connect(format!("tls handshake with `{target}`: {e}")))?;
    let mut metadata = BTreeMap::new();
    if let Some(m) = &section.metadata {
        metadata.insert("metadata".to_owned(), m.clone());
    }
    metadata.insert(
        "agent_version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    let resume = inner.resume.lock().map(|r| r.clone()).unwrap_or(None);
    let hello = Hello {
        version: PROTOCOL_VERSION,
        authtoken: inner.authtoken(),
        metadata,
        resume_token: resume,
    };
    let reply: HelloReply = tokio::time::timeout(deadline, async {
        frame::write_frame(&mut tls, &hello, MAX_HELLO_LEN).await?;
        frame::read_frame(&mut tls, MAX_HELLO_LEN).await
    })
    .await
    .map_err(|_| AgentError::Connect("hello timed out".into()))?
    .map_err(|e| AgentError::Connect(format!("hello: {e}")))?;
    let session_id = match reply {
        HelloReply::Refuse { code, reason } => return Err(AgentError::Refused { code, reason }),
        HelloReply::Accept {
            session_id,
            resume_token,
        } => {
            if let Ok(mut r) = inner.resume.lock() {
                *r = Some(resume_token);
            }
            session_id
        }
    };
    tracing::info!(session = %session_id, edge = %target, "connected to the edge");
    inner.status.send_modify(|s| {
        s.connected = true;
        s.sessions += 1;
        s.last_error = None;
    });

    let state = Arc::new(SessionState {
        inner: inner.clone(),
        ctl: ctl.clone(),
        by_id: Mutex::new(HashMap::new()),
        control_taken: std::sync::atomic::AtomicBool::new(false),
        end: Mutex::new(None),
        drain: Notify::new(),
        close_control: Notify::new(),
    });
    let svc_state = state.clone();
    let service = service_fn(move |req: http::Request<Incoming>| {
        let state = svc_state.clone();
        async move { Ok::<_, std::convert::Infallible>(state.handle(req).await) }
    });
    let (io, driver) = crate::io::WriteBatch::new(tls);
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(crate::proto::STREAM_WINDOW)
        .initial_connection_window_size(crate::proto::CONN_WINDOW)
        .max_frame_size(crate::proto::MAX_FRAME_SIZE)
        .max_concurrent_streams(u32::MAX / 2)
        .keep_alive_interval(section.heartbeat_interval)
        .keep_alive_timeout(section.heartbeat_tolerance)
        .max_header_list_size(256 * 1024)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = driver.drive(conn);
    let mut draining = false;
    let mut local_stop = false;
    let mut handed_over = false;
    let handover_deadline = tokio::time::sleep(HANDOVER_DRAIN);
    tokio::pin!(handover_deadline);
    let mut edge_drain = false;
    let drain_deadline = tokio::time::sleep(EDGE_DRAIN_LIMIT);
    tokio::pin!(drain_deadline);
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "session connection ended");
                }
                break;
            }
            () = ctl.stop.notified(), if !draining => {
                draining = true;
                local_stop = true;
                state.close_control.notify_one();
                conn.inner().graceful_shutdown();
            }
            () = state.drain.notified(), if !draining => {
                draining = true;
                state.close_control.notify_one();
                conn.inner().graceful_shutdown();
                // The edge asked for the drain and closes the connection at its drain
                // timeout; should it not, a stalled stream must not keep this session (and
                // the reconnect, or the report that the edge closed it for good) waiting.
                drain_deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + EDGE_DRAIN_LIMIT);
                edge_drain = true;
            }
            () = &mut drain_deadline, if edge_drain => {
                tracing::warn!("in-flight streams outlived the edge's drain; closing the session");
                break;
            }
            () = ctl.handed_over.notified(), if !draining && !handed_over => {
                handed_over = true;
                state.close_control.notify_one();
                handover_deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + HANDOVER_DRAIN);
            }
            () = &mut handover_deadline, if handed_over && !draining => {
                // The edge kept the connection open for too long; drain it from this side.
                draining = true;
                conn.inner().graceful_shutdown();
            }
        }
    }
    if local_stop || handed_over {
        return Ok(SessionEnd::Stopped);
    }
    let end = state.end.lock().ok().and_then(|mut e| e.take());
    Ok(end.unwrap_or(SessionEnd::Closed))
}

/// Per-session state shared with the stream handlers.
struct SessionState {
    inner: Arc<Inner>,
    ctl: Arc<SessionCtl>,
    by_id: Mutex<HashMap<String, Arc<LocalEndpoint>>>,
    control_taken: std::sync::atomic::AtomicBool,
    end: Mutex<Option<SessionEnd>>,
    drain: Notify,
    /// Ends the control stream (the edge then stops routing new streams here).
    close_control: Notify,
}

impl SessionState {
    async fn handle(
        self: &Arc<Self>,
        req: http::Request<Incoming>,
    ) -> http::Response<crate::body::Body> {
        if req.uri().path() == meta::CONTROL_PATH
            && req.method() == http::Method::POST
            && !self
                .control_taken
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let (tx, body) = ChannelBody::new(64);
            let state = self.clone();
            tokio::spawn(async move { state.control(req.into_body(), tx).await });
            return http::Response::new(boxed(body));
        }
        let ep = req
            .headers()
            .get(meta::ENDPOINT)
            .and_then(|v| v.to_str().ok())
            .and_then(|id| {
                self.by_id
                    .lock()
                    .ok()
                    .and_then(|m| m.get(id).cloned())
                    // The edge routes to this session as soon as it has re-bound an endpoint,
                    // which can be before the `bound` reply is read here (a handover keeps the
                    // endpoint id, which the endpoint already carries from its last session).
                    .or_else(|| {
                        self.inner
                            .endpoints
                            .iter()
                            .find(|e| e.bound_id().as_deref() == Some(id))
                            .cloned()
                    })
            });
        match ep {
            Some(ep) => ep.serve(req).await,
            None => crate::pages::UNKNOWN_ENDPOINT_AT_AGENT.response("unknown endpoint id"),
        }
    }

    async fn control(self: Arc<Self>, mut incoming: Incoming, tx: mpsc::Sender<Bytes>) {
        let endpoints = self.inner.endpoints.clone();
        let mut pending: HashMap<u64, Arc<LocalEndpoint>> = HashMap::new();
        for (i, ep) in endpoints.iter().enumerate() {
            let request_id = i as u64 + 1;
            let msg = AgentMessage::Bind(BindRequest {
                request_id,
                name: ep.spec.name.clone(),
                url: ep.bound_url().or_else(|| ep.spec.url.clone()),
                proto: ep.spec.proto,
                policy: ep.current_policy(),
            });
            if send(&tx, &msg).await.is_err() {
                return;
            }
            pending.insert(request_id, ep.clone());
        }
        let first_round = endpoints.len() as u64;
        let mut ready = false;
        if first_round == 0 {
            ready = true;
            self.ctl.ready.notify_one();
        }
        let mut next_id = first_round + 1;
        let mut decoder = Decoder::new(MAX_CONTROL_LEN);
        let mut poll = tokio::time::interval(self.inner.options.policy_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                f = incoming.frame() => {
                    let Some(Ok(f)) = f else { return };
                    let Ok(data) = f.into_data() else { continue };
                    decoder.extend(&data);
                    loop {
                        match decoder.next_message::<EdgeMessage>() {
                            Ok(Some(m)) => {
                                self.on_message(m, &mut pending);
                                if !ready && pending.keys().all(|id| *id > first_round) {
                                    ready = true;
                                    self.ctl.ready.notify_one();
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "bad control message from the edge");
                                self.drain.notify_one();
                                return;
                            }
                        }
                    }
                }
                () = self.close_control.notified() => return,
                _ = poll.tick() => {
                    for ep in &endpoints {
                        let Some(id) = ep.bound_id() else { continue };
                        if let Some(policy) = ep.reload_policy_if_changed() {
                            tracing::info!(endpoint = %ep.spec.name, "policy file changed; updating");
                            let msg = AgentMessage::UpdatePolicy { request_id: next_id, endpoint_id: id, policy: Some(policy) };
                            pending.insert(next_id, ep.clone());
                            next_id += 1;
                            if send(&tx, &msg).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    fn on_message(&self, m: EdgeMessage, pending: &mut HashMap<u64, Arc<LocalEndpoint>>) {
        match m {
            EdgeMessage::Bound {
                request_id,
                endpoint_id,
                url,
            } => {
                let Some(ep) = pending.remove(&request_id) else {
                    return;
                };
                tracing::info!(endpoint = %ep.spec.name, %url, "endpoint online");
                ep.set_bound(&endpoint_id, &url);
                if let Ok(mut m) = self.by_id.lock() {
                    m.insert(endpoint_id, ep.clone());
                }
                let name = ep.spec.name.clone();
                self.inner.status.send_modify(|s| {
                    s.endpoints.insert(name, EndpointState::Bound { url });
                });
            }
            EdgeMessage::Refused {
                request_id,
                refusal,
            } => {
                let Some(ep) = pending.remove(&request_id) else {
                    return;
                };
                tracing::error!(endpoint = %ep.spec.name, code = %refusal.code, message = %refusal.message, "the edge refused");
                for d in &refusal.diagnostics {
                    tracing::error!("{d}");
                }
                if ep.bound_id().is_none() {
                    let name = ep.spec.name.clone();
                    self.inner.status.send_modify(|s| {
                        s.endpoints.insert(name, EndpointState::Refused(refusal));
                    });
                }
            }
            EdgeMessage::Done { request_id } => {
                pending.remove(&request_id);
            }
            EdgeMessage::Shutdown { reason, reconnect } => {
                if let Ok(mut e) = self.end.lock() {
                    *e = Some(SessionEnd::EdgeShutdown { reconnect, reason });
                }
                self.drain.notify_one();
            }
        }
    }
}

async fn send(tx: &mpsc::Sender<Bytes>, msg: &AgentMessage) -> Result<(), ()> {
    let bytes = frame::encode(msg, MAX_CONTROL_LEN).map_err(|e| {
        tracing::error!(error = %e, "cannot encode control message");
    })?;
    tx.send(Bytes::from(bytes)).await.map_err(|_| ())
}
