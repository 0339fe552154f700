//! The tree walk: expressions, name resolution, logical operators and macros.

use std::sync::Arc;

use wicket_grammar::ast::{
    BinaryOp, Comprehension, Expr, ExprKind, Ident, ListElement, Literal, Macro, MapEntry, UnaryOp,
};

use super::functions;
use super::{Activation, Limits};
use crate::error::{EvalError, UnknownSet};
use crate::value::{CelType, Key, MapValue, Value};

/// One `cel.block` in scope: its binding expressions and their lazily computed values.
struct Block<'e> {
    bindings: &'e [Expr],
    slots: Vec<Slot>,
}

enum Slot {
    Pending,
    InProgress,
    Done(Result<Value, EvalError>),
}

/// The state of one evaluation.
pub(super) struct Evaluator<'e> {
    activation: &'e dyn Activation,
    /// Container prefixes, most qualified first, each ending in `.`, then the empty prefix.
    prefixes: Vec<String>,
    pub(super) limits: &'e Limits,
    /// Macro and `cel.bind` variables, innermost last.
    locals: Vec<(String, Value)>,
    blocks: Vec<Block<'e>>,
    depth: usize,
    iterations: u64,
    /// Expression nodes evaluated so far.
    steps: u64,
    /// Approximate bytes of strings, bytes, lists and maps built so far.
    allocated: usize,
}

pub(crate) type EvalResult = Result<Value, EvalError>;

pub(crate) fn no_overload(function: &str) -> EvalError {
    EvalError::NoMatchingOverload {
        function: function.to_owned(),
    }
}

impl<'e> Evaluator<'e> {
    pub(super) fn new(activation: &'e dyn Activation, container: &str, limits: &'e Limits) -> Self {
        let mut prefixes = Vec::new();
        if !container.is_empty() {
            let mut current = container;
            loop {
                prefixes.push(format!("{current}."));
                match current.rfind('.') {
                    Some(pos) => current = &current[..pos],
                    None => break,
                }
            }
        }
        prefixes.push(String::new());
        Self {
            activation,
            prefixes,
            limits,
            locals: Vec::new(),
            blocks: Vec::new(),
            depth: 0,
            iterations: 0,
            steps: 0,
            allocated: 0,
        }
    }

    pub(super) fn eval(&mut self, expr: &'e Expr) -> EvalResult {
        if self.depth >= self.limits.max_depth {
            return Err(EvalError::LimitExceeded(format!(
                "expression nesting exceeds the limit of {}",
                self.limits.max_depth
            )));
        }
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(EvalError::LimitExceeded(format!(
                "evaluation exceeds the limit of {} steps",
                self.limits.max_steps
            )));
        }
        self.depth += 1;
        let result = self.eval_kind(expr);
        self.depth -= 1;
        result
    }

    fn eval_kind(&mut self, expr: &'e Expr) -> EvalResult {
        match &expr.kind {
            ExprKind::Literal(lit) => Ok(literal(lit)),
            ExprKind::Ident { name, root } => self.resolve_chain(&[name.as_str()], *root),
            ExprKind::Select {
                operand,
                field,
                optional,
            } => {
                if !optional {
                    if let Some((segments, root)) = ident_chain(expr) {
                        return self.resolve_chain(&segments, root);
                    }
                }
                let value = self.eval(operand)?;
                select(&value, &field.name, *optional)
            }
            ExprKind::Index {
                operand,
                index,
                optional,
            } => {
                let value = self.eval(operand)?;
                let index = self.eval(index)?;
                index_value(&value, &index, *optional)
            }
            ExprKind::Call {
                target,
                function,
                args,
            } => self.eval_call(target.as_deref(), function, args),
            ExprKind::Unary { op, operand } => {
                let value = self.eval(operand)?;
                match op {
                    UnaryOp::Not => match value {
                        Value::Bool(b) => Ok(Value::Bool(!b)),
                        _ => Err(no_overload("!_")),
                    },
                    UnaryOp::Neg => functions::negate(&value),
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.eval_binary(*op, lhs, rhs),
            ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => match self.eval(cond)? {
                Value::Bool(true) => self.eval(then),
                Value::Bool(false) => self.eval(otherwise),
                _ => Err(no_overload("_?_:_")),
            },
            ExprKind::List(elements) => self.eval_list(elements),
            ExprKind::Map(entries) => self.eval_map(entries),
            ExprKind::Struct { type_name, .. } => Err(EvalError::Unsupported(format!(
                "message construction `{type_name}`"
            ))),
            ExprKind::Macro(mac) => self.eval_macro(mac),
        }
    }

    // ---- names ---------------------------------------------------------------------------

    fn local(&self, name: &str) -> Option<&Value> {
        self.locals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Resolves `segments[0].segments[1]…` as a (possibly qualified) name followed by field
    /// selections, or reports an undeclared reference.
    fn resolve_chain(&mut self, segments: &[&str], root: bool) -> EvalResult {
        match self.try_resolve_chain(segments, root) {
            Some(result) => result,
            None => Err(EvalError::UndeclaredReference(segments.join("."))),
        }
    }

    /// Like [`Self::resolve_chain`], but `None` when no prefix of the chain names a variable
    /// or type.
    fn try_resolve_chain(&mut self, segments: &[&str], root: bool) -> Option<EvalResult> {
        let (first, rest) = segments.split_first()?;
        if !root {
            if let Some(value) = self.local(first) {
                let value = value.clone();
                return Some(select_path(value, rest));
            }
        }
        let prefixes: &[String] = if root {
            &self.prefixes[self.prefixes.len() - 1..]
        } else {
            &self.prefixes
        };
        for n in (1..=segments.len()).rev() {
            let name = segments[..n].join(".");
            for prefix in prefixes {
                let qualified = format!("{prefix}{name}");
                if self.activation.is_unknown(&qualified) {
                    let attribute = std::iter::once(qualified.as_str())
                        .chain(segments[n..].iter().copied())
                        .collect::<Vec<_>>()
                        .join(".");
                    return Some(Err(EvalError::Unknown(UnknownSet::of(&attribute))));
                }
                if let Some(value) = self.activation.resolve(&qualified) {
                    return Some(select_path(value, &segments[n..]));
                }
            }
        }
        for n in (1..=segments.len()).rev() {
            let name = segments[..n].join(".");
            for prefix in prefixes {
                let qualified = format!("{prefix}{name}");
                if let Some(ty) = CelType::from_name(&qualified) {
                    return Some(select_path(Value::Type(ty), &segments[n..]));
                }
            }
        }
        None
    }

    // ---- calls ---------------------------------------------------------------------------

    fn eval_call(
        &mut self,
        target: Option<&'e Expr>,
        function: &'e Ident,
        args: &'e [Expr],
    ) -> EvalResult {
        let name = function.name.as_str();
        let target_value = match target {
            None => None,
            Some(target) => match ident_chain(target) {
                Some((segments, root)) => match self.try_resolve_chain(&segments, root) {
                    Some(result) => Some(result?),
                    None => {
                        // Not a variable: a qualified global function such as `base64.encode`.
                        let qualified = format!("{}.{name}", segments.join("."));
                        return self.eval_global_qualified(&qualified, args);
                    }
                },
                None => Some(self.eval(target)?),
            },
        };
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg)?);
        }
        self.dispatch(name, target_value.as_ref(), &values)
    }

    fn eval_global_qualified(&mut self, qualified: &str, args: &'e [Expr]) -> EvalResult {
        match qualified {
            "cel.index" => return self.block_index(args),
            "cel.iterVar" | "cel.accuVar" => {
                let var = block_var_name(qualified, args)?;
                return match self.local(&var) {
                    Some(value) => Ok(value.clone()),
                    None => Err(EvalError::UndeclaredReference(var)),
                };
            }
            _ => {}
        }
        if !super::ext::is_function(qualified) {
            return Err(EvalError::UndeclaredReference(qualified.to_owned()));
        }
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg)?);
        }
        self.dispatch(qualified, None, &values)
    }

    /// Calls a function by name: the core library first, then the extensions.
    fn dispatch(&mut self, name: &str, target: Option<&Value>, args: &[Value]) -> EvalResult {
        let core = functions::call(name, target, args);
        let result = match core {
            Some(Err(EvalError::NoMatchingOverload { function })) => {
                match super::ext::call(name, target, args) {
                    Some(result) => result,
                    None => Err(EvalError::NoMatchingOverload { function }),
                }
            }
            Some(result) => result,
            None => match super::ext::call(name, target, args) {
                Some(result) => result,
                None => Err(EvalError::UndeclaredReference(name.to_owned())),
            },
        }?;
        self.account(&result)?;
        Ok(result)
    }

    /// Accounts for a value built during evaluation (see [`account`]).
    pub(super) fn account(&mut self, value: &Value) -> Result<(), EvalError> {
        account(self.limits, &mut self.allocated, value)
    }

    // ---- cel.block -----------------------------------------------------------------------

    fn block_index(&mut self, args: &'e [Expr]) -> EvalResult {
        let index = match args {
            [
                Expr {
                    kind: ExprKind::Literal(Literal::Int(i)),
                    ..
                },
            ] => usize::try_from(*i).ok(),
            _ => None,
        }
        .ok_or_else(|| no_overload("cel.index"))?;
        let Some(block_pos) = self.blocks.len().checked_sub(1) else {
            return Err(EvalError::InvalidArgument(
                "`cel.index` used outside `cel.block`".to_owned(),
            ));
        };
        let expr = {
            let block = &mut self.blocks[block_pos];
            let Some(slot) = block.slots.get_mut(index) else {
                return Err(EvalError::InvalidArgument(format!(
                    "`cel.index({index})` is out of range"
                )));
            };
            match slot {
                Slot::Done(result) => return result.clone(),
                Slot::InProgress => {
                    return Err(EvalError::InvalidArgument(format!(
                        "`cel.index({index})` refers to itself"
                    )));
                }
                Slot::Pending => *slot = Slot::InProgress,
            }
            &block.bindings[index]
        };
        // As in cel-go, a binding is evaluated on first use, in the scope of that use (optimiser
        // generated bindings may name the comprehension variables `@it:i:j` in scope there), and
        // the value is kept. Its `cel.index` references are to its own block.
        let hidden_blocks = self.blocks.split_off(block_pos + 1);
        let result = self.eval(expr);
        self.blocks.extend(hidden_blocks);
        if let Some(slot) = self.blocks[block_pos].slots.get_mut(index) {
            *slot = Slot::Done(result.clone());
        }
        result
    }

    // ---- operators -----------------------------------------------------------------------

    fn eval_binary(&mut self, op: BinaryOp, lhs: &'e Expr, rhs: &'e Expr) -> EvalResult {
        match op {
            BinaryOp::And => self.eval_logic(lhs, rhs, false),
            BinaryOp::Or => self.eval_logic(lhs, rhs, true),
            _ => {
                let a = self.eval(lhs)?;
                let b = self.eval(rhs)?;
                let result = functions::binary(op, &a, &b)?;
                self.account(&result)?;
                Ok(result)
            }
        }
    }

    /// `&&` (`absorbing == false`) and `||` (`absorbing == true`): the absorbing value on either
    /// side wins over an error on the other side.
    fn eval_logic(&mut self, lhs: &'e Expr, rhs: &'e Expr, absorbing: bool) -> EvalResult {
        let name = if absorbing { "_||_" } else { "_&&_" };
        let left = self.eval(lhs);
        if let Ok(Value::Bool(b)) = left {
            if b == absorbing {
                return Ok(Value::Bool(b));
            }
        }
        let right = self.eval(rhs);
        match (left, right) {
            (_, Ok(Value::Bool(b))) if b == absorbing => Ok(Value::Bool(b)),
            (Ok(Value::Bool(_)), Ok(Value::Bool(b))) => Ok(Value::Bool(b)),
            (Err(a), Err(b)) => Err(merge_failures(a, b)),
            (Err(e), _) | (Ok(Value::Bool(_)), Err(e)) => Err(e),
            (Ok(_), Err(e)) if e.is_unknown() => Err(e),
            _ => Err(no_overload(name)),
        }
    }

    fn eval_list(&mut self, elements: &'e [ListElement]) -> EvalResult {
        let mut items = Vec::with_capacity(elements.len());
        for element in elements {
            let value = self.eval(&element.value)?;
            if element.optional {
                match value {
                    Value::Optional(Some(inner)) => items.push(unwrap_arc(inner)),
                    Value::Optional(None) => {}
                    _ => return Err(no_overload("optional list element")),
                }
            } else {
                items.push(value);
            }
        }
        let list = Value::list(items);
        self.account(&list)?;
        Ok(list)
    }

    fn eval_map(&mut self, entries: &'e [MapEntry]) -> EvalResult {
        let mut map = MapValue::new();
        for entry in entries {
            let key = self.eval(&entry.key)?;
            let key = Key::from_value(&key).ok_or_else(|| {
                EvalError::InvalidArgument(format!(
                    "unsupported map key type `{}`",
                    key.cel_type().name()
                ))
            })?;
            let value = self.eval(&entry.value)?;
            if entry.optional {
                match value {
                    Value::Optional(Some(inner)) => map.insert(key, unwrap_arc(inner))?,
                    Value::Optional(None) => {}
                    _ => return Err(no_overload("optional map entry")),
                }
            } else {
                map.insert(key, value)?;
            }
        }
        let map = Value::map(map);
        self.account(&map)?;
        Ok(map)
    }

    // ---- macros --------------------------------------------------------------------------

    fn eval_macro(&mut self, mac: &'e Macro) -> EvalResult {
        match mac {
            Macro::Has { select } => self.eval_has(select),
            Macro::All(comp) => self.eval_quantifier(comp, false),
            Macro::Exists(comp) => self.eval_quantifier(comp, true),
            Macro::ExistsOne(comp) => self.eval_exists_one(comp),
            Macro::Map { comp, filter } => self.eval_collect(comp, filter.as_ref(), Collect::List),
            Macro::Filter(comp) => self.eval_collect(comp, None, Collect::Filter),
            Macro::TransformList { comp, filter } => {
                self.eval_collect(comp, filter.as_ref(), Collect::List)
            }
            Macro::TransformMap { comp, filter } => {
                self.eval_collect(comp, filter.as_ref(), Collect::Map)
            }
            Macro::TransformMapEntry { comp, filter } => {
                self.eval_collect(comp, filter.as_ref(), Collect::MapEntry)
            }
            Macro::SortBy(comp) => self.eval_sort_by(comp),
            Macro::Bind { var, init, body } => {
                let value = self.eval(init)?;
                self.with_locals(&[(var, value)], |this| this.eval(body))
            }
            Macro::OptMap { target, var, body } => match self.eval(target)? {
                Value::Optional(None) => Ok(Value::Optional(None)),
                Value::Optional(Some(inner)) => {
                    let result =
                        self.with_locals(&[(var, unwrap_arc(inner))], |this| this.eval(body))?;
                    Ok(Value::optional_of(result))
                }
                _ => Err(no_overload("optMap")),
            },
            Macro::OptFlatMap { target, var, body } => match self.eval(target)? {
                Value::Optional(None) => Ok(Value::Optional(None)),
                Value::Optional(Some(inner)) => {
                    match self.with_locals(&[(var, unwrap_arc(inner))], |this| this.eval(body))? {
                        result @ Value::Optional(_) => Ok(result),
                        _ => Err(no_overload("optFlatMap")),
                    }
                }
                _ => Err(no_overload("optFlatMap")),
            },
            Macro::Block { bindings, result } => {
                self.blocks.push(Block {
                    bindings,
                    slots: bindings.iter().map(|_| Slot::Pending).collect(),
                });
                let value = self.eval(result);
                self.blocks.pop();
                value
            }
        }
    }

    fn eval_has(&mut self, select_expr: &'e Expr) -> EvalResult {
        let ExprKind::Select { operand, field, .. } = &select_expr.kind else {
            return Err(no_overload("has"));
        };
        let value = self.eval(operand)?;
        has_field(&value, &field.name)
    }

    /// Runs `body` with `vars` bound as macro variables.
    fn with_locals<T>(&mut self, vars: &[(&Ident, Value)], body: impl FnOnce(&mut Self) -> T) -> T {
        let len = self.locals.len();
        for (ident, value) in vars {
            self.locals.push((var_name(&ident.name), value.clone()));
        }
        let result = body(self);
        self.locals.truncate(len);
        result
    }

    fn tick(&mut self) -> Result<(), EvalError> {
        self.iterations += 1;
        if self.iterations > self.limits.max_iterations {
            return Err(EvalError::LimitExceeded(format!(
                "comprehensions exceed the limit of {} iterations",
                self.limits.max_iterations
            )));
        }
        Ok(())
    }

    /// Evaluates `expr` with the comprehension variables of one iteration bound.
    fn eval_with_vars(
        &mut self,
        comp: &'e Comprehension,
        item: &(Value, Value),
        expr: &'e Expr,
    ) -> EvalResult {
        match &comp.var2 {
            Some(var2) => self.with_locals(
                &[(&comp.var, item.0.clone()), (var2, item.1.clone())],
                |this| this.eval(expr),
            ),
            None => self.with_locals(&[(&comp.var, item.0.clone())], |this| this.eval(expr)),
        }
    }

    /// `all` (`absorbing == false`) and `exists` (`absorbing == true`). The loop stops at the
    /// first absorbing result; an error is kept, and returned unless an absorbing result follows.
    fn eval_quantifier(&mut self, comp: &'e Comprehension, absorbing: bool) -> EvalResult {
        let range = self.eval(&comp.range)?;
        let items = iteration_values(&range, comp.var2.is_some())?;
        let mut error: Option<EvalError> = None;
        for item in &items {
            self.tick()?;
            let failure = match self.eval_with_vars(comp, item, &comp.body) {
                Ok(Value::Bool(b)) if b == absorbing => return Ok(Value::Bool(b)),
                Ok(Value::Bool(_)) => continue,
                Ok(_) => no_overload(if absorbing { "_||_" } else { "_&&_" }),
                Err(EvalError::LimitExceeded(limit)) => {
                    return Err(EvalError::LimitExceeded(limit));
                }
                Err(e) => e,
            };
            error = Some(match error {
                Some(previous) => merge_failures(previous, failure),
                None => failure,
            });
        }
        match error {
            Some(e) => Err(e),
            None => Ok(Value::Bool(!absorbing)),
        }
    }

    fn eval_exists_one(&mut self, comp: &'e Comprehension) -> EvalResult {
        let range = self.eval(&comp.range)?;
        let items = iteration_values(&range, comp.var2.is_some())?;
        let mut count = 0usize;
        for item in &items {
            self.tick()?;
            match self.eval_with_vars(comp, item, &comp.body)? {
                Value::Bool(true) => count += 1,
                Value::Bool(false) => {}
                _ => return Err(no_overload("exists_one")),
            }
        }
        Ok(Value::Bool(count == 1))
    }

    fn eval_collect(
        &mut self,
        comp: &'e Comprehension,
        filter: Option<&'e Expr>,
        mode: Collect,
    ) -> EvalResult {
        let range = self.eval(&comp.range)?;
        let two_vars = comp.var2.is_some();
        let items = iteration_values(&range, two_vars)?;
        let mut list = Vec::new();
        let mut map = MapValue::new();
        for item in &items {
            self.tick()?;
            let predicate = match mode {
                Collect::Filter => Some(&comp.body),
                _ => filter,
            };
            if let Some(predicate) = predicate {
                match self.eval_with_vars(comp, item, predicate)? {
                    Value::Bool(true) => {}
                    Value::Bool(false) => continue,
                    _ => return Err(no_overload("filter")),
                }
            }
            match mode {
                Collect::Filter => list.push(item.0.clone()),
                Collect::List => list.push(self.eval_with_vars(comp, item, &comp.body)?),
                Collect::Map => {
                    let value = self.eval_with_vars(comp, item, &comp.body)?;
                    let key =
                        Key::from_value(&item.0).ok_or_else(|| no_overload("transformMap"))?;
                    map.insert(key, value)?;
                }
                Collect::MapEntry => match self.eval_with_vars(comp, item, &comp.body)? {
                    Value::Map(entry) => {
                        for (k, v) in entry.iter() {
                            map.insert(k.clone(), v.clone())?;
                        }
                    }
                    _ => return Err(no_overload("transformMapEntry")),
                },
            }
            if list.len() > self.limits.max_collection_len
                || map.len() > self.limits.max_collection_len
            {
                return Err(EvalError::LimitExceeded(format!(
                    "comprehension result exceeds the limit of {} elements",
                    self.limits.max_collection_len
                )));
            }
        }
        let result = match mode {
            Collect::Filter | Collect::List => Value::list(list),
            Collect::Map | Collect::MapEntry => Value::map(map),
        };
        self.account(&result)?;
        Ok(result)
    }

    fn eval_sort_by(&mut self, comp: &'e Comprehension) -> EvalResult {
        let range = self.eval(&comp.range)?;
        let Value::List(items) = &range else {
            return Err(no_overload("sortBy"));
        };
        let mut keyed = Vec::with_capacity(items.len());
        for item in items.iter() {
            self.tick()?;
            let key = self.eval_with_vars(comp, &(item.clone(), Value::Null), &comp.body)?;
            keyed.push((key, item.clone()));
        }
        functions::sort_by_keys(keyed).map(Value::list)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Collect {
    /// `filter`: keep the element when the predicate holds.
    Filter,
    /// `map` / `transformList`: collect the transform's results.
    List,
    /// `transformMap`: key → transform.
    Map,
    /// `transformMapEntry`: merge the produced one-entry maps.
    MapEntry,
}

/// The name a macro variable is bound under. `cel.iterVar(i, j)` / `cel.accuVar(i, j)` (block
/// extension) are normalised to `@it:i:j` / `@ac:i:j`, whichever way the parser spelled them.
pub(crate) fn var_name(name: &str) -> String {
    let compact: String = name.chars().filter(|c| !c.is_whitespace()).collect();
    for (prefix, short) in [("cel.iterVar(", "@it"), ("cel.accuVar(", "@ac")] {
        if let Some(rest) = compact
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
        {
            if let Some((i, j)) = rest.split_once(',') {
                return format!("{short}:{i}:{j}");
            }
        }
    }
    name.to_owned()
}

pub(crate) fn block_var_name(function: &str, args: &[Expr]) -> Result<String, EvalError> {
    let short = if function == "cel.iterVar" {
        "@it"
    } else {
        "@ac"
    };
    match args {
        [
            Expr {
                kind: ExprKind::Literal(Literal::Int(i)),
                ..
            },
            Expr {
                kind: ExprKind::Literal(Literal::Int(j)),
                ..
            },
        ] => Ok(format!("{short}:{i}:{j}")),
        _ => Err(no_overload(function)),
    }
}

/// The failure to keep when two operands of `&&` / `||` (or two iterations of `all` /
/// `exists`) both fail: unknowns merge and win over errors; otherwise the first error stays.
pub(crate) fn merge_failures(first: EvalError, second: EvalError) -> EvalError {
    match (first, second) {
        (EvalError::Unknown(a), EvalError::Unknown(b)) => EvalError::Unknown(a.union(&b)),
        (EvalError::Unknown(a), _) => EvalError::Unknown(a),
        (_, EvalError::Unknown(b)) => EvalError::Unknown(b),
        (first, _) => first,
    }
}

pub(crate) fn unwrap_arc(value: Arc<Value>) -> Value {
    Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone())
}

/// Accounts for a value built during evaluation: errors when it is larger than the limits
/// allow, or when everything built so far (`allocated`, approximate bytes) exceeds the total
/// allocation budget.
pub(crate) fn account(
    limits: &Limits,
    allocated: &mut usize,
    value: &Value,
) -> Result<(), EvalError> {
    let (len, limit, what, unit) = match value {
        Value::String(s) => (s.len(), limits.max_string_len, "string", 1),
        Value::Bytes(b) => (b.len(), limits.max_string_len, "bytes", 1),
        Value::List(l) => (
            l.len(),
            limits.max_collection_len,
            "list",
            std::mem::size_of::<Value>(),
        ),
        Value::Map(m) => (
            m.len(),
            limits.max_collection_len,
            "map",
            3 * std::mem::size_of::<Value>(),
        ),
        _ => return Ok(()),
    };
    if len > limit {
        return Err(EvalError::LimitExceeded(format!(
            "{what} size {len} exceeds the limit of {limit}"
        )));
    }
    *allocated = allocated.saturating_add(len.saturating_mul(unit));
    if *allocated > limits.max_total_alloc {
        return Err(EvalError::LimitExceeded(format!(
            "evaluation allocates more than {} bytes",
            limits.max_total_alloc
        )));
    }
    Ok(())
}

/// The (first, second) variable values of each iteration of a comprehension over `range`.
/// One-variable forms bind list elements or map keys; two-variable forms bind (index,
/// element) or (key, value).
pub(crate) fn iteration_values(
    range: &Value,
    two_vars: bool,
) -> Result<Vec<(Value, Value)>, EvalError> {
    match range {
        Value::List(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if two_vars {
                    (Value::Int(i64::try_from(i).unwrap_or(i64::MAX)), v.clone())
                } else {
                    (v.clone(), Value::Null)
                }
            })
            .collect()),
        Value::Map(map) => Ok(map.iter().map(|(k, v)| (k.to_value(), v.clone())).collect()),
        _ => Err(no_overload("comprehension range")),
    }
}

pub(crate) fn literal(lit: &Literal) -> Value {
    match lit {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => Value::Int(*i),
        Literal::Uint(u) => Value::Uint(*u),
        Literal::Double(d) => Value::Double(*d),
        Literal::String(s) => Value::string(s.as_str()),
        Literal::Bytes(b) => Value::bytes(b.as_slice()),
    }
}

/// `a.b.c` made only of identifiers and plain selections: the segments and the root flag.
pub(crate) fn ident_chain(expr: &Expr) -> Option<(Vec<&str>, bool)> {
    let mut segments = Vec::new();
    let mut current = expr;
    loop {
        match &current.kind {
            ExprKind::Select {
                operand,
                field,
                optional: false,
            } => {
                segments.push(field.name.as_str());
                current = operand;
            }
            ExprKind::Ident { name, root } => {
                segments.push(name.as_str());
                segments.reverse();
                return Some((segments, *root));
            }
            _ => return None,
        }
    }
}

pub(crate) fn select_path(mut value: Value, fields: &[&str]) -> EvalResult {
    for field in fields {
        value = select(&value, field, false)?;
    }
    Ok(value)
}

/// Field selection `value.field` (or `value.?field` when `optional`).
pub(crate) fn select(value: &Value, field: &str, optional: bool) -> EvalResult {
    select_key(value, &Key::String(field.into()), field, optional)
}

/// [`select`] with the map key of `field` built beforehand (`key` is `field` as a string key).
pub(crate) fn select_key(value: &Value, key: &Key, field: &str, optional: bool) -> EvalResult {
    match value {
        Value::Map(map) => match map.get_key(key) {
            Some(v) if optional => Ok(Value::optional_of(v.clone())),
            Some(v) => Ok(v.clone()),
            None if optional => Ok(Value::Optional(None)),
            None => Err(EvalError::NoSuchKey(field.to_owned())),
        },
        Value::Optional(None) => Ok(Value::Optional(None)),
        Value::Optional(Some(inner)) => select_key(inner, key, field, true),
        _ => Err(EvalError::NoSuchField(format!(
            "`{field}` on a value of type `{}`",
            value.cel_type().name()
        ))),
    }
}

/// `has(value.field)`.
pub(crate) fn has_field(value: &Value, field: &str) -> EvalResult {
    has_key(value, &Key::String(field.into()))
}

/// [`has_field`] with the map key of the field built beforehand.
pub(crate) fn has_key(value: &Value, key: &Key) -> EvalResult {
    match value {
        Value::Map(map) => Ok(Value::Bool(map.get_key(key).is_some())),
        Value::Optional(None) => Ok(Value::Bool(false)),
        Value::Optional(Some(inner)) => has_key(inner, key),
        _ => Err(no_overload("has")),
    }
}

/// Indexing `value[index]` (or `value[?index]` when `optional`).
pub(crate) fn index_value(value: &Value, index: &Value, optional: bool) -> EvalResult {
    match value {
        Value::List(items) => {
            let position = match index {
                Value::Int(i) => Some(*i),
                Value::Uint(u) => Some(i64::try_from(*u).unwrap_or(i64::MAX)),
                Value::Double(d) if d.fract() == 0.0 && d.is_finite() =>
                {
                    #[allow(clippy::cast_possible_truncation)]
                    Some(*d as i64)
                }
                _ => None,
            };
            let Some(position) = position else {
                return Err(no_overload("_[_]"));
            };
            match usize::try_from(position).ok().and_then(|p| items.get(p)) {
                Some(v) if optional => Ok(Value::optional_of(v.clone())),
                Some(v) => Ok(v.clone()),
                None if optional => Ok(Value::Optional(None)),
                None => Err(EvalError::IndexOutOfRange(position)),
            }
        }
        Value::Map(map) => {
            if Key::from_value(index).is_none() && !matches!(index, Value::Double(_)) {
                return Err(no_overload("_[_]"));
            }
            match map.get(index) {
                Some(v) if optional => Ok(Value::optional_of(v.clone())),
                Some(v) => Ok(v.clone()),
                None if optional => Ok(Value::Optional(None)),
                None => Err(EvalError::NoSuchKey(key_text(index))),
            }
        }
        Value::Optional(None) => Ok(Value::Optional(None)),
        Value::Optional(Some(inner)) => index_value(inner, index, true),
        _ => Err(no_overload("_[_]")),
    }
}

fn key_text(key: &Value) -> String {
    match Key::from_value(key) {
        Some(k) => k.to_string(),
        None => match key {
            Value::Double(d) => d.to_string(),
            other => other.cel_type().name().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{Env, Limits};
    use crate::error::EvalError;
    use crate::value::Value;

    fn run_with(src: &str, vars: &HashMap<String, Value>, container: &str) -> super::EvalResult {
        let expr = wicket_grammar::parse(src).expect("test expression parses");
        Env::new(vars).with_container(container).eval(&expr)
    }

    fn run(src: &str) -> super::EvalResult {
        run_with(src, &HashMap::new(), "")
    }

    /// Asserts that `src` evaluates to `true`.
    #[track_caller]
    fn holds(src: &str) {
        match run(src) {
            Ok(Value::Bool(true)) => {}
            other => panic!("`{src}` gave {other:?}"),
        }
    }

    #[track_caller]
    fn fails(src: &str) -> EvalError {
        match run(src) {
            Err(e) => e,
            Ok(v) => panic!("`{src}` gave {v:?}, expected an error"),
        }
    }

    #[test]
    fn errors_commute_through_logical_operators() {
        holds("(1 / 0 > 0 && false) == false");
        holds("(false && 1 / 0 > 0) == false");
        holds("(1 / 0 > 0 || true) == true");
        holds("(true || 1 / 0 > 0) == true");
        assert!(matches!(
            fails("1 / 0 > 0 && true"),
            EvalError::DivisionByZero
        ));
        assert!(matches!(
            fails("true ? 1 / 0 : 1"),
            EvalError::DivisionByZero
        ));
        holds("false ? 1 / 0 == 1 : true");
        fails("'a' && true");
    }

    #[test]
    fn comprehensions_short_circuit_and_absorb_errors() {
        holds("![1, 0, 8].all(x, 4 / x > 1)");
        holds("[0, 2].exists(x, x == 2 || 4 / x > 1)");
        holds("[2, 0].exists(x, 4 / x == 2)");
        assert!(matches!(
            fails("[0, 2].all(x, 4 / x > 1)"),
            EvalError::DivisionByZero
        ));
        fails("[1, 0].exists_one(x, 4 / x == 4)");
        holds("[1, 2, 3].map(x, x * 2) == [2, 4, 6]");
        holds("[1, 2, 3].map(x, x > 1, x * 2) == [4, 6]");
        holds("[1, 2, 3].filter(x, x > 1) == [2, 3]");
        holds("{'a': 1, 'b': 2}.filter(k, k == 'b') == ['b']");
        holds("[1, 2, 3].all(x, [4, 5].exists(y, y > x))");
    }

    #[test]
    fn two_variable_comprehensions() {
        holds("[10, 20].all(i, v, v == (i + 1) * 10)");
        holds("{'a': 1}.exists(k, v, k == 'a' && v == 1)");
        holds("[1, 2].transformList(i, v, i + v) == [1, 3]");
        holds("{'a': 1, 'b': 2}.transformMap(k, v, v > 1, v * 10) == {'b': 20}");
        holds("[1, 2].transformMap(i, v, v) == {0: 1, 1: 2}");
        holds("{'a': 1}.transformMapEntry(k, v, {v: k}) == {1: 'a'}");
        assert!(matches!(
            fails("[1, 2].transformMapEntry(i, v, {'k': v})"),
            EvalError::DuplicateKey(_)
        ));
    }

    #[test]
    fn bind_block_and_sort_by() {
        holds("cel.bind(x, 2, x * x) == 4");
        holds("cel.bind(x, 1, cel.bind(y, x + 1, [x, y])) == [1, 2]");
        holds("cel.block([1, cel.index(0) + 1], cel.index(1)) == 2");
        holds("cel.block([1 / 0, 2], cel.index(1)) == 2");
        holds(
            "cel.block([[1, 2]], cel.index(0).map(cel.iterVar(0, 0), cel.iterVar(0, 0) * 2)) \
             == [2, 4]",
        );
        holds("cel.block([cel.iterVar(0, 0) > 0], [1].exists(cel.iterVar(0, 0), cel.index(0)))");
        fails("cel.block([cel.index(0)], cel.index(0))");
        holds("[3, 1, 2].sortBy(x, x) == [1, 2, 3]");
        holds("['bb', 'a', 'ccc'].sortBy(s, -size(s)) == ['ccc', 'bb', 'a']");
        fails("[1, 'a'].sortBy(x, x)");
    }

    #[test]
    fn optional_syntax() {
        let some = |src: &str| match run(src) {
            Ok(Value::Optional(Some(v))) => (*v).clone(),
            other => panic!("`{src}` gave {other:?}"),
        };
        let none = |src: &str| assert!(matches!(run(src), Ok(Value::Optional(None))), "{src}");
        assert!(some("{'a': 1}.?a").cel_eq(&Value::Int(1)));
        none("{'a': 1}.?b");
        none("{'a': 1}.?b.c");
        assert!(some("{'a': {'b': 2}}.?a.b").cel_eq(&Value::Int(2)));
        assert!(some("[1, 2][?1]").cel_eq(&Value::Int(2)));
        none("[1, 2][?2]");
        none("{'a': 1}[?'b']");
        holds("[?{'a': 1}.?a, ?{}.?b, 3] == [1, 3]");
        holds("{?'x': {'a': 1}.?a, ?'y': {}.?b} == {'x': 1}");
        holds("{'a': 1}.?a.optMap(v, v + 1) == {'b': 2}.?b");
        holds("{'a': {}}.?a.optFlatMap(m, m.?z) == {}.?z");
        holds("has({'a': {}}.?a.b) == false");
        fails("[?1]");
    }

    #[test]
    fn numbers_equal_across_types_and_keys() {
        holds("1 == 1u && 1u == 1.0 && 1 == 1.0");
        holds("[1, 2] == [1.0, 2u]");
        holds("{1: 'a'}[1u] == 'a' && {1u: 'a'}[1.0] == 'a'");
        holds("2.0 in [1, 2] && 1u in {1: true}");
        holds("!(0.0 / 0.0 == 0.0 / 0.0)");
        holds("1 < 1.5 && 2u > 1 && -1 < 0u");
        holds("0.0 / 0.0 < 1.0 || true");
        fails("0.0 / 0.0 <= 1.0");
        fails("1u > 0.0 / 0.0");
        fails("{1: 'a', 1u: 'b'}");
        fails("1 < 'a'");
        fails("1 + 1u");
    }

    #[test]
    fn type_values() {
        holds("type(1) == int && int == type(1)");
        holds("type(type) == type && type(int) == type");
        holds("type(timestamp(0)) == google.protobuf.Timestamp");
        holds("type(duration('1s')) == google.protobuf.Duration");
        holds("type(null) == null_type");
        fails("dyn");
    }

    #[test]
    fn timestamps_and_durations() {
        holds("timestamp('2009-02-13T23:31:30Z').getHours('Asia/Kathmandu') == 5");
        holds("timestamp('2009-02-13T23:31:30Z').getMinutes('+05:30') == 1");
        holds("timestamp('2009-02-13T23:31:30Z') - duration('1h') < timestamp(1234567890)");
        holds("string(duration('1h1.5s')) == '3601.5s'");
        holds("duration('1.5s').getMilliseconds() == 500");
        holds("int(timestamp('1969-12-31T23:59:58.5Z')) == -2");
        holds("string(timestamp('1969-12-31T23:59:58.5Z')) == '1969-12-31T23:59:58.5Z'");
        fails("timestamp('9999-12-30T00:00:00Z') + duration('48h')");
        fails("timestamp('2009-02-13t23:31:30z')");
        fails("duration('100000000000s')");
    }

    #[test]
    fn container_and_qualified_names() {
        let mut vars = HashMap::new();
        vars.insert("a.b.c".to_owned(), Value::Int(1));
        vars.insert("a.b".to_owned(), Value::string("shadowed"));
        vars.insert("com.example.x".to_owned(), Value::Int(2));
        vars.insert("x".to_owned(), Value::Int(3));
        let eval = |src: &str, container: &str| run_with(src, &vars, container);
        assert!(matches!(eval("a.b.c", ""), Ok(Value::Int(1))));
        assert!(matches!(eval("x", "com.example"), Ok(Value::Int(2))));
        assert!(matches!(eval(".x", "com.example"), Ok(Value::Int(3))));
        assert!(matches!(eval("x", "com"), Ok(Value::Int(3))));
        assert!(matches!(
            eval("[7].map(x, x)[0]", "com.example"),
            Ok(Value::Int(7))
        ));
        assert!(matches!(
            eval("cel.bind(x, 9, x)", "com.example"),
            Ok(Value::Int(9))
        ));
    }

    #[test]
    fn unknown_functions_and_fields_are_errors() {
        assert!(matches!(
            fails("nope(1)"),
            EvalError::UndeclaredReference(_)
        ));
        assert!(matches!(
            fails("foo.bar(1)"),
            EvalError::UndeclaredReference(_)
        ));
        assert!(matches!(fails("{'a': 1}.b"), EvalError::NoSuchKey(_)));
        assert!(matches!(fails("[1][1]"), EvalError::IndexOutOfRange(1)));
        assert!(matches!(fails("1.a"), EvalError::NoSuchField(_)));
        assert!(matches!(fails("Msg{a: 1}"), EvalError::Unsupported(_)));
        assert!(matches!(
            fails("'a'.matches('(')"),
            EvalError::InvalidArgument(_)
        ));
        holds("'hubba'.matches('ubb') && matches('abc', '^a.c$') && !'abc'.matches('^b')");
        holds("['x1', 'y', 'x2'].filter(s, s.matches('^x[0-9]$')) == ['x1', 'x2']");
    }

    #[test]
    fn printed_values_evaluate_back_to_themselves() {
        for src in [
            "[1, 2u, 1.5, -0.0, 1e100, 'a\"b\\n', b'\\x00\\xff', null, true]",
            "{'k': {1: [2u]}, 2u: optional.of(1), true: optional.none()}",
            "[timestamp('2009-02-13T23:31:30.5Z'), duration('-1.25s'), int, type(type)]",
            "[double('NaN') == 0.0, double('-Infinity'), ip('::1'), cidr('10.0.0.0/8')]",
        ] {
            let value = run(src).expect("evaluates");
            let printed = value.to_string();
            let again = run(&printed).unwrap_or_else(|e| panic!("`{printed}`: {e}"));
            assert_eq!(again.to_string(), printed);
            assert!(again.cel_eq(&value), "`{src}` printed as `{printed}`");
        }
    }

    #[test]
    fn unknowns_propagate_and_are_absorbed() {
        use super::super::PartialActivation;
        let mut known = HashMap::new();
        known.insert("x".to_owned(), Value::Int(1));
        let vars = PartialActivation {
            known,
            unknown: ["req".to_owned(), "other".to_owned()].into_iter().collect(),
        };
        let eval = |src: &str| {
            let expr = wicket_grammar::parse(src).expect("test expression parses");
            Env::new(&vars).eval(&expr)
        };
        let unknown = |src: &str| match eval(src) {
            Err(EvalError::Unknown(set)) => set.attributes.into_iter().collect::<Vec<_>>(),
            other => panic!("`{src}` gave {other:?}"),
        };
        assert_eq!(unknown("req.headers.size() > x"), ["req.headers"]);
        assert!(matches!(
            eval("req.a == 1 && false"),
            Ok(Value::Bool(false))
        ));
        assert!(matches!(eval("true || req.a"), Ok(Value::Bool(true))));
        assert_eq!(unknown("req.a && 1 / 0 == 1"), ["req.a"]);
        assert_eq!(unknown("1 / 0 == 1 || req.a"), ["req.a"]);
        assert_eq!(unknown("req.a || other"), ["other", "req.a"]);
        assert_eq!(unknown("req ? 1 : 2"), ["req"]);
        assert!(matches!(
            eval("[1, 2].exists(i, i == req || i == 2)"),
            Ok(Value::Bool(true))
        ));
        assert_eq!(unknown("[1, 2].all(i, i == req)"), ["req"]);
        assert!(matches!(eval("x == 1"), Ok(Value::Bool(true))));
    }

    #[test]
    fn resource_limits_stop_blow_ups() {
        let doubling = "cel.bind(a, 'xxxxxxxxxxxxxxxx', cel.bind(b, a + a + a + a + a + a + a + a, \
             cel.bind(c, b + b + b + b + b + b + b + b, cel.bind(d, c + c + c + c + c + c + c + c, \
             cel.bind(e, d + d + d + d + d + d + d + d, cel.bind(f, e + e + e + e + e + e + e + e, \
             cel.bind(g, f + f + f + f + f + f + f + f, g + g + g + g + g + g + g + g)))))))";
        assert!(matches!(fails(doubling), EvalError::LimitExceeded(_)));
        let wide = format!(
            "[{0}].map(x, [{0}].map(y, [{0}].map(z, [{0}].map(w, w))))",
            (0..40).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        );
        assert!(matches!(fails(&wide), EvalError::LimitExceeded(_)));
        let limits = Limits {
            max_iterations: 10,
            ..Limits::default()
        };
        let steps = Limits {
            max_steps: 20,
            ..Limits::default()
        };
        let long =
            wicket_grammar::parse("[1, 2, 3, 4, 5, 6].map(x, x + x + x + x)").expect("parses");
        let vars: HashMap<String, Value> = HashMap::new();
        assert!(matches!(
            Env::new(&vars).with_limits(steps).eval(&long),
            Err(EvalError::LimitExceeded(_))
        ));
        let expr =
            wicket_grammar::parse("[1, 2, 3, 4].all(x, [1, 2, 3].all(y, true))").expect("parses");
        assert!(matches!(
            Env::new(&vars).with_limits(limits).eval(&expr),
            Err(EvalError::LimitExceeded(_))
        ));
    }
}

#[cfg(test)]
pub(crate) mod proptests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::super::Env;
    use crate::value::{Key, MapValue, Value};

    /// CEL source fragments mixing every operator, macro and core function with edge values.
    pub(crate) fn expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("0".to_owned()),
            Just("-9223372036854775808".to_owned()),
            Just("9223372036854775807".to_owned()),
            Just("18446744073709551615u".to_owned()),
            Just("0u".to_owned()),
            Just("-0.0".to_owned()),
            Just("1e308".to_owned()),
            Just("double('NaN')".to_owned()),
            Just("'héllo'".to_owned()),
            Just("b'\\xff'".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
            Just("x".to_owned()),
            Just("m".to_owned()),
            Just("y".to_owned()),
            Just("timestamp('9999-12-30T21:59:59Z')".to_owned()),
            Just("timestamp('0001-01-01T00:00:00Z')".to_owned()),
            Just("duration('-9223372036s')".to_owned()),
            Just("int".to_owned()),
            Just("optional.none()".to_owned()),
            any::<i64>().prop_map(|i| i.to_string()),
        ];
        leaf.prop_recursive(5, 64, 4, |inner| {
            let unary = (
                prop::sample::select(vec![
                    "-",
                    "!",
                    "size",
                    "int",
                    "uint",
                    "double",
                    "string",
                    "bytes",
                    "bool",
                    "timestamp",
                    "duration",
                    "type",
                    "dyn",
                    "optional.of",
                ]),
                inner.clone(),
            )
                .prop_map(|(f, a)| match f {
                    "-" | "!" => format!("{f}({a})"),
                    _ => format!("{f}({a})"),
                });
            let binary = (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "in",
                ]),
                inner.clone(),
            )
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})"));
            let member = (
                inner.clone(),
                prop::sample::select(vec![
                    "contains",
                    "startsWith",
                    "endsWith",
                    "matches",
                    "getHours",
                    "getDayOfWeek",
                    "getMilliseconds",
                    "size",
                    "orValue",
                ]),
                prop::option::of(inner.clone()),
            )
                .prop_map(|(t, f, a)| format!("({t}).{f}({})", a.unwrap_or_default()));
            let structure =
                (inner.clone(), inner.clone(), inner.clone()).prop_flat_map(|(a, b, c)| {
                    prop::sample::select(vec![
                        format!("[{a}, {b}, {c}]"),
                        format!("{{{a}: {b}}}"),
                        format!("({a}) ? ({b}) : ({c})"),
                        format!("({a})[{b}]"),
                        format!("({a})[?{b}]"),
                        format!("({a}).f"),
                        format!("({a}).?f"),
                        format!("[?({a})]"),
                        format!("({a}).all(v, ({b}) == v)"),
                        format!("({a}).exists(v, v == ({b}))"),
                        format!("({a}).exists_one(v, v == ({b}))"),
                        format!("({a}).map(v, ({b}))"),
                        format!("({a}).map(v, v == ({c}), [v, ({b})])"),
                        format!("({a}).filter(v, ({b}))"),
                        format!("({a}).transformList(i, v, ({b}))"),
                        format!("({a}).transformMap(k, v, ({b}))"),
                        format!("({a}).all(k, v, k == ({b}))"),
                        format!("({a}).sortBy(v, ({b}))"),
                        format!("({a}).optMap(v, ({b}))"),
                        format!("cel.bind(v, ({a}), [v, ({b})])"),
                        format!("cel.block([({a}), cel.index(0)], [cel.index(1), ({b})])"),
                        format!("has(({a}).f)"),
                    ])
                });
            prop_oneof![unary, binary, member, structure]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Evaluation never panics: every expression gives a value or an error.
        #[test]
        fn evaluation_never_panics(src in expr()) {
            let Ok(parsed) = wicket_grammar::parse(&src) else {
                return Ok(());
            };
            let mut vars = HashMap::new();
            vars.insert("x".to_owned(), Value::list(vec![Value::Int(1), Value::string("a")]));
            let mut map = MapValue::new();
            map.insert(Key::String("f".into()), Value::Uint(3)).expect("fresh key");
            map.insert(Key::Int(-1), Value::Null).expect("fresh key");
            vars.insert("m".to_owned(), Value::map(map));
            vars.insert("y".to_owned(), Value::Double(0.5));
            let _ = Env::new(&vars).eval(&parsed);
        }
    }
}
