//! Global-memory ordering inside a warp: when a warp's store is visible to its other lanes.
//!
//! The IR's rule: a warp-scope `store` to a global view is visible to the warp's later `load`
//! of the same element when the load reads it at the same position of a value of the same type
//! (the same lane stored and loads it, on every target: which lane holds an element is a
//! function of the value's type and the element's position), and otherwise only after a
//! `barrier` or a semaphore wait of that warp. A GPU runs a warp's lanes as threads, and the
//! PTX memory model orders one thread's `st.global` before another's `ld.global` only through
//! synchronization (`bar.warp.sync`, `bar.sync`, `mbarrier` waits, fences with a flag); without
//! it the reloading lane may read the old value, which the interpreter (one program per warp)
//! would never show.
//!
//! The interpreter enforces the rule as part of [`Launch::race_check`](super::Launch::race_check):
//! for every view the kernel both stores to and loads from (a parameter, or the entries of
//! pointer tables when it stores to and loads from `table_view`s), each warp keeps the elements it
//! stored since its last synchronization, with the value type and position that stored them;
//! a load of one of them through another type or position is an error naming both ops. (The
//! alternative, a `bar.warp.sync` the lowering inserts before every load that may read a
//! store of the same warp, needs alias analysis the IR lacks and costs every kernel that
//! re-reads an output, so the IR asks the author for the barrier instead and the interpreter
//! says where.)

use std::collections::HashMap;

use crate::module::{Func, Op, Region, Value};
use crate::ops::OpKind;
use crate::types::Type;

use super::table::{resolve, GlobalRef};
use super::{BlockRun, InterpError, Site, Val};

/// One element a warp stored: the value type (interned), the position in the value, and the
/// store's site.
#[derive(Clone, Copy, Debug)]
struct Stored {
    ty: u32,
    pos: usize,
    site: u32,
}

/// What each warp stored to watched views since its last synchronization.
#[derive(Debug, Default)]
pub(crate) struct WarpStores {
    /// Per warp: (view, storage offset) → the store.
    stored: Vec<HashMap<(GlobalRef, usize), Stored>>,
    types: Vec<Type>,
    sites: Vec<Site>,
    site_ids: HashMap<(*const Op, usize), u32>,
    /// Arguments the kernel both stores to and loads from.
    watched: Vec<bool>,
    /// Whether the kernel both stores to and loads from views of pointer-table entries (then
    /// every entry is watched).
    watched_entries: bool,
}

/// Whether an op of `kind` in `body` has a first operand `view` accepts.
fn accessed(body: &Region, kind: &OpKind, view: &impl Fn(Value) -> bool) -> bool {
    body.ops.iter().any(|op| {
        (op.kind == *kind && op.operands.first().is_some_and(|&v| view(v)))
            || op.regions.iter().any(|r| accessed(r, kind, view))
    })
}

/// The views of pointer-table entries `body` makes (`table_view` results).
fn table_views(body: &Region, into: &mut Vec<Value>) {
    for op in &body.ops {
        if matches!(op.kind, OpKind::TableView) {
            into.extend(op.results.first());
        }
        op.regions.iter().for_each(|r| table_views(r, into));
    }
}

impl WarpStores {
    /// The check for `kernel` with `warps` warps; `None` when no view is both stored and loaded.
    pub fn new(kernel: &Func, warps: usize) -> Option<WarpStores> {
        let both = |view: &dyn Fn(Value) -> bool| {
            accessed(&kernel.body, &OpKind::Store, &view)
                && accessed(&kernel.body, &OpKind::Load, &view)
        };
        let watched: Vec<bool> = kernel.params.iter().map(|&p| both(&|v| v == p)).collect();
        let mut entries = Vec::new();
        table_views(&kernel.body, &mut entries);
        let watched_entries = both(&|v| entries.contains(&v));
        (watched_entries || watched.iter().any(|&w| w)).then(|| WarpStores {
            stored: vec![HashMap::new(); warps],
            watched,
            watched_entries,
            ..WarpStores::default()
        })
    }

    /// Warp `w` synchronized: its stores are visible to all its lanes.
    pub fn synchronized(&mut self, w: usize) {
        self.stored[w].clear();
    }

    fn type_id(&mut self, ty: &Type) -> u32 {
        match self.types.iter().position(|t| t == ty) {
            Some(i) => i as u32,
            None => {
                self.types.push(ty.clone());
                (self.types.len() - 1) as u32
            }
        }
    }
}

/// The storage offset of each element of a `value`-typed access of view `t` at `idx`, with its
/// position in the value; elements outside the view are left out (the access masks them or
/// fails on its own).
fn elements(t: &super::HostTensor, value: &Type, idx: &[i64]) -> Vec<(usize, usize)> {
    let (shape, strides) = (t.shape(), t.strides());
    let rank = shape.len();
    let (rows, cols, is_tile) = match value {
        Type::Tile { rows, cols, .. } => (*rows as usize, *cols as usize, true),
        Type::Vector { len, .. } => (1, *len as usize, false),
        _ => {
            let us: Option<Vec<usize>> = idx.iter().map(|&i| usize::try_from(i).ok()).collect();
            return us
                .and_then(|u| t.offset(&u))
                .map(|o| vec![(o, 0)])
                .unwrap_or_default();
        }
    };
    let lead = if is_tile {
        rank.saturating_sub(2)
    } else {
        rank.saturating_sub(1)
    };
    if idx.len() < rank || rank == 0 || (is_tile && rank < 2) {
        return Vec::new();
    }
    let mut base = 0usize;
    for d in 0..lead {
        match usize::try_from(idx[d]) {
            Ok(i) if i < shape[d] => base += i * strides[d],
            _ => return Vec::new(),
        }
    }
    let (row0, nrows, rstride) = if is_tile {
        (
            idx[rank - 2] * rows as i64,
            shape[rank - 2],
            strides[rank - 2],
        )
    } else {
        (0, 1, 0)
    };
    let (col0, ncols, cstride) = (
        idx[rank - 1] * cols as i64,
        shape[rank - 1],
        strides[rank - 1],
    );
    let mut out = Vec::new();
    for r in 0..rows {
        let gr = row0 + r as i64;
        if gr < 0 || gr as usize >= nrows {
            continue;
        }
        for c in 0..cols {
            let gc = col0 + c as i64;
            if gc >= 0 && (gc as usize) < ncols {
                out.push((
                    base + gr as usize * rstride + gc as usize * cstride,
                    r * cols + c,
                ));
            }
        }
    }
    out
}

impl<'m> BlockRun<'m, '_> {
    /// Before `op`: a warp-scope store to a watched view is recorded; a load of a watched view
    /// must not read an element this warp stored through another type or position since its
    /// last synchronization.
    pub(super) fn check_warp_stores(&self, w: usize, op: &Op) -> Result<(), InterpError> {
        let Some(cell) = &self.warp_stores else {
            return Ok(());
        };
        let (value, first_index, is_store) = match op.kind {
            OpKind::Store if op.operands.len() >= 2 => (op.operands[1], 2, true),
            OpKind::Load if !op.results.is_empty() => (op.results[0], 1, false),
            _ => return Ok(()),
        };
        let Some(&view) = op.operands.first() else {
            return Ok(());
        };
        let Val::Global(g) = self.val(w, view)? else {
            return Ok(());
        };
        let watched = {
            let s = cell.borrow();
            match g.entry {
                None => s.watched.get(g.arg).copied().unwrap_or(false),
                Some(_) => s.watched_entries,
            }
        };
        if !watched {
            return Ok(());
        }
        let Some(t) = resolve(self.args, g) else {
            return Ok(());
        };
        let idx: Vec<i64> = op.operands[first_index..]
            .iter()
            .map(|v| self.scalar(w, *v).map(|x| x as i64))
            .collect::<Result<_, _>>()?;
        let ty = self.ty(w, value);
        let elems = elements(t, ty, &idx);
        let mut s = cell.borrow_mut();
        let ty_id = s.type_id(ty);
        let site = match s.site_ids.get(&(op as *const Op, w)) {
            Some(&id) => id,
            None => {
                let id = s.sites.len() as u32;
                s.sites.push(self.site(w));
                s.site_ids.insert((op as *const Op, w), id);
                id
            }
        };
        if is_store {
            for (off, pos) in elems {
                s.stored[w].insert(
                    (g, off),
                    Stored {
                        ty: ty_id,
                        pos,
                        site,
                    },
                );
            }
            return Ok(());
        }
        for (off, pos) in elems {
            let Some(st) = s.stored[w].get(&(g, off)) else {
                continue;
            };
            if st.ty == ty_id && st.pos == pos {
                continue;
            }
            let param = self
                .kernel
                .params
                .get(g.arg)
                .and_then(|p| self.kernel.value_name(*p))
                .unwrap_or("?");
            let name = match g.entry {
                None => format!("`{param}`"),
                Some(e) => format!("entry {e} of pointer table `{param}`"),
            };
            return Err(InterpError::Runtime {
                site: Box::new(self.site(w)),
                message: format!(
                    "loads element {off} (storage offset) of {name} as {} element {pos}, which this warp stored as {} element {} at {} with no barrier or semaphore wait between: on a GPU another lane stored it and may not yet be visible to this one (add a `barrier`, or load it as the value that stored it)",
                    s.types[ty_id as usize],
                    s.types[st.ty as usize],
                    st.pos,
                    s.sites[st.site as usize]
                ),
            });
        }
        Ok(())
    }
}
