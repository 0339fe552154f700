//! Host routing: exact names and leading-wildcard patterns (`*.example.test`), IO-free.

use std::collections::HashMap;

/// Errors for host patterns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The name is not a valid DNS host name or wildcard pattern.
    #[error("invalid host name `{0}`")]
    Invalid(String),
}

/// A normalised host pattern: an exact name or `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Matches one name.
    Exact(String),
    /// Matches any name with at least one more label in front of the suffix.
    Wildcard(String),
}

impl HostPattern {
    /// Parses and lower-cases a pattern; `*` is only allowed as the whole leftmost label.
    pub fn parse(s: &str) -> Result<Self, HostError> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        if let Some(suffix) = lower.strip_prefix("*.") {
            if valid_name(suffix) {
                return Ok(Self::Wildcard(suffix.to_owned()));
            }
        } else if valid_name(&lower) {
            return Ok(Self::Exact(lower));
        }
        Err(HostError::Invalid(s.to_owned()))
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

/// True for a syntactically valid DNS name (letters, digits, hyphens; 1..=63 per label).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Normalises a `Host` header or `:authority` value: strips a port and a trailing dot,
/// lower-cases. Returns `None` for values that are not host names.
pub fn normalize_host(authority: &str) -> Option<String> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: never routed by name.
        return rest.split(']').next().map(str::to_ascii_lowercase);
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    valid_name(&host).then_some(host)
}

/// A routing table from host patterns to values. Exact names win over wildcards; among
/// wildcards the longest suffix wins.
#[derive(Debug, Clone)]
pub struct HostTable<T> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }
}

impl<T> HostTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces the value for `pattern`, returning the previous one.
    pub fn insert(&mut self, pattern: &HostPattern, value: T) -> Option<T> {
        match pattern {
            HostPattern::Exact(h) => self.exact.insert(h.clone(), value),
            HostPattern::Wildcard(s) => self.wildcard.insert(s.clone(), value),
        }
    }

    /// The value stored for exactly this pattern.
    pub fn get(&self, pattern: &HostPattern) -> Option<&T> {
        match pattern {
            HostPattern::Exact(h) => self.exact.get(h),
            HostPattern::Wildcard(s) => self.wildcard.get(s),
        }
    }

    /// Removes the value for `pattern`.
    pub fn remove(&mut self, pattern: &HostPattern) -> Option<T> {
        match pattern {
            HostPattern::Exact(h) => self.exact.remove(h),
            HostPattern::Wildcard(s) => self.wildcard.remove(s),
        }
    }

    /// Finds the value serving a normalised host name.
    pub fn lookup(&self, host: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(host) {
            return Some(v);
        }
        let mut rest = host;
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(v) = self.wildcard.get(suffix) {
                return Some(v);
            }
            rest = suffix;
        }
        None
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_longest_suffix_wins() {
        let mut t = HostTable::new();
        t.insert(&p("*.example.test"), 1);
        t.insert(&p("*.eu.example.test"), 2);
        t.insert(&p("api.eu.example.test"), 3);
        assert_eq!(t.lookup("a.example.test"), Some(&1));
        assert_eq!(t.lookup("x.y.example.test"), Some(&1));
        assert_eq!(t.lookup("a.eu.example.test"), Some(&2));
        assert_eq!(t.lookup("api.eu.example.test"), Some(&3));
        assert_eq!(t.lookup("example.test"), None);
        assert_eq!(t.lookup("other.test"), None);
        assert_eq!(t.remove(&p("*.eu.example.test")), Some(2));
        assert_eq!(t.lookup("a.eu.example.test"), Some(&1));
    }

    #[test]
    fn patterns_are_validated_and_normalised() {
        assert_eq!(
            p("App.Example.TEST."),
            HostPattern::Exact("app.example.test".into())
        );
        assert_eq!(p("*.Example.test").to_string(), "*.example.test");
        for bad in ["", "*", "a.*.b", "-a.b", "a..b", "a b", "*.", "é.test"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authority_normalisation() {
        assert_eq!(normalize_host("A.test:8443").as_deref(), Some("a.test"));
        assert_eq!(normalize_host("a.test").as_deref(), Some("a.test"));
        assert_eq!(normalize_host("[::1]:80").as_deref(), Some("::1"));
        assert_eq!(normalize_host("bad host"), None);
        assert_eq!(normalize_host(""), None);
    }
}
