//! Race detection on global memory: two accesses of one launch to one element of a global
//! tensor, at least one of them a plain write (or one plain and one atomic), that nothing
//! orders.
//!
//! Blocks of one launch are never ordered with each other (the IR has no grid-wide
//! synchronization), so any two such accesses by different blocks race. Within a block, the
//! accesses of two warps are ordered as their shared-memory accesses are: by the happens-before
//! relation of the shared-memory check ([`race`](super::race): barriers and semaphore phases); a warp's own accesses are in
//! program order (which lane of a warp reloads what it stored is the business of
//! [`warp_stores`](super::warp_stores)). Reads of elements nobody writes are never reported,
//! atomics among themselves are never reported, and views that are not mutable are not
//! watched at all: a read-only view cannot be written.
//!
//! Each element of a watched tensor keeps two things, made on the tensor's first access: the
//! last plain write, and a summary of the reads and atomics since it, which the next write
//! must be ordered after. The summary holds the latest of them and one other: one of an
//! earlier block when there is one (every later write conflicts with it), else the latest one
//! of the block not ordered before the latest. A report always names a pair of accesses that
//! nothing orders; with three or more warps of one block accessing an element unordered, a
//! race among them may be reported through another pair or (rarely) not at all, but never
//! invented.

use std::collections::HashMap;

use crate::module::{Func, Module, Op, Region};
use crate::ops::OpKind;
use crate::types::Type;

use super::table::{resolve, GlobalRef};
use super::{Arg, BlockRun, InterpError, Site};

/// The most storage elements a tensor may have for [`Launch::race_check`](super::Launch::race_check)
/// to watch it on global memory: each element's record takes 36 bytes, so this bounds it to
/// 72 MiB per tensor. Every library kernel's self-test tensors are far smaller; a larger
/// tensor is not checked.
pub const GLOBAL_RACE_MAX_ELEMENTS: usize = 1 << 21;

/// How an op touches a global element, for the global race check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GlobalAccess {
    Read,
    Write,
    /// An atomic read-modify-write (`atomic_*`, `scatter_add_rows`).
    Atomic,
}

impl GlobalAccess {
    fn describe(self) -> &'static str {
        match self {
            GlobalAccess::Read => "read",
            GlobalAccess::Write => "write",
            GlobalAccess::Atomic => "atomic update",
        }
    }
}

/// One access: by the block numbered `block` (1 + its linear index; 0 for no access), at its
/// warp's clock value `clock`, at interned site `site` (which names the warp).
#[derive(Clone, Copy, Debug, Default)]
struct Tag {
    block: u32,
    clock: u32,
    site: u32,
}

/// Reads and atomics since an element's last write: the latest and one other that the next
/// write must also be ordered after (see the module documentation).
#[derive(Clone, Copy, Debug, Default)]
struct Summary {
    last: Tag,
    other: Tag,
}

/// What one element remembers.
#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    write: Tag,
    since: Summary,
}

/// Who accesses: the block, the warp, what the warp knows of every warp's clock, and the site.
struct Accessor<'c> {
    block: u32,
    warp: usize,
    knows: &'c [u32],
    site: u32,
}

/// The global race check of one run: it spans every block.
#[derive(Debug)]
pub(crate) struct GlobalRace {
    /// The records of each tensor accessed so far; `None` for one not watched.
    shadows: HashMap<GlobalRef, Option<Vec<Cell>>>,
    /// Whether each kernel parameter is a mutable view.
    mutable_params: Vec<bool>,
    /// Whether some `table_view` of the module gives a mutable view of a table entry.
    mutable_entries: bool,
    grid: [u32; 3],
    /// Sites interned by (op, warp), with the block of their first access (reports give the
    /// block of the access they name), and how each op accesses global memory.
    sites: Vec<(Site, GlobalAccess)>,
    site_ids: HashMap<(*const Op, usize), u32>,
}

/// Whether some `table_view` in `body` gives a mutable view.
fn mutable_table_view(f: &Func, body: &Region) -> bool {
    body.ops.iter().any(|op| {
        (matches!(op.kind, OpKind::TableView)
            && op
                .results
                .first()
                .is_some_and(|&r| matches!(f.value_type(r), Type::Global { mutable: true, .. })))
            || op.regions.iter().any(|r| mutable_table_view(f, r))
    })
}

impl GlobalRace {
    /// The check of a launch of `kernel` (of `module`) over `grid`; `None` when the grid has
    /// too many blocks to number them in 32 bits (a launch no interpreter budget admits).
    pub fn new(module: &Module, kernel: &Func, grid: [u32; 3]) -> Option<GlobalRace> {
        let blocks = grid.iter().map(|&g| u64::from(g)).product::<u64>();
        if blocks >= u64::from(u32::MAX) {
            return None;
        }
        Some(GlobalRace {
            shadows: HashMap::new(),
            mutable_params: kernel
                .params
                .iter()
                .map(|&p| matches!(kernel.value_type(p), Type::Global { mutable: true, .. }))
                .collect(),
            mutable_entries: module.funcs.iter().any(|f| mutable_table_view(f, &f.body)),
            grid,
            sites: Vec::new(),
            site_ids: HashMap::new(),
        })
    }

    /// The number of block `b` (1 + its linear index).
    fn number(&self, b: [u32; 3]) -> u32 {
        let [gx, gy, _] = self.grid;
        1 + b[0] + gx * (b[1] + gy * b[2])
    }

    /// The block numbered `n`.
    fn block(&self, n: u32) -> [u32; 3] {
        let [gx, gy, _] = self.grid;
        let i = n - 1;
        [i % gx, (i / gx) % gy, i / (gx * gy)]
    }

    /// The warp whose access a tag records.
    fn warp(&self, t: Tag) -> usize {
        self.sites[t.site as usize].0.warp as usize
    }

    /// Whether access `t` (if any) is not ordered before the access of `who`.
    fn unordered(&self, t: Tag, who: &Accessor<'_>) -> bool {
        t.block != 0
            && (t.block != who.block || t.clock > who.knows.get(self.warp(t)).copied().unwrap_or(0))
    }

    /// Adds the access `me` of `who` to `s`.
    fn add(&self, s: &mut Summary, me: Tag, who: &Accessor<'_>) {
        let other_is_earlier_block = s.other.block != 0 && s.other.block != me.block;
        if !other_is_earlier_block && self.unordered(s.last, who) {
            s.other = s.last;
        }
        s.last = me;
    }

    /// Checks and records the accesses of `kind` by `who` to storage offsets `offsets` of the
    /// tensor `g` refers to; returns the first race found as (offset, earlier access).
    fn access(
        &mut self,
        args: &[Arg],
        g: GlobalRef,
        offsets: impl IntoIterator<Item = usize>,
        kind: GlobalAccess,
        who: &Accessor<'_>,
    ) -> Option<(usize, Tag)> {
        let watched = match g.entry {
            None => self.mutable_params.get(g.arg).copied().unwrap_or(false),
            Some(_) => self.mutable_entries,
        };
        let mut cells = match self.shadows.remove(&g) {
            Some(cells) => cells,
            None => resolve(args, g)
                .map(|t| t.storage().len())
                .filter(|&n| watched && n <= GLOBAL_RACE_MAX_ELEMENTS)
                .map(|n| vec![Cell::default(); n]),
        };
        let found = cells
            .as_mut()
            .and_then(|cells| self.record(cells, offsets, kind, who));
        self.shadows.insert(g, cells);
        found
    }

    fn record(
        &self,
        cells: &mut [Cell],
        offsets: impl IntoIterator<Item = usize>,
        kind: GlobalAccess,
        who: &Accessor<'_>,
    ) -> Option<(usize, Tag)> {
        let me = Tag {
            block: who.block,
            clock: who.knows.get(who.warp).copied().unwrap_or(0),
            site: who.site,
        };
        for off in offsets {
            let Some(cell) = cells.get_mut(off) else {
                continue;
            };
            let write = self.unordered(cell.write, who).then_some(cell.write);
            let conflict = match kind {
                GlobalAccess::Read | GlobalAccess::Atomic => write,
                GlobalAccess::Write => write.or_else(|| {
                    [cell.since.last, cell.since.other]
                        .into_iter()
                        .find(|&t| self.unordered(t, who))
                }),
            };
            if let Some(t) = conflict {
                return Some((off, t));
            }
            match kind {
                GlobalAccess::Read | GlobalAccess::Atomic => self.add(&mut cell.since, me, who),
                GlobalAccess::Write => {
                    *cell = Cell {
                        write: me,
                        ..Cell::default()
                    }
                }
            }
        }
        None
    }
}

/// The index of the element at storage offset `off` of a tensor of `shape` and `strides`, when
/// one addresses it (dimensions taken by decreasing stride).
fn element_index(shape: &[usize], strides: &[usize], off: usize) -> Option<Vec<usize>> {
    let mut dims: Vec<usize> = (0..shape.len()).collect();
    dims.sort_by_key(|&d| std::cmp::Reverse(strides[d]));
    let mut idx = vec![0; shape.len()];
    let mut rest = off;
    for d in dims {
        if let Some(i) = rest.checked_div(strides[d]) {
            idx[d] = i;
            rest %= strides[d];
        }
        if idx[d] >= shape[d] {
            return None;
        }
    }
    (rest == 0).then_some(idx)
}

impl BlockRun<'_, '_> {
    /// Checks and records warp `w`'s accesses of `kind` to storage offsets `offsets` of the
    /// tensor `g` refers to, when the race check is on.
    pub(crate) fn global_access(
        &self,
        w: usize,
        g: GlobalRef,
        offsets: impl IntoIterator<Item = usize>,
        kind: GlobalAccess,
    ) -> Result<(), InterpError> {
        let (Some(global), Some(race)) = (self.global_race, &self.race) else {
            return Ok(());
        };
        let mut global = global.borrow_mut();
        let race = race.borrow();
        let op = self.current_op(w);
        let site = match global.site_ids.get(&(op, w)) {
            Some(&id) => id,
            None => {
                let id = global.sites.len() as u32;
                global.sites.push((self.site(w), kind));
                global.site_ids.insert((op, w), id);
                id
            }
        };
        let who = Accessor {
            block: global.number(self.block),
            warp: w,
            knows: race.knows(w),
            site,
        };
        let Some((off, earlier)) = global.access(self.args, g, offsets, kind, &who) else {
            return Ok(());
        };
        let (mut first, earlier_kind) = global.sites[earlier.site as usize].clone();
        first.block = global.block(earlier.block);
        let t = resolve(self.args, g);
        let index = t
            .and_then(|t| element_index(t.shape(), t.strides(), off))
            .map_or_else(String::new, |i| format!("{i:?}, "));
        let name = self
            .kernel
            .params
            .get(g.arg)
            .and_then(|&p| self.kernel.value_name(p))
            .unwrap_or("?");
        Err(InterpError::GlobalRace {
            kernel: self.kernel.name.clone(),
            tensor: match g.entry {
                None => format!("`{name}`"),
                Some(e) => format!("entry {e} of pointer table `{name}`"),
            },
            element: format!("{index}storage offset {off}"),
            earlier: Box::new(first),
            earlier_kind: earlier_kind.describe(),
            later: Box::new(self.site(w)),
            later_kind: kind.describe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::element_index;

    #[test]
    fn element_indices_invert_row_major_and_transposed_strides() {
        assert_eq!(element_index(&[3, 5], &[5, 1], 13), Some(vec![2, 3]));
        assert_eq!(element_index(&[3, 5], &[1, 3], 13), Some(vec![1, 4]));
        assert_eq!(element_index(&[4], &[2], 3), None);
    }
}
