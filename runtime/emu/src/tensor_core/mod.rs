//! Warp- and warpgroup-level matrix instructions (`mma.sync`, `ldmatrix`, `stmatrix`, `wgmma`) as
//! pure functions over per-lane register values, written from the PTX ISA's fragment figures.
//!
//! Registers are `u32` bit patterns; packed 16-bit and 8-bit elements sit with element 0 in the
//! least significant bits. Memory is reached through closures the executor supplies, so these
//! functions know nothing of address spaces or the sanitizer: they say which lane's address is
//! read or written, and the executor checks it.
//!
//! Every fragment map is cross-checked in the tests against CuTe's layouts
//! (`mma_traits_sm80.hpp`, `mma_traits_sm90_gmma.hpp`), restated there as independent formulas.

pub mod elements;
pub mod matrix_load_store;
pub mod mma_sync;
pub mod smem_matrix;
pub mod wgmma;

use thiserror::Error;

pub use elements::{Accumulation, AccumulatorType, OperandType};

/// A tensor-core instruction the emulator cannot run as written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TensorCoreError {
    /// The opcode's form (shape, types, layout modifiers) is not one the emulator models.
    #[error("`{opcode}`: {message}")]
    UnsupportedForm {
        /// The full opcode.
        opcode: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A lane supplied an address without the alignment the instruction requires.
    #[error("`{opcode}`: lane {lane} supplied address {address:#x}, which is not {required}-byte aligned")]
    Misaligned {
        /// The full opcode.
        opcode: String,
        /// The lane that supplied the address.
        lane: usize,
        /// The address.
        address: u64,
        /// The required alignment in bytes.
        required: u64,
    },
    /// A wgmma shared-memory matrix descriptor that the emulator cannot interpret.
    #[error("wgmma matrix descriptor {descriptor:#018x}: {message}")]
    BadDescriptor {
        /// The 64-bit descriptor.
        descriptor: u64,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An operand vector has the wrong number of registers for the form.
    #[error("`{opcode}`: operand {operand} has {got} registers per thread, expected {expected}")]
    OperandCount {
        /// The full opcode.
        opcode: String,
        /// Which operand (`a`, `b`, `c`, `d`).
        operand: &'static str,
        /// Registers given.
        got: usize,
        /// Registers the form needs.
        expected: usize,
    },
}
