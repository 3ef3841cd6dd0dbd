//! The MoE projection written in the DSL against `Σ w · X[t]·W[e]` in f64 (this file's
//! [`reference`]), and its host-side slot layout against the layout written out from its rule.

use tilekit::ir::print_module;
use tilekit::ir::ScalarType::BF16;
use tilekit::kernels::moe::{moe_expert_proj, run, Routing};
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// Inputs are bf16 and their products exact in f32; the error is f32 accumulation over d ≤ 64
/// terms, one f32 scaling by the routing weight and f32 sums of ≤ 2 contributions per token: a
/// few ulps of the largest output, so 1e-5 of max|ref| has ample room.
const TOLERANCE: f64 = 1e-5;

#[test]
fn dsl_moe_matches_the_reference() {
    let mut rng = TestRng::fresh();
    // (tokens, d, f, experts): tile multiples, then partial tiles everywhere and an idle expert.
    for (t, d, f, e) in [(64, 64, 64, 2), (37, 40, 70, 4)] {
        let x = rng.tensor(BF16, &[t, d], -1.0, 1.0);
        let w = rng.tensor(BF16, &[e, d, f], -1.0, 1.0);
        // Token i goes to experts i mod (e−1) and (i+1) mod (e−1): expert e−1 gets no token.
        let busy = (e - 1).max(1);
        let choices: Vec<Vec<(usize, f32)>> = (0..t)
            .map(|i| {
                let a = i % busy;
                let b = (i + 1) % busy;
                let mut c = vec![(a, 0.1 + (i % 7) as f32 / 10.0)];
                if b != a {
                    c.push((b, 0.3));
                }
                c
            })
            .collect();
        let routing = Routing::from_top_k(e, &choices, 64);
        let (tile_expert, slot_token) = slot_layout(e, &choices, 64);
        assert_eq!(routing.tile_expert.to_vec(), tile_expert);
        assert_eq!(routing.slot_token.to_vec(), slot_token);
        let y = run(&Device::Cpu, &x, &w, &routing)
            .unwrap_or_else(|err| panic!("seed {}: {err}", rng.seed));
        let want = reference(&x.to_vec(), &w.to_vec(), &choices, d, f);
        let err = normalized_max_error(&y.to_vec(), &want);
        assert!(
            err <= TOLERANCE,
            "T {t} d {d} f {f} E {e}: error {err:.3e}; seed {}",
            rng.seed
        );
    }
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

/// The slot layout from its rule: per expert in order, its tokens in order, padded with -1 to a
/// whole number of `tile` slots; each tile names its expert. `(tile_expert, slot_token)`.
fn slot_layout(experts: usize, choices: &[Vec<(usize, f32)>], tile: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut tile_expert, mut slot_token) = (Vec::new(), Vec::new());
    for e in 0..experts {
        let tokens: Vec<f64> = (0..choices.len())
            .filter(|&t| choices[t].iter().any(|c| c.0 == e))
            .map(|t| t as f64)
            .collect();
        let tiles = tokens.len().div_ceil(tile);
        tile_expert.extend(std::iter::repeat_n(e as f64, tiles));
        for i in 0..tiles * tile {
            slot_token.push(tokens.get(i).copied().unwrap_or(-1.0));
        }
    }
    (tile_expert, slot_token)
}

#[test]
fn dsl_moe_tile_ir() {
    insta::assert_snapshot!(print_module(moe_expert_proj::<16, 4, 64, 32>::module()));
}
