//! Snapshot tests: the tree of every `tests/data/ok/*.cel` fixture and the rendered error of
//! every `tests/data/err/*.cel` fixture. Review changes with `cargo insta review`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wicket_grammar::ast::Comprehension;
use wicket_grammar::{Expr, ExprKind, Macro, parse, print};

fn fixtures(kind: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(kind);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cel"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("utf-8 file name")
                .to_owned();
            (stem, std::fs::read_to_string(&p).expect("read fixture"))
        })
        .collect()
}

/// One line per node: kind, details, and the source text of its span.
fn render(src: &str, e: &Expr, indent: usize, out: &mut String) {
    let text = src.get(e.span.range()).unwrap_or("<bad span>");
    let pad = "  ".repeat(indent);
    let head = match &e.kind {
        ExprKind::Literal(l) => format!("Literal {l:?}"),
        ExprKind::Ident { name, root } => {
            format!("Ident {}{name}", if *root { "." } else { "" })
        }
        ExprKind::Select {
            field, optional, ..
        } => format!(
            "Select {}{}",
            if *optional { ".?" } else { "." },
            field.name
        ),
        ExprKind::Index { optional, .. } => format!("Index{}", if *optional { " [?]" } else { "" }),
        ExprKind::Call { function, args, .. } => {
            format!("Call {}/{}", function.name, args.len())
        }
        ExprKind::Unary { op, .. } => format!("Unary {op:?}"),
        ExprKind::Binary { op, .. } => format!("Binary {}", op.as_str()),
        ExprKind::Ternary { .. } => "Ternary".to_owned(),
        ExprKind::List(l) => format!(
            "List optional={:?}",
            l.iter().map(|e| e.optional).collect::<Vec<_>>()
        ),
        ExprKind::Map(m) => format!(
            "Map optional={:?}",
            m.iter().map(|e| e.optional).collect::<Vec<_>>()
        ),
        ExprKind::Struct { type_name, fields } => format!(
            "Struct {type_name} fields={:?}",
            fields
                .iter()
                .map(|f| format!("{}{}", if f.optional { "?" } else { "" }, f.name.name))
                .collect::<Vec<_>>()
        ),
        ExprKind::Macro(m) => format!("Macro {}{}", m.name(), macro_vars(m)),
    };
    let _ = writeln!(out, "{pad}{head}  @{:?} `{text}`", e.span);
    for child in children(e) {
        render(src, child, indent + 1, out);
    }
}

fn macro_vars(m: &Macro) -> String {
    let comp = |c: &Comprehension| match &c.var2 {
        Some(v2) => format!(" vars=({}, {})", c.var.name, v2.name),
        None => format!(" var={}", c.var.name),
    };
    match m {
        Macro::All(c)
        | Macro::Exists(c)
        | Macro::ExistsOne(c)
        | Macro::Filter(c)
        | Macro::SortBy(c) => comp(c),
        Macro::Map { comp: c, filter }
        | Macro::TransformList { comp: c, filter }
        | Macro::TransformMap { comp: c, filter }
        | Macro::TransformMapEntry { comp: c, filter } => {
            format!(
                "{}{}",
                comp(c),
                if filter.is_some() { " filtered" } else { "" }
            )
        }
        Macro::Bind { var, .. } | Macro::OptMap { var, .. } | Macro::OptFlatMap { var, .. } => {
            format!(" var={}", var.name)
        }
        Macro::Has { .. } | Macro::Block { .. } => String::new(),
    }
}

fn children(e: &Expr) -> Vec<&Expr> {
    match &e.kind {
        ExprKind::Literal(_) | ExprKind::Ident { .. } => vec![],
        ExprKind::Select { operand, .. } => vec![operand],
        ExprKind::Index { operand, index, .. } => vec![operand, index],
        ExprKind::Call { target, args, .. } => target.iter().map(|t| &**t).chain(args).collect(),
        ExprKind::Unary { operand, .. } => vec![operand],
        ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
        ExprKind::Ternary {
            cond,
            then,
            otherwise,
        } => vec![cond, then, otherwise],
        ExprKind::List(l) => l.iter().map(|e| &e.value).collect(),
        ExprKind::Map(m) => m.iter().flat_map(|e| [&e.key, &e.value]).collect(),
        ExprKind::Struct { fields, .. } => fields.iter().map(|f| &f.value).collect(),
        ExprKind::Macro(m) => match &**m {
            Macro::Has { select } => vec![select],
            Macro::All(c)
            | Macro::Exists(c)
            | Macro::ExistsOne(c)
            | Macro::Filter(c)
            | Macro::SortBy(c) => {
                vec![&c.range, &c.body]
            }
            Macro::Map { comp, filter }
            | Macro::TransformList { comp, filter }
            | Macro::TransformMap { comp, filter }
            | Macro::TransformMapEntry { comp, filter } => std::iter::once(&comp.range)
                .chain(filter)
                .chain(std::iter::once(&comp.body))
                .collect(),
            Macro::Bind { init, body, .. } => vec![init, body],
            Macro::OptMap { target, body, .. } | Macro::OptFlatMap { target, body, .. } => {
                vec![target, body]
            }
            Macro::Block { bindings, result } => {
                bindings.iter().chain(std::iter::once(result)).collect()
            }
        },
    }
}

/// The source line of the error with a caret line under its span.
fn render_error(src: &str, start: usize, end: usize, message: &str) -> String {
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let line = &src[line_start..line_end];
    let col = src[line_start..start].chars().count();
    let width = src[start..end.min(line_end).max(start)]
        .chars()
        .count()
        .max(1);
    format!(
        "{line}\n{}{} {message}\n",
        " ".repeat(col),
        "^".repeat(width)
    )
}

#[test]
fn ok_fixtures() {
    let cases = fixtures("ok");
    assert!(cases.len() >= 20);
    for (name, src) in cases {
        let e = parse(&src).unwrap_or_else(|err| panic!("{name}: {err}"));
        let mut out = format!("source:  {src}\nprinted: {}\n\n", print(&e));
        render(&src, &e, 0, &mut out);
        insta::assert_snapshot!(format!("ok__{name}"), out);
    }
}

#[test]
fn err_fixtures() {
    let cases = fixtures("err");
    assert!(cases.len() >= 15);
    for (name, src) in cases {
        let err = parse(&src).expect_err(&name);
        let out = render_error(
            &src,
            err.span.start as usize,
            err.span.end as usize,
            &err.message,
        );
        insta::assert_snapshot!(format!("err__{name}"), out);
    }
}
