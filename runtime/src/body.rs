//! Body type shared by the edge and the agent, and small helpers.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Boxed error used in bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body of any origin.
pub type Body = BoxBody<Bytes, BoxError>;

/// Boxes any body whose error converts to [`BoxError`].
pub fn boxed<B>(b: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed()
}

/// A body with these bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// Connection-specific headers that must not be forwarded (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The [`HOP_BY_HOP`] names as `HeaderName`s (comparing these is cheap: no parsing, no hashing).
const HOP_BY_HOP_NAMES: [http::HeaderName; 8] = [
    http::header::CONNECTION,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named in `Connection`.
///
/// This runs two or three times per proxied request, so the common case (none present) is one
/// pass over the names without allocating, parsing or hashing.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    if !headers.keys().any(|k| HOP_BY_HOP_NAMES.contains(k)) {
        return;
    }
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for n in named {
        headers.remove(n.as_str());
    }
    for h in &HOP_BY_HOP_NAMES {
        headers.remove(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_listed_and_named_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("connection", "close, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn names_match_the_public_list_and_every_one_is_stripped() {
        for (name, hn) in HOP_BY_HOP.iter().zip(&HOP_BY_HOP_NAMES) {
            assert_eq!(*name, hn.as_str());
            let mut h = http::HeaderMap::new();
            h.insert(hn.clone(), "1".parse().unwrap());
            h.insert("x-kept", "1".parse().unwrap());
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}");
        }
        // Nothing to strip: the map is left as it is.
        let mut h = http::HeaderMap::new();
        h.insert("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.get_all("x-a").iter().count(), 2);
    }
}
