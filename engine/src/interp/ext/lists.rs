//! cel-go's lists extension: `slice`, `flatten`, `sort`, `distinct`, `reverse`, `first`,
//! `last` and `lists.range`. The `sortBy` macro belongs to the core.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use super::{CallResult, MAX_OUTPUT_ELEMENTS, invalid, no_overload, too_large};
use crate::error::EvalError;
use crate::value::{CelType, Value};

super::function_ids! {
    /// The global functions of the library.
    pub(crate) enum Global {
        Range = "lists.range",
    }
}

super::function_ids! {
    /// The member functions of the library.
    pub(crate) enum Member {
        Slice = "slice",
        Flatten = "flatten",
        Sort = "sort",
        Distinct = "distinct",
        Reverse = "reverse",
        First = "first",
        Last = "last",
        SortByAssociatedKeys = "@sortByAssociatedKeys",
    }
}

/// Global functions of the library, by name.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    Global::from_name(name).and_then(|f| call_global(f, args))
}

/// Calls a global function of the library.
pub(super) fn call_global(f: Global, args: &[Value]) -> CallResult {
    match f {
        Global::Range => Some(match args {
            [Value::Int(n)] => range(*n),
            _ => Err(no_overload(f.name())),
        }),
    }
}

/// Member functions of the library, by name.
pub(super) fn member(name: &str, target: &Value, args: &[Value]) -> CallResult {
    Member::from_name(name).and_then(|f| call_member(f, target, args))
}

/// Calls a member function of the library.
pub(super) fn call_member(f: Member, target: &Value, args: &[Value]) -> CallResult {
    let Value::List(list) = target else {
        return Some(Err(no_overload(f.name())));
    };
    Some(match (f, args) {
        (Member::Slice, [Value::Int(start), Value::Int(end)]) => slice(list, *start, *end),
        (Member::Flatten, []) => flatten_list(list, 1),
        (Member::Flatten, [Value::Int(depth)]) => {
            if *depth < 0 {
                Err(invalid("flatten: level must be non-negative"))
            } else {
                flatten_list(list, *depth)
            }
        }
        (Member::Sort, []) => sort(list),
        (Member::Distinct, []) => Ok(distinct(list)),
        (Member::Reverse, []) => Ok(Value::list(list.iter().rev().cloned().collect())),
        (Member::First, []) => Ok(Value::Optional(list.first().cloned().map(Arc::new))),
        (Member::Last, []) => Ok(Value::Optional(list.last().cloned().map(Arc::new))),
        _ => Err(no_overload(f.name())),
    })
}

/// `lists.range(n)`: `[0, 1, …, n-1]`.
fn range(n: i64) -> Result<Value, EvalError> {
    if n < 0 {
        return Err(invalid(format!(
            "lists.range: size must be non-negative, got {n}"
        )));
    }
    if usize::try_from(n).is_ok_and(|n| n > MAX_OUTPUT_ELEMENTS) {
        return Err(too_large("lists.range"));
    }
    Ok(Value::list((0..n).map(Value::Int).collect()))
}

fn slice(list: &[Value], start: i64, end: i64) -> Result<Value, EvalError> {
    if start < 0 || end < 0 {
        return Err(invalid(format!(
            "cannot slice({start}, {end}), negative indexes not supported"
        )));
    }
    if start > end {
        return Err(invalid(format!(
            "cannot slice({start}, {end}), start index must be less than or equal to end index"
        )));
    }
    let len = list.len();
    let (Ok(from), Ok(to)) = (usize::try_from(start), usize::try_from(end)) else {
        return Err(invalid(format!(
            "cannot slice({start}, {end}), list is length {len}"
        )));
    };
    if to > len {
        return Err(invalid(format!(
            "cannot slice({start}, {end}), list is length {len}"
        )));
    }
    Ok(Value::list(list[from..to].to_vec()))
}

/// Flatten nested lists up to `depth` levels. The size is counted first (stopping at the
/// cap), so a list that shares one big inner list many times is refused before allocating.
fn flatten_list(list: &[Value], depth: i64) -> Result<Value, EvalError> {
    let size =
        flattened_size(list, depth, MAX_OUTPUT_ELEMENTS).ok_or_else(|| too_large("flatten"))?;
    let mut out = Vec::with_capacity(size);
    flatten_into(&mut out, list, depth);
    Ok(Value::list(out))
}

/// The number of elements `list` flattens to, or `None` beyond `budget`.
fn flattened_size(list: &[Value], depth: i64, budget: usize) -> Option<usize> {
    let mut size = 0usize;
    for item in list {
        size += match item {
            Value::List(inner) if depth > 0 => flattened_size(inner, depth - 1, budget - size)?,
            _ => 1,
        };
        if size > budget {
            return None;
        }
    }
    Some(size)
}

fn flatten_into(out: &mut Vec<Value>, list: &[Value], depth: i64) {
    for item in list {
        match item {
            Value::List(inner) if depth > 0 => flatten_into(out, inner, depth - 1),
            other => out.push(other.clone()),
        }
    }
}

/// Whether values of this type can be sorted.
fn is_orderable(t: &CelType) -> bool {
    matches!(
        t,
        CelType::Bool
            | CelType::Int
            | CelType::Uint
            | CelType::Double
            | CelType::String
            | CelType::Bytes
            | CelType::Timestamp
            | CelType::Duration
    )
}

/// Sort a list of values of one comparable type (stable).
fn sort(list: &[Value]) -> Result<Value, EvalError> {
    let Some(first) = list.first() else {
        return Ok(Value::list(Vec::new()));
    };
    let element_type = first.cel_type();
    if !is_orderable(&element_type) {
        return Err(invalid("sort: list elements must be comparable"));
    }
    if list.iter().any(|v| v.cel_type() != element_type) {
        return Err(invalid("sort: list elements must have the same type"));
    }
    let mut sorted = list.to_vec();
    sorted.sort_by(|a, b| a.cel_cmp(b).ok().flatten().unwrap_or(Ordering::Equal));
    Ok(Value::list(sorted))
}

/// How `distinct` recognises a value it has seen.
enum Identity<'a> {
    /// A scalar, hashed: equal scalars (by CEL equality) have equal keys.
    Scalar(ScalarKey<'a>),
    /// A value equal to nothing, not even itself (NaN).
    Unique,
    /// A list, map or optional, compared with CEL equality against earlier ones.
    Composite,
}

/// A hashable stand-in for a scalar value. Numbers of every type share one key space: an
/// integral double and an int or uint of the same value get the same key.
#[derive(PartialEq, Eq, Hash)]
enum ScalarKey<'a> {
    Null,
    Bool(bool),
    Integer(i128),
    Fraction(u64),
    String(&'a str),
    Bytes(&'a [u8]),
    Timestamp(jiff::Timestamp),
    Duration(jiff::SignedDuration),
    Type(&'a CelType),
    Ip(std::net::IpAddr),
    Cidr(ipnet::IpNet),
}

fn identity(v: &Value) -> Identity<'_> {
    let key = match v {
        Value::Null => ScalarKey::Null,
        Value::Bool(b) => ScalarKey::Bool(*b),
        Value::Int(i) => ScalarKey::Integer(i128::from(*i)),
        Value::Uint(u) => ScalarKey::Integer(i128::from(*u)),
        Value::Double(d) if d.is_nan() => return Identity::Unique,
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 1e30 => {
            // Integral and far inside i128: the conversion is exact.
            ScalarKey::Integer(*d as i128)
        }
        Value::Double(d) => ScalarKey::Fraction(d.to_bits()),
        Value::String(s) => ScalarKey::String(s),
        Value::Bytes(b) => ScalarKey::Bytes(b),
        Value::Timestamp(t) => ScalarKey::Timestamp(*t),
        Value::Duration(d) => ScalarKey::Duration(*d),
        Value::Type(t) => ScalarKey::Type(t),
        Value::Ip(ip) => ScalarKey::Ip(*ip),
        Value::Cidr(net) => ScalarKey::Cidr(*net),
        Value::List(_) | Value::Map(_) | Value::Optional(_) => return Identity::Composite,
    };
    Identity::Scalar(key)
}

/// The list without repeated elements (CEL equality), first occurrences kept in order.
/// Scalars are hashed; only lists, maps and optionals are compared pairwise.
fn distinct(list: &[Value]) -> Value {
    let mut scalars = HashSet::new();
    let mut composites: Vec<&Value> = Vec::new();
    let mut unique: Vec<Value> = Vec::new();
    for item in list {
        let first = match identity(item) {
            Identity::Scalar(key) => scalars.insert(key),
            Identity::Unique => true,
            Identity::Composite => {
                let seen = composites.iter().any(|c| c.cel_eq(item));
                if !seen {
                    composites.push(item);
                }
                !seen
            }
        };
        if first {
            unique.push(item.clone());
        }
    }
    Value::list(unique)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::ext::{call, values_equal};

    fn ints(v: &[i64]) -> Value {
        Value::list(v.iter().copied().map(Value::Int).collect())
    }

    fn member_ok(name: &str, target: &Value, args: &[Value]) -> Value {
        call(name, Some(target), args).unwrap().unwrap()
    }

    fn assert_value(actual: &Value, expected: &Value) {
        assert!(values_equal(actual, expected), "{actual:?} != {expected:?}");
    }

    #[test]
    fn range_builds_and_bounds() {
        assert_value(
            &call("lists.range", None, &[Value::Int(3)])
                .unwrap()
                .unwrap(),
            &ints(&[0, 1, 2]),
        );
        assert_value(
            &call("lists.range", None, &[Value::Int(0)])
                .unwrap()
                .unwrap(),
            &ints(&[]),
        );
        assert!(
            call("lists.range", None, &[Value::Int(-1)])
                .unwrap()
                .is_err()
        );
        assert!(
            call("lists.range", None, &[Value::Int(i64::MAX)])
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn slice_is_half_open_and_checked() {
        let l = ints(&[1, 2, 3, 4]);
        assert_value(
            &member_ok("slice", &l, &[Value::Int(1), Value::Int(3)]),
            &ints(&[2, 3]),
        );
        assert_value(
            &member_ok("slice", &l, &[Value::Int(4), Value::Int(4)]),
            &ints(&[]),
        );
        for (a, b) in [(-1, 2), (3, 2), (0, 5)] {
            assert!(
                call("slice", Some(&l), &[Value::Int(a), Value::Int(b)])
                    .unwrap()
                    .is_err()
            );
        }
    }

    #[test]
    fn flatten_with_depth() {
        let nested = Value::list(vec![
            Value::Int(1),
            Value::list(vec![
                Value::Int(2),
                Value::list(vec![Value::Int(3), ints(&[4])]),
            ]),
        ]);
        let one = member_ok("flatten", &nested, &[]);
        assert_value(
            &one,
            &Value::list(vec![
                Value::Int(1),
                Value::Int(2),
                Value::list(vec![Value::Int(3), ints(&[4])]),
            ]),
        );
        assert_value(
            &member_ok("flatten", &nested, &[Value::Int(5)]),
            &ints(&[1, 2, 3, 4]),
        );
        assert_value(&member_ok("flatten", &nested, &[Value::Int(0)]), &nested);
        assert!(
            call("flatten", Some(&nested), &[Value::Int(-1)])
                .unwrap()
                .is_err()
        );
    }

    #[test]
    fn sort_requires_homogeneous_comparable_elements() {
        assert_value(
            &member_ok("sort", &ints(&[3, 1, 2]), &[]),
            &ints(&[1, 2, 3]),
        );
        let strs = Value::list(vec![Value::string("b"), Value::string("a")]);
        assert_value(
            &member_ok("sort", &strs, &[]),
            &Value::list(vec![Value::string("a"), Value::string("b")]),
        );
        let mixed = Value::list(vec![Value::Int(1), Value::Uint(0)]);
        assert!(call("sort", Some(&mixed), &[]).unwrap().is_err());
        let maps = Value::list(vec![Value::list(vec![])]);
        assert!(call("sort", Some(&maps), &[]).unwrap().is_err());
        assert_value(&member_ok("sort", &ints(&[]), &[]), &ints(&[]));
    }

    #[test]
    fn flatten_is_bounded() {
        let inner = Value::list(vec![Value::Int(0); 1 << 16]);
        let outer = Value::list(vec![inner; 1 << 8]);
        assert!(matches!(
            call("flatten", Some(&outer), &[]).unwrap(),
            Err(EvalError::LimitExceeded(_))
        ));
    }

    #[test]
    fn distinct_uses_cel_equality() {
        let l = Value::list(vec![
            Value::Int(1),
            Value::Uint(1),
            Value::Double(1.0),
            Value::Int(2),
        ]);
        assert_value(&member_ok("distinct", &l, &[]), &ints(&[1, 2]));
        let nan = Value::Double(f64::NAN);
        let l = Value::list(vec![
            nan.clone(),
            nan,
            Value::Double(0.5),
            Value::Double(0.5),
            ints(&[1]),
            Value::list(vec![Value::Uint(1)]),
            Value::string("a"),
            Value::string("a"),
        ]);
        match member_ok("distinct", &l, &[]) {
            Value::List(items) => assert_eq!(items.len(), 5),
            other => panic!("{other:?}"),
        }
        // Scalars are hashed, so long lists stay cheap.
        let range = call("lists.range", None, &[Value::Int(100_000)])
            .unwrap()
            .unwrap();
        match member_ok("distinct", &range, &[]) {
            Value::List(items) => assert_eq!(items.len(), 100_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_last_and_reverse() {
        let l = ints(&[1, 2]);
        assert_value(
            &member_ok("first", &l, &[]),
            &Value::Optional(Some(Arc::new(Value::Int(1)))),
        );
        assert_value(
            &member_ok("last", &l, &[]),
            &Value::Optional(Some(Arc::new(Value::Int(2)))),
        );
        assert_value(&member_ok("first", &ints(&[]), &[]), &Value::Optional(None));
        assert_value(&member_ok("reverse", &l, &[]), &ints(&[2, 1]));
        assert!(matches!(
            call("slice", Some(&Value::Int(1)), &[]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
    }
}
