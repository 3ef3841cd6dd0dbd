//! Shampoo as Distributed Shampoo defines it (Shi et al., "A Distributed Data-Parallel PyTorch
//! Implementation of the Distributed Shampoo Optimizer for Training Neural Networks At-Scale",
//! 2023, and `facebookresearch/optimizers`' `DistributedShampoo`, the v1.0 options named in
//! [`ShampooConfig`]), with every matrix product on the device in f32.
//!
//! For a weight block `W` (`r × c`) with gradient `G`, step `t` (from 1):
//!
//! ```text
//! L ← β₂·L + (1 − β₂)·G·Gᵀ        R ← β₂·R + (1 − β₂)·Gᵀ·G        (β₂ = 1: L ← L + G·Gᵀ)
//! m ← β₁·m + (1 − β₁)·G           (the filtered gradient; m̂ = m / (1 − β₁ᵗ))
//! v ← βₐ·v + (1 − βₐ)·G²          (Adam grafting;          v̂ = v / (1 − βₐᵗ))
//! every `precondition_frequency` steps (from `start_preconditioning_step`):
//!     L⁻¹ᐟ⁴ = root(L / (1 − β₂ᵗ) + ε·I),  R⁻¹ᐟ⁴ likewise       (coupled Newton, below)
//! A = m̂ / (√v̂ + εₐ)                                   (Adam's direction, the graft)
//! P = L⁻¹ᐟ⁴ · m̂ · R⁻¹ᐟ⁴,  S = P·‖A‖_F / (‖P‖_F + 1e-16)   (before the first roots: S = A)
//! b ← μ·b + (1 − dampening)·S;   S ← S + μ·b (Nesterov) or b     (μ = 0: S as it is)
//! W ← W·(1 − lr·λ) − lr·S                              (decoupled weight decay)
//! ```
//!
//! Layers larger than `max_preconditioner_dim` are cut into blocks of at most that size in each
//! dimension (Distributed Shampoo's blocking); each block has its own `L`, `R`, roots and graft
//! norm. A 1-D parameter (a bias) takes the diagonal form: its statistic restricted to the
//! diagonal is `v` itself, whose inverse square root (the root of a 1-D factor) grafted to
//! Adam's norm is Adam's direction, so a bias steps with `S = A` and the same momentum and decay.
//!
//! ## Inverse roots
//!
//! The coupled Newton iteration of Guo and Higham ("A Schur–Newton method for the matrix p-th
//! root and its inverse", SIAM J. Matrix Anal. Appl. 28(3), 2006, eq. (2.6) with the scaling of
//! their Section 3), in the form of Distributed Shampoo's `_matrix_inverse_root_newton`:
//!
//! ```text
//! A = S/(1 − β₂ᵗ) + ε·I,   z = (p + 1) / (2·‖A‖_F)     (‖A‖_F ≥ λ_max: z·λ ∈ (0, (p+1)/2])
//! X₀ = z^{1/p}·I,   M₀ = z·A
//! repeat while ‖M − I‖_max > tolerance and k < max_iterations:
//!     T = ((p + 1)·I − M) / p
//!     X ← X·T,   M ← T^p·M
//! X → A^{-1/p}
//! ```
//!
//! `p = 4` for a matrix's two factors (Shampoo's `2·order` with order 2). `T^p` is formed by
//! squaring (two products for `p = 4`). The error is the largest `|M − I|` element, as
//! `torch.dist(M, I, p=inf)` measures it; each root's iterations and final error are reported
//! to the host ([`RootReport`]). A root whose iteration produced a value that is not finite is
//! discarded and the previous one kept (Distributed Shampoo does the same on failure).
//!
//! ## f32 products on bf16 tensor cores
//!
//! Tensor cores here multiply bf16. Each f32 operand is split exactly into three bf16 pieces,
//! `x = h + m + l` (`h = bf16(x)`, `m = bf16(x − h)`, `l = bf16(x − h − m)`: 24 significand
//! bits, the f32 ones), and a product takes the six terms of `(h + m + l)·(h' + m' + l')` whose
//! weight is at least 2⁻¹⁶ of the leading one, accumulated in f32. The three dropped terms are
//! below 2⁻²⁴ of it, so a product is an f32 GEMM's to within its own rounding (the tests bound
//! it by `(k + 4)·2⁻²⁴·Σ|aᵢ·bᵢ|`), not a bf16 one (2⁻⁸).
//!
//! The kernels:
//! - [`shampoo_gram`]: `S ← β·S + α·G·Gᵀ` (or `Gᵀ·G` with `TRANS`) over one triangle of tiles,
//!   each block writing its tile and the mirrored one (as [`muon_gram`](super::muon::muon_gram)
//!   does, through the same [`upper_tile`] order), so `S` stays exactly symmetric.
//! - [`shampoo_matmul`]: `C = α·A·B` for the Newton products and the preconditioning.
//! - [`shampoo_shift`] `a·X + b·I`, [`shampoo_residual`] (partial maxima of `|M − I|`),
//!   [`shampoo_sumsq`] (partial sums of squares), [`shampoo_adam`] (filtered gradient, Adam's
//!   state and direction), [`shampoo_graft_scale`] (the graft coefficient, on the device),
//!   [`shampoo_apply`] (momentum, decay, update) and [`shampoo_diag`] (the 1-D step).
//!
//! - [`shampoo_widen`]: a bf16 gradient block widened to f32 for the mixed-precision step.
//!
//! [`Shampoo`] holds the state and runs a step. For a bf16 model
//! ([`Shampoo::step_with_model_copy`]) the weights are f32 master weights and the gradients
//! bf16: a block's gradient is widened exactly to f32 (one more pass over it) so the statistics'
//! products, the roots and the preconditioning stay the f32 products above; Adam's state and
//! the momentum are f32; [`shampoo_apply_copy`] and [`shampoo_diag_copy`] (the update kernels
//! with one more parameter, `p_model`) write the bf16 model copy (nearest even) in the
//! update's pass.

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{record, Rng};
use crate::kernels::muon::upper_tile;
use crate::kernels::optim::widen_to_f32;
use crate::{Device, ScalarArg, Tensor};

/// Block tile of the products (square).
pub const TILE: usize = 64;
/// K slice of the products' shared stages (f32: a 64 × 16 panel is 4 KiB).
pub const TILE_K: usize = 16;
/// Warp tile of the products (`WARP_TILE × WARP_TILE`, 4 warps per block).
pub const WARP_TILE: usize = 32;
/// Stages of the products' copy rings (4 stages of two f32 panels: 32 KiB).
pub const STAGES: usize = 4;
/// Columns of the warp tile (16 rows) of the elementwise kernels (at 64, Adam's half held six
/// f32 tiles and took all 255 registers on sm_80).
pub const CHUNK: usize = 32;
/// Warps per block of the elementwise kernels.
pub const WARPS: usize = 4;
/// Elements per chunk of the partial reductions ([`shampoo_graft_scale`]; two loop-carried
/// vectors of 1024 need more than 255 registers on sm_80).
pub const NORM_CHUNK: usize = 256;
/// Elements per warp of the 1-D step ([`shampoo_diag`]).
pub const DIAG_CHUNK: usize = 256;

/// Partials the elementwise kernels write for an `r × c` view: one per 16 × [`CHUNK`] tile.
pub fn partials(r: usize, c: usize) -> usize {
    r.div_ceil(16) * c.div_ceil(CHUNK)
}

/// `x` as three bf16 tiles whose sum is `x` exactly (see the module documentation).
#[crate::func]
fn split3<const R: usize, const C: usize, L: TileLayout>(
    x: Rt<f32, R, C, L>,
) -> (Rt<bf16, R, C, L>, Rt<bf16, R, C, L>, Rt<bf16, R, C, L>) {
    let hi = x.cast::<bf16>();
    let r1 = x - hi.cast::<f32>();
    let mid = r1.cast::<bf16>();
    let lo = (r1 - mid.cast::<f32>()).cast::<bf16>();
    (hi, mid, lo)
}

/// `acc + A·Bᵀ` in f32 from f32 row tiles (six bf16 products, smallest first).
#[crate::func]
fn mma_abt_f32<const M: usize, const N: usize, const K: usize>(
    acc: Rt<f32, M, N>,
    a: Rt<f32, M, K>,
    b: Rt<f32, N, K>,
) -> Rt<f32, M, N> {
    let (ah, am, al) = split3(a);
    let (bh, bm, bl) = split3(b);
    let mut acc = mma_abt(acc, al, bh);
    acc = mma_abt(acc, ah, bl);
    acc = mma_abt(acc, am, bm);
    acc = mma_abt(acc, am, bh);
    acc = mma_abt(acc, ah, bm);
    mma_abt(acc, ah, bh)
}

/// `acc + Aᵀ·B` in f32 from f32 column tiles (`A` is `K × M`, `B` is `K × N`).
#[crate::func]
fn mma_atb_f32<const M: usize, const N: usize, const K: usize>(
    acc: Rt<f32, M, N>,
    a: Rt<f32, K, M, Col>,
    b: Rt<f32, K, N, Col>,
) -> Rt<f32, M, N> {
    let (ah, am, al) = split3(a);
    let (bh, bm, bl) = split3(b);
    let mut acc = mma_atb(acc, al, bh);
    acc = mma_atb(acc, ah, bl);
    acc = mma_atb(acc, am, bm);
    acc = mma_atb(acc, am, bh);
    acc = mma_atb(acc, ah, bm);
    mma_atb(acc, ah, bh)
}

/// `acc + A·B` in f32 (`A` row, `B` column layout).
#[crate::func]
fn mma_ab_f32<const M: usize, const N: usize, const K: usize>(
    acc: Rt<f32, M, N>,
    a: Rt<f32, M, K>,
    b: Rt<f32, K, N, Col>,
) -> Rt<f32, M, N> {
    let (ah, am, al) = split3(a);
    let (bh, bm, bl) = split3(b);
    let mut acc = mma_ab(acc, al, bh);
    acc = mma_ab(acc, ah, bl);
    acc = mma_ab(acc, am, bm);
    acc = mma_ab(acc, am, bh);
    acc = mma_ab(acc, ah, bm);
    mma_ab(acc, ah, bh)
}

/// This warp's `WM × WM` sub-tile of `G_i·G_jᵀ` for the `BM`-row panels `i` and `j` of `g`.
#[crate::func]
fn gram_rows<const BM: usize, const BK: usize, const WM: usize>(
    g: Gl<f32, 2>,
    ti: Scalar<i32>,
    tj: Scalar<i32>,
) -> Rt<f32, WM, WM> {
    let a_ring: SharedArray<St<f32, BM, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<f32, BM, BK>, STAGES> = alloc_shared();
    let per = (BM / WM) as i32;
    let (wr, wc) = (warp_idx() / per, warp_idx() % per);
    let k_tiles = ceil_div(g.cols(), BK);
    for s in 0..STAGES - 1 {
        copy_start(a_ring.at(s), g.tile(ti, s as i32));
        copy_start(b_ring.at(s), g.tile(tj, s as i32));
        copy_commit();
    }
    let mut acc: Rt<f32, WM, WM> = zeros();
    for kt in range(0, k_tiles) {
        copy_wait(STAGES - 2);
        barrier();
        let ahead = kt + (STAGES - 1) as i32;
        let slot = ahead % STAGES as i32;
        copy_start(a_ring.at(slot), g.tile(ti, ahead));
        copy_start(b_ring.at(slot), g.tile(tj, ahead));
        copy_commit();
        let cur = kt % STAGES as i32;
        let a: Rt<f32, WM, BK> = load(a_ring.at(cur).tile(wr, 0));
        let b: Rt<f32, WM, BK> = load(b_ring.at(cur).tile(wc, 0));
        acc = mma_abt_f32(acc, a, b);
    }
    copy_wait(0);
    acc
}

/// This warp's `WM × WM` sub-tile of `G_iᵀ·G_j` for the `BM`-column panels `i` and `j` of `g`.
#[crate::func]
fn gram_cols<const BM: usize, const BK: usize, const WM: usize>(
    g: Gl<f32, 2>,
    ti: Scalar<i32>,
    tj: Scalar<i32>,
) -> Rt<f32, WM, WM> {
    let a_ring: SharedArray<St<f32, BK, BM>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<f32, BK, BM>, STAGES> = alloc_shared();
    let per = (BM / WM) as i32;
    let (wr, wc) = (warp_idx() / per, warp_idx() % per);
    let k_tiles = ceil_div(g.rows(), BK);
    for s in 0..STAGES - 1 {
        copy_start(a_ring.at(s), g.tile(s as i32, ti));
        copy_start(b_ring.at(s), g.tile(s as i32, tj));
        copy_commit();
    }
    let mut acc: Rt<f32, WM, WM> = zeros();
    for kt in range(0, k_tiles) {
        copy_wait(STAGES - 2);
        barrier();
        let ahead = kt + (STAGES - 1) as i32;
        let slot = ahead % STAGES as i32;
        copy_start(a_ring.at(slot), g.tile(ahead, ti));
        copy_start(b_ring.at(slot), g.tile(ahead, tj));
        copy_commit();
        let cur = kt % STAGES as i32;
        let a: Rt<f32, BK, WM, Col> = load(a_ring.at(cur).tile(0, wr));
        let b: Rt<f32, BK, WM, Col> = load(b_ring.at(cur).tile(0, wc));
        acc = mma_atb_f32(acc, a, b);
    }
    copy_wait(0);
    acc
}

/// `stat ← β·stat + α·G·Gᵀ` (`stat` is `r × r`), or `+ α·Gᵀ·G` with `TRANS` (`c × c`), in
/// place. `stat` must be symmetric. Block `p` computes tile `(i, j)`, `i ≤ j` ([`upper_tile`]),
/// and stores it at `(i, j)` and, transposed, at `(j, i)`: only `t(t+1)/2` of `t²` blocks run.
/// Grid: `[t(t+1)/2, 1, 1]`, `t = ⌈M / BM⌉`.
#[crate::kernel(
    warps = ((BM / WM) * (BM / WM)) as u32,
    variants(<64, 16, 32, false>, <64, 16, 32, true>),
    selftest = selftest_gram,
    shapes(g: [R, C], stat: [M, M], M >= 1),
    grid = [ceil_div(M, BM) * (ceil_div(M, BM) + 1) / 2, 1, 1]
)]
pub fn shampoo_gram<const BM: usize, const BK: usize, const WM: usize, const TRANS: bool>(
    g: Gl<f32, 2>,
    stat: GlMut<f32, 2>,
    alpha: Scalar<f32>,
    beta: Scalar<f32>,
) {
    let (ti, tj) = upper_tile(block_idx_x());
    let acc = if TRANS {
        gram_cols::<BM, BK, WM>(g, ti, tj)
    } else {
        gram_rows::<BM, BK, WM>(g, ti, tj)
    };
    let per = (BM / WM) as i32;
    let (wr, wc) = (warp_idx() / per, warp_idx() % per);
    let (row, col) = (ti * per + wr, tj * per + wc);
    // Warp tile (row, col) with row ≤ col and its mirror: in a block on the diagonal the
    // warps below the diagonal neither read nor write (their mirror partners write their
    // tiles). Only this block touches the pair of tiles, so the update is safe in place.
    if row.le(col) {
        let old: Rt<f32, WM, WM> = load(stat.tile(row, col));
        let res = old * beta + acc * alpha;
        // Warp tiles on the diagonal: the split products sum (i, j) and (j, i) in different
        // orders, so the tile is made symmetric (the mean of itself and its transpose is
        // symmetric bit for bit, and within the bound of each).
        let res = select(row.eq(col), (res + transpose(res)) * 0.5, res);
        store(stat.tile(row, col), res);
        if row.lt(col) {
            store(stat.tile(col, row), transpose(res));
        }
    }
}

/// `out = α·A·B` in f32 (`A` is `m × k`, `B` is `k × n`). Grid: `[⌈n / BN⌉, ⌈m / BM⌉, 1]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<64, 64, 16, 32, 32>),
    selftest = selftest_matmul,
    shapes(a: [M, K], b: [K, N], out: [M, N]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), 1]
)]
pub fn shampoo_matmul<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    a: Gl<f32, 2>,
    b: Gl<f32, 2>,
    out: GlMut<f32, 2>,
    alpha: Scalar<f32>,
) {
    let a_ring: SharedArray<St<f32, BM, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<f32, BK, BN>, STAGES> = alloc_shared();
    let (tile_m, tile_n) = (block_idx_y(), block_idx_x());
    let warps_n = (BN / WN) as i32;
    let (wr, wc) = (warp_idx() / warps_n, warp_idx() % warps_n);
    let k_tiles = ceil_div(a.cols(), BK);
    for s in 0..STAGES - 1 {
        copy_start(a_ring.at(s), a.tile(tile_m, s as i32));
        copy_start(b_ring.at(s), b.tile(s as i32, tile_n));
        copy_commit();
    }
    let mut acc: Rt<f32, WM, WN> = zeros();
    for kt in range(0, k_tiles) {
        copy_wait(STAGES - 2);
        barrier();
        let ahead = kt + (STAGES - 1) as i32;
        let slot = ahead % STAGES as i32;
        copy_start(a_ring.at(slot), a.tile(tile_m, ahead));
        copy_start(b_ring.at(slot), b.tile(ahead, tile_n));
        copy_commit();
        let cur = kt % STAGES as i32;
        let af: Rt<f32, WM, BK> = load(a_ring.at(cur).tile(wr, 0));
        let bf: Rt<f32, BK, WN, Col> = load(b_ring.at(cur).tile(0, wc));
        acc = mma_ab_f32(acc, af, bf);
    }
    copy_wait(0);
    let row = tile_m * (BM / WM) as i32 + wr;
    let col = tile_n * warps_n + wc;
    store(out.tile(row, col), acc * alpha);
}

/// The identity's elements in tile `(rt, ct)` of `16 × N` tiles: 1 on the diagonal, else 0.
#[crate::func]
fn identity_tile<const N: usize>(rt: Scalar<i32>, ct: Scalar<i32>) -> Rt<f32, 16, N> {
    let rows: Rt<i32, 16, N> = iota_rows();
    let cols: Rt<i32, 16, N> = iota_cols();
    let diag = (rows + rt * 16).eq(cols + ct * N as i32);
    let one: Rt<f32, 16, N> = fill(1.0);
    select(diag, one, 0.0)
}

/// `out = a·x + b·I` (`x` and `out` are `n × n`; `x` is not read where `a` is 0, so that a
/// scratch of any content may stand in). Grid: `[⌈n / N⌉, ⌈n / (16·WARPS)⌉, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    shapes(x: [R, C], out: [R, C]),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), 1]
)]
pub fn shampoo_shift<const N: usize, const WARPS: usize>(
    x: Gl<f32, 2>,
    out: GlMut<f32, 2>,
    a: Scalar<f32>,
    b: Scalar<f32>,
) {
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let id = identity_tile::<N>(rt, ct) * b;
    let xt: Rt<f32, 16, N> = load(x.tile(rt, ct));
    let res = select(a.eq(0.0), id, xt * a + id);
    store(out.tile(rt, ct), res);
}

/// `partial[t]` = the largest `|m − I|` over warp tile `t` (`16 × N`, row-major over the
/// tiles). A NaN anywhere in the tile gives a NaN partial. Grid as [`shampoo_shift`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    shapes(m: [R, C], partial: [P], P == ceil_div(R, 16) * ceil_div(C, N)),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), 1]
)]
pub fn shampoo_residual<const N: usize, const WARPS: usize>(m: Gl<f32, 2>, partial: GlMut<f32, 1>) {
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let mt: Rt<f32, 16, N> = load(m.tile(rt, ct));
    let d = mt - identity_tile::<N>(rt, ct);
    // Outside the matrix m loads as 0 and the identity is 0 there too (the diagonal of tiles
    // past the edge is past both edges), except on the rows past the last one, where it adds 1
    // at most: mask by the view's shape.
    let rows: Rt<i32, 16, N> = iota_rows();
    let cols: Rt<i32, 16, N> = iota_cols();
    let d = select((cols + ct * N as i32).lt(m.cols()), d, 0.0);
    let d = select((rows + rt * 16).lt(m.rows()), d, 0.0);
    // max(|d|) with NaN kept: |d| ≥ 0 everywhere else, and d ≠ d only for NaN.
    let worst = reduce_all(Red::Max, d * d).sqrt();
    let one: Rt<f32, 16, N> = fill(1.0);
    let nan = reduce_all(Red::Max, select(d.ne(d), one, 0.0));
    if rt.lt(ceil_div(m.rows(), 16)) {
        store(
            partial.at(rt * ceil_div(m.cols(), N) + ct),
            select(nan.gt(0.0), lit::<f32>(f32::NAN), worst),
        );
    }
}

/// `partial[t]` = the sum of squares of `x` over warp tile `t` (as [`shampoo_residual`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    shapes(x: [R, C], partial: [P], P == ceil_div(R, 16) * ceil_div(C, N)),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), 1]
)]
pub fn shampoo_sumsq<const N: usize, const WARPS: usize>(x: Gl<f32, 2>, partial: GlMut<f32, 1>) {
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let xt: Rt<f32, 16, N> = load(x.tile(rt, ct));
    let sum = reduce_all(Red::Sum, xt * xt);
    if rt.lt(ceil_div(x.rows(), 16)) {
        store(partial.at(rt * ceil_div(x.cols(), N) + ct), sum);
    }
}

/// Adam's half of a step on one block, in place: `m ← β₁·m + (1 − β₁)·g`, `v ← βₐ·v + (1 −
/// βₐ)·g²`, `graft = (m·s₁) / (√(v·s₂) + ε)` (`s₁`, `s₂` the bias corrections' reciprocals), and
/// `partial[t]` = the sum of `graft²` over warp tile `t`. Grid as [`shampoo_shift`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    shapes(g: [R, C], m: [R, C], v: [R, C], graft: [R, C], partial: [P], P == ceil_div(R, 16) * ceil_div(C, N)),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn shampoo_adam<const N: usize, const WARPS: usize>(
    g: Gl<f32, 2>,
    m: GlMut<f32, 2>,
    v: GlMut<f32, 2>,
    graft: GlMut<f32, 2>,
    partial: GlMut<f32, 1>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    scale1: Scalar<f32>,
    scale2: Scalar<f32>,
    eps: Scalar<f32>,
) {
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let gt: Rt<f32, 16, N> = load(g.tile(rt, ct));
    let mt: Rt<f32, 16, N> = load(m.tile(rt, ct));
    let vt: Rt<f32, 16, N> = load(v.tile(rt, ct));
    let m_new = mt * beta1 + gt * (lit::<f32>(1.0) - beta1);
    let v_new = vt * beta2 + gt * gt * (lit::<f32>(1.0) - beta2);
    let a = (m_new * scale1) / ((v_new * scale2).sqrt() + eps);
    store(m.tile(rt, ct), m_new);
    store(v.tile(rt, ct), v_new);
    store(graft.tile(rt, ct), a);
    // Outside the block every input loads as 0, so a is 0/ε = 0 there and adds nothing.
    if rt.lt(ceil_div(g.rows(), 16)) {
        store(
            partial.at(rt * ceil_div(g.cols(), N) + ct),
            reduce_all(Red::Sum, a * a),
        );
    }
}

/// `coef[0] = √(Σ graft_partial) / (√(Σ dir_partial) + 1e-16)`: the factor that gives the
/// preconditioned direction the graft's Frobenius norm. The partials are added in a fixed
/// order by one warp. Grid: `[1, 1, 1]`.
#[crate::kernel(
    warps = 1,
    variants(<256>),
    shapes(graft_partial: [P], dir_partial: [P], coef: [1]),
    grid = [1, 1, 1]
)]
pub fn shampoo_graft_scale<const N: usize>(
    graft_partial: Gl<f32, 1>,
    dir_partial: Gl<f32, 1>,
    coef: GlMut<f32, 1>,
) {
    let mut a: Rv<f32, N> = zeros();
    let mut b: Rv<f32, N> = zeros();
    for k in range(0, ceil_div(graft_partial.len(), N)) {
        let x: Rv<f32, N> = load(graft_partial.chunk(k));
        let y: Rv<f32, N> = load(dir_partial.chunk(k));
        a += x;
        b += y;
    }
    let na = reduce_all(Red::Sum, a).sqrt();
    let nb = reduce_all(Red::Sum, b).sqrt();
    store(coef.at(0), na / (nb + 1e-16));
}

/// The end of a step on one warp tile of a block (see [`shampoo_apply`]); with a `p_model` the
/// new weights are also stored there rounded to bf16 (nearest even). The body of
/// [`shampoo_apply`] and [`shampoo_apply_copy`].
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn apply_tile<const N: usize, const WARPS: usize, const PRECOND: bool>(
    p: GlMut<f32, 2>,
    dir: Gl<f32, 2>,
    coef: Gl<f32, 1>,
    mom: GlMut<f32, 2>,
    p_model: Option<GlMut<bf16, 2>>,
    decay: Scalar<f32>,
    lr: Scalar<f32>,
    momentum: Scalar<f32>,
    damp: Scalar<f32>,
    k_s: Scalar<f32>,
    k_b: Scalar<f32>,
) {
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let d: Rt<f32, 16, N> = load(dir.tile(rt, ct));
    let s = if PRECOND {
        let c: Scalar<f32> = load(coef.at(0));
        d * c
    } else {
        d
    };
    let bt: Rt<f32, 16, N> = load(mom.tile(rt, ct));
    let b_new = bt * momentum + s * damp;
    store(mom.tile(rt, ct), b_new);
    let pt: Rt<f32, 16, N> = load(p.tile(rt, ct));
    let p_new = pt * decay - (s * k_s + b_new * k_b) * lr;
    store(p.tile(rt, ct), p_new);
    if let Some(w) = p_model {
        store(w.tile(rt, ct), p_new.cast::<bf16>());
    }
}

/// The end of a step on one block: `s = dir·coef[0]` (with `PRECOND`; else `s = dir`, the
/// graft), `b ← μ·b + δ·s`, `p ← p·decay − lr·(k_s·s + k_b·b)`; the host picks `(k_s, k_b)` =
/// `(1, μ)` for Nesterov, `(0, 1)` for heavy ball, `(1, 0)` without momentum.
/// [`shampoo_apply_copy`] also writes the bf16 model copy. Grid as [`shampoo_shift`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4, false>, <32, 4, true>),
    shapes(p: [R, C], dir: [R, C], coef: [1], mom: [R, C]),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn shampoo_apply<const N: usize, const WARPS: usize, const PRECOND: bool>(
    p: GlMut<f32, 2>,
    dir: Gl<f32, 2>,
    coef: Gl<f32, 1>,
    mom: GlMut<f32, 2>,
    decay: Scalar<f32>,
    lr: Scalar<f32>,
    momentum: Scalar<f32>,
    damp: Scalar<f32>,
    k_s: Scalar<f32>,
    k_b: Scalar<f32>,
) {
    apply_tile::<N, WARPS, PRECOND>(p, dir, coef, mom, None, decay, lr, momentum, damp, k_s, k_b);
}

/// [`shampoo_apply`] on f32 master weights that also stores the new weights in `p_model`
/// (`p`'s shape) rounded to bf16 (nearest even): the model copy, written in the update's
/// pass. Grid as [`shampoo_shift`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4, false>, <32, 4, true>),
    shapes(p: [R, C], dir: [R, C], coef: [1], mom: [R, C], p_model: [R, C]),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn shampoo_apply_copy<const N: usize, const WARPS: usize, const PRECOND: bool>(
    p: GlMut<f32, 2>,
    dir: Gl<f32, 2>,
    coef: Gl<f32, 1>,
    mom: GlMut<f32, 2>,
    p_model: GlMut<bf16, 2>,
    decay: Scalar<f32>,
    lr: Scalar<f32>,
    momentum: Scalar<f32>,
    damp: Scalar<f32>,
    k_s: Scalar<f32>,
    k_b: Scalar<f32>,
) {
    let w = Some(p_model);
    apply_tile::<N, WARPS, PRECOND>(p, dir, coef, mom, w, decay, lr, momentum, damp, k_s, k_b);
}

/// `out = g` widened from bf16 to f32 (exactly): a bf16 gradient block made the f32 operand of
/// the statistics' products and of Adam's half. Grid as [`shampoo_shift`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<32, 4>),
    shapes(g: [R, C], out: [R, C]),
    grid = [ceil_div(C, N), ceil_div(R, 16 * WARPS), 1]
)]
pub fn shampoo_widen<const N: usize, const WARPS: usize>(g: Gl<bf16, 2>, out: GlMut<f32, 2>) {
    let (rt, ct) = (block_idx_y() * WARPS as i32 + warp_idx(), block_idx_x());
    let gt: Rt<bf16, 16, N> = load(g.tile(rt, ct));
    store(out.tile(rt, ct), gt.cast::<f32>());
}

/// The 1-D step on one warp's chunk (see [`shampoo_diag`]) from an f32 or bf16 (widened as it
/// is read) gradient; with a `p_model` the new weights are also stored there rounded to bf16
/// (nearest even). The body of [`shampoo_diag`] and [`shampoo_diag_copy`].
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn diag_chunk<G: RegDtype, const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<G, 1>,
    m: GlMut<f32, 1>,
    v: GlMut<f32, 1>,
    mom: GlMut<f32, 1>,
    p_model: Option<GlMut<bf16, 1>>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    scale1: Scalar<f32>,
    scale2: Scalar<f32>,
    eps: Scalar<f32>,
    decay: Scalar<f32>,
    lr: Scalar<f32>,
    momentum: Scalar<f32>,
    damp: Scalar<f32>,
    k_s: Scalar<f32>,
    k_b: Scalar<f32>,
) {
    let chunk = block_idx_x() * WARPS as i32 + warp_idx();
    let gv = widen_to_f32::<G, N>(load(g.chunk(chunk)));
    let mv: Rv<f32, N> = load(m.chunk(chunk));
    let vv: Rv<f32, N> = load(v.chunk(chunk));
    let m_new = mv * beta1 + gv * (lit::<f32>(1.0) - beta1);
    let v_new = vv * beta2 + gv * gv * (lit::<f32>(1.0) - beta2);
    let s = (m_new * scale1) / ((v_new * scale2).sqrt() + eps);
    store(m.chunk(chunk), m_new);
    store(v.chunk(chunk), v_new);
    let bv: Rv<f32, N> = load(mom.chunk(chunk));
    let b_new = bv * momentum + s * damp;
    store(mom.chunk(chunk), b_new);
    let pv: Rv<f32, N> = load(p.chunk(chunk));
    let p_new = pv * decay - (s * k_s + b_new * k_b) * lr;
    store(p.chunk(chunk), p_new);
    if let Some(w) = p_model {
        store(w.chunk(chunk), p_new.cast::<bf16>());
    }
}

/// The 1-D step (a bias; see the module documentation) from an f32 gradient: Adam's half as
/// [`shampoo_adam`], then the end of the step as [`shampoo_apply`] with `s` = Adam's direction.
/// [`shampoo_diag_copy`] is the step of f32 master weights of a bf16 model. Grid:
/// `[⌈n / (WARPS·N)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    shapes(p: [L], g: [L], m: [L], v: [L], mom: [L]),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn shampoo_diag<const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<f32, 1>,
    m: GlMut<f32, 1>,
    v: GlMut<f32, 1>,
    mom: GlMut<f32, 1>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    scale1: Scalar<f32>,
    scale2: Scalar<f32>,
    eps: Scalar<f32>,
    decay: Scalar<f32>,
    lr: Scalar<f32>,
    momentum: Scalar<f32>,
    damp: Scalar<f32>,
    k_s: Scalar<f32>,
    k_b: Scalar<f32>,
) {
    diag_chunk::<f32, N, WARPS>(
        p, g, m, v, mom, None, beta1, beta2, scale1, scale2, eps, decay, lr, momentum, damp, k_s,
        k_b,
    );
}

/// [`shampoo_diag`] from a bf16 gradient (widened as it is read) that also stores the new f32
/// master weights in `p_model` rounded to bf16 (nearest even): the model copy, written in the
/// update's pass. Grid as [`shampoo_diag`].
#[crate::kernel(
    warps = WARPS as u32,
    variants(<256, 4>),
    shapes(p: [L], g: [L], m: [L], v: [L], mom: [L], p_model: [L]),
    grid = [ceil_div(L, WARPS * N), 1, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn shampoo_diag_copy<const N: usize, const WARPS: usize>(
    p: GlMut<f32, 1>,
    g: Gl<bf16, 1>,
    m: GlMut<f32, 1>,
    v: GlMut<f32, 1>,
    mom: GlMut<f32, 1>,
    p_model: GlMut<bf16, 1>,
    beta1: Scalar<f32>,
    beta2: Scalar<f32>,
    scale1: Scalar<f32>,
    scale2: Scalar<f32>,
    eps: Scalar<f32>,
    decay: Scalar<f32>,
    lr: Scalar<f32>,
    momentum: Scalar<f32>,
    damp: Scalar<f32>,
    k_s: Scalar<f32>,
    k_b: Scalar<f32>,
) {
    let w = Some(p_model);
    diag_chunk::<bf16, N, WARPS>(
        p, g, m, v, mom, w, beta1, beta2, scale1, scale2, eps, decay, lr, momentum, damp, k_s, k_b,
    );
}

/// The root of each Kronecker factor of a matrix: Shampoo's `2·order` for order 2.
pub const ROOT: u32 = 4;

/// Hyper-parameters of [`Shampoo`], named as Distributed Shampoo names them (its defaults
/// where they exist; Adam grafting's as its `AdamGraftingConfig`, the root's as its
/// `CoupledNewtonConfig`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShampooConfig {
    pub lr: f32,
    /// `(β₁, β₂)`: the filtered gradient's EMA and the statistics' (`β₂ = 1`: sums, AdaGrad's
    /// form).
    pub betas: (f32, f32),
    /// ε of the damping `A = L + ε·I` before the root.
    pub epsilon: f32,
    pub momentum: f32,
    pub dampening: f32,
    /// Decoupled (`use_decoupled_weight_decay = True`): `W ← W·(1 − lr·weight_decay)`.
    pub weight_decay: f32,
    /// Blocks of a layer are at most this size in each dimension.
    pub max_preconditioner_dim: usize,
    /// Roots are recomputed every this many steps.
    pub precondition_frequency: usize,
    /// The first step (counted from 1) that uses the roots; before it a step is Adam's
    /// direction (the graft). `None`: `precondition_frequency`, as Distributed Shampoo's −1.
    pub start_preconditioning_step: Option<usize>,
    pub use_nesterov: bool,
    /// Bias corrections of `m`, the statistics (β₂ < 1) and Adam's `v`.
    pub use_bias_correction: bool,
    /// Adam grafting's β₂.
    pub grafting_beta2: f32,
    /// Adam grafting's ε.
    pub grafting_epsilon: f32,
    /// The coupled Newton iteration's cap.
    pub max_iterations: usize,
    /// The coupled Newton iteration stops once `max |M − I| ≤ tolerance`.
    pub tolerance: f32,
}

impl Default for ShampooConfig {
    /// Distributed Shampoo's defaults, except the statistics' β₂ (0.999 rather than 1.0, the
    /// EMA form the Shampoo definition here writes) and the Newton tolerance (1e-5: f32 stalls
    /// near `d·2⁻²⁴` for the block sizes used, below Distributed Shampoo's f64-minded 1e-6).
    fn default() -> Self {
        ShampooConfig {
            lr: 1e-2,
            betas: (0.9, 0.999),
            epsilon: 1e-12,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            max_preconditioner_dim: 1024,
            precondition_frequency: 1,
            start_preconditioning_step: None,
            use_nesterov: false,
            use_bias_correction: true,
            grafting_beta2: 0.999,
            grafting_epsilon: 1e-8,
            max_iterations: 100,
            tolerance: 1e-5,
        }
    }
}

impl ShampooConfig {
    /// Refuses what the options cannot be (the error names the option).
    pub fn check(&self) -> Result<(), ShampooError> {
        check_config(self)
    }

    fn start(&self) -> usize {
        self.start_preconditioning_step
            .unwrap_or(self.precondition_frequency)
    }
}

/// Why [`Shampoo`] refused.
#[derive(Debug, thiserror::Error)]
pub enum ShampooError {
    #[error("shampoo: `{name}` must be {expected}, got {found}")]
    Argument {
        name: String,
        expected: String,
        found: String,
    },
    #[error("shampoo: option `{name}` must be {expected}, got {value}")]
    Option {
        name: &'static str,
        expected: &'static str,
        value: f64,
    },
    #[error(transparent)]
    Launch(#[from] crate::Error),
}

/// How one inverse root's coupled Newton iteration ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RootReport {
    /// Index of the parameter in the list given to [`Shampoo::new`].
    pub param: usize,
    /// Row and column offsets of the block in the parameter.
    pub block: (usize, usize),
    /// `'L'` (rows) or `'R'` (columns).
    pub side: char,
    /// The factor's dimension.
    pub dim: usize,
    pub iterations: usize,
    /// `max |M − I|` after the last iteration (NaN when it failed).
    pub error: f64,
    /// The error reached the tolerance.
    pub converged: bool,
    /// The new root replaced the previous one (false when a value was not finite).
    pub accepted: bool,
}

/// One block of a matrix parameter and its state.
struct Block {
    rows: (usize, usize),
    cols: (usize, usize),
    /// `L` (`r × r`) and `R` (`c × c`).
    stats: [Tensor; 2],
    /// Their inverse 4th roots (valid once `rooted`).
    roots: [Tensor; 2],
    rooted: bool,
    /// The filtered gradient, Adam's `v`, the momentum buffer (`r × c`).
    m: Tensor,
    v: Tensor,
    mom: Tensor,
    /// Adam's direction, `L⁻¹ᐟ⁴·m̂`, the preconditioned direction.
    graft: Tensor,
    half: Tensor,
    dir: Tensor,
    partial: [Tensor; 2],
    coef: Tensor,
}

/// A 1-D parameter's state.
struct Diag {
    m: Tensor,
    v: Tensor,
    mom: Tensor,
}

enum ParamState {
    Matrix(Vec<Block>),
    Vector(Diag),
}

/// Scratch of the Newton iteration for `d × d` factors ([`inverse_root`]).
#[derive(Debug)]
pub struct RootScratch {
    a: Tensor,
    x: [Tensor; 2],
    m: [Tensor; 2],
    t: Tensor,
    t2: Tensor,
    t4: Tensor,
    partial: Tensor,
}

impl RootScratch {
    /// Scratch for `d × d` factors on `device`.
    pub fn new(device: &Device, d: usize) -> Result<RootScratch, crate::Error> {
        let z = || Tensor::zeros(ScalarType::F32, &[d, d], device);
        Ok(RootScratch {
            a: z()?,
            x: [z()?, z()?],
            m: [z()?, z()?],
            t: z()?,
            t2: z()?,
            t4: z()?,
            partial: Tensor::zeros(ScalarType::F32, &[partials(d, d)], device)?,
        })
    }

    /// The root the last accepted [`inverse_root`] left.
    pub fn root(&self) -> &Tensor {
        &self.x[0]
    }
}

/// Shampoo's state for a list of f32 parameters (1-D or 2-D) on a device. Statistics, roots,
/// Adam's state and momentum stay on the device; a step reads back only the Newton iteration's
/// norms and errors when roots are recomputed.
pub struct Shampoo {
    pub config: ShampooConfig,
    shapes: Vec<Vec<usize>>,
    state: Vec<ParamState>,
    scratch: std::collections::BTreeMap<usize, RootScratch>,
    step: usize,
    /// The roots computed by the last step (empty when it computed none).
    pub last_roots: Vec<RootReport>,
}

impl std::fmt::Debug for Shampoo {
    /// The configuration, shapes and step, not the state's elements.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shampoo")
            .field("config", &self.config)
            .field("shapes", &self.shapes)
            .field("step", &self.step)
            .finish()
    }
}

/// `[start, start + len)` cuts of `n` of at most `b`.
fn cuts(n: usize, b: usize) -> Vec<(usize, usize)> {
    (0..n.div_ceil(b))
        .map(|i| (i * b, b.min(n - i * b)))
        .collect()
}

impl Shampoo {
    /// Zero state for parameters of `shapes` (each `[n]` or `[rows, cols]`) on `device`.
    pub fn new(
        device: &Device,
        shapes: &[Vec<usize>],
        config: ShampooConfig,
    ) -> Result<Shampoo, ShampooError> {
        check_config(&config)?;
        let f = ScalarType::F32;
        let mut state = Vec::with_capacity(shapes.len());
        let mut scratch = std::collections::BTreeMap::new();
        for (i, shape) in shapes.iter().enumerate() {
            let ok = matches!(shape.len(), 1 | 2)
                && shape.iter().all(|&n| n >= 1 && i32::try_from(n).is_ok());
            if !ok {
                return Err(ShampooError::Argument {
                    name: format!("shapes[{i}]"),
                    expected: "[n] or [rows, cols], each from 1 to 2³¹ − 1".into(),
                    found: format!("{shape:?}"),
                });
            }
            if let [n] = shape[..] {
                state.push(ParamState::Vector(Diag {
                    m: Tensor::zeros(f, &[n], device)?,
                    v: Tensor::zeros(f, &[n], device)?,
                    mom: Tensor::zeros(f, &[n], device)?,
                }));
                continue;
            }
            let b = config.max_preconditioner_dim;
            let mut blocks = Vec::new();
            for rows in cuts(shape[0], b) {
                for cols in cuts(shape[1], b) {
                    let (r, c) = (rows.1, cols.1);
                    for d in [r, c] {
                        if let std::collections::btree_map::Entry::Vacant(e) = scratch.entry(d) {
                            e.insert(RootScratch::new(device, d)?);
                        }
                    }
                    let z = |s: &[usize]| Tensor::zeros(f, s, device);
                    blocks.push(Block {
                        rows,
                        cols,
                        stats: [z(&[r, r])?, z(&[c, c])?],
                        roots: [z(&[r, r])?, z(&[c, c])?],
                        rooted: false,
                        m: z(&[r, c])?,
                        v: z(&[r, c])?,
                        mom: z(&[r, c])?,
                        graft: z(&[r, c])?,
                        half: z(&[r, c])?,
                        dir: z(&[r, c])?,
                        partial: [z(&[partials(r, c)])?, z(&[partials(r, c)])?],
                        coef: z(&[1])?,
                    });
                }
            }
            state.push(ParamState::Matrix(blocks));
        }
        Ok(Shampoo {
            config,
            shapes: shapes.to_vec(),
            state,
            scratch,
            step: 0,
            last_roots: Vec::new(),
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The statistics `(L, R)` of block `(block rows, block cols)` offset of parameter `param`
    /// (for inspection), or `None` for a 1-D parameter or an offset that starts no block.
    pub fn statistics(&self, param: usize, block: (usize, usize)) -> Option<(&Tensor, &Tensor)> {
        match self.state.get(param)? {
            ParamState::Matrix(blocks) => blocks
                .iter()
                .find(|b| (b.rows.0, b.cols.0) == block)
                .map(|b| (&b.stats[0], &b.stats[1])),
            ParamState::Vector(_) => None,
        }
    }

    /// The inverse roots `(L⁻¹ᐟ⁴, R⁻¹ᐟ⁴)` of a block as [`Shampoo::statistics`] finds it, once
    /// computed.
    pub fn roots(&self, param: usize, block: (usize, usize)) -> Option<(&Tensor, &Tensor)> {
        match self.state.get(param)? {
            ParamState::Matrix(blocks) => blocks
                .iter()
                .find(|b| (b.rows.0, b.cols.0) == block && b.rooted)
                .map(|b| (&b.roots[0], &b.roots[1])),
            ParamState::Vector(_) => None,
        }
    }

    /// One step: updates `params` in place (the launches write their memory through views)
    /// from `grads` (f32, the shapes given to [`Shampoo::new`], in order), with `self.config`
    /// (which may change between steps, but not `max_preconditioner_dim`: the blocks are cut
    /// by `new`).
    pub fn step(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
    ) -> Result<(), ShampooError> {
        self.run(device, params, grads, None)
    }

    /// One mixed-precision step: updates the f32 master weights `params` in place from bf16
    /// `grads` and writes `model[i] = bf16(params[i])` (round to nearest even, bf16 of the
    /// parameter's shape) in the update's pass. Statistics, roots, Adam's state and momentum
    /// stay f32: a matrix block's gradient is widened exactly to f32 (into the block's scratch)
    /// before the f32 products read it, a bias's as the diagonal step reads it.
    pub fn step_with_model_copy(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: &[Tensor],
    ) -> Result<(), ShampooError> {
        self.run(device, params, grads, Some(model))
    }

    /// The step: `grads` f32, or bf16 with a `model` copy to write.
    fn run(
        &mut self,
        device: &Device,
        params: &[Tensor],
        grads: &[Tensor],
        model: Option<&[Tensor]>,
    ) -> Result<(), ShampooError> {
        use ScalarType::{BF16, F32};
        let cfg = self.config;
        check_config(&cfg)?;
        let n = self.shapes.len();
        if params.len() != n || grads.len() != n || model.is_some_and(|w| w.len() != n) {
            return Err(ShampooError::Argument {
                name: String::from("params, grads") + if model.is_some() { ", model" } else { "" },
                expected: format!("{n} tensors each (the shapes given to new)"),
                found: format!("{} and {}", params.len(), grads.len())
                    + &model.map_or(String::new(), |w| format!(" and {}", w.len())),
            });
        }
        let low = if model.is_some() { BF16 } else { F32 };
        for (i, shape) in self.shapes.iter().enumerate() {
            let mut lists = vec![("params", &params[i], F32), ("grads", &grads[i], low)];
            if let Some(w) = model {
                lists.push(("model", &w[i], BF16));
            }
            for (name, t, dtype) in lists {
                if t.dtype() != dtype || t.shape() != &shape[..] {
                    return Err(ShampooError::Argument {
                        name: format!("{name}[{i}]"),
                        expected: format!("{dtype} of shape {shape:?}"),
                        found: format!("{} of shape {:?}", t.dtype(), t.shape()),
                    });
                }
            }
        }
        self.step += 1;
        self.last_roots.clear();
        let t = self.step as i32;
        let (b1, b2) = cfg.betas;
        let bc = |beta: f32, on: bool| {
            if on {
                1.0 - f64::from(beta).powi(t)
            } else {
                1.0
            }
        };
        let bc1 = bc(b1, cfg.use_bias_correction && b1 > 0.0);
        let bc2 = bc(b2, cfg.use_bias_correction && b2 < 1.0);
        let bcg = bc(cfg.grafting_beta2, cfg.use_bias_correction);
        let (stat_beta, stat_alpha) = if b2 < 1.0 { (b2, 1.0 - b2) } else { (1.0, 1.0) };
        let precondition = self.step >= cfg.start();
        let due = self.step % cfg.precondition_frequency == 0;
        let s = |x: f64| ScalarArg::from(x as f32);
        let (mu, damp) = if cfg.momentum > 0.0 {
            (cfg.momentum, 1.0 - cfg.dampening)
        } else {
            (0.0, 1.0)
        };
        let (k_s, k_b) = match (cfg.momentum > 0.0, cfg.use_nesterov) {
            (false, _) => (1.0, 0.0),
            (true, true) => (1.0, mu),
            (true, false) => (0.0, 1.0),
        };
        let decay = 1.0 - f64::from(cfg.lr) * f64::from(cfg.weight_decay);
        for (i, st) in self.state.iter_mut().enumerate() {
            let (p, g) = (&params[i], &grads[i]);
            let blocks = match st {
                ParamState::Vector(d) => {
                    // Views of the whole vectors: the launch writes their memory in place.
                    let mut pv = p.narrow(0, 0, p.shape()[0])?;
                    let args = (
                        s(f64::from(b1)),
                        s(f64::from(cfg.grafting_beta2)),
                        s(1.0 / bc1),
                        s(1.0 / bcg),
                        s(f64::from(cfg.grafting_epsilon)),
                        s(decay),
                        s(f64::from(cfg.lr)),
                        s(f64::from(mu)),
                        s(f64::from(damp)),
                        s(k_s),
                        s(f64::from(k_b)),
                    );
                    let (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10) = args;
                    let (m, v, mom) = (&mut d.m, &mut d.v, &mut d.mom);
                    match model {
                        Some(w) => {
                            let mut wv = w[i].narrow(0, 0, p.shape()[0])?;
                            shampoo_diag_copy::<DIAG_CHUNK, WARPS>::launch_auto(
                                device, &mut pv, g, m, v, mom, &mut wv, a0, a1, a2, a3, a4, a5, a6,
                                a7, a8, a9, a10,
                            )?
                        }
                        None => shampoo_diag::<DIAG_CHUNK, WARPS>::launch_auto(
                            device, &mut pv, g, m, v, mom, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9,
                            a10,
                        )?,
                    }
                    continue;
                }
                ParamState::Matrix(blocks) => blocks,
            };
            for blk in blocks {
                let view = |t: &Tensor| -> Result<Tensor, crate::Error> {
                    t.narrow(0, blk.rows.0, blk.rows.1)?
                        .narrow(1, blk.cols.0, blk.cols.1)
                };
                let mut pb = view(p)?;
                // A bf16 gradient is widened into the block's scratch (which the
                // preconditioning below overwrites only after the last read of the gradient).
                let gb = if model.is_some() {
                    shampoo_widen::<CHUNK, WARPS>::launch_auto(device, &view(g)?, &mut blk.half)?;
                    blk.half.narrow(0, 0, blk.rows.1)?
                } else {
                    view(g)?
                };
                let mut wb = model.map(|w| view(&w[i])).transpose()?;
                let (sa, sb) = (s(f64::from(stat_alpha)), s(f64::from(stat_beta)));
                shampoo_gram::<TILE, TILE_K, WARP_TILE, false>::launch_auto(
                    device,
                    &gb,
                    &mut blk.stats[0],
                    sa,
                    sb,
                )?;
                shampoo_gram::<TILE, TILE_K, WARP_TILE, true>::launch_auto(
                    device,
                    &gb,
                    &mut blk.stats[1],
                    sa,
                    sb,
                )?;
                shampoo_adam::<CHUNK, WARPS>::launch_auto(
                    device,
                    &gb,
                    &mut blk.m,
                    &mut blk.v,
                    &mut blk.graft,
                    &mut blk.partial[0],
                    s(f64::from(b1)),
                    s(f64::from(cfg.grafting_beta2)),
                    s(1.0 / bc1),
                    s(1.0 / bcg),
                    s(f64::from(cfg.grafting_epsilon)),
                )?;
                if precondition && (due || !blk.rooted) {
                    let mut fresh = true;
                    for side in 0..2 {
                        let d = if side == 0 { blk.rows.1 } else { blk.cols.1 };
                        // Allocated in `new` for every block's dimensions.
                        let Some(scratch) = self.scratch.get_mut(&d) else {
                            return Err(ShampooError::Argument {
                                name: "block dimension".into(),
                                expected: "one Shampoo::new allocated scratch for".into(),
                                found: d.to_string(),
                            });
                        };
                        let mut report = inverse_root(
                            device,
                            &blk.stats[side],
                            scratch,
                            1.0 / bc2,
                            f64::from(cfg.epsilon),
                            &cfg,
                        )?;
                        if report.accepted {
                            std::mem::swap(&mut blk.roots[side], &mut scratch.x[0]);
                        }
                        fresh &= report.accepted;
                        report.param = i;
                        report.block = (blk.rows.0, blk.cols.0);
                        report.side = if side == 0 { 'L' } else { 'R' };
                        self.last_roots.push(report);
                    }
                    // A block is preconditioned once both of its roots have been accepted.
                    blk.rooted |= fresh;
                }
                let sdecay = s(decay);
                let (slr, smu, sdamp) =
                    (s(f64::from(cfg.lr)), s(f64::from(mu)), s(f64::from(damp)));
                if precondition && blk.rooted {
                    shampoo_matmul::<TILE, TILE, TILE_K, WARP_TILE, WARP_TILE>::launch_auto(
                        device,
                        &blk.roots[0],
                        &blk.m,
                        &mut blk.half,
                        s(1.0 / bc1),
                    )?;
                    shampoo_matmul::<TILE, TILE, TILE_K, WARP_TILE, WARP_TILE>::launch_auto(
                        device,
                        &blk.half,
                        &blk.roots[1],
                        &mut blk.dir,
                        s(1.0),
                    )?;
                    shampoo_sumsq::<CHUNK, WARPS>::launch_auto(
                        device,
                        &blk.dir,
                        &mut blk.partial[1],
                    )?;
                    shampoo_graft_scale::<NORM_CHUNK>::launch_auto(
                        device,
                        &blk.partial[0],
                        &blk.partial[1],
                        &mut blk.coef,
                    )?;
                }
                let preconditioned = precondition && blk.rooted;
                let dir = if preconditioned { &blk.dir } else { &blk.graft };
                let (coef, mom) = (&blk.coef, &mut blk.mom);
                let (sks, skb) = (s(k_s), s(f64::from(k_b)));
                match (preconditioned, wb.as_mut()) {
                    (false, None) => shampoo_apply::<CHUNK, WARPS, false>::launch_auto(
                        device, &mut pb, dir, coef, mom, sdecay, slr, smu, sdamp, sks, skb,
                    ),
                    (true, None) => shampoo_apply::<CHUNK, WARPS, true>::launch_auto(
                        device, &mut pb, dir, coef, mom, sdecay, slr, smu, sdamp, sks, skb,
                    ),
                    (false, Some(wb)) => shampoo_apply_copy::<CHUNK, WARPS, false>::launch_auto(
                        device, &mut pb, dir, coef, mom, wb, sdecay, slr, smu, sdamp, sks, skb,
                    ),
                    (true, Some(wb)) => shampoo_apply_copy::<CHUNK, WARPS, true>::launch_auto(
                        device, &mut pb, dir, coef, mom, wb, sdecay, slr, smu, sdamp, sks, skb,
                    ),
                }?;
            }
        }
        Ok(())
    }
}

/// The sum of a partials tensor, read back to the host, in f64.
fn host_sum(t: &Tensor) -> Result<f64, crate::Error> {
    Ok(t.to_f64_vec()?.iter().sum())
}

/// The inverse [`ROOT`]th root of `stat·a_scale + eps·I` by the coupled Newton iteration (see
/// the module documentation), left in `scratch.x[0]`. `accepted` is false (and `scratch.x[0]`
/// not a root) when the norm or an error was not finite. `stat` and `scratch` must be of one
/// dimension `d` (the views' shapes mask every access: a mismatch gives a wrong root, not an
/// access out of bounds).
pub fn inverse_root(
    device: &Device,
    stat: &Tensor,
    scratch: &mut RootScratch,
    a_scale: f64,
    eps: f64,
    cfg: &ShampooConfig,
) -> Result<RootReport, crate::Error> {
    let d = stat.shape()[0];
    let s = |x: f64| ScalarArg::from(x as f32);
    let p = f64::from(ROOT);
    shampoo_shift::<CHUNK, WARPS>::launch_auto(device, stat, &mut scratch.a, s(a_scale), s(eps))?;
    shampoo_sumsq::<CHUNK, WARPS>::launch_auto(device, &scratch.a, &mut scratch.partial)?;
    let norm = host_sum(&scratch.partial)?.sqrt();
    let mut report = RootReport {
        param: 0,
        block: (0, 0),
        side: 'L',
        dim: d,
        iterations: 0,
        error: f64::NAN,
        converged: false,
        accepted: false,
    };
    if !(norm.is_finite() && norm > 0.0) {
        return Ok(report);
    }
    let z = (p + 1.0) / (2.0 * norm);
    let [x0, x1] = &mut scratch.x;
    let [m0, m1] = &mut scratch.m;
    shampoo_shift::<CHUNK, WARPS>::launch_auto(device, &scratch.a, x0, s(0.0), s(z.powf(1.0 / p)))?;
    shampoo_shift::<CHUNK, WARPS>::launch_auto(device, &scratch.a, m0, s(z), s(0.0))?;
    let residual = |m: &Tensor, partial: &mut Tensor| -> Result<f64, crate::Error> {
        shampoo_residual::<CHUNK, WARPS>::launch_auto(device, m, partial)?;
        Ok(partial.to_f64_vec()?.iter().fold(0.0f64, |w, &e| {
            if e.is_nan() || w.is_nan() {
                f64::NAN
            } else {
                w.max(e)
            }
        }))
    };
    let tol = f64::from(cfg.tolerance);
    let mut err = residual(m0, &mut scratch.partial)?;
    let mut k = 0;
    let mm = |a: &Tensor, b: &Tensor, out: &mut Tensor| {
        shampoo_matmul::<TILE, TILE, TILE_K, WARP_TILE, WARP_TILE>::launch_auto(
            device,
            a,
            b,
            out,
            s(1.0),
        )
    };
    while err.is_finite() && err > tol && k < cfg.max_iterations {
        // T = ((p + 1)·I − M) / p
        shampoo_shift::<CHUNK, WARPS>::launch_auto(
            device,
            &*m0,
            &mut scratch.t,
            s(-1.0 / p),
            s((p + 1.0) / p),
        )?;
        mm(x0, &scratch.t, x1)?;
        std::mem::swap(x0, x1);
        mm(&scratch.t, &scratch.t, &mut scratch.t2)?;
        mm(&scratch.t2, &scratch.t2, &mut scratch.t4)?;
        mm(&scratch.t4, m0, m1)?;
        std::mem::swap(m0, m1);
        err = residual(m0, &mut scratch.partial)?;
        k += 1;
    }
    report.iterations = k;
    report.error = err;
    report.converged = err <= tol;
    report.accepted = err.is_finite();
    Ok(report)
}

fn check_config(cfg: &ShampooConfig) -> Result<(), ShampooError> {
    let bad = |name, expected, value: f64| ShampooError::Option {
        name,
        expected,
        value,
    };
    let nonneg = |name, v: f32| {
        if v.is_finite() && v >= 0.0 {
            Ok(())
        } else {
            Err(bad(name, "finite and at least 0", f64::from(v)))
        }
    };
    nonneg("lr", cfg.lr)?;
    nonneg("weight_decay", cfg.weight_decay)?;
    if !(0.0..1.0).contains(&cfg.betas.0) {
        return Err(bad("betas.0", "in [0, 1)", f64::from(cfg.betas.0)));
    }
    if !(cfg.betas.1 > 0.0 && cfg.betas.1 <= 1.0) {
        return Err(bad("betas.1", "in (0, 1]", f64::from(cfg.betas.1)));
    }
    if !(0.0..1.0).contains(&cfg.grafting_beta2) || cfg.grafting_beta2 == 0.0 {
        return Err(bad(
            "grafting_beta2",
            "in (0, 1)",
            f64::from(cfg.grafting_beta2),
        ));
    }
    if !(0.0..1.0).contains(&cfg.momentum) {
        return Err(bad("momentum", "in [0, 1)", f64::from(cfg.momentum)));
    }
    if !(0.0..=1.0).contains(&cfg.dampening) {
        return Err(bad("dampening", "in [0, 1]", f64::from(cfg.dampening)));
    }
    for (name, v) in [
        ("epsilon", cfg.epsilon),
        ("grafting_epsilon", cfg.grafting_epsilon),
        ("tolerance", cfg.tolerance),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(bad(name, "finite and above 0", f64::from(v)));
        }
    }
    let count = |name, v: usize, lo: usize, hi: usize, expected| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(bad(name, expected, v as f64))
        }
    };
    count(
        "max_preconditioner_dim",
        cfg.max_preconditioner_dim,
        1,
        i32::MAX as usize,
        "from 1 to 2³¹ − 1",
    )?;
    count(
        "precondition_frequency",
        cfg.precondition_frequency,
        1,
        usize::MAX,
        "at least 1",
    )?;
    count(
        "max_iterations",
        cfg.max_iterations,
        0,
        10_000,
        "at most 10000",
    )?;
    if cfg.start() == 0 {
        return Err(bad(
            "start_preconditioning_step",
            "at least 1 (steps count from 1)",
            0.0,
        ));
    }
    Ok(())
}

/// The unit roundoff of f32 (round to nearest).
pub const U_F32: f64 = 1.0 / 16_777_216.0;

/// `α·A·B` in f64 (`A` `m × k`, `B` `k × n`, row-major) and the bound of an f32 product of the
/// split kind on each element: `(6k + 8)·2⁻²⁴·|α|·Σ|a·b|` (six f32 additions per term, the
/// three dropped terms and the split's remainder below 4·2⁻²⁴ of each `|a·b|`), plus the
/// rounding of the scaled result.
pub fn matmul_reference(
    a: &[f64],
    b: &[f64],
    (m, k, n): (usize, usize, usize),
    alpha: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut want = vec![0.0; m * n];
    let mut bound = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut s, mut abs) = (0.0, 0.0);
            for kk in 0..k {
                let p = a[i * k + kk] * b[kk * n + j];
                s += p;
                abs += p.abs();
            }
            want[i * n + j] = alpha * s;
            bound[i * n + j] =
                (6 * k + 8) as f64 * U_F32 * alpha.abs() * abs + U_F32 * (alpha * s).abs();
        }
    }
    (want, bound)
}

/// The largest `|got − want| / bound` (infinite where `got` is not finite and `want` is).
pub fn bound_ratio(got: &[f64], want: &[f64], bound: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .zip(bound)
        .fold(0.0f64, |w, ((g, x), b)| {
            let e = (g - x).abs();
            w.max(if e.is_finite() {
                e / b.max(f64::MIN_POSITIVE)
            } else {
                f64::INFINITY
            })
        })
}

/// `β·S + α·op(G)·op(G)ᵀ` in f64 (`G` `r × c` row-major; `op(G) = Gᵀ` with `trans`) and the
/// bound of the kernel's f32 arithmetic per element.
pub fn gram_reference(
    g: &[f64],
    s: &[f64],
    (r, c): (usize, usize),
    trans: bool,
    alpha: f64,
    beta: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (d, k) = if trans { (c, r) } else { (r, c) };
    // op(G) as d × k and its transpose k × d.
    let at = |i: usize, kk: usize| if trans { g[kk * c + i] } else { g[i * c + kk] };
    let a: Vec<f64> = (0..d * k).map(|x| at(x / k, x % k)).collect();
    let bt: Vec<f64> = (0..k * d).map(|x| at(x % d, x / d)).collect();
    let (prod, pb) = matmul_reference(&a, &bt, (d, k, d), alpha);
    let want: Vec<f64> = prod.iter().zip(s).map(|(p, s)| p + beta * s).collect();
    let bound: Vec<f64> = pb
        .iter()
        .zip(s)
        .zip(&want)
        .map(|((b, s), w)| b + 2.0 * U_F32 * ((beta * s).abs() + w.abs()))
        .collect();
    (want, bound)
}

/// A random symmetric `d × d` matrix with elements in `[−1, 1)`.
fn symmetric(rng: &mut Rng, d: usize) -> Vec<f64> {
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in i..d {
            let v = f64::from(rng.uniform(-1.0, 1.0) as f32);
            s[i * d + j] = v;
            s[j * d + i] = v;
        }
    }
    s
}

/// Both variants on ragged shapes against f64, within the f32 bound of [`gram_reference`];
/// the result must be exactly symmetric.
fn selftest_gram(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(70, 40), (20, 130)];
    if crate::kernels::check::large(device) {
        shapes.extend([(300, 257), (1024, 512)]);
    }
    for (r, c) in shapes {
        let g = rng.tensor(ScalarType::F32, &[r, c], -1.0, 1.0);
        for trans in [false, true] {
            let d = if trans { c } else { r };
            let s0 = symmetric(&mut rng, d);
            let mut st = crate::ir::interp::HostTensor::new(ScalarType::F32, &[d, d], &s0)
                .map_err(|e| e.to_string())?;
            let (alpha, beta) = (0.25f32, 0.75f32);
            let (sa, sb) = (ScalarArg::from(alpha), ScalarArg::from(beta));
            if trans {
                shampoo_gram::<TILE, TILE_K, WARP_TILE, true>::launch_auto(
                    device, &g, &mut st, sa, sb,
                )
            } else {
                shampoo_gram::<TILE, TILE_K, WARP_TILE, false>::launch_auto(
                    device, &g, &mut st, sa, sb,
                )
            }
            .map_err(|e| format!("{r}×{c} trans {trans}: {e}"))?;
            let got = st.to_vec();
            let (want, bound) = gram_reference(&g.to_vec(), &s0, (r, c), trans, 0.25, 0.75);
            let ratio = bound_ratio(&got, &want, &bound);
            let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let tol = bound.iter().fold(0.0f64, |m, x| m.max(*x)) / scale;
            record(format!("{r}×{c} trans {trans}"), &got, &want, tol);
            let asym = (0..d * d).any(|x| got[x] != got[(x % d) * d + x / d]);
            if ratio > 1.0 || asym {
                return Err(format!(
                    "{r}×{c} trans {trans}: error {ratio:.2} of the f32 bound, symmetric {} (seed {})",
                    !asym, rng.seed
                ));
            }
        }
    }
    Ok("β·S + α·G·Gᵀ and Gᵀ·G within the f32 bound, exactly symmetric".into())
}

/// Ragged shapes against f64 within the f32 bound of [`matmul_reference`].
fn selftest_matmul(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(70, 33, 40), (64, 64, 64)];
    if crate::kernels::check::large(device) {
        shapes.extend([(512, 512, 512), (257, 129, 1000)]);
    }
    for (m, k, n) in shapes {
        let a = rng.tensor(ScalarType::F32, &[m, k], -1.0, 1.0);
        let b = rng.tensor(ScalarType::F32, &[k, n], -1.0, 1.0);
        let mut c = crate::kernels::check::poisoned(ScalarType::F32, &[m, n]);
        shampoo_matmul::<TILE, TILE, TILE_K, WARP_TILE, WARP_TILE>::launch_auto(
            device,
            &a,
            &b,
            &mut c,
            ScalarArg::from(0.5f32),
        )
        .map_err(|e| format!("{m}×{k}×{n}: {e}"))?;
        let (want, bound) = matmul_reference(&a.to_vec(), &b.to_vec(), (m, k, n), 0.5);
        let got = c.to_vec();
        let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let tol = bound.iter().fold(0.0f64, |m, x| m.max(*x)) / scale;
        record(format!("{m}×{k}×{n}"), &got, &want, tol);
        let ratio = bound_ratio(&got, &want, &bound);
        if ratio > 1.0 {
            return Err(format!(
                "{m}×{k}×{n}: error {ratio:.2} of the f32 bound (seed {})",
                rng.seed
            ));
        }
    }
    Ok("α·A·B within the f32 bound".into())
}
