//! The backward pass of the mixture-of-experts layer of
//! [`moe_gemm::forward`](crate::kernels::moe_gemm::forward): from `dY`
//! `[T, H]` to `dX` `[T, H]`, the experts' weight gradients (`dW_gate`, `dW_up` `[E, F, H]`,
//! `dW_down` `[E, H, F]`, K-major like the weights) and the gradient of the router logits
//! through the gates.
//!
//! With `a = x·W_gate[e]ᵀ`, `b = x·W_up[e]ᵀ`, `h = silu(a) ⊙ b`, `o = h·W_down[e]ᵀ` for each
//! chosen (token, slot) of gate `g` and `y[t] = Σ_slots g·o`:
//!
//! - [`moe_scatter_grad`] (combine backward, first half): `dO[r] = g·dY[t]` into expert order
//!   (bf16; padding and dropped rows stay zero).
//! - [`moe_gate_grad`] (combine backward, second half): `dg[t][c] = dY[t]·o[row_of[t][c]]`,
//!   per-slot dot products, deterministic.
//! - [`moe_gemm_nn`] with one operand: `dH[r] = dO[r]·W_down[e]` (the weights as `K × N`).
//! - [`moe_swiglu_bwd`]: recomputes `a` and `b` (the gate/up grouped GEMM of the forward) and
//!   in its epilogue `dA = dH ⊙ b ⊙ silu'(a)`, `dB = dH ⊙ silu(a)` (bf16).
//! - [`moe_gemm_nn`] with two operands: `dXp[r] = dA[r]·W_gate[e] + dB[r]·W_up[e]` (f32).
//! - the gather backward: `dX[t] = Σ_c dXp[row_of[t][c]]`, slot by slot
//!   ([`moe_combine`](crate::kernels::moe_routing::moe_combine) with unit gates: deterministic).
//! - [`moe_weight_grad`]: `dW[e] = Aₑᵀ·Bₑ`, reducing over expert e's rows
//!   `[offsets[e], offsets[e+1])` of the permuted layout (its padding rows are zero in both
//!   operands): `dW_down = dOᵀ·h`, `dW_gate = dAᵀ·x`, `dW_up = dBᵀ·x`. An expert with no token
//!   gets zeros.
//! - [`moe_route_softmax_bwd`]: `dl_i = g_i (dg_i − Σ_c g_c dg_c)` for the chosen experts,
//!   0 elsewhere (the softmax renormalized over the top k; the choice itself has no gradient).
//! - [`moe_route_sigmoid_bwd`]: DeepSeek-V3's gates `g_c = scale·s_c / S` (`s = sigmoid(l)`,
//!   `S = Σ_chosen s`): `dl_i = s_i (1 − s_i) (scale·dg_i − Σ_c g_c dg_c) / S` for the chosen
//!   experts, 0 elsewhere; the selection bias gets no gradient.
//!
//! **Activations are recomputed, none saved**: [`backward`] takes the forward's inputs and
//! runs the forward's launches again (routing, permutation, gather, gate/up + SwiGLU, down;
//! deterministic, so the same routing), keeping their intermediates, then `a` and `b` once
//! more inside [`moe_swiglu_bwd`]. The cost is one forward plus one gate/up GEMM; the memory
//! is the forward's buffers for the duration of the call. Every step is a launch on the device
//! into buffers sized for the worst case; nothing is read back.
//!
//! Static figures (`tilekit check`, registers, general / aligned views, 0 spills on sm_80,
//! sm_90a and gfx942 for every registered variant): `moe_gemm_nn<1,64,64,32,32,32>` sm_80
//! 128 / 106, sm_90a 96 / 79, gfx942 62 / 56 VGPRs; `moe_gemm_nn<2,..>` sm_80 128 / 96, sm_90a
//! 128 / 78, gfx942 76 / 64; `moe_swiglu_bwd<64,64,32,32,32>` sm_80 168 / 166, sm_90a 168 /
//! 168, gfx942 80 / 80; `moe_weight_grad<64,64,32,32,32>` sm_80 127 / 98, sm_90a 96 / 77, gfx942
//! 52 / 50; the per-token kernels 31 to 160. Hot-loop non-tensor instructions per 1k tensor
//! FLOPs on sm_80, aligned: 1.17 (dH), 0.82 (dX), 0.63 (SwiGLU backward), 0.99 (weight grads).

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::moe_gemm::{self as mg, ExpertWeights, Router, TILE_COLS, TILE_ROWS};
use crate::kernels::moe_routing::{
    self as routing, column_f32, column_i32, load_ids, spread_i32, Layout,
};
use crate::{Device, Error, ScalarArg, Tensor};

/// Warps per block of the per-token kernels (16 tokens each).
pub const WARPS: usize = 4;
/// Columns per block of [`moe_scatter_grad`] and per step of [`moe_gate_grad`].
pub const COLS: usize = 64;
/// Shared bytes a ring may take (as [`gemm::RING_BYTES`](crate::kernels::gemm::RING_BYTES)).
const RING_BYTES: usize = crate::kernels::gemm::RING_BYTES;

/// `dyp[row_of[t][c]] = gates[t][c] · dy[t]` (bf16) for every kept (token, slot); other rows
/// are not written. `dy` `[T, D]` f32, `row_of`, `gates` `[T, K]`, `dyp` `[N, D]`.
/// Grid: `[⌈T / (16·WARPS)⌉, ⌈D / BD⌉, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<64, 4>),
    shapes(dy: [T, D], row_of: [T, K], gates: [T, K], dyp: [N, D], K <= 16),
    grid = [ceil_div(T, 16 * WARPS), ceil_div(D, BD), 1]
)]
pub fn moe_scatter_grad<const BD: usize, const WARPS: usize>(
    dy: Gl<f32, 2>,
    row_of: Gl<i32, 2>,
    gates: Gl<f32, 2>,
    dyp: GlMut<bf16, 2>,
) {
    let (rt, dt) = (block_idx_x() * WARPS as i32 + warp_idx(), block_idx_y());
    let rows = load_ids(row_of, rt);
    let g: Rt<f32, 16, 16> = load(gates.tile(rt, 0));
    let d: Rt<f32, 16, BD> = load(dy.tile(rt, dt));
    for c in range(0, row_of.cols()) {
        let scaled = mul_row(d, column_f32(g, c));
        scatter_rows(dyp, scaled.cast::<bf16>(), column_i32(rows, c), dt);
    }
}

/// `dgates[t][c] = dy[t] · y[row_of[t][c]]` (0 for a dropped slot), summed over `D` in
/// steps of `BD`, in order. `y` `[N, D]` f32 (the experts' outputs before the gates), `dy`
/// `[T, D]`, `row_of`, `dgates` `[T, K]`. Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<64, 4>),
    shapes(y: [N, D], dy: [T, D], row_of: [T, K], dgates: [T, K], K <= 16),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_gate_grad<const BD: usize, const WARPS: usize>(
    y: Gl<f32, 2>,
    dy: Gl<f32, 2>,
    row_of: Gl<i32, 2>,
    dgates: GlMut<f32, 2>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    let rows = load_ids(row_of, rt);
    let cols: Rt<i32, 16, 16> = iota_cols();
    let mut acc: Rt<f32, 16, 16> = zeros();
    for dt in range(0, ceil_div(dy.cols(), BD)) {
        let d: Rt<f32, 16, BD> = load(dy.tile(rt, dt));
        for c in range(0, row_of.cols()) {
            let o: Rt<f32, 16, BD> = gather_rows(y, column_i32(rows, c), dt);
            acc = select(cols.eq(c), add_row(acc, row_sum(o * d)), acc);
        }
    }
    store(dgates.tile(rt, 0), acc);
}

/// Stages of a ring of `stage` bytes a stage: the most of 4, 3, 2 that fit in [`RING_BYTES`].
const fn stages(stage: usize) -> usize {
    let mut s = 4;
    while s > 2 && s * stage > RING_BYTES {
        s -= 1;
    }
    s
}

/// The rows of this warp's `WM` output rows to write: the row's index where it holds a token,
/// −1 where it is padding.
#[crate::func]
fn rows_to_write<const WM: usize>(sorted_token: Gl<i32, 2>, first: Scalar<i32>) -> Rv<i32, WM> {
    let rows: Rv<i32, WM> = iota_rows::<Rv<i32, WM>>() + first;
    let col: Rv<i32, WM> = zeros();
    let tokens: Rv<i32, WM> = gather(sorted_token, (rows, col));
    select(tokens.ge(0), rows, -1)
}

/// `out[r] = Σ_i a_i[r] · w_i[e]` for `i < B` (1 or 2) and every row `r` of a row tile of
/// expert `e = tile_expert[tile]`, the weights read as `K × NO` (row-major, so `W_down[e]`
/// `[H, F]` gives `dO·W_down[e]` and `W_gate[e]` `[F, H]` gives `dA·W_gate[e]`). `a_i`
/// `[N, K]` bf16, `w_i` `[E, K, NO]` bf16, `out` `[N, NO]` f32; `a2`, `w2` are not read when
/// `B` is 1. Rows whose `sorted_token` is −1 and tiles whose expert is −1 are not written.
/// Grid: `[⌈NO / BN⌉, N / BM, 1]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<1, 64, 64, 32, 32, 32>, <2, 64, 64, 32, 32, 32>),
    shapes(
        a1: [N, K],
        w1: [E, K, NO],
        a2: [N, K],
        w2: [E, K, NO],
        tile_expert: [NT],
        sorted_token: [N, 1],
        out: [N, NO],
        N == NT * BM
    ),
    grid = [ceil_div(NO, BN), NT, 1]
)]
pub fn moe_gemm_nn<
    const B: usize,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    a1: Gl<bf16, 2>,
    w1: Gl<bf16, 3>,
    a2: Gl<bf16, 2>,
    w2: Gl<bf16, 3>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    out: GlMut<f32, 2>,
) {
    assert!(
        (B == 1 || B == 2) && BM % WM == 0 && BN % WN == 0 && BK % 16 == 0,
        "moe_gemm_nn: B is 1 or 2, the warp tile {WM}×{WN} must divide the block tile {BM}×{BN}, BK a multiple of 16"
    );
    // A stage: B pairs of a BM × BK activation tile and a BK × BN weight tile.
    match stages(B * (BM * BK + BK * BN) * 2) {
        4.. => nn_body::<B, BM, BN, BK, WM, WN, 4>(a1, w1, a2, w2, tile_expert, sorted_token, out),
        3 => nn_body::<B, BM, BN, BK, WM, WN, 3>(a1, w1, a2, w2, tile_expert, sorted_token, out),
        _ => nn_body::<B, BM, BN, BK, WM, WN, 2>(a1, w1, a2, w2, tile_expert, sorted_token, out),
    }
}

/// The rings of [`nn_body`]: activations and weights of the first operand pair, and of the
/// second (two-operand instantiation only).
type NnRings<const BM: usize, const BN: usize, const BK: usize, const S: usize> = (
    SharedArray<St<bf16, BM, BK>, S>,
    SharedArray<St<bf16, BK, BN>, S>,
    Option<(
        SharedArray<St<bf16, BM, BK>, S>,
        SharedArray<St<bf16, BK, BN>, S>,
    )>,
);

/// Starts the copies of K step `kt` of the tile `at` = (expert, row tile, column tile) into
/// ring slot `slot`. (A plain Rust function: which rings exist is a build-time choice.)
#[allow(clippy::too_many_arguments)]
fn nn_copy<const BM: usize, const BN: usize, const BK: usize, const S: usize>(
    rings: NnRings<BM, BN, BK, S>,
    a1: Gl<bf16, 2>,
    w1: Gl<bf16, 3>,
    a2: Gl<bf16, 2>,
    w2: Gl<bf16, 3>,
    at: (Scalar<i32>, Scalar<i32>, Scalar<i32>),
    slot: Scalar<i32>,
    kt: Scalar<i32>,
) {
    let (expert, tile_m, tile_n) = at;
    copy_start(rings.0.at(slot), a1.tile(tile_m, kt));
    copy_start(rings.1.at(slot), w1.tile(expert, kt, tile_n));
    if let Some((ra, rw)) = rings.2 {
        copy_start(ra.at(slot), a2.tile(tile_m, kt));
        copy_start(rw.at(slot), w2.tile(expert, kt, tile_n));
    }
}

/// `acc + a2 · w2` of K slice `kk` of stage `cur` in the two-operand instantiation, `acc`
/// otherwise.
fn nn_second<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const S: usize,
    const WM: usize,
    const WN: usize,
>(
    rings: NnRings<BM, BN, BK, S>,
    cur: Scalar<i32>,
    warp: (Scalar<i32>, Scalar<i32>),
    kk: usize,
    acc: Rt<f32, WM, WN>,
) -> Rt<f32, WM, WN> {
    match rings.2 {
        Some((ra, rw)) => {
            let a: Rt<bf16, WM, 16> = load(ra.at(cur).tile(warp.0, kk as i32));
            let b: Rt<bf16, 16, WN, Col> = load(rw.at(cur).tile(kk as i32, warp.1));
            mma_ab(acc, a, b)
        }
        None => acc,
    }
}

/// The second operand pair's rings. (A plain Rust function: whether they exist is a
/// build-time choice.)
#[allow(clippy::type_complexity)]
fn second_rings<const BM: usize, const BN: usize, const BK: usize, const S: usize>() -> (
    SharedArray<St<bf16, BM, BK>, S>,
    SharedArray<St<bf16, BK, BN>, S>,
) {
    (alloc_shared(), alloc_shared())
}

/// The body of [`moe_gemm_nn`] with a ring of `STAGES` (the `cp.async` ring of
/// [`moe_gemm`](crate::kernels::moe_gemm)).
#[crate::func]
fn nn_body<
    const B: usize,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const STAGES: usize,
>(
    a1: Gl<bf16, 2>,
    w1: Gl<bf16, 3>,
    a2: Gl<bf16, 2>,
    w2: Gl<bf16, 3>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    out: GlMut<f32, 2>,
) {
    const KS: usize = 16;
    let a_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let w_ring: SharedArray<St<bf16, BK, BN>, STAGES> = alloc_shared();
    let second = (B == 2).then(second_rings::<BM, BN, BK, STAGES>);
    let rings = (a_ring, w_ring, second);
    let (tile_n, tile_m) = (block_idx_x(), block_idx_y());
    let expert: Scalar<i32> = load(tile_expert.at(tile_m));
    let warps_n = (BN / WN) as i32;
    let warp = warp_idx();
    let (warp_row, warp_col) = (warp / warps_n, warp % warps_n);
    // Uniform over the block: every warp reaches the barriers or none does.
    if expert.ge(0) {
        let k_tiles = ceil_div(a1.cols(), BK);
        let at = (expert, tile_m, tile_n);
        for s in 0..STAGES - 1 {
            if k_tiles.gt(s as i32) {
                nn_copy(rings, a1, w1, a2, w2, at, lit(s as i32), lit(s as i32));
            }
            copy_commit();
        }
        let mut acc: Rt<f32, WM, WN> = zeros();
        for kt in range(0, k_tiles) {
            copy_wait(STAGES - 2);
            barrier();
            let ahead = kt + (STAGES - 1) as i32;
            if ahead.lt(k_tiles) {
                nn_copy(rings, a1, w1, a2, w2, at, ahead % STAGES as i32, ahead);
            }
            copy_commit();
            let cur = kt % STAGES as i32;
            for kk in 0..BK / KS {
                let a: Rt<bf16, WM, KS> = load(a_ring.at(cur).tile(warp_row, kk));
                let b: Rt<bf16, KS, WN, Col> = load(w_ring.at(cur).tile(kk, warp_col));
                acc = mma_ab(acc, a, b);
                acc = nn_second(rings, cur, (warp_row, warp_col), kk, acc);
            }
        }
        copy_wait(0);
        let first = tile_m * BM as i32 + warp_row * WM as i32;
        let rows = rows_to_write::<WM>(sorted_token, first);
        scatter_rows(out, acc, rows, tile_n * warps_n + warp_col);
    }
}

/// The SwiGLU backward with the gate/up projection recomputed: for every row `r` of a row
/// tile of expert `e`, `a = x[r]·w_gate[e]ᵀ`, `b = x[r]·w_up[e]ᵀ` (f32, as in
/// [`moe_gemm_swiglu`](crate::kernels::moe_gemm::moe_gemm_swiglu)), then
/// `da[r] = dh[r] ⊙ b ⊙ silu'(a)` and `db[r] = dh[r] ⊙ silu(a)` rounded to bf16, with
/// `silu'(a) = σ(a)(1 + a(1 − σ(a)))`. `x` `[N, H]`, `w_gate`, `w_up` `[E, F, H]`, `dh`
/// `[N, F]` f32, `da`, `db` `[N, F]`; rows whose `sorted_token` is −1 and tiles whose expert
/// is −1 are not written. Grid: `[⌈F / BN⌉, N / BM, 1]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<64, 64, 32, 32, 32>),
    shapes(
        x: [N, H],
        w_gate: [E, F, H],
        w_up: [E, F, H],
        dh: [N, F],
        tile_expert: [NT],
        sorted_token: [N, 1],
        da: [N, F],
        db: [N, F],
        N == NT * BM
    ),
    grid = [ceil_div(F, BN), NT, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn moe_swiglu_bwd<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    x: Gl<bf16, 2>,
    w_gate: Gl<bf16, 3>,
    w_up: Gl<bf16, 3>,
    dh: Gl<f32, 2>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    da: GlMut<bf16, 2>,
    db: GlMut<bf16, 2>,
) {
    assert!(
        BM % WM == 0 && BN % WN == 0 && BK % 16 == 0,
        "moe_swiglu_bwd: the warp tile {WM}×{WN} must divide the block tile {BM}×{BN}, BK a multiple of 16"
    );
    // A stage: a BM × BK activation tile and two BN × BK weight tiles.
    match stages((BM * BK + 2 * BN * BK) * 2) {
        4.. => swiglu_bwd_body::<BM, BN, BK, WM, WN, 4>(
            x,
            w_gate,
            w_up,
            dh,
            tile_expert,
            sorted_token,
            da,
            db,
        ),
        3 => swiglu_bwd_body::<BM, BN, BK, WM, WN, 3>(
            x,
            w_gate,
            w_up,
            dh,
            tile_expert,
            sorted_token,
            da,
            db,
        ),
        _ => swiglu_bwd_body::<BM, BN, BK, WM, WN, 2>(
            x,
            w_gate,
            w_up,
            dh,
            tile_expert,
            sorted_token,
            da,
            db,
        ),
    }
}

/// The body of [`moe_swiglu_bwd`] with a ring of `STAGES`.
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn swiglu_bwd_body<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const STAGES: usize,
>(
    x: Gl<bf16, 2>,
    w_gate: Gl<bf16, 3>,
    w_up: Gl<bf16, 3>,
    dh: Gl<f32, 2>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    da: GlMut<bf16, 2>,
    db: GlMut<bf16, 2>,
) {
    const KS: usize = 16;
    let x_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let g_ring: SharedArray<St<bf16, BN, BK>, STAGES> = alloc_shared();
    let u_ring: SharedArray<St<bf16, BN, BK>, STAGES> = alloc_shared();
    let (tile_n, tile_m) = (block_idx_x(), block_idx_y());
    let expert: Scalar<i32> = load(tile_expert.at(tile_m));
    let warps_n = (BN / WN) as i32;
    let warp = warp_idx();
    let (warp_row, warp_col) = (warp / warps_n, warp % warps_n);
    if expert.ge(0) {
        let k_tiles = ceil_div(x.cols(), BK);
        for s in 0..STAGES - 1 {
            if k_tiles.gt(s as i32) {
                let kt = lit(s as i32);
                copy_start(x_ring.at(s), x.tile(tile_m, kt));
                copy_start(g_ring.at(s), w_gate.tile(expert, tile_n, kt));
                copy_start(u_ring.at(s), w_up.tile(expert, tile_n, kt));
            }
            copy_commit();
        }
        let mut acc_a: Rt<f32, WM, WN> = zeros();
        let mut acc_b: Rt<f32, WM, WN> = zeros();
        for kt in range(0, k_tiles) {
            copy_wait(STAGES - 2);
            barrier();
            let ahead = kt + (STAGES - 1) as i32;
            if ahead.lt(k_tiles) {
                let slot = ahead % STAGES as i32;
                copy_start(x_ring.at(slot), x.tile(tile_m, ahead));
                copy_start(g_ring.at(slot), w_gate.tile(expert, tile_n, ahead));
                copy_start(u_ring.at(slot), w_up.tile(expert, tile_n, ahead));
            }
            copy_commit();
            let cur = kt % STAGES as i32;
            for kk in 0..BK / KS {
                let a: Rt<bf16, WM, KS> = load(x_ring.at(cur).tile(warp_row, kk));
                let g: Rt<bf16, WN, KS> = load(g_ring.at(cur).tile(warp_col, kk));
                acc_a = mma_abt(acc_a, a, g);
                let u: Rt<bf16, WN, KS> = load(u_ring.at(cur).tile(warp_col, kk));
                acc_b = mma_abt(acc_b, a, u);
            }
        }
        copy_wait(0);
        let col = tile_n * warps_n + warp_col;
        let row_tile = tile_m * (BM / WM) as i32 + warp_row;
        let d: Rt<f32, WM, WN> = load(dh.tile(row_tile, col));
        let sg = acc_a.sigmoid();
        let dsilu = sg * (1.0 + acc_a * (1.0 - sg));
        let rows = rows_to_write::<WM>(sorted_token, row_tile * WM as i32);
        scatter_rows(da, (d * acc_b * dsilu).cast::<bf16>(), rows, col);
        scatter_rows(db, (d * acc_a * sg).cast::<bf16>(), rows, col);
    }
}

/// `out[e] = Σ_{r ∈ [offsets[e], offsets[e+1])} a[r]ᵀ · b[r]` (f32): the weight gradient of
/// expert `e` from its rows of the permuted layout, whose padding rows must be zero in `a` or
/// `b` (they are in the buffers [`backward`] fills). `a` `[N, M]`, `b` `[N, NO]` bf16,
/// `offsets` `[E + 1]` (multiples of `BK`, as the layouts of tile `TILE_ROWS` are), `out`
/// `[E, M, NO]`. Grid: `[⌈NO / BN⌉, ⌈M / BM⌉, E]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<64, 64, 32, 32, 32>),
    shapes(a: [N, M], b: [N, NO], offsets: [E1], out: [E, M, NO], E1 == E + 1),
    grid = [ceil_div(NO, BN), ceil_div(M, BM), E]
)]
pub fn moe_weight_grad<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    offsets: Gl<i32, 1>,
    out: GlMut<f32, 3>,
) {
    assert!(
        BM % WM == 0 && BN % WN == 0 && BK % 16 == 0,
        "moe_weight_grad: the warp tile {WM}×{WN} must divide the block tile {BM}×{BN}, BK a multiple of 16"
    );
    match stages((BK * BM + BK * BN) * 2) {
        4.. => weight_grad_body::<BM, BN, BK, WM, WN, 4>(a, b, offsets, out),
        3 => weight_grad_body::<BM, BN, BK, WM, WN, 3>(a, b, offsets, out),
        _ => weight_grad_body::<BM, BN, BK, WM, WN, 2>(a, b, offsets, out),
    }
}

/// The body of [`moe_weight_grad`] with a ring of `STAGES`.
#[crate::func]
fn weight_grad_body<
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const STAGES: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    offsets: Gl<i32, 1>,
    out: GlMut<f32, 3>,
) {
    const KS: usize = 16;
    let a_ring: SharedArray<St<bf16, BK, BM>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BK, BN>, STAGES> = alloc_shared();
    let (tile_n, tile_m, expert) = (block_idx_x(), block_idx_y(), block_idx_z());
    let warps_n = (BN / WN) as i32;
    let warp = warp_idx();
    let (warp_row, warp_col) = (warp / warps_n, warp % warps_n);
    let lo: Scalar<i32> = load(offsets.at(expert));
    let hi: Scalar<i32> = load(offsets.at(expert + 1));
    // The expert's row tiles: the same for the whole block, so the loop's barriers are
    // reached by every warp.
    let first = lo / BK as i32;
    let k_tiles = hi / BK as i32 - first;
    for s in 0..STAGES - 1 {
        if k_tiles.gt(s as i32) {
            copy_start(a_ring.at(s), a.tile(first + s as i32, tile_m));
            copy_start(b_ring.at(s), b.tile(first + s as i32, tile_n));
        }
        copy_commit();
    }
    let mut acc: Rt<f32, WM, WN> = zeros();
    for kt in range(0, k_tiles) {
        copy_wait(STAGES - 2);
        barrier();
        let ahead = kt + (STAGES - 1) as i32;
        if ahead.lt(k_tiles) {
            let slot = ahead % STAGES as i32;
            copy_start(a_ring.at(slot), a.tile(first + ahead, tile_m));
            copy_start(b_ring.at(slot), b.tile(first + ahead, tile_n));
        }
        copy_commit();
        let cur = kt % STAGES as i32;
        for kk in 0..BK / KS {
            let af: Rt<bf16, KS, WM, Col> = load(a_ring.at(cur).tile(kk, warp_row));
            let bf: Rt<bf16, KS, WN, Col> = load(b_ring.at(cur).tile(kk, warp_col));
            acc = mma_atb(acc, af, bf);
        }
    }
    copy_wait(0);
    let row = tile_m * (BM / WM) as i32 + warp_row;
    store(out.tile(expert, row, tile_n * warps_n + warp_col), acc);
}

/// `dlogits[t]` = 0 except at the chosen experts `ids[t][c]` (c < k), which get `dl[t][c]`.
#[crate::func]
fn spread_to_experts(
    dlogits: GlMut<f32, 2>,
    rt: Scalar<i32>,
    ids: Rt<i32, 16, 16>,
    dl: Rt<f32, 16, 16>,
    k: Scalar<i32>,
) {
    for j in range(0, ceil_div(dlogits.cols(), 16)) {
        let experts: Rt<i32, 16, 16> = iota_cols() + j * 16;
        let mut out: Rt<f32, 16, 16> = zeros();
        for c in range(0, k) {
            let id = spread_i32(column_i32(ids, c));
            let z: Rt<f32, 16, 16> = zeros();
            out = select(experts.eq(id), add_row(z, column_f32(dl, c)), out);
        }
        store(dlogits.tile(rt, j), out);
    }
}

/// The softmax top-k router's backward (see the module documentation): `dlogits` `[T, E]`
/// from the chosen `experts`, their `gates` and the gates' gradient `dgates` `[T, K]`.
/// Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<4>),
    shapes(experts: [T, K], gates: [T, K], dgates: [T, K], dlogits: [T, E], K <= 16, E >= K),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_route_softmax_bwd<const WARPS: usize>(
    experts: Gl<i32, 2>,
    gates: Gl<f32, 2>,
    dgates: Gl<f32, 2>,
    dlogits: GlMut<f32, 2>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    let ids = load_ids(experts, rt);
    // Columns past K load as 0 and add nothing.
    let g: Rt<f32, 16, 16> = load(gates.tile(rt, 0));
    let dg: Rt<f32, 16, 16> = load(dgates.tile(rt, 0));
    let dl = g * sub_row(dg, row_sum(g * dg));
    spread_to_experts(dlogits, rt, ids, dl, experts.cols());
}

/// DeepSeek-V3's sigmoid router's backward (see the module documentation): `dlogits`
/// `[T, E]` from the `logits`, the chosen `experts`, their `gates`, the gates' gradient
/// `dgates` `[T, K]` and the routed scaling factor `scale`. Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<4>),
    shapes(
        logits: [T, E],
        experts: [T, K],
        gates: [T, K],
        dgates: [T, K],
        dlogits: [T, E],
        K <= 16,
        E >= K
    ),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_route_sigmoid_bwd<const WARPS: usize>(
    logits: Gl<f32, 2>,
    experts: Gl<i32, 2>,
    gates: Gl<f32, 2>,
    dgates: Gl<f32, 2>,
    scale: Scalar<f32>,
    dlogits: GlMut<f32, 2>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    let ids = load_ids(experts, rt);
    let k = experts.cols();
    let rows: Rv<i32, 16> = iota_rows::<Rv<i32, 16>>() + rt * 16;
    let cols: Rt<i32, 16, 16> = iota_cols();
    // The chosen experts' unbiased scores, 0 past K.
    let mut s: Rt<f32, 16, 16> = zeros();
    for c in range(0, k) {
        let l: Rv<f32, 16> = gather(logits, (rows, column_i32(ids, c)));
        let z: Rt<f32, 16, 16> = zeros();
        s = select(cols.eq(c), add_row(z, l.sigmoid()), s);
    }
    let g: Rt<f32, 16, 16> = load(gates.tile(rt, 0));
    let dg: Rt<f32, 16, 16> = load(dgates.tile(rt, 0));
    let inner = sub_row(dg * scale, row_sum(g * dg));
    let dl = div_row(s * (1.0 - s) * inner, row_sum(s));
    spread_to_experts(dlogits, rt, ids, dl, k);
}

// ---- the layer ----------------------------------------------------------------------------

/// What [`backward`] returns, all f32 on the device.
#[derive(Debug)]
pub struct MoeGrads {
    /// `dL/dx` `[T, H]`.
    pub dx: Tensor,
    /// `dL/dlogits` `[T, E]` (through the gates; zero for the experts a token did not choose).
    pub dlogits: Tensor,
    /// `dL/dW_gate`, `dL/dW_up` `[E, F, H]` and `dL/dW_down` `[E, H, F]`: the weights' layouts.
    pub d_gate: Tensor,
    pub d_up: Tensor,
    pub d_down: Tensor,
}

/// The gradients of `L = Σ dy ⊙ y` for the layer `y = forward(x, logits, router, weights,
/// layout)` of [`moe_gemm::forward`](mg::forward), `dy` `[T, H]` f32 (see the module
/// documentation for the launches; the forward is recomputed inside). The routing itself (which
/// experts, which tokens a masked layout drops) has no gradient; the gates do. Launches only,
/// in order on `device`, with nothing read back.
pub fn backward(
    device: &Device,
    x: &Tensor,
    logits: &Tensor,
    router: Router<'_>,
    weights: ExpertWeights<'_>,
    layout: Layout,
    dy: &Tensor,
) -> Result<MoeGrads, Error> {
    if dy.dtype() != ScalarType::F32 || dy.shape() != x.shape() {
        return Err(Error::Shape {
            kernel: "moe_backward".into(),
            message: format!(
                "`dy` must be f32 of the shape of `x` {:?}, got {} {:?}",
                x.shape(),
                dy.dtype(),
                dy.shape()
            ),
        });
    }
    let (out, saved) = mg::forward_saving(device, x, logits, router, weights, layout)?;
    let f32t = ScalarType::F32;
    let (t, h) = (x.shape()[0], x.shape()[1]);
    let (e, f) = (logits.shape()[1], weights.gate.shape()[1]);
    let k = out.gates.shape()[1];
    let mut grads = MoeGrads {
        dx: Tensor::zeros(f32t, &[t, h], device)?,
        dlogits: Tensor::zeros(f32t, &[t, e], device)?,
        d_gate: Tensor::zeros(f32t, &[e, f, h], device)?,
        d_up: Tensor::zeros(f32t, &[e, f, h], device)?,
        d_down: Tensor::zeros(f32t, &[e, h, f], device)?,
    };
    let Some(s) = saved else {
        // No expert row computed: y is 0 whatever the gates and weights.
        return Ok(grads);
    };
    let n = s.xp.shape()[0];
    let bf = ScalarType::BF16;
    // Combine backward.
    let mut dyp = Tensor::zeros(bf, &[n, h], device)?;
    moe_scatter_grad::<COLS, WARPS>::launch_auto(device, dy, &s.row_of, &out.gates, &mut dyp)?;
    let mut dgates = Tensor::zeros(f32t, &[t, k], device)?;
    moe_gate_grad::<COLS, WARPS>::launch_auto(device, &s.yp, dy, &s.row_of, &mut dgates)?;
    // Down projection backward.
    let mut dhp = Tensor::zeros(f32t, &[n, f], device)?;
    moe_gemm_nn::<1, TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
        device,
        &dyp,
        weights.down,
        &dyp,
        weights.down,
        &s.tile_expert,
        &s.sorted_token,
        &mut dhp,
    )?;
    moe_weight_grad::<TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
        device,
        &dyp,
        &s.hp,
        &s.offsets,
        &mut grads.d_down,
    )?;
    // SwiGLU and gate/up backward.
    let mut dap = Tensor::zeros(bf, &[n, f], device)?;
    let mut dbp = Tensor::zeros(bf, &[n, f], device)?;
    moe_swiglu_bwd::<TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
        device,
        &s.xp,
        weights.gate,
        weights.up,
        &dhp,
        &s.tile_expert,
        &s.sorted_token,
        &mut dap,
        &mut dbp,
    )?;
    let mut dxp = Tensor::zeros(f32t, &[n, h], device)?;
    moe_gemm_nn::<2, TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
        device,
        &dap,
        weights.gate,
        &dbp,
        weights.up,
        &s.tile_expert,
        &s.sorted_token,
        &mut dxp,
    )?;
    for (d, w) in [(&dap, &mut grads.d_gate), (&dbp, &mut grads.d_up)] {
        moe_weight_grad::<TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
            device, d, &s.xp, &s.offsets, w,
        )?;
    }
    // Gather backward: each token sums its slots' rows in slot order.
    let ones = Tensor::full(f32t, &[t, k], 1.0, device)?;
    routing::combine_into(device, &dxp, &s.row_of, &ones, &mut grads.dx)?;
    // Router backward.
    match router {
        Router::Softmax { .. } => moe_route_softmax_bwd::<WARPS>::launch_auto(
            device,
            &out.experts,
            &out.gates,
            &dgates,
            &mut grads.dlogits,
        )?,
        Router::SigmoidGrouped { cfg, .. } => moe_route_sigmoid_bwd::<WARPS>::launch_auto(
            device,
            logits,
            &out.experts,
            &out.gates,
            &dgates,
            ScalarArg::from(cfg.scale),
            &mut grads.dlogits,
        )?,
    }
    Ok(grads)
}
