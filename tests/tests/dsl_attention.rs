//! The attention forward kernels written in the DSL against full softmax attention in f64
//! (`tilekit::kernels::attention::reference` and this file's [`definition`]): plain and causal
//! (aligned bottom-right), GQA/MQA, top-left causal, sliding windows and soft-capping, at lengths
//! that are not multiples of the tiles, on the interpreter (this crate's tilekit has no `jit`:
//! the PTX emulator runs the same features in the library's self-test and in the runtime's
//! `attention_features` tests).

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::print_module;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::attention::{
    attention_fwd, attention_fwd_window, forward, grid, reference, Align, ForwardOptions,
    HEAD_DIMS, WINDOW_HEAD_DIMS,
};
use tilekit::{Device, ScalarArg};
use tilekit_tests::compare::{
    max_abs_error, normalized_max_error, normalized_max_error_with_nonfinite,
};
use tilekit_tests::random::TestRng;

/// O: each output row is a p-weighted average of V rows, and p is rounded to bf16 (relative
/// 2⁻⁸ ≈ 4e-3) for the P·V product, O to bf16 once more: ≈ 2⁻⁸ of max|O|.
const O_TOLERANCE: f64 = 1e-2;
/// LSE is f32 arithmetic on values ≤ 10 (absolute error).
const LSE_TOLERANCE: f64 = 1e-5;

/// (bh, seq_q, seq_kv): one tile, partial tiles, more keys than queries, several KV tiles.
const SHAPES: [(usize, usize, usize); 4] = [(2, 64, 64), (3, 37, 37), (1, 50, 130), (2, 150, 150)];

fn check(causal: bool) {
    let mut rng = TestRng::fresh();
    let d = 64;
    let sm_scale = 1.0 / (d as f32).sqrt();
    for (bh, seq_q, seq_kv) in SHAPES {
        let q = rng.tensor(BF16, &[bh, seq_q, d], -2.0, 2.0);
        let k = rng.tensor(BF16, &[bh, seq_kv, d], -2.0, 2.0);
        let v = rng.tensor(BF16, &[bh, seq_kv, d], -1.0, 1.0);
        let mut o = HostTensor::zeros(BF16, &[bh, seq_q, d]);
        let mut lse = HostTensor::zeros(F32, &[bh, seq_q]);
        let g = grid(bh, seq_q, 64);
        let s = ScalarArg::from(sm_scale);
        let r = if causal {
            attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(
                &Device::Cpu,
                g,
                &q,
                &k,
                &v,
                &mut o,
                &mut lse,
                s,
            )
        } else {
            attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(
                &Device::Cpu,
                g,
                &q,
                &k,
                &v,
                &mut o,
                &mut lse,
                s,
            )
        };
        r.unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        // Causal is aligned bottom-right: (1, 50, 130) has row i see keys j ≤ i + 80.
        let case = Case {
            causal: causal.then_some(Diagonal::BottomRight),
            ..Case::dense(bh, seq_q, seq_kv)
        };
        let (o_ref, lse_ref) = definition(&q, &k, &v, &case, f64::from(sm_scale));
        let o_err = normalized_max_error(&o.to_vec(), &o_ref);
        let lse_err = max_abs_error(&lse.to_vec(), &lse_ref);
        assert!(
            o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
            "causal {causal} {bh}×{seq_q}×{seq_kv}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn dsl_attention_matches_full_softmax() {
    check(false);
}

#[test]
fn dsl_causal_attention_matches_full_softmax_over_earlier_keys() {
    check(true);
}

#[test]
fn dsl_attention_with_f32_output_matches() {
    let mut rng = TestRng::fresh();
    let (bh, seq, d) = (2, 70, 64);
    let q = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0);
    let k = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0);
    let v = rng.tensor(BF16, &[bh, seq, d], -1.0, 1.0);
    let mut o = HostTensor::zeros(F32, &[bh, seq, d]);
    let mut lse = HostTensor::zeros(F32, &[bh, seq]);
    attention_fwd::<f32, 64, 16, 64, 4, false>::launch(
        &Device::Cpu,
        grid(bh, seq, 64),
        &q,
        &k,
        &v,
        &mut o,
        &mut lse,
        0.125f32.into(),
    )
    .unwrap();
    let (o_ref, _) = reference(
        &q.to_vec(),
        &k.to_vec(),
        &v.to_vec(),
        (bh, seq, seq, d),
        0.125,
        false,
    );
    let err = normalized_max_error(&o.to_vec(), &o_ref);
    assert!(err <= O_TOLERANCE, "error {err:.3e}; seed {}", rng.seed);
}

#[test]
fn dsl_attention_tile_ir() {
    insta::assert_snapshot!(
        "dsl_attention",
        print_module(attention_fwd::<bf16, 64, 16, 64, 4, false>::module())
    );
    insta::assert_snapshot!(
        "dsl_attention_causal",
        print_module(attention_fwd::<bf16, 64, 16, 64, 4, true>::module())
    );
}

#[test]
fn dsl_attention_launcher_rejects_a_head_dim_other_than_the_kernels() {
    let q = HostTensor::zeros(BF16, &[1, 16, 128]);
    let mut o = HostTensor::zeros(BF16, &[1, 16, 128]);
    let mut lse = HostTensor::zeros(F32, &[1, 16]);
    let err = attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(
        &Device::Cpu,
        grid(1, 16, 64),
        &q,
        &q,
        &q,
        &mut o,
        &mut lse,
        1.0f32.into(),
    )
    .unwrap_err();
    assert!(matches!(err, tilekit::Error::Shape { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("`q` dimension 2 is 128, but the contract needs D = 64"),
        "{err}"
    );
}

#[test]
fn dsl_attention_launcher_rejects_a_scale_that_is_not_positive() {
    let q = HostTensor::zeros(BF16, &[1, 16, 64]);
    let mut o = HostTensor::zeros(BF16, &[1, 16, 64]);
    let mut lse = HostTensor::zeros(F32, &[1, 16]);
    for scale in [0.0f32, -0.125, f32::NAN, f32::INFINITY] {
        let err = attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(
            &Device::Cpu,
            grid(1, 16, 64),
            &q,
            &q,
            &q,
            &mut o,
            &mut lse,
            scale.into(),
        )
        .unwrap_err();
        assert!(matches!(err, tilekit::Error::Shape { .. }), "{err}");
        assert!(
            err.to_string().contains("needs a positive finite scale"),
            "{scale}: {err}"
        );
    }
}

/// Attention where some query rows miss whole key tiles (`tilekit::kernels::attention::HARD_MASK`,
/// written into Q and K as scores of `-inf`): in head 0 every third row misses keys 0..128 (its
/// first two key tiles), in head 1 every third row misses every key. torch gives the softmax
/// over the keys a row sees, and O = NaN, LSE = `-inf` for a row that sees none.
#[test]
fn dsl_attention_with_masked_key_tiles_matches_torch() {
    use tilekit::kernels::attention::{reference_masked, HARD_MASK};
    let mut rng = TestRng::fresh();
    let d = 64;
    for (bh, seq) in [(2, 150), (3, 200)] {
        let shape = (bh, seq, seq, d);
        let mut qv = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0).to_vec();
        let mut kv = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0).to_vec();
        HARD_MASK.apply(&mut qv, &mut kv, shape);
        let q = HostTensor::new(BF16, &[bh, seq, d], &qv).unwrap();
        let k = HostTensor::new(BF16, &[bh, seq, d], &kv).unwrap();
        let v = rng.tensor(BF16, &[bh, seq, d], -1.0, 1.0);
        for causal in [false, true] {
            // The causal variant writes a bf16 O, the plain one an f32 O.
            let mut o = HostTensor::zeros(if causal { BF16 } else { F32 }, &[bh, seq, d]);
            let mut lse = HostTensor::zeros(F32, &[bh, seq]);
            let (g, s) = (grid(bh, seq, 64), ScalarArg::from(0.125f32));
            let r = if causal {
                attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(
                    &Device::Cpu,
                    g,
                    &q,
                    &k,
                    &v,
                    &mut o,
                    &mut lse,
                    s,
                )
            } else {
                attention_fwd::<f32, 64, 16, 64, 4, false>::launch(
                    &Device::Cpu,
                    g,
                    &q,
                    &k,
                    &v,
                    &mut o,
                    &mut lse,
                    s,
                )
            };
            r.unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
            let visible = |h, i, j| HARD_MASK.visible(h, i, j);
            let (o_ref, lse_ref) = reference_masked(
                &q.to_vec(),
                &k.to_vec(),
                &v.to_vec(),
                shape,
                0.125,
                causal,
                &visible,
            );
            let o_err = normalized_max_error_with_nonfinite(&o.to_vec(), &o_ref);
            let lse_err = normalized_max_error_with_nonfinite(&lse.to_vec(), &lse_ref);
            assert!(
                o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
                "{bh}×{seq} causal {causal}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {}",
                rng.seed
            );
            // Rows that see no key are exactly those with LSE = -inf.
            let blind = lse_ref.iter().filter(|l| **l == f64::NEG_INFINITY).count();
            assert!(
                blind > 0 && blind < bh * seq,
                "the mask must blind some rows, not all"
            );
        }
    }
}

/// The variants `forward` runs at every head dim it supports (64: 128 query rows per block,
/// key tiles of 64; 96: 96 rows (6 warps), 64 keys; 128: 128 rows, 64 keys on the interpreter and
/// sm_80 (32 elsewhere); 192: 96 rows, 32 keys; 256: 64 rows, 16 keys, Q read from shared memory),
/// plain and causal, on shapes with several key tiles per block, a partial last tile, more keys
/// than queries, and causal blocks whose first rows are past several whole key tiles (the
/// unmasked interior loop and the masked tail both run).
#[test]
fn dsl_attention_registered_variants_match_full_softmax() {
    let mut rng = TestRng::fresh();
    // (bh, seq_q, seq_kv): lengths up to 130 and one long configuration per head dim; the
    // 1000 and 4097 matrix is `dsl_attention_long` (make test-long).
    let shapes = [(2, 130, 130), (2, 37, 100), (1, 70, 513), (1, 1, 17)];
    for d in HEAD_DIMS {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for (bh, seq_q, seq_kv) in shapes {
            let q = rng.tensor(BF16, &[bh, seq_q, d], -2.0, 2.0);
            let k = rng.tensor(BF16, &[bh, seq_kv, d], -2.0, 2.0);
            let v = rng.tensor(BF16, &[bh, seq_kv, d], -1.0, 1.0);
            for causal in [false, true] {
                let mut opts = ForwardOptions::new(sm_scale);
                opts.causal = causal;
                let (o, lse) = forward(&Device::Cpu, &q, &k, &v, &opts)
                    .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
                let case = Case {
                    causal: causal.then_some(Diagonal::BottomRight),
                    ..Case::dense(bh, seq_q, seq_kv)
                };
                let (o_ref, lse_ref) = definition(&q, &k, &v, &case, f64::from(sm_scale));
                let o_err = normalized_max_error(&o.to_vec(), &o_ref);
                let lse_err = max_abs_error(&lse.to_vec(), &lse_ref);
                assert!(
                    o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
                    "hd {d} causal {causal} {bh}×{seq_q}×{seq_kv}: O error {o_err:.3e}, LSE \
                     error {lse_err:.3e}; seed {}",
                    rng.seed
                );
            }
        }
    }
}

/// Where a causal row's diagonal lies (this file's own names, independent of the library's).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Diagonal {
    /// Row i's last key is `i + seq_kv − seq_q`.
    BottomRight,
    /// Row i's last key is i.
    TopLeft,
}

/// One attention problem: `bh_q` query heads over `bh_kv` K/V heads (query head h reads
/// `h·bh_kv/bh_q`), the causal diagonal, a window `[diag − left, diag + right]` around the
/// bottom-right diagonal (or the top-left one when causal is top-left) and a soft cap.
#[derive(Clone, Copy, Debug)]
struct Case {
    bh_q: usize,
    bh_kv: usize,
    seq_q: usize,
    seq_kv: usize,
    causal: Option<Diagonal>,
    left: Option<u32>,
    right: Option<u32>,
    softcap: Option<f32>,
}

impl Case {
    fn dense(bh: usize, seq_q: usize, seq_kv: usize) -> Case {
        Case {
            bh_q: bh,
            bh_kv: bh,
            seq_q,
            seq_kv,
            causal: None,
            left: None,
            right: None,
            softcap: None,
        }
    }

    fn options(&self, sm_scale: f32) -> ForwardOptions {
        ForwardOptions {
            sm_scale,
            causal: self.causal.is_some(),
            align: if self.causal == Some(Diagonal::TopLeft) {
                Align::TopLeft
            } else {
                Align::BottomRight
            },
            window_left: self.left,
            window_right: self.right,
            softcap: self.softcap,
            alibi: None,
        }
    }
}

/// Softmax attention in f64 from its definition: for query row i of head h, the scores
/// `s_j = scale·q_i·k_j` (then `cap·tanh(s_j/cap)`) over the keys j the row sees, `O_i = Σ_j
/// softmax(s)_j·v_j`, `LSE_i = log Σ_j exp(s_j)`; a row that sees no key has O = NaN and
/// LSE = −inf (torch's softmax and logsumexp of a row of −inf).
fn definition(
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    c: &Case,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (q, k, v) = (q.to_vec(), k.to_vec(), v.to_vec());
    let d = q.len() / (c.bh_q * c.seq_q);
    let (sq, sk) = (c.seq_q as i64, c.seq_kv as i64);
    let mut o = Vec::with_capacity(q.len());
    let mut lse = Vec::with_capacity(c.bh_q * c.seq_q);
    for h in 0..c.bh_q {
        let hk = h * c.bh_kv / c.bh_q;
        for i in 0..c.seq_q {
            let row = i as i64;
            let diag = match c.causal {
                Some(Diagonal::TopLeft) => row,
                _ => row + sk - sq,
            };
            let sees = |j: i64| {
                c.left.is_none_or(|l| j >= diag - i64::from(l))
                    && c.right.is_none_or(|r| j <= diag + i64::from(r))
                    && (c.causal.is_none() || j <= diag)
            };
            let qi = &q[(h * c.seq_q + i) * d..][..d];
            let mut scores = Vec::new();
            for j in 0..c.seq_kv {
                if sees(j as i64) {
                    let kj = &k[(hk * c.seq_kv + j) * d..][..d];
                    let mut s = scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>();
                    if let Some(cap) = c.softcap {
                        s = f64::from(cap) * (s / f64::from(cap)).tanh();
                    }
                    scores.push((j, s));
                }
            }
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

/// The feature matrix: GQA (2 query heads per K/V head) and MQA, bottom-right causal with more
/// keys than queries and with more queries than keys (its first rows, and with 64-row blocks a
/// whole block, see no key), top-left causal, windows that empty whole key tiles and whole rows,
/// soft-capping with and without a mask, lengths 1, 17 and 130.
fn feature_cases() -> Vec<Case> {
    let base = |bh_q, bh_kv, seq_q, seq_kv| Case {
        bh_q,
        bh_kv,
        ..Case::dense(1, seq_q, seq_kv)
    };
    vec![
        Case {
            causal: Some(Diagonal::BottomRight),
            ..base(4, 2, 17, 130)
        },
        Case {
            causal: Some(Diagonal::BottomRight),
            ..base(3, 1, 130, 17)
        },
        base(2, 1, 1, 130),
        Case {
            causal: Some(Diagonal::BottomRight),
            ..base(2, 2, 1, 17)
        },
        Case {
            causal: Some(Diagonal::TopLeft),
            ..base(4, 2, 50, 130)
        },
        Case {
            causal: Some(Diagonal::TopLeft),
            ..base(2, 1, 130, 17)
        },
        // Row i sees keys i + 70 − 20 ..= i + 70 + 5: the first key tiles of every block are
        // empty for rows near the start.
        Case {
            left: Some(20),
            right: Some(5),
            ..base(4, 1, 60, 130)
        },
        // Keys i − 3 ..= i − 1 (a window that excludes the diagonal): row 0 sees nothing.
        Case {
            causal: Some(Diagonal::BottomRight),
            left: Some(3),
            right: Some(0),
            ..base(2, 1, 130, 130)
        },
        Case {
            left: Some(0),
            right: Some(40),
            ..base(2, 2, 17, 17)
        },
        Case {
            softcap: Some(5.0),
            ..base(4, 2, 130, 60)
        },
        Case {
            softcap: Some(2.0),
            causal: Some(Diagonal::BottomRight),
            left: Some(31),
            ..base(2, 1, 70, 130)
        },
    ]
}

/// Runs every feature case at every head dim `forward` supports on `device` and compares
/// with [`definition`]; the tolerances hold for NVIDIA's approximate tanh too.
fn check_features(device: &Device, cases: &[Case]) {
    let mut rng = TestRng::fresh();
    for d in HEAD_DIMS {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for c in cases {
            let opts = c.options(sm_scale);
            if opts.needs_window_kernel(c.seq_q, c.seq_kv) && !WINDOW_HEAD_DIMS.contains(&d) {
                continue;
            }
            let q = rng.tensor(BF16, &[c.bh_q, c.seq_q, d], -2.0, 2.0);
            let k = rng.tensor(BF16, &[c.bh_kv, c.seq_kv, d], -2.0, 2.0);
            let v = rng.tensor(BF16, &[c.bh_kv, c.seq_kv, d], -1.0, 1.0);
            let (o, lse) = forward(device, &q, &k, &v, &c.options(sm_scale))
                .unwrap_or_else(|e| panic!("{c:?} hd {d}: {e}; seed {}", rng.seed));
            let (o_ref, lse_ref) = definition(&q, &k, &v, c, f64::from(sm_scale));
            let o_err = normalized_max_error_with_nonfinite(&o.to_vec(), &o_ref);
            let lse_err = normalized_max_error_with_nonfinite(&lse.to_vec(), &lse_ref);
            // tanh.approx.f32 (NVIDIA) is off by ≈ 2⁻¹¹ relative: the capped scores by up to
            // cap·5e-4, which LSE (≈ 5 here) passes on.
            let lse_tol = if c.softcap.is_some() {
                2e-3
            } else {
                LSE_TOLERANCE
            };
            assert!(
                o_err <= O_TOLERANCE && lse_err <= lse_tol,
                "{c:?} hd {d} on {device:?}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {}",
                rng.seed
            );
        }
    }
}

#[test]
fn dsl_attention_features_match_the_definition_on_the_interpreter() {
    check_features(&Device::Cpu, &feature_cases());
}

/// The bottom-right and top-left alignments are the same mask when seq_q = seq_kv, and differ
/// when seq_q ≠ seq_kv: the two kernels that compute them must agree and differ accordingly.
#[test]
fn dsl_attention_causal_alignments_agree_only_for_equal_lengths() {
    let mut rng = TestRng::fresh();
    let d = 64;
    for (seq_q, seq_kv, same) in [(70, 70, true), (40, 100, false)] {
        let q = rng.tensor(BF16, &[2, seq_q, d], -2.0, 2.0);
        let k = rng.tensor(BF16, &[2, seq_kv, d], -2.0, 2.0);
        let v = rng.tensor(BF16, &[2, seq_kv, d], -1.0, 1.0);
        let mut opts = ForwardOptions::new(0.125);
        opts.causal = true;
        let (bottom_right, _) = forward(&Device::Cpu, &q, &k, &v, &opts).unwrap();
        opts.align = Align::TopLeft;
        let (top_left, _) = forward(&Device::Cpu, &q, &k, &v, &opts).unwrap();
        let err = normalized_max_error(&bottom_right.to_vec(), &top_left.to_vec());
        assert_eq!(
            err <= O_TOLERANCE,
            same,
            "{seq_q}×{seq_kv}: difference {err:.3e}; seed {}",
            rng.seed
        );
    }
}

#[test]
fn dsl_attention_launcher_rejects_kv_heads_that_do_not_divide_the_query_heads() {
    let q = HostTensor::zeros(BF16, &[6, 16, 64]);
    let kv = HostTensor::zeros(BF16, &[4, 16, 64]);
    let mut o = HostTensor::zeros(BF16, &[6, 16, 64]);
    let mut lse = HostTensor::zeros(F32, &[6, 16]);
    let err = attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(
        &Device::Cpu,
        grid(6, 16, 64),
        &q,
        &kv,
        &kv,
        &mut o,
        &mut lse,
        0.125f32.into(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("`k` and `v` have 4 heads (batch·heads) and `q` 6"),
        "{err}"
    );
}

#[test]
fn dsl_attention_window_launcher_rejects_a_cap_that_is_not_positive() {
    let q = HostTensor::zeros(BF16, &[1, 16, 64]);
    let mut o = HostTensor::zeros(BF16, &[1, 16, 64]);
    let mut lse = HostTensor::zeros(F32, &[1, 16]);
    for cap in [0.0f32, -1.0, f32::INFINITY] {
        let err = attention_fwd_window::<bf16, 64, 16, 32, 4, true>::launch(
            &Device::Cpu,
            grid(1, 16, 64),
            &q,
            &q,
            &q,
            &mut o,
            &mut lse,
            0.125f32.into(),
            ScalarArg::from(i32::MAX),
            ScalarArg::from(0i32),
            cap.into(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("soft-capping needs a positive finite cap"),
            "{cap}: {err}"
        );
    }
}

#[test]
fn dsl_attention_forward_names_the_supported_head_dims() {
    let q = HostTensor::zeros(BF16, &[1, 16, 80]);
    let err = forward(&Device::Cpu, &q, &q, &q, &ForwardOptions::new(0.125)).unwrap_err();
    assert!(
        err.to_string()
            .contains("head dim 80 is not supported; supported: 64, 96, 128, 192, 256"),
        "{err}"
    );
}
