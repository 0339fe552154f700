//! Invariant checks shared by the fuzz targets (`fuzz/`) and their regression tests
//! (`runtime/tests/fuzz_regressions.rs`). Not part of the stable API.
//!
//! Each function panics when an invariant is violated: that is what a fuzzer detects.

use crate::proto::frame::{Decoder, FrameError};
use crate::sni::{self, ClientHelloSni, MAX_RECORD};

/// Checks the ClientHello readers on arbitrary bytes (what a client sends first on a TLS
/// connection): neither panics; an incomplete hello asks for more bytes than it got but never
/// more than one record; a server name is lower-case and non-empty; a JA4 fingerprint has its
/// fixed shape (`t` + version + `d`/`i` + two 2-digit counts + 2 ALPN characters, then two
/// 12-hex-digit hashes).
///
/// # Panics
///
/// When one of those invariants does not hold.
pub fn check_client_hello(data: &[u8]) {
    match sni::parse(data) {
        ClientHelloSni::Incomplete(need) => {
            assert!(
                need > data.len(),
                "asks for {need} bytes with {} held",
                data.len()
            );
            assert!(
                need <= MAX_RECORD,
                "asks for {need} bytes, more than one record"
            );
        }
        ClientHelloSni::Name(n) => {
            assert!(!n.is_empty(), "empty server name");
            assert_eq!(n, n.to_ascii_lowercase(), "server name not lower-cased");
        }
        ClientHelloSni::NoName | ClientHelloSni::NotClientHello => {}
    }
    if let Some(fp) = crate::ja4::fingerprint(data) {
        let parts: Vec<&str> = fp.split('_').collect();
        assert_eq!(parts.len(), 3, "{fp}");
        let a = parts[0].as_bytes();
        assert_eq!(a.len(), 10, "{fp}");
        assert_eq!(a[0], b't', "{fp}");
        assert!(matches!(a[3], b'd' | b'i'), "{fp}");
        assert!(a[4..8].iter().all(u8::is_ascii_digit), "{fp}");
        assert!(a[8..].iter().all(u8::is_ascii_alphanumeric), "{fp}");
        for h in &parts[1..] {
            assert!(
                h.len() == 12 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{fp}"
            );
        }
    }
}

/// Checks the tunnel's frame decoder (hello and control messages) on arbitrary bytes, fed in
/// chunks whose size the input's first byte chooses: it never panics; the only errors are a
/// frame announcing more than the limit (reported as soon as its length is known) and a
/// payload that is not JSON; a buffer holding only whole frames is empty once they are taken.
///
/// # Panics
///
/// When one of those invariants does not hold.
pub fn check_frame_decoder(data: &[u8]) {
    const MAX: usize = 4096;
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut dec = Decoder::new(MAX);
    for piece in rest.chunks(chunk) {
        dec.extend(piece);
        loop {
            match dec.next_message::<serde_json::Value>() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(FrameError::TooLarge { len, max }) => {
                    assert!(len > max && max == MAX, "too large: {len} > {max}");
                    return;
                }
                Err(FrameError::Malformed(_)) => return,
                Err(e) => panic!("unexpected decoder error: {e}"),
            }
        }
    }
    // The same bytes cut at newlines into at most 8 whole frames: either one of them is
    // refused, or all of them come out and nothing is left behind.
    let pieces: Vec<&[u8]> = rest.split(|&b| b == b'\n').take(8).collect();
    let mut whole = Decoder::new(MAX);
    for p in &pieces {
        let Ok(len) = u32::try_from(p.len()) else {
            return;
        };
        whole.extend(&len.to_be_bytes());
        whole.extend(p);
    }
    let mut taken = 0;
    loop {
        match whole.next_message::<serde_json::Value>() {
            Ok(Some(_)) => taken += 1,
            Ok(None) => break,
            Err(_) => return,
        }
    }
    assert_eq!(taken, pieces.len(), "whole frames were not all decoded");
    assert!(whole.is_empty(), "whole frames left bytes behind");
}
