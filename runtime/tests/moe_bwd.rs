//! The mixture-of-experts layer's backward (`tilekit::kernels::moe_bwd::backward`) on the
//! interpreter and the sm_80 PTX emulator, against an f64 backward written here from the
//! layer's definition (itself checked against central finite differences of the f64
//! forward). Small versions of Mixtral (E 8, top-2 softmax), Qwen3 (E 16, top-4 softmax,
//! expert width below the hidden width) and DeepSeek-V3 (E 32 and 64, grouped sigmoid top-4 /
//! top-8) with 1, 17 and 130 tokens, widths that are not multiples of 64, an expert every
//! token chooses and one none does, the contiguous and the masked layouts.
//!
//! Bounds, from the arithmetic rather than from runs: the reference carries each quantity's
//! value and a bound on how far the kernel's value may be from it. Sums in f32 add
//! `γ_n·Σ|terms|` (γ_n = 2(n + 16)·2⁻²⁴, for any summation order); the gates are within 10⁻⁵
//! relative of the f64 ones and the sigmoid within 2⁻²⁰; silu' ≤ 1.1 and |silu''| ≤ 0.5
//! propagate the errors of the pre-activations. Where the kernel rounds to bf16 (`h`,
//! `dO = g·dY`, `dA`, `dB`), the reference rounds its value the same way: if no rounding
//! midpoint lies within the bound of the value, both round to the same bf16 number (error 0);
//! otherwise the kernel's number is within the bound and two spacings (where silu' nears 0,
//! the bound of `dA` may exceed a spacing).

#![cfg(feature = "jit")]

use std::cmp::Ordering;

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::Rng;
use tilekit::kernels::moe_bwd;
use tilekit::kernels::moe_gemm::{ExpertWeights, Router};
use tilekit::kernels::moe_routing::{GroupedRouting, Layout};
use tilekit::{Device, Tensor};

fn devices() -> [Device; 2] {
    [Device::Cpu, Device::emulator("sm_80").unwrap()]
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

/// The chosen experts of one token and the smallest gap between two scores whose order
/// decides the choice (where f32 scores could order them otherwise).
fn choose(row: &[f64], bias: &[f64], routing: Routing) -> (Vec<usize>, f64) {
    match routing {
        Routing::Softmax(k) => (ranked(row).into_iter().take(k).collect(), f64::INFINITY),
        Routing::Grouped(cfg) => {
            let e = row.len();
            let width = e / cfg.groups;
            let b: Vec<f64> = row.iter().zip(bias).map(|(l, b)| sigmoid(*l) + b).collect();
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
            (order[..cfg.top_k].to_vec(), gap)
        }
    }
}

/// The gates of the chosen experts `ids` from the token's logits `row`.
fn gates_of(row: &[f64], ids: &[usize], routing: Routing) -> Vec<f64> {
    match routing {
        Routing::Softmax(_) => {
            let m = row[ids[0]];
            let sum: f64 = ids.iter().map(|&i| (row[i] - m).exp()).sum();
            ids.iter().map(|&i| (row[i] - m).exp() / sum).collect()
        }
        Routing::Grouped(cfg) => {
            let sum: f64 = ids.iter().map(|&i| sigmoid(row[i])).sum();
            ids.iter()
                .map(|&i| sigmoid(row[i]) / sum * f64::from(cfg.scale))
                .collect()
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

fn gamma(n: usize) -> f64 {
    2.0 * (n + 16) as f64 * 2f64.powi(-24)
}

#[derive(Clone)]
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
    dy: Vec<f64>,
}

/// A quantity of the reference: values and, per element, a bound on the kernel's distance.
#[derive(Clone, Default)]
struct Q {
    v: Vec<f64>,
    e: Vec<f64>,
}

impl Q {
    fn zeros(n: usize) -> Q {
        Q {
            v: vec![0.0; n],
            e: vec![0.0; n],
        }
    }
}

/// What the f64 backward gives: the forward's `y` and the gradients of `Σ dy ⊙ y`.
struct Grads {
    y: Vec<f64>,
    dx: Q,
    dlogits: Q,
    d_gate: Q,
    d_up: Q,
    d_down: Q,
}

/// `v` rounded to bf16 as the kernel rounds its value within `e` of `v` (see the module
/// documentation); `exact` keeps `v` (the finite-difference check).
fn round(v: f64, e: f64, exact: bool) -> (f64, f64) {
    if exact {
        return (v, 0.0);
    }
    let r = bf16_round(v);
    let spacing = bf16_spacing(v);
    // The window around the midpoints is widened past the bound (4×, and 2⁻²⁰ relative for
    // the GPU numerics' approximate exp and reciprocal): a flip the bound missed would show
    // as an error of a whole spacing against a bound without it.
    if (v - r).abs() >= spacing / 2.0 - 4.0 * e - 2f64.powi(-20) * v.abs() {
        // The kernel's value rounds to a bf16 number within `e` and a spacing of `r`.
        (r, e + 2.0 * spacing)
    } else {
        (r, 0.0)
    }
}

/// The layer and its backward in f64 (with the kernel's bf16 roundings unless `exact`), or
/// `None` when a routing decision sits within f32 rounding of a tie (the caller draws again).
fn reference(p: &Problem, routing: Routing, layout: Layout, exact: bool) -> Option<Grads> {
    let (t, e, h, f) = (p.t, p.e, p.h, p.f);
    let k = routing.k();
    let mut chosen = Vec::with_capacity(t);
    for tok in 0..t {
        let row = &p.logits[tok * e..(tok + 1) * e];
        let (ids, gap) = choose(row, &p.bias, routing);
        if gap < 1e-5 {
            return None;
        }
        let gates = gates_of(row, &ids, routing);
        chosen.push((ids, gates));
    }
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
    let rows_bound = t * k + e * 64;
    let mut y = vec![0.0; t * h];
    let mut dx = Q::zeros(t * h);
    let mut dx_abs = vec![0.0; t * h];
    let mut dgate = Q::zeros(t * k);
    let (mut d_gate, mut d_up) = (Q::zeros(e * f * h), Q::zeros(e * f * h));
    let mut d_down = Q::zeros(e * h * f);
    let (mut abs_gate, mut abs_up, mut abs_down) = (
        vec![0.0; e * f * h],
        vec![0.0; e * f * h],
        vec![0.0; e * h * f],
    );
    for tok in 0..t {
        let xr = &p.x[tok * h..(tok + 1) * h];
        let dyr = &p.dy[tok * h..(tok + 1) * h];
        let (ids, gates) = &chosen[tok];
        for c in 0..k {
            if !kept[tok][c] {
                continue;
            }
            let (ex, g) = (ids[c], gates[c]);
            let wg = |j: usize| &p.wg[(ex * f + j) * h..(ex * f + j + 1) * h];
            let wu = |j: usize| &p.wu[(ex * f + j) * h..(ex * f + j + 1) * h];
            let wd = |d: usize| &p.wd[(ex * h + d) * f..(ex * h + d + 1) * f];
            // Forward: a, b, h (bf16), o.
            let (mut a, mut b, mut hv) = (Q::zeros(f), Q::zeros(f), Q::zeros(f));
            for j in 0..f {
                a.v[j] = xr.iter().zip(wg(j)).map(|(p, q)| p * q).sum();
                a.e[j] = gamma(h)
                    * xr.iter()
                        .zip(wg(j))
                        .map(|(p, q)| (p * q).abs())
                        .sum::<f64>();
                b.v[j] = xr.iter().zip(wu(j)).map(|(p, q)| p * q).sum();
                b.e[j] = gamma(h)
                    * xr.iter()
                        .zip(wu(j))
                        .map(|(p, q)| (p * q).abs())
                        .sum::<f64>();
                let silu = a.v[j] * sigmoid(a.v[j]);
                let pre = silu * b.v[j];
                let eps = b.v[j].abs() * (1.1 * a.e[j] + 2f64.powi(-20) * silu.abs())
                    + silu.abs() * b.e[j]
                    + 1.1 * a.e[j] * b.e[j]
                    + 2f64.powi(-22) * pre.abs();
                (hv.v[j], hv.e[j]) = round(pre, eps, exact);
            }
            let mut o = Q::zeros(h);
            for d in 0..h {
                let w = wd(d);
                o.v[d] = w.iter().zip(&hv.v).map(|(p, q)| p * q).sum();
                o.e[d] = w.iter().zip(&hv.e).map(|(p, q)| (p * q).abs()).sum::<f64>()
                    + gamma(f) * w.iter().zip(&hv.v).map(|(p, q)| (p * q).abs()).sum::<f64>();
                y[tok * h + d] += g * o.v[d];
            }
            // Combine backward: the gate's gradient and dO = g·dY (bf16).
            let slot = tok * k + c;
            dgate.v[slot] = dyr.iter().zip(&o.v).map(|(p, q)| p * q).sum();
            dgate.e[slot] = dyr
                .iter()
                .zip(&o.e)
                .map(|(p, q)| (p * q).abs())
                .sum::<f64>()
                + gamma(h)
                    * dyr
                        .iter()
                        .zip(&o.v)
                        .map(|(p, q)| (p * q).abs())
                        .sum::<f64>();
            let mut dout = Q::zeros(h);
            for d in 0..h {
                let pre = g * dyr[d];
                (dout.v[d], dout.e[d]) = round(pre, (1e-5 + 2f64.powi(-23)) * pre.abs(), exact);
            }
            // Down projection backward: dH = dO·W_down, dW_down += dOᵀ·h.
            let (mut da, mut db) = (Q::zeros(f), Q::zeros(f));
            for j in 0..f {
                let (mut dh, mut dhe, mut dh_abs) = (0.0, 0.0, 0.0);
                for d in 0..h {
                    let w = wd(d)[j];
                    dh += dout.v[d] * w;
                    dhe += dout.e[d] * w.abs();
                    dh_abs += (dout.v[d] * w).abs();
                }
                dhe += gamma(h) * dh_abs;
                let (av, ae, bv, be) = (a.v[j], a.e[j], b.v[j], b.e[j]);
                let s = sigmoid(av);
                let silu = av * s;
                let dsilu = s * (1.0 + av * (1.0 - s));
                let pre_a = dh * bv * dsilu;
                let eps_a = (bv * dsilu).abs() * dhe
                    + (dh * dsilu).abs() * be
                    + (dh * bv).abs() * (0.5 * ae + 2f64.powi(-18) * (1.0 + av.abs()))
                    + 1.1 * dhe * be
                    + 4.0 * 2f64.powi(-24) * pre_a.abs();
                (da.v[j], da.e[j]) = round(pre_a, eps_a, exact);
                let pre_b = dh * silu;
                let eps_b = silu.abs() * dhe
                    + dh.abs() * (1.1 * ae + 2f64.powi(-20) * silu.abs())
                    + 1.1 * dhe * ae
                    + 3.0 * 2f64.powi(-24) * pre_b.abs();
                (db.v[j], db.e[j]) = round(pre_b, eps_b, exact);
                for d in 0..h {
                    let i = (ex * h + d) * f + j;
                    d_down.v[i] += dout.v[d] * hv.v[j];
                    d_down.e[i] +=
                        dout.v[d].abs() * hv.e[j] + hv.v[j].abs() * dout.e[d] + dout.e[d] * hv.e[j];
                    abs_down[i] += (dout.v[d] * hv.v[j]).abs();
                }
            }
            // Gate/up backward: dX += dA·W_gate + dB·W_up, dW_gate += dAᵀ·x, dW_up += dBᵀ·x.
            for i in 0..h {
                let (mut v, mut err, mut abs) = (0.0, 0.0, 0.0);
                for j in 0..f {
                    let (g1, u1) = (wg(j)[i], wu(j)[i]);
                    v += da.v[j] * g1 + db.v[j] * u1;
                    err += da.e[j] * g1.abs() + db.e[j] * u1.abs();
                    abs += (da.v[j] * g1).abs() + (db.v[j] * u1).abs();
                }
                dx.v[tok * h + i] += v;
                dx.e[tok * h + i] += err + gamma(2 * f) * abs;
                dx_abs[tok * h + i] += v.abs() + err;
            }
            for j in 0..f {
                for i in 0..h {
                    let at = (ex * f + j) * h + i;
                    d_gate.v[at] += da.v[j] * xr[i];
                    d_gate.e[at] += da.e[j] * xr[i].abs();
                    abs_gate[at] += (da.v[j] * xr[i]).abs();
                    d_up.v[at] += db.v[j] * xr[i];
                    d_up.e[at] += db.e[j] * xr[i].abs();
                    abs_up[at] += (db.v[j] * xr[i]).abs();
                }
            }
        }
    }
    for (q, abs) in [
        (&mut d_gate, &abs_gate),
        (&mut d_up, &abs_up),
        (&mut d_down, &abs_down),
    ] {
        for (err, a) in q.e.iter_mut().zip(abs) {
            *err += gamma(rows_bound) * a;
        }
    }
    for (err, a) in dx.e.iter_mut().zip(&dx_abs) {
        *err += gamma(k) * a;
    }
    // Router backward.
    let mut dlogits = Q::zeros(t * e);
    for tok in 0..t {
        let (ids, gates) = &chosen[tok];
        let dg = &dgate.v[tok * k..(tok + 1) * k];
        let dge = &dgate.e[tok * k..(tok + 1) * k];
        let inner: f64 = (0..k).map(|c| gates[c] * dg[c]).sum();
        let inner_e: f64 = (0..k).map(|c| gates[c] * dge[c]).sum();
        let inner_abs: f64 = (0..k).map(|c| (gates[c] * dg[c]).abs()).sum();
        let rel = 4e-5 + gamma(k + 4) + 2f64.powi(-18);
        for c in 0..k {
            let at = tok * e + ids[c];
            match routing {
                Routing::Softmax(_) => {
                    let g = gates[c];
                    dlogits.v[at] = g * (dg[c] - inner);
                    dlogits.e[at] = g * (dge[c] + inner_e) + rel * g * (dg[c].abs() + inner_abs);
                }
                Routing::Grouped(cfg) => {
                    let scale = f64::from(cfg.scale);
                    let sum: f64 = ids.iter().map(|&i| sigmoid(p.logits[tok * e + i])).sum();
                    let s = sigmoid(p.logits[at]);
                    let q = s * (1.0 - s) / sum;
                    dlogits.v[at] = q * (scale * dg[c] - inner);
                    // s(1 − s) from the f32 s, within 2⁻²⁰ of s: absolutely within 2⁻²⁰
                    // (when s rounds to 1, the f32 product is 0).
                    dlogits.e[at] = q * (scale * dge[c] + inner_e)
                        + (rel * q + 2f64.powi(-20) / sum) * (scale * dg[c].abs() + inner_abs);
                }
            }
        }
    }
    Some(Grads {
        y,
        dx,
        dlogits,
        d_gate,
        d_up,
        d_down,
    })
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
    let f32s = |rng: &mut Rng, n: usize, s: f64| -> Vec<f64> {
        (0..n)
            .map(|_| f64::from(rng.uniform(-s, s) as f32))
            .collect()
    };
    let x = bf(rng, t * h, 1.0);
    let mut logits = f32s(rng, t * e, 3.0);
    let mut bias = f32s(rng, e, 0.1);
    if let Some((hot, cold)) = c.extremes {
        for r in 0..t {
            logits[r * e + hot] = 30.0;
            logits[r * e + cold] = -30.0;
        }
        bias[hot] = 1.0;
        bias[cold] = -1.0;
    }
    let wg = bf(rng, e * f * h, 2.0 / (h as f64).sqrt());
    let wu = bf(rng, e * f * h, 2.0 / (h as f64).sqrt());
    let wd = bf(rng, e * h * f, 2.0 / (f as f64).sqrt());
    let dy = f32s(rng, t * h, 1.0);
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
        dy,
    }
}

fn tensor(device: &Device, dtype: tilekit::ir::ScalarType, shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_host(&HostTensor::new(dtype, shape, v).unwrap(), device).unwrap()
}

/// Every element of `got` within its bound of `want`; returns the worst error / bound.
fn compare(what: &str, name: &str, got: &Tensor, want: &Q) -> f64 {
    let got = got.to_f64_vec().unwrap();
    assert_eq!(got.len(), want.v.len(), "{what}: {name}'s length");
    let mut worst: f64 = 0.0;
    for (i, (&g, (&w, &b))) in got.iter().zip(want.v.iter().zip(&want.e)).enumerate() {
        let bound = b + 1e-30;
        let err = (g - w).abs();
        assert!(
            err <= bound,
            "{what}: {name}[{i}] = {g}, expected {w} (error {err:.3e} > bound {bound:.3e})"
        );
        worst = worst.max(err / bound);
    }
    worst
}

fn check_backward(device: &Device, c: &Case, t: usize, rng: &mut Rng) {
    let seed = rng.seed;
    let (p, want) = loop {
        let p = draw(rng, c, t);
        if let Some(r) = reference(&p, c.routing, c.layout, false) {
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
    let dy = tensor(device, F32, &[t, h], &p.dy);
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
    let got = moe_bwd::backward(device, &x, &logits, router, weights, c.layout, &dy)
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let worst = [
        compare(&what, "dx", &got.dx, &want.dx),
        compare(&what, "dlogits", &got.dlogits, &want.dlogits),
        compare(&what, "d_gate", &got.d_gate, &want.d_gate),
        compare(&what, "d_up", &got.d_up, &want.d_up),
        compare(&what, "d_down", &got.d_down, &want.d_down),
    ];
    if let Some((_, cold)) = c.extremes {
        // The cold expert has no token: its weight gradients are exactly zero.
        for (name, grad) in [
            ("d_gate", &got.d_gate),
            ("d_up", &got.d_up),
            ("d_down", &got.d_down),
        ] {
            let v = grad.to_f64_vec().unwrap();
            let n = h * f;
            assert!(
                v[cold * n..(cold + 1) * n].iter().all(|&v| v == 0.0),
                "{what}: {name} of the expert with no token"
            );
        }
    }
    println!("{what}: worst error / bound dx, dlogits, dW_gate, dW_up, dW_down {worst:.3?}");
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            what: "Mixtral-like",
            e: 8,
            h: 72,
            f: 40,
            routing: Routing::Softmax(2),
            layout: Layout::Contiguous,
            extremes: None,
        },
        Case {
            what: "Mixtral-like, hot and cold experts, masked",
            e: 8,
            h: 40,
            f: 72,
            routing: Routing::Softmax(2),
            layout: Layout::Masked { capacity: 64 },
            extremes: Some((5, 2)),
        },
        Case {
            what: "Qwen3-like top-4 of 16, hot and cold experts",
            e: 16,
            h: 48,
            f: 24,
            routing: Routing::Softmax(4),
            layout: Layout::Contiguous,
            extremes: Some((3, 11)),
        },
        Case {
            what: "DeepSeek-like top-4 of 32, hot and cold experts",
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
fn the_layer_backward_matches_the_f64_backward_on_the_interpreter_and_the_emulator() {
    let mut rng = Rng::fresh();
    for device in devices() {
        for c in cases() {
            for t in [1, 17, 130] {
                check_backward(&device, &c, t, &mut rng);
            }
        }
    }
}

/// `Σ dy ⊙ y` of the exact f64 forward.
fn loss(p: &Problem, routing: Routing, layout: Layout) -> f64 {
    let r = reference(p, routing, layout, true).expect("no routing tie moved");
    r.y.iter().zip(&p.dy).map(|(a, b)| a * b).sum()
}

/// The f64 backward (without roundings) against central differences of the f64 forward, at
/// random coordinates of each input; the routing keeps its choices (gaps ≥ 10⁻⁵ ≫ the step).
#[test]
fn the_f64_backward_matches_finite_differences_of_the_f64_forward() {
    let mut rng = Rng::fresh();
    let seed = rng.seed;
    let cases = [
        (Routing::Softmax(2), 8, Layout::Contiguous),
        (DEEPSEEK_K4, 32, Layout::Contiguous),
        (Routing::Softmax(2), 8, Layout::Masked { capacity: 2 }),
    ];
    for (routing, e, layout) in cases {
        let c = Case {
            what: "finite differences",
            e,
            h: 12,
            f: 10,
            routing,
            layout,
            extremes: None,
        };
        let (p, g) = loop {
            let p = draw(&mut rng, &c, 5);
            if let Some(r) = reference(&p, routing, layout, true) {
                break (p, r);
            }
        };
        let step = 1e-6;
        type Field = fn(&mut Problem) -> &mut Vec<f64>;
        let fields: [(&str, Field, &Q); 5] = [
            ("x", |p| &mut p.x, &g.dx),
            ("logits", |p| &mut p.logits, &g.dlogits),
            ("W_gate", |p| &mut p.wg, &g.d_gate),
            ("W_up", |p| &mut p.wu, &g.d_up),
            ("W_down", |p| &mut p.wd, &g.d_down),
        ];
        for (name, field, grad) in fields {
            let n = grad.v.len();
            for _ in 0..12 {
                let i = ((rng.uniform(0.0, 1.0) * n as f64) as usize).min(n - 1);
                let (mut up, mut down) = (p.clone(), p.clone());
                field(&mut up)[i] += step;
                field(&mut down)[i] -= step;
                let fd = (loss(&up, routing, layout) - loss(&down, routing, layout)) / (2.0 * step);
                let err = (fd - grad.v[i]).abs();
                assert!(
                    err <= 1e-6 * (1.0 + fd.abs()),
                    "{routing:?} {layout:?}: d/d{name}[{i}]: backward {}, finite differences {fd} (seed {seed})",
                    grad.v[i]
                );
            }
        }
    }
}

#[test]
fn the_backward_rejects_a_mismatched_dy_with_a_shape_error() {
    let device = Device::Cpu;
    let (t, e, h, f) = (3, 8, 16, 32);
    let x = Tensor::zeros(BF16, &[t, h], &device).unwrap();
    let logits = Tensor::zeros(F32, &[t, e], &device).unwrap();
    let wg = Tensor::zeros(BF16, &[e, f, h], &device).unwrap();
    let wd = Tensor::zeros(BF16, &[e, h, f], &device).unwrap();
    let weights = ExpertWeights {
        gate: &wg,
        up: &wg,
        down: &wd,
    };
    let dy = Tensor::zeros(F32, &[t, h + 1], &device).unwrap();
    let err = moe_bwd::backward(
        &device,
        &x,
        &logits,
        Router::Softmax { top_k: 2 },
        weights,
        Layout::Contiguous,
        &dy,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`dy`") && err.contains("[3, 17]"), "{err}");
}
