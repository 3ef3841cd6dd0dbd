//! Integer, bit and predicate instructions (PTX ISA "Integer Arithmetic Instructions",
//! "Logic and Shift Instructions", "Comparison and Selection Instructions", `mov`).
//! Registers hold raw bits; values are truncated to the instruction type's width on write.

use super::{Ctx, Flow};
use crate::error::EmuResult;
use crate::machine::{lanes, LaneMask};
use crate::ptx::{Operand, Ty};

/// Sign-extends the low `bits` of `v`.
#[inline]
pub fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        let s = 64 - bits;
        ((v << s) as i64) >> s
    }
}

/// The low `bits` of `v`.
#[inline]
pub fn trunc(v: u64, bits: u32) -> u64 {
    if bits >= 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

/// The value of `v` as type `ty` widened to 128 bits (signed types sign-extended).
#[inline]
fn wide(v: u64, ty: Ty) -> i128 {
    if ty.is_signed() {
        i128::from(sext(v, ty.bits()))
    } else {
        i128::from(trunc(v, ty.bits()))
    }
}

/// The integer type of the same width and signedness as `ty` with twice the width.
fn doubled(ty: Ty) -> Option<Ty> {
    Some(match ty {
        Ty::U16 => Ty::U32,
        Ty::S16 => Ty::S32,
        Ty::U32 => Ty::U64,
        Ty::S32 => Ty::S64,
        Ty::B16 => Ty::B32,
        Ty::B32 => Ty::B64,
        _ => return None,
    })
}

/// Executes an integer instruction for the lanes `exec`.
pub fn int_op(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let head = instr.head.as_str();
    let Some(ty) = instr.types.first().copied() else {
        return Err(ctx.bad("expected a type modifier"));
    };
    let bits = ty.bits();
    if bits > 64 {
        return Err(ctx.bad("128-bit values are not supported (registers hold 64 bits)"));
    }
    match head {
        "mov" => return mov(ctx, exec, ty),
        "selp" => {
            let (d, a, b, c) = (ctx.op(0)?, ctx.op(1)?, ctx.op(2)?, ctx.op(3)?);
            for lane in lanes(exec) {
                let p = ctx.read(lane, c, Ty::Pred)? & 1 != 0;
                let v = if p {
                    ctx.read(lane, a, ty)?
                } else {
                    ctx.read(lane, b, ty)?
                };
                ctx.write(lane, d, ty, v)?;
            }
            return Ok(Flow::Next);
        }
        "setp" => return setp(ctx, exec, ty),
        _ => {}
    }
    let d = ctx.op(0)?;
    let a_op = ctx.op(1)?;
    let signed = ty.is_signed();
    let nops = instr.operands.len();
    let sat = instr.has("sat");
    let wide_form = instr.has("wide");
    let hi = instr.has("hi");
    for lane in lanes(exec) {
        let a = ctx.read(lane, a_op, ty)?;
        let (v, out_ty) = match head {
            "not" => (!a, ty),
            "cnot" => (u64::from(trunc(a, bits) == 0), ty),
            "neg" => (a.wrapping_neg(), ty),
            "abs" => (sext(a, bits).unsigned_abs(), ty),
            "popc" => (u64::from(trunc(a, bits).count_ones()), Ty::U32),
            "clz" => (
                u64::from(trunc(a, bits).leading_zeros() - (64 - bits)),
                Ty::U32,
            ),
            "brev" => (trunc(a, bits).reverse_bits() >> (64 - bits), ty),
            "bfind" => {
                let x = if signed && sext(a, bits) < 0 { !a } else { a };
                let x = trunc(x, bits);
                let pos = if x == 0 {
                    u64::from(u32::MAX)
                } else {
                    u64::from(63 - x.leading_zeros())
                };
                let pos = if instr.has("shiftamt") && x != 0 {
                    u64::from(bits - 1) - pos
                } else {
                    pos
                };
                (pos, Ty::U32)
            }
            _ => {
                if nops < 3 {
                    return Err(ctx.bad("expected three operands"));
                }
                let bty = if matches!(head, "shl" | "shr" | "bfe") {
                    Ty::U32
                } else {
                    ty
                };
                let b = ctx.read(lane, ctx.op(2)?, bty)?;
                match head {
                    "add" | "sub" => {
                        let r = if head == "add" {
                            wide(a, ty) + wide(b, ty)
                        } else {
                            wide(a, ty) - wide(b, ty)
                        };
                        let r = if sat && ty == Ty::S32 {
                            r.clamp(i128::from(i32::MIN), i128::from(i32::MAX))
                        } else {
                            r
                        };
                        (r as u64, ty)
                    }
                    "mul" | "mul24" => {
                        // mul24 multiplies the low 24 bits of its operands (PTX ISA "mul24").
                        let (a, b) = if head == "mul24" {
                            (low24(a, signed), low24(b, signed))
                        } else {
                            (a, b)
                        };
                        let r = wide(a, ty) * wide(b, ty);
                        if wide_form {
                            let Some(dt) = doubled(ty) else {
                                return Err(ctx.bad("mul.wide needs a 16- or 32-bit type"));
                            };
                            (r as u64, dt)
                        } else if hi {
                            let sh = if head == "mul24" { 16 } else { bits };
                            ((r >> sh) as u64, ty)
                        } else {
                            (r as u64, ty)
                        }
                    }
                    "mad" | "mad24" => {
                        let c = ctx.read(
                            lane,
                            ctx.op(3)?,
                            if instr.has("wide") {
                                doubled(ty).unwrap_or(ty)
                            } else {
                                ty
                            },
                        )?;
                        let (a, b) = if head == "mad24" {
                            (low24(a, signed), low24(b, signed))
                        } else {
                            (a, b)
                        };
                        let r = wide(a, ty) * wide(b, ty);
                        if instr.has("wide") {
                            let Some(dt) = doubled(ty) else {
                                return Err(ctx.bad("mad.wide needs a 16- or 32-bit type"));
                            };
                            ((r as u64).wrapping_add(c), dt)
                        } else if hi {
                            let r = (r >> if head == "mad24" { 16 } else { bits }) + wide(c, ty);
                            let r = if instr.has("sat") && ty == Ty::S32 {
                                r.clamp(i128::from(i32::MIN), i128::from(i32::MAX))
                            } else {
                                r
                            };
                            (r as u64, ty)
                        } else {
                            ((r as u64).wrapping_add(c), ty)
                        }
                    }
                    "div" | "rem" => {
                        let (x, y) = (wide(a, ty), wide(b, ty));
                        if y == 0 {
                            // The ISA leaves division by zero unspecified; hardware gives all ones.
                            (u64::MAX, ty)
                        } else if head == "div" {
                            ((x / y) as u64, ty)
                        } else {
                            ((x % y) as u64, ty)
                        }
                    }
                    "min" | "max" => {
                        let (x, y) = (wide(a, ty), wide(b, ty));
                        let r = if head == "min" { x.min(y) } else { x.max(y) };
                        (r as u64, ty)
                    }
                    "and" => (a & b, ty),
                    "or" => (a | b, ty),
                    "xor" => (a ^ b, ty),
                    "shl" => (if b >= u64::from(bits) { 0 } else { a << b }, ty),
                    "shr" => {
                        let n = b.min(u64::from(bits));
                        if signed {
                            let x = sext(a, bits);
                            ((x >> n.min(63)) as u64, ty)
                        } else if n >= u64::from(bits) {
                            (0, ty)
                        } else {
                            (trunc(a, bits) >> n, ty)
                        }
                    }
                    "bfe" => {
                        let c = ctx.read(lane, ctx.op(3)?, Ty::U32)?;
                        let pos = (b & 0xff) as u32;
                        let len = (c & 0xff) as u32;
                        let x = trunc(a, bits);
                        let r = if len == 0 {
                            0
                        } else {
                            let field = if pos >= bits { 0 } else { x >> pos };
                            let keep = len.min(64);
                            let f = trunc(field, keep);
                            let sign_bit = (pos + len - 1).min(bits - 1);
                            if signed {
                                let s = (x >> sign_bit) & 1;
                                if s == 1 {
                                    if keep >= 64 {
                                        f
                                    } else {
                                        f | (!0u64 << keep)
                                    }
                                } else {
                                    f
                                }
                            } else {
                                f
                            }
                        };
                        (r, ty)
                    }
                    "bfi" => {
                        let c = ctx.read(lane, ctx.op(3)?, Ty::U32)?;
                        let e = ctx.read(lane, ctx.op(4)?, Ty::U32)?;
                        let pos = (c & 0xff) as u32;
                        let len = (e & 0xff) as u32;
                        let r = if len == 0 || pos >= bits {
                            b
                        } else {
                            let m = trunc(trunc(u64::MAX, len.min(64)) << pos, bits);
                            (b & !m) | ((a << pos) & m)
                        };
                        (r, ty)
                    }
                    "prmt" => {
                        let c = ctx.read(lane, ctx.op(3)?, Ty::U32)?;
                        (prmt(a as u32, b as u32, c as u32, instr)? as u64, Ty::B32)
                    }
                    "shf" => {
                        let c = ctx.read(lane, ctx.op(3)?, Ty::U32)? as u32;
                        let n = if instr.has("clamp") {
                            c.min(32)
                        } else {
                            c & 31
                        };
                        let both = (b << 32) | trunc(a, 32);
                        let r = if instr.has("l") {
                            ((both << n) >> 32) as u32
                        } else {
                            (both >> n) as u32
                        };
                        (u64::from(r), Ty::B32)
                    }
                    "lop3" => {
                        let c = ctx.read(lane, ctx.op(3)?, ty)?;
                        let lut = ctx.read(lane, ctx.op(4)?, Ty::U32)? as u8;
                        let mut r = 0u64;
                        for bit in 0..bits {
                            let idx = (((a >> bit) & 1) << 2)
                                | (((b >> bit) & 1) << 1)
                                | ((c >> bit) & 1);
                            r |= u64::from((lut >> idx) & 1) << bit;
                        }
                        (r, ty)
                    }
                    "sad" => {
                        let c = ctx.read(lane, ctx.op(3)?, ty)?;
                        let (x, y) = (wide(a, ty), wide(b, ty));
                        (((x - y).unsigned_abs() as u64).wrapping_add(c), ty)
                    }
                    "bmsk" => {
                        let pos = (a & 0xff) as u32;
                        let len = (b & 0xff) as u32;
                        let r = if pos >= 32 {
                            0
                        } else {
                            (trunc(u64::MAX, len.min(32)) << pos) & 0xffff_ffff
                        };
                        (r, Ty::B32)
                    }
                    _ => return Err(ctx.unknown()),
                }
            }
        };
        ctx.write(lane, d, out_ty, v)?;
    }
    Ok(Flow::Next)
}

/// The low 24 bits of `v`, sign-extended when `signed`.
fn low24(v: u64, signed: bool) -> u64 {
    if signed {
        sext(v, 24) as u64
    } else {
        trunc(v, 24)
    }
}

/// `prmt.b32{.mode} d, a, b, c`: byte permute (PTX ISA "prmt").
fn prmt(a: u32, b: u32, c: u32, instr: &crate::ptx::Instr) -> EmuResult<u32> {
    let bytes = (u64::from(b) << 32) | u64::from(a);
    let byte = |i: u32| ((bytes >> (8 * (i & 7))) & 0xff) as u32;
    let mode = instr
        .mods
        .iter()
        .find(|m| matches!(m.as_str(), "f4e" | "b4e" | "rc8" | "ecl" | "ecr" | "rc16"));
    let mut r = 0u32;
    match mode.map(|s| s.as_str()) {
        None => {
            for k in 0..4 {
                let sel = (c >> (4 * k)) & 0xf;
                let mut v = byte(sel & 7);
                if sel & 8 != 0 {
                    // Sign-replicate the selected byte's top bit.
                    v = if v & 0x80 != 0 { 0xff } else { 0 };
                }
                r |= v << (8 * k);
            }
        }
        Some("f4e") => {
            for k in 0..4 {
                r |= byte((c + k) & 7) << (8 * k);
            }
        }
        Some("b4e") => {
            for k in 0..4u32 {
                r |= byte((c + 8 - k) & 7) << (8 * k);
            }
        }
        Some("rc8") => {
            let v = byte(c & 3);
            r = v * 0x0101_0101;
        }
        Some("rc16") => {
            let s = c & 1;
            let lo = byte(2 * s) | (byte(2 * s + 1) << 8);
            r = lo | (lo << 16);
        }
        Some("ecl") => {
            let s = c & 3;
            for k in 0..4 {
                r |= byte(k.max(s)) << (8 * k);
            }
        }
        Some(_) => {
            // ecr
            let s = c & 3;
            for k in 0..4 {
                r |= byte(k.min(s)) << (8 * k);
            }
        }
    }
    Ok(r)
}

/// `mov`: copies, packs `{a, b}` into a wider register, or unpacks one into `{a, b}`.
fn mov(ctx: &mut Ctx<'_>, exec: LaneMask, ty: Ty) -> EmuResult<Flow> {
    let (d, a) = (ctx.op(0)?, ctx.op(1)?);
    match (d, a) {
        (Operand::Vec(parts), src) => {
            let n = parts.len() as u32;
            if n == 0 || ty.bits() % n != 0 {
                return Err(ctx.bad("cannot unpack into this many parts"));
            }
            let pb = ty.bits() / n;
            let pty = part_ty(pb);
            for lane in lanes(exec) {
                let v = ctx.read(lane, src, ty)?;
                for (k, p) in parts.iter().enumerate() {
                    ctx.write(lane, p, pty, trunc(v >> (pb * k as u32), pb))?;
                }
            }
        }
        (dst, Operand::Vec(parts)) => {
            let n = parts.len() as u32;
            if n == 0 || ty.bits() % n != 0 {
                return Err(ctx.bad("cannot pack this many parts"));
            }
            let pb = ty.bits() / n;
            let pty = part_ty(pb);
            for lane in lanes(exec) {
                let mut v = 0u64;
                for (k, p) in parts.iter().enumerate() {
                    v |= trunc(ctx.read(lane, p, pty)?, pb) << (pb * k as u32);
                }
                ctx.write(lane, dst, ty, v)?;
            }
        }
        (dst, src) => {
            for lane in lanes(exec) {
                let v = ctx.read(lane, src, ty)?;
                ctx.write(lane, dst, ty, v)?;
            }
        }
    }
    Ok(Flow::Next)
}

fn part_ty(bits: u32) -> Ty {
    match bits {
        8 => Ty::B8,
        16 => Ty::B16,
        32 => Ty::B32,
        _ => Ty::B64,
    }
}

/// Integer comparison `cmp` of `a` and `b` as `ty`.
pub fn int_compare(cmp: &str, a: u64, b: u64, ty: Ty) -> Option<bool> {
    let (x, y) = (wide(a, ty), wide(b, ty));
    // .lo/.ls/.hi/.hs are the unsigned spellings.
    let (x, y) = if matches!(cmp, "lo" | "ls" | "hi" | "hs") {
        (
            i128::from(trunc(a, ty.bits())),
            i128::from(trunc(b, ty.bits())),
        )
    } else {
        (x, y)
    };
    Some(match cmp {
        "eq" => x == y,
        "ne" => x != y,
        "lt" | "lo" => x < y,
        "le" | "ls" => x <= y,
        "gt" | "hi" => x > y,
        "ge" | "hs" => x >= y,
        _ => return None,
    })
}

/// Applies `setp`'s optional boolean combination (`.and`/`.or`/`.xor` with operand `c`) and writes
/// `p` (and `!p` to the second destination of `p|q`).
pub fn setp_finish(ctx: &mut Ctx<'_>, lane: usize, t: bool) -> EmuResult<()> {
    let instr = ctx.instr;
    let combine = instr
        .mods
        .iter()
        .find(|m| matches!(m.as_str(), "and" | "or" | "xor"));
    let (t, f) = match combine {
        Some(op) => {
            let c = ctx.read(lane, ctx.op(3)?, Ty::Pred)? & 1 != 0;
            match op.as_str() {
                "and" => (t && c, !t && c),
                "or" => (t || c, !t || c),
                _ => (t ^ c, !t ^ c),
            }
        }
        None => (t, !t),
    };
    match ctx.op(0)? {
        Operand::PredPair(p, q) => {
            ctx.warp.set_reg(lane, *p, u64::from(t));
            ctx.warp.set_reg(lane, *q, u64::from(f));
        }
        d => ctx.write(lane, d, Ty::Pred, u64::from(t))?,
    }
    Ok(())
}

fn setp(ctx: &mut Ctx<'_>, exec: LaneMask, ty: Ty) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let Some(cmp) = instr.mods.first().cloned() else {
        return Err(ctx.bad("setp needs a comparison"));
    };
    let (a, b) = (ctx.op(1)?, ctx.op(2)?);
    for lane in lanes(exec) {
        let x = ctx.read(lane, a, ty)?;
        let y = ctx.read(lane, b, ty)?;
        let t = int_compare(&cmp, x, y, ty)
            .ok_or_else(|| ctx.bad(format!("unknown comparison `{cmp}` for integers")))?;
        setp_finish(ctx, lane, t)?;
    }
    Ok(Flow::Next)
}
