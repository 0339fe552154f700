//! cel-go's strings extension: `charAt`, `indexOf`, `lastIndexOf`, `lowerAscii`, `upperAscii`,
//! `replace`, `split`, `substring`, `trim`, `reverse`, `join`, `format` and `strings.quote`.
//!
//! Offsets and lengths count Unicode code points, as in cel-go. `format` follows cel-go's
//! second formatting implementation (the one the conformance corpus expects: `%d`, `%f` and
//! `%e` accept every numeric type).

use std::fmt::Write as _;

use super::{CallResult, MAX_OUTPUT_BYTES, arg_int, arg_str, invalid, no_overload, too_large};
use crate::error::EvalError;
use crate::value::Value;

/// The largest precision `format` accepts in `%.Nf` / `%.Ne` (keeps output bounded).
const MAX_PRECISION: usize = 100;

super::function_ids! {
    /// The global functions of the library.
    pub(crate) enum Global {
        Quote = "strings.quote",
    }
}

super::function_ids! {
    /// The member functions of the library.
    pub(crate) enum Member {
        CharAt = "charAt",
        IndexOf = "indexOf",
        LastIndexOf = "lastIndexOf",
        LowerAscii = "lowerAscii",
        UpperAscii = "upperAscii",
        Replace = "replace",
        Split = "split",
        Substring = "substring",
        Trim = "trim",
        Reverse = "reverse",
        Format = "format",
        Join = "join",
    }
}

/// Global functions of the library, by name.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    Global::from_name(name).and_then(|f| call_global(f, args))
}

/// Calls a global function of the library.
pub(super) fn call_global(f: Global, args: &[Value]) -> CallResult {
    match f {
        Global::Quote => Some(match args {
            [Value::String(s)] => Ok(Value::string(quote(s))),
            _ => Err(no_overload(f.name())),
        }),
    }
}

/// Member functions of the library, by name.
pub(super) fn member(name: &str, target: &Value, args: &[Value]) -> CallResult {
    Member::from_name(name).and_then(|f| call_member(f, target, args))
}

/// Calls a member function of the library: `None` for `reverse` on a non-string (the lists
/// library's).
pub(super) fn call_member(f: Member, target: &Value, args: &[Value]) -> CallResult {
    if f == Member::Join {
        return Some(join(target, args));
    }
    if f == Member::Reverse && !matches!(target, Value::String(_)) {
        // `reverse` on lists belongs to the lists library.
        return None;
    }
    let Value::String(s) = target else {
        return Some(Err(no_overload(f.name())));
    };
    let s: &str = s;
    let result = match (f, args.len()) {
        (Member::CharAt, 1) => arg_int(args, 0).map(|i| char_at(s, i)),
        (Member::IndexOf, 1) => arg_str(args, 0).map(|sub| Ok(Value::Int(index_of(s, sub)))),
        (Member::IndexOf, 2) => arg_str(args, 0)
            .zip(arg_int(args, 1))
            .map(|(sub, offset)| index_of_offset(s, sub, offset).map(Value::Int)),
        (Member::LastIndexOf, 1) => {
            arg_str(args, 0).map(|sub| Ok(Value::Int(last_index_of(s, sub))))
        }
        (Member::LastIndexOf, 2) => arg_str(args, 0)
            .zip(arg_int(args, 1))
            .map(|(sub, offset)| last_index_of_offset(s, sub, offset).map(Value::Int)),
        (Member::LowerAscii, 0) => Some(Ok(Value::string(s.to_ascii_lowercase()))),
        (Member::UpperAscii, 0) => Some(Ok(Value::string(s.to_ascii_uppercase()))),
        (Member::Replace, 2) => arg_str(args, 0)
            .zip(arg_str(args, 1))
            .map(|(old, new)| replace_n(s, old, new, -1).map(Value::string)),
        (Member::Replace, 3) => match (arg_str(args, 0), arg_str(args, 1), arg_int(args, 2)) {
            (Some(old), Some(new), Some(n)) => Some(replace_n(s, old, new, n).map(Value::string)),
            _ => None,
        },
        // Without a separator (an ngrok addition) the string is split around whitespace.
        (Member::Split, 0) => Some(Ok(Value::list(
            s.split_whitespace().map(Value::string).collect(),
        ))),
        (Member::Split, 1) => arg_str(args, 0).map(|sep| Ok(split_values(s, sep, -1))),
        (Member::Split, 2) => arg_str(args, 0)
            .zip(arg_int(args, 1))
            .map(|(sep, n)| Ok(split_values(s, sep, n))),
        (Member::Substring, 1) => arg_int(args, 0).map(|start| substring(s, start, None)),
        (Member::Substring, 2) => arg_int(args, 0)
            .zip(arg_int(args, 1))
            .map(|(start, end)| substring(s, start, Some(end))),
        (Member::Trim, 0) => Some(Ok(Value::string(s.trim()))),
        (Member::Reverse, 0) => Some(Ok(Value::string(s.chars().rev().collect::<String>()))),
        (Member::Format, 1) => match &args[0] {
            Value::List(items) => Some(format(s, items).map(Value::string)),
            _ => None,
        },
        _ => None,
    };
    Some(result.unwrap_or_else(|| Err(no_overload(f.name()))))
}

/// `<list<string>>.join([separator])`.
fn join(target: &Value, args: &[Value]) -> Result<Value, EvalError> {
    let Value::List(items) = target else {
        return Err(no_overload("join"));
    };
    let separator = match args {
        [] => "",
        [Value::String(sep)] => sep,
        _ => return Err(no_overload("join")),
    };
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let Value::String(item) = item else {
            return Err(invalid(format!(
                "join: list element of type `{}` is not a string",
                item.type_name()
            )));
        };
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(item);
        if out.len() > MAX_OUTPUT_BYTES {
            return Err(too_large("join"));
        }
    }
    Ok(Value::string(out))
}

/// The code point at `index`; `''` at the end of the string.
fn char_at(s: &str, index: i64) -> Result<Value, EvalError> {
    let position = usize::try_from(index).map_err(|_| EvalError::IndexOutOfRange(index))?;
    match s.chars().nth(position) {
        Some(c) => Ok(Value::string(c.to_string())),
        None if s.chars().count() == position => Ok(Value::string("")),
        None => Err(EvalError::IndexOutOfRange(index)),
    }
}

/// Code-point index of the first occurrence of `sub` at or after code point `from`.
fn find_from(chars: &[char], sub: &[char], from: usize) -> i64 {
    if sub.len() > chars.len() {
        return -1;
    }
    (from..=chars.len() - sub.len())
        .find(|&i| chars[i..i + sub.len()] == *sub)
        .map_or(-1, to_i64)
}

/// Code-point index of the last occurrence of `sub` starting at or before code point `upto`.
fn rfind_upto(chars: &[char], sub: &[char], upto: usize) -> i64 {
    if sub.len() > chars.len() {
        return -1;
    }
    let last_start = upto.min(chars.len() - sub.len());
    (0..=last_start)
        .rev()
        .find(|&i| chars[i..i + sub.len()] == *sub)
        .map_or(-1, to_i64)
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn index_of(s: &str, sub: &str) -> i64 {
    if sub.is_empty() {
        return 0;
    }
    let chars: Vec<char> = s.chars().collect();
    let sub: Vec<char> = sub.chars().collect();
    find_from(&chars, &sub, 0)
}

fn index_of_offset(s: &str, sub: &str, offset: i64) -> Result<i64, EvalError> {
    if sub.is_empty() {
        return Ok(offset);
    }
    let chars: Vec<char> = s.chars().collect();
    let start = usize::try_from(offset)
        .ok()
        .filter(|&o| o < chars.len())
        .ok_or(EvalError::IndexOutOfRange(offset))?;
    let sub: Vec<char> = sub.chars().collect();
    if sub.len() > chars.len() - start {
        return Ok(-1);
    }
    Ok(find_from(&chars, &sub, start))
}

fn last_index_of(s: &str, sub: &str) -> i64 {
    let chars: Vec<char> = s.chars().collect();
    if sub.is_empty() {
        return to_i64(chars.len());
    }
    let sub: Vec<char> = sub.chars().collect();
    rfind_upto(&chars, &sub, chars.len())
}

fn last_index_of_offset(s: &str, sub: &str, offset: i64) -> Result<i64, EvalError> {
    if sub.is_empty() {
        return Ok(offset);
    }
    let chars: Vec<char> = s.chars().collect();
    let upto = usize::try_from(offset)
        .ok()
        .filter(|&o| o < chars.len())
        .ok_or(EvalError::IndexOutOfRange(offset))?;
    let sub: Vec<char> = sub.chars().collect();
    Ok(rfind_upto(&chars, &sub, upto))
}

/// Go's `strings.Replace(s, old, new, n)`: `n < 0` replaces all. An empty `old` matches at
/// every code-point boundary.
fn replace_n(s: &str, old: &str, new: &str, n: i64) -> Result<String, EvalError> {
    let limit = usize::try_from(n).unwrap_or(usize::MAX);
    let matches = if old.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(old).count()
    }
    .min(limit);
    let size = s.len() - matches * old.len() + matches.saturating_mul(new.len());
    if size > MAX_OUTPUT_BYTES {
        return Err(too_large("replace"));
    }
    Ok(s.replacen(old, new, matches))
}

/// Go's `strings.SplitN(s, sep, n)` as a CEL list: `n == 0` gives `[]`, `n < 0` splits
/// everywhere, otherwise at most `n` pieces with the unsplit remainder last.
fn split_values(s: &str, sep: &str, n: i64) -> Value {
    Value::list(split_n(s, sep, n).into_iter().map(Value::string).collect())
}

fn split_n<'a>(s: &'a str, sep: &str, n: i64) -> Vec<&'a str> {
    if n == 0 {
        return Vec::new();
    }
    let limit = usize::try_from(n).ok();
    if sep.is_empty() {
        // Go explodes the string into code points (at most `n`, the last one the remainder).
        let mut pieces = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if limit.is_some_and(|limit| pieces.len() + 1 == limit) {
                pieces.push(rest);
                return pieces;
            }
            let width = rest.chars().next().map_or(1, char::len_utf8);
            let (head, tail) = rest.split_at(width);
            pieces.push(head);
            rest = tail;
        }
        return pieces;
    }
    match limit {
        Some(limit) => s.splitn(limit, sep).collect(),
        None => s.split(sep).collect(),
    }
}

fn substring(s: &str, start: i64, end: Option<i64>) -> Result<Value, EvalError> {
    let len = s.chars().count();
    if let Some(end) = end {
        if start > end {
            return Err(invalid(format!(
                "invalid substring range. start: {start}, end: {end}"
            )));
        }
    }
    let check = |i: i64| {
        usize::try_from(i)
            .ok()
            .filter(|&i| i <= len)
            .ok_or(EvalError::IndexOutOfRange(i))
    };
    let from = check(start)?;
    let to = match end {
        Some(end) => check(end)?,
        None => len,
    };
    Ok(Value::string(
        s.chars().skip(from).take(to - from).collect::<String>(),
    ))
}

/// `strings.quote`: a double-quoted form with CEL escapes for the control characters that
/// have one, `\\` and `\"`.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// format
// ---------------------------------------------------------------------------------------------

/// A formatting clause of `format`.
#[derive(Clone, Copy, Debug)]
enum Clause {
    String,
    Decimal,
    Fixed(usize),
    Scientific(usize),
    Binary,
    Hex { upper: bool },
    Octal,
}

/// Why formatting a value failed.
#[derive(Debug)]
pub(super) enum FormatError {
    /// The clause does not apply to the value (the message says why).
    Invalid(String),
    /// The text would exceed [`MAX_OUTPUT_BYTES`].
    TooLarge,
}

impl FormatError {
    /// The evaluation error, with `context` prefixed to an invalid-argument message.
    pub(super) fn into_error(self, function: &str, context: &str) -> EvalError {
        match self {
            FormatError::Invalid(message) => invalid(format!("{context}{message}")),
            FormatError::TooLarge => too_large(function),
        }
    }
}

/// `<string>.format(<list>)`.
fn format(template: &str, args: &[Value]) -> Result<String, EvalError> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut literal_start = 0;
    let mut i = 0;
    let mut arg_index = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        out.push_str(&template[literal_start..i]);
        if bytes.get(i + 1) == Some(&b'%') {
            out.push('%');
            i += 2;
            literal_start = i;
            continue;
        }
        let arg = args
            .get(arg_index)
            .ok_or_else(|| invalid(format!("index {arg_index} out of range")))?;
        if i + 1 >= bytes.len() {
            return Err(invalid("unexpected end of string"));
        }
        let (clause, read) = parse_clause(&template[i + 1..])
            .map_err(|e| invalid(format!("could not parse formatting clause: {e}")))?;
        let text = format_clause(clause, arg)
            .map_err(|e| e.into_error("format", "error during formatting: "))?;
        out.push_str(&text);
        if out.len() > MAX_OUTPUT_BYTES {
            return Err(too_large("format"));
        }
        i += 1 + read;
        literal_start = i;
        arg_index += 1;
    }
    out.push_str(&template[literal_start..]);
    Ok(out)
}

/// Parse the clause after a `%`; returns it and the number of bytes read.
fn parse_clause(spec: &str) -> Result<(Clause, usize), String> {
    let bytes = spec.as_bytes();
    let mut i = 0;
    let mut precision = None;
    if bytes.first() == Some(&b'.') {
        i = 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(
                "error while parsing precision: could not find end of precision specifier"
                    .to_owned(),
            );
        }
        let digits = &spec[1..i];
        let value: usize = digits
            .parse()
            .map_err(|_| format!("error while parsing precision: invalid precision `{digits}`"))?;
        if value > MAX_PRECISION {
            return Err(format!(
                "error while parsing precision: precision {value} exceeds maximum allowed precision {MAX_PRECISION}"
            ));
        }
        precision = Some(value);
    }
    let Some(c) = spec[i..].chars().next() else {
        return Err("unexpected end of string".to_owned());
    };
    let digits = precision.unwrap_or(6);
    let clause = match c {
        's' => Clause::String,
        'd' => Clause::Decimal,
        'f' => Clause::Fixed(digits),
        'e' => Clause::Scientific(digits),
        'b' => Clause::Binary,
        'x' => Clause::Hex { upper: false },
        'X' => Clause::Hex { upper: true },
        'o' => Clause::Octal,
        other => return Err(format!("unrecognized formatting clause \"{other}\"")),
    };
    Ok((clause, i + c.len_utf8()))
}

/// The text of one clause applied to `arg`, or the reason it does not apply.
fn format_clause(clause: Clause, arg: &Value) -> Result<String, FormatError> {
    let given = || arg.type_name();
    match clause {
        Clause::String => format_string(arg),
        Clause::Decimal => match arg {
            Value::Int(i) => Ok(i.to_string()),
            Value::Uint(u) => Ok(u.to_string()),
            Value::Double(d) => Ok(non_finite(*d).map_or_else(|| d.to_string(), str::to_owned)),
            _ => Err(FormatError::Invalid(format!(
                "decimal clause can only be used on ints, uints, and doubles, was given {}",
                given()
            ))),
        },
        Clause::Fixed(precision) => as_double(arg)
            .map(|d| non_finite(d).map_or_else(|| format!("{d:.precision$}"), str::to_owned))
            .ok_or_else(|| {
                FormatError::Invalid(format!(
                    "fixed-point clause can only be used on ints, uints, and doubles, was given {}",
                    given()
                ))
            }),
        Clause::Scientific(precision) => as_double(arg)
            .map(|d| non_finite(d).map_or_else(|| scientific(d, precision), str::to_owned))
            .ok_or_else(|| {
                FormatError::Invalid(format!(
                    "scientific clause can only be used on ints, uints, and doubles, was given {}",
                    given()
                ))
            }),
        Clause::Binary => match arg {
            Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_owned()),
            Value::Int(i) => Ok(signed_radix(*i, |m| format!("{m:b}"))),
            Value::Uint(u) => Ok(format!("{u:b}")),
            _ => Err(FormatError::Invalid(format!(
                "only ints, uints, and bools can be formatted as binary, was given {}",
                given()
            ))),
        },
        Clause::Hex { upper } => {
            let text = match arg {
                Value::Int(i) => signed_radix(*i, |m| format!("{m:x}")),
                Value::Uint(u) => format!("{u:x}"),
                Value::String(s) => hex_bytes(s.as_bytes()),
                Value::Bytes(b) => hex_bytes(b),
                _ => {
                    return Err(FormatError::Invalid(format!(
                        "only ints, uints, bytes, and strings can be formatted as hex, was given {}",
                        given()
                    )));
                }
            };
            Ok(if upper {
                text.to_ascii_uppercase()
            } else {
                text
            })
        }
        Clause::Octal => match arg {
            Value::Int(i) => Ok(signed_radix(*i, |m| format!("{m:o}"))),
            Value::Uint(u) => Ok(format!("{u:o}")),
            _ => Err(FormatError::Invalid(format!(
                "octal clause can only be used on ints and uints, was given {}",
                given()
            ))),
        },
    }
}

/// A number as a double for `%f` and `%e`.
fn as_double(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Uint(u) => Some(*u as f64),
        Value::Double(d) => Some(*d),
        _ => None,
    }
}

/// cel-go's spelling of the non-finite doubles.
fn non_finite(d: f64) -> Option<&'static str> {
    if d.is_nan() {
        Some("NaN")
    } else if d == f64::INFINITY {
        Some("Infinity")
    } else if d == f64::NEG_INFINITY {
        Some("-Infinity")
    } else {
        None
    }
}

/// Go's `%.Ne`: a mantissa with `precision` decimals and an exponent of at least two digits.
fn scientific(d: f64, precision: usize) -> String {
    let text = format!("{d:.precision$e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Go's signed radix formatting: a `-` and the magnitude's digits for negative numbers.
fn signed_radix(i: i64, digits: impl Fn(u64) -> String) -> String {
    if i < 0 {
        format!("-{}", digits(i.unsigned_abs()))
    } else {
        digits(i.unsigned_abs())
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The `%s` text of a value (cel-go's `formatStringV2`).
pub(super) fn format_string(arg: &Value) -> Result<String, FormatError> {
    let mut out = String::new();
    append_string(&mut out, arg)?;
    Ok(out)
}

fn append_string(out: &mut String, arg: &Value) -> Result<(), FormatError> {
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(FormatError::TooLarge);
    }
    match arg {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Double(d) => match non_finite(*d) {
            Some(text) => out.push_str(text),
            None => {
                let _ = write!(out, "{d}");
            }
        },
        Value::String(s) => out.push_str(s),
        Value::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
        Value::Duration(d) => {
            let _ = write!(out, "{}s", d.as_secs_f64());
        }
        Value::Timestamp(t) => out.push_str(&rfc3339_nano(*t)),
        Value::Type(t) => out.push_str(t.name()),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                append_string(out, item)?;
            }
            out.push(']');
        }
        Value::Map(map) => {
            let mut entries = Vec::with_capacity(map.entries.len());
            for (key, value) in &map.entries {
                entries.push((format_string(&key.to_value())?, format_string(value)?));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(key);
                out.push_str(": ");
                out.push_str(value);
            }
            out.push('}');
        }
        Value::Optional(_) | Value::Ip(_) | Value::Cidr(_) => {
            return Err(FormatError::Invalid(format!(
                "string clause can only be used on strings, bools, bytes, ints, doubles, maps, lists, types, durations, and timestamps, was given {}",
                arg.type_name()
            )));
        }
    }
    Ok(())
}

/// A timestamp in UTC as Go's RFC 3339 with nanoseconds (trailing fraction zeros dropped).
pub(super) fn rfc3339_nano(t: jiff::Timestamp) -> String {
    let dt = t.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = dt.subsec_nanosecond();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::ext::{call, values_equal};
    use std::sync::Arc;

    fn s(v: &str) -> Value {
        Value::string(v)
    }

    fn m(target: &str, name: &str, args: &[Value]) -> Result<Value, EvalError> {
        call(name, Some(&s(target)), args).expect("known function")
    }

    fn ok_str(r: Result<Value, EvalError>) -> String {
        match r {
            Ok(Value::String(s)) => s.to_string(),
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn ok_int(r: Result<Value, EvalError>) -> i64 {
        match r {
            Ok(Value::Int(i)) => i,
            other => panic!("expected an int, got {other:?}"),
        }
    }

    fn fmt(template: &str, args: Vec<Value>) -> Result<Value, EvalError> {
        m(template, "format", &[Value::list(args)])
    }

    #[test]
    fn char_at_counts_code_points() {
        assert_eq!(ok_str(m("tacocat", "charAt", &[Value::Int(3)])), "o");
        assert_eq!(ok_str(m("tacocat", "charAt", &[Value::Int(7)])), "");
        assert_eq!(ok_str(m("©αT", "charAt", &[Value::Int(1)])), "α");
        assert_eq!(
            m("tacocat", "charAt", &[Value::Int(8)]).unwrap_err(),
            EvalError::IndexOutOfRange(8)
        );
        assert!(m("tacocat", "charAt", &[Value::Int(-1)]).is_err());
    }

    #[test]
    fn index_of_and_last_index_of() {
        assert_eq!(ok_int(m("tacocat", "indexOf", &[s("")])), 0);
        assert_eq!(ok_int(m("tacocat", "indexOf", &[s("ac")])), 1);
        assert_eq!(ok_int(m("tacocat", "indexOf", &[s("a"), Value::Int(3)])), 5);
        assert_eq!(ok_int(m("tacocat", "indexOf", &[s(""), Value::Int(3)])), 3);
        assert_eq!(ok_int(m("hello wello", "indexOf", &[s("elbo room!!")])), -1);
        assert_eq!(ok_int(m("", "indexOf", &[s("a")])), -1);
        assert!(m("tacocat", "indexOf", &[s("a"), Value::Int(30)]).is_err());
        assert_eq!(ok_int(m("", "lastIndexOf", &[s("@@")])), -1);
        assert_eq!(ok_int(m("tacocat", "lastIndexOf", &[s("")])), 7);
        assert_eq!(
            ok_int(m("tacocat", "lastIndexOf", &[s("a"), Value::Int(3)])),
            1
        );
        assert_eq!(
            ok_int(m("ta©o©αT", "lastIndexOf", &[s("©α"), Value::Int(4)])),
            4
        );
        assert_eq!(
            ok_int(m(
                "bananananana",
                "lastIndexOf",
                &[s("nana"), Value::Int(7)]
            )),
            6
        );
        assert!(m("tacocat", "lastIndexOf", &[s("a"), Value::Int(-1)]).is_err());
        assert!(m("tacocat", "lastIndexOf", &[s("a"), Value::Int(30)]).is_err());
    }

    #[test]
    fn wrong_argument_types_give_no_overload() {
        assert!(matches!(
            m("hello", "indexOf", &[Value::Bool(true)]),
            Err(EvalError::NoMatchingOverload { .. })
        ));
        assert!(matches!(
            call("indexOf", Some(&Value::Int(42)), &[s("4")]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
        assert!(matches!(
            m("42", "indexOf", &[s("4"), Value::Int(0), Value::Int(1)]),
            Err(EvalError::NoMatchingOverload { .. })
        ));
        assert!(matches!(
            m("42", "replace", &[s("2"), s("1"), s("1")]),
            Err(EvalError::NoMatchingOverload { .. })
        ));
    }

    #[test]
    fn case_mapping_is_ascii_only() {
        assert_eq!(ok_str(m("TacoCÆt Xii", "lowerAscii", &[])), "tacocÆt xii");
        assert_eq!(ok_str(m("tacoCαt", "upperAscii", &[])), "TACOCαT");
    }

    #[test]
    fn replace_and_split_follow_go() {
        assert_eq!(
            ok_str(m("hello hello", "replace", &[s("he"), s("we")])),
            "wello wello"
        );
        assert_eq!(
            ok_str(m(
                "hello hello",
                "replace",
                &[s("he"), s("we"), Value::Int(1)]
            )),
            "wello hello"
        );
        assert_eq!(
            ok_str(m(
                "hello hello",
                "replace",
                &[s("he"), s("we"), Value::Int(-1)]
            )),
            "wello wello"
        );
        assert_eq!(split_n("a,b,c", ",", 2), vec!["a", "b,c"]);
        assert_eq!(split_n("a,b,c", ",", 0), Vec::<&str>::new());
        assert_eq!(split_n("a,b,c", ",", -1), vec!["a", "b", "c"]);
        assert_eq!(split_n("abc", "", -1), vec!["a", "b", "c"]);
        assert_eq!(split_n("abc", "", 2), vec!["a", "bc"]);
        assert_eq!(split_n("", ",", -1), vec![""]);
        assert_eq!(split_n("o©o©o", "©", -1), vec!["o", "o", "o"]);
        let r = m(" a  b ", "split", &[]).unwrap();
        assert!(values_equal(&r, &Value::list(vec![s("a"), s("b")])));
    }

    #[test]
    fn substring_checks_ranges() {
        assert_eq!(ok_str(m("tacocat", "substring", &[Value::Int(4)])), "cat");
        assert_eq!(ok_str(m("tacocat", "substring", &[Value::Int(7)])), "");
        assert_eq!(
            ok_str(m("ta©o©αT", "substring", &[Value::Int(2), Value::Int(6)])),
            "©o©α"
        );
        assert!(m("tacocat", "substring", &[Value::Int(-1)]).is_err());
        assert!(m("tacocat", "substring", &[Value::Int(1), Value::Int(50)]).is_err());
        assert_eq!(
            m("tacocat", "substring", &[Value::Int(4), Value::Int(3)]).unwrap_err(),
            invalid("invalid substring range. start: 4, end: 3")
        );
    }

    #[test]
    fn trim_uses_unicode_white_space() {
        assert_eq!(ok_str(m(" \u{c}\n\r\t\u{b}text  ", "trim", &[])), "text");
        assert_eq!(
            ok_str(m("\u{200a}text\u{2028}\u{3000}", "trim", &[])),
            "text"
        );
        assert_eq!(
            ok_str(m("\u{180e}text\u{200b}\u{feff}", "trim", &[])),
            "\u{180e}text\u{200b}\u{feff}"
        );
    }

    #[test]
    fn join_and_reverse() {
        let list = Value::list(vec![s("x"), s("y")]);
        let r = call("join", Some(&list), &[s("-")]).unwrap().unwrap();
        assert!(values_equal(&r, &s("x-y")));
        let r = call("join", Some(&list), &[]).unwrap().unwrap();
        assert!(values_equal(&r, &s("xy")));
        let bad = Value::list(vec![Value::Int(1)]);
        assert!(call("join", Some(&bad), &[]).unwrap().is_err());
        assert_eq!(ok_str(m("Ta©oCαt", "reverse", &[])), "tαCo©aT");
    }

    #[test]
    fn outputs_are_bounded() {
        let big = "x".repeat(1 << 20);
        assert!(matches!(
            m(&big, "replace", &[s(""), s(&big)]),
            Err(EvalError::LimitExceeded(_))
        ));
        assert_eq!(ok_str(m("abc", "replace", &[s(""), s("-")])), "-a-b-c-");
        assert_eq!(
            ok_str(m("abc", "replace", &[s(""), s("-"), Value::Int(2)])),
            "-a-bc"
        );
        let many = Value::list(vec![s(&big); 100]);
        assert!(matches!(
            call("join", Some(&many), &[]).unwrap(),
            Err(EvalError::LimitExceeded(_))
        ));
        assert!(matches!(
            fmt("%s", vec![many]),
            Err(EvalError::LimitExceeded(_))
        ));
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("bell\u{7}"), "\"bell\\a\"");
        assert_eq!(quote("a \"q\" \\"), "\"a \\\"q\\\" \\\\\"");
        assert_eq!(quote("завтра"), "\"завтра\"");
        assert_eq!(quote(""), "\"\"");
        let r = call("strings.quote", None, &[s("\t")]).unwrap().unwrap();
        assert!(values_equal(&r, &s("\"\\t\"")));
    }

    #[test]
    fn format_verbs() {
        let cases: Vec<(&str, Vec<Value>, &str)> = vec![
            ("%% and %s", vec![s("x")], "% and x"),
            ("%d %d", vec![Value::Int(-3), Value::Uint(64)], "-3 64"),
            ("%b", vec![Value::Int(5)], "101"),
            ("%b", vec![Value::Int(-5)], "-101"),
            ("%b", vec![Value::Bool(true)], "1"),
            ("%o", vec![Value::Uint(65535)], "177777"),
            ("%x", vec![Value::Int(30)], "1e"),
            ("%X", vec![Value::Int(-26)], "-1A"),
            ("%x", vec![s("Hello world!")], "48656c6c6f20776f726c6421"),
            (
                "%X",
                vec![Value::Bytes(Arc::from(&b"byte"[..]))],
                "62797465",
            ),
            ("%.6e", vec![Value::Double(1052.032911275)], "1.052033e+03"),
            ("%e", vec![Value::Int(2)], "2.000000e+00"),
            ("%e", vec![Value::Double(1.5e-7)], "1.500000e-07"),
            ("%f", vec![Value::Uint(3)], "3.000000"),
            ("%.0f", vec![Value::Double(2.5)], "2"),
            ("%.0f", vec![Value::Double(1.5)], "2"),
            ("%.3f", vec![Value::Double(-123.4999)], "-123.500"),
            ("%f", vec![Value::Double(f64::NEG_INFINITY)], "-Infinity"),
            ("%d", vec![Value::Double(f64::NAN)], "NaN"),
            ("%d", vec![Value::Double(2.5)], "2.5"),
            ("%s", vec![Value::Null], "null"),
            (
                "%s, %s",
                vec![Value::Int(32), Value::Double(56.8)],
                "32, 56.8",
            ),
            ("%s", vec![Value::Double(1e21)], "1000000000000000000000"),
            ("%s", vec![Value::Bytes(Arc::from(&b"xyz"[..]))], "xyz"),
            (
                "%s",
                vec![Value::Type(crate::value::CelType::String)],
                "string",
            ),
            (
                "%s",
                vec![Value::Duration(jiff::SignedDuration::new(6347, 0))],
                "6347s",
            ),
            (
                "%s",
                vec![Value::Duration(jiff::SignedDuration::new(1, 500_000_000))],
                "1.5s",
            ),
            (
                "%s",
                vec![Value::Timestamp(
                    jiff::Timestamp::new(1_675_467_080, 0).unwrap(),
                )],
                "2023-02-03T23:31:20Z",
            ),
            (
                "%s",
                vec![Value::Timestamp(
                    jiff::Timestamp::new(0, 120_000_000).unwrap(),
                )],
                "1970-01-01T00:00:00.12Z",
            ),
            (
                "%s",
                vec![Value::list(vec![
                    Value::Int(6),
                    Value::Double(4.2),
                    s("a string"),
                ])],
                "[6, 4.2, a string]",
            ),
        ];
        for (template, args, expected) in cases {
            assert_eq!(ok_str(fmt(template, args)), expected, "{template}");
        }
    }

    #[test]
    fn format_maps_sort_by_formatted_key() {
        use crate::value::Key;
        let map = super::super::map_value([
            (Key::String("strKey".into()), s("x")),
            (
                Key::Int(6),
                Value::Duration(jiff::SignedDuration::new(422, 0)),
            ),
            (Key::Bool(true), Value::Int(42)),
        ]);
        assert_eq!(
            ok_str(fmt("%s", vec![map])),
            "{6: 422s, strKey: x, true: 42}"
        );
    }

    #[test]
    fn format_errors() {
        assert_eq!(
            fmt("%d %d %d", vec![Value::Int(0), Value::Int(1)]).unwrap_err(),
            invalid("index 2 out of range")
        );
        assert!(fmt("%b", vec![s("abc")]).is_err());
        assert!(fmt("%d", vec![Value::Duration(jiff::SignedDuration::ZERO)]).is_err());
        assert!(fmt("%o", vec![s("a")]).is_err());
        assert!(fmt("%x", vec![Value::Double(0.5)]).is_err());
        assert!(fmt("%e", vec![Value::Null]).is_err());
        assert_eq!(
            fmt("%E", vec![Value::Double(0.5)]).unwrap_err(),
            invalid("could not parse formatting clause: unrecognized formatting clause \"E\"")
        );
        assert!(fmt("%.3", vec![Value::Double(0.5)]).is_err());
        assert!(fmt("%", vec![Value::Double(0.5)]).is_err());
        assert!(fmt("%.1000f", vec![Value::Double(0.5)]).is_err());
        assert!(fmt("%s", vec![Value::Optional(None)]).is_err());
        assert!(matches!(
            m("%s", "format", &[s("x")]),
            Err(EvalError::NoMatchingOverload { .. })
        ));
    }
}
