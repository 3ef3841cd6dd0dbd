//! The verifier: checks that a module is well formed and well typed.
//!
//! [`verify`] checks every function of a module and returns every error it finds, each naming
//! the function, the op's position and name, where the op came from and what was expected. It
//! never panics, whatever the module holds: values out of range of a function's value table,
//! wrong arities and misplaced terminators are all reported as errors.
//!
//! The checks are split the way the op table is:
//!
//! | file | checks |
//! |---|---|
//! | `verify/func.rs` | function signatures, SSA (definition before use, single definition), regions and terminators, dispatch to the op families |
//! | `verify/calls.rs` | the call graph: no recursion; warp counts of kernels that (transitively) run warpgroup ops |
//! | `verify/arity.rs` | how many operands, results and regions each op takes |
//! | `verify/types.rs` | well-formed types (tile shapes, register dtypes, ranks, shared arrays) |
//! | `verify/expect.rs` | the op being checked and the `expect_*` helpers every family uses |
//! | `verify/scalar.rs` | `const`, grid and warp indices, `dim` |
//! | `verify/creation.rs` | `fill`, `splat`, `iota` |
//! | `verify/elementwise.rs` | `map.*`, `cmp.*`, `select`, `convert`, `transpose` |
//! | `verify/rowcol.rs` | `bcast_*`, `reduce*`, `mask.*` |
//! | `verify/mma.rs` | `mma.*` at warp and warpgroup scope, `mma_async.*` (wgmma's shapes and layouts), `mma_wait` |
//! | `verify/in_flight.rs` | no read of an `mma_async` accumulator before the `mma_wait` that retires it |
//! | `verify/memory.rs` | `alloc_shared`, `shared.index`, `load`, `store` and global-view indexing |
//! | `verify/copy.rs` | `copy`, `copy_async` |
//! | `verify/sort.rs` | `sort_row.*`, `topk_row` |
//! | `verify/gather.rs` | `gather_rows`, `gather`, `scatter_rows`, `scatter_add_rows`, `atomic_add` |
//! | `verify/atomic.rs` | `atomic_max`, `atomic_min`, `atomic_exch`, `atomic_cas`, `philox`, `device_assert` |
//! | `verify/sync.rs` | `sem.*`, `setmaxnreg`'s counts |
//! | `verify/registers.rs` | `setmaxnreg` in a kernel: every warp of a warpgroup runs it; the warpgroups' counts fit the registers the block holds at entry |
//! | `verify/control.rs` | `for`, `if`, `while`, `call` and what their regions must yield |

mod arity;
mod atomic;
mod calls;
mod control;
mod copy;
mod creation;
mod elementwise;
mod expect;
mod func;
mod gather;
mod in_flight;
mod memory;
mod mma;
mod registers;
mod rowcol;
mod scalar;
mod sort;
mod sync;
mod table;
mod types;

use std::fmt;

use crate::module::{Func, Loc, Module};
use crate::ops::Scope;

/// What was wrong with an op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyErrorKind {
    /// Wrong number of operands, results or regions.
    Arity {
        what: String,
        expected: String,
        found: usize,
    },
    /// An operand or result has the wrong kind of type (tile where a scalar was expected, …).
    Type {
        what: String,
        expected: String,
        found: String,
    },
    /// Element types disagree.
    Dtype {
        what: String,
        expected: String,
        found: String,
    },
    /// Tile or vector shapes disagree.
    Shape {
        what: String,
        expected: String,
        found: String,
    },
    /// A register tile has the wrong layout for the op.
    Layout {
        what: String,
        expected: String,
        found: String,
    },
    /// The op runs at a scope it does not support.
    Scope { expected: Vec<Scope>, found: Scope },
    /// A value lives in the wrong memory space (register, shared, global).
    MemorySpace {
        what: String,
        expected: String,
        found: String,
    },
    /// A value is used where it is not defined.
    Undefined { value: String },
    /// A region does not end in the right terminator, or a terminator is not last.
    Terminator { expected: String, found: String },
    /// An attribute is out of range.
    Attribute {
        what: String,
        expected: String,
        found: String,
    },
    /// A structural rule is broken (unknown callee, alloc_shared outside the top level, …).
    Structure { message: String },
}

impl fmt::Display for VerifyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyErrorKind::Arity {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "wrong number of {what}: expected {expected}, found {found}"
                )
            }
            VerifyErrorKind::Type {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "type mismatch for {what}: expected {expected}, found {found}"
                )
            }
            VerifyErrorKind::Dtype {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "dtype mismatch for {what}: expected {expected}, found {found}"
                )
            }
            VerifyErrorKind::Shape {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "shape mismatch for {what}: expected {expected}, found {found}"
                )
            }
            VerifyErrorKind::Layout {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "layout mismatch for {what}: expected {expected}, found {found}"
                )
            }
            VerifyErrorKind::Scope { expected, found } => {
                let e: Vec<&str> = expected.iter().map(|s| s.name()).collect();
                write!(
                    f,
                    "scope mismatch: op runs at {}, found {found}",
                    e.join(" or ")
                )
            }
            VerifyErrorKind::MemorySpace {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "memory space mismatch for {what}: expected {expected}, found {found}"
                )
            }
            VerifyErrorKind::Undefined { value } => write!(f, "use of undefined value {value}"),
            VerifyErrorKind::Terminator { expected, found } => {
                write!(f, "bad terminator: expected {expected}, found {found}")
            }
            VerifyErrorKind::Attribute {
                what,
                expected,
                found,
            } => {
                write!(
                    f,
                    "bad attribute {what}: expected {expected}, found {found}"
                )
            }
            VerifyErrorKind::Structure { message } => f.write_str(message),
        }
    }
}

/// A verifier error: the function, the op's position and name, where it came from, and what was
/// wrong.
///
/// Errors about a function as a whole (its name, warps, parameters, results, or a body that
/// does not end in `return`) have an empty `path` and `op`, and the function's `loc`; they print
/// as `in @f (loc): …`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("in @{func}{}: {kind}", position(.path, .op, .loc))]
pub struct VerifyError {
    pub func: String,
    /// Position of the op: indices of ops and regions from the function body down, such as `4`
    /// (fifth op of the body) or `4.0.2` (third op of region 0 of op 4). Empty for errors about
    /// the function itself.
    pub path: String,
    /// The op's name in the text form (empty for errors about the function itself).
    pub op: String,
    pub loc: Loc,
    pub kind: VerifyErrorKind,
}

/// The middle of an error's text: `, op 4.0.2 `load` (loc)`, or ` (loc)` for a function.
fn position(path: &str, op: &str, loc: &Loc) -> String {
    if path.is_empty() && op.is_empty() {
        format!(" ({loc})")
    } else {
        format!(", op {path} `{op}` ({loc})")
    }
}

impl VerifyError {
    /// An error about function `f` as a whole.
    fn at_func(f: &Func, kind: VerifyErrorKind) -> VerifyError {
        VerifyError {
            func: f.name.clone(),
            path: String::new(),
            op: String::new(),
            loc: f.loc,
            kind,
        }
    }
}

/// Verifies a module. Returns every error found (at least one on failure).
///
/// Errors are collected rather than returned at the first: every function and every op is
/// checked. Where one mistake would make later checks of the same op meaningless (an operand
/// missing from the value table, an operand of an ill-formed type, a wrong operand count), those
/// checks are skipped, so that each root cause is reported once.
pub fn verify(m: &Module) -> Result<(), Vec<VerifyError>> {
    let mut errors = Vec::new();
    let funcs = control::FuncTable::new(m);
    let mut summaries = Vec::with_capacity(m.funcs.len());
    for (i, f) in m.funcs.iter().enumerate() {
        if let Some(first) = funcs.first(&f.name).filter(|&first| first != i) {
            errors.push(VerifyError::at_func(
                f,
                VerifyErrorKind::Structure {
                    message: format!(
                        "duplicate function name @{}: function {i} of the module has the name of function {first}",
                        f.name
                    ),
                },
            ));
        }
        let before = errors.len();
        summaries.push(func::check(&funcs, f, &mut errors));
        // On a well-formed function only: it walks values and regions without re-checking them.
        if errors.len() == before {
            in_flight::check(f, &mut errors);
        }
    }
    calls::check(m, &summaries, &mut errors);
    // On a well-formed module only: it follows calls, which must not recurse.
    if errors.is_empty() {
        for f in &m.funcs {
            registers::check(m, f, &mut errors);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
