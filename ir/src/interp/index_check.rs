//! Index checks: what the interpreter reports that the IR would otherwise mask silently.
//!
//! - *Indices from memory* ([`Launch::index_check`](super::Launch::index_check), on by
//!   default): a tile or vector of a global view is addressed by coordinates, and the part
//!   outside the view is masked (reads give 0, writes are dropped), which is what edge tiles
//!   need. A coordinate computed from a value loaded from memory (a target id, a routing table
//!   entry) that puts the whole tile outside the view is almost always a bad index in the data,
//!   so it is an error. Values derived from loads are tracked through the ops of a function,
//!   into calls, and through the values regions carry: a loop's or branch's results and
//!   region arguments are from memory when the values that flow into them are (a loop's
//!   induction variable when its start or step is). A value chosen by a condition from memory
//!   without being computed from it is not tracked. Element accesses and row gathers check
//!   their indices always.
//! - *Unwritten outputs* ([`Launch::check_unwritten`](super::Launch::check_unwritten), off by
//!   default): every writable view the kernel only writes (never reads, accumulates into or
//!   passes to a call) is filled with a poison value before the run; an element still holding
//!   it afterwards was never written, which is an error naming the view and the element (the
//!   view's elements are restored to what they held before).

use crate::module::{Func, Op, Region, Value};
use crate::ops::OpKind;
use crate::types::Type;

use super::{Arg, BlockRun, InterpError, Val};

/// What a write-only output holds until the kernel writes it: a NaN payload that arithmetic
/// and rounding never produce.
const POISON: f64 = f64::from_bits(0x7ff8_dead_beef_0003);

impl<'m> BlockRun<'m, '_> {
    /// After `op` ran: its results are from memory when it loads, or when an operand is.
    pub(super) fn taint(&mut self, w: usize, op: &Op) {
        let Some(frame) = self.warps[w].frames.last_mut() else {
            return;
        };
        let loads = matches!(op.kind, OpKind::Load | OpKind::GatherRows);
        let from_memory = loads
            || op
                .operands
                .iter()
                .any(|v| frame.tainted.get(v.index()).copied().unwrap_or(false));
        for r in &op.results {
            if let Some(t) = frame.tainted.get_mut(r.index()) {
                *t = from_memory;
            }
        }
    }

    /// Values entering a region or leaving it as results: `to[i]` is from memory when
    /// `from[i]` is (all read before any is written, as a loop may yield its arguments
    /// permuted).
    pub(super) fn carry_taint(&mut self, w: usize, from: &[Value], to: &[Value]) {
        if !self.bounds.index_check {
            return;
        }
        let Some(frame) = self.warps[w].frames.last_mut() else {
            return;
        };
        let tainted = |v: &Value| frame.tainted.get(v.index()).copied().unwrap_or(false);
        let from: Vec<bool> = from.iter().map(tainted).collect();
        for (t, r) in from.into_iter().zip(to) {
            if let Some(slot) = frame.tainted.get_mut(r.index()) {
                *slot = t;
            }
        }
    }

    /// Entering a `for` loop's body: its induction variable (start + k·step) is from memory
    /// when the start or the step is, its carried values when their initial values are.
    pub(super) fn taint_loop_entry(&mut self, w: usize, op: &Op) {
        let Some(&iv) = op.regions[0].args.first() else {
            return;
        };
        if self.bounds.index_check {
            if let Some(frame) = self.warps[w].frames.last_mut() {
                let tainted = |v: Value| frame.tainted.get(v.index()).copied().unwrap_or(false);
                let from_memory = tainted(op.operands[0]) || tainted(op.operands[2]);
                if let Some(slot) = frame.tainted.get_mut(iv.index()) {
                    *slot = from_memory;
                }
            }
        }
        self.carry_taint(w, &op.operands[3..], &op.regions[0].args[1..]);
    }

    /// Before a global access: coordinates from memory must not put the whole tile or vector
    /// outside its view.
    pub(super) fn check_indices_from_memory(&self, w: usize, op: &Op) -> Result<(), InterpError> {
        let o = &op.operands;
        let (view, shape_of, first_index) = match op.kind {
            OpKind::Load if !op.results.is_empty() => (0, op.results[0], 1),
            OpKind::Store | OpKind::AtomicAdd | OpKind::AtomicRmw(_) if o.len() >= 2 => {
                (0, o[1], 2)
            }
            OpKind::AtomicCas if o.len() >= 3 => (0, o[2], 3),
            OpKind::Copy if o.len() >= 2 => match self.val(w, o[0])? {
                Val::Global(_) => (0, o[1], 2),
                _ => (1, o[0], 2),
            },
            OpKind::CopyAsync if o.len() >= 3 => (1, o[0], 3),
            OpKind::CopyStart if o.len() >= 2 => (1, o[0], 2),
            _ => return Ok(()),
        };
        let Some(frame) = self.warps[w].frames.last() else {
            return Ok(());
        };
        let indices = o.get(first_index..).unwrap_or(&[]);
        if !indices
            .iter()
            .any(|v| frame.tainted.get(v.index()).copied().unwrap_or(false))
        {
            return Ok(());
        }
        let Val::Global(g) = self.val(w, o[view])? else {
            return Ok(());
        };
        let (rows, cols, is_tile) = match self.ty(w, shape_of) {
            Type::Tile { rows, cols, .. } | Type::SharedTile { rows, cols, .. } => {
                (i64::from(*rows), i64::from(*cols), true)
            }
            Type::Vector { len, .. } | Type::SharedVector { len, .. } => {
                (1, i64::from(*len), false)
            }
            _ => return Ok(()),
        };
        let Some(t) = super::table::resolve(self.args, g) else {
            return Ok(());
        };
        let shape = t.shape();
        let rank = shape.len();
        let idx: Vec<i64> = indices
            .iter()
            .map(|v| self.scalar(w, *v).map(|x| x as i64))
            .collect::<Result<_, _>>()?;
        let outside = |coord: i64, extent: i64, n: usize| {
            let first = coord.saturating_mul(extent);
            first >= n as i64 || first.saturating_add(extent) <= 0
        };
        let wholly_outside = if is_tile {
            rank >= 2
                && idx.len() >= rank
                && (outside(idx[rank - 2], rows, shape[rank - 2])
                    || outside(idx[rank - 1], cols, shape[rank - 1]))
        } else {
            rank >= 1 && idx.len() >= rank && outside(idx[rank - 1], cols, shape[rank - 1])
        };
        if !wholly_outside {
            return Ok(());
        }
        let what = if is_tile {
            format!("{rows}×{cols} tile coordinates computed from a value loaded from memory")
        } else {
            format!("{cols}-element vector index computed from a value loaded from memory")
        };
        Err(self.out_of_bounds(
            w,
            &what,
            format!("{idx:?}"),
            format!(
                "shape {shape:?}: the whole {} lies outside the view (a bad index in the data? edge tiles that overlap the view are fine)",
                if is_tile { "tile" } else { "vector" }
            ),
        ))
    }
}

/// Whether the kernel only writes view `p`: every use stores or copies into it (or reads its
/// shape). Any other use — a load, an atomic, a gather, an accumulating scatter, a call —
/// may read it.
fn write_only(body: &Region, p: Value) -> bool {
    body.ops.iter().all(|op| {
        let uses_ok = op.operands.iter().enumerate().all(|(i, &v)| {
            v != p
                || matches!(
                    (&op.kind, i),
                    (OpKind::Store, 0)
                        | (OpKind::Copy, 0)
                        | (OpKind::ScatterRows { add: false }, 0)
                        | (OpKind::GlobalDim(_), 0)
                )
        });
        uses_ok && op.regions.iter().all(|r| write_only(r, p))
    })
}

/// The views the unwritten-output check watches: (argument index, its elements' offsets and
/// what they held before the run).
pub(super) struct Poisoned(Vec<(usize, Vec<(usize, f64)>)>);

/// Fills every write-only writable view of `kernel` in `args` with [`POISON`].
pub(super) fn poison_outputs(kernel: &Func, args: &mut [Arg]) -> Poisoned {
    let mut watched = Vec::new();
    for (i, p) in kernel.params.iter().enumerate() {
        let writable = matches!(kernel.value_type(*p), Type::Global { mutable: true, .. });
        if !writable || !write_only(&kernel.body, *p) {
            continue;
        }
        let Some(Arg::Tensor(t)) = args.get_mut(i) else {
            continue;
        };
        let offsets = view_offsets(t.shape(), t.strides());
        let data = t.data_mut();
        let len = data.len();
        let saved = offsets
            .into_iter()
            .filter(|&o| o < len)
            .map(|o| (o, std::mem::replace(&mut data[o], POISON)))
            .collect();
        watched.push((i, saved));
    }
    Poisoned(watched)
}

/// Storage offsets of every element of a view, in row-major order of its indices.
fn view_offsets(shape: &[usize], strides: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        out.push(idx.iter().zip(strides).map(|(i, s)| i * s).sum());
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

/// After the run: an error naming the first watched view with an element still poisoned (and
/// how many are), after putting back what every such element held. `Ok` when all were written.
pub(super) fn check_outputs(
    kernel: &Func,
    args: &mut [Arg],
    watched: Poisoned,
) -> Result<(), InterpError> {
    let mut first_error = None;
    for (i, saved) in watched.0 {
        let Some(Arg::Tensor(t)) = args.get_mut(i) else {
            continue;
        };
        let shape = t.shape().to_vec();
        let data = t.data_mut();
        let mut unwritten = 0usize;
        let mut first = None;
        for (k, (o, before)) in saved.into_iter().enumerate() {
            if data[o].to_bits() == POISON.to_bits() {
                data[o] = before;
                unwritten += 1;
                first.get_or_insert(k);
            }
        }
        if let (Some(k), None) = (first, &first_error) {
            let mut index = vec![0usize; shape.len()];
            let mut rest = k;
            for d in (0..shape.len()).rev() {
                index[d] = rest % shape[d].max(1);
                rest /= shape[d].max(1);
            }
            let name = kernel
                .params
                .get(i)
                .and_then(|p| kernel.value_name(*p))
                .unwrap_or("?")
                .to_string();
            let total: usize = shape.iter().product();
            first_error = Some(InterpError::Unwritten {
                kernel: kernel.name.clone(),
                param: name,
                index,
                unwritten,
                total,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_offsets_walk_a_strided_view_in_row_major_order() {
        assert_eq!(view_offsets(&[2, 3], &[3, 1]), [0, 1, 2, 3, 4, 5]);
        assert_eq!(view_offsets(&[2, 2], &[1, 4]), [0, 4, 1, 5]);
        assert_eq!(view_offsets(&[0, 3], &[3, 1]), Vec::<usize>::new());
    }
}
