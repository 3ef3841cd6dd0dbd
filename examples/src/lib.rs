//! # tilekit examples: the acceptance kernels
//!
//! Six kernels written the way a GPU kernel author writes them (ThunderKittens style: 16×16-multiple
//! register tiles per warp, shared tiles per block, explicit barriers and semaphores), built with
//! [`FuncBuilder`](tilekit::ir::FuncBuilder). Rust is the meta-language: tile sizes, warp counts
//! and flags such as `causal` are plain Rust parameters of the `build` functions, and loops over
//! them unroll at build time; loops over runtime extents (K, the KV sequence) become IR `for` loops.
//!
//! | module | kernel | what it shows |
//! |---|---|---|
//! | [`gemm`] | `C = A·B` | shared-memory staging with `copy @block` + `barrier`, `mma.ab`, a runtime K loop, masked edges |
//! | [`attention`] | FlashAttention forward | online softmax in the exp2 domain, `mask.cols` / `mask.causal`, LSE |
//! | [`softmax`] | row softmax | two passes over column tiles, `-inf` padding |
//! | [`adamw`] | AdamW step | vector maps over a flat buffer, masked tail |
//! | [`moe`] | mixture-of-experts up-projection | `gather_rows`, `bcast_row.mul`, `scatter_add_rows` |
//! | [`ws_gemm`] | warp-specialized GEMM | a producer warp, a ring of shared stages, full/empty semaphores |
//!
//! Each module has a `build` function (config → `Module`), a `run`
//! function that launches the kernel for host tensors (computing the grid from their shapes) on
//! the CPU interpreter, or on the device [`run_on`] chose, and a `reference` function: the same
//! math in plain Rust `f64`, written from the definition (no tiling, no online tricks). The tests
//! in `tests/tests/interp_*.rs` compare them.

pub mod adamw;
pub mod attention;
pub mod gemm;
pub mod moe;
pub mod softmax;
pub mod tiling;
pub mod ws_gemm;

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
            // The example kernels take no pointer tables.
            Arg::Table(_) => unreachable!("the examples pass no pointer tables"),
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
    use tilekit::ir::{verify, Module, ScalarType};

    use super::*;

    fn assert_verifies(what: &str, m: &Module) {
        if let Err(errors) = verify(m) {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            panic!("{what} does not verify:\n{}", text.join("\n"));
        }
    }

    #[test]
    fn every_kernel_verifies_in_its_configurations() {
        for out in [ScalarType::F32, ScalarType::BF16] {
            for (warps_m, warps_n) in [(2, 2), (4, 1), (1, 1)] {
                let cfg = gemm::GemmConfig {
                    warps_m,
                    warps_n,
                    out,
                    ..Default::default()
                };
                assert_verifies(&format!("{cfg:?}"), &gemm::build(&cfg));
            }
            for causal in [false, true] {
                for head_dim in [64, 128] {
                    let cfg = attention::AttentionConfig {
                        causal,
                        head_dim,
                        out,
                        ..Default::default()
                    };
                    assert_verifies(&format!("{cfg:?}"), &attention::build(&cfg));
                }
            }
            for consumers in [2, 4] {
                let cfg = ws_gemm::WsGemmConfig {
                    consumers,
                    out,
                    ..Default::default()
                };
                assert_verifies(&format!("{cfg:?}"), &ws_gemm::build(&cfg));
            }
        }
        for input in [ScalarType::F32, ScalarType::BF16] {
            let cfg = softmax::SoftmaxConfig {
                input,
                ..Default::default()
            };
            assert_verifies(&format!("{cfg:?}"), &softmax::build(&cfg));
        }
        assert_verifies("adamw", &adamw::build(&Default::default()));
        assert_verifies("moe", &moe::build(&Default::default()));
        for fault in [
            ws_gemm::WsFault::ConsumerSkipsFullWait,
            ws_gemm::WsFault::ProducerNeverArrives,
        ] {
            let cfg = ws_gemm::WsGemmConfig {
                fault,
                ..Default::default()
            };
            // The faults are synchronization bugs, not type errors: only running finds them.
            assert_verifies(&format!("{cfg:?}"), &ws_gemm::build(&cfg));
        }
    }
}
