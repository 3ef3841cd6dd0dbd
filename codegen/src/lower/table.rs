//! `table_view`: a global view of one entry of a device-side table of tensors.
//!
//! The table is a `gl<i64, 2>` whose row e is `(address, n_0, …, n_{r-1})` (a contiguous
//! row-major tensor, built at launch from a list of tensors). The view's shape is the entry's,
//! so every access through it is masked by the entry's sizes as a launched view's are: nothing
//! past the entry is touched. An entry index outside the table (or a table with fewer columns
//! than the view's rank needs) gives sizes of 0, a view every access of which is masked.

use tilekit_ir::{Op, ScalarType, Type};

use super::memory::Access;
use super::{Lowerer, Lv, R};

impl Lowerer<'_> {
    pub(super) fn table_view(&mut self, op: &Op) -> R<()> {
        let res = op.results[0];
        let rank = match self.ty(res) {
            Type::Global { rank, .. } => *rank,
            _ => return Err(self.unsupported(op, "table_view's result is not a global view")),
        };
        let t = self.global(op.operands[0]);
        let i = self.scalar(op.operands[1]);
        // One predicate guards every read of the row: the entry exists and the row holds an
        // address and `rank` sizes.
        let entry_ok = self.in_range(&i, &t.shape[0]);
        let need = self.e.i32(i64::from(rank));
        let cols_ok = self
            .e
            .op(&format!("arith.cmpi sgt, {}, {need} : i32", t.shape[1]));
        let ok = self.e.and_i1(&entry_ok, &cols_ok);
        let mut words = Vec::with_capacity(rank as usize + 1);
        for k in 0..=rank {
            let col = self.e.i32(i64::from(k));
            let off = self.offset(&[
                (i.clone(), t.strides[0].clone()),
                (col, t.strides[1].clone()),
            ]);
            let at = self.global_ptr(&t, &off, ScalarType::I64);
            let a = Access {
                pred: Some(ok.clone()),
                ptr: at,
            };
            words.push(self.load_elem(&a, ScalarType::I64, 1));
        }
        let ptr = self
            .e
            .op(&format!("llvm.inttoptr {} : i64 to !llvm.ptr<1>", words[0]));
        let zero = self.e.i32(0);
        let shape: Vec<String> = words[1..]
            .iter()
            .map(|w| {
                let n = self.e.op(&format!("arith.trunci {w} : i64 to i32"));
                // A negative size (a table not built by the runtime) would read as a huge
                // unsigned bound in the masks: clamp it to an empty dimension.
                self.e.op(&format!("arith.maxsi {n}, {zero} : i32"))
            })
            .collect();
        // Row-major contiguous strides, innermost first.
        let mut strides = vec![String::new(); rank as usize];
        let mut s = self.e.i32(1);
        for d in (0..rank as usize).rev() {
            strides[d] = s.clone();
            if d > 0 {
                s = self.e.op(&format!("arith.muli {s}, {} : i32", shape[d]));
            }
        }
        self.set(
            res,
            Lv::Global {
                ptr,
                shape,
                strides,
                aligned16: false,
            },
        );
        Ok(())
    }
}
