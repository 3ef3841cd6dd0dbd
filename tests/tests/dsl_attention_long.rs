//! The attention matrix at long lengths (1000 and 4097, and 1000 × 4097), ignored by default:
//! `make test-long` runs them (minutes on the interpreter). `make test` keeps lengths ≤ 130 and
//! one long configuration per head dim. The forward is compared with softmax attention in f64
//! from the definition (this file's [`definition`]), the backward with the library's f64
//! gradients (checked against finite differences in `dsl_attention_bwd`), each element within
//! its bound from the definition.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F16, F32};
use tilekit::kernels::attention::{
    forward, Alibi, Align, ForwardOptions, F16_HEAD_DIMS, HEAD_DIMS, WINDOW_HEAD_DIMS,
};
use tilekit::kernels::attention_bwd::{check_against_reference, HEAD_DIMS as BWD_DIMS};
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error_with_nonfinite;
use tilekit_tests::random::TestRng;

const O_TOLERANCE: f64 = 1e-2;
/// LSE in f32 over up to 4097 keys (normalized error).
const LSE_TOLERANCE: f64 = 1e-4;

/// Softmax attention in f64 from the definition for the options' features: row i of head h
/// sees key j of K/V head `h·bh_kv/bh_q` when `diag − left ≤ j ≤ diag + right` (and `j ≤ diag`
/// when causal), `diag = i + seq_kv − seq_q` (bottom-right) or i (top-left); scores
/// `s·q·k`, capped `c·tanh(x/c)`, minus `slope·|diag − j|` with ALiBi's slopes; NaN / −inf for a
/// row that sees no key.
fn definition(
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    (bh_q, bh_kv, seq_q, seq_kv, d): (usize, usize, usize, usize, usize),
    opts: &ForwardOptions,
    slopes: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (q, k, v) = (q.to_vec(), k.to_vec(), v.to_vec());
    let scale = f64::from(opts.sm_scale);
    let (mut o, mut lse) = (Vec::new(), Vec::new());
    for h in 0..bh_q {
        let hk = h * bh_kv / bh_q;
        for i in 0..seq_q {
            let diag = match opts.align {
                Align::TopLeft => i as i64,
                Align::BottomRight => i as i64 + seq_kv as i64 - seq_q as i64,
            };
            let sees = |j: i64| {
                opts.window_left.is_none_or(|l| j >= diag - i64::from(l))
                    && opts.window_right.is_none_or(|r| j <= diag + i64::from(r))
                    && (!opts.causal || j <= diag)
            };
            let qi = &q[(h * seq_q + i) * d..][..d];
            let scores: Vec<(usize, f64)> = (0..seq_kv)
                .filter(|&j| sees(j as i64))
                .map(|j| {
                    let kj = &k[(hk * seq_kv + j) * d..][..d];
                    let mut x = scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>();
                    if let Some(c) = opts.softcap {
                        x = f64::from(c) * (x / f64::from(c)).tanh();
                    }
                    if !slopes.is_empty() {
                        x -= slopes[h] * (diag - j as i64).abs() as f64;
                    }
                    (j, x)
                })
                .collect();
            if scores.is_empty() {
                o.extend(std::iter::repeat_n(f64::NAN, d));
                lse.push(f64::NEG_INFINITY);
                continue;
            }
            let max = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|s| (s.1 - max).exp()).sum();
            lse.push(max + sum.ln());
            let mut out = vec![0.0; d];
            for (j, s) in &scores {
                let w = (s - max).exp() / sum;
                for (x, y) in out.iter_mut().zip(&v[(hk * seq_kv + j) * d..][..d]) {
                    *x += w * y;
                }
            }
            o.extend(out);
        }
    }
    (o, lse)
}

/// The ALiBi paper's slopes for a power of two n: `2^(−8(h+1)/n)`.
fn slopes_of(n: usize) -> Vec<f64> {
    (0..n)
        .map(|h| 2f64.powf(-8.0 * (h + 1) as f64 / n as f64))
        .collect()
}

/// (bh_q, bh_kv, seq_q, seq_kv, options): plain and causal at 4097, 1000 × 4097 and 4097 ×
/// 1000 (causal: the first 3097 rows see no key), top-left causal, a window, a cap, ALiBi.
fn forward_cases(sm_scale: f32) -> Vec<(usize, usize, usize, usize, ForwardOptions)> {
    let base = ForwardOptions::new(sm_scale);
    let causal = ForwardOptions {
        causal: true,
        ..base
    };
    vec![
        (1, 1, 4097, 4097, base),
        (2, 1, 4097, 4097, causal),
        (2, 1, 1000, 4097, causal),
        (1, 1, 4097, 1000, causal),
        (
            2,
            2,
            1000,
            4097,
            ForwardOptions {
                align: Align::TopLeft,
                ..causal
            },
        ),
        (
            2,
            1,
            1000,
            1000,
            ForwardOptions {
                window_left: Some(300),
                window_right: Some(17),
                ..base
            },
        ),
        (
            2,
            1,
            1000,
            1000,
            ForwardOptions {
                softcap: Some(20.0),
                ..causal
            },
        ),
        (
            4,
            2,
            1000,
            1000,
            ForwardOptions {
                alibi: Some(Alibi::Standard { heads: 4 }),
                ..causal
            },
        ),
    ]
}

#[test]
#[ignore = "minutes on the interpreter: make test-long"]
fn long_forward_matrix_matches_the_definition() {
    let mut rng = TestRng::fresh();
    for d in HEAD_DIMS {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for (bh_q, bh_kv, seq_q, seq_kv, opts) in forward_cases(sm_scale) {
            let windowed = opts.needs_window_kernel(seq_q, seq_kv) || opts.alibi.is_some();
            if windowed && !WINDOW_HEAD_DIMS.contains(&d) {
                continue;
            }
            let q = rng.tensor(BF16, &[bh_q, seq_q, d], -2.0, 2.0);
            let k = rng.tensor(BF16, &[bh_kv, seq_kv, d], -2.0, 2.0);
            let v = rng.tensor(BF16, &[bh_kv, seq_kv, d], -1.0, 1.0);
            let name = format!("{bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} {opts:?}");
            let (o, lse) = forward(&Device::Cpu, &q, &k, &v, &opts)
                .unwrap_or_else(|e| panic!("{name}: {e}; seed {}", rng.seed));
            let slopes = match opts.alibi {
                Some(Alibi::Standard { heads }) => {
                    let s = slopes_of(heads);
                    (0..bh_q).map(|h| s[h % heads]).collect()
                }
                _ => Vec::new(),
            };
            let dims = (bh_q, bh_kv, seq_q, seq_kv, d);
            let (wo, wl) = definition((&q, &k, &v), dims, &opts, &slopes);
            let o_err = normalized_max_error_with_nonfinite(&o.to_vec(), &wo);
            let lse_err = normalized_max_error_with_nonfinite(&lse.to_vec(), &wl);
            // NVIDIA's tanh.approx would need 2e-3 on LSE with a cap; the interpreter's tanh is
            // exact.
            assert!(
                o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
                "{name}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {}",
                rng.seed
            );
        }
    }
}

#[test]
#[ignore = "minutes on the interpreter: make test-long"]
fn long_f16_forward_matches_the_definition() {
    let mut rng = TestRng::fresh();
    for d in F16_HEAD_DIMS {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for causal in [false, true] {
            let (bh, seq_q, seq_kv) = (2, 1000, 4097);
            let opts = ForwardOptions {
                causal,
                ..ForwardOptions::new(sm_scale)
            };
            let q = rng.tensor(F16, &[bh, seq_q, d], -2.0, 2.0);
            let k = rng.tensor(F16, &[bh, seq_kv, d], -2.0, 2.0);
            let v = rng.tensor(F16, &[bh, seq_kv, d], -1.0, 1.0);
            let (o, lse) = forward(&Device::Cpu, &q, &k, &v, &opts)
                .unwrap_or_else(|e| panic!("hd {d} causal {causal}: {e}; seed {}", rng.seed));
            let (wo, wl) = definition((&q, &k, &v), (bh, bh, seq_q, seq_kv, d), &opts, &[]);
            let o_err = normalized_max_error_with_nonfinite(&o.to_vec(), &wo);
            let lse_err = normalized_max_error_with_nonfinite(&lse.to_vec(), &wl);
            assert!(
                o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
                "f16 hd {d} causal {causal}: O error {o_err:.3e}, LSE error {lse_err:.3e}; \
                 seed {}",
                rng.seed
            );
        }
    }
}

#[test]
#[ignore = "minutes on the interpreter: make test-long"]
fn long_gradients_match_the_f64_reference() {
    let mut rng = TestRng::fresh();
    for d in BWD_DIMS {
        let sm_scale = 1.0 / (d as f32).sqrt();
        let causal = ForwardOptions {
            causal: true,
            ..ForwardOptions::new(sm_scale)
        };
        let cases = [
            (2, 1, 1000, 1000, causal),
            (1, 1, 1000, 1000, ForwardOptions::new(sm_scale)),
            (
                2,
                2,
                1000,
                1000,
                ForwardOptions {
                    window_left: Some(100),
                    window_right: Some(3),
                    softcap: Some(10.0),
                    ..ForwardOptions::new(sm_scale)
                },
            ),
            (
                2,
                1,
                1000,
                1000,
                ForwardOptions {
                    alibi: Some(Alibi::Standard { heads: 2 }),
                    ..causal
                },
            ),
        ];
        for (bh_q, bh_kv, seq_q, seq_kv, opts) in cases {
            let q = rng.tensor(BF16, &[bh_q, seq_q, d], -1.0, 1.0);
            let k = rng.tensor(BF16, &[bh_kv, seq_kv, d], -1.0, 1.0);
            let v = rng.tensor(BF16, &[bh_kv, seq_kv, d], -1.0, 1.0);
            let d_o = rng.tensor(BF16, &[bh_q, seq_q, d], -1.0, 1.0);
            let name = format!("{bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} {opts:?}");
            // Every element within its bound from the definition.
            check_against_reference(
                &Device::Cpu,
                (&q, &k, &v, &d_o),
                &opts,
                F32,
                (&name, rng.seed),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
