//! # The kernel DSL
//!
//! Kernels are Rust functions marked `#[tilekit::kernel]` whose parameters are global views
//! ([`Gl`], [`GlMut`]) and runtime scalars ([`Scalar`]). The body runs once per instantiation
//! while the kernel is *built*: every DSL op appends a Tile IR op (recording the author's line),
//! and plain Rust — const generics, `usize` arithmetic, loops over Rust ranges, `if` on Rust
//! bools, helper functions — is the meta-language that decides which ops are built.
//!
//! ```
//! use tilekit::dsl::*;
//!
//! #[tilekit::kernel(warps = 1)]
//! fn gemm<const BM: usize, const BN: usize>(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
//!     let (m, n) = (block_idx_y(), block_idx_x());
//!     let mut acc: Rt<f32, BM, BN> = zeros();
//!     for k in range(0, (a.cols() + 15) / 16) {     // runtime loop: an IR `for`, acc carried
//!         let at: Rt<bf16, BM, 16> = load(a.tile(m, k));
//!         let bt: Rt<bf16, 16, BN, Col> = load(b.tile(k, n));
//!         acc = mma_ab(acc, at, bt);
//!     }
//!     store(c.tile(m, n), acc);
//! }
//!
//! // Tile IR for one instantiation, built once and cached.
//! let module = gemm::<64, 32>::module();
//! tilekit::ir::verify(module).unwrap();
//! ```
//!
//! ## Types
//!
//! | Rust type | IR type | |
//! |---|---|---|
//! | `bf16`, `f16`, `f8e4m3`, `f8e5m2` (markers), `f32`, `i32`, `u32`, `i8`, `i64`, `bool` | dtypes ([`Dtype`]) | register tiles and vectors: all but `i64` |
//! | [`Scalar<T>`] | `T` | runtime scalar; `+ - * / % & \| ^ << >>`, unary `-` and `!`, `.lt() .le() .gt() .ge() .eq() .ne()` → `Scalar<bool>` |
//! | [`Rt<T, R, C, L = Row>`](Rt) | `rt<T, RxC, row\|col>` | R, C multiples of 16 (a compile error otherwise); layouts [`Row`], [`Col`] |
//! | [`Rv<T, N, A = Rows>`](Rv) | `rv<T, N, rows\|cols>` | axes [`Rows`], [`Cols`] |
//! | [`St<T, R, C, Z = Auto>`](St) | `st<T, RxC, swz>` | swizzles [`Auto`], [`NoSwizzle`], [`Swz32`], [`Swz64`], [`Swz128`] |
//! | [`Sv<T, N>`](Sv) | `sv<T, N>` | |
//! | [`Gl<T, RANK>`](Gl), [`GlMut<T, RANK>`](GlMut) | `gl<T, RANK>`, `gl<T, RANK, mut>` | kernel parameters; places: `.tile(..)`, `.chunk(..)`, `.at(..)` |
//! | [`Sem`] | `sem` | `.init(n)`, `.arrive()`, `.expect(bytes)`, `.wait(parity)` |
//! | [`SharedArray<E, N>`](SharedArray) | `[N x E]` | `.at(i)` is `shared.index` |
//!
//! Maps take the same type on both sides, or a [`Scalar`] of the same dtype, or a Rust literal
//! (`x * 0.5`); anything else is a compile error naming both types.
//!
//! ## Ops
//!
//! | DSL | IR op | shapes |
//! |---|---|---|
//! | [`lit::<T>(v)`](lit), literals in expressions, integer indices | `const` | → `Scalar<T>` |
//! | [`block_idx_x`] `_y` `_z`, [`grid_dim_x`] `_y` `_z`, [`warp_idx`], [`warpgroup_idx`], [`num_warps`] | indices | → `Scalar<i32>` |
//! | `g.dim(k)`, `g.rows()`, `g.cols()`, `g.len()` | `dim[k]` | `Gl`/`GlMut` → `Scalar<i32>` |
//! | [`ceil_div(n, tile)`](ceil_div) | `map.div`, `map.rem`, `map.add` | `(Scalar<i32>, usize)` → `Scalar<i32>`: tiles covering `n`, exact up to `i32::MAX` |
//! | [`fill(v)`](fill), [`zeros()`](zeros) | `fill[v]` | → `Rt`/`Rv` (type from context) |
//! | [`splat(s)`](splat) | `splat` | `Scalar<T>` → `Rt<T,..>`/`Rv<T,..>` |
//! | [`iota_rows()`](iota_rows), [`iota_cols()`](iota_cols) | `iota.rows`, `iota.cols` | → `Rt`/`Rv`; → `Rt` |
//! | `x.exp() .exp2() .log() .log2() .abs() .relu() .silu() .gelu_tanh() .sqrt() .rsqrt() .recip() .tanh() .sigmoid()`, `-x`, `!x` ([`Map`]) | `map.f` | `H` → `H` (H = `Scalar`, `Rt`, `Rv`) |
//! | `x + y`, `-`, `*`, `/`, `%`, `&`, `\|`, `^`, `<<`, `>>`, `+=` …, `x.max(y)`, `x.min(y)`, `x.pow(y)` | `map.f` | `(H, H \| Scalar<T> \| literal)` → `H` |
//! | `s.lt(y)`, `.le`, `.gt`, `.ge`, `.eq`, `.ne` | `cmp.p` | `(Scalar<T>, Scalar<T>)` → `Scalar<bool>`; `(Rt<T,R,C,L>, Rt \| Scalar<T> \| literal)` → `Rt<bool,R,C,L>`; `Rv` likewise ([`compare`]) |
//! | [`select(c, x, y)`](select) | `select` | `(Scalar<bool> \| mask of H's shape, H, H \| Scalar<T> \| literal)` → `H` ([`SelectMask`]) |
//! | `1.0 - t`, `2.0 * v`, `s / t` (on the left: a float literal for float dtypes, an integer literal for integer dtypes, or a `Scalar` of the dtype) | `map.f` | `(Scalar<T> \| literal, H)` → `H` |
//! | [`gather(g, (rows, cols))`](gather) | `gather` | `(Gl<T, n>, n × Rv<i32,N,A>)` → `Rv<T,N,A>`: element k = `g[rows[k], cols[k]]`, 0 outside the view |
//! | [`row_argmax(t)`](row_argmax), [`row_argmin`] | `reduce_row.max`, `cmp.eq`, `select`, `reduce_row.min` | `Rt<T,R,C,L>` → `(Rv<T,R,Rows>, Rv<i32,R,Rows>)` (first column on ties) |
//! | [`extract(v, i)`](extract), [`insert(v, i, s)`](insert) | `cmp.eq`, `select`, `reduce.max` | `Rv<T,N,A>` → `Scalar<T>`; `(Rv<T,N,A>, i32, Scalar<T>)` → `Rv<T,N,A>` |
//! | [`convert(x)`](convert), `x.cast::<U>()`, `t.relayout::<L2>()` | `convert` | `Rt<T,R,C,L>` → `Rt<U,R,C,L2>`; `Rv<T,N,A>` → `Rv<U,N,A>`; `Scalar<T>` → `Scalar<U>` |
//! | `x.bitcast::<U>()` ([`bits`]) | `bitcast` | `Rt<T,R,C,L>` → `Rt<U,R,C,L>`, `Rv`, `Scalar` likewise; T and U of one width |
//! | [`transpose(t)`](transpose) | `transpose` | `Rt<T,R,C,L>` → `Rt<T,C,R,L>` |
//! | [`bcast_row(f, t, v)`](bcast_row), [`add_row`] [`sub_row`] [`mul_row`] [`div_row`] [`max_row`] [`min_row`] | `bcast_row.f` | `(Rt<T,R,C,L>, Rv<T,R,Rows>)` → `Rt<T,R,C,L>` |
//! | [`bcast_col(f, t, v)`](bcast_col), [`add_col`] … [`min_col`] | `bcast_col.f` | `(Rt<T,R,C,L>, Rv<T,C,Cols>)` → `Rt<T,R,C,L>` |
//! | [`reduce_row(f, t)`](reduce_row), [`row_sum`] [`row_max`] [`row_min`] | `reduce_row.f` | `Rt<T,R,C,L>` → `Rv<T,R,Rows>` |
//! | [`reduce_col(f, t)`](reduce_col), [`col_sum`] [`col_max`] [`col_min`] | `reduce_col.f` | `Rt<T,R,C,L>` → `Rv<T,C,Cols>` |
//! | [`reduce_all(f, x)`](reduce_all) | `reduce.f` | `Rt`/`Rv` of T → `Scalar<T>` |
//! | [`row_prod`], [`col_prod`], `reduce_all(Red::Prod, x)` | `reduce_row.prod`, `reduce_col.prod`, `reduce.prod` | as the sums |
//! | [`scan_row(f, t)`](scan_row), [`exscan_row`], [`scan_col`], [`exscan_col`], [`cumsum_rows`] | `scan_row.f`, `exscan_row.f`, `scan_col.f`, `exscan_col.f` | `Rt<T,R,C,L>` → `Rt<T,R,C,L>` (inclusive / exclusive prefix) |
//! | [`sort_row_desc(t, idx)`](sort_row_desc), [`sort_row_asc`] | `sort_row.desc`, `sort_row.asc` | `(Rt<T,R,C,L>, Rt<i32,R,C,L>)` → the same, each row sorted, payload moved along ([`sort`]: ties to the lower payload, NaN above all) |
//! | [`topk_row(k, t, idx)`](topk_row), [`topk_row_merge`], [`topk_merge`], [`topk_empty`] | `topk_row[k]` | `(Rt<T,R,C,L>, Rt<i32,R,C,L>[, TopK])` → [`TopK<T,R,L>`](TopK) = `(Rt<T,R,16,L>, Rt<i32,R,16,L>)`, k ≤ 16 |
//! | [`mask_causal(t, r0, c0, v)`](mask_causal), [`mask_anticausal`] | `mask.causal[v]`, `mask.anticausal[v]` | `Rt` → `Rt` |
//! | [`mask_rows(t, off, bound, v)`](mask_rows), [`mask_cols`] | `mask.rows[v]`, `mask.cols[v]` | `Rt` → `Rt` |
//! | [`mma_ab(acc, a, b)`](mma_ab) | `mma.ab` | `(Rt<f32,M,N>, Rt<TA,M,K,Row>, Rt<TB,K,N,Col>)` → `Rt<f32,M,N>` |
//! | [`mma_abt`] | `mma.abt` | `(Rt<f32,M,N>, Rt<TA,M,K,Row>, Rt<TB,N,K,Row>)` → `Rt<f32,M,N>` |
//! | [`mma_atb`] | `mma.atb` | `(Rt<f32,M,N>, Rt<TA,K,M,Col>, Rt<TB,K,N,Col>)` → `Rt<f32,M,N>` |
//! | [`mma_atbt`] | `mma.atbt` | `(Rt<f32,M,N>, Rt<TA,K,M,Col>, Rt<TB,N,K,Row>)` → `Rt<f32,M,N>` |
//! | [`mma_ab_wg`], [`mma_abt_wg`], [`mma_atb_wg`], [`mma_atbt_wg`] | `mma.* @warpgroup` | acc this warp's `M×N`; A this warp's `Rt` or the group's `St` with 4·M rows of op(A) ([`WgA`], [`WgAt`]); B the group's `St` (`K×N` or `N×K`) |
//! | [`mma_async_ab_wg`] (and `_abt`, `_atb`, `_atbt`), [`mma_commit`], [`mma_wait`], [`mma_wait_acc`] | `mma_async.* @warpgroup`, `mma_commit`, `mma_wait[n]` | the accumulator is in flight until `mma_wait_acc` retires it; see [`mma_async`] |
//! | [`alloc_shared()`](alloc_shared) | `alloc_shared @block` | → `St`/`Sv`/`Sem`/`SharedArray` |
//! | `arr.at(i)` | `shared.index` | `SharedArray<E, N>` → `E` |
//! | [`load(src)`](load) | `load` | `g.tile(i, j)` → `Rt`; `g.chunk(..)` → `Rv`; `g.at(..)` → `Scalar`; `St<T,R,C>` → `Rt<T,R,C,L>`; `st.tile(i, j)` → `Rt`; `Sv<T,N>` → `Rv<T,N,A>` |
//! | [`load_warpgroup(st)`](load_warpgroup) | `load @warpgroup` | `St<T,4·R,C>` → `Rt<T,R,C,L>` (this warp's rows) |
//! | [`store(dst, x)`](store) | `store` | the inverse of `load` (global places must come from a `GlMut`) |
//! | [`store_warpgroup(st, t)`](store_warpgroup) | `store @warpgroup` | `(St<T,4·R,C>, Rt<T,R,C,L>)` |
//! | [`copy_block(dst, src)`](copy_block), [`copy_warpgroup`], [`copy_warp`] | `copy @block` / `@warpgroup` / warp | `St ← g.tile(..)`, `GlMut.tile(..) ← St`, and the same for `Sv` |
//! | [`copy_async(st, g.tile(..), sem)`](copy_async) | `copy_async` | global → `St`, completes on `sem` |
//! | [`copy_start(st, g.tile(..))`](copy_start), [`copy_commit()`](copy_commit), [`copy_wait(n)`](copy_wait) | `copy_start @block`, `copy_commit @block`, `copy_wait[N] @block` | global → `St` in flight until waited ([`pipeline`]: multistage rings) |
//! | [`gather_rows(g, rows, j)`](gather_rows) | `gather_rows` | `(Gl<T>, Rv<i32,R,Rows>, i32)` → `Rt<T,R,C,L>` |
//! | [`scatter_rows(g, t, rows, j)`](scatter_rows), [`scatter_add_rows`] | `scatter_rows`, `scatter_add_rows` | `(GlMut<T>, Rt<T,R,C,L>, Rv<i32,R,Rows>, i32)` |
//! | [`atomic_add(g.at(..) \| g.chunk(..) \| g.tile(..), x)`](atomic_add) | `atomic_add` | `GlMut` place, `Scalar<T>`, `Rv<T,..>` or `Rt<T,..>` |
//! | [`atomic_max(g.at(..) \| g.chunk(..) \| g.tile(..), x)`](atomic_max), [`atomic_min`], [`atomic_exch`] | `atomic_max`, `atomic_min`, `atomic_exch` | `GlMut` place of i32/u32/f32, `Scalar<T>`, `Rv<T,..>` or `Rt<T,..>` → the old values ([`atomic`]) |
//! | [`atomic_cas(place, cmp, x)`](atomic_cas) | `atomic_cas` | as `atomic_max`, with `cmp` of x's type → the old values |
//! | [`philox(key, [c0, c1, c2, c3])`](philox), [`rand_uniform(key, offset, ctr)`](rand_uniform), [`rand_normal`] | `philox` (+ maps) | `(Scalar<u32>, Scalar<u32>)` key, u32 `Scalar`/`Rt`/`Rv` counters → four words; `Rt<u32,R,C,L>` counters → `Rt<f32,R,C,L>` ([`random`]) |
//! | [`device_assert(c, "message")`](device_assert) | `device_assert[@"message"]` | `Scalar<bool>` or a bool `Rt`/`Rv` (every element) ([`assertion`]) |
//! | [`barrier()`](barrier) | `barrier @block` | |
//! | `s.init(n)`, `s.arrive()`, `s.expect(bytes)`, `s.wait(parity)` | `sem.init[n]`, `sem.arrive`, `sem.expect[b]`, `sem.wait` | `Sem` ([`bytes_of`] sizes a shared object) |
//! | `for x in range(lo, hi)` / [`range_step`] | `for` (+ `yield`) | variables assigned in the body are loop-carried |
//! | `if c { .. } else { .. }` with `c: Scalar<bool>` | `if` (+ `yield`) | variables assigned in a branch become results; an `if` expression's value too |
//! | `while c { .. }` with `c: Scalar<bool>` | `while` (+ `condition`, `yield`) | |
//! | end of the kernel body | `return` | |
//! | a call of a `#[tilekit::func(call)]` helper | `call[@f]` (+ the helper, ending in `return`) | arguments and results: DSL values and tuples of them ([`Values`]) |
//!
//! `for` over a Rust range or iterator and `if`/`while` on a Rust `bool` run while building
//! (unrolling, choosing). `#[tilekit::func]` helpers are inlined at each call (they may be generic
//! over shapes and dtypes and take Rust values); `#[tilekit::func(call)]` helpers, whose
//! parameters and results are DSL values, become Tile IR helper functions (one per
//! instantiation, built once per kernel) called with `call[@name]`.
//!
//! ## Index arithmetic
//!
//! Indices and extents are `i32` and wrap on overflow, as on the GPU. Extents reach `i32::MAX`
//! (a `[1, 2³¹ − 1]` bf16 tensor is 4 GiB), so count tiles with [`ceil_div`], never
//! `(n + tile − 1) / tile`, which wraps to a negative count for the last `tile − 1` extents
//! below the limit. A product of a tile index and a tile size is safe when the index is below
//! the tile count of an extent (`kt · tile < n`); sums past an extent (`(block + 1) · rows`) are
//! not, and are better written as a comparison with the extent.
//!
//! ## Scopes
//!
//! Ops run at warp scope unless their name says otherwise (`*_warpgroup`, `*_wg`, `*_block`,
//! `barrier`, `alloc_shared`). Branching on [`warp_idx`] gives warp-specialized kernels.

pub mod arith;
pub mod assertion;
pub mod atomic;
pub mod bits;
pub mod call;
pub mod compare;
#[doc(hidden)]
pub mod comptime;
pub mod control;
pub mod dtype;
pub mod handles;
pub mod indexing;
pub mod mma_async;
#[doc(hidden)]
pub mod naming;
pub mod ops;
pub mod pipeline;
pub mod random;
pub mod registers;
pub mod scan;
pub mod sort;
pub mod table;
pub(crate) mod trace;

pub use arith::{convert, lit, select, transpose, ConvertTo, Map, Operand};
pub use assertion::{device_assert, AssertCond};
pub use atomic::{atomic_cas, atomic_exch, atomic_max, atomic_min, AtomicDtype, AtomicValue};
#[doc(hidden)]
pub use call::__call;
pub use call::Values;
pub use compare::SelectMask;
#[doc(hidden)]
pub use comptime::{__ge, __gt, __le, __lt, __range};
#[doc(hidden)]
pub use control::{__for, __if, __while};
pub use control::{range, range_step, Carry, Cond, ForLoop, RtRange, WhileCond};
pub use dtype::{
    bf16, f16, f8e4m3, f8e5m2, Dtype, FloatDtype, IntDtype, Literal, MmaPair, RegDtype,
};
pub use handles::{
    Auto, Col, Cols, Gl, GlMut, Handle, NoSwizzle, Register, Row, Rows, Rt, Rv, Scalar, Sem,
    Shared, SharedArray, St, Sv, SwizzleKind, Swz128, Swz32, Swz64, TileLayout, VecAlong,
};
pub use indexing::{extract, gather, insert, row_argmax, row_argmin, ElementIndices, RankedView};
pub use mma_async::{
    mma_async_ab_wg, mma_async_abt_wg, mma_async_atb_wg, mma_async_atbt_wg, mma_commit, mma_wait,
    mma_wait_acc, Accumulators,
};
pub use ops::*;
pub use pipeline::{copy_commit, copy_start, copy_wait};
pub use random::{philox, rand_normal, rand_uniform, PhiloxWord};
pub use registers::{setmaxnreg_dec, setmaxnreg_inc};
pub use scan::{col_prod, cumsum_rows, exscan_col, exscan_row, row_prod, scan_col, scan_row};
pub use sort::{
    sort_row_asc, sort_row_desc, topk_empty, topk_merge, topk_row, topk_row_merge, TopK,
};
pub use table::{GlTable, GlTableMut};
