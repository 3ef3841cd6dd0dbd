//! ALiBi in the attention forward and backward (`ForwardOptions::alibi`, `forward_with_slopes`,
//! `backward_with_slopes`) on the interpreter: the forward against this file's f64
//! [`definition`] (scores `s·q·k − slope·|diag − j|`), the backward against the library's f64
//! gradients, which are checked once against central finite differences of [`definition`]'s
//! loss `Σ dO ∘ O`; the standard slopes against the ALiBi paper's recipe. Masks empty whole key
//! tiles and whole rows (causal with more queries than keys, a window that excludes the
//! diagonal): those rows must come out NaN / −inf, never a wrong number.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::attention::{
    alibi_slopes, forward, forward_varlen, forward_with_slopes, reference_with_slopes, Alibi,
    Align, ForwardOptions,
};
use tilekit::kernels::attention_bwd::{
    backward, backward_with_slopes, reference_grads_bounded, reference_grads_with_slopes,
    within_bounds, Rounding,
};
use tilekit::kernels::check::poisoned;
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error_with_nonfinite;
use tilekit_tests::random::TestRng;

/// P is rounded to bf16 for P·V and O to bf16: ≈ 2⁻⁸ relative.
const O_TOLERANCE: f64 = 1e-2;

/// LSE in f32 with biases up to a few hundred raw-score units (normalized error).
const LSE_TOLERANCE: f64 = 1e-4;

/// The ALiBi paper's slopes, as its reference code computes them: for a power of two n the
/// geometric sequence starting at and with ratio `2^(−2^−(log₂ n − 3))`; otherwise those of the
/// closest smaller power of two c, then every other slope of 2c heads.
fn paper_slopes(n: usize) -> Vec<f64> {
    fn power_of_two(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-(2f64.powf(-((n as f64).log2() - 3.0))));
        (0..n).map(|i| start * start.powi(i as i32)).collect()
    }
    let log = (n as f64).log2();
    if log.fract() == 0.0 {
        return power_of_two(n);
    }
    let c = 1usize << (log.floor() as u32);
    let mut slopes = power_of_two(c);
    slopes.extend(paper_slopes(2 * c).into_iter().step_by(2).take(n - c));
    slopes
}

/// One problem: `bh_q` query heads over `bh_kv` K/V heads (head h reads `h·bh_kv/bh_q`), the
/// diagonal (bottom-right `i + seq_kv − seq_q` or top-left `i`) that ALiBi, the causal mask and
/// the window are around.
#[derive(Clone, Copy, Debug)]
struct Case {
    bh_q: usize,
    bh_kv: usize,
    seq_q: usize,
    seq_kv: usize,
    top_left: bool,
    causal: bool,
    left: Option<u32>,
    right: Option<u32>,
}

impl Case {
    fn new(bh_q: usize, bh_kv: usize, seq_q: usize, seq_kv: usize) -> Case {
        Case {
            bh_q,
            bh_kv,
            seq_q,
            seq_kv,
            top_left: false,
            causal: false,
            left: None,
            right: None,
        }
    }

    fn options(&self, sm_scale: f32, alibi: Option<Alibi>) -> ForwardOptions {
        ForwardOptions {
            causal: self.causal,
            align: if self.top_left {
                Align::TopLeft
            } else {
                Align::BottomRight
            },
            window_left: self.left,
            window_right: self.right,
            alibi,
            ..ForwardOptions::new(sm_scale)
        }
    }

    /// Row i's diagonal key.
    fn diag(&self, i: usize) -> i64 {
        match self.top_left {
            true => i as i64,
            false => i as i64 + self.seq_kv as i64 - self.seq_q as i64,
        }
    }
}

/// Softmax attention with ALiBi in f64 from the definition: for row i of head h the scores
/// `s·q_i·k_j − slopes[h]·|diag(i) − j|` over the keys j the row sees (`j ≤ diag` when causal,
/// `diag − left ≤ j ≤ diag + right`), `O_i = Σ_j softmax_j·v_j`, `LSE_i = log Σ_j exp`; a row
/// that sees no key has O = NaN and LSE = −inf.
fn definition(
    (q, k, v): (&[f64], &[f64], &[f64]),
    c: &Case,
    d: usize,
    scale: f64,
    slopes: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let mut o = Vec::with_capacity(q.len());
    let mut lse = Vec::with_capacity(c.bh_q * c.seq_q);
    for h in 0..c.bh_q {
        let hk = h * c.bh_kv / c.bh_q;
        for i in 0..c.seq_q {
            let scores = row_scores((q, k), c, d, scale, slopes, (h, i));
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
                for (x, y) in out.iter_mut().zip(&v[(hk * c.seq_kv + j) * d..][..d]) {
                    *x += w * y;
                }
            }
            o.extend(out);
        }
    }
    (o, lse)
}

/// The scores `(j, s·q_i·k_j − slope·|diag(i) − j|)` of row i of head h over the keys it sees.
fn row_scores(
    (q, k): (&[f64], &[f64]),
    c: &Case,
    d: usize,
    scale: f64,
    slopes: &[f64],
    (h, i): (usize, usize),
) -> Vec<(usize, f64)> {
    let hk = h * c.bh_kv / c.bh_q;
    let diag = c.diag(i);
    let sees = |j: i64| {
        c.left.is_none_or(|l| j >= diag - i64::from(l))
            && c.right.is_none_or(|r| j <= diag + i64::from(r))
            && (!c.causal || j <= diag)
    };
    let qi = &q[(h * c.seq_q + i) * d..][..d];
    (0..c.seq_kv)
        .filter(|&j| sees(j as i64))
        .map(|j| {
            let kj = &k[(hk * c.seq_kv + j) * d..][..d];
            let dot: f64 = qi.iter().zip(kj).map(|(a, b)| a * b).sum();
            (j, scale * dot - slopes[h] * (diag - j as i64).abs() as f64)
        })
        .collect()
}

/// Causal (bottom-right) GQA with more keys than queries and with more queries than keys (the
/// first rows, and whole 64-row blocks, see no key), MQA without a mask at length 1, top-left
/// causal, a window, and a causal window that excludes the diagonal (row 0 sees nothing);
/// lengths 1, 17, 50, 70 and 130.
fn cases() -> Vec<Case> {
    vec![
        Case {
            causal: true,
            ..Case::new(4, 2, 17, 130)
        },
        Case {
            causal: true,
            ..Case::new(4, 2, 130, 17)
        },
        Case::new(2, 1, 1, 130),
        Case {
            causal: true,
            top_left: true,
            ..Case::new(4, 2, 50, 130)
        },
        Case {
            left: Some(20),
            right: Some(5),
            ..Case::new(2, 2, 70, 70)
        },
        Case {
            causal: true,
            left: Some(3),
            right: Some(0),
            ..Case::new(2, 1, 130, 130)
        },
    ]
}

/// Random bf16 Q, K, V, dO of a case.
fn inputs(rng: &mut TestRng, c: &Case, d: usize) -> [HostTensor; 4] {
    [
        rng.tensor(BF16, &[c.bh_q, c.seq_q, d], -2.0, 2.0),
        rng.tensor(BF16, &[c.bh_kv, c.seq_kv, d], -2.0, 2.0),
        rng.tensor(BF16, &[c.bh_kv, c.seq_kv, d], -1.0, 1.0),
        rng.tensor(BF16, &[c.bh_q, c.seq_q, d], -1.0, 1.0),
    ]
}

fn check_forward(
    name: &str,
    (o, lse): (&HostTensor, &HostTensor),
    want: (Vec<f64>, Vec<f64>),
    seed: u64,
) {
    let o_err = normalized_max_error_with_nonfinite(&o.to_vec(), &want.0);
    let lse_err = normalized_max_error_with_nonfinite(&lse.to_vec(), &want.1);
    assert!(
        o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
        "{name}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {seed}"
    );
}

/// The standard slopes (2 query heads per batch element here, so the flattened heads repeat
/// them) from the options, and per-head slopes `[batch, heads]` from a tensor, with slopes up
/// to 1 (biases far past the scores).
#[test]
fn alibi_forward_matches_the_definition_on_the_interpreter() {
    let mut rng = TestRng::fresh();
    for d in [64, 128] {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for c in cases() {
            let [q, k, v, _] = inputs(&mut rng, &c, d);
            let (qv, kv, vv) = (q.to_vec(), k.to_vec(), v.to_vec());
            let heads = 2;
            let standard = paper_slopes(heads);
            let flat: Vec<f64> = (0..c.bh_q).map(|h| standard[h % heads]).collect();
            let opts = c.options(sm_scale, Some(Alibi::Standard { heads }));
            let (o, lse) = forward(&Device::Cpu, &q, &k, &v, &opts)
                .unwrap_or_else(|e| panic!("{c:?} hd {d}: {e}; seed {}", rng.seed));
            let want = definition((&qv, &kv, &vv), &c, d, f64::from(sm_scale), &flat);
            check_forward(
                &format!("{c:?} hd {d} standard"),
                (&o, &lse),
                want,
                rng.seed,
            );

            // One slope per flattened head from a [batch, heads] tensor.
            let (batch, per) = (c.bh_q / 2, 2);
            let slopes = rng.tensor(F32, &[batch, per], 0.01, 1.0);
            let opts = c.options(sm_scale, None);
            let (o, lse) = forward_with_slopes(&Device::Cpu, &q, &k, &v, &opts, &slopes)
                .unwrap_or_else(|e| panic!("{c:?} hd {d}: {e}; seed {}", rng.seed));
            let want = definition(
                (&qv, &kv, &vv),
                &c,
                d,
                f64::from(sm_scale),
                &slopes.to_vec(),
            );
            check_forward(&format!("{c:?} hd {d} tensor"), (&o, &lse), want, rng.seed);
        }
    }
}

/// One long configuration per head dim (bottom-right causal, GQA, more keys than queries).
#[test]
fn alibi_forward_matches_the_definition_at_a_long_length() {
    let mut rng = TestRng::fresh();
    for (d, seq_q, seq_kv) in [(64, 300, 1000), (128, 200, 513)] {
        let c = Case {
            causal: true,
            ..Case::new(2, 1, seq_q, seq_kv)
        };
        let sm_scale = 1.0 / (d as f32).sqrt();
        let [q, k, v, _] = inputs(&mut rng, &c, d);
        let opts = c.options(sm_scale, Some(Alibi::Standard { heads: 2 }));
        let (o, lse) = forward(&Device::Cpu, &q, &k, &v, &opts)
            .unwrap_or_else(|e| panic!("{c:?} hd {d}: {e}; seed {}", rng.seed));
        let want = definition(
            (&q.to_vec(), &k.to_vec(), &v.to_vec()),
            &c,
            d,
            f64::from(sm_scale),
            &paper_slopes(2),
        );
        check_forward(&format!("{c:?} hd {d}"), (&o, &lse), want, rng.seed);
    }
}

#[test]
fn standard_slopes_follow_the_paper() {
    for n in [1, 2, 3, 4, 6, 8, 12, 16, 20, 32, 40] {
        let got = alibi_slopes(n);
        let want = paper_slopes(n);
        assert_eq!(got.len(), n);
        for (h, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(*g) - w).abs() <= 1e-7 * w,
                "{n} heads, head {h}: {g} vs the paper's {w}"
            );
        }
    }
}

/// dQ, dK, dV (f32) from the backward with O and LSE from the library's f64 forward with the
/// same slopes (the backward alone is under test).
fn backward_of(
    [q, k, v, d_o]: &[HostTensor; 4],
    opts: &ForwardOptions,
    slopes: &HostTensor,
    flat: &[f64],
) -> Result<[HostTensor; 3], tilekit::Error> {
    let (bh_q, seq_q, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let (bh_kv, seq_kv) = (k.shape()[0], k.shape()[1]);
    let (wo, wl) = reference_with_slopes(
        &q.to_vec(),
        &k.to_vec(),
        &v.to_vec(),
        (bh_q, bh_kv, seq_q, seq_kv, d),
        opts,
        Some(flat),
    );
    let o = HostTensor::new(BF16, &[bh_q, seq_q, d], &wo)?;
    let lse = HostTensor::new(F32, &[bh_q, seq_q], &wl)?;
    let mut dq = poisoned(F32, q.shape());
    let mut dk = poisoned(F32, k.shape());
    let mut dv = poisoned(F32, v.shape());
    backward_with_slopes(
        &Device::Cpu,
        (q, k, v),
        (&o, &lse, d_o),
        opts,
        slopes,
        &mut dq,
        &mut dk,
        &mut dv,
    )?;
    Ok([dq, dk, dv])
}

/// Every case at head dims 64 and 128 with per-head slopes from a tensor, each gradient element
/// within its bound from the definition (`reference_grads_bounded`: ALiBi's concentrated P
/// makes dS cancel, which an error normalized by the largest gradient misjudges).
#[test]
fn alibi_gradients_match_the_f64_reference() {
    let mut rng = TestRng::fresh();
    for d in [64, 128] {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for c in cases() {
            let ins = inputs(&mut rng, &c, d);
            let slopes = rng.tensor(F32, &[c.bh_q], 0.01, 1.0);
            let flat = slopes.to_vec();
            let opts = c.options(sm_scale, None);
            let got = backward_of(&ins, &opts, &slopes, &flat)
                .unwrap_or_else(|e| panic!("{c:?} hd {d}: {e}; seed {}", rng.seed));
            let [q, k, v, d_o] = ins.each_ref().map(HostTensor::to_vec);
            let dims = (c.bh_q, c.bh_kv, c.seq_q, c.seq_kv, d);
            let rounding = Rounding::new(BF16, F32);
            let want =
                reference_grads_bounded((&q, &k, &v, &d_o), dims, &opts, Some(&flat), rounding);
            let [dq, dk, dv] = &got;
            within_bounds(&format!("{c:?} hd {d}"), [dq, dk, dv], &want)
                .unwrap_or_else(|e| panic!("{e}; seed {}", rng.seed));
        }
    }
}

/// The standard slopes through `backward`'s options give the same bits as the same slopes
/// through a tensor, and dQ is the same bits on a second run.
#[test]
fn alibi_gradients_from_options_and_tensor_agree_bitwise() {
    let mut rng = TestRng::fresh();
    let c = Case {
        causal: true,
        ..Case::new(4, 2, 40, 70)
    };
    let ins = inputs(&mut rng, &c, 64);
    let standard: Vec<f64> = alibi_slopes(4).into_iter().map(f64::from).collect();
    let tensor = HostTensor::new(F32, &[4], &standard).unwrap();
    let opts = c.options(0.125, None);
    let a = backward_of(&ins, &opts, &tensor, &standard).unwrap();
    let b = backward_of(&ins, &opts, &tensor, &standard).unwrap();
    let with_opts = c.options(0.125, Some(Alibi::Standard { heads: 4 }));
    let [q, k, v, d_o] = &ins;
    let (bh_q, seq_q, d) = (4, 40, 64);
    let (wo, wl) = reference_with_slopes(
        &q.to_vec(),
        &k.to_vec(),
        &v.to_vec(),
        (bh_q, 2, seq_q, 70, d),
        &opts,
        Some(&standard),
    );
    let o = HostTensor::new(BF16, &[bh_q, seq_q, d], &wo).unwrap();
    let lse = HostTensor::new(F32, &[bh_q, seq_q], &wl).unwrap();
    let mut dq = poisoned(F32, q.shape());
    let mut dk = poisoned(F32, k.shape());
    let mut dv = poisoned(F32, v.shape());
    backward(
        &Device::Cpu,
        (q, k, v),
        (&o, &lse, d_o),
        &with_opts,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.to_vec(), y.to_vec(), "gradient {i} differs between runs");
    }
    for (i, (x, y)) in a.iter().zip([&dq, &dk, &dv]).enumerate() {
        assert_eq!(x.to_vec(), y.to_vec(), "gradient {i}: options vs tensor");
    }
}

/// The library's f64 gradients against central differences of `Σ dO ∘ O` through this file's
/// [`definition`], with GQA and bottom-right causal, top-left causal, and a window (f64
/// throughout).
#[test]
fn the_alibi_reference_gradients_agree_with_finite_differences() {
    let mut rng = TestRng::fresh();
    let d = 4;
    let cases = [
        Case {
            causal: true,
            ..Case::new(4, 2, 4, 6)
        },
        Case {
            causal: true,
            top_left: true,
            ..Case::new(2, 1, 5, 3)
        },
        Case {
            left: Some(1),
            right: Some(2),
            ..Case::new(2, 2, 6, 4)
        },
    ];
    for c in cases {
        let mut draw = |n: usize| rng.uniform(n, -1.5, 1.5);
        let (q, k, v, d_o) = (
            draw(c.bh_q * c.seq_q * d),
            draw(c.bh_kv * c.seq_kv * d),
            draw(c.bh_kv * c.seq_kv * d),
            draw(c.bh_q * c.seq_q * d),
        );
        let slopes = draw(c.bh_q)
            .iter()
            .map(|s| s.abs() + 0.1)
            .collect::<Vec<_>>();
        let scale = 0.75;
        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            let (o, _) = definition((q, k, v), &c, d, scale, &slopes);
            o.iter()
                .zip(&d_o)
                .filter(|(a, _)| a.is_finite())
                .map(|(a, b)| a * b)
                .sum()
        };
        let opts = c.options(scale as f32, None);
        let dims = (c.bh_q, c.bh_kv, c.seq_q, c.seq_kv, d);
        let (dq, dk, dv) = reference_grads_with_slopes((&q, &k, &v, &d_o), dims, &opts, &slopes);
        let h = 1e-5;
        let numeric = |which: usize, i: usize| -> f64 {
            let mut ins = [q.clone(), k.clone(), v.clone()];
            ins[which][i] += h;
            let up = loss(&ins[0], &ins[1], &ins[2]);
            ins[which][i] -= 2.0 * h;
            let down = loss(&ins[0], &ins[1], &ins[2]);
            (up - down) / (2.0 * h)
        };
        let mut nonzero = 0;
        for (which, analytic) in [&dq, &dk, &dv].into_iter().enumerate() {
            for (i, &a) in analytic.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (a - n).abs() <= 1e-7 * (1.0 + n.abs()),
                    "{c:?}: input {which} element {i}: analytic {a}, finite difference {n}; \
                     seed {}",
                    rng.seed
                );
                nonzero += usize::from(n.abs() > 1e-3);
            }
        }
        assert!(
            nonzero > (dq.len() + dk.len() + dv.len()) / 4,
            "{c:?}: {nonzero}"
        );
    }
}

/// What has no kernel is refused by name: a soft cap with ALiBi, head dim 256, bf16 gradients,
/// varlen batches; slopes of the wrong shape, dtype or head count, and slopes given twice.
#[test]
fn unsupported_alibi_combinations_are_refused_by_name() {
    let t = |dtype, shape: &[usize]| HostTensor::zeros(dtype, shape);
    let (q, k) = (t(BF16, &[4, 8, 64]), t(BF16, &[2, 8, 64]));
    let alibi = ForwardOptions {
        alibi: Some(Alibi::Standard { heads: 4 }),
        ..ForwardOptions::new(0.125)
    };
    let err = |r: Result<(HostTensor, HostTensor), tilekit::Error>| match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let capped = ForwardOptions {
        softcap: Some(5.0),
        ..alibi
    };
    let e = err(forward(&Device::Cpu, &q, &k, &k, &capped));
    assert!(e.contains("soft-capping"), "{e}");
    let q256 = t(BF16, &[4, 8, 256]);
    let k256 = t(BF16, &[2, 8, 256]);
    let e = err(forward(&Device::Cpu, &q256, &k256, &k256, &alibi));
    assert!(e.contains("head dim 256") && e.contains("64, 128"), "{e}");
    let e = err(forward(
        &Device::Cpu,
        &q,
        &k,
        &k,
        &ForwardOptions {
            alibi: Some(Alibi::Standard { heads: 3 }),
            ..alibi
        },
    ));
    assert!(e.contains("3 heads"), "{e}");
    let e = err(forward_with_slopes(
        &Device::Cpu,
        &q,
        &k,
        &k,
        &alibi,
        &t(F32, &[4]),
    ));
    assert!(e.contains("not both"), "{e}");
    let plain = ForwardOptions::new(0.125);
    for bad in [t(F32, &[3]), t(BF16, &[4]), t(F32, &[1, 2, 2])] {
        let e = err(forward_with_slopes(&Device::Cpu, &q, &k, &k, &plain, &bad));
        assert!(e.contains("alibi_slopes"), "{e}");
    }
    let nan = HostTensor::new(F32, &[1], &[f64::NAN]).unwrap();
    let e = err(forward_with_slopes(&Device::Cpu, &q, &k, &k, &plain, &nan));
    assert!(e.contains("finite"), "{e}");

    let (o, lse) = (t(BF16, &[4, 8, 64]), t(F32, &[4, 8]));
    let mut dq = t(BF16, &[4, 8, 64]);
    let (mut dk, mut dv) = (t(BF16, &[2, 8, 64]), t(BF16, &[2, 8, 64]));
    let e = backward(
        &Device::Cpu,
        (&q, &k, &k),
        (&o, &lse, &o),
        &alibi,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("with ALiBi") && e.contains("f32"), "{e}");

    let cu = HostTensor::new(tilekit::ir::ScalarType::I32, &[2], &[0.0, 8.0]).unwrap();
    let packed = t(BF16, &[8, 2, 64]);
    let e = err(forward_varlen(
        &Device::Cpu,
        &packed,
        &packed,
        &packed,
        &cu,
        &cu,
        (8, 8),
        &alibi,
    ));
    assert!(e.contains("ALiBi") && e.contains("variable-length"), "{e}");
}
