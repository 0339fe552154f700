//! Compiled general expressions (`eval::general`, names resolved at compile time) and the
//! reference interpreter (names resolved on every evaluation) give the same value or the same
//! error, message included: on the cel-spec conformance corpus (its bindings served as view
//! variables) and on the request expressions of the engine's tests over several requests.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value as Json;
use wicket_engine::Value;
use wicket_engine::eval::{eval_value, general};
use wicket_engine::program::view::WithVariables;
use wicket_engine::program::{OwnedRequest, Scratch};
use wicket_engine::value::{CelType, Key, MapValue};

/// A request whose [`RequestView::other`] serves extra variables.
type View = WithVariables<OwnedRequest>;

/// Whether the two paths agree on `src` over `view`: `Ok(false)` when the expression is not
/// compiled (left to the interpreter) or does not parse.
fn agree(src: &str, view: &View) -> Result<bool, String> {
    let Ok(mut expr) = wicket_grammar::parse(src) else {
        return Ok(false);
    };
    // The ngrok request helpers, rewritten as the policy compiler does.
    wicket_engine::compile::expr::desugar(&mut expr);
    let Ok(compiled) = general::compile(&expr) else {
        return Ok(false);
    };
    let reference = eval_value(&expr, view, &Scratch::new());
    let ours = general::eval(&compiled, view, &Scratch::new());
    let (reference, ours) = (format!("{reference:?}"), format!("{ours:?}"));
    if reference == ours {
        Ok(true)
    } else {
        Err(format!("`{src}`: reference {reference}, compiled {ours}"))
    }
}

/// A typed corpus value (the conformance harness's encoding).
fn decode(json: &Json) -> Option<Value> {
    let (kind, v) = json.as_object()?.iter().next()?;
    Some(match kind.as_str() {
        "null" => Value::Null,
        "bool" => Value::Bool(v.as_bool()?),
        "int64" => Value::Int(v.as_i64()?),
        "uint64" => Value::Uint(v.as_u64()?),
        "double" => Value::Double(match v.as_str() {
            Some("NaN") => f64::NAN,
            Some("Infinity") => f64::INFINITY,
            Some("-Infinity") => f64::NEG_INFINITY,
            Some(_) => return None,
            None => v.as_f64()?,
        }),
        "string" => Value::string(v.as_str()?),
        "bytes_b64" => Value::bytes(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?,
        ),
        "list" => Value::list(v.as_array()?.iter().map(decode).collect::<Option<_>>()?),
        "map" => {
            let mut map = MapValue::new();
            for entry in v.as_array()? {
                let [k, v] = entry.as_array()?.as_slice() else {
                    return None;
                };
                map.insert(Key::from_value(&decode(k)?)?, decode(v)?).ok()?;
            }
            Value::map(map)
        }
        "type" => Value::Type(CelType::from_name(v.as_str()?)?),
        _ => return None,
    })
}

#[test]
fn conformance_corpus_agrees() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cel-conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the vendored corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut compared, mut mismatches) = (0usize, Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable corpus file");
        let cases: Vec<Json> = serde_json::from_str(&text).expect("corpus JSON");
        for case in cases {
            let Some(src) = case["expr"].as_str() else {
                continue;
            };
            // No container (rule conditions have none); nothing non-deterministic.
            if case["container"].as_str().is_some_and(|c| !c.is_empty())
                || src.contains("rand.")
                || src.contains("time.now")
            {
                continue;
            }
            let mut vars = HashMap::new();
            let bindings = case["bindings"].as_object().into_iter().flatten();
            let decoded: Option<Vec<_>> = bindings
                .map(|(name, value)| decode(value).map(|v| (name.clone(), v)))
                .collect();
            let Some(decoded) = decoded else {
                continue;
            };
            vars.extend(decoded);
            let view = View {
                req: OwnedRequest::default(),
                vars,
            };
            match agree(src, &view) {
                Ok(true) => compared += 1,
                Ok(false) => {}
                Err(m) => mismatches.push(m),
            }
        }
    }
    println!("conformance: {compared} expressions agree");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared > 1_000, "only {compared} expressions compared");
}

/// Request expressions of the engine's tests and examples (rule conditions, `set-vars` values,
/// bucket keys), including the ones the compiler specialises (here compiled generally).
const REQUEST_EXPRESSIONS: &[&str] = &[
    "req.method == 'GET'",
    "req.method != 'TRACE' && req.url.path.endsWith('.x1')",
    "req.url.host in ['a.test', 'b.test']",
    "req.host == 'a.test'",
    "req.url.path.startsWith('/a')",
    "req.url.path.matches('^/a/[0-9]+$')",
    "req.url.path.matches('(')",
    "size(req.url.path) > 3",
    "req.url.path.size()",
    "req.url == 'https://a.test/a'",
    "req.url.authority",
    "req.url.uri",
    "req.url.query == 'q=1'",
    "req.url.port == 443",
    "req.url.scheme",
    "req.version",
    "req.user_agent",
    "req.headers",
    "req.headers['x-a'][0] == '1'",
    "req.headers['x-missing']",
    "'x-a' in req.headers",
    "hasReqHeader('x-a')",
    "getReqHeader('X-A')",
    "getReqHeader('x-a').exists(v, v == '2')",
    "req.headers.exists(k, k.startsWith('x-'))",
    "req.headers.map(k, k.upperAscii())",
    "req.headers.all(k, v, size(v) > 0)",
    "getQueryParam('q') == ['1']",
    "req.url.query_params['q'][0]",
    "hasQueryParam('q')",
    "req.cookies",
    "getReqCookie('session').value",
    "hasReqCookie('session')",
    "req.cookies.session[0].name",
    "conn.client_ip",
    "conn.client_ip == '203.0.113.7'",
    "inCidrRange(conn.client_ip, '10.0.0.0/8')",
    "inCidrRanges(conn.client_ip, ['10.0.0.0/8', '203.0.113.0/24'])",
    "ip(conn.client_ip).isLoopback()",
    "conn.client_port > 0",
    "conn.server_ip",
    "conn.server_port",
    "conn.tls.sni",
    "conn.tls.version",
    "conn.geo.country_code == 'US'",
    "conn.client_ip.geo.location.country_code",
    "res.status_code >= 500",
    "res.headers",
    "vars.v == 'set'",
    "has(vars.v)",
    "vars",
    "actions.ngrok.url_rewrite.url != ''",
    "actions.ngrok.restrict_ips.action",
    "1 / 0 == 1",
    "1 + 1 == 2",
    "req.method + ' ' + req.url.path",
    "string(conn.client_port) + ':' + req.method",
    "req.url.path.split('/').size()",
    "req.url.path.lower()",
    "req.url.host.reverse()",
    "[req.method, req.url.host].join(',')",
    "[3, 1, 2].sortBy(x, -x)",
    "[1, 2].reverse()",
    "cel.bind(p, req.url.path, p + p)",
    "req.url.path.sha256()",
    "hash.md5(req.url.path)",
    "base64.encode(bytes(req.url.path))",
    "json.encode({'m': req.method})",
    "url.parse(req.url).host",
    "math.greatest(1, size(req.url.path))",
    "optional.of(req.method).orValue('x')",
    "req.headers[?'x-a'].hasValue()",
    "{'a': req.method}.?a.optMap(m, m + '!')",
    "timestamp('2024-01-01T00:00:00Z').getHours()",
    "getHours(timestamp('2024-01-01T00:00:00Z'))",
    "duration('1h').getMinutes()",
    "type(req.method) == string",
    "int",
    "google.protobuf.Timestamp",
    "nope",
    "nope.x(1)",
    "req.nope",
    "req.method.nope",
    "req.method.size(1)",
    "base64.nope(1)",
    "Msg{a: 1}",
    "[1, 2].map(x, [x, x * 2]).filter(l, l[0] > 1)",
    "{'a': 1, 'b': 2}.transformMap(k, v, v > 1, v * 10)",
    "[1, 2].exists_one(i, i > 1)",
    "[0, 2].all(x, 4 / x > 1)",
    "[2, 0].exists(x, 4 / x == 2)",
    "'a' && true",
    "true ? req.method : 1 / 0",
];

fn requests() -> Vec<View> {
    let mut plain = OwnedRequest::parse("GET https://a.test/a").expect("valid request");
    plain.client_ip = Some("203.0.113.7".parse().expect("valid address"));
    plain.client_port = Some(40_000);
    let mut rich = OwnedRequest::parse("POST http://b.test:8080/a/22/x?q=1&q=2&r=%20x")
        .expect("valid request")
        .with_header("x-a", "1")
        .with_header("x-a", "2")
        .with_header("cookie", "session=abc; other=1")
        .with_header("user-agent", "BadBot/1.0");
    rich.client_ip = Some("10.1.2.3".parse().expect("valid address"));
    rich.sni = Some("b.test".to_owned());
    rich.tls_version = Some("TLSv1.3".to_owned());
    rich.response_status = Some(503);
    rich.response_headers = vec![("content-type".to_owned(), "text/plain".to_owned())];
    let mut geo = HashMap::new();
    geo.insert("conn.geo.country_code".to_owned(), Value::string("US"));
    vec![
        View {
            req: plain,
            vars: HashMap::new(),
        },
        View {
            req: rich,
            vars: geo,
        },
        View {
            req: OwnedRequest::default(),
            vars: HashMap::new(),
        },
    ]
}

#[test]
fn request_expressions_agree() {
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for view in requests() {
        for src in REQUEST_EXPRESSIONS {
            match agree(src, &view) {
                Ok(true) => compared += 1,
                Ok(false) => mismatches.push(format!("`{src}` was not compiled")),
                Err(m) => mismatches.push(m),
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(compared, 3 * REQUEST_EXPRESSIONS.len());
}

#[test]
fn cel_block_is_left_to_the_interpreter() {
    let expr = wicket_grammar::parse("cel.block([1], cel.index(0) + 1)").expect("parses");
    assert!(general::compile(&expr).is_err());
}
