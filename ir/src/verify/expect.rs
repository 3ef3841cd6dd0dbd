//! The op being checked ([`OpCx`]) and the expectations every op family states about its
//! operands and results (`expect_i32`, `expect_tile`, …). Each `expect_*` reports an error when
//! the expectation fails and returns what the family needs to go on (or `None`/`false`).

use std::mem::discriminant;

use super::control::FuncTable;
use super::{VerifyError, VerifyErrorKind};
use crate::module::{Func, Op, Value};
use crate::ops::Scope;
use crate::types::{Layout, ScalarType, Type, VecAxis};

/// A register tile's type, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TileTy {
    pub dtype: ScalarType,
    pub rows: u32,
    pub cols: u32,
    pub layout: Layout,
}

/// A register vector's type, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct VectorTy {
    pub dtype: ScalarType,
    pub len: u32,
    pub axis: VecAxis,
}

/// A global view's type, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct GlobalTy {
    pub dtype: ScalarType,
    pub rank: u32,
    pub mutable: bool,
}

/// Where a value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Space {
    Register,
    Shared,
    Global,
}

pub(super) fn space(ty: &Type) -> Space {
    match ty {
        Type::Scalar(_) | Type::Tile { .. } | Type::Vector { .. } => Space::Register,
        Type::Global { .. } => Space::Global,
        Type::SharedTile { .. }
        | Type::SharedVector { .. }
        | Type::Semaphore
        | Type::SharedArray { .. } => Space::Shared,
    }
}

pub(super) fn as_tile(ty: &Type) -> Option<TileTy> {
    match *ty {
        Type::Tile {
            dtype,
            rows,
            cols,
            layout,
        } => Some(TileTy {
            dtype,
            rows,
            cols,
            layout,
        }),
        _ => None,
    }
}

pub(super) fn as_vector(ty: &Type) -> Option<VectorTy> {
    match *ty {
        Type::Vector { dtype, len, axis } => Some(VectorTy { dtype, len, axis }),
        _ => None,
    }
}

pub(super) fn as_global(ty: &Type) -> Option<GlobalTy> {
    match *ty {
        Type::Global {
            dtype,
            rank,
            mutable,
        } => Some(GlobalTy {
            dtype,
            rank,
            mutable,
        }),
        _ => None,
    }
}

/// `text (why)`, or `text` when there is no reason to give.
pub(super) fn because(text: impl Into<String>, why: &str) -> String {
    let text = text.into();
    if why.is_empty() {
        text
    } else {
        format!("{text} ({why})")
    }
}

/// The error for `found` where `expected` was required, of the most precise kind: memory space,
/// kind of type, dtype, shape, layout (or vector axis), and otherwise a type mismatch.
pub(super) fn mismatch(what: &str, expected: &Type, found: &Type, why: &str) -> VerifyErrorKind {
    let what = what.to_string();
    let expected_text = because(expected.to_string(), why);
    let found_text = found.to_string();
    if space(expected) != space(found) {
        VerifyErrorKind::MemorySpace {
            what,
            expected: expected_text,
            found: found_text,
        }
    } else if discriminant(expected) != discriminant(found) {
        VerifyErrorKind::Type {
            what,
            expected: expected_text,
            found: found_text,
        }
    } else if expected.dtype() != found.dtype() {
        VerifyErrorKind::Dtype {
            what,
            expected: expected_text,
            found: found_text,
        }
    } else if extent(expected) != extent(found) {
        VerifyErrorKind::Shape {
            what,
            expected: expected_text,
            found: found_text,
        }
    } else if arrangement(expected) != arrangement(found) {
        VerifyErrorKind::Layout {
            what,
            expected: expected_text,
            found: found_text,
        }
    } else {
        VerifyErrorKind::Type {
            what,
            expected: expected_text,
            found: found_text,
        }
    }
}

/// The sizes of a type: tile rows and cols, a vector's or array's length, a view's rank.
fn extent(ty: &Type) -> Option<(u32, u32)> {
    match ty {
        Type::Tile { rows, cols, .. } | Type::SharedTile { rows, cols, .. } => Some((*rows, *cols)),
        Type::Vector { len, .. }
        | Type::SharedVector { len, .. }
        | Type::SharedArray { len, .. } => Some((*len, 0)),
        Type::Global { rank, .. } => Some((*rank, 0)),
        Type::Scalar(_) | Type::Semaphore => None,
    }
}

/// How a register value is spread over a warp's lanes: a tile's layout or a vector's axis.
fn arrangement(ty: &Type) -> Option<&'static str> {
    match ty {
        Type::Tile { layout, .. } => Some(layout.name()),
        Type::Vector { axis, .. } => Some(axis.name()),
        _ => None,
    }
}

/// The op being checked: its function, position, resolved operand and result types, and the
/// list errors go to.
///
/// An op family's check runs only once the op has the right number of operands, results and
/// regions and every operand and result has a well-formed type in the value table, so
/// [`OpCx::operand`] and [`OpCx::result`] can be indexed up to those counts.
pub(super) struct OpCx<'a, 'e> {
    pub funcs: &'a FuncTable<'a>,
    pub func: &'a Func,
    pub op: &'a Op,
    pub path: &'a str,
    /// The op's name in the text form.
    pub name: String,
    pub operands: Vec<&'a Type>,
    pub results: Vec<&'a Type>,
    errors: &'e mut Vec<VerifyError>,
}

impl<'a, 'e> OpCx<'a, 'e> {
    pub(super) fn new(
        funcs: &'a FuncTable<'a>,
        func: &'a Func,
        op: &'a Op,
        path: &'a str,
        operands: Vec<&'a Type>,
        results: Vec<&'a Type>,
        errors: &'e mut Vec<VerifyError>,
    ) -> Self {
        OpCx {
            funcs,
            func,
            op,
            path,
            name: op.kind.name(),
            operands,
            results,
            errors,
        }
    }

    /// Records an error about this op.
    pub(super) fn report(&mut self, kind: VerifyErrorKind) {
        self.errors.push(VerifyError {
            func: self.func.name.clone(),
            path: self.path.to_string(),
            op: self.name.clone(),
            loc: self.op.loc,
            kind,
        });
    }

    /// How many errors have been recorded so far (all functions'), so that a check can tell
    /// whether the rules it builds on held.
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The type of operand `i`. The op's arity has been checked: `i` is in range.
    pub(super) fn operand(&self, i: usize) -> &'a Type {
        self.operands[i]
    }

    /// The operands from `i` on (the indices of memory ops, the initial values of loops).
    pub(super) fn operands_from(&self, i: usize) -> Vec<&'a Type> {
        self.operands.get(i..).unwrap_or_default().to_vec()
    }

    /// The type of result `i`. The op's arity has been checked: `i` is in range.
    pub(super) fn result(&self, i: usize) -> &'a Type {
        self.results[i]
    }

    /// The type of any value of the function, if it is in the value table.
    pub(super) fn value_type(&self, v: Value) -> Option<&'a Type> {
        self.func.value_types.get(v.index())
    }

    pub(super) fn at_warpgroup(&self) -> bool {
        self.op.scope == Scope::Warpgroup
    }

    /// Reports that `found` is not the kind of value `expected` describes: a memory-space error
    /// when it lives elsewhere than `expected_space`, a type error otherwise.
    pub(super) fn wrong_kind(
        &mut self,
        what: &str,
        expected: &str,
        expected_space: Space,
        found: &Type,
    ) {
        let (what, expected, found_text) =
            (what.to_string(), expected.to_string(), found.to_string());
        self.report(if space(found) == expected_space {
            VerifyErrorKind::Type {
                what,
                expected,
                found: found_text,
            }
        } else {
            VerifyErrorKind::MemorySpace {
                what,
                expected,
                found: found_text,
            }
        });
    }

    /// Expects a scalar of `dtype`.
    pub(super) fn expect_scalar(&mut self, what: &str, ty: &Type, dtype: ScalarType) -> bool {
        match ty {
            Type::Scalar(d) if *d == dtype => true,
            Type::Scalar(d) => {
                self.report(VerifyErrorKind::Dtype {
                    what: what.to_string(),
                    expected: format!("a scalar {dtype}"),
                    found: format!("a scalar {d}"),
                });
                false
            }
            _ => {
                self.wrong_kind(what, &format!("a scalar {dtype}"), Space::Register, ty);
                false
            }
        }
    }

    /// Expects a scalar i32 (an index, a bound, a parity).
    pub(super) fn expect_i32(&mut self, what: &str, ty: &Type) -> bool {
        self.expect_scalar(what, ty, ScalarType::I32)
    }

    /// Expects a scalar of any dtype.
    pub(super) fn expect_any_scalar(&mut self, what: &str, ty: &Type) -> Option<ScalarType> {
        let d = ty.as_scalar();
        if d.is_none() {
            self.wrong_kind(what, "a scalar", Space::Register, ty);
        }
        d
    }

    /// Expects a register tile.
    pub(super) fn expect_tile(&mut self, what: &str, ty: &Type) -> Option<TileTy> {
        let t = as_tile(ty);
        if t.is_none() {
            self.wrong_kind(what, "a register tile (rt)", Space::Register, ty);
        }
        t
    }

    /// Expects a register vector.
    pub(super) fn expect_vector(&mut self, what: &str, ty: &Type) -> Option<VectorTy> {
        let v = as_vector(ty);
        if v.is_none() {
            self.wrong_kind(what, "a register vector (rv)", Space::Register, ty);
        }
        v
    }

    /// Expects a register tile or vector (not a scalar).
    pub(super) fn expect_tile_or_vector(&mut self, what: &str, ty: &Type) -> bool {
        let ok = matches!(ty, Type::Tile { .. } | Type::Vector { .. });
        if !ok {
            self.wrong_kind(
                what,
                "a register tile or vector (rt or rv)",
                Space::Register,
                ty,
            );
        }
        ok
    }

    /// Expects a register value: a scalar, a register tile or a register vector.
    pub(super) fn expect_register(&mut self, what: &str, ty: &Type) -> bool {
        let ok = ty.is_register();
        if !ok {
            self.wrong_kind(
                what,
                "a register value (scalar, rt or rv)",
                Space::Register,
                ty,
            );
        }
        ok
    }

    /// Expects a global view.
    pub(super) fn expect_global(&mut self, what: &str, ty: &Type) -> Option<GlobalTy> {
        let g = as_global(ty);
        if g.is_none() {
            self.wrong_kind(what, "a global view (gl)", Space::Global, ty);
        }
        g
    }

    /// Expects a global view that may be written (`gl<…, mut>`).
    pub(super) fn expect_mutable(&mut self, what: &str, ty: &Type) -> bool {
        match as_global(ty) {
            Some(g) if !g.mutable => {
                self.report(VerifyErrorKind::MemorySpace {
                    what: what.to_string(),
                    expected: format!(
                        "a mutable global view (gl<{}, {}, mut>) to write to",
                        g.dtype, g.rank
                    ),
                    found: format!("the read-only view {ty}"),
                });
                false
            }
            _ => true,
        }
    }

    /// Expects a semaphore.
    pub(super) fn expect_semaphore(&mut self, what: &str, ty: &Type) -> bool {
        let ok = matches!(ty, Type::Semaphore);
        if !ok {
            self.wrong_kind(what, "a semaphore (sem)", Space::Shared, ty);
        }
        ok
    }

    /// Expects `found` to have element type `expected`.
    pub(super) fn expect_dtype(
        &mut self,
        what: &str,
        found: &Type,
        expected: ScalarType,
        why: &str,
    ) -> bool {
        match found.dtype() {
            Some(d) if d == expected => true,
            _ => {
                let found_text = match found {
                    Type::Scalar(d) => format!("a scalar {d}"),
                    _ => match found.dtype() {
                        Some(d) => format!("{d} ({found})"),
                        None => found.to_string(),
                    },
                };
                self.report(VerifyErrorKind::Dtype {
                    what: what.to_string(),
                    expected: because(expected.name(), why),
                    found: found_text,
                });
                false
            }
        }
    }

    /// Expects `found` to equal `expected`.
    pub(super) fn expect_type(
        &mut self,
        what: &str,
        found: &Type,
        expected: &Type,
        why: &str,
    ) -> bool {
        let ok = found == expected;
        if !ok {
            self.report(mismatch(what, expected, found, why));
        }
        ok
    }

    /// Expects the op's (single) result to have type `expected`.
    pub(super) fn expect_result(&mut self, expected: &Type, why: &str) -> bool {
        let found = self.result(0);
        self.expect_type("result", found, expected, why)
    }

    /// Expects each of `found` to be an i32 scalar, naming them `index 0`, `index 1`, ….
    pub(super) fn expect_indices(&mut self, found: &[&Type]) -> bool {
        let mut ok = true;
        for (k, ty) in found.iter().enumerate() {
            ok &= self.expect_i32(&format!("index {k}"), ty);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ScalarType::*, Swizzle};

    fn kind_name(k: &VerifyErrorKind) -> &'static str {
        match k {
            VerifyErrorKind::MemorySpace { .. } => "space",
            VerifyErrorKind::Type { .. } => "type",
            VerifyErrorKind::Dtype { .. } => "dtype",
            VerifyErrorKind::Shape { .. } => "shape",
            VerifyErrorKind::Layout { .. } => "layout",
            _ => "other",
        }
    }

    #[test]
    fn mismatch_names_the_most_precise_difference() {
        let t = Type::tile(F32, 16, 32, Layout::Row);
        let cases = [
            (Type::shared_tile(F32, 16, 32, Swizzle::None), "space"),
            (Type::vector(F32, 16, VecAxis::Rows), "type"),
            (Type::tile(BF16, 16, 32, Layout::Row), "dtype"),
            (Type::tile(F32, 32, 16, Layout::Row), "shape"),
            (Type::tile(F32, 16, 32, Layout::Col), "layout"),
        ];
        for (found, kind) in cases {
            let k = mismatch("x", &t, &found, "why");
            assert_eq!(kind_name(&k), kind, "{found}");
            assert!(k.to_string().contains("rt<f32, 16x32, row> (why)"), "{k}");
        }
        let g = Type::global(F32, 2, true);
        let k = mismatch("g", &g, &Type::global(F32, 2, false), "");
        assert_eq!(kind_name(&k), "type");
        assert_eq!(
            k.to_string(),
            "type mismatch for g: expected gl<f32, 2, mut>, found gl<f32, 2>"
        );
    }
}
