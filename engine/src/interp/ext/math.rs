//! cel-go's math extension: `math.greatest`, `math.least`, rounding (`ceil`, `floor`, `round`,
//! `trunc`), `abs`, `sign`, the float classifiers, the bitwise functions and `sqrt`.

use std::cmp::Ordering;

use super::{CallResult, invalid, no_overload};
use crate::error::EvalError;
use crate::value::Value;

super::function_ids! {
    /// The global functions of the library.
    pub(crate) enum Global {
        Greatest = "math.greatest",
        Least = "math.least",
        Ceil = "math.ceil",
        Floor = "math.floor",
        Round = "math.round",
        Trunc = "math.trunc",
        Abs = "math.abs",
        Sign = "math.sign",
        IsNaN = "math.isNaN",
        IsInf = "math.isInf",
        IsFinite = "math.isFinite",
        BitAnd = "math.bitAnd",
        BitOr = "math.bitOr",
        BitXor = "math.bitXor",
        BitNot = "math.bitNot",
        BitShiftLeft = "math.bitShiftLeft",
        BitShiftRight = "math.bitShiftRight",
        Sqrt = "math.sqrt",
    }
}

/// Global functions of the library, by name.
pub(super) fn global(name: &str, args: &[Value]) -> CallResult {
    Global::from_name(name).and_then(|f| call_global(f, args))
}

/// Calls a global function of the library.
pub(super) fn call_global(f: Global, args: &[Value]) -> CallResult {
    let name = f.name();
    let result = match f {
        Global::Greatest => extremum(name, args, Ordering::Greater),
        Global::Least => extremum(name, args, Ordering::Less),
        Global::Ceil => double_op(name, args, f64::ceil),
        Global::Floor => double_op(name, args, f64::floor),
        Global::Round => double_op(name, args, f64::round),
        Global::Trunc => double_op(name, args, f64::trunc),
        Global::Abs => match args {
            [Value::Int(i)] => i.checked_abs().map(Value::Int).ok_or(EvalError::Overflow),
            [Value::Uint(u)] => Ok(Value::Uint(*u)),
            [Value::Double(d)] => Ok(Value::Double(d.abs())),
            _ => Err(no_overload(name)),
        },
        Global::Sign => match args {
            [Value::Int(i)] => Ok(Value::Int(i.signum())),
            [Value::Uint(u)] => Ok(Value::Uint(u64::from(*u > 0))),
            [Value::Double(d)] => Ok(Value::Double(double_sign(*d))),
            _ => Err(no_overload(name)),
        },
        Global::IsNaN => double_test(name, args, f64::is_nan),
        Global::IsInf => double_test(name, args, f64::is_infinite),
        Global::IsFinite => double_test(name, args, f64::is_finite),
        Global::BitAnd => bitwise(name, args, |a, b| a & b),
        Global::BitOr => bitwise(name, args, |a, b| a | b),
        Global::BitXor => bitwise(name, args, |a, b| a ^ b),
        Global::BitNot => match args {
            [Value::Int(i)] => Ok(Value::Int(!i)),
            [Value::Uint(u)] => Ok(Value::Uint(!u)),
            _ => Err(no_overload(name)),
        },
        Global::BitShiftLeft => shift(name, args, true),
        Global::BitShiftRight => shift(name, args, false),
        Global::Sqrt => match args {
            [Value::Int(i)] => Ok(Value::Double((*i as f64).sqrt())),
            [Value::Uint(u)] => Ok(Value::Double((*u as f64).sqrt())),
            [Value::Double(d)] => Ok(Value::Double(d.sqrt())),
            _ => Err(no_overload(name)),
        },
    };
    Some(result)
}

fn is_number(v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::Uint(_) | Value::Double(_))
}

/// `math.greatest` / `math.least` over the arguments, or over the one list argument. The first
/// of equal values wins; the result keeps its own numeric type.
fn extremum(name: &str, args: &[Value], wanted: Ordering) -> Result<Value, EvalError> {
    let values: &[Value] = match args {
        [Value::List(items)] => {
            if items.is_empty() {
                return Err(invalid(format!("{name}(list) argument must not be empty")));
            }
            items
        }
        [] => return Err(no_overload(name)),
        _ => args,
    };
    let mut best: Option<&Value> = None;
    for v in values {
        if !is_number(v) {
            return Err(no_overload(name));
        }
        best = match best {
            Some(b) if v.cel_cmp(b).ok().flatten() != Some(wanted) => Some(b),
            _ => Some(v),
        };
    }
    best.cloned().ok_or_else(|| no_overload(name))
}

fn double_op(name: &str, args: &[Value], op: fn(f64) -> f64) -> Result<Value, EvalError> {
    match args {
        [Value::Double(d)] => Ok(Value::Double(op(*d))),
        _ => Err(no_overload(name)),
    }
}

fn double_test(name: &str, args: &[Value], test: fn(f64) -> bool) -> Result<Value, EvalError> {
    match args {
        [Value::Double(d)] => Ok(Value::Bool(test(*d))),
        _ => Err(no_overload(name)),
    }
}

/// The sign of a double: -1, 1, or the value itself for zeros and NaN.
fn double_sign(d: f64) -> f64 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        d
    }
}

/// A bitwise binary function over two ints or two uints, computed on the two's-complement
/// 64-bit pattern (`as` between `i64` and `u64` reinterprets the bits).
fn bitwise(name: &str, args: &[Value], op: fn(u64, u64) -> u64) -> Result<Value, EvalError> {
    match args {
        [Value::Int(a), Value::Int(b)] => Ok(Value::Int(op(*a as u64, *b as u64) as i64)),
        [Value::Uint(a), Value::Uint(b)] => Ok(Value::Uint(op(*a, *b))),
        _ => Err(no_overload(name)),
    }
}

/// `math.bitShiftLeft` / `math.bitShiftRight`: shifts of 64 or more give 0; right shifts of
/// ints are logical (the sign bit is not extended), as in cel-go.
fn shift(name: &str, args: &[Value], left: bool) -> Result<Value, EvalError> {
    let (bits, by, signed) = match args {
        [Value::Int(v), Value::Int(by)] => (*v as u64, *by, true),
        [Value::Uint(v), Value::Int(by)] => (*v, *by, false),
        _ => return Err(no_overload(name)),
    };
    let Ok(by) = u32::try_from(by) else {
        if by < 0 {
            return Err(invalid(format!("{name}() negative offset")));
        }
        return Ok(if signed {
            Value::Int(0)
        } else {
            Value::Uint(0)
        });
    };
    let shifted = if left {
        bits.checked_shl(by)
    } else {
        bits.checked_shr(by)
    }
    .unwrap_or(0);
    Ok(if signed {
        Value::Int(shifted as i64)
    } else {
        Value::Uint(shifted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::ext::call;

    fn g(name: &str, args: &[Value]) -> Result<Value, EvalError> {
        call(name, None, args).expect("known function")
    }

    fn is_overload_error(r: &Result<Value, EvalError>) -> bool {
        matches!(r, Err(EvalError::NoMatchingOverload { .. }))
    }

    #[test]
    fn greatest_and_least_keep_types_and_first_ties() {
        assert!(matches!(
            g("math.greatest", &[Value::Int(-5)]),
            Ok(Value::Int(-5))
        ));
        assert!(matches!(
            g("math.greatest", &[Value::Uint(5), Value::Int(-7)]),
            Ok(Value::Uint(5))
        ));
        assert!(matches!(
            g("math.greatest", &[Value::Int(1), Value::Double(1.0)]),
            Ok(Value::Int(1))
        ));
        assert!(matches!(
            g("math.greatest", &[Value::Int(1), Value::Double(1.797693e308)]),
            Ok(Value::Double(d)) if d == 1.797693e308
        ));
        assert!(matches!(
            g("math.least", &[Value::Int(i64::MAX), Value::Int(1)]),
            Ok(Value::Int(1))
        ));
        let list = Value::list(vec![
            Value::Double(5.4),
            Value::Uint(10),
            Value::Int(3),
            Value::Double(-5.0),
        ]);
        assert!(matches!(
            g("math.greatest", std::slice::from_ref(&list)),
            Ok(Value::Uint(10))
        ));
        assert!(matches!(g("math.least", &[list]), Ok(Value::Double(d)) if d == -5.0));
        assert!(g("math.least", &[Value::list(vec![])]).is_err());
        assert!(is_overload_error(&g(
            "math.greatest",
            &[Value::string("a")]
        )));
        assert!(is_overload_error(&g("math.greatest", &[])));
    }

    #[test]
    fn rounding_functions_need_doubles() {
        assert!(
            matches!(g("math.ceil", &[Value::Double(-1.2)]), Ok(Value::Double(d)) if d == -1.0)
        );
        assert!(matches!(g("math.floor", &[Value::Double(1.2)]), Ok(Value::Double(d)) if d == 1.0));
        assert!(
            matches!(g("math.round", &[Value::Double(-1.5)]), Ok(Value::Double(d)) if d == -2.0)
        );
        assert!(matches!(g("math.round", &[Value::Double(2.5)]), Ok(Value::Double(d)) if d == 3.0));
        assert!(
            matches!(g("math.trunc", &[Value::Double(-1.7)]), Ok(Value::Double(d)) if d == -1.0)
        );
        assert!(is_overload_error(&g("math.round", &[Value::Int(1)])));
    }

    #[test]
    fn abs_sign_and_classifiers() {
        assert!(matches!(
            g("math.abs", &[Value::Int(-11)]),
            Ok(Value::Int(11))
        ));
        assert_eq!(
            g("math.abs", &[Value::Int(i64::MIN)]).unwrap_err(),
            EvalError::Overflow
        );
        assert!(matches!(
            g("math.sign", &[Value::Uint(100)]),
            Ok(Value::Uint(1))
        ));
        assert!(matches!(
            g("math.sign", &[Value::Int(-11)]),
            Ok(Value::Int(-1))
        ));
        assert!(matches!(g("math.sign", &[Value::Double(0.0)]), Ok(Value::Double(d)) if d == 0.0));
        assert!(is_overload_error(&g("math.sign", &[Value::Bool(true)])));
        assert!(matches!(
            g("math.isNaN", &[Value::Double(f64::NAN)]),
            Ok(Value::Bool(true))
        ));
        assert!(matches!(
            g("math.isInf", &[Value::Double(f64::INFINITY)]),
            Ok(Value::Bool(true))
        ));
        assert!(matches!(
            g("math.isFinite", &[Value::Double(f64::NAN)]),
            Ok(Value::Bool(false))
        ));
        assert!(matches!(g("math.sqrt", &[Value::Int(4)]), Ok(Value::Double(d)) if d == 2.0));
    }

    #[test]
    fn bitwise_functions() {
        assert!(matches!(
            g("math.bitAnd", &[Value::Int(1), Value::Int(-1)]),
            Ok(Value::Int(1))
        ));
        assert!(matches!(
            g("math.bitOr", &[Value::Int(4), Value::Int(-2)]),
            Ok(Value::Int(-2))
        ));
        assert!(matches!(
            g("math.bitXor", &[Value::Uint(1), Value::Uint(3)]),
            Ok(Value::Uint(2))
        ));
        assert!(matches!(
            g("math.bitNot", &[Value::Uint(0)]),
            Ok(Value::Uint(u64::MAX))
        ));
        assert!(is_overload_error(&g(
            "math.bitOr",
            &[Value::Double(1.2), Value::Int(1)]
        )));
        assert!(matches!(
            g("math.bitShiftLeft", &[Value::Int(1), Value::Int(2)]),
            Ok(Value::Int(4))
        ));
        assert!(matches!(
            g("math.bitShiftLeft", &[Value::Int(-1), Value::Int(200)]),
            Ok(Value::Int(0))
        ));
        assert!(matches!(
            g("math.bitShiftRight", &[Value::Int(-1024), Value::Int(3)]),
            Ok(Value::Int(2_305_843_009_213_693_824))
        ));
        assert!(matches!(
            g("math.bitShiftRight", &[Value::Uint(1024), Value::Int(64)]),
            Ok(Value::Uint(0))
        ));
        assert!(g("math.bitShiftLeft", &[Value::Uint(1), Value::Int(-1)]).is_err());
    }
}
