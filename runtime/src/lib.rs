//! # tilekit
//!
//! Tiled GPU kernels in Rust. Kernels are Rust functions marked [`kernel`], written with the
//! typed DSL of [`dsl`] (register tiles, shared tiles, global views; shapes, dtypes and layouts in
//! the types, so mistakes are rustc errors at the author's line). The macro turns the body into
//! a builder of Tile IR ([`ir`]); the kernel's typed launcher runs it on a [`Device`] (today the
//! CPU interpreter, which defines what every op means).
//!
//! ```
//! use tilekit::dsl::*;
//! use tilekit::ir::interp::HostTensor;
//! use tilekit::ir::ScalarType::F32;
//!
//! /// `y = 2·x` over 16-element chunks, one block per chunk.
//! #[tilekit::kernel(warps = 1)]
//! fn double(x: Gl<f32, 1>, y: GlMut<f32, 1>) {
//!     let i = block_idx_x();
//!     let v: Rv<f32, 16> = load(x.chunk(i));
//!     store(y.chunk(i), v * 2.0);
//! }
//!
//! let x = HostTensor::new(F32, &[20], &(0..20).map(f64::from).collect::<Vec<_>>()).unwrap();
//! let mut y = HostTensor::zeros(F32, &[20]);
//! double::launch(&tilekit::Device::Cpu, 2, &x, &mut y).unwrap();
//! assert_eq!(y.to_vec()[19], 38.0);
//! ```
//!
//! The kernel library [`kernels`] (GEMM, attention, softmax, AdamW, MoE, warp-specialized GEMM)
//! is written in the DSL. Kernels register themselves ([`registry`]); the `tilekit` command
//! ([`cli`]) lists and self-tests them, and with the `jit` feature (on by default: it links the
//! compiler, `tilekit-codegen`, LLVM and MLIR) prints any stage of their compilation for a GPU
//! target (`tilekit emit`) and ptxas's resource report and SASS mix (`tilekit check`), and
//! compiles all of them ahead of time into a [`Bundle`] (`tilekit bundle`), which a build
//! without `jit` loads.

/// The compiler (feature `jit`): targets, stages, resource reports.
#[cfg(feature = "jit")]
pub use tilekit_codegen as codegen;
pub use tilekit_ir as ir;

// The kernel library uses the macros, whose expansions name `::tilekit`.
extern crate self as tilekit;

pub mod bundle;
pub mod cli;
pub mod device;
pub mod dsl;
pub mod kernels;
pub mod launch;
pub mod registry;
pub mod tensor;

pub use bundle::{Bundle, BundleError};
pub use device::{Device, Event};
pub use launch::{Error, Grid, LaunchArg, ScalarArg, TensorArg};
pub use registry::{KernelInfo, Variant};
pub use tensor::{Element, Tensor};
pub use tilekit_macros::{func, kernel};

/// `half`'s `bf16` and `f16`, the element types of 16-bit [`Tensor`]s.
pub use half;
#[doc(hidden)]
pub use inventory;

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
