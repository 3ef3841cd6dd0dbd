//! The GEMM written in the DSL (`tilekit::kernels::gemm`), launched through its typed launcher
//! on the interpreter, against the f64 reference of the acceptance kernel.

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::ir::{print_module, verify};
use tilekit::kernels::gemm::reference;
use tilekit::kernels::gemm::{gemm, grid};
use tilekit::{Device, Error};
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// (M, N, K): an exact tiling, then partial tiles in every dimension, then a skinny M with
/// several K steps.
const SHAPES: [(usize, usize, usize); 3] = [(64, 64, 64), (17, 129, 33), (100, 72, 130)];

#[test]
fn dsl_gemm_with_f32_output_matches_the_reference() {
    let mut rng = TestRng::fresh();
    for (m, n, k) in SHAPES {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let mut c = HostTensor::zeros(F32, &[m, n]);
        gemm::<f32, 64, 64, 32, 32, 32>::launch(&Device::Cpu, grid(m, n, 64, 64), &a, &b, &mut c)
            .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        let err = normalized_max_error(&c.to_vec(), &reference(&a.to_vec(), &b.to_vec(), m, k, n));
        // f32 accumulation of ≤130 bf16 products: a few f32 ulps times √K (see interp_gemm.rs).
        assert!(
            err <= 1e-5,
            "{m}×{n}×{k}: error {err:.3e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn dsl_gemm_with_bf16_output_and_16x64_warp_tiles_matches_the_reference() {
    let mut rng = TestRng::fresh();
    for (m, n, k) in SHAPES {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let mut c = HostTensor::zeros(BF16, &[m, n]);
        gemm::<bf16, 64, 64, 32, 32, 32>::launch(&Device::Cpu, grid(m, n, 64, 64), &a, &b, &mut c)
            .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        let err = normalized_max_error(&c.to_vec(), &want);
        // One bf16 rounding of each output (2⁻⁸ relative) on top of the f32 accumulation.
        assert!(
            err <= 1e-2,
            "bf16 out {m}×{n}×{k}: error {err:.3e}; seed {}",
            rng.seed
        );
        let mut c = HostTensor::zeros(F32, &[m, n]);
        gemm::<f32, 64, 64, 16, 16, 64>::launch(&Device::Cpu, grid(m, n, 64, 64), &a, &b, &mut c)
            .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        let err = normalized_max_error(&c.to_vec(), &want);
        assert!(
            err <= 1e-5,
            "16×64 warps {m}×{n}×{k}: error {err:.3e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn dsl_gemm_module_verifies_and_is_built_once() {
    let m = gemm::<f32, 64, 64, 32, 32, 32>::module();
    verify(m).unwrap();
    assert!(std::ptr::eq(m, gemm::<f32, 64, 64, 32, 32, 32>::module()));
    // Building again traces the same IR: the build is deterministic.
    assert_eq!(
        print_module(&gemm::<f32, 64, 64, 32, 32, 32>::build()),
        print_module(m)
    );
}

#[test]
fn dsl_gemm_launcher_rejects_a_wrong_dtype_naming_the_parameter() {
    let a = HostTensor::zeros(F32, &[16, 16]);
    let b = HostTensor::zeros(BF16, &[16, 16]);
    let mut c = HostTensor::zeros(F32, &[16, 16]);
    let err = gemm::<f32, 64, 64, 32, 32, 32>::launch(&Device::Cpu, 1, &a, &b, &mut c).unwrap_err();
    assert!(matches!(err, Error::Argument { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "@gemm: argument `a` must be a bf16 tensor of rank 2, got a f32 tensor of shape [16, 16]"
    );
}

#[test]
fn dsl_gemm_launcher_rejects_a_wrong_rank_and_an_empty_grid() {
    let a = HostTensor::zeros(BF16, &[16, 16]);
    let b = HostTensor::zeros(BF16, &[16, 16]);
    let mut c3 = HostTensor::zeros(F32, &[1, 16, 16]);
    let err =
        gemm::<f32, 64, 64, 32, 32, 32>::launch(&Device::Cpu, 1, &a, &b, &mut c3).unwrap_err();
    assert!(
        err.to_string()
            .contains("argument `c` must be a f32 tensor of rank 2"),
        "{err}"
    );
    let mut c = HostTensor::zeros(F32, &[16, 16]);
    let err =
        gemm::<f32, 64, 64, 32, 32, 32>::launch(&Device::Cpu, (0, 1), &a, &b, &mut c).unwrap_err();
    assert!(matches!(err, Error::EmptyGrid { .. }), "{err}");
}

#[test]
fn dsl_gemm_tile_ir() {
    insta::assert_snapshot!(print_module(gemm::<f32, 64, 64, 32, 32, 32>::module()));
}

#[test]
fn dsl_gemm_launcher_rejects_inner_dimensions_that_disagree() {
    let a = HostTensor::zeros(BF16, &[8, 24]);
    let b = HostTensor::zeros(BF16, &[25, 8]);
    let mut c = HostTensor::zeros(F32, &[8, 8]);
    let err = gemm::<f32, 64, 64, 32, 32, 32>::launch(&Device::Cpu, 1, &a, &b, &mut c).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`b` dimension 0 is 25, but the contract needs K = 24 from `a` dimension 1"),
        "{err}"
    );
}
