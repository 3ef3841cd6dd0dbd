//! The `tilekit` command: `list`, `selftest`, `emit`, `check` and `bundle` over the registered kernels.
//!
//! A library module so that any binary linking more kernels (which register themselves) can
//! offer the same command over all of them: `fn main() { std::process::exit(tilekit::cli::main()) }`.
//!
//! `emit`, `check` and `bundle` compile kernels and need the `jit` feature (on by default); a build
//! without it answers them with an error that says so.

use std::fmt::{self, Write as _};

use crate::launch::Device;
use crate::registry::{kernels, KernelInfo, Variant};

const USAGE: &str = "\
usage: tilekit list
       tilekit selftest [--device cpu|cuda[:N]|hip[:N]] [--bundle DIR]
       tilekit bench [--device cuda[:N]|hip[:N]] [--bundle DIR] [--runs N]
       tilekit emit <kernel> --target <target> --stage <stage> [--const N=V]... [--out FILE]
       tilekit check <kernel> --target <target> [--const N=V]...
       tilekit bundle --target <target> --out <dir>
       tilekit help";

const HELP: &str = "\
tilekit: tiled GPU kernels in Rust

commands:
  list                 one line per registered kernel variant: name<comptime arguments>,
                       parameters, op count, source
  selftest [--device cpu|cuda[:N]|hip[:N]] [--bundle DIR]
                       runs every kernel against its reference (on a GPU: compiled on first
                       launch or taken from the bundle, larger shapes too); ends with
                       `N passed, M failed`
  bench [--device cuda[:N]|hip[:N]] [--bundle DIR] [--runs N]
                       times the kernel library on a GPU (the first one by default): median of
                       N ≥ 20 event-timed runs (30), TFLOP/s or GB/s, % of the copy bandwidth and
                       cuBLAS bf16 GEMM measured in the same run, ratio to cuBLAS for GEMMs
  emit <kernel> --target <target> --stage <stage> [--const N=V]... [--out FILE]
                       prints one stage of the kernel compiled for the target, or writes it to
                       FILE; the binary `hsaco` stage is only written (it needs --out)
  check <kernel> --target <target> [--const N=V]...
                       NVIDIA: assembles the kernel's PTX with ptxas and prints registers, spill
                       bytes, shared memory and the SASS instruction mix (needs ptxas and
                       nvdisasm). AMD: prints VGPR/AGPR/SGPR counts, LDS bytes, scratch bytes
                       and spills read from the linked code object's metadata note, and the
                       MFMA count and instruction mix of its assembly (needs ld.lld)
  bundle --target <target> --out <dir>
                       compiles every kernel variant ahead of time: one PTX file (NVIDIA) or
                       code object (AMD, .hsaco) per variant,
                       bundle.json (metadata) and bundle.tkb (a tar of it all, for include_bytes!);
                       a tilekit built without `jit` loads it (tilekit::Bundle)

targets: sm_80, sm_90a (NVIDIA); gfx90a, gfx942, gfx950 (AMD CDNA, wave64)
stages:  tile (Tile IR), mlir (as generated), mlir-lowered (LLVM dialect), llvm (as translated),
         llvm-opt (after O3); NVIDIA: ptx, sass (ptxas + nvdisasm); AMD: asm (AMDGPU
         assembly), hsaco (the code object linked by ld.lld; binary, needs --out FILE)

choosing a variant: a generic kernel is registered with several comptime instantiations
(`tilekit list` shows them). Name one by writing its comptime arguments after the kernel's
name, as `list` prints them (spaces do not matter; quote it for the shell):
    tilekit emit 'gemm<bf16, 64, 64, 32, 32, 32>' --target sm_80 --stage ptx
or narrow by position with --const N=V: the N-th comptime argument (counting from 0) is V
    tilekit check gemm --const 0=bf16 --target sm_90a
A kernel with a single variant needs neither. If the choice leaves no variant, or more than
one, the error lists the registered variants.

exit codes: 0 success, 1 a kernel failed (selftest) or could not be compiled or assembled,
2 a usage error (unknown command, kernel, variant, target or stage).";

/// Why a command failed: the message and the process exit code (2 for usage errors, which
/// [`main`] follows with the usage lines; 1 for a kernel that could not be compiled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    fn usage(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 2,
        }
    }

    #[cfg_attr(not(feature = "jit"), allow(dead_code))]
    fn failure(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// Runs the command on the process arguments; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok((out, code)) => {
            print!("{out}");
            code
        }
        Err(e) if e.code == 2 => {
            eprintln!("tilekit: {e}\n{USAGE}");
            e.code
        }
        Err(e) => {
            eprintln!("tilekit: {e}");
            e.code
        }
    }
}

/// `[--device NAME] [--bundle DIR] [--runs N]` of `selftest` and `bench`: the opened device (with
/// the bundle attached) and the runs per benchmark row. A name that is not a device is a usage
/// error; a device that cannot be opened (no driver) is a failure.
fn device_args(cmd: &str, args: &[String]) -> Result<(Device, usize), CliError> {
    let (mut name, mut bundle, mut runs) = (None, None, 30);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| CliError::usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--device" => name = Some(value()?.clone()),
            "--bundle" => bundle = Some(value()?.clone()),
            "--runs" if cmd == "bench" => {
                let v = value()?;
                runs = v.parse().ok().filter(|&n| n >= 20).ok_or_else(|| {
                    CliError::usage(format!("--runs wants a number of at least 20, not `{v}`"))
                })?;
            }
            other => return Err(CliError::usage(format!("`{cmd}` does not take `{other}`"))),
        }
    }
    let device = match name.as_deref() {
        None if cmd == "bench" => Device::best(),
        None => Device::Cpu,
        Some(n) => Device::from_name(n).map_err(|e| match e {
            crate::Error::UnknownDevice { .. } => CliError::usage(e.to_string()),
            _ => CliError::failure(e.to_string()),
        })?,
    };
    if let Some(dir) = bundle {
        let b = crate::Bundle::load_dir(&dir).map_err(|e| CliError::failure(e.to_string()))?;
        device
            .attach_bundle(b)
            .map_err(|e| CliError::failure(e.to_string()))?;
    }
    Ok((device, runs))
}

/// Runs the command on `args` (without the program name): the text to print and the exit code,
/// or why it failed.
pub fn run(args: &[String]) -> Result<(String, i32), CliError> {
    match args.first().map(String::as_str) {
        Some("list") if args.len() == 1 => Ok((list(), 0)),
        Some("help" | "--help" | "-h") => Ok((format!("{HELP}\n\n{USAGE}\n"), 0)),
        Some(cmd @ ("selftest" | "bench")) => {
            let (device, runs) = device_args(cmd, &args[1..])?;
            if cmd == "selftest" {
                return Ok(selftest(&device));
            }
            crate::bench::run(&device, runs)
                .map(|table| (table, 0))
                .map_err(|e| CliError::failure(e.to_string()))
        }
        Some(cmd @ ("emit" | "check")) => {
            if !cfg!(feature = "jit") {
                return Err(unavailable(cmd));
            }
            let opts = CompileArgs::parse(cmd, &args[1..])?;
            let (kernel, variant) = select(&opts.kernel, &opts.consts)?;
            if cmd == "emit" {
                let stage = opts
                    .stage
                    .as_deref()
                    .ok_or_else(|| CliError::usage("`emit` needs --stage <stage>"))?;
                jit::emit(kernel, variant, &opts.target, stage, opts.out.as_deref()).map(|s| (s, 0))
            } else {
                if opts.stage.is_some() {
                    return Err(CliError::usage("`check` takes no --stage"));
                }
                if opts.out.is_some() {
                    return Err(CliError::usage("`check` takes no --out"));
                }
                jit::check(kernel, variant, &opts.target).map(|s| (s, 0))
            }
        }
        Some("bundle") => {
            if !cfg!(feature = "jit") {
                return Err(unavailable("bundle"));
            }
            let (target, out) = bundle_args(&args[1..])?;
            jit::bundle(&target, &out).map(|s| (s, 0))
        }
        Some(other) => Err(CliError::usage(format!("unknown command `{other}`"))),
        None => Err(CliError::usage("no command")),
    }
}

/// The arguments of `emit` and `check`.
struct CompileArgs {
    kernel: String,
    target: String,
    stage: Option<String>,
    /// `--out FILE`: where `emit` writes the stage instead of printing it.
    out: Option<String>,
    /// `--const N=V`: position and value.
    consts: Vec<(usize, String)>,
}

impl CompileArgs {
    fn parse(cmd: &str, args: &[String]) -> Result<CompileArgs, CliError> {
        let mut kernel = None;
        let mut target = None;
        let mut stage = None;
        let mut out = None;
        let mut consts = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |flag: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| CliError::usage(format!("{flag} needs a value")))
            };
            match a.as_str() {
                "--target" => target = Some(value("--target")?),
                "--stage" => stage = Some(value("--stage")?),
                "--out" => out = Some(value("--out")?),
                "--const" => {
                    let kv = value("--const")?;
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| CliError::usage(format!("--const wants N=V, not `{kv}`")))?;
                    let n = k.trim().parse::<usize>().map_err(|_| {
                        CliError::usage(format!(
                            "--const {kv}: N is the position of a comptime argument (0, 1, …) as \
                             `tilekit list` shows them; the registry does not record their names"
                        ))
                    })?;
                    consts.push((n, v.trim().to_string()));
                }
                flag if flag.starts_with("--") => {
                    return Err(CliError::usage(format!("`{cmd}`: unknown option `{flag}`")))
                }
                name if kernel.is_none() => kernel = Some(name.to_string()),
                extra => {
                    return Err(CliError::usage(format!(
                        "`{cmd}`: unexpected argument `{extra}` (one kernel at a time)"
                    )))
                }
            }
        }
        Ok(CompileArgs {
            kernel: kernel
                .ok_or_else(|| CliError::usage(format!("`{cmd}` needs a kernel name")))?,
            target: target
                .ok_or_else(|| CliError::usage(format!("`{cmd}` needs --target <target>")))?,
            stage,
            out,
            consts,
        })
    }
}

/// The arguments of `bundle`: the target and the output directory.
fn bundle_args(args: &[String]) -> Result<(String, String), CliError> {
    let (mut target, mut out) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--target" => &mut target,
            "--out" => &mut out,
            other => {
                return Err(CliError::usage(format!(
                    "`bundle`: unexpected argument `{other}`"
                )))
            }
        };
        *slot = Some(
            it.next()
                .cloned()
                .ok_or_else(|| CliError::usage(format!("{a} needs a value")))?,
        );
    }
    Ok((
        target.ok_or_else(|| CliError::usage("`bundle` needs --target sm_80|sm_90a"))?,
        out.ok_or_else(|| CliError::usage("`bundle` needs --out <dir>"))?,
    ))
}

/// A variant's comptime arguments, one string per argument, without spaces:
/// `<bf16, 64, 64>` → `["bf16", "64", "64"]`.
fn comptime_args(args: &str) -> Vec<String> {
    let inner = args.trim().trim_start_matches('<').trim_end_matches('>');
    if inner.trim().is_empty() {
        return Vec::new();
    }
    // Arguments may themselves be generic (`Foo<A, B>`): split at top-level commas only.
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in inner.chars().filter(|c| !c.is_whitespace()) {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// Finds the kernel and the one variant that `spec` (`name` or `name<args>`) and the `--const`
/// choices name; otherwise a usage error listing what is registered.
fn select(
    spec: &str,
    consts: &[(usize, String)],
) -> Result<(&'static KernelInfo, &'static Variant), CliError> {
    let (name, args) = match spec.find('<') {
        Some(i) => (spec[..i].trim(), Some(comptime_args(&spec[i..]))),
        None => (spec.trim(), None),
    };
    let all = kernels();
    let kernel = all
        .iter()
        .copied()
        .find(|k| k.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|k| k.name).collect();
            CliError::usage(format!(
                "unknown kernel `{name}`; registered kernels: {}",
                names.join(", ")
            ))
        })?;
    let listing = || {
        kernel
            .variants
            .iter()
            .map(|v| format!("  {}{}", kernel.name, v.args))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let matching: Vec<&'static Variant> = kernel
        .variants
        .iter()
        .filter(|v| {
            let have = comptime_args(v.args);
            args.as_ref().is_none_or(|a| *a == have)
                && consts
                    .iter()
                    .all(|(n, val)| have.get(*n).is_some_and(|h| *h == val.replace(' ', "")))
        })
        .collect();
    match matching.as_slice() {
        [v] => Ok((kernel, v)),
        [] => Err(CliError::usage(format!(
            "no registered variant of `{}` matches `{spec}`{}; the registered variants are:\n{}",
            kernel.name,
            describe_consts(consts),
            listing()
        ))),
        several => Err(CliError::usage(format!(
            "`{spec}`{} matches {} variants of `{}`; name one (see `tilekit help`):\n{}",
            describe_consts(consts),
            several.len(),
            kernel.name,
            several
                .iter()
                .map(|v| format!("  {}{}", kernel.name, v.args))
                .collect::<Vec<_>>()
                .join("\n")
        ))),
    }
}

/// The answer to `emit` and `check` in a build without the compiler.
fn unavailable(cmd: &str) -> CliError {
    CliError::usage(format!(
        "`{cmd}` compiles kernels, but this tilekit was built without the `jit` feature \
         (tilekit-codegen, LLVM and MLIR); rebuild it with default features or `--features jit`"
    ))
}

fn describe_consts(consts: &[(usize, String)]) -> String {
    consts
        .iter()
        .map(|(n, v)| format!(" --const {n}={v}"))
        .collect()
}

/// One line per kernel variant: name, comptime arguments, ops, parameters, source.
pub fn list() -> String {
    let mut out = String::new();
    for k in kernels() {
        for v in k.variants {
            let m = (v.module)();
            let ops: usize = m.funcs.iter().map(count_ops).sum();
            let _ = writeln!(
                out,
                "{}{}  ({})  {} ops  {}:{}",
                k.name, v.args, k.params, ops, k.file, k.line
            );
        }
    }
    out
}

fn count_ops(f: &crate::ir::Func) -> usize {
    let mut n = 0;
    f.walk(|_| n += 1);
    n
}

/// Runs every registered self-test; the last line is `N passed, M failed`.
pub fn selftest(device: &Device) -> (String, i32) {
    let (mut passed, mut failed) = (0, 0);
    let mut out = String::new();
    for k in kernels() {
        let Some(test) = k.selftest else {
            let _ = writeln!(out, "skip {}: no self-test registered", k.name);
            continue;
        };
        // A failing kernel must not stop the others: a panic counts as a failure.
        match std::panic::catch_unwind(|| test(device)) {
            Ok(Ok(what)) => {
                passed += 1;
                let _ = writeln!(out, "ok   {}: {what}", k.name);
            }
            Ok(Err(e)) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {}: {e}", k.name);
            }
            Err(_) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {}: panicked", k.name);
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    (out, i32::from(failed > 0))
}

/// `emit` and `check`, which compile through tilekit-codegen.
#[cfg(feature = "jit")]
mod jit {
    use std::fmt::Write as _;

    use tilekit_codegen::{amd, compile, ptxas, sass, Compiled, Stage, Target};

    use super::CliError;
    use crate::registry::{KernelInfo, Variant};

    /// The stages `emit` has for `target`: the compiled kernel's, then SASS on NVIDIA.
    fn stage_names(target: Option<Target>) -> Vec<&'static str> {
        let nvidia = target.is_none_or(Target::is_nvidia);
        Stage::ALL
            .into_iter()
            .filter(|s| target.is_none_or(|t| s.applies_to(t)))
            .map(Stage::name)
            .chain(nvidia.then_some("sass"))
            .collect()
    }

    fn parse_target(target: &str) -> Result<Target, CliError> {
        target
            .parse()
            .map_err(|e: tilekit_codegen::UnknownTarget| CliError::usage(e.to_string()))
    }

    fn compiled(k: &KernelInfo, v: &Variant, target: Target) -> Result<Compiled, CliError> {
        compile((v.module)(), k.name, target).map_err(|e| {
            CliError::failure(format!("compiling {}{} for {target}: {e}", k.name, v.args))
        })
    }

    /// One stage of the kernel: its text, or with `out` a line saying where it was written.
    /// The code object (`hsaco`) is binary and is only written to a file.
    pub(super) fn emit(
        k: &KernelInfo,
        v: &Variant,
        target: &str,
        stage: &str,
        out: Option<&str>,
    ) -> Result<String, CliError> {
        let target = parse_target(target)?;
        let known = Stage::ALL.into_iter().find(|s| s.name() == stage);
        let applies = match known {
            Some(s) => s.applies_to(target),
            None => stage == "sass" && target.is_nvidia(),
        };
        if !applies {
            let what = if known.is_some() || stage == "sass" {
                format!("stage `{stage}` does not apply to {target}")
            } else {
                format!("unknown stage `{stage}`")
            };
            return Err(CliError::usage(format!(
                "{what}; stages for {target}: {}",
                stage_names(Some(target)).join(", ")
            )));
        }
        if known == Some(Stage::Hsaco) && out.is_none() {
            return Err(CliError::usage(
                "the `hsaco` stage is a binary code object: write it with --out FILE",
            ));
        }
        let c = compiled(k, v, target)?;
        let bytes = match known {
            Some(Stage::Hsaco) => c.code_object().unwrap_or_default().to_vec(),
            Some(s) => {
                let mut text = c.stage(s).to_string();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.into_bytes()
            }
            None => {
                let mut text = c.sass().map_err(|e| CliError::failure(e.to_string()))?;
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.into_bytes()
            }
        };
        match out {
            None => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Some(path) => {
                std::fs::write(path, &bytes).map_err(|e| {
                    CliError::failure(format!("cannot write the {stage} stage to {path}: {e}"))
                })?;
                Ok(format!(
                    "wrote the {stage} stage of {}{} for {target} ({} bytes) to {path}\n",
                    k.name,
                    v.args,
                    bytes.len()
                ))
            }
        }
    }

    pub(super) fn bundle(target: &str, out: &str) -> Result<String, CliError> {
        let target = parse_target(target)?;
        if !crate::bundle::TARGETS.contains(&target.name()) {
            return Err(CliError::usage(format!(
                "bundles hold code for {}, not {target}",
                crate::bundle::TARGETS.join(", ")
            )));
        }
        let b = crate::bundle::compile_registry(target)
            .map_err(|e| CliError::failure(e.to_string()))?;
        b.write_dir(out)
            .map_err(|e| CliError::failure(e.to_string()))?;
        let mut text = String::new();
        for k in &b.kernels {
            let _ = writeln!(text, "{}{}  {}", k.name, k.variant, k.code_file);
        }
        let _ = writeln!(
            text,
            "wrote {} kernel variants for {target} to {out}",
            b.kernels.len()
        );
        Ok(text)
    }

    pub(super) fn check(k: &KernelInfo, v: &Variant, target: &str) -> Result<String, CliError> {
        let target = parse_target(target)?;
        let c = compiled(k, v, target)?;
        if !target.is_nvidia() {
            return Ok(check_amd(k, v, &c));
        }
        let fail = |e: tilekit_codegen::CodegenError| CliError::failure(e.to_string());
        let asm = ptxas::assemble(c.ptx(), c.target).map_err(fail)?;
        let mix = sass::instruction_mix(&sass::disassemble(&asm.cubin).map_err(fail)?);
        let r = &asm.report;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{} on {}: {} warps ({} threads per block)",
            k.name,
            v.args,
            c.target,
            c.warps,
            c.block_threads()
        );
        let _ = writeln!(out, "registers      {} per thread", r.registers);
        let _ = writeln!(
            out,
            "spill bytes    {} stores, {} loads (stack frame {} bytes){}",
            r.spill_store_bytes,
            r.spill_load_bytes,
            r.stack_frame_bytes,
            if r.spill_store_bytes + r.spill_load_bytes > 0 {
                "  <- spills to local memory"
            } else {
                ""
            }
        );
        let dynamic = if c.dynamic_shared { c.shared_bytes } else { 0 };
        let _ = writeln!(
            out,
            "shared memory  {} bytes ({} static, {} dynamic)",
            u64::from(r.shared_bytes) + dynamic,
            r.shared_bytes,
            dynamic
        );
        let _ = writeln!(out, "barriers       {}", r.barriers);
        let total: usize = mix.values().sum();
        let _ = writeln!(out, "SASS instruction mix ({total} instructions):");
        let mut ops: Vec<(&String, &usize)> = mix.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in ops {
            let _ = writeln!(out, "  {op:<10} {n:>6}");
        }
        Ok(out)
    }

    /// The AMD report: registers, LDS, scratch and spills from the code object's metadata note
    /// (`tilekit_codegen::amd::resources`), MFMAs counted in the assembly.
    fn check_amd(k: &KernelInfo, v: &Variant, c: &Compiled) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}{} on {}: {} wavefronts ({} threads per work-group)",
            k.name,
            v.args,
            c.target,
            c.warps,
            c.block_threads()
        );
        let Some(r) = c.amd_resources() else {
            let _ = writeln!(
                out,
                "the code object has no AMDGPU metadata for this kernel"
            );
            return out;
        };
        let _ = writeln!(
            out,
            "VGPRs          {} per lane (unified: architectural + {} AGPRs)",
            r.vgprs, r.agprs
        );
        let _ = writeln!(out, "AGPRs          {}", r.agprs);
        let _ = writeln!(out, "SGPRs          {}", r.sgprs);
        let _ = writeln!(out, "LDS            {} bytes", r.lds_bytes);
        let _ = writeln!(
            out,
            "scratch        {} bytes per lane ({} VGPR and {} SGPR spills){}",
            r.scratch_bytes,
            r.vgpr_spills,
            r.sgpr_spills,
            if r.scratch_bytes > 0 {
                "  <- spills to scratch"
            } else {
                ""
            }
        );
        let asm = c.stage(Stage::Asm);
        let _ = writeln!(
            out,
            "MFMA           {} instructions",
            amd::resources::mfma_count(asm)
        );
        let mix = amd::resources::instruction_mix(asm);
        let total: usize = mix.values().sum();
        let _ = writeln!(out, "AMDGPU instruction mix ({total} instructions):");
        let mut ops: Vec<(&String, &usize)> = mix.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in ops {
            let _ = writeln!(out, "  {op:<28} {n:>6}");
        }
        out
    }
}

/// Without the `jit` feature there is no compiler to answer `emit` and `check`.
#[cfg(not(feature = "jit"))]
mod jit {
    use super::{unavailable, CliError};
    use crate::registry::{KernelInfo, Variant};

    pub(super) fn emit(
        _: &KernelInfo,
        _: &Variant,
        _: &str,
        _: &str,
        _: Option<&str>,
    ) -> Result<String, CliError> {
        Err(unavailable("emit"))
    }

    pub(super) fn check(_: &KernelInfo, _: &Variant, _: &str) -> Result<String, CliError> {
        Err(unavailable("check"))
    }

    pub(super) fn bundle(_: &str, _: &str) -> Result<String, CliError> {
        Err(unavailable("bundle"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_str(args: &str) -> Result<(String, i32), CliError> {
        let args: Vec<String> = args.split(' ').map(String::from).collect();
        run(&args)
    }

    /// `selftest` and `bench` take `--device`, `--bundle` (and `--runs`); a name that is not a
    /// device is a usage error, a device that cannot be opened or used is a failure (exit 1).
    #[test]
    fn selftest_and_bench_say_what_is_wrong_with_the_device() {
        let e = usage_error(&["selftest", "--device", "tpu"]);
        assert!(e.contains("unknown device `tpu`"), "{e}");
        let e = usage_error(&["bench", "--runs", "3"]);
        assert!(
            e.contains("--runs wants a number of at least 20, not `3`"),
            "{e}"
        );
        let e = usage_error(&["selftest", "--runs", "30"]);
        assert!(e.contains("`selftest` does not take `--runs`"), "{e}");
        let e = usage_error(&["selftest", "--device"]);
        assert!(e.contains("--device needs a value"), "{e}");
        let e = run_str("bench --device cpu").unwrap_err();
        assert_eq!(e.code, 1, "{e}");
        assert!(e.message.contains("the benchmark measures GPUs"), "{e}");
        let e = run_str("selftest --bundle /nonexistent-tilekit-bundle").unwrap_err();
        assert_eq!(e.code, 1, "{e}");
        assert!(e.message.contains("missing file `bundle.json`"), "{e}");
        if !crate::device::cuda::driver_present() {
            let e = run_str("selftest --device cuda").unwrap_err();
            assert_eq!(e.code, 1, "{e}");
            assert!(e.message.starts_with("no CUDA driver found"), "{e}");
        }
    }

    /// The usage error for `args`, which must fail with exit code 2.
    fn usage_error(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        match run(&args) {
            Err(e) => {
                assert_eq!(e.code, 2, "{args:?}: {e}");
                e.message
            }
            Ok((out, _)) => panic!("{args:?} succeeded:\n{out}"),
        }
    }

    #[test]
    fn comptime_arguments_split_at_top_level_commas() {
        assert_eq!(comptime_args("<bf16, 64,64>"), ["bf16", "64", "64"]);
        assert_eq!(comptime_args("<Foo<A, B>, 16>"), ["Foo<A,B>", "16"]);
        assert!(comptime_args("").is_empty());
    }

    #[test]
    fn a_variant_is_named_by_its_arguments_or_by_const_positions() {
        let (k, v) = select("gemm<bf16,64,64,32,32,32>", &[]).unwrap();
        assert_eq!((k.name, v.args), ("gemm", "<bf16, 64, 64, 32, 32, 32>"));
        let (_, v2) = select("gemm", &[(0, "bf16".into())]).unwrap();
        assert_eq!(v2.args, v.args);
        let (_, v3) = select("gemm", &[(0, "f32".into()), (3, "16".into())]).unwrap();
        assert_eq!(v3.args, "<f32, 64, 64, 16, 16, 64>");
        // A kernel with one variant needs no choice.
        assert!(select("adamw_step", &[]).is_ok());
    }

    // Without `jit`, `emit` and `check` answer with the missing feature before reading their arguments.
    #[cfg(feature = "jit")]
    #[test]
    fn unknown_kernels_variants_and_options_are_usage_errors() {
        let e = usage_error(&["emit", "gemmm", "--target", "sm_80", "--stage", "ptx"]);
        assert!(
            e.contains("unknown kernel `gemmm`") && e.contains("attention_fwd"),
            "{e}"
        );
        // Several variants match: the error lists them.
        let e = usage_error(&["emit", "gemm", "--target", "sm_80", "--stage", "ptx"]);
        assert!(
            e.contains("matches 3 variants") && e.contains("gemm<bf16, 64, 64, 32, 32, 32>"),
            "{e}"
        );
        let e = usage_error(&["check", "gemm", "--const", "0=f32", "--target", "sm_80"]);
        assert!(e.contains("matches 2 variants"), "{e}");
        let e = usage_error(&[
            "emit",
            "gemm<f16, 64, 64, 32, 32, 32>",
            "--target",
            "sm_80",
            "--stage",
            "ptx",
        ]);
        assert!(
            e.contains("no registered variant") && e.contains("gemm<f32, 64, 64, 16, 16, 64>"),
            "{e}"
        );
        let e = usage_error(&[
            "emit", "gemm", "--const", "BM=64", "--target", "sm_80", "--stage", "ptx",
        ]);
        assert!(e.contains("position"), "{e}");
        let e = usage_error(&["emit", "adamw_step", "--target", "sm_80"]);
        assert!(e.contains("--stage"), "{e}");
        let e = usage_error(&["check", "adamw_step"]);
        assert!(e.contains("--target"), "{e}");
        let e = usage_error(&["check", "adamw_step", "--target", "sm_80", "--bogus"]);
        assert!(e.contains("unknown option `--bogus`"), "{e}");
    }

    #[test]
    fn help_explains_how_a_variant_is_chosen_and_unknown_commands_are_usage_errors() {
        let (help, code) = run_str("help").unwrap();
        assert_eq!(code, 0);
        assert!(
            help.contains("--const N=V") && help.contains("tilekit list"),
            "{help}"
        );
        let e = usage_error(&["frobnicate"]);
        assert!(e.contains("unknown command `frobnicate`"), "{e}");
    }

    #[cfg(feature = "jit")]
    #[test]
    fn unknown_targets_and_stages_are_usage_errors() {
        let e = usage_error(&["emit", "adamw_step", "--target", "sm_75", "--stage", "ptx"]);
        assert!(
            e.contains("unknown target `sm_75`") && e.contains("sm_90a"),
            "{e}"
        );
        let e = usage_error(&[
            "emit",
            "adamw_step",
            "--target",
            "sm_80",
            "--stage",
            "cubin",
        ]);
        assert!(
            e.contains("unknown stage `cubin`") && e.contains("llvm-opt") && e.contains("sass"),
            "{e}"
        );
        let e = usage_error(&["check", "adamw_step", "--target", "sm_90"]);
        assert!(e.contains("unknown target `sm_90`"), "{e}");
    }

    #[cfg(feature = "jit")]
    #[test]
    fn stages_of_the_other_vendor_are_usage_errors_listing_the_targets_stages() {
        let e = usage_error(&["emit", "adamw_step", "--target", "gfx942", "--stage", "ptx"]);
        assert!(
            e.contains("stage `ptx` does not apply to gfx942") && e.contains("asm, hsaco"),
            "{e}"
        );
        let e = usage_error(&["emit", "adamw_step", "--target", "sm_80", "--stage", "asm"]);
        assert!(
            e.contains("does not apply to sm_80") && e.contains("sass"),
            "{e}"
        );
        let e = usage_error(&[
            "emit",
            "adamw_step",
            "--target",
            "gfx942",
            "--stage",
            "hsaco",
        ]);
        assert!(e.contains("--out FILE"), "{e}");
        let e = usage_error(&["check", "adamw_step", "--target", "gfx1100"]);
        assert!(e.contains("gfx90a, gfx942, gfx950"), "{e}");
    }

    #[cfg(feature = "jit")]
    #[test]
    fn emit_prints_the_amd_stages_of_the_gemm_and_writes_its_code_object() {
        let gemm = "gemm<bf16,64,64,32,32,32>";
        for target in ["gfx90a", "gfx942", "gfx950"] {
            let emit = |stage: &str| {
                let args = ["emit", gemm, "--target", target, "--stage", stage];
                let (out, code) =
                    run(&args.map(String::from)).unwrap_or_else(|e| panic!("{stage}: {e}"));
                assert_eq!(code, 0);
                out
            };
            assert!(emit("mlir").contains("rocdl.kernel"), "{target}");
            assert!(
                emit("llvm").contains("amdgpu_kernel void @gemm("),
                "{target}"
            );
            let asm = emit("asm");
            assert!(
                asm.contains(&format!("amdgcn-amd-amdhsa--{target}")) && asm.contains("v_mfma"),
                "{target}"
            );
            let path = std::env::temp_dir()
                .join(format!("tilekit-cli-{}-{target}.hsaco", std::process::id()));
            let p = path.to_string_lossy().into_owned();
            let args = [
                "emit", gemm, "--target", target, "--stage", "hsaco", "--out", &p,
            ];
            let (out, code) = run(&args.map(String::from)).unwrap();
            assert_eq!(code, 0);
            assert!(out.contains("wrote the hsaco stage"), "{out}");
            let bytes = std::fs::read(&path).unwrap();
            let _ = std::fs::remove_file(&path);
            assert_eq!(&bytes[..4], b"\x7fELF", "{target}");
        }
    }

    /// Every registered kernel variant compiles for every AMD chip, `ld.lld` links its code
    /// object, and it uses no scratch (one thread per chip).
    #[cfg(feature = "jit")]
    #[test]
    fn every_registered_variant_compiles_and_links_for_every_amd_chip() {
        use tilekit_codegen::{compile, Target};
        let chips = [Target::Gfx90a, Target::Gfx942, Target::Gfx950];
        let failures: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = chips
                .iter()
                .map(|&t| {
                    scope.spawn(move || {
                        let mut failures = Vec::new();
                        for k in crate::registry::kernels() {
                            for v in k.variants {
                                let what = format!("{}{} on {t}", k.name, v.args);
                                match compile((v.module)(), k.name, t) {
                                    Err(e) => failures.push(format!("{what}: {e}")),
                                    Ok(c) => match c.amd_resources() {
                                        None => failures.push(format!("{what}: no metadata")),
                                        Some(r) if r.scratch_bytes > 0 => {
                                            failures.push(format!("{what}: scratch {r:?}"))
                                        }
                                        Some(_) => {}
                                    },
                                }
                            }
                        }
                        failures
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("compile thread"))
                .collect()
        });
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(crate::registry::kernels().len() >= 6);
    }

    #[cfg(feature = "jit")]
    #[test]
    fn check_prints_amd_registers_lds_scratch_and_mfma_count() {
        for target in ["gfx90a", "gfx942", "gfx950"] {
            let (out, code) =
                run_str(&format!("check gemm --const 0=bf16 --target {target}")).unwrap();
            assert_eq!(code, 0);
            for want in [
                "VGPRs",
                "AGPRs",
                "SGPRs",
                "LDS            8192 bytes",
                "scratch        0 bytes",
                "MFMA",
                "AMDGPU instruction mix",
                "ds_read_b64",
            ] {
                assert!(out.contains(want), "{target}: no `{want}` in\n{out}");
            }
            let mfma: usize = out
                .lines()
                .find_map(|l| l.strip_prefix("MFMA"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(mfma > 0, "{target}: {out}");
        }
    }

    #[cfg(feature = "jit")]
    #[test]
    fn emit_prints_every_stage_of_the_gemm_for_both_targets() {
        let gemm = "gemm<bf16,64,64,32,32,32>";
        for target in ["sm_80", "sm_90a"] {
            let emit = |stage: &str| {
                let args = ["emit", gemm, "--target", target, "--stage", stage];
                let (out, code) =
                    run(&args.map(String::from)).unwrap_or_else(|e| panic!("{stage}: {e}"));
                assert_eq!(code, 0);
                out
            };
            assert!(emit("tile").contains("kernel @gemm("));
            assert!(emit("mlir").contains("llvm.func @gemm("));
            assert!(emit("mlir-lowered").contains("llvm.func @gemm("));
            assert!(emit("llvm").contains("define ptx_kernel void @gemm("));
            assert!(emit("llvm-opt").contains("@gemm("));
            let ptx = emit("ptx");
            assert!(
                ptx.contains(&format!(".target {target}")) && ptx.contains(".entry gemm("),
                "{target}"
            );
            assert!(ptx.contains("mma.sync.aligned.m16n8k16"), "{target}");
            assert!(emit("sass").contains("HMMA"), "{target}");
        }
    }

    #[cfg(feature = "jit")]
    #[test]
    fn check_prints_resources_and_the_instruction_mix() {
        for target in ["sm_80", "sm_90a"] {
            let (out, code) =
                run_str(&format!("check gemm --const 0=bf16 --target {target}")).unwrap();
            assert_eq!(code, 0);
            for want in [
                "registers",
                "spill bytes    0 stores, 0 loads",
                "shared memory",
                "HMMA",
                "LDSM",
                "LDGSTS",
            ] {
                assert!(out.contains(want), "{target}: no `{want}` in\n{out}");
            }
        }
    }

    #[cfg(not(feature = "jit"))]
    #[test]
    fn emit_and_check_need_the_jit_feature() {
        let e = usage_error(&["emit", "gemm", "--target", "sm_80", "--stage", "ptx"]);
        assert!(e.contains("without the `jit` feature"), "{e}");
        let e = usage_error(&["check", "gemm", "--target", "sm_80"]);
        assert!(e.contains("without the `jit` feature"), "{e}");
    }
}
