//! The metadata file of a bundle ([`super::METADATA_FILE`], JSON): serde structs that spell the
//! on-disk schema out, kept apart from the runtime's types so that changing those never changes
//! the format by accident. [`encode`] writes them; [`decode`] reads and range-checks them
//! without touching any code file.
//!
//! The schema (version [`FORMAT_VERSION`]) is documented in the module above, with an
//! example; the ranges are in [`super::limits`].

use serde::{Deserialize, Serialize};

use super::limits::{BLOCK_THREADS, MAX_METADATA_BYTES, MAX_PARAMS, RANKS};
use super::validate::{self, shown};
use super::METADATA_FILE;
use super::{AbiArg, Bundle, BundleError, BundleKernel, BundleParam, ParamKind, FORMAT_VERSION};
use crate::ir::ScalarType;

/// The `format` field: says what the file is.
pub(super) const FORMAT_NAME: &str = "tilekit-bundle";

/// The whole metadata file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataFile {
    format: String,
    schema: u64,
    target: String,
    kernels: Vec<KernelEntry>,
}

/// One kernel variant. Numbers are read as u64 so that an out-of-range value gets this
/// format's message (with the range) rather than a JSON type error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelEntry {
    name: String,
    variant: String,
    ir_hash: String,
    code_file: String,
    block_threads: u64,
    shared_bytes: u64,
    dynamic_shared: bool,
    aligned16: Vec<String>,
    params: Vec<ParamEntry>,
    /// Tensor maps the entry takes after the parameters (sm_90a code with TMA copies); left
    /// out when there are none, so bundles without TMA read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tensor_maps: Vec<TensorMapEntry>,
    abi: Vec<String>,
}

/// One tensor-map parameter: the view parameter it describes (by name), its box (outermost
/// first) and the swizzle span in bytes (0 for none).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorMapEntry {
    view: String,
    box_dims: Vec<u64>,
    swizzle_bytes: u64,
}

/// One parameter.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum ParamEntry {
    /// A view of a tensor in global memory.
    Global {
        name: String,
        dtype: String,
        rank: u64,
        writable: bool,
    },
    /// A scalar passed by value.
    Scalar { name: String, dtype: String },
}

/// Just the fields that say which format a file is in, read first so that a file of another
/// version gets a version error rather than complaints about fields it was right to have.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    schema: Option<u64>,
}

/// The `abi` list of `k`: `a:ptr a:size0 … a:stride0 … alpha:f32`.
pub(super) fn abi_names(k: &BundleKernel) -> Vec<String> {
    let name = |param: usize| k.params.get(param).map_or("?", |p| p.name.as_str());
    k.abi()
        .iter()
        .map(|a| match *a {
            AbiArg::Pointer { param } => format!("{}:ptr", name(param)),
            AbiArg::Size { param, dim } => format!("{}:size{dim}", name(param)),
            AbiArg::Stride { param, dim } => format!("{}:stride{dim}", name(param)),
            AbiArg::Scalar { param } => format!(
                "{}:{}",
                name(param),
                k.params.get(param).map_or("?", |p| p.dtype.name())
            ),
            AbiArg::TensorMap { map } => format!(
                "{}:tensor_map",
                k.tensor_maps.get(map).map_or("?", |m| name(m.view))
            ),
        })
        .collect()
}

/// The metadata of `b` as JSON text (pretty, one field a line, ending in a newline).
pub(super) fn encode(b: &Bundle) -> Result<String, BundleError> {
    let file = MetadataFile {
        format: FORMAT_NAME.to_string(),
        schema: FORMAT_VERSION.into(),
        target: b.target.clone(),
        kernels: b
            .kernels
            .iter()
            .map(|k| KernelEntry {
                name: k.name.clone(),
                variant: k.variant.clone(),
                ir_hash: k.ir_hash.clone(),
                code_file: k.code_file.clone(),
                block_threads: k.block_threads.into(),
                shared_bytes: k.shared_bytes,
                dynamic_shared: k.dynamic_shared,
                aligned16: k.aligned16.clone(),
                params: k
                    .params
                    .iter()
                    .map(|p| match p.kind {
                        ParamKind::Global { rank, mutable } => ParamEntry::Global {
                            name: p.name.clone(),
                            dtype: p.dtype.name().to_string(),
                            rank: rank.into(),
                            writable: mutable,
                        },
                        ParamKind::Scalar => ParamEntry::Scalar {
                            name: p.name.clone(),
                            dtype: p.dtype.name().to_string(),
                        },
                    })
                    .collect(),
                tensor_maps: k
                    .tensor_maps
                    .iter()
                    .map(|m| TensorMapEntry {
                        view: k
                            .params
                            .get(m.view)
                            .map_or_else(String::new, |p| p.name.clone()),
                        box_dims: m.box_dims.iter().map(|&b| u64::from(b)).collect(),
                        swizzle_bytes: m.swizzle_bytes.into(),
                    })
                    .collect(),
                abi: abi_names(k),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| BundleError::Invalid {
        bundle: format!("for {}", shown(&b.target)),
        message: format!("its metadata cannot be written as JSON: {e}"),
    })?;
    text.push('\n');
    Ok(text)
}

/// Reads metadata: the target and the kernels with every field checked, their code still empty
/// (`ptx` empty, `code_object` none) for the caller to fill from the files they name.
pub(super) fn decode(
    origin: &str,
    bytes: &[u8],
) -> Result<(String, Vec<BundleKernel>), BundleError> {
    let invalid = |message: String| BundleError::Invalid {
        bundle: origin.to_string(),
        message,
    };
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        return Err(BundleError::TooLarge {
            bundle: origin.to_string(),
            file: METADATA_FILE.to_string(),
            size: bytes.len() as u64,
            limit: MAX_METADATA_BYTES,
        });
    }
    let json = |e: serde_json::Error| invalid(format!("`{METADATA_FILE}` is not valid: {e}"));
    let header: Header = serde_json::from_slice(bytes).map_err(json)?;
    if header.format.as_deref() != Some(FORMAT_NAME) {
        return Err(invalid(format!(
            "`{METADATA_FILE}` is not bundle metadata: its `format` should be \
             \"{FORMAT_NAME}\""
        )));
    }
    match header.schema {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        found => {
            return Err(BundleError::Version {
                bundle: origin.to_string(),
                found: found.map_or("(none)".to_string(), |v| v.to_string()),
            })
        }
    }
    let file: MetadataFile = serde_json::from_slice(bytes).map_err(json)?;
    validate::check_target(origin, &file.target)?;
    let target = file.target;
    let kernels = file
        .kernels
        .into_iter()
        .map(|entry| kernel_from_entry(origin, &target, entry))
        .collect::<Result<Vec<_>, _>>()?;
    validate::check_kernels(origin, &target, &kernels)?;
    Ok((target, kernels))
}

/// A kernel of the metadata as the runtime's type, its numbers range-checked before they are
/// narrowed.
fn kernel_from_entry(
    origin: &str,
    target: &str,
    e: KernelEntry,
) -> Result<BundleKernel, BundleError> {
    let label = shown(&format!("{}{}", e.name, e.variant));
    let err = |message: String| BundleError::Invalid {
        bundle: origin.to_string(),
        message: format!("kernel `{label}`: {message}"),
    };
    let dtype = |name: &str, d: &str| {
        ScalarType::from_name(d).ok_or_else(|| {
            err(format!(
                "parameter `{}`: unknown dtype `{}`; dtypes: {}",
                shown(name),
                shown(d),
                ScalarType::ALL.map(ScalarType::name).join(", ")
            ))
        })
    };
    if e.params.len() > MAX_PARAMS {
        return Err(err(format!(
            "{} parameters; at most {MAX_PARAMS}",
            e.params.len()
        )));
    }
    let mut params = Vec::with_capacity(e.params.len());
    for p in &e.params {
        params.push(match p {
            ParamEntry::Global {
                name,
                dtype: d,
                rank,
                writable,
            } => BundleParam {
                name: name.clone(),
                dtype: dtype(name, d)?,
                kind: ParamKind::Global {
                    rank: validate::within(*rank, &RANKS)
                        .ok_or_else(|| err(validate::rank_problem(name, *rank)))?,
                    mutable: *writable,
                },
            },
            ParamEntry::Scalar { name, dtype: d } => BundleParam {
                name: name.clone(),
                dtype: dtype(name, d)?,
                kind: ParamKind::Scalar,
            },
        });
    }
    let mut tensor_maps = Vec::with_capacity(e.tensor_maps.len());
    for m in &e.tensor_maps {
        let view = params
            .iter()
            .position(|p| p.name == m.view && matches!(p.kind, ParamKind::Global { .. }))
            .ok_or_else(|| {
                err(format!(
                    "tensor map of `{}`: no global-view parameter has that name",
                    shown(&m.view)
                ))
            })?;
        let ParamKind::Global { rank, .. } = params[view].kind else {
            unreachable!("found as a global view")
        };
        if m.box_dims.len() != rank as usize || m.box_dims.iter().any(|&b| !(1..=256).contains(&b))
        {
            return Err(err(format!(
                "tensor map of `{}`: box {:?}; expected {rank} extents in 1..=256",
                shown(&m.view),
                m.box_dims
            )));
        }
        if ![0, 32, 64, 128].contains(&m.swizzle_bytes) {
            return Err(err(format!(
                "tensor map of `{}`: swizzle of {} bytes; expected 0, 32, 64 or 128",
                shown(&m.view),
                m.swizzle_bytes
            )));
        }
        tensor_maps.push(crate::abi::BundleTensorMap {
            view,
            box_dims: m.box_dims.iter().map(|&b| b as u32).collect(),
            swizzle_bytes: m.swizzle_bytes as u32,
        });
    }
    let kernel = BundleKernel {
        name: e.name,
        variant: e.variant,
        code_file: e.code_file,
        ptx: String::new(),
        code_object: None,
        params,
        block_threads: validate::within(e.block_threads, &BLOCK_THREADS)
            .ok_or_else(|| err(validate::block_problem(e.block_threads)))?,
        shared_bytes: e.shared_bytes,
        dynamic_shared: e.dynamic_shared,
        ir_hash: e.ir_hash,
        aligned16: e.aligned16,
        tensor_maps,
    };
    // The fields first: the `abi` comparison below builds a list as long as the ranks say.
    validate::check_kernel_fields(origin, target, &kernel)?;
    let want = abi_names(&kernel);
    if e.abi != want {
        return Err(err(format!(
            "its `abi` disagrees with its `params`, which give `{}`",
            shown(&want.join(" "))
        )));
    }
    Ok(kernel)
}
