//! AOT kernel bundles: code compiled ahead of time plus what a launch needs to know.
//!
//! `tilekit bundle --target sm_90a --out DIR` (feature `jit`) compiles every registered kernel
//! variant and writes `DIR` with:
//! - one code file per variant (`<kernel>_<comptime arguments>.ptx`; `.hsaco`, the linked code
//!   object, for the AMD targets `gfx90a`, `gfx942`, `gfx950`),
//! - [`METADATA_FILE`] (`bundle.txt`), the metadata in the text format below,
//! - [`PACKED_FILE`] (`bundle.tkb`), the same bundle in one file, for `include_bytes!`.
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
//! # Metadata format, version 2
//!
//! UTF-8 text, one `key value…` entry per line; blank lines and lines starting with `#` are
//! ignored. The first entry is `tilekit-bundle 2` (the format version), the second
//! `target <sm_80|sm_90a|gfx90a|gfx942|gfx950>`. Then one block per kernel variant:
//!
//! ```text
//! kernel gemm
//! variant <bf16, 64, 64, 32, 32, 32>     # comptime arguments as `tilekit list` prints them (may be empty)
//! hash 3f1c0a9d2b7e4c55                  # Tile IR hash (device::ir_hash): how launches find it
//! ptx gemm_bf16_64_64_32_32_32.ptx       # file in the bundle holding the PTX (`.entry gemm`);
//!                                        # AMD: `hsaco <file>`, an ELF code object with `gemm.kd`
//! block 128                              # threads per block (along x)
//! shared 32768 static                    # bytes of shared memory; `dynamic`: pass it at launch
//! param a global bf16 2 in               # name, `global`, dtype, rank, `in` | `out` (writable)
//! param alpha scalar f32                 # name, `scalar`, dtype
//! abi a:ptr a:size0 a:size1 a:stride0 a:stride1 alpha:f32
//! end
//! ```
//!
//! `abi` is the flattened argument list of the PTX entry, in order: each global view is a
//! pointer, then its sizes, then its strides (in elements), sizes and strides as 32-bit signed
//! integers; each scalar is itself (bool as a 32-bit 0 or 1). It follows from the `param` lines
//! ([`BundleKernel::abi`]); a reader checks that it does.
//!
//! # Packed format, version 1
//!
//! The line `tilekit-bundle-pack 1`, then for each file (the metadata first) the line
//! `file <name> <length in bytes>`, the file's bytes and one `\n`.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::ir::ScalarType;

/// The metadata format version this runtime reads and writes.
pub const FORMAT_VERSION: u32 = 2;
/// The metadata file of a bundle directory.
pub const METADATA_FILE: &str = "bundle.txt";
/// The whole bundle in one file (for `include_bytes!`).
pub const PACKED_FILE: &str = "bundle.tkb";
/// The targets a bundle may hold code for: PTX for NVIDIA, code objects (`.hsaco`) for AMD.
pub const TARGETS: [&str; 5] = ["sm_80", "sm_90a", "gfx90a", "gfx942", "gfx950"];

/// Whether `target` is an AMD chip (its bundles hold code objects rather than PTX).
pub fn is_amd(target: &str) -> bool {
    target.starts_with("gfx")
}

const MAGIC: &str = "tilekit-bundle";
const PACK_MAGIC: &str = "tilekit-bundle-pack";

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
    #[error("bundle {bundle}, {file} line {line}: {message}")]
    Syntax {
        bundle: String,
        file: String,
        line: usize,
        message: String,
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
    /// The hash of the kernel's Tile IR ([`crate::device::ir_hash`]): a launch uses this code
    /// only for a kernel whose IR hashes the same, so a bundle built from other source is never
    /// launched by mistake.
    pub ir_hash: String,
}

impl BundleKernel {
    /// The bytes of its code file: the PTX text or the code object.
    pub fn code(&self) -> &[u8] {
        self.code_object.as_deref().unwrap_or(self.ptx.as_bytes())
    }

    /// The PTX entry's arguments, in order: each global view is a pointer, then its sizes, then
    /// its strides; each scalar is itself.
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
        out
    }

    /// The `abi` line's tokens: `a:ptr a:size0 … a:stride0 … alpha:f32`.
    fn abi_text(&self) -> String {
        self.abi()
            .iter()
            .map(|a| match *a {
                AbiArg::Pointer { param } => format!("{}:ptr", self.params[param].name),
                AbiArg::Size { param, dim } => format!("{}:size{dim}", self.params[param].name),
                AbiArg::Stride { param, dim } => {
                    format!("{}:stride{dim}", self.params[param].name)
                }
                AbiArg::Scalar { param } => {
                    let p = &self.params[param];
                    format!("{}:{}", p.name, p.dtype)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Kernels compiled ahead of time for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The target the PTX was generated for (one of [`TARGETS`]).
    pub target: String,
    pub kernels: Vec<BundleKernel>,
}

impl Bundle {
    /// Loads the bundle that `tilekit bundle` wrote to `dir` (its [`METADATA_FILE`] and the PTX
    /// files that names).
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Bundle, BundleError> {
        let dir = dir.as_ref();
        let origin = dir.display().to_string();
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => BundleError::MissingFile {
                    bundle: origin.clone(),
                    file: file.to_string(),
                },
                _ => BundleError::Io { path, source: e },
            })
        };
        let metadata = utf8(&origin, METADATA_FILE, read(METADATA_FILE)?)?;
        parse(&origin, &metadata, read)
    }

    /// Loads a bundle from the bytes of its [`PACKED_FILE`], e.g. embedded with
    /// `include_bytes!("…/bundle.tkb")`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let origin = "<bytes>";
        let files = unpack(bytes)?;
        let read = |file: &str| {
            files
                .get(file)
                .cloned()
                .ok_or_else(|| BundleError::MissingFile {
                    bundle: origin.to_string(),
                    file: file.to_string(),
                })
        };
        let metadata = utf8(origin, METADATA_FILE, read(METADATA_FILE)?)?;
        parse(origin, &metadata, read)
    }

    /// The metadata text ([`METADATA_FILE`]).
    pub fn metadata(&self) -> String {
        let mut s = format!(
            "# tilekit AOT bundle: written by `tilekit bundle`, read by tilekit::Bundle\n\
             {MAGIC} {FORMAT_VERSION}\ntarget {}\n",
            self.target
        );
        for k in &self.kernels {
            let _ = write!(
                s,
                "\nkernel {}\nvariant {}\nhash {}\n{} {}\nblock {}\nshared {} {}\n",
                k.name,
                k.variant,
                k.ir_hash,
                if k.code_object.is_some() {
                    "hsaco"
                } else {
                    "ptx"
                },
                k.code_file,
                k.block_threads,
                k.shared_bytes,
                if k.dynamic_shared {
                    "dynamic"
                } else {
                    "static"
                }
            );
            for p in &k.params {
                let _ = match p.kind {
                    ParamKind::Global { rank, mutable } => writeln!(
                        s,
                        "param {} global {} {rank} {}",
                        p.name,
                        p.dtype,
                        if mutable { "out" } else { "in" }
                    ),
                    ParamKind::Scalar => writeln!(s, "param {} scalar {}", p.name, p.dtype),
                };
            }
            let _ = writeln!(s, "abi {}\nend", k.abi_text());
        }
        s
    }

    /// The whole bundle in one buffer ([`PACKED_FILE`]'s contents).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{PACK_MAGIC} {FORMAT_VERSION}\n").into_bytes();
        let metadata = self.metadata();
        let files = std::iter::once((METADATA_FILE, metadata.as_bytes())).chain(
            self.kernels
                .iter()
                .map(|k| (k.code_file.as_str(), k.code())),
        );
        for (name, bytes) in files {
            out.extend_from_slice(format!("file {name} {}\n", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
            out.push(b'\n');
        }
        out
    }

    /// Writes the bundle to `dir` (created if missing): the PTX files, [`METADATA_FILE`] and
    /// [`PACKED_FILE`].
    pub fn write_dir(&self, dir: impl AsRef<Path>) -> Result<(), BundleError> {
        let dir = dir.as_ref();
        let io = |path: PathBuf| move |source| BundleError::Io { path, source };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        for k in &self.kernels {
            let path = dir.join(&k.code_file);
            std::fs::write(&path, k.code()).map_err(io(path))?;
        }
        let path = dir.join(METADATA_FILE);
        std::fs::write(&path, self.metadata()).map_err(io(path))?;
        let path = dir.join(PACKED_FILE);
        std::fs::write(&path, self.to_bytes()).map_err(io(path))
    }

    /// The variant `variant` (comptime arguments as `tilekit list` prints them; spaces do not
    /// matter) of kernel `name`.
    pub fn kernel(&self, name: &str, variant: &str) -> Result<&BundleKernel, BundleError> {
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        self.kernels
            .iter()
            .find(|k| k.name == name && squash(&k.variant) == squash(variant))
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

impl fmt::Display for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.metadata())
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

/// Splits a packed bundle into its files.
fn unpack(bytes: &[u8]) -> Result<HashMap<String, Vec<u8>>, BundleError> {
    let origin = "<bytes>".to_string();
    let invalid = |message: String| BundleError::Invalid {
        bundle: origin.clone(),
        message,
    };
    let (header, mut rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => (String::from_utf8_lossy(&bytes[..end]), &bytes[end + 1..]),
        None => (String::from_utf8_lossy(bytes), &[][..]),
    };
    match header.split_once(' ') {
        Some((PACK_MAGIC, v)) if v == FORMAT_VERSION.to_string() => {}
        Some((PACK_MAGIC, v)) => {
            return Err(BundleError::Version {
                bundle: origin,
                found: v.to_string(),
            })
        }
        _ => {
            return Err(invalid(format!(
                "not a packed bundle: it should start with `{PACK_MAGIC} {FORMAT_VERSION}` \
                 (the contents of {PACKED_FILE}, not {METADATA_FILE})"
            )))
        }
    }
    let mut files = HashMap::new();
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| invalid("a `file` line is cut off".into()))?;
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = &rest[end + 1..];
        let (name, len) = match head.split(' ').collect::<Vec<_>>()[..] {
            ["file", name, len] => (name.to_string(), len.parse::<usize>().ok()),
            _ => {
                return Err(invalid(format!(
                    "expected `file <name> <length>`, found `{head}`"
                )))
            }
        };
        let len = len.ok_or_else(|| invalid(format!("bad length in `{head}`")))?;
        if rest.len() < len + 1 || rest[len] != b'\n' {
            return Err(invalid(format!(
                "file `{name}` is cut off: {len} bytes announced, {} remain",
                rest.len()
            )));
        }
        let data = rest[..len].to_vec();
        rest = &rest[len + 1..];
        files.insert(name, data);
    }
    Ok(files)
}

/// Parses metadata text; `read` fetches the PTX files it names.
/// A text file of a bundle (the metadata, PTX).
fn utf8(origin: &str, file: &str, bytes: Vec<u8>) -> Result<String, BundleError> {
    String::from_utf8(bytes).map_err(|_| BundleError::Invalid {
        bundle: origin.to_string(),
        message: format!("`{file}` is not UTF-8 text"),
    })
}

fn parse(
    origin: &str,
    text: &str,
    read: impl Fn(&str) -> Result<Vec<u8>, BundleError>,
) -> Result<Bundle, BundleError> {
    let syntax = |line: usize, message: String| BundleError::Syntax {
        bundle: origin.to_string(),
        file: METADATA_FILE.to_string(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let (key, value) = l.split_once(' ').unwrap_or((l, ""));
            (i, key, value.trim())
        });

    match lines.next() {
        Some((_, MAGIC, v)) if v == FORMAT_VERSION.to_string() => {}
        Some((_, MAGIC, v)) => {
            return Err(BundleError::Version {
                bundle: origin.to_string(),
                found: v.to_string(),
            })
        }
        Some((line, ..)) => {
            return Err(syntax(
                line,
                format!("expected `{MAGIC} {FORMAT_VERSION}` first: this is not bundle metadata"),
            ))
        }
        None => return Err(syntax(1, "the metadata is empty".into())),
    }
    let target = match lines.next() {
        Some((_, "target", t)) if TARGETS.contains(&t) => t.to_string(),
        Some((_, "target", t)) => {
            return Err(BundleError::UnknownTarget {
                bundle: origin.to_string(),
                given: t.to_string(),
            })
        }
        other => {
            let line = other.map_or(1, |(l, ..)| l);
            return Err(syntax(line, "expected `target <name>` second".into()));
        }
    };

    let mut kernels = Vec::new();
    while let Some((line, key, name)) = lines.next() {
        if key != "kernel" || name.is_empty() {
            return Err(syntax(
                line,
                format!("expected `kernel <name>`, found `{key} {name}`"),
            ));
        }
        let start = line;
        let (mut variant, mut code_file, mut block, mut shared, mut abi, mut hash) =
            (None, None, None, None, None, None);
        let mut params = Vec::new();
        loop {
            let Some((line, key, value)) = lines.next() else {
                return Err(syntax(start, format!("kernel `{name}` has no `end` line")));
            };
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| syntax(line, format!("`{key}` wants a number, found `{v}`")))
            };
            match key {
                "variant" => variant = Some(value.to_string()),
                "hash" if value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    hash = Some(value.to_string())
                }
                "hash" => {
                    return Err(syntax(
                        line,
                        format!("`hash` wants 16 hex digits, found `{value}`"),
                    ))
                }
                "ptx" | "hsaco" if !value.is_empty() => {
                    let want = if is_amd(&target) { "hsaco" } else { "ptx" };
                    if key != want {
                        return Err(syntax(
                            line,
                            format!("a bundle for {target} holds `{want}` files, not `{key}`"),
                        ));
                    }
                    code_file = Some(value.to_string())
                }
                "block" => {
                    let n = number(value)?;
                    block = Some(u32::try_from(n).map_err(|_| {
                        syntax(line, format!("block of {n} threads is out of range"))
                    })?);
                }
                "shared" => {
                    let (bytes, kind) = value.split_once(' ').unwrap_or((value, ""));
                    let dynamic = match kind.trim() {
                        "static" => false,
                        "dynamic" => true,
                        other => {
                            return Err(syntax(
                                line,
                                format!("`shared` wants `<bytes> static|dynamic`, found `{other}`"),
                            ))
                        }
                    };
                    shared = Some((number(bytes)?, dynamic));
                }
                "param" => params.push(parse_param(value).map_err(|m| syntax(line, m))?),
                "abi" => abi = Some((line, value.to_string())),
                "end" => break,
                other => {
                    return Err(syntax(
                        line,
                        format!("unknown entry `{other}` in kernel `{name}`"),
                    ))
                }
            }
        }
        let missing = |what: &str| syntax(start, format!("kernel `{name}` has no `{what}` line"));
        let code_file =
            code_file.ok_or_else(|| missing(if is_amd(&target) { "hsaco" } else { "ptx" }))?;
        let code = read(&code_file)?;
        let (ptx, code_object) = if is_amd(&target) {
            (String::new(), Some(code))
        } else {
            (utf8(origin, &code_file, code)?, None)
        };
        let (shared_bytes, dynamic_shared) = shared.ok_or_else(|| missing("shared"))?;
        let kernel = BundleKernel {
            name: name.to_string(),
            variant: variant.ok_or_else(|| missing("variant"))?,
            ptx,
            code_object,
            code_file,
            params,
            block_threads: block.ok_or_else(|| missing("block"))?,
            shared_bytes,
            dynamic_shared,
            ir_hash: hash.ok_or_else(|| missing("hash"))?,
        };
        let (abi_line, abi) = abi.ok_or_else(|| missing("abi"))?;
        let want = kernel.abi_text();
        if abi.split_whitespace().ne(want.split_whitespace()) {
            return Err(syntax(
                abi_line,
                format!(
                    "kernel `{name}`: the `abi` line disagrees with the `param` lines, which give \
                     `abi {want}`"
                ),
            ));
        }
        check_ptx(origin, &target, &kernel)?;
        kernels.push(kernel);
    }
    Ok(Bundle { target, kernels })
}

/// `name global dtype rank in|out` or `name scalar dtype`.
fn parse_param(value: &str) -> Result<BundleParam, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let dtype = |d: &str| {
        ScalarType::from_name(d).ok_or_else(|| {
            format!(
                "unknown dtype `{d}`; dtypes: {}",
                ScalarType::ALL.map(ScalarType::name).join(", ")
            )
        })
    };
    let (name, dtype, kind) = match words[..] {
        [name, "global", d, rank, access] => {
            let rank = rank
                .parse::<u32>()
                .map_err(|_| format!("param `{name}`: rank `{rank}` is not a number"))?;
            let mutable = match access {
                "in" => false,
                "out" => true,
                other => return Err(format!("param `{name}`: `{other}` is not `in` or `out`")),
            };
            (name, dtype(d)?, ParamKind::Global { rank, mutable })
        }
        [name, "scalar", d] => (name, dtype(d)?, ParamKind::Scalar),
        _ => {
            return Err(format!(
                "expected `param <name> global <dtype> <rank> in|out` or \
                 `param <name> scalar <dtype>`, found `param {value}`"
            ))
        }
    };
    Ok(BundleParam {
        name: name.to_string(),
        dtype,
        kind,
    })
}

/// The PTX a kernel names must be for the bundle's target and define the kernel's entry.
fn check_ptx(origin: &str, target: &str, k: &BundleKernel) -> Result<(), BundleError> {
    let invalid = |message: String| BundleError::Invalid {
        bundle: origin.to_string(),
        message,
    };
    if let Some(object) = &k.code_object {
        // An ELF shared object (the linked code object) holding the kernel's descriptor symbol.
        let descriptor = format!("{}.kd", k.name);
        if !object.starts_with(b"\x7fELF") {
            return Err(invalid(format!(
                "`{}` (kernel {}{}) is not an ELF code object",
                k.code_file, k.name, k.variant
            )));
        }
        if !object
            .windows(descriptor.len())
            .any(|w| w == descriptor.as_bytes())
        {
            return Err(invalid(format!(
                "`{}` has no kernel descriptor `{descriptor}`",
                k.code_file
            )));
        }
        return Ok(());
    }
    let ptx_target = k
        .ptx
        .lines()
        .find_map(|l| l.trim().strip_prefix(".target "))
        .map(|t| t.split([',', ' ']).next().unwrap_or("").trim());
    if ptx_target != Some(target) {
        return Err(invalid(format!(
            "`{}` (kernel {}{}) is PTX for {}, but the bundle is for {target}",
            k.code_file,
            k.name,
            k.variant,
            ptx_target.map_or("no target (no `.target` line)".to_string(), |t| t
                .to_string())
        )));
    }
    if !k.ptx.contains(&format!(".entry {}(", k.name)) {
        return Err(invalid(format!(
            "`{}` has no entry `.entry {}(`",
            k.code_file, k.name
        )));
    }
    Ok(())
}

/// The bundle entry for a compiled kernel (feature `jit`): parameters from
/// the compiler's ABI, writability from the IR.
#[cfg(feature = "jit")]
pub fn kernel_from_compiled(
    module: &crate::ir::Module,
    name: &str,
    variant: &str,
    c: &tilekit_codegen::Compiled,
) -> Result<BundleKernel, BundleError> {
    use crate::ir::Type;
    use tilekit_codegen::KernelArg;

    let func = module.kernel(name).ok_or_else(|| BundleError::Compile {
        kernel: name.to_string(),
        variant: variant.to_string(),
        target: c.target.name().to_string(),
        message: "the module has no such kernel".into(),
    })?;
    // Whether a view is writable is the IR's to say (the ABI does not carry it).
    let mutable: HashMap<&str, bool> = func
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
    let code_object = c.code_object().map(<[u8]>::to_vec);
    Ok(BundleKernel {
        name: name.to_string(),
        variant: variant.to_string(),
        code_file: if code_object.is_some() {
            code_file_name(name, variant, "hsaco")
        } else {
            ptx_file_name(name, variant)
        },
        ptx: c.ptx().to_string(),
        code_object,
        params,
        block_threads: c.block_threads(),
        shared_bytes: c.shared_bytes,
        dynamic_shared: c.dynamic_shared,
        ir_hash: crate::device::ir_hash(module, name),
    })
}

/// Compiles every registered kernel variant for `target` (feature `jit`).
#[cfg(feature = "jit")]
pub fn compile_registry(target: tilekit_codegen::Target) -> Result<Bundle, BundleError> {
    if !TARGETS.contains(&target.name()) {
        return Err(BundleError::UnknownTarget {
            bundle: "to build".into(),
            given: target.name().to_string(),
        });
    }
    let mut kernels: Vec<BundleKernel> = Vec::new();
    for k in crate::registry::kernels() {
        for v in k.variants {
            let fail = |message: String| BundleError::Compile {
                kernel: k.name.to_string(),
                variant: v.args.to_string(),
                target: target.name().to_string(),
                message,
            };
            let module = (v.module)();
            let c = tilekit_codegen::compile(module, k.name, target)
                .map_err(|e| fail(e.to_string()))?;
            let bk = kernel_from_compiled(module, k.name, v.args, &c)?;
            if kernels.iter().any(|b| b.code_file == bk.code_file) {
                return Err(fail(format!(
                    "two variants would share the file name `{}`",
                    bk.code_file
                )));
            }
            kernels.push(bk);
        }
    }
    Ok(Bundle {
        target: target.name().to_string(),
        kernels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh, empty directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tilekit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A bundle of one kernel whose "PTX" is just what the reader checks.
    fn tiny(target: &str) -> Bundle {
        Bundle {
            target: target.to_string(),
            kernels: vec![BundleKernel {
                name: "scale".into(),
                variant: "<f32, 16>".into(),
                code_file: ptx_file_name("scale", "<f32, 16>"),
                ptx: format!(".version 8.3\n.target {target}\n.visible .entry scale(\n)\n{{\n}}\n"),
                code_object: None,
                params: vec![
                    BundleParam {
                        name: "x".into(),
                        dtype: ScalarType::BF16,
                        kind: ParamKind::Global {
                            rank: 2,
                            mutable: false,
                        },
                    },
                    BundleParam {
                        name: "y".into(),
                        dtype: ScalarType::F32,
                        kind: ParamKind::Global {
                            rank: 1,
                            mutable: true,
                        },
                    },
                    BundleParam {
                        name: "alpha".into(),
                        dtype: ScalarType::F32,
                        kind: ParamKind::Scalar,
                    },
                ],
                block_threads: 128,
                shared_bytes: 65536,
                dynamic_shared: true,
                ir_hash: "0123456789abcdef".into(),
            }],
        }
    }

    /// The error of loading `metadata` (with the tiny bundle's PTX file beside it), as text.
    fn load_error(metadata: &str) -> String {
        let b = tiny("sm_80");
        let read = |file: &str| {
            if file == b.kernels[0].code_file {
                Ok(b.kernels[0].ptx.clone().into_bytes())
            } else {
                Err(BundleError::MissingFile {
                    bundle: "test".into(),
                    file: file.into(),
                })
            }
        };
        match parse("test", metadata, read) {
            Ok(b) => panic!("loaded {b:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_abi_is_pointer_sizes_strides_per_view_then_scalars() {
        let b = tiny("sm_80");
        assert_eq!(
            b.kernels[0].abi_text(),
            "x:ptr x:size0 x:size1 x:stride0 x:stride1 y:ptr y:size0 y:stride0 alpha:f32"
        );
        assert_eq!(b.kernels[0].abi().len(), 9);
        assert_eq!(b.kernels[0].code_file, "scale_f32_16.ptx");
    }

    #[test]
    fn a_bundle_round_trips_through_metadata_bytes_and_a_directory() {
        // (AMD bundles: `amd_bundles_hold_code_objects`.)
        for target in TARGETS.into_iter().filter(|t| !is_amd(t)) {
            let b = tiny(target);
            assert_eq!(Bundle::from_bytes(&b.to_bytes()).unwrap(), b);
            let dir = scratch(&format!("tiny-{target}"));
            b.write_dir(&dir).unwrap();
            assert_eq!(Bundle::load_dir(&dir).unwrap(), b);
            let packed = std::fs::read(dir.join(PACKED_FILE)).unwrap();
            assert_eq!(Bundle::from_bytes(&packed).unwrap(), b);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn kernels_are_found_by_name_and_variant_and_unknown_ones_are_listed() {
        let b = tiny("sm_90a");
        assert_eq!(b.kernel("scale", "<f32,16>").unwrap().block_threads, 128);
        let e = b.kernel("scale", "<f32, 32>").unwrap_err().to_string();
        assert!(
            e.contains("no kernel `scale<f32, 32>`") && e.contains("holds: scale<f32, 16>"),
            "{e}"
        );
    }

    #[test]
    fn corrupted_metadata_is_an_error_that_says_what_is_wrong() {
        let good = tiny("sm_80").metadata();
        let cases = [
            (
                good.replace("tilekit-bundle 2", "tilekit-bundle 1"),
                "format version 1, but this tilekit reads version 2",
            ),
            (
                good.replace("tilekit-bundle 2\n", ""),
                "expected `tilekit-bundle 2` first",
            ),
            (
                good.replace("hash 0123456789abcdef", "hash 0123"),
                "`hash` wants 16 hex digits, found `0123`",
            ),
            (
                good.replace("hash 0123456789abcdef\n", ""),
                "kernel `scale` has no `hash` line",
            ),
            (
                good.replace("target sm_80", "target sm_75"),
                "unknown target `sm_75`; bundles hold code for: sm_80, sm_90a",
            ),
            (
                good.replace("ptx scale_f32_16.ptx", "ptx other.ptx"),
                "missing file `other.ptx`",
            ),
            (
                good.replace("param x global bf16", "param x global bf17"),
                "line 11: unknown dtype `bf17`",
            ),
            (
                good.replace("param y global f32 1 out", "param y global f32 one out"),
                "rank `one` is not a number",
            ),
            (
                good.replace("x:size1 ", ""),
                "the `abi` line disagrees with the `param` lines",
            ),
            (
                good.replace("block 128", "block many"),
                "`block` wants a number, found `many`",
            ),
            (
                good.replace("shared 65536 dynamic", "shared 65536"),
                "`shared` wants",
            ),
            (
                good.replace("block 128\n", ""),
                "kernel `scale` has no `block` line",
            ),
            (
                good.replace("end\n", ""),
                "kernel `scale` has no `end` line",
            ),
            (
                good.replace("variant", "flavour"),
                "unknown entry `flavour`",
            ),
            (String::new(), "the metadata is empty"),
        ];
        for (metadata, want) in cases {
            let e = load_error(&metadata);
            assert!(e.contains(want), "want `{want}`, got: {e}");
        }
    }

    #[test]
    fn ptx_for_another_target_or_without_the_entry_is_refused() {
        let mut b = tiny("sm_90a");
        b.kernels[0].ptx = b.kernels[0].ptx.replace("sm_90a", "sm_80");
        let e = Bundle::from_bytes(&b.to_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("is PTX for sm_80, but the bundle is for sm_90a"),
            "{e}"
        );
        let mut b = tiny("sm_90a");
        b.kernels[0].ptx = b.kernels[0].ptx.replace("entry scale", "entry other");
        let e = Bundle::from_bytes(&b.to_bytes()).unwrap_err().to_string();
        assert!(e.contains("has no entry `.entry scale(`"), "{e}");
    }

    /// An AMD bundle holds binary code objects: they round-trip byte for byte through the
    /// directory and packed forms; a file that is not an ELF object with the kernel's
    /// descriptor, or a `ptx` line in an AMD bundle, is refused.
    #[test]
    fn amd_bundles_hold_code_objects() {
        let mut b = tiny("gfx942");
        let k = &mut b.kernels[0];
        k.ptx = String::new();
        k.code_file = code_file_name("scale", "<f32, 16>", "hsaco");
        let mut object = b"\x7fELF\x02\x01\x01\x40".to_vec();
        object.extend((0..=255u8).chain(*b"\0scale.kd\0\xff\n\n"));
        k.code_object = Some(object);
        let text = b.metadata();
        assert!(text.contains("\nhsaco scale_f32_16.hsaco\n"), "{text}");
        assert_eq!(Bundle::from_bytes(&b.to_bytes()).unwrap(), b);
        let dir = scratch("amd-bundle");
        b.write_dir(&dir).unwrap();
        assert_eq!(Bundle::load_dir(&dir).unwrap(), b);
        std::fs::remove_dir_all(&dir).unwrap();

        let mut bad = b.clone();
        bad.kernels[0].code_object = Some(b"not an object".to_vec());
        let e = Bundle::from_bytes(&bad.to_bytes()).unwrap_err().to_string();
        assert!(e.contains("is not an ELF code object"), "{e}");
        let mut bad = b.clone();
        bad.kernels[0].code_object = Some(b"\x7fELF other.kd".to_vec());
        let e = Bundle::from_bytes(&bad.to_bytes()).unwrap_err().to_string();
        assert!(e.contains("has no kernel descriptor `scale.kd`"), "{e}");
        let text = b.metadata().replace("hsaco scale", "ptx scale");
        let e = parse("test", &text, |_| Ok(Vec::new()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a bundle for gfx942 holds `hsaco` files, not `ptx`"),
            "{e}"
        );
    }

    #[test]
    fn damaged_packed_bytes_and_missing_files_are_errors() {
        let bytes = tiny("sm_80").to_bytes();
        let e = Bundle::from_bytes(&bytes[..bytes.len() - 20])
            .unwrap_err()
            .to_string();
        assert!(e.contains("file `scale_f32_16.ptx` is cut off"), "{e}");
        let metadata = tiny("sm_80").metadata();
        let e = Bundle::from_bytes(metadata.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a packed bundle"), "{e}");
        let e = Bundle::from_bytes(b"tilekit-bundle-pack 9\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("format version 9"), "{e}");

        let dir = scratch("missing");
        let e = Bundle::load_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("missing file `bundle.txt`"), "{e}");
        let b = tiny("sm_80");
        b.write_dir(&dir).unwrap();
        std::fs::remove_file(dir.join(&b.kernels[0].code_file)).unwrap();
        let e = Bundle::load_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "{}: missing file `scale_f32_16.ptx`",
                dir.display()
            )),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Every registered variant, compiled for both targets, survives writing and loading; its
    /// `abi` has one entry per `.param` of the PTX entry.
    #[cfg(feature = "jit")]
    #[test]
    fn the_registry_compiles_to_bundles_that_load_back_for_every_target() {
        for target in tilekit_codegen::Target::ALL {
            let b = compile_registry(target).unwrap();
            let variants: usize = crate::registry::kernels()
                .iter()
                .map(|k| k.variants.len())
                .sum();
            assert_eq!(b.kernels.len(), variants);
            for k in &b.kernels {
                if target.is_nvidia() {
                    assert!(k.code_object.is_none() && k.code_file.ends_with(".ptx"));
                    let entry = k.ptx.split(&format!(".entry {}(", k.name)).nth(1).unwrap();
                    let params = entry.split(')').next().unwrap().matches(".param").count();
                    assert_eq!(params, k.abi().len(), "{}{}", k.name, k.variant);
                } else {
                    let object = k.code_object.as_deref().unwrap();
                    assert!(object.starts_with(b"\x7fELF") && k.ptx.is_empty());
                    assert!(k.code_file.ends_with(".hsaco"), "{}", k.code_file);
                }
            }
            let gemm = b.kernel("gemm", "<bf16, 64, 64, 32, 32, 32>").unwrap();
            assert_eq!(
                gemm.params.iter().map(|p| p.kind).collect::<Vec<_>>(),
                [
                    ParamKind::Global {
                        rank: 2,
                        mutable: false
                    },
                    ParamKind::Global {
                        rank: 2,
                        mutable: false
                    },
                    ParamKind::Global {
                        rank: 2,
                        mutable: true
                    },
                ]
            );

            let dir = scratch(&format!("registry-{target}"));
            let (out, code) = crate::cli::run(
                &["bundle", "--target", target.name(), "--out"]
                    .map(String::from)
                    .into_iter()
                    .chain([dir.display().to_string()])
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            assert_eq!(code, 0);
            assert!(
                out.contains(&format!("wrote {variants} kernel variants for {target}")),
                "{out}"
            );
            assert_eq!(Bundle::load_dir(&dir).unwrap(), b);
            let packed = std::fs::read(dir.join(PACKED_FILE)).unwrap();
            assert_eq!(Bundle::from_bytes(&packed).unwrap(), b);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[cfg(feature = "jit")]
    #[test]
    fn bundle_wants_a_known_target_and_an_output_directory() {
        let usage = |args: &[&str]| {
            let e = crate::cli::run(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap_err();
            assert_eq!(e.code, 2, "{e}");
            e.message
        };
        let e = usage(&["bundle", "--target", "sm_75", "--out", "x"]);
        assert!(e.contains("unknown target `sm_75`"), "{e}");
        let e = usage(&["bundle", "--target", "sm_80"]);
        assert!(e.contains("needs --out"), "{e}");
        let e = usage(&["bundle", "--out"]);
        assert!(e.contains("--out needs a value"), "{e}");
    }

    #[cfg(not(feature = "jit"))]
    #[test]
    fn bundle_needs_the_jit_feature() {
        let e = crate::cli::run(&["bundle", "--target", "sm_80", "--out", "x"].map(String::from))
            .unwrap_err();
        assert!(e.message.contains("without the `jit` feature"), "{e}");
    }

    /// The same, on the binary: `tilekit` built without `jit` has no LLVM or MLIR, neither as a
    /// shared library (`ldd`) nor linked in statically (their C API's symbols).
    #[test]
    fn the_runtime_only_binary_links_no_llvm_or_mlir() {
        let target_dir = std::env::temp_dir().join("tilekit-runtime-only-target");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "tilekit", "--no-default-features", "--bins"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
        let has_compiler = |bytes: &[u8]| {
            [&b"LLVMContextCreate"[..], b"mlirContextCreate"]
                .iter()
                .any(|sym| bytes.windows(sym.len()).any(|w| w == *sym))
        };
        for name in ["tilekit", "tilekit-gpucheck"] {
            let bin = target_dir.join("debug").join(name);
            let ldd = std::process::Command::new("ldd")
                .arg(&bin)
                .output()
                .unwrap();
            let libs = String::from_utf8_lossy(&ldd.stdout).to_lowercase();
            assert!(
                ldd.status.success()
                    && !libs.contains("llvm")
                    && !libs.contains("mlir")
                    && !libs.contains("libcuda"),
                "{name}: {libs}"
            );
            assert!(!has_compiler(&std::fs::read(&bin).unwrap()), "{name}");
        }
        // The check can fail: this test's own executable, built with `jit`, has them.
        if cfg!(feature = "jit") {
            let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
            assert!(has_compiler(&me));
        }

        // The runtime-only checker loads a bundle this (jit) build wrote and finds every kernel
        // variant in it by Tile IR hash; a bundle with one hash changed is refused.
        #[cfg(feature = "jit")]
        {
            let bundle = compile_registry(tilekit_codegen::Target::Sm80).unwrap();
            let dir = scratch("runtime-only-load");
            bundle.write_dir(&dir).unwrap();
            let inspect = |dir: &Path| {
                std::process::Command::new(target_dir.join("debug").join("tilekit-gpucheck"))
                    .arg("--bundle")
                    .arg(dir)
                    .arg("--inspect")
                    .output()
                    .unwrap()
            };
            let out = inspect(&dir);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(out.status.success(), "{text}");
            assert!(text.contains(": 0 missing"), "{text}");
            assert_eq!(
                text.matches("in the bundle").count(),
                bundle.kernels.len(),
                "{text}"
            );
            let mut other = bundle.clone();
            other.kernels[0].ir_hash = "0000000000000000".into();
            let dir2 = scratch("runtime-only-load-stale");
            other.write_dir(&dir2).unwrap();
            let out = inspect(&dir2);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(!out.status.success(), "{text}");
            assert!(text.contains(": 1 missing"), "{text}");
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&dir2);
        }
    }

    /// The runtime-only build (what loads bundles on a GPU machine) must not link LLVM or MLIR:
    /// its dependency graph has no compiler crate; the default build's does (so the check can
    /// fail).
    #[test]
    fn without_jit_the_runtime_depends_on_no_llvm_or_mlir() {
        let tree = |extra: &[&str]| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = std::process::Command::new(cargo)
                .args(["tree", "-p", "tilekit", "-e", "normal", "--prefix", "none"])
                .args(extra)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cargo tree failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let compiler = [
            "tilekit-codegen",
            "melior",
            "inkwell",
            "mlir-sys",
            "llvm-sys",
        ];
        let crates = |tree: &str| -> Vec<String> {
            tree.lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|c| compiler.contains(c))
                .map(String::from)
                .collect()
        };
        let runtime_only = tree(&["--no-default-features"]);
        assert!(runtime_only.contains("tilekit-ir"), "{runtime_only}");
        assert_eq!(
            crates(&runtime_only),
            Vec::<String>::new(),
            "{runtime_only}"
        );
        let with_jit = crates(&tree(&["--features", "jit"]));
        for c in ["tilekit-codegen", "melior", "inkwell"] {
            assert!(with_jit.iter().any(|d| d == c), "{c} not in {with_jit:?}");
        }
    }
}
