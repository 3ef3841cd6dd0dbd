//! ALiBi attention (`ForwardOptions::alibi`) on the PTX emulator for sm_80: the forward against
//! the f64 reference with the same slopes, and the backward's f32 gradients against the f64
//! gradients, with GQA and causal masks whose first rows see no key (the interpreter runs the
//! full matrix in the tests crate's `dsl_attention_alibi`).

use tilekit::ir::ScalarType::BF16;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::attention::{forward, reference_with, Alibi, Align, ForwardOptions};
use tilekit::kernels::attention_bwd::check_against_reference;
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// Normalized max error; NaN (rows with no key) and −inf must match exactly.
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

fn check(
    device: &Device,
    d: usize,
    (bh_q, bh_kv, seq_q, seq_kv): (usize, usize, usize, usize),
    opts: &ForwardOptions,
) {
    let mut rng = Rng::fresh();
    let q = rng.tensor(BF16, &[bh_q, seq_q, d], -2.0, 2.0);
    let k = rng.tensor(BF16, &[bh_kv, seq_kv, d], -2.0, 2.0);
    let v = rng.tensor(BF16, &[bh_kv, seq_kv, d], -1.0, 1.0);
    let d_o = rng.tensor(BF16, &[bh_q, seq_q, d], -1.0, 1.0);
    let name = format!("{bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} {opts:?}");
    let (o, lse) = forward(device, &q, &k, &v, opts)
        .unwrap_or_else(|e| panic!("{name}: {e} (seed {})", rng.seed));
    let dims = (bh_q, bh_kv, seq_q, seq_kv, d);
    let (wo, wl) = reference_with(&q.to_vec(), &k.to_vec(), &v.to_vec(), dims, opts);
    let (eo, el) = (error(&o.to_vec(), &wo), error(&lse.to_vec(), &wl));
    assert!(
        eo <= 1e-2 && el <= 1e-4,
        "{name}: O error {eo:.2e}, LSE error {el:.2e} (seed {})",
        rng.seed
    );

    // Every gradient element within its bound from the definition.
    check_against_reference(device, (&q, &k, &v, &d_o), opts, F32, (&name, rng.seed))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn alibi_forward_and_backward_match_the_reference_on_the_sm_80_emulator() {
    let device = Device::from_name("emu:sm_80").unwrap();
    let causal = ForwardOptions {
        causal: true,
        alibi: Some(Alibi::Standard { heads: 4 }),
        ..ForwardOptions::new(0.125)
    };
    // GQA, more queries than keys: the first rows see no key.
    check(&device, 64, (4, 2, 70, 40), &causal);
    // Top-left causal with a window, head dim 128, MQA.
    let windowed = ForwardOptions {
        align: Align::TopLeft,
        window_left: Some(9),
        alibi: Some(Alibi::Standard { heads: 2 }),
        ..causal
    };
    check(&device, 128, (2, 1, 33, 50), &windowed);
}
