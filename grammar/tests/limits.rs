//! Hostile input: deep nesting and huge expressions give errors, never a stack overflow or a
//! hang. Every case runs on a thread with a 2 MiB stack (the default for spawned threads),
//! which also holds in unoptimised test builds.

use wicket_grammar::{ParseOptions, parse, parse_with, print};

const STACK: usize = 2 << 20;

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .expect("spawn a thread")
        .join()
        .expect("the parser thread panicked or overflowed its stack")
}

fn assert_too_deep(src: String) {
    let err = on_small_stack(move || parse(&src).expect_err("hostile input must be rejected"));
    assert!(
        err.message.contains("nested too deeply") || err.message.contains("too long"),
        "{err:?}"
    );
}

fn assert_parses(src: String) {
    on_small_stack(move || {
        let e = parse(&src).unwrap_or_else(|e| panic!("{e}: {}", &src[..src.len().min(80)]));
        // Printing and comparing walk the whole tree too.
        let again = parse(&print(&e)).expect("printed expression parses");
        assert!(again.eq_ignoring_spans(&e));
    });
}

#[test]
fn ten_thousand_parentheses() {
    assert_too_deep(format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000)));
    assert_too_deep("(".repeat(10_000));
}

#[test]
fn unclosed_parentheses_are_fast() {
    // Would be exponential with a backtracking parser.
    let err = parse(&format!("{}a", "(".repeat(40))).unwrap_err();
    assert_eq!(err.message, "expected `)`, found the end of the expression");
}

#[test]
fn deep_lists_maps_and_calls() {
    assert_too_deep("[".repeat(10_000));
    assert_too_deep("{1: ".repeat(10_000));
    assert_too_deep("f(".repeat(10_000));
    assert_too_deep("a[".repeat(10_000));
}

#[test]
fn long_operator_runs() {
    assert_too_deep("!".repeat(1_000_000));
    assert_too_deep(format!("{}a", "!".repeat(90_000)));
    assert_too_deep(format!("{}1", "-".repeat(90_000)));
    assert_too_deep(format!("a{}", ".b".repeat(50_000)));
    assert_too_deep(format!("a{}", "[0]".repeat(30_000)));
    assert_too_deep(format!("1{}", " + 1".repeat(20_000)));
    assert_too_deep(format!("{}x", "true ? 1 : ".repeat(9_000)));
}

#[test]
fn a_megabyte_is_too_long() {
    let src = format!("[{}1]", "1, ".repeat(350_000));
    let err = parse(&src).unwrap_err();
    assert!(err.message.starts_with("expression is too long"), "{err}");
    assert_eq!(err.span.range(), 0..src.len());
    // With a larger length limit, a flat megabyte parses fine.
    let opts = ParseOptions {
        max_len: 2 << 20,
        ..ParseOptions::default()
    };
    let e = parse_with(&src, &opts).unwrap();
    assert!(matches!(e.kind, wicket_grammar::ExprKind::List(ref l) if l.len() == 350_001));
}

#[test]
fn deepest_accepted_nesting_fits_a_small_stack() {
    let n = 249;
    assert_parses(format!("{}a{}", "(".repeat(n), ")".repeat(n)));
    assert_parses(format!("{}0{}", "[".repeat(n - 1), "]".repeat(n - 1)));
    assert_parses(format!("{}0{}", "f(".repeat(n - 1), ")".repeat(n - 1)));
    assert_parses(format!("{}a", "!".repeat(n - 1)));
    assert_parses(format!("a{}", ".b".repeat(n - 1)));
    assert_parses(format!("{}x", "a ? b : ".repeat(n - 1)));
    // Every binary precedence level between two parentheses: the most stack per level.
    let level = "a || b && c == d + e * (";
    let k = 40;
    assert_parses(format!("{}x{}", level.repeat(k), ")".repeat(k)));
    let deep = format!("{}x{}", level.repeat(n), ")".repeat(n));
    let err = on_small_stack(move || parse(&deep).unwrap_err());
    assert!(err.message.contains("nested too deeply"), "{err}");
}

#[test]
fn depth_limit_is_configurable() {
    let opts = ParseOptions {
        max_depth: 3,
        ..ParseOptions::default()
    };
    assert!(parse_with("((a))", &opts).is_ok());
    assert!(parse_with("(((a)))", &opts).is_err());
    assert!(parse_with("a.b.c", &opts).is_ok());
    assert!(parse_with("a.b.c.d", &opts).is_err());
}
