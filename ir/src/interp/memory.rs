//! A block's shared memory: shared tiles, vectors and semaphores.

use std::collections::HashMap;

use crate::module::{Func, Op};
use crate::ops::OpKind;
use crate::types::Type;

/// What shared memory holds before anything is written: a NaN with a payload that no arithmetic
/// produces (rounding to any dtype changes a NaN's payload), so reads of it can be recognized.
pub(crate) const UNWRITTEN: f64 = f64::from_bits(0x7ff8_dead_beef_0001);

/// Whether a shared element was never written.
pub(crate) fn is_unwritten(x: f64) -> bool {
    x.to_bits() == UNWRITTEN.to_bits()
}

/// What a shared element holds while a `copy_start` into it has not been waited: another NaN
/// payload no arithmetic produces, so a read of it is recognized as a missing `copy_wait`.
pub(crate) const IN_FLIGHT: f64 = f64::from_bits(0x7ff8_dead_beef_0002);

/// Whether a shared element is the destination of a `copy_start` not yet waited.
pub(crate) fn is_in_flight(x: f64) -> bool {
    x.to_bits() == IN_FLIGHT.to_bits()
}

/// One warp's `copy_start` groups: the open one and the committed ones, oldest first.
#[derive(Debug, Default)]
struct WarpCopyGroups {
    open: Vec<PendingCopy>,
    committed: std::collections::VecDeque<Vec<PendingCopy>>,
}

/// A reference to a shared object: allocation `alloc`, element `elem` of it (0 for a single
/// object); `whole` when the reference is to a whole shared array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SharedRef {
    pub alloc: u32,
    pub elem: u32,
    pub whole: bool,
}

/// One `alloc_shared`: `len` objects of type `elem`.
#[derive(Debug)]
struct Alloc {
    elem: Type,
    len: u32,
    is_array: bool,
    /// Elements of every object, object after object, each row-major. NaN until written.
    data: Vec<f64>,
    sems: Vec<Sem>,
}

/// A semaphore's state.
#[derive(Debug, Default)]
struct Sem {
    initialized: bool,
    /// Arrivals that complete a phase.
    count: u32,
    arrivals: u32,
    expected_bytes: u64,
    issued_bytes: u64,
    /// Phases completed so far.
    phase: u64,
    /// Async copies of the current phase, applied when it completes.
    pending: Vec<PendingCopy>,
}

/// Writes of an async copy into shared memory: (allocation, offset, value).
#[derive(Debug)]
pub(crate) struct PendingCopy {
    pub alloc: u32,
    pub writes: Vec<(usize, f64)>,
}

/// Why a semaphore operation failed.
#[derive(Debug)]
pub(crate) enum SemError {
    NotInitialized,
    TooManyArrivals { count: u32 },
    TooManyBytes { expected: u64, issued: u64 },
}

impl SemError {
    pub fn message(&self, sem: &str) -> String {
        match self {
            SemError::NotInitialized => format!("semaphore {sem} is used before `sem.init`"),
            SemError::TooManyArrivals { count } => format!(
                "semaphore {sem} got more arrivals than the {count} its phase expects"
            ),
            SemError::TooManyBytes { expected, issued } => format!(
                "async copies on semaphore {sem} delivered {issued} bytes but its phase expects {expected}"
            ),
        }
    }
}

/// Bytes the interpreter holds for one semaphore (its state and its list of pending copies).
pub(crate) const SEM_BYTES: u64 = std::mem::size_of::<Sem>() as u64;

/// Bytes the interpreter holds per element of a pending async copy (its offset and value).
pub(crate) const PENDING_ELEMENT_BYTES: u64 = std::mem::size_of::<(usize, f64)>() as u64;

/// The shared memory of one block.
#[derive(Debug)]
pub(crate) struct BlockMemory {
    allocs: Vec<Alloc>,
    by_op: HashMap<*const Op, u32>,
    /// Bytes of async copies waiting for their semaphore's phase to complete or their
    /// `copy_wait`.
    pending_bytes: u64,
    /// `copy_start` groups by warp.
    copy_groups: HashMap<usize, WarpCopyGroups>,
}

impl BlockMemory {
    /// Allocates every `alloc_shared` at the top level of `kernel`'s body.
    pub fn new(kernel: &Func) -> BlockMemory {
        let mut allocs = Vec::new();
        let mut by_op = HashMap::new();
        for op in &kernel.body.ops {
            if !matches!(op.kind, OpKind::AllocShared) {
                continue;
            }
            let Some(ty) = op.results.first().map(|r| kernel.value_type(*r)) else {
                continue;
            };
            let (elem, len, is_array) = match ty {
                Type::SharedArray { elem, len } => ((**elem).clone(), *len, true),
                other => (other.clone(), 1, false),
            };
            let per = elem.num_elements().unwrap_or(0) as usize;
            let sems = if matches!(elem, Type::Semaphore) {
                (0..len).map(|_| Sem::default()).collect()
            } else {
                Vec::new()
            };
            by_op.insert(op as *const Op, allocs.len() as u32);
            allocs.push(Alloc {
                elem,
                len,
                is_array,
                data: vec![UNWRITTEN; per * len as usize],
                sems,
            });
        }
        BlockMemory {
            allocs,
            by_op,
            pending_bytes: 0,
            copy_groups: HashMap::new(),
        }
    }

    /// Bytes of async copies waiting for their semaphore's phase to complete.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// The reference an `alloc_shared` op yields.
    pub fn alloc_of(&self, op: &Op) -> Option<SharedRef> {
        let alloc = *self.by_op.get(&(op as *const Op))?;
        Some(SharedRef {
            alloc,
            elem: 0,
            whole: self.allocs[alloc as usize].is_array,
        })
    }

    /// Number of objects in the allocation `r` points into.
    pub fn array_len(&self, r: SharedRef) -> u32 {
        self.allocs[r.alloc as usize].len
    }

    /// The elements of the shared tile or vector `r`.
    pub fn data(&self, r: SharedRef) -> &[f64] {
        let a = &self.allocs[r.alloc as usize];
        let per = a.elem.num_elements().unwrap_or(0) as usize;
        let start = per * r.elem as usize;
        &a.data[start..start + per]
    }

    pub fn data_mut(&mut self, r: SharedRef) -> &mut [f64] {
        let a = &mut self.allocs[r.alloc as usize];
        let per = a.elem.num_elements().unwrap_or(0) as usize;
        let start = per * r.elem as usize;
        &mut a.data[start..start + per]
    }

    /// Offset of object `r`'s first element within its allocation.
    pub fn base(&self, r: SharedRef) -> usize {
        let a = &self.allocs[r.alloc as usize];
        a.elem.num_elements().unwrap_or(0) as usize * r.elem as usize
    }

    fn sem(&mut self, r: SharedRef) -> &mut Sem {
        &mut self.allocs[r.alloc as usize].sems[r.elem as usize]
    }

    pub fn sem_init(&mut self, r: SharedRef, count: u32) {
        // Copies pending on the semaphore's previous life are dropped with it.
        let dropped: u64 = self
            .sem(r)
            .pending
            .iter()
            .map(|c| c.writes.len() as u64 * PENDING_ELEMENT_BYTES)
            .sum();
        self.pending_bytes -= dropped;
        *self.sem(r) = Sem {
            initialized: true,
            count,
            ..Sem::default()
        };
    }

    pub fn sem_arrive(&mut self, r: SharedRef) -> Result<(), SemError> {
        let s = self.sem(r);
        if !s.initialized {
            return Err(SemError::NotInitialized);
        }
        if s.arrivals >= s.count {
            return Err(SemError::TooManyArrivals { count: s.count });
        }
        s.arrivals += 1;
        self.try_complete(r)
    }

    pub fn sem_expect(&mut self, r: SharedRef, bytes: u64) -> Result<(), SemError> {
        let s = self.sem(r);
        if !s.initialized {
            return Err(SemError::NotInitialized);
        }
        s.expected_bytes += bytes;
        self.try_complete(r)
    }

    pub fn sem_copy(
        &mut self,
        r: SharedRef,
        bytes: u64,
        copy: PendingCopy,
    ) -> Result<(), SemError> {
        let s = self.sem(r);
        if !s.initialized {
            return Err(SemError::NotInitialized);
        }
        s.issued_bytes += bytes;
        let held = copy.writes.len() as u64 * PENDING_ELEMENT_BYTES;
        s.pending.push(copy);
        self.pending_bytes += held;
        self.try_complete(r)
    }

    /// Parity of the number of completed phases (what `sem.wait` compares against).
    pub fn sem_phase_parity(&self, r: SharedRef) -> u64 {
        self.allocs[r.alloc as usize].sems[r.elem as usize].phase % 2
    }

    pub fn sem_initialized(&self, r: SharedRef) -> bool {
        self.allocs[r.alloc as usize].sems[r.elem as usize].initialized
    }

    /// Completes the current phase when every arrival and every expected byte is in.
    fn try_complete(&mut self, r: SharedRef) -> Result<(), SemError> {
        let s = self.sem(r);
        if s.arrivals < s.count || s.issued_bytes < s.expected_bytes {
            return Ok(());
        }
        if s.issued_bytes > s.expected_bytes {
            return Err(SemError::TooManyBytes {
                expected: s.expected_bytes,
                issued: s.issued_bytes,
            });
        }
        let pending = std::mem::take(&mut s.pending);
        s.arrivals = 0;
        s.expected_bytes = 0;
        s.issued_bytes = 0;
        s.phase += 1;
        for copy in pending {
            self.pending_bytes -= copy.writes.len() as u64 * PENDING_ELEMENT_BYTES;
            let data = &mut self.allocs[copy.alloc as usize].data;
            for (off, v) in copy.writes {
                data[off] = v;
            }
        }
        Ok(())
    }

    /// Adds a `copy_start`'s writes to warp `w`'s open group; its destination elements read as
    /// [`IN_FLIGHT`] until a `copy_wait` covers the group. The caller has checked that none of
    /// them is in flight already.
    pub fn copy_start(&mut self, w: usize, copy: PendingCopy) {
        let data = &mut self.allocs[copy.alloc as usize].data;
        for &(off, _) in &copy.writes {
            data[off] = IN_FLIGHT;
        }
        self.pending_bytes += copy.writes.len() as u64 * PENDING_ELEMENT_BYTES;
        self.copy_groups.entry(w).or_default().open.push(copy);
    }

    /// Closes warp `w`'s open copy group (possibly empty).
    pub fn copy_commit(&mut self, w: usize) {
        let g = self.copy_groups.entry(w).or_default();
        let open = std::mem::take(&mut g.open);
        g.committed.push_back(open);
    }

    /// Lands every committed copy group of warp `w` but the `keep` most recent.
    pub fn copy_wait(&mut self, w: usize, keep: usize) {
        let Some(g) = self.copy_groups.get_mut(&w) else {
            return;
        };
        let landed: Vec<Vec<PendingCopy>> = if g.committed.len() > keep {
            let n = g.committed.len() - keep;
            g.committed.drain(..n).collect()
        } else {
            Vec::new()
        };
        for copy in landed.into_iter().flatten() {
            self.pending_bytes -= copy.writes.len() as u64 * PENDING_ELEMENT_BYTES;
            let data = &mut self.allocs[copy.alloc as usize].data;
            for (off, v) in copy.writes {
                data[off] = v;
            }
        }
    }

    /// A name for a shared object in error messages: `#alloc` or `#alloc[elem]`.
    pub fn describe(&self, r: SharedRef) -> String {
        if self.allocs[r.alloc as usize].is_array {
            format!("#{}[{}]", r.alloc, r.elem)
        } else {
            format!("#{}", r.alloc)
        }
    }

    /// A description of a semaphore and its current phase, for error messages.
    pub fn describe_sem(&self, r: SharedRef) -> String {
        let a = &self.allocs[r.alloc as usize];
        let s = &a.sems[r.elem as usize];
        let name = self.describe(r);
        if !s.initialized {
            return format!("{name} (never initialized)");
        }
        format!(
            "{name} (phase {} has {}/{} arrivals and {}/{} bytes)",
            s.phase, s.arrivals, s.count, s.issued_bytes, s.expected_bytes
        )
    }
}
