//! Semaphores and asynchronous copies.
//!
//! On sm_90a a semaphore is an `mbarrier` (PTX ISA, *Parallel Synchronization and Communication
//! Instructions: mbarrier*): `sem.init[n]` is `mbarrier.init` with n arrivals, `sem.arrive` one
//! `mbarrier.arrive` by lane 0 of the warp (after `bar.warp.sync`, so the whole warp's prior
//! accesses are done), `sem.expect[b]` is `mbarrier.expect_tx` of b bytes and `sem.wait` spins
//! on `mbarrier.try_wait.parity`. `copy_async` is, for now, a copy by the warp's lanes
//! followed by `mbarrier.complete_tx` of the tile's bytes (after a CTA-scope fence, so the data
//! is visible to the waiters that the phase releases): correct, not yet asynchronous (TMA is
//! the Hopper issue's).
//!
//! sm_80 has `mbarrier` but no transaction counts, which `sem.expect` and `copy_async` need, so
//! there a semaphore is a 64-bit word in shared memory updated with shared-memory atomics:
//! bits 0–31 hold the phase's pending count (arrivals plus bytes still expected) biased by 2³¹,
//! bits 32–47 the arrival count n, bits 48–63 the number of completed phases. An arrival or a
//! completed copy subtracts its count; the update that brings the pending count to zero
//! completes the phase by adding n back and one completed phase. `sem.wait (s, p)` spins until
//! the parity of the completed-phase count differs from p, which is `mbarrier.try_wait.parity`'s
//! rule. Fences (`fence.acq_rel.cta`) order the data before an arrival and after a wait.

use tilekit_ir::{Op, OpKind, Scope};

use super::{Lowerer, R};
use crate::Target;

impl Lowerer<'_> {
    pub(super) fn sync(&mut self, op: &Op) -> R<()> {
        if self.target != Target::Sm90a {
            return self.soft_sync(op);
        }
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
                self.copy_elements(op, dst, src, &idx, Scope::Warp)?;
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

    /// The sm_80 semaphores of the module documentation.
    fn soft_sync(&mut self, op: &Op) -> R<()> {
        let s = op.operands[if op.kind == OpKind::CopyAsync { 2 } else { 0 }];
        let off = self.shared_off(s);
        let p = self.shared_ptr(&off);
        match &op.kind {
            OpKind::SemInit(n) => {
                let word = (1u64 << 31) + u64::from(*n) + (u64::from(*n) << 32);
                let w = self.e.i64(word as i64);
                let l0 = self.lane0();
                self.e.open(&format!("scf.if {l0} {{"));
                self.e
                    .line(&format!("llvm.store volatile {w}, {p} : i64, !llvm.ptr<3>"));
                self.e.close("}");
            }
            OpKind::SemArrive => {
                self.fence_cta();
                let all = self.e.i32(-1);
                self.e.line(&format!("nvvm.bar.warp.sync {all} : i32"));
                self.soft_sub(&p, 1);
            }
            OpKind::SemExpect(bytes) => {
                let b = self.e.i64(i64::from(*bytes));
                let l0 = self.lane0();
                self.e.open(&format!("scf.if {l0} {{"));
                self.e.op(&format!(
                    "llvm.atomicrmw add {p}, {b} monotonic : !llvm.ptr<3>, i64"
                ));
                self.e.close("}");
            }
            OpKind::SemWait => {
                let parity = self.scalar(op.operands[1]);
                let c48 = self.e.i64(48);
                let one = self.e.i64(1);
                self.e.open("scf.while : () -> () {");
                let w = self
                    .e
                    .op(&format!("llvm.load volatile {p} : !llvm.ptr<3> -> i64"));
                let ph = self.e.op(&format!("arith.shrui {w}, {c48} : i64"));
                let bit = self.e.op(&format!("arith.andi {ph}, {one} : i64"));
                let bit = self.e.op(&format!("arith.trunci {bit} : i64 to i32"));
                let again = self.e.op(&format!("arith.cmpi eq, {bit}, {parity} : i32"));
                self.e.line(&format!("scf.condition({again})"));
                self.e.reopen("} do {");
                self.e.line("scf.yield");
                self.e.close("}");
                self.fence_cta();
            }
            OpKind::CopyAsync => {
                let (dst, src) = (op.operands[0], op.operands[1]);
                let bytes = self.ty(dst).shared_bytes().unwrap_or(0);
                let idx = self.idx(&op.operands[3..]);
                self.copy_elements(op, dst, src, &idx, Scope::Warp)?;
                self.fence_cta();
                let all = self.e.i32(-1);
                self.e.line(&format!("nvvm.bar.warp.sync {all} : i32"));
                self.soft_sub(&p, bytes as i64);
            }
            _ => unreachable!("dispatched by kind"),
        }
        Ok(())
    }

    fn fence_cta(&mut self) {
        self.e
            .line("llvm.inline_asm has_side_effects \"fence.acq_rel.cta;\", \"\" : () -> ()");
    }

    /// Lane 0 subtracts `count` from the pending count of the semaphore at `p`; the update that
    /// reaches zero completes the phase.
    fn soft_sub(&mut self, p: &str, count: i64) {
        let l0 = self.lane0();
        let neg = self.e.i64(-count);
        let target = self.e.i32(i64::from(i32::MIN));
        let cnt = self.e.i32(count);
        let c32 = self.e.i64(32);
        let mask = self.e.i64(0xFFFF);
        let phase = self.e.i64(1 << 48);
        self.e.open(&format!("scf.if {l0} {{"));
        let old = self.e.op(&format!(
            "llvm.atomicrmw add {p}, {neg} monotonic : !llvm.ptr<3>, i64"
        ));
        let low = self.e.op(&format!("arith.trunci {old} : i64 to i32"));
        let new = self.e.op(&format!("arith.subi {low}, {cnt} : i32"));
        let hit = self.e.op(&format!("arith.cmpi eq, {new}, {target} : i32"));
        self.e.open(&format!("scf.if {hit} {{"));
        let hi = self.e.op(&format!("arith.shrui {old}, {c32} : i64"));
        let n = self.e.op(&format!("arith.andi {hi}, {mask} : i64"));
        let inc = self.e.op(&format!("arith.addi {n}, {phase} : i64"));
        self.e.op(&format!(
            "llvm.atomicrmw add {p}, {inc} monotonic : !llvm.ptr<3>, i64"
        ));
        self.e.close("}");
        self.e.close("}");
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
}
