//! The optimizer API (`tilekit::kernels::optim`): each optimizer over ten consecutive steps on a
//! list of parameters of mixed shapes (1-D biases, 2-D weights, odd sizes), against an f64
//! reference of its definition, on the interpreter and the sm_80 PTX emulator; and the options
//! and lists it refuses.
//!
//! Error model (u = 2⁻²⁴, the f32 unit roundoff): a step rounds the new weight once (≤ u·|p|)
//! and adds `lr` times the error of the update direction. For AdamW and Adam-mini the reference
//! runs its own ten steps from the same zero state and gradients, so the bounds grow with the
//! step count. Lion's update is a sign, which f32 may flip where `c` lies within rounding of 0,
//! and 8-bit Adam's codes may land on the neighbouring code next to a boundary; those two are
//! checked step by step from the kernel's own state, where the flip can be allowed exactly
//! where rounding permits it (and nowhere else). Muon's update goes through bf16 products; it is
//! checked step by step against the f64 step, with the tolerance the bf16 error model gives.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::kernels::muon;
use tilekit::kernels::optim::reference::{self, Adam64};
use tilekit::kernels::optim::{
    Adam8bit, Adam8bitConfig, AdamMini, AdamMiniConfig, AdamW, AdamWConfig, Lion, LionConfig,
    LionHyper, Muon, MuonConfig, OptimError, Partition,
};
use tilekit::kernels::optim8;
use tilekit::{Device, Tensor};

const STEPS: u32 = 10;
/// f32's unit roundoff.
const U: f64 = 1.0 / 16_777_216.0;

/// Parameter shapes: a one-element and an odd-length bias, a vector past four 1024-element
/// blocks, two odd 2-D weights, and an empty tensor.
const SHAPES: [&[usize]; 6] = [&[1], &[17], &[4099], &[70, 130], &[32, 24], &[0]];
/// Smaller shapes of the same kinds for the emulator (it runs every lane of every warp).
const EMU_SHAPES: [&[usize]; 4] = [&[1], &[17], &[33, 16], &[300]];

fn cases() -> [(&'static str, &'static [&'static [usize]]); 2] {
    [("cpu", &SHAPES), ("emu:sm_80", &EMU_SHAPES)]
}

fn random(rng: &mut Rng, shapes: &[&[usize]], device: &Device, lo: f64, hi: f64) -> Vec<Tensor> {
    random_of(F32, rng, shapes, device, lo, hi)
}

fn random_of(
    dtype: tilekit::ir::ScalarType,
    rng: &mut Rng,
    shapes: &[&[usize]],
    device: &Device,
    lo: f64,
    hi: f64,
) -> Vec<Tensor> {
    shapes
        .iter()
        .map(|s| Tensor::from_host(&rng.tensor(dtype, s, lo, hi), device).unwrap())
        .collect()
}

fn values(ts: &[Tensor]) -> Vec<Vec<f64>> {
    ts.iter().map(|t| t.to_f64_vec().unwrap()).collect()
}

fn max_abs(xs: &[Vec<f64>]) -> f64 {
    xs.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// `max |got − want|` over all entries, divided by `max |want|` over all entries.
fn list_error(got: &[Vec<f64>], want: &[Vec<f64>]) -> f64 {
    let flat = |x: &[Vec<f64>]| x.iter().flatten().copied().collect::<Vec<_>>();
    normalized_max_error(&flat(got), &flat(want))
}

fn adam64(lr: f32, betas: (f32, f32), eps: f32, weight_decay: f32) -> Adam64 {
    Adam64 {
        lr: f64::from(lr),
        beta1: f64::from(betas.0),
        beta2: f64::from(betas.1),
        eps: f64::from(eps),
        weight_decay: f64::from(weight_decay),
    }
}

/// Ten AdamW steps (with a learning-rate change halfway, as a schedule makes) against ten f64
/// steps of torch's definition from the same zero state. Bound: each step adds ≤ u·|p| from
/// rounding the weight, plus lr times the update's error, ≤ 64u (the update is a ratio of
/// moments accumulated with a few roundings each; |m̂|/√v̂ ≤ √t for t ≤ 10 steps).
#[test]
fn adamw_ten_steps_match_torch_definition() {
    for (name, shapes) in cases() {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let params = random(&mut rng, shapes, &device, -1.0, 1.0);
        let mut want = values(&params);
        let mut wm: Vec<Vec<f64>> = want.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut wv = wm.clone();
        let mut cfg = AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(cfg).unwrap();
        for t in 1..=STEPS {
            if t == 6 {
                cfg.lr = 3e-3;
                opt.config = cfg;
            }
            let grads = random(&mut rng, shapes, &device, -1.0, 1.0);
            opt.step(&device, &params, &grads)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let h = adam64(cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay);
            for (e, g) in values(&grads).iter().enumerate() {
                reference::adamw(&mut want[e], g, &mut wm[e], &mut wv[e], &h, t as i32);
            }
        }
        let scale = max_abs(&want);
        let tol = f64::from(STEPS) * U * (2.0 + 1e-2 * 64.0 / scale);
        let err = list_error(&values(&params), &want);
        assert!(
            err <= tol,
            "{name}: p error {err:.2e} > {tol:.2e} (seed {})",
            rng.seed
        );
        let em = list_error(&values(opt.exp_avg()), &wm);
        let ev = list_error(&values(opt.exp_avg_sq()), &wv);
        assert!(
            em <= 64.0 * U && ev <= 64.0 * U,
            "{name}: exp_avg error {em:.2e}, exp_avg_sq {ev:.2e} (seed {})",
            rng.seed
        );
        assert_eq!(opt.steps(), STEPS);
    }
}

/// A list of f32 and bf16 parameters interleaved.
const MIXED: [(tilekit::ir::ScalarType, &[usize]); 6] = [
    (F32, &[17]),
    (BF16, &[70, 130]),
    (BF16, &[33]),
    (F32, &[32, 24]),
    (BF16, &[1]),
    (F32, &[4099]),
];
/// Smaller ones for the emulator.
const EMU_MIXED: [(tilekit::ir::ScalarType, &[usize]); 4] =
    [(BF16, &[33, 16]), (F32, &[17]), (BF16, &[1]), (F32, &[300])];

/// `x` rounded to the nearest bf16 (ties to even).
fn bf16(x: f64) -> f64 {
    HostTensor::new(BF16, &[1], &[x]).unwrap().to_vec()[0]
}

/// Ten AdamW steps over a list mixing f32 and bf16 parameters: one launch group per dtype
/// (in order of first appearance, as torch's foreach groups), the f32 parameters against ten
/// f64 steps from the zero state (the bound of `adamw_ten_steps_match_torch_definition`), the
/// bf16 ones step by step from the kernel's state before each step: the new weight must be
/// the f64 step's value rounded to bf16, or the other neighbour only where the f64 value
/// lies within the f32 update's error `e` of a rounding boundary (the weight lies between
/// `bf16(w − e)` and `bf16(w + e)`); their f32 moments within f32 rounding of the f64 step.
#[test]
fn adamw_groups_a_mixed_f32_and_bf16_list_by_dtype_and_matches_f64() {
    for (name, list) in [("cpu", &MIXED[..]), ("emu:sm_80", &EMU_MIXED[..])] {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let make = |rng: &mut Rng| -> Vec<Tensor> {
            list.iter()
                .map(|(d, s)| Tensor::from_host(&rng.tensor(*d, s, -1.0, 1.0), &device).unwrap())
                .collect()
        };
        let params = make(&mut rng);
        let cfg = AdamWConfig {
            lr: 1e-2,
            ..AdamWConfig::default()
        };
        let h = adam64(cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay);
        let mut want = values(&params);
        let mut wm: Vec<Vec<f64>> = want.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut wv = wm.clone();
        let mut opt = AdamW::new(cfg).unwrap();
        let is_bf16: Vec<bool> = list.iter().map(|(d, _)| *d == BF16).collect();
        let mut ties = 0;
        for t in 1..=STEPS {
            let before = values(&params);
            let (m_before, v_before) = if t == 1 {
                (wm.clone(), wv.clone())
            } else {
                (values(opt.exp_avg()), values(opt.exp_avg_sq()))
            };
            let grads = make(&mut rng);
            opt.step(&device, &params, &grads)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let (got_p, got_m, got_v) = (
                values(&params),
                values(opt.exp_avg()),
                values(opt.exp_avg_sq()),
            );
            for (e, g) in values(&grads).iter().enumerate() {
                if !is_bf16[e] {
                    reference::adamw(&mut want[e], g, &mut wm[e], &mut wv[e], &h, t as i32);
                    continue;
                }
                let (mut wp, mut m, mut v) =
                    (before[e].clone(), m_before[e].clone(), v_before[e].clone());
                reference::adamw(&mut wp, g, &mut m, &mut v, &h, t as i32);
                for i in 0..wp.len() {
                    let err = 4.0 * U * before[e][i].abs().max(1.0) + h.lr * 64.0 * U;
                    let (lo, hi) = (bf16(wp[i] - err), bf16(wp[i] + err));
                    ties += usize::from(lo != hi);
                    assert!(
                        lo <= got_p[e][i] && got_p[e][i] <= hi,
                        "{name}: bf16 entry {e}[{i}] at step {t}: {} outside [{lo}, {hi}] \
                         (f64 step {}, seed {})",
                        got_p[e][i],
                        wp[i],
                        rng.seed
                    );
                    let bm = 4.0 * U * (m_before[e][i].abs() + g[i].abs());
                    let bv = 4.0 * U * (v_before[e][i] + g[i] * g[i]);
                    assert!(
                        (got_m[e][i] - m[i]).abs() <= bm && (got_v[e][i] - v[i]).abs() <= bv,
                        "{name}: bf16 entry {e}[{i}] at step {t}: m {} vs {}, v {} vs {} \
                         (seed {})",
                        got_m[e][i],
                        m[i],
                        got_v[e][i],
                        v[i],
                        rng.seed
                    );
                }
            }
            let groups: Vec<_> = opt.last_groups().to_vec();
            let want_groups: Vec<_> = [list[0].0, if list[0].0 == F32 { BF16 } else { F32 }]
                .into_iter()
                .map(|d| {
                    (
                        d,
                        (0..list.len())
                            .filter(|&i| list[i].0 == d)
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            assert_eq!(groups, want_groups, "{name}: one launch per dtype");
        }
        // Weights within the update's error of a bf16 rounding boundary are rare.
        let bf16_elements: usize = list
            .iter()
            .filter(|(d, _)| *d == BF16)
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert!(
            ties * 100 <= bf16_elements * STEPS as usize,
            "{name}: {ties} weights near a rounding boundary"
        );
        let f32_of = |xs: &[Vec<f64>]| -> Vec<Vec<f64>> {
            xs.iter()
                .zip(&is_bf16)
                .filter(|(_, b)| !**b)
                .map(|(x, _)| x.clone())
                .collect()
        };
        let want_f32 = f32_of(&want);
        let tol = f64::from(STEPS) * U * (2.0 + 1e-2 * 64.0 / max_abs(&want_f32));
        let err = list_error(&f32_of(&values(&params)), &want_f32);
        assert!(
            err <= tol,
            "{name}: f32 p error {err:.2e} > {tol:.2e} (seed {})",
            rng.seed
        );
    }
}

/// A bf16 parameter with an f32 gradient, and a dtype AdamW does not update, are refused by
/// entry, naming what was expected.
#[test]
fn adamw_refuses_a_gradient_of_another_dtype_and_other_dtypes() {
    let device = Device::Cpu;
    let z = |d, s: &[usize]| Tensor::zeros(d, s, &device).unwrap();
    let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
    let e = opt
        .step(
            &device,
            &[z(F32, &[3]), z(BF16, &[4])],
            &[z(F32, &[3]), z(F32, &[4])],
        )
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(
            e,
            OptimError::Entry {
                what: "grads",
                entry: 1,
                ..
            }
        ) && text.contains("bf16"),
        "{text}"
    );
    let f16 = tilekit::ir::ScalarType::F16;
    let e = opt
        .step(&device, &[z(f16, &[3])], &[z(f16, &[3])])
        .unwrap_err();
    assert!(e.to_string().contains("f32 or bf16"), "{e}");
    assert_eq!(opt.steps(), 0);
}

/// The mixed-precision step writes the bf16 model copy of exactly the master weights it
/// computed, and those master weights follow the f64 steps from bf16 gradients.
#[test]
fn adamw_with_model_copy_writes_bf16_of_the_master_weights() {
    let device = Device::Cpu;
    let mut rng = Rng::fresh();
    let params = random(&mut rng, &SHAPES, &device, -1.0, 1.0);
    let model: Vec<Tensor> = SHAPES
        .iter()
        .map(|s| Tensor::zeros(BF16, s, &device).unwrap())
        .collect();
    let mut want = values(&params);
    let mut wm: Vec<Vec<f64>> = want.iter().map(|p| vec![0.0; p.len()]).collect();
    let mut wv = wm.clone();
    let cfg = AdamWConfig {
        lr: 1e-2,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(cfg).unwrap();
    for t in 1..=STEPS {
        let grads: Vec<Tensor> = SHAPES
            .iter()
            .map(|s| Tensor::from_host(&rng.tensor(BF16, s, -1.0, 1.0), &device).unwrap())
            .collect();
        opt.step_with_model_copy(&device, &params, &grads, &model)
            .unwrap();
        let h = adam64(cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay);
        for (e, g) in values(&grads).iter().enumerate() {
            reference::adamw(&mut want[e], g, &mut wm[e], &mut wv[e], &h, t as i32);
        }
    }
    let tol = f64::from(STEPS) * U * (2.0 + 1e-2 * 64.0 / max_abs(&want));
    let err = list_error(&values(&params), &want);
    assert!(
        err <= tol,
        "p error {err:.2e} > {tol:.2e} (seed {})",
        rng.seed
    );
    for (e, (p, w)) in values(&params).iter().zip(values(&model)).enumerate() {
        let rounded = HostTensor::new(BF16, &[p.len()], p).unwrap().to_vec();
        assert_eq!(rounded, w, "entry {e}: model copy is not bf16(master)");
    }
}

/// Ten Lion steps, each against the f64 step from the kernel's state before it: the weights
/// within one rounding (plus lr·λ·|p|'s), the momentum within three, and the sign of `c` the
/// reference's except where |c| is within [`LionHyper::SIGN_SLACK`] of 0. With `model_copy`,
/// the steps are `step_with_model_copy`'s (f32 master weights, bf16 gradients), and after each
/// the bf16 model copy must be the master weights rounded to nearest even, bit for bit.
fn lion_ten_steps(model_copy: bool) {
    for (name, shapes) in cases() {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let params = random(&mut rng, shapes, &device, -1.0, 1.0);
        let model: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::zeros(BF16, s, &device).unwrap())
            .collect();
        let cfg = LionConfig {
            lr: 1e-2,
            betas: (0.9, 0.99),
            weight_decay: 0.1,
            maximize: false,
        };
        let mut opt = Lion::new(cfg).unwrap();
        let h = LionHyper {
            lr: cfg.lr,
            beta1: cfg.betas.0,
            beta2: cfg.betas.1,
            weight_decay: cfg.weight_decay,
        };
        let (lr, b1, b2, wd) = h.as_f64();
        let mut flips_allowed = 0;
        for t in 1..=STEPS {
            let before = values(&params);
            let m_before = if opt.steps() == 0 {
                before.iter().map(|p| vec![0.0; p.len()]).collect()
            } else {
                values(opt.exp_avg())
            };
            let dtype = if model_copy { BF16 } else { F32 };
            let grads = random_of(dtype, &mut rng, shapes, &device, -1.0, 1.0);
            if model_copy {
                opt.step_with_model_copy(&device, &params, &grads, &model)
            } else {
                opt.step(&device, &params, &grads)
            }
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let (got_p, got_m) = (values(&params), values(opt.exp_avg()));
            for (e, g) in values(&grads).iter().enumerate() {
                let (mut wp, mut wm) = (before[e].clone(), m_before[e].clone());
                let cs = reference::lion(&mut wp, g, &mut wm, lr, b1, b2, wd);
                for i in 0..wp.len() {
                    let near_zero = cs[i].abs() <= LionHyper::SIGN_SLACK;
                    flips_allowed += usize::from(near_zero);
                    let tol = 2.0 * U * before[e][i].abs().max(1.0);
                    let ok = (got_p[e][i] - wp[i]).abs() <= tol
                        || (near_zero && (got_p[e][i] - wp[i]).abs() <= 2.0 * lr + tol);
                    assert!(
                        ok,
                        "{name}: step {t}, entry {e}[{i}] p {} vs {} (c = {:e}, seed {})",
                        got_p[e][i], wp[i], cs[i], rng.seed
                    );
                    assert!(
                        (got_m[e][i] - wm[i]).abs() <= 3.0 * U,
                        "{name}: step {t}, entry {e}[{i}] m {} vs {} (seed {})",
                        got_m[e][i],
                        wm[i],
                        rng.seed
                    );
                }
            }
            if model_copy {
                for (e, (p, w)) in got_p.iter().zip(values(&model)).enumerate() {
                    let want: Vec<f64> = p.iter().map(|&x| bf16(x)).collect();
                    let same = want.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{name}: step {t}, entry {e}: model copy is not bf16(master) (seed {})",
                        rng.seed
                    );
                }
            }
        }
        // A sign flip is allowed for about 1 element in 10⁶ steps: it must stay rare.
        assert!(
            flips_allowed <= 3,
            "{name}: {flips_allowed} elements with c ≈ 0"
        );
    }
}

#[test]
fn lion_ten_steps_match_the_paper() {
    lion_ten_steps(false);
}

#[test]
fn lion_with_model_copy_ten_steps_match_the_paper_and_write_bf16_of_the_master_weights() {
    lion_ten_steps(true);
}

/// Ten Lion steps over a list mixing f32 and bf16 parameters, each step from the kernel's
/// state before it: one launch group per dtype; every weight the f64 step's value (rounded to
/// bf16 for a bf16 weight: between `bf16(w − e)` and `bf16(w + e)`, `e` the f32 update's
/// error), except where `c` lies within [`LionHyper::SIGN_SLACK`] of 0 and f32 may take the
/// other sign; the f32 momentum within three roundings.
#[test]
fn lion_groups_a_mixed_f32_and_bf16_list_by_dtype_and_matches_the_paper() {
    for (name, list) in [("cpu", &MIXED[..]), ("emu:sm_80", &EMU_MIXED[..])] {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let make = |rng: &mut Rng| -> Vec<Tensor> {
            list.iter()
                .map(|(d, s)| Tensor::from_host(&rng.tensor(*d, s, -1.0, 1.0), &device).unwrap())
                .collect()
        };
        let params = make(&mut rng);
        let cfg = LionConfig {
            lr: 1e-2,
            betas: (0.9, 0.99),
            weight_decay: 0.1,
            maximize: false,
        };
        let mut opt = Lion::new(cfg).unwrap();
        let (lr, b1, b2, wd) = LionHyper {
            lr: cfg.lr,
            beta1: cfg.betas.0,
            beta2: cfg.betas.1,
            weight_decay: cfg.weight_decay,
        }
        .as_f64();
        let is_bf16: Vec<bool> = list.iter().map(|(d, _)| *d == BF16).collect();
        let mut near_zero_count = 0;
        for t in 1..=STEPS {
            let before = values(&params);
            let m_before = if t == 1 {
                before.iter().map(|p| vec![0.0; p.len()]).collect()
            } else {
                values(opt.exp_avg())
            };
            let grads = make(&mut rng);
            opt.step(&device, &params, &grads)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let (got_p, got_m) = (values(&params), values(opt.exp_avg()));
            for (e, g) in values(&grads).iter().enumerate() {
                let (mut wp, mut wm) = (before[e].clone(), m_before[e].clone());
                let cs = reference::lion(&mut wp, g, &mut wm, lr, b1, b2, wd);
                for i in 0..wp.len() {
                    let near_zero = cs[i].abs() <= LionHyper::SIGN_SLACK;
                    near_zero_count += usize::from(near_zero);
                    let err = 2.0 * U * before[e][i].abs().max(1.0);
                    let ok = |w: f64| {
                        if is_bf16[e] {
                            bf16(w - err) <= got_p[e][i] && got_p[e][i] <= bf16(w + err)
                        } else {
                            (got_p[e][i] - w).abs() <= err
                        }
                    };
                    // The other sign moves the weight by 2·lr (or lr from a zero sign).
                    let flipped = [wp[i] + lr, wp[i] - lr, wp[i] + 2.0 * lr, wp[i] - 2.0 * lr];
                    assert!(
                        ok(wp[i]) || (near_zero && flipped.into_iter().any(ok)),
                        "{name}: entry {e}[{i}] step {t}: p {} vs {} (c = {:e}, seed {})",
                        got_p[e][i],
                        wp[i],
                        cs[i],
                        rng.seed
                    );
                    assert!(
                        (got_m[e][i] - wm[i]).abs() <= 3.0 * U,
                        "{name}: entry {e}[{i}] step {t}: m {} vs {} (seed {})",
                        got_m[e][i],
                        wm[i],
                        rng.seed
                    );
                }
            }
            let want_groups: Vec<_> = [list[0].0, if list[0].0 == F32 { BF16 } else { F32 }]
                .into_iter()
                .map(|d| {
                    (
                        d,
                        (0..list.len())
                            .filter(|&i| list[i].0 == d)
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            assert_eq!(
                opt.last_groups(),
                want_groups,
                "{name}: one launch per dtype"
            );
        }
        assert!(
            near_zero_count <= 3,
            "{name}: {near_zero_count} elements with c ≈ 0"
        );
    }
}

/// The partitions of the Adam-mini test, one per parameter of `shapes`.
fn partition(shapes: &[&[usize]]) -> Vec<Partition> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, s)| match (s.len(), i % 3) {
            (1, 0) => Partition::PerOutputNeuron,
            (1, 1) => Partition::Whole,
            (1, _) => Partition::PerElement,
            (_, 0) if s[0] % 4 == 0 => Partition::PerHead(4),
            _ => Partition::PerOutputNeuron,
        })
        .collect()
}

fn block_count(p: &Partition, shape: &[usize]) -> usize {
    let n: usize = shape.iter().product();
    if n == 0 {
        return 0;
    }
    match *p {
        Partition::Whole => 1,
        Partition::PerOutputNeuron => shape[0],
        Partition::PerHead(h) => h,
        Partition::PerElement => n,
    }
}

/// Ten Adam-mini steps against ten f64 steps of the paper's algorithm from the same zero state,
/// over per-neuron, per-head, whole-tensor and per-element blocks. Bound: as AdamW, with the
/// block's mean of g² summed in f32 in `cols/32` sequential tile sums of 32 (≤ (cols/32 + 6)·u
/// relative), which √ halves in the update. With `model_copy`, the steps are
/// `step_with_model_copy`'s (f32 master weights, bf16 gradients), and after each the bf16 model
/// copy is the master weights rounded to nearest even.
fn adam_mini_ten_steps(model_copy: bool) {
    for (name, shapes) in cases() {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let params = random(&mut rng, shapes, &device, -1.0, 1.0);
        let parts = partition(shapes);
        let mut want = values(&params);
        let mut wm: Vec<Vec<f64>> = want.iter().map(|p| vec![0.0; p.len()]).collect();
        let mut wv: Vec<Vec<f64>> = shapes
            .iter()
            .zip(&parts)
            .map(|(s, p)| vec![0.0; block_count(p, s)])
            .collect();
        let max_tiles = shapes
            .iter()
            .zip(&parts)
            .map(|(s, p)| {
                let n: usize = s.iter().product();
                (n / block_count(p, s).max(1)).div_ceil(32)
            })
            .max()
            .unwrap() as f64;
        let cfg = AdamMiniConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            ..AdamMiniConfig::default()
        };
        let mut opt = AdamMini::new(cfg, parts).unwrap();
        let h = adam64(cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay);
        let model: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::full(BF16, s, f64::NAN, &device).unwrap())
            .collect();
        for t in 1..=STEPS {
            let dtype = if model_copy { BF16 } else { F32 };
            let grads = random_of(dtype, &mut rng, shapes, &device, -1.0, 1.0);
            if model_copy {
                opt.step_with_model_copy(&device, &params, &grads, &model)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                for (e, (p, w)) in values(&params).iter().zip(values(&model)).enumerate() {
                    let rounded: Vec<f64> = p.iter().map(|&x| bf16(x)).collect();
                    assert_eq!(rounded, w, "{name}: entry {e}, step {t}: model copy");
                }
            } else {
                opt.step(&device, &params, &grads)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            for (e, g) in values(&grads).iter().enumerate() {
                reference::adam_mini(&mut want[e], g, &mut wm[e], &mut wv[e], &h, t as i32);
            }
        }
        let scale = max_abs(&want);
        let tol = f64::from(STEPS) * U * (2.0 + 1e-2 * (64.0 + 2.0 * max_tiles) / scale);
        let err = list_error(&values(&params), &want);
        assert!(
            err <= tol,
            "{name}: p error {err:.2e} > {tol:.2e} (seed {})",
            rng.seed
        );
        let ev = list_error(&values(opt.v()), &wv);
        let tol_v = 4.0 * (max_tiles + 8.0) * U;
        assert!(
            ev <= tol_v,
            "{name}: v error {ev:.2e} > {tol_v:.2e} (seed {})",
            rng.seed
        );
        let v_len: Vec<usize> = opt.v().iter().map(Tensor::len).collect();
        let want_len: Vec<usize> = wv.iter().map(Vec::len).collect();
        assert_eq!(v_len, want_len, "{name}: one v per block");
    }
}

#[test]
fn adam_mini_ten_steps_match_the_paper() {
    adam_mini_ten_steps(false);
}

#[test]
fn adam_mini_with_model_copy_ten_steps_match_the_paper_and_write_bf16_of_the_master_weights() {
    adam_mini_ten_steps(true);
}

/// Ten 8-bit steps, each against bitsandbytes' blockwise algorithm (the f64 reference of
/// `optim8`) from the kernel's state before it. Bounds per element, from the f32 arithmetic:
/// the new first moment `β1·map[c]·absmax + (1 − β1)·g` rounds four times, so it is off by at
/// most 4u·(β1·|map[c]·absmax| + (1 − β1)·|g|) (it may cancel: the bound is absolute); the
/// second moment's terms are positive (4u relative); the weight adds that first-moment error
/// over the denominator and 8u of the update. Codes equal the reference's except where the
/// normalized moment lies within its error (or `BOUNDARY_SLACK`) of a boundary.
#[test]
fn adam8bit_ten_steps_match_bitsandbytes_algorithm() {
    for (name, shapes) in cases() {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let params = random(&mut rng, shapes, &device, -1.0, 1.0);
        let cfg = Adam8bitConfig {
            lr: 1e-2,
            ..Adam8bitConfig::default()
        };
        let mut opt = Adam8bit::new(cfg).unwrap();
        let (b1, b2) = (f64::from(cfg.betas.0), f64::from(cfg.betas.1));
        for t in 1..=STEPS {
            let before = values(&params);
            let states: Vec<optim8::Adam8bit> = if opt.steps() == 0 {
                shapes
                    .iter()
                    .map(|s| optim8::Adam8bit::new(s.iter().product()))
                    .collect()
            } else {
                host_states(&opt)
            };
            let grads = random(&mut rng, shapes, &device, -1.0, 1.0);
            opt.step(&device, &params, &grads)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let h = tilekit::kernels::optim::Hyper {
                lr: cfg.lr,
                beta1: cfg.betas.0,
                beta2: cfg.betas.1,
                eps: cfg.eps,
                weight_decay: cfg.weight_decay,
                step: t,
            };
            let k = optim8::Scalars::of(&h);
            let (step_size, eps_hat, decay) = (
                f64::from(k.step_size),
                f64::from(k.eps_hat),
                f64::from(k.decay),
            );
            let got = values(&params);
            let after_states = host_states(&opt);
            for (e, g) in values(&grads).iter().enumerate() {
                let s = &states[e];
                let (mc, vc) = (s.m_bytes(), s.v_bytes());
                let (ma, va) = (s.m_absmax.to_vec(), s.v_absmax.to_vec());
                let (m_map, v_map) = (s.m_map.to_vec(), s.v_map.to_vec());
                let want =
                    optim8::reference::step(&h, &before[e], g, &mc, &vc, &ma, &va, &m_map, &v_map);
                let after = &after_states[e];
                let (got_ma, got_va) = (after.m_absmax.to_vec(), after.v_absmax.to_vec());
                let (got_mc, got_vc) = (after.m_bytes(), after.v_bytes());
                let mut m_err_of_block = vec![0.0f64; ma.len()];
                let mut m_err = vec![0.0f64; g.len()];
                for i in 0..g.len() {
                    let b = i / optim8::BLOCK;
                    let deq_m = m_map[usize::from(mc[i])] * ma[b];
                    m_err[i] = 4.0 * U * (b1 * deq_m.abs() + (1.0 - b1) * g[i].abs());
                    m_err_of_block[b] = m_err_of_block[b].max(m_err[i]);
                    let v = b2 * v_map[usize::from(vc[i])] * va[b] + (1.0 - b2) * g[i] * g[i];
                    let update = want.p[i] / decay - before[e][i];
                    let ratio = update / step_size;
                    let tol = 2.0 * U * (before[e][i].abs() + want.p[i].abs())
                        + step_size.abs()
                            * (m_err[i] / (v.sqrt() + eps_hat) + 8.0 * U * ratio.abs());
                    assert!(
                        (got[e][i] - want.p[i]).abs() <= tol,
                        "{name}: step {t}, entry {e}[{i}]: p {} vs {} (tolerance {tol:.2e}, seed {})",
                        got[e][i],
                        want.p[i],
                        rng.seed
                    );
                }
                for b in 0..ma.len() {
                    assert!(
                        (got_ma[b] - want.m_absmax[b]).abs() <= m_err_of_block[b]
                            && (got_va[b] - want.v_absmax[b]).abs() <= 4.0 * U * want.v_absmax[b],
                        "{name}: step {t}, entry {e}, block {b}: absmax {} / {} vs {} / {} (seed {})",
                        got_ma[b],
                        got_va[b],
                        want.m_absmax[b],
                        want.v_absmax[b],
                        rng.seed
                    );
                }
                for i in 0..g.len() {
                    let b = i / optim8::BLOCK;
                    // The normalized moment's error: its own, and the absmax's it divides by.
                    let slack_m = if want.m_absmax[b] > 0.0 {
                        2.0 * m_err_of_block[b] / want.m_absmax[b] + 2.0 * U
                    } else {
                        0.0
                    };
                    for (what, got, want, margin, slack) in [
                        ("m", got_mc[i], want.m_codes[i], want.m_margin[i], slack_m),
                        ("v", got_vc[i], want.v_codes[i], want.v_margin[i], 16.0 * U),
                    ] {
                        let near = margin <= slack.max(optim8::BOUNDARY_SLACK);
                        assert!(
                            got == want || (near && got.abs_diff(want) == 1),
                            "{name}: step {t}, entry {e}: code of {what} at {i} is {got}, expected {want} (seed {})",
                            rng.seed
                        );
                    }
                }
            }
        }
    }
}

/// Ten Muon steps on matrices of odd shapes (wide, tall, one row), each against the f64 step of
/// `torch.optim.Muon` from the kernel's state before it: the momentum within f32 rounding, the
/// orthogonalized update within the bf16 error model's tolerance. With `model_copy`, the steps
/// are `step_with_model_copy`'s (f32 master weights, bf16 gradients), and after each the bf16
/// model copy must be the master weights rounded to nearest even, bit for bit.
fn muon_ten_steps(model_copy: bool) {
    let cases: [(&str, &[&[usize]]); 2] = [
        ("cpu", &[&[17, 33], &[40, 24], &[1, 20]]),
        ("emu:sm_80", &[&[17, 33], &[20, 3]]),
    ];
    for (name, shapes) in cases {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let params = random(&mut rng, shapes, &device, -1.0, 1.0);
        let model: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::zeros(BF16, s, &device).unwrap())
            .collect();
        let cfg = MuonConfig {
            lr: 0.02,
            ..MuonConfig::default()
        };
        let mut opt = Muon::new(cfg).unwrap();
        for t in 1..=STEPS {
            let before = values(&params);
            let bufs: Vec<Vec<f64>> = if opt.steps() == 0 {
                before.iter().map(|p| vec![0.0; p.len()]).collect()
            } else {
                opt.states()
                    .iter()
                    .map(|s| s.momentum_buffer.to_f64_vec().unwrap())
                    .collect()
            };
            let dtype = if model_copy { BF16 } else { F32 };
            let grads = random_of(dtype, &mut rng, shapes, &device, -1.0, 1.0);
            if model_copy {
                opt.step_with_model_copy(&device, &params, &grads, &model)
            } else {
                opt.step(&device, &params, &grads)
            }
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = values(&params);
            for (e, g) in values(&grads).iter().enumerate() {
                let shape = [1, shapes[e][0], shapes[e][1]];
                let exact = muon::reference(&before[e], g, &bufs[e], shape, &cfg, false);
                let bf16_model = muon::reference(&before[e], g, &bufs[e], shape, &cfg, true);
                let update = muon::recovered_update(&before[e], &got[e], shape, &cfg);
                let tol = muon::update_tolerance(&exact.ortho, &bf16_model.ortho);
                let err = normalized_max_error(&update, &exact.ortho);
                assert!(
                    err <= tol,
                    "{name}: step {t}, {shape:?}: update error {err:.2e} > {tol:.2e} (seed {})",
                    rng.seed
                );
                let buf = opt.states()[e].momentum_buffer.to_f64_vec().unwrap();
                let eb = normalized_max_error(&buf, &exact.momentum_buffer);
                assert!(
                    eb <= 4.0 * U,
                    "{name}: step {t}: momentum error {eb:.2e} (seed {})",
                    rng.seed
                );
            }
            if model_copy {
                for (e, (p, w)) in got.iter().zip(values(&model)).enumerate() {
                    let want: Vec<f64> = p.iter().map(|&x| bf16(x)).collect();
                    let same = want.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{name}: step {t}, entry {e}: model copy is not bf16(master) (seed {})",
                        rng.seed
                    );
                }
            }
        }
    }
}

#[test]
fn muon_ten_steps_match_torch_definition() {
    muon_ten_steps(false);
}

#[test]
fn muon_with_model_copy_ten_steps_match_torch_definition_and_write_bf16_of_the_master_weights() {
    muon_ten_steps(true);
}

#[test]
fn unsupported_options_are_refused_by_name() {
    let amsgrad = AdamW::new(AdamWConfig {
        amsgrad: true,
        ..AdamWConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        amsgrad.contains("`amsgrad = true` is not supported"),
        "{amsgrad}"
    );
    let maximize = Lion::new(LionConfig {
        maximize: true,
        ..LionConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(maximize.contains("`maximize = true`"), "{maximize}");
    let beta = Adam8bit::new(Adam8bitConfig {
        betas: (0.9, 1.0),
        ..Adam8bitConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        beta.contains("`betas.1` must be in [0, 1), got 1"),
        "{beta}"
    );
    let lr = AdamMini::new(
        AdamMiniConfig {
            lr: f32::NAN,
            ..AdamMiniConfig::default()
        },
        vec![],
    )
    .unwrap_err();
    assert!(matches!(lr, OptimError::Option { name: "lr", .. }), "{lr}");
}

#[test]
fn mismatched_lists_are_refused() {
    let device = Device::Cpu;
    let t = |shape: &[usize]| Tensor::zeros(F32, shape, &device).unwrap();
    let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
    let err = opt
        .step(&device, &[t(&[3]), t(&[2, 2])], &[t(&[3])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("grads holds 1 tensors, expected 2"), "{err}");
    let err = opt
        .step(&device, &[t(&[3])], &[t(&[4])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("grads entry 0: expected a contiguous f32 tensor of shape [3]"),
        "{err}"
    );
    let half = Tensor::zeros(tilekit::ir::ScalarType::F16, &[3], &device).unwrap();
    let err = opt
        .step(&device, &[half], &[t(&[3])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("params entry 0: expected a contiguous f32 or bf16 tensor"),
        "{err}"
    );
    // After a first step, the list of shapes is fixed.
    opt.step(&device, &[t(&[3])], &[t(&[3])]).unwrap();
    let err = opt
        .step(&device, &[t(&[4])], &[t(&[4])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shape [3] (the state's, from the first step)"),
        "{err}"
    );
    let wide = t(&[4, 6]);
    let strided = wide.transpose(0, 1).unwrap();
    let mut lion = Lion::new(LionConfig::default()).unwrap();
    let err = lion
        .step(&device, &[strided], &[t(&[6, 4])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("strided"), "{err}");
}

#[test]
fn muon_refuses_vectors_and_adam_mini_refuses_heads_that_do_not_divide() {
    let device = Device::Cpu;
    let t = |shape: &[usize]| Tensor::zeros(F32, shape, &device).unwrap();
    let mut muon = Muon::new(MuonConfig::default()).unwrap();
    let err = muon
        .step(&device, &[t(&[4, 4]), t(&[4])], &[t(&[4, 4]), t(&[4])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("params entry 1: expected a matrix"), "{err}");
    let mut mini = AdamMini::new(AdamMiniConfig::default(), vec![Partition::PerHead(3)]).unwrap();
    let err = mini
        .step(&device, &[t(&[8, 2])], &[t(&[8, 2])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 heads, which must be at least 1 and divide the 8 rows"),
        "{err}"
    );
    let err = mini
        .step(&device, &[t(&[8, 2]), t(&[2])], &[t(&[8, 2]), t(&[2])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("one per entry of the partition"), "{err}");
}

/// The 8-bit states `opt` keeps on the device, read back to host memory.
fn host_states(opt: &Adam8bit) -> Vec<optim8::Adam8bit> {
    opt.states()
        .iter()
        .map(|s| s.to_host().expect("reading an 8-bit state back"))
        .collect()
}

/// Steps count from 1: the flat `optim::step` and the multi-tensor AdamW steps refuse a step 0
/// (whose bias corrections are 0) by name and leave the weights as they were.
#[test]
fn adamw_steps_refuse_step_zero() {
    use tilekit::kernels::optim::{step, Hyper};
    use tilekit::kernels::optim_multi::adamw_multi_step;
    use tilekit::tensor_list::TensorList;
    let device = Device::Cpu;
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 0,
    };
    let mut p = rng.tensor(F32, &[300], -1.0, 1.0);
    let before = p.to_vec();
    let g = rng.tensor(F32, &[300], -1.0, 1.0);
    let (mut m, mut v) = (
        HostTensor::zeros(F32, &[300]),
        HostTensor::zeros(F32, &[300]),
    );
    let err = step(&device, &mut p, &g, &mut m, &mut v, &h).expect_err("step 0");
    assert!(err.to_string().contains("step"), "{err}");
    assert!(err.to_string().contains("at least 1"), "{err}");
    assert_eq!(p.to_vec(), before);

    let list = |seed: f64| -> TensorList {
        let t = HostTensor::full(F32, &[70], seed);
        TensorList::new(&[&t]).expect("list")
    };
    let (mut pl, gl, mut ml, mut vl) = (list(0.5), list(0.25), list(0.0), list(0.0));
    let err = adamw_multi_step(&device, &mut pl, &gl, &mut ml, &mut vl, &h).expect_err("step 0");
    assert!(err.to_string().contains("at least 1"), "{err}");
    let one = Hyper { step: 1, ..h };
    adamw_multi_step(&device, &mut pl, &gl, &mut ml, &mut vl, &one).expect("step 1");
}
