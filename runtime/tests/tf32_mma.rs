//! `mma` of f32 tiles, which multiplies in tf32, through a whole GEMM on the interpreter and the
//! sm_80 and sm_90a PTX emulators (`cvt.rna.tf32.f32` and `mma.sync…m16n8k8…tf32`), against two
//! f64 references written here from the definitions: the exact product of the f32 inputs, with
//! a tolerance from tf32's 10 fraction bits, and the product of the inputs rounded to tf32
//! (nearest, ties away from zero), with a tolerance from f32 accumulation alone, which only a
//! kernel that rounds as `cvt.rna` does meets. The AMD targets compile the kernel: gfx942 with
//! its xf32 MFMA, gfx90a and gfx950 (no xf32) with the f32 MFMA on the rounded inputs.
//!
//! Tolerances, per output element with `S = Σ_k |a_ik·b_kj|`: a rounded operand is within
//! `u = 2^-11` of its f32 value relatively, so a product is within `(2u + u²)·|a·b|` of the
//! exact one; an f32 sum of K products and C in any order is within `γ_(K+1)·(S + |c|)` of its
//! exact value, `γ_n = n·2^-24 / (1 − n·2^-24)`.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// `c = A·B`, `d = A·Wᵀ`, one warp per 32×32 tile of each, K in slices of 16; the views'
/// shapes mask the edges.
#[tilekit::kernel]
fn tf32_gemm(a: Gl<f32, 2>, b: Gl<f32, 2>, w: Gl<f32, 2>, c: GlMut<f32, 2>, d: GlMut<f32, 2>) {
    let (i, j) = (block_idx_y(), block_idx_x());
    let mut acc: Rt<f32, 32, 32> = zeros();
    let mut acc_t: Rt<f32, 32, 32> = zeros();
    for kt in range(0, ceil_div(a.cols(), 16)) {
        let at: Rt<f32, 32, 16> = load(a.tile(i, kt));
        let bt: Rt<f32, 16, 32, Col> = load(b.tile(kt, j));
        let wt: Rt<f32, 32, 16> = load(w.tile(j, kt));
        acc = mma_ab(acc, at, bt);
        acc_t = mma_abt(acc_t, at, wt);
    }
    store(c.tile(i, j), acc);
    store(d.tile(i, j), acc_t);
}

/// `x` rounded to 11 significant bits, ties away from zero, from the definition (the unit of
/// the 11th bit of |x| is 2^(floor(log2|x|) − 10), 2^-136 below the normal range).
fn tf32(x: f64) -> f64 {
    if x == 0.0 {
        return x;
    }
    let e = x.abs().log2().floor().max(-126.0) as i32;
    let unit = 2f64.powi(e - 10);
    let q = x.abs() / unit;
    let r = if q - q.floor() >= 0.5 {
        q.floor() + 1.0
    } else {
        q.floor()
    };
    x.signum() * r * unit
}

fn gamma(n: usize) -> f64 {
    let nu = n as f64 * 2f64.powi(-24);
    nu / (1.0 - nu)
}

/// f32 values of both signs, magnitudes over four binades, a fifth of them exactly halfway
/// between two tf32 values (ties, where ties-to-even and truncation would differ).
fn inputs(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let mag = 2f64.powf(rng.uniform(-2.0, 2.0));
            let x = if rng.uniform(0.0, 1.0) < 0.5 {
                mag
            } else {
                -mag
            } as f32;
            let x = if i % 5 == 0 {
                f32::from_bits((x.to_bits() & !0x1fff) | 0x1000)
            } else {
                x
            };
            f64::from(x)
        })
        .collect()
}

/// Checks `got` (m×n) against `Σ_k x(i,k)·y(k,j)` for the exact and the tf32-rounded inputs.
fn check(
    what: &str,
    got: &[f64],
    (m, n, k): (usize, usize, usize),
    x: impl Fn(usize, usize) -> f64,
    y: impl Fn(usize, usize) -> f64,
) {
    let u = 2f64.powi(-11);
    for i in 0..m {
        for j in 0..n {
            let (mut exact, mut rounded, mut s) = (0.0, 0.0, 0.0);
            for kk in 0..k {
                let (p, q) = (x(i, kk), y(kk, j));
                exact += p * q;
                rounded += tf32(p) * tf32(q);
                s += (p * q).abs();
            }
            let g = got[i * n + j];
            let acc = gamma(k + 1) * s * (1.0 + 2.0 * u + u * u);
            assert!(
                (g - rounded).abs() <= acc,
                "{what}: [{i}][{j}] = {g:e}, tf32-rounded reference {rounded:e} (bound {acc:e})"
            );
            let bound = (2.0 * u + u * u) * s + acc;
            assert!(
                (g - exact).abs() <= bound,
                "{what}: [{i}][{j}] = {g:e}, exact {exact:e} (bound {bound:e})"
            );
        }
    }
}

fn run_on(device: &Device) {
    let mut rng = Rng::fresh();
    for (m, n, k) in [(32, 32, 16), (45, 70, 37), (70, 33, 100)] {
        let what = format!("{} {m}×{n}×{k}, seed {}", device.name(), rng.seed);
        let av = inputs(&mut rng, m * k);
        let bv = inputs(&mut rng, k * n);
        let wv = inputs(&mut rng, n * k);
        let a = HostTensor::new(F32, &[m, k], &av).expect("a");
        let b = HostTensor::new(F32, &[k, n], &bv).expect("b");
        let w = HostTensor::new(F32, &[n, k], &wv).expect("w");
        let mut c = HostTensor::full(F32, &[m, n], 7.0);
        let mut d = HostTensor::full(F32, &[m, n], 7.0);
        let grid = [n.div_ceil(32) as u32, m.div_ceil(32) as u32, 1];
        tf32_gemm::launch(device, grid, &a, &b, &w, &mut c, &mut d)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        check(
            &format!("A·B on {what}"),
            &c.to_vec(),
            (m, n, k),
            |i, kk| av[i * k + kk],
            |kk, j| bv[kk * n + j],
        );
        check(
            &format!("A·Wᵀ on {what}"),
            &d.to_vec(),
            (m, n, k),
            |i, kk| av[i * k + kk],
            |kk, j| wv[j * k + kk],
        );
    }
}

#[test]
fn tf32_gemm_on_the_interpreter() {
    run_on(&Device::Cpu);
}

#[test]
fn tf32_gemm_on_the_sm_80_emulator() {
    run_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn tf32_gemm_on_the_sm_90a_emulator() {
    run_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn nvidia_ptx_rounds_with_cvt_rna_and_multiplies_with_m16n8k8_tf32() {
    for t in [Target::Sm80, Target::Sm90a] {
        let c = tilekit::codegen::compile(tf32_gemm::module(), tf32_gemm::NAME, t)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        let ptx = c.ptx();
        assert!(ptx.contains("cvt.rna.tf32.f32"), "{t}");
        assert!(
            ptx.contains("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32"),
            "{t}"
        );
    }
}

#[test]
fn amd_targets_compile_tf32_products_with_their_mfma() {
    // LLVM spells the f32 MFMA `v_mfma_f32_16x16x4f32` on gfx90a, `…16x16x4_f32` after it.
    for (t, mfma, not) in [
        (
            Target::Gfx942,
            "v_mfma_f32_16x16x8_xf32",
            "v_mfma_f32_16x16x4",
        ),
        (Target::Gfx90a, "v_mfma_f32_16x16x4f32", "xf32"),
        (Target::Gfx950, "v_mfma_f32_16x16x4_f32", "xf32"),
    ] {
        let c = tilekit::codegen::compile(tf32_gemm::module(), tf32_gemm::NAME, t)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        let asm = c.stage(tilekit::codegen::Stage::Asm);
        assert!(asm.contains(mfma), "{t}: no {mfma}");
        assert!(!asm.contains(not), "{t}: {not}");
    }
}

#[test]
fn the_reference_rounding_matches_hand_worked_cases() {
    let ulp = 2f64.powi(-10);
    assert_eq!(tf32(1.0 + ulp / 2.0), 1.0 + ulp);
    assert_eq!(tf32(-(1.0 + ulp / 2.0)), -(1.0 + ulp));
    assert_eq!(tf32(1.0 + 1.5 * ulp), 1.0 + 2.0 * ulp);
    assert_eq!(tf32(1.0 + 0.49 * ulp), 1.0);
    assert_eq!(tf32(3.0), 3.0);
}
