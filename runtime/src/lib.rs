//! # tilekit
//!
//! Tiled GPU kernels in Rust. Kernels are Rust functions marked [`kernel`], written with the
//! typed DSL of [`dsl`] (register tiles, shared tiles, global views; shapes, dtypes and layouts in
//! the types, so mistakes are rustc errors at the author's line). The macro turns the body into
//! a builder of Tile IR ([`ir`]); the kernel's typed launcher runs it on a [`Device`]: the CPU
//! interpreter, which defines what every op means, or a GPU (`cuda` through the NVIDIA driver,
//! `hip` through ROCm, both loaded at run time), where the kernel is compiled on first launch
//! (feature `jit`) or taken from an AOT [`Bundle`].
//!
//! ```
//! use tilekit::dsl::*;
//! use tilekit::ir::ScalarType::F32;
//! use tilekit::{Device, Tensor};
//!
//! /// `y = 2·x` over 16-element chunks, one block per chunk.
//! #[tilekit::kernel(warps = 1)]
//! fn double(x: Gl<f32, 1>, y: GlMut<f32, 1>) {
//!     let i = block_idx_x();
//!     let v: Rv<f32, 16> = load(x.chunk(i));
//!     store(y.chunk(i), v * 2.0);
//! }
//!
//! let device = Device::Cpu; // or Device::cuda(0)?, or Device::best()
//! let x = Tensor::from_f64(F32, &[20], &(0..20).map(f64::from).collect::<Vec<_>>(), &device)?;
//! let mut y = Tensor::zeros(F32, &[20], &device)?;
//! double::launch(&device, 2, &x, &mut y)?;
//! assert_eq!(y.to_vec::<f32>()?[19], 38.0);
//! # Ok::<(), tilekit::Error>(())
//! ```
//!
//! [`Tensor`]s hold their elements on a device; the launchers also take the interpreter's
//! `HostTensor`s, copying them to a GPU and back. [`Device::launch_by_name`] launches a
//! registered kernel by name and comptime arguments, its arguments checked against the
//! kernel's signature. `docs/GPU.md` explains running on GPUs and the GPU check.
//!
//! What every launch checks, on every device, before anything runs:
//! - the grid: at least one block along each dimension, at most 2³¹ − 1 along x and 65535
//!   along y and z (the GPUs' limits; the cpu keeps them too);
//! - aliasing: a kernel's writable tensor (`GlMut`) must not share an element with any other
//!   tensor argument. The interpreter would read the inputs as they were before the launch
//!   while a GPU reads them as the kernel writes them, so such a launch has no one meaning: it
//!   is refused with [`Error::Overlap`], naming both parameters. Disjoint views of one tensor
//!   (two column windows, say) are fine; so is one input passed twice. Empty views of any
//!   offset are valid arguments and share nothing.
//!
//! The cpu device runs within the interpreter's op and memory budgets, so a runaway grid or
//! loop ends with an error naming the kernel and the budget; [`Device::cpu_with`] takes other
//! budgets and a token that cancels runs ([`device::CpuOptions`]).
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

// The modules, bottom to top (each imports only modules below it; `layering` checks it):
// `error` and `abi` (what compiled code is), `module_cache`; `device` (where kernels run, the
// launch grid and arguments); `tensor`; `launch` (the typed launchers' checks); `registry`;
// `bundle` (files of compiled code), `kernels` (the library), `bench`; `cli` on top. `dsl` is
// the front end, beside them: it names none of them.
pub mod abi;
pub mod bench;
pub mod bundle;
pub mod cli;
pub mod contract;
pub mod device;
pub mod dsl;
pub mod error;
pub mod kernels;
pub mod launch;
#[cfg(test)]
mod layering;
mod module_cache;
pub mod registry;
pub mod tensor;
pub mod tensor_list;
pub mod tensor_map;
#[cfg(feature = "testing")]
pub mod testing;

pub use bundle::{Bundle, BundleError};
pub use device::{Device, Event, Grid, LaunchArg};
pub use error::Error;
pub use launch::{ScalarArg, TensorArg};
pub use registry::{KernelInfo, Variant};
pub use tensor::{Element, Tensor};
pub use tensor_list::TensorList;
pub use tilekit_macros::{func, kernel};

/// `half`'s `bf16` and `f16`, the element types of 16-bit [`Tensor`]s.
pub use half;
#[doc(hidden)]
pub use inventory;

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
