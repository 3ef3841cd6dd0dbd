//! The variable-length (packed) attention forward, `attention::forward_varlen`, against attention
//! written here from the definition in f64, one sequence at a time: mixed lengths in one batch
//! (1, 17, 64, 130 and empty sequences), GQA 2:1, causal aligned bottom-right and top-left,
//! sliding windows, soft-capping, head dims 64 and 128, with rows and whole key tiles that see
//! no key, on the interpreter (the PTX emulator runs it in the runtime's `attention_varlen`
//! tests); and the host contract on `cu_seqlens`.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, I32};
use tilekit::kernels::attention::{forward_varlen, Align, ForwardOptions, VARLEN_HEAD_DIMS};
use tilekit::{Device, Error};
use tilekit_tests::compare::normalized_max_error_with_nonfinite;
use tilekit_tests::random::TestRng;

/// P is rounded to bf16 for P·V and O to bf16: ≈ 2⁻⁸ relative each, so 1e-2 of O's largest value.
const O_TOLERANCE: f64 = 1e-2;
/// LSE: f32 sums of at most a few hundred exponentials of scores ≤ ~10 (absolute, ≈ 30 ulp).
const LSE_TOLERANCE: f64 = 1e-5;
/// With a cap, NVIDIA's tanh.approx.f32 is off by ≈ 2⁻¹¹ relative; the interpreter's tanh is
/// exact, but the same bound is kept so that one case list serves both.
const LSE_CAP_TOLERANCE: f64 = 2e-3;

/// One batch: per-sequence query and key lengths, heads, options.
#[derive(Clone, Debug)]
struct Case {
    len_q: Vec<usize>,
    len_k: Vec<usize>,
    hq: usize,
    hkv: usize,
    causal: bool,
    align: Align,
    window: (Option<u32>, Option<u32>),
    softcap: Option<f32>,
}

impl Case {
    fn options(&self, sm_scale: f32) -> ForwardOptions {
        ForwardOptions {
            sm_scale,
            causal: self.causal,
            align: self.align,
            window_left: self.window.0,
            window_right: self.window.1,
            softcap: self.softcap,
            alibi: None,
        }
    }
}

fn cu_seqlens(lengths: &[usize]) -> HostTensor {
    let mut cu = vec![0.0];
    for &n in lengths {
        cu.push(cu.last().unwrap() + n as f64);
    }
    HostTensor::new(I32, &[cu.len()], &cu).unwrap()
}

/// O `[total_q, hq, d]` and LSE `[hq, total_q]` from the definition: sequence b's query i (of
/// len_q) and key j (of len_k) interact when j lies in the window around i's diagonal (key
/// `i + len_k − len_q` bottom-right, key i top-left; causal: nothing after it); the score is
/// `scale·q·k`, or `cap·tanh(scale·q·k / cap)`; a row with no key gets O = NaN, LSE = −inf.
fn definition(
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    c: &Case,
    d: usize,
    sm_scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (q, k, v) = (q.to_vec(), k.to_vec(), v.to_vec());
    let total_q: usize = c.len_q.iter().sum();
    let group = c.hq / c.hkv;
    let mut o = vec![0.0; total_q * c.hq * d];
    let mut lse = vec![0.0; c.hq * total_q];
    let (mut sq, mut sk) = (0usize, 0usize);
    for (&lq, &lk) in c.len_q.iter().zip(&c.len_k) {
        for h in 0..c.hq {
            let hk = h / group;
            for i in 0..lq {
                let diag = match c.align {
                    Align::BottomRight => i as i64 + lk as i64 - lq as i64,
                    Align::TopLeft => i as i64,
                };
                let row = &q[((sq + i) * c.hq + h) * d..][..d];
                let scores: Vec<(usize, f64)> = (0..lk)
                    .filter(|&j| {
                        let j = j as i64;
                        let right_ok = c.window.1.is_none_or(|r| j <= diag + i64::from(r));
                        let left_ok = c.window.0.is_none_or(|l| j >= diag - i64::from(l));
                        (!c.causal || j <= diag) && right_ok && left_ok
                    })
                    .map(|j| {
                        let key = &k[((sk + j) * c.hkv + hk) * d..][..d];
                        let x = sm_scale * row.iter().zip(key).map(|(a, b)| a * b).sum::<f64>();
                        let x = match c.softcap {
                            Some(cap) => f64::from(cap) * (x / f64::from(cap)).tanh(),
                            None => x,
                        };
                        (j, x)
                    })
                    .collect();
                let out = &mut o[((sq + i) * c.hq + h) * d..][..d];
                if scores.is_empty() {
                    out.fill(f64::NAN);
                    lse[h * total_q + sq + i] = f64::NEG_INFINITY;
                    continue;
                }
                let max = scores.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().map(|s| (s.1 - max).exp()).sum();
                lse[h * total_q + sq + i] = max + sum.ln();
                for &(j, s) in &scores {
                    let w = (s - max).exp() / sum;
                    let val = &v[((sk + j) * c.hkv + hk) * d..][..d];
                    for (oc, vc) in out.iter_mut().zip(val) {
                        *oc += w * vc;
                    }
                }
            }
        }
        sq += lq;
        sk += lk;
    }
    (o, lse)
}

fn run_case(device: &Device, rng: &mut TestRng, c: &Case, d: usize) {
    let (total_q, total_k) = (c.len_q.iter().sum(), c.len_k.iter().sum::<usize>());
    let q = rng.tensor(BF16, &[total_q, c.hq, d], -2.0, 2.0);
    let k = rng.tensor(BF16, &[total_k, c.hkv, d], -2.0, 2.0);
    let v = rng.tensor(BF16, &[total_k, c.hkv, d], -1.0, 1.0);
    let max = |l: &[usize]| l.iter().copied().max().unwrap_or(0);
    let sm_scale = 1.0 / (d as f32).sqrt();
    let (o, lse) = forward_varlen(
        device,
        &q,
        &k,
        &v,
        &cu_seqlens(&c.len_q),
        &cu_seqlens(&c.len_k),
        (max(&c.len_q), max(&c.len_k)),
        &c.options(sm_scale),
    )
    .unwrap_or_else(|e| panic!("{c:?} hd {d}: {e}; seed {}", rng.seed));
    assert_eq!(o.shape(), &[total_q, c.hq, d]);
    assert_eq!(lse.shape(), &[c.hq, total_q]);
    let (o_ref, lse_ref) = definition(&q, &k, &v, c, d, f64::from(sm_scale));
    let o_err = normalized_max_error_with_nonfinite(&o.to_vec(), &o_ref);
    let lse_err = normalized_max_error_with_nonfinite(&lse.to_vec(), &lse_ref);
    let lse_tol = match c.softcap {
        Some(_) => LSE_CAP_TOLERANCE,
        None => LSE_TOLERANCE,
    };
    assert!(
        o_err <= O_TOLERANCE && lse_err <= lse_tol,
        "{c:?} hd {d} on {device:?}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {}",
        rng.seed
    );
}

/// The feature matrix at small lengths: every case has sequences whose rows or whole key tiles
/// see no key (an empty key sequence; more queries than keys with bottom-right causal; windows
/// that skip whole 32-key tiles), beside sequences of 1, 17, 64 and 130 rows.
fn cases() -> Vec<Case> {
    let plain = Case {
        len_q: vec![1, 17, 64, 130, 0],
        len_k: vec![17, 1, 64, 130, 3],
        hq: 4,
        hkv: 2,
        causal: false,
        align: Align::BottomRight,
        window: (None, None),
        softcap: None,
    };
    let causal = Case {
        len_q: vec![17, 64, 130, 5],
        len_k: vec![40, 30, 130, 0],
        hq: 2,
        hkv: 1,
        causal: true,
        ..plain.clone()
    };
    vec![
        plain.clone(),
        causal.clone(),
        Case {
            align: Align::TopLeft,
            ..causal.clone()
        },
        Case {
            len_q: vec![100, 1, 30],
            len_k: vec![130, 64, 90],
            window: (Some(20), Some(5)),
            ..plain.clone()
        },
        Case {
            softcap: Some(5.0),
            len_q: vec![65, 17],
            len_k: vec![65, 33],
            ..causal
        },
    ]
}

#[test]
fn varlen_forward_matches_the_definition_at_head_dim_64() {
    let mut rng = TestRng::fresh();
    for c in cases() {
        run_case(&Device::Cpu, &mut rng, &c, 64);
    }
}

#[test]
fn varlen_forward_matches_the_definition_at_head_dim_128() {
    let mut rng = TestRng::fresh();
    let c = Case {
        len_q: vec![17, 130, 0, 64],
        len_k: vec![130, 64, 7, 64],
        hq: 2,
        hkv: 1,
        causal: true,
        align: Align::BottomRight,
        window: (None, None),
        softcap: None,
    };
    run_case(&Device::Cpu, &mut rng, &c, 128);
}

/// Each sequence of a packed batch is the dense attention of that sequence alone: a batch of
/// one sequence and the same sequence beside others give the same rows, bit for bit.
#[test]
fn varlen_sequences_do_not_see_each_other() {
    let mut rng = TestRng::fresh();
    let d = 64;
    let (lq, lk) = (40, 70);
    let q = rng.tensor(BF16, &[lq, 2, d], -2.0, 2.0);
    let k = rng.tensor(BF16, &[lk, 2, d], -2.0, 2.0);
    let v = rng.tensor(BF16, &[lk, 2, d], -1.0, 1.0);
    let pad = |t: &HostTensor, before: usize, after: usize| {
        let mut values = vec![3.0; before * 2 * d];
        values.extend(t.to_vec());
        values.extend(vec![-3.0; after * 2 * d]);
        let n = t.shape()[0] + before + after;
        HostTensor::new(BF16, &[n, 2, d], &values).unwrap()
    };
    let opts = ForwardOptions {
        causal: true,
        ..ForwardOptions::new(0.125)
    };
    let alone = forward_varlen(
        &Device::Cpu,
        &q,
        &k,
        &v,
        &cu_seqlens(&[lq]),
        &cu_seqlens(&[lk]),
        (lq, lk),
        &opts,
    )
    .unwrap();
    let (bq, aq, bk, ak) = (13, 29, 50, 17);
    let packed = forward_varlen(
        &Device::Cpu,
        &pad(&q, bq, aq),
        &pad(&k, bk, ak),
        &pad(&v, bk, ak),
        &cu_seqlens(&[bq, lq, aq]),
        &cu_seqlens(&[bk, lk, ak]),
        (lq, lk),
        &opts,
    )
    .unwrap();
    let rows = |t: &HostTensor| t.to_vec()[bq * 2 * d..(bq + lq) * 2 * d].to_vec();
    assert_eq!(rows(&packed.0), alone.0.to_vec(), "seed {}", rng.seed);
}

#[test]
fn varlen_refuses_bad_cu_seqlens_and_shapes() {
    let d = 64;
    let q = HostTensor::zeros(BF16, &[10, 2, d]);
    let k = HostTensor::zeros(BF16, &[12, 2, d]);
    let opts = ForwardOptions::new(0.125);
    let run = |cu_q: &[f64], cu_k: &[f64], max: (usize, usize)| {
        let t = |c: &[f64]| HostTensor::new(I32, &[c.len()], c).unwrap();
        forward_varlen(&Device::Cpu, &q, &k, &k, &t(cu_q), &t(cu_k), max, &opts)
    };
    let message = |r: Result<_, Error>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(message(run(
        &[0.0, 6.0, 4.0, 10.0],
        &[0.0, 6.0, 12.0, 12.0],
        (10, 10)
    ))
    .contains("nondecreasing"));
    assert!(message(run(&[0.0, 4.0, 9.0], &[0.0, 6.0, 12.0], (10, 10))).contains("ends at 9"));
    assert!(message(run(&[0.0, 4.0, 10.0], &[0.0, 6.0, 12.0], (5, 10)))
        .contains("more than the maximum length 5"));
    assert!(message(run(&[1.0, 4.0, 10.0], &[0.0, 6.0, 12.0], (10, 10))).contains("start at 0"));
    assert!(message(run(&[0.0, 10.0], &[0.0, 6.0, 12.0], (10, 10))).contains("sequences"));
    // Not i32.
    let bad = HostTensor::zeros(BF16, &[3]);
    let err = forward_varlen(&Device::Cpu, &q, &k, &k, &bad, &bad, (10, 10), &opts);
    assert!(message(err).contains("must be i32"));
    // A head dim without a kernel names the supported ones.
    let q80 = HostTensor::zeros(BF16, &[10, 2, 80]);
    let cu = HostTensor::new(I32, &[2], &[0.0, 10.0]).unwrap();
    let err = forward_varlen(&Device::Cpu, &q80, &q80, &q80, &cu, &cu, (10, 10), &opts);
    let text = message(err);
    assert!(text.contains("head dim 80") && text.contains(&format!("{}", VARLEN_HEAD_DIMS[1])));
    // K/V heads that do not divide the query heads.
    let k3 = HostTensor::zeros(BF16, &[12, 3, d]);
    let cu_k = HostTensor::new(I32, &[2], &[0.0, 12.0]).unwrap();
    let err = forward_varlen(&Device::Cpu, &q, &k3, &k3, &cu, &cu_k, (10, 12), &opts);
    assert!(message(err).contains("must divide"));
}

/// The packed rows `start ..` of `[total, heads, d]` values as dense `[heads, len, d]`.
fn dense_rows(t: &[f64], heads: usize, d: usize, start: usize, len: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(heads * len * d);
    for h in 0..heads {
        for i in 0..len {
            out.extend_from_slice(&t[((start + i) * heads + h) * d..][..d]);
        }
    }
    out
}

/// `backward_varlen` against the f64 gradients of each sequence alone
/// (`attention_bwd::reference_grads_with`, checked against finite differences in
/// dsl_attention_bwd), from O and LSE of the f64 forward; dQ twice, bit for bit.
fn check_backward(device: &Device, c: &Case, d: usize) {
    use tilekit::ir::ScalarType::F32;
    use tilekit::kernels::attention::reference_varlen;
    use tilekit::kernels::attention_bwd::{
        backward_varlen, reference_grads_bounded, within_bounds, Rounding,
    };
    let mut rng = TestRng::fresh();
    let (total_q, total_k) = (c.len_q.iter().sum(), c.len_k.iter().sum::<usize>());
    let q = rng.tensor(BF16, &[total_q, c.hq, d], -2.0, 2.0);
    let k = rng.tensor(BF16, &[total_k, c.hkv, d], -2.0, 2.0);
    let v = rng.tensor(BF16, &[total_k, c.hkv, d], -1.0, 1.0);
    let d_o = rng.tensor(BF16, &[total_q, c.hq, d], -1.0, 1.0);
    let opts = c.options(1.0 / (d as f32).sqrt());
    let (qv, kv, vv, dov) = (q.to_vec(), k.to_vec(), v.to_vec(), d_o.to_vec());
    let lens = (c.len_q.as_slice(), c.len_k.as_slice());
    let (o, lse) = reference_varlen((&qv, &kv, &vv), lens, (c.hq, c.hkv, d), &opts);
    let o = HostTensor::new(BF16, &[total_q, c.hq, d], &o).unwrap();
    let lse = HostTensor::new(F32, &[c.hq, total_q], &lse).unwrap();
    let max = |l: &[usize]| l.iter().copied().max().unwrap_or(0);
    let run = || {
        backward_varlen(
            device,
            (&q, &k, &v),
            (&o, &lse, &d_o),
            (&cu_seqlens(&c.len_q), &cu_seqlens(&c.len_k)),
            (max(&c.len_q), max(&c.len_k)),
            &opts,
        )
        .unwrap_or_else(|e| panic!("{c:?} hd {d}: {e}; seed {}", rng.seed))
    };
    let (dq, dk, dv) = run();
    // Expected: each sequence's gradients and their bounds alone, packed back.
    let sizes = [total_q * c.hq, total_k * c.hkv, total_k * c.hkv];
    let mut want = (
        sizes.map(|n| vec![0.0; n * d]),
        sizes.map(|n| vec![0.0; n * d]),
    );
    let (mut sq, mut sk) = (0, 0);
    for (&lq, &lk) in c.len_q.iter().zip(&c.len_k) {
        let (grads, bounds) = reference_grads_bounded(
            (
                &dense_rows(&qv, c.hq, d, sq, lq),
                &dense_rows(&kv, c.hkv, d, sk, lk),
                &dense_rows(&vv, c.hkv, d, sk, lk),
                &dense_rows(&dov, c.hq, d, sq, lq),
            ),
            (c.hq, c.hkv, lq, lk, d),
            &opts,
            None,
            Rounding::new(BF16, F32),
        );
        let put = |out: &mut Vec<f64>, g: &[f64], heads: usize, start: usize, len: usize| {
            for h in 0..heads {
                for i in 0..len {
                    out[((start + i) * heads + h) * d..][..d]
                        .copy_from_slice(&g[(h * len + i) * d..][..d]);
                }
            }
        };
        for (out, g) in [(&mut want.0, &grads), (&mut want.1, &bounds)] {
            put(&mut out[0], &g[0], c.hq, sq, lq);
            put(&mut out[1], &g[1], c.hkv, sk, lk);
            put(&mut out[2], &g[2], c.hkv, sk, lk);
        }
        (sq, sk) = (sq + lq, sk + lk);
    }
    within_bounds(
        &format!("{} {c:?} hd {d}", device.name()),
        [&dq, &dk, &dv],
        &want,
    )
    .unwrap_or_else(|e| panic!("{e}; seed {}", rng.seed));
    assert_eq!(
        run().0.to_vec(),
        dq.to_vec(),
        "dQ differs between runs; seed {}",
        rng.seed
    );
}

#[test]
fn varlen_backward_matches_the_definition_and_is_deterministic() {
    let causal = Case {
        len_q: vec![17, 64, 0, 40, 3],
        len_k: vec![30, 64, 5, 20, 0],
        hq: 2,
        hkv: 1,
        causal: true,
        align: Align::BottomRight,
        window: (None, None),
        softcap: None,
    };
    check_backward(&Device::Cpu, &causal, 64);
    check_backward(
        &Device::Cpu,
        &Case {
            align: Align::TopLeft,
            window: (Some(9), None),
            softcap: Some(5.0),
            len_q: vec![33, 1],
            len_k: vec![50, 16],
            ..causal
        },
        64,
    );
}

/// Head dim 128: mixed lengths with one-row and one-key sequences, a 130-row sequence over one
/// key (bottom-right causal: 129 of its rows see none) and an empty one, plain causal and a
/// window with a cap, on the interpreter; one batch on the PTX emulator (sm_80).
#[test]
fn varlen_backward_at_head_dim_128_matches_the_definition() {
    let causal = Case {
        len_q: vec![1, 130, 17, 0, 40],
        len_k: vec![130, 1, 40, 9, 33],
        hq: 2,
        hkv: 1,
        causal: true,
        align: Align::BottomRight,
        window: (None, None),
        softcap: None,
    };
    check_backward(&Device::Cpu, &causal, 128);
    let capped = Case {
        causal: false,
        window: (Some(20), Some(5)),
        softcap: Some(4.0),
        len_q: vec![130, 1, 33],
        len_k: vec![70, 130, 1],
        ..causal
    };
    check_backward(&Device::Cpu, &capped, 128);
    let small = Case {
        len_q: vec![1, 40, 17],
        len_k: vec![30, 1, 20],
        ..causal
    };
    check_backward(&Device::emulator("sm_80").unwrap(), &small, 128);
}
