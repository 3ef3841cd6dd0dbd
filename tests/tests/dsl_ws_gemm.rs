//! The warp-specialized GEMM written in the DSL against the GEMM reference in f64.

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::print_module;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::gemm::grid;
use tilekit::kernels::gemm::reference;
use tilekit::kernels::ws_gemm::ws_gemm;
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

const SHAPES: [(usize, usize, usize); 3] = [(64, 64, 64), (17, 129, 33), (100, 72, 130)];

#[test]
fn dsl_ws_gemm_matches_the_reference_with_2_and_3_stages_and_4_consumers() {
    let mut rng = TestRng::fresh();
    for (m, n, k) in SHAPES {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let g = grid(m, n, 64, 64);
        let mut c = HostTensor::zeros(F32, &[m, n]);
        ws_gemm::<f32, 64, 64, 32, 32, 2>::launch(&Device::Cpu, g, &a, &b, &mut c).unwrap();
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "2 stages {m}×{n}×{k}: error {err:.3e}; seed {}",
            rng.seed
        );
        let mut c = HostTensor::zeros(F32, &[m, n]);
        ws_gemm::<f32, 64, 64, 32, 32, 3>::launch(&Device::Cpu, g, &a, &b, &mut c).unwrap();
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "3 stages {m}×{n}×{k}: error {err:.3e}; seed {}",
            rng.seed
        );
        let mut c = HostTensor::zeros(BF16, &[m, n]);
        ws_gemm::<bf16, 64, 64, 32, 16, 2>::launch(&Device::Cpu, g, &a, &b, &mut c).unwrap();
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-2,
            "4 consumers bf16 {m}×{n}×{k}: error {err:.3e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn dsl_ws_gemm_tile_ir() {
    insta::assert_snapshot!(print_module(ws_gemm::<f32, 64, 64, 32, 32, 2>::module()));
}

/// The warp-specialized sm_90a GEMM (TMA producer, `setmaxnreg`, async wgmma consumers): its
/// Tile IR is also the compile benchmark's sm_90a GEMM (`codegen/benches/compile.rs`).
#[test]
fn dsl_gemm_ws_wg_tile_ir() {
    insta::assert_snapshot!(print_module(tilekit::kernels::gemm_ws_wg::gemm_ws_wg::<
        bf16,
        128,
        256,
        64,
        4,
    >::module()));
}
