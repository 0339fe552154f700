//! The ACL decision table: every tricky case of `bind:` matching, with zero false allows.

use wicket_runtime::credentials::{Acl, EndpointUrl};

/// `(rules, endpoint, allowed)`.
const CASES: &[(&[&str], &str, bool)] = &[
    // Empty list: unrestricted.
    (&[], "https://anything.example", true),
    (&[], "tcp://10.0.0.1:22", true),
    // `bind:*`: explicitly everything.
    (&["bind:*"], "https://anything.example", true),
    (&["bind:*"], "tcp://1.tcp.example:20002", true),
    (&["bind:*"], "https://*.wild.example", true),
    // Exact host.
    (
        &["bind:cam-42.fleet.example.test"],
        "https://cam-42.fleet.example.test",
        true,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "http://cam-42.fleet.example.test",
        true,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "tls://cam-42.fleet.example.test",
        true,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "https://cam-42.fleet.example.test:8443",
        true,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "https://cam-43.fleet.example.test",
        false,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "https://x.cam-42.fleet.example.test",
        false,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "https://cam-42.fleet.example.test.evil",
        false,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "https://*.fleet.example.test",
        false,
    ),
    // Host rules never cover TCP.
    (
        &["bind:cam-42.fleet.example.test"],
        "tcp://cam-42.fleet.example.test:22",
        false,
    ),
    // Case and trailing dot are normalised on both sides.
    (
        &["bind:CAM-42.Fleet.Example.TEST."],
        "https://cam-42.fleet.example.test",
        true,
    ),
    (
        &["bind:cam-42.fleet.example.test"],
        "https://CAM-42.FLEET.example.test.",
        true,
    ),
    // Unicode host names compare in punycode.
    (
        &["bind:bücher.example"],
        "https://xn--bcher-kva.example",
        true,
    ),
    (
        &["bind:xn--bcher-kva.example"],
        "https://BÜCHER.example",
        true,
    ),
    (&["bind:bücher.example"], "https://bucher.example", false),
    // Leading wildcard: any name ending in `.<suffix>`.
    (&["bind:*.example.com"], "https://a.example.com", true),
    (&["bind:*.example.com"], "https://a.b.example.com", true),
    (&["bind:*.example.com"], "https://*.example.com", true),
    (&["bind:*.example.com"], "https://*.a.example.com", true),
    (&["bind:*.example.com"], "https://example.com", false),
    (&["bind:*.example.com"], "https://evilexample.com", false),
    (
        &["bind:*.example.com"],
        "https://example.com.evil.net",
        false,
    ),
    (&["bind:*.example.com"], "https://a.example.co", false),
    (&["bind:*.example.com"], "tcp://a.example.com:22", false),
    // Multi-label suffixes: `*.a.b` against deeper and shallower names.
    (&["bind:*.a.b"], "https://x.y.a.b", true),
    (&["bind:*.a.b"], "https://a.b", false),
    (&["bind:*.a.b"], "https://xa.b", false),
    (&["bind:*.y.a.b"], "https://*.a.b", false),
    // Internal suffixes.
    (
        &["bind:*.gateway1.internal"],
        "https://api.gateway1.internal",
        true,
    ),
    (
        &["bind:*.gateway1.internal"],
        "https://api.gateway2.internal",
        false,
    ),
    (
        &["bind:*.gateway1.internal"],
        "https://gateway1.internal",
        false,
    ),
    (&["bind:*.internal"], "https://anything.internal", true),
    (&["bind:*.internal"], "https://a.b.internal", true),
    (&["bind:*.internal"], "https://internal", false),
    (&["bind:*.internal"], "https://internal.example", false),
    (&["bind:*.internal"], "https://evilinternal", false),
    // TCP addresses and port ranges.
    (
        &["bind:tcp://1.tcp.example:20002"],
        "tcp://1.tcp.example:20002",
        true,
    ),
    (
        &["bind:tcp://1.tcp.example:20002"],
        "tcp://1.tcp.example:20003",
        false,
    ),
    (
        &["bind:tcp://1.tcp.example:20002"],
        "tcp://2.tcp.example:20002",
        false,
    ),
    (
        &["bind:1.tcp.example:20002"],
        "tcp://1.tcp.example:20002",
        true,
    ),
    (
        &["bind:tcp://h.example:20000-20100"],
        "tcp://h.example:20000",
        true,
    ),
    (
        &["bind:tcp://h.example:20000-20100"],
        "tcp://h.example:20100",
        true,
    ),
    (
        &["bind:tcp://h.example:20000-20100"],
        "tcp://h.example:19999",
        false,
    ),
    (
        &["bind:tcp://h.example:20000-20100"],
        "tcp://h.example:20101",
        false,
    ),
    (
        &["bind:tcp://*.site.example:22"],
        "tcp://dev.site.example:22",
        true,
    ),
    (
        &["bind:tcp://*.site.example:22"],
        "tcp://site.example:22",
        false,
    ),
    // Scheme mismatch.
    (&["bind:tcp://h.example:443"], "https://h.example", false),
    (&["bind:tcp://h.example:443"], "tls://h.example", false),
    (&["bind:https://h.example"], "http://h.example", false),
    (&["bind:https://h.example"], "tcp://h.example:443", false),
    (&["bind:https://h.example"], "https://h.example", true),
    (
        &["bind:http://h.example:8080"],
        "http://h.example:8080",
        true,
    ),
    (&["bind:http://h.example:8080"], "http://h.example", false),
    (&["bind:tls://*.h.example"], "tls://a.h.example", true),
    (&["bind:tls://*.h.example"], "https://a.h.example", false),
    // Several rules: any one allows.
    (
        &["bind:a.example", "bind:tcp://a.example:22"],
        "tcp://a.example:22",
        true,
    ),
    (
        &["bind:a.example", "bind:tcp://a.example:22"],
        "tcp://a.example:23",
        false,
    ),
    (
        &["bind:a.example", "bind:*.b.example"],
        "https://c.b.example",
        true,
    ),
    (
        &["bind:a.example", "bind:*.b.example"],
        "https://b.example",
        false,
    ),
];

#[test]
fn acl_table_has_no_false_allows() {
    assert!(CASES.len() >= 30);
    let mut failures = Vec::new();
    for (rules, endpoint, expected) in CASES {
        let acl = Acl::parse(rules).unwrap_or_else(|e| panic!("rules {rules:?}: {e}"));
        let endpoint_url =
            EndpointUrl::parse(endpoint).unwrap_or_else(|e| panic!("endpoint {endpoint}: {e}"));
        let allowed = acl.allows(&endpoint_url).is_ok();
        if allowed != *expected {
            failures.push(format!(
                "{rules:?} vs {endpoint}: got {allowed}, want {expected}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "wrong decisions:\n{}",
        failures.join("\n")
    );
}

#[test]
fn acl_denial_message_names_endpoint_and_rules() {
    let acl = Acl::parse(&["bind:*.site1.example", "bind:tcp://site1.example:2222"]).unwrap();
    let err = acl
        .allows(&EndpointUrl::parse("https://site2.example").unwrap())
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("`https://site2.example`"), "{message}");
    assert!(message.contains("bind:*.site1.example"), "{message}");
    assert!(
        message.contains("bind:tcp://site1.example:2222"),
        "{message}"
    );
}

#[test]
fn acl_invalid_endpoints_are_errors_not_allows() {
    for endpoint in [
        "https://a..example.com",
        "https://a b.example.com",
        "https://*",
    ] {
        assert!(EndpointUrl::parse(endpoint).is_err(), "{endpoint}");
    }
    // A disallowed code point fails to parse instead of silently matching.
    assert!(EndpointUrl::parse("https://a\u{0}.example.com").is_err());
}
