//! [`Storage`]: the memory a tensor's elements live in, on one device. Views share it.

use std::sync::{Arc, Mutex};

use super::{cuda, hip};

/// Where a tensor's elements live; views share it.
#[derive(Clone, Debug)]
pub(crate) enum Storage {
    /// Host memory, for the cpu device: values rounded to the dtype.
    Host(Arc<Mutex<Vec<f64>>>),
    Cuda(Arc<cuda::Buffer>),
    Hip(Arc<hip::Buffer>),
}

impl Storage {
    pub(crate) fn device_name(&self) -> String {
        match self {
            Storage::Host(_) => "cpu".into(),
            Storage::Cuda(b) => format!("cuda:{}", b.ctx.ordinal),
            Storage::Hip(b) => format!("hip:{}", b.ctx.ordinal),
        }
    }
}
