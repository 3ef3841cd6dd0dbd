//! Elementwise ops on register values: `map.*`, `cmp.*`, `select`, `convert`, `transpose`.

use super::expect::{as_tile, OpCx};
use super::VerifyErrorKind;
use crate::ops::{BinaryFn, UnaryFn};
use crate::types::{ScalarType, Type};

fn is_signed_int(d: ScalarType) -> bool {
    matches!(d, ScalarType::I8 | ScalarType::I32 | ScalarType::I64)
}

/// The dtypes `f` is defined on: `Err` describes them when `d` is not one.
pub(super) fn unary_accepts(f: UnaryFn, d: ScalarType) -> Result<(), &'static str> {
    let (ok, expected) = match f {
        UnaryFn::Not => (
            d.is_int() || d == ScalarType::Bool,
            "an integer or bool dtype",
        ),
        UnaryFn::Neg | UnaryFn::Abs | UnaryFn::Relu => (
            d.is_float() || is_signed_int(d),
            "a float or signed integer dtype",
        ),
        _ => (d.is_float(), "a float dtype"),
    };
    if ok {
        Ok(())
    } else {
        Err(expected)
    }
}

/// The dtypes `f` is defined on: `Err` describes them when `d` is not one.
pub(super) fn binary_accepts(f: BinaryFn, d: ScalarType) -> Result<(), &'static str> {
    let (ok, expected) = match f {
        BinaryFn::Pow => (d.is_float(), "a float dtype"),
        BinaryFn::Rem | BinaryFn::Shl | BinaryFn::Shr => (d.is_int(), "an integer dtype"),
        BinaryFn::And | BinaryFn::Or | BinaryFn::Xor => (
            d.is_int() || d == ScalarType::Bool,
            "an integer or bool dtype",
        ),
        _ => (d != ScalarType::Bool, "a numeric dtype (not bool)"),
    };
    if ok {
        Ok(())
    } else {
        Err(expected)
    }
}

/// `map.f (x) : T` — x is a register value of a dtype `f` is defined on; the result has x's type.
pub(super) fn check_unary(cx: &mut OpCx<'_, '_>, f: UnaryFn) {
    let x = cx.operand(0);
    if !cx.expect_register("x", x) {
        return;
    }
    if let Some(d) = x.dtype() {
        if let Err(expected) = unary_accepts(f, d) {
            cx.report(VerifyErrorKind::Dtype {
                what: "x".into(),
                expected: format!("{expected} for map.{}", f.name()),
                found: format!("{d} ({x})"),
            });
        }
    }
    cx.expect_result(x, "the type of x");
}

/// `map.f (x, y)` — x and y of one type, or one of them a scalar of the other's dtype; the
/// result has the type of the non-scalar operand.
pub(super) fn check_binary(cx: &mut OpCx<'_, '_>, f: BinaryFn) {
    let (x, y) = (cx.operand(0), cx.operand(1));
    let x_ok = cx.expect_register("x", x);
    if !(cx.expect_register("y", y) && x_ok) {
        return;
    }
    let (value, why): (&Type, &str) = match (x.is_scalar(), y.is_scalar()) {
        (true, false) => (y, "the type of y, the non-scalar operand"),
        (false, true) => (x, "the type of x, the non-scalar operand"),
        _ => (x, "the type of x and y"),
    };
    if x.is_scalar() != y.is_scalar() {
        let (s_name, s) = if x.is_scalar() { ("x", x) } else { ("y", y) };
        if let Some(d) = value.dtype() {
            let why = format!("a scalar operand has the dtype of the other operand: {value}");
            if !cx.expect_dtype(s_name, s, d, &why) {
                return;
            }
        }
    } else if !cx.expect_type("y", y, x, "the type of x") {
        return;
    }
    if let Some(d) = value.dtype() {
        if let Err(expected) = binary_accepts(f, d) {
            cx.report(VerifyErrorKind::Dtype {
                what: "x and y".into(),
                expected: format!("{expected} for map.{}", f.name()),
                found: format!("{d} ({value})"),
            });
        }
    }
    cx.expect_result(value, why);
}

/// `cmp.p (x, y)` — two register values of one dtype: both scalars (a `bool` scalar), or tiles
/// or vectors of one type, or one of them a scalar broadcast over the other; the result is a
/// `bool` mask of the non-scalar operand's shape (and layout or axis).
pub(super) fn check_cmp(cx: &mut OpCx<'_, '_>) {
    let (x, y) = (cx.operand(0), cx.operand(1));
    let x_ok = cx.expect_register("x", x);
    if !(cx.expect_register("y", y) && x_ok) {
        return;
    }
    let value = if x.is_scalar() { y } else { x };
    if x.is_scalar() != y.is_scalar() {
        let (s_name, s) = if x.is_scalar() { ("x", x) } else { ("y", y) };
        if let Some(d) = value.dtype() {
            let why = format!("a scalar operand has the dtype of the other operand: {value}");
            if !cx.expect_dtype(s_name, s, d, &why) {
                return;
            }
        }
    } else if !cx.expect_type("y", y, x, "the type of x") {
        return;
    }
    cx.expect_result(
        &value.with_dtype(ScalarType::Bool),
        "a bool mask of the non-scalar operand's shape",
    );
}

/// `select (c, x, y)` — `c ? x : y` elementwise. x and y are register values of one dtype, each
/// either the result's type or a scalar broadcast over it; c is a bool scalar (one choice for the
/// whole value) or a bool mask of the result's shape (and layout or axis). The result is the
/// type of the non-scalar one of x and y, else of the mask with x's dtype, else x's scalar type.
pub(super) fn check_select(cx: &mut OpCx<'_, '_>) {
    let (c, x, y) = (cx.operand(0), cx.operand(1), cx.operand(2));
    let c_ok = cx.expect_register("c", c);
    let x_ok = cx.expect_register("x", x);
    if !(cx.expect_register("y", y) && x_ok && c_ok) {
        return;
    }
    if c.dtype() != Some(ScalarType::Bool) {
        cx.report(VerifyErrorKind::Dtype {
            what: "c".into(),
            expected: "bool (a condition or a mask from cmp.*)".into(),
            found: c.to_string(),
        });
        return;
    }
    let Some(d) = x.dtype() else { return };
    if !cx.expect_dtype("y", y, d, "the dtype of x") {
        return;
    }
    let result = [x, y]
        .into_iter()
        .find(|t| !t.is_scalar())
        .cloned()
        .unwrap_or_else(|| c.with_dtype(d));
    for (name, t) in [("x", x), ("y", y)] {
        if !t.is_scalar()
            && !cx.expect_type(name, t, &result, "the type of the other non-scalar value")
        {
            return;
        }
    }
    if !c.is_scalar()
        && !cx.expect_type(
            "c",
            c,
            &result.with_dtype(ScalarType::Bool),
            "a bool mask of the result's shape",
        )
    {
        return;
    }
    cx.expect_result(&result, "the type of the non-scalar operand");
}

/// What kind of register value a type is, for messages.
fn register_kind(ty: &Type) -> &'static str {
    match ty {
        Type::Scalar(_) => "scalar",
        Type::Tile { .. } => "register tile",
        Type::Vector { .. } => "register vector",
        _ => "non-register value",
    }
}

/// `convert (x) : T` — to the same kind of register value: scalar to scalar, tile to tile of
/// the same shape (the layout may change), vector to vector of the same length (the axis may
/// change).
pub(super) fn check_convert(cx: &mut OpCx<'_, '_>) {
    let (x, result) = (cx.operand(0), cx.result(0));
    if !cx.expect_register("x", x) || !cx.expect_register("result", result) {
        return;
    }
    let same_shape = match (x, result) {
        (Type::Scalar(_), Type::Scalar(_)) => true,
        (Type::Tile { .. }, Type::Tile { .. }) => x.tile_shape() == result.tile_shape(),
        (Type::Vector { .. }, Type::Vector { .. }) => x.num_elements() == result.num_elements(),
        _ => {
            cx.report(VerifyErrorKind::Type {
                what: "result".into(),
                expected: format!(
                    "a {} like x ({x}): convert changes the dtype (and a tile's layout or a vector's axis), not the kind of value",
                    register_kind(x)
                ),
                found: result.to_string(),
            });
            return;
        }
    };
    if !same_shape {
        let shape = match x.tile_shape() {
            Some((r, c)) => format!("{r}x{c}"),
            None => format!("length {}", x.num_elements().unwrap_or(0)),
        };
        cx.report(VerifyErrorKind::Shape {
            what: "result".into(),
            expected: format!("{shape} (the shape of x: {x})"),
            found: result.to_string(),
        });
    }
}

/// `bitcast (x) : U` — U is x's type with another dtype of the same width (not bool).
pub(super) fn check_bitcast(cx: &mut OpCx<'_, '_>) {
    let (x, result) = (cx.operand(0), cx.result(0));
    if !cx.expect_register("x", x) || !cx.expect_register("result", result) {
        return;
    }
    let (Some(from), Some(to)) = (x.dtype(), result.dtype()) else {
        return;
    };
    if from == ScalarType::Bool || to == ScalarType::Bool || from.size_bytes() != to.size_bytes() {
        cx.report(VerifyErrorKind::Dtype {
            what: "result".into(),
            expected: format!(
                "a dtype of {}-byte elements like x ({x}), not bool: bitcast keeps the bits",
                from.size_bytes()
            ),
            found: result.to_string(),
        });
        return;
    }
    cx.expect_result(
        &x.with_dtype(to),
        "x's kind, shape and layout or axis in the new dtype",
    );
}

/// `transpose (t) : rt<T, C x R, l>` — rows and cols swapped, dtype and layout kept.
pub(super) fn check_transpose(cx: &mut OpCx<'_, '_>) {
    let t = cx.operand(0);
    if cx.expect_tile("t", t).is_none() {
        return;
    }
    if let Some(tt) = as_tile(t) {
        let expected = Type::tile(tt.dtype, tt.cols, tt.rows, tt.layout);
        cx.expect_result(&expected, &format!("t = {t} with rows and cols swapped"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ScalarType::*;

    #[test]
    fn unary_functions_accept_their_dtypes() {
        assert!(unary_accepts(UnaryFn::Exp, BF16).is_ok());
        assert!(unary_accepts(UnaryFn::Exp, I32).is_err());
        assert!(unary_accepts(UnaryFn::Neg, I8).is_ok());
        assert!(unary_accepts(UnaryFn::Abs, U32).is_err());
        assert!(unary_accepts(UnaryFn::Not, Bool).is_ok());
        assert!(unary_accepts(UnaryFn::Not, F32).is_err());
    }

    #[test]
    fn binary_functions_accept_their_dtypes() {
        assert!(binary_accepts(BinaryFn::Pow, F16).is_ok());
        assert!(binary_accepts(BinaryFn::Pow, I32).is_err());
        assert!(binary_accepts(BinaryFn::Shl, U32).is_ok());
        assert!(binary_accepts(BinaryFn::Rem, F32).is_err());
        assert!(binary_accepts(BinaryFn::Xor, Bool).is_ok());
        assert!(binary_accepts(BinaryFn::Add, Bool).is_err());
        assert!(binary_accepts(BinaryFn::Max, I8).is_ok());
    }
}
