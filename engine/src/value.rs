//! CEL runtime values shared by the reference interpreter and (later) the compiled evaluator.
//!
//! Owned by the interpreter core; extension modules add behaviour through functions and
//! inherent `impl` blocks in their own files.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A CEL value.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null`
    Null,
    /// `bool`
    Bool(bool),
    /// `int` (64-bit signed)
    Int(i64),
    /// `uint` (64-bit unsigned)
    Uint(u64),
    /// `double`
    Double(f64),
    /// `string`
    String(Arc<str>),
    /// `bytes`
    Bytes(Arc<[u8]>),
    /// `list`
    List(Arc<Vec<Value>>),
    /// `map` (keys: bool, int, uint, string)
    Map(Arc<MapValue>),
    /// A type value (`int`, `list`, `google.protobuf.Timestamp`, …)
    Type(CelType),
    /// `google.protobuf.Timestamp`
    Timestamp(jiff::Timestamp),
    /// `google.protobuf.Duration`
    Duration(jiff::SignedDuration),
    /// `optional_type(T)` (optionals extension): `None` is `optional.none()`.
    Optional(Option<Arc<Value>>),
    /// `net.IP` (network extension)
    Ip(IpAddr),
    /// `net.CIDR` (network extension)
    Cidr(ipnet::IpNet),
}

/// A map key. CEL map keys are bool, int, uint or string; int and uint keys that denote the
/// same number are the same key for lookups (heterogeneous equality).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A bool key.
    Bool(bool),
    /// An int key.
    Int(i64),
    /// A uint key.
    Uint(u64),
    /// A string key.
    String(Arc<str>),
}

/// A CEL map: entries in insertion order plus an index by key.
#[derive(Clone, Debug, Default)]
pub struct MapValue {
    /// Entries in insertion order.
    pub entries: Vec<(Key, Value)>,
    /// Position of each key in `entries`.
    pub index: BTreeMap<Key, usize>,
}

/// CEL type values, as returned by `type(x)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CelType {
    /// `null_type`
    Null,
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
    /// `list`
    List,
    /// `map`
    Map,
    /// `type`
    Type,
    /// `google.protobuf.Timestamp`
    Timestamp,
    /// `google.protobuf.Duration`
    Duration,
    /// `optional_type`
    Optional,
    /// `net.IP`
    Ip,
    /// `net.CIDR`
    Cidr,
    /// Any other named type (message or abstract type names).
    Named(Arc<str>),
}
