//! NVIDIA instruction forms that the shared rules reach through the target's capabilities
//! ([`Rules::ldmatrix`](super::rules::Rules::ldmatrix), `cp_async`, `async_copy_queue`,
//! `mbarrier_tx`): `ldmatrix` for 16-bit shared → register tiles, `cp.async` copies of
//! global → shared tiles, the queue of committed `cp.async` groups of `copy_async` on sm_80 and
//! `mbarrier` semaphores on sm_90a. The designs are documented in `memory.rs` and `sync.rs`.

use std::collections::HashMap;

use tilekit_ir::{Layout, Op, OpKind, Scope, Swizzle};

use super::memory::{GlobalView, Known, SharedTileRef, TileOrigin};
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

/// The lane's part of `ldmatrix`/`stmatrix` addresses of one tile
/// ([`Lowerer::matrix_x4_lanes`]): its row and column within a subtile, the tile's geometry
/// and start, and the addresses of the patterns met so far.
struct MatrixX4 {
    lr: String,
    lc: String,
    geom: NvTile,
    start: Option<(String, u32, u32)>,
    layout: Layout,
    order: LdmatrixOrder,
    patterns: HashMap<(u32, u32), String>,
}

/// The address operand `[reg+imm]` of an `ldmatrix`/`stmatrix` (`[reg]` for 0).
fn imm_address(reg: &str, imm: i64) -> String {
    match imm {
        0 => format!("[{reg}]"),
        k if k > 0 => format!("[{reg}+{k}]"),
        k => format!("[{reg}-{}]", -k),
    }
}

impl Lowerer<'_> {
    /// For [`Lowerer::ldmatrix`] and [`Lowerer::stmatrix`]: the lane's part of the addresses
    /// of a tile's subtiles (module documentation of `ldmatrix`), computed once per tile.
    fn matrix_x4_lanes(
        &mut self,
        sh: &SharedTileRef,
        origin: &TileOrigin,
        layout: Layout,
        order: LdmatrixOrder,
    ) -> MatrixX4 {
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
        let r8 = self.e.hoist(&format!("arith.muli {rsel}, {c8} : i32"));
        let lr = self.e.hoist(&format!("arith.addi {l8}, {r8} : i32"));
        let lc = self.e.hoist(&format!("arith.muli {csel}, {c8} : i32"));
        let geom = NvTile {
            swz: sh.swz,
            rows: sh.rows,
            row_bytes: sh.cols * d.size_bytes(),
            es: d.size_bytes(),
        };
        let start = self.ldmatrix_start(sh, origin, &geom);
        MatrixX4 {
            lr,
            lc,
            geom,
            start,
            layout,
            order,
            patterns: HashMap::new(),
        }
    }

    /// The 32-bit shared address this lane supplies for subtile `(si, sj)` and the immediate
    /// added to it in the instruction.
    fn matrix_x4_address(
        &mut self,
        m: &mut MatrixX4,
        sh: &SharedTileRef,
        origin: &TileOrigin,
        (si, sj): (u32, u32),
    ) -> (String, i64) {
        let (lr, lc) = (m.lr.clone(), m.lc.clone());
        match m.start.clone() {
            Some((start, r0, c0)) => {
                let f = ldmatrix_fragment_address(
                    &m.geom,
                    m.layout,
                    m.order,
                    r0 + 16 * si,
                    c0 + 16 * sj,
                );
                if let Some(a) = m.patterns.get(&f.pattern) {
                    return (a.clone(), f.imm);
                }
                let (pr, pc) = (
                    self.e.i32(i64::from(f.pattern.0)),
                    self.e.i32(i64::from(f.pattern.1)),
                );
                let r = self.e.hoist(&format!("arith.addi {lr}, {pr} : i32"));
                let c = self.e.hoist(&format!("arith.addi {lc}, {pc} : i32"));
                let off = self.nv_tile_offset(sh, &r, &c, true);
                let total = self.e.add_i32(&start, &off);
                let p = self.shared_ptr(&total);
                let a = self
                    .e
                    .op(&format!("llvm.ptrtoint {p} : !llvm.ptr<3> to i32"));
                m.patterns.insert(f.pattern, a.clone());
                (a, f.imm)
            }
            None => {
                let ro = self.e.i32(i64::from(16 * si));
                let co = self.e.i32(i64::from(16 * sj));
                let lr0 = self.e.add_i32(&lr, &origin.row);
                let lc0 = self.e.add_i32(&lc, &origin.col);
                let r = self.e.add_i32(&lr0, &ro);
                let c = self.e.add_i32(&lc0, &co);
                let p = self.shared_tile_ptr(sh, &r, &c);
                let a = self
                    .e
                    .op(&format!("llvm.ptrtoint {p} : !llvm.ptr<3> to i32"));
                (a, 0)
            }
        }
    }

    /// Shared → registers for 16-bit tiles with `ldmatrix.x4` per 16×16 subtile (`.trans` for
    /// the col layout), delivering the subtile's register pairs in `order` (the order the
    /// consuming `mma` reads them); see [`layout::ldmatrix_source`].
    ///
    /// Where the origin allows it ([`ldmatrix_fragment_address`], [`runtime_origin_bytes`])
    /// a subtile's address is `start + pattern + imm`: `start` the tile's offset plus the
    /// run-time part of the origin, `pattern` a lane's offset in a subtile with the same
    /// swizzle phase (computed once, in the prologue) and `imm` a constant in the instruction
    /// (`[addr+imm]`). The subtiles of a tile share a few patterns (one per 16-byte chunk phase
    /// of the swizzle), so a key tile's loads cost one addition per pattern instead of one
    /// swizzle recombination per subtile. Other origins take the per-subtile address.
    pub(super) fn ldmatrix(
        &mut self,
        sh: &SharedTileRef,
        origin: &TileOrigin,
        rows: u32,
        cols: u32,
        layout: Layout,
        order: LdmatrixOrder,
    ) -> Vec<String> {
        let mut m = self.matrix_x4_lanes(sh, origin, layout, order);
        let pairs = order.pairs();
        let trans = if layout == Layout::Col { ".trans" } else { "" };
        let t = mty(sh.d);
        let mut out = vec![String::new(); self.frag.tile_regs(rows, cols) as usize];
        let subtiles = (0..rows / 16).flat_map(|si| (0..cols / 16).map(move |sj| (si, sj)));
        for (s, at) in subtiles.enumerate() {
            let (a, imm) = self.matrix_x4_address(&mut m, sh, origin, at);
            let addr = imm_address("$4", imm);
            let st = "!llvm.struct<(i32, i32, i32, i32)>";
            let m = self.e.op(&format!(
                "llvm.inline_asm has_side_effects \"ldmatrix.sync.aligned.m8n8.x4{trans}.shared.b16 {{$0, $1, $2, $3}}, {addr};\", \"=r,=r,=r,=r,r\" {a} : (i32) -> {st}"
            ));
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
        out
    }

    /// Registers → shared for 16-bit tiles with `stmatrix.x4` per 16×16 subtile (sm_90; `.trans`
    /// for the col layout): the inverse of [`Lowerer::ldmatrix`] in the A order, whose
    /// addressing it shares. PTX ISA, *stmatrix*: lanes `8q .. 8q+8` give the row addresses of
    /// matrix `q`, and source register `q` holds matrix `q`, lane `l` its row `l/4`, elements
    /// `2(l%4), 2(l%4)+1` (with `.trans`: the column), the register pair of the tile that
    /// `ldmatrix` delivers to destination register `q`.
    pub(super) fn stmatrix(
        &mut self,
        sh: &SharedTileRef,
        origin: &TileOrigin,
        (rows, cols): (u32, u32),
        layout: Layout,
        xs: &[String],
    ) {
        let order = LdmatrixOrder::AOperand;
        let mut m = self.matrix_x4_lanes(sh, origin, layout, order);
        let pairs = order.pairs();
        let trans = if layout == Layout::Col { ".trans" } else { "" };
        let t = mty(sh.d);
        let vt = format!("vector<2x{t}>");
        let subtiles = (0..rows / 16).flat_map(|si| (0..cols / 16).map(move |sj| (si, sj)));
        for (s, at) in subtiles.enumerate() {
            let (a, imm) = self.matrix_x4_address(&mut m, sh, origin, at);
            let mut words = Vec::with_capacity(4);
            for p in pairs {
                let mut v = self.e.hoist(&format!("llvm.mlir.poison : {vt}"));
                for h in 0..2 {
                    let hi = self
                        .e
                        .hoist(&format!("llvm.mlir.constant({h} : i32) : i32"));
                    let x = &xs[8 * s + 2 * p as usize + h];
                    v = self
                        .e
                        .op(&format!("llvm.insertelement {x}, {v}[{hi} : i32] : {vt}"));
                }
                words.push(self.e.op(&format!("llvm.bitcast {v} : {vt} to i32")));
            }
            let addr = imm_address("$0", imm);
            self.e.line(&format!(
                "llvm.inline_asm has_side_effects \"stmatrix.sync.aligned.m8n8.x4{trans}.shared.b16 {addr}, {{$1, $2, $3, $4}};\", \"r,r,r,r,r\" {a}, {} : (i32, i32, i32, i32, i32) -> ()",
                words.join(", ")
            ));
        }
    }

    /// For [`Lowerer::ldmatrix`]: the byte offset (i32) where its subtiles' patterns start
    /// (the tile's offset plus the origin's run-time parts) and the origin's constant (row,
    /// col), or `None` where a run-time part of the origin would move the swizzle phase.
    fn ldmatrix_start(
        &mut self,
        sh: &SharedTileRef,
        origin: &TileOrigin,
        geom: &NvTile,
    ) -> Option<(String, u32, u32)> {
        let mut start = sh.base.clone();
        let mut consts = [0u32; 2];
        let parts = [(&origin.row, origin.known.0), (&origin.col, origin.known.1)];
        for (axis, (v, k)) in parts.into_iter().enumerate() {
            match k {
                Known::Const(c) => consts[axis] = u32::try_from(c).ok()?,
                Known::Multiple(m) => {
                    let per = runtime_origin_bytes(geom, axis == 0, m)?;
                    let t = self.e.mul_i32_const(v, i64::from(per));
                    start = self.e.add_i32(&start, &t);
                }
            }
        }
        Some((start, consts[0], consts[1]))
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

/// The geometry of an NVIDIA shared tile that its placement ([`layout::shared_tile_offset`])
/// depends on: swizzle, rows, bytes per row and per element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NvTile {
    pub swz: Swizzle,
    pub rows: u32,
    pub row_bytes: u32,
    pub es: u32,
}

impl NvTile {
    /// Byte offset of element (row, col) from the tile's start.
    fn offset(&self, row: u32, col: u32) -> u32 {
        layout::shared_tile_offset(self.swz, self.rows, self.row_bytes, row, col * self.es)
    }

    /// The bytes whose multiples leave the swizzle's XOR unchanged: the swizzle reads bits
    /// 7.. of the offset up to the highest bit of its mask shifted by three
    /// ([`layout::swizzle`]), so adding a multiple of the next power of two above them moves
    /// the element without changing its chunk's phase. 1 without a swizzle.
    fn swizzle_period(&self) -> u32 {
        match layout::swizzle_mask(self.swz) << 3 {
            0 => 1,
            src => 1 << (32 - src.leading_zeros()),
        }
    }
}

/// Where `ldmatrix.x4` reads the 16×16 subtile at constant element (row, col) of a shared tile:
/// each lane's address is the tile's start plus the offset of lane's row in the subtile at
/// `pattern`, plus `imm` (the same for every lane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FragmentAddress {
    pub pattern: (u32, u32),
    pub imm: i64,
}

/// Each lane's byte offset of its row for an `ldmatrix.x4` of the subtile at (row, col)
/// ([`layout::ldmatrix_source`]).
fn ldmatrix_lane_offsets(
    geom: &NvTile,
    layout: Layout,
    order: LdmatrixOrder,
    row: u32,
    col: u32,
) -> [u32; 32] {
    std::array::from_fn(|lane| {
        let (r, c) = layout::ldmatrix_source(layout, order, lane as u32);
        geom.offset(row + r, col + c)
    })
}

/// The address plan of the subtile at (row, col): its pattern is the first subtile, in the
/// rows of its swizzle phase nearest the tile's first row (rows modulo one swizzle period) and
/// then in increasing columns, whose lane offsets differ from its own by the same bytes on all
/// 32 lanes. So subtiles whose addresses differ by a constant (whole periods of rows, whole
/// pieces, columns the swizzle does not permute) share one pattern, whoever loads them; the
/// subtile itself is the last candidate.
pub(crate) fn ldmatrix_fragment_address(
    geom: &NvTile,
    layout: Layout,
    order: LdmatrixOrder,
    row: u32,
    col: u32,
) -> FragmentAddress {
    let w = layout::shared_piece_bytes(geom.swz, geom.row_bytes);
    let period = geom.swizzle_period();
    let period_rows = period / gcd(w, period);
    let at = ldmatrix_lane_offsets(geom, layout, order, row, col);
    let rows = [row % period_rows, row];
    let candidates = rows
        .into_iter()
        .flat_map(|r| (col % 16..=col).step_by(16).map(move |c| (r, c)));
    for (r, c) in candidates {
        let base = ldmatrix_lane_offsets(geom, layout, order, r, c);
        let imm = i64::from(at[0]) - i64::from(base[0]);
        if at
            .iter()
            .zip(&base)
            .all(|(&a, &b)| i64::from(a) - i64::from(b) == imm)
        {
            return FragmentAddress {
                pattern: (r, c),
                imm,
            };
        }
    }
    // Not reached: the subtile itself is the last candidate.
    FragmentAddress {
        pattern: (row, col),
        imm: 0,
    }
}

/// Bytes per unit of a run-time origin coordinate (a row when `row`, else a column) that is a
/// multiple of `multiple`, where adding it to every lane's offset is exact: rows move whole
/// swizzle periods when `multiple` rows of the piece width are a multiple of the period;
/// columns move whole pieces (`rows · piece` bytes each) when `multiple` columns are a whole
/// piece. `None` otherwise.
pub(crate) fn runtime_origin_bytes(geom: &NvTile, row: bool, multiple: u32) -> Option<u32> {
    let w = layout::shared_piece_bytes(geom.swz, geom.row_bytes);
    if row {
        (u64::from(multiple) * u64::from(w) % u64::from(geom.swizzle_period()) == 0).then_some(w)
    } else {
        (multiple * geom.es % w == 0).then_some(geom.es * geom.rows)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const SWIZZLES: [Swizzle; 4] = [Swizzle::None, Swizzle::B32, Swizzle::B64, Swizzle::B128];
    const ORDERS: [LdmatrixOrder; 2] = [LdmatrixOrder::AOperand, LdmatrixOrder::BOperand];

    /// bf16 tiles of the shapes the library and the tests use, with power-of-two and other
    /// row widths (hd 96 and 192 among them).
    fn geometries() -> Vec<NvTile> {
        let mut out = Vec::new();
        for swz in SWIZZLES {
            for rows in [16, 32, 48, 64, 128] {
                for cols in [16, 32, 48, 64, 96, 128, 192, 256] {
                    out.push(NvTile {
                        swz,
                        rows,
                        row_bytes: 2 * cols,
                        es: 2,
                    });
                }
            }
        }
        out
    }

    /// The address a lane gives for subtile (row, col), straight from the placement.
    fn direct(
        g: &NvTile,
        layout: Layout,
        order: LdmatrixOrder,
        lane: u32,
        row: u32,
        col: u32,
    ) -> i64 {
        let (r, c) = layout::ldmatrix_source(layout, order, lane);
        i64::from(layout::shared_tile_offset(
            g.swz,
            g.rows,
            g.row_bytes,
            row + r,
            (col + c) * g.es,
        ))
    }

    #[test]
    fn pattern_plus_immediate_is_every_lanes_address_of_every_subtile() {
        for g in geometries() {
            let cols = g.row_bytes / g.es;
            for layout in [Layout::Row, Layout::Col] {
                for order in ORDERS {
                    for row in (0..g.rows).step_by(16) {
                        for col in (0..cols).step_by(16) {
                            let f = ldmatrix_fragment_address(&g, layout, order, row, col);
                            for lane in 0..32 {
                                let (pr, pc) = f.pattern;
                                assert_eq!(
                                    direct(&g, layout, order, lane, pr, pc) + f.imm,
                                    direct(&g, layout, order, lane, row, col),
                                    "{g:?} {layout:?} {order:?} subtile ({row}, {col}) lane {lane}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn subtiles_a_swizzle_period_or_a_piece_apart_share_a_pattern() {
        // A 32×128 bf16 key tile with the 128-byte swizzle: two 128-byte pieces of four
        // 16-byte chunk pairs; rows 16 apart are two swizzle periods apart. Its 16 subtiles
        // take four patterns (one per chunk pair), the rest is immediates.
        let g = NvTile {
            swz: Swizzle::B128,
            rows: 32,
            row_bytes: 256,
            es: 2,
        };
        for layout in [Layout::Row, Layout::Col] {
            for order in ORDERS {
                let mut patterns = HashSet::new();
                for row in (0..32).step_by(16) {
                    for col in (0..128).step_by(16) {
                        patterns
                            .insert(ldmatrix_fragment_address(&g, layout, order, row, col).pattern);
                    }
                }
                assert_eq!(patterns.len(), 4, "{layout:?} {order:?}: {patterns:?}");
            }
        }
        // Unswizzled: one pattern for the whole tile.
        let g = NvTile {
            swz: Swizzle::None,
            ..g
        };
        let mut patterns = HashSet::new();
        for row in (0..32).step_by(16) {
            for col in (0..128).step_by(16) {
                let f =
                    ldmatrix_fragment_address(&g, Layout::Row, LdmatrixOrder::AOperand, row, col);
                patterns.insert(f.pattern);
            }
        }
        assert_eq!(patterns.len(), 1);
    }

    #[test]
    fn runtime_origins_move_every_lane_by_the_same_bytes_or_are_refused() {
        let mut refused = 0;
        for g in geometries() {
            let cols = g.row_bytes / g.es;
            for multiple in [16, 32, 48, 64] {
                for (is_row, extent) in [(true, g.rows), (false, cols)] {
                    let Some(per) = runtime_origin_bytes(&g, is_row, multiple) else {
                        refused += 1;
                        continue;
                    };
                    // Origins k·multiple inside the tile (a 16×16 subtile past them).
                    for k in 0..4u32 {
                        let o = k * multiple;
                        if o + 16 > extent {
                            break;
                        }
                        let (dr, dc) = if is_row { (o, 0) } else { (0, o) };
                        for lane in 0..32 {
                            for layout in [Layout::Row, Layout::Col] {
                                let order = LdmatrixOrder::AOperand;
                                assert_eq!(
                                    direct(&g, layout, order, lane, dr, dc),
                                    direct(&g, layout, order, lane, 0, 0) + i64::from(o * per),
                                    "{g:?} row {is_row} multiple {multiple} k {k} lane {lane}"
                                );
                            }
                        }
                    }
                }
            }
        }
        // Column origins inside one piece move the swizzle phase: those are refused.
        assert!(refused > 0);
    }
}
