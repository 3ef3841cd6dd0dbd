//! Execution state: a block (CTA) of warps of 32 lanes, each lane with its own registers, program
//! counter and exit flag.
//!
//! Registers hold raw bit patterns (`u64`; a `.b128` register is not supported): an instruction's
//! type says how to read them. Predicates are registers holding 0 or 1. The register file of a
//! warp is laid out register-major (`regs[reg * 32 + lane]`) so an instruction's loop over lanes
//! touches consecutive words.
//!
//! Divergence: every lane has its own program counter. The warp scheduler runs, at each step, the
//! lanes whose next instruction has the smallest priority among the warp's live lanes; the
//! priorities ([`crate::exec::reconverge`]) order the control-flow graph so that a join point
//! comes after every path into it and a loop's exit after the loop's body, so lanes that split
//! at a branch run one side, then the other, and meet again at the join (the reconvergence at
//! the immediate post-dominator that the hardware provides for structured code).

use crate::ptx::RegId;

/// Lanes per warp.
pub const WARP_SIZE: usize = 32;

/// Generic-address window of the block's shared memory (`cvta.shared` adds it).
pub const SHARED_WINDOW: u64 = 0x7f00_0000_0000;
/// Generic-address window of a thread's local memory (`cvta.local` adds it).
pub const LOCAL_WINDOW: u64 = 0x7e00_0000_0000;
/// Generic-address window of the kernel parameters (`cvta.param` adds it).
pub const PARAM_WINDOW: u64 = 0x7d00_0000_0000;
/// Size of each generic window.
pub const WINDOW_SIZE: u64 = 0x0100_0000_0000;

/// A bit mask of lanes.
pub type LaneMask = u32;

/// All 32 lanes.
pub const FULL_MASK: LaneMask = u32::MAX;

/// What a warp is waiting for, if anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Runnable.
    None,
    /// At a block barrier `bar.sync id` (instruction index, barrier id, expected thread count).
    Barrier {
        /// Instruction index of the barrier.
        pc: usize,
        /// Barrier id (0..15).
        id: u32,
        /// Threads expected (None: all threads of the block).
        count: Option<u32>,
    },
    /// Re-executes the instruction at `pc` when other warps have run (a wait that failed, such as
    /// a blocking `mbarrier` wait or an incomplete rendezvous of an extension instruction).
    Retry {
        /// Instruction index.
        pc: usize,
    },
}

/// One warp: 32 lanes' registers, program counters and exit flags.
#[derive(Clone, Debug)]
pub struct Warp {
    /// Warp index within the block (`%warpid`).
    pub index: usize,
    /// Registers, `regs[reg * 32 + lane]`.
    pub regs: Vec<u64>,
    /// Program counter (instruction index) per lane.
    pub pc: [usize; WARP_SIZE],
    /// Lanes that exist (threads of the block; the last warp may be partial).
    pub present: LaneMask,
    /// Lanes that have exited.
    pub exited: LaneMask,
    /// What the warp waits for.
    pub wait: Wait,
    /// Per-lane local memory (each lane its own bytes).
    pub local: Vec<Vec<u8>>,
    /// Vector clock of this warp for the race sanitizer (one entry per warp of the block).
    pub clock: Vec<u32>,
    /// What the warp's last polling load saw: (instruction index, a hash of the values).
    pub last_poll: Option<(usize, u64)>,
    /// The hash of the values the current polling load saw (set by the load).
    pub poll_value: u64,
}

impl Warp {
    /// A warp with `nregs` registers (zeroed), lanes `present`, local memory of `local_bytes`.
    pub fn new(
        index: usize,
        nregs: usize,
        present: LaneMask,
        local_bytes: usize,
        nwarps: usize,
    ) -> Warp {
        let mut clock = vec![0u32; nwarps];
        if let Some(c) = clock.get_mut(index) {
            *c = 1;
        }
        Warp {
            index,
            regs: vec![0; nregs * WARP_SIZE],
            pc: [0; WARP_SIZE],
            present,
            exited: !present,
            wait: Wait::None,
            local: (0..WARP_SIZE).map(|_| vec![0u8; local_bytes]).collect(),
            clock,
            last_poll: None,
            poll_value: 0,
        }
    }

    /// The value of register `r` in `lane`.
    #[inline]
    pub fn reg(&self, lane: usize, r: RegId) -> u64 {
        self.regs[r.0 as usize * WARP_SIZE + lane]
    }

    /// Sets register `r` in `lane`.
    #[inline]
    pub fn set_reg(&mut self, lane: usize, r: RegId, v: u64) {
        self.regs[r.0 as usize * WARP_SIZE + lane] = v;
    }

    /// Lanes still running (present and not exited).
    pub fn live(&self) -> LaneMask {
        self.present & !self.exited
    }

    /// Whether every lane has exited.
    pub fn done(&self) -> bool {
        self.live() == 0
    }

    /// The program counter that runs next (smallest `priority`, indexed by program counter) and
    /// the live lanes at it.
    pub fn next_group(&self, priority: &[u32]) -> Option<(usize, LaneMask)> {
        let live = self.live();
        if live == 0 {
            return None;
        }
        let first = live.trailing_zeros() as usize;
        let mut best_pc = self.pc[first];
        let mut best = priority.get(best_pc).copied().unwrap_or(u32::MAX);
        let mut mask = 0u32;
        for lane in lanes(live) {
            let pc = self.pc[lane];
            if pc == best_pc {
                mask |= 1 << lane;
                continue;
            }
            let p = priority.get(pc).copied().unwrap_or(u32::MAX);
            if p < best || (p == best && pc < best_pc) {
                best = p;
                best_pc = pc;
                mask = 1 << lane;
            }
        }
        Some((best_pc, mask))
    }
}

/// Lanes of a mask, in order.
pub fn lanes(mask: LaneMask) -> impl Iterator<Item = usize> {
    let mut m = mask;
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(l)
        }
    })
}

/// Launch geometry and identity of the running block, as the special registers report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// `%nctaid`
    pub grid: [u32; 3],
    /// `%ntid`
    pub block: [u32; 3],
    /// `%ctaid` of the running block.
    pub ctaid: [u32; 3],
    /// Dynamic shared memory bytes of the launch.
    pub dynamic_smem: u32,
    /// Static + dynamic shared memory bytes.
    pub total_smem: u32,
    /// Linear index of the block (`%smid` reports it modulo a nominal SM count).
    pub block_linear: u64,
}

impl Geometry {
    /// Threads per block.
    pub fn threads(&self) -> u32 {
        self.block[0] * self.block[1] * self.block[2]
    }

    /// Warps per block.
    pub fn warps(&self) -> usize {
        (self.threads() as usize).div_ceil(WARP_SIZE)
    }

    /// `%tid` of thread `linear` (x fastest).
    pub fn tid(&self, linear: u32) -> [u32; 3] {
        let x = linear % self.block[0];
        let y = (linear / self.block[0]) % self.block[1];
        let z = linear / (self.block[0] * self.block[1]);
        [x, y, z]
    }
}
