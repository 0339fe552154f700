//! ngrok's Traffic Policy functions that need no request (compatibility spec §2.2): CIDR
//! tests, `basic_auth.encode`, digests, JSON, query strings, URL escaping and parsing, Unicode
//! case mapping, base64 text helpers, validity tests and `rand.*`.
//!
//! ngrok runs on Go, so these mirror Go's standard library: `net/url` escaping and parsing,
//! `encoding/json` output (map keys sorted, `<`, `>`, `&` escaped, numbers decoded as doubles),
//! digests written big-endian. Decisions where ngrok's docs say nothing:
//! - digest functions take a string or bytes; the optional format is `"hex"` (default) or
//!   `"base64"` (standard, padded); CRC-32 is IEEE, CRC-64 is ISO (Go's `crc64.ISO`),
//!   xxHash64 uses seed 0.
//! - `escapeUrl`/`url.escape` is Go's `url.QueryEscape` (space becomes `+`; `/`, `;` and `$`
//!   are escaped), `unescapeUrl`/`url.unescape` is `url.QueryUnescape`.
//! - `parseUrl`/`url.parse` give a map with the keys `scheme`, `opaque`, `username`,
//!   `password`, `host`, `hostname`, `port`, `path`, `raw_query`, `query` (a map of lists, as
//!   `decodeQueryString` gives; empty when the raw query does not parse) and `fragment`, all
//!   strings except `query`.
//! - `isURL` is true when the text parses and has both a scheme and a host.
//! - `inCidrRange` errors on an invalid IP address (only an invalid CIDR is documented to give
//!   `false`); IPv4-mapped IPv6 addresses match IPv4 ranges, as in Go's `net.IPNet`.
//! - `rand.int(min, max)` is inclusive at both ends (the docs' examples index a list of three
//!   with `rand.int(0, 2)`); `rand.int()` is `rand.int(0, 1)`. The `rand.*` functions are the
//!   only non-deterministic functions of the interpreter.
//! - `json.encode` writes timestamps as RFC 3339 strings, durations as CEL duration strings
//!   (`"1.5s"`), bytes as base64 strings, IP and CIDR values as their text, `optional.none()`
//!   as `null`; NaN and infinities are errors.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use sha2::Digest as _;

use super::{
    CallResult, MAX_OUTPUT_BYTES, encoders, invalid, map_value, network, no_overload, strings,
    too_large,
};
use crate::error::EvalError;
use crate::value::{Key, Value};

super::function_ids! {
    /// The digest algorithms (global `hash.<name>` and member `<name>()`).
    pub(crate) enum Digest {
        Crc32 = "crc32",
        Crc64 = "crc64",
        Md5 = "md5",
        Sha1 = "sha1",
        Sha256 = "sha256",
        Sha512 = "sha512",
        Xxhash64 = "xxhash64",
    }
}

super::function_ids! {
    /// The global functions of the library.
    pub(crate) enum Global {
        HashCrc32 = "hash.crc32",
        HashCrc64 = "hash.crc64",
        HashMd5 = "hash.md5",
        HashSha1 = "hash.sha1",
        HashSha256 = "hash.sha256",
        HashSha512 = "hash.sha512",
        HashXxhash64 = "hash.xxhash64",
        InCidrRange = "inCidrRange",
        InCidrRanges = "inCidrRanges",
        BasicAuthEncode = "basic_auth.encode",
        JsonDecode = "json.decode",
        JsonEncode = "json.encode",
        QueryStringDecode = "queryString.decode",
        QueryStringEncode = "queryString.encode",
        UrlEscape = "url.escape",
        UrlUnescape = "url.unescape",
        UrlParse = "url.parse",
        RandDouble = "rand.double",
        RandInt = "rand.int",
    }
}

super::function_ids! {
    /// The member functions of the library.
    pub(crate) enum Member {
        Crc32 = "crc32",
        Crc64 = "crc64",
        Md5 = "md5",
        Sha1 = "sha1",
        Sha256 = "sha256",
        Sha512 = "sha512",
        Xxhash64 = "xxhash64",
        EncodeJson = "encodeJson",
        DecodeJson = "decodeJson",
        IsJson = "isJson",
        EncodeQueryString = "encodeQueryString",
        DecodeQueryString = "decodeQueryString",
        IsQueryString = "isQueryString",
        Lower = "lower",
        Upper = "upper",
        EncodeBase64 = "encodeBase64",
        DecodeBase64 = "decodeBase64",
        EscapeUrl = "escapeUrl",
        UnescapeUrl = "unescapeUrl",
        ParseUrl = "parseUrl",
        IsUrl = "isURL",
        IsPrivateIp = "isPrivateIp",
    }
}

impl Global {
    fn digest(self) -> Option<Digest> {
        Some(match self {
            Global::HashCrc32 => Digest::Crc32,
            Global::HashCrc64 => Digest::Crc64,
            Global::HashMd5 => Digest::Md5,
            Global::HashSha1 => Digest::Sha1,
            Global::HashSha256 => Digest::Sha256,
            Global::HashSha512 => Digest::Sha512,
            Global::HashXxhash64 => Digest::Xxhash64,
            _ => return None,
        })
    }
}

impl Member {
    fn digest(self) -> Option<Digest> {
        Some(match self {
            Member::Crc32 => Digest::Crc32,
            Member::Crc64 => Digest::Crc64,
            Member::Md5 => Digest::Md5,
            Member::Sha1 => Digest::Sha1,
            Member::Sha256 => Digest::Sha256,
            Member::Sha512 => Digest::Sha512,
            Member::Xxhash64 => Digest::Xxhash64,
            _ => return None,
        })
    }
}

/// Global functions, by name.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    Global::from_name(name).and_then(|f| call_global(f, args))
}

/// Calls a global function.
pub(super) fn call_global(f: Global, args: &[Value]) -> CallResult {
    if let Some(digest) = f.digest() {
        return Some(match args {
            [input] => hash(digest, input, None),
            [input, format] => hash(digest, input, Some(format)),
            _ => Err(no_overload(f.name())),
        });
    }
    let result = match (f, args) {
        (Global::InCidrRange, [ip, cidr]) => in_cidr_range(ip, cidr),
        (Global::InCidrRanges, [ip, Value::List(cidrs)]) => in_cidr_ranges(ip, cidrs),
        (Global::BasicAuthEncode, [Value::String(user), Value::String(password)]) => {
            Ok(Value::string(format!(
                "Basic {}",
                encoders::encode(format!("{user}:{password}").as_bytes())
            )))
        }
        (Global::JsonDecode, [Value::String(text)]) => json_decode(text),
        (Global::JsonEncode, [value]) => json_encode(value).map(Value::string),
        (Global::QueryStringDecode, [Value::String(text)]) => parse_query(text),
        (Global::QueryStringEncode, [value]) => encode_query(value).map(Value::string),
        (Global::UrlEscape, [Value::String(text)]) => Ok(Value::string(query_escape(text))),
        (Global::UrlUnescape, [Value::String(text)]) => query_unescape(text).map(Value::string),
        (Global::UrlParse, [Value::String(text)]) => parse_url(text).map(|u| u.into_value()),
        (Global::RandDouble, []) => Ok(Value::Double(rand::random::<f64>())),
        (Global::RandInt, []) => random_int(0, 1),
        (Global::RandInt, [Value::Int(min), Value::Int(max)]) => random_int(*min, *max),
        _ => Err(no_overload(f.name())),
    };
    Some(result)
}

/// Member functions, by name.
pub(super) fn member(name: &str, target: &Value, args: &[Value]) -> CallResult {
    Member::from_name(name).and_then(|f| call_member(f, target, args))
}

/// Calls a member function.
pub(super) fn call_member(f: Member, target: &Value, args: &[Value]) -> CallResult {
    if let Some(digest) = f.digest() {
        return Some(match args {
            [] => hash(digest, target, None),
            [format] => hash(digest, target, Some(format)),
            _ => Err(no_overload(f.name())),
        });
    }
    if f == Member::EncodeJson || f == Member::EncodeQueryString {
        if !args.is_empty() {
            return Some(Err(no_overload(f.name())));
        }
        return Some(if f == Member::EncodeJson {
            json_encode(target).map(Value::string)
        } else {
            encode_query(target).map(Value::string)
        });
    }
    let (Value::String(s), []) = (target, args) else {
        return Some(Err(no_overload(f.name())));
    };
    let s: &str = s;
    Some(match f {
        Member::DecodeJson => json_decode(s),
        Member::IsJson => Ok(Value::Bool(
            serde_json::from_str::<serde_json::Value>(s).is_ok(),
        )),
        Member::DecodeQueryString => parse_query(s),
        Member::IsQueryString => Ok(Value::Bool(parse_query(s).is_ok())),
        Member::Lower => Ok(Value::string(s.to_lowercase())),
        Member::Upper => Ok(Value::string(s.to_uppercase())),
        Member::EncodeBase64 => Ok(Value::string(encoders::encode(s.as_bytes()))),
        Member::DecodeBase64 => encoders::decode(s).and_then(|bytes| {
            String::from_utf8(bytes)
                .map(Value::string)
                .map_err(|_| invalid("decodeBase64: the decoded bytes are not valid UTF-8"))
        }),
        Member::EscapeUrl => Ok(Value::string(query_escape(s))),
        Member::UnescapeUrl => query_unescape(s).map(Value::string),
        Member::ParseUrl => parse_url(s).map(|u| u.into_value()),
        Member::IsUrl => Ok(Value::Bool(
            parse_url(s).is_ok_and(|u| !u.scheme.is_empty() && !u.host.is_empty()),
        )),
        Member::IsPrivateIp => Ok(Value::Bool(matches!(
            s.parse::<IpAddr>(),
            Ok(IpAddr::V4(v4)) if network::is_rfc1918(&v4)
        ))),
        _ => Err(no_overload(f.name())),
    })
}

// ---------------------------------------------------------------------------------------------
// CIDR ranges
// ---------------------------------------------------------------------------------------------

/// An IP address argument: a string (Go's lenient `net.ParseIP`) or a `net.IP` value. IPv4-mapped
/// IPv6 addresses become IPv4.
fn ip_arg(function: &str, v: &Value) -> Result<IpAddr, EvalError> {
    let ip = match v {
        Value::String(s) => s
            .parse::<IpAddr>()
            .map_err(|_| invalid(format!("{function}: invalid IP address `{s}`")))?,
        Value::Ip(ip) => *ip,
        _ => return Err(no_overload(function)),
    };
    Ok(ip.to_canonical())
}

/// A CIDR argument, `None` when it is not a valid CIDR. An IPv4-mapped IPv6 range of prefix 96
/// or more becomes the IPv4 range it maps, as Go's `net.IPNet` treats it.
fn cidr_arg(v: &Value) -> Option<IpNet> {
    let net = match v {
        Value::String(s) => s.parse::<IpNet>().ok()?,
        Value::Cidr(net) => *net,
        _ => return None,
    };
    match net {
        IpNet::V6(v6) if net.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), net.prefix_len() - 96).ok(),
            None => Some(net),
        },
        _ => Some(net),
    }
}

fn in_cidr_range(ip: &Value, cidr: &Value) -> Result<Value, EvalError> {
    let ip = ip_arg("inCidrRange", ip)?;
    if !matches!(cidr, Value::String(_) | Value::Cidr(_)) {
        return Err(no_overload("inCidrRange"));
    }
    Ok(Value::Bool(
        cidr_arg(cidr).is_some_and(|net| net.contains(&ip)),
    ))
}

fn in_cidr_ranges(ip: &Value, cidrs: &[Value]) -> Result<Value, EvalError> {
    let ip = ip_arg("inCidrRanges", ip)?;
    Ok(Value::Bool(cidrs.iter().any(|cidr| {
        cidr_arg(cidr).is_some_and(|net| net.contains(&ip))
    })))
}

// ---------------------------------------------------------------------------------------------
// Digests
// ---------------------------------------------------------------------------------------------

/// The digest `algorithm` of a string or bytes, as hex (default) or base64 text.
fn hash(digest: Digest, input: &Value, format: Option<&Value>) -> Result<Value, EvalError> {
    let algorithm = digest.name();
    let bytes: &[u8] = match input {
        Value::String(s) => s.as_bytes(),
        Value::Bytes(b) => b,
        _ => return Err(no_overload(algorithm)),
    };
    let base64 = match format {
        None => false,
        Some(Value::String(f)) if &**f == "hex" => false,
        Some(Value::String(f)) if &**f == "base64" => true,
        Some(Value::String(f)) => {
            return Err(invalid(format!(
                "{algorithm}: unknown output format `{f}` (expected `hex` or `base64`)"
            )));
        }
        Some(_) => return Err(no_overload(algorithm)),
    };
    let bytes_out: Vec<u8> = match digest {
        Digest::Crc32 => crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC)
            .checksum(bytes)
            .to_be_bytes()
            .to_vec(),
        Digest::Crc64 => crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO)
            .checksum(bytes)
            .to_be_bytes()
            .to_vec(),
        Digest::Md5 => md5::Md5::digest(bytes).to_vec(),
        Digest::Sha1 => sha1::Sha1::digest(bytes).to_vec(),
        Digest::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
        Digest::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
        Digest::Xxhash64 => twox_hash::XxHash64::oneshot(0, bytes)
            .to_be_bytes()
            .to_vec(),
    };
    Ok(Value::string(if base64 {
        encoders::encode(&bytes_out)
    } else {
        hex(&bytes_out)
    }))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// Parse JSON text into CEL values (numbers become doubles, as Go decodes them).
fn json_decode(text: &str) -> Result<Value, EvalError> {
    let parsed: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("json.decode: {e}")))?;
    Ok(from_json(parsed))
}

fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::string(s),
        serde_json::Value::Array(items) => Value::list(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => map_value(
            entries
                .into_iter()
                .map(|(k, v)| (Key::String(k.into()), from_json(v))),
        ),
    }
}

/// Serialise a CEL value as Go's `encoding/json` would.
fn json_encode(v: &Value) -> Result<String, EvalError> {
    let mut out = String::new();
    write_json(&mut out, v)?;
    Ok(out)
}

fn write_json(out: &mut String, v: &Value) -> Result<(), EvalError> {
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(too_large("json.encode"));
    }
    match v {
        Value::Null | Value::Optional(None) => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Double(d) => write_json_number(out, *d)?,
        Value::String(s) => write_json_string(out, s),
        Value::Bytes(b) => write_json_string(out, &encoders::encode(b)),
        Value::Timestamp(t) => write_json_string(out, &strings::rfc3339_nano(*t)),
        Value::Duration(_) => {
            let text = strings::format_string(v).map_err(|e| e.into_error("json.encode", ""))?;
            write_json_string(out, &text);
        }
        Value::Type(t) => write_json_string(out, t.name()),
        Value::Ip(ip) => write_json_string(out, &network::ip_to_string(ip)),
        Value::Cidr(net) => write_json_string(out, &network::cidr_to_string(net)),
        Value::Optional(Some(inner)) => write_json(out, inner)?,
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item)?;
            }
            out.push(']');
        }
        Value::Map(map) => {
            let mut entries: Vec<(String, &Value)> =
                map.entries.iter().map(|(k, v)| (key_text(k), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, &key);
                out.push(':');
                write_json(out, value)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// A map key as text (JSON object keys and query-string names).
fn key_text(key: &Key) -> String {
    match key {
        Key::String(s) => s.to_string(),
        other => strings::format_string(&other.to_value()).unwrap_or_default(),
    }
}

/// Go's JSON number format: shortest round-trip digits, exponent form below 1e-6 and from
/// 1e21 on (`1e+21`, `1e-7`).
fn write_json_number(out: &mut String, d: f64) -> Result<(), EvalError> {
    if !d.is_finite() {
        return Err(invalid(format!("json.encode: unsupported value: {d}")));
    }
    let abs = d.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let text = format!("{d:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        match exponent.strip_prefix('-') {
            Some(digits) => {
                let _ = write!(out, "{mantissa}e-{digits}");
            }
            None => {
                let _ = write!(out, "{mantissa}e+{exponent:0>2}");
            }
        }
    } else {
        let _ = write!(out, "{d}");
    }
    Ok(())
}

/// A JSON string with Go's escaping (HTML-sensitive characters and U+2028/U+2029 as `\u`).
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1F}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Query strings and URL escaping (Go's net/url)
// ---------------------------------------------------------------------------------------------

/// Go's `url.ParseQuery`: a map from each name to the list of its values, in order. Pairs are
/// separated by `&`; a `;` is an error, as is a bad escape.
fn parse_query(text: &str) -> Result<Value, EvalError> {
    let mut names: Vec<String> = Vec::new();
    let mut values: Vec<Vec<Value>> = Vec::new();
    for pair in text.split('&') {
        if pair.is_empty() {
            continue;
        }
        if pair.contains(';') {
            return Err(invalid("invalid semicolon separator in query"));
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = query_unescape(name)?;
        let value = Value::string(query_unescape(value)?);
        match names.iter().position(|n| *n == name) {
            Some(i) => values[i].push(value),
            None => {
                names.push(name);
                values.push(vec![value]);
            }
        }
    }
    Ok(map_value(names.into_iter().zip(values).map(
        |(name, values)| (Key::String(name.into()), Value::list(values)),
    )))
}

/// Go's `url.Values.Encode`: names sorted, each value `name=value` with query escaping. Values
/// may be strings, lists of strings, or other scalars (written as `%s` would).
fn encode_query(v: &Value) -> Result<String, EvalError> {
    let Value::Map(map) = v else {
        return Err(no_overload("encodeQueryString"));
    };
    let mut entries: Vec<(String, &Value)> =
        map.entries.iter().map(|(k, v)| (key_text(k), v)).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (name, value) in entries {
        let items: &[Value] = match value {
            Value::List(items) => items,
            other => std::slice::from_ref(other),
        };
        for item in items {
            let text = match item {
                Value::String(s) => s.to_string(),
                Value::List(_) | Value::Map(_) => {
                    return Err(invalid(format!(
                        "encodeQueryString: value of `{name}` is a {}, not a string",
                        item.type_name()
                    )));
                }
                other => strings::format_string(other)
                    .map_err(|e| e.into_error("encodeQueryString", ""))?,
            };
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&query_escape(&name));
            out.push('=');
            out.push_str(&query_escape(&text));
            if out.len() > MAX_OUTPUT_BYTES {
                return Err(too_large("encodeQueryString"));
            }
        }
    }
    Ok(out)
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, everything else `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte.
fn query_unescape(s: &str) -> Result<String, EvalError> {
    percent_decode(s, true)
}

/// Decode `%XX` escapes (and `+` as space when `plus_is_space`); the result must be UTF-8.
fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, EvalError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex_digit = |j: usize| bytes.get(j).and_then(|b| char::from(*b).to_digit(16));
                let (Some(hi), Some(lo)) = (hex_digit(i + 1), hex_digit(i + 2)) else {
                    let end = s.len().min(i + 3);
                    let escape = s.get(i..end).unwrap_or("%");
                    return Err(invalid(format!("invalid URL escape `{escape}`")));
                };
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(0));
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| invalid("the unescaped text is not valid UTF-8"))
}

// ---------------------------------------------------------------------------------------------
// URL parsing (Go's url.Parse)
// ---------------------------------------------------------------------------------------------

/// The parts of a URL, as Go's `url.URL` holds them.
#[derive(Debug, Default)]
struct ParsedUrl {
    scheme: String,
    opaque: String,
    username: String,
    password: String,
    host: String,
    path: String,
    raw_query: String,
    fragment: String,
}

impl ParsedUrl {
    /// Go's `URL.Hostname()` and `URL.Port()`.
    fn hostname_and_port(&self) -> (&str, &str) {
        let (host, port) = match self.host.rfind(':') {
            Some(i) if valid_optional_port(&self.host[i..]) => {
                (&self.host[..i], &self.host[i + 1..])
            }
            _ => (self.host.as_str(), ""),
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        (host, port)
    }

    fn into_value(self) -> Value {
        let (hostname, port) = self.hostname_and_port();
        let (hostname, port) = (hostname.to_owned(), port.to_owned());
        let query = parse_query(&self.raw_query).unwrap_or_else(|_| map_value([]));
        let field = |name: &str, value: String| (Key::String(name.into()), Value::string(value));
        map_value([
            field("scheme", self.scheme),
            field("opaque", self.opaque),
            field("username", self.username),
            field("password", self.password),
            field("host", self.host),
            field("hostname", hostname),
            field("port", port),
            field("path", self.path),
            field("raw_query", self.raw_query),
            (Key::String("query".into()), query),
            field("fragment", self.fragment),
        ])
    }
}

/// Go's `url.Parse`.
fn parse_url(raw: &str) -> Result<ParsedUrl, EvalError> {
    let error = |message: &str| invalid(format!("parse `{raw}`: {message}"));
    let (rest, fragment) = match raw.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (raw, None),
    };
    let mut url = ParsedUrl::default();
    if let Some(fragment) = fragment {
        url.fragment = percent_decode(fragment, false)?;
    }
    if rest.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(error("net/url: invalid control character in URL"));
    }
    if rest.is_empty() {
        return Ok(url);
    }
    if rest == "*" {
        url.path = "*".to_owned();
        return Ok(url);
    }
    let (scheme, mut rest) = split_scheme(rest).map_err(error)?;
    url.scheme = scheme.to_ascii_lowercase();
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some((before, query)) = rest.split_once('?') {
        url.raw_query = query.to_owned();
        rest = before;
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_owned();
            return Ok(url);
        }
        let first_segment = rest.split('/').next().unwrap_or("");
        if first_segment.contains(':') {
            return Err(error("first path segment in URL cannot contain colon"));
        }
    }
    if rest.starts_with("//") && (!url.scheme.is_empty() || !rest.starts_with("///")) {
        let authority_and_path = &rest[2..];
        let (authority, path) = match authority_and_path.find('/') {
            Some(i) => authority_and_path.split_at(i),
            None => (authority_and_path, ""),
        };
        parse_authority(&mut url, authority).map_err(|m| error(&m))?;
        rest = path;
    }
    url.path = percent_decode(rest, false)?;
    Ok(url)
}

/// Split a leading `scheme:` off (Go's `getScheme`).
fn split_scheme(raw: &str) -> Result<(&str, &str), &'static str> {
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme"),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseAuthority`: `[userinfo@]host[:port]`.
fn parse_authority(url: &mut ParsedUrl, authority: &str) -> Result<(), String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if let Some(bracketed) = host.strip_prefix('[') {
        let Some(close) = bracketed.rfind(']') else {
            return Err("missing ']' in host".to_owned());
        };
        if !valid_optional_port(&bracketed[close + 1..]) {
            return Err(format!(
                "invalid port `{}` after host",
                &bracketed[close + 1..]
            ));
        }
    } else if let Some(i) = host.rfind(':') {
        if !valid_optional_port(&host[i..]) {
            return Err(format!("invalid port `{}` after host", &host[i..]));
        }
    }
    url.host = percent_decode(host, false).map_err(|e| e.to_string())?;
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        url.username = percent_decode(user, false).map_err(|e| e.to_string())?;
        url.password = percent_decode(password, false).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `""` or `:` followed by digits.
fn valid_optional_port(port: &str) -> bool {
    port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

// ---------------------------------------------------------------------------------------------
// rand
// ---------------------------------------------------------------------------------------------

/// A uniformly random int in `min..=max`.
fn random_int(min: i64, max: i64) -> Result<Value, EvalError> {
    use rand::Rng as _;
    if min > max {
        return Err(invalid(format!(
            "rand.int: min ({min}) must not be larger than max ({max})"
        )));
    }
    Ok(Value::Int(rand::thread_rng().gen_range(min..=max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::ext::{call, values_equal};
    use std::sync::Arc;

    fn s(v: &str) -> Value {
        Value::string(v)
    }

    fn g(name: &str, args: &[Value]) -> Result<Value, EvalError> {
        call(name, None, args).expect("known function")
    }

    fn m(name: &str, target: &Value, args: &[Value]) -> Result<Value, EvalError> {
        call(name, Some(target), args).expect("known function")
    }

    fn text(r: Result<Value, EvalError>) -> String {
        match r {
            Ok(Value::String(s)) => s.to_string(),
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn boolean(r: Result<Value, EvalError>) -> bool {
        match r {
            Ok(Value::Bool(b)) => b,
            other => panic!("expected a bool, got {other:?}"),
        }
    }

    fn get<'a>(map: &'a Value, key: &str) -> &'a Value {
        let Value::Map(map) = map else {
            panic!("expected a map, got {map:?}")
        };
        map.get_key(&Key::String(key.into())).expect("key present")
    }

    #[test]
    fn cidr_ranges() {
        assert!(boolean(g("inCidrRange", &[s("10.1.2.3"), s("10.0.0.0/8")])));
        assert!(!boolean(g(
            "inCidrRange",
            &[s("11.1.2.3"), s("10.0.0.0/8")]
        )));
        assert!(!boolean(g(
            "inCidrRange",
            &[s("10.1.2.3"), s("not a cidr")]
        )));
        assert!(boolean(g(
            "inCidrRange",
            &[s("::ffff:10.1.2.3"), s("10.0.0.0/8")]
        )));
        assert!(boolean(g(
            "inCidrRange",
            &[s("2001:db8::1"), s("2001:db8::/32")]
        )));
        assert!(g("inCidrRange", &[s("bogus"), s("10.0.0.0/8")]).is_err());
        let ranges = Value::list(vec![s("bad"), s("192.168.0.0/16"), Value::Int(3)]);
        assert!(boolean(g(
            "inCidrRanges",
            &[s("192.168.4.4"), ranges.clone()]
        )));
        assert!(!boolean(g("inCidrRanges", &[s("8.8.8.8"), ranges])));
    }

    #[test]
    fn basic_auth() {
        assert_eq!(
            text(g("basic_auth.encode", &[s("user"), s("pass")])),
            "Basic dXNlcjpwYXNz"
        );
    }

    #[test]
    fn digests_match_known_vectors() {
        let cases = [
            ("crc32", "3610a686"),
            ("crc64", "3c3eeee2d8100000"),
            ("md5", "5d41402abc4b2a76b9719d911017c592"),
            ("sha1", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
            (
                "sha256",
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            ),
            ("xxhash64", "26c7827d889f6da3"),
        ];
        for (algorithm, expected) in cases {
            assert_eq!(
                text(m(algorithm, &s("hello"), &[])),
                expected,
                "{algorithm}"
            );
            assert_eq!(
                text(g(&format!("hash.{algorithm}"), &[s("hello"), s("hex")])),
                expected,
                "{algorithm}"
            );
        }
        assert_eq!(text(m("sha512", &s(""), &[])).len(), 128);
        assert_eq!(
            text(m("md5", &s("hello"), &[s("base64")])),
            "XUFAKrxLKna5cZ2REBfFkg=="
        );
        assert!(m("md5", &s("hello"), &[s("binary")]).is_err());
        assert!(matches!(
            m("md5", &Value::Int(1), &[]),
            Err(EvalError::NoMatchingOverload { .. })
        ));
    }

    #[test]
    fn json_round_trip() {
        let decoded = g("json.decode", &[s(r#"{"b":[1,true,null],"a":"x"}"#)]).unwrap();
        let Value::List(items) = get(&decoded, "b") else {
            panic!("expected a list")
        };
        assert!(matches!(items[0], Value::Double(d) if d == 1.0));
        assert_eq!(
            text(g("json.encode", &[decoded])),
            r#"{"a":"x","b":[1,true,null]}"#
        );
        assert!(g("json.decode", &[s("{")]).is_err());
        assert!(boolean(m("isJson", &s("[1, 2]"), &[])));
        assert!(!boolean(m("isJson", &s("[1, 2"), &[])));
        let list = Value::list(vec![
            Value::Int(-1),
            Value::Uint(2),
            Value::Double(0.5),
            Value::Double(1e21),
            Value::Double(1e-7),
            s("<a&b>\n"),
            Value::Bytes(Arc::from(&b"hi"[..])),
            Value::Optional(None),
        ]);
        assert_eq!(
            text(m("encodeJson", &list, &[])),
            r#"[-1,2,0.5,1e+21,1e-7,"\u003ca\u0026b\u003e\n","aGk=",null]"#
        );
        assert!(json_encode(&Value::Double(f64::NAN)).is_err());
        let decoded = m("decodeJson", &s("[]"), &[]).unwrap();
        assert!(values_equal(&decoded, &Value::list(vec![])));
    }

    #[test]
    fn query_strings() {
        let q = g("queryString.decode", &[s("a=1&b=x+y&a=2&c")]).unwrap();
        assert!(values_equal(
            get(&q, "a"),
            &Value::list(vec![s("1"), s("2")])
        ));
        assert!(values_equal(get(&q, "b"), &Value::list(vec![s("x y")])));
        assert!(values_equal(get(&q, "c"), &Value::list(vec![s("")])));
        assert_eq!(text(m("encodeQueryString", &q, &[])), "a=1&a=2&b=x+y&c=");
        let simple = map_value([(Key::String("k".into()), s("a/b c"))]);
        assert_eq!(text(g("queryString.encode", &[simple])), "k=a%2Fb+c");
        assert!(boolean(m("isQueryString", &s("a=b"), &[])));
        assert!(!boolean(m("isQueryString", &s("a=%zz"), &[])));
        assert!(!boolean(m("isQueryString", &s("a=1;b=2"), &[])));
        assert!(m("decodeQueryString", &s("x=%41"), &[]).is_ok());
    }

    #[test]
    fn url_escaping() {
        assert_eq!(
            text(m("escapeUrl", &s("a b/c;d$e?"), &[])),
            "a+b%2Fc%3Bd%24e%3F"
        );
        assert_eq!(text(g("url.escape", &[s("ü")])), "%C3%BC");
        assert_eq!(text(m("unescapeUrl", &s("a+b%2Fc"), &[])), "a b/c");
        assert_eq!(text(g("url.unescape", &[s("%C3%BC")])), "ü");
        assert!(g("url.unescape", &[s("%zz")]).is_err());
        assert!(g("url.unescape", &[s("%ff")]).is_err());
    }

    #[test]
    fn url_parsing() {
        let u = g(
            "url.parse",
            &[s(
                "HTTPS://user:p%40ss@example.com:8443/a%20b/c?x=1&x=2#frag",
            )],
        )
        .unwrap();
        let field = |k: &str| match get(&u, k) {
            Value::String(v) => v.to_string(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(field("scheme"), "https");
        assert_eq!(field("username"), "user");
        assert_eq!(field("password"), "p@ss");
        assert_eq!(field("host"), "example.com:8443");
        assert_eq!(field("hostname"), "example.com");
        assert_eq!(field("port"), "8443");
        assert_eq!(field("path"), "/a b/c");
        assert_eq!(field("raw_query"), "x=1&x=2");
        assert_eq!(field("fragment"), "frag");
        assert!(values_equal(
            get(get(&u, "query"), "x"),
            &Value::list(vec![s("1"), s("2")])
        ));
        let v6 = m("parseUrl", &s("http://[::1]:80/"), &[]).unwrap();
        assert!(values_equal(get(&v6, "hostname"), &s("::1")));
        let opaque = g("url.parse", &[s("mailto:someone@example.com")]).unwrap();
        assert!(values_equal(
            get(&opaque, "opaque"),
            &s("someone@example.com")
        ));
        let relative = g("url.parse", &[s("/just/a/path")]).unwrap();
        assert!(values_equal(get(&relative, "path"), &s("/just/a/path")));
        assert!(g("url.parse", &[s(":nope")]).is_err());
        assert!(g("url.parse", &[s("http://host:port/")]).is_err());
        assert!(g("url.parse", &[s("a:b/c")]).is_ok());
        assert!(g("url.parse", &[s("1a:b")]).is_err());
        assert!(g("url.parse", &[s("http://x/\u{7f}")]).is_err());
        assert!(boolean(m("isURL", &s("https://ngrok.com/docs"), &[])));
        assert!(!boolean(m("isURL", &s("ngrok.com"), &[])));
    }

    #[test]
    fn case_mapping_base64_and_private_ips() {
        assert_eq!(text(m("lower", &s("ÀBC"), &[])), "àbc");
        assert_eq!(text(m("upper", &s("straße"), &[])), "STRASSE");
        assert_eq!(text(m("encodeBase64", &s("hello"), &[])), "aGVsbG8=");
        assert_eq!(text(m("decodeBase64", &s("aGVsbG8="), &[])), "hello");
        assert!(m("decodeBase64", &s("/w=="), &[]).is_err());
        assert!(boolean(m("isPrivateIp", &s("172.16.0.1"), &[])));
        assert!(!boolean(m("isPrivateIp", &s("172.32.0.1"), &[])));
        assert!(!boolean(m("isPrivateIp", &s("fd00::1"), &[])));
        assert!(!boolean(m("isPrivateIp", &s("nope"), &[])));
    }

    #[test]
    fn random_values_stay_in_range() {
        for _ in 0..50 {
            match g("rand.double", &[]) {
                Ok(Value::Double(d)) => assert!((0.0..1.0).contains(&d)),
                other => panic!("{other:?}"),
            }
            match g("rand.int", &[Value::Int(-2), Value::Int(2)]) {
                Ok(Value::Int(i)) => assert!((-2..=2).contains(&i)),
                other => panic!("{other:?}"),
            }
            match g("rand.int", &[]) {
                Ok(Value::Int(i)) => assert!((0..=1).contains(&i)),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            g("rand.int", &[Value::Int(5), Value::Int(5)]),
            Ok(Value::Int(5))
        ));
        assert!(g("rand.int", &[Value::Int(3), Value::Int(2)]).is_err());
    }
}
