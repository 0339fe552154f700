//! CEL runtime values shared by the reference interpreter and (later) the compiled evaluator.
//!
//! Owned by the interpreter core; extension modules add behaviour through functions and
//! inherent `impl` blocks in their own files.
//!
//! The semantics implemented here are CEL's, not Rust's: [`Value::cel_eq`] is CEL equality
//! (heterogeneous numeric equality, `NaN != NaN`, deep lists and maps), [`Value::cel_cmp`] is the
//! ordering of `<`, `<=`, `>`, `>=` (cross-type numeric). `Value` deliberately does not implement
//! `PartialEq`, so that no code compares CEL values with Rust's structural equality by accident.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::error::EvalError;

/// A CEL value.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null`
    Null,
    /// `bool`
    Bool(bool),
    /// `int` (64-bit signed)
    Int(i64),
    /// `uint` (64-bit unsigned)
    Uint(u64),
    /// `double`
    Double(f64),
    /// `string`
    String(Arc<str>),
    /// `bytes`
    Bytes(Arc<[u8]>),
    /// `list`
    List(Arc<Vec<Value>>),
    /// `map` (keys: bool, int, uint, string)
    Map(Arc<MapValue>),
    /// A type value (`int`, `list`, `google.protobuf.Timestamp`, …)
    Type(CelType),
    /// `google.protobuf.Timestamp`
    Timestamp(jiff::Timestamp),
    /// `google.protobuf.Duration`
    Duration(jiff::SignedDuration),
    /// `optional_type(T)` (optionals extension): `None` is `optional.none()`.
    Optional(Option<Arc<Value>>),
    /// `net.IP` (network extension)
    Ip(IpAddr),
    /// `net.CIDR` (network extension)
    Cidr(ipnet::IpNet),
}

/// A map key. CEL map keys are bool, int, uint or string; int and uint keys that denote the
/// same number are the same key for lookups (heterogeneous equality).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A bool key.
    Bool(bool),
    /// An int key.
    Int(i64),
    /// A uint key.
    Uint(u64),
    /// A string key.
    String(Arc<str>),
}

/// A CEL map: entries in insertion order plus an index by key.
///
/// Build maps with [`MapValue::insert`] (or [`MapValue::from_entries`]) so that the index stays
/// in step with the entries and numerically equal int/uint keys are treated as one key.
#[derive(Clone, Debug, Default)]
pub struct MapValue {
    /// Entries in insertion order.
    pub entries: Vec<(Key, Value)>,
    /// Position of each key in `entries`.
    pub index: BTreeMap<Key, usize>,
}

/// CEL type values, as returned by `type(x)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CelType {
    /// `null_type`
    Null,
    /// `bool`
    Bool,
    /// `int`
    Int,
    /// `uint`
    Uint,
    /// `double`
    Double,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `list`
    List,
    /// `map`
    Map,
    /// `type`
    Type,
    /// `google.protobuf.Timestamp`
    Timestamp,
    /// `google.protobuf.Duration`
    Duration,
    /// `optional_type`
    Optional,
    /// `net.IP`
    Ip,
    /// `net.CIDR`
    Cidr,
    /// Any other named type (message or abstract type names).
    Named(Arc<str>),
}

impl CelType {
    /// The type's CEL name, as `type(x)` values are written: `int`, `null_type`,
    /// `google.protobuf.Timestamp`, `optional_type`, `net.IP`, ….
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
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

    /// The built-in type denoted by a (fully qualified) type name, if any. Message names are not
    /// known to the interpreter and give `None`.
    #[must_use]
    pub fn from_name(name: &str) -> Option<CelType> {
        Some(match name {
            "null_type" => CelType::Null,
            "bool" => CelType::Bool,
            "int" => CelType::Int,
            "uint" => CelType::Uint,
            "double" => CelType::Double,
            "string" => CelType::String,
            "bytes" => CelType::Bytes,
            "list" => CelType::List,
            "map" => CelType::Map,
            "type" => CelType::Type,
            "google.protobuf.Timestamp" => CelType::Timestamp,
            "google.protobuf.Duration" => CelType::Duration,
            "optional_type" => CelType::Optional,
            "net.IP" => CelType::Ip,
            "net.CIDR" => CelType::Cidr,
            _ => return None,
        })
    }
}

impl fmt::Display for CelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Key {
    /// The key for a value, when the value's type can be a map key (bool, int, uint, string).
    #[must_use]
    pub fn from_value(value: &Value) -> Option<Key> {
        match value {
            Value::Bool(b) => Some(Key::Bool(*b)),
            Value::Int(i) => Some(Key::Int(*i)),
            Value::Uint(u) => Some(Key::Uint(*u)),
            Value::String(s) => Some(Key::String(s.clone())),
            _ => None,
        }
    }

    /// The key as a CEL value.
    #[must_use]
    pub fn to_value(&self) -> Value {
        match self {
            Key::Bool(b) => Value::Bool(*b),
            Key::Int(i) => Value::Int(*i),
            Key::Uint(u) => Value::Uint(*u),
            Key::String(s) => Value::String(s.clone()),
        }
    }

    /// The same number under the other integer key type (`1` ↔ `1u`), when representable.
    fn numeric_twin(&self) -> Option<Key> {
        match self {
            Key::Int(i) => u64::try_from(*i).ok().map(Key::Uint),
            Key::Uint(u) => i64::try_from(*u).ok().map(Key::Int),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Bool(b) => write!(f, "{b}"),
            Key::Int(i) => write!(f, "{i}"),
            Key::Uint(u) => write!(f, "{u}u"),
            Key::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl MapValue {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A map from entries; a repeated key (including `1` and `1u`) is an error.
    ///
    /// # Errors
    /// [`EvalError::DuplicateKey`] on a repeated key.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Key, Value)>,
    ) -> Result<Self, EvalError> {
        let mut map = Self::new();
        for (key, value) in entries {
            map.insert(key, value)?;
        }
        Ok(map)
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Position of the entry whose key equals `key` (int and uint keys compare numerically).
    fn position(&self, key: &Key) -> Option<usize> {
        if let Some(pos) = self.index.get(key) {
            return Some(*pos);
        }
        key.numeric_twin()
            .and_then(|twin| self.index.get(&twin).copied())
    }

    /// Adds an entry.
    ///
    /// # Errors
    /// [`EvalError::DuplicateKey`] when an equal key is already present.
    pub fn insert(&mut self, key: Key, value: Value) -> Result<(), EvalError> {
        if self.position(&key).is_some() {
            return Err(EvalError::DuplicateKey(key.to_string()));
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Adds or replaces an entry (the replaced entry keeps its position).
    pub fn upsert(&mut self, key: Key, value: Value) {
        match self.position(&key) {
            Some(pos) => {
                if let Some(entry) = self.entries.get_mut(pos) {
                    entry.1 = value;
                }
            }
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// The value stored under `key` (int and uint keys compare numerically).
    #[must_use]
    pub fn get_key(&self, key: &Key) -> Option<&Value> {
        self.position(key)
            .and_then(|pos| self.entries.get(pos))
            .map(|(_, v)| v)
    }

    /// The value stored under a key given as a CEL value, with CEL's heterogeneous numeric
    /// equality: `m[1]`, `m[1u]` and `m[1.0]` all find the entry with key `1`. Values that
    /// cannot be keys find nothing.
    #[must_use]
    pub fn get(&self, key: &Value) -> Option<&Value> {
        match key {
            Value::Double(d) => {
                let d = *d;
                if d.fract() != 0.0 || !d.is_finite() {
                    return None;
                }
                if (-TWO_POW_63..TWO_POW_63).contains(&d) {
                    #[allow(clippy::cast_possible_truncation)]
                    let as_int = d as i64;
                    self.get_key(&Key::Int(as_int))
                } else if (0.0..TWO_POW_64).contains(&d) {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let as_uint = d as u64;
                    self.get_key(&Key::Uint(as_uint))
                } else {
                    None
                }
            }
            other => Key::from_value(other).and_then(|k| self.get_key(&k)),
        }
    }

    /// Whether a key equal to `key` is present (see [`MapValue::get`]).
    #[must_use]
    pub fn contains(&self, key: &Value) -> bool {
        self.get(key).is_some()
    }

    /// Iterates over the entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl Value {
    /// A string value.
    #[must_use]
    pub fn string(s: impl Into<Arc<str>>) -> Value {
        Value::String(s.into())
    }

    /// A bytes value.
    #[must_use]
    pub fn bytes(b: impl Into<Arc<[u8]>>) -> Value {
        Value::Bytes(b.into())
    }

    /// A list value.
    #[must_use]
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    /// A map value.
    #[must_use]
    pub fn map(map: MapValue) -> Value {
        Value::Map(Arc::new(map))
    }

    /// The CEL value of a JSON document: objects become maps with string keys, integral
    /// numbers `int`, other numbers `double`.
    #[must_use]
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map_or_else(|| Value::Double(n.as_f64().unwrap_or(f64::NAN)), Value::Int),
            serde_json::Value::String(s) => Value::string(s.as_str()),
            serde_json::Value::Array(items) => {
                Value::list(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(m) => {
                let mut out = MapValue::new();
                for (k, v) in m {
                    out.upsert(Key::String(Arc::from(k.as_str())), Value::from_json(v));
                }
                Value::map(out)
            }
        }
    }

    /// `optional.of(value)`.
    #[must_use]
    pub fn optional_of(value: Value) -> Value {
        Value::Optional(Some(Arc::new(value)))
    }

    /// `optional.none()`.
    #[must_use]
    pub const fn optional_none() -> Value {
        Value::Optional(None)
    }

    /// The value's CEL type, as `type(x)` gives it.
    #[must_use]
    pub fn cel_type(&self) -> CelType {
        match self {
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

    /// The name of the value's CEL type (for error messages).
    #[must_use]
    pub fn type_name(&self) -> String {
        self.cel_type().name().to_owned()
    }

    /// CEL equality (`==`): numbers compare by mathematical value across `int`, `uint` and
    /// `double`; `NaN` equals nothing; lists and maps compare deeply (maps ignore order);
    /// values of different types are unequal.
    #[must_use]
    pub fn cel_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Type(a), Value::Type(b)) => a == b,
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            (Value::Duration(a), Value::Duration(b)) => a == b,
            (Value::Ip(a), Value::Ip(b)) => a == b,
            (Value::Cidr(a), Value::Cidr(b)) => a == b,
            (Value::Optional(a), Value::Optional(b)) => match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => a.cel_eq(b),
                _ => false,
            },
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.cel_eq(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| match b.get(&k.to_value()) {
                        Some(w) => v.cel_eq(w),
                        None => false,
                    })
            }
            (a, b) => matches!(numeric_cmp(a, b), Some(Some(Ordering::Equal))),
        }
    }

    /// CEL ordering for `<`, `<=`, `>`, `>=`. `Ok(None)` means the values are not ordered
    /// (a `NaN` operand, which the ordering operators report as an error).
    ///
    /// # Errors
    /// [`EvalError::NoMatchingOverload`] when the types cannot be compared.
    pub fn cel_cmp(&self, other: &Value) -> Result<Option<Ordering>, EvalError> {
        if let Some(ord) = numeric_cmp(self, other) {
            return Ok(ord);
        }
        let ord = match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::Duration(a), Value::Duration(b)) => a.cmp(b),
            _ => {
                return Err(EvalError::NoMatchingOverload {
                    function: format!(
                        "_<_ ({}, {})",
                        self.cel_type().name(),
                        other.cel_type().name()
                    ),
                });
            }
        };
        Ok(Some(ord))
    }

    /// Whether the value is the zero value of its type (`0`, `''`, `[]`, `null`, …), as the
    /// optionals extension's `optional.ofNonZeroValue` needs.
    #[must_use]
    pub fn is_zero_value(&self) -> bool {
        match self {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Int(i) => *i == 0,
            Value::Uint(u) => *u == 0,
            Value::Double(d) => *d == 0.0,
            Value::String(s) => s.is_empty(),
            Value::Bytes(b) => b.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::Map(m) => m.is_empty(),
            Value::Timestamp(t) => *t == jiff::Timestamp::UNIX_EPOCH,
            Value::Duration(d) => d.is_zero(),
            Value::Optional(o) => o.is_none(),
            Value::Type(_) | Value::Ip(_) | Value::Cidr(_) => false,
        }
    }
}

/// Values print as CEL source that evaluates back to an equal value: `1`, `1u`, `1.5`,
/// `"text"`, `b"\x00"`, `[1, 2]`, `{"a": 1}`, `timestamp("2009-02-13T23:31:30Z")`,
/// `duration("1.5s")`, `optional.of(1)`, `ip("10.0.0.1")`, type names as themselves. Map entries
/// keep insertion order.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Uint(u) => write!(f, "{u}u"),
            Value::Double(d) if d.is_nan() => f.write_str("double(\"NaN\")"),
            Value::Double(d) if d.is_infinite() => {
                let sign = if *d < 0.0 { "-" } else { "" };
                write!(f, "double(\"{sign}Infinity\")")
            }
            Value::Double(d) => write!(f, "{d:?}"),
            Value::String(s) => write_quoted(f, s),
            Value::Bytes(b) => {
                f.write_str("b\"")?;
                for &byte in b.iter() {
                    match byte {
                        b'"' => f.write_str("\\\"")?,
                        b'\\' => f.write_str("\\\\")?,
                        0x20..=0x7e => write!(f, "{}", char::from(byte))?,
                        _ => write!(f, "\\x{byte:02x}")?,
                    }
                }
                f.write_str("\"")
            }
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("{")?;
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {value}", key.to_value())?;
                }
                f.write_str("}")
            }
            Value::Type(ty) => f.write_str(ty.name()),
            Value::Timestamp(t) => {
                write!(f, "timestamp(\"{}\")", crate::interp::format_timestamp(*t))
            }
            Value::Duration(d) => write!(f, "duration(\"{}\")", crate::interp::format_duration(*d)),
            Value::Optional(None) => f.write_str("optional.none()"),
            Value::Optional(Some(v)) => write!(f, "optional.of({v})"),
            Value::Ip(ip) => write!(f, "ip(\"{ip}\")"),
            Value::Cidr(net) => write!(f, "cidr(\"{net}\")"),
        }
    }
}

/// Writes `s` as a double-quoted CEL string literal.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// 2^63 as a double: `-2^63` is `i64::MIN`, and `i64::MAX` rounds to 2^63.
#[allow(clippy::cast_precision_loss)]
pub(crate) const TWO_POW_63: f64 = (1u64 << 63) as f64;
/// 2^64 as a double (`u64::MAX` rounds to it).
pub(crate) const TWO_POW_64: f64 = 2.0 * TWO_POW_63;

/// Compares two numbers of possibly different numeric types by mathematical value. `None`
/// when either is not a number; `Some(None)` when a `NaN` is involved.
fn numeric_cmp(a: &Value, b: &Value) -> Option<Option<Ordering>> {
    Some(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Uint(x), Value::Uint(y)) => Some(x.cmp(y)),
        (Value::Double(x), Value::Double(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Uint(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Value::Uint(x), Value::Int(y)) => Some(i128::from(*x).cmp(&i128::from(*y))),
        (Value::Int(x), Value::Double(y)) => int_double_cmp(i128::from(*x), *y, false),
        (Value::Uint(x), Value::Double(y)) => int_double_cmp(i128::from(*x), *y, true),
        (Value::Double(x), Value::Int(y)) => {
            int_double_cmp(i128::from(*y), *x, false).map(Ordering::reverse)
        }
        (Value::Double(x), Value::Uint(y)) => {
            int_double_cmp(i128::from(*y), *x, true).map(Ordering::reverse)
        }
        _ => return None,
    })
}

/// Comparison of an integer (int or uint range) with a double, as cel-go does it: a double
/// beyond the integer type's range is greater (or less) than every integer; otherwise the
/// integer is converted to a double and the two doubles compare, so the comparison is lossy
/// near 2^63 (`9223372036854775807 < 9223372036854775808.0` is false).
fn int_double_cmp(i: i128, d: f64, unsigned: bool) -> Option<Ordering> {
    if d.is_nan() {
        return None;
    }
    let (min, max) = if unsigned {
        // `u64::MAX` and `i64::MAX` as doubles are 2^64 and 2^63.
        (0.0, TWO_POW_64)
    } else {
        (-TWO_POW_63, TWO_POW_63)
    };
    if d < min {
        return Some(Ordering::Greater);
    }
    if d > max {
        return Some(Ordering::Less);
    }
    #[allow(clippy::cast_precision_loss)]
    let as_double = i as f64;
    as_double.partial_cmp(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heterogeneous_numeric_equality() {
        assert!(Value::Int(1).cel_eq(&Value::Uint(1)));
        assert!(Value::Int(1).cel_eq(&Value::Double(1.0)));
        assert!(Value::Uint(1).cel_eq(&Value::Double(1.0)));
        assert!(!Value::Int(-1).cel_eq(&Value::Uint(u64::MAX)));
        assert!(!Value::Double(f64::NAN).cel_eq(&Value::Double(f64::NAN)));
        assert!(!Value::Int(1).cel_eq(&Value::string("1")));
    }

    #[test]
    fn numeric_ordering_across_types() {
        let cmp = |a: Value, b: Value| a.cel_cmp(&b).unwrap();
        assert_eq!(cmp(Value::Int(1), Value::Double(1.5)), Some(Ordering::Less));
        assert_eq!(
            cmp(Value::Int(-1), Value::Double(-1.5)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            cmp(Value::Uint(u64::MAX), Value::Double(1e30)),
            Some(Ordering::Less)
        );
        assert_eq!(cmp(Value::Double(f64::NAN), Value::Int(1)), None);
        assert_eq!(cmp(Value::Int(-5), Value::Uint(0)), Some(Ordering::Less));
        assert!(Value::Int(1).cel_cmp(&Value::string("a")).is_err());
    }

    #[test]
    fn maps_find_numerically_equal_keys() {
        let mut map = MapValue::new();
        map.insert(Key::Int(1), Value::string("one")).unwrap();
        map.insert(Key::Uint(7), Value::string("seven")).unwrap();
        assert!(map.get(&Value::Uint(1)).is_some());
        assert!(map.get(&Value::Double(1.0)).is_some());
        assert!(map.get(&Value::Int(7)).is_some());
        assert!(map.get(&Value::Double(1.5)).is_none());
        assert!(map.insert(Key::Uint(1), Value::Null).is_err());
    }

    #[test]
    fn deep_equality_of_lists_and_maps() {
        let a = Value::list(vec![Value::Int(1), Value::list(vec![Value::Uint(2)])]);
        let b = Value::list(vec![Value::Double(1.0), Value::list(vec![Value::Int(2)])]);
        assert!(a.cel_eq(&b));
        let m1 = MapValue::from_entries([
            (Key::String("a".into()), Value::Int(1)),
            (Key::Int(2), Value::Null),
        ])
        .unwrap();
        let m2 = MapValue::from_entries([
            (Key::Uint(2), Value::Null),
            (Key::String("a".into()), Value::Double(1.0)),
        ])
        .unwrap();
        assert!(Value::map(m1).cel_eq(&Value::map(m2)));
    }

    #[test]
    fn values_print_as_cel_source() {
        let map = MapValue::from_entries([
            (
                Key::String("a\"b".into()),
                Value::list(vec![Value::Uint(1), Value::Double(1.0)]),
            ),
            (Key::Int(-2), Value::bytes(&b"\x00A"[..])),
        ])
        .unwrap();
        assert_eq!(
            Value::map(map).to_string(),
            r#"{"a\"b": [1u, 1.0], -2: b"\x00A"}"#
        );
        assert_eq!(Value::Double(f64::NAN).to_string(), r#"double("NaN")"#);
        assert_eq!(
            Value::optional_of(Value::Null).to_string(),
            "optional.of(null)"
        );
        assert_eq!(Value::string("tab\there").to_string(), r#""tab\there""#);
        assert_eq!(
            Value::Type(CelType::Timestamp).to_string(),
            "google.protobuf.Timestamp"
        );
    }

    #[test]
    fn type_names_round_trip() {
        for ty in [
            CelType::Int,
            CelType::Timestamp,
            CelType::Null,
            CelType::Optional,
        ] {
            assert_eq!(CelType::from_name(ty.name()), Some(ty.clone()));
        }
        assert_eq!(Value::Double(1.0).cel_type().name(), "double");
    }
}
