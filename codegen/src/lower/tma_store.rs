//! TMA stores on sm_90a: a warp's `copy` of a shared tile to a global view becomes
//! `cp.async.bulk.tensor` from shared to global memory.
//!
//! # What the IR asks and what the store does
//!
//! `copy @warp (%dst, %src, row, col)` with `dst` a writable rank-2 global view and `src` a
//! shared tile: every element of the tile lands at its place in the view's tile `(row, col)`,
//! elements past the view's edges are dropped, and the copy is complete when the next op of
//! the warp runs. When the view has a tensor map (a kernel parameter the compile assumes
//! 16-byte aligned) and the tile a box plan ([`crate::tma::copy_plan`], the same boxes a TMA
//! load of the tile would use), the warp:
//!
//! 1. `fence.proxy.async.shared::cta`: each lane's generic-proxy writes of the tile (`st.shared`,
//!    `stmatrix`) become visible to the async proxy that reads it (PTX ISA, *Memory Consistency
//!    Model*, "Proxies"); then `bar.warp.sync` so the issuing lane runs after every lane's fence;
//! 2. one lane chosen by `elect.sync` issues one
//!    `cp.async.bulk.tensor.2d.global.shared::cta.bulk_group` per box (the hardware clips the
//!    box at the tensor map's extents: no element outside the view is written and no bounds
//!    math is done per element), commits them as one bulk group
//!    (`cp.async.bulk.commit_group`) and waits for it (`cp.async.bulk.wait_group 0`): the
//!    writes are then complete, as the IR's copy is when it returns, and the tile may be
//!    written again;
//! 3. `bar.warp.sync` again, so no lane of the warp runs ahead of the completed store.
//!
//! Other copies to global memory (block or warpgroup scope, views the compile does not assume
//! aligned, tiles with no plan) keep the copy by the lanes (`memory.rs`). The tensor maps are
//! collected by [`crate::tma::scan`] with those of the TMA loads; a map describes a view and a
//! box shape, so a load and a store of the same view and box share one.

use tilekit_ir::{Op, Scope, Type};

use super::{Lowerer, R};

/// The PTX of one TMA tile-mode store of a rank-2 box (as `llvm.inline_asm` text): `$0` the
/// tensor map's address, `$1`, `$2` the box's coordinates (innermost first), `$3` the shared
/// source (32-bit shared-window address). PTX ISA, *cp.async.bulk.tensor*, the
/// `.global.shared::cta` direction with `.bulk_group` completion.
pub const STORE_ASM: &str =
    "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [$0, {$1, $2}], [$3];";

impl Lowerer<'_> {
    /// `copy @warp (dst, src, row, col)` of a shared tile to a global view as a TMA store
    /// (module documentation). Returns `false` (nothing emitted) when the copy does not
    /// qualify, which then takes the copy by the warp's lanes.
    pub(super) fn tma_store(&mut self, op: &Op) -> R<bool> {
        let Some(t) = self.tma.clone() else {
            return Ok(false);
        };
        let (dst, src) = (op.operands[0], op.operands[1]);
        if op.scope != Scope::Warp || !self.ty(src).is_shared() {
            return Ok(false);
        }
        let Some((map, plan)) = self.tma_map(&t, src, dst) else {
            return Ok(false);
        };
        let (rows, cols) = match self.ty(src) {
            Type::SharedTile { rows, cols, .. } => (*rows, *cols),
            _ => unreachable!("copy_plan takes shared tiles only"),
        };
        let base = self.shared_off(src);
        let (tr, tc) = (self.scalar(op.operands[2]), self.scalar(op.operands[3]));
        let row0 = self.e.mul_i32_const(&tr, i64::from(rows));
        let col0 = self.e.mul_i32_const(&tc, i64::from(cols));
        self.asm("fence.proxy.async.shared::cta;", "", &[], "()");
        self.asm("bar.warp.sync -1;", "", &[], "()");
        let elected = self.elect_one();
        self.e.open(&format!("scf.if {elected} {{"));
        self.tma_boxes(&plan, &base, (&row0, &col0), |l, from, x, y| {
            l.asm(
                STORE_ASM,
                "l,r,r,r",
                &[&map, x, y, from],
                "(!llvm.ptr, i32, i32, i32)",
            );
        });
        self.asm("cp.async.bulk.commit_group;", "", &[], "()");
        self.asm("cp.async.bulk.wait_group 0;", "", &[], "()");
        self.e.close("}");
        self.asm("bar.warp.sync -1;", "", &[], "()");
        Ok(true)
    }
}
