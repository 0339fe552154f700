//! The operator's allow list of `http-request` destinations (edge setting `http_request_allow`).
//!
//! An entry is `[scheme://]target[:port]`:
//! * `scheme`: `http` or `https`; absent = both.
//! * `target`: a host name (`api.example.com`), a leading wildcard (`*.example.com`: any name
//!   with at least one more label), `*` (any host name), an IP address (`192.0.2.7`,
//!   `[2001:db8::1]`) or a CIDR range (`10.0.0.0/8`, `[fd00::/8]`).
//! * `port`: a number or `*`; absent = the default port of the request's scheme (80 / 443).
//!
//! A destination is allowed when its scheme, port and host match one entry. Host names are
//! checked twice: the name against the name entries before anything is sent, then every address
//! it resolves to when connecting. A resolved address must be public (not loopback, private,
//! link-local, CGNAT, unique-local, multicast, unspecified or reserved) unless an IP or CIDR entry
//! covers it, so an allowed name whose DNS points inside the operator's network (DNS rebinding)
//! is refused. URLs with an IP address as host are allowed only by IP and CIDR entries. The
//! connection goes to the address that was checked.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The edge setting the allow list comes from (named in refusals).
pub const SETTING: &str = "http_request_allow";

/// Why an allow-list entry is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{SETTING}` entry `{entry}`: {reason}")]
pub struct AllowError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A URL scheme `http-request` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http`.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// Parses `http` / `https` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else {
            None
        }
    }

    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Any host name (never an IP literal).
    AnyName,
    /// Exactly this name.
    Name(String),
    /// Any name with at least one more label in front of this suffix.
    Suffix(String),
    /// Addresses in this range (IP literals and resolved addresses).
    Net(IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortMatch {
    Default,
    Any,
    Exact(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: Option<Scheme>,
    target: Target,
    port: PortMatch,
}

impl Rule {
    fn matches_scheme_port(&self, scheme: Scheme, port: u16) -> bool {
        self.scheme.is_none_or(|s| s == scheme)
            && match self.port {
                PortMatch::Any => true,
                PortMatch::Default => port == scheme.default_port(),
                PortMatch::Exact(p) => p == port,
            }
    }
}

/// The host of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name: lower-case, no trailing dot.
    Name(String),
    /// An IP address.
    Ip(IpAddr),
}

/// A destination: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The scheme.
    pub scheme: Scheme,
    /// The host.
    pub host: Host,
    /// The port (explicit or the scheme's default).
    pub port: u16,
}

impl Destination {
    /// The destination of a URL; `Err` names why it cannot be one (not http(s), no host).
    pub fn of(url: &url::Url) -> Result<Self, String> {
        let scheme = Scheme::parse(url.scheme()).ok_or_else(|| {
            format!(
                "`{}` is not an http or https URL",
                super::truncate(url.as_str())
            )
        })?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) => Host::Name(d.trim_end_matches('.').to_ascii_lowercase()),
            Some(url::Host::Ipv4(ip)) => Host::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Host::Ip(IpAddr::V6(ip)),
            None => return Err(format!("`{}` has no host", super::truncate(url.as_str()))),
        };
        let port = url.port().unwrap_or(scheme.default_port());
        Ok(Self { scheme, host, port })
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            Host::Name(n) => f.write_str(n)?,
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            Host::Ip(ip) => write!(f, "{ip}")?,
        }
        write!(f, ":{}", self.port)
    }
}

/// The destinations `http-request` may reach. Empty (the default): none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<Rule>,
    entries: Vec<String>,
}

/// At most this many entries (the list is scanned per request).
pub const MAX_ENTRIES: usize = 256;

impl AllowList {
    /// Nothing allowed.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses the entries of the edge setting.
    ///
    /// # Errors
    /// The first invalid entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AllowError> {
        if entries.len() > MAX_ENTRIES {
            return Err(AllowError {
                entry: format!("({} entries)", entries.len()),
                reason: format!("at most {MAX_ENTRIES} entries are allowed"),
            });
        }
        let mut list = Self::default();
        for e in entries {
            let e = e.as_ref().trim();
            list.rules.push(parse_rule(e)?);
            list.entries.push(e.to_owned());
        }
        Ok(list)
    }

    /// True when nothing is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The entries as written.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Whether `dest` may be requested (before name resolution).
    pub fn allows(&self, dest: &Destination) -> bool {
        self.rules.iter().any(|r| {
            r.matches_scheme_port(dest.scheme, dest.port)
                && match (&r.target, &dest.host) {
                    (Target::AnyName, Host::Name(_)) => true,
                    (Target::Name(n), Host::Name(h)) => n == h,
                    (Target::Suffix(s), Host::Name(h)) => h
                        .strip_suffix(s.as_str())
                        .is_some_and(|front| front.len() > 1 && front.ends_with('.')),
                    (Target::Net(net), Host::Ip(ip)) => net.contains(&canonical(*ip)),
                    _ => false,
                }
        })
    }

    /// Whether a host name may connect to `ip`, an address it resolved to: public addresses
    /// always, others only when an IP or CIDR entry covers them.
    pub fn allows_resolved(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip)
            || self
                .rules
                .iter()
                .any(|r| matches!(&r.target, Target::Net(n) if n.contains(&ip)))
    }
}

/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// True for globally routable unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const SPECIAL: &[([u8; 4], u8)] = &[
        ([0, 0, 0, 0], 8),       // "this network"
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata services)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !SPECIAL.iter().any(|(net, len)| in_v4(ip, *net, *len))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64: may reach IPv4 private space
        || seg[0] == 0x2002 // 6to4: embeds an IPv4 address
        || (seg[0] == 0 && seg[1] == 0 && seg[2] == 0 && seg[3] == 0 && seg[4] == 0 && seg[5] == 0);
    !special
}

fn parse_rule(entry: &str) -> Result<Rule, AllowError> {
    let bad = |reason: &str| AllowError {
        entry: super::truncate(entry),
        reason: reason.to_owned(),
    };
    if entry.is_empty() {
        return Err(bad("empty entry"));
    }
    let (scheme, rest) = match entry.split_once("://") {
        Some((s, rest)) => (
            Some(Scheme::parse(s).ok_or_else(|| bad("the scheme must be `http` or `https`"))?),
            rest,
        ),
        None => (None, entry),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['?', '#', '@']) {
        return Err(bad("an entry has no path, query or user info"));
    }
    // Split off the port: `[v6...]:port` or `target:port` (names, IPv4 and v4 CIDRs have no
    // colon of their own).
    let (target, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (inside, after) = inner
            .split_once(']')
            .ok_or_else(|| bad("unclosed `[` in an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("unexpected text after `]`"))?,
            ),
        };
        (inside, port)
    } else {
        match rest.rsplit_once(':') {
            Some((t, p)) => (t, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => PortMatch::Default,
        Some("*") => PortMatch::Any,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => PortMatch::Exact(n),
            _ => return Err(bad("the port must be 1-65535 or `*`")),
        },
    };
    let target = if target == "*" {
        Target::AnyName
    } else if target.contains('/') {
        let net: IpNet = target
            .parse()
            .map_err(|_| bad("not a valid CIDR range (entries have no path)"))?;
        if net != net.trunc() {
            return Err(bad("the CIDR range has host bits set"));
        }
        Target::Net(net)
    } else if let Ok(ip) = target.parse::<IpAddr>() {
        Target::Net(IpNet::from(canonical(ip)))
    } else if target.contains(':') {
        return Err(bad("write IPv6 addresses in brackets (`[2001:db8::1]`)"));
    } else {
        let lower = target.trim_end_matches('.').to_ascii_lowercase();
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower),
        };
        if !crate::routing::valid_name(&name) {
            return Err(bad("not a valid host name, IP address or CIDR range"));
        }
        if name.rsplit('.').next() == Some("internal") {
            return Err(bad(
                "internal endpoints are not reached through the allow list",
            ));
        }
        if wild {
            Target::Suffix(name)
        } else {
            Target::Name(name)
        }
    };
    Ok(Rule {
        scheme,
        target,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).unwrap()
    }

    fn dest(url: &str) -> Destination {
        Destination::of(&url::Url::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let l = AllowList::none();
        assert!(l.is_empty());
        assert!(!l.allows(&dest("https://api.example.com/")));
        assert!(!l.allows(&dest("http://127.0.0.1:8080/")));
        assert!(!l.allows_resolved("127.0.0.1".parse().unwrap()));
        assert!(l.allows_resolved("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn names_match_exactly_or_by_suffix_with_scheme_and_port() {
        let l = list(&[
            "https://api.example.com",
            "*.svc.example.com:8443",
            "http://x.test:*",
        ]);
        assert!(l.allows(&dest("https://API.example.com./v1")));
        assert!(!l.allows(&dest("http://api.example.com/")), "scheme");
        assert!(!l.allows(&dest("https://api.example.com:8443/")), "port");
        assert!(!l.allows(&dest("https://evil-api.example.com/")));
        assert!(!l.allows(&dest("https://api.example.com.evil.test/")));
        assert!(l.allows(&dest("https://a.svc.example.com:8443/")));
        assert!(
            l.allows(&dest("http://a.b.svc.example.com:8443/")),
            "any scheme"
        );
        assert!(
            !l.allows(&dest("https://svc.example.com:8443/")),
            "suffix itself"
        );
        assert!(!l.allows(&dest("https://xsvc.example.com:8443/")));
        assert!(l.allows(&dest("http://x.test:1/")));
        assert!(l.allows(&dest("http://x.test/")));
        assert!(!l.allows(&dest("https://x.test/")));
    }

    #[test]
    fn ip_literals_need_ip_or_cidr_entries() {
        let l = list(&["*", "http://127.0.0.1:*", "10.0.0.0/8:9000", "[fd00::/8]"]);
        assert!(l.allows(&dest("https://anything.example/")));
        assert!(
            !l.allows(&dest("https://93.184.216.34/")),
            "`*` is names only"
        );
        assert!(l.allows(&dest("http://127.0.0.1:5555/")));
        assert!(!l.allows(&dest("https://127.0.0.1:5555/")));
        assert!(!l.allows(&dest("http://127.0.0.2:5555/")));
        assert!(l.allows(&dest("http://10.2.3.4:9000/")));
        assert!(l.allows(&dest("https://10.2.3.4:9000/")));
        assert!(!l.allows(&dest("http://10.2.3.4/")));
        assert!(l.allows(&dest("https://[fd00::1]/")));
        assert!(l.allows(&dest("http://[fd12::1]/")));
        assert!(!l.allows(&dest("http://[fd12::1]:81/")));
        assert!(
            !l.allows(&dest("http://[::ffff:10.0.0.1]/")),
            "mapped v4, port"
        );
        assert!(
            l.allows(&dest("http://[::ffff:10.0.0.1]:9000/")),
            "mapped v4"
        );
    }

    #[test]
    fn resolved_addresses_must_be_public_or_covered() {
        let l = list(&["api.example.com", "192.168.1.0/24"]);
        for ip in [
            "127.0.0.1",
            "10.1.1.1",
            "172.20.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!l.allows_resolved(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "2606:4700::1111",
            "192.168.1.20",
            "::ffff:192.168.1.9",
        ] {
            assert!(l.allows_resolved(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn invalid_entries_are_refused_naming_the_setting() {
        for bad in [
            "",
            "ftp://a.test",
            "https://a.test/path",
            "a.test:0",
            "a.test:99999",
            "a.test:x",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "2001:db8::1",
            "[2001:db8::1",
            "bad host",
            "*.",
            "svc.internal",
            "*.internal",
            "user@a.test",
        ] {
            let e = AllowList::parse(&[bad]).unwrap_err();
            assert!(e.to_string().contains("`http_request_allow`"), "{e}");
        }
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("h{i}.test")).collect();
        assert!(AllowList::parse(&many).is_err());
    }

    #[test]
    fn destinations_of_urls() {
        assert_eq!(dest("https://a.test/").to_string(), "https://a.test:443");
        assert_eq!(dest("http://[::1]:81/").to_string(), "http://[::1]:81");
        assert!(Destination::of(&url::Url::parse("ftp://a.test/").unwrap()).is_err());
        assert!(Destination::of(&url::Url::parse("data:text/plain,x").unwrap()).is_err());
    }
}
