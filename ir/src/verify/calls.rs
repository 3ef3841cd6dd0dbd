//! Checks of the call graph: no recursion, and enough warps for every kernel that runs
//! warpgroup-scope ops, itself or through the helpers it calls.

use super::func::{FuncSummary, Site};
use super::{VerifyError, VerifyErrorKind};
use crate::module::{Func, Module};

/// Checks the module's call graph; `summaries` has one entry per function of `m`, in order.
pub(super) fn check(m: &Module, summaries: &[FuncSummary], errors: &mut Vec<VerifyError>) {
    if summaries.len() != m.funcs.len() {
        return;
    }
    check_recursion(m, summaries, errors);
    check_warpgroup_warps(m, summaries, errors);
}

fn at_site(func: &Func, site: &Site, message: String) -> VerifyError {
    VerifyError {
        func: func.name.clone(),
        path: site.path.clone(),
        op: site.op.clone(),
        loc: site.loc,
        kind: VerifyErrorKind::Structure { message },
    }
}

/// The most functions a recursion error lists; a longer cycle is shown by its two ends.
const MAX_CYCLE_TEXT: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unvisited,
    OnPath,
    Done,
}

/// Reports every call that closes a cycle (a back edge of a depth-first search), naming the
/// cycle. Helpers are inlined, so calls may not recurse.
fn check_recursion(m: &Module, summaries: &[FuncSummary], errors: &mut Vec<VerifyError>) {
    let mut mark = vec![Mark::Unvisited; m.funcs.len()];
    // Where each function on the search path stands in it (to cut the cycle out in one step).
    let mut depth_on_path = vec![0usize; m.funcs.len()];
    for root in 0..m.funcs.len() {
        if mark[root] != Mark::Unvisited {
            continue;
        }
        mark[root] = Mark::OnPath;
        depth_on_path[root] = 0;
        // The path of the search: each function with the index of its next call to follow.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&(f, next)) = path.last() {
            let Some(call) = summaries[f].calls.get(next) else {
                mark[f] = Mark::Done;
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            let g = call.callee;
            match mark.get(g) {
                Some(Mark::Unvisited) => {
                    mark[g] = Mark::OnPath;
                    depth_on_path[g] = path.len();
                    path.push((g, 0));
                }
                Some(Mark::OnPath) => {
                    let start = depth_on_path[g].min(path.len());
                    let members: Vec<usize> =
                        path[start..].iter().map(|&(h, _)| h).chain([g]).collect();
                    // A long cycle is named by its ends, so that many long cycles (one per back
                    // edge) cannot make the errors quadratic in the module's size.
                    let name = |h: usize| format!("@{}", m.funcs[h].name);
                    let cycle: Vec<String> = if members.len() <= MAX_CYCLE_TEXT {
                        members.iter().map(|&h| name(h)).collect()
                    } else {
                        let head = MAX_CYCLE_TEXT / 2;
                        let tail = members.len() - head;
                        members[..head]
                            .iter()
                            .map(|&h| name(h))
                            .chain([format!("… {} more …", tail - head)])
                            .chain(members[tail..].iter().map(|&h| name(h)))
                            .collect()
                    };
                    let message = format!(
                        "recursive call: {} (helpers are inlined, so calls may not form a cycle)",
                        cycle.join(" → ")
                    );
                    errors.push(at_site(&m.funcs[f], &call.site, message));
                }
                Some(Mark::Done) | None => {}
            }
        }
    }
}

/// A kernel that runs warpgroup-scope ops, itself or in a helper it calls (transitively), needs
/// a multiple of 4 warps per block. Reported once per kernel, at its first such op or call.
fn check_warpgroup_warps(m: &Module, summaries: &[FuncSummary], errors: &mut Vec<VerifyError>) {
    // Whether each function runs warpgroup ops, itself or through its callees: spread from the
    // functions that do to their callers along the reversed call graph, each function once
    // (a fixpoint over the whole module would take one pass per link of a long call chain).
    let mut callers: Vec<Vec<usize>> = vec![Vec::new(); summaries.len()];
    for (f, summary) in summaries.iter().enumerate() {
        for c in &summary.calls {
            if let Some(list) = callers.get_mut(c.callee) {
                list.push(f);
            }
        }
    }
    let mut uses: Vec<bool> = summaries.iter().map(|s| s.warpgroup_op.is_some()).collect();
    let mut work: Vec<usize> = (0..uses.len()).filter(|&f| uses[f]).collect();
    while let Some(g) = work.pop() {
        for &f in &callers[g] {
            if !uses[f] {
                uses[f] = true;
                work.push(f);
            }
        }
    }
    for (func, summary) in m.funcs.iter().zip(summaries) {
        let Some(warps) = func.warps() else {
            continue;
        };
        // Zero warps is reported with the kernel's signature.
        if warps == 0 || warps % 4 == 0 {
            continue;
        }
        let name = &func.name;
        if let Some(site) = &summary.warpgroup_op {
            let message = format!(
                "kernel @{name} has {warps} warps per block, but this op runs at warpgroup scope, which needs a multiple of 4 warps"
            );
            errors.push(at_site(func, site, message));
        } else if let Some(call) = summary.calls.iter().find(|c| uses[c.callee]) {
            let message = format!(
                "kernel @{name} has {warps} warps per block, but @{} (called here) runs warpgroup-scope ops, which need a multiple of 4 warps",
                m.funcs[call.callee].name
            );
            errors.push(at_site(func, &call.site, message));
        }
    }
}
