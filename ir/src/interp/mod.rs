//! The CPU interpreter: runs a kernel over a grid of blocks and defines what Tile IR means.
//!
//! Blocks run one after another and share the global tensors (so atomics and scatter-adds of
//! different blocks accumulate). Within a block every warp is a separate program with its own
//! registers; warps share the block's shared memory and synchronize through `barrier @block` and
//! semaphores. The scheduler runs a warp until it blocks (or, with
//! [`Schedule::RoundRobin`], for a fixed number of ops), then the next warp that can make
//! progress. When every unfinished warp waits, the run stops with [`InterpError::Deadlock`], naming
//! each warp and the op it waits at.
//!
//! Out-of-bounds accesses that the IR does not define as masked are errors naming the op, the
//! index and the bounds; nothing is ever read or written outside a tensor or a shared object.
//!
//! Every run is bounded: an op budget, a memory budget checked before each allocation, and an
//! optional [`CancelToken`] (see [`Launch`] and the crate documentation, *Bounded execution and nesting*).
//!
//! ```
//! use tilekit_ir::{interp, parse_module, ScalarType};
//! use tilekit_ir::interp::{Arg, HostTensor};
//!
//! let m = parse_module(
//!     "kernel @double(%x: gl<f32, 1, mut>) warps(1) {
//!        %0 = block_idx.x : i32
//!        %1 = load (%x, %0) : rv<f32, 16, rows>
//!        %2 = map.add (%1, %1) : rv<f32, 16, rows>
//!        store (%x, %2, %0)
//!        return ()
//!      }",
//! ).unwrap();
//! let x = HostTensor::new(ScalarType::F32, &[20], &(0..20).map(f64::from).collect::<Vec<_>>()).unwrap();
//! let mut args = vec![Arg::Tensor(x)];
//! interp::run(&m, "double", [2, 1, 1], &mut args).unwrap();
//! assert_eq!(args[0].tensor().unwrap().get(&[19]), Some(38.0));
//! ```

mod exec;
mod global_race;
mod index_check;
mod memory;
mod mma_groups;
mod race;
mod sort;
mod table;
mod tensor;
mod warp_stores;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::module::{Func, Loc, Module, Op, Region, Value};
use crate::ops::OpKind;
use crate::types::Type;
use crate::verify::{verify, VerifyError};

pub use table::TensorTable;
pub use tensor::{Arg, HostTensor};

use memory::{BlockMemory, SharedRef};
use mma_groups::MmaGroups;

pub use crate::numeric::Numerics;
use global_race::GlobalRace;
pub use global_race::GLOBAL_RACE_MAX_ELEMENTS;
use race::RaceCheck;
use warp_stores::WarpStores;

/// How the warps of a block take turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Run a warp until it blocks or finishes, then the next (in warp order). Deterministic.
    #[default]
    UntilBlocked,
    /// Run each warp for at most `quantum` ops per turn, interleaving warps finely; useful to
    /// expose missing synchronization.
    RoundRobin { quantum: u32 },
}

/// How to launch a kernel on the interpreter: the grid, the warp schedule, and the bounds of the
/// run (see the crate documentation, *Bounded execution and nesting*).
///
/// ```
/// use tilekit_ir::interp::{CancelToken, Launch};
///
/// let cancel = CancelToken::new();
/// let launch = Launch::grid([4, 1, 1])
///     .op_budget(1_000_000)
///     .memory_budget(256 << 20)
///     .cancel(cancel.clone());
/// // Another thread may call `cancel.cancel()` to stop the run with `InterpError::Cancelled`.
/// assert_eq!(launch.op_budget, 1_000_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Blocks along x, y and z.
    pub grid: [u32; 3],
    pub schedule: Schedule,
    /// The most ops the run may execute, summed over every warp of every block
    /// ([`DEFAULT_OP_BUDGET`] unless set); past it the run stops with
    /// [`InterpError::OpBudget`].
    pub op_budget: u64,
    /// The most bytes the interpreter may hold at once for the run: register values, shared
    /// memory, pending async copies and bookkeeping, but not the argument tensors, which the
    /// caller allocates ([`DEFAULT_MEMORY_BUDGET`] unless set). Checked before allocating; past
    /// it the run stops with [`InterpError::MemoryBudget`].
    pub memory_budget: u64,
    /// A token another thread may set to stop the run with [`InterpError::Cancelled`].
    pub cancel: Option<CancelToken>,
    /// Whether the run checks that every two accesses of different warps (or of a warp and an
    /// asynchronous copy) to one shared element, one of them a write, are ordered by a
    /// barrier, a semaphore phase or a copy's completion; the first that is not stops the run
    /// with [`InterpError::Race`]. On by default; blocks with more than
    /// [`RACE_CHECK_MAX_SHARED_ELEMENTS`] elements of shared memory are not checked.
    ///
    /// It checks global memory too: two accesses to one element of a mutable global view by
    /// different blocks, or by warps of one block that no barrier or semaphore phase orders,
    /// are a race ([`InterpError::GlobalRace`]) when one of them is a plain (not atomic)
    /// write. Views of pointer-table entries are checked as the kernel's parameters are;
    /// tensors of more than [`GLOBAL_RACE_MAX_ELEMENTS`] elements are not.
    ///
    /// It also checks that a warp reloads a global element it stored only as the same lane
    /// would, or after a barrier or semaphore wait (the rule is in the docs of
    /// `interp::warp_stores`; [`InterpError::Runtime`] otherwise).
    pub race_check: bool,
    /// Whether a tile or vector of a global view addressed by coordinates computed from a value
    /// loaded from memory must overlap the view (else [`InterpError::OutOfBounds`]; edge tiles
    /// that overlap it are masked as always). On by default.
    pub index_check: bool,
    /// Whether every writable view the kernel only writes must have all its elements written
    /// by the run (else [`InterpError::Unwritten`]). Off by default: a kernel may write part of
    /// an output on purpose.
    pub check_unwritten: bool,
    /// How the approximate float functions (`exp2`, `log2`, `rsqrt`, `tanh` and the functions
    /// built on them) are evaluated: correctly rounded ([`Numerics::Exact`], the default) or
    /// with the flushing and error bounds the GPUs' fast instructions may show
    /// ([`Numerics::Approx`]; see [`crate::numeric`]). A tolerance checked in both modes holds
    /// on every target.
    pub numerics: Numerics,
}

impl Launch {
    /// A launch over `grid` with the default schedule and budgets.
    pub fn grid(grid: [u32; 3]) -> Launch {
        Launch {
            grid,
            schedule: Schedule::UntilBlocked,
            op_budget: DEFAULT_OP_BUDGET,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            cancel: None,
            race_check: true,
            index_check: true,
            check_unwritten: false,
            numerics: Numerics::Exact,
        }
    }

    /// The same launch with another warp schedule.
    pub fn schedule(mut self, schedule: Schedule) -> Launch {
        self.schedule = schedule;
        self
    }

    /// The same launch with at most `ops` ops executed (over every warp of every block).
    pub fn op_budget(mut self, ops: u64) -> Launch {
        self.op_budget = ops;
        self
    }

    /// The same launch with the interpreter holding at most `bytes` bytes at once.
    pub fn memory_budget(mut self, bytes: u64) -> Launch {
        self.memory_budget = bytes;
        self
    }

    /// The same launch with the approximate float functions evaluated as `numerics` says.
    pub fn numerics(mut self, numerics: Numerics) -> Launch {
        self.numerics = numerics;
        self
    }

    /// The same launch, stopped when `token` is cancelled.
    pub fn cancel(mut self, token: CancelToken) -> Launch {
        self.cancel = Some(token);
        self
    }

    /// The same launch with the race checks on or off (see [`Launch::race_check`]).
    pub fn race_check(mut self, on: bool) -> Launch {
        self.race_check = on;
        self
    }

    /// The same launch with the check of indices loaded from memory on or off (see
    /// [`Launch::index_check`]).
    pub fn index_check(mut self, on: bool) -> Launch {
        self.index_check = on;
        self
    }

    /// The same launch with the unwritten-output check on or off (see
    /// [`Launch::check_unwritten`]).
    pub fn check_unwritten(mut self, on: bool) -> Launch {
        self.check_unwritten = on;
        self
    }
}

/// The most shared-memory elements a block may have for [`Launch::race_check`] to check it:
/// the check keeps the last write and the reads since it for every element (about 40 bytes
/// each, on top of the element's 8), so this bounds it to about 40 MiB per block. Every
/// library kernel's block is far smaller.
pub const RACE_CHECK_MAX_SHARED_ELEMENTS: u64 = 1 << 20;

/// The default [`Launch::op_budget`]: 10^9 ops.
///
/// Measured through [`RunStats::ops`]: the library kernels' self-tests (`tilekit selftest
/// --device cpu`) run at most about 3·10^3 ops, the workspace's interpreter tests at most about
/// 10^4, and the demo's acceptance shapes at most about 1.3·10^5 (AdamW over 1025 blocks), so
/// the default leaves a margin of more than 10^3 even for kernels a hundred times larger.
/// Simple ops run at roughly 10^7 per second, so a kernel that never ends stops within a
/// couple of minutes, and a grid with more than 10^9 warps (such as `[2^31 − 1, 1, 1]`) is
/// refused at once. Callers that want a quicker answer (fuzzers, services) set a smaller budget
/// or a [`CancelToken`].
pub const DEFAULT_OP_BUDGET: u64 = 1_000_000_000;

/// The default [`Launch::memory_budget`]: 4 GiB.
///
/// The interpreter holds every element of a register value or shared object as an f64 (8
/// bytes), and one value may have up to [`MAX_VALUE_ELEMENTS`] elements (128 MiB). Measured
/// through [`RunStats::peak_bytes`], the library kernels at their self-test shapes and the
/// demo's acceptance shapes hold at most about 1.5 MB; 4 GiB admits kernels thousands of times
/// larger (a block of 32 warps with a dozen 128 MiB tiles in flight would not fit, and is
/// better run on a GPU), leaves room for several runs at once on a machine with a few tens of
/// GiB, and stops a module that would exhaust memory before it allocates.
pub const DEFAULT_MEMORY_BUDGET: u64 = 4 << 30;

/// How often, in ops executed by a block, a run looks at its [`CancelToken`] (and at the
/// start of every block): a cancelled run stops within a few thousand ops.
const CANCEL_INTERVAL: u64 = 1 << 12;

/// Elements of an op's largest tile or vector operand or result that count as one op against
/// [`Launch::op_budget`] (see [`RunStats::ops`]).
pub const ELEMENTS_PER_OP: u64 = 16;

/// A flag that stops a run from another thread: clone it, pass one clone to
/// [`Launch::cancel`], and call [`CancelToken::cancel`] on another. The run returns
/// [`InterpError::Cancelled`] within a few thousand ops. Clones share the flag; two tokens are
/// equal when they share it.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every run holding this token (or a clone) to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelToken::cancel`] has been called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl PartialEq for CancelToken {
    fn eq(&self, other: &CancelToken) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CancelToken {}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    pub blocks: u64,
    /// Ops executed, summed over every warp of every block (what [`Launch::op_budget`] bounds).
    /// An op on tiles or vectors counts once per [`ELEMENTS_PER_OP`] elements of its largest
    /// operand or result (at least once), so that one op over a huge shared tile cannot run for
    /// seconds on a budget of one.
    pub ops: u64,
    /// The most bytes the interpreter held at once, as counted against
    /// [`Launch::memory_budget`].
    pub peak_bytes: u64,
}

/// Where in a kernel run something happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub block: [u32; 3],
    pub warp: u32,
    /// The function the op is in.
    pub func: String,
    /// Position of the op (as in verifier errors: `4.0.2`).
    pub path: String,
    pub op: String,
    pub loc: Loc,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z] = self.block;
        write!(
            f,
            "block ({x}, {y}, {z}) warp {}: @{} op {} `{}` ({})",
            self.warp, self.func, self.path, self.op, self.loc
        )
    }
}

/// An interpreter error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InterpError {
    #[error("no kernel named `{name}` in the module (kernels: {available})")]
    UnknownKernel { name: String, available: String },
    #[error("the module does not verify:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<VerifyError>),
    #[error("bad kernel argument: {message}")]
    Argument { message: String },
    #[error("{site}: out of bounds: {what} {index} is outside {bounds}")]
    OutOfBounds {
        site: Box<Site>,
        what: String,
        index: String,
        bounds: String,
    },
    #[error("deadlock in block ({}, {}, {}): every unfinished warp waits:\n{}", block[0], block[1], block[2], waits.join("\n"))]
    Deadlock { block: [u32; 3], waits: Vec<String> },
    #[error("{site}: {message}")]
    Runtime { site: Box<Site>, message: String },
    /// A `device_assert` whose condition was false: its message, where (block and warp), and
    /// for a tile or vector condition the first false element (row, column).
    #[error("{site}: device_assert failed: {message}{}", match element { Some((r, c)) => format!(" (element ({r}, {c}) of the condition is false)"), None => String::new() })]
    AssertFailed {
        site: Box<Site>,
        message: String,
        element: Option<(usize, usize)>,
    },
    /// Two accesses to one shared element, at least one a write, that no barrier, semaphore
    /// phase or copy completion orders (see [`Launch::race_check`]).
    #[error(
        "data race on element ({}, {}) of shared object {object}: the {later_kind} at {later} is not ordered after the {earlier_kind} at {earlier} (no barrier, semaphore wait or copy completion between them)",
        element.0, element.1
    )]
    Race {
        object: String,
        /// Row and column of the element in its object.
        element: (usize, usize),
        earlier: Box<Site>,
        earlier_kind: String,
        later: Box<Site>,
        later_kind: String,
    },
    /// Two accesses to one element of a global tensor, one of them a plain (not atomic) write,
    /// by different blocks or by warps of one block that no barrier or semaphore phase orders
    /// (see [`Launch::race_check`]).
    #[error(
        "kernel @{kernel}: data race on element {element} of global tensor {tensor}: the {later_kind} at {later} is not ordered after the {earlier_kind} at {earlier} ({})",
        if earlier.block == later.block { "no barrier or semaphore wait between them" } else { "different blocks of one launch are never ordered; use atomics, or a separate launch" }
    )]
    GlobalRace {
        kernel: String,
        /// The kernel argument: `` `name` `` or `` entry e of pointer table `name` ``.
        tensor: String,
        /// The element's index in the tensor (when its strides give one) and storage offset.
        element: String,
        earlier: Box<Site>,
        /// What the earlier access was: `read`, `write` or `atomic update`.
        earlier_kind: &'static str,
        later: Box<Site>,
        later_kind: &'static str,
    },
    /// A writable view the kernel only writes has elements the run never wrote (see
    /// [`Launch::check_unwritten`]); they keep what they held before the run.
    #[error(
        "kernel @{kernel}: {unwritten} of the {total} elements of output `{param}` were never written, the first at {index:?} (a grid too small, or a missing store?)"
    )]
    Unwritten {
        kernel: String,
        param: String,
        index: Vec<usize>,
        unwritten: usize,
        total: usize,
    },
    /// The module verifies but is beyond what the interpreter holds in memory (see
    /// [`MAX_VALUE_ELEMENTS`] and [`MAX_SHARED_ELEMENTS`]).
    #[error("@{func}: {message}")]
    TooLarge { func: String, message: String },
    /// The run executed [`Launch::op_budget`] ops (or its grid needs more ops than that), at
    /// `site` when it stopped at an op.
    #[error(
        "kernel @{kernel}{}: the interpreter's op budget of {budget} ops is spent ({detail}); raise it with `Launch::op_budget` if the kernel is meant to run this long",
        at(.site)
    )]
    OpBudget {
        kernel: String,
        site: Option<Box<Site>>,
        budget: u64,
        detail: String,
    },
    /// Holding what the run needs next would take the interpreter past
    /// [`Launch::memory_budget`]; nothing was allocated for it.
    #[error(
        "kernel @{kernel}{}: {detail} would bring the interpreter's memory to {needed} bytes, over its memory budget of {budget} bytes; raise it with `Launch::memory_budget`",
        at(.site)
    )]
    MemoryBudget {
        kernel: String,
        site: Option<Box<Site>>,
        budget: u64,
        needed: u64,
        detail: String,
    },
    /// The run's [`CancelToken`] was cancelled.
    #[error("kernel @{kernel}{}: the run was cancelled after {ops} ops", at(.site))]
    Cancelled {
        kernel: String,
        site: Option<Box<Site>>,
        ops: u64,
    },
}

/// ` at <site>` when there is one (for the budget errors).
fn at(site: &Option<Box<Site>>) -> String {
    site.as_ref()
        .map_or_else(String::new, |s| format!(" at {s}"))
}

/// The most elements a register tile or vector, or one shared object, may have on the
/// interpreter (it holds each element as an f64).
pub const MAX_VALUE_ELEMENTS: u64 = 1 << 24;

/// The most elements the shared memory of one block may hold on the interpreter, over every
/// `alloc_shared` of its kernel; a semaphore counts as one element.
pub const MAX_SHARED_ELEMENTS: u64 = 1 << 26;

/// Runs `kernel` over `grid` with `args` (one per kernel parameter, in order); tensors passed
/// for mutable views are updated in place. Verifies the module first. Runs within the default
/// budgets ([`DEFAULT_OP_BUDGET`], [`DEFAULT_MEMORY_BUDGET`]); [`run_with`] takes others.
pub fn run(
    module: &Module,
    kernel: &str,
    grid: [u32; 3],
    args: &mut [Arg],
) -> Result<RunStats, InterpError> {
    run_with(module, kernel, Launch::grid(grid), args)
}

/// [`run`] with a chosen [`Launch`] configuration: schedule, budgets and cancel token.
pub fn run_with(
    module: &Module,
    kernel: &str,
    launch: Launch,
    args: &mut [Arg],
) -> Result<RunStats, InterpError> {
    verify(module).map_err(InterpError::Invalid)?;
    let func = module
        .kernel(kernel)
        .ok_or_else(|| InterpError::UnknownKernel {
            name: kernel.to_string(),
            available: module.kernel_names(),
        })?;
    check_sizes(module, func)?;
    check_args(func, args)?;
    if let Schedule::RoundRobin { quantum: 0 } = launch.schedule {
        return Err(InterpError::Argument {
            message: "a round-robin schedule needs a quantum of at least 1 op".into(),
        });
    }
    if let Some(n) = launch.grid.iter().find(|&&n| n > i32::MAX as u32) {
        return Err(InterpError::Argument {
            message: format!(
                "the grid {:?} has {n} blocks along one dimension; `block_idx` and `grid_dim` are i32, so at most {}",
                launch.grid,
                i32::MAX
            ),
        });
    }
    let bounds = Bounds::new(module, func, &launch)?;
    let watched = launch
        .check_unwritten
        .then(|| index_check::poison_outputs(func, args));
    let global_race = launch
        .race_check
        .then(|| GlobalRace::new(module, func, launch.grid))
        .flatten()
        .map(RefCell::new);
    let mut stats = RunStats {
        peak_bytes: bounds.block_bytes,
        ..RunStats::default()
    };
    let [gx, gy, gz] = launch.grid;
    for z in 0..gz {
        for y in 0..gy {
            for x in 0..gx {
                if bounds.cancelled() {
                    return Err(InterpError::Cancelled {
                        kernel: func.name.clone(),
                        site: None,
                        ops: stats.ops,
                    });
                }
                let mut block =
                    BlockRun::new(&bounds, [x, y, z], stats.ops, args, global_race.as_ref());
                block.run()?;
                stats.blocks += 1;
                stats.ops += block.ops;
                stats.peak_bytes = stats.peak_bytes.max(block.peak_bytes);
            }
        }
    }
    if let Some(watched) = watched {
        index_check::check_outputs(func, args, watched)?;
    }
    Ok(stats)
}

/// What bounds a run, computed once before any block runs: the budgets, the cancel token, the
/// functions by name, and the bytes each function's activation holds.
struct Bounds<'m> {
    kernel: &'m Func,
    grid: [u32; 3],
    schedule: Schedule,
    op_budget: u64,
    memory_budget: u64,
    cancel: Option<CancelToken>,
    numerics: Numerics,
    /// [`Launch::race_check`].
    race_check: bool,
    /// Whether the race check watches shared memory (the block's is small enough).
    shared_race_check: bool,
    index_check: bool,
    /// Functions by name (calls look their callee up here).
    funcs: HashMap<&'m str, &'m Func>,
    /// Bytes of one activation of each function: its value slots and the largest data every
    /// register value could hold at once (see [`frame_bytes`]).
    frame_bytes: HashMap<*const Func, u64>,
    /// What every block holds from its start: shared memory and the kernel's activation in every
    /// warp.
    block_bytes: u64,
}

impl<'m> Bounds<'m> {
    fn new(module: &'m Module, kernel: &'m Func, launch: &Launch) -> Result<Self, InterpError> {
        let mut funcs = HashMap::with_capacity(module.funcs.len());
        let mut frames = HashMap::with_capacity(module.funcs.len());
        for f in &module.funcs {
            funcs.entry(f.name.as_str()).or_insert(f);
            frames.insert(f as *const Func, frame_bytes(f));
        }
        let warps = u64::from(kernel.warps().unwrap_or(1));
        let blocks = launch
            .grid
            .iter()
            .fold(1u64, |n, &g| n.saturating_mul(u64::from(g)));
        // Every warp of every block executes at least its `return`.
        let least_ops = blocks.saturating_mul(warps);
        if least_ops > launch.op_budget {
            return Err(InterpError::OpBudget {
                kernel: kernel.name.clone(),
                site: None,
                budget: launch.op_budget,
                detail: format!(
                    "the grid {:?} has {blocks} blocks of {warps} warps, and every warp executes at least one op",
                    launch.grid
                ),
            });
        }
        let shared = shared_bytes(kernel);
        let per_warp = frames[&(kernel as *const Func)];
        let block_bytes = shared.saturating_add(per_warp.saturating_mul(warps));
        if block_bytes > launch.memory_budget {
            return Err(InterpError::MemoryBudget {
                kernel: kernel.name.clone(),
                site: None,
                budget: launch.memory_budget,
                needed: block_bytes,
                detail: format!(
                    "a block's shared memory ({shared} bytes) and the register values of its {warps} warps (up to {per_warp} bytes each)"
                ),
            });
        }
        Ok(Bounds {
            kernel,
            grid: launch.grid,
            schedule: launch.schedule,
            op_budget: launch.op_budget,
            memory_budget: launch.memory_budget,
            cancel: launch.cancel.clone(),
            numerics: launch.numerics,
            race_check: launch.race_check,
            shared_race_check: launch.race_check && shared / 8 <= RACE_CHECK_MAX_SHARED_ELEMENTS,
            index_check: launch.index_check,
            funcs,
            frame_bytes: frames,
            block_bytes,
        })
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    fn frame_bytes(&self, f: &Func) -> u64 {
        self.frame_bytes
            .get(&(f as *const Func))
            .copied()
            .unwrap_or(0)
    }
}

/// Bytes the interpreter holds for one register value of type `ty` at most: its elements as
/// f64 and the vector holding them.
fn value_bytes(ty: &Type) -> u64 {
    match ty {
        Type::Tile { .. } | Type::Vector { .. } => ty
            .num_elements()
            .unwrap_or(0)
            .saturating_mul(8)
            .saturating_add(VALUE_OVERHEAD),
        _ => 0,
    }
}

/// Bytes of a tile or vector's container besides its elements (the `Rc` and the `Vec`).
const VALUE_OVERHEAD: u64 = 48;

/// Bytes of one activation of `f`: a slot per value of the function, and every register value
/// the function defines held at once (the interpreter keeps a value until its activation ends,
/// so this is what a run through every op of the function holds).
fn frame_bytes(f: &Func) -> u64 {
    let slots =
        (f.value_types.len() as u64).saturating_mul(std::mem::size_of::<Option<Val>>() as u64);
    f.value_types
        .iter()
        .fold(slots, |n, ty| n.saturating_add(value_bytes(ty)))
}

/// Bytes of shared memory the interpreter allocates for a block of `kernel`: every element of
/// its shared tiles and vectors as f64, and every semaphore's state.
fn shared_bytes(kernel: &Func) -> u64 {
    let mut total: u64 = 0;
    for op in &kernel.body.ops {
        if !matches!(op.kind, OpKind::AllocShared) {
            continue;
        }
        for r in &op.results {
            let (elem, len) = match kernel.value_type(*r) {
                Type::SharedArray { elem, len } => (&**elem, u64::from(*len)),
                other => (other, 1),
            };
            let per = match elem {
                Type::Semaphore => memory::SEM_BYTES,
                other => other.num_elements().unwrap_or(0).saturating_mul(8),
            };
            total = total.saturating_add(per.saturating_mul(len));
        }
    }
    total
}

/// Rejects values and shared memory too large to hold, before anything runs: a verified module
/// may declare tiles of up to 2^32 × 2^32 elements.
fn check_sizes(module: &Module, kernel: &Func) -> Result<(), InterpError> {
    let too_large = |func: &Func, message: String| InterpError::TooLarge {
        func: func.name.clone(),
        message,
    };
    for f in &module.funcs {
        for ty in &f.value_types {
            let elem = match ty {
                Type::SharedArray { elem, .. } => elem,
                other => other,
            };
            if matches!(elem, Type::Scalar(_)) {
                continue;
            }
            if let Some(n) = elem.num_elements().filter(|&n| n > MAX_VALUE_ELEMENTS) {
                return Err(too_large(
                    f,
                    format!(
                        "a value of type {ty} has {n} elements per object; the interpreter holds at most {MAX_VALUE_ELEMENTS}"
                    ),
                ));
            }
        }
    }
    let mut total: u64 = 0;
    for op in &kernel.body.ops {
        if !matches!(op.kind, OpKind::AllocShared) {
            continue;
        }
        for r in &op.results {
            let (elem, len) = match kernel.value_type(*r) {
                Type::SharedArray { elem, len } => (&**elem, u64::from(*len)),
                other => (other, 1),
            };
            // A semaphore takes a slot of shared memory like an element (8 bytes on a GPU, as an
            // mbarrier), so an array of them counts towards the limit.
            let per = match elem {
                Type::Semaphore => 1,
                other => other.num_elements().unwrap_or(0),
            };
            total = total.saturating_add(per.saturating_mul(len));
        }
    }
    if total > MAX_SHARED_ELEMENTS {
        return Err(too_large(
            kernel,
            format!(
                "the kernel allocates {total} elements of shared memory per block; the interpreter holds at most {MAX_SHARED_ELEMENTS}"
            ),
        ));
    }
    Ok(())
}

fn check_args(func: &Func, args: &mut [Arg]) -> Result<(), InterpError> {
    if args.len() != func.params.len() {
        return Err(InterpError::Argument {
            message: format!(
                "kernel @{} takes {} arguments, got {}",
                func.name,
                func.params.len(),
                args.len()
            ),
        });
    }
    for (i, (p, a)) in func.params.iter().zip(args.iter_mut()).enumerate() {
        let name = func.value_name(*p).unwrap_or("?").to_string();
        let ty = func.value_type(*p);
        match (ty, a) {
            (Type::Global { dtype, rank, .. }, Arg::Tensor(t)) => {
                if t.dtype() != *dtype || t.rank() != *rank as usize {
                    return Err(InterpError::Argument {
                        message: format!(
                            "argument {i} (`{name}`) must be a {dtype} tensor of rank {rank}, got a {} tensor of rank {}",
                            t.dtype(),
                            t.rank()
                        ),
                    });
                }
                if let Some(&n) = t.shape().iter().find(|&&n| n > i32::MAX as usize) {
                    return Err(InterpError::Argument {
                        message: format!(
                            "argument {i} (`{name}`) has a dimension of {n} elements; dimensions are limited to {} (i32 indices)",
                            i32::MAX
                        ),
                    });
                }
            }
            (Type::Global { dtype, rank, .. }, Arg::Table(t))
                if *dtype == crate::types::ScalarType::I64 && *rank == 2 => {}
            (Type::Scalar(dtype), Arg::Scalar(d, v)) => {
                if d != dtype {
                    return Err(InterpError::Argument {
                        message: format!(
                            "argument {i} (`{name}`) must be a {dtype} scalar, got a {d} scalar"
                        ),
                    });
                }
                *v = crate::numeric::round(*dtype, *v);
            }
            (ty, a) => {
                let got = match a {
                    Arg::Tensor(_) => "a tensor",
                    Arg::Table(_) => "a pointer table",
                    Arg::Scalar(..) => "a scalar",
                };
                return Err(InterpError::Argument {
                    message: format!("argument {i} (`{name}`) must be {ty}, got {got}"),
                });
            }
        }
    }
    Ok(())
}

/// A runtime value held by a warp.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    /// A scalar (ints and bools as exact integers).
    Scalar(f64),
    /// A register tile (row-major, whatever its layout) or vector.
    Data(Rc<Vec<f64>>),
    Shared(SharedRef),
    /// A global view: its kernel argument, or an entry of the pointer table passed as one.
    Global(table::GlobalRef),
    /// The accumulator an `mma_async` of this warp is writing (number `mma` of the warp's
    /// [`MmaGroups`]): its elements, which no op may read until an `mma_wait` retires it.
    InFlight {
        data: Rc<Vec<f64>>,
        mma: u64,
    },
}

/// Where a warp is inside a region.
#[derive(Debug)]
struct Level<'m> {
    region: &'m Region,
    /// Index of this region among its op's regions (for error paths).
    region_index: usize,
    pc: usize,
    kind: LevelKind<'m>,
}

#[derive(Debug)]
enum LevelKind<'m> {
    Body,
    For {
        op: &'m Op,
        iv: f64,
        hi: f64,
        step: f64,
    },
    IfBranch {
        op: &'m Op,
    },
    WhileBefore {
        op: &'m Op,
    },
    WhileAfter {
        op: &'m Op,
    },
}

/// One function activation of a warp.
#[derive(Debug)]
struct Frame<'m> {
    func: &'m Func,
    env: Vec<Option<Val>>,
    levels: Vec<Level<'m>>,
    /// For a call: the call op in the caller, whose results receive the returned values.
    call: Option<&'m Op>,
    /// Which values were computed from a value loaded from memory (for
    /// [`Launch::index_check`]).
    tainted: Vec<bool>,
}

/// Why a warp cannot go on.
#[derive(Clone, Debug, PartialEq)]
enum Wait {
    Barrier { generation: u64 },
    Sem { sem: SharedRef, parity: u64 },
}

#[derive(Debug)]
enum WarpState {
    Ready,
    Waiting(Wait),
    Done,
}

#[derive(Debug)]
struct Warp<'m> {
    frames: Vec<Frame<'m>>,
    state: WarpState,
}

/// How an op touches shared memory, for the race check ([`BlockRun::race_access`]).
pub(crate) enum RaceAccess {
    Read,
    Write,
    /// A `copy_async` completing with a phase of `sem`.
    CopyAsync {
        sem: SharedRef,
    },
    /// A `copy_start` joining the warp's open group.
    CopyStart,
}

/// Outcome of executing one op.
pub(crate) enum Step {
    Next,
    Wait(WaitOn),
}

/// What an op asks its warp to wait for (built by `exec`, turned into a [`Wait`] here).
pub(crate) enum WaitOn {
    Barrier,
    Sem { sem: SharedRef, parity: u64 },
}

/// One block's run.
struct BlockRun<'m, 'a> {
    bounds: &'a Bounds<'m>,
    kernel: &'m Func,
    block: [u32; 3],
    args: &'a mut [Arg],
    mem: BlockMemory,
    warps: Vec<Warp<'m>>,
    barrier_count: u32,
    barrier_generation: u64,
    /// Ops this block has executed.
    ops: u64,
    /// Ops the blocks before this one executed (the op budget is for the whole run).
    ops_before: u64,
    /// Bytes held for the block's shared memory and its warps' activations (pending async
    /// copies are counted by [`BlockMemory`], collectives in flight by `collective_bytes`).
    frame_bytes: u64,
    collective_bytes: u64,
    /// The most of all three at once.
    peak_bytes: u64,
    /// Collective ops in flight: what the first warp of each group passed, to check that the
    /// others pass the same.
    collectives: HashMap<CollectiveKey, Collective>,
    /// How many times each warp has executed each collective op.
    occurrences: Vec<HashMap<*const Op, u64>>,
    /// The happens-before state of the race check, when it is on (in a cell: shared reads
    /// are checked where the executor holds the block immutably).
    race: Option<RefCell<RaceCheck>>,
    /// What each warp stored to global views it also loads, since its last synchronization
    /// (part of the race check; see [`warp_stores`]).
    warp_stores: Option<RefCell<WarpStores>>,
    /// The run's race check on global memory, which spans its blocks.
    global_race: Option<&'a RefCell<GlobalRace>>,
    /// Each warp's asynchronous mma groups.
    mma_groups: Vec<MmaGroups>,
}

/// A collective op's k-th execution by one group of warps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct CollectiveKey {
    op: *const Op,
    group: usize,
    occurrence: u64,
}

#[derive(Debug)]
struct Collective {
    first_warp: usize,
    operands: Vec<String>,
    /// Warps of the group, and how many have not executed this occurrence yet.
    size: usize,
    remaining: usize,
    scope: crate::ops::Scope,
    /// Where the first warp executed it (for the error when the others never do).
    site: Site,
    /// Bytes counted for this entry against the memory budget.
    bytes: u64,
}

impl<'m, 'a> BlockRun<'m, 'a> {
    /// A block of the run `bounds` describes, after `ops_before` ops of the blocks before it,
    /// with the run's global race check. Its shared memory and the warps' activations were
    /// checked against the memory budget (as `bounds.block_bytes`) before the run.
    fn new(
        bounds: &'a Bounds<'m>,
        block: [u32; 3],
        ops_before: u64,
        args: &'a mut [Arg],
        global_race: Option<&'a RefCell<GlobalRace>>,
    ) -> Self {
        let kernel = bounds.kernel;
        let n = kernel.warps().unwrap_or(1);
        let warps = (0..n)
            .map(|_| {
                let mut env = vec![None; kernel.value_types.len()];
                for (i, p) in kernel.params.iter().enumerate() {
                    env[p.index()] = Some(match &args[i] {
                        Arg::Tensor(_) | Arg::Table(_) => Val::Global(table::GlobalRef::arg(i)),
                        Arg::Scalar(_, v) => Val::Scalar(*v),
                    });
                }
                Warp {
                    frames: vec![Frame {
                        func: kernel,
                        env,
                        levels: vec![Level {
                            region: &kernel.body,
                            region_index: 0,
                            pc: 0,
                            kind: LevelKind::Body,
                        }],
                        call: None,
                        tainted: vec![false; kernel.value_types.len()],
                    }],
                    state: WarpState::Ready,
                }
            })
            .collect();
        BlockRun {
            bounds,
            kernel,
            block,
            args,
            mem: BlockMemory::new(kernel),
            warps,
            barrier_count: 0,
            barrier_generation: 0,
            ops: 0,
            ops_before,
            frame_bytes: bounds.block_bytes,
            collective_bytes: 0,
            peak_bytes: bounds.block_bytes,
            collectives: HashMap::new(),
            occurrences: vec![HashMap::new(); n as usize],
            race: bounds
                .race_check
                .then(|| RefCell::new(RaceCheck::new(n as usize))),
            warp_stores: if bounds.race_check {
                WarpStores::new(kernel, n as usize).map(RefCell::new)
            } else {
                None
            },
            global_race,
            mma_groups: vec![MmaGroups::default(); n as usize],
        }
    }

    fn run(&mut self) -> Result<(), InterpError> {
        let n = self.warps.len();
        let quantum = match self.bounds.schedule {
            Schedule::UntilBlocked => u64::MAX,
            Schedule::RoundRobin { quantum } => u64::from(quantum),
        };
        let mut w = 0;
        let mut idle_turns = 0;
        loop {
            if self
                .warps
                .iter()
                .all(|w| matches!(w.state, WarpState::Done))
            {
                return self.check_collectives_complete();
            }
            let progressed = self.turn(w, quantum)?;
            idle_turns = if progressed { 0 } else { idle_turns + 1 };
            if idle_turns > n {
                return Err(self.deadlock());
            }
            w = (w + 1) % n;
        }
    }

    /// Gives warp `w` a turn of at most `quantum` ops. Returns whether it made progress.
    fn turn(&mut self, w: usize, quantum: u64) -> Result<bool, InterpError> {
        match &self.warps[w].state {
            WarpState::Done => return Ok(false),
            WarpState::Waiting(wait) => {
                if !self.satisfied(wait) {
                    return Ok(false);
                }
                if let (Wait::Sem { sem, .. }, Some(race)) = (wait, &self.race) {
                    race.borrow_mut().acquire(w, *sem);
                }
                if let Some(stores) = &self.warp_stores {
                    stores.borrow_mut().synchronized(w);
                }
                self.warps[w].state = WarpState::Ready;
                self.advance(w);
            }
            WarpState::Ready => {}
        }
        let mut executed = 0;
        while executed < quantum {
            if !matches!(self.warps[w].state, WarpState::Ready) {
                break;
            }
            self.step(w)?;
            executed += 1;
        }
        Ok(true)
    }

    fn satisfied(&self, wait: &Wait) -> bool {
        match wait {
            Wait::Barrier { generation } => self.barrier_generation > *generation,
            Wait::Sem { sem, parity } => self.mem.sem_phase_parity(*sem) != *parity,
        }
    }

    /// Moves warp `w` past the op it is at.
    fn advance(&mut self, w: usize) {
        if let Some(level) = self.warps[w]
            .frames
            .last_mut()
            .and_then(|f| f.levels.last_mut())
        {
            level.pc += 1;
        }
    }

    fn deadlock(&self) -> InterpError {
        let waits = self
            .warps
            .iter()
            .enumerate()
            .map(|(i, w)| match &w.state {
                WarpState::Done => format!("  warp {i}: finished"),
                WarpState::Ready => format!("  warp {i}: ready"),
                WarpState::Waiting(wait) => {
                    let site = self.site(i);
                    let what = match wait {
                        Wait::Barrier { .. } => format!(
                            "for the block barrier ({} of {} warps arrived)",
                            self.barrier_count,
                            self.warps.len()
                        ),
                        Wait::Sem { sem, parity } => format!(
                            "for parity {parity} of semaphore {}",
                            self.mem.describe_sem(*sem)
                        ),
                    };
                    format!(
                        "  warp {i}: waits at @{} op {} `{}` ({}) {what}",
                        site.func, site.path, site.op, site.loc
                    )
                }
            })
            .collect();
        InterpError::Deadlock {
            block: self.block,
            waits,
        }
    }

    /// The op warp `w` is at.
    fn site(&self, w: usize) -> Site {
        let warp = &self.warps[w];
        let mut path = Vec::new();
        let mut op_name = String::from("return");
        let mut loc = Loc::Unknown;
        let mut func = self.kernel.name.clone();
        if let Some(frame) = warp.frames.last() {
            func = frame.func.name.clone();
            for (i, level) in frame.levels.iter().enumerate() {
                if i > 0 {
                    path.push(level.region_index.to_string());
                }
                path.push(level.pc.to_string());
            }
            if let Some(level) = frame.levels.last() {
                if let Some(op) = level.region.ops.get(level.pc) {
                    op_name = op.kind.name();
                    loc = op.loc;
                }
            }
        }
        Site {
            block: self.block,
            warp: w as u32,
            func,
            path: path.join("."),
            op: op_name,
            loc,
        }
    }

    /// Executes the op warp `w` is at.
    fn step(&mut self, w: usize) -> Result<(), InterpError> {
        let (op, frame_depth) = {
            let warp = &self.warps[w];
            let Some(frame) = warp.frames.last() else {
                self.warps[w].state = WarpState::Done;
                return Ok(());
            };
            let Some(level) = frame.levels.last() else {
                self.warps[w].state = WarpState::Done;
                return Ok(());
            };
            match level.region.ops.get(level.pc) {
                Some(op) => (op, warp.frames.len()),
                None => {
                    // Regions end in terminators (verified); running off the end is a bug here.
                    return Err(self.runtime(w, "fell off the end of a region"));
                }
            }
        };
        let _ = frame_depth;
        let cost = self.op_cost(w, op);
        let done = self.ops_before + self.ops;
        if done.saturating_add(cost) > self.bounds.op_budget {
            return Err(InterpError::OpBudget {
                kernel: self.kernel.name.clone(),
                site: Some(Box::new(self.site(w))),
                budget: self.bounds.op_budget,
                detail: format!("{done} ops executed over every warp of every block so far"),
            });
        }
        let crosses_interval =
            self.ops / CANCEL_INTERVAL != (self.ops + cost) / CANCEL_INTERVAL || self.ops == 0;
        if crosses_interval && self.bounds.cancelled() {
            return Err(InterpError::Cancelled {
                kernel: self.kernel.name.clone(),
                site: Some(Box::new(self.site(w))),
                ops: done,
            });
        }
        self.ops += cost;
        match &op.kind {
            OpKind::For => self.enter_for(w, op),
            OpKind::If => {
                let c = self.scalar(w, op.operands[0])?;
                let region_index = if c != 0.0 { 0 } else { 1 };
                self.push_level(
                    w,
                    &op.regions[region_index],
                    region_index,
                    LevelKind::IfBranch { op },
                    &[],
                );
                Ok(())
            }
            OpKind::While => {
                let vals = self.vals(w, &op.operands)?;
                self.carry_taint(w, &op.operands, &op.regions[0].args);
                self.push_level(w, &op.regions[0], 0, LevelKind::WhileBefore { op }, &vals);
                Ok(())
            }
            OpKind::Yield | OpKind::Condition => self.end_region(w, op),
            OpKind::Return => self.ret(w, op),
            OpKind::Call(name) => {
                let callee: &'m Func =
                    *self.bounds.funcs.get(name.as_str()).ok_or_else(|| {
                        self.runtime(w, &format!("call of unknown function @{name}"))
                    })?;
                let bytes = self.bounds.frame_bytes(callee);
                self.reserve(w, bytes, || {
                    format!("calling @{name} (up to {bytes} bytes of values)")
                })?;
                self.frame_bytes += bytes;
                let args = self.vals(w, &op.operands)?;
                let mut env = vec![None; callee.value_types.len()];
                let mut tainted = vec![false; callee.value_types.len()];
                let caller = self.warps[w].frames.last();
                for ((p, a), v) in callee.params.iter().zip(args).zip(&op.operands) {
                    env[p.index()] = Some(a);
                    tainted[p.index()] = caller
                        .and_then(|f| f.tainted.get(v.index()).copied())
                        .unwrap_or(false);
                }
                self.warps[w].frames.push(Frame {
                    func: callee,
                    env,
                    levels: vec![Level {
                        region: &callee.body,
                        region_index: 0,
                        pc: 0,
                        kind: LevelKind::Body,
                    }],
                    call: Some(op),
                    tainted,
                });
                Ok(())
            }
            _ => {
                if op.scope != crate::ops::Scope::Warp {
                    self.check_collective(w, op)?;
                }
                if self.bounds.index_check {
                    self.check_indices_from_memory(w, op)?;
                }
                self.check_warp_stores(w, op)?;
                self.check_in_flight_reads(w, op)?;
                let phase = self.race_before(w, op)?;
                let step = exec::exec(self, w, op)?;
                self.race_after(w, op, phase)?;
                if self.bounds.index_check {
                    self.taint(w, op);
                }
                match step {
                    Step::Next => self.advance(w),
                    Step::Wait(WaitOn::Barrier) => {
                        let generation = self.barrier_generation;
                        self.barrier_count += 1;
                        if self.barrier_count as usize == self.warps.len() {
                            self.barrier_count = 0;
                            self.barrier_generation += 1;
                            if let Some(race) = &self.race {
                                race.borrow_mut().barrier();
                            }
                            if let Some(stores) = &self.warp_stores {
                                let mut stores = stores.borrow_mut();
                                (0..self.warps.len()).for_each(|v| stores.synchronized(v));
                            }
                            self.advance(w);
                        } else {
                            self.warps[w].state = WarpState::Waiting(Wait::Barrier { generation });
                        }
                    }
                    Step::Wait(WaitOn::Sem { sem, parity }) => {
                        if self.mem.sem_phase_parity(sem) != parity {
                            if let Some(race) = &self.race {
                                race.borrow_mut().acquire(w, sem);
                            }
                            if let Some(stores) = &self.warp_stores {
                                stores.borrow_mut().synchronized(w);
                            }
                            self.advance(w);
                        } else {
                            self.warps[w].state = WarpState::Waiting(Wait::Sem { sem, parity });
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// Before `op` runs, for the race check: an arrival releases what warp `w` knows into the
    /// semaphore's phase (an async copy releases itself where it is issued). Returns the
    /// semaphore whose phase the op may complete, with its parity before it.
    fn race_before(&mut self, w: usize, op: &Op) -> Result<Option<(SharedRef, u64)>, InterpError> {
        if self.race.is_none() {
            return Ok(None);
        }
        let sem_operand = match op.kind {
            OpKind::SemArrive | OpKind::SemExpect(_) => op.operands[0],
            OpKind::CopyAsync => op.operands[2],
            _ => return Ok(None),
        };
        let Val::Shared(sem) = self.val(w, sem_operand)? else {
            return Ok(None);
        };
        if !self.mem.sem_initialized(sem) {
            // The op fails with its own error.
            return Ok(None);
        }
        if let (OpKind::SemArrive | OpKind::SemExpect(_), Some(race)) = (&op.kind, &self.race) {
            race.borrow_mut().release(w, sem);
        }
        Ok(Some((sem, self.mem.sem_phase_parity(sem))))
    }

    /// After `op` ran, for the race check: a completed phase, a fresh semaphore, a closed or
    /// landed copy group.
    fn race_after(
        &mut self,
        w: usize,
        op: &Op,
        phase: Option<(SharedRef, u64)>,
    ) -> Result<(), InterpError> {
        let Some(race) = &self.race else {
            return Ok(());
        };
        if let Some((sem, parity)) = phase {
            if self.mem.sem_phase_parity(sem) != parity {
                race.borrow_mut().phase_completed(sem);
            }
        }
        match op.kind {
            OpKind::SemInit(_) => {
                if let Val::Shared(sem) = self.val(w, op.operands[0])? {
                    race.borrow_mut().sem_init(sem);
                }
            }
            OpKind::CopyCommit => race.borrow_mut().copy_commit(w),
            OpKind::CopyWait(keep) => race.borrow_mut().copy_wait(w, keep),
            _ => {}
        }
        Ok(())
    }

    /// The op warp `w` is at (null when it is at none).
    fn current_op(&self, w: usize) -> *const Op {
        self.warps[w]
            .frames
            .last()
            .and_then(|f| f.levels.last())
            .and_then(|l| l.region.ops.get(l.pc))
            .map_or(std::ptr::null(), |op| op as *const Op)
    }

    /// The race check's id for the site of the op warp `w` is at.
    fn race_site(&self, w: usize, race: &mut RaceCheck) -> u32 {
        race.site(self.current_op(w), w, || self.site(w))
    }

    /// Checks and records warp `w`'s access to `elements` of shared object `r` (row-major
    /// offsets in the object, whose rows are `cols` long), when the race check is on.
    pub(crate) fn race_access(
        &self,
        w: usize,
        r: SharedRef,
        elements: impl IntoIterator<Item = usize>,
        cols: usize,
        kind: RaceAccess,
    ) -> Result<(), InterpError> {
        let Some(race) = self.race.as_ref().filter(|_| self.bounds.shared_race_check) else {
            return Ok(());
        };
        let mut race = race.borrow_mut();
        let site = self.race_site(w, &mut race);
        let base = self.mem.base(r);
        let found = match kind {
            RaceAccess::Read => race.read(w, r, base, elements, site),
            RaceAccess::Write => race.write(w, r, base, elements, site),
            RaceAccess::CopyAsync { sem } => race.copy_async(w, sem, r, base, elements, site),
            RaceAccess::CopyStart => race.copy_start(w, r, base, elements, site),
        };
        found.map_err(|found| self.race_error(found, cols))
    }

    /// Turns a race the check found into the run's error.
    fn race_error(&self, race: race::Race, cols: usize) -> InterpError {
        let cols = cols.max(1);
        InterpError::Race {
            object: self.mem.describe(race.object),
            element: (race.element / cols, race.element % cols),
            earlier: race.earlier.0,
            earlier_kind: race.earlier.1.describe().to_string(),
            later: race.later.0,
            later_kind: race.later.1.describe().to_string(),
        }
    }

    /// Once every warp has finished, every collective op must have been executed by all the
    /// warps of its group: one that only some reach has done only their shares of the work.
    fn check_collectives_complete(&self) -> Result<(), InterpError> {
        let Some(c) = self
            .collectives
            .values()
            .min_by_key(|c| (c.site.warp, c.site.path.clone()))
        else {
            return Ok(());
        };
        Err(InterpError::Runtime {
            site: Box::new(c.site.clone()),
            message: format!(
                "only {} of the {} warps of its {} executed this collective op (every one must)",
                c.size - c.remaining,
                c.size,
                c.scope
            ),
        })
    }

    /// Every warp of a group must execute a collective op with the same memory operands and
    /// indices (register operands, such as a warpgroup mma's accumulator, differ by design).
    fn check_collective(&mut self, w: usize, op: &'m Op) -> Result<(), InterpError> {
        let (group, size) = match op.scope {
            crate::ops::Scope::Warpgroup => (w / 4, 4.min(self.warps.len())),
            _ => (0, self.warps.len()),
        };
        let counter = self.occurrences[w].entry(op as *const Op).or_insert(0);
        let key = CollectiveKey {
            op,
            group,
            occurrence: *counter,
        };
        *counter += 1;
        let operands: Vec<String> = op
            .operands
            .iter()
            .map(|v| match self.val(w, *v) {
                Ok(Val::Scalar(x)) => format!("{x}"),
                Ok(Val::Shared(r)) => format!("shared {}", self.mem.describe(r)),
                Ok(Val::Global(g)) => g.to_string(),
                _ => "(registers)".to_string(),
            })
            .collect();
        match self.collectives.get_mut(&key) {
            None => {
                if size > 1 {
                    let site = self.site(w);
                    let bytes = (std::mem::size_of::<(CollectiveKey, Collective)>()
                        + operands.iter().map(|o| o.len() + 24).sum::<usize>()
                        + site.func.len()
                        + site.path.len()
                        + site.op.len()) as u64;
                    self.reserve(w, bytes, || {
                        "recording one more collective op that the other warps of its group have not reached"
                            .to_string()
                    })?;
                    self.collective_bytes += bytes;
                    self.collectives.insert(
                        key,
                        Collective {
                            first_warp: w,
                            operands,
                            size,
                            remaining: size - 1,
                            scope: op.scope,
                            site,
                            bytes,
                        },
                    );
                }
                Ok(())
            }
            Some(c) => {
                if c.operands != operands {
                    let msg = format!(
                        "warps of one {} disagree on a collective op: this warp passes ({}) but warp {} passed ({})",
                        op.scope,
                        operands.join(", "),
                        c.first_warp,
                        c.operands.join(", ")
                    );
                    return Err(self.runtime(w, &msg));
                }
                c.remaining -= 1;
                if c.remaining == 0 {
                    if let Some(done) = self.collectives.remove(&key) {
                        self.collective_bytes -= done.bytes;
                    }
                }
                Ok(())
            }
        }
    }

    fn enter_for(&mut self, w: usize, op: &'m Op) -> Result<(), InterpError> {
        let lo = self.scalar(w, op.operands[0])?;
        let hi = self.scalar(w, op.operands[1])?;
        let step = self.scalar(w, op.operands[2])?;
        if step <= 0.0 {
            return Err(self.runtime(w, &format!("`for` step must be positive, got {step}")));
        }
        let inits = self.vals(w, &op.operands[3..])?;
        if lo < hi {
            let mut args = vec![Val::Scalar(lo)];
            args.extend(inits);
            self.taint_loop_entry(w, op);
            self.push_level(
                w,
                &op.regions[0],
                0,
                LevelKind::For {
                    op,
                    iv: lo,
                    hi,
                    step,
                },
                &args,
            );
        } else {
            self.carry_taint(w, &op.operands[3..], &op.results);
            self.bind(w, &op.results, inits);
            self.advance(w);
        }
        Ok(())
    }

    fn push_level(
        &mut self,
        w: usize,
        region: &'m Region,
        region_index: usize,
        kind: LevelKind<'m>,
        args: &[Val],
    ) {
        let frame = self.warps[w]
            .frames
            .last_mut()
            .expect("a running warp has a frame");
        for (a, v) in region.args.iter().zip(args) {
            frame.env[a.index()] = Some(v.clone());
        }
        frame.levels.push(Level {
            region,
            region_index,
            pc: 0,
            kind,
        });
    }

    /// A `yield` or `condition` ends the innermost region.
    fn end_region(&mut self, w: usize, term: &'m Op) -> Result<(), InterpError> {
        let vals = self.vals(w, &term.operands)?;
        let frame = self.warps[w]
            .frames
            .last_mut()
            .expect("a running warp has a frame");
        let level = frame.levels.pop().expect("a terminator is inside a level");
        match level.kind {
            LevelKind::For { op, iv, hi, step } => {
                let next = iv + step;
                if next < hi {
                    let mut args = vec![Val::Scalar(next)];
                    args.extend(vals);
                    self.carry_taint(w, &term.operands, &level.region.args[1..]);
                    self.push_level(
                        w,
                        level.region,
                        0,
                        LevelKind::For {
                            op,
                            iv: next,
                            hi,
                            step,
                        },
                        &args,
                    );
                } else {
                    self.carry_taint(w, &term.operands, &op.results);
                    self.bind(w, &op.results, vals);
                    self.advance(w);
                }
            }
            LevelKind::IfBranch { op } => {
                self.carry_taint(w, &term.operands, &op.results);
                self.bind(w, &op.results, vals);
                self.advance(w);
            }
            LevelKind::WhileBefore { op } => {
                let go_on = vals
                    .first()
                    .map(|v| matches!(v, Val::Scalar(c) if *c != 0.0))
                    .unwrap_or(false);
                let forwarded = vals[1..].to_vec();
                let carried = &term.operands[1..];
                if go_on {
                    self.carry_taint(w, carried, &op.regions[1].args);
                    self.push_level(
                        w,
                        &op.regions[1],
                        1,
                        LevelKind::WhileAfter { op },
                        &forwarded,
                    );
                } else {
                    self.carry_taint(w, carried, &op.results);
                    self.bind(w, &op.results, forwarded);
                    self.advance(w);
                }
            }
            LevelKind::WhileAfter { op } => {
                self.carry_taint(w, &term.operands, &op.regions[0].args);
                self.push_level(w, &op.regions[0], 0, LevelKind::WhileBefore { op }, &vals);
            }
            LevelKind::Body => {
                return Err(self.runtime(w, "`yield` at the top level of a function"));
            }
        }
        Ok(())
    }

    fn ret(&mut self, w: usize, op: &'m Op) -> Result<(), InterpError> {
        let vals = self.vals(w, &op.operands)?;
        let frame = self.warps[w]
            .frames
            .pop()
            .expect("a running warp has a frame");
        match frame.call {
            Some(call) => {
                self.frame_bytes -= self.bounds.frame_bytes(frame.func);
                self.bind(w, &call.results, vals);
                self.advance(w);
            }
            None => {
                let left = self.mma_groups[w].outstanding();
                if left > 0 {
                    return Err(self.runtime(
                        w,
                        &format!("the kernel ends with {left} mma_async of this warp not completed (no mma_commit and mma_wait cover them)"),
                    ));
                }
                self.warps[w].state = WarpState::Done
            }
        }
        Ok(())
    }

    /// An op other than those that only carry values (`yield`, loop initial values, calls),
    /// `mma_wait`, and `mma_async`'s C, must not read an accumulator still in flight: on a GPU
    /// it would read registers the tensor cores have not written yet.
    fn check_in_flight_reads(&self, w: usize, op: &Op) -> Result<(), InterpError> {
        let carries = |i: usize| match op.kind {
            OpKind::MmaAsync(_) => i == 2,
            OpKind::MmaWait(_) => true,
            _ => false,
        };
        for (i, &v) in op.operands.iter().enumerate() {
            if carries(i) {
                continue;
            }
            if let Ok(Val::InFlight { mma, .. }) = self.val(w, v) {
                let state = if self.mma_groups[w].complete(mma) {
                    "complete, but the value was not passed through the mma_wait that retired it (use the wait's result)"
                } else {
                    "still in flight: no mma_wait has retired it"
                };
                return Err(self.runtime(
                    w,
                    &format!(
                        "`{}` reads %{} (operand {i}), the accumulator of this warp's mma_async number {mma}, {state}",
                        op.kind.name(),
                        v.0
                    ),
                ));
            }
        }
        Ok(())
    }

    fn bind(&mut self, w: usize, results: &[Value], vals: Vec<Val>) {
        let frame = self.warps[w]
            .frames
            .last_mut()
            .expect("a running warp has a frame");
        for (r, v) in results.iter().zip(vals) {
            frame.env[r.index()] = Some(v);
        }
    }

    pub(crate) fn set(&mut self, w: usize, v: Value, val: Val) {
        let frame = self.warps[w]
            .frames
            .last_mut()
            .expect("a running warp has a frame");
        frame.env[v.index()] = Some(val);
    }

    pub(crate) fn val(&self, w: usize, v: Value) -> Result<Val, InterpError> {
        self.warps[w]
            .frames
            .last()
            .and_then(|f| f.env.get(v.index()))
            .and_then(|x| x.clone())
            .ok_or_else(|| self.runtime(w, &format!("value %{} has no value here", v.0)))
    }

    fn vals(&self, w: usize, vs: &[Value]) -> Result<Vec<Val>, InterpError> {
        vs.iter().map(|v| self.val(w, *v)).collect()
    }

    pub(crate) fn scalar(&self, w: usize, v: Value) -> Result<f64, InterpError> {
        match self.val(w, v)? {
            Val::Scalar(x) => Ok(x),
            _ => Err(self.runtime(w, &format!("value %{} is not a scalar", v.0))),
        }
    }

    pub(crate) fn data(&self, w: usize, v: Value) -> Result<Rc<Vec<f64>>, InterpError> {
        match self.val(w, v)? {
            Val::Data(d) => Ok(d),
            _ => Err(self.runtime(w, &format!("value %{} is not a tile or vector", v.0))),
        }
    }

    /// What `op` counts against the op budget: one per [`ELEMENTS_PER_OP`] elements of its
    /// largest tile or vector operand or result, at least one.
    fn op_cost(&self, w: usize, op: &Op) -> u64 {
        let largest = op
            .operands
            .iter()
            .chain(&op.results)
            .filter_map(|&v| self.ty(w, v).num_elements())
            .max()
            .unwrap_or(1);
        (largest / ELEMENTS_PER_OP).max(1)
    }

    /// The type of a value of the function warp `w` is running.
    pub(crate) fn ty(&self, w: usize, v: Value) -> &'m Type {
        let f: &'m Func = self.warps[w]
            .frames
            .last()
            .map(|f| f.func)
            .unwrap_or(self.kernel);
        f.value_type(v)
    }

    /// Checks that `bytes` more (for what `detail` says) keep the block within the memory
    /// budget, before they are allocated; records the peak. The caller then counts them.
    pub(crate) fn reserve(
        &mut self,
        w: usize,
        bytes: u64,
        detail: impl FnOnce() -> String,
    ) -> Result<(), InterpError> {
        let needed = self
            .frame_bytes
            .saturating_add(self.collective_bytes)
            .saturating_add(self.mem.pending_bytes())
            .saturating_add(bytes);
        if needed > self.bounds.memory_budget {
            return Err(InterpError::MemoryBudget {
                kernel: self.kernel.name.clone(),
                site: Some(Box::new(self.site(w))),
                budget: self.bounds.memory_budget,
                needed,
                detail: detail(),
            });
        }
        self.peak_bytes = self.peak_bytes.max(needed);
        Ok(())
    }

    pub(crate) fn runtime(&self, w: usize, message: &str) -> InterpError {
        InterpError::Runtime {
            site: Box::new(self.site(w)),
            message: message.to_string(),
        }
    }

    pub(crate) fn out_of_bounds(
        &self,
        w: usize,
        what: &str,
        index: String,
        bounds: String,
    ) -> InterpError {
        InterpError::OutOfBounds {
            site: Box::new(self.site(w)),
            what: what.to_string(),
            index,
            bounds,
        }
    }
}
