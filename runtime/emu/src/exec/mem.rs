//! Memory instructions: `ld`, `st`, `atom`, `red`, `cvta`, `isspacep` (PTX ISA "Data Movement
//! and Conversion Instructions", "Parallel Synchronization and Communication Instructions").
//! Every access goes through [`Ctx::load`] / [`Ctx::store`], so the sanitizer sees it.

use super::float::{from_f64, to_f64, Round};
use super::int::{sext, trunc};
use super::{Ctx, Flow, Space};
use crate::error::{EmuError, EmuResult};
use crate::machine::{lanes, LaneMask, LOCAL_WINDOW, PARAM_WINDOW, SHARED_WINDOW, WINDOW_SIZE};
use crate::ptx::{Operand, Ty};

fn space_of(ctx: &Ctx<'_>) -> Space {
    ctx.instr
        .mods
        .iter()
        .find_map(|m| Space::from_mod(m))
        .unwrap_or(Space::Generic)
}

/// Executes a memory instruction for the lanes `exec`.
pub fn mem_op(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    match ctx.instr.head.as_str() {
        "ld" => ld(ctx, exec),
        "st" => st(ctx, exec),
        "atom" | "red" => atom(ctx, exec),
        "cvta" => cvta(ctx, exec),
        "isspacep" => isspacep(ctx, exec),
        _ => Err(ctx.unknown()),
    }
}

fn access_space(ctx: &Ctx<'_>, lane: usize, op: &Operand) -> EmuResult<(Space, u64)> {
    let declared = space_of(ctx);
    let (sym_space, addr) = ctx.address(lane, op)?;
    Ok(match (declared, sym_space) {
        (Space::Generic, Some(s)) => (s, addr),
        (d, _) => (d, addr),
    })
}

fn misaligned(ctx: &Ctx<'_>, lane: usize, addr: u64, align: u64) -> EmuError {
    EmuError::Fault {
        kernel: ctx.prog.kernel.name.clone(),
        line: ctx.instr.line,
        message: format!(
            "thread {}: `{}` at address {addr:#x} is not {align}-byte aligned",
            ctx.thread(lane),
            ctx.instr.opcode
        ),
    }
}

fn ld(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let ty = instr.ty().ok_or_else(|| ctx.bad("expected a type"))?;
    let n = instr.vec_width() as usize;
    let size = ty.bytes() as usize;
    if size > 8 {
        return Err(ctx.bad("128-bit values are not supported (registers hold 64 bits)"));
    }
    let (d, a) = (ctx.op(0)?, ctx.op(1)?);
    let dests: &[Operand] = match d {
        Operand::Vec(v) => v,
        one => std::slice::from_ref(one),
    };
    if dests.len() != n {
        return Err(ctx.bad(format!("{} destinations for a .v{n} load", dests.len())));
    }
    let total = size * n;
    let mut buf = [0u8; 128];
    if total > buf.len() {
        return Err(ctx.bad("access too wide"));
    }
    // A signed load into a wider register is sign-extended.
    let wty = if ty.is_signed() { Ty::S64 } else { ty };
    let mut seen = 0u64;
    for lane in lanes(exec) {
        let (space, addr) = access_space(ctx, lane, a)?;
        if addr % total as u64 != 0 && space != Space::Param {
            return Err(misaligned(ctx, lane, addr, total as u64));
        }
        if let (Space::Shared, off) = ctx.resolve(space, addr) {
            ctx.note_shared(lane, off, total);
        }
        ctx.load(lane, space, addr, &mut buf[..total])?;
        for (k, dst) in dests.iter().enumerate() {
            let mut w = [0u8; 8];
            let s = size.min(8);
            w[..s].copy_from_slice(&buf[k * size..k * size + s]);
            let mut v = u64::from_le_bytes(w);
            if ty.is_signed() {
                v = sext(v, ty.bits()) as u64;
            }
            seen = seen
                .wrapping_mul(0x0100_0000_01b3)
                .wrapping_add(v ^ lane as u64);
            ctx.write(lane, dst, wty, v)?;
        }
    }
    // A volatile or acquiring load is how a warp polls a flag another warp sets: let the
    // others run before it looks again.
    if instr
        .mods
        .iter()
        .any(|m| matches!(m.as_str(), "volatile" | "acquire" | "relaxed"))
    {
        ctx.warp.poll_value = seen;
        return Ok(Flow::Spin);
    }
    Ok(Flow::Next)
}

fn st(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let ty = instr.ty().ok_or_else(|| ctx.bad("expected a type"))?;
    let n = instr.vec_width() as usize;
    let size = ty.bytes() as usize;
    if size > 8 {
        return Err(ctx.bad("128-bit values are not supported (registers hold 64 bits)"));
    }
    let (a, s) = (ctx.op(0)?, ctx.op(1)?);
    let srcs: &[Operand] = match s {
        Operand::Vec(v) => v,
        one => std::slice::from_ref(one),
    };
    if srcs.len() != n {
        return Err(ctx.bad(format!("{} sources for a .v{n} store", srcs.len())));
    }
    let total = size * n;
    let mut buf = [0u8; 128];
    if total > buf.len() {
        return Err(ctx.bad("access too wide"));
    }
    for lane in lanes(exec) {
        let (space, addr) = access_space(ctx, lane, a)?;
        if addr % total as u64 != 0 {
            return Err(misaligned(ctx, lane, addr, total as u64));
        }
        for (k, src) in srcs.iter().enumerate() {
            let v = ctx.read(lane, src, ty)?;
            let s = size.min(8);
            buf[k * size..k * size + s].copy_from_slice(&v.to_le_bytes()[..s]);
        }
        if let (Space::Shared, off) = ctx.resolve(space, addr) {
            ctx.note_shared(lane, off, total);
        }
        ctx.store(lane, space, addr, &buf[..total])?;
    }
    Ok(Flow::Next)
}

fn atom(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let is_red = instr.head == "red";
    let ty = instr.ty().ok_or_else(|| ctx.bad("expected a type"))?;
    let op = instr
        .mods
        .iter()
        .find(|m| {
            matches!(
                m.as_str(),
                "add" | "min" | "max" | "exch" | "cas" | "and" | "or" | "xor" | "inc" | "dec"
            )
        })
        .cloned()
        .ok_or_else(|| ctx.bad("atomic without an operation"))?;
    let size = ty.bytes() as usize;
    if size > 8 {
        return Err(ctx.bad("128-bit atomics are not supported (registers hold 64 bits)"));
    }
    let (d, a, b) = if is_red {
        (None, ctx.op(0)?, ctx.op(1)?)
    } else {
        (Some(ctx.op(0)?), ctx.op(1)?, ctx.op(2)?)
    };
    let c = if op == "cas" {
        Some(ctx.op(if is_red { 2 } else { 3 })?)
    } else {
        None
    };
    let bits = ty.bits();
    // Lanes run their atomics one after another, in lane order.
    for lane in lanes(exec) {
        let (space, addr) = access_space(ctx, lane, a)?;
        if addr % size as u64 != 0 {
            return Err(misaligned(ctx, lane, addr, size as u64));
        }
        let mut buf = [0u8; 8];
        ctx.load(lane, space, addr, &mut buf[..size])?;
        let old = u64::from_le_bytes(buf);
        let x = ctx.read(lane, b, ty)?;
        let new = match op.as_str() {
            "exch" => x,
            "cas" => {
                let y = ctx.read(lane, c.unwrap_or(b), ty)?;
                if trunc(old, bits) == trunc(x, bits) {
                    y
                } else {
                    old
                }
            }
            "and" => old & x,
            "or" => old | x,
            "xor" => old ^ x,
            "inc" => {
                let (o, x) = (trunc(old, 32), trunc(x, 32));
                if o >= x {
                    0
                } else {
                    o + 1
                }
            }
            "dec" => {
                let (o, x) = (trunc(old, 32), trunc(x, 32));
                if o == 0 || o > x {
                    x
                } else {
                    o - 1
                }
            }
            "add" | "min" | "max" => match ty {
                Ty::F32 | Ty::F64 | Ty::F16 | Ty::Bf16 => {
                    let (p, q) = (to_f64(old, ty), to_f64(x, ty));
                    let r = match op.as_str() {
                        "add" => p + q,
                        "min" => p.min(q),
                        _ => p.max(q),
                    };
                    from_f64(r, ty, Round::Rn)
                }
                Ty::F16x2 | Ty::Bf16x2 => {
                    let et = if ty == Ty::F16x2 { Ty::F16 } else { Ty::Bf16 };
                    let mut out = 0u64;
                    for e in 0..2 {
                        let (p, q) = (
                            to_f64((old >> (16 * e)) & 0xffff, et),
                            to_f64((x >> (16 * e)) & 0xffff, et),
                        );
                        let r = match op.as_str() {
                            "add" => p + q,
                            "min" => p.min(q),
                            _ => p.max(q),
                        };
                        out |= trunc(from_f64(r, et, Round::Rn), 16) << (16 * e);
                    }
                    out
                }
                _ => {
                    if op == "add" {
                        old.wrapping_add(x)
                    } else {
                        let (p, q) = if ty.is_signed() {
                            (i128::from(sext(old, bits)), i128::from(sext(x, bits)))
                        } else {
                            (i128::from(trunc(old, bits)), i128::from(trunc(x, bits)))
                        };
                        (if op == "min" { p.min(q) } else { p.max(q) }) as u64
                    }
                }
            },
            _ => return Err(ctx.unknown()),
        };
        ctx.store_atomic(lane, space, addr, &new.to_le_bytes()[..size])?;
        if let Some(d) = d {
            ctx.write(lane, d, ty, old)?;
        }
    }
    Ok(Flow::Next)
}

fn window(space: Space) -> Option<u64> {
    match space {
        Space::Shared | Space::SharedCluster => Some(SHARED_WINDOW),
        Space::Local => Some(LOCAL_WINDOW),
        Space::Param => Some(PARAM_WINDOW),
        Space::Global | Space::Const | Space::Generic => None,
    }
}

fn cvta(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let ty = instr.ty().unwrap_or(Ty::U64);
    let to = instr.has("to");
    let space = space_of(ctx);
    let base = window(space);
    let (d, a) = (ctx.op(0)?, ctx.op(1)?);
    for lane in lanes(exec) {
        let v = ctx.read(lane, a, ty)?;
        let r = match base {
            None => v,
            Some(w) if to => v.wrapping_sub(w),
            Some(w) => v.wrapping_add(w),
        };
        ctx.write(lane, d, ty, r)?;
    }
    Ok(Flow::Next)
}

fn isspacep(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let space = space_of(ctx);
    let (d, a) = (ctx.op(0)?, ctx.op(1)?);
    for lane in lanes(exec) {
        let v = ctx.read(lane, a, Ty::U64)?;
        let t = match window(space) {
            Some(w) => (w..w + WINDOW_SIZE).contains(&v),
            None => ![SHARED_WINDOW, LOCAL_WINDOW, PARAM_WINDOW]
                .iter()
                .any(|w| (*w..*w + WINDOW_SIZE).contains(&v)),
        };
        ctx.write(lane, d, Ty::Pred, u64::from(t))?;
    }
    Ok(Flow::Next)
}
