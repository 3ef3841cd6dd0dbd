//! Well-formed types: the rules every type must satisfy wherever it appears (parameters,
//! results, region arguments, function result lists).

use super::VerifyErrorKind;
use crate::types::{ScalarType, Type};

/// Tiles and vectors are built of 16-element fragments: their dimensions are multiples of 16.
const FRAGMENT: u32 = 16;

fn is_fragment_multiple(n: u32) -> bool {
    n > 0 && n % FRAGMENT == 0
}

/// What is wrong with `ty`, if anything, as an error about `what` (such as `result 0`).
pub(super) fn problem(ty: &Type, what: &str) -> Option<VerifyErrorKind> {
    let shape = |expected: &str| {
        Some(VerifyErrorKind::Shape {
            what: what.to_string(),
            expected: expected.to_string(),
            found: ty.to_string(),
        })
    };
    match ty {
        Type::Scalar(_) | Type::Semaphore => None,
        Type::Tile {
            dtype, rows, cols, ..
        } => {
            if !is_fragment_multiple(*rows) || !is_fragment_multiple(*cols) {
                shape("a register tile whose rows and cols are positive multiples of 16")
            } else {
                register_dtype_problem(ty, *dtype, what)
            }
        }
        Type::Vector { dtype, len, .. } => {
            if !is_fragment_multiple(*len) {
                shape("a register vector whose length is a positive multiple of 16")
            } else {
                register_dtype_problem(ty, *dtype, what)
            }
        }
        Type::SharedTile { rows, cols, .. } => {
            if !is_fragment_multiple(*rows) || !is_fragment_multiple(*cols) {
                shape("a shared tile whose rows and cols are positive multiples of 16")
            } else {
                None
            }
        }
        Type::SharedVector { len, .. } => {
            if !is_fragment_multiple(*len) {
                shape("a shared vector whose length is a positive multiple of 16")
            } else {
                None
            }
        }
        Type::Global { rank, .. } => {
            if (1..=4).contains(rank) {
                None
            } else {
                shape("a global view of rank 1..=4")
            }
        }
        Type::SharedArray { elem, len } => {
            if !matches!(
                **elem,
                Type::SharedTile { .. } | Type::SharedVector { .. } | Type::Semaphore
            ) {
                Some(VerifyErrorKind::Type {
                    what: what.to_string(),
                    expected: "a shared array of shared tiles, shared vectors or semaphores"
                        .to_string(),
                    found: ty.to_string(),
                })
            } else if *len == 0 {
                shape("a shared array of at least 1 element")
            } else {
                problem(elem, &format!("the elements of {what}"))
            }
        }
    }
}

/// Register tiles and vectors hold their elements exactly as f64 in the interpreter: no i64.
fn register_dtype_problem(ty: &Type, dtype: ScalarType, what: &str) -> Option<VerifyErrorKind> {
    (dtype == ScalarType::I64).then(|| VerifyErrorKind::Dtype {
        what: what.to_string(),
        expected: "a register tile or vector dtype other than i64".to_string(),
        found: ty.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Layout, ScalarType::*, Swizzle, VecAxis};

    fn ok(t: Type) {
        assert_eq!(problem(&t, "x"), None, "{t}");
    }

    fn bad(t: Type) -> String {
        problem(&t, "x")
            .unwrap_or_else(|| panic!("{t} should be rejected"))
            .to_string()
    }

    #[test]
    fn tiles_and_vectors_are_multiples_of_16() {
        ok(Type::tile(BF16, 64, 16, Layout::Row));
        ok(Type::vector(F32, 48, VecAxis::Cols));
        ok(Type::shared_tile(BF16, 128, 64, Swizzle::B128));
        ok(Type::shared_vector(F32, 16));
        assert!(bad(Type::tile(F32, 20, 16, Layout::Row)).contains("rt<f32, 20x16, row>"));
        assert!(bad(Type::tile(F32, 0, 16, Layout::Row)).contains("positive multiples of 16"));
        bad(Type::vector(F32, 8, VecAxis::Rows));
        bad(Type::shared_tile(F32, 16, 24, Swizzle::None));
        bad(Type::shared_vector(F32, 0));
    }

    #[test]
    fn register_values_are_not_i64_but_scalars_may_be() {
        ok(Type::scalar(I64));
        assert!(bad(Type::tile(I64, 16, 16, Layout::Row)).starts_with("dtype mismatch"));
        bad(Type::vector(I64, 16, VecAxis::Rows));
    }

    #[test]
    fn global_ranks_are_1_to_4() {
        ok(Type::global(F32, 1, false));
        ok(Type::global(F32, 4, true));
        assert!(bad(Type::global(F32, 0, false)).contains("rank 1..=4"));
        bad(Type::global(F32, 5, false));
    }

    #[test]
    fn shared_arrays_hold_at_least_one_shared_object() {
        ok(Type::shared_array(Type::Semaphore, 2));
        ok(Type::shared_array(
            Type::shared_tile(BF16, 64, 16, Swizzle::None),
            3,
        ));
        assert!(bad(Type::shared_array(Type::Semaphore, 0)).contains("at least 1"));
        bad(Type::shared_array(Type::scalar(F32), 2));
        bad(Type::shared_array(
            Type::shared_array(Type::Semaphore, 1),
            2,
        ));
        assert!(bad(Type::shared_array(
            Type::shared_tile(BF16, 8, 16, Swizzle::None),
            2
        ))
        .contains("st<bf16, 8x16, none>"));
    }
}
