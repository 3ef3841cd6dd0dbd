//! The attention forward with f16 inputs (`attention::forward` dispatching on Q's dtype to
//! `attention_fwd_f16`) against softmax attention in f64 from the definition, on the
//! interpreter: plain and bottom-right causal, GQA/MQA, lengths 1, 17, 37 and 130, rows that see
//! no key (NaN / −inf); and the combinations without a kernel refused by name.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F16, F32};
use tilekit::kernels::attention::{forward, Alibi, ForwardOptions, F16_HEAD_DIMS};
use tilekit::Device;
use tilekit_tests::compare::normalized_max_error_with_nonfinite;
use tilekit_tests::random::TestRng;

/// P is rounded to f16 (2⁻¹¹ relative) for P·V and O to f16 once more.
const O_TOLERANCE: f64 = 4e-3;
/// LSE in f32 (normalized error).
const LSE_TOLERANCE: f64 = 1e-5;

/// Softmax attention in f64: row i of head h sees keys `j ≤ i + seq_kv − seq_q` when causal
/// (all otherwise) of K/V head `h·bh_kv/bh_q`; scores `s·q_i·k_j`; a row that sees no key gets
/// O = NaN and LSE = −inf.
fn definition(
    (q, k, v): (&[f64], &[f64], &[f64]),
    (bh_q, bh_kv, seq_q, seq_kv, d): (usize, usize, usize, usize, usize),
    scale: f64,
    causal: bool,
) -> (Vec<f64>, Vec<f64>) {
    let mut o = Vec::new();
    let mut lse = Vec::new();
    for h in 0..bh_q {
        let hk = h * bh_kv / bh_q;
        for i in 0..seq_q {
            let last = i as i64 + seq_kv as i64 - seq_q as i64;
            let qi = &q[(h * seq_q + i) * d..][..d];
            let scores: Vec<(usize, f64)> = (0..seq_kv)
                .filter(|&j| !causal || j as i64 <= last)
                .map(|j| {
                    let kj = &k[(hk * seq_kv + j) * d..][..d];
                    (
                        j,
                        scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>(),
                    )
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

#[test]
fn f16_forward_matches_the_definition_on_the_interpreter() {
    let mut rng = TestRng::fresh();
    // (bh_q, bh_kv, seq_q, seq_kv): one tile; GQA with more keys than queries; MQA with more
    // queries than keys (causal: the first rows, and a whole 128-row block, see no key); one
    // query row.
    let shapes = [
        (2, 2, 64, 64),
        (4, 2, 37, 130),
        (3, 1, 130, 17),
        (2, 1, 1, 17),
    ];
    for d in F16_HEAD_DIMS {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for (bh_q, bh_kv, seq_q, seq_kv) in shapes {
            let q = rng.tensor(F16, &[bh_q, seq_q, d], -2.0, 2.0);
            let k = rng.tensor(F16, &[bh_kv, seq_kv, d], -2.0, 2.0);
            let v = rng.tensor(F16, &[bh_kv, seq_kv, d], -1.0, 1.0);
            for causal in [false, true] {
                let opts = ForwardOptions {
                    causal,
                    ..ForwardOptions::new(sm_scale)
                };
                let name = format!("{bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} causal {causal}");
                let (o, lse) = forward(&Device::Cpu, &q, &k, &v, &opts)
                    .unwrap_or_else(|e| panic!("{name}: {e}; seed {}", rng.seed));
                assert_eq!(o.dtype(), F16, "{name}: O is f16 for f16 inputs");
                let (wo, wl) = definition(
                    (&q.to_vec(), &k.to_vec(), &v.to_vec()),
                    (bh_q, bh_kv, seq_q, seq_kv, d),
                    f64::from(sm_scale),
                    causal,
                );
                let o_err = normalized_max_error_with_nonfinite(&o.to_vec(), &wo);
                let lse_err = normalized_max_error_with_nonfinite(&lse.to_vec(), &wl);
                assert!(
                    o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
                    "{name}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {}",
                    rng.seed
                );
            }
        }
    }
}

/// Mixed dtypes, options with no f16 kernel and head dim 256 are refused by name.
#[test]
fn f16_combinations_without_a_kernel_are_refused_by_name() {
    let t = |dtype, shape: &[usize]| HostTensor::zeros(dtype, shape);
    let (q, k) = (t(F16, &[2, 8, 64]), t(F16, &[2, 8, 64]));
    let plain = ForwardOptions::new(0.125);
    let err = |r: Result<(HostTensor, HostTensor), tilekit::Error>| match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let e = err(forward(&Device::Cpu, &q, &t(BF16, &[2, 8, 64]), &k, &plain));
    assert!(e.contains("f16") && e.contains("all three"), "{e}");
    for opts in [
        ForwardOptions {
            window_left: Some(4),
            ..plain
        },
        ForwardOptions {
            softcap: Some(5.0),
            ..plain
        },
        ForwardOptions {
            alibi: Some(Alibi::Standard { heads: 2 }),
            ..plain
        },
    ] {
        let e = err(forward(&Device::Cpu, &q, &k, &k, &opts));
        assert!(
            e.contains("f16 inputs") && e.contains("bf16"),
            "{opts:?}: {e}"
        );
    }
    let q256 = t(F16, &[2, 8, 256]);
    let e = err(forward(&Device::Cpu, &q256, &q256, &q256, &plain));
    assert!(e.contains("head dim 256") && e.contains("64, 128"), "{e}");
    // The f32 LSE and an f16 O come back for f16 inputs (shapes only here).
    let (o, lse) = forward(
        &Device::Cpu,
        &rng_free(&[2, 3, 64]),
        &rng_free(&[2, 5, 64]),
        &rng_free(&[2, 5, 64]),
        &plain,
    )
    .unwrap();
    assert_eq!((o.dtype(), lse.dtype()), (F16, F32));
    assert_eq!((o.shape(), lse.shape()), (&[2, 3, 64][..], &[2, 3][..]));
}

/// A small f16 tensor of distinct nonzero values.
fn rng_free(shape: &[usize]) -> HostTensor {
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|i| ((i % 7) as f64 - 3.5) / 4.0).collect();
    HostTensor::new(F16, shape, &values).unwrap()
}
