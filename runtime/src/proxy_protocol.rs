//! PROXY protocol v1 and v2 headers (as sent by the agent to its upstream), IO-free.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// Which PROXY protocol version to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProxyVersion {
    /// Text header.
    #[serde(rename = "1")]
    V1,
    /// Binary header.
    #[serde(rename = "2")]
    V2,
}

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Encodes a header announcing a TCP connection from `src` to `dst`.
pub fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    // Mixed families are sent as IPv6 (IPv4-mapped).
    let (src, dst) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (src, dst),
        _ => (to_v6(src), to_v6(dst)),
    };
    match version {
        ProxyVersion::V1 => {
            let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = Vec::with_capacity(16 + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY command
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11); // AF_INET, STREAM
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21); // AF_INET6, STREAM
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6_octets(s));
                    out.extend_from_slice(&v6_octets(d));
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

fn to_v6(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(v6(a.ip())), a.port())
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    v6(ip).octets()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_text() {
        let h = encode(
            ProxyVersion::V1,
            "192.0.2.1:5000".parse().unwrap(),
            "198.51.100.2:443".parse().unwrap(),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 443\r\n");
        let h = encode(
            ProxyVersion::V1,
            "[2001:db8::1]:1".parse().unwrap(),
            "192.0.2.1:2".parse().unwrap(),
        );
        assert_eq!(
            String::from_utf8(h).unwrap(),
            "PROXY TCP6 2001:db8::1 ::ffff:192.0.2.1 1 2\r\n"
        );
    }

    #[test]
    fn v2_binary() {
        let h = encode(
            ProxyVersion::V2,
            "192.0.2.1:5000".parse().unwrap(),
            "198.51.100.2:443".parse().unwrap(),
        );
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(h[12..16], [0x21, 0x11, 0, 12]);
        assert_eq!(h[16..20], [192, 0, 2, 1]);
        assert_eq!(h[24..28], [0x13, 0x88, 0x01, 0xbb]);
        assert_eq!(h.len(), 28);
        let h6 = encode(
            ProxyVersion::V2,
            "[::1]:1".parse().unwrap(),
            "[::2]:2".parse().unwrap(),
        );
        assert_eq!(h6.len(), 16 + 36);
        assert_eq!(h6[13], 0x21);
    }
}
