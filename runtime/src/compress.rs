//! `compress-response`: the edge compresses an upstream response when a policy asked for it and
//! the client accepts one of the policy's algorithms.
//!
//! - The policy's effect is recorded as a [`CompressResponse`] extension (on the request when the
//!   action runs in `on_http_request`, on the response in `on_http_response`; [`record`]).
//! - [`negotiate`] picks the algorithm: the client's `Accept-Encoding` q-values decide (highest
//!   wins, `*` stands for any coding not listed, `q=0` refuses), ties go to the policy's order.
//!   Supported: `gzip`, `deflate` (zlib, as HTTP means it) and `br`. `compress` (LZW) is accepted
//!   by the policy schema but never negotiated: a client accepting only it gets the response
//!   untouched.
//! - [`applies`] leaves alone what should not be compressed: responses that are already encoded,
//!   `Cache-Control: no-transform`, bodies known to be smaller than [`MIN_SIZE`], statuses without
//!   a body or with a partial one (1xx, 204, 206, 304), answers to `HEAD`, and types that are
//!   compressed already (images but SVG, audio, video, archives, WOFF fonts).
//! - [`CompressBody`] streams: each upstream frame is fed to the encoder, and whatever the
//!   encoder holds is flushed whenever the upstream has nothing more ready (so a stream of
//!   events is not held back), then finished at the end. Memory per response is the encoder's
//!   window and one frame.
//! - On compression `Content-Encoding` is set, `Content-Length` and `Accept-Ranges` dropped,
//!   `Vary: Accept-Encoding` added, and a strong `ETag` made weak.

use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use hyper::body::{Frame, SizeHint};

use crate::body::{Body, BoxError};

/// Responses whose `Content-Length` is below this are not compressed.
pub const MIN_SIZE: u64 = 256;

/// The policy asked for compression with these algorithms, in preference order (an extension
/// on the request or response parts).
#[derive(Debug, Clone)]
pub struct CompressResponse {
    /// Algorithm names as in the policy (`gzip`, `deflate`, `br`, `compress`).
    pub algorithms: Arc<[Arc<str>]>,
}

/// Records the last `compress-response` effect of a phase in `extensions`.
pub fn record(extensions: &mut http::Extensions, effects: &[wicket_engine::Effect]) {
    let last = effects.iter().rev().find_map(|e| match e {
        wicket_engine::Effect::CompressResponse { algorithms } => Some(algorithms.clone()),
        _ => None,
    });
    if let Some(algorithms) = last {
        extensions.insert(CompressResponse { algorithms });
    }
}

/// A content coding the edge can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip`.
    Gzip,
    /// `deflate` (the zlib format).
    Deflate,
    /// `br`.
    Brotli,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Brotli => "br",
        }
    }

    fn from_policy(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(Self::Gzip),
            "deflate" => Some(Self::Deflate),
            "br" => Some(Self::Brotli),
            _ => None,
        }
    }
}

/// The client's weight for `coding` (0..=1000) from its `Accept-Encoding` values; `None` when
/// the header is absent.
fn weight(accept: &HeaderMap, coding: &str) -> Option<u16> {
    let mut any = false;
    let mut exact = None;
    let mut star = None;
    for value in accept.get_all(header::ACCEPT_ENCODING) {
        any = true;
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            if name.is_empty() {
                continue;
            }
            let q = parts
                .find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| parse_q(v.trim()))
                })
                .unwrap_or(Some(1000));
            let Some(q) = q else { continue };
            if name.eq_ignore_ascii_case(coding) {
                exact = Some(exact.map_or(q, |e: u16| e.max(q)));
            } else if name == "*" {
                star = Some(q);
            }
        }
    }
    if !any {
        return None;
    }
    Some(exact.or(star).unwrap_or(0))
}

/// A q-value as thousandths (`1`, `0.5`, `0.001`); `None` when malformed.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

/// The coding to use: the supported policy algorithm the client weighs highest (ties: the
/// policy's order); `None` when the client sent no `Accept-Encoding` or accepts none of them.
pub fn negotiate(accept: &HeaderMap, algorithms: &[Arc<str>]) -> Option<Encoding> {
    let mut best: Option<(Encoding, u16)> = None;
    for name in algorithms {
        let Some(enc) = Encoding::from_policy(name) else {
            continue;
        };
        let q = weight(accept, enc.token())?;
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((enc, q));
        }
    }
    best.map(|(e, _)| e)
}

/// Whether a response may be compressed at all (see the module docs).
pub fn applies(method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
    if *method == Method::HEAD
        || status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        return false;
    }
    let encoded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded || headers.contains_key(header::CONTENT_RANGE) {
        return false;
    }
    let no_transform = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"));
    if no_transform {
        return false;
    }
    let small = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n < MIN_SIZE);
    if small {
        return false;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    compressible_type(content_type)
}

/// False for media types that are compressed already.
fn compressible_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (top, sub) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
    match top {
        "image" => sub == "svg+xml" || sub == "bmp" || sub == "x-icon",
        "audio" | "video" => false,
        "font" => !matches!(sub, "woff" | "woff2"),
        "application" => !matches!(
            sub,
            "zip"
                | "gzip"
                | "x-gzip"
                | "x-bzip2"
                | "x-xz"
                | "x-7z-compressed"
                | "x-rar-compressed"
                | "vnd.rar"
                | "zstd"
                | "br"
        ),
        _ => true,
    }
}

/// Marks `headers` as carrying `enc`-encoded content (see the module docs).
pub fn rewrite_headers(headers: &mut HeaderMap, enc: Encoding) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::ACCEPT_RANGES);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(enc.token()),
    );
    let varies = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.eq_ignore_ascii_case("accept-encoding")
        });
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(etag) = headers.get(header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&weak) {
                headers.insert(header::ETAG, v);
            }
        }
    }
}

/// Compresses `res` when the policy asked for it (a [`CompressResponse`] extension on the
/// response), the client accepts a supported algorithm and [`applies`] allows it.
pub fn maybe_compress(
    method: &Method,
    accept: &HeaderMap,
    res: http::Response<Body>,
) -> http::Response<Body> {
    let Some(want) = res.extensions().get::<CompressResponse>() else {
        return res;
    };
    let Some(enc) = negotiate(accept, &want.algorithms) else {
        return res;
    };
    if !applies(method, res.status(), res.headers()) {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    rewrite_headers(&mut parts.headers, enc);
    http::Response::from_parts(parts, CompressBody::new(body, enc).boxed())
}

/// Writes into a growable buffer whose content is taken after each step.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

/// Brotli quality: fast enough for a proxy on the request path, still well ahead of gzip.
const BROTLI_QUALITY: u32 = 4;
/// Brotli window (2^20 = 1 MiB).
const BROTLI_LGWIN: u32 = 20;

impl Encoder {
    fn new(enc: Encoding) -> Self {
        let level = flate2::Compression::new(5);
        match enc {
            Encoding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            Encoding::Deflate => Self::Deflate(flate2::write::ZlibEncoder::new(Vec::new(), level)),
            Encoding::Brotli => Self::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                32 * 1024,
                BROTLI_QUALITY,
                BROTLI_LGWIN,
            ))),
        }
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Self::Gzip(e) => e.write_all(data)?,
            Self::Deflate(e) => e.write_all(data)?,
            Self::Brotli(e) => e.write_all(data)?,
        }
        Ok(self.take())
    }

    fn flush(&mut self) -> std::io::Result<Bytes> {
        match self {
            Self::Gzip(e) => e.flush()?,
            Self::Deflate(e) => e.flush()?,
            Self::Brotli(e) => e.flush()?,
        }
        Ok(self.take())
    }

    fn finish(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(match self {
            Self::Gzip(e) => e.finish()?,
            Self::Deflate(e) => e.finish()?,
            Self::Brotli(e) => e.into_inner(),
        }))
    }

    /// The output produced so far (taken out of the encoder's sink).
    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(match self {
            Self::Gzip(e) => e.get_mut(),
            Self::Deflate(e) => e.get_mut(),
            Self::Brotli(e) => e.get_mut(),
        }))
    }
}

/// A body compressed on the fly (see the module docs).
pub struct CompressBody {
    inner: Body,
    encoder: Option<Encoder>,
    /// Input was written since the last flush.
    dirty: bool,
    /// Trailers to send once the compressed data is out.
    trailers: Option<HeaderMap>,
}

impl std::fmt::Debug for CompressBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressBody")
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

impl CompressBody {
    /// Compresses `inner` with `enc`.
    pub fn new(inner: Body, enc: Encoding) -> Self {
        Self {
            inner,
            encoder: Some(Encoder::new(enc)),
            dirty: false,
            trailers: None,
        }
    }

    fn boxed(self) -> Body {
        http_body_util::BodyExt::boxed(self)
    }

    /// Finishes the stream; the last compressed bytes, if any.
    fn finish(&mut self) -> Result<Option<Frame<Bytes>>, BoxError> {
        match self.encoder.take() {
            Some(e) => {
                let last = e.finish()?;
                Ok((!last.is_empty()).then(|| Frame::data(last)))
            }
            None => Ok(None),
        }
    }
}

impl hyper::body::Body for CompressBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = encoder.write(&data)?;
                        this.dirty |= !data.is_empty();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                        }
                        if let Some(f) = this.finish()? {
                            return Poll::Ready(Some(Ok(f)));
                        }
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    if let Some(f) = this.finish()? {
                        return Poll::Ready(Some(Ok(f)));
                    }
                }
                Poll::Pending => {
                    // Nothing more is ready upstream: send what the encoder holds.
                    if this.dirty {
                        this.dirty = false;
                        let out = encoder.flush()?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};

    use http_body_util::BodyExt;

    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        h
    }

    fn algos(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn negotiation_follows_q_values_then_the_policy_order() {
        let all = algos(&["gzip", "deflate", "br", "compress"]);
        assert_eq!(negotiate(&accept("gzip, br"), &all), Some(Encoding::Gzip));
        assert_eq!(
            negotiate(&accept("gzip;q=0.5, br"), &all),
            Some(Encoding::Brotli)
        );
        assert_eq!(
            negotiate(&accept("br;q=0, *;q=0.1"), &all),
            Some(Encoding::Gzip)
        );
        assert_eq!(
            negotiate(&accept("*"), &algos(&["br"])),
            Some(Encoding::Brotli)
        );
        assert_eq!(negotiate(&accept("identity"), &all), None);
        assert_eq!(negotiate(&accept("compress"), &all), None);
        assert_eq!(negotiate(&accept("gzip;q=0"), &all), None);
        assert_eq!(negotiate(&accept("GZIP;Q=1.0"), &all), Some(Encoding::Gzip));
        assert_eq!(negotiate(&accept("gzip;q=2"), &all), None);
        assert_eq!(negotiate(&HeaderMap::new(), &all), None);
        assert_eq!(
            negotiate(&accept("deflate, gzip"), &algos(&["deflate"])),
            Some(Encoding::Deflate)
        );
    }

    #[test]
    fn what_is_left_alone() {
        let get = Method::GET;
        let ok = StatusCode::OK;
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert!(applies(&get, ok, &h(&[("content-type", "text/html")])));
        assert!(applies(&get, ok, &h(&[("content-type", "image/svg+xml")])));
        assert!(!applies(&get, ok, &h(&[("content-type", "image/png")])));
        assert!(!applies(&get, ok, &h(&[("content-type", "video/mp4")])));
        assert!(!applies(
            &get,
            ok,
            &h(&[("content-type", "application/zip")])
        ));
        assert!(!applies(&get, ok, &h(&[("content-encoding", "gzip")])));
        assert!(!applies(
            &get,
            ok,
            &h(&[("cache-control", "public, no-transform")])
        ));
        assert!(!applies(&get, ok, &h(&[("content-length", "100")])));
        assert!(applies(&get, ok, &h(&[("content-length", "1000")])));
        assert!(!applies(&Method::HEAD, ok, &h(&[])));
        assert!(!applies(&get, StatusCode::NO_CONTENT, &h(&[])));
        assert!(!applies(&get, StatusCode::PARTIAL_CONTENT, &h(&[])));
    }

    #[test]
    fn headers_are_rewritten() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "5000".parse().unwrap());
        h.insert(header::ETAG, "\"abc\"".parse().unwrap());
        h.insert(header::VARY, "origin".parse().unwrap());
        rewrite_headers(&mut h, Encoding::Brotli);
        assert!(!h.contains_key(header::CONTENT_LENGTH));
        assert_eq!(h[header::CONTENT_ENCODING], "br");
        assert_eq!(h[header::ETAG], "W/\"abc\"");
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["origin", "accept-encoding"]);
    }

    async fn roundtrip(enc: Encoding, chunks: Vec<Vec<u8>>) -> Vec<u8> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from(c)))),
        );
        let body = http_body_util::StreamBody::new(stream).boxed();
        let compressed = CompressBody::new(body, enc)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let mut out = Vec::new();
        match enc {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(&compressed[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Deflate => {
                flate2::read::ZlibDecoder::new(&compressed[..])
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Brotli => {
                brotli::Decompressor::new(&compressed[..], 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
        }
        out
    }

    #[tokio::test]
    async fn bodies_roundtrip_for_every_coding() {
        let chunks: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                format!("line {i} of a fairly repetitive text body\n")
                    .repeat(50)
                    .into_bytes()
            })
            .collect();
        let expected: Vec<u8> = chunks.concat();
        for enc in [Encoding::Gzip, Encoding::Deflate, Encoding::Brotli] {
            assert_eq!(roundtrip(enc, chunks.clone()).await, expected, "{enc:?}");
            assert!(roundtrip(enc, Vec::new()).await.is_empty(), "{enc:?}");
        }
    }

    #[tokio::test]
    async fn a_stalled_upstream_gets_what_was_compressed_so_far() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
        });
        let mut body = CompressBody::new(
            http_body_util::StreamBody::new(stream).boxed(),
            Encoding::Gzip,
        );
        tx.send(Bytes::from_static(b"event: tick\n\n"))
            .await
            .unwrap();
        // The upstream sends nothing more for now: the first event must still come out.
        let first_event = async {
            let mut got = Vec::new();
            while let Some(f) = body.frame().await {
                got.extend_from_slice(&f.unwrap().into_data().unwrap());
                let mut d = flate2::write::GzDecoder::new(Vec::new());
                d.write_all(&got).unwrap();
                d.flush().unwrap();
                if d.get_ref().as_slice() == b"event: tick\n\n" {
                    return;
                }
            }
            panic!("the body ended before the event");
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), first_event)
            .await
            .expect("the first event was held back");
        drop(tx);
        assert!(body.frame().await.is_some()); // the gzip trailer
    }
}
