//! Small I/O adapters: a stream with already-read bytes put back in front, and a body fed
//! from a channel.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use hyper::body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::body::BoxError;

/// Read buffer under each end of the tunnel's TLS connection.
///
/// Perf: rustls pulls ciphertext from its transport 4 KiB at a time, so without this a 16 KiB
/// TLS record took four or five `recv` calls and a 1 MiB response some 260; with it one `recv`
/// takes up to 64 KiB (many records, or many small streams' frames at once) and rustls copies
/// from memory.
pub(crate) const TUNNEL_READ_BUFFER: usize = 64 * 1024;

/// Wraps the tunnel's TCP stream in a [`TUNNEL_READ_BUFFER`]-sized read buffer (writes pass
/// straight through, vectored).
pub(crate) fn tunnel_transport<S: AsyncRead + AsyncWrite>(tcp: S) -> tokio::io::BufReader<S> {
    tokio::io::BufReader::with_capacity(TUNNEL_READ_BUFFER, tcp)
}

/// A stream whose first bytes were read already (to peek at a ClientHello) and are replayed.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Replays `prefix` before reading from `inner`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
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
}

/// A request/response body whose data frames come from a channel (the control stream).
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender feeding it; the body ends when every sender is dropped.
    pub fn new(capacity: usize) -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(capacity);
        (tx, Self { rx })
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Records the time of the last successful read or write on a stream.
#[derive(Debug)]
pub(crate) struct Activity<S> {
    inner: S,
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl<S> Activity<S> {
    /// Wraps `inner`; the clock tells when bytes last moved through it.
    pub(crate) fn new(inner: S) -> (Self, IdleClock) {
        let start = Instant::now();
        let last_ms = Arc::new(AtomicU64::new(0));
        let clock = IdleClock {
            start,
            last_ms: last_ms.clone(),
        };
        (
            Self {
                inner,
                start,
                last_ms,
            },
            clock,
        )
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
}

/// When bytes last moved through an [`Activity`] stream.
#[derive(Debug, Clone)]
pub(crate) struct IdleClock {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl IdleClock {
    /// Resolves once `idle` has passed without a byte read or written (checked lazily: one
    /// timer per period, not per read).
    pub(crate) async fn idle_for(&self, idle: Duration) {
        let mut deadline = self.start + idle;
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if last.elapsed() >= idle {
                return;
            }
            deadline = last + idle;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Activity<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Activity<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(_))) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Copies bytes both ways until both sides have closed (half-close is forwarded), with
/// backpressure; fails with `TimedOut` after `idle` without any bytes moving.
pub async fn copy_with_idle<A, B>(a: &mut A, b: &mut B, idle: Duration) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut wa, clock) = Activity::new(a);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut wa, b) => r,
        () = clock.idle_for(idle) => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_is_replayed_first() {
        let rest: &[u8] = b" world";
        let mut p = Prefixed::new(Bytes::from_static(b"hello"), rest);
        let mut s = String::new();
        p.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello world");
    }

    #[tokio::test]
    async fn idle_pipe_times_out_and_busy_pipe_finishes() {
        let (mut a, mut a_peer) = tokio::io::duplex(64);
        let (mut b, _b_peer) = tokio::io::duplex(64);
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            copy_with_idle(&mut a, &mut b, Duration::from_millis(50)),
        )
        .await
        .unwrap();
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        drop(a_peer.shutdown().await);
        let (mut c, mut c_peer) = tokio::io::duplex(64);
        let (mut d, mut d_peer) = tokio::io::duplex(64);
        let pipe =
            tokio::spawn(
                async move { copy_with_idle(&mut c, &mut d, Duration::from_secs(5)).await },
            );
        c_peer.write_all(b"ping").await.unwrap();
        c_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        d_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        d_peer.shutdown().await.unwrap();
        let (ab, ba) = tokio::time::timeout(Duration::from_secs(5), pipe)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((ab, ba), (4, 0));
    }

    #[tokio::test]
    async fn channel_body_ends_when_senders_drop() {
        let (tx, body) = ChannelBody::new(4);
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        drop(tx);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"ab");
    }
}
