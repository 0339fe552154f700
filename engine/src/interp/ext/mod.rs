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

use crate::error::EvalError;
use crate::value::Value;

/// Whether `name` (e.g. `base64.encode`, `lists.range`, `strings.quote`) is a global
/// extension function.
#[must_use]
pub fn is_function(name: &str) -> bool {
    let _ = name;
    false
}

/// Call the extension function `name`. See the module docs.
#[must_use]
pub fn call(
    name: &str,
    target: Option<&Value>,
    args: &[Value],
) -> Option<Result<Value, EvalError>> {
    let _ = (name, target, args);
    None
}
