//! Device-side checks: [`device_assert`].
//!
//! On the CPU interpreter a false condition stops the launch with
//! `InterpError::AssertFailed`, naming the message, the block, the warp and (for a tile or
//! vector condition) the first false element. On NVIDIA targets the first failing lane writes
//! an [`assert_record`](crate::ir::assert_record) (message, block, thread) to memory the host
//! can read after the trap, fences at system scope and executes `trap`: a CUDA device points
//! the record at host-mapped pinned memory (a trapped context's device memory can no longer be
//! read) and the emulator device at an allocation of its own, and both name the message, block
//! and thread in the launch error (the emulator adds the trap's PTX line, warp and lanes). On
//! AMD targets the lane executes `s_trap`.
//!
//! ```
//! use tilekit::dsl::*;
//!
//! #[tilekit::kernel]
//! fn positive_only(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
//!     let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
//!     device_assert(t.ge(0.0), "x must not be negative");
//!     store(y.tile(0, 0), t.sqrt());
//! }
//! # tilekit::ir::verify(positive_only::module()).unwrap();
//! ```

use super::handles::{Register, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::trace::rec;

/// Conditions [`device_assert`] takes: a `Scalar<bool>`, or a bool tile or vector (every element
/// must hold).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a condition",
    note = "device_assert takes a `Scalar<bool>` or a bool mask (`t.ge(0.0)`)"
)]
pub trait AssertCond: Register {}
impl AssertCond for Scalar<bool> {}
impl<const R: usize, const C: usize, L: TileLayout> AssertCond for Rt<bool, R, C, L> {}
impl<const N: usize, A: VecAlong> AssertCond for Rv<bool, N, A> {}

/// Stops the kernel with an error naming `message` where `cond` is false.
#[track_caller]
pub fn device_assert<C: AssertCond>(cond: C, message: &str) {
    rec!(|b| b.device_assert(cond.value(), message))
}
