//! The MoE gather–mma–scatter kernel on the interpreter against `Σ w · X[t]·W[e]` in f64.

use rand::seq::SliceRandom;
use rand::Rng;
use tilekit::ir::interp::{self, Arg, HostTensor, InterpError};
use tilekit::ir::ScalarType::{BF16, F32, I32};
use tilekit_examples::moe::{self, MoeConfig, Routing};
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// Inputs are bf16 and their products exact in f32; the error is f32 accumulation over d ≤ 96
/// terms, one f32 scaling by the routing weight and f32 sums of ≤ 3 contributions per token: a
/// few ulps (6e-8) relative to |Y|. 1e-5 leaves a wide margin.
const TOLERANCE: f64 = 1e-5;

/// Each token picks `k` distinct experts among `experts`, with weights in [0.1, 1).
fn top_k(rng: &mut TestRng, tokens: usize, experts: &[usize], k: usize) -> Vec<Vec<(usize, f32)>> {
    (0..tokens)
        .map(|_| {
            experts
                .choose_multiple(&mut rng.rng, k)
                .map(|&e| (e, rng.rng.gen_range(0.1f32..1.0)))
                .collect()
        })
        .collect()
}

/// Runs tokens `[t, d]` through `e` experts `[d, f]`, each token routed to `k` of `routed_to`.
fn check(
    cfg: &MoeConfig,
    (t, d, f, e, k): (usize, usize, usize, usize, usize),
    routed_to: &[usize],
) {
    let mut rng = TestRng::fresh();
    let x = rng.tensor(BF16, &[t, d], -1.0, 1.0);
    let w = rng.tensor(BF16, &[e, d, f], -1.0, 1.0);
    let choices = top_k(&mut rng, t, routed_to, k);
    let routing = Routing::from_top_k(e, &choices, cfg.tile_rows());
    let y =
        moe::run(cfg, &x, &w, &routing).unwrap_or_else(|err| panic!("seed {}: {err}", rng.seed));
    let want = moe::reference(&x.to_vec(), &w.to_vec(), &choices, d, f);
    let err = normalized_max_error(&y.to_vec(), &want);
    eprintln!(
        "moe T {t} d {d} f {f} E {e} top-{k} ({} slot tiles): normalized max error {err:.3e}",
        routing.tile_expert.len()
    );
    assert!(
        err <= TOLERANCE,
        "moe T {t} d {d} f {f} E {e} top-{k}: max|Y − ref| / max|ref| = {err:.3e} > {TOLERANCE:.0e}; seed {}",
        rng.seed
    );
}

#[test]
fn moe_matches_the_reference_with_tile_multiples() {
    check(&MoeConfig::default(), (64, 64, 64, 4, 2), &[0, 1, 2, 3]);
}

#[test]
fn moe_matches_the_reference_with_partial_tiles() {
    // d and f not multiples of the tiles, expert runs padded with -1 slots, several slot tiles
    // per expert for T = 100, top-3.
    check(&MoeConfig::default(), (37, 48, 80, 3, 2), &[0, 1, 2]);
    check(&MoeConfig::default(), (100, 96, 40, 5, 3), &[0, 1, 2, 3, 4]);
}

#[test]
fn moe_skips_experts_without_tokens() {
    // Expert 1 of 3 gets no token, so it has no slot tile.
    check(&MoeConfig::default(), (50, 32, 32, 3, 2), &[0, 2]);
}

#[test]
fn moe_with_one_warp_and_deep_steps_matches() {
    let cfg = MoeConfig {
        warps: 1,
        block_d: 64,
        block_f: 32,
        ..MoeConfig::default()
    };
    check(&cfg, (45, 100, 50, 4, 2), &[0, 1, 2, 3]);
}

#[test]
fn routing_pads_each_expert_run_to_whole_tiles() {
    let choices = vec![vec![(1, 0.5), (0, 0.25)], vec![(1, 1.0)]];
    let r = Routing::from_top_k(3, &choices, 16);
    assert_eq!(r.tile_expert, vec![0, 1]);
    assert_eq!(&r.slot_token[..2], &[0, -1]);
    assert_eq!(&r.slot_token[16..19], &[0, 1, -1]);
    assert_eq!(&r.slot_weight[16..18], &[0.5, 1.0]);
    assert_eq!(r.slot_token.len(), 32);
}

#[test]
fn moe_rejects_rank_2_expert_weights() {
    let cfg = MoeConfig::default();
    let module = moe::build(&cfg);
    let mut args = vec![
        Arg::Tensor(HostTensor::zeros(BF16, &[4, 16])),
        Arg::Tensor(HostTensor::zeros(BF16, &[32, 16])),
        Arg::Tensor(HostTensor::zeros(I32, &[1])),
        Arg::Tensor(HostTensor::zeros(I32, &[64])),
        Arg::Tensor(HostTensor::zeros(F32, &[64])),
        Arg::Tensor(HostTensor::zeros(F32, &[4, 16])),
    ];
    let err = interp::run(&module, moe::KERNEL, cfg.grid(1, 16), &mut args).unwrap_err();
    let InterpError::Argument { message } = &err else {
        panic!("expected an argument error, got {err}");
    };
    assert!(
        message.contains(
            "argument 1 (`w`) must be a bf16 tensor of rank 3, got a bf16 tensor of rank 2"
        ),
        "{message}"
    );
}

#[test]
fn moe_run_rejects_slots_naming_missing_tokens() {
    let cfg = MoeConfig::default();
    let x = HostTensor::zeros(BF16, &[4, 16]);
    let w = HostTensor::zeros(BF16, &[2, 16, 16]);
    let mut routing = Routing::from_top_k(2, &[vec![(0, 1.0)]], cfg.tile_rows());
    routing.slot_token[1] = 4;
    let err = moe::run(&cfg, &x, &w, &routing).unwrap_err();
    assert!(
        err.to_string()
            .contains("slot token 4 is not one of the 4 tokens"),
        "{err}"
    );
}
