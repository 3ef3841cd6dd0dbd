//! Pointer tables at launch: a [`TableArg`] (a list of tensors of one dtype and rank, passed for
//! a kernel's `gl<i64, 2>` table parameter) and how each device lays it out.
//!
//! On a GPU (and the emulator) the kernel receives an i64 tensor of one row per entry,
//! `(address, n_0, …, n_{r-1})`, written by the launch: addresses are only known to the device
//! that holds the entries (the emulator places every launch's arguments afresh), so the table is
//! built there, at launch, never by the user. The emulator gives every entry an allocation of
//! exactly its elements, so its sanitizer reports an access past an entry's end as out of
//! bounds. The cpu device passes the entries to the interpreter as an `interp::TensorTable`.

use crate::ir::interp::HostTensor;
use crate::ir::{Module, OpKind, ScalarType, Type};

use super::memory::HostViews;
use super::{DeviceView, Error, LaunchArg};

/// The entries of a pointer table, on their way to a launch: host tensors or views of device
/// memory, contiguous and row-major, of one dtype and rank.
#[derive(Clone, Debug)]
pub struct TableArg {
    pub(crate) dtype: ScalarType,
    pub(crate) rank: usize,
    pub(crate) entries: Vec<LaunchArg>,
    /// The table's own shape and strides, as the kernel's `gl<i64, 2>` sees it.
    pub(crate) shape: [usize; 2],
    pub(crate) strides: [usize; 2],
}

/// Why a list of tensors cannot be a pointer table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("entry {entry} is a {found_dtype} tensor of rank {found_rank}; the table holds {dtype} tensors of rank {rank}")]
    Mixed {
        entry: usize,
        dtype: ScalarType,
        rank: usize,
        found_dtype: ScalarType,
        found_rank: usize,
    },
    #[error("entry {entry} has rank {rank}; table entries have rank 1 to 4")]
    Rank { entry: usize, rank: usize },
    #[error("entry {entry} (shape {shape:?}) is not contiguous and row-major (the table holds an address and sizes only): pass a contiguous copy")]
    NotContiguous { entry: usize, shape: Vec<usize> },
    #[error("entry {entry} has a dimension of {n} elements; kernels index with i32, so at most {max}", max = i32::MAX)]
    TooLarge { entry: usize, n: usize },
    #[error("entry {entry} is a scalar, not a tensor")]
    Scalar { entry: usize },
}

fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1].saturating_mul(shape[d + 1]);
    }
    s
}

impl TableArg {
    /// A table of `entries` (host tensors or device views), which must be contiguous row-major
    /// tensors of `dtype` and `rank` (1 to 4).
    pub fn new(
        dtype: ScalarType,
        rank: usize,
        entries: Vec<LaunchArg>,
    ) -> Result<TableArg, TableError> {
        for (entry, a) in entries.iter().enumerate() {
            let Some(d) = a.tensor_dtype() else {
                return Err(TableError::Scalar { entry });
            };
            let shape = a.shape();
            if !(1..=4).contains(&shape.len()) {
                return Err(TableError::Rank {
                    entry,
                    rank: shape.len(),
                });
            }
            if d != dtype || shape.len() != rank {
                return Err(TableError::Mixed {
                    entry,
                    dtype,
                    rank,
                    found_dtype: d,
                    found_rank: shape.len(),
                });
            }
            if let Some(&n) = shape.iter().find(|&&n| n > i32::MAX as usize) {
                return Err(TableError::TooLarge { entry, n });
            }
            // An empty tensor has no elements to place: any strides will do.
            let empty = shape.contains(&0);
            let dims_ok = shape
                .iter()
                .zip(a.strides().iter().zip(row_major(shape)))
                .all(|(&n, (&s, want))| n <= 1 || s == want);
            if !empty && !dims_ok {
                return Err(TableError::NotContiguous {
                    entry,
                    shape: shape.to_vec(),
                });
            }
        }
        Ok(TableArg {
            dtype,
            rank,
            shape: [entries.len(), rank + 1],
            strides: [rank + 1, 1],
            entries,
        })
    }

    /// The entries (host tensors receive a launch's writes).
    pub fn entries(&self) -> &[LaunchArg] {
        &self.entries
    }

    pub fn dtype(&self) -> ScalarType {
        self.dtype
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The table's rows for entries at `addresses`: `(address, n_0, …)` as little-endian i64s.
    pub(crate) fn rows(&self, addresses: &[u64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * (self.rank + 1) * 8);
        for (a, e) in addresses.iter().zip(&self.entries) {
            out.extend_from_slice(&a.to_le_bytes());
            for &n in e.shape() {
                out.extend_from_slice(&(n as i64).to_le_bytes());
            }
        }
        out
    }
}

/// Views of host memory among the entries of every table argument, swapped for host tensors
/// for the run (as [`HostViews`] does for plain arguments) and written back after it.
pub(crate) struct TableHostViews(Vec<(usize, HostViews)>);

impl TableHostViews {
    pub(crate) fn take(args: &mut [LaunchArg]) -> Result<TableHostViews, Error> {
        let mut out = Vec::new();
        for (i, a) in args.iter_mut().enumerate() {
            if let LaunchArg::Table(t) = a {
                out.push((i, HostViews::take(&mut t.entries)?));
            }
        }
        Ok(TableHostViews(out))
    }

    /// Puts the views back; when the run succeeded, with the elements it wrote (every entry is
    /// written back: the table parameter does not say which entries a kernel writes).
    pub(crate) fn give_back(self, args: &mut [LaunchArg], written: bool) {
        for (i, views) in self.0 {
            if let Some(LaunchArg::Table(t)) = args.get_mut(i) {
                let all = vec![true; t.entries.len()];
                views.give_back(&mut t.entries, &all, written);
            }
        }
    }
}

/// The entries of a table as host tensors, for the interpreter (after [`TableHostViews::take`]
/// every entry in host memory is one); a view of GPU memory is an error naming the device.
pub(crate) fn host_entries(
    kernel: &str,
    param: &str,
    t: &TableArg,
    device: &str,
) -> Result<Vec<HostTensor>, Error> {
    t.entries
        .iter()
        .enumerate()
        .map(|(e, a)| match a {
            LaunchArg::Host(h) => Ok(h.clone()),
            LaunchArg::Device(v) => Err(wrong_device(kernel, param, e, v, device)),
            _ => Err(Error::Argument {
                kernel: kernel.into(),
                param: param.into(),
                expected: "a table of tensors".into(),
                found: format!("entry {e}: {}", a.describe()),
            }),
        })
        .collect()
}

pub(crate) fn wrong_device(
    kernel: &str,
    param: &str,
    entry: usize,
    v: &DeviceView,
    device: &str,
) -> Error {
    Error::WrongDevice {
        kernel: kernel.into(),
        param: format!("{param}[{entry}]"),
        tensor: v.device_name(),
        launch: device.into(),
    }
}

/// Checks each pointer-table parameter of kernel `kernel` that the kernel reads entries of
/// (`table_view` in its body) against its argument: it must be a table (a plain i64 tensor
/// would let the launch name any address), and the table's dtype and rank must be those the
/// views read (a table of bf16 tensors read as f32 would run past every entry). A table passed
/// on to a helper is checked where the kernel body views it, not inside the helper.
pub(crate) fn check_views(module: &Module, kernel: &str, args: &[LaunchArg]) -> Result<(), Error> {
    let Some(func) = module.kernel(kernel) else {
        return Ok(());
    };
    let mut first_error = None;
    func.walk(|op| {
        if first_error.is_some() || op.kind != OpKind::TableView {
            return;
        }
        let (Some(table), Some(result)) = (op.operands.first(), op.results.first()) else {
            return;
        };
        let Some(i) = func.params.iter().position(|p| p == table) else {
            return;
        };
        let param = func.value_name(*table).unwrap_or("?").to_string();
        let Type::Global { dtype, rank, .. } = func.value_type(*result) else {
            return;
        };
        let expected = format!(
            "a list of {dtype} tensors of rank {rank} (a TensorList: the kernel reads its entries with table_view)"
        );
        match args.get(i) {
            Some(LaunchArg::Table(t))
                if t.entries.is_empty() || (t.dtype == *dtype && t.rank == *rank as usize) => {}
            Some(a) => {
                first_error = Some(Error::Argument {
                    kernel: kernel.into(),
                    param,
                    expected,
                    found: a.describe(),
                })
            }
            None => {}
        }
    });
    first_error.map_or(Ok(()), Err)
}
