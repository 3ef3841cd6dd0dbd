//! Matrix instructions at warp scope: `mma.{ab,abt,atb,atbt}` gathers its operands' registers
//! (loading shared operands into the layouts the variant takes) and hands them to the target's
//! [`Rules::mma`](super::rules::Rules::mma): `mma.sync.aligned.m16n8k16` per
//! [`crate::layout::MmaStep`] on NVIDIA, an MFMA per [`crate::layout::MfmaStep`] on AMD (the
//! register plans are data, shared with the tests' lane-level simulations). f32 operands
//! multiply in tf32 (`tf32.rs`).

use tilekit_ir::{Layout, Op, OpKind, ScalarType, Type, Value};

use super::memory::{Known, SharedTileRef, TileOrigin};
use super::rules::MmaRegs;
use super::tf32::Tf32Mma;
use super::{Lowerer, Lv, R};
use crate::layout::LdmatrixOrder;

impl Lowerer<'_> {
    pub(super) fn mma(&mut self, op: &Op) -> R<()> {
        let OpKind::Mma(v) = op.kind else {
            unreachable!("dispatched by kind")
        };
        // sm_90a warpgroup mma with canonical shared operands: wgmma (`wgmma.rs`).
        if self.try_wgmma(op)? {
            return Ok(());
        }
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
        if ad == ScalarType::F32 && bd == ScalarType::F32 {
            // f32 operands multiply in tf32 (`tf32.rs`).
            let m = Tf32Mma {
                variant: v,
                a_dims: (ar, ac),
                b_dims: (br, bc),
                mn: (m, n),
                a: &ra,
                b: &rb,
                c: self.regs(c),
            };
            let rc = self.mma_tf32(m);
            self.set(op.results[0], Lv::Regs(rc));
            return Ok(());
        }
        if ad != bd || !matches!(ad, ScalarType::BF16 | ScalarType::F16) {
            return Err(self.unsupported(
                op,
                format!(
                    "mma of {ad} × {bd} (only bf16 × bf16, f16 × f16 and f32 × f32 in tf32 are lowered)"
                ),
            ));
        }
        let c_regs = self.regs(c);
        let regs = MmaRegs {
            dtype: ad,
            variant: v,
            a_dims: (ar, ac),
            b_dims: (br, bc),
            mn: (m, n),
            a: &ra,
            b: &rb,
            c: c_regs,
        };
        let rules = self.rules;
        let rc = rules
            .mma(&mut self.e, regs)
            .map_err(|reason| self.unsupported(op, reason))?;
        self.set(op.results[0], Lv::Regs(rc));
        Ok(())
    }

    /// An A or B operand in registers: its dtype, stored (rows, cols) as registers, registers.
    /// A shared A at warpgroup scope gives this warp's `m` rows of op(A).
    pub(super) fn mma_operand(
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
                let (rr, rc, origin) = match (is_a, layout, m) {
                    // A (4m × k, row): this warp's rows.
                    (true, Layout::Row, Some(m)) => (m, cols, self.warpgroup_origin(m)),
                    // A transposed (k × 4m, col): this warp's columns.
                    (true, Layout::Col, Some(m)) => {
                        let o = self.warpgroup_origin(m);
                        let transposed = TileOrigin {
                            row: o.col,
                            col: o.row,
                            known: (o.known.1, o.known.0),
                        };
                        (rows, m, transposed)
                    }
                    _ => {
                        let z = self.e.i32(0);
                        let origin = TileOrigin {
                            row: z.clone(),
                            col: z,
                            known: (Known::Const(0), Known::Const(0)),
                        };
                        (rows, cols, origin)
                    }
                };
                let order = if is_a {
                    LdmatrixOrder::AOperand
                } else {
                    LdmatrixOrder::BOperand
                };
                let regs = self.shared_to_regs(&sh, &origin, rr, rc, layout, order);
                Ok((dtype, (rr, rc), regs))
            }
            other => Err(self.unsupported(op, format!("mma operand of type {other}"))),
        }
    }
}
