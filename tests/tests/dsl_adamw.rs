//! The AdamW step written in the DSL against the formula in f64
//! (`tilekit::kernels::optim::reference::adamw`, torch's definition).

use tilekit::ir::print_module;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::optim::reference::{adamw, Adam64};
use tilekit::kernels::optim::{adamw_step, step, Hyper};
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// Every quantity is computed in f32 from f32 inputs; each output is a handful of f32 roundings
/// (relative 2⁻²⁴ ≈ 6e-8 each) of terms no larger than max|ref| (p: |p| ≤ 1 dominates the
/// lr-sized update; m, v: convex combinations). 1e-6 of max|ref| is ≈ 16 ulps.
const TOLERANCE: f64 = 1e-6;

#[test]
fn dsl_adamw_steps_match_the_reference() {
    let mut rng = TestRng::fresh();
    for n in [1024, 1000, 5, 3000] {
        let mut p = rng.tensor(F32, &[n], -1.0, 1.0);
        let mut m = rng.tensor(F32, &[n], -0.1, 0.1);
        let mut v = rng.tensor(F32, &[n], 0.0, 0.01);
        for t in 1..=3 {
            let g = rng.tensor(F32, &[n], -1.0, 1.0);
            let h = Hyper {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
                step: t,
            };
            let h64 = Adam64 {
                lr: f64::from(h.lr),
                beta1: f64::from(h.beta1),
                beta2: f64::from(h.beta2),
                eps: f64::from(h.eps),
                weight_decay: f64::from(h.weight_decay),
            };
            let (mut p_ref, mut m_ref, mut v_ref) = (p.to_vec(), m.to_vec(), v.to_vec());
            adamw(
                &mut p_ref,
                &g.to_vec(),
                &mut m_ref,
                &mut v_ref,
                &h64,
                t as i32,
            );
            step(&Device::Cpu, &mut p, &g, &mut m, &mut v, &h)
                .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
            for (name, got, want) in [("p", &p, p_ref), ("m", &m, m_ref), ("v", &v, v_ref)] {
                let err = normalized_max_error(&got.to_vec(), &want);
                assert!(
                    err <= TOLERANCE,
                    "n {n} step {t} {name}: error {err:.3e}; seed {}",
                    rng.seed
                );
            }
        }
    }
}

#[test]
fn dsl_adamw_tile_ir() {
    insta::assert_snapshot!(print_module(adamw_step::<256, 4>::module()));
}
