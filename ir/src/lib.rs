//! # Tile IR
//!
//! The typed, scoped SSA intermediate representation of tilekit kernels: data ([`Module`],
//! [`Func`], [`Region`], [`Op`]), a [`FuncBuilder`], a [`verify`](fn@verify)er, a text form
//! ([`print_module`] / [`parse_module`], round-tripping exactly) and the CPU [`interp`]reter, which
//! defines what every op means. Every lowering is correct when it agrees with the interpreter.
//!
//! ## Execution model
//!
//! A kernel runs over a grid of blocks (`block_idx.x|y|z` of `grid_dim.x|y|z`); each block has
//! `warps(N)` warps, which all run the kernel body. Register values (scalars, tiles, vectors) are
//! held per warp: an op at **warp** scope runs in each warp that reaches it, on that warp's values.
//! Ops at **warpgroup** scope (4 consecutive warps) and **block** scope are collective: every warp
//! of the group or block executes them, and memory work is split among those warps. Above warp
//! scope the IR does not know how many lanes a warp has.
//!
//! Warps of a block run concurrently with respect to barriers and semaphores: nothing orders two
//! warps' memory accesses except `barrier @block`, semaphores and async-copy completion.
//!
//! ## Types (text form)
//!
//! | type | text | notes |
//! |---|---|---|
//! | scalar | `f32 f16 bf16 f8e4m3 f8e5m2 i8 i32 u32 i64 bool` | uniform across the warp |
//! | register tile | `rt<bf16, 64x16, row>` | rows, cols multiples of 16; layout `row` or `col` |
//! | register vector | `rv<f32, 64, rows>` | `rows`: one element per tile row; `cols`: per column |
//! | shared tile | `st<bf16, 64x64, swz128>` | swizzle `none swz32 swz64 swz128` |
//! | shared vector | `sv<f32, 64>` | |
//! | global view | `gl<bf16, 2>`, `gl<f32, 2, mut>` | rank 1..=4; shape and strides at launch; `mut` to write |
//! | semaphore | `sem` | in shared memory |
//! | shared array | `[2 x st<bf16, 64x16, none>]` | of shared tiles, vectors or semaphores |
//!
//! Register tiles and vectors may not have element type `i64` (their elements are held exactly
//! as f64 by the interpreter).
//!
//! ## Ops
//!
//! Operands in parentheses, attributes in brackets, result types after the colon. The scope is
//! written `@warpgroup` or `@block` after the name; warp scope is the default and is not written.
//!
//! | op | operands → result | meaning |
//! |---|---|---|
//! | `const[v]` | → scalar | constant |
//! | `block_idx.{x,y,z}`, `grid_dim.{x,y,z}`, `warp_idx`, `warpgroup_idx`, `num_warps` | → i32 | indices and counts |
//! | `dim[k]` | gl → i32 | runtime size of dimension k |
//! | `fill[v]` | → rt/rv | every element = v (rounded to the dtype) |
//! | `splat` | scalar → rt/rv | every element = the scalar (same dtype) |
//! | `iota.rows`, `iota.cols` | → rt/rv | element = its row (or vector) index / its column index |
//! | `map.{exp,exp2,log,log2,neg,abs,relu,silu,gelu_tanh,sqrt,rsqrt,recip,tanh,sigmoid,not}` | x → same type | elementwise |
//! | `map.{add,sub,mul,div,max,min,pow,rem,and,or,xor,shl,shr}` | (x, y) → type of the non-scalar | tile-tile, vector-vector, scalar-scalar of one dtype, or one side a scalar of the same dtype |
//! | `cmp.{lt,le,gt,ge,eq,ne}` | (x, y) → bool of the non-scalar's shape | tiles, vectors or scalars; a scalar side broadcast |
//! | `select` | (bool or bool mask, x, y) → the non-scalar's type | per element with a mask; scalar x/y broadcast |
//! | `convert` | x → same kind, other dtype (tiles: and/or layout) | round to nearest even; fp8 and ints saturate; NaN → 0 for ints |
//! | `transpose` | rt<T, RxC, l> → rt<T, CxR, l> | |
//! | `bcast_row.f`, `bcast_col.f` | (rt, rv) → rt | `t[r][c] f v[r]` (v along rows) / `t[r][c] f v[c]` (v along cols) |
//! | `reduce_row.f`, `reduce_col.f`, `reduce.f` (f: sum, max, min) | rt → rv rows / rv cols; rt or rv → scalar | |
//! | `mask.{causal,anticausal}[v]` | (rt, row_off, col_off) → rt | element (r,c) replaced by v when `col_off+c > row_off+r` (causal) / `<` (anticausal) |
//! | `mask.rows[v]`, `mask.cols[v]` | (rt, off, bound) → rt | rows with `off+r >= bound` / columns with `off+c >= bound` replaced by v |
//! | `mma.{ab,abt,atb,atbt}` | (a, b, c) → `rt<f32>` | `D = op(A)·op(B) + C`, see [`MmaVariant`]; at warpgroup scope B is shared, C/D this warp's quarter of the rows, A shared (the group's) or registers (this warp's rows) |
//! | `alloc_shared @block` | → shared type | top level of a kernel body only |
//! | `shared.index` | ([n x T], i32) → T | out of range is an error |
//! | `load` | (src, idx…) → register value | see *Memory* |
//! | `store` | (dst, x, idx…) | see *Memory* |
//! | `copy @scope` | (dst, src, idx…) | global ↔ shared tile or vector, split among the scope's warps |
//! | `copy_async` | (st, gl, sem, idx…) | global → shared, completes on the semaphore |
//! | `copy_start @scope`, `copy_commit @scope`, `copy_wait[n] @scope` | (st, gl, idx…); (); () | global → shared in the warp's open copy group; close the group; land all but the n most recent groups (see *Copy groups*) |
//! | `gather_rows` | (gl, `rv<i32>` rows, j) → rt | row r = global row `idx[r]` |
//! | `bitcast` | x → x's kind and shape in a dtype of the same width | the same bits (f32/i32/u32, bf16/f16, i8/fp8) |
//! | `scan_row.f`, `scan_col.f`, `exscan_row.f`, `exscan_col.f` | rt → rt | inclusive (exclusive) prefix of sum/prod/max/min along rows (columns) |
//! | `sort_row.desc`, `sort_row.asc` | (`rt` keys, `rt<i32>` payload) → (keys, payload) | each row sorted; equal keys by the lower payload, NaN above every number ([`sort_before`]) |
//! | `topk_row[k]` | (`rt` keys, `rt<i32>`, best `rt<T, R x 16>`, `rt<i32, R x 16>`) → (`rt<T, R x 16>`, `rt<i32, R x 16>`) | the first k (≤ 16) pairs of the row and of best's first k, descending; the rest empty ([`topk_empty_key`], `i32::MAX`) |
//! | `gather` | (gl of rank n, n × `rv<i32, N>`) → `rv<T, N>` | element k = `g[i0[k], …]`; 0 outside the view |
//! | `scatter_rows`, `scatter_add_rows` | (gl mut, rt, `rv<i32>` rows, j) | global row `idx[r]` = / += row r |
//! | `atomic_add` | (gl mut, x, idx…) | scalar at element indices, vector at a chunk index (the last), or tile at tile coordinates; elements outside the view are skipped |
//! | `atomic_max`, `atomic_min`, `atomic_exch` | (gl mut, x, idx…) → x's type | as `atomic_add` (i32, u32, f32); the old values |
//! | `atomic_cas` | (gl mut, cmp, x, idx…) → x's type | where an element's bits equal cmp's it becomes x; the old values |
//! | `philox` | (k0, k1, c0, c1, c2, c3) → 4 × T | Philox-4x32-10 words; u32 key scalars, u32 counters (scalars, tiles or vectors: T) |
//! | `device_assert[@"msg"]` | (c) | c a bool scalar, tile or vector; the run fails naming msg where c is false |
//! | `barrier @block` | | every warp of the block waits for all |
//! | `sem.init[n]`, `sem.arrive`, `sem.expect[bytes]`, `sem.wait` | (sem[, parity]) | see *Semaphores* |
//! | `for`, `if`, `while`, `yield`, `condition`, `return`, `call[@f]` | | structured control flow |
//!
//! ### Memory
//!
//! *Global views.* A view of rank n takes n indices (i32). For a scalar they are element indices
//! and must be in bounds. For a tile `R×C` the last two are tile coordinates (element row `i·R`,
//! column `j·C`) and the leading ones element indices; for a vector of length L the last is a
//! chunk index (element `k·L`). Tile and vector accesses are **masked** by the view's shape:
//! elements outside it read as zero and are not written. Leading (element) indices out of bounds
//! are errors. The global dtype must equal the register dtype.
//!
//! *Shared memory.* `load`/`store` between a shared tile and a register tile of the same shape take
//! no indices; with a shared tile larger than the register tile they take two tile coordinates,
//! which must lie inside the shared tile. At warpgroup scope the shared tile has 4× the register
//! tile's rows and warp w of the group uses rows `[w·R, (w+1)·R)` (global views and shared
//! vectors are accessed at warp scope only). Shared memory is not
//! initialized: reading an element nothing has written is an error in the interpreter (it is how
//! a missing barrier or semaphore wait shows up; a GPU would read stale data).
//!
//! *Gather/scatter.* A negative row index selects no row (gathered as zeros, not scattered); an
//! index at or past the view's row count is an out-of-bounds error.
//!
//! ### Semaphores
//!
//! A semaphore works in phases (arrival and byte counts are at most 2^20 − 1, as mbarrier's).
//! `sem.init[n]` starts phase 0, which completes once it has had `n`
//! arrivals and every expected byte of async copies has landed; then the next phase begins.
//! `sem.expect[b]` adds b bytes to the current phase's expected byte count; `copy_async` counts
//! its tile's bytes (rows·cols·element size) towards it, and its data becomes visible when the
//! phase completes. `sem.wait (s, p)` returns once the most recent phase with parity p has
//! completed: before any phase has completed, waiting on parity 1 returns at once (as `mbarrier`'s
//! `try_wait.parity` does).
//!
//! ### Copy groups
//!
//! `copy_start` splits its copy among the scope's warps as `copy` does and masks it the same way;
//! each warp's share joins that warp's open group, and `copy_commit` closes the group (empty if
//! nothing joined it). `copy_wait[n]` lands every committed group of the executing warp except the
//! n most recent; another warp's share is visible after a following `barrier @block`. Until its
//! group has landed, a destination element is *in flight*: reading it (or starting another copy
//! into it) is an error in the interpreter — how a missing wait shows up. A ring of N stages keeps
//! N − 1 groups in flight with `copy_wait[N−2]` and one barrier per step (`tilekit::dsl::pipeline`).
//!
//! ### Numbers
//!
//! Every value is exactly representable in its dtype: results are rounded to the dtype (round to
//! nearest even) after each op. `mma` multiplies exactly and accumulates in f32, in order of k.
//! Transcendental functions are evaluated in f64 and rounded.

//!
//! ## Bounded execution and nesting
//!
//! Nothing a module or a launch holds may crash, exhaust or hang the process that verifies or
//! interprets it; every bound below ends in an error that names it and how to raise it.
//!
//! - **Nesting.** Regions nest at most [`MAX_NESTING`] (256) deep, the function body counting
//!   as level 1. The parser rejects deeper text (with the line), the verifier deeper modules
//!   built in code; printing, [`Func::walk`], cloning and dropping work at any depth. At the
//!   limit, parsing, verifying and interpreting take under 1 MiB of stack even unoptimized.
//!   (`{:?}`-formatting a module built deeper than the limit still recurses: verify first.)
//! - **Sizes.** A register value or one shared object holds at most
//!   [`interp::MAX_VALUE_ELEMENTS`] elements on the interpreter, a block's shared memory
//!   [`interp::MAX_SHARED_ELEMENTS`] (a semaphore counts as one); larger modules still verify
//!   (a GPU target has its own limits) but the interpreter refuses them before running.
//! - **Memory budget.** [`interp::Launch::memory_budget`] (default
//!   [`interp::DEFAULT_MEMORY_BUDGET`], 4 GiB) bounds the bytes the interpreter holds at once:
//!   shared memory, every register value a function activation may define (counted when the
//!   activation starts: a block's warps before the run, a helper's at its `call`), async copies
//!   waiting for their semaphore, and collective ops waiting for the rest of their group. Each is
//!   checked before it is allocated ([`interp::InterpError::MemoryBudget`]); the argument tensors
//!   belong to the caller and do not count. [`interp::RunStats::peak_bytes`] reports the most a
//!   run held.
//! - **Op budget.** [`interp::Launch::op_budget`] (default [`interp::DEFAULT_OP_BUDGET`],
//!   10^9) bounds the ops executed over every warp of every block
//!   ([`interp::InterpError::OpBudget`], naming the op reached); a grid with more warps than
//!   that is refused before it starts. [`interp::RunStats::ops`] counts them.
//! - **Cancellation.** [`interp::Launch::cancel`] takes an [`interp::CancelToken`]; cancelling
//!   it from another thread stops the run within a few thousand ops
//!   ([`interp::InterpError::Cancelled`]).
//! - **Size of a module.** Verification is linear in the module (functions and calls are
//!   resolved through hash tables): 100k functions verify in well under a second in a release
//!   build.
//!
//! [`interp::run`] uses the defaults; [`interp::run_with`] takes a [`interp::Launch`].
//!
//! The defaults were chosen against measurements ([`interp::RunStats`]): the library kernels'
//! self-tests run at most about 3·10^3 ops and hold at most about 0.9 MB, the demo's acceptance
//! shapes at most about 1.3·10^5 ops and 1.5 MB.

pub mod assert_record;
pub mod builder;
pub mod interp;
pub mod module;
pub mod numeric;
pub mod ops;
pub mod text;
pub mod tf32;
pub mod types;
pub mod verify;

pub use builder::{rt, rt_col, FuncBuilder};
pub use module::{Func, FuncKind, Loc, Module, Op, Region, Value, MAX_NESTING};
pub use ops::*;
pub use text::{parse_module, print_func, print_module, ParseError};
pub use types::{Layout, ScalarType, Swizzle, Type, VecAxis};
pub use verify::{verify, VerifyError, VerifyErrorKind};
