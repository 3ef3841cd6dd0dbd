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

/// How an atomic's operand `x` addresses its view: a scalar at element indices, a register
/// vector at a chunk index (the last), a register tile at tile coordinates (the last two).
/// Anything else is reported.
pub(super) fn atomic_access(cx: &mut OpCx<'_, '_>, x: &Type) -> Option<Access> {
    match x {
        Type::Scalar(_) => Some(Access::Scalar),
        Type::Vector { .. } => Some(Access::Vector),
        Type::Tile { .. } => Some(Access::Tile),
        _ => {
            let expected = "a scalar, a register vector or a register tile";
            cx.wrong_kind("x", expected, Space::Register, x);
            None
        }
    }
}

/// `atomic_max|min|exch (g, x, idx…) : T` and `atomic_cas (g, cmp, x, idx…) : T` — g a mutable
/// view of an allowed dtype; x (and cmp) of g's dtype as [`atomic_access`] takes it; the result
/// has x's type.
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
    let Some(access) = atomic_access(cx, x) else {
        return;
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

#[cfg(test)]
mod tests {
    use crate::{parse_module, print_module, verify};

    const GOOD: &str = r#"kernel @k(%g: gl<f32, 2, mut>, %u: gl<u32, 1, mut>, %s: u32) warps(1) {
  %0 = const[0] () : i32
  %1 = const[1.5] () : f32
  %2 = atomic_max (%g, %1, %0, %0) : f32
  %3 = atomic_min (%g, %2, %0, %0) : f32
  %4 = atomic_exch (%u, %s, %0) : u32
  %5 = atomic_cas (%u, %4, %s, %0) : u32
  %6 = fill[2.0] () : rt<f32, 16x16, row>
  %7 = atomic_cas (%g, %6, %6, %0, %0) : rt<f32, 16x16, row>
  %8 = iota.rows () : rt<u32, 16x16, col>
  %9, %10, %11, %12 = philox (%s, %4, %8, %s, %s, %8) : rt<u32, 16x16, col>, rt<u32, 16x16, col>, rt<u32, 16x16, col>, rt<u32, 16x16, col>
  %13, %14, %15, %16 = philox (%s, %s, %s, %s, %s, %s) : u32, u32, u32, u32
  %17 = cmp.gt (%7, %1) : rt<bool, 16x16, row>
  device_assert[@"old values are \"large\""] (%17)
  %18 = cmp.lt (%13, %14) : bool
  device_assert[@plain] (%18)
  return ()
}
"#;

    #[test]
    fn the_new_ops_verify_and_round_trip_through_text() {
        let m = parse_module(GOOD).unwrap();
        verify(&m).unwrap();
        let text = print_module(&m);
        assert!(
            text.contains(r#"device_assert[@"old values are \"large\""]"#),
            "{text}"
        );
        let again = parse_module(&text).unwrap();
        assert_eq!(print_module(&again), text);
    }

    fn errors(src: &str) -> String {
        let m = parse_module(src).unwrap();
        let errs = verify(&m).expect_err("must not verify");
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn atomics_on_other_dtypes_name_the_allowed_ones() {
        let e = errors(
            r#"kernel @k(%g: gl<bf16, 1, mut>, %x: bf16) warps(1) {
  %0 = const[0] () : i32
  %1 = atomic_max (%g, %x, %0) : bf16
  return ()
}
"#,
        );
        assert!(
            e.contains("i32, u32, f32 (the dtypes atomic_max exists for)"),
            "{e}"
        );
    }

    #[test]
    fn compare_and_swap_needs_cmp_of_x_type_and_a_mutable_view() {
        let e = errors(
            r#"kernel @k(%g: gl<i32, 1>, %x: i32, %c: f32) warps(1) {
  %0 = const[0] () : i32
  %1 = atomic_cas (%g, %c, %x, %0) : i32
  return ()
}
"#,
        );
        assert!(e.contains("cmp"), "{e}");
        assert!(e.contains("mut"), "{e}");
    }

    #[test]
    fn register_vectors_update_a_view_at_a_chunk_index() {
        let m = parse_module(
            r#"kernel @k(%g: gl<f32, 2, mut>, %u: gl<u32, 1, mut>) warps(1) {
  %0 = const[0] () : i32
  %1 = load (%g, %0, %0) : rv<f32, 32, rows>
  atomic_add (%g, %1, %0, %0)
  %2 = atomic_max (%g, %1, %0, %0) : rv<f32, 32, rows>
  %3 = load (%u, %0) : rv<u32, 16, cols>
  %4 = atomic_cas (%u, %3, %3, %0) : rv<u32, 16, cols>
  return ()
}
"#,
        )
        .unwrap();
        verify(&m).unwrap();
    }

    #[test]
    fn atomics_of_shared_values_name_the_register_kinds() {
        let e = errors(
            r#"kernel @k(%g: gl<f32, 1, mut>) warps(1) {
  %0 = const[0] () : i32
  %s = alloc_shared @block () : sv<f32, 16>
  atomic_add (%g, %s, %0)
  return ()
}
"#,
        );
        assert!(
            e.contains("a scalar, a register vector or a register tile"),
            "{e}"
        );
    }

    #[test]
    fn philox_wants_u32_words_of_one_shape_and_assert_a_bool() {
        let e = errors(
            r#"kernel @k(%s: u32, %f: i32) warps(1) {
  %0 = iota.rows () : rt<u32, 16x16, row>
  %1 = iota.rows () : rt<u32, 32x16, row>
  %2, %3, %4, %5 = philox (%s, %f, %0, %1, %s, %s) : rt<u32, 16x16, row>, rt<u32, 16x16, row>, rt<u32, 16x16, row>, rt<u32, 16x16, row>
  device_assert[@m] (%s)
  return ()
}
"#,
        );
        assert!(e.contains("key word 1"), "{e}");
        assert!(e.contains("counter word 1"), "{e}");
        assert!(e.contains("bool"), "{e}");
    }
}
