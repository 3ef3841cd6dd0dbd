//! The AdamW step on the interpreter against the formula in f64.

use tilekit::ir::interp::{self, Arg, HostTensor, InterpError};
use tilekit::ir::ScalarType::{F32, I32};
use tilekit_examples::adamw::{self, AdamWConfig, AdamWHyper, AdamWState};
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// Every quantity is computed in f32 from f32 inputs; the reference uses the same inputs in f64.
/// Each output is a handful of f32 roundings (relative 2⁻²⁴ ≈ 6e-8 each) of terms no larger than
/// max|ref| (p: |p| ≤ 1 dominates the lr-sized update; m, v: convex combinations). 1e-6 of
/// max|ref| is ≈ 16 ulps.
const TOLERANCE: f64 = 1e-6;

const HYPER: AdamWHyper = AdamWHyper {
    lr: 1e-2,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.1,
    step: 1,
};

/// Runs `steps` consecutive steps (fresh gradients each) on a buffer of `n` and compares p, m
/// and v after each with the reference applied to the same inputs.
fn check(cfg: &AdamWConfig, n: usize, first_step: u32, steps: u32) {
    let mut rng = TestRng::fresh();
    let mut state = AdamWState {
        p: rng.tensor(F32, &[n], -1.0, 1.0),
        m: rng.tensor(F32, &[n], -0.1, 0.1),
        // v ≥ 0 (a running mean of squares).
        v: rng.tensor(F32, &[n], 0.0, 0.01),
    };
    for step in first_step..first_step + steps {
        let hyper = AdamWHyper { step, ..HYPER };
        let g = rng.tensor(F32, &[n], -1.0, 1.0);
        let (p_ref, m_ref, v_ref) = adamw::reference(
            &state.p.to_vec(),
            &g.to_vec(),
            &state.m.to_vec(),
            &state.v.to_vec(),
            &hyper,
        );
        let p_before = state.p.to_vec();
        adamw::run(cfg, &mut state, &g, &hyper)
            .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        for (name, out, want) in [
            ("p", &state.p, &p_ref),
            ("m", &state.m, &m_ref),
            ("v", &state.v, &v_ref),
        ] {
            let err = normalized_max_error(&out.to_vec(), want);
            eprintln!("adamw n {n} step {step} {name}: normalized max error {err:.3e}");
            assert!(
                err <= TOLERANCE,
                "adamw n {n} step {step}: max|{name} − ref| / max|ref| = {err:.3e} > {TOLERANCE:.0e}; seed {}",
                rng.seed
            );
        }
        // The step moved every parameter (by about lr), far more than the tolerance: the
        // comparison above is not vacuous.
        let moved = normalized_max_error(&p_before, &p_ref);
        assert!(
            moved > 100.0 * TOLERANCE,
            "step {step} barely moved p ({moved:.3e})"
        );
    }
}

#[test]
fn adamw_step_matches_the_formula_on_a_full_buffer() {
    check(&AdamWConfig::default(), 4096, 1, 2);
}

#[test]
fn adamw_step_matches_the_formula_with_a_masked_tail() {
    check(&AdamWConfig::default(), 1000, 1, 3);
    check(&AdamWConfig::default(), 7, 10, 1);
}

#[test]
fn adamw_step_with_short_chunks_and_one_warp_matches() {
    check(
        &AdamWConfig {
            chunk: 64,
            warps: 1,
        },
        1000,
        5,
        1,
    );
}

#[test]
fn adamw_leaves_parameters_past_the_end_untouched() {
    // A view of the first 100 of 128 elements: the masked tail must not write the rest.
    let mut rng = TestRng::fresh();
    let storage = rng.uniform(128, -1.0, 1.0);
    let view = |s: &[f64]| HostTensor::strided(F32, &[100], &[1], s).unwrap();
    let mut state = AdamWState {
        p: view(&storage),
        m: view(&storage),
        v: view(&vec![0.5; 128]),
    };
    let g = view(&storage);
    adamw::run(&AdamWConfig::default(), &mut state, &g, &HYPER).unwrap();
    assert_eq!(
        &state.p.storage()[100..],
        &HostTensor::new(F32, &[28], &storage[100..])
            .unwrap()
            .to_vec()[..],
        "seed {}",
        rng.seed
    );
}

#[test]
fn adamw_rejects_an_i32_gradient() {
    let cfg = AdamWConfig::default();
    let module = adamw::build(&cfg);
    let mut args = vec![
        Arg::Tensor(HostTensor::zeros(F32, &[16])),
        Arg::Tensor(HostTensor::zeros(I32, &[16])),
        Arg::Tensor(HostTensor::zeros(F32, &[16])),
        Arg::Tensor(HostTensor::zeros(F32, &[16])),
    ];
    args.extend([1e-3, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001].map(Arg::f32));
    let err = interp::run(&module, adamw::KERNEL, cfg.grid(16), &mut args).unwrap_err();
    let InterpError::Argument { message } = &err else {
        panic!("expected an argument error, got {err}");
    };
    assert!(
        message.contains("argument 1 (`g`) must be a f32 tensor of rank 1, got a i32 tensor"),
        "{message}"
    );
}

#[test]
fn adamw_run_rejects_step_zero_and_mismatched_lengths() {
    let t = |n| HostTensor::zeros(F32, &[n]);
    let mut state = AdamWState {
        p: t(8),
        m: t(8),
        v: t(8),
    };
    let cfg = AdamWConfig::default();
    let err = adamw::run(&cfg, &mut state, &t(9), &HYPER).unwrap_err();
    assert!(
        err.to_string().contains("`g` has 9 elements but p has 8"),
        "{err}"
    );
    let hyper = AdamWHyper { step: 0, ..HYPER };
    let err = adamw::run(&cfg, &mut state, &t(8), &hyper).unwrap_err();
    assert!(err.to_string().contains("starts at 1"), "{err}");
}
