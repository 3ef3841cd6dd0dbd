//! Row and column ops on register tiles: `bcast_row.*`, `bcast_col.*`, `reduce_row.*`,
//! `reduce_col.*`, `reduce.*`, `mask.*`.

use super::elementwise::binary_accepts;
use super::expect::OpCx;
use super::VerifyErrorKind;
use crate::ops::{BcastAxis, BinaryFn, MaskKind, ReduceAxis};
use crate::types::{ScalarType, Type, VecAxis};

/// `bcast_row.f (t, v)` — v is `rv<T, t.rows, rows>`; `bcast_col.f (t, v)` — v is
/// `rv<T, t.cols, cols>`; f is defined on T; the result has t's type.
pub(super) fn check_bcast(cx: &mut OpCx<'_, '_>, axis: BcastAxis, f: BinaryFn) {
    let (t, v) = (cx.operand(0), cx.operand(1));
    let Some(tt) = cx.expect_tile("t", t) else {
        return;
    };
    let (len, vec_axis, per) = match axis {
        BcastAxis::Row => (tt.rows, VecAxis::Rows, "row"),
        BcastAxis::Col => (tt.cols, VecAxis::Cols, "column"),
    };
    if cx.expect_vector("v", v).is_some() {
        let expected = Type::vector(tt.dtype, len, vec_axis);
        cx.expect_type(
            "v",
            v,
            &expected,
            &format!("one element per {per} of t: {t}"),
        );
    }
    if let Err(expected) = binary_accepts(f, tt.dtype) {
        cx.report(VerifyErrorKind::Dtype {
            what: "t".into(),
            expected: format!("{expected} for {}", cx.name),
            found: format!("{} ({t})", tt.dtype),
        });
    }
    cx.expect_result(t, "the type of t");
}

/// `reduce_row.f (t) : rv<T, rows, rows>`, `reduce_col.f (t) : rv<T, cols, cols>`,
/// `reduce.f (x) : T` of a tile or vector; not of bool (whatever f is).
/// `scan_row.f (t)` and the other scans — a register tile of a numeric dtype; the result has
/// its type.
pub(super) fn check_scan(cx: &mut OpCx<'_, '_>) {
    let t = cx.operand(0);
    let Some(tt) = cx.expect_tile("t", t) else {
        return;
    };
    if tt.dtype == ScalarType::Bool {
        cx.report(VerifyErrorKind::Dtype {
            what: "t".into(),
            expected: "a numeric dtype (not bool) for a scan".into(),
            found: t.to_string(),
        });
        return;
    }
    cx.expect_result(t, "the type of t");
}

pub(super) fn check_reduce(cx: &mut OpCx<'_, '_>, axis: ReduceAxis) {
    let x = cx.operand(0);
    let (expected, why) = match axis {
        ReduceAxis::Row | ReduceAxis::Col => {
            let Some(t) = cx.expect_tile("x", x) else {
                return;
            };
            if axis == ReduceAxis::Row {
                (
                    Type::vector(t.dtype, t.rows, VecAxis::Rows),
                    "one element per row of x",
                )
            } else {
                (
                    Type::vector(t.dtype, t.cols, VecAxis::Cols),
                    "one element per column of x",
                )
            }
        }
        ReduceAxis::All => {
            if !cx.expect_tile_or_vector("x", x) {
                return;
            }
            let Some(d) = x.dtype() else {
                return;
            };
            (Type::Scalar(d), "a scalar of the dtype of x")
        }
    };
    if x.dtype() == Some(ScalarType::Bool) {
        cx.report(VerifyErrorKind::Dtype {
            what: "x".into(),
            expected: format!("a numeric dtype (not bool) for {}", cx.name),
            found: x.to_string(),
        });
    }
    cx.expect_result(&expected, why);
}

/// `mask.k[v] (t, a, b)` — a register tile and two i32 offsets or bounds; the result has t's
/// type.
pub(super) fn check_mask(cx: &mut OpCx<'_, '_>, kind: MaskKind) {
    let (t, a, b) = (cx.operand(0), cx.operand(1), cx.operand(2));
    let (a_name, b_name) = match kind {
        MaskKind::Causal | MaskKind::AntiCausal => ("row_off", "col_off"),
        MaskKind::Rows => ("row_off", "bound"),
        MaskKind::Cols => ("col_off", "bound"),
    };
    cx.expect_i32(a_name, a);
    cx.expect_i32(b_name, b);
    if cx.expect_tile("t", t).is_some() {
        cx.expect_result(t, "the type of t");
    }
}
