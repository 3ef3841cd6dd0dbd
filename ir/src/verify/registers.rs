//! The register pool of a kernel that reallocates registers between its warpgroups (`setmaxnreg`;
//! PTX ISA, *setmaxnreg*).
//!
//! A kernel that reallocates has the register file of an SM to its block (its entry declares
//! one block per SM), so each thread starts with [`registers_at_entry`] registers. `setmaxnreg`
//! moves registers between the warpgroups through that pool: a `setmaxnreg.inc` waits until
//! others have given up enough, so the counts the warpgroups hold together may never exceed what
//! the block holds at entry (Σ warpgroups × 128 threads × registers ≤ registers at entry ×
//! threads), or the kernel waits forever. The instruction is `.sync.aligned`: every warp of the
//! warpgroup executes it.
//!
//! Which warpgroup runs which `setmaxnreg` is read from the kernel the way warp specialization
//! writes it: the conditions of the enclosing `if`s are evaluated for each warp where they are
//! integer arithmetic and comparisons of constants, `warp_idx`, `warpgroup_idx` and `num_warps`.
//! A condition the verifier cannot evaluate (it reads a parameter, memory, a loop variable)
//! leaves the op possibly run by every warp that reaches it; a loop body may run or not. So the
//! pool rule counts, for each warpgroup, the most it may hold: the largest count it may ask for,
//! or its registers at entry when it may run none; the every-warp rule reports only warps of one
//! warpgroup that are known to disagree. Helpers a kernel calls are read with their call site's warps and
//! unknown parameters.

use super::sync::SETMAXNREG_RANGE;
use super::{VerifyError, VerifyErrorKind};
use crate::module::{Func, Loc, Module, Region, Value};
use crate::ops::{BinaryFn, CmpPred, Const, OpKind};

/// 32-bit registers in an SM's register file (sm_90: 64K), which a block of a kernel that
/// reallocates registers has to itself.
pub const REGISTER_FILE: u32 = 65536;

/// Warps in a warpgroup, the unit `setmaxnreg` reallocates for.
const WARPGROUP_WARPS: u32 = 4;

/// The deepest chain of helper calls followed (the verifier has refused recursion already).
const MAX_CALL_DEPTH: usize = 64;

/// Registers per thread a block of `warps` warps holds at entry of a kernel that reallocates:
/// the register file divided among its threads, rounded down to a multiple of 8 (the
/// allocation unit), at most the largest `setmaxnreg` count (256). A block of three warpgroups
/// (384 threads) starts at 168: 40 for a producer and 232 for each of two consumers fill it.
pub fn registers_at_entry(warps: u32) -> u32 {
    let threads = warps.max(1) * 32;
    (REGISTER_FILE / threads / 8 * 8).min(*SETMAXNREG_RANGE.end())
}

/// Checks the `setmaxnreg` ops that kernel `kernel` of `m` runs, itself or through the helpers
/// it calls (on a module that passed the other checks: no recursion, warps a multiple of 4 where
/// warpgroup ops run).
pub(super) fn check(m: &Module, kernel: &Func, errors: &mut Vec<VerifyError>) {
    let Some(warps) = kernel
        .warps()
        .filter(|w| *w > 0 && w % WARPGROUP_WARPS == 0)
    else {
        return;
    };
    let mut reallocates = false;
    for f in &m.funcs {
        f.walk(|op| reallocates |= matches!(op.kind, OpKind::SetMaxNReg { .. }));
    }
    if !reallocates {
        return;
    }
    let mut walk = Walk {
        module: m,
        sites: Vec::new(),
    };
    let reach = vec![Reach::Yes; warps as usize];
    walk.region(
        kernel,
        &kernel.body,
        "",
        &reach,
        &mut Env::new(kernel, warps),
        0,
    );
    if walk.sites.is_empty() {
        return;
    }
    for site in &walk.sites {
        check_every_warp(site, errors);
    }
    check_pool(kernel, warps, &walk.sites, errors);
}

/// Whether a warp reaches an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    Yes,
    Maybe,
    No,
}

impl Reach {
    /// Reaching the region an `if` enters when its condition is `cond` (`None`: unknown).
    fn and(self, cond: Option<bool>) -> Reach {
        match (self, cond) {
            (Reach::No, _) | (_, Some(false)) => Reach::No,
            (r, Some(true)) => r,
            (_, None) => Reach::Maybe,
        }
    }
}

/// A `setmaxnreg` op and which warps reach it.
struct Site {
    func: String,
    path: String,
    loc: Loc,
    inc: bool,
    count: u32,
    /// Indexed by warp.
    reach: Vec<Reach>,
}

impl Site {
    fn name(&self) -> String {
        format!(
            "setmaxnreg.{}[{}]",
            if self.inc { "inc" } else { "dec" },
            self.count
        )
    }
}

/// The known integer (or bool: 0, 1) scalar values of one function, per warp.
struct Env {
    /// `[warp][value]`.
    values: Vec<Vec<Option<i64>>>,
}

impl Env {
    fn new(f: &Func, warps: u32) -> Env {
        Env {
            values: vec![vec![None; f.value_types.len()]; warps as usize],
        }
    }

    fn get(&self, warp: usize, v: Value) -> Option<i64> {
        self.values[warp].get(v.index()).copied().flatten()
    }
}

struct Walk<'m> {
    module: &'m Module,
    sites: Vec<Site>,
}

impl Walk<'_> {
    fn region(
        &mut self,
        f: &Func,
        r: &Region,
        prefix: &str,
        reach: &[Reach],
        env: &mut Env,
        depth: usize,
    ) {
        for (k, op) in r.ops.iter().enumerate() {
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            if let [result] = op.results[..] {
                for (w, values) in env.values.iter_mut().enumerate() {
                    let known =
                        evaluate(&op.kind, &op.operands, w as i64, reach.len() as i64, |v| {
                            values.get(v.index()).copied().flatten()
                        });
                    if let Some(slot) = values.get_mut(result.index()) {
                        *slot = known;
                    }
                }
            }
            match &op.kind {
                OpKind::SetMaxNReg { inc, count } => self.sites.push(Site {
                    func: f.name.clone(),
                    path: path.clone(),
                    loc: op.loc,
                    inc: *inc,
                    count: *count,
                    reach: reach.to_vec(),
                }),
                OpKind::If => {
                    let cond = op.operands.first().copied();
                    for (j, sub) in op.regions.iter().enumerate() {
                        let inner: Vec<Reach> = (0..reach.len())
                            .map(|w| {
                                let c = cond
                                    .and_then(|c| env.get(w, c))
                                    .map(|c| (c != 0) == (j == 0));
                                reach[w].and(c)
                            })
                            .collect();
                        self.region(f, sub, &format!("{path}.{j}"), &inner, env, depth);
                    }
                }
                OpKind::Call(name) if depth < MAX_CALL_DEPTH => {
                    if let Some(callee) = self.module.funcs.iter().find(|g| &g.name == name) {
                        let mut inner = Env::new(callee, reach.len() as u32);
                        self.region(callee, &callee.body, "", reach, &mut inner, depth + 1);
                    }
                }
                _ => {
                    // Loop bodies and other regions may run or not.
                    let inner: Vec<Reach> = reach.iter().map(|r| r.and(None)).collect();
                    for (j, sub) in op.regions.iter().enumerate() {
                        self.region(f, sub, &format!("{path}.{j}"), &inner, env, depth);
                    }
                }
            }
        }
    }
}

/// The value of a scalar op for warp `warp` of `warps`, when its operands are known.
fn evaluate(
    kind: &OpKind,
    operands: &[Value],
    warp: i64,
    warps: i64,
    get: impl Fn(Value) -> Option<i64>,
) -> Option<i64> {
    let operand = |i: usize| operands.get(i).and_then(|&v| get(v));
    match kind {
        OpKind::Const(Const::Int(i)) => Some(*i),
        OpKind::Const(Const::Bool(b)) => Some(i64::from(*b)),
        OpKind::WarpIdx => Some(warp),
        OpKind::WarpgroupIdx => Some(warp / i64::from(WARPGROUP_WARPS)),
        OpKind::NumWarps => Some(warps),
        OpKind::Binary(f) => {
            let (x, y) = (operand(0)?, operand(1)?);
            match f {
                BinaryFn::Add => x.checked_add(y),
                BinaryFn::Sub => x.checked_sub(y),
                BinaryFn::Mul => x.checked_mul(y),
                BinaryFn::Div => x.checked_div(y),
                BinaryFn::Rem => x.checked_rem(y),
                BinaryFn::Max => Some(x.max(y)),
                BinaryFn::Min => Some(x.min(y)),
                BinaryFn::And => Some(x & y),
                BinaryFn::Or => Some(x | y),
                BinaryFn::Xor => Some(x ^ y),
                _ => None,
            }
        }
        OpKind::Cmp(p) => {
            let (x, y) = (operand(0)?, operand(1)?);
            Some(i64::from(match p {
                CmpPred::Lt => x < y,
                CmpPred::Le => x <= y,
                CmpPred::Gt => x > y,
                CmpPred::Ge => x >= y,
                CmpPred::Eq => x == y,
                CmpPred::Ne => x != y,
            }))
        }
        _ => None,
    }
}

/// The warps `first..first + 4` as text, those of them for which `pick` holds.
fn warp_list(site: &Site, first: usize, pick: Reach) -> String {
    (first..first + WARPGROUP_WARPS as usize)
        .filter(|&w| site.reach[w] == pick)
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reports a warpgroup some of whose warps run `site` and others do not.
fn check_every_warp(site: &Site, errors: &mut Vec<VerifyError>) {
    for (g, group) in site.reach.chunks(WARPGROUP_WARPS as usize).enumerate() {
        let first = g * WARPGROUP_WARPS as usize;
        if group.contains(&Reach::Yes) && group.contains(&Reach::No) {
            errors.push(VerifyError {
                func: site.func.clone(),
                path: site.path.clone(),
                op: if site.inc {
                    "setmaxnreg.inc"
                } else {
                    "setmaxnreg.dec"
                }
                .to_string(),
                loc: site.loc,
                kind: VerifyErrorKind::Structure {
                    message: format!(
                        "{} runs in warps {} of warpgroup {} but not in warps {}: every warp of a \
                         warpgroup executes it (PTX's setmaxnreg is .sync.aligned); branch on \
                         warpgroup_idx, not on warp_idx",
                        site.name(),
                        warp_list(site, first, Reach::Yes),
                        g,
                        warp_list(site, first, Reach::No),
                    ),
                },
            });
        }
    }
}

/// Reports a kernel whose warpgroups may ask for more registers together than the block holds.
fn check_pool(kernel: &Func, warps: u32, sites: &[Site], errors: &mut Vec<VerifyError>) {
    let entry = registers_at_entry(warps);
    let groups = warps / WARPGROUP_WARPS;
    let peaks: Vec<u32> = (0..groups as usize)
        .map(|g| {
            let warps = g * WARPGROUP_WARPS as usize..(g + 1) * WARPGROUP_WARPS as usize;
            let reach = |s: &&Site| s.reach[warps.clone()].to_vec();
            // A warpgroup that may run none keeps (may keep) its registers at entry.
            let surely_runs_one = sites.iter().any(|s| reach(&s).contains(&Reach::Yes));
            sites
                .iter()
                .filter(|s| reach(s).iter().any(|r| *r != Reach::No))
                .map(|s| s.count)
                .chain((!surely_runs_one).then_some(entry))
                .max()
                .unwrap_or(entry)
        })
        .collect();
    let total: u32 = peaks.iter().sum();
    if total <= groups * entry {
        return;
    }
    let terms = peaks
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" + ");
    errors.push(VerifyError::at_func(
        kernel,
        VerifyErrorKind::Structure {
            message: format!(
                "setmaxnreg: its {groups} warpgroups may hold {terms} = {total} registers per \
                 thread together (warpgroup 0 first; one that may run no setmaxnreg keeps \
                 its registers at entry), more than the {groups} × {entry} = {} the block holds: \
                 {REGISTER_FILE} registers / {} threads, rounded down to a multiple of 8. Lower \
                 the counts so that they sum to at most {}",
                groups * entry,
                warps * 32,
                groups * entry
            ),
        },
    ));
}
