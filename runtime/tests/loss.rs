//! `tilekit::kernels::loss::cross_entropy` against the f64 reference written from the
//! definition (the smoothed target distribution summed term by term): per-token loss and nll,
//! mean loss, perplexity and count, and the gradient written over the logits, at the
//! vocabularies of LLaMA-2 (32000) and GPT-2 (50257) on the interpreter and the sm_80 PTX
//! emulator, with ignored rows holding NaN; LLaMA-3 (128256) and Qwen (151936) in ignored tests
//! (`make test-loss-large`).
//! Few rows per case: the interpreter and the emulator walk every logit of a row tile twice.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::loss::{
    compare, cross_entropy, inputs, reference, run, CrossEntropyOptions, CrossEntropyOutputs,
    LossError, Reduction, STATS,
};
use tilekit::Device;

/// Label smoothing, z-loss and the sum's scale, all on: each changes the loss and the gradient.
fn smoothed() -> CrossEntropyOptions {
    CrossEntropyOptions {
        label_smoothing: 0.1,
        z_loss: 1e-3,
        reduction: Reduction::Sum,
        grad_scale: 0.25,
        ..Default::default()
    }
}

/// Runs every (vocabulary, dtype, options) case on `device` and checks it against the
/// reference; ignored rows must come back exactly 0 (loss and gradient) although their logits
/// hold NaN, and nothing anywhere may be NaN.
fn check(device: &Device, rows: usize, vocabs: &[usize], dtypes: &[ScalarType]) {
    let mut rng = Rng::fresh();
    for &vocab in vocabs {
        for &dtype in dtypes {
            for cfg in [CrossEntropyOptions::default(), smoothed()] {
                let (x, targets) = inputs(&mut rng, dtype, rows, vocab);
                let case = format!(
                    "{} {rows}×{vocab} {dtype} ε {} z {} {:?}, seed {}",
                    device.name(),
                    cfg.label_smoothing,
                    cfg.z_loss,
                    cfg.reduction,
                    rng.seed
                );
                let got = run(device, &x, &targets, &cfg).unwrap_or_else(|e| panic!("{case}: {e}"));
                let want = reference(&x.to_vec(), vocab, &targets, &cfg);
                // f32: sums of f32 terms over the vocabulary and ex2.approx on the GPU (2 ulp);
                // a bf16 gradient is rounded to 8 significant bits.
                let grad_tol = if dtype == F32 { 1e-4 } else { 1e-2 };
                compare(&case, &got, &want, vocab, (1e-4, grad_tol)).unwrap();
                let [grad, loss, nll, stats] = &got;
                assert!(
                    grad.iter()
                        .chain(loss)
                        .chain(nll)
                        .chain(stats)
                        .all(|v| v.is_finite()),
                    "{case}: a NaN or infinity in the outputs"
                );
                for (r, &t) in targets.iter().enumerate() {
                    if t == i64::from(cfg.ignore_index) {
                        assert_eq!((loss[r], nll[r]), (0.0, 0.0), "{case}: ignored row {r}");
                        let row = &grad[r * vocab..][..vocab];
                        assert!(
                            row.iter().all(|&g| g == 0.0),
                            "{case}: ignored row {r}'s gradient"
                        );
                    }
                }
                assert_eq!(stats[2], want.stats[2], "{case}: n_valid");
            }
        }
    }
}

#[test]
fn cross_entropy_at_vocab_32000_and_50257_matches_f64_on_the_interpreter() {
    check(&Device::Cpu, 5, &[32000, 50257], &[F32, BF16]);
}

#[cfg(feature = "jit")]
#[test]
fn cross_entropy_at_vocab_32000_and_50257_matches_f64_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    check(&device, 4, &[32000, 50257], &[F32, BF16]);
}

/// Many row tiles and blocks (the count and the reduction loop over more than one chunk of
/// 1024 targets), a vocabulary below one column tile and one just past it.
#[test]
fn cross_entropy_over_1100_rows_matches_f64_on_the_interpreter() {
    check(&Device::Cpu, 1100, &[17, 65], &[F32]);
}

#[cfg(feature = "jit")]
#[test]
fn cross_entropy_over_70_rows_matches_f64_on_the_sm_80_emulator() {
    check(
        &Device::emulator("sm_80").unwrap(),
        70,
        &[17, 200],
        &[F32, BF16],
    );
}

#[test]
#[ignore = "minutes on the interpreter: make test-loss-large"]
fn cross_entropy_at_vocab_128256_and_151936_matches_f64_on_the_interpreter() {
    check(&Device::Cpu, 3, &[128256, 151936], &[F32, BF16]);
}

#[cfg(feature = "jit")]
#[test]
#[ignore = "minutes on the emulator: make test-loss-large"]
fn cross_entropy_at_vocab_128256_and_151936_matches_f64_on_the_sm_80_emulator() {
    check(
        &Device::emulator("sm_80").unwrap(),
        3,
        &[128256, 151936],
        &[F32, BF16],
    );
}

/// The mean's scale: the gradient of the mean over non-ignored rows is the sum's divided by
/// their count, on the device (nothing read back between the launches).
#[test]
fn the_mean_divides_the_gradient_by_the_non_ignored_count() {
    let mut rng = Rng::fresh();
    let (x, targets) = inputs(&mut rng, F32, 12, 300);
    let mean = CrossEntropyOptions::default();
    let sum = CrossEntropyOptions {
        reduction: Reduction::Sum,
        ..mean
    };
    let (gm, gs) = (
        run(&Device::Cpu, &x, &targets, &mean).unwrap(),
        run(&Device::Cpu, &x, &targets, &sum).unwrap(),
    );
    let n = targets.iter().filter(|&&t| t != -100).count() as f64;
    assert_eq!(gm[3][2], n, "seed {}", rng.seed);
    for (a, b) in gm[0].iter().zip(&gs[0]) {
        assert!(
            (a * n - b).abs() <= 1e-6 * b.abs().max(1e-3),
            "{a}·{n} vs {b}; seed {}",
            rng.seed
        );
    }
    // The mean loss is the sum over the count, and perplexity exp(mean nll).
    let (stats, nll) = (&gm[3], &gm[2]);
    assert!((stats[0] - stats[3] / n).abs() <= 1e-6 * stats[0].abs());
    let ppl = (nll.iter().sum::<f64>() / n).exp();
    assert!(
        (stats[1] - ppl).abs() <= 1e-5 * ppl,
        "{} vs {ppl}",
        stats[1]
    );
}

#[test]
fn forward_only_leaves_the_logits_as_they_were() {
    let mut rng = Rng::fresh();
    let (x, targets) = inputs(&mut rng, BF16, 7, 1000);
    let cfg = CrossEntropyOptions {
        compute_grad: false,
        ..smoothed()
    };
    let got = run(&Device::Cpu, &x, &targets, &cfg).unwrap();
    let same = got[0]
        .iter()
        .zip(x.to_vec())
        .all(|(g, x)| g.to_bits() == x.to_bits() || (g.is_nan() && x.is_nan()));
    assert!(same, "the logits changed; seed {}", rng.seed);
    let want = reference(&x.to_vec(), 1000, &targets, &cfg);
    let mut got = got;
    // Only the gradient is missing: compare the rest by putting the reference's in its place.
    got[0] = want.grad.clone();
    compare("forward only", &got, &want, 1000, (1e-4, 0.0)).unwrap();
}

/// A target outside `[0, V)` that is not `ignore_index` is an error naming it, not a loss.
fn out_of_range_target_fails_on(device: &Device) {
    let mut rng = Rng::fresh();
    for bad in [300i64, -1, 1 << 20] {
        let (x, mut targets) = inputs(&mut rng, F32, 6, 300);
        targets[4] = bad;
        let err = run(device, &x, &targets, &CrossEntropyOptions::default())
            .expect_err("an out-of-range target was accepted");
        assert!(
            err.to_string().contains("target outside [0, vocab)"),
            "{}: target {bad}: {err}",
            device.name()
        );
    }
}

#[test]
fn a_target_out_of_range_is_an_error_on_the_interpreter() {
    out_of_range_target_fails_on(&Device::Cpu);
}

#[cfg(feature = "jit")]
#[test]
fn a_target_out_of_range_is_an_error_on_the_sm_80_emulator() {
    out_of_range_target_fails_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn shapes_dtypes_and_options_out_of_contract_are_named() {
    let f = |dtype, shape: &[usize]| HostTensor::zeros(dtype, shape);
    let targets = f(I32, &[4]);
    let call =
        |logits: &mut HostTensor, targets: &HostTensor, cfg: CrossEntropyOptions, t: usize| {
            let (mut loss, mut nll, mut stats) = (f(F32, &[t]), f(F32, &[t]), f(F32, &[STATS]));
            let out = CrossEntropyOutputs {
                loss: &mut loss,
                nll: &mut nll,
                stats: &mut stats,
            };
            cross_entropy(&Device::Cpu, logits, targets, &cfg, out)
        };
    let ok = CrossEntropyOptions::default();
    let cases: Vec<(&str, Result<(), LossError>)> = vec![
        (
            "`logits` must be",
            call(&mut f(F32, &[4, 10, 2]), &targets, ok, 4),
        ),
        (
            "`logits` must be",
            call(&mut f(ScalarType::F16, &[4, 10]), &targets, ok, 4),
        ),
        (
            "at least one token",
            call(&mut f(F32, &[0, 10]), &f(I32, &[0]), ok, 0),
        ),
        (
            "`targets` must be",
            call(&mut f(F32, &[5, 10]), &targets, ok, 5),
        ),
        (
            "`targets` must be",
            call(&mut f(F32, &[4, 10]), &f(F32, &[4]), ok, 4),
        ),
        (
            "`loss` must be",
            call(&mut f(F32, &[4, 10]), &targets, ok, 3),
        ),
        (
            "`label_smoothing` must be in [0, 1], got 1.5",
            call(
                &mut f(F32, &[4, 10]),
                &targets,
                CrossEntropyOptions {
                    label_smoothing: 1.5,
                    ..ok
                },
                4,
            ),
        ),
        (
            "`z_loss` must be",
            call(
                &mut f(F32, &[4, 10]),
                &targets,
                CrossEntropyOptions { z_loss: -1.0, ..ok },
                4,
            ),
        ),
        (
            "`grad_scale` must be finite",
            call(
                &mut f(F32, &[4, 10]),
                &targets,
                CrossEntropyOptions {
                    grad_scale: f32::NAN,
                    ..ok
                },
                4,
            ),
        ),
    ];
    for (want, got) in cases {
        let err = got.expect_err(want).to_string();
        assert!(err.contains(want), "expected `{want}` in: {err}");
    }
}
