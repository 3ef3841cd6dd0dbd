//! The forwarding of tensor-core and asynchronous instructions (see the EXTENSION POINT in
//! [`super`]): gathers per-lane register values, hands them to the pure functions of
//! [`crate::tensor_core`], and writes their results back; and the `cp.async` unit.
//!
//! `cp.async` copies complete at the latest point the ISA allows — when a `cp.async.wait_group`
//! (or `wait_all`) of the issuing warp requires them — so a missing wait shows up as wrong
//! numbers, and reading or writing a destination before then is reported.

use super::{Ctx, Flow, Program, Space};
use crate::error::{EmuError, EmuResult};
use crate::machine::{lanes, LaneMask, WARP_SIZE};
use crate::ptx::{Operand, Ty};
use crate::sanitizer::{Finding, FindingKind};
use crate::tensor_core::matrix_load_store::{MatrixLoadStoreSpec, MatrixTransfer, ROW_BYTES};
use crate::tensor_core::mma_sync::{MmaSyncSpec, WarpFragment};
use crate::tensor_core::TensorCoreError;

/// One pending `cp.async` copy.
#[derive(Clone, Debug)]
struct AsyncCopy {
    lane: usize,
    line: u32,
    /// Instruction index of the issuing `cp.async` (its opcode and line for reports).
    pc: usize,
    src: u64,
    dst: u64,
    /// Bytes copied from the source; the rest of `size` is zero-filled.
    src_size: u32,
    size: u32,
}

/// Per-warp `cp.async` state: the copies of the group being built, and the committed groups.
#[derive(Clone, Debug, Default)]
struct WarpAsync {
    open: Vec<AsyncCopy>,
    committed: Vec<Vec<AsyncCopy>>,
}

/// Per-block state of the asynchronous units.
#[derive(Debug, Default)]
pub struct BlockExt {
    /// The sm_90 units: mbarriers, wgmma groups, proxy tracking (`hopper.rs`).
    pub(super) hopper: super::hopper::HopperState,
    /// `setmaxnreg` per warp and warpgroup (`setmaxnreg.rs`).
    pub(super) registers: super::setmaxnreg::RegisterCounts,
    warps: Vec<WarpAsync>,
    /// Per shared byte: how many pending copies write it (empty until the first copy).
    pending: Vec<u16>,
    /// Pending copies in the block.
    pending_total: usize,
}

impl BlockExt {
    /// Whether `[off, off+len)` of shared memory is the destination of a pending `cp.async`.
    pub fn pending_at(&self, off: usize, len: usize) -> bool {
        self.pending_total > 0
            && self
                .pending
                .get(off..off + len)
                .is_some_and(|s| s.iter().any(|c| *c > 0))
    }
}

fn tc_err(ctx: &Ctx<'_>, e: TensorCoreError) -> EmuError {
    ctx.bad(e.to_string())
}

fn with_line(ctx: &Ctx<'_>, e: EmuError) -> EmuError {
    match e {
        EmuError::TensorCore(t) => tc_err(ctx, t),
        other => other,
    }
}

fn regs_of<'o>(ctx: &Ctx<'_>, op: &'o Operand, what: &str) -> EmuResult<Vec<&'o Operand>> {
    match op {
        Operand::Vec(v) => Ok(v.iter().collect()),
        _ => Err(ctx.bad(format!("operand {what} must be a vector of registers"))),
    }
}

fn gather<const R: usize>(
    ctx: &Ctx<'_>,
    ops: &[&Operand],
    need: usize,
    what: &str,
) -> EmuResult<WarpFragment<R>> {
    if ops.len() != need || need > R {
        return Err(ctx.bad(format!(
            "operand {what} has {} registers, expected {need}",
            ops.len()
        )));
    }
    let mut f = [[0u32; R]; WARP_SIZE];
    for (lane, regs) in f.iter_mut().enumerate() {
        for (k, op) in ops.iter().enumerate() {
            regs[k] = ctx.read(lane, op, Ty::B32)? as u32;
        }
    }
    Ok(f)
}

/// Executes a tensor-core or asynchronous instruction for `group` (guard passed: `exec`).
pub fn execute(ctx: &mut Ctx<'_>, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    match instr.head.as_str() {
        "mma" => {
            if exec != group {
                return Err(ctx.bad("mma.sync must not be predicated off for part of the warp"));
            }
            let spec = MmaSyncSpec::parse(&instr.opcode).map_err(|e| tc_err(ctx, e))?;
            let (d, a, b, c) = (ctx.op(0)?, ctx.op(1)?, ctx.op(2)?, ctx.op(3)?);
            let (dv, av, bv, cv) = (
                regs_of(ctx, d, "d")?,
                regs_of(ctx, a, "a")?,
                regs_of(ctx, b, "b")?,
                regs_of(ctx, c, "c")?,
            );
            let af: WarpFragment<4> = gather(ctx, &av, spec.a_registers(), "a")?;
            let bf: WarpFragment<2> = gather(ctx, &bv, spec.b_registers(), "b")?;
            let cf: WarpFragment<4> = gather(ctx, &cv, spec.c_registers(), "c")?;
            if dv.len() != spec.d_registers() {
                return Err(ctx.bad(format!(
                    "operand d has {} registers, expected {}",
                    dv.len(),
                    spec.d_registers()
                )));
            }
            let out = spec.execute(&af, &bf, &cf);
            for lane in lanes(exec) {
                for (k, op) in dv.iter().enumerate() {
                    ctx.write(lane, op, Ty::B32, u64::from(out[lane][k]))?;
                }
            }
            Ok(Flow::Next)
        }
        "ldmatrix" | "stmatrix" => {
            if exec != group {
                return Err(
                    ctx.bad("ldmatrix/stmatrix must not be predicated off for part of the warp")
                );
            }
            let spec = MatrixLoadStoreSpec::parse(&instr.opcode).map_err(|e| tc_err(ctx, e))?;
            let (regs_op, addr_op) = match spec.transfer {
                MatrixTransfer::Load => (ctx.op(0)?, ctx.op(1)?),
                MatrixTransfer::Store => (ctx.op(1)?, ctx.op(0)?),
            };
            let rv = regs_of(ctx, regs_op, "of registers")?;
            if rv.len() != spec.count {
                return Err(ctx.bad(format!("{} registers, expected {}", rv.len(), spec.count)));
            }
            let mut addrs = [0u64; WARP_SIZE];
            for lane in spec.address_lanes() {
                let (_, a) = ctx.address(lane, addr_op)?;
                let (space, a) = ctx.resolve(
                    if instr.has("shared") || instr.has("shared::cta") {
                        Space::Shared
                    } else {
                        Space::Generic
                    },
                    a,
                );
                addrs[lane] = a;
                if space == Space::Shared {
                    // Lane 8j + i gives row i of matrix j: 16 bytes, one quarter-warp phase
                    // per matrix in the bank model.
                    ctx.note_shared(lane, a, ROW_BYTES);
                }
            }
            match spec.transfer {
                MatrixTransfer::Load => {
                    let frag = spec
                        .load::<EmuError>(&addrs, |lane, a| {
                            let mut row = [0u8; ROW_BYTES];
                            ctx.load(lane, Space::Shared, a, &mut row)?;
                            Ok(row)
                        })
                        .map_err(|e| with_line(ctx, e))?;
                    for lane in lanes(exec) {
                        for (k, op) in rv.iter().enumerate() {
                            ctx.write(lane, op, Ty::B32, u64::from(frag[lane][k]))?;
                        }
                    }
                }
                MatrixTransfer::Store => {
                    let frag: WarpFragment<4> = {
                        let mut f = [[0u32; 4]; WARP_SIZE];
                        for (lane, regs) in f.iter_mut().enumerate() {
                            for (k, op) in rv.iter().enumerate() {
                                regs[k] = ctx.read(lane, op, Ty::B32)? as u32;
                            }
                        }
                        f
                    };
                    spec.store::<EmuError>(&addrs, &frag, |lane, a, row| {
                        ctx.store(lane, Space::Shared, a, &row)
                    })
                    .map_err(|e| with_line(ctx, e))?;
                }
            }
            Ok(Flow::Next)
        }
        "cp" if instr.opcode.starts_with("cp.async.")
            && !instr.opcode.starts_with("cp.async.bulk") =>
        {
            cp_async(ctx, exec)
        }
        "cp" if instr.opcode.starts_with("cp.async.bulk") => {
            super::hopper::execute(ctx, group, exec)
        }
        "elect" if exec == 0 => Ok(Flow::Next),
        "elect" => {
            // elect.sync d|p, membermask: the lowest active member lane is elected.
            let mask = ctx.read(exec.trailing_zeros() as usize, ctx.op(1)?, Ty::B32)? as u32;
            let part = exec & mask;
            let leader = if part == 0 {
                0
            } else {
                part.trailing_zeros() as usize
            };
            for lane in lanes(exec) {
                match ctx.op(0)? {
                    Operand::PredPair(r, p) => {
                        ctx.warp.set_reg(lane, *r, leader as u64);
                        ctx.warp
                            .set_reg(lane, *p, u64::from(lane == leader && part != 0));
                    }
                    d => ctx.write(lane, d, Ty::Pred, u64::from(lane == leader))?,
                }
            }
            Ok(Flow::Next)
        }
        "fence"
            if instr.opcode.starts_with("fence.proxy.async")
                || instr.opcode.starts_with("fence.mbarrier_init") =>
        {
            super::hopper::fence(ctx)
        }
        "wgmma" | "mbarrier" => super::hopper::execute(ctx, group, exec),
        "setmaxnreg" => super::setmaxnreg::execute(ctx, exec),
        _ => Err(ctx.unknown()),
    }
}

fn cp_async(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let w = ctx.warp.index;
    if ctx.block.ext.warps.len() <= w {
        ctx.block.ext.warps.resize(w + 1, WarpAsync::default());
    }
    if instr.has("commit_group") {
        let open = std::mem::take(&mut ctx.block.ext.warps[w].open);
        ctx.block.ext.warps[w].committed.push(open);
        return Ok(Flow::Next);
    }
    if instr.has("wait_group") || instr.has("wait_all") {
        let keep = if instr.has("wait_all") {
            0
        } else {
            ctx.read(0, ctx.op(0)?, Ty::U32)? as usize
        };
        let wa = &mut ctx.block.ext.warps[w];
        let mut done: Vec<AsyncCopy> = Vec::new();
        if instr.has("wait_all") {
            let open = std::mem::take(&mut wa.open);
            wa.committed.push(open);
        }
        while wa.committed.len() > keep {
            done.extend(wa.committed.remove(0));
        }
        for c in done {
            complete(ctx, &c)?;
        }
        return Ok(Flow::Next);
    }
    if instr.has("mbarrier") {
        // cp.async.mbarrier.arrive{.noinc}: the arrive-on follows the completion of the executing
        // threads' prior cp.async copies; they complete here, then `hopper` arrives.
        let wa = &mut ctx.block.ext.warps[w];
        let mut done = Vec::new();
        for g in wa.committed.iter_mut().chain(std::iter::once(&mut wa.open)) {
            let (now, later): (Vec<AsyncCopy>, Vec<AsyncCopy>) =
                g.drain(..).partition(|c| exec & (1 << c.lane) != 0);
            done.extend(now);
            *g = later;
        }
        for c in done {
            complete(ctx, &c)?;
        }
        return super::hopper::cp_async_arrive(ctx, exec);
    }
    // cp.async.{ca,cg}.shared{::cta}.global [dst], [src], cp-size{, src-size}{, cache-policy};
    let size = ctx.read(0, ctx.op(2)?, Ty::U32)? as u32;
    if !matches!(size, 4 | 8 | 16) || (instr.has("cg") && size != 16) {
        return Err(ctx.bad(format!(
            "copy size {size}, expected 4, 8 or 16 (16 for .cg)"
        )));
    }
    let src_size_op = instr
        .operands
        .get(3)
        .filter(|o| !matches!(o, Operand::Sym(_)));
    let (dst_op, src_op) = (ctx.op(0)?, ctx.op(1)?);
    for lane in lanes(exec) {
        let (_, d) = ctx.address(lane, dst_op)?;
        let (_, s) = ctx.address(lane, src_op)?;
        let (_, d) = ctx.resolve(Space::Shared, d);
        let src_size = match src_size_op {
            Some(op) => (ctx.read(lane, op, Ty::U32)? as u32).min(size),
            None => size,
        };
        if d % u64::from(size) != 0 || s % u64::from(size) != 0 {
            return Err(EmuError::Fault {
                kernel: ctx.prog.kernel.name.clone(),
                line: instr.line,
                message: format!("thread {}: cp.async of {size} bytes from {s:#x} to shared {d:#x} is misaligned", ctx.thread(lane)),
            });
        }
        // The shared side of the copy is counted at issue, as a store of `size` bytes.
        ctx.note_shared(lane, d, size as usize);
        let c = AsyncCopy {
            lane,
            line: instr.line,
            pc: ctx.pc,
            src: s,
            dst: d,
            src_size,
            size,
        };
        let ext = &mut ctx.block.ext;
        if ext.pending.len() < ctx.block.shared.len() {
            ext.pending.resize(ctx.block.shared.len(), 0);
        }
        let (lo, hi) = (
            d as usize,
            (d as usize + size as usize).min(ext.pending.len()),
        );
        if lo < hi {
            for p in &mut ext.pending[lo..hi] {
                *p = p.saturating_add(1);
            }
        }
        ext.pending_total += 1;
        ext.warps[w].open.push(c);
    }
    Ok(Flow::Next)
}

/// Performs a copy at its completion point: reads global memory, writes shared memory, both
/// through the sanitizer (on behalf of the issuing warp, whose wait this is).
fn complete(ctx: &mut Ctx<'_>, c: &AsyncCopy) -> EmuResult<()> {
    let ext = &mut ctx.block.ext;
    let (lo, hi) = (
        c.dst as usize,
        (c.dst as usize + c.size as usize).min(ext.pending.len()),
    );
    if lo < hi {
        for p in &mut ext.pending[lo..hi] {
            *p = p.saturating_sub(1);
        }
    }
    ext.pending_total = ext.pending_total.saturating_sub(1);
    let mut buf = [0u8; 16];
    let n = c.src_size as usize;
    if n > 0 {
        ctx.load(c.lane, Space::Global, c.src, &mut buf[..n])?;
    }
    ctx.store(c.lane, Space::Shared, c.dst, &buf[..c.size as usize])
}

/// Checks at the end of a block: `cp.async` copies never waited for.
pub fn finish_block(
    prog: &Program<'_>,
    block: &mut super::BlockMem,
    findings: &mut Vec<Finding>,
) -> EmuResult<()> {
    super::hopper::finish_block(prog, block, findings)?;
    super::setmaxnreg::finish_block(prog, block, findings);
    for (w, wa) in block.ext.warps.iter().enumerate() {
        let pending: Vec<&AsyncCopy> = wa
            .open
            .iter()
            .chain(wa.committed.iter().flatten())
            .collect();
        if let Some(c) = pending.first() {
            if findings.len() < super::MAX_FINDINGS && prog.sanitize {
                findings.push(Finding {
                    kind: FindingKind::AsyncHazard,
                    kernel: prog.kernel.name.clone(),
                    block: block.geom.ctaid,
                    line: c.line,
                    opcode: prog.kernel.body.get(c.pc).map_or_else(String::new, |i| i.opcode.clone()),
                    thread: Some((w * WARP_SIZE + c.lane) as u32),
                    message: format!("{} cp.async copies of warp {w} were never waited for (cp.async.wait_group)", pending.len()),
                });
            }
        }
    }
    Ok(())
}
