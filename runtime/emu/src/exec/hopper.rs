//! Forwarding of the sm_90 asynchronous instructions: `mbarrier.*`, `wgmma.*`, bulk copies and
//! TMA (`cp.async.bulk{.tensor}`, their bulk groups), `cp.async.mbarrier.arrive` and the proxy
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
//! - TMA and bulk loads read global memory at issue and land (then `complete_tx`) only when a
//!   waiter of their mbarrier would otherwise block; each landing write is attributed to the
//!   issuing warp at its issue clock, so a refill not ordered after the consumers' reads races.
//!   Bulk stores read shared and write global memory at the `cp.async.bulk.wait_group` covering
//!   them. The tensor map is the emulator's own ([`crate::asynchrony::TensorMap`], 128 bytes in
//!   the kernel parameter), built from `cuTensorMapEncodeTiled`'s logical arguments.
//! - The async proxy (wgmma operands, TMA store sources) must not read shared bytes written
//!   through the generic proxy (`st.shared`, `stmatrix`) unless the writing warp executed
//!   `fence.proxy.async` in between, nor may it signal an mbarrier whose `mbarrier.init` was not
//!   followed by `fence.mbarrier_init`/`fence.proxy.async`: [`crate::asynchrony::SharedTracker`]
//!   follows every generic shared access on sm_90.

use std::collections::HashMap;

use super::{Ctx, Flow, Program, Space};
use crate::asynchrony::{
    AsyncOp, Deferred, Groups, Hazard, HazardKind, Mbarrier, OobFill, OpId, SharedTracker,
    TensorMap, TENSOR_MAP_BYTES,
};
use crate::error::EmuResult;
use crate::machine::{lanes, LaneMask, WARP_SIZE};
use crate::ptx::{Operand, RegId, Ty};
use crate::sanitizer::{Finding, FindingKind};
use crate::tensor_core::elements::Accumulation;
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

/// A bulk store (`cp.async.bulk{.tensor}` to global memory) in flight: it reads shared memory and
/// writes global memory when its bulk group is waited for.
#[derive(Debug, Clone)]
struct PendingStore {
    op: OpId,
    line: u32,
    opcode: String,
    lane: usize,
    /// Shared offset of the source.
    src: u32,
    /// Bytes of the source.
    total: u32,
    /// Each element's global address (None: outside the tensor, not written) and offset in the
    /// source.
    elements: Vec<(Option<u64>, u32)>,
    element_bytes: u32,
}

/// The block's sm_90 asynchronous state.
#[derive(Debug, Default)]
pub struct HopperState {
    /// Shared bytes as the generic and async proxies see them.
    pub tracker: SharedTracker,
    barriers: HashMap<u32, Mbarrier>,
    wgmma: HashMap<usize, WgmmaWarp>,
    /// Bulk groups (`cp.async.bulk.commit_group`) per warp.
    bulk: HashMap<usize, Groups<PendingStore>>,
    /// Per warpgroup, the order of its warps' `wgmma.mma_async` instructions.
    warpgroups: HashMap<usize, WarpgroupLog>,
}

/// The `wgmma.mma_async` instructions of one warpgroup's warps, for the `.aligned` check.
#[derive(Debug, Default)]
struct WarpgroupLog {
    /// How many each warp has issued.
    issued: [u64; 4],
    /// PTX line of the n-th instruction, and which warps have reached it (dropped once all have).
    lines: HashMap<u64, (u32, u8)>,
    /// Whether a group of fewer than 4 warps was reported.
    short_reported: bool,
}

impl HopperState {
    /// The block's mbarriers and what their current phases lack (arrivals, transaction bytes), for
    /// the deadlock report: what the waiting warps wait for. At most 8, by offset.
    pub fn describe_barriers(&self) -> Vec<String> {
        let mut bars: Vec<_> = self.barriers.iter().collect();
        bars.sort_by_key(|(o, _)| **o);
        bars.into_iter()
            .take(8)
            .map(|(off, b)| {
                format!(
                    "mbarrier at shared offset {off:#x} (initialized at PTX line {}): phase {} has {} of {} arrivals and {} transaction bytes outstanding",
                    b.init_line,
                    b.phase,
                    b.pending.max(0),
                    b.expected,
                    b.tx
                )
            })
            .collect()
    }

    /// A generic-proxy access of shared `[off, off+len)` by `warp` (its own vector-clock entry
    /// `clock_own`) at PTX `line` (called by the executor for every `ld`/`st` of shared memory on
    /// sm_90).
    pub fn generic_access(
        &mut self,
        off: usize,
        len: usize,
        write: bool,
        warp: usize,
        clock_own: u32,
        line: u32,
    ) -> Option<Hazard> {
        if write {
            self.tracker
                .generic_write(off as u32, len as u32, warp, clock_own, line)
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
        "cp" if ctx.instr.opcode.starts_with("cp.async.bulk") => bulk(ctx, exec),
        _ => Err(ctx.unknown()),
    }
}

/// `fence.proxy.async*` and `fence.mbarrier_init*`: the warp's earlier generic shared writes (and
/// the barriers it initialized) become visible to the async proxy.
pub fn fence(ctx: &mut Ctx<'_>) -> EmuResult<Flow> {
    let w = ctx.warp.index;
    let st = &mut ctx.block.ext.hopper;
    if ctx.instr.opcode.starts_with("fence.proxy.async") {
        st.tracker.fence_proxy_async(w, &ctx.warp.clock);
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
            format!(
                "mbarrier at {addr:#x} is not 8 bytes inside the block's {} bytes of shared memory",
                ctx.block.shared.len()
            ),
        );
        return Ok(None);
    }
    if off % 8 != 0 {
        return Err(ctx.bad(format!(
            "mbarrier at shared offset {off:#x} is not 8-byte aligned"
        )));
    }
    Ok(Some(off as u32))
}

fn mbarrier(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let verb = instr.mods.first().map(String::as_str).unwrap_or("");
    if exec != 0 && !matches!(verb, "test_wait" | "try_wait") {
        // A changed barrier can unblock another warp: the executor counts it as progress.
        ctx.block.stores += 1;
    }
    match verb {
        "init" => {
            for lane in lanes(exec) {
                let Some(off) = barrier_offset(ctx, lane, ctx.op(0)?)? else {
                    continue;
                };
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
                let Some(off) = barrier_offset(ctx, lane, ctx.op(0)?)? else {
                    continue;
                };
                if ctx
                    .block
                    .ext
                    .hopper
                    .barriers
                    .remove(&off)
                    .is_some_and(|b| !b.deferred.is_empty())
                {
                    ctx.report(FindingKind::Mbarrier, Some(lane), format!("mbarrier at shared offset {off:#x} invalidated with asynchronous work still signalling it"));
                }
            }
            Ok(Flow::Next)
        }
        "arrive" | "arrive_drop" | "expect_tx" | "complete_tx" => {
            let expect = instr.has("expect_tx");
            let (addr_at, state_op) = if verb == "expect_tx" || verb == "complete_tx" {
                (0, None)
            } else {
                (1, Some(ctx.op(0)?))
            };
            let clock = ctx.warp.clock.clone();
            // Phases each barrier was in before this instruction: lanes of one warp arriving on a
            // barrier that expects fewer arrivals complete several phases in one instruction,
            // the usual form of "arrivals beyond the count" (a missing elect/lane-0 guard).
            let mut phase_before: HashMap<u32, (u32, usize)> = HashMap::new();
            for lane in lanes(exec) {
                let Some(off) = barrier_offset(ctx, lane, ctx.op(addr_at)?)? else {
                    continue;
                };
                if let Some(b) = ctx.block.ext.hopper.barriers.get(&off) {
                    phase_before.entry(off).or_insert((b.phase, lane));
                }
                let amount = match instr.operands.get(addr_at + 1) {
                    Some(op) => ctx.read(lane, op, Ty::U32)? as i64,
                    None => 1,
                };
                let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) else {
                    ctx.report(
                        FindingKind::Mbarrier,
                        Some(lane),
                        format!(
                            "`{}` on shared offset {off:#x}, which no mbarrier.init initialized",
                            instr.opcode
                        ),
                    );
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
                    (b.phase.wrapping_sub(*before) > 1).then_some((
                        *off,
                        b.phase.wrapping_sub(*before),
                        *lane,
                    ))
                })
                .collect();
            over.sort_unstable();
            for (off, phases, lane) in over {
                let init = ctx
                    .block
                    .ext
                    .hopper
                    .barriers
                    .get(&off)
                    .map_or(0, |b| b.init_line);
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
                let check = |b: &Mbarrier| {
                    if parity {
                        b.parity_complete(arg)
                    } else {
                        b.token_complete(arg)
                    }
                };
                let Some(b) = ctx.block.ext.hopper.barriers.get(&off) else {
                    ctx.report(
                        FindingKind::Mbarrier,
                        Some(lane),
                        format!(
                            "`{}` on shared offset {off:#x}, which no mbarrier.init initialized",
                            instr.opcode
                        ),
                    );
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
    let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) else {
        return Ok(());
    };
    let work = std::mem::take(&mut b.deferred);
    ctx.block.stores += work.len() as u64;
    for item in work {
        match item {
            Deferred::TxLoad {
                op,
                shared,
                bytes,
                warp,
                clock,
            } => {
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
                ctx.block
                    .ext
                    .hopper
                    .tracker
                    .end_async_write(op, shared, len as u32);
                if let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) {
                    b.complete_tx(len as i64, &clock);
                }
            }
        }
    }
    Ok(())
}

/// `cp.async.mbarrier.arrive{.noinc}.shared{::cta}.b64 [mbar]` after the executing threads'
/// prior `cp.async` copies landed (the caller lands them): without `.noinc` the instruction
/// raises the phase's pending count by one and the asynchronous arrival lowers it again, so only
/// the ordering (the clock) is released; with `.noinc` the arrival counts against the count
/// given to `mbarrier.init`.
pub fn cp_async_arrive(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let noinc = ctx.instr.has("noinc");
    ctx.block.stores += u64::from(exec != 0);
    let clock = ctx.warp.clock.clone();
    for lane in lanes(exec) {
        let Some(off) = barrier_offset(ctx, lane, ctx.op(0)?)? else {
            continue;
        };
        let Some(b) = ctx.block.ext.hopper.barriers.get_mut(&off) else {
            ctx.report(
                FindingKind::Mbarrier,
                Some(lane),
                format!(
                    "`{}` on shared offset {off:#x}, which no mbarrier.init initialized",
                    ctx.instr.opcode
                ),
            );
            continue;
        };
        if noinc {
            if let Err(h) = b.arrive(1, 0, &clock) {
                ctx.report(kind(&h), Some(lane), h.message);
            }
        } else {
            b.phase_clock_join(&clock);
        }
    }
    let w = ctx.warp.index;
    ctx.warp.clock[w] += 1;
    Ok(Flow::Next)
}

// ---------------------------------------------------------------------------------------------
// Bulk copies and TMA
// ---------------------------------------------------------------------------------------------

/// The shared offset an address operand of a `.shared::cta`/`.shared::cluster` operand names
/// (a symbol's own space, else a shared address as the state space says), or None (reported)
/// when outside shared memory.
fn shared_offset(ctx: &mut Ctx<'_>, lane: usize, op: &Operand, len: u64) -> EmuResult<Option<u32>> {
    let (sym_space, addr) = ctx.address(lane, op)?;
    let (space, off) = ctx.resolve(sym_space.unwrap_or(Space::Shared), addr);
    let shared = ctx.block.shared.len() as u64;
    if !matches!(space, Space::Shared | Space::SharedCluster) || off + len > shared {
        ctx.report(
            FindingKind::OutOfBounds,
            Some(lane),
            format!("`{}`: {len} shared bytes at {addr:#x} are not inside the block's {shared} bytes of shared memory", ctx.instr.opcode),
        );
        return Ok(None);
    }
    Ok(Some(off as u32))
}

/// The emulator tensor map a `[tensorMap, {coords}]` operand names, and its coordinates.
fn tensor_operand(
    ctx: &mut Ctx<'_>,
    lane: usize,
    op: &Operand,
) -> EmuResult<(TensorMap, Vec<i64>)> {
    let Operand::Vec(items) = op else {
        return Err(ctx.bad("expected a tensor operand [tensorMap, {c0, ...}]"));
    };
    let (Some(map_op), Some(Operand::Vec(coords))) = (items.first(), items.get(1)) else {
        return Err(ctx.bad("expected a tensor operand [tensorMap, {c0, ...}]"));
    };
    let (sym_space, addr) = ctx.address(lane, map_op)?;
    let mut bytes = [0u8; TENSOR_MAP_BYTES];
    ctx.load(lane, sym_space.unwrap_or(Space::Generic), addr, &mut bytes)?;
    let map = TensorMap::decode(&bytes).map_err(|e| ctx.bad(e.to_string()))?;
    let mut c = Vec::with_capacity(coords.len());
    for op in coords {
        c.push(ctx.read(lane, op, Ty::S32)? as u32 as i32 as i64);
    }
    if c.len() != map.rank() {
        return Err(ctx.bad(format!(
            "{} coordinates for a tensor map of rank {}",
            c.len(),
            map.rank()
        )));
    }
    Ok((map, c))
}

fn bulk(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let w = ctx.warp.index;
    if instr.has("prefetch") {
        return Ok(Flow::Next);
    }
    if instr.has("commit_group") {
        if exec != 0 {
            ctx.block.ext.hopper.bulk.entry(w).or_default().commit();
        }
        return Ok(Flow::Next);
    }
    if instr.has("wait_group") {
        if exec == 0 {
            return Ok(Flow::Next);
        }
        // `.read` only promises the sources were read; completing the writes too is allowed
        // (earlier than the latest point, which for global writes would be the end of the grid).
        let keep = ctx.read(exec.trailing_zeros() as usize, ctx.op(0)?, Ty::U32)? as usize;
        let done = ctx.block.ext.hopper.bulk.entry(w).or_default().wait(keep);
        for p in done {
            complete_store(ctx, p)?;
        }
        return Ok(Flow::Next);
    }
    // The destination's state space comes first among the modifiers.
    let to_shared = instr
        .mods
        .iter()
        .find_map(|m| Space::from_mod(m))
        .is_some_and(|s| matches!(s, Space::Shared | Space::SharedCluster));
    let tensor = instr.has("tensor");
    ctx.block.stores += u64::from(exec != 0);
    // Only the tile mode within one CTA is modelled: im2col boxes and multicast to a cluster are
    // unknown instructions, never silently wrong ones.
    if instr
        .mods
        .iter()
        .any(|m| m.starts_with("im2col") || m.starts_with("multicast"))
    {
        return Err(ctx.unknown());
    }
    for lane in lanes(exec) {
        if to_shared {
            bulk_load(ctx, lane, tensor)?;
        } else {
            bulk_store(ctx, lane, tensor)?;
        }
    }
    Ok(Flow::Next)
}

/// `cp.async.bulk{.tensor}` global → shared with `mbarrier::complete_tx::bytes`: reads global
/// memory now (so out-of-bounds reads are reported here), lands at the latest point.
fn bulk_load(ctx: &mut Ctx<'_>, lane: usize, tensor: bool) -> EmuResult<()> {
    let instr = ctx.instr;
    if !instr
        .mods
        .iter()
        .any(|m| m.starts_with("mbarrier::complete_tx"))
    {
        return Err(ctx.unknown());
    }
    let (bytes, mbar_op) = if tensor {
        let (map, coords) = tensor_operand(ctx, lane, ctx.op(1)?)?;
        let (_, dst_addr) = ctx.address(lane, ctx.op(0)?)?;
        if dst_addr % 128 != 0 {
            return Err(ctx.bad(format!(
                "TMA destination {dst_addr:#x} is not 128-byte aligned"
            )));
        }
        // Offsets depend on the absolute shared address (the swizzle), so resolve it first.
        let Some(dst) = shared_offset(ctx, lane, ctx.op(0)?, map.box_bytes())? else {
            return Ok(());
        };
        let eb = map.element_bytes as usize;
        let fill = if map.oob_fill == OobFill::Nan {
            0xff
        } else {
            0
        };
        let mut bytes = vec![fill; map.box_bytes() as usize];
        let elements = map
            .box_elements(&coords, dst)
            .map_err(|e| ctx.bad(e.to_string()))?;
        for (global, off) in elements {
            let off = off as usize;
            if off + eb > bytes.len() {
                continue;
            }
            match global {
                Some(g) => ctx.load(lane, Space::Global, g, &mut bytes[off..off + eb])?,
                None => bytes[off..off + eb].fill(fill),
            }
        }
        (bytes, ctx.op(2)?)
    } else {
        let size = ctx.read(lane, ctx.op(2)?, Ty::U32)?;
        if size % 16 != 0 {
            return Err(ctx.bad(format!("bulk copy size {size} is not a multiple of 16")));
        }
        let (sym_space, src) = ctx.address(lane, ctx.op(1)?)?;
        let mut bytes = vec![0u8; size as usize];
        ctx.load(lane, sym_space.unwrap_or(Space::Global), src, &mut bytes)?;
        (bytes, ctx.op(3)?)
    };
    let Some(dst) = shared_offset(ctx, lane, ctx.op(0)?, bytes.len() as u64)? else {
        return Ok(());
    };
    let Some(bar) = barrier_offset(ctx, lane, mbar_op)? else {
        return Ok(());
    };
    let thread = ctx.thread(lane);
    let w = ctx.warp.index;
    let clock = ctx.warp.clock.clone();
    let st = &mut ctx.block.ext.hopper;
    let op = st.tracker.op(AsyncOp {
        opcode: instr.opcode.clone(),
        line: instr.line,
        thread,
    });
    if let Some(h) = st.tracker.begin_async_write(op, dst, bytes.len() as u32) {
        ctx.report(kind(&h), Some(lane), h.message);
    }
    let st = &mut ctx.block.ext.hopper;
    let Some(b) = st.barriers.get_mut(&bar) else {
        ctx.report(FindingKind::Mbarrier, Some(lane), format!("completes transactions on shared offset {bar:#x}, which no mbarrier.init initialized"));
        return Ok(());
    };
    let unfenced = !b.init_fenced;
    let init_line = b.init_line;
    b.deferred.push(Deferred::TxLoad {
        op,
        shared: dst,
        bytes,
        warp: w,
        clock,
    });
    if unfenced {
        ctx.report(
            FindingKind::AsyncHazard,
            Some(lane),
            format!("the async proxy signals the mbarrier at shared offset {bar:#x}, initialized at PTX line {init_line} with no fence.mbarrier_init or fence.proxy.async after it"),
        );
    }
    Ok(())
}

/// `cp.async.bulk{.tensor}` shared → global with `.bulk_group`: checks the source against the
/// generic proxy now, reads and writes at the covering `cp.async.bulk.wait_group`.
fn bulk_store(ctx: &mut Ctx<'_>, lane: usize, tensor: bool) -> EmuResult<()> {
    let instr = ctx.instr;
    if !instr.has("bulk_group") {
        return Err(ctx.unknown());
    }
    let (elements, element_bytes, total) = if tensor {
        let (map, coords) = tensor_operand(ctx, lane, ctx.op(0)?)?;
        let (_, src_addr) = ctx.address(lane, ctx.op(1)?)?;
        if src_addr % 128 != 0 {
            return Err(ctx.bad(format!("TMA source {src_addr:#x} is not 128-byte aligned")));
        }
        let Some(src) = shared_offset(ctx, lane, ctx.op(1)?, map.box_bytes())? else {
            return Ok(());
        };
        let elements = map
            .box_elements(&coords, src)
            .map_err(|e| ctx.bad(e.to_string()))?;
        (elements, map.element_bytes, map.box_bytes() as u32)
    } else {
        let size = ctx.read(lane, ctx.op(2)?, Ty::U32)? as u32;
        if size % 16 != 0 {
            return Err(ctx.bad(format!("bulk copy size {size} is not a multiple of 16")));
        }
        let (sym_space, dst) = ctx.address(lane, ctx.op(0)?)?;
        let (_, dst) = ctx.resolve(sym_space.unwrap_or(Space::Global), dst);
        (vec![(Some(dst), 0)], size, size)
    };
    let Some(src) = shared_offset(ctx, lane, ctx.op(1)?, u64::from(total))? else {
        return Ok(());
    };
    let thread = ctx.thread(lane);
    let w = ctx.warp.index;
    let op = ctx.block.ext.hopper.tracker.op(AsyncOp {
        opcode: instr.opcode.clone(),
        line: instr.line,
        thread,
    });
    if let Some(h) = ctx
        .block
        .ext
        .hopper
        .tracker
        .begin_async_read(op, src, total)
    {
        ctx.report(kind(&h), Some(lane), h.message);
    }
    if let Some(sh) = ctx.block.shadow.as_mut() {
        if let Some(c) = sh.read(src as usize, total as usize, w, &ctx.warp.clock, instr.line) {
            let m = format!("bulk store reads shared offset {:#x} written by warp {} (PTX line {}) with nothing ordering them", c.offset, c.warp, c.line);
            ctx.report(FindingKind::Race, Some(lane), m);
        }
    }
    let p = PendingStore {
        op,
        line: instr.line,
        opcode: instr.opcode.clone(),
        lane,
        src,
        total,
        elements,
        element_bytes,
    };
    ctx.block.ext.hopper.bulk.entry(w).or_default().issue(p);
    Ok(())
}

/// A bulk store's group was waited for: it reads its source as it is now and writes global memory.
fn complete_store(ctx: &mut Ctx<'_>, p: PendingStore) -> EmuResult<()> {
    let eb = p.element_bytes as usize;
    for (global, off) in &p.elements {
        let Some(g) = global else { continue };
        let at = p.src as usize + *off as usize;
        let Some(bytes) = ctx.block.shared.get(at..at + eb).map(<[u8]>::to_vec) else {
            continue;
        };
        ctx.store(p.lane, Space::Global, *g, &bytes)?;
    }
    ctx.block
        .ext
        .hopper
        .tracker
        .end_async_read(p.op, p.src, p.total);
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
            ctx.block
                .ext
                .hopper
                .wgmma
                .entry(w)
                .or_default()
                .groups
                .commit();
            Ok(Flow::Next)
        }
        "wait_group" => {
            let keep = ctx.read(exec.trailing_zeros() as usize, ctx.op(0)?, Ty::U32)? as usize;
            let done = ctx
                .block
                .ext
                .hopper
                .wgmma
                .entry(w)
                .or_default()
                .groups
                .wait(keep);
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
            return Err(ctx.bad(format!(
                "{what} differs between lanes (lane {lane}); it must be warp-uniform"
            )));
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
        return Err(ctx.bad(format!(
            "{} accumulator registers, expected {}",
            d_regs.len(),
            spec.d_registers()
        )));
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
    let ops = WgmmaOperands::from_immediates(&spec, scale_d, scale_a, scale_b, trans_a, trans_b)
        .map_err(|e| ctx.bad(e.to_string()))?;
    let warp_in_group = w % 4;
    check_warpgroup_order(ctx, w);

    let st = &mut ctx.block.ext.hopper;
    let fenced = st.wgmma.entry(w).or_default().fenced;
    if !fenced {
        ctx.report(FindingKind::AsyncHazard, None, "wgmma.mma_async before any wgmma.fence in this warp (the accumulator and A registers are not ordered with the async proxy)");
    }

    // The shared operands: bounds, races with other warps, and the async proxy's view.
    let mut reads = Vec::new();
    if let Some(a) = a_desc {
        reads.extend(
            spec.a_reads(&ops, a, warp_in_group)
                .map_err(|e| ctx.bad(e.to_string()))?,
        );
    }
    reads.extend(
        spec.b_reads(&ops, b_desc)
            .map_err(|e| ctx.bad(e.to_string()))?,
    );
    let op = ctx.block.ext.hopper.tracker.op(AsyncOp {
        opcode: instr.opcode.clone(),
        line: instr.line,
        thread: ctx.thread(exec.trailing_zeros() as usize),
    });
    // Element reads merged into byte ranges: the checks below cost per range, not per element.
    reads.sort_unstable();
    let mut ranges: Vec<(u32, u32)> = Vec::with_capacity(reads.len() / 8 + 1);
    for (addr, len) in reads {
        match ranges.last_mut() {
            Some((a, l)) if *a + *l >= addr => *l = (*l).max(addr + len - *a),
            _ => ranges.push((addr, len)),
        }
    }
    let reads = ranges;
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
    let accumulation = if spec.a.bytes() == 1 {
        ctx.prog.fp8_accumulation
    } else {
        Accumulation::Exact
    };
    let a = match a_desc {
        Some(bits) => WgmmaA::Descriptor(bits),
        None => WgmmaA::Registers(&a_vals),
    };
    let shared = &ctx.block.shared;
    let mut read = |addr: u32| -> Result<u8, crate::tensor_core::TensorCoreError> {
        Ok(shared.get(addr as usize).copied().unwrap_or(0))
    };
    spec.execute_warp(
        &ops,
        warp_in_group,
        a,
        b_desc,
        &mut d_vals,
        accumulation,
        &mut read,
    )
    .map_err(|e| ctx.bad(e.to_string()))?;

    let state = ctx.block.ext.hopper.wgmma.entry(w).or_default();
    for (k, r) in d_regs.iter().enumerate() {
        let mut v = [0u32; WARP_SIZE];
        for (lane, slot) in v.iter_mut().enumerate() {
            *slot = d_vals[lane][k];
        }
        state.latest.insert(*r, (op, v));
    }
    state.groups.issue(PendingMma {
        op,
        line: instr.line,
        opcode: instr.opcode.clone(),
        regs: d_regs.clone(),
        a_regs: a_snapshot,
        reads,
    });
    for r in &d_regs {
        for lane in lanes(ctx.warp.live()) {
            ctx.warp.set_reg(lane, *r, u64::from(IN_FLIGHT));
        }
    }
    Ok(Flow::Next)
}

/// `wgmma.mma_async` is `.aligned` over the warpgroup: the n-th one each of its four warps
/// executes must be the same instruction. Each warp runs its share separately here, so the
/// order is compared across the warps of the group.
fn check_warpgroup_order(ctx: &mut Ctx<'_>, w: usize) {
    let (group, member) = (w / 4, w % 4);
    let warps_in_group = ctx.block.geom.warps().saturating_sub(4 * group).min(4);
    let line = ctx.instr.line;
    let log = ctx.block.ext.hopper.warpgroups.entry(group).or_default();
    if warps_in_group < 4 {
        if !log.short_reported {
            log.short_reported = true;
            let m = format!("wgmma.mma_async needs a whole warpgroup of 4 warps; warpgroup {group} of this block has {warps_in_group}");
            ctx.report(FindingKind::Other, None, m);
        }
        return;
    }
    let index = log.issued[member];
    log.issued[member] += 1;
    let entry = log.lines.entry(index).or_insert((line, 0));
    let other = entry.0;
    entry.1 |= 1 << member;
    if entry.1 == 0b1111 {
        log.lines.remove(&index);
    }
    if other != line {
        let m = format!(
            "wgmma.mma_async is .aligned over the warpgroup, but wgmma number {index} of warp {w} is at PTX line {line} and another warp of warpgroup {group} executed PTX line {other} there"
        );
        ctx.report(FindingKind::Other, None, m);
    }
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
        // The operands may be read as late as this wait: recording the read again at the warp's
        // current clock makes a later write (a TMA refilling the slot) race with it unless this
        // wait is ordered before that write (e.g. by the empty-slot mbarrier arrival after it).
        if let Some(sh) = ctx.block.shadow.as_mut() {
            if let Some(c) = sh.read(addr as usize, len as usize, w, &ctx.warp.clock, p.line) {
                let m = format!("`{}` (PTX line {}) reads shared offset {:#x} written by warp {} (PTX line {}) with nothing ordering them", p.opcode, p.line, c.offset, c.warp, c.line);
                ctx.report(FindingKind::Race, None, m);
            }
        }
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
pub fn finish_block(
    prog: &Program<'_>,
    block: &mut super::BlockMem,
    findings: &mut Vec<Finding>,
) -> EmuResult<()> {
    if !prog.sanitize {
        return Ok(());
    }
    let push = |findings: &mut Vec<Finding>,
                kind: FindingKind,
                line: u32,
                opcode: String,
                message: String| {
        if findings.len() < super::MAX_FINDINGS {
            findings.push(Finding {
                kind,
                kernel: prog.kernel.name.clone(),
                block: block.geom.ctaid,
                line,
                opcode,
                thread: None,
                message,
            });
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
    let mut bulk: Vec<_> = st.bulk.iter().collect();
    bulk.sort_by_key(|(w, _)| **w);
    for (w, groups) in bulk {
        if let Some(p) = groups.pending().next() {
            let n = groups.pending().count();
            push(findings, FindingKind::AsyncHazard, p.line, p.opcode.clone(), format!("{n} bulk store(s) of warp {w} never reached a cp.async.bulk.wait_group; their global writes were dropped"));
        }
    }
    let mut bars: Vec<_> = st.barriers.iter().collect();
    bars.sort_by_key(|(o, _)| **o);
    for (off, b) in bars {
        if let Some(Deferred::TxLoad { op, .. }) = b.deferred.first() {
            push(
                findings,
                FindingKind::Mbarrier,
                b.init_line,
                "mbarrier.init".into(),
                format!("mbarrier at shared offset {off:#x}: {} (and {} more) signals it but nobody waited for it; its data never landed", st.tracker.describe(*op), b.deferred.len() - 1),
            );
        } else if b.tx > 0 {
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
