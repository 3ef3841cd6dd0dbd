//! fp8 (OCP E4M3FN and E5M2) conversions on the interpreter and the sm_90a PTX emulator,
//! against an encoder and a decoder written here from the OCP 8-bit floating point
//! specification (not from `tilekit_ir::numeric`): every code decodes, every code's value
//! encodes back to it, and f32 values (ties, saturation, subnormals, NaN, random magnitudes)
//! round to the nearest code, ties to the even one, saturating to the largest finite value.
//! Targets without fp8 instructions refuse the kernels with the target and the op named.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F32, F8E4M3, F8E5M2};
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// The value of fp8 code `b` (OCP OFP8 v1.0, section 5.3): E4M3 has bias 7, no infinities, and
/// S.1111.111 is NaN; E5M2 has bias 15 and IEEE-like infinities (S.11111.00) and NaNs.
fn ocp_decode(dtype: ScalarType, b: u8) -> f64 {
    let (exp_bits, man_bits, bias) = if dtype == F8E4M3 {
        (4, 3, 7)
    } else {
        (5, 2, 15)
    };
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = i32::from(b >> man_bits) & ((1 << exp_bits) - 1);
    let m = f64::from(b & ((1 << man_bits) - 1));
    let top = (1 << exp_bits) - 1;
    if dtype == F8E4M3 && e == top && m == f64::from((1 << man_bits) - 1) {
        return f64::NAN;
    }
    if dtype == F8E5M2 && e == top {
        return if m == 0.0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    let frac = m / f64::from(1 << man_bits);
    if e == 0 {
        sign * frac * 2f64.powi(1 - bias)
    } else {
        sign * (1.0 + frac) * 2f64.powi(e - bias)
    }
}

/// What `cvt.rn.satfinite` makes of `x`: the nearest finite code's value (of two equally near,
/// the one whose code is even), anything beyond the largest finite magnitude clamped to it,
/// NaN kept. Found by searching all codes, so it shares no arithmetic with the code under test.
pub(crate) fn ocp_encode(dtype: ScalarType, x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    // satfinite: magnitudes past the largest finite value (infinities too) become it.
    let max = if dtype == F8E4M3 { 448.0 } else { 57344.0 };
    let x = x.clamp(-max, max);
    let mut best: Option<(f64, u8)> = None;
    for b in 0..=255u8 {
        let v = ocp_decode(dtype, b);
        if !v.is_finite() || (v == 0.0 && (b & 0x80 != 0) != x.is_sign_negative()) {
            continue;
        }
        let better = match best {
            None => true,
            Some((bv, bb)) => {
                let (d, bd) = ((x - v).abs(), (x - bv).abs());
                d < bd || (d == bd && b % 2 == 0 && bb % 2 == 1)
            }
        };
        if better {
            best = Some((v, b));
        }
    }
    best.map_or(f64::NAN, |(v, _)| v)
}

/// Exact equality with NaN equal to NaN and the sign of zero compared.
pub(crate) fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a == b && a.is_sign_negative() == b.is_sign_negative())
}

#[tilekit::kernel]
fn fp8_conversions(
    codes4: Gl<f8e4m3, 2>,
    codes5: Gl<f8e5m2, 2>,
    x: Gl<f32, 2>,
    h: Gl<bf16, 2>,
    decoded4: GlMut<f32, 2>,
    decoded5: GlMut<f32, 2>,
    again4: GlMut<f8e4m3, 2>,
    as_bf16: GlMut<bf16, 2>,
    q4: GlMut<f8e4m3, 2>,
    q5: GlMut<f8e5m2, 2>,
    hq4: GlMut<f8e4m3, 2>,
    narrowed: GlMut<f8e5m2, 2>,
) {
    let i = block_idx_x();
    let c4: Rt<f8e4m3, 16, 16> = load(codes4.tile(i, 0));
    let c5: Rt<f8e5m2, 16, 16> = load(codes5.tile(i, 0));
    let d4 = c4.cast::<f32>();
    store(decoded4.tile(i, 0), d4);
    store(decoded5.tile(i, 0), c5.cast::<f32>());
    store(again4.tile(i, 0), d4.cast::<f8e4m3>());
    store(as_bf16.tile(i, 0), c4.cast::<bf16>());
    // e4m3 → e5m2 rounds (3 mantissa bits to 2).
    store(narrowed.tile(i, 0), c4.cast::<f8e5m2>());
    let xt: Rt<f32, 16, 16> = load(x.tile(i, 0));
    store(q4.tile(i, 0), xt.cast::<f8e4m3>());
    store(q5.tile(i, 0), xt.cast::<f8e5m2>());
    let ht: Rt<bf16, 16, 16> = load(h.tile(i, 0));
    store(hq4.tile(i, 0), ht.cast::<f8e4m3>());
}

/// f32 values that probe the rounding: each format's midpoints between neighbouring codes (ties)
/// and values a little either side, the saturation boundary, subnormals, zeros, NaN, infinities,
/// then random magnitudes from 2^-12 to 2^17 of both signs.
fn probes(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut v = Vec::new();
    for dtype in [F8E4M3, F8E5M2] {
        let mut finite: Vec<f64> = (0..=255u8)
            .map(|b| ocp_decode(dtype, b))
            .filter(|x| x.is_finite())
            .collect();
        finite.sort_by(f64::total_cmp);
        finite.dedup();
        for w in finite.windows(2) {
            let mid = 0.5 * (w[0] + w[1]);
            let step = (w[1] - w[0]) * 1e-3;
            v.extend([mid, mid + step, mid - step]);
        }
        let max = *finite.last().expect("finite codes");
        v.extend([max, max * 1.03, max * 1.1, -max * 1.5, max * 1e6]);
    }
    v.extend([0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
    v.extend([
        2f64.powi(-10),
        2f64.powi(-10) * 1.001,
        2f64.powi(-17),
        3.0 * 2f64.powi(-11),
    ]);
    while v.len() < n {
        let mag = 2f64.powf(rng.uniform(-12.0, 17.0));
        let sign = if rng.uniform(0.0, 1.0) < 0.5 {
            -1.0
        } else {
            1.0
        };
        v.push(sign * mag);
    }
    // Shuffle so that every lane and register position meets every kind of probe.
    for k in (1..v.len()).rev() {
        let j = (rng.uniform(0.0, (k + 1) as f64) as usize).min(k);
        v.swap(k, j);
    }
    assert!(v.len() == n, "{} probes for {n} elements", v.len());
    v
}

fn check_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    // 256 codes per format, as 16 rows of 16 per block; extra blocks repeat them shuffled.
    // Six blocks hold every probe (about 1500).
    let blocks = 6;
    let rows = 16 * blocks;
    let n = rows * 16;
    let mut order: Vec<u8> = (0..n).map(|k| (k % 256) as u8).collect();
    for k in (256..n).rev() {
        let j = 256 + (rng.uniform(0.0, (k - 255) as f64) as usize).min(k - 256);
        order.swap(k, j);
    }
    let values = |dtype: ScalarType| -> Vec<f64> {
        order
            .iter()
            .map(|&b| {
                let v = ocp_decode(dtype, b);
                // The IR's e5m2 values saturate (a tensor holds no infinity): those codes are
                // probed as the largest finite value instead.
                if v.is_infinite() {
                    v.signum() * 57344.0
                } else {
                    v
                }
            })
            .collect()
    };
    let (v4, v5) = (values(F8E4M3), values(F8E5M2));
    let codes4 = HostTensor::new(F8E4M3, &[rows, 16], &v4).expect("e4m3 codes");
    let codes5 = HostTensor::new(F8E5M2, &[rows, 16], &v5).expect("e5m2 codes");
    let xs: Vec<f64> = probes(&mut rng, n)
        .into_iter()
        .map(|x| f64::from(x as f32))
        .collect();
    let x = HostTensor::new(F32, &[rows, 16], &xs).expect("probes");
    let h = rng.tensor(BF16, &[rows, 16], -500.0, 500.0);
    let out = |d| HostTensor::full(d, &[rows, 16], 7.0);
    let (mut decoded4, mut decoded5, mut again4, mut as_bf16) =
        (out(F32), out(F32), out(F8E4M3), out(BF16));
    let (mut q4, mut q5, mut hq4, mut narrowed) =
        (out(F8E4M3), out(F8E5M2), out(F8E4M3), out(F8E5M2));
    fp8_conversions::launch(
        device,
        blocks as u32,
        &codes4,
        &codes5,
        &x,
        &h,
        &mut decoded4,
        &mut decoded5,
        &mut again4,
        &mut as_bf16,
        &mut q4,
        &mut q5,
        &mut hq4,
        &mut narrowed,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let hs = h.to_vec();
    let (d4, d5, a4, b4) = (
        decoded4.to_vec(),
        decoded5.to_vec(),
        again4.to_vec(),
        as_bf16.to_vec(),
    );
    let (q4, q5, hq4, nr) = (q4.to_vec(), q5.to_vec(), hq4.to_vec(), narrowed.to_vec());
    for k in 0..n {
        let b = order[k];
        let want4 = ocp_decode(F8E4M3, b);
        assert!(
            same(d4[k], want4),
            "e4m3 code {b:#04x} → f32 {} (want {want4}): {what}",
            d4[k]
        );
        assert!(
            same(a4[k], want4),
            "e4m3 code {b:#04x} → f32 → e4m3 {} : {what}",
            a4[k]
        );
        assert!(
            same(b4[k], want4),
            "e4m3 code {b:#04x} → bf16 {} : {what}",
            b4[k]
        );
        assert!(
            same(d5[k], v5[k]),
            "e5m2 code {b:#04x} → f32 {} (want {}): {what}",
            d5[k],
            v5[k]
        );
        let n5 = ocp_encode(F8E5M2, want4);
        assert!(
            same(nr[k], n5),
            "e4m3 {want4} → e5m2 {} (want {n5}): {what}",
            nr[k]
        );
        let w4 = ocp_encode(F8E4M3, xs[k]);
        assert!(
            same(q4[k], w4),
            "f32 {:e} → e4m3 {} (want {w4}): {what}",
            xs[k],
            q4[k]
        );
        let w5 = ocp_encode(F8E5M2, xs[k]);
        assert!(
            same(q5[k], w5),
            "f32 {:e} → e5m2 {} (want {w5}): {what}",
            xs[k],
            q5[k]
        );
        let wh = ocp_encode(F8E4M3, hs[k]);
        assert!(
            same(hq4[k], wh),
            "bf16 {} → e4m3 {} (want {wh}): {what}",
            hs[k],
            hq4[k]
        );
    }
}

#[test]
fn fp8_conversions_follow_the_ocp_spec_on_the_interpreter() {
    check_on(&Device::Cpu);
}

#[test]
fn fp8_conversions_follow_the_ocp_spec_on_the_sm_90a_emulator() {
    check_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn the_reference_encoder_agrees_with_the_spec_tables() {
    // OCP OFP8 v1.0, tables 1 and 2: max normal, min normal, min subnormal.
    assert_eq!(ocp_decode(F8E4M3, 0x7e), 448.0);
    assert_eq!(ocp_decode(F8E4M3, 0x08), 2f64.powi(-6));
    assert_eq!(ocp_decode(F8E4M3, 0x01), 2f64.powi(-9));
    assert_eq!(ocp_decode(F8E5M2, 0x7b), 57344.0);
    assert_eq!(ocp_decode(F8E5M2, 0x04), 2f64.powi(-14));
    assert_eq!(ocp_decode(F8E5M2, 0x01), 2f64.powi(-16));
    assert!(ocp_decode(F8E4M3, 0xff).is_nan() && ocp_decode(F8E5M2, 0x7e).is_nan());
    assert_eq!(ocp_decode(F8E5M2, 0xfc), f64::NEG_INFINITY);
    // 1.0625 is halfway between 1 (mantissa 000, even) and 1.125: ties go to 1.
    assert_eq!(ocp_encode(F8E4M3, 1.0625), 1.0);
    assert_eq!(ocp_encode(F8E4M3, 1.1875), 1.25);
    assert_eq!(ocp_encode(F8E4M3, 1e9), 448.0);
    assert_eq!(ocp_encode(F8E5M2, f64::NEG_INFINITY), -57344.0);
    assert_eq!(ocp_encode(F8E4M3, 2f64.powi(-10)), 0.0);
}

#[test]
fn targets_without_fp8_refuse_fp8_kernels_naming_the_target() {
    for (t, needle) in [
        (Target::Sm80, "sm_89"),
        (Target::Gfx942, "E4M3FNUZ"),
        (Target::Gfx90a, "no fp8"),
        (Target::Gfx950, "not lowered"),
    ] {
        let e = tilekit::codegen::compile(fp8_conversions::module(), fp8_conversions::NAME, t)
            .map(|_| ())
            .expect_err("fp8 needs sm_90a");
        let text = e.to_string();
        assert!(
            text.contains(&format!("` cannot be lowered for {t}")) && text.contains(needle),
            "{t}: {text}"
        );
    }
}

#[test]
fn arithmetic_on_fp8_is_refused_with_the_op_named() {
    #[tilekit::kernel]
    fn fp8_sum(x: Gl<f8e4m3, 2>, y: GlMut<f8e4m3, 2>) {
        let t: Rt<f8e4m3, 16, 16> = load(x.tile(0, 0));
        store(y.tile(0, 0), t + t);
    }
    let e = tilekit::codegen::compile(fp8_sum::module(), fp8_sum::NAME, Target::Sm90a)
        .map(|_| ())
        .expect_err("no fp8 add");
    let text = e.to_string();
    assert!(
        text.contains("add") && text.contains("convert to f32"),
        "{text}"
    );
}

#[test]
fn fp8_conversions_assemble_with_ptxas_as_packed_cvt() {
    let c = tilekit::codegen::compile(
        fp8_conversions::module(),
        fp8_conversions::NAME,
        Target::Sm90a,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ptx = c.ptx();
    // `sass` runs ptxas over the PTX: the packed forms must assemble for sm_90a.
    c.sass().unwrap_or_else(|e| panic!("ptxas: {e}"));
    for instr in [
        "cvt.rn.satfinite.e4m3x2.f32",
        "cvt.rn.satfinite.e5m2x2.f32",
        "cvt.rn.f16x2.e4m3x2",
        "cvt.rn.f16x2.e5m2x2",
    ] {
        assert!(ptx.contains(instr), "{instr} missing");
    }
}

/// The f64 reference of `act_quant` from its definition (DeepSeek-V3's 1×128 scaling): per
/// token and 128-column group, `s = max(amax, 1e-4) / 448` in f32 and `q = e4m3(x / s)` with
/// the quotient in f32, rounded by [`ocp_encode`]. `x` `[t, h]`; returns q `[t, h]` and the
/// scales `[h/128, t]`.
pub(crate) fn act_quant_reference(x: &[f64], t: usize, h: usize) -> (Vec<f64>, Vec<f64>) {
    use tilekit::kernels::moe_fp8::{AMAX_FLOOR, E4M3_MAX, GROUP};
    let groups = h / GROUP;
    let (mut q, mut s) = (vec![0.0; t * h], vec![0.0; groups * t]);
    for r in 0..t {
        for g in 0..groups {
            let cols = g * GROUP..(g + 1) * GROUP;
            let amax = cols.clone().map(|c| x[r * h + c].abs()).fold(0.0, f64::max);
            // f64 quotients of f32 operands rounded once to f32 are the f32 quotients.
            let scale = f64::from((amax.max(AMAX_FLOOR) / E4M3_MAX) as f32);
            s[g * t + r] = scale;
            for c in cols {
                q[r * h + c] = ocp_encode(F8E4M3, f64::from((x[r * h + c] / scale) as f32));
            }
        }
    }
    (q, s)
}

fn act_quant_on(device: &Device, input: ScalarType) {
    use tilekit::kernels::moe_fp8::act_quant;
    let mut rng = Rng::fresh();
    // Token counts that are not multiples of 16 or of a block's 64 rows; one group of each
    // row is all zeros, and magnitudes vary by group so the scales differ.
    for (t, h) in [(37, 256), (5, 128), (70, 384)] {
        let what = format!(
            "{}, {input}, T {t}, H {h}, seed {}",
            device.name(),
            rng.seed
        );
        let mut xs = Vec::with_capacity(t * h);
        for r in 0..t {
            for c in 0..h {
                let g = c / 128;
                let mag = 2f64.powi(((r + 3 * g) % 9) as i32 - 4);
                xs.push(if (r + g) % 5 == 0 && g == 1 {
                    0.0
                } else {
                    rng.uniform(-mag, mag)
                });
            }
        }
        let x = HostTensor::new(input, &[t, h], &xs).expect("x");
        let xs = x.to_vec();
        let mut q = HostTensor::full(F8E4M3, &[t, h], 3.0);
        let mut scales = HostTensor::full(F32, &[h / 128, t], -1.0);
        let grid = [t.div_ceil(64) as u32, (h / 128) as u32, 1];
        if input == BF16 {
            act_quant::<bf16, 4>::launch(device, grid, &x, &mut q, &mut scales)
        } else {
            act_quant::<f32, 4>::launch(device, grid, &x, &mut q, &mut scales)
        }
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (wq, ws) = act_quant_reference(&xs, t, h);
        let (gq, gs) = (q.to_vec(), scales.to_vec());
        for k in 0..wq.len() {
            assert!(
                same(gq[k], wq[k]),
                "q[{}][{}] {} vs {}: {what}",
                k / h,
                k % h,
                gq[k],
                wq[k]
            );
        }
        for k in 0..ws.len() {
            assert_eq!(gs[k], ws[k], "scale[{}][{}]: {what}", k / t, k % t);
        }
        // The definition's purpose, checked apart from the reference: q·s reconstructs x to
        // within half an e4m3 ulp of the element (relative 2^-4), or half the smallest
        // subnormal step (2^-10·s) near zero, and each group's largest magnitude is 448.
        for r in 0..t {
            for g in 0..h / 128 {
                let s = gs[g * t + r];
                let mut top: f64 = 0.0;
                for c in g * 128..(g + 1) * 128 {
                    let (x, y) = (xs[r * h + c], gq[r * h + c] * s);
                    top = top.max(gq[r * h + c].abs());
                    let tol = (x.abs() * 2f64.powi(-4)).max(s * 2f64.powi(-10)) * (1.0 + 1e-6);
                    assert!(
                        (x - y).abs() <= tol,
                        "x {x} vs q·s {y} at ({r}, {c}): {what}"
                    );
                }
                let amax = (g * 128..(g + 1) * 128)
                    .map(|c| xs[r * h + c].abs())
                    .fold(0.0, f64::max);
                if amax > 1e-4 {
                    assert_eq!(top, 448.0, "group ({r}, {g}) largest |q|: {what}");
                }
            }
        }
    }
}

#[test]
fn act_quant_matches_the_1x128_definition_on_the_interpreter() {
    act_quant_on(&Device::Cpu, F32);
    act_quant_on(&Device::Cpu, BF16);
}

#[test]
fn act_quant_matches_the_1x128_definition_on_the_sm_90a_emulator() {
    act_quant_on(&Device::emulator("sm_90a").unwrap(), F32);
}

/// `C = A·Bᵀ` with fp8 operands (A `[M, K]`, B stored `[N, K]`: both K-major, as fp8 wgmma
/// requires), one warpgroup per 64×BN tile of C, K staged through shared memory BK at a time.
#[tilekit::kernel(warps = 4)]
fn fp8_wg_abt<TA: MmaPair<TB>, TB: Dtype, const BN: usize, const BK: usize>(
    a: Gl<TA, 2>,
    bt: Gl<TB, 2>,
    c: GlMut<f32, 2>,
) {
    let a_s: St<TA, 64, BK> = alloc_shared();
    let b_s: St<TB, BN, BK> = alloc_shared();
    let (tn, tm) = (block_idx_x(), block_idx_y());
    let mut acc: Rt<f32, 16, BN> = zeros();
    for kt in range(0, ceil_div(a.cols(), BK)) {
        copy_block(a_s, a.tile(tm, kt));
        copy_block(b_s, bt.tile(tn, kt));
        barrier();
        acc = mma_abt_wg(acc, a_s, b_s);
        barrier();
    }
    store(c.tile(tm * 4 + warp_idx(), tn), acc);
}

fn fp8_wgmma_on(device: &Device) {
    let mut rng = Rng::fresh();
    for (m, n, k, b_dtype, bk) in [
        (70, 40, 100, F8E4M3, 64),
        (64, 32, 256, F8E5M2, 128),
        (130, 70, 33, F8E4M3, 128),
    ] {
        let what = format!(
            "{}, {m}x{n}x{k}, B {b_dtype}, BK {bk}, seed {}",
            device.name(),
            rng.seed
        );
        let a = rng.tensor(F8E4M3, &[m, k], -6.0, 6.0);
        let bt = rng.tensor(b_dtype, &[n, k], -6.0, 6.0);
        let mut c = HostTensor::full(F32, &[m, n], f64::NAN);
        let grid = [n.div_ceil(32) as u32, m.div_ceil(64) as u32, 1];
        match (b_dtype, bk) {
            (F8E4M3, 64) => {
                fp8_wg_abt::<f8e4m3, f8e4m3, 32, 64>::launch(device, grid, &a, &bt, &mut c)
            }
            (F8E4M3, _) => {
                fp8_wg_abt::<f8e4m3, f8e4m3, 32, 128>::launch(device, grid, &a, &bt, &mut c)
            }
            _ => fp8_wg_abt::<f8e4m3, f8e5m2, 32, 128>::launch(device, grid, &a, &bt, &mut c),
        }
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (av, bv, got) = (a.to_vec(), bt.to_vec(), c.to_vec());
        for i in 0..m {
            for j in 0..n {
                let terms = (0..k).map(|p| av[i * k + p] * bv[j * k + p]);
                let want: f64 = terms.clone().sum();
                let mag: f64 = terms.map(f64::abs).sum();
                // Products of fp8 values are exact in f32 (at most 8 significant bits); the f32
                // sums round at most once per product and per chunk, each by 2^-24 of a partial
                // sum bounded by Σ|a·b|.
                let tol = (k as f64 + 8.0) * 2f64.powi(-24) * mag;
                let g = got[i * n + j];
                assert!(
                    (g - want).abs() <= tol,
                    "C[{i}][{j}] {g} vs {want} (tol {tol:e}): {what}"
                );
            }
        }
    }
}

#[test]
fn fp8_warpgroup_mma_matches_f64_on_the_interpreter() {
    fp8_wgmma_on(&Device::Cpu);
}

#[test]
fn fp8_warpgroup_mma_matches_f64_on_the_sm_90a_emulator() {
    fp8_wgmma_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn fp8_warpgroup_mma_lowers_to_k32_wgmma_and_is_refused_elsewhere() {
    let module = fp8_wg_abt::<f8e4m3, f8e5m2, 32, 128>::module();
    let name = fp8_wg_abt::<f8e4m3, f8e5m2, 32, 128>::NAME;
    let c =
        tilekit::codegen::compile(module, name, Target::Sm90a).unwrap_or_else(|e| panic!("{e}"));
    // Four K-32 steps of one 128-wide K tile, no transposition immediates (fp8 is K-major).
    let instr = "wgmma.mma_async.sync.aligned.m64n32k32.f32.e4m3.e5m2";
    assert_eq!(c.ptx().matches(instr).count(), 4, "{instr} per K tile");
    c.sass().unwrap_or_else(|e| panic!("ptxas: {e}"));
    let e = tilekit::codegen::compile(module, name, Target::Sm80)
        .map(|_| ())
        .expect_err("sm_80");
    assert!(e.to_string().contains("sm_89"), "{e}");

    #[tilekit::kernel]
    fn fp8_warp_mma(a: Gl<f8e4m3, 2>, bt: Gl<f8e4m3, 2>, c: GlMut<f32, 2>) {
        let a_r: Rt<f8e4m3, 16, 32> = load(a.tile(0, 0));
        let b_r: Rt<f8e4m3, 16, 32> = load(bt.tile(0, 0));
        store(c.tile(0, 0), mma_abt(zeros(), a_r, b_r));
    }
    let e = tilekit::codegen::compile(fp8_warp_mma::module(), fp8_warp_mma::NAME, Target::Sm90a)
        .map(|_| ())
        .expect_err("no warp-scope fp8 mma");
    assert!(e.to_string().contains("wgmma only"), "{e}");
}

/// ptxas's registers and spills and the hot-loop figure of an sm_90a compile, printed (run with
/// `--nocapture` for the numbers); the kernel must not spill.
fn static_figures(module: &tilekit::ir::Module, name: &str) {
    use tilekit::codegen::{hot_loop, ptxas, sass};
    let c =
        tilekit::codegen::compile(module, name, Target::Sm90a).unwrap_or_else(|e| panic!("{e}"));
    let asm = ptxas::assemble(c.ptx(), Target::Sm90a).unwrap_or_else(|e| panic!("{e}"));
    let text = sass::disassemble(&asm.cubin).unwrap_or_else(|e| panic!("{e}"));
    let figure = hot_loop::sass_hot_loop(&text)
        .ok()
        .flatten()
        .and_then(|h| h.figure());
    let r = &asm.report;
    println!(
        "{name} sm_90a: {} registers, spills {} / {} bytes, hot-loop figure {figure:?}",
        r.registers, r.spill_store_bytes, r.spill_load_bytes
    );
    assert_eq!(r.spill_store_bytes + r.spill_load_bytes, 0, "{name} spills");
}

#[test]
fn fp8_kernels_do_not_spill_on_sm_90a() {
    use tilekit::kernels::moe_fp8::act_quant;
    static_figures(act_quant::<bf16, 4>::module(), act_quant::<bf16, 4>::NAME);
    static_figures(act_quant::<f32, 4>::module(), act_quant::<f32, 4>::NAME);
    static_figures(
        fp8_wg_abt::<f8e4m3, f8e4m3, 32, 128>::module(),
        fp8_wg_abt::<f8e4m3, f8e4m3, 32, 128>::NAME,
    );
}
