//! Stable diagnostic codes of the CEL checker.
//!
//! Errors are `E03xx`, warnings `W03xx`. Codes are never reused or renumbered; a retired code
//! stays reserved. The ngrok error code attached to each issue (where one corresponds) is
//! chosen where the issue is made: 2200 for an expression that does not compile, 2224 for a
//! `${…}` template that does not compile.

/// The expression does not parse.
pub const PARSE_ERROR: &str = "E0300";
/// An identifier or dotted name that is not a variable.
pub const UNKNOWN_VARIABLE: &str = "E0301";
/// A function name that does not exist.
pub const UNKNOWN_FUNCTION: &str = "E0302";
/// No overload of a function or operator accepts the argument types.
pub const NO_MATCHING_OVERLOAD: &str = "E0303";
/// A condition, `&&`/`||`/`!` operand, ternary condition or macro predicate is not `bool`.
pub const NOT_BOOL: &str = "E0304";
/// A variable used in a phase where it does not exist.
pub const VARIABLE_NOT_IN_PHASE: &str = "E0305";
/// A function called in a phase where it does not exist.
pub const FUNCTION_NOT_IN_PHASE: &str = "E0306";
/// A `${…}` interpolation inside an expression.
pub const INTERPOLATION_IN_EXPRESSION: &str = "E0307";
/// A regular expression literal that does not compile.
pub const INVALID_REGEX: &str = "E0308";
/// A field selected on a type that does not have it.
pub const UNDEFINED_FIELD: &str = "E0309";
/// `has()` on something that is not a field selection of a map or object.
pub const INVALID_HAS: &str = "E0310";
/// A comprehension macro over something that is neither a list nor a map.
pub const NOT_ITERABLE: &str = "E0311";
/// Syntax Wicket does not support in policies (message construction).
pub const UNSUPPORTED_SYNTAX: &str = "E0312";
/// A namespace (`req`, `conn.tls`) used as a value.
pub const NAMESPACE_AS_VALUE: &str = "E0313";
/// A literal argument a conversion or parser function cannot accept (`duration('1x')`).
pub const INVALID_LITERAL_ARGUMENT: &str = "E0314";

/// The condition is always true.
pub const ALWAYS_TRUE: &str = "W0300";
/// The condition is always false.
pub const ALWAYS_FALSE: &str = "W0301";
/// A string compared with a CIDR-looking literal (`conn.client_ip == '10.0.0.0/8'`).
pub const CIDR_AS_STRING: &str = "W0302";
/// An upper-case key into a lower-cased header map (`req.headers['User-Agent']`).
pub const HEADER_KEY_CASE: &str = "W0303";
/// A non-canonical header name given to `getReqHeader` and friends.
pub const HEADER_NAME_NOT_CANONICAL: &str = "W0304";
/// `vars.x` read before any earlier `set-vars` in the phase sets it.
pub const VAR_NOT_SET: &str = "W0305";
/// An `actions.ngrok.*` result read before that action ran in the phase.
pub const ACTION_RESULT_BEFORE_ACTION: &str = "W0306";
/// A variable seen only in docs examples, not in ngrok's reference.
pub const UNDOCUMENTED_VARIABLE: &str = "W0307";
/// A function seen only in the TPU price list or docs examples.
pub const UNDOCUMENTED_FUNCTION: &str = "W0308";
/// A string literal containing `${` inside an expression (not interpolated there).
pub const INTERPOLATION_IN_STRING_LITERAL: &str = "W0309";
/// An invalid CIDR given to `inCidrRange` (always false) or `inCidrRanges` (ignored).
pub const INVALID_CIDR: &str = "W0310";
/// A map lookup (`req.headers['x']`) or header function result used without a presence guard:
/// a missing key is a run-time error, which ends the request.
pub const UNGUARDED_LOOKUP: &str = "W0311";

/// Every code with a one-line description, for docs and `wicket lint --explain`.
pub const ALL: &[(&str, &str)] = &[
    (PARSE_ERROR, "the expression does not parse"),
    (UNKNOWN_VARIABLE, "unknown variable"),
    (UNKNOWN_FUNCTION, "unknown function"),
    (
        NO_MATCHING_OVERLOAD,
        "no overload accepts the argument types",
    ),
    (NOT_BOOL, "a boolean is required"),
    (
        VARIABLE_NOT_IN_PHASE,
        "variable not available in this phase",
    ),
    (
        FUNCTION_NOT_IN_PHASE,
        "function not available in this phase",
    ),
    (INTERPOLATION_IN_EXPRESSION, "`${…}` inside an expression"),
    (INVALID_REGEX, "regular expression does not compile"),
    (UNDEFINED_FIELD, "the type has no such field"),
    (INVALID_HAS, "`has()` needs a field selection"),
    (NOT_ITERABLE, "macro range is neither a list nor a map"),
    (UNSUPPORTED_SYNTAX, "unsupported syntax"),
    (NAMESPACE_AS_VALUE, "a namespace used as a value"),
    (
        INVALID_LITERAL_ARGUMENT,
        "literal argument cannot be converted",
    ),
    (ALWAYS_TRUE, "condition is always true"),
    (ALWAYS_FALSE, "condition is always false"),
    (CIDR_AS_STRING, "string comparison with a CIDR"),
    (HEADER_KEY_CASE, "header map keys are lower-case"),
    (
        HEADER_NAME_NOT_CANONICAL,
        "header functions expect the canonical name",
    ),
    (VAR_NOT_SET, "`vars.*` name not set earlier"),
    (
        ACTION_RESULT_BEFORE_ACTION,
        "action result read before the action ran",
    ),
    (UNDOCUMENTED_VARIABLE, "undocumented variable"),
    (UNDOCUMENTED_FUNCTION, "undocumented function"),
    (
        INTERPOLATION_IN_STRING_LITERAL,
        "`${` in a string literal is not interpolated",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for (code, _) in ALL {
            assert!(seen.insert(*code), "duplicate {code}");
            assert!(code.len() == 5 && (code.starts_with("E03") || code.starts_with("W03")));
        }
    }
}
