//! Grouped GEMMs of a mixture-of-experts layer over the permuted row layout of
//! [`moe_routing`](crate::kernels::moe_routing), and the layer's forward pass on the device.
//!
//! - [`moe_gather`]: `xp[r] = x[sorted_token[r]]`, the tokens' hidden rows in expert order
//!   (padding rows get zeros).
//! - [`moe_gemm_swiglu`]: the gate/up projection with SwiGLU fused into the epilogue:
//!   `h[r] = silu(xp[r]·W_gate[e]ᵀ) ⊙ (xp[r]·W_up[e]ᵀ)`, bf16, with `e` the expert of row `r`'s
//!   tile.
//! - [`moe_gemm`]: the down projection `y[r] = h[r]·W_down[e]ᵀ` (any plain grouped GEMM).
//! - [`forward`]: route → permute → gather → gate/up + SwiGLU → down → combine, every step a
//!   launch on the device with buffers sized for the worst case, so nothing is read back
//!   between them.
//!
//! **Weights are K-major, `[E, N, K]`** (`W[e]` is `N × K`, the GEMM computes `x·W[e]ᵀ`): the
//! layout of `nn.Linear` weights (`[out, in]`) in which MoE checkpoints ship (Mixtral's
//! `w1`/`w3`/`w2`, DeepSeek-V3's `gate_proj`/`up_proj`/`down_proj`), and the operand order the
//! fp8 `wgmma` requires (K-major only), so the FP8 path can read the same layout. Both
//! operands' shared tiles are then K-contiguous, and the warp's `mma` is `A·Bᵀ`.
//!
//! **Tiles and experts.** Blocks compute `BM × BN` tiles of the output; the permutation must be
//! laid out with `align == BM`, so that every row tile belongs to one expert, read from the
//! layout's `tile_expert` table. A tile whose expert is −1 (no token: the padding at the end of
//! the worst-case buffer, or the unused capacity of a masked expert) does nothing. Rows whose
//! token is −1 (padding inside a tile, dropped capacity) are not written: their outputs are
//! left as they were, and the combine never reads them. Each row's output depends only on that
//! row's input, so whatever a padding row of the input holds cannot reach a token's row.
//!
//! **Scheduling.** The grid is `[⌈N_out / BN⌉, row tiles of the worst case, 1]`: the number of
//! row tiles in use is only known on the device, so blocks of unused tiles exit at once (one
//! load of `tile_expert`). Consecutive blocks share a row tile (the x axis runs over output
//! columns), so its activation panel stays in L2 while the expert's weight panel streams.
//!
//! The K loop is the multistage `cp.async` ring of [`gemm`](crate::kernels::gemm) (prologue of
//! `STAGES − 1` stages, one wait and one barrier per step; stages past K are masked copies of
//! zeros).
//!
//! Static figures (`tilekit check`, registers / hot-loop non-tensor instructions per 1k tensor
//! FLOPs, 0 spills everywhere; general / aligned views): `moe_gemm<f32,64,64,32,32,32>` sm_80
//! 127 / 3.68, 96 / 0.98; sm_90a 96 / 3.92, 79 / 1.16; gfx942 52 / 3.57, 48 / 1.08 VGPRs.
//! `moe_gemm_swiglu<bf16,64,64,32,32,32>` sm_80 168 / 2.56, 152 / 0.64; sm_90a 168 / 2.71,
//! 128 / 0.67; gfx942 76 / 2.43, 72 / 0.63 VGPRs. The general compiles pay for per-element
//! edge masks in the loop; the gate/up kernel shares each activation fragment between two
//! `mma`s, hence its lower figure.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, Rng};
use crate::kernels::gemm::RING_BYTES;
use crate::kernels::moe_gemm_wg as wg;
use crate::kernels::moe_routing::{self as routing, Layout};
use crate::{Device, Error, Tensor};

/// Rows of the tiles of the library's grouped GEMMs: the `align` of the permutation
/// [`forward`] builds.
pub const TILE_ROWS: usize = 64;
/// Columns of the output tile of the library's grouped GEMMs.
pub const TILE_COLS: usize = 64;
/// Columns per block of [`moe_gather`].
pub const GATHER_COLS: usize = 64;
/// Warps per block of [`moe_gather`] (16 rows each).
pub const GATHER_WARPS: usize = 4;

/// `xp[r] = x[sorted_token[r]]` for the permuted rows (zeros where the token is −1).
/// `x` `[T, H]`, `sorted_token` `[N, 1]`, `xp` `[N, H]`.
/// Grid: `[⌈N / (16·WARPS)⌉, ⌈H / BH⌉, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<64, 4>),
    shapes(x: [T, H], sorted_token: [N, 1], xp: [N, H]),
    grid = [ceil_div(N, 16 * WARPS), ceil_div(H, BH), 1]
)]
pub fn moe_gather<const BH: usize, const WARPS: usize>(
    x: Gl<bf16, 2>,
    sorted_token: Gl<i32, 2>,
    xp: GlMut<bf16, 2>,
) {
    let (rt, ht) = (block_idx_x() * WARPS as i32 + warp_idx(), block_idx_y());
    let tokens = routing::first_column(sorted_token, rt);
    let rows: Rt<bf16, 16, BH> = gather_rows(x, tokens, ht);
    store(xp.tile(rt, ht), rows);
}

/// Shared bytes of one stage of the ring: `BM × BK` of activations and `B` weight tiles of
/// `BN × BK`.
const fn stage_bytes(bm: usize, bn: usize, bk: usize, b: usize) -> usize {
    (bm * bk + b * bn * bk) * 2
}

/// Stages of the ring: the most of 4, 3, 2 that fit in [`RING_BYTES`].
const fn stages(bm: usize, bn: usize, bk: usize, b: usize) -> usize {
    let mut s = 4;
    while s > 2 && s * stage_bytes(bm, bn, bk, b) > RING_BYTES {
        s -= 1;
    }
    s
}

/// The rows of this warp's `WM` output rows to write: the row's index where it holds a token,
/// −1 (not written) where it is padding.
pub(crate) fn rows_to_write<const WM: usize>(
    sorted_token: Gl<i32, 2>,
    first: Scalar<i32>,
) -> Rv<i32, WM> {
    let rows: Rv<i32, WM> = iota_rows::<Rv<i32, WM>>() + first;
    let col: Rv<i32, WM> = zeros();
    let tokens: Rv<i32, WM> = gather(sorted_token, (rows, col));
    select(tokens.ge(0), rows, -1)
}

/// The shared rings of the K loop: activations, first weights, second weights (gated only).
pub(crate) type Rings<const BM: usize, const BN: usize, const BK: usize, const S: usize> = (
    SharedArray<St<bf16, BM, BK>, S>,
    SharedArray<St<bf16, BN, BK>, S>,
    Option<SharedArray<St<bf16, BN, BK>, S>>,
);

/// Starts the copies of K step `kt` of the tile `at` = (expert, row tile, column tile) into
/// ring slot `slot`. (A plain Rust function: which rings exist is a build-time choice.)
pub(crate) fn copy_stage<const BM: usize, const BN: usize, const BK: usize, const S: usize>(
    rings: Rings<BM, BN, BK, S>,
    x: Gl<bf16, 2>,
    w1: Gl<bf16, 3>,
    w2: Gl<bf16, 3>,
    at: (Scalar<i32>, Scalar<i32>, Scalar<i32>),
    slot: Scalar<i32>,
    kt: Scalar<i32>,
) {
    let (expert, tile_m, tile_n) = at;
    copy_start(rings.0.at(slot), x.tile(tile_m, kt));
    copy_start(rings.1.at(slot), w1.tile(expert, tile_n, kt));
    if let Some(ring) = rings.2 {
        copy_start(ring.at(slot), w2.tile(expert, tile_n, kt));
    }
}

/// `out[r] = x[r] · w[e]ᵀ` for every row `r` of a row tile of expert `e = tile_expert[tile]`
/// (see the module documentation). `x` `[N, K]` bf16, `w` `[E, NO, K]` bf16, `out` `[N, NO]`;
/// rows whose `sorted_token` is −1 and tiles whose expert is −1 are not written.
/// Grid: `[⌈NO / BN⌉, N / BM, 1]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<f32, 64, 64, 32, 32, 32>, <bf16, 64, 64, 32, 32, 32>),
    selftest = selftest,
    shapes(
        x: [N, K],
        w: [E, NO, K],
        tile_expert: [NT],
        sorted_token: [N, 1],
        out: [N, NO],
        N == NT * BM
    ),
    grid = [ceil_div(NO, BN), NT, 1]
)]
pub fn moe_gemm<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    x: Gl<bf16, 2>,
    w: Gl<bf16, 3>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    out: GlMut<O, 2>,
) {
    assert!(
        BM % WM == 0 && BN % WN == 0 && BK % 16 == 0,
        "moe_gemm: the warp tile {WM}×{WN} must divide the block tile {BM}×{BN}, BK a multiple of 16"
    );
    // The ring's depth is a build-time choice: one instantiation is traced.
    match stages(BM, BN, BK, 1) {
        4.. => grouped::<O, BM, BN, BK, WM, WN, 4, 1>(x, w, w, tile_expert, sorted_token, out),
        3 => grouped::<O, BM, BN, BK, WM, WN, 3, 1>(x, w, w, tile_expert, sorted_token, out),
        _ => grouped::<O, BM, BN, BK, WM, WN, 2, 1>(x, w, w, tile_expert, sorted_token, out),
    }
}

/// The gate/up projection with SwiGLU: `h[r] = silu(x[r]·w_gate[e]ᵀ) ⊙ (x[r]·w_up[e]ᵀ)` for
/// every row `r` of a row tile of expert `e` (see the module documentation). `x` `[N, H]`,
/// `w_gate`, `w_up` `[E, F, H]`, `h` `[N, F]`; rows whose `sorted_token` is −1 and tiles whose
/// expert is −1 are not written. Grid: `[⌈F / BN⌉, N / BM, 1]`.
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<bf16, 64, 64, 32, 32, 32>),
    selftest = selftest_swiglu,
    shapes(
        x: [N, H],
        w_gate: [E, F, H],
        w_up: [E, F, H],
        tile_expert: [NT],
        sorted_token: [N, 1],
        h: [N, F],
        N == NT * BM
    ),
    grid = [ceil_div(F, BN), NT, 1]
)]
pub fn moe_gemm_swiglu<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    x: Gl<bf16, 2>,
    w_gate: Gl<bf16, 3>,
    w_up: Gl<bf16, 3>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    h: GlMut<O, 2>,
) {
    assert!(
        BM % WM == 0 && BN % WN == 0 && BK % 16 == 0,
        "moe_gemm_swiglu: the warp tile {WM}×{WN} must divide the block tile {BM}×{BN}, BK a multiple of 16"
    );
    // The ring's depth is a build-time choice: one instantiation is traced.
    match stages(BM, BN, BK, 2) {
        4.. => {
            grouped::<O, BM, BN, BK, WM, WN, 4, 2>(x, w_gate, w_up, tile_expert, sorted_token, h)
        }
        3 => grouped::<O, BM, BN, BK, WM, WN, 3, 2>(x, w_gate, w_up, tile_expert, sorted_token, h),
        _ => grouped::<O, BM, BN, BK, WM, WN, 2, 2>(x, w_gate, w_up, tile_expert, sorted_token, h),
    }
}

/// The body of both grouped GEMMs with a ring of `STAGES`: `x[rows of the tile] ·
/// w1[expert]ᵀ` (and `· w2[expert]ᵀ` when `B` is 2, sharing the activation stages, with
/// SwiGLU of the two in the epilogue; `w2` is not read when `B` is 1), each warp its `WM × WN`
/// part, stored to the rows that hold a token.
#[crate::func]
fn grouped<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const STAGES: usize,
    const B: usize,
>(
    x: Gl<bf16, 2>,
    w1: Gl<bf16, 3>,
    w2: Gl<bf16, 3>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    out: GlMut<O, 2>,
) {
    const KS: usize = 16;
    // Shared memory is allocated at the top level, outside the branch below.
    let a_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BN, BK>, STAGES> = alloc_shared();
    // The second weight's ring exists only in the gated instantiation (a build-time choice).
    let c_ring = (B == 2).then(alloc_shared::<SharedArray<St<bf16, BN, BK>, STAGES>>);
    let rings = (a_ring, b_ring, c_ring);
    let (tile_n, tile_m) = (block_idx_x(), block_idx_y());
    let expert: Scalar<i32> = load(tile_expert.at(tile_m));
    let warps_n = (BN / WN) as i32;
    let warp = warp_idx();
    let (warp_row, warp_col) = (warp / warps_n, warp % warps_n);
    // The expert is the same for the whole block, so the branch is uniform and its barriers
    // are reached by every warp or by none.
    if expert.ge(0) {
        let k_tiles = ceil_div(x.cols(), BK);
        let at = (expert, tile_m, tile_n);
        // Steps past K copy nothing but still commit a group, so that the wait counts hold
        // in the tail. (Their tiles would lie wholly outside the views: with the expert index
        // read from memory, the interpreter reports such a tile as a bad index.)
        for s in 0..STAGES - 1 {
            if k_tiles.gt(s as i32) {
                copy_stage(rings, x, w1, w2, at, lit(s as i32), lit(s as i32));
            }
            copy_commit();
        }
        let mut acc1: Rt<f32, WM, WN> = zeros();
        let mut acc2: Rt<f32, WM, WN> = zeros();
        for kt in range(0, k_tiles) {
            copy_wait(STAGES - 2);
            barrier();
            // The slot of step kt − 1, which every warp has finished reading (the barrier).
            let ahead = kt + (STAGES - 1) as i32;
            if ahead.lt(k_tiles) {
                copy_stage(rings, x, w1, w2, at, ahead % STAGES as i32, ahead);
            }
            copy_commit();
            let cur = kt % STAGES as i32;
            for kk in 0..BK / KS {
                let a: Rt<bf16, WM, KS> = load(a_ring.at(cur).tile(warp_row, kk));
                let b: Rt<bf16, WN, KS> = load(b_ring.at(cur).tile(warp_col, kk));
                acc1 = mma_abt(acc1, a, b);
                acc2 = second_mma(c_ring, cur, warp_col, kk, a, acc2);
            }
        }
        // The tail's masked copies: none outstanding when the block ends.
        copy_wait(0);
        // silu(gate) ⊙ up in f32, rounded once to the output type.
        let result = if B == 2 { acc1.silu() * acc2 } else { acc1 };
        let first = tile_m * BM as i32 + warp_row * WM as i32;
        let rows = rows_to_write::<WM>(sorted_token, first);
        scatter_rows(out, result.cast::<O>(), rows, tile_n * warps_n + warp_col);
    }
}

/// `acc + a · (K slice kk of the second weights' stage `cur`)ᵀ` in the gated instantiation,
/// `acc` unchanged otherwise. (A plain Rust function: whether the ring exists is a build-time
/// choice.)
fn second_mma<
    const BN: usize,
    const BK: usize,
    const S: usize,
    const WM: usize,
    const WN: usize,
>(
    ring: Option<SharedArray<St<bf16, BN, BK>, S>>,
    cur: Scalar<i32>,
    warp_col: Scalar<i32>,
    kk: usize,
    a: Rt<bf16, WM, 16>,
    acc: Rt<f32, WM, WN>,
) -> Rt<f32, WM, WN> {
    match ring {
        Some(ring) => {
            let c: Rt<bf16, WN, 16> = load(ring.at(cur).tile(warp_col, kk as i32));
            mma_abt(acc, a, c)
        }
        None => acc,
    }
}

// ---- self-tests ---------------------------------------------------------------------------

/// A permuted layout built on the host from per-expert row counts (independent of the device
/// permutation): experts back to back, each padded to whole tiles of `TILE_ROWS`, `spare`
/// empty tiles at the end; the token of each used row is arbitrary (only its sign matters to
/// the GEMMs). Returns `tile_expert`, `sorted_token` and each row's expert (−1: padding).
pub(crate) fn host_layout(counts: &[usize], spare: usize) -> (HostTensor, HostTensor, Vec<i64>) {
    let (mut tiles, mut tokens, mut expert_of) = (Vec::new(), Vec::new(), Vec::new());
    for (e, &c) in counts.iter().enumerate() {
        let n_tiles = c.div_ceil(TILE_ROWS);
        tiles.extend(std::iter::repeat_n(e as f64, n_tiles));
        for r in 0..n_tiles * TILE_ROWS {
            let used = r < c;
            tokens.push(if used { (r % 7) as f64 } else { -1.0 });
            expert_of.push(if used { e as i64 } else { -1 });
        }
    }
    tiles.extend(std::iter::repeat_n(-1.0, spare));
    tokens.extend(std::iter::repeat_n(-1.0, spare * TILE_ROWS));
    expert_of.extend(std::iter::repeat_n(-1, spare * TILE_ROWS));
    let n = tokens.len();
    let te = HostTensor::new(ScalarType::I32, &[tiles.len()], &tiles);
    let st = HostTensor::new(ScalarType::I32, &[n, 1], &tokens);
    (
        te.unwrap_or_else(|_| HostTensor::zeros(ScalarType::I32, &[0])),
        st.unwrap_or_else(|_| HostTensor::zeros(ScalarType::I32, &[0, 1])),
        expert_of,
    )
}

/// `x[r] · w[e]ᵀ` in f64 for `x` `[N, K]` and `w` `[E, NO, K]`.
pub(crate) fn row_times_weights(
    x: &[f64],
    w: &[f64],
    r: usize,
    e: usize,
    k: usize,
    no: usize,
) -> Vec<f64> {
    (0..no)
        .map(|j| {
            (0..k)
                .map(|kk| x[r * k + kk] * w[(e * no + j) * k + kk])
                .sum()
        })
        .collect()
}

pub(crate) fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Shapes of the self-tests: (per-expert rows, K, N out, spare tiles). An expert with no row,
/// one with more than a tile, K and N not multiples of the tile.
fn selftest_shapes(device: &Device) -> Vec<(Vec<usize>, usize, usize, usize)> {
    let mut shapes = vec![(vec![5, 0, 70], 40, 72, 1)];
    if large(device) {
        shapes.push((vec![300, 1, 0, 129, 64], 520, 200, 3));
    }
    shapes
}

/// Both registered variants of [`moe_gemm`] against the f64 grouped product; rows of padding
/// must keep their poison.
fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut checked = 0;
    for (counts, k, no, spare) in selftest_shapes(device) {
        let (tile_expert, sorted_token, expert_of) = host_layout(&counts, spare);
        let n = expert_of.len();
        let e = counts.len();
        let x = rng.tensor(ScalarType::BF16, &[n, k], -1.0, 1.0);
        let w = rng.tensor(ScalarType::BF16, &[e, no, k], -1.0, 1.0);
        let (xv, wv) = (x.to_vec(), w.to_vec());
        let mut want = vec![f64::NAN; n * no];
        for (r, &ex) in expert_of.iter().enumerate() {
            if ex >= 0 {
                let row = row_times_weights(&xv, &wv, r, ex as usize, k, no);
                want[r * no..(r + 1) * no].copy_from_slice(&row);
            }
        }
        let case = format!("{counts:?} rows, {k}→{no}");
        for (dtype, tol) in [(ScalarType::F32, 1e-5), (ScalarType::BF16, 1e-2)] {
            let mut out = poisoned(dtype, &[n, no]);
            let args = (&x, &w, &tile_expert, &sorted_token);
            let launched = match dtype {
                ScalarType::F32 => moe_gemm::<f32, 64, 64, 32, 32, 32>::launch_auto(
                    device, args.0, args.1, args.2, args.3, &mut out,
                ),
                _ => moe_gemm::<bf16, 64, 64, 32, 32, 32>::launch_auto(
                    device, args.0, args.1, args.2, args.3, &mut out,
                ),
            };
            launched.map_err(|err| format!("{case}: {err} (seed {})", rng.seed))?;
            let err = record(format!("{case} {dtype}"), &out.to_vec(), &want, tol);
            if err > tol {
                return Err(format!(
                    "{case} out {dtype}: error {err:.2e} > {tol:.0e} (seed {})",
                    rng.seed
                ));
            }
            checked += 1;
        }
    }
    Ok(format!("{checked} runs against the f64 grouped product"))
}

/// [`moe_gemm_swiglu`] against `silu(x·W_gateᵀ) ⊙ (x·W_upᵀ)` in f64 (rounded to bf16 by the
/// kernel: 2⁻⁸ of each element, so 1e-2 of the largest); padding rows keep their poison.
fn selftest_swiglu(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut checked = 0;
    for (counts, k, f, spare) in selftest_shapes(device) {
        let (tile_expert, sorted_token, expert_of) = host_layout(&counts, spare);
        let n = expert_of.len();
        let e = counts.len();
        let x = rng.tensor(ScalarType::BF16, &[n, k], -1.0, 1.0);
        let wg = rng.tensor(ScalarType::BF16, &[e, f, k], -1.0, 1.0);
        let wu = rng.tensor(ScalarType::BF16, &[e, f, k], -1.0, 1.0);
        let (xv, wgv, wuv) = (x.to_vec(), wg.to_vec(), wu.to_vec());
        let mut want = vec![f64::NAN; n * f];
        for (r, &ex) in expert_of.iter().enumerate() {
            if ex >= 0 {
                let g = row_times_weights(&xv, &wgv, r, ex as usize, k, f);
                let u = row_times_weights(&xv, &wuv, r, ex as usize, k, f);
                for j in 0..f {
                    want[r * f + j] = silu(g[j]) * u[j];
                }
            }
        }
        let mut h = poisoned(ScalarType::BF16, &[n, f]);
        let case = format!("{counts:?} rows, {k}→{f}");
        moe_gemm_swiglu::<bf16, 64, 64, 32, 32, 32>::launch_auto(
            device,
            &x,
            &wg,
            &wu,
            &tile_expert,
            &sorted_token,
            &mut h,
        )
        .map_err(|err| format!("{case}: {err} (seed {})", rng.seed))?;
        let tol = 1e-2;
        let err = record(case.clone(), &h.to_vec(), &want, tol);
        if err > tol {
            return Err(format!(
                "{case}: error {err:.2e} > {tol:.0e} (seed {})",
                rng.seed
            ));
        }
        checked += 1;
    }
    Ok(format!("{checked} runs against the f64 SwiGLU"))
}

// ---- the layer ----------------------------------------------------------------------------

/// How tokens choose their experts in [`forward`].
#[derive(Clone, Copy, Debug)]
pub enum Router<'a> {
    /// Softmax top-`top_k` of the logits, renormalized over the chosen (Mixtral, Qwen3).
    Softmax { top_k: usize },
    /// DeepSeek-V3's grouped sigmoid routing with the selection bias `bias` `[E]` (f32).
    SigmoidGrouped {
        cfg: routing::GroupedRouting,
        bias: &'a Tensor,
    },
}

impl Router<'_> {
    fn top_k(&self) -> usize {
        match self {
            Router::Softmax { top_k } => *top_k,
            Router::SigmoidGrouped { cfg, .. } => cfg.top_k,
        }
    }
}

/// The routed experts' weights, K-major (see the module documentation): `gate` and `up`
/// `[E, F, H]`, `down` `[E, H, F]`, bf16.
#[derive(Clone, Copy, Debug)]
pub struct ExpertWeights<'a> {
    pub gate: &'a Tensor,
    pub up: &'a Tensor,
    pub down: &'a Tensor,
}

/// What [`forward`] returns, all on the device.
#[derive(Debug)]
pub struct MoeOutput {
    /// The layer's output `[T, H]` (f32): `Σ_slots gate · expert(x)`.
    pub y: Tensor,
    /// The chosen experts `[T, k]` (i32) and their gates `[T, k]` (f32).
    pub experts: Tensor,
    pub gates: Tensor,
    /// Tokens routed to each expert `[E]` (i32, before a masked layout's capacity cut): what
    /// the bias update ([`routing::update_bias`]) reads.
    pub counts: Tensor,
}

fn layer_error(message: String) -> Error {
    Error::Shape {
        kernel: "moe_forward".into(),
        message,
    }
}

/// Checks that `t` has dtype `dtype` and shape `want` (`None`: any extent), naming `what`.
fn expect(
    what: &str,
    t: &Tensor,
    dtype: ScalarType,
    want: &[Option<usize>],
) -> Result<Vec<usize>, Error> {
    let shape = t.shape();
    let fits = shape.len() == want.len()
        && shape
            .iter()
            .zip(want)
            .all(|(s, w)| w.is_none_or(|w| w == *s));
    if t.dtype() != dtype || !fits {
        let want: Vec<String> = want
            .iter()
            .map(|w| w.map_or("_".to_string(), |w| w.to_string()))
            .collect();
        return Err(layer_error(format!(
            "`{what}` must be {dtype} [{}], got {} {shape:?}",
            want.join(", "),
            t.dtype()
        )));
    }
    Ok(shape.to_vec())
}

/// One mixture-of-experts layer: `y[t] = Σ_{(e, g) chosen by t} g · W_down[e]ᵀ·(silu(W_gate[e]ᵀ
/// x[t]) ⊙ W_up[e]ᵀ x[t])` for `x` `[T, H]` bf16 and the router's `logits` `[T, E]` f32
/// (computed by the caller, as the router's projection is a dense GEMM).
///
/// Launches, in order on `device` and with no read back in between: the routing, the
/// permutation into `layout` (rows in tiles of [`TILE_ROWS`]; a masked layout's capacity must
/// be a multiple of it), the gather of the tokens' rows, the gate/up projection with SwiGLU
/// (`h` bf16), the down projection (f32) and the deterministic combine. Buffers are sized for
/// the worst case (`T·k + E·(TILE_ROWS − 1)` rows, or `E·capacity`), and the grouped GEMMs skip
/// the unused row tiles on the device. On sm_90a devices (a GPU or `emu:sm_90a`) the grouped
/// GEMMs are the persistent wgmma kernels of [`moe_gemm_wg`](crate::kernels::moe_gemm_wg), one
/// block per SM ([`DEFAULT_BLOCKS`](crate::kernels::moe_gemm_wg::DEFAULT_BLOCKS) where the
/// device does not say), elsewhere [`moe_gemm_swiglu`] and [`moe_gemm`].
pub fn forward(
    device: &Device,
    x: &Tensor,
    logits: &Tensor,
    router: Router<'_>,
    weights: ExpertWeights<'_>,
    layout: Layout,
) -> Result<MoeOutput, Error> {
    forward_saving(device, x, logits, router, weights, layout).map(|(out, _)| out)
}

/// What [`forward`] computes between its launches, kept for the backward pass
/// ([`moe_bwd`](crate::kernels::moe_bwd)): the permuted layout and the expert rows' inputs,
/// SwiGLU outputs and down-projection outputs.
#[derive(Debug)]
pub(crate) struct Activations {
    /// `[N / TILE_ROWS]`, `[N, 1]`, `[T, k]`, `[E + 1]` (i32): see [`routing::Permutation`].
    pub tile_expert: Tensor,
    pub sorted_token: Tensor,
    pub row_of: Tensor,
    pub offsets: Tensor,
    /// The gathered tokens `[N, H]` (bf16), `h` `[N, F]` (bf16), the expert outputs `[N, H]`
    /// (f32, before the gates).
    pub xp: Tensor,
    pub hp: Tensor,
    pub yp: Tensor,
}

/// [`forward`], also returning its [`Activations`] (`None` when there is no expert row to
/// compute: no token, `H` or `F` of 0).
pub(crate) fn forward_saving(
    device: &Device,
    x: &Tensor,
    logits: &Tensor,
    router: Router<'_>,
    weights: ExpertWeights<'_>,
    layout: Layout,
) -> Result<(MoeOutput, Option<Activations>), Error> {
    let bf = ScalarType::BF16;
    let xs = expect("x", x, bf, &[None, None])?;
    let (t, h) = (xs[0], xs[1]);
    let ls = expect("logits", logits, ScalarType::F32, &[Some(t), None])?;
    let e = ls[1];
    let gs = expect("gate weights", weights.gate, bf, &[Some(e), None, Some(h)])?;
    let f = gs[1];
    expect("up weights", weights.up, bf, &[Some(e), Some(f), Some(h)])?;
    expect(
        "down weights",
        weights.down,
        bf,
        &[Some(e), Some(h), Some(f)],
    )?;
    let k = check_top_k(router, e)?;
    if t == 0 || h == 0 {
        let out = MoeOutput::empty(device, t, k, e, h)?;
        return Ok((out, None));
    }
    let DeviceRouting {
        experts,
        gates,
        counts,
        tile_expert,
        sorted_token,
        row_of,
        offsets,
    } = route_and_permute(device, logits, router, layout)?;
    let n = sorted_token.shape()[0];
    let mut y = Tensor::zeros(ScalarType::F32, &[t, h], device)?;
    let mut saved = None;
    if n > 0 && f > 0 {
        let mut xp = Tensor::zeros(bf, &[n, h], device)?;
        moe_gather::<GATHER_COLS, GATHER_WARPS>::launch_auto(device, x, &sorted_token, &mut xp)?;
        let mut hp = Tensor::zeros(bf, &[n, f], device)?;
        let mut yp = Tensor::zeros(ScalarType::F32, &[n, h], device)?;
        if device.target()? == Some("sm_90a") {
            let blocks = [device.multiprocessors().unwrap_or(wg::DEFAULT_BLOCKS), 1, 1];
            wg::moe_gemm_swiglu_wg::<bf16, { wg::GATE_UP_COLS }, { wg::STAGES }>::launch(
                device,
                blocks,
                &xp,
                weights.gate,
                weights.up,
                &offsets,
                &tile_expert,
                &sorted_token,
                &mut hp,
            )?;
            wg::moe_gemm_wg::<f32, { wg::DOWN_COLS }, { wg::STAGES }>::launch(
                device,
                blocks,
                &hp,
                weights.down,
                &offsets,
                &tile_expert,
                &sorted_token,
                &mut yp,
            )?;
        } else {
            moe_gemm_swiglu::<bf16, TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
                device,
                &xp,
                weights.gate,
                weights.up,
                &tile_expert,
                &sorted_token,
                &mut hp,
            )?;
            moe_gemm::<f32, TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
                device,
                &hp,
                weights.down,
                &tile_expert,
                &sorted_token,
                &mut yp,
            )?;
        }
        routing::combine_into(device, &yp, &row_of, &gates, &mut y)?;
        saved = Some(Activations {
            tile_expert,
            sorted_token,
            row_of,
            offsets,
            xp,
            hp,
            yp,
        });
    }
    let out = MoeOutput {
        y,
        experts,
        gates,
        counts,
    };
    Ok((out, saved))
}

/// `router`'s top-k, checked against the `e` experts.
pub(crate) fn check_top_k(router: Router<'_>, e: usize) -> Result<usize, Error> {
    let k = router.top_k();
    if k == 0 || k > e {
        return Err(layer_error(format!(
            "top-{k} of {e} experts: k must be 1 to E"
        )));
    }
    Ok(k)
}

impl MoeOutput {
    /// The output of a layer with nothing to compute (`T` or `H` of 0): zeros throughout.
    pub(crate) fn empty(
        device: &Device,
        t: usize,
        k: usize,
        e: usize,
        h: usize,
    ) -> Result<MoeOutput, Error> {
        Ok(MoeOutput {
            y: Tensor::zeros(ScalarType::F32, &[t, h], device)?,
            experts: Tensor::zeros(ScalarType::I32, &[t, k], device)?,
            gates: Tensor::zeros(ScalarType::F32, &[t, k], device)?,
            counts: Tensor::zeros(ScalarType::I32, &[e], device)?,
        })
    }
}

/// A routing and its permuted layout, on the device: what a layer's forward computes before
/// its grouped GEMMs.
#[derive(Debug)]
pub(crate) struct DeviceRouting {
    /// `[T, k]` (i32) and `[T, k]` (f32): the chosen experts and their gates.
    pub experts: Tensor,
    pub gates: Tensor,
    /// `[E]` (i32), `[N / TILE_ROWS]`, `[N, 1]`, `[T, k]`, `[E + 1]`: see
    /// [`routing::Permutation`].
    pub counts: Tensor,
    pub tile_expert: Tensor,
    pub sorted_token: Tensor,
    pub row_of: Tensor,
    pub offsets: Tensor,
}

/// Routes `logits` `[T, E]` (f32, `T` > 0) by `router` and permutes the chosen pairs into
/// `layout` with rows in tiles of [`TILE_ROWS`], all on the device (no read back); the layout
/// has the worst case's rows.
pub(crate) fn route_and_permute(
    device: &Device,
    logits: &Tensor,
    router: Router<'_>,
    layout: Layout,
) -> Result<DeviceRouting, Error> {
    let ls = expect("logits", logits, ScalarType::F32, &[None, None])?;
    let (t, e) = (ls[0], ls[1]);
    let k = check_top_k(router, e)?;
    let i32t = ScalarType::I32;
    let mut experts = Tensor::zeros(i32t, &[t, k], device)?;
    let mut gates = Tensor::zeros(ScalarType::F32, &[t, k], device)?;
    match router {
        Router::Softmax { top_k } => {
            routing::route_softmax_into(device, logits, top_k, &mut experts, &mut gates)?
        }
        Router::SigmoidGrouped { cfg, bias } => {
            expect("bias", bias, ScalarType::F32, &[Some(e)])?;
            let mut kept = Tensor::zeros(i32t, &[t], device)?;
            routing::route_sigmoid_grouped_into(
                device,
                logits,
                bias,
                cfg,
                &mut kept,
                &mut experts,
                &mut gates,
            )?
        }
    }
    let plan = routing::PermutePlan::new(&[t, k], e, TILE_ROWS, layout)?;
    let (n, nb) = (plan.rows, t.div_ceil(16));
    let mut tile_counts = Tensor::zeros(i32t, &[nb, e], device)?;
    let mut tile_base = Tensor::zeros(i32t, &[nb, e], device)?;
    let mut counts = Tensor::zeros(i32t, &[e], device)?;
    let mut offsets = Tensor::zeros(i32t, &[e + 1], device)?;
    let mut sorted_token = Tensor::zeros(i32t, &[n, 1], device)?;
    let mut row_of = Tensor::zeros(i32t, &[t, k], device)?;
    let mut tile_expert = Tensor::zeros(i32t, &[n / TILE_ROWS], device)?;
    plan.launch(
        device,
        &experts,
        routing::PermuteBuffers {
            tile_counts: &mut tile_counts,
            tile_base: &mut tile_base,
            counts: &mut counts,
            offsets: &mut offsets,
            sorted_token: &mut sorted_token,
            row_of: &mut row_of,
            tile_expert: &mut tile_expert,
        },
    )?;
    Ok(DeviceRouting {
        experts,
        gates,
        counts,
        tile_expert,
        sorted_token,
        row_of,
        offsets,
    })
}
