//! The FP8 mixture-of-experts layer (`moe_fp8::forward`: route → permute → gather → 1×128
//! quantization → FP8 gate and up → SwiGLU + 1×128 quantization → FP8 down → combine) on the
//! interpreter and the sm_90a emulator, against an f64 layer that quantizes at the same points
//! by the same rules: the tokens' rows per 1×128 group, the weights per 128×128 block (both
//! bit-exact references, from `fp8_moe`), and `h = silu(gate)·up` per 1×128 group of each
//! routed row. Small Mixtral-like (E 8, top-2 softmax), Qwen3-like (E 16, top-8 softmax) and
//! DeepSeek-like (E 32 and 64, grouped sigmoid top-4 / top-8) shapes with 1, 17 and 130 tokens,
//! an expert every token chooses and one none does, the contiguous and the masked layouts;
//! every forward is checked to copy nothing from the device to the host. CI runs a subset that
//! takes seconds (Mixtral-like, masked, DeepSeek-like); the whole sweep is `#[ignore]`d, run it
//! with `cargo test -p tilekit --test all -- fp8_moe_layer:: --ignored`. `swiglu_quant` is also
//! checked alone, quantizing each token once and gathering the codes is checked bit for bit
//! against quantizing the gathered rows, and malformed arguments and targets without fp8 are
//! refused by name.
//!
//! The routing itself (experts, gates, permutation) is the bf16 layer's, checked against its
//! own f64 reference in `moe_gemm`; here the reference takes the device's choices and gates and
//! checks what follows them.
//!
//! Tolerance, from the arithmetic rather than from runs: the gate and up sums are sums of exact
//! fp8 products, within `(128 + 3 + H/128)·2⁻²⁴` of `Σ|terms|` (the bound of `fp8_moe`); with
//! silu' ≤ 1.1 and the approximate sigmoid (2⁻²⁰ relative) that bounds each f32 `h`'s distance
//! from the f64 one, hence each group's scale's relative distance `ρ` and each quotient
//! `h / s`'s distance `δ`. Where the e4m3 rounding of `[h/s − δ, h/s + δ]` is not one code, the
//! element may take any code of that interval: the bound admits the largest such change, and
//! `|q|·ρ·s` for the scale. The down projection adds its own `(128 + 3 + F/128)·2⁻²⁴` of
//! `Σ|terms|`, the combine `2(k + 1)·2⁻²⁴` of `Σ|g·y|`.
#![cfg(feature = "jit")]

use crate::fp8::{act_quant_reference, ocp_encode};
use crate::fp8_moe::{weight_quant_reference, weights};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{self, BF16, F32, F8E4M3, I32};
use tilekit::kernels::check::{poisoned, Rng};
use tilekit::kernels::moe_fp8::{forward, Fp8Experts, AMAX_FLOOR, E4M3_MAX, GROUP};
use tilekit::kernels::moe_gemm::{ExpertWeights, MoeOutput, Router};
use tilekit::kernels::moe_routing::{GroupedRouting, Layout};
use tilekit::{Device, Tensor};

const U: f64 = 1.0 / 16_777_216.0; // 2⁻²⁴

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

#[derive(Clone, Copy)]
enum Routing {
    Softmax(usize),
    Grouped(GroupedRouting),
}

struct Case {
    what: &'static str,
    e: usize,
    h: usize,
    f: usize,
    routing: Routing,
    layout: Layout,
}

const fn grouped(top_k: usize, topk_groups: usize) -> Routing {
    Routing::Grouped(GroupedRouting {
        top_k,
        groups: 8,
        topk_groups,
        scale: 2.5,
    })
}

/// The CI cases and their token counts, small enough for seconds on both devices: top-2
/// softmax routing with two K blocks in every GEMM, the masked layout overflowing its
/// capacity (every token chooses expert 0), grouped sigmoid routing; 1, 17 and 130 tokens.
fn ci_cases() -> Vec<(Case, Vec<usize>)> {
    vec![
        (
            Case {
                what: "Mixtral-like top-2 of 8",
                e: 8,
                h: 256,
                f: 256,
                routing: Routing::Softmax(2),
                layout: Layout::Contiguous,
            },
            vec![1, 17],
        ),
        (
            Case {
                what: "Mixtral-like top-2 of 8, masked at 64",
                e: 8,
                h: 128,
                f: 128,
                routing: Routing::Softmax(2),
                layout: Layout::Masked { capacity: 64 },
            },
            vec![130],
        ),
        (
            Case {
                what: "DeepSeek-like top-4 of 32",
                e: 32,
                h: 128,
                f: 128,
                routing: grouped(4, 2),
                layout: Layout::Contiguous,
            },
            vec![17],
        ),
    ]
}

/// The larger sweep (minutes on each device): wider experts, Qwen3-like top-8 of 16 and
/// DeepSeek-like top-8 of 64 as well, each at 1, 17 and 130 tokens.
fn sweep_cases() -> Vec<(Case, Vec<usize>)> {
    let cases = vec![
        Case {
            what: "Mixtral-like top-2 of 8",
            e: 8,
            h: 256,
            f: 384,
            routing: Routing::Softmax(2),
            layout: Layout::Contiguous,
        },
        Case {
            what: "Mixtral-like top-2 of 8, masked at 64",
            e: 8,
            h: 128,
            f: 256,
            routing: Routing::Softmax(2),
            layout: Layout::Masked { capacity: 64 },
        },
        Case {
            what: "Qwen3-like top-8 of 16",
            e: 16,
            h: 256,
            f: 128,
            routing: Routing::Softmax(8),
            layout: Layout::Contiguous,
        },
        Case {
            what: "DeepSeek-like top-4 of 32",
            e: 32,
            h: 256,
            f: 128,
            routing: grouped(4, 2),
            layout: Layout::Contiguous,
        },
        Case {
            what: "DeepSeek-like top-8 of 64",
            e: 64,
            h: 128,
            f: 128,
            routing: grouped(8, 4),
            layout: Layout::Contiguous,
        },
    ];
    cases.into_iter().map(|c| (c, vec![1, 17, 130])).collect()
}

/// A problem's host values (bf16-representable where the layer takes bf16).
struct Problem {
    t: usize,
    x: Vec<f64>,
    logits: Vec<f64>,
    bias: Vec<f64>,
    /// Gate, up `[E, F, H]` and down `[E, H, F]`.
    w: [Vec<f64>; 3],
}

/// Random inputs of `t` tokens; every token chooses expert 0 and none chooses expert 1.
fn draw(rng: &mut Rng, c: &Case, t: usize) -> Problem {
    let (e, h, f) = (c.e, c.h, c.f);
    // Activations whose 128-column groups differ in magnitude (so their scales differ).
    let x: Vec<f64> = (0..t * h)
        .map(|i| {
            let mag = 2f64.powi(((i / h + 3 * (i % h / GROUP)) % 5) as i32 - 1);
            rng.uniform(-mag, mag)
        })
        .collect();
    let x = HostTensor::new(BF16, &[t, h], &x).unwrap().to_vec();
    let mut logits: Vec<f64> = (0..t * e).map(|_| rng.uniform(-3.0, 3.0)).collect();
    let mut bias: Vec<f64> = (0..e).map(|_| rng.uniform(-0.1, 0.1)).collect();
    for r in 0..t {
        logits[r * e] = 30.0;
        logits[r * e + 1] = -30.0;
    }
    (bias[0], bias[1]) = (1.0, -1.0);
    let bf = |v: Vec<f64>, shape: &[usize]| HostTensor::new(BF16, shape, &v).unwrap().to_vec();
    let w = [
        bf(weights(rng, e, f, h), &[e, f, h]),
        bf(weights(rng, e, f, h), &[e, f, h]),
        bf(weights(rng, e, h, f), &[e, h, f]),
    ];
    Problem {
        t,
        x,
        logits,
        bias,
        w,
    }
}

fn tensor(device: &Device, dtype: ScalarType, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_host(&HostTensor::new(dtype, shape, v).unwrap(), device).unwrap()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap_or_else(|e| panic!("{e}"))
}

/// The layer's device tensors for `p`, and its output.
fn run(device: &Device, c: &Case, p: &Problem) -> MoeOutput {
    let (e, h, f) = (c.e, c.h, c.f);
    let x = tensor(device, BF16, &[p.t, h], &p.x);
    let logits = tensor(device, F32, &[p.t, e], &p.logits);
    let bias = tensor(device, F32, &[e], &p.bias);
    let gate = tensor(device, BF16, &[e, f, h], &p.w[0]);
    let up = tensor(device, BF16, &[e, f, h], &p.w[1]);
    let down = tensor(device, BF16, &[e, h, f], &p.w[2]);
    let weights = ExpertWeights {
        gate: &gate,
        up: &up,
        down: &down,
    };
    let experts = Fp8Experts::quantize(device, weights).unwrap_or_else(|err| panic!("{err}"));
    let router = match c.routing {
        Routing::Softmax(top_k) => Router::Softmax { top_k },
        Routing::Grouped(cfg) => Router::SigmoidGrouped { cfg, bias: &bias },
    };
    let before = Tensor::device_to_host_copies();
    let out = forward(device, &x, &logits, router, &experts, c.layout)
        .unwrap_or_else(|err| panic!("{}: {err}", c.what));
    assert_eq!(
        Tensor::device_to_host_copies() - before,
        0,
        "{} on {}: the forward copied from the device",
        c.what,
        device.name()
    );
    out
}

/// A block-quantized operand: codes and scales as the reference quantizers lay them out.
struct Quant {
    q: Vec<f64>,
    s: Vec<f64>,
}

/// `Σ_b sx[b] · sw[block b of row j] · Σ_(c in b) qx[c]·qw[j][c]` over the `k / 128` blocks of
/// one row of activations (`qx`, `sx` its codes and scales) and row `j` of expert `e`'s
/// weights `[E, n, k]`, and `Σ|terms|`.
fn block_dot(
    qx: &[f64],
    sx: &[f64],
    w: &Quant,
    (e, j): (usize, usize),
    (n, k): (usize, usize),
) -> (f64, f64) {
    let (nb, kb) = (n.div_ceil(GROUP), k / GROUP);
    let row = &w.q[(e * n + j) * k..(e * n + j + 1) * k];
    let (mut sum, mut mag) = (0.0, 0.0);
    for b in 0..kb {
        let scale = sx[b] * w.s[(e * nb + j / GROUP) * kb + b];
        for c in b * GROUP..(b + 1) * GROUP {
            let term = scale * qx[c] * row[c];
            sum += term;
            mag += term.abs();
        }
    }
    (sum, mag)
}

/// The 1×128 quantization of one group of 128 values `h`, each within `eps` of the value the
/// kernel quantizes, and how far the kernel's may be from it.
struct Group {
    /// The codes' values and the scale of `h` itself.
    q: Vec<f64>,
    scale: f64,
    /// The kernel's scale is within `rho · scale` of `scale`.
    rho: f64,
    /// The kernel's code of element `i` lies in `lo[i] ..= hi[i]`.
    lo: Vec<f64>,
    hi: Vec<f64>,
}

fn quantize_group(h: &[f64], eps: &[f64]) -> Group {
    let amax = h.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let spread = eps.iter().copied().fold(0.0, f64::max);
    // f64 quotients of f32 operands rounded once to f32 are the f32 quotients.
    let scale = f64::from((amax.max(AMAX_FLOOR) / E4M3_MAX) as f32);
    // The kernel's largest magnitude is within `spread` of `amax`; both scales round once.
    let rho = 1.01 * spread / amax.max(AMAX_FLOOR) + 4.0 * U;
    let mut g = Group {
        q: Vec::with_capacity(h.len()),
        scale,
        rho,
        lo: Vec::with_capacity(h.len()),
        hi: Vec::with_capacity(h.len()),
    };
    for (&v, &e) in h.iter().zip(eps) {
        let v = f64::from((v / scale) as f32);
        // The kernel's quotient: its own h and scale, and its own rounding to f32.
        let delta = 1.01 * (v.abs() * (1.01 * rho + 4.0 * U) + 1.01 * e / scale);
        g.q.push(ocp_encode(F8E4M3, v));
        g.lo.push(ocp_encode(F8E4M3, v - delta));
        g.hi.push(ocp_encode(F8E4M3, v + delta));
    }
    g
}

/// The reference layer output `y` `[T, H]` and each element's bound, from the device's routing.
fn reference(
    c: &Case,
    p: &Problem,
    experts: &[f64],
    gates: &[f64],
    kept: &[bool],
) -> (Vec<f64>, Vec<f64>) {
    let (e, h, f, t) = (c.e, c.h, c.f, p.t);
    let k = experts.len() / t;
    let (xq, xs) = act_quant_reference(&p.x, t, h);
    let wq = |i: usize, n: usize, kk: usize| {
        let (q, s) = weight_quant_reference(&p.w[i], e, n, kk);
        Quant { q, s }
    };
    let (wg, wu, wd) = (wq(0, f, h), wq(1, f, h), wq(2, h, f));
    let (units_h, units_f) = (
        (GROUP + 3 + h / GROUP) as f64 * U,
        (GROUP + 3 + f / GROUP) as f64 * U,
    );
    let (mut y, mut tol) = (vec![0.0; t * h], vec![0.0; t * h]);
    for tok in 0..t {
        let qx = &xq[tok * h..(tok + 1) * h];
        let sx: Vec<f64> = (0..h / GROUP).map(|b| xs[b * t + tok]).collect();
        for slot in tok * k..(tok + 1) * k {
            if !kept[slot] {
                continue;
            }
            let (ex, g) = (experts[slot] as usize, gates[slot]);
            // h in f64 and each element's distance from the kernel's f32 h.
            let (mut hv, mut eps) = (vec![0.0; f], vec![0.0; f]);
            for j in 0..f {
                let (gv, gm) = block_dot(qx, &sx, &wg, (ex, j), (f, h));
                let (uv, um) = block_dot(qx, &sx, &wu, (ex, j), (f, h));
                let (dg, du) = (units_h * gm, units_h * um);
                let sg = silu(gv);
                hv[j] = sg * uv;
                eps[j] = uv.abs() * (1.1 * dg + 2f64.powi(-20) * sg.abs())
                    + (sg.abs() + 1.1 * dg) * du
                    + 2f64.powi(-22) * hv[j].abs();
            }
            let (mut hq, mut hs, mut herr) = (vec![0.0; f], vec![0.0; f / GROUP], vec![0.0; f]);
            for b in 0..f / GROUP {
                let cols = b * GROUP..(b + 1) * GROUP;
                let g = quantize_group(&hv[cols.clone()], &eps[cols.clone()]);
                hs[b] = g.scale;
                for (i, j) in cols.enumerate() {
                    hq[j] = g.q[i];
                    let moved = (g.hi[i] - g.q[i]).max(g.q[i] - g.lo[i]);
                    herr[j] = g.scale * (moved * (1.0 + g.rho) + g.q[i].abs() * g.rho);
                }
            }
            for d in 0..h {
                let (yv, ym) = block_dot(&hq, &hs, &wd, (ex, d), (h, f));
                let nb = f / GROUP;
                let from_h: f64 = (0..f)
                    .map(|j| {
                        let wdeq = wd.q[(ex * h + d) * f + j]
                            * wd.s[(ex * h.div_ceil(GROUP) + d / GROUP) * nb + j / GROUP];
                        herr[j] * wdeq.abs()
                    })
                    .sum();
                let err = from_h + units_f * (ym + from_h);
                y[tok * h + d] += g * yv;
                tol[tok * h + d] += g.abs() * err + 2.0 * (k + 1) as f64 * U * (g * yv).abs();
            }
        }
    }
    for v in &mut tol {
        *v += 1e-30;
    }
    (y, tol)
}

fn check_layer(device: &Device, c: &Case, t: usize, rng: &mut Rng) {
    let what = format!("{} T {t} on {} (seed {})", c.what, device.name(), rng.seed);
    let p = draw(rng, c, t);
    let out = run(device, c, &p);
    let (experts, gates, counts) = (host(&out.experts), host(&out.gates), host(&out.counts));
    assert_eq!((counts[0], counts[1]), (t as f64, 0.0), "{what}: loads");
    let k = experts.len() / t;
    assert!(
        (0..t).all(|r| experts[r * k..(r + 1) * k].contains(&0.0)),
        "{what}: a token did not choose expert 0"
    );
    // A masked layout keeps each expert's first `capacity` tokens (in token order).
    let mut seen = vec![0usize; c.e];
    let kept: Vec<bool> = experts
        .iter()
        .map(|&ex| {
            seen[ex as usize] += 1;
            match c.layout {
                Layout::Masked { capacity } => seen[ex as usize] <= capacity,
                Layout::Contiguous => true,
            }
        })
        .collect();
    let (want, tol) = reference(c, &p, &experts, &gates, &kept);
    let got = host(&out.y);
    let mut worst = 0.0f64;
    for i in 0..got.len() {
        let ratio = (got[i] - want[i]).abs() / tol[i];
        assert!(
            ratio <= 1.0,
            "{what}: y[{}][{}] {} vs {} (bound {:e})",
            i / c.h,
            i % c.h,
            got[i],
            want[i],
            tol[i]
        );
        worst = worst.max(ratio);
    }
    eprintln!("{what}: worst {worst:.3} of the bound");
}

fn check_cases(device: &Device, cases: Vec<(Case, Vec<usize>)>) {
    let mut rng = Rng::fresh();
    for (c, tokens) in cases {
        for t in tokens {
            check_layer(device, &c, t, &mut rng);
        }
    }
}

#[test]
fn the_fp8_layer_matches_the_block_quantized_f64_layer_on_the_interpreter() {
    check_cases(&Device::Cpu, ci_cases());
}

#[test]
fn the_fp8_layer_matches_the_block_quantized_f64_layer_on_the_sm_90a_emulator() {
    check_cases(&Device::emulator("sm_90a").unwrap(), ci_cases());
}

/// The larger sweep, left out of CI for its minutes: run it with
/// `cargo test -p tilekit --test all -- fp8_moe_layer:: --ignored` (and `TILEKIT_SEED=<n>`).
#[test]
#[ignore = "minutes; run with `cargo test -p tilekit --test all -- fp8_moe_layer:: --ignored`"]
fn the_fp8_layer_sweep_matches_the_block_quantized_f64_layer_on_the_interpreter() {
    check_cases(&Device::Cpu, sweep_cases());
}

/// The larger sweep on the sm_90a emulator; run as the interpreter's.
#[test]
#[ignore = "minutes; run with `cargo test -p tilekit --test all -- fp8_moe_layer:: --ignored`"]
fn the_fp8_layer_sweep_matches_the_block_quantized_f64_layer_on_the_sm_90a_emulator() {
    check_cases(&Device::emulator("sm_90a").unwrap(), sweep_cases());
}

/// Quantizing each token once and gathering codes and scales (`gather_quantized_rows`, what
/// the layer does) against gathering the bf16 rows and quantizing the gathered rows
/// (`moe_gather`, then `quantize_activations`): bit for bit the same codes and scales, padding
/// rows included. Tokens chosen several times, in shuffled order, tokens chosen by none, an
/// all-zero group, padding rows (−1) between the experts' runs.
fn quantize_then_gather_on(device: &Device, rng: &mut Rng) {
    use tilekit::kernels::moe_fp8::{gather_quantized_rows, quantize_activations};
    use tilekit::kernels::moe_gemm::{moe_gather, GATHER_COLS, GATHER_WARPS};
    for (t, h, n) in [(1, 128, 64), (17, 256, 128), (130, 384, 320)] {
        let what = format!(
            "T {t}, H {h}, N {n} on {} (seed {})",
            device.name(),
            rng.seed
        );
        let mut x: Vec<f64> = (0..t * h)
            .map(|i| {
                let mag = 2f64.powi(((i / h + 3 * (i % h / GROUP)) % 7) as i32 - 3);
                rng.uniform(-mag, mag)
            })
            .collect();
        // Token 0's last group is all zeros: its scale is the floor's.
        x[h - GROUP..h].fill(0.0);
        // Each token chosen about twice over, a fifth of the rows padding.
        let tokens: Vec<f64> = (0..n)
            .map(|_| {
                if rng.uniform(0.0, 1.0) < 0.2 {
                    -1.0
                } else {
                    (rng.uniform(0.0, t as f64) as usize).min(t - 1) as f64
                }
            })
            .collect();
        let x = tensor(device, BF16, &[t, h], &x);
        let sorted_token = tensor(device, I32, &[n, 1], &tokens);
        let fail = |err: tilekit::Error| -> ! { panic!("{what}: {err}") };
        let once = quantize_activations(device, &x)
            .and_then(|xq| gather_quantized_rows(device, &xq, &sorted_token))
            .unwrap_or_else(|e| fail(e));
        let mut xp = Tensor::zeros(BF16, &[n, h], device).unwrap();
        moe_gather::<GATHER_COLS, GATHER_WARPS>::launch_auto(device, &x, &sorted_token, &mut xp)
            .unwrap_or_else(|e| fail(e));
        let after = quantize_activations(device, &xp).unwrap_or_else(|e| fail(e));
        for (name, got, want) in [
            ("codes", &once.q, &after.q),
            ("scales", &once.scales, &after.scales),
        ] {
            let (got, want) = (host(got), host(want));
            assert_eq!(got.len(), want.len(), "{what}: {name}");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    a.to_bits() == b.to_bits(),
                    "{what}: {name}[{i}] {a} vs {b} (quantized after the gather)"
                );
            }
        }
        let codes = host(&once.q);
        for (r, _) in tokens.iter().enumerate().filter(|(_, &tok)| tok < 0.0) {
            assert!(
                codes[r * h..(r + 1) * h].iter().all(|&c| c == 0.0),
                "{what}: padding row {r} has codes"
            );
        }
    }
}

#[test]
fn quantizing_each_token_once_then_gathering_is_bit_identical_to_quantizing_the_gathered_rows() {
    let mut rng = Rng::fresh();
    quantize_then_gather_on(&Device::Cpu, &mut rng);
    quantize_then_gather_on(&Device::emulator("sm_90a").unwrap(), &mut rng);
}

/// `swiglu_quant` alone: f32 gate and up values of varied magnitude per row and group, row
/// tiles of an expert and of none (−1); codes and scales of the used tiles against the 1×128
/// rule applied to `silu(gate)·up` in f64, the unused tiles' rows left as they were.
fn swiglu_quant_on(device: &Device) {
    use tilekit::kernels::moe_fp8::swiglu_quant;
    let mut rng = Rng::fresh();
    for (tile_expert, f) in [(vec![3.0, -1.0, 0.0], 256), (vec![-1.0, 7.0], 128)] {
        let n = tile_expert.len() * 64;
        let what = format!("{}, N {n}, F {f}, seed {}", device.name(), rng.seed);
        let draw = |rng: &mut Rng| -> Vec<f64> {
            (0..n * f)
                .map(|i| {
                    let mag = 2f64.powi(((i / f + 5 * (i % f / GROUP)) % 7) as i32 - 3);
                    f64::from(rng.uniform(-mag, mag) as f32)
                })
                .collect()
        };
        let (gate, up) = (draw(&mut rng), draw(&mut rng));
        let tensor_of =
            |dtype, shape: &[usize], v: &[f64]| HostTensor::new(dtype, shape, v).unwrap();
        let te = tensor_of(I32, &[tile_expert.len()], &tile_expert);
        let mut q = poisoned(F8E4M3, &[n, f]);
        let mut scales = poisoned(F32, &[f / GROUP, n]);
        swiglu_quant::<4>::launch_auto(
            device,
            &tensor_of(F32, &[n, f], &gate),
            &tensor_of(F32, &[n, f], &up),
            &te,
            &mut q,
            &mut scales,
        )
        .unwrap_or_else(|err| panic!("{what}: {err}"));
        let (q, scales) = (q.to_vec(), scales.to_vec());
        for r in 0..n {
            let used = tile_expert[r / 64] >= 0.0;
            for b in 0..f / GROUP {
                let cols = r * f + b * GROUP..r * f + (b + 1) * GROUP;
                let got_s = scales[b * n + r];
                if !used {
                    assert!(got_s.is_nan(), "{what}: unused row {r} got a scale");
                    assert!(q[cols].iter().all(|v| v.is_nan()), "{what}: unused row {r}");
                    continue;
                }
                let h: Vec<f64> = cols.clone().map(|i| silu(gate[i]) * up[i]).collect();
                // The f32 sigmoid (2⁻²⁰ relative) and two f32 products.
                let eps: Vec<f64> = h.iter().map(|v| v.abs() * 2f64.powi(-19)).collect();
                let g = quantize_group(&h, &eps);
                assert!(
                    (got_s - g.scale).abs() <= g.rho * g.scale,
                    "{what}: scale of row {r} group {b}: {got_s} vs {}",
                    g.scale
                );
                for (i, c) in cols.enumerate() {
                    assert!(
                        (g.lo[i]..=g.hi[i]).contains(&q[c]),
                        "{what}: q[{r}][{}] {} outside {}..={} (h {})",
                        c % f,
                        q[c],
                        g.lo[i],
                        g.hi[i],
                        h[i]
                    );
                }
            }
        }
    }
}

#[test]
fn swiglu_quant_applies_the_1x128_rule_to_silu_gate_times_up() {
    swiglu_quant_on(&Device::Cpu);
    swiglu_quant_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn the_fp8_layer_refuses_malformed_arguments_and_targets_without_fp8_by_name() {
    let cpu = Device::Cpu;
    let zeros =
        |dtype, shape: &[usize], device: &Device| Tensor::zeros(dtype, shape, device).unwrap();
    let refused = |text: String, needles: &[&str]| {
        for needle in needles {
            assert!(text.contains(needle), "{needle:?} not in: {text}");
        }
    };
    let (t, e, h, f) = (3, 8, 128, 256);
    let (gate, down) = (zeros(BF16, &[e, f, h], &cpu), zeros(BF16, &[e, h, f], &cpu));
    let quantize = |gate: &Tensor, down: &Tensor| {
        let weights = ExpertWeights {
            gate,
            up: gate,
            down,
        };
        Fp8Experts::quantize(&cpu, weights).map(|_| ())
    };
    // Down weights laid out like gate and up.
    refused(
        quantize(&gate, &gate).unwrap_err().to_string(),
        &["down weights", "[8, 128, 256]"],
    );
    // An expert width that is not a multiple of 128.
    let (gate_f, down_f) = (
        zeros(BF16, &[e, 200, h], &cpu),
        zeros(BF16, &[e, h, 200], &cpu),
    );
    refused(
        quantize(&gate_f, &down_f).unwrap_err().to_string(),
        &["200 columns", "multiple of 128"],
    );
    let weights = ExpertWeights {
        gate: &gate,
        up: &gate,
        down: &down,
    };
    let experts = Fp8Experts::quantize(&cpu, weights).unwrap();
    let logits = zeros(F32, &[t, e], &cpu);
    let layer = |x: &Tensor, top_k: usize| {
        forward(
            &cpu,
            x,
            &logits,
            Router::Softmax { top_k },
            &experts,
            Layout::Contiguous,
        )
        .map(|_| ())
    };
    layer(&zeros(BF16, &[t, h], &cpu), 2).expect("well-formed");
    refused(
        layer(&zeros(BF16, &[t, 256], &cpu), 2)
            .unwrap_err()
            .to_string(),
        &["`x` must be bf16 [_, 128]"],
    );
    refused(
        layer(&zeros(F32, &[t, h], &cpu), 2)
            .unwrap_err()
            .to_string(),
        &["`x` must be bf16"],
    );
    refused(
        layer(&zeros(BF16, &[t, h], &cpu), 9)
            .unwrap_err()
            .to_string(),
        &["top-9 of 8"],
    );
    // sm_80 has no fp8 mma: refused before anything is compiled.
    let sm80 = Device::emulator("sm_80").unwrap();
    let (gate, down) = (
        zeros(BF16, &[e, f, h], &sm80),
        zeros(BF16, &[e, h, f], &sm80),
    );
    let weights = ExpertWeights {
        gate: &gate,
        up: &gate,
        down: &down,
    };
    refused(
        Fp8Experts::quantize(&sm80, weights)
            .unwrap_err()
            .to_string(),
        &["sm_90a", "sm_80"],
    );
}
