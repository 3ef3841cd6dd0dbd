//! The `tilekit` command: `list`, `selftest`, `bench`, `emit`, `check`, `emulate` and `bundle`
//! over the registered kernels; `tilekit help [COMMAND]` (or `--help`) explains each.
//!
//! # Your own kernels in the `tilekit` command
//! Kernels register themselves in the binary that links them, so this crate's `tilekit` binary
//! sees the kernel library only. For your own kernels, add one line as a binary of your crate,
//! naming the crate (the library target, with `-` written `_`):
//!
//! ```ignore
//! // my_crate/src/bin/tilekit.rs
//! tilekit::cli_main!(my_crate);
//! ```
//!
//! `cargo run --bin tilekit -- list` then shows your kernels beside the library's, and every
//! other command (`emit`, `check`, `selftest`, `emulate`, `bundle`) works on them too. See
//! [`cli_main!`](crate::cli_main) for what it expands to.
//!
//! `emit`, `check`, `emulate` and `bundle` compile kernels and need the `jit` feature (on by default); a build
//! without it answers them with an error that says so.
//!
//! Exit codes: 0 success; 1 a kernel failed (selftest) or could not be compiled, assembled or
//! written, or a device could not be opened; 2 a usage error (unknown command, option, kernel,
//! variant, target, stage or device).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::registry::{kernels, KernelInfo, Variant};
use crate::Device;

/// Said after the commands in `tilekit --help`: the targets, how a variant is named, and the
/// exit codes.
const AFTER_HELP: &str = "\
Targets: sm_80, sm_90a (NVIDIA); gfx90a, gfx942, gfx950 (AMD CDNA, wave64).

Choosing a variant: a generic kernel is registered with several comptime instantiations
(`tilekit list` shows them). Name one by writing its comptime arguments after the kernel's
name, as `list` prints them (spaces do not matter; quote it for the shell):
    tilekit emit 'gemm<bf16, 64, 64, 32, 32, 32>' --target sm_80 --stage ptx
or narrow by position with --const N=V: the N-th comptime argument (counting from 0) is V
    tilekit check gemm --const 0=bf16 --target sm_90a
A kernel with a single variant needs neither. If the choice leaves no variant, or more than
one, the error lists the registered variants.

Exit codes: 0 success; 1 a kernel failed (selftest) or could not be compiled, assembled or
written, or a device could not be opened; 2 a usage error (unknown command, option, kernel,
variant, target, stage or device).";

/// The command line of `tilekit`.
#[derive(Debug, Parser)]
#[command(
    name = "tilekit",
    version,
    about = "tilekit: tiled GPU kernels in Rust",
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One line per registered kernel variant: name<comptime arguments>, parameters, op count,
    /// source
    List,
    /// Runs every kernel against its reference; ends with `N passed, M failed`
    #[command(
        long_about = "Runs every registered kernel against its reference (on a GPU: compiled on \
                      first launch or taken from the bundle, larger shapes too); ends with \
                      `N passed, M failed`. Exits with 1 when a kernel fails."
    )]
    Selftest(SelftestArgs),
    /// Times the kernel library on a GPU (the first one by default)
    #[command(
        long_about = "Times the kernel library on a GPU (the first one by default): the median of \
                      --runs event-timed runs, TFLOP/s or GB/s, % of the copy bandwidth and of \
                      cuBLAS bf16 GEMM measured in the same run, and the ratio to cuBLAS for GEMMs."
    )]
    Bench(BenchArgs),
    /// Prints one stage of a kernel compiled for a target, or writes it to a file
    #[command(
        long_about = "Prints one stage of the kernel compiled for the target, or writes it to \
                      --out FILE. The binary `hsaco` stage is only written (it needs --out). \
                      NVIDIA: fails when ptxas gives a performance advisory (C75xx: serialized \
                      wgmma, ignored setmaxnreg) unless TILEKIT_ALLOW_PTXAS_ADVISORIES=1."
    )]
    Emit(EmitArgs),
    /// Compiles a kernel and prints its registers, spills, shared memory and instruction mix
    #[command(
        long_about = "Compiles a kernel and prints its resources. NVIDIA: assembles the PTX with \
                      ptxas and prints registers, spill bytes, shared memory and the SASS \
                      instruction mix (needs ptxas and nvdisasm). AMD: prints VGPR/AGPR/SGPR \
                      counts, LDS bytes, scratch bytes and spills read from the linked code \
                      object's metadata note, and the MFMA count and instruction mix of its \
                      assembly (needs ld.lld). Exits with 1 after the report when ptxas gave a \
                      performance advisory (C75xx: serialized wgmma, ignored setmaxnreg). A \
                      variant registered for some targets only is refused on the others."
    )]
    Check(CheckArgs),
    /// Runs a kernel's self-test on the PTX emulator; prints the result, the sanitizer's
    /// findings and the instruction profile
    #[command(
        long_about = "Runs the kernel's registered self-test on the PTX emulator (emu:TARGET, \
                      sanitizer on) and prints whether it passed, the sanitizer's findings and \
                      the instruction profile (executed warp-instructions by class) of the \
                      self-test's last launch. The self-test covers every variant of the kernel, \
                      so the last launch may be of another variant than the one named. Exits \
                      with 1 when the self-test fails or the sanitizer finds something."
    )]
    Emulate(EmulateArgs),
    /// Compiles every kernel variant ahead of time into a bundle directory
    #[command(
        long_about = "Compiles every registered kernel variant ahead of time into --out DIR: one \
                      PTX file (NVIDIA) or code object (AMD, .hsaco) per variant, the metadata and \
                      the packed bundle (for include_bytes!). A tilekit built without `jit` loads \
                      it (tilekit::Bundle). NVIDIA: a variant for which ptxas gives a \
                      performance advisory (C75xx) fails the bundle, naming the variant and \
                      ptxas's text, unless TILEKIT_ALLOW_PTXAS_ADVISORIES=1."
    )]
    Bundle(BundleArgs),
}

#[derive(Debug, Args)]
struct SelftestArgs {
    /// The device: cpu (the interpreter), cuda[:N] or hip[:N]
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    device: String,
    /// How the interpreter evaluates exp2, log2, rsqrt, tanh and the functions built on them:
    /// exact (correctly rounded) or approx (the GPUs' documented worst case, see
    /// tilekit::ir::numeric); with --device cpu only
    #[arg(long, value_name = "MODE", default_value = "exact", value_parser = ["exact", "approx"])]
    numerics: String,
    /// A bundle directory (written by `tilekit bundle`) whose compiled kernels the device runs
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// The GPU: cuda[:N] or hip[:N] [default: the first GPU found]
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// A bundle directory (written by `tilekit bundle`) whose compiled kernels the device runs
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Timed runs per benchmark row, at least 20
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = parse_runs)]
    runs: usize,
}

/// The kernel, variant and target of `emit` and `check`.
#[derive(Debug, Args)]
struct KernelArgs {
    /// The kernel: its name, or name<comptime arguments> as `tilekit list` prints them
    #[arg(value_name = "KERNEL")]
    kernel: String,
    /// The target to compile for
    #[arg(long, value_name = "TARGET", value_parser = jit::target_parser())]
    target: String,
    /// Narrows the variant: the N-th comptime argument (counting from 0) is V; repeatable
    #[arg(long = "const", value_name = "N=V", value_parser = parse_const)]
    consts: Vec<(usize, String)>,
    /// What the compile may assume of the launch's views: `general` (nothing, the default),
    /// `aligned` (every view 16-byte aligned, the variant aligned launches take) or
    /// `aligned16(a, b)` naming the views
    #[arg(long, value_name = "FACTS", default_value = "general")]
    assume: String,
}

#[derive(Debug, Args)]
struct EmitArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// The stage to print (which apply depends on the target's vendor)
    #[arg(long, value_name = "STAGE", value_parser = jit::stage_parser())]
    stage: String,
    /// Writes the stage to FILE instead of printing it
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    kernel: KernelArgs,
}

/// The kernel, variant and emulated target of `emulate`.
#[derive(Debug, Args)]
struct EmulateArgs {
    /// The kernel: its name, or name<comptime arguments> as `tilekit list` prints them
    #[arg(value_name = "KERNEL")]
    kernel: String,
    /// The target whose PTX the emulator runs
    #[arg(long, value_name = "TARGET", value_parser = clap::builder::PossibleValuesParser::new(crate::device::emu::TARGETS))]
    target: String,
    /// Narrows the variant: the N-th comptime argument (counting from 0) is V; repeatable
    #[arg(long = "const", value_name = "N=V", value_parser = parse_const)]
    consts: Vec<(usize, String)>,
}

#[derive(Debug, Args)]
struct BundleArgs {
    /// The target to compile for
    #[arg(long, value_name = "TARGET", value_parser = jit::target_parser())]
    target: String,
    /// The directory to write the bundle to (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// `--runs N`: at least 20 runs, so the median is stable.
fn parse_runs(s: &str) -> Result<usize, String> {
    s.parse()
        .ok()
        .filter(|&n| n >= 20)
        .ok_or_else(|| format!("--runs wants a number of at least 20, not `{s}`"))
}

/// `--const N=V`: the position of a comptime argument and its value.
fn parse_const(kv: &str) -> Result<(usize, String), String> {
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| format!("--const wants N=V, not `{kv}`"))?;
    let n = k.trim().parse::<usize>().map_err(|_| {
        format!(
            "N is the position of a comptime argument (0, 1, …) as `tilekit list` shows them, \
             not `{}`; the registry does not record their names",
            k.trim()
        )
    })?;
    Ok((n, v.trim().to_string()))
}

/// Why a command failed: the message and the process exit code (2 for usage errors, whose
/// message is clap's: the error, the command's usage line and where help is; 1 for a kernel
/// that failed or could not be compiled, or a device that could not be used).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    /// A usage error that [`run`] renders with the usage line of the command it is about.
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

impl From<clap::Error> for CliError {
    fn from(e: clap::Error) -> CliError {
        CliError {
            message: e.render().to_string().trim_end().to_string(),
            code: e.exit_code(),
        }
    }
}

/// The `tilekit` command over your own kernels, in one line: `tilekit::cli_main!(my_crate);`
/// as the whole of `src/bin/tilekit.rs` (or any binary) of a crate whose library defines
/// `#[tilekit::kernel]`s.
///
/// It links each named crate (`extern crate my_crate as _;`), so that the crate's kernel
/// registrations are part of the binary — a binary that does not mention its library does not
/// link it, and `tilekit list` would then silently show the kernel library only — and defines
/// `main` as [`cli::main`](crate::cli::main) with its exit code. Several crates may be named
/// (`cli_main!(kernels_a, kernels_b)`); with none, the binary lists the kernels it defines
/// itself and the library's.
///
/// ```ignore
/// // my_crate/src/bin/tilekit.rs
/// tilekit::cli_main!(my_crate);
/// ```
/// ```sh
/// cargo run --bin tilekit -- list
/// cargo run --bin tilekit -- emit 'my_kernel<f32, 64>' --target sm_90a --stage ptx
/// cargo run --bin tilekit -- selftest --device cpu
/// ```
#[macro_export]
macro_rules! cli_main {
    ($($krate:ident),* $(,)?) => {
        $(
            // Linking the crate is what keeps its `#[kernel]` registrations in this binary.
            extern crate $krate as _;
        )*

        fn main() {
            ::std::process::exit($crate::cli::main())
        }
    };
}

/// Runs the command on the process arguments; returns the exit code. Output goes to stdout,
/// errors to stderr; a reader that closes the pipe early (`tilekit list | head -1`) ends the
/// command quietly with its own exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (text, code, to_stdout) = match run(&args) {
        Ok((out, code)) => (out, code, true),
        Err(e) if e.code == 2 => (format!("{e}\n"), e.code, false),
        Err(e) => (format!("error: {e}\n"), e.code, false),
    };
    // Writing (rather than `print!`, which panics when the pipe is closed): a closed pipe is
    // the reader saying it has seen enough, not an error of the command.
    let written = if to_stdout {
        std::io::stdout().lock().write_all(text.as_bytes())
    } else {
        std::io::stderr().lock().write_all(text.as_bytes())
    };
    match written {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: cannot write the output: {e}");
            1
        }
    }
}

/// The opened device (with the bundle attached). A name that is not a device is a usage
/// error; a device that cannot be opened (no driver) or a bundle that cannot be loaded is a
/// failure.
fn open_device(name: Option<&str>, bundle: Option<&PathBuf>) -> Result<Device, CliError> {
    let device = match name {
        None => Device::best(),
        Some(n) => Device::from_name(n).map_err(|e| match e {
            crate::Error::UnknownDevice { .. } => CliError::usage(e.to_string()),
            _ => CliError::failure(e.to_string()),
        })?,
    };
    if let Some(dir) = bundle {
        let b = crate::Bundle::load_dir(dir).map_err(|e| CliError::failure(e.to_string()))?;
        device
            .attach_bundle(b)
            .map_err(|e| CliError::failure(e.to_string()))?;
    }
    Ok(device)
}

/// Runs the command on `args` (without the program name): the text to print and the exit code,
/// or why it failed. `--help`, `-h`, `help [COMMAND]` and `--version` answer with their text
/// and exit code 0.
pub fn run(args: &[String]) -> Result<(String, i32), CliError> {
    let argv = std::iter::once("tilekit").chain(args.iter().map(String::as_str));
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if e.exit_code() == 0 => return Ok((e.render().to_string(), 0)),
        Err(e) => return Err(e.into()),
    };
    let name = subcommand_name(&cli.command);
    dispatch(cli.command).map_err(|e| {
        if e.code != 2 {
            return e;
        }
        // Usage errors found after parsing (an unknown kernel, a stage of the other vendor)
        // read like clap's own: the message, then the command's usage line.
        let mut cmd = Cli::command();
        cmd.build();
        let error = match cmd.find_subcommand_mut(name) {
            Some(sub) => sub.error(ErrorKind::ValueValidation, &e.message),
            None => Cli::command().error(ErrorKind::ValueValidation, &e.message),
        };
        error.into()
    })
}

fn subcommand_name(c: &Command) -> &'static str {
    match c {
        Command::List => "list",
        Command::Selftest(_) => "selftest",
        Command::Bench(_) => "bench",
        Command::Emit(_) => "emit",
        Command::Check(_) => "check",
        Command::Emulate(_) => "emulate",
        Command::Bundle(_) => "bundle",
    }
}

fn dispatch(command: Command) -> Result<(String, i32), CliError> {
    match command {
        Command::List => Ok((list(), 0)),
        Command::Selftest(a) => {
            if a.numerics == "approx" {
                // The GPUs' numerics, modelled on the interpreter (a GPU has its own).
                if a.device != "cpu" || a.bundle.is_some() {
                    return Err(CliError::usage(format!(
                        "--numerics approx models the GPUs on the interpreter: it needs --device \
                         cpu (and no --bundle), not `{}`",
                        a.device
                    )));
                }
                let approx = crate::ir::interp::Numerics::Approx;
                let device =
                    Device::cpu_with(crate::device::CpuOptions::default().numerics(approx));
                return Ok(selftest(&device));
            }
            let device = open_device(Some(&a.device), a.bundle.as_ref())?;
            Ok(selftest(&device))
        }
        Command::Bench(a) => {
            let device = open_device(a.device.as_deref(), a.bundle.as_ref())?;
            crate::bench::run(&device, a.runs)
                .map(|table| (table, 0))
                .map_err(|e| CliError::failure(e.to_string()))
        }
        Command::Emit(a) => {
            if !cfg!(feature = "jit") {
                return Err(unavailable("emit"));
            }
            let (kernel, variant) = select(&a.kernel.kernel, &a.kernel.consts)?;
            jit::emit(
                kernel,
                variant,
                &a.kernel.target,
                &a.kernel.assume,
                &a.stage,
                a.out.as_deref(),
            )
            .map(|s| (s, 0))
        }
        Command::Check(a) => {
            if !cfg!(feature = "jit") {
                return Err(unavailable("check"));
            }
            let (kernel, variant) = select(&a.kernel.kernel, &a.kernel.consts)?;
            jit::check(kernel, variant, &a.kernel.target, &a.kernel.assume)
        }
        Command::Emulate(a) => {
            if !cfg!(feature = "jit") {
                return Err(unavailable("emulate"));
            }
            let (kernel, variant) = select(&a.kernel, &a.consts)?;
            emulate(kernel, variant, &a.target)
        }
        Command::Bundle(a) => {
            if !cfg!(feature = "jit") {
                return Err(unavailable("bundle"));
            }
            jit::bundle(&a.target, &a.out).map(|s| (s, 0))
        }
    }
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
            let only = if v.targets.is_empty() {
                String::new()
            } else {
                format!("  {} only", v.targets_text())
            };
            let _ = writeln!(
                out,
                "{}{}  ({})  {} ops  {}:{}{only}",
                k.name, v.args, v.params, ops, k.file, k.line
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

/// Runs every registered self-test; the last line is `N passed, M failed`. A kernel without a
/// self-test, or none of whose variants is registered for `device`'s target, is a `skip` line
/// and counts neither way.
pub fn selftest(device: &Device) -> (String, i32) {
    let (mut passed, mut failed) = (0, 0);
    let mut out = String::new();
    for k in kernels() {
        let Some(test) = k.selftest else {
            let _ = writeln!(out, "skip {}: no self-test registered", k.name);
            continue;
        };
        if let Some(why) = runs_no_variant(k, device) {
            let _ = writeln!(out, "skip {}: {why}", k.name);
            continue;
        }
        match run_selftest(test, device) {
            Ok(what) => {
                passed += 1;
                let _ = writeln!(out, "ok   {}: {what}", k.name);
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(out, "FAIL {}: {e}", k.name);
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    (out, i32::from(failed > 0))
}

/// Why `device` runs none of `k`'s variants (each registered for other targets only), or `None`
/// when it runs one.
fn runs_no_variant(k: &KernelInfo, device: &Device) -> Option<String> {
    if k.variants.iter().any(|v| v.runs_on(device)) {
        return None;
    }
    let mut targets: Vec<&str> = k.variants.iter().flat_map(|v| v.targets).copied().collect();
    targets.sort_unstable();
    targets.dedup();
    Some(format!(
        "registered for {} only, which {} does not run",
        targets.join(", "),
        device.name()
    ))
}

/// One self-test on `device`; a panic counts as a failure, so a failing kernel does not stop
/// the command.
fn run_selftest(test: crate::registry::SelfTest, device: &Device) -> Result<String, String> {
    std::panic::catch_unwind(|| test(device)).unwrap_or_else(|_| Err("panicked".to_string()))
}

/// `emulate`: the kernel's self-test on `emu:target`, then the sanitizer's findings and the
/// instruction profile of its last launch. Exit code 1 when the self-test fails or the
/// sanitizer reports anything.
fn emulate(k: &KernelInfo, v: &Variant, target: &str) -> Result<(String, i32), CliError> {
    let device = Device::emulator(target).map_err(|e| CliError::usage(e.to_string()))?;
    if !v.is_for(target) {
        return Err(CliError::usage(format!(
            "{}{} is registered for {} only, not {target} (`for [..]` in the kernel's variants)",
            k.name,
            v.args,
            v.targets_text()
        )));
    }
    let Some(test) = k.selftest else {
        return Err(CliError::failure(format!(
            "`{}` has no registered self-test, so there is nothing to run on the emulator",
            k.name
        )));
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}{} on {}", k.name, v.args, device.describe());
    let (result, shared) = tilekit_emu::banks::collect(|| run_selftest(test, &device));
    let mut failed = result.is_err();
    match result {
        Ok(what) => {
            let _ = writeln!(out, "self-test: ok ({what})");
        }
        Err(e) => {
            let _ = writeln!(out, "self-test: FAIL ({e})");
        }
    }
    // A launch the sanitizer stops fails with the finding in its message (above) and leaves no
    // report; a report's findings are those of a launch that ran to its end.
    let report = device.emulator_report();
    let findings = report.as_ref().map_or(&[][..], |r| r.findings.as_slice());
    if findings.is_empty() {
        let _ = writeln!(out, "sanitizer: no findings in the last launch");
    } else {
        failed = true;
        let _ = writeln!(out, "sanitizer: {} findings", findings.len());
        for f in findings {
            let _ = writeln!(out, "  {f}");
        }
    }
    // Bank conflicts over every launch of the self-test (tilekit_emu::banks: wavefronts the 32
    // banks needed against the conflict-free ideal); they are reported, not a failure.
    let instructions: usize = shared.iter().map(|c| c.accesses.len()).sum();
    let conflicted: Vec<_> = shared
        .iter()
        .flat_map(|c| c.conflicts().map(move |a| (c, a)))
        .collect();
    let _ = writeln!(
        out,
        "shared-memory bank conflicts: {} of {instructions} shared-memory instructions in {} \
         compiled code{} of the self-test",
        conflicted.len(),
        shared.len(),
        if shared.len() == 1 { "" } else { "s" }
    );
    for (c, a) in conflicted {
        let _ = writeln!(out, "  {} (code {:016x}): {a}", c.kernel, c.module);
    }
    match &report {
        Some(r) => {
            let _ = writeln!(
                out,
                "instruction profile of the last launch ({} block{}; warp-instructions by class; \
                 the self-test launches every variant of `{}`, the last may be another one):",
                r.blocks,
                if r.blocks == 1 { "" } else { "s" },
                k.name
            );
            out.push_str(&r.profile_table());
        }
        None => {
            let _ = writeln!(
                out,
                "no launch completed on the emulator, so there is no profile"
            );
        }
    }
    Ok((out, i32::from(failed)))
}

/// `emit` and `check`, which compile through tilekit-codegen.
#[cfg(feature = "jit")]
mod jit {
    use std::fmt::Write as _;

    use tilekit_codegen::{
        amd, compile_with_advisories, hot_loop, ptxas, sass, Compiled, Facts, Stage, Target,
    };

    use std::path::Path;

    use clap::builder::{PossibleValue, PossibleValuesParser, ValueParser};

    use super::CliError;
    use crate::registry::{KernelInfo, Variant};

    /// `--target`: one of the compiler's targets.
    pub(super) fn target_parser() -> ValueParser {
        PossibleValuesParser::new(Target::ALL.map(Target::name)).into()
    }

    /// `--stage`: a stage of the compiled kernel, or `sass`; each with what it is, for `--help`.
    pub(super) fn stage_parser() -> ValueParser {
        let help = |s: Stage| match s {
            Stage::Tile => "Tile IR",
            Stage::Mlir => "MLIR as generated",
            Stage::MlirLowered => "MLIR lowered to the LLVM dialect",
            Stage::Llvm => "LLVM IR as translated",
            Stage::LlvmOpt => "LLVM IR after O3",
            Stage::Ptx => "PTX (NVIDIA)",
            Stage::Asm => "AMDGPU assembly (AMD)",
            Stage::Hsaco => "the code object linked by ld.lld (AMD; binary, needs --out FILE)",
        };
        let stages = Stage::ALL
            .into_iter()
            .map(|s| PossibleValue::new(s.name()).help(help(s)))
            .chain([PossibleValue::new("sass").help("SASS, by ptxas and nvdisasm (NVIDIA)")]);
        PossibleValuesParser::new(stages).into()
    }

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

    /// `target` parsed, for a variant registered for it (`<..> for [sm_90a]` on the kernel):
    /// otherwise an error naming the variant, the target asked and the targets it has.
    fn target_of(k: &KernelInfo, v: &Variant, target: &str) -> Result<Target, CliError> {
        let t = parse_target(target)?;
        if !v.is_for(t.name()) {
            return Err(CliError::usage(format!(
                "{}{} is registered for {} only, not {t} (`for [..]` in the kernel's variants)",
                k.name,
                v.args,
                v.targets_text()
            )));
        }
        Ok(t)
    }

    /// The variant compiled for `target` and `facts`; code for which ptxas gave a performance
    /// advisory is an error under `advisories` [`ptxas::AdvisoryPolicy::Refuse`].
    fn compiled_with(
        k: &KernelInfo,
        v: &Variant,
        target: Target,
        facts: &Facts,
        advisories: ptxas::AdvisoryPolicy,
    ) -> Result<Compiled, CliError> {
        compile_with_advisories((v.module)(), k.name, target, facts, advisories).map_err(|e| {
            CliError::failure(format!("compiling {}{} for {target}: {e}", k.name, v.args))
        })
    }

    /// The facts of `--assume`: `general`, `aligned` (every global view of the kernel) or
    /// the facts' own text (`aligned16(a, b)`).
    fn parse_assume(k: &KernelInfo, v: &Variant, assume: &str) -> Result<Facts, CliError> {
        if assume.trim() == "aligned" {
            let module = (v.module)();
            let func = module.kernel(k.name).ok_or_else(|| {
                CliError::failure(format!(
                    "the module of {}{} has no such kernel",
                    k.name, v.args
                ))
            })?;
            return Ok(Facts::all_aligned16(func));
        }
        assume.parse::<Facts>().map_err(|e| {
            CliError::usage(format!(
                "--assume: {e} (or `aligned` for every view of the kernel)"
            ))
        })
    }

    /// One stage of the kernel: its text, or with `out` a line saying where it was written.
    /// The code object (`hsaco`) is binary and is only written to a file.
    pub(super) fn emit(
        k: &KernelInfo,
        v: &Variant,
        target: &str,
        assume: &str,
        stage: &str,
        out: Option<&Path>,
    ) -> Result<String, CliError> {
        let target = target_of(k, v, target)?;
        let facts = parse_assume(k, v, assume)?;
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
        let c = compiled_with(k, v, target, &facts, ptxas::AdvisoryPolicy::from_env())?;
        if !facts.is_general() && out.is_none() {
            // Not in the stage's text, which stays what the compiler wrote.
            eprintln!("{}{} for {target}, assuming {facts}", k.name, v.args);
        }
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
                    CliError::failure(format!(
                        "cannot write the {stage} stage to {}: {e}",
                        path.display()
                    ))
                })?;
                Ok(format!(
                    "wrote the {stage} stage of {}{} for {target}, assuming {facts} ({} bytes) to {}\n",
                    k.name,
                    v.args,
                    bytes.len(),
                    path.display()
                ))
            }
        }
    }

    pub(super) fn bundle(target: &str, out: &Path) -> Result<String, CliError> {
        let target = parse_target(target)?;
        if !crate::bundle::TARGETS.contains(&target.name()) {
            return Err(CliError::usage(format!(
                "bundles hold code for {}, not {target}",
                crate::bundle::TARGETS.join(", ")
            )));
        }
        // A progress bar on stderr when it is a terminal and the build takes a while.
        let b =
            crate::bundle::compile_registry_with(target, &mut crate::bundle::terminal_progress())
                .map_err(|e| CliError::failure(e.to_string()))?;
        b.write_dir(out)
            .map_err(|e| CliError::failure(e.to_string()))?;
        let mut text = String::new();
        for k in &b.kernels {
            let _ = writeln!(text, "{}{}  {}", k.name, k.variant, k.code_file);
        }
        let _ = writeln!(
            text,
            "wrote {} kernel variants for {target} to {}",
            b.kernels.len(),
            out.display()
        );
        Ok(text)
    }

    /// The report, and exit code 1 when ptxas gave a performance advisory (the report's
    /// `ptxas advisory` lines).
    pub(super) fn check(
        k: &KernelInfo,
        v: &Variant,
        target: &str,
        assume: &str,
    ) -> Result<(String, i32), CliError> {
        let target = target_of(k, v, target)?;
        let facts = parse_assume(k, v, assume)?;
        // The advisories are part of the report (and fail the command after it).
        let c = compiled_with(k, v, target, &facts, ptxas::AdvisoryPolicy::Allow)?;
        if !target.is_nvidia() {
            return Ok((check_amd(k, v, &c), 0));
        }
        let fail = |e: tilekit_codegen::CodegenError| CliError::failure(e.to_string());
        let asm = ptxas::assemble(c.ptx(), c.target).map_err(fail)?;
        let sass_text = sass::disassemble(&asm.cubin).map_err(fail)?;
        let mix = sass::instruction_mix(&sass_text);
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
        let _ = writeln!(out, "assumes        {}", c.facts);
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
        // ptxas's performance advisories (serialized wgmma, ignored setmaxnreg): the code then
        // runs far slower than the figures below say, so the command fails (after the report).
        let advisories = ptxas::performance_advisories(&asm.log);
        for a in &advisories {
            let _ = writeln!(out, "ptxas advisory {a}  <- performance loss");
        }
        let _ = writeln!(
            out,
            "{}",
            hot_loop_line(hot_loop::sass_hot_loop(&sass_text), "warp")
        );
        let total: usize = mix.values().sum();
        let _ = writeln!(out, "SASS instruction mix ({total} instructions):");
        let mut ops: Vec<(&String, &usize)> = mix.iter().collect();
        ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in ops {
            let _ = writeln!(out, "  {op:<10} {n:>6}");
        }
        if !advisories.is_empty() {
            let _ = writeln!(
                out,
                "FAILED: ptxas gave {} performance advisor{} for {}{} on {target} (see `ptxas advisory` above)",
                advisories.len(),
                if advisories.len() == 1 { "y" } else { "ies" },
                k.name,
                v.args
            );
        }
        Ok((out, i32::from(!advisories.is_empty())))
    }

    /// `hot loop     137 instrs (16 HMMA, 8 LDSM) per iteration at .L_x_6, figure 1.85 …` (the
    /// figure of DESIGN.md's performance method, read from the machine code).
    fn hot_loop_line(
        h: Result<Option<hot_loop::HotLoop>, hot_loop::HotLoopError>,
        per: &str,
    ) -> String {
        match h {
            Ok(Some(h)) if h.figure().is_some() => format!("hot loop       {h} per {per}"),
            Ok(Some(h)) => format!("hot loop       {h}"),
            Ok(None) => "hot loop       none (no loop in the code)".to_string(),
            Err(e) => format!("hot loop       not read: {e}"),
        }
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
        let _ = writeln!(out, "assumes        {}", c.facts);
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
        let _ = writeln!(
            out,
            "{}",
            hot_loop_line(hot_loop::amdgpu_hot_loop(asm), "wave")
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
    use std::path::Path;

    use clap::builder::ValueParser;

    use super::{unavailable, CliError};
    use crate::registry::{KernelInfo, Variant};

    /// Any target name: without a compiler there is no list to check it against, and the
    /// command answers that it needs the `jit` feature.
    pub(super) fn target_parser() -> ValueParser {
        ValueParser::string()
    }

    /// Any stage name, as for [`target_parser`].
    pub(super) fn stage_parser() -> ValueParser {
        ValueParser::string()
    }

    pub(super) fn emit(
        _: &KernelInfo,
        _: &Variant,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&Path>,
    ) -> Result<String, CliError> {
        Err(unavailable("emit"))
    }

    pub(super) fn check(
        _: &KernelInfo,
        _: &Variant,
        _: &str,
        _: &str,
    ) -> Result<(String, i32), CliError> {
        Err(unavailable("check"))
    }

    pub(super) fn bundle(_: &str, _: &Path) -> Result<String, CliError> {
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
        assert!(
            e.contains("unknown device `tpu`") && e.contains("Usage: tilekit selftest"),
            "{e}"
        );
        let e = usage_error(&["bench", "--runs", "3"]);
        assert!(
            e.contains("invalid value '3' for '--runs <N>'") && e.contains("at least 20"),
            "{e}"
        );
        let e = usage_error(&["selftest", "--runs", "30"]);
        assert!(e.contains("unexpected argument '--runs'"), "{e}");
        let e = usage_error(&["selftest", "--device"]);
        assert!(
            e.contains("a value is required for '--device <DEVICE>'"),
            "{e}"
        );
        let e = run_str("bench --device cpu").unwrap_err();
        assert_eq!(e.code, 1, "{e}");
        assert!(e.message.contains("the benchmark measures GPUs"), "{e}");
        let e = run_str("selftest --bundle /nonexistent-tilekit-bundle").unwrap_err();
        assert_eq!(e.code, 1, "{e}");
        assert!(
            e.message.contains("nonexistent-tilekit-bundle") && e.message.contains("missing file"),
            "{e}"
        );
        if !crate::device::cuda::driver_present() {
            let e = run_str("selftest --device cuda").unwrap_err();
            assert_eq!(e.code, 1, "{e}");
            assert!(e.message.starts_with("no CUDA driver found"), "{e}");
        }
    }

    /// A kernel registered for sm_90a only is a skip, not a pass, on a device that runs sm_80
    /// code; the interpreter and the sm_90a emulator run it.
    #[test]
    fn selftest_skips_kernels_registered_for_other_targets() {
        let k = kernels()
            .into_iter()
            .find(|k| k.name == "gemm_ws_wg")
            .expect("gemm_ws_wg is registered");
        let sm80 = Device::emulator("sm_80").unwrap();
        assert_eq!(
            runs_no_variant(k, &sm80).as_deref(),
            Some("registered for sm_90a only, which emu:sm_80 does not run")
        );
        assert_eq!(runs_no_variant(k, &Device::Cpu), None);
        assert_eq!(
            runs_no_variant(k, &Device::emulator("sm_90a").unwrap()),
            None
        );
    }

    #[test]
    fn selftest_takes_gpu_numerics_on_the_interpreter_only() {
        let e = usage_error(&["selftest", "--device", "hip", "--numerics", "approx"]);
        assert!(
            e.contains("--numerics approx") && e.contains("--device cpu"),
            "{e}"
        );
        let e = usage_error(&["selftest", "--numerics", "fast"]);
        assert!(e.contains("fast") && e.contains("approx"), "{e}");
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
    fn list_prints_each_variants_parameters_with_its_generics_substituted() {
        let listing = list();
        let line = |prefix: &str| {
            listing
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` in:\n{listing}"))
                .to_string()
        };
        // gemm<O, …>(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<O, 2>): O is the first argument.
        let bf16 = line("gemm<bf16, 64, 64, 32, 32, 32>");
        assert!(bf16.contains("c: GlMut<bf16, 2>"), "{bf16}");
        let f32 = line("gemm<f32, 64, 64, 32, 32, 32>");
        assert!(f32.contains("c: GlMut<f32, 2>"), "{f32}");
        for k in kernels() {
            for v in k.variants {
                let names = comptime_args(v.args);
                // No parameter type still names a generic parameter of the kernel.
                let generic = k.params.contains("GlMut<O") || k.params.contains("Gl<T");
                if generic && !names.is_empty() {
                    assert!(
                        !v.params.contains("GlMut<O") && !v.params.contains("Gl<T,"),
                        "{}{}: {}",
                        k.name,
                        v.args,
                        v.params
                    );
                }
            }
        }
    }

    #[cfg(feature = "jit")]
    #[test]
    fn every_variants_target_list_names_targets_of_the_compiler() {
        // The macro checks names against its own list; this keeps it equal to the compiler's.
        let mut restricted = 0;
        for k in kernels() {
            for v in k.variants {
                for t in v.targets {
                    assert!(
                        t.parse::<tilekit_codegen::Target>().is_ok(),
                        "{}{}: {t}",
                        k.name,
                        v.args
                    );
                }
                restricted += usize::from(!v.targets.is_empty());
            }
        }
        assert!(
            restricted > 0,
            "no variant is registered for some targets only"
        );
    }

    /// gemm_wg<f32, 128, 256, 64, 3> is registered `for [sm_90a]`: `list` says so, and `check`,
    /// `emit` and `emulate` on another target are usage errors naming the variant, the target
    /// asked and the one it has.
    #[cfg(feature = "jit")]
    #[test]
    fn a_variant_for_some_targets_is_refused_on_the_others() {
        let spec = "gemm_wg<f32,128,256,64,3>";
        let (_, v) = select(spec, &[]).unwrap();
        assert_eq!(v.targets, ["sm_90a"]);
        assert!(v.is_for("sm_90a") && !v.is_for("sm_80") && !v.is_for("gfx942"));
        let listed = list();
        let line = listed
            .lines()
            .find(|l| l.starts_with("gemm_wg<f32, 128, 256, 64, 3>"))
            .expect("listed");
        assert!(line.ends_with("sm_90a only"), "{line}");
        // A variant for every target says nothing of targets.
        assert!(listed
            .lines()
            .filter(|l| l.starts_with("gemm<"))
            .all(|l| !l.contains(" only")));
        for target in ["sm_80", "gfx942"] {
            for args in [
                vec!["check", spec, "--target", target],
                vec!["emit", spec, "--target", target, "--stage", "tile"],
            ] {
                let e = usage_error(&args);
                assert!(
                    e.contains("gemm_wg<f32, 128, 256, 64, 3> is registered for sm_90a only")
                        && e.contains(&format!("not {target}")),
                    "{args:?}: {e}"
                );
            }
        }
        let e = usage_error(&["emulate", spec, "--target", "sm_80"]);
        assert!(e.contains("registered for sm_90a only, not sm_80"), "{e}");
        // On its own target it compiles.
        let (out, code) = run_str(&format!("emit {spec} --target sm_90a --stage tile")).unwrap();
        assert_eq!(code, 0);
        assert!(out.contains("kernel @gemm_wg("), "{out}");
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
        let (_, v3) = select(
            "gemm",
            &[(0, "f32".into()), (1, "64".into()), (3, "16".into())],
        )
        .unwrap();
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
            e.contains("matches 6 variants") && e.contains("gemm<bf16, 64, 64, 32, 32, 32>"),
            "{e}"
        );
        let e = usage_error(&["check", "gemm", "--const", "0=f32", "--target", "sm_80"]);
        assert!(e.contains("matches 5 variants"), "{e}");
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
        assert!(
            e.contains("required arguments were not provided") && e.contains("--stage <STAGE>"),
            "{e}"
        );
        let e = usage_error(&["check", "adamw_step"]);
        assert!(e.contains("--target <TARGET>"), "{e}");
        let e = usage_error(&["check", "adamw_step", "--target", "sm_80", "--bogus"]);
        assert!(e.contains("unexpected argument '--bogus'"), "{e}");
        // `check` prints a report: it has neither a stage nor an output file.
        let e = usage_error(&["check", "adamw_step", "--target", "sm_80", "--stage", "ptx"]);
        assert!(e.contains("unexpected argument '--stage'"), "{e}");
        let e = usage_error(&["emit", "adamw_step", "gemm", "--target", "sm_80"]);
        assert!(e.contains("unexpected argument 'gemm'"), "{e}");
        // Errors found after parsing carry the usage line of their command, as clap's do.
        let e = usage_error(&["emit", "gemmm", "--target", "sm_80", "--stage", "ptx"]);
        assert!(e.contains("Usage: tilekit emit"), "{e}");
    }

    #[test]
    fn help_explains_how_a_variant_is_chosen_and_unknown_commands_are_usage_errors() {
        for args in ["help", "--help", "-h"] {
            let (help, code) = run_str(args).unwrap();
            assert_eq!(code, 0);
            assert!(
                help.contains("--const N=V") && help.contains("tilekit list"),
                "{help}"
            );
        }
        let e = usage_error(&["frobnicate"]);
        assert!(
            e.contains("unrecognized subcommand 'frobnicate'") && e.contains("Usage: tilekit"),
            "{e}"
        );
        // A near miss gets a suggestion.
        let e = usage_error(&["lsit"]);
        assert!(e.contains("'list'"), "{e}");
        let e = usage_error(&["list", "--bogus"]);
        assert!(
            e.contains("unexpected argument '--bogus'") && e.contains("Usage: tilekit list"),
            "{e}"
        );
        // No command at all: the usage error shows the help.
        let e = run(&[]).unwrap_err();
        assert_eq!(e.code, 2, "{e}");
        assert!(
            e.message.contains("Commands:") && e.message.contains("selftest"),
            "{e}"
        );
        let (version, code) = run_str("--version").unwrap();
        assert_eq!(code, 0);
        assert_eq!(
            version.trim(),
            format!("tilekit {}", env!("CARGO_PKG_VERSION"))
        );
    }

    /// The commands of DESIGN.md's "The `tilekit` command", with the options each must take.
    const COMMANDS: [(&str, &[&str]); 7] = [
        ("list", &[]),
        ("selftest", &["--device", "--bundle"]),
        ("bench", &["--device", "--bundle", "--runs"]),
        (
            "emit",
            &["<KERNEL>", "--target", "--stage", "--const", "--out"],
        ),
        ("check", &["<KERNEL>", "--target", "--const"]),
        ("emulate", &["<KERNEL>", "--target", "--const"]),
        ("bundle", &["--target", "--out"]),
    ];

    #[test]
    fn help_mentions_every_command_and_each_commands_help_every_option() {
        let (help, _) = run_str("--help").unwrap();
        for (cmd, options) in COMMANDS {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(cmd)),
                "`{cmd}` missing from\n{help}"
            );
            for args in [format!("help {cmd}"), format!("{cmd} --help")] {
                let (text, code) = run_str(&args).unwrap();
                assert_eq!(code, 0, "{args}");
                assert!(
                    text.contains(&format!("Usage: tilekit {cmd}")),
                    "{args}:\n{text}"
                );
                for option in options {
                    assert!(text.contains(option), "{args}: no `{option}` in\n{text}");
                }
            }
        }
        // Every command and every option says what it is.
        let cli = Cli::command();
        assert_eq!(cli.get_subcommands().count(), COMMANDS.len());
        for sub in cli.get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "`{}` has no help",
                sub.get_name()
            );
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "`{} {}` has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn const_choices_are_positions_with_values() {
        assert_eq!(parse_const("0=bf16"), Ok((0, "bf16".to_string())));
        assert_eq!(parse_const(" 3 = 64 "), Ok((3, "64".to_string())));
        assert!(parse_const("bf16").unwrap_err().contains("N=V"));
        assert!(parse_const("BM=64").unwrap_err().contains("position"));
        assert_eq!(parse_runs("20"), Ok(20));
        assert!(parse_runs("19").is_err() && parse_runs("many").is_err());
    }

    /// The options of `bundle`: a known target and an output directory.
    #[test]
    fn bundle_wants_a_target_and_an_output_directory() {
        let e = usage_error(&["bundle", "--target", "sm_80"]);
        assert!(e.contains("--out <DIR>"), "{e}");
        let e = usage_error(&["bundle", "--target", "sm_80", "--out"]);
        assert!(e.contains("a value is required for '--out <DIR>'"), "{e}");
        let e = usage_error(&["bundle", "--out", "x"]);
        assert!(e.contains("--target <TARGET>"), "{e}");
    }

    #[cfg(feature = "jit")]
    #[test]
    fn unknown_targets_and_stages_are_usage_errors() {
        let known = "[possible values: sm_80, sm_90a, gfx90a, gfx942, gfx950]";
        let e = usage_error(&["emit", "adamw_step", "--target", "sm_75", "--stage", "ptx"]);
        assert!(
            e.contains("invalid value 'sm_75' for '--target <TARGET>'") && e.contains(known),
            "{e}"
        );
        let e = usage_error(&["bundle", "--target", "sm_75", "--out", "x"]);
        assert!(
            e.contains("invalid value 'sm_75' for '--target <TARGET>'") && e.contains(known),
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
            e.contains("invalid value 'cubin' for '--stage <STAGE>'")
                && e.contains("llvm-opt")
                && e.contains("sass"),
            "{e}"
        );
        let e = usage_error(&["check", "adamw_step", "--target", "sm_90"]);
        assert!(
            e.contains("invalid value 'sm_90'") && e.contains("'sm_90a'"),
            "{e}"
        );
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
        use tilekit_codegen::{compile_cached, Target};
        let chips = [Target::Gfx90a, Target::Gfx942, Target::Gfx950];
        let failures: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = chips
                .iter()
                .map(|&t| {
                    scope.spawn(move || {
                        let mut failures = Vec::new();
                        for k in crate::registry::kernels() {
                            for v in k.variants.iter().filter(|v| v.is_for(t.name())) {
                                let what = format!("{}{} on {t}", k.name, v.args);
                                // Cached: the bundle test compiles the same variants.
                                match compile_cached((v.module)(), k.name, t) {
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
                // 4 ring stages of 64×32 and 32×64 bf16.
                "LDS            32768 bytes",
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
        // The aligned variant: its copies are cp.async (LDGSTS) on sm_80 and tensor-memory
        // copies (UTMALDG) on sm_90a; the general one copies element by element.
        for (target, copy) in [("sm_80", "LDGSTS"), ("sm_90a", "UTMALDG")] {
            let (out, code) = run_str(&format!(
                "check gemm --const 0=bf16 --target {target} --assume aligned"
            ))
            .unwrap();
            assert_eq!(code, 0);
            for want in [
                "registers",
                "spill bytes    0 stores, 0 loads",
                "shared memory",
                "HMMA",
                "LDSM",
                copy,
            ] {
                assert!(out.contains(want), "{target}: no `{want}` in\n{out}");
            }
        }
    }

    /// `check --assume` compiles the variant for those facts and says which it compiled; the
    /// aligned GEMM uses fewer registers than the general one (no element-wise fallback copy).
    #[cfg(feature = "jit")]
    #[test]
    fn check_and_emit_compile_for_the_assumed_facts_and_say_so() {
        let registers = |out: &str| -> u32 {
            out.lines()
                .find_map(|l| l.strip_prefix("registers"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let kernel = "gemm --const 0=bf16 --const 1=64 --const 2=64 --target sm_80";
        let (general, _) = run_str(&format!("check {kernel}")).unwrap();
        assert!(general.contains("assumes        general"), "{general}");
        let (aligned, code) = run_str(&format!("check {kernel} --assume aligned")).unwrap();
        assert_eq!(code, 0);
        assert!(
            aligned.contains("assumes        aligned16(a, b, c)"),
            "{aligned}"
        );
        let (named, _) = run_str(&format!("check {kernel} --assume aligned16(b,a)")).unwrap();
        assert!(named.contains("assumes        aligned16(a, b)"), "{named}");
        assert!(registers(&aligned) > 0 && registers(&aligned) < registers(&general));
        let (ptx, _) = run_str(&format!("emit {kernel} --assume aligned --stage ptx")).unwrap();
        assert!(
            ptx.contains("cp.async") && !ptx.contains("ld.global"),
            "{ptx}"
        );
        for (bad, says) in [("aligned16(zz)", "`zz`"), ("aligned8(a)", "aligned16(")] {
            let e = run_str(&format!("check {kernel} --assume {bad}")).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    /// `emulate` runs the self-test on the emulator and prints a profile whose classes add up
    /// to its total, with global loads among them.
    #[cfg(feature = "jit")]
    #[test]
    fn emulate_runs_the_selftest_on_the_emulator_and_prints_the_profile() {
        let (out, code) = run_str("emulate softmax_rows --const 0=f32 --target sm_80")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("softmax_rows<f32, 16, 64, 4> on emu:sm_80")
                && out.contains("self-test: ok"),
            "{out}"
        );
        assert!(out.contains("sanitizer: no findings"), "{out}");
        // Profile rows are `count  class`; the last one is the total.
        let rows: Vec<(u64, &str)> = out
            .lines()
            .skip_while(|l| !l.starts_with("instruction profile"))
            .skip(1)
            .filter_map(|l| {
                let (n, class) = l.trim().split_once("  ")?;
                Some((n.parse().ok()?, class.trim()))
            })
            .collect();
        let (total, classes) = rows.split_last().expect("a profile");
        assert_eq!(total.1, "total warp-instructions", "{out}");
        assert!(total.0 > 0, "{out}");
        assert_eq!(classes.iter().map(|r| r.0).sum::<u64>(), total.0, "{out}");
        assert!(
            classes.iter().any(|(n, c)| *n > 0 && c.starts_with("ld")),
            "no load in the profile:\n{out}"
        );
    }

    #[cfg(feature = "jit")]
    #[test]
    fn emulate_takes_only_the_emulators_targets_and_one_variant() {
        for target in ["sm_75", "gfx942"] {
            let e = usage_error(&[
                "emulate",
                "softmax_rows",
                "--const",
                "0=f32",
                "--target",
                target,
            ]);
            assert!(
                e.contains(&format!("invalid value '{target}' for '--target <TARGET>'"))
                    && e.contains("[possible values: sm_80, sm_90a]"),
                "{e}"
            );
        }
        let e = usage_error(&["emulate", "softmax_rows", "--target", "sm_80"]);
        assert!(
            e.contains("matches 2 variants") && e.contains("Usage: tilekit emulate"),
            "{e}"
        );
        let e = usage_error(&["emulate", "softmaxx", "--target", "sm_80"]);
        assert!(e.contains("unknown kernel `softmaxx`"), "{e}");
    }

    #[cfg(not(feature = "jit"))]
    #[test]
    fn emulate_needs_the_jit_feature() {
        let e = usage_error(&["emulate", "softmax_rows", "--target", "sm_80"]);
        assert!(e.contains("without the `jit` feature"), "{e}");
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
