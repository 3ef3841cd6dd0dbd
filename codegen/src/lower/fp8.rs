//! fp8 (`f8e4m3`, `f8e5m2`; OCP E4M3FN and E5M2) on sm_90a: which ops may touch fp8 values,
//! and conversions to and from them.
//!
//! An fp8 element lives in an `i8` register holding its OCP encoding, so ops that only move
//! bytes (loads, stores, copies, selects, bitcasts, relayouts, control flow) lower as for `i8`,
//! and constants are their encodings ([`super::emit::Emit::constant`]); warpgroup products read
//! them from shared memory as `wgmma .e4m3/.e5m2` operands. Arithmetic on fp8 is
//! not defined by any instruction: a kernel converts to f32 (or bf16) first, so those ops are
//! refused here with the op named.
//!
//! Conversions use the packed PTX forms (PTX ISA, *Data Movement and Conversion Instructions:
//! cvt*; PTX 7.8, `sm_89` and later): `cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32 d, a, b` rounds two
//! f32 to nearest even, saturating to the largest finite value (NaN stays NaN), `a` into the
//! upper byte of `d` and `b` into the lower; `cvt.rn.f16x2.{e4m3x2,e5m2x2} d, a` widens the two
//! bytes of `a` exactly, the lower byte into the lower half of `d`. Other dtypes pass through
//! f32, which holds every fp8, f16 and bf16 value exactly and every integer that does not
//! saturate fp8 anyway, so each conversion rounds once, as the IR defines.
//!
//! sm_80 has neither instruction; AMD's fp8 differs per chip (gfx942's MFMA takes E4M3FNUZ, a
//! different encoding with max 240; gfx950's is OCP) and is not lowered: both are errors that
//! name the target.

use tilekit_ir::{Op, OpKind, ScalarType};

use super::{Lowerer, R};
use crate::Target;

/// Why `target` cannot lower fp8 at all, or `None` where it can.
fn target_refusal(target: Target) -> Option<&'static str> {
    match target {
        Target::Sm90a => None,
        Target::Sm80 => Some(
            "sm_80 has no fp8 conversions or fp8 tensor cores (cvt .e4m3x2/.e5m2x2 and mma .e4m3 need sm_89 or later): compile for sm_90a, or convert the data to bf16 on the host",
        ),
        Target::Gfx90a => Some("gfx90a has no fp8 instructions"),
        Target::Gfx942 => Some(
            "gfx942's fp8 is E4M3FNUZ/E5M2FNUZ (max 240 for e4m3, another encoding than the IR's OCP f8e4m3/f8e5m2), and fp8 is not lowered for it",
        ),
        Target::Gfx950 => Some("fp8 (OCP on gfx950) is not lowered for AMD targets yet"),
    }
}

/// Whether `op` only moves, selects or reinterprets its elements (or converts them), so that an
/// fp8 operand or result lowers as the bytes it is.
fn moves_bytes(kind: &OpKind) -> bool {
    matches!(
        kind,
        OpKind::Const(_)
            | OpKind::Fill(_)
            | OpKind::Splat
            | OpKind::Select
            | OpKind::Convert
            | OpKind::Transpose
            | OpKind::Bitcast
            | OpKind::GlobalDim(_)
            | OpKind::TableView
            | OpKind::AllocShared
            | OpKind::SharedIndex
            | OpKind::Load
            | OpKind::Store
            | OpKind::Copy
            | OpKind::CopyAsync
            | OpKind::CopyStart
            | OpKind::GatherRows
            | OpKind::ScatterRows { add: false }
            | OpKind::For
            | OpKind::If
            | OpKind::While
            | OpKind::Yield
            | OpKind::Condition
            | OpKind::Call(_)
            // Tensor-core products: wgmma takes fp8 operands as bytes (`lower::wgmma` refuses
            // the forms it cannot issue).
            | OpKind::Mma(_)
            | OpKind::MmaAsync(_)
    )
}

impl Lowerer<'_> {
    /// Refuses an op with an fp8 operand or result that this target, or this op, cannot
    /// lower: every fp8 op off sm_90a, and on sm_90a every op that would compute on fp8
    /// values rather than move or convert them.
    pub(super) fn check_fp8(&self, op: &Op) -> R<()> {
        let fp8 = op
            .operands
            .iter()
            .chain(&op.results)
            .find_map(|&v| self.ty(v).dtype().filter(|d| d.is_fp8()));
        let Some(d) = fp8 else {
            return Ok(());
        };
        if let Some(why) = target_refusal(self.target) {
            return Err(self.unsupported(op, format!("{d} values on {}: {why}", self.target)));
        }
        if moves_bytes(&op.kind) {
            return Ok(());
        }
        Err(self.unsupported(
            op,
            format!(
                "{d} operands: no instruction computes `{}` on fp8; convert to f32 (or bf16) first",
                op.kind.name()
            ),
        ))
    }

    /// `convert` of registers `xs` where `from` or `to` is fp8 (and `from != to`): two
    /// elements per instruction, through f32 (see the module documentation).
    pub(super) fn convert_fp8(
        &mut self,
        from: ScalarType,
        to: ScalarType,
        xs: &[String],
    ) -> Vec<String> {
        let wide: Vec<String> = if from.is_fp8() {
            self.fp8_to_f32(from, xs)
        } else {
            xs.iter()
                .map(|x| self.convert(from, ScalarType::F32, x))
                .collect()
        };
        if to.is_fp8() {
            self.f32_to_fp8(to, &wide)
        } else {
            wide.iter()
                .map(|x| self.convert(ScalarType::F32, to, x))
                .collect()
        }
    }

    /// fp8 bytes → f32, exactly: pairs through `cvt.rn.f16x2.<fp8>x2`, then f16 → f32.
    fn fp8_to_f32(&mut self, from: ScalarType, xs: &[String]) -> Vec<String> {
        let kind = fp8_name(from);
        let zero = self.e.hoist("arith.constant 0 : i8");
        let mut out = Vec::with_capacity(xs.len());
        for pair in xs.chunks(2) {
            let lo = &pair[0];
            let hi = pair.get(1).unwrap_or(&zero);
            let v = self.vector2("i8", lo, hi);
            let packed = self
                .e
                .op(&format!("llvm.bitcast {v} : vector<2xi8> to i16"));
            let h2 = self.e.op(&format!(
                "llvm.inline_asm \"cvt.rn.f16x2.{kind}x2 $0, $1;\", \"=r,h\" {packed} : (i16) -> i32"
            ));
            let hv = self
                .e
                .op(&format!("llvm.bitcast {h2} : i32 to vector<2xf16>"));
            for (i, _) in pair.iter().enumerate() {
                let h = self.extract(&hv, "vector<2xf16>", i);
                out.push(self.e.op(&format!("arith.extf {h} : f16 to f32")));
            }
        }
        out
    }

    /// f32 → fp8 bytes, rounded to nearest even, saturating: pairs through
    /// `cvt.rn.satfinite.<fp8>x2.f32 d, hi, lo`.
    fn f32_to_fp8(&mut self, to: ScalarType, xs: &[String]) -> Vec<String> {
        let kind = fp8_name(to);
        let zero = self.e.constant(ScalarType::F32, 0.0);
        let mut out = Vec::with_capacity(xs.len());
        for pair in xs.chunks(2) {
            let lo = &pair[0];
            let hi = pair.get(1).unwrap_or(&zero);
            let packed = self.e.op(&format!(
                "llvm.inline_asm \"cvt.rn.satfinite.{kind}x2.f32 $0, $1, $2;\", \"=h,f,f\" {hi}, {lo} : (f32, f32) -> i16"
            ));
            let v = self
                .e
                .op(&format!("llvm.bitcast {packed} : i16 to vector<2xi8>"));
            for (i, _) in pair.iter().enumerate() {
                out.push(self.extract(&v, "vector<2xi8>", i));
            }
        }
        out
    }

    /// A two-element vector of `elem` holding `lo` at index 0 (the lower bits once bitcast).
    fn vector2(&mut self, elem: &str, lo: &str, hi: &str) -> String {
        let vt = format!("vector<2x{elem}>");
        let u = self.e.hoist(&format!("llvm.mlir.poison : {vt}"));
        let i0 = self.e.hoist("llvm.mlir.constant(0 : i32) : i32");
        let i1 = self.e.hoist("llvm.mlir.constant(1 : i32) : i32");
        let v0 = self
            .e
            .op(&format!("llvm.insertelement {lo}, {u}[{i0} : i32] : {vt}"));
        self.e
            .op(&format!("llvm.insertelement {hi}, {v0}[{i1} : i32] : {vt}"))
    }

    fn extract(&mut self, v: &str, vt: &str, i: usize) -> String {
        let k = self
            .e
            .hoist(&format!("llvm.mlir.constant({i} : i32) : i32"));
        self.e
            .op(&format!("llvm.extractelement {v}[{k} : i32] : {vt}"))
    }
}

/// The PTX type name of an fp8 dtype.
fn fp8_name(d: ScalarType) -> &'static str {
    if d == ScalarType::F8E5M2 {
        "e5m2"
    } else {
        "e4m3"
    }
}
