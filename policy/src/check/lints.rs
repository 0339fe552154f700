//! Helpers for the expression-level lints.

/// Whether `s` looks like a CIDR prefix (`10.0.0.0/8`, `2001:db8::/32`).
pub(super) fn is_cidr_literal(s: &str) -> bool {
    s.contains('/') && s.parse::<ipnet::IpNet>().is_ok()
}

/// Why a string literal is not a valid argument of the conversion or parser `function`, if
/// it is not.
pub(super) fn literal_argument_error(function: &str, s: &str) -> Option<String> {
    let ok = match function {
        "duration" => is_duration(s),
        "timestamp" => is_rfc3339(s),
        "int" => s.trim().parse::<i64>().is_ok(),
        "uint" => s.trim().parse::<u64>().is_ok(),
        "double" => s.trim().parse::<f64>().is_ok(),
        "ip" => s.parse::<std::net::IpAddr>().is_ok(),
        "cidr" => s.parse::<ipnet::IpNet>().is_ok(),
        "inCidrRange" | "inCidrRanges" => s.parse::<std::net::IpAddr>().is_ok(),
        _ => return None,
    };
    if ok {
        return None;
    }
    Some(match function {
        "duration" => format!("`{s}` is not a duration such as `1h30m`, `1.5s` or `250ms`"),
        "timestamp" => format!("`{s}` is not an RFC 3339 timestamp such as `2025-01-31T12:00:00Z`"),
        "int" | "uint" => format!("`{s}` is not an integer"),
        "double" => format!("`{s}` is not a number"),
        "cidr" => format!("`{s}` is not a CIDR range such as `10.0.0.0/8`"),
        _ => format!("`{s}` is not an IP address"),
    })
}

/// Why `tz`, the time zone argument of a timestamp accessor (`getHours('Europe/Paris')`), is
/// not valid, if it is not: CEL accepts IANA names and `[±]HH:MM` offsets.
pub(super) fn time_zone_error(tz: &str) -> Option<String> {
    let b = tz.strip_prefix(['+', '-']).unwrap_or(tz).as_bytes();
    let offset = b.len() == 5
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[2] == b':'
        && b[3..].iter().all(u8::is_ascii_digit);
    if offset || jiff::tz::db().get(tz).is_ok() {
        return None;
    }
    Some(format!(
        "`{tz}` is not an IANA time zone such as `America/Los_Angeles` or a UTC offset such as `-08:00`"
    ))
}

/// Go `time.ParseDuration` syntax, as CEL's `duration()` accepts: an optional sign, then
/// numbers with units (`h`, `m`, `s`, `ms`, `us`, `µs`, `ns`), or `0`.
fn is_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !matches!(b[10], b'T' | b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok()).unwrap_or(99);
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len() && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

/// Go's canonical MIME header form (`user-agent` → `User-Agent`), or `None` when the name is
/// not a valid header token (Go leaves those unchanged).
pub(super) fn canonical_header(name: &str) -> Option<String> {
    const TOKEN_EXTRA: &str = "!#$%&'*+-.^_`|~";
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || TOKEN_EXTRA.contains(c))
    {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    Some(out)
}

/// The error of compiling `pattern` as a regular expression (RE2 syntax, via `regex`), as one
/// line.
pub(super) fn regex_error(pattern: &str) -> Option<String> {
    match regex::Regex::new(pattern) {
        Ok(_) => None,
        Err(regex::Error::CompiledTooBig(limit)) => Some(format!(
            "the compiled regular expression exceeds the size limit of {limit} bytes"
        )),
        Err(e) => {
            let text = e.to_string();
            // The syntax error's last line says what is wrong ("error: unclosed group").
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&text);
            Some(last.trim().trim_start_matches("error: ").to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_literals() {
        assert!(is_cidr_literal("10.0.0.0/8"));
        assert!(is_cidr_literal("2001:db8::/32"));
        assert!(!is_cidr_literal("10.0.0.1"));
        assert!(!is_cidr_literal("/api/v1"));
    }

    #[test]
    fn canonical_headers() {
        assert_eq!(
            canonical_header("user-agent").as_deref(),
            Some("User-Agent")
        );
        assert_eq!(canonical_header("X-API-KEY").as_deref(), Some("X-Api-Key"));
        assert_eq!(canonical_header("bad header"), None);
    }

    #[test]
    fn literal_arguments() {
        for ok in ["1h30m", "1.5s", "-3s", "250ms", "0", "10us", "2µs"] {
            assert_eq!(literal_argument_error("duration", ok), None, "{ok}");
        }
        for bad in ["1x", "", "h", "1", "1.2.3s", "1h 30m"] {
            assert!(literal_argument_error("duration", bad).is_some(), "{bad}");
        }
        for ok in ["2025-01-31T12:00:00Z", "2025-01-31t12:00:00.123+02:00"] {
            assert_eq!(literal_argument_error("timestamp", ok), None, "{ok}");
        }
        for bad in [
            "2025-01-31",
            "yesterday",
            "2025-13-01T00:00:00Z",
            "2025-01-31T12:00:00",
        ] {
            assert!(literal_argument_error("timestamp", bad).is_some(), "{bad}");
        }
        assert!(literal_argument_error("cidr", "10.0.0.0/33").is_some());
        assert_eq!(literal_argument_error("ip", "::1"), None);
        assert_eq!(literal_argument_error("int", "42"), None);
        assert_eq!(literal_argument_error("size", "x"), None);
    }

    #[test]
    fn time_zones() {
        assert_eq!(time_zone_error("America/Los_Angeles"), None);
        assert_eq!(time_zone_error("UTC"), None);
        assert_eq!(time_zone_error("+05:30"), None);
        assert_eq!(time_zone_error("02:00"), None);
        assert!(time_zone_error("PST8").is_some());
        assert!(time_zone_error("Mars/Olympus").is_some());
    }

    #[test]
    fn regex_errors_are_one_line() {
        assert_eq!(regex_error("^/api/(v1|v2)$"), None);
        let e = regex_error("(unclosed").unwrap_or_default();
        assert!(e.contains("unclosed group"), "{e}");
        assert!(regex_error("(?=lookahead)").is_some());
    }
}
