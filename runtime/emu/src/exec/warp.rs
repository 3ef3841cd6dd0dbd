//! Warp- and block-level synchronization and exchange: `bar`/`barrier`, `shfl.sync`,
//! `vote.sync`, `activemask`, `match.sync`, `redux.sync` (PTX ISA "Parallel Synchronization and
//! Communication Instructions", "Data Movement: shfl.sync").

use super::int::{sext, trunc};
use super::{Ctx, Flow};
use crate::error::{EmuError, EmuResult};
use crate::machine::{lanes, LaneMask, Wait, WARP_SIZE};
use crate::ptx::{Operand, Ty};

/// `bar.sync`, `bar.arrive`, `barrier.sync`, `bar.warp.sync`, `barrier.cluster.*`.
pub fn barrier(ctx: &mut Ctx<'_>, pc: usize, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    if instr.has("cluster") {
        // Clusters of one block: the cluster barrier is the block's own arrival, already ordered
        // by program order for the single block.
        return Ok(Flow::Next);
    }
    if instr.has("warp") {
        let mask = ctx.read(0, ctx.op(0)?, Ty::B32)? as u32;
        require_members(ctx, mask, group)?;
        return Ok(Flow::Next);
    }
    if exec == 0 {
        return Ok(Flow::Next);
    }
    let lane0 = exec.trailing_zeros() as usize;
    // bar.red puts its destination first; the barrier id and thread count follow.
    let red = instr.has("red");
    let first = usize::from(red);
    let id = ctx.read(lane0, ctx.op(first)?, Ty::U32)? as u32;
    if id >= 16 {
        return Err(ctx.bad(format!("barrier id {id}, expected 0..15")));
    }
    let count_op = if red {
        instr.operands.get(2).filter(|_| instr.operands.len() == 4)
    } else {
        instr.operands.get(1)
    };
    let count = match count_op {
        Some(op) => {
            let c = ctx.read(lane0, op, Ty::U32)? as u32;
            if c == 0 || c % WARP_SIZE as u32 != 0 {
                return Err(ctx.bad(format!(
                    "barrier thread count {c}, expected a positive multiple of 32"
                )));
            }
            Some(c)
        }
        None => None,
    };
    if exec != group && instr.has("aligned") {
        return Err(ctx.bad("a guarded .aligned barrier must be executed by all lanes or none"));
    }
    if instr.has("arrive") {
        let w = ctx.warp.index;
        let b = &mut ctx.block.barriers[id as usize];
        b.arrived += ctx.warp.present.count_ones();
        b.clock.resize(ctx.warp.clock.len(), 0);
        for (j, v) in b.clock.iter_mut().zip(&ctx.warp.clock) {
            *j = (*j).max(*v);
        }
        ctx.warp.clock[w] += 1;
        return Ok(Flow::Next);
    }
    if red {
        // bar.red.popc.u32 d, a{, b}, {!}c  /  bar.red.{and,or}.pred p, a{, b}, {!}c
        let op = ["popc", "and", "or"]
            .into_iter()
            .find(|m| instr.has(m))
            .ok_or_else(|| ctx.bad("bar.red needs .popc, .and or .or"))?;
        if exec != group {
            return Err(ctx.bad("bar.red must be executed by every lane of the warp or none"));
        }
        let c = instr
            .operands
            .last()
            .filter(|_| instr.operands.len() >= 3)
            .ok_or_else(|| ctx.bad("bar.red needs a destination, a barrier and a predicate"))?;
        let mut ones = 0u32;
        for lane in lanes(exec) {
            ones += (ctx.read(lane, c, Ty::Pred)? & 1) as u32;
        }
        let all = ones == exec.count_ones();
        let b = &mut ctx.block.barriers[id as usize];
        let (_, value) = b.reduction.get_or_insert_with(|| {
            let start = match op {
                "and" => 1,
                _ => 0,
            };
            (op.to_string(), start)
        });
        *value = match op {
            "popc" => *value + ones,
            "and" => u32::from(*value == 1 && all),
            _ => u32::from(*value == 1 || ones > 0),
        };
        ctx.warp.wait = Wait::Barrier { pc, id, count };
        return Ok(Flow::Barrier);
    }
    if !(instr.has("sync") || instr.head == "barrier" || instr.mods.is_empty()) {
        return Err(ctx.unknown());
    }
    ctx.warp.wait = Wait::Barrier { pc, id, count };
    Ok(Flow::Barrier)
}

fn require_members(ctx: &Ctx<'_>, mask: u32, group: LaneMask) -> EmuResult<()> {
    let missing = mask & ctx.warp.live() & !group;
    if missing != 0 {
        let body = &ctx.prog.kernel.body;
        let where_: Vec<String> = lanes(missing)
            .take(4)
            .map(|l| {
                format!(
                    "lane {l} at PTX line {}",
                    body.get(ctx.warp.pc[l]).map_or(0, |i| i.line)
                )
            })
            .collect();
        return Err(EmuError::Divergent {
            kernel: ctx.prog.kernel.name.clone(),
            line: ctx.instr.line,
            opcode: ctx.instr.opcode.clone(),
            message: format!(
                "its member mask {mask:#010x} names lanes that never reach it ({})",
                where_.join(", ")
            ),
        });
    }
    Ok(())
}

/// `shfl.sync`, `vote.sync`, `activemask`, `match.sync`, `redux.sync`.
pub fn warp_op(ctx: &mut Ctx<'_>, group: LaneMask, exec: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let head = instr.head.as_str();
    if head == "activemask" {
        let d = ctx.op(0)?;
        for lane in lanes(exec) {
            ctx.write(lane, d, Ty::B32, u64::from(group))?;
        }
        return Ok(Flow::Next);
    }
    if exec == 0 {
        return Ok(Flow::Next);
    }
    let Some(mask_op) = instr.operands.last() else {
        return Err(ctx.bad("expected operands ending with a member mask"));
    };
    let member = ctx.read(exec.trailing_zeros() as usize, mask_op, Ty::B32)? as u32;
    require_members(ctx, member, group)?;
    let part = exec & member;
    match head {
        "shfl" => shfl(ctx, part),
        "vote" => vote(ctx, part),
        "match" => matching(ctx, part),
        "redux" => redux(ctx, part),
        _ => Err(ctx.unknown()),
    }
}

fn shfl(ctx: &mut Ctx<'_>, part: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let mode = instr
        .mods
        .iter()
        .find(|m| matches!(m.as_str(), "up" | "down" | "bfly" | "idx"))
        .cloned()
        .ok_or_else(|| ctx.bad("shfl without a mode (up, down, bfly, idx)"))?;
    let (d, a, b, c) = (ctx.op(0)?, ctx.op(1)?, ctx.op(2)?, ctx.op(3)?);
    let mut vals = [0u64; WARP_SIZE];
    for (lane, v) in vals.iter_mut().enumerate() {
        // Every lane's source value, read before any destination is written.
        *v = match a {
            Operand::Reg(r) => ctx.warp.reg(lane, *r),
            _ => ctx.read(lane, a, Ty::B32)?,
        };
    }
    let mut outs = [(0u64, false); WARP_SIZE];
    for lane in lanes(part) {
        let bval = (ctx.read(lane, b, Ty::U32)? & 0x1f) as usize;
        let cw = ctx.read(lane, c, Ty::U32)? as usize;
        let cval = cw & 0x1f;
        let segmask = (cw >> 8) & 0x1f;
        let max_lane = (lane & segmask) | (cval & !segmask);
        let min_lane = lane & segmask;
        let (j, p) = match mode.as_str() {
            "up" => {
                let j = lane as isize - bval as isize;
                (j, j >= max_lane as isize)
            }
            "down" => {
                let j = (lane + bval) as isize;
                (j, j <= max_lane as isize)
            }
            "bfly" => {
                let j = (lane ^ bval) as isize;
                (j, j <= max_lane as isize)
            }
            _ => {
                let j = (min_lane | (bval & !segmask)) as isize;
                (j, j <= max_lane as isize)
            }
        };
        let src = if p { j as usize } else { lane };
        outs[lane] = (vals[src.min(WARP_SIZE - 1)], p);
    }
    for lane in lanes(part) {
        let (v, p) = outs[lane];
        match d {
            Operand::PredPair(r, q) => {
                ctx.warp.set_reg(lane, *r, trunc(v, 32));
                ctx.warp.set_reg(lane, *q, u64::from(p));
            }
            _ => ctx.write(lane, d, Ty::B32, v)?,
        }
    }
    Ok(Flow::Next)
}

fn vote(ctx: &mut Ctx<'_>, part: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let (d, a) = (ctx.op(0)?, ctx.op(1)?);
    let mut ballot = 0u32;
    for lane in lanes(part) {
        if ctx.read(lane, a, Ty::Pred)? & 1 != 0 {
            ballot |= 1 << lane;
        }
    }
    let (v, ty) = if instr.has("ballot") {
        (u64::from(ballot), Ty::B32)
    } else if instr.has("all") {
        (u64::from(ballot == part), Ty::Pred)
    } else if instr.has("any") {
        (u64::from(ballot != 0), Ty::Pred)
    } else if instr.has("uni") {
        (u64::from(ballot == 0 || ballot == part), Ty::Pred)
    } else {
        return Err(ctx.bad("vote without a mode (all, any, uni, ballot)"));
    };
    for lane in lanes(part) {
        ctx.write(lane, d, ty, v)?;
    }
    Ok(Flow::Next)
}

fn matching(ctx: &mut Ctx<'_>, part: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let ty = instr.ty().unwrap_or(Ty::B32);
    let (d, a) = (ctx.op(0)?, ctx.op(1)?);
    let mut vals = [0u64; WARP_SIZE];
    for lane in lanes(part) {
        vals[lane] = trunc(ctx.read(lane, a, ty)?, ty.bits());
    }
    let all_same = lanes(part).all(|l| vals[l] == vals[part.trailing_zeros() as usize]);
    for lane in lanes(part) {
        if instr.has("all") {
            let m = if all_same { part } else { 0 };
            match d {
                Operand::PredPair(r, q) => {
                    ctx.warp.set_reg(lane, *r, u64::from(m));
                    ctx.warp.set_reg(lane, *q, u64::from(all_same));
                }
                _ => ctx.write(lane, d, Ty::B32, u64::from(m))?,
            }
        } else {
            let m: u32 = lanes(part)
                .filter(|&l| vals[l] == vals[lane])
                .fold(0, |m, l| m | 1 << l);
            ctx.write(lane, d, Ty::B32, u64::from(m))?;
        }
    }
    Ok(Flow::Next)
}

fn redux(ctx: &mut Ctx<'_>, part: LaneMask) -> EmuResult<Flow> {
    let instr = ctx.instr;
    let ty = instr.ty().ok_or_else(|| ctx.bad("expected a type"))?;
    let op = instr
        .mods
        .iter()
        .find(|m| m.as_str() != "sync")
        .cloned()
        .unwrap_or_default();
    let (d, a) = (ctx.op(0)?, ctx.op(1)?);
    let mut acc: Option<i128> = None;
    for lane in lanes(part) {
        let v = ctx.read(lane, a, ty)?;
        let x = if ty.is_signed() {
            i128::from(sext(v, 32))
        } else {
            i128::from(trunc(v, 32))
        };
        acc = Some(match (acc, op.as_str()) {
            (None, _) => x,
            (Some(p), "add") => p + x,
            (Some(p), "min") => p.min(x),
            (Some(p), "max") => p.max(x),
            (Some(p), "and") => p & x,
            (Some(p), "or") => p | x,
            (Some(p), "xor") => p ^ x,
            _ => return Err(ctx.bad(format!("unknown redux operation `{op}`"))),
        });
    }
    let v = acc.unwrap_or(0) as u64;
    for lane in lanes(part) {
        ctx.write(lane, d, ty, v)?;
    }
    Ok(Flow::Next)
}
