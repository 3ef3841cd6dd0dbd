//! Tensor cores at warp scope: `mma.{ab,abt,atb,atbt}` → `mma.sync.aligned.m16n8k16`, one
//! instruction per [`layout::MmaStep`] (the register plan is data, shared with the tests'
//! lane-level simulation).

use tilekit_ir::{Layout, Op, OpKind, ScalarType, Type, Value};

use super::memory::SharedTileRef;
use super::{mty, Lowerer, Lv, R};
use crate::layout;

impl Lowerer<'_> {
    pub(super) fn mma(&mut self, op: &Op) -> R<()> {
        let OpKind::Mma(v) = op.kind else {
            unreachable!("dispatched by kind")
        };
        let (a, b, c) = (op.operands[0], op.operands[1], op.operands[2]);
        let Type::Tile {
            rows: m, cols: n, ..
        } = self.ty(c).clone()
        else {
            return Err(self.unsupported(op, "mma accumulates into a register tile"));
        };
        let expect_a = if v.a_transposed() {
            Layout::Col
        } else {
            Layout::Row
        };
        let expect_b = if v.b_transposed() {
            Layout::Row
        } else {
            Layout::Col
        };
        // Operands in registers: as given at warp scope; at warpgroup scope (until wgmma) each
        // warp loads its quarter of a shared A and the whole shared B with `ldmatrix`, which is
        // the same multiplication.
        let (ad, (ar, ac), ra) = self.mma_operand(op, a, expect_a, Some(m), true)?;
        let (bd, (br, bc), rb) = self.mma_operand(op, b, expect_b, None, false)?;
        if ad != bd || !matches!(ad, ScalarType::BF16 | ScalarType::F16) {
            return Err(self.unsupported(
                op,
                format!("mma of {ad} × {bd} (only bf16 × bf16 and f16 × f16 are lowered)"),
            ));
        }
        let mut rc = self.regs(c);
        let t = mty(ad);
        let kind = if ad == ScalarType::BF16 {
            "bf16"
        } else {
            "f16"
        };
        let st = "!llvm.struct<(f32, f32, f32, f32)>";
        let tys = "i32, i32, i32, i32, i32, i32, f32, f32, f32, f32";
        for step in layout::mma_steps(v, (ar, ac), (br, bc), (m, n)) {
            let r = |regs: &[String], i: u32| regs[i as usize].clone();
            let af: Vec<String> = (0..4)
                .map(|p| self.pack(t, &r(&ra, step.a[2 * p]), &r(&ra, step.a[2 * p + 1])))
                .collect();
            let bf: Vec<String> = (0..2)
                .map(|p| self.pack(t, &r(&rb, step.b[2 * p]), &r(&rb, step.b[2 * p + 1])))
                .collect();
            let args: Vec<String> = af
                .into_iter()
                .chain(bf)
                .chain(step.c.iter().map(|&i| r(&rc, i)))
                .collect();
            let d = self.e.op(&format!(
                "llvm.inline_asm \"mma.sync.aligned.m16n8k16.row.col.f32.{kind}.{kind}.f32 {{$0, $1, $2, $3}}, {{$4, $5, $6, $7}}, {{$8, $9}}, {{$10, $11, $12, $13}};\", \"=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f\" {} : ({tys}) -> {st}",
                args.join(", ")
            ));
            for (q, &ci) in step.c.iter().enumerate() {
                rc[ci as usize] = self.e.op(&format!("llvm.extractvalue {d}[{q}] : {st}"));
            }
        }
        self.set(op.results[0], Lv::Regs(rc));
        Ok(())
    }

    /// An A or B operand in registers: its dtype, stored (rows, cols) as registers, registers.
    /// A shared A at warpgroup scope gives this warp's `m` rows of op(A).
    fn mma_operand(
        &mut self,
        op: &Op,
        v: Value,
        layout: Layout,
        m: Option<u32>,
        is_a: bool,
    ) -> R<(ScalarType, (u32, u32), Vec<String>)> {
        match self.ty(v).clone() {
            Type::Tile {
                dtype,
                rows,
                cols,
                layout: l,
            } => {
                if l != layout {
                    return Err(self.unsupported(op, "operand layouts other than the variant's"));
                }
                Ok((dtype, (rows, cols), self.regs(v)))
            }
            Type::SharedTile {
                dtype,
                rows,
                cols,
                swizzle,
            } => {
                let sh = SharedTileRef {
                    base: self.shared_off(v),
                    rows,
                    cols,
                    swz: swizzle,
                    d: dtype,
                };
                let (rr, rc, row0, col0) = match (is_a, layout, m) {
                    // A (4m × k, row): this warp's rows.
                    (true, Layout::Row, Some(m)) => {
                        let (r0, c0) = self.warpgroup_origin(m);
                        (m, cols, r0, c0)
                    }
                    // A transposed (k × 4m, col): this warp's columns.
                    (true, Layout::Col, Some(m)) => {
                        let (c0, r0) = self.warpgroup_origin(m);
                        (rows, m, r0, c0)
                    }
                    _ => {
                        let z = self.e.i32(0);
                        (rows, cols, z.clone(), z)
                    }
                };
                let regs = self.shared_to_regs(&sh, &row0, &col0, rr, rc, layout);
                Ok((dtype, (rr, rc), regs))
            }
            other => Err(self.unsupported(op, format!("mma operand of type {other}"))),
        }
    }

    /// Two 16-bit elements in one 32-bit register, the first in the low half (the order of
    /// fragment elements in a `.b32` register, PTX ISA *Matrix Fragments for mma.m16n8k16*).
    fn pack(&mut self, t: &str, lo: &str, hi: &str) -> String {
        let vt = format!("vector<2x{t}>");
        let u = self.e.hoist(&format!("llvm.mlir.poison : {vt}"));
        let i0 = self.e.hoist("llvm.mlir.constant(0 : i32) : i32");
        let i1 = self.e.hoist("llvm.mlir.constant(1 : i32) : i32");
        let v0 = self
            .e
            .op(&format!("llvm.insertelement {lo}, {u}[{i0} : i32] : {vt}"));
        let v1 = self
            .e
            .op(&format!("llvm.insertelement {hi}, {v0}[{i1} : i32] : {vt}"));
        self.e.op(&format!("llvm.bitcast {v1} : {vt} to i32"))
    }
}
