//! # tilekit-codegen
//!
//! Code generation for Tile IR kernels: [`compile`] lowers a verified kernel for a [`Target`]
//! through every stage of the pipeline and keeps each as text (the AMD code object as bytes):
//!
//! ```text
//! Tile IR ──(lowering rules + the target's rules, layout)──▶ MLIR (arith, scf, llvm,
//!   nvvm | rocdl) ──(mlir::PIPELINE)──▶ MLIR in the LLVM dialect ──(translation)──▶ LLVM IR
//!   ──(O3)──▶ optimized LLVM IR ─┬─(NVPTX target machine)──▶ PTX ──(ptxas, nvdisasm)──▶ SASS
//!                                └─(AMDGPU target machine)──▶ assembly, object
//!                                     ──(ld.lld -shared)──▶ code object (.hsaco, v5)
//! ```
//!
//! The lowering is written once; what differs between NVIDIA and AMD (lane count, fragment
//! layouts, hardware operations, limits) is each target's rules ([`nvidia`], [`amd`]).
//! [`layout`] holds the register fragment layouts, MFMA plans and swizzles as data; [`ptxas`]
//! and [`sass`] drive NVIDIA's offline tools for resource reports and instruction mixes;
//! [`hot_loop`] reads the hot loop of a kernel from its SASS or AMDGPU assembly;
//! [`amd::lld`] links AMD code objects and [`amd::resources`] reads their resource report;
//! [`cache`] keeps compiled kernels in memory and under `TILEKIT_CACHE_DIR`.

pub mod amd;
pub mod cache;
pub mod error;
pub mod hot_loop;
pub mod layout;
pub mod llvm;
mod lower;
pub mod mlir;
pub mod nvidia;
pub mod ptxas;
pub mod sass;
pub mod specialize;
// TMA box plans of shared tiles (sm_90a): a lowering rule, public because the runtime encodes
// each copied view's tensor map with the plan's box.
#[path = "lower/tma.rs"]
pub mod tma;

pub use cache::{compile_cached, compile_cached_with};
pub use error::CodegenError;
pub use nvidia::{shared_limit, REGISTER_LIMIT};
pub use specialize::Facts;

/// This crate's version, which (with [`llvm_version`]) decides the generated code.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The LLVM (and MLIR) this crate is built against: (major, minor, patch).
pub fn llvm_version() -> (u32, u32, u32) {
    inkwell::support::get_llvm_version()
}

use std::fmt;
use std::str::FromStr;

/// A GPU architecture tilekit generates code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// NVIDIA Ampere: `mma.sync`, `ldmatrix`, `cp.async`.
    Sm80,
    /// NVIDIA Hopper with architecture-specific features: `wgmma`, TMA, `setmaxnreg`.
    Sm90a,
    /// AMD CDNA2 (MI200).
    Gfx90a,
    /// AMD CDNA3 (MI300).
    Gfx942,
    /// AMD CDNA4 (MI355).
    Gfx950,
}

impl Target {
    /// Every supported target, in the order the CLI lists them.
    pub const ALL: [Target; 5] = [
        Target::Sm80,
        Target::Sm90a,
        Target::Gfx90a,
        Target::Gfx942,
        Target::Gfx950,
    ];

    /// The name used on the command line and by LLVM (`-mcpu`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Sm80 => "sm_80",
            Target::Sm90a => "sm_90a",
            Target::Gfx90a => "gfx90a",
            Target::Gfx942 => "gfx942",
            Target::Gfx950 => "gfx950",
        }
    }

    pub fn is_nvidia(self) -> bool {
        matches!(self, Target::Sm80 | Target::Sm90a)
    }

    /// Threads per warp (NVIDIA) or wavefront (AMD).
    pub fn lanes(self) -> u32 {
        if self.is_nvidia() {
            32
        } else {
            64
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown target name, with the list of supported ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{given}`; supported targets: {}", Target::ALL.map(Target::name).join(", "))]
pub struct UnknownTarget {
    pub given: String,
}

impl FromStr for Target {
    type Err = UnknownTarget;

    fn from_str(s: &str) -> Result<Target, UnknownTarget> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTarget {
                given: s.to_string(),
            })
    }
}

/// A stage of the pipeline whose text a [`Compiled`] kernel keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The kernel's Tile IR (with the helpers of its module), as printed by `tilekit_ir`.
    Tile,
    /// MLIR as generated (arith, scf, llvm, nvvm dialects).
    Mlir,
    /// MLIR after the pass pipeline: the LLVM dialect only.
    MlirLowered,
    /// LLVM IR as translated from MLIR.
    Llvm,
    /// LLVM IR after O3, as handed to the NVPTX back end.
    LlvmOpt,
    /// PTX assembly (NVIDIA targets).
    Ptx,
    /// AMDGPU assembly (AMD targets), as the back end prints it, with its resource comments.
    Asm,
    /// The linked AMD code object (binary: [`Compiled::code_object`]; its text stage is empty).
    Hsaco,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 8] = [
        Stage::Tile,
        Stage::Mlir,
        Stage::MlirLowered,
        Stage::Llvm,
        Stage::LlvmOpt,
        Stage::Ptx,
        Stage::Asm,
        Stage::Hsaco,
    ];

    /// The name used on the command line and in dump file names.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Tile => "tile",
            Stage::Mlir => "mlir",
            Stage::MlirLowered => "mlir-lowered",
            Stage::Llvm => "llvm",
            Stage::LlvmOpt => "llvm-opt",
            Stage::Ptx => "ptx",
            Stage::Asm => "asm",
            Stage::Hsaco => "hsaco",
        }
    }

    /// Whether `target` has this stage (PTX is NVIDIA's, assembly and code object AMD's).
    pub fn applies_to(self, target: Target) -> bool {
        match self {
            Stage::Ptx => target.is_nvidia(),
            Stage::Asm | Stage::Hsaco => !target.is_nvidia(),
            _ => true,
        }
    }
}

/// One kernel argument as the launch passes it.
///
/// A global view of rank n is passed as a pointer, then n sizes, then n strides (elements),
/// the sizes and strides as 32-bit signed integers; a scalar as itself (bool as a 32-bit 0 or 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelArg {
    Global {
        name: String,
        dtype: tilekit_ir::ScalarType,
        rank: u32,
    },
    Scalar {
        name: String,
        dtype: tilekit_ir::ScalarType,
    },
}

/// A compiled kernel: the text of every stage and what a launch needs to know.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub kernel: String,
    pub target: Target,
    /// What the compile assumed about the launch's arguments ([`Facts::general`]: nothing,
    /// the variant every launch may take).
    pub facts: Facts,
    /// Kernel arguments, in order (see [`KernelArg`] for the calling convention).
    pub args: Vec<KernelArg>,
    /// The tensor maps the entry takes after `args` (sm_90a kernels whose copies go through
    /// TMA; empty otherwise): the launch encodes each from its view's tensor.
    pub tensor_maps: Vec<tma::TensorMapArg>,
    /// Warps (wavefronts) per block; the block is `warps · lanes` threads along x (32 lanes on
    /// NVIDIA, 64 on AMD: [`Compiled::block_threads`]).
    pub warps: u32,
    /// Bytes of shared memory the kernel uses.
    pub shared_bytes: u64,
    /// Whether that shared memory is dynamic (over 48 KiB: the launch passes `shared_bytes` and
    /// opts in to the size); otherwise it is a static allocation in the PTX.
    pub dynamic_shared: bool,
    /// Seconds spent in each stage: lowering to MLIR, MLIR passes, translation, O3 and PTX.
    pub timings: Timings,
    stages: Vec<(Stage, String)>,
    /// The linked code object of an AMD target.
    code_object: Option<Vec<u8>>,
    /// ptxas's output for the PTX, kept from the compile's own spill and advisory check (NVIDIA
    /// targets where ptxas ran), so reading registers or SASS assembles nothing again.
    assembly: Option<ptxas::Assembled>,
}

/// Wall-clock time of each compilation stage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Tile IR → MLIR text (the lowering rules).
    pub lower: f64,
    /// Parsing and verifying the MLIR text (including context set-up).
    pub parse: f64,
    /// The MLIR pass pipeline.
    pub passes: f64,
    /// Translation to LLVM IR.
    pub translate: f64,
    /// O3 and PTX emission (AMD: O3, assembly and object emission).
    pub llvm: f64,
    /// Linking the AMD code object with `ld.lld`.
    pub link: f64,
    /// The NVIDIA checks: assembling the PTX with ptxas to read its register report and
    /// performance advisories (not in [`Timings::total`], which is the pipeline to PTX or code
    /// object).
    pub spill_check: f64,
}

impl Timings {
    /// Seconds from Tile IR to PTX (NVIDIA) or the linked code object (AMD).
    pub fn total(&self) -> f64 {
        self.lower + self.parse + self.passes + self.translate + self.llvm + self.link
    }
}

impl Compiled {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        kernel: String,
        target: Target,
        facts: Facts,
        args: Vec<KernelArg>,
        warps: u32,
        shared_bytes: u64,
        dynamic_shared: bool,
        timings: Timings,
        stages: Vec<(Stage, String)>,
        code_object: Option<Vec<u8>>,
    ) -> Compiled {
        Compiled {
            kernel,
            target,
            facts,
            args,
            tensor_maps: Vec::new(),
            warps,
            shared_bytes,
            dynamic_shared,
            timings,
            stages,
            code_object,
            assembly: None,
        }
    }

    /// The text of one stage.
    pub fn stage(&self, s: Stage) -> &str {
        self.stages
            .iter()
            .find(|(k, _)| *k == s)
            .map(|(_, t)| t.as_str())
            .unwrap_or("")
    }

    pub fn ptx(&self) -> &str {
        self.stage(Stage::Ptx)
    }

    /// The linked code object (`.hsaco`) of an AMD target; `None` on NVIDIA targets.
    pub fn code_object(&self) -> Option<&[u8]> {
        self.code_object.as_deref()
    }

    /// The resource report of an AMD code object (registers, LDS, scratch), read from its
    /// metadata note; `None` on NVIDIA targets (see [`ptxas`] there).
    pub fn amd_resources(&self) -> Option<amd::resources::Report> {
        amd::resources::report(self.code_object()?, &self.kernel)
    }

    /// Threads per block.
    pub fn block_threads(&self) -> u32 {
        self.warps * self.target.lanes()
    }

    /// ptxas's output for the PTX (cubin, register report, log) if the compile assembled it
    /// (NVIDIA targets with ptxas installed, unless the kernel allows both spills and
    /// advisories); [`Compiled::assembled`] assembles it when not.
    pub fn assembly(&self) -> Option<&ptxas::Assembled> {
        self.assembly.as_ref()
    }

    /// ptxas's output for the PTX: the compile's own ([`Compiled::assembly`]) or, where it did
    /// not assemble, a fresh `ptxas` run. An AMD target is an error that points at its `asm`
    /// stage.
    pub fn assembled(&self) -> Result<std::borrow::Cow<'_, ptxas::Assembled>, CodegenError> {
        if !self.target.is_nvidia() {
            return Err(CodegenError::Tool {
                tool: "ptxas".into(),
                message: format!(
                    "{} has no PTX to assemble; its code is the AMD code object (stages asm, hsaco)",
                    self.target
                ),
            });
        }
        Ok(match &self.assembly {
            Some(a) => std::borrow::Cow::Borrowed(a),
            None => std::borrow::Cow::Owned(ptxas::assemble(self.ptx(), self.target)?),
        })
    }

    /// The SASS of the PTX: [`Compiled::assembled`], disassembled with nvdisasm (NVIDIA
    /// targets; an AMD target is an error that points at its `asm` stage).
    pub fn sass(&self) -> Result<String, CodegenError> {
        sass::disassemble(&self.assembled()?.cubin)
    }

    /// The start of the dump's file names: the kernel's name and 8 hex digits of a hash of its
    /// Tile IR, so two instantiations of one generic kernel (whose IR differs) do not overwrite
    /// each other's files; the `tile` file says which instantiation it is. A variant compiled
    /// for [`Facts`] hashes them too, so it does not overwrite the general variant's files.
    pub fn dump_stem(&self) -> String {
        let hash = if self.facts.is_general() {
            cache::fnv1a(self.stage(Stage::Tile))
        } else {
            cache::fnv1a(&format!(
                "{}\nfacts {}",
                self.stage(Stage::Tile),
                self.facts
            ))
        };
        format!("{}-{:08x}", self.kernel, hash >> 32)
    }

    /// Writes every stage to `dir`, one file per stage (`<kernel>-<hash>.<target>.<stage>`,
    /// see [`Compiled::dump_stem`]).
    pub fn dump(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let stem = self.dump_stem();
        for (s, text) in &self.stages {
            let path = dir.join(format!("{stem}.{}.{}", self.target, s.name()));
            std::fs::write(path, text)?;
        }
        if let Some(co) = &self.code_object {
            let path = dir.join(format!("{stem}.{}.hsaco", self.target));
            std::fs::write(path, co)?;
        }
        Ok(())
    }
}

/// Compiles kernel `kernel` of `module` for `target` through every stage to PTX (NVIDIA) or a
/// linked code object (AMD).
///
/// The module must verify. Ops the target cannot lower yet are [`CodegenError::Unsupported`],
/// naming the op and the target; kernels over the target's shared memory or register limits
/// are [`CodegenError::Resources`] (shared memory and loop-carried registers before any code is
/// emitted; on AMD also the VGPRs and LDS the code object reports). A kernel whose live values
/// do not fit the registers, so that the back end spilled them to memory, is refused unless
/// it allows spills (`#[kernel(allow_spills)]`, [`tilekit_ir::Func::allow_spills`]): on
/// NVIDIA [`CodegenError::Spills`] with ptxas's numbers (the PTX is assembled once for the
/// check; where ptxas is not installed the check cannot run and the PTX is returned
/// unchecked), on AMD [`CodegenError::Resources`] with the code object's. On NVIDIA the same
/// assembly refuses code for which ptxas gave a performance advisory (serialized wgmma, ignored
/// `setmaxnreg`) with [`CodegenError::PerformanceAdvisory`], unless
/// `TILEKIT_ALLOW_PTXAS_ADVISORIES` accepts it ([`ptxas::AdvisoryPolicy::from_env`];
/// [`compile_with_advisories`] takes the policy as an argument). When `TILEKIT_DUMP` names a
/// directory, every stage is written there.
pub fn compile(
    module: &tilekit_ir::Module,
    kernel: &str,
    target: Target,
) -> Result<Compiled, CodegenError> {
    compile_with(module, kernel, target, &Facts::general())
}

/// [`compile`] for launches that satisfy `facts` ([`specialize`]): the kernel may rely on
/// them (a global → shared copy from a view assumed 16-byte aligned moves whole 16-byte
/// chunks, with no run-time alignment test and no element-wise fallback), so it must only run
/// with arguments that satisfy them. Facts that name no global-view parameter of the kernel are
/// [`CodegenError::Invalid`].
pub fn compile_with(
    module: &tilekit_ir::Module,
    kernel: &str,
    target: Target,
    facts: &Facts,
) -> Result<Compiled, CodegenError> {
    compile_with_advisories(
        module,
        kernel,
        target,
        facts,
        ptxas::AdvisoryPolicy::from_env(),
    )
}

/// [`compile_with`] under an explicit policy for ptxas's performance advisories instead of the
/// environment's: `tilekit check` compiles with [`ptxas::AdvisoryPolicy::Allow`] to print them
/// in its report.
pub fn compile_with_advisories(
    module: &tilekit_ir::Module,
    kernel: &str,
    target: Target,
    facts: &Facts,
    advisories: ptxas::AdvisoryPolicy,
) -> Result<Compiled, CodegenError> {
    use std::time::Instant;
    tilekit_ir::verify(module).map_err(|es| {
        CodegenError::Invalid(
            es.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let func = module
        .kernel(kernel)
        .ok_or_else(|| CodegenError::UnknownKernel {
            name: kernel.to_string(),
            available: module.kernel_names(),
        })?;
    facts
        .check_against(func)
        .map_err(|e| CodegenError::Invalid(e.to_string()))?;
    let mut timings = Timings::default();
    let t0 = Instant::now();
    let lowered = lower::lower(module, func, target, facts)?;
    timings.lower = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let mlir = mlir::Mlir::new();
    let mut m = mlir.parse(&lowered.mlir)?;
    let mlir_text = m.as_operation().to_string();
    timings.parse = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    mlir.lower(&mut m)?;
    let lowered_text = m.as_operation().to_string();
    timings.passes = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let ctx = inkwell::context::Context::create();
    let lm = mlir::translate(&m, &ctx)?;
    let llvm_text = lm.print_to_string().to_string();
    timings.translate = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let tile = tilekit_ir::print_module(module);
    let mut stages = vec![
        (Stage::Tile, tile),
        (Stage::Mlir, mlir_text),
        (Stage::MlirLowered, lowered_text),
        (Stage::Llvm, llvm_text),
    ];
    let mut code_object = None;
    // A resource overflow is reported after the stages are dumped, so they can be inspected.
    let mut resource_check = Ok(());
    let mut assembly = None;
    let spills = if func.allow_spills {
        ptxas::SpillPolicy::Allow
    } else {
        ptxas::SpillPolicy::Refuse
    };
    if target.is_nvidia() {
        let (opt_text, ptx) = llvm::optimize_and_emit(&lm, target)?;
        timings.llvm = t0.elapsed().as_secs_f64();
        // Spills and advisories are only visible after ptxas's register allocation and
        // scheduling; a kernel that allows both skips the assembly.
        if spills == ptxas::SpillPolicy::Refuse || advisories == ptxas::AdvisoryPolicy::Refuse {
            let t0 = Instant::now();
            resource_check = ptxas::check_compiled(&ptx, target, kernel, spills, advisories)
                .map(|a| assembly = a);
            timings.spill_check = t0.elapsed().as_secs_f64();
        }
        stages.push((Stage::LlvmOpt, opt_text));
        stages.push((Stage::Ptx, ptx));
    } else {
        let out = llvm::optimize_and_emit_amd(&lm, target)?;
        timings.llvm = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        let co = amd::lld::link(&out.object)?;
        timings.link = t0.elapsed().as_secs_f64();
        resource_check = amd::resources::check_with(kernel, target, &co, spills).map(|_| ());
        stages.push((Stage::LlvmOpt, out.ir));
        stages.push((Stage::Asm, out.asm));
        code_object = Some(co);
    }
    let compiled = Compiled {
        kernel: kernel.to_string(),
        target,
        facts: facts.clone(),
        args: lowered.args,
        tensor_maps: lowered.tensor_maps,
        warps: func.warps().unwrap_or(1),
        shared_bytes: lowered.shared_bytes,
        dynamic_shared: lowered.dynamic_shared,
        timings,
        stages,
        code_object,
        assembly,
    };
    if let Some(dir) = std::env::var_os("TILEKIT_DUMP") {
        compiled
            .dump(std::path::Path::new(&dir))
            .map_err(|e| CodegenError::Tool {
                tool: "TILEKIT_DUMP".into(),
                message: format!("cannot write the stages to {}: {e}", dir.to_string_lossy()),
            })?;
    }
    resource_check?;
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_round_trip() {
        for t in Target::ALL {
            assert_eq!(t.name().parse::<Target>(), Ok(t));
        }
    }

    #[test]
    fn unknown_target_lists_the_supported_ones() {
        let e = "gfx1100".parse::<Target>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown target `gfx1100`; supported targets: sm_80, sm_90a, gfx90a, gfx942, gfx950"
        );
    }
}
