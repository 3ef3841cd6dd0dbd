//! `attention::forward` at the head dims and key tiles it picks per device, against the f64
//! reference at awkward lengths (1, 17, 130; GQA, causal with rows that see no key), on the
//! interpreter and the PTX emulator for sm_80: hd128 takes the 64-key tiles there
//! (`attention_fwd<bf16, 128, 16, 64, 8, _>`, K and V copied in 16-key chunks, Q read from
//! shared memory); hd96 and hd192 run their blocks of 6 warps (rows of 96 and 192 columns are
//! copied by 192 threads). O is checked element by element against a bound derived from the
//! computation, LSE against its own magnitude. `attention_bwd::backward` at hd96 (plain and
//! causal) against the f64 gradients, element by element within `check_against_reference`'s
//! bounds.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::attention::{forward, reference_with, ForwardOptions};
use tilekit::kernels::attention_bwd::{backward, check_against_reference};
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// The largest error of `got` in units of `bound`, element by element; a reference value that
/// is not finite (a row with no key: NaN, or LSE `-inf`) must be matched exactly.
fn error_in_bounds(got: &[f64], want: &[f64], bound: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .zip(bound)
        .map(|((g, w), b)| match w.is_finite() {
            true => (g - w).abs() / b,
            false if g.is_nan() && w.is_nan() || g == w => 0.0,
            false => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

/// Runs `forward` on `device` for every case at head dim `d` and checks O and LSE.
fn check_head_dim(device: &Device, d: usize) {
    let mut rng = Rng::fresh();
    // (bh_q, bh_kv, seq_q, seq_kv): one query against 130 keys (the last key tile ragged),
    // 17×17 (one ragged tile), 130×130 (several tiles, the last ragged) with MQA, and more
    // queries than keys (causal: the first 113 rows see no key).
    let cases = [
        (2, 1, 1, 130),
        (2, 2, 17, 17),
        (4, 1, 130, 130),
        (2, 1, 130, 17),
    ];
    for (bh_q, bh_kv, seq_q, seq_kv) in cases {
        let q = rng.tensor(BF16, &[bh_q, seq_q, d], -2.0, 2.0);
        let k = rng.tensor(BF16, &[bh_kv, seq_kv, d], -2.0, 2.0);
        let v = rng.tensor(BF16, &[bh_kv, seq_kv, d], -1.0, 1.0);
        let v_abs: Vec<f64> = v.to_vec().iter().map(|x| x.abs()).collect();
        for causal in [false, true] {
            let opts = ForwardOptions {
                causal,
                ..ForwardOptions::new(1.0 / (d as f32).sqrt())
            };
            let name = format!(
                "{device:?} hd {d}, {bh_q}/{bh_kv} heads {seq_q}×{seq_kv}, causal {causal}"
            );
            let (o, lse) = forward(device, &q, &k, &v, &opts)
                .unwrap_or_else(|e| panic!("{name}: {e} (seed {})", rng.seed));
            let dims = (bh_q, bh_kv, seq_q, seq_kv, d);
            let (wo, wl) = reference_with(&q.to_vec(), &k.to_vec(), &v.to_vec(), dims, &opts);
            // Σ_j p_j·|v_j|: the scale of P·V's rounding errors.
            let (scale, _) = reference_with(&q.to_vec(), &k.to_vec(), &v_abs, dims, &opts);
            // P rounded to bf16 (relative 2⁻⁸) for P·V, whose sum is normalized by l computed
            // from the unrounded P: at most 2⁻⁸·Σp|v| (2⁻⁷ allows the f32 accumulation and
            // ex2.approx); O rounded to bf16: 2⁻⁸·|O|.
            let o_bound: Vec<f64> = scale
                .iter()
                .zip(&wo)
                .map(|(s, w)| s / 128.0 + w.abs() / 256.0 + 1e-30)
                .collect();
            // LSE in f32 from scores accumulated in f32, ex2.approx and lg2.approx.
            let lse_bound: Vec<f64> = wl.iter().map(|w| 2e-5 * (1.0 + w.abs())).collect();
            let eo = error_in_bounds(&o.to_vec(), &wo, &o_bound);
            let el = error_in_bounds(&lse.to_vec(), &wl, &lse_bound);
            assert!(
                eo <= 1.0 && el <= 1.0,
                "{name}: O error {eo:.2} and LSE error {el:.2} of their bounds (seed {})",
                rng.seed
            );
        }
    }
}

#[test]
fn hd128_forward_with_64_key_tiles_matches_the_reference_on_the_sm_80_emulator() {
    check_head_dim(&Device::from_name("emu:sm_80").unwrap(), 128);
}

#[test]
fn hd128_forward_with_64_key_tiles_matches_the_reference_on_the_interpreter() {
    check_head_dim(&Device::Cpu, 128);
}

#[test]
fn hd96_forward_matches_the_reference_on_the_sm_80_emulator() {
    check_head_dim(&Device::from_name("emu:sm_80").unwrap(), 96);
}

#[test]
fn hd96_forward_matches_the_reference_on_the_interpreter() {
    check_head_dim(&Device::Cpu, 96);
}

#[test]
fn hd192_forward_matches_the_reference_on_the_sm_80_emulator() {
    check_head_dim(&Device::from_name("emu:sm_80").unwrap(), 192);
}

#[test]
fn hd192_forward_matches_the_reference_on_the_interpreter() {
    check_head_dim(&Device::Cpu, 192);
}

/// The tensors are what the kernel's contract expects: a view of another head dim is refused
/// with the supported ones named.
#[test]
fn forward_names_the_supported_head_dims() {
    let t = HostTensor::zeros(BF16, &[1, 16, 80]);
    let err = forward(&Device::Cpu, &t, &t, &t, &ForwardOptions::new(0.1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("head dim 80 is not supported; supported: 64, 96, 128, 192, 256"),
        "{err}"
    );
}

/// Runs `backward` at head dim `d` on `device` for awkward lengths (one query, a ragged single
/// tile, several key blocks with GQA, more queries than keys so that causal rows see no key),
/// plain and causal, and checks dQ, dK and dV against the f64 gradients.
fn check_backward(device: &Device, d: usize) {
    let mut rng = Rng::fresh();
    let cases = [
        (2, 1, 1, 130, F32),
        (2, 2, 17, 17, BF16),
        (4, 2, 130, 100, F32),
        (2, 1, 130, 17, F32),
    ];
    for (bh_q, bh_kv, seq_q, seq_kv, grads) in cases {
        let q = rng.tensor(BF16, &[bh_q, seq_q, d], -2.0, 2.0);
        let k = rng.tensor(BF16, &[bh_kv, seq_kv, d], -2.0, 2.0);
        let v = rng.tensor(BF16, &[bh_kv, seq_kv, d], -1.0, 1.0);
        let d_o = rng.tensor(BF16, &[bh_q, seq_q, d], -1.0, 1.0);
        for causal in [false, true] {
            let opts = ForwardOptions {
                causal,
                ..ForwardOptions::new(1.0 / (d as f32).sqrt())
            };
            let name = format!(
                "{device:?} backward hd {d}, {bh_q}/{bh_kv} heads {seq_q}×{seq_kv}, causal \
                 {causal}, {grads} gradients"
            );
            check_against_reference(device, (&q, &k, &v, &d_o), &opts, grads, (&name, rng.seed))
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn hd96_backward_matches_the_reference_on_the_sm_80_emulator() {
    check_backward(&Device::from_name("emu:sm_80").unwrap(), 96);
}

#[test]
fn hd96_backward_matches_the_reference_on_the_interpreter() {
    check_backward(&Device::Cpu, 96);
}

/// Head dim 96 has the plain and causal backward only: a window is refused with what is
/// supported named.
#[test]
fn backward_at_hd96_refuses_a_window() {
    let t = HostTensor::zeros(BF16, &[1, 16, 96]);
    let lse = HostTensor::zeros(F32, &[1, 16]);
    let grad = || HostTensor::zeros(F32, &[1, 16, 96]);
    let (mut dq, mut dk, mut dv) = (grad(), grad(), grad());
    let opts = ForwardOptions {
        window_left: Some(4),
        ..ForwardOptions::new(0.1)
    };
    let err = backward(
        &Device::Cpu,
        (&t, &t, &t),
        (&t, &lse, &t),
        &opts,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "head dim 96 has the backward of plain or bottom-right causal bf16 attention only"
        ),
        "{err}"
    );
}
