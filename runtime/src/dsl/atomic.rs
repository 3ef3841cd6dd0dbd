//! Global atomics that return the old value: [`atomic_max`], [`atomic_min`], [`atomic_exch`],
//! [`atomic_cas`] (the IR's `atomic_max`, `atomic_min`, `atomic_exch`, `atomic_cas`), on
//! `i32`, `u32` and `f32` elements; [`atomic_add`](super::atomic_add) is the one without a result.
//!
//! A scalar update is one atomic per warp at element indices (`g.at(..)`), and every lane of the
//! warp receives the old value; a tile update (`g.tile(..)`) or a register-vector update at a
//! chunk index (`g.chunk(..)`) updates each element inside the view and returns the old elements
//! (0 outside it).
//!
//! ```
//! use tilekit::dsl::*;
//!
//! /// Column-wise maximum of a matrix into `m` (one warp per 16-row block of `x`).
//! #[tilekit::kernel]
//! fn col_max_atomic(x: Gl<f32, 2>, m: GlMut<f32, 2>) {
//!     let t: Rt<f32, 16, 16> = load(x.tile(block_idx_x(), 0));
//!     let _old = atomic_max(m.tile(0, 0), t);
//! }
//! # tilekit::ir::verify(col_max_atomic::module()).unwrap();
//! ```

use super::dtype::{Dtype, RegDtype};
use super::handles::{Register, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::ops::{GlAt, StoreTo};
use super::trace::rec;
use crate::ir::AtomicFn;

/// Element types with returning atomics on every target: 32-bit integers and f32.
#[diagnostic::on_unimplemented(
    message = "no atomic max/min/exchange/compare-and-swap on `{Self}` elements",
    note = "the returning atomics exist for i32, u32 and f32 (bitcast other 32-bit types)"
)]
pub trait AtomicDtype: Dtype {}
impl AtomicDtype for i32 {}
impl AtomicDtype for u32 {}
impl AtomicDtype for f32 {}

/// What a returning atomic updates: a [`Scalar`] (at `g.at(..)`), a register vector (at
/// `g.chunk(..)`) or a register tile (at `g.tile(..)`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be applied atomically",
    note = "atomics take a `Scalar<T>` at `g.at(..)`, an `Rv<T, ..>` at `g.chunk(..)` or an `Rt<T, ..>` at `g.tile(..)`"
)]
pub trait AtomicValue: Register {}
impl<T: AtomicDtype> AtomicValue for Scalar<T> {}
impl<T: AtomicDtype + RegDtype, const N: usize, A: VecAlong> AtomicValue for Rv<T, N, A> {}
impl<T: AtomicDtype + RegDtype, const R: usize, const C: usize, L: TileLayout> AtomicValue
    for Rt<T, R, C, L>
{
}

#[track_caller]
fn rmw<V: AtomicValue>(f: AtomicFn, dst: GlAt<V::Elem, true>, x: V) -> V
where
    GlAt<V::Elem, true>: StoreTo<V>,
{
    let ops = StoreTo::<V>::operands(&dst);
    V::from_value(rec!(|b| b.atomic_rmw(f, ops[0], x.value(), &ops[1..])))
}

/// `dst ← max(dst, x)` atomically, per element; returns the old values. For f32 a NaN operand
/// yields the other (IEEE maxNum).
#[track_caller]
pub fn atomic_max<V: AtomicValue>(dst: GlAt<V::Elem, true>, x: V) -> V
where
    GlAt<V::Elem, true>: StoreTo<V>,
{
    rmw(AtomicFn::Max, dst, x)
}

/// `dst ← min(dst, x)` atomically, per element; returns the old values.
#[track_caller]
pub fn atomic_min<V: AtomicValue>(dst: GlAt<V::Elem, true>, x: V) -> V
where
    GlAt<V::Elem, true>: StoreTo<V>,
{
    rmw(AtomicFn::Min, dst, x)
}

/// `dst ← x` atomically, per element; returns the old values.
#[track_caller]
pub fn atomic_exch<V: AtomicValue>(dst: GlAt<V::Elem, true>, x: V) -> V
where
    GlAt<V::Elem, true>: StoreTo<V>,
{
    rmw(AtomicFn::Exch, dst, x)
}

/// Compare-and-swap: where an element's bits equal `cmp`'s, it becomes `x`; returns the old
/// values (the swap happened where the old value equals `cmp`).
#[track_caller]
pub fn atomic_cas<V: AtomicValue>(dst: GlAt<V::Elem, true>, cmp: V, x: V) -> V
where
    GlAt<V::Elem, true>: StoreTo<V>,
{
    let ops = StoreTo::<V>::operands(&dst);
    V::from_value(rec!(|b| b.atomic_cas(
        ops[0],
        cmp.value(),
        x.value(),
        &ops[1..]
    )))
}
