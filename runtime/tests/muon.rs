//! Muon (`kernels::muon`) on the interpreter and the sm_80 PTX emulator.
//!
//! - The symmetric Gram kernel and the combine kernel each against f64 with a bound from their
//!   arithmetic: bf16 operands are exact in f64, the f32 sum of `k` products is off by at most
//!   `k·2⁻²⁴·Σ|products|`, and the bf16 store by at most 2⁻⁸ of the value (round to nearest).
//!   The mirrored tile must equal its transpose bit for bit, and only the upper triangle's
//!   blocks run.
//! - Whole steps against the f64 step written from the algorithm (`muon::reference`), at
//!   64×64, 96×200, 256×128 (transposed) and 130×70 (transposed, no dimension a multiple of the
//!   tile), batch 1 and 3. The tolerance is the error model of bf16 storage at the kernels'
//!   rounding points, evaluated on the same input (`muon::update_tolerance`).
//! - Orthogonality: the update's singular values lie in the band the quintic maps the input's
//!   singular values to, for every input singular value ≥ 1e-2·σ_max.
//! - Consecutive steps, each from the kernels' own state; errors for wrong shapes and options.

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::kernels::muon::{
    gram_blocks, muon_combine, muon_gram, newton_schulz, recovered_update, reference,
    update_tolerance, Muon, MuonConfig, MuonError, NS_COEFFICIENTS, TILE, TILE_K, WARP_TILE,
};
use tilekit::{Device, ScalarArg, Tensor};

fn emu() -> Device {
    Device::emulator("sm_80").expect("the sm_80 emulator")
}

const U_BF16: f64 = 1.0 / 256.0;
const U_F32: f64 = 1.0 / 16_777_216.0;

/// `α·Y·Yᵀ + β·Z` of the symmetric kernel against f64, element by element within
/// `2⁻⁸·|v| + (1 + 2⁻⁸)·e_acc` with `e_acc = (k + 2)·2⁻²⁴·(|α|Σ|y y| + |β||z|)`.
fn gram_on(device: &Device, rng: &mut Rng, b: usize, m: usize, k: usize, affine: bool) {
    let y = rng.tensor(BF16, &[b, m, k], -1.0, 1.0);
    // Z symmetric, as the kernel requires.
    let mut zv = rng.tensor(BF16, &[b, m, m], -4.0, 4.0).to_vec();
    for z in 0..b {
        for i in 0..m {
            for j in 0..i {
                zv[z * m * m + i * m + j] = zv[z * m * m + j * m + i];
            }
        }
    }
    let zt = HostTensor::new(BF16, &[b, m, m], &zv).unwrap();
    let mut out = HostTensor::full(BF16, &[b, m, m], f64::NAN);
    let (alpha, beta) = if affine {
        (2.0315f32, -4.775f32)
    } else {
        (1.0, 0.0)
    };
    let (sa, sb) = (ScalarArg::from(alpha), ScalarArg::from(beta));
    if affine {
        muon_gram::<TILE, TILE_K, WARP_TILE, true>::launch_auto(device, &y, &zt, &mut out, sa, sb)
    } else {
        muon_gram::<TILE, TILE_K, WARP_TILE, false>::launch_auto(device, &y, &zt, &mut out, sa, sb)
    }
    .unwrap_or_else(|e| panic!("{} gram {b}×{m}×{k}: {e}", device.name()));
    let (yv, got) = (y.to_vec(), out.to_vec());
    let (alpha, beta) = (f64::from(alpha), f64::from(beta));
    for z in 0..b {
        for i in 0..m {
            for j in 0..m {
                let row = |r: usize| &yv[(z * m + r) * k..][..k];
                let dot: f64 = row(i).iter().zip(row(j)).map(|(p, q)| p * q).sum();
                let abs: f64 = row(i).iter().zip(row(j)).map(|(p, q)| (p * q).abs()).sum();
                let zij = if affine {
                    zv[z * m * m + i * m + j]
                } else {
                    0.0
                };
                let want = alpha * dot + beta * zij;
                let acc = (k + 2) as f64 * U_F32 * (alpha.abs() * abs + beta.abs() * zij.abs());
                let bound = U_BF16 * want.abs() + (1.0 + U_BF16) * acc;
                let g = got[z * m * m + i * m + j];
                assert!(
                    (g - want).abs() <= bound,
                    "{} gram (affine {affine}) {b}×{m}×{k} at [{z}, {i}, {j}]: {g} vs {want} \
                     (bound {bound:.2e}, seed {})",
                    device.name(),
                    rng.seed
                );
                assert_eq!(
                    g.to_bits(),
                    got[z * m * m + j * m + i].to_bits(),
                    "{}: the mirror of [{z}, {i}, {j}]",
                    device.name()
                );
            }
        }
    }
}

#[test]
fn the_gram_kernel_computes_the_upper_triangle_and_mirrors_it() {
    let mut rng = Rng::fresh();
    for (b, m, k) in [(1, 64, 64), (3, 130, 70), (1, 96, 200), (2, 7, 33)] {
        gram_on(&Device::Cpu, &mut rng, b, m, k, false);
        gram_on(&Device::Cpu, &mut rng, b, m, m, true);
    }
    gram_on(&emu(), &mut rng, 2, 130, 40, false);
    gram_on(&emu(), &mut rng, 1, 70, 70, true);
    // Blocks run against a full grid: (t(t+1)/2, t²) tiles of 64.
    assert_eq!(gram_blocks(64), (1, 1));
    assert_eq!(gram_blocks(130), (6, 9));
    assert_eq!(gram_blocks(4096), (2080, 4096));
}

/// `a·X + B·X` stored in bf16, against f64 within the rounding bound of [`gram_on`].
fn combine_on(device: &Device, rng: &mut Rng, b: usize, m: usize, n: usize) {
    let bm = rng.tensor(BF16, &[b, m, m], -1.0, 1.0);
    let x = rng.tensor(BF16, &[b, m, n], -1.0, 1.0);
    let mut out = HostTensor::full(BF16, &[b, m, n], f64::NAN);
    let a = NS_COEFFICIENTS.0;
    muon_combine::<TILE, TILE, TILE_K, WARP_TILE, WARP_TILE>::launch_auto(
        device,
        &bm,
        &x,
        &mut out,
        ScalarArg::from(a),
    )
    .unwrap_or_else(|e| panic!("{} combine {b}×{m}×{n}: {e}", device.name()));
    let (bv, xv, got) = (bm.to_vec(), x.to_vec(), out.to_vec());
    let a = f64::from(a);
    for z in 0..b {
        for i in 0..m {
            for j in 0..n {
                let terms = (0..m).map(|k| bv[(z * m + i) * m + k] * xv[(z * m + k) * n + j]);
                let dot: f64 = terms.clone().sum();
                let abs: f64 = terms.map(f64::abs).sum();
                let xij = xv[(z * m + i) * n + j];
                let want = a * xij + dot;
                let acc = (m + 2) as f64 * U_F32 * (abs + a.abs() * xij.abs());
                let bound = U_BF16 * want.abs() + (1.0 + U_BF16) * acc;
                let g = got[(z * m + i) * n + j];
                assert!(
                    (g - want).abs() <= bound,
                    "{} combine {b}×{m}×{n} at [{z}, {i}, {j}]: {g} vs {want} (seed {})",
                    device.name(),
                    rng.seed
                );
            }
        }
    }
}

#[test]
fn the_combine_kernel_matches_f64_within_its_rounding() {
    let mut rng = Rng::fresh();
    for (b, m, n) in [(1, 64, 64), (3, 70, 130), (1, 96, 200)] {
        combine_on(&Device::Cpu, &mut rng, b, m, n);
    }
    combine_on(&emu(), &mut rng, 2, 70, 130);
}

fn config() -> MuonConfig {
    MuonConfig {
        lr: 0.02,
        weight_decay: 0.1,
        ..MuonConfig::default()
    }
}

/// Eigenvalues of the symmetric `n × n` matrix `a` (cyclic Jacobi, f64).
fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off < 1e-26 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i * n + i]).collect()
}

/// Singular values of the row-major `r × c` matrix `x`, descending.
fn singular_values(x: &[f64], r: usize, c: usize) -> Vec<f64> {
    let (m, wide) = (r.min(c), r <= c);
    let at = |i: usize, k: usize| if wide { x[i * c + k] } else { x[k * c + i] };
    let kk = r.max(c);
    let mut g = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            g[i * m + j] = (0..kk).map(|k| at(i, k) * at(j, k)).sum();
        }
    }
    let mut s: Vec<f64> = symmetric_eigenvalues(g, m)
        .into_iter()
        .map(|e| e.max(0.0).sqrt())
        .collect();
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// One step on `device` from random state; the update against the f64 step and, per matrix,
/// the singular values of the update against the quintic's band.
fn step_on(device: &Device, rng: &mut Rng, shape: [usize; 3], nesterov: bool) {
    let cfg = MuonConfig {
        nesterov,
        ..config()
    };
    let p0 = rng.tensor(F32, &shape, -1.0, 1.0);
    let g = rng.tensor(F32, &shape, -1.0, 1.0);
    let b0 = rng.tensor(F32, &shape, -0.5, 0.5);
    let mut muon = Muon::new(device, shape, cfg).unwrap();
    muon.momentum_buffer = Tensor::from_host(&b0, device).unwrap();
    let mut p = p0.clone();
    let case = format!(
        "{} {shape:?} nesterov {nesterov} (seed {})",
        device.name(),
        rng.seed
    );
    muon.step(device, &mut p, &g)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let (pv, gv, bv) = (p0.to_vec(), g.to_vec(), b0.to_vec());
    let exact = reference(&pv, &gv, &bv, shape, &cfg, false);
    let model = reference(&pv, &gv, &bv, shape, &cfg, true);
    let got = recovered_update(&pv, &p.to_vec(), shape, &cfg);
    let tol = update_tolerance(&exact.ortho, &model.ortho);
    let err = normalized_max_error(&got, &exact.ortho);
    let model_err = normalized_max_error(&model.ortho, &exact.ortho);
    eprintln!("{case}: update error {err:.2e}, bf16 model {model_err:.2e}, tolerance {tol:.2e}");
    assert!(err <= tol, "{case}: update error {err:.2e} > {tol:.2e}");
    let buf = muon.momentum_buffer.to_f64_vec().unwrap();
    let eb = normalized_max_error(&buf, &exact.momentum_buffer);
    assert!(eb <= 4.0 * U_F32, "{case}: momentum error {eb:.2e}");

    let [bn, r, c] = shape;
    let (a, b, cc) = NS_COEFFICIENTS;
    let (a, b, cc) = (f64::from(a), f64::from(b), f64::from(cc));
    let quintic = |mut s: f64| {
        for _ in 0..cfg.ns_steps {
            s = a * s + b * s.powi(3) + cc * s.powi(5);
        }
        s
    };
    for z in 0..bn {
        let one = |v: &[f64]| v[z * r * c..(z + 1) * r * c].to_vec();
        let u: Vec<f64> = if nesterov {
            let b1: Vec<f64> = one(&exact.momentum_buffer);
            one(&gv)
                .iter()
                .zip(&b1)
                .map(|(g, b)| 0.05 * g + 0.95 * b)
                .collect()
        } else {
            one(&exact.momentum_buffer)
        };
        let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        let s_in: Vec<f64> = singular_values(&u, r, c).iter().map(|s| s / norm).collect();
        let threshold = 1e-2 * s_in[0];
        let kept = s_in.iter().filter(|&&s| s >= threshold).count();
        // The band: the quintic's image of [threshold, σ_max] (a fine grid and the values).
        let grid = (0..=4000).map(|k| threshold + (s_in[0] - threshold) * k as f64 / 4000.0);
        let images: Vec<f64> = grid
            .chain(s_in[..kept].iter().copied())
            .map(quintic)
            .collect();
        let lo = images.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = images.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // Weyl: a perturbation moves each singular value by at most its spectral norm, at
        // most its Frobenius norm; allowed: that of the bf16 model, twice, and an ulp per row.
        let frob = |x: &[f64], y: &[f64]| {
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q) * (p - q))
                .sum::<f64>()
                .sqrt()
        };
        let slack =
            2.0 * frob(&one(&model.ortho), &one(&exact.ortho)) + U_BF16 * (r.min(c) as f64).sqrt();
        let s_out = singular_values(&one(&got), r, c);
        let inside = s_out
            .iter()
            .filter(|&&s| s >= lo - slack && s <= hi + slack)
            .count();
        eprintln!(
            "{case} matrix {z}: band [{lo:.3}, {hi:.3}] ± {slack:.3}; singular values of the \
             update {:.3}..{:.3}, {inside} inside, {kept} inputs ≥ 1e-2·σ_max",
            s_out[s_out.len() - 1],
            s_out[0]
        );
        assert!(
            inside >= kept,
            "{case} matrix {z}: {inside} singular values in [{lo:.3}, {hi:.3}] ± {slack:.3}, \
             {kept} input singular values ≥ 1e-2·σ_max: {s_out:?}"
        );
    }
}

#[test]
fn a_step_matches_the_f64_step_on_the_interpreter() {
    let mut rng = Rng::fresh();
    for shape in [
        [1, 64, 64],
        [3, 64, 64],
        [1, 96, 200],
        [1, 256, 128],
        [3, 130, 70],
    ] {
        step_on(&Device::Cpu, &mut rng, shape, true);
    }
    step_on(&Device::Cpu, &mut rng, [2, 130, 70], false);
}

#[test]
fn a_step_matches_the_f64_step_on_the_sm80_emulator() {
    let mut rng = Rng::fresh();
    step_on(&emu(), &mut rng, [1, 64, 64], true);
    step_on(&emu(), &mut rng, [3, 70, 40], true);
}

/// Three steps, each from the kernels' own weights and momentum (the reference starts where
/// the kernels are, so one bf16 rounding does not carry into the next step's comparison).
#[test]
fn consecutive_steps_follow_the_reference() {
    let mut rng = Rng::fresh();
    let shape = [2, 48, 80];
    let cfg = config();
    let device = Device::Cpu;
    let mut p = rng.tensor(F32, &shape, -1.0, 1.0);
    let mut muon = Muon::new(&device, shape, cfg).unwrap();
    for step in 0..3 {
        let g = rng.tensor(F32, &shape, -1.0, 1.0);
        let (pv, bv) = (p.to_vec(), muon.momentum_buffer.to_f64_vec().unwrap());
        muon.step(&device, &mut p, &g).unwrap();
        let exact = reference(&pv, &g.to_vec(), &bv, shape, &cfg, false);
        let model = reference(&pv, &g.to_vec(), &bv, shape, &cfg, true);
        let got = recovered_update(&pv, &p.to_vec(), shape, &cfg);
        let tol = update_tolerance(&exact.ortho, &model.ortho);
        let err = normalized_max_error(&got, &exact.ortho);
        assert!(
            err <= tol,
            "step {step}: {err:.2e} > {tol:.2e} (seed {})",
            rng.seed
        );
        let eb = normalized_max_error(
            &muon.momentum_buffer.to_f64_vec().unwrap(),
            &exact.momentum_buffer,
        );
        assert!(eb <= 4.0 * U_F32, "step {step}: momentum {eb:.2e}");
    }
}

/// The f64 Newton–Schulz of the reference, on a matrix whose singular values are known: a
/// scaled orthogonal matrix's (all equal) follow the scalar quintic exactly.
#[test]
fn the_reference_newton_schulz_follows_the_scalar_quintic() {
    let (m, n) = (3, 5);
    // Rows of a permutation-like matrix: orthonormal rows, all singular values 1, scaled by s.
    let s = 0.3;
    let mut x = vec![0.0; m * n];
    for (i, col) in [4usize, 0, 2].iter().enumerate() {
        x[i * n + col] = if i % 2 == 0 { s } else { -s };
    }
    let y = newton_schulz(&x, m, n, 5, |v| v);
    let (a, b, c) = NS_COEFFICIENTS;
    let (a, b, c) = (f64::from(a), f64::from(b), f64::from(c));
    let mut t = s;
    for _ in 0..5 {
        t = a * t + b * t.powi(3) + c * t.powi(5);
    }
    for (k, (&yv, &xv)) in y.iter().zip(&x).enumerate() {
        let want = xv / s * t;
        assert!((yv - want).abs() < 1e-12, "{k}: {yv} vs {want}");
    }
    assert!((0.6..1.3).contains(&t), "the quintic maps 0.3 to {t}");
}

#[test]
fn wrong_shapes_and_options_are_errors() {
    let device = Device::Cpu;
    assert!(matches!(
        Muon::new(&device, [1, 0, 4], config()),
        Err(MuonError::Argument { name: "shape", .. })
    ));
    let bad_momentum = MuonConfig {
        momentum: 1.0,
        ..config()
    };
    let err = Muon::new(&device, [1, 4, 4], bad_momentum).unwrap_err();
    assert!(err.to_string().contains("momentum"), "{err}");
    let no_steps = MuonConfig {
        ns_steps: 0,
        ..config()
    };
    assert!(Muon::new(&device, [1, 4, 4], no_steps).is_err());
    let nan_lr = MuonConfig {
        lr: f32::NAN,
        ..config()
    };
    assert!(Muon::new(&device, [1, 4, 4], nan_lr).is_err());

    let mut muon = Muon::new(&device, [2, 16, 8], config()).unwrap();
    let mut p = HostTensor::full(F32, &[2, 16, 8], 0.5);
    let g = HostTensor::full(F32, &[2, 8, 16], 0.5);
    let err = muon.step(&device, &mut p, &g).unwrap_err();
    assert!(
        err.to_string().contains("grads") && err.to_string().contains("[2, 16, 8]"),
        "{err}"
    );
    let g16 = HostTensor::full(BF16, &[2, 16, 8], 0.5);
    let err = muon.step(&device, &mut p, &g16).unwrap_err();
    assert!(err.to_string().contains("bf16"), "{err}");
    let mut p2 = HostTensor::full(F32, &[16, 8], 0.5);
    let g2 = HostTensor::full(F32, &[16, 8], 0.5);
    assert!(muon.step(&device, &mut p2, &g2).is_err());
}

/// The registered self-test (a transposed and a wide shape, batch 2 and 1) on the interpreter
/// and both emulators.
#[test]
fn the_registered_self_test_passes_on_the_interpreter_and_both_emulators() {
    let info = tilekit::registry::kernels()
        .into_iter()
        .find(|k| k.name.starts_with("muon_apply") && k.selftest.is_some())
        .expect("muon_apply is registered with a self-test");
    let test = info.selftest.expect("a self-test");
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap(), emu()] {
        let out = test(&device).unwrap_or_else(|e| panic!("on {}: {e}", device.name()));
        println!("muon self-test on {}: {out}", device.name());
    }
}
