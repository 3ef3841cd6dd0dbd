//! Semaphores: `sem.init`, `sem.arrive`, `sem.expect`, `sem.wait`.

use super::expect::OpCx;
use super::VerifyErrorKind;
use crate::ops::OpKind;

/// `sem.init[n] (s)` with n ≥ 1, `sem.arrive (s)`, `sem.expect[b] (s)` with b ≥ 1,
/// `sem.wait (s, parity)` with an i32 parity.
pub(super) fn check(cx: &mut OpCx<'_, '_>) {
    let s = cx.operand(0);
    cx.expect_semaphore("s", s);
    match cx.op.kind {
        OpKind::SemInit(0) => cx.report(VerifyErrorKind::Attribute {
            what: "arrival count n".into(),
            expected: "n >= 1 (a phase completes after n arrivals)".into(),
            found: "0".into(),
        }),
        OpKind::SemExpect(0) => cx.report(VerifyErrorKind::Attribute {
            what: "byte count b".into(),
            expected: "b >= 1".into(),
            found: "0".into(),
        }),
        OpKind::SemWait => {
            let parity = cx.operand(1);
            cx.expect_i32("parity", parity);
        }
        _ => {}
    }
}
