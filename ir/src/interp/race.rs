//! Race detection on shared memory: a happens-before check with vector clocks.
//!
//! Every *agent* that touches shared memory has a clock: each warp, and the asynchronous copies
//! each warp issues (one agent per warp and semaphore for `copy_async`, whose phases complete
//! in order, and one per warp for `copy_start` groups, which land in order). A warp knows a
//! clock value of every agent; an access is ordered after an earlier one when the accessor
//! knows the earlier access's clock value. Knowledge flows only along the IR's
//! synchronization:
//!
//! - `barrier @block`: every warp learns what every warp knows;
//! - `sem.arrive` / `sem.expect` / `copy_async` release what the warp knows (and, for a copy,
//!   the copy itself) into the semaphore's current phase; `sem.wait` acquires what the phases
//!   completed so far released;
//! - `copy_wait N` acquires the warp's own landed `copy_start` groups.
//!
//! Each shared element keeps its last write and the reads since it (one per agent). A read
//! must be ordered after the last write; a write after the last write and every read since.
//! An async copy's writes are checked and recorded when it is issued, with what its warp knew
//! then, so a read or write by any warp before its completion is acquired is a race.
//!
//! The check follows the relation the program's synchronization defines, not the order the
//! scheduler happened to pick: two accesses with no barrier, semaphore phase or copy
//! completion between them are reported under every schedule (the report may name the pair
//! from either side). A semaphore wait acquires every phase completed so far, which can only
//! hide a race (never invent one).

use std::collections::HashMap;

use crate::module::Op;

use super::memory::SharedRef;
use super::Site;

/// Clock values an agent knows of every agent (missing entries are 0: nothing known).
type Clock = Vec<u32>;

fn get(c: &Clock, a: u32) -> u32 {
    c.get(a as usize).copied().unwrap_or(0)
}

fn raise(c: &mut Clock, a: u32, v: u32) {
    let a = a as usize;
    if c.len() <= a {
        c.resize(a + 1, 0);
    }
    c[a] = c[a].max(v);
}

fn join(into: &mut Clock, from: &Clock) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (x, &y) in into.iter_mut().zip(from) {
        *x = (*x).max(y);
    }
}

/// What an access was, for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AccessKind {
    Read,
    Write,
    /// The write of an asynchronous copy (`copy_async`, `copy_start`), at the op that issued it.
    AsyncWrite,
}

impl AccessKind {
    pub fn describe(self) -> &'static str {
        match self {
            AccessKind::Read => "read",
            AccessKind::Write => "write",
            AccessKind::AsyncWrite => "asynchronous copy's write",
        }
    }
}

/// One access to an element: by `agent` at its clock value `clock`, at site `site`.
#[derive(Clone, Copy, Debug)]
struct Access {
    agent: u32,
    clock: u32,
    site: u32,
    kind: AccessKind,
}

/// An element's accesses that later ones must be ordered after.
#[derive(Clone, Debug, Default)]
struct Shadow {
    write: Option<Access>,
    reads: Vec<Access>,
}

/// A semaphore's released knowledge.
#[derive(Debug, Default)]
struct SemClocks {
    /// Released into the phase in progress.
    current: Clock,
    /// Released into the phases completed so far.
    completed: Clock,
}

/// Two accesses to one shared element that no synchronization orders.
#[derive(Debug)]
pub(crate) struct Race {
    pub object: SharedRef,
    /// The element's index within its object (row-major).
    pub element: usize,
    pub earlier: (Box<Site>, AccessKind),
    pub later: (Box<Site>, AccessKind),
}

/// Who performs an access and what it knows.
enum Accessor<'c> {
    Warp(usize),
    /// An async copy: its agent and clock value, and what its warp knew when it issued it.
    Copy {
        agent: u32,
        clock: u32,
        knows: &'c Clock,
    },
}

/// The happens-before state of one block's run.
#[derive(Debug)]
pub(crate) struct RaceCheck {
    /// What each warp knows; warp `w` is agent `w`.
    clocks: Vec<Clock>,
    /// Agents of async copies: (warp, semaphore) for `copy_async`, (warp, None) for
    /// `copy_start` groups.
    copy_agents: HashMap<(usize, Option<(u32, u32)>), u32>,
    /// `copy_async` clock values issued per agent.
    issued: HashMap<u32, u32>,
    /// `copy_commit`s per warp (the clock value of its open `copy_start` group is this + 1).
    committed: Vec<u32>,
    /// Shadows by allocation, then element offset in the allocation (made on first access).
    shadow: HashMap<u32, Vec<Shadow>>,
    sems: HashMap<(u32, u32), SemClocks>,
    /// Sites of accesses: interned by (op, warp).
    sites: Vec<Site>,
    site_ids: HashMap<(*const Op, usize), u32>,
}

impl RaceCheck {
    pub fn new(warps: usize) -> RaceCheck {
        let clocks = (0..warps)
            .map(|w| {
                let mut c = vec![0; warps];
                c[w] = 1;
                c
            })
            .collect();
        RaceCheck {
            clocks,
            copy_agents: HashMap::new(),
            issued: HashMap::new(),
            committed: vec![0; warps],
            shadow: HashMap::new(),
            sems: HashMap::new(),
            sites: Vec::new(),
            site_ids: HashMap::new(),
        }
    }

    /// The id of the site of `op` run by warp `w` (`make` builds it the first time).
    pub fn site(&mut self, op: *const Op, w: usize, make: impl FnOnce() -> Site) -> u32 {
        if let Some(&id) = self.site_ids.get(&(op, w)) {
            return id;
        }
        let id = self.sites.len() as u32;
        self.sites.push(make());
        self.site_ids.insert((op, w), id);
        id
    }

    /// What warp `w` knows of every warp's clock (indexed by warp; missing entries are 0).
    pub fn knows(&self, w: usize) -> &[u32] {
        &self.clocks[w]
    }

    fn copy_agent(&mut self, w: usize, sem: Option<SharedRef>) -> u32 {
        let next = (self.clocks.len() + self.copy_agents.len()) as u32;
        *self
            .copy_agents
            .entry((w, sem.map(|s| (s.alloc, s.elem))))
            .or_insert(next)
    }

    /// Warp `w` reads elements `elements` of `object` (offsets from the object's first element,
    /// which is at `base` in its allocation).
    pub fn read(
        &mut self,
        w: usize,
        object: SharedRef,
        base: usize,
        elements: impl IntoIterator<Item = usize>,
        site: u32,
    ) -> Result<(), Race> {
        self.access(
            Accessor::Warp(w),
            AccessKind::Read,
            object,
            base,
            elements,
            site,
        )
    }

    /// Warp `w` writes elements `elements` of `object` (see [`RaceCheck::read`]).
    pub fn write(
        &mut self,
        w: usize,
        object: SharedRef,
        base: usize,
        elements: impl IntoIterator<Item = usize>,
        site: u32,
    ) -> Result<(), Race> {
        self.access(
            Accessor::Warp(w),
            AccessKind::Write,
            object,
            base,
            elements,
            site,
        )
    }

    /// Warp `w` issues a `copy_async` into `elements` of `object` that completes with a phase
    /// of semaphore `sem`: its writes are checked now, and the phase releases them.
    #[allow(clippy::too_many_arguments)]
    pub fn copy_async(
        &mut self,
        w: usize,
        sem: SharedRef,
        object: SharedRef,
        base: usize,
        elements: impl IntoIterator<Item = usize>,
        site: u32,
    ) -> Result<(), Race> {
        let agent = self.copy_agent(w, Some(sem));
        let clock = {
            let n = self.issued.entry(agent).or_insert(0);
            *n += 1;
            *n
        };
        let knows = self.clocks[w].clone();
        let accessor = Accessor::Copy {
            agent,
            clock,
            knows: &knows,
        };
        self.access(
            accessor,
            AccessKind::AsyncWrite,
            object,
            base,
            elements,
            site,
        )?;
        let s = self.sems.entry((sem.alloc, sem.elem)).or_default();
        join(&mut s.current, &knows);
        raise(&mut s.current, agent, clock);
        self.tick(w);
        Ok(())
    }

    /// Warp `w` adds a `copy_start` into `elements` of `object` to its open group.
    pub fn copy_start(
        &mut self,
        w: usize,
        object: SharedRef,
        base: usize,
        elements: impl IntoIterator<Item = usize>,
        site: u32,
    ) -> Result<(), Race> {
        let agent = self.copy_agent(w, None);
        let clock = self.committed[w] + 1;
        let knows = self.clocks[w].clone();
        let accessor = Accessor::Copy {
            agent,
            clock,
            knows: &knows,
        };
        self.access(
            accessor,
            AccessKind::AsyncWrite,
            object,
            base,
            elements,
            site,
        )
    }

    /// Warp `w` closes its open `copy_start` group.
    pub fn copy_commit(&mut self, w: usize) {
        self.committed[w] += 1;
    }

    /// Warp `w` has waited until at most `keep` of its committed groups are in flight.
    pub fn copy_wait(&mut self, w: usize, keep: u32) {
        let landed = self.committed[w].saturating_sub(keep);
        let agent = self.copy_agent(w, None);
        raise(&mut self.clocks[w], agent, landed);
    }

    /// Warp `w` arrives on (or sets the bytes of) the current phase of `sem`.
    pub fn release(&mut self, w: usize, sem: SharedRef) {
        let s = self.sems.entry((sem.alloc, sem.elem)).or_default();
        join(&mut s.current, &self.clocks[w]);
        self.tick(w);
    }

    /// A phase of `sem` completed: what it released becomes what waits acquire.
    pub fn phase_completed(&mut self, sem: SharedRef) {
        let s = self.sems.entry((sem.alloc, sem.elem)).or_default();
        let current = std::mem::take(&mut s.current);
        join(&mut s.completed, &current);
    }

    /// `sem.init` starts the semaphore afresh.
    pub fn sem_init(&mut self, sem: SharedRef) {
        self.sems.remove(&(sem.alloc, sem.elem));
    }

    /// Warp `w` passed a wait on `sem`.
    pub fn acquire(&mut self, w: usize, sem: SharedRef) {
        if let Some(s) = self.sems.get(&(sem.alloc, sem.elem)) {
            join(&mut self.clocks[w], &s.completed);
        }
    }

    /// Every warp passed a block barrier.
    pub fn barrier(&mut self) {
        let mut all = Clock::new();
        for c in &self.clocks {
            join(&mut all, c);
        }
        for w in 0..self.clocks.len() {
            self.clocks[w] = all.clone();
            self.tick(w);
        }
    }

    /// Warp `w` starts a new clock value: what it does next is not known to those it released to.
    fn tick(&mut self, w: usize) {
        let now = get(&self.clocks[w], w as u32);
        raise(&mut self.clocks[w], w as u32, now + 1);
    }

    #[allow(clippy::too_many_arguments)]
    fn access(
        &mut self,
        who: Accessor<'_>,
        kind: AccessKind,
        object: SharedRef,
        base: usize,
        elements: impl IntoIterator<Item = usize>,
        site: u32,
    ) -> Result<(), Race> {
        let (agent, clock, knows) = match who {
            Accessor::Warp(w) => {
                let c = &self.clocks[w];
                (w as u32, get(c, w as u32), c)
            }
            Accessor::Copy {
                agent,
                clock,
                knows,
            } => (agent, clock, knows),
        };
        let me = Access {
            agent,
            clock,
            site,
            kind,
        };
        let ordered = |a: &Access| a.clock <= get(knows, a.agent);
        let shadow = self.shadow.entry(object.alloc).or_default();
        for e in elements {
            if shadow.len() <= base + e {
                shadow.resize(base + e + 1, Shadow::default());
            }
            let s = &mut shadow[base + e];
            let conflict = match kind {
                AccessKind::Read => s.write.filter(|x| !ordered(x)),
                AccessKind::Write | AccessKind::AsyncWrite => s
                    .write
                    .filter(|x| !ordered(x))
                    .or_else(|| s.reads.iter().find(|x| !ordered(x)).copied()),
            };
            if let Some(earlier) = conflict {
                return Err(Race {
                    object,
                    element: e,
                    earlier: (
                        Box::new(self.sites[earlier.site as usize].clone()),
                        earlier.kind,
                    ),
                    later: (Box::new(self.sites[site as usize].clone()), kind),
                });
            }
            match kind {
                AccessKind::Read => match s.reads.iter_mut().find(|x| x.agent == agent) {
                    Some(x) => *x = me,
                    None => s.reads.push(me),
                },
                AccessKind::Write | AccessKind::AsyncWrite => {
                    s.write = Some(me);
                    s.reads.clear();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Loc;

    fn site(n: u32) -> Site {
        Site {
            block: [0, 0, 0],
            warp: n,
            func: "k".into(),
            path: n.to_string(),
            op: "op".into(),
            loc: Loc::Unknown,
        }
    }

    const OBJ: SharedRef = SharedRef {
        alloc: 0,
        elem: 0,
        whole: false,
    };
    const SEM: SharedRef = SharedRef {
        alloc: 1,
        elem: 0,
        whole: false,
    };

    fn check() -> (RaceCheck, u32, u32) {
        let mut r = RaceCheck::new(2);
        let a = r.site(std::ptr::null(), 0, || site(0));
        let b = r.site(std::ptr::null(), 1, || site(1));
        (r, a, b)
    }

    #[test]
    fn a_write_then_another_warps_read_races_without_a_barrier_and_not_with_one() {
        let (mut r, a, b) = check();
        r.write(0, OBJ, 0, 0..4, a).unwrap();
        let race = r.read(1, OBJ, 0, [2], b).unwrap_err();
        assert_eq!(race.element, 2);
        assert_eq!(
            (race.earlier.0.warp, race.earlier.1),
            (0, AccessKind::Write)
        );
        assert_eq!((race.later.0.warp, race.later.1), (1, AccessKind::Read));

        let (mut r, a, b) = check();
        r.write(0, OBJ, 0, 0..4, a).unwrap();
        r.barrier();
        r.read(1, OBJ, 0, 0..4, b).unwrap();
        // Reading again, and the writer reading its own data, need nothing more.
        r.read(1, OBJ, 0, 0..4, b).unwrap();
        r.read(0, OBJ, 0, 0..4, a).unwrap();
        // Overwriting what warp 1 read since the barrier is a race (write after read).
        let race = r.write(0, OBJ, 0, [1], a).unwrap_err();
        assert_eq!(race.earlier.1, AccessKind::Read);
    }

    #[test]
    fn a_semaphore_phase_orders_an_arrival_before_a_wait() {
        let (mut r, a, b) = check();
        r.write(0, OBJ, 0, 0..4, a).unwrap();
        r.release(0, SEM);
        // The phase has not completed: a wait that passed anyway acquires nothing.
        r.acquire(1, SEM);
        assert!(r.read(1, OBJ, 0, [0], b).is_err());
        r.phase_completed(SEM);
        r.acquire(1, SEM);
        r.read(1, OBJ, 0, 0..4, b).unwrap();
        // What warp 0 writes after its arrival is not ordered before warp 1's read.
        r.write(0, OBJ, 0, [3], a).unwrap_err();
    }

    #[test]
    fn an_async_copy_is_ordered_only_for_those_that_acquire_its_completion() {
        let (mut r, a, b) = check();
        r.copy_async(0, SEM, OBJ, 0, 0..4, a).unwrap();
        // The issuing warp itself must wait too.
        assert!(r.read(0, OBJ, 0, [0], a).is_err());
        r.phase_completed(SEM);
        r.acquire(1, SEM);
        r.read(1, OBJ, 0, 0..4, b).unwrap();
        r.acquire(0, SEM);
        r.read(0, OBJ, 0, 0..4, a).unwrap();
        // Reissuing into the slot before warp 1's reads are released to warp 0 is a race.
        let race = r.copy_async(0, SEM, OBJ, 0, 0..4, a).unwrap_err();
        assert_eq!(race.later.1, AccessKind::AsyncWrite);
        assert_eq!(race.earlier.1, AccessKind::Read);
    }

    #[test]
    fn copy_start_groups_land_for_their_warp_at_copy_wait() {
        let (mut r, a, b) = check();
        r.copy_start(0, OBJ, 0, 0..4, a).unwrap();
        r.copy_commit(0);
        r.copy_wait(0, 1);
        assert!(r.read(0, OBJ, 0, [1], a).is_err());
        r.copy_wait(0, 0);
        r.read(0, OBJ, 0, 0..4, a).unwrap();
        // Another warp sees the copy only through a barrier after the wait.
        assert!(r.read(1, OBJ, 0, [1], b).is_err());
        r.barrier();
        r.read(1, OBJ, 0, 0..4, b).unwrap();
    }
}
