//! CEL types as the checker sees them, and their `'static` descriptors used by the tables.

use std::fmt;

/// A CEL type, as computed by the type checker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// `bool`
    Bool,
    /// `int` (the docs' `int32`/`int64`/`integer`)
    Int,
    /// `uint`
    Uint,
    /// `double`
    Double,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `null_type`
    Null,
    /// `google.protobuf.Timestamp`
    Timestamp,
    /// `google.protobuf.Duration`
    Duration,
    /// `list(T)`
    List(Box<Type>),
    /// `map(K, V)`
    Map(Box<Type>, Box<Type>),
    /// `dyn`: checks deferred to run time.
    Dyn,
    /// `type`: the type of a type value (`int`, `type(x)`).
    Type,
    /// `optional_type(T)` (optionals extension).
    Optional(Box<Type>),
    /// An opaque object type with named fields (`cookie`, `Extension`, `net.IP`, …).
    Object(&'static ObjectDef),
    /// A type parameter of a generic overload (only inside the function table).
    Param(&'static str),
    /// An unconstrained type: the element of `[]`, the value of `optional.none()`, an unbound
    /// type parameter. Compatible with everything; joined with another type it becomes that
    /// type (`[[], [1]]` is `list(list(int))`). Shown as `dyn`.
    Free,
    /// The type of an expression whose checking failed; compatible with everything so that
    /// one mistake produces one diagnostic.
    Error,
}

/// An opaque object type: a name and its fields.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ObjectDef {
    /// The type name as shown to users (`cookie`, `Extension`, `net.IP`).
    pub name: &'static str,
    /// The fields that can be selected, with their types.
    pub fields: &'static [(&'static str, TypeSpec)],
    /// What the type is.
    pub doc: &'static str,
}

impl ObjectDef {
    /// The type of field `name`, if the object has it.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<Type> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_type())
    }
}

/// A `'static` type descriptor, so the variable and function tables can be plain `static`
/// data. [`TypeSpec::to_type`] gives the checker's [`Type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeSpec {
    /// `bool`
    Bool,
    /// `int`
    Int,
    /// `uint`
    Uint,
    /// `double`
    Double,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `null_type`
    Null,
    /// `google.protobuf.Timestamp`
    Timestamp,
    /// `google.protobuf.Duration`
    Duration,
    /// `list(T)`
    List(&'static TypeSpec),
    /// `map(K, V)`
    Map(&'static TypeSpec, &'static TypeSpec),
    /// `dyn`
    Dyn,
    /// `type`
    Type,
    /// `optional_type(T)`
    Optional(&'static TypeSpec),
    /// An opaque object type.
    Object(&'static ObjectDef),
    /// A type parameter (`A`, `B`, `K`, `V`).
    Param(&'static str),
}

impl TypeSpec {
    /// The checker type this descriptor stands for.
    #[must_use]
    pub fn to_type(self) -> Type {
        match self {
            TypeSpec::Bool => Type::Bool,
            TypeSpec::Int => Type::Int,
            TypeSpec::Uint => Type::Uint,
            TypeSpec::Double => Type::Double,
            TypeSpec::String => Type::String,
            TypeSpec::Bytes => Type::Bytes,
            TypeSpec::Null => Type::Null,
            TypeSpec::Timestamp => Type::Timestamp,
            TypeSpec::Duration => Type::Duration,
            TypeSpec::List(e) => Type::List(Box::new(e.to_type())),
            TypeSpec::Map(k, v) => Type::Map(Box::new(k.to_type()), Box::new(v.to_type())),
            TypeSpec::Dyn => Type::Dyn,
            TypeSpec::Type => Type::Type,
            TypeSpec::Optional(e) => Type::Optional(Box::new(e.to_type())),
            TypeSpec::Object(o) => Type::Object(o),
            TypeSpec::Param(p) => Type::Param(p),
        }
    }
}

impl fmt::Display for TypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_type().fmt(f)
    }
}

impl Type {
    /// `list(elem)`.
    #[must_use]
    pub fn list(elem: Type) -> Type {
        Type::List(Box::new(elem))
    }

    /// `map(key, value)`.
    #[must_use]
    pub fn map(key: Type, value: Type) -> Type {
        Type::Map(Box::new(key), Box::new(value))
    }

    /// Whether checks on a value of this type are deferred to run time (`dyn`, or an
    /// earlier error).
    #[must_use]
    pub fn is_dyn(&self) -> bool {
        matches!(self, Type::Dyn | Type::Error | Type::Param(_) | Type::Free)
    }

    /// Whether the type is `int`, `uint` or `double`.
    #[must_use]
    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Uint | Type::Double)
    }

    /// Whether the type mentions `dyn` or an error anywhere (so a mismatch may be fine at run time).
    #[must_use]
    pub fn contains_dyn(&self) -> bool {
        match self {
            Type::Dyn | Type::Error | Type::Param(_) | Type::Free => true,
            Type::List(e) | Type::Optional(e) => e.contains_dyn(),
            Type::Map(k, v) => k.contains_dyn() || v.contains_dyn(),
            _ => false,
        }
    }

    /// Whether a value of type `self` can be used where `other` is expected, ignoring type
    /// parameters (they match anything). `dyn` is compatible both ways.
    #[must_use]
    pub fn is_assignable_to(&self, other: &Type) -> bool {
        match (self, other) {
            (a, b) if a.is_dyn() || b.is_dyn() => true,
            (Type::List(a), Type::List(b)) | (Type::Optional(a), Type::Optional(b)) => {
                a.is_assignable_to(b)
            }
            (Type::Map(ka, va), Type::Map(kb, vb)) => {
                ka.is_assignable_to(kb) && va.is_assignable_to(vb)
            }
            (Type::Object(a), Type::Object(b)) => a.name == b.name,
            (a, b) => a == b,
        }
    }

    /// The least general type covering both (for list literals, ternaries): the type itself
    /// when equal, the other one when one is unconstrained ([`Type::Free`]) or `null` against
    /// an optional, `dyn` otherwise.
    #[must_use]
    pub fn join(&self, other: &Type) -> Type {
        match (self, other) {
            (Type::Error | Type::Free, t) | (t, Type::Error | Type::Free) => t.clone(),
            (Type::Null, t @ Type::Optional(_)) | (t @ Type::Optional(_), Type::Null) => t.clone(),
            (Type::List(a), Type::List(b)) => Type::list(a.join(b)),
            (Type::Optional(a), Type::Optional(b)) => Type::Optional(Box::new(a.join(b))),
            (Type::Map(ka, va), Type::Map(kb, vb)) => Type::map(ka.join(kb), va.join(vb)),
            (a, b) if a == b => a.clone(),
            _ => Type::Dyn,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("bool"),
            Type::Int => f.write_str("int"),
            Type::Uint => f.write_str("uint"),
            Type::Double => f.write_str("double"),
            Type::String => f.write_str("string"),
            Type::Bytes => f.write_str("bytes"),
            Type::Null => f.write_str("null"),
            Type::Timestamp => f.write_str("timestamp"),
            Type::Duration => f.write_str("duration"),
            Type::List(e) => write!(f, "list({e})"),
            Type::Map(k, v) => write!(f, "map({k}, {v})"),
            Type::Dyn | Type::Error | Type::Free => f.write_str("dyn"),
            Type::Type => f.write_str("type"),
            Type::Optional(e) => write!(f, "optional_type({e})"),
            Type::Object(o) => f.write_str(o.name),
            Type::Param(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_nested() {
        let t = Type::map(Type::String, Type::list(Type::String));
        assert_eq!(t.to_string(), "map(string, list(string))");
    }

    #[test]
    fn dyn_is_assignable_both_ways() {
        assert!(Type::Dyn.is_assignable_to(&Type::Int));
        assert!(Type::Int.is_assignable_to(&Type::Dyn));
        assert!(Type::list(Type::Dyn).is_assignable_to(&Type::list(Type::String)));
        assert!(!Type::Int.is_assignable_to(&Type::String));
    }

    #[test]
    fn join_of_different_types_is_dyn() {
        assert_eq!(Type::Int.join(&Type::String), Type::Dyn);
        assert_eq!(Type::Int.join(&Type::Int), Type::Int);
        assert_eq!(Type::Error.join(&Type::Int), Type::Int);
        let empty = Type::list(Type::Free);
        let nested = Type::list(Type::list(Type::Int));
        assert_eq!(empty.join(&nested), nested);
        assert_eq!(Type::list(Type::Free).to_string(), "list(dyn)");
    }
}
