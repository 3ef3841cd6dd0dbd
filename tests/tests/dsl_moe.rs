//! The MoE projection written in the DSL against `Σ w · X[t]·W[e]` in f64
//! (`tilekit_examples::moe::reference`).

use tilekit::ir::print_module;
use tilekit::ir::ScalarType::BF16;
use tilekit::kernels::moe::{moe_expert_proj, run, Routing};
use tilekit::Device;
use tilekit_examples::moe;
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// As in interp_moe.rs: f32 accumulation of exact bf16 products.
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
        let ex = moe::Routing::from_top_k(e, &choices, 64);
        let ints = |v: &[i32]| v.iter().map(|&i| f64::from(i)).collect::<Vec<_>>();
        assert_eq!(routing.tile_expert.to_vec(), ints(&ex.tile_expert));
        assert_eq!(routing.slot_token.to_vec(), ints(&ex.slot_token));
        let y = run(&Device::Cpu, &x, &w, &routing)
            .unwrap_or_else(|err| panic!("seed {}: {err}", rng.seed));
        let want = moe::reference(&x.to_vec(), &w.to_vec(), &choices, d, f);
        let err = normalized_max_error(&y.to_vec(), &want);
        assert!(
            err <= TOLERANCE,
            "T {t} d {d} f {f} E {e}: error {err:.3e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn dsl_moe_tile_ir() {
    insta::assert_snapshot!(print_module(moe_expert_proj::<16, 4, 64, 32>::module()));
}
