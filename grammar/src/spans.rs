//! Span utilities over whole trees: erasing and shifting spans, comparing ignoring spans.

use crate::ast::{Comprehension, Expr, ExprKind, Macro, Span};

impl Expr {
    /// Applies `f` to every span in the tree (nodes, identifiers, map entries, fields).
    pub fn map_spans(&mut self, f: &mut impl FnMut(Span) -> Span) {
        self.span = f(self.span);
        match &mut self.kind {
            ExprKind::Literal(_) | ExprKind::Ident { .. } => {}
            ExprKind::Select { operand, field, .. } => {
                operand.map_spans(f);
                field.span = f(field.span);
            }
            ExprKind::Index { operand, index, .. } => {
                operand.map_spans(f);
                index.map_spans(f);
            }
            ExprKind::Call {
                target,
                function,
                args,
            } => {
                if let Some(t) = target {
                    t.map_spans(f);
                }
                function.span = f(function.span);
                for a in args {
                    a.map_spans(f);
                }
            }
            ExprKind::Unary { operand, .. } => operand.map_spans(f),
            ExprKind::Binary { lhs, rhs, .. } => {
                lhs.map_spans(f);
                rhs.map_spans(f);
            }
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => {
                cond.map_spans(f);
                then.map_spans(f);
                otherwise.map_spans(f);
            }
            ExprKind::List(elems) => {
                for e in elems {
                    e.value.map_spans(f);
                }
            }
            ExprKind::Map(entries) => {
                for e in entries {
                    e.span = f(e.span);
                    e.key.map_spans(f);
                    e.value.map_spans(f);
                }
            }
            ExprKind::Struct { fields, .. } => {
                for field in fields {
                    field.span = f(field.span);
                    field.name.span = f(field.name.span);
                    field.value.map_spans(f);
                }
            }
            ExprKind::Macro(m) => m.map_spans(f),
        }
    }

    /// A copy of the tree with every span set to `0..0`.
    #[must_use]
    pub fn without_spans(&self) -> Expr {
        let mut e = self.clone();
        e.map_spans(&mut |_| Span::default());
        e
    }

    /// Structural equality that ignores spans (e.g. `parse(print(e))` against `e`).
    #[must_use]
    pub fn eq_ignoring_spans(&self, other: &Expr) -> bool {
        self.without_spans() == other.without_spans()
    }
}

impl Comprehension {
    fn map_spans(&mut self, f: &mut impl FnMut(Span) -> Span) {
        self.range.map_spans(f);
        self.var.span = f(self.var.span);
        if let Some(v) = &mut self.var2 {
            v.span = f(v.span);
        }
        self.body.map_spans(f);
    }
}

impl Macro {
    fn map_spans(&mut self, f: &mut impl FnMut(Span) -> Span) {
        match self {
            Macro::Has { select } => select.map_spans(f),
            Macro::All(c)
            | Macro::Exists(c)
            | Macro::ExistsOne(c)
            | Macro::Filter(c)
            | Macro::SortBy(c) => c.map_spans(f),
            Macro::Map { comp, filter }
            | Macro::TransformList { comp, filter }
            | Macro::TransformMap { comp, filter }
            | Macro::TransformMapEntry { comp, filter } => {
                comp.map_spans(f);
                if let Some(e) = filter {
                    e.map_spans(f);
                }
            }
            Macro::Bind { var, init, body } => {
                var.span = f(var.span);
                init.map_spans(f);
                body.map_spans(f);
            }
            Macro::OptMap { target, var, body } | Macro::OptFlatMap { target, var, body } => {
                target.map_spans(f);
                var.span = f(var.span);
                body.map_spans(f);
            }
            Macro::Block { bindings, result } => {
                for b in bindings {
                    b.map_spans(f);
                }
                result.map_spans(f);
            }
        }
    }
}
