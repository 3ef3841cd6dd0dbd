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
    /// The kernel's live values do not fit the registers, so the back end spilled them to
    /// memory (local memory on NVIDIA, scratch on AMD), and the kernel does not allow spills
    /// (`#[kernel(allow_spills)]`). Both targets allocate at most `limit` registers per
    /// thread; `detail` gives the back end's figures (ptxas's spill stores and loads, or the
    /// code object's spill counts).
    ///
    /// On NVIDIA the check needs ptxas (spills exist only after its register allocation):
    /// [`compile`](crate::compile) assembles the PTX once for it. Where ptxas is not installed
    /// (`scripts/install-deps.sh` puts it in `.venv/tools`; `TILEKIT_PTXAS` names another) the
    /// check cannot run, and a kernel that spills compiles to PTX that the driver will
    /// assemble with the spills.
    #[error(
        "kernel `{kernel}` spills on {target}: it uses {registers} of the {limit} registers per \
         thread and still spills {spill_bytes} bytes ({detail}); use smaller tiles or fewer live \
         values, or allow spills explicitly (`#[kernel(allow_spills)]`)"
    )]
    Spills {
        kernel: String,
        target: Target,
        /// Registers per thread the back end allocated (at the limit when it spilled).
        registers: u64,
        /// Registers per thread the target allows (255 on NVIDIA, 256 architectural VGPRs on
        /// AMD).
        limit: u64,
        /// Bytes moved by spills: stores plus loads (NVIDIA), scratch bytes per lane (AMD).
        spill_bytes: u64,
        /// Registers spilled (AMD: VGPRs + SGPRs; 0 on NVIDIA, where ptxas reports bytes).
        spilled_registers: u64,
        /// The back end's figures in words.
        detail: String,
    },
    /// ptxas gave a performance advisory for the kernel's PTX (its C75xx `info` lines, each in
    /// `advisories` as ptxas wrote it: C7515 and C7510 serialized wgmma, C7508 ignored
    /// `setmaxnreg`), so the code would run far below its figures. Refused by
    /// [`compile`](crate::compile) unless the author accepts it
    /// ([`AdvisoryPolicy`](crate::ptxas::AdvisoryPolicy)); like the spill check, it needs
    /// ptxas, and PTX compiled where ptxas is not installed is returned unchecked.
    #[error(
        "kernel `{kernel}` on {target}: ptxas reports a performance loss: {}; fix the kernel, or \
         set {}=1 to keep such code while experimenting",
        advisories.join("; "),
        crate::ptxas::AdvisoryPolicy::ENV
    )]
    PerformanceAdvisory {
        kernel: String,
        target: Target,
        /// ptxas's lines, from the code on (`(C7515) Potential Performance Loss: …`).
        advisories: Vec<String>,
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
