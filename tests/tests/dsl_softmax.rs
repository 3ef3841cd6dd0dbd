//! The row softmax written in the DSL against softmax in f64 (`tilekit::kernels::softmax::reference`).

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::print_module;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::softmax::reference;
use tilekit::kernels::softmax::{grid, softmax_rows};
use tilekit::Device;
use tilekit_tests::compare::{normalized_max_error, normalized_max_error_with_nonfinite};
use tilekit_tests::random::TestRng;

/// As in interp_softmax.rs: f32 arithmetic in the exp2 domain, inputs within ±4.
const TOLERANCE: f64 = 1e-5;

/// (rows, cols): an exact tiling, several column tiles with a partial last one, a partial
/// single tile, a single element.
const SHAPES: [(usize, usize); 4] = [(64, 64), (100, 300), (37, 5), (1, 1)];

#[test]
fn dsl_softmax_of_f32_and_bf16_rows_matches_the_reference() {
    let mut rng = TestRng::fresh();
    for (rows, cols) in SHAPES {
        for dtype in [F32, BF16] {
            let x = rng.tensor(dtype, &[rows, cols], -4.0, 4.0);
            let mut y = HostTensor::zeros(F32, &[rows, cols]);
            let g = grid(rows, 16, 4);
            let r = if dtype == F32 {
                softmax_rows::<f32, 16, 64, 4>::launch(&Device::Cpu, g, &x, &mut y)
            } else {
                softmax_rows::<bf16, 16, 64, 4>::launch(&Device::Cpu, g, &x, &mut y)
            };
            r.unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
            let err = normalized_max_error(&y.to_vec(), &reference(&x.to_vec(), rows, cols));
            assert!(
                err <= TOLERANCE,
                "{rows}×{cols} {dtype}: error {err:.3e}; seed {}",
                rng.seed
            );
        }
    }
}

#[test]
fn dsl_softmax_tile_ir() {
    insta::assert_snapshot!(print_module(softmax_rows::<bf16, 16, 64, 4>::module()));
}

/// Rows by `r mod 5` (`tilekit::kernels::softmax::hard_row`): `-inf` in the first one or two
/// column tiles and finite later; `-inf` everywhere; `-inf` sprinkled; every value -3e38; plain.
fn hard_input(
    rng: &TestRng,
    dtype: tilekit::ir::ScalarType,
    rows: usize,
    cols: usize,
) -> HostTensor {
    let mut gen = tilekit::kernels::check::Rng::new(rng.seed);
    let values: Vec<f64> = (0..rows)
        .flat_map(|r| tilekit::kernels::softmax::hard_row(&mut gen, r, cols))
        .collect();
    HostTensor::new(dtype, &[rows, cols], &values).unwrap()
}

#[test]
fn dsl_softmax_of_rows_with_minus_infinity_matches_torch() {
    let rng = TestRng::fresh();
    // 200 columns: rows whose first 64 or 128 columns (whole tiles) are -inf; 64: one tile.
    for (rows, cols) in [(40, 200), (20, 64), (10, 1)] {
        for dtype in [F32, BF16] {
            let x = hard_input(&rng, dtype, rows, cols);
            let mut y = HostTensor::zeros(F32, &[rows, cols]);
            let g = grid(rows, 16, 4);
            let r = if dtype == F32 {
                softmax_rows::<f32, 16, 64, 4>::launch(&Device::Cpu, g, &x, &mut y)
            } else {
                softmax_rows::<bf16, 16, 64, 4>::launch(&Device::Cpu, g, &x, &mut y)
            };
            r.unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
            let y = y.to_vec();
            // torch.softmax: NaN exactly in the rows that are -inf everywhere.
            for (r, row) in y.chunks(cols).enumerate() {
                let all_minus_inf = x.to_vec()[r * cols..][..cols]
                    .iter()
                    .all(|v| *v == f64::NEG_INFINITY);
                assert_eq!(
                    row.iter().any(|v| v.is_nan()),
                    all_minus_inf,
                    "{rows}×{cols} {dtype} row {r}: {:?}; seed {}",
                    &row[..row.len().min(8)],
                    rng.seed
                );
            }
            let err = normalized_max_error_with_nonfinite(&y, &reference(&x.to_vec(), rows, cols));
            assert!(
                err <= TOLERANCE,
                "{rows}×{cols} {dtype}: error {err:.3e}; seed {}",
                rng.seed
            );
        }
    }
}

#[test]
fn dsl_softmax_of_a_row_masked_in_its_first_tile_is_the_softmax_of_the_rest() {
    // The reproduction: 64 columns of -inf, then finite ones.
    let cols = 100;
    let values: Vec<f64> = (0..cols)
        .map(|c| {
            if c < 64 {
                f64::NEG_INFINITY
            } else {
                (c % 7) as f64 - 3.0
            }
        })
        .collect();
    let x = HostTensor::new(F32, &[1, cols], &values).unwrap();
    let mut y = HostTensor::zeros(F32, &[1, cols]);
    softmax_rows::<f32, 16, 64, 4>::launch(&Device::Cpu, grid(1, 16, 4), &x, &mut y).unwrap();
    let sum: f64 = values[64..].iter().map(|v| v.exp()).sum();
    let want: Vec<f64> = values.iter().map(|v| v.exp() / sum).collect();
    let err = normalized_max_error(&y.to_vec(), &want);
    assert!(
        err <= TOLERANCE,
        "error {err:.3e}: {:?}",
        &y.to_vec()[60..70]
    );
}
