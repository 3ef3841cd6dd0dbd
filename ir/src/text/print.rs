//! The printer: the canonical text of a module.
//!
//! Output is deterministic and parses back to a module that prints the same text. Values are
//! written `%name` when [`Func::value_names`] names them and `%N` otherwise, numbered in order of
//! definition in the text; a name that appears twice in a function gets a `.1`, `.2`, … suffix on
//! its later definitions.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use super::lex::{is_ident, symbol_text};
use crate::module::{Func, FuncKind, Module, Op, Region, Value};
use crate::ops::{OpKind, Scope};

/// Prints a module in the text form: its functions in order, separated by blank lines.
pub fn print_module(m: &Module) -> String {
    m.funcs
        .iter()
        .map(print_func)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints one function in the text form, ending with a newline.
pub fn print_func(f: &Func) -> String {
    let mut p = Printer {
        func: f,
        names: value_names(f),
        out: String::new(),
    };
    p.func();
    p.out
}

struct Printer<'f> {
    func: &'f Func,
    /// The text of every value defined in the function, without `%`.
    names: HashMap<Value, String>,
    out: String,
}

impl Printer<'_> {
    fn func(&mut self) {
        let f = self.func;
        let keyword = match f.kind {
            FuncKind::Kernel { .. } => "kernel",
            FuncKind::Helper => "func",
        };
        let _ = write!(self.out, "{keyword} {}(", symbol_text(&f.name));
        self.comma_separated(&f.params, Self::typed_value);
        self.out.push(')');
        match f.kind {
            FuncKind::Kernel { warps } => {
                let _ = write!(self.out, " warps({warps})");
                if f.allow_spills {
                    self.out.push_str(" allow_spills");
                }
            }
            FuncKind::Helper => {
                let results: Vec<String> = f.results.iter().map(ToString::to_string).collect();
                let _ = write!(self.out, " -> ({})", results.join(", "));
            }
        }
        self.out.push(' ');
        self.region_body(&f.body, 0);
        self.out.push('\n');
    }

    /// `{`, the ops one level deeper than `depth`, and `}` at `depth`.
    ///
    /// Iterative (an explicit list of what is left to print), so that a module of any depth
    /// prints without growing the call stack; the parser then rejects text nested deeper than
    /// [`MAX_NESTING`](crate::MAX_NESTING).
    fn region_body(&mut self, r: &Region, depth: usize) {
        let mut todo = vec![Print::Body(r, depth)];
        while let Some(task) = todo.pop() {
            match task {
                Print::Body(r, depth) => {
                    self.out.push_str("{\n");
                    todo.push(Print::Close(depth));
                    todo.extend(r.ops.iter().rev().map(|op| Print::Op(op, depth + 1)));
                }
                Print::Close(depth) => {
                    self.indent(depth);
                    self.out.push('}');
                }
                Print::Op(op, depth) => {
                    self.op_head(op, depth);
                    todo.push(Print::OpTail(op));
                    for r in op.regions.iter().rev() {
                        todo.push(Print::Body(r, depth));
                        todo.push(Print::RegionArgs(r));
                    }
                }
                Print::RegionArgs(r) => {
                    self.out.push(' ');
                    if !r.args.is_empty() {
                        self.out.push('(');
                        self.comma_separated(&r.args, Self::typed_value);
                        self.out.push_str(") ");
                    }
                }
                Print::OpTail(op) => {
                    if !op.results.is_empty() {
                        self.out.push_str(" : ");
                        self.comma_separated(&op.results, Self::value_type);
                    }
                    self.out.push('\n');
                }
            }
        }
    }

    /// An op up to its operands: `%r = name[attr] @scope (operands)`, indented to `depth`.
    fn op_head(&mut self, op: &Op, depth: usize) {
        self.indent(depth);
        if !op.results.is_empty() {
            self.comma_separated(&op.results, Self::value);
            self.out.push_str(" = ");
        }
        self.out.push_str(&op.kind.name());
        match &op.kind {
            // A callee that is not a plain name is quoted, as in the function's header.
            OpKind::Call(callee) | OpKind::DeviceAssert(callee) => {
                let _ = write!(self.out, "[{}]", symbol_text(callee));
            }
            kind => {
                if let Some(attr) = kind.attr_text() {
                    let _ = write!(self.out, "[{attr}]");
                }
            }
        }
        if op.scope != Scope::Warp {
            let _ = write!(self.out, " @{}", op.scope.name());
        }
        self.out.push_str(" (");
        self.comma_separated(&op.operands, Self::value);
        self.out.push(')');
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn value(&mut self, v: Value) {
        match self.names.get(&v) {
            Some(name) => {
                let _ = write!(self.out, "%{name}");
            }
            // A value used but defined nowhere in the function: the verifier rejects such IR;
            // the printer still shows it, in a form that cannot be mistaken for a defined value.
            None => {
                let _ = write!(self.out, "%?{}", v.0);
            }
        }
    }

    /// Writes each of `values` with `write`, separated by `, `.
    fn comma_separated(&mut self, values: &[Value], write: fn(&mut Self, Value)) {
        for (i, &v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            write(self, v);
        }
    }

    fn value_type(&mut self, v: Value) {
        match self.func.value_types.get(v.index()) {
            Some(t) => {
                let _ = write!(self.out, "{t}");
            }
            None => self.out.push('?'),
        }
    }

    /// `%v: type`, for parameters and region arguments.
    fn typed_value(&mut self, v: Value) {
        self.value(v);
        self.out.push_str(": ");
        self.value_type(v);
    }
}

/// Chooses the text of every value defined in `f`.
///
/// Named values keep their name (made a valid name if it is not one: other characters become
/// `_`, and a name starting with a digit or `.` gets a leading `_`). The second and later
/// definitions of a name get the first suffix `.k` (k = 1, 2, …) that no other value of the
/// function is named. Unnamed values are numbered from 0 in order of definition.
fn value_names(f: &Func) -> HashMap<Value, String> {
    let mut defs = f.params.clone();
    definitions(&f.body, &mut defs);
    let given = |v: Value| f.value_name(v).and_then(valid_name);
    let taken_by_someone: HashSet<String> = defs.iter().filter_map(|&v| given(v)).collect();

    let mut names = HashMap::new();
    let mut used = HashSet::new();
    let mut next_number = 0u32;
    let mut next_suffix: HashMap<String, u32> = HashMap::new();
    for v in defs {
        if names.contains_key(&v) {
            continue;
        }
        let name = match given(v) {
            None => {
                next_number += 1;
                (next_number - 1).to_string()
            }
            Some(base) if !used.contains(&base) => base,
            Some(base) => {
                // Start after the last suffix given to this base: many values sharing a name
                // (an unrolled loop's `acc`) then cost one try each, not one per earlier value.
                let k = next_suffix.entry(base.clone()).or_insert(1u32);
                loop {
                    let candidate = format!("{base}.{k}");
                    *k += 1;
                    if !taken_by_someone.contains(&candidate) && !used.contains(&candidate) {
                        break candidate;
                    }
                }
            }
        };
        used.insert(name.clone());
        names.insert(v, name);
    }
    names
}

/// What is left to print of a region (see [`Printer::region_body`]).
enum Print<'f> {
    /// A region's `{`, its ops one level deeper than the depth, and its `}`.
    Body(&'f Region, usize),
    /// The `}` of a region at a depth.
    Close(usize),
    /// An op at a depth, with its regions.
    Op(&'f Op, usize),
    /// ` (args) ` before a region's `{`.
    RegionArgs(&'f Region),
    /// An op's result types and the end of its line.
    OpTail(&'f Op),
}

/// The values defined in `r`, in text order: each op's results, then its regions' arguments and
/// contents. Iterative, as the printer is.
fn definitions(r: &Region, out: &mut Vec<Value>) {
    enum Next<'a> {
        Ops(std::slice::Iter<'a, Op>),
        Regions(std::slice::Iter<'a, Region>),
    }
    let mut stack = vec![Next::Ops(r.ops.iter())];
    while let Some(top) = stack.last_mut() {
        match top {
            Next::Ops(ops) => match ops.next() {
                Some(op) => {
                    out.extend(&op.results);
                    stack.push(Next::Regions(op.regions.iter()));
                }
                None => {
                    stack.pop();
                }
            },
            Next::Regions(regions) => match regions.next() {
                Some(sub) => {
                    out.extend(&sub.args);
                    stack.push(Next::Ops(sub.ops.iter()));
                }
                None => {
                    stack.pop();
                }
            },
        }
    }
}

/// `name` made a valid value name (`[A-Za-z_][A-Za-z0-9_.]*`); `None` for an empty name.
fn valid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    if is_ident(name) {
        return Some(name.to_string());
    }
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    Some(out)
}
