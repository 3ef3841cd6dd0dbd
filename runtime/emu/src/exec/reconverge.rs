//! Where divergent lanes meet again.
//!
//! The scheduler runs, at each step, the lanes whose next instruction comes first in a *weak
//! topological order* of the kernel's control-flow graph (Bourdoncle, "Efficient chaotic
//! iteration strategies with widenings", 1993): every block comes after the blocks that reach it
//! along forward edges, and the blocks of a loop are contiguous with the loop's head first. So
//! lanes that reach a join point wait there until every lane still on a path into it (a branch
//! placed out of line at a higher address, or more iterations of a loop) has arrived — the
//! reconvergence at the immediate post-dominator that the hardware provides for structured
//! code — whatever order LLVM laid the blocks out in.

use crate::ptx::{Function, Operand};

/// Above this many blocks the order falls back to instruction addresses (the recursive
/// ordering would need a deep stack; no compiler output comes close).
const MAX_BLOCKS: usize = 20_000;

/// Scheduling priority of every instruction (smaller runs first), plus one entry for the
/// position one past the end of the body.
pub fn priorities(f: &Function) -> Vec<u32> {
    let n = f.body.len();
    // Block leaders: the entry, branch targets, and whatever follows a branch or an exit.
    let mut leader = vec![false; n + 1];
    leader[0] = true;
    for (i, ins) in f.body.iter().enumerate() {
        let transfers = matches!(ins.head.as_str(), "bra" | "brx" | "ret" | "exit" | "trap");
        if transfers {
            leader[i + 1] = true;
        }
        if matches!(ins.head.as_str(), "bra" | "brx") {
            for op in &ins.operands {
                if let Operand::Label(t) = op {
                    if *t <= n {
                        leader[*t] = true;
                    }
                }
            }
        }
    }
    let starts: Vec<usize> = (0..n).filter(|&i| leader[i]).collect();
    let nb = starts.len();
    let mut block_of = vec![0usize; n + 1];
    for (b, &s) in starts.iter().enumerate() {
        let e = starts.get(b + 1).copied().unwrap_or(n);
        for slot in &mut block_of[s..e] {
            *slot = b;
        }
    }
    // The position past the end is its own (exit) block.
    block_of[n] = nb;
    let fallback = || (0..=n as u32).collect::<Vec<u32>>();
    if nb == 0 || nb > MAX_BLOCKS {
        return fallback();
    }
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); nb + 1];
    for (b, slot) in succ.iter_mut().enumerate().take(nb) {
        let e = starts.get(b + 1).copied().unwrap_or(n);
        let last = &f.body[e - 1];
        let guarded = last.guard.is_some();
        let mut out = Vec::new();
        match last.head.as_str() {
            "bra" | "brx" => {
                for op in &last.operands {
                    if let Operand::Label(t) = op {
                        out.push(block_of[(*t).min(n)]);
                    }
                }
                if guarded {
                    out.push(block_of[e]);
                }
            }
            "ret" | "exit" | "trap" => {
                if guarded {
                    out.push(block_of[e]);
                }
            }
            _ => out.push(block_of[e]),
        }
        out.dedup();
        *slot = out;
    }
    let order = weak_topological_order(&succ, 0);
    let mut rank = vec![u32::MAX; nb + 1];
    for (k, &b) in order.iter().enumerate() {
        rank[b] = k as u32;
    }
    // Unreachable blocks keep their address order, after the reachable ones.
    let mut next = order.len() as u32;
    for r in rank.iter_mut() {
        if *r == u32::MAX {
            *r = next;
            next += 1;
        }
    }
    // Priority of an instruction: its block's rank, then its place in the block.
    let mut prio = vec![0u32; n + 1];
    let width = (n as u32).saturating_add(1);
    for (i, p) in prio.iter_mut().enumerate() {
        let b = block_of[i];
        let within = if b < nb { (i - starts[b]) as u32 } else { 0 };
        *p = rank[b].saturating_mul(width).saturating_add(within);
    }
    // Ranks times width could overflow u32 for huge bodies: fall back then.
    if (nb as u64 + 1) * (u64::from(width)) > u64::from(u32::MAX) {
        return fallback();
    }
    prio
}

enum Elem {
    Vertex(usize),
    Component(usize, Vec<Elem>),
}

struct Wto<'a> {
    succ: &'a [Vec<usize>],
    dfn: Vec<u64>,
    num: u64,
    stack: Vec<usize>,
}

impl Wto<'_> {
    fn visit(&mut self, v: usize, partition: &mut Vec<Elem>) -> u64 {
        self.stack.push(v);
        self.num += 1;
        self.dfn[v] = self.num;
        let mut head = self.num;
        let mut is_loop = false;
        for k in 0..self.succ[v].len() {
            let w = self.succ[v][k];
            let min = if self.dfn[w] == 0 {
                self.visit(w, partition)
            } else {
                self.dfn[w]
            };
            if min <= head {
                head = min;
                is_loop = true;
            }
        }
        if head == self.dfn[v] {
            self.dfn[v] = u64::MAX;
            let mut element = self.stack.pop().unwrap_or(v);
            if is_loop {
                while element != v {
                    self.dfn[element] = 0;
                    element = self.stack.pop().unwrap_or(v);
                }
                let c = self.component(v);
                partition.push(c);
            } else {
                partition.push(Elem::Vertex(v));
            }
        }
        head
    }

    fn component(&mut self, v: usize) -> Elem {
        let mut inner = Vec::new();
        for k in 0..self.succ[v].len() {
            let w = self.succ[v][k];
            if self.dfn[w] == 0 {
                self.visit(w, &mut inner);
            }
        }
        // Elements were added as they finished: the order is the reverse.
        inner.reverse();
        Elem::Component(v, inner)
    }
}

fn flatten(elems: &[Elem], out: &mut Vec<usize>) {
    for e in elems {
        match e {
            Elem::Vertex(v) => out.push(*v),
            Elem::Component(h, inner) => {
                out.push(*h);
                flatten(inner, out);
            }
        }
    }
}

/// The blocks reachable from `entry` in a weak topological order.
fn weak_topological_order(succ: &[Vec<usize>], entry: usize) -> Vec<usize> {
    let mut w = Wto {
        succ,
        dfn: vec![0; succ.len()],
        num: 0,
        stack: Vec::new(),
    };
    let mut partition = Vec::new();
    w.visit(entry, &mut partition);
    partition.reverse();
    let mut out = Vec::new();
    flatten(&partition, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(order: &[usize], b: usize) -> usize {
        order.iter().position(|&x| x == b).expect("block in order")
    }

    #[test]
    fn loop_blocks_come_before_the_loop_exit_whichever_successor_is_listed_first() {
        // 0 → 1 (head); 1 → {3 exit, 2 body}; 2 → 1; 3 → 4.
        for succ1 in [vec![3, 2], vec![2, 3]] {
            let succ = vec![vec![1], succ1, vec![1], vec![4], vec![]];
            let o = weak_topological_order(&succ, 0);
            assert_eq!(o.len(), 5);
            assert!(pos(&o, 1) < pos(&o, 2) && pos(&o, 2) < pos(&o, 3), "{o:?}");
        }
    }

    #[test]
    fn a_join_comes_after_both_arms_even_when_one_arm_is_laid_out_last() {
        // 0 → {1 join?, 2 out-of-line arm}; 2 → 1; 1 → 3.
        let succ = vec![vec![1, 2], vec![3], vec![1], vec![]];
        let o = weak_topological_order(&succ, 0);
        assert!(pos(&o, 2) < pos(&o, 1), "{o:?}");
    }

    #[test]
    fn nested_loops_keep_the_inner_loop_inside_the_outer() {
        // 0 → 1 (outer head) → 2 (inner head) → {3 inner body, 4 after inner}; 3 → 2; 4 → {1, 5}.
        let succ = vec![vec![1], vec![2], vec![4, 3], vec![2], vec![5, 1], vec![]];
        let o = weak_topological_order(&succ, 0);
        assert!(
            pos(&o, 2) < pos(&o, 3) && pos(&o, 3) < pos(&o, 4) && pos(&o, 4) < pos(&o, 5),
            "{o:?}"
        );
    }
}
