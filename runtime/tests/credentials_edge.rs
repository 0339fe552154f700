//! Fleet credentials end to end: a real edge authenticating agents against the credential store
//! ([`StoreAuthenticator`]), managed through the admin API, all on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    reason = "test support code outside #[test] functions"
)]

mod support;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wicket_runtime::admin::{self, AdminClient, AdminKey, AdminState};
use wicket_runtime::agent::{AgentHandle, EndpointState};
use wicket_runtime::credentials::{
    Acl, CredentialService, CredentialStore, NewCredential, SqliteStore, StoreAuthenticator,
};
use wicket_runtime::edge::{Edge, EdgeHandle};

use crate::support::*;

const KEY: &str = "edge-test-admin-key-0123";

/// An edge whose agents authenticate against the store in its data directory, plus the admin
/// API over the same store.
struct Fleet {
    edge: EdgeHandle,
    store: Arc<SqliteStore>,
    admin: AdminClient,
    _stop_admin: oneshot::Sender<()>,
}

async fn start_fleet(c: &Certs) -> Fleet {
    let cfg = edge_config(c);
    let store = Arc::new(SqliteStore::open(&cfg.data_dir).unwrap());
    let service = CredentialService::new(store.clone());
    service.spawn_maintenance(std::time::Duration::from_millis(250));
    let edge = within(
        "edge start",
        Edge::builder(cfg)
            .tunnel_cert(c.pair.clone())
            .public_certs(vec![c.pair.clone()])
            .authenticator(Arc::new(StoreAuthenticator::for_service(&service)))
            .start(),
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(admin::serve(
        listener,
        AdminState::new(service, AdminKey::new(KEY).unwrap()),
        async move {
            let _ = stopped.await;
        },
    ));
    Fleet {
        edge,
        store,
        admin: AdminClient::new(&url, AdminKey::new(KEY).unwrap()).unwrap(),
        _stop_admin: stop,
    }
}

fn endpoint(name: &str, url: &str, up: std::net::SocketAddr) -> String {
    format!("  - name: {name}\n    url: {url}\n    upstream: {{ url: '{up}' }}\n")
}

fn agent(c: &Certs, fleet: &Fleet, token: &str, endpoints: &str) -> AgentHandle {
    start_agent(
        c,
        &agent_yaml(c, fleet.edge.addrs().tunnel, token, endpoints),
    )
}

async fn fatal(agent: &AgentHandle) -> String {
    within("refusal", agent.wait_for(|s| s.fatal.is_some()))
        .await
        .fatal
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_bind_inside_the_acl_and_refuse_outside() {
    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("cam-42").await;
    let created = fleet
        .admin
        .create(&NewCredential {
            description: "cam-42".into(),
            acl: Acl::parse(&["bind:cam-42.example.test"]).unwrap(),
            ..NewCredential::default()
        })
        .await
        .unwrap();
    let endpoints = [
        endpoint("own", "https://cam-42.example.test", up),
        endpoint("other", "https://cam-43.example.test", up),
        endpoint("wild", "https://*.example.test", up),
    ]
    .concat();
    let agent = agent(&c, &fleet, created.token.expose(), &endpoints);
    let st = settled(&agent).await;
    assert_eq!(bound_url(&st, "own"), "https://cam-42.example.test");
    for (name, url) in [
        ("other", "https://cam-43.example.test"),
        ("wild", "https://*.example.test"),
    ] {
        match st.endpoints.get(name) {
            Some(EndpointState::Refused(r)) => {
                // The agent learns the endpoint and the credential's rule set, not only the
                // edge log.
                assert_eq!(r.code, "ERR_WICKET_4203", "{name}");
                assert!(r.message.contains(url), "{}", r.message);
                assert!(
                    r.message.contains("[bind:cam-42.example.test]"),
                    "{}",
                    r.message
                );
            }
            other => panic!("`{name}` should be refused, got {other:?}"),
        }
    }
    // Traffic flows to the bound endpoint.
    let https = fleet.edge.addrs().https.unwrap();
    let reply = get(
        https,
        Some((&c, "cam-42.example.test")),
        false,
        "cam-42.example.test",
        "/hello",
    )
    .await;
    assert_eq!(reply.status, http::StatusCode::OK);
    assert_eq!(reply.text(), "hello from cam-42");
    assert!(
        fleet
            .store
            .get(&created.credential.id)
            .unwrap()
            .last_used_at
            .is_some()
    );
    agent.shutdown().await;
    fleet.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_revoked_token_is_refused_on_connect() {
    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("dev").await;
    let created = fleet.admin.create(&NewCredential::default()).await.unwrap();
    let token = created.token.expose().to_owned();
    let endpoints = endpoint("web", "https://dev.example.test", up);
    let first = agent(&c, &fleet, &token, &endpoints);
    settled(&first).await;
    first.shutdown().await;

    fleet
        .admin
        .revoke(created.credential.id.as_str())
        .await
        .unwrap();
    for _ in 0..3 {
        let again = agent(&c, &fleet, &token, &endpoints);
        let reason = fatal(&again).await;
        assert!(reason.contains("ERR_WICKET_4100"), "{reason}");
        again.shutdown().await;
    }
    let unknown = agent(&c, &fleet, "wkt_not-a-real-token", &endpoints);
    assert!(fatal(&unknown).await.contains("ERR_WICKET_4100"));
    unknown.shutdown().await;
    let refusals = fleet
        .admin
        .audit(None, None)
        .await
        .unwrap()
        .records
        .into_iter()
        .filter(|r| r.action == "session.refuse")
        .map(|r| r.result)
        .collect::<Vec<_>>();
    assert_eq!(refusals, ["revoked", "revoked", "revoked", "invalid_token"]);
    fleet.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_and_revocations_survive_an_edge_restart() {
    let c = certs();
    let (kept, revoked) = {
        let fleet = start_fleet(&c).await;
        let kept = fleet.admin.create(&NewCredential::default()).await.unwrap();
        let revoked = fleet.admin.create(&NewCredential::default()).await.unwrap();
        fleet
            .admin
            .revoke(revoked.credential.id.as_str())
            .await
            .unwrap();
        fleet.edge.shutdown().await;
        (kept.token, revoked.token)
    };
    // A new edge process over the same data directory.
    let fleet = start_fleet(&c).await;
    assert_eq!(fleet.store.list().unwrap().len(), 2);
    let up = upstream("back").await;
    let endpoints = endpoint("web", "https://back.example.test", up);
    let ok = agent(&c, &fleet, kept.expose(), &endpoints);
    assert_eq!(
        bound_url(&settled(&ok).await, "web"),
        "https://back.example.test"
    );
    let refused = agent(&c, &fleet, revoked.expose(), &endpoints);
    assert!(fatal(&refused).await.contains("ERR_WICKET_4100"));
    ok.shutdown().await;
    refused.shutdown().await;
    fleet.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_rotation_grace_lets_the_new_token_take_over() {
    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("site").await;
    let created = fleet
        .admin
        .create(&NewCredential {
            acl: Acl::parse(&["bind:*.site.example.test", "bind:site.example.test"]).unwrap(),
            ..NewCredential::default()
        })
        .await
        .unwrap();
    let endpoints = endpoint("web", "https://site.example.test", up);
    let old_agent = agent(&c, &fleet, created.token.expose(), &endpoints);
    settled(&old_agent).await;

    let rotation = fleet
        .admin
        .rotate(created.credential.id.as_str(), Some("1h"))
        .await
        .unwrap();
    // During the grace period the old token still authenticates new sessions.
    let probe = endpoint("probe", "https://probe.site.example.test", up);
    let old_again = agent(&c, &fleet, created.token.expose(), &probe);
    assert_eq!(
        bound_url(&settled(&old_again).await, "probe"),
        "https://probe.site.example.test"
    );
    old_again.shutdown().await;
    // The agent switches to the new token: same lineage, so it takes the endpoint over.
    old_agent.shutdown().await;
    let new_agent = agent(&c, &fleet, rotation.new.token.expose(), &endpoints);
    assert_eq!(
        bound_url(&settled(&new_agent).await, "web"),
        "https://site.example.test"
    );
    let https = fleet.edge.addrs().https.unwrap();
    let reply = get(
        https,
        Some((&c, "site.example.test")),
        false,
        "site.example.test",
        "/hello",
    )
    .await;
    assert_eq!(reply.text(), "hello from site");

    // Rotating again with no grace cuts the previous token off at once.
    let next = fleet
        .admin
        .rotate(rotation.new.credential.id.as_str(), Some("0"))
        .await
        .unwrap();
    assert!(next.old.revoked_at.is_some());
    let cut = agent(&c, &fleet, rotation.new.token.expose(), &probe);
    assert!(fatal(&cut).await.contains("ERR_WICKET_4100"));
    cut.shutdown().await;
    new_agent.shutdown().await;
    fleet.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_revoke_closes_live_sessions_within_the_bound() {
    use http_body_util::BodyExt as _;
    use std::time::{Duration, Instant};

    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("rv").await;
    let https = fleet.edge.addrs().https.unwrap();
    let mut after_return = Vec::new();
    for trial in 0..100 {
        let host = format!("rv{trial}.example.test");
        let created = fleet.admin.create(&NewCredential::default()).await.unwrap();
        let agent = agent(
            &c,
            &fleet,
            created.token.expose(),
            &endpoint("web", &format!("https://{host}"), up),
        );
        settled(&agent).await;
        // The first trial also keeps a public request in flight across the revocation.
        let in_flight = if trial == 0 {
            let mut conn = connect(https, Some((&c, host.as_str())), false).await;
            let req = request(&conn, "https", &host, "/big/1000000000", "GET", {
                http_body_util::Full::new(bytes::Bytes::new())
                    .map_err(|e| match e {})
                    .boxed()
            });
            let mut body = conn.send(req).await.into_body();
            let first = within("first frame", body.frame()).await;
            assert!(matches!(first, Some(Ok(_))));
            Some((conn, body))
        } else {
            None
        };
        let response = fleet
            .admin
            .revoke(created.credential.id.as_str())
            .await
            .unwrap();
        let returned = Instant::now();
        assert_eq!(
            response.sessions_closed.len(),
            1,
            "trial {trial}: agent {:?}, live sessions {:?}, edge sessions {}",
            agent.status().borrow().clone(),
            fleet.admin.sessions().await.unwrap().sessions,
            fleet.edge.session_count()
        );
        // The edge has closed the session when it no longer counts it.
        within("session closed", async {
            while fleet.edge.session_count() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        after_return.push(returned.elapsed());
        if trial == 1 {
            let st = within("agent stops", agent.wait_for(|s| s.fatal.is_some())).await;
            assert!(st.fatal.unwrap().contains("revoked"));
        }
        if let Some((_conn, body)) = in_flight {
            // The in-flight response ends (with an error) instead of hanging.
            let rest = within("in-flight body ends", body.collect()).await;
            assert!(rest.is_err() || rest.unwrap().to_bytes().len() < 1_000_000_000);
            // And the endpoint now answers "offline".
            let r = get(https, Some((&c, host.as_str())), false, &host, "/hello").await;
            assert_eq!(r.status, http::StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.header("wicket-error-code"), "ERR_WICKET_3201");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), agent.shutdown()).await;
    }
    after_return.sort();
    let pick = |q: f64| after_return[((after_return.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "revoke returned -> edge closed the session, {} trials: p50 {:?}, p99 {:?}, max {:?}",
        after_return.len(),
        pick(0.5),
        pick(0.99),
        after_return[after_return.len() - 1]
    );
    fleet.edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_source_cidrs_and_session_cap_apply() {
    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("cap").await;
    let elsewhere = fleet
        .admin
        .create(&NewCredential {
            allowed_cidrs: vec!["192.0.2.0/24".parse().unwrap()],
            ..NewCredential::default()
        })
        .await
        .unwrap();
    let refused = agent(
        &c,
        &fleet,
        elsewhere.token.expose(),
        &endpoint("a", "https://cidr.example.test", up),
    );
    let reason = fatal(&refused).await;
    assert!(
        reason.contains("may not be used from 127.0.0.1"),
        "{reason}"
    );
    refused.shutdown().await;

    let capped = fleet
        .admin
        .create(&NewCredential {
            max_sessions: Some(1),
            ..NewCredential::default()
        })
        .await
        .unwrap();
    let first = agent(
        &c,
        &fleet,
        capped.token.expose(),
        &endpoint("a", "https://cap1.example.test", up),
    );
    settled(&first).await;
    let second = agent(
        &c,
        &fleet,
        capped.token.expose(),
        &endpoint("b", "https://cap2.example.test", up),
    );
    let reason = fatal(&second).await;
    assert!(reason.contains("maximum"), "{reason}");
    let sessions = fleet.admin.sessions().await.unwrap().sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].endpoints, ["https://cap1.example.test"]);
    // An operator disconnect closes the session for good.
    fleet
        .admin
        .kill_session(sessions[0].id.as_str())
        .await
        .unwrap();
    let reason = fatal(&first).await;
    assert!(reason.contains("disconnected by an operator"), "{reason}");
    second.shutdown().await;
    first.shutdown().await;
    fleet.edge.shutdown().await;
}

/// Rotation under steady load, make before break: the agent switches to the rotated token in
/// place ([`AgentHandle::rotate_token`]); it opens a second session with the new token, the edge
/// hands the endpoint over, and only then the old session drains. No request may fail: the test
/// counts every answer that is not the upstream's and requires zero. The load is bounded (two
/// sequential clients, at most 400 requests each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_rotation_under_steady_load() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Duration;

    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("load").await;
    let created = fleet.admin.create(&NewCredential::default()).await.unwrap();
    let endpoints = endpoint("web", "http://load.example.test", up);
    let agent = agent(&c, &fleet, created.token.expose(), &endpoints);
    settled(&agent).await;

    let http = fleet.edge.addrs().http.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.spawn(async move {
            // Sequential requests, each on a fresh connection (bounded).
            for _ in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = get(http, None, false, "load.example.test", "/hello").await;
                if r.status == http::StatusCode::OK && r.text() == "hello from load" {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("failed during rotation: {} {}", r.status, r.text());
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let wait_ok = |n: u64| {
        let ok = ok.clone();
        async move {
            while ok.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    within("load starts", wait_ok(100)).await;

    let rotation = fleet
        .admin
        .rotate(created.credential.id.as_str(), Some("1h"))
        .await
        .unwrap();
    let sessions_before = agent.status().borrow().sessions;
    within("rotation", agent.rotate_token(rotation.new.token.expose()))
        .await
        .unwrap();
    let st = agent.status().borrow().clone();
    assert_eq!(st.sessions, sessions_before + 1);
    assert_eq!(bound_url(&st, "web"), "http://load.example.test");
    let at_switch = ok.load(Ordering::Relaxed);
    // The old session drains and closes; the new one carries the traffic.
    within("old session closes", async {
        while fleet.edge.session_count() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    within("load continues on the new token", wait_ok(at_switch + 200)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = within("load stops", load.join_next()).await {
        r.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("rotation under load: {ok} requests ok, {failed} failed during the token switch");
    assert_eq!(failed, 0, "requests dropped during the rotation");

    // The only live session is the new token's: cutting the old credential does not touch it.
    let sessions = fleet.admin.sessions().await.unwrap().sessions;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].endpoints, ["http://load.example.test"]);
    fleet
        .admin
        .revoke(created.credential.id.as_str())
        .await
        .unwrap();
    let r = get(http, None, false, "load.example.test", "/hello").await;
    assert_eq!(r.status, http::StatusCode::OK);
    assert!(agent.status().borrow().fatal.is_none());
    agent.shutdown().await;
    fleet.edge.shutdown().await;
}

/// A rotation to a token the edge refuses leaves the agent serving on its current session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_rotation_to_a_bad_token_keeps_the_old_session() {
    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("keep").await;
    let created = fleet.admin.create(&NewCredential::default()).await.unwrap();
    let agent = agent(
        &c,
        &fleet,
        created.token.expose(),
        &endpoint("web", "http://keep.example.test", up),
    );
    settled(&agent).await;
    let err = within("rotation", agent.rotate_token("wkt_not-a-real-token"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ERR_WICKET_4100"), "{err}");
    let http = fleet.edge.addrs().http.unwrap();
    let r = get(http, None, false, "keep.example.test", "/hello").await;
    assert_eq!(r.text(), "hello from keep");
    let st = agent.status().borrow().clone();
    assert!(st.connected && st.fatal.is_none(), "{st:?}");
    agent.shutdown().await;
    fleet.edge.shutdown().await;
}

/// An upstream that accepts connections and reads requests but never answers. Reports each
/// accepted connection on `accepted` and, once the peer closes it, on `closed`.
async fn stalled_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use tokio::io::AsyncReadExt as _;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (acc_tx, acc_rx) = tokio::sync::mpsc::unbounded_channel();
    let (closed_tx, closed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Bounded: the test opens a handful of connections.
        for _ in 0..16 {
            let Ok((mut tcp, _)) = l.accept().await else {
                return;
            };
            let _ = acc_tx.send(());
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = closed_tx.send(());
            });
        }
    });
    (addr, acc_rx, closed_rx)
}

/// The edge goes away (drain, then close at its drain timeout) while a response is stalled at
/// the upstream: the public request ends instead of hanging, the agent notices the session
/// ended, releases the upstream connection, reconnects with backoff to the restarted edge and
/// serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_closing_a_session_with_a_stalled_response_does_not_hang_the_agent() {
    use std::time::Duration;

    let c = certs();
    let mut cfg = edge_config(&c);
    cfg.limits.drain_timeout = Duration::from_millis(300);
    let edge = start_edge(&c, cfg.clone()).await;
    let addrs = edge.addrs();
    let (stalled, mut accepted, mut closed) = stalled_upstream().await;
    let up = upstream("back").await;
    let endpoints = [
        endpoint("stall", "http://stall.example.test", stalled),
        endpoint("web", "http://web.example.test", up),
    ]
    .concat();
    let agent = start_endpoints(&c, addrs.tunnel, &endpoints);
    settled(&agent).await;
    let http = addrs.http.unwrap();
    let stuck =
        tokio::spawn(async move { get(http, None, false, "stall.example.test", "/").await });
    within("the request reaches the upstream", accepted.recv())
        .await
        .unwrap();

    edge.shutdown().await;
    within("agent notices", agent.wait_for(|s| !s.connected)).await;
    let _ = within("the stalled request ends", stuck).await;
    within("the agent releases the upstream connection", closed.recv())
        .await
        .unwrap();

    let edge = restart_edge(&c, cfg, &addrs).await;
    let st = within(
        "reconnected",
        agent.wait_for(|s| {
            s.connected
                && s.sessions >= 2
                && s.endpoints
                    .values()
                    .all(|e| matches!(e, EndpointState::Bound { .. }))
        }),
    )
    .await;
    assert!(st.fatal.is_none());
    let r = get(http, None, false, "web.example.test", "/hello").await;
    assert_eq!(r.text(), "hello from back");
    within("agent stops", agent.shutdown()).await;
    edge.shutdown().await;
}

/// An operator disconnect (no reconnect) while a response is stalled: the agent stops for good
/// with the reason, the public request ends, the upstream connection is released, and the
/// agent's own shutdown returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_killing_a_session_with_a_stalled_response_stops_the_agent() {
    let c = certs();
    let fleet = start_fleet(&c).await;
    let (stalled, mut accepted, mut closed) = stalled_upstream().await;
    let created = fleet.admin.create(&NewCredential::default()).await.unwrap();
    let agent = agent(
        &c,
        &fleet,
        created.token.expose(),
        &endpoint("stall", "http://kill.example.test", stalled),
    );
    settled(&agent).await;
    let http = fleet.edge.addrs().http.unwrap();
    let stuck = tokio::spawn(async move { get(http, None, false, "kill.example.test", "/").await });
    within("the request reaches the upstream", accepted.recv())
        .await
        .unwrap();
    let sessions = fleet.admin.sessions().await.unwrap().sessions;
    fleet
        .admin
        .kill_session(sessions[0].id.as_str())
        .await
        .unwrap();
    let reason = fatal(&agent).await;
    assert!(reason.contains("disconnected by an operator"), "{reason}");
    let _ = within("the stalled request ends", stuck).await;
    within("the agent releases the upstream connection", closed.recv())
        .await
        .unwrap();
    within("agent stops", agent.shutdown()).await;
    fleet.edge.shutdown().await;
}

/// Editing the agent's config file to the rotated token takes the same make-before-break path
/// as [`AgentHandle::rotate_token`]: a second session, the endpoint handed over, the old session
/// closed, and the agent keeps serving after the old credential is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_credentials_config_reload_rotates_the_token_in_place() {
    use std::time::Duration;
    use wicket_runtime::agent::{Agent, AgentConfig, AgentOptions};

    let c = certs();
    let fleet = start_fleet(&c).await;
    let up = upstream("cfg").await;
    let created = fleet.admin.create(&NewCredential::default()).await.unwrap();
    let endpoints = endpoint("web", "http://cfg.example.test", up);
    let tunnel = fleet.edge.addrs().tunnel;
    let path = c.dir.path().join("agent.yml");
    std::fs::write(
        &path,
        agent_yaml(&c, tunnel, created.token.expose(), &endpoints),
    )
    .unwrap();
    let agent = Agent::start(
        AgentConfig::load(&path).unwrap(),
        c.dir.path().to_owned(),
        AgentOptions {
            backoff_cap: Duration::from_millis(500),
            policy_poll: Duration::from_millis(50),
            config_path: Some(path.clone()),
            ..AgentOptions::default()
        },
    )
    .unwrap();
    settled(&agent).await;
    let rotation = fleet
        .admin
        .rotate(created.credential.id.as_str(), Some("1h"))
        .await
        .unwrap();
    std::fs::write(
        &path,
        agent_yaml(&c, tunnel, rotation.new.token.expose(), &endpoints),
    )
    .unwrap();
    within(
        "second session",
        agent.wait_for(|s| s.sessions >= 2 && s.connected),
    )
    .await;
    // The handover is complete when the only live session is the new credential's and it
    // holds the endpoint (the agent counts the new session before the edge does).
    let new_id = rotation.new.credential.id.clone();
    within(
        "old session closes and the new one holds the endpoint",
        async {
            loop {
                let live = fleet.admin.sessions().await.unwrap().sessions;
                if fleet.edge.session_count() == 1
                    && live.len() == 1
                    && live[0].credential_id == new_id
                    && !live[0].endpoints.is_empty()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await;
    fleet
        .admin
        .revoke(created.credential.id.as_str())
        .await
        .unwrap();
    let http = fleet.edge.addrs().http.unwrap();
    let r = get(http, None, false, "cfg.example.test", "/hello").await;
    assert_eq!(r.text(), "hello from cfg");
    let st = agent.status().borrow().clone();
    assert!(st.fatal.is_none(), "{st:?}");
    assert_eq!(st.sessions, 2);
    agent.shutdown().await;
    fleet.edge.shutdown().await;
}
