//! Property tests: the checker never panics and keeps its promises on generated expressions
//! built from the policy environment's names, functions, macros and operators.

use proptest::prelude::*;
use wicket_policy::Phase;
use wicket_policy::check::{CheckContext, Expected, check_source, check_template, fold_constant};

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("req.method".to_owned()),
        Just("req.url.path".to_owned()),
        Just("req.headers".to_owned()),
        Just("req.headers['x-a']".to_owned()),
        Just("req.cookies['s'][0]".to_owned()),
        Just("res.status_code".to_owned()),
        Just("conn.client_ip".to_owned()),
        Just("conn.client_ip.categories".to_owned()),
        Just("conn.ts.start".to_owned()),
        Just("time.now".to_owned()),
        Just("vars.x".to_owned()),
        Just("actions.ngrok.oauth.identity.email".to_owned()),
        Just("x".to_owned()),
        Just("req".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("'10.0.0.0/8'".to_owned()),
        Just("'User-Agent'".to_owned()),
        Just("b'x'".to_owned()),
        Just("1.5".to_owned()),
        Just("2u".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        (-3i64..300).prop_map(|i| i.to_string()),
        "[a-z]{0,4}".prop_map(|s| format!("'{s}'")),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(5, 64, 4, |inner| {
        let op = prop_oneof![
            Just("&&"),
            Just("||"),
            Just("=="),
            Just("!="),
            Just("<"),
            Just(">="),
            Just("+"),
            Just("-"),
            Just("*"),
            Just("%"),
            Just("in"),
        ];
        let member = prop_oneof![
            Just("startsWith"),
            Just("contains"),
            Just("matches"),
            Just("size"),
            Just("split"),
            Just("join"),
            Just("lower"),
            Just("getHours"),
            Just("nope"),
        ];
        let global = prop_oneof![
            Just("size"),
            Just("int"),
            Just("string"),
            Just("timestamp"),
            Just("duration"),
            Just("inCidrRange"),
            Just("inCidrRanges"),
            Just("getReqHeader"),
            Just("hasResHeader"),
            Just("has"),
            Just("dyn"),
        ];
        let mac = prop_oneof![
            Just("all"),
            Just("exists"),
            Just("exists_one"),
            Just("filter"),
            Just("map"),
        ];
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, o, b)| format!("({a}) {o} ({b})")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.clone().prop_map(|a| format!("-({a})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("({c}) ? ({a}) : ({b})")),
            (
                inner.clone(),
                member,
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(t, m, args)| format!("({t}).{m}({})", args.join(", "))),
            (global, prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(g, args)| format!("{g}({})", args.join(", "))),
            (inner.clone(), mac, inner.clone()).prop_map(|(r, m, b)| format!("({r}).{m}(v, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, i)| format!("({a})[{i}]")),
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            (inner.clone(), inner).prop_map(|(k, v)| format!("{{{k}: {v}}}")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn checking_never_panics_and_spans_are_in_bounds(src in expr(), phase in 0usize..4) {
        let phase = Phase::ALL[phase];
        let ctx = CheckContext::new(phase);
        for expected in [Expected::Bool, Expected::String, Expected::Any] {
            let checked = check_source(&src, &ctx, expected);
            for issue in &checked.issues {
                prop_assert!(issue.span.start <= issue.span.end);
                prop_assert!(issue.span.end as usize <= src.len(), "{issue:?} in `{src}`");
                prop_assert!(src.is_char_boundary(issue.span.start as usize));
                prop_assert!(!issue.message.is_empty());
                prop_assert!(!issue.message.ends_with('.'));
            }
        }
        let template = format!("a ${{{src}}} b");
        for issue in check_template(&template, &ctx) {
            prop_assert!(issue.span.end as usize <= template.len());
        }
    }

    #[test]
    fn folded_conditions_agree_with_the_warnings(src in expr()) {
        let Ok(parsed) = wicket_grammar::parse(&src) else { return Ok(()) };
        let folded = fold_constant(&parsed);
        let checked = check_source(&src, &CheckContext::new(Phase::HttpRequest), Expected::Bool);
        let has_error = checked.issues.iter().any(|i| i.severity == wicket_policy::Severity::Error);
        let warned = checked.issues.iter().any(|i| matches!(i.code, "W0300" | "W0301"));
        if !has_error {
            prop_assert_eq!(warned, folded.is_some(), "`{}`", src);
        }
    }
}
