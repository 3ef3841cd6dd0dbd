//! Typed handles over IR values: the shapes, dtypes and layouts are in the Rust types.

use std::fmt;
use std::marker::PhantomData;

use super::dtype::{Dtype, RegDtype};
use crate::ir::{Layout, ScalarType, Swizzle, Type, Value, VecAxis};

/// A typed IR value. Every DSL handle implements it.
pub trait Handle: Copy {
    /// The IR type of every value of this Rust type.
    fn ir_type() -> Type;
    /// The IR value.
    fn value(self) -> Value;
    /// Wraps an IR value known to have [`Handle::ir_type`].
    fn from_value(v: Value) -> Self;
}

/// Register values (scalars, tiles, vectors): what maps, `select` and control flow carry.
pub trait Register: Handle {
    /// The element dtype.
    type Elem: Dtype;
}

/// Register tile layouts: [`Row`] or [`Col`].
#[diagnostic::on_unimplemented(message = "`{Self}` is not a tile layout (expected `Row` or `Col`)")]
pub trait TileLayout: Copy + fmt::Debug + Default + 'static {
    const LAYOUT: Layout;
}
/// Row-major register tile layout (the default; what `mma` A operands and accumulators use).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Row;
/// Column-major register tile layout (what `mma_ab` takes for B).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Col;
impl TileLayout for Row {
    const LAYOUT: Layout = Layout::Row;
}
impl TileLayout for Col {
    const LAYOUT: Layout = Layout::Col;
}

/// Which tile axis a register vector runs along: [`Rows`] (one element per row) or [`Cols`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a vector axis (expected `Rows` or `Cols`)"
)]
pub trait VecAlong: Copy + fmt::Debug + Default + 'static {
    const AXIS: VecAxis;
}
/// One element per tile row (what `row_sum` returns, what `bcast_row` takes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rows;
/// One element per tile column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cols;
impl VecAlong for Rows {
    const AXIS: VecAxis = VecAxis::Rows;
}
impl VecAlong for Cols {
    const AXIS: VecAxis = VecAxis::Cols;
}

/// Shared tile swizzles: [`Auto`] (the widest pattern the row width allows), [`NoSwizzle`],
/// [`Swz32`], [`Swz64`], [`Swz128`].
pub trait SwizzleKind: Copy + fmt::Debug + Default + 'static {
    fn swizzle(dtype: ScalarType, cols: usize) -> Swizzle;
}
macro_rules! swz {
    ($($(#[$m:meta])* $name:ident => $s:ident),*) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;
        impl SwizzleKind for $name {
            fn swizzle(_: ScalarType, _: usize) -> Swizzle { Swizzle::$s }
        }
    )*};
}
swz!(
    /// No swizzle.
    NoSwizzle => None,
    /// 32-byte swizzle.
    Swz32 => B32,
    /// 64-byte swizzle.
    Swz64 => B64,
    /// 128-byte swizzle (what TMA and wgmma expect for 128-byte rows).
    Swz128 => B128
);
/// The widest swizzle whose pattern fits the tile's row width in bytes (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Auto;
impl SwizzleKind for Auto {
    fn swizzle(dtype: ScalarType, cols: usize) -> Swizzle {
        match cols * dtype.size_bytes() as usize {
            b if b % 128 == 0 => Swizzle::B128,
            b if b % 64 == 0 => Swizzle::B64,
            b if b % 32 == 0 => Swizzle::B32,
            _ => Swizzle::None,
        }
    }
}

/// Shape rules checked when a type is used (a compile error at the monomorphization that breaks
/// them: "evaluation of constant value failed" naming the rule).
struct Shape<const A: usize, const B: usize>;
impl<const A: usize, const B: usize> Shape<A, B> {
    const TILE: () = assert!(
        A > 0 && B > 0 && A % 16 == 0 && B % 16 == 0,
        "tile rows and columns must be positive multiples of 16"
    );
    const VECTOR: () = assert!(
        A > 0 && A % 16 == 0,
        "vector lengths must be positive multiples of 16"
    );
    const RANK: () = assert!(A >= 1 && A <= 4, "global views have rank 1 to 4");
}

fn u32_of(n: usize) -> u32 {
    // Shapes are small compile-time constants (asserted multiples of 16 of plausible sizes).
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A register tile: `R × C` elements of `T` held by one warp, in layout `L` ([`Row`] or
/// [`Col`]). R and C are multiples of 16 (a compile error otherwise).
pub struct Rt<T: RegDtype, const R: usize, const C: usize, L: TileLayout = Row> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> (T, L)>,
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Clone for Rt<T, R, C, L> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> Copy for Rt<T, R, C, L> {}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> fmt::Debug for Rt<T, R, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// A register vector of `N` elements along axis `A` ([`Rows`] or [`Cols`]).
pub struct Rv<T: RegDtype, const N: usize, A: VecAlong = Rows> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> (T, A)>,
}
impl<T: RegDtype, const N: usize, A: VecAlong> Clone for Rv<T, N, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> Copy for Rv<T, N, A> {}
impl<T: RegDtype, const N: usize, A: VecAlong> fmt::Debug for Rv<T, N, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// A shared tile of `R × C` elements, swizzled as `Z` says (default [`Auto`]).
pub struct St<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind = Auto> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> (T, Z)>,
}
impl<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind> Clone for St<T, R, C, Z> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind> Copy for St<T, R, C, Z> {}
impl<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind> fmt::Debug for St<T, R, C, Z> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// A shared vector of `N` elements.
pub struct Sv<T: Dtype, const N: usize> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> T>,
}
impl<T: Dtype, const N: usize> Clone for Sv<T, N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Dtype, const N: usize> Copy for Sv<T, N> {}
impl<T: Dtype, const N: usize> fmt::Debug for Sv<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// A read-only view of a global tensor of rank `RANK` (shape and strides given at launch).
pub struct Gl<T: Dtype, const RANK: usize> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> T>,
}
impl<T: Dtype, const RANK: usize> Clone for Gl<T, RANK> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Dtype, const RANK: usize> Copy for Gl<T, RANK> {}
impl<T: Dtype, const RANK: usize> fmt::Debug for Gl<T, RANK> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// A writable view of a global tensor of rank `RANK` (shape and strides given at launch).
pub struct GlMut<T: Dtype, const RANK: usize> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> T>,
}
impl<T: Dtype, const RANK: usize> Clone for GlMut<T, RANK> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Dtype, const RANK: usize> Copy for GlMut<T, RANK> {}
impl<T: Dtype, const RANK: usize> fmt::Debug for GlMut<T, RANK> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// A runtime scalar, uniform across the warp. Rust operators build IR maps; comparisons are
/// methods (`lt`, `le`, `gt`, `ge`, `eq`, `ne`) returning `Scalar<bool>`.
pub struct Scalar<T: Dtype> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> T>,
}
impl<T: Dtype> Clone for Scalar<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: Dtype> Copy for Scalar<T> {}
impl<T: Dtype> fmt::Debug for Scalar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// `N` shared objects of one kind (shared tiles, shared vectors or semaphores), indexed at run
/// time with [`SharedArray::at`].
pub struct SharedArray<E: Shared, const N: usize> {
    pub(crate) v: Value,
    _p: PhantomData<fn() -> E>,
}
impl<E: Shared, const N: usize> Clone for SharedArray<E, N> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E: Shared, const N: usize> Copy for SharedArray<E, N> {}
impl<E: Shared, const N: usize> fmt::Debug for SharedArray<E, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} %{}", Self::ir_type(), self.v.0)
    }
}

/// A semaphore in shared memory.
#[derive(Clone, Copy)]
pub struct Sem {
    v: Value,
}
impl fmt::Debug for Sem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sem %{}", self.v.0)
    }
}

/// Objects that live in shared memory and may be allocated with [`alloc_shared`](super::alloc_shared).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a shared-memory type",
    note = "shared memory holds St, Sv, Sem and SharedArray of them"
)]
pub trait Shared: Handle {}

macro_rules! handle_impl {
    (impl<$($g:ident: $gb:path),* ; $(const $c:ident),*> $t:ty => |$($arg:ident),*| $ty:expr; $($extra:tt)*) => {
        impl<$($g: $gb,)* $(const $c: usize),*> Handle for $t {
            fn ir_type() -> Type {
                $($extra)*
                $ty
            }
            fn value(self) -> Value { self.v }
            fn from_value(v: Value) -> Self { Self { v, _p: PhantomData } }
        }
    };
}

handle_impl!(impl<T: RegDtype, L: TileLayout; const R, const C> Rt<T, R, C, L> => | |
    Type::tile(T::SCALAR, u32_of(R), u32_of(C), L::LAYOUT); let () = Shape::<R, C>::TILE;);
handle_impl!(impl<T: RegDtype, A: VecAlong; const N> Rv<T, N, A> => | |
    Type::vector(T::SCALAR, u32_of(N), A::AXIS); let () = Shape::<N, 16>::VECTOR;);
handle_impl!(impl<T: Dtype, Z: SwizzleKind; const R, const C> St<T, R, C, Z> => | |
    Type::shared_tile(T::SCALAR, u32_of(R), u32_of(C), Z::swizzle(T::SCALAR, C)); let () = Shape::<R, C>::TILE;);
handle_impl!(impl<T: Dtype; const N> Sv<T, N> => | |
    Type::shared_vector(T::SCALAR, u32_of(N)); let () = Shape::<N, 16>::VECTOR;);
handle_impl!(impl<T: Dtype; const RANK> Gl<T, RANK> => | |
    Type::global(T::SCALAR, u32_of(RANK), false); let () = Shape::<RANK, 0>::RANK;);
handle_impl!(impl<T: Dtype; const RANK> GlMut<T, RANK> => | |
    Type::global(T::SCALAR, u32_of(RANK), true); let () = Shape::<RANK, 0>::RANK;);
handle_impl!(impl<T: Dtype;> Scalar<T> => | | Type::scalar(T::SCALAR););
handle_impl!(impl<E: Shared; const N> SharedArray<E, N> => | | Type::shared_array(E::ir_type(), u32_of(N)););

impl Handle for Sem {
    fn ir_type() -> Type {
        Type::Semaphore
    }
    fn value(self) -> Value {
        self.v
    }
    fn from_value(v: Value) -> Self {
        Sem { v }
    }
}

impl<T: RegDtype, L: TileLayout, const R: usize, const C: usize> Register for Rt<T, R, C, L> {
    type Elem = T;
}
impl<T: RegDtype, A: VecAlong, const N: usize> Register for Rv<T, N, A> {
    type Elem = T;
}
impl<T: Dtype> Register for Scalar<T> {
    type Elem = T;
}
impl<T: Dtype, Z: SwizzleKind, const R: usize, const C: usize> Shared for St<T, R, C, Z> {}
impl<T: Dtype, const N: usize> Shared for Sv<T, N> {}
impl Shared for Sem {}
impl<E: Shared, const N: usize> Shared for SharedArray<E, N> {}
