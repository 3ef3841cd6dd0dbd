//! More optimizer steps and the global gradient-norm clip, over flat buffers.
//!
//! - [`adamw_mixed`]: AdamW on f32 master weights with bf16 gradients, writing the bf16 model
//!   weights in the same pass (round to nearest even), so a training step reads the gradient
//!   once and never re-reads the master weights to refresh the model's copy.
//! - [`adamw_mixed_sr`]: the same with the model copy rounded to bf16 stochastically
//!   (Philox-seeded, unbiased), for training whose updates are below half a bf16 ulp.
//! - [`lion_step`]: Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023,
//!   Algorithm 2): `c = β1·m + (1 − β1)·g`, `p ← p − lr·(sign(c) + λ·p)`,
//!   `m ← β2·m + (1 − β2)·g`. `sign(0) = 0`, and a NaN in `c` gives a NaN update (not 0), so a
//!   NaN gradient shows in the weights as it does with `torch.sign`.
//! - [`adam_mini_step`]: Adam-mini (Zhang et al., "Adam-mini: Use Fewer Learning Rates To Gain
//!   More", 2024): AdamW whose second moment is one scalar per block of parameters, the mean of
//!   `g²` over the block, so `v` costs 4 bytes per block instead of per parameter. A block is a
//!   row of a 2-D view: a weight `[out, in]` as is gives one `v` per output neuron, and a
//!   query/key projection `[heads·d, in]` viewed as `[heads, d·in]` one per head — the paper's
//!   partitions.
//! - The global L2 norm of a gradient and its clip, on the device with no host round trip
//!   (`torch.nn.utils.clip_grad_norm_`: `coef = min(1, max_norm / (‖g‖ + 1e-6))`):
//!   [`sum_squares`] writes one partial sum of squares per block (no atomics: the result does
//!   not depend on the order blocks run in), [`norm_and_coef`] (one block) adds the partials in
//!   a fixed order and writes `[‖g‖, coef]`, and [`scale_by_coef`] multiplies the gradient by
//!   the coefficient it reads from device memory. [`clip_grad_norm`] runs the three.
//!
//! Each warp of the elementwise kernels updates one chunk of `N` elements; the last chunk is
//! masked by the views' length. The multi-tensor forms (one launch over a list of tensors, on
//! pointer-table views) are in [`optim_multi`](super::optim_multi).

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, record, Rng};
use crate::kernels::optim::{adamw_chunk, widen_to_f32, AdamwScalars, Hyper};
use crate::{Device, ScalarArg};

/// Elements per warp of the elementwise kernels here.
pub const CHUNK: usize = 256;
/// Warps per block of the elementwise kernels here.
pub const WARPS: usize = 4;

/// AdamW (as [`adamw_step`](crate::kernels::optim::adamw_step)) on f32 master weights `p` with
/// bf16 gradients `g`, also writing `p_model = bf16(p)`. Grid: `[⌈n / (WARPS·N)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_adamw_mixed,
    shapes(p: [L], g: [L], m: [L], v: [L], p_model: [L]),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn adamw_mixed<const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<bf16, 1>,
    m: GlMut<f32, 1>,
    v: GlMut<f32, 1>,
    p_model: GlMut<bf16, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let chunk = block_idx_x() * WARPS as i32 + warp_idx();
    let s = AdamwScalars {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        bias_correction1,
        bias_correction2,
    };
    let p_new = adamw_chunk::<bf16, N>(p, g, m, v, chunk, s);
    store(p_model.chunk(chunk), p_new.cast::<bf16>());
}

/// [`adamw_mixed`] with the bf16 model copy rounded stochastically: each weight rounds up to
/// the next bf16 with probability (its distance from the bf16 below) / (the gap between the
/// two), so the copy is unbiased, `E[bf16(p)] = p`, and small updates that round-to-nearest
/// would drop every step still reach the model on average. The draw is Philox-4x32-10 with key
/// `(seed_lo, seed_hi)` and counter `(element index, offset, 0, 0)`: pass a fresh `offset` (the
/// step number) each step. The low 16 bits of the first word are added to the f32 bits below
/// the bf16 mantissa, and the sum truncated: a carry (probability = the fraction) rounds up in
/// magnitude. NaN stays NaN; infinities stay infinite. Grid: `[⌈n / (WARPS·N)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_adamw_mixed_sr,
    shapes(p: [L], g: [L], m: [L], v: [L], p_model: [L]),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn adamw_mixed_sr<const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<bf16, 1>,
    m: GlMut<f32, 1>,
    v: GlMut<f32, 1>,
    p_model: GlMut<bf16, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
    seed_lo: Scalar<u32>,
    seed_hi: Scalar<u32>,
    offset: Scalar<u32>,
) {
    let chunk = block_idx_x() * WARPS as i32 + warp_idx();
    let s = AdamwScalars {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        bias_correction1,
        bias_correction2,
    };
    let p_new = adamw_chunk::<bf16, N>(p, g, m, v, chunk, s);
    store(
        p_model.chunk(chunk),
        stochastic_bf16(p_new, (seed_lo, seed_hi), offset, chunk),
    );
}

/// `x` rounded to bf16 stochastically (see [`adamw_mixed_sr`]); `chunk` numbers the chunk of
/// `N` elements `x` holds, so element `k` draws with counter `chunk·N + k`.
#[track_caller]
fn stochastic_bf16<const N: usize>(
    x: Rv<f32, N>,
    key: (Scalar<u32>, Scalar<u32>),
    offset: Scalar<u32>,
    chunk: Scalar<i32>,
) -> Rv<bf16, N> {
    let lane: Rv<u32, N> = iota_rows();
    let base: Scalar<u32> = convert(chunk * N as i32);
    let zero: Rv<u32, N> = zeros();
    let words = philox(key, [lane + base, splat(offset), zero, zero]);
    let noise = words[0] & 0xFFFFu32;
    // The truncated sum has zero low bits: bf16 holds it exactly.
    let rounded = ((x.bitcast::<u32>() + noise) & 0xFFFF_0000u32).bitcast::<f32>();
    select(x.ne(x), x, rounded).cast::<bf16>()
}

/// Lion's hyper-parameters, as the Lion paper and `lion-pytorch` name them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub weight_decay: f32,
}

impl LionHyper {
    /// `(lr, β1, β2, λ)` widened to f64.
    pub fn as_f64(&self) -> (f64, f64, f64, f64) {
        (
            f64::from(self.lr),
            f64::from(self.beta1),
            f64::from(self.beta2),
            f64::from(self.weight_decay),
        )
    }

    /// How close to 0 an f64 `c = β1·m + (1 − β1)·g` may be and still take the other sign in
    /// f32, for |m|, |g| ≤ 1: the kernel rounds two products and their sum, each by at most
    /// 2⁻²⁴ of a value below `max(|m|, |g|) ≤ 1`.
    pub const SIGN_SLACK: f64 = 4.0 / 16_777_216.0;
}

/// One Lion step (see the module documentation). Grid: `[⌈n / (WARPS·N)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_lion,
    shapes(p: [L], g: [L], m: [L]),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
pub fn lion_step<const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<f32, 1>,
    m: GlMut<f32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    weight_decay: Scalar<f32>,
) {
    let chunk = block_idx_x() * WARPS as i32 + warp_idx();
    lion_chunk::<f32, N>(p, g, m, chunk, lr, beta1, beta2, weight_decay);
}

/// Chunk `chunk` of `N` elements of one Lion tensor with f32 weights and momentum: loads the
/// gradient (f32, or a narrower float widened to f32), steps (see the module documentation),
/// stores `p` and `m` and returns the new weights (for a model copy). [`lion_step`] and the
/// multi-tensor [`lion_multi`](super::optim_multi::lion_multi) and
/// [`lion_mixed_multi`](super::optim_multi::lion_mixed_multi) step through it.
#[crate::func]
#[allow(clippy::too_many_arguments)]
pub fn lion_chunk<G: RegDtype, const N: usize>(
    p: GlMut<f32, 1>,
    g: Gl<G, 1>,
    m: GlMut<f32, 1>,
    chunk: Scalar<i32>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    weight_decay: Scalar<f32>,
) -> Rv<f32, N> {
    let pv: Rv<f32, N> = load(p.chunk(chunk));
    let gv = widen_to_f32::<G, N>(load(g.chunk(chunk)));
    let mv: Rv<f32, N> = load(m.chunk(chunk));
    let (p_new, m_new) = lion_update(pv, gv, mv, lr, beta1, beta2, weight_decay);
    store(p.chunk(chunk), p_new);
    store(m.chunk(chunk), m_new);
    p_new
}

/// One Lion update of `N` elements in f32 (see the module documentation): `(p, m)` after the
/// step. [`lion_chunk`] and the bf16 multi-tensor
/// [`lion_bf16_multi`](super::optim_multi::lion_bf16_multi) update through it.
#[crate::func]
#[allow(clippy::too_many_arguments)]
pub fn lion_update<const N: usize>(
    pv: Rv<f32, N>,
    gv: Rv<f32, N>,
    mv: Rv<f32, N>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    weight_decay: Scalar<f32>,
) -> (Rv<f32, N>, Rv<f32, N>) {
    let one = lit::<f32>(1.0);
    let c = mv * beta1 + gv * (one - beta1);
    let ones: Rv<f32, N> = fill(1.0);
    let sign = select(c.gt(0.0), ones, 0.0) - select(c.lt(0.0), ones, 0.0);
    // NaN compares false both ways: pass it through instead of a zero update.
    let sign = select(c.ne(c), c, sign);
    (
        pv - (sign + pv * weight_decay) * lr,
        mv * beta2 + gv * (one - beta2),
    )
}

/// One Adam-mini step on a 2-D view: `v[r]` is row `r`'s second moment (see the module
/// documentation). Each warp owns 16 rows and walks their columns twice: once for the mean of
/// `g²`, once for the update. Grid: `[⌈rows / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    selftest = selftest_adam_mini,
    shapes(p: [ROWS, COLS], g: [ROWS, COLS], m: [ROWS, COLS], v: [ROWS], COLS >= 1),
    grid = [ceil_div(ROWS, 16 * WARPS), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn adam_mini_step<const C: usize, const WARPS: usize>(
    p: GlMut<f32, 2>,
    g: Gl<f32, 2>,
    m: GlMut<f32, 2>,
    v: GlMut<f32, 1>,
    lr: Scalar<f32>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    eps: Scalar<f32>,
    weight_decay: Scalar<f32>,
    bias_correction1: Scalar<f32>,
    bias_correction2: Scalar<f32>,
) {
    let rows = block_idx_x() * WARPS as i32 + warp_idx();
    let s = AdamwScalars {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        bias_correction1,
        bias_correction2,
    };
    adam_mini_rows::<f32, C>(p, g, m, v, None, rows, s);
}

/// Adam-mini on the 16 rows `16·rows ..` of one 2-D view (fewer at its end): the mean of `g²`
/// over each row updates that row's `v`, then the row's columns are updated with it, `C` at a
/// time. The gradient is f32 or a narrower float widened to f32; given a `model` view, the
/// updated weights are also stored there rounded to bf16 (nearest even). [`adam_mini_step`] and
/// the multi-tensor [`adam_mini_multi`](super::optim_multi::adam_mini_multi) and
/// [`adam_mini_mixed_multi`](super::optim_multi::adam_mini_mixed_multi) step through it.
#[crate::func]
pub fn adam_mini_rows<G: RegDtype, const C: usize>(
    p: GlMut<f32, 2>,
    g: Gl<G, 2>,
    m: GlMut<f32, 2>,
    v: GlMut<f32, 1>,
    model: Option<GlMut<bf16, 2>>,
    rows: Scalar<i32>,
    s: AdamwScalars,
) {
    let one = lit::<f32>(1.0);
    let col_tiles = ceil_div(g.cols(), C);
    // Columns past the view load as zeros and add nothing to the sum of squares.
    let mut sum_sq: Rv<f32, 16> = zeros();
    for k in range(0, col_tiles) {
        let gt = widen_tile_to_f32::<G, C>(load(g.tile(rows, k)));
        sum_sq += row_sum(gt * gt);
    }
    let vv: Rv<f32, 16> = load(v.chunk(rows));
    let v_new = vv * s.beta2 + sum_sq / g.cols().cast::<f32>() * (one - s.beta2);
    store(v.chunk(rows), v_new);
    let denom = (v_new / s.bias_correction2).sqrt() + s.eps;
    for k in range(0, col_tiles) {
        let pt: Rt<f32, 16, C> = load(p.tile(rows, k));
        let gt = widen_tile_to_f32::<G, C>(load(g.tile(rows, k)));
        let mt: Rt<f32, 16, C> = load(m.tile(rows, k));
        let m_new = mt * s.beta1 + gt * (one - s.beta1);
        let adam = div_row(m_new / s.bias_correction1, denom);
        let p_new = pt - (adam + pt * s.weight_decay) * s.lr;
        store(p.tile(rows, k), p_new);
        if let Some(model) = model {
            store(model.tile(rows, k), p_new.cast::<bf16>());
        }
        store(m.tile(rows, k), m_new);
    }
}

/// A 16-row tile as f32: the tile itself when it is f32 already (no conversion op), else
/// converted.
#[track_caller]
fn widen_tile_to_f32<G: RegDtype, const C: usize>(x: Rt<G, 16, C>) -> Rt<f32, 16, C> {
    if G::SCALAR == ScalarType::F32 {
        // Each dtype has one Rust type: this is the same type.
        Rt::from_value(x.value())
    } else {
        x.cast::<f32>()
    }
}

/// `partial[b]` = the sum of `g[i]²` over block `b`'s `N` elements, in f32, one warp per block
/// (so no sums of different warps meet). Grid: `[⌈n / N⌉, 1, 1]`; `partial` has one element
/// per block.
#[crate::kernel(
    warps = 1,
    variants(<1024>),
    shapes(g: [L], partial: [P], P == ceil_div(L, N)),
    grid = [ceil_div(L, N), 1, 1]
)]
pub fn sum_squares<const N: usize>(g: Gl<f32, 1>, partial: GlMut<f32, 1>) {
    let block = block_idx_x();
    let gv: Rv<f32, N> = load(g.chunk(block));
    store(partial.at(block), reduce_all(Red::Sum, gv * gv));
}

/// `stats = [‖g‖, coef]` from the partial sums of squares, added in a fixed order by one warp:
/// `coef = min(1, max_norm / (‖g‖ + 1e-6))`, NaN when the norm is NaN (so a NaN gradient is not
/// clipped into looking finite). Grid: `[1, 1, 1]`.
#[crate::kernel(
    warps = 1,
    variants(<1024>),
    shapes(partial: [P], stats: [2]),
    grid = [1, 1, 1]
)]
pub fn norm_and_coef<const N: usize>(
    partial: Gl<f32, 1>,
    max_norm: Scalar<f32>,
    stats: GlMut<f32, 1>,
) {
    let mut acc: Rv<f32, N> = zeros();
    for k in range(0, ceil_div(partial.len(), N)) {
        let x: Rv<f32, N> = load(partial.chunk(k));
        acc += x;
    }
    let norm = reduce_all(Red::Sum, acc).sqrt();
    let ratio = max_norm / (norm + 1e-6);
    // `ge` is false for NaN: a NaN ratio stays NaN.
    let coef = select(ratio.ge(1.0), lit::<f32>(1.0), ratio);
    store(stats.at(0), norm);
    store(stats.at(1), coef);
}

/// `g ← g · stats[1]` (the coefficient [`norm_and_coef`] wrote). Grid: `[⌈n / (WARPS·N)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    selftest = selftest_clip,
    shapes(g: [L], stats: [2]),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
pub fn scale_by_coef<const N: usize, const WARPS: usize>(g: GlMut<f32, 1>, stats: Gl<f32, 1>) {
    let chunk = block_idx_x() * WARPS as i32 + warp_idx();
    let coef: Scalar<f32> = load(stats.at(1));
    let gv: Rv<f32, N> = load(g.chunk(chunk));
    store(g.chunk(chunk), gv * coef);
}

/// Clips `g` in place to global L2 norm `max_norm` on `device`, with `partial` (one element per
/// 1024 of `g`) and `stats` (2) as device-side scratch; returns nothing to the host: `stats`
/// holds `[‖g‖, coef]` afterwards.
pub fn clip_grad_norm(
    device: &Device,
    g: &mut HostTensor,
    max_norm: f32,
    partial: &mut HostTensor,
    stats: &mut HostTensor,
) -> Result<(), crate::Error> {
    sum_squares::<1024>::launch_auto(device, g, partial)?;
    norm_and_coef::<1024>::launch_auto(device, partial, ScalarArg::from(max_norm), stats)?;
    scale_by_coef::<CHUNK, WARPS>::launch_auto(device, g, stats)
}

/// AdamW with bf16 gradients against the f64 step, and the model copy against the master
/// weights rounded to bf16.
fn selftest_adamw_mixed(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 5,
    };
    let (f, b) = (ScalarType::F32, ScalarType::BF16);
    let mut sizes = vec![3000, 1];
    if large(device) {
        sizes.push(1_000_003);
    }
    for n in sizes {
        let p0 = rng.tensor(f, &[n], -1.0, 1.0);
        let g = rng.tensor(b, &[n], -1.0, 1.0);
        let m0 = rng.tensor(f, &[n], -0.1, 0.1);
        let v0 = rng.tensor(f, &[n], 0.0, 0.01);
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        let mut model = HostTensor::full(b, &[n], f64::NAN);
        let (bc1, bc2) = h.bias_corrections();
        let s = |x: f32| ScalarArg::from(x);
        adamw_mixed::<CHUNK, WARPS>::launch_auto(
            device,
            &mut p,
            &g,
            &mut m,
            &mut v,
            &mut model,
            s(h.lr),
            s(h.beta1),
            s(h.beta2),
            s(h.eps),
            s(h.weight_decay),
            s(bc1),
            s(bc2),
        )
        .map_err(|e| e.to_string())?;
        let (b1, b2, t) = (f64::from(h.beta1), f64::from(h.beta2), h.step as i32);
        let (gv, pv, mv, vv) = (g.to_vec(), p0.to_vec(), m0.to_vec(), v0.to_vec());
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let mi = b1 * mv[i] + (1.0 - b1) * gv[i];
                let vi = b2 * vv[i] + (1.0 - b2) * gv[i] * gv[i];
                let upd = mi / (1.0 - b1.powi(t)) / ((vi / (1.0 - b2.powi(t))).sqrt() + 1e-8);
                pv[i] - f64::from(h.lr) * (upd + f64::from(h.weight_decay) * pv[i])
            })
            .collect();
        let err = record(format!("{n} parameters: p"), &p.to_vec(), &want, 1e-5);
        // The model copy is the kernel's own master weights rounded to bf16, exactly.
        let rounded = HostTensor::new(b, &[n], &p.to_vec()).map_err(|e| e.to_string())?;
        let (got_model, want_model) = (model.to_vec(), rounded.to_vec());
        if let Some(i) = (0..n).find(|&i| got_model[i].to_bits() != want_model[i].to_bits()) {
            return Err(format!(
                "{n} parameters: model copy {} at {i}, expected bf16(p = {}) = {} (seed {})",
                got_model[i],
                p.to_vec()[i],
                want_model[i],
                rng.seed
            ));
        }
        if err > 1e-5 {
            return Err(format!(
                "{n} parameters: p error {err:.2e} (seed {})",
                rng.seed
            ));
        }
    }
    Ok("master weights against the f64 step, model copy = bf16(master)".into())
}

/// The two bf16 values around `x` (bit patterns truncated and truncated plus one bf16 ulp in
/// magnitude) and where `x` lies between them, in [0, 1): the probability it rounds up.
pub fn bf16_neighbours(x: f32) -> (f32, f32, f64) {
    let bits = x.to_bits();
    let down = bits & 0xFFFF_0000;
    let frac = f64::from(bits & 0xFFFF) / 65536.0;
    (
        f32::from_bits(down),
        f32::from_bits(down.wrapping_add(0x1_0000)),
        frac,
    )
}

/// [`adamw_mixed_sr`]: master weights against the f64 step; every model weight one of the two
/// bf16 values around its master weight (exact where the master weight is a bf16), and the
/// count of round-ups within 5 standard deviations of its expectation, the sum of the
/// round-up probabilities (round to nearest would miss it by far).
fn selftest_adamw_mixed_sr(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 5,
    };
    let (f, b) = (ScalarType::F32, ScalarType::BF16);
    let mut sizes = vec![3000, 1];
    if large(device) {
        sizes.push(1_000_003);
    }
    for n in sizes {
        let p0 = rng.tensor(f, &[n], -1.0, 1.0);
        let g = rng.tensor(b, &[n], -1.0, 1.0);
        let m0 = rng.tensor(f, &[n], -0.1, 0.1);
        let v0 = rng.tensor(f, &[n], 0.0, 0.01);
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        let mut model = HostTensor::full(b, &[n], f64::NAN);
        let (bc1, bc2) = h.bias_corrections();
        let s = |x: f32| ScalarArg::from(x);
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
            s(h.lr),
            s(h.beta1),
            s(h.beta2),
            s(h.eps),
            s(h.weight_decay),
            s(bc1),
            s(bc2),
            key[0].into(),
            key[1].into(),
            h.step.into(),
        )
        .map_err(|e| e.to_string())?;
        let (b1, b2, t) = (f64::from(h.beta1), f64::from(h.beta2), h.step as i32);
        let (gv, pv, mv, vv) = (g.to_vec(), p0.to_vec(), m0.to_vec(), v0.to_vec());
        let want: Vec<f64> = (0..n)
            .map(|i| {
                let mi = b1 * mv[i] + (1.0 - b1) * gv[i];
                let vi = b2 * vv[i] + (1.0 - b2) * gv[i] * gv[i];
                let upd = mi / (1.0 - b1.powi(t)) / ((vi / (1.0 - b2.powi(t))).sqrt() + 1e-8);
                pv[i] - f64::from(h.lr) * (upd + f64::from(h.weight_decay) * pv[i])
            })
            .collect();
        let err = record(format!("{n} parameters: p"), &p.to_vec(), &want, 1e-5);
        if err > 1e-5 {
            return Err(format!(
                "{n} parameters: p error {err:.2e} (seed {})",
                rng.seed
            ));
        }
        let (master, copy) = (p.to_vec(), model.to_vec());
        let (mut ups, mut expected, mut variance) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let (down, up, frac) = bf16_neighbours(master[i] as f32);
            let got = copy[i] as f32;
            if got.to_bits() == up.to_bits() && frac > 0.0 {
                ups += 1.0;
            } else if got.to_bits() != down.to_bits() {
                return Err(format!(
                    "{n} parameters: model weight {got} at {i}, expected {down} or {up} around the \
                     master weight {} (seed {})",
                    master[i], rng.seed
                ));
            }
            expected += frac;
            variance += frac * (1.0 - frac);
        }
        if (ups - expected).abs() > 5.0 * variance.sqrt() + 1.0 {
            return Err(format!(
                "{n} parameters: {ups} weights rounded up, expected {expected:.1} ± {:.1} \
                 (seed {})",
                variance.sqrt(),
                rng.seed
            ));
        }
    }
    Ok("master weights against the f64 step, model copy a bf16 neighbour, unbiased count".into())
}

/// Lion against the f64 step from the paper's algorithm, with zero and NaN in the momentum.
fn selftest_lion(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let (lr, b1, b2, wd) = (1e-4f32, 0.9f32, 0.99f32, 0.1f32);
    let f = ScalarType::F32;
    let mut sizes = vec![3000, 5];
    if large(device) {
        sizes.push(1_000_003);
    }
    for n in sizes {
        let p0 = rng.tensor(f, &[n], -1.0, 1.0);
        let mut gv = rng.tensor(f, &[n], -1.0, 1.0).to_vec();
        let mut mv = rng.tensor(f, &[n], -0.1, 0.1).to_vec();
        // c = 0 exactly at element 0 (sign 0), NaN at element 1 (the update is NaN).
        (gv[0], mv[0]) = (0.0, 0.0);
        gv[1] = f64::NAN;
        let g = HostTensor::new(f, &[n], &gv).map_err(|e| e.to_string())?;
        let m0 = HostTensor::new(f, &[n], &mv).map_err(|e| e.to_string())?;
        let (mut p, mut m) = (p0.clone(), m0.clone());
        let s = |x: f32| ScalarArg::from(x);
        lion_step::<CHUNK, WARPS>::launch_auto(
            device,
            &mut p,
            &g,
            &mut m,
            s(lr),
            s(b1),
            s(b2),
            s(wd),
        )
        .map_err(|e| e.to_string())?;
        let (lr, b1, b2, wd) = (f64::from(lr), f64::from(b1), f64::from(b2), f64::from(wd));
        let pv = p0.to_vec();
        let (mut want_p, mut want_m) = (Vec::new(), Vec::new());
        for i in 0..n {
            let c = b1 * mv[i] + (1.0 - b1) * gv[i];
            let sign = if c.is_nan() {
                c
            } else if c > 0.0 {
                1.0
            } else if c < 0.0 {
                -1.0
            } else {
                0.0
            };
            want_p.push(pv[i] - lr * (sign + wd * pv[i]));
            want_m.push(b2 * mv[i] + (1.0 - b2) * gv[i]);
        }
        let got_p = p.to_vec();
        if !got_p[1].is_nan() {
            return Err(format!(
                "{n} parameters: a NaN gradient gave p = {}",
                got_p[1]
            ));
        }
        // Compare the finite elements (element 1 is NaN on both sides by construction).
        let keep = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .enumerate()
                .filter(|(i, _)| *i != 1)
                .map(|(_, x)| *x)
                .collect()
        };
        let ep = record(
            format!("{n} parameters: p"),
            &keep(&got_p),
            &keep(&want_p),
            1e-6,
        );
        let em = record(
            format!("{n} parameters: m"),
            &keep(&m.to_vec()),
            &keep(&want_m),
            1e-6,
        );
        if ep > 1e-6 || em > 1e-6 {
            return Err(format!(
                "{n} parameters: p error {ep:.2e}, m error {em:.2e} (seed {})",
                rng.seed
            ));
        }
    }
    Ok("p and m against the f64 step, sign(0) = 0, NaN passes through".into())
}

/// Adam-mini against the f64 step, with row lengths that are not multiples of the tile.
fn selftest_adam_mini(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let h = Hyper {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        step: 4,
    };
    let f = ScalarType::F32;
    let mut shapes = vec![(70, 100), (1, 1), (16, 64), (33, 257)];
    if large(device) {
        shapes.push((4096, 1024));
    }
    for (rows, cols) in shapes {
        let p0 = rng.tensor(f, &[rows, cols], -1.0, 1.0);
        let g = rng.tensor(f, &[rows, cols], -1.0, 1.0);
        let m0 = rng.tensor(f, &[rows, cols], -0.1, 0.1);
        let v0 = rng.tensor(f, &[rows], 0.0, 0.01);
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        let (bc1, bc2) = h.bias_corrections();
        let s = |x: f32| ScalarArg::from(x);
        adam_mini_step::<32, WARPS>::launch_auto(
            device,
            &mut p,
            &g,
            &mut m,
            &mut v,
            s(h.lr),
            s(h.beta1),
            s(h.beta2),
            s(h.eps),
            s(h.weight_decay),
            s(bc1),
            s(bc2),
        )
        .map_err(|e| e.to_string())?;
        let (b1, b2, t) = (f64::from(h.beta1), f64::from(h.beta2), h.step as i32);
        let (gv, pv, mv, vv) = (g.to_vec(), p0.to_vec(), m0.to_vec(), v0.to_vec());
        let (mut want_p, mut want_m, mut want_v) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rows {
            let row = &gv[r * cols..][..cols];
            let mean_sq = row.iter().map(|x| x * x).sum::<f64>() / cols as f64;
            let vr = b2 * vv[r] + (1.0 - b2) * mean_sq;
            want_v.push(vr);
            let denom = (vr / (1.0 - b2.powi(t))).sqrt() + f64::from(h.eps);
            for c in 0..cols {
                let i = r * cols + c;
                let mi = b1 * mv[i] + (1.0 - b1) * gv[i];
                want_m.push(mi);
                let upd = mi / (1.0 - b1.powi(t)) / denom;
                want_p.push(pv[i] - f64::from(h.lr) * (upd + f64::from(h.weight_decay) * pv[i]));
            }
        }
        let ep = record(format!("{rows}×{cols}: p"), &p.to_vec(), &want_p, 1e-5);
        let em = record(format!("{rows}×{cols}: m"), &m.to_vec(), &want_m, 1e-5);
        let ev = record(format!("{rows}×{cols}: v"), &v.to_vec(), &want_v, 1e-5);
        if ep > 1e-5 || em > 1e-5 || ev > 1e-5 {
            return Err(format!(
                "{rows}×{cols}: p error {ep:.2e}, m {em:.2e}, v {ev:.2e} (seed {})",
                rng.seed
            ));
        }
    }
    Ok("p, m and the per-row v against the f64 step".into())
}

/// The clip against f64: norm, coefficient and clipped gradient, for a norm above and below
/// `max_norm`, and a NaN gradient staying NaN.
fn selftest_clip(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let f = ScalarType::F32;
    let mut cases = vec![(5000, 1.0f32), (1, 10.0), (4097, 1e3)];
    if large(device) {
        cases.push((3_000_001, 1.0));
    }
    for (n, max_norm) in cases {
        let g0 = rng.tensor(f, &[n], -1.0, 1.0);
        let mut g = g0.clone();
        let mut partial = HostTensor::full(f, &[n.div_ceil(1024)], f64::NAN);
        let mut stats = HostTensor::full(f, &[2], f64::NAN);
        clip_grad_norm(device, &mut g, max_norm, &mut partial, &mut stats)
            .map_err(|e| e.to_string())?;
        let gv = g0.to_vec();
        let norm = gv.iter().map(|x| x * x).sum::<f64>().sqrt();
        let coef = (f64::from(max_norm) / (norm + 1e-6)).min(1.0);
        let want: Vec<f64> = gv.iter().map(|x| x * coef).collect();
        let st = stats.to_vec();
        let en = record(format!("{n}: norm"), &st[..1], &[norm], 1e-5);
        let ec = record(format!("{n}: coef"), &st[1..], &[coef], 1e-5);
        let eg = record(format!("{n}: g"), &g.to_vec(), &want, 1e-5);
        if en > 1e-5 || ec > 1e-5 || eg > 1e-5 {
            return Err(format!(
                "{n} elements, max_norm {max_norm}: norm error {en:.2e}, coef {ec:.2e}, g {eg:.2e} (seed {})",
                rng.seed
            ));
        }
    }
    // A NaN anywhere makes the norm, the coefficient and every clipped element NaN.
    let mut gv = rng.tensor(f, &[3000], -1.0, 1.0).to_vec();
    gv[2999] = f64::NAN;
    let mut g = HostTensor::new(f, &[3000], &gv).map_err(|e| e.to_string())?;
    let mut partial = HostTensor::full(f, &[3], 0.0);
    let mut stats = HostTensor::full(f, &[2], 0.0);
    clip_grad_norm(device, &mut g, 1.0, &mut partial, &mut stats).map_err(|e| e.to_string())?;
    if !g.to_vec().iter().all(|x| x.is_nan()) || !stats.to_vec().iter().all(|x| x.is_nan()) {
        return Err(format!(
            "a NaN gradient was clipped to {:?}",
            &g.to_vec()[..4]
        ));
    }
    Ok("norm, coefficient and clipped gradient against f64; NaN stays NaN".into())
}
