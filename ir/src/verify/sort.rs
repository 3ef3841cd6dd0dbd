//! `sort_row.*` and `topk_row`: row sorts and top-k of register tiles with an i32 payload.

use super::expect::{OpCx, TileTy};
use super::VerifyErrorKind;
use crate::types::{ScalarType, Type};

/// The most a `topk_row` selects: its results are 16 columns wide.
pub(crate) const MAX_TOPK: u32 = 16;

/// Key dtypes the sorts order (16-bit floats compare exactly in f32).
fn sortable(d: ScalarType) -> bool {
    matches!(
        d,
        ScalarType::F32 | ScalarType::BF16 | ScalarType::F16 | ScalarType::I32 | ScalarType::U32
    )
}

/// Expects `t` a tile of sortable keys and `idx` an i32 tile of its shape and layout; returns
/// the keys' tile type.
fn keys_and_payload(cx: &mut OpCx<'_, '_>, t: usize, idx: usize) -> Option<TileTy> {
    let (kt, it) = (cx.operand(t), cx.operand(idx));
    let (kname, iname) = if t == 0 {
        ("t", "idx")
    } else {
        ("best", "best_idx")
    };
    let k = cx.expect_tile(kname, kt)?;
    if !sortable(k.dtype) {
        cx.report(VerifyErrorKind::Dtype {
            what: kname.into(),
            expected: "keys of f32, bf16, f16, i32 or u32".into(),
            found: kt.to_string(),
        });
        return None;
    }
    let want = Type::tile(ScalarType::I32, k.rows, k.cols, k.layout);
    if !cx.expect_type(iname, it, &want, &format!("the i32 payload of {kname}")) {
        return None;
    }
    Some(k)
}

/// `sort_row.desc|asc (t, idx) : (type of t, type of idx)`.
pub(super) fn check_sort_row(cx: &mut OpCx<'_, '_>) {
    if keys_and_payload(cx, 0, 1).is_none() {
        return;
    }
    let (t, idx) = (cx.operand(0), cx.operand(1));
    let (r0, r1) = (cx.result(0), cx.result(1));
    cx.expect_type("result 0", r0, t, "the type of t");
    cx.expect_type("result 1", r1, idx, "the type of idx");
}

/// `topk_row[k] (t, idx, best, best_idx) : (rt<T, R x 16, L>, rt<i32, R x 16, L>)` with
/// 1 ≤ k ≤ 16; best has t's dtype, rows and layout and 16 columns.
pub(super) fn check_topk_row(cx: &mut OpCx<'_, '_>, k: u32) {
    if !(1..=MAX_TOPK).contains(&k) {
        cx.report(VerifyErrorKind::Attribute {
            what: "k".into(),
            expected: format!("1 to {MAX_TOPK} (the results are {MAX_TOPK} columns wide)"),
            found: k.to_string(),
        });
    }
    let Some(keys) = keys_and_payload(cx, 0, 1) else {
        return;
    };
    let want = Type::tile(keys.dtype, keys.rows, MAX_TOPK, keys.layout);
    let why = "t's dtype, rows and layout, 16 columns";
    if !cx.expect_type("best", cx.operand(2), &want, why) || keys_and_payload(cx, 2, 3).is_none() {
        return;
    }
    let (best, best_idx) = (cx.operand(2), cx.operand(3));
    let (r0, r1) = (cx.result(0), cx.result(1));
    cx.expect_type("result 0", r0, best, "the type of best");
    cx.expect_type("result 1", r1, best_idx, "the type of best_idx");
}
