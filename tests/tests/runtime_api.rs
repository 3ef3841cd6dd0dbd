//! The runtime API on the cpu device: tensors, typed and dynamic launches, argument checks, and
//! what a machine without a GPU driver says.

use tilekit::half::bf16;
use tilekit::ir::ScalarType;
use tilekit::kernels::gemm::{gemm, grid as gemm_grid};
use tilekit::{Device, Error, LaunchArg, Tensor};
use tilekit_tests::random::TestRng as Rng;

fn gemm_reference(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|kk| a[i * k + kk] * b[kk * n + j]).sum();
        }
    }
    c
}

fn max_rel(got: &[f64], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()))
        / scale
}

#[test]
fn tensors_round_trip_every_element_type_on_the_cpu() {
    let cpu = Device::Cpu;
    let x = Tensor::from_slice(&[1.5f32, -2.0, 3.25, 0.5, 7.0, -0.125], &[2, 3], &cpu).unwrap();
    assert_eq!(x.shape(), &[2, 3]);
    assert_eq!(x.strides(), &[3, 1]);
    assert_eq!(x.size_bytes(), 24);
    assert_eq!(
        x.to_vec::<f32>().unwrap(),
        [1.5, -2.0, 3.25, 0.5, 7.0, -0.125]
    );
    let h: Vec<bf16> = [0.5f32, -1.0, 3.0].map(bf16::from_f32).to_vec();
    let t = Tensor::from_slice(&h, &[3], &cpu).unwrap();
    assert_eq!(t.dtype(), ScalarType::BF16);
    assert_eq!(t.to_vec::<bf16>().unwrap(), h);
    let i = Tensor::from_slice(&[3i32, -4, 5], &[3], &cpu).unwrap();
    assert_eq!(i.to_bytes().unwrap()[4..8], (-4i32).to_le_bytes());
    // fp8 from its bytes: E4M3 0x38 = 1.0, 0xc0 = -2.0.
    let f8 = Tensor::from_fp8_bytes(ScalarType::F8E4M3, &[0x38, 0xc0], &[2], &cpu).unwrap();
    assert_eq!(f8.to_f64_vec().unwrap(), [1.0, -2.0]);
    assert_eq!(f8.to_bytes().unwrap(), [0x38, 0xc0]);
    let mut y = Tensor::zeros(ScalarType::F32, &[2, 3], &cpu).unwrap();
    y.copy_from(&x, &cpu).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), x.to_vec::<f32>().unwrap());
}

#[test]
fn bad_tensor_requests_are_errors_that_say_what_was_expected() {
    let cpu = Device::Cpu;
    let e = Tensor::from_slice(&[1.0f32, 2.0], &[3], &cpu).unwrap_err();
    assert!(e.to_string().contains("needs 3 values, got 2"), "{e}");
    let x = Tensor::from_slice(&[1.0f32], &[1], &cpu).unwrap();
    let e = x.to_vec::<i32>().unwrap_err();
    assert!(
        e.to_string().contains("to_vec::<i32> of a f32 tensor"),
        "{e}"
    );
    let e = Tensor::from_fp8_bytes(ScalarType::F32, &[0], &[1], &cpu).unwrap_err();
    assert!(e.to_string().contains("wants f8e4m3 or f8e5m2"), "{e}");
    let e = Tensor::zeros(ScalarType::F32, &[1 << 31, 2], &cpu).unwrap_err();
    assert!(e.to_string().contains("larger than kernels index"), "{e}");
    let e = Tensor::from_bytes(ScalarType::F32, &[2], &[0; 7], &cpu).unwrap_err();
    assert!(e.to_string().contains("is 8 bytes, got 7"), "{e}");
    let mut z = Tensor::zeros(ScalarType::F32, &[2], &cpu).unwrap();
    let e = z.copy_from(&x, &cpu).unwrap_err();
    assert!(
        e.to_string()
            .contains("shape [1] into a f32 tensor of shape [2]"),
        "{e}"
    );
}

/// The typed launcher takes `Tensor`s as well as host tensors.
#[test]
fn typed_launchers_take_tensors() {
    let mut rng = Rng::fresh();
    let cpu = Device::Cpu;
    let (m, n, k) = (70, 33, 40);
    let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
    let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
    let want = gemm_reference(&a.to_vec(), &b.to_vec(), m, k, n);
    let (ta, tb) = (
        Tensor::from_host(&a, &cpu).unwrap(),
        Tensor::from_host(&b, &cpu).unwrap(),
    );
    let mut c = Tensor::full(ScalarType::F32, &[m, n], f64::NAN, &cpu).unwrap();
    gemm::<f32, 64, 64, 32, 32, 32>::launch(&cpu, gemm_grid(m, n, 64, 64), &ta, &tb, &mut c)
        .unwrap();
    let err = max_rel(&c.to_f64_vec().unwrap(), &want);
    assert!(err < 1e-5, "error {err:.2e} (seed {})", rng.seed);
}

/// `Device::launch_by_name`: the same GEMM by name and variant, then every kind of bad argument.
#[test]
fn dynamic_launches_check_their_arguments_against_the_signature() {
    let mut rng = Rng::fresh();
    let cpu = Device::Cpu;
    let (m, n, k) = (48, 80, 24);
    let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
    let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
    let want = gemm_reference(&a.to_vec(), &b.to_vec(), m, k, n);
    let c = tilekit::ir::interp::HostTensor::full(ScalarType::F32, &[m, n], f64::NAN);
    let mut args = vec![
        LaunchArg::from(a.clone()),
        LaunchArg::from(b.clone()),
        LaunchArg::from(c.clone()),
    ];
    let grid = gemm_grid(m, n, 64, 64);
    cpu.launch_by_name("gemm", "<f32, 64, 64, 32, 32, 32>", grid, &mut args)
        .unwrap();
    let LaunchArg::Host(out) = &args[2] else {
        panic!("the output came back as {:?}", args[2])
    };
    let err = max_rel(&out.to_vec(), &want);
    assert!(err < 1e-5, "error {err:.2e} (seed {})", rng.seed);

    let launch = |name: &str, variant: &str, mut args: Vec<LaunchArg>| {
        cpu.launch_by_name(name, variant, grid, &mut args)
            .unwrap_err()
            .to_string()
    };
    let v = "<f32,64,64,32,32,32>";
    let e = launch("gemm", "<f32, 1, 2>", vec![]);
    assert!(e.contains("no registered kernel `gemm<f32, 1, 2>`"), "{e}");
    assert!(e.contains("gemm<f32, 64, 64, 32, 32, 32>"), "{e}");
    let e = launch("gemm", v, vec![a.clone().into(), b.clone().into()]);
    assert!(e.contains("must be 3 arguments"), "{e}");
    let wrong_dtype = tilekit::ir::interp::HostTensor::zeros(ScalarType::F32, &[m, k]);
    let e = launch(
        "gemm",
        v,
        vec![wrong_dtype.into(), b.clone().into(), c.clone().into()],
    );
    assert!(
        e.contains("argument `a` must be a bf16 tensor of rank 2"),
        "{e}"
    );
    let wrong_rank = tilekit::ir::interp::HostTensor::zeros(ScalarType::BF16, &[m * k]);
    let e = launch(
        "gemm",
        v,
        vec![wrong_rank.into(), b.clone().into(), c.clone().into()],
    );
    assert!(e.contains("a bf16 tensor of rank 2"), "{e}");
    assert!(e.contains(&format!("shape [{}]", m * k)), "{e}");
    let e = launch(
        "gemm",
        v,
        vec![a.clone().into(), a.clone().into(), c.clone().into()],
    );
    assert!(e.starts_with("@gemm:"), "{e}");
    let e = launch(
        "gemm",
        v,
        vec![
            a.clone().into(),
            b.clone().into(),
            LaunchArg::scalar::<f32>(1.0),
        ],
    );
    assert!(
        e.contains("argument `c` must be a f32 tensor of rank 2"),
        "{e}"
    );
    assert!(e.contains("a f32 scalar"), "{e}");
}

/// Without a driver, GPU devices are errors that say so, and the cpu keeps working.
#[test]
fn a_missing_driver_is_a_clear_error_and_the_cpu_still_works() {
    if !tilekit::device::cuda::driver_present() {
        let e = Device::cuda(0).unwrap_err();
        assert!(matches!(e, Error::NoDriver { .. }), "{e:?}");
        assert!(e.to_string().starts_with("no CUDA driver found"), "{e}");
        let e = Device::from_name("cuda:1").unwrap_err();
        assert!(e.to_string().starts_with("no CUDA driver found"), "{e}");
    }
    if !tilekit::device::hip::runtime_present() {
        let e = Device::from_name("hip").unwrap_err();
        assert!(e.to_string().starts_with("no HIP runtime found"), "{e}");
    }
    let e = Device::from_name("tpu").unwrap_err();
    assert!(e.to_string().contains("unknown device `tpu`"), "{e}");
    let e = Device::from_name("cuda:x").unwrap_err();
    assert!(e.to_string().contains("unknown device `cuda:x`"), "{e}");
    let best = Device::best();
    if !tilekit::device::cuda::driver_present() && !tilekit::device::hip::runtime_present() {
        assert_eq!(best, Device::Cpu);
    }
    // The cpu device after the failed attempts.
    let x = Tensor::from_slice(&[2.0f32; 16], &[1, 16], &Device::Cpu).unwrap();
    let mut y = Tensor::zeros(ScalarType::F32, &[1, 16], &Device::Cpu).unwrap();
    tilekit::kernels::softmax::softmax_rows::<f32, 16, 64, 4>::launch(
        &Device::Cpu,
        tilekit::kernels::softmax::grid(1, 16, 4),
        &x,
        &mut y,
    )
    .unwrap();
    let v = y.to_f64_vec().unwrap();
    assert!(v.iter().all(|&p| (p - 1.0 / 16.0).abs() < 1e-7), "{v:?}");
}

/// A cpu device runs Tile IR; it refuses a bundle of GPU code.
#[test]
fn the_cpu_refuses_bundles() {
    let bundle = tilekit::Bundle {
        target: "sm_80".into(),
        kernels: vec![],
    };
    let e = Device::Cpu.attach_bundle(bundle).unwrap_err();
    assert!(e.to_string().contains("not bundled GPU code"), "{e}");
}

/// `narrow` and `transpose` are views: they share memory, read back in row-major order of the
/// view, and bad requests are errors.
#[test]
fn views_share_memory_and_read_back_in_their_own_order() {
    let cpu = Device::Cpu;
    let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let t = Tensor::from_slice(&values, &[3, 4], &cpu).unwrap();
    let tt = t.transpose(0, 1).unwrap();
    assert_eq!(tt.shape(), &[4, 3]);
    assert_eq!(tt.strides(), &[1, 4]);
    assert!(!tt.is_contiguous());
    assert_eq!(
        tt.to_vec::<f32>().unwrap(),
        [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
    );
    let cols = t.narrow(1, 1, 2).unwrap();
    assert_eq!(cols.offset(), 1);
    assert_eq!(cols.to_vec::<f32>().unwrap(), [1., 2., 5., 6., 9., 10.]);
    // Writing through a view changes the tensor it views.
    let mut rows = t.narrow(0, 2, 1).unwrap();
    let src = Tensor::from_slice(&[-1.0f32, -2.0, -3.0, -4.0], &[1, 4], &cpu).unwrap();
    rows.copy_from(&src, &cpu).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap()[8..], [-1., -2., -3., -4.]);
    let c = tt.contiguous(&cpu).unwrap();
    assert!(c.is_contiguous() && c.offset() == 0);
    assert_eq!(c.to_vec::<f32>().unwrap(), tt.to_vec::<f32>().unwrap());

    let e = t.narrow(2, 0, 1).unwrap_err().to_string();
    assert!(
        e.contains("narrow: dimension 2 of a tensor of rank 2"),
        "{e}"
    );
    let e = t.narrow(1, 3, 2).unwrap_err().to_string();
    assert!(
        e.contains("elements 3..5 of dimension 1, which has 4"),
        "{e}"
    );
    let e = t.transpose(0, 2).unwrap_err().to_string();
    assert!(
        e.contains("transpose: dimensions 0 and 2 of a tensor of rank 2"),
        "{e}"
    );
}

/// Kernels take views as they are: a GEMM reads B through a transposed view of Bᵀ and writes C
/// into a column window of a wider matrix, leaving the rest of it untouched.
#[test]
fn kernels_read_and_write_through_views() {
    let mut rng = Rng::fresh();
    let cpu = Device::Cpu;
    let (m, n, k) = (40, 24, 56);
    let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
    let bt = rng.tensor(ScalarType::BF16, &[n, k], -1.0, 1.0);
    let (av, btv) = (a.to_vec(), bt.to_vec());
    let b: Vec<f64> = (0..k * n).map(|i| btv[(i % n) * k + i / n]).collect();
    let want = gemm_reference(&av, &b, m, k, n);

    let ta = Tensor::from_host(&a, &cpu).unwrap();
    let tb = Tensor::from_host(&bt, &cpu)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let wide = Tensor::full(ScalarType::F32, &[m, n + 9], 7.0, &cpu).unwrap();
    let mut c = wide.narrow(1, 5, n).unwrap();
    gemm::<f32, 64, 64, 32, 32, 32>::launch(&cpu, gemm_grid(m, n, 64, 64), &ta, &tb, &mut c)
        .unwrap();
    let err = max_rel(&c.to_f64_vec().unwrap(), &want);
    assert!(err < 1e-5, "error {err:.2e} (seed {})", rng.seed);
    let all = wide.to_f64_vec().unwrap();
    for i in 0..m {
        for j in (0..5).chain(n + 5..n + 9) {
            assert_eq!(
                all[i * (n + 9) + j],
                7.0,
                "C[{i}][{j}] outside the view was written"
            );
        }
    }
}

/// `Device::launch_module` runs a builder-made module's kernel with checked arguments.
#[test]
fn modules_built_without_the_dsl_launch_with_checked_arguments() {
    use tilekit_examples::gemm::{self, GemmConfig};
    let mut rng = Rng::fresh();
    let cfg = GemmConfig::default();
    let module = gemm::build(&cfg);
    let (m, n, k) = (37, 90, 45);
    let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
    let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
    let c = tilekit::ir::interp::HostTensor::full(ScalarType::F32, &[m, n], f64::NAN);
    let mut args = vec![
        LaunchArg::from(a.clone()),
        LaunchArg::from(b.clone()),
        LaunchArg::from(c),
    ];
    Device::Cpu
        .launch_module(&module, gemm::KERNEL, cfg.grid(m, n), &mut args)
        .unwrap();
    let LaunchArg::Host(out) = &args[2] else {
        panic!("{:?}", args[2])
    };
    let want = gemm::reference(&a.to_vec(), &b.to_vec(), m, k, n);
    let err = max_rel(&out.to_vec(), &want);
    assert!(err < 1e-5, "error {err:.2e} (seed {})", rng.seed);

    let e = Device::Cpu
        .launch_module(&module, "matmul", [1, 1, 1], &mut args)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the module has no kernel `matmul`"), "{e}");
    assert!(e.contains(gemm::KERNEL), "{e}");
    let e = Device::Cpu
        .launch_module(&module, gemm::KERNEL, [1, 1, 1], &mut args[..2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be 3 arguments"), "{e}");
}
