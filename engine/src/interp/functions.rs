//! The core function library: operators, `size`, string predicates, `matches`, conversions
//! and the type functions. Timestamp and duration functions live in [`super::time`].

use std::cell::RefCell;
use std::cmp::Ordering;
use std::sync::Arc;

use wicket_grammar::ast::BinaryOp;

use super::time;
use crate::error::EvalError;
use crate::value::{TWO_POW_63, TWO_POW_64, Value};

type EvalResult = Result<Value, EvalError>;

fn no_overload(function: &str) -> EvalError {
    EvalError::NoMatchingOverload {
        function: function.to_owned(),
    }
}

/// Maximum compiled size of a regular expression given to `matches`.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Compiled regular expressions kept per thread.
const REGEX_CACHE_LEN: usize = 16;

crate::interp::ext::function_ids! {
    /// The core library's functions.
    pub(crate) enum Core {
        Size = "size",
        Contains = "contains",
        StartsWith = "startsWith",
        EndsWith = "endsWith",
        Matches = "matches",
        Int = "int",
        Uint = "uint",
        Double = "double",
        String = "string",
        Bytes = "bytes",
        Bool = "bool",
        Timestamp = "timestamp",
        Duration = "duration",
        Dyn = "dyn",
        Type = "type",
        GetFullYear = "getFullYear",
        GetMonth = "getMonth",
        GetDate = "getDate",
        GetDayOfMonth = "getDayOfMonth",
        GetDayOfWeek = "getDayOfWeek",
        GetDayOfYear = "getDayOfYear",
        GetHours = "getHours",
        GetMinutes = "getMinutes",
        GetSeconds = "getSeconds",
        GetMilliseconds = "getMilliseconds",
    }
}

impl Core {
    fn accessor(self) -> Option<time::Accessor> {
        use time::Accessor as A;
        Some(match self {
            Core::GetFullYear => A::FullYear,
            Core::GetMonth => A::Month,
            Core::GetDate => A::Date,
            Core::GetDayOfMonth => A::DayOfMonth,
            Core::GetDayOfWeek => A::DayOfWeek,
            Core::GetDayOfYear => A::DayOfYear,
            Core::GetHours => A::Hours,
            Core::GetMinutes => A::Minutes,
            Core::GetSeconds => A::Seconds,
            Core::GetMilliseconds => A::Milliseconds,
            _ => return None,
        })
    }
}

/// Calls the core function `name`; `None` when the core library has no function of that name.
pub(super) fn call(name: &str, target: Option<&Value>, args: &[Value]) -> Option<EvalResult> {
    Core::from_name(name).and_then(|f| call_core(f, target, args))
}

/// Calls a core function; `None` when it does not apply (an accessor called without a
/// receiver: the extensions are asked next, as for an unknown name).
pub(crate) fn call_core(f: Core, target: Option<&Value>, args: &[Value]) -> Option<EvalResult> {
    if let Some(accessor) = f.accessor() {
        return target.map(|x| time::accessor(accessor, x, args));
    }
    Some(match (f, target, args) {
        (Core::Size, None, [x]) | (Core::Size, Some(x), []) => size(x),
        (Core::Contains, Some(Value::String(s)), [Value::String(t)]) => {
            Ok(Value::Bool(s.contains(&**t)))
        }
        (Core::StartsWith, Some(Value::String(s)), [Value::String(t)]) => {
            Ok(Value::Bool(s.starts_with(&**t)))
        }
        (Core::EndsWith, Some(Value::String(s)), [Value::String(t)]) => {
            Ok(Value::Bool(s.ends_with(&**t)))
        }
        (Core::Matches, None, [Value::String(s), Value::String(re)])
        | (Core::Matches, Some(Value::String(s)), [Value::String(re)]) => matches(s, re),
        (Core::Int, None, [x]) => to_int(x),
        (Core::Uint, None, [x]) => to_uint(x),
        (Core::Double, None, [x]) => to_double(x),
        (Core::String, None, [x]) => to_string(x),
        (Core::Bytes, None, [x]) => to_bytes(x),
        (Core::Bool, None, [x]) => to_bool(x),
        (Core::Timestamp, None, [x]) => time::to_timestamp(x),
        (Core::Duration, None, [x]) => time::to_duration(x),
        (Core::Dyn, None, [x]) => Ok(x.clone()),
        (Core::Type, None, [x]) => Ok(Value::Type(x.cel_type())),
        _ => Err(no_overload(f.name())),
    })
}

fn size(x: &Value) -> EvalResult {
    let len = match x {
        Value::String(s) => s.chars().count(),
        Value::Bytes(b) => b.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        _ => return Err(no_overload("size")),
    };
    Ok(Value::Int(i64::try_from(len).unwrap_or(i64::MAX)))
}

thread_local! {
    /// Recently compiled regular expressions of this thread, most recent last. Evaluations of
    /// the same expression (one per request) reuse them instead of compiling again.
    static REGEX_CACHE: RefCell<Vec<(String, regex::Regex)>> = const { RefCell::new(Vec::new()) };
}

/// `s.matches(pattern)`: RE2-style search anywhere in `s`.
fn matches(s: &str, pattern: &str) -> EvalResult {
    let cached = REGEX_CACHE.with(|cache| {
        let cache = cache.borrow();
        cache
            .iter()
            .find(|(p, _)| p == pattern)
            .map(|(_, re)| re.clone())
    });
    let re = match cached {
        Some(re) => re,
        None => {
            let re = regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    EvalError::InvalidArgument(format!("invalid regular expression: {e}"))
                })?;
            REGEX_CACHE.with(|cache| {
                let mut cache = cache.borrow_mut();
                if cache.len() >= REGEX_CACHE_LEN {
                    cache.remove(0);
                }
                cache.push((pattern.to_owned(), re.clone()));
            });
            re
        }
    };
    Ok(Value::Bool(re.is_match(s)))
}

// ---- operators ----------------------------------------------------------------------------

/// `-x`.
pub(crate) fn negate(x: &Value) -> EvalResult {
    match x {
        Value::Int(i) => i.checked_neg().map(Value::Int).ok_or(EvalError::Overflow),
        Value::Double(d) => Ok(Value::Double(-d)),
        Value::Duration(d) => time::checked_duration(
            -i128::from(d.as_secs()) * 1_000_000_000 - i128::from(d.subsec_nanos()),
        )
        .map(Value::Duration),
        _ => Err(no_overload("-_")),
    }
}

/// A strict binary operator (everything but `&&` and `||`).
pub(crate) fn binary(op: BinaryOp, a: &Value, b: &Value) -> EvalResult {
    match op {
        BinaryOp::Eq => Ok(Value::Bool(a.cel_eq(b))),
        BinaryOp::Ne => Ok(Value::Bool(!a.cel_eq(b))),
        BinaryOp::Lt => compare(a, b, |o| o == Ordering::Less),
        BinaryOp::Le => compare(a, b, |o| o != Ordering::Greater),
        BinaryOp::Gt => compare(a, b, |o| o == Ordering::Greater),
        BinaryOp::Ge => compare(a, b, |o| o != Ordering::Less),
        BinaryOp::In => contains(b, a),
        BinaryOp::Add => add(a, b),
        BinaryOp::Sub => sub(a, b),
        BinaryOp::Mul => mul(a, b),
        BinaryOp::Div => div(a, b),
        BinaryOp::Rem => rem(a, b),
        BinaryOp::And | BinaryOp::Or => Err(no_overload(op.as_str())),
    }
}

/// An ordering operator. A `NaN` operand is an error, as in cel-go ("NaN values cannot be
/// ordered"): answering `false` would break `a <= b == !(a > b)`, which the language definition
/// requires of the ordering operators.
fn compare(a: &Value, b: &Value, test: impl Fn(Ordering) -> bool) -> EvalResult {
    match a.cel_cmp(b)? {
        Some(ordering) => Ok(Value::Bool(test(ordering))),
        None => Err(EvalError::InvalidArgument(
            "cannot order a NaN value".to_owned(),
        )),
    }
}

/// `element in container`.
fn contains(container: &Value, element: &Value) -> EvalResult {
    match container {
        Value::List(items) => Ok(Value::Bool(items.iter().any(|x| x.cel_eq(element)))),
        Value::Map(map) => Ok(Value::Bool(map.contains(element))),
        _ => Err(no_overload("@in")),
    }
}

fn add(a: &Value, b: &Value) -> EvalResult {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            x.checked_add(*y).map(Value::Int).ok_or(EvalError::Overflow)
        }
        (Value::Uint(x), Value::Uint(y)) => x
            .checked_add(*y)
            .map(Value::Uint)
            .ok_or(EvalError::Overflow),
        (Value::Double(x), Value::Double(y)) => Ok(Value::Double(x + y)),
        (Value::String(x), Value::String(y)) => {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            Ok(Value::string(s))
        }
        (Value::Bytes(x), Value::Bytes(y)) => {
            let mut v = Vec::with_capacity(x.len() + y.len());
            v.extend_from_slice(x);
            v.extend_from_slice(y);
            Ok(Value::bytes(v))
        }
        (Value::List(x), Value::List(y)) => {
            if y.is_empty() {
                return Ok(Value::List(Arc::clone(x)));
            }
            if x.is_empty() {
                return Ok(Value::List(Arc::clone(y)));
            }
            let mut v = Vec::with_capacity(x.len() + y.len());
            v.extend(x.iter().cloned());
            v.extend(y.iter().cloned());
            Ok(Value::list(v))
        }
        (Value::Timestamp(t), Value::Duration(d)) | (Value::Duration(d), Value::Timestamp(t)) => {
            time::add_timestamp(*t, time::duration_nanos(*d)).map(Value::Timestamp)
        }
        (Value::Duration(x), Value::Duration(y)) => {
            time::checked_duration(time::duration_nanos(*x) + time::duration_nanos(*y))
                .map(Value::Duration)
        }
        _ => Err(no_overload("_+_")),
    }
}

fn sub(a: &Value, b: &Value) -> EvalResult {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            x.checked_sub(*y).map(Value::Int).ok_or(EvalError::Overflow)
        }
        (Value::Uint(x), Value::Uint(y)) => x
            .checked_sub(*y)
            .map(Value::Uint)
            .ok_or(EvalError::Overflow),
        (Value::Double(x), Value::Double(y)) => Ok(Value::Double(x - y)),
        (Value::Timestamp(t), Value::Duration(d)) => {
            time::add_timestamp(*t, -time::duration_nanos(*d)).map(Value::Timestamp)
        }
        (Value::Timestamp(x), Value::Timestamp(y)) => {
            time::checked_duration(time::timestamp_nanos(*x) - time::timestamp_nanos(*y))
                .map(Value::Duration)
        }
        (Value::Duration(x), Value::Duration(y)) => {
            time::checked_duration(time::duration_nanos(*x) - time::duration_nanos(*y))
                .map(Value::Duration)
        }
        _ => Err(no_overload("_-_")),
    }
}

fn mul(a: &Value, b: &Value) -> EvalResult {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            x.checked_mul(*y).map(Value::Int).ok_or(EvalError::Overflow)
        }
        (Value::Uint(x), Value::Uint(y)) => x
            .checked_mul(*y)
            .map(Value::Uint)
            .ok_or(EvalError::Overflow),
        (Value::Double(x), Value::Double(y)) => Ok(Value::Double(x * y)),
        _ => Err(no_overload("_*_")),
    }
}

fn div(a: &Value, b: &Value) -> EvalResult {
    match (a, b) {
        (Value::Int(_), Value::Int(0)) | (Value::Uint(_), Value::Uint(0)) => {
            Err(EvalError::DivisionByZero)
        }
        (Value::Int(x), Value::Int(y)) => {
            x.checked_div(*y).map(Value::Int).ok_or(EvalError::Overflow)
        }
        (Value::Uint(x), Value::Uint(y)) => Ok(Value::Uint(x / y)),
        (Value::Double(x), Value::Double(y)) => Ok(Value::Double(x / y)),
        _ => Err(no_overload("_/_")),
    }
}

fn rem(a: &Value, b: &Value) -> EvalResult {
    match (a, b) {
        (Value::Int(_), Value::Int(0)) | (Value::Uint(_), Value::Uint(0)) => {
            Err(EvalError::ModulusByZero)
        }
        (Value::Int(x), Value::Int(y)) => {
            x.checked_rem(*y).map(Value::Int).ok_or(EvalError::Overflow)
        }
        (Value::Uint(x), Value::Uint(y)) => Ok(Value::Uint(x % y)),
        _ => Err(no_overload("_%_")),
    }
}

/// Stable sort of values by their computed keys (`sortBy`); the keys must be mutually
/// comparable.
pub(crate) fn sort_by_keys(mut keyed: Vec<(Value, Value)>) -> Result<Vec<Value>, EvalError> {
    if let Some((first, _)) = keyed.first() {
        let ty = first.cel_type();
        for (key, _) in &keyed {
            if key.cel_type() != ty || key.cel_cmp(key).is_err() {
                return Err(EvalError::InvalidArgument(format!(
                    "sortBy keys must be of one comparable type, found `{}` and `{}`",
                    ty.name(),
                    key.cel_type().name()
                )));
            }
        }
    }
    keyed.sort_by(|(a, _), (b, _)| a.cel_cmp(b).ok().flatten().unwrap_or(Ordering::Equal));
    Ok(keyed.into_iter().map(|(_, v)| v).collect())
}

// ---- conversions --------------------------------------------------------------------------

fn conversion_error(target: &str, value: &str) -> EvalError {
    EvalError::InvalidArgument(format!(
        "type conversion error: cannot convert `{value}` to {target}"
    ))
}

fn to_int(x: &Value) -> EvalResult {
    match x {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Uint(u) => i64::try_from(*u)
            .map(Value::Int)
            .map_err(|_| EvalError::Overflow),
        Value::Double(d) => {
            // Strict bounds as cel-go: both ends of the range are errors.
            if d.is_nan() || *d <= -TWO_POW_63 || *d >= TWO_POW_63 {
                return Err(EvalError::Overflow);
            }
            #[allow(clippy::cast_possible_truncation)]
            Ok(Value::Int(*d as i64))
        }
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| conversion_error("int", s)),
        // Seconds since the epoch rounded down, as Go's `Time.Unix` (jiff truncates toward zero,
        // and its sub-second part is negative before 1970).
        Value::Timestamp(t) => Ok(Value::Int(
            t.as_second() - i64::from(t.subsec_nanosecond() < 0),
        )),
        Value::Duration(d) => i64::try_from(time::duration_nanos(*d))
            .map(Value::Int)
            .map_err(|_| EvalError::Overflow),
        _ => Err(no_overload("int")),
    }
}

fn to_uint(x: &Value) -> EvalResult {
    match x {
        Value::Uint(u) => Ok(Value::Uint(*u)),
        Value::Int(i) => u64::try_from(*i)
            .map(Value::Uint)
            .map_err(|_| EvalError::Overflow),
        Value::Double(d) => {
            if d.is_nan() || *d < 0.0 || *d >= TWO_POW_64 {
                return Err(EvalError::Overflow);
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(Value::Uint(*d as u64))
        }
        Value::String(s) => {
            if s.starts_with('+') {
                return Err(conversion_error("uint", s));
            }
            s.parse::<u64>()
                .map(Value::Uint)
                .map_err(|_| conversion_error("uint", s))
        }
        _ => Err(no_overload("uint")),
    }
}

fn to_double(x: &Value) -> EvalResult {
    match x {
        Value::Double(d) => Ok(Value::Double(*d)),
        #[allow(clippy::cast_precision_loss)]
        Value::Int(i) => Ok(Value::Double(*i as f64)),
        #[allow(clippy::cast_precision_loss)]
        Value::Uint(u) => Ok(Value::Double(*u as f64)),
        Value::String(s) => parse_double(s)
            .map(Value::Double)
            .ok_or_else(|| conversion_error("double", s)),
        _ => Err(no_overload("double")),
    }
}

/// Parses a double as Go's `strconv.ParseFloat` does for decimal input (`inf`, `nan` and
/// `infinity` in any case, an optional sign; out-of-range literals are errors).
fn parse_double(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let special = matches!(
        body.to_ascii_lowercase().as_str(),
        "inf" | "infinity" | "nan"
    );
    let plain = !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if special {
        return s.parse::<f64>().ok();
    }
    if !plain {
        return None;
    }
    // Like Go, a finite literal too large for a double is a range error, not infinity.
    s.parse::<f64>().ok().filter(|d| d.is_finite())
}

fn to_string(x: &Value) -> EvalResult {
    match x {
        Value::String(s) => Ok(Value::String(Arc::clone(s))),
        Value::Int(i) => Ok(Value::string(i.to_string())),
        Value::Uint(u) => Ok(Value::string(u.to_string())),
        Value::Double(d) => Ok(Value::string(format_double(*d))),
        Value::Bool(b) => Ok(Value::string(b.to_string())),
        Value::Bytes(b) => std::str::from_utf8(b)
            .map(Value::string)
            .map_err(|_| EvalError::InvalidArgument("invalid UTF-8 in bytes".to_owned())),
        Value::Timestamp(t) => Ok(Value::string(time::format_timestamp(*t))),
        Value::Duration(d) => Ok(Value::string(time::format_duration(*d))),
        // Network extension types, in the extension's canonical text.
        Value::Ip(ip) => Ok(Value::string(super::ext::network::ip_to_string(ip))),
        Value::Cidr(net) => Ok(Value::string(super::ext::network::cidr_to_string(net))),
        _ => Err(no_overload("string")),
    }
}

/// Formats a double as Go's `strconv.FormatFloat(d, 'g', -1, 64)`, the form cel-go's
/// `string(double)` gives: shortest round-trip digits, exponent form when the decimal exponent
/// is below -4 or at least 6 (Go's rule for the shortest `%g`).
pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_owned();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let sci = format!("{:e}", d.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if d < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs());
    }
    format!("{sign}{}", d.abs())
}

fn to_bytes(x: &Value) -> EvalResult {
    match x {
        Value::Bytes(b) => Ok(Value::Bytes(Arc::clone(b))),
        Value::String(s) => Ok(Value::bytes(s.as_bytes())),
        _ => Err(no_overload("bytes")),
    }
}

fn to_bool(x: &Value) -> EvalResult {
    match x {
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::String(s) => match &**s {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
            _ => Err(conversion_error("bool", s)),
        },
        _ => Err(no_overload("bool")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_format_like_go() {
        assert_eq!(format_double(123.456), "123.456");
        assert_eq!(format_double(-4.5e-3), "-0.0045");
        assert_eq!(format_double(1e21), "1e+21");
        assert_eq!(format_double(1e6), "1e+06");
        assert_eq!(format_double(123456.0), "123456");
        assert_eq!(format_double(1e-5), "1e-05");
        assert_eq!(format_double(1.5e300), "1.5e+300");
        assert_eq!(format_double(100.0), "100");
        assert_eq!(format_double(-0.0), "-0");
    }

    #[test]
    fn integer_arithmetic_checks_overflow() {
        assert!(matches!(
            add(&Value::Int(i64::MAX), &Value::Int(1)),
            Err(EvalError::Overflow)
        ));
        assert!(matches!(
            div(&Value::Int(i64::MIN), &Value::Int(-1)),
            Err(EvalError::Overflow)
        ));
        assert!(matches!(
            rem(&Value::Int(1), &Value::Int(0)),
            Err(EvalError::ModulusByZero)
        ));
        assert!(matches!(
            sub(&Value::Uint(0), &Value::Uint(1)),
            Err(EvalError::Overflow)
        ));
        assert!(add(&Value::Int(1), &Value::Uint(1)).is_err());
    }

    #[test]
    fn conversions_check_ranges() {
        assert!(to_int(&Value::Double(-TWO_POW_63)).is_err());
        assert!(to_int(&Value::Double(TWO_POW_63)).is_err());
        assert!(matches!(to_int(&Value::Double(-3.5)), Ok(Value::Int(-3))));
        assert!(to_uint(&Value::Int(-1)).is_err());
        assert!(to_uint(&Value::string("+1")).is_err());
        assert!(matches!(
            to_bool(&Value::string("TRUE")),
            Ok(Value::Bool(true))
        ));
        assert!(to_bool(&Value::string("FaLsE")).is_err());
        assert!(to_double(&Value::string("1e400")).is_err());
        assert!(
            matches!(to_double(&Value::string("-Inf")), Ok(Value::Double(d)) if d.is_infinite())
        );
        assert!(to_double(&Value::string("0x10")).is_err());
    }
}
