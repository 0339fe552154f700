//! The CEL abstract syntax tree.
//!
//! Every node carries a [`Span`]: byte offsets into the expression source it was parsed from.
//! Macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`, the two-variable forms,
//! `cel.bind`, …) are kept as [`ExprKind::Macro`] nodes rather than expanded into generic
//! comprehensions, so the printer can give back the text the author wrote and diagnostics can
//! speak of the macro by name. Consumers (type checker, interpreter, compiler) give each macro its
//! semantics.
//!
//! Equality of two trees ignores nothing: spans are part of `PartialEq`.

use std::fmt;

/// A half-open byte range `start..end` into the source text of one expression.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: u32,
    /// Byte offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    #[must_use]
    pub const fn new(start: u32, end: u32) -> Self {
        Self { start, end }
    }

    /// The smallest span covering both.
    #[must_use]
    pub fn cover(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Length in bytes.
    #[must_use]
    pub const fn len(self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the span is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.end <= self.start
    }

    /// The span as a `usize` range, for slicing the source.
    #[must_use]
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }

    /// This span moved right by `offset` bytes (e.g. from expression-relative to
    /// template-relative offsets).
    #[must_use]
    pub const fn shift(self, offset: u32) -> Span {
        Span {
            start: self.start + offset,
            end: self.end + offset,
        }
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// An expression node: what it is, and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// The node's kind and children.
    pub kind: ExprKind,
    /// Where the node's text is, in the expression source.
    pub span: Span,
}

/// An identifier with its own span (field names, function names, macro variables).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident {
    /// The identifier text (without backticks for quoted field names).
    pub name: String,
    /// Where it is in the source.
    pub span: Span,
}

/// The kinds of expression nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A literal value: `1`, `1u`, `1.5`, `'s'`, `b'x'`, `true`, `null`.
    Literal(Literal),
    /// A plain name such as `req` or `x`. `root` is true for a leading-dot name (`.req`),
    /// which is resolved from the root scope, ignoring the container.
    Ident {
        /// The name.
        name: String,
        /// Leading dot: resolve in the root scope only.
        root: bool,
    },
    /// Field selection `operand.field`, or `operand.?field` when `optional` (optionals extension).
    Select {
        /// The expression selected from.
        operand: Box<Expr>,
        /// The field name (possibly a reserved word or a backtick-quoted name).
        field: Ident,
        /// `.?field`: optional selection.
        optional: bool,
    },
    /// Indexing `operand[index]`, or `operand[?index]` when `optional`.
    Index {
        /// The list or map indexed.
        operand: Box<Expr>,
        /// The index or key.
        index: Box<Expr>,
        /// `[?index]`: optional indexing.
        optional: bool,
    },
    /// A function call: global `f(args)` (`target == None`) or member `target.f(args)`.
    /// Qualified global names such as `base64.encode(x)` or `math.greatest(…)` are parsed as
    /// member calls on an identifier target; resolving them against function names is the
    /// consumer's job (as in cel-go).
    Call {
        /// The receiver of a member call.
        target: Option<Box<Expr>>,
        /// The function name.
        function: Ident,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// A unary operator application.
    Unary {
        /// The operator.
        op: UnaryOp,
        /// Its operand.
        operand: Box<Expr>,
    },
    /// A binary operator application (including `&&`, `||` and `in`).
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `cond ? then : otherwise`.
    Ternary {
        /// The condition.
        cond: Box<Expr>,
        /// Value when the condition is true.
        then: Box<Expr>,
        /// Value when the condition is false.
        otherwise: Box<Expr>,
    },
    /// A list literal `[a, ?b, c]`.
    List(Vec<ListElement>),
    /// A map literal `{k: v, ?k2: v2}`.
    Map(Vec<MapEntry>),
    /// Message construction `a.b.Msg{field: value, ?opt: value}`. `type_name` is the dotted
    /// name as written, with a leading `.` kept when present.
    Struct {
        /// The message type name as written.
        type_name: String,
        /// Field initialisers, in source order.
        fields: Vec<StructField>,
    },
    /// A macro call, kept as written (see the module docs).
    Macro(Box<Macro>),
}

/// One element of a list literal.
#[derive(Clone, Debug, PartialEq)]
pub struct ListElement {
    /// The element expression.
    pub value: Expr,
    /// `?value`: include only when the optional value is present.
    pub optional: bool,
}

/// One entry of a map literal.
#[derive(Clone, Debug, PartialEq)]
pub struct MapEntry {
    /// The key expression.
    pub key: Expr,
    /// The value expression.
    pub value: Expr,
    /// `?key: value`: include only when the optional value is present.
    pub optional: bool,
    /// The span of the whole entry.
    pub span: Span,
}

/// One field initialiser of a message construction.
#[derive(Clone, Debug, PartialEq)]
pub struct StructField {
    /// The field name.
    pub name: Ident,
    /// The value.
    pub value: Expr,
    /// `?name: value`: set only when the optional value is present.
    pub optional: bool,
    /// The span of the whole initialiser.
    pub span: Span,
}

/// A literal value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A signed integer. A unary minus directly applied to an integer literal is folded into
    /// it, which is how `-9223372036854775808` is representable.
    Int(i64),
    /// An unsigned integer (`1u`, `0x1Fu`).
    Uint(u64),
    /// A double (`1.5`, `1e3`, `.5`). A unary minus on a double literal is folded too.
    Double(f64),
    /// A string, with escapes already decoded.
    String(String),
    /// Bytes, with escapes already decoded.
    Bytes(Vec<u8>),
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `!x`
    Not,
    /// `-x`
    Neg,
}

/// Binary operators, including the logical ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinaryOp {
    /// The operator as written in CEL source.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }

    /// Binding strength: higher binds tighter. `||` = 1, `&&` = 2, relations and `in` = 3,
    /// `+ -` = 4, `* / %` = 5.
    #[must_use]
    pub const fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::In => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 5,
        }
    }
}

/// A macro call, kept as written. `span` of the enclosing [`Expr`] covers the whole call.
#[derive(Clone, Debug, PartialEq)]
pub enum Macro {
    /// `has(operand.field)`: presence test. `select` is the `Select` expression inside.
    Has {
        /// The selection being tested (always an `ExprKind::Select`).
        select: Expr,
    },
    /// `range.all(var, pred)` / `range.all(k, v, pred)` (two-variable form when `var2` is set).
    All(Comprehension),
    /// `range.exists(var, pred)` / two-variable form.
    Exists(Comprehension),
    /// `range.exists_one(var, pred)` / two-variable form (also spelled `existsOne`).
    ExistsOne(Comprehension),
    /// `range.map(var, transform)` or `range.map(var, filter, transform)`.
    Map {
        /// Range and variable; `body` is the transform.
        comp: Comprehension,
        /// The filter of the three-argument form.
        filter: Option<Expr>,
    },
    /// `range.filter(var, pred)`.
    Filter(Comprehension),
    /// `range.transformList(i, v, [filter,] transform)` (two-variable, macros2).
    TransformList {
        /// Range, both variables, and the transform as `body`.
        comp: Comprehension,
        /// Optional filter.
        filter: Option<Expr>,
    },
    /// `range.transformMap(k, v, [filter,] transform)` (two-variable, macros2).
    TransformMap {
        /// Range, both variables, and the transform as `body`.
        comp: Comprehension,
        /// Optional filter.
        filter: Option<Expr>,
    },
    /// `range.transformMapEntry(k, v, [filter,] entryExpr)` (two-variable, macros2).
    TransformMapEntry {
        /// Range, both variables, and the entry-producing expression as `body`.
        comp: Comprehension,
        /// Optional filter.
        filter: Option<Expr>,
    },
    /// `cel.bind(var, init, body)`.
    Bind {
        /// The bound name.
        var: Ident,
        /// Its value.
        init: Expr,
        /// The expression evaluated with the binding.
        body: Expr,
    },
    /// `opt.optMap(var, expr)` (optionals extension).
    OptMap {
        /// The optional value.
        target: Expr,
        /// The variable bound to the inner value.
        var: Ident,
        /// The mapped expression.
        body: Expr,
    },
    /// `opt.optFlatMap(var, expr)` (optionals extension).
    OptFlatMap {
        /// The optional value.
        target: Expr,
        /// The variable bound to the inner value.
        var: Ident,
        /// The expression producing an optional.
        body: Expr,
    },
    /// `list.sortBy(var, keyExpr)` (lists extension): sort by the key computed per element.
    SortBy(Comprehension),
    /// `cel.block([e0, e1, …], result)`: common-subexpression form; `cel.index(i)` inside
    /// refers to the i-th binding (block extension).
    Block {
        /// The bindings, in order.
        bindings: Vec<Expr>,
        /// The result expression.
        result: Expr,
    },
}

impl Macro {
    /// The name of the macro as written (`has`, `all`, `exists`, `exists_one`, `map`, …).
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Macro::Has { .. } => "has",
            Macro::All(_) => "all",
            Macro::Exists(_) => "exists",
            Macro::ExistsOne(_) => "exists_one",
            Macro::Map { .. } => "map",
            Macro::Filter(_) => "filter",
            Macro::TransformList { .. } => "transformList",
            Macro::TransformMap { .. } => "transformMap",
            Macro::TransformMapEntry { .. } => "transformMapEntry",
            Macro::Bind { .. } => "cel.bind",
            Macro::OptMap { .. } => "optMap",
            Macro::OptFlatMap { .. } => "optFlatMap",
            Macro::SortBy(_) => "sortBy",
            Macro::Block { .. } => "cel.block",
        }
    }
}

/// The common parts of an iterating macro.
#[derive(Clone, Debug, PartialEq)]
pub struct Comprehension {
    /// The list or map iterated over (the receiver of the macro call).
    pub range: Expr,
    /// The first variable: the element of a list, or the key of a map. In the two-variable
    /// forms, the index of a list or the key of a map.
    pub var: Ident,
    /// The second variable of the two-variable forms: the element of a list or the value of a
    /// map.
    pub var2: Option<Ident>,
    /// The predicate or transform.
    pub body: Expr,
}

impl Expr {
    /// A node of `kind` at `span`.
    #[must_use]
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Self { kind, span }
    }
}
