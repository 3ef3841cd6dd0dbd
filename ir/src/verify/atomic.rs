//! Global atomics that return the old value (`atomic_max`, `atomic_min`, `atomic_exch`,
//! `atomic_cas`), the counter-based random numbers (`philox`) and `device_assert`.

use super::expect::{OpCx, Space};
use super::memory::{check_global_indices, Access};
use super::VerifyErrorKind;
use crate::ops::AtomicFn;
use crate::types::{ScalarType, Type};

/// The dtypes each returning atomic exists for on every target: 32-bit elements, the width of
/// `atom.{max,min,exch,cas}.{s32,u32,b32,f32}` (PTX ISA "Parallel Synchronization and
/// Communication Instructions: atom") and of the AMDGPU `global_atomic_*` dword forms.
fn allowed(f: Option<AtomicFn>) -> (&'static [ScalarType], &'static str) {
    const ALL32: &[ScalarType] = &[ScalarType::I32, ScalarType::U32, ScalarType::F32];
    let name = match f {
        Some(AtomicFn::Max) => "atomic_max",
        Some(AtomicFn::Min) => "atomic_min",
        Some(AtomicFn::Exch) => "atomic_exch",
        None => "atomic_cas",
    };
    (ALL32, name)
}

/// `atomic_max|min|exch (g, x, idx…) : T` and `atomic_cas (g, cmp, x, idx…) : T` — g a mutable
/// view of an allowed dtype; x (and cmp) a scalar of g's dtype at element indices, or a register
/// tile at tile coordinates; the result has x's type.
pub(super) fn check_atomic(cx: &mut OpCx<'_, '_>, f: Option<AtomicFn>) {
    let g = cx.operand(0);
    let Some(gt) = cx.expect_global("g", g) else {
        return;
    };
    cx.expect_mutable("g", g);
    let (dtypes, name) = allowed(f);
    if !dtypes.contains(&gt.dtype) {
        let list: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
        cx.report(VerifyErrorKind::Dtype {
            what: "g".into(),
            expected: format!("{} (the dtypes {name} exists for)", list.join(", ")),
            found: g.to_string(),
        });
    }
    let first_index = if f.is_none() { 3 } else { 2 };
    let x = cx.operand(first_index - 1);
    let access = match x {
        Type::Scalar(_) => Access::Scalar,
        Type::Tile { .. } => Access::Tile,
        _ => {
            cx.wrong_kind("x", "a scalar or a register tile", Space::Register, x);
            return;
        }
    };
    let why = format!("the dtype of g: {g}");
    cx.expect_dtype("x", x, gt.dtype, &why);
    if f.is_none() {
        let cmp = cx.operand(1);
        cx.expect_type(
            "cmp",
            cmp,
            x,
            "x's type: cmp is compared with each element x replaces",
        );
    }
    cx.expect_result(x, "x's type: the old values of the elements it updates");
    check_global_indices(cx, "g", g, gt, access, &cx.operands_from(first_index));
}

/// `philox (k0, k1, c0, c1, c2, c3) : T, T, T, T` — the key two u32 scalars; each counter word a
/// u32 scalar or a u32 register tile or vector (all such of one type); the four results of the
/// counters' type (a scalar when every counter word is).
pub(super) fn check_philox(cx: &mut OpCx<'_, '_>) {
    let why = "Philox-4x32 works on 32-bit unsigned words";
    for k in 0..2 {
        let t = cx.operand(k);
        cx.expect_scalar(&format!("key word {k}"), t, ScalarType::U32);
    }
    let mut shape: Option<&Type> = None;
    for k in 0..4 {
        let t = cx.operand(2 + k);
        let what = format!("counter word {k}");
        if !cx.expect_register(&what, t) {
            return;
        }
        cx.expect_dtype(&what, t, ScalarType::U32, why);
        if !t.is_scalar() {
            match shape {
                None => shape = Some(t),
                Some(s) => {
                    cx.expect_type(&what, t, s, "the other counter words' type");
                }
            }
        }
    }
    let expected = shape.cloned().unwrap_or(Type::Scalar(ScalarType::U32));
    for k in 0..4 {
        let found = cx.result(k);
        cx.expect_type(
            &format!("result {k}"),
            found,
            &expected,
            "the counters' type (one output word per counter element)",
        );
    }
}

/// `device_assert[@"message"] (c)` — c a bool scalar, or a bool register tile or vector that must
/// hold everywhere.
pub(super) fn check_assert(cx: &mut OpCx<'_, '_>) {
    let c = cx.operand(0);
    if cx.expect_register("c", c) {
        cx.expect_dtype("c", c, ScalarType::Bool, "the asserted condition");
    }
}
