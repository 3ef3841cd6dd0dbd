//! Reinterpreting bits: `x.bitcast::<U>()` reads a scalar, tile or vector's elements as another
//! dtype of the same width (f32, i32 and u32; bf16 and f16; i8 and the fp8 types), as RNG and
//! hashing code needs. A dtype of another width is a verifier error naming both.

use super::dtype::{Dtype, RegDtype};
use super::handles::{Handle, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::trace::rec;

#[track_caller]
fn bitcast<X: Handle, To: Handle>(x: X) -> To {
    To::from_value(rec!(|b| b.bitcast(x.value(), To::ir_type())))
}

impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Rt<T, R, C, L> {
    /// The same bits as dtype `U` (same width), same shape and layout.
    #[track_caller]
    pub fn bitcast<U: RegDtype>(self) -> Rt<U, R, C, L> {
        bitcast(self)
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> Rv<T, N, A> {
    /// The same bits as dtype `U` (same width).
    #[track_caller]
    pub fn bitcast<U: RegDtype>(self) -> Rv<U, N, A> {
        bitcast(self)
    }
}
impl<T: Dtype> Scalar<T> {
    /// The same bits as dtype `U` (same width).
    #[track_caller]
    pub fn bitcast<U: Dtype>(self) -> Scalar<U> {
        bitcast(self)
    }
}
