//! Shared-memory bank conflicts, counted lane by lane for every static instruction that accesses
//! shared memory (`ld`/`st` to shared, `ldmatrix`/`stmatrix`, the shared destination of
//! `cp.async`).
//!
//! # The model (and where it comes from)
//! - Shared memory has 32 banks; successive 32-bit words are assigned to successive banks
//!   (CUDA C++ Programming Guide, *Compute Capabilities*, "Shared Memory" of compute
//!   capability 5.x, which 8.x and 9.x refer back to). A bank serves one 32-bit word per
//!   cycle, so a request is split into as many *wavefronts* as the largest number of distinct
//!   words any one bank must serve (Nsight Compute *Profiling Guide*, "Shared memory":
//!   wavefronts are the units of work a request is split into; a bank conflict shows as more
//!   wavefronts than the ideal).
//! - Two lanes that touch the same 32-bit word do not conflict: a read is broadcast (or
//!   multicast) and a write is done by one of them (same guide section).
//! - A warp moves at most 128 bytes (32 banks × 4 bytes) per wavefront, so wider accesses are
//!   served in *phases* of lanes: 64-bit accesses per half-warp (lanes 0–15, 16–31), 128-bit
//!   accesses per quarter-warp (8 lanes each). Bank conflicts can only occur among the lanes of
//!   one phase. This is the rule the CUDA guide gives for 64-bit accesses on compute
//!   capability 3.x and that NVIDIA's performance material (and Nsight Compute's ideal
//!   wavefront counts: 1 for 32-bit, 2 for 64-bit, 4 for 128-bit per full warp) keeps for later
//!   architectures.
//! - `ldmatrix` / `stmatrix` (PTX ISA, "ldmatrix"): each 8×8 matrix of 16-bit elements is
//!   eight rows of 16 bytes whose addresses come from lanes `8j..8j+8`; each matrix is one
//!   phase of 128 bytes, so an `.x4` is ideally 4 wavefronts.
//! - `cp.async` writes its 4, 8 or 16 bytes per lane into shared memory with the same phases
//!   as a store of that width (the ideal `LDGSTS` shared-store wavefronts in Nsight Compute).
//!
//! An access of fewer than 4 bytes occupies the word that holds it. The *ideal* of one
//! warp-instruction is one wavefront per phase that has an active lane; anything above it is a
//! conflict, and its *ways* is the largest number of distinct words one bank served in one
//! phase.
//!
//! What is not modelled: atomics on shared memory, the asynchronous proxy (`wgmma` operands
//! read through descriptors, TMA and bulk copies), and the sm_70+ refinement that lets some
//! uniform 128-bit loads take two wavefronts instead of four (the model's ideal stays four,
//! so it never reports that case as a conflict).

use crate::machine::WARP_SIZE;

/// Banks of shared memory.
pub const BANKS: u32 = 32;
/// Bytes per bank word.
pub const BANK_BYTES: u32 = 4;
/// Bytes one wavefront moves (all banks once).
pub const WAVEFRONT_BYTES: u32 = BANKS * BANK_BYTES;

/// One lane's part of a shared-memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneAccess {
    /// Lane in the warp (0..32).
    pub lane: u8,
    /// Byte offset in the block's shared memory.
    pub offset: u32,
    /// Bytes the lane accesses (1, 2, 4, 8 or 16).
    pub bytes: u8,
}

/// What one warp-instruction's shared access cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wavefronts {
    /// Wavefronts the banks needed.
    pub actual: u32,
    /// Wavefronts without conflicts (one per phase with an active lane).
    pub ideal: u32,
    /// Largest number of distinct words one bank served in one phase (1: conflict-free).
    pub ways: u32,
}

/// Lanes per phase for accesses of `bytes` per lane: 32 up to 4 bytes, 16 for 8, 8 for 16.
pub fn phase_lanes(bytes: u32) -> usize {
    let per_lane = bytes.max(BANK_BYTES);
    (WAVEFRONT_BYTES / per_lane).clamp(1, WARP_SIZE as u32) as usize
}

/// The wavefronts of one warp-instruction whose lanes made `accesses` (all of one width, as
/// every lane of one instruction has; the widest access decides the phases otherwise).
pub fn wavefronts(accesses: &[LaneAccess]) -> Wavefronts {
    let Some(width) = accesses.iter().map(|a| u32::from(a.bytes)).max() else {
        return Wavefronts::default();
    };
    let per_phase = phase_lanes(width);
    let phases = WARP_SIZE.div_ceil(per_phase);
    let mut out = Wavefronts::default();
    // Distinct words per bank within one phase: at most 32 lanes × 4 words each.
    let mut words: Vec<u32> = Vec::with_capacity(128);
    for p in 0..phases {
        let lanes = p * per_phase..(p + 1) * per_phase;
        words.clear();
        for a in accesses
            .iter()
            .filter(|a| lanes.contains(&usize::from(a.lane)))
        {
            let first = a.offset / BANK_BYTES;
            let last = (a.offset + u32::from(a.bytes.max(1)) - 1) / BANK_BYTES;
            words.extend(first..=last);
        }
        if words.is_empty() {
            continue;
        }
        words.sort_unstable();
        words.dedup();
        let mut per_bank = [0u32; BANKS as usize];
        for w in &words {
            per_bank[(w % BANKS) as usize] += 1;
        }
        let ways = per_bank.iter().copied().max().unwrap_or(1).max(1);
        out.actual += ways;
        out.ideal += 1;
        out.ways = out.ways.max(ways);
    }
    out
}

/// The shared-memory traffic of one static instruction over a launch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharedAccessStats {
    /// PTX line of the instruction.
    pub line: u32,
    /// Its opcode.
    pub opcode: String,
    /// Warp-instructions that accessed shared memory.
    pub executions: u64,
    /// Wavefronts they needed.
    pub wavefronts: u64,
    /// Wavefronts they would need without bank conflicts.
    pub ideal: u64,
    /// The worst conflict seen: distinct words one bank served in one phase.
    pub worst_ways: u32,
    /// Executions that had a conflict.
    pub conflicted_executions: u64,
}

impl SharedAccessStats {
    /// Whether any execution had a bank conflict.
    pub fn conflicted(&self) -> bool {
        self.wavefronts > self.ideal
    }

    /// Adds one warp-instruction's cost.
    pub fn add(&mut self, w: Wavefronts) {
        self.executions += 1;
        self.wavefronts += u64::from(w.actual);
        self.ideal += u64::from(w.ideal);
        self.worst_ways = self.worst_ways.max(w.ways);
        if w.actual > w.ideal {
            self.conflicted_executions += 1;
        }
    }

    /// Folds in the same instruction's numbers from another launch.
    pub fn merge(&mut self, other: &SharedAccessStats) {
        self.executions += other.executions;
        self.wavefronts += other.wavefronts;
        self.ideal += other.ideal;
        self.worst_ways = self.worst_ways.max(other.worst_ways);
        self.conflicted_executions += other.conflicted_executions;
    }
}

impl std::fmt::Display for SharedAccessStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PTX line {} `{}`: {} wavefronts for an ideal {} over {} executions",
            self.line, self.opcode, self.wavefronts, self.ideal, self.executions
        )?;
        if self.conflicted() {
            write!(
                f,
                " ({}-way bank conflict at worst, in {} executions)",
                self.worst_ways, self.conflicted_executions
            )?;
        }
        Ok(())
    }
}

/// The shared-memory instructions of one kernel's code, summed over the launches of a
/// [`collect`] scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelSharedAccesses {
    /// The kernel (`.entry` name).
    pub kernel: String,
    /// A fingerprint of the PTX module it came from (variants of one kernel differ).
    pub module: u64,
    /// Its shared-memory instructions in PTX line order.
    pub accesses: Vec<SharedAccessStats>,
}

impl KernelSharedAccesses {
    /// The instructions that had a bank conflict.
    pub fn conflicts(&self) -> impl Iterator<Item = &SharedAccessStats> {
        self.accesses.iter().filter(|s| s.conflicted())
    }
}

thread_local! {
    static SINK: std::cell::RefCell<Option<Vec<KernelSharedAccesses>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` and returns, with its result, the shared-memory statistics of every launch this
/// thread made inside it, merged per kernel code. Code that launches through layers that keep
/// only the last report (a self-test launching several variants) is measured whole this way.
/// Scopes nest: an inner scope's launches count in the outer one too.
pub fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<KernelSharedAccesses>) {
    let outer = SINK.with(|s| s.borrow_mut().replace(Vec::new()));
    // Restores the outer scope even when `f` panics (self-tests are run under catch_unwind).
    struct Restore(Option<Option<Vec<KernelSharedAccesses>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                let inner = SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
                for k in inner.unwrap_or_default() {
                    offer(&k.kernel, k.module, &k.accesses);
                }
            }
        }
    }
    let mut restore = Restore(Some(outer));
    let r = f();
    let outer = restore.0.take().unwrap_or_default();
    let inner = SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    let inner = inner.unwrap_or_default();
    for k in &inner {
        offer(&k.kernel, k.module, &k.accesses);
    }
    (r, inner)
}

/// Adds one launch's statistics to the enclosing [`collect`] scope, if any.
pub(crate) fn offer(kernel: &str, module: u64, accesses: &[SharedAccessStats]) {
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let Some(sink) = s.as_mut() else {
            return;
        };
        let entry = match sink
            .iter()
            .position(|k| k.kernel == kernel && k.module == module)
        {
            Some(i) => &mut sink[i],
            None => {
                sink.push(KernelSharedAccesses {
                    kernel: kernel.to_string(),
                    module,
                    accesses: Vec::new(),
                });
                sink.last_mut().expect("just pushed")
            }
        };
        for a in accesses {
            match entry.accesses.iter_mut().find(|e| e.line == a.line) {
                Some(e) => e.merge(a),
                None => entry.accesses.push(a.clone()),
            }
        }
        entry.accesses.sort_by_key(|e| e.line);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warp(bytes: u8, offset: impl Fn(u32) -> u32) -> Vec<LaneAccess> {
        (0..32u8)
            .map(|l| LaneAccess {
                lane: l,
                offset: offset(u32::from(l)),
                bytes,
            })
            .collect()
    }

    /// A brute-force reference: every pair of lanes of one phase that touch different words of
    /// one bank; the ways are the largest set of distinct words in one bank, found by listing
    /// each bank's words without sorting tricks.
    fn reference(acc: &[LaneAccess]) -> (u32, u32) {
        let width = acc.iter().map(|a| u32::from(a.bytes)).max().unwrap().max(4);
        let per = (128 / width) as usize;
        let (mut actual, mut ideal) = (0, 0);
        for p in 0..32 / per {
            let mut banks: Vec<Vec<u32>> = vec![Vec::new(); 32];
            let mut any = false;
            for a in acc {
                if usize::from(a.lane) / per != p {
                    continue;
                }
                any = true;
                let mut b = a.offset;
                while b < a.offset + u32::from(a.bytes) {
                    let word = b / 4;
                    let bank = &mut banks[(word % 32) as usize];
                    if !bank.contains(&word) {
                        bank.push(word);
                    }
                    b += 1;
                }
            }
            if any {
                ideal += 1;
                actual += banks.iter().map(Vec::len).max().unwrap().max(1) as u32;
            }
        }
        (actual, ideal)
    }

    #[test]
    fn unit_stride_words_are_one_wavefront_and_a_column_of_a_32_word_row_is_32_way() {
        let w = wavefronts(&warp(4, |l| 4 * l));
        assert_eq!((w.actual, w.ideal, w.ways), (1, 1, 1));
        let w = wavefronts(&warp(4, |l| 128 * l));
        assert_eq!((w.actual, w.ideal, w.ways), (32, 1, 32));
        // Every lane the same word: a broadcast.
        let w = wavefronts(&warp(4, |_| 64));
        assert_eq!((w.actual, w.ideal), (1, 1));
        // A stride of two words: lanes l and l + 16 share a bank.
        let w = wavefronts(&warp(4, |l| 8 * l));
        assert_eq!((w.actual, w.ways), (2, 2));
    }

    #[test]
    fn wide_accesses_are_split_into_phases() {
        // 16 bytes per lane, consecutive: four quarter-warps of 128 bytes.
        let w = wavefronts(&warp(16, |l| 16 * l));
        assert_eq!((w.actual, w.ideal, w.ways), (4, 4, 1));
        // Rows of 64 bytes read 16 bytes at a time down a column: lanes 0, 2, 4, 6 of a
        // quarter-warp hit the same four banks (an unswizzled 64-byte-row ldmatrix).
        let w = wavefronts(&warp(16, |l| 64 * l));
        assert_eq!((w.actual, w.ideal, w.ways), (16, 4, 4));
        // 128-byte rows: all eight lanes of a phase on the same four banks.
        let w = wavefronts(&warp(16, |l| 128 * l));
        assert_eq!((w.actual, w.ways), (32, 8));
        // The 128-byte XOR swizzle (16-byte chunk c of row r stored at chunk c ^ (r % 8)):
        // chunk 0 of rows 0..8 lands in eight different chunks, conflict-free.
        let w = wavefronts(&warp(16, |l| 128 * l + 16 * (l % 8)));
        assert_eq!((w.actual, w.ideal), (4, 4));
        // 8 bytes per lane: half-warps.
        let w = wavefronts(&warp(8, |l| 8 * l));
        assert_eq!((w.actual, w.ideal), (2, 2));
    }

    #[test]
    fn partial_warps_and_sub_word_accesses() {
        // ldmatrix.x1: addresses from lanes 0..8 only.
        let acc: Vec<LaneAccess> = warp(16, |l| 16 * l).into_iter().take(8).collect();
        assert_eq!(wavefronts(&acc).ideal, 1);
        // Two-byte stores: lanes 2k and 2k+1 write the halves of one word.
        let w = wavefronts(&warp(2, |l| 2 * l));
        assert_eq!((w.actual, w.ideal), (1, 1));
        assert_eq!(wavefronts(&[]), Wavefronts::default());
    }

    #[test]
    fn random_patterns_agree_with_a_brute_force_count() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::random();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..2000 {
            let bytes = [1u8, 2, 4, 8, 16][rng.gen_range(0..5)];
            let lanes = rng.gen_range(1..=32u8);
            let span = [256u32, 1024, 8192][rng.gen_range(0..3)];
            let mut acc = Vec::new();
            for lane in 0..lanes {
                if rng.gen_bool(0.8) {
                    let offset = rng.gen_range(0..span / u32::from(bytes)) * u32::from(bytes);
                    acc.push(LaneAccess {
                        lane,
                        offset,
                        bytes,
                    });
                }
            }
            if acc.is_empty() {
                continue;
            }
            let w = wavefronts(&acc);
            assert_eq!((w.actual, w.ideal), reference(&acc), "seed {seed}: {acc:?}");
        }
    }
}
