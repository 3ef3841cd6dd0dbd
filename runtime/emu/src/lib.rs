//! tilekit-emu: a PTX emulator and sanitizer.
//!
//! Parses PTX text and executes a kernel over a grid on the CPU: blocks of warps of 32 lanes,
//! per-lane registers and predicates, the param, global, shared and local state spaces, with a
//! sanitizer for out-of-bounds accesses, shared-memory races and asynchronous-copy hazards.
//! It is written from the PTX ISA and never from tilekit's code generator: its value is that it
//! is an independent reading of the ISA.

pub mod asynchrony;
pub mod error;
pub mod exec;
pub mod launch;
pub mod machine;
pub mod memory;
pub mod ptx;
pub mod sanitizer;
pub mod tensor_core;

pub use error::{EmuError, EmuResult};
pub use launch::{Emulator, LaunchConfig, Report};
pub use memory::GlobalMemory;
