//! Copies between global and shared memory: `copy` (at any scope, split among its warps) and
//! `copy_async` (completing on a semaphore), `copy_start` (completing at a `copy_wait`).

use super::expect::{as_global, OpCx, Space};
use super::memory::{check_global_indices, Access};
use super::VerifyErrorKind;
use crate::types::Type;

fn is_shared_tile_or_vector(ty: &Type) -> bool {
    matches!(ty, Type::SharedTile { .. } | Type::SharedVector { .. })
}

/// `copy (dst, src, idx…)` — one of dst and src is a global view, the other a shared tile or
/// vector of the same dtype; the indices address the global view; a global dst is mutable.
pub(super) fn check_copy(cx: &mut OpCx<'_, '_>) {
    let (dst, src) = (cx.operand(0), cx.operand(1));
    let (g_name, g, s_name, s) = match (dst, src) {
        (Type::Global { .. }, s) if is_shared_tile_or_vector(s) => ("dst", dst, "src", src),
        (s, Type::Global { .. }) if is_shared_tile_or_vector(s) => ("src", src, "dst", dst),
        _ => {
            cx.report(VerifyErrorKind::MemorySpace {
                what: "dst and src".into(),
                expected: "a global view and a shared tile or shared vector, one on each side"
                    .into(),
                found: format!("dst {dst} and src {src}"),
            });
            return;
        }
    };
    if g_name == "dst" {
        cx.expect_mutable("dst", dst);
    }
    check_shared_global(cx, (s_name, s), (g_name, g), &cx.operands_from(2));
}

/// `copy_async (dst, src, sem, idx…)` — global view src into shared tile or vector dst of the
/// same dtype, completing on semaphore sem; the indices address src.
pub(super) fn check_copy_async(cx: &mut OpCx<'_, '_>) {
    let (dst, src, sem) = (cx.operand(0), cx.operand(1), cx.operand(2));
    let dst_ok = is_shared_tile_or_vector(dst);
    if !dst_ok {
        let expected = "a shared tile or shared vector (st or sv)";
        cx.wrong_kind("dst", expected, Space::Shared, dst);
    }
    let src_ok = cx.expect_global("src", src).is_some();
    cx.expect_semaphore("sem", sem);
    if dst_ok && src_ok {
        check_shared_global(cx, ("dst", dst), ("src", src), &cx.operands_from(3));
    }
}

/// `copy_start (dst, src, idx…)` — global view src into shared tile or vector dst of the same
/// dtype; the indices address src.
pub(super) fn check_copy_start(cx: &mut OpCx<'_, '_>) {
    let (dst, src) = (cx.operand(0), cx.operand(1));
    let dst_ok = is_shared_tile_or_vector(dst);
    if !dst_ok {
        let expected = "a shared tile or shared vector (st or sv)";
        cx.wrong_kind("dst", expected, Space::Shared, dst);
    }
    let src_ok = cx.expect_global("src", src).is_some();
    if dst_ok && src_ok {
        check_shared_global(cx, ("dst", dst), ("src", src), &cx.operands_from(2));
    }
}

/// The shared side has the global view's dtype, and the indices address the view.
fn check_shared_global(
    cx: &mut OpCx<'_, '_>,
    (s_name, s): (&str, &Type),
    (g_name, g): (&str, &Type),
    idx: &[&Type],
) {
    let (Some(gt), Some(access)) = (as_global(g), Access::of(s)) else {
        return;
    };
    cx.expect_dtype(s_name, s, gt.dtype, &format!("the dtype of {g_name}: {g}"));
    check_global_indices(cx, g_name, g, gt, access, idx);
}
