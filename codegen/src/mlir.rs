//! MLIR stage: parse the generated module, run the pass pipeline to the LLVM dialect and
//! translate it to LLVM IR in a given LLVM context.

use std::cell::RefCell;
use std::rc::Rc;

use melior::dialect::DialectRegistry;
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::pass::PassManager;
use melior::utility::{
    parse_pass_pipeline, register_all_dialects, register_all_llvm_translations, register_all_passes,
};
use melior::Context;

use crate::CodegenError;

/// The pass pipeline from the generated dialects (`scf`, `arith`, `llvm`, `nvvm`) to the LLVM
/// dialect: structured control flow to branches, everything else to `llvm` ops, then the casts
/// between the two type systems are folded away.
pub const PIPELINE: &str =
    "builtin.module(canonicalize,cse,convert-scf-to-cf,convert-to-llvm,reconcile-unrealized-casts,canonicalize,cse)";

/// An MLIR context with every upstream dialect, pass and LLVM translation registered, and the
/// diagnostics it reports.
pub(crate) struct Mlir {
    pub context: Context,
    diagnostics: Rc<RefCell<Vec<String>>>,
}

impl Mlir {
    pub fn new() -> Mlir {
        let registry = DialectRegistry::new();
        register_all_dialects(&registry);
        register_all_passes();
        let context = Context::new();
        context.append_dialect_registry(&registry);
        context.load_all_available_dialects();
        register_all_llvm_translations(&context);
        // Multithreading would only add start-up cost for one small module.
        context.enable_multi_threading(false);
        let diagnostics = Rc::new(RefCell::new(Vec::new()));
        let sink = diagnostics.clone();
        context.attach_diagnostic_handler(move |d| {
            sink.borrow_mut().push(format!("{} {}", d.location(), d));
            true
        });
        Mlir {
            context,
            diagnostics,
        }
    }

    fn take_diagnostics(&self) -> String {
        std::mem::take(&mut *self.diagnostics.borrow_mut()).join("\n")
    }

    pub fn parse(&self, text: &str) -> Result<Module<'_>, CodegenError> {
        let m = Module::parse(&self.context, text).ok_or_else(|| CodegenError::Mlir {
            stage: "parsing".into(),
            message: self.take_diagnostics(),
        })?;
        if !m.as_operation().verify() {
            return Err(CodegenError::Mlir {
                stage: "verification".into(),
                message: self.take_diagnostics(),
            });
        }
        Ok(m)
    }

    /// Runs [`PIPELINE`] on `module`.
    pub fn lower(&self, module: &mut Module<'_>) -> Result<(), CodegenError> {
        let pm = PassManager::new(&self.context);
        parse_pass_pipeline(pm.as_operation_pass_manager(), PIPELINE).map_err(|e| {
            CodegenError::Mlir {
                stage: "pass pipeline parsing".into(),
                message: e.to_string(),
            }
        })?;
        pm.run(module).map_err(|_| CodegenError::Mlir {
            stage: "lowering to the LLVM dialect".into(),
            message: self.take_diagnostics(),
        })
    }
}

/// Translates a module in the LLVM dialect to an LLVM IR module owned by `llvm`.
pub(crate) fn translate<'ctx>(
    module: &Module<'_>,
    llvm: &'ctx inkwell::context::Context,
) -> Result<inkwell::module::Module<'ctx>, CodegenError> {
    // SAFETY: both handles are live for the call; the returned module is owned by `llvm`'s
    // context (MLIR's C API: "the module is owned by the caller"), which inkwell's `Module`
    // takes over and disposes of before the context, whose lifetime `'ctx` it carries.
    unsafe {
        let raw = mlir_sys::mlirTranslateModuleToLLVMIR(
            module.as_operation().to_raw(),
            llvm.raw() as mlir_sys::LLVMContextRef,
        );
        if raw.is_null() {
            return Err(CodegenError::Mlir {
                stage: "translation to LLVM IR".into(),
                message: "mlirTranslateModuleToLLVMIR returned no module".into(),
            });
        }
        Ok(inkwell::module::Module::new(
            raw as inkwell::llvm_sys::prelude::LLVMModuleRef,
        ))
    }
}
