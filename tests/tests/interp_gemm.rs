//! The tiled GEMM on the interpreter against its f64 reference.

use tilekit::ir::interp::{self, Arg, HostTensor, InterpError, Schedule};
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit_examples::gemm::{self, GemmConfig};
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// (M, N, K): one exact tiling, then edges in every dimension (17×129×33 has partial tiles of
/// M, N and K, and more than one K step), a skinny M, and a larger grid with 9 K steps.
const SHAPES: [(usize, usize, usize); 5] = [
    (64, 64, 64),
    (100, 72, 48),
    (17, 129, 33),
    (3, 20, 130),
    (200, 300, 257),
];

/// Runs `cfg` on each shape with fresh inputs and checks the normalized error.
fn check(cfg: &GemmConfig, tolerance: f64) {
    let mut rng = TestRng::fresh();
    for (m, n, k) in SHAPES {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let c = gemm::run(cfg, &a, &b).unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        assert_eq!(c.shape(), &[m, n]);
        let want = gemm::reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let err = normalized_max_error(&c.to_vec(), &want);
        eprintln!(
            "gemm {m}×{n}×{k}, {}×{} warps, out {}: normalized max error {err:.3e}",
            cfg.warps_m, cfg.warps_n, cfg.out
        );
        assert!(
            err <= tolerance,
            "gemm {m}×{n}×{k} (out {}): max|C − ref| / max|ref| = {err:.3e} > {tolerance:.0e}; seed {}",
            cfg.out,
            rng.seed
        );
    }
}

#[test]
fn gemm_with_f32_output_matches_the_reference() {
    // The reference multiplies the same bf16-rounded inputs in f64, so the only error is f32
    // accumulation over K ≤ 130 terms of size ≤ 1: a few ulps of f32 (2⁻²⁴ ≈ 6e-8) times √K
    // relative to |C|; 1e-5 leaves two orders of magnitude.
    check(&GemmConfig::default(), 1e-5);
}

#[test]
fn gemm_with_bf16_output_matches_the_reference() {
    // One rounding of each output to bf16 (8 significant bits: relative error ≤ 2⁻⁸ ≈ 3.9e-3 of
    // the element, so at most that of max|ref|) on top of the f32 accumulation.
    check(
        &GemmConfig {
            out: BF16,
            ..GemmConfig::default()
        },
        1e-2,
    );
}

#[test]
fn gemm_with_16x64_warp_tiles_matches_the_reference() {
    // 4 warps stacked along M, each 16×64; 16-deep K steps. Tolerance as for f32 output.
    check(
        &GemmConfig {
            warps_m: 4,
            warps_n: 1,
            block_k: 16,
            ..GemmConfig::default()
        },
        1e-5,
    );
}

#[test]
fn gemm_gives_the_same_bits_under_fine_interleaving() {
    // The two barriers per K step order every shared-memory access, so interleaving warps op by
    // op must not change a single bit.
    let mut rng = TestRng::fresh();
    let a = rng.tensor(BF16, &[70, 90], -1.0, 1.0);
    let b = rng.tensor(BF16, &[90, 40], -1.0, 1.0);
    let cfg = GemmConfig::default();
    let base = gemm::run(&cfg, &a, &b).unwrap();
    for quantum in [1, 7] {
        let c = gemm::run_scheduled(&cfg, Schedule::RoundRobin { quantum }, &a, &b).unwrap();
        assert_eq!(c, base, "quantum {quantum}; seed {}", rng.seed);
    }
}

#[test]
fn gemm_rejects_an_f32_matrix_where_bf16_is_expected() {
    let cfg = GemmConfig::default();
    let module = gemm::build(&cfg);
    let mut args = vec![
        Arg::Tensor(HostTensor::zeros(F32, &[16, 16])),
        Arg::Tensor(HostTensor::zeros(BF16, &[16, 16])),
        Arg::Tensor(HostTensor::zeros(F32, &[16, 16])),
    ];
    let err = interp::run(&module, gemm::KERNEL, cfg.grid(16, 16), &mut args).unwrap_err();
    let InterpError::Argument { message } = &err else {
        panic!("expected an argument error, got {err}");
    };
    assert!(
        message.contains("argument 0 (`a`) must be a bf16 tensor of rank 2, got a f32 tensor"),
        "{message}"
    );
}

#[test]
fn gemm_run_rejects_inner_dimensions_that_disagree() {
    let a = HostTensor::zeros(BF16, &[8, 24]);
    let b = HostTensor::zeros(BF16, &[25, 8]);
    let err = gemm::run(&GemmConfig::default(), &a, &b).unwrap_err();
    assert!(err.to_string().contains("B needs 24 rows"), "{err}");
}
