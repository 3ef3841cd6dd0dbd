//! Multi-tensor AdamW and the multi-tensor gradient-norm clip against per-tensor `adamw_mixed`
//! and f64 references, on the interpreter and the PTX emulator.

use tilekit::codegen::{compile, Target};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::optim::Hyper;
use tilekit::kernels::optim_family::{adamw_mixed, CHUNK, WARPS};
use tilekit::kernels::optim_multi::{
    adamw_mixed_multi, adamw_mixed_multi_step, clip_grad_norm_multi, scale_by_coef_multi,
    sum_squares_multi,
};
use tilekit::{Device, ScalarArg, TensorArg, TensorList};

const DEVICES: [&str; 3] = ["cpu", "emu:sm_80", "emu:sm_90a"];
const SIZES: [usize; 6] = [1, 17, 0, 1000, 4099, 1024];

fn list(ts: &[HostTensor]) -> TensorList {
    let refs: Vec<&dyn TensorArg> = ts.iter().map(|t| t as &dyn TensorArg).collect();
    TensorList::new(&refs).expect("one dtype and rank")
}

/// Two consecutive steps over a list equal per-tensor `adamw_mixed` steps bit for bit (the
/// same update per element), and the f64 step within f32 rounding.
#[test]
fn multi_tensor_adamw_equals_per_tensor_adamw_mixed() {
    for name in DEVICES {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let p0: Vec<HostTensor> = SIZES
            .iter()
            .map(|&n| rng.tensor(F32, &[n], -1.0, 1.0))
            .collect();
        let m0: Vec<HostTensor> = SIZES
            .iter()
            .map(|&n| rng.tensor(F32, &[n], -0.1, 0.1))
            .collect();
        let v0: Vec<HostTensor> = SIZES
            .iter()
            .map(|&n| rng.tensor(F32, &[n], 0.0, 0.01))
            .collect();
        let w0: Vec<HostTensor> = SIZES
            .iter()
            .map(|&n| HostTensor::zeros(BF16, &[n]))
            .collect();
        let (mut p, mut m, mut v, mut w) = (list(&p0), list(&m0), list(&v0), list(&w0));
        let (mut pe, mut me, mut ve, mut we) = (p0.clone(), m0.clone(), v0.clone(), w0.clone());
        for step in 1..=2u32 {
            let h = Hyper {
                lr: rng.uniform(1e-4, 1e-2) as f32,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                step,
            };
            let g: Vec<HostTensor> = SIZES
                .iter()
                .map(|&n| rng.tensor(BF16, &[n], -1.0, 1.0))
                .collect();
            adamw_mixed_multi_step(&device, &mut p, &list(&g), &mut m, &mut v, &mut w, &h)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let (bc1, bc2) = h.bias_corrections();
            let s = |x: f32| ScalarArg::from(x);
            for (e, &n) in SIZES.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                adamw_mixed::<CHUNK, WARPS>::launch_auto(
                    &device,
                    &mut pe[e],
                    &g[e],
                    &mut me[e],
                    &mut ve[e],
                    &mut we[e],
                    s(h.lr),
                    s(h.beta1),
                    s(h.beta2),
                    s(h.eps),
                    s(h.weight_decay),
                    s(bc1),
                    s(bc2),
                )
                .unwrap();
            }
        }
        for (e, &n) in SIZES.iter().enumerate() {
            for (what, multi, single) in [
                ("p", &p, &pe),
                ("m", &m, &me),
                ("v", &v, &ve),
                ("model", &w, &we),
            ] {
                let got = multi.host(e).unwrap().to_vec();
                let want = single[e].to_vec();
                assert_eq!(got.len(), n);
                let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{name}: {what} entry {e} (seed {})",
                    rng.seed
                );
            }
        }
    }
}

/// `[‖g‖, coef]` against f64 over a list of awkward sizes, and every gradient scaled by the
/// coefficient, for a norm above the limit (clipped) and below it (unchanged).
#[test]
fn multi_tensor_clip_matches_the_f64_global_norm() {
    for name in DEVICES {
        let device = Device::from_name(name).unwrap();
        let mut rng = Rng::fresh();
        let g0: Vec<HostTensor> = SIZES
            .iter()
            .map(|&n| rng.tensor(F32, &[n], -1.0, 1.0))
            .collect();
        let sum_sq: f64 = g0.iter().flat_map(|t| t.to_vec()).map(|x| x * x).sum();
        let norm = sum_sq.sqrt();
        for max_norm in [norm as f32 * 0.25, norm as f32 * 4.0] {
            let mut g = list(&g0);
            let mut stats = HostTensor::full(F32, &[2], f64::NAN);
            clip_grad_norm_multi(&device, &mut g, max_norm, &mut stats)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let coef = (f64::from(max_norm) / (norm + 1e-6)).min(1.0);
            // f32 sums of ~6200 squares ≤ 1: relative error below 6200·2⁻²⁴ of the sum,
            // halved by the square root.
            let tol = 6200.0 * f64::from(f32::EPSILON);
            let got = stats.to_vec();
            assert!(
                (got[0] - norm).abs() <= tol * norm,
                "{name}: norm {} vs {norm} (seed {})",
                got[0],
                rng.seed
            );
            assert!(
                (got[1] - coef).abs() <= 2.0 * tol * coef,
                "{name}: coef {} vs {coef} (seed {})",
                got[1],
                rng.seed
            );
            for (e, t) in g0.iter().enumerate() {
                let after = g.host(e).unwrap().to_vec();
                for (a, b) in after.iter().zip(t.to_vec()) {
                    // Exactly b times the coefficient the kernel wrote, rounded to f32.
                    assert_eq!(*a, f64::from((b * got[1]) as f32), "{name}: entry {e}");
                }
            }
        }
    }
}

#[test]
fn an_empty_list_is_a_no_op_and_mismatched_lists_are_refused() {
    let device = Device::Cpu;
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        step: 1,
    };
    let empty = |d| TensorList::empty(d, 1).unwrap();
    adamw_mixed_multi_step(
        &device,
        &mut empty(F32),
        &empty(BF16),
        &mut empty(F32),
        &mut empty(F32),
        &mut empty(BF16),
        &h,
    )
    .expect("nothing to do");
    let mut stats = HostTensor::zeros(F32, &[2]);
    clip_grad_norm_multi(&device, &mut empty(F32), 1.0, &mut stats).unwrap();
    assert_eq!(stats.to_vec(), [0.0, 1.0]);
    let a = HostTensor::zeros(F32, &[5]);
    let b = HostTensor::zeros(BF16, &[6]);
    let one = std::slice::from_ref(&a);
    let (mut p, mut m, mut v) = (list(one), list(one), list(one));
    let mut w = list(&[HostTensor::zeros(BF16, &[5])]);
    let err = adamw_mixed_multi_step(&device, &mut p, &list(&[b]), &mut m, &mut v, &mut w, &h)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`g` entry 0 has 6 elements, `p` entry 0 has 5"),
        "{err}"
    );
}

#[test]
fn the_multi_tensor_kernels_compile_for_gfx942() {
    let kernels = [
        (adamw_mixed_multi::<256, 4>::module(), "adamw_mixed_multi"),
        (sum_squares_multi::<1024>::module(), "sum_squares_multi"),
        (
            scale_by_coef_multi::<256, 4>::module(),
            "scale_by_coef_multi",
        ),
    ];
    for (m, k) in kernels {
        compile(m, k, Target::Gfx942).unwrap_or_else(|e| panic!("{k}: {e}"));
    }
}
