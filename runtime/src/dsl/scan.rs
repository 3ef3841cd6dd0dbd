//! Scans (prefix sums, products, maxima, minima) along rows and columns of register tiles,
//! inclusive or exclusive, and products along rows and columns (`reduce_row.prod`,
//! `reduce_col.prod`; `reduce_all(Red::Prod, x)` multiplies every element). Like sums, the IR
//! defines them in f64, rounded to the dtype; the GPU accumulates in f32, so results agree to
//! within f32 rounding per step.

use super::dtype::RegDtype;
use super::handles::{Cols, Handle, Rows, Rt, Rv, TileLayout};
use super::ops::{reduce_col, reduce_row, Red};
use super::trace::rec;
use crate::ir::BcastAxis;

#[track_caller]
fn scan<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    axis: BcastAxis,
    f: Red,
    exclusive: bool,
    t: Rt<T, R, C, L>,
) -> Rt<T, R, C, L> {
    Rt::from_value(rec!(|b| b.scan(axis, f, exclusive, t.value())))
}

/// Inclusive prefix of `f` along each row: element (r, c) is f over `t[r][0..=c]`
/// (`scan_row(Red::Sum, t)` is a cumulative sum).
#[track_caller]
pub fn scan_row<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: Red,
    t: Rt<T, R, C, L>,
) -> Rt<T, R, C, L> {
    scan(BcastAxis::Row, f, false, t)
}

/// Exclusive prefix along each row: f over `t[r][0..c]`, f's identity (0, 1, the lowest or the
/// highest value) in column 0.
#[track_caller]
pub fn exscan_row<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: Red,
    t: Rt<T, R, C, L>,
) -> Rt<T, R, C, L> {
    scan(BcastAxis::Row, f, true, t)
}

/// Inclusive prefix of `f` down each column: element (r, c) is f over `t[0..=r][c]`.
#[track_caller]
pub fn scan_col<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: Red,
    t: Rt<T, R, C, L>,
) -> Rt<T, R, C, L> {
    scan(BcastAxis::Col, f, false, t)
}

/// Exclusive prefix down each column, f's identity in row 0.
#[track_caller]
pub fn exscan_col<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: Red,
    t: Rt<T, R, C, L>,
) -> Rt<T, R, C, L> {
    scan(BcastAxis::Col, f, true, t)
}

/// The cumulative sum along each row (`scan_row(Red::Sum, t)`).
#[track_caller]
pub fn cumsum_rows<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
) -> Rt<T, R, C, L> {
    scan_row(Red::Sum, t)
}

/// The product of each row: `Rt<T, R, C, L>` → `Rv<T, R, Rows>`.
#[track_caller]
pub fn row_prod<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
) -> Rv<T, R, Rows> {
    reduce_row(Red::Prod, t)
}

/// The product of each column: `Rt<T, R, C, L>` → `Rv<T, C, Cols>`.
#[track_caller]
pub fn col_prod<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
) -> Rv<T, C, Cols> {
    reduce_col(Red::Prod, t)
}
