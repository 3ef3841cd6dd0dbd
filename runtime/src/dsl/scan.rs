//! Products along rows and columns (`reduce_row.prod`, `reduce_col.prod`); `reduce_all(Red::Prod,
//! x)` multiplies every element. Like sums, the IR defines them exact and rounded once; the
//! GPU multiplies in f32 in a tree order, so results agree to within f32 rounding per factor.

use super::dtype::RegDtype;
use super::handles::{Cols, Rows, Rt, Rv, TileLayout};
use super::ops::{reduce_col, reduce_row, Red};

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
