//! The row softmax written in the DSL against softmax in f64 (`tilekit_examples::softmax`).

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::print_module;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::softmax::{grid, softmax_rows};
use tilekit::Device;
use tilekit_examples::softmax::reference;
use tilekit_tests::compare::normalized_max_error;
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
