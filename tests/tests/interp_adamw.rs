//! The library's AdamW step (`tilekit::kernels::optim::adamw_step`) on the interpreter: a
//! masked tail leaves the storage past a view alone, and the launcher refuses what does not fit.
//! Steps against torch's formula in f64 are in `dsl_adamw.rs`.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::kernels::optim::{adamw_step, step, Hyper};
use tilekit::{Device, ScalarArg};
use tilekit_tests::random::TestRng;

const HYPER: Hyper = Hyper {
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.1,
    step: 3,
};

#[test]
fn adamw_leaves_parameters_past_the_end_untouched() {
    // Views of the first 100 of 128 elements: the masked tail must not write the rest.
    let mut rng = TestRng::fresh();
    let storage = rng.uniform(128, -1.0, 1.0);
    let view = |s: &[f64]| HostTensor::strided(F32, &[100], &[1], s).unwrap();
    let (mut p, mut m, mut v) = (view(&storage), view(&storage), view(&vec![0.5; 128]));
    let g = view(&storage);
    step(&Device::Cpu, &mut p, &g, &mut m, &mut v, &HYPER).unwrap();
    let before = HostTensor::new(F32, &[128], &storage).unwrap().to_vec();
    assert_eq!(&p.storage()[100..], &before[100..], "seed {}", rng.seed);
    assert_eq!(&m.storage()[100..], &before[100..], "seed {}", rng.seed);
    // Every element of the view moved (the step is not a no-op).
    for (i, (after, before)) in p.storage()[..100].iter().zip(&before).enumerate() {
        assert_ne!(after, before, "p[{i}]; seed {}", rng.seed);
    }
}

#[test]
fn adamw_rejects_an_i32_gradient_and_mismatched_lengths() {
    let t = |n| HostTensor::zeros(F32, &[n]);
    let (mut p, mut m, mut v) = (t(16), t(16), t(16));
    let s = |x: f32| ScalarArg::from(x);
    let err = adamw_step::<256, 4>::launch(
        &Device::Cpu,
        [1, 1, 1],
        &mut p,
        &HostTensor::zeros(I32, &[16]),
        &mut m,
        &mut v,
        s(1e-3),
        s(0.9),
        s(0.999),
        s(1e-8),
        s(0.0),
        s(0.1),
        s(0.001),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`g`") && err.contains("i32"), "{err}");

    let err = step(&Device::Cpu, &mut p, &t(9), &mut m, &mut v, &HYPER)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`g`") && err.contains("`p`"), "{err}");
}
