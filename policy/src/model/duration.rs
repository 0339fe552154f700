//! Go duration syntax (`1h30m`, `1.5s`, `300ms`), as ngrok configs use it.

use std::time::Duration;

/// Why a duration does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Empty text.
    #[error("empty duration")]
    Empty,
    /// A number without a unit (other than `0`).
    #[error("missing unit in duration `{0}` (use ns, us, ms, s, m or h)")]
    MissingUnit(String),
    /// An unknown unit.
    #[error("unknown unit `{unit}` in duration `{text}` (use ns, us, ms, s, m or h)")]
    UnknownUnit {
        /// The unit.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// Malformed number, sign, or overflow.
    #[error("invalid duration `{0}`")]
    Invalid(String),
}

/// Parses a Go duration. Negative durations are refused (no config field takes one).
///
/// # Errors
/// [`DurationError`] when the text is not a Go duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err(DurationError::Invalid(text.to_owned()));
    }
    let mut rest = s;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(DurationError::Invalid(text.to_owned()));
        }
        let value: f64 = num
            .parse()
            .map_err(|_| DurationError::Invalid(text.to_owned()))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    text: text.to_owned(),
                });
            }
        };
        total_ns += value * scale;
        rest = tail;
    }
    if !total_ns.is_finite() || total_ns > 9.2e18 {
        return Err(DurationError::Invalid(text.to_owned()));
    }
    // Whole nanoseconds; the cast is bounded by the check above.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_syntax() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_duration("1d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
    }
}
