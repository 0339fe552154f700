//! `parse(print(e))` equals `e` (ignoring spans) for generated trees.

use proptest::prelude::*;
use wicket_grammar::ast::{Comprehension, ListElement, MapEntry, StructField};
use wicket_grammar::template::{TemplatePart, parse_template};
use wicket_grammar::{
    BinaryOp, Expr, ExprKind, Ident, Literal, Macro, Span, UnaryOp, parse, print,
};

fn expr(kind: ExprKind) -> Expr {
    Expr::new(kind, Span::default())
}

fn ident(name: String) -> Ident {
    Ident {
        name,
        span: Span::default(),
    }
}

const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// A name usable as an identifier.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,6}".prop_filter("reserved", |n| !RESERVED.contains(&n.as_str()))
}

/// A field name: plain, a reserved word, or one that needs backticks.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        1 => prop::sample::select(RESERVED).prop_map(str::to_owned),
        1 => "[a-z0-9_./ -]{1,6}",
    ]
}

/// A comprehension variable: a name or a block-extension generated name.
fn var() -> impl Strategy<Value = Ident> {
    prop_oneof![
        5 => name(),
        1 => (0u8..3, 0u8..3, any::<bool>())
            .prop_map(|(a, b, it)| format!("@{}:{a}:{b}", if it { "it" } else { "ac" })),
    ]
    .prop_map(ident)
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        Just(Literal::Null),
        any::<bool>().prop_map(Literal::Bool),
        any::<i64>().prop_map(Literal::Int),
        (-3i64..300).prop_map(Literal::Int),
        any::<u64>().prop_map(Literal::Uint),
        any::<f64>()
            .prop_filter("finite", |d| d.is_finite())
            .prop_map(Literal::Double),
        prop::sample::select(&[0.0, -0.0, 0.5, -2.5, 1e16, 1e-7, 5e-324][..])
            .prop_map(Literal::Double),
        any::<String>().prop_map(Literal::String),
        "[ -~\n\t'\"\\\\]{0,8}".prop_map(Literal::String),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Literal::Bytes),
    ]
}

/// Function names that are not macros.
fn function_name() -> impl Strategy<Value = String> {
    prop::sample::select(&["f", "size", "contains", "startsWith", "_g", "matches"][..])
        .prop_map(str::to_owned)
}

fn type_name() -> impl Strategy<Value = String> {
    (any::<bool>(), name(), prop::collection::vec(name(), 0..3)).prop_map(|(root, first, rest)| {
        let mut s = if root { ".".to_owned() } else { String::new() };
        s.push_str(&first);
        for r in rest {
            s.push('.');
            s.push_str(&r);
        }
        s
    })
}

fn comprehension(e: BoxedStrategy<Expr>, two: bool) -> impl Strategy<Value = Comprehension> {
    (e.clone(), var(), var(), e).prop_filter_map(
        "distinct variables",
        move |(range, v1, v2, body)| {
            if two && v1.name == v2.name {
                return None;
            }
            Some(Comprehension {
                range,
                var: v1,
                var2: two.then_some(v2),
                body,
            })
        },
    )
}

fn macro_node(e: BoxedStrategy<Expr>) -> impl Strategy<Value = Macro> {
    let sel = (e.clone(), field_name()).prop_map(|(operand, f)| {
        expr(ExprKind::Select {
            operand: Box::new(operand),
            field: ident(f),
            optional: false,
        })
    });
    let opt_e = prop::option::of(e.clone());
    prop_oneof![
        sel.prop_map(|select| Macro::Has { select }),
        comprehension(e.clone(), false).prop_map(Macro::All),
        comprehension(e.clone(), true).prop_map(Macro::Exists),
        comprehension(e.clone(), true).prop_map(Macro::ExistsOne),
        (comprehension(e.clone(), false), opt_e.clone())
            .prop_map(|(comp, filter)| Macro::Map { comp, filter }),
        comprehension(e.clone(), false).prop_map(Macro::Filter),
        (comprehension(e.clone(), true), opt_e.clone())
            .prop_map(|(comp, filter)| Macro::TransformList { comp, filter }),
        (comprehension(e.clone(), true), opt_e.clone())
            .prop_map(|(comp, filter)| Macro::TransformMap { comp, filter }),
        (comprehension(e.clone(), true), opt_e)
            .prop_map(|(comp, filter)| Macro::TransformMapEntry { comp, filter }),
        comprehension(e.clone(), false).prop_map(Macro::SortBy),
        (var(), e.clone(), e.clone()).prop_map(|(var, init, body)| Macro::Bind { var, init, body }),
        (e.clone(), var(), e.clone()).prop_map(|(target, var, body)| Macro::OptMap {
            target,
            var,
            body
        }),
        (e.clone(), var(), e.clone()).prop_map(|(target, var, body)| Macro::OptFlatMap {
            target,
            var,
            body
        }),
        (prop::collection::vec(e.clone(), 0..3), e)
            .prop_map(|(bindings, result)| Macro::Block { bindings, result }),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        literal().prop_map(|l| expr(ExprKind::Literal(l))),
        (name(), any::<bool>()).prop_map(|(name, root)| expr(ExprKind::Ident { name, root })),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        let e = inner.boxed();
        let binop = prop::sample::select(
            &[
                BinaryOp::Or,
                BinaryOp::And,
                BinaryOp::Eq,
                BinaryOp::Ne,
                BinaryOp::Lt,
                BinaryOp::Le,
                BinaryOp::Gt,
                BinaryOp::Ge,
                BinaryOp::In,
                BinaryOp::Add,
                BinaryOp::Sub,
                BinaryOp::Mul,
                BinaryOp::Div,
                BinaryOp::Rem,
            ][..],
        );
        prop_oneof![
            (e.clone(), field_name(), any::<bool>()).prop_map(|(operand, f, optional)| {
                expr(ExprKind::Select {
                    operand: Box::new(operand),
                    field: ident(f),
                    optional,
                })
            }),
            (e.clone(), e.clone(), any::<bool>()).prop_map(|(operand, index, optional)| {
                expr(ExprKind::Index {
                    operand: Box::new(operand),
                    index: Box::new(index),
                    optional,
                })
            }),
            (
                prop::option::of(e.clone()),
                function_name(),
                any::<bool>(),
                prop::collection::vec(e.clone(), 0..3)
            )
                .prop_map(|(target, f, root, args)| {
                    let f = if root && target.is_none() {
                        format!(".{f}")
                    } else {
                        f
                    };
                    expr(ExprKind::Call {
                        target: target.map(Box::new),
                        function: ident(f),
                        args,
                    })
                }),
            (any::<bool>(), e.clone()).prop_map(|(not, operand)| {
                expr(ExprKind::Unary {
                    op: if not { UnaryOp::Not } else { UnaryOp::Neg },
                    operand: Box::new(operand),
                })
            }),
            (binop, e.clone(), e.clone()).prop_map(|(op, lhs, rhs)| {
                expr(ExprKind::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                })
            }),
            (e.clone(), e.clone(), e.clone()).prop_map(|(c, t, o)| {
                expr(ExprKind::Ternary {
                    cond: Box::new(c),
                    then: Box::new(t),
                    otherwise: Box::new(o),
                })
            }),
            prop::collection::vec((e.clone(), any::<bool>()), 0..3).prop_map(|elems| {
                expr(ExprKind::List(
                    elems
                        .into_iter()
                        .map(|(value, optional)| ListElement { value, optional })
                        .collect(),
                ))
            }),
            prop::collection::vec((e.clone(), e.clone(), any::<bool>()), 0..3).prop_map(
                |entries| {
                    expr(ExprKind::Map(
                        entries
                            .into_iter()
                            .map(|(key, value, optional)| MapEntry {
                                key,
                                value,
                                optional,
                                span: Span::default(),
                            })
                            .collect(),
                    ))
                }
            ),
            (
                type_name(),
                prop::collection::vec((field_name(), e.clone(), any::<bool>()), 0..3)
            )
                .prop_map(|(type_name, fields)| {
                    expr(ExprKind::Struct {
                        type_name,
                        fields: fields
                            .into_iter()
                            .map(|(n, value, optional)| StructField {
                                name: ident(n),
                                value,
                                optional,
                                span: Span::default(),
                            })
                            .collect(),
                    })
                }),
            macro_node(e).prop_map(|m| expr(ExprKind::Macro(Box::new(m)))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn print_then_parse_gives_the_same_tree(e in arb_expr()) {
        let printed = print(&e);
        let parsed = parse(&printed).map_err(|err| {
            TestCaseError::fail(format!("`{printed}` does not parse: {err} at {:?}", err.span))
        })?;
        prop_assert!(
            parsed.eq_ignoring_spans(&e),
            "printed `{}`\nexpected {:?}\nparsed   {:?}",
            printed,
            e,
            parsed.without_spans()
        );
        // Printing is canonical: the re-parsed tree prints the same way.
        prop_assert_eq!(print(&parsed), printed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// An expression embedded in a template comes back with spans relative to the template:
    /// the text at the expression's span is the printed expression.
    #[test]
    fn template_interpolations_have_template_relative_spans(
        before in "[^$]{0,6}",
        e in arb_expr(),
        after in "[^$]{0,6}",
        pad in " {0,2}",
    ) {
        let printed = print(&e);
        let src = format!("{before}${{{pad}{printed}{pad}}}{after}");
        let t = parse_template(&src)
            .map_err(|err| TestCaseError::fail(format!("{src:?}: {err}")))?;
        let exprs: Vec<_> = t
            .parts()
            .iter()
            .filter_map(|p| match p {
                TemplatePart::Expr { expr, span } => Some((expr, *span)),
                TemplatePart::Text { .. } => None,
            })
            .collect();
        prop_assert_eq!(exprs.len(), 1);
        let (expr, span) = exprs[0];
        prop_assert!(expr.eq_ignoring_spans(&e));
        prop_assert_eq!(&src[expr.span.range()], printed.as_str());
        prop_assert_eq!(span.range(), before.len()..before.len() + printed.len() + 2 * pad.len() + 3);
        prop_assert_eq!(t.is_single_interpolation(), before.is_empty() && after.is_empty());
    }
}
