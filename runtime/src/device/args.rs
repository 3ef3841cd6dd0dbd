//! What a launch takes: the grid, and each kernel argument (a host tensor, a view of device
//! memory, or a scalar).

use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;

use super::Storage;

/// A launch grid: blocks along x, y and z. `4`, `(4, 2)`, `(4, 2, 1)` and `[4, 2, 1]` convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid(pub [u32; 3]);

impl From<u32> for Grid {
    fn from(x: u32) -> Grid {
        Grid([x, 1, 1])
    }
}
impl From<(u32, u32)> for Grid {
    fn from((x, y): (u32, u32)) -> Grid {
        Grid([x, y, 1])
    }
}
impl From<(u32, u32, u32)> for Grid {
    fn from((x, y, z): (u32, u32, u32)) -> Grid {
        Grid([x, y, z])
    }
}
impl From<[u32; 3]> for Grid {
    fn from(g: [u32; 3]) -> Grid {
        Grid(g)
    }
}

/// A tensor memory a kernel argument points at, as a launch sees it.
#[derive(Clone, Debug)]
pub struct DeviceView {
    pub dtype: ScalarType,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    /// Elements from the start of the memory to the view's first element.
    pub offset: usize,
    pub(crate) storage: Storage,
}

impl DeviceView {
    /// The device the memory is on.
    pub fn device_name(&self) -> String {
        self.storage.device_name()
    }
}

/// One kernel argument on its way to a launch.
#[derive(Clone, Debug)]
pub enum LaunchArg {
    /// A host tensor: the interpreter reads it directly; a GPU launch copies it to the device
    /// and back (writable parameters).
    Host(HostTensor),
    /// A tensor in GPU memory.
    Device(DeviceView),
    /// A scalar of the given dtype.
    Scalar(ScalarType, f64),
    /// A table of tensors for a kernel's pointer-table parameter (`gl<i64, 2>`, read with
    /// `table_view`); the launch lays out its rows on the device.
    Table(super::table::TableArg),
}

impl LaunchArg {
    /// The tensor's shape (empty for a scalar).
    pub fn shape(&self) -> &[usize] {
        match self {
            LaunchArg::Host(t) => t.shape(),
            LaunchArg::Device(v) => &v.shape,
            LaunchArg::Table(t) => &t.shape,
            LaunchArg::Scalar(..) => &[],
        }
    }

    /// The tensor's element strides (empty for a scalar).
    pub fn strides(&self) -> &[usize] {
        match self {
            LaunchArg::Host(t) => t.strides(),
            LaunchArg::Device(v) => &v.strides,
            LaunchArg::Table(t) => &t.strides,
            LaunchArg::Scalar(..) => &[],
        }
    }

    /// The tensor's dtype (`None` for a scalar).
    pub fn tensor_dtype(&self) -> Option<ScalarType> {
        match self {
            LaunchArg::Host(t) => Some(t.dtype()),
            LaunchArg::Device(v) => Some(v.dtype),
            LaunchArg::Table(_) => Some(ScalarType::I64),
            LaunchArg::Scalar(..) => None,
        }
    }

    /// What the argument is, for error messages.
    pub fn describe(&self) -> String {
        match self {
            LaunchArg::Host(t) => format!("a {} tensor of shape {:?}", t.dtype(), t.shape()),
            LaunchArg::Device(v) => format!(
                "a {} tensor of shape {:?} on {}",
                v.dtype,
                v.shape,
                v.device_name()
            ),
            LaunchArg::Scalar(t, _) => format!("a {t} scalar"),
            LaunchArg::Table(t) => format!(
                "a pointer table of {} {} tensors of rank {}",
                t.entries.len(),
                t.dtype,
                t.rank
            ),
        }
    }
}

/// The global-view parameters of kernel `kernel` of `module` whose arguments are 16-byte
/// aligned views ([`crate::abi::view_aligned16`]), in name order: the facts a launch's code may
/// be compiled for. A host tensor is copied to the start of a fresh allocation, so its offset is
/// 0. Arguments that do not match the parameters are left out (the launch reports them).
pub(crate) fn aligned16_views(
    module: &crate::ir::Module,
    kernel: &str,
    args: &[LaunchArg],
) -> Vec<String> {
    let Some(func) = module.kernel(kernel) else {
        return Vec::new();
    };
    let mut out: Vec<String> = func
        .params
        .iter()
        .zip(args)
        .filter(|(p, _)| matches!(func.value_type(**p), crate::ir::Type::Global { .. }))
        .filter(|(_, a)| {
            let (dtype, offset) = match a {
                LaunchArg::Host(t) => (t.dtype(), 0),
                LaunchArg::Device(v) => (v.dtype, v.offset),
                LaunchArg::Scalar(..) | LaunchArg::Table(_) => return false,
            };
            crate::abi::view_aligned16(dtype, offset, a.shape(), a.strides())
        })
        .filter_map(|(p, _)| func.value_name(*p).map(str::to_string))
        .collect();
    out.sort_unstable();
    out
}

impl From<HostTensor> for LaunchArg {
    fn from(t: HostTensor) -> LaunchArg {
        LaunchArg::Host(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(shape: &[usize], strides: &[usize], offset: usize) -> LaunchArg {
        LaunchArg::Device(DeviceView {
            dtype: ScalarType::BF16,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            offset,
            storage: Storage::host(ScalarType::BF16, vec![0.0; 64 * 80]),
        })
    }

    /// A view at an odd element offset, with an odd leading stride or with rows that are not
    /// whole 16-byte chunks is left out; host tensors start an allocation (offset 0).
    #[test]
    fn a_launchs_aligned_views_are_the_views_that_qualify() {
        let module = crate::ir::parse_module(
            "kernel @k(%a: gl<bf16, 2>, %b: gl<bf16, 2>, %s: f32, %c: gl<bf16, 2, mut>) warps(1) {
               return ()
             }",
        )
        .unwrap();
        let host = |shape: &[usize], strides: &[usize]| {
            let n = (shape[0] - 1) * strides[0] + shape[1];
            LaunchArg::Host(
                HostTensor::strided(ScalarType::BF16, shape, strides, &vec![0.0; n]).unwrap(),
            )
        };
        let scalar = LaunchArg::Scalar(ScalarType::F32, 1.0);
        let all = [
            view(&[16, 64], &[80, 1], 8),
            host(&[16, 64], &[64, 1]),
            scalar.clone(),
            view(&[16, 64], &[64, 1], 0),
        ];
        assert_eq!(aligned16_views(&module, "k", &all), ["a", "b", "c"]);
        let some = [
            view(&[16, 64], &[80, 1], 1),
            host(&[16, 64], &[65, 1]),
            scalar,
            view(&[16, 60], &[64, 1], 0),
        ];
        assert!(aligned16_views(&module, "k", &some).is_empty());
        assert!(aligned16_views(&module, "other", &all).is_empty());
    }
}
