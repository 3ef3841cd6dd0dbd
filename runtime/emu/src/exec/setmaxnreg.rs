//! `setmaxnreg.{inc,dec}.sync.aligned.u32 imm-reg-count` (PTX ISA, *Miscellaneous Instructions:
//! setmaxnreg*; sm_90a, PTX 8.0): a hint to release (`.dec`) or request (`.inc`) registers,
//! which changes no register value. What the ISA requires of it, and what is checked here:
//!
//! - `imm-reg-count` is a multiple of 8 in the range 24 to 256;
//! - it is `.sync.aligned` over the warpgroup: all threads of the warpgroup execute the same
//!   `setmaxnreg` instruction — so every lane of each warp takes part, the warpgroup has all 4
//!   warps, the n-th `setmaxnreg` of each of the 4 warps is one instruction, and a warp that
//!   never reaches one the others executed is reported at the end of the block;
//! - `.dec` releases registers down to the count: it must not ask for more than the warp's
//!   current maximum; `.inc` requests registers up to the count: it must not ask for fewer. The
//!   count at entry is ptxas's and unknown here, so the check starts at a warp's first
//!   `setmaxnreg`.
//!
//! Other architectures do not have the instruction: on sm_80 it is reported.

use std::collections::HashMap;

use super::{Ctx, Flow, Program};
use crate::error::EmuResult;
use crate::machine::LaneMask;
use crate::ptx::Ty;
use crate::sanitizer::{Finding, FindingKind};

/// The counts the instruction takes.
const COUNT_RANGE: std::ops::RangeInclusive<u64> = 24..=256;

/// One `setmaxnreg` occurrence of a warpgroup: the instruction the first warp executed and which
/// of the group's warps have executed theirs.
#[derive(Debug, Clone, Copy)]
struct Occurrence {
    line: u32,
    pc: usize,
    warps: u8,
}

/// The block's `setmaxnreg` state.
#[derive(Debug, Default)]
pub struct RegisterCounts {
    /// Per warp: how many it has executed, and its maximum after the last one.
    warps: HashMap<usize, (u64, u64)>,
    /// Per (warpgroup, occurrence index): the occurrences not all 4 warps have reached yet.
    open: HashMap<(usize, u64), Occurrence>,
    /// Warpgroups already reported as short of 4 warps.
    short: Vec<usize>,
}

/// Executes `setmaxnreg` for the lanes `exec` of the warp.
pub fn execute(ctx: &mut Ctx<'_>, exec: LaneMask) -> EmuResult<Flow> {
    let inc = ctx.instr.has("inc");
    if !inc && !ctx.instr.has("dec") {
        return Err(ctx.bad("setmaxnreg needs .inc or .dec"));
    }
    if ctx.prog.sm < 90 {
        ctx.report(
            FindingKind::Other,
            None,
            format!(
                "setmaxnreg needs sm_90a; this kernel runs as sm_{}",
                ctx.prog.sm
            ),
        );
    }
    let n = ctx.read(0, ctx.op(0)?, Ty::U32)?;
    if !COUNT_RANGE.contains(&n) || n % 8 != 0 {
        ctx.report(
            FindingKind::Other,
            None,
            format!("setmaxnreg {n}: the count must be a multiple of 8 in [24, 256]"),
        );
    }
    let live = ctx.warp.live();
    if exec != live {
        ctx.report(
            FindingKind::Other,
            None,
            format!(
                "setmaxnreg is .sync.aligned: every thread of the warpgroup executes it, but only lanes {exec:#010x} of the warp's {live:#010x} did"
            ),
        );
    }
    let w = ctx.warp.index;
    let (group, member) = (w / 4, w % 4);
    let warps_in_group = ctx.block.geom.warps().saturating_sub(4 * group).min(4);
    let (line, pc) = (ctx.instr.line, ctx.pc);
    let st = &mut ctx.block.ext.registers;
    let (count, current) = st.warps.entry(w).or_insert((0, 0));
    let index = *count;
    *count += 1;
    let before = std::mem::replace(current, n);
    let mut problems = Vec::new();
    if index > 0 && inc && n < before {
        problems.push(format!("setmaxnreg.inc {n} asks for fewer registers than warp {w}'s current maximum of {before} (.inc only adds registers)"));
    }
    if index > 0 && !inc && n > before {
        problems.push(format!("setmaxnreg.dec {n} asks for more registers than warp {w}'s current maximum of {before} (.dec only releases registers)"));
    }
    if warps_in_group < 4 {
        if !st.short.contains(&group) {
            st.short.push(group);
            problems.push(format!("setmaxnreg is .aligned over a warpgroup of 4 warps; warpgroup {group} of this block has {warps_in_group}"));
        }
    } else {
        let entry = st
            .open
            .entry((group, index))
            .or_insert(Occurrence { line, pc, warps: 0 });
        entry.warps |= 1 << member;
        let first = *entry;
        if first.warps == 0b1111 {
            st.open.remove(&(group, index));
        }
        if first.pc != pc {
            problems.push(format!("setmaxnreg is .aligned over the warpgroup, but setmaxnreg number {index} of warp {w} is at PTX line {line} and another warp of warpgroup {group} executed PTX line {} there", first.line));
        }
    }
    for p in problems {
        ctx.report(FindingKind::Other, None, p);
    }
    Ok(Flow::Next)
}

/// At the end of a block: every `setmaxnreg` some warp of a warpgroup executed that another
/// warp of the group never reached.
pub fn finish_block(prog: &Program<'_>, block: &super::BlockMem, findings: &mut Vec<Finding>) {
    if !prog.sanitize {
        return;
    }
    let mut open: Vec<_> = block.ext.registers.open.iter().collect();
    open.sort_by_key(|(k, _)| **k);
    for ((group, index), o) in open {
        if findings.len() >= super::MAX_FINDINGS {
            break;
        }
        let missing: Vec<String> = (0..4)
            .filter(|m| o.warps & (1 << m) == 0)
            .map(|m| (group * 4 + m).to_string())
            .collect();
        findings.push(Finding {
            kind: FindingKind::Other,
            kernel: prog.kernel.name.clone(),
            block: block.geom.ctaid,
            line: o.line,
            opcode: prog
                .kernel
                .body
                .get(o.pc)
                .map_or_else(String::new, |i| i.opcode.clone()),
            thread: None,
            message: format!(
                "setmaxnreg number {index} of warpgroup {group} was never executed by warp(s) {} (it is .aligned over the warpgroup: all 4 warps execute it)",
                missing.join(", ")
            ),
        });
    }
}
