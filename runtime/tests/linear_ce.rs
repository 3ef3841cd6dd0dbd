//! `tilekit::kernels::loss::linear_cross_entropy` (hidden · classifierᵀ → cross-entropy, in
//! chunks of tokens, without a `[T, V]` tensor) against
//! - the f64 reference written from the definition (logits as dot products, the smoothed target
//!   distribution, the chain rule), within worst-case error bounds derived from the arithmetic
//!   (`linear_ce::{loss_bound, grad_bound}`), and
//! - the unfused path: the library GEMM materializing `[T, V]` logits and the library
//!   `cross_entropy` on them, which chunking must reproduce exactly (loss, nll, statistics and
//!   `grad_hidden`; `grad_weight` up to the order of its f32 sums);
//!
//! and the device memory it takes: its peak stays within its chunk's workspace, below a `[T, V]`
//! f32 tensor.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::gemm;
use tilekit::kernels::linear_ce::{
    bounded_error, compare, default_chunk_tokens, inputs, reference, run,
};
use tilekit::kernels::loss::{
    self, linear_cross_entropy, LinearCrossEntropyOptions, LinearCrossEntropyOutputs, LossError,
    Reduction, STATS,
};
use tilekit::{Device, Tensor};

/// Label smoothing, z-loss, the sum and a gradient scale, all on.
fn smoothed() -> LinearCrossEntropyOptions {
    LinearCrossEntropyOptions {
        label_smoothing: 0.1,
        z_loss: 1e-3,
        reduction: Reduction::Sum,
        grad_scale: 0.25,
        ..Default::default()
    }
}

/// One run against the f64 reference, plus what every run must satisfy: nothing NaN, ignored
/// tokens with zero loss, nll and `grad_hidden` rows, `n_valid` exact.
fn check(device: &Device, (t, h, v): (usize, usize, usize), options: &LinearCrossEntropyOptions) {
    let mut rng = Rng::fresh();
    let (hidden, weight, targets) = inputs(&mut rng, (t, h, v));
    let case = format!(
        "{} T {t} H {h} V {v} ε {} z {} {:?} chunk {:?}, seed {}",
        device.name(),
        options.label_smoothing,
        options.z_loss,
        options.reduction,
        options.chunk_tokens,
        rng.seed
    );
    let got = run(device, &hidden, &weight, &targets, options, true)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let want = reference(
        &hidden.to_vec(),
        &weight.to_vec(),
        (t, h, v),
        &targets,
        options,
    );
    compare(&case, &got, &want, (t, h, v)).unwrap();
    assert!(
        got.iter().flatten().all(|x| x.is_finite()),
        "{case}: a NaN or infinity in the outputs"
    );
    assert_eq!(got[2][2], want.ce.stats[2], "{case}: n_valid");
    for (r, &target) in targets.iter().enumerate() {
        if target == i64::from(options.ignore_index) {
            assert_eq!(
                (got[0][r], got[1][r]),
                (0.0, 0.0),
                "{case}: ignored token {r}"
            );
            assert!(
                got[3][r * h..][..h].iter().all(|&g| g == 0.0),
                "{case}: ignored token {r}'s grad_hidden"
            );
        }
    }
}

#[test]
fn linear_cross_entropy_matches_f64_on_the_interpreter() {
    let chunk = |c| LinearCrossEntropyOptions {
        chunk_tokens: Some(c),
        ..smoothed()
    };
    let cases = [
        ((1, 64, 1000), LinearCrossEntropyOptions::default()),
        ((1, 96, 4099), smoothed()),
        ((17, 64, 4099), LinearCrossEntropyOptions::default()),
        ((17, 96, 1000), smoothed()),
        // Chunks of 16, and of 7 (chunks that start inside a row tile of the loss kernel).
        ((130, 64, 1000), chunk(16)),
        ((130, 96, 1000), chunk(7)),
        ((130, 64, 4099), LinearCrossEntropyOptions::default()),
    ];
    for (shape, options) in cases {
        check(&Device::Cpu, shape, &options);
    }
}

#[cfg(feature = "jit")]
#[test]
fn linear_cross_entropy_matches_f64_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    // Two chunks of tokens (16 and 1); grad_weight accumulates the second.
    let options = LinearCrossEntropyOptions {
        chunk_tokens: Some(16),
        ..smoothed()
    };
    check(&device, (17, 64, 1000), &options);
}

/// The unfused path: `[T, V]` logits from the library GEMM, the library `cross_entropy` on
/// them (gradient over the logits), the gradient rounded to bf16 as the fused path rounds it,
/// and the products in f64. Returns `[loss, nll, stats, grad_hidden, grad_weight]`, the
/// bf16 gradient of the logits, and the logits' byte size.
fn unfused(
    device: &Device,
    hidden: &HostTensor,
    weight: &HostTensor,
    targets: &[i64],
    options: &LinearCrossEntropyOptions,
) -> ([Vec<f64>; 5], Vec<f64>) {
    let (t, h, v) = (hidden.shape()[0], hidden.shape()[1], weight.shape()[0]);
    let w = weight.to_vec();
    let w_t: Vec<f64> = (0..h * v).map(|k| w[(k % v) * h + k / v]).collect();
    let w_t = HostTensor::new(BF16, &[h, v], &w_t).unwrap();
    let mut logits = HostTensor::zeros(F32, &[t, v]);
    gemm::gemm::<f32, 64, 64, 32, 32, 32>::launch(
        device,
        gemm::grid(t, v, 64, 64),
        hidden,
        &w_t,
        &mut logits,
    )
    .unwrap();
    let [grad, l, nll, stats] = loss::run(device, &logits, targets, &options.cross_entropy(true))
        .unwrap_or_else(|e| panic!("unfused cross_entropy: {e}"));
    let g16 = HostTensor::new(BF16, &[t, v], &grad).unwrap().to_vec();
    let x = hidden.to_vec();
    let (mut gh, mut gw) = (vec![0.0; t * h], vec![0.0; v * h]);
    for r in 0..t {
        for c in 0..v {
            let g = g16[r * v + c];
            for i in 0..h {
                gh[r * h + i] += g * w[c * h + i];
                gw[c * h + i] += g * x[r * h + i];
            }
        }
    }
    ([l, nll, stats, gh, gw], g16)
}

/// Chunking reproduces the unfused path: the logits of a token are the same dot products in the
/// same order whatever chunk holds it, so the loss, nll, statistics and the bf16 gradient are
/// the same bits; `grad_hidden` is then the same f32 products as the unfused GEMM's (within
/// their f32 sums' bound against the f64 products), and `grad_weight` adds one chunk's sum to
/// the others (its f32 sums over `T` tokens plus one addition per chunk).
#[test]
fn linear_cross_entropy_matches_the_unfused_path_on_the_interpreter() {
    let mut rng = Rng::fresh();
    for ((t, h, v), chunk) in [((130, 64, 1000), Some(16)), ((40, 96, 4099), Some(7))] {
        let (hidden, weight, targets) = inputs(&mut rng, (t, h, v));
        let options = LinearCrossEntropyOptions {
            chunk_tokens: chunk,
            ..smoothed()
        };
        let case = format!("T {t} H {h} V {v} chunk {chunk:?}, seed {}", rng.seed);
        let fused = run(&Device::Cpu, &hidden, &weight, &targets, &options, true).unwrap();
        let (want, g16) = unfused(&Device::Cpu, &hidden, &weight, &targets, &options);
        for (i, what) in ["loss", "nll", "stats"].iter().enumerate() {
            let same = fused[i]
                .iter()
                .zip(&want[i])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{case}: {what} differs from the unfused path");
        }
        let (w, x) = (weight.to_vec(), hidden.to_vec());
        let (mut size_h, mut size_w) = (vec![0.0; t * h], vec![0.0; v * h]);
        for r in 0..t {
            for c in 0..v {
                let g = g16[r * v + c].abs();
                for i in 0..h {
                    size_h[r * h + i] += g * w[c * h + i].abs();
                    size_w[c * h + i] += g * x[r * h + i].abs();
                }
            }
        }
        let u = 2f64.powi(-24);
        let chunks = t.div_ceil(chunk.unwrap_or(t));
        let err_h = bounded_error(&fused[3], &want[3], &size_h, v as f64 * u);
        let err_w = bounded_error(&fused[4], &want[4], &size_w, (t + chunks) as f64 * u);
        assert!(
            err_h <= 1.0,
            "{case}: grad_hidden {err_h:.2} times its bound"
        );
        assert!(
            err_w <= 1.0,
            "{case}: grad_weight {err_w:.2} times its bound"
        );
    }
}

/// The device memory a call takes beyond its arguments (measured by the cpu device's allocator):
/// at most the chunk's f32 logits, their bf16 copy and a partial product no larger than the
/// logits (`10·Tc·V` bytes, see `linear_ce`'s documentation), which is below what one `[T, V]`
/// f32 tensor alone would take; and at least the chunk's logits (the meter saw them).
#[test]
fn peak_device_memory_stays_within_the_chunk_workspace() {
    let mut rng = Rng::fresh();
    let device = Device::Cpu;
    for (t, h, v) in [(130, 64, 1000), (200, 96, 4099)] {
        let (hidden, weight, targets) = inputs(&mut rng, (t, h, v));
        let options = LinearCrossEntropyOptions::default();
        let tc = default_chunk_tokens(t, h, v);
        let tg: Vec<f64> = targets.iter().map(|&x| x as f64).collect();
        let targets = Tensor::from_f64(I32, &[t], &tg, &device).unwrap();
        let hidden = Tensor::from_host(&hidden, &device).unwrap();
        let weight = Tensor::from_host(&weight, &device).unwrap();
        let zeros = |dtype: ScalarType, shape: &[usize]| Tensor::zeros(dtype, shape, &device);
        let (mut loss, mut nll) = (zeros(F32, &[t]).unwrap(), zeros(F32, &[t]).unwrap());
        let mut stats = zeros(F32, &[STATS]).unwrap();
        let mut gh = zeros(F32, &[t, h]).unwrap();
        let mut gw = zeros(F32, &[v, h]).unwrap();
        let arguments = (t * h + v * h) * 2 + t * 4 * 3 + STATS * 4 + (t * h + v * h) * 4;
        let before = Tensor::memory_stats();
        assert!(
            before.live_bytes >= arguments,
            "the meter missed the arguments: {before:?}, {arguments} bytes"
        );
        Tensor::reset_peak_memory_stats();
        let out = LinearCrossEntropyOutputs {
            loss: &mut loss,
            nll: &mut nll,
            stats: &mut stats,
            grad_hidden: Some(&mut gh),
            grad_weight: Some(&mut gw),
        };
        linear_cross_entropy(&device, &hidden, &weight, &targets, &options, out).unwrap();
        let after = Tensor::memory_stats();
        let workspace = after.peak_bytes - before.live_bytes;
        let case = format!("T {t} H {h} V {v} chunk {tc}, seed {}", rng.seed);
        assert_eq!(
            after.live_bytes, before.live_bytes,
            "{case}: memory left behind"
        );
        assert!(
            workspace <= 10 * tc * v,
            "{case}: {workspace} bytes of workspace > 10·Tc·V = {}",
            10 * tc * v
        );
        assert!(
            workspace < 4 * t * v,
            "{case}: {workspace} bytes, as much as a [T, V] f32 tensor ({})",
            4 * t * v
        );
        assert!(
            workspace >= 4 * tc * v,
            "{case}: {workspace} bytes, less than the chunk's logits: the meter missed them"
        );
        // The whole call: O(T·H + V·H + chunk).
        assert!(after.peak_bytes <= before.live_bytes + 10 * tc * v);
    }
}

#[test]
fn forward_only_matches_and_writes_no_gradient() {
    let mut rng = Rng::fresh();
    let (t, h, v) = (20, 64, 1000);
    let (hidden, weight, targets) = inputs(&mut rng, (t, h, v));
    let options = smoothed();
    let got = run(&Device::Cpu, &hidden, &weight, &targets, &options, false).unwrap();
    let want = reference(
        &hidden.to_vec(),
        &weight.to_vec(),
        (t, h, v),
        &targets,
        &options,
    );
    compare(
        &format!("forward only, seed {}", rng.seed),
        &got,
        &want,
        (t, h, v),
    )
    .unwrap();
}

#[test]
fn a_target_out_of_range_is_an_error() {
    let mut rng = Rng::fresh();
    let (hidden, weight, mut targets) = inputs(&mut rng, (18, 64, 300));
    targets[17] = 300;
    let err = run(
        &Device::Cpu,
        &hidden,
        &weight,
        &targets,
        &LinearCrossEntropyOptions::default(),
        true,
    )
    .expect_err("an out-of-range target was accepted");
    assert!(
        err.to_string().contains("target outside [0, vocab)"),
        "{err}"
    );
}

#[test]
fn shapes_dtypes_and_options_out_of_contract_are_named() {
    let d = Device::Cpu;
    let z = |dtype, shape: &[usize]| Tensor::zeros(dtype, shape, &d).unwrap();
    let call = |hidden: &Tensor,
                weight: &Tensor,
                targets: &Tensor,
                grads: (&[usize], &[usize]),
                options: LinearCrossEntropyOptions|
     -> Result<(), LossError> {
        let t = targets.shape().first().copied().unwrap_or(0);
        let (mut loss, mut nll, mut stats) = (z(F32, &[t]), z(F32, &[t]), z(F32, &[STATS]));
        let (mut gh, mut gw) = (z(F32, grads.0), z(F32, grads.1));
        let out = LinearCrossEntropyOutputs {
            loss: &mut loss,
            nll: &mut nll,
            stats: &mut stats,
            grad_hidden: Some(&mut gh),
            grad_weight: Some(&mut gw),
        };
        linear_cross_entropy(&d, hidden, weight, targets, &options, out)
    };
    let ok = LinearCrossEntropyOptions::default();
    let (h, w, tg) = (z(BF16, &[4, 32]), z(BF16, &[50, 32]), z(I32, &[4]));
    let g: (&[usize], &[usize]) = (&[4, 32], &[50, 32]);
    let cases: Vec<(&str, Result<(), LossError>)> = vec![
        ("of rank 2", call(&z(BF16, &[4, 32, 1]), &w, &tg, g, ok)),
        (
            "`hidden` must be bf16",
            call(&z(F32, &[4, 32]), &w, &tg, g, ok),
        ),
        (
            "`weight` must be bf16",
            call(&h, &z(BF16, &[50, 31]), &tg, g, ok),
        ),
        ("`targets` must be i32", call(&h, &w, &z(I32, &[5]), g, ok)),
        (
            "at least one token",
            call(
                &z(BF16, &[0, 32]),
                &w,
                &z(I32, &[0]),
                (&[0, 32], &[50, 32]),
                ok,
            ),
        ),
        (
            "`grad_weight` must be f32 of shape [50, 32]",
            call(&h, &w, &tg, (&[4, 32], &[32, 50]), ok),
        ),
        (
            "linear_cross_entropy: option `label_smoothing` must be in [0, 1], got -0.5",
            call(
                &h,
                &w,
                &tg,
                g,
                LinearCrossEntropyOptions {
                    label_smoothing: -0.5,
                    ..ok
                },
            ),
        ),
        (
            "`z_loss` must be",
            call(
                &h,
                &w,
                &tg,
                g,
                LinearCrossEntropyOptions {
                    z_loss: f32::INFINITY,
                    ..ok
                },
            ),
        ),
        (
            "`chunk_tokens` must be at least 1",
            call(
                &h,
                &w,
                &tg,
                g,
                LinearCrossEntropyOptions {
                    chunk_tokens: Some(0),
                    ..ok
                },
            ),
        ),
    ];
    for (want, got) in cases {
        let err = got.expect_err(want).to_string();
        assert!(err.contains(want), "expected `{want}` in: {err}");
    }
}

/// GPT-2's and Qwen's vocabularies (V not a multiple of 16) through the fused path.
#[test]
#[ignore = "minutes on the interpreter: make test-loss-large"]
fn linear_cross_entropy_at_vocab_50257_and_151936_matches_f64_on_the_interpreter() {
    for v in [50257, 151936] {
        check(&Device::Cpu, (5, 64, v), &smoothed());
    }
}

/// The bound of the gradients grows with `V` but stays far below the gradients themselves at the
/// test's shapes: a wrong chunk (its gradient missing or counted twice) is out of bounds.
#[test]
fn the_gradient_bound_is_tight_enough_to_see_a_lost_chunk() {
    let mut rng = Rng::fresh();
    let (t, h, v) = (40, 64, 1000);
    let (hidden, weight, targets) = inputs(&mut rng, (t, h, v));
    let options = LinearCrossEntropyOptions::default();
    let want = reference(
        &hidden.to_vec(),
        &weight.to_vec(),
        (t, h, v),
        &targets,
        &options,
    );
    let mut got = run(&Device::Cpu, &hidden, &weight, &targets, &options, true).unwrap();
    compare("intact", &got, &want, (t, h, v)).unwrap();
    // grad_weight without the first 16 tokens' contribution.
    let mut partial = options;
    partial.chunk_tokens = Some(16);
    let first = run(
        &Device::Cpu,
        &HostTensor::new(BF16, &[16, h], &hidden.to_vec()[..16 * h]).unwrap(),
        &weight,
        &targets[..16],
        &LinearCrossEntropyOptions {
            reduction: Reduction::Sum,
            grad_scale: 1.0 / want.ce.stats[2] as f32,
            ..partial
        },
        true,
    )
    .unwrap();
    for (g, f) in got[4].iter_mut().zip(&first[4]) {
        *g -= f;
    }
    let err = compare("a lost chunk", &got, &want, (t, h, v));
    assert!(
        err.is_err_and(|e| e.contains("grad_weight")),
        "a lost chunk passed; seed {}",
        rng.seed
    );
}
