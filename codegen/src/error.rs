//! What can go wrong while generating code.

use crate::Target;

/// An error of [`compile`](crate::compile) or of a tool driver.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    /// The module does not verify; codegen only lowers verified Tile IR.
    #[error("the module does not verify: {0}")]
    Invalid(String),
    /// No kernel of that name.
    #[error("no kernel `{name}` in the module; kernels: {available}")]
    UnknownKernel { name: String, available: String },
    /// An op (or a form of it) that this target cannot lower yet.
    #[error("`{op}` cannot be lowered for {target}: {reason} (at {loc})")]
    Unsupported {
        op: String,
        target: Target,
        reason: String,
        loc: String,
    },
    /// The kernel needs more of a resource than the target has.
    #[error(
        "kernel `{kernel}` needs {needed} {resource} on {target}, more than the limit of {limit}"
    )]
    Resources {
        kernel: String,
        target: Target,
        resource: String,
        needed: u64,
        limit: u64,
    },
    /// MLIR rejected the generated module or a pass failed (a bug of this crate).
    #[error("MLIR {stage} failed: {message}")]
    Mlir { stage: String, message: String },
    /// LLVM failed (a bug of this crate or of the installation).
    #[error("LLVM {stage} failed: {message}")]
    Llvm { stage: String, message: String },
    /// An external tool (ptxas, nvdisasm) is missing or failed.
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
}
