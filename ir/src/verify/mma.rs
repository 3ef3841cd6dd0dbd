//! Tensor-core ops: `mma.{ab,abt,atb,atbt} (a, b, c)` at warp and warpgroup scope.
//!
//! `D = op(A)·op(B) + C` with C and D `M×N` f32 row tiles. At warp scope A and B are register
//! tiles with the layouts of [`MmaVariant`]'s table. At warpgroup scope B is a shared tile, the
//! whole group's, and C and D are this warp's quarter of the rows. A is then either a shared
//! tile, the whole group's (op(A) has `4 × M` rows, of which each warp uses its quarter, as the
//! interpreter does), or a register tile holding this warp's `M` rows of op(A) (with the layout
//! the variant takes).
//!
//! `mma_async.v` is the warpgroup form issued asynchronously (sm_90a's `wgmma.mma_async`), and
//! so takes only what one wgmma instruction per k-step can do with shared operands read through
//! matrix descriptors (PTX ISA, *Asynchronous Warpgroup Level Matrix Multiply-Accumulate*): M 64
//! for the group (16 rows of C per warp), N a multiple of 8 up to 256, K a multiple of the
//! instruction's K (16 for bf16/f16, 32 for fp8), A and B shared tiles in a canonical swizzled
//! layout (a row as wide as the swizzle span, or whole 128-byte pieces with the 128-byte
//! swizzle), fp8 operands K-major (only 16-bit types may be transposed). `mma_wait[n]` retires
//! accumulators; which values may be used before it is checked in `verify/in_flight.rs`.

use super::expect::{as_tile, space, OpCx, Space};
use super::VerifyErrorKind;
use crate::ops::MmaVariant;
use crate::types::{Layout, ScalarType, Swizzle, Type};

/// An A or B operand: its element type, stored shape and, for a register tile, its layout.
#[derive(Clone, Copy, Debug)]
struct Operand<'t> {
    ty: &'t Type,
    dtype: ScalarType,
    rows: u32,
    cols: u32,
    layout: Option<Layout>,
}

impl<'t> Operand<'t> {
    fn of(ty: &'t Type) -> Option<Operand<'t>> {
        match *ty {
            Type::Tile {
                dtype,
                rows,
                cols,
                layout,
            } => Some(Operand {
                ty,
                dtype,
                rows,
                cols,
                layout: Some(layout),
            }),
            Type::SharedTile {
                dtype, rows, cols, ..
            } => Some(Operand {
                ty,
                dtype,
                rows,
                cols,
                layout: None,
            }),
            _ => None,
        }
    }
}

/// The register layouts `v` takes for A and B: those the tensor-core fragment loads produce
/// without a shuffle.
fn layouts(v: MmaVariant) -> (Layout, Layout) {
    match v {
        MmaVariant::AB => (Layout::Row, Layout::Col),
        MmaVariant::ABt => (Layout::Row, Layout::Row),
        MmaVariant::AtB => (Layout::Col, Layout::Col),
        MmaVariant::AtBt => (Layout::Col, Layout::Row),
    }
}

/// Tensor cores multiply bf16 by bf16, f16 by f16, fp8 by fp8 (either format on each side), or
/// f32 by f32 in tf32 (see [`crate::tf32`]).
fn dtypes_pair(a: ScalarType, b: ScalarType) -> bool {
    (a == b && matches!(a, ScalarType::BF16 | ScalarType::F16 | ScalarType::F32))
        || (a.is_fp8() && b.is_fp8())
}

/// `mma.v (a, b, c)`; see the module documentation.
pub(super) fn check(cx: &mut OpCx<'_, '_>, v: MmaVariant) {
    let (a, b, c) = (cx.operand(0), cx.operand(1), cx.operand(2));
    let wg = cx.at_warpgroup();
    let a = operand_a(cx, a, wg);
    let b = operand_b(cx, b, wg);
    let c_tile = check_c(cx, c);
    cx.expect_result(c, "the type of C");
    let (Some(a), Some(b)) = (a, b) else {
        return;
    };
    if !dtypes_pair(a.dtype, b.dtype) {
        cx.report(VerifyErrorKind::Dtype {
            what: "A and B".into(),
            expected: "both bf16, both f16, both fp8 (f8e4m3/f8e5m2, in any mix), or both f32 (multiplied in tf32)".into(),
            found: format!("{} ({}) and {} ({})", a.dtype, a.ty, b.dtype, b.ty),
        });
    }
    let variant = format!("mma.{}", v.name());
    let (a_layout, b_layout) = layouts(v);
    for (name, operand, expected) in [("A", a, a_layout), ("B", b, b_layout)] {
        match operand.layout {
            Some(found) if found != expected => cx.report(VerifyErrorKind::Layout {
                what: format!("{name} of {variant}"),
                expected: format!(
                    "{} (the layout {variant} takes for {name})",
                    expected.name()
                ),
                found: format!("{} ({})", found.name(), operand.ty),
            }),
            _ => {}
        }
    }
    if let Some((m, n)) = c_tile {
        check_shapes(cx, v, wg, a, b, (m, n), c);
    }
}

/// A: a register tile, or at warpgroup scope also a shared tile.
fn operand_a<'t>(cx: &mut OpCx<'_, '_>, ty: &'t Type, wg: bool) -> Option<Operand<'t>> {
    match ty {
        Type::Tile { .. } => Operand::of(ty),
        Type::SharedTile { .. } if wg => Operand::of(ty),
        _ if wg => {
            // Register and shared values are both fine kinds of A there: only a global view
            // is in the wrong memory space.
            let fine_space = match space(ty) {
                Space::Global => Space::Register,
                other => other,
            };
            let expected = "a register tile or a shared tile (rt or st) at warpgroup scope";
            cx.wrong_kind("A", expected, fine_space, ty);
            None
        }
        _ => {
            let expected =
                "a register tile (rt) at warp scope (shared operands need warpgroup scope)";
            cx.wrong_kind("A", expected, Space::Register, ty);
            None
        }
    }
}

/// B: a register tile at warp scope, a shared tile at warpgroup scope.
fn operand_b<'t>(cx: &mut OpCx<'_, '_>, ty: &'t Type, wg: bool) -> Option<Operand<'t>> {
    match (ty, wg) {
        (Type::Tile { .. }, false) | (Type::SharedTile { .. }, true) => Operand::of(ty),
        (_, false) => {
            let expected =
                "a register tile (rt) at warp scope (shared operands need warpgroup scope)";
            cx.wrong_kind("B", expected, Space::Register, ty);
            None
        }
        (_, true) => {
            cx.wrong_kind(
                "B",
                "a shared tile (st) at warpgroup scope",
                Space::Shared,
                ty,
            );
            None
        }
    }
}

/// C: an f32 register tile of row layout. Returns its rows and cols (M, N) when it is a tile.
fn check_c(cx: &mut OpCx<'_, '_>, c: &Type) -> Option<(u32, u32)> {
    let ct = cx.expect_tile("C", c)?;
    cx.expect_dtype("C", c, ScalarType::F32, "mma accumulates in f32");
    if ct.layout != Layout::Row {
        cx.report(VerifyErrorKind::Layout {
            what: "C".into(),
            expected: "row (the accumulator layout)".into(),
            found: format!("{} ({c})", ct.layout.name()),
        });
    }
    as_tile(c).map(|t| (t.rows, t.cols))
}

/// Shapes: A is M×K (K×M when transposed), B is K×N (N×K when transposed), C is M×N, where at
/// warpgroup scope a shared A's M is 4 × C's rows. K is taken from A.
fn check_shapes(
    cx: &mut OpCx<'_, '_>,
    v: MmaVariant,
    wg: bool,
    a: Operand<'_>,
    b: Operand<'_>,
    (m, n): (u32, u32),
    c: &Type,
) {
    let (a_m, k) = if v.a_transposed() {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    // A shared A is the whole group's: each warp multiplies its quarter of the rows. A register
    // A is already this warp's quarter.
    let shared_a = a.layout.is_none();
    // In u64: a well-formed tile may still have more than u32::MAX / 4 rows.
    let group_m = if wg && shared_a {
        4 * u64::from(m)
    } else {
        u64::from(m)
    };
    if u64::from(a_m) != group_m {
        let (form, shape) = if v.a_transposed() {
            ("K×M", format!("{k}x{group_m}"))
        } else {
            ("M×K", format!("{group_m}x{k}"))
        };
        let m_from = match (wg, shared_a) {
            (true, true) => format!("M = {group_m}: 4 × the rows of C: {c}, at warpgroup scope"),
            (true, false) => format!(
                "M = {group_m}: the rows of C: {c}; at warpgroup scope a register A holds this warp's rows"
            ),
            (false, _) => format!("M = {group_m}: the rows of C: {c}"),
        };
        cx.report(VerifyErrorKind::Shape {
            what: format!("A of mma.{}", v.name()),
            expected: format!("{form} = {shape} ({m_from})"),
            found: a.ty.to_string(),
        });
    }
    let (form, expected) = if v.b_transposed() {
        ("N×K", (n, k))
    } else {
        ("K×N", (k, n))
    };
    if expected != (b.rows, b.cols) {
        cx.report(VerifyErrorKind::Shape {
            what: format!("B of mma.{}", v.name()),
            expected: format!(
                "{form} = {}x{} (K = {k} from A: {}; N = {n} from C: {c})",
                expected.0, expected.1, a.ty
            ),
            found: b.ty.to_string(),
        });
    }
}

/// The most columns of one wgmma accumulator (`n256`).
pub const WGMMA_MAX_N: u32 = 256;

/// `mma_async.v (a, b, c)`: the rules of [`check`], then those of one wgmma per k-step.
pub(super) fn check_async(cx: &mut OpCx<'_, '_>, v: MmaVariant) {
    let errors_before = cx.error_count();
    check(cx, v);
    if cx.error_count() != errors_before {
        return;
    }
    let (a, b, c) = (cx.operand(0), cx.operand(1), cx.operand(2));
    let variant = format!("mma_async.{}", v.name());
    let Some(ct) = as_tile(c) else { return };
    if let Some(Operand {
        dtype: ScalarType::F32,
        ty,
        ..
    }) = Operand::of(a)
    {
        cx.report(VerifyErrorKind::Dtype {
            what: format!("A and B of {variant}"),
            expected:
                "bf16, f16 or fp8 (f32 operands, multiplied in tf32, take the synchronous mma)"
                    .into(),
            found: format!("f32 ({ty})"),
        });
        return;
    }
    if ct.rows != 16 {
        cx.report(VerifyErrorKind::Shape {
            what: format!("C of {variant}"),
            expected: "16 rows per warp (wgmma's M is 64 for the warpgroup)".into(),
            found: c.to_string(),
        });
    }
    if ct.cols % 8 != 0 || ct.cols > WGMMA_MAX_N {
        cx.report(VerifyErrorKind::Shape {
            what: format!("C of {variant}"),
            expected: format!("N a multiple of 8 up to {WGMMA_MAX_N} (one wgmma accumulator)"),
            found: c.to_string(),
        });
    }
    let Type::SharedTile { .. } = a else {
        cx.report(VerifyErrorKind::MemorySpace {
            what: format!("A of {variant}"),
            expected: "a shared tile (the registers of a register A would have to stay unchanged until the mma_wait; use the synchronous mma for them)".into(),
            found: a.to_string(),
        });
        return;
    };
    let Some(ao) = Operand::of(a) else {
        return;
    };
    let k = if v.a_transposed() { ao.rows } else { ao.cols };
    let k_step = if ao.dtype.is_fp8() { 32 } else { 16 };
    if k % k_step != 0 {
        cx.report(VerifyErrorKind::Shape {
            what: format!("K of {variant}"),
            expected: format!(
                "a multiple of {k_step} (wgmma's K for {} operands)",
                ao.dtype
            ),
            found: format!("{k} (from A: {a})"),
        });
    }
    if ao.dtype.is_fp8() && v != MmaVariant::ABt {
        cx.report(VerifyErrorKind::Layout {
            what: format!("{variant} with fp8 operands"),
            expected: "mma_async.abt: fp8 operands must be K-major (A stored M×K, B stored N×K); only bf16 and f16 may be transposed".into(),
            found: variant.clone(),
        });
    }
    for (name, ty) in [("A", a), ("B", b)] {
        if let Err(why) = canonical(ty) {
            cx.report(VerifyErrorKind::Type {
                what: format!("{name} of {variant}"),
                expected: "a shared tile in a canonical wgmma layout: swizzled, each row as wide as the swizzle span (32, 64 or 128 bytes) or whole 128-byte pieces with swz128".into(),
                found: format!("{ty}: {why}"),
            });
        }
    }
}

/// Whether a shared tile is in one of wgmma's canonical swizzled layouts (as the tile placement
/// stores it: rows of up to 128 bytes whole, wider rows with the 128-byte swizzle in 128-byte
/// pieces), and if not why.
fn canonical(ty: &Type) -> Result<(), String> {
    let Type::SharedTile {
        dtype,
        cols,
        swizzle,
        ..
    } = *ty
    else {
        return Err("not a shared tile".into());
    };
    let row_bytes = u64::from(cols) * u64::from(dtype.size_bytes());
    let span = match swizzle {
        Swizzle::None => return Err("unswizzled".into()),
        Swizzle::B32 => 32,
        Swizzle::B64 => 64,
        Swizzle::B128 => 128,
    };
    if row_bytes == span || (span == 128 && row_bytes % 128 == 0) {
        Ok(())
    } else {
        Err(format!(
            "rows of {row_bytes} bytes with a {span}-byte swizzle"
        ))
    }
}

/// `mma_wait[n] (acc…)`: each operand an f32 row register tile, the results their types.
pub(super) fn check_wait(cx: &mut OpCx<'_, '_>) {
    let (n_ops, n_res) = (cx.operands.len(), cx.results.len());
    if n_ops != n_res {
        cx.report(VerifyErrorKind::Arity {
            what: "results of mma_wait".into(),
            expected: format!("{n_ops} (one per accumulator operand)"),
            found: n_res,
        });
        return;
    }
    for i in 0..n_ops {
        let (t, r) = (cx.operand(i), cx.result(i));
        let what = format!("accumulator {i}");
        if cx.expect_tile(&what, t).is_some() {
            cx.expect_dtype(&what, t, ScalarType::F32, "mma accumulates in f32");
        }
        if t != r {
            cx.report(VerifyErrorKind::Type {
                what: format!("result {i} of mma_wait"),
                expected: format!("{t} (the type of its operand)"),
                found: r.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ScalarType::*;

    #[test]
    fn tensor_cores_pair_bf16_f16_and_any_fp8() {
        assert!(dtypes_pair(BF16, BF16));
        assert!(dtypes_pair(F16, F16));
        assert!(dtypes_pair(F8E4M3, F8E5M2));
        assert!(!dtypes_pair(BF16, F16));
        assert!(dtypes_pair(F32, F32));
        assert!(!dtypes_pair(F32, BF16));
        assert!(!dtypes_pair(I8, I8));
    }

    #[test]
    fn layouts_follow_the_variant_table() {
        assert_eq!(layouts(MmaVariant::AB), (Layout::Row, Layout::Col));
        assert_eq!(layouts(MmaVariant::AtBt), (Layout::Col, Layout::Row));
    }
}
