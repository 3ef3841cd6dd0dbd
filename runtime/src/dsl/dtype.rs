//! Element types: zero-sized markers for the types Rust lacks, Rust's own types for the rest.

use std::fmt::Debug;

use crate::ir::{Const, ScalarType};

/// An element type of Tile IR. Implemented by the markers [`bf16`], [`f16`](struct@f16), [`f8e4m3`],
/// [`f8e5m2`] and by Rust's `f32`, `i32`, `u32`, `i64`, `i8` and `bool`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Tile IR element type",
    label = "not a dtype",
    note = "dtypes are f32, bf16, f16, f8e4m3, f8e5m2, i8, i32, u32, i64 and bool"
)]
pub trait Dtype: Copy + Debug + Default + Send + Sync + 'static {
    /// The IR's element type.
    const SCALAR: ScalarType;
}

/// Element types that register tiles and vectors may hold (every dtype but `i64`).
#[diagnostic::on_unimplemented(
    message = "register tiles and vectors cannot hold `{Self}` elements",
    note = "register tiles and vectors hold f32, bf16, f16, f8e4m3, f8e5m2, i8, i32, u32 or bool"
)]
pub trait RegDtype: Dtype {}

/// Floating-point dtypes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a floating-point dtype",
    note = "float literals (`1.0`) and float-only maps need f32, bf16, f16 or fp8 elements; an integer dtype takes integer literals (`1`)"
)]
pub trait FloatDtype: RegDtype {}

/// Integer dtypes.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an integer dtype",
    note = "integer literals (`1`) and integer-only maps need i32, u32, i8 or i64 elements; a float dtype takes float literals (`1.0`)"
)]
pub trait IntDtype: Dtype {}

/// Pairs of dtypes the tensor cores multiply: bf16·bf16, f16·f16, fp8·fp8 (either format), and
/// f32·f32, which multiplies in **tf32**: each element of A and B is rounded to 10 fraction bits
/// (nearest, ties away from zero, as `cvt.rna.tf32.f32` does) and the products accumulate in
/// f32, as Triton's `tl.dot` does on f32 inputs by default (relative error of a product up to
/// about 2^-10; see `tilekit::ir::tf32`). The interpreter rounds the same way, so the CPU and
/// the GPU agree. Keep f32 precision by not using `mma` for such products.
#[diagnostic::on_unimplemented(
    message = "tensor cores do not multiply `{Self}` by `{B}`",
    label = "A and B of an mma must be both bf16, both f16, both fp8, or both f32 (tf32)",
    note = "convert the operands with `.cast::<bf16>()` first"
)]
pub trait MmaPair<B: Dtype>: Dtype {}

macro_rules! marker {
    ($($(#[$m:meta])* $name:ident => $st:ident;)*) => {$(
        $(#[$m])*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name;
        impl Dtype for $name { const SCALAR: ScalarType = ScalarType::$st; }
        impl RegDtype for $name {}
        impl FloatDtype for $name {}
    )*};
}

marker! {
    /// bfloat16 (8 exponent bits, 7 mantissa bits).
    bf16 => BF16;
    /// IEEE half precision.
    f16 => F16;
    /// 8-bit float E4M3 (no infinities, max ±448).
    f8e4m3 => F8E4M3;
    /// 8-bit float E5M2.
    f8e5m2 => F8E5M2;
}

impl Dtype for f32 {
    const SCALAR: ScalarType = ScalarType::F32;
}
impl RegDtype for f32 {}
impl FloatDtype for f32 {}

macro_rules! int_dtype {
    ($($t:ty => $st:ident, $reg:tt;)*) => {$(
        impl Dtype for $t { const SCALAR: ScalarType = ScalarType::$st; }
        impl IntDtype for $t {}
        int_dtype!(@reg $t, $reg);
    )*};
    (@reg $t:ty, yes) => { impl RegDtype for $t {} };
    (@reg $t:ty, no) => {};
}

int_dtype! {
    i32 => I32, yes;
    u32 => U32, yes;
    i8 => I8, yes;
    i64 => I64, no;
}

impl Dtype for bool {
    const SCALAR: ScalarType = ScalarType::Bool;
}
impl RegDtype for bool {}

impl MmaPair<bf16> for bf16 {}
impl MmaPair<f16> for f16 {}
impl MmaPair<f32> for f32 {}
impl MmaPair<f8e4m3> for f8e4m3 {}
impl MmaPair<f8e5m2> for f8e4m3 {}
impl MmaPair<f8e4m3> for f8e5m2 {}
impl MmaPair<f8e5m2> for f8e5m2 {}

/// Rust values usable as constants of dtype `T` in DSL expressions (`x * 0.5`, `i + 1`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a constant of dtype `{T}`",
    note = "float literals work with float dtypes, integer literals with integer dtypes"
)]
pub trait Literal<T: Dtype>: Copy {
    /// The constant attribute.
    fn konst(self) -> Const;
}

macro_rules! lit {
    ($bound:ident: $($t:ty => $variant:ident),*) => {$(
        impl<T: $bound> Literal<T> for $t {
            fn konst(self) -> Const { Const::$variant(self as _) }
        }
    )*};
}
lit!(FloatDtype: f32 => Float, f64 => Float);
lit!(IntDtype: i32 => Int, u32 => Int, usize => Int, i64 => Int);

impl Literal<bool> for bool {
    fn konst(self) -> Const {
        Const::Bool(self)
    }
}
