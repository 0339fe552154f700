//! Durations in configuration files: `250ms`, `10s`, `5m`, `1h`, or a bare number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Parses a duration; `None` for malformed input.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(unit_ms).map(Duration::from_millis)
}

/// Serde helper: a duration from a string or an integer number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration `{t}` (use e.g. `250ms`, `10s`, `5m`)"
            ))
        }),
    }
}

/// Serde helper for `Option<Duration>`.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "1d", "-1s", "99999999999999999999h", "1.5s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
