//! TMA tensor maps: what `cp.async.bulk.tensor` needs to know of a global view.
//!
//! On sm_90a a TMA copy names its global operand by a *tensor map*: the view's base address,
//! extents and byte strides, the box (the shared tile one copy moves) and the shared-memory
//! swizzle the box lands in. A kernel receives it as a 128-byte, 64-byte-aligned parameter
//! (`.param .align 64 .b8 name[128]`, CUDA's grid-constant way of passing a map).
//!
//! [`TensorMapDesc`] is that description in tilekit's terms, checked against the rules of
//! `cuTensorMapEncodeTiled` (CUDA Driver API, "Tensor Map Object Management") so that a view TMA
//! cannot describe is an error naming what was wrong here, not a failed launch:
//! - dimension 0 (the innermost, TMA's order) must be contiguous: a transposed view has no map;
//! - the base address 16-byte aligned, every other stride a multiple of 16 bytes below 2^40,
//!   every extent in 1..=2^32;
//! - box extents in 1..=256, the inner box a multiple of 16 bytes and, with a swizzle, at most
//!   the swizzle span (128 B = 64 bf16): a wider shared tile takes several boxes.
//!
//! Its image is device-specific: on CUDA the driver's opaque encoding
//! (`cuTensorMapEncodeTiled`, through the driver library the `cuda` device loads), on the
//! emulator `tilekit-emu`'s own 128-byte format ([`tilekit_emu::asynchrony::TensorMap`], built
//! from the same logical arguments, since the driver's encoding is undocumented and may change).
//! [`TensorMapDesc::encode`] picks by device. The map embeds the address, so a map is built per
//! launch (or cached by geometry and address).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::device::Device;
use crate::ir::ScalarType;

/// Bytes of a tensor-map kernel parameter (`CUtensorMap`).
pub const TENSOR_MAP_BYTES: usize = 128;

/// Alignment of a tensor-map parameter (`cuTensorMapEncodeTiled` requires 64).
pub const TENSOR_MAP_ALIGN: usize = 64;

/// The shared-memory swizzle of a TMA box, as `CUtensorMapSwizzle` names it: the 16-byte chunks
/// of each row of the box are permuted within a span of 32, 64 or 128 bytes (the same
/// permutation `wgmma` descriptors name, so a box lands in the layout wgmma reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TmaSwizzle {
    /// Rows land as they are.
    None,
    /// 32-byte span.
    B32,
    /// 64-byte span.
    B64,
    /// 128-byte span.
    B128,
}

impl TmaSwizzle {
    /// The swizzle span in bytes (`None` for no swizzle).
    pub fn span_bytes(self) -> Option<u32> {
        match self {
            TmaSwizzle::None => None,
            TmaSwizzle::B32 => Some(32),
            TmaSwizzle::B64 => Some(64),
            TmaSwizzle::B128 => Some(128),
        }
    }

    /// The emulator's name for the same permutation.
    fn emulator(self) -> tilekit_emu::tensor_core::smem_matrix::Swizzle {
        use tilekit_emu::tensor_core::smem_matrix::Swizzle;
        match self {
            TmaSwizzle::None => Swizzle::None,
            TmaSwizzle::B32 => Swizzle::B32,
            TmaSwizzle::B64 => Swizzle::B64,
            TmaSwizzle::B128 => Swizzle::B128,
        }
    }
}

/// Why a view, box or device cannot have a tensor map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TensorMapError {
    /// TMA maps have 1 to 5 dimensions.
    #[error("tensor map of rank {rank}: TMA describes 1 to 5 dimensions")]
    Rank { rank: usize },
    /// Shape, strides and box disagree in length.
    #[error("tensor map: the view has {shape} extents and {strides} strides, the box {boxes} extents; all must match")]
    Lengths {
        shape: usize,
        strides: usize,
        boxes: usize,
    },
    /// The element type has no TMA data type of its size.
    #[error("tensor map of {dtype}: TMA copies elements of 1, 2, 4 or 8 bytes")]
    Dtype { dtype: ScalarType },
    /// The base address is not 16-byte aligned.
    #[error("tensor map: the view's first element at {address:#x} is not 16-byte aligned")]
    Address { address: u64 },
    /// An extent outside 1..=2^32.
    #[error(
        "tensor map: extent {extent} of dimension {dim} (outermost first) is outside 1..=2^32"
    )]
    Extent { dim: usize, extent: usize },
    /// The innermost dimension is not contiguous.
    #[error("tensor map: the innermost dimension has stride {stride} elements; TMA reads it contiguously (stride 1), so a transposed view takes the cp.async path")]
    InnerStride { stride: usize },
    /// A stride that is not a multiple of 16 bytes below 2^40.
    #[error("tensor map: dimension {dim} (outermost first) has a stride of {bytes} bytes; TMA needs a multiple of 16 below 2^40")]
    Stride { dim: usize, bytes: u64 },
    /// A box extent outside 1..=256.
    #[error("tensor map: box extent {extent} along dimension {dim} (outermost first) is outside 1..=256; a larger tile takes several boxes")]
    BoxExtent { dim: usize, extent: usize },
    /// The inner box is not a whole number of 16-byte chunks.
    #[error("tensor map: the inner box is {bytes} bytes; TMA needs a multiple of 16")]
    InnerBox { bytes: u64 },
    /// The inner box is wider than the swizzle span.
    #[error("tensor map: the inner box is {bytes} bytes, wider than the {span}-byte swizzle span; split the tile into boxes of at most {span} bytes")]
    SwizzleSpan { bytes: u64, span: u32 },
    /// The emulator's encoder refused the map (it re-checks the same rules).
    #[error("tensor map for the emulator: {0}")]
    Emulator(String),
    /// The driver refused the map.
    #[error("cuTensorMapEncodeTiled on {device}: {message}")]
    Driver { device: String, message: String },
    /// The device runs no TMA (the cpu interpreter, AMD GPUs).
    #[error(
        "device {device} has no TMA tensor maps (they exist on CUDA devices and the emulator)"
    )]
    Unsupported { device: String },
}

/// One tensor map's logical content. Dimension 0 is the innermost, as TMA counts
/// ([`TensorMapDesc::for_view`] converts from tilekit's outermost-first order).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorMapDesc {
    pub dtype: ScalarType,
    /// Device address of element (0, …, 0).
    pub address: u64,
    /// Extent of each dimension, innermost first.
    pub dims: Vec<u64>,
    /// Byte stride of dimensions 1.. (rank − 1 entries; dimension 0 is dense).
    pub strides: Vec<u64>,
    /// Box extent of each dimension, innermost first.
    pub box_dims: Vec<u32>,
    pub swizzle: TmaSwizzle,
}

/// A tensor map as a kernel parameter takes it: 128 bytes, 64-byte aligned.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct TensorMapImage(pub [u8; TENSOR_MAP_BYTES]);

impl fmt::Debug for TensorMapImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TensorMapImage(")?;
        for b in &self.0[..16] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl TensorMapDesc {
    /// The map of a view with `shape` and element `strides` (outermost first, as tensors and
    /// `Gl` views hold them) whose first element is at `address`, copied in boxes of `tile`
    /// elements (outermost first: a shared tile's rows × columns) landing with `swizzle`.
    pub fn for_view(
        dtype: ScalarType,
        address: u64,
        shape: &[usize],
        strides: &[usize],
        tile: &[usize],
        swizzle: TmaSwizzle,
    ) -> Result<TensorMapDesc, TensorMapError> {
        let rank = shape.len();
        if !(1..=5).contains(&rank) {
            return Err(TensorMapError::Rank { rank });
        }
        if strides.len() != rank || tile.len() != rank {
            return Err(TensorMapError::Lengths {
                shape: rank,
                strides: strides.len(),
                boxes: tile.len(),
            });
        }
        let es = dtype.size_bytes() as u64;
        if ![1, 2, 4, 8].contains(&es) {
            return Err(TensorMapError::Dtype { dtype });
        }
        if address % 16 != 0 {
            return Err(TensorMapError::Address { address });
        }
        for (dim, &extent) in shape.iter().enumerate() {
            if extent == 0 || extent as u64 > 1 << 32 {
                return Err(TensorMapError::Extent { dim, extent });
            }
        }
        let inner = rank - 1;
        // An inner extent of 1 reads one element: its stride never matters.
        if strides[inner] != 1 && shape[inner] != 1 {
            return Err(TensorMapError::InnerStride {
                stride: strides[inner],
            });
        }
        let mut byte_strides = Vec::with_capacity(rank - 1);
        for dim in (0..inner).rev() {
            let bytes = strides[dim] as u64 * es;
            let bytes = if shape[dim] == 1 {
                // Only coordinate 0 of a unit dimension is inside the tensor, so its stride
                // addresses nothing; any legal value describes the same view (a [1, n] slice
                // of a larger tensor keeps a map whatever its row pitch).
                bytes.div_ceil(16).max(1) * 16
            } else {
                bytes
            };
            if bytes % 16 != 0 || bytes >= 1 << 40 {
                return Err(TensorMapError::Stride { dim, bytes });
            }
            byte_strides.push(bytes);
        }
        for (dim, &extent) in tile.iter().enumerate() {
            if extent == 0 || extent > 256 {
                return Err(TensorMapError::BoxExtent { dim, extent });
            }
        }
        let inner_bytes = tile[inner] as u64 * es;
        if inner_bytes % 16 != 0 {
            return Err(TensorMapError::InnerBox { bytes: inner_bytes });
        }
        if let Some(span) = swizzle.span_bytes() {
            if inner_bytes > u64::from(span) {
                return Err(TensorMapError::SwizzleSpan {
                    bytes: inner_bytes,
                    span,
                });
            }
        }
        Ok(TensorMapDesc {
            dtype,
            address,
            dims: shape.iter().rev().map(|&d| d as u64).collect(),
            strides: byte_strides,
            box_dims: tile.iter().rev().map(|&b| b as u32).collect(),
            swizzle,
        })
    }

    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Bytes per element.
    pub fn element_bytes(&self) -> u32 {
        self.dtype.size_bytes()
    }

    /// Bytes one box fills in shared memory: what a TMA load's `complete_tx` counts, and so
    /// what its mbarrier's `expect_tx` must announce (out-of-bounds elements included: they
    /// land as zeros).
    pub fn box_bytes(&self) -> u64 {
        self.box_dims.iter().map(|&b| u64::from(b)).product::<u64>()
            * u64::from(self.element_bytes())
    }

    /// The same map at another base address (a map embeds its address; views of one geometry
    /// differ only there).
    pub fn at(&self, address: u64) -> TensorMapDesc {
        TensorMapDesc {
            address,
            ..self.clone()
        }
    }

    /// The emulator's image of this map (`tilekit-emu`'s 128-byte format, zero fill outside
    /// the tensor).
    pub fn emulator_image(&self) -> Result<TensorMapImage, TensorMapError> {
        use tilekit_emu::asynchrony::{OobFill, TensorMap};
        let map = TensorMap::new(
            self.element_bytes(),
            self.address,
            self.dims.clone(),
            self.strides.clone(),
            self.box_dims.clone(),
            self.swizzle.emulator(),
            OobFill::Zero,
        )
        .map_err(|e| TensorMapError::Emulator(e.to_string()))?;
        Ok(TensorMapImage(map.encode()))
    }

    /// This map's image for `device`: the driver's encoding on CUDA, the emulator's on the
    /// emulator; other devices run no TMA.
    pub fn encode(&self, device: &Device) -> Result<TensorMapImage, TensorMapError> {
        match device {
            Device::Cuda(g) => cuda_encode::encode(&g.ctx, self),
            Device::Emu(_) => self.emulator_image(),
            other => Err(TensorMapError::Unsupported {
                device: other.name(),
            }),
        }
    }
}

/// Encoded maps by device and description: a launch asks for the map of each view it copies
/// with TMA, and the same view (same geometry, box and address) on the same device is encoded
/// once. The map embeds the address, so a freed and reallocated buffer at the same address
/// with the same geometry may reuse its map, which describes it exactly.
#[derive(Debug, Default)]
pub struct TensorMapCache {
    maps: Mutex<HashMap<(String, TensorMapDesc), TensorMapImage>>,
    encodes: AtomicUsize,
}

/// Entries a [`TensorMapCache`] holds before it starts over (addresses churn as tensors come
/// and go; a map is cheap to encode again).
pub const TENSOR_MAP_CACHE_ENTRIES: usize = 4096;

impl TensorMapCache {
    /// An empty cache.
    pub fn new() -> TensorMapCache {
        TensorMapCache::default()
    }

    /// The map of `desc` on `device`, encoded on first use.
    pub fn get(
        &self,
        device: &Device,
        desc: &TensorMapDesc,
    ) -> Result<TensorMapImage, TensorMapError> {
        let key = (device.name(), desc.clone());
        if let Some(image) = self.lock().get(&key) {
            return Ok(*image);
        }
        let image = desc.encode(device)?;
        self.encodes.fetch_add(1, Ordering::Relaxed);
        let mut maps = self.lock();
        if maps.len() >= TENSOR_MAP_CACHE_ENTRIES {
            maps.clear();
        }
        maps.insert(key, image);
        Ok(image)
    }

    /// How many maps this cache has encoded (cache misses).
    pub fn encodes(&self) -> usize {
        self.encodes.load(Ordering::Relaxed)
    }

    /// How many maps it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, TensorMapDesc), TensorMapImage>> {
        // A panic while holding the lock leaves a map that is either absent or complete.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cache launches encode their kernels' tensor maps through (one per process).
pub fn launch_cache() -> &'static TensorMapCache {
    static CACHE: std::sync::OnceLock<TensorMapCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(TensorMapCache::new)
}

/// The image of tensor-map parameter `m` for a launch on `device` whose argument for the map's
/// view is `arg`, its first element at device address `address`: the map of the tensor's
/// actual extents and strides, with the box and swizzle the code was compiled for, through
/// [`launch_cache`]. A view TMA cannot describe is an error naming the rule it breaks; the
/// runtime gives TMA code only launches whose views meet the 16-byte alignment the compile
/// assumed, which covers the stride and address rules, so this is the last check, not the
/// dispatch.
pub(crate) fn launch_map(
    device: &Device,
    m: &crate::abi::BundleTensorMap,
    arg: &crate::device::LaunchArg,
    address: u64,
) -> Result<TensorMapImage, TensorMapError> {
    let swizzle = match m.swizzle_bytes {
        0 => TmaSwizzle::None,
        32 => TmaSwizzle::B32,
        64 => TmaSwizzle::B64,
        _ => TmaSwizzle::B128,
    };
    let dtype = arg.tensor_dtype().ok_or(TensorMapError::Rank { rank: 0 })?;
    let tile: Vec<usize> = m.box_dims.iter().map(|&b| b as usize).collect();
    let desc = TensorMapDesc::for_view(dtype, address, arg.shape(), arg.strides(), &tile, swizzle)?;
    launch_cache().get(device, &desc)
}

/// `cuTensorMapEncodeTiled` through the driver the `cuda` device loaded.
mod cuda_encode {
    use cudarc::driver::{result, sys};

    use super::{TensorMapDesc, TensorMapError, TensorMapImage, TmaSwizzle};
    use crate::device::cuda::Context;
    use crate::ir::ScalarType;

    /// The driver's data type of an element: the float types by name (TMA converts nothing in
    /// tile mode, but the type fixes the element size and the NaN fill), the rest as unsigned
    /// integers of their size (bytes are copied unchanged).
    fn data_type(dtype: ScalarType) -> sys::CUtensorMapDataType {
        use sys::CUtensorMapDataType as T;
        match dtype {
            ScalarType::F32 => T::CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
            ScalarType::F16 => T::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
            ScalarType::BF16 => T::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
            ScalarType::I32 => T::CU_TENSOR_MAP_DATA_TYPE_INT32,
            ScalarType::U32 => T::CU_TENSOR_MAP_DATA_TYPE_UINT32,
            ScalarType::I64 => T::CU_TENSOR_MAP_DATA_TYPE_INT64,
            ScalarType::F8E4M3 | ScalarType::F8E5M2 | ScalarType::I8 | ScalarType::Bool => {
                T::CU_TENSOR_MAP_DATA_TYPE_UINT8
            }
        }
    }

    fn swizzle(s: TmaSwizzle) -> sys::CUtensorMapSwizzle {
        use sys::CUtensorMapSwizzle as S;
        match s {
            TmaSwizzle::None => S::CU_TENSOR_MAP_SWIZZLE_NONE,
            TmaSwizzle::B32 => S::CU_TENSOR_MAP_SWIZZLE_32B,
            TmaSwizzle::B64 => S::CU_TENSOR_MAP_SWIZZLE_64B,
            TmaSwizzle::B128 => S::CU_TENSOR_MAP_SWIZZLE_128B,
        }
    }

    pub(super) fn encode(
        ctx: &Context,
        desc: &TensorMapDesc,
    ) -> Result<TensorMapImage, TensorMapError> {
        let device = format!("{ctx:?}");
        ctx.bind().map_err(|e| TensorMapError::Driver {
            device: device.clone(),
            message: e.to_string(),
        })?;
        let rank = desc.rank();
        // Element strides of 1: every element of the box is copied (tile mode).
        let element_strides = vec![1u32; rank];
        let mut map = sys::CUtensorMap { opaque: [0; 16] };
        // SAFETY: `map` is a 128-byte, 64-byte-aligned CUtensorMap the driver writes; the
        // dimension, box and element-stride arrays hold `rank` entries and the stride array
        // `rank − 1`, as the call reads; the address is only recorded, never dereferenced here.
        let r = unsafe {
            sys::cuTensorMapEncodeTiled(
                &mut map,
                data_type(desc.dtype),
                rank as u32,
                desc.address as *mut std::ffi::c_void,
                desc.dims.as_ptr(),
                desc.strides.as_ptr(),
                desc.box_dims.as_ptr(),
                element_strides.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle(desc.swizzle),
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        if r != sys::CUresult::CUDA_SUCCESS {
            return Err(TensorMapError::Driver {
                device,
                message: crate::device::cuda::describe_error(result::DriverError(r)),
            });
        }
        let mut image = [0u8; super::TENSOR_MAP_BYTES];
        for (chunk, word) in image.chunks_exact_mut(8).zip(map.opaque) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        Ok(TensorMapImage(image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BF: ScalarType = ScalarType::BF16;

    #[test]
    fn a_row_major_view_becomes_innermost_first_byte_strides() {
        // Rows of 100 bf16 in a buffer with a pitch of 128 elements, 64-column boxes of 8 rows.
        let d = TensorMapDesc::for_view(
            BF,
            0x1000,
            &[70, 100],
            &[128, 1],
            &[8, 64],
            TmaSwizzle::B128,
        )
        .unwrap();
        assert_eq!(d.dims, vec![100, 70]);
        assert_eq!(d.strides, vec![256]);
        assert_eq!(d.box_dims, vec![64, 8]);
        assert_eq!(d.box_bytes(), 64 * 8 * 2);
        let d3 = TensorMapDesc::for_view(
            ScalarType::F32,
            0x2000,
            &[3, 20, 12],
            &[20 * 16, 16, 1],
            &[1, 4, 8],
            TmaSwizzle::B32,
        )
        .unwrap();
        assert_eq!(d3.dims, vec![12, 20, 3]);
        assert_eq!(d3.strides, vec![64, 1280]);
        assert_eq!(d3.box_dims, vec![8, 4, 1]);
    }

    #[test]
    fn strides_that_are_not_multiples_of_16_bytes_are_refused_naming_the_dimension() {
        let e = TensorMapDesc::for_view(BF, 0, &[64, 60], &[60, 1], &[8, 64], TmaSwizzle::B128)
            .unwrap_err();
        assert_eq!(e, TensorMapError::Stride { dim: 0, bytes: 120 });
        assert!(e.to_string().contains("120 bytes"), "{e}");
        // A unit dimension's stride addresses nothing: a one-row slice keeps its map.
        let row =
            TensorMapDesc::for_view(BF, 0, &[1, 64], &[60, 1], &[1, 64], TmaSwizzle::B128).unwrap();
        assert_eq!(row.strides[0] % 16, 0);
    }

    #[test]
    fn boxes_beyond_256_or_wider_than_the_swizzle_span_are_refused() {
        let view = |tile: &[usize], sw| {
            TensorMapDesc::for_view(BF, 0, &[1024, 1024], &[1024, 1], tile, sw)
        };
        assert_eq!(
            view(&[257, 64], TmaSwizzle::B128).unwrap_err(),
            TensorMapError::BoxExtent {
                dim: 0,
                extent: 257
            }
        );
        assert!(view(&[256, 64], TmaSwizzle::B128).is_ok());
        assert_eq!(
            view(&[64, 128], TmaSwizzle::B128).unwrap_err(),
            TensorMapError::SwizzleSpan {
                bytes: 256,
                span: 128
            }
        );
        assert_eq!(
            view(&[64, 32], TmaSwizzle::B32).unwrap_err(),
            TensorMapError::SwizzleSpan {
                bytes: 64,
                span: 32
            }
        );
        assert!(view(&[64, 32], TmaSwizzle::B64).is_ok());
        assert!(view(&[64, 128], TmaSwizzle::None).is_ok());
        assert_eq!(
            view(&[64, 4], TmaSwizzle::None).unwrap_err(),
            TensorMapError::InnerBox { bytes: 8 }
        );
    }

    #[test]
    fn views_tma_cannot_describe_are_refused() {
        // Transposed: the innermost dimension is strided.
        assert_eq!(
            TensorMapDesc::for_view(BF, 0, &[64, 64], &[1, 64], &[64, 8], TmaSwizzle::None)
                .unwrap_err(),
            TensorMapError::InnerStride { stride: 64 }
        );
        assert_eq!(
            TensorMapDesc::for_view(BF, 8, &[64, 64], &[64, 1], &[8, 64], TmaSwizzle::B128)
                .unwrap_err(),
            TensorMapError::Address { address: 8 }
        );
        assert!(matches!(
            TensorMapDesc::for_view(BF, 0, &[64, 64], &[64, 1], &[8], TmaSwizzle::B128),
            Err(TensorMapError::Lengths { .. })
        ));
        assert_eq!(
            TensorMapDesc::for_view(BF, 0, &[1; 6], &[1; 6], &[1; 6], TmaSwizzle::None)
                .unwrap_err(),
            TensorMapError::Rank { rank: 6 }
        );
        assert!(matches!(
            TensorMapDesc::for_view(BF, 0, &[0, 64], &[64, 1], &[8, 64], TmaSwizzle::B128),
            Err(TensorMapError::Extent { dim: 0, extent: 0 })
        ));
        assert!(matches!(
            TensorMapDesc::for_view(BF, 0, &[64, 64], &[64, 1], &[8, 64], TmaSwizzle::B128)
                .unwrap()
                .encode(&Device::Cpu),
            Err(TensorMapError::Unsupported { .. })
        ));
    }

    #[test]
    fn the_cache_encodes_each_view_once_per_device() {
        let emu = Device::emulator("sm_90a").unwrap();
        let cache = TensorMapCache::new();
        let d = TensorMapDesc::for_view(
            BF,
            0x4000,
            &[70, 100],
            &[128, 1],
            &[8, 64],
            TmaSwizzle::B128,
        )
        .unwrap();
        let first = cache.get(&emu, &d).unwrap();
        assert_eq!(cache.get(&emu, &d).unwrap(), first);
        assert_eq!(cache.encodes(), 1);
        // Another address is another map.
        let moved = cache.get(&emu, &d.at(0x8000)).unwrap();
        assert_ne!(moved, first);
        assert_eq!((cache.encodes(), cache.len()), (2, 2));
        // A device without TMA is an error, and nothing is cached.
        assert!(cache.get(&Device::Cpu, &d).is_err());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn the_emulator_image_carries_the_logical_map() {
        let d = TensorMapDesc::for_view(
            BF,
            0x4000,
            &[70, 100],
            &[128, 1],
            &[8, 64],
            TmaSwizzle::B128,
        )
        .unwrap();
        let image = d.emulator_image().unwrap();
        let map = tilekit_emu::asynchrony::TensorMap::decode(&image.0).unwrap();
        assert_eq!(map.global_address, 0x4000);
        assert_eq!(map.dims, d.dims);
        assert_eq!(map.strides, d.strides);
        assert_eq!(map.box_dims, d.box_dims);
        assert_eq!(map.element_bytes, 2);
        assert_eq!(map.box_bytes(), d.box_bytes());
        assert_eq!(std::mem::align_of::<TensorMapImage>(), TENSOR_MAP_ALIGN);
    }
}
