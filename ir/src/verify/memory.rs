//! Shared allocations and moves between memory and registers: `alloc_shared`, `shared.index`,
//! `load`, `store`; and how a global view is indexed (shared with `copy`, `copy_async` and
//! `atomic_add`).

use super::expect::{as_global, as_tile, as_vector, because, GlobalTy, OpCx, Space};
use super::VerifyErrorKind;
use crate::types::Type;

/// What a global access moves, which decides the view's least rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    /// One element: the indices are element indices.
    Scalar,
    /// A vector: the last index is a chunk index.
    Vector,
    /// A tile: the last two indices are tile coordinates.
    Tile,
}

impl Access {
    /// What a value of type `ty` moves to or from a global view, if it can be moved at all.
    pub(super) fn of(ty: &Type) -> Option<Access> {
        match ty {
            Type::Scalar(_) => Some(Access::Scalar),
            Type::Vector { .. } | Type::SharedVector { .. } => Some(Access::Vector),
            Type::Tile { .. } | Type::SharedTile { .. } => Some(Access::Tile),
            _ => None,
        }
    }
}

/// A view `g` (named `g_name`) of rank n takes n i32 indices; a tile needs rank ≥ 2.
pub(super) fn check_global_indices(
    cx: &mut OpCx<'_, '_>,
    g_name: &str,
    g: &Type,
    gt: GlobalTy,
    access: Access,
    idx: &[&Type],
) {
    if access == Access::Tile && gt.rank < 2 {
        cx.report(VerifyErrorKind::Shape {
            what: g_name.to_string(),
            expected: "a global view of rank >= 2 to move a tile (its last two indices are tile coordinates)".into(),
            found: g.to_string(),
        });
        return;
    }
    if idx.len() != gt.rank as usize {
        cx.report(VerifyErrorKind::Arity {
            what: format!("indices into {g_name}: {g}"),
            expected: format!("{} (one per dimension)", gt.rank),
            found: idx.len(),
        });
        return;
    }
    cx.expect_indices(idx);
}

/// `alloc_shared : T` — T is a shared type. (Where it may appear is checked with the op's
/// placement.)
pub(super) fn check_alloc_shared(cx: &mut OpCx<'_, '_>) {
    let result = cx.result(0);
    if !result.is_shared() {
        cx.report(VerifyErrorKind::MemorySpace {
            what: "result".into(),
            expected: "a shared type (st, sv, sem or an array of them)".into(),
            found: result.to_string(),
        });
    }
}

/// `shared.index (arr, i) : T` — element i of an array `[n x T]`.
pub(super) fn check_shared_index(cx: &mut OpCx<'_, '_>) {
    let (arr, i) = (cx.operand(0), cx.operand(1));
    cx.expect_i32("i", i);
    match arr {
        Type::SharedArray { elem, .. } => {
            cx.expect_result(elem, &format!("the element type of arr: {arr}"));
        }
        _ => cx.wrong_kind("arr", "a shared array ([n x T])", Space::Shared, arr),
    }
}

/// Which way a `load` or `store` moves data, and the names of its operands.
#[derive(Clone, Copy, Debug)]
struct Move {
    store: bool,
    mem_name: &'static str,
    reg_name: &'static str,
}

const LOAD: Move = Move {
    store: false,
    mem_name: "src",
    reg_name: "result",
};

const STORE: Move = Move {
    store: true,
    mem_name: "dst",
    reg_name: "x",
};

/// `load (src, idx…) : T` — a register value from a global view, shared tile or shared vector.
pub(super) fn check_load(cx: &mut OpCx<'_, '_>) {
    let (src, result) = (cx.operand(0), cx.result(0));
    if !result.is_register() {
        cx.report(VerifyErrorKind::MemorySpace {
            what: "result".into(),
            expected: "a register value (scalar, rt or rv): load reads into registers".into(),
            found: result.to_string(),
        });
        return;
    }
    check_move(cx, LOAD, src, result, &cx.operands_from(1));
}

/// `store (dst, x, idx…)` — a register value into a mutable global view, a shared tile or a
/// shared vector.
pub(super) fn check_store(cx: &mut OpCx<'_, '_>) {
    let (dst, x) = (cx.operand(0), cx.operand(1));
    if !x.is_register() {
        cx.report(VerifyErrorKind::MemorySpace {
            what: "x".into(),
            expected: "a register value (scalar, rt or rv): store writes from registers".into(),
            found: x.to_string(),
        });
        return;
    }
    check_move(cx, STORE, dst, x, &cx.operands_from(2));
}

/// The rules of `load` and `store` for each memory space. At warpgroup scope each warp of the
/// group moves its quarter of a shared tile's rows; that is the only warpgroup-scope form.
fn check_move(cx: &mut OpCx<'_, '_>, mv: Move, mem: &Type, reg: &Type, idx: &[&Type]) {
    let why = format!("the dtype of {}: {mem}", mv.mem_name);
    if cx.at_warpgroup() && !matches!(mem, Type::SharedTile { .. }) {
        cx.report(VerifyErrorKind::MemorySpace {
            what: mv.mem_name.into(),
            expected: "a shared tile at warpgroup scope (each warp moves its quarter of the rows; \
                       global views and shared vectors are accessed at warp scope)"
                .into(),
            found: mem.to_string(),
        });
        return;
    }
    match mem {
        Type::Global { .. } => {
            let Some(gt) = as_global(mem) else {
                return;
            };
            if mv.store {
                cx.expect_mutable("dst", mem);
            }
            cx.expect_dtype(mv.reg_name, reg, gt.dtype, &why);
            if let Some(access) = Access::of(reg) {
                check_global_indices(cx, mv.mem_name, mem, gt, access, idx);
            }
        }
        Type::SharedTile {
            dtype, rows, cols, ..
        } => {
            let Some(t) = as_tile(reg) else {
                cx.report(VerifyErrorKind::Type {
                    what: mv.reg_name.into(),
                    expected: format!("a register tile (rt) to match {}: {mem}", mv.mem_name),
                    found: reg.to_string(),
                });
                return;
            };
            cx.expect_dtype(mv.reg_name, reg, *dtype, &why);
            if cx.at_warpgroup() {
                if !idx.is_empty() {
                    cx.report(VerifyErrorKind::Arity {
                        what: "indices".into(),
                        expected: "0 at warpgroup scope (each warp moves its quarter of the rows)"
                            .into(),
                        found: idx.len(),
                    });
                }
                // In u64: a well-formed tile may still have more than u32::MAX / 4 rows.
                let group_rows = 4 * u64::from(t.rows);
                if (u64::from(*rows), *cols) != (group_rows, t.cols) {
                    cx.report(VerifyErrorKind::Shape {
                        what: mv.mem_name.into(),
                        expected: format!(
                            "a shared tile of {}x{} (4 × the rows of {}: {reg}) at warpgroup scope",
                            group_rows, t.cols, mv.reg_name
                        ),
                        found: mem.to_string(),
                    });
                }
                return;
            }
            match idx.len() {
                0 if (*rows, *cols) != (t.rows, t.cols) => cx.report(VerifyErrorKind::Shape {
                    what: mv.reg_name.into(),
                    expected: format!(
                        "{rows}x{cols} (the shape of {}: {mem}; a smaller tile takes 2 tile coordinates)",
                        mv.mem_name
                    ),
                    found: reg.to_string(),
                }),
                0 => {}
                2 => {
                    cx.expect_indices(idx);
                    if rows % t.rows != 0 || cols % t.cols != 0 {
                        cx.report(VerifyErrorKind::Shape {
                            what: mv.reg_name.into(),
                            expected: format!(
                                "a tile whose rows and cols divide those of {}: {mem}",
                                mv.mem_name
                            ),
                            found: reg.to_string(),
                        });
                    }
                }
                n => cx.report(VerifyErrorKind::Arity {
                    what: format!("indices into {}: {mem}", mv.mem_name),
                    expected: "0 (same shape) or 2 (tile coordinates)".into(),
                    found: n,
                }),
            }
        }
        Type::SharedVector { dtype, len } => {
            let Some(v) = as_vector(reg) else {
                cx.report(VerifyErrorKind::Type {
                    what: mv.reg_name.into(),
                    expected: format!("a register vector (rv) to match {}: {mem}", mv.mem_name),
                    found: reg.to_string(),
                });
                return;
            };
            // Either axis may be moved to or from a shared vector.
            let expected = Type::vector(*dtype, *len, v.axis);
            let why = format!("the dtype and length of {}: {mem}", mv.mem_name);
            cx.expect_type(mv.reg_name, reg, &expected, &why);
            if !idx.is_empty() {
                cx.report(VerifyErrorKind::Arity {
                    what: format!("indices into {}: {mem}", mv.mem_name),
                    expected: "0".into(),
                    found: idx.len(),
                });
            }
        }
        _ => cx.report(VerifyErrorKind::MemorySpace {
            what: mv.mem_name.into(),
            expected: because(
                "a global view, shared tile or shared vector",
                if mv.store {
                    "store writes to memory"
                } else {
                    "load reads from memory"
                },
            ),
            found: mem.to_string(),
        }),
    }
}
