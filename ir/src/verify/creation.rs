//! Creation of register tiles and vectors: `fill`, `splat`, `iota`.

use super::expect::OpCx;
use crate::ops::BcastAxis;

/// `fill[v] : rt|rv`.
pub(super) fn check_fill(cx: &mut OpCx<'_, '_>) {
    let result = cx.result(0);
    cx.expect_tile_or_vector("result", result);
}

/// `splat (s) : rt|rv` — s is a scalar of the result's dtype.
pub(super) fn check_splat(cx: &mut OpCx<'_, '_>) {
    let (s, result) = (cx.operand(0), cx.result(0));
    if !cx.expect_tile_or_vector("result", result) || cx.expect_any_scalar("s", s).is_none() {
        return;
    }
    if let Some(d) = result.dtype() {
        cx.expect_dtype("s", s, d, &format!("the dtype of the result: {result}"));
    }
}

/// `iota.rows : rt|rv`, `iota.cols : rt`.
pub(super) fn check_iota(cx: &mut OpCx<'_, '_>, axis: BcastAxis) {
    let result = cx.result(0);
    match axis {
        BcastAxis::Row => {
            cx.expect_tile_or_vector("result", result);
        }
        BcastAxis::Col => {
            cx.expect_tile("result (iota.cols numbers tile columns)", result);
        }
    }
}
