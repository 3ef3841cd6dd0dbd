//! The attention backward kernels (`tilekit::kernels::attention_bwd`) against gradients in f64
//! from the definition: the library forward kernel gives O and LSE as a training step would, the
//! backward gives dQ, dK, dV, and `reference_grads` gives the analytic gradients of
//! `loss = Σ dO ∘ O`. The reference itself is checked once against central finite differences
//! of that loss through the forward reference.

use tilekit::dsl::bf16;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F32};
use tilekit::kernels::attention::{attention_fwd, grid, reference_with, ForwardOptions};
use tilekit::kernels::attention_bwd::{
    backward, reference_grads, saved_from_reference, GRAD_TOLERANCE,
};
use tilekit::kernels::check::poisoned;
use tilekit::{Device, ScalarArg};
use tilekit_tests::compare::{max_abs_error, normalized_max_error};
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
            self.scale,
            self.causal,
            &mut dq,
            &mut dk,
            &mut dv,
        )?;
        Ok([dq, dk, dv])
    }

    fn reference(&self) -> [Vec<f64>; 3] {
        let (dq, dk, dv) = reference_grads(
            (
                &self.q.to_vec(),
                &self.k.to_vec(),
                &self.v.to_vec(),
                &self.d_o.to_vec(),
            ),
            self.shape,
            f64::from(self.scale),
            self.causal,
        );
        [dq, dk, dv]
    }
}

/// The normalized max error, except where the reference is exactly zero: with a single key the
/// softmax is constant, so dQ = dK = 0 and only f32 rounding of `dP − Δ` (terms of size ≈ 1)
/// remains; there the absolute error counts, against the same tolerance.
fn gradient_error(got: &[f64], want: &[f64]) -> f64 {
    if want.iter().all(|w| *w == 0.0) {
        max_abs_error(got, want)
    } else {
        normalized_max_error(got, want)
    }
}

/// Runs every shape, causal and not, and asserts each gradient within [`GRAD_TOLERANCE`].
fn check(device: &Device, shapes: &[(usize, usize, usize)], o_dtype: ScalarType, g: ScalarType) {
    let mut rng = TestRng::fresh();
    for &shape in shapes {
        for causal in [false, true] {
            let case = Case::random(&mut rng, shape, causal);
            let got = case
                .backward(device, o_dtype, g)
                .unwrap_or_else(|e| panic!("{shape:?} causal {causal}: {e}; seed {}", rng.seed));
            let want = case.reference();
            for (name, (got, want)) in ["dQ", "dK", "dV"].iter().zip(got.iter().zip(&want)) {
                let err = gradient_error(&got.to_vec(), want);
                println!(
                    "{} {shape:?} causal {causal} O {o_dtype:?} grads {g:?}: {name} error {err:.2e}",
                    device.name()
                );
                assert!(
                    err <= GRAD_TOLERANCE,
                    "{shape:?} causal {causal} O {o_dtype:?} grads {g:?}: {name} error {err:.3e}; \
                     seed {}",
                    rng.seed
                );
            }
        }
    }
}

/// (bh, seq_q, seq_kv): one row, lengths that are not multiples of the 16-, 32- and 64-row
/// tiles, more keys than queries and fewer (causal is aligned bottom-right, so with fewer keys
/// the first rows see none and have zero gradients).
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
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
    let saved = saved_from_reference((&case.q, &case.k, &case.v), case.scale, case.causal).unwrap();
    let got = match case.backward_with(&device, &saved, F32) {
        Ok(got) => got,
        Err(e) if e.to_string().contains("built without `jit`") => {
            eprintln!("not checked on emu:sm_80: {e}");
            return;
        }
        Err(e) => panic!("emu:sm_80: {e}; seed {}", rng.seed),
    };
    let want = case.reference();
    for (name, (got, want)) in ["dQ", "dK", "dV"].iter().zip(got.iter().zip(&want)) {
        let err = gradient_error(&got.to_vec(), want);
        assert!(
            err <= GRAD_TOLERANCE,
            "emu:sm_80 {name} error {err:.3e}; seed {}",
            rng.seed
        );
    }
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
        0.125,
        false,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("head dim 80 is not supported; supported: [64]"),
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
        0.125,
        false,
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
        f32::NAN,
        false,
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
