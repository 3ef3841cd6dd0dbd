//! The variable-length attention forward (`attention::forward_varlen`) on the PTX emulator for
//! sm_80 against the f64 reference, with mixed lengths, an empty sequence, GQA and
//! bottom-right causal masks whose first rows see no key (the interpreter runs the full feature
//! matrix in the tests crate's `dsl_attention_varlen`).

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, I32};
use tilekit::kernels::attention::{forward_varlen, reference_varlen, Align, ForwardOptions};
use tilekit::kernels::check::Rng;
use tilekit::Device;

fn cu_seqlens(lengths: &[usize]) -> HostTensor {
    let mut cu = vec![0.0];
    for &n in lengths {
        cu.push(cu.last().unwrap() + n as f64);
    }
    HostTensor::new(I32, &[cu.len()], &cu).unwrap()
}

/// O within bf16 rounding of P and O (≈ 2⁻⁸ relative), LSE within f32 sums; NaN (rows with
/// no key) and −inf must match exactly.
fn error(out: &[f64], reference: &[f64]) -> f64 {
    let scale = reference
        .iter()
        .filter(|r| r.is_finite())
        .fold(0.0f64, |m, r| m.max(r.abs()));
    out.iter()
        .zip(reference)
        .map(|(o, r)| match (o.is_finite(), r.is_finite()) {
            (true, true) => (o - r).abs() / scale.max(1e-30),
            _ if o.is_nan() && r.is_nan() || o == r => 0.0,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max)
}

fn check(device: &Device, d: usize, (len_q, len_k): (&[usize], &[usize]), opts: &ForwardOptions) {
    let mut rng = Rng::fresh();
    let (hq, hkv) = (2, 1);
    let (total_q, total_k) = (len_q.iter().sum(), len_k.iter().sum::<usize>());
    let q = rng.tensor(BF16, &[total_q, hq, d], -2.0, 2.0);
    let k = rng.tensor(BF16, &[total_k, hkv, d], -2.0, 2.0);
    let v = rng.tensor(BF16, &[total_k, hkv, d], -1.0, 1.0);
    let max = |l: &[usize]| l.iter().copied().max().unwrap_or(0);
    let (o, lse) = forward_varlen(
        device,
        &q,
        &k,
        &v,
        &cu_seqlens(len_q),
        &cu_seqlens(len_k),
        (max(len_q), max(len_k)),
        opts,
    )
    .unwrap_or_else(|e| panic!("{opts:?}: {e} (seed {})", rng.seed));
    let (wo, wl) = reference_varlen(
        (&q.to_vec(), &k.to_vec(), &v.to_vec()),
        (len_q, len_k),
        (hq, hkv, d),
        opts,
    );
    let (eo, el) = (error(&o.to_vec(), &wo), error(&lse.to_vec(), &wl));
    // tanh.approx.f32 is off by ≈ 2⁻¹¹ relative on each capped score, which LSE passes on.
    let lse_tol = if opts.softcap.is_some() { 2e-3 } else { 1e-5 };
    assert!(
        eo <= 1e-2 && el <= lse_tol,
        "{opts:?} hd {d} on {device:?}: O error {eo:.2e}, LSE error {el:.2e} (seed {})",
        rng.seed
    );
}

#[test]
fn varlen_forward_matches_the_reference_on_the_sm_80_emulator() {
    let device = Device::from_name("emu:sm_80").unwrap();
    let causal = ForwardOptions {
        causal: true,
        ..ForwardOptions::new(0.125)
    };
    // More queries than keys (rows that see no key), an empty key sequence, a single row.
    check(&device, 64, (&[40, 17, 1, 5], &[20, 70, 1, 0]), &causal);
    // Top-left causal with a window and a cap, head dim 128.
    let windowed = ForwardOptions {
        align: Align::TopLeft,
        window_left: Some(9),
        softcap: Some(5.0),
        ..causal
    };
    check(&device, 128, (&[33, 1], &[50, 16]), &windowed);
}
