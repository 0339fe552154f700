//! Merged, sorted IP range tables: membership of one address in any of N CIDRs by binary
//! search, so the cost grows with log N, not N.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A set of IPv4 and IPv6 ranges, merged and sorted.
#[derive(Clone, Debug, Default)]
pub struct IpTable {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// The CIDRs (host bits cleared), to report which one matched: looked up once per prefix
    /// length present, longest first, so the cost does not grow with the number of CIDRs.
    nets: HashSet<IpNet>,
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
}

/// A CIDR as the ngrok functions read it: an IPv4-mapped IPv6 range of prefix 96 or more is the
/// IPv4 range it maps (Go's `net.IPNet`). `None` when the text is not a CIDR.
#[must_use]
pub fn parse_policy_cidr(text: &str) -> Option<IpNet> {
    let net = text.parse::<IpNet>().ok()?;
    Some(normalize(net))
}

fn normalize(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if net.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), net.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    }
}

fn merge<T: Copy + Ord + One>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_inc() => {
                if end > last.1 {
                    last.1 = end;
                }
            }
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

trait One {
    fn saturating_inc(self) -> Self;
}
impl One for u32 {
    fn saturating_inc(self) -> Self {
        self.saturating_add(1)
    }
}
impl One for u128 {
    fn saturating_inc(self) -> Self {
        self.saturating_add(1)
    }
}

fn lookup<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

impl IpTable {
    /// A table of `nets`.
    #[must_use]
    pub fn new(nets: Vec<IpNet>) -> IpTable {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in &nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        let nets: HashSet<IpNet> = nets.iter().map(IpNet::trunc).collect();
        let lens = |v4: bool| {
            let mut l: Vec<u8> = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V4(_)) == v4)
                .map(IpNet::prefix_len)
                .collect();
            l.sort_unstable_by(|a, b| b.cmp(a));
            l.dedup();
            l
        };
        IpTable {
            v4: merge(v4),
            v6: merge(v6),
            v4_lens: lens(true),
            v6_lens: lens(false),
            nets,
        }
    }

    /// Whether `ip` (IPv4-mapped IPv6 addresses count as IPv4) is in a range of the table.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => lookup(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => lookup(&self.v6, u128::from(v6)),
        }
    }

    /// The most specific CIDR of the table that contains `ip` (host bits cleared).
    #[must_use]
    pub fn matching(&self, ip: IpAddr) -> Option<IpNet> {
        let ip = ip.to_canonical();
        if !self.contains(ip) {
            return None;
        }
        match ip {
            IpAddr::V4(a) => self.v4_lens.iter().find_map(|&l| {
                let net = IpNet::V4(Ipv4Net::new(a, l).ok()?.trunc());
                self.nets.contains(&net).then_some(net)
            }),
            IpAddr::V6(a) => self.v6_lens.iter().find_map(|&l| {
                let net = IpNet::V6(Ipv6Net::new(a, l).ok()?.trunc());
                self.nets.contains(&net).then_some(net)
            }),
        }
    }

    /// The merged IPv4 ranges (first and last address), sorted.
    pub(crate) fn v4_ranges(&self) -> &[(u32, u32)] {
        &self.v4
    }

    /// The merged IPv6 ranges (first and last address), sorted.
    pub(crate) fn v6_ranges(&self) -> &[(u128, u128)] {
        &self.v6
    }

    /// Whether the table is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_finds_ranges() {
        let nets = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "11.0.0.0/8",
            "192.168.1.0/24",
            "2001:db8::/32",
        ]
        .iter()
        .filter_map(|s| parse_policy_cidr(s))
        .collect();
        let t = IpTable::new(nets);
        assert_eq!(t.v4.len(), 2);
        for (ip, want) in [
            ("10.2.3.4", true),
            ("11.255.255.255", true),
            ("12.0.0.0", false),
            ("9.255.255.255", false),
            ("192.168.1.7", true),
            ("192.168.2.7", false),
            ("2001:db8::1", true),
            ("2001:db9::1", false),
            ("::ffff:10.0.0.1", true),
        ] {
            assert_eq!(t.contains(ip.parse().unwrap()), want, "{ip}");
        }
        assert_eq!(
            t.matching("10.1.2.3".parse().unwrap())
                .map(|n| n.to_string()),
            Some("10.1.0.0/16".to_owned())
        );
        assert_eq!(
            t.matching("10.2.2.3".parse().unwrap())
                .map(|n| n.to_string()),
            Some("10.0.0.0/8".to_owned())
        );
        assert_eq!(t.matching("12.0.0.1".parse().unwrap()), None);
        assert_eq!(
            parse_policy_cidr("::ffff:10.0.0.0/104").map(|n| n.to_string()),
            Some("10.0.0.0/8".to_owned())
        );
        assert!(parse_policy_cidr("10.0.0.1").is_none());
    }
}
