//! `gather`: elements of a global view at per-element indices held in register vectors
//! (`logits[r, target[r]]`).
//!
//! The index vectors and the result share one distribution (see `vector_layouts`), so register
//! `k` of every index vector holds the indices of the element register `k` of the result
//! receives: each register is one bounds-checked scalar load, with no lane exchange. Replicated
//! elements (the `Rows` and `Cols` distributions) are loaded by each lane that holds them.

use tilekit_ir::{Op, ScalarType};

use super::memory::Access;
use super::{mem_ty, Lowerer, Lv, R};

impl Lowerer<'_> {
    pub(super) fn gather(&mut self, op: &Op) -> R<()> {
        let res = op.results[0];
        let d = self.ty(res).dtype().unwrap_or(ScalarType::F32);
        let (ptr, shape, strides) = match self.val(op.operands[0]) {
            Lv::Global {
                ptr,
                shape,
                strides,
                ..
            } => (ptr.clone(), shape.clone(), strides.clone()),
            _ => return Err(self.unsupported(op, "gather from a value that is not a global view")),
        };
        let idx: Vec<Vec<String>> = op.operands[1..].iter().map(|&v| self.regs(v)).collect();
        let n = self.reg_count_of(res) as usize;
        let mut out = Vec::with_capacity(n);
        for k in 0..n {
            let mut pred: Option<String> = None;
            let mut terms = Vec::with_capacity(idx.len());
            for (dim, regs) in idx.iter().enumerate() {
                // Negative indices are huge unsigned ones: one comparison checks both ends.
                let ok = self.in_range(&regs[k], &shape[dim]);
                pred = Some(self.and_opt(pred, ok));
                terms.push((regs[k].clone(), strides[dim].clone()));
            }
            let off = self.offset(&terms);
            let at = self.e.op(&format!(
                "llvm.getelementptr {ptr}[{off}] : (!llvm.ptr<1>, i64) -> !llvm.ptr<1>, {}",
                mem_ty(d)
            ));
            out.push(self.load_elem(&Access { pred, ptr: at }, d, 1));
        }
        self.set(res, Lv::Regs(out));
        Ok(())
    }
}
