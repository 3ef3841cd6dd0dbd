//! Scalars and indices: `const`, `block_idx`, `grid_dim`, `warp_idx`, `warpgroup_idx`,
//! `num_warps`, `dim`.

use super::expect::OpCx;
use super::VerifyErrorKind;
use crate::ops::Const;
use crate::types::{ScalarType, Type};

/// The values an integer dtype holds.
fn int_range(d: ScalarType) -> (i64, i64) {
    match d {
        ScalarType::I8 => (i8::MIN.into(), i8::MAX.into()),
        ScalarType::I32 => (i32::MIN.into(), i32::MAX.into()),
        ScalarType::U32 => (0, u32::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

/// `const[c] : T` — a float constant has a float dtype, an integer constant an integer dtype
/// that holds it, a bool constant the bool dtype.
pub(super) fn check_const(cx: &mut OpCx<'_, '_>, c: Const) {
    let result = cx.result(0);
    let Some(d) = cx.expect_any_scalar("result", result) else {
        return;
    };
    let expected = match c {
        Const::Float(_) if !d.is_float() => "a float dtype for a float constant",
        Const::Int(_) if !d.is_int() => "an integer dtype for an integer constant",
        Const::Bool(_) if d != ScalarType::Bool => "bool for a bool constant",
        _ => "",
    };
    if !expected.is_empty() {
        cx.report(VerifyErrorKind::Dtype {
            what: format!("result of const[{c}]"),
            expected: expected.into(),
            found: d.to_string(),
        });
        return;
    }
    if let Const::Int(i) = c {
        let (lo, hi) = int_range(d);
        if !(lo..=hi).contains(&i) {
            cx.report(VerifyErrorKind::Attribute {
                what: "value".into(),
                expected: format!("an {d} in {lo}..={hi}"),
                found: i.to_string(),
            });
        }
    }
}

/// Grid and warp indices and counts are i32.
pub(super) fn check_index(cx: &mut OpCx<'_, '_>) {
    cx.expect_result(&Type::Scalar(ScalarType::I32), "");
}

/// `dim[k] (g) : i32` — k names a dimension of the view.
pub(super) fn check_dim(cx: &mut OpCx<'_, '_>, k: u32) {
    let g = cx.operand(0);
    if let Some(gt) = cx.expect_global("g", g) {
        if k >= gt.rank {
            cx.report(VerifyErrorKind::Attribute {
                what: "dimension index k".into(),
                expected: format!("k < {} (the rank of g: {g})", gt.rank),
                found: k.to_string(),
            });
        }
    }
    cx.expect_result(&Type::Scalar(ScalarType::I32), "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_ranges_are_those_of_the_dtypes() {
        assert_eq!(int_range(ScalarType::I8), (-128, 127));
        assert_eq!(int_range(ScalarType::U32), (0, 4_294_967_295));
        assert_eq!(int_range(ScalarType::I64), (i64::MIN, i64::MAX));
    }
}
