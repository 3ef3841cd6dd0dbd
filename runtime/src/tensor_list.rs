//! [`TensorList`]: a list of tensors of one dtype and rank passed for a pointer-table parameter
//! ([`GlTable`] / [`GlTableMut`]), so one launch walks tensors of different sizes.

use crate::device::{LaunchArg, TableArg, TableError};
use crate::dsl::dtype::Dtype;
use crate::dsl::table::{GlTable, GlTableMut};
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::launch::Param;
use crate::tensor::TensorArg;

/// Tensors of one dtype and rank (1 to 4), each contiguous and row-major, for a kernel's
/// `GlTable<T, RANK>` / `GlTableMut<T, RANK>` parameter. [`Tensor`](crate::Tensor)s are read
/// and written in place; [`HostTensor`]s are copied to the device and, for a writable table,
/// back into the list ([`TensorList::host`]).
#[derive(Clone, Debug)]
pub struct TensorList {
    table: TableArg,
}

impl TensorList {
    /// A list of `tensors`, which must share the first one's dtype and rank; an empty list
    /// needs [`TensorList::empty`].
    pub fn new(tensors: &[&dyn TensorArg]) -> Result<TensorList, TableError> {
        let (dtype, rank) = tensors
            .first()
            .map_or((ScalarType::F32, 1), |t| (t.dtype(), t.shape().len()));
        TensorList::of(dtype, rank, tensors)
    }

    /// A list of `tensors` that must all be `dtype` tensors of rank `rank`.
    pub fn of(
        dtype: ScalarType,
        rank: usize,
        tensors: &[&dyn TensorArg],
    ) -> Result<TensorList, TableError> {
        let entries = tensors.iter().map(|t| t.launch_arg()).collect();
        Ok(TensorList {
            table: TableArg::new(dtype, rank, entries)?,
        })
    }

    /// A list of no tensors (a launch over it has nothing to do).
    pub fn empty(dtype: ScalarType, rank: usize) -> Result<TensorList, TableError> {
        TensorList::of(dtype, rank, &[])
    }

    pub fn len(&self) -> usize {
        self.table.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> ScalarType {
        self.table.dtype()
    }

    pub fn rank(&self) -> usize {
        self.table.rank()
    }

    /// The shape of entry `i`.
    pub fn shape(&self, i: usize) -> Option<&[usize]> {
        self.table.entries().get(i).map(LaunchArg::shape)
    }

    /// Entry `i` when it is a host tensor (after a launch that wrote it, with the results).
    pub fn host(&self, i: usize) -> Option<&HostTensor> {
        match self.table.entries().get(i)? {
            LaunchArg::Host(t) => Some(t),
            _ => None,
        }
    }

    /// The launch argument.
    pub fn launch_arg(&self) -> LaunchArg {
        LaunchArg::Table(self.table.clone())
    }

    /// Receives a launch's argument back (its host entries hold what the kernel wrote).
    pub fn take_back(&mut self, arg: LaunchArg) {
        if let LaunchArg::Table(t) = arg {
            self.table = t;
        }
    }

    fn arg_for<T: Dtype>(&self, rank: usize) -> Result<LaunchArg, (String, String)> {
        if self.dtype() != T::SCALAR || self.rank() != rank {
            return Err((
                format!("a list of {} tensors of rank {rank}", T::SCALAR),
                format!(
                    "a list of {} {} tensors of rank {}",
                    self.len(),
                    self.dtype(),
                    self.rank()
                ),
            ));
        }
        Ok(self.launch_arg())
    }
}

impl<T: Dtype, const RANK: usize> Param for GlTable<T, RANK> {
    type Host<'a> = &'a TensorList;
    fn to_arg(host: &&TensorList) -> Result<LaunchArg, (String, String)> {
        host.arg_for::<T>(RANK)
    }
    fn write_back(_: &mut &TensorList, _: LaunchArg) {}
}

impl<T: Dtype, const RANK: usize> Param for GlTableMut<T, RANK> {
    type Host<'a> = &'a mut TensorList;
    fn to_arg(host: &&mut TensorList) -> Result<LaunchArg, (String, String)> {
        host.arg_for::<T>(RANK)
    }
    fn write_back(host: &mut &mut TensorList, arg: LaunchArg) {
        host.take_back(arg);
    }
}
