//! Forwarding of the sm_90 asynchronous instructions: `mbarrier.*`, `wgmma.*` and the proxy
//! fences, over the state objects of [`crate::asynchrony`] and the pure `wgmma` of
//! [`crate::tensor_core::wgmma`].
//!
//! - mbarriers live in a map keyed by their shared-memory offset. An arrival releases the
//!   arriving warp's vector clock into the phase; a wait that succeeds acquires the clocks of the
//!   last completed phase, so the race sanitizer sees producer → consumer ordering through an
//!   mbarrier as it sees it through `bar.sync`. `try_wait` that cannot succeed makes the warp
//!   retry later (it is a potentially blocking wait), so a wait nobody will ever satisfy ends in
//!   the executor's deadlock report; `test_wait` returns false and lets other warps run.
//! - `wgmma.mma_async` computes its warp's 16 rows of D at issue from the shared operands as
//!   they are then, but the result reaches the accumulator registers only at the
//!   `wgmma.wait_group` that covers it; until then the registers hold [`IN_FLIGHT`] (NaN), so
//!   reading them early gives wrong numbers, and writing them (or the A registers, or the shared
//!   operands) before the wait is reported.
//! - The async proxy (wgmma operands) must not read shared bytes written through the generic
//!   proxy (`st.shared`, `stmatrix`) unless the writing warp executed `fence.proxy.async` in
//!   between: [`crate::asynchrony::SharedTracker`] follows every generic shared access on sm_90.

use std::collections::HashMap;

use super::{Ctx, Flow, Program, Space};
use crate::asynchrony::{AsyncOp, Deferred, Groups, Hazard, HazardKind, Mbarrier, OpId, SharedTracker};
use crate::error::EmuResult;
use crate::machine::{lanes, LaneMask, WARP_SIZE};
use crate::ptx::{Operand, RegId, Ty};
use crate::sanitizer::{Finding, FindingKind};
use crate::tensor_core::elements::{Accumulation, OperandType};
use crate::tensor_core::wgmma::{WgmmaA, WgmmaOperands, WgmmaSpec};

/// What accumulator registers hold while a wgmma that writes them is in flight: NaN as an f32
/// and as both halves of an f16x2.
pub const IN_FLIGHT: u32 = u32::MAX;

/// One warp's share of a `wgmma.mma_async` in flight.
#[derive(Debug, Clone)]
struct PendingMma {
    op: OpId,
    line: u32,
    opcode: String,
    /// Accumulator registers it writes.
    regs: Vec<RegId>,
    /// A registers and their values at issue (register-A form), to catch changes before the wait.
    a_regs: Vec<(RegId, [u32; WARP_SIZE])>,
    /// Shared bytes it reads.
    reads: Vec<(u32, u32)>,
}

/// A warp's wgmma state.
#[derive(Debug, Default)]
struct WgmmaWarp {
    /// Whether the warp has executed `wgmma.fence` yet.
    fenced: bool,
    groups: Groups<PendingMma>,
    /// The newest in-flight value of each accumulator register (op, per-lane bits): the next
    /// wgmma of a chain accumulates onto it, as the hardware orders same-shape accumulations.
    latest: HashMap<RegId, (OpId, [u32; WARP_SIZE])>,
}

/// The block's sm_90 asynchronous state.
#[derive(Debug, Default)]
pub struct HopperState {
    /// Shared bytes as the generic and async proxies see them.
    pub tracker: SharedTracker,
    barriers: HashMap<u32, Mbarrier>,
    wgmma: HashMap<usize, WgmmaWarp>,
    /// How fp8 wgmma sums its products (see [`Accumulation`]); 16-bit types always use `Exact`.
    pub fp8_accumulation: Accumulation,
}

impl HopperState {
    /// A generic-proxy access of shared `[off, off+len)` by `warp` at PTX `line` (called by the
    /// executor for every `ld`/`st` of shared memory on sm_90).
    pub fn generic_access(&mut self, off: usize, len: usize, write: bool, warp: usize, line: u32) -> Option<Hazard> {
        if write {
            self.tracker.generic_write(off as u32, len as u32, warp, line)
        } else {
            self.tracker.generic_read(off as u32, len as u32)
        }
    }
}

fn kind(h: &Hazard) -> FindingKind {
    match h.kind {
        HazardKind::Async => FindingKind::AsyncHazard,
        HazardKind::Mbarrier => FindingKind::Mbarrier,
    }
}

/// Executes a `wgmma.*` or `mbarrier.*` instruction for the lanes `exec`.
pub fn execute(ctx: &mut Ctx<'_>, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let _ = group;
    match ctx.instr.head.as_str() {
        "wgmma" => wgmma(ctx, exec),
        "mbarrier" => mbarrier(ctx, exec),
        _ => Err(ctx.unknown()),
    }
}

/// `fence.proxy.async*` and `fence.mbarrier_init*`: the warp's earlier generic shared writes (and
/// the barriers it initialized) become visible to the async proxy.
pub fn fence(ctx: &mut Ctx<'_>) -> EmuResult<Flow> {
    let w = ctx.warp.index;
    let st = &mut ctx.block.ext.hopper;
    if ctx.instr.opcode.starts_with("fence.proxy.async") {
        st.tracker.fence_proxy_async(w);
    }
    for b in st.barriers.values_mut().filter(|b| b.init_warp == w) {
        b.init_fenced = true;
    }
    Ok(Flow::Next)
}

// ---------------------------------------------------------------------------------------------
// mbarrier
// ---------------------------------------------------------------------------------------------

/// The shared offset of the mbarrier operand `op` in `lane`, or None (reported) when outside
/// shared memory.
fn barrier_offset(ctx: &mut Ctx<'_>, lane: usize, op: &Operand) -> EmuResult<Option<u32>> {
    let (sym_space, addr) = ctx.address(lane, op)?;
    let space = sym_space.unwrap_or_else(|| {
        if ctx.instr.mods.iter().any(|m| m.starts_with("shared")) {
            Space::Shared
        } else {
            Space::Generic
        }
    });
    let (space, off) = ctx.resolve(space, addr);
    if space != Space::Shared || off + 8 > ctx.block.shared.len() as u64 {
        ctx.report(
            FindingKind::OutOfBounds,
            Some(lane),
            format!("mbarrier at {addr:#x} is not 8 bytes inside the block's {} bytes of shared memory", ctx.block.shared.len()),
        );
        return Ok(None);
    }
    if off % 8 != 0 {
        return Err(ctx.bad(format!("mbarrier at shared offset {off:#x} is not 8-byte aligned")));
    }
    Ok(Some(off as u32))
}

fn mbarrier(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let verb = instr.mods.first().map(String::as_str).unwrap_or("");
    match verb {
        "init" => {
            for lane in lanes(exec) {
                let Some(off) = barrier_offset(ctx, lane, ctx.op(0)?)? else { continue };
                let count = ctx.read(lane, ctx.op(1)?, Ty::U32)? as i64;
                let (line, w) = (instr.line, ctx.warp.index);
                match Mbarrier::new(count, line, w) {
                    Ok(b) => {
                        let old = ctx.block.ext.hopper.barriers.insert(off, b);
                        if old.is_some_and(|o| !o.deferred.is_empty()) {
                            ctx.report(FindingKind::Mbarrier, Some(lane), format!("mbarrier at shared offset {off:#x} re-initialized with asynchronous work still signalling it"));
                        }
                    }
                    Err(h) => ctx.report(kind(&h), Some(lane), h.message),
                }
            }
            Ok(Flow::Next)
        }
        "inval" => {
            for lane in lanes(exec) {
                let Some(off) = barrier_offset(ctx, lane, ctx.op(0)?)? else { continue };
                if ctx.block.ext.hopper.barriers.remove(&off).is_some_and(|b| !b.deferred.is_empty()) {
                    ctx.report(FindingKind::Mbarrier, Some(lane), format!("mbarrier at shared offset {off:#x} invalidated with asynchronous work still signalling it"));
                }
            }
            Ok(Flow::Next)
        }
        "arrive" | "arrive_drop" | "expect_tx" | "complete_tx" => {
            let expect = instr.has("expect_tx");
            let (addr_at, state_op) = if verb == "expect_tx" || verb == "complete_tx" { (0, None) } else { (1, Some(ctx.op(0)?)) };
            let clock = ctx.warp.clock.clone();
            // Phases each barrier was in before this instruction: lanes of one warp arriving on a
            // barrier that expects fewer arrivals complete several phases in one instruction,
            // the usual form of "arrivals beyond the count" (a missing elect/lane-0 guard).
            let mut phase_before: HashMap<u32, (u32, usize)> = HashMap::new();
            for lane in lanes(exec) {
                let Some(off) = barrier_offset(ctx, lane, ctx.op(addr_at)?)? else { continue };
                if let Some(b) = ctx.block.ext.hopper.barriers.get(&off) {
                    phase_before.entry(off).or_insert((b.phase, lane));
                }
                let amount = match instr.operands.get(addr_at + 1) {
                    Some(op) => ctx.read(lane, op, Ty::U32)? as i64,
                    None => 1,
                };
                let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) else {
                    ctx.report(FindingKind::Mbarrier, Some(lane), format!("`{}` on shared offset {off:#x}, which no mbarrier.init initialized", instr.opcode));
                    continue;
                };
                let result = match verb {
                    "expect_tx" => b.expect_tx(amount).map(|()| None),
                    "complete_tx" => {
                        b.complete_tx(amount, &clock);
                        Ok(None)
                    }
                    "arrive_drop" => b.arrive_drop(&clock).map(Some),
                    _ if expect => b.arrive(1, amount, &clock).map(Some),
                    _ => b.arrive(amount, 0, &clock).map(Some),
                };
                match result {
                    Ok(Some(token)) => {
                        if let Some(op) = state_op {
                            ctx.write(lane, op, Ty::B64, token)?;
                        }
                    }
                    Ok(None) => {}
                    Err(h) => ctx.report(kind(&h), Some(lane), h.message),
                }
            }
            let mut over: Vec<(u32, u32, usize)> = phase_before
                .iter()
                .filter_map(|(off, (before, lane))| {
                    let b = ctx.block.ext.hopper.barriers.get(off)?;
                    (b.phase.wrapping_sub(*before) > 1).then_some((*off, b.phase.wrapping_sub(*before), *lane))
                })
                .collect();
            over.sort_unstable();
            for (off, phases, lane) in over {
                let init = ctx.block.ext.hopper.barriers.get(&off).map_or(0, |b| b.init_line);
                ctx.report(
                    FindingKind::Mbarrier,
                    Some(lane),
                    format!("one `{}` by several lanes completed {phases} phases of the mbarrier at shared offset {off:#x} (initialized at PTX line {init}): arrivals beyond its count", instr.opcode),
                );
            }
            // Accesses after the arrival are not ordered before the waiters.
            let w = ctx.warp.index;
            ctx.warp.clock[w] += 1;
            Ok(Flow::Next)
        }
        "test_wait" | "try_wait" => {
            let parity = instr.has("parity");
            let mut all = true;
            let mut done: Vec<(usize, bool, Option<u32>)> = Vec::new();
            for lane in lanes(exec) {
                let Some(off) = barrier_offset(ctx, lane, ctx.op(1)?)? else {
                    done.push((lane, true, None));
                    continue;
                };
                let arg = ctx.read(lane, ctx.op(2)?, Ty::B64)?;
                let check = |b: &Mbarrier| if parity { b.parity_complete(arg) } else { b.token_complete(arg) };
                let Some(b) = ctx.block.ext.hopper.barriers.get(&off) else {
                    ctx.report(FindingKind::Mbarrier, Some(lane), format!("`{}` on shared offset {off:#x}, which no mbarrier.init initialized", instr.opcode));
                    done.push((lane, true, None));
                    continue;
                };
                let mut ok = check(b);
                if !ok && !b.deferred.is_empty() {
                    // The latest point: the asynchronous work this barrier waits for lands now,
                    // because otherwise this wait could not succeed.
                    deliver(ctx, off)?;
                    ok = ctx.block.ext.hopper.barriers.get(&off).is_some_and(check);
                }
                all &= ok;
                done.push((lane, ok, Some(off)));
            }
            if !all && ctx.instr.mods.first().is_some_and(|m| m == "try_wait") {
                return Ok(Flow::Retry);
            }
            let w = ctx.warp.index;
            for (lane, ok, off) in done {
                ctx.write(lane, ctx.op(0)?, Ty::Pred, u64::from(ok))?;
                if let (true, Some(off)) = (ok, off) {
                    if let Some(b) = ctx.block.ext.hopper.barriers.get(&off) {
                        let acquired = b.completed_clock.clone();
                        for (mine, theirs) in ctx.warp.clock.iter_mut().zip(&acquired) {
                            *mine = (*mine).max(*theirs);
                        }
                    }
                }
            }
            ctx.warp.clock[w] += 1;
            Ok(if all { Flow::Next } else { Flow::Spin })
        }
        _ => Err(ctx.unknown()),
    }
}

/// Lands the asynchronous work deferred on the barrier at `off` (TMA loads: bytes, then
/// `complete_tx`), attributing each write to the warp that issued it, at its issue clock.
fn deliver(ctx: &mut Ctx<'_>, off: u32) -> EmuResult<()> {
    let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) else { return Ok(()) };
    let work = std::mem::take(&mut b.deferred);
    for item in work {
        match item {
            Deferred::TxLoad { op, shared, bytes, warp, clock } => {
                let (o, len) = (shared as usize, bytes.len());
                if o + len <= ctx.block.shared.len() {
                    ctx.block.shared[o..o + len].copy_from_slice(&bytes);
                    if let Some(sh) = ctx.block.shadow.as_mut() {
                        if let Some(c) = sh.write(o, len, warp, &clock, ctx.instr.line) {
                            let m = format!(
                                "{} lands on shared offset {:#x}, which warp {} accessed (PTX line {}) with nothing ordering the two",
                                ctx.block.ext.hopper.tracker.describe(op),
                                c.offset,
                                c.warp,
                                c.line
                            );
                            ctx.report(FindingKind::Race, None, m);
                        }
                    }
                }
                ctx.block.ext.hopper.tracker.end_async_write(op, shared, len as u32);
                if let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) {
                    b.complete_tx(len as i64, &clock);
                }
            }
            Deferred::CopiesThenArrive { copies, clock, .. } => {
                for c in copies {
                    let (o, len) = (c.shared as usize, c.bytes.len());
                    if o + len <= ctx.block.shared.len() {
                        ctx.block.shared[o..o + len].copy_from_slice(&c.bytes);
                    }
                    ctx.block.ext.hopper.tracker.end_async_write(c.op, c.shared, len as u32);
                }
                if let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) {
                    if let Err(h) = b.arrive(1, 0, &clock) {
                        ctx.report(kind(&h), None, h.message);
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// wgmma
// ---------------------------------------------------------------------------------------------

fn wgmma(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    if exec == 0 {
        return Ok(Flow::Next);
    }
    let w = ctx.warp.index;
    let verb = ctx.instr.mods.first().map(String::as_str).unwrap_or("");
    match verb {
        "fence" => {
            ctx.block.ext.hopper.wgmma.entry(w).or_default().fenced = true;
            Ok(Flow::Next)
        }
        "commit_group" => {
            ctx.block.ext.hopper.wgmma.entry(w).or_default().groups.commit();
            Ok(Flow::Next)
        }
        "wait_group" => {
            let keep = ctx.read(exec.trailing_zeros() as usize, ctx.op(0)?, Ty::U32)? as usize;
            let done = ctx.block.ext.hopper.wgmma.entry(w).or_default().groups.wait(keep);
            for p in done {
                complete_mma(ctx, w, p)?;
            }
            Ok(Flow::Next)
        }
        "mma_async" => mma_async(ctx, exec),
        _ => Err(ctx.unknown()),
    }
}

/// A register list operand `{%r1, ...}`.
fn reg_list(ctx: &Ctx<'_>, op: &Operand, what: &str) -> EmuResult<Vec<RegId>> {
    match op {
        Operand::Vec(items) => items
            .iter()
            .map(|o| match o {
                Operand::Reg(r) => Ok(*r),
                _ => Err(ctx.bad(format!("{what} must be a list of registers"))),
            })
            .collect(),
        _ => Err(ctx.bad(format!("{what} must be a list of registers"))),
    }
}

/// The value of an operand that must be the same in every lane (descriptors, immediates).
fn uniform(ctx: &Ctx<'_>, exec: LaneMask, op: &Operand, ty: Ty, what: &str) -> EmuResult<u64> {
    let first = ctx.read(exec.trailing_zeros() as usize, op, ty)?;
    for lane in lanes(exec) {
        if ctx.read(lane, op, ty)? != first {
            return Err(ctx.bad(format!("{what} differs between lanes (lane {lane}); it must be warp-uniform")));
        }
    }
    Ok(first)
}

fn mma_async(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let w = ctx.warp.index;
    let spec = WgmmaSpec::parse(&instr.opcode).map_err(|e| ctx.bad(e.to_string()))?;
    let d_regs = reg_list(ctx, ctx.op(0)?, "the accumulator operand d")?;
    if d_regs.len() != spec.d_registers() {
        return Err(ctx.bad(format!("{} accumulator registers, expected {}", d_regs.len(), spec.d_registers())));
    }
    let a_op = ctx.op(1)?;
    let a_regs = match a_op {
        Operand::Vec(_) => {
            let r = reg_list(ctx, a_op, "the A operand")?;
            if r.len() != 4 {
                return Err(ctx.bad(format!("{} A registers, expected 4", r.len())));
            }
            Some(r)
        }
        _ => None,
    };
    let a_desc = match a_regs {
        Some(_) => None,
        None => Some(uniform(ctx, exec, a_op, Ty::B64, "the A descriptor")?),
    };
    let b_desc = uniform(ctx, exec, ctx.op(2)?, Ty::B64, "the B descriptor")?;
    let scale_d = uniform(ctx, exec, ctx.op(3)?, Ty::Pred, "scale-d")? != 0;
    let imm = |ctx: &Ctx<'_>, k: usize| -> EmuResult<Option<i64>> {
        match instr.operands.get(k) {
            Some(op) => Ok(Some(uniform(ctx, exec, op, Ty::S64, "an immediate")? as i64)),
            None => Ok(None),
        }
    };
    let (scale_a, scale_b) = (imm(ctx, 4)?.unwrap_or(1), imm(ctx, 5)?.unwrap_or(1));
    let (trans_a, trans_b) = match (spec.a.bytes(), a_desc.is_some()) {
        (2, true) => (imm(ctx, 6)?, imm(ctx, 7)?),
        (2, false) => (None, imm(ctx, 6)?),
        _ => (None, None),
    };
    let ops = WgmmaOperands::from_immediates(&spec, scale_d, scale_a, scale_b, trans_a, trans_b).map_err(|e| ctx.bad(e.to_string()))?;
    let warp_in_group = w % 4;

    let st = &mut ctx.block.ext.hopper;
    let fenced = st.wgmma.entry(w).or_default().fenced;
    if !fenced {
        ctx.report(FindingKind::AsyncHazard, None, "wgmma.mma_async before any wgmma.fence in this warp (the accumulator and A registers are not ordered with the async proxy)");
    }

    // The shared operands: bounds, races with other warps, and the async proxy's view.
    let mut reads = Vec::new();
    if let Some(a) = a_desc {
        reads.extend(spec.a_reads(&ops, a, warp_in_group).map_err(|e| ctx.bad(e.to_string()))?);
    }
    reads.extend(spec.b_reads(&ops, b_desc).map_err(|e| ctx.bad(e.to_string()))?);
    let op = ctx.block.ext.hopper.tracker.op(AsyncOp { opcode: instr.opcode.clone(), line: instr.line, thread: ctx.thread(exec.trailing_zeros() as usize) });
    let shared_len = ctx.block.shared.len() as u64;
    let mut reported_oob = false;
    let mut reported_hazard = false;
    for &(addr, len) in &reads {
        if u64::from(addr) + u64::from(len) > shared_len {
            if !reported_oob {
                reported_oob = true;
                ctx.report(FindingKind::OutOfBounds, None, format!("wgmma operand element at shared offset {addr:#x} is outside the block's {shared_len} bytes of shared memory"));
            }
            continue;
        }
        if let Some(sh) = ctx.block.shadow.as_mut() {
            if let Some(c) = sh.read(addr as usize, len as usize, w, &ctx.warp.clock, instr.line) {
                let m = format!("wgmma reads shared offset {:#x} written by warp {} (PTX line {}) with nothing ordering them", c.offset, c.warp, c.line);
                ctx.report(FindingKind::Race, None, m);
            }
        }
        if let Some(h) = ctx.block.ext.hopper.tracker.begin_async_read(op, addr, len) {
            if !reported_hazard {
                reported_hazard = true;
                ctx.report(kind(&h), None, h.message);
            }
        }
    }

    // Registers: A (register form) and C, where a C register still in flight takes the value
    // of the newest wgmma writing it.
    let mut a_vals = vec![[0u32; 4]; WARP_SIZE];
    let mut a_snapshot = Vec::new();
    if let Some(regs) = &a_regs {
        for (k, r) in regs.iter().enumerate() {
            let mut v = [0u32; WARP_SIZE];
            for (lane, slot) in v.iter_mut().enumerate() {
                *slot = ctx.warp.reg(lane, *r) as u32;
                a_vals[lane][k] = *slot;
            }
            a_snapshot.push((*r, v));
        }
    }
    let state = ctx.block.ext.hopper.wgmma.entry(w).or_default();
    let mut d_vals = vec![vec![0u32; d_regs.len()]; WARP_SIZE];
    for (k, r) in d_regs.iter().enumerate() {
        let latest = state.latest.get(r).map(|(_, v)| *v);
        for (lane, lane_vals) in d_vals.iter_mut().enumerate() {
            lane_vals[k] = match latest {
                Some(v) => v[lane],
                None => ctx.warp.reg(lane, *r) as u32,
            };
        }
    }
    let accumulation = if spec.a == OperandType::E4m3 || spec.a == OperandType::E5m2 { ctx.block.ext.hopper.fp8_accumulation } else { Accumulation::Exact };
    let a = match a_desc {
        Some(bits) => WgmmaA::Descriptor(bits),
        None => WgmmaA::Registers(&a_vals),
    };
    let shared = &ctx.block.shared;
    let mut read = |addr: u32| -> Result<u8, crate::tensor_core::TensorCoreError> { Ok(shared.get(addr as usize).copied().unwrap_or(0)) };
    spec.execute_warp(&ops, warp_in_group, a, b_desc, &mut d_vals, accumulation, &mut read)
        .map_err(|e| ctx.bad(e.to_string()))?;

    let state = ctx.block.ext.hopper.wgmma.entry(w).or_default();
    for (k, r) in d_regs.iter().enumerate() {
        let mut v = [0u32; WARP_SIZE];
        for (lane, slot) in v.iter_mut().enumerate() {
            *slot = d_vals[lane][k];
        }
        state.latest.insert(*r, (op, v));
    }
    state.groups.issue(PendingMma { op, line: instr.line, opcode: instr.opcode.clone(), regs: d_regs.clone(), a_regs: a_snapshot, reads });
    for r in &d_regs {
        for lane in lanes(ctx.warp.live()) {
            ctx.warp.set_reg(lane, *r, u64::from(IN_FLIGHT));
        }
    }
    Ok(Flow::Next)
}

/// A wgmma reached its `wait_group`: its accumulators become visible (unless a newer wgmma in
/// flight writes them too), its shared operands are released, and changes made meanwhile to its
/// registers are reported.
fn complete_mma(ctx: &mut Ctx<'_>, w: usize, p: PendingMma) -> EmuResult<()> {
    let live = ctx.warp.live();
    let mut overwritten = None;
    for r in &p.regs {
        if lanes(live).any(|lane| ctx.warp.reg(lane, *r) as u32 != IN_FLIGHT) {
            overwritten = Some(*r);
        }
    }
    let mut a_changed = None;
    for (r, v) in &p.a_regs {
        if lanes(live).any(|lane| ctx.warp.reg(lane, *r) as u32 != v[lane]) {
            a_changed = Some(*r);
        }
    }
    let state = ctx.block.ext.hopper.wgmma.entry(w).or_default();
    let mut writes = Vec::new();
    for r in &p.regs {
        if state.latest.get(r).is_some_and(|(op, _)| *op == p.op) {
            if let Some((_, v)) = state.latest.remove(r) {
                writes.push((*r, v));
            }
        }
    }
    for (r, v) in writes {
        for lane in lanes(live) {
            ctx.warp.set_reg(lane, r, u64::from(v[lane]));
        }
    }
    for &(addr, len) in &p.reads {
        ctx.block.ext.hopper.tracker.end_async_read(p.op, addr, len);
    }
    if let Some(r) = overwritten {
        let m = format!("accumulator register {} of `{}` (PTX line {}) was written before the wgmma.wait_group that covers it", r.0, p.opcode, p.line);
        ctx.report(FindingKind::AsyncHazard, None, m);
    }
    if let Some(r) = a_changed {
        let m = format!("A register {} of `{}` (PTX line {}) changed before the wgmma.wait_group that covers it", r.0, p.opcode, p.line);
        ctx.report(FindingKind::AsyncHazard, None, m);
    }
    Ok(())
}

/// Checks at the end of a block: wgmma never waited for, transaction bytes that never arrived.
pub fn finish_block(prog: &Program<'_>, block: &mut super::BlockMem, findings: &mut Vec<Finding>) -> EmuResult<()> {
    if !prog.sanitize {
        return Ok(());
    }
    let push = |findings: &mut Vec<Finding>, kind: FindingKind, line: u32, opcode: String, message: String| {
        if findings.len() < super::MAX_FINDINGS {
            findings.push(Finding { kind, kernel: prog.kernel.name.clone(), block: block.geom.ctaid, line, opcode, thread: None, message });
        }
    };
    let st = &block.ext.hopper;
    let mut warps: Vec<_> = st.wgmma.iter().collect();
    warps.sort_by_key(|(w, _)| **w);
    for (w, state) in warps {
        if let Some(p) = state.groups.pending().next() {
            let n = state.groups.pending().count();
            push(findings, FindingKind::AsyncHazard, p.line, p.opcode.clone(), format!("{n} wgmma.mma_async of warp {w} never reached a wgmma.wait_group; their accumulators were never written"));
        }
    }
    let mut bars: Vec<_> = st.barriers.iter().collect();
    bars.sort_by_key(|(o, _)| **o);
    for (off, b) in bars {
        if b.tx > 0 {
            push(
                findings,
                FindingKind::Mbarrier,
                b.init_line,
                "mbarrier.init".into(),
                format!("mbarrier at shared offset {off:#x}: {} expected transaction bytes never arrived (phase {})", b.tx, b.phase),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_accumulators_read_as_nan_in_both_formats() {
        assert!(f32::from_bits(IN_FLIGHT).is_nan());
        assert!(half::f16::from_bits(IN_FLIGHT as u16).is_nan());
        assert!(half::f16::from_bits((IN_FLIGHT >> 16) as u16).is_nan());
    }
}
