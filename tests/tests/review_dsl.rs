//! Review probes of the DSL: helper naming, launch-time checks.

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::verify;
use tilekit::ir::ScalarType::F32;
use tilekit::Device;

/// A helper whose name looks like a generated instantiation name of `bump`.
#[tilekit::func(call)]
fn bump_2(t: Rt<f32, 16, 16>) -> Rt<f32, 16, 16> {
    t + 2.0
}

#[tilekit::func(call)]
fn bump<const C: usize>(t: Rt<f32, 16, C>) -> Rt<f32, 16, C> {
    t + 1.0
}

#[tilekit::kernel]
fn bumps(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
    let wide: Rt<f32, 16, 32> = load(x.tile(0, 0));
    store(y.tile(0, 0), bump_2(t));
    store(y.tile(0, 1), bump(t));
    store(y.tile(0, 1), bump(wide));
}

#[test]
fn helper_instantiation_names_never_collide_with_other_helpers() {
    let m = bumps::module();
    let names: Vec<&str> = m.funcs.iter().map(|f| f.name.as_str()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    verify(m).unwrap();
    let x = HostTensor::zeros(F32, &[16, 48]);
    let mut y = HostTensor::zeros(F32, &[16, 48]);
    bumps::launch(&Device::Cpu, 1, &x, &mut y).unwrap();
    assert_eq!(y.get(&[0, 0]), Some(2.0));
    assert_eq!(y.get(&[0, 40]), Some(1.0));
}

#[test]
fn a_launch_with_a_dimension_beyond_i32_is_an_argument_error_before_shape_checks() {
    use tilekit::ir::ScalarType::{BF16, I32};
    use tilekit::kernels::moe::moe_expert_proj;
    // A stride-0 view may have any number of elements; shape checks multiply dimensions.
    let huge = usize::MAX / 2;
    let x = HostTensor::zeros(BF16, &[16, 32]);
    let w = HostTensor::zeros(BF16, &[1, 32, 32]);
    let experts = HostTensor::strided(I32, &[huge], &[0], &[0.0]).unwrap();
    let tokens = HostTensor::zeros(I32, &[64]);
    let weights = HostTensor::zeros(F32, &[64]);
    let mut y = HostTensor::zeros(F32, &[16, 32]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        moe_expert_proj::<16, 4, 64, 32>::launch(
            &Device::Cpu,
            (1, 1),
            &x,
            &w,
            &experts,
            &tokens,
            &weights,
            &mut y,
        )
    }));
    let err = r.expect("the launch panicked").unwrap_err();
    assert!(matches!(err, tilekit::Error::Argument { .. }), "{err}");
    assert!(err.to_string().contains("2147483647"), "{err}");
}
