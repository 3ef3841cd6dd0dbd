//! Pointer tables: a kernel parameter that is a device-side table of tensors of one dtype and
//! rank (of different sizes), so one launch can walk a list of tensors — the parameters of a
//! model in a multi-tensor optimizer step, say.
//!
//! ```ignore
//! #[tilekit::kernel(warps = 1)]
//! fn scale_all(xs: GlTableMut<f32, 1>, s: Scalar<f32>) {
//!     let x = xs.view(block_idx_y());            // a GlMut<f32, 1> bounded by entry i's length
//!     let v: Rv<f32, 16> = load(x.chunk(block_idx_x()));
//!     store(x.chunk(block_idx_x()), v * s);
//! }
//! ```
//!
//! The launcher takes a [`TensorList`](crate::tensor_list::TensorList) for the parameter. In the
//! IR the parameter is a `gl<i64, 2>` of one row per entry, `(address, n_0, …, n_{r-1})`,
//! written by the launch; [`GlTable::view`] is the `table_view` op.

use std::fmt;
use std::marker::PhantomData;

use super::dtype::Dtype;
use super::handles::{Gl, GlMut, Handle, Scalar};
use super::ops::Idx;
use super::trace::rec;
use crate::ir::{OpKind, ScalarType, Scope, Type, Value};

/// A read-only table of tensors of dtype `T` and rank `RANK` (1 to 4).
pub struct GlTable<T: Dtype, const RANK: usize> {
    v: Value,
    _p: PhantomData<fn() -> T>,
}

/// A table of tensors of dtype `T` and rank `RANK` that the kernel may write through.
pub struct GlTableMut<T: Dtype, const RANK: usize> {
    v: Value,
    _p: PhantomData<fn() -> T>,
}

/// Entries of a table have rank 1 to 4 (a compile error at the kernel otherwise).
struct TableRank<const RANK: usize>;
impl<const RANK: usize> TableRank<RANK> {
    const OK: () = assert!(
        RANK >= 1 && RANK <= 4,
        "pointer-table entries have rank 1 to 4"
    );
}

#[track_caller]
fn table_view(table: Value, i: Value, dtype: ScalarType, rank: usize, mutable: bool) -> Value {
    let ty = Type::global(dtype, rank as u32, mutable);
    rec!(|b| b.op(OpKind::TableView, Scope::Warp, &[table, i], vec![ty])[0])
}

macro_rules! table_handle {
    ($name:ident, $view:ident, $mutable:expr) => {
        impl<T: Dtype, const RANK: usize> Clone for $name<T, RANK> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T: Dtype, const RANK: usize> Copy for $name<T, RANK> {}
        impl<T: Dtype, const RANK: usize> fmt::Debug for $name<T, RANK> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "table of {} rank {} %{}", T::SCALAR, RANK, self.v.0)
            }
        }
        impl<T: Dtype, const RANK: usize> Handle for $name<T, RANK> {
            fn ir_type() -> Type {
                let () = TableRank::<RANK>::OK;
                Type::global(ScalarType::I64, 2, false)
            }
            fn value(self) -> Value {
                self.v
            }
            fn from_value(v: Value) -> Self {
                Self { v, _p: PhantomData }
            }
        }
        impl<T: Dtype, const RANK: usize> $name<T, RANK> {
            /// The view of entry `i` (`0 ≤ i < len()`), bounded by that entry's shape: loads
            /// past its end read 0 and stores there are dropped, as for any view. An `i` outside
            /// the table is an error on the interpreter and an empty view on GPUs.
            #[track_caller]
            pub fn view(&self, i: impl Idx) -> $view<T, RANK> {
                let v = table_view(self.v, i.idx(), T::SCALAR, RANK, $mutable);
                $view::from_value(v)
            }

            /// The number of entries.
            #[track_caller]
            pub fn len(&self) -> Scalar<i32> {
                Scalar::from_value(rec!(|b| b.dim(self.v, 0)))
            }
        }
    };
}

table_handle!(GlTable, Gl, false);
table_handle!(GlTableMut, GlMut, true);
