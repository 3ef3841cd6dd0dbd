//! Trip counts of loops nested in the hot loop, read from the machine code.
//!
//! A loop's trip count is known when its only exit is the conditional branch that closes it,
//! that branch tests one comparison computed in the same block, and the comparison sets a
//! counter against a constant, where the counter is written in the loop only by adding a
//! constant once per trip (in a block every trip passes) and enters the loop with a constant
//! value. The trips are then found by running the counter: starting at its entry value, step by
//! step, until the branch leaves the loop, in the 32-bit arithmetic (signed or unsigned) of the
//! comparison. Every other shape (a counter compared against a run-time value, a 64-bit or
//! pointer induction, a second exit, a compare in another block) has no known count.
//!
//! The count is read from the code the hardware runs, not carried from the lowering: the
//! assembler may unroll a loop (its machine code then makes fewer trips of a longer body),
//! unroll it fully (no loop is left), or rotate it, and only the machine code says which.

use super::{Block, Flow, Instr, Listing};

/// How an instruction writes a register, as far as counting trips is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Write {
    /// It leaves the register alone.
    None,
    /// It sets the register to a constant.
    Const(i64),
    /// It adds a constant to the register.
    Add(i64),
    /// It writes some other value (or writes under a predicate).
    Other,
}

/// A comparison `lhs cmp rhs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    /// `eq`, `NE`, `lg` (AMD's not-equal), … in either case.
    pub(super) fn parse(s: &str) -> Option<Cmp> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Cmp::Eq,
            "ne" | "lg" => Cmp::Ne,
            "lt" => Cmp::Lt,
            "le" => Cmp::Le,
            "gt" => Cmp::Gt,
            "ge" => Cmp::Ge,
            _ => return None,
        })
    }

    /// The comparison with its operands swapped: `a < b` is `b > a`.
    fn mirrored(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            c => c,
        }
    }

    /// Whether `a cmp b` holds for 32-bit values, compared signed or unsigned.
    fn holds(self, a: i64, b: i64, unsigned: bool) -> bool {
        let (a, b) = if unsigned {
            (i64::from(a as u32), i64::from(b as u32))
        } else {
            (i64::from(a as i32), i64::from(b as i32))
        };
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

/// An operand of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Operand {
    Imm(i64),
    Reg(String),
}

/// The comparison a loop's closing branch tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Condition {
    /// The index of the comparing instruction within the block.
    pub at: usize,
    pub lhs: Operand,
    pub cmp: Cmp,
    pub rhs: Operand,
    pub unsigned: bool,
    /// Whether the branch is taken when the comparison holds (else when it fails).
    pub taken_if_holds: bool,
}

/// What reading trip counts needs of an instruction set.
pub(super) trait Counters {
    /// How `ins` writes register `reg`.
    fn write(&self, ins: &Instr, reg: &str) -> Write;
    /// The comparison the conditional branch ending `block` tests, when it is one computed in
    /// the block itself.
    fn condition(&self, block: &[Instr]) -> Option<Condition>;
}

/// Above this many trips the count is reported unknown (a counter that never meets its bound
/// in 32 bits is no copy loop).
const MAX_TRIPS: u64 = 1 << 20;

/// How many blocks back from a loop's entry its counter's initial value is searched.
const ENTRY_SEARCH_BLOCKS: usize = 64;

/// The trips the loop of `header` with blocks `body` makes each time it is entered; `None`
/// when they are not a constant this reading recognizes (module docs).
pub(super) fn trip_count(
    isa: &impl Counters,
    l: &Listing,
    bs: &[Block],
    preds: &[Vec<usize>],
    dominates: &impl Fn(usize, usize) -> bool,
    header: usize,
    body: &[bool],
) -> Option<u64> {
    let blocks: Vec<usize> = (0..bs.len()).filter(|&b| body[b]).collect();
    let latches: Vec<usize> = blocks
        .iter()
        .copied()
        .filter(|&b| bs[b].succs.contains(&header))
        .collect();
    let exits: Vec<usize> = blocks
        .iter()
        .copied()
        .filter(|&b| bs[b].succs.iter().any(|&s| !body[s]) || ends_in_exit(l, &bs[b]))
        .collect();
    let [latch] = latches[..] else { return None };
    if exits != [latch] || bs[latch].succs.len() != 2 {
        return None;
    }
    let instrs = &l.instrs[bs[latch].start..bs[latch].end];
    if !matches!(
        instrs.last()?.flow,
        Flow::Branch {
            conditional: true,
            ..
        }
    ) {
        return None;
    }
    let cond = isa.condition(instrs)?;
    // The branch goes back when taken if its target is the header; else it falls back.
    let taken = bs[latch]
        .succs
        .iter()
        .copied()
        .find(|&s| Some(s) != bs[latch].fall)?;
    let back_if_holds = cond.taken_if_holds == (taken == header);

    let writes_in_loop = |reg: &str| -> Vec<(usize, usize, Write)> {
        blocks
            .iter()
            .flat_map(|&b| {
                l.instrs[bs[b].start..bs[b].end]
                    .iter()
                    .enumerate()
                    .map(move |(i, ins)| (b, i, isa.write(ins, reg)))
            })
            .filter(|w| w.2 != Write::None)
            .collect()
    };
    let written = |op: &Operand| match op {
        Operand::Reg(r) => !writes_in_loop(r).is_empty(),
        Operand::Imm(_) => false,
    };
    let (counter, cmp, bound) = match (written(&cond.lhs), written(&cond.rhs)) {
        (true, false) => (&cond.lhs, cond.cmp, &cond.rhs),
        (false, true) => (&cond.rhs, cond.cmp.mirrored(), &cond.lhs),
        _ => return None,
    };
    let Operand::Reg(counter) = counter else {
        return None;
    };
    let entry = |reg: &str| entry_value(isa, l, bs, preds, header, body, reg);
    let bound = match bound {
        Operand::Imm(v) => *v,
        Operand::Reg(r) => entry(r)?,
    };
    let [(b, i, Write::Add(step))] = writes_in_loop(counter)[..] else {
        return None;
    };
    if !dominates(b, latch) {
        return None;
    }
    // Whether a trip's comparison sees the counter already stepped in that trip.
    let stepped_first = b != latch || i < cond.at;
    let start = entry(counter)?;
    let mut value = start;
    for trips in 1..=MAX_TRIPS {
        let seen = if stepped_first {
            value.wrapping_add(step)
        } else {
            value
        };
        value = value.wrapping_add(step);
        if cmp.holds(seen, bound, cond.unsigned) != back_if_holds {
            return Some(trips);
        }
    }
    None
}

/// Whether a block ends the thread (an exit counts as leaving the loop).
fn ends_in_exit(l: &Listing, b: &Block) -> bool {
    l.instrs[b.start..b.end]
        .iter()
        .any(|i| matches!(i.flow, Flow::Exit { .. }))
}

/// The constant `reg` holds on entering the loop of `header`: the last write before the
/// loop on every way in, searched back through blocks with a single predecessor.
fn entry_value(
    isa: &impl Counters,
    l: &Listing,
    bs: &[Block],
    preds: &[Vec<usize>],
    header: usize,
    body: &[bool],
    reg: &str,
) -> Option<i64> {
    let mut value = None;
    for &p in preds[header].iter().filter(|&&p| !body[p]) {
        let mut b = p;
        let mut found = None;
        for _ in 0..ENTRY_SEARCH_BLOCKS {
            found = l.instrs[bs[b].start..bs[b].end]
                .iter()
                .rev()
                .map(|ins| isa.write(ins, reg))
                .find(|w| *w != Write::None);
            match (found, &preds[b][..]) {
                (Some(_), _) => break,
                (None, [single]) => b = *single,
                (None, _) => return None,
            }
        }
        let Some(Write::Const(v)) = found else {
            return None;
        };
        if value.is_some_and(|x| x != v) {
            return None;
        }
        value = Some(v);
    }
    value
}

/// `0x80`, `-0x1`, `16`, `-3` → the value.
pub(super) fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = match digits.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// Counters in `nvdisasm` output: `ISETP`/`UISETP` comparisons, `VIADD`/`IADD3`/`UIADD3`
/// steps, constants from `MOV`, `IMAD.MOV.U32 r, RZ, RZ, c`, `CS2R r, SRZ` and `HFMA2.MMA`.
pub(super) struct Sass;

/// A SASS register `R12`, `UR4`, `P0` as (class, number).
fn sass_reg(s: &str) -> Option<(&str, u32)> {
    let digits = s.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let class = &s[..s.len() - digits.len()];
    matches!(class, "R" | "UR" | "P" | "UP")
        .then(|| digits.parse().ok().map(|n| (class, n)))
        .flatten()
}

/// How many consecutive registers from its first operand a SASS instruction writes (an
/// upper bound where the shape does not say).
fn sass_dst_width(op: &str) -> u32 {
    let has = |m: &str| op.split('.').any(|p| p == m);
    let name = op.split('.').next().unwrap_or(op);
    match name {
        "HGMMA" | "QGMMA" | "IGMMA" => 128,
        "HMMA" | "IMMA" => 4,
        "LDSM" if has("4") => 4,
        "LDSM" if has("2") => 2,
        "CS2R" => 2,
        _ if has("128") => 4,
        _ if has("64") || has("WIDE") => 2,
        _ => 1,
    }
}

/// A SASS constant operand: an immediate, or the zero register.
fn sass_const(s: &str) -> Option<i64> {
    match s {
        "RZ" | "URZ" => Some(0),
        _ => parse_int(s),
    }
}

/// The bits of a half-precision number as `nvdisasm` prints it (`0`, `4.76837158203125e-07`).
fn f16_bits(s: &str) -> Option<i64> {
    let x: f64 = s.parse().ok()?;
    let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
    let a = x.abs();
    if a == 0.0 {
        return Some(sign);
    }
    let exp = a.log2().floor() as i32;
    let (field, mantissa) = if exp < -14 {
        (0, a / 2f64.powi(-24))
    } else {
        (exp + 15, (a / 2f64.powi(exp) - 1.0) * 1024.0)
    };
    let m = mantissa.round();
    ((mantissa - m).abs() < 1e-6 && (0.0..1024.0).contains(&m) && (0..31).contains(&field))
        .then(|| sign | (i64::from(field) << 10) | m as i64)
}

impl Counters for Sass {
    fn write(&self, ins: &Instr, reg: &str) -> Write {
        let Some(dst) = ins.args.first() else {
            return Write::None;
        };
        let name = ins.op.split('.').next().unwrap_or(&ins.op);
        let a = |i: usize| ins.args.get(i).map(String::as_str);
        if dst != reg {
            // A write of several registers from a lower one that covers `reg`.
            let covers = matches!((sass_reg(dst), sass_reg(reg)), (Some((c, k)), Some((d, n)))
                if c == d && k < n && n < k + sass_dst_width(&ins.op));
            return match covers {
                false => Write::None,
                true if ins.guard.is_none() && name == "CS2R" && a(1) == Some("SRZ") => {
                    Write::Const(0)
                }
                true => Write::Other,
            };
        }
        if ins.guard.is_some() {
            return Write::Other;
        }
        let value = match (name, ins.args.len()) {
            ("MOV" | "UMOV" | "MOV32I", 2) => a(1).and_then(sass_const).map(Write::Const),
            ("IMAD", 4)
                if ins.op.starts_with("IMAD.MOV") && a(1) == Some("RZ") && a(2) == Some("RZ") =>
            {
                a(3).and_then(sass_const).map(Write::Const)
            }
            ("CS2R", 2) => (a(1) == Some("SRZ")).then_some(Write::Const(0)),
            // `-RZ · RZ + (hi, lo)`: the two halves of the constant.
            ("HFMA2", 5) if a(1) == Some("-RZ") && a(2) == Some("RZ") => {
                match (a(3).and_then(f16_bits), a(4).and_then(f16_bits)) {
                    (Some(hi), Some(lo)) => Some(Write::Const((hi << 16) | lo)),
                    _ => None,
                }
            }
            ("VIADD", 3) if a(1) == Some(reg) => a(2).and_then(parse_int).map(Write::Add),
            ("IADD3" | "UIADD3", 4) if ins.op == name => {
                // `reg + c + RZ` in any order.
                let rest = &ins.args[1..];
                let own = rest.iter().filter(|x| *x == reg).count();
                let zero = rest.iter().filter(|x| *x == "RZ" || *x == "URZ").count();
                let imm: Vec<i64> = rest.iter().filter_map(|x| parse_int(x)).collect();
                match (own, zero, &imm[..]) {
                    (1, 1, [c]) => Some(Write::Add(*c)),
                    _ => None,
                }
            }
            _ => None,
        };
        value.unwrap_or(Write::Other)
    }

    fn condition(&self, block: &[Instr]) -> Option<Condition> {
        let (branch, before) = block.split_last()?;
        // `@P0 BRA`, `@!P0 BRA`, or `BRA.U !UP0, target`.
        let test = match &branch.guard {
            Some(g) => g.as_str(),
            None => branch.args.first()?.as_str(),
        };
        let (negated, pred) = match test.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, test),
        };
        sass_reg(pred).filter(|(c, _)| *c == "P" || *c == "UP")?;
        let (at, cmp) = before
            .iter()
            .enumerate()
            .rev()
            .find(|(_, i)| i.args.iter().take(2).any(|x| x == pred))?;
        // `ISETP.NE.U32.AND P0, PT, R4, 0x80, PT`: P0 alone, the second result unused.
        let mut parts = cmp.op.split('.');
        if !matches!(parts.next(), Some("ISETP" | "UISETP"))
            || cmp.guard.is_some()
            || cmp.args.len() != 5
            || cmp.args[0] != pred
            || !matches!(cmp.args[1].as_str(), "PT" | "UPT")
            || !matches!(cmp.args[4].as_str(), "PT" | "UPT")
        {
            return None;
        }
        let kind = Cmp::parse(parts.next()?)?;
        let modifiers: Vec<&str> = parts.collect();
        let unsigned = match modifiers[..] {
            ["AND"] => false,
            ["U32", "AND"] => true,
            _ => return None,
        };
        let operand = |s: &str| match sass_const(s) {
            Some(v) => Some(Operand::Imm(v)),
            None => sass_reg(s).map(|_| Operand::Reg(s.to_string())),
        };
        Some(Condition {
            at,
            lhs: operand(&cmp.args[2])?,
            cmp: kind,
            rhs: operand(&cmp.args[3])?,
            unsigned,
            taken_if_holds: !negated,
        })
    }
}

/// Counters in AMDGPU assembly: scalar counters (`s_add_i32`, `s_addk_i32`, `s_sub_i32`),
/// set by `s_mov_b32`/`s_movk_i32` (or `s_mov_b64 s[a:b], 0`), compared by `s_cmp_*`/`s_cmpk_*`
/// into SCC and tested by `s_cbranch_scc0/1`. Vector counters have no known count.
pub(super) struct Amdgpu;

/// `s7` → 7.
fn sgpr(s: &str) -> Option<u32> {
    s.strip_prefix('s')?.parse().ok()
}

/// `s[4:5]` → (4, 5).
fn sgpr_range(s: &str) -> Option<(u32, u32)> {
    let (lo, hi) = s.strip_prefix("s[")?.strip_suffix(']')?.split_once(':')?;
    Some((lo.parse().ok()?, hi.parse().ok()?))
}

/// Whether a scalar instruction leaves SCC alone.
fn keeps_scc(op: &str) -> bool {
    [
        "s_mov_",
        "s_movk_",
        "s_waitcnt",
        "s_nop",
        "s_barrier",
        "s_load_",
        "s_buffer_load_",
    ]
    .iter()
    .chain(&[
        "s_setprio",
        "s_sleep",
        "s_cselect_",
        "s_cmov_",
        "s_sched_barrier",
    ])
    .any(|p| op.starts_with(p))
}

/// Whether an AMDGPU instruction's first operand is a source (compares into SCC, stores,
/// branches, waits), not a register it writes.
fn reads_first(op: &str) -> bool {
    [
        "s_cmp",
        "s_bitcmp",
        "s_cbranch_",
        "s_branch",
        "s_waitcnt",
        "s_barrier",
        "s_nop",
    ]
    .iter()
    .any(|p| op.starts_with(p))
        || op.starts_with("ds_write")
        || op.contains("_store")
}

impl Counters for Amdgpu {
    fn write(&self, ins: &Instr, reg: &str) -> Write {
        let Some(dst) = ins.args.first().filter(|_| !reads_first(&ins.op)) else {
            return Write::None;
        };
        let a = |i: usize| ins.args.get(i).map(String::as_str);
        if dst != reg {
            let covers = matches!((sgpr_range(dst), sgpr(reg)), (Some((lo, hi)), Some(n)) if lo <= n && n <= hi);
            return match covers {
                false => Write::None,
                true if ins.op == "s_mov_b64" && a(1) == Some("0") => Write::Const(0),
                true => Write::Other,
            };
        }
        // Vector registers are written per lane under the exec mask.
        if sgpr(reg).is_none() {
            return Write::Other;
        }
        let imm = |i: usize| a(i).and_then(parse_int);
        let value = match (ins.op.as_str(), ins.args.len()) {
            ("s_mov_b32" | "s_movk_i32", 2) => imm(1).map(Write::Const),
            ("s_addk_i32", 2) => imm(1).map(Write::Add),
            ("s_add_i32" | "s_add_u32", 3) if a(1) == Some(reg) => imm(2).map(Write::Add),
            ("s_add_i32" | "s_add_u32", 3) if a(2) == Some(reg) => imm(1).map(Write::Add),
            ("s_sub_i32" | "s_sub_u32", 3) if a(1) == Some(reg) => imm(2).map(|c| Write::Add(-c)),
            _ => None,
        };
        value.unwrap_or(Write::Other)
    }

    fn condition(&self, block: &[Instr]) -> Option<Condition> {
        let (branch, before) = block.split_last()?;
        let taken_if_holds = match branch.op.as_str() {
            "s_cbranch_scc1" => true,
            "s_cbranch_scc0" => false,
            _ => return None,
        };
        let (at, cmp) = before
            .iter()
            .enumerate()
            .rev()
            .find(|(_, i)| i.op.starts_with("s_") && !keeps_scc(&i.op))?;
        // `s_cmp_lg_u32 s4, 16`, `s_cmpk_eq_i32 s4, 0x80`.
        let rest = cmp
            .op
            .strip_prefix("s_cmp_")
            .or_else(|| cmp.op.strip_prefix("s_cmpk_"))?;
        let (kind, ty) = rest.split_once('_')?;
        let unsigned = match ty {
            "i32" => false,
            "u32" => true,
            _ => return None,
        };
        let operand = |s: &str| match parse_int(s) {
            Some(v) => Some(Operand::Imm(v)),
            None => sgpr(s).map(|_| Operand::Reg(s.to_string())),
        };
        let [lhs, rhs] = &cmp.args[..] else {
            return None;
        };
        Some(Condition {
            at,
            lhs: operand(lhs)?,
            cmp: Cmp::parse(kind)?,
            rhs: operand(rhs)?,
            unsigned,
            taken_if_holds,
        })
    }
}
