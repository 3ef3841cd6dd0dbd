//! How many operands, results and regions each op takes.

use std::fmt;

use crate::ops::OpKind;

/// A number of operands or results an op accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Count {
    Exactly(usize),
    AtLeast(usize),
    /// Any number; the op's own checks relate it to something else (a `for`'s results to its
    /// initial values, a call's arguments to the callee's parameters).
    Any,
}

impl Count {
    pub(super) fn accepts(self, n: usize) -> bool {
        match self {
            Count::Exactly(k) => n == k,
            Count::AtLeast(k) => n >= k,
            Count::Any => true,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Exactly(k) => write!(f, "{k}"),
            Count::AtLeast(k) => write!(f, "at least {k}"),
            Count::Any => f.write_str("any number"),
        }
    }
}

/// The shape of an op's operand list, result list and regions.
#[derive(Clone, Copy, Debug)]
pub(super) struct Signature {
    pub operands: Count,
    /// The operands as the op table writes them, such as `(dst, src, idx…)`.
    pub operand_names: &'static str,
    pub results: Count,
    pub regions: usize,
}

const fn sig(
    operands: Count,
    operand_names: &'static str,
    results: usize,
    regions: usize,
) -> Signature {
    Signature {
        operands,
        operand_names,
        results: Count::Exactly(results),
        regions,
    }
}

/// The signature of `kind`, from the op table of the crate documentation.
pub(super) fn signature(kind: &OpKind) -> Signature {
    use Count::{AtLeast, Exactly};
    match kind {
        OpKind::Const(_)
        | OpKind::BlockIdx(_)
        | OpKind::GridDim(_)
        | OpKind::WarpIdx
        | OpKind::WarpgroupIdx
        | OpKind::NumWarps
        | OpKind::Fill(_)
        | OpKind::Iota(_)
        | OpKind::AllocShared => sig(Exactly(0), "()", 1, 0),
        OpKind::GlobalDim(_) => sig(Exactly(1), "(g)", 1, 0),
        OpKind::Splat => sig(Exactly(1), "(s)", 1, 0),
        OpKind::Unary(_) | OpKind::Convert => sig(Exactly(1), "(x)", 1, 0),
        OpKind::Binary(_) | OpKind::Cmp(_) => sig(Exactly(2), "(x, y)", 1, 0),
        OpKind::Select => sig(Exactly(3), "(c, x, y)", 1, 0),
        OpKind::Transpose => sig(Exactly(1), "(t)", 1, 0),
        OpKind::Bitcast => sig(Exactly(1), "(x)", 1, 0),
        OpKind::Bcast(..) => sig(Exactly(2), "(t, v)", 1, 0),
        OpKind::Reduce(..) => sig(Exactly(1), "(x)", 1, 0),
        OpKind::Scan { .. } => sig(Exactly(1), "(t)", 1, 0),
        OpKind::SortRow { .. } => sig(Exactly(2), "(t, idx)", 2, 0),
        OpKind::TopkRow(_) => sig(Exactly(4), "(t, idx, best, best_idx)", 2, 0),
        OpKind::Mask(..) => sig(Exactly(3), "(t, a, b)", 1, 0),
        OpKind::Mma(_) | OpKind::MmaAsync(_) => sig(Exactly(3), "(a, b, c)", 1, 0),
        OpKind::MmaCommit | OpKind::SetMaxNReg { .. } => sig(Exactly(0), "()", 0, 0),
        // As many results as operands (checked with the types in `mma::check_wait`).
        OpKind::MmaWait(_) => Signature {
            results: Count::Any,
            ..sig(Count::Any, "(acc…)", 0, 0)
        },
        OpKind::SharedIndex => sig(Exactly(2), "(arr, i)", 1, 0),
        OpKind::Load => sig(AtLeast(1), "(src, idx…)", 1, 0),
        OpKind::Store => sig(AtLeast(2), "(dst, x, idx…)", 0, 0),
        OpKind::Copy => sig(AtLeast(2), "(dst, src, idx…)", 0, 0),
        OpKind::CopyAsync => sig(AtLeast(3), "(dst, src, sem, idx…)", 0, 0),
        OpKind::CopyStart => sig(AtLeast(2), "(dst, src, idx…)", 0, 0),
        OpKind::CopyCommit | OpKind::CopyWait(_) => sig(Exactly(0), "()", 0, 0),
        OpKind::GatherRows => sig(Exactly(3), "(g, idx, j)", 1, 0),
        OpKind::ScatterRows { .. } => sig(Exactly(4), "(g, t, idx, j)", 0, 0),
        OpKind::Gather => sig(AtLeast(2), "(g, idx…)", 1, 0),
        OpKind::TableView => sig(Exactly(2), "(table, i)", 1, 0),
        OpKind::AtomicAdd => sig(AtLeast(2), "(g, x, idx…)", 0, 0),
        OpKind::AtomicRmw(_) => sig(AtLeast(2), "(g, x, idx…)", 1, 0),
        OpKind::AtomicCas => sig(AtLeast(3), "(g, cmp, x, idx…)", 1, 0),
        OpKind::Philox => sig(Exactly(6), "(k0, k1, c0, c1, c2, c3)", 4, 0),
        OpKind::DeviceAssert(_) => sig(Exactly(1), "(c)", 0, 0),
        OpKind::Barrier => sig(Exactly(0), "()", 0, 0),
        OpKind::SemInit(_) | OpKind::SemArrive | OpKind::SemExpect(_) => {
            sig(Exactly(1), "(s)", 0, 0)
        }
        OpKind::SemWait => sig(Exactly(2), "(s, parity)", 0, 0),
        OpKind::For => Signature {
            results: Count::Any,
            ..sig(AtLeast(3), "(lo, hi, step, init…)", 0, 1)
        },
        OpKind::If => Signature {
            results: Count::Any,
            ..sig(Exactly(1), "(c)", 0, 2)
        },
        OpKind::While => Signature {
            results: Count::Any,
            ..sig(Count::Any, "(init…)", 0, 2)
        },
        OpKind::Yield | OpKind::Return => sig(Count::Any, "(v…)", 0, 0),
        OpKind::Condition => sig(AtLeast(1), "(c, v…)", 0, 0),
        OpKind::Call(_) => Signature {
            results: Count::Any,
            ..sig(Count::Any, "(args…)", 0, 0)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_and_describe() {
        assert!(Count::Exactly(2).accepts(2));
        assert!(!Count::Exactly(2).accepts(3));
        assert!(Count::AtLeast(2).accepts(5));
        assert!(!Count::AtLeast(2).accepts(1));
        assert!(Count::Any.accepts(0));
        assert_eq!(Count::AtLeast(3).to_string(), "at least 3");
    }

    #[test]
    fn control_flow_ops_have_regions_and_others_none() {
        assert_eq!(signature(&OpKind::For).regions, 1);
        assert_eq!(signature(&OpKind::If).regions, 2);
        assert_eq!(signature(&OpKind::While).regions, 2);
        assert_eq!(signature(&OpKind::Load).regions, 0);
    }
}
