//! Muon (Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks"; the
//! step as `torch.optim.Muon` and the reference `muon.py` define it), batched over `B` weight
//! matrices of one shape `R × C` (f32 `[B, R, C]`):
//!
//! ```text
//! buf ← buf + (1 − β)·(g − buf)                      (β = 0.95: an EMA of the gradient)
//! u   = g + β·(buf − g)  (Nesterov)  or  buf
//! X₀  = bf16( u / (‖u‖_F + ε) ), transposed when R > C so that X is m × n with m ≤ n
//! 5 × { A = X·Xᵀ ;  B = b·A + c·A·A ;  X ← a·X + B·X }   (a, b, c) = (3.4445, −4.7750, 2.0315)
//! p   ← p·(1 − lr·λ) − lr·√max(1, R/C)·Xᵀ-if-transposed
//! ```
//!
//! The Newton–Schulz products take bf16 operands with f32 accumulation; `A`, `B` and the
//! intermediate `X` are stored in bf16 (they are the next product's operands), the last `X` is
//! applied to the weights in f32 straight from the accumulator.
//!
//! For a bf16 model ([`Muon::step_with_model_copy`]) the weights are f32 master weights, the
//! gradients bf16: [`muon_momentum`] and [`muon_prepare`] widen them to f32 as they read them,
//! so the momentum buffer, `u` and its norm are f32 as in the f32 step; `X₀` is `u` scaled and
//! cast to bf16 (as the reference `muon.py` casts before its bf16 iteration), the Newton–Schulz
//! products are the same bf16 × bf16 → f32 GEMMs, and [`muon_apply_copy`] updates the f32 weights
//! and writes their bf16 copy (nearest even) in the same pass. The kernels:
//!
//! - [`muon_momentum`]: the EMA and one partial sum of `u²` per warp tile (no atomics: the
//!   norm does not depend on the order blocks run in); [`muon_norm`] adds one matrix's partials
//!   in a fixed order and writes `1 / (‖u‖_F + ε)`; [`muon_prepare`] recomputes `u`, scales,
//!   rounds and (with `TRANS`) transposes it into `X₀`. Nothing returns to the host.
//! - [`muon_gram`]: `α·Y·Yᵀ (+ β·Z)` for a symmetric result. Only the blocks of the upper
//!   triangle of tiles run (`t(t+1)/2` of `t²`, [`gram_blocks`]); each writes its tile and
//!   the transposed tile below the diagonal. `A = X·Xᵀ` and `B = c·A·Aᵀ + b·A` (A is symmetric,
//!   so `A·A = A·Aᵀ`) are both this kernel, which is how flash-muon and Gram Newton–Schulz
//!   halve the NS work.
//! - [`muon_combine`]: `X ← a·X + B·X` (a batched GEMM with the `a·X` epilogue), and
//!   [`muon_apply`]: the last step's `a·X + B·X` applied to the weights ([`muon_apply_copy`]
//!   also writes their bf16 model copy).
//!
//! Every kernel takes the batch index from `block_idx.z`: one launch per kernel serves all `B`
//! matrices. [`Muon`] holds the state and scratch and runs a step.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{record, Rng};
use crate::{Device, ScalarArg, Tensor, TensorArg};

/// The Newton–Schulz quintic's coefficients `(a, b, c)` of `p(x) = a·x + b·x³ + c·x⁵`.
pub const NS_COEFFICIENTS: (f32, f32, f32) = (3.4445, -4.7750, 2.0315);
/// Newton–Schulz steps.
pub const NS_STEPS: usize = 5;
/// Columns of the warp tile (16 rows) of the elementwise kernels.
pub const CHUNK: usize = 64;
/// Warps per block of the elementwise kernels.
pub const WARPS: usize = 4;
/// Block tile of the Gram kernel (square) and of the combine kernels (`TILE × TILE`).
pub const TILE: usize = 64;
/// K slice of the NS products' shared stages.
pub const TILE_K: usize = 32;
/// Warp tile of the NS products (`WARP_TILE × WARP_TILE`, 4 warps per block).
pub const WARP_TILE: usize = 32;
/// Stages of the NS products' copy rings (4 stages of two 64×32 bf16 panels: 32 KiB; a power
/// of two, so the slot index is a mask: with 3 the K loop's `% 3` cost 8 more instructions
/// per iteration on sm_80).
pub const STAGES: usize = 4;
/// Partial sums of squares of one warp tile (elements per chunk of [`muon_norm`]).
pub const NORM_CHUNK: usize = 1024;

/// Partial sums [`muon_momentum`] writes per matrix of `r × c`: one per 16 × [`CHUNK`] tile.
pub fn partials(r: usize, c: usize) -> usize {
    r.div_ceil(16) * c.div_ceil(CHUNK)
}

/// See the module documentation: `buf ← buf + (1 − β)(g − buf)` in place, and `partial[z, t]`
/// = the sum of `u²` over warp tile `t` of matrix `z`, with `u = buf + mix·(g − buf)` (`mix` =
/// `1 − β` for Nesterov, 0 without). The gradient is f32 or bf16 (widened to f32; `buf` is
/// f32 either way). Grid: `[⌈C / N⌉, ⌈R / (16·WARPS)⌉, B]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 64, 4>, <bf16, 64, 4>),
    shapes(g: [B, R, C], buf: [B, R, C], partial: [B, P], P == ceil_div(R, 16) * ceil_div(C, N)),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), B]
)]
pub fn muon_momentum<G: RegDtype, const N: usize, const WARPS: usize>(
    g: Gl<G, 3>,
    buf: GlMut<f32, 3>,
    partial: GlMut<f32, 2>,
    beta: Scalar<f32>,
    mix: Scalar<f32>,
) {
    let z = block_idx_z();
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let gt: Rt<G, 16, N> = load(g.tile(z, rt, ct));
    let gt = gt.cast::<f32>();
    let bt: Rt<f32, 16, N> = load(buf.tile(z, rt, ct));
    let b_new = bt + (gt - bt) * (lit::<f32>(1.0) - beta);
    store(buf.tile(z, rt, ct), b_new);
    // Outside the matrix g and buf load as zeros: u is 0 there and adds nothing.
    let u = b_new + (gt - b_new) * mix;
    let sum = reduce_all(Red::Sum, u * u);
    // Warps past the last row tile have no partial (their index would pass P).
    if rt.lt(ceil_div(g.dim(1), 16)) {
        store(partial.at(z, rt * ceil_div(g.dim(2), N) + ct), sum);
    }
}

/// `scale[z] = 1 / (√(Σ_t partial[z, t]) + eps)`, the partials added in a fixed order by one
/// warp per matrix. Grid: `[1, 1, B]`.
#[crate::kernel(
    warps = 1,
    variants(<1024>),
    shapes(partial: [B, P], scale: [B]),
    grid = [1, 1, B]
)]
pub fn muon_norm<const N: usize>(partial: Gl<f32, 2>, scale: GlMut<f32, 1>, eps: Scalar<f32>) {
    let z = block_idx_z();
    let mut acc: Rv<f32, N> = zeros();
    for k in range(0, ceil_div(partial.cols(), N)) {
        let x: Rv<f32, N> = load(partial.chunk(z, k));
        acc += x;
    }
    let norm = reduce_all(Red::Sum, acc).sqrt();
    store(scale.at(z), lit::<f32>(1.0) / (norm + eps));
}

/// `x[z] = bf16(u·scale[z])` with `u` recomputed from `g` and the updated `buf` as in
/// [`muon_momentum`] (f32 or bf16 `g`), transposed (`x` is `[B, C, R]`) with `TRANS`. Grid as
/// [`muon_momentum`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 64, 4, false>, <f32, 64, 4, true>, <bf16, 64, 4, false>, <bf16, 64, 4, true>),
    shapes(g: [B, R, C], buf: [B, R, C], scale: [B], x: [B, _, _]),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), B]
)]
pub fn muon_prepare<G: RegDtype, const N: usize, const WARPS: usize, const TRANS: bool>(
    g: Gl<G, 3>,
    buf: Gl<f32, 3>,
    scale: Gl<f32, 1>,
    x: GlMut<bf16, 3>,
    mix: Scalar<f32>,
) {
    let z = block_idx_z();
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let s: Scalar<f32> = load(scale.at(z));
    let gt: Rt<G, 16, N> = load(g.tile(z, rt, ct));
    let gt = gt.cast::<f32>();
    let bt: Rt<f32, 16, N> = load(buf.tile(z, rt, ct));
    let u = (bt + (gt - bt) * mix) * s;
    if TRANS {
        store(x.tile(z, ct, rt), transpose(u).cast::<bf16>());
    } else {
        store(x.tile(z, rt, ct), u.cast::<bf16>());
    }
}

/// Blocks of the Gram kernel for an `m × m` result: `(upper triangle, full grid)` =
/// `(t(t+1)/2, t²)` with `t = ⌈m / TILE⌉`.
pub fn gram_blocks(m: usize) -> (usize, usize) {
    let t = m.div_ceil(TILE);
    (t * (t + 1) / 2, t * t)
}

/// The tile `(i, j)`, `i ≤ j`, of block `p` of the upper triangle, taken column by column:
/// `p = j(j+1)/2 + i`. `j` from the f32 square root, then corrected by one either way (the
/// root of `8p + 1` is exact enough for that below 2²⁴ blocks).
#[crate::func]
pub fn upper_tile(p: Scalar<i32>) -> (Scalar<i32>, Scalar<i32>) {
    let root = (p.cast::<f32>() * 8.0 + 1.0).sqrt();
    let j0: Scalar<i32> = ((root - 1.0) * 0.5).cast::<i32>();
    let j1 = select((j0 * (j0 + 1) / 2).gt(p), j0 - 1, j0);
    let j = select(((j1 + 1) * (j1 + 2) / 2).le(p), j1 + 1, j1);
    (p - j * (j + 1) / 2, j)
}

/// `out[z] = α·Y·Yᵀ` (+ `β·Z` with `AFFINE`) for `Y = y[z]` (`m × k`), a symmetric `m × m`
/// result (`Z` must be symmetric). Block `p` computes tile `(i, j)`, `i ≤ j` ([`upper_tile`]),
/// and stores it at `(i, j)` and, transposed, at `(j, i)`. `z` is not read without `AFFINE`.
/// Grid: `[t(t+1)/2, 1, B]`, `t = ⌈m / BM⌉`.
#[crate::kernel(
    warps = ((BM / WM) * (BM / WM)) as u32,
    variants(<64, 32, 32, false>, <64, 32, 32, true>),
    shapes(y: [B, M, K], z: [B, M, M], out: [B, M, M], M >= 1),
    grid = [ceil_div(M, BM) * (ceil_div(M, BM) + 1) / 2, 1, B]
)]
#[allow(clippy::too_many_arguments)]
pub fn muon_gram<const BM: usize, const BK: usize, const WM: usize, const AFFINE: bool>(
    y: Gl<bf16, 3>,
    z: Gl<bf16, 3>,
    out: GlMut<bf16, 3>,
    alpha: Scalar<f32>,
    beta: Scalar<f32>,
) {
    let batch = block_idx_z();
    let (ti, tj) = upper_tile(block_idx_x());
    let acc = gram_panel::<BM, BK, WM>(y, batch, ti, tj);
    let per = (BM / WM) as i32;
    let (wr, wc) = (warp_idx() / per, warp_idx() % per);
    let (row, col) = (ti * per + wr, tj * per + wc);
    let mut res = acc * alpha;
    if AFFINE {
        let zt: Rt<bf16, WM, WM> = load(z.tile(batch, row, col));
        res += zt.cast::<f32>() * beta;
    }
    store(out.tile(batch, row, col), res.cast::<bf16>());
    // The mirror below the diagonal; a diagonal tile is whole already.
    if ti.lt(tj) {
        store(out.tile(batch, col, row), transpose(res).cast::<bf16>());
    }
}

/// This warp's `WM × WM` sub-tile of `Y_i · Y_jᵀ` for the `BM`-row panels `i` and `j` of
/// `y[batch]`, over a ring of [`STAGES`] shared stages (the K loop of
/// [`gemm`](crate::kernels::gemm), with both operands row panels of the same matrix).
#[crate::func]
fn gram_panel<const BM: usize, const BK: usize, const WM: usize>(
    y: Gl<bf16, 3>,
    batch: Scalar<i32>,
    ti: Scalar<i32>,
    tj: Scalar<i32>,
) -> Rt<f32, WM, WM> {
    let a_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let per = (BM / WM) as i32;
    let (wr, wc) = (warp_idx() / per, warp_idx() % per);
    let k_tiles = ceil_div(y.dim(2), BK);
    for s in 0..STAGES - 1 {
        copy_start(a_ring.at(s), y.tile(batch, ti, s as i32));
        copy_start(b_ring.at(s), y.tile(batch, tj, s as i32));
        copy_commit();
    }
    let mut acc: Rt<f32, WM, WM> = zeros();
    for kt in range(0, k_tiles) {
        copy_wait(STAGES - 2);
        barrier();
        let ahead = kt + (STAGES - 1) as i32;
        let slot = ahead % STAGES as i32;
        copy_start(a_ring.at(slot), y.tile(batch, ti, ahead));
        copy_start(b_ring.at(slot), y.tile(batch, tj, ahead));
        copy_commit();
        let cur = kt % STAGES as i32;
        let a_frag: Rt<bf16, WM, BK> = load(a_ring.at(cur).tile(wr, 0));
        let b_frag: Rt<bf16, WM, BK> = load(b_ring.at(cur).tile(wc, 0));
        acc = mma_abt(acc, a_frag, b_frag);
    }
    copy_wait(0);
    acc
}

/// This warp's `WM × WN` sub-tile of `B·X` for block tile `(tile_m, tile_n)` of matrix
/// `batch` (`B` is `m × m`, `X` is `m × n`), over a ring of [`STAGES`] shared stages.
#[crate::func]
fn product_tile<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    bm: Gl<bf16, 3>,
    x: Gl<bf16, 3>,
    batch: Scalar<i32>,
    tile_m: Scalar<i32>,
    tile_n: Scalar<i32>,
) -> Rt<f32, WM, WN> {
    let a_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BK, BN>, STAGES> = alloc_shared();
    let warps_n = (BN / WN) as i32;
    let (wr, wc) = (warp_idx() / warps_n, warp_idx() % warps_n);
    let k_tiles = ceil_div(bm.dim(2), BK);
    for s in 0..STAGES - 1 {
        copy_start(a_ring.at(s), bm.tile(batch, tile_m, s as i32));
        copy_start(b_ring.at(s), x.tile(batch, s as i32, tile_n));
        copy_commit();
    }
    let mut acc: Rt<f32, WM, WN> = zeros();
    for kt in range(0, k_tiles) {
        copy_wait(STAGES - 2);
        barrier();
        let ahead = kt + (STAGES - 1) as i32;
        let slot = ahead % STAGES as i32;
        copy_start(a_ring.at(slot), bm.tile(batch, tile_m, ahead));
        copy_start(b_ring.at(slot), x.tile(batch, ahead, tile_n));
        copy_commit();
        let cur = kt % STAGES as i32;
        let a_frag: Rt<bf16, WM, BK> = load(a_ring.at(cur).tile(wr, 0));
        let b_frag: Rt<bf16, BK, WN, Col> = load(b_ring.at(cur).tile(0, wc));
        acc = mma_ab(acc, a_frag, b_frag);
    }
    copy_wait(0);
    acc
}

/// `out[z] = a·X + B·X` for `X = x[z]` (`m × n`) and `B = bm[z]` (`m × m`), in bf16.
/// Grid: `[⌈n / BN⌉, ⌈m / BM⌉, B]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<64, 64, 32, 32, 32>),
    shapes(bm: [B, M, M], x: [B, M, N], out: [B, M, N]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), B]
)]
pub fn muon_combine<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    bm: Gl<bf16, 3>,
    x: Gl<bf16, 3>,
    out: GlMut<bf16, 3>,
    a: Scalar<f32>,
) {
    let batch = block_idx_z();
    let (tile_m, tile_n) = (block_idx_y(), block_idx_x());
    let acc = product_tile::<BM, BN, BK, WM, WN>(bm, x, batch, tile_m, tile_n);
    let warps_n = (BN / WN) as i32;
    let row = tile_m * (BM / WM) as i32 + warp_idx() / warps_n;
    let col = tile_n * warps_n + warp_idx() % warps_n;
    let xt: Rt<bf16, WM, WN> = load(x.tile(batch, row, col));
    store(
        out.tile(batch, row, col),
        (acc + xt.cast::<f32>() * a).cast::<bf16>(),
    );
}

/// The last Newton–Schulz step applied to one warp tile of the weights: `O = a·X + B·X` (f32)
/// and `p ← p·decay − scale·O`, or `p ← p·decay − scale·Oᵀ` with `TRANS`; with a `p_model`
/// the new weights are also stored there rounded to bf16 (nearest even). The body of
/// [`muon_apply`] and [`muon_apply_copy`].
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn apply_tile<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const TRANS: bool,
>(
    bm: Gl<bf16, 3>,
    x: Gl<bf16, 3>,
    p: GlMut<f32, 3>,
    p_model: Option<GlMut<bf16, 3>>,
    a: Scalar<f32>,
    decay: Scalar<f32>,
    scale: Scalar<f32>,
) {
    let batch = block_idx_z();
    let (tile_m, tile_n) = (block_idx_y(), block_idx_x());
    let acc = product_tile::<BM, BN, BK, WM, WN>(bm, x, batch, tile_m, tile_n);
    let warps_n = (BN / WN) as i32;
    let row = tile_m * (BM / WM) as i32 + warp_idx() / warps_n;
    let col = tile_n * warps_n + warp_idx() % warps_n;
    let xt: Rt<bf16, WM, WN> = load(x.tile(batch, row, col));
    let o = acc + xt.cast::<f32>() * a;
    if TRANS {
        let pt: Rt<f32, WN, WM> = load(p.tile(batch, col, row));
        let p_new = pt * decay - transpose(o) * scale;
        store(p.tile(batch, col, row), p_new);
        if let Some(w) = p_model {
            store(w.tile(batch, col, row), p_new.cast::<bf16>());
        }
    } else {
        let pt: Rt<f32, WM, WN> = load(p.tile(batch, row, col));
        let p_new = pt * decay - o * scale;
        store(p.tile(batch, row, col), p_new);
        if let Some(w) = p_model {
            store(w.tile(batch, row, col), p_new.cast::<bf16>());
        }
    }
}

/// The last Newton–Schulz step applied to the weights: `O = a·X + B·X` (f32) and
/// `p ← p·decay − scale·O` (`p` is `[B, m, n]`), or `p ← p·decay − scale·Oᵀ` with `TRANS`
/// (`p` is `[B, n, m]`). [`muon_apply_copy`] also writes the bf16 model copy. Grid:
/// `[⌈n / BN⌉, ⌈m / BM⌉, B]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<64, 64, 32, 32, 32, false>, <64, 64, 32, 32, 32, true>),
    selftest = selftest,
    shapes(bm: [B, M, M], x: [B, M, N], p: [B, _, _]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), B]
)]
pub fn muon_apply<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const TRANS: bool,
>(
    bm: Gl<bf16, 3>,
    x: Gl<bf16, 3>,
    p: GlMut<f32, 3>,
    a: Scalar<f32>,
    decay: Scalar<f32>,
    scale: Scalar<f32>,
) {
    apply_tile::<BM, BN, BK, WM, WN, TRANS>(bm, x, p, None, a, decay, scale);
}

/// [`muon_apply`] on f32 master weights that also stores the new weights in `p_model` (`p`'s
/// shape) rounded to bf16 (nearest even): the model copy, written in the update's pass. Grid
/// as [`muon_apply`].
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<64, 64, 32, 32, 32, false>, <64, 64, 32, 32, 32, true>),
    selftest = selftest_copy,
    shapes(bm: [B, M, M], x: [B, M, N], p: [B, R, C], p_model: [B, R, C]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), B]
)]
#[allow(clippy::too_many_arguments)]
pub fn muon_apply_copy<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const TRANS: bool,
>(
    bm: Gl<bf16, 3>,
    x: Gl<bf16, 3>,
    p: GlMut<f32, 3>,
    p_model: GlMut<bf16, 3>,
    a: Scalar<f32>,
    decay: Scalar<f32>,
    scale: Scalar<f32>,
) {
    apply_tile::<BM, BN, BK, WM, WN, TRANS>(bm, x, p, Some(p_model), a, decay, scale);
}

/// Hyperparameters of [`Muon`], named as `torch.optim.Muon` names them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonConfig {
    pub lr: f32,
    /// Decoupled: `p ← p·(1 − lr·weight_decay)` before the update.
    pub weight_decay: f32,
    /// β of the gradient EMA.
    pub momentum: f32,
    pub nesterov: bool,
    /// Newton–Schulz steps (at least 1).
    pub ns_steps: usize,
    /// ε of the normalization `u / (‖u‖_F + ε)`.
    pub eps: f32,
}

impl Default for MuonConfig {
    /// torch's defaults (`lr` 1e-3, `weight_decay` 0.1, momentum 0.95, Nesterov, 5 steps, ε 1e-7).
    fn default() -> Self {
        MuonConfig {
            lr: 1e-3,
            weight_decay: 0.1,
            momentum: 0.95,
            nesterov: true,
            ns_steps: NS_STEPS,
            eps: 1e-7,
        }
    }
}

impl MuonConfig {
    /// The multiplier of the orthogonalized update: `lr·√max(1, rows/cols)`.
    pub fn update_scale(&self, rows: usize, cols: usize) -> f32 {
        (f64::from(self.lr) * (rows as f64 / cols as f64).max(1.0).sqrt()) as f32
    }

    /// `mix` of the kernels: `u = buf + mix·(g − buf)`.
    fn mix(&self) -> f32 {
        if self.nesterov {
            1.0 - self.momentum
        } else {
            0.0
        }
    }
}

/// Why [`Muon`] refused.
#[derive(Debug, thiserror::Error)]
pub enum MuonError {
    #[error("muon: `{name}` must be {expected}, got {found}")]
    Argument {
        name: &'static str,
        expected: String,
        found: String,
    },
    #[error("muon: option `{name}` must be {expected}, got {value}")]
    Option {
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    #[error(transparent)]
    Launch(#[from] crate::Error),
}

/// Muon's state for `B` matrices of one shape `R × C` on a device: the momentum buffer and the
/// scratch of a step (all on the device; a step moves nothing to the host).
pub struct Muon {
    pub config: MuonConfig,
    shape: [usize; 3],
    /// The gradient EMA (f32 `[B, R, C]`).
    pub momentum_buffer: Tensor,
    partial: Tensor,
    scale: Tensor,
    x: [Tensor; 2],
    gram: Tensor,
    poly: Tensor,
}

impl std::fmt::Debug for Muon {
    /// The configuration and shape, not the state's elements.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muon")
            .field("config", &self.config)
            .field("shape", &self.shape)
            .finish()
    }
}

impl Muon {
    /// A zero momentum buffer and the scratch for `shape = [B, R, C]` on `device`.
    pub fn new(device: &Device, shape: [usize; 3], config: MuonConfig) -> Result<Muon, MuonError> {
        let [b, r, c] = shape;
        if b == 0 || r == 0 || c == 0 || i32::try_from(b.max(r).max(c)).is_err() {
            return Err(MuonError::Argument {
                name: "shape",
                expected: "[batch, rows, cols], each at least 1 and at most 2³¹ − 1".into(),
                found: format!("{shape:?}"),
            });
        }
        check_config(&config)?;
        let (m, n) = (r.min(c), r.max(c));
        use ScalarType::{BF16, F32};
        Ok(Muon {
            config,
            shape,
            momentum_buffer: Tensor::zeros(F32, &shape, device)?,
            partial: Tensor::zeros(F32, &[b, partials(r, c)], device)?,
            scale: Tensor::zeros(F32, &[b], device)?,
            x: [
                Tensor::zeros(BF16, &[b, m, n], device)?,
                Tensor::zeros(BF16, &[b, m, n], device)?,
            ],
            gram: Tensor::zeros(BF16, &[b, m, m], device)?,
            poly: Tensor::zeros(BF16, &[b, m, m], device)?,
        })
    }

    /// `[B, R, C]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// One step: updates `params` (f32 `[B, R, C]`) in place from `grads` (f32 `[B, R, C]`)
    /// and the momentum buffer, with `self.config` (which may change between steps).
    pub fn step(
        &mut self,
        device: &Device,
        params: &mut dyn TensorArg,
        grads: &dyn TensorArg,
    ) -> Result<(), MuonError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step: updates the f32 master weights `params` (`[B, R, C]`) in place
    /// from bf16 `grads` (`[B, R, C]`) and writes `model = bf16(params)` (round to nearest
    /// even, bf16 `[B, R, C]`) in the update's pass. The momentum buffer stays f32, and the
    /// Newton–Schulz iteration runs as [`Muon::step`]'s does (bf16 operands, f32 accumulation).
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &mut dyn TensorArg,
        grads: &dyn TensorArg,
        model: &mut dyn TensorArg,
    ) -> Result<(), MuonError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step: `grads` f32, or bf16 with a `model` copy to write.
    fn run(
        &mut self,
        device: &Device,
        params: &mut dyn TensorArg,
        grads: &dyn TensorArg,
        mut model: Option<&mut dyn TensorArg>,
    ) -> Result<(), MuonError> {
        use ScalarType::{BF16, F32};
        let low = if model.is_some() { BF16 } else { F32 };
        let mut expect = vec![("params", &*params, F32), ("grads", grads, low)];
        if let Some(w) = &model {
            expect.push(("model", &**w, BF16));
        }
        for (name, t, dtype) in expect {
            if t.dtype() != dtype || t.shape() != self.shape {
                return Err(MuonError::Argument {
                    name,
                    expected: format!("{dtype} of shape {:?} (the state's)", self.shape),
                    found: format!("{} of shape {:?}", t.dtype(), t.shape()),
                });
            }
        }
        let cfg = self.config;
        check_config(&cfg)?;
        let [_, r, c] = self.shape;
        let trans = r > c;
        let s = |x: f32| ScalarArg::from(x);
        let mix = s(cfg.mix());
        let (beta, eps) = (s(cfg.momentum), s(cfg.eps));
        let (buf, partial) = (&mut self.momentum_buffer, &mut self.partial);
        if low == BF16 {
            muon_momentum::<bf16, CHUNK, WARPS>::launch_auto(
                device, grads, buf, partial, beta, mix,
            )?;
        } else {
            muon_momentum::<f32, CHUNK, WARPS>::launch_auto(
                device, grads, buf, partial, beta, mix,
            )?;
        }
        muon_norm::<NORM_CHUNK>::launch_auto(device, &self.partial, &mut self.scale, eps)?;
        let [x0, x1] = &mut self.x;
        let (mut cur, mut next) = (x0, x1);
        let (buf, scale) = (&self.momentum_buffer, &self.scale);
        match (low == BF16, trans) {
            (false, false) => muon_prepare::<f32, CHUNK, WARPS, false>::launch_auto(
                device, grads, buf, scale, cur, mix,
            ),
            (false, true) => muon_prepare::<f32, CHUNK, WARPS, true>::launch_auto(
                device, grads, buf, scale, cur, mix,
            ),
            (true, false) => muon_prepare::<bf16, CHUNK, WARPS, false>::launch_auto(
                device, grads, buf, scale, cur, mix,
            ),
            (true, true) => muon_prepare::<bf16, CHUNK, WARPS, true>::launch_auto(
                device, grads, buf, scale, cur, mix,
            ),
        }?;
        let (a, b, c3) = NS_COEFFICIENTS;
        for step in 0..cfg.ns_steps {
            // A = X·Xᵀ (`z` is not read: the polynomial's buffer stands in).
            muon_gram::<TILE, TILE_K, WARP_TILE, false>::launch_auto(
                device,
                &*cur,
                &self.poly,
                &mut self.gram,
                s(1.0),
                s(0.0),
            )?;
            // B = c·A·Aᵀ + b·A (A is symmetric: A·Aᵀ = A·A).
            muon_gram::<TILE, TILE_K, WARP_TILE, true>::launch_auto(
                device,
                &self.gram,
                &self.gram,
                &mut self.poly,
                s(c3),
                s(b),
            )?;
            if step + 1 < cfg.ns_steps {
                muon_combine::<TILE, TILE, TILE_K, WARP_TILE, WARP_TILE>::launch_auto(
                    device,
                    &self.poly,
                    &*cur,
                    next,
                    s(a),
                )?;
                std::mem::swap(&mut cur, &mut next);
            }
        }
        let decay = s((1.0 - f64::from(cfg.lr) * f64::from(cfg.weight_decay)) as f32);
        let scale = s(cfg.update_scale(r, c));
        let (poly, x) = (&self.poly, &*cur);
        // The transposed layout is a const parameter, the model copy another kernel: one
        // launch of four.
        macro_rules! apply {
            ($trans:literal) => {
                match model.as_mut() {
                    Some(w) => muon_apply_copy::<
                        TILE, TILE, TILE_K, WARP_TILE, WARP_TILE, $trans
                    >::launch_auto(device, poly, x, params, &mut **w, s(a), decay, scale),
                    None => muon_apply::<
                        TILE, TILE, TILE_K, WARP_TILE, WARP_TILE, $trans
                    >::launch_auto(device, poly, x, params, s(a), decay, scale),
                }
            };
        }
        if trans { apply!(true) } else { apply!(false) }?;
        Ok(())
    }
}

fn check_config(cfg: &MuonConfig) -> Result<(), MuonError> {
    let bad = |name, expected, value: f32| MuonError::Option {
        name,
        expected,
        value: f64::from(value),
    };
    if !cfg.lr.is_finite() || cfg.lr < 0.0 {
        return Err(bad("lr", "finite and at least 0", cfg.lr));
    }
    if !cfg.weight_decay.is_finite() || cfg.weight_decay < 0.0 {
        return Err(bad(
            "weight_decay",
            "finite and at least 0",
            cfg.weight_decay,
        ));
    }
    if !(0.0..1.0).contains(&cfg.momentum) {
        return Err(bad("momentum", "in [0, 1)", cfg.momentum));
    }
    if !(cfg.eps > 0.0 && cfg.eps.is_finite()) {
        return Err(bad("eps", "finite and above 0", cfg.eps));
    }
    if cfg.ns_steps == 0 || cfg.ns_steps > 100 {
        return Err(MuonError::Option {
            name: "ns_steps",
            expected: "in 1..=100",
            value: cfg.ns_steps as f64,
        });
    }
    Ok(())
}

/// `x` rounded to bf16 (nearest even), in f64, from all of its bits (`half`'s `from_f64` drops
/// the low 32 bits first, so a value just past a midpoint can round to the wrong neighbour).
pub fn round_bf16(x: f64) -> f64 {
    crate::ir::numeric::round(ScalarType::BF16, x)
}

/// `steps` Newton–Schulz quintic steps on the row-major `m × n` matrix `x` (`m ≤ n`) in f64,
/// with `round` applied where the kernels store: to `A`, to `B` and to each `X` but the last.
pub fn newton_schulz(
    x: &[f64],
    m: usize,
    n: usize,
    steps: usize,
    round: fn(f64) -> f64,
) -> Vec<f64> {
    let (a, b, c) = NS_COEFFICIENTS;
    let (a, b, c) = (f64::from(a), f64::from(b), f64::from(c));
    let mut x = x.to_vec();
    for step in 0..steps {
        let mut am = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..m {
                am[i * m + j] = round((0..n).map(|k| x[i * n + k] * x[j * n + k]).sum());
            }
        }
        let mut bm = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..m {
                let aa: f64 = (0..m).map(|k| am[i * m + k] * am[k * m + j]).sum();
                bm[i * m + j] = round(b * am[i * m + j] + c * aa);
            }
        }
        let mut next = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let bx: f64 = (0..m).map(|k| bm[i * m + k] * x[k * n + j]).sum();
                let v = a * x[i * n + j] + bx;
                next[i * n + j] = if step + 1 < steps { round(v) } else { v };
            }
        }
        x = next;
    }
    x
}

/// What [`reference()`] computes for `B` matrices of `R × C` (row-major, matrix after matrix).
#[derive(Clone, Debug)]
pub struct Reference {
    /// The weights after the step.
    pub params: Vec<f64>,
    /// The momentum buffer after the step.
    pub momentum_buffer: Vec<f64>,
    /// The orthogonalized update `O` (`R × C` per matrix, before the scale).
    pub ortho: Vec<f64>,
}

/// One Muon step in f64 from the algorithm (module documentation), on `params`, `grads` and
/// `buf` of shape `[B, R, C]`. With `bf16_points`, values are rounded to bf16 where the kernels
/// store them (`X₀`, `A`, `B`, the intermediate `X`): that is the error model of the kernels'
/// arithmetic, against which their f32 accumulation differs only by rounding ties.
pub fn reference(
    params: &[f64],
    grads: &[f64],
    buf: &[f64],
    shape: [usize; 3],
    cfg: &MuonConfig,
    bf16_points: bool,
) -> Reference {
    let [bn, r, c] = shape;
    let (m, n) = (r.min(c), r.max(c));
    let beta = f64::from(cfg.momentum);
    let round: fn(f64) -> f64 = if bf16_points { round_bf16 } else { |x| x };
    let decay = 1.0 - f64::from(cfg.lr) * f64::from(cfg.weight_decay);
    let scale = f64::from(cfg.lr) * (r as f64 / c as f64).max(1.0).sqrt();
    let mut out = Reference {
        params: Vec::with_capacity(params.len()),
        momentum_buffer: Vec::with_capacity(params.len()),
        ortho: Vec::with_capacity(params.len()),
    };
    for z in 0..bn {
        let range = z * r * c..(z + 1) * r * c;
        let (g, b0, p) = (&grads[range.clone()], &buf[range.clone()], &params[range]);
        let b1: Vec<f64> = b0
            .iter()
            .zip(g)
            .map(|(b, g)| beta * b + (1.0 - beta) * g)
            .collect();
        let u: Vec<f64> = if cfg.nesterov {
            g.iter()
                .zip(&b1)
                .map(|(g, b)| (1.0 - beta) * g + beta * b)
                .collect()
        } else {
            b1.clone()
        };
        let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt() + f64::from(cfg.eps);
        // X is m × n: u itself, or uᵀ when R > C.
        let x0: Vec<f64> = (0..m * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                let v = if r > c { u[j * c + i] } else { u[i * c + j] };
                round(v / norm)
            })
            .collect();
        let o = newton_schulz(&x0, m, n, cfg.ns_steps, round);
        for i in 0..r {
            for j in 0..c {
                let v = if r > c { o[j * n + i] } else { o[i * n + j] };
                out.ortho.push(v);
                out.params.push(p[i * c + j] * decay - scale * v);
            }
        }
        out.momentum_buffer.extend(b1);
    }
    out
}

/// The orthogonalized update recovered from one step's weights: `(p₀·decay − p₁) / scale`.
pub fn recovered_update(p0: &[f64], p1: &[f64], shape: [usize; 3], cfg: &MuonConfig) -> Vec<f64> {
    let decay = 1.0 - f64::from(cfg.lr) * f64::from(cfg.weight_decay);
    let scale = f64::from(cfg.lr) * (shape[1] as f64 / shape[2] as f64).max(1.0).sqrt();
    p0.iter()
        .zip(p1)
        .map(|(a, b)| (a * decay - b) / scale)
        .collect()
}

/// The tolerance on the normalized error of the update against the exact f64 step: twice the
/// error that bf16 storage at the kernels' rounding points gives on the same input (the f32
/// accumulation moves a stored value by at most one bf16 step where it lands next to a
/// rounding boundary, which happens at few elements), plus 2⁻⁸ for those.
pub fn update_tolerance(exact: &[f64], bf16_model: &[f64]) -> f64 {
    2.0 * crate::kernels::check::normalized_max_error(bf16_model, exact) + 2f64.powi(-8)
}

/// One step on `B` random matrices of each shape; the update and the momentum buffer against
/// the f64 step.
fn selftest(device: &Device) -> Result<String, String> {
    step_selftest(device, false)
}

/// [`selftest`] of the mixed-precision step: bf16 gradients, and the model copy equal to the
/// f32 master weights rounded to nearest even, bit for bit.
fn selftest_copy(device: &Device) -> Result<String, String> {
    step_selftest(device, true)
}

/// One step (with `model`, a mixed-precision one) on `B` random matrices of each shape against
/// the f64 step.
fn step_selftest(device: &Device, model: bool) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let cfg = MuonConfig {
        lr: 0.02,
        ..MuonConfig::default()
    };
    let mut shapes = vec![[2, 70, 40], [1, 48, 100]];
    if crate::kernels::check::large(device) {
        // The f64 references (exact and bf16 model) run on the host: O(m²n) per NS step.
        shapes.extend([[3, 256, 256], [2, 192, 768], [1, 1024, 256]]);
    }
    let (f, low) = (
        ScalarType::F32,
        if model {
            ScalarType::BF16
        } else {
            ScalarType::F32
        },
    );
    for shape in shapes {
        let p0 = rng.tensor(f, &shape, -1.0, 1.0);
        let g = rng.tensor(low, &shape, -1.0, 1.0);
        let b0 = rng.tensor(f, &shape, -0.5, 0.5);
        let mut muon = Muon::new(device, shape, cfg).map_err(|e| e.to_string())?;
        muon.momentum_buffer = Tensor::from_host(&b0, device).map_err(|e| e.to_string())?;
        let mut p = p0.clone();
        let mut copy = HostTensor::zeros(ScalarType::BF16, &shape);
        if model {
            muon.step_with_model_copy(device, &mut p, &g, &mut copy)
        } else {
            muon.step(device, &mut p, &g)
        }
        .map_err(|e| format!("{shape:?}: {e}"))?;
        let (pv, gv, bv) = (p0.to_vec(), g.to_vec(), b0.to_vec());
        let exact = reference(&pv, &gv, &bv, shape, &cfg, false);
        let bf16_model = reference(&pv, &gv, &bv, shape, &cfg, true);
        let got = recovered_update(&pv, &p.to_vec(), shape, &cfg);
        let tol = update_tolerance(&exact.ortho, &bf16_model.ortho);
        let err = record(format!("{shape:?}: update"), &got, &exact.ortho, tol);
        let buf = muon
            .momentum_buffer
            .to_f64_vec()
            .map_err(|e| e.to_string())?;
        let eb = record(
            format!("{shape:?}: momentum"),
            &buf,
            &exact.momentum_buffer,
            1e-6,
        );
        if err > tol || eb > 1e-6 {
            return Err(format!(
                "{shape:?}: update error {err:.2e} (tolerance {tol:.2e}), momentum {eb:.2e} (seed {})",
                rng.seed
            ));
        }
        if model {
            let master = p.to_vec();
            let at = copy
                .to_vec()
                .iter()
                .zip(&master)
                .position(|(&w, &m)| w != round_bf16(m));
            if let Some(i) = at {
                return Err(format!(
                    "{shape:?}: model copy [{i}] = {}, bf16 of the master weight {} is {} (seed {})",
                    copy.to_vec()[i], master[i], round_bf16(master[i]), rng.seed
                ));
            }
        }
    }
    Ok(if model {
        "update and momentum against the f64 step from bf16 gradients; model copy = bf16(master)"
    } else {
        "update and momentum against the f64 step (bf16 error model for the tolerance)"
    }
    .into())
}
