//! The ops of Tile IR as typed functions: indices, creation, reductions and broadcasts, masks,
//! tensor-core mma, memory, synchronization.

use super::dtype::{Dtype, MmaPair, RegDtype};
use super::handles::{
    Col, Cols, Gl, GlMut, Handle, Register, Row, Rows, Rt, Rv, Scalar, Sem, Shared, SharedArray,
    St, Sv, SwizzleKind, TileLayout, VecAlong,
};
use super::trace::rec;
use crate::ir::{
    BcastAxis, BinaryFn, Dim3, MaskKind, MmaVariant, ReduceAxis, ReduceFn, Scope, Type, Value,
};

// ---- indices --------------------------------------------------------------------------------

macro_rules! index_fn {
    ($($(#[$m:meta])* $name:ident => |$b:ident| $e:expr;)*) => {$(
        $(#[$m])*
        #[track_caller]
        pub fn $name() -> Scalar<i32> {
            Scalar::from_value(rec!(|$b| $e))
        }
    )*};
}
index_fn! {
    /// This block's index along x (`block_idx.x`).
    block_idx_x => |b| b.block_idx(Dim3::X);
    /// This block's index along y.
    block_idx_y => |b| b.block_idx(Dim3::Y);
    /// This block's index along z.
    block_idx_z => |b| b.block_idx(Dim3::Z);
    /// Blocks in the grid along x (`grid_dim.x`).
    grid_dim_x => |b| b.grid_dim(Dim3::X);
    /// Blocks in the grid along y.
    grid_dim_y => |b| b.grid_dim(Dim3::Y);
    /// Blocks in the grid along z.
    grid_dim_z => |b| b.grid_dim(Dim3::Z);
    /// This warp's index in the block.
    warp_idx => |b| b.warp_idx();
    /// This warp's warpgroup (`warp_idx / 4`).
    warpgroup_idx => |b| b.warpgroup_idx();
    /// Warps per block.
    num_warps => |b| b.num_warps();
}

/// An i32 index operand: a `Scalar<i32>` or a Rust integer (a constant).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an index",
    label = "expected a `Scalar<i32>` or an integer",
    note = "indices are i32: convert other scalars with `.cast::<i32>()`"
)]
pub trait Idx: Copy {
    #[track_caller]
    fn idx(self) -> Value;
}
impl Idx for Scalar<i32> {
    fn idx(self) -> Value {
        self.value()
    }
}
macro_rules! int_idx {
    ($($t:ty),*) => {$(
        impl Idx for $t {
            #[track_caller]
            fn idx(self) -> Value {
                let v = i64::try_from(self).unwrap_or(i64::MAX);
                rec!(|b| b.constant(crate::ir::Const::Int(v), crate::ir::ScalarType::I32))
            }
        }
    )*};
}
int_idx!(i32, u32, usize);

/// `⌈n / tile⌉`: how many tiles of `tile` elements cover a runtime extent `n`, for loop bounds
/// and grids. Computed as `n / tile + (n % tile + tile − 1) / tile`, whose every step stays
/// within `n`'s magnitude, so it is exact for every i32 `n` (up to `i32::MAX`, and `0`); the
/// usual `(n + tile − 1) / tile` wraps for `n > i32::MAX − tile + 1` and gives a negative count,
/// so a loop over the tiles silently runs zero times.
///
/// # Panics
/// While building, when `tile` is 0 or above `i32::MAX` (a kernel's comptime tiling).
#[track_caller]
pub fn ceil_div(n: Scalar<i32>, tile: usize) -> Scalar<i32> {
    let t = match i32::try_from(tile) {
        Ok(t) if t >= 1 => t,
        _ => panic!("ceil_div: the tile must be in 1..=i32::MAX, got {tile}"),
    };
    if t == 1 {
        return n;
    }
    // `n % t` lies in (−t, t), so adding t − 1 cannot wrap; the second quotient is 1 exactly when
    // the remainder is positive (0 for an exact or negative n, where `/` already rounded up).
    n / t + (n % t + (t - 1)) / t
}

// ---- creation -------------------------------------------------------------------------------

/// Register tiles and vectors (what `fill`, `splat` and `iota` create).
#[diagnostic::on_unimplemented(message = "`{Self}` is not a register tile or vector")]
pub trait TileOrVec: Register {}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> TileOrVec for Rt<T, R, C, L> {}
impl<T: RegDtype, const N: usize, A: VecAlong> TileOrVec for Rv<T, N, A> {}

/// Every element `v` (rounded to the dtype): `let m: Rv<f32, 64> = fill(f64::NEG_INFINITY);`.
#[track_caller]
pub fn fill<H: TileOrVec>(v: f64) -> H {
    H::from_value(rec!(|b| b.fill(H::ir_type(), v)))
}

/// Every element zero.
#[track_caller]
pub fn zeros<H: TileOrVec>() -> H {
    fill(0.0)
}

/// Every element the runtime scalar `s`.
#[track_caller]
pub fn splat<H: TileOrVec>(s: Scalar<H::Elem>) -> H {
    H::from_value(rec!(|b| b.splat(H::ir_type(), s.value())))
}

/// Element = its row index (tiles) or its index (vectors).
#[track_caller]
pub fn iota_rows<H: TileOrVec>() -> H {
    H::from_value(rec!(|b| b.iota(H::ir_type(), BcastAxis::Row)))
}

/// Element = its column index.
#[track_caller]
pub fn iota_cols<T: RegDtype, const R: usize, const C: usize, L: TileLayout>() -> Rt<T, R, C, L> {
    Rt::from_value(rec!(|b| b.iota(Rt::<T, R, C, L>::ir_type(), BcastAxis::Col)))
}

// ---- reductions and broadcasts --------------------------------------------------------------

/// The binary functions of maps, broadcasts: `Bin::Add`, `Bin::Sub`, … (the IR's [`BinaryFn`]).
pub use crate::ir::BinaryFn as Bin;
/// The reduction functions: `Red::Sum`, `Red::Max`, `Red::Min`.
pub use crate::ir::ReduceFn as Red;

/// Reduces each row: `Rt<T, R, C, L>` → `Rv<T, R, Rows>`.
#[track_caller]
pub fn reduce_row<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: ReduceFn,
    t: Rt<T, R, C, L>,
) -> Rv<T, R, Rows> {
    Rv::from_value(rec!(|b| b.reduce(ReduceAxis::Row, f, t.value())))
}

/// Reduces each column: `Rt<T, R, C, L>` → `Rv<T, C, Cols>`.
#[track_caller]
pub fn reduce_col<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: ReduceFn,
    t: Rt<T, R, C, L>,
) -> Rv<T, C, Cols> {
    Rv::from_value(rec!(|b| b.reduce(ReduceAxis::Col, f, t.value())))
}

/// Reduces every element of a tile or vector to a scalar.
#[track_caller]
pub fn reduce_all<H: TileOrVec>(f: ReduceFn, x: H) -> Scalar<H::Elem> {
    Scalar::from_value(rec!(|b| b.reduce(ReduceAxis::All, f, x.value())))
}

macro_rules! reduce_shortcuts {
    ($($row:ident $col:ident $f:ident),*) => {$(
        /// Row reduction shortcut (see [`reduce_row`]).
        #[track_caller]
        pub fn $row<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(t: Rt<T, R, C, L>) -> Rv<T, R, Rows> {
            reduce_row(ReduceFn::$f, t)
        }
        /// Column reduction shortcut (see [`reduce_col`]).
        #[track_caller]
        pub fn $col<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(t: Rt<T, R, C, L>) -> Rv<T, C, Cols> {
            reduce_col(ReduceFn::$f, t)
        }
    )*};
}
reduce_shortcuts!(row_sum col_sum Sum, row_max col_max Max, row_min col_min Min);

/// `t[r][c] f v[r]`: `v` has one element per row of `t`.
#[track_caller]
pub fn bcast_row<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: BinaryFn,
    t: Rt<T, R, C, L>,
    v: Rv<T, R, Rows>,
) -> Rt<T, R, C, L> {
    Rt::from_value(rec!(|b| b.bcast(BcastAxis::Row, f, t.value(), v.value())))
}

/// `t[r][c] f v[c]`: `v` has one element per column of `t`.
#[track_caller]
pub fn bcast_col<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    f: BinaryFn,
    t: Rt<T, R, C, L>,
    v: Rv<T, C, Cols>,
) -> Rt<T, R, C, L> {
    Rt::from_value(rec!(|b| b.bcast(BcastAxis::Col, f, t.value(), v.value())))
}

macro_rules! bcast_shortcuts {
    ($($row:ident $col:ident $f:ident),*) => {$(
        /// Row broadcast shortcut (see [`bcast_row`]).
        #[track_caller]
        pub fn $row<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(t: Rt<T, R, C, L>, v: Rv<T, R, Rows>) -> Rt<T, R, C, L> {
            bcast_row(BinaryFn::$f, t, v)
        }
        /// Column broadcast shortcut (see [`bcast_col`]).
        #[track_caller]
        pub fn $col<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(t: Rt<T, R, C, L>, v: Rv<T, C, Cols>) -> Rt<T, R, C, L> {
            bcast_col(BinaryFn::$f, t, v)
        }
    )*};
}
bcast_shortcuts!(add_row add_col Add, sub_row sub_col Sub, mul_row mul_col Mul, div_row div_col Div,
    max_row max_col Max, min_row min_col Min);

// ---- masks ----------------------------------------------------------------------------------

/// Replaces element (r, c) with `v` where `col_off + c > row_off + r` (above the diagonal).
#[track_caller]
pub fn mask_causal<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
    row_off: impl Idx,
    col_off: impl Idx,
    v: f64,
) -> Rt<T, R, C, L> {
    mask(MaskKind::Causal, t, row_off, col_off, v)
}

/// Replaces element (r, c) with `v` where `col_off + c < row_off + r` (below the diagonal).
#[track_caller]
pub fn mask_anticausal<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
    row_off: impl Idx,
    col_off: impl Idx,
    v: f64,
) -> Rt<T, R, C, L> {
    mask(MaskKind::AntiCausal, t, row_off, col_off, v)
}

/// Replaces every element of row r with `v` where `row_off + r >= bound`.
#[track_caller]
pub fn mask_rows<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
    row_off: impl Idx,
    bound: impl Idx,
    v: f64,
) -> Rt<T, R, C, L> {
    mask(MaskKind::Rows, t, row_off, bound, v)
}

/// Replaces element (r, c) with `v` where `col_off + c >= bound`.
#[track_caller]
pub fn mask_cols<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    t: Rt<T, R, C, L>,
    col_off: impl Idx,
    bound: impl Idx,
    v: f64,
) -> Rt<T, R, C, L> {
    mask(MaskKind::Cols, t, col_off, bound, v)
}

#[track_caller]
fn mask<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    kind: MaskKind,
    t: Rt<T, R, C, L>,
    a: impl Idx,
    b2: impl Idx,
    v: f64,
) -> Rt<T, R, C, L> {
    let (a, b2) = (a.idx(), b2.idx());
    Rt::from_value(rec!(|b| b.mask(kind, v, t.value(), a, b2)))
}

// ---- tensor cores ---------------------------------------------------------------------------

#[track_caller]
fn mma_warp<const M: usize, const N: usize>(
    v: MmaVariant,
    acc: Rt<f32, M, N>,
    a: Value,
    b2: Value,
) -> Rt<f32, M, N> {
    Rt::from_value(rec!(|b| b.mma(v, a, b2, acc.value())))
}

/// `acc + A·B`: A `M×K` (row layout), B `K×N` (col layout), f32 accumulator `M×N`.
///
/// A and B are both bf16, both f16, both fp8 or both f32 ([`MmaPair`]); f32 operands multiply
/// in tf32 (each element rounded to 10 fraction bits, nearest with ties away from zero, on
/// every device, the interpreter included), as Triton's `tl.dot` does on f32 inputs. The same
/// holds for [`mma_abt`], [`mma_atb`] and [`mma_atbt`].
#[track_caller]
pub fn mma_ab<
    const M: usize,
    const N: usize,
    const K: usize,
    TA: RegDtype + MmaPair<TB>,
    TB: RegDtype,
>(
    acc: Rt<f32, M, N>,
    a: Rt<TA, M, K, Row>,
    b: Rt<TB, K, N, Col>,
) -> Rt<f32, M, N> {
    mma_warp(MmaVariant::AB, acc, a.value(), b.value())
}

/// `acc + A·Bᵀ`: A `M×K` (row), B `N×K` (row).
#[track_caller]
pub fn mma_abt<
    const M: usize,
    const N: usize,
    const K: usize,
    TA: RegDtype + MmaPair<TB>,
    TB: RegDtype,
>(
    acc: Rt<f32, M, N>,
    a: Rt<TA, M, K, Row>,
    b: Rt<TB, N, K, Row>,
) -> Rt<f32, M, N> {
    mma_warp(MmaVariant::ABt, acc, a.value(), b.value())
}

/// `acc + Aᵀ·B`: A `K×M` (col), B `K×N` (col).
#[track_caller]
pub fn mma_atb<
    const M: usize,
    const N: usize,
    const K: usize,
    TA: RegDtype + MmaPair<TB>,
    TB: RegDtype,
>(
    acc: Rt<f32, M, N>,
    a: Rt<TA, K, M, Col>,
    b: Rt<TB, K, N, Col>,
) -> Rt<f32, M, N> {
    mma_warp(MmaVariant::AtB, acc, a.value(), b.value())
}

/// `acc + Aᵀ·Bᵀ`: A `K×M` (col), B `N×K` (row).
#[track_caller]
pub fn mma_atbt<
    const M: usize,
    const N: usize,
    const K: usize,
    TA: RegDtype + MmaPair<TB>,
    TB: RegDtype,
>(
    acc: Rt<f32, M, N>,
    a: Rt<TA, K, M, Col>,
    b: Rt<TB, N, K, Row>,
) -> Rt<f32, M, N> {
    mma_warp(MmaVariant::AtBt, acc, a.value(), b.value())
}

/// Shape rules between a warpgroup's shared tile and one warp's quarter of it.
struct Quarter<const WHOLE: usize, const PART: usize>;
impl<const WHOLE: usize, const PART: usize> Quarter<WHOLE, PART> {
    const OK: () = assert!(
        WHOLE == 4 * PART,
        "at warpgroup scope the shared tile has 4× the rows of each warp's register tile"
    );
}

/// The A operand of a warpgroup mma whose op(A) is `M×K` per warp: this warp's rows in
/// registers (`Rt<T, M, K, Row>`), or the group's shared tile (`St<T, 4·M, K>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the A operand of a warpgroup mma with M = {M}, K = {K}",
    note = "A is this warp's Rt<T, M, K, Row> or the group's St<T, 4·M, K>"
)]
pub trait WgA<T: Dtype, const M: usize, const K: usize>: Handle {
    #[track_caller]
    fn check() {}
}
impl<T: RegDtype, const M: usize, const K: usize> WgA<T, M, K> for Rt<T, M, K, Row> {}
impl<T: Dtype, const SM: usize, const M: usize, const K: usize, Z: SwizzleKind> WgA<T, M, K>
    for St<T, SM, K, Z>
{
    fn check() {
        let () = Quarter::<SM, M>::OK;
    }
}

/// The A operand of a transposed warpgroup mma (op(A) = Aᵀ is `M×K` per warp): this warp's
/// `Rt<T, K, M, Col>` or the group's `St<T, K, 4·M>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not the A operand of a transposed warpgroup mma with M = {M}, K = {K}",
    note = "A is this warp's Rt<T, K, M, Col> or the group's St<T, K, 4·M>"
)]
pub trait WgAt<T: Dtype, const M: usize, const K: usize>: Handle {
    #[track_caller]
    fn check() {}
}
impl<T: RegDtype, const M: usize, const K: usize> WgAt<T, M, K> for Rt<T, K, M, Col> {}
impl<T: Dtype, const SM: usize, const M: usize, const K: usize, Z: SwizzleKind> WgAt<T, M, K>
    for St<T, K, SM, Z>
{
    fn check() {
        let () = Quarter::<SM, M>::OK;
    }
}

#[track_caller]
fn mma_wg<const M: usize, const N: usize>(
    v: MmaVariant,
    acc: Rt<f32, M, N>,
    a: Value,
    b2: Value,
) -> Rt<f32, M, N> {
    Rt::from_value(rec!(|b| b.mma_warpgroup(v, a, b2, acc.value())))
}

/// Writes out the warpgroup mma functions from one signature: `acc` is this warp's `M×N`
/// quarter; each entry gives the A operand's type and the function that checks and takes it
/// (`wg_a` or `wg_at`), B's type and the IR variant. (The warp-scope functions above stay
/// written out: the compile-fail expectations quote their signatures.)
macro_rules! mma_wg_fns {
    ($($(#[$doc:meta])* $name:ident(a: $a:ty => $check:ident, b: $b:ty) = $v:ident;)*) => {$(
        $(#[$doc])*
        #[track_caller]
        pub fn $name<
            const M: usize,
            const N: usize,
            const K: usize,
            TA: MmaPair<TB>,
            TB: Dtype,
            Z: SwizzleKind,
        >(
            acc: Rt<f32, M, N>,
            a: $a,
            b: $b,
        ) -> Rt<f32, M, N> {
            mma_wg(MmaVariant::$v, acc, $check(a), b.value())
        }
    )*};
}
mma_wg_fns! {
    /// Warpgroup `acc + A·B`: `acc` is this warp's `M×N` quarter, A see [`WgA`], B the group's
    /// shared `K×N` tile.
    mma_ab_wg(a: impl WgA<TA, M, K> => wg_a, b: St<TB, K, N, Z>) = AB;
    /// Warpgroup `acc + A·Bᵀ`: B the group's shared `N×K` tile.
    mma_abt_wg(a: impl WgA<TA, M, K> => wg_a, b: St<TB, N, K, Z>) = ABt;
    /// Warpgroup `acc + Aᵀ·B`: A see [`WgAt`], B the group's shared `K×N` tile.
    mma_atb_wg(a: impl WgAt<TA, M, K> => wg_at, b: St<TB, K, N, Z>) = AtB;
    /// Warpgroup `acc + Aᵀ·Bᵀ`: B the group's shared `N×K` tile.
    mma_atbt_wg(a: impl WgAt<TA, M, K> => wg_at, b: St<TB, N, K, Z>) = AtBt;
}

fn wg_a<T: Dtype, const M: usize, const K: usize, A: WgA<T, M, K>>(a: A) -> Value {
    A::check();
    a.value()
}

fn wg_at<T: Dtype, const M: usize, const K: usize, A: WgAt<T, M, K>>(a: A) -> Value {
    A::check();
    a.value()
}

// ---- global views ---------------------------------------------------------------------------

/// A place in a global view: the view and its indices (see the IR's *Memory* rules: element
/// indices for scalars; for tiles the last two are tile coordinates, for vectors the last is a
/// chunk index). `MUT`: whether it may be written.
#[derive(Clone, Copy, Debug)]
pub struct GlAt<T: Dtype, const MUT: bool> {
    g: Value,
    idx: [Value; 4],
    n: usize,
    _p: std::marker::PhantomData<fn() -> T>,
}

impl<T: Dtype, const MUT: bool> GlAt<T, MUT> {
    fn operands(&self) -> &[Value] {
        &self.idx[..self.n]
    }
}

/// A global view (read-only or writable) as a gather source.
pub trait View<T: Dtype>: Handle {}
impl<T: Dtype, const RANK: usize> View<T> for Gl<T, RANK> {}
impl<T: Dtype, const RANK: usize> View<T> for GlMut<T, RANK> {}

macro_rules! view_methods {
    ($view:ident, $mut:literal) => {
        impl<T: Dtype, const RANK: usize> $view<T, RANK> {
            /// The runtime size of dimension `k`.
            #[track_caller]
            pub fn dim(&self, k: u32) -> Scalar<i32> {
                Scalar::from_value(rec!(|b| b.dim(self.value(), k)))
            }
            #[track_caller]
            fn at_idx(&self, idx: &[Value]) -> GlAt<T, $mut> {
                let mut a = [Value(0); 4];
                a[..idx.len()].copy_from_slice(idx);
                GlAt {
                    g: self.value(),
                    idx: a,
                    n: idx.len(),
                    _p: std::marker::PhantomData,
                }
            }
        }
        impl<T: Dtype> $view<T, 1> {
            /// Elements (`len`).
            #[track_caller]
            pub fn len(&self) -> Scalar<i32> {
                self.dim(0)
            }
            /// Chunk `k` (a vector: elements `k·N ..`).
            #[track_caller]
            pub fn chunk(&self, k: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[k.idx()])
            }
            /// Element `i`.
            #[track_caller]
            pub fn at(&self, i: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[i.idx()])
            }
        }
        impl<T: Dtype> $view<T, 2> {
            /// Rows (dimension 0).
            #[track_caller]
            pub fn rows(&self) -> Scalar<i32> {
                self.dim(0)
            }
            /// Columns (dimension 1).
            #[track_caller]
            pub fn cols(&self) -> Scalar<i32> {
                self.dim(1)
            }
            /// Tile (i, j) in units of the register or shared tile it is loaded into.
            #[track_caller]
            pub fn tile(&self, i: impl Idx, j: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[i.idx(), j.idx()])
            }
            /// Row `i`, chunk `k` (a vector along the row).
            #[track_caller]
            pub fn chunk(&self, i: impl Idx, k: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[i.idx(), k.idx()])
            }
            /// Element (i, j).
            #[track_caller]
            pub fn at(&self, i: impl Idx, j: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[i.idx(), j.idx()])
            }
        }
        impl<T: Dtype> $view<T, 3> {
            /// Tile (i, j) of matrix `z`.
            #[track_caller]
            pub fn tile(&self, z: impl Idx, i: impl Idx, j: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[z.idx(), i.idx(), j.idx()])
            }
            /// Element (z, i, j).
            #[track_caller]
            pub fn at(&self, z: impl Idx, i: impl Idx, j: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[z.idx(), i.idx(), j.idx()])
            }
        }
        impl<T: Dtype> $view<T, 4> {
            /// Tile (i, j) of matrix (y, z).
            #[track_caller]
            pub fn tile(
                &self,
                y: impl Idx,
                z: impl Idx,
                i: impl Idx,
                j: impl Idx,
            ) -> GlAt<T, $mut> {
                self.at_idx(&[y.idx(), z.idx(), i.idx(), j.idx()])
            }
            /// Element (y, z, i, j).
            #[track_caller]
            pub fn at(&self, y: impl Idx, z: impl Idx, i: impl Idx, j: impl Idx) -> GlAt<T, $mut> {
                self.at_idx(&[y.idx(), z.idx(), i.idx(), j.idx()])
            }
        }
    };
}
view_methods!(Gl, false);
view_methods!(GlMut, true);

/// A place in a shared tile: sub-tile (i, j) in units of the register tile loaded or stored.
#[derive(Clone, Copy, Debug)]
pub struct StAt<T: Dtype> {
    s: Value,
    i: Value,
    j: Value,
    _p: std::marker::PhantomData<fn() -> T>,
}

impl<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind> St<T, R, C, Z> {
    /// Sub-tile (i, j), in units of the register tile it is loaded into or stored from.
    #[track_caller]
    pub fn tile(&self, i: impl Idx, j: impl Idx) -> StAt<T> {
        StAt {
            s: self.value(),
            i: i.idx(),
            j: j.idx(),
            _p: std::marker::PhantomData,
        }
    }
}

// ---- loads and stores -----------------------------------------------------------------------

/// What a register value may be loaded from.
#[diagnostic::on_unimplemented(
    message = "cannot load a `{Self}` from `{S}`",
    label = "no load from this source to this register type",
    note = "loads: Rt/Rv/Scalar from a global place of the same dtype (`g.tile(i, j)`, `g.chunk(..)`, `g.at(..)`), Rt from an St of the same dtype and shape or from `st.tile(i, j)`, Rv from an Sv of the same dtype and length"
)]
pub trait LoadFrom<S>: Handle {
    /// The source operands.
    fn operands(src: &S) -> Vec<Value>;
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout, const M: bool> LoadFrom<GlAt<T, M>>
    for Rt<T, R, C, L>
{
    fn operands(src: &GlAt<T, M>) -> Vec<Value> {
        [&[src.g], src.operands()].concat()
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong, const M: bool> LoadFrom<GlAt<T, M>> for Rv<T, N, A> {
    fn operands(src: &GlAt<T, M>) -> Vec<Value> {
        [&[src.g], src.operands()].concat()
    }
}
impl<T: Dtype, const M: bool> LoadFrom<GlAt<T, M>> for Scalar<T> {
    fn operands(src: &GlAt<T, M>) -> Vec<Value> {
        [&[src.g], src.operands()].concat()
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout, Z: SwizzleKind>
    LoadFrom<St<T, R, C, Z>> for Rt<T, R, C, L>
{
    fn operands(src: &St<T, R, C, Z>) -> Vec<Value> {
        vec![src.value()]
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> LoadFrom<StAt<T>>
    for Rt<T, R, C, L>
{
    fn operands(src: &StAt<T>) -> Vec<Value> {
        vec![src.s, src.i, src.j]
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> LoadFrom<Sv<T, N>> for Rv<T, N, A> {
    fn operands(src: &Sv<T, N>) -> Vec<Value> {
        vec![src.value()]
    }
}

/// Loads a register value from global or shared memory; its type says what is loaded:
/// `let a: Rt<bf16, 64, 16> = load(g.tile(i, k));`.
#[track_caller]
pub fn load<D: LoadFrom<S>, S>(src: S) -> D {
    let ops = D::operands(&src);
    D::from_value(rec!(|b| b.load(D::ir_type(), ops[0], &ops[1..])))
}

/// Loads this warp's quarter of a warpgroup's shared tile: `St<T, 4·R, C>` → `Rt<T, R, C, L>`
/// (warp w of the group gets rows `w·R ..`).
#[track_caller]
pub fn load_warpgroup<
    T: RegDtype,
    const R: usize,
    const C: usize,
    L: TileLayout,
    const SR: usize,
    Z: SwizzleKind,
>(
    src: St<T, SR, C, Z>,
) -> Rt<T, R, C, L> {
    let () = Quarter::<SR, R>::OK;
    Rt::from_value(rec!(|b| b.load_at(
        Scope::Warpgroup,
        Rt::<T, R, C, L>::ir_type(),
        src.value(),
        &[]
    )))
}

/// What a register value may be stored to.
#[diagnostic::on_unimplemented(
    message = "cannot store a `{V}` into `{Self}`",
    label = "no store of this register type to this destination",
    note = "stores: to a writable global place of the same dtype (`GlMut::tile`, `chunk`, `at`; a `Gl` is read-only), to an St of the same dtype and shape or `st.tile(i, j)`, to an Sv of the same length"
)]
pub trait StoreTo<V> {
    /// The destination and its indices.
    fn operands(&self) -> Vec<Value>;
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> StoreTo<Rt<T, R, C, L>>
    for GlAt<T, true>
{
    fn operands(&self) -> Vec<Value> {
        [&[self.g], GlAt::operands(self)].concat()
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> StoreTo<Rv<T, N, A>> for GlAt<T, true> {
    fn operands(&self) -> Vec<Value> {
        [&[self.g], GlAt::operands(self)].concat()
    }
}
impl<T: Dtype> StoreTo<Scalar<T>> for GlAt<T, true> {
    fn operands(&self) -> Vec<Value> {
        [&[self.g], GlAt::operands(self)].concat()
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout, Z: SwizzleKind>
    StoreTo<Rt<T, R, C, L>> for St<T, R, C, Z>
{
    fn operands(&self) -> Vec<Value> {
        vec![self.value()]
    }
}
impl<T: RegDtype, const R: usize, const C: usize, L: TileLayout> StoreTo<Rt<T, R, C, L>>
    for StAt<T>
{
    fn operands(&self) -> Vec<Value> {
        vec![self.s, self.i, self.j]
    }
}
impl<T: RegDtype, const N: usize, A: VecAlong> StoreTo<Rv<T, N, A>> for Sv<T, N> {
    fn operands(&self) -> Vec<Value> {
        vec![self.value()]
    }
}

/// Stores a register value into a writable global place, a shared tile or a shared vector:
/// `store(c.tile(i, j), acc)` for `c: GlMut<…>` (the place must be writable: `tile` on a
/// read-only `Gl` is a compile error here), `store(s, acc)` for a shared tile `s`.
#[track_caller]
pub fn store<V: Register, D: StoreTo<V>>(dst: D, x: V) {
    let ops = dst.operands();
    rec!(|b| b.store(ops[0], x.value(), &ops[1..]))
}

/// Stores this warp's quarter of a warpgroup's shared tile (the inverse of [`load_warpgroup`]).
#[track_caller]
pub fn store_warpgroup<
    T: RegDtype,
    const R: usize,
    const C: usize,
    L: TileLayout,
    const SR: usize,
    Z: SwizzleKind,
>(
    dst: St<T, SR, C, Z>,
    x: Rt<T, R, C, L>,
) {
    let () = Quarter::<SR, R>::OK;
    rec!(|b| b.store_at(Scope::Warpgroup, dst.value(), x.value(), &[]))
}

/// Pairs a `copy` moves between: (shared tile ← global place), (writable global place ← shared
/// tile), and the same with shared vectors.
#[diagnostic::on_unimplemented(
    message = "cannot copy from `{S}` to `{Self}`",
    note = "copies move St/Sv ← global place (`g.tile(i, j)`) or writable global place (`GlMut::tile`) ← St/Sv, of one dtype"
)]
pub trait CopyFrom<S> {
    fn operands(&self, src: &S) -> Vec<Value>;
}
impl<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind, const M: bool> CopyFrom<GlAt<T, M>>
    for St<T, R, C, Z>
{
    fn operands(&self, src: &GlAt<T, M>) -> Vec<Value> {
        [&[self.value(), src.g], src.operands()].concat()
    }
}
impl<T: Dtype, const N: usize, const M: bool> CopyFrom<GlAt<T, M>> for Sv<T, N> {
    fn operands(&self, src: &GlAt<T, M>) -> Vec<Value> {
        [&[self.value(), src.g], src.operands()].concat()
    }
}
impl<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind> CopyFrom<St<T, R, C, Z>>
    for GlAt<T, true>
{
    fn operands(&self, src: &St<T, R, C, Z>) -> Vec<Value> {
        [&[self.g, src.value()], GlAt::operands(self)].concat()
    }
}
impl<T: Dtype, const N: usize> CopyFrom<Sv<T, N>> for GlAt<T, true> {
    fn operands(&self, src: &Sv<T, N>) -> Vec<Value> {
        [&[self.g, src.value()], GlAt::operands(self)].concat()
    }
}

#[track_caller]
fn copy_at<S, D: CopyFrom<S>>(scope: Scope, dst: D, src: S) {
    let ops = dst.operands(&src);
    rec!(|b| b.copy(scope, ops[0], ops[1], &ops[2..]))
}

/// Copies between global and shared memory, split among the block's warps (every warp must
/// reach it): `copy_block(a_smem, a.tile(m, k))`.
#[track_caller]
pub fn copy_block<S, D: CopyFrom<S>>(dst: D, src: S) {
    copy_at(Scope::Block, dst, src)
}

/// [`copy_block`] among the 4 warps of this warp's warpgroup.
#[track_caller]
pub fn copy_warpgroup<S, D: CopyFrom<S>>(dst: D, src: S) {
    copy_at(Scope::Warpgroup, dst, src)
}

/// [`copy_block`] by this warp alone.
#[track_caller]
pub fn copy_warp<S, D: CopyFrom<S>>(dst: D, src: S) {
    copy_at(Scope::Warp, dst, src)
}

/// Starts an asynchronous global → shared copy that completes on `sem` (its bytes count
/// towards the semaphore's expected bytes).
#[track_caller]
pub fn copy_async<T: Dtype, const R: usize, const C: usize, Z: SwizzleKind, const M: bool>(
    dst: St<T, R, C, Z>,
    src: GlAt<T, M>,
    sem: Sem,
) {
    let idx = src.operands().to_vec();
    rec!(|b| b.copy_async(dst.value(), src.g, sem.value(), &idx))
}

/// Row r of the result is global row `rows[r]` (negative: zeros), columns of tile column `j`.
#[track_caller]
pub fn gather_rows<T: RegDtype, const R: usize, const C: usize, L: TileLayout>(
    g: impl View<T>,
    rows: Rv<i32, R, Rows>,
    j: impl Idx,
) -> Rt<T, R, C, L> {
    let j = j.idx();
    Rt::from_value(rec!(|b| b.gather_rows(
        Rt::<T, R, C, L>::ir_type(),
        g.value(),
        rows.value(),
        j
    )))
}

/// Global row `rows[r]` = row r of `t` (negative indices skip the row).
#[track_caller]
pub fn scatter_rows<
    T: RegDtype,
    const RANK: usize,
    const R: usize,
    const C: usize,
    L: TileLayout,
>(
    g: GlMut<T, RANK>,
    t: Rt<T, R, C, L>,
    rows: Rv<i32, R, Rows>,
    j: impl Idx,
) {
    let j = j.idx();
    rec!(|b| b.scatter_rows(false, g.value(), t.value(), rows.value(), j))
}

/// Global row `rows[r]` += row r of `t` (atomically).
#[track_caller]
pub fn scatter_add_rows<
    T: RegDtype,
    const RANK: usize,
    const R: usize,
    const C: usize,
    L: TileLayout,
>(
    g: GlMut<T, RANK>,
    t: Rt<T, R, C, L>,
    rows: Rv<i32, R, Rows>,
    j: impl Idx,
) {
    let j = j.idx();
    rec!(|b| b.scatter_rows(true, g.value(), t.value(), rows.value(), j))
}

/// Atomically adds a scalar (at element indices, `g.at(..)`), a register vector (at a chunk
/// index, `g.chunk(..)`) or a tile (at tile coordinates, `g.tile(..)`); elements outside the
/// view are skipped. Adds from different warps and blocks to one element all land.
#[track_caller]
pub fn atomic_add<V: Register>(dst: GlAt<V::Elem, true>, x: V)
where
    GlAt<V::Elem, true>: StoreTo<V>,
{
    let ops = StoreTo::<V>::operands(&dst);
    rec!(|b| b.atomic_add(ops[0], x.value(), &ops[1..]))
}

// ---- shared memory and synchronization ------------------------------------------------------

/// Allocates a shared-memory object for the block (top level of a kernel body only):
/// `let a_smem: St<bf16, 64, 32> = alloc_shared();`.
#[track_caller]
pub fn alloc_shared<S: Shared>() -> S {
    S::from_value(rec!(|b| b.alloc_shared(S::ir_type())))
}

impl<E: Shared, const N: usize> SharedArray<E, N> {
    /// Element `i` (out of range is an error at run time).
    #[track_caller]
    pub fn at(&self, i: impl Idx) -> E {
        let i = i.idx();
        E::from_value(rec!(|b| b.shared_index(self.value(), i)))
    }
}

/// Every warp of the block waits until all have arrived.
#[track_caller]
pub fn barrier() {
    rec!(|b| b.barrier())
}

impl Sem {
    /// Phase 0 begins; each phase expects `arrivals` arrivals.
    #[track_caller]
    pub fn init(&self, arrivals: u32) {
        rec!(|b| b.sem_init(self.value(), arrivals))
    }
    /// One arrival on the current phase.
    #[track_caller]
    pub fn arrive(&self) {
        rec!(|b| b.sem_arrive(self.value()))
    }
    /// The current phase also waits for `bytes` of async copies.
    #[track_caller]
    pub fn expect(&self, bytes: u32) {
        rec!(|b| b.sem_expect(self.value(), bytes))
    }
    /// Waits until the phase with this parity (0 or 1) has completed.
    #[track_caller]
    pub fn wait(&self, parity: impl Idx) {
        let p = parity.idx();
        rec!(|b| b.sem_wait(self.value(), p))
    }
}

/// The byte size of a shared tile or vector (for [`Sem::expect`]).
pub fn bytes_of<S: Shared>() -> u32 {
    u32::try_from(S::ir_type().shared_bytes().unwrap_or(0)).unwrap_or(u32::MAX)
}

/// The IR type of a handle type (for diagnostics and tests).
pub fn ir_type_of<H: Handle>() -> Type {
    H::ir_type()
}
