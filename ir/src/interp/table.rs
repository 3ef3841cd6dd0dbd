//! Pointer tables on the interpreter: the argument that stands for a device-side table of
//! tensors ([`TensorTable`]) and the `table_view` op that picks one entry of it.

use std::fmt;

use crate::module::Op;
use crate::types::{ScalarType, Type};

use super::tensor::HostTensor;
use super::{Arg, BlockRun, InterpError, Val};

/// A table of tensors of one dtype and rank, passed for a `gl<i64, 2>` parameter that a kernel
/// reads entries of with `table_view`.
///
/// The kernel sees the table itself as an i64 tensor of one row per entry,
/// `(address, n_0, …, n_{r-1})`, as a GPU launch lays it out; on the interpreter the address of
/// entry e is e (an opaque handle: only `table_view` gives it meaning). Writes through a
/// mutable view of an entry land in [`TensorTable::entries`].
#[derive(Clone, Debug, PartialEq)]
pub struct TensorTable {
    rows: HostTensor,
    entries: Vec<HostTensor>,
}

impl TensorTable {
    /// A table over `entries`, which must share a dtype and a rank (1 to 4) and have
    /// dimensions an i32 indexes. An empty list is a table of no entries (of rank 1).
    pub fn new(entries: Vec<HostTensor>) -> Result<TensorTable, InterpError> {
        let rank = entries.first().map_or(1, HostTensor::rank);
        if !(1..=4).contains(&rank) {
            return Err(InterpError::Argument {
                message: format!(
                    "a pointer table's entries have rank 1 to 4, the first has rank {rank}"
                ),
            });
        }
        let dtype = entries.first().map(HostTensor::dtype);
        let mut values = Vec::with_capacity(entries.len() * (rank + 1));
        for (e, t) in entries.iter().enumerate() {
            if Some(t.dtype()) != dtype || t.rank() != rank {
                return Err(InterpError::Argument {
                    message: format!(
                        "entry {e} of a pointer table is a {} tensor of rank {}; the table's entries are {} tensors of rank {rank} (the first entry's)",
                        t.dtype(),
                        t.rank(),
                        dtype.map_or("?".to_string(), |d| d.to_string()),
                    ),
                });
            }
            if let Some(&n) = t.shape().iter().find(|&&n| n > i32::MAX as usize) {
                return Err(InterpError::Argument {
                    message: format!(
                        "entry {e} of a pointer table has a dimension of {n} elements; at most {} (i32 indices)",
                        i32::MAX
                    ),
                });
            }
            values.push(e as f64);
            values.extend(t.shape().iter().map(|&n| n as f64));
        }
        let rows = HostTensor::new(ScalarType::I64, &[entries.len(), rank + 1], &values)?;
        Ok(TensorTable { rows, entries })
    }

    /// The table as the kernel's `gl<i64, 2>` parameter sees it.
    pub fn rows(&self) -> &HostTensor {
        &self.rows
    }

    /// The entries (with the kernel's writes after a run).
    pub fn entries(&self) -> &[HostTensor] {
        &self.entries
    }

    /// Takes the entries out.
    pub fn into_entries(self) -> Vec<HostTensor> {
        self.entries
    }
}

/// Which tensor a global view of a run addresses: kernel argument `arg`, or entry `entry` of
/// the pointer table passed as that argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct GlobalRef {
    pub arg: usize,
    pub entry: Option<usize>,
}

impl GlobalRef {
    pub(crate) fn arg(arg: usize) -> GlobalRef {
        GlobalRef { arg, entry: None }
    }
}

impl fmt::Display for GlobalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            None => write!(f, "argument {}", self.arg),
            Some(e) => write!(f, "entry {e} of argument {}", self.arg),
        }
    }
}

/// The tensor `g` addresses; `None` only for a reference no run makes (arguments are checked
/// against the parameters, and `table_view` checks its entry, before any access).
pub(crate) fn resolve(args: &[Arg], g: GlobalRef) -> Option<&HostTensor> {
    match (args.get(g.arg)?, g.entry) {
        (Arg::Tensor(t), None) => Some(t),
        (Arg::Table(t), None) => Some(&t.rows),
        (Arg::Table(t), Some(e)) => t.entries.get(e),
        _ => None,
    }
}

/// [`resolve`] for writing.
pub(crate) fn resolve_mut(args: &mut [Arg], g: GlobalRef) -> Option<&mut HostTensor> {
    match (args.get_mut(g.arg)?, g.entry) {
        (Arg::Tensor(t), None) => Some(t),
        (Arg::Table(t), None) => Some(&mut t.rows),
        (Arg::Table(t), Some(e)) => t.entries.get_mut(e),
        _ => None,
    }
}

/// `table_view (%table, %i)`: the view of entry i, which must exist and hold tensors of the
/// result's dtype and rank.
pub(super) fn table_view(b: &mut BlockRun<'_, '_>, w: usize, op: &Op) -> Result<(), InterpError> {
    let table = match b.val(w, op.operands[0])? {
        Val::Global(g) if g.entry.is_none() => g.arg,
        _ => return Err(b.runtime(w, "table_view of a value that is not a kernel parameter")),
    };
    let i = b.scalar(w, op.operands[1])?;
    let Some(Arg::Table(t)) = b.args.get(table) else {
        return Err(b.runtime(
            w,
            &format!(
                "table_view reads argument {table}, which was passed a tensor, not a pointer table (interp::TensorTable)"
            ),
        ));
    };
    let n = t.entries.len();
    if !(0.0..n as f64).contains(&i) {
        return Err(b.out_of_bounds(
            w,
            "pointer-table entry index",
            format!("{i}"),
            format!("0..{n} (the table's entries)"),
        ));
    }
    let e = i as usize;
    let entry = &t.entries[e];
    if let Type::Global { dtype, rank, .. } = b.ty(w, op.results[0]) {
        if entry.dtype() != *dtype || entry.rank() != *rank as usize {
            return Err(b.runtime(
                w,
                &format!(
                    "table_view wants a {dtype} view of rank {rank}; entry {e} is a {} tensor of rank {}",
                    entry.dtype(),
                    entry.rank()
                ),
            ));
        }
    }
    b.set(
        w,
        op.results[0],
        Val::Global(GlobalRef {
            arg: table,
            entry: Some(e),
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::{run, InterpError};
    use crate::parse_module;
    use crate::types::ScalarType::{F32, I32};

    /// Block (e, c) doubles chunk c of entry e in place.
    const DOUBLE: &str = "kernel @double(%t: gl<i64, 2>) warps(1) {
        %e = block_idx.y : i32
        %c = block_idx.x : i32
        %g = table_view (%t, %e) : gl<f32, 1, mut>
        %x = load (%g, %c) : rv<f32, 16, rows>
        %y = map.add (%x, %x) : rv<f32, 16, rows>
        store (%g, %y, %c)
        return ()
    }";

    fn tensor(n: usize, k: f64) -> HostTensor {
        let v: Vec<f64> = (0..n).map(|i| (i as f64 + 1.0) * k).collect();
        HostTensor::new(F32, &[n], &v).unwrap()
    }

    #[test]
    fn table_view_reads_and_writes_each_entry_within_its_length() {
        let m = parse_module(DOUBLE).unwrap();
        let sizes = [1usize, 17, 0, 40];
        let entries: Vec<HostTensor> = sizes
            .iter()
            .enumerate()
            .map(|(e, &n)| tensor(n, 0.5 + e as f64))
            .collect();
        let mut args = vec![Arg::Table(TensorTable::new(entries.clone()).unwrap())];
        run(&m, "double", [3, 4, 1], &mut args).unwrap();
        let Arg::Table(t) = &args[0] else {
            unreachable!()
        };
        for (before, after) in entries.iter().zip(t.entries()) {
            let want: Vec<f64> = before.to_vec().iter().map(|x| 2.0 * x).collect();
            assert_eq!(after.to_vec(), want);
            assert_eq!(after.shape(), before.shape());
        }
        // The kernel's own view of the table: one row per entry, (handle, length).
        assert_eq!(t.rows().shape(), &[4, 2]);
        assert_eq!(t.rows().get(&[3, 1]), Some(40.0));
    }

    #[test]
    fn an_entry_index_outside_the_table_is_out_of_bounds() {
        let m = parse_module(DOUBLE).unwrap();
        let mut args = vec![Arg::Table(
            TensorTable::new(vec![tensor(5, 1.0), tensor(3, 1.0)]).unwrap(),
        )];
        let err = run(&m, "double", [1, 3, 1], &mut args).unwrap_err();
        assert!(
            matches!(&err, InterpError::OutOfBounds { what, .. } if what.contains("pointer-table")),
            "{err}"
        );
    }

    #[test]
    fn an_element_past_an_entry_is_out_of_bounds() {
        let m = parse_module(
            "kernel @peek(%t: gl<i64, 2>, %k: i32) warps(1) {
                %e = const[1] : i32
                %g = table_view (%t, %e) : gl<f32, 1>
                %x = load (%g, %k) : f32
                return ()
            }",
        )
        .unwrap();
        let table = TensorTable::new(vec![tensor(50, 1.0), tensor(7, 1.0)]).unwrap();
        let mut ok = vec![Arg::Table(table.clone()), Arg::i32(6)];
        run(&m, "peek", [1, 1, 1], &mut ok).unwrap();
        // Entry 0 has 50 elements, but entry 1 has 7: index 7 is outside entry 1.
        let mut bad = vec![Arg::Table(table), Arg::i32(7)];
        let err = run(&m, "peek", [1, 1, 1], &mut bad).unwrap_err();
        assert!(
            matches!(&err, InterpError::OutOfBounds { bounds, .. } if bounds.contains("[7]")),
            "{err}"
        );
    }

    #[test]
    fn entries_of_mixed_dtypes_or_ranks_are_refused() {
        let a = tensor(4, 1.0);
        let b = HostTensor::zeros(I32, &[4]);
        let c = HostTensor::zeros(F32, &[2, 2]);
        assert!(TensorTable::new(vec![a.clone(), b]).is_err());
        assert!(TensorTable::new(vec![a, c]).is_err());
        assert!(TensorTable::new(vec![]).unwrap().entries().is_empty());
    }

    #[test]
    fn a_view_of_the_wrong_dtype_is_a_runtime_error() {
        let m = parse_module(
            "kernel @k(%t: gl<i64, 2>) warps(1) {
                %e = const[0] : i32
                %g = table_view (%t, %e) : gl<i32, 1>
                return ()
            }",
        )
        .unwrap();
        let mut args = vec![Arg::Table(TensorTable::new(vec![tensor(3, 1.0)]).unwrap())];
        let err = run(&m, "k", [1, 1, 1], &mut args).unwrap_err();
        assert!(err.to_string().contains("entry 0 is a f32"), "{err}");
    }

    #[test]
    fn the_verifier_wants_an_i64_matrix_table() {
        let m = parse_module(
            "kernel @k(%t: gl<f32, 2>) warps(1) {
                %e = const[0] : i32
                %g = table_view (%t, %e) : gl<f32, 1>
                return ()
            }",
        );
        let err = match m {
            Err(e) => e.to_string(),
            Ok(m) => format!("{:?}", crate::verify(&m).unwrap_err()),
        };
        assert!(err.contains("pointer table"), "{err}");
    }
}
