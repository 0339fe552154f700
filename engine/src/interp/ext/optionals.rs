//! cel-go's optional types library, function part: `optional.of`, `optional.ofNonZeroValue`,
//! `optional.none`, `optional.unwrap`, and the members `hasValue`, `value`, `or`, `orValue`
//! and `unwrapOpt`. The syntax (`.?field`, `[?key]`, `{?k: v}`, `[?e]`) and the `optMap` /
//! `optFlatMap` macros belong to the core.

use std::sync::Arc;

use super::{CallResult, invalid, no_overload};
use crate::error::EvalError;
use crate::value::Value;

super::function_ids! {
    /// The global functions of the library.
    pub(crate) enum Global {
        Of = "optional.of",
        OfNonZeroValue = "optional.ofNonZeroValue",
        None = "optional.none",
        Unwrap = "optional.unwrap",
    }
}

super::function_ids! {
    /// The member functions of the library.
    pub(crate) enum Member {
        HasValue = "hasValue",
        Value = "value",
        Or = "or",
        OrValue = "orValue",
        UnwrapOpt = "unwrapOpt",
    }
}

/// Global functions of the library, by name.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    Global::from_name(name).and_then(|f| call_global(f, args))
}

/// Calls a global function of the library.
pub(super) fn call_global(f: Global, args: &[Value]) -> CallResult {
    let result = match (f, args) {
        (Global::Of, [v]) => Ok(some(v.clone())),
        (Global::OfNonZeroValue, [v]) => Ok(if is_zero_value(v) {
            Value::Optional(None)
        } else {
            some(v.clone())
        }),
        (Global::None, []) => Ok(Value::Optional(None)),
        (Global::Unwrap, [Value::List(items)]) => unwrap(items, f.name()),
        _ => Err(no_overload(f.name())),
    };
    Some(result)
}

/// Member functions of the library, by name.
pub(super) fn member(name: &str, target: &Value, args: &[Value]) -> CallResult {
    Member::from_name(name).and_then(|f| call_member(f, target, args))
}

/// Calls a member function of the library.
pub(super) fn call_member(f: Member, target: &Value, args: &[Value]) -> CallResult {
    let result = match (f, target, args) {
        (Member::HasValue, Value::Optional(o), []) => Ok(Value::Bool(o.is_some())),
        (Member::Value, Value::Optional(o), []) => match o {
            Some(v) => Ok(Value::clone(v)),
            None => Err(invalid("optional.none() dereference")),
        },
        (Member::Or, Value::Optional(o), [Value::Optional(_)]) => Ok(match o {
            Some(_) => target.clone(),
            None => args[0].clone(),
        }),
        (Member::OrValue, Value::Optional(o), [alternative]) => Ok(match o {
            Some(v) => Value::clone(v),
            None => alternative.clone(),
        }),
        (Member::UnwrapOpt, Value::List(items), []) => unwrap(items, f.name()),
        _ => Err(no_overload(f.name())),
    };
    Some(result)
}

fn some(v: Value) -> Value {
    Value::Optional(Some(Arc::new(v)))
}

/// The values of the present optionals in a list of optionals.
fn unwrap(items: &[Value], name: &str) -> Result<Value, EvalError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Optional(Some(v)) => out.push(Value::clone(v)),
            Value::Optional(None) => {}
            _ => return Err(no_overload(name)),
        }
    }
    Ok(Value::list(out))
}

/// Whether `v` is the zero value of its type for `optional.ofNonZeroValue`: the core's
/// [`Value::is_zero_value`], except that the zero timestamp is Go's zero `time.Time`
/// (`0001-01-01T00:00:00Z`), as in cel-go, not the Unix epoch.
fn is_zero_value(v: &Value) -> bool {
    match v {
        Value::Timestamp(t) => t.as_second() == GO_ZERO_TIME_UNIX && t.subsec_nanosecond() == 0,
        other => other.is_zero_value(),
    }
}

/// Go's zero `time.Time` (`0001-01-01T00:00:00Z`) in Unix seconds.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::ext::{call, values_equal};

    fn g(name: &str, args: &[Value]) -> Value {
        call(name, None, args).unwrap().unwrap()
    }

    fn mem(name: &str, target: &Value, args: &[Value]) -> Result<Value, EvalError> {
        call(name, Some(target), args).unwrap()
    }

    #[test]
    fn constructors() {
        assert!(matches!(
            g("optional.of", &[Value::Null]),
            Value::Optional(Some(_))
        ));
        assert!(matches!(g("optional.none", &[]), Value::Optional(None)));
        assert!(matches!(
            g("optional.ofNonZeroValue", &[Value::string("")]),
            Value::Optional(None)
        ));
        assert!(matches!(
            g("optional.ofNonZeroValue", &[Value::Int(42)]),
            Value::Optional(Some(_))
        ));
        let epoch_zero = jiff::Timestamp::new(GO_ZERO_TIME_UNIX, 0).unwrap();
        assert!(is_zero_value(&Value::Timestamp(epoch_zero)));
        assert!(!is_zero_value(&Value::Timestamp(
            jiff::Timestamp::UNIX_EPOCH
        )));
        assert!(matches!(
            call("optional.none", None, &[Value::Int(1)]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
    }

    #[test]
    fn members() {
        let none = Value::Optional(None);
        let one = some(Value::Int(1));
        assert!(matches!(mem("hasValue", &one, &[]), Ok(Value::Bool(true))));
        assert!(matches!(
            mem("hasValue", &none, &[]),
            Ok(Value::Bool(false))
        ));
        assert!(matches!(mem("value", &one, &[]), Ok(Value::Int(1))));
        assert!(mem("value", &none, &[]).is_err());
        assert!(values_equal(
            &mem("or", &none, std::slice::from_ref(&one)).unwrap(),
            &one
        ));
        assert!(values_equal(
            &mem("or", &one, std::slice::from_ref(&none)).unwrap(),
            &one
        ));
        assert!(matches!(
            mem("orValue", &none, &[Value::Int(42)]),
            Ok(Value::Int(42))
        ));
        assert!(matches!(
            mem("orValue", &one, &[Value::Int(42)]),
            Ok(Value::Int(1))
        ));
        assert!(matches!(
            mem("or", &none, &[Value::Int(1)]),
            Err(EvalError::NoMatchingOverload { .. })
        ));
        assert!(matches!(
            mem("hasValue", &Value::Int(1), &[]),
            Err(EvalError::NoMatchingOverload { .. })
        ));
    }

    #[test]
    fn unwrap_lists_of_optionals() {
        let list = Value::list(vec![
            some(Value::Int(1)),
            Value::Optional(None),
            some(Value::Int(2)),
        ]);
        let expected = Value::list(vec![Value::Int(1), Value::Int(2)]);
        assert!(values_equal(
            &g("optional.unwrap", std::slice::from_ref(&list)),
            &expected
        ));
        assert!(values_equal(
            &mem("unwrapOpt", &list, &[]).unwrap(),
            &expected
        ));
        let bad = Value::list(vec![Value::Int(1)]);
        assert!(mem("unwrapOpt", &bad, &[]).is_err());
    }
}
