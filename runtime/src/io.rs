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
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(_))) {
            self.touch();
        }
        r
    }
    /// Perf: hyper's HTTP/1.1 writer queues a response's head and body chunks and sends them
    /// with one `writev` when the transport is vectored; otherwise it copies every body chunk
    /// into its own buffer first (a 1 MiB response was copied once more at the edge).
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
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

/// Largest batch of small writes held before they go to the transport.
const BATCH_LIMIT: usize = 64 * 1024;
/// Writes at least this large go straight through when nothing is batched (no copy).
const BATCH_BYPASS: usize = 16 * 1024;

#[derive(Debug)]
struct BatchState<S> {
    io: S,
    buf: Vec<u8>,
    /// How much of `buf` has been written out already.
    pos: usize,
    /// Set once a [`FlushAfterPoll`] drives the connection: only then may a flush be deferred.
    armed: bool,
}

impl<S: AsyncWrite + Unpin> BatchState<S> {
    /// Writes the whole batch out, then flushes the transport.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pos < self.buf.len() {
            let n =
                std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pos += n;
        }
        self.buf.clear();
        self.pos = 0;
        Pin::new(&mut self.io).poll_flush(cx)
    }
}

/// A transport for an HTTP/2 connection that turns the many small writes and flushes of one
/// poll of the connection into one write to the transport, made when the poll ends (see
/// [`FlushAfterPoll`]).
///
/// Perf: h2 flushes its codec after every DATA frame of 256 bytes or more, so every stream's
/// response went out as its own TLS record and its own `sendmsg`. Here a flush is deferred
/// while the connection is being polled and the batch (up to [`BATCH_LIMIT`]) is written once,
/// as few TLS records, when the poll returns. Reads pass straight through; a shutdown writes
/// the batch first. The state sits behind a mutex shared with the [`FlushAfterPoll`]; only the
/// connection's task takes it, so it is never contended.
///
/// Only for a connection that does all its IO inside the future the driver wraps: hyper's
/// HTTP/2 server (the agent's end of the tunnel) does; its HTTP/2 client (the edge's end) runs
/// the connection in a task of its own, so the edge does not use this.
#[derive(Debug)]
pub(crate) struct WriteBatch<S> {
    state: Arc<std::sync::Mutex<BatchState<S>>>,
}

/// Polls an HTTP/2 connection future, then writes out what its [`WriteBatch`] holds.
#[derive(Debug)]
pub(crate) struct FlushAfterPoll<F, S> {
    fut: Pin<Box<F>>,
    state: Arc<std::sync::Mutex<BatchState<S>>>,
}

fn poisoned() -> io::Error {
    io::Error::other("tunnel write batch poisoned")
}

/// Drives the connection that owns a [`WriteBatch`] (see [`WriteBatch::new`]).
#[derive(Debug)]
pub(crate) struct BatchDriver<S> {
    state: Arc<std::sync::Mutex<BatchState<S>>>,
}

impl<S> WriteBatch<S> {
    /// Wraps `io`; the HTTP/2 connection made over it must be polled through the
    /// [`BatchDriver`] (until then, and if it never is, writes are not batched).
    pub(crate) fn new(io: S) -> (Self, BatchDriver<S>) {
        let state = Arc::new(std::sync::Mutex::new(BatchState {
            io,
            buf: Vec::new(),
            pos: 0,
            armed: false,
        }));
        (
            Self {
                state: state.clone(),
            },
            BatchDriver { state },
        )
    }
}

impl<S> BatchDriver<S> {
    /// Wraps the connection future that owns the [`WriteBatch`]: after each poll of `fut`,
    /// what it wrote goes out.
    pub(crate) fn drive<F>(self, fut: F) -> FlushAfterPoll<F, S> {
        FlushAfterPoll {
            fut: Box::pin(fut),
            state: self.state,
        }
    }
}

impl<F, S> FlushAfterPoll<F, S> {
    /// The wrapped connection future.
    pub(crate) fn inner(&mut self) -> Pin<&mut F> {
        self.fut.as_mut()
    }
}

impl<F: Future, S: AsyncWrite + Unpin> Future for FlushAfterPoll<F, S> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Ok(mut s) = self.state.lock() {
            s.armed = true;
        }
        let out = self.fut.as_mut().poll(cx);
        if let Ok(mut s) = self.state.lock()
            && !s.buf.is_empty()
        {
            match s.poll_drain(cx) {
                // The transport wakes this task when it takes more; the connection's next
                // write waits for the batch (backpressure).
                Poll::Pending | Poll::Ready(Ok(())) => {}
                // The connection sees the error on its next read or write, unbatched; this
                // wake-up makes sure there is one.
                Poll::Ready(Err(_)) => {
                    s.armed = false;
                    s.buf.clear();
                    s.pos = 0;
                    cx.waker().wake_by_ref();
                }
            }
        }
        out
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteBatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        Pin::new(&mut s.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteBatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if !s.armed || len >= BATCH_BYPASS || s.buf.len() + len > BATCH_LIMIT {
            // Not batching yet, or too much to batch: what is batched goes first, then this
            // write, uncopied.
            std::task::ready!(s.poll_drain(cx))?;
            if !s.armed || len >= BATCH_BYPASS {
                return Pin::new(&mut s.io).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            s.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        if s.armed {
            // Deferred to the end of this poll of the connection (`FlushAfterPoll`).
            return Poll::Ready(Ok(()));
        }
        s.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.state.lock().map_err(|_| poisoned())?;
        std::task::ready!(s.poll_drain(cx))?;
        Pin::new(&mut s.io).poll_shutdown(cx)
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
    /// Counts the writes that reach the transport.
    struct Counting {
        inner: tokio::io::DuplexStream,
        writes: Arc<AtomicU64>,
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    fn counting(cap: usize) -> (Counting, tokio::io::DuplexStream, Arc<AtomicU64>) {
        let (a, b) = tokio::io::duplex(cap);
        let writes = Arc::new(AtomicU64::new(0));
        let c = Counting {
            inner: a,
            writes: writes.clone(),
        };
        (c, b, writes)
    }

    /// Writes each chunk and flushes after each, all within one poll.
    fn write_all_in_one_poll(
        io: &mut WriteBatch<Counting>,
        cx: &mut Context<'_>,
        chunks: &[&[u8]],
    ) -> io::Result<()> {
        for c in chunks {
            match Pin::new(&mut *io).poll_write(cx, c) {
                Poll::Ready(Ok(n)) => assert_eq!(n, c.len()),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => panic!("a small write to an idle transport waited"),
            }
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => panic!("a flush waited"),
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn batch_goes_out_in_one_write_after_the_poll() {
        let (inner, mut peer, writes) = counting(1 << 20);
        let (mut io, driver) = WriteBatch::new(inner);
        let counted = writes.clone();
        let fut = std::future::poll_fn(move |cx| {
            write_all_in_one_poll(&mut io, cx, &[b"one ", b"two ", b"three"])?;
            // Nothing reached the transport during the poll.
            assert_eq!(counted.load(Ordering::Relaxed), 0);
            Poll::Ready(Ok::<_, io::Error>(()))
        });
        driver.drive(fut).await.unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        let mut got = vec![0; 13];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"one two three");
    }

    #[tokio::test]
    async fn unarmed_writes_and_large_writes_pass_straight_through() {
        let (inner, mut peer, writes) = counting(1 << 20);
        let (mut io, driver) = WriteBatch::new(inner);
        // Before the driver polls, every write and flush goes to the transport.
        io.write_all(b"hello").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(writes.load(Ordering::Relaxed), 1);
        let big = vec![7u8; BATCH_BYPASS];
        let sent = big.clone();
        let fut = std::future::poll_fn(move |cx| {
            write_all_in_one_poll(&mut io, cx, &[b"head", &sent])?;
            Poll::Ready(Ok::<_, io::Error>(()))
        });
        driver.drive(fut).await.unwrap();
        // The small write was batched and went out before the big one, which was not copied.
        assert_eq!(writes.load(Ordering::Relaxed), 3);
        let mut got = vec![0; 5 + 4 + big.len()];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..9], b"hellohead");
        assert_eq!(&got[9..], &big[..]);
    }

    #[tokio::test]
    async fn shutdown_writes_the_batch_first_and_backpressure_holds() {
        // A transport that takes 8 bytes at a time: the batch drains over several polls.
        let (inner, mut peer, _writes) = counting(8);
        let (mut io, driver) = WriteBatch::new(inner);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut step = 0;
        let fut = std::future::poll_fn(move |cx| {
            if step == 0 {
                step = 1;
                write_all_in_one_poll(&mut io, cx, &[b"a batch of more than eight bytes"])?;
            }
            std::task::ready!(Pin::new(&mut io).poll_shutdown(cx))?;
            Poll::Ready(Ok::<_, io::Error>(()))
        });
        tokio::time::timeout(Duration::from_secs(5), driver.drive(fut))
            .await
            .unwrap()
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"a batch of more than eight bytes");
    }
}
