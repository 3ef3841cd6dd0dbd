//! `bitcast`: the same bits read as another dtype of the same width, register by register
//! (`arith.bitcast`; i32 and u32 share one MLIR type, so between them it is no instruction).

use tilekit_ir::{Op, ScalarType};

use super::{mty, Lowerer, Lv, R};

impl Lowerer<'_> {
    pub(super) fn bitcast(&mut self, op: &Op) -> R<()> {
        let (x, res) = (op.operands[0], op.results[0]);
        let from = mty(self.ty(x).dtype().unwrap_or(ScalarType::F32));
        let to = mty(self.ty(res).dtype().unwrap_or(ScalarType::F32));
        let cast = |l: &mut Self, v: &str| {
            if from == to {
                v.to_string()
            } else {
                l.e.op(&format!("arith.bitcast {v} : {from} to {to}"))
            }
        };
        let lv = match self.val(x).clone() {
            Lv::Scalar(v) => Lv::Scalar(cast(self, &v)),
            Lv::Regs(rs) => Lv::Regs(rs.iter().map(|v| cast(self, v)).collect()),
            _ => return Err(self.unsupported(op, "bitcast of a non-register value")),
        };
        self.set(res, lv);
        Ok(())
    }
}
