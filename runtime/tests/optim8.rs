//! 8-bit AdamW (`kernels::optim8`) and the stochastically rounded bf16 model copy
//! (`kernels::optim_family::adamw_mixed_sr`), on the interpreter and the sm_80 PTX emulator.
//!
//! - The dynamic maps against the properties their definition gives (counts per decade, equal
//!   spacing inside a decade, the sign symmetry) and bitsandbytes' documented end points.
//! - Ten consecutive 8-bit steps on parameters of odd sizes (one element, one block less one,
//!   one block plus one, several blocks with a partial last one) against the f64 reference of
//!   the same blockwise algorithm, step by step: each step starts both from the kernel's state,
//!   so a code that f32 rounding legitimately moved across a boundary does not snowball.
//! - The state's size: 2 bytes per parameter plus the absmax of each block.
//! - Stochastic rounding: the mean of the bf16 copy over many seeds converges to the f32 master
//!   weight at the rate of a sum of independent draws (1/√seeds), where rounding to nearest keeps
//!   its bias.

#![cfg(feature = "jit")]

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32, I8};
use tilekit::kernels::check::Rng;
use tilekit::kernels::optim::Hyper;
use tilekit::kernels::optim8::{dynamic_map, reference, Adam8bit, Scalars, BLOCK, BOUNDARY_SLACK};
use tilekit::kernels::optim_family::{adamw_mixed, adamw_mixed_sr, bf16_neighbours, CHUNK, WARPS};
use tilekit::{Device, ScalarArg};

fn emu() -> Device {
    Device::emulator("sm_80").expect("the sm_80 emulator")
}

#[test]
fn the_signed_dynamic_map_follows_its_definition() {
    let map = dynamic_map(true);
    assert!(map.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
    assert_eq!(map[127], 0.0, "0 is code 127: 127 negative values below it");
    assert_eq!(map[255], 1.0);
    // Without 0 and 1 the values mirror: 127 negatives, 127 positives.
    for k in 0..127 {
        assert_eq!(
            map[126 - k],
            -map[128 + k],
            "code {} mirrors code {}",
            126 - k,
            128 + k
        );
    }
    // Decade e (values in [10^(e−6)·0.1, 10^(e−6))) holds 2^e equally spaced midpoints.
    let mut next = 128;
    for e in 0..7i32 {
        let scale = 10f64.powi(e - 6);
        let k = 1usize << e;
        let step = 0.9 * scale / k as f64;
        for j in 0..k {
            let want = scale * 0.1 + step * (j as f64 + 0.5);
            let got = f64::from(map[next + j]);
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "decade {e}, value {j}: {got} vs {want}"
            );
        }
        next += k;
    }
    assert_eq!(next, 255);
    // bitsandbytes' end points: the smallest magnitude 0.55e-6, the largest below 1 0.99296875.
    assert!((f64::from(map[128]) - 5.5e-7).abs() < 1e-12);
    assert!((f64::from(map[254]) - 0.99296875).abs() < 1e-7);
    assert_eq!(map[0], -map[254]);
}

#[test]
fn the_unsigned_dynamic_map_follows_its_definition() {
    let map = dynamic_map(false);
    assert!(map.windows(2).all(|w| w[0] < w[1]), "sorted, distinct");
    assert_eq!(map[0], 0.0);
    assert_eq!(map[255], 1.0);
    let mut next = 1;
    for e in 0..7i32 {
        let scale = 10f64.powi(e - 6);
        let k = 2usize << e;
        let step = 0.9 * scale / k as f64;
        for j in 0..k {
            let want = scale * 0.1 + step * (j as f64 + 0.5);
            let got = f64::from(map[next + j]);
            assert!(
                (got - want).abs() <= 1e-6 * want,
                "decade {e}, value {j}: {got} vs {want}"
            );
        }
        next += k;
    }
    assert_eq!(next, 255);
    assert!((f64::from(map[1]) - 3.25e-7).abs() < 1e-12);
}

#[test]
fn the_state_is_two_bytes_per_parameter_plus_the_block_absmax() {
    for n in [1usize, 255, 256, 257, 4099, 1 << 20] {
        let s = Adam8bit::new(n);
        let bytes = |t: &HostTensor| t.len() * t.dtype().size_bytes() as usize;
        let held = bytes(&s.m_codes) + bytes(&s.v_codes) + bytes(&s.m_absmax) + bytes(&s.v_absmax);
        assert_eq!(s.m_codes.dtype(), I8);
        assert_eq!(held, 2 * n + 8 * n.div_ceil(256), "{n} parameters");
        assert_eq!(s.state_bytes(), held);
        if n >= 4096 {
            // f32 moments are 8 bytes per parameter: at least 74% less.
            assert!(held as f64 <= 0.26 * 8.0 * n as f64, "{n}: {held} bytes");
        }
    }
}

#[test]
fn a_state_for_another_length_is_an_error() {
    let mut s = Adam8bit::new(300);
    let mut p = HostTensor::zeros(F32, &[299]);
    let g = HostTensor::zeros(F32, &[299]);
    let h = hyper(1);
    let err = s
        .step(&Device::Cpu, &mut p, &g, &h)
        .expect_err("lengths differ");
    assert!(err.to_string().contains("300"), "{err}");
}

/// One block from zero state with gradients 1, −1e-8 and zeros: after one step m is 0.1 (the
/// block's absmax: code of 1.0), −1e-9 (normalized −1e-8, nearest code 0, but negative: the code
/// below) and exact zeros (the zero code).
fn negative_moments_keep_their_sign_on(device: &Device) {
    let n = 300;
    let mut gv = vec![0.0; n];
    (gv[0], gv[1]) = (1.0, -1e-8);
    let g = HostTensor::new(F32, &[n], &gv).expect("gradient");
    let mut p = HostTensor::full(F32, &[n], 0.5);
    let mut state = Adam8bit::new(n);
    state.step(device, &mut p, &g, &hyper(1)).expect("one step");
    let m = state.m_bytes();
    let map = dynamic_map(true);
    assert_eq!(
        map[usize::from(m[0])],
        1.0,
        "{}: the block's largest m",
        device.name()
    );
    assert_eq!(m[1], 126, "{}: a tiny negative m", device.name());
    assert!(map[126] < 0.0 && map[127] == 0.0);
    assert!(
        m[2..].iter().all(|&c| c == 127),
        "{}: zero moments: {:?}",
        device.name(),
        &m[..8]
    );
    let v = state.v_bytes();
    assert_eq!(v[0], 255);
    assert!(
        v[1..].iter().all(|&c| c == 0),
        "{}: v codes {:?}",
        device.name(),
        &v[..8]
    );
    // The second block (elements 256…299) is all zero: absmax 0, zero codes.
    assert_eq!(state.m_absmax.to_vec()[1], 0.0);
}

#[test]
fn negative_moments_keep_their_sign() {
    negative_moments_keep_their_sign_on(&Device::Cpu);
    negative_moments_keep_their_sign_on(&emu());
}

fn hyper(step: u32) -> Hyper {
    Hyper {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step,
    }
}

/// Checks one step of `n` parameters against the f64 reference started from the same state:
/// from weights `p_old`, gradients `gv` and state `before` the kernel left weights `pv` and state
/// `after`. Returns the codes that f32 rounding moved to a neighbour across a boundary (each
/// within [`BOUNDARY_SLACK`] of it in f64) and the codes compared.
fn check_step(
    at: &str,
    h: &Hyper,
    (p_old, gv): (&[f64], &[f64]),
    before: &Adam8bit,
    pv: &[f64],
    after: &Adam8bit,
) -> (usize, usize) {
    let n = p_old.len();
    let (m_map, v_map) = (before.m_map.to_vec(), before.v_map.to_vec());
    let (m_old_codes, m_old_absmax) = (before.m_bytes(), before.m_absmax.to_vec());
    let (v_old_codes, v_old_absmax) = (before.v_bytes(), before.v_absmax.to_vec());
    let want = reference::step(
        h,
        p_old,
        gv,
        &m_old_codes,
        &v_old_codes,
        &m_old_absmax,
        &v_old_absmax,
        &m_map,
        &v_map,
    );
    let (b1, b2) = (f64::from(h.beta1), f64::from(h.beta2));
    // m = β1·m_old + (1 − β1)·g in f32 may cancel: its error is a few ulps of the larger term,
    // not of m. Per block, the largest term bounds it.
    let m_terms: Vec<f64> = (0..n)
        .map(|i| {
            let m_old = m_map[usize::from(m_old_codes[i])] * m_old_absmax[i / BLOCK];
            b1 * m_old.abs() + (1.0 - b1) * gv[i].abs()
        })
        .collect();
    let got_am = after.m_absmax.to_vec();
    for (b, terms) in m_terms.chunks(BLOCK).enumerate() {
        let big = terms.iter().fold(0.0f64, |a, &x| a.max(x));
        assert!(
            (got_am[b] - want.m_absmax[b]).abs() <= 1e-6 * want.m_absmax[b] + 4e-7 * big,
            "{at}: absmax of m [{b}] = {}, expected {}",
            got_am[b],
            want.m_absmax[b]
        );
    }
    let got_av = after.v_absmax.to_vec();
    for (b, (a, w)) in got_av.iter().zip(&want.v_absmax).enumerate() {
        assert!(
            (a - w).abs() <= 1e-6 * w,
            "{at}: absmax of v [{b}] = {a}, expected {w}"
        );
    }
    // Weights: a few f32 roundings of the old weight and of the update, plus the error of m (a
    // few ulps of its larger term, above) carried through the update's factor
    // step_size / (√v + ε̂): where m cancels, that error is large relative to the update.
    let k = Scalars::of(h);
    for i in 0..n {
        let update = (want.p[i] - p_old[i]).abs();
        let v_old = v_map[usize::from(v_old_codes[i])] * v_old_absmax[i / BLOCK];
        let v = b2 * v_old + (1.0 - b2) * gv[i] * gv[i];
        let through_m =
            f64::from(k.step_size).abs() * 4e-7 * m_terms[i] / (v.sqrt() + f64::from(k.eps_hat));
        assert!(
            (pv[i] - want.p[i]).abs() <= 4e-7 * (p_old[i].abs() + update) + through_m + 1e-12,
            "{at}: p[{i}] = {}, expected {} (from {})",
            pv[i],
            want.p[i],
            p_old[i]
        );
    }
    let (mut moved, mut compared) = (0, 0);
    for (name, got, want, margin) in [
        ("m", after.m_bytes(), &want.m_codes, &want.m_margin),
        ("v", after.v_bytes(), &want.v_codes, &want.v_margin),
    ] {
        for i in 0..n {
            compared += 1;
            if got[i] == want[i] {
                continue;
            }
            assert!(
                margin[i] <= BOUNDARY_SLACK && got[i].abs_diff(want[i]) == 1,
                "{at}: code of {name}[{i}] = {}, expected {} ({:.2e} from a boundary)",
                got[i],
                want[i],
                margin[i]
            );
            moved += 1;
        }
    }
    (moved, compared)
}

/// A gradient of `n` elements (f32 or bf16) whose scale varies over steps and blocks, so that
/// the absmax of a block and its moments' spread change.
fn varying_gradient(rng: &mut Rng, dtype: tilekit::ir::ScalarType, n: usize) -> HostTensor {
    let scale = 10f64.powf(rng.uniform(-3.0, 0.5));
    let mut gv = rng.tensor(F32, &[n], -scale, scale).to_vec();
    for (b, chunk) in gv.chunks_mut(BLOCK).enumerate() {
        let s = 10f64.powi(b as i32 % 3 - 1);
        chunk.iter_mut().for_each(|x| *x *= s);
    }
    HostTensor::new(dtype, &[n], &gv).expect("gradient")
}

/// Ten steps per size from zero state; every step compared with the reference started from the
/// kernel's previous state ([`check_step`]). Returns the codes moved across a boundary and the
/// codes compared.
fn ten_steps_on(device: &Device) -> (usize, usize) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    let (mut moved, mut compared) = (0, 0);
    for n in [1usize, 255, 257, 1000, 4096 + 3] {
        let mut state = Adam8bit::new(n);
        let mut p = rng.tensor(F32, &[n], -1.0, 1.0);
        for t in 1..=10u32 {
            let h = hyper(t);
            let g = varying_gradient(&mut rng, F32, n);
            let (p_old, before) = (p.to_vec(), state.clone());
            state
                .step(device, &mut p, &g, &h)
                .unwrap_or_else(|e| panic!("{what}: {n} parameters, step {t}: {e}"));
            let at = format!("{what}: {n} parameters, step {t}");
            let (mv, cmp) =
                check_step(&at, &h, (&p_old, &g.to_vec()), &before, &p.to_vec(), &state);
            moved += mv;
            compared += cmp;
        }
        // The weights moved: ten steps of about lr each.
        let start_moved = state.m_bytes().iter().filter(|&&c| c != 127).count();
        assert!(
            start_moved > 0,
            "{what}: {n} parameters: m is still all zero"
        );
    }
    (moved, compared)
}

#[test]
fn ten_steps_match_the_f64_blockwise_reference_on_the_interpreter() {
    let (moved, compared) = ten_steps_on(&Device::Cpu);
    eprintln!("interpreter: {moved} of {compared} codes at a boundary took the neighbour");
    assert!(
        moved * 1000 <= compared,
        "{moved} of {compared} codes differ"
    );
}

#[test]
fn ten_steps_match_the_f64_blockwise_reference_on_the_sm_80_emulator() {
    let (moved, compared) = ten_steps_on(&emu());
    eprintln!("emu:sm_80: {moved} of {compared} codes at a boundary took the neighbour");
    assert!(
        moved * 1000 <= compared,
        "{moved} of {compared} codes differ"
    );
}

/// Master weights at chosen places between two bf16 values (fractions 1/8 … 7/8 of the gap, and
/// exact bf16 values), the copy drawn with `seeds` keys; the per-element mean over seeds minus
/// the master weight, in units of the bf16 gap. `sr = false` runs the round-to-nearest kernel.
fn copy_bias(device: &Device, rng: &mut Rng, seeds: usize, sr: bool) -> Vec<(f64, f64)> {
    let n = 1000;
    let mut master = Vec::new();
    for i in 0..n {
        let base = rng.uniform(-4.0, 4.0) as f32;
        let (down, up, _) = bf16_neighbours(base);
        let frac = (i % 9) as f64 / 8.0;
        let x = f64::from(down) + frac.min(0.999) * (f64::from(up) - f64::from(down));
        master.push(if i % 9 == 0 { f64::from(down) } else { x });
    }
    let p0 = HostTensor::new(F32, &[n], &master).expect("master");
    let master = p0.to_vec();
    let g = rng.tensor(BF16, &[n], -1.0, 1.0);
    let m0 = rng.tensor(F32, &[n], -0.1, 0.1);
    let v0 = rng.tensor(F32, &[n], 0.01, 0.02);
    let s = |x: f32| ScalarArg::from(x);
    let mut sums = vec![0.0; n];
    for _ in 0..seeds {
        // lr = 0: the master weights stay as chosen, so only the rounding is measured.
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        let mut model = HostTensor::full(BF16, &[n], f64::NAN);
        let common = [s(0.0), s(0.9), s(0.999), s(1e-8), s(0.01), s(0.5), s(0.5)];
        let [lr, b1, b2, eps, wd, bc1, bc2] = common;
        if sr {
            let key = [
                rng.uniform(0.0, 4.29e9) as u32,
                rng.uniform(0.0, 4.29e9) as u32,
            ];
            adamw_mixed_sr::<CHUNK, WARPS>::launch_auto(
                device,
                &mut p,
                &g,
                &mut m,
                &mut v,
                &mut model,
                lr,
                b1,
                b2,
                eps,
                wd,
                bc1,
                bc2,
                key[0].into(),
                key[1].into(),
                7u32.into(),
            )
        } else {
            adamw_mixed::<CHUNK, WARPS>::launch_auto(
                device, &mut p, &g, &mut m, &mut v, &mut model, lr, b1, b2, eps, wd, bc1, bc2,
            )
        }
        .unwrap_or_else(|e| panic!("{}: {e}", device.name()));
        assert_eq!(p.to_vec(), master, "lr = 0 leaves the master weights");
        for (acc, x) in sums.iter_mut().zip(model.to_vec()) {
            *acc += x;
        }
    }
    (0..n)
        .map(|i| {
            let (down, up, frac) = bf16_neighbours(master[i] as f32);
            let gap = f64::from(up) - f64::from(down);
            let bias = (sums[i] / seeds as f64 - master[i]) / gap;
            (bias * master[i].signum(), frac)
        })
        .collect()
}

fn rms(v: &[(f64, f64)]) -> f64 {
    (v.iter().map(|(b, _)| b * b).sum::<f64>() / v.len() as f64).sqrt()
}

/// The RMS of a mean of `seeds` Bernoulli(f) draws around f, over the elements' fractions.
fn expected_rms(v: &[(f64, f64)], seeds: usize) -> f64 {
    (v.iter().map(|(_, f)| f * (1.0 - f)).sum::<f64>() / (v.len() * seeds) as f64).sqrt()
}

fn stochastic_rounding_converges_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    let mut last = f64::INFINITY;
    for seeds in [4usize, 16, 64] {
        let bias = copy_bias(device, &mut rng, seeds, true);
        let (got, want) = (rms(&bias), expected_rms(&bias, seeds));
        eprintln!("{what}: {seeds} seeds: RMS bias {got:.4} gaps (independent draws: {want:.4})");
        // A sum of 1000 elements' squares: within ±30% of its expectation, far past chance.
        assert!(
            got >= 0.7 * want && got <= 1.3 * want,
            "{what}: {seeds} seeds: RMS of the mean's error {got:.4} gaps, independent unbiased \
             draws give {want:.4}"
        );
        assert!(
            got < last,
            "{what}: the error grew from {last} to {got} with {seeds} seeds"
        );
        last = got;
        // No systematic bias: the signed mean over all elements is within 5σ of 0.
        let mean = bias.iter().map(|(b, _)| b).sum::<f64>() / bias.len() as f64;
        let sigma = want / (bias.len() as f64).sqrt();
        assert!(
            mean.abs() <= 5.0 * sigma,
            "{what}: {seeds} seeds: mean bias {mean:.4} gaps"
        );
        // Exact bf16 values never move.
        for (i, (b, f)) in bias.iter().enumerate() {
            if *f == 0.0 {
                assert_eq!(*b, 0.0, "{what}: element {i} is a bf16 value and moved");
            }
        }
    }
    // Round to nearest keeps a bias of up to half a gap however many runs are averaged.
    let rne = rms(&copy_bias(device, &mut rng, 1, false));
    assert!(
        rne > 4.0 * last,
        "{what}: round to nearest {rne:.4} gaps, stochastic {last:.4}"
    );
}

#[test]
fn stochastic_rounding_converges_to_the_master_weight_on_the_interpreter() {
    stochastic_rounding_converges_on(&Device::Cpu);
}

#[test]
fn stochastic_rounding_converges_to_the_master_weight_on_the_sm_80_emulator() {
    stochastic_rounding_converges_on(&emu());
}

/// The optimizer's state (device tensors, `optim8::DeviceState`) steps exactly as the host-held
/// state does: three steps of `optim::Adam8bit` on one tensor (2 × 300, two blocks and a tail)
/// leave the same codes, absmax and weights, bit for bit, as three steps of `optim8::Adam8bit`
/// on host tensors launched on the same device.
#[test]
fn the_optimizers_device_state_steps_as_the_host_state_does() {
    use tilekit::kernels::optim::{Adam8bit as Optimizer, Adam8bitConfig};
    use tilekit::Tensor;
    let device = Device::from_name("emu:sm_80").expect("emulator");
    let mut rng = Rng::fresh();
    let shape = [2usize, 300];
    let n = 600;
    let p0 = rng.tensor(F32, &shape, -1.0, 1.0);
    let params = vec![Tensor::from_host(&p0, &device).expect("upload")];
    let mut host_p = HostTensor::new(F32, &[n], &p0.to_vec()).expect("flat");
    let cfg = Adam8bitConfig {
        lr: 1e-2,
        weight_decay: 0.01,
        ..Adam8bitConfig::default()
    };
    let mut opt = Optimizer::new(cfg).expect("options");
    let mut host_state = Adam8bit::new(n);
    for t in 1..=3u32 {
        let g = rng.tensor(F32, &shape, -1.0, 1.0);
        let grads = vec![Tensor::from_host(&g, &device).expect("upload")];
        opt.step(&device, &params, &grads)
            .expect("device-state step");
        let h = Hyper {
            lr: cfg.lr,
            beta1: cfg.betas.0,
            beta2: cfg.betas.1,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            step: t,
        };
        let flat_g = HostTensor::new(F32, &[n], &g.to_vec()).expect("flat");
        host_state
            .step(&device, &mut host_p, &flat_g, &h)
            .expect("host-state step");
    }
    let state = &opt.states()[0];
    assert_eq!(state.state_bytes(), 2 * n + 8 * n.div_ceil(BLOCK));
    let back = state.to_host().expect("read back");
    assert_eq!(back.m_bytes(), host_state.m_bytes(), "m codes");
    assert_eq!(back.v_bytes(), host_state.v_bytes(), "v codes");
    assert_eq!(
        back.m_absmax.to_vec(),
        host_state.m_absmax.to_vec(),
        "m absmax"
    );
    assert_eq!(
        back.v_absmax.to_vec(),
        host_state.v_absmax.to_vec(),
        "v absmax"
    );
    let got = params[0].to_f64_vec().expect("weights");
    assert_eq!(got, host_p.to_vec(), "weights");
    assert!(
        host_state.m_bytes().iter().any(|&c| c != 127),
        "the moments moved"
    );
}

/// Parameter shapes of the multi-tensor tests: one element, an odd size inside a block, an empty
/// tensor, a block plus one, a matrix of two blocks and a tail, and one whose last thread block
/// has spare warps.
const LIST: [&[usize]; 6] = [&[1], &[17], &[0], &[257], &[2, 300], &[1000]];

fn adam8bit_config() -> tilekit::kernels::optim::Adam8bitConfig {
    tilekit::kernels::optim::Adam8bitConfig {
        lr: 1e-2,
        weight_decay: 0.01,
        ..Default::default()
    }
}

/// The optimizer's one launch over a list (`optim8::adam8bit_multi`) steps every tensor exactly
/// as the per-tensor launch (`DeviceState::step`) does: four steps over [`LIST`] on emu:sm_80
/// leave the same weights, codes and absmax, bit for bit.
#[test]
fn the_multi_tensor_launch_steps_each_tensor_as_the_per_tensor_launch_does() {
    use tilekit::kernels::optim::Adam8bit as Optimizer;
    use tilekit::kernels::optim8::{device_maps, DeviceState};
    use tilekit::Tensor;
    let device = emu();
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    let cfg = adam8bit_config();
    let p0: Vec<HostTensor> = LIST.iter().map(|s| rng.tensor(F32, s, -1.0, 1.0)).collect();
    let upload = |ts: &[HostTensor]| -> Vec<Tensor> {
        ts.iter()
            .map(|t| Tensor::from_host(t, &device).expect("upload"))
            .collect()
    };
    // The per-tensor launch takes flat tensors.
    let flat = |ts: &[HostTensor]| -> Vec<HostTensor> {
        ts.iter()
            .map(|t| HostTensor::new(F32, &[t.len()], &t.to_vec()).expect("flat"))
            .collect()
    };
    let (multi_p, mut single_p) = (upload(&p0), upload(&flat(&p0)));
    let mut opt = Optimizer::new(cfg).expect("options");
    let maps = device_maps(&device).expect("maps");
    let mut singles: Vec<DeviceState> = p0
        .iter()
        .map(|p| DeviceState::new(p.len(), &device).expect("state"))
        .collect();
    for t in 1..=4u32 {
        let g: Vec<HostTensor> = p0
            .iter()
            .map(|p| varying_gradient(&mut rng, F32, p.len()))
            .collect();
        let g: Vec<HostTensor> = g
            .iter()
            .zip(&p0)
            .map(|(g, p)| HostTensor::new(F32, p.shape(), &g.to_vec()).expect("shaped"))
            .collect();
        opt.step(&device, &multi_p, &upload(&g))
            .expect("multi-tensor step");
        for ((p, g), state) in single_p.iter_mut().zip(upload(&flat(&g))).zip(&mut singles) {
            if p.is_empty() {
                continue;
            }
            state
                .step(&device, p, &g, &maps, &hyper(t))
                .expect("per-tensor step");
        }
    }
    assert_eq!(opt.states().len(), LIST.len());
    for (e, shape) in LIST.iter().enumerate() {
        let at = format!("seed {seed}, entry {e} {shape:?}");
        let (a, b) = (
            opt.states()[e].to_host().expect("read back"),
            singles[e].to_host().expect("read back"),
        );
        assert_eq!(a.m_bytes(), b.m_bytes(), "{at}: m codes");
        assert_eq!(a.v_bytes(), b.v_bytes(), "{at}: v codes");
        let bits = |t: &HostTensor| t.to_vec().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.m_absmax), bits(&b.m_absmax), "{at}: m absmax");
        assert_eq!(bits(&a.v_absmax), bits(&b.v_absmax), "{at}: v absmax");
        let (x, y) = (
            multi_p[e].to_f64_vec().expect("weights"),
            single_p[e].to_f64_vec().expect("weights"),
        );
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{at}: weights"
        );
        if !x.is_empty() {
            assert_ne!(x, p0[e].to_vec(), "{at}: the weights moved");
        }
    }
}

/// Ten mixed-precision steps of `optim::Adam8bit::step_with_model_copy` over [`LIST`] (f32
/// master weights, bf16 gradients, one launch each) against the f64 reference started from the
/// kernel's previous state, and the bf16 model copy equal to the master weights rounded to
/// nearest even.
fn model_copy_steps_on(device: &Device) -> (usize, usize) {
    use tilekit::kernels::optim::Adam8bit as Optimizer;
    use tilekit::Tensor;
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    let cfg = adam8bit_config();
    let params: Vec<Tensor> = LIST
        .iter()
        .map(|s| Tensor::from_host(&rng.tensor(F32, s, -1.0, 1.0), device).expect("upload"))
        .collect();
    let model: Vec<Tensor> = LIST
        .iter()
        .map(|s| Tensor::full(BF16, s, f64::NAN, device).expect("model"))
        .collect();
    let mut opt = Optimizer::new(cfg).expect("options");
    let (mut moved, mut compared) = (0, 0);
    for t in 1..=10u32 {
        let before: Vec<Adam8bit> = if t == 1 {
            LIST.iter()
                .map(|s| Adam8bit::new(s.iter().product()))
                .collect()
        } else {
            opt.states()
                .iter()
                .map(|s| s.to_host().expect("read back"))
                .collect()
        };
        let p_old: Vec<Vec<f64>> = params.iter().map(|p| p.to_f64_vec().expect("p")).collect();
        let g: Vec<HostTensor> = LIST
            .iter()
            .map(|s| {
                let g = varying_gradient(&mut rng, BF16, s.iter().product());
                HostTensor::new(BF16, s, &g.to_vec()).expect("shaped")
            })
            .collect();
        let grads: Vec<Tensor> = g
            .iter()
            .map(|g| Tensor::from_host(g, device).expect("upload"))
            .collect();
        opt.step_with_model_copy(device, &params, &grads, &model)
            .unwrap_or_else(|e| panic!("{what}: step {t}: {e}"));
        let h = hyper(t);
        for (e, shape) in LIST.iter().enumerate() {
            let at = format!("{what}: entry {e} {shape:?}, step {t}");
            let after = opt.states()[e].to_host().expect("read back");
            let pv = params[e].to_f64_vec().expect("p");
            let (mv, cmp) = check_step(
                &at,
                &h,
                (&p_old[e], &g[e].to_vec()),
                &before[e],
                &pv,
                &after,
            );
            moved += mv;
            compared += cmp;
            let rounded = HostTensor::new(BF16, &[pv.len()], &pv)
                .expect("bf16")
                .to_vec();
            let copy = model[e].to_f64_vec().expect("model");
            assert!(
                copy.iter()
                    .zip(&rounded)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{at}: the model copy is not bf16 of the master weights"
            );
        }
    }
    (moved, compared)
}

#[test]
fn model_copy_steps_match_the_f64_blockwise_reference_on_the_interpreter() {
    let (moved, compared) = model_copy_steps_on(&Device::Cpu);
    assert!(
        moved * 1000 <= compared,
        "{moved} of {compared} codes differ"
    );
}

#[test]
fn model_copy_steps_match_the_f64_blockwise_reference_on_the_sm_80_emulator() {
    let (moved, compared) = model_copy_steps_on(&emu());
    assert!(
        moved * 1000 <= compared,
        "{moved} of {compared} codes differ"
    );
}

/// A list that does not match the state, or grads of the wrong dtype, is refused by entry.
#[test]
fn the_model_copy_step_refuses_mismatched_lists() {
    use tilekit::kernels::optim::Adam8bit as Optimizer;
    use tilekit::Tensor;
    let device = Device::Cpu;
    let p = vec![Tensor::zeros(F32, &[3], &device).expect("p")];
    let g32 = vec![Tensor::zeros(F32, &[3], &device).expect("g")];
    let g16 = vec![Tensor::zeros(BF16, &[3], &device).expect("g")];
    let short = vec![Tensor::zeros(BF16, &[2], &device).expect("model")];
    let mut opt = Optimizer::new(adam8bit_config()).expect("options");
    let err = opt
        .step_with_model_copy(&device, &p, &g32, &g16)
        .expect_err("f32 gradients");
    assert!(err.to_string().contains("grads entry 0"), "{err}");
    let err = opt
        .step_with_model_copy(&device, &p, &g16, &short)
        .expect_err("a model copy of another shape");
    assert!(err.to_string().contains("model copy"), "{err}");
    assert_eq!(opt.steps(), 0);
}
