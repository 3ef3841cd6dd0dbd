//! State of the asynchronous units a block owns, and the rules the sanitizer checks on them
//! (PTX ISA "Data Movement and Conversion Instructions: cp.async", "cp.async.bulk.tensor",
//! "Parallel Synchronization and Communication Instructions: mbarrier", "wgmma.commit_group /
//! wait_group", "Memory Consistency Model: Proxies").
//!
//! Everything here is plain data with no knowledge of warps' registers or PTX operands: the
//! executor's extension (`exec/extension.rs`) decodes instructions and calls these objects.
//!
//! Timing model: asynchronous work completes at the **latest** point the ISA allows, so a
//! missing wait shows up as wrong numbers as well as a report:
//! - `cp.async` copies (their state is the executor's, `exec/extension.rs`) land in shared memory
//!   at the `cp.async.wait_group` / `wait_all` that covers their group, or at a
//!   `cp.async.mbarrier.arrive` of the issuing threads;
//! - TMA loads (`cp.async.bulk.tensor` to shared memory) land, and signal `complete_tx` on their
//!   mbarrier, only when a waiter of that mbarrier would otherwise block: a wait that succeeds
//!   without them (the wrong parity) reads the buffer before they arrive, and the shared-byte
//!   tracker reports it;
//! - TMA stores read shared memory and write global memory at the `cp.async.bulk.wait_group`
//!   that covers their bulk group (or at the end of the block);
//! - wgmma results reach the accumulator registers at the `wgmma.wait_group` that covers them.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::tensor_core::smem_matrix::Swizzle;

/// An asynchronous operation in flight, named in reports.
pub type OpId = u32;

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HazardKind {
    /// Ordering between the generic proxy and the async proxy, or use of data an asynchronous
    /// operation has not delivered (or is still reading).
    Async,
    /// An mbarrier used against its rules.
    Mbarrier,
}

/// A rule broken by the program, with the details a report needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hazard {
    /// Which family of rule.
    pub kind: HazardKind,
    /// What happened, naming the other party (instruction, PTX line, bytes).
    pub message: String,
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn hazard(kind: HazardKind, message: String) -> Hazard {
    Hazard { kind, message }
}

/// An asynchronous operation's identity for reports: its opcode, PTX line and issuing thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncOp {
    /// The opcode.
    pub opcode: String,
    /// 1-based PTX line.
    pub line: u32,
    /// Thread index in the block that issued it.
    pub thread: u32,
}

impl fmt::Display for AsyncOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (PTX line {}, thread {})",
            self.opcode, self.line, self.thread
        )
    }
}

/// Groups of asynchronous work one thread (or warp) issued: issued items join the open group,
/// `commit` closes it, `wait(n)` completes every group but the newest `n`
/// (`cp.async.wait_group`, `cp.async.bulk.wait_group`, `wgmma.wait_group` all read so).
#[derive(Debug, Clone)]
pub struct Groups<T> {
    open: Vec<T>,
    committed: VecDeque<Vec<T>>,
}

impl<T> Default for Groups<T> {
    fn default() -> Self {
        Groups {
            open: Vec::new(),
            committed: VecDeque::new(),
        }
    }
}

impl<T> Groups<T> {
    /// Adds an item to the open (uncommitted) group.
    pub fn issue(&mut self, item: T) {
        self.open.push(item);
    }

    /// Closes the open group (an empty group is a group too: pipelines commit empty groups in
    /// their tails so the counting of `wait_group N` stays uniform).
    pub fn commit(&mut self) {
        self.committed.push_back(std::mem::take(&mut self.open));
    }

    /// Completes every committed group except the newest `n`, returning their items oldest
    /// first. Uncommitted items are not waited for.
    pub fn wait(&mut self, n: usize) -> Vec<T> {
        let mut done = Vec::new();
        while self.committed.len() > n {
            if let Some(g) = self.committed.pop_front() {
                done.extend(g);
            }
        }
        done
    }

    /// Completes everything, committed or not (`cp.async.wait_all`, end of block).
    pub fn drain(&mut self) -> Vec<T> {
        let mut done = self.wait(0);
        done.append(&mut self.open);
        done
    }

    /// Items not yet completed.
    pub fn pending(&self) -> impl Iterator<Item = &T> {
        self.committed.iter().flatten().chain(self.open.iter())
    }
}

// ---------------------------------------------------------------------------------------------
// mbarrier
// ---------------------------------------------------------------------------------------------

/// Largest arrival count and transaction count an mbarrier holds (ISA: 2^20 − 1).
pub const MBARRIER_MAX_COUNT: i64 = (1 << 20) - 1;

/// Work an mbarrier waits for that the emulator delivers at the latest point: when a waiter of
/// the barrier would otherwise block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferred {
    /// A TMA (or bulk) load: its bytes land, then `complete_tx` of their count.
    TxLoad {
        /// The operation.
        op: OpId,
        /// Destination offset in shared memory.
        shared: u32,
        /// The bytes (already read from global memory and laid out for shared memory).
        bytes: Vec<u8>,
        /// The issuing warp and its vector clock at issue (the write is attributed to them).
        warp: usize,
        /// See `warp`.
        clock: Vec<u32>,
    },
}

/// One mbarrier object (8 bytes of shared memory, named by its offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbarrier {
    /// The arrival count given to `mbarrier.init` (reduced by `arrive_drop`).
    pub expected: u32,
    /// Arrivals still missing in the current phase.
    pub pending: i64,
    /// Transaction bytes still expected in the current phase (may dip below zero when
    /// `complete_tx` runs before `expect_tx`, as the ISA allows).
    pub tx: i64,
    /// The current phase number (its parity is what `try_wait.parity` compares).
    pub phase: u32,
    /// PTX line of the `mbarrier.init`.
    pub init_line: u32,
    /// Warp that initialized it.
    pub init_warp: usize,
    /// Whether a `fence.mbarrier_init` or `fence.proxy.async` has followed the init (needed
    /// before the async proxy — TMA — signals it).
    pub init_fenced: bool,
    /// Join of the clocks released into the current phase.
    pub phase_clock: Vec<u32>,
    /// Join of the clocks released into the last completed phase (acquired by waiters).
    pub completed_clock: Vec<u32>,
    /// Asynchronous work that will signal this barrier.
    pub deferred: Vec<Deferred>,
}

fn join(into: &mut Vec<u32>, other: &[u32]) {
    if into.len() < other.len() {
        into.resize(other.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(other) {
        *a = (*a).max(*b);
    }
}

impl Mbarrier {
    /// `mbarrier.init` with `count` expected arrivals.
    pub fn new(count: i64, line: u32, warp: usize) -> Result<Self, Hazard> {
        if !(1..=MBARRIER_MAX_COUNT).contains(&count) {
            return Err(hazard(
                HazardKind::Mbarrier,
                format!("mbarrier.init count {count} is outside [1, 2^20 - 1]"),
            ));
        }
        Ok(Mbarrier {
            expected: count as u32,
            pending: count,
            tx: 0,
            phase: 0,
            init_line: line,
            init_warp: warp,
            init_fenced: false,
            phase_clock: Vec::new(),
            completed_clock: Vec::new(),
            deferred: Vec::new(),
        })
    }

    fn maybe_complete(&mut self) {
        if self.pending <= 0 && self.tx == 0 {
            self.phase = self.phase.wrapping_add(1);
            self.pending = self.expected as i64;
            self.completed_clock = std::mem::take(&mut self.phase_clock);
        }
    }

    /// `mbarrier.arrive{.expect_tx}` of `count` arrivals (after adding `tx` expected bytes),
    /// releasing `clock`. Returns the state token (the phase arrived on). Arrivals beyond the
    /// pending count are a misuse (the ISA leaves them undefined); the phase still completes.
    pub fn arrive(&mut self, count: i64, tx: i64, clock: &[u32]) -> Result<u64, Hazard> {
        let token = self.phase as u64;
        self.expect_tx(tx)?;
        join(&mut self.phase_clock, clock);
        let over = count > self.pending;
        let before = self.pending;
        self.pending -= count;
        self.maybe_complete();
        if over {
            return Err(hazard(
                HazardKind::Mbarrier,
                format!(
                    "{count} arrival(s) on an mbarrier (initialized at PTX line {} for {} arrivals) with only {before} pending in phase {}",
                    self.init_line, self.expected, token
                ),
            ));
        }
        Ok(token)
    }

    /// Releases `clock` into the current phase without an arrival (an arrive-on whose pending
    /// count increment and arrival cancel out).
    pub fn phase_clock_join(&mut self, clock: &[u32]) {
        join(&mut self.phase_clock, clock);
    }

    /// `mbarrier.arrive_drop`: one arrival now, and one fewer expected in later phases.
    pub fn arrive_drop(&mut self, clock: &[u32]) -> Result<u64, Hazard> {
        if self.expected == 0 {
            return Err(hazard(
                HazardKind::Mbarrier,
                "arrive_drop on an mbarrier that expects no arrivals".into(),
            ));
        }
        self.expected -= 1;
        self.arrive(1, 0, clock)
    }

    /// `mbarrier.expect_tx` (and the tx half of `arrive.expect_tx`).
    pub fn expect_tx(&mut self, bytes: i64) -> Result<(), Hazard> {
        self.tx += bytes;
        if self.tx > MBARRIER_MAX_COUNT {
            return Err(hazard(
                HazardKind::Mbarrier,
                format!("expected transaction count {} exceeds 2^20 - 1", self.tx),
            ));
        }
        Ok(())
    }

    /// `complete_tx` of `bytes` (a TMA load landing), releasing the issuer's `clock`.
    pub fn complete_tx(&mut self, bytes: i64, clock: &[u32]) {
        join(&mut self.phase_clock, clock);
        self.tx -= bytes;
        self.maybe_complete();
    }

    /// `test_wait.parity` / `try_wait.parity`: true unless the current phase has parity `parity`
    /// (then the phase the caller names is the current, incomplete one).
    pub fn parity_complete(&self, parity: u64) -> bool {
        (self.phase as u64 & 1) != (parity & 1)
    }

    /// `test_wait` / `try_wait` with a state token from `arrive`: true once the phase the token
    /// names has completed.
    pub fn token_complete(&self, token: u64) -> bool {
        self.phase as u64 != token
    }
}

// ---------------------------------------------------------------------------------------------
// Shared-memory bytes as the proxies see them
// ---------------------------------------------------------------------------------------------

/// Per-byte state of shared memory for the asynchronous rules: which generic-proxy writes have
/// not been fenced for the async proxy, which bytes an asynchronous operation will still write,
/// and which it is still reading.
#[derive(Debug, Default, Clone)]
pub struct SharedTracker {
    /// Writer warp + 1 of an unfenced generic write, 0 when clean.
    dirty: Vec<u16>,
    /// PTX line of that write.
    dirty_line: Vec<u32>,
    /// The writer's own vector-clock entry at that write (a fence by another warp orders it
    /// when that warp's clock has seen it, e.g. through a barrier).
    dirty_clock: Vec<u32>,
    /// Dirty bytes per warp (so a fence by a warp with none is free).
    dirty_count: Vec<usize>,
    /// Op + 1 of an asynchronous write not yet landed, 0 when none.
    pending_write: Vec<u32>,
    /// Op + 1 of an asynchronous read not yet completed, 0 when none.
    async_read: Vec<u32>,
    /// Operations by id.
    ops: HashMap<OpId, AsyncOp>,
    next_op: OpId,
}

impl SharedTracker {
    /// A tracker for `bytes` of shared memory and `warps` warps.
    pub fn new(bytes: usize, warps: usize) -> Self {
        SharedTracker {
            dirty: vec![0; bytes],
            dirty_line: vec![0; bytes],
            dirty_clock: vec![0; bytes],
            dirty_count: vec![0; warps],
            pending_write: vec![0; bytes],
            async_read: vec![0; bytes],
            ops: HashMap::new(),
            next_op: 0,
        }
    }

    /// Registers an asynchronous operation for reports.
    pub fn op(&mut self, op: AsyncOp) -> OpId {
        let id = self.next_op;
        self.next_op += 1;
        self.ops.insert(id, op);
        id
    }

    /// The operation `id` names.
    pub fn describe(&self, id: OpId) -> String {
        self.ops
            .get(&id)
            .map(|o| o.to_string())
            .unwrap_or_else(|| format!("operation {id}"))
    }

    /// Extends the tracked bytes to `bytes` and warps to `warps` (the tracker starts empty and
    /// follows the accesses it sees, so blocks that never use the async proxy pay nothing).
    pub fn grow(&mut self, bytes: usize, warps: usize) {
        if self.dirty.len() < bytes {
            self.dirty.resize(bytes, 0);
            self.dirty_line.resize(bytes, 0);
            self.dirty_clock.resize(bytes, 0);
            self.pending_write.resize(bytes, 0);
            self.async_read.resize(bytes, 0);
        }
        if self.dirty_count.len() < warps {
            self.dirty_count.resize(warps, 0);
        }
    }

    fn range(&self, off: u32, len: u32) -> std::ops::Range<usize> {
        let end = (off as usize + len as usize).min(self.dirty.len());
        (off as usize).min(end)..end
    }

    /// A generic-proxy read (`ld.shared`, `ldmatrix`): reports bytes an asynchronous operation
    /// has not delivered yet.
    pub fn generic_read(&self, off: u32, len: u32) -> Option<Hazard> {
        let r = self.range(off, len);
        let b = r.clone().find(|&b| self.pending_write[b] != 0)?;
        Some(hazard(
            HazardKind::Async,
            format!(
                "reads shared offset {b:#x} before {} delivered it (wait for its group or mbarrier phase first)",
                self.describe(self.pending_write[b] - 1)
            ),
        ))
    }

    /// A generic-proxy write (`st.shared`, `stmatrix`) by `warp` (whose own vector-clock entry is
    /// `clock_own`) at `line`: marks the bytes as needing `fence.proxy.async` before the async
    /// proxy reads them, and reports bytes an asynchronous operation is still reading or will
    /// still write.
    pub fn generic_write(
        &mut self,
        off: u32,
        len: u32,
        warp: usize,
        clock_own: u32,
        line: u32,
    ) -> Option<Hazard> {
        self.grow(off as usize + len as usize, warp + 1);
        let r = self.range(off, len);
        let mut found = None;
        for b in r {
            if found.is_none() {
                if self.async_read[b] != 0 {
                    found = Some(format!(
                        "overwrites shared offset {b:#x} while {} is still reading it (wait for its group first)",
                        self.describe(self.async_read[b] - 1)
                    ));
                } else if self.pending_write[b] != 0 {
                    found = Some(format!(
                        "writes shared offset {b:#x} that {} has yet to write (wait for it first)",
                        self.describe(self.pending_write[b] - 1)
                    ));
                }
            }
            let old = self.dirty[b];
            if old as usize != warp + 1 {
                if old != 0 {
                    self.dirty_count[old as usize - 1] -= 1;
                }
                if warp < self.dirty_count.len() {
                    self.dirty_count[warp] += 1;
                    self.dirty[b] = (warp + 1) as u16;
                }
            }
            self.dirty_line[b] = line;
            self.dirty_clock[b] = clock_own;
        }
        found.map(|m| hazard(HazardKind::Async, m))
    }

    /// `fence.proxy.async` by `warp` with vector clock `clock`: the generic writes ordered before
    /// it (its own, and other warps' that its clock has seen, e.g. through a `bar.sync`) become
    /// visible to the async proxy.
    pub fn fence_proxy_async(&mut self, warp: usize, clock: &[u32]) {
        if self.dirty_count.iter().all(|c| *c == 0) {
            return;
        }
        for b in 0..self.dirty.len() {
            let d = self.dirty[b] as usize;
            if d == 0 {
                continue;
            }
            let writer = d - 1;
            if writer == warp || clock.get(writer).is_some_and(|c| *c >= self.dirty_clock[b]) {
                self.dirty[b] = 0;
                self.dirty_count[writer] -= 1;
            }
        }
    }

    /// An async-proxy read (wgmma operand, TMA store source) by `op`: reports generic writes
    /// not yet fenced, and marks the bytes as read until [`end_async_read`](Self::end_async_read).
    pub fn begin_async_read(&mut self, op: OpId, off: u32, len: u32) -> Option<Hazard> {
        self.grow(off as usize + len as usize, 0);
        let r = self.range(off, len);
        let mut found = None;
        for b in r {
            if found.is_none() && self.dirty[b] != 0 {
                found = Some(hazard(
                    HazardKind::Async,
                    format!(
                        "{} reads shared offset {b:#x} through the async proxy, but warp {} wrote it through the generic proxy (PTX line {}) with no fence.proxy.async between",
                        self.describe(op),
                        self.dirty[b] - 1,
                        self.dirty_line[b]
                    ),
                ));
            }
            if found.is_none() && self.pending_write[b] != 0 {
                found = Some(hazard(
                    HazardKind::Async,
                    format!(
                        "{} reads shared offset {b:#x} before {} delivered it",
                        self.describe(op),
                        self.describe(self.pending_write[b] - 1)
                    ),
                ));
            }
            self.async_read[b] = op + 1;
        }
        found
    }

    /// The async read `op` completed.
    pub fn end_async_read(&mut self, op: OpId, off: u32, len: u32) {
        let r = self.range(off, len);
        for b in r {
            if self.async_read[b] == op + 1 {
                self.async_read[b] = 0;
            }
        }
    }

    /// An asynchronous write by `op` is in flight to these bytes (it may land at any time from
    /// now): reports bytes another asynchronous operation is still reading (a wgmma operand
    /// whose slot was released before its `wgmma.wait_group`) or still has to write.
    pub fn begin_async_write(&mut self, op: OpId, off: u32, len: u32) -> Option<Hazard> {
        self.grow(off as usize + len as usize, 0);
        let r = self.range(off, len);
        let mut found = None;
        for b in r {
            if found.is_none() {
                if self.async_read[b] != 0 {
                    found = Some(format!(
                        "{} writes shared offset {b:#x} while {} is still reading it",
                        self.describe(op),
                        self.describe(self.async_read[b] - 1)
                    ));
                } else if self.pending_write[b] != 0 {
                    found = Some(format!(
                        "{} writes shared offset {b:#x} that {} has yet to write",
                        self.describe(op),
                        self.describe(self.pending_write[b] - 1)
                    ));
                }
            }
            self.pending_write[b] = op + 1;
        }
        found.map(|m| hazard(HazardKind::Async, m))
    }

    /// The asynchronous write `op` landed: the bytes now hold what the async proxy wrote, so
    /// earlier unfenced generic writes to them no longer matter to async readers.
    pub fn end_async_write(&mut self, op: OpId, off: u32, len: u32) {
        let r = self.range(off, len);
        for b in r {
            if self.pending_write[b] == op + 1 {
                self.pending_write[b] = 0;
            }
            let d = self.dirty[b];
            if d != 0 {
                self.dirty_count[d as usize - 1] -= 1;
                self.dirty[b] = 0;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TMA tensor maps
// ---------------------------------------------------------------------------------------------

/// What a TMA load writes for elements outside the tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OobFill {
    /// Zeros (`CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE`).
    Zero,
    /// NaN for floating-point elements (`..._NAN_REQUEST_ZERO_FMA`): all-ones bit patterns.
    Nan,
}

/// Errors building or using a tensor map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorMapError {
    /// A parameter outside what `cuTensorMapEncodeTiled` accepts.
    #[error("tensor map: {0}")]
    Invalid(String),
    /// Bytes that are not an emulator tensor map.
    #[error("the 128-byte tensor-map parameter is not an emulator tensor map (magic {0:#018x}); the emulator device builds its own maps from cuTensorMapEncodeTiled's arguments")]
    NotAMap(u64),
    /// Coordinates of the wrong rank.
    #[error("tensor map of rank {rank} given {given} coordinates")]
    Rank {
        /// The map's rank.
        rank: usize,
        /// Coordinates given.
        given: usize,
    },
}

/// The emulator's own tensor map: the logical parameters of `cuTensorMapEncodeTiled` (the CUDA
/// encoding is opaque and may change between drivers). Dimension 0 is the innermost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorMap {
    /// Bytes per element (1, 2, 4 or 8).
    pub element_bytes: u32,
    /// Global address of element (0, …, 0).
    pub global_address: u64,
    /// Extent of each dimension (rank = length, 1..=5).
    pub dims: Vec<u64>,
    /// Byte stride of dimensions 1.. (rank − 1 entries; dimension 0 is dense).
    pub strides: Vec<u64>,
    /// Box extent per dimension (1..=256).
    pub box_dims: Vec<u32>,
    /// Shared-memory swizzle of the box (applied to absolute shared addresses, as for wgmma).
    pub swizzle: Swizzle,
    /// Fill for out-of-bounds elements.
    pub oob_fill: OobFill,
}

/// First 8 bytes of an encoded emulator tensor map.
pub const TENSOR_MAP_MAGIC: u64 = u64::from_le_bytes(*b"TKEMUMAP");

/// Bytes of a tensor-map kernel parameter (CUtensorMap is 128 bytes, 64-byte aligned).
pub const TENSOR_MAP_BYTES: usize = 128;

impl TensorMap {
    /// Checks the parameters as `cuTensorMapEncodeTiled` does (rank 1..=5, 16-byte-aligned global
    /// address, strides multiples of 16 below 2^40, boxes 1..=256, inner box a multiple of 16
    /// bytes and within the swizzle span).
    pub fn new(
        element_bytes: u32,
        global_address: u64,
        dims: Vec<u64>,
        strides: Vec<u64>,
        box_dims: Vec<u32>,
        swizzle: Swizzle,
        oob_fill: OobFill,
    ) -> Result<Self, TensorMapError> {
        let bad = |m: String| Err(TensorMapError::Invalid(m));
        let rank = dims.len();
        if !(1..=5).contains(&rank) {
            return bad(format!("rank {rank} is outside 1..=5"));
        }
        if strides.len() != rank - 1 || box_dims.len() != rank {
            return bad(format!(
                "rank {rank} needs {} strides and {rank} box extents, got {} and {}",
                rank - 1,
                strides.len(),
                box_dims.len()
            ));
        }
        if ![1, 2, 4, 8].contains(&element_bytes) {
            return bad(format!(
                "element size {element_bytes} bytes is not 1, 2, 4 or 8"
            ));
        }
        if global_address % 16 != 0 {
            return bad(format!(
                "global address {global_address:#x} is not 16-byte aligned"
            ));
        }
        if let Some(d) = dims.iter().find(|d| **d == 0 || **d > 1 << 32) {
            return bad(format!("dimension {d} is outside 1..=2^32"));
        }
        if let Some(s) = strides.iter().find(|s| **s % 16 != 0 || **s >= 1 << 40) {
            return bad(format!(
                "global stride {s} bytes is not a multiple of 16 below 2^40"
            ));
        }
        if let Some(b) = box_dims.iter().find(|b| **b == 0 || **b > 256) {
            return bad(format!("box extent {b} is outside 1..=256"));
        }
        let inner = box_dims[0] * element_bytes;
        if inner % 16 != 0 {
            return bad(format!(
                "inner box extent {inner} bytes is not a multiple of 16"
            ));
        }
        if swizzle != Swizzle::None && inner > swizzle.row_bytes() {
            return bad(format!(
                "inner box extent {inner} bytes exceeds the {}-byte swizzle span",
                swizzle.row_bytes()
            ));
        }
        Ok(TensorMap {
            element_bytes,
            global_address,
            dims,
            strides,
            box_dims,
            swizzle,
            oob_fill,
        })
    }

    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Bytes of one box in shared memory (what a load's `complete_tx` counts).
    pub fn box_bytes(&self) -> u64 {
        self.box_dims.iter().map(|b| *b as u64).product::<u64>() * self.element_bytes as u64
    }

    /// The 128-byte kernel-parameter image of this map (the emulator's own format).
    pub fn encode(&self) -> [u8; TENSOR_MAP_BYTES] {
        let mut out = [0u8; TENSOR_MAP_BYTES];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&TENSOR_MAP_MAGIC.to_le_bytes());
        put(&self.global_address.to_le_bytes());
        put(&[
            self.rank() as u8,
            self.element_bytes as u8,
            self.swizzle.field() as u8,
            matches!(self.oob_fill, OobFill::Nan) as u8,
        ]);
        for i in 0..5 {
            put(&self.dims.get(i).copied().unwrap_or(0).to_le_bytes());
        }
        for i in 0..4 {
            put(&self.strides.get(i).copied().unwrap_or(0).to_le_bytes());
        }
        for i in 0..5 {
            put(&(self.box_dims.get(i).copied().unwrap_or(0) as u16).to_le_bytes());
        }
        out
    }

    /// Reads a map written by [`encode`](Self::encode), re-checking it.
    pub fn decode(bytes: &[u8]) -> Result<Self, TensorMapError> {
        if bytes.len() < TENSOR_MAP_BYTES {
            return Err(TensorMapError::NotAMap(0));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
        let magic = u64_at(0);
        if magic != TENSOR_MAP_MAGIC {
            return Err(TensorMapError::NotAMap(magic));
        }
        let rank = (bytes[16] as usize).clamp(1, 5);
        let dims = (0..rank).map(|i| u64_at(20 + 8 * i)).collect();
        let strides = (0..rank - 1).map(|i| u64_at(60 + 8 * i)).collect();
        let box_dims = (0..rank)
            .map(|i| u16::from_le_bytes([bytes[92 + 2 * i], bytes[93 + 2 * i]]) as u32)
            .collect();
        let oob = if bytes[19] != 0 {
            OobFill::Nan
        } else {
            OobFill::Zero
        };
        TensorMap::new(
            bytes[17] as u32,
            u64_at(8),
            dims,
            strides,
            box_dims,
            Swizzle::from_field(bytes[18] as u64),
            oob,
        )
    }

    /// For each element of the box at `coords` (innermost first): its global address (None when
    /// outside the tensor) and its byte offset in shared memory relative to a destination at
    /// `shared_base` (the swizzle is applied to the absolute shared address).
    pub fn box_elements(
        &self,
        coords: &[i64],
        shared_base: u32,
    ) -> Result<Vec<(Option<u64>, u32)>, TensorMapError> {
        if coords.len() != self.rank() {
            return Err(TensorMapError::Rank {
                rank: self.rank(),
                given: coords.len(),
            });
        }
        let total: usize = self.box_dims.iter().map(|b| *b as usize).product();
        let inner_bytes = self.box_dims[0] * self.element_bytes;
        let mut out = Vec::with_capacity(total);
        let mut idx = vec![0u32; self.rank()];
        for linear in 0..total {
            let mut rest = linear;
            for (d, i) in idx.iter_mut().enumerate() {
                *i = (rest % self.box_dims[d] as usize) as u32;
                rest /= self.box_dims[d] as usize;
            }
            let mut inside = true;
            let mut global = self.global_address;
            for d in 0..self.rank() {
                let c = coords[d] + idx[d] as i64;
                if c < 0 || c as u64 >= self.dims[d] {
                    inside = false;
                    break;
                }
                let stride = if d == 0 {
                    self.element_bytes as u64
                } else {
                    self.strides[d - 1]
                };
                global += c as u64 * stride;
            }
            // Rows of the box (all dimensions above 0 flattened) are inner_bytes apart.
            let row = (linear / self.box_dims[0] as usize) as u32;
            let unswizzled = shared_base + row * inner_bytes + idx[0] * self.element_bytes;
            let offset = self.swizzle.apply(unswizzled).wrapping_sub(shared_base);
            out.push((inside.then_some(global), offset));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_group_completes_all_but_the_newest_n_committed_groups() {
        let mut g = Groups::default();
        g.issue(1);
        g.commit();
        g.issue(2);
        g.issue(3);
        g.commit();
        g.commit(); // empty group, as pipeline tails commit
        g.issue(4); // uncommitted
        assert_eq!(g.wait(2), vec![1]);
        assert_eq!(g.wait(2), Vec::<i32>::new());
        assert_eq!(g.wait(1), vec![2, 3]);
        assert_eq!(
            g.wait(0),
            Vec::<i32>::new(),
            "the empty group completes, the open one is not waited for"
        );
        assert_eq!(g.pending().copied().collect::<Vec<_>>(), vec![4]);
        assert_eq!(g.drain(), vec![4]);
    }

    #[test]
    fn mbarrier_phase_completes_on_the_last_arrival_and_the_last_transaction_byte() {
        let mut b = Mbarrier::new(2, 1, 0).unwrap();
        assert_eq!(b.arrive(1, 4096, &[]).unwrap(), 0);
        assert_eq!(b.phase, 0);
        assert_eq!(b.arrive(1, 0, &[]).unwrap(), 0);
        assert_eq!(b.phase, 0, "4096 transaction bytes still expected");
        b.complete_tx(4000, &[]);
        assert_eq!(b.phase, 0);
        b.complete_tx(96, &[]);
        assert_eq!((b.phase, b.pending, b.tx), (1, 2, 0));
        // complete_tx before expect_tx: the count goes negative and back (ISA allows either order).
        b.complete_tx(64, &[]);
        b.arrive(2, 64, &[]).unwrap();
        assert_eq!(b.phase, 2);
    }

    #[test]
    fn try_wait_parity_succeeds_at_once_unless_the_current_phase_has_that_parity() {
        let mut b = Mbarrier::new(1, 1, 0).unwrap();
        // Phase 0 in progress: waiting for parity 0 blocks, parity 1 (the "previous" phase) passes.
        assert!(!b.parity_complete(0));
        assert!(b.parity_complete(1));
        let token = b.arrive(1, 0, &[]).unwrap();
        assert!(b.token_complete(token));
        assert!(b.parity_complete(0));
        assert!(!b.parity_complete(1));
    }

    #[test]
    fn arrivals_beyond_the_count_are_reported() {
        let mut b = Mbarrier::new(1, 7, 0).unwrap();
        let err = b.arrive(2, 0, &[]).unwrap_err();
        assert_eq!(err.kind, HazardKind::Mbarrier);
        assert!(err.message.contains("initialized at PTX line 7"), "{err}");
        assert!(Mbarrier::new(0, 1, 0).is_err());
        assert!(Mbarrier::new(1 << 20, 1, 0).is_err());
    }

    #[test]
    fn mbarrier_phases_release_the_arrivers_clocks_to_waiters() {
        let mut b = Mbarrier::new(2, 1, 0).unwrap();
        b.arrive(1, 0, &[3, 0, 0]).unwrap();
        b.arrive(1, 0, &[0, 5, 1]).unwrap();
        assert_eq!(b.completed_clock, vec![3, 5, 1]);
        assert!(b.phase_clock.is_empty());
    }

    #[test]
    fn generic_writes_need_a_fence_before_async_reads() {
        let mut t = SharedTracker::new(256, 4);
        let op = t.op(AsyncOp {
            opcode: "cp.async.bulk.tensor.2d.global.shared::cta.bulk_group".into(),
            line: 40,
            thread: 0,
        });
        t.generic_write(0, 16, 1, 5, 30);
        let h = t
            .begin_async_read(op, 0, 64)
            .expect("unfenced generic write");
        assert_eq!(h.kind, HazardKind::Async);
        assert!(
            h.message.contains("warp 1")
                && h.message.contains("PTX line 30")
                && h.message.contains("fence.proxy.async"),
            "{h}"
        );
        t.end_async_read(op, 0, 64);
        // A fence by another warp that has not seen warp 1's write (its clock entry for warp 1
        // is below the write's 5) does not order it; one that has (after a barrier), or warp 1's
        // own, does.
        t.fence_proxy_async(2, &[0, 4, 9, 0]);
        assert!(t.begin_async_read(op, 0, 16).is_some());
        t.end_async_read(op, 0, 16);
        t.fence_proxy_async(2, &[0, 5, 9, 0]);
        assert!(t.begin_async_read(op, 0, 16).is_none());
        t.end_async_read(op, 0, 16);
        t.generic_write(0, 16, 1, 6, 31);
        t.fence_proxy_async(1, &[0, 6, 0, 0]);
        assert!(t.begin_async_read(op, 0, 16).is_none());
    }

    #[test]
    fn pending_async_writes_and_reads_guard_their_bytes() {
        let mut t = SharedTracker::default(); // grows with the accesses it sees
        let load = t.op(AsyncOp {
            opcode: "cp.async.ca.shared.global".into(),
            line: 12,
            thread: 5,
        });
        assert!(t.begin_async_write(load, 64, 16).is_none());
        let h = t.generic_read(70, 4).expect("read before delivery");
        assert!(
            h.message.contains("line 12") && h.message.contains("0x46"),
            "{h}"
        );
        assert!(t.generic_read(80, 16).is_none());
        assert!(
            t.generic_write(64, 4, 0, 1, 13).is_some(),
            "write into a pending destination"
        );
        t.end_async_write(load, 64, 16);
        assert!(t.generic_read(64, 16).is_none());
        // The landed bytes are the async proxy's: the unfenced generic write at line 13 no
        // longer concerns an async reader of them.
        let reader = t.op(AsyncOp {
            opcode: "wgmma.mma_async".into(),
            line: 14,
            thread: 0,
        });
        assert!(t.begin_async_read(reader, 64, 16).is_none());
        t.end_async_read(reader, 64, 16);
        let mma = t.op(AsyncOp {
            opcode: "wgmma.mma_async".into(),
            line: 20,
            thread: 0,
        });
        t.fence_proxy_async(0, &[1, 0]);
        assert!(t.begin_async_read(mma, 128, 32).is_none());
        assert!(t
            .generic_write(140, 2, 1, 1, 21)
            .unwrap()
            .message
            .contains("still reading"));
        let tma = t.op(AsyncOp {
            opcode: "cp.async.bulk.tensor".into(),
            line: 30,
            thread: 0,
        });
        let h = t
            .begin_async_write(tma, 144, 16)
            .expect("TMA into an operand wgmma still reads");
        assert!(
            h.message.contains("still reading") && h.message.contains("line 20"),
            "{h}"
        );
        t.end_async_write(tma, 144, 16);
        t.end_async_read(mma, 128, 32);
        assert!(t.generic_write(140, 2, 1, 1, 22).is_none());
        assert!(t.begin_async_write(tma, 144, 16).is_none());
    }

    fn map_2d(swizzle: Swizzle, box_inner: u32) -> TensorMap {
        TensorMap::new(
            2,
            0x1000,
            vec![100, 70],
            vec![256],
            vec![box_inner, 8],
            swizzle,
            OobFill::Zero,
        )
        .unwrap()
    }

    #[test]
    fn tensor_map_survives_its_parameter_encoding_and_rejects_foreign_bytes() {
        let m = TensorMap::new(
            1,
            0x4000,
            vec![300, 20, 3],
            vec![320, 6400],
            vec![128, 4, 2],
            Swizzle::B128,
            OobFill::Nan,
        )
        .unwrap();
        assert_eq!(TensorMap::decode(&m.encode()).unwrap(), m);
        assert!(matches!(
            TensorMap::decode(&[0u8; 128]),
            Err(TensorMapError::NotAMap(0))
        ));
    }

    #[test]
    fn tensor_map_checks_the_encode_rules() {
        let ok = |sw, inner, stride, addr| {
            TensorMap::new(
                2,
                addr,
                vec![100, 70],
                vec![stride],
                vec![inner, 8],
                sw,
                OobFill::Zero,
            )
        };
        assert!(ok(Swizzle::B128, 64, 256, 0x1000).is_ok());
        assert!(
            ok(Swizzle::B64, 64, 256, 0x1000).is_err(),
            "128-byte rows exceed a 64-byte swizzle"
        );
        assert!(
            ok(Swizzle::None, 4, 256, 0x1000).is_err(),
            "8-byte inner box"
        );
        assert!(
            ok(Swizzle::None, 8, 200, 0x1000).is_err(),
            "stride not a multiple of 16"
        );
        assert!(ok(Swizzle::None, 8, 256, 0x1008).is_err(), "unaligned base");
        assert!(TensorMap::new(
            2,
            0,
            vec![10],
            vec![],
            vec![300],
            Swizzle::None,
            OobFill::Zero
        )
        .is_err());
    }

    #[test]
    fn tma_boxes_lay_rows_densely_swizzle_by_address_and_mark_out_of_bounds() {
        let m = map_2d(Swizzle::B128, 64);
        let base = 0x400; // 1024-aligned
        let elems = m.box_elements(&[40, 66], base).unwrap();
        assert_eq!(elems.len(), 64 * 8);
        for (i, (global, shared)) in elems.iter().enumerate() {
            let (x, y) = (i % 64, i / 64);
            // Independent statement: element (x, y) of the box sits in row y, 16-byte chunk x/8
            // XOR (y % 8), byte (x % 8) * 2 of the chunk.
            assert_eq!(
                *shared as usize,
                y * 128 + (((x / 8) ^ (y % 8)) * 16) + (x % 8) * 2
            );
            let (gx, gy) = (40 + x as u64, 66 + y as u64);
            let want = (gx < 100 && gy < 70).then(|| 0x1000 + gy * 256 + gx * 2);
            assert_eq!(*global, want, "element ({x},{y})");
        }
        // Negative coordinates are outside too.
        let elems = map_2d(Swizzle::None, 8).box_elements(&[-4, 0], 0).unwrap();
        assert_eq!(elems[0].0, None);
        assert_eq!(elems[4].0, Some(0x1000));
        assert!(m.box_elements(&[0], 0).is_err());
    }
}
