//! cel-go's network extension: the `net.IP` and `net.CIDR` types, `ip()`, `cidr()`, `isIP()`,
//! `isCIDR()`, `ip.isCanonical()` and their member functions.
//!
//! Parsing is strict like Go's `net/netip`: no zones (`%eth0`), no leading zeros in IPv4
//! octets or prefix lengths. An IPv4-mapped IPv6 address written with a dotted quad
//! (`::ffff:192.168.0.1`) is rejected; written in hex (`::ffff:c0a8:1`) it is accepted and
//! stored as the IPv4 address it maps, so it equals `ip('192.168.0.1')`. A CIDR keeps its host
//! bits (`cidr('10.0.0.1/8').ip()` is `10.0.0.1`); `masked()` clears them.
//!
//! [`ip_to_string`] and [`cidr_to_string`] give the text forms (as `string()` converts them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{CallResult, arg_str, invalid, no_overload};
use crate::error::EvalError;
use crate::value::Value;

super::function_ids! {
    /// The global functions of the library.
    pub(crate) enum Global {
        Ip = "ip",
        Cidr = "cidr",
        IsIp = "isIP",
        IsCidr = "isCIDR",
        IsCanonical = "ip.isCanonical",
    }
}

super::function_ids! {
    /// The member functions of the library.
    pub(crate) enum Member {
        Family = "family",
        IsUnspecified = "isUnspecified",
        IsLoopback = "isLoopback",
        IsGlobalUnicast = "isGlobalUnicast",
        IsLinkLocalMulticast = "isLinkLocalMulticast",
        IsLinkLocalUnicast = "isLinkLocalUnicast",
        ContainsIp = "containsIP",
        ContainsCidr = "containsCIDR",
        Ip = "ip",
        Masked = "masked",
        PrefixLength = "prefixLength",
    }
}

/// Global functions of the library, by name.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    Global::from_name(name).and_then(|f| call_global(f, args))
}

/// Calls a global function of the library.
pub(super) fn call_global(f: Global, args: &[Value]) -> CallResult {
    let Some(text) = arg_str(args, 0).filter(|_| args.len() == 1) else {
        return Some(Err(no_overload(f.name())));
    };
    let result = match f {
        Global::Ip => parse_ip(text).map(Value::Ip),
        Global::Cidr => parse_cidr(text).map(Value::Cidr),
        Global::IsIp => Ok(Value::Bool(parse_ip(text).is_ok())),
        Global::IsCidr => Ok(Value::Bool(parse_cidr(text).is_ok())),
        Global::IsCanonical => parse_ip(text).map(|ip| Value::Bool(ip_to_string(&ip) == text)),
    };
    Some(result)
}

/// Member functions of the library, by name.
pub(super) fn member(name: &str, target: &Value, args: &[Value]) -> CallResult {
    Member::from_name(name).and_then(|f| call_member(f, target, args))
}

/// Calls a member function of the library.
pub(super) fn call_member(f: Member, target: &Value, args: &[Value]) -> CallResult {
    use Member as M;
    Some(match (f, target, args) {
        (M::Family, Value::Ip(ip), []) => Ok(Value::Int(if ip.is_ipv4() { 4 } else { 6 })),
        (M::IsUnspecified, Value::Ip(ip), []) => Ok(Value::Bool(ip.is_unspecified())),
        (M::IsLoopback, Value::Ip(ip), []) => Ok(Value::Bool(ip.is_loopback())),
        (M::IsGlobalUnicast, Value::Ip(ip), []) => Ok(Value::Bool(is_global_unicast(ip))),
        (M::IsLinkLocalMulticast, Value::Ip(ip), []) => {
            Ok(Value::Bool(is_link_local_multicast(ip)))
        }
        (M::IsLinkLocalUnicast, Value::Ip(ip), []) => Ok(Value::Bool(is_link_local_unicast(ip))),
        (M::ContainsIp, Value::Cidr(net), [Value::Ip(ip)]) => Ok(Value::Bool(net.contains(ip))),
        (M::ContainsIp, Value::Cidr(net), [Value::String(s)]) => {
            parse_ip(s).map(|ip| Value::Bool(net.contains(&ip)))
        }
        (M::ContainsCidr, Value::Cidr(net), [Value::Cidr(other)]) => {
            Ok(Value::Bool(contains_cidr(net, other)))
        }
        (M::ContainsCidr, Value::Cidr(net), [Value::String(s)]) => {
            parse_cidr(s).map(|other| Value::Bool(contains_cidr(net, &other)))
        }
        (M::Ip, Value::Cidr(net), []) => Ok(Value::Ip(net.addr())),
        (M::Masked, Value::Cidr(net), []) => Ok(Value::Cidr(net.trunc())),
        (M::PrefixLength, Value::Cidr(net), []) => Ok(Value::Int(i64::from(net.prefix_len()))),
        _ => Err(no_overload(f.name())),
    })
}

/// The canonical text of an IP address (RFC 5952 for IPv6), as `string(ip)` gives it.
#[must_use]
pub fn ip_to_string(ip: &IpAddr) -> String {
    ip.to_string()
}

/// The text of a CIDR (`address/prefix`, host bits kept), as `string(cidr)` gives it.
#[must_use]
pub fn cidr_to_string(net: &IpNet) -> String {
    format!("{}/{}", ip_to_string(&net.addr()), net.prefix_len())
}

/// Parse an IP address the way cel-go's `ip()` does.
///
/// # Errors
/// An [`EvalError::InvalidArgument`] for malformed text, a zone, or an IPv4-mapped IPv6
/// address in dotted form.
pub fn parse_ip(text: &str) -> Result<IpAddr, EvalError> {
    if text.contains('%') {
        return Err(invalid(format!(
            "IP Address `{text}` with zone value is not allowed"
        )));
    }
    let ip: IpAddr = text.parse().map_err(|_| {
        invalid(format!(
            "IP Address `{text}` parse error during conversion from string"
        ))
    })?;
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(_) if text.contains('.') => Err(invalid(format!(
                "IPv4-mapped IPv6 address `{text}` is not allowed"
            ))),
            Some(v4) => Ok(IpAddr::V4(v4)),
            None => Ok(ip),
        },
        IpAddr::V4(_) => Ok(ip),
    }
}

/// Parse a CIDR the way cel-go's `cidr()` does (Go's `netip.ParsePrefix`, no zones, no
/// IPv4-mapped IPv6 addresses).
///
/// # Errors
/// An [`EvalError::InvalidArgument`] for malformed text.
pub fn parse_cidr(text: &str) -> Result<IpNet, EvalError> {
    let error = || {
        invalid(format!(
            "network address `{text}` parse error during conversion from string"
        ))
    };
    if text.contains('%') {
        return Err(invalid(format!(
            "CIDR `{text}` with zone value is not allowed"
        )));
    }
    let (address, bits) = text.split_once('/').ok_or_else(error)?;
    let valid_bits = !bits.is_empty()
        && bits.bytes().all(|b| b.is_ascii_digit())
        && (bits == "0" || !bits.starts_with('0'));
    if !valid_bits {
        return Err(error());
    }
    let prefix: u8 = bits.parse().map_err(|_| error())?;
    let ip: IpAddr = address.parse().map_err(|_| error())?;
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return Err(invalid(format!(
                "IPv4-mapped IPv6 address `{text}` is not allowed"
            )));
        }
    }
    IpNet::new(ip, prefix).map_err(|_| error())
}

/// Whether `outer` contains all of `inner` (same family, no longer prefix, overlapping).
fn contains_cidr(outer: &IpNet, inner: &IpNet) -> bool {
    outer.prefix_len() <= inner.prefix_len() && outer.contains(&inner.network())
}

/// Go's `netip.Addr.IsGlobalUnicast`: private ranges count as global unicast.
fn is_global_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || is_v6_link_local_unicast(v6))
        }
    }
}

/// 224.0.0.0/24 or ff02::/16.
fn is_link_local_multicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            a == 224 && b == 0 && c == 0
        }
        IpAddr::V6(v6) => v6.segments()[0] == 0xff02,
    }
}

/// 169.254.0.0/16 or fe80::/10.
fn is_link_local_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => is_v6_link_local_unicast(v6),
    }
}

fn is_v6_link_local_unicast(v6: &Ipv6Addr) -> bool {
    v6.segments()[0] & 0xffc0 == 0xfe80
}

/// RFC 1918 private IPv4 ranges (ngrok's `isPrivateIp`).
pub(super) fn is_rfc1918(ip: &Ipv4Addr) -> bool {
    ip.is_private()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::ext::{call, values_equal};

    fn ip(text: &str) -> Value {
        call("ip", None, &[Value::string(text)]).unwrap().unwrap()
    }

    fn cidr(text: &str) -> Value {
        call("cidr", None, &[Value::string(text)]).unwrap().unwrap()
    }

    fn member_bool(name: &str, target: &Value, args: &[Value]) -> bool {
        match call(name, Some(target), args).unwrap().unwrap() {
            Value::Bool(b) => b,
            other => panic!("expected a bool, got {other:?}"),
        }
    }

    #[test]
    fn parses_and_prints_addresses() {
        assert_eq!(parse_ip("192.168.0.1").unwrap().to_string(), "192.168.0.1");
        assert_eq!(
            ip_to_string(&parse_ip("2001:DB8::68").unwrap()),
            "2001:db8::68"
        );
        assert!(parse_ip("127.0.0.1.0").is_err());
        assert!(parse_ip("2001:db8:::68").is_err());
        assert!(parse_ip("fe80::1%en0").is_err());
        assert!(parse_ip("::ffff:192.168.0.1").is_err());
        assert!(parse_ip("01.2.3.4").is_err());
        assert!(values_equal(&ip("::ffff:c0a8:1"), &ip("192.168.0.1")));
        assert!(!values_equal(&ip("::"), &ip("::ffff")));
        assert!(call("ip", None, &[Value::Int(1)]).unwrap().is_err());
        assert_eq!(
            ip_to_string(&parse_ip("2001:DB8::68").unwrap()),
            "2001:db8::68"
        );
        assert_eq!(
            cidr_to_string(&parse_cidr("10.0.0.1/8").unwrap()),
            "10.0.0.1/8"
        );
    }

    #[test]
    fn is_ip_is_cidr_and_canonical() {
        let b = |name: &str, text: &str| call(name, None, &[Value::string(text)]).unwrap();
        assert!(matches!(b("isIP", "10.0.0.1"), Ok(Value::Bool(true))));
        assert!(matches!(b("isIP", "10.0.0.1/8"), Ok(Value::Bool(false))));
        assert!(matches!(b("isCIDR", "10.0.0.1/8"), Ok(Value::Bool(true))));
        assert!(matches!(
            b("ip.isCanonical", "2001:db8::68"),
            Ok(Value::Bool(true))
        ));
        assert!(matches!(
            b("ip.isCanonical", "2001:DB8::68"),
            Ok(Value::Bool(false))
        ));
        assert!(b("ip.isCanonical", "127.0.0.1.0").is_err());
        let cidr_value = cidr("192.168.0.0/24");
        assert!(matches!(
            call("isIP", None, &[cidr_value]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
    }

    #[test]
    fn address_classes() {
        assert!(member_bool("isUnspecified", &ip("0.0.0.0"), &[]));
        assert!(member_bool("isUnspecified", &ip("::"), &[]));
        assert!(member_bool("isLoopback", &ip("::1"), &[]));
        assert!(member_bool("isGlobalUnicast", &ip("192.168.0.1"), &[]));
        assert!(!member_bool("isGlobalUnicast", &ip("255.255.255.255"), &[]));
        assert!(!member_bool("isGlobalUnicast", &ip("ff00::1"), &[]));
        assert!(member_bool("isLinkLocalMulticast", &ip("224.0.0.1"), &[]));
        assert!(!member_bool("isLinkLocalMulticast", &ip("224.0.1.1"), &[]));
        assert!(member_bool("isLinkLocalMulticast", &ip("ff02::1"), &[]));
        assert!(member_bool(
            "isLinkLocalUnicast",
            &ip("169.254.169.254"),
            &[]
        ));
        assert!(member_bool("isLinkLocalUnicast", &ip("fe80::1"), &[]));
        assert!(!member_bool("isLinkLocalUnicast", &ip("fd80::1"), &[]));
        assert!(matches!(
            call("family", Some(&ip("2001:db8::68")), &[]),
            Some(Ok(Value::Int(6)))
        ));
    }

    #[test]
    fn cidr_parsing_and_members() {
        assert!(parse_cidr("192.168.0.0/").is_err());
        assert!(parse_cidr("192.168.0.0/33").is_err());
        assert!(parse_cidr("192.168.0.0/024").is_err());
        assert!(parse_cidr("::ffff:192.168.0.1/24").is_err());
        assert!(parse_cidr("fe80::1%en0/24").is_err());
        assert_eq!(
            cidr_to_string(&parse_cidr("192.168.0.1/24").unwrap()),
            "192.168.0.1/24"
        );
        let net = cidr("192.168.0.0/24");
        assert!(!member_bool("containsIP", &net, &[ip("192.168.1.1")]));
        assert!(member_bool(
            "containsIP",
            &net,
            &[Value::string("192.168.0.7")]
        ));
        assert!(member_bool("containsCIDR", &net, &[cidr("192.168.0.1/32")]));
        assert!(!member_bool(
            "containsCIDR",
            &net,
            &[cidr("192.168.0.0/23")]
        ));
        assert!(!member_bool(
            "containsIP",
            &cidr("2001:db8::/32"),
            &[ip("192.168.1.1")]
        ));
        assert!(member_bool(
            "containsCIDR",
            &cidr("2001:db8::/32"),
            &[Value::string("2001:db8::/33")]
        ));
        let masked = call("masked", Some(&cidr("192.168.0.1/24")), &[])
            .unwrap()
            .unwrap();
        assert!(values_equal(&masked, &cidr("192.168.0.0/24")));
        assert!(!values_equal(
            &cidr("192.168.0.1/24"),
            &cidr("192.168.0.0/24")
        ));
        let address = call("ip", Some(&cidr("2001:db8::/32")), &[])
            .unwrap()
            .unwrap();
        assert!(values_equal(&address, &ip("2001:db8::")));
        assert!(matches!(
            call("prefixLength", Some(&net), &[]),
            Some(Ok(Value::Int(24)))
        ));
        assert!(matches!(
            call("prefixLength", Some(&ip("1.2.3.4")), &[]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
    }
}
