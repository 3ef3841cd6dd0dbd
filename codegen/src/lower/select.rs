//! Comparisons and selects over register tiles and vectors: `cmp.p` producing a bool mask
//! (one `i1` per register), and `select` choosing per element with such a mask.
//!
//! A mask has the shape, layout (tiles) or distribution (vectors) of the values it was compared
//! from, so register `k` of a mask belongs to the same element as register `k` of every value of
//! that type on every target: both ops are register-by-register maps, with scalar operands
//! broadcast, and need no lane exchange. Vectors joined by `cmp` or `select` share one
//! distribution (see `vector_layouts`).

use tilekit_ir::{CmpPred, Op, OpKind, ScalarType};

use super::{mty, Lowerer, Lv, R};

impl Lowerer<'_> {
    /// `cmp.*` and `select`; the all-scalar forms are the scalar lowering's.
    pub(super) fn compare_select(&mut self, op: &Op) -> R<()> {
        let all_scalar = op.operands.iter().all(|&v| self.ty(v).is_scalar());
        if all_scalar {
            return self.elementwise(op);
        }
        let lv = match &op.kind {
            OpKind::Cmp(p) => self.compare_regs(op, *p),
            OpKind::Select => self.select_regs(op),
            other => {
                return Err(self.unsupported(op, format!("no lowering for {}", other.name())));
            }
        };
        self.set(op.results[0], lv);
        Ok(())
    }

    /// Register `k` of an operand: its own for a register value, the scalar itself otherwise.
    fn reg_or_scalar(lv: &Lv, k: usize) -> String {
        match lv {
            Lv::Scalar(s) => s.clone(),
            Lv::Regs(r) => r[k].clone(),
            other => unreachable!("verified IR: a register operand, lowered as {other:?}"),
        }
    }

    fn compare_regs(&mut self, op: &Op, p: CmpPred) -> Lv {
        let d = self.ty(op.operands[0]).dtype().unwrap_or(ScalarType::F32);
        let (x, y) = (
            self.val(op.operands[0]).clone(),
            self.val(op.operands[1]).clone(),
        );
        let n = self.reg_count_of(op.results[0]) as usize;
        let out = (0..n)
            .map(|k| {
                let (a, b) = (Self::reg_or_scalar(&x, k), Self::reg_or_scalar(&y, k));
                self.cmp(p, d, &a, &b)
            })
            .collect();
        Lv::Regs(out)
    }

    fn select_regs(&mut self, op: &Op) -> Lv {
        let res = op.results[0];
        let t = mty(self.ty(res).dtype().unwrap_or(ScalarType::F32));
        let [c, x, y] = [0, 1, 2].map(|i| self.val(op.operands[i]).clone());
        let n = self.reg_count_of(res) as usize;
        let out = (0..n)
            .map(|k| {
                let (m, a, b) = (
                    Self::reg_or_scalar(&c, k),
                    Self::reg_or_scalar(&x, k),
                    Self::reg_or_scalar(&y, k),
                );
                self.e.op(&format!("arith.select {m}, {a}, {b} : {t}"))
            })
            .collect();
        Lv::Regs(out)
    }
}
