//! Counter-based random numbers: Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
//! numbers: as easy as 1, 2, 3", SC'11), as PyTorch and Triton use for dropout.
//!
//! A Philox draw is a pure function of a key (the seed) and a 128-bit counter, so every element
//! of a tile gets its own counter (e.g. its global linear index) and the numbers do not depend
//! on how many warps or blocks the work is split over. [`philox`] gives the four raw words;
//! [`rand_uniform`] and [`rand_normal`] turn them into f32.
//!
//! `philox` is one IR op rather than DSL arithmetic: each round needs the high word of a
//! 32×32-bit product, which the IR's u32 maps (wrapping, values held exactly only up to 2⁵³ in
//! the interpreter) cannot express, while the lowering emits `mul.wide.u32` (NVIDIA) or
//! `v_mul_hi_u32` (AMD) for it directly.
//!
//! ```
//! use tilekit::dsl::*;
//!
//! /// y = x where a uniform draw is at least p, else 0 (unscaled dropout).
//! #[tilekit::kernel]
//! fn dropout(x: Gl<f32, 2>, seed: Scalar<u32>, p: Scalar<f32>, y: GlMut<f32, 2>) {
//!     let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
//!     let idx: Rt<u32, 16, 16> = iota_rows::<Rt<u32, 16, 16>>() * 16u32 + iota_cols();
//!     let u = rand_uniform((seed, lit(0u32)), lit(0u32), idx);
//!     store(y.tile(0, 0), select(u.ge(p), t, 0.0));
//! }
//! # tilekit::ir::verify(dropout::module()).unwrap();
//! ```

use super::arith::{convert, select, Map};
use super::handles::{Handle, Register, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::ops::{fill, splat};
use super::trace::rec;

/// What [`philox`] counters may be: `Scalar<u32>`, or u32 tiles or vectors (one counter per
/// element).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a Philox counter",
    note = "counters are `Scalar<u32>`, `Rt<u32, ..>` or `Rv<u32, ..>`"
)]
pub trait PhiloxWord: Register<Elem = u32> {}
impl PhiloxWord for Scalar<u32> {}
impl<const R: usize, const C: usize, L: TileLayout> PhiloxWord for Rt<u32, R, C, L> {}
impl<const N: usize, A: VecAlong> PhiloxWord for Rv<u32, N, A> {}

/// The four Philox-4x32-10 output words for key `key` and counter `ctr`, per element.
#[track_caller]
pub fn philox<H: PhiloxWord>(key: (Scalar<u32>, Scalar<u32>), ctr: [H; 4]) -> [H; 4] {
    let c = ctr.map(|c| c.value());
    let r = rec!(|b| b.philox([key.0.value(), key.1.value()], c));
    r.map(H::from_value)
}

/// 2⁻²⁴: a 24-bit integer times this is an f32 in [0, 1), exactly.
const TWO_M24: f64 = 1.0 / 16_777_216.0;

/// Uniform f32 in [0, 1) from a word: its top 24 bits times 2⁻²⁴ (exact, so every device gives
/// the same bits).
#[track_caller]
fn unit<const R: usize, const C: usize, L: TileLayout>(w: Rt<u32, R, C, L>) -> Rt<f32, R, C, L> {
    let top: Rt<u32, R, C, L> = w >> 8u32;
    let f: Rt<f32, R, C, L> = convert(top);
    f * TWO_M24
}

/// One uniform f32 in [0, 1) per element: word 0 of Philox at key `key`, counter
/// `(ctr, offset, 0, 0)`. Give each element its own `ctr` (e.g. its global linear index) and
/// each call site or step its own `offset`.
#[track_caller]
pub fn rand_uniform<const R: usize, const C: usize, L: TileLayout>(
    key: (Scalar<u32>, Scalar<u32>),
    offset: Scalar<u32>,
    ctr: Rt<u32, R, C, L>,
) -> Rt<f32, R, C, L> {
    let zero: Rt<u32, R, C, L> = fill(0.0);
    let [w0, _, _, _] = philox(key, [ctr, splat(offset), zero, zero]);
    unit(w0)
}

/// One standard normal f32 per element (Box–Muller on words 0 and 1 of Philox at key `key`,
/// counter `(ctr, offset, 0, 0)`): `√(−2 ln u₁) · cos(2π u₂)` with u₁ in (0, 1], u₂ in [0, 1).
/// The logarithm is the target's (`lg2.approx` on NVIDIA), so devices agree to about 1e-6
/// relative, not bit for bit.
#[track_caller]
pub fn rand_normal<const R: usize, const C: usize, L: TileLayout>(
    key: (Scalar<u32>, Scalar<u32>),
    offset: Scalar<u32>,
    ctr: Rt<u32, R, C, L>,
) -> Rt<f32, R, C, L> {
    let zero: Rt<u32, R, C, L> = fill(0.0);
    let [w0, w1, _, _] = philox(key, [ctr, splat(offset), zero, zero]);
    // 1 − u keeps u₁ away from 0, where ln diverges.
    let u1 = 1.0 - unit(w0);
    let u2 = unit(w1);
    let r = (u1.log() * -2.0).sqrt();
    r * cos_2pi(u2)
}

/// cos(2πu) for u in [0, 1): reduced to cos(x) with x = 2π·b, b in [0, ¼], and a Taylor
/// polynomial in x² to x¹² (error below 1e-8 there, under f32 rounding).
#[track_caller]
fn cos_2pi<const R: usize, const C: usize, L: TileLayout>(u: Rt<f32, R, C, L>) -> Rt<f32, R, C, L> {
    // cos(2πu) = −cos(2πt) with t = u − ½ in [−½, ½); by symmetry only a = |t| matters, and
    // cos(2πa) = −cos(2π(½ − a)) folds a into b = min(a, ½ − a) in [0, ¼].
    let a = (u - 0.5).abs();
    let b = a.min(0.5 - a);
    let far = a.gt(0.25);
    let x = b * std::f64::consts::TAU;
    let y = x * x;
    let mut p: Rt<f32, R, C, L> = fill(1.0 / 479_001_600.0);
    for k in [
        -1.0 / 3_628_800.0,
        1.0 / 40_320.0,
        -1.0 / 720.0,
        1.0 / 24.0,
        -0.5,
        1.0,
    ] {
        p = p * y + k;
    }
    // cos(2πu) = −cos(2πa) = −(far ? −cos x : cos x).
    select(far, p, -p)
}
