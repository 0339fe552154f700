//! Length-prefixed JSON frames: a 4-byte big-endian length followed by that many bytes of JSON.
//! Used for the hello exchange and for every message on the control stream.

use bytes::{Buf, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of the length prefix in bytes.
pub const HEADER_LEN: usize = 4;

/// Errors from encoding or decoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced or encoded length exceeds the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not valid JSON for the expected message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The peer closed the stream in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// An I/O error while reading or writing.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as one frame, refusing payloads larger than `max`.
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let json = serde_json::to_vec(msg)?;
    if json.len() > max {
        return Err(FrameError::TooLarge {
            len: json.len(),
            max,
        });
    }
    let len = u32::try_from(json.len()).map_err(|_| FrameError::TooLarge {
        len: json.len(),
        max,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Reads the announced payload length from the start of `buf`, if four bytes are present.
fn announced_len(buf: &[u8]) -> Option<usize> {
    let head: [u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(head) as usize)
}

/// Incremental decoder: feed bytes as they arrive, take complete messages out.
///
/// Memory is bounded: a frame announcing more than `max` bytes is an error before any of its
/// payload is buffered.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    max: usize,
}

impl Decoder {
    /// A decoder accepting payloads up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(len) = announced_len(&self.buf) else {
            return Ok(None);
        };
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(len);
        Ok(Some(serde_json::from_slice(&payload)?))
    }

    /// True when no partial frame is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads exactly one frame from `r`.
pub async fn read_frame<T, R>(r: &mut R, max: usize) -> Result<T, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut head = [0u8; HEADER_LEN];
    r.read_exact(&mut head).await.map_err(eof_is_truncated)?;
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.map_err(eof_is_truncated)?;
    Ok(serde_json::from_slice(&payload)?)
}

/// Writes one frame to `w` and flushes.
pub async fn write_frame<T, W>(w: &mut W, msg: &T, max: usize) -> Result<(), FrameError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let bytes = encode(msg, max)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

fn eof_is_truncated(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_split_at_every_byte() {
        let frame = encode(&serde_json::json!({"a": 1, "b": "x"}), 1024).unwrap();
        let mut both = frame.clone();
        both.extend_from_slice(&frame);
        for cut in 0..both.len() {
            let mut d = Decoder::new(1024);
            d.extend(&both[..cut]);
            let mut got = Vec::new();
            while let Some(v) = d.next_message::<serde_json::Value>().unwrap() {
                got.push(v);
            }
            d.extend(&both[cut..]);
            while let Some(v) = d.next_message::<serde_json::Value>().unwrap() {
                got.push(v);
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert!(d.is_empty());
        }
    }

    #[test]
    fn oversized_announcement_is_refused_before_buffering() {
        let mut d = Decoder::new(16);
        d.extend(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next_message::<serde_json::Value>(),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            encode(&"x".repeat(100), 16),
            Err(FrameError::TooLarge { len: 102, max: 16 })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Decoder::new(64);
        d.extend(&[0, 0, 0, 3, b'{', 0xff, b'}']);
        assert!(matches!(
            d.next_message::<serde_json::Value>(),
            Err(FrameError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn async_read_reports_truncation() {
        let bytes = encode(&"hello", 64).unwrap();
        let mut r = &bytes[..bytes.len() - 1];
        assert!(matches!(
            read_frame::<String, _>(&mut r, 64).await,
            Err(FrameError::Truncated)
        ));
        let mut r = &bytes[..];
        assert_eq!(read_frame::<String, _>(&mut r, 64).await.unwrap(), "hello");
    }
}
