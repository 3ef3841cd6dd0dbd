//! Accumulators in flight: the result of an `mma_async` is written by the tensor cores after the
//! op is issued, so until an `mma_wait` retires it (returning it as a new value) the only uses
//! it may have are those that do not read its elements: the C of another `mma_async` (the next
//! wgmma accumulates into the same registers), an operand of `mma_wait`, and being carried
//! through control flow (a `yield`, a `condition`'s forwarded values, a loop's initial values).
//!
//! A value is *maybe in flight* when it is an `mma_async` result, or a region argument or
//! control-flow result that one of the values flowing into it is (found by iterating to a fixed
//! point: a loop may carry an accumulator round its back edge). Any other use of such a value
//! reads it before its wait on at least one path, and is an error. The interpreter checks the
//! same dynamically, together with group counts (an `mma_wait` that does not cover its mma).

use super::func::value_text;
use super::{VerifyError, VerifyErrorKind};
use crate::module::{Func, Op, Region, Value};
use crate::ops::OpKind;

/// Checks the uses of maybe-in-flight values of `func` (which passed the other checks: every
/// value is in range and the nesting is bounded).
pub(super) fn check(func: &Func, errors: &mut Vec<VerifyError>) {
    let mut flight = vec![false; func.value_types.len()];
    if !any_async(&func.body) {
        return;
    }
    // Each pass can only turn values on; a pass that changes nothing is the fixed point.
    while propagate(&func.body, &mut flight) {}
    report(func, &func.body, "", &flight, errors);
}

fn any_async(r: &Region) -> bool {
    r.ops
        .iter()
        .any(|op| matches!(op.kind, OpKind::MmaAsync(_)) || op.regions.iter().any(any_async))
}

fn is(flight: &[bool], v: Value) -> bool {
    flight.get(v.index()).copied().unwrap_or(false)
}

/// Marks `v` in flight; whether that changed anything.
fn mark(flight: &mut [bool], v: Value) -> bool {
    match flight.get_mut(v.index()) {
        Some(f) if !*f => {
            *f = true;
            true
        }
        _ => false,
    }
}

/// The operands of the terminator of `r` (a `yield` or `condition`), from `skip` on.
fn ends(r: &Region, skip: usize) -> &[Value] {
    r.ops
        .last()
        .filter(|t| matches!(t.kind, OpKind::Yield | OpKind::Condition))
        .and_then(|t| t.operands.get(skip..))
        .unwrap_or(&[])
}

/// One pass over `r`: marks every value a maybe-in-flight value flows into.
fn propagate(r: &Region, flight: &mut [bool]) -> bool {
    let mut changed = false;
    for op in &r.ops {
        for sub in &op.regions {
            changed |= propagate(sub, flight);
        }
        // (source values, destination values) pairs, position by position.
        let mut flows: Vec<(&[Value], &[Value])> = Vec::new();
        match op.kind {
            OpKind::MmaAsync(_) => {
                for &res in &op.results {
                    changed |= mark(flight, res);
                }
            }
            OpKind::For => {
                let inits = op.operands.get(3..).unwrap_or(&[]);
                if let Some(body) = op.regions.first() {
                    let carried = body.args.get(1..).unwrap_or(&[]);
                    flows.push((inits, carried));
                    flows.push((ends(body, 0), carried));
                    flows.push((ends(body, 0), &op.results));
                }
                flows.push((inits, &op.results));
            }
            OpKind::If => {
                for branch in &op.regions {
                    flows.push((ends(branch, 0), &op.results));
                }
            }
            OpKind::While => {
                if let [before, after] = op.regions.as_slice() {
                    flows.push((&op.operands, &before.args));
                    flows.push((ends(after, 0), &before.args));
                    flows.push((ends(before, 1), &after.args));
                    flows.push((ends(before, 1), &op.results));
                }
            }
            _ => {}
        }
        for (from, to) in flows {
            for (&f, &t) in from.iter().zip(to) {
                if is(flight, f) {
                    changed |= mark(flight, t);
                }
            }
        }
    }
    changed
}

/// Whether operand `i` of `op` may be a value in flight.
fn carries(op: &Op, i: usize) -> bool {
    match op.kind {
        OpKind::MmaAsync(_) => i == 2,
        OpKind::MmaWait(_) | OpKind::Yield | OpKind::While => true,
        OpKind::Condition => i >= 1,
        OpKind::For => i >= 3,
        _ => false,
    }
}

fn report(func: &Func, r: &Region, prefix: &str, flight: &[bool], errors: &mut Vec<VerifyError>) {
    for (k, op) in r.ops.iter().enumerate() {
        let path = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        for (i, &v) in op.operands.iter().enumerate() {
            if is(flight, v) && !carries(op, i) {
                let how = match op.kind {
                    OpKind::MmaAsync(_) => "as A or B",
                    OpKind::Return => "returns",
                    OpKind::Call(_) => "passes to a call",
                    _ => "reads",
                };
                errors.push(VerifyError {
                    func: func.name.clone(),
                    path: path.clone(),
                    op: op.kind.name(),
                    loc: op.loc,
                    kind: VerifyErrorKind::Structure {
                        message: format!(
                            "`{}` {how} {} (operand {i}), the accumulator of an mma_async, before an mma_wait retires it: pass it through mma_wait and use the wait's result",
                            op.kind.name(),
                            value_text(func, v)
                        ),
                    },
                });
            }
        }
        for (j, sub) in op.regions.iter().enumerate() {
            report(func, sub, &format!("{path}.{j}"), flight, errors);
        }
    }
}
