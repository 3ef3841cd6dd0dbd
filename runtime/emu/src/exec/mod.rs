//! The executor: runs one block (CTA) of a kernel to completion, warp by warp.
//!
//! # Scheduling
//! Warps of a block are interleaved: a warp runs until it waits (a block barrier, a failed
//! blocking wait), polls memory (a volatile or acquiring load), exits or has run 4096
//! instructions, then the next warp runs. Inside a warp, the lanes whose next instruction comes
//! first in the control-flow order of [`reconverge`] run together (see [`crate::machine`] for
//! why this reconverges). A round in which no warp makes progress (every warp waits, re-polls
//! an unchanged location or retries a failed wait, and nothing is stored) is a deadlock, and the
//! error says where each warp waits.
//!
//! # EXTENSION POINT
//! Tensor-core and asynchronous instructions are executed outside this file: `extension.rs`
//! gathers per-lane registers for the pure functions of [`crate::tensor_core`] (`mma.sync`,
//! `ldmatrix`, `stmatrix`) and runs `cp.async` and `elect`; `setmaxnreg.rs` checks `setmaxnreg`; `hopper.rs` runs the
//! sm_90 units (mbarriers, `wgmma`, TMA and bulk copies, proxy fences) over the state of
//! [`crate::asynchrony`]. The executor forwards every instruction whose opcode starts with `mma`, `ldmatrix`,
//! `stmatrix`, `wgmma`, `cp.async`, `mbarrier`, `fence.proxy`, `elect` or `setmaxnreg` to
//! `extension::execute` (a private module of this one), with this signature:
//!
//! ```text
//! fn execute(ctx: &mut Ctx<'_>, group: LaneMask, exec: LaneMask) -> EmuResult<Flow>
//! ```
//!
//! - `ctx` is the warp's view of the machine for this one instruction: `ctx.instr` (the parsed
//!   instruction: `head`, `mods`, `types`, `operands`), `ctx.warp` (registers: `reg(lane, r)`,
//!   `set_reg`), `ctx.block` (the block's shared memory, barrier and extension state
//!   `ctx.block.ext`), global memory, the parameters, and helpers that evaluate operands
//!   ([`Ctx::read`], [`Ctx::write`], [`Ctx::address`]) and access memory *through the sanitizer*
//!   ([`Ctx::load`], [`Ctx::store`] with a [`Space`]); errors come from [`Ctx::bad`].
//! - `group` is the lanes at this instruction; the executor has already checked that a
//!   `.aligned` instruction's group is the whole warp (warpgroup-scoped instructions see each
//!   warp's call separately, warp index `ctx.warp.index`). `exec` is `group` minus lanes whose
//!   guard predicate is false.
//! - The result says how to continue: [`Flow::Next`] (the group moves on),
//!   [`Flow::Retry`] (the instruction did not complete, e.g. a blocking wait whose condition is
//!   not met: the warp yields and re-executes it later; if every warp only retries, that is a
//!   deadlock), [`Flow::Spin`] (completed, but observed an unmet condition, e.g.
//!   `mbarrier.try_wait` returning false: the warp yields so others can make progress).
//!
//! Until a form is implemented there, it is an "unknown instruction" error.

mod extension;
mod float;
mod hopper;
mod int;
mod mem;
pub mod reconverge;
mod setmaxnreg;
mod warp;

use std::collections::HashMap;

use crate::error::{EmuError, EmuResult};
use crate::machine::{
    lanes, Geometry, LaneMask, Wait, Warp, LOCAL_WINDOW, PARAM_WINDOW, SHARED_WINDOW, WARP_SIZE,
    WINDOW_SIZE,
};
use crate::memory::GlobalMemory;
use crate::ptx::{AddrBase, Function, Instr, LaneMaskKind, Operand, Special, Ty};
use crate::sanitizer::{Finding, FindingKind, SharedShadow};

pub use crate::ptx::Space;

/// How the warp continues after an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Done; the group moves to the next instruction.
    Next,
    /// Done; the group moves to instruction `target`.
    Jump(usize),
    /// Not done; re-execute later, after other warps ran.
    Retry,
    /// Done, but it observed an unmet condition: let other warps run.
    Spin,
    /// The group waits at a block barrier (set by `bar.sync`).
    Barrier,
}

/// Where a symbol lives, once a launch has laid out memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymAddr {
    /// Offset in the parameter buffer.
    Param(u32),
    /// Offset in the block's shared memory.
    Shared(u32),
    /// A global address.
    Global(u64),
    /// Offset in each thread's local memory.
    Local(u32),
}

/// A shared variable's place, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedVar {
    /// Its name.
    pub name: String,
    /// Offset in shared memory.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// What every block of a launch shares: the kernel, its symbols and geometry.
#[derive(Debug)]
pub struct Program<'a> {
    /// The kernel.
    pub kernel: &'a Function,
    /// Symbol addresses.
    pub syms: HashMap<String, SymAddr>,
    /// Shared variables in layout order.
    pub shared_vars: Vec<SharedVar>,
    /// Bytes of shared memory per block (static + dynamic).
    pub shared_bytes: usize,
    /// Bytes of local memory per thread.
    pub local_bytes: usize,
    /// The parameter buffer.
    pub params: Vec<u8>,
    /// The SM version executing (80 for sm_80, 90 for sm_90a).
    pub sm: u32,
    /// Whether the sanitizer runs.
    pub sanitize: bool,
    /// How fp8 wgmma sums its products.
    pub fp8_accumulation: crate::tensor_core::Accumulation,
    /// Scheduling priority of each instruction (see [`reconverge`]).
    pub priority: Vec<u32>,
}

/// Executed warp-instructions by class: a dynamic profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// Counts by class name (e.g. `ld.global`, `fma.f32`, `mma`).
    pub counts: HashMap<String, u64>,
    /// Total warp-instructions.
    pub total: u64,
    /// Nanoseconds spent executing each class, when the launch asked for timing
    /// ([`crate::LaunchConfig::time_classes`]); empty otherwise.
    pub nanos: HashMap<String, u64>,
}

/// A named block barrier's state.
#[derive(Clone, Debug, Default)]
pub struct BarrierState {
    /// Threads that arrived without waiting (`bar.arrive`).
    pub arrived: u32,
    /// The join of the arrivers' clocks.
    pub clock: Vec<u32>,
    /// `bar.red` in this phase: the operation (`popc`, `and`, `or`) and the value so far.
    pub reduction: Option<(String, u32)>,
}

/// The state of one block besides its warps.
#[derive(Debug)]
pub struct BlockMem {
    /// `%ctaid` and launch sizes.
    pub geom: Geometry,
    /// Shared memory bytes.
    pub shared: Vec<u8>,
    /// Race shadow (with the sanitizer on).
    pub shadow: Option<SharedShadow>,
    /// Named barriers 0..16.
    pub barriers: Vec<BarrierState>,
    /// State of the extension (tensor-core / asynchronous units).
    pub ext: extension::BlockExt,
    /// Stores and atomics so far: a round of the scheduler in which it does not change and every
    /// warp only spins or waits has made no progress.
    pub stores: u64,
    /// Release clocks of shared locations used for synchronization (volatile, atomic, acquire
    /// and release accesses), by shared offset.
    pub sync_clocks: HashMap<u64, Vec<u32>>,
    /// The shared-memory accesses of the instruction executing now, lane by lane, for the bank
    /// model ([`crate::banks`]); tallied per instruction when it completes.
    pub bank_lanes: Vec<crate::banks::LaneAccess>,
}

/// Limits of a run.
#[derive(Debug)]
pub struct Limits<'a> {
    /// Warp-instructions left.
    pub budget: u64,
    /// The budget as given, for the error.
    pub budget_total: u64,
    /// Set to cancel.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
    /// Nanoseconds per instruction index, when timing classes (else empty).
    pub nanos: Vec<u64>,
    /// Register files of finished blocks, reused by the next ones (a fresh allocation costs a
    /// page fault per page on its first writes, which showed as most of a small block's time).
    pub register_files: Vec<Vec<u64>>,
    /// Shared-memory wavefronts per instruction index (empty until the first shared access).
    pub banks: Vec<crate::banks::SharedAccessStats>,
}

/// The machine as one warp sees it while executing one instruction.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The launch.
    pub prog: &'a Program<'a>,
    /// The instruction.
    pub instr: &'a Instr,
    /// Its index in the kernel body.
    pub pc: usize,
    /// The warp.
    pub warp: &'a mut Warp,
    /// The block.
    pub block: &'a mut BlockMem,
    /// Global memory.
    pub global: &'a mut GlobalMemory,
    /// Sanitizer findings.
    pub findings: &'a mut Vec<Finding>,
}

/// At most this many findings are kept (a broken kernel would otherwise report millions).
pub const MAX_FINDINGS: usize = 64;

impl<'a> Ctx<'a> {
    /// An error about this instruction.
    pub fn bad(&self, message: impl Into<String>) -> EmuError {
        EmuError::BadInstruction {
            kernel: self.prog.kernel.name.clone(),
            line: self.instr.line,
            opcode: self.instr.opcode.clone(),
            message: message.into(),
        }
    }

    /// "unknown instruction" for this instruction.
    pub fn unknown(&self) -> EmuError {
        EmuError::UnknownInstruction {
            kernel: self.prog.kernel.name.clone(),
            line: self.instr.line,
            opcode: self.instr.opcode.clone(),
        }
    }

    /// Operand `k` of the instruction.
    pub fn op(&self, k: usize) -> EmuResult<&'a Operand> {
        let instr: &'a Instr = self.instr;
        instr.operands.get(k).ok_or_else(|| {
            self.bad(format!(
                "expected at least {} operands, found {}",
                k + 1,
                instr.operands.len()
            ))
        })
    }

    /// Thread index in the block of `lane`.
    pub fn thread(&self, lane: usize) -> u32 {
        (self.warp.index * WARP_SIZE + lane) as u32
    }

    /// The value of a special register in `lane`.
    pub fn special(&self, lane: usize, s: Special) -> u64 {
        let g = &self.block.geom;
        let t = g.tid(self.thread(lane));
        let bit = 1u64 << lane;
        match s {
            Special::Tid(d) => u64::from(t[d as usize]),
            Special::Ntid(d) => u64::from(g.block[d as usize]),
            Special::Ctaid(d) => u64::from(g.ctaid[d as usize]),
            Special::Nctaid(d) => u64::from(g.grid[d as usize]),
            Special::LaneId => lane as u64,
            Special::WarpId => self.warp.index as u64,
            Special::NWarpId => g.warps() as u64,
            Special::SmId => g.block_linear % 132,
            Special::NSmId => 132,
            Special::GridId => 0,
            Special::LaneMask(k) => match k {
                LaneMaskKind::Eq => bit,
                LaneMaskKind::Le => (bit << 1).wrapping_sub(1) & 0xffff_ffff,
                LaneMaskKind::Lt => bit - 1,
                LaneMaskKind::Ge => !(bit - 1) & 0xffff_ffff,
                LaneMaskKind::Gt => !((bit << 1).wrapping_sub(1)) & 0xffff_ffff,
            },
            Special::Clock | Special::Clock64 | Special::GlobalTimer => 0,
            Special::DynamicSmemSize => u64::from(g.dynamic_smem),
            Special::TotalSmemSize => u64::from(g.total_smem),
            Special::ClusterZero => 0,
            Special::ClusterOne => 1,
        }
    }

    /// The address a symbol names (in its own state space: a parameter offset, a shared offset,
    /// a global address).
    pub fn sym(&self, name: &str) -> EmuResult<u64> {
        match self.prog.syms.get(name) {
            Some(SymAddr::Param(o)) => Ok(u64::from(*o)),
            Some(SymAddr::Shared(o)) => Ok(u64::from(*o)),
            Some(SymAddr::Global(a)) => Ok(*a),
            Some(SymAddr::Local(o)) => Ok(u64::from(*o)),
            None => Err(self.bad(format!("unknown symbol `{name}`"))),
        }
    }

    /// Reads operand `op` in `lane` as a value of type `ty` (bits in the low `ty.bits()`; float
    /// immediates are converted to `ty`'s format).
    #[inline]
    pub fn read(&self, lane: usize, op: &Operand, ty: Ty) -> EmuResult<u64> {
        Ok(match op {
            Operand::Reg(r) => self.warp.reg(lane, *r),
            Operand::NotPred(r) => u64::from(self.warp.reg(lane, *r) == 0),
            Operand::Imm(v) => match ty {
                Ty::F32 => u64::from((*v as f32).to_bits()),
                Ty::F64 => (*v as f64).to_bits(),
                _ => *v as u64,
            },
            Operand::F32(b) => match ty {
                Ty::F64 => f64::from(f32::from_bits(*b)).to_bits(),
                _ => u64::from(*b),
            },
            Operand::F64(b) => match ty {
                Ty::F32 => u64::from((f64::from_bits(*b) as f32).to_bits()),
                Ty::F16 => u64::from(half::f16::from_f64(f64::from_bits(*b)).to_bits()),
                Ty::Bf16 => u64::from(half::bf16::from_f64(f64::from_bits(*b)).to_bits()),
                _ => *b,
            },
            Operand::Special(s) => self.special(lane, *s),
            Operand::Sym(name) => self.sym(name)?,
            Operand::Addr { .. } => self.address(lane, op)?.1,
            other => return Err(self.bad(format!("operand {other:?} is not a value"))),
        })
    }

    /// Writes `v` (of type `ty`) to destination `op` in `lane`: registers keep the value
    /// zero-extended from `ty`'s width; predicates keep 0 or 1; `_` discards.
    #[inline]
    pub fn write(&mut self, lane: usize, op: &Operand, ty: Ty, v: u64) -> EmuResult<()> {
        match op {
            Operand::Reg(r) => {
                let v = match ty {
                    Ty::Pred => u64::from(v & 1 != 0),
                    _ => {
                        let bits = ty.bits();
                        if bits >= 64 {
                            v
                        } else {
                            v & ((1u64 << bits) - 1)
                        }
                    }
                };
                self.warp.set_reg(lane, *r, v);
                Ok(())
            }
            Operand::Sink => Ok(()),
            other => Err(self.bad(format!("operand {other:?} is not a register destination"))),
        }
    }

    /// The address of an `[base+offset]` operand in `lane`, with the symbol's space if the base
    /// is a symbol (`None` for a register base: the instruction's space applies).
    pub fn address(&self, lane: usize, op: &Operand) -> EmuResult<(Option<Space>, u64)> {
        match op {
            Operand::Addr { base, offset } => Ok(match base {
                AddrBase::Reg(r) => (None, self.warp.reg(lane, *r).wrapping_add(*offset as u64)),
                AddrBase::Abs => (None, *offset as u64),
                AddrBase::Sym(name) => {
                    let space = match self.prog.syms.get(name.as_str()) {
                        Some(SymAddr::Param(_)) => Space::Param,
                        Some(SymAddr::Shared(_)) => Space::Shared,
                        Some(SymAddr::Global(_)) => Space::Global,
                        Some(SymAddr::Local(_)) => Space::Local,
                        None => return Err(self.bad(format!("unknown symbol `{name}`"))),
                    };
                    (Some(space), self.sym(name)?.wrapping_add(*offset as u64))
                }
            }),
            // A register or symbol used as an address (e.g. `cp.async.bulk` with `[%rd]` is
            // parsed as Addr; this covers instructions that take a plain address register).
            Operand::Reg(r) => Ok((None, self.warp.reg(lane, *r))),
            other => Err(self.bad(format!("operand {other:?} is not an address"))),
        }
    }

    /// Resolves a generic address to its state space and the address within it.
    pub fn resolve(&self, space: Space, addr: u64) -> (Space, u64) {
        match space {
            Space::Generic => {
                if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Shared, addr - SHARED_WINDOW)
                } else if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Local, addr - LOCAL_WINDOW)
                } else if (PARAM_WINDOW..PARAM_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Param, addr - PARAM_WINDOW)
                } else {
                    (Space::Global, addr)
                }
            }
            Space::SharedCluster => (Space::Shared, addr),
            Space::Const => (Space::Global, addr),
            s => (s, addr),
        }
    }

    fn record(&mut self, kind: FindingKind, lane: Option<usize>, message: String) {
        if self.findings.len() >= MAX_FINDINGS {
            return;
        }
        let thread = lane.map(|l| self.thread(l));
        self.findings.push(Finding {
            kind,
            kernel: self.prog.kernel.name.clone(),
            block: self.block.geom.ctaid,
            line: self.instr.line,
            opcode: self.instr.opcode.clone(),
            thread,
            message,
        });
    }

    /// Notes that `lane` accesses `bytes` bytes at shared offset `offset` in this instruction,
    /// for the bank-conflict count ([`crate::banks`]).
    #[inline]
    pub fn note_shared(&mut self, lane: usize, offset: u64, bytes: usize) {
        self.block.bank_lanes.push(crate::banks::LaneAccess {
            lane: lane as u8,
            offset: offset as u32,
            bytes: bytes.min(usize::from(u8::MAX)) as u8,
        });
    }

    /// Records a sanitizer finding about this instruction.
    pub fn report(&mut self, kind: FindingKind, lane: Option<usize>, message: impl Into<String>) {
        self.record(kind, lane, message.into());
    }

    fn shared_miss(&self, off: u64, len: usize) -> String {
        let vars = &self.prog.shared_vars;
        let nearest = vars
            .iter()
            .min_by_key(|v| {
                let (s, e) = (u64::from(v.offset), u64::from(v.offset) + u64::from(v.size));
                if off < s {
                    s - off
                } else {
                    off.saturating_sub(e)
                }
            })
            .map(|v| {
                format!(
                    "nearest variable `{}` [{}, {})",
                    v.name,
                    v.offset,
                    v.offset + v.size
                )
            })
            .unwrap_or_else(|| "no shared variables".into());
        format!(
            "shared offset {off:#x} ({len} bytes) outside the block's {} bytes of shared memory; {nearest}",
            self.block.shared.len()
        )
    }

    /// Whether this instruction accesses memory for synchronization (atomics, and volatile,
    /// relaxed, acquire or release loads and stores): such accesses do not race with each other;
    /// a write releases the writer's history to the location and a read acquires it.
    pub fn is_sync_access(&self) -> bool {
        let i = self.instr;
        matches!(i.head.as_str(), "atom" | "red")
            || i.mods.iter().any(|m| {
                matches!(
                    m.as_str(),
                    "volatile" | "relaxed" | "acquire" | "release" | "acq_rel"
                )
            })
    }

    /// Acquire through shared location `off` (see [`Ctx::is_sync_access`]).
    fn acquire(&mut self, off: u64) {
        if let Some(c) = self.block.sync_clocks.get(&off) {
            for (w, v) in self.warp.clock.iter_mut().zip(c) {
                *w = (*w).max(*v);
            }
        }
    }

    /// Release to shared location `off` (see [`Ctx::is_sync_access`]).
    fn release(&mut self, off: u64) {
        let n = self.warp.clock.len();
        let c = self
            .block
            .sync_clocks
            .entry(off)
            .or_insert_with(|| vec![0; n]);
        for (v, w) in c.iter_mut().zip(&self.warp.clock) {
            *v = (*v).max(*w);
        }
        let me = self.warp.index;
        self.warp.clock[me] += 1;
    }

    /// Reads `out.len()` bytes at `addr` in `space` for `lane`, through the sanitizer. An access
    /// out of bounds is reported and reads zeros.
    pub fn load(&mut self, lane: usize, space: Space, addr: u64, out: &mut [u8]) -> EmuResult<()> {
        let (space, a) = self.resolve(space, addr);
        let len = out.len();
        match space {
            Space::Global | Space::Const | Space::Generic => {
                if let Err(miss) = self.global.read(a, out) {
                    out.fill(0);
                    self.oob(
                        lane,
                        format!("global load of {len} bytes at {a:#x}: {miss}"),
                    )?;
                }
            }
            Space::Shared | Space::SharedCluster => {
                let end = a.checked_add(len as u64);
                match end {
                    Some(e) if e <= self.block.shared.len() as u64 => {
                        let o = a as usize;
                        out.copy_from_slice(&self.block.shared[o..o + len]);
                        if self.block.ext.pending_at(o, len) {
                            self.record(
                                FindingKind::AsyncHazard,
                                Some(lane),
                                format!("reads shared offset {o:#x}, the destination of a cp.async not yet waited for (cp.async.wait_group)"),
                            );
                        }
                        if self.prog.sm >= 90 {
                            if let Some(h) = self.block.ext.hopper.generic_access(
                                o,
                                len,
                                false,
                                self.warp.index,
                                self.warp.clock[self.warp.index],
                                self.instr.line,
                            ) {
                                self.record(FindingKind::AsyncHazard, Some(lane), h.message);
                            }
                        }
                        if self.is_sync_access() {
                            self.acquire(a);
                        } else if let Some(sh) = self.block.shadow.as_mut() {
                            if let Some(c) =
                                sh.read(o, len, self.warp.index, &self.warp.clock, self.instr.line)
                            {
                                let msg = format!(
                                    "warp {} reads shared offset {:#x} written by warp {} (PTX line {}) with no barrier between them",
                                    self.warp.index, c.offset, c.warp, c.line
                                );
                                self.record(FindingKind::Race, Some(lane), msg);
                            }
                        }
                    }
                    _ => {
                        out.fill(0);
                        let m = self.shared_miss(a, len);
                        self.oob(lane, format!("shared load: {m}"))?;
                    }
                }
            }
            Space::Local => {
                let local = &self.warp.local[lane];
                match a.checked_add(len as u64) {
                    Some(e) if e <= local.len() as u64 => {
                        out.copy_from_slice(&local[a as usize..e as usize]);
                    }
                    _ => {
                        out.fill(0);
                        let n = local.len();
                        self.oob(lane, format!("local load of {len} bytes at offset {a:#x} outside the thread's {n} bytes"))?;
                    }
                }
            }
            Space::Param => {
                let p = &self.prog.params;
                match a.checked_add(len as u64) {
                    Some(e) if e <= p.len() as u64 => {
                        out.copy_from_slice(&p[a as usize..e as usize])
                    }
                    _ => {
                        out.fill(0);
                        let n = p.len();
                        self.oob(lane, format!("param load of {len} bytes at offset {a:#x} outside the {n} parameter bytes"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `bytes` at `addr` in `space` for `lane`, through the sanitizer. An access out of
    /// bounds is reported and dropped.
    pub fn store(&mut self, lane: usize, space: Space, addr: u64, bytes: &[u8]) -> EmuResult<()> {
        self.store_impl(lane, space, addr, bytes, false)
    }

    /// As [`Ctx::store`], for an atomic read-modify-write (exempt from race reports among
    /// atomics; the read half is the caller's [`Ctx::load`] with `atomic` set the same way).
    pub fn store_atomic(
        &mut self,
        lane: usize,
        space: Space,
        addr: u64,
        bytes: &[u8],
    ) -> EmuResult<()> {
        self.store_impl(lane, space, addr, bytes, true)
    }

    fn store_impl(
        &mut self,
        lane: usize,
        space: Space,
        addr: u64,
        bytes: &[u8],
        atomic: bool,
    ) -> EmuResult<()> {
        let (space, a) = self.resolve(space, addr);
        let len = bytes.len();
        match space {
            Space::Global | Space::Const | Space::Generic => {
                self.block.stores += 1;
                if let Err(miss) = self.global.write(a, bytes) {
                    self.oob(
                        lane,
                        format!("global store of {len} bytes at {a:#x}: {miss}"),
                    )?;
                }
            }
            Space::Shared | Space::SharedCluster => match a.checked_add(len as u64) {
                Some(e) if e <= self.block.shared.len() as u64 => {
                    let o = a as usize;
                    self.block.shared[o..o + len].copy_from_slice(bytes);
                    if self.block.ext.pending_at(o, len) {
                        self.record(
                            FindingKind::AsyncHazard,
                            Some(lane),
                            format!("writes shared offset {o:#x}, the destination of a cp.async not yet waited for"),
                        );
                    }
                    if self.prog.sm >= 90 {
                        if let Some(h) = self.block.ext.hopper.generic_access(
                            o,
                            len,
                            true,
                            self.warp.index,
                            self.warp.clock[self.warp.index],
                            self.instr.line,
                        ) {
                            self.record(FindingKind::AsyncHazard, Some(lane), h.message);
                        }
                    }
                    self.block.stores += 1;
                    if atomic || self.is_sync_access() {
                        self.release(a);
                    } else {
                        if let Some(sh) = self.block.shadow.as_mut() {
                            if let Some(c) =
                                sh.write(o, len, self.warp.index, &self.warp.clock, self.instr.line)
                            {
                                let what = if c.was_write { "written" } else { "read" };
                                let msg = format!(
                                    "warp {} writes shared offset {:#x} {what} by warp {} (PTX line {}) with no barrier between them",
                                    self.warp.index, c.offset, c.warp, c.line
                                );
                                self.record(FindingKind::Race, Some(lane), msg);
                            }
                        }
                    }
                }
                _ => {
                    let m = self.shared_miss(a, len);
                    self.oob(lane, format!("shared store: {m}"))?;
                }
            },
            Space::Local => {
                let n = self.warp.local[lane].len();
                match a.checked_add(len as u64) {
                    Some(e) if e <= n as u64 => {
                        self.warp.local[lane][a as usize..e as usize].copy_from_slice(bytes);
                    }
                    _ => {
                        self.oob(lane, format!("local store of {len} bytes at offset {a:#x} outside the thread's {n} bytes"))?;
                    }
                }
            }
            Space::Param => {
                return Err(self.bad("stores to the kernel's parameters are not allowed"));
            }
        }
        Ok(())
    }

    fn oob(&mut self, lane: usize, message: String) -> EmuResult<()> {
        if self.prog.sanitize {
            self.record(FindingKind::OutOfBounds, Some(lane), message);
            Ok(())
        } else {
            Err(EmuError::Fault {
                kernel: self.prog.kernel.name.clone(),
                line: self.instr.line,
                message: format!("thread {}: {message}", self.thread(lane)),
            })
        }
    }
}

/// Whether an opcode needs every live lane of the warp together (`.aligned`, and the
/// instructions whose warp-wide semantics make sense only that way).
fn needs_whole_warp(instr: &Instr) -> bool {
    instr.has("aligned")
        || matches!(
            instr.head.as_str(),
            "bar" | "mma" | "ldmatrix" | "stmatrix" | "wgmma"
        ) && !(instr.head == "bar" && instr.has("warp"))
}

/// Runs one block to completion.
pub fn run_block(
    prog: &Program<'_>,
    geom: Geometry,
    global: &mut GlobalMemory,
    findings: &mut Vec<Finding>,
    counts: &mut [u64],
    limits: &mut Limits<'_>,
) -> EmuResult<()> {
    let nwarps = geom.warps();
    let threads = geom.threads() as usize;
    let nregs = prog.kernel.regs.len();
    let mut warps: Vec<Warp> = (0..nwarps)
        .map(|w| {
            let n = (threads - w * WARP_SIZE).min(WARP_SIZE);
            let present = if n == WARP_SIZE {
                u32::MAX
            } else {
                (1u32 << n) - 1
            };
            let mut warp = Warp::new(w, 0, present, prog.local_bytes, nwarps);
            let mut regs = limits.register_files.pop().unwrap_or_default();
            regs.clear();
            regs.resize(nregs * WARP_SIZE, 0);
            warp.regs = regs;
            warp
        })
        .collect();
    let mut block = BlockMem {
        geom,
        shared: vec![0u8; prog.shared_bytes],
        shadow: prog
            .sanitize
            .then(|| SharedShadow::new(prog.shared_bytes, nwarps)),
        barriers: vec![BarrierState::default(); 16],
        ext: extension::BlockExt::default(),
        stores: 0,
        sync_clocks: HashMap::new(),
        bank_lanes: Vec::new(),
    };
    loop {
        let mut progressed = false;
        let mut all_done = true;
        for warp in warps.iter_mut() {
            if warp.done() {
                continue;
            }
            all_done = false;
            match warp.wait {
                Wait::Barrier { .. } => continue,
                Wait::Retry { .. } => warp.wait = Wait::None,
                Wait::None => {}
            }
            let stores = block.stores;
            let (end, completed) =
                run_warp(prog, warp, &mut block, global, findings, counts, limits)?;
            let wrote = block.stores != stores;
            // A warp that only re-polled a location nobody changed, or retried a wait without
            // completing anything, made no progress; anything else did.
            let idle = match end {
                SliceEnd::Retry => completed == 0 && !wrote,
                SliceEnd::Spin => {
                    let at = warp
                        .next_group(&prog.priority)
                        .map_or(usize::MAX, |(pc, _)| pc);
                    let poll = Some((at, warp.poll_value));
                    let same = warp.last_poll == poll;
                    warp.last_poll = poll;
                    same && !wrote
                }
                SliceEnd::Done | SliceEnd::Barrier | SliceEnd::Quantum => false,
            };
            if !idle {
                progressed = true;
            }
        }
        if all_done {
            break;
        }
        if release_barriers(prog, &mut warps, &mut block)? {
            progressed = true;
        }
        if warps.iter().all(|w| w.done()) {
            break;
        }
        if !progressed {
            return Err(deadlock(prog, &warps, &block));
        }
    }
    extension::finish_block(prog, &mut block, findings)?;
    for w in warps {
        limits.register_files.push(w.regs);
    }
    Ok(())
}

/// The profile of a launch from its executed warp-instructions per instruction index.
pub fn profile_of(body: &[Instr], counts: &[u64], nanos: &[u64]) -> Profile {
    let mut profile = Profile::default();
    for (i, c) in counts.iter().enumerate() {
        if *c > 0 {
            if let Some(instr) = body.get(i) {
                let class = profile_class(instr);
                if let Some(t) = nanos.get(i) {
                    *profile.nanos.entry(class.clone()).or_default() += *t;
                }
                *profile.counts.entry(class).or_default() += *c;
                profile.total += *c;
            }
        }
    }
    profile
}

/// The profile class of an instruction: its opcode without register types on memory ops'
/// vector widths, e.g. `ld.global`, `fma.rn.f32`, `mma.sync`.
fn profile_class(i: &Instr) -> String {
    match i.head.as_str() {
        "ld" | "st" | "atom" | "red" | "cp" => {
            let space = i
                .mods
                .iter()
                .find(|m| crate::ptx::Space::from_mod(m).is_some());
            match space {
                Some(s) => format!("{}.{}", i.head, s),
                None => i.head.clone(),
            }
        }
        "mma" | "wgmma" | "ldmatrix" | "stmatrix" | "mbarrier" => i.head.clone(),
        _ => {
            let ty = i
                .types
                .last()
                .map(|t| format!(".{t:?}").to_lowercase())
                .unwrap_or_default();
            format!("{}{ty}", i.head)
        }
    }
}

fn deadlock(prog: &Program<'_>, warps: &[Warp], block: &BlockMem) -> EmuError {
    let body = &prog.kernel.body;
    let mut waits = Vec::new();
    for w in warps {
        if w.done() {
            continue;
        }
        let at = |pc: usize| {
            body.get(pc)
                .map(|i| format!("PTX line {} `{}`", i.line, i.opcode))
                .unwrap_or_else(|| format!("instruction {pc}"))
        };
        let what = match &w.wait {
            Wait::Barrier { pc, id, count } => format!(
                "barrier {id}{} at {}",
                count.map(|c| format!(" (count {c})")).unwrap_or_default(),
                at(*pc)
            ),
            Wait::Retry { pc } => format!("a wait that never succeeds at {}", at(*pc)),
            Wait::None => match w.next_group(&prog.priority) {
                Some((pc, _)) => format!("spinning at {}", at(pc)),
                None => "nothing".into(),
            },
        };
        waits.push(format!("warp {}: {what}", w.index));
    }
    waits.extend(block.ext.hopper.describe_barriers());
    EmuError::Deadlock {
        kernel: prog.kernel.name.clone(),
        block: block.geom.ctaid,
        waits: waits.join("; "),
    }
}

/// Completes every barrier whose arrivals are all in: joins the clocks of the warps waiting on it
/// (and of the warps that arrived without waiting) and moves the waiters on.
fn release_barriers(
    prog: &Program<'_>,
    warps: &mut [Warp],
    block: &mut BlockMem,
) -> EmuResult<bool> {
    let mut released = false;
    let live_threads: u32 = warps
        .iter()
        .filter(|w| !w.done())
        .map(|w| w.present.count_ones())
        .sum();
    for id in 0..16u32 {
        let waiting: Vec<usize> = warps
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w.wait, Wait::Barrier { id: i, .. } if i == id))
            .map(|(k, _)| k)
            .collect();
        if waiting.is_empty() {
            continue;
        }
        let count = waiting.iter().find_map(|&k| match warps[k].wait {
            Wait::Barrier { count, .. } => count,
            _ => None,
        });
        let have: u32 = waiting
            .iter()
            .map(|&k| warps[k].present.count_ones())
            .sum::<u32>()
            + block.barriers[id as usize].arrived;
        let need = count.unwrap_or(live_threads);
        if have < need {
            continue;
        }
        // Join clocks of everyone in this barrier phase.
        let mut joined = block.barriers[id as usize].clock.clone();
        joined.resize(warps.len(), 0);
        for &k in &waiting {
            for (j, v) in joined.iter_mut().zip(&warps[k].clock) {
                *j = (*j).max(*v);
            }
        }
        let reduction = block.barriers[id as usize].reduction.clone();
        for &k in &waiting {
            let w = &mut warps[k];
            w.clock.clone_from(&joined);
            w.clock[k] += 1;
            let Wait::Barrier { pc, .. } = w.wait else {
                continue;
            };
            // `bar.red` hands every participant the block-wide result.
            let dest = match (
                &reduction,
                prog.kernel.body.get(pc).and_then(|i| i.operands.first()),
            ) {
                (Some((_, value)), Some(crate::ptx::Operand::Reg(r))) => Some((*r, *value)),
                _ => None,
            };
            for lane in lanes(w.live()) {
                if w.pc[lane] == pc {
                    w.pc[lane] = pc + 1;
                    if let Some((r, value)) = dest {
                        w.set_reg(lane, r, u64::from(value));
                    }
                }
            }
            w.wait = Wait::None;
        }
        block.barriers[id as usize] = BarrierState::default();
        released = true;
    }
    Ok(released)
}

/// Lanes of `group` whose guard predicate holds.
fn guarded(warp: &Warp, instr: &Instr, group: LaneMask) -> LaneMask {
    match instr.guard {
        None => group,
        Some(g) => {
            let mut m = 0;
            for lane in lanes(group) {
                let p = warp.reg(lane, g.reg) != 0;
                if p != g.negated {
                    m |= 1 << lane;
                }
            }
            m
        }
    }
}

/// Why a warp's turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SliceEnd {
    /// Every lane exited.
    Done,
    /// It waits at a block barrier.
    Barrier,
    /// A wait failed; it re-executes the instruction on its next turn.
    Retry,
    /// It observed an unmet condition (a polling load): others should run.
    Spin,
    /// It ran its quantum of instructions.
    Quantum,
}

/// Warp-instructions a warp runs before the next warp gets a turn (turns only matter for
/// warps that poll memory; barriers and the sanitizer's clocks do not depend on them).
const QUANTUM: u64 = 4096;

/// Runs warp `warp` until it waits, yields, exits or uses its quantum.
#[allow(clippy::too_many_arguments)]
fn run_warp(
    prog: &Program<'_>,
    warp: &mut Warp,
    block: &mut BlockMem,
    global: &mut GlobalMemory,
    findings: &mut Vec<Finding>,
    counts: &mut [u64],
    limits: &mut Limits<'_>,
) -> EmuResult<(SliceEnd, u64)> {
    let body = &prog.kernel.body;
    let mut steps: u64 = 0;
    while let Some((pc, group)) = warp.next_group(&prog.priority) {
        if steps >= QUANTUM {
            return Ok((SliceEnd::Quantum, steps));
        }
        let Some(instr) = body.get(pc) else {
            // Falling off the end of the body ends those threads, like `ret`.
            warp.exited |= group;
            continue;
        };
        if limits.budget == 0 {
            return Err(EmuError::BudgetExhausted {
                kernel: prog.kernel.name.clone(),
                budget: limits.budget_total,
                line: instr.line,
            });
        }
        limits.budget -= 1;
        steps += 1;
        if limits.budget % 4096 == 0 {
            if let Some(c) = limits.cancel {
                if c.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(EmuError::Cancelled {
                        kernel: prog.kernel.name.clone(),
                    });
                }
            }
        }
        if needs_whole_warp(instr) && group != warp.live() {
            let elsewhere: Vec<String> = lanes(warp.live() & !group)
                .map(|l| {
                    let line = body.get(warp.pc[l]).map_or(0, |i| i.line);
                    format!("lane {l} at PTX line {line}")
                })
                .take(4)
                .collect();
            return Err(EmuError::Divergent {
                kernel: prog.kernel.name.clone(),
                line: instr.line,
                opcode: instr.opcode.clone(),
                message: format!(
                    "warp {} reached it with lanes {group:#010x} only ({})",
                    warp.index,
                    elsewhere.join(", ")
                ),
            });
        }
        let exec = guarded(warp, instr, group);
        counts[pc] += 1;
        let mut ctx = Ctx {
            prog,
            instr,
            pc,
            warp: &mut *warp,
            block: &mut *block,
            global: &mut *global,
            findings: &mut *findings,
        };
        let flow = if limits.nanos.is_empty() {
            dispatch(&mut ctx, pc, group, exec)?
        } else {
            let t = std::time::Instant::now();
            let flow = dispatch(&mut ctx, pc, group, exec)?;
            limits.nanos[pc] += t.elapsed().as_nanos() as u64;
            flow
        };
        if !block.bank_lanes.is_empty() {
            if flow != Flow::Retry {
                tally_banks(limits, body, pc, &block.bank_lanes);
            }
            block.bank_lanes.clear();
        }
        match flow {
            Flow::Next => {
                for lane in lanes(group) {
                    warp.pc[lane] = pc + 1;
                }
            }
            Flow::Jump(target) => {
                for lane in lanes(group) {
                    warp.pc[lane] = if exec & (1 << lane) != 0 {
                        target
                    } else {
                        pc + 1
                    };
                }
            }
            Flow::Retry => {
                counts[pc] -= 1;
                warp.wait = Wait::Retry { pc };
                return Ok((SliceEnd::Retry, steps - 1));
            }
            Flow::Spin => {
                for lane in lanes(group) {
                    warp.pc[lane] = pc + 1;
                }
                return Ok((SliceEnd::Spin, steps));
            }
            Flow::Barrier => {
                // `dispatch` set `warp.wait`; the pc moves on when the barrier completes.
                return Ok((SliceEnd::Barrier, steps));
            }
        }
    }
    Ok((SliceEnd::Done, steps))
}

/// Adds the wavefronts of one warp-instruction's shared accesses to instruction `pc`'s tally.
fn tally_banks(
    limits: &mut Limits<'_>,
    body: &[Instr],
    pc: usize,
    accesses: &[crate::banks::LaneAccess],
) {
    if limits.banks.len() < body.len() {
        limits
            .banks
            .resize(body.len(), crate::banks::SharedAccessStats::default());
    }
    let stats = &mut limits.banks[pc];
    if stats.executions == 0 {
        stats.line = body[pc].line;
        stats.opcode.clone_from(&body[pc].opcode);
    }
    stats.add(crate::banks::wavefronts(accesses));
}

/// Executes one instruction for the lanes `group` (of which `exec` pass the guard).
fn dispatch(ctx: &mut Ctx<'_>, pc: usize, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    if exec == 0 {
        // Guarded off in every lane of the group: the instruction does nothing (its form is
        // still checked when a lane runs it).
        return Ok(Flow::Next);
    }
    match instr.head.as_str() {
        "bra" | "brx" => match ctx.op(0)? {
            Operand::Label(t) => Ok(Flow::Jump(*t)),
            _ => Err(ctx.bad("branch target is not a label")),
        },
        "ret" | "exit" => {
            ctx.warp.exited |= exec;
            Ok(Flow::Next)
        }
        "trap" => {
            if exec != 0 {
                Err(EmuError::Trap {
                    kernel: ctx.prog.kernel.name.clone(),
                    line: ctx.instr.line,
                    block: ctx.block.geom.ctaid,
                    warp: ctx.warp.index,
                    lanes: (0..32u32).filter(|l| exec & (1 << l) != 0).collect(),
                })
            } else {
                Ok(Flow::Next)
            }
        }
        "bar" | "barrier" => warp::barrier(ctx, pc, group, exec),
        "membar" | "fence"
            if !instr.opcode.starts_with("fence.proxy")
                && !instr.opcode.starts_with("fence.mbarrier_init") =>
        {
            Ok(Flow::Next)
        }
        "nanosleep" | "pmevent" | "prefetch" | "prefetchu" | "discard" | "griddepcontrol" => {
            Ok(Flow::Next)
        }
        "shfl" | "vote" | "activemask" | "match" | "redux" => warp::warp_op(ctx, group, exec),
        "ld" | "st" | "atom" | "red" | "cvta" | "isspacep" => mem::mem_op(ctx, exec),
        "mma" | "ldmatrix" | "stmatrix" | "wgmma" | "mbarrier" | "elect" | "setmaxnreg" => {
            extension::execute(ctx, group, exec)
        }
        "cp" | "fence" => extension::execute(ctx, group, exec),
        "add" | "sub" | "mul" | "mad" | "fma" | "div" | "rem" | "abs" | "neg" | "min" | "max"
        | "rcp" | "sqrt" | "rsqrt" | "ex2" | "lg2" | "sin" | "cos" | "tanh" | "copysign"
        | "testp" | "setp" | "selp" | "set" | "slct" | "cvt" | "mov" | "and" | "or" | "xor"
        | "not" | "cnot" | "shl" | "shr" | "clz" | "popc" | "brev" | "bfe" | "bfi" | "prmt"
        | "mul24" | "mad24" | "sad" | "shf" | "bfind" | "fns" | "dp4a" | "dp2a" | "szext"
        | "bmsk" | "lop3" | "addc" | "subc" | "madc" => {
            if float::is_float_op(instr) {
                float::float_op(ctx, exec)
            } else {
                int::int_op(ctx, exec)
            }
        }
        _ => Err(ctx.unknown()),
    }
}
