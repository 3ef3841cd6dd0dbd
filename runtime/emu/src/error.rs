//! Errors of the emulator: parse errors name the PTX line; execution errors name the kernel, the
//! instruction, its line and the lanes involved.

use thiserror::Error;

/// Everything that can go wrong parsing or running PTX.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EmuError {
    /// The PTX text does not parse.
    #[error("PTX line {line}: {message}")]
    Parse {
        /// 1-based line of the PTX text.
        line: u32,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An instruction the emulator does not implement (never silently skipped).
    #[error("kernel {kernel}, PTX line {line}: unknown instruction `{opcode}`")]
    UnknownInstruction {
        /// Kernel being run.
        kernel: String,
        /// 1-based PTX line.
        line: u32,
        /// The full opcode with its modifiers.
        opcode: String,
    },
    /// An instruction is malformed for its opcode (operand count, kinds, types).
    #[error("kernel {kernel}, PTX line {line}: `{opcode}`: {message}")]
    BadInstruction {
        /// Kernel being run.
        kernel: String,
        /// 1-based PTX line.
        line: u32,
        /// The full opcode.
        opcode: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A `.aligned` instruction was not executed by every thread of its scope together.
    #[error("kernel {kernel}, PTX line {line}: `{opcode}` is .aligned but {message}")]
    Divergent {
        /// Kernel being run.
        kernel: String,
        /// 1-based PTX line.
        line: u32,
        /// The full opcode.
        opcode: String,
        /// Which lanes / warps were where.
        message: String,
    },
    /// Lanes executed `trap` (PTX ISA "Miscellaneous Instructions: trap": abort execution).
    #[error("kernel {kernel}, PTX line {line}: trap executed by block {block:?}, warp {warp}, lanes {lanes:?}")]
    Trap {
        /// Kernel being run.
        kernel: String,
        /// 1-based PTX line of the `trap`.
        line: u32,
        /// The block's %ctaid.
        block: [u32; 3],
        /// The warp's index in the block.
        warp: usize,
        /// The lanes of the warp that trapped.
        lanes: Vec<u32>,
    },
    /// Every warp of a block waits and none can proceed.
    #[error("kernel {kernel}, block {block:?}: deadlock: {waits}")]
    Deadlock {
        /// Kernel being run.
        kernel: String,
        /// The block's %ctaid.
        block: [u32; 3],
        /// Where each warp waits.
        waits: String,
    },
    /// The instruction budget ran out (an endless kernel, or a budget set too low).
    #[error("kernel {kernel}: instruction budget of {budget} warp-instructions exhausted (PTX line {line})")]
    BudgetExhausted {
        /// Kernel being run.
        kernel: String,
        /// The budget.
        budget: u64,
        /// Line of the instruction that would have exceeded it.
        line: u32,
    },
    /// The launch was cancelled through its cancel flag.
    #[error("kernel {kernel}: cancelled")]
    Cancelled {
        /// Kernel being run.
        kernel: String,
    },
    /// The launch itself is invalid (unknown kernel, wrong parameter bytes, bad grid).
    #[error("launch of {kernel}: {message}")]
    Launch {
        /// Kernel being launched.
        kernel: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A memory access faulted in a way the sanitizer cannot let pass (for example an address
    /// outside every allocation when the sanitizer is off, so there is nothing to read).
    #[error("kernel {kernel}, PTX line {line}: {message}")]
    Fault {
        /// Kernel being run.
        kernel: String,
        /// 1-based PTX line.
        line: u32,
        /// The access.
        message: String,
    },
    /// A tensor-core instruction's form or operands are outside what it models (converted to
    /// [`EmuError::BadInstruction`] with the line by the executor).
    #[error("{0}")]
    TensorCore(#[from] crate::tensor_core::TensorCoreError),
    /// The sanitizer found problems (the run's report lists them all).
    #[error("kernel {kernel}: sanitizer found {count} problem(s); first: {first}")]
    Sanitizer {
        /// Kernel being run.
        kernel: String,
        /// How many findings.
        count: usize,
        /// The first finding, rendered.
        first: String,
        /// All findings.
        findings: Vec<crate::sanitizer::Finding>,
    },
}

/// Result of emulator operations.
pub type EmuResult<T> = Result<T, EmuError>;
