//! The library's MoE gather–mma–scatter kernel (`tilekit::kernels::moe`) on the interpreter
//! against `Σ w · X[t]·W[e]` in f64, with random top-k routings; its slot layout; and the
//! launcher's refusals.

use rand::seq::SliceRandom;
use rand::Rng;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32, I32};
use tilekit::kernels::moe::{moe_expert_proj, run, Routing};
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// Inputs are bf16 and their products exact in f32; the error is f32 accumulation over d ≤ 96
/// terms, one f32 scaling by the routing weight and f32 sums of ≤ 3 contributions per token: a
/// few ulps (6e-8) relative to |Y|. 1e-5 leaves a wide margin.
const TOLERANCE: f64 = 1e-5;

/// Slots per tile of the library's variant (4 warps of 16 rows).
const TILE_ROWS: usize = 64;

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

/// `Y[t] = Σ_{(e, w) ∈ choices[t]} w · (X[t] · W[e])` in f64, X row-major `[T, d]`, W `[E, d, f]`.
fn reference(x: &[f64], w: &[f64], choices: &[Vec<(usize, f32)>], d: usize, f: usize) -> Vec<f64> {
    let mut y = vec![0.0; choices.len() * f];
    for (t, cs) in choices.iter().enumerate() {
        for &(e, weight) in cs {
            for j in 0..f {
                let dot: f64 = (0..d).map(|k| x[t * d + k] * w[(e * d + k) * f + j]).sum();
                y[t * f + j] += f64::from(weight) * dot;
            }
        }
    }
    y
}

/// Runs tokens `[t, d]` through `e` experts `[d, f]`, each token routed to `k` of `routed_to`.
fn check((t, d, f, e, k): (usize, usize, usize, usize, usize), routed_to: &[usize]) {
    let mut rng = TestRng::fresh();
    let x = rng.tensor(BF16, &[t, d], -1.0, 1.0);
    let w = rng.tensor(BF16, &[e, d, f], -1.0, 1.0);
    let choices = top_k(&mut rng, t, routed_to, k);
    let routing = Routing::from_top_k(e, &choices, TILE_ROWS);
    let y = run(&Device::Cpu, &x, &w, &routing)
        .unwrap_or_else(|err| panic!("seed {}: {err}", rng.seed));
    let want = reference(&x.to_vec(), &w.to_vec(), &choices, d, f);
    let err = normalized_max_error(&y.to_vec(), &want);
    assert!(
        err <= TOLERANCE,
        "moe T {t} d {d} f {f} E {e} top-{k}: max|Y − ref| / max|ref| = {err:.3e} > {TOLERANCE:.0e}; seed {}",
        rng.seed
    );
}

#[test]
fn moe_matches_the_reference_with_tile_multiples() {
    check((64, 64, 64, 4, 2), &[0, 1, 2, 3]);
}

#[test]
fn moe_matches_the_reference_with_partial_tiles() {
    // d and f not multiples of the tiles, expert runs padded with -1 slots, several slot tiles
    // per expert for T = 100, top-3.
    check((37, 48, 80, 3, 2), &[0, 1, 2]);
    check((100, 96, 40, 5, 3), &[0, 1, 2, 3, 4]);
}

#[test]
fn moe_skips_experts_without_tokens() {
    // Expert 1 of 3 gets no token, so it has no slot tile.
    check((50, 32, 32, 3, 2), &[0, 2]);
}

#[test]
fn routing_pads_each_expert_run_to_whole_tiles() {
    let choices = vec![vec![(1, 0.5), (0, 0.25)], vec![(1, 1.0)]];
    let r = Routing::from_top_k(3, &choices, 16);
    let (experts, tokens, weights) = (
        r.tile_expert.to_vec(),
        r.slot_token.to_vec(),
        r.slot_weight.to_vec(),
    );
    assert_eq!(experts, vec![0.0, 1.0]);
    assert_eq!(&tokens[..2], &[0.0, -1.0]);
    assert_eq!(&tokens[16..19], &[0.0, 1.0, -1.0]);
    assert_eq!(&weights[16..18], &[0.5, 1.0]);
    assert_eq!(tokens.len(), 32);
}

#[test]
fn moe_rejects_rank_2_expert_weights() {
    let x = HostTensor::zeros(BF16, &[4, 16]);
    let w = HostTensor::zeros(BF16, &[32, 16]);
    let (te, st, sw) = (
        HostTensor::zeros(I32, &[1]),
        HostTensor::zeros(I32, &[64]),
        HostTensor::zeros(F32, &[64]),
    );
    let mut y = HostTensor::zeros(F32, &[4, 16]);
    let err = moe_expert_proj::<16, 4, 64, 32>::launch(
        &Device::Cpu,
        [1, 1, 1],
        &x,
        &w,
        &te,
        &st,
        &sw,
        &mut y,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`w`") && err.contains('3'), "{err}");
}

#[test]
fn moe_rejects_slots_naming_missing_tokens() {
    let x = HostTensor::full(BF16, &[4, 16], 0.5);
    let w = HostTensor::full(BF16, &[2, 16, 16], 0.25);
    let routing = Routing::from_top_k(2, &[vec![(0, 1.0)]], TILE_ROWS);
    let mut tokens = routing.slot_token.to_vec();
    tokens[1] = 4.0;
    let routing = Routing {
        slot_token: HostTensor::new(I32, &[tokens.len()], &tokens).unwrap(),
        ..routing
    };
    // The index check (on by default on the cpu device) refuses the gather of a row past X.
    let err = run(&Device::Cpu, &x, &w, &routing).unwrap_err().to_string();
    assert!(
        err.contains("gather_rows") && err.contains("row index 4 is outside the view's 4 rows"),
        "{err}"
    );
}
