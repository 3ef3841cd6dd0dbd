//! The row softmax kernel on the interpreter against softmax in f64.

use tilekit::ir::interp::{self, Arg, HostTensor, InterpError};
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit_examples::softmax::{self, SoftmaxConfig};
use tilekit_tests::compare::{normalized_max_error, normalized_max_error_with_nonfinite};
use tilekit_tests::random::TestRng;

/// The reference works on the same (possibly bf16-rounded) inputs, so the kernel's only error is
/// f32 arithmetic. The largest term is the rounding of `t = x·log2(e)` to f32: an absolute error
/// of up to |t|·2⁻²⁴ in the exponent, i.e. a relative error of ≈ 0.7·|t|·6e-8 in exp2(t − m)
/// (≤ 4e-7 for |x| ≤ 4); the sums over ≤ 300 columns add a few ulps more. 1e-5 of the largest
/// probability leaves a wide margin for inputs within ±4.
const TOLERANCE: f64 = 1e-5;

/// (rows, cols): one exact tiling, several column tiles with a partial last one, a single
/// partial tile, a single element.
const SHAPES: [(usize, usize); 4] = [(64, 64), (100, 300), (37, 5), (1, 1)];

fn check(cfg: &SoftmaxConfig, shapes: &[(usize, usize)], spread: f64, tolerance: f64) {
    let mut rng = TestRng::fresh();
    for &(rows, cols) in shapes {
        let x = rng.tensor(cfg.input, &[rows, cols], -spread, spread);
        let y = softmax::run(cfg, &x).unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        let want = softmax::reference(&x.to_vec(), rows, cols);
        let err = normalized_max_error(&y.to_vec(), &want);
        eprintln!(
            "softmax {rows}×{cols} in {} (±{spread}): normalized max error {err:.3e}",
            cfg.input
        );
        assert!(
            err <= tolerance,
            "softmax {rows}×{cols} (input {}): max|Y − ref| / max|ref| = {err:.3e} > {tolerance:.0e}; seed {}",
            cfg.input,
            rng.seed
        );
    }
}

#[test]
fn softmax_of_f32_rows_matches_the_reference() {
    check(&SoftmaxConfig::default(), &SHAPES, 4.0, TOLERANCE);
}

#[test]
fn softmax_of_bf16_rows_matches_the_reference() {
    let cfg = SoftmaxConfig {
        input: BF16,
        ..SoftmaxConfig::default()
    };
    check(&cfg, &SHAPES, 4.0, TOLERANCE);
}

#[test]
fn softmax_of_large_scores_does_not_overflow() {
    // exp(±150) overflows f32; only the running max keeps this finite. With |t| up to
    // 150·log2(e) ≈ 216 the rounding of t alone gives relative errors up to ≈ 0.7·216·6e-8·2
    // (t and the max) ≈ 2e-5: the tolerance scales with the inputs.
    check(&SoftmaxConfig::default(), &[(40, 130)], 150.0, 1e-4);
}

#[test]
fn softmax_with_wide_tiles_and_two_row_tiles_per_warp_matches() {
    let cfg = SoftmaxConfig {
        rows_per_warp: 32,
        warps: 2,
        block_cols: 128,
        ..SoftmaxConfig::default()
    };
    check(&cfg, &[(100, 300), (33, 128)], 4.0, TOLERANCE);
}

#[test]
fn softmax_rejects_a_bf16_tensor_for_the_f32_kernel() {
    let cfg = SoftmaxConfig::default();
    let module = softmax::build(&cfg);
    let mut args = vec![
        Arg::Tensor(HostTensor::zeros(BF16, &[16, 16])),
        Arg::Tensor(HostTensor::zeros(F32, &[16, 16])),
    ];
    let err = interp::run(&module, softmax::KERNEL, cfg.grid(16), &mut args).unwrap_err();
    let InterpError::Argument { message } = &err else {
        panic!("expected an argument error, got {err}");
    };
    assert!(
        message.contains("argument 0 (`x`) must be a f32 tensor of rank 2, got a bf16 tensor"),
        "{message}"
    );
}

#[test]
fn softmax_run_rejects_zero_columns() {
    let x = HostTensor::zeros(F32, &[4, 0]);
    let err = softmax::run(&SoftmaxConfig::default(), &x).unwrap_err();
    assert!(err.to_string().contains("zero columns"), "{err}");
}

/// Rows by `r mod 5` (`tilekit::kernels::softmax::hard_row`): `-inf` in the first one or two
/// column tiles and finite later; `-inf` everywhere; `-inf` sprinkled; every value -3e38 (which
/// is -inf once scaled by log2 e in f32); plain.
#[test]
fn softmax_of_rows_with_minus_infinity_matches_torch() {
    let rng = TestRng::fresh();
    for input in [F32, BF16] {
        let cfg = SoftmaxConfig {
            input,
            ..SoftmaxConfig::default()
        };
        for (rows, cols) in [(40, 200), (20, 64), (10, 1)] {
            let mut gen = tilekit::kernels::check::Rng::new(rng.seed);
            let values: Vec<f64> = (0..rows)
                .flat_map(|r| tilekit::kernels::softmax::hard_row(&mut gen, r, cols))
                .collect();
            let x = HostTensor::new(input, &[rows, cols], &values).unwrap();
            let y = softmax::run(&cfg, &x).unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
            let y = y.to_vec();
            for (r, row) in y.chunks(cols).enumerate() {
                let all_minus_inf = values[r * cols..][..cols]
                    .iter()
                    .all(|v| *v == f64::NEG_INFINITY);
                assert_eq!(
                    row.iter().any(|v| v.is_nan()),
                    all_minus_inf,
                    "{rows}×{cols} {input} row {r}; seed {}",
                    rng.seed
                );
            }
            let want = softmax::reference(&x.to_vec(), rows, cols);
            let err = normalized_max_error_with_nonfinite(&y, &want);
            assert!(
                err <= TOLERANCE,
                "{rows}×{cols} {input}: error {err:.3e}; seed {}",
                rng.seed
            );
        }
    }
}
