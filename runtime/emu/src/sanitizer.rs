//! The sanitizer: findings, and the shadow state of shared memory that finds races between warps.
//!
//! Races use vector clocks, one entry per warp of the block: a barrier that a set of warps
//! completes joins their clocks (so named barriers among a subset of warps order only those),
//! and each warp advances its own entry after every synchronization. Every shared byte remembers
//! its last write (warp, that warp's clock) and the reads since (one reader, or a clock per warp
//! when several warps read it). An access races with an earlier one by another warp when the
//! accessing warp's clock has not seen it, and at least one of the two is a write. Atomics do
//! not race with each other.

use std::fmt;

/// What kind of problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// An access outside every allocation of its state space.
    OutOfBounds,
    /// Two warps touch the same shared bytes, one writes, nothing orders them.
    Race,
    /// An asynchronous-proxy hazard (wgmma / cp.async / TMA ordering).
    AsyncHazard,
    /// An mbarrier used against its rules.
    Mbarrier,
    /// Anything else the rules forbid (e.g. `setmaxnreg` misuse).
    Other,
}

/// One sanitizer finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What kind.
    pub kind: FindingKind,
    /// The kernel.
    pub kernel: String,
    /// `%ctaid` of the block.
    pub block: [u32; 3],
    /// PTX line of the instruction.
    pub line: u32,
    /// The instruction's opcode.
    pub opcode: String,
    /// Lane (thread index in the block) involved, if one.
    pub thread: Option<u32>,
    /// The details (address, allocation, the other access).
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FindingKind::OutOfBounds => "out of bounds",
            FindingKind::Race => "shared-memory race",
            FindingKind::AsyncHazard => "async-proxy hazard",
            FindingKind::Mbarrier => "mbarrier misuse",
            FindingKind::Other => "rule violation",
        };
        write!(
            f,
            "{kind}: kernel {}, block {:?}, PTX line {} `{}`",
            self.kernel, self.block, self.line, self.opcode
        )?;
        if let Some(t) = self.thread {
            write!(f, ", thread {t}")?;
        }
        write!(f, ": {}", self.message)
    }
}

const NONE: u64 = u64::MAX;
const MANY: u64 = 1 << 63;

/// An earlier access an access raced with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other warp.
    pub warp: usize,
    /// Whether the other access was a write.
    pub was_write: bool,
    /// Byte offset in shared memory.
    pub offset: u32,
    /// PTX line of the other access.
    pub line: u32,
}

/// Shadow state of a block's shared memory for race detection.
#[derive(Clone, Debug, Default)]
pub struct SharedShadow {
    /// Last write per byte: `warp << 32 | clock`, or NONE.
    write: Vec<u64>,
    /// PTX line of the last write per byte.
    write_line: Vec<u32>,
    /// Reads per byte: NONE, `warp << 32 | clock` for one reader, or MANY | index into `many`.
    read: Vec<u64>,
    /// PTX line of the last read per byte.
    read_line: Vec<u32>,
    /// Per-warp read clocks of bytes read by several warps: one row of `nwarps` entries per
    /// read set, in one flat pool (a row per byte would cost an allocation per byte).
    many: Vec<u32>,
    nwarps: usize,
    /// `many`'s length past which the next write compacts it: twice the length the last
    /// compaction kept (so compaction costs amortized O(1) per row added, even when most rows
    /// stay live: a deep ring whose bytes each several warps read keeps ~one row per byte).
    compact_at: usize,
}

impl SharedShadow {
    /// Shadow for `bytes` of shared memory and `nwarps` warps.
    pub fn new(bytes: usize, nwarps: usize) -> SharedShadow {
        SharedShadow {
            write: vec![NONE; bytes],
            write_line: vec![0; bytes],
            read: vec![NONE; bytes],
            read_line: vec![0; bytes],
            many: Vec::new(),
            nwarps,
            compact_at: 0,
        }
    }

    /// Records a read of `[off, off+len)` by `warp` with vector clock `clock`; returns the first
    /// unordered earlier write by another warp.
    pub fn read(
        &mut self,
        off: usize,
        len: usize,
        warp: usize,
        clock: &[u32],
        line: u32,
    ) -> Option<Conflict> {
        let mut conflict = None;
        let end = (off + len).min(self.write.len());
        let own = u64::from(clock.get(warp).copied().unwrap_or(0));
        for b in off..end {
            let w = self.write[b];
            if w != NONE && conflict.is_none() {
                let (ww, wc) = ((w >> 32) as usize, w as u32);
                if ww != warp && clock.get(ww).copied().unwrap_or(0) < wc {
                    conflict = Some(Conflict {
                        warp: ww,
                        was_write: true,
                        offset: b as u32,
                        line: self.write_line[b],
                    });
                }
            }
            let r = self.read[b];
            self.read_line[b] = line;
            if r == NONE {
                self.read[b] = (warp as u64) << 32 | own;
            } else if r & MANY != 0 {
                let at = (r & !MANY) as usize * self.nwarps + warp;
                if let Some(c) = self.many.get_mut(at) {
                    *c = own as u32;
                }
            } else {
                let (rw, rc) = ((r >> 32) as usize, r as u32);
                if rw == warp || clock.get(rw).copied().unwrap_or(0) >= rc {
                    // The earlier read happened before this one: one reader suffices.
                    self.read[b] = (warp as u64) << 32 | own;
                } else {
                    let row = self.many.len() / self.nwarps.max(1);
                    self.many.resize(self.many.len() + self.nwarps, 0);
                    self.many[row * self.nwarps + rw] = rc;
                    self.many[row * self.nwarps + warp] = own as u32;
                    self.read[b] = MANY | row as u64;
                }
            }
        }
        conflict
    }

    /// Records a write of `[off, off+len)` by `warp`; returns the first unordered earlier access
    /// (write or read) by another warp.
    pub fn write(
        &mut self,
        off: usize,
        len: usize,
        warp: usize,
        clock: &[u32],
        line: u32,
    ) -> Option<Conflict> {
        let mut conflict = None;
        let end = (off + len).min(self.write.len());
        let own = u64::from(clock.get(warp).copied().unwrap_or(0));
        let seen = |w: usize, c: u32| w == warp || clock.get(w).copied().unwrap_or(0) >= c;
        for b in off..end {
            if conflict.is_none() {
                let w = self.write[b];
                if w != NONE && !seen((w >> 32) as usize, w as u32) {
                    conflict = Some(Conflict {
                        warp: (w >> 32) as usize,
                        was_write: true,
                        offset: b as u32,
                        line: self.write_line[b],
                    });
                }
            }
            if conflict.is_none() {
                let r = self.read[b];
                if r != NONE {
                    if r & MANY != 0 {
                        let row = (r & !MANY) as usize * self.nwarps;
                        if let Some(v) = self.many.get(row..row + self.nwarps) {
                            if let Some((rw, _)) = v
                                .iter()
                                .enumerate()
                                .find(|(rw, c)| **c != 0 && !seen(*rw, **c))
                            {
                                conflict = Some(Conflict {
                                    warp: rw,
                                    was_write: false,
                                    offset: b as u32,
                                    line: self.read_line[b],
                                });
                            }
                        }
                    } else if !seen((r >> 32) as usize, r as u32) {
                        conflict = Some(Conflict {
                            warp: (r >> 32) as usize,
                            was_write: false,
                            offset: b as u32,
                            line: self.read_line[b],
                        });
                    }
                }
            }
            self.write[b] = (warp as u64) << 32 | own;
            self.write_line[b] = line;
            self.read[b] = NONE;
        }
        if self.many.len() > self.compact_at.max(self.nwarps << 16) {
            self.compact();
            self.compact_at = 2 * self.many.len();
        }
        conflict
    }

    /// Drops read vectors no byte refers to any more.
    fn compact(&mut self) {
        let n = self.nwarps;
        let mut keep = Vec::new();
        for r in self.read.iter_mut() {
            if *r != NONE && *r & MANY != 0 {
                let row = (*r & !MANY) as usize * n;
                if let Some(v) = self.many.get(row..row + n) {
                    *r = MANY | (keep.len() / n.max(1)) as u64;
                    keep.extend_from_slice(v);
                }
            }
        }
        self.many = keep;
    }
}

/// Joins the clocks of warps that complete a synchronization together and advances each one's
/// own entry: afterwards every participant has seen everything each did before.
pub fn join_clocks(clocks: &mut [&mut Vec<u32>]) {
    let n = clocks.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut joined = vec![0u32; n];
    for c in clocks.iter() {
        for (j, v) in joined.iter_mut().zip(c.iter()) {
            *j = (*j).max(*v);
        }
    }
    for c in clocks.iter_mut() {
        c.clone_from(&joined);
    }
}
