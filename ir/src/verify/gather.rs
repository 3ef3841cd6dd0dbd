//! Indexed updates of global views: `gather_rows`, `scatter_rows`, `scatter_add_rows`,
//! `atomic_add`.

use super::expect::OpCx;
use super::memory::check_global_indices;
use super::VerifyErrorKind;
use crate::types::{ScalarType, Type, VecAxis};

/// A rank-2 global view (rows × cols), as gathers and scatters take.
fn expect_matrix_view(cx: &mut OpCx<'_, '_>, g: &Type) -> Option<ScalarType> {
    let gt = cx.expect_global("g", g)?;
    if gt.rank != 2 {
        cx.report(VerifyErrorKind::Shape {
            what: "g".into(),
            expected: "a global view of rank 2 (rows × cols)".into(),
            found: g.to_string(),
        });
        return None;
    }
    Some(gt.dtype)
}

/// The row indices of a gather or scatter: `rv<i32, rows, rows>`.
fn expect_row_indices(cx: &mut OpCx<'_, '_>, idx: &Type, rows: Option<u32>, why: &str) -> bool {
    let Some(v) = cx.expect_vector("idx", idx) else {
        return false;
    };
    let expected = Type::vector(ScalarType::I32, rows.unwrap_or(v.len), VecAxis::Rows);
    cx.expect_type("idx", idx, &expected, why)
}

/// `gather_rows (g, idx, j) : rt` — g a rank-2 view, idx `rv<i32, R, rows>`, j an i32 tile
/// column; the result is a tile of g's dtype with R rows.
pub(super) fn check_gather_rows(cx: &mut OpCx<'_, '_>) {
    let (g, idx, j, result) = (cx.operand(0), cx.operand(1), cx.operand(2), cx.result(0));
    let dtype = expect_matrix_view(cx, g);
    let idx_ok = expect_row_indices(
        cx,
        idx,
        None,
        "one i32 global row index per row of the result",
    );
    cx.expect_i32("j", j);
    let Some(rt) = cx.expect_tile("result", result) else {
        return;
    };
    if let (Some(dtype), true, Some(rows)) = (dtype, idx_ok, idx.num_elements()) {
        let expected = Type::tile(dtype, rows as u32, rt.cols, rt.layout);
        let why = format!("the dtype of g, one row per element of idx: {idx}");
        cx.expect_result(&expected, &why);
    }
}

/// `gather (g, i0, …) : rv<T, N, axis>` — g a global view of rank n, n index vectors
/// `rv<i32, N, axis>` of one type; the result is `rv<g's dtype, N, axis>`.
pub(super) fn check_gather(cx: &mut OpCx<'_, '_>) {
    let g = cx.operand(0);
    let idx = cx.operands_from(1);
    let Some(gt) = cx.expect_global("g", g) else {
        return;
    };
    if idx.len() != gt.rank as usize {
        cx.report(VerifyErrorKind::Arity {
            what: "index vectors".into(),
            expected: format!("{} (the rank of g: {g})", gt.rank),
            found: idx.len(),
        });
        return;
    }
    let Some(v) = cx.expect_vector("index 0", idx[0]) else {
        return;
    };
    let first = Type::vector(ScalarType::I32, v.len, v.axis);
    for (k, t) in idx.iter().enumerate() {
        let why = "i32 indices, one vector type for every dimension";
        if !cx.expect_type(&format!("index {k}"), t, &first, why) {
            return;
        }
    }
    let expected = Type::vector(gt.dtype, v.len, v.axis);
    cx.expect_result(
        &expected,
        "the dtype of g, the length and axis of the indices",
    );
}

/// `scatter_rows (g, t, idx, j)` / `scatter_add_rows` — g a mutable rank-2 view of t's dtype,
/// idx `rv<i32, t.rows, rows>`, j an i32 tile column.
pub(super) fn check_scatter_rows(cx: &mut OpCx<'_, '_>) {
    let (g, t, idx, j) = (cx.operand(0), cx.operand(1), cx.operand(2), cx.operand(3));
    let dtype = expect_matrix_view(cx, g);
    if dtype.is_some() {
        cx.expect_mutable("g", g);
    }
    cx.expect_i32("j", j);
    let Some(tt) = cx.expect_tile("t", t) else {
        return;
    };
    if let Some(dtype) = dtype {
        cx.expect_dtype("t", t, dtype, &format!("the dtype of g: {g}"));
    }
    let why = format!("one i32 global row index per row of t: {t}");
    expect_row_indices(cx, idx, Some(tt.rows), &why);
}

/// The dtypes global atomic adds exist for.
fn has_atomic_add(d: ScalarType) -> bool {
    matches!(
        d,
        ScalarType::F32 | ScalarType::F16 | ScalarType::BF16 | ScalarType::I32 | ScalarType::U32
    )
}

/// `atomic_add (g, x, idx…)` — g a mutable view of x's dtype (one with atomic adds); x a scalar
/// (element indices), a register vector (chunk index) or a register tile (tile coordinates).
pub(super) fn check_atomic_add(cx: &mut OpCx<'_, '_>) {
    let (g, x) = (cx.operand(0), cx.operand(1));
    let Some(gt) = cx.expect_global("g", g) else {
        return;
    };
    cx.expect_mutable("g", g);
    if !has_atomic_add(gt.dtype) {
        cx.report(VerifyErrorKind::Dtype {
            what: "g".into(),
            expected: "f32, f16, bf16, i32 or u32 (the dtypes with atomic adds)".into(),
            found: g.to_string(),
        });
    }
    let Some(access) = super::atomic::atomic_access(cx, x) else {
        return;
    };
    cx.expect_dtype("x", x, gt.dtype, &format!("the dtype of g: {g}"));
    check_global_indices(cx, "g", g, gt, access, &cx.operands_from(2));
}
