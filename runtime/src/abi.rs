//! What a compiled kernel is, as a launch needs it: its code (PTX or an AMD code object), its
//! parameters and the entry's argument list (the ABI), its block size and shared memory, and the
//! hash of the Tile IR it was compiled from.
//!
//! This sits below the devices, which launch such code, and below [`bundle`](crate::bundle),
//! which stores it in files (and re-exports these types under their old paths,
//! `tilekit::bundle::BundleKernel` and so on): a device never needs to know the file format.

use crate::ir::{Module, ScalarType};

/// Whether `target` is an AMD chip (its bundles hold code objects rather than PTX).
pub fn is_amd(target: &str) -> bool {
    target.starts_with("gfx")
}

/// What a kernel parameter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A view of a tensor in global memory, of `rank` dimensions; `mutable` when the kernel may
    /// write it (`GlMut`).
    Global { rank: u32, mutable: bool },
    /// A scalar passed by value.
    Scalar,
}

/// One parameter of a bundled kernel, as its Rust signature declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleParam {
    pub name: String,
    pub dtype: ScalarType,
    pub kind: ParamKind,
}

/// One argument of the PTX entry (see [`BundleKernel::abi`]); `param` indexes
/// [`BundleKernel::params`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiArg {
    /// A global view's base address.
    Pointer { param: usize },
    /// A global view's size along `dim`, as an i32.
    Size { param: usize, dim: u32 },
    /// A global view's stride (elements) along `dim`, as an i32.
    Stride { param: usize, dim: u32 },
    /// A scalar (a bool as a 32-bit 0 or 1).
    Scalar { param: usize },
    /// Tensor map `map` of [`BundleKernel::tensor_maps`]: 128 bytes, 64-byte aligned, encoded
    /// at launch from its view's tensor.
    TensorMap { map: usize },
}

/// A tensor-map parameter of a kernel whose sm_90a code copies a view with TMA: the entry takes
/// it after every other argument (`.param .align 64 .b8 name[128]`), and a launch encodes it
/// from the tensor passed for parameter `view` with a box of `box_dims` elements (outermost
/// first) landing with a `swizzle_bytes`-byte swizzle (0 for none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleTensorMap {
    /// Index of the global-view parameter in [`BundleKernel::params`].
    pub view: usize,
    /// Box extents, outermost first (one per dimension of the view).
    pub box_dims: Vec<u32>,
    /// The swizzle span in bytes: 0 (none), 32, 64 or 128.
    pub swizzle_bytes: u32,
}

/// One compiled kernel variant of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleKernel {
    /// The kernel's name, also the PTX entry's.
    pub name: String,
    /// Its comptime arguments as `tilekit list` prints them (empty for a non-generic kernel).
    pub variant: String,
    /// The bundle file holding its code: PTX (`.ptx`) on NVIDIA targets, the linked code object
    /// (`.hsaco`) on AMD ones.
    pub code_file: String,
    /// The PTX (NVIDIA targets; empty on AMD ones).
    pub ptx: String,
    /// The code object (AMD targets; `None` on NVIDIA ones).
    pub code_object: Option<Vec<u8>>,
    pub params: Vec<BundleParam>,
    /// Threads per block (along x).
    pub block_threads: u32,
    /// Bytes of shared memory the kernel uses.
    pub shared_bytes: u64,
    /// Whether that shared memory is dynamic (the launch passes `shared_bytes` and opts in to
    /// the size) rather than a static allocation in the PTX.
    pub dynamic_shared: bool,
    /// The hash of the kernel's Tile IR ([`ir_hash`]): a launch uses this code
    /// only for a kernel whose IR hashes the same, so a bundle built from other source is never
    /// launched by mistake.
    pub ir_hash: String,
    /// The global-view parameters this code assumes 16-byte aligned (`tilekit_codegen::Facts`,
    /// see [`view_aligned16`]), in name order: a launch takes it only when those views are.
    /// Empty for the general variant, which every launch may take.
    pub aligned16: Vec<String>,
    /// The tensor maps the entry takes after the parameters' arguments (empty unless the code
    /// issues TMA copies).
    pub tensor_maps: Vec<BundleTensorMap>,
}

impl BundleKernel {
    /// What this code assumes of a launch, as `tilekit_codegen::Facts` prints it: `general` or
    /// `aligned16(a, b)`.
    pub fn facts(&self) -> String {
        facts_text(&self.aligned16)
    }

    /// Whether a launch whose 16-byte aligned views are `aligned` (parameter names) may run
    /// this code: every view it assumes aligned is.
    pub fn runs_with(&self, aligned: &[String]) -> bool {
        self.aligned16.iter().all(|p| aligned.contains(p))
    }

    /// The bytes of its code file: the PTX text or the code object.
    pub fn code(&self) -> &[u8] {
        self.code_object.as_deref().unwrap_or(self.ptx.as_bytes())
    }

    /// The PTX entry's arguments, in order: each global view is a pointer, then its sizes, then
    /// its strides; each scalar is itself; then the tensor maps.
    pub fn abi(&self) -> Vec<AbiArg> {
        let mut out = Vec::new();
        for (param, p) in self.params.iter().enumerate() {
            match p.kind {
                ParamKind::Global { rank, .. } => {
                    out.push(AbiArg::Pointer { param });
                    out.extend((0..rank).map(|dim| AbiArg::Size { param, dim }));
                    out.extend((0..rank).map(|dim| AbiArg::Stride { param, dim }));
                }
                ParamKind::Scalar => out.push(AbiArg::Scalar { param }),
            }
        }
        out.extend((0..self.tensor_maps.len()).map(|map| AbiArg::TensorMap { map }));
        out
    }
}

/// Facts as `tilekit_codegen::Facts` prints them: `general` for none, else
/// `aligned16(a, b)` (names in order).
pub fn facts_text(aligned16: &[String]) -> String {
    if aligned16.is_empty() {
        return "general".to_string();
    }
    let mut names: Vec<&str> = aligned16.iter().map(String::as_str).collect();
    names.sort_unstable();
    format!("aligned16({})", names.join(", "))
}

/// Whether a view is *16-byte aligned* as kernels compiled with that fact assume
/// (`tilekit_codegen::specialize`): its first element is 16-byte aligned, its last dimension is
/// contiguous, and every other stride and the last extent are multiples of 16 bytes. `offset`
/// counts elements from the start of an allocation, which every device aligns to at least 16
/// bytes (256 on CUDA, HIP and the emulator).
pub fn view_aligned16(
    dtype: ScalarType,
    offset: usize,
    shape: &[usize],
    strides: &[usize],
) -> bool {
    let es = dtype.size_bytes() as usize;
    let (Some(&inner), Some(&extent)) = (strides.last(), shape.last()) else {
        return false;
    };
    let n = strides.len();
    es > 0
        && 16 % es == 0
        && (offset * es) % 16 == 0
        && inner == 1
        && (extent * es) % 16 == 0
        && strides[..n - 1].iter().all(|s| (s * es) % 16 == 0)
}

/// Kernels compiled ahead of time for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The target the PTX was generated for (one of [`bundle::TARGETS`](crate::bundle::TARGETS)).
    pub target: String,
    pub kernels: Vec<BundleKernel>,
}

/// A 64-bit FNV-1a hash of the printed module and the kernel name: how a launch finds its
/// kernel in a bundle (stable across processes and machines).
pub fn ir_hash(module: &Module, kernel: &str) -> String {
    let text = crate::ir::print_module(module);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in kernel.bytes().chain([0]).chain(text.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The description of kernel `name` of `module` as the compiler made it (feature `jit`):
/// parameters from the compiler's ABI, writability from the IR. `code_file` is the file a
/// bundle keeps the code in (any name for code that is only launched). `None` when the module
/// has no kernel `name`.
#[cfg(feature = "jit")]
pub fn compiled_kernel(
    module: &Module,
    name: &str,
    variant: &str,
    code_file: String,
    c: &tilekit_codegen::Compiled,
) -> Option<BundleKernel> {
    use crate::ir::Type;
    use tilekit_codegen::KernelArg;

    let func = module.kernel(name)?;
    // Whether a view is writable is the IR's to say (the ABI does not carry it).
    let mutable: std::collections::HashMap<&str, bool> = func
        .params
        .iter()
        .filter_map(|p| {
            let name = func.value_names[p.index()].as_deref()?;
            match func.value_types[p.index()] {
                Type::Global { mutable, .. } => Some((name, mutable)),
                _ => None,
            }
        })
        .collect();
    let params = c
        .args
        .iter()
        .map(|a| match a {
            KernelArg::Global { name, dtype, rank } => BundleParam {
                name: name.clone(),
                dtype: *dtype,
                kind: ParamKind::Global {
                    rank: *rank,
                    mutable: mutable.get(name.as_str()).copied().unwrap_or(true),
                },
            },
            KernelArg::Scalar { name, dtype } => BundleParam {
                name: name.clone(),
                dtype: *dtype,
                kind: ParamKind::Scalar,
            },
        })
        .collect();
    let tensor_maps = c
        .tensor_maps
        .iter()
        .map(|m| {
            let view = c
                .args
                .iter()
                .position(|a| matches!(a, KernelArg::Global { name, .. } if *name == m.view))?;
            Some(BundleTensorMap {
                view,
                box_dims: vec![m.box_rows, m.box_cols],
                swizzle_bytes: match m.swizzle {
                    crate::ir::Swizzle::None => 0,
                    crate::ir::Swizzle::B32 => 32,
                    crate::ir::Swizzle::B64 => 64,
                    crate::ir::Swizzle::B128 => 128,
                },
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(BundleKernel {
        name: name.to_string(),
        variant: variant.to_string(),
        code_file,
        ptx: c.ptx().to_string(),
        code_object: c.code_object().map(<[u8]>::to_vec),
        params,
        block_threads: c.block_threads(),
        shared_bytes: c.shared_bytes,
        dynamic_shared: c.dynamic_shared,
        ir_hash: ir_hash(module, name),
        aligned16: c.facts.aligned16_params().map(str::to_string).collect(),
        tensor_maps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_is_aligned16_only_with_every_condition() {
        let bf = ScalarType::BF16;
        assert!(view_aligned16(bf, 0, &[64, 64], &[64, 1]));
        assert!(view_aligned16(bf, 8, &[64, 64], &[72, 1]));
        assert!(view_aligned16(ScalarType::F32, 4, &[3, 8], &[12, 1]));
        // A first element 2 bytes past a chunk boundary.
        assert!(!view_aligned16(bf, 1, &[64, 64], &[64, 1]));
        // A leading stride of 65 elements (130 bytes).
        assert!(!view_aligned16(bf, 0, &[64, 64], &[65, 1]));
        // Columns not a whole number of chunks: the last chunk of a row would be partial.
        assert!(!view_aligned16(bf, 0, &[64, 60], &[64, 1]));
        // A transposed view.
        assert!(!view_aligned16(bf, 0, &[64, 64], &[1, 64]));
        assert!(!view_aligned16(bf, 0, &[], &[]));
    }

    #[test]
    fn facts_text_matches_the_compilers() {
        assert_eq!(facts_text(&[]), "general");
        assert_eq!(
            facts_text(&["b".to_string(), "a".to_string()]),
            "aligned16(a, b)"
        );
    }
}
