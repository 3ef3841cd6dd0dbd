//! The ptxas driver: assembles PTX for a target and reads its resource report (`-v`).
//!
//! ptxas comes from PyPI (`nvidia-cuda-nvcc`); `scripts/install-deps.sh` installs it into the
//! repository's `.venv` and links it at `.venv/tools/ptxas`. `TILEKIT_PTXAS` overrides the path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{CodegenError, Target};

/// What ptxas reports for one kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// 32-bit registers per thread.
    pub registers: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
    pub stack_frame_bytes: u32,
    /// Static shared memory (dynamic shared memory is not in the PTX).
    pub shared_bytes: u32,
    pub barriers: u32,
}

/// An assembled kernel.
#[derive(Clone, Debug)]
pub struct Assembled {
    pub cubin: Vec<u8>,
    pub report: Report,
    /// ptxas's own output (the `-v` lines and any warnings).
    pub log: String,
}

/// Finds an NVIDIA tool: `$env_var`, the repository's `.venv/tools/<name>`, then `PATH`.
pub(crate) fn find_tool(name: &str, env_var: &str) -> Result<PathBuf, CodegenError> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(CodegenError::Tool {
            tool: name.into(),
            message: format!(
                "${env_var} names {}, which does not exist; unset it to use .venv/tools/{name} \
                 from `scripts/install-deps.sh`",
                p.display()
            ),
        });
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(".venv/tools")
        .join(name);
    if venv.exists() {
        return Ok(venv);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(CodegenError::Tool {
        tool: name.into(),
        message: format!(
            "`{name}` not found (looked at ${env_var}, .venv/tools/{name} and PATH); install it with \
             `scripts/install-deps.sh` (PyPI nvidia-cuda-nvcc / nvidia-cuda-nvdisasm)"
        ),
    })
}

/// A scratch file name unique to this process and call.
pub(crate) fn scratch(ext: &str) -> PathBuf {
    scratch_in(&std::env::temp_dir(), ext)
}

/// A name in `dir` unique to this process and call.
pub(crate) fn scratch_in(dir: &Path, ext: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("tilekit-{}-{n}.{ext}", std::process::id()))
}

/// Assembles `ptx` for `target` (`ptxas -arch=<target> -v`).
pub fn assemble(ptx: &str, target: Target) -> Result<Assembled, CodegenError> {
    let tool = find_tool("ptxas", "TILEKIT_PTXAS")?;
    let src = scratch("ptx");
    let out = scratch("cubin");
    let io = |e: std::io::Error| CodegenError::Tool {
        tool: "ptxas".into(),
        message: e.to_string(),
    };
    std::fs::write(&src, ptx).map_err(io)?;
    let result = Command::new(&tool)
        .arg(format!("-arch={}", target.name()))
        .arg("-v")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(io);
    let _ = std::fs::remove_file(&src);
    let result = result?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    if !result.status.success() {
        let _ = std::fs::remove_file(&out);
        return Err(CodegenError::Tool {
            tool: "ptxas".into(),
            message: format!("assembling for {target} failed:\n{log}"),
        });
    }
    let cubin = std::fs::read(&out).map_err(io)?;
    let _ = std::fs::remove_file(&out);
    Ok(Assembled {
        cubin,
        report: parse_report(&log),
        log,
    })
}

/// Whether a compile may spill registers to memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpillPolicy {
    /// Spills are an error ([`CodegenError::Spills`]) naming the numbers (the default: a spill
    /// in a hot loop costs more than any tile size gains).
    #[default]
    Refuse,
    /// The author accepted spills (`#[kernel(allow_spills)]`).
    Allow,
}

/// Refuses the ptxas report `r` of `kernel` when it spilled and `policy` does not allow it.
pub fn check_spills(
    kernel: &str,
    target: Target,
    r: &Report,
    policy: SpillPolicy,
) -> Result<(), CodegenError> {
    let bytes = u64::from(r.spill_store_bytes) + u64::from(r.spill_load_bytes);
    if bytes == 0 || policy == SpillPolicy::Allow {
        return Ok(());
    }
    Err(CodegenError::Spills {
        kernel: kernel.to_string(),
        target,
        registers: u64::from(r.registers),
        limit: crate::REGISTER_LIMIT,
        spill_bytes: bytes,
        spilled_registers: 0,
        detail: format!(
            "ptxas: {} registers, {} bytes of spill stores, {} bytes of spill loads, {} bytes of \
             stack frame",
            r.registers, r.spill_store_bytes, r.spill_load_bytes, r.stack_frame_bytes
        ),
    })
}

/// Whether a compile may keep code for which ptxas gave a performance advisory
/// ([`performance_advisories`]: serialized wgmma, ignored `setmaxnreg`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdvisoryPolicy {
    /// An advisory is an error ([`CodegenError::PerformanceAdvisory`]) naming the kernel, the
    /// target and ptxas's text (the default: such code runs far below what its instruction
    /// counts say, and nothing else would tell the author).
    #[default]
    Refuse,
    /// The author accepted advisories while experimenting ([`AdvisoryPolicy::ENV`] set), or
    /// reads them in a report (`tilekit check` prints them and fails after its report).
    Allow,
}

impl AdvisoryPolicy {
    /// The environment variable that accepts advisories: set to anything but empty or `0`,
    /// every compile of the process keeps code ptxas gave an advisory for.
    pub const ENV: &'static str = "TILEKIT_ALLOW_PTXAS_ADVISORIES";

    /// [`AdvisoryPolicy::Allow`] when [`AdvisoryPolicy::ENV`] is set to anything but empty or
    /// `0`, else [`AdvisoryPolicy::Refuse`].
    pub fn from_env() -> AdvisoryPolicy {
        match std::env::var_os(Self::ENV) {
            Some(v) if !v.is_empty() && v != "0" => AdvisoryPolicy::Allow,
            _ => AdvisoryPolicy::Refuse,
        }
    }
}

/// Refuses the ptxas `log` of `kernel` when it has a performance advisory and `policy` does not
/// allow it.
pub fn check_advisories(
    kernel: &str,
    target: Target,
    log: &str,
    policy: AdvisoryPolicy,
) -> Result<(), CodegenError> {
    let advisories = performance_advisories(log);
    if advisories.is_empty() || policy == AdvisoryPolicy::Allow {
        return Ok(());
    }
    Err(CodegenError::PerformanceAdvisory {
        kernel: kernel.to_string(),
        target,
        advisories,
    })
}

/// The checks of [`crate::compile`] on NVIDIA: assembles `ptx` and refuses it as
/// [`check_spills`] and [`check_advisories`] do, returning ptxas's output; `Ok(None)` when
/// ptxas is not installed (nothing found at `.venv/tools/ptxas` or on `PATH`, and
/// `TILEKIT_PTXAS` unset), where the checks cannot run. A `TILEKIT_PTXAS` naming no file, or
/// PTX that ptxas rejects, is an error.
pub fn check_compiled(
    ptx: &str,
    target: Target,
    kernel: &str,
    spills: SpillPolicy,
    advisories: AdvisoryPolicy,
) -> Result<Option<Assembled>, CodegenError> {
    if std::env::var_os("TILEKIT_PTXAS").is_none() && find_tool("ptxas", "TILEKIT_PTXAS").is_err() {
        return Ok(None);
    }
    let a = assemble_checked(ptx, target, kernel, spills)?;
    check_advisories(kernel, target, &a.log, advisories)?;
    Ok(Some(a))
}

/// [`assemble`], then [`check_spills`] on its report, so a kernel that does not fit its
/// registers is refused with the numbers instead of running slowly.
pub fn assemble_checked(
    ptx: &str,
    target: Target,
    kernel: &str,
    policy: SpillPolicy,
) -> Result<Assembled, CodegenError> {
    let a = assemble(ptx, target)?;
    check_spills(kernel, target, &a.report, policy)?;
    Ok(a)
}

/// ptxas's performance advisories in `log`: the `info` lines with a C75xx code or "Potential
/// Performance Loss" (measured with ptxas 13.5: C7515 "wgmma.mma_async instructions are
/// serialized due to non wgmma instructions defining accumulator registers of a wgmma between
/// start and end of the pipeline stage", C7510 serialized wgmma for other reasons, C7508
/// `setmaxnreg` ignored). Each is the text after `ptxas info    :`. A kernel that has one runs
/// far below what its instruction counts say, so [`crate::compile`] refuses it
/// ([`check_advisories`]) and `tilekit check` prints them.
pub fn performance_advisories(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let code = l.find("(C75").is_some_and(|i| {
                let digits = &l[i + 4..];
                digits.len() > 2
                    && digits.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                    && digits.as_bytes()[2] == b')'
            });
            code || l.contains("Potential Performance Loss")
        })
        .map(|l| match l.split_once(" : ") {
            Some((head, rest)) if head.trim_start().starts_with("ptxas") => rest.trim().to_string(),
            _ => l.trim().to_string(),
        })
        .collect()
}

/// Reads the numbers of ptxas's `-v` lines:
/// `ptxas info : Used 14 registers, used 1 barriers, 1024 bytes smem, 368 bytes cmem[0]` and
/// `0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads`.
pub fn parse_report(log: &str) -> Report {
    let mut r = Report::default();
    for line in log.lines() {
        for part in line.split(',') {
            let words: Vec<&str> = part.split_whitespace().collect();
            let num = |i: usize| words.get(i).and_then(|w| w.parse::<u32>().ok());
            for (i, w) in words.iter().enumerate() {
                match *w {
                    "registers" if i >= 1 => r.registers = num(i - 1).unwrap_or(r.registers),
                    "barriers" if i >= 1 => r.barriers = num(i - 1).unwrap_or(r.barriers),
                    "smem" if i >= 2 => r.shared_bytes = num(i - 2).unwrap_or(r.shared_bytes),
                    "stack" if i >= 2 => {
                        r.stack_frame_bytes = num(i - 2).unwrap_or(r.stack_frame_bytes)
                    }
                    "spill" if i >= 2 => {
                        let v = num(i - 2).unwrap_or(0);
                        match words.get(i + 1) {
                            Some(&"stores") => r.spill_store_bytes = v,
                            Some(&"loads") => r.spill_load_bytes = v,
                            _ => {}
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn performance_advisories_are_the_c75_lines_of_the_log() {
        // ptxas 13.5's lines for a kernel whose wgmma it serialized, around its usual report.
        let log = "ptxas info    : (C7515) Potential Performance Loss: wgmma.mma_async instructions \
                   are serialized due to non wgmma instructions defining accumulator registers of a \
                   wgmma between start and end of the pipeline stage in the function 'k' in line 1048\n\
                   ptxas info    : 0 bytes gmem\n\
                   ptxas info    : Compiling entry function 'k' for 'sm_90a'\n\
                   ptxas info    : Used 96 registers, used 1 barriers, 32768 bytes smem\n";
        let a = performance_advisories(log);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(
            a[0].starts_with("(C7515) Potential Performance Loss"),
            "{a:?}"
        );
        assert!(a[0].ends_with("in line 1048"), "{a:?}");
        let other = "ptxas info    : (C7508) Potential Performance Loss: 'setmaxnreg' ignored\n";
        assert_eq!(performance_advisories(other).len(), 1);
        // A report without one, and text that only looks alike.
        assert!(performance_advisories(&log[log.find("ptxas info    : 0").unwrap()..]).is_empty());
        assert!(performance_advisories("ptxas info    : (C75x) nothing\n").is_empty());
    }

    #[test]
    fn spills_are_refused_with_the_numbers_unless_allowed() {
        let r = parse_report(
            "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
             ptxas info    : Used 96 registers, used 1 barriers\n",
        );
        assert_eq!(
            check_spills("k", Target::Sm80, &r, SpillPolicy::Refuse),
            Ok(())
        );
        let r = parse_report(
            "    232 bytes stack frame, 232 bytes spill stores, 284 bytes spill loads\n\
             ptxas info    : Used 255 registers, used 1 barriers\n",
        );
        let e = check_spills("rms", Target::Sm90a, &r, SpillPolicy::Refuse).unwrap_err();
        match &e {
            CodegenError::Spills {
                registers,
                limit,
                spill_bytes,
                ..
            } => assert_eq!((*registers, *limit, *spill_bytes), (255, 255, 516)),
            other => panic!("expected Spills, got {other:?}"),
        }
        let text = e.to_string();
        for part in [
            "`rms`",
            "sm_90a",
            "255 registers",
            "232 bytes of spill stores",
            "284 bytes of spill loads",
            "allow_spills",
        ] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
        assert_eq!(
            check_spills("rms", Target::Sm90a, &r, SpillPolicy::Allow),
            Ok(())
        );
    }

    #[test]
    fn parses_the_verbose_report() {
        let log = "ptxas info    : 0 bytes gmem\nptxas info    : Compiling entry function 'k' for 'sm_80'\n\
                   ptxas info    : Function properties for k\n    \
                   0 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
                   ptxas info    : Used 14 registers, used 1 barriers, 1024 bytes smem, 368 bytes cmem[0]\n";
        assert_eq!(
            parse_report(log),
            Report {
                registers: 14,
                spill_store_bytes: 8,
                spill_load_bytes: 12,
                stack_frame_bytes: 0,
                shared_bytes: 1024,
                barriers: 1,
            }
        );
    }
}
