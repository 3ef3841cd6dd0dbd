//! The containers of Tile IR: modules, functions, regions, ops and values.

use std::fmt;

use crate::ops::{OpKind, Scope};
use crate::types::Type;

/// An SSA value: an index into its function's value table ([`Func::value_type`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub u32);

impl Value {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where an op came from, for error messages. Not part of the IR's meaning and never printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Loc {
    #[default]
    Unknown,
    /// A position in Tile IR text (1-based).
    Text { line: u32, col: u32 },
    /// A position in Rust source, recorded by the builder through `#[track_caller]`.
    Rust {
        file: &'static str,
        line: u32,
        col: u32,
    },
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Unknown => f.write_str("<unknown>"),
            Loc::Text { line, col } => write!(f, "line {line}, column {col}"),
            Loc::Rust { file, line, col } => write!(f, "{file}:{line}:{col}"),
        }
    }
}

/// One operation.
#[derive(Clone, Debug)]
pub struct Op {
    pub kind: OpKind,
    pub scope: Scope,
    pub operands: Vec<Value>,
    pub results: Vec<Value>,
    pub regions: Vec<Region>,
    pub loc: Loc,
}

impl Op {
    pub fn new(kind: OpKind, scope: Scope, operands: Vec<Value>, results: Vec<Value>) -> Op {
        Op {
            kind,
            scope,
            operands,
            results,
            regions: Vec::new(),
            loc: Loc::Unknown,
        }
    }
}

/// A list of ops with block arguments (loop induction variables and carried values).
#[derive(Clone, Debug, Default)]
pub struct Region {
    pub args: Vec<Value>,
    pub ops: Vec<Op>,
}

/// Whether a function is a kernel (launched over a grid) or a helper (called from kernels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FuncKind {
    /// A kernel launched over a grid with `warps` warps per block.
    Kernel { warps: u32 },
    /// A helper function, called with `call`.
    Helper,
}

/// A kernel or helper function.
#[derive(Clone, Debug)]
pub struct Func {
    pub name: String,
    pub kind: FuncKind,
    /// Parameter values (defined by the function, in order).
    pub params: Vec<Value>,
    /// Result types (helpers only; kernels return nothing).
    pub results: Vec<Type>,
    pub body: Region,
    /// The type of every value, indexed by [`Value::index`].
    pub value_types: Vec<Type>,
    /// An optional name of every value (parameters always have one), used by the printer.
    pub value_names: Vec<Option<String>>,
    pub loc: Loc,
}

impl Func {
    /// A function with no values and an empty body.
    pub fn new(name: impl Into<String>, kind: FuncKind) -> Func {
        Func {
            name: name.into(),
            kind,
            params: Vec::new(),
            results: Vec::new(),
            body: Region::default(),
            value_types: Vec::new(),
            value_names: Vec::new(),
            loc: Loc::Unknown,
        }
    }

    /// Adds a value of type `ty` to the value table.
    pub fn new_value(&mut self, ty: Type, name: Option<String>) -> Value {
        let v = Value(self.value_types.len() as u32);
        self.value_types.push(ty);
        self.value_names.push(name);
        v
    }

    /// The type of `v`. Values come from this function; a foreign value is a bug of the caller.
    pub fn value_type(&self, v: Value) -> &Type {
        &self.value_types[v.index()]
    }

    pub fn value_name(&self, v: Value) -> Option<&str> {
        self.value_names.get(v.index()).and_then(|n| n.as_deref())
    }

    /// The parameter types, in order.
    pub fn param_types(&self) -> Vec<Type> {
        self.params
            .iter()
            .map(|p| self.value_type(*p).clone())
            .collect()
    }

    pub fn is_kernel(&self) -> bool {
        matches!(self.kind, FuncKind::Kernel { .. })
    }

    /// Warps per block, for a kernel.
    pub fn warps(&self) -> Option<u32> {
        match self.kind {
            FuncKind::Kernel { warps } => Some(warps),
            FuncKind::Helper => None,
        }
    }

    /// Visits every op of the body, depth first, in program order.
    pub fn walk<'a>(&'a self, mut f: impl FnMut(&'a Op)) {
        fn go<'a>(r: &'a Region, f: &mut impl FnMut(&'a Op)) {
            for op in &r.ops {
                f(op);
                for sub in &op.regions {
                    go(sub, f);
                }
            }
        }
        go(&self.body, &mut f);
    }
}

/// A set of kernels and the helpers they call.
#[derive(Clone, Debug, Default)]
pub struct Module {
    pub funcs: Vec<Func>,
}

impl Module {
    pub fn new() -> Module {
        Module::default()
    }

    pub fn func(&self, name: &str) -> Option<&Func> {
        self.funcs.iter().find(|f| f.name == name)
    }

    pub fn kernels(&self) -> impl Iterator<Item = &Func> {
        self.funcs.iter().filter(|f| f.is_kernel())
    }

    /// The kernel named `name` (helpers do not count).
    pub fn kernel(&self, name: &str) -> Option<&Func> {
        self.func(name).filter(|f| f.is_kernel())
    }

    /// The kernels' names, comma-separated, for "no kernel named …" errors.
    pub fn kernel_names(&self) -> String {
        self.kernels()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn push(&mut self, f: Func) {
        self.funcs.push(f);
    }
}
