//! Global atomics that return the old value (`atomic_max`, `atomic_min`, `atomic_exch`,
//! `atomic_cas`), Philox-4x32-10 random numbers and `device_assert`.
//!
//! Atomics are LLVM `atomicrmw` / `cmpxchg` on address space 1, which the NVPTX back end turns
//! into `atom.global.{max,min,exch,cas}` (a `cas` loop where the target has no such `atom`, as
//! for f32 max/min before sm_90) and the AMDGPU back end into `global_atomic_*`. A scalar update
//! is one atomic per warp, by lane 0, whose old value every lane then receives (an xor butterfly
//! over a value that is zero in every other lane); a tile's elements are updated by the lanes
//! that hold them, each receiving its elements' old values; a register vector's elements by
//! the lanes that own them (a replicated element is updated once), whose copies then receive
//! the old values by a butterfly over the lanes that share the element.

use tilekit_ir::{assert_record, AtomicFn, Op, ScalarType, Type, Value};

use super::memory::Access;
use super::{mty, Lowerer, Lv, R};

impl Lowerer<'_> {
    /// `atomic_max|min|exch (g, x, idx…)` (`f` given) and `atomic_cas (g, cmp, x, idx…)`.
    pub(super) fn atomic_update(&mut self, op: &Op, f: Option<AtomicFn>) -> R<()> {
        let xi = if f.is_none() { 2 } else { 1 };
        let (gv, x) = (op.operands[0], op.operands[xi]);
        let cmp = (xi == 2).then(|| op.operands[1]);
        let idx = self.idx(&op.operands[xi + 1..]);
        let xty = self.ty(x).clone();
        let d = xty.dtype().unwrap_or(ScalarType::F32);
        let kind = match (f, d) {
            (None, ScalarType::I32 | ScalarType::U32 | ScalarType::F32) => "",
            (Some(AtomicFn::Exch), ScalarType::I32 | ScalarType::U32 | ScalarType::F32) => "xchg",
            (Some(AtomicFn::Max), ScalarType::I32) => "max",
            (Some(AtomicFn::Max), ScalarType::U32) => "umax",
            (Some(AtomicFn::Max), ScalarType::F32) => "fmax",
            (Some(AtomicFn::Min), ScalarType::I32) => "min",
            (Some(AtomicFn::Min), ScalarType::U32) => "umin",
            (Some(AtomicFn::Min), ScalarType::F32) => "fmin",
            (_, other) => {
                return Err(self.unsupported(op, format!("{} of {other}", op.kind.name())));
            }
        };
        let g = self.global(gv);
        match &xty {
            Type::Scalar(_) => {
                let (pred, terms) = self.leading(&g, &idx);
                let l0 = self.lane0();
                let pred = Some(self.and_opt(pred, l0));
                let off = self.offset(&terms);
                let ptr = self.global_ptr(&g, &off, d);
                let c = cmp.map(|c| self.scalar(c));
                let xs = self.scalar(x);
                let old = self.atomic_returning(&Access { pred, ptr }, c.as_deref(), &xs, d, kind);
                let all = self.lane0_to_all(&old, d);
                self.set(op.results[0], Lv::Scalar(all));
            }
            Type::Vector { len, .. } => {
                // The lane that owns a replicated element updates it; its copies receive the
                // old value from it.
                let vl = self.vec_layout(x);
                let acc = self.global_vector(&g, &idx, *len, vl, d, true);
                let olds = self.atomic_each(&acc, x, cmp, d, kind);
                let masks = self.frag.reduce_masks(vl);
                let olds = olds
                    .iter()
                    .map(|o| self.xor_broadcast(o, d, masks))
                    .collect();
                self.set(op.results[0], Lv::Regs(olds));
            }
            Type::Tile {
                rows, cols, layout, ..
            } => {
                let acc = self.global_tile(&g, &idx, *rows, *cols, *layout, d);
                let olds = self.atomic_each(&acc, x, cmp, d, kind);
                self.set(op.results[0], Lv::Regs(olds));
            }
            other => return Err(self.unsupported(op, format!("atomic update of {other}"))),
        }
        Ok(())
    }

    /// The atomics of a register value's elements, one per access (register `k` of `x`, and
    /// of `cmp` where given, at `acc[k]`): their old values.
    fn atomic_each(
        &mut self,
        acc: &[Access],
        x: Value,
        cmp: Option<Value>,
        d: ScalarType,
        kind: &str,
    ) -> Vec<String> {
        let xs = self.regs(x);
        let cs = cmp.map(|c| self.regs(c));
        acc.iter()
            .enumerate()
            .map(|(k, a)| {
                let c = cs.as_ref().map(|c| c[k].clone());
                self.atomic_returning(a, c.as_deref(), &xs[k], d, kind)
            })
            .collect()
    }

    /// One element's atomic under the access's predicate: the old value, 0 where the predicate
    /// is false. `cmp` given: a compare-and-swap (`cmpxchg` works on integers, so f32 operands
    /// travel as their bits); else `atomicrmw kind`.
    fn atomic_returning(
        &mut self,
        a: &Access,
        cmp: Option<&str>,
        x: &str,
        d: ScalarType,
        kind: &str,
    ) -> String {
        let t = mty(d);
        let body = |s: &mut Self| -> String {
            match cmp {
                None => s.e.op(&format!(
                    "llvm.atomicrmw {kind} {}, {x} monotonic : !llvm.ptr<1>, {t}",
                    a.ptr
                )),
                Some(c) => {
                    let (c, x) = if d == ScalarType::F32 {
                        let c = s.e.op(&format!("arith.bitcast {c} : f32 to i32"));
                        let x = s.e.op(&format!("arith.bitcast {x} : f32 to i32"));
                        (c, x)
                    } else {
                        (c.to_string(), x.to_string())
                    };
                    let pair = s.e.op(&format!(
                        "llvm.cmpxchg {}, {c}, {x} monotonic monotonic : !llvm.ptr<1>, i32",
                        a.ptr
                    ));
                    let old = s.e.op(&format!(
                        "llvm.extractvalue {pair}[0] : !llvm.struct<(i32, i1)>"
                    ));
                    if d == ScalarType::F32 {
                        s.e.op(&format!("arith.bitcast {old} : i32 to f32"))
                    } else {
                        old
                    }
                }
            }
        };
        match &a.pred {
            None => body(self),
            Some(p) => {
                let z = self.e.constant(d, 0.0);
                let r = self.e.fresh();
                self.e.open(&format!("{r} = scf.if {p} -> ({t}) {{"));
                let old = body(self);
                self.e.line(&format!("scf.yield {old} : {t}"));
                self.e.reopen("} else {");
                self.e.line(&format!("scf.yield {z} : {t}"));
                self.e.close("}");
                r
            }
        }
    }

    /// Lane 0's value of `x` (zero in every other lane) in every lane.
    fn lane0_to_all(&mut self, x: &str, d: ScalarType) -> String {
        let masks = self.frag.all_lanes_masks();
        self.xor_broadcast(x, d, masks)
    }

    /// The one lane's value of `x` that is not zero, among the lanes an xor butterfly over
    /// `masks` joins, in each of them: the xor of theirs.
    fn xor_broadcast(&mut self, x: &str, d: ScalarType, masks: &[u32]) -> String {
        let mut bits = if d == ScalarType::F32 {
            self.e.op(&format!("arith.bitcast {x} : f32 to i32"))
        } else {
            x.to_string()
        };
        for &m in masks {
            let other = self.rules.shuffle_xor(&mut self.e, &bits, "i32", m);
            bits = self.e.op(&format!("arith.xori {bits}, {other} : i32"));
        }
        if d == ScalarType::F32 {
            self.e.op(&format!("arith.bitcast {bits} : i32 to f32"))
        } else {
            bits
        }
    }

    /// `philox (k0, k1, c0, c1, c2, c3)`: ten rounds per element register; the round keys
    /// (k + r·W) are computed once. Each round is two 32×32→64 multiplies (`mul.wide.u32` /
    /// `mul.hi.u32` on NVIDIA, `v_mul_hi_u32` on AMD).
    pub(super) fn philox(&mut self, op: &Op) -> R<()> {
        const M0: i64 = 0xD251_1F53;
        const M1: i64 = 0xCD9E_8D57;
        const W0: i64 = 0x9E37_79B9;
        const W1: i64 = 0xBB67_AE85;
        let (k0, k1) = (self.scalar(op.operands[0]), self.scalar(op.operands[1]));
        let mut keys = vec![(k0, k1)];
        for r in 1..10i64 {
            let a = self.e.i32(((W0 * r) as u32) as i32 as i64);
            let b = self.e.i32(((W1 * r) as u32) as i32 as i64);
            let (k0, k1) = keys[0].clone();
            let k0 = self.e.op(&format!("arith.addi {k0}, {a} : i32"));
            let k1 = self.e.op(&format!("arith.addi {k1}, {b} : i32"));
            keys.push((k0, k1));
        }
        let scalar = op.operands[2..6].iter().all(|&c| self.ty(c).is_scalar());
        let n = if scalar {
            1
        } else {
            self.reg_count_of(op.results[0]) as usize
        };
        let words: Vec<Vec<String>> = op.operands[2..6]
            .iter()
            .map(|&c| {
                if self.ty(c).is_scalar() {
                    vec![self.scalar(c); n]
                } else {
                    self.regs(c)
                }
            })
            .collect();
        let m0 = self.e.hoist(&format!("arith.constant {M0} : i64"));
        let m1 = self.e.hoist(&format!("arith.constant {M1} : i64"));
        let sh = self.e.hoist("arith.constant 32 : i64");
        let mut out: Vec<Vec<String>> = (0..4).map(|_| Vec::with_capacity(n)).collect();
        let counters: Vec<[String; 4]> = (0..n)
            .map(|e| std::array::from_fn(|k| words[k][e].clone()))
            .collect();
        for mut c in counters {
            for (k0, k1) in &keys {
                let (hi0, lo0) = self.mul_hi_lo(&c[0], &m0, &sh);
                let (hi1, lo1) = self.mul_hi_lo(&c[2], &m1, &sh);
                let x0 = self.e.op(&format!("arith.xori {hi1}, {} : i32", c[1]));
                let x0 = self.e.op(&format!("arith.xori {x0}, {k0} : i32"));
                let x2 = self.e.op(&format!("arith.xori {hi0}, {} : i32", c[3]));
                let x2 = self.e.op(&format!("arith.xori {x2}, {k1} : i32"));
                c = [x0, lo1, x2, lo0];
            }
            for (k, w) in c.into_iter().enumerate() {
                out[k].push(w);
            }
        }
        for (k, mut regs) in out.into_iter().enumerate() {
            let lv = if scalar {
                Lv::Scalar(regs.remove(0))
            } else {
                Lv::Regs(regs)
            };
            self.set(op.results[k], lv);
        }
        Ok(())
    }

    /// `device_assert[@message] (c)`: a lane whose condition (any of its registers, for a tile
    /// or vector) is false stops the kernel with a trap. On NVIDIA the lane first writes the
    /// [`assert_record`] the module's `.global` [`assert_record::SYMBOL`] points at (when it is
    /// not 0), then fences at system scope and traps; the trap's PTX line also carries the
    /// message in a comment (`trap; // device_assert: …`) for readers of the PTX.
    pub(super) fn device_assert(&mut self, op: &Op, message: &str) -> R<()> {
        let c = op.operands[0];
        let conds = if self.ty(c).is_scalar() {
            vec![self.scalar(c)]
        } else {
            self.regs(c)
        };
        let t = self.e.hoist("arith.constant true");
        let mut failed: Option<String> = None;
        for c in conds {
            let not = self.e.op(&format!("arith.xori {c}, {t} : i1"));
            failed = Some(match failed {
                None => not,
                Some(f) => self.e.op(&format!("arith.ori {f}, {not} : i1")),
            });
        }
        let Some(failed) = failed else {
            return Ok(());
        };
        self.e.open(&format!("scf.if {failed} {{"));
        if self.target.is_nvidia() {
            self.write_assert_record(message);
            // PTX ISA "Memory Consistency Model": `fence.sc.sys` orders the record's writes
            // before the trap for observers outside the GPU (the host reading the mapped page).
            let text = assert_comment(message);
            self.e.line(&format!(
                "llvm.inline_asm has_side_effects \"fence.sc.sys; trap; // device_assert: {text}\", \"~{{memory}}\" : () -> ()"
            ));
        } else {
            self.e.line("llvm.intr.trap");
        }
        self.e.close("}");
        Ok(())
    }

    /// Writes the failing lane's [`assert_record`] where the module's record pointer points:
    /// the lane that moves the state word from 0 to 1 (`atom.global.cas`, so one lane of the
    /// whole grid writes) stores its block, thread and `message`.
    fn write_assert_record(&mut self, message: &str) {
        let g = self.e.op(&format!(
            "llvm.mlir.addressof @{} : !llvm.ptr<1>",
            assert_record::SYMBOL
        ));
        let at = self.e.op(&format!(
            "llvm.load {g} {{alignment = 8 : i64}} : !llvm.ptr<1> -> i64"
        ));
        let zero = self.e.i64(0);
        let mapped = self.e.op(&format!("arith.cmpi ne, {at}, {zero} : i64"));
        self.e.open(&format!("scf.if {mapped} {{"));
        let old = self.e.op(&format!(
            "llvm.inline_asm has_side_effects \"atom.global.cas.b32 $0, [$1+{}], 0, 1;\", \"=r,l,~{{memory}}\" {at} : (i64) -> i32",
            assert_record::STATE
        ));
        let z = self.e.i32(0);
        let first = self.e.op(&format!("arith.cmpi eq, {old}, {z} : i32"));
        self.e.open(&format!("scf.if {first} {{"));
        let base = self
            .e
            .op(&format!("llvm.inttoptr {at} : i64 to !llvm.ptr<1>"));
        let (words, length) = assert_record::message_words(message);
        let mut fields = Vec::new();
        for (k, d) in ["x", "y", "z"].into_iter().enumerate() {
            let b = self.e.op(&format!("nvvm.read.ptx.sreg.ctaid.{d} : i32"));
            fields.push((assert_record::BLOCK + 4 * k, b));
        }
        let tid = self.e.op("nvvm.read.ptx.sreg.tid.x : i32");
        fields.push((assert_record::THREAD, tid));
        fields.push((assert_record::LENGTH, self.e.i32(length as i64)));
        for (k, w) in words.into_iter().enumerate() {
            // As i32 (MLIR prints the bits of a negative i32 constant fine).
            fields.push((assert_record::MESSAGE + 4 * k, self.e.i32(w as i32 as i64)));
        }
        for (offset, v) in fields {
            let p = self.e.op(&format!(
                "llvm.getelementptr {base}[{offset}] : (!llvm.ptr<1>) -> !llvm.ptr<1>, i8"
            ));
            self.e.line(&format!(
                "llvm.store {v}, {p} {{alignment = 4 : i64}} : i32, !llvm.ptr<1>"
            ));
        }
        self.e.close("}");
        self.e.close("}");
    }

    /// High and low words of the 64-bit product of u32 `x` and the constant `m` (an i64).
    fn mul_hi_lo(&mut self, x: &str, m: &str, sh: &str) -> (String, String) {
        let w = self.e.op(&format!("arith.extui {x} : i32 to i64"));
        let p = self.e.op(&format!("arith.muli {w}, {m} : i64"));
        let lo = self.e.op(&format!("arith.trunci {p} : i64 to i32"));
        let h = self.e.op(&format!("arith.shrui {p}, {sh} : i64"));
        let hi = self.e.op(&format!("arith.trunci {h} : i64 to i32"));
        (hi, lo)
    }
}

/// The message as it can stand in a PTX comment inside an MLIR string and LLVM inline asm: one
/// line, no quote or backslash (MLIR string escapes), no `$` (inline asm operand references).
fn assert_comment(message: &str) -> String {
    message
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' | '$' => '_',
            c if c.is_control() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assert_messages_stay_on_one_plain_line() {
        assert_eq!(assert_comment("x > 0"), "x > 0");
        assert_eq!(assert_comment("a \"b\"\n$c\\"), "a 'b' _c_");
        assert_eq!(assert_comment("π"), "?");
    }
}
