//! Copy groups through TMA on sm_90a: `copy_start` / `copy_commit` / `copy_wait[n]` of a
//! kernel whose copies [`crate::tma::scan`] finds TMA can make.
//!
//! # Groups become mbarrier phases
//!
//! The IR's copy groups are counted by recency ("all but the n most recent groups are
//! complete"), with no barrier object named; TMA completes on an `mbarrier` (PTX ISA,
//! *cp.async.bulk.tensor*, `.mbarrier::complete_tx::bytes`). The lowering gives the block a
//! ring of [`GROUP_BARRIERS`] mbarriers and numbers the groups as they are committed: group g
//! is phase ⌊g / B⌋ of barrier g mod B. Every thread of the block runs the (block-scoped) group
//! ops, so each keeps the same two counters in registers: `committed` (groups committed so far:
//! the open group is number `committed`) and `waited` (groups this thread has seen complete).
//!
//! - `copy_start` of a qualifying tile: the issuing thread (one lane of warp 0) issues one
//!   `cp.async.bulk.tensor` per box of the plan ([`crate::tma::plan`]) on the open group's
//!   barrier, and every thread adds the tile's bytes to the group's count (a constant after
//!   LLVM's mem2reg in a straight-line step). No other thread does anything: no per-chunk address or bounds
//!   math (TMA fills out-of-bounds elements with zeros, as the IR's copy does).
//! - `copy_commit`: the issuing thread arrives on the open group's barrier (initialized with one
//!   arrival) announcing the group's bytes (`mbarrier.arrive.expect_tx`), so the phase completes
//!   once every byte is in — at once for an empty group; then `committed` + 1.
//! - `copy_wait[n]`: every thread waits (`mbarrier.try_wait.parity` on parity ⌊g / B⌋ mod 2) for
//!   each group g from `waited` up to `committed − n − 1`, which is "all but the n most recent
//!   complete"; the barrier's completion makes the TMA writes visible to the waiting thread.
//!
//! Why numbered groups rather than one barrier per ring slot named by the kernel: the IR's ring
//! slots are shared-memory indices that the copy ops do not tie to groups (a group may fill any
//! number of tiles of any arrays, or none), while the commit order is exactly what the group
//! semantics count; a per-thread counter recovers "the n most recent" at the cost of an add and
//! a compare per step, with no memory traffic. Before a barrier is armed again for group
//! g + B, group g must have completed, or its bytes would count towards the old phase: when a
//! commit leaves B groups it has not seen complete, the issuing thread waits for the oldest
//! first (earlier than the IR asked, which the group semantics allow). With the sm80-style ring
//! the library writes (a wait, then a block barrier, then the next stage's copies) at most
//! `STAGES − 1` groups are ever in flight, so with B = 8 this never waits early. A thread's
//! parity wait on group g is only ambiguous once group g + 2B has been armed; the issuing
//! thread arms it after waiting for g + B itself, so a thread would have to fall 2B groups
//! behind it without a block barrier, which a ring whose stages are refilled only after a
//! block barrier never does.
//!
//! A kernel whose groups also hold `cp.async` copies (views the compile does not assume
//! aligned, tiles with no plan) keeps `cp.async.commit_group` / `cp.async.wait_group n` beside
//! the barriers: both counts advance together, so "the n most recent" means the same groups.

use tilekit_ir::{Op, OpKind, Value};

use super::{Lowerer, Lv, R};
use crate::tma::{copy_plan, load_asm, TmaPlan, TmaScan};

/// The mbarriers of the copy-group ring: groups in flight before a commit waits early.
pub const GROUP_BARRIERS: u32 = 8;

/// The lowering's state for TMA copy groups (module documentation).
#[derive(Clone, Debug)]
pub(crate) struct TmaGroups {
    pub scan: TmaScan,
    /// Shared byte offset (i32 constant) of barrier 0; barrier k is 8·k bytes further.
    pub bars: String,
    /// `alloca`s of the two counters (LLVM promotes them to registers).
    pub committed: String,
    pub waited: String,
    /// `alloca` of the bytes the open group's copies have issued so far.
    pub bytes: String,
    /// Entry parameter names of the maps, in [`TmaScan::maps`] order.
    pub params: Vec<String>,
    /// The kernel's global-view parameters by the pointer name their lowering carries, so a view
    /// passed into a helper still names its parameter.
    pub views: Vec<(String, String)>,
    /// What the compile assumes of the launch (which views are 16-byte aligned).
    pub facts: crate::Facts,
}

impl Lowerer<'_> {
    /// Sets up the ring for `scan` at the start of the kernel: the barriers' shared memory, their
    /// initialization by thread 0 (then the fence the ISA requires before the async proxy uses
    /// them, and a block barrier so no thread waits on an uninitialized barrier), and the
    /// counters. `views` pairs each global-view parameter's pointer name with its name.
    pub(super) fn tma_groups_begin(
        &mut self,
        scan: TmaScan,
        views: Vec<(String, String)>,
        facts: crate::Facts,
    ) {
        // Placed after every tile (`tma_groups_end`), so the 1024-byte alignment of the
        // swizzled tiles does not pad in front of them.
        let bars = "%tma_bars".to_string();
        let groups = scan.groups;
        if groups {
            self.group_ring_init(&bars);
        }
        let zero = self.e.i32(0);
        let one = self.e.hoist("llvm.mlir.constant(1 : i32) : i32");
        let mut slot = || {
            let v = self.e.fresh();
            self.e.prologue.push_str(&format!(
                "    {v} = llvm.alloca {one} x i32 : (i32) -> !llvm.ptr\n    llvm.store {zero}, {v} : i32, !llvm.ptr\n"
            ));
            v
        };
        let committed = slot();
        let waited = slot();
        let bytes = slot();
        let params = (0..scan.maps.len()).map(|j| format!("%tm{j}")).collect();
        self.tma = Some(Box::new(TmaGroups {
            scan,
            bars,
            committed,
            waited,
            bytes,
            params,
            views,
            facts,
        }));
    }

    /// Thread 0 initializes the group ring's barriers, then the fence the ISA requires before
    /// the async proxy uses them, and a block barrier so no thread waits on an uninitialized
    /// barrier.
    fn group_ring_init(&mut self, bars: &str) {
        let t0 = self.thread0();
        self.e.open(&format!("scf.if {t0} {{"));
        for k in 0..GROUP_BARRIERS {
            let off = self.e.i32(i64::from(8 * k));
            let at = self.e.add_i32(bars, &off);
            let a = self.smem_addr(&at);
            self.asm(
                "mbarrier.init.shared::cta.b64 [$0], 1;",
                "r",
                &[&a],
                "(i32)",
            );
        }
        self.asm("fence.mbarrier_init.release.cluster;", "", &[], "()");
        self.e.close("}");
        self.rules.barrier(&mut self.e);
    }

    /// Allocates the barriers after the kernel's shared objects and defines their offset.
    pub(super) fn tma_groups_end(&mut self) {
        if !self.tma.as_ref().is_some_and(|t| t.scan.groups) {
            return;
        }
        let off = self.alloc_shared(8 * u64::from(GROUP_BARRIERS), 8);
        self.e.prologue = format!(
            "    %tma_bars = arith.constant {off} : i32\n{}",
            self.e.prologue
        );
    }

    /// `copy_start`, `copy_commit` and `copy_wait[n]` of a kernel with TMA copy groups.
    pub(super) fn tma_pipeline(&mut self, op: &Op) -> R<()> {
        let Some(t) = self.tma.clone().filter(|t| t.scan.groups) else {
            return self.pipeline(op);
        };
        match op.kind {
            OpKind::CopyStart => {
                let dst = op.operands[0];
                let Some((map, plan)) = self.tma_map(&t, dst, op.operands[1]) else {
                    return self.pipeline(op);
                };
                self.tma_copy(&t, op, dst, &map, &plan)
            }
            OpKind::CopyCommit => {
                let c = self.load_counter(&t.committed);
                let bar = self.group_barrier(&t, &c);
                let one = self.e.i32(1);
                let c1 = self.e.add_i32(&c, &one);
                let bytes = self.load_counter(&t.bytes);
                self.issuer_open();
                self.asm(
                    "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], $1;",
                    "r,r",
                    &[&bar, &bytes],
                    "(i32, i32)",
                );
                // The issuer arms the next group's barrier: with B groups it has not seen
                // complete, it waits for the oldest first (module documentation). Only its own
                // count moves; the other threads wait when the IR says.
                let w = self.load_counter(&t.waited);
                let n = self.e.op(&format!("arith.subi {c1}, {w} : i32"));
                let b = self.e.i32(i64::from(GROUP_BARRIERS));
                let full = self.e.op(&format!("arith.cmpi sge, {n}, {b} : i32"));
                self.e.open(&format!("scf.if {full} {{"));
                self.wait_group(&t, &w);
                let w1 = self.e.add_i32(&w, &one);
                self.e
                    .line(&format!("llvm.store {w1}, {} : i32, !llvm.ptr", t.waited));
                self.e.close("}");
                self.issuer_close();
                self.e.line(&format!(
                    "llvm.store {c1}, {} : i32, !llvm.ptr",
                    t.committed
                ));
                let zero = self.e.i32(0);
                self.e
                    .line(&format!("llvm.store {zero}, {} : i32, !llvm.ptr", t.bytes));
                if t.scan.cp_async {
                    self.pipeline(op)?;
                }
                Ok(())
            }
            OpKind::CopyWait(n) => {
                if t.scan.cp_async {
                    self.pipeline(op)?;
                }
                let c = self.load_counter(&t.committed);
                let k = self.e.i32(i64::from(n));
                let upto = self.e.op(&format!("arith.subi {c}, {k} : i32"));
                self.e.open("scf.while : () -> () {");
                let w = self.load_counter(&t.waited);
                let more = self.e.op(&format!("arith.cmpi slt, {w}, {upto} : i32"));
                self.e.line(&format!("scf.condition({more})"));
                self.e.reopen("} do {");
                let w = self.load_counter(&t.waited);
                self.wait_group(&t, &w);
                let one = self.e.i32(1);
                let w1 = self.e.add_i32(&w, &one);
                // Opaque to LLVM's trip-count analysis: the loop runs once per step in a ring,
                // and runtime unrolling (by 4, with a remainder loop) put three extra spin
                // loops on the path the hot-loop figure walks.
                let w1 = self.rules.opaque_i32(&mut self.e, &w1);
                self.e
                    .line(&format!("llvm.store {w1}, {} : i32, !llvm.ptr", t.waited));
                self.e.line("scf.yield");
                self.e.close("}");
                Ok(())
            }
            _ => unreachable!("dispatched by kind"),
        }
    }

    /// `copy_async (dst, src, sem, row, col) @warp` of a tile with a TMA plan (sm_90a): one
    /// elected lane of the executing warp issues the plan's boxes on the semaphore's mbarrier,
    /// whose transaction count the boxes' bytes complete (`mbarrier::complete_tx::bytes`): the
    /// IR's "the copy counts the tile's bytes towards the phase". Nothing else runs: no lane
    /// copies, no fence, no bounds math (TMA fills out-of-bounds elements with zeros, as the
    /// IR's copy does). Returns `false` (nothing emitted) when the copy has no plan, which
    /// then takes the copy by the warp's lanes.
    pub(super) fn tma_async_copy(&mut self, op: &Op) -> R<bool> {
        let Some(t) = self.tma.clone() else {
            return Ok(false);
        };
        let (dst, sem) = (op.operands[0], op.operands[2]);
        let Some((map, plan)) = self.tma_map(&t, dst, op.operands[1]) else {
            return Ok(false);
        };
        let (rows, cols) = match self.ty(dst) {
            tilekit_ir::Type::SharedTile { rows, cols, .. } => (*rows, *cols),
            _ => unreachable!("copy_plan takes shared tiles only"),
        };
        let base = self.shared_off(dst);
        let sem_off = self.shared_off(sem);
        let bar = self.smem_addr(&sem_off);
        let (tr, tc) = (self.scalar(op.operands[3]), self.scalar(op.operands[4]));
        let row0 = self.e.mul_i32_const(&tr, i64::from(rows));
        let col0 = self.e.mul_i32_const(&tc, i64::from(cols));
        let elected = self.elect_one();
        self.e.open(&format!("scf.if {elected} {{"));
        self.tma_boxes(&plan, &base, (&row0, &col0), |l, dst, x, y| {
            l.asm(
                &load_asm(2),
                "r,l,r,r,r",
                &[dst, &map, x, y, &bar],
                "(i32, !llvm.ptr, i32, i32, i32)",
            );
        });
        self.e.close("}");
        Ok(true)
    }

    /// The tensor map (its parameter) and box plan of a TMA copy between shared tile `shared`
    /// and the global view `global`, or `None` when the copy has no plan (the lanes copy).
    pub(super) fn tma_map(
        &self,
        t: &TmaGroups,
        shared: Value,
        global: Value,
    ) -> Option<(String, TmaPlan)> {
        let view = match self.val(global) {
            Lv::Global { ptr, .. } => t
                .views
                .iter()
                .find(|(p, _)| p == ptr)
                .map(|(_, n)| n.clone()),
            _ => None,
        };
        let (map, plan) = copy_plan(self.ty(shared), self.ty(global), view.as_deref(), &t.facts)?;
        let Some(j) = t.scan.maps.iter().position(|m| *m == map) else {
            unreachable!("the scan and the lowering see the same copies")
        };
        Some((t.params[j].clone(), plan))
    }

    /// For each box of `plan`, its shared-window address (from the tile's shared offset `base`)
    /// and its global coordinates `(x, y)` (from the tile's first row and column), handed to
    /// `issue`, which emits the box's instruction.
    pub(super) fn tma_boxes(
        &mut self,
        plan: &TmaPlan,
        base: &str,
        (row0, col0): (&str, &str),
        mut issue: impl FnMut(&mut Self, &str, &str, &str),
    ) {
        for bx in &plan.boxes {
            let off = self.e.i32(i64::from(bx.shared_offset));
            let at = self.e.add_i32(base, &off);
            let smem = self.smem_addr(&at);
            let dc = self.e.i32(i64::from(bx.col));
            let dr = self.e.i32(i64::from(bx.row));
            let x = self.e.add_i32(col0, &dc);
            let y = self.e.add_i32(row0, &dr);
            issue(self, &smem, &x, &y);
        }
    }

    /// Thread 0 announces the tile's bytes on the open group's barrier and issues its boxes.
    fn tma_copy(
        &mut self,
        t: &TmaGroups,
        op: &Op,
        dst: Value,
        map: &str,
        plan: &crate::tma::TmaPlan,
    ) -> R<()> {
        let (rows, cols) = match self.ty(dst) {
            tilekit_ir::Type::SharedTile { rows, cols, .. } => (*rows, *cols),
            _ => unreachable!("copy_plan takes shared tiles only"),
        };
        let base = self.shared_off(dst);
        let (tr, tc) = (self.scalar(op.operands[2]), self.scalar(op.operands[3]));
        let c = self.load_counter(&t.committed);
        let bar = self.group_barrier(t, &c);
        let row0 = self.e.mul_i32_const(&tr, i64::from(rows));
        let col0 = self.e.mul_i32_const(&tc, i64::from(cols));
        // The group's bytes are announced once, with the commit's arrival
        // (`mbarrier.arrive.expect_tx`): the phase cannot complete before that arrival, so
        // boxes that land first only take the transaction count below zero for a while, which
        // the count's range allows (PTX ISA, *mbarrier*, "tx-count").
        let b = self.load_counter(&t.bytes);
        let size = self.e.i32(i64::from(plan.bytes));
        let b1 = self.e.add_i32(&b, &size);
        self.e
            .line(&format!("llvm.store {b1}, {} : i32, !llvm.ptr", t.bytes));
        self.issuer_open();
        self.tma_boxes(plan, &base, (&row0, &col0), |l, dst, x, y| {
            l.asm(
                &load_asm(2),
                "r,l,r,r,r",
                &[dst, map, x, y, &bar],
                "(i32, !llvm.ptr, i32, i32, i32)",
            );
        });
        self.issuer_close();
        Ok(())
    }

    /// Every thread waits until group `g`'s phase of its barrier has completed.
    fn wait_group(&mut self, t: &TmaGroups, g: &str) {
        let bar = self.group_barrier(t, g);
        let shift = self.e.i32(i64::from(GROUP_BARRIERS.trailing_zeros()));
        let one = self.e.i32(1);
        let ph = self.e.op(&format!("arith.shrui {g}, {shift} : i32"));
        let parity = self.e.op(&format!("arith.andi {ph}, {one} : i32"));
        let zero = self.e.i32(0);
        self.e.open("scf.while : () -> () {");
        let done = self.e.op(&format!(
            "llvm.inline_asm has_side_effects \"{{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [$1], $2; selp.u32 $0, 1, 0, p; }}\", \"=r,r,r\" {bar}, {parity} : (i32, i32) -> i32"
        ));
        let again = self.e.op(&format!("arith.cmpi eq, {done}, {zero} : i32"));
        self.e.line(&format!("scf.condition({again})"));
        self.e.reopen("} do {");
        self.e.line("scf.yield");
        self.e.close("}");
    }

    /// The 32-bit shared-window address of group `g`'s barrier (`g` mod B).
    fn group_barrier(&mut self, t: &TmaGroups, g: &str) -> String {
        let mask = self.e.i32(i64::from(GROUP_BARRIERS - 1));
        let k = self.e.op(&format!("arith.andi {g}, {mask} : i32"));
        let off = self.e.mul_i32_const(&k, 8);
        let at = self.e.add_i32(&t.bars, &off);
        self.smem_addr(&at)
    }

    fn load_counter(&mut self, p: &str) -> String {
        self.e.op(&format!("llvm.load {p} : !llvm.ptr -> i32"))
    }

    /// Whether this lane is the one `elect.sync` chooses among the warp's (an i1).
    pub(super) fn elect_one(&mut self) -> String {
        let one = self.e.op(
            "llvm.inline_asm has_side_effects \"{ .reg .pred %tk_p; .reg .b32 %tk_e; elect.sync %tk_e|%tk_p, 0xffffffff; selp.u32 $0, 1, 0, %tk_p; }\", \"=r\"  : () -> i32",
        );
        let z = self.e.i32(0);
        self.e.op(&format!("arith.cmpi ne, {one}, {z} : i32"))
    }

    /// The 32-bit shared-window address of shared byte offset `off` (32-bit arithmetic: a
    /// pointer offset would be 64-bit and truncated).
    pub(super) fn smem_addr(&mut self, off: &str) -> String {
        let smem = self.smem.clone();
        let base = self
            .e
            .hoist(&format!("llvm.ptrtoint {smem} : !llvm.ptr<3> to i32"));
        self.e.add_i32(&base, off)
    }

    /// Whether this is thread 0 of the block.
    fn thread0(&mut self) -> String {
        let z = self.e.i32(0);
        let tid = self.tid.clone();
        self.e.hoist(&format!("arith.cmpi eq, {tid}, {z} : i32"))
    }

    /// Opens the code of the one thread that issues copies and arms barriers: one lane of warp
    /// 0 chosen by `elect.sync` inside a branch on the warp index made warp-uniform by a
    /// shuffle, so that ptxas sees a single thread and issues each `UTMALDG` once (under a
    /// per-thread `tid == 0` it wraps every one in an `ELECT` loop).
    fn issuer_open(&mut self) {
        let tid = self.tid.clone();
        let all = self.e.i32(-1);
        let five = self.e.i32(5);
        let zero = self.e.i32(0);
        let clamp = self.e.i32(31);
        let w = self.e.hoist(&format!("arith.shrui {tid}, {five} : i32"));
        let w = self.e.hoist(&format!(
            "nvvm.shfl.sync idx {all}, {w}, {zero}, {clamp} : i32 -> i32"
        ));
        let warp0 = self.e.hoist(&format!("arith.cmpi eq, {w}, {zero} : i32"));
        self.e.open(&format!("scf.if {warp0} {{"));
        let elected = self.elect_one();
        self.e.open(&format!("scf.if {elected} {{"));
    }

    fn issuer_close(&mut self) {
        self.e.close("}");
        self.e.close("}");
    }

    /// Inline PTX with side effects and no results.
    pub(super) fn asm(&mut self, text: &str, constraints: &str, args: &[&str], types: &str) {
        self.e.line(&format!(
            "llvm.inline_asm has_side_effects \"{text}\", \"{constraints}\" {} : {types} -> ()",
            args.join(", ")
        ));
    }
}
