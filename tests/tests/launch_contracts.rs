//! Launch contracts (`shapes(…)`, `grid = […]` on `#[kernel]`): each mismatch a user can make
//! at launch is an error naming the arguments, the dimension and the values, before anything
//! runs; a grid that is too small, or on the wrong axis, is refused; `launch_auto` computes
//! the grid. The library kernels' contracts and a user kernel's are both exercised.

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32, I32};
use tilekit::kernels::attention::attention_fwd;
use tilekit::kernels::gemm::{gemm, grid as gemm_grid};
use tilekit::kernels::moe::moe_expert_proj;
use tilekit::kernels::softmax::softmax_rows;
use tilekit::{Device, Error, LaunchArg, ScalarArg};
use tilekit_examples::gemm::reference;
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// `y = x · w` with `w` broadcast along the rows (the scaling step of an RMSNorm).
#[tilekit::kernel(
    shapes(x: [T, H], w: [H], y: [T, H]),
    grid = [ceil_div(T, 16), ceil_div(H, 16), 1]
)]
fn scale_cols(x: Gl<f32, 2>, w: Gl<f32, 1>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(x.tile(block_idx_x(), block_idx_y()));
    let s: Rv<f32, 16, Cols> = load(w.chunk(block_idx_y()));
    store(y.tile(block_idx_x(), block_idx_y()), mul_col(t, s));
}

/// The error of a launch, as text; the launch must fail with a shape error.
fn shape_error(r: Result<(), Error>) -> String {
    match r {
        Err(e @ Error::Shape { .. }) => e.to_string(),
        Err(e) => panic!("expected a shape error, got {e}"),
        Ok(()) => panic!("expected a shape error, the launch ran"),
    }
}

fn assert_names(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "`{p}` missing from: {err}");
    }
}

#[test]
fn a_user_kernel_with_a_contract_runs_on_the_grid_it_computes() {
    let mut rng = TestRng::fresh();
    for (t, h) in [(16, 16), (40, 24), (7, 50)] {
        let x = rng.tensor(F32, &[t, h], -2.0, 2.0);
        let w = rng.tensor(F32, &[h], -2.0, 2.0);
        let mut y = HostTensor::zeros(F32, &[t, h]);
        scale_cols::launch_auto(&Device::Cpu, &x, &w, &mut y)
            .unwrap_or_else(|e| panic!("{t}×{h}, seed {}: {e}", rng.seed));
        let (xv, wv) = (x.to_vec(), w.to_vec());
        let want: Vec<f64> = (0..t * h).map(|i| xv[i] * wv[i % h]).collect();
        let err = normalized_max_error(&y.to_vec(), &want);
        assert!(err <= 1e-6, "{t}×{h}: error {err:.2e}, seed {}", rng.seed);
        assert_eq!(
            scale_cols::contract(&[
                LaunchArg::Host(x.clone()),
                LaunchArg::Host(w.clone()),
                LaunchArg::Host(y.clone())
            ]),
            Ok(Some([t.div_ceil(16) as u32, h.div_ceil(16) as u32, 1]))
        );
    }
}

#[test]
fn a_w_shorter_than_h_is_an_error_naming_w_x_and_the_dimension() {
    let x = HostTensor::zeros(F32, &[40, 24]);
    let w = HostTensor::zeros(F32, &[20]);
    let mut y = HostTensor::zeros(F32, &[40, 24]);
    let err = shape_error(scale_cols::launch(&Device::Cpu, [3, 2, 1], &x, &w, &mut y));
    assert_names(
        &err,
        &[
            "`w` dimension 0 is 20",
            "H = 24 from `x` dimension 1",
            "x: [T, H], w: [H], y: [T, H]",
        ],
    );
    // `launch_auto` checks the same before computing a grid.
    let err = shape_error(scale_cols::launch_auto(&Device::Cpu, &x, &w, &mut y));
    assert_names(&err, &["`w` dimension 0 is 20"]);
}

#[test]
fn a_y_narrower_than_x_is_an_error_naming_y_x_and_the_dimension() {
    let x = HostTensor::zeros(F32, &[40, 24]);
    let w = HostTensor::zeros(F32, &[24]);
    let mut y = HostTensor::zeros(F32, &[40, 20]);
    let err = shape_error(scale_cols::launch_auto(&Device::Cpu, &x, &w, &mut y));
    assert_names(
        &err,
        &["`y` dimension 1 is 20", "H = 24 from `x` dimension 1"],
    );
    // The library's softmax: y narrower than x.
    let x = HostTensor::zeros(F32, &[64, 100]);
    let mut y = HostTensor::zeros(F32, &[64, 99]);
    let err = shape_error(softmax_rows::<f32, 16, 64, 4>::launch_auto(
        &Device::Cpu,
        &x,
        &mut y,
    ));
    assert_names(
        &err,
        &["`y` dimension 1 is 99", "COLS = 100 from `x` dimension 1"],
    );
    // A condition of the contract: no columns at all.
    let x = HostTensor::zeros(F32, &[64, 0]);
    let mut y = HostTensor::zeros(F32, &[64, 0]);
    let err = shape_error(softmax_rows::<f32, 16, 64, 4>::launch_auto(
        &Device::Cpu,
        &x,
        &mut y,
    ));
    assert_names(&err, &["COLS >= 1", "COLS = 0 from `x` dimension 1"]);
}

#[test]
fn a_k_mismatch_is_an_error_naming_a_b_and_k() {
    let a = HostTensor::zeros(BF16, &[64, 33]);
    let b = HostTensor::zeros(BF16, &[40, 64]);
    let mut c = HostTensor::zeros(F32, &[64, 64]);
    let err = shape_error(gemm::<f32, 64, 64, 32, 32, 32>::launch(
        &Device::Cpu,
        gemm_grid(64, 64, 64, 64),
        &a,
        &b,
        &mut c,
    ));
    assert_names(
        &err,
        &[
            "`b` dimension 0 is 40",
            "K = 33 from `a` dimension 1",
            "@gemm",
        ],
    );
    // C of the wrong shape names C and where its dimension comes from.
    let b = HostTensor::zeros(BF16, &[33, 64]);
    let mut c = HostTensor::zeros(F32, &[64, 63]);
    let err = shape_error(gemm::<f32, 64, 64, 32, 32, 32>::launch_auto(
        &Device::Cpu,
        &a,
        &b,
        &mut c,
    ));
    assert_names(
        &err,
        &["`c` dimension 1 is 63", "N = 64 from `b` dimension 1"],
    );
}

#[test]
fn short_slot_tokens_or_weights_are_an_error_naming_the_expression_and_its_source() {
    // 2 slot tiles of R·WARPS = 64 slots need 128 slot tokens and weights.
    let x = HostTensor::zeros(BF16, &[50, 40]);
    let w = HostTensor::zeros(BF16, &[3, 40, 70]);
    let tile_expert = HostTensor::zeros(I32, &[2]);
    let tokens = HostTensor::zeros(I32, &[100]);
    let weights = HostTensor::zeros(F32, &[128]);
    let mut y = HostTensor::zeros(F32, &[50, 70]);
    let err = shape_error(moe_expert_proj::<16, 4, 64, 32>::launch_auto(
        &Device::Cpu,
        &x,
        &w,
        &tile_expert,
        &tokens,
        &weights,
        &mut y,
    ));
    assert_names(
        &err,
        &[
            "`slot_token` dimension 0 is 100",
            "NT * R * WARPS = 128",
            "NT = 2 from `tile_expert` dimension 0",
        ],
    );
}

#[test]
fn short_attention_outputs_are_an_error_naming_them() {
    let q = HostTensor::zeros(BF16, &[2, 70, 64]);
    let k = HostTensor::zeros(BF16, &[2, 50, 64]);
    let mut o = HostTensor::zeros(F32, &[2, 70, 64]);
    let mut lse = HostTensor::zeros(F32, &[2, 69]);
    let err = shape_error(attention_fwd::<f32, 64, 16, 64, 4, false>::launch_auto(
        &Device::Cpu,
        &q,
        &k,
        &k,
        &mut o,
        &mut lse,
        ScalarArg::from(0.125f32),
    ));
    assert_names(
        &err,
        &["`lse` dimension 1 is 69", "SQ = 70 from `q` dimension 1"],
    );
    // A head dimension other than the kernel's D is a mismatch with the const.
    let q = HostTensor::zeros(BF16, &[2, 70, 32]);
    let mut o = HostTensor::zeros(F32, &[2, 70, 32]);
    let mut lse = HostTensor::zeros(F32, &[2, 70]);
    let err = shape_error(attention_fwd::<f32, 64, 16, 64, 4, false>::launch_auto(
        &Device::Cpu,
        &q,
        &k,
        &k,
        &mut o,
        &mut lse,
        ScalarArg::from(0.125f32),
    ));
    assert_names(&err, &["`q` dimension 2 is 32", "D = 64"]);
}

#[test]
fn a_grid_too_small_or_on_the_wrong_axis_is_an_error_naming_the_axis() {
    let (m, n, k) = (200, 70, 40);
    let a = HostTensor::zeros(BF16, &[m, k]);
    let b = HostTensor::zeros(BF16, &[k, n]);
    let mut c = HostTensor::zeros(F32, &[m, n]);
    type G = gemm<f32, 64, 64, 32, 32, 32>;
    // The grid is [⌈N/64⌉, ⌈M/64⌉, 1] = [2, 4, 1].
    let err = shape_error(G::launch(&Device::Cpu, [2, 3, 1], &a, &b, &mut c));
    assert_names(
        &err,
        &["the grid [2, 3, 1] has 3 blocks along y", "[2, 4, 1]"],
    );
    // M's tiles on x and N's on y: too few along y.
    let err = shape_error(G::launch(&Device::Cpu, [4, 2, 1], &a, &b, &mut c));
    assert_names(&err, &["has 2 blocks along y", "need [2, 4, 1]"]);
    // The attention grid puts heads on y; heads on x leave y short.
    let q = HostTensor::zeros(BF16, &[3, 64, 64]);
    let mut o = HostTensor::zeros(F32, &[3, 64, 64]);
    let mut lse = HostTensor::zeros(F32, &[3, 64]);
    let err = shape_error(attention_fwd::<f32, 64, 16, 64, 4, false>::launch(
        &Device::Cpu,
        [3, 1, 1],
        &q,
        &q,
        &q,
        &mut o,
        &mut lse,
        ScalarArg::from(0.125f32),
    ));
    assert_names(&err, &["has 1 blocks along y", "need [1, 3, 1]"]);
    // The by-name launch checks the same.
    let mut args = vec![
        LaunchArg::Host(a.clone()),
        LaunchArg::Host(b.clone()),
        LaunchArg::Host(c.clone()),
    ];
    let err = Device::Cpu
        .launch_by_name("gemm", "<f32, 64, 64, 32, 32, 32>", [1, 4, 1], &mut args)
        .unwrap_err()
        .to_string();
    assert_names(&err, &["has 1 blocks along x", "need [2, 4, 1]"]);
}

#[test]
fn a_larger_grid_and_launch_auto_give_the_reference_product() {
    let mut rng = TestRng::fresh();
    let (m, n, k) = (70, 33, 40);
    let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
    let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
    let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
    type G = gemm<f32, 64, 64, 32, 32, 32>;
    let mut c = HostTensor::zeros(F32, &[m, n]);
    G::launch_auto(&Device::Cpu, &a, &b, &mut c).unwrap();
    let err = normalized_max_error(&c.to_vec(), &want);
    assert!(
        err <= 1e-5,
        "launch_auto: error {err:.2e}, seed {}",
        rng.seed
    );
    // Extra blocks past the contract's grid find nothing to write.
    let mut c = HostTensor::zeros(F32, &[m, n]);
    G::launch(&Device::Cpu, [3, 3, 1], &a, &b, &mut c).unwrap();
    let err = normalized_max_error(&c.to_vec(), &want);
    assert!(
        err <= 1e-5,
        "larger grid: error {err:.2e}, seed {}",
        rng.seed
    );
}
