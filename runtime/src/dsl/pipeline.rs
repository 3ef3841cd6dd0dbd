//! Multistage copy pipelines: `copy_start` / `copy_commit` / `copy_wait`.
//!
//! A ring of `N` shared stages keeps `N − 1` stages in flight while the tensor cores work on
//! the current one (CUTLASS's sm80 multistage mainloop):
//!
//! ```
//! use tilekit::dsl::*;
//!
//! #[tilekit::kernel(warps = 4)]
//! fn sum_tiles<const N: usize>(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
//!     let ring: SharedArray<St<f32, 64, 16>, N> = alloc_shared();
//!     let tiles = ceil_div(x.rows(), 64);
//!     // Prologue: N − 1 stages (tiles past the view are masked: zeros).
//!     for s in 0..N - 1 {
//!         copy_start(ring.at(s), x.tile(s, 0));
//!         copy_commit();
//!     }
//!     let mut acc: Rt<f32, 16, 16> = zeros();
//!     for kt in range(0, tiles) {
//!         copy_wait(N - 2); // this warp's copies of stage kt have landed
//!         barrier(); // everyone's have, and every warp is done with stage kt − 1
//!         let next = kt + (N - 1) as i32;
//!         copy_start(ring.at(next % N as i32), x.tile(next, 0)); // into the slot just freed
//!         copy_commit(); // one group per step, empty or not, keeps the count right
//!         let t: Rt<f32, 16, 16> = load(ring.at(kt % N as i32).tile(warp_idx(), 0));
//!         acc = acc + t;
//!     }
//!     copy_wait(0);
//!     store(y.tile(block_idx_x() * 4 + warp_idx(), 0), acc);
//! }
//! # tilekit::ir::verify(sum_tiles::<3>::module()).unwrap();
//! ```
//!
//! Reading a stage before a `copy_wait` that covers its copy, or starting a copy into a stage
//! whose earlier copy has not been waited, is an error on the interpreter. On sm_80 and sm_90a
//! the ops are `cp.async.cg`, `cp.async.commit_group` and `cp.async.wait_group N`; on AMD the
//! copy is synchronous and the other two are nothing.

use super::dtype::Dtype;
use super::handles::{St, SwizzleKind};
use super::ops::{CopyFrom, GlAt};
use super::trace::rec;
use crate::ir::Scope;

/// Starts an asynchronous copy of a global tile into a shared tile, split among the block's
/// warps (every warp must reach it), in each warp's open copy group. Elements outside the view
/// land as zeros, as with [`copy_block`](super::copy_block). The tile may be read once a
/// [`copy_wait`] has covered the group and a [`barrier`](super::barrier) has followed it.
#[track_caller]
pub fn copy_start<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind, const M: bool>(
    dst: St<T, R, C, Z>,
    src: GlAt<T, M>,
) {
    let ops = dst.operands(&src);
    rec!(|b| b.copy_start(Scope::Block, ops[0], ops[1], &ops[2..]))
}

/// Closes this warp's open copy group (every warp of the block runs it). A step that starts no
/// copy still commits, so that [`copy_wait`] counts stages.
#[track_caller]
pub fn copy_commit() {
    rec!(|b| b.copy_commit(Scope::Block))
}

/// Waits until every committed copy group of this warp except the `pending` most recent has
/// landed (every warp of the block runs it). Other warps' copies are visible after the next
/// [`barrier`](super::barrier). `pending` is a build-time count (a Rust value, so that a ring's
/// `STAGES - 2` can be written in a generic kernel).
#[track_caller]
pub fn copy_wait(pending: usize) {
    let n = u32::try_from(pending).unwrap_or(u32::MAX);
    rec!(|b| b.copy_wait(Scope::Block, n))
}
