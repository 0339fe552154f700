//! Timestamps and durations: conversions, arithmetic with range checks, and the accessor
//! functions with optional time zones.
//!
//! Ranges follow cel-go: timestamps lie in `0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999999Z`,
//! durations fit a signed 64-bit count of nanoseconds (about ±292 years).
//!
//! Known gap: timestamps are `jiff::Timestamp`s, whose range ends at
//! `9999-12-30T22:00:00.999999999Z` (jiff leaves room for any UTC offset), so instants in the
//! last 26 hours of CEL's range are reported as out of range.

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

use crate::error::EvalError;
use crate::value::Value;

type EvalResult = Result<Value, EvalError>;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// `0001-01-01T00:00:00Z` in Unix seconds.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// `9999-12-31T23:59:59Z` in Unix seconds.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

fn range_error(what: &str) -> EvalError {
    EvalError::InvalidArgument(format!("{what} out of range"))
}

fn no_overload(function: &str) -> EvalError {
    EvalError::NoMatchingOverload {
        function: function.to_owned(),
    }
}

/// A timestamp as nanoseconds since the Unix epoch.
pub(super) fn timestamp_nanos(t: Timestamp) -> i128 {
    t.as_nanosecond()
}

/// A duration as nanoseconds.
pub(super) fn duration_nanos(d: SignedDuration) -> i128 {
    d.as_nanos()
}

/// A timestamp from Unix nanoseconds, checking CEL's range.
pub(super) fn checked_timestamp(nanos: i128) -> Result<Timestamp, EvalError> {
    let min = i128::from(MIN_TIMESTAMP_SECONDS) * NANOS_PER_SECOND;
    let max = i128::from(MAX_TIMESTAMP_SECONDS) * NANOS_PER_SECOND + (NANOS_PER_SECOND - 1);
    if !(min..=max).contains(&nanos) {
        return Err(range_error("timestamp"));
    }
    Timestamp::from_nanosecond(nanos).map_err(|_| range_error("timestamp"))
}

/// A duration from nanoseconds, checking CEL's range.
pub(super) fn checked_duration(nanos: i128) -> Result<SignedDuration, EvalError> {
    let nanos = i64::try_from(nanos).map_err(|_| range_error("duration"))?;
    Ok(SignedDuration::from_nanos(nanos))
}

/// `timestamp + duration`.
pub(super) fn add_timestamp(t: Timestamp, nanos: i128) -> Result<Timestamp, EvalError> {
    checked_timestamp(timestamp_nanos(t) + nanos)
}

/// `timestamp(x)`.
pub(super) fn to_timestamp(x: &Value) -> EvalResult {
    match x {
        Value::Timestamp(t) => Ok(Value::Timestamp(*t)),
        Value::Int(seconds) => {
            checked_timestamp(i128::from(*seconds) * NANOS_PER_SECOND).map(Value::Timestamp)
        }
        Value::String(s) => parse_timestamp(s).map(Value::Timestamp),
        _ => Err(no_overload("timestamp")),
    }
}

/// Parses an RFC 3339 timestamp (`2009-02-13T23:31:30Z`, `…30.5+01:00`).
fn parse_timestamp(s: &str) -> Result<Timestamp, EvalError> {
    let bad = || EvalError::InvalidArgument(format!("invalid timestamp `{s}`"));
    // RFC 3339 as Go parses it: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with an upper-case
    // `T` and `Z`; jiff accepts a few more forms, so check the shape first.
    let bytes = s.as_bytes();
    let offset_ok = bytes.last() == Some(&b'Z')
        || (bytes.len() >= 6 && matches!(bytes[bytes.len() - 6], b'+' | b'-'));
    if bytes.len() < 20
        || bytes.get(10) != Some(&b'T')
        || !bytes[..4].iter().all(u8::is_ascii_digit)
        || !offset_ok
    {
        return Err(bad());
    }
    let t: Timestamp = s.parse().map_err(|_| bad())?;
    checked_timestamp(timestamp_nanos(t))
}

/// `duration(x)`.
pub(super) fn to_duration(x: &Value) -> EvalResult {
    match x {
        Value::Duration(d) => Ok(Value::Duration(*d)),
        Value::String(s) => parse_duration(s).map(Value::Duration),
        _ => Err(no_overload("duration")),
    }
}

/// Parses a duration the way Go's `time.ParseDuration` does: an optional sign, then one or
/// more decimal numbers each with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g.
/// `1h30m`, `-1.5s`, `100ms`; a bare `0` is allowed.
///
/// # Errors
/// [`EvalError::InvalidArgument`] for malformed text or a duration outside CEL's range.
pub fn parse_duration(s: &str) -> Result<SignedDuration, EvalError> {
    let bad = || EvalError::InvalidArgument(format!("invalid duration `{s}`"));
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3600 * NANOS_PER_SECOND,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| range_error("duration"))?
        };
        let mut amount = whole
            .checked_mul(unit)
            .ok_or_else(|| range_error("duration"))?;
        // Fractional part: scale digit by digit, truncating as Go does.
        let mut scale = unit;
        for digit in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            amount += i128::from(digit - b'0') * scale;
        }
        total = total
            .checked_add(amount)
            .ok_or_else(|| range_error("duration"))?;
        if total > i128::from(i64::MAX) + 1 {
            return Err(range_error("duration"));
        }
    }
    checked_duration(if negative { -total } else { total })
}

/// `string(timestamp)`: RFC 3339 in UTC with the fractional seconds trimmed of trailing zeros.
#[must_use]
pub fn format_timestamp(t: Timestamp) -> String {
    let dt = t.to_zoned(TimeZone::UTC).datetime();
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    // The civil time's fraction: the timestamp's own is negative before 1970.
    let nanos = dt.subsec_nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// `string(duration)`: seconds with the shortest decimal fraction, e.g. `1.5s`.
#[must_use]
pub fn format_duration(d: SignedDuration) -> String {
    #[allow(clippy::cast_precision_loss)]
    let seconds = d.as_secs() as f64 + f64::from(d.subsec_nanos()) / 1e9;
    format!("{seconds}s")
}

/// The time zone named by a `getHours('…')`-style argument: an IANA name (`Europe/Paris`,
/// `UTC`) or a fixed offset `[+|-]HH:MM`.
fn time_zone(name: &str) -> Result<TimeZone, EvalError> {
    let bad = || EvalError::InvalidArgument(format!("invalid time zone `{name}`"));
    if let Some((hours, minutes)) = name.split_once(':') {
        let h: i32 = hours.parse().map_err(|_| bad())?;
        let m: i32 = minutes.parse().map_err(|_| bad())?;
        if !(0..60).contains(&m) || !(-23..=23).contains(&h) {
            return Err(bad());
        }
        let total = if hours.starts_with('-') {
            h * 3600 - m * 60
        } else {
            h * 3600 + m * 60
        };
        return Offset::from_seconds(total)
            .map(TimeZone::fixed)
            .map_err(|_| bad());
    }
    TimeZone::get(name).map_err(|_| bad())
}

crate::interp::ext::function_ids! {
    /// The timestamp and duration accessors.
    pub(crate) enum Accessor {
        FullYear = "getFullYear",
        Month = "getMonth",
        Date = "getDate",
        DayOfMonth = "getDayOfMonth",
        DayOfWeek = "getDayOfWeek",
        DayOfYear = "getDayOfYear",
        Hours = "getHours",
        Minutes = "getMinutes",
        Seconds = "getSeconds",
        Milliseconds = "getMilliseconds",
    }
}

/// The timestamp and duration accessors (`getFullYear`, `getHours`, …).
pub(super) fn accessor(f: Accessor, target: &Value, args: &[Value]) -> EvalResult {
    match (target, args) {
        (Value::Timestamp(t), []) => timestamp_accessor(f, *t, &TimeZone::UTC),
        (Value::Timestamp(t), [Value::String(tz)]) => timestamp_accessor(f, *t, &time_zone(tz)?),
        (Value::Duration(d), []) => duration_accessor(f, *d),
        _ => Err(no_overload(f.name())),
    }
}

fn timestamp_accessor(f: Accessor, t: Timestamp, tz: &TimeZone) -> EvalResult {
    let zoned = t.to_zoned(tz.clone());
    let value = match f {
        Accessor::FullYear => i64::from(zoned.year()),
        Accessor::Month => i64::from(zoned.month()) - 1,
        Accessor::Date => i64::from(zoned.day()),
        Accessor::DayOfMonth => i64::from(zoned.day()) - 1,
        Accessor::DayOfWeek => i64::from(zoned.weekday().to_sunday_zero_offset()),
        Accessor::DayOfYear => i64::from(zoned.day_of_year()) - 1,
        Accessor::Hours => i64::from(zoned.hour()),
        Accessor::Minutes => i64::from(zoned.minute()),
        Accessor::Seconds => i64::from(zoned.second()),
        Accessor::Milliseconds => i64::from(zoned.subsec_nanosecond()) / 1_000_000,
    };
    Ok(Value::Int(value))
}

fn duration_accessor(f: Accessor, d: SignedDuration) -> EvalResult {
    let nanos = duration_nanos(d);
    let value = match f {
        Accessor::Hours => nanos / (3600 * NANOS_PER_SECOND),
        Accessor::Minutes => nanos / (60 * NANOS_PER_SECOND),
        Accessor::Seconds => nanos / NANOS_PER_SECOND,
        // The milliseconds *component*, as cel-go and the conformance suite define it.
        Accessor::Milliseconds => (nanos % NANOS_PER_SECOND) / 1_000_000,
        _ => return Err(no_overload(f.name())),
    };
    i64::try_from(value)
        .map(Value::Int)
        .map_err(|_| EvalError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        let nanos = |s: &str| parse_duration(s).map(|d| d.as_nanos());
        assert_eq!(nanos("1h30m").unwrap(), 5_400 * NANOS_PER_SECOND);
        assert_eq!(nanos("-1.5s").unwrap(), -1_500_000_000);
        assert_eq!(nanos("0").unwrap(), 0);
        assert_eq!(nanos("100ms").unwrap(), 100_000_000);
        assert_eq!(nanos("1µs").unwrap(), 1_000);
        assert!(nanos("1").is_err());
        assert!(nanos("").is_err());
        assert!(nanos("320000000000s").is_err());
        assert!(nanos("1d").is_err());
    }

    #[test]
    fn timestamps_format_and_check_range() {
        let t = parse_timestamp("2009-02-13T23:31:30.120Z").unwrap();
        assert_eq!(format_timestamp(t), "2009-02-13T23:31:30.12Z");
        let t = parse_timestamp("1969-12-31T23:59:59.9Z").unwrap();
        assert_eq!(format_timestamp(t), "1969-12-31T23:59:59.9Z");
        assert!(parse_timestamp("10000-01-01T00:00:00Z").is_err());
        assert!(
            checked_timestamp(i128::from(MIN_TIMESTAMP_SECONDS) * NANOS_PER_SECOND - 1).is_err()
        );
        assert_eq!(format_duration(SignedDuration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn time_zones_accept_names_and_offsets() {
        assert!(time_zone("America/St_Johns").is_ok());
        assert!(time_zone("+05:30").is_ok());
        assert!(time_zone("02:00").is_ok());
        assert!(time_zone("Mars/Olympus").is_err());
    }
}
