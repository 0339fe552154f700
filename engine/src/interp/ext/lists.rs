//! cel-go's lists extension: `slice`, `flatten`, `sort`, `distinct`, `reverse`, `first`,
//! `last`, `lists.range` and `@sortByAssociatedKeys`, the function the core's `sortBy` macro
//! expands to (`list.@sortByAssociatedKeys(keys)` sorts `list` by the parallel `keys`).

use std::cmp::Ordering;
use std::sync::Arc;

use super::{CallResult, invalid, no_overload};
use crate::error::EvalError;
use crate::value::{CelType, Value};

/// The largest list `lists.range` builds (cel-go's limit).
const MAX_RANGE_SIZE: i64 = 10_000_000;

/// Global functions of the library.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    match name {
        "lists.range" => Some(match args {
            [Value::Int(n)] => range(*n),
            _ => Err(no_overload(name)),
        }),
        _ => None,
    }
}

/// Member functions of the library.
pub(super) fn member(name: &str, target: &Value, args: &[Value]) -> CallResult {
    let known = matches!(
        name,
        "slice"
            | "flatten"
            | "sort"
            | "distinct"
            | "reverse"
            | "first"
            | "last"
            | "@sortByAssociatedKeys"
    );
    if !known {
        return None;
    }
    let Value::List(list) = target else {
        return Some(Err(no_overload(name)));
    };
    Some(match (name, args) {
        ("slice", [Value::Int(start), Value::Int(end)]) => slice(list, *start, *end),
        ("flatten", []) => Ok(Value::list(flatten(list, 1))),
        ("flatten", [Value::Int(depth)]) => {
            if *depth < 0 {
                Err(invalid("flatten: level must be non-negative"))
            } else {
                Ok(Value::list(flatten(list, *depth)))
            }
        }
        ("sort", []) => sort_by_keys(list, list),
        ("@sortByAssociatedKeys", [Value::List(keys)]) => sort_by_keys(list, keys),
        ("distinct", []) => Ok(distinct(list)),
        ("reverse", []) => Ok(Value::list(list.iter().rev().cloned().collect())),
        ("first", []) => Ok(Value::Optional(list.first().cloned().map(Arc::new))),
        ("last", []) => Ok(Value::Optional(list.last().cloned().map(Arc::new))),
        _ => Err(no_overload(name)),
    })
}

/// `lists.range(n)`: `[0, 1, …, n-1]`.
fn range(n: i64) -> Result<Value, EvalError> {
    if n < 0 {
        return Err(invalid(format!(
            "lists.range: size must be non-negative, got {n}"
        )));
    }
    if n > MAX_RANGE_SIZE {
        return Err(invalid(format!(
            "lists.range: size {n} exceeds maximum allowed ({MAX_RANGE_SIZE})"
        )));
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

/// Flatten nested lists up to `depth` levels.
fn flatten(list: &[Value], depth: i64) -> Vec<Value> {
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        match item {
            Value::List(inner) if depth > 0 => out.extend(flatten(inner, depth - 1)),
            other => out.push(other.clone()),
        }
    }
    out
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

/// Sort `list` by the parallel list `keys` (stable); `sort()` passes the list itself.
fn sort_by_keys(list: &[Value], keys: &[Value]) -> Result<Value, EvalError> {
    if list.len() != keys.len() {
        return Err(invalid(format!(
            "@sortByAssociatedKeys() expected a list of the same size as the associated keys list, but got {} and {} elements respectively",
            list.len(),
            keys.len()
        )));
    }
    let Some(first) = keys.first() else {
        return Ok(Value::list(Vec::new()));
    };
    let key_type = first.cel_type();
    if !is_orderable(&key_type) {
        return Err(invalid("list elements must be comparable"));
    }
    if keys.iter().any(|k| k.cel_type() != key_type) {
        return Err(invalid("list elements must have the same type"));
    }
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by(|&a, &b| {
        keys[a]
            .cel_cmp(&keys[b])
            .ok()
            .flatten()
            .unwrap_or(Ordering::Equal)
    });
    Ok(Value::list(
        order.into_iter().map(|i| list[i].clone()).collect(),
    ))
}

/// The list without repeated elements (CEL equality), first occurrences kept in order.
fn distinct(list: &[Value]) -> Value {
    let mut unique: Vec<Value> = Vec::with_capacity(list.len());
    for item in list {
        if !unique.iter().any(|seen| seen.cel_eq(item)) {
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
    fn sort_by_associated_keys_is_stable() {
        let items = Value::list(vec![
            Value::string("foo"),
            Value::string("bar"),
            Value::string("baz"),
        ]);
        let keys = ints(&[3, 1, 1]);
        assert_value(
            &member_ok("@sortByAssociatedKeys", &items, &[keys]),
            &Value::list(vec![
                Value::string("bar"),
                Value::string("baz"),
                Value::string("foo"),
            ]),
        );
        assert!(
            call("@sortByAssociatedKeys", Some(&items), &[ints(&[1])])
                .unwrap()
                .is_err()
        );
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
