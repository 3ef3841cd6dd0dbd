//! Asynchronous warpgroup mma: `mma_async_*_wg` / [`mma_commit`] / [`mma_wait`] and
//! [`mma_wait_acc`], the author in control of how many mma groups stay in flight (sm_90a's
//! `wgmma.mma_async`, `wgmma.commit_group`, `wgmma.wait_group N`).
//!
//! A K loop that overlaps the tensor cores with the next stage's copy keeps one group in
//! flight: the mma of step k reads stage k % 2 while the warps fill the other stage, which the
//! mma of step k − 1 read and `mma_wait::<1>` has released.
//!
//! ```
//! use tilekit::dsl::*;
//!
//! #[tilekit::kernel(warps = 4)]
//! fn gemm_async(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
//!     let a_s: SharedArray<St<bf16, 64, 64>, 2> = alloc_shared();
//!     let b_s: SharedArray<St<bf16, 64, 64>, 2> = alloc_shared();
//!     let (tn, tm) = (block_idx_x(), block_idx_y());
//!     let mut acc: Rt<f32, 16, 64> = zeros();
//!     for kt in range(0, ceil_div(a.cols(), 64)) {
//!         let s = kt % 2;
//!         copy_block(a_s.at(s), a.tile(tm, kt));
//!         copy_block(b_s.at(s), b.tile(kt, tn));
//!         barrier();
//!         acc = mma_async_ab_wg(acc, a_s.at(s), b_s.at(s));
//!         mma_commit();
//!         mma_wait::<1>(); // the mma of step kt − 1 is done: its stage may be refilled
//!         barrier(); // every warp's is
//!     }
//!     let acc = mma_wait_acc::<0, _>(acc); // the last mma is done: acc may be read
//!     store(c.tile(tm * 4 + warp_idx(), tn), acc);
//! }
//! # tilekit::ir::verify(gemm_async::module()).unwrap();
//! ```
//!
//! The accumulator an `mma_async_*_wg` returns is *in flight*: it may be passed to another
//! `mma_async_*_wg` as `acc`, carried round a loop and handed to [`mma_wait_acc`], whose
//! result is readable; any other use before that is a verifier error, and on the interpreter
//! so is a wait that does not cover the mma. Its shared operands must not be overwritten
//! before a wait covers the mma either. The shapes are those of one wgmma per 16 of K: A the
//! group's shared `64×K` (16 rows of `acc` per warp), N up to 256, A and B in canonical
//! swizzled layouts (rows of 32, 64 or 128 bytes with the matching swizzle, or whole 128-byte
//! pieces). On targets without wgmma the mma runs synchronously and the commit and wait are
//! nothing, which the IR's semantics allow.

use super::dtype::{Dtype, MmaPair};
use super::handles::{Handle, Row, Rt, St, SwizzleKind};
use super::trace::rec;
use crate::ir::{MmaVariant, Value};

/// The group's shared A has 4× the rows (or for Aᵀ the columns) of each warp's accumulator.
struct GroupRows<const WHOLE: usize, const PART: usize>;
impl<const WHOLE: usize, const PART: usize> GroupRows<WHOLE, PART> {
    const OK: () = assert!(
        WHOLE == 4 * PART,
        "at warpgroup scope the shared A has 4× the rows of each warp's accumulator"
    );
}

#[track_caller]
fn issue<const M: usize, const N: usize>(
    v: MmaVariant,
    acc: Rt<f32, M, N>,
    a: Value,
    b2: Value,
) -> Rt<f32, M, N> {
    Rt::from_value(rec!(|b| b.mma_async(v, a, b2, acc.value())))
}

macro_rules! mma_async_fns {
    ($($(#[$doc:meta])* $name:ident(a: St<TA, $ar:ident, $ac:ident, ZA>, b: St<TB, $br:ident, $bc:ident, ZB>) = $v:ident;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name<
            const M: usize,
            const N: usize,
            const K: usize,
            const GM: usize,
            TA: MmaPair<TB>,
            TB: Dtype,
            ZA: SwizzleKind,
            ZB: SwizzleKind,
        >(
            acc: Rt<f32, M, N>,
            a: St<TA, $ar, $ac, ZA>,
            b: St<TB, $br, $bc, ZB>,
        ) -> Rt<f32, M, N> {
            let () = GroupRows::<GM, M>::OK;
            issue(MmaVariant::$v, acc, a.value(), b.value())
        }
    )*};
}

mma_async_fns! {
    /// Issues `acc + A·B` asynchronously: `acc` this warp's `M×N` quarter (M = 16), A the
    /// group's shared `GM×K` tile (GM = 4·M), B the group's shared `K×N` tile. The result is
    /// in flight until [`mma_wait_acc`] retires it.
    mma_async_ab_wg(a: St<TA, GM, K, ZA>, b: St<TB, K, N, ZB>) = AB;
    /// Issues `acc + A·Bᵀ` asynchronously: B the group's shared `N×K` tile.
    mma_async_abt_wg(a: St<TA, GM, K, ZA>, b: St<TB, N, K, ZB>) = ABt;
    /// Issues `acc + Aᵀ·B` asynchronously: A the group's shared `K×GM` tile.
    mma_async_atb_wg(a: St<TA, K, GM, ZA>, b: St<TB, K, N, ZB>) = AtB;
    /// Issues `acc + Aᵀ·Bᵀ` asynchronously.
    mma_async_atbt_wg(a: St<TA, K, GM, ZA>, b: St<TB, N, K, ZB>) = AtBt;
}

/// Closes this warp's open mma group (every warp of the warpgroup runs it). A step that issues
/// no mma still commits, so that [`mma_wait`] counts steps.
#[track_caller]
pub fn mma_commit() {
    rec!(|b| b.mma_commit())
}

/// Waits until every committed mma group of this warp except the `PENDING` most recent has
/// completed: their shared operands may be overwritten (after a barrier, by other warps).
/// Accumulators are read through [`mma_wait_acc`].
#[track_caller]
pub fn mma_wait<const PENDING: u32>() {
    rec!(|b| {
        b.mma_wait(PENDING, &[]);
    })
}

/// [`mma_wait`], returning the accumulators `acc` (a tile or a tuple of tiles) readable: each
/// must come from an `mma_async` in a group this wait completes.
#[track_caller]
pub fn mma_wait_acc<const PENDING: u32, A: Accumulators>(acc: A) -> A {
    let vals = acc.values();
    let out = rec!(|b| b.mma_wait(PENDING, &vals));
    A::from_values(&out)
}

/// Accumulators [`mma_wait_acc`] retires: an f32 row tile or a tuple of them.
pub trait Accumulators: Copy {
    fn values(self) -> Vec<Value>;
    fn from_values(v: &[Value]) -> Self;
}

impl<const M: usize, const N: usize> Accumulators for Rt<f32, M, N, Row> {
    fn values(self) -> Vec<Value> {
        vec![self.value()]
    }
    fn from_values(v: &[Value]) -> Self {
        Rt::from_value(v[0])
    }
}

impl<const M1: usize, const N1: usize, const M2: usize, const N2: usize> Accumulators
    for (Rt<f32, M1, N1, Row>, Rt<f32, M2, N2, Row>)
{
    fn values(self) -> Vec<Value> {
        vec![self.0.value(), self.1.value()]
    }
    fn from_values(v: &[Value]) -> Self {
        (Rt::from_value(v[0]), Rt::from_value(v[1]))
    }
}
