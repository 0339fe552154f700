//! JA4 TLS client fingerprints (`conn.tls.ja4_fingerprint`), computed from the ClientHello the
//! edge reads before it terminates TLS (FoxIO's JA4, `technical_details/JA4.md`):
//!
//! `t13d1516h2_8daaf6152771_e5627efa2ab1` is
//! * `t` (TLS over TCP), the version (`13`: the highest of `supported_versions`, else the
//!   ClientHello's version), `d` when a server name is sent (else `i`), the number of cipher
//!   suites and of extensions (two digits, at most 99), and the first and last characters of
//!   the first ALPN value (`00` without one; the first and last hex digits of the value when
//!   either character is not ASCII alphanumeric);
//! * the first 12 hex digits of the SHA-256 of the cipher suites, as 4-digit lower-case hex,
//!   sorted, comma-separated;
//! * the same of the extensions (sorted, without SNI `0000` and ALPN `0010`), then `_` and
//!   the signature algorithms in the order sent (no `_` when there are none).
//!
//! GREASE values (RFC 8701) are ignored everywhere. An empty list hashes to `000000000000`.
//! IO-free and bounded: anything that is not a complete ClientHello in its first record gives
//! `None`.

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use crate::sni::Reader;

/// The fields of a ClientHello JA4 reads.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hello {
    version: u16,
    ciphers: Vec<u16>,
    extensions: Vec<u16>,
    server_name: bool,
    alpn: Option<Vec<u8>>,
    signature_algorithms: Vec<u16>,
    supported_versions: Vec<u16>,
}

/// RFC 8701: `0x?a?a` with both bytes equal.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn u16_list(r: &mut Reader<'_>, len: usize) -> Option<Vec<u16>> {
    let mut list = Reader { buf: r.take(len)? };
    let mut out = Vec::with_capacity(len / 2);
    while !list.buf.is_empty() {
        let v = u16::try_from(list.u16()?).ok()?;
        if !is_grease(v) {
            out.push(v);
        }
    }
    Some(out)
}

/// Parses the ClientHello in the first TLS record of `buf`.
fn parse(buf: &[u8]) -> Option<Hello> {
    let mut r = Reader { buf };
    if r.u8()? != 0x16 {
        return None;
    }
    r.take(2)?; // record version
    let len = r.u16()?;
    let mut r = Reader { buf: r.take(len)? };
    if r.u8()? != 1 {
        return None;
    }
    let len = r.u24()?;
    let mut r = Reader { buf: r.take(len)? };
    let mut hello = Hello {
        version: u16::try_from(r.u16()?).ok()?,
        ..Hello::default()
    };
    r.take(32)?; // random
    r.skip_vec8()?; // session id
    let n = r.u16()?;
    hello.ciphers = u16_list(&mut r, n)?;
    r.skip_vec8()?; // compression methods
    if r.buf.is_empty() {
        return Some(hello);
    }
    let n = r.u16()?;
    let mut exts = Reader { buf: r.take(n)? };
    while !exts.buf.is_empty() {
        let ty = u16::try_from(exts.u16()?).ok()?;
        let n = exts.u16()?;
        let mut body = Reader { buf: exts.take(n)? };
        if is_grease(ty) {
            continue;
        }
        hello.extensions.push(ty);
        match ty {
            0x0000 => hello.server_name = true,
            0x0010 => {
                let n = body.u16()?;
                let mut list = Reader { buf: body.take(n)? };
                if !list.buf.is_empty() {
                    let n = usize::from(list.u8()?);
                    hello.alpn = Some(list.take(n)?.to_vec());
                }
            }
            0x000d => {
                let n = body.u16()?;
                hello.signature_algorithms = u16_list(&mut body, n)?;
            }
            0x002b => {
                let n = usize::from(body.u8()?);
                hello.supported_versions = u16_list(&mut body, n)?;
            }
            _ => {}
        }
    }
    Some(hello)
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0200 => "s2",
        0x0100 => "s1",
        _ => "00",
    }
}

fn alpn_code(alpn: Option<&[u8]>, out: &mut String) {
    let (Some(&first), Some(&last)) = (alpn.and_then(<[u8]>::first), alpn.and_then(<[u8]>::last))
    else {
        out.push_str("00");
        return;
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        out.push(char::from(first));
        out.push(char::from(last));
    } else {
        let hex = b"0123456789abcdef";
        out.push(char::from(hex[usize::from(first >> 4)]));
        out.push(char::from(hex[usize::from(last & 0x0f)]));
    }
}

/// `a,b,c` in 4-digit lower-case hex.
fn hex_list(values: &[u16], out: &mut String) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{v:04x}");
    }
}

/// The first 12 hex digits of the SHA-256 of `text`; `000000000000` for an empty text.
fn hash12(text: &str, out: &mut String) {
    if text.is_empty() {
        out.push_str("000000000000");
        return;
    }
    let digest = Sha256::digest(text.as_bytes());
    for b in &digest[..6] {
        let _ = write!(out, "{b:02x}");
    }
}

/// The JA4 fingerprint of the ClientHello at the start of `buf` (the bytes a client sent
/// first on a TLS connection), or `None` when they do not hold a whole ClientHello.
#[must_use]
pub fn fingerprint(buf: &[u8]) -> Option<String> {
    let hello = parse(buf)?;
    let version = hello
        .supported_versions
        .iter()
        .copied()
        .max()
        .unwrap_or(hello.version);
    let mut out = String::with_capacity(36);
    out.push('t');
    out.push_str(version_code(version));
    out.push(if hello.server_name { 'd' } else { 'i' });
    let _ = write!(
        out,
        "{:02}{:02}",
        hello.ciphers.len().min(99),
        hello.extensions.len().min(99)
    );
    alpn_code(hello.alpn.as_deref(), &mut out);
    out.push('_');
    let mut ciphers = hello.ciphers;
    ciphers.sort_unstable();
    let mut text = String::new();
    hex_list(&ciphers, &mut text);
    hash12(&text, &mut out);
    out.push('_');
    let mut extensions: Vec<u16> = hello
        .extensions
        .into_iter()
        .filter(|&e| e != 0x0000 && e != 0x0010)
        .collect();
    extensions.sort_unstable();
    text.clear();
    hex_list(&extensions, &mut text);
    if !hello.signature_algorithms.is_empty() {
        text.push('_');
        hex_list(&hello.signature_algorithms, &mut text);
    }
    hash12(&text, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record with these fields (lists in wire order).
    fn hello(version: u16, ciphers: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&u16::try_from(ciphers.len() * 2).unwrap().to_be_bytes());
        for c in ciphers {
            body.extend_from_slice(&c.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]); // compression: null
        let mut exts = Vec::new();
        for (ty, data) in extensions {
            exts.extend_from_slice(&ty.to_be_bytes());
            exts.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
            exts.extend_from_slice(data);
        }
        body.extend_from_slice(&u16::try_from(exts.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn list16(values: &[u16]) -> Vec<u8> {
        let mut v = u16::try_from(values.len() * 2)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        for x in values {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    fn alpn(values: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for v in values {
            list.push(u8::try_from(v.len()).unwrap());
            list.extend_from_slice(v);
        }
        let mut out = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(&list);
        out
    }

    /// The example of the JA4 specification (a Chrome ClientHello): its cipher suites,
    /// extensions and signature algorithms in wire order, with GREASE values added.
    fn spec_example() -> Vec<u8> {
        let ciphers = [
            0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let sigs = list16(&[
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ]);
        let mut versions = vec![6];
        for v in [0xdadau16, 0x0304, 0x0303] {
            versions.extend_from_slice(&v.to_be_bytes());
        }
        let exts: Vec<(u16, Vec<u8>)> = vec![
            (0xeaea, vec![]),
            (0x001b, vec![2, 0, 2]),
            (0x0000, vec![0, 8, 0, 0, 5, b'a', b'.', b't', b'e', b's']),
            (0x0033, vec![0, 0]),
            (0x0010, alpn(&[b"h2", b"http/1.1"])),
            (0x4469, vec![0, 3, 2, b'h', b'2']),
            (0x0017, vec![]),
            (0x002d, vec![1, 1]),
            (0x000d, sigs),
            (0x0005, vec![1, 0, 0, 0, 0]),
            (0x0023, vec![]),
            (0x0012, vec![]),
            (0x002b, versions),
            (0xff01, vec![0]),
            (0x000b, vec![1, 0]),
            (0x000a, list16(&[0x001d, 0x0017])),
            (0x0015, vec![0; 4]),
            (0x1a1a, vec![0]),
        ];
        hello(0x0303, &ciphers, &exts)
    }

    #[test]
    fn the_specification_example() {
        assert_eq!(
            fingerprint(&spec_example()).as_deref(),
            Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
        );
    }

    #[test]
    fn grease_and_special_cases() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a));
        // No SNI, no ALPN, no signature algorithms, no supported_versions: TLS 1.2 from the
        // hello's version, `i`, `00`, and the extension hash without the underscore.
        let h = hello(0x0303, &[0x1301, 0xc02b], &[(0x000a, list16(&[0x001d]))]);
        let mut want = String::from("t12i020100_");
        hash12("1301,c02b", &mut want);
        want.push('_');
        hash12("000a", &mut want);
        assert_eq!(fingerprint(&h), Some(want));
        // No extensions at all (and none of the cipher list): the empty hash.
        let h = hello(0x0301, &[], &[]);
        assert_eq!(
            fingerprint(&h).as_deref(),
            Some("t10i000000_000000000000_000000000000")
        );
        // A non-alphanumeric ALPN is written with the first and last hex digits.
        let h = hello(0x0303, &[0x1301], &[(0x0010, alpn(&[&[0xab, b'x', 0x3c]]))]);
        assert!(fingerprint(&h).unwrap().starts_with("t12i0101ac_"));
        let h = hello(0x0303, &[0x1301], &[(0x0010, alpn(&[b"http/1.1"]))]);
        assert!(fingerprint(&h).unwrap().starts_with("t12i0101h1_"));
    }

    #[test]
    fn a_real_rustls_client_hello() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut cfg = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from("a.example.test").unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let mut wire = Vec::new();
        conn.write_tls(&mut wire).unwrap();
        let fp = fingerprint(&wire).unwrap();
        assert!(fp.starts_with("t13d"), "{fp}");
        assert_eq!(&fp[8..11], "h2_", "{fp}");
        assert_eq!(fp.len(), 36, "{fp}");
        // Stable for the same client configuration.
        let name = rustls::pki_types::ServerName::try_from("b.example.test").unwrap();
        let mut cfg2 = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        cfg2.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut conn2 = rustls::ClientConnection::new(std::sync::Arc::new(cfg2), name).unwrap();
        let mut wire2 = Vec::new();
        conn2.write_tls(&mut wire2).unwrap();
        assert_eq!(fingerprint(&wire2).as_deref(), Some(fp.as_str()));
    }

    #[test]
    fn truncated_or_garbage_input_is_none_never_a_panic() {
        let wire = spec_example();
        for cut in 0..wire.len() {
            assert_eq!(fingerprint(&wire[..cut]), None, "cut {cut}");
        }
        let mut w = wire.clone();
        for i in 0..w.len() {
            let saved = w[i];
            w[i] = saved.wrapping_add(0x5a);
            let _ = fingerprint(&w);
            w[i] = saved;
        }
        assert_eq!(fingerprint(b"GET / HTTP/1.1\r\n\r\n"), None);
    }
}
