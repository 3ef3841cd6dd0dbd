//! The attention forward kernel written in the DSL against full softmax attention in f64
//! (`tilekit_examples::attention::reference`), plain and causal.

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::print_module;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::attention::{attention_fwd, grid};
use tilekit::{Device, ScalarArg};
use tilekit_examples::attention::reference;
use tilekit_tests::compare::{
    max_abs_error, normalized_max_error, normalized_max_error_with_nonfinite,
};
use tilekit_tests::random::TestRng;

/// As in interp_attention.rs: p is rounded to bf16 for P·V (and O to bf16): ≈ 2⁻⁸ relative.
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
        let (o_ref, lse_ref) = reference(
            &q.to_vec(),
            &k.to_vec(),
            &v.to_vec(),
            bh,
            seq_q,
            seq_kv,
            d,
            f64::from(sm_scale),
            causal,
        );
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
        bh,
        seq,
        seq,
        d,
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

/// One launch of the 8-warp variant (128 query rows per block, key tiles of 64) with head dim
/// `D` on the CPU interpreter; returns (O, LSE).
fn run_8_warps<const D: usize, const CAUSAL: bool>(
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    sm_scale: f32,
) -> Result<(Vec<f64>, Vec<f64>), tilekit::Error> {
    let (bh, seq_q) = (q.shape()[0], q.shape()[1]);
    let mut o = HostTensor::zeros(BF16, &[bh, seq_q, D]);
    let mut lse = HostTensor::zeros(F32, &[bh, seq_q]);
    attention_fwd::<bf16, D, 16, 64, 8, CAUSAL>::launch(
        &Device::Cpu,
        grid(bh, seq_q, 128),
        q,
        k,
        v,
        &mut o,
        &mut lse,
        sm_scale.into(),
    )?;
    Ok((o.to_vec(), lse.to_vec()))
}

/// The 8-warp shape (128 query rows per block, key tiles of 64) at head dims 64 and 128, plain
/// and causal, on shapes with several key tiles per block (5, 4 and 8), a partial last tile,
/// more keys than queries, and causal blocks whose first rows are past several whole key
/// tiles.
#[test]
fn dsl_attention_8_warp_variants_match_full_softmax() {
    let mut rng = TestRng::fresh();
    // (bh, seq_q, seq_kv)
    let shapes = [(1, 300, 300), (2, 150, 200), (1, 70, 512)];
    for d in [64, 128] {
        let sm_scale = 1.0 / (d as f32).sqrt();
        for (bh, seq_q, seq_kv) in shapes {
            let q = rng.tensor(BF16, &[bh, seq_q, d], -2.0, 2.0);
            let k = rng.tensor(BF16, &[bh, seq_kv, d], -2.0, 2.0);
            let v = rng.tensor(BF16, &[bh, seq_kv, d], -1.0, 1.0);
            for causal in [false, true] {
                let got = match (d, causal) {
                    (64, false) => run_8_warps::<64, false>(&q, &k, &v, sm_scale),
                    (64, true) => run_8_warps::<64, true>(&q, &k, &v, sm_scale),
                    (_, false) => run_8_warps::<128, false>(&q, &k, &v, sm_scale),
                    (_, true) => run_8_warps::<128, true>(&q, &k, &v, sm_scale),
                };
                let (o, lse) = got.unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
                let (o_ref, lse_ref) = reference(
                    &q.to_vec(),
                    &k.to_vec(),
                    &v.to_vec(),
                    bh,
                    seq_q,
                    seq_kv,
                    d,
                    f64::from(sm_scale),
                    causal,
                );
                let o_err = normalized_max_error(&o, &o_ref);
                let lse_err = max_abs_error(&lse, &lse_ref);
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
