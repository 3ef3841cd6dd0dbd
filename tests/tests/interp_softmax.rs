//! The library's row softmax (`tilekit::kernels::softmax::softmax_rows`) on the interpreter:
//! scores large enough to overflow `exp`, and the launcher's refusals. Ordinary and `-inf` rows
//! of f32 and bf16 inputs are in `dsl_softmax.rs`.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::softmax::{grid, reference, softmax_rows};
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

type Softmax = softmax_rows<f32, 16, 64, 4>;

#[test]
fn softmax_of_large_scores_does_not_overflow() {
    // exp(±150) overflows f32; only the running max keeps this finite. With |t| up to
    // 150·log2(e) ≈ 216 the rounding of t = x·log2(e) to f32 alone gives relative errors up to
    // ≈ 0.7·216·6e-8·2 (t and the max) ≈ 2e-5: the tolerance scales with the inputs.
    let mut rng = TestRng::fresh();
    for (rows, cols) in [(40, 130), (17, 64)] {
        let x = rng.tensor(F32, &[rows, cols], -150.0, 150.0);
        let mut y = HostTensor::full(F32, &[rows, cols], f64::NAN);
        Softmax::launch(&Device::Cpu, grid(rows, 16, 4), &x, &mut y)
            .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        let err = normalized_max_error(&y.to_vec(), &reference(&x.to_vec(), rows, cols));
        assert!(
            err <= 1e-4,
            "{rows}×{cols} in ±150: error {err:.3e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn softmax_rejects_a_bf16_tensor_for_the_f32_kernel() {
    let x = HostTensor::zeros(BF16, &[16, 16]);
    let mut y = HostTensor::zeros(F32, &[16, 16]);
    let err = Softmax::launch(&Device::Cpu, grid(16, 16, 4), &x, &mut y)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`x`") && err.contains("f32") && err.contains("bf16"),
        "{err}"
    );
}

#[test]
fn softmax_rejects_zero_columns() {
    let x = HostTensor::zeros(F32, &[4, 0]);
    let mut y = HostTensor::zeros(F32, &[4, 0]);
    let err = Softmax::launch(&Device::Cpu, grid(4, 16, 4), &x, &mut y)
        .unwrap_err()
        .to_string();
    assert!(err.contains("COLS"), "{err}");
}
