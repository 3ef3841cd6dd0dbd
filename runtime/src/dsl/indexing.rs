//! Where values are, and values by position: element gathers from global views by index
//! vectors ([`gather`], the `gather` op), argmax/argmin along rows (value and column), element
//! extract/insert of register vectors.
//!
//! All but `gather` are compositions of compares, selects, broadcasts and reductions (each op lowered on
//! every target), not ops of their own: an argmax is a row maximum, a compare of the row with
//! it and a row minimum over the matching column indices, so ties go to the first column.
//!
//! ```
//! use tilekit::dsl::*;
//!
//! #[tilekit::kernel]
//! fn greedy(logits: Gl<f32, 2>, best: GlMut<i32, 1>) {
//!     let t: Rt<f32, 16, 64> = load(logits.tile(block_idx_x(), 0));
//!     let (_value, col) = row_argmax(t);
//!     store(best.chunk(block_idx_x()), col);
//! }
//! # tilekit::ir::verify(greedy::module()).unwrap();
//! ```

use super::arith::{select, Operand};
use super::dtype::{Dtype, RegDtype};
use super::handles::{Gl, GlMut, Handle, Rows, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::ops::{add_row, fill, iota_cols, iota_rows, reduce_all, row_max, row_min, zeros, Red};
use super::trace::rec;
use crate::ir::{ScalarType, Value};

/// A global view of rank `RANK` (read-only or writable), as a [`gather`] source.
pub trait RankedView<T: Dtype, const RANK: usize>: Handle {}
impl<T: Dtype, const RANK: usize> RankedView<T, RANK> for Gl<T, RANK> {}
impl<T: Dtype, const RANK: usize> RankedView<T, RANK> for GlMut<T, RANK> {}

/// One index vector per dimension of a view of rank `RANK`: `Rv<i32, N, A>` for rank 1, a
/// tuple of two (rows, cols) for rank 2, of three for rank 3.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not index a view of rank {RANK}",
    label = "expected {RANK} index vectors `Rv<i32, N, _>` of one type (a tuple for rank > 1)"
)]
pub trait ElementIndices<const RANK: usize, const N: usize, A: VecAlong> {
    /// The index vectors' IR values, outermost dimension first.
    fn values(self) -> Vec<Value>;
}
impl<const N: usize, A: VecAlong> ElementIndices<1, N, A> for Rv<i32, N, A> {
    fn values(self) -> Vec<Value> {
        vec![self.value()]
    }
}
impl<const N: usize, A: VecAlong> ElementIndices<2, N, A> for (Rv<i32, N, A>, Rv<i32, N, A>) {
    fn values(self) -> Vec<Value> {
        vec![self.0.value(), self.1.value()]
    }
}
impl<const N: usize, A: VecAlong> ElementIndices<3, N, A>
    for (Rv<i32, N, A>, Rv<i32, N, A>, Rv<i32, N, A>)
{
    fn values(self) -> Vec<Value> {
        vec![self.0.value(), self.1.value(), self.2.value()]
    }
}

/// Element k is `g[i0[k], i1[k], …]`: `gather(logits, (rows, targets))` picks each row's
/// target logit. An element whose indices fall outside the view reads 0.
#[track_caller]
pub fn gather<T: RegDtype, const RANK: usize, const N: usize, A: VecAlong>(
    g: impl RankedView<T, RANK>,
    idx: impl ElementIndices<RANK, N, A>,
) -> Rv<T, N, A> {
    let idx = idx.values();
    Rv::from_value(rec!(|b| b.gather(g.value(), &idx)))
}

/// The column of each row's value `v` (the first, where it occurs more than once; `C` where it
/// does not occur, as in a row of NaN).
#[track_caller]
fn first_col_of<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
    v: Rv<T, R, Rows>,
) -> Rv<i32, R, Rows> {
    // `0 + v` is v exactly (a -0 becomes +0, which compares equal to -0).
    let wanted: Rt<T, R, C, L> = add_row(zeros(), v);
    let cols: Rt<i32, R, C, L> = iota_cols();
    row_min(select(t.eq(wanted), cols, C as i32))
}

/// Each row's maximum and its column (the first on ties): `Rt<T, R, C, L>` →
/// `(Rv<T, R>, Rv<i32, R>)`. Rows holding NaN have a target-defined maximum; their column is
/// that of the maximum where it occurs in the row, else `C`.
#[track_caller]
pub fn row_argmax<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
) -> (Rv<T, R, Rows>, Rv<i32, R, Rows>) {
    let m = row_max(t);
    (m, first_col_of(t, m))
}

/// Each row's minimum and its column (the first on ties), as [`row_argmax`].
#[track_caller]
pub fn row_argmin<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
) -> (Rv<T, R, Rows>, Rv<i32, R, Rows>) {
    let m = row_min(t);
    (m, first_col_of(t, m))
}

/// The lowest value of a dtype: the identity of `max`.
fn lowest(d: ScalarType) -> f64 {
    match d {
        ScalarType::I8 => f64::from(i8::MIN),
        ScalarType::I32 => f64::from(i32::MIN),
        ScalarType::U32 | ScalarType::Bool => 0.0,
        ScalarType::I64 => i64::MIN as f64,
        _ => f64::NEG_INFINITY,
    }
}

/// Element `i` of a register vector, as a scalar (every lane gets it). An index outside
/// `0..N` gives the dtype's lowest value (`-inf` for floats). Not for `bool` vectors.
#[track_caller]
pub fn extract<T: RegDtype, const N: usize, A: VecAlong>(
    v: Rv<T, N, A>,
    i: impl Operand<Rv<i32, N, A>>,
) -> Scalar<T> {
    let at: Rv<i32, N, A> = iota_rows();
    let others: Rv<T, N, A> = fill(lowest(T::SCALAR));
    // Only element i is kept; max with the dtype's lowest value returns it exactly.
    reduce_all(Red::Max, select(at.eq(i), v, others))
}

/// `v` with element `i` replaced by `s` (unchanged when `i` is outside `0..N`).
#[track_caller]
pub fn insert<T: RegDtype, const N: usize, A: VecAlong>(
    v: Rv<T, N, A>,
    i: impl Operand<Rv<i32, N, A>>,
    s: Scalar<T>,
) -> Rv<T, N, A> {
    let at: Rv<i32, N, A> = iota_rows();
    select(at.ne(i), v, s)
}
