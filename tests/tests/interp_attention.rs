//! The FlashAttention-style forward kernel on the interpreter against full softmax attention in
//! f64.

use tilekit::ir::interp::{self, Arg, HostTensor, InterpError};
use tilekit::ir::ScalarType::{self, BF16, F32};
use tilekit_examples::attention::{self, AttentionConfig};
use tilekit_tests::compare::{max_abs_error, normalized_max_error};
use tilekit_tests::random::TestRng;

/// O: each output row is a p-weighted average of V rows, and p is rounded to bf16 (relative
/// 2⁻⁸ ≈ 4e-3) for the P·V product; a bf16 O is rounded once more. The roundings are independent,
/// so the error is of the order 2⁻⁸·|O| rather than the worst case 2⁻⁸·max|V|; measured up to
/// 4e-3 of max|ref| (bf16 O) and 1.6e-3 (f32 O). 1e-2 is the bound for bf16-input kernels.
const O_TOLERANCE: f64 = 1e-2;
/// LSE: f32 arithmetic on values of size ≈ ln(seq_kv) + max score ≤ 10, where an f32 ulp is
/// ≈ 1e-6; the row sums add f32 roundings of relative size 6e-8 each. Measured errors stay
/// below 1e-6. Absolute error, since LSE is a log (its error is the relative error of Σ exp).
const LSE_TOLERANCE: f64 = 1e-5;

/// Runs `cfg` on `(bh, seq_q, seq_kv)` shapes with fresh inputs; prints and checks the errors.
fn check(cfg: &AttentionConfig, shapes: &[(usize, usize, usize)]) {
    let mut rng = TestRng::fresh();
    let d = cfg.head_dim as usize;
    let sm_scale = 1.0 / (d as f32).sqrt();
    for &(bh, seq_q, seq_kv) in shapes {
        // Scores s = q·k/√d with q, k uniform in ±2 have a standard deviation ≈ 1.3: softmax
        // rows that are neither flat nor one-hot.
        let q = rng.tensor(BF16, &[bh, seq_q, d], -2.0, 2.0);
        let k = rng.tensor(BF16, &[bh, seq_kv, d], -2.0, 2.0);
        let v = rng.tensor(BF16, &[bh, seq_kv, d], -1.0, 1.0);
        let out = attention::run(cfg, &q, &k, &v, sm_scale)
            .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
        let (o_ref, lse_ref) = attention::reference(
            &q.to_vec(),
            &k.to_vec(),
            &v.to_vec(),
            bh,
            seq_q,
            seq_kv,
            d,
            f64::from(sm_scale),
            cfg.causal,
        );
        let o_err = normalized_max_error(&out.o.to_vec(), &o_ref);
        let lse_err = max_abs_error(&out.lse.to_vec(), &lse_ref);
        let what = format!(
            "attention bh {bh} seq_q {seq_q} seq_kv {seq_kv} d {d} causal {} out {}",
            cfg.causal, cfg.out
        );
        eprintln!("{what}: O normalized max error {o_err:.3e}, LSE max abs error {lse_err:.3e}");
        assert!(
            o_err <= O_TOLERANCE,
            "{what}: max|O − ref| / max|ref| = {o_err:.3e} > {O_TOLERANCE:.0e}; seed {}",
            rng.seed
        );
        assert!(
            lse_err <= LSE_TOLERANCE,
            "{what}: max|LSE − ref| = {lse_err:.3e} > {LSE_TOLERANCE:.0e}; seed {}",
            rng.seed
        );
    }
}

/// Sequence lengths: one exact multiple of the KV tile and of the 64-row query block, then
/// lengths with partial tiles (100: two blocks; 37: one partial block and tile; 300: five
/// blocks, and causal blocks that stop their KV loop at different diagonals).
const SEQS: [(usize, usize, usize); 4] = [(2, 64, 64), (2, 100, 100), (3, 37, 37), (2, 300, 300)];

fn config(causal: bool, out: ScalarType) -> AttentionConfig {
    AttentionConfig {
        causal,
        out,
        ..AttentionConfig::default()
    }
}

#[test]
fn attention_matches_full_softmax() {
    check(&config(false, BF16), &SEQS);
}

#[test]
fn causal_attention_matches_full_softmax_over_earlier_keys() {
    check(&config(true, BF16), &SEQS);
}

#[test]
fn attention_with_f32_output_matches_full_softmax() {
    check(&config(false, F32), &SEQS[1..]);
    check(&config(true, F32), &SEQS[1..]);
}

#[test]
fn attention_with_more_keys_than_queries_matches() {
    // Cross-attention shapes; causal keeps the top-left alignment of `mask.causal` (row i sees
    // keys 0..=i).
    let shapes = [(2, 50, 130), (1, 80, 33)];
    check(&config(false, BF16), &shapes);
    check(&config(true, BF16), &shapes);
}

#[test]
fn attention_with_head_dim_128_matches() {
    let cfg = AttentionConfig {
        head_dim: 128,
        ..AttentionConfig::default()
    };
    check(&cfg, &[(1, 100, 100)]);
    check(
        &AttentionConfig {
            causal: true,
            ..cfg
        },
        &[(1, 70, 70)],
    );
}

#[test]
fn attention_with_32_row_warps_and_32_key_tiles_matches() {
    let cfg = AttentionConfig {
        rows_per_warp: 32,
        warps: 2,
        kv_block: 32,
        causal: true,
        ..AttentionConfig::default()
    };
    check(&cfg, &[(2, 100, 100), (1, 37, 37)]);
}

#[test]
fn attention_rejects_a_call_without_the_scale() {
    let cfg = AttentionConfig::default();
    let module = attention::build(&cfg);
    let t = || Arg::Tensor(HostTensor::zeros(BF16, &[1, 16, 64]));
    let mut args = vec![
        t(),
        t(),
        t(),
        t(),
        Arg::Tensor(HostTensor::zeros(F32, &[1, 16])),
    ];
    let err = interp::run(&module, attention::KERNEL, cfg.grid(1, 16), &mut args).unwrap_err();
    let InterpError::Argument { message } = &err else {
        panic!("expected an argument error, got {err}");
    };
    assert!(
        message.contains("kernel @attention_fwd takes 6 arguments, got 5"),
        "{message}"
    );
}

#[test]
fn attention_run_rejects_a_head_dim_other_than_the_configured_one() {
    let q = HostTensor::zeros(BF16, &[1, 16, 32]);
    let err = attention::run(&AttentionConfig::default(), &q, &q, &q, 1.0).unwrap_err();
    assert!(err.to_string().contains("expected [1, seq, 64]"), "{err}");
}

/// The builder's kernel where some query rows miss whole key tiles
/// (`tilekit::kernels::attention::HARD_MASK`, written into Q and K as `-inf` scores): torch's
/// softmax over the keys each row sees, and O = NaN, LSE = `-inf` for a row that sees none.
#[test]
fn attention_with_masked_key_tiles_matches_torch() {
    use tilekit::kernels::attention::{reference_masked, HARD_MASK};
    use tilekit_tests::compare::normalized_max_error_with_nonfinite;
    let mut rng = TestRng::fresh();
    let d = 64;
    for causal in [false, true] {
        for out in [BF16, F32] {
            let cfg = config(causal, out);
            for (bh, seq) in [(2, 150), (3, 130)] {
                let shape = (bh, seq, seq, d);
                let mut qv = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0).to_vec();
                let mut kv = rng.tensor(BF16, &[bh, seq, d], -2.0, 2.0).to_vec();
                HARD_MASK.apply(&mut qv, &mut kv, shape);
                let q = HostTensor::new(BF16, &[bh, seq, d], &qv).unwrap();
                let k = HostTensor::new(BF16, &[bh, seq, d], &kv).unwrap();
                let v = rng.tensor(BF16, &[bh, seq, d], -1.0, 1.0);
                let got = attention::run(&cfg, &q, &k, &v, 0.125)
                    .unwrap_or_else(|e| panic!("seed {}: {e}", rng.seed));
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
                let o_err = normalized_max_error_with_nonfinite(&got.o.to_vec(), &o_ref);
                let lse_err = normalized_max_error_with_nonfinite(&got.lse.to_vec(), &lse_ref);
                assert!(
                    o_err <= O_TOLERANCE && lse_err <= LSE_TOLERANCE,
                    "{bh}×{seq} causal {causal} out {out}: O error {o_err:.3e}, LSE error {lse_err:.3e}; seed {}",
                    rng.seed
                );
                let blind = lse_ref.iter().filter(|l| **l == f64::NEG_INFINITY).count();
                assert!(
                    blind > 0 && blind < bh * seq,
                    "the mask must blind some rows, not all"
                );
            }
        }
    }
}
