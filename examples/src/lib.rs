//! # tilekit examples: building Tile IR without the DSL
//!
//! The tutorials (`examples/examples/NN_*.rs`, run with `cargo run -p tilekit-examples --example
//! NN_name`) and the library (`tilekit::kernels`) write kernels in the DSL. This crate's library is
//! the one example for those who generate Tile IR themselves — from another front end, a search
//! over schedules, a code generator — with [`FuncBuilder`](tilekit::ir::FuncBuilder): [`gemm`]
//! builds the tiled GEMM `C = A·B` op by op (shared-memory staging with `copy @block` and
//! `barrier`, `mma.ab`, a runtime K loop, masked edges), and [`tiling`] has the helpers it needs
//! (`⌈n / tile⌉` in IR, exact up to `i32::MAX`, and the swizzle for a tile's row width). Rust is
//! the meta-language: tile sizes and warp counts are plain parameters of [`gemm::build`], and loops
//! over them unroll at build time; the loop over the runtime K becomes an IR `for` loop.
//!
//! [`gemm::run`] launches the built module for host tensors on the CPU interpreter (or on the
//! device [`run_on`] chose) and [`gemm::reference`] is the same product in `f64`; the tutorial
//! `09_ir_builder` walks through them, and `tests/tests/interp_gemm.rs` compares them.
//!
//! `make demo` (the `demo` and `gpu_targets` binaries) is the tour of the library's kernels.

pub mod gemm;
pub mod tiling;

use std::sync::OnceLock;

use tilekit::ir::interp::{self, Arg, HostTensor, InterpError, Launch};
use tilekit::ir::{Module, ScalarType};
use tilekit::{Device, LaunchArg};

/// The device the `run` functions use, once chosen.
static DEVICE: OnceLock<Device> = OnceLock::new();

/// Makes every `run` function of this crate launch on `device` from now on (the demo picks
/// `Device::best()`); without a call they run on the interpreter. Returns `false` when a device
/// was already chosen (the first choice stays).
pub fn run_on(device: Device) -> bool {
    DEVICE.set(device).is_ok()
}

/// The device `run` functions launch on.
pub fn device() -> Device {
    DEVICE.get().cloned().unwrap_or_default()
}

/// Launches `kernel` of `module` with the interpreter's arguments on the chosen device: the
/// interpreter (with `launch`'s warp schedule), or a GPU, where the kernel is compiled on first
/// launch (feature `jit`) and host tensors are copied over and back. A GPU failure comes back as
/// an argument error carrying the runtime's message.
pub(crate) fn execute(
    module: &Module,
    kernel: &str,
    launch: Launch,
    args: &mut [Arg],
) -> Result<(), InterpError> {
    let device = device();
    if device == Device::Cpu {
        return interp::run_with(module, kernel, launch, args).map(|_| ());
    }
    let mut launch_args: Vec<LaunchArg> = args
        .iter()
        .map(|a| match a {
            Arg::Tensor(t) => LaunchArg::Host(t.clone()),
            Arg::Scalar(dtype, v) => LaunchArg::Scalar(*dtype, *v),
            // The GEMM takes no pointer tables.
            Arg::Table(_) => unreachable!("the GEMM takes no pointer tables"),
        })
        .collect();
    device
        .launch_module(module, kernel, launch.grid, &mut launch_args)
        .map_err(|e| InterpError::Argument {
            message: format!("on {}: {e}", device.name()),
        })?;
    for (a, back) in args.iter_mut().zip(launch_args) {
        if let (Arg::Tensor(t), LaunchArg::Host(h)) = (a, back) {
            *t = h;
        }
    }
    Ok(())
}

/// The error for host inputs that do not fit a kernel (shapes that disagree, a wrong dtype).
fn bad_input(kernel: &str, message: impl std::fmt::Display) -> InterpError {
    InterpError::Argument {
        message: format!("@{kernel}: {message}"),
    }
}

/// Checks that `t` has `dtype` and rank `rank`; `what` names it in the error.
fn expect_tensor(
    kernel: &str,
    what: &str,
    t: &HostTensor,
    dtype: ScalarType,
    rank: usize,
) -> Result<(), InterpError> {
    if t.dtype() != dtype || t.rank() != rank {
        return Err(bad_input(
            kernel,
            format_args!(
                "`{what}` must be a {dtype} tensor of rank {rank}, got a {} tensor of shape {:?}",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// The tensor in kernel argument `i` after a run (the kernel's outputs are updated in place).
fn output(args: &[Arg], i: usize) -> HostTensor {
    match &args[i] {
        Arg::Tensor(t) => t.clone(),
        // Every `run` function passes tensors for its output views.
        Arg::Scalar(..) | Arg::Table(_) => unreachable!("argument {i} is an output tensor"),
    }
}

#[cfg(test)]
mod tests {
    use tilekit::ir::{verify, ScalarType};

    use super::*;

    #[test]
    fn the_gemm_verifies_in_its_configurations() {
        for out in [ScalarType::F32, ScalarType::BF16] {
            for (warps_m, warps_n) in [(2, 2), (4, 1), (1, 1)] {
                let cfg = gemm::GemmConfig {
                    warps_m,
                    warps_n,
                    out,
                    ..Default::default()
                };
                if let Err(errors) = verify(&gemm::build(&cfg)) {
                    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    panic!("{cfg:?} does not verify:\n{}", text.join("\n"));
                }
            }
        }
    }
}
