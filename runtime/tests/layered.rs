//! The layered example (`examples/layered/`) end to end: the shipped agent config and its three
//! policies, with only their placeholders filled in (the office range becomes 127.0.0.1, the
//! IdP a loopback OpenID provider, the fleet CA a generated one), run by a real edge and agent in
//! front of a recording upstream.
//!
//! Every layer's failure must be answered at the edge with its own status and never reach the
//! device: the upstream's request log is checked against exactly the requests that passed.

// A harness: any failure here should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::signature::EcdsaKeyPair;
use serde_json::json;
use support::*;
use tokio::net::TcpSocket;
use wicket_runtime::agent::AgentHandle;
use wicket_runtime::edge::{EdgeHandle, NamedToken, PortRange};

const TOKEN: &str = "layered-test-token";
const ERROR_HEADER: &str = wicket_runtime::proto::meta::ERROR_CODE;
/// The client the dashboard policy names.
const CLIENT_ID: &str = "wicket-dashboard";
const CLIENT_SECRET: &str = "layered-client-secret";
const DOMAIN: &str = "cam-42.fleet.example.test";

// ---------------------------------------------------------------- the devices' services

/// What reached a device service: `(service, host, path, x-user-email, x-device-id)`.
type Seen = Arc<Mutex<Vec<(String, String, String, String, String)>>>;

async fn device_service(name: &'static str, seen: Seen) -> SocketAddr {
    serve(move |req: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let h = |n: &str| {
                req.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            let host = h("x-forwarded-host");
            seen.lock().unwrap().push((
                name.to_owned(),
                host,
                req.uri().path().to_owned(),
                h("x-user-email"),
                h("x-device-id"),
            ));
            Response::new(full(format!("{name} says hello")))
        }
    })
    .await
}

// ---------------------------------------------------------------- the identity provider

struct Grant {
    challenge: String,
    nonce: String,
    email: String,
    used: bool,
}

struct IdpState {
    addr: SocketAddr,
    key: EcdsaKeyPair,
    grants: HashMap<String, Grant>,
    next: u64,
    user: String,
}

/// A small OpenID provider: discovery, JWKS (one ES256 key), an authorization endpoint that
/// signs the current user in at once, a token endpoint checking the client secret, the one-time
/// code and PKCE, and user info. It also issues API tokens with the same key.
#[derive(Clone)]
struct Idp(Arc<Mutex<IdpState>>);

impl Idp {
    async fn start() -> Idp {
        let idp = Idp(Arc::new(Mutex::new(IdpState {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            key: es256_key(),
            grants: HashMap::new(),
            next: 0,
            user: "ana@example.com".into(),
        })));
        let served = idp.clone();
        let addr = serve(move |req| {
            let idp = served.clone();
            async move { idp.handle(req).await }
        })
        .await;
        idp.0.lock().unwrap().addr = addr;
        idp
    }

    fn url(&self) -> String {
        format!("http://{}", self.0.lock().unwrap().addr)
    }

    fn sign_in_as(&self, email: &str) {
        self.0.lock().unwrap().user = email.into();
    }

    /// An API token for `sub` with this audience, signed by the IdP's key (or a stranger's).
    fn api_token(&self, sub: &str, aud: &str, foreign_key: bool) -> String {
        let claims = json!({"iss": self.url(), "aud": aud, "sub": sub,
            "iat": now(), "exp": now() + 300});
        if foreign_key {
            sign_es256(&es256_key(), "k1", &claims)
        } else {
            sign_es256(&self.0.lock().unwrap().key, "k1", &claims)
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<TestBody> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let issuer = self.url();
        let q = form(parts.uri.query().unwrap_or("").as_bytes());
        let get = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
        match parts.uri.path() {
            "/.well-known/openid-configuration" => json_res(
                StatusCode::OK,
                &json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                    "userinfo_endpoint": format!("{issuer}/userinfo"),
                    "jwks_uri": format!("{issuer}/jwks"),
                }),
            ),
            "/jwks" => json_res(
                StatusCode::OK,
                &json!({"keys": [es256_jwk(&self.0.lock().unwrap().key, "k1")]}),
            ),
            "/authorize" => {
                assert_eq!(get(&q, "client_id"), CLIENT_ID);
                assert_eq!(get(&q, "code_challenge_method"), "S256");
                let mut s = self.0.lock().unwrap();
                s.next += 1;
                let code = format!("code-{}", s.next);
                let email = s.user.clone();
                s.grants.insert(
                    code.clone(),
                    Grant {
                        challenge: get(&q, "code_challenge"),
                        nonce: get(&q, "nonce"),
                        email,
                        used: false,
                    },
                );
                let mut back = url::Url::parse(&get(&q, "redirect_uri")).unwrap();
                back.query_pairs_mut()
                    .append_pair("code", &code)
                    .append_pair("state", &get(&q, "state"));
                let mut r = Response::new(full(""));
                *r.status_mut() = StatusCode::FOUND;
                r.headers_mut()
                    .insert("location", back.as_str().parse().unwrap());
                r
            }
            "/token" => {
                let f = form(&body);
                let (id, secret) = client_credentials(&parts.headers, &f);
                let mut s = self.0.lock().unwrap();
                let verifier = get(&f, "code_verifier");
                let challenge = pkce_challenge(&verifier);
                let ok = id == CLIENT_ID
                    && secret == CLIENT_SECRET
                    && s.grants
                        .get(&get(&f, "code"))
                        .is_some_and(|g| !g.used && g.challenge == challenge);
                if !ok {
                    return json_res(StatusCode::BAD_REQUEST, &json!({"error": "invalid_grant"}));
                }
                let grant = s.grants.get_mut(&get(&f, "code")).unwrap();
                grant.used = true;
                let (email, nonce) = (grant.email.clone(), grant.nonce.clone());
                let claims = json!({"iss": issuer, "aud": CLIENT_ID, "sub": format!("sub-{email}"),
                    "iat": now(), "exp": now() + 300, "email": email, "nonce": nonce});
                json_res(
                    StatusCode::OK,
                    &json!({
                        "access_token": format!("at:{email}"),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "id_token": sign_es256(&s.key, "k1", &claims),
                    }),
                )
            }
            "/userinfo" => {
                let email = parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer at:"))
                    .unwrap_or_default()
                    .to_owned();
                json_res(
                    StatusCode::OK,
                    &json!({"sub": format!("sub-{email}"), "email": email}),
                )
            }
            _ => {
                let mut r = Response::new(full("no such page"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        }
    }
}

// ---------------------------------------------------------------- certificates

/// The fleet CA that issues device certificates.
struct FleetCa(Ca);

impl FleetCa {
    fn new(cn: &str) -> FleetCa {
        FleetCa(root_ca(cn))
    }

    /// A device certificate for `cn`.
    fn device(&self, cn: &str) -> Ident {
        leaf(
            LeafSpec {
                cn,
                org: None,
                ou: None,
                sans: vec![format!("{cn}.devices.example.test")],
                validity: None,
                server: false,
            },
            Some(&self.0),
        )
    }
}

// ---------------------------------------------------------------- the client

/// A client of the edge's HTTPS listener that keeps cookies, can present a device certificate
/// and can connect from another loopback address; `http://127.0.0.1:…` URLs go to the IdP.
struct Client {
    edge: SocketAddr,
    roots: rustls::RootCertStore,
    source: IpAddr,
    device: Option<Ident>,
    jar: CookieJar,
}

impl Client {
    fn new(edge: SocketAddr, roots: &rustls::RootCertStore) -> Client {
        Client {
            edge,
            roots: roots.clone(),
            source: IpAddr::from([127, 0, 0, 1]),
            device: None,
            jar: CookieJar::new(),
        }
    }

    fn at_source(mut self, ip: [u8; 4]) -> Client {
        self.source = IpAddr::from(ip);
        self
    }

    fn with_device(mut self, d: &Ident) -> Client {
        self.device = Some(d.clone());
        self
    }

    async fn connect(&self, addr: SocketAddr) -> tokio::net::TcpStream {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(self.source, 0)).unwrap();
        within("connect", s.connect(addr)).await.unwrap()
    }

    /// One request, no redirects followed; `Err` when the connection or TLS handshake fails.
    async fn send(&mut self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let u = url::Url::parse(url).unwrap();
        let (host, req) = browser_request(&self.jar, "GET", &u, headers);
        let res = if u.scheme() == "https" {
            let tcp = self.connect(self.edge).await;
            let spec = ClientSpec {
                ident: self.device.as_ref(),
                ..ClientSpec::new(&self.roots)
            };
            let tls = tls_handshake(tcp, &host, spec.config()).await?;
            exchange(TokioIo::new(tls), req).await?
        } else {
            let addr: SocketAddr = format!("{host}:{}", u.port().unwrap()).parse().unwrap();
            let tcp = within("connect", tokio::net::TcpStream::connect(addr))
                .await
                .unwrap();
            exchange(TokioIo::new(tcp), req).await?
        };
        store_cookies(&mut self.jar, &host, &res);
        Ok(res)
    }

    /// A GET that must get an answer.
    async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(url, headers).await.unwrap()
    }

    /// Follows redirects (at most 10) like a browser; the final reply and the hosts visited.
    async fn navigate(&mut self, url: &str) -> (Reply, Vec<String>) {
        let mut url = url::Url::parse(url).unwrap();
        let mut hosts = Vec::new();
        for _ in 0..10 {
            hosts.push(url.host_str().unwrap().to_owned());
            let r = self.get(url.as_str(), &[]).await;
            if !r.status.is_redirection() {
                return (r, hosts);
            }
            url = url.join(r.header("location")).unwrap();
        }
        panic!("redirect loop: {hosts:?}");
    }
}

// ---------------------------------------------------------------- the example, filled in

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/layered")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `from` in `text`, insisting that it is there (the example must keep its shape).
fn fill(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example lost `{from}`");
    text.replace(from, to)
}

/// Replaces the example's placeholder PEM block with `pem`, at the same indentation.
fn fill_pem(text: &str, pem: &str) -> String {
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end_marker = "-----END CERTIFICATE-----";
    let end = text.find(end_marker).unwrap() + end_marker.len();
    let line_start = text[..begin].rfind('\n').unwrap() + 1;
    let indent = &text[line_start..begin];
    let block: Vec<String> = pem
        .trim_end()
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_owned()
            } else {
                format!("{indent}{l}")
            }
        })
        .collect();
    format!("{}{}{}", &text[..begin], block.join("\n"), &text[end..])
}

struct World {
    certs: Certs,
    _edge: EdgeHandle,
    _agent: AgentHandle,
    edge_https: SocketAddr,
    idp: Idp,
    seen: Seen,
    fleet: FleetCa,
}

async fn world() -> World {
    let c = certs_named(
        &["fleet.example.test", &format!("*.{DOMAIN}"), "127.0.0.1"],
        "edge-ca.pem",
    );
    let mut cfg = edge_config(&c);
    cfg.http_listen = None;
    cfg.metrics_listen = None;
    cfg.base_domain = "fleet.example.test".into();
    cfg.data_dir = c.dir.path().join("edge-data");
    cfg.tcp_port_range = PortRange {
        start: 44000,
        end: 44099,
    };
    cfg.authtokens = vec![NamedToken {
        name: "cam-42".into(),
        token: TOKEN.into(),
    }];
    let edge = start_edge(&c, cfg).await;
    let dir = c.dir.path();

    let idp = Idp::start().await;
    let seen: Seen = Arc::default();
    let device = device_service("device", seen.clone()).await;
    let telemetry = device_service("telemetry", seen.clone()).await;
    let fleet = FleetCa::new("Fleet Device CA");

    let i = idp.url();
    let dashboard = example("dashboard.yaml");
    let dashboard = fill(&dashboard, "198.51.100.0/24", "127.0.0.1/32");
    let dashboard = fill(&dashboard, "https://login.example.test", &i);
    let dashboard = fill(&dashboard, "replace-with-the-client-secret", CLIENT_SECRET);
    let devices = fill_pem(&example("devices.yaml"), &fleet.0.cert.pem());
    let api = fill(&example("api.yaml"), "https://login.example.test", &i);
    for (name, text) in [
        ("dashboard.yaml", &dashboard),
        ("devices.yaml", &devices),
        ("api.yaml", &api),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let agent_yml = example("agent.yml");
    let agent_yml = fill(
        &agent_yml,
        "authtoken: wkt_replace_with_this_devices_token",
        &format!(
            "authtoken: {TOKEN}\n  connect_cas: [{}]\n  heartbeat_interval: 1s\n  heartbeat_tolerance: 3s",
            c.ca_path.display()
        ),
    );
    let agent_yml = fill(
        &agent_yml,
        "connect_url: edge.fleet.example.test:4443",
        &format!("connect_url: {}", edge.addrs().tunnel),
    );
    let agent_yml = fill(
        &agent_yml,
        "upstream: { url: 8080 }",
        &format!("upstream: {{ url: 'http://{device}' }}"),
    );
    let agent_yml = fill(
        &agent_yml,
        "upstream: { url: 8081 }",
        &format!("upstream: {{ url: 'http://{telemetry}' }}"),
    );
    let agent = start_agent(&c, &agent_yml);
    let status = settled(&agent).await;
    assert_bound(&status, &["dashboard", "devices", "telemetry", "api"]);
    World {
        certs: c,
        _agent: agent,
        edge_https: edge.addrs().https.unwrap(),
        _edge: edge,
        idp,
        seen,
        fleet,
    }
}

impl World {
    fn client(&self) -> Client {
        Client::new(self.edge_https, &self.certs.roots)
    }

    /// Takes the device services' log.
    fn seen(&self) -> Vec<(String, String, String, String, String)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_layer_answers_at_the_edge_and_only_traffic_passing_every_layer_reaches_the_device() {
    let w = world().await;
    let _ = &w.certs;
    let dash = format!("https://dashboard.{DOMAIN}");
    let devices = format!("https://devices.{DOMAIN}");
    let api = format!("https://api.{DOMAIN}");
    let mut matrix: Vec<(&str, String)> = Vec::new();

    // --- dashboard: IP allow list, then OpenID Connect, then staff only.
    let mut outsider = w.client().at_source([127, 0, 0, 2]);
    let r = outsider.get(&format!("{dash}/reports"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.header(ERROR_HEADER), "ERR_NGROK_3203");
    matrix.push((
        "dashboard: outside the allow list",
        "403 ERR_NGROK_3203".into(),
    ));

    let mut ana = w.client();
    let r = ana.get(&format!("{dash}/reports"), &[]).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert!(
        r.header("location").starts_with(&w.idp.url()),
        "{}",
        r.header("location")
    );
    matrix.push((
        "dashboard: allowed IP, not signed in",
        "302 to the IdP".into(),
    ));
    assert!(
        w.seen().is_empty(),
        "nothing may reach the device before the sign in"
    );

    let (r, hosts) = ana.navigate(&format!("{dash}/reports")).await;
    assert_eq!(r.status, StatusCode::OK, "{} via {hosts:?}", r.text());
    assert_eq!(r.text(), "device says hello");
    matrix.push((
        "dashboard: staff account signed in",
        "200 from the device".into(),
    ));
    let seen = w.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].2, "/reports");
    assert_eq!(seen[0].3, "ana@example.com", "the identity goes upstream");

    w.idp.sign_in_as("eve@example.com.evil.test");
    let mut eve = w.client();
    let (r, _) = eve.navigate(&format!("{dash}/")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(
        r.text().contains("may not use this dashboard"),
        "{}",
        r.text()
    );
    matrix.push((
        "dashboard: other account signed in",
        "403 from the policy".into(),
    ));
    // Signed in at the IdP, but an outsider's session does not pass the allow list either.
    let mut eve_elsewhere = w.client().at_source([127, 0, 0, 2]);
    eve_elsewhere.jar = ana.jar.clone();
    let r = eve_elsewhere.get(&format!("{dash}/reports"), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    matrix.push((
        "dashboard: valid session from outside the allow list",
        "403".into(),
    ));
    assert!(w.seen().is_empty());

    // --- devices: mutual TLS with the fleet CA, then routing.
    let no_cert = w.client().send(&format!("{devices}/v1/config"), &[]).await;
    assert!(
        no_cert.is_err(),
        "no client certificate must fail the handshake: {:?}",
        no_cert.map(|r| r.status)
    );
    matrix.push(("devices: no client certificate", "handshake refused".into()));
    let stranger = FleetCa::new("Somebody Else's CA").device("cam-42");
    let wrong_ca = w
        .client()
        .with_device(&stranger)
        .send(&format!("{devices}/v1/config"), &[])
        .await;
    assert!(
        wrong_ca.is_err(),
        "a certificate from another CA must fail the handshake"
    );
    matrix.push((
        "devices: certificate from another CA",
        "handshake refused".into(),
    ));

    let cam07 = w.fleet.device("cam-07");
    let r = w
        .client()
        .with_device(&cam07)
        .get(&format!("{devices}/v1/config"), &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.text(), "device cam-07 is decommissioned");
    matrix.push((
        "devices: decommissioned device",
        "403 from the policy".into(),
    ));
    assert!(w.seen().is_empty());

    let cam42 = w.fleet.device("cam-42");
    let mut device = w.client().with_device(&cam42);
    let r = device.get(&format!("{devices}/v1/config"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "device says hello");
    let r = device
        .get(
            &format!("{devices}/v1/samples"),
            &[("x-stream-kind", "telemetry")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "telemetry says hello", "routed by the header");
    matrix.push(("devices: fleet device", "200 from the device".into()));
    matrix.push((
        "devices: fleet device, telemetry header",
        "200 from the internal telemetry endpoint".into(),
    ));
    let seen = w.seen();
    assert_eq!(
        seen.iter()
            .map(|s| (s.0.as_str(), s.2.as_str(), s.4.as_str()))
            .collect::<Vec<_>>(),
        [
            ("device", "/v1/config", "cam-42"),
            ("telemetry", "/v1/samples", "cam-42")
        ],
        "the device id from the certificate goes upstream"
    );

    // --- api: a JWT from the IdP's key set, then five requests a minute per subject.
    let mut client = w.client();
    let r = client.get(&format!("{api}/v1/state"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    matrix.push(("api: no token", "401".into()));
    for (what, token) in [
        (
            "api: token signed by another key",
            w.idp.api_token("svc-a", "fleet-api", true),
        ),
        (
            "api: token for another audience",
            w.idp.api_token("svc-a", "billing", false),
        ),
    ] {
        let bearer = format!("Bearer {token}");
        let r = client
            .get(&format!("{api}/v1/state"), &[("authorization", &bearer)])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text());
        matrix.push((what, "401".into()));
    }
    assert!(w.seen().is_empty());

    let a = format!("Bearer {}", w.idp.api_token("svc-a", "fleet-api", false));
    for i in 0..5 {
        let r = client
            .get(&format!("{api}/v1/state"), &[("authorization", &a)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "request {i}: {}", r.text());
    }
    let r = client
        .get(&format!("{api}/v1/state"), &[("authorization", &a)])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    assert!(
        !r.header("retry-after").is_empty(),
        "429 carries retry-after"
    );
    matrix.push((
        "api: valid token, requests 1-5",
        "200 from the device".into(),
    ));
    matrix.push((
        "api: valid token, request 6 within the minute",
        "429 with retry-after".into(),
    ));
    let b = format!("Bearer {}", w.idp.api_token("svc-b", "fleet-api", false));
    let r = client
        .get(&format!("{api}/v1/state"), &[("authorization", &b)])
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "another subject has its own bucket"
    );
    matrix.push(("api: another subject", "200 from the device".into()));
    let seen = w.seen();
    assert_eq!(seen.len(), 6, "five of svc-a and one of svc-b: {seen:?}");
    assert!(seen.iter().all(|s| s.0 == "device" && s.2 == "/v1/state"));

    eprintln!("layered example: {} cases", matrix.len());
    for (case, outcome) in &matrix {
        eprintln!("  {case:<55} {outcome}");
    }
}
