//! AOT kernel bundles: code compiled ahead of time plus what a launch needs to know.
//!
//! `tilekit bundle --target sm_90a --out DIR` (feature `jit`) compiles every registered kernel
//! variant and writes `DIR` with:
//! - one code file per variant (`<kernel>_<comptime arguments>.ptx`; `.hsaco`, the linked code
//!   object, for the AMD targets `gfx90a`, `gfx942`, `gfx950`),
//! - [`METADATA_FILE`] (`bundle.json`), the metadata: JSON with a schema version, its fields
//!   listed below,
//! - [`PACKED_FILE`] (`bundle.tkb`), the same bundle in one file for `include_bytes!`: a tar
//!   archive (`tar tf bundle.tkb` lists it) of `bundle.json` and the code files.
//!
//! A runtime built without `jit` (no LLVM, no MLIR) loads it with [`Bundle::load_dir`] or
//! [`Bundle::from_bytes`]: compile here, run there.
//!
//! ```no_run
//! # fn main() -> Result<(), tilekit::bundle::BundleError> {
//! let bundle = tilekit::Bundle::load_dir("kernels-sm_90a")?;
//! let gemm = bundle.kernel("gemm", "<bf16, 64, 64, 32, 32, 32>")?;
//! println!("{} threads, {} bytes of shared memory", gemm.block_threads, gemm.shared_bytes);
//! // Or embedded in the binary:
//! // let bundle = tilekit::Bundle::from_bytes(include_bytes!("../kernels-sm_90a/bundle.tkb"))?;
//! # Ok(()) }
//! ```
//!
//! # Metadata, schema version 4
//!
//! ```json
//! {
//!   "format": "tilekit-bundle",
//!   "schema": 4,
//!   "target": "sm_90a",
//!   "kernels": [
//!     {
//!       "name": "gemm",
//!       "variant": "<bf16, 64, 64, 32, 32, 32>",
//!       "ir_hash": "3f1c0a9d2b7e4c55",
//!       "code_file": "gemm_bf16_64_64_32_32_32.ptx",
//!       "block_threads": 128,
//!       "shared_bytes": 32768,
//!       "dynamic_shared": false,
//!       "aligned16": ["a", "b"],
//!       "params": [
//!         { "kind": "global", "name": "a", "dtype": "bf16", "rank": 2, "writable": false },
//!         { "kind": "scalar", "name": "alpha", "dtype": "f32" }
//!       ],
//!       "abi": ["a:ptr", "a:size0", "a:size1", "a:stride0", "a:stride1", "alpha:f32"]
//!     }
//!   ]
//! }
//! ```
//!
//! - `target`: one of [`TARGETS`]; NVIDIA bundles hold PTX (`.ptx`, with the kernel's
//!   `.entry`), AMD ones linked code objects (`.hsaco`, ELF with the descriptor `<name>.kd`).
//! - `variant`: the comptime arguments as `tilekit list` prints them (may be empty), one line.
//! - `ir_hash`: 16 hex digits, the hash of the kernel's Tile IR: a
//!   launch takes this code only for a kernel whose IR hashes the same.
//! - `code_file`: a plain file name in the bundle (letters, digits, `_`, `-`, `.`; no
//!   directories, no `..`).
//! - `block_threads`: threads per block along x; `shared_bytes`: shared memory (LDS) per block;
//!   `dynamic_shared`: whether the launch passes it as dynamic shared memory.
//! - `aligned16`: the global-view parameters this code assumes 16-byte aligned (the facts of
//!   `tilekit_codegen::specialize`, see [`crate::abi::view_aligned16`]), in name order; empty
//!   for the general variant. A kernel variant whose code differs under those facts has two
//!   entries, the general one and the aligned one (its code file ends in `.aligned16.ptx` or
//!   `.aligned16.hsaco`); a launch takes the entry whose facts its views satisfy, else the
//!   general one.
//! - `params`: the kernel's parameters in order; `writable` views are `GlMut`.
//! - `abi`: the entry's arguments in order ([`BundleKernel::abi`]): each global view is a
//!   pointer, then its sizes, then its strides (in elements), as 32-bit signed integers; each
//!   scalar is itself (bool as a 32-bit 0 or 1). It follows from `params`; a reader checks that
//!   it does.
//!
//! Unknown fields are errors. Readers check everything before they allocate anything sized from
//! their input, within the limits of [`limits`]: metadata of at most 16 MiB, code files of at
//! most 256 MiB (1 GiB in all), rank 1 to 4, blocks of 1 to 1024 threads, shared memory within
//! the target's limit, each kernel variant and each code file once, no control characters in
//! names, regular files only (never a link, FIFO or device), nothing outside the directory.
//! [`Bundle::write_dir`] and [`Bundle::to_bytes`] run the same checks before writing.
//!
//! Bundles of the earlier text format (`bundle.txt`, packed as `tilekit-bundle-pack 2`) are
//! refused with the command that rebuilds them, and so are JSON bundles of an earlier schema
//! (version 3 had no `aligned16` and one entry per variant).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

// What a compiled kernel is lives below the devices (`abi`); this module is its file format.
pub use crate::abi::{is_amd, AbiArg, Bundle, BundleKernel, BundleParam, ParamKind};

mod directory;
mod format;
mod legacy;
pub mod limits;
mod pack;
#[cfg(feature = "jit")]
mod progress;
#[cfg(test)]
mod tests;
mod validate;

#[cfg(feature = "jit")]
pub use progress::terminal_progress;

/// The metadata format version this runtime reads and writes.
pub const FORMAT_VERSION: u32 = 4;
/// The metadata file of a bundle directory (JSON).
pub const METADATA_FILE: &str = "bundle.json";
/// The whole bundle in one file (for `include_bytes!`): a tar archive.
pub const PACKED_FILE: &str = "bundle.tkb";
/// The targets a bundle may hold code for: PTX for NVIDIA, code objects (`.hsaco`) for AMD.
pub const TARGETS: [&str; 5] = ["sm_80", "sm_90a", "gfx90a", "gfx942", "gfx950"];

/// Why a bundle could not be read or written. `bundle` names where it came from (its directory
/// or `<bytes>`).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle {bundle}: missing file `{file}`")]
    MissingFile { bundle: String, file: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "bundle {bundle}: format version {found}, but this tilekit reads version {FORMAT_VERSION}; \
         rebuild the bundle with this tilekit's `tilekit bundle`"
    )]
    Version { bundle: String, found: String },
    #[error("bundle {bundle}: unknown target `{given}`; bundles hold code for: {}", TARGETS.join(", "))]
    UnknownTarget { bundle: String, given: String },
    #[error(
        "bundle {bundle}: {found} was written by an older tilekit; this one reads `{METADATA_FILE}` \
         (schema {FORMAT_VERSION}) and tar-packed `{PACKED_FILE}`: rebuild it with `{rebuild}`"
    )]
    Legacy {
        bundle: String,
        found: String,
        rebuild: String,
    },
    #[error("bundle {bundle}: `{file}` is {size} bytes; at most {limit} are read")]
    TooLarge {
        bundle: String,
        file: String,
        size: u64,
        limit: u64,
    },
    #[error("bundle {bundle}: `{file}` is {kind}, not a regular file")]
    NotAFile {
        bundle: String,
        file: String,
        kind: &'static str,
    },
    #[error("bundle {bundle}: file name `{file}` {problem}")]
    FileName {
        bundle: String,
        file: String,
        problem: String,
    },
    #[error("bundle {bundle}: {message}")]
    Invalid { bundle: String, message: String },
    #[error("bundle {bundle}: no kernel `{kernel}{variant}`; it holds: {available}")]
    UnknownKernel {
        bundle: String,
        kernel: String,
        variant: String,
        available: String,
    },
    #[error("compiling {kernel}{variant} for {target}: {message}")]
    Compile {
        kernel: String,
        variant: String,
        target: String,
        message: String,
    },
}

impl Bundle {
    /// Loads the bundle that `tilekit bundle` wrote to `dir`: its [`METADATA_FILE`] and the code
    /// files that names, all checked (see the module's docs); nothing outside `dir` is read.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Bundle, BundleError> {
        let dir = dir.as_ref();
        let origin = dir.display().to_string();
        if !directory::exists(dir, METADATA_FILE) && directory::exists(dir, legacy::METADATA_FILE) {
            // Read (safely) only to name the target in the command that rebuilds it.
            let text = directory::read(
                &origin,
                dir,
                legacy::METADATA_FILE,
                limits::MAX_METADATA_BYTES,
            )
            .unwrap_or_default();
            return Err(legacy::error(
                &origin,
                &format!("its metadata `{}`", legacy::METADATA_FILE),
                &text,
                &origin,
            ));
        }
        let metadata = directory::read(&origin, dir, METADATA_FILE, limits::MAX_METADATA_BYTES)?;
        let (target, mut kernels) = format::decode(&origin, &metadata)?;
        let mut total = 0;
        for k in &mut kernels {
            // The bundle's budget left, if less than a file's.
            let limit = limits::MAX_CODE_FILE_BYTES.min(limits::MAX_BUNDLE_BYTES - total);
            let code = directory::read(&origin, dir, &k.code_file, limit)?;
            total = validate::add_code_bytes(&origin, total, code.len() as u64)?;
            attach_code(&origin, &target, k, code)?;
        }
        Ok(Bundle { target, kernels })
    }

    /// Loads a bundle from the bytes of its [`PACKED_FILE`], e.g. embedded with
    /// `include_bytes!("…/bundle.tkb")`. Any bytes give a bundle or an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let origin = "<bytes>";
        if legacy::recognizes(bytes) {
            return Err(legacy::error(
                origin,
                "this packed bundle (`tilekit-bundle-pack`)",
                bytes,
                "<dir>",
            ));
        }
        let mut files: HashMap<String, Vec<u8>> =
            pack::unpack(origin, bytes)?.into_iter().collect();
        let missing = |file: &str| BundleError::MissingFile {
            bundle: origin.to_string(),
            file: file.to_string(),
        };
        let metadata = files
            .remove(METADATA_FILE)
            .ok_or_else(|| missing(METADATA_FILE))?;
        let (target, mut kernels) = format::decode(origin, &metadata)?;
        let mut total = 0;
        for k in &mut kernels {
            // Each file once: `decode` checked that no two kernels name the same one.
            let code = files
                .remove(&k.code_file)
                .ok_or_else(|| missing(&k.code_file))?;
            total = validate::add_code_bytes(origin, total, code.len() as u64)?;
            attach_code(origin, &target, k, code)?;
        }
        if let Some(extra) = files.keys().min() {
            return Err(BundleError::Invalid {
                bundle: origin.to_string(),
                message: format!("the archive holds `{extra}`, which no kernel names"),
            });
        }
        Ok(Bundle { target, kernels })
    }

    /// The metadata ([`METADATA_FILE`]): JSON text, as the module's docs describe.
    pub fn metadata(&self) -> Result<String, BundleError> {
        format::encode(self)
    }

    /// The whole bundle in one buffer ([`PACKED_FILE`]'s contents, a tar archive), after the
    /// checks a reader makes (a bundle that could not be loaded back is not packed).
    pub fn to_bytes(&self) -> Result<Vec<u8>, BundleError> {
        let origin = format!("for {}", validate::shown(&self.target));
        validate::check_bundle(&origin, self)?;
        let metadata = self.metadata()?;
        let files: Vec<(&str, &[u8])> = std::iter::once((METADATA_FILE, metadata.as_bytes()))
            .chain(
                self.kernels
                    .iter()
                    .map(|k| (k.code_file.as_str(), k.code())),
            )
            .collect();
        pack::pack(&origin, &files)
    }

    /// Writes the bundle to `dir` (created if missing): the code files, [`PACKED_FILE`] and
    /// [`METADATA_FILE`], after the checks a reader makes. Files are only ever created inside
    /// `dir`: an existing link there is replaced, not written through. The metadata file of an
    /// older tilekit's bundle in `dir` is removed.
    pub fn write_dir(&self, dir: impl AsRef<Path>) -> Result<(), BundleError> {
        let dir = dir.as_ref();
        validate::check_bundle(&dir.display().to_string(), self)?;
        let packed = self.to_bytes()?;
        let metadata = self.metadata()?;
        std::fs::create_dir_all(dir).map_err(|source| BundleError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        for k in &self.kernels {
            directory::write(dir, &k.code_file, k.code())?;
        }
        directory::write(dir, PACKED_FILE, &packed)?;
        // The metadata last: a directory with it holds everything it names.
        directory::write(dir, METADATA_FILE, metadata.as_bytes())?;
        directory::remove_stale(dir, legacy::METADATA_FILE)
    }

    /// The variant `variant` (comptime arguments as `tilekit list` prints them; spaces do not
    /// matter) of kernel `name`.
    pub fn kernel(&self, name: &str, variant: &str) -> Result<&BundleKernel, BundleError> {
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        // The general entry where a variant also has an aligned one.
        self.kernels
            .iter()
            .filter(|k| k.name == name && squash(&k.variant) == squash(variant))
            .min_by_key(|k| k.aligned16.len())
            .ok_or_else(|| BundleError::UnknownKernel {
                bundle: format!("for {}", self.target),
                kernel: name.to_string(),
                variant: variant.to_string(),
                available: self
                    .kernels
                    .iter()
                    .map(|k| format!("{}{}", k.name, k.variant))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The metadata (JSON).
impl fmt::Display for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metadata().map_err(|_| fmt::Error)?)
    }
}

/// The file name of a variant's PTX: `gemm<bf16, 64>` → `gemm_bf16_64.ptx`.
pub fn ptx_file_name(kernel: &str, variant: &str) -> String {
    code_file_name(kernel, variant, "ptx")
}

/// The code file of a variant: the kernel name and its comptime arguments, then `.{extension}`.
pub fn code_file_name(kernel: &str, variant: &str, extension: &str) -> String {
    let mut name = kernel.to_string();
    for part in variant
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-')
        .filter(|p| !p.is_empty())
    {
        name.push('_');
        name.push_str(part);
    }
    name + "." + extension
}

/// Puts `code` (the bytes of `k`'s code file) into `k`, as PTX text or a code object by the
/// target, and checks it.
fn attach_code(
    origin: &str,
    target: &str,
    k: &mut BundleKernel,
    code: Vec<u8>,
) -> Result<(), BundleError> {
    if is_amd(target) {
        k.code_object = Some(code);
    } else {
        k.ptx = String::from_utf8(code).map_err(|_| BundleError::Invalid {
            bundle: origin.to_string(),
            message: format!("`{}` is not UTF-8 text", k.code_file),
        })?;
    }
    validate::check_code(origin, target, k)
}

/// The bundle entry for a compiled kernel (feature `jit`): parameters from
/// the compiler's ABI, writability from the IR ([`crate::abi::compiled_kernel`]).
#[cfg(feature = "jit")]
pub fn kernel_from_compiled(
    module: &crate::ir::Module,
    name: &str,
    variant: &str,
    c: &tilekit_codegen::Compiled,
) -> Result<BundleKernel, BundleError> {
    let extension = if c.code_object().is_some() {
        "hsaco"
    } else {
        "ptx"
    };
    let code_file = if c.facts.is_general() {
        code_file_name(name, variant, extension)
    } else {
        code_file_name(name, variant, &format!("aligned16.{extension}"))
    };
    crate::abi::compiled_kernel(module, name, variant, code_file, c).ok_or_else(|| {
        BundleError::Compile {
            kernel: name.to_string(),
            variant: variant.to_string(),
            target: c.target.name().to_string(),
            message: "the module has no such kernel".into(),
        }
    })
}

/// Where [`compile_registry_with`] is: `done` of `total` kernel variants compiled, and the
/// one it compiles next (`None` once all are done).
#[cfg(feature = "jit")]
#[derive(Clone, Copy, Debug)]
pub struct CompileProgress<'a> {
    pub done: usize,
    pub total: usize,
    /// The kernel and variant being compiled.
    pub next: Option<(&'a str, &'a str)>,
}

/// Compiles every registered kernel variant for `target` (feature `jit`).
#[cfg(feature = "jit")]
pub fn compile_registry(target: tilekit_codegen::Target) -> Result<Bundle, BundleError> {
    compile_registry_with(target, &mut |_| {})
}

/// [`compile_registry`], telling `progress` before each variant and once at the end (a command
/// line can draw a progress bar from it).
#[cfg(feature = "jit")]
pub fn compile_registry_with(
    target: tilekit_codegen::Target,
    progress: &mut dyn FnMut(CompileProgress<'_>),
) -> Result<Bundle, BundleError> {
    if !TARGETS.contains(&target.name()) {
        return Err(BundleError::UnknownTarget {
            bundle: "to build".into(),
            given: target.name().to_string(),
        });
    }
    let registry = crate::registry::kernels();
    // Variants registered for other targets only (`<..> for [sm_90a]`) are not in the bundle.
    let total = registry
        .iter()
        .flat_map(|k| k.variants)
        .filter(|v| v.is_for(target.name()))
        .count();
    let mut kernels: Vec<BundleKernel> = Vec::new();
    let mut done = 0;
    for k in registry {
        for v in k.variants.iter().filter(|v| v.is_for(target.name())) {
            progress(CompileProgress {
                done,
                total,
                next: Some((k.name, v.args)),
            });
            done += 1;
            let fail = |message: String| BundleError::Compile {
                kernel: k.name.to_string(),
                variant: v.args.to_string(),
                target: target.name().to_string(),
                message,
            };
            let module = (v.module)();
            let c = tilekit_codegen::compile_cached(module, k.name, target)
                .map_err(|e| fail(e.to_string()))?;
            let mut entries = vec![kernel_from_compiled(module, k.name, v.args, &c)?];
            // The variant for launches whose views are all 16-byte aligned, where assuming so
            // changes the code (global → shared tile copies, vector accesses).
            let func = module
                .kernel(k.name)
                .ok_or_else(|| fail("the module has no such kernel".into()))?;
            let facts = tilekit_codegen::Facts::all_aligned16(func);
            if !facts.is_general() {
                let a = tilekit_codegen::compile_cached_with(module, k.name, target, &facts)
                    .map_err(|e| fail(format!("assuming {facts}: {e}")))?;
                if a.ptx() != c.ptx() || a.code_object() != c.code_object() {
                    entries.push(kernel_from_compiled(module, k.name, v.args, &a)?);
                }
            }
            for bk in entries {
                if kernels.iter().any(|b| b.code_file == bk.code_file) {
                    return Err(fail(format!(
                        "two variants would share the file name `{}`",
                        bk.code_file
                    )));
                }
                kernels.push(bk);
            }
        }
    }
    progress(CompileProgress {
        done: total,
        total,
        next: None,
    });
    let bundle = Bundle {
        target: target.name().to_string(),
        kernels,
    };
    // What a reader will check, found here rather than on the machine that loads it.
    validate::check_bundle("to build", &bundle)?;
    Ok(bundle)
}
