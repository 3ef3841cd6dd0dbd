//! Semaphores: `sem.init`, `sem.arrive`, `sem.expect`, `sem.wait`; register reallocation:
//! `setmaxnreg`.

use super::expect::OpCx;
use super::VerifyErrorKind;
use crate::ops::OpKind;

/// The largest arrival count and transaction byte count of a phase: an mbarrier's counts are
/// 20-bit (PTX ISA, "Size and alignment of mbarrier object": count range [1, 2^20 - 1], tx-count
/// range [-(2^20 - 1), 2^20 - 1]), and every lowering must be able to hold them.
pub const SEM_COUNT_MAX: u32 = (1 << 20) - 1;

/// `sem.init[n] (s)` with 1 ≤ n ≤ 2^20 − 1, `sem.arrive (s)`, `sem.expect[b] (s)` with
/// 1 ≤ b ≤ 2^20 − 1, `sem.wait (s, parity)` with an i32 parity.
pub(super) fn check(cx: &mut OpCx<'_, '_>) {
    let s = cx.operand(0);
    cx.expect_semaphore("s", s);
    match cx.op.kind {
        OpKind::SemInit(n) if n == 0 || n > SEM_COUNT_MAX => {
            cx.report(VerifyErrorKind::Attribute {
                what: "arrival count n".into(),
                expected: format!(
                    "1 <= n <= {SEM_COUNT_MAX} (a phase completes after n arrivals; mbarrier counts are 20-bit)"
                ),
                found: n.to_string(),
            })
        }
        OpKind::SemExpect(b) if b == 0 || b > SEM_COUNT_MAX => {
            cx.report(VerifyErrorKind::Attribute {
                what: "byte count b".into(),
                expected: format!("1 <= b <= {SEM_COUNT_MAX} (mbarrier transaction counts are 20-bit)"),
                found: b.to_string(),
            })
        }
        OpKind::SemWait => {
            let parity = cx.operand(1);
            cx.expect_i32("parity", parity);
        }
        _ => {}
    }
}

/// The register counts `setmaxnreg` takes (PTX ISA, "setmaxnreg": the count is in the range 24
/// to 256, both inclusive, and a multiple of 8).
pub const SETMAXNREG_RANGE: std::ops::RangeInclusive<u32> = 24..=256;

/// `setmaxnreg.{inc,dec}[n]` with n a multiple of 8 in [`SETMAXNREG_RANGE`]. That every warp
/// of the warpgroup executes it, and that the warpgroups' counts fit the block's registers, are
/// checked over the whole kernel (`verify/registers.rs`; the interpreter's collective check
/// covers the runs the verifier cannot read).
pub(super) fn check_setmaxnreg(cx: &mut OpCx<'_, '_>, count: u32) {
    if !SETMAXNREG_RANGE.contains(&count) || count % 8 != 0 {
        cx.report(VerifyErrorKind::Attribute {
            what: "register count n".into(),
            expected: format!(
                "a multiple of 8 in {}..={} (PTX's setmaxnreg)",
                SETMAXNREG_RANGE.start(),
                SETMAXNREG_RANGE.end()
            ),
            found: count.to_string(),
        })
    }
}
