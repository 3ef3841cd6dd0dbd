//! Floating-point instructions and `cvt` (PTX ISA "Floating-Point Instructions", "Half Precision
//! Floating-Point Instructions", "cvt").
//!
//! Arithmetic is computed in f64 and rounded once to the instruction's type: for f32 and the
//! 16-bit types f64 holds the exact sum, product and quotient closely enough that this equals
//! the correctly rounded result the ISA specifies for `.rn` (and the directed modes adjust the
//! f64 result by one unit toward their direction when it is inexact). `fma` of the 32- and
//! 16-bit types rounds the exact sum to odd in f64 first (see `fused_narrow`), so the result is
//! rounded once, as the ISA's fused operation is.
//! Approximate functions (`ex2.approx`, `rsqrt.approx`, ...) return the correctly rounded value,
//! which lies inside every error bound the ISA documents for them.

use half::{bf16, f16};

use super::int::{setp_finish, sext, trunc};
use super::{Ctx, Flow};
use crate::error::EmuResult;
use crate::machine::{lanes, LaneMask};
use crate::ptx::{Instr, Ty};

/// Whether an instruction computes in a floating-point type (and `cvt`, which mixes them).
pub fn is_float_op(instr: &Instr) -> bool {
    if matches!(instr.head.as_str(), "mov" | "selp") {
        return false;
    }
    instr.head == "cvt" || instr.types.first().is_some_and(|t| t.is_float())
}

/// A rounding mode of a float result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// To nearest, ties to even.
    Rn,
    /// Toward zero.
    Rz,
    /// Toward minus infinity.
    Rm,
    /// Toward plus infinity.
    Rp,
    /// To nearest, ties away from zero.
    Rna,
}

fn round_mode(instr: &Instr) -> Round {
    for m in &instr.mods {
        match m.as_str() {
            "rz" | "rzi" => return Round::Rz,
            "rm" | "rmi" => return Round::Rm,
            "rp" | "rpi" => return Round::Rp,
            "rna" => return Round::Rna,
            _ => {}
        }
    }
    Round::Rn
}

/// Decodes `bits` of a float type to f64.
#[inline]
pub fn to_f64(bits: u64, ty: Ty) -> f64 {
    match ty {
        Ty::F16 => f16::from_bits(bits as u16).to_f64(),
        Ty::Bf16 => bf16::from_bits(bits as u16).to_f64(),
        Ty::F32 | Ty::Tf32 => f64::from(f32::from_bits(bits as u32)),
        Ty::F64 => f64::from_bits(bits),
        Ty::E4m3 => e4m3_to_f64(bits as u8),
        Ty::E5m2 => f16::from_bits(u16::from(bits as u8) << 8).to_f64(),
        _ => f64::from_bits(bits),
    }
}

/// FP8 E4M3 (OCP "E4M3FN": no infinities, 0x7f/0xff are NaN, max 448) to f64.
pub fn e4m3_to_f64(b: u8) -> f64 {
    let s = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((b >> 3) & 0xf);
    let m = f64::from(b & 7);
    if e == 15 && b & 7 == 7 {
        return f64::NAN;
    }
    if e == 0 {
        s * m / 8.0 * 2f64.powi(-6)
    } else {
        s * (1.0 + m / 8.0) * 2f64.powi(e - 7)
    }
}

/// Rounds f64 to the nearest f64 representable with `mant` fraction bits and exponent range of
/// a format with `emin`/`emax` (normal exponents), in mode `r`; returns the value (possibly
/// infinite) — used for the fp8 formats.
fn round_to_format(x: f64, mant: i32, emin: i32, r: Round) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let e = x.abs().log2().floor() as i32;
    let e = e.max(emin);
    let q = 2f64.powi(e - mant);
    let y = x / q;
    let n = match r {
        Round::Rn => {
            let f = y.floor();
            let d = y - f;
            if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
                f + 1.0
            } else {
                f
            }
        }
        Round::Rna => y.round(),
        Round::Rz => y.trunc(),
        Round::Rm => y.floor(),
        Round::Rp => y.ceil(),
    };
    n * q
}

/// f64 to FP8 E4M3 bits (`.satfinite` clamps to ±448; otherwise overflow gives NaN 0x7f).
pub fn f64_to_e4m3(x: f64, satfinite: bool) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let s: u8 = if x.is_sign_negative() { 0x80 } else { 0 };
    let v = round_to_format(x.abs(), 3, -6, Round::Rn);
    if v > 448.0 {
        return if satfinite { s | 0x7e } else { s | 0x7f };
    }
    encode_minifloat(v, 4, 3, 7) | s
}

/// f64 to FP8 E5M2 bits (`.satfinite` clamps to ±57344; otherwise overflow gives infinity).
pub fn f64_to_e5m2(x: f64, satfinite: bool) -> u8 {
    if x.is_nan() {
        return 0x7f;
    }
    let s: u8 = if x.is_sign_negative() { 0x80 } else { 0 };
    if x.is_infinite() {
        return if satfinite { s | 0x7b } else { s | 0x7c };
    }
    let v = round_to_format(x.abs(), 2, -14, Round::Rn);
    if v > 57344.0 {
        return if satfinite { s | 0x7b } else { s | 0x7c };
    }
    encode_minifloat(v, 5, 2, 15) | s
}

/// Encodes a non-negative value already representable in the format.
fn encode_minifloat(v: f64, ebits: u32, mbits: u32, bias: i32) -> u8 {
    if v == 0.0 {
        return 0;
    }
    let e = v.log2().floor() as i32;
    if e < 1 - bias {
        // Subnormal: v = m * 2^(1-bias-mbits)
        let m = (v / 2f64.powi(1 - bias - mbits as i32)).round() as u8;
        return m;
    }
    let m = ((v / 2f64.powi(e) - 1.0) * f64::from(1u32 << mbits)).round() as u32;
    let (e, m) = if m >= 1 << mbits { (e + 1, 0) } else { (e, m) };
    let _ = ebits;
    (((e + bias) as u32) << mbits | m) as u8
}

/// Rounds f64 to f32 in mode `r`.
pub fn f64_to_f32(x: f64, r: Round) -> f32 {
    let n = x as f32;
    if r == Round::Rn || x.is_nan() || f64::from(n) == x {
        if r == Round::Rna && f64::from(n) != x {
            // fall through below
        } else {
            return n;
        }
    }
    let up = next_up_f32(n);
    let down = next_down_f32(n);
    let (lo, hi) = if f64::from(n) < x { (n, up) } else { (down, n) };
    match r {
        Round::Rz => {
            if x > 0.0 {
                lo
            } else {
                hi
            }
        }
        Round::Rm => lo,
        Round::Rp => hi,
        Round::Rna => {
            let (dl, dh) = (x - f64::from(lo), f64::from(hi) - x);
            // Ties go away from zero.
            if dl < dh || (dl == dh && x < 0.0) {
                lo
            } else {
                hi
            }
        }
        Round::Rn => n,
    }
}

fn next_up_f32(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

fn next_down_f32(x: f32) -> f32 {
    -next_up_f32(-x)
}

/// Rounds f64 to `ty`'s format in mode `r` and returns its bits.
#[inline]
pub fn from_f64(x: f64, ty: Ty, r: Round) -> u64 {
    match ty {
        Ty::F32 => u64::from(f64_to_f32(x, r).to_bits()),
        Ty::F64 => x.to_bits(),
        Ty::F16 => u64::from(round16(x, r, false)),
        Ty::Bf16 => u64::from(round16(x, r, true)),
        Ty::Tf32 => {
            // tf32 keeps 10 fraction bits in an f32 container (the 13 low bits clear; see
            // `tensor_core::elements::OperandType::Tf32`). `cvt` to tf32 takes `.rna` (nearest,
            // ties away from zero), `.rn` and `.rz` (PTX ISA "cvt"); a NaN stays a quiet NaN.
            let f = x as f32;
            let b = f.to_bits();
            if f.is_nan() {
                return u64::from((b | 0x7fc0_0000) & !0x1fff);
            }
            // Sign-magnitude: rounding the magnitude rounds the value; a carry out of the
            // fraction moves to the next binade (infinity past the largest finite value).
            let (sign, mag) = (b & 0x8000_0000, b & 0x7fff_ffff);
            let (low, base) = (mag & 0x1fff, mag & !0x1fff);
            let up = match r {
                Round::Rz => false,
                Round::Rn => low > 0x1000 || (low == 0x1000 && base & 0x2000 != 0),
                _ => low >= 0x1000,
            };
            let mag = if up && f.is_finite() {
                base + 0x2000
            } else {
                base
            };
            u64::from(sign | mag)
        }
        _ => x.to_bits(),
    }
}

fn round16(x: f64, r: Round, brain: bool) -> u16 {
    // `half`'s conversions from f64 drop the low 32 bits of the significand before rounding,
    // so a value just past a midpoint by less than that (an f32 two ulps above a bf16
    // midpoint, say) comes back as a tie, rounded to even: the wrong neighbour. `near` is
    // therefore only one of the two neighbours of x; the nearest is picked below, exactly.
    let near = if brain {
        bf16::from_f64(x).to_bits()
    } else {
        f16::from_f64(x).to_bits()
    };
    if x.is_nan() {
        return near;
    }
    let val = |b: u16| {
        if brain {
            bf16::from_bits(b).to_f64()
        } else {
            f16::from_bits(b).to_f64()
        }
    };
    let v = val(near);
    if v == x || v.is_infinite() {
        return near;
    }
    // Neighbours by bit pattern (sign-magnitude).
    let step = |b: u16, toward_up: bool| -> u16 {
        let neg = b & 0x8000 != 0;
        let mag = b & 0x7fff;
        if (toward_up && !neg) || (!toward_up && neg) {
            b + 1
        } else if mag == 0 {
            (b ^ 0x8000) + 1
        } else {
            b - 1
        }
    };
    let (lo, hi) = if v < x {
        (near, step(near, true))
    } else {
        (step(near, false), near)
    };
    if r == Round::Rn {
        // Both differences are exact in f64 (x lies between two neighbours of its own
        // binade or at its edge); a tie goes to the even significand.
        let (dl, dh) = (x - val(lo), val(hi) - x);
        return if dl < dh || (dl == dh && lo & 1 == 0) {
            lo
        } else {
            hi
        };
    }
    match r {
        Round::Rz => {
            if x > 0.0 {
                lo
            } else {
                hi
            }
        }
        Round::Rm => lo,
        Round::Rp => hi,
        Round::Rna => {
            let (dl, dh) = (x - val(lo), val(hi) - x);
            if dl < dh || (dl == dh && x < 0.0) {
                lo
            } else {
                hi
            }
        }
        Round::Rn => unreachable!("round to nearest even returned above"),
    }
}

/// Flushes an f32 subnormal to a zero of the same sign (`.ftz`).
#[inline]
fn ftz(x: f64, ty: Ty, on: bool) -> f64 {
    if on && ty == Ty::F32 && x != 0.0 && x.abs() < f64::from(f32::MIN_POSITIVE) {
        0.0f64.copysign(x)
    } else {
        x
    }
}

/// The scalar element type of a (possibly packed) float type and the element count.
fn elements(ty: Ty) -> (Ty, u32) {
    match ty {
        Ty::F16x2 => (Ty::F16, 2),
        Ty::Bf16x2 => (Ty::Bf16, 2),
        t => (t, 1),
    }
}

/// `p + c` for a product `p` of two values of a 32- or 16-bit format (exact in f64), rounded
/// *to odd* in f64: rounding that to the narrow format in any mode gives the correctly rounded
/// fused result (f64 carries more than twice the narrow precision plus two bits), where rounding
/// `p + c` to nearest in f64 first could land on a tie the exact sum is not on.
fn fused_narrow(p: f64, c: f64) -> f64 {
    let s = p + c;
    if !s.is_finite() {
        return s;
    }
    // TwoSum: `e` is exactly what rounding `s` lost.
    let bb = s - p;
    let e = (p - (s - bb)) + (c - bb);
    let bits = s.to_bits();
    if e == 0.0 || bits & 1 == 1 {
        return s;
    }
    // The exact sum lies between `s` and its neighbour toward `e`: take the odd one of the two.
    let toward_up = e > 0.0;
    f64::from_bits(if (s > 0.0) == toward_up {
        bits + 1
    } else {
        bits - 1
    })
}

fn min_max(a: f64, b: f64, is_max: bool, nan: bool) -> f64 {
    if a.is_nan() || b.is_nan() {
        if nan || (a.is_nan() && b.is_nan()) {
            return f64::NAN;
        }
        return if a.is_nan() { b } else { a };
    }
    if a == b && a == 0.0 {
        // -0 orders below +0.
        let neg = if is_max {
            a.is_sign_negative() && b.is_sign_negative()
        } else {
            a.is_sign_negative() || b.is_sign_negative()
        };
        return if neg { -0.0 } else { 0.0 };
    }
    if is_max {
        a.max(b)
    } else {
        a.min(b)
    }
}

/// Float comparison `cmp` (PTX ISA "Floating Point Comparison Operators").
pub fn float_compare(cmp: &str, a: f64, b: f64) -> Option<bool> {
    let un = a.is_nan() || b.is_nan();
    Some(match cmp {
        "eq" => !un && a == b,
        "ne" => !un && a != b,
        "lt" => !un && a < b,
        "le" => !un && a <= b,
        "gt" => !un && a > b,
        "ge" => !un && a >= b,
        "equ" => un || a == b,
        "neu" => un || a != b,
        "ltu" => un || a < b,
        "leu" => un || a <= b,
        "gtu" => un || a > b,
        "geu" => un || a >= b,
        "num" => !un,
        "nan" => un,
        _ => return None,
    })
}

/// Executes a floating-point instruction (or `cvt`) for the lanes `exec`.
pub fn float_op(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    if instr.head == "cvt" {
        return cvt(ctx, exec);
    }
    let Some(ty) = instr.types.first().copied() else {
        return Err(ctx.bad("expected a type modifier"));
    };
    let (ety, n) = elements(ty);
    let ebits = ety.bits();
    let head = instr.head.as_str();
    let r = round_mode(instr);
    let fz = instr.has("ftz");
    let sat = instr.has("sat");
    let nan = instr.has("NaN");
    let relu = instr.has("relu");
    // A modifier this module does not model must not be ignored silently.
    if !matches!(head, "setp" | "testp") {
        if let Some(m) = instr.mods.iter().find(|m| {
            !matches!(
                m.as_str(),
                "rn" | "rz"
                    | "rm"
                    | "rp"
                    | "approx"
                    | "full"
                    | "ftz"
                    | "sat"
                    | "NaN"
                    | "relu"
                    | "oob"
            )
        }) {
            return Err(ctx.bad(format!("the .{m} modifier is not supported")));
        }
    }
    if head == "setp" {
        let Some(cmp) = instr.mods.first().cloned() else {
            return Err(ctx.bad("setp needs a comparison"));
        };
        if n != 1 {
            return Err(ctx.bad("packed setp is not supported"));
        }
        let (a, b) = (ctx.op(1)?, ctx.op(2)?);
        for lane in lanes(exec) {
            let x = ftz(to_f64(ctx.read(lane, a, ty)?, ty), ty, fz);
            let y = ftz(to_f64(ctx.read(lane, b, ty)?, ty), ty, fz);
            let t = float_compare(&cmp, x, y)
                .ok_or_else(|| ctx.bad(format!("unknown comparison `{cmp}`")))?;
            setp_finish(ctx, lane, t)?;
        }
        return Ok(Flow::Next);
    }
    if head == "testp" {
        let what = instr.mods.first().cloned().unwrap_or_default();
        let (d, a) = (ctx.op(0)?, ctx.op(1)?);
        for lane in lanes(exec) {
            let x = to_f64(ctx.read(lane, a, ty)?, ty);
            let t = match what.as_str() {
                "finite" => x.is_finite(),
                "infinite" => x.is_infinite(),
                "number" => !x.is_nan(),
                "notanumber" => x.is_nan(),
                "normal" => x.is_finite() && x != 0.0 && !is_subnormal(x, ty),
                "subnormal" => is_subnormal(x, ty),
                _ => return Err(ctx.bad(format!("unknown testp kind `{what}`"))),
            };
            ctx.write(lane, d, Ty::Pred, u64::from(t))?;
        }
        return Ok(Flow::Next);
    }
    let d = ctx.op(0)?;
    let nops = instr.operands.len();
    let mut srcs = [0u64; 3];
    for lane in lanes(exec) {
        for (k, s) in srcs
            .iter_mut()
            .enumerate()
            .take(nops.saturating_sub(1).min(3))
        {
            *s = ctx.read(lane, ctx.op(k + 1)?, ty)?;
        }
        let mut out = 0u64;
        for e in 0..n {
            let get = |k: usize| ftz(to_f64(trunc(srcs[k] >> (ebits * e), ebits), ety), ety, fz);
            let a = get(0);
            let v = match head {
                "add" => a + get(1),
                "sub" => a - get(1),
                "mul" => a * get(1),
                "fma" | "mad" if ety == Ty::F64 => a.mul_add(get(1), get(2)),
                "fma" | "mad" => fused_narrow(a * get(1), get(2)),
                "div" => a / get(1),
                "min" => min_max(a, get(1), false, nan),
                "max" => min_max(a, get(1), true, nan),
                "abs" => {
                    // abs/neg only change the sign bit, NaN payloads included.
                    let raw = trunc(srcs[0] >> (ebits * e), ebits);
                    out |= (raw & !(1u64 << (ebits - 1))) << (ebits * e);
                    continue;
                }
                "neg" => {
                    let raw = trunc(srcs[0] >> (ebits * e), ebits);
                    out |= (raw ^ (1u64 << (ebits - 1))) << (ebits * e);
                    continue;
                }
                "copysign" => {
                    let b = get(1);
                    b.abs().copysign(a)
                }
                "rcp" => 1.0 / a,
                "sqrt" => a.sqrt(),
                "rsqrt" => 1.0 / a.sqrt(),
                "ex2" => a.exp2(),
                "lg2" => a.log2(),
                "sin" => a.sin(),
                "cos" => a.cos(),
                "tanh" => a.tanh(),
                _ => return Err(ctx.unknown()),
            };
            let v = if sat {
                if v.is_nan() {
                    0.0
                } else {
                    v.clamp(0.0, 1.0)
                }
            } else if relu && !v.is_nan() {
                // .relu clamps negative results to zero (NaN stays NaN).
                v.max(0.0)
            } else {
                v
            };
            // Approximate instructions on f32 round to nearest.
            let bits = from_f64(v, ety, r);
            let bits = if fz && ety == Ty::F32 {
                u64::from(
                    (ftz(f64::from(f32::from_bits(bits as u32)), Ty::F32, true) as f32).to_bits(),
                )
            } else {
                bits
            };
            out |= trunc(bits, ebits) << (ebits * e);
        }
        ctx.write(lane, d, ty, out)?;
    }
    Ok(Flow::Next)
}

fn is_subnormal(x: f64, ty: Ty) -> bool {
    let min = match ty {
        Ty::F32 => f64::from(f32::MIN_POSITIVE),
        Ty::F64 => f64::MIN_POSITIVE,
        Ty::F16 => f16::MIN_POSITIVE.to_f64(),
        _ => bf16::MIN_POSITIVE.to_f64(),
    };
    x != 0.0 && x.is_finite() && x.abs() < min
}

/// Rounds a float to an integral float value in mode `r` (`cvt.rni.f32.f32` and friends).
fn round_integral(x: f64, r: Round) -> f64 {
    match r {
        Round::Rn => {
            let f = x.floor();
            let d = x - f;
            if d > 0.5 || (d == 0.5 && f % 2.0 != 0.0) {
                f + 1.0
            } else {
                f
            }
        }
        Round::Rna => x.round(),
        Round::Rz => x.trunc(),
        Round::Rm => x.floor(),
        Round::Rp => x.ceil(),
    }
}

/// `cvt.frnd.dtype.atype d, a` (and the packing forms `cvt.rn.bf16x2.f32 d, a, b`, fp8).
fn cvt(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let [dt, st] = match instr.types.as_slice() {
        [d, s] => [*d, *s],
        _ => return Err(ctx.bad("cvt needs a destination and a source type")),
    };
    if dt.bits() > 64 || st.bits() > 64 {
        return Err(ctx.bad("128-bit values are not supported (registers hold 64 bits)"));
    }
    let r = round_mode(instr);
    let fz = instr.has("ftz");
    let sat = instr.has("sat");
    let satfinite = instr.has("satfinite");
    let relu = instr.has("relu");
    let d = ctx.op(0)?;
    // Packing forms: two f32 sources, `a` to the upper half (PTX ISA "cvt": "the value converted
    // from input a is stored in the upper half of d").
    if matches!(dt, Ty::F16x2 | Ty::Bf16x2 | Ty::E4m3x2 | Ty::E5m2x2) && st == Ty::F32 {
        let (a, b) = (ctx.op(1)?, ctx.op(2)?);
        for lane in lanes(exec) {
            let x = ctx.read(lane, a, Ty::F32)?;
            let y = ctx.read(lane, b, Ty::F32)?;
            let conv = |bits: u64| -> u64 {
                let mut v = f64::from(f32::from_bits(bits as u32));
                if relu && !v.is_nan() {
                    v = v.max(0.0);
                }
                match dt {
                    Ty::F16x2 => from_f64(
                        if satfinite { sat_finite(v, 65504.0) } else { v },
                        Ty::F16,
                        r,
                    ),
                    Ty::Bf16x2 => from_f64(
                        if satfinite {
                            sat_finite(v, bf16::MAX.to_f64())
                        } else {
                            v
                        },
                        Ty::Bf16,
                        r,
                    ),
                    Ty::E4m3x2 => u64::from(f64_to_e4m3(v, satfinite)),
                    _ => u64::from(f64_to_e5m2(v, satfinite)),
                }
            };
            let half = if matches!(dt, Ty::E4m3x2 | Ty::E5m2x2) {
                8
            } else {
                16
            };
            let v = (conv(x) << half) | conv(y);
            ctx.write(lane, d, if half == 8 { Ty::B16 } else { Ty::B32 }, v)?;
        }
        return Ok(Flow::Next);
    }
    // Unpacking fp8 pairs to f16x2.
    if dt == Ty::F16x2 && matches!(st, Ty::E4m3x2 | Ty::E5m2x2) {
        let a = ctx.op(1)?;
        for lane in lanes(exec) {
            let x = ctx.read(lane, a, Ty::B16)?;
            let one = |b: u64| -> u64 {
                let v = if st == Ty::E4m3x2 {
                    e4m3_to_f64(b as u8)
                } else {
                    to_f64(b, Ty::E5m2)
                };
                from_f64(v, Ty::F16, Round::Rn)
            };
            let v = (one((x >> 8) & 0xff) << 16) | one(x & 0xff);
            ctx.write(lane, d, Ty::B32, v)?;
        }
        return Ok(Flow::Next);
    }
    let a = ctx.op(1)?;
    let dfloat = dt.is_float();
    let sfloat = st.is_float() || matches!(st, Ty::E4m3 | Ty::E5m2);
    for lane in lanes(exec) {
        let x = ctx.read(lane, a, st)?;
        let v = match (dfloat, sfloat) {
            (false, false) => {
                let sb = st.bits();
                let val: i128 = if st.is_signed() {
                    i128::from(sext(x, sb))
                } else {
                    i128::from(trunc(x, sb))
                };
                if sat {
                    let (lo, hi) = int_range(dt);
                    val.clamp(lo, hi) as u64
                } else {
                    val as u64
                }
            }
            (true, false) => {
                let sb = st.bits();
                let f = if st.is_signed() {
                    sext(x, sb) as f64
                } else {
                    trunc(x, sb) as f64
                };
                // i64 → f32 via f64 can double-round; go directly for 64-bit sources.
                if dt == Ty::F32 && sb == 64 && r == Round::Rn {
                    let v = if st.is_signed() {
                        sext(x, 64) as f32
                    } else {
                        x as f32
                    };
                    u64::from(v.to_bits())
                } else {
                    from_f64(f, dt, r)
                }
            }
            (false, true) => {
                let f = ftz(to_f64(x, st), st, fz);
                if f.is_nan() {
                    0
                } else {
                    let i = round_integral(
                        f,
                        if instr.mods.iter().any(|m| m.ends_with('i')) {
                            r
                        } else {
                            Round::Rz
                        },
                    );
                    let (lo, hi) = int_range(dt);
                    // Float-to-integer conversions saturate (PTX ISA "cvt").
                    let c = if i < lo as f64 {
                        lo
                    } else if i > hi as f64 {
                        hi
                    } else {
                        i as i128
                    };
                    c as u64
                }
            }
            (true, true) => {
                let mut f = ftz(to_f64(x, st), st, fz);
                let integral = instr
                    .mods
                    .iter()
                    .any(|m| matches!(m.as_str(), "rni" | "rzi" | "rmi" | "rpi"));
                if integral {
                    f = round_integral(f, r);
                }
                if relu && !f.is_nan() {
                    f = f.max(0.0);
                }
                if sat {
                    f = if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) };
                }
                if satfinite {
                    let max = match dt {
                        Ty::F16 => 65504.0,
                        Ty::Bf16 => bf16::MAX.to_f64(),
                        Ty::F32 => f64::from(f32::MAX),
                        _ => f64::MAX,
                    };
                    f = sat_finite(f, max);
                }
                let bits = match dt {
                    Ty::E4m3 => u64::from(f64_to_e4m3(f, satfinite)),
                    Ty::E5m2 => u64::from(f64_to_e5m2(f, satfinite)),
                    _ => from_f64(f, dt, r),
                };
                if fz && dt == Ty::F32 {
                    let g = ftz(f64::from(f32::from_bits(bits as u32)), Ty::F32, true);
                    u64::from((g as f32).to_bits())
                } else {
                    bits
                }
            }
        };
        ctx.write(lane, d, dt, v)?;
    }
    Ok(Flow::Next)
}

fn sat_finite(v: f64, max: f64) -> f64 {
    if v.is_nan() {
        v
    } else {
        v.clamp(-max, max)
    }
}

fn int_range(ty: Ty) -> (i128, i128) {
    let b = ty.bits();
    if ty.is_signed() {
        (-(1i128 << (b - 1)), (1i128 << (b - 1)) - 1)
    } else {
        (0, (1i128 << b) - 1)
    }
}

#[cfg(test)]
mod rounding_tests {
    use super::*;

    /// An f32 just above (below) a bf16 midpoint rounds up (down), whatever bits `half` drops;
    /// an exact midpoint rounds to the even neighbour. 0x3ECA_8000 is the midpoint between the
    /// bf16 values 0x3ECA and 0x3ECB.
    #[test]
    fn bf16_round_to_nearest_even_sees_every_bit_of_an_f32() {
        let mid = f32::from_bits(0x3eca_8000);
        let cases = [
            (mid, 0x3eca),
            (f32::from_bits(0x3eca_8002), 0x3ecb),
            (f32::from_bits(0x3eca_8001), 0x3ecb),
            (f32::from_bits(0x3eca_7fff), 0x3eca),
            (f32::from_bits(0x3ecb_8000), 0x3ecc),
            (-f32::from_bits(0x3eca_8002), 0xbecb),
        ];
        for (x, want) in cases {
            let got = from_f64(f64::from(x), Ty::Bf16, Round::Rn);
            assert_eq!(got, want, "bf16 of {x:e} ({:#x})", x.to_bits());
            // The same as rounding the f32 directly, which `half` does right.
            assert_eq!(got, u64::from(bf16::from_f32(x).to_bits()));
        }
    }

    /// The same for f16 from f64 values past a midpoint by less than 2⁻³² of their size.
    #[test]
    fn f16_round_to_nearest_even_sees_every_bit_of_an_f64() {
        // 1 + 2⁻¹¹ is the midpoint between 1 and 1 + 2⁻¹⁰.
        let mid = 1.0 + 2f64.powi(-11);
        assert_eq!(from_f64(mid, Ty::F16, Round::Rn), 0x3c00);
        assert_eq!(from_f64(mid + 2f64.powi(-40), Ty::F16, Round::Rn), 0x3c01);
        assert_eq!(from_f64(mid - 2f64.powi(-40), Ty::F16, Round::Rn), 0x3c00);
        assert_eq!(
            from_f64(-(mid + 2f64.powi(-40)), Ty::F16, Round::Rn),
            0xbc01
        );
    }
}
