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

/// How deeply regions may nest in a function: at most `MAX_NESTING` regions enclose any op, the
/// function body counting as the first (an op of the body is at level 1, an op inside an `if` of
/// the body at level 2). The parser rejects deeper text (and array types nested deeper) with an
/// error at the line that goes too deep, the verifier rejects deeper modules (which the builder
/// or code building [`Op`]s directly can make), and so the interpreter and every pass that
/// recurses over a verified module's regions stay within a fixed stack depth. Printing,
/// walking, cloning and dropping work at any depth.
///
/// Kernels nest a handful of levels (loops in loops with a branch inside); 256 leaves wide room.
/// Measured at this depth: parsing, verifying and running take under 1 MiB of stack in an
/// unoptimized build (opt-level 0) and under 512 KiB at opt-level 1 or more, within the 2 MiB a
/// test or spawned thread gets by default (the main thread has 8 MiB).
pub const MAX_NESTING: usize = 256;

/// A list of ops with block arguments (loop induction variables and carried values).
#[derive(Debug, Default)]
pub struct Region {
    pub args: Vec<Value>,
    pub ops: Vec<Op>,
}

/// Cloning is iterative, as dropping is: a region nested thousands deep clones without
/// overflowing the stack.
impl Clone for Region {
    fn clone(&self) -> Region {
        /// A region being copied (the next op of `src` to copy), or an op whose regions are
        /// being copied (`dst` has the ones done so far).
        enum Copying<'a> {
            Region {
                src: &'a Region,
                dst: Region,
                next: usize,
            },
            Op {
                src: &'a Op,
                dst: Op,
            },
        }
        let shell = |op: &Op| Op {
            kind: op.kind.clone(),
            scope: op.scope,
            operands: op.operands.clone(),
            results: op.results.clone(),
            regions: Vec::with_capacity(op.regions.len()),
            loc: op.loc,
        };
        let start = |src: &Region| Region {
            args: src.args.clone(),
            ops: Vec::with_capacity(src.ops.len()),
        };
        let mut stack = vec![Copying::Region {
            src: self,
            dst: start(self),
            next: 0,
        }];
        loop {
            let finished = match stack.last_mut() {
                None => return Region::default(),
                Some(Copying::Region { src, dst, next }) => match src.ops.get(*next) {
                    Some(op) => {
                        *next += 1;
                        if op.regions.is_empty() {
                            dst.ops.push(shell(op));
                        } else {
                            stack.push(Copying::Op {
                                src: op,
                                dst: shell(op),
                            });
                        }
                        continue;
                    }
                    None => stack.pop(),
                },
                Some(Copying::Op { src, dst }) => match src.regions.get(dst.regions.len()) {
                    Some(r) => {
                        let frame = Copying::Region {
                            src: r,
                            dst: start(r),
                            next: 0,
                        };
                        stack.push(frame);
                        continue;
                    }
                    None => stack.pop(),
                },
            };
            match (finished, stack.last_mut()) {
                (Some(Copying::Region { dst, .. }), None) => return dst,
                (Some(Copying::Region { dst: r, .. }), Some(Copying::Op { dst, .. })) => {
                    dst.regions.push(r)
                }
                (Some(Copying::Op { dst: op, .. }), Some(Copying::Region { dst, .. })) => {
                    dst.ops.push(op)
                }
                // Regions sit in ops and ops in regions; nothing else is ever pushed.
                _ => return Region::default(),
            }
        }
    }
}

/// Dropping is iterative: the regions nested in this one are moved onto a list and dropped one
/// by one, so that a region nested thousands deep (which the builder can make) does not overflow
/// the stack as the default, recursive drop would.
impl Drop for Region {
    fn drop(&mut self) {
        if self.ops.iter().all(|op| op.regions.is_empty()) {
            return;
        }
        let mut pending: Vec<Region> = Vec::new();
        for op in &mut self.ops {
            pending.append(&mut op.regions);
        }
        while let Some(mut r) = pending.pop() {
            for op in &mut r.ops {
                pending.append(&mut op.regions);
            }
            // `r` now holds no nested regions: its own drop returns at once.
        }
    }
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
    /// A kernel whose author accepts register spills (`#[kernel(allow_spills)]`; in the text
    /// form `allow_spills` after `warps(N)`). Code generation refuses a kernel whose live
    /// values do not fit the target's registers unless this is set; it changes no semantics.
    pub allow_spills: bool,
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
            allow_spills: false,
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

    /// Visits every op of the body, depth first, in program order. Iterative: any depth of
    /// nesting is walked without growing the call stack.
    pub fn walk<'a>(&'a self, mut f: impl FnMut(&'a Op)) {
        let mut stack = vec![Walk::Ops(self.body.ops.iter())];
        while let Some(top) = stack.last_mut() {
            match top {
                Walk::Ops(ops) => match ops.next() {
                    Some(op) => {
                        f(op);
                        stack.push(Walk::Regions(op.regions.iter()));
                    }
                    None => {
                        stack.pop();
                    }
                },
                Walk::Regions(regions) => match regions.next() {
                    Some(r) => stack.push(Walk::Ops(r.ops.iter())),
                    None => {
                        stack.pop();
                    }
                },
            }
        }
    }
}

/// A position of [`Func::walk`]'s explicit stack: the rest of a region's ops, or the rest of an
/// op's regions.
enum Walk<'a> {
    Ops(std::slice::Iter<'a, Op>),
    Regions(std::slice::Iter<'a, Region>),
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
