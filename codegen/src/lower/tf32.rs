//! `mma` of f32 tiles: tensor-core products in TensorFloat-32 (see `tilekit_ir::tf32`). Each
//! operand register is first rounded to tf32 with round-to-nearest, ties away from zero (the
//! interpreter's rounding), then the target's tf32 (or f32) matrix instruction runs on the
//! rounded values, accumulating in f32. The registers are those of the 16-bit path
//! ([`crate::layout`]): no shuffle is needed, because a product sums over k, and one permutation
//! of k applied to both A and B leaves it unchanged.
//!
//! ## NVIDIA (sm_80, sm_90a): `mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32`
//!
//! Operands are rounded with `cvt.rna.tf32.f32`. PTX ISA, *Matrix Fragments for `mma.m16n8k8`*
//! with `.tf32` operands: A (16×8) `a0..a3` at rows `g` (a0, a2) and `g+8` (a1, a3), columns `t`
//! (a0, a1) and `t+4` (a2, a3); B (8×8) `b0, b1` at rows `t` and `t+4`, column `g`; C/D as for
//! m16n8k16. One [`crate::layout::MmaStep`] (an m16n8k16 over a 16-column k-slab, whose lane
//! holds columns `2t, 2t+1, 2t+8, 2t+9` of A at rows `g` and `g+8`) becomes two m16n8k8: the
//! first on columns `2t, 2t+1` (`a = {e0, e2, e1, e3}`, `b = {b0, b1}` of the step: instruction
//! column `t` is stored column `2t`, `t+4` is `2t+1`, in A and B alike), the second on columns
//! `2t+8, 2t+9` (`a = {e4, e6, e5, e7}`, `b = {b2, b3}`). sm_90a runs the same `mma.sync`
//! (wgmma's tf32 form is not used).
//!
//! ## AMD
//!
//! gfx942 has `v_mfma_f32_16x16x8_xf32` (CDNA3 ISA, *Matrix Arithmetic Instructions*): lane `l`
//! holds `A[l%16][2·(l/16) + j]` and `B[2·(l/16) + j][l%16]`, `j = 0, 1`. With the lowering's
//! `Dᵀ = Bᵀ·Aᵀ` ([`crate::layout::mfma_steps`]), a 16-deep k-subtile (registers `0..4` of each
//! lane at k = `4t..4t+4`) is two instructions, on registers `{0, 1}` and `{2, 3}`.
//! gfx90a and gfx950 have no xf32 MFMA (gfx950 dropped it): they run the f32 MFMA
//! `v_mfma_f32_16x16x4_f32` (lane `l` holds `A[l%16][l/16]` and `B[l/16][l%16]`), four per
//! k-subtile, one per register. Because the inputs are already rounded to tf32, the f32 products
//! are exact and these targets compute what gfx942 and NVIDIA do, a quarter as fast per MFMA
//! as an xf32 form would be. AMD has no `cvt` to tf32: the rounding is integer arithmetic on
//! the bits (add half of the dropped unit to the magnitude, clear the 13 low bits), NaNs kept.

use std::collections::HashMap;

use tilekit_ir::MmaVariant;

use super::Lowerer;
use crate::layout;
use crate::Target;

/// A warp-scope mma of f32 operands, as registers of A (stored `a_dims`), B (`b_dims`) and C.
pub(super) struct Tf32Mma<'a> {
    pub variant: MmaVariant,
    pub a_dims: (u32, u32),
    pub b_dims: (u32, u32),
    pub mn: (u32, u32),
    pub a: &'a [String],
    pub b: &'a [String],
    pub c: Vec<String>,
}

impl Lowerer<'_> {
    /// Lowers `m` for this target; returns C's new registers.
    pub(super) fn mma_tf32(&mut self, m: Tf32Mma<'_>) -> Vec<String> {
        match self.target {
            Target::Sm80 | Target::Sm90a => self.mma_tf32_nvidia(m),
            Target::Gfx942 => self.mma_tf32_amd(m, true),
            Target::Gfx90a | Target::Gfx950 => self.mma_tf32_amd(m, false),
        }
    }

    /// `cvt.rna.tf32.f32` of f32 register `x`: the tf32 bits in an i32, once per register.
    fn cvt_rna_tf32(&mut self, cache: &mut HashMap<String, String>, x: &str) -> String {
        if let Some(r) = cache.get(x) {
            return r.clone();
        }
        let r = self.e.op(&format!(
            "llvm.inline_asm \"cvt.rna.tf32.f32 $0, $1;\", \"=r,f\" {x} : (f32) -> i32"
        ));
        cache.insert(x.to_string(), r.clone());
        r
    }

    fn mma_tf32_nvidia(&mut self, m: Tf32Mma<'_>) -> Vec<String> {
        let mut rc = m.c;
        let mut cvt = HashMap::new();
        let st = "!llvm.struct<(f32, f32, f32, f32)>";
        let tys = "i32, i32, i32, i32, i32, i32, f32, f32, f32, f32";
        for step in layout::mma_steps(m.variant, m.a_dims, m.b_dims, m.mn) {
            for (a_regs, b_regs) in [([0, 2, 1, 3], [0, 1]), ([4, 6, 5, 7], [2, 3])] {
                let mut args = Vec::new();
                for i in a_regs {
                    let x = m.a[step.a[i] as usize].clone();
                    args.push(self.cvt_rna_tf32(&mut cvt, &x));
                }
                for i in b_regs {
                    let x = m.b[step.b[i] as usize].clone();
                    args.push(self.cvt_rna_tf32(&mut cvt, &x));
                }
                args.extend(step.c.iter().map(|&i| rc[i as usize].clone()));
                let d = self.e.op(&format!(
                    "llvm.inline_asm \"mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {{$0, $1, $2, $3}}, {{$4, $5, $6, $7}}, {{$8, $9}}, {{$10, $11, $12, $13}};\", \"=f,=f,=f,=f,r,r,r,r,r,r,f,f,f,f\" {} : ({tys}) -> {st}",
                    args.join(", ")
                ));
                for (q, &ci) in step.c.iter().enumerate() {
                    rc[ci as usize] = self.e.op(&format!("llvm.extractvalue {d}[{q}] : {st}"));
                }
            }
        }
        rc
    }

    /// `x` (f32) rounded to tf32 (nearest, ties away from zero) in integer arithmetic, once per
    /// register; NaNs pass through.
    fn round_tf32_bits(&mut self, cache: &mut HashMap<String, String>, x: &str) -> String {
        if let Some(r) = cache.get(x) {
            return r.clone();
        }
        let e = &mut self.e;
        let half = e.hoist("llvm.mlir.constant(4096 : i32) : i32");
        let keep = e.hoist("llvm.mlir.constant(-8192 : i32) : i32");
        let bits = e.op(&format!("llvm.bitcast {x} : f32 to i32"));
        // Adding 0x1000 to the whole pattern rounds the magnitude (the sign bit is above the
        // carry, which can reach it only from a NaN's payload, and NaNs are selected away).
        let up = e.op(&format!("llvm.add {bits}, {half} : i32"));
        let cut = e.op(&format!("llvm.and {up}, {keep} : i32"));
        let rounded = e.op(&format!("llvm.bitcast {cut} : i32 to f32"));
        let nan = e.op(&format!("llvm.fcmp \"uno\" {x}, {x} : f32"));
        let r = e.op(&format!("llvm.select {nan}, {x}, {rounded} : i1, f32"));
        cache.insert(x.to_string(), r.clone());
        r
    }

    fn mma_tf32_amd(&mut self, m: Tf32Mma<'_>, xf32: bool) -> Vec<String> {
        let mut rc = m.c;
        let mut rounded = HashMap::new();
        let z = self.e.hoist("llvm.mlir.constant(0 : i32) : i32");
        let acc_t = "vector<4xf32>";
        for step in layout::mfma_steps(m.variant, m.a_dims, m.b_dims, m.mn, false) {
            let src_a: Vec<String> = step
                .src_a
                .iter()
                .map(|&i| m.b[i as usize].clone())
                .map(|x| self.round_tf32_bits(&mut rounded, &x))
                .collect();
            let src_b: Vec<String> = step
                .src_b
                .iter()
                .map(|&i| m.a[i as usize].clone())
                .map(|x| self.round_tf32_bits(&mut rounded, &x))
                .collect();
            let c_regs: Vec<String> = step.c.iter().map(|&i| rc[i as usize].clone()).collect();
            let mut acc = self.vector_f32(&c_regs);
            if xf32 {
                for s in 0..2 {
                    let a = self.vector_f32(&src_a[2 * s..2 * s + 2]);
                    let b = self.vector_f32(&src_b[2 * s..2 * s + 2]);
                    acc = self.e.op(&format!(
                        "rocdl.mfma.f32.16x16x8.xf32 {a}, {b}, {acc}, {z}, {z}, {z} : (vector<2xf32>, vector<2xf32>, {acc_t}, i32, i32, i32) -> {acc_t}"
                    ));
                }
            } else {
                for (a, b) in src_a.iter().zip(&src_b) {
                    acc = self.e.op(&format!(
                        "rocdl.mfma.f32.16x16x4f32 {a}, {b}, {acc}, {z}, {z}, {z} : (f32, f32, {acc_t}, i32, i32, i32) -> {acc_t}"
                    ));
                }
            }
            for (q, &ci) in step.c.iter().enumerate() {
                let k = self
                    .e
                    .hoist(&format!("llvm.mlir.constant({q} : i32) : i32"));
                rc[ci as usize] = self
                    .e
                    .op(&format!("llvm.extractelement {acc}[{k} : i32] : {acc_t}"));
            }
        }
        rc
    }

    /// A `vector<Nxf32>` of f32 registers.
    fn vector_f32(&mut self, xs: &[String]) -> String {
        let vt = format!("vector<{}xf32>", xs.len());
        let mut v = self.e.hoist(&format!("llvm.mlir.poison : {vt}"));
        for (i, x) in xs.iter().enumerate() {
            let k = self
                .e
                .hoist(&format!("llvm.mlir.constant({i} : i32) : i32"));
            v = self
                .e
                .op(&format!("llvm.insertelement {x}, {v}[{k} : i32] : {vt}"));
        }
        v
    }
}
