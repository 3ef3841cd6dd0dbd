//! [`Tensor`]: a dtype, a shape, element strides and an offset into the memory of one device.
//!
//! Tensors are made contiguous and row-major; [`Tensor::narrow`] and [`Tensor::transpose`] make
//! views that share the memory (writes through a view are seen by every tensor on it), which the
//! kernels take as they are: global views carry their strides, and every access is masked by the
//! view's shape, so a view never lets a kernel reach outside it.
//!
//! ```
//! use tilekit::{Device, Tensor};
//! use tilekit::ir::ScalarType;
//!
//! let device = Device::best(); // a GPU when there is one, else the cpu interpreter
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &device)?;
//! assert_eq!(x.shape(), &[2, 3]);
//! assert_eq!(x.to_vec::<f32>()?, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
//! let h = Tensor::from_slice(&[half::bf16::from_f32(0.5)], &[1], &device)?;
//! assert_eq!(h.dtype(), ScalarType::BF16);
//! # Ok::<(), tilekit::Error>(())
//! ```

use std::sync::Arc;

use crate::device::{codec, cuda, hip, positions, Device, DeviceView, LaunchArg, Storage};
use crate::error::Error;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;

/// A tensor on a [`Device`]: element `[i, j, …]` is storage element
/// `offset + i·strides[0] + j·strides[1] + …`.
pub struct Tensor {
    dtype: ScalarType,
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
    pub(crate) storage: Storage,
}

impl std::fmt::Debug for Tensor {
    /// The description, not the elements (read those with `to_vec`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({} {:?}, strides {:?}, offset {}, on {})",
            self.dtype,
            self.shape,
            self.strides,
            self.offset,
            self.device_name()
        )
    }
}

/// A Rust element type with a tilekit dtype: `f32`, `half::f16`, `half::bf16`, `i8`, `i32`,
/// `u32`, `i64`, `bool`. (fp8 tensors are made from bytes: [`Tensor::from_fp8_bytes`].)
pub trait Element: Copy {
    /// The tilekit dtype of this Rust type.
    const DTYPE: ScalarType;
    /// The value, exactly (every element type's values are f64 values).
    fn to_f64(self) -> f64;
    /// The element nearest `x` (`x` is representable when it came from a tensor of this dtype).
    fn from_f64(x: f64) -> Self;
}

macro_rules! element {
    ($t:ty, $d:ident, |$x:ident| $to:expr, |$y:ident| $from:expr) => {
        impl Element for $t {
            const DTYPE: ScalarType = ScalarType::$d;
            fn to_f64(self) -> f64 {
                let $x = self;
                $to
            }
            fn from_f64($y: f64) -> Self {
                $from
            }
        }
    };
}
element!(f32, F32, |x| f64::from(x), |y| y as f32);
element!(half::f16, F16, |x| x.to_f64(), |y| half::f16::from_f64(y));
element!(half::bf16, BF16, |x| x.to_f64(), |y| half::bf16::from_f64(
    y
));
element!(i8, I8, |x| f64::from(x), |y| y as i8);
element!(i32, I32, |x| f64::from(x), |y| y as i32);
element!(u32, U32, |x| f64::from(x), |y| y as u32);
element!(i64, I64, |x| x as f64, |y| y as i64);
element!(bool, Bool, |x| f64::from(u8::from(x)), |y| y != 0.0);

fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// The element count of `shape`, or an error when it overflows or a dimension is larger than
/// kernels can index (i32).
fn element_count(shape: &[usize]) -> Result<usize, Error> {
    if let Some(&n) = shape.iter().find(|&&n| n > i32::MAX as usize) {
        return Err(Error::Tensor {
            message: format!(
                "shape {shape:?}: dimension {n} is larger than kernels index ({})",
                i32::MAX
            ),
        });
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| Error::Tensor {
            message: format!("shape {shape:?} has more elements than fit in memory"),
        })
}

/// Bytes of [`Tensor`] memory on the cpu device and the emulator (host memory) that the calling
/// thread allocated: what is live now and the most that was live at once since the thread
/// started or since [`Tensor::reset_peak_memory_stats`]. Bytes are counted at the dtype's size
/// (a bf16 element is 2 bytes), as a GPU would hold them; host tensors (`HostTensor`) and the
/// copies a launch makes around a run are not device memory and are not counted. Per thread, so
/// that work on other threads (tests running side by side) does not show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub live_bytes: usize,
    pub peak_bytes: usize,
}

impl Tensor {
    /// The calling thread's [`MemoryStats`] (CUDA and HIP memory is not counted).
    pub fn memory_stats() -> MemoryStats {
        let (live_bytes, peak_bytes) = Storage::host_bytes();
        MemoryStats {
            live_bytes,
            peak_bytes,
        }
    }

    /// Starts the calling thread's peak ([`MemoryStats::peak_bytes`]) over from what is live now.
    pub fn reset_peak_memory_stats() {
        Storage::reset_host_peak();
    }

    /// How many times the calling thread has copied a tensor's elements from its device to the
    /// host ([`Tensor::to_bytes`] and what reads through it: [`Tensor::to_host`],
    /// [`Tensor::to_f64_vec`], [`Tensor::to_vec`]), on every device: a GPU synchronizes its stream
    /// for each. The copies a launch makes around a run on the cpu device or the emulator are the
    /// device's own and are not counted. A function that must not wait for the device (the
    /// mixture-of-experts layer's forward) is checked by this count not moving across the call.
    pub fn device_to_host_copies() -> u64 {
        Storage::read_backs()
    }

    /// A tensor holding `values` (rounded to `dtype`) on `device`.
    pub fn from_f64(
        dtype: ScalarType,
        shape: &[usize],
        values: &[f64],
        device: &Device,
    ) -> Result<Tensor, Error> {
        let n = element_count(shape)?;
        if values.len() != n {
            return Err(Error::Tensor {
                message: format!(
                    "a tensor of shape {shape:?} needs {n} values, got {}",
                    values.len()
                ),
            });
        }
        match device {
            Device::Cpu | Device::CpuWith(_) | Device::Emu(_) => Ok(Tensor::from_host(
                &HostTensor::new(dtype, shape, values)?,
                device,
            )?),
            _ => Tensor::from_bytes(dtype, shape, &codec::encode(dtype, values), device),
        }
    }

    /// A tensor with the elements of `data` (row-major) on `device`.
    pub fn from_slice<E: Element>(
        data: &[E],
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor, Error> {
        let values: Vec<f64> = data.iter().map(|&e| e.to_f64()).collect();
        Tensor::from_f64(E::DTYPE, shape, &values, device)
    }

    /// An fp8 tensor (`F8E4M3` or `F8E5M2`) from its bytes (OCP encodings).
    pub fn from_fp8_bytes(
        dtype: ScalarType,
        bytes: &[u8],
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor, Error> {
        if !dtype.is_fp8() {
            return Err(Error::Tensor {
                message: format!("from_fp8_bytes wants f8e4m3 or f8e5m2, got {dtype}"),
            });
        }
        let values = codec::decode(dtype, bytes);
        Tensor::from_f64(dtype, shape, &values, device)
    }

    /// A copy of a host tensor on `device` (made contiguous).
    pub fn from_host(t: &HostTensor, device: &Device) -> Result<Tensor, Error> {
        let shape = t.shape().to_vec();
        element_count(&shape)?;
        let dense = t.to_vec();
        match device {
            Device::Cpu | Device::CpuWith(_) | Device::Emu(_) => Ok(Tensor {
                dtype: t.dtype(),
                strides: row_major(&shape),
                shape,
                offset: 0,
                storage: Storage::host(t.dtype(), dense),
            }),
            _ => Tensor::from_bytes(t.dtype(), &shape, &codec::encode(t.dtype(), &dense), device),
        }
    }

    /// A tensor of zeros on `device`.
    pub fn zeros(dtype: ScalarType, shape: &[usize], device: &Device) -> Result<Tensor, Error> {
        Tensor::full(dtype, shape, 0.0, device)
    }

    /// A tensor with every element `value` (rounded to `dtype`) on `device`.
    pub fn full(
        dtype: ScalarType,
        shape: &[usize],
        value: f64,
        device: &Device,
    ) -> Result<Tensor, Error> {
        let n = element_count(shape)?;
        let one = codec::encode(dtype, &[value]);
        if let Device::Cpu | Device::CpuWith(_) | Device::Emu(_) = device {
            return Tensor::from_host(&HostTensor::full(dtype, shape, value), device);
        }
        let t = Tensor::alloc(dtype, shape, device)?;
        if one.iter().all(|&b| b == one[0]) {
            match &t.storage {
                Storage::Cuda(b) => b.fill_bytes(one[0])?,
                Storage::Hip(b) => b.fill_bytes(one[0])?,
                Storage::Host(_) => {}
            }
            Ok(t)
        } else {
            Tensor::from_bytes(dtype, shape, &one.repeat(n), device)
        }
    }

    /// Uninitialized device memory (the GPU paths fill it before anyone reads it).
    fn alloc(dtype: ScalarType, shape: &[usize], device: &Device) -> Result<Tensor, Error> {
        let bytes = element_count(shape)?
            .checked_mul(dtype.size_bytes() as usize)
            .ok_or_else(|| Error::Tensor {
                message: format!("shape {shape:?} of {dtype} does not fit in memory"),
            })?;
        let storage = match device {
            Device::Cpu | Device::CpuWith(_) | Device::Emu(_) => {
                Storage::host(dtype, vec![0.0; bytes / dtype.size_bytes() as usize])
            }
            Device::Cuda(g) => Storage::Cuda(Arc::new(cuda::Buffer::alloc(&g.ctx, bytes)?)),
            Device::Hip(g) => Storage::Hip(Arc::new(hip::Buffer::alloc(&g.ctx, bytes)?)),
        };
        Ok(Tensor {
            dtype,
            shape: shape.to_vec(),
            strides: row_major(shape),
            offset: 0,
            storage,
        })
    }

    /// A tensor from its elements' bytes (row-major, the dtype's encoding).
    pub fn from_bytes(
        dtype: ScalarType,
        shape: &[usize],
        bytes: &[u8],
        device: &Device,
    ) -> Result<Tensor, Error> {
        let n = element_count(shape)?;
        let want = n.saturating_mul(dtype.size_bytes() as usize);
        if bytes.len() != want {
            return Err(Error::Tensor {
                message: format!(
                    "a {dtype} tensor of shape {shape:?} is {want} bytes, got {}",
                    bytes.len()
                ),
            });
        }
        if let Device::Cpu | Device::CpuWith(_) | Device::Emu(_) = device {
            let h = HostTensor::new(dtype, shape, &codec::decode(dtype, bytes))?;
            return Tensor::from_host(&h, device);
        }
        let t = Tensor::alloc(dtype, shape, device)?;
        match &t.storage {
            Storage::Cuda(b) => b.upload(bytes)?,
            Storage::Hip(b) => b.upload(bytes)?,
            Storage::Host(_) => {}
        }
        Ok(t)
    }

    /// The element type.
    pub fn dtype(&self) -> ScalarType {
        self.dtype
    }

    /// Elements along each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element strides (row-major).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the elements.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype.size_bytes() as usize
    }

    /// The device's name (`cpu`, `cuda:0`, `hip:0`).
    pub fn device_name(&self) -> String {
        self.storage.device_name()
    }

    /// Element offset of the view's first element in its storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Whether the elements are row-major and dense (no gaps, no reordering).
    pub fn is_contiguous(&self) -> bool {
        self.strides == row_major(&self.shape)
    }

    /// The storage positions of the elements, row-major.
    fn element_positions(&self) -> Vec<usize> {
        positions(&self.shape, &self.strides, self.offset).collect()
    }

    /// The elements' bytes, row-major (waits for work on the device that may write them).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        if !self.is_empty() {
            Storage::count_read_back();
        }
        self.read_bytes()
    }

    /// [`Tensor::to_bytes`], not counted as a device-to-host copy: for copies between host
    /// memory of the cpu device or the emulator, which stay on the device.
    fn read_bytes(&self) -> Result<Vec<u8>, Error> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.dtype.size_bytes() as usize;
        let raw = match &self.storage {
            Storage::Host(h) => {
                let h = h.lock().unwrap_or_else(|e| e.into_inner());
                let values: Vec<f64> = self.element_positions().iter().map(|&p| h[p]).collect();
                return Ok(codec::encode(self.dtype, &values));
            }
            Storage::Cuda(b) => b.download()?,
            Storage::Hip(b) => b.download()?,
        };
        if self.is_contiguous() {
            let start = self.offset * size;
            return Ok(raw[start..start + self.len() * size].to_vec());
        }
        Ok(self
            .element_positions()
            .iter()
            .flat_map(|&p| raw[p * size..(p + 1) * size].iter().copied())
            .collect())
    }

    /// A host copy (for the interpreter, references, printing).
    pub fn to_host(&self) -> Result<HostTensor, Error> {
        Ok(HostTensor::new(
            self.dtype,
            &self.shape,
            &codec::decode(self.dtype, &self.to_bytes()?),
        )?)
    }

    /// The elements as `f64` values, row-major.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, Error> {
        Ok(self.to_host()?.to_vec())
    }

    /// The elements as `E`, which must be the tensor's dtype.
    pub fn to_vec<E: Element>(&self) -> Result<Vec<E>, Error> {
        if E::DTYPE != self.dtype {
            return Err(Error::Tensor {
                message: format!(
                    "to_vec::<{}> of a {} tensor; read it as its own dtype",
                    E::DTYPE,
                    self.dtype
                ),
            });
        }
        Ok(self.to_f64_vec()?.into_iter().map(E::from_f64).collect())
    }

    /// Copies `src` (same dtype, shape and device) into this tensor. On a GPU the copy is
    /// device to device, ordered on `device`'s stream.
    pub fn copy_from(&mut self, src: &Tensor, device: &Device) -> Result<(), Error> {
        if src.dtype != self.dtype || src.shape != self.shape {
            return Err(Error::Tensor {
                message: format!(
                    "copy_from: a {} tensor of shape {:?} into a {} tensor of shape {:?}",
                    src.dtype, src.shape, self.dtype, self.shape
                ),
            });
        }
        let on_gpu =
            !matches!(self.storage, Storage::Host(_)) && !matches!(src.storage, Storage::Host(_));
        if on_gpu && (!self.is_contiguous() || !src.is_contiguous()) {
            return Err(Error::Tensor {
                message: "copy_from on a GPU copies contiguous tensors; make one with `contiguous`"
                    .into(),
            });
        }
        match (&self.storage, &src.storage, device) {
            (Storage::Host(d), Storage::Host(_), _) => {
                let values = codec::decode(src.dtype, &src.read_bytes()?);
                let mut d = d.lock().unwrap_or_else(|e| e.into_inner());
                for (p, v) in self.element_positions().into_iter().zip(values) {
                    d[p] = v;
                }
            }
            (Storage::Cuda(d), Storage::Cuda(s), Device::Cuda(g))
                if Arc::ptr_eq(&d.ctx, &s.ctx) && Arc::ptr_eq(&d.ctx, &g.ctx) =>
            {
                let size = self.dtype.size_bytes() as usize;
                d.copy_from(
                    self.offset * size,
                    s,
                    src.offset * size,
                    self.len() * size,
                    &g.stream,
                )?
            }
            (Storage::Hip(d), Storage::Hip(s), Device::Hip(g))
                if Arc::ptr_eq(&d.ctx, &s.ctx) && Arc::ptr_eq(&d.ctx, &g.ctx) =>
            {
                let size = self.dtype.size_bytes() as usize;
                d.copy_from(self.offset * size, s, src.offset * size, self.len() * size)?
            }
            _ => {
                return Err(Error::Tensor {
                    message: format!(
                        "copy_from: {} to {} on {}; copy across devices with `Tensor::to`",
                        src.device_name(),
                        self.device_name(),
                        device.name()
                    ),
                })
            }
        }
        Ok(())
    }

    /// The device address of a GPU tensor's first element (`None` on the cpu), for handing the
    /// memory to other libraries (cuBLAS, …). The tensor must outlive their use of it.
    pub fn device_ptr(&self) -> Option<u64> {
        match &self.storage {
            Storage::Host(_) => None,
            Storage::Cuda(b) => {
                Some(b.ptr + (self.offset * self.dtype.size_bytes() as usize) as u64)
            }
            Storage::Hip(b) => {
                Some(b.ptr as u64 + (self.offset * self.dtype.size_bytes() as usize) as u64)
            }
        }
    }

    /// The view of elements `start..start + len` along dimension `dim` (sharing the memory).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor, Error> {
        let Some(&n) = self.shape.get(dim) else {
            return Err(Error::Tensor {
                message: format!(
                    "narrow: dimension {dim} of a tensor of rank {}",
                    self.shape.len()
                ),
            });
        };
        if start.checked_add(len).is_none_or(|end| end > n) {
            return Err(Error::Tensor {
                message: format!(
                    "narrow: elements {start}..{} of dimension {dim}, which has {n}",
                    start.saturating_add(len)
                ),
            });
        }
        let mut shape = self.shape.clone();
        shape[dim] = len;
        // An empty view has no first element: it keeps its parent's offset, so that every
        // view's offset stays inside its storage (a `[0, 64]` tensor narrowed to columns 8..24
        // is a `[0, 16]` view at the parent's offset, not 8 elements past an empty storage).
        let empty = shape.contains(&0);
        Ok(Tensor {
            dtype: self.dtype,
            shape,
            strides: self.strides.clone(),
            offset: if empty {
                self.offset
            } else {
                self.offset + start * self.strides[dim]
            },
            storage: self.storage.clone(),
        })
    }

    /// The view with dimensions `a` and `b` swapped (sharing the memory): `t.transpose(0, 1)` of a
    /// row-major matrix is its transpose, column-major.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor, Error> {
        let rank = self.shape.len();
        if a >= rank || b >= rank {
            return Err(Error::Tensor {
                message: format!("transpose: dimensions {a} and {b} of a tensor of rank {rank}"),
            });
        }
        let (mut shape, mut strides) = (self.shape.clone(), self.strides.clone());
        shape.swap(a, b);
        strides.swap(a, b);
        Ok(Tensor {
            dtype: self.dtype,
            shape,
            strides,
            offset: self.offset,
            storage: self.storage.clone(),
        })
    }

    /// A contiguous row-major copy on `device`.
    pub fn contiguous(&self, device: &Device) -> Result<Tensor, Error> {
        Tensor::from_bytes(self.dtype, &self.shape, &self.to_bytes()?, device)
    }

    /// A copy on `device`.
    pub fn to(&self, device: &Device) -> Result<Tensor, Error> {
        match device {
            Device::Cpu | Device::CpuWith(_) | Device::Emu(_) => {
                Tensor::from_host(&self.to_host()?, device)
            }
            _ => Tensor::from_bytes(self.dtype, &self.shape, &self.to_bytes()?, device),
        }
    }
}

impl From<&Tensor> for LaunchArg {
    fn from(t: &Tensor) -> LaunchArg {
        t.launch_arg()
    }
}

/// What a kernel's tensor parameters accept: a [`HostTensor`] (any device; a GPU launch copies
/// it over and back) or a [`Tensor`] (on the launch's device).
pub trait TensorArg {
    fn dtype(&self) -> ScalarType;
    fn shape(&self) -> &[usize];
    /// The argument for a launch.
    fn launch_arg(&self) -> LaunchArg;
    /// Receives a writable argument after the launch (host memory only; device memory was
    /// written in place).
    fn take_back(&mut self, arg: LaunchArg);
}

impl TensorArg for HostTensor {
    fn dtype(&self) -> ScalarType {
        HostTensor::dtype(self)
    }
    fn shape(&self) -> &[usize] {
        HostTensor::shape(self)
    }
    fn launch_arg(&self) -> LaunchArg {
        LaunchArg::Host(self.clone())
    }
    fn take_back(&mut self, arg: LaunchArg) {
        if let LaunchArg::Host(t) = arg {
            *self = t;
        }
    }
}

impl TensorArg for Tensor {
    fn dtype(&self) -> ScalarType {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// A view of the tensor's memory: the launch reads and writes the tensor itself (on the
    /// cpu device, through copies of its elements made around the run).
    fn launch_arg(&self) -> LaunchArg {
        LaunchArg::Device(DeviceView {
            dtype: self.dtype,
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            offset: self.offset,
            storage: self.storage.clone(),
        })
    }

    /// Nothing to take: the launch wrote the tensor's memory in place.
    fn take_back(&mut self, _: LaunchArg) {}
}
