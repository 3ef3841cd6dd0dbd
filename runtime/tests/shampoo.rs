//! Shampoo (`kernels::shampoo`) on the interpreter and the sm_80 PTX emulator, against f64
//! references written here from the definition (Distributed Shampoo's step, see the module
//! documentation):
//!
//! - The statistics kernel and the f32 product against f64, element by element, within the
//!   bound of f32 arithmetic (`(6k + 8)·2⁻²⁴·Σ|a·b|`: 2⁻⁸ of bf16 would fail it by far).
//! - Inverse 4th roots against an eigendecomposition (cyclic Jacobi, f64) of the damped
//!   statistic, within `C·d·2⁻²⁴·κ(A)/p`: a backward error of a few f32 products (`d·2⁻²⁴`
//!   relative) moves `A^{-1/p}` by at most `κ/p` times that (the divided differences of
//!   `x^{-1/p}` are at most `|f′(λ_min)|`), and the Newton stop adds `tolerance/p`.
//! - Ten steps on mixed shapes (2-D weights cut into blocks, odd sizes, a 1-D bias) against
//!   the f64 step with exact (eigendecomposition) roots recomputed on the same steps, through
//!   `kernels::shampoo::Shampoo` and through the list API `kernels::optim::Shampoo`.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::optim::{self, OptimError};
use tilekit::kernels::shampoo::{
    bound_ratio, gram_reference, inverse_root, matmul_reference, shampoo_gram, shampoo_matmul,
    RootScratch, Shampoo, ShampooConfig, ShampooError, ROOT, TILE, TILE_K, U_F32, WARP_TILE,
};
use tilekit::{Device, ScalarArg, Tensor};

fn emu() -> Device {
    Device::emulator("sm_80").expect("the sm_80 emulator")
}

/// Eigenvalues and eigenvectors (columns of `v`, row-major `d × d`) of the symmetric `a` by
/// cyclic Jacobi rotations, in f64.
fn jacobi_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d * d)
            .filter(|x| x / d != x % d)
            .map(|x| a[x] * a[x])
            .sum();
        let diag: f64 = (0..d).map(|i| a[i * d + i] * a[i * d + i]).sum();
        if off <= 1e-30 * diag {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// `A^{-1/p}` of the symmetric positive definite `a` and its condition number.
fn inverse_root_f64(a: &[f64], d: usize, p: f64) -> (Vec<f64>, f64) {
    let (w, v) = jacobi_eigen(a, d);
    let f: Vec<f64> = w.iter().map(|l| l.powf(-1.0 / p)).collect();
    let mut x = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            x[i * d + j] = (0..d).map(|k| v[i * d + k] * f[k] * v[j * d + k]).sum();
        }
    }
    let (lo, hi) = w.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &l| {
        (lo.min(l), hi.max(l))
    });
    (x, hi / lo)
}

fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    matmul_reference(a, b, (m, k, n), 1.0).0
}

fn transpose(a: &[f64], r: usize, c: usize) -> Vec<f64> {
    (0..r * c).map(|x| a[(x % r) * c + x / r]).collect()
}

fn gram_on(device: &Device, rng: &mut Rng, r: usize, c: usize) {
    let g = rng.tensor(F32, &[r, c], -1.0, 1.0);
    for trans in [false, true] {
        let d = if trans { c } else { r };
        // A symmetric start, as the kernel requires.
        let s0 = matmul(
            &{ rng.tensor(F32, &[d, 3], -1.0, 1.0).to_vec() },
            &vec![0.5; 3 * d],
            d,
            3,
            d,
        );
        let s0: Vec<f64> = (0..d * d)
            .map(|x| s0[x] + s0[(x % d) * d + x / d])
            .collect();
        let s0: Vec<f64> = s0.iter().map(|&x| f64::from(x as f32)).collect();
        let mut st = HostTensor::new(F32, &[d, d], &s0).unwrap();
        let (sa, sb) = (ScalarArg::from(0.125f32), ScalarArg::from(0.875f32));
        if trans {
            shampoo_gram::<TILE, TILE_K, WARP_TILE, true>::launch_auto(device, &g, &mut st, sa, sb)
        } else {
            shampoo_gram::<TILE, TILE_K, WARP_TILE, false>::launch_auto(device, &g, &mut st, sa, sb)
        }
        .unwrap_or_else(|e| panic!("{} gram {r}×{c} trans {trans}: {e}", device.name()));
        let got = st.to_vec();
        let (want, bound) = gram_reference(&g.to_vec(), &s0, (r, c), trans, 0.125, 0.875);
        let ratio = bound_ratio(&got, &want, &bound);
        assert!(
            ratio <= 1.0,
            "{} gram {r}×{c} trans {trans}: {ratio:.2} of the f32 bound (seed {})",
            device.name(),
            rng.seed
        );
        for i in 0..d {
            for j in 0..i {
                assert_eq!(got[i * d + j], got[j * d + i], "mirror at ({i}, {j})");
            }
        }
    }
}

#[test]
fn statistics_match_f64_within_the_f32_bound() {
    let mut rng = Rng::fresh();
    for (r, c) in [(70, 130), (200, 33), (16, 1)] {
        gram_on(&Device::Cpu, &mut rng, r, c);
    }
    gram_on(&emu(), &mut rng, 40, 70);
}

#[test]
fn f32_products_match_f64_within_the_f32_bound() {
    let mut rng = Rng::fresh();
    for (device, shapes) in [
        (Device::Cpu, vec![(70, 130, 33), (64, 64, 64), (1, 17, 5)]),
        (emu(), vec![(40, 70, 20)]),
    ] {
        for (m, k, n) in shapes {
            let a = rng.tensor(F32, &[m, k], -1.0, 1.0);
            let b = rng.tensor(F32, &[k, n], -1.0, 1.0);
            let mut c = HostTensor::full(F32, &[m, n], f64::NAN);
            shampoo_matmul::<TILE, TILE, TILE_K, WARP_TILE, WARP_TILE>::launch_auto(
                &device,
                &a,
                &b,
                &mut c,
                ScalarArg::from(-2.0f32),
            )
            .unwrap();
            let (want, bound) = matmul_reference(&a.to_vec(), &b.to_vec(), (m, k, n), -2.0);
            let ratio = bound_ratio(&c.to_vec(), &want, &bound);
            assert!(
                ratio <= 1.0,
                "{} {m}×{k}×{n}: {ratio:.2} of the f32 bound (seed {})",
                device.name(),
                rng.seed
            );
        }
    }
}

/// A random statistic `G·Gᵀ/k` (`d × d`, f32 values) with `k ≥ d`.
fn statistic(rng: &mut Rng, d: usize, k: usize) -> Vec<f64> {
    let g = rng.tensor(F32, &[d, k], -1.0, 1.0).to_vec();
    let s = matmul(&g, &transpose(&g, d, k), d, k, d);
    s.iter().map(|x| f64::from((x / k as f64) as f32)).collect()
}

fn root_on(device: &Device, rng: &mut Rng, d: usize, k: usize, eps: f64) {
    let cfg = ShampooConfig::default();
    let s = statistic(rng, d, k);
    let st = Tensor::from_host(&HostTensor::new(F32, &[d, d], &s).unwrap(), device).unwrap();
    let mut scratch = RootScratch::new(device, d).unwrap();
    let report = inverse_root(device, &st, &mut scratch, 1.0, eps, &cfg).unwrap();
    let got = scratch.root().to_f64_vec().unwrap();
    let a: Vec<f64> = (0..d * d)
        .map(|x| {
            s[x] + if x / d == x % d {
                f64::from(eps as f32)
            } else {
                0.0
            }
        })
        .collect();
    let p = f64::from(ROOT);
    let (want, kappa) = inverse_root_f64(&a, d, p);
    let err = tilekit::kernels::check::normalized_max_error(&got, &want);
    let tol = 8.0 * d as f64 * U_F32 * kappa / p + f64::from(cfg.tolerance) / p;
    assert!(
        report.accepted && report.converged && err <= tol,
        "{} root d {d} κ {kappa:.1}: error {err:.2e} > {tol:.2e} or {report:?} (seed {})",
        device.name(),
        rng.seed
    );
}

#[test]
fn inverse_roots_match_an_eigendecomposition() {
    let mut rng = Rng::fresh();
    for (d, k, eps) in [(64, 96, 1e-3), (70, 200, 1e-2), (33, 40, 1e-4)] {
        root_on(&Device::Cpu, &mut rng, d, k, eps);
    }
    root_on(&emu(), &mut rng, 20, 30, 1e-3);
}

/// One block's f64 state.
struct RefBlock {
    rows: (usize, usize),
    cols: (usize, usize),
    stats: [Vec<f64>; 2],
    roots: Option<[Vec<f64>; 2]>,
    m: Vec<f64>,
    v: Vec<f64>,
    mom: Vec<f64>,
    /// `Σ_j μ^{t−j}·δ·max|S_j|`: the momentum buffer's size bound.
    mom_size: f64,
    /// `Σ_t lr·(k_s·max|S_t| + k_b·mom_size)`: the accumulated update's size bound.
    update_size: f64,
}

/// The f64 step of the module documentation, with exact (eigendecomposition) roots, over
/// every parameter; also the largest `κ` and dimension of the roots it took.
struct Reference {
    cfg: ShampooConfig,
    shapes: Vec<Vec<usize>>,
    blocks: Vec<Vec<RefBlock>>,
    step: i32,
    kappa: f64,
    dim: usize,
}

fn cuts(n: usize, b: usize) -> Vec<(usize, usize)> {
    (0..n.div_ceil(b))
        .map(|i| (i * b, b.min(n - i * b)))
        .collect()
}

impl Reference {
    fn new(shapes: &[Vec<usize>], cfg: ShampooConfig) -> Reference {
        let blocks = shapes
            .iter()
            .map(|s| {
                let (r, c) = if s.len() == 1 {
                    (s[0], 1)
                } else {
                    (s[0], s[1])
                };
                let b = if s.len() == 1 {
                    usize::MAX
                } else {
                    cfg.max_preconditioner_dim
                };
                let mut out = Vec::new();
                for rows in cuts(r, b) {
                    for cols in cuts(c, b) {
                        let n = rows.1 * cols.1;
                        out.push(RefBlock {
                            rows,
                            cols,
                            stats: [vec![0.0; rows.1 * rows.1], vec![0.0; cols.1 * cols.1]],
                            roots: None,
                            m: vec![0.0; n],
                            v: vec![0.0; n],
                            mom: vec![0.0; n],
                            mom_size: 0.0,
                            update_size: 0.0,
                        });
                    }
                }
                out
            })
            .collect();
        Reference {
            cfg,
            shapes: shapes.to_vec(),
            blocks,
            step: 0,
            kappa: 1.0,
            dim: 1,
        }
    }

    fn step(&mut self, params: &mut [Vec<f64>], grads: &[Vec<f64>]) {
        self.step += 1;
        let (cfg, t) = (self.cfg, self.step);
        let f = f64::from;
        let (b1, b2, bg) = (f(cfg.betas.0), f(cfg.betas.1), f(cfg.grafting_beta2));
        let bc1 = if b1 > 0.0 { 1.0 - b1.powi(t) } else { 1.0 };
        let bc2 = if b2 < 1.0 { 1.0 - b2.powi(t) } else { 1.0 };
        let bcg = 1.0 - bg.powi(t);
        let (sb, sa) = if b2 < 1.0 { (b2, 1.0 - b2) } else { (1.0, 1.0) };
        let start = cfg
            .start_preconditioning_step
            .unwrap_or(cfg.precondition_frequency);
        let precondition = t as usize >= start;
        let due = t as usize % cfg.precondition_frequency == 0;
        let (mu, damp) = (f(cfg.momentum), 1.0 - f(cfg.dampening));
        let (k_s, k_b) = match (cfg.momentum > 0.0, cfg.use_nesterov) {
            (false, _) => (1.0, 0.0),
            (true, true) => (1.0, mu),
            (true, false) => (0.0, 1.0),
        };
        let (mu, damp) = if cfg.momentum > 0.0 {
            (mu, damp)
        } else {
            (0.0, 1.0)
        };
        let decay = 1.0 - f(cfg.lr) * f(cfg.weight_decay);
        for (i, shape) in self.shapes.iter().enumerate() {
            let width = if shape.len() == 1 { 1 } else { shape[1] };
            for blk in &mut self.blocks[i] {
                let (r, c) = (blk.rows.1, blk.cols.1);
                let g: Vec<f64> = (0..r * c)
                    .map(|x| grads[i][(blk.rows.0 + x / c) * width + blk.cols.0 + x % c])
                    .collect();
                let mut graft = vec![0.0; r * c];
                for x in 0..r * c {
                    blk.m[x] = b1 * blk.m[x] + (1.0 - b1) * g[x];
                    blk.v[x] = bg * blk.v[x] + (1.0 - bg) * g[x] * g[x];
                    graft[x] =
                        (blk.m[x] / bc1) / ((blk.v[x] / bcg).sqrt() + f(cfg.grafting_epsilon));
                }
                let mut dir = graft.clone();
                if shape.len() == 2 {
                    let ggt = matmul(&g, &transpose(&g, r, c), r, c, r);
                    let gtg = matmul(&transpose(&g, r, c), &g, c, r, c);
                    let [l, rs] = &mut blk.stats;
                    for (s, new) in [(l, ggt), (rs, gtg)] {
                        for (a, b) in s.iter_mut().zip(new) {
                            *a = sb * *a + sa * b;
                        }
                    }
                    if precondition && (due || blk.roots.is_none()) {
                        let root = |s: &[f64], d: usize, kappa: &mut f64| {
                            let a: Vec<f64> = (0..d * d)
                                .map(|x| {
                                    s[x] / bc2 + if x / d == x % d { f(cfg.epsilon) } else { 0.0 }
                                })
                                .collect();
                            let (x, k) = inverse_root_f64(&a, d, f64::from(ROOT));
                            *kappa = kappa.max(k);
                            x
                        };
                        let mut kappa = self.kappa;
                        blk.roots = Some([
                            root(&blk.stats[0], r, &mut kappa),
                            root(&blk.stats[1], c, &mut kappa),
                        ]);
                        self.kappa = kappa;
                        self.dim = self.dim.max(r).max(c);
                    }
                    if let (true, Some([lr_, rr])) = (precondition, &blk.roots) {
                        let mh: Vec<f64> = blk.m.iter().map(|m| m / bc1).collect();
                        let p = matmul(&matmul(lr_, &mh, r, r, c), rr, r, c, c);
                        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
                        let k = norm(&graft) / (norm(&p) + 1e-16);
                        dir = p.iter().map(|x| x * k).collect();
                    }
                }
                let smax = dir.iter().fold(0.0f64, |w, x| w.max(x.abs()));
                blk.mom_size = mu * blk.mom_size + damp * smax;
                blk.update_size += f(cfg.lr) * (k_s * smax + k_b * blk.mom_size);
                for x in 0..r * c {
                    blk.mom[x] = mu * blk.mom[x] + damp * dir[x];
                    let at = (blk.rows.0 + x / c) * width + blk.cols.0 + x % c;
                    let p = &mut params[i][at];
                    *p = *p * decay - f(cfg.lr) * (k_s * dir[x] + k_b * blk.mom[x]);
                }
            }
        }
    }
}

/// `steps` steps of [`Shampoo`] on `device` and of the f64 reference from the same random
/// parameters and gradients; each parameter's accumulated update against the reference's,
/// within `4·e_r·(update size) + 2·steps·2⁻²⁴·max|p|` over `max |Δ|`, with `e_r` the relative
/// error of one root (the module documentation's bound, with the statistics' f32 sums in the
/// backward error): a step's direction has the errors of two roots and of the norm ratio.
/// With `api`, the optimizer is [`optim::Shampoo`] (the state made at its first step), else
/// [`Shampoo`] made here. With `model_copy`, the gradients are bf16 and the steps
/// `step_with_model_copy`'s (f32 master weights), and after each the bf16 model copy must be
/// the master weights rounded to nearest even, bit for bit.
fn steps_on(
    device: &Device,
    rng: &mut Rng,
    shapes: &[Vec<usize>],
    cfg: ShampooConfig,
    steps: usize,
    (api, model_copy): (bool, bool),
) {
    let p0: Vec<HostTensor> = shapes
        .iter()
        .map(|s| rng.tensor(F32, s, -1.0, 1.0))
        .collect();
    let params: Vec<Tensor> = p0
        .iter()
        .map(|p| Tensor::from_host(p, device).unwrap())
        .collect();
    let mut want: Vec<Vec<f64>> = p0.iter().map(|p| p.to_vec()).collect();
    let mut direct = (!api).then(|| Shampoo::new(device, shapes, cfg).unwrap());
    let mut listed = optim::Shampoo::new(cfg).unwrap();
    let mut reference = Reference::new(shapes, cfg);
    let model: Vec<Tensor> = shapes
        .iter()
        .map(|s| Tensor::zeros(BF16, s, device).unwrap())
        .collect();
    let grad_dtype = if model_copy { BF16 } else { F32 };
    let mut roots = 0;
    for _ in 0..steps {
        let g: Vec<HostTensor> = shapes
            .iter()
            .map(|s| rng.tensor(grad_dtype, s, -1.0, 1.0))
            .collect();
        let gt: Vec<Tensor> = g
            .iter()
            .map(|g| Tensor::from_host(g, device).unwrap())
            .collect();
        let (last_roots, taken) = match (&mut direct, model_copy) {
            (Some(opt), false) => {
                opt.step(device, &params, &gt).unwrap();
                (&opt.last_roots[..], opt.steps())
            }
            (Some(opt), true) => {
                opt.step_with_model_copy(device, &params, &gt, &model)
                    .unwrap();
                (&opt.last_roots[..], opt.steps())
            }
            (None, false) => {
                listed.step(device, &params, &gt).unwrap();
                (listed.last_roots(), listed.steps() as usize)
            }
            (None, true) => {
                listed
                    .step_with_model_copy(device, &params, &gt, &model)
                    .unwrap();
                (listed.last_roots(), listed.steps() as usize)
            }
        };
        for r in last_roots {
            assert!(
                r.accepted && r.converged,
                "{} step {taken}: root {r:?} (seed {})",
                device.name(),
                rng.seed
            );
        }
        roots += last_roots.len();
        if model_copy {
            for (i, (p, w)) in params.iter().zip(&model).enumerate() {
                let (p, w) = (p.to_f64_vec().unwrap(), w.to_f64_vec().unwrap());
                let want = HostTensor::new(BF16, &[p.len()], &p).unwrap().to_vec();
                let same = want.iter().zip(&w).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{} step {taken}, param {i}: model copy is not bf16(master) (seed {})",
                    device.name(),
                    rng.seed
                );
            }
        }
        let gv: Vec<Vec<f64>> = g.iter().map(|g| g.to_vec()).collect();
        reference.step(&mut want, &gv);
    }
    assert!(roots > 0, "no root was computed in {steps} steps");
    let p = f64::from(ROOT);
    let k_max = shapes
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .min(cfg.max_preconditioner_dim);
    let backward = (8 * reference.dim + 6 * k_max + 24) as f64 * U_F32;
    let e_r = backward * reference.kappa / p + f64::from(cfg.tolerance) / p;
    for (i, shape) in shapes.iter().enumerate() {
        let got = params[i].to_f64_vec().unwrap();
        let init = p0[i].to_vec();
        let d_got: Vec<f64> = got.iter().zip(&init).map(|(a, b)| a - b).collect();
        let d_want: Vec<f64> = want[i].iter().zip(&init).map(|(a, b)| a - b).collect();
        let scale = d_want.iter().fold(0.0f64, |w, x| w.max(x.abs()));
        let size = reference.blocks[i]
            .iter()
            .fold(0.0f64, |w, b| w.max(b.update_size));
        let tol = (4.0 * e_r * size + 2.0 * steps as f64 * U_F32) / scale;
        let err = tilekit::kernels::check::normalized_max_error(&d_got, &d_want);
        assert!(
            err <= tol,
            "{} {shape:?} after {steps} steps: update error {err:.2e} > {tol:.2e} \
             (κ ≤ {:.1}, seed {})",
            device.name(),
            reference.kappa,
            rng.seed
        );
    }
}

/// The configuration of the step tests: ε large enough that the damped statistics' condition
/// numbers stay in the hundreds (a block of 64 rows has `L` of rank at most 2·steps·cols).
fn step_config() -> ShampooConfig {
    ShampooConfig {
        lr: 0.01,
        betas: (0.9, 0.999),
        epsilon: 1.0,
        momentum: 0.9,
        use_nesterov: true,
        weight_decay: 0.01,
        max_preconditioner_dim: 64,
        precondition_frequency: 5,
        start_preconditioning_step: Some(2),
        ..ShampooConfig::default()
    }
}

#[test]
fn ten_steps_on_a_wide_layer_and_a_bias_match_f64() {
    let mut rng = Rng::fresh();
    steps_on(
        &Device::Cpu,
        &mut rng,
        &[vec![70, 130], vec![33]],
        step_config(),
        10,
        (false, false),
    );
}

#[test]
fn ten_steps_on_a_tall_layer_with_heavy_ball_match_f64() {
    let mut rng = Rng::fresh();
    let cfg = ShampooConfig {
        use_nesterov: false,
        betas: (0.0, 1.0),
        precondition_frequency: 4,
        start_preconditioning_step: None,
        ..step_config()
    };
    steps_on(
        &Device::Cpu,
        &mut rng,
        &[vec![200, 33], vec![5]],
        cfg,
        10,
        (false, false),
    );
}

#[test]
fn steps_on_the_sm80_emulator_match_f64() {
    let mut rng = Rng::fresh();
    let cfg = ShampooConfig {
        precondition_frequency: 1,
        start_preconditioning_step: None,
        ..step_config()
    };
    steps_on(
        &emu(),
        &mut rng,
        &[vec![20, 36], vec![7]],
        cfg,
        2,
        (false, false),
    );
}

#[test]
fn wrong_shapes_and_options_are_refused() {
    let dev = Device::Cpu;
    let shapes = vec![vec![4, 6], vec![3]];
    for bad in [vec![vec![2, 3, 4]], vec![vec![0, 3]], vec![vec![]]] {
        assert!(matches!(
            Shampoo::new(&dev, &bad, ShampooConfig::default()),
            Err(ShampooError::Argument { .. })
        ));
    }
    for cfg in [
        ShampooConfig {
            betas: (1.0, 0.9),
            ..Default::default()
        },
        ShampooConfig {
            betas: (0.9, 0.0),
            ..Default::default()
        },
        ShampooConfig {
            epsilon: 0.0,
            ..Default::default()
        },
        ShampooConfig {
            precondition_frequency: 0,
            ..Default::default()
        },
        ShampooConfig {
            start_preconditioning_step: Some(0),
            ..Default::default()
        },
        ShampooConfig {
            max_preconditioner_dim: 0,
            ..Default::default()
        },
        ShampooConfig {
            lr: f32::NAN,
            ..Default::default()
        },
    ] {
        assert!(matches!(
            Shampoo::new(&dev, &shapes, cfg),
            Err(ShampooError::Option { .. })
        ));
    }
    let mut opt = Shampoo::new(&dev, &shapes, ShampooConfig::default()).unwrap();
    let z = |s: &[usize]| Tensor::zeros(F32, s, &dev).unwrap();
    let params = vec![z(&[4, 6]), z(&[3])];
    let e = opt.step(&dev, &params, &[z(&[6, 4]), z(&[3])]).unwrap_err();
    assert!(e.to_string().contains("grads[0]"), "{e}");
    let e = opt.step(&dev, &params, &[z(&[4, 6])]).unwrap_err();
    assert!(matches!(e, ShampooError::Argument { .. }), "{e}");
    assert_eq!(opt.steps(), 0, "a refused step is not counted");
}

/// The list API (`kernels::optim::Shampoo`, state made at the first step) over ten steps on
/// mixed shapes: a weight taller than the block size (two row blocks, the last one ragged),
/// an odd small weight, an odd bias and a one-element bias, against the f64 step.
#[test]
fn the_optim_api_ten_steps_on_mixed_shapes_match_f64() {
    let mut rng = Rng::fresh();
    let shapes = [vec![70, 45], vec![33], vec![9, 17], vec![1]];
    steps_on(
        &Device::Cpu,
        &mut rng,
        &shapes,
        step_config(),
        10,
        (true, false),
    );
}

/// The list API on the sm_80 emulator: a weight over the block size in both dimensions cut
/// into four blocks (block size 16) and a bias, three steps with roots on each.
#[test]
fn the_optim_api_steps_on_the_sm80_emulator_match_f64() {
    let mut rng = Rng::fresh();
    let cfg = ShampooConfig {
        max_preconditioner_dim: 16,
        precondition_frequency: 1,
        start_preconditioning_step: None,
        ..step_config()
    };
    steps_on(
        &emu(),
        &mut rng,
        &[vec![20, 18], vec![3]],
        cfg,
        3,
        (true, false),
    );
}

/// The list API's mixed-precision step (f32 master weights, bf16 gradients, bf16 model copy)
/// over ten steps on the mixed shapes of the f32 test, against the f64 step from the same bf16
/// gradients; the copy equal to the master weights rounded to nearest even after every step.
#[test]
fn the_optim_api_with_model_copy_ten_steps_on_mixed_shapes_match_f64() {
    let mut rng = Rng::fresh();
    let shapes = [vec![70, 45], vec![33], vec![9, 17], vec![1]];
    steps_on(
        &Device::Cpu,
        &mut rng,
        &shapes,
        step_config(),
        10,
        (true, true),
    );
}

/// The mixed-precision step on the sm_80 emulator: ten steps of an odd weight cut into two
/// blocks (block size 16) and a bias, with roots from the second step.
#[test]
fn steps_with_model_copy_on_the_sm80_emulator_match_f64() {
    let mut rng = Rng::fresh();
    let cfg = ShampooConfig {
        max_preconditioner_dim: 16,
        precondition_frequency: 4,
        ..step_config()
    };
    let shapes = [vec![9, 19], vec![5]];
    steps_on(&emu(), &mut rng, &shapes, cfg, 10, (false, true));
}

/// The list API refuses options out of range at `new`, and at a step: lists of another
/// length or shapes than the first step's, 3-D and empty parameters, and a change of
/// `max_preconditioner_dim` after the blocks were cut; a refused step is not counted.
#[test]
fn the_optim_api_refuses_lists_and_options_by_name() {
    let dev = Device::Cpu;
    let e = optim::Shampoo::new(ShampooConfig {
        epsilon: -1.0,
        ..ShampooConfig::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("epsilon"), "{e}");
    let z = |s: &[usize]| Tensor::zeros(F32, s, &dev).unwrap();
    for bad in [vec![2, 3, 4], vec![0, 3], vec![0]] {
        let mut opt = optim::Shampoo::new(ShampooConfig::default()).unwrap();
        let e = opt.step(&dev, &[z(&bad)], &[z(&bad)]).unwrap_err();
        assert!(
            matches!(e, OptimError::Entry { entry: 0, .. }),
            "{bad:?}: {e}"
        );
        assert_eq!(opt.steps(), 0);
    }
    let mut rng = Rng::fresh();
    let mut opt = optim::Shampoo::new(ShampooConfig::default()).unwrap();
    let params = [
        Tensor::from_host(&rng.tensor(F32, &[4, 6], -1.0, 1.0), &dev).unwrap(),
        Tensor::from_host(&rng.tensor(F32, &[3], -1.0, 1.0), &dev).unwrap(),
    ];
    let grads = [
        Tensor::from_host(&rng.tensor(F32, &[4, 6], -1.0, 1.0), &dev).unwrap(),
        Tensor::from_host(&rng.tensor(F32, &[3], -1.0, 1.0), &dev).unwrap(),
    ];
    opt.step(&dev, &params, &grads).unwrap();
    assert_eq!(opt.steps(), 1);
    let e = opt.step(&dev, &params[..1], &grads[..1]).unwrap_err();
    assert!(matches!(e, OptimError::Count { .. }), "{e}");
    let e = opt
        .step(&dev, &[z(&[6, 4]), z(&[3])], &[z(&[6, 4]), z(&[3])])
        .unwrap_err();
    assert!(e.to_string().contains("shape [4, 6]"), "{e}");
    opt.config.max_preconditioner_dim = 2;
    let e = opt.step(&dev, &params, &grads).unwrap_err();
    assert!(e.to_string().contains("max_preconditioner_dim"), "{e}");
    assert_eq!(opt.steps(), 1, "refused steps are not counted");
}
