//! LLVM stage: O3 and the NVPTX target machine.

use inkwell::module::Module;
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

fn machine(target: Target) -> Result<TargetMachine, CodegenError> {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| LlvmTarget::initialize_nvptx(&InitializationConfig::default()));
    let triple = TargetTriple::create("nvptx64-nvidia-cuda");
    let t = LlvmTarget::from_triple(&triple).map_err(|e| CodegenError::Llvm {
        stage: "target lookup".into(),
        message: e.to_string(),
    })?;
    t.create_target_machine(
        &triple,
        target.name(),
        &format!("+{}", ptx_version(target)),
        OptimizationLevel::Aggressive,
        RelocMode::Default,
        CodeModel::Default,
    )
    .ok_or_else(|| CodegenError::Llvm {
        stage: "target machine".into(),
        message: format!("NVPTX has no target machine for {target}"),
    })
}

/// Sets the module's triple and data layout, verifies it, runs `default<O3>`; returns the
/// optimized IR text and the PTX.
pub(crate) fn optimize_and_emit(
    module: &Module<'_>,
    target: Target,
) -> Result<(String, String), CodegenError> {
    let tm = machine(target)?;
    module.set_triple(&tm.get_triple());
    module.set_data_layout(&tm.get_target_data().get_data_layout());
    module.verify().map_err(|e| CodegenError::Llvm {
        stage: "verification".into(),
        message: e.to_string(),
    })?;
    module
        .run_passes("default<O3>", &tm, PassBuilderOptions::create())
        .map_err(|e| CodegenError::Llvm {
            stage: "O3".into(),
            message: e.to_string(),
        })?;
    let ir = module.print_to_string().to_string();
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
