//! LLVM stage: O3, then the NVPTX target machine (PTX text) or the AMDGPU target machine
//! (assembly text and a relocatable object for `ld.lld`).

use inkwell::module::{FlagBehavior, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target as LlvmTarget, TargetMachine,
    TargetTriple,
};
use inkwell::OptimizationLevel;

use crate::{CodegenError, Target};

/// The PTX ISA version each target is compiled for: 8.0 is the first with everything sm_80
/// kernels use; sm_90a asks for 8.3 (as the design notes say: ptxas 13.5 takes LLVM 22's
/// sm_90a PTX at 8.3, and later Hopper instructions need it).
pub fn ptx_version(target: Target) -> &'static str {
    match target {
        Target::Sm90a => "ptx83",
        _ => "ptx80",
    }
}

/// The target machine for `triple` and `target`'s chip, or an error naming the back end.
fn target_machine(
    triple: &str,
    target: Target,
    features: &str,
    reloc: RelocMode,
    backend: &str,
) -> Result<TargetMachine, CodegenError> {
    let triple = TargetTriple::create(triple);
    let t = LlvmTarget::from_triple(&triple).map_err(|e| CodegenError::Llvm {
        stage: "target lookup".into(),
        message: e.to_string(),
    })?;
    t.create_target_machine(
        &triple,
        target.name(),
        features,
        OptimizationLevel::Aggressive,
        reloc,
        CodeModel::Default,
    )
    .ok_or_else(|| CodegenError::Llvm {
        stage: "target machine".into(),
        message: format!("{backend} has no target machine for {target}"),
    })
}

fn machine(target: Target) -> Result<TargetMachine, CodegenError> {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| LlvmTarget::initialize_nvptx(&InitializationConfig::default()));
    target_machine(
        "nvptx64-nvidia-cuda",
        target,
        &format!("+{}", ptx_version(target)),
        RelocMode::Default,
        "NVPTX",
    )
}

/// Sets the module's triple and data layout for `tm`, verifies it and runs `default<O3>`;
/// returns the optimized IR text.
fn optimize(module: &Module<'_>, tm: &TargetMachine) -> Result<String, CodegenError> {
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    module.verify().map_err(|e| CodegenError::Llvm {
        stage: "verification".into(),
        message: e.to_string(),
    })?;
    module
        .run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(|e| CodegenError::Llvm {
            stage: "O3".into(),
            message: e.to_string(),
        })?;
    Ok(module.print_to_string().to_string())
}

/// Sets the module's triple and data layout, verifies it, runs `default<O3>`; returns the
/// optimized IR text and the PTX.
pub(crate) fn optimize_and_emit(
    module: &Module<'_>,
    target: Target,
) -> Result<(String, String), CodegenError> {
    let tm = machine(target)?;
    let ir = optimize(module, &tm)?;
    let buf = tm
        .write_to_memory_buffer(module, FileType::Assembly)
        .map_err(|e| CodegenError::Llvm {
            stage: "PTX emission".into(),
            message: e.to_string(),
        })?;
    let ptx = String::from_utf8_lossy(buf.as_slice())
        .trim_end_matches('\0')
        .to_string();
    Ok((ir, ptx))
}

/// The code object version AMD kernels are written as: LLVM 22 defaults to v6, which needs a
/// recent ROCm; the module flag `amdhsa_code_object_version` = 500 asks for v5, which ROCm 5.x and
/// later load (LLVM AMDGPUUsage, *Code Object V5 Metadata*).
pub const AMDHSA_CODE_OBJECT_VERSION: u64 = 500;

/// What the AMDGPU back end produced for one kernel.
pub(crate) struct AmdOutput {
    /// LLVM IR after O3.
    pub ir: String,
    /// AMDGPU assembly.
    pub asm: String,
    /// The relocatable ELF object.
    pub object: Vec<u8>,
}

fn amd_machine(target: Target) -> Result<TargetMachine, CodegenError> {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| LlvmTarget::initialize_amd_gpu(&InitializationConfig::default()));
    target_machine("amdgcn-amd-amdhsa", target, "", RelocMode::PIC, "AMDGPU")
}

/// Sets the module's triple, data layout and code object version, verifies it, runs
/// `default<O3>`, and emits AMDGPU assembly and an object file.
pub(crate) fn optimize_and_emit_amd(
    module: &Module<'_>,
    target: Target,
) -> Result<AmdOutput, CodegenError> {
    let tm = amd_machine(target)?;
    let version = module
        .get_context()
        .i32_type()
        .const_int(AMDHSA_CODE_OBJECT_VERSION, false);
    module.add_basic_value_flag("amdhsa_code_object_version", FlagBehavior::Error, version);
    let ir = optimize(module, &tm)?;
    // Code generation rewrites the IR it is given (control-flow annotation inserts
    // `llvm.amdgcn.if`, which a second emission cannot select): each emission gets a copy.
    let asm = tm
        .write_to_memory_buffer(&module.clone(), FileType::Assembly)
        .map_err(|e| CodegenError::Llvm {
            stage: "AMDGPU assembly emission".into(),
            message: e.to_string(),
        })?;
    let asm = String::from_utf8_lossy(asm.as_slice())
        .trim_end_matches('\0')
        .to_string();
    let object = tm
        .write_to_memory_buffer(&module.clone(), FileType::Object)
        .map_err(|e| CodegenError::Llvm {
            stage: "AMDGPU object emission".into(),
            message: e.to_string(),
        })?
        .as_slice()
        .to_vec();
    Ok(AmdOutput { ir, asm, object })
}
