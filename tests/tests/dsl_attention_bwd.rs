//! The attention backward kernels (`tilekit::kernels::attention_bwd`) against gradients in f64
//! from the definition: the library forward kernel gives O and LSE as a training step would, the
//! backward gives dQ, dK, dV, and `reference_grads` gives the analytic gradients of
//! `loss = Σ dO ∘ O`. The reference itself is checked once against central finite differences
//! of that loss through the forward reference. Each element of each gradient must be within
//! its own bound from the definition (`reference_grads_bounded`), which holds where dS cancels
//! (one-row heads, a single key) as an error normalized by the largest gradient does not.

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F16, F32};
use tilekit::kernels::attention::{attention_fwd, grid, reference_with, Align, ForwardOptions};
use tilekit::kernels::attention_bwd::{
    backward, reference_grads, reference_grads_bounded, reference_grads_with, saved_from_reference,
    within_bounds, Rounding,
};
use tilekit::kernels::check::poisoned;
use tilekit::{Device, ScalarArg};
use tilekit_tests::random::TestRng;

const D: usize = 64;

/// Inputs of one case, rounded to bf16 as the kernels take them.
struct Case {
    q: HostTensor,
    k: HostTensor,
    v: HostTensor,
    d_o: HostTensor,
    shape: (usize, usize, usize, usize),
    scale: f32,
    causal: bool,
}

impl Case {
    fn random(rng: &mut TestRng, (bh, seq_q, seq_kv): (usize, usize, usize), causal: bool) -> Case {
        Case {
            q: rng.tensor(BF16, &[bh, seq_q, D], -2.0, 2.0),
            k: rng.tensor(BF16, &[bh, seq_kv, D], -2.0, 2.0),
            v: rng.tensor(BF16, &[bh, seq_kv, D], -1.0, 1.0),
            d_o: rng.tensor(BF16, &[bh, seq_q, D], -1.0, 1.0),
            shape: (bh, seq_q, seq_kv, D),
            scale: 1.0 / (D as f32).sqrt(),
            causal,
        }
    }

    /// O (of dtype `o_dtype`) and LSE from the library's forward kernel.
    fn forward(
        &self,
        device: &Device,
        o_dtype: ScalarType,
    ) -> Result<(HostTensor, HostTensor), tilekit::Error> {
        let (bh, seq_q, _, d) = self.shape;
        let mut o = poisoned(o_dtype, &[bh, seq_q, d]);
        let mut lse = poisoned(F32, &[bh, seq_q]);
        let (g, s) = (grid(bh, seq_q, 64), ScalarArg::from(self.scale));
        let (q, k, v) = (&self.q, &self.k, &self.v);
        let r = match (o_dtype, self.causal) {
            (F32, false) => attention_fwd::<f32, 64, 16, 64, 4, false>::launch(
                device, g, q, k, v, &mut o, &mut lse, s,
            ),
            (F32, true) => {
                // The library registers no f32-output causal forward; O is the same up to its
                // rounding, so the bf16 one is rounded back up to f32 storage here.
                let mut ob = poisoned(BF16, &[bh, seq_q, d]);
                let r = attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(
                    device, g, q, k, v, &mut ob, &mut lse, s,
                );
                o = HostTensor::new(F32, &[bh, seq_q, d], &ob.to_vec()).unwrap();
                r
            }
            (_, false) => attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(
                device, g, q, k, v, &mut o, &mut lse, s,
            ),
            (_, true) => attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(
                device, g, q, k, v, &mut o, &mut lse, s,
            ),
        };
        r.map(|()| (o, lse))
    }

    /// dQ, dK, dV of dtype `g` from the backward kernels.
    fn backward(
        &self,
        device: &Device,
        o_dtype: ScalarType,
        g: ScalarType,
    ) -> Result<[HostTensor; 3], tilekit::Error> {
        let saved = self.forward(device, o_dtype)?;
        self.backward_with(device, &saved, g)
    }

    /// dQ, dK, dV of dtype `g` from the backward kernels given the forward's O and LSE.
    fn backward_with(
        &self,
        device: &Device,
        (o, lse): &(HostTensor, HostTensor),
        g: ScalarType,
    ) -> Result<[HostTensor; 3], tilekit::Error> {
        let (bh, seq_q, seq_kv, d) = self.shape;
        let mut dq = poisoned(g, &[bh, seq_q, d]);
        let mut dk = poisoned(g, &[bh, seq_kv, d]);
        let mut dv = poisoned(g, &[bh, seq_kv, d]);
        backward(
            device,
            (&self.q, &self.k, &self.v),
            (o, lse, &self.d_o),
            &self.options(),
            &mut dq,
            &mut dk,
            &mut dv,
        )?;
        Ok([dq, dk, dv])
    }

    fn options(&self) -> ForwardOptions {
        ForwardOptions {
            causal: self.causal,
            ..ForwardOptions::new(self.scale)
        }
    }

    /// The f64 gradients and their per-element bounds for gradients of dtype `g`.
    fn reference(&self, g: ScalarType) -> ([Vec<f64>; 3], [Vec<f64>; 3]) {
        let (bh, seq_q, seq_kv, d) = self.shape;
        reference_grads_bounded(
            (
                &self.q.to_vec(),
                &self.k.to_vec(),
                &self.v.to_vec(),
                &self.d_o.to_vec(),
            ),
            (bh, bh, seq_q, seq_kv, d),
            &self.options(),
            None,
            Rounding::new(BF16, g),
        )
    }
}

/// Asserts every element of dQ, dK, dV within its bound ([`within_bounds`]) and prints each
/// gradient's largest error in units of its bound.
fn assert_within_bounds(
    name: &str,
    [dq, dk, dv]: &[HostTensor; 3],
    want: &([Vec<f64>; 3], [Vec<f64>; 3]),
    seed: u64,
) {
    match within_bounds(name, [dq, dk, dv], want) {
        Ok(r) => println!(
            "{name}: dQ, dK, dV errors {:.3}, {:.3}, {:.3} of their bounds",
            r[0], r[1], r[2]
        ),
        Err(e) => panic!("{e}; seed {seed}"),
    }
}

/// Runs every shape, causal and not, and asserts each gradient element within its bound.
fn check(device: &Device, shapes: &[(usize, usize, usize)], o_dtype: ScalarType, g: ScalarType) {
    let mut rng = TestRng::fresh();
    for &shape in shapes {
        for causal in [false, true] {
            let case = Case::random(&mut rng, shape, causal);
            let got = case
                .backward(device, o_dtype, g)
                .unwrap_or_else(|e| panic!("{shape:?} causal {causal}: {e}; seed {}", rng.seed));
            let name = format!(
                "{} {shape:?} causal {causal} O {o_dtype:?} grads {g:?}",
                device.name()
            );
            assert_within_bounds(&name, &got, &case.reference(g), rng.seed);
        }
    }
}

/// (bh, seq_q, seq_kv): one row and one key, one row over 130 keys (its dS sums to zero: the
/// case an error normalized by the largest gradient misjudged), lengths that are not
/// multiples of the 16-, 32- and 64-row tiles, more keys than queries and fewer (causal is
/// aligned bottom-right, so with fewer keys the first rows see none and have zero gradients).
const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (2, 1, 130),
    (2, 17, 17),
    (3, 100, 100),
    (1, 130, 130),
    (2, 17, 100),
    (1, 100, 17),
];

#[test]
fn gradients_match_the_f64_reference_at_awkward_lengths() {
    check(&Device::Cpu, &SHAPES, BF16, F32);
}

/// The bounds are tight enough to fail: the backward that passes with
/// [`GRAD_HEADROOM`](tilekit::kernels::attention_bwd::GRAD_HEADROOM) is refused with a
/// headroom of 1/128, for each gradient (the others keeping their bounds), and the message
/// names it.
#[test]
fn a_too_small_headroom_fails_the_gradient_check() {
    let mut rng = TestRng::fresh();
    let case = Case::random(&mut rng, (2, 130, 130), true);
    let got = case.backward(&Device::Cpu, BF16, F32).unwrap();
    let (want, bounds) = case.reference(F32);
    let [dq, dk, dv] = &got;
    within_bounds("headroom 2", [dq, dk, dv], &(want.clone(), bounds.clone()))
        .unwrap_or_else(|e| panic!("{e}; seed {}", rng.seed));
    let tight = Rounding {
        headroom: 1.0 / 128.0,
        ..Rounding::new(BF16, F32)
    };
    let (_, small) = reference_grads_bounded(
        (
            &case.q.to_vec(),
            &case.k.to_vec(),
            &case.v.to_vec(),
            &case.d_o.to_vec(),
        ),
        (2, 2, 130, 130, D),
        &case.options(),
        None,
        tight,
    );
    for (n, what) in ["dQ", "dK", "dV"].into_iter().enumerate() {
        let mut mixed = bounds.clone();
        mixed[n] = small[n].clone();
        match within_bounds("headroom 1/128", [dq, dk, dv], &(want.clone(), mixed)) {
            Ok(r) => panic!(
                "{what} passed a headroom of 1/128 ({r:?}); seed {}",
                rng.seed
            ),
            Err(e) => assert!(e.contains(&format!("{what}[")), "{e}"),
        }
    }
}

#[test]
fn bf16_gradients_and_f32_forward_outputs_match_the_f64_reference() {
    check(&Device::Cpu, &[(2, 17, 100), (1, 130, 130)], BF16, BF16);
    check(&Device::Cpu, &[(3, 100, 100)], F32, F32);
}

/// The reference's analytic gradients against central differences of `Σ dO ∘ O`, O from the
/// forward reference, for every element of Q, K and V on a tiny case (f64 throughout: the
/// difference quotient's error is O(h²) plus rounding ≈ 1e-16 / h).
#[test]
fn the_reference_gradients_agree_with_finite_differences() {
    let mut rng = TestRng::fresh();
    let (bh, seq_q, seq_kv, d) = (2, 3, 5, 4);
    // Exact in f32: the forward reference's options hold the scale as an f32.
    let scale = 0.75;
    let mut draw = |n: usize| rng.uniform(n, -1.5, 1.5);
    let (q, k, v, d_o) = (
        draw(bh * seq_q * d),
        draw(bh * seq_kv * d),
        draw(bh * seq_kv * d),
        draw(bh * seq_q * d),
    );
    let shape = (bh, seq_q, seq_kv, d);
    for causal in [false, true] {
        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            // Causal aligned bottom-right, as the forward and the backward.
            let opts = ForwardOptions {
                causal,
                ..ForwardOptions::new(scale as f32)
            };
            let (o, _) = reference_with(q, k, v, (bh, bh, seq_q, seq_kv, d), &opts);
            o.iter().zip(&d_o).map(|(a, b)| a * b).sum()
        };
        let (dq, dk, dv) = reference_grads((&q, &k, &v, &d_o), shape, scale, causal);
        let h = 1e-5;
        let numeric = |which: usize, i: usize| -> f64 {
            let mut inputs = [q.clone(), k.clone(), v.clone()];
            inputs[which][i] += h;
            let up = loss(&inputs[0], &inputs[1], &inputs[2]);
            inputs[which][i] -= 2.0 * h;
            let down = loss(&inputs[0], &inputs[1], &inputs[2]);
            (up - down) / (2.0 * h)
        };
        let mut nonzero = 0;
        for (which, analytic) in [&dq, &dk, &dv].into_iter().enumerate() {
            for (i, &a) in analytic.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (a - n).abs() <= 1e-7 * (1.0 + n.abs()),
                    "causal {causal}: input {which} element {i}: analytic {a}, finite \
                     difference {n}"
                );
                nonzero += usize::from(n.abs() > 1e-3);
            }
        }
        // Most gradients are far from zero (causal: the first query's K and V gradients of
        // later keys are exactly zero), so the comparison is not between zeros.
        assert!(nonzero > (dq.len() + dk.len() + dv.len()) / 2, "{nonzero}");
    }
}

/// dQ comes from its own pass over the key tiles, without atomics: two runs give the same bits.
#[test]
fn dq_is_bitwise_deterministic() {
    let mut rng = TestRng::fresh();
    let case = Case::random(&mut rng, (2, 100, 130), true);
    let a = case.backward(&Device::Cpu, BF16, F32).unwrap();
    let b = case.backward(&Device::Cpu, BF16, F32).unwrap();
    for (x, y) in a.iter().zip(&b) {
        let bits = |t: &HostTensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(x), bits(y), "seed {}", rng.seed);
    }
}

/// One shape on the PTX emulator (sm_80) with its sanitizer, O and LSE from the f64 forward
/// (the backward alone is under test). The kernels must be compiled, which needs tilekit's
/// `jit` feature: the workspace test run has it; a run of this crate alone
/// (`cargo test -p tilekit-tests`) does not, and says so instead of checking.
#[test]
fn gradients_match_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    let mut rng = TestRng::fresh();
    let case = Case::random(&mut rng, (2, 40, 70), true);
    let saved = saved_from_reference((&case.q, &case.k, &case.v), &case.options()).unwrap();
    let got = match case.backward_with(&device, &saved, F32) {
        Ok(got) => got,
        Err(e) if e.to_string().contains("built without `jit`") => {
            eprintln!("not checked on emu:sm_80: {e}");
            return;
        }
        Err(e) => panic!("emu:sm_80: {e}; seed {}", rng.seed),
    };
    assert_within_bounds("emu:sm_80", &got, &case.reference(F32), rng.seed);
}

#[test]
fn unsupported_head_dims_and_gradient_dtypes_are_refused_by_name() {
    let t = |dtype, shape: &[usize]| HostTensor::zeros(dtype, shape);
    let q = t(BF16, &[1, 16, 80]);
    let lse = t(F32, &[1, 16]);
    let (mut dq, mut dk, mut dv) = (
        t(F32, &[1, 16, 80]),
        t(F32, &[1, 16, 80]),
        t(F32, &[1, 16, 80]),
    );
    let err = backward(
        &Device::Cpu,
        (&q, &q, &q),
        (&q, &lse, &q),
        &ForwardOptions::new(0.125),
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("head dim 80 is not supported; supported: [64, 128]"),
        "{err}"
    );
    let q = t(BF16, &[1, 16, 64]);
    let (mut dq, mut dk, mut dv) = (
        t(F32, &[1, 16, 64]),
        t(F32, &[1, 16, 64]),
        t(F32, &[1, 16, 64]),
    );
    let mut dq16 = t(ScalarType::F16, &[1, 16, 64]);
    let err = backward(
        &Device::Cpu,
        (&q, &q, &q),
        (&q, &lse, &q),
        &ForwardOptions::new(0.125),
        &mut dq16,
        &mut dk,
        &mut dv,
    )
    .unwrap_err();
    assert!(err.to_string().contains("expected f32 or bf16"), "{err}");
    let err = backward(
        &Device::Cpu,
        (&q, &q, &q),
        (&q, &lse, &q),
        &ForwardOptions::new(f32::NAN),
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap_err();
    assert!(err.to_string().contains("needs a finite scale"), "{err}");
}

#[test]
fn the_key_pass_contract_names_a_mismatched_gradient_shape() {
    use tilekit::kernels::attention_bwd::{attention_bwd_dkdv, rows_grid};
    let t = |dtype, shape: &[usize]| HostTensor::zeros(dtype, shape);
    let (q, k) = (t(BF16, &[2, 16, 64]), t(BF16, &[2, 20, 64]));
    let lse = t(F32, &[2, 16]);
    let mut dk = t(F32, &[2, 20, 64]);
    let mut dv = t(F32, &[2, 16, 64]);
    let err = attention_bwd_dkdv::<f32, 64, 32, 4, false>::launch(
        &Device::Cpu,
        rows_grid(2, 20, 64),
        &q,
        &k,
        &k,
        &q,
        &lse,
        &lse,
        &mut dk,
        &mut dv,
        0.125f32.into(),
    )
    .unwrap_err();
    assert!(matches!(err, tilekit::Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("`dv`"), "{err}");
}

/// One case of the forward's features: `(bh_q, bh_kv)` heads, `(seq_q, seq_kv)`, head dim and
/// the options (scale 1/√D unless the options set one).
type Feature = ((usize, usize), (usize, usize), usize, ForwardOptions);

/// Options with the scale 1/√d and the given fields.
fn opts(d: usize) -> ForwardOptions {
    ForwardOptions::new(1.0 / (d as f32).sqrt())
}

/// Random inputs Q, K, V, dO of a feature case, of dtype `dtype`.
fn feature_inputs(
    rng: &mut TestRng,
    &((bh_q, bh_kv), (seq_q, seq_kv), d, _): &Feature,
    dtype: ScalarType,
) -> [HostTensor; 4] {
    [
        rng.tensor(dtype, &[bh_q, seq_q, d], -2.0, 2.0),
        rng.tensor(dtype, &[bh_kv, seq_kv, d], -2.0, 2.0),
        rng.tensor(dtype, &[bh_kv, seq_kv, d], -1.0, 1.0),
        rng.tensor(dtype, &[bh_q, seq_q, d], -1.0, 1.0),
    ]
}

/// dQ, dK, dV of dtype `g` from [`backward`] on `device`, with O and LSE from the f64 forward
/// with the same options (the backward alone is under test).
fn feature_backward(
    device: &Device,
    [q, k, v, d_o]: &[HostTensor; 4],
    opts: &ForwardOptions,
    g: ScalarType,
) -> Result<[HostTensor; 3], tilekit::Error> {
    let (o, lse) = saved_from_reference((q, k, v), opts).unwrap();
    let mut dq = poisoned(g, q.shape());
    let mut dk = poisoned(g, k.shape());
    let mut dv = poisoned(g, v.shape());
    backward(
        device,
        (q, k, v),
        (&o, &lse, d_o),
        opts,
        &mut dq,
        &mut dk,
        &mut dv,
    )?;
    Ok([dq, dk, dv])
}

/// Runs each feature case on `device` with bf16 inputs and asserts each gradient element
/// within its bound from [`reference_grads_bounded`].
fn check_features(device: &Device, cases: &[Feature], g: ScalarType) {
    check_features_of(device, cases, BF16, g);
}

/// [`check_features`] with inputs (and the saved O) of dtype `operands`.
fn check_features_of(device: &Device, cases: &[Feature], operands: ScalarType, g: ScalarType) {
    let mut rng = TestRng::fresh();
    for case in cases {
        let &((bh_q, bh_kv), (seq_q, seq_kv), d, opts) = case;
        let inputs = feature_inputs(&mut rng, case, operands);
        let name = format!(
            "{} {bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} {operands:?} in, {g:?} out {opts:?}",
            device.name()
        );
        let got = match feature_backward(device, &inputs, &opts, g) {
            Ok(got) => got,
            Err(e) if e.to_string().contains("built without `jit`") => {
                eprintln!("not checked on {}: {e}", device.name());
                return;
            }
            Err(e) => panic!("{name}: {e}; seed {}", rng.seed),
        };
        let [q, k, v, d_o] = inputs.each_ref().map(HostTensor::to_vec);
        let dims = (bh_q, bh_kv, seq_q, seq_kv, d);
        let rounding = Rounding::new(operands, g);
        let want = reference_grads_bounded((&q, &k, &v, &d_o), dims, &opts, None, rounding);
        assert_within_bounds(&name, &got, &want, rng.seed);
    }
}

/// GQA 2:1 and MQA, causal (bottom-right) and not, at lengths 1, 17 and 130 and with
/// seq_q ≠ seq_kv both ways (with fewer keys the first causal rows see none), head dims 64 and
/// 128.
#[test]
fn gqa_and_mqa_gradients_match_the_f64_reference() {
    let causal = |d| ForwardOptions {
        causal: true,
        ..opts(d)
    };
    check_features(
        &Device::Cpu,
        &[
            ((2, 1), (1, 1), 64, causal(64)),
            ((4, 2), (17, 17), 64, opts(64)),
            ((4, 2), (17, 100), 64, causal(64)),
            ((3, 1), (130, 130), 64, causal(64)),
            ((3, 1), (100, 17), 64, opts(64)),
            ((2, 1), (130, 40), 128, causal(128)),
            ((2, 2), (17, 17), 128, opts(128)),
        ],
        F32,
    );
}

/// Windows that empty whole query tiles and rows (bottom-right with fewer keys: the first ~110
/// rows see none; top-left with fewer keys: the rows past key 43 see none), windows crossing
/// tiles on both sides, and soft-capping alone and with a window, with GQA, head dims 64 and
/// 128, f32 and bf16 gradients.
#[test]
fn window_and_softcap_gradients_match_the_f64_reference() {
    let window = |d, left, right| ForwardOptions {
        window_left: Some(left),
        window_right: Some(right),
        ..opts(d)
    };
    let top_left = ForwardOptions {
        causal: true,
        align: Align::TopLeft,
        window_left: Some(3),
        ..opts(64)
    };
    let capped = ForwardOptions {
        causal: true,
        softcap: Some(3.0),
        ..opts(64)
    };
    let capped_window = ForwardOptions {
        softcap: Some(2.0),
        ..window(128, 0, 7)
    };
    check_features(
        &Device::Cpu,
        &[
            ((2, 1), (130, 17), 64, window(64, 4, 2)),
            ((2, 2), (100, 40), 64, top_left),
            ((2, 1), (17, 130), 64, window(64, 20, 40)),
            ((1, 1), (130, 130), 64, capped),
            ((2, 1), (17, 130), 128, capped_window),
            ((1, 1), (1, 1), 128, window(128, 0, 0)),
        ],
        F32,
    );
    check_features(
        &Device::Cpu,
        &[((4, 2), (70, 90), 64, window(64, 10, 10))],
        BF16,
    );
}

/// dK and dV of a K/V head sum its query heads in a fixed order in one block and dQ has its own
/// pass, so two runs give the same bits (GQA with a window and a cap: every path of the key
/// pass).
#[test]
fn gqa_gradients_are_bitwise_deterministic() {
    let case = [(
        (4, 1),
        (70, 100),
        64,
        ForwardOptions {
            window_left: Some(30),
            window_right: Some(10),
            softcap: Some(4.0),
            ..opts(64)
        },
    )];
    let mut rng = TestRng::fresh();
    let inputs = feature_inputs(&mut rng, &case[0], BF16);
    let run = || feature_backward(&Device::Cpu, &inputs, &case[0].3, F32).unwrap();
    let (a, b) = (run(), run());
    let bits = |t: &HostTensor| t.to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(bits(x), bits(y), "seed {}", rng.seed);
    }
    // Not a comparison of zeros or NaN: the run is also right.
    check_features(&Device::Cpu, &case, F32);
}

/// f16 inputs (the backward of the f16 forward): plain and bottom-right causal, GQA and MQA,
/// one-row heads, rows that see no key (causal with fewer keys), lengths 1, 17 and 130, head
/// dims 64 and 128, f32 and f16 gradients; each element within its bound for f16 operands.
#[test]
fn f16_gradients_match_the_f64_reference() {
    let causal = |d| ForwardOptions {
        causal: true,
        ..opts(d)
    };
    let cases = [
        ((2, 1), (1, 130), 64, opts(64)),
        ((4, 2), (17, 100), 64, causal(64)),
        ((3, 1), (130, 17), 64, causal(64)),
        ((2, 2), (130, 130), 128, causal(128)),
        ((2, 1), (17, 40), 128, opts(128)),
    ];
    check_features_of(&Device::Cpu, &cases, F16, F32);
    check_features_of(&Device::Cpu, &cases[1..3], F16, F16);
}

/// The f16 backward on the PTX emulator (sm_80) with its sanitizer, f32 and f16 gradients at
/// head dims 64 and 128.
#[test]
fn f16_gradients_match_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    let causal = |d| ForwardOptions {
        causal: true,
        ..opts(d)
    };
    check_features_of(
        &device,
        &[
            ((4, 2), (20, 40), 64, causal(64)),
            ((2, 1), (17, 33), 128, opts(128)),
        ],
        F16,
        F32,
    );
    check_features_of(&device, &[((2, 2), (40, 20), 64, causal(64))], F16, F16);
}

/// What the f16 backward has no kernel for is refused by name: options beyond plain and
/// bottom-right causal, mixed input dtypes, bf16 gradients.
#[test]
fn f16_backward_refuses_what_it_has_no_kernel_for() {
    let t = |dtype, shape: &[usize]| HostTensor::zeros(dtype, shape);
    let (q, lse) = (t(F16, &[2, 16, 64]), t(F32, &[2, 16]));
    let run = |k: &HostTensor, opts: &ForwardOptions, g: ScalarType| {
        let (mut dq, mut dk, mut dv) = (t(g, &[2, 16, 64]), t(g, &[2, 16, 64]), t(g, &[2, 16, 64]));
        backward(
            &Device::Cpu,
            (&q, k, k),
            (&q, &lse, &q),
            opts,
            &mut dq,
            &mut dk,
            &mut dv,
        )
        .unwrap_err()
        .to_string()
    };
    let window = ForwardOptions {
        window_left: Some(4),
        ..opts(64)
    };
    let e = run(&q, &window, F32);
    assert!(e.contains("f16 inputs") && e.contains("use bf16"), "{e}");
    let e = run(&t(BF16, &[2, 16, 64]), &opts(64), F32);
    assert!(e.contains("`k` bf16"), "{e}");
    let e = run(&q, &opts(64), BF16);
    assert!(e.contains("expected f32 or f16"), "{e}");
}

/// One small case per feature on the PTX emulator (sm_80) with its sanitizer: GQA with causal,
/// a window with a cap, head dim 128 with MQA and causal.
#[test]
fn feature_gradients_match_on_the_sm_80_emulator() {
    let device = Device::emulator("sm_80").unwrap();
    check_features(
        &device,
        &[
            (
                (4, 2),
                (20, 40),
                64,
                ForwardOptions {
                    causal: true,
                    ..opts(64)
                },
            ),
            (
                (1, 1),
                (40, 20),
                64,
                ForwardOptions {
                    window_left: Some(5),
                    window_right: Some(3),
                    softcap: Some(3.0),
                    ..opts(64)
                },
            ),
            (
                (2, 1),
                (17, 33),
                128,
                ForwardOptions {
                    causal: true,
                    ..opts(128)
                },
            ),
        ],
        F32,
    );
}

/// [`reference_grads_with`] against central differences of `Σ dO ∘ O` through
/// [`reference_with`] for the features: GQA 2:1 with top-left causal, a window with a soft
/// cap, MQA with a bottom-right window (f64 throughout; the masks are discrete, so only the
/// scores inside them move).
#[test]
fn the_feature_reference_gradients_agree_with_finite_differences() {
    let mut rng = TestRng::fresh();
    let (seq_q, seq_kv, d) = (4, 6, 4);
    let base = ForwardOptions::new(0.75);
    let cases = [
        (
            (4, 2),
            ForwardOptions {
                causal: true,
                align: Align::TopLeft,
                ..base
            },
        ),
        (
            (2, 2),
            ForwardOptions {
                window_left: Some(1),
                window_right: Some(1),
                softcap: Some(1.5),
                ..base
            },
        ),
        (
            (3, 1),
            ForwardOptions {
                window_left: Some(2),
                window_right: Some(0),
                ..base
            },
        ),
    ];
    for ((bh_q, bh_kv), opts) in cases {
        let mut draw = |n: usize| rng.uniform(n, -1.5, 1.5);
        let (q, k, v, d_o) = (
            draw(bh_q * seq_q * d),
            draw(bh_kv * seq_kv * d),
            draw(bh_kv * seq_kv * d),
            draw(bh_q * seq_q * d),
        );
        let dims = (bh_q, bh_kv, seq_q, seq_kv, d);
        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            let (o, _) = reference_with(q, k, v, dims, &opts);
            o.iter().zip(&d_o).map(|(a, b)| a * b).sum()
        };
        let (dq, dk, dv) = reference_grads_with((&q, &k, &v, &d_o), dims, &opts);
        let h = 1e-5;
        let numeric = |which: usize, i: usize| -> f64 {
            let mut inputs = [q.clone(), k.clone(), v.clone()];
            inputs[which][i] += h;
            let up = loss(&inputs[0], &inputs[1], &inputs[2]);
            inputs[which][i] -= 2.0 * h;
            let down = loss(&inputs[0], &inputs[1], &inputs[2]);
            (up - down) / (2.0 * h)
        };
        let mut nonzero = 0;
        for (which, analytic) in [&dq, &dk, &dv].into_iter().enumerate() {
            for (i, &a) in analytic.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (a - n).abs() <= 1e-7 * (1.0 + n.abs()),
                    "{opts:?}: input {which} element {i}: analytic {a}, finite difference {n}; \
                     seed {}",
                    rng.seed
                );
                nonzero += usize::from(n.abs() > 1e-3);
            }
        }
        // Windows leave keys unseen by some rows, but most gradients are far from zero.
        assert!(
            nonzero > (dq.len() + dk.len() + dv.len()) / 3,
            "{opts:?}: {nonzero}"
        );
    }
}

#[test]
fn kv_heads_that_do_not_divide_the_query_heads_are_refused() {
    let t = |dtype, shape: &[usize]| HostTensor::zeros(dtype, shape);
    let (q, k) = (t(BF16, &[3, 16, 64]), t(BF16, &[2, 16, 64]));
    let lse = t(F32, &[3, 16]);
    let (mut dq, mut dk, mut dv) = (
        t(F32, &[3, 16, 64]),
        t(F32, &[2, 16, 64]),
        t(F32, &[2, 16, 64]),
    );
    let err = backward(
        &Device::Cpu,
        (&q, &k, &k),
        (&q, &lse, &q),
        &ForwardOptions::new(0.125),
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("must divide the query heads"),
        "{err}"
    );
}
