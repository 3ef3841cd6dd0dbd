//! Row sorts and top-k of register tiles, with an i32 payload (column or expert indices)
//! moved along with the keys: `sort_row.*` and `topk_row` (MoE routing: the top 8 of 256
//! experts is a loop of `topk_row_merge` over 16 tiles of 16 columns).
//!
//! The order is total on (key, payload) pairs: keys descending (or ascending), equal keys by
//! the lower payload first; NaN is above every number (first when descending, last when
//! ascending) and equal to every NaN; −0 equals +0. Every target sorts with a bitonic network
//! and returns exactly the interpreter's result.
//!
//! ```
//! use tilekit::dsl::*;
//!
//! #[tilekit::kernel]
//! fn route(scores: Gl<f32, 2>, top: GlMut<f32, 2>, experts: GlMut<i32, 2>) {
//!     // The top 4 of 64 experts per token, 16 experts at a time.
//!     let mut best = topk_empty::<f32, 16, Row>();
//!     for j in 0..4 {
//!         let s: Rt<f32, 16, 16> = load(scores.tile(0, j));
//!         let ids: Rt<i32, 16, 16> = iota_cols() + (16 * j) as i32;
//!         best = topk_row_merge(4, s, ids, best);
//!     }
//!     store(top.tile(0, 0), best.0);
//!     store(experts.tile(0, 0), best.1);
//! }
//! # tilekit::ir::verify(route::module()).unwrap();
//! ```

use super::dtype::RegDtype;
use super::handles::{Handle, Rt, TileLayout};
use super::ops::fill;
use super::trace::rec;

/// A running top-k list: 16 columns of keys and their payloads, the first k in order.
pub type TopK<T, const R: usize, L> = (Rt<T, R, 16, L>, Rt<i32, R, 16, L>);

#[track_caller]
fn sort<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    descending: bool,
    t: Rt<T, R, C, L>,
    idx: Rt<i32, R, C, L>,
) -> (Rt<T, R, C, L>, Rt<i32, R, C, L>) {
    let (k, i) = rec!(|b| b.sort_row(descending, t.value(), idx.value()));
    (Rt::from_value(k), Rt::from_value(i))
}

/// Each row sorted by descending key, `idx` moved along (ties: lower `idx` first; NaN first).
/// With `idx = iota_cols()` the payload is each key's original column (an argsort).
#[track_caller]
pub fn sort_row_desc<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
    idx: Rt<i32, R, C, L>,
) -> (Rt<T, R, C, L>, Rt<i32, R, C, L>) {
    sort(true, t, idx)
}

/// Each row sorted by ascending key, `idx` moved along (ties: lower `idx` first; NaN last).
#[track_caller]
pub fn sort_row_asc<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
    idx: Rt<i32, R, C, L>,
) -> (Rt<T, R, C, L>, Rt<i32, R, C, L>) {
    sort(false, t, idx)
}

/// The empty top-k list: every key the lowest value of T (−∞ for floats), every payload
/// `i32::MAX`, so that every real pair comes before it.
#[track_caller]
pub fn topk_empty<T: RegDtype, const R: usize, L: TileLayout>() -> TopK<T, R, L> {
    let lowest = crate::ir::topk_empty_key(T::SCALAR);
    (fill(lowest), fill(f64::from(i32::MAX)))
}

/// The top `k` (1 ≤ k ≤ 16) (key, idx) pairs of each row and of the first `k` of `best`,
/// in descending order in columns 0..k (the rest of the 16 columns empty pairs).
#[track_caller]
pub fn topk_row_merge<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    k: u32,
    t: Rt<T, R, C, L>,
    idx: Rt<i32, R, C, L>,
    best: TopK<T, R, L>,
) -> TopK<T, R, L> {
    let (v, i) = rec!(|b| b.topk_row(k, t.value(), idx.value(), best.0.value(), best.1.value()));
    (Rt::from_value(v), Rt::from_value(i))
}

/// The top `k` (1 ≤ k ≤ 16) (key, idx) pairs of each row, in descending order (ties: lower
/// `idx` first; NaN first) in columns 0..k of 16.
#[track_caller]
pub fn topk_row<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    k: u32,
    t: Rt<T, R, C, L>,
    idx: Rt<i32, R, C, L>,
) -> TopK<T, R, L> {
    topk_row_merge(k, t, idx, topk_empty())
}

/// Two top-k lists merged into the top `k` of their union.
#[track_caller]
pub fn topk_merge<T: RegDtype, const R: usize, L: TileLayout>(
    k: u32,
    a: TopK<T, R, L>,
    b: TopK<T, R, L>,
) -> TopK<T, R, L> {
    topk_row_merge(k, a.0, a.1, b)
}
