//! Elementwise maps, Rust operators, comparisons, `select` and conversions.

use std::ops;

use super::dtype::{Dtype, Literal, RegDtype};
use super::handles::{Handle, Register, Rt, Rv, Scalar, TileLayout, VecAlong};
use super::trace::rec;
use crate::ir::{BinaryFn, CmpPred, UnaryFn, Value};

/// The right-hand side of a binary map on `H`: a value of type `H`, a [`Scalar`] of `H`'s dtype,
/// or a Rust literal (`x * 0.5`, `i + 1`), which becomes a constant of that dtype.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be combined with `{H}` in an elementwise op",
    label = "expected `{H}`, a `Scalar` of its dtype, or a literal",
    note = "both sides of a map must have the same shape, layout and dtype; convert with `.cast::<T>()` or `convert`"
)]
pub trait Operand<H: Register>: Copy {
    /// The IR value (building a constant for a literal).
    #[track_caller]
    fn operand(self) -> Value;
}

impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Operand<Rt<T, R, C, L>>
    for Rt<T, R, C, L>
{
    fn operand(self) -> Value {
        self.value()
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> Operand<Rv<T, N, A>> for Rv<T, N, A> {
    fn operand(self) -> Value {
        self.value()
    }
}
impl<T: Dtype> Operand<Scalar<T>> for Scalar<T> {
    fn operand(self) -> Value {
        self.value()
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Operand<Rt<T, R, C, L>>
    for Scalar<T>
{
    fn operand(self) -> Value {
        self.value()
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> Operand<Rv<T, N, A>> for Scalar<T> {
    fn operand(self) -> Value {
        self.value()
    }
}
macro_rules! literal_operand {
    ($($lit:ty),*) => {$(
        impl<H: Register> Operand<H> for $lit where $lit: Literal<H::Elem> {
            #[track_caller]
            fn operand(self) -> Value {
                lit::<H::Elem>(self).value()
            }
        }
    )*};
}
literal_operand!(f32, f64, i32, u32, usize, i64, bool);

/// A constant scalar of dtype `T`: `lit::<f32>(0.5)`.
#[track_caller]
pub fn lit<T: Dtype>(v: impl Literal<T>) -> Scalar<T> {
    Scalar::from_value(rec!(|b| b.constant(v.konst(), T::SCALAR)))
}

#[track_caller]
pub(crate) fn binary<H: Register>(f: BinaryFn, x: H, y: impl Operand<H>) -> H {
    let y = y.operand();
    H::from_value(rec!(|b| b.binary(f, x.value(), y)))
}

#[track_caller]
pub(crate) fn unary<H: Register>(f: UnaryFn, x: H) -> H {
    H::from_value(rec!(|b| b.unary(f, x.value())))
}

macro_rules! std_ops {
    ($($tr:ident $m:ident $f:ident),*) => {$(
        impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout, Y: Operand<Self>> ops::$tr<Y> for Rt<T, R, C, L> {
            type Output = Self;
            #[track_caller]
            fn $m(self, y: Y) -> Self { binary(BinaryFn::$f, self, y) }
        }
        impl<T: RegDtype, const N: usize, A: VecAlong, Y: Operand<Self>> ops::$tr<Y> for Rv<T, N, A> {
            type Output = Self;
            #[track_caller]
            fn $m(self, y: Y) -> Self { binary(BinaryFn::$f, self, y) }
        }
        impl<T: Dtype, Y: Operand<Self>> ops::$tr<Y> for Scalar<T> {
            type Output = Self;
            #[track_caller]
            fn $m(self, y: Y) -> Self { binary(BinaryFn::$f, self, y) }
        }
    )*};
}
std_ops!(Add add Add, Sub sub Sub, Mul mul Mul, Div div Div, Rem rem Rem, BitAnd bitand And,
    BitOr bitor Or, BitXor bitxor Xor, Shl shl Shl, Shr shr Shr);

macro_rules! assign_ops {
    ($($tr:ident $m:ident $op:tt),*) => {$(
        impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout, Y: Operand<Self>> ops::$tr<Y> for Rt<T, R, C, L> {
            #[track_caller]
            fn $m(&mut self, y: Y) { *self = *self $op y; }
        }
        impl<T: RegDtype, const N: usize, A: VecAlong, Y: Operand<Self>> ops::$tr<Y> for Rv<T, N, A> {
            #[track_caller]
            fn $m(&mut self, y: Y) { *self = *self $op y; }
        }
        impl<T: Dtype, Y: Operand<Self>> ops::$tr<Y> for Scalar<T> {
            #[track_caller]
            fn $m(&mut self, y: Y) { *self = *self $op y; }
        }
    )*};
}
assign_ops!(AddAssign add_assign +, SubAssign sub_assign -, MulAssign mul_assign *, DivAssign div_assign /);

impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> ops::Neg for Rt<T, R, C, L> {
    type Output = Self;
    #[track_caller]
    fn neg(self) -> Self {
        unary(UnaryFn::Neg, self)
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> ops::Neg for Rv<T, N, A> {
    type Output = Self;
    #[track_caller]
    fn neg(self) -> Self {
        unary(UnaryFn::Neg, self)
    }
}
impl<T: Dtype> ops::Neg for Scalar<T> {
    type Output = Self;
    #[track_caller]
    fn neg(self) -> Self {
        unary(UnaryFn::Neg, self)
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> ops::Not for Rt<T, R, C, L> {
    type Output = Self;
    #[track_caller]
    fn not(self) -> Self {
        unary(UnaryFn::Not, self)
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> ops::Not for Rv<T, N, A> {
    type Output = Self;
    #[track_caller]
    fn not(self) -> Self {
        unary(UnaryFn::Not, self)
    }
}
impl<T: Dtype> ops::Not for Scalar<T> {
    type Output = Self;
    #[track_caller]
    fn not(self) -> Self {
        unary(UnaryFn::Not, self)
    }
}

/// Elementwise functions as methods of scalars, tiles and vectors (`x.exp()`, `t.max(u)`).
/// The float-only ones (`exp` … `sigmoid`, `pow`) need a float dtype: the verifier reports them
/// on integers.
pub trait Map: Register {
    #[track_caller]
    fn exp(self) -> Self {
        unary(UnaryFn::Exp, self)
    }
    #[track_caller]
    fn exp2(self) -> Self {
        unary(UnaryFn::Exp2, self)
    }
    #[track_caller]
    fn log(self) -> Self {
        unary(UnaryFn::Log, self)
    }
    #[track_caller]
    fn log2(self) -> Self {
        unary(UnaryFn::Log2, self)
    }
    #[track_caller]
    fn abs(self) -> Self {
        unary(UnaryFn::Abs, self)
    }
    #[track_caller]
    fn relu(self) -> Self {
        unary(UnaryFn::Relu, self)
    }
    #[track_caller]
    fn silu(self) -> Self {
        unary(UnaryFn::Silu, self)
    }
    #[track_caller]
    fn gelu_tanh(self) -> Self {
        unary(UnaryFn::GeluTanh, self)
    }
    #[track_caller]
    fn sqrt(self) -> Self {
        unary(UnaryFn::Sqrt, self)
    }
    #[track_caller]
    fn rsqrt(self) -> Self {
        unary(UnaryFn::Rsqrt, self)
    }
    #[track_caller]
    fn recip(self) -> Self {
        unary(UnaryFn::Recip, self)
    }
    #[track_caller]
    fn tanh(self) -> Self {
        unary(UnaryFn::Tanh, self)
    }
    #[track_caller]
    fn sigmoid(self) -> Self {
        unary(UnaryFn::Sigmoid, self)
    }
    #[track_caller]
    fn max(self, y: impl Operand<Self>) -> Self {
        binary(BinaryFn::Max, self, y)
    }
    #[track_caller]
    fn min(self, y: impl Operand<Self>) -> Self {
        binary(BinaryFn::Min, self, y)
    }
    #[track_caller]
    fn pow(self, y: impl Operand<Self>) -> Self {
        binary(BinaryFn::Pow, self, y)
    }
}
impl<H: Register> Map for H {}

impl<T: Dtype> Scalar<T> {
    #[track_caller]
    fn cmp(self, p: CmpPred, y: impl Operand<Self>) -> Scalar<bool> {
        let y = y.operand();
        Scalar::from_value(rec!(|b| b.cmp(p, self.value(), y)))
    }
    /// `self < y`.
    #[track_caller]
    pub fn lt(self, y: impl Operand<Self>) -> Scalar<bool> {
        self.cmp(CmpPred::Lt, y)
    }
    /// `self <= y`.
    #[track_caller]
    pub fn le(self, y: impl Operand<Self>) -> Scalar<bool> {
        self.cmp(CmpPred::Le, y)
    }
    /// `self > y`.
    #[track_caller]
    pub fn gt(self, y: impl Operand<Self>) -> Scalar<bool> {
        self.cmp(CmpPred::Gt, y)
    }
    /// `self >= y`.
    #[track_caller]
    pub fn ge(self, y: impl Operand<Self>) -> Scalar<bool> {
        self.cmp(CmpPred::Ge, y)
    }
    /// `self == y`.
    #[track_caller]
    pub fn eq(self, y: impl Operand<Self>) -> Scalar<bool> {
        self.cmp(CmpPred::Eq, y)
    }
    /// `self != y`.
    #[track_caller]
    pub fn ne(self, y: impl Operand<Self>) -> Scalar<bool> {
        self.cmp(CmpPred::Ne, y)
    }
    /// Converts to another dtype (round to nearest even; ints and fp8 saturate).
    #[track_caller]
    pub fn cast<U: Dtype>(self) -> Scalar<U> {
        convert(self)
    }
}

/// `c ? x : y`: `c` a `Scalar<bool>` (one choice for the whole value) or a bool mask of `x`'s
/// shape from a comparison (`t.gt(0.0)`), choosing per element; `y` may be a scalar or a literal
/// (`select(t.gt(0.0), t, 0.0)`). Only the chosen element is read: a NaN in the other is dropped.
#[track_caller]
pub fn select<H: Register>(c: impl super::compare::SelectMask<H>, x: H, y: impl Operand<H>) -> H {
    let (c, y) = (c.mask(), y.operand());
    H::from_value(rec!(|b| b.select(c, x.value(), y)))
}

/// Conversions between dtypes (and, for tiles, layouts) of the same kind and shape.
#[diagnostic::on_unimplemented(
    message = "cannot convert `{Self}` to `{To}`",
    note = "convert keeps the kind and shape: Rt<T, R, C, L> → Rt<U, R, C, L2>, Rv<T, N, A> → Rv<U, N, A>, Scalar<T> → Scalar<U>"
)]
pub trait ConvertTo<To: Handle>: Handle {}
impl<T: RegDtype, U: RegDtype, const R: usize, const C: usize, L: TileLayout, L2: TileLayout>
    ConvertTo<Rt<U, R, C, L2>> for Rt<T, R, C, L>
{
}
impl<T: RegDtype, U: RegDtype, const N: usize, A: VecAlong> ConvertTo<Rv<U, N, A>> for Rv<T, N, A> {}
impl<T: Dtype, U: Dtype> ConvertTo<Scalar<U>> for Scalar<T> {}

/// Converts `x` to the type the context asks for (another dtype, and for tiles possibly
/// another layout): `let b: Rt<bf16, 16, 64, Col> = convert(acc);`.
#[track_caller]
pub fn convert<To: Handle, X: ConvertTo<To>>(x: X) -> To {
    To::from_value(rec!(|b| b.convert(x.value(), To::ir_type())))
}

impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Rt<T, R, C, L> {
    /// The same tile in dtype `U` (same layout); no op when `U` is `T`.
    #[track_caller]
    pub fn cast<U: RegDtype>(self) -> Rt<U, R, C, L> {
        if U::SCALAR == T::SCALAR {
            // Each dtype has one Rust type, so this is the same type.
            return Rt::from_value(self.value());
        }
        convert(self)
    }
    /// The same tile in layout `L2`.
    #[track_caller]
    pub fn relayout<L2: TileLayout>(self) -> Rt<T, R, C, L2> {
        convert(self)
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> Rv<T, N, A> {
    /// The same vector in dtype `U`.
    #[track_caller]
    pub fn cast<U: RegDtype>(self) -> Rv<U, N, A> {
        convert(self)
    }
}

/// `xᵀ`: `Rt<T, R, C, L>` → `Rt<T, C, R, L>`.
#[track_caller]
pub fn transpose<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    x: Rt<T, R, C, L>,
) -> Rt<T, C, R, L> {
    Rt::from_value(rec!(|b| b.transpose(x.value())))
}
