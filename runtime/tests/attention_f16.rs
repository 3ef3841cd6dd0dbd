//! The f16 attention forward (`attention::forward` with f16 Q, K, V: `attention_fwd_f16`) on
//! the PTX emulator for sm_80 against the f64 reference, plain and bottom-right causal with GQA
//! and rows that see no key (the interpreter runs more shapes in the tests crate's
//! `dsl_attention_f16`).

use tilekit::ir::ScalarType::F16;
use tilekit::kernels::attention::{forward, reference_with, ForwardOptions};
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

#[test]
fn f16_forward_matches_the_reference_on_the_sm_80_emulator() {
    let device = Device::from_name("emu:sm_80").unwrap();
    let mut rng = Rng::fresh();
    // (head dim, bh_q, bh_kv, seq_q, seq_kv): GQA with more keys than queries; MQA with more
    // queries than keys (causal: the first rows see no key).
    for (d, bh_q, bh_kv, seq_q, seq_kv) in [(64, 4, 2, 37, 100), (128, 2, 1, 70, 33)] {
        let q = rng.tensor(F16, &[bh_q, seq_q, d], -2.0, 2.0);
        let k = rng.tensor(F16, &[bh_kv, seq_kv, d], -2.0, 2.0);
        let v = rng.tensor(F16, &[bh_kv, seq_kv, d], -1.0, 1.0);
        for causal in [false, true] {
            let opts = ForwardOptions {
                causal,
                ..ForwardOptions::new(1.0 / (d as f32).sqrt())
            };
            let name = format!("{bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} causal {causal}");
            let (o, lse) = forward(&device, &q, &k, &v, &opts)
                .unwrap_or_else(|e| panic!("{name}: {e} (seed {})", rng.seed));
            assert_eq!(o.dtype(), F16, "{name}");
            let dims = (bh_q, bh_kv, seq_q, seq_kv, d);
            let (wo, wl) = reference_with(&q.to_vec(), &k.to_vec(), &v.to_vec(), dims, &opts);
            let (eo, el) = (error(&o.to_vec(), &wo), error(&lse.to_vec(), &wl));
            // P rounded to f16 (2⁻¹¹) for P·V, O to f16: ≈ 1e-3; LSE in f32 with ex2.approx.
            assert!(
                eo <= 4e-3 && el <= 1e-5,
                "{name}: O error {eo:.2e}, LSE error {el:.2e} (seed {})",
                rng.seed
            );
        }
    }
}
