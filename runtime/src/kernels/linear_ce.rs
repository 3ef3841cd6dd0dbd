//! Fused linear cross-entropy: the loss of a classifier `logits = hidden · weightᵀ` over a large
//! vocabulary and its gradients with respect to `hidden` and `weight`, without a `[T, V]`
//! logits tensor (the way Liger's fused linear cross-entropy saves the memory of the last layer).
//!
//! Tokens are taken `Tc` at a time (the chunk). For each chunk, on the device and without a
//! round trip to the host:
//! 1. `logits = hidden[chunk] · weightᵀ` (`[Tc, V]`, f32) with the library [`gemm`];
//! 2. [`cross_entropy_fwd_bwd`] on it: the online log-sum-exp over vocabulary tiles, the
//!    per-token loss and nll, and the gradient of the loss written over the logits (the same
//!    kernel, options and scale as [`cross_entropy`](crate::kernels::loss::cross_entropy));
//! 3. the gradient rounded to bf16 ([`round_to_bf16`]: the GEMM's operands are bf16, as Liger's
//!    are), then `grad_hidden[chunk] = dlogits · weight` and `grad_weight += dlogitsᵀ ·
//!    hidden[chunk]` with the GEMM, both accumulated in f32. The first chunk writes
//!    `grad_weight`; later ones multiply `Vc` vocabulary rows at a time into a partial product
//!    and add it ([`accumulate`]).
//!
//! The count of non-ignored tokens (for the mean's scale) runs first over all targets, and the
//! reduction to the mean loss and perplexity last, as in `cross_entropy`.
//!
//! Memory besides the arguments: the chunk's f32 logits and their bf16 copy (`6·Tc·V` bytes) and
//! a partial product of `Vc × H` f32 with `Vc·H ≤ Tc·V` (only when there is more than one chunk):
//! at most `10·Tc·V` bytes. The default chunk takes `Tc ≈ T·H / V` tokens (rounded up to 16), so
//! the workspace is about `10·T·H` bytes, the size of the activations themselves; a `[T, V]` f32
//! tensor would be `4·T·V`.
//!
//! The logits of ignored tokens are computed (their loss and gradient are then 0): their hidden
//! states must be finite, as torch's `0 · NaN` would otherwise reach `grad_weight`.

use crate::dsl::*;
use crate::ir::ScalarType::{self, BF16, F32, I32};
use crate::kernels::check::tiles;
use crate::kernels::gemm;
use crate::kernels::loss::{
    cross_entropy_count, cross_entropy_fwd_bwd, cross_entropy_reduce, expect_tensor,
    CrossEntropyOptions, LossError, Reduction, CHUNK, COLS, ROWS, STATS, WARPS,
};
use crate::{Device, ScalarArg, Tensor};

/// Columns per warp tile of [`round_to_bf16`] and [`accumulate`].
pub const EW_COLS: usize = 64;
/// Warps per block of [`round_to_bf16`] and [`accumulate`].
pub const EW_WARPS: usize = 4;
/// The library GEMM variant of the products (f32 out, 64 × 64 block tiles of four 32 × 32 warp
/// tiles).
type Gemm = gemm::gemm<f32, 64, 64, 32, 32, 32>;
/// The block tile of [`Gemm`].
const GEMM_TILE: usize = 64;

/// `dst = src` rounded to bf16 (round to nearest even), one `16 × C` tile per warp. Grid:
/// `[⌈N / C⌉, ⌈R / (16·WARPS)⌉, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<64, 4>),
    shapes(src: [R, N], dst: [R, N]),
    grid = [ceil_div(N, C), ceil_div(R, 16 * WARPS), 1]
)]
pub fn round_to_bf16<const C: usize, const WARPS: usize>(src: Gl<f32, 2>, dst: GlMut<bf16, 2>) {
    let rt = block_idx_y() * WARPS as i32 + warp_idx();
    let ct = block_idx_x();
    // Tiles past the edges load zeros and store nothing (the views' shapes mask them).
    let x: Rt<f32, 16, C> = load(src.tile(rt, ct));
    store(dst.tile(rt, ct), x.cast::<bf16>());
}

/// `acc += part`, one `16 × C` tile per warp. Grid: `[⌈N / C⌉, ⌈R / (16·WARPS)⌉, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<64, 4>),
    shapes(acc: [R, N], part: [R, N]),
    grid = [ceil_div(N, C), ceil_div(R, 16 * WARPS), 1]
)]
pub fn accumulate<const C: usize, const WARPS: usize>(acc: GlMut<f32, 2>, part: Gl<f32, 2>) {
    let rt = block_idx_y() * WARPS as i32 + warp_idx();
    let ct = block_idx_x();
    let a: Rt<f32, 16, C> = load(acc.tile(rt, ct));
    let p: Rt<f32, 16, C> = load(part.tile(rt, ct));
    store(acc.tile(rt, ct), a + p);
}

/// The options of [`linear_cross_entropy`]: those of
/// [`CrossEntropyOptions`] (torch's `ignore_index`, `label_smoothing`, `reduction`, plus
/// `z_loss` and `grad_scale`) and the chunk of tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearCrossEntropyOptions {
    /// Targets equal to this contribute no loss and a zero gradient (torch: -100).
    pub ignore_index: i32,
    /// `ε` in `[0, 1]`: the target distribution is `(1 − ε)·onehot + ε/V`.
    pub label_smoothing: f32,
    pub reduction: Reduction,
    /// The weight `z ≥ 0` of `z·lse²` per token (0 turns it off).
    pub z_loss: f32,
    /// Multiplies the gradients (after the mean's division).
    pub grad_scale: f32,
    /// Tokens per chunk (at least 1); `None` picks `⌈T·H / V⌉` rounded up to a multiple of 16
    /// ([`default_chunk_tokens`]).
    pub chunk_tokens: Option<usize>,
}

impl Default for LinearCrossEntropyOptions {
    fn default() -> Self {
        let ce = CrossEntropyOptions::default();
        LinearCrossEntropyOptions {
            ignore_index: ce.ignore_index,
            label_smoothing: ce.label_smoothing,
            reduction: ce.reduction,
            z_loss: ce.z_loss,
            grad_scale: ce.grad_scale,
            chunk_tokens: None,
        }
    }
}

impl LinearCrossEntropyOptions {
    /// The same loss as [`cross_entropy`](crate::kernels::loss::cross_entropy) options
    /// (`compute_grad` says whether a gradient is wanted).
    pub fn cross_entropy(&self, compute_grad: bool) -> CrossEntropyOptions {
        CrossEntropyOptions {
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            reduction: self.reduction,
            z_loss: self.z_loss,
            grad_scale: self.grad_scale,
            compute_grad,
        }
    }
}

/// Tokens per chunk when the options name none: `⌈T·H / V⌉` rounded up to a multiple of 16
/// (one row tile of the loss kernel), at most `T`: the chunk's logits then take about as many
/// elements as the hidden states.
pub fn default_chunk_tokens(tokens: usize, hidden: usize, vocab: usize) -> usize {
    let per_chunk = tokens
        .saturating_mul(hidden)
        .div_ceil(vocab.max(1))
        .next_multiple_of(ROWS);
    per_chunk.clamp(1, tokens.max(1))
}

/// Where [`linear_cross_entropy`] writes: per-token `loss` and `nll` (f32 `[T]`, 0 for ignored
/// tokens), `stats` (f32 `[4]`: mean loss, perplexity, n_valid, sum of losses) and, where given,
/// the gradients `grad_hidden` (f32 `[T, H]`) and `grad_weight` (f32 `[V, H]`), both
/// overwritten.
pub struct LinearCrossEntropyOutputs<'a> {
    pub loss: &'a mut Tensor,
    pub nll: &'a mut Tensor,
    pub stats: &'a mut Tensor,
    pub grad_hidden: Option<&'a mut Tensor>,
    pub grad_weight: Option<&'a mut Tensor>,
}

impl std::fmt::Debug for LinearCrossEntropyOutputs<'_> {
    /// The shapes, not the elements.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinearCrossEntropyOutputs")
            .field("loss", &self.loss.shape())
            .field("nll", &self.nll.shape())
            .field("stats", &self.stats.shape())
            .field("grad_hidden", &self.grad_hidden.as_ref().map(|t| t.shape()))
            .field("grad_weight", &self.grad_weight.as_ref().map(|t| t.shape()))
            .finish()
    }
}

/// The name the errors of [`linear_cross_entropy`] carry.
const LCE: &str = "linear_cross_entropy";

/// Cross-entropy of `hidden · weightᵀ` (hidden bf16 `[T, H]`, weight bf16 `[V, H]`) against
/// `targets` (i32 `[T]`) on `device`, in chunks of tokens so that no `[T, V]` tensor exists (see
/// the module documentation): writes the per-token losses, the statistics and the requested
/// gradients into `out`. The loss, its options and the gradient's scale are those of
/// [`cross_entropy`](crate::kernels::loss::cross_entropy) on the logits. Errors: a shape, dtype
/// or option out of its range, before any launch; a target outside `[0, V)` that is not
/// `ignore_index`, from the launch.
pub fn linear_cross_entropy(
    device: &Device,
    hidden: &Tensor,
    weight: &Tensor,
    targets: &Tensor,
    options: &LinearCrossEntropyOptions,
    out: LinearCrossEntropyOutputs<'_>,
) -> Result<(), LossError> {
    let (t, h, v) = match (hidden.shape(), weight.shape()) {
        (&[t, h], &[v, _]) => (t, h, v),
        _ => {
            return Err(LossError::Argument {
                function: LCE,
                name: "hidden",
                expected: "hidden [tokens, H] and weight [vocab, H] of rank 2".into(),
                found: format!(
                    "hidden {:?} and weight {:?}",
                    hidden.shape(),
                    weight.shape()
                ),
            })
        }
    };
    if t == 0 || h == 0 || v == 0 || i32::try_from(t.max(h).max(v)).is_err() {
        return Err(LossError::Argument {
            function: LCE,
            name: "hidden",
            expected: "at least one token, hidden unit and vocabulary entry, each at most 2³¹ − 1"
                .into(),
            found: format!(
                "hidden {:?} and weight {:?}",
                hidden.shape(),
                weight.shape()
            ),
        });
    }
    expect_tensor(LCE, "hidden", hidden, &[BF16], &[t, h])?;
    expect_tensor(LCE, "weight", weight, &[BF16], &[v, h])?;
    expect_tensor(LCE, "targets", targets, &[I32], &[t])?;
    expect_tensor(LCE, "loss", out.loss, &[F32], &[t])?;
    expect_tensor(LCE, "nll", out.nll, &[F32], &[t])?;
    expect_tensor(LCE, "stats", out.stats, &[F32], &[STATS])?;
    if let Some(g) = &out.grad_hidden {
        expect_tensor(LCE, "grad_hidden", *g, &[F32], &[t, h])?;
    }
    if let Some(g) = &out.grad_weight {
        expect_tensor(LCE, "grad_weight", *g, &[F32], &[v, h])?;
    }
    let want_grad = out.grad_hidden.is_some() || out.grad_weight.is_some();
    let ce = options.cross_entropy(want_grad);
    ce.validate(LCE)?;
    let tc = match options.chunk_tokens {
        None => default_chunk_tokens(t, h, v),
        Some(0) => {
            return Err(LossError::Argument {
                function: LCE,
                name: "chunk_tokens",
                expected: "at least 1 (or None)".into(),
                found: "0".into(),
            })
        }
        Some(n) => n.min(t),
    };

    // Workspace (see the module documentation).
    let logits = Tensor::zeros(F32, &[tc, v], device)?;
    let mut grad16 = match want_grad {
        true => Some(Tensor::zeros(BF16, &[tc, v], device)?),
        false => None,
    };
    let vc = (tc * v / h).clamp(1, v);
    let mut partial = match out.grad_weight.is_some() && t > tc {
        true => Some(Tensor::zeros(F32, &[vc, h], device)?),
        false => None,
    };
    let weight_t = weight.transpose(0, 1)?;

    let ignore = ScalarArg::from(ce.ignore_index);
    cross_entropy_count::<CHUNK>::launch_auto(device, targets, ignore, &mut *out.stats)?;
    let (eps, z, scale, mean, write_grad) = (
        ScalarArg::from(ce.label_smoothing),
        ScalarArg::from(ce.z_loss),
        ScalarArg::from(ce.grad_scale),
        ScalarArg::from(i32::from(ce.reduction == Reduction::Mean)),
        ScalarArg::from(i32::from(want_grad)),
    );
    let gemm_grid = |m: usize, n: usize| gemm::grid(m, n, GEMM_TILE, GEMM_TILE);
    for (chunk, t0) in (0..t).step_by(tc).enumerate() {
        let n = tc.min(t - t0);
        let hidden_c = hidden.narrow(0, t0, n)?;
        let mut logits_c = logits.narrow(0, 0, n)?;
        Gemm::launch(device, gemm_grid(n, v), &hidden_c, &weight_t, &mut logits_c)?;
        let targets_c = targets.narrow(0, t0, n)?;
        let mut loss_c = out.loss.narrow(0, t0, n)?;
        let mut nll_c = out.nll.narrow(0, t0, n)?;
        cross_entropy_fwd_bwd::<f32, COLS, WARPS>::launch(
            device,
            [tiles(n, ROWS * WARPS), 1, 1],
            &mut logits_c,
            &targets_c,
            &*out.stats,
            &mut loss_c,
            &mut nll_c,
            ignore,
            eps,
            z,
            scale,
            mean,
            write_grad,
        )?;
        let Some(grad16) = &mut grad16 else {
            continue;
        };
        let mut dlogits = grad16.narrow(0, 0, n)?;
        round_to_bf16::<EW_COLS, EW_WARPS>::launch_auto(device, &logits_c, &mut dlogits)?;
        if let Some(grad_hidden) = &out.grad_hidden {
            let mut dst = grad_hidden.narrow(0, t0, n)?;
            Gemm::launch(device, gemm_grid(n, h), &dlogits, weight, &mut dst)?;
        }
        if let Some(grad_weight) = &out.grad_weight {
            let dlogits_t = dlogits.transpose(0, 1)?;
            if chunk == 0 {
                let mut dst = grad_weight.narrow(0, 0, v)?;
                Gemm::launch(device, gemm_grid(v, h), &dlogits_t, &hidden_c, &mut dst)?;
                continue;
            }
            let Some(partial) = &mut partial else {
                unreachable!("a partial product exists when there is more than one chunk")
            };
            for v0 in (0..v).step_by(vc) {
                let m = vc.min(v - v0);
                let mut part = partial.narrow(0, 0, m)?;
                Gemm::launch(
                    device,
                    gemm_grid(m, h),
                    &dlogits_t.narrow(0, v0, m)?,
                    &hidden_c,
                    &mut part,
                )?;
                let mut dst = grad_weight.narrow(0, v0, m)?;
                accumulate::<EW_COLS, EW_WARPS>::launch_auto(device, &mut dst, &part)?;
            }
        }
    }
    cross_entropy_reduce::<CHUNK>::launch_auto(device, &*out.loss, &*out.nll, &mut *out.stats)?;
    Ok(())
}

/// What the f64 reference of [`linear_cross_entropy`] computes.
#[derive(Clone, Debug)]
pub struct LinearReference {
    /// The logits `[T, V]` in f64.
    pub logits: Vec<f64>,
    /// The cross-entropy reference on those logits (loss, nll, the logits' gradient, stats).
    pub ce: crate::kernels::loss::Reference,
    /// `[T, H]` and `[V, H]`.
    pub grad_hidden: Vec<f64>,
    pub grad_weight: Vec<f64>,
    /// The size of the terms each gradient element sums: `Σ_v m[t, v]·|weight[v, i]|` for
    /// `grad_hidden` and `Σ_t m[t, v]·|hidden[t, i]|` for `grad_weight`, where `m = s·(p·|1 +
    /// 2z·lse| + q + 1/V)` bounds the size of the logit's gradient terms (`s·p·(1 + 2z·lse)` and
    /// `s·q`, with the loss kernel's floor `s/V`), 0 for ignored tokens.
    pub size_hidden: Vec<f64>,
    pub size_weight: Vec<f64>,
    /// `max_{t, v} Σ_i |hidden[t, i]·weight[v, i]|`: the size of the logits' terms.
    pub abs_logit: f64,
}

/// The loss and gradients in f64 from the definition: the logits as dot products of the
/// (bf16-exact) inputs, [`loss::reference`](crate::kernels::loss::reference) on them, and the
/// chain rule `grad_hidden = dlogits · weight`, `grad_weight = dlogitsᵀ · hidden`.
pub fn reference(
    hidden: &[f64],
    weight: &[f64],
    (t, h, v): (usize, usize, usize),
    targets: &[i64],
    options: &LinearCrossEntropyOptions,
) -> LinearReference {
    let mut logits = vec![0.0; t * v];
    let mut abs_logit = 0.0f64;
    for r in 0..t {
        let x = &hidden[r * h..][..h];
        for c in 0..v {
            let w = &weight[c * h..][..h];
            logits[r * v + c] = x.iter().zip(w).map(|(a, b)| a * b).sum();
            abs_logit = abs_logit.max(x.iter().zip(w).map(|(a, b)| (a * b).abs()).sum());
        }
    }
    let ce = crate::kernels::loss::reference(&logits, v, targets, &options.cross_entropy(true));
    let (eps, z) = (
        f64::from(options.label_smoothing),
        f64::from(options.z_loss),
    );
    let (mut grad_hidden, mut size_hidden) = (vec![0.0; t * h], vec![0.0; t * h]);
    let (mut grad_weight, mut size_weight) = (vec![0.0; v * h], vec![0.0; v * h]);
    for (r, &target) in targets.iter().enumerate() {
        if target == i64::from(options.ignore_index) {
            continue;
        }
        let row = &logits[r * v..][..v];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
        for c in 0..v {
            let g = ce.grad[r * v + c];
            let q = (1.0 - eps) * f64::from(u8::from(c as i64 == target)) + eps / v as f64;
            let p = (row[c] - lse).exp();
            let m = ce.scale.abs() * (p * (1.0 + 2.0 * z * lse).abs() + q + 1.0 / v as f64);
            for i in 0..h {
                let (x, w) = (hidden[r * h + i], weight[c * h + i]);
                grad_hidden[r * h + i] += g * w;
                size_hidden[r * h + i] += m * w.abs();
                grad_weight[c * h + i] += g * x;
                size_weight[c * h + i] += m * x.abs();
            }
        }
    }
    LinearReference {
        logits,
        ce,
        grad_hidden,
        grad_weight,
        size_hidden,
        size_weight,
        abs_logit,
    }
}

/// The relative error bound of the gradients, against the size of their terms
/// ([`LinearReference::size_hidden`]): the logits are f32 dot products (each off by at most
/// `H·2⁻²⁴·abs_logit`, which moves `p = exp(x − lse)` by twice that, relatively); the loss kernel
/// sums `V` exponentials in f32 (`V·2⁻²⁴`) and evaluates each term to within 10⁻⁴ (ex2.approx,
/// the division, the scale); the result is rounded to bf16 (8 significant bits: 2⁻⁸ relative,
/// round to nearest); then multiplied and summed in f32 over `k` terms (`k·2⁻²⁴`). Worst cases,
/// so no seed fails it.
pub fn grad_bound(k: usize, h: usize, v: usize, abs_logit: f64) -> f64 {
    let u = 2f64.powi(-24);
    2.0 * h as f64 * u * abs_logit + v as f64 * u + 1e-4 + 2f64.powi(-8) + k as f64 * u
}

/// The tolerance of the loss, nll and statistics relative to max(1, |want|): the loss kernel's
/// terms to within 10⁻⁴, its f32 sums over the vocabulary (`V·2⁻²⁴`) and over the tokens
/// (`T·2⁻²⁴`), plus twice the logits' dot-product error bound `H·2⁻²⁴·abs_logit` (the loss is
/// lse − x_t).
pub fn loss_bound(t: usize, h: usize, v: usize, abs_logit: f64) -> f64 {
    let u = 2f64.powi(-24);
    1e-4 + (t + v) as f64 * u + 2.0 * h as f64 * u * abs_logit
}

/// The worst `|got − want| / (bound·size)` over the elements (∞ for a NaN or a length
/// mismatch): at most 1 when every element is within its bound.
pub fn bounded_error(got: &[f64], want: &[f64], size: &[f64], bound: f64) -> f64 {
    if got.len() != want.len() || size.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .zip(size)
        .fold(0.0f64, |m, ((g, w), a)| {
            let e = (g - w).abs() / (bound * a + f64::MIN_POSITIVE);
            if e.is_nan() {
                f64::INFINITY
            } else {
                m.max(e)
            }
        })
}

/// The worst `|got − want| / max(1, |want|)` (∞ for a NaN or a length mismatch).
pub fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter().zip(want).fold(0.0f64, |m, (g, w)| {
        let e = (g - w).abs() / w.abs().max(1.0);
        if e.is_nan() {
            f64::INFINITY
        } else {
            m.max(e)
        }
    })
}

/// Compares [`linear_cross_entropy`]'s outputs `[loss, nll, stats, grad_hidden, grad_weight]`
/// (gradients empty when not computed) with the reference, within [`loss_bound`] and
/// [`grad_bound`]. `Err` names the first output out of tolerance.
pub fn compare(
    case: &str,
    got: &[Vec<f64>; 5],
    want: &LinearReference,
    (t, h, v): (usize, usize, usize),
) -> Result<(), String> {
    use crate::kernels::check::record;
    let tol = loss_bound(t, h, v, want.abs_logit);
    let loss_checks = [
        ("loss", relative_error(&got[0], &want.ce.loss)),
        ("nll", relative_error(&got[1], &want.ce.nll)),
        ("stats", relative_error(&got[2], &want.ce.stats)),
    ];
    for (what, err) in loss_checks {
        record(format!("{case}: {what}"), &[err], &[0.0], tol);
        if err > tol {
            return Err(format!("{case}: {what} error {err:.2e} > {tol:.2e}"));
        }
    }
    let grads = [
        (
            "grad_hidden",
            &got[3],
            &want.grad_hidden,
            &want.size_hidden,
            v,
        ),
        (
            "grad_weight",
            &got[4],
            &want.grad_weight,
            &want.size_weight,
            t,
        ),
    ];
    for (what, g, w, size, k) in grads {
        if g.is_empty() {
            continue;
        }
        let bound = grad_bound(k, h, v, want.abs_logit);
        let worst = bounded_error(g, w, size, bound);
        record(format!("{case}: {what} / bound"), &[worst], &[0.0], 1.0);
        if worst > 1.0 {
            return Err(format!(
                "{case}: {what} error {worst:.2} times its bound ({bound:.1e} of its terms' size)"
            ));
        }
    }
    Ok(())
}

/// Hidden states and classifier weights uniform in ±1 (bf16; logits then have a standard
/// deviation of about `√H / 3`), random targets with token 0 on the first and token 1 on the last
/// vocabulary entry and every fifth token from token 2 on ignored.
pub fn inputs(
    rng: &mut crate::kernels::check::Rng,
    (t, h, v): (usize, usize, usize),
) -> (
    crate::ir::interp::HostTensor,
    crate::ir::interp::HostTensor,
    Vec<i64>,
) {
    let hidden = rng.tensor(BF16, &[t, h], -1.0, 1.0);
    let weight = rng.tensor(BF16, &[v, h], -1.0, 1.0);
    let mut targets: Vec<i64> = (0..t)
        .map(|_| (rng.uniform(0.0, v as f64) as i64).min(v as i64 - 1))
        .collect();
    targets[0] = 0;
    if t > 1 {
        targets[1] = v as i64 - 1;
    }
    for r in (2..t).step_by(5) {
        targets[r] = -100;
    }
    (hidden, weight, targets)
}

/// Runs [`linear_cross_entropy`] on `device` with fresh NaN-poisoned outputs (gradients when
/// `grads`) and returns `[loss, nll, stats, grad_hidden, grad_weight]` (gradients empty when not
/// computed).
pub fn run(
    device: &Device,
    hidden: &crate::ir::interp::HostTensor,
    weight: &crate::ir::interp::HostTensor,
    targets: &[i64],
    options: &LinearCrossEntropyOptions,
    grads: bool,
) -> Result<[Vec<f64>; 5], LossError> {
    let (t, h) = (hidden.shape()[0], hidden.shape()[1]);
    let v = weight.shape()[0];
    let dev = |x: &crate::ir::interp::HostTensor| Tensor::from_host(x, device);
    let poisoned =
        |dtype: ScalarType, shape: &[usize]| Tensor::full(dtype, shape, f64::NAN, device);
    let tg: Vec<f64> = targets.iter().map(|&x| x as f64).collect();
    let targets = Tensor::from_f64(I32, &[t], &tg, device)?;
    let (hidden, weight) = (dev(hidden)?, dev(weight)?);
    let (mut loss, mut nll) = (poisoned(F32, &[t])?, poisoned(F32, &[t])?);
    let mut stats = poisoned(F32, &[STATS])?;
    let (mut gh, mut gw) = (poisoned(F32, &[t, h])?, poisoned(F32, &[v, h])?);
    let out = LinearCrossEntropyOutputs {
        loss: &mut loss,
        nll: &mut nll,
        stats: &mut stats,
        grad_hidden: grads.then_some(&mut gh),
        grad_weight: grads.then_some(&mut gw),
    };
    linear_cross_entropy(device, &hidden, &weight, &targets, options, out)?;
    let read = |x: &Tensor| x.to_f64_vec();
    Ok([
        read(&loss)?,
        read(&nll)?,
        read(&stats)?,
        if grads { read(&gh)? } else { Vec::new() },
        if grads { read(&gw)? } else { Vec::new() },
    ])
}
