//! The `hip` device against a fake HIP runtime (`tests/fake_hip/libamdhip64.c`, built here with
//! `cc`): loading the library, memory, code objects compiled for `TILEKIT_HIP_ARCH` or taken from
//! an attached AMD bundle, the launch's argument buffer, events — without ROCm or an AMD GPU.
//! (What real HIP does is not tested here: no AMD hardware is available to this project.)

// The kernels reach the fake device compiled by the jit (a runtime-only build has no compiler).
#![cfg(feature = "jit")]

mod fake_driver;

use fake_driver::axpb;

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::ScalarType::F32;
use tilekit::{Bundle, Device, ScalarArg, Tensor};

/// Bundled below with `axpb`'s code object, so a launch that took the bundle cannot find it.
#[tilekit::kernel(warps = 1)]
fn mislabeled(y: GlMut<f32, 1>) {
    let i = block_idx_x();
    let v: Rv<f32, 16> = load(y.chunk(i));
    store(y.chunk(i), v + v);
}

#[test]
fn the_hip_device_runs_against_a_fake_runtime() {
    if fake_driver::is_child() {
        return child();
    }
    let (_, stderr) = fake_driver::run_child(
        "fake_hip/libamdhip64.c",
        "libamdhip64.so",
        "the_hip_device_runs_against_a_fake_runtime",
        &[("TILEKIT_HIP_ARCH", "gfx942")],
    );
    // A 64-bit ELF code object; one wave of 64 lanes per block.
    assert!(stderr.contains("fake-hip: load ELF class 2"), "{stderr}");
    assert!(
        stderr.contains("fake-hip: launch axpb grid 3,1,1 block 64,1,1 shared 0"),
        "{stderr}"
    );
}

fn child() {
    let gpu = Device::hip(0).expect("the fake runtime opens");
    assert_eq!(gpu.describe(), "hip:0 Fake MI300X");
    let n = 40usize;
    let xs: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 7.0).collect();
    let want: Vec<f64> = xs.iter().map(|x| -0.25 * x + 3.0).collect();
    let (a, b) = (ScalarArg::from(-0.25f32), ScalarArg::from(3i32));

    let x = tilekit::ir::interp::HostTensor::new(F32, &[n], &xs).unwrap();
    let mut y = tilekit::ir::interp::HostTensor::full(F32, &[n], f64::NAN);
    axpb::launch(&gpu, 3, &x, &mut y, a, b).unwrap();
    assert_eq!(y.to_vec(), want, "host tensors");

    let tx = Tensor::from_f64(F32, &[n], &xs, &gpu).unwrap();
    let mut ty = Tensor::full(F32, &[n], f64::NAN, &gpu).unwrap();
    assert_eq!(ty.device_name(), "hip:0");
    let start = gpu.record_event().unwrap();
    axpb::launch(&gpu, 3, &tx, &mut ty, a, b).unwrap();
    let end = gpu.record_event().unwrap();
    assert_eq!(start.elapsed_ms(&end).unwrap(), 2.5);
    assert_eq!(ty.to_f64_vec().unwrap(), want, "device tensors");

    // Device-to-device copies, of whole tensors and of contiguous views.
    let mut copy = Tensor::zeros(F32, &[n], &gpu).unwrap();
    copy.copy_from(&ty, &gpu).unwrap();
    assert_eq!(copy.to_f64_vec().unwrap(), want, "copy_from");
    let mut head = copy.narrow(0, 0, 8).unwrap();
    head.copy_from(&tx.narrow(0, 32, 8).unwrap(), &gpu).unwrap();
    assert_eq!(
        copy.to_f64_vec().unwrap()[..8],
        xs[32..40],
        "copy_from between views"
    );
    assert_eq!(
        copy.to_f64_vec().unwrap()[8..],
        want[8..],
        "outside the view"
    );

    // An AMD bundle is taken before compiling: `mislabeled` bundled with `axpb`'s code object
    // (and `mislabeled`'s Tile IR hash) fails to find its entry there.
    let axpb_module = axpb::module();
    let compiled = tilekit::codegen::compile(axpb_module, "axpb", Target::Gfx942).unwrap();
    let mut k = tilekit::bundle::kernel_from_compiled(axpb_module, "axpb", "", &compiled).unwrap();
    assert!(k.code_object.is_some());
    k.name = "mislabeled".into();
    k.params.truncate(1);
    k.params[0].name = "y".into();
    k.ir_hash = tilekit::device::ir_hash(mislabeled::module(), "mislabeled");
    let e = gpu
        .attach_bundle(Bundle {
            target: "gfx90a".into(),
            kernels: vec![k.clone()],
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("the bundle holds code for gfx90a"), "{e}");
    gpu.attach_bundle(Bundle {
        target: "gfx942".into(),
        kernels: vec![k],
    })
    .unwrap();
    let e = mislabeled::launch(&gpu, 1, &mut ty)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hipModuleGetFunction"), "{e}");
    assert!(e.contains("hipErrorNotFound"), "{e}");

    println!("child: all checks passed");
}
