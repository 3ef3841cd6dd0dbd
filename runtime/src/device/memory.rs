//! [`Storage`]: the memory a tensor's elements live in, on one device (views share it), and how
//! views of host memory reach a launch.

use std::sync::{Arc, Mutex};

use super::{cuda, hip, DeviceView, LaunchArg};
use crate::error::Error;
use crate::ir::interp::HostTensor;

/// Where a tensor's elements live; views share it.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    /// Host memory, for the cpu device: values rounded to the dtype.
    Host(Arc<Mutex<Vec<f64>>>),
    Cuda(Arc<cuda::Buffer>),
    Hip(Arc<hip::Buffer>),
}

impl Storage {
    /// Whether both are the same memory (views of one tensor's storage).
    pub(crate) fn same(&self, other: &Storage) -> bool {
        match (self, other) {
            (Storage::Host(a), Storage::Host(b)) => Arc::ptr_eq(a, b),
            (Storage::Cuda(a), Storage::Cuda(b)) => Arc::ptr_eq(a, b),
            (Storage::Hip(a), Storage::Hip(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub(crate) fn device_name(&self) -> String {
        match self {
            Storage::Host(_) => "cpu".into(),
            Storage::Cuda(b) => format!("cuda:{}", b.ctx.ordinal),
            Storage::Hip(b) => format!("hip:{}", b.ctx.ordinal),
        }
    }
}

/// Host-memory views among a launch's arguments, swapped for host tensors holding their
/// elements while a device runs the kernel (the interpreter reads host tensors; a GPU copies
/// them over and back), then written back into the memory they view.
pub(crate) struct HostViews(Vec<(usize, DeviceView)>);

impl HostViews {
    /// Replaces every view of host memory in `args` by a host tensor of its elements.
    pub(crate) fn take(args: &mut [LaunchArg]) -> Result<HostViews, Error> {
        let mut views = Vec::new();
        for (i, a) in args.iter_mut().enumerate() {
            let LaunchArg::Device(v) = a else { continue };
            let Storage::Host(h) = &v.storage else {
                continue;
            };
            let values: Vec<f64> = {
                let h = h.lock().unwrap_or_else(|e| e.into_inner());
                element_positions(v)
                    .map(|p| h.get(p).copied().unwrap_or(f64::NAN))
                    .collect()
            };
            let t = HostTensor::new(v.dtype, &v.shape, &values)?;
            let LaunchArg::Device(v) = std::mem::replace(a, LaunchArg::Host(t)) else {
                unreachable!("matched above")
            };
            views.push((i, v));
        }
        Ok(HostViews(views))
    }

    /// Puts the views back into `args`; when `written` (the launch succeeded), first copies the
    /// elements of the writable ones (`writable[i]`) into their memory.
    pub(crate) fn give_back(self, args: &mut [LaunchArg], writable: &[bool], written: bool) {
        for (i, v) in self.0 {
            let Some(a) = args.get_mut(i) else { continue };
            if let (true, Some(true), LaunchArg::Host(t), Storage::Host(h)) =
                (written, writable.get(i).copied(), &*a, &v.storage)
            {
                let mut h = h.lock().unwrap_or_else(|e| e.into_inner());
                for (p, x) in element_positions(&v).zip(t.to_vec()) {
                    if let Some(to) = h.get_mut(p) {
                        *to = x;
                    }
                }
            }
            *a = LaunchArg::Device(v);
        }
    }
}

/// The storage positions of a view's elements, row-major.
pub(crate) fn element_positions(v: &DeviceView) -> impl Iterator<Item = usize> + '_ {
    positions(&v.shape, &v.strides, v.offset)
}

/// The storage positions of the elements of the view `offset + Σ index·strides` over `shape`,
/// row-major.
pub(crate) fn positions<'a>(
    shape: &'a [usize],
    strides: &'a [usize],
    offset: usize,
) -> impl Iterator<Item = usize> + 'a {
    let n: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    (0..n).map(move |_| {
        let p = offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
        p
    })
}
