//! Extension functions of the reference interpreter: cel-go's strings, lists, math, encoders,
//! network and optionals libraries, and Wicket's policy functions.
//!
//! INTERFACE (used by the interpreter core):
//! - [`is_function`] tells whether a (possibly qualified) global name such as `base64.encode`
//!   or `math.greatest` is an extension function, so the core can resolve `a.b(x)` as a
//!   qualified global call when `a` is not a variable.
//! - [`call`] runs one: `target` is the receiver of a member call (`'abc'.charAt(1)`), `None`
//!   for a global call. It returns `None` when no extension function of that name exists,
//!   `Some(Err(EvalError::NoMatchingOverload{..}))` when it exists but the argument types fit
//!   no overload.
//! - [`type_value`] resolves the type names the extensions introduce (`net.IP`, `net.CIDR`,
//!   `optional_type`), and [`network`] has the string forms of IP and CIDR values for the
//!   core's `string()` conversion.
//!
//! The semantics follow cel-go's extension libraries (strings v3+ with the v2 `format`
//! implementation, lists v3, math v2, encoders, network, optionals); the cel-spec conformance
//! corpus is the arbiter where the two differ. The macros of these libraries (`cel.bind`,
//! `optMap`, `optFlatMap`, `sortBy`, two-variable comprehensions) belong to the core; `sortBy`
//! expands to the `@sortByAssociatedKeys` member function implemented here.

mod encoders;
mod lists;
mod math;
pub mod network;
mod ngrok;
mod optionals;
mod strings;

use std::cmp::Ordering;
use std::sync::Arc;

use crate::error::EvalError;
use crate::value::{CelType, Key, MapValue, Value};

/// The result of an extension call: `None` when no extension function has that name.
type CallResult = Option<Result<Value, EvalError>>;

/// The global (possibly qualified) extension function names.
const GLOBAL_FUNCTIONS: &[&str] = &[
    // encoders
    "base64.decode",
    "base64.encode",
    // lists
    "lists.range",
    // math
    "math.abs",
    "math.bitAnd",
    "math.bitNot",
    "math.bitOr",
    "math.bitShiftLeft",
    "math.bitShiftRight",
    "math.bitXor",
    "math.ceil",
    "math.floor",
    "math.greatest",
    "math.isFinite",
    "math.isInf",
    "math.isNaN",
    "math.least",
    "math.round",
    "math.sign",
    "math.sqrt",
    "math.trunc",
    // network
    "cidr",
    "ip",
    "ip.isCanonical",
    "isCIDR",
    "isIP",
    // optionals
    "optional.none",
    "optional.of",
    "optional.ofNonZeroValue",
    "optional.unwrap",
    // strings
    "strings.quote",
    // ngrok
    "basic_auth.encode",
    "hash.crc32",
    "hash.crc64",
    "hash.md5",
    "hash.sha1",
    "hash.sha256",
    "hash.sha512",
    "hash.xxhash64",
    "inCidrRange",
    "inCidrRanges",
    "json.decode",
    "json.encode",
    "queryString.decode",
    "queryString.encode",
    "rand.double",
    "rand.int",
    "url.escape",
    "url.parse",
    "url.unescape",
];

/// Whether `name` (e.g. `base64.encode`, `lists.range`, `strings.quote`) is a global
/// extension function.
#[must_use]
pub fn is_function(name: &str) -> bool {
    GLOBAL_FUNCTIONS.contains(&name)
}

/// Call the extension function `name`. See the module docs.
#[must_use]
pub fn call(
    name: &str,
    target: Option<&Value>,
    args: &[Value],
) -> Option<Result<Value, EvalError>> {
    match target {
        None => {
            if !is_function(name) {
                return None;
            }
            encoders::global(name, args)
                .or_else(|| lists::global(name, args))
                .or_else(|| math::global(name, args))
                .or_else(|| network::global(name, args))
                .or_else(|| optionals::global(name, args))
                .or_else(|| strings::global(name, args))
                .or_else(|| ngrok::global(name, args))
        }
        Some(target) => strings::member(name, target, args)
            .or_else(|| lists::member(name, target, args))
            .or_else(|| network::member(name, target, args))
            .or_else(|| optionals::member(name, target, args))
            .or_else(|| ngrok::member(name, target, args)),
    }
}

/// The type value named `name` when an extension introduces it (`net.IP`, `net.CIDR`,
/// `optional_type`).
#[must_use]
pub fn type_value(name: &str) -> Option<CelType> {
    match name {
        "net.IP" => Some(CelType::Ip),
        "net.CIDR" => Some(CelType::Cidr),
        "optional_type" => Some(CelType::Optional),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers. They are private to the extensions; the core has its own equivalents.
// ---------------------------------------------------------------------------------------------

/// The error for a call whose argument types fit no overload of `function`.
fn no_overload(function: &str) -> EvalError {
    EvalError::NoMatchingOverload {
        function: function.to_owned(),
    }
}

/// An [`EvalError::InvalidArgument`] with `message`.
fn invalid(message: impl Into<String>) -> EvalError {
    EvalError::InvalidArgument(message.into())
}

/// A CEL string value.
fn string_value(s: impl Into<Arc<str>>) -> Value {
    Value::String(s.into())
}

/// A CEL list value.
fn list_value(items: Vec<Value>) -> Value {
    Value::List(Arc::new(items))
}

/// A CEL map value from entries in order; a later entry replaces an earlier one with the same
/// key.
fn map_value(entries: impl IntoIterator<Item = (Key, Value)>) -> Value {
    let mut map = MapValue::default();
    for (key, value) in entries {
        if let Some(&position) = map.index.get(&key) {
            if let Some(slot) = map.entries.get_mut(position) {
                slot.1 = value;
            }
        } else {
            map.index.insert(key.clone(), map.entries.len());
            map.entries.push((key, value));
        }
    }
    Value::Map(Arc::new(map))
}

/// The CEL value of a map key.
fn key_value(key: &Key) -> Value {
    match key {
        Key::Bool(b) => Value::Bool(*b),
        Key::Int(i) => Value::Int(*i),
        Key::Uint(u) => Value::Uint(*u),
        Key::String(s) => Value::String(s.clone()),
    }
}

/// The name of a CEL type as `type()` would print it.
fn cel_type_name(t: &CelType) -> &str {
    match t {
        CelType::Null => "null_type",
        CelType::Bool => "bool",
        CelType::Int => "int",
        CelType::Uint => "uint",
        CelType::Double => "double",
        CelType::String => "string",
        CelType::Bytes => "bytes",
        CelType::List => "list",
        CelType::Map => "map",
        CelType::Type => "type",
        CelType::Timestamp => "google.protobuf.Timestamp",
        CelType::Duration => "google.protobuf.Duration",
        CelType::Optional => "optional_type",
        CelType::Ip => "net.IP",
        CelType::Cidr => "net.CIDR",
        CelType::Named(name) => name,
    }
}

/// The CEL type of a value.
fn type_of(v: &Value) -> CelType {
    match v {
        Value::Null => CelType::Null,
        Value::Bool(_) => CelType::Bool,
        Value::Int(_) => CelType::Int,
        Value::Uint(_) => CelType::Uint,
        Value::Double(_) => CelType::Double,
        Value::String(_) => CelType::String,
        Value::Bytes(_) => CelType::Bytes,
        Value::List(_) => CelType::List,
        Value::Map(_) => CelType::Map,
        Value::Type(_) => CelType::Type,
        Value::Timestamp(_) => CelType::Timestamp,
        Value::Duration(_) => CelType::Duration,
        Value::Optional(_) => CelType::Optional,
        Value::Ip(_) => CelType::Ip,
        Value::Cidr(_) => CelType::Cidr,
    }
}

/// The CEL type name of a value, for error messages.
fn type_name(v: &Value) -> String {
    cel_type_name(&type_of(v)).to_owned()
}

/// Find `key` in `map` with CEL's heterogeneous numeric key equality.
fn map_get<'a>(map: &'a MapValue, key: &Key) -> Option<&'a Value> {
    let exact = map.index.get(key);
    let position = exact.or_else(|| match key {
        Key::Int(i) => u64::try_from(*i)
            .ok()
            .and_then(|u| map.index.get(&Key::Uint(u))),
        Key::Uint(u) => i64::try_from(*u)
            .ok()
            .and_then(|i| map.index.get(&Key::Int(i))),
        Key::Bool(_) | Key::String(_) => None,
    })?;
    map.entries.get(*position).map(|(_, v)| v)
}

/// CEL equality (`==`) with heterogeneous numeric comparison; values of unrelated types are
/// unequal.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y)) => x == y,
        (Value::Type(x), Value::Type(y)) => x == y,
        (Value::Timestamp(x), Value::Timestamp(y)) => x == y,
        (Value::Duration(x), Value::Duration(y)) => x == y,
        (Value::Ip(x), Value::Ip(y)) => x == y,
        (Value::Cidr(x), Value::Cidr(y)) => x == y,
        (Value::Optional(x), Value::Optional(y)) => match (x, y) {
            (None, None) => true,
            (Some(x), Some(y)) => values_equal(x, y),
            _ => false,
        },
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(x, y)| values_equal(x, y))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.entries.len() == y.entries.len()
                && x.entries
                    .iter()
                    .all(|(key, xv)| map_get(y, key).is_some_and(|yv| values_equal(xv, yv)))
        }
        _ => compare_numbers(a, b) == Some(Ordering::Equal),
    }
}

/// Compare two numbers of any numeric types exactly; `None` when either is not a number or a
/// NaN is involved.
fn compare_numbers(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Uint(x), Value::Uint(y)) => Some(x.cmp(y)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Uint(y)) => Some(compare_int_uint(*x, *y)),
        (Value::Uint(x), Value::Int(y)) => Some(compare_int_uint(*y, *x).reverse()),
        (Value::Int(x), Value::Double(y)) => compare_int_double(*x, *y),
        (Value::Double(x), Value::Int(y)) => compare_int_double(*y, *x).map(Ordering::reverse),
        (Value::Uint(x), Value::Double(y)) => compare_uint_double(*x, *y),
        (Value::Double(x), Value::Uint(y)) => compare_uint_double(*y, *x).map(Ordering::reverse),
        _ => None,
    }
}

fn compare_int_uint(i: i64, u: u64) -> Ordering {
    u64::try_from(i).map_or(Ordering::Less, |i| i.cmp(&u))
}

/// 2^63 as a double: the first double above `i64::MAX`.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
/// 2^64 as a double: the first double above `u64::MAX`.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

fn compare_int_double(i: i64, d: f64) -> Option<Ordering> {
    if d.is_nan() {
        return None;
    }
    if d >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if d < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    let whole = d.trunc();
    let ordering = i.cmp(&(whole as i64));
    Some(ordering.then_with(|| 0.0.partial_cmp(&(d - whole)).unwrap_or(Ordering::Equal)))
}

fn compare_uint_double(u: u64, d: f64) -> Option<Ordering> {
    if d.is_nan() {
        return None;
    }
    if d >= TWO_POW_64 {
        return Some(Ordering::Less);
    }
    if d < 0.0 {
        return Some(Ordering::Greater);
    }
    let whole = d.trunc();
    let ordering = u.cmp(&(whole as u64));
    Some(ordering.then_with(|| 0.0.partial_cmp(&(d - whole)).unwrap_or(Ordering::Equal)))
}

/// CEL ordering of two values of the same comparable type (bool, int, uint, double, string,
/// bytes, timestamp, duration), or of two numbers of any numeric types.
fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.cmp(y)),
        (Value::Timestamp(x), Value::Timestamp(y)) => Some(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        _ => compare_numbers(a, b),
    }
}

/// The string argument at `index`, if it is one.
fn arg_str(args: &[Value], index: usize) -> Option<&str> {
    match args.get(index) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// The int argument at `index`, if it is one.
fn arg_int(args: &[Value], index: usize) -> Option<i64> {
    match args.get(index) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        string_value(v)
    }

    #[test]
    fn global_names_are_recognised() {
        assert!(is_function("base64.encode"));
        assert!(is_function("math.greatest"));
        assert!(is_function("optional.none"));
        assert!(!is_function("charAt"));
        assert!(!is_function("nope.nope"));
    }

    #[test]
    fn unknown_functions_give_none() {
        assert!(call("nope", None, &[]).is_none());
        assert!(call("nope", Some(&s("x")), &[]).is_none());
    }

    #[test]
    fn reverse_dispatches_on_the_receiver_type() {
        let r = call("reverse", Some(&s("abc")), &[]).unwrap().unwrap();
        assert!(values_equal(&r, &s("cba")));
        let l = list_value(vec![Value::Int(1), Value::Int(2)]);
        let r = call("reverse", Some(&l), &[]).unwrap().unwrap();
        assert!(values_equal(
            &r,
            &list_value(vec![Value::Int(2), Value::Int(1)])
        ));
        assert!(matches!(
            call("reverse", Some(&Value::Int(1)), &[]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
    }

    #[test]
    fn heterogeneous_numeric_equality_and_order() {
        assert!(values_equal(&Value::Int(1), &Value::Uint(1)));
        assert!(values_equal(&Value::Int(1), &Value::Double(1.0)));
        assert!(!values_equal(&Value::Int(1), &Value::Double(1.5)));
        assert!(!values_equal(
            &Value::Double(f64::NAN),
            &Value::Double(f64::NAN)
        ));
        assert_eq!(
            compare_numbers(&Value::Int(-1), &Value::Uint(0)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_numbers(&Value::Int(i64::MAX), &Value::Double(TWO_POW_63)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_numbers(&Value::Double(2.5), &Value::Uint(2)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare_numbers(&Value::Int(-3), &Value::Double(-2.5)),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn map_equality_ignores_order_and_numeric_key_type() {
        let a = map_value([
            (Key::Int(1), s("a")),
            (Key::String("k".into()), Value::Null),
        ]);
        let b = map_value([
            (Key::String("k".into()), Value::Null),
            (Key::Uint(1), s("a")),
        ]);
        assert!(values_equal(&a, &b));
        let c = map_value([(Key::Int(1), s("b"))]);
        assert!(!values_equal(&a, &c));
    }

    #[test]
    fn type_values_of_extensions() {
        assert_eq!(type_value("net.IP"), Some(CelType::Ip));
        assert_eq!(type_value("net.CIDR"), Some(CelType::Cidr));
        assert_eq!(type_value("int"), None);
    }
}
