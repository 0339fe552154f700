//! The action catalogue as data: every action type of the spec (§5) with its phases, how it
//! terminates, its result-variable namespace and every config field (type, default, range,
//! whether it is CEL-interpolated). Validation, the JSON Schema (`wicket schema`) and the docs
//! are all generated from this one table.

use crate::phase::Phase;

/// The type of a config value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ty {
    /// `true` / `false`.
    Bool,
    /// An integer in `min..=max`.
    Int {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A number in `min..=max`.
    Float {
        /// Smallest allowed value.
        min: f64,
        /// Largest allowed value.
        max: f64,
    },
    /// A literal string (no `${…}`), at most `max_len` characters.
    Str {
        /// Longest allowed length in characters.
        max_len: Option<usize>,
    },
    /// A string that may contain `${…}` CEL interpolations.
    Template {
        /// Longest allowed length in characters.
        max_len: Option<usize>,
    },
    /// A whole CEL expression of any type (no `${…}`).
    Expr,
    /// A whole CEL expression that must be a `bool`.
    BoolExpr,
    /// One of a closed set of literal strings.
    Enum(&'static [&'static str]),
    /// One of a documented set; other values are accepted with a warning.
    OpenEnum(&'static [&'static str]),
    /// An integer from a closed set.
    IntEnum(&'static [i64]),
    /// A Go duration (`1h30m`, `10s`) in `min_s..=max_s` seconds, a multiple of
    /// `multiple_of_s` seconds when that is not zero.
    Duration {
        /// Smallest allowed duration in seconds.
        min_s: u64,
        /// Largest allowed duration in seconds.
        max_s: u64,
        /// Required granularity in seconds (0 = any).
        multiple_of_s: u64,
    },
    /// An absolute URL; `template` when `${…}` is allowed.
    Url {
        /// Whether `${…}` is allowed.
        template: bool,
    },
    /// An RE2 regular expression; `template` when `${…}` is allowed (then it is checked only
    /// when it contains no interpolation).
    Regex {
        /// Whether `${…}` is allowed.
        template: bool,
    },
    /// An IP address or CIDR (`${…}` allowed).
    Cidr,
    /// An HTTP header name.
    HeaderName,
    /// A list of `item`s with `min..=max` entries.
    List {
        /// Type of each entry.
        item: &'static Ty,
        /// Fewest entries.
        min: usize,
        /// Most entries.
        max: usize,
        /// Whether entries must be distinct.
        unique: bool,
    },
    /// A map from string keys (`key`) to `value`s with `min..=max` entries.
    Map {
        /// Type of the keys.
        key: &'static Ty,
        /// Type of each value.
        value: &'static Ty,
        /// Fewest entries.
        min: usize,
        /// Most entries.
        max: usize,
    },
    /// A nested object with these fields.
    Object(&'static [Field]),
    /// Either form (the docs disagree on the shape, e.g. `jwt-validation.jws.keys`).
    Either(&'static Ty, &'static Ty),
    /// Any YAML value; strings inside may contain `${…}`.
    Any,
    /// `set-vars.vars`: a list of single-key maps whose values are [`Ty::Any`].
    SetVars,
}

/// No upper bound on a count.
pub const UNBOUNDED: usize = usize::MAX;

/// Whether a field must be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Required {
    /// Optional.
    No,
    /// Required.
    Yes,
}

/// Whether a field is part of the documented reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldStatus {
    /// Documented on the action's reference page.
    Documented,
    /// Used in doc examples but absent from the reference: accepted with a warning.
    Undocumented,
    /// A legacy spelling: accepted with a warning naming the current field.
    Legacy {
        /// The field to use instead.
        use_instead: &'static str,
    },
}

/// One config field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Field {
    /// Key in the `config` mapping.
    pub name: &'static str,
    /// Value type.
    pub ty: Ty,
    /// Whether it must be present.
    pub required: Required,
    /// Default value as the docs write it.
    pub default: Option<&'static str>,
    /// One-line description.
    pub doc: &'static str,
    /// Documentation status.
    pub status: FieldStatus,
}

/// How an action ends a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Terminates {
    /// Always ends the phase (`deny`, `custom-response`, `close-connection`).
    Always,
    /// Ends the phase unless `on_error: continue` is set and the action failed
    /// (`forward-internal`).
    UnlessOnErrorContinue,
    /// Ends the phase only when its check fails or it acts (auth, rate limit, redirect…).
    Conditionally,
    /// Never ends the phase.
    Never,
}

/// Lifecycle of an action type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionStatus {
    /// Generally available and documented.
    Ga,
    /// Removed from Traffic Policy; parsed with a warning.
    Legacy,
    /// Preview with undocumented configuration.
    Preview,
}

/// Actions of the Traffic Policy format that the Wicket edge does not carry out: a policy using
/// one lints with a warning ([`crate::codes::EDGE_UNSUPPORTED`]) and the edge refuses the bind.
/// (`ai-gateway` and `saml` are not carried out either; they have their own legacy and preview
/// warnings.) The engine's tests check this list against what it compiles.
pub const EDGE_UNSUPPORTED: &[&str] = &[
    "owasp-crs-request",
    "owasp-crs-response",
    "request-body-find-replace",
    "response-body-find-replace",
    "sse-find-replace",
];

/// One action type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActionSpec {
    /// The `type` value.
    pub name: &'static str,
    /// Phases where it may appear.
    pub phases: &'static [Phase],
    /// How it terminates.
    pub terminates: Terminates,
    /// Namespace of its result variables under `actions.ngrok.`, if any.
    pub result_ns: Option<&'static str>,
    /// Whether it is an identity-provider login (at most one per endpoint).
    pub identity_provider: bool,
    /// Lifecycle.
    pub status: ActionStatus,
    /// One-line description.
    pub doc: &'static str,
    /// Config fields.
    pub fields: &'static [Field],
}

impl ActionSpec {
    /// The field called `name`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Whether the action may run in `phase`.
    #[must_use]
    pub fn allowed_in(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

/// The action type called `name`.
#[must_use]
pub fn action(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

const fn f(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: Required::No,
        default: None,
        doc,
        status: FieldStatus::Documented,
    }
}

const fn req(mut field: Field) -> Field {
    field.required = Required::Yes;
    field
}

const fn def(mut field: Field, default: &'static str) -> Field {
    field.default = Some(default);
    field
}

const fn undocumented(mut field: Field) -> Field {
    field.status = FieldStatus::Undocumented;
    field
}

const fn legacy(mut field: Field, use_instead: &'static str) -> Field {
    field.status = FieldStatus::Legacy { use_instead };
    field
}

const STR: Ty = Ty::Str { max_len: None };
const TPL: Ty = Ty::Template { max_len: None };
const BOOL: Ty = Ty::Bool;
const ON_ERROR: Ty = Ty::Enum(&["halt", "continue"]);
const STATUS: Ty = Ty::Int { min: 100, max: 599 };
const HEADERS: Ty = Ty::Map {
    key: &Ty::HeaderName,
    value: &TPL,
    min: 0,
    max: 10,
};
const SESSION: Ty = Ty::Duration {
    min_s: 1,
    max_s: u64::MAX,
    multiple_of_s: 0,
};
const fn list(item: &'static Ty) -> Ty {
    Ty::List {
        item,
        min: 0,
        max: UNBOUNDED,
        unique: false,
    }
}

const TCP: Phase = Phase::TcpConnect;
const REQ: Phase = Phase::HttpRequest;
const RES: Phase = Phase::HttpResponse;
const SSE: Phase = Phase::EventStreamMessage;

/// Identity fields shared by `oauth` and `openid-connect`.
macro_rules! idp_fields {
    ($($extra:expr),* $(,)?) => {
        &[
            $($extra,)*
            f("auth_id", STR, "names the session cookies so several logins can coexist"),
            f("client_id", TPL, "OAuth client id of a custom app (empty: ngrok-managed app)"),
            f("client_secret", TPL, "OAuth client secret of a custom app"),
            f("scopes", list(&STR), "scopes to request (not allowed with managed apps)"),
            f(
                "authz_url_params",
                Ty::Map { key: &STR, value: &STR, min: 0, max: UNBOUNDED },
                "extra query parameters for the authorization URL",
            ),
            f("max_session_duration", SESSION, "longest session before re-authentication"),
            f("userinfo_refresh_interval", SESSION, "how often user info is refreshed"),
            def(f("allow_cors_preflight", BOOL, "let CORS preflight requests through unauthenticated"), "false"),
            f("auth_cookie_domain", STR, "domain of the session cookie (must belong to the endpoint)"),
        ]
    };
}

const JWT_ISSUER: Ty = Ty::Object(&[req(f(
    "allow_list",
    Ty::List {
        item: &Ty::Object(&[req(f("value", TPL, "an accepted `iss` claim, exactly"))]),
        min: 1,
        max: UNBOUNDED,
        unique: false,
    },
    "accepted issuers",
))]);
const JWT_AUDIENCE: Ty = Ty::Object(&[req(f(
    "allow_list",
    Ty::List {
        item: &Ty::Object(&[req(f("value", STR, "an accepted `aud` value"))]),
        min: 1,
        max: UNBOUNDED,
        unique: false,
    },
    "accepted audiences",
))]);
const JWT_HTTP: Ty = Ty::Object(&[req(f(
    "tokens",
    Ty::List {
        item: &Ty::Object(&[
            req(f(
                "type",
                Ty::Enum(&[
                    "id_token",
                    "access_token",
                    "at+jwt",
                    "it+jwt",
                    "plain",
                    "jwt",
                ]),
                "parsing hint for the token",
            )),
            req(f(
                "method",
                Ty::Enum(&["header", "body", "cookie", "query"]),
                "where the token is (`cookie` and `query`: Wicket)",
            )),
            req(f(
                "name",
                TPL,
                "header, body field, cookie or query parameter name",
            )),
            f("prefix", TPL, "stripped before parsing, e.g. `Bearer `"),
        ]),
        min: 1,
        max: UNBOUNDED,
        unique: false,
    },
    "tokens that must all be present",
))]);
const JWT_STATIC_KEY: Ty = Ty::Object(&[
    f("kid", STR, "the key id tokens name"),
    f("pem", STR, "a PEM public key (RSA, EC or Ed25519)"),
    f("secret", STR, "an HMAC secret (HS256/384/512)"),
]);
const JWKS_SOURCES: Ty = Ty::Object(&[
    f(
        "additional_jkus",
        Ty::List {
            item: &Ty::Url { template: true },
            min: 1,
            max: UNBOUNDED,
            unique: false,
        },
        "JWKS URLs, tried in order",
    ),
    f(
        "static",
        list(&JWT_STATIC_KEY),
        "keys given in the policy (Wicket)",
    ),
    f(
        "jwks",
        Ty::Any,
        "a JWK set given in the policy, as a map or JSON text (Wicket)",
    ),
]);
const JWKS_KEYS: Ty = Ty::Object(&[
    req(f(
        "sources",
        Ty::Either(&JWKS_SOURCES, &list(&JWKS_SOURCES)),
        "where verification keys come from",
    )),
    f(
        "identification",
        list(&Ty::Object(&[f(
            "token_claims",
            list(&Ty::Enum(&["kid"])),
            "claims that identify the key",
        )])),
        "how a token names its key",
    ),
]);
const JWT_JWS: Ty = Ty::Object(&[
    req(f(
        "allowed_algorithms",
        Ty::List {
            item: &Ty::Enum(&[
                "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512",
                "HS256", "HS384", "HS512", "EdDSA",
            ]),
            min: 1,
            max: UNBOUNDED,
            unique: true,
        },
        "accepted signature algorithms (`none` is refused)",
    )),
    req(f(
        "keys",
        Ty::Either(&JWKS_KEYS, &list(&JWKS_KEYS)),
        "verification keys",
    )),
]);

const REPLACEMENTS: Ty = Ty::List {
    item: &Ty::Object(&[
        req(f(
            "from",
            Ty::Regex { template: true },
            "RE2 pattern; all matches are replaced",
        )),
        f("to", TPL, "replacement with `$n` references; empty deletes"),
    ]),
    min: 1,
    max: UNBOUNDED,
    unique: false,
};
const SSE_REPLACEMENTS: Ty = Ty::List {
    item: &Ty::Object(&[
        req(f(
            "from",
            Ty::Regex { template: true },
            "RE2 pattern; all matches are replaced",
        )),
        f("to", TPL, "replacement with `$n` references; empty deletes"),
        def(
            f("field", TPL, "event field to edit: `data` or `retry`"),
            "data",
        ),
    ]),
    min: 1,
    max: UNBOUNDED,
    unique: false,
};

const OAUTH_PROVIDERS: &[&str] = &[
    "amazon",
    "facebook",
    "github",
    "gitlab",
    "google",
    "linkedin",
    "microsoft",
    "twitch",
    // Wicket: a generic OAuth 2.0 provider (`authorization_url`, `token_url`, `userinfo_url`).
    "custom",
];

/// verify-webhook provider ids (spec Appendix B).
pub const WEBHOOK_PROVIDERS: &[&str] = &[
    "aftership",
    "airship",
    "alchemy",
    "sns",
    "autodesk",
    "bitbucket",
    "bolt",
    "box",
    "brex",
    "buildkite",
    "calendly",
    "castle",
    "chargify",
    "circleci",
    "clearbit",
    "clerk",
    "coinbase",
    "contentful",
    "docusign",
    "dropbox",
    "facebook_graph_api",
    "facebook_messenger",
    "frameio",
    "github",
    "gitlab",
    "go1",
    "heroku",
    "hostedhooks",
    "hubspot",
    "graphcms",
    "instagram",
    "intercom",
    "jira",
    "launch_darkly",
    "linear",
    "mailchimp",
    "mailgun",
    "microsoft_teams",
    "modern_treasury",
    "mongodb",
    "mux",
    "orb",
    "orbit",
    "pagerduty",
    "pinwheel",
    "plivo",
    "pusher",
    "sendgrid",
    "sentry",
    "shopify",
    "signal_sciences",
    "slack",
    "sonatype",
    "square",
    "stripe",
    "svix",
    "terraform",
    "tiktok",
    "trendmicro_conformity",
    "twilio",
    "twitter",
    "typeform",
    "vmware",
    "webex",
    "whatsapp",
    "worldline",
    "xero",
    "zendesk",
    "zoom",
];

/// Every action type, in the order of spec §5.
pub static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "add-headers",
        phases: &[REQ, RES],
        terminates: Terminates::Never,
        result_ns: Some("add_headers"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "add headers to the request (upstream) or the response (client)",
        fields: &[req(f(
            "headers",
            Ty::Map {
                key: &Ty::HeaderName,
                value: &TPL,
                min: 1,
                max: 10,
            },
            "header name to value; values may interpolate `${…}`",
        ))],
    },
    ActionSpec {
        name: "remove-headers",
        phases: &[REQ, RES],
        terminates: Terminates::Never,
        result_ns: Some("remove_headers"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "remove every value of the named headers",
        fields: &[req(f(
            "headers",
            Ty::List {
                item: &Ty::HeaderName,
                min: 1,
                max: 10,
                unique: false,
            },
            "header names",
        ))],
    },
    ActionSpec {
        name: "basic-auth",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("basic_auth"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "require HTTP basic authentication (401 on failure)",
        fields: &[
            req(f(
                "credentials",
                Ty::List {
                    item: &TPL,
                    min: 1,
                    max: 10,
                    unique: false,
                },
                "`user:password` pairs; password 8–128 characters",
            )),
            def(
                f(
                    "realm",
                    Ty::Str { max_len: Some(128) },
                    "authentication realm (ASCII)",
                ),
                "ngrok",
            ),
            def(
                f("enforce", BOOL, "`false` records the result and continues"),
                "true",
            ),
        ],
    },
    ActionSpec {
        name: "circuit-breaker",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: None,
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "reject requests with 503 while the upstream error rate is too high",
        fields: &[
            def(
                f(
                    "error_threshold",
                    Ty::Float { min: 0.0, max: 1.0 },
                    "fraction of failed requests that trips the breaker",
                ),
                "0.5",
            ),
            def(
                f(
                    "volume_threshold",
                    Ty::Int {
                        min: 1,
                        max: 2_000_000_000,
                    },
                    "requests in the window before the breaker can trip",
                ),
                "10",
            ),
            def(
                f(
                    "window_duration",
                    Ty::Duration {
                        min_s: 1,
                        max_s: 120,
                        multiple_of_s: 0,
                    },
                    "rolling window",
                ),
                "10s",
            ),
            def(
                f(
                    "tripped_duration",
                    Ty::Duration {
                        min_s: 1,
                        max_s: 120,
                        multiple_of_s: 0,
                    },
                    "time open before re-probing",
                ),
                "10s",
            ),
            def(
                f(
                    "num_buckets",
                    Ty::Int { min: 10, max: 10 },
                    "buckets in the window (fixed)",
                ),
                "10",
            ),
            def(f("enforce", BOOL, "`false` never trips"), "true"),
            undocumented(f(
                "rolling_window",
                SESSION,
                "legacy name of `window_duration`",
            )),
            undocumented(f(
                "error_threshold_percentage",
                Ty::Float {
                    min: 0.0,
                    max: 100.0,
                },
                "legacy percentage form of `error_threshold`",
            )),
        ],
    },
    ActionSpec {
        name: "close-connection",
        phases: &[TCP, REQ],
        terminates: Terminates::Always,
        result_ns: None,
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "drop the client connection",
        fields: &[],
    },
    ActionSpec {
        name: "compress-response",
        phases: &[REQ, RES],
        terminates: Terminates::Never,
        result_ns: Some("compress"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "compress the response with an algorithm the client accepts",
        fields: &[def(
            f(
                "algorithms",
                Ty::List {
                    item: &Ty::Enum(&["br", "compress", "deflate", "gzip"]),
                    min: 0,
                    max: 4,
                    unique: true,
                },
                "allowed algorithms",
            ),
            "[gzip, deflate, br, compress]",
        )],
    },
    ActionSpec {
        name: "custom-response",
        phases: &[REQ, RES],
        terminates: Terminates::Always,
        result_ns: None,
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "answer with a fixed response",
        fields: &[
            def(f("status_code", STATUS, "response status"), "200"),
            f("body", TPL, "response body"),
            f("headers", HEADERS, "response headers (at most 10)"),
            legacy(f("content", TPL, "2024 name of `body`"), "body"),
        ],
    },
    ActionSpec {
        name: "deny",
        phases: &[TCP, REQ],
        terminates: Terminates::Always,
        result_ns: None,
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "reject the request (status, no body) or close the connection",
        fields: &[
            def(
                f("status_code", STATUS, "response status (HTTP only)"),
                "403",
            ),
            undocumented(f("body", TPL, "used in a doc example; deny sends no body")),
        ],
    },
    ActionSpec {
        name: "forward-internal",
        phases: &[TCP, REQ],
        terminates: Terminates::UnlessOnErrorContinue,
        result_ns: Some("forward_internal"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "hand the request or connection to an internal endpoint",
        fields: &[
            req(f(
                "url",
                Ty::Url { template: true },
                "`scheme://name.internal[:port]` of an internal endpoint",
            )),
            def(
                f("on_error", ON_ERROR, "what a failed forward does"),
                "halt",
            ),
            undocumented(f(
                "binding",
                STR,
                "used in doc examples (`internal`); not in the reference",
            )),
        ],
    },
    ActionSpec {
        name: "http-request",
        phases: &[REQ, RES],
        terminates: Terminates::Never,
        result_ns: Some("http_request"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "make a sub-request and expose its response",
        fields: &[
            req(f("url", Ty::Url { template: true }, "target URL")),
            def(
                f(
                    "method",
                    Ty::Enum(&["GET", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"]),
                    "HTTP method",
                ),
                "GET",
            ),
            f(
                "query_params",
                Ty::List {
                    item: &Ty::Object(&[
                        req(f("key", Ty::Str { max_len: Some(128) }, "parameter name")),
                        req(f(
                            "value",
                            Ty::Template {
                                max_len: Some(8192),
                            },
                            "parameter value",
                        )),
                    ]),
                    min: 0,
                    max: 32,
                    unique: false,
                },
                "query parameters (at most 32)",
            ),
            f("headers", HEADERS, "request headers (at most 10)"),
            f("body", TPL, "request body (POST, PUT, PATCH)"),
            def(
                f(
                    "max_redirects",
                    Ty::Int { min: 0, max: 100 },
                    "redirects to follow",
                ),
                "10",
            ),
            def(
                f(
                    "timeout",
                    Ty::Duration {
                        min_s: 1,
                        max_s: 30,
                        multiple_of_s: 0,
                    },
                    "total time, retries included",
                ),
                "3s",
            ),
            def(
                f(
                    "retry_condition",
                    Ty::BoolExpr,
                    "CEL condition evaluated after a failed attempt",
                ),
                "false",
            ),
            def(
                f("on_error", ON_ERROR, "what a failed sub-request does"),
                "continue",
            ),
        ],
    },
    ActionSpec {
        name: "jwt-validation",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("jwt_validation"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "require valid JSON Web Tokens (401 on failure)",
        fields: &[
            req(f("issuer", JWT_ISSUER, "accepted issuers")),
            f("audience", JWT_AUDIENCE, "accepted audiences"),
            req(f("http", JWT_HTTP, "where tokens are found")),
            req(f("jws", JWT_JWS, "signature verification")),
            def(
                f(
                    "skew",
                    SESSION,
                    "clock skew allowed for `exp`/`nbf`/`iat` (Wicket)",
                ),
                "60s",
            ),
        ],
    },
    ActionSpec {
        name: "log",
        phases: &[TCP, REQ, RES],
        terminates: Terminates::Never,
        result_ns: Some("log"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "attach metadata to the traffic event",
        fields: &[req(f(
            "metadata",
            Ty::Map {
                key: &STR,
                value: &Ty::Any,
                min: 1,
                max: UNBOUNDED,
            },
            "key to value; strings may interpolate `${…}`",
        ))],
    },
    ActionSpec {
        name: "oauth",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("oauth"),
        identity_provider: true,
        status: ActionStatus::Ga,
        doc: "require a login with an OAuth provider",
        fields: idp_fields![
            req(f(
                "provider",
                Ty::Enum(OAUTH_PROVIDERS),
                "identity provider (`custom`: a generic OAuth 2.0 provider)"
            )),
            f(
                "authorization_url",
                Ty::Url { template: false },
                "authorization endpoint (Wicket; overrides the provider's, required with `custom`)"
            ),
            f(
                "token_url",
                Ty::Url { template: false },
                "token endpoint (Wicket; overrides the provider's, required with `custom`)"
            ),
            f(
                "userinfo_url",
                Ty::Url { template: false },
                "user-info endpoint (Wicket; overrides the provider's, required with `custom`)"
            ),
            f(
                "idle_session_timeout",
                SESSION,
                "idle time before re-authentication"
            ),
        ],
    },
    ActionSpec {
        name: "openid-connect",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("oidc"),
        identity_provider: true,
        status: ActionStatus::Ga,
        doc: "require a login with an OpenID Connect provider",
        fields: idp_fields![
            req(f(
                "issuer_url",
                Ty::Url { template: false },
                "issuer serving `/.well-known/openid-configuration`"
            )),
            f(
                "idle_session_duration",
                SESSION,
                "idle time before re-authentication"
            ),
        ],
    },
    ActionSpec {
        name: "owasp-crs-request",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("owasp_crs_request"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "block requests the OWASP core rule set flags",
        fields: OWASP_FIELDS,
    },
    ActionSpec {
        name: "owasp-crs-response",
        phases: &[RES],
        terminates: Terminates::Conditionally,
        result_ns: Some("owasp_crs_response"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "block responses the OWASP core rule set flags",
        fields: OWASP_FIELDS,
    },
    ActionSpec {
        name: "rate-limit",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("rate_limit"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "reject requests over a rate with 429",
        fields: &[
            req(f(
                "name",
                Ty::Str {
                    max_len: Some(1023),
                },
                "name of the limit",
            )),
            def(f("enforce", BOOL, "`false` measures only"), "true"),
            req(f(
                "algorithm",
                Ty::Enum(&["sliding_window"]),
                "limiting algorithm",
            )),
            req(f(
                "capacity",
                Ty::Int {
                    min: 1,
                    max: 2_000_000_000,
                },
                "requests allowed per `rate`",
            )),
            req(f(
                "rate",
                Ty::Duration {
                    min_s: 60,
                    max_s: 86_400,
                    multiple_of_s: 10,
                },
                "window length",
            )),
            req(f(
                "bucket_key",
                Ty::List {
                    item: &Ty::Expr,
                    min: 1,
                    max: 10,
                    unique: false,
                },
                "CEL expressions whose values form the bucket",
            )),
        ],
    },
    ActionSpec {
        name: "redirect",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("redirect"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "redirect the client to a rewritten URL",
        fields: &[
            f(
                "from",
                Ty::Regex { template: true },
                "RE2 pattern searched in the full URL",
            ),
            req(f("to", TPL, "replacement with `$n` references")),
            def(
                f(
                    "status_code",
                    Ty::IntEnum(&[301, 302, 303, 307, 308]),
                    "redirect status",
                ),
                "302",
            ),
            f("headers", HEADERS, "extra response headers (at most 10)"),
            undocumented(f("location", TPL, "used in a doc example in place of `to`")),
        ],
    },
    ActionSpec {
        name: "url-rewrite",
        phases: &[REQ],
        terminates: Terminates::Never,
        result_ns: Some("url_rewrite"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "rewrite the URL sent upstream",
        fields: &[
            f(
                "from",
                Ty::Regex { template: true },
                "RE2 pattern matched against the full URL",
            ),
            req(f("to", TPL, "replacement with `$n` references")),
        ],
    },
    ActionSpec {
        name: "request-body-find-replace",
        phases: &[REQ],
        terminates: Terminates::Never,
        result_ns: Some("request_body_find_replace"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "find and replace in the request body",
        fields: &[req(f(
            "replacements",
            REPLACEMENTS,
            "replacements applied in order",
        ))],
    },
    ActionSpec {
        name: "response-body-find-replace",
        phases: &[RES],
        terminates: Terminates::Never,
        result_ns: Some("response_body_find_replace"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "find and replace in the response body",
        fields: &[req(f(
            "replacements",
            REPLACEMENTS,
            "replacements applied in order",
        ))],
    },
    ActionSpec {
        name: "sse-find-replace",
        phases: &[SSE],
        terminates: Terminates::Never,
        result_ns: Some("sse_find_replace"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "find and replace in server-sent event fields",
        fields: &[req(f(
            "replacements",
            SSE_REPLACEMENTS,
            "replacements applied in order",
        ))],
    },
    ActionSpec {
        name: "restrict-ips",
        phases: &[TCP, REQ, RES],
        terminates: Terminates::Conditionally,
        result_ns: Some("restrict_ips"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "allow or deny clients by IP address",
        fields: &[
            def(
                f("enforce", BOOL, "`false` decides and records only"),
                "true",
            ),
            f("allow", list(&Ty::Cidr), "allowed CIDRs"),
            f("deny", list(&Ty::Cidr), "denied CIDRs"),
            f(
                "ip_policies",
                list(&STR),
                "`ipp_…` ids of account IP policies",
            ),
        ],
    },
    ActionSpec {
        name: "set-vars",
        phases: &[TCP, REQ, RES],
        terminates: Terminates::Never,
        result_ns: None,
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "set `vars.*` variables for later rules of the phase",
        fields: &[req(f(
            "vars",
            Ty::SetVars,
            "list of single-key maps `- name: value`",
        ))],
    },
    ActionSpec {
        name: "terminate-tls",
        phases: &[TCP],
        terminates: Terminates::Never,
        result_ns: Some("terminate_tls"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "terminate TLS at the edge",
        fields: &[
            def(
                f(
                    "min_version",
                    Ty::Enum(&["1.2", "1.3"]),
                    "lowest TLS version",
                ),
                "1.2",
            ),
            def(
                f(
                    "max_version",
                    Ty::Enum(&["1.2", "1.3"]),
                    "highest TLS version",
                ),
                "1.3",
            ),
            f(
                "server_private_key",
                TPL,
                "PEM private key (with `server_certificate`)",
            ),
            f(
                "server_certificate",
                TPL,
                "PEM certificate chain (with `server_private_key`)",
            ),
            f(
                "mutual_tls_certificate_authorities",
                list(&TPL),
                "PEM CAs or CA ids; enables mTLS",
            ),
            def(
                f(
                    "mutual_tls_verification_strategy",
                    Ty::Enum(&["require-and-verify", "require-any", "request"]),
                    "client certificate policy",
                ),
                "require-and-verify",
            ),
        ],
    },
    ActionSpec {
        name: "verify-webhook",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: Some("verify_webhook"),
        identity_provider: false,
        status: ActionStatus::Ga,
        doc: "verify a webhook signature (403 on failure)",
        fields: &[
            req(f(
                "provider",
                Ty::OpenEnum(WEBHOOK_PROVIDERS),
                "webhook provider id",
            )),
            req(f("secret", TPL, "signing secret")),
            def(
                f("enforce", BOOL, "`false` records the result and continues"),
                "true",
            ),
        ],
    },
    ActionSpec {
        name: "ai-gateway",
        phases: &[REQ],
        terminates: Terminates::UnlessOnErrorContinue,
        result_ns: Some("ai_gateway"),
        identity_provider: false,
        status: ActionStatus::Legacy,
        doc: "legacy: proxy to AI providers (moved out of Traffic Policy)",
        fields: &[
            f(
                "max_input_tokens",
                Ty::Int {
                    min: 0,
                    max: 500_000,
                },
                "input token limit",
            ),
            f(
                "max_output_tokens",
                Ty::Int {
                    min: 0,
                    max: 500_000,
                },
                "output token limit",
            ),
            f(
                "headers",
                Ty::Map {
                    key: &Ty::HeaderName,
                    value: &TPL,
                    min: 0,
                    max: UNBOUNDED,
                },
                "headers sent to providers",
            ),
            f(
                "query_params",
                Ty::Any,
                "query parameters sent to providers",
            ),
            f("body", Ty::Any, "body fields sent to providers"),
            def(f("on_error", ON_ERROR, "what a failure does"), "halt"),
            def(f("total_timeout", SESSION, "overall timeout"), "5m"),
            def(
                f(
                    "per_request_timeout",
                    SESSION,
                    "per provider request timeout",
                ),
                "30s",
            ),
            f("providers", list(&Ty::Any), "provider definitions"),
            f(
                "only_allow_configured_providers",
                BOOL,
                "refuse unlisted providers",
            ),
            f(
                "only_allow_configured_models",
                BOOL,
                "refuse unlisted models",
            ),
            f("model_selection", Ty::Any, "model selection strategy"),
            f("api_key_selection", Ty::Any, "API key selection strategy"),
        ],
    },
    ActionSpec {
        name: "saml",
        phases: &[REQ],
        terminates: Terminates::Conditionally,
        result_ns: None,
        identity_provider: true,
        status: ActionStatus::Preview,
        doc: "preview: require a SAML login",
        fields: &[f("idp_metadata", STR, "identity provider metadata XML")],
    },
];

const OWASP_FIELDS: &[Field] = &[
    def(
        f(
            "on_error",
            ON_ERROR,
            "`continue` = test mode, blocks are not enforced",
        ),
        "halt",
    ),
    def(
        f("process_body", BOOL, "inspect the first 4 KB of the body"),
        "false",
    ),
    f(
        "exclude_rule_ids",
        Ty::List {
            item: &Ty::Int {
                min: 900_000,
                max: 999_999,
            },
            min: 0,
            max: UNBOUNDED,
            unique: true,
        },
        "rule ids to skip",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_unique_and_has_a_phase() {
        assert_eq!(ACTIONS.len(), 28);
        for (i, a) in ACTIONS.iter().enumerate() {
            assert!(!a.phases.is_empty(), "{}", a.name);
            assert!(
                ACTIONS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            for (j, fld) in a.fields.iter().enumerate() {
                assert!(
                    a.fields[j + 1..].iter().all(|g| g.name != fld.name),
                    "{}.{}",
                    a.name,
                    fld.name
                );
            }
        }
    }

    #[test]
    fn matrix_matches_the_spec() {
        let deny = action("deny").unwrap();
        assert!(deny.allowed_in(Phase::TcpConnect) && !deny.allowed_in(Phase::HttpResponse));
        assert!(
            action("sse-find-replace")
                .unwrap()
                .allowed_in(Phase::EventStreamMessage)
        );
        assert_eq!(action("openid-connect").unwrap().result_ns, Some("oidc"));
        assert!(action("oidc").is_none());
    }
}
