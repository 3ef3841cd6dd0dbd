//! The grouped GEMMs of `tilekit::kernels::moe_gemm` (their registered self-tests) and the
//! whole mixture-of-experts layer (`moe_gemm::forward`: route → permute → gather → gate/up +
//! SwiGLU → down → combine) on the interpreter and the sm_80 and sm_90a PTX emulators (sm_90a
//! runs the persistent wgmma GEMMs of `moe_gemm_wg`), against an f64 reference of the layer
//! written here from its definition. Mixtral-like (E 8, top-2 softmax), Qwen3-like (E 16,
//! top-8 softmax) and DeepSeek-like (E 32 and 64, grouped sigmoid top-4 / top-8) shapes with
//! 1, 17 and 130 tokens, hidden and expert widths that are not multiples of 64, an expert
//! every token chooses and one none does, the contiguous and the masked (fixed capacity)
//! layouts.
//!
//! Tolerance, from the arithmetic rather than from runs: the kernel rounds `h = silu(g)·u` to
//! bf16 once, which the reference does too; where the f32 `h` may sit on the other side of a
//! bf16 rounding midpoint (f32 accumulation over H terms, the approximate sigmoid), the element
//! may round to the neighbour instead, so its bf16 spacing enters the bound. The down
//! projection and the combine accumulate in f32 (γ_n = n·2⁻²⁴, doubled for any summation
//! order), and the f32 gates are within 10⁻⁵ relative of the f64 ones.

#![cfg(feature = "jit")]

use std::cmp::Ordering;

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::moe_gemm::{self as mg, ExpertWeights, Router};
use tilekit::kernels::moe_routing::{GroupedRouting, Layout};
use tilekit::{Device, Tensor};

fn devices() -> [Device; 2] {
    [Device::Cpu, Device::emulator("sm_80").unwrap()]
}

fn selftest_of(name: &str) -> tilekit::registry::SelfTest {
    tilekit::registry::kernels()
        .into_iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("{name} is registered"))
        .selftest
        .unwrap_or_else(|| panic!("{name} has a self-test"))
}

#[test]
fn grouped_gemm_self_tests_pass_on_the_interpreter_and_the_emulator() {
    for name in ["moe_gemm", "moe_gemm_swiglu"] {
        let test = selftest_of(name);
        for device in devices() {
            let out = test(&device).unwrap_or_else(|e| panic!("{name} on {}: {e}", device.name()));
            println!("{name} on {}: {out}", device.name());
        }
    }
}

/// Indices `0..n` by descending key, equal keys by ascending index.
fn ranked(keys: &[f64]) -> Vec<usize> {
    let mut ix: Vec<usize> = (0..keys.len()).collect();
    ix.sort_by(|&a, &b| {
        keys[b]
            .partial_cmp(&keys[a])
            .unwrap_or(Ordering::Equal)
            .then(a.cmp(&b))
    });
    ix
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[derive(Clone, Copy, Debug)]
enum Routing {
    Softmax(usize),
    Grouped(GroupedRouting),
}

impl Routing {
    fn k(self) -> usize {
        match self {
            Routing::Softmax(k) => k,
            Routing::Grouped(c) => c.top_k,
        }
    }
}

/// The experts and gates of one token, and the smallest gap between two scores whose order
/// decides which experts are chosen (where the kernel's f32 scores could order them otherwise).
fn route(row: &[f64], bias: &[f64], routing: Routing) -> (Vec<usize>, Vec<f64>, f64) {
    match routing {
        Routing::Softmax(k) => {
            // The kernel ranks the same f32 logits: no gap can flip.
            let ids: Vec<usize> = ranked(row).into_iter().take(k).collect();
            let m = row[ids[0]];
            let sum: f64 = ids.iter().map(|&i| (row[i] - m).exp()).sum();
            let gates = ids.iter().map(|&i| (row[i] - m).exp() / sum).collect();
            (ids, gates, f64::INFINITY)
        }
        Routing::Grouped(cfg) => {
            let e = row.len();
            let width = e / cfg.groups;
            let s: Vec<f64> = row.iter().map(|&x| sigmoid(x)).collect();
            let b: Vec<f64> = s.iter().zip(bias).map(|(s, b)| s + b).collect();
            let group_score: Vec<f64> = (0..cfg.groups)
                .map(|g| {
                    let members = &b[g * width..(g + 1) * width];
                    let top = ranked(members);
                    members[top[0]] + members[top[1]]
                })
                .collect();
            let groups = ranked(&group_score);
            let kept = &groups[..cfg.topk_groups];
            let mut gap = f64::INFINITY;
            if cfg.topk_groups < cfg.groups {
                gap =
                    group_score[groups[cfg.topk_groups - 1]] - group_score[groups[cfg.topk_groups]];
            }
            let masked: Vec<f64> = (0..e)
                .map(|i| {
                    if kept.contains(&(i / width)) {
                        b[i]
                    } else {
                        f64::NEG_INFINITY
                    }
                })
                .collect();
            let order = ranked(&masked);
            if cfg.top_k < e {
                gap = gap.min(masked[order[cfg.top_k - 1]] - masked[order[cfg.top_k]]);
            }
            let ids: Vec<usize> = order[..cfg.top_k].to_vec();
            let sum: f64 = ids.iter().map(|&i| s[i]).sum();
            let gates = ids
                .iter()
                .map(|&i| s[i] / sum * f64::from(cfg.scale))
                .collect();
            (ids, gates, gap)
        }
    }
}

fn bf16_round(x: f64) -> f64 {
    half::bf16::from_f64(x).to_f64()
}

/// The distance between bf16 neighbours around `x`.
fn bf16_spacing(x: f64) -> f64 {
    let b = half::bf16::from_f64(x.abs());
    let up = half::bf16::from_bits(b.to_bits() + 1).to_f64();
    (up - b.to_f64()).abs()
}

struct Problem {
    t: usize,
    e: usize,
    h: usize,
    f: usize,
    x: Vec<f64>,
    logits: Vec<f64>,
    bias: Vec<f64>,
    wg: Vec<f64>,
    wu: Vec<f64>,
    wd: Vec<f64>,
}

/// The layer in f64 (each expert's `h` rounded to bf16, as the kernel stores it) and a bound
/// on the kernel's error for each output element (see the module documentation); `None` when
/// a routing decision sits within f32 rounding of a tie (the caller draws again).
fn reference(p: &Problem, routing: Routing, layout: Layout) -> Option<(Vec<f64>, Vec<f64>)> {
    let (t, e, h, f) = (p.t, p.e, p.h, p.f);
    let k = routing.k();
    let mut chosen = Vec::with_capacity(t);
    for tok in 0..t {
        let (ids, gates, gap) = route(&p.logits[tok * e..(tok + 1) * e], &p.bias, routing);
        if gap < 1e-5 {
            return None;
        }
        chosen.push((ids, gates));
    }
    // Masked layout: an expert keeps its first `capacity` tokens in token order.
    let mut kept = vec![vec![true; k]; t];
    if let Layout::Masked { capacity } = layout {
        let mut seen = vec![0usize; e];
        for (tok, (ids, _)) in chosen.iter().enumerate() {
            for (c, &ex) in ids.iter().enumerate() {
                kept[tok][c] = seen[ex] < capacity;
                seen[ex] += 1;
            }
        }
    }
    let gamma = |n: usize| 2.0 * (n + 16) as f64 * 2f64.powi(-24);
    let mut y = vec![0.0; t * h];
    let mut tol = vec![0.0; t * h];
    for tok in 0..t {
        let xr = &p.x[tok * h..(tok + 1) * h];
        let (ids, gates) = &chosen[tok];
        for c in 0..k {
            if !kept[tok][c] {
                continue;
            }
            let (ex, g) = (ids[c], gates[c]);
            let mut hb = vec![0.0; f];
            let mut flip = vec![0.0; f];
            for j in 0..f {
                let wgr = &p.wg[(ex * f + j) * h..(ex * f + j + 1) * h];
                let wur = &p.wu[(ex * f + j) * h..(ex * f + j + 1) * h];
                let gate: f64 = xr.iter().zip(wgr).map(|(a, b)| a * b).sum();
                let up: f64 = xr.iter().zip(wur).map(|(a, b)| a * b).sum();
                let sg: f64 = xr.iter().zip(wgr).map(|(a, b)| (a * b).abs()).sum();
                let su: f64 = xr.iter().zip(wur).map(|(a, b)| (a * b).abs()).sum();
                let silu = gate * sigmoid(gate);
                let hv = silu * up;
                // The f32 value's distance from `hv`: the gate and up sums, silu' ≤ 1.1,
                // the approximate sigmoid, the product's rounding.
                let eps = up.abs() * (1.1 * gamma(h) * sg + 2f64.powi(-20) * silu.abs())
                    + silu.abs() * gamma(h) * su
                    + 2f64.powi(-22) * hv.abs();
                hb[j] = bf16_round(hv);
                let spacing = bf16_spacing(hv);
                if (hv - hb[j]).abs() >= spacing / 2.0 - eps {
                    flip[j] = 2.0 * spacing;
                }
            }
            for d in 0..h {
                let wdr = &p.wd[(ex * h + d) * f..(ex * h + d + 1) * f];
                let yc: f64 = wdr.iter().zip(&hb).map(|(a, b)| a * b).sum();
                let abs: f64 = wdr.iter().zip(&hb).map(|(a, b)| (a * b).abs()).sum();
                let flips: f64 = wdr.iter().zip(&flip).map(|(a, b)| (a * b).abs()).sum();
                y[tok * h + d] += g * yc;
                tol[tok * h + d] +=
                    g * (flips + gamma(f) * abs) + (1e-5 + gamma(k)) * (g * yc).abs();
            }
        }
    }
    for v in &mut tol {
        *v += 1e-30;
    }
    Some((y, tol))
}

struct Case {
    what: &'static str,
    e: usize,
    h: usize,
    f: usize,
    routing: Routing,
    layout: Layout,
    /// Make every token choose expert `hot` and none choose `cold`.
    extremes: Option<(usize, usize)>,
}

const MIXTRAL: Routing = Routing::Softmax(2);
const DEEPSEEK_K8: Routing = Routing::Grouped(GroupedRouting {
    top_k: 8,
    groups: 8,
    topk_groups: 4,
    scale: 2.5,
});
const DEEPSEEK_K4: Routing = Routing::Grouped(GroupedRouting {
    top_k: 4,
    groups: 8,
    topk_groups: 2,
    scale: 2.5,
});

fn draw(rng: &mut Rng, c: &Case, t: usize) -> Problem {
    let (e, h, f) = (c.e, c.h, c.f);
    let bf = |rng: &mut Rng, n: usize, s: f64| -> Vec<f64> {
        (0..n).map(|_| bf16_round(rng.uniform(-s, s))).collect()
    };
    let x = bf(rng, t * h, 1.0);
    let mut logits: Vec<f64> = (0..t * e)
        .map(|_| f64::from(rng.uniform(-3.0, 3.0) as f32))
        .collect();
    let mut bias: Vec<f64> = (0..e)
        .map(|_| f64::from(rng.uniform(-0.1, 0.1) as f32))
        .collect();
    if let Some((hot, cold)) = c.extremes {
        for r in 0..t {
            logits[r * e + hot] = 30.0;
            logits[r * e + cold] = -30.0;
        }
        bias[hot] = 1.0;
        bias[cold] = -1.0;
    }
    // Weights scaled so that h and y stay of order one.
    let wg = bf(rng, e * f * h, 2.0 / (h as f64).sqrt());
    let wu = bf(rng, e * f * h, 2.0 / (h as f64).sqrt());
    let wd = bf(rng, e * h * f, 2.0 / (f as f64).sqrt());
    Problem {
        t,
        e,
        h,
        f,
        x,
        logits,
        bias,
        wg,
        wu,
        wd,
    }
}

fn tensor(device: &Device, dtype: tilekit::ir::ScalarType, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_host(&HostTensor::new(dtype, shape, v).unwrap(), device).unwrap()
}

fn check_layer(device: &Device, c: &Case, t: usize, rng: &mut Rng) {
    let seed = rng.seed;
    let (p, (want, tol)) = loop {
        let p = draw(rng, c, t);
        if let Some(r) = reference(&p, c.routing, c.layout) {
            break (p, r);
        }
    };
    let (e, h, f) = (p.e, p.h, p.f);
    let x = tensor(device, BF16, &[t, h], &p.x);
    let logits = tensor(device, F32, &[t, e], &p.logits);
    let bias = tensor(device, F32, &[e], &p.bias);
    let wg = tensor(device, BF16, &[e, f, h], &p.wg);
    let wu = tensor(device, BF16, &[e, f, h], &p.wu);
    let wd = tensor(device, BF16, &[e, h, f], &p.wd);
    let router = match c.routing {
        Routing::Softmax(top_k) => Router::Softmax { top_k },
        Routing::Grouped(cfg) => Router::SigmoidGrouped { cfg, bias: &bias },
    };
    let weights = ExpertWeights {
        gate: &wg,
        up: &wu,
        down: &wd,
    };
    let what = format!(
        "{} ({t} tokens, E {e}, H {h}, F {f}, {:?}) on {}, seed {seed}",
        c.what,
        c.layout,
        device.name()
    );
    let out = mg::forward(device, &x, &logits, router, weights, c.layout)
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let got = out.y.to_f64_vec().unwrap();
    let mut worst: f64 = 0.0;
    for i in 0..t * h {
        let err = (got[i] - want[i]).abs();
        assert!(
            err <= tol[i],
            "{what}: y[{}][{}] = {}, expected {} (error {err:.3e} > bound {:.3e})",
            i / h,
            i % h,
            got[i],
            want[i],
            tol[i]
        );
        worst = worst.max(err / tol[i]);
    }
    if let Some((hot, cold)) = c.extremes {
        let counts = out.counts.to_f64_vec().unwrap();
        assert_eq!(counts[hot], t as f64, "{what}: the hot expert's count");
        assert_eq!(counts[cold], 0.0, "{what}: the cold expert's count");
    }
    println!("{what}: worst error {worst:.3} of its bound");
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "Mixtral-like",
            e: 8,
            h: 72,
            f: 40,
            routing: MIXTRAL,
            layout: Layout::Contiguous,
            extremes: None,
        },
        Case {
            what: "Mixtral-like, hot and cold experts, masked",
            e: 8,
            h: 40,
            f: 72,
            routing: MIXTRAL,
            layout: Layout::Masked { capacity: 64 },
            extremes: Some((5, 2)),
        },
        Case {
            what: "Qwen3-like top-8 of 16",
            e: 16,
            h: 48,
            f: 40,
            routing: Routing::Softmax(8),
            layout: Layout::Contiguous,
            extremes: Some((11, 4)),
        },
        Case {
            what: "DeepSeek-like top-4 of 32",
            e: 32,
            h: 48,
            f: 24,
            routing: DEEPSEEK_K4,
            layout: Layout::Contiguous,
            extremes: Some((9, 20)),
        },
        Case {
            what: "DeepSeek-like top-8 of 64",
            e: 64,
            h: 40,
            f: 24,
            routing: DEEPSEEK_K8,
            layout: Layout::Contiguous,
            extremes: None,
        },
    ]
}

#[test]
fn the_layer_forward_matches_the_f64_layer_on_the_interpreter_and_the_emulator() {
    let mut rng = Rng::fresh();
    for device in devices() {
        for c in cases() {
            for t in [1, 17, 130] {
                check_layer(&device, &c, t, &mut rng);
            }
        }
    }
}

/// On sm_90a the layer runs the persistent wgmma grouped GEMMs (`moe_gemm_wg`), with the
/// emulator's default of one block per SM of an H100, fewer than the tiles of the larger cases.
#[test]
fn the_layer_forward_on_sm90a_matches_the_f64_layer() {
    let mut rng = Rng::fresh();
    let device = Device::emulator("sm_90a").unwrap();
    for c in cases() {
        for t in [1, 17, 130] {
            check_layer(&device, &c, t, &mut rng);
        }
    }
}

/// The forward launches everything and reads nothing back: the calling thread's count of
/// device-to-host copies does not move across it (on the interpreter and on the sm_90a
/// emulator), while reading the result moves it by one.
#[test]
fn the_layer_forward_copies_nothing_from_the_device_to_the_host() {
    let mut rng = Rng::fresh();
    for device in [Device::Cpu, Device::emulator("sm_90a").unwrap()] {
        for c in cases() {
            let p = draw(&mut rng, &c, 17);
            let (e, h, f) = (p.e, p.h, p.f);
            let x = tensor(&device, BF16, &[p.t, h], &p.x);
            let logits = tensor(&device, F32, &[p.t, e], &p.logits);
            let bias = tensor(&device, F32, &[e], &p.bias);
            let wg = tensor(&device, BF16, &[e, f, h], &p.wg);
            let wu = tensor(&device, BF16, &[e, f, h], &p.wu);
            let wd = tensor(&device, BF16, &[e, h, f], &p.wd);
            let router = match c.routing {
                Routing::Softmax(top_k) => Router::Softmax { top_k },
                Routing::Grouped(cfg) => Router::SigmoidGrouped { cfg, bias: &bias },
            };
            let weights = ExpertWeights {
                gate: &wg,
                up: &wu,
                down: &wd,
            };
            let before = Tensor::device_to_host_copies();
            let out = mg::forward(&device, &x, &logits, router, weights, c.layout).unwrap();
            let during = Tensor::device_to_host_copies() - before;
            assert_eq!(
                during,
                0,
                "{} on {}: copies in the forward",
                c.what,
                device.name()
            );
            let y = out.y.to_host().unwrap();
            assert_eq!(
                Tensor::device_to_host_copies() - before,
                1,
                "to_host counts"
            );
            assert!(y.to_vec().iter().all(|v| v.is_finite()), "{}", c.what);
        }
    }
}

#[test]
fn the_layer_rejects_mismatched_weights_with_a_shape_error() {
    let device = Device::Cpu;
    let (t, e, h, f) = (3, 8, 16, 32);
    let x = Tensor::zeros(BF16, &[t, h], &device).unwrap();
    let logits = Tensor::zeros(F32, &[t, e], &device).unwrap();
    let wg = Tensor::zeros(BF16, &[e, f, h], &device).unwrap();
    let wrong_down = Tensor::zeros(BF16, &[e, f, h], &device).unwrap();
    let weights = ExpertWeights {
        gate: &wg,
        up: &wg,
        down: &wrong_down,
    };
    let err = mg::forward(
        &device,
        &x,
        &logits,
        Router::Softmax { top_k: 2 },
        weights,
        Layout::Contiguous,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("down weights") && err.contains("[8, 16, 32]"),
        "{err}"
    );
    let wd = Tensor::zeros(BF16, &[e, h, f], &device).unwrap();
    let weights = ExpertWeights {
        gate: &wg,
        up: &wg,
        down: &wd,
    };
    let err = mg::forward(
        &device,
        &x,
        &logits,
        Router::Softmax { top_k: 9 },
        weights,
        Layout::Contiguous,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("top-9 of 8"), "{err}");
}
