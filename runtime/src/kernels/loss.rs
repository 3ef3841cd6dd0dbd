//! Cross-entropy over large vocabularies: forward and backward in one pass over the logits,
//! with the options `torch.nn.functional.cross_entropy` names (`ignore_index`,
//! `label_smoothing`, `reduction`) plus the z-loss of PaLM, and the mean loss and perplexity
//! reduced on the device.
//!
//! For a row `x` (the logits `[V]` of one token) with target `t`, `lse = log Σ_j exp(x_j)`,
//! `p_j = exp(x_j − lse)`, label smoothing `ε`, z-loss weight `z` and the smoothed target
//! distribution `q_j = (1 − ε)·[j = t] + ε/V`:
//!
//! ```text
//! loss = Σ_j q_j·(lse − x_j) + z·lse²  = lse − (1 − ε)·x_t − ε·mean_j(x_j) + z·lse²
//! nll  = lse − x_t                                  (what perplexity is made of)
//! ∂loss/∂x_j = p_j·(1 + 2z·lse) − q_j
//! ```
//!
//! A row whose target is `ignore_index` has loss 0 and gradient 0 whatever its logits hold (NaN
//! included). The gradient is written over the logits (in their dtype), scaled by `s`: the
//! caller's `grad_scale`, divided by the number of non-ignored rows for
//! [`Reduction::Mean`] (torch's mean over non-ignored targets).
//!
//! Three launches, none of which returns to the host:
//! - [`cross_entropy_count`] (one warp) counts the non-ignored rows into `stats[2]`;
//! - [`cross_entropy_fwd_bwd`] reads that count for `s`; each warp owns 16 rows and walks the
//!   vocabulary in tiles of `C` columns twice: first the online max and sum of exponentials
//!   (rescaled when the max grows, as [`softmax_rows`](crate::kernels::softmax::softmax_rows)
//!   does) with the sum of the logits, then the gradient;
//! - [`cross_entropy_reduce`] (one warp) adds the per-row losses in a fixed order (no atomics:
//!   the result does not depend on the order blocks run in) and writes
//!   `stats = [mean loss, perplexity = exp(mean nll), n_valid, sum of losses]`.
//!
//! A target outside `[0, V)` that is not `ignore_index` stops the launch (`device_assert`):
//! an error on the interpreter and the emulator, a trap on a GPU; never a silent loss.
//!
//! The user-facing API: [`cross_entropy`] over logits with [`CrossEntropyOptions`], and
//! [`linear_cross_entropy`] with [`LinearCrossEntropyOptions`], which takes the hidden states and
//! the classifier instead of the logits and never materializes them
//! ([`linear_ce`](crate::kernels::linear_ce)). Both write per-token losses, the mean loss and
//! perplexity, and the gradients, with the same options and scale.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
pub use crate::kernels::linear_ce::{
    linear_cross_entropy, LinearCrossEntropyOptions, LinearCrossEntropyOutputs,
};
use crate::kernels::softmax::safe_max;
use crate::TensorArg;
use crate::{Device, ScalarArg};

/// Rows per warp of [`cross_entropy_fwd_bwd`] (one register tile's height).
pub const ROWS: usize = 16;
/// Vocabulary columns per tile of the registered variants.
pub const COLS: usize = 32;
/// Warps per block of the registered variants.
pub const WARPS: usize = 4;
/// Elements per step of the one-warp count and reduction kernels.
pub const CHUNK: usize = 256;
/// Length of the `stats` tensor: `[mean loss, perplexity, n_valid, sum of losses]`.
pub const STATS: usize = 4;

/// `stats[2]` = the number of `targets` that are not `ignore_index`, as f32 (exact up to 2²⁴
/// rows); the other entries 0 until [`cross_entropy_reduce`] fills them (every output element
/// written). One warp. Grid: `[1, 1, 1]`.
#[crate::kernel(
    warps = 1,
    variants(<256>),
    shapes(targets: [T], stats: [4]),
    grid = [1, 1, 1]
)]
pub fn cross_entropy_count<const N: usize>(
    targets: Gl<i32, 1>,
    ignore_index: Scalar<i32>,
    stats: GlMut<f32, 1>,
) {
    let n = targets.len();
    let mut count: Rv<f32, N> = zeros();
    for k in range(0, ceil_div(n, N)) {
        let t: Rv<i32, N> = load(targets.chunk(k));
        // Elements past the end load as 0, which may not be `ignore_index`: count by position.
        let at: Rv<i32, N> = iota_rows();
        let ones: Rv<f32, N> = fill(1.0);
        count += select(t.ne(ignore_index) & (at + k * N as i32).lt(n), ones, 0.0);
    }
    store(stats.at(2), reduce_all(Red::Sum, count));
    for i in [0, 1, 3] {
        store(stats.at(i), lit::<f32>(0.0));
    }
}

/// Per-row loss and nll, and (when `write_grad` is not 0) the gradient over `logits`; see the
/// module documentation. `stats[2]` must hold the count of [`cross_entropy_count`]; `mean`
/// not 0 divides the gradient's scale by it. Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 32, 4>, <bf16, 32, 4>),
    selftest = selftest,
    shapes(logits: [T, V], targets: [T], stats: [4], loss: [T], nll: [T], V >= 1),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_fwd_bwd<I: RegDtype, const C: usize, const WARPS: usize>(
    logits: GlMut<I, 2>,
    targets: Gl<i32, 1>,
    stats: Gl<f32, 1>,
    loss: GlMut<f32, 1>,
    nll: GlMut<f32, 1>,
    ignore_index: Scalar<i32>,
    label_smoothing: Scalar<f32>,
    z_loss: Scalar<f32>,
    grad_scale: Scalar<f32>,
    mean: Scalar<i32>,
    write_grad: Scalar<i32>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    // A warp past the last row has nothing to do (its loads would read zeros for a whole
    // vocabulary): tile index < row tiles, so no product wraps.
    if rt.lt(ceil_div(targets.len(), 16)) {
        ce_rows::<I, C>(
            logits,
            targets,
            stats,
            loss,
            nll,
            rt,
            ignore_index,
            label_smoothing,
            z_loss,
            grad_scale,
            mean,
            write_grad,
        );
    }
}

/// The rows of row tile `rt` (see [`cross_entropy_fwd_bwd`]).
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn ce_rows<I: RegDtype, const C: usize>(
    logits: GlMut<I, 2>,
    targets: Gl<i32, 1>,
    stats: Gl<f32, 1>,
    loss: GlMut<f32, 1>,
    nll: GlMut<f32, 1>,
    rt: Scalar<i32>,
    ignore_index: Scalar<i32>,
    label_smoothing: Scalar<f32>,
    z_loss: Scalar<f32>,
    grad_scale: Scalar<f32>,
    mean: Scalar<i32>,
    write_grad: Scalar<i32>,
) {
    let vocab = logits.cols();
    let col_tiles = ceil_div(vocab, C);
    let log2e = std::f32::consts::LOG2_E;
    let one = lit::<f32>(1.0);

    let target: Rv<i32, 16> = load(targets.chunk(rt));
    let valid = target.ne(ignore_index);
    device_assert(
        (target.ge(0) & target.lt(vocab)) | !valid,
        "cross-entropy target outside [0, vocab) and not ignore_index",
    );
    // An ignored row's index (or a row past the end) is outside the view and gathers 0; the
    // selects below drop those rows.
    let rows: Rv<i32, 16> = iota_rows();
    let x_t = gather(logits, (rows + rt * 16, target)).cast::<f32>();

    let mut m: Rv<f32, 16> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, 16> = zeros();
    let mut sum_x: Rv<f32, 16> = zeros();
    for ct in range(0, col_tiles) {
        let raw: Rt<I, 16, C> = load(logits.tile(rt, ct));
        let x = raw.cast::<f32>();
        // Columns past the vocabulary load as 0 and add nothing to the sum of the logits.
        sum_x += row_sum(x);
        let x = mask_cols(x, ct * C as i32, vocab, f64::NEG_INFINITY);
        let m_new = m.max(row_max(x));
        let shift = safe_max::<16>(m_new);
        l = l * ((m - shift) * log2e).exp2() + row_sum((sub_row(x, shift) * log2e).exp2());
        m = m_new;
    }
    let lse = m + l.log();
    let eps = label_smoothing;
    let v_f = vocab.cast::<f32>();
    let row_loss = lse - x_t * (one - eps) - sum_x * (eps / v_f) + lse * lse * z_loss;
    store(loss.chunk(rt), select(valid, row_loss, 0.0));
    store(nll.chunk(rt), select(valid, lse - x_t, 0.0));

    if write_grad.ne(0) {
        let n_valid: Scalar<f32> = load(stats.at(2));
        let s = select(mean.ne(0), grad_scale / n_valid.max(1.0), grad_scale);
        // g_j = s·p_j·(1 + 2z·lse) − s·(1 − ε)·[j = t] − s·ε/V, with p_j = 2^((x_j − m)·log2 e) / l.
        let p_scale = (lse * (z_loss * 2.0) + 1.0) * s / l;
        let on_target = s * (one - eps);
        let smooth = s * eps / v_f;
        let zero_rows: Rt<i32, 16, C> = zeros();
        let keep = add_row(zero_rows, target).ne(ignore_index);
        for ct in range(0, col_tiles) {
            let raw: Rt<I, 16, C> = load(logits.tile(rt, ct));
            let x = raw.cast::<f32>();
            let p = mul_row((sub_row(x, m) * log2e).exp2(), p_scale);
            let cols: Rt<i32, 16, C> = iota_cols();
            let is_target = sub_row(cols + ct * C as i32, target).eq(0);
            let target_term: Rt<f32, 16, C> = splat(on_target);
            let g = p - select(is_target, target_term, 0.0) - smooth;
            // Columns past the vocabulary are masked by the store.
            store(logits.tile(rt, ct), select(keep, g, 0.0).cast::<I>());
        }
    }
}

/// `stats[0]` = the mean of `loss` over the `stats[2]` non-ignored rows, `stats[1]` =
/// `exp(mean of nll)` (perplexity), `stats[3]` = the sum of `loss`; the sums in a fixed order by
/// one warp. With no non-ignored row the means are NaN (0/0), as torch's mean gives. Grid:
/// `[1, 1, 1]`.
#[crate::kernel(
    warps = 1,
    variants(<256>),
    shapes(loss: [T], nll: [T], stats: [4]),
    grid = [1, 1, 1]
)]
pub fn cross_entropy_reduce<const N: usize>(
    loss: Gl<f32, 1>,
    nll: Gl<f32, 1>,
    stats: GlMut<f32, 1>,
) {
    let mut sum_loss: Rv<f32, N> = zeros();
    let mut sum_nll: Rv<f32, N> = zeros();
    for k in range(0, ceil_div(loss.len(), N)) {
        let a: Rv<f32, N> = load(loss.chunk(k));
        let b: Rv<f32, N> = load(nll.chunk(k));
        sum_loss += a;
        sum_nll += b;
    }
    let n_valid: Scalar<f32> = load(stats.at(2));
    let total = reduce_all(Red::Sum, sum_loss);
    store(stats.at(0), total / n_valid);
    store(stats.at(1), (reduce_all(Red::Sum, sum_nll) / n_valid).exp());
    store(stats.at(3), total);
}

/// How the per-token losses are combined, as torch names it. It sets the gradient's scale:
/// `Mean` divides by the number of non-ignored tokens, `Sum` and `None` do not (`None`'s
/// gradient is that of the sum, i.e. a `grad_output` of ones). `stats` holds both the mean and
/// the sum whichever is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    None,
    #[default]
    Mean,
    Sum,
}

/// The options of [`cross_entropy`], named as `torch.nn.functional.cross_entropy` names them,
/// plus `z_loss` (PaLM's `z·lse²` per token), `grad_scale` (multiplies the gradient, e.g. a
/// loss scale or 1 / gradient-accumulation steps) and `compute_grad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropyOptions {
    /// Targets equal to this contribute no loss and a zero gradient (torch: -100).
    pub ignore_index: i32,
    /// `ε` in `[0, 1]`: the target distribution is `(1 − ε)·onehot + ε/V`.
    pub label_smoothing: f32,
    pub reduction: Reduction,
    /// The weight `z ≥ 0` of `z·lse²` (0 turns it off).
    pub z_loss: f32,
    /// Multiplies the gradient (after the mean's division).
    pub grad_scale: f32,
    /// Whether to write the gradient over the logits (false: forward only, logits untouched).
    pub compute_grad: bool,
}

impl CrossEntropyOptions {
    /// The options' ranges, checked before any launch of `function`.
    pub(crate) fn validate(&self, function: &'static str) -> Result<(), LossError> {
        let option = |name, expected, value| LossError::Option {
            function,
            name,
            expected,
            value,
        };
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(option("label_smoothing", "in [0, 1]", self.label_smoothing));
        }
        if !(self.z_loss >= 0.0 && self.z_loss.is_finite()) {
            return Err(option("z_loss", "finite and at least 0", self.z_loss));
        }
        if !self.grad_scale.is_finite() {
            return Err(option("grad_scale", "finite", self.grad_scale));
        }
        Ok(())
    }
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
            z_loss: 0.0,
            grad_scale: 1.0,
            compute_grad: true,
        }
    }
}

/// Why [`cross_entropy`] or [`linear_cross_entropy`] refused its arguments, or the launch that
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    #[error("{function}: `{name}` must be {expected}, got {found}")]
    Argument {
        function: &'static str,
        name: &'static str,
        expected: String,
        found: String,
    },
    #[error("{function}: option `{name}` must be {expected}, got {value}")]
    Option {
        function: &'static str,
        name: &'static str,
        expected: &'static str,
        value: f32,
    },
    #[error(transparent)]
    Launch(#[from] crate::Error),
}

/// Where [`cross_entropy`] writes: per-token `loss` and `nll` (f32 `[T]`, 0 for ignored
/// tokens) and `stats` (f32 `[4]`: mean loss, perplexity, n_valid, sum of losses).
pub struct CrossEntropyOutputs<'a> {
    pub loss: &'a mut dyn TensorArg,
    pub nll: &'a mut dyn TensorArg,
    pub stats: &'a mut dyn TensorArg,
}

impl std::fmt::Debug for CrossEntropyOutputs<'_> {
    /// The shapes, not the elements.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrossEntropyOutputs")
            .field("loss", &self.loss.shape())
            .field("nll", &self.nll.shape())
            .field("stats", &self.stats.shape())
            .finish()
    }
}

/// `t` has one of `dtypes` and exactly `shape`, else an error of `function` naming `name`.
pub(crate) fn expect_tensor(
    function: &'static str,
    name: &'static str,
    t: &dyn TensorArg,
    dtypes: &[ScalarType],
    shape: &[usize],
) -> Result<(), LossError> {
    if !dtypes.contains(&t.dtype()) || t.shape() != shape {
        let dtypes: Vec<String> = dtypes.iter().map(|d| d.to_string()).collect();
        return Err(LossError::Argument {
            function,
            name,
            expected: format!("{} of shape {shape:?}", dtypes.join(" or ")),
            found: format!("{} of shape {:?}", t.dtype(), t.shape()),
        });
    }
    Ok(())
}

/// The name [`cross_entropy`]'s errors carry.
const CE: &str = "cross_entropy";

/// Cross-entropy of `logits` (`[T, V]`, f32 or bf16) against `targets` (i32 `[T]`) on `device`:
/// writes the per-token losses and the statistics into `out` and, when `cfg.compute_grad`,
/// the gradient over `logits` (see the module documentation). Nothing returns to the host
/// between the launches. Errors: a shape, dtype or option out of its range, before any launch;
/// a target outside `[0, V)` that is not `ignore_index`, from the launch.
pub fn cross_entropy(
    device: &Device,
    logits: &mut dyn TensorArg,
    targets: &dyn TensorArg,
    cfg: &CrossEntropyOptions,
    out: CrossEntropyOutputs<'_>,
) -> Result<(), LossError> {
    use ScalarType::{BF16, F32, I32};
    let shape = logits.shape().to_vec();
    let [t, v] = shape[..] else {
        return Err(LossError::Argument {
            function: CE,
            name: "logits",
            expected: "a tensor [tokens, vocab] of rank 2".into(),
            found: format!("shape {shape:?}"),
        });
    };
    if t == 0 || v == 0 || i32::try_from(t.max(v)).is_err() {
        return Err(LossError::Argument {
            function: CE,
            name: "logits",
            expected: "at least one token and one vocabulary entry, each at most 2³¹ − 1".into(),
            found: format!("shape {shape:?}"),
        });
    }
    expect_tensor(CE, "logits", logits, &[F32, BF16], &shape)?;
    expect_tensor(CE, "targets", targets, &[I32], &[t])?;
    expect_tensor(CE, "loss", out.loss, &[F32], &[t])?;
    expect_tensor(CE, "nll", out.nll, &[F32], &[t])?;
    expect_tensor(CE, "stats", out.stats, &[F32], &[STATS])?;
    cfg.validate(CE)?;
    let eps = cfg.label_smoothing;
    let ignore = ScalarArg::from(cfg.ignore_index);
    cross_entropy_count::<CHUNK>::launch_auto(device, targets, ignore, out.stats)?;
    let grid = [tiles(t, ROWS * WARPS), 1, 1];
    let args = (
        ScalarArg::from(eps),
        ScalarArg::from(cfg.z_loss),
        ScalarArg::from(cfg.grad_scale),
        ScalarArg::from(i32::from(cfg.reduction == Reduction::Mean)),
        ScalarArg::from(i32::from(cfg.compute_grad)),
    );
    let stats: &dyn TensorArg = out.stats;
    if logits.dtype() == F32 {
        cross_entropy_fwd_bwd::<f32, COLS, WARPS>::launch(
            device, grid, logits, targets, stats, out.loss, out.nll, ignore, args.0, args.1,
            args.2, args.3, args.4,
        )?;
    } else {
        cross_entropy_fwd_bwd::<bf16, COLS, WARPS>::launch(
            device, grid, logits, targets, stats, out.loss, out.nll, ignore, args.0, args.1,
            args.2, args.3, args.4,
        )?;
    }
    cross_entropy_reduce::<CHUNK>::launch_auto(device, out.loss, out.nll, out.stats)?;
    Ok(())
}

/// What the f64 reference computes (see [`reference()`]).
#[derive(Clone, Debug)]
pub struct Reference {
    pub loss: Vec<f64>,
    pub nll: Vec<f64>,
    /// The gradient `[T, V]`, 0 in ignored rows.
    pub grad: Vec<f64>,
    /// `[mean loss, perplexity, n_valid, sum of losses]`.
    pub stats: [f64; STATS],
    /// The gradient's scale `s`.
    pub scale: f64,
}

/// Cross-entropy in f64 from the definition (the smoothed target distribution `q`, summed
/// term by term; `lse` shifted by the row max), row-major `logits` `[targets.len(), vocab]`.
pub fn reference(
    logits: &[f64],
    vocab: usize,
    targets: &[i64],
    cfg: &CrossEntropyOptions,
) -> Reference {
    let ignore = i64::from(cfg.ignore_index);
    let (eps, z) = (f64::from(cfg.label_smoothing), f64::from(cfg.z_loss));
    let n_valid = targets.iter().filter(|&&t| t != ignore).count();
    let scale = f64::from(cfg.grad_scale)
        / if cfg.reduction == Reduction::Mean {
            n_valid.max(1) as f64
        } else {
            1.0
        };
    let mut r = Reference {
        loss: vec![0.0; targets.len()],
        nll: vec![0.0; targets.len()],
        grad: vec![0.0; targets.len() * vocab],
        stats: [0.0; STATS],
        scale,
    };
    for (i, &t) in targets.iter().enumerate() {
        if t == ignore {
            continue;
        }
        let x = &logits[i * vocab..][..vocab];
        let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + x.iter().map(|&xj| (xj - max).exp()).sum::<f64>().ln();
        let q = |j: usize| (1.0 - eps) * f64::from(u8::from(j as i64 == t)) + eps / vocab as f64;
        r.loss[i] = (0..vocab).map(|j| q(j) * (lse - x[j])).sum::<f64>() + z * lse * lse;
        r.nll[i] = lse - x[t as usize];
        for j in 0..vocab {
            let p = (x[j] - lse).exp();
            r.grad[i * vocab + j] = scale * (p + 2.0 * z * lse * p - q(j));
        }
    }
    let sum: f64 = r.loss.iter().sum();
    let n = n_valid as f64;
    r.stats = [sum / n, (r.nll.iter().sum::<f64>() / n).exp(), n, sum];
    r
}

/// The worst per-element gradient error `|got − want| / (|want| + s/V)`: relative where the
/// gradient is large, and against the size of the label-smoothing term `s·ε/V`'s scale where
/// it is small (a normalization by the largest element would hide an error in that term).
pub fn grad_error(got: &[f64], want: &[f64], scale: f64, vocab: usize) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let floor = scale.abs() / vocab as f64;
    got.iter().zip(want).fold(0.0, |worst, (g, w)| {
        let e = (g - w).abs() / (w.abs() + floor);
        // NaN compares false: count it as infinitely wrong.
        if e.is_nan() {
            f64::INFINITY
        } else {
            worst.max(e)
        }
    })
}

/// Logits uniform in ±8 (`dtype`), random targets with rows 0 and 1 on the first and last
/// column and every fifth row from row 2 on ignored (its logits NaN at its would-be target
/// and at column 0, which must not reach any output).
pub fn inputs(
    rng: &mut Rng,
    dtype: ScalarType,
    rows: usize,
    vocab: usize,
) -> (HostTensor, Vec<i64>) {
    let mut x: Vec<f64> = (0..rows * vocab).map(|_| rng.uniform(-8.0, 8.0)).collect();
    let mut targets: Vec<i64> = (0..rows)
        .map(|_| (rng.uniform(0.0, vocab as f64) as i64).min(vocab as i64 - 1))
        .collect();
    targets[0] = 0;
    if rows > 1 {
        targets[1] = vocab as i64 - 1;
    }
    for r in (2..rows).step_by(5) {
        x[r * vocab + targets[r] as usize] = f64::NAN;
        x[r * vocab] = f64::NAN;
        targets[r] = -100;
    }
    let t = HostTensor::new(dtype, &[rows, vocab], &x)
        .unwrap_or_else(|_| HostTensor::zeros(dtype, &[rows, vocab]));
    (t, targets)
}

/// Runs [`cross_entropy`] on fresh poisoned outputs and returns (gradient, loss, nll, stats).
pub fn run(
    device: &Device,
    logits: &HostTensor,
    targets: &[i64],
    cfg: &CrossEntropyOptions,
) -> Result<[Vec<f64>; 4], LossError> {
    let rows = targets.len();
    let t: Vec<f64> = targets.iter().map(|&t| t as f64).collect();
    let targets =
        HostTensor::new(ScalarType::I32, &[rows], &t).map_err(|e| LossError::Argument {
            function: CE,
            name: "targets",
            expected: "i32 values".into(),
            found: e.to_string(),
        })?;
    let mut g = logits.clone();
    let (mut loss, mut nll) = (
        poisoned(ScalarType::F32, &[rows]),
        poisoned(ScalarType::F32, &[rows]),
    );
    let mut stats = poisoned(ScalarType::F32, &[STATS]);
    let out = CrossEntropyOutputs {
        loss: &mut loss,
        nll: &mut nll,
        stats: &mut stats,
    };
    cross_entropy(device, &mut g, &targets, cfg, out)?;
    Ok([g.to_vec(), loss.to_vec(), nll.to_vec(), stats.to_vec()])
}

/// Compares one run with the reference: per-row loss and nll (relative to max(1, |want|)), the
/// statistics, the gradient by [`grad_error`]; `Err` names the first output out of tolerance.
/// Tolerances: `tol` for values computed in f32, `grad_tol` for the gradient (its dtype's
/// rounding).
pub fn compare(
    case: &str,
    got: &[Vec<f64>; 4],
    want: &Reference,
    vocab: usize,
    (tol, grad_tol): (f64, f64),
) -> Result<(), String> {
    let rel = |g: &[f64], w: &[f64]| {
        g.iter().zip(w).fold(0.0f64, |m, (g, w)| {
            let e = (g - w).abs() / w.abs().max(1.0);
            if e.is_nan() {
                f64::INFINITY
            } else {
                m.max(e)
            }
        })
    };
    let checks = [
        ("loss", rel(&got[1], &want.loss), tol),
        ("nll", rel(&got[2], &want.nll), tol),
        ("stats", rel(&got[3], &want.stats), tol),
        (
            "gradient",
            grad_error(&got[0], &want.grad, want.scale, vocab),
            grad_tol,
        ),
    ];
    for (what, err, tol) in checks {
        record(format!("{case}: {what}"), &[err], &[0.0], tol);
        if err > tol {
            return Err(format!("{case}: {what} error {err:.2e} > {tol:.0e}"));
        }
    }
    Ok(())
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(5, 1000), (37, 257)];
    if large(device) {
        shapes.extend([(300, 32000), (64, 50257)]);
    }
    let cfgs = [
        CrossEntropyOptions::default(),
        CrossEntropyOptions {
            label_smoothing: 0.1,
            z_loss: 1e-3,
            reduction: Reduction::Sum,
            grad_scale: 0.5,
            ..Default::default()
        },
    ];
    let mut runs = 0;
    for (rows, vocab) in shapes {
        for dtype in [ScalarType::F32, ScalarType::BF16] {
            for cfg in &cfgs {
                let (x, targets) = inputs(&mut rng, dtype, rows, vocab);
                let case = format!(
                    "{rows}×{vocab} {dtype} ε {} z {}",
                    cfg.label_smoothing, cfg.z_loss
                );
                let got = run(device, &x, &targets, cfg)
                    .map_err(|e| format!("{case}: {e} (seed {})", rng.seed))?;
                let want = reference(&x.to_vec(), vocab, &targets, cfg);
                let grad_tol = if dtype == ScalarType::F32 { 1e-4 } else { 1e-2 };
                compare(&case, &got, &want, vocab, (1e-4, grad_tol))
                    .map_err(|e| format!("{e} (seed {})", rng.seed))?;
                runs += 1;
            }
        }
    }
    Ok(format!(
        "{runs} runs of loss, nll, statistics and gradient against the f64 reference, with ignored NaN rows"
    ))
}
