//! TMA (`cp.async.bulk.tensor`) copies of whole shared tiles on sm_90a: which tiles one or more
//! TMA boxes fill exactly in tilekit's shared layout, and the instruction that issues a box.
//!
//! # The box plan
//!
//! A TMA load writes its box row-major into shared memory, 16-byte chunks permuted within each
//! swizzle span by the bits above them (PTX ISA, *Tensor copy*, "Swizzling modes": bits
//! [4, 4+B) of the shared address XORed with bits [7, 7+B), B = 1, 2, 3 for 32, 64, 128 B).
//! tilekit's NVIDIA shared tiles ([`layout::shared_tile_offset`]) are stored in *pieces*:
//! side-by-side column blocks of `w` bytes per row ([`layout::shared_piece_bytes`]: 128 B for a
//! 128-byte-swizzled tile whose rows are a whole number of 128-byte atoms, else the whole row),
//! each piece row-major with the tile's swizzle applied to the offset within it. So a piece is
//! exactly what one box of `w` bytes × the tile's rows writes, provided the box is legal:
//! - `w` a multiple of 16 bytes and, with a swizzle, at most the swizzle span (a 32- or 64-byte
//!   swizzled tile with wider rows is one swizzled piece that no box writes: such tiles take the
//!   `cp.async` path), and at most 256 elements;
//! - at most 256 rows per box: taller pieces take several boxes down the rows;
//! - each box's shared destination 128-byte aligned and, with a swizzle, aligned to the span's
//!   repeat (8 rows of the span: 256, 512, 1024 bytes), so that the hardware's address-based
//!   permutation is the tile's offset-based one. The plan checks the offsets within the tile; the
//!   tile itself is 1024-byte aligned when swizzled (`alloc_shared`).
//!
//! [`plan`] gives the boxes (shared byte offset, element offset in the tile) or says why the tile
//! has none; a test checks every element of every plan against [`layout::shared_tile_offset`].
//! The runtime encodes the view's tensor map with the plan's box extents
//! (`tilekit::tensor_map::TensorMapDesc::for_view`, box = [`TmaPlan::box_rows`] ×
//! [`TmaPlan::box_cols`]), and the box's transaction bytes are what the plan counts: a TMA load
//! completes the whole box on its mbarrier, out-of-bounds elements included (they land as
//! zeros), so [`TmaPlan::bytes`] is the tile's size whatever the view's edges.
//!
//! # How the IR expresses completion
//!
//! With the IR's semaphores, unchanged: `copy_async (%dst, %src, %sem, idx…)` already means
//! "global → shared, completing on the semaphore by counting the tile's bytes towards the bytes
//! its phase expects" (`sem.expect[b]`), and on sm_90a a semaphore is an `mbarrier`
//! (`lower/sync.rs`), whose transaction count is exactly what `complete_tx::bytes` of a TMA load
//! decrements. So a qualifying `copy_async` becomes, for one elected lane of the issuing warp,
//! one [`load_asm`] per box on the semaphore's mbarrier, and nothing else changes: `sem.expect`
//! stays `mbarrier.expect_tx`, consumers' `sem.wait` stays `try_wait.parity`, and the IR's
//! interpreter, verifier and tests keep their meaning (`lower/tma_copy.rs`,
//! `Lowerer::tma_async_copy`; the sm_90a GEMM `gemm_ws_wg` feeds its consumers this way). The
//! group ops (`copy_start` / `copy_commit` / `copy_wait[n]`) are a different contract —
//! groups counted by recency, with no barrier object to complete on — which `lower/tma_copy.rs`
//! maps onto a ring of mbarriers of its own.

use std::collections::HashMap;

use tilekit_ir::{Func, Module, OpKind, ScalarType, Scope, Swizzle, Type, Value};

use crate::{layout, Facts};

/// Most elements along one dimension of a TMA box (`cuTensorMapEncodeTiled`'s `boxDim`).
pub const MAX_BOX_EXTENT: u32 = 256;

/// One box of a plan: where it lands in the tile and which elements of the tile it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmaBox {
    /// Byte offset of the box's destination from the tile's start.
    pub shared_offset: u32,
    /// The tile row of the box's first row.
    pub row: u32,
    /// The tile column of the box's first column.
    pub col: u32,
}

/// How TMA boxes fill one shared tile (module documentation, *The box plan*).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmaPlan {
    /// Rows of every box.
    pub box_rows: u32,
    /// Columns (elements) of every box: the tile's piece width.
    pub box_cols: u32,
    /// The boxes, pieces left to right, rows top to bottom within a piece.
    pub boxes: Vec<TmaBox>,
    /// Shared bytes the boxes write (the tile's size): the transaction bytes they complete.
    pub bytes: u32,
}

/// Why a shared tile has no TMA plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotTma {
    /// A piece row not a multiple of 16 bytes.
    #[error("a {rows}×{cols} {d} tile stores rows of {piece} bytes; a TMA box row must be a multiple of 16")]
    PieceBytes {
        rows: u32,
        cols: u32,
        d: ScalarType,
        piece: u32,
    },
    /// A swizzled piece wider than the swizzle span.
    #[error("a {rows}×{cols} {d} tile with swizzle {swizzle} is one {piece}-byte-wide swizzled piece, wider than the swizzle's {span}-byte span that a TMA box may fill")]
    SwizzleSpan {
        rows: u32,
        cols: u32,
        d: ScalarType,
        swizzle: &'static str,
        piece: u32,
        span: u32,
    },
    /// A piece wider than 256 elements.
    #[error(
        "a {rows}×{cols} {d} tile has pieces of {elements} elements; a TMA box is at most 256 wide"
    )]
    BoxWidth {
        rows: u32,
        cols: u32,
        d: ScalarType,
        elements: u32,
    },
    /// An empty tile or a row count no box height divides.
    #[error("a {rows}×{cols} tile: its rows cannot be split into TMA boxes of equal height")]
    Rows { rows: u32, cols: u32 },
    /// A box destination that breaks the alignment the hardware needs.
    #[error("a TMA box would land at byte {offset} of the tile, not a multiple of {align}")]
    Alignment { offset: u32, align: u32 },
}

/// The span of a swizzle in bytes (`None` for no swizzle).
fn span(s: Swizzle) -> Option<u32> {
    match s {
        Swizzle::None => None,
        Swizzle::B32 => Some(32),
        Swizzle::B64 => Some(64),
        Swizzle::B128 => Some(128),
    }
}

/// The TMA boxes that fill a `rows × cols` shared tile of `d` with swizzle `s` exactly as
/// [`layout::shared_tile_offset`] places its elements, or why none do.
pub fn plan(rows: u32, cols: u32, d: ScalarType, s: Swizzle) -> Result<TmaPlan, NotTma> {
    let es = d.size_bytes();
    let row_bytes = cols * es;
    if rows == 0 || cols == 0 {
        return Err(NotTma::Rows { rows, cols });
    }
    let piece = layout::shared_piece_bytes(s, row_bytes);
    if piece % 16 != 0 {
        return Err(NotTma::PieceBytes {
            rows,
            cols,
            d,
            piece,
        });
    }
    if let Some(span) = span(s) {
        if piece > span {
            return Err(NotTma::SwizzleSpan {
                rows,
                cols,
                d,
                swizzle: s.name(),
                piece,
                span,
            });
        }
    }
    let box_cols = piece / es;
    if box_cols > MAX_BOX_EXTENT {
        return Err(NotTma::BoxWidth {
            rows,
            cols,
            d,
            elements: box_cols,
        });
    }
    // The tallest box (at most 256 rows) that splits the piece's rows evenly, so every box of
    // the plan has one shape and one tensor map describes them all.
    let box_rows = (1..=rows.min(MAX_BOX_EXTENT))
        .rev()
        .find(|h| rows % h == 0)
        .ok_or(NotTma::Rows { rows, cols })?;
    // The hardware permutes by shared-address bits: a swizzled box must start where the
    // pattern starts (8 rows of the span), any box on a 128-byte boundary.
    let align = span(s).map_or(128, |sp| (8 * sp).max(128));
    let mut boxes = Vec::new();
    for p in 0..row_bytes / piece {
        for k in 0..rows / box_rows {
            let shared_offset = p * rows * piece + k * box_rows * piece;
            if shared_offset % align != 0 {
                return Err(NotTma::Alignment {
                    offset: shared_offset,
                    align,
                });
            }
            boxes.push(TmaBox {
                shared_offset,
                row: k * box_rows,
                col: p * box_cols,
            });
        }
    }
    Ok(TmaPlan {
        box_rows,
        box_cols,
        boxes,
        bytes: rows * row_bytes,
    })
}

/// The PTX of one TMA tile-mode load of a rank-`rank` box (as `llvm.inline_asm` text): `$0` the
/// shared destination (32-bit shared-window address), `$1` the tensor map's address, `$2 ..`
/// the `rank` coordinates (innermost first, signed 32-bit elements), then the mbarrier's
/// 32-bit shared address, on which the box's bytes complete (PTX ISA, *cp.async.bulk.tensor*;
/// the `.shared::cluster` destination of a CTA's own shared memory, as a non-cluster launch is a
/// cluster of one).
pub fn load_asm(rank: usize) -> String {
    let coords: Vec<String> = (0..rank).map(|i| format!("${}", i + 2)).collect();
    format!(
        "cp.async.bulk.tensor.{rank}d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [$0], [$1, {{{}}}], [${}];",
        coords.join(", "),
        rank + 2
    )
}

/// One tensor-map parameter of a compiled kernel: the entry declares it after every other
/// parameter as `.param .align 64 .b8 name[128]` (a grid-constant `CUtensorMap`), and the
/// launch encodes it from the tensor it passes for global-view parameter `view` (its address,
/// extents and strides are known only then) with a box of `box_rows × box_cols` elements
/// (outermost first; a rank-2 view) landing in shared memory with `swizzle`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorMapArg {
    /// The global-view parameter the map describes (its name in the kernel's signature).
    pub view: String,
    /// Rows of the box (the outer dimension).
    pub box_rows: u32,
    /// Columns (elements) of the box (the inner, contiguous dimension).
    pub box_cols: u32,
    /// The shared-memory swizzle the box lands with.
    pub swizzle: Swizzle,
}

impl TensorMapArg {
    /// The text form the compile cache and bundles record: `<view> <rows>x<cols> <swizzle>`.
    pub fn to_text(&self) -> String {
        format!(
            "{} {}x{} {}",
            self.view,
            self.box_rows,
            self.box_cols,
            self.swizzle.name()
        )
    }

    /// Reads [`TensorMapArg::to_text`]'s form back; `None` for any other text.
    pub fn from_text(text: &str) -> Option<TensorMapArg> {
        let mut w = text.split_whitespace();
        let view = w.next()?.to_string();
        let (r, c) = w.next()?.split_once('x')?;
        let swizzle = Swizzle::from_name(w.next()?)?;
        if w.next().is_some() {
            return None;
        }
        Some(TensorMapArg {
            view,
            box_rows: r.parse().ok()?,
            box_cols: c.parse().ok()?,
            swizzle,
        })
    }
}

/// The TMA copy a `copy_start` of a `dst` shared tile from global-view parameter `view`
/// (`None` when the view is not a kernel parameter: a table entry has no map) becomes, or
/// `None` when it stays `cp.async`: a rank-2 view of the tile's element type that the compile
/// assumes 16-byte aligned ([`Facts::is_aligned16`]: base, inner stride 1 and outer stride in
/// whole 16-byte chunks, what a tensor map needs), and a swizzled tile (the layouts `wgmma`
/// reads) that a [`plan`] fills and whose size keeps every tile of a shared array on the
/// swizzle's 1024-byte boundary. The same boxes store such a tile to such a view (a warp's
/// `copy` the other way, `lower/tma_store.rs`): `dst` is then the tile and `src` the view.
pub fn copy_plan(
    dst: &Type,
    src: &Type,
    view: Option<&str>,
    facts: &Facts,
) -> Option<(TensorMapArg, TmaPlan)> {
    let Type::SharedTile {
        dtype,
        rows,
        cols,
        swizzle,
    } = *dst
    else {
        return None;
    };
    let Type::Global {
        dtype: gd, rank, ..
    } = *src
    else {
        return None;
    };
    let view = view?;
    if gd != dtype || rank != 2 || dtype == ScalarType::Bool || swizzle == Swizzle::None {
        return None;
    }
    if !facts.is_aligned16(view) || (rows * cols * dtype.size_bytes()) % 1024 != 0 {
        return None;
    }
    let p = plan(rows, cols, dtype, swizzle).ok()?;
    Some((
        TensorMapArg {
            view: view.to_string(),
            box_rows: p.box_rows,
            box_cols: p.box_cols,
            swizzle,
        },
        p,
    ))
}

/// What a kernel's copy groups become on sm_90a ([`scan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmaScan {
    /// The tensor maps the kernel's TMA copies read, in first-use order: map j is entry
    /// parameter `%tm{j}`.
    pub maps: Vec<TensorMapArg>,
    /// Whether some `copy_start` of the kernel stays `cp.async` (its groups then also commit
    /// and wait `cp.async` groups).
    pub cp_async: bool,
    /// Whether the kernel's copy groups complete on the mbarrier ring (some block-scoped
    /// `copy_start` has a [`copy_plan`]); `false` when only `copy_async`s on semaphores go
    /// through TMA, which need no ring.
    pub groups: bool,
}

/// The tensor maps kernel `func` of `module` needs for its TMA copies, or `None` when it has
/// none. Copy groups go through TMA when some `copy_start` has a [`copy_plan`] and every
/// copy-group op (`copy_start`, `copy_commit`, `copy_wait`) is block-scoped (the groups'
/// mbarriers are the block's: one arrival per group by thread 0, waits by every thread);
/// otherwise they stay `cp.async`. A `copy_async` on a semaphore with a [`copy_plan`] goes
/// through TMA whatever the groups do: its semaphore is the mbarrier it completes on; so does
/// a warp's `copy` of a shared tile with a plan to a global view (a TMA store). Helpers
/// are followed through their calls, so a view passed down keeps its parameter's map.
pub fn scan(module: &Module, func: &Func, facts: &Facts) -> Option<TmaScan> {
    let mut found = Found {
        group_maps: Vec::new(),
        async_maps: Vec::new(),
        cp_async: false,
        block_scoped: true,
    };
    let params: HashMap<Value, String> = func
        .params
        .iter()
        .filter_map(|p| Some((*p, func.value_name(*p)?.to_string())))
        .collect();
    scan_func(module, func, &params, facts, 0, &mut found);
    let groups = found.block_scoped && !found.group_maps.is_empty();
    let mut maps = if groups { found.group_maps } else { Vec::new() };
    for m in found.async_maps {
        if !maps.contains(&m) {
            maps.push(m);
        }
    }
    (!maps.is_empty()).then_some(TmaScan {
        maps,
        cp_async: found.cp_async,
        groups,
    })
}

/// What [`scan_func`] collects.
struct Found {
    /// Maps of `copy_start`s with a plan, in first-use order.
    group_maps: Vec<TensorMapArg>,
    /// Maps of `copy_async`s and of TMA stores (a warp's `copy` of a shared tile to a global
    /// view) with a plan, in first-use order.
    async_maps: Vec<TensorMapArg>,
    /// Some `copy_start` has no plan.
    cp_async: bool,
    /// Every copy-group op is block-scoped.
    block_scoped: bool,
}

fn scan_func(
    module: &Module,
    func: &Func,
    views: &HashMap<Value, String>,
    facts: &Facts,
    depth: u32,
    out: &mut Found,
) {
    // Deeper nesting is refused by the lowering (recursion).
    if depth > 64 {
        return;
    }
    func.walk(|op| match &op.kind {
        OpKind::CopyStart | OpKind::CopyCommit | OpKind::CopyWait(_) => {
            out.block_scoped &= op.scope == Scope::Block;
            if op.kind != OpKind::CopyStart {
                return;
            }
            let (dst, src) = (op.operands[0], op.operands[1]);
            let view = views.get(&src).map(String::as_str);
            match copy_plan(func.value_type(dst), func.value_type(src), view, facts) {
                Some((m, _)) => {
                    if !out.group_maps.contains(&m) {
                        out.group_maps.push(m);
                    }
                }
                None => out.cp_async = true,
            }
        }
        OpKind::CopyAsync => {
            let (dst, src) = (op.operands[0], op.operands[1]);
            let view = views.get(&src).map(String::as_str);
            if let Some((m, _)) = copy_plan(func.value_type(dst), func.value_type(src), view, facts)
            {
                if !out.async_maps.contains(&m) {
                    out.async_maps.push(m);
                }
            }
        }
        // A warp's copy of a shared tile to a global view: a TMA store (`lower/tma_store.rs`).
        OpKind::Copy if op.scope == Scope::Warp => {
            let (dst, src) = (op.operands[0], op.operands[1]);
            let view = views.get(&dst).map(String::as_str);
            if let Some((m, _)) = copy_plan(func.value_type(src), func.value_type(dst), view, facts)
            {
                if !out.async_maps.contains(&m) {
                    out.async_maps.push(m);
                }
            }
        }
        OpKind::Call(name) => {
            let Some(callee) = module.func(name) else {
                return;
            };
            let inner: HashMap<Value, String> = callee
                .params
                .iter()
                .zip(&op.operands)
                .filter_map(|(p, a)| Some((*p, views.get(a)?.clone())))
                .collect();
            scan_func(module, callee, &inner, facts, depth + 1, out);
        }
        _ => {}
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where TMA puts byte `b` of row `r` of the box at shared offset `at` (box rows of `w`
    /// bytes), by the ISA's rule on the absolute address (the tile base is a multiple of 1024).
    fn tma_position(s: Swizzle, at: u32, w: u32, r: u32, b: u32) -> u32 {
        let bits = match s {
            Swizzle::None => 0,
            Swizzle::B32 => 1,
            Swizzle::B64 => 2,
            Swizzle::B128 => 3,
        };
        let addr = at + r * w + b;
        addr ^ (((addr >> 7) & ((1 << bits) - 1)) << 4)
    }

    #[test]
    fn every_box_element_lands_where_the_shared_layout_places_it() {
        let mut planned = 0;
        for d in [ScalarType::BF16, ScalarType::F32, ScalarType::F8E4M3] {
            for s in [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128] {
                for rows in [16, 64, 128, 272, 512] {
                    for cols in [16, 32, 64, 128, 256] {
                        let Ok(p) = plan(rows, cols, d, s) else {
                            continue;
                        };
                        planned += 1;
                        let es = d.size_bytes();
                        let w = p.box_cols * es;
                        let mut hit = vec![false; (rows * cols * es) as usize];
                        for bx in &p.boxes {
                            for r in 0..p.box_rows {
                                for b in (0..w).step_by(es as usize) {
                                    let at = tma_position(s, bx.shared_offset, w, r, b);
                                    let want = layout::shared_tile_offset(
                                        s,
                                        rows,
                                        cols * es,
                                        bx.row + r,
                                        bx.col * es + b,
                                    );
                                    assert_eq!(
                                        at, want,
                                        "{rows}×{cols} {d} {s:?}: box {bx:?} row {r} byte {b}"
                                    );
                                    assert!(!hit[at as usize], "written twice: {at}");
                                    hit[at as usize] = true;
                                }
                            }
                        }
                        assert!(
                            hit.iter().step_by(es as usize).all(|h| *h),
                            "{rows}×{cols} {d} {s:?}: elements no box writes"
                        );
                        assert_eq!(p.bytes, rows * cols * es);
                    }
                }
            }
        }
        assert!(planned > 40, "only {planned} tiles planned");
    }

    #[test]
    fn wgmma_operand_tiles_take_one_box_per_128_byte_piece() {
        // gemm_wg's B tile: 32 × 128 bf16, 128-byte swizzle: two 64-column pieces.
        let p = plan(32, 128, ScalarType::BF16, Swizzle::B128).unwrap();
        assert_eq!((p.box_rows, p.box_cols), (32, 64));
        assert_eq!(
            p.boxes,
            vec![
                TmaBox {
                    shared_offset: 0,
                    row: 0,
                    col: 0
                },
                TmaBox {
                    shared_offset: 32 * 128,
                    row: 0,
                    col: 64
                },
            ]
        );
        assert_eq!(p.bytes, 32 * 128 * 2);
        // Its A tile: 64 × 64 bf16, one box.
        let a = plan(64, 64, ScalarType::BF16, Swizzle::B128).unwrap();
        assert_eq!(a.boxes.len(), 1);
        assert_eq!((a.box_rows, a.box_cols), (64, 64));
        // 512 rows: two boxes of 256 down the rows.
        let tall = plan(512, 64, ScalarType::BF16, Swizzle::B128).unwrap();
        assert_eq!(tall.box_rows, 256);
        assert_eq!(tall.boxes[1].shared_offset, 256 * 128);
    }

    #[test]
    fn tiles_no_box_fills_are_refused_with_the_reason() {
        // A 64-byte swizzle over 128-byte rows: one swizzled piece wider than the span.
        assert!(matches!(
            plan(64, 64, ScalarType::BF16, Swizzle::B64),
            Err(NotTma::SwizzleSpan {
                piece: 128,
                span: 64,
                ..
            })
        ));
        // 16 one-byte columns unswizzled: fine; 16 f32 columns with a 32-byte swizzle: refused.
        assert!(plan(16, 16, ScalarType::I8, Swizzle::None).is_ok());
        let e = plan(16, 16, ScalarType::F32, Swizzle::B32).unwrap_err();
        assert!(e.to_string().contains("32-byte span"), "{e}");
        // An unswizzled row of 512 bf16 is wider than a box.
        assert!(matches!(
            plan(16, 512, ScalarType::BF16, Swizzle::None),
            Err(NotTma::BoxWidth { elements: 512, .. })
        ));
    }

    #[test]
    fn the_load_names_its_operands_in_order() {
        assert_eq!(
            load_asm(2),
            "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [$0], [$1, {$2, $3}], [$4];"
        );
        assert!(load_asm(3).contains("3d") && load_asm(3).contains("{$2, $3, $4}], [$5]"));
    }
}
