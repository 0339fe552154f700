//! Reads the server name from a TLS ClientHello without terminating TLS (for `tls://`
//! endpoints routed by SNI). IO-free, bounded, never panics on malformed input.

/// Outcome of inspecting the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHelloSni {
    /// More bytes are needed; at least this many in total.
    Incomplete(usize),
    /// A ClientHello naming this server (lower-cased).
    Name(String),
    /// A ClientHello without a server name extension.
    NoName,
    /// Not a TLS ClientHello (or one split in a way this parser does not follow).
    NotClientHello,
}

/// Largest TLS record (2^14 plus overhead) — the most ever buffered.
pub const MAX_RECORD: usize = 5 + 16384 + 2048;

/// A bounds-checked reader over TLS wire data: every read is `None` past the end.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    pub(crate) fn u16(&mut self) -> Option<usize> {
        Some(usize::from(self.u8()?) << 8 | usize::from(self.u8()?))
    }
    pub(crate) fn u24(&mut self) -> Option<usize> {
        Some(usize::from(self.u8()?) << 16 | self.u16()?)
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    pub(crate) fn skip_vec8(&mut self) -> Option<()> {
        let n = usize::from(self.u8()?);
        self.take(n).map(|_| ())
    }
    pub(crate) fn skip_vec16(&mut self) -> Option<()> {
        let n = self.u16()?;
        self.take(n).map(|_| ())
    }
}

/// Inspects the bytes received so far.
pub fn parse(buf: &[u8]) -> ClientHelloSni {
    if buf.len() < 5 {
        // A handshake record starts with 0x16; reject early when it cannot be one.
        if buf.first().is_some_and(|&b| b != 0x16) {
            return ClientHelloSni::NotClientHello;
        }
        return ClientHelloSni::Incomplete(5);
    }
    let mut r = Reader { buf };
    let (Some(0x16), Some(major), Some(_minor), Some(len)) = (r.u8(), r.u8(), r.u8(), r.u16())
    else {
        return ClientHelloSni::NotClientHello;
    };
    if major != 3 || len == 0 || len > 16384 + 2048 {
        return ClientHelloSni::NotClientHello;
    }
    let Some(record) = r.take(len) else {
        return ClientHelloSni::Incomplete(5 + len);
    };
    parse_handshake(record).unwrap_or(ClientHelloSni::NotClientHello)
}

fn parse_handshake(record: &[u8]) -> Option<ClientHelloSni> {
    let mut r = Reader { buf: record };
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    // A ClientHello spanning several records is not followed.
    let mut r = Reader { buf: r.take(len)? };
    r.take(2 + 32)?; // legacy_version, random
    r.skip_vec8()?; // session id
    r.skip_vec16()?; // cipher suites
    r.skip_vec8()?; // compression methods
    if r.buf.is_empty() {
        return Some(ClientHelloSni::NoName);
    }
    let ext_len = r.u16()?;
    let mut exts = Reader {
        buf: r.take(ext_len)?,
    };
    while !exts.buf.is_empty() {
        let ty = exts.u16()?;
        let len = exts.u16()?;
        let body = exts.take(len)?;
        if ty == 0 {
            let mut s = Reader { buf: body };
            let list_len = s.u16()?;
            let mut list = Reader {
                buf: s.take(list_len)?,
            };
            while !list.buf.is_empty() {
                let kind = list.u8()?;
                let n = list.u16()?;
                let name = list.take(n)?;
                if kind == 0 {
                    // `HostName<1..2^16-1>` (RFC 6066): an empty name is malformed, not a name.
                    if name.is_empty() {
                        return None;
                    }
                    let name = std::str::from_utf8(name).ok()?;
                    return Some(ClientHelloSni::Name(name.to_ascii_lowercase()));
                }
            }
            return Some(ClientHelloSni::NoName);
        }
    }
    Some(ClientHelloSni::NoName)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn client_hello(name: &str) -> Vec<u8> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let roots = rustls::RootCertStore::empty();
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_name_from_a_real_client_hello() {
        let hello = client_hello("Db.Example.test");
        assert_eq!(
            parse(&hello),
            ClientHelloSni::Name("db.example.test".into())
        );
        for cut in 0..hello.len() {
            assert!(
                matches!(parse(&hello[..cut]), ClientHelloSni::Incomplete(_)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn ip_server_name_has_no_sni() {
        assert_eq!(parse(&client_hello("127.0.0.1")), ClientHelloSni::NoName);
    }

    #[test]
    fn non_tls_and_garbage() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), ClientHelloSni::NotClientHello);
        assert_eq!(parse(b"G"), ClientHelloSni::NotClientHello);
        let mut hello = client_hello("a.test");
        // Corrupt every byte in turn: must never panic.
        for i in 0..hello.len() {
            let saved = hello[i];
            hello[i] = saved.wrapping_add(0x5a);
            let _ = parse(&hello);
            hello[i] = saved;
        }
        assert_eq!(
            parse(&[0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
            ClientHelloSni::NotClientHello
        );
    }
}
