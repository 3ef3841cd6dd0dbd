//! A compile cache: in memory, and on disk under `TILEKIT_CACHE_DIR` when it is set.
//!
//! The key is the kernel's module as Tile IR text (comptime values are already specialized into
//! it), the kernel name, the target, the [`Facts`] the compile assumed, this crate's version, a
//! hash of this crate's sources (taken by its build script, so a lowering changed without a
//! version bump misses too) and the LLVM version, so a change to any of them misses. Entries hold every stage and the launch metadata; the full key is stored
//! with an entry and compared on load, so a hash collision is a miss, never a wrong kernel.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::ptxas::AdvisoryPolicy;
use crate::{compile_with, CodegenError, Compiled, Facts, KernelArg, Stage, Target, Timings};

fn memory() -> &'static Mutex<HashMap<String, Compiled>> {
    static M: OnceLock<Mutex<HashMap<String, Compiled>>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Forgets every kernel cached in memory (the disk cache stays).
pub fn clear_memory() {
    if let Ok(mut m) = memory().lock() {
        m.clear();
    }
}

/// The cache key of a kernel's general variant: everything its compiled form depends on.
pub fn key(module: &tilekit_ir::Module, kernel: &str, target: Target) -> String {
    key_with(module, kernel, target, &Facts::general())
}

/// The cache key of a kernel compiled for `facts` ([`compile_with`]). A compile that accepts
/// ptxas's performance advisories ([`AdvisoryPolicy::from_env`]) has a key of its own, so its
/// code is never taken by a compile that refuses them.
pub fn key_with(
    module: &tilekit_ir::Module,
    kernel: &str,
    target: Target,
    facts: &Facts,
) -> String {
    let (major, minor, patch) = inkwell::support::get_llvm_version();
    let advisories = match AdvisoryPolicy::from_env() {
        AdvisoryPolicy::Refuse => "",
        AdvisoryPolicy::Allow => " advisories-allowed",
    };
    format!(
        "tilekit-codegen {} source {} llvm {major}.{minor}.{patch} target {target} kernel \
         {kernel}{advisories} facts {facts}\n{}",
        env!("CARGO_PKG_VERSION"),
        env!("TILEKIT_CODEGEN_SOURCE"),
        tilekit_ir::print_module(module)
    )
}

/// FNV-1a, 64 bits: stable across Rust versions (unlike `DefaultHasher`), for file names.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// [`compile`](crate::compile) through the cache: a hit returns the stored kernel (with zero
/// [`Timings`]).
pub fn compile_cached(
    module: &tilekit_ir::Module,
    kernel: &str,
    target: Target,
) -> Result<Compiled, CodegenError> {
    compile_cached_with(module, kernel, target, &Facts::general())
}

/// [`compile_with`] through the cache; the facts are part of the key.
pub fn compile_cached_with(
    module: &tilekit_ir::Module,
    kernel: &str,
    target: Target,
    facts: &Facts,
) -> Result<Compiled, CodegenError> {
    let k = key_with(module, kernel, target, facts);
    if let Some(c) = memory().lock().ok().and_then(|m| m.get(&k).cloned()) {
        return Ok(c);
    }
    let dir = std::env::var_os("TILEKIT_CACHE_DIR").map(PathBuf::from);
    if let Some(c) = dir.as_deref().and_then(|d| load(d, &k)) {
        if let Ok(mut m) = memory().lock() {
            m.insert(k, c.clone());
        }
        return Ok(c);
    }
    let c = compile_with(module, kernel, target, facts)?;
    if let Some(d) = dir {
        // A cache that cannot be written is only slower: the kernel is still returned.
        let _ = store(&d, &k, &c);
    }
    if let Ok(mut m) = memory().lock() {
        let mut hit = c.clone();
        hit.timings = Timings::default();
        m.insert(k, hit);
    }
    Ok(c)
}

fn entry(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{:016x}", fnv1a(key)))
}

/// Writes the entry into a folder of its own and renames it into place, so a reader in another
/// process (a test binary, the CLI) never sees a half-written entry. An entry already there
/// with this key (another process stored the same kernel first) is kept; one with another key
/// (written by other sources, or a hash collision) is replaced.
fn store(dir: &Path, key: &str, c: &Compiled) -> std::io::Result<()> {
    let e = entry(dir, key);
    let tmp = crate::ptxas::scratch_in(dir, "entry");
    let mut written = write_entry(&tmp, key, c).and_then(|()| std::fs::rename(&tmp, &e));
    if written.is_err() && e.exists() {
        if std::fs::read_to_string(e.join("key")).is_ok_and(|k| k == key) {
            written = Ok(());
        } else {
            let _ = std::fs::remove_dir_all(&e);
            written = std::fs::rename(&tmp, &e);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    written
}

fn write_entry(e: &Path, key: &str, c: &Compiled) -> std::io::Result<()> {
    std::fs::create_dir_all(e)?;
    for s in Stage::ALL.into_iter().filter(|s| *s != Stage::Hsaco) {
        std::fs::write(e.join(s.name()), c.stage(s))?;
    }
    if let Some(co) = c.code_object() {
        std::fs::write(e.join("code_object"), co)?;
    }
    if let Some(a) = c.assembly() {
        std::fs::write(e.join("cubin"), &a.cubin)?;
        std::fs::write(e.join("ptxas-log"), &a.log)?;
    }
    let mut meta = format!(
        "kernel {}\nwarps {}\nshared_bytes {}\ndynamic_shared {}\n",
        c.kernel,
        c.warps,
        c.shared_bytes,
        u8::from(c.dynamic_shared)
    );
    for a in &c.args {
        match a {
            KernelArg::Global { name, dtype, rank } => {
                meta.push_str(&format!("global {name} {dtype} {rank}\n"))
            }
            KernelArg::Scalar { name, dtype } => meta.push_str(&format!("scalar {name} {dtype}\n")),
        }
    }
    for m in &c.tensor_maps {
        meta.push_str(&format!("tensor_map {}\n", m.to_text()));
    }
    std::fs::write(e.join("meta"), meta)?;
    std::fs::write(e.join("key"), key)
}

fn load(dir: &Path, key: &str) -> Option<Compiled> {
    let e = entry(dir, key);
    if std::fs::read_to_string(e.join("key")).ok()? != key {
        return None;
    }
    let target = key
        .split_whitespace()
        .skip_while(|w| *w != "target")
        .nth(1)?
        .parse::<Target>()
        .ok()?;
    let facts: Facts = key.lines().next()?.split_once(" facts ")?.1.parse().ok()?;
    let meta = std::fs::read_to_string(e.join("meta")).ok()?;
    let (mut kernel, mut warps, mut shared_bytes, mut dynamic_shared) = (None, None, None, None);
    let mut args = Vec::new();
    let mut tensor_maps = Vec::new();
    for line in meta.lines() {
        if let Some(m) = line.strip_prefix("tensor_map ") {
            tensor_maps.push(crate::tma::TensorMapArg::from_text(m)?);
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["kernel", k] => kernel = Some(k.to_string()),
            ["warps", n] => warps = n.parse().ok(),
            ["shared_bytes", n] => shared_bytes = n.parse().ok(),
            ["dynamic_shared", b] => dynamic_shared = Some(*b == "1"),
            ["global", name, d, rank] => args.push(KernelArg::Global {
                name: name.to_string(),
                dtype: tilekit_ir::ScalarType::from_name(d)?,
                rank: rank.parse().ok()?,
            }),
            ["scalar", name, d] => args.push(KernelArg::Scalar {
                name: name.to_string(),
                dtype: tilekit_ir::ScalarType::from_name(d)?,
            }),
            _ => return None,
        }
    }
    let stages = Stage::ALL
        .into_iter()
        .filter(|s| *s != Stage::Hsaco)
        .map(|s| Some((s, std::fs::read_to_string(e.join(s.name())).ok()?)))
        .collect::<Option<Vec<_>>>()?;
    let code_object = if target.is_nvidia() {
        None
    } else {
        Some(std::fs::read(e.join("code_object")).ok()?)
    };
    let mut c = Compiled::from_parts(
        kernel?,
        target,
        facts,
        args,
        warps?,
        shared_bytes?,
        dynamic_shared?,
        Timings::default(),
        stages,
        code_object,
    );
    c.tensor_maps = tensor_maps;
    // An entry stored without ptxas's output (ptxas not installed then) loads without it.
    if let (Ok(cubin), Ok(log)) = (
        std::fs::read(e.join("cubin")),
        std::fs::read_to_string(e.join("ptxas-log")),
    ) {
        c.assembly = Some(crate::ptxas::Assembled {
            cubin,
            report: crate::ptxas::parse_report(&log),
            log,
        });
    }
    Some(c)
}
