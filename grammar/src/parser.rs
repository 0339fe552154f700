//! The recursive-descent CEL parser.
//!
//! Lexemes are recognised with `nom` (see [`crate::lexer`]); the grammar itself is a
//! hand-written predictive parser over `&str`: every decision is taken by looking at the next
//! token, so there is no backtracking and parsing is linear in the input length. Byte offsets
//! are `src.len() - rest.len()`.
//!
//! Two limits keep hostile input harmless (see [`ParseOptions`]): the input length, and the
//! nesting depth, which bounds both the recursion of the parser (parentheses, list and map
//! literals, call arguments) and the height of the tree it builds (chains of operators, field
//! selections and indexing are built iteratively but still produce deep trees, which every
//! consumer walks recursively).

use crate::ast::{
    BinaryOp, Comprehension, Expr, ExprKind, Ident, ListElement, Literal, Macro, MapEntry, Span,
    StructField, UnaryOp,
};
use crate::error::ParseError;
use crate::lexer::{self, NumKind, NumToken, StrValue, skip_ws};

/// Options of [`parse_with`](crate::parse_with).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Maximum nesting depth: nested sub-expressions (parentheses, list and map literals, call
    /// arguments, conditionals) and the height of the resulting tree (every operator, field
    /// selection, index and call adds a level) must both stay within it. Default: 250, the
    /// default recursion limit of cel-go.
    pub max_depth: usize,
    /// Maximum length of the expression source in bytes. Default: 100,000 (cel-go's default
    /// limit is 100,000 code points).
    pub max_len: usize,
    /// Recognise macros (`has`, `all`, `exists`, `map`, `cel.bind`, …) and produce
    /// [`ExprKind::Macro`] nodes. When false, they parse as ordinary calls. Default: true.
    pub macros: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        Self {
            max_depth: 250,
            max_len: 100_000,
            macros: true,
        }
    }
}

/// Parses the source range `start..end` of `full`, giving spans relative to `full`.
pub(crate) fn parse_range(
    full: &str,
    start: usize,
    end: usize,
    opts: &ParseOptions,
) -> Result<Expr, ParseError> {
    let src = full.get(..end).unwrap_or(full);
    let input = src.get(start..).unwrap_or("");
    let mut p = Parser {
        src,
        opts,
        depth: 0,
    };
    if input.len() > opts.max_len {
        return Err(ParseError::new(
            Span::new(p.pos(input), p.pos("")),
            format!(
                "expression is too long: {} bytes, the limit is {}",
                input.len(),
                opts.max_len
            ),
        ));
    }
    let (rest, node) = p.expr(input).map_err(|e| *e)?;
    let rest = skip_ws(rest);
    if !rest.is_empty() {
        let mut err = *p.expected(rest, "an operator or the end of the expression");
        if rest.starts_with('=') {
            err.message.push_str(" (equality is `==`)");
        }
        return Err(err);
    }
    Ok(*node.e)
}

/// A parsed sub-expression with bookkeeping.
struct Node {
    /// The expression (boxed: it becomes a child as is, and keeps stack frames small).
    e: Box<Expr>,
    /// Height of the tree (a leaf is 1).
    h: usize,
    /// The span including enclosing parentheses, used to compute parents' spans.
    outer: Span,
}

/// Internal errors are boxed to keep the parser's stack frames small.
type PErr = Box<ParseError>;

type PResult<'a, T> = Result<(&'a str, T), PErr>;

struct Parser<'a, 'o> {
    /// The whole source; offsets are relative to it.
    src: &'a str,
    opts: &'o ParseOptions,
    /// Current nesting of `expr`.
    depth: usize,
}

/// Describes the token at the start of `rest` for error messages, and its length.
fn describe(rest: &str) -> (String, usize) {
    let Some(c) = rest.chars().next() else {
        return ("the end of the expression".to_owned(), 0);
    };
    if let Ok((after, word)) = lexer::identifier(rest) {
        let _ = after;
        return (format!("`{word}`"), word.len());
    }
    if c.is_ascii_digit() {
        let len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'.')
            .count();
        return (format!("`{}`", &rest[..len]), len);
    }
    for op in ["||", "&&", "==", "!=", "<=", ">=", "${", "\"\"\"", "'''"] {
        if rest.starts_with(op) {
            return (format!("`{op}`"), op.len());
        }
    }
    let text = match c {
        '`' => "a backtick".to_owned(),
        c if c.is_control() || c.is_whitespace() => format!("`{}`", c.escape_debug()),
        c => format!("`{c}`"),
    };
    (text, c.len_utf8())
}

fn binary_op(t: &str) -> Option<(BinaryOp, usize)> {
    let b = t.as_bytes();
    let two = |op| Some((op, 2));
    match (b.first()?, b.get(1)) {
        (b'|', Some(b'|')) => two(BinaryOp::Or),
        (b'&', Some(b'&')) => two(BinaryOp::And),
        (b'=', Some(b'=')) => two(BinaryOp::Eq),
        (b'!', Some(b'=')) => two(BinaryOp::Ne),
        (b'<', Some(b'=')) => two(BinaryOp::Le),
        (b'>', Some(b'=')) => two(BinaryOp::Ge),
        (b'<', _) => Some((BinaryOp::Lt, 1)),
        (b'>', _) => Some((BinaryOp::Gt, 1)),
        (b'+', _) => Some((BinaryOp::Add, 1)),
        (b'-', _) => Some((BinaryOp::Sub, 1)),
        (b'*', _) => Some((BinaryOp::Mul, 1)),
        (b'/', _) => Some((BinaryOp::Div, 1)),
        (b'%', _) => Some((BinaryOp::Rem, 1)),
        (b'i', Some(b'n'))
            if !b
                .get(2)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') =>
        {
            two(BinaryOp::In)
        }
        _ => None,
    }
}

/// Whether a foldable (int or double) number literal starts at `t`.
fn foldable_number(t: &str) -> bool {
    lexer::starts_number(t) && lexer::number(t).is_ok_and(|(_, tok)| tok.kind != NumKind::Uint)
}

impl<'a> Parser<'a, '_> {
    fn pos(&self, rest: &str) -> u32 {
        u32::try_from(self.src.len().saturating_sub(rest.len())).unwrap_or(u32::MAX)
    }

    fn span(&self, from: &str, to: &str) -> Span {
        Span::new(self.pos(from), self.pos(to))
    }

    /// "expected X, found <token at rest>".
    fn expected(&self, rest: &str, what: &str) -> PErr {
        let (found, len) = describe(rest);
        let start = self.pos(rest);
        Box::new(ParseError::expecting(
            Span::new(start, start + u32::try_from(len).unwrap_or(0)),
            what,
            &found,
        ))
    }

    fn too_deep(&self, span: Span) -> PErr {
        Box::new(ParseError::new(
            span,
            format!(
                "expression is nested too deeply: the limit is {} levels",
                self.opts.max_depth
            ),
        ))
    }

    /// A node of height `h` (checked against the depth limit).
    fn node(&self, kind: ExprKind, span: Span, h: usize) -> Result<Node, PErr> {
        if h > self.opts.max_depth {
            return Err(self.too_deep(span));
        }
        Ok(Node {
            e: Box::new(Expr::new(kind, span)),
            h,
            outer: span,
        })
    }

    fn expect_char(&self, s: &'a str, c: char) -> Result<&'a str, PErr> {
        let t = skip_ws(s);
        t.strip_prefix(c)
            .ok_or_else(|| self.expected(t, &format!("`{c}`")))
    }

    // ---- expressions ------------------------------------------------------------------------

    /// `Expr = ConditionalOr ["?" ConditionalOr ":" Expr]`, with the nesting guard.
    fn expr(&mut self, s: &'a str) -> PResult<'a, Node> {
        self.depth += 1;
        if self.depth > self.opts.max_depth {
            let t = skip_ws(s);
            let (_, len) = describe(t);
            let start = self.pos(t);
            return Err(self.too_deep(Span::new(start, start + u32::try_from(len).unwrap_or(0))));
        }
        let result = self.ternary(s);
        self.depth -= 1;
        result
    }

    fn ternary(&mut self, s: &'a str) -> PResult<'a, Node> {
        let (s, cond) = self.binary(s)?;
        let t = skip_ws(s);
        let Some(t) = t.strip_prefix('?') else {
            return Ok((s, cond));
        };
        let (s, then) = self.binary(t)?;
        let t = self.expect_char(s, ':')?;
        let (s, otherwise) = self.expr(t)?;
        let span = cond.outer.cover(otherwise.outer);
        let h = 1 + cond.h.max(then.h).max(otherwise.h);
        let node = self.node(
            ExprKind::Ternary {
                cond: cond.e,
                then: then.e,
                otherwise: otherwise.e,
            },
            span,
            h,
        )?;
        Ok((s, node))
    }

    /// All binary operators (`||` down to `* / %`), by operator precedence with explicit
    /// stacks, so that the precedence levels cost no recursion. All are left-associative.
    fn binary(&mut self, s: &'a str) -> PResult<'a, Node> {
        let (mut s, first) = self.unary(s)?;
        let mut operands = vec![first];
        let mut ops: Vec<BinaryOp> = Vec::new();
        loop {
            let t = skip_ws(s);
            let Some((op, len)) = binary_op(t) else {
                break;
            };
            while ops
                .last()
                .is_some_and(|top| top.precedence() >= op.precedence())
            {
                self.reduce(&mut operands, &mut ops)?;
            }
            ops.push(op);
            let (rest, rhs) = self.unary(&t[len..])?;
            operands.push(rhs);
            s = rest;
        }
        while !ops.is_empty() {
            self.reduce(&mut operands, &mut ops)?;
        }
        let node = operands.pop().ok_or_else(missing)?;
        Ok((s, node))
    }

    /// Pops an operator and its two operands and pushes the combined node.
    fn reduce(&self, operands: &mut Vec<Node>, ops: &mut Vec<BinaryOp>) -> Result<(), PErr> {
        let (Some(op), Some(rhs), Some(lhs)) = (ops.pop(), operands.pop(), operands.pop()) else {
            return Err(missing());
        };
        let span = lhs.outer.cover(rhs.outer);
        let h = 1 + lhs.h.max(rhs.h);
        operands.push(self.node(
            ExprKind::Binary {
                op,
                lhs: lhs.e,
                rhs: rhs.e,
            },
            span,
            h,
        )?);
        Ok(())
    }

    /// `Unary = Member | "!" {"!"} Member | "-" {"-"} Member`. A minus directly before an int
    /// or double literal is part of the literal (as in cel-go), which makes
    /// `-9223372036854775808` representable.
    fn unary(&mut self, s: &'a str) -> PResult<'a, Node> {
        let t = skip_ws(s);
        let (op, c) = match t.as_bytes().first() {
            Some(b'-') => (UnaryOp::Neg, '-'),
            Some(b'!') if !t[1..].starts_with('=') => (UnaryOp::Not, '!'),
            _ => return self.member(t, None),
        };
        let mut ops = Vec::new();
        let mut cur = t;
        while let Some(rest) = cur.strip_prefix(c) {
            if ops.len() >= self.opts.max_depth {
                return Err(self.too_deep(self.span(t, rest)));
            }
            ops.push(self.pos(cur));
            cur = skip_ws(rest);
        }
        let (rest, mut node) = match op {
            UnaryOp::Neg if foldable_number(cur) => {
                let minus = ops.pop().unwrap_or_else(|| self.pos(cur));
                self.member(cur, Some(minus))?
            }
            UnaryOp::Not if cur.starts_with('-') && foldable_number(skip_ws(&cur[1..])) => {
                let minus = self.pos(cur);
                self.member(skip_ws(&cur[1..]), Some(minus))?
            }
            _ => self.member(cur, None)?,
        };
        for &start in ops.iter().rev() {
            let span = Span::new(start, node.outer.end);
            let h = node.h + 1;
            node = self.node(
                ExprKind::Unary {
                    op,
                    operand: node.e,
                },
                span,
                h,
            )?;
        }
        Ok((rest, node))
    }

    /// A primary followed by field selections, member calls, indexing and message
    /// construction. `negative` is the offset of a minus sign folded into a number literal.
    fn member(&mut self, s: &'a str, negative: Option<u32>) -> PResult<'a, Node> {
        // Each postfix form is handled by its own function so that this function, which is
        // on every recursion path, keeps a small stack frame.
        let mut type_name = None;
        let (mut s, mut node) = self.primary(s, negative, &mut type_name)?;
        loop {
            let t = skip_ws(s);
            (s, node) = match t.as_bytes().first() {
                Some(b'.') => match self.dot_postfix(t, node, &mut type_name)? {
                    DotStep::Done(rest, node) => (rest, node),
                    DotStep::Call(args, node, field) => {
                        type_name = None;
                        self.member_call(args, node, field)?
                    }
                },
                Some(b'[') => {
                    type_name = None;
                    self.index_postfix(t, node)?
                }
                Some(b'{') => self.struct_postfix(t, node, type_name.take())?,
                _ => return Ok((s, node)),
            };
        }
    }

    /// `.field`, `.?field`, or the start of a member call `.f(`.
    fn dot_postfix(
        &self,
        t: &'a str,
        node: Node,
        type_name: &mut Option<String>,
    ) -> Result<DotStep<'a>, PErr> {
        let r = skip_ws(&t[1..]);
        let (r, optional) = match r.strip_prefix('?') {
            Some(r) => (skip_ws(r), true),
            None => (r, false),
        };
        let (r, (field, quoted)) = self.field_name(r)?;
        let after = skip_ws(r);
        if !optional && !quoted {
            if let Some(args) = after.strip_prefix('(') {
                return Ok(DotStep::Call(args, node, field));
            }
        }
        *type_name = match type_name.take() {
            Some(mut name) if !optional && !quoted => {
                name.push('.');
                name.push_str(&field.name);
                Some(name)
            }
            _ => None,
        };
        let span = Span::new(node.outer.start, field.span.end);
        let h = node.h + 1;
        let node = self.node(
            ExprKind::Select {
                operand: node.e,
                field,
                optional,
            },
            span,
            h,
        )?;
        Ok(DotStep::Done(r, node))
    }

    /// A member call `target.f(args)`; `s` is after the `(`.
    fn member_call(&mut self, s: &'a str, target: Node, function: Ident) -> PResult<'a, Node> {
        let (r, args) = self.call_args(s)?;
        let span = Span::new(target.outer.start, self.pos(r));
        let node = self.make_call(Some(target), function, args, span)?;
        Ok((r, node))
    }

    /// `[index]` or `[?index]` at `t`.
    fn index_postfix(&mut self, t: &'a str, node: Node) -> PResult<'a, Node> {
        let r = skip_ws(&t[1..]);
        let (r, optional) = match r.strip_prefix('?') {
            Some(r) => (r, true),
            None => (r, false),
        };
        let (r, index) = self.expr(r)?;
        let r = self.expect_char(r, ']')?;
        let span = Span::new(node.outer.start, self.pos(r));
        let h = 1 + node.h.max(index.h);
        let node = self.node(
            ExprKind::Index {
                operand: node.e,
                index: index.e,
                optional,
            },
            span,
            h,
        )?;
        Ok((r, node))
    }

    /// Message construction `{…}` at `t` after the type name `node`.
    fn struct_postfix(
        &mut self,
        t: &'a str,
        node: Node,
        type_name: Option<String>,
    ) -> PResult<'a, Node> {
        let Some(type_name) = type_name else {
            return Err(Box::new(ParseError::new(
                node.outer,
                "message construction `{…}` must follow a message type name such as `a.b.Msg`",
            )));
        };
        let (r, (fields, h)) = self.struct_fields(&t[1..])?;
        let span = Span::new(node.outer.start, self.pos(r));
        let node = self.node(ExprKind::Struct { type_name, fields }, span, h + 1)?;
        Ok((r, node))
    }

    /// A field or method name after `.`: an identifier (reserved words allowed, except the
    /// literal words and `in`) or a backtick-quoted name. Returns whether it was quoted.
    fn field_name(&self, r: &'a str) -> PResult<'a, (Ident, bool)> {
        if let Some(body) = r.strip_prefix('`') {
            let len = body
                .find(|c: char| !lexer::is_backtick_char(c))
                .unwrap_or(body.len());
            let name = &body[..len];
            let rest = &body[len..];
            let Some(after) = rest.strip_prefix('`') else {
                return Err(self.expected(
                    rest,
                    "a closing backtick (quoted field names may contain letters, digits, `_`, `.`, `-`, `/` and spaces)",
                ));
            };
            if name.is_empty() {
                return Err(Box::new(ParseError::new(
                    self.span(r, after),
                    "empty quoted field name",
                )));
            }
            let ident = Ident {
                name: name.to_owned(),
                span: self.span(r, after),
            };
            return Ok((after, (ident, true)));
        }
        match lexer::identifier(r) {
            Ok((after, word)) if !lexer::KEYWORD_TOKENS.contains(&word) => {
                let ident = Ident {
                    name: word.to_owned(),
                    span: self.span(r, after),
                };
                Ok((after, (ident, false)))
            }
            _ => Err(self.expected(r, "a field name")),
        }
    }

    /// The arguments of a call after `(`, up to and including `)`.
    fn call_args(&mut self, s: &'a str) -> PResult<'a, Vec<Node>> {
        let mut args = Vec::new();
        let t = skip_ws(s);
        if let Some(r) = t.strip_prefix(')') {
            return Ok((r, args));
        }
        let mut s = s;
        loop {
            let (r, arg) = self.expr(s)?;
            args.push(arg);
            let t = skip_ws(r);
            if let Some(r) = t.strip_prefix(',') {
                s = r;
            } else if let Some(r) = t.strip_prefix(')') {
                return Ok((r, args));
            } else {
                return Err(self.expected(t, "`,` or `)`"));
            }
        }
    }

    /// Message fields after `{`, up to and including `}`; returns the maximal height.
    fn struct_fields(&mut self, s: &'a str) -> PResult<'a, (Vec<StructField>, usize)> {
        let mut fields = Vec::new();
        let mut h = 0;
        let mut s = s;
        loop {
            let t = skip_ws(s);
            if let Some(r) = t.strip_prefix('}') {
                return Ok((r, (fields, h)));
            }
            let (r, optional) = match t.strip_prefix('?') {
                Some(r) => (skip_ws(r), true),
                None => (t, false),
            };
            let (r, (name, _)) = self
                .field_name(r)
                .map_err(|_| self.expected(r, "a field name or `}`"))?;
            let r = self.expect_char(r, ':')?;
            let (r, value) = self.expr(r)?;
            h = h.max(value.h);
            fields.push(StructField {
                name,
                value: *value.e,
                optional,
                span: Span::new(self.pos(t), value.outer.end),
            });
            let t = skip_ws(r);
            if let Some(r) = t.strip_prefix(',') {
                s = r;
            } else if let Some(r) = t.strip_prefix('}') {
                return Ok((r, (fields, h)));
            } else {
                return Err(self.expected(t, "`,` or `}`"));
            }
        }
    }

    /// A primary expression. Sets `type_name` to the name written when the primary is a
    /// plain identifier (for message construction `a.b.C{…}`).
    ///
    /// Like [`Parser::member`], this is on every recursion path: each form has its own
    /// function so that this one keeps a small stack frame.
    fn primary(
        &mut self,
        s: &'a str,
        negative: Option<u32>,
        type_name: &mut Option<String>,
    ) -> PResult<'a, Node> {
        let t = skip_ws(s);
        if let Some(minus) = negative {
            return self.number(t, Some(minus));
        }
        let Some(&first) = t.as_bytes().first() else {
            return Err(self.expected(t, "an expression"));
        };
        match first {
            b'(' => self.parenthesized(t),
            b'[' => self.list(t),
            b'{' => self.map(t),
            b'0'..=b'9' => self.number(t, None),
            b'.' if lexer::starts_number(t) => self.number(t, None),
            _ if lexer::string_start(t).is_some() => self.string(t),
            b'.' | b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                match self.identifier_primary(t, type_name)? {
                    IdentStep::Done(rest, node) => Ok((rest, node)),
                    IdentStep::Call(args, function) => self.global_call(t, args, function),
                }
            }
            _ => Err(self.expected(t, "an expression")),
        }
    }

    /// `(expr)` at `t`.
    fn parenthesized(&mut self, t: &'a str) -> PResult<'a, Node> {
        let (r, mut node) = self.expr(&t[1..])?;
        let r = self.expect_char(r, ')')?;
        node.outer = self.span(t, r);
        Ok((r, node))
    }

    /// A global call `f(args)`; `start` is at the name, `s` after the `(`.
    fn global_call(&mut self, start: &'a str, s: &'a str, function: Ident) -> PResult<'a, Node> {
        let (rest, args) = self.call_args(s)?;
        let span = self.span(start, rest);
        let node = self.make_call(None, function, args, span)?;
        Ok((rest, node))
    }

    /// An identifier (possibly with a leading dot), a literal word, or the start of a global
    /// call, at `start`.
    fn identifier_primary(
        &self,
        start: &'a str,
        type_name: &mut Option<String>,
    ) -> Result<IdentStep<'a>, PErr> {
        let (root, r) = match start.strip_prefix('.') {
            Some(r) => (true, skip_ws(r)),
            None => (false, start),
        };
        let Ok((after, word)) = lexer::identifier(r) else {
            return Err(self.expected(r, "an identifier after `.`"));
        };
        let span = self.span(start, after);
        if !root {
            let literal = match word {
                "true" => Some(Literal::Bool(true)),
                "false" => Some(Literal::Bool(false)),
                "null" => Some(Literal::Null),
                _ => None,
            };
            if let Some(lit) = literal {
                let node = self.node(ExprKind::Literal(lit), span, 1)?;
                return Ok(IdentStep::Done(after, node));
            }
        }
        if lexer::is_reserved(word) {
            return Err(Box::new(ParseError::new(
                self.span(r, after),
                format!("reserved identifier `{word}` cannot be used as a name"),
            )));
        }
        let name = if root {
            format!(".{word}")
        } else {
            word.to_owned()
        };
        let t = skip_ws(after);
        if let Some(args) = t.strip_prefix('(') {
            return Ok(IdentStep::Call(args, Ident { name, span }));
        }
        let node = self.node(
            ExprKind::Ident {
                name: word.to_owned(),
                root,
            },
            span,
            1,
        )?;
        *type_name = Some(name);
        Ok(IdentStep::Done(after, node))
    }

    /// `[a, ?b, c,]` starting at `[`.
    fn list(&mut self, t: &'a str) -> PResult<'a, Node> {
        let mut elems = Vec::new();
        let mut h = 0;
        let mut s = &t[1..];
        loop {
            let e = skip_ws(s);
            if let Some(r) = e.strip_prefix(']') {
                let node = self.node(ExprKind::List(elems), self.span(t, r), h + 1)?;
                return Ok((r, node));
            }
            let (e, optional) = match e.strip_prefix('?') {
                Some(e) => (e, true),
                None => (e, false),
            };
            let (r, value) = self.expr(e)?;
            h = h.max(value.h);
            elems.push(ListElement {
                value: *value.e,
                optional,
            });
            let r = skip_ws(r);
            if let Some(r) = r.strip_prefix(',') {
                s = r;
            } else if let Some(r) = r.strip_prefix(']') {
                let node = self.node(ExprKind::List(elems), self.span(t, r), h + 1)?;
                return Ok((r, node));
            } else {
                return Err(self.expected(r, "`,` or `]`"));
            }
        }
    }

    /// `{k: v, ?k2: v2,}` starting at `{`.
    fn map(&mut self, t: &'a str) -> PResult<'a, Node> {
        let mut entries = Vec::new();
        let mut h = 0;
        let mut s = &t[1..];
        loop {
            let e = skip_ws(s);
            if let Some(r) = e.strip_prefix('}') {
                let node = self.node(ExprKind::Map(entries), self.span(t, r), h + 1)?;
                return Ok((r, node));
            }
            let (k, optional) = match e.strip_prefix('?') {
                Some(k) => (k, true),
                None => (e, false),
            };
            let (r, key) = self.expr(k)?;
            let r = self.expect_char(r, ':')?;
            let (r, value) = self.expr(r)?;
            h = h.max(key.h).max(value.h);
            entries.push(MapEntry {
                key: *key.e,
                value: *value.e,
                optional,
                span: Span::new(self.pos(e), value.outer.end),
            });
            let r = skip_ws(r);
            if let Some(r) = r.strip_prefix(',') {
                s = r;
            } else if let Some(r) = r.strip_prefix('}') {
                let node = self.node(ExprKind::Map(entries), self.span(t, r), h + 1)?;
                return Ok((r, node));
            } else {
                return Err(self.expected(r, "`,` or `}`"));
            }
        }
    }

    /// A number literal at `t`; `negative` is the offset of a folded minus sign.
    fn number(&self, t: &'a str, negative: Option<u32>) -> PResult<'a, Node> {
        let Ok((rest, tok)) = lexer::number(t) else {
            return Err(self.expected(t, "a number"));
        };
        let start = negative.unwrap_or_else(|| self.pos(t));
        let span = Span::new(start, self.pos(rest));
        let text = &self.src[span.range()];
        let lit = number_literal(tok, negative.is_some()).ok_or_else(|| {
            let what = match tok.kind {
                NumKind::Int => "integer",
                NumKind::Uint => "unsigned integer",
                NumKind::Double => "double",
            };
            ParseError::new(span, format!("{what} literal `{text}` is out of range"))
        })?;
        let node = self.node(ExprKind::Literal(lit), span, 1)?;
        Ok((rest, node))
    }

    /// A string or bytes literal at `t`.
    fn string(&self, t: &'a str) -> PResult<'a, Node> {
        let start = self.pos(t);
        match lexer::string_literal(t) {
            Ok((rest, value)) => {
                let lit = match value {
                    StrValue::Str(s) => Literal::String(s),
                    StrValue::Bytes(b) => Literal::Bytes(b),
                };
                let node = self.node(ExprKind::Literal(lit), self.span(t, rest), 1)?;
                Ok((rest, node))
            }
            Err(e) => {
                let to = |o: usize| start + u32::try_from(o).unwrap_or(u32::MAX);
                Err(Box::new(ParseError::new(
                    Span::new(to(e.start), to(e.end)),
                    e.message,
                )))
            }
        }
    }

    // ---- calls and macros -------------------------------------------------------------------

    /// A global (`target == None`) or member call, or the macro it spells.
    fn make_call(
        &mut self,
        target: Option<Node>,
        function: Ident,
        args: Vec<Node>,
        span: Span,
    ) -> Result<Node, PErr> {
        let h = 1 + args
            .iter()
            .map(|a| a.h)
            .chain(target.as_ref().map(|t| t.h))
            .max()
            .unwrap_or(0);
        if self.opts.macros {
            if let Some(m) = self.macro_call(target.as_ref(), &function, &args)? {
                let mut target = target;
                let mut args = args;
                let m = m.build(&mut target, &mut args, self)?;
                return self.node(ExprKind::Macro(Box::new(m)), span, h);
            }
        }
        self.node(
            ExprKind::Call {
                target: target.map(|t| t.e),
                function,
                args: args.into_iter().map(|a| *a.e).collect(),
            },
            span,
            h,
        )
    }

    /// Which macro, if any, a call spells.
    fn macro_call(
        &self,
        target: Option<&Node>,
        function: &Ident,
        args: &[Node],
    ) -> Result<Option<MacroKind>, PErr> {
        let n = args.len();
        let Some(target) = target else {
            return Ok((function.name == "has" && n == 1).then_some(MacroKind::Has));
        };
        let is_cel =
            matches!(&target.e.kind, ExprKind::Ident { name, root: false } if name == "cel");
        let kind = match (function.name.as_str(), n) {
            ("all", 2 | 3) => MacroKind::All,
            ("exists", 2 | 3) => MacroKind::Exists,
            ("exists_one" | "existsOne", 2 | 3) => MacroKind::ExistsOne,
            ("map", 2 | 3) => MacroKind::Map,
            ("filter", 2) => MacroKind::Filter,
            ("transformList", 3 | 4) => MacroKind::TransformList,
            ("transformMap", 3 | 4) => MacroKind::TransformMap,
            ("transformMapEntry", 3 | 4) => MacroKind::TransformMapEntry,
            ("optMap", 2) => MacroKind::OptMap,
            ("optFlatMap", 2) => MacroKind::OptFlatMap,
            ("sortBy", 2) => MacroKind::SortBy,
            ("bind", 3) if is_cel => MacroKind::Bind,
            ("block", 2) if is_cel => MacroKind::Block,
            _ => return Ok(None),
        };
        Ok(Some(kind))
    }

    /// The variable argument of a macro: a simple name, or `cel.iterVar(i, j)` /
    /// `cel.accuVar(i, j)` (the block extension's generated names), which becomes the
    /// variable `@it:i:j` / `@ac:i:j`.
    fn macro_var(&self, arg: &Node) -> Result<Ident, PErr> {
        match &arg.e.kind {
            ExprKind::Ident { name, root: false } => Ok(Ident {
                name: name.clone(),
                span: arg.e.span,
            }),
            ExprKind::Call {
                target: Some(target),
                function,
                args,
            } if matches!(&target.kind, ExprKind::Ident { name, root: false } if name == "cel")
                && matches!(function.name.as_str(), "iterVar" | "accuVar") =>
            {
                let prefix = if function.name == "iterVar" {
                    "it"
                } else {
                    "ac"
                };
                match args.as_slice() {
                    [
                        Expr {
                            kind: ExprKind::Literal(Literal::Int(a)),
                            ..
                        },
                        Expr {
                            kind: ExprKind::Literal(Literal::Int(b)),
                            ..
                        },
                    ] if *a >= 0 && *b >= 0 => Ok(Ident {
                        name: format!("@{prefix}:{a}:{b}"),
                        span: arg.e.span,
                    }),
                    _ => Err(Box::new(ParseError::new(
                        arg.e.span,
                        format!(
                            "`cel.{}` requires two non-negative int literal arguments",
                            function.name
                        ),
                    ))),
                }
            }
            _ => Err(Box::new(ParseError::new(
                arg.e.span,
                "argument must be a simple name",
            ))),
        }
    }
}

/// What follows a `.` after an operand.
enum DotStep<'a> {
    /// A field selection was built; the rest of the input.
    Done(&'a str, Node),
    /// A member call: the input after `(`, the target and the function name.
    Call(&'a str, Node, Ident),
}

/// What an identifier at the start of a primary turned out to be.
enum IdentStep<'a> {
    /// A name or literal word was built; the rest of the input.
    Done(&'a str, Node),
    /// A global call: the input after `(` and the function name.
    Call(&'a str, Ident),
}

/// The macros, before their arguments are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MacroKind {
    Has,
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
    TransformList,
    TransformMap,
    TransformMapEntry,
    Bind,
    OptMap,
    OptFlatMap,
    SortBy,
    Block,
}

impl MacroKind {
    /// Checks the arguments and builds the macro node. The arity was checked by
    /// [`Parser::macro_call`].
    fn build(
        self,
        target: &mut Option<Node>,
        args: &mut Vec<Node>,
        p: &Parser<'_, '_>,
    ) -> Result<Macro, PErr> {
        let mut args: Vec<Node> = std::mem::take(args);
        let target = target.take();
        match self {
            MacroKind::Has => {
                let arg = pop_front(&mut args)?;
                match &arg.e.kind {
                    ExprKind::Select {
                        optional: false, ..
                    } => Ok(Macro::Has { select: *arg.e }),
                    _ => Err(Box::new(ParseError::new(
                        arg.e.span,
                        "invalid argument to has() macro: expected a field selection such as `a.b`",
                    ))),
                }
            }
            MacroKind::Bind => {
                let var = p.macro_var(&pop_front(&mut args)?)?;
                let init = *pop_front(&mut args)?.e;
                let body = *pop_front(&mut args)?.e;
                Ok(Macro::Bind { var, init, body })
            }
            MacroKind::Block => {
                let bindings = pop_front(&mut args)?;
                let result = *pop_front(&mut args)?.e;
                match bindings.e.kind {
                    ExprKind::List(elems) if elems.iter().all(|e| !e.optional) => {
                        Ok(Macro::Block {
                            bindings: elems.into_iter().map(|e| e.value).collect(),
                            result,
                        })
                    }
                    _ => Err(Box::new(ParseError::new(
                        bindings.e.span,
                        "cel.block requires the first argument to be a list literal without optional elements",
                    ))),
                }
            }
            MacroKind::OptMap | MacroKind::OptFlatMap => {
                let target = *target.ok_or_else(missing)?.e;
                let var = p.macro_var(&pop_front(&mut args)?)?;
                let body = *pop_front(&mut args)?.e;
                Ok(if self == MacroKind::OptMap {
                    Macro::OptMap { target, var, body }
                } else {
                    Macro::OptFlatMap { target, var, body }
                })
            }
            _ => {
                let range = *target.ok_or_else(missing)?.e;
                let two_vars = match self {
                    MacroKind::TransformList
                    | MacroKind::TransformMap
                    | MacroKind::TransformMapEntry => true,
                    MacroKind::All | MacroKind::Exists | MacroKind::ExistsOne => args.len() == 3,
                    _ => false,
                };
                let var = p.macro_var(&pop_front(&mut args)?)?;
                let var2 = if two_vars {
                    let v2 = p.macro_var(&pop_front(&mut args)?)?;
                    if v2.name == var.name {
                        return Err(Box::new(ParseError::new(
                            v2.span,
                            format!("duplicate variable name `{}`", v2.name),
                        )));
                    }
                    Some(v2)
                } else {
                    None
                };
                let filter = if args.len() == 2 {
                    Some(*pop_front(&mut args)?.e)
                } else {
                    None
                };
                let body = *pop_front(&mut args)?.e;
                let comp = Comprehension {
                    range,
                    var,
                    var2,
                    body,
                };
                Ok(match self {
                    MacroKind::All => Macro::All(comp),
                    MacroKind::Exists => Macro::Exists(comp),
                    MacroKind::ExistsOne => Macro::ExistsOne(comp),
                    MacroKind::Map => Macro::Map { comp, filter },
                    MacroKind::Filter => Macro::Filter(comp),
                    MacroKind::TransformList => Macro::TransformList { comp, filter },
                    MacroKind::TransformMap => Macro::TransformMap { comp, filter },
                    MacroKind::TransformMapEntry => Macro::TransformMapEntry { comp, filter },
                    _ => Macro::SortBy(comp),
                })
            }
        }
    }
}

fn missing() -> PErr {
    Box::new(ParseError::new(
        Span::default(),
        "internal error: macro argument missing",
    ))
}

fn pop_front(args: &mut Vec<Node>) -> Result<Node, PErr> {
    if args.is_empty() {
        return Err(missing());
    }
    Ok(args.remove(0))
}

/// Converts a number token; `None` when out of range.
fn number_literal(tok: NumToken<'_>, negative: bool) -> Option<Literal> {
    match tok.kind {
        NumKind::Int => {
            let v = if negative {
                let digits = format!("-{}", tok.digits);
                i64::from_str_radix(&digits, tok.radix).ok()?
            } else {
                i64::from_str_radix(tok.digits, tok.radix).ok()?
            };
            Some(Literal::Int(v))
        }
        NumKind::Uint => u64::from_str_radix(tok.digits, tok.radix)
            .ok()
            .map(Literal::Uint),
        NumKind::Double => {
            let v: f64 = tok.digits.parse().ok()?;
            let v = if negative { -v } else { v };
            v.is_finite().then_some(Literal::Double(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, parse_with};

    /// A compact S-expression of the tree, for asserting structure.
    fn sx(e: &Expr) -> String {
        let list = |items: Vec<String>| items.join(" ");
        match &e.kind {
            ExprKind::Literal(l) => match l {
                Literal::Null => "null".to_owned(),
                Literal::Bool(b) => b.to_string(),
                Literal::Int(i) => i.to_string(),
                Literal::Uint(u) => format!("{u}u"),
                Literal::Double(d) => format!("{d:?}"),
                Literal::String(s) => format!("{s:?}"),
                Literal::Bytes(b) => format!("b{b:?}"),
            },
            ExprKind::Ident { name, root } => format!("{}{name}", if *root { "." } else { "" }),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => format!(
                "({} {} {})",
                if *optional { ".?" } else { "." },
                sx(operand),
                field.name
            ),
            ExprKind::Index {
                operand,
                index,
                optional,
            } => format!(
                "({} {} {})",
                if *optional { "[?]" } else { "[]" },
                sx(operand),
                sx(index)
            ),
            ExprKind::Call {
                target,
                function,
                args,
            } => {
                let mut items = vec![function.name.clone()];
                if let Some(t) = target {
                    items.push(format!("on:{}", sx(t)));
                }
                items.extend(args.iter().map(sx));
                format!("(call {})", list(items))
            }
            ExprKind::Unary { op, operand } => format!(
                "({} {})",
                if *op == UnaryOp::Not { "!" } else { "-" },
                sx(operand)
            ),
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", op.as_str(), sx(lhs), sx(rhs))
            }
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => format!("(?: {} {} {})", sx(cond), sx(then), sx(otherwise)),
            ExprKind::List(elems) => format!(
                "[{}]",
                list(
                    elems
                        .iter()
                        .map(|e| format!("{}{}", if e.optional { "?" } else { "" }, sx(&e.value)))
                        .collect()
                )
            ),
            ExprKind::Map(entries) => format!(
                "{{{}}}",
                list(
                    entries
                        .iter()
                        .map(|e| format!(
                            "{}{}:{}",
                            if e.optional { "?" } else { "" },
                            sx(&e.key),
                            sx(&e.value)
                        ))
                        .collect()
                )
            ),
            ExprKind::Struct { type_name, fields } => format!(
                "{type_name}{{{}}}",
                list(
                    fields
                        .iter()
                        .map(|f| format!(
                            "{}{}:{}",
                            if f.optional { "?" } else { "" },
                            f.name.name,
                            sx(&f.value)
                        ))
                        .collect()
                )
            ),
            ExprKind::Macro(m) => {
                let comp = |c: &Comprehension, filter: Option<&Expr>| {
                    let mut items = vec![sx(&c.range), c.var.name.clone()];
                    items.extend(c.var2.iter().map(|v| v.name.clone()));
                    items.extend(filter.map(sx));
                    items.push(sx(&c.body));
                    list(items)
                };
                let inner = match &**m {
                    Macro::Has { select } => sx(select),
                    Macro::All(c)
                    | Macro::Exists(c)
                    | Macro::ExistsOne(c)
                    | Macro::Filter(c)
                    | Macro::SortBy(c) => comp(c, None),
                    Macro::Map { comp: c, filter }
                    | Macro::TransformList { comp: c, filter }
                    | Macro::TransformMap { comp: c, filter }
                    | Macro::TransformMapEntry { comp: c, filter } => comp(c, filter.as_ref()),
                    Macro::Bind { var, init, body } => {
                        format!("{} {} {}", var.name, sx(init), sx(body))
                    }
                    Macro::OptMap { target, var, body }
                    | Macro::OptFlatMap { target, var, body } => {
                        format!("{} {} {}", sx(target), var.name, sx(body))
                    }
                    Macro::Block { bindings, result } => format!(
                        "[{}] {}",
                        list(bindings.iter().map(sx).collect()),
                        sx(result)
                    ),
                };
                format!("(macro:{} {inner})", m.name())
            }
        }
    }

    fn p(src: &str) -> String {
        match parse(src) {
            Ok(e) => sx(&e),
            Err(err) => panic!("{src}: {err} at {:?}", err.span),
        }
    }

    /// The error message and span range of a failing parse.
    fn err(src: &str) -> (String, std::ops::Range<usize>) {
        let e = parse(src).expect_err(src);
        (e.message, e.span.range())
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(p("a || b && c"), "(|| a (&& b c))");
        assert_eq!(p("a && b || c"), "(|| (&& a b) c)");
        assert_eq!(p("a + b * c - d"), "(- (+ a (* b c)) d)");
        assert_eq!(p("a - b - c"), "(- (- a b) c)");
        assert_eq!(p("a / b % c * d"), "(* (% (/ a b) c) d)");
        assert_eq!(p("a < b == c in d"), "(in (== (< a b) c) d)");
        assert_eq!(p("a + 1 in b && !c"), "(&& (in (+ a 1) b) (! c))");
        assert_eq!(p("a ? b : c ? d : e"), "(?: a b (?: c d e))");
        // The middle operand is a ConditionalOr: a conditional there needs parentheses.
        assert_eq!(err("a ? b ? c : d : e").0, "expected `:`, found `?`");
        assert_eq!(p("a ? (b ? c : d) : e"), "(?: a (?: b c d) e)");
        assert_eq!(p("a || b ? c && d : e"), "(?: (|| a b) (&& c d) e)");
        assert_eq!(p("!a == b"), "(== (! a) b)");
        assert_eq!(p("-a.b[0]"), "(- ([] (. a b) 0))");
        assert_eq!(p("(a + b) * c"), "(* (+ a b) c)");
        assert_eq!(p("!!a"), "(! (! a))");
        assert_eq!(p("- - a"), "(- (- a))");
    }

    #[test]
    fn negative_literals_are_folded() {
        assert_eq!(p("-1"), "-1");
        assert_eq!(p("- 1"), "-1");
        assert_eq!(p("--1"), "(- -1)");
        assert_eq!(p("-(1)"), "(- 1)");
        assert_eq!(p("-1u"), "(- 1u)");
        assert_eq!(p("-1.5"), "-1.5");
        assert_eq!(p("-.5"), "-0.5");
        assert_eq!(p("!-1"), "(! -1)");
        assert_eq!(p("-1.abs()"), "(call abs on:-1)");
        assert_eq!(p("-x.abs()"), "(- (call abs on:x))");
        assert_eq!(p("a - -1"), "(- a -1)");
        assert_eq!(p("a-1"), "(- a 1)");
        assert_eq!(p("-9223372036854775808"), "-9223372036854775808");
        assert_eq!(
            err("-(9223372036854775808)").0,
            "integer literal `9223372036854775808` is out of range"
        );
    }

    #[test]
    fn number_literals() {
        assert_eq!(p("0"), "0");
        assert_eq!(p("0x1F"), "31");
        assert_eq!(p("0x1fU"), "31u");
        assert_eq!(p("18446744073709551615u"), "18446744073709551615u");
        assert_eq!(p("1e3"), "1000.0");
        assert_eq!(p("1.5E-3"), "0.0015");
        assert_eq!(p(".5e1"), "5.0");
        assert_eq!(p("1.e3"), "(. 1 e3)");
        assert_eq!(p("1e-400"), "0.0");
        assert_eq!(err("18446744073709551616u").1, 0..21);
        assert_eq!(err("0x8000000000000000").1, 0..18);
        assert_eq!(p("-0x8000000000000000"), "-9223372036854775808");
        assert_eq!(err("1e309").0, "double literal `1e309` is out of range");
        assert_eq!(
            err("1.").0,
            "expected a field name, found the end of the expression"
        );
        assert_eq!(
            err("1.5u").0,
            "expected an operator or the end of the expression, found `u`"
        );
    }

    #[test]
    fn string_and_bytes_literals() {
        assert_eq!(p(r#"'a' + "b""#), r#"(+ "a" "b")"#);
        assert_eq!(p(r"'\x41\101\u0041\U00000041'"), r#""AAAA""#);
        assert_eq!(p(r"b'\xff\377ÿ'"), "b[255, 255, 195, 191]");
        assert_eq!(p(r"R'\d+'"), r#""\\d+""#);
        assert_eq!(p(r"bR'\d'"), "b[92, 100]");
        assert_eq!(p("'''multi\nline'''"), r#""multi\nline""#);
        let (message, span) = err(r"'ab\qc'");
        assert_eq!(message, r"invalid escape sequence `\q`");
        assert_eq!(span, 3..5);
        assert_eq!(err("'abc").1, 0..4);
        assert_eq!(err("x + 'a\nb'").1, 4..6);
    }

    #[test]
    fn identifiers_and_reserved_words() {
        assert_eq!(p(".a.b"), "(. .a b)");
        assert_eq!(p(". a . b"), "(. .a b)");
        assert_eq!(p("a.as.if.while()"), "(call while on:(. (. a as) if))");
        assert_eq!(p("a.`b-c`.`in`"), "(. (. a b-c) in)");
        assert_eq!(p("true && false || null"), "(|| (&& true false) null)");
        assert_eq!(p("_a1"), "_a1");
        assert_eq!(p("index"), "index");
        let (message, span) = err("1 + while");
        assert_eq!(
            message,
            "reserved identifier `while` cannot be used as a name"
        );
        assert_eq!(span, 4..9);
        assert!(err("in").0.contains("reserved identifier `in`"));
        assert!(err(".true").0.contains("reserved identifier `true`"));
        assert_eq!(err("a.true").0, "expected a field name, found `true`");
        assert_eq!(
            err("a.`b`()").0.as_str(),
            "expected an operator or the end of the expression, found `(`"
        );
        assert!(err("`a`").0.starts_with("expected an expression"));
    }

    #[test]
    fn calls() {
        assert_eq!(p("f()"), "(call f)");
        assert_eq!(p("f(a, b)"), "(call f a b)");
        assert_eq!(p(".f(a)"), "(call .f a)");
        assert_eq!(p("a.f(b).g()"), "(call g on:(call f on:a b))");
        assert_eq!(p("base64.encode(x)"), "(call encode on:base64 x)");
        assert_eq!(p("x.bind(a, b, c)"), "(call bind on:x a b c)");
        assert_eq!(err("f(a,)").0, "expected an expression, found `)`");
        assert_eq!(err("f(a b)").0, "expected `,` or `)`, found `b`");
        assert_eq!(err("a.?f()").1, 4..5);
    }

    #[test]
    fn aggregate_literals() {
        assert_eq!(p("[]"), "[]");
        assert_eq!(p("[1, ?a, 3,]"), "[1 ?a 3]");
        assert_eq!(p("{}"), "{}");
        assert_eq!(p("{'a': 1, ?b: c,}"), r#"{"a":1 ?b:c}"#);
        assert_eq!(p("{a ? b : c: d}"), "{(?: a b c):d}");
        assert_eq!(p("A{}"), "A{}");
        assert_eq!(p("a.b.C{x: 1, ?`y-z`: 2,}"), "a.b.C{x:1 ?y-z:2}");
        assert_eq!(p(".a.B{}.c"), "(. .a.B{} c)");
        assert_eq!(p("M{as: 1}"), "M{as:1}");
        assert_eq!(err("[,]").0, "expected an expression, found `,`");
        assert_eq!(err("{1}").0, "expected `:`, found `}`");
        assert_eq!(err("[1 2]").0, "expected `,` or `]`, found `2`");
        assert!(err("a.?b{}").0.starts_with("message construction"));
        assert!(err("a[0]{}").0.starts_with("message construction"));
        assert!(err("a.`b`{}").0.starts_with("message construction"));
        assert!(err("f(){}").0.starts_with("message construction"));
    }

    #[test]
    fn optional_syntax() {
        assert_eq!(p("a.?b"), "(.? a b)");
        assert_eq!(p("a[?0]"), "([?] a 0)");
        assert_eq!(p("a[ ? 0 ]"), "([?] a 0)");
        assert_eq!(p("a ? b : c"), "(?: a b c)");
        assert_eq!(p("a ?.b : c"), "(?: a .b c)");
    }

    #[test]
    fn macros() {
        assert_eq!(p("has(a.b)"), "(macro:has (. a b))");
        assert_eq!(p("l.all(x, x > 0)"), "(macro:all l x (> x 0))");
        assert_eq!(p("m.all(k, v, k < v)"), "(macro:all m k v (< k v))");
        assert_eq!(p("l.exists(x, x)"), "(macro:exists l x x)");
        assert_eq!(p("l.exists_one(x, x)"), "(macro:exists_one l x x)");
        assert_eq!(p("l.existsOne(i, x, x)"), "(macro:exists_one l i x x)");
        assert_eq!(p("l.map(x, x * 2)"), "(macro:map l x (* x 2))");
        assert_eq!(p("l.map(x, x > 0, x)"), "(macro:map l x (> x 0) x)");
        assert_eq!(p("l.filter(x, x)"), "(macro:filter l x x)");
        assert_eq!(
            p("l.transformList(i, v, v)"),
            "(macro:transformList l i v v)"
        );
        assert_eq!(
            p("m.transformMap(k, v, k != v, v)"),
            "(macro:transformMap m k v (!= k v) v)"
        );
        assert_eq!(
            p("m.transformMapEntry(k, v, {v: k})"),
            "(macro:transformMapEntry m k v {v:k})"
        );
        assert_eq!(p("cel.bind(x, 1, x)"), "(macro:cel.bind x 1 x)");
        assert_eq!(p("o.optMap(v, v)"), "(macro:optMap o v v)");
        assert_eq!(p("o.optFlatMap(v, v)"), "(macro:optFlatMap o v v)");
        assert_eq!(p("l.sortBy(e, -e)"), "(macro:sortBy l e (- e))");
        assert_eq!(
            p("cel.block([1, cel.index(0)], cel.index(1))"),
            "(macro:cel.block [1 (call index on:cel 0)] (call index on:cel 1))"
        );
        assert_eq!(
            p("l.all(cel.iterVar(1, 2), true)"),
            "(macro:all l @it:1:2 true)"
        );
        // Not macros: wrong arity, wrong receiver, or global form.
        assert_eq!(p("has(a.b, c)"), "(call has (. a b) c)");
        assert_eq!(p("l.all(x)"), "(call all on:l x)");
        assert_eq!(p("all(l, x, y)"), "(call all l x y)");
        assert_eq!(p("x.bind(a, b, c)"), "(call bind on:x a b c)");
        assert_eq!(p(".cel.bind(a, b, c)"), "(call bind on:.cel a b c)");
        assert_eq!(p("l.filter(a, b, c)"), "(call filter on:l a b c)");
    }

    #[test]
    fn macro_argument_errors() {
        assert_eq!(
            err("has(a)"),
            (
                "invalid argument to has() macro: expected a field selection such as `a.b`"
                    .to_owned(),
                4..5
            )
        );
        assert!(err("has(a.?b)").0.starts_with("invalid argument to has()"));
        assert_eq!(
            err("l.all(x.y, true)"),
            ("argument must be a simple name".to_owned(), 6..9)
        );
        assert_eq!(err("l.all(.x, true)").1, 6..8);
        assert_eq!(err("cel.bind(1, 2, 3)").1, 9..10);
        assert_eq!(err("l.all(k, k, true)").0, "duplicate variable name `k`");
        assert!(err("cel.block(x, y)").0.starts_with("cel.block requires"));
        assert!(
            err("cel.block([?x], y)")
                .0
                .starts_with("cel.block requires")
        );
        assert!(
            err("l.all(cel.iterVar(x, 1), true)")
                .0
                .contains("non-negative int literal")
        );
    }

    #[test]
    fn macros_can_be_disabled() {
        let opts = ParseOptions {
            macros: false,
            ..ParseOptions::default()
        };
        let e = parse_with("has(a) && l.all(x.y, 1)", &opts).unwrap();
        assert_eq!(sx(&e), "(&& (call has a) (call all on:l (. x y) 1))");
    }

    #[test]
    fn spans() {
        let e = parse("(a + b) * c.d").unwrap();
        assert_eq!(e.span.range(), 0..13);
        let ExprKind::Binary { lhs, rhs, .. } = &e.kind else {
            panic!()
        };
        assert_eq!(lhs.span.range(), 1..6);
        assert_eq!(rhs.span.range(), 10..13);
        let ExprKind::Select { field, .. } = &rhs.kind else {
            panic!()
        };
        assert_eq!(field.span.range(), 12..13);

        let e = parse("  l.map(x, x)  ").unwrap();
        assert_eq!(e.span.range(), 2..13);
        let ExprKind::Macro(m) = &e.kind else {
            panic!()
        };
        let Macro::Map { comp, .. } = &**m else {
            panic!()
        };
        assert_eq!(comp.var.span.range(), 8..9);
        assert_eq!(comp.range.span.range(), 2..3);

        let e = parse("{?'k': v}").unwrap();
        let ExprKind::Map(entries) = &e.kind else {
            panic!()
        };
        assert_eq!(entries[0].span.range(), 1..8);

        let e = parse("!-1").unwrap();
        let ExprKind::Unary { operand, .. } = &e.kind else {
            panic!()
        };
        assert_eq!(operand.span.range(), 1..3);
        assert_eq!(parse(".f(1)").unwrap().span.range(), 0..5);
    }

    #[test]
    fn error_messages_say_what_was_expected() {
        let e = parse("a + ").unwrap_err();
        assert_eq!(e.expected(), Some("an expression"));
        assert_eq!(e.span.range(), 4..4);
        let e = parse("a ? b").unwrap_err();
        assert_eq!(e.expected(), Some("`:`"));
        assert_eq!(
            err("1 = 2").0,
            "expected an operator or the end of the expression, found `=` (equality is `==`)"
        );
        assert_eq!(
            err("a é").0,
            "expected an operator or the end of the expression, found `é`"
        );
        assert_eq!(err("a\tb").1, 2..3);
        assert_eq!(
            err("").0,
            "expected an expression, found the end of the expression"
        );
    }

    #[test]
    fn comments_and_whitespace() {
        assert_eq!(p("a // c\n+ // d\r\n b // e"), "(+ a b)");
        assert_eq!(p("\t\n\r\u{c} a"), "a");
        assert!(parse("\u{b}a").is_err());
    }

    #[test]
    fn length_limit() {
        let opts = ParseOptions {
            max_len: 5,
            ..ParseOptions::default()
        };
        assert!(parse_with("1 + 2", &opts).is_ok());
        let e = parse_with("1 + 23", &opts).unwrap_err();
        assert_eq!(e.message, "expression is too long: 6 bytes, the limit is 5");
    }
}
