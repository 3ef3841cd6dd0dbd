//! The `cuda` device against a fake driver (`tests/fake_cuda/libcuda.c`, built here with `cc`):
//! the runtime's whole path — loading libcuda, the context, memory, JIT-compiled PTX loaded as a
//! module, the parameter buffer of a launch, write-back of host tensors, device tensors, the JIT
//! log of a rejected module, launch failures, events — on a machine without a GPU.
//!
//! The fake runs `axpb` from the ABI values it receives (pointers, sizes, strides, scalars), so a
//! wrong parameter buffer gives wrong numbers. glibc reads `LD_LIBRARY_PATH` once at start, so the
//! test re-runs itself as a child process with the fake first on the path.

// The kernels reach the fake device compiled by the jit (a runtime-only build has no compiler).
#![cfg(feature = "jit")]

mod fake_driver;

use fake_driver::axpb;

use tilekit::dsl::*;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::{Bundle, Device, Error, ScalarArg, Tensor};

/// A kernel whose launch the fake driver fails.
#[tilekit::kernel(warps = 1)]
fn explode(y: GlMut<f32, 1>) {
    let i = block_idx_x();
    let v: Rv<f32, 16> = load(y.chunk(i));
    store(y.chunk(i), v + v);
}

/// A kernel the test bundles with PTX the fake driver rejects.
#[tilekit::kernel(warps = 1)]
fn rejected(y: GlMut<f32, 1>) {
    let i = block_idx_x();
    let v: Rv<f32, 16> = load(y.chunk(i));
    store(y.chunk(i), v * v);
}

#[test]
fn the_cuda_device_runs_against_a_fake_driver() {
    if fake_driver::is_child() {
        return child();
    }
    let (_, stderr) = fake_driver::run_child(
        "fake_cuda/libcuda.c",
        "libcuda.so",
        "the_cuda_device_runs_against_a_fake_driver",
        &[("FAKE_CUDA_NOOP", "1"), ("TILEKIT_CUBLAS", "off")],
    );
    // What the driver saw: sm_90a PTX for a compute capability 9.0 device; one block of 32
    // threads per 16-element chunk; no dynamic shared memory.
    assert!(
        stderr.contains("fake-cuda: load .target sm_90a"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fake-cuda: launch axpb grid 3,1,1 block 32,1,1 shared 0"),
        "{stderr}"
    );
    assert!(stderr.contains("fake-cuda: launch explode"), "{stderr}");
}

/// `tilekit-gpucheck` on a GPU whose kernels compute nothing (the fake's no-op mode): outputs stay
/// poisoned or stale, and the check reports a mismatch for every kernel and exits 1.
#[test]
fn the_gpu_check_reports_every_mismatch_and_exits_nonzero() {
    if fake_driver::is_child() {
        return;
    }
    let dir = fake_driver::build_library("fake_cuda/libcuda.c", "libcuda.so", "gpucheck");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tilekit-gpucheck"))
        .args(["--device", "cuda"])
        .env("LD_LIBRARY_PATH", &dir)
        .env("FAKE_CUDA_NOOP", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("device: cuda:0 Fake H100"), "{stdout}");
    for kernel in [
        "adamw_step",
        "attention_fwd",
        "gemm",
        "moe_expert_proj",
        "softmax_rows",
        "ws_gemm",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(kernel) && l.ends_with("MISMATCH")),
            "no mismatch reported for {kernel}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("  ok"), "a no-op kernel passed:\n{stdout}");
    assert!(
        stdout.contains(" inf "),
        "poisoned outputs show as infinite error:\n{stdout}"
    );
}

fn child() {
    let gpu = Device::cuda(0).expect("the fake driver opens");
    assert_eq!(gpu.name(), "cuda:0");
    assert!(
        gpu.describe().contains("Fake H100 (sm_90, 132 SMs"),
        "{}",
        gpu.describe()
    );
    assert_eq!(gpu.target().unwrap(), Some("sm_90a"));

    // Host tensors: copied over, launched, copied back.
    let n = 40;
    let xs: Vec<f64> = (0..n).map(|i| f64::from(i) * 0.25 - 3.0).collect();
    let want: Vec<f64> = xs.iter().map(|x| 1.5 * x - 2.0).collect();
    let x = tilekit::ir::interp::HostTensor::new(F32, &[n as usize], &xs).unwrap();
    let mut y = tilekit::ir::interp::HostTensor::full(F32, &[n as usize], f64::NAN);
    axpb::launch(
        &gpu,
        3,
        &x,
        &mut y,
        ScalarArg::from(1.5f32),
        ScalarArg::from(-2i32),
    )
    .unwrap();
    assert_eq!(y.to_vec(), want, "host tensors");

    // The interpreter agrees (the fake's `axpb` is the kernel's meaning).
    let mut y_cpu = tilekit::ir::interp::HostTensor::full(F32, &[n as usize], f64::NAN);
    axpb::launch(
        &Device::Cpu,
        3,
        &x,
        &mut y_cpu,
        ScalarArg::from(1.5f32),
        ScalarArg::from(-2i32),
    )
    .unwrap();
    assert_eq!(y_cpu.to_vec(), want, "interpreter");

    // Device tensors: no copies; read back after the launch.
    let tx = Tensor::from_f64(F32, &[n as usize], &xs, &gpu).unwrap();
    let mut ty = Tensor::full(F32, &[n as usize], f64::NAN, &gpu).unwrap();
    assert_eq!(ty.device_name(), "cuda:0");
    let start = gpu.record_event().unwrap();
    axpb::launch(
        &gpu,
        3,
        &tx,
        &mut ty,
        ScalarArg::from(1.5f32),
        ScalarArg::from(-2i32),
    )
    .unwrap();
    let end = gpu.record_event().unwrap();
    assert_eq!(start.elapsed_ms(&end).unwrap(), 1.5);
    assert_eq!(ty.to_f64_vec().unwrap(), want, "device tensors");
    let mut copy = Tensor::zeros(F32, &[n as usize], &gpu).unwrap();
    copy.copy_from(&ty, &gpu).unwrap();
    assert_eq!(copy.to_f64_vec().unwrap(), want, "device-to-device copy");
    let back = ty.to(&Device::Cpu).unwrap();
    assert_eq!(back.to_f64_vec().unwrap(), want);

    // A device tensor on the cpu device is an error naming the parameter and both devices.
    let e = axpb::launch(
        &Device::Cpu,
        3,
        &tx,
        &mut y,
        ScalarArg::from(1.0f32),
        ScalarArg::from(0i32),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("argument `x` lives on cuda:0, but the launch is on cpu"),
        "{e}"
    );

    // The dynamic API on the GPU, with an integer tensor refused for `x`.
    let mut args = vec![
        tilekit::LaunchArg::from(&tx),
        tilekit::LaunchArg::from(&ty),
        tilekit::LaunchArg::scalar::<f32>(0.5f32),
        tilekit::LaunchArg::scalar::<i32>(1),
    ];
    gpu.launch_by_name("axpb", "", 3, &mut args).unwrap();
    let want2: Vec<f64> = xs.iter().map(|x| 0.5 * x + 1.0).collect();
    assert_eq!(ty.to_f64_vec().unwrap(), want2, "launch_by_name");
    let ti = Tensor::zeros(I32, &[n as usize], &gpu).unwrap();
    args[0] = tilekit::LaunchArg::from(&ti);
    let e = gpu
        .launch_by_name("axpb", "", 3, &mut args)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("argument `x` must be a f32 tensor of rank 1"),
        "{e}"
    );

    // A failed launch names the kernel, the device and the configuration.
    let mut z = Tensor::zeros(F32, &[16], &gpu).unwrap();
    let e = explode::launch(&gpu, 1, &mut z).unwrap_err();
    assert!(matches!(e, Error::Launch { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("@explode on cuda:0 Fake H100"), "{e}");
    assert!(e.contains("grid [1, 1, 1] × 32 threads"), "{e}");
    assert!(e.contains("CUDA_ERROR_LAUNCH_FAILED"), "{e}");

    // Code the driver rejects: the JIT log comes back in the error.
    let module = rejected::module();
    let k = tilekit::bundle::BundleKernel {
        name: "rejected".into(),
        variant: String::new(),
        code_file: "rejected.ptx".into(),
        ptx: ".version 8.3\n.target sm_90a\n// FAKE_REJECT\n.visible .entry rejected(\n)\n{\n}\n"
            .into(),
        code_object: None,
        params: vec![tilekit::bundle::BundleParam {
            name: "y".into(),
            dtype: F32,
            kind: tilekit::bundle::ParamKind::Global {
                rank: 1,
                mutable: true,
            },
        }],
        block_threads: 32,
        shared_bytes: 0,
        dynamic_shared: false,
        ir_hash: tilekit::device::ir_hash(module, "rejected"),
        aligned16: Vec::new(),
        tensor_maps: Vec::new(),
    };
    gpu.attach_bundle(Bundle {
        target: "sm_90a".into(),
        kernels: vec![k.clone()],
    })
    .unwrap();
    let e = rejected::launch(&gpu, 1, &mut z).unwrap_err();
    assert!(matches!(e, Error::Jit { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("CUDA_ERROR_INVALID_PTX"), "{e}");
    assert!(e.contains("ptxas fatal: fake rejection of line 7"), "{e}");

    // A bundle for a target this device cannot run is refused when attached.
    let e = gpu
        .attach_bundle(Bundle {
            target: "gfx942".into(),
            kernels: vec![],
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("the bundle holds code for gfx942"), "{e}");

    // Views on the GPU: the launch passes the view's first element's address; elements
    // outside the output window stay as they were; a transposed view reads back in its order.
    let xs_big: Vec<f64> = (0..n + 7).map(|i| f64::from(i) - 10.0).collect();
    let x_big = Tensor::from_f64(F32, &[n as usize + 7], &xs_big, &gpu).unwrap();
    let y_big = Tensor::full(F32, &[n as usize + 9], 5.0, &gpu).unwrap();
    let xv = x_big.narrow(0, 7, n as usize).unwrap();
    let mut yv = y_big.narrow(0, 4, n as usize).unwrap();
    axpb::launch(
        &gpu,
        3,
        &xv,
        &mut yv,
        ScalarArg::from(2.0f32),
        ScalarArg::from(1i32),
    )
    .unwrap();
    let got = y_big.to_f64_vec().unwrap();
    for (i, &g) in got.iter().enumerate() {
        let want = if (4..4 + n as usize).contains(&i) {
            2.0 * xs_big[i - 4 + 7] + 1.0
        } else {
            5.0
        };
        assert_eq!(g, want, "y_big[{i}]");
    }
    // An output overlapping an input is refused before the launch, naming both; the memory
    // is untouched. An empty view at an offset is a valid argument.
    let before = x_big.to_f64_vec().unwrap();
    let mut overlapping = x_big.narrow(0, 3, n as usize).unwrap();
    let e = axpb::launch(
        &gpu,
        3,
        &x_big.narrow(0, 0, n as usize).unwrap(),
        &mut overlapping,
        ScalarArg::from(2.0f32),
        ScalarArg::from(1i32),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Overlap { .. }), "{e}");
    assert!(
        e.to_string().contains("`y`") && e.to_string().contains("`x`"),
        "{e}"
    );
    assert_eq!(x_big.to_f64_vec().unwrap(), before);
    let mut empty_1d = Tensor::zeros(F32, &[4], &gpu)
        .unwrap()
        .narrow(0, 4, 0)
        .unwrap();
    axpb::launch(
        &gpu,
        1,
        &x_big.narrow(0, n as usize + 7, 0).unwrap(),
        &mut empty_1d,
        ScalarArg::from(2.0f32),
        ScalarArg::from(1i32),
    )
    .unwrap();
    let m = Tensor::from_f64(F32, &[2, 3], &[0., 1., 2., 3., 4., 5.], &gpu).unwrap();
    let mt = m.transpose(0, 1).unwrap();
    assert_eq!(mt.to_f64_vec().unwrap(), [0., 3., 1., 4., 2., 5.]);
    let e = copy.copy_from(&xv, &gpu);
    assert!(e.is_ok(), "contiguous views copy on the device: {e:?}");
    assert_eq!(copy.to_f64_vec().unwrap(), xs_big[7..].to_vec());

    // The benchmark harness runs end to end at smoke sizes (the fake runs its kernels as no-ops
    // and times every run at 1.5 ms): every row is there, no group failed, and the missing
    // baseline is said.
    let table = tilekit::bench::run_with(&gpu, 20, tilekit::bench::Sizes::Smoke).unwrap();
    assert!(!table.contains("FAILED"), "{table}");
    // (row, how many at smoke sizes)
    let rows = [
        ("copy (ceiling)", 1),
        ("gemm <bf16,64,64,32,32,32>", 3),
        ("ws_gemm <f32,64,64,32,32,2>", 3),
        ("softmax_rows <bf16>", 2),
        ("adamw_step <256,4>", 2),
        // Three head dims, two lengths, causal and not.
        ("attention fwd hd64  ", 2),
        ("attention fwd hd64 causal", 2),
        ("attention fwd hd128  ", 2),
        ("attention fwd hd128 causal", 2),
        ("attention fwd hd256  ", 2),
        ("attention fwd hd256 causal", 2),
        ("attention bwd hd64  ", 2),
        ("attention bwd hd64 causal", 2),
        ("attention bwd hd128  ", 2),
        ("attention bwd hd128 causal", 2),
        ("attention decode hd64 page16", 1),
        ("attention decode hd128 page32", 1),
        ("AdamW multi-tensor (model)", 1),
        ("8-bit AdamW multi-tensor (model)", 1),
        ("clip_grad_norm multi-tensor (model)", 1),
        ("AdamW  ", 1),
        ("AdamW mixed (bf16 grads + model)", 1),
        ("Lion", 1),
        ("Adam-mini (per output neuron)", 1),
        ("8-bit AdamW (blockwise 256)", 1),
        ("cross-entropy fwd+bwd <bf16>", 2),
        ("linear cross-entropy fwd+bwd", 1),
        ("Muon step (NS5, bf16)", 2),
        ("Shampoo step (roots every step)", 1),
        // Three models at one token count.
        ("MoE routing + permutation", 3),
        ("MoE gather (permute x)", 3),
        ("MoE grouped gate/up + SwiGLU", 3),
        ("MoE grouped down", 3),
        ("MoE layer forward (all kernels)", 3),
    ];
    for (row, count) in rows {
        let found = table.lines().filter(|l| l.starts_with(row)).count();
        assert_eq!(found, count, "`{row}` in\n{table}");
    }
    for text in [
        "cuBLAS baseline unavailable: cuBLAS disabled",
        "library GEMM baselines (the fastest variant per shape):",
        "median of 20 runs",
    ] {
        assert!(table.contains(text), "no `{text}` in\n{table}");
    }
    // Every row timed (1.5 ms each), and the rows compared with the library GEMM say so: the
    // linear cross-entropy, two Muon shapes, Shampoo and two grouped GEMMs per model.
    let total: usize = rows.iter().map(|(_, n)| n).sum();
    assert_eq!(table.matches(" 1.500 ").count(), total, "{table}");
    assert_eq!(
        table.matches("× gemm ").count(),
        1 + 2 + 1 + 2 * 3,
        "{table}"
    );

    println!("child: all checks passed");
}

/// Tensor maps on CUDA come from the driver's `cuTensorMapEncodeTiled`, given the view in TMA's
/// terms (innermost first, byte strides, the box, the swizzle); a map the driver refuses is an
/// error naming the call.
#[test]
fn tensor_maps_are_encoded_by_the_driver() {
    if fake_driver::is_child() {
        return tensor_map_child();
    }
    let (_, stderr) = fake_driver::run_child(
        "fake_cuda/libcuda.c",
        "libcuda.so",
        "tensor_maps_are_encoded_by_the_driver",
        &[],
    );
    // bf16 is CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 (9); 128-byte swizzle is 3; zero fill is 0.
    assert!(
        stderr.contains(
            "fake-cuda: tensor map dtype 9 rank 2 dims 100,70 strides 256 box 64,8 interleave 0 swizzle 3"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("oob 0"), "{stderr}");
}

fn tensor_map_child() {
    use tilekit::tensor_map::{TensorMapDesc, TensorMapError, TmaSwizzle};
    let gpu = Device::cuda(0).expect("the fake driver opens");
    // 100 columns of a 70×128 bf16 buffer, starting 8 columns (16 bytes) in.
    let whole = Tensor::zeros(tilekit::ir::ScalarType::BF16, &[70, 128], &gpu).unwrap();
    let view = whole.narrow(1, 8, 100).unwrap();
    let address = view.device_ptr().unwrap();
    let desc = TensorMapDesc::for_view(
        view.dtype(),
        address,
        view.shape(),
        view.strides(),
        &[8, 64],
        TmaSwizzle::B128,
    )
    .unwrap();
    let image = desc.encode(&gpu).unwrap();
    assert_eq!(&image.0[..8], b"FAKETMAP");
    assert_eq!(
        image.0[8..16],
        address.to_le_bytes(),
        "the map embeds the view's address"
    );
    // A stride the runtime would refuse, given to the driver directly: its refusal is reported.
    let mut bad = desc.clone();
    bad.strides = vec![200];
    let e = bad.encode(&gpu).unwrap_err();
    assert!(
        matches!(&e, TensorMapError::Driver { message, .. } if message.contains("CUDA_ERROR_INVALID_VALUE")),
        "{e}"
    );
    assert!(
        e.to_string().contains("cuTensorMapEncodeTiled on cuda:0"),
        "{e}"
    );
    println!("child: all checks passed");
}

/// Square roots of 16-element chunks, which must not be negative; the fake driver traps every
/// `trap_` kernel as a failed assert would.
#[tilekit::kernel(warps = 1)]
fn trap_negative(x: Gl<f32, 1>, y: GlMut<f32, 1>) {
    let i = block_idx_x();
    let v: Rv<f32, 16> = load(x.chunk(i));
    device_assert(v.ge(0.0), "x must not be negative");
    store(y.chunk(i), v.sqrt());
}

/// A failed `device_assert` on a GPU: the module's record pointer is set to host-mapped pinned
/// memory after loading, and the trap's error (from the synchronization that sees it, or from a
/// launch on the trapped context) names the message, the block and the thread the record holds.
#[test]
fn a_failed_device_assert_is_read_from_host_mapped_memory() {
    if fake_driver::is_child() {
        return trap_child();
    }
    let (_, stderr) = fake_driver::run_child(
        "fake_cuda/libcuda.c",
        "libcuda.so",
        "a_failed_device_assert_is_read_from_host_mapped_memory",
        &[],
    );
    assert!(
        stderr.contains("fake-cuda: global __tilekit_assert_record"),
        "{stderr}"
    );
    // A kernel without an assert declares no record.
    assert_eq!(stderr.matches("fake-cuda: global").count(), 1, "{stderr}");
}

fn trap_child() {
    let gpu = Device::cuda(0).expect("the fake driver opens");
    let record = "device_assert failed: x must not be negative (block (2, 0, 0), thread 31)";
    let xs: Vec<f64> = (0..48).map(|i| f64::from(i) - 40.0).collect();
    let tx = Tensor::from_f64(F32, &[48], &xs, &gpu).unwrap();
    let mut ty = Tensor::zeros(F32, &[48], &gpu).unwrap();
    // An assert-free kernel first: its module has no record to map.
    let zx = Tensor::zeros(F32, &[16], &gpu).unwrap();
    let mut zy = Tensor::zeros(F32, &[16], &gpu).unwrap();
    axpb::launch(&gpu, 1, &zx, &mut zy, 1.0f32.into(), 0i32.into()).unwrap();
    // Device tensors: the launch returns; the trap shows at the next synchronization.
    trap_negative::launch(&gpu, 3, &tx, &mut ty).expect("the launch itself succeeds");
    let e = gpu.synchronize().unwrap_err();
    assert!(matches!(e, Error::Driver { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("CUDA_ERROR_LAUNCH_FAILED"), "{e}");
    assert!(e.contains(&format!("@trap_negative: {record}")), "{e}");
    // A launch on the trapped context fails; its error names the recorded assert.
    let x = tilekit::ir::interp::HostTensor::new(F32, &[48], &xs).unwrap();
    let mut y = tilekit::ir::interp::HostTensor::zeros(F32, &[48]);
    let e = trap_negative::launch(&gpu, 3, &x, &mut y).unwrap_err();
    assert!(matches!(e, Error::Launch { .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains(&format!("{record} (")), "{e}");
    assert!(e.contains("CUDA_ERROR_LAUNCH_FAILED"), "{e}");
    println!("child: all checks passed");
}
