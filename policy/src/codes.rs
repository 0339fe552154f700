//! Every diagnostic code the loader and the rule lints emit, as data: the stable code, its
//! severity, the matching ngrok error code and a short name. Numbering: `E00xx`/`W00xx`
//! document and file, `E01xx`/`W01xx` phases, rules and rule lints, `E02xx` actions and config
//! fields, `E05xx` rule-level errors. The CEL checker's codes (`E03xx`, `W03xx`) live in
//! [`crate::check::codes`].

use crate::diagnostic::Severity;

/// One diagnostic code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// Stable code (`E0101`).
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Matching ngrok error code (`ERR_NGROK_<n>`).
    pub ngrok: Option<u32>,
    /// Kebab-case name.
    pub name: &'static str,
    /// What it means.
    pub summary: &'static str,
}

macro_rules! codes {
    ($($id:ident = $code:literal, $sev:ident, $ngrok:expr, $name:literal, $summary:literal;)*) => {
        $(
            #[doc = $summary]
            pub const $id: Code = Code {
                code: $code,
                severity: Severity::$sev,
                ngrok: $ngrok,
                name: $name,
                summary: $summary,
            };
        )*
        /// Every code, in numeric order.
        pub const ALL: &[Code] = &[$($id),*];
    };
}

codes! {
    YAML_SYNTAX = "E0001", Error, Some(9026), "yaml-syntax", "the file is not valid YAML or JSON";
    NOT_A_MAPPING = "E0002", Error, Some(2236), "document-not-mapping", "the document is not a mapping of phases";
    DUPLICATE_KEY = "E0003", Error, Some(2236), "duplicate-key", "a mapping has the same key twice";
    IO_ERROR = "E0004", Error, None, "io-error", "a referenced file cannot be read";
    UNKNOWN_PHASE = "E0101", Error, Some(2230), "unknown-phase", "a top-level key is not a phase";
    PHASE_NOT_LIST = "E0102", Error, Some(9026), "phase-not-list", "a phase holds a map instead of a list of rules";
    RULE_NOT_MAPPING = "E0103", Error, Some(2236), "rule-not-mapping", "a rule is not a mapping";
    ACTION_NOT_IN_RULE = "E0104", Error, Some(2236), "action-not-in-rule", "an action sits directly under a phase, outside a rule";
    UNKNOWN_RULE_KEY = "E0105", Error, Some(2203), "unknown-rule-key", "a rule has a key other than `name`, `expressions`, `actions`";
    RULE_WITHOUT_ACTIONS = "E0106", Error, Some(2206), "rule-without-actions", "a rule has no actions";
    MIXED_LEGACY_PHASES = "E0107", Error, Some(9025), "mixed-legacy-phases", "legacy `inbound`/`outbound` mixed with phase names";
    WRONG_RULE_SHAPE = "E0108", Error, Some(2203), "wrong-rule-shape", "`name`, `expressions` or `actions` has the wrong type";
    UNKNOWN_ACTION = "E0201", Error, Some(2201), "unknown-action", "unknown action type";
    ACTION_NOT_ALLOWED = "E0202", Error, Some(2202), "action-not-allowed-in-phase", "the action cannot run in this phase";
    UNKNOWN_ACTION_KEY = "E0203", Error, Some(2203), "unknown-action-key", "an action has a key other than `type` and `config`";
    UNKNOWN_FIELD = "E0204", Error, Some(2203), "unknown-field", "unknown config field";
    WRONG_TYPE = "E0205", Error, Some(2203), "wrong-type", "a config value has the wrong type";
    MISSING_FIELD = "E0206", Error, Some(2204), "missing-field", "a required config field is missing";
    OUT_OF_RANGE = "E0207", Error, Some(2215), "out-of-range", "a value or count is out of range";
    BAD_ENUM = "E0208", Error, Some(2222), "bad-enum", "a value is not one of the allowed values";
    BAD_DURATION = "E0209", Error, Some(2225), "bad-duration", "a duration does not parse";
    BAD_URL = "E0210", Error, Some(2226), "bad-url", "a URL does not parse";
    BAD_REGEX = "E0211", Error, Some(2204), "bad-regex", "a regular expression does not compile";
    DUPLICATE_VALUE = "E0212", Error, Some(2231), "duplicate-value", "a list that must be unique repeats a value";
    BAD_SET_VARS = "E0213", Error, Some(2203), "bad-set-vars", "`set-vars.vars` is not a list of single-key maps";
    BAD_CIDR = "E0214", Error, Some(2204), "bad-cidr", "an IP address or CIDR does not parse";
    CO_REQUIRED = "E0215", Error, Some(2240), "co-required-field", "a field needs another one that is missing";
    BAD_VALUE = "E0216", Error, Some(2204), "bad-value", "a config value is invalid";
    BAD_HEADER = "E0217", Error, Some(2204), "bad-header", "a header name is invalid or may not be changed";
    UNREACHABLE_ACTION = "E0501", Error, Some(2207), "unreachable-action", "an action follows a terminating action in the same rule";
    FALLS_THROUGH = "E0502", Error, Some(2235), "policy-falls-through", "a cloud endpoint policy can end without a terminating action";
    MULTIPLE_AI_GATEWAYS = "E0503", Error, Some(2266), "multiple-ai-gateways", "more than one `ai-gateway` action";
    LEGACY_PHASES = "W0001", Warning, None, "legacy-phases", "legacy `inbound`/`outbound` phases";
    LEGACY_FIELD = "W0002", Warning, None, "legacy-field", "a legacy field name";
    UNDOCUMENTED_FIELD = "W0003", Warning, None, "undocumented-field", "a field used in doc examples but absent from the reference";
    LEGACY_ACTION = "W0004", Warning, None, "legacy-action", "`ai-gateway` moved out of Traffic Policy";
    PREVIEW_ACTION = "W0005", Warning, None, "preview-action", "`saml` is a preview with undocumented configuration";
    UNKNOWN_ENUM_VALUE = "W0006", Warning, None, "unknown-enum-value", "a value outside the documented list";
    EMPTY_POLICY = "W0007", Warning, Some(2235), "empty-policy", "the policy has no rules";
    AGENT_CONFIG = "W0008", Warning, None, "agent-config", "a questionable agent config entry";
    SINGLE_VALUE_LIST = "W0010", Warning, None, "single-value-list", "a single value where a list is expected";
    EDGE_UNSUPPORTED = "W0011", Warning, None, "unsupported-by-edge", "an action the Wicket edge does not carry out: the bind is refused";
    PLACEHOLDER = "W0009", Warning, None, "placeholder", "a value is a placeholder to fill in before deploying";
    UNREACHABLE_RULE = "W0101", Warning, None, "unreachable-rule", "a rule follows a rule that always terminates";
    DENY_LIST_ONLY = "W0102", Warning, Some(393), "deny-list-only", "`restrict-ips` with only a deny list";
    MULTIPLE_IDENTITY_PROVIDERS = "W0103", Warning, Some(2239), "multiple-identity-providers", "more than one identity-provider action";
    UNUSED_VARIABLE = "W0104", Warning, None, "unused-variable", "a `set-vars` variable is never read";
    HEADER_SIZE = "W0105", Warning, None, "header-size", "a header name or value is unusually large";
}

/// The code called `code` (`E0101`).
#[must_use]
pub fn lookup(code: &str) -> Option<&'static Code> {
    ALL.iter().find(|c| c.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_prefixed_by_severity() {
        for (i, c) in ALL.iter().enumerate() {
            assert!(
                ALL[i + 1..]
                    .iter()
                    .all(|d| d.code != c.code && d.name != c.name)
            );
            let prefix = if c.severity == Severity::Error {
                'E'
            } else {
                'W'
            };
            assert!(c.code.starts_with(prefix), "{}", c.code);
        }
        assert_eq!(lookup("E0001").map(|c| c.name), Some("yaml-syntax"));
    }
}
