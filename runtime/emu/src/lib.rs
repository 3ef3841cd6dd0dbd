//! tilekit-emu: a PTX emulator and sanitizer.
//!
//! Parses PTX text and executes a kernel over a grid on the CPU: blocks of warps of 32 lanes,
//! per-lane registers and predicates, the param, global, shared and local state spaces, with a
//! sanitizer for out-of-bounds accesses, shared-memory races and asynchronous-copy hazards.
//! It is written from the PTX ISA and never from tilekit's code generator: its value is that it
//! is an independent reading of the ISA.
//!
//! # Running a kernel
//! Parse the PTX, put the kernel's buffers in a [`GlobalMemory`], lay out its parameters, and
//! launch. A launch with sanitizer findings is an error that names the kernel, the PTX line and
//! instruction, the thread and the address; a clean one returns a [`Report`] with the executed
//! warp-instructions by class.
//!
//! ```
//! use tilekit_emu::{Emulator, GlobalMemory, LaunchConfig};
//!
//! let ptx = r"
//! .version 8.0
//! .target sm_80
//! .address_size 64
//! .visible .entry scale(.param .u64 x, .param .f32 s)
//! {
//!     .reg .b32 %r<2>;
//!     .reg .f32 %f<3>;
//!     .reg .b64 %rd<4>;
//!     ld.param.u64 %rd1, [x];
//!     ld.param.f32 %f1, [s];
//!     mov.u32 %r1, %tid.x;
//!     mul.wide.u32 %rd2, %r1, 4;
//!     add.s64 %rd3, %rd1, %rd2;
//!     ld.global.f32 %f2, [%rd3];
//!     mul.f32 %f2, %f2, %f1;
//!     st.global.f32 [%rd3], %f2;
//!     ret;
//! }";
//! let emu = Emulator::new(ptx)?;
//! let mut memory = GlobalMemory::new();
//! let x: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
//! let base = memory.alloc("x", x);
//! let params = emu.param_buffer("scale", &[base.to_le_bytes().to_vec(), 2.5f32.to_le_bytes().to_vec()])?;
//! let report = emu.launch("scale", &LaunchConfig::new([1, 1, 1], [64, 1, 1]), &params, &mut memory)?;
//! let out = &memory.get(base).unwrap().data;
//! assert_eq!(f32::from_le_bytes(out[12..16].try_into().unwrap()), 7.5);
//! assert_eq!(report.profile.total, 2 * 9); // two warps, nine instructions each
//! # Ok::<(), tilekit_emu::EmuError>(())
//! ```
//!
//! Through the `tilekit` runtime, `Device::emulator("sm_80")` (or `--device emu:sm_90a` on the
//! command line) compiles kernels to PTX as for a GPU and runs them here with the same tensors
//! and argument checks.

pub mod asynchrony;
pub mod banks;
pub mod error;
pub mod exec;
pub mod launch;
pub mod machine;
pub mod memory;
pub mod ptx;
pub mod sanitizer;
pub mod tensor_core;

pub use banks::SharedAccessStats;
pub use error::{EmuError, EmuResult};
pub use launch::{Emulator, LaunchConfig, Report};
pub use memory::GlobalMemory;
