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
//! - [`network`] exports the parsers and text forms of IP and CIDR values.
//!
//! The semantics follow cel-go's extension libraries (strings v3+ with the v2 `format`
//! implementation, lists v3, math v2, encoders, network, optionals); the cel-spec conformance
//! corpus is the arbiter where the two differ. The macros of these libraries (`cel.bind`,
//! `optMap`, `optFlatMap`, `sortBy`, two-variable comprehensions) belong to the core. Every
//! function here is strict (its arguments are evaluated first); cel-go short-circuits
//! `opt.or(…)` and `opt.orValue(…)` on a present optional, which is the caller's to do.
//!
//! Files: `strings`, `lists`, `math`, `encoders`, `network`, `optionals` (cel-go's libraries)
//! and `ngrok` (the Traffic Policy functions that need no request). Every function that builds
//! a value checks its size against a cap first, so no input makes one allocate without bound.

/// Declares a library's functions as an enum of ids, each with its CEL name: `from_name` is the
/// one by-name lookup (at compile time, or in the reference interpreter's dispatch), `name` the
/// name for error messages.
macro_rules! function_ids {
    ($(#[$meta:meta])* $vis:vis enum $ty:ident { $($(#[$vmeta:meta])* $variant:ident = $name:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $ty {
            $($(#[$vmeta])* #[doc = concat!("`", $name, "`")] $variant),*
        }

        impl $ty {
            /// Every function with its name.
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [($ty, &'static str)] = &[$(($ty::$variant, $name)),*];

            /// The function of a CEL name.
            #[must_use]
            #[allow(dead_code)]
            pub(crate) fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
            }

            /// The CEL name.
            #[must_use]
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }
        }
    };
}
pub(crate) use function_ids;

mod encoders;
mod lists;
mod math;
pub mod network;
mod ngrok;
mod optionals;
mod strings;

use crate::error::EvalError;
use crate::value::{Key, MapValue, Value};

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

/// An extension function resolved at compile time (see [`resolve_global`] and
/// [`resolve_member`]): calling it matches on ids, never on names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExtFn {
    /// A global function of the encoders library.
    Encoders(encoders::Global),
    /// A global function of the lists library.
    ListsGlobal(lists::Global),
    /// A member function of the lists library.
    Lists(lists::Member),
    /// A global function of the math library.
    Math(math::Global),
    /// A global function of the network library.
    NetworkGlobal(network::Global),
    /// A member function of the network library.
    Network(network::Member),
    /// A global function of the optionals library.
    OptionalsGlobal(optionals::Global),
    /// A member function of the optionals library.
    Optionals(optionals::Member),
    /// A global function of the strings library.
    StringsGlobal(strings::Global),
    /// A member function of the strings library.
    Strings(strings::Member),
    /// A global function of the Traffic Policy library.
    NgrokGlobal(ngrok::Global),
    /// A member function of the Traffic Policy library.
    Ngrok(ngrok::Member),
}

impl ExtFn {
    /// The function's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ExtFn::Encoders(f) => f.name(),
            ExtFn::ListsGlobal(f) => f.name(),
            ExtFn::Lists(f) => f.name(),
            ExtFn::Math(f) => f.name(),
            ExtFn::NetworkGlobal(f) => f.name(),
            ExtFn::Network(f) => f.name(),
            ExtFn::OptionalsGlobal(f) => f.name(),
            ExtFn::Optionals(f) => f.name(),
            ExtFn::StringsGlobal(f) => f.name(),
            ExtFn::Strings(f) => f.name(),
            ExtFn::NgrokGlobal(f) => f.name(),
            ExtFn::Ngrok(f) => f.name(),
        }
    }

    /// Calls the function: `target` is the receiver of a member function (ignored by global
    /// ones). `None` when the function does not take this receiver (`reverse` of the strings
    /// library on a list: the next candidate of [`resolve_member`] is asked).
    pub(crate) fn call(self, target: Option<&Value>, args: &[Value]) -> CallResult {
        let member = |f: &dyn Fn(&Value) -> CallResult| target.and_then(f);
        match self {
            ExtFn::Encoders(f) => encoders::call_global(f, args),
            ExtFn::ListsGlobal(f) => lists::call_global(f, args),
            ExtFn::Lists(f) => member(&|t| lists::call_member(f, t, args)),
            ExtFn::Math(f) => math::call_global(f, args),
            ExtFn::NetworkGlobal(f) => network::call_global(f, args),
            ExtFn::Network(f) => member(&|t| network::call_member(f, t, args)),
            ExtFn::OptionalsGlobal(f) => optionals::call_global(f, args),
            ExtFn::Optionals(f) => member(&|t| optionals::call_member(f, t, args)),
            ExtFn::StringsGlobal(f) => strings::call_global(f, args),
            ExtFn::Strings(f) => member(&|t| strings::call_member(f, t, args)),
            ExtFn::NgrokGlobal(f) => ngrok::call_global(f, args),
            ExtFn::Ngrok(f) => member(&|t| ngrok::call_member(f, t, args)),
        }
    }
}

/// The global extension function `name` (e.g. `base64.encode`), as [`call`] with no receiver
/// dispatches it; `None` when there is none.
pub(crate) fn resolve_global(name: &str) -> Option<ExtFn> {
    if !is_function(name) {
        return None;
    }
    encoders::Global::from_name(name)
        .map(ExtFn::Encoders)
        .or_else(|| lists::Global::from_name(name).map(ExtFn::ListsGlobal))
        .or_else(|| math::Global::from_name(name).map(ExtFn::Math))
        .or_else(|| network::Global::from_name(name).map(ExtFn::NetworkGlobal))
        .or_else(|| optionals::Global::from_name(name).map(ExtFn::OptionalsGlobal))
        .or_else(|| strings::Global::from_name(name).map(ExtFn::StringsGlobal))
        .or_else(|| ngrok::Global::from_name(name).map(ExtFn::NgrokGlobal))
}

/// The member extension functions named `name`, in the order [`call`] with a receiver tries
/// them (the first that takes the receiver answers).
pub(crate) fn resolve_member(name: &str) -> Vec<ExtFn> {
    [
        strings::Member::from_name(name).map(ExtFn::Strings),
        lists::Member::from_name(name).map(ExtFn::Lists),
        network::Member::from_name(name).map(ExtFn::Network),
        optionals::Member::from_name(name).map(ExtFn::Optionals),
        ngrok::Member::from_name(name).map(ExtFn::Ngrok),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Every extension function name (global and member), for tests.
#[cfg(test)]
pub(crate) fn all_names() -> Vec<&'static str> {
    fn names<T>(all: &'static [(T, &'static str)]) -> impl Iterator<Item = &'static str> {
        all.iter().map(|(_, n)| *n)
    }
    names(encoders::Global::ALL)
        .chain(names(lists::Global::ALL))
        .chain(names(lists::Member::ALL))
        .chain(names(math::Global::ALL))
        .chain(names(network::Global::ALL))
        .chain(names(network::Member::ALL))
        .chain(names(optionals::Global::ALL))
        .chain(names(optionals::Member::ALL))
        .chain(names(strings::Global::ALL))
        .chain(names(strings::Member::ALL))
        .chain(names(ngrok::Global::ALL))
        .chain(names(ngrok::Member::ALL))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Shared helpers of the extension modules.
// ---------------------------------------------------------------------------------------------

/// Largest string or bytes value, in bytes, an extension function builds. The core checks its
/// own (configurable, smaller by default) limit on every result; this cap only keeps a function
/// from allocating far beyond it first (`'x'.replace('', big)`, `[big, big, …].join()`).
const MAX_OUTPUT_BYTES: usize = 64 << 20;

/// Largest list an extension function builds (see [`MAX_OUTPUT_BYTES`]).
const MAX_OUTPUT_ELEMENTS: usize = 4 << 20;

/// The error for a result beyond [`MAX_OUTPUT_BYTES`] or [`MAX_OUTPUT_ELEMENTS`].
fn too_large(function: &str) -> EvalError {
    EvalError::LimitExceeded(format!(
        "`{function}` would build a value larger than {MAX_OUTPUT_BYTES} bytes or {MAX_OUTPUT_ELEMENTS} elements"
    ))
}

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

/// A CEL map value from entries in order; a later entry replaces an earlier one with an equal
/// key.
fn map_value(entries: impl IntoIterator<Item = (Key, Value)>) -> Value {
    let mut map = MapValue::new();
    for (key, value) in entries {
        map.upsert(key, value);
    }
    Value::map(map)
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

/// CEL equality, for the tests' assertions.
#[cfg(test)]
fn values_equal(a: &Value, b: &Value) -> bool {
    a.cel_eq(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::string(v)
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
        assert!(call("string", None, &[Value::Int(1)]).is_none());
    }

    #[test]
    fn reverse_dispatches_on_the_receiver_type() {
        let r = call("reverse", Some(&s("abc")), &[]).unwrap().unwrap();
        assert!(values_equal(&r, &s("cba")));
        let l = Value::list(vec![Value::Int(1), Value::Int(2)]);
        let r = call("reverse", Some(&l), &[]).unwrap().unwrap();
        assert!(values_equal(
            &r,
            &Value::list(vec![Value::Int(2), Value::Int(1)])
        ));
        assert!(matches!(
            call("reverse", Some(&Value::Int(1)), &[]),
            Some(Err(EvalError::NoMatchingOverload { .. }))
        ));
    }

    #[test]
    fn map_value_keeps_the_last_of_equal_keys() {
        let m = map_value([(Key::Int(1), s("a")), (Key::Uint(1), s("b"))]);
        let expected = map_value([(Key::Int(1), s("b"))]);
        assert!(values_equal(&m, &expected));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Strings rich in the characters the extensions treat specially.
        fn text() -> impl Strategy<Value = String> {
            proptest::string::string_regex("[a-c%.0-9:/?#@\\[\\]&=+; ©αé\u{1F600}\\\\\"\n]{0,24}")
                .expect("valid regex")
        }

        fn ok(name: &str, target: Option<&Value>, args: &[Value]) -> Option<Value> {
            call(name, target, args).expect("known function").ok()
        }

        fn as_str(v: &Value) -> &str {
            match v {
                Value::String(s) => s,
                other => panic!("expected a string, got {other:?}"),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn format_never_panics(template in text(), n in any::<i64>(), d in any::<f64>()) {
                let args = Value::list(vec![Value::Int(n), Value::Double(d), Value::string("x")]);
                let target = Value::string(template.as_str());
                match call("format", Some(&target), &[args]).expect("known function") {
                    Ok(v) => prop_assert!(matches!(v, Value::String(_))),
                    Err(e) => prop_assert!(!e.to_string().is_empty()),
                }
            }

            #[test]
            fn split_then_join_round_trips(s in text(), sep in "[a%©]{1,2}") {
                let target = Value::string(s.as_str());
                let pieces = ok("split", Some(&target), &[Value::string(sep.as_str())])
                    .expect("split succeeds");
                let joined = ok("join", Some(&pieces), &[Value::string(sep.as_str())])
                    .expect("join succeeds");
                prop_assert_eq!(as_str(&joined), s.as_str());
            }

            #[test]
            fn index_of_agrees_with_substring(s in text(), sub in "[a©%]{0,2}", from in -2i64..30) {
                let target = Value::string(s.as_str());
                let len = i64::try_from(s.chars().count()).expect("small");
                let found = call("indexOf", Some(&target), &[Value::string(sub.as_str()), Value::Int(from)])
                    .expect("known function");
                if sub.is_empty() {
                    // cel-go returns the offset unchecked for an empty needle.
                    prop_assert!(matches!(found, Ok(Value::Int(i)) if i == from));
                    return Ok(());
                }
                match found {
                    Ok(Value::Int(-1)) => {}
                    Ok(Value::Int(i)) => {
                        let end = i + i64::try_from(sub.chars().count()).expect("small");
                        let piece = ok("substring", Some(&target), &[Value::Int(i), Value::Int(end)])
                            .expect("in range");
                        prop_assert_eq!(as_str(&piece), sub.as_str());
                        prop_assert!(i >= from);
                    }
                    Ok(other) => prop_assert!(false, "unexpected {:?}", other),
                    Err(_) => prop_assert!(from < 0 || from >= len),
                }
            }

            #[test]
            fn replace_all_matches_std(s in text(), old in "[a%]{0,2}", new in "[b©]{0,2}") {
                let target = Value::string(s.as_str());
                let out = ok("replace", Some(&target), &[Value::string(old.as_str()), Value::string(new.as_str())])
                    .expect("small output");
                prop_assert_eq!(as_str(&out), s.replace(&old, &new));
            }

            #[test]
            fn url_escape_round_trips(s in text()) {
                let escaped = ok("url.escape", None, &[Value::string(s.as_str())]).expect("escape");
                let back = ok("url.unescape", None, &[escaped]).expect("unescape");
                prop_assert_eq!(as_str(&back), s.as_str());
            }

            #[test]
            fn url_parse_and_query_decode_never_panic(s in text()) {
                let v = Value::string(s.as_str());
                for name in ["parseUrl", "decodeQueryString", "isURL", "isQueryString", "isJson", "unescapeUrl"] {
                    if let Ok(result) = call(name, Some(&v), &[]).expect("known function") {
                        prop_assert!(!matches!(result, Value::Null));
                    }
                }
            }

            #[test]
            fn json_round_trips_strings(s in text()) {
                let encoded = ok("json.encode", None, &[Value::string(s.as_str())]).expect("encode");
                let decoded = ok("json.decode", None, &[encoded]).expect("decode");
                prop_assert_eq!(as_str(&decoded), s.as_str());
            }

            #[test]
            fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
                let encoded = ok("base64.encode", None, &[Value::bytes(bytes.clone())]).expect("encode");
                let decoded = ok("base64.decode", None, &[encoded]).expect("decode");
                prop_assert!(matches!(decoded, Value::Bytes(b) if *b == *bytes));
            }

            #[test]
            fn quote_wraps_and_escapes(s in text()) {
                let quoted = ok("strings.quote", None, &[Value::string(s.as_str())]).expect("quote");
                let q = as_str(&quoted);
                prop_assert!(q.starts_with('"') && q.ends_with('"') && q.len() >= 2);
                prop_assert!(!q[1..q.len() - 1].contains('\n'));
            }
        }
    }
}
