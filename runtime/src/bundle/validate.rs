//! The checks every bundle passes, read or written: names, ranges, uniqueness, and that each
//! code file holds code for the bundle's target with the kernel's entry. Readers run the field
//! checks before they read any code file; [`check_bundle`] runs them all before a write.

use std::collections::HashSet;

use super::limits::{
    self, BLOCK_THREADS, MAX_BUNDLE_BYTES, MAX_CODE_FILE_BYTES, MAX_FILE_NAME_BYTES, MAX_KERNELS,
    MAX_NAME_BYTES, MAX_PARAMS, MAX_VARIANT_BYTES, RANKS,
};
use super::{is_amd, Bundle, BundleError, BundleKernel, ParamKind, TARGETS};

/// `s` for an error message: control characters escaped, cut to a readable length (names come
/// from untrusted input; printing them raw could rewrite the terminal).
pub(super) fn shown(s: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    let mut out: String = s
        .chars()
        .take(SHOWN_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// How a kernel is named in messages: `gemm<bf16, 64>`.
fn kernel_label(k: &BundleKernel) -> String {
    shown(&format!("{}{}", k.name, k.variant))
}

fn invalid(origin: &str, message: String) -> BundleError {
    BundleError::Invalid {
        bundle: origin.to_string(),
        message,
    }
}

/// The target must be one bundles hold code for.
pub(super) fn check_target(origin: &str, target: &str) -> Result<(), BundleError> {
    if TARGETS.contains(&target) {
        Ok(())
    } else {
        Err(BundleError::UnknownTarget {
            bundle: origin.to_string(),
            given: shown(target),
        })
    }
}

/// The extension of the code files of `target`'s bundles.
pub(super) fn code_extension(target: &str) -> &'static str {
    if is_amd(target) {
        "hsaco"
    } else {
        "ptx"
    }
}

/// A file of a bundle is named by a plain file name inside the bundle directory: letters,
/// digits, `_`, `-` and `.`, not starting with `.`, so never a path (`/`, `\`), never `..`,
/// never hidden, and the same on every file system.
pub(super) fn check_file_name(origin: &str, name: &str) -> Result<(), BundleError> {
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > MAX_FILE_NAME_BYTES {
        Some(format!(
            "is {} bytes long; at most {MAX_FILE_NAME_BYTES}",
            name.len()
        ))
    } else if name.contains(['/', '\\']) {
        Some("is a path: a bundle names its files by plain file names inside its directory".into())
    } else if name.starts_with('.') {
        Some("starts with `.` (`..` or a hidden file)".into())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map(|c| {
                format!(
                    "has the character `{}`; file names use letters, digits, `_`, `-` and `.`",
                    c.escape_debug()
                )
            })
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(BundleError::FileName {
            bundle: origin.to_string(),
            file: shown(name),
            problem,
        }),
    }
}

/// A kernel name is an identifier (it is also the PTX entry's and the code object's symbol).
fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_NAME_BYTES
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` is not an identifier (a letter or `_`, then letters, digits or `_`; at \
             most {MAX_NAME_BYTES} bytes)",
            shown(name)
        ))
    }
}

/// A parameter name: what a Rust parameter may be called, and never something that breaks the
/// `name:ptr` entries of the `abi` list.
fn check_param_name(name: &str) -> Result<(), String> {
    check_identifier("parameter", name)
}

/// `v` if it is in `range` (which a value of any width may be outside of).
pub(super) fn within(v: u64, range: &std::ops::RangeInclusive<u32>) -> Option<u32> {
    u32::try_from(v).ok().filter(|v| range.contains(v))
}

/// What is wrong with a block of `threads` threads.
pub(super) fn block_problem(threads: u64) -> String {
    format!(
        "a block of {threads} threads; blocks have {} to {} threads",
        BLOCK_THREADS.start(),
        BLOCK_THREADS.end()
    )
}

/// What is wrong with a global view parameter of rank `rank`.
pub(super) fn rank_problem(param: &str, rank: u64) -> String {
    format!(
        "parameter `{}` has rank {rank}; a global view has rank {} to {}",
        shown(param),
        RANKS.start(),
        RANKS.end()
    )
}

/// Every field of `k` except its code: names, hash, code file name, block, shared memory and
/// parameters.
pub(super) fn check_kernel_fields(
    origin: &str,
    target: &str,
    k: &BundleKernel,
) -> Result<(), BundleError> {
    let err = |message: String| invalid(origin, format!("kernel `{}`: {message}", kernel_label(k)));
    check_identifier("the kernel name", &k.name).map_err(err)?;
    if k.variant.len() > MAX_VARIANT_BYTES {
        return Err(err(format!(
            "the variant is {} bytes long; at most {MAX_VARIANT_BYTES}",
            k.variant.len()
        )));
    }
    if let Some(c) = k.variant.chars().find(|c| c.is_control()) {
        return Err(err(format!(
            "the variant has the control character `{}`; a variant is one line of comptime \
             arguments",
            c.escape_debug()
        )));
    }
    if k.ir_hash.len() != 16 || !k.ir_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(format!(
            "`ir_hash` wants 16 hex digits, found `{}`",
            shown(&k.ir_hash)
        )));
    }
    check_file_name(origin, &k.code_file)?;
    let extension = code_extension(target);
    if !k.code_file.ends_with(&format!(".{extension}")) {
        return Err(err(format!(
            "code file `{}`: a bundle for {target} holds `.{extension}` files",
            shown(&k.code_file)
        )));
    }
    if !BLOCK_THREADS.contains(&k.block_threads) {
        return Err(err(block_problem(k.block_threads.into())));
    }
    // `check_target` ran first; an unknown target has no limit and so takes nothing.
    let limit = limits::shared_limit(target).unwrap_or(0);
    if k.shared_bytes > limit {
        return Err(err(format!(
            "{} bytes of shared memory; a block on {target} has at most {limit}",
            k.shared_bytes
        )));
    }
    if k.params.len() > MAX_PARAMS {
        return Err(err(format!(
            "{} parameters; at most {MAX_PARAMS}",
            k.params.len()
        )));
    }
    let mut names = HashSet::new();
    for p in &k.params {
        check_param_name(&p.name).map_err(err)?;
        if !names.insert(p.name.as_str()) {
            return Err(err(format!("two parameters are named `{}`", p.name)));
        }
        if let ParamKind::Global { rank, .. } = p.kind {
            if !RANKS.contains(&rank) {
                return Err(err(rank_problem(&p.name, rank.into())));
            }
        }
    }
    // `aligned16` names global views of the kernel, each once, in name order (as the
    // compiler's facts print them).
    for a in &k.aligned16 {
        let global = k
            .params
            .iter()
            .any(|p| p.name == *a && matches!(p.kind, ParamKind::Global { .. }));
        if !global {
            return Err(err(format!(
                "`aligned16` names `{}`, which is not a global-view parameter",
                shown(a)
            )));
        }
    }
    if k.aligned16.windows(2).any(|w| w[0] >= w[1]) {
        return Err(err(
            "`aligned16` must list parameter names once each, in name order".into(),
        ));
    }
    Ok(())
}

/// The kernels' fields, each kernel once by (name, variant, facts) (spaces in the variant do
/// not count, as [`Bundle::kernel`] ignores them) and each code file used once.
pub(super) fn check_kernels(
    origin: &str,
    target: &str,
    kernels: &[BundleKernel],
) -> Result<(), BundleError> {
    if kernels.len() > MAX_KERNELS {
        return Err(invalid(
            origin,
            format!(
                "{} kernels; a bundle holds at most {MAX_KERNELS}",
                kernels.len()
            ),
        ));
    }
    let mut variants = HashSet::new();
    let mut files = HashSet::new();
    for k in kernels {
        check_kernel_fields(origin, target, k)?;
        let squashed: String = k.variant.split_whitespace().collect();
        if !variants.insert((k.name.as_str(), squashed, k.aligned16.clone())) {
            return Err(invalid(
                origin,
                format!(
                    "kernel `{}` assuming {} is in the bundle twice",
                    kernel_label(k),
                    k.facts()
                ),
            ));
        }
        if !files.insert(k.code_file.as_str()) {
            return Err(invalid(
                origin,
                format!(
                    "kernel `{}`: code file `{}` is named by two kernels",
                    kernel_label(k),
                    k.code_file
                ),
            ));
        }
    }
    Ok(())
}

/// The code of `k` fits the limits and is code for `target` defining the kernel: PTX with the
/// target's `.target` line and the kernel's `.entry`, or (AMD) an ELF code object with the
/// kernel's descriptor symbol `<name>.kd`.
pub(super) fn check_code(origin: &str, target: &str, k: &BundleKernel) -> Result<(), BundleError> {
    let size = k.code().len() as u64;
    if size > MAX_CODE_FILE_BYTES {
        return Err(BundleError::TooLarge {
            bundle: origin.to_string(),
            file: k.code_file.clone(),
            size,
            limit: MAX_CODE_FILE_BYTES,
        });
    }
    let err = |message: String| invalid(origin, message);
    match (&k.code_object, is_amd(target)) {
        (Some(object), true) => {
            if !object.starts_with(b"\x7fELF") {
                return Err(err(format!(
                    "`{}` (kernel {}) is not an ELF code object",
                    k.code_file,
                    kernel_label(k)
                )));
            }
            let descriptor = format!("{}.kd", k.name);
            if !object
                .windows(descriptor.len())
                .any(|w| w == descriptor.as_bytes())
            {
                return Err(err(format!(
                    "`{}` has no kernel descriptor `{descriptor}`",
                    k.code_file
                )));
            }
            Ok(())
        }
        (None, false) => {
            let ptx_target = k
                .ptx
                .lines()
                .find_map(|l| l.trim().strip_prefix(".target "))
                .map(|t| t.split([',', ' ']).next().unwrap_or("").trim());
            if ptx_target != Some(target) {
                return Err(err(format!(
                    "`{}` (kernel {}) is PTX for {}, but the bundle is for {target}",
                    k.code_file,
                    kernel_label(k),
                    ptx_target.map_or("no target (no `.target` line)".to_string(), shown)
                )));
            }
            if !k.ptx.contains(&format!(".entry {}(", k.name)) {
                return Err(err(format!(
                    "`{}` has no entry `.entry {}(`",
                    k.code_file, k.name
                )));
            }
            Ok(())
        }
        (Some(_), false) => Err(err(format!(
            "kernel `{}` has a code object, but a bundle for {target} holds PTX",
            kernel_label(k)
        ))),
        (None, true) => Err(err(format!(
            "kernel `{}` has PTX, but a bundle for {target} holds code objects",
            kernel_label(k)
        ))),
    }
}

/// Everything: what a reader would check, run before writing so that a bundle is never written
/// that could not be read back (nor a file outside the output directory).
pub(super) fn check_bundle(origin: &str, b: &Bundle) -> Result<(), BundleError> {
    check_target(origin, &b.target)?;
    check_kernels(origin, &b.target, &b.kernels)?;
    let mut total: u64 = 0;
    for k in &b.kernels {
        check_code(origin, &b.target, k)?;
        total = add_code_bytes(origin, total, k.code().len() as u64)?;
    }
    Ok(())
}

/// `total + size` bytes of code, if that is within [`MAX_BUNDLE_BYTES`].
pub(super) fn add_code_bytes(origin: &str, total: u64, size: u64) -> Result<u64, BundleError> {
    match total.checked_add(size) {
        Some(sum) if sum <= MAX_BUNDLE_BYTES => Ok(sum),
        _ => Err(invalid(
            origin,
            format!("its code files add up to more than {MAX_BUNDLE_BYTES} bytes"),
        )),
    }
}
