//! NVIDIA instruction forms that the shared rules reach through the target's capabilities
//! ([`Rules::ldmatrix`](super::rules::Rules::ldmatrix), `cp_async`, `async_copy_queue`,
//! `mbarrier_tx`): `ldmatrix` for 16-bit shared → register tiles, `cp.async` copies of
//! global → shared tiles, the queue of committed `cp.async` groups of `copy_async` on sm_80 and
//! `mbarrier` semaphores on sm_90a. The designs are documented in `memory.rs` and `sync.rs`.

use tilekit_ir::{Layout, Op, OpKind, Scope};

use super::memory::{GlobalView, SharedTileRef};
use super::{mty, Lowerer, R};
use crate::layout::{self, LdmatrixOrder};

/// Committed `cp.async` groups a warp keeps in flight before retiring the oldest.
pub(crate) const ASYNC_DEPTH: u32 = 4;

/// The sm_80 queue of committed, uncounted `copy_async` groups of the module documentation:
/// `alloca`s of i32 holding the number of entries and, oldest first, each entry's semaphore
/// (shared byte offset) and bytes.
pub(crate) struct AsyncQueue {
    len: String,
    sems: Vec<String>,
    bytes: Vec<String>,
}

impl Lowerer<'_> {
    /// Shared → registers for 16-bit tiles with `ldmatrix.x4` per 16×16 subtile (`.trans` for
    /// the col layout), delivering the subtile's register pairs in `order` (the order the
    /// consuming `mma` reads them); see [`layout::ldmatrix_source`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ldmatrix(
        &mut self,
        sh: &SharedTileRef,
        row0: &str,
        col0: &str,
        rows: u32,
        cols: u32,
        layout: Layout,
        order: LdmatrixOrder,
    ) -> Vec<String> {
        let d = sh.d;
        let lane = self.e.lane.clone();
        // Row/col of the 8-element row this lane addresses, from `ldmatrix_source`'s table:
        // the row is `lane % 8` plus 8 times one bit of `q = lane / 8` and the column 8 times
        // the other; lane 8 (q = 1) shows which bit selects the row.
        let c8 = self.e.i32(8);
        let c16 = self.e.i32(16);
        let l8 = self.e.hoist(&format!("arith.remui {lane}, {c8} : i32"));
        let q = self.e.hoist(&format!("arith.divui {lane}, {c8} : i32"));
        let two = self.e.i32(2);
        let q_lo = self.e.hoist(&format!("arith.remui {q}, {two} : i32"));
        let q_hi = self.e.hoist(&format!("arith.divui {lane}, {c16} : i32"));
        let (rsel, csel) = if layout::ldmatrix_source(layout, order, 8).0 >= 8 {
            (q_lo, q_hi)
        } else {
            (q_hi, q_lo)
        };
        let pairs = order.pairs();
        let r8 = self.e.hoist(&format!("arith.muli {rsel}, {c8} : i32"));
        let lr = self.e.hoist(&format!("arith.addi {l8}, {r8} : i32"));
        let lc = self.e.hoist(&format!("arith.muli {csel}, {c8} : i32"));
        let lr = self.e.add_i32(&lr, row0);
        let lc = self.e.add_i32(&lc, col0);
        let trans = if layout == Layout::Col { ".trans" } else { "" };
        let t = mty(d);
        let mut out = vec![String::new(); self.frag.tile_regs(rows, cols) as usize];
        for si in 0..rows / 16 {
            for sj in 0..cols / 16 {
                let ro = self.e.i32(i64::from(16 * si));
                let co = self.e.i32(i64::from(16 * sj));
                let r = self.e.add_i32(&lr, &ro);
                let c = self.e.add_i32(&lc, &co);
                let p = self.shared_tile_ptr(sh, &r, &c);
                let a = self
                    .e
                    .op(&format!("llvm.ptrtoint {p} : !llvm.ptr<3> to i32"));
                let st = "!llvm.struct<(i32, i32, i32, i32)>";
                let m = self.e.op(&format!(
                    "llvm.inline_asm has_side_effects \"ldmatrix.sync.aligned.m8n8.x4{trans}.shared.b16 {{$0, $1, $2, $3}}, [$4];\", \"=r,=r,=r,=r,r\" {a} : (i32) -> {st}"
                ));
                let s = (si * (cols / 16) + sj) as usize;
                for qq in 0..4 {
                    let w = self.e.op(&format!("llvm.extractvalue {m}[{qq}] : {st}"));
                    let v = self
                        .e
                        .op(&format!("llvm.bitcast {w} : i32 to vector<2x{t}>"));
                    for h in 0..2 {
                        let hi = self
                            .e
                            .hoist(&format!("llvm.mlir.constant({h} : i32) : i32"));
                        out[8 * s + 2 * pairs[qq] as usize + h] = self.e.op(&format!(
                            "llvm.extractelement {v}[{hi} : i32] : vector<2x{t}>"
                        ));
                    }
                }
            }
        }
        out
    }

    /// `cp.async.cg` of 16-byte chunks of a global tile into a shared tile (PTX ISA, *Data
    /// Movement and Conversion Instructions: cp.async*), for a view the compile assumes
    /// 16-byte aligned ([`crate::specialize`]; other views are copied element by element, see
    /// `copy_elements`): chunk `rank + k·threads` in row-major order. Every chunk starts 16-byte
    /// aligned and lies wholly inside or wholly outside the view, so each is one `cp.async` of
    /// 16 bytes with a source size of 16 or 0 (zero-filled, as the IR's masking defines; exact
    /// since whole chunks are in or out) under one predicate; no run-time alignment test, no
    /// fallback, no partial sizes.
    ///
    /// Addresses are `base + origin + rel`: `origin` is the tile's (its leading indices, first
    /// row and column) in 64 bits from the tile indices, and `rel` the chunk's offset in the
    /// tile, which depends on the thread only. Inside a loop whose variable picks the tile,
    /// the loop-invariant part leaves the loop and the rest advances by a constant per step;
    /// the row and column predicates split the same way. Then the thread waits for its copies
    /// (`cp.async.commit_group; cp.async.wait_group 0`), since `copy` completes before the next
    /// op, unless `defer` (`copy_async` on sm_80), which leaves committing and waiting to its
    /// caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cp_async_tile_aligned(
        &mut self,
        g: &GlobalView,
        lead_pred: &Option<String>,
        lead_terms: &[(String, String)],
        tile_row: &str,
        tile_col: &str,
        tile: &SharedTileRef,
        threads: u32,
        rank: &str,
        defer: bool,
    ) {
        let n = g.shape.len();
        let es = tile.d.size_bytes();
        let per_chunk = 16 / es;
        let per_row = tile.cols / per_chunk;
        let chunks = tile.rows * per_row;
        let (nrows, ncols) = (g.shape[n - 2].clone(), g.shape[n - 1].clone());
        let row0 = self.e.mul_i32_const(tile_row, i64::from(tile.rows));
        let col0 = self.e.mul_i32_const(tile_col, i64::from(tile.cols));
        let srow = self
            .e
            .op(&format!("arith.extsi {} : i32 to i64", g.strides[n - 2]));
        let tr = self.e.op(&format!("arith.extsi {tile_row} : i32 to i64"));
        let tc = self.e.op(&format!("arith.extsi {tile_col} : i32 to i64"));
        let rows64 = self.e.i64(i64::from(tile.rows));
        let cols64 = self.e.i64(i64::from(tile.cols));
        let r0 = self.e.op(&format!("arith.muli {tr}, {rows64} : i64"));
        let r0 = self.e.op(&format!("arith.muli {r0}, {srow} : i64"));
        let c0 = self.e.op(&format!("arith.muli {tc}, {cols64} : i64"));
        let lead = self.offset(lead_terms);
        let origin = self.e.op(&format!("arith.addi {lead}, {r0} : i64"));
        let origin = self.e.op(&format!("arith.addi {origin}, {c0} : i64"));
        let zero = self.e.i32(0);
        let full = self.e.i32(16);
        for k in 0..chunks.div_ceil(threads) {
            let kk = self.e.i32(i64::from(k * threads));
            let ch = self.e.add_i32(rank, &kk);
            let guard = (chunks % threads != 0).then(|| {
                let t = self.e.i32(i64::from(chunks));
                self.e.op(&format!("arith.cmpi ult, {ch}, {t} : i32"))
            });
            let pr = self.e.i32(i64::from(per_row));
            let r = self.e.op(&format!("arith.divui {ch}, {pr} : i32"));
            let cc = self.e.op(&format!("arith.remui {ch}, {pr} : i32"));
            let c = self.e.mul_i32_const(&cc, i64::from(per_chunk));
            let gr = self.e.add_i32(&row0, &r);
            let gc = self.e.add_i32(&col0, &c);
            let row_ok = self.in_range(&gr, &nrows);
            let ok = self.and_opt(lead_pred.clone(), row_ok);
            let col_ok = self.in_range(&gc, &ncols);
            let ok = self.e.and_i1(&ok, &col_ok);
            let bytes = self
                .e
                .op(&format!("arith.select {ok}, {full}, {zero} : i32"));
            let r64 = self.e.op(&format!("arith.extui {r} : i32 to i64"));
            let c64 = self.e.op(&format!("arith.extui {c} : i32 to i64"));
            let rel = self.e.op(&format!("arith.muli {r64}, {srow} : i64"));
            let rel = self.e.op(&format!("arith.addi {rel}, {c64} : i64"));
            let off = self.e.op(&format!("arith.addi {origin}, {rel} : i64"));
            let src = self.global_ptr(g, &off, tile.d);
            let dst = self.shared_tile_ptr(tile, &r, &c);
            let dst = self
                .e
                .op(&format!("llvm.ptrtoint {dst} : !llvm.ptr<3> to i32"));
            let asm = format!(
                "llvm.inline_asm has_side_effects \"cp.async.cg.shared.global [$0], [$1], 16, $2;\", \"r,l,r\" {dst}, {src}, {bytes} : (i32, !llvm.ptr<1>, i32) -> ()"
            );
            match &guard {
                None => self.e.line(&asm),
                Some(gd) => {
                    self.e.open(&format!("scf.if {gd} {{"));
                    self.e.line(&asm);
                    self.e.close("}");
                }
            }
        }
        if defer {
            return;
        }
        self.e
            .line("llvm.inline_asm has_side_effects \"cp.async.commit_group;\", \"\" : () -> ()");
        self.e
            .line("llvm.inline_asm has_side_effects \"cp.async.wait_group 0;\", \"\" : () -> ()");
    }

    /// Semaphores as `mbarrier`s with transaction counts (sm_90a; see the module
    /// documentation of `sync.rs`).
    pub(super) fn mbarrier_sync(&mut self, op: &Op) -> R<()> {
        let sem = self.sem_addr(op.operands[if op.kind == OpKind::CopyAsync { 2 } else { 0 }]);
        match &op.kind {
            OpKind::SemInit(n) => {
                self.lane0_asm(&format!("mbarrier.init.shared::cta.b64 [$0], {n};"), &sem);
            }
            OpKind::SemArrive => {
                let all = self.e.i32(-1);
                self.e.line(&format!("nvvm.bar.warp.sync {all} : i32"));
                self.lane0_asm("mbarrier.arrive.shared::cta.b64 _, [$0];", &sem);
            }
            OpKind::SemExpect(bytes) => {
                self.lane0_asm(
                    &format!("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [$0], {bytes};"),
                    &sem,
                );
            }
            OpKind::SemWait => {
                let parity = self.scalar(op.operands[1]);
                let zero = self.e.i32(0);
                self.e.open("scf.while : () -> () {");
                let done = self.e.op(&format!(
                    "llvm.inline_asm has_side_effects \"{{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [$1], $2; selp.u32 $0, 1, 0, p; }}\", \"=r,r,r\" {sem}, {parity} : (i32, i32) -> i32"
                ));
                let again = self.e.op(&format!("arith.cmpi eq, {done}, {zero} : i32"));
                self.e.line(&format!("scf.condition({again})"));
                self.e.reopen("} do {");
                self.e.line("scf.yield");
                self.e.close("}");
            }
            OpKind::CopyAsync => {
                let (dst, src) = (op.operands[0], op.operands[1]);
                let bytes = self.ty(dst).shared_bytes().unwrap_or(0);
                let idx = self.idx(&op.operands[3..]);
                self.copy_elements(op, dst, src, &idx, Scope::Warp, false)?;
                // Each lane's stores before the warp's completion, which releases the waiters.
                self.fence_cta();
                let all = self.e.i32(-1);
                self.e.line(&format!("nvvm.bar.warp.sync {all} : i32"));
                self.lane0_asm(
                    &format!("mbarrier.complete_tx.relaxed.cta.shared::cta.b64 [$0], {bytes};"),
                    &sem,
                );
            }
            _ => unreachable!("dispatched by kind"),
        }
        Ok(())
    }

    /// The 32-bit shared-window address of a semaphore.
    fn sem_addr(&mut self, s: tilekit_ir::Value) -> String {
        let off = self.shared_off(s);
        let p = self.shared_ptr(&off);
        self.e
            .op(&format!("llvm.ptrtoint {p} : !llvm.ptr<3> to i32"))
    }

    /// Inline PTX taking the semaphore address as `$0`, executed by lane 0 only.
    fn lane0_asm(&mut self, asm: &str, addr: &str) {
        let l0 = self.lane0();
        self.e.open(&format!("scf.if {l0} {{"));
        self.e.line(&format!(
            "llvm.inline_asm has_side_effects \"{asm}\", \"r\" {addr} : (i32) -> ()"
        ));
        self.e.close("}");
    }

    /// The queue's `alloca`s, zero entries, in the kernel's prologue (entry block).
    pub(super) fn new_async_queue(&mut self) -> AsyncQueue {
        let zero = self.e.i32(0);
        let one = self.e.hoist("llvm.mlir.constant(1 : i32) : i32");
        let slot = |e: &mut super::Emit| {
            let v = e.fresh();
            e.prologue.push_str(&format!(
                "    {v} = llvm.alloca {one} x i32 : (i32) -> !llvm.ptr\n    llvm.store {zero}, {v} : i32, !llvm.ptr\n"
            ));
            v
        };
        let len = slot(&mut self.e);
        let sems = (0..ASYNC_DEPTH).map(|_| slot(&mut self.e)).collect();
        let bytes = (0..ASYNC_DEPTH).map(|_| slot(&mut self.e)).collect();
        AsyncQueue { len, sems, bytes }
    }

    fn load_slot(&mut self, p: &str) -> String {
        self.e.op(&format!("llvm.load {p} : !llvm.ptr -> i32"))
    }

    fn store_slot(&mut self, p: &str, v: &str) {
        self.e
            .line(&format!("llvm.store {v}, {p} : i32, !llvm.ptr"));
    }

    /// The queue's slots, cloned out of `self` for emission.
    fn queue(&self) -> Option<(String, Vec<String>, Vec<String>)> {
        let q = self.async_queue.as_ref()?;
        Some((q.len.clone(), q.sems.clone(), q.bytes.clone()))
    }

    /// `cp.async.wait_group n`, the fence and the warp barrier before counting retired copies.
    fn await_groups(&mut self, n: u32) {
        self.e.line(&format!(
            "llvm.inline_asm has_side_effects \"cp.async.wait_group {n};\", \"\" : () -> ()"
        ));
        self.fence_cta();
        self.rules.warp_sync(&mut self.e);
    }

    /// Counts queue entry `k`'s bytes on its semaphore.
    fn retire_entry(&mut self, sem: &str, bytes: &str) {
        let off = self.load_slot(sem);
        let b = self.load_slot(bytes);
        let p = self.shared_ptr(&off);
        let b64 = self.e.op(&format!("arith.extui {b} : i32 to i64"));
        let z = self.e.i64(0);
        let neg = self.e.op(&format!("arith.subi {z}, {b64} : i64"));
        self.soft_sub_value(&p, &neg, &b);
    }

    /// With a full queue, retires its oldest entry (`cp.async.wait_group ASYNC_DEPTH-1`).
    pub(super) fn make_room(&mut self) {
        let Some((len, sems, bytes)) = self.queue() else {
            return;
        };
        let n = self.load_slot(&len);
        let depth = self.e.i32(i64::from(ASYNC_DEPTH));
        let full = self.e.op(&format!("arith.cmpi eq, {n}, {depth} : i32"));
        self.e.open(&format!("scf.if {full} {{"));
        self.await_groups(ASYNC_DEPTH - 1);
        self.retire_entry(&sems[0], &bytes[0]);
        for k in 1..ASYNC_DEPTH as usize {
            let s = self.load_slot(&sems[k]);
            self.store_slot(&sems[k - 1], &s);
            let b = self.load_slot(&bytes[k]);
            self.store_slot(&bytes[k - 1], &b);
        }
        let less = self.e.i32(i64::from(ASYNC_DEPTH - 1));
        self.store_slot(&len, &less);
        self.e.close("}");
    }

    /// Commits the `cp.async` group of a `copy_async` just issued and queues its
    /// (semaphore offset, bytes).
    pub(super) fn commit_async(&mut self, off: &str, b: &str) {
        self.e
            .line("llvm.inline_asm has_side_effects \"cp.async.commit_group;\", \"\" : () -> ()");
        self.push_async(off, b);
    }

    /// Appends (semaphore offset, bytes) to the queue (which has room).
    fn push_async(&mut self, off: &str, b: &str) {
        let Some((len, sems, bytes)) = self.queue() else {
            return;
        };
        let n = self.load_slot(&len);
        for k in 0..ASYNC_DEPTH as usize {
            let kk = self.e.i32(k as i64);
            let here = self.e.op(&format!("arith.cmpi eq, {n}, {kk} : i32"));
            for (slot, v) in [(&sems[k], off), (&bytes[k], b)] {
                let old = self.load_slot(slot);
                let new = self.e.op(&format!("arith.select {here}, {v}, {old} : i32"));
                self.store_slot(slot, &new);
            }
        }
        let one = self.e.i32(1);
        let n1 = self.e.add_i32(&n, &one);
        self.store_slot(&len, &n1);
    }

    /// Retires every queue entry (`cp.async.wait_group 0`): before the warp may block.
    pub(super) fn flush_async(&mut self) {
        let Some((len, sems, bytes)) = self.queue() else {
            return;
        };
        let n = self.load_slot(&len);
        let zero = self.e.i32(0);
        let any = self.e.op(&format!("arith.cmpi ne, {n}, {zero} : i32"));
        self.e.open(&format!("scf.if {any} {{"));
        self.await_groups(0);
        for k in 0..ASYNC_DEPTH as usize {
            let kk = self.e.i32(k as i64);
            let live = self.e.op(&format!("arith.cmpi ult, {kk}, {n} : i32"));
            self.e.open(&format!("scf.if {live} {{"));
            self.retire_entry(&sems[k], &bytes[k]);
            self.e.close("}");
        }
        self.store_slot(&len, &zero);
        self.e.close("}");
    }
}
