//! Views from device-side tables of tensors: `table_view`.

use super::expect::OpCx;
use super::VerifyErrorKind;
use crate::types::{ScalarType, Type};

/// The most dimensions an entry of a pointer table may have (the table holds one i64 per
/// dimension after the address).
pub const MAX_TABLE_RANK: u32 = 4;

/// `table_view (table, i) : gl<T, r[, mut]>` — `table` a `gl<i64, 2>` (one row per entry:
/// address, then r sizes), `i` an i32 entry index; the result a global view of rank 1..=4.
pub(super) fn check_table_view(cx: &mut OpCx<'_, '_>) {
    let (table, i, result) = (cx.operand(0), cx.operand(1), cx.result(0));
    if let Some(t) = cx.expect_global("table", table) {
        if t.dtype != ScalarType::I64 || t.rank != 2 {
            cx.report(VerifyErrorKind::Shape {
                what: "table".into(),
                expected: "a gl<i64, 2> pointer table (one row per entry: address, then sizes)"
                    .into(),
                found: table.to_string(),
            });
        }
    }
    cx.expect_i32("i", i);
    if let Some(r) = cx.expect_global("result", result) {
        if r.rank == 0 || r.rank > MAX_TABLE_RANK {
            cx.report(VerifyErrorKind::Shape {
                what: "result".into(),
                expected: format!("a global view of rank 1 to {MAX_TABLE_RANK}"),
                found: Type::global(r.dtype, r.rank, r.mutable).to_string(),
            });
        }
    }
}
