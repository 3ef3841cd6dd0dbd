//! Scalars and indices, creation (`fill`, `splat`, `iota`), maps, comparisons, conversions,
//! broadcasts, reductions (warp shuffles) and masks.

use tilekit_ir::{
    BcastAxis, BinaryFn, CmpPred, Const, Layout, MaskKind, Op, OpKind, ReduceAxis, ReduceFn,
    ScalarType, Type, UnaryFn, VecAxis,
};

use super::rules::HwMath;
use super::{mty, Lowerer, Lv, R};
use crate::layout;

const LOG2_E: f64 = std::f64::consts::LOG2_E;
const LN_2: f64 = std::f64::consts::LN_2;

// f32 `mulf`/`addf`/`subf` carry `fastmath<contract>`: the IR lets a product that feeds an add
// or sub fuse into one `fma` (see `tilekit_ir::numeric`, *Contraction*), and LLVM fuses only ops
// that both carry the flag (`fma.rn.f32` on NVIDIA, `v_fma_f32`/`v_fmac_f32` on AMD). Without it
// LLVM writes `mul.rn.f32`/`add.rn.f32`, whose explicit rounding also stops ptxas from fusing.

/// 16-bit floats are computed in f32 and rounded once per op (round to nearest even), which is
/// what the IR defines: every op's result is rounded to its dtype.
fn is_half(d: ScalarType) -> bool {
    matches!(d, ScalarType::BF16 | ScalarType::F16)
}

impl Lowerer<'_> {
    pub(super) fn elementwise(&mut self, op: &Op) -> R<()> {
        let res = op.results.first().copied();
        let rty = res.map(|v| self.ty(v).clone());
        let lv = match &op.kind {
            OpKind::Const(c) => {
                let d = rty
                    .as_ref()
                    .and_then(Type::dtype)
                    .unwrap_or(ScalarType::I32);
                let v = match *c {
                    Const::Float(x) => x,
                    Const::Int(i) => i as f64,
                    Const::Bool(b) => f64::from(u8::from(b)),
                };
                if let (Const::Int(i), ScalarType::I64) = (c, d) {
                    Lv::Scalar(self.e.i64(*i))
                } else {
                    Lv::Scalar(self.e.constant(d, v))
                }
            }
            OpKind::BlockIdx(d) => Lv::Scalar(self.rules.block_index(&mut self.e, *d)),
            OpKind::GridDim(d) => Lv::Scalar(self.rules.grid_dim(&mut self.e, *d)),
            OpKind::WarpIdx => {
                let c = self.e.i32(i64::from(self.frag.lanes()));
                Lv::Scalar(self.e.op(&format!("arith.divui {}, {c} : i32", self.tid)))
            }
            OpKind::WarpgroupIdx => {
                let c = self.e.i32(i64::from(4 * self.frag.lanes()));
                Lv::Scalar(self.e.op(&format!("arith.divui {}, {c} : i32", self.tid)))
            }
            OpKind::NumWarps => Lv::Scalar(self.e.i32(i64::from(self.warps))),
            OpKind::GlobalDim(k) => match self.val(op.operands[0]) {
                Lv::Global { shape, .. } => Lv::Scalar(shape[*k as usize].clone()),
                _ => unreachable!("verified IR: dim of a global view"),
            },
            OpKind::Fill(v) => {
                let t = rty.clone().unwrap_or(Type::Scalar(ScalarType::F32));
                let c = self.e.constant(t.dtype().unwrap_or(ScalarType::F32), *v);
                Lv::Regs(vec![c; self.reg_count_of(op.results[0]) as usize])
            }
            OpKind::Splat => {
                let s = self.scalar(op.operands[0]);
                Lv::Regs(vec![s; self.reg_count_of(op.results[0]) as usize])
            }
            OpKind::Iota(axis) => {
                let t = rty.clone().unwrap_or(Type::Scalar(ScalarType::F32));
                Lv::Regs(self.iota(op, &t, *axis)?)
            }
            OpKind::Unary(f) => {
                let d = rty
                    .as_ref()
                    .and_then(Type::dtype)
                    .unwrap_or(ScalarType::F32);
                self.map(op, |l, xs| l.unary(*f, d, &xs[0]))?
            }
            OpKind::Binary(f) => {
                let d = rty
                    .as_ref()
                    .and_then(Type::dtype)
                    .unwrap_or(ScalarType::F32);
                self.map(op, |l, xs| Ok(l.binary(*f, d, &xs[0], &xs[1])))?
            }
            OpKind::Cmp(p) => {
                let d = self.ty(op.operands[0]).dtype().unwrap_or(ScalarType::I32);
                let (x, y) = (self.scalar(op.operands[0]), self.scalar(op.operands[1]));
                Lv::Scalar(self.cmp(*p, d, &x, &y))
            }
            OpKind::Select => {
                let c = self.scalar(op.operands[0]);
                let t = mty(self.ty(op.operands[1]).dtype().unwrap_or(ScalarType::I32));
                match (
                    self.val(op.operands[1]).clone(),
                    self.val(op.operands[2]).clone(),
                ) {
                    (Lv::Scalar(x), Lv::Scalar(y)) => {
                        Lv::Scalar(self.e.op(&format!("arith.select {c}, {x}, {y} : {t}")))
                    }
                    (Lv::Regs(x), Lv::Regs(y)) => Lv::Regs(
                        x.iter()
                            .zip(&y)
                            .map(|(a, b)| self.e.op(&format!("arith.select {c}, {a}, {b} : {t}")))
                            .collect(),
                    ),
                    _ => return Err(self.unsupported(op, "select of mixed operand kinds")),
                }
            }
            OpKind::Convert => {
                let from = self.ty(op.operands[0]).clone();
                let to = rty.clone().unwrap_or(Type::Scalar(ScalarType::F32));
                let (fd, td) = (
                    from.dtype().unwrap_or(ScalarType::F32),
                    to.dtype().unwrap_or(ScalarType::F32),
                );
                if fd != td && (fd.is_fp8() || td.is_fp8()) {
                    // Packed conversions take two elements per instruction.
                    match self.val(op.operands[0]).clone() {
                        Lv::Regs(xs) => Lv::Regs(self.convert_fp8(fd, td, &xs)),
                        Lv::Scalar(x) => Lv::Scalar(self.convert_fp8(fd, td, &[x]).remove(0)),
                        _ => return Err(self.unsupported(op, "convert of a non-register value")),
                    }
                } else {
                    self.map(op, |l, xs| Ok(l.convert(fd, td, &xs[0])))?
                }
            }
            OpKind::Bcast(axis, f) => self.bcast(op, *axis, *f)?,
            OpKind::Reduce(axis, f) => self.reduce(op, *axis, *f)?,
            OpKind::Mask(kind, v) => self.mask(op, *kind, *v)?,
            other => return Err(self.unsupported(op, format!("no lowering for {}", other.name()))),
        };
        if let Some(r) = res {
            self.set(r, lv);
        }
        Ok(())
    }

    /// Applies `f` elementwise over the operands: register values register by register, scalar
    /// operands broadcast.
    fn map(&mut self, op: &Op, mut f: impl FnMut(&mut Self, &[String]) -> R<String>) -> R<Lv> {
        let ops: Vec<Lv> = op.operands.iter().map(|v| self.val(*v).clone()).collect();
        let n = ops.iter().find_map(|o| match o {
            Lv::Regs(r) => Some(r.len()),
            _ => None,
        });
        let pick = |o: &Lv, k: usize| match o {
            Lv::Scalar(s) => s.clone(),
            Lv::Regs(r) => r[k].clone(),
            _ => unreachable!("verified IR: map of a register value"),
        };
        match n {
            None => {
                let xs: Vec<String> = ops.iter().map(|o| pick(o, 0)).collect();
                Ok(Lv::Scalar(f(self, &xs)?))
            }
            Some(n) => {
                let mut out = Vec::with_capacity(n);
                for k in 0..n {
                    let xs: Vec<String> = ops.iter().map(|o| pick(o, k)).collect();
                    out.push(f(self, &xs)?);
                }
                Ok(Lv::Regs(out))
            }
        }
    }

    fn widen_f32(&mut self, d: ScalarType, x: &str) -> String {
        if is_half(d) {
            self.e.op(&format!("arith.extf {x} : {} to f32", mty(d)))
        } else {
            x.to_string()
        }
    }

    fn narrow_f32(&mut self, d: ScalarType, x: &str) -> String {
        if is_half(d) {
            self.truncf_f32(d, x)
        } else {
            x.to_string()
        }
    }

    /// `x` (f32) rounded to the narrower float `d`: by the target's own sequence for bf16
    /// where it has one ([`super::rules::Rules::f32_to_bf16`]), else `arith.truncf`.
    fn truncf_f32(&mut self, d: ScalarType, x: &str) -> String {
        if d == ScalarType::BF16 {
            if let Some(r) = self.rules.f32_to_bf16(&mut self.e, x) {
                return r;
            }
        }
        self.e.op(&format!("arith.truncf {x} : f32 to {}", mty(d)))
    }

    /// The target's fast form of an f32 function (`ex2.approx.f32`, `v_exp_f32`, …).
    fn hw(&mut self, f: HwMath, x: &str) -> String {
        self.rules.math(&mut self.e, f, x)
    }

    /// An f32 `mulf`, `addf` or `subf` that may contract into an `fma` with its neighbour (see
    /// the note at the top of this file).
    fn f32_arith(&mut self, name: &str, x: &str, y: &str) -> String {
        self.e
            .op(&format!("arith.{name} {x}, {y} fastmath<contract> : f32"))
    }

    fn fconst(&mut self, v: f64) -> String {
        self.e.constant(ScalarType::F32, v)
    }

    /// 2^(x · log2(e)): exp without libdevice.
    fn exp_f32(&mut self, x: &str) -> String {
        let k = self.fconst(LOG2_E);
        let y = self.f32_arith("mulf", x, &k);
        self.hw(HwMath::Exp2, &y)
    }

    fn sigmoid_f32(&mut self, x: &str) -> String {
        let k = self.fconst(-LOG2_E);
        let y = self.f32_arith("mulf", x, &k);
        let ex = self.hw(HwMath::Exp2, &y);
        let one = self.fconst(1.0);
        let den = self.f32_arith("addf", &one, &ex);
        self.e.op(&format!("arith.divf {one}, {den} : f32"))
    }

    fn unary(&mut self, f: UnaryFn, d: ScalarType, x: &str) -> R<String> {
        let t = mty(d);
        if !d.is_float() {
            let r = match f {
                UnaryFn::Not => {
                    let m = if d == ScalarType::Bool {
                        self.e.hoist("arith.constant true")
                    } else {
                        self.e.constant(d, -1.0)
                    };
                    self.e.op(&format!("arith.xori {x}, {m} : {t}"))
                }
                UnaryFn::Neg => {
                    let z = self.e.constant(d, 0.0);
                    self.e.op(&format!("arith.subi {z}, {x} : {t}"))
                }
                UnaryFn::Abs => {
                    let z = self.e.constant(d, 0.0);
                    let n = self.e.op(&format!("arith.subi {z}, {x} : {t}"));
                    self.e.op(&format!("arith.maxsi {x}, {n} : {t}"))
                }
                UnaryFn::Relu => {
                    let z = self.e.constant(d, 0.0);
                    self.e.op(&format!("arith.maxsi {x}, {z} : {t}"))
                }
                _ => unreachable!("verified IR: {} on integers", f.name()),
            };
            return Ok(r);
        }
        let x = self.widen_f32(d, x);
        let x = x.as_str();
        let y = match f {
            UnaryFn::Exp2 => self.hw(HwMath::Exp2, x),
            UnaryFn::Exp => self.exp_f32(x),
            UnaryFn::Log2 => self.hw(HwMath::Log2, x),
            UnaryFn::Log => {
                let l2 = self.hw(HwMath::Log2, x);
                let k = self.fconst(LN_2);
                self.f32_arith("mulf", &l2, &k)
            }
            UnaryFn::Neg => self.e.op(&format!("arith.negf {x} : f32")),
            UnaryFn::Abs => self.e.op(&format!("llvm.intr.fabs({x}) : (f32) -> f32")),
            UnaryFn::Relu => {
                let z = self.fconst(0.0);
                let c = self.e.op(&format!("arith.cmpf ogt, {x}, {z} : f32"));
                self.e.op(&format!("arith.select {c}, {x}, {z} : f32"))
            }
            UnaryFn::Silu => {
                let s = self.sigmoid_f32(x);
                self.f32_arith("mulf", x, &s)
            }
            UnaryFn::Sigmoid => self.sigmoid_f32(x),
            UnaryFn::GeluTanh => {
                // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
                let k = self.fconst((2.0 / std::f64::consts::PI).sqrt());
                let c = self.fconst(0.044715);
                let x2 = self.f32_arith("mulf", x, x);
                let x3 = self.f32_arith("mulf", &x2, x);
                let cx3 = self.f32_arith("mulf", &c, &x3);
                let inner = self.f32_arith("addf", x, &cx3);
                let arg = self.f32_arith("mulf", &k, &inner);
                let th = self.hw(HwMath::Tanh, &arg);
                let one = self.fconst(1.0);
                let half = self.fconst(0.5);
                let s = self.f32_arith("addf", &one, &th);
                let hx = self.f32_arith("mulf", &half, x);
                self.f32_arith("mulf", &hx, &s)
            }
            UnaryFn::Sqrt => self.e.op(&format!("llvm.intr.sqrt({x}) : (f32) -> f32")),
            UnaryFn::Rsqrt => self.hw(HwMath::Rsqrt, x),
            UnaryFn::Recip => {
                let one = self.fconst(1.0);
                self.e.op(&format!("arith.divf {one}, {x} : f32"))
            }
            UnaryFn::Tanh => self.hw(HwMath::Tanh, x),
            UnaryFn::Not => unreachable!("verified IR: not on floats"),
        };
        Ok(self.narrow_f32(d, &y))
    }

    pub(super) fn binary(&mut self, f: BinaryFn, d: ScalarType, x: &str, y: &str) -> String {
        let t = mty(d);
        if d == ScalarType::Bool {
            let name = match f {
                BinaryFn::And | BinaryFn::Min | BinaryFn::Mul => "andi",
                BinaryFn::Or | BinaryFn::Max | BinaryFn::Add => "ori",
                _ => "xori",
            };
            return self.e.op(&format!("arith.{name} {x}, {y} : i1"));
        }
        if !d.is_float() {
            let unsigned = d == ScalarType::U32;
            let simple = match f {
                BinaryFn::Add => Some("addi"),
                BinaryFn::Sub => Some("subi"),
                BinaryFn::Mul => Some("muli"),
                BinaryFn::Div => Some(if unsigned { "divui" } else { "divsi" }),
                BinaryFn::Rem => Some(if unsigned { "remui" } else { "remsi" }),
                BinaryFn::Max => Some(if unsigned { "maxui" } else { "maxsi" }),
                BinaryFn::Min => Some(if unsigned { "minui" } else { "minsi" }),
                BinaryFn::And => Some("andi"),
                BinaryFn::Or => Some("ori"),
                BinaryFn::Xor => Some("xori"),
                _ => None,
            };
            if let Some(name) = simple {
                return self.e.op(&format!("arith.{name} {x}, {y} : {t}"));
            }
            let bits = i64::from(d.size_bytes()) * 8;
            return match f {
                // Shift amounts outside 0..bits shift everything out, as the IR defines (LLVM
                // makes them poison, so they are selected away).
                BinaryFn::Shl | BinaryFn::Shr => {
                    let b = self.e.constant(d, bits as f64);
                    let inr = self.e.op(&format!("arith.cmpi ult, {y}, {b} : {t}"));
                    let (name, out) = if f == BinaryFn::Shl {
                        ("shli", self.e.constant(d, 0.0))
                    } else if unsigned {
                        ("shrui", self.e.constant(d, 0.0))
                    } else {
                        let m = self.e.constant(d, (bits - 1) as f64);
                        ("shrsi", self.e.op(&format!("arith.shrsi {x}, {m} : {t}")))
                    };
                    let z = self.e.constant(d, 0.0);
                    let safe = self.e.op(&format!("arith.select {inr}, {y}, {z} : {t}"));
                    let s = self.e.op(&format!("arith.{name} {x}, {safe} : {t}"));
                    self.e.op(&format!("arith.select {inr}, {s}, {out} : {t}"))
                }
                _ => unreachable!("verified IR: {} on integers", f.name()),
            };
        }
        let (xf, yf) = (self.widen_f32(d, x), self.widen_f32(d, y));
        let r = match f {
            BinaryFn::Add => self.f32_arith("addf", &xf, &yf),
            BinaryFn::Sub => self.f32_arith("subf", &xf, &yf),
            BinaryFn::Mul => self.f32_arith("mulf", &xf, &yf),
            BinaryFn::Div => self.e.op(&format!("arith.divf {xf}, {yf} : f32")),
            BinaryFn::Max => self.e.op(&format!("arith.maxnumf {xf}, {yf} : f32")),
            BinaryFn::Min => self.e.op(&format!("arith.minnumf {xf}, {yf} : f32")),
            BinaryFn::Pow => {
                // x^y = 2^(y·log2 x), with the approximate PTX instructions.
                let l = self.hw(HwMath::Log2, &xf);
                let p = self.f32_arith("mulf", &yf, &l);
                self.hw(HwMath::Exp2, &p)
            }
            _ => unreachable!("verified IR: {} on floats", f.name()),
        };
        let _ = t;
        self.narrow_f32(d, &r)
    }

    pub(super) fn cmp(&mut self, p: CmpPred, d: ScalarType, x: &str, y: &str) -> String {
        let t = mty(d);
        if d.is_float() {
            let pred = match p {
                CmpPred::Lt => "olt",
                CmpPred::Le => "ole",
                CmpPred::Gt => "ogt",
                CmpPred::Ge => "oge",
                CmpPred::Eq => "oeq",
                CmpPred::Ne => "une",
            };
            self.e.op(&format!("arith.cmpf {pred}, {x}, {y} : {t}"))
        } else {
            let u = matches!(d, ScalarType::U32 | ScalarType::Bool);
            let pred = match (p, u) {
                (CmpPred::Lt, false) => "slt",
                (CmpPred::Le, false) => "sle",
                (CmpPred::Gt, false) => "sgt",
                (CmpPred::Ge, false) => "sge",
                (CmpPred::Lt, true) => "ult",
                (CmpPred::Le, true) => "ule",
                (CmpPred::Gt, true) => "ugt",
                (CmpPred::Ge, true) => "uge",
                (CmpPred::Eq, _) => "eq",
                (CmpPred::Ne, _) => "ne",
            };
            self.e.op(&format!("arith.cmpi {pred}, {x}, {y} : {t}"))
        }
    }

    /// `convert` of one element: round to nearest even between floats; float → int saturating
    /// with NaN → 0 (`fptosi.sat`); int → narrower int saturating.
    pub(super) fn convert(&mut self, from: ScalarType, to: ScalarType, x: &str) -> String {
        if from != to && (from.is_fp8() || to.is_fp8()) {
            return self.convert_fp8(from, to, &[x.to_string()]).remove(0);
        }
        let (ft, tt) = (mty(from), mty(to));
        if from == to || (ft == tt && from != ScalarType::Bool && to != ScalarType::Bool) {
            return x.to_string();
        }
        use ScalarType::*;
        match (from.is_float(), to.is_float()) {
            (true, true) => {
                if from.size_bytes() < to.size_bytes() {
                    self.e.op(&format!("arith.extf {x} : {ft} to {tt}"))
                } else if to == F32 {
                    unreachable!("f32 → f32 is the identity")
                } else if from == F32 {
                    self.truncf_f32(to, x)
                } else {
                    // bf16 ↔ f16: through f32, which holds both exactly.
                    let w = self.e.op(&format!("arith.extf {x} : {ft} to f32"));
                    self.truncf_f32(to, &w)
                }
            }
            (false, true) => {
                let name = if matches!(from, U32 | Bool) {
                    "uitofp"
                } else {
                    "sitofp"
                };
                self.e.op(&format!("arith.{name} {x} : {ft} to {tt}"))
            }
            (true, false) => {
                if to == Bool {
                    let z = self.e.constant(from, 0.0);
                    return self.e.op(&format!("arith.cmpf une, {x}, {z} : {ft}"));
                }
                let name = if to == U32 { "fptoui" } else { "fptosi" };
                // `llvm.fpto[su]i.sat`: saturating, NaN → 0, which is what the IR defines.
                self.e.op(&format!(
                    "llvm.call_intrinsic \"llvm.{name}.sat.{tt}.{ft}\"({x}) : ({ft}) -> {tt}"
                ))
            }
            (false, false) => {
                if to == Bool {
                    let z = self.e.constant(from, 0.0);
                    return self.e.op(&format!("arith.cmpi ne, {x}, {z} : {ft}"));
                }
                if from == Bool {
                    return self.e.op(&format!("arith.extui {x} : i1 to {tt}"));
                }
                // Clamp to the destination's range, then change width.
                let (lo, hi) = match to {
                    I8 => (-128.0, 127.0),
                    I32 => (-2147483648.0, 2147483647.0),
                    U32 => (0.0, 4294967295.0),
                    _ => (i64::MIN as f64, i64::MAX as f64),
                };
                let signed_from = from != U32;
                let mut v = x.to_string();
                if from.size_bytes() >= to.size_bytes() || (signed_from && to == U32) {
                    let lo_c = self
                        .e
                        .constant(from, lo.max(if signed_from { f64::MIN } else { 0.0 }));
                    let hi_c = self.e.constant(from, hi);
                    let (mx, mn) = if signed_from {
                        ("maxsi", "minsi")
                    } else {
                        ("maxui", "minui")
                    };
                    if to != I64 {
                        v = self.e.op(&format!("arith.{mx} {v}, {lo_c} : {ft}"));
                        if !(from == I32 && to == U32) {
                            v = self.e.op(&format!("arith.{mn} {v}, {hi_c} : {ft}"));
                        }
                    }
                }
                match from.size_bytes().cmp(&to.size_bytes()) {
                    std::cmp::Ordering::Greater => {
                        self.e.op(&format!("arith.trunci {v} : {ft} to {tt}"))
                    }
                    std::cmp::Ordering::Less => {
                        let name = if signed_from { "extsi" } else { "extui" };
                        self.e.op(&format!("arith.{name} {v} : {ft} to {tt}"))
                    }
                    std::cmp::Ordering::Equal => v,
                }
            }
        }
    }

    /// The (row, column) of each of this lane's registers of a tile, as i32 values.
    pub(super) fn tile_coords(
        &mut self,
        layout: Layout,
        rows: u32,
        cols: u32,
        row0: Option<&str>,
        col0: Option<&str>,
    ) -> Vec<(String, String)> {
        let f = self.frag;
        (0..f.tile_regs(rows, cols))
            .map(|e| {
                let (r, c) = f.tile_elem(layout, cols, e);
                (self.e.affine(r, row0), self.e.affine(c, col0))
            })
            .collect()
    }

    fn iota(&mut self, op: &Op, t: &Type, axis: BcastAxis) -> R<Vec<String>> {
        let d = t.dtype().unwrap_or(ScalarType::I32);
        let idx: Vec<String> = match t {
            Type::Tile {
                rows, cols, layout, ..
            } => self
                .tile_coords(*layout, *rows, *cols, None, None)
                .into_iter()
                .map(|(r, c)| if axis == BcastAxis::Row { r } else { c })
                .collect(),
            Type::Vector { len, .. } => {
                let vl = self.vec_layout(op.results[0]);
                let f = self.frag;
                (0..f.vector_regs(*len, vl))
                    .map(|k| self.e.affine(f.vector_elem(vl, k), None))
                    .collect()
            }
            _ => return Err(self.unsupported(op, "iota of a non-register value")),
        };
        Ok(idx
            .into_iter()
            .map(|i| self.convert(ScalarType::I32, d, &i))
            .collect())
    }

    fn tile_of(&self, v: tilekit_ir::Value) -> (ScalarType, u32, u32, Layout) {
        match self.ty(v) {
            Type::Tile {
                dtype,
                rows,
                cols,
                layout,
            } => (*dtype, *rows, *cols, *layout),
            _ => unreachable!("verified IR: a register tile"),
        }
    }

    /// The distribution a vector along `axis` needs to meet a tile of layout `tile`; an error
    /// when the vector's class also meets tiles of the other layout.
    fn check_vector(&self, op: &Op, v: tilekit_ir::Value, tile: Layout, axis: VecAxis) -> R<()> {
        let want = layout::tile_vector_layout(tile, axis);
        if self.vec_layout(v) != want {
            return Err(self.unsupported(
                op,
                "a vector that meets both row- and col-layout tiles along the same axis (convert one tile's layout first)",
            ));
        }
        Ok(())
    }

    fn bcast(&mut self, op: &Op, axis: BcastAxis, f: BinaryFn) -> R<Lv> {
        let (d, _rows, cols, tl) = self.tile_of(op.operands[0]);
        let vaxis = if axis == BcastAxis::Row {
            VecAxis::Rows
        } else {
            VecAxis::Cols
        };
        self.check_vector(op, op.operands[1], tl, vaxis)?;
        let t = self.regs(op.operands[0]);
        let v = self.regs(op.operands[1]);
        let out = (0..t.len() as u32)
            .map(|e| {
                let k = self.frag.vector_reg_of_tile_reg(tl, vaxis, cols, e) as usize;
                self.binary(f, d, &t[e as usize], &v[k])
            })
            .collect();
        Ok(Lv::Regs(out))
    }

    fn combine(&mut self, f: ReduceFn, d: ScalarType, x: &str, y: &str) -> String {
        let b = match f {
            ReduceFn::Sum => BinaryFn::Add,
            ReduceFn::Max => BinaryFn::Max,
            ReduceFn::Min => BinaryFn::Min,
            ReduceFn::Prod => BinaryFn::Mul,
        };
        self.binary(b, d, x, y)
    }

    /// Combines `x` with the values of the lanes whose index differs in the bits of `masks`
    /// (the target's xor shuffle), so every lane ends with the reduction over its butterfly
    /// group.
    fn butterfly(&mut self, f: ReduceFn, d: ScalarType, x: &str, masks: &[u32]) -> String {
        let t = mty(d);
        let mut acc = x.to_string();
        for &m in masks {
            let other = self.rules.shuffle_xor(&mut self.e, &acc, t, m);
            acc = self.combine(f, d, &acc, &other);
        }
        acc
    }

    fn reduce(&mut self, op: &Op, axis: ReduceAxis, f: ReduceFn) -> R<Lv> {
        let src_ty = self.ty(op.operands[0]).clone();
        let d = src_ty.dtype().unwrap_or(ScalarType::F32);
        // Sums of 16-bit floats accumulate in f32 and round once, as the IR defines reductions
        // (exact, rounded once) up to f32's rounding.
        let wide = if is_half(d) { ScalarType::F32 } else { d };
        let xs: Vec<String> = self
            .regs(op.operands[0])
            .iter()
            .map(|x| self.convert(d, wide, x))
            .collect();
        let fold = |l: &mut Self, items: Vec<String>| -> String {
            let mut it = items.into_iter();
            let first = it.next().unwrap_or_default();
            it.fold(first, |acc, x| l.combine(f, wide, &acc, &x))
        };
        let out = match (axis, &src_ty) {
            (ReduceAxis::All, Type::Vector { .. }) => {
                let part = fold(self, xs);
                let masks = self
                    .frag
                    .vector_reduce_masks(self.vec_layout(op.operands[0]));
                let r = self.butterfly(f, wide, &part, masks);
                Lv::Scalar(self.convert(wide, d, &r))
            }
            (ReduceAxis::All, Type::Tile { .. }) => {
                // Every element sits in exactly one lane, whatever the layout.
                let part = fold(self, xs);
                let r = self.butterfly(f, wide, &part, self.frag.all_lanes_masks());
                Lv::Scalar(self.convert(wide, d, &r))
            }
            (ReduceAxis::Row | ReduceAxis::Col, _) => {
                let (_, rows, cols, tl) = self.tile_of(op.operands[0]);
                let (vaxis, len) = if axis == ReduceAxis::Row {
                    (VecAxis::Rows, rows)
                } else {
                    (VecAxis::Cols, cols)
                };
                self.check_vector(op, op.results[0], tl, vaxis)?;
                let vl = layout::tile_vector_layout(tl, vaxis);
                let masks = self.frag.reduce_masks(vl);
                let nregs = self.frag.vector_regs(len, vl);
                let mut groups: Vec<Vec<String>> = vec![Vec::new(); nregs as usize];
                for (e, x) in xs.into_iter().enumerate() {
                    let k = self.frag.vector_reg_of_tile_reg(tl, vaxis, cols, e as u32);
                    groups[k as usize].push(x);
                }
                let mut out = Vec::new();
                for g in groups {
                    let part = fold(self, g);
                    let r = self.butterfly(f, wide, &part, masks);
                    out.push(self.convert(wide, d, &r));
                }
                Lv::Regs(out)
            }
            _ => return Err(self.unsupported(op, "reduction of a non-register value")),
        };
        Ok(out)
    }

    fn mask(&mut self, op: &Op, kind: MaskKind, v: f64) -> R<Lv> {
        let (d, _rows, cols, tl) = self.tile_of(op.operands[0]);
        let t = self.regs(op.operands[0]);
        let (a, b) = (self.scalar(op.operands[1]), self.scalar(op.operands[2]));
        let fill = self.e.constant(d, v);
        let ty = mty(d);
        // Each test is `lane_part + base_e <pred> bound`, with the lane-dependent part (the
        // same for every register of a layout) computed once per op.
        let (r0, c0) = self.frag.tile_elem(tl, cols, 0);
        let lane_of = |l: &mut Self, x: layout::LaneAffine| {
            l.e.affine(layout::LaneAffine { base: 0, ..x }, None)
        };
        let (r_lane, c_lane) = (lane_of(self, r0), lane_of(self, c0));
        let (lane_part, bound, pred) = match kind {
            MaskKind::Causal | MaskKind::AntiCausal => {
                // col_off + c > row_off + r  ⇔  (c_lane - r_lane) + (c_base - r_base) > row_off - col_off
                let lane = self
                    .e
                    .hoist(&format!("arith.subi {c_lane}, {r_lane} : i32"));
                let bound = self.e.op(&format!("arith.subi {a}, {b} : i32"));
                let p = if kind == MaskKind::Causal {
                    "sgt"
                } else {
                    "slt"
                };
                (lane, bound, p)
            }
            MaskKind::Rows => {
                // row_off + r >= bound  ⇔  r_lane + r_base >= bound - row_off
                let bound = self.e.op(&format!("arith.subi {b}, {a} : i32"));
                (r_lane, bound, "sge")
            }
            MaskKind::Cols => {
                let bound = self.e.op(&format!("arith.subi {b}, {a} : i32"));
                (c_lane, bound, "sge")
            }
        };
        let d = self.e.op(&format!("arith.subi {bound}, {lane_part} : i32"));
        let swapped = match pred {
            "sgt" => "slt",
            "slt" => "sgt",
            _ => "sle",
        };
        let mut out = Vec::with_capacity(t.len());
        for (e, x) in t.iter().enumerate() {
            let (r, c) = self.frag.tile_elem(tl, cols, e as u32);
            let base = match kind {
                MaskKind::Causal | MaskKind::AntiCausal => i64::from(c.base) - i64::from(r.base),
                MaskKind::Rows => i64::from(r.base),
                MaskKind::Cols => i64::from(c.base),
            };
            // `bound - lane_part <swapped pred> base`: one value per op and a compare with an
            // immediate per register, so nothing per register stays live across a loop.
            let k = self.e.i32(base);
            let hit = self.e.op(&format!("arith.cmpi {swapped}, {d}, {k} : i32"));
            out.push(
                self.e
                    .op(&format!("arith.select {hit}, {fill}, {x} : {ty}")),
            );
        }
        Ok(Lv::Regs(out))
    }
}
