//! Wall-clock timestamps and the short duration syntax (`90s`, `1h`, `1h30m`) used by the
//! credential store, the admin API and the CLI.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with millisecond precision, stored as milliseconds since the Unix epoch and
/// rendered as RFC 3339 in UTC (`2026-11-29T20:44:03.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self(millis)
    }

    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This timestamp moved forward by `duration` (saturating).
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// This timestamp moved back by `duration` (saturating).
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }

    /// Parses an RFC 3339 timestamp (`2026-11-29T20:00:00Z`, any offset) or a relative duration
    /// meaning "that long before `now`" (`15m`, `24h`).
    pub fn parse_since(text: &str, now: Timestamp) -> Result<Self, TimeParseError> {
        let text = text.trim();
        if let Ok(duration) = parse_duration(text) {
            return Ok(now.saturating_sub(duration));
        }
        let parsed: jiff::Timestamp = text
            .parse()
            .map_err(|_| TimeParseError::Timestamp(text.to_owned()))?;
        Ok(Self(parsed.as_millisecond()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(ts) => write!(f, "{ts:.3}"),
            Err(_) => write!(f, "@{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed: jiff::Timestamp = text.parse().map_err(serde::de::Error::custom)?;
        Ok(Self(parsed.as_millisecond()))
    }
}

/// A malformed timestamp or duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeParseError {
    /// The text is neither an RFC 3339 timestamp nor a duration.
    #[error("`{0}` is neither an RFC 3339 timestamp nor a duration like `15m`")]
    Timestamp(String),
    /// The text is not a duration.
    #[error("`{0}` is not a duration (expected e.g. `0`, `90s`, `15m`, `1h30m`, `7d`)")]
    Duration(String),
}

/// The largest accepted duration: ten years. Anything longer is almost certainly a typo.
const MAX_DURATION_SECS: u64 = 10 * 366 * 24 * 3600;

/// Parses a duration written as a sequence of `<integer><unit>` parts with units `ms`, `s`, `m`,
/// `h` and `d` (`90s`, `1h30m`, `7d`), or a bare `0`.
pub fn parse_duration(text: &str) -> Result<Duration, TimeParseError> {
    let err = || TimeParseError::Duration(text.to_owned());
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(err());
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(err());
        }
        let (number, after) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| err())?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(err()),
        };
        total_ms = value
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(err)?;
        rest = after;
    }
    if total_ms / 1_000 > MAX_DURATION_SECS {
        return Err(err());
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration in the syntax [`parse_duration`] accepts (`1h30m`, `0`).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_parses_units_and_sequences() {
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn duration_rejects_garbage_and_overflow() {
        for bad in [
            "",
            "h",
            "1",
            "1x",
            "-1h",
            "1h-",
            "99999999999999d",
            "1.5h",
            "1 h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn duration_format_round_trips() {
        for text in ["0", "1d", "1h30m", "45s", "2m5s", "1s250ms"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(format_duration(parsed), text);
        }
    }

    #[test]
    fn timestamp_displays_rfc3339_and_round_trips_serde() {
        let ts = Timestamp::from_millis(1_764_448_800_123);
        assert_eq!(ts.to_string(), "2025-11-29T20:40:00.123Z");
        let json = serde_json::to_string(&ts).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), ts);
    }

    #[test]
    fn since_accepts_timestamps_and_relative_durations() {
        let now = Timestamp::from_millis(10_000_000);
        assert_eq!(
            Timestamp::parse_since("1h", now).unwrap(),
            Timestamp::from_millis(10_000_000 - 3_600_000)
        );
        assert_eq!(
            Timestamp::parse_since("1970-01-01T00:00:01Z", now).unwrap(),
            Timestamp::from_millis(1000)
        );
        assert!(Timestamp::parse_since("yesterday", now).is_err());
    }
}
