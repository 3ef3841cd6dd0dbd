//! Semaphores and asynchronous copies.
//!
//! On sm_90a a semaphore is an `mbarrier` (PTX ISA, *Parallel Synchronization and Communication
//! Instructions: mbarrier*): `sem.init[n]` is `mbarrier.init` with n arrivals, `sem.arrive` one
//! `mbarrier.arrive` by lane 0 of the warp (after `bar.warp.sync`, so the whole warp's prior
//! accesses are done), `sem.expect[b]` is `mbarrier.expect_tx` of b bytes and `sem.wait` spins
//! on `mbarrier.try_wait.parity`. `copy_async` of a tile with a TMA plan from a view the
//! compile assumes aligned is a TMA load issued by one elected lane, completing on the
//! semaphore's mbarrier in hardware (`tma_copy.rs`; the semaphores' `mbarrier.init` is then
//! followed by `fence.mbarrier_init`, as the async proxy reads them); any other `copy_async` is
//! a copy by the warp's lanes followed by `mbarrier.complete_tx` of the tile's bytes (after a
//! CTA-scope fence, so the data is visible to the waiters that the phase releases).
//!
//! sm_80 has `mbarrier` but no transaction counts, which `sem.expect` and `copy_async` need, so
//! there a semaphore is a 64-bit word in shared memory updated with shared-memory atomics:
//! bits 0–31 hold the phase's pending count (arrivals plus bytes still expected) biased by 2³¹,
//! bits 32–47 the arrival count n, bits 48–63 the number of completed phases. An arrival or a
//! completed copy subtracts its count; the update that brings the pending count to zero
//! completes the phase by adding n back and one completed phase. `sem.wait (s, p)` spins until
//! the parity of the completed-phase count differs from p, which is `mbarrier.try_wait.parity`'s
//! rule. Fences (`fence.acq_rel.cta`) order the data before an arrival and after a wait.
//!
//! `copy_async` on sm_80 is asynchronous: a pipeline of `cp.async` groups. The hardware route
//! of sm_90a — the copy's bytes counted on the barrier by the memory system — does not exist on
//! sm_80: its `mbarrier` counts arrivals only (`mbarrier.expect_tx`, `mbarrier.complete_tx` and
//! `mbarrier.arrive` with a count need sm_90; PTX ISA, *mbarrier.expect_tx*, *mbarrier.arrive*,
//! "Target ISA notes"), so the pending count of a phase cannot be raised by `sem.expect` after
//! `mbarrier.init`; and `cp.async.mbarrier.arrive[.noinc]` (PTX ISA, *cp.async.mbarrier.arrive*)
//! makes one arrival per thread once that thread's prior `cp.async`s complete, whatever their
//! bytes. Mapping byte counts onto it needs each phase's expected bytes, and how many copies
//! and threads deliver them, at `sem.init` — which the IR's semaphores (`sem.expect` at run time,
//! any number of copies per phase, phases with no async bytes at all, as `empty` in the
//! warp-specialized GEMM) do not give. So the semaphore stays the shared word above, and the
//! completion of the copies is counted on it by the issuing warp, late:
//!
//! - `copy_async` issues the tile's 16-byte `cp.async.cg` chunks (zero-filled outside the view,
//!   as `copy` does; PTX ISA, *cp.async*) and `cp.async.commit_group` (*cp.async.commit_group*;
//!   an empty group on the element-wise fallback path, whose stores are synchronous, so that
//!   groups and queue entries stay one to one), and appends (semaphore, bytes) to the warp's
//!   queue of [`ASYNC_DEPTH`](super::ptx::ASYNC_DEPTH) entries (each lane holds the same queue, in registers: `alloca`s
//!   that LLVM promotes). Nothing waits: the warp goes on to the next stage's copies.
//! - A queue entry is retired by `cp.async.wait_group N` (*cp.async.wait_group*: every group but
//!   the N most recent of the executing thread is complete, its writes visible to that thread),
//!   then `fence.acq_rel.cta` and `bar.warp.sync` (all 32 lanes' chunks have landed and are
//!   ordered before what follows), then lane 0 subtracts the entry's bytes from the pending
//!   count — the completion that `copy_async` owes the phase; the update that reaches zero
//!   releases the waiters, whose `sem.wait` fences after observing it, so the data is visible
//!   after the wait as the IR defines.
//! - When is an entry retired: the oldest when a fifth copy is issued (`wait_group 3`), and all
//!   of them (`wait_group 0`) whenever the warp could block — a `sem.wait` that finds its phase
//!   not yet complete (checked once first, so a producer whose ring slot is free keeps its
//!   copies in flight), a `barrier @block`, and the kernel's end. A warp therefore never waits
//!   on a phase that its own unretired copies hold open, and every phase the IR completes is
//!   completed: the IR's copies complete at some later point, which retiring before blocking
//!   only brings forward.
//!
//! In the warp-specialized GEMM (a 2-stage ring, one producer warp issuing two copies per
//! stage) the producer thus has up to two stages in flight: stage k's copies are counted when
//! the producer finds stage k+1's `empty` semaphore not yet released, or four copies later.
//!
//! Why the producer still waits for its own copies (with `cp.async.wait_group`) before it
//! blocks, instead of handing them to the hardware with `cp.async.mbarrier.arrive.noinc`: that
//! instruction arrives on an `mbarrier` object, and on sm_80 the semaphore above is a software
//! word, which no hardware operation decrements when a copy lands; only the issuing thread learns
//! of it (`wait_group`). Making the sm_80 semaphore an `mbarrier` instead needs the phase's
//! arrival count fixed at `mbarrier.init` (sm_80 cannot raise it later: no `expect_tx`, no
//! counted `arrive`), and `.noinc` counts one arrival per issuing *thread* — 32 per warp and
//! `copy_async` — whereas the IR counts *bytes* announced at run time by `sem.expect`, delivered
//! by any number of `copy_async`s per phase, and has phases with no copies at all (`empty`).
//!
//! The lowering this suggests — `sem.init[1]` as `mbarrier.init` with 33 arrivals, `sem.arrive`
//! as one `cp.async.mbarrier.arrive.noinc` per lane (arriving once that lane's earlier copies
//! have landed) plus lane 0's `mbarrier.arrive` (release), `sem.expect` as nothing and
//! `copy_async` as its chunks alone — can be restricted to semaphores the IR shows to be fed by
//! one warp (every `sem.arrive`, `sem.expect` and `copy_async` on them under
//! `if warp_idx == c`), with one arrival per phase, and with each block's expects and copies on
//! a semaphore value followed, with nothing that may block in between, by one `sem.arrive` on
//! the same value and as many bytes copied as expected; then the IR's phase k is the k-th
//! arrival. It is still unsound: the 32 `.noinc` arrivals are asynchronous and the hardware
//! counts arrivals, not whose they are. If the warp arrives on the same semaphore for phase k+1
//! before phase k has completed, the arrivals of lanes whose k+1 copies landed early count
//! towards phase k, which then completes while a lane's phase-k copies are still in flight (a
//! race); without `.noinc` the increments land in the open phase k instead, which then
//! completes late and leaves phase k+1 short (a deadlock against a consumer waiting for it).
//! Soundness needs "phase k of the semaphore completes before its producer arrives for phase
//! k+1". The warp-specialized GEMM has that fact through its other ring (the producer waits on
//! `empty[s]`, which the consumers release only after waiting on `full[s]`), but stating it
//! takes a relation between two semaphores' phases and parities across warps that the Tile IR
//! does not express and this lowering does not prove. Two ways to get it: a semaphore form
//! that declares it (which the interpreter can check: an arrival for a phase whose predecessor
//! no warp has waited for is an error), or a per-semaphore phase count in shared memory with
//! an `mbarrier.test_wait` on phase k before arriving for k+1 (in the GEMM it never waits, but
//! costs a load, a compare and a test per stage). Until one of them exists, the producer's
//! copies stay in flight until it would block, which is the most the semaphore semantics allow
//! on sm_80. (On sm_90a the `mbarrier`'s transaction count takes bytes, and TMA completes them
//! in hardware: the Hopper path.)
//!
//! ## Copy groups: `copy_start`, `copy_commit`, `copy_wait[n]`
//!
//! The pipeline ops need no semaphore: they are `cp.async`'s own groups (PTX ISA,
//! *cp.async.commit_group*, *cp.async.wait_group*), which count per thread. `copy_start` issues
//! the executing threads' 16-byte `cp.async.cg` chunks of the tile (the same chunks and zero fill
//! as `copy`; a view that fails the 16-byte check copies element by element, synchronously,
//! which the group then covers trivially), `copy_commit` is `cp.async.commit_group` and
//! `copy_wait[n]` is `cp.async.wait_group n`. Every thread of the IR op's scope runs the same
//! ops, so every thread commits the same number of groups, and "all but the n most recent groups
//! of the warp" of the IR is "all but the n most recent of each thread" of PTX. The writes of a
//! thread's completed `cp.async`s are visible to it after `wait_group`; `bar.sync` then makes
//! them visible to the block, which is why the IR makes other warps' data visible only after a
//! barrier. This is the CUTLASS sm80 multistage mainloop: with an N-stage ring, N−1 groups in
//! flight, `wait_group N−2` and one barrier per step. Nothing drains at the kernel's end: the library
//! kernels end their loops with `copy_wait[0]`, so no copy is outstanding when a thread exits.
//!
//! Mixing these groups with `copy_async`'s queue (below) in one kernel stays correct: the queue
//! waits with `wait_group k`, which with extra newer groups only waits for more.
//!
//! On AMD targets `copy_start` is the synchronous copy and `copy_commit` / `copy_wait` emit
//! nothing: the data has landed before the op ends.
//!
//! ## Semaphores on AMD
//!
//! On AMD targets (no `cp.async`, no transaction-counting barriers) a semaphore is the same
//! 64-bit word in LDS with LDS atomics, and `copy_async` is a synchronous copy by the
//! wavefront's lanes followed by the count of its bytes (after a work-group-scope fence and the
//! wavefront's sync): correct, not asynchronous. The NVIDIA instruction forms (`mbarrier`,
//! `cp.async` and its queue) are in `ptx.rs`.
//!
//! ## Register reallocation: `setmaxnreg`
//!
//! On sm_90a `setmaxnreg.{inc,dec}[n]` is `setmaxnreg.{inc,dec}.sync.aligned.u32 n` (PTX ISA,
//! *setmaxnreg*), executed by every thread of the warpgroup as the IR op is, and the kernel's
//! entry gets `.minnctapersm 1` beside its `.maxntid` (`Rules::module`), without which ptxas
//! ignores the instruction. On sm_80 and the AMD targets, which have no such instruction, the op
//! emits nothing, by decision: it changes no value (the interpreter's meaning), and a
//! warp-specialized kernel then runs there with the uniform register allocation its compiler
//! chose — one source for every target, as the warp-specialized GEMM already is.

use tilekit_ir::{Op, OpKind, Scope};

use super::{Lowerer, R};

impl Lowerer<'_> {
    pub(super) fn sync(&mut self, op: &Op) -> R<()> {
        // sm_90a: a copy into a tile TMA can fill completes on the semaphore's mbarrier in
        // hardware (`tma_copy.rs`).
        if op.kind == OpKind::CopyAsync && self.rules.mbarrier_tx() && self.tma_async_copy(op)? {
            return Ok(());
        }
        if self.rules.mbarrier_tx() {
            self.mbarrier_sync(op)?;
            if matches!(op.kind, OpKind::SemInit(_)) && self.tma.is_some() {
                // TMA loads complete on semaphores of this kernel: the initialization must be
                // visible to the async proxy (PTX ISA, *mbarrier.init*, *fence.mbarrier_init*).
                self.e.line(
                    "llvm.inline_asm has_side_effects \"fence.mbarrier_init.release.cluster;\", \"\" : () -> ()",
                );
            }
            Ok(())
        } else {
            self.soft_sync(op)
        }
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
                self.rules.warp_sync(&mut self.e);
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
                // Not complete: count this warp's copies before spinning on.
                self.flush_async();
                self.e.line("scf.yield");
                self.e.close("}");
                self.fence_cta();
            }
            OpKind::CopyAsync => {
                let (dst, src) = (op.operands[0], op.operands[1]);
                let bytes = self.ty(dst).shared_bytes().unwrap_or(0);
                let idx = self.idx(&op.operands[3..]);
                if self.async_queue.is_none() {
                    // Without a queue (targets without `cp.async`: AMD, where `lower` sets none
                    // up): the synchronous copy, then the count.
                    self.copy_elements(op, dst, src, &idx, Scope::Warp, false)?;
                    self.fence_cta();
                    self.rules.warp_sync(&mut self.e);
                    self.soft_sub(&p, bytes as i64);
                    return Ok(());
                }
                self.make_room();
                self.copy_elements(op, dst, src, &idx, Scope::Warp, true)?;
                let b = self.e.i32(bytes as i64);
                self.commit_async(&off, &b);
            }
            _ => unreachable!("dispatched by kind"),
        }
        Ok(())
    }

    /// `copy_start`, `copy_commit` and `copy_wait[n]` (module documentation, *Copy groups*).
    pub(super) fn pipeline(&mut self, op: &Op) -> R<()> {
        let groups = self.rules.cp_async();
        match op.kind {
            OpKind::CopyStart => {
                let idx = self.idx(&op.operands[2..]);
                let (dst, src) = (op.operands[0], op.operands[1]);
                self.copy_elements(op, dst, src, &idx, op.scope, groups)?;
            }
            OpKind::CopyCommit if groups => self.e.line(
                "llvm.inline_asm has_side_effects \"cp.async.commit_group;\", \"\" : () -> ()",
            ),
            OpKind::CopyWait(n) if groups => self.e.line(&format!(
                "llvm.inline_asm has_side_effects \"cp.async.wait_group {n};\", \"\" : () -> ()"
            )),
            OpKind::CopyCommit | OpKind::CopyWait(_) => {}
            _ => unreachable!("dispatched by kind"),
        }
        Ok(())
    }

    /// `setmaxnreg.{inc,dec}[n] @warpgroup` (see the module documentation).
    pub(super) fn setmaxnreg(&mut self, op: &Op) -> R<()> {
        let OpKind::SetMaxNReg { inc, count } = op.kind else {
            unreachable!("dispatched by kind")
        };
        if !self.rules.setmaxnreg() {
            return Ok(());
        }
        let dir = if inc { "inc" } else { "dec" };
        self.e.line(&format!(
            "llvm.inline_asm has_side_effects \"setmaxnreg.{dir}.sync.aligned.u32 {count};\", \"\" : () -> ()"
        ));
        Ok(())
    }

    pub(super) fn fence_cta(&mut self) {
        self.rules.fence_block(&mut self.e);
    }

    /// Lane 0 subtracts `count` from the pending count of the semaphore at `p`; the update that
    /// reaches zero completes the phase.
    fn soft_sub(&mut self, p: &str, count: i64) {
        let neg = self.e.i64(-count);
        let cnt = self.e.i32(count);
        self.soft_sub_value(p, &neg, &cnt);
    }

    /// [`Self::soft_sub`] of a count known at run time: `cnt` (i32) and `neg` = −cnt (i64).
    pub(super) fn soft_sub_value(&mut self, p: &str, neg: &str, cnt: &str) {
        let l0 = self.lane0();
        let target = self.e.i32(i64::from(i32::MIN));
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
}
