//! Elementwise comparisons of tiles and vectors into bool masks, the masks [`select`] takes,
//! and arithmetic with a literal or [`Scalar`] on the left (`1.0 - t`, `2.0 * v`).
//!
//! ```
//! use tilekit::dsl::*;
//!
//! #[tilekit::kernel]
//! fn clamp_negatives(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
//!     let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
//!     let positive = t.gt(0.0);                      // Rt<bool, 16, 16>
//!     store(y.tile(0, 0), select(positive, 1.0 - t, 0.0));
//! }
//! # tilekit::ir::verify(clamp_negatives::module()).unwrap();
//! ```
//!
//! [`select`]: super::select

use std::ops;

use super::arith::Operand;
use super::dtype::{FloatDtype, IntDtype, RegDtype};
use super::handles::{Handle, Register, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::trace::rec;
use crate::ir::{BinaryFn, CmpPred, Value};

#[track_caller]
fn compare<H: Register, M: Handle>(p: CmpPred, x: H, y: Value) -> M {
    M::from_value(rec!(|b| b.cmp(p, x.value(), y)))
}

macro_rules! compare_methods {
    ($mask:ty) => {
        /// `self < y` per element (a bool mask; NaN compares false).
        #[track_caller]
        pub fn lt(self, y: impl Operand<Self>) -> $mask {
            compare(CmpPred::Lt, self, y.operand())
        }
        /// `self <= y` per element.
        #[track_caller]
        pub fn le(self, y: impl Operand<Self>) -> $mask {
            compare(CmpPred::Le, self, y.operand())
        }
        /// `self > y` per element.
        #[track_caller]
        pub fn gt(self, y: impl Operand<Self>) -> $mask {
            compare(CmpPred::Gt, self, y.operand())
        }
        /// `self >= y` per element.
        #[track_caller]
        pub fn ge(self, y: impl Operand<Self>) -> $mask {
            compare(CmpPred::Ge, self, y.operand())
        }
        /// `self == y` per element.
        #[track_caller]
        pub fn eq(self, y: impl Operand<Self>) -> $mask {
            compare(CmpPred::Eq, self, y.operand())
        }
        /// `self != y` per element (true where either side is NaN).
        #[track_caller]
        pub fn ne(self, y: impl Operand<Self>) -> $mask {
            compare(CmpPred::Ne, self, y.operand())
        }
    };
}

impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Rt<T, R, C, L> {
    compare_methods!(Rt<bool, R, C, L>);
}
impl<T: RegDtype, const N: usize, A: VecAlong> Rv<T, N, A> {
    compare_methods!(Rv<bool, N, A>);
}

/// A tile or vector by reference is the same operand (`t.lt(&u)`, `t + &u`).
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Operand<Rt<T, R, C, L>>
    for &Rt<T, R, C, L>
{
    fn operand(self) -> Value {
        self.value()
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> Operand<Rv<T, N, A>> for &Rv<T, N, A> {
    fn operand(self) -> Value {
        self.value()
    }
}

/// The condition of [`select`](super::select) for values of type `H`: a `Scalar<bool>` (one
/// choice for the whole value) or a bool mask of `H`'s shape and layout (one choice per element).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot choose between values of type `{H}`",
    label = "expected `Scalar<bool>` or a bool mask of the same shape as `{H}`",
    note = "a mask comes from a comparison of values of `{H}`'s shape: `t.gt(0.0)`, `t.lt(u)`"
)]
pub trait SelectMask<H: Register>: Copy {
    /// The condition's IR value.
    fn mask(self) -> Value;
}
impl<H: Register> SelectMask<H> for Scalar<bool> {
    fn mask(self) -> Value {
        self.value()
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> SelectMask<Rt<T, R, C, L>>
    for Rt<bool, R, C, L>
{
    fn mask(self) -> Value {
        self.value()
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> SelectMask<Rv<T, N, A>> for Rv<bool, N, A> {
    fn mask(self) -> Value {
        self.value()
    }
}

#[track_caller]
fn binary_left<H: Register>(f: BinaryFn, x: Value, y: H) -> H {
    H::from_value(rec!(|b| b.binary(f, x, y.value())))
}

/// `lit op h` and `scalar op h`, with the literal or scalar on the left: a float literal (`f32`)
/// with tiles, vectors and scalars of every float dtype, an integer literal (`i32`) with those
/// of every integer dtype (the literals a map takes on the right), and a [`Scalar`] with tiles
/// and vectors of its dtype.
macro_rules! left_ops {
    ($($tr:ident $m:ident $f:ident),*) => {$(
        left_ops!(@literal f32, FloatDtype, $tr $m $f);
        left_ops!(@literal i32, IntDtype, $tr $m $f);
        impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> ops::$tr<Rt<T, R, C, L>>
            for Scalar<T>
        {
            type Output = Rt<T, R, C, L>;
            #[track_caller]
            fn $m(self, y: Rt<T, R, C, L>) -> Self::Output {
                binary_left(BinaryFn::$f, self.value(), y)
            }
        }
        impl<T: RegDtype, const N: usize, A: VecAlong> ops::$tr<Rv<T, N, A>> for Scalar<T> {
            type Output = Rv<T, N, A>;
            #[track_caller]
            fn $m(self, y: Rv<T, N, A>) -> Self::Output {
                binary_left(BinaryFn::$f, self.value(), y)
            }
        }
    )*};
    (@literal $lit:ty, $kind:ident, $tr:ident $m:ident $f:ident) => {
        impl<T: $kind + RegDtype, const R: usize, const C: usize, L: TileLayout>
            ops::$tr<Rt<T, R, C, L>> for $lit
        {
            type Output = Rt<T, R, C, L>;
            #[track_caller]
            fn $m(self, y: Rt<T, R, C, L>) -> Self::Output {
                binary_left(BinaryFn::$f, super::lit::<T>(self).value(), y)
            }
        }
        impl<T: $kind + RegDtype, const N: usize, A: VecAlong> ops::$tr<Rv<T, N, A>> for $lit {
            type Output = Rv<T, N, A>;
            #[track_caller]
            fn $m(self, y: Rv<T, N, A>) -> Self::Output {
                binary_left(BinaryFn::$f, super::lit::<T>(self).value(), y)
            }
        }
        impl<T: $kind> ops::$tr<Scalar<T>> for $lit {
            type Output = Scalar<T>;
            #[track_caller]
            fn $m(self, y: Scalar<T>) -> Self::Output {
                binary_left(BinaryFn::$f, super::lit::<T>(self).value(), y)
            }
        }
    };
}
left_ops!(Add add Add, Sub sub Sub, Mul mul Mul, Div div Div);
