//! Persistent warpgroup (`wgmma`) grouped GEMMs of a mixture-of-experts layer for sm_90a, over
//! the permuted row layout of [`moe_routing`](crate::kernels::moe_routing): the same products
//! as [`moe_gemm`](crate::kernels::moe_gemm)'s kernels, which [`forward`](super::moe_gemm::forward)
//! launches instead of those on sm_90a devices.
//!
//! - [`moe_gemm_swiglu_wg`]: `h[r] = silu(xp[r]·W_gate[e]ᵀ) ⊙ (xp[r]·W_up[e]ᵀ)`, bf16.
//! - [`moe_gemm_wg`]: `y[r] = h[r]·W_down[e]ᵀ`.
//!
//! Weights are K-major `[E, N, K]` as in [`moe_gemm`](crate::kernels::moe_gemm), and rows come
//! in tiles of [`TILE_ROWS`] (the permutation's `align`), each tile of one expert
//! (`tile_expert`), rows whose token is −1 not written.
//!
//! **Persistent tile scheduling.** The grid is a fixed number of blocks (one per SM on a GPU),
//! whatever the routing. Each block reads the rows in use, `offsets[E]`, which the permutation
//! computed on the device from the per-expert counts, and walks the device-side list of tiles
//! (expert, row tile, column tile): row tile `i` is that of `tile_expert[i]` (built on the
//! device by the permutation), and the `⌈offsets[E] / 64⌉ · ⌈N_out / BN⌉` tiles are numbered in
//! bands of [`BAND`] row tiles, column by column within a band. Block `b` takes tiles `b`,
//! `b + grid`, `b + 2·grid`, …, so a small expert's one row tile costs one tile's work and
//! no block waits for a large expert while others idle; the blocks at work at one time share
//! [`BAND`] activation panels and consecutive weight column panels (in the band's consecutive
//! row tiles, mostly the same expert's), which stay in L2. A tile of expert −1 (unused capacity
//! of a masked layout) is skipped. Nothing is read back to the host: the worst-case buffers
//! stay as they are, and the tiles past `offsets[E]` are never visited.
//!
//! **One tile** is computed by one warpgroup (4 warps of 16 rows, [`gemm_wg`](super::gemm_wg)'s
//! accumulator layout) with a `cp.async` ring of `STAGES` stages of `BK = 64` (a 128-byte
//! swizzle row of bf16 per row of both K-major operands, wgmma's canonical layout): the
//! activations' `64 × 64` tile and one `BN × 64` tile per weight. Step kt waits for its stage,
//! passes a barrier, starts the copy of stage kt + STAGES − 2 into the slot step kt − 2 read,
//! and issues its `wgmma`s (`A·Bᵀ` from shared memory, one per weight, sharing the activation
//! tile) as one group, keeping one group in flight (`mma_wait::<1>`). Stages past K copy
//! nothing (their tiles would lie outside the views) and edges are masked by the views' shapes.
//! The accumulators are retired once per tile, then SwiGLU (in f32) and the row scatter.
//!
//! Registered for sm_90a only (the gate/up ring of 160 KiB exceeds sm_80's shared memory, and
//! the design is Hopper's); the interpreter and the sm_90a emulator run it anywhere.
//!
//! Static figures (`tilekit check … --target sm_90a`): see [`moe_gemm_swiglu_wg`] and
//! [`moe_gemm_wg`]. The hot loop's non-tensor instructions are mostly the `cp.async` copies'
//! address and bounds arithmetic, which every lane of the one warpgroup does for its share of
//! three tiles per step (the aligned sm_80 `moe_gemm_swiglu` has 0.67): TMA copies on a
//! producer warp would remove them.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{record_bounded, Rng};
use crate::kernels::gemm::banded_tile;
use crate::kernels::moe_gemm::{
    copy_stage, host_layout, row_times_weights, rows_to_write, silu, Rings, TILE_ROWS,
};
use crate::Device;

/// K step of the ring: one 128-byte swizzle row of bf16.
pub const BK: usize = 64;
/// Output columns of one tile of the layer's gate/up launch (two accumulators of `16 × 64`
/// per warp: at 128 the kernel spills).
pub const GATE_UP_COLS: usize = 64;
/// Output columns of one tile of the layer's down-projection launch.
pub const DOWN_COLS: usize = 128;
/// Ring stages of the layer's launches.
pub const STAGES: usize = 4;
/// Row tiles per band of the tile order (see the module documentation).
pub const BAND: usize = 8;
/// Blocks of a persistent launch where the device does not say how many SMs it has (the
/// interpreter, the emulator): an H100 SXM's 132.
pub const DEFAULT_BLOCKS: u32 = 132;

/// The gate/up projection with SwiGLU, persistent over the tiles in use (see the module
/// documentation): `h[r] = silu(x[r]·w_gate[e]ᵀ) ⊙ (x[r]·w_up[e]ᵀ)`. `x` `[N, H]`, `w_gate`,
/// `w_up` `[E, F, H]`, `offsets` `[E + 1]` (`offsets[E]`: the rows in use), `tile_expert`
/// `[N / 64]`, `sorted_token` `[N, 1]`, `h` `[N, F]`. Grid: `[blocks, 1, 1]`, any number of
/// blocks (one per SM on a GPU).
///
/// `tilekit check 'moe_gemm_swiglu_wg<bf16,64,4>' --target sm_90a`: 167 registers, 0 spills,
/// hot-loop figure 0.98 with aligned views (255 registers, 0 spills, 2.38 general).
#[crate::kernel(
    warps = (TILE_ROWS / 16) as u32,
    variants(<bf16, 64, 4> for [sm_90a]),
    selftest = selftest_swiglu,
    shapes(
        x: [N, H],
        w_gate: [E, F, H],
        w_up: [E, F, H],
        offsets: [E1],
        tile_expert: [NT],
        sorted_token: [N, 1],
        h: [N, F],
        E1 == E + 1,
        N == NT * 64
    ),
    grid = [1, 1, 1]
)]
pub fn moe_gemm_swiglu_wg<O: RegDtype, const BN: usize, const STAGES: usize>(
    x: Gl<bf16, 2>,
    w_gate: Gl<bf16, 3>,
    w_up: Gl<bf16, 3>,
    offsets: Gl<i32, 1>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    h: GlMut<O, 2>,
) {
    persistent::<O, BN, STAGES, 2>(x, w_gate, w_up, offsets, tile_expert, sorted_token, h);
}

/// The plain grouped GEMM (the down projection), persistent over the tiles in use (see the
/// module documentation): `out[r] = x[r]·w[e]ᵀ`. `x` `[N, K]`, `w` `[E, NO, K]`, `offsets`
/// `[E + 1]`, `tile_expert` `[N / 64]`, `sorted_token` `[N, 1]`, `out` `[N, NO]`. Grid:
/// `[blocks, 1, 1]`, any number of blocks.
///
/// `tilekit check 'moe_gemm_wg<f32,128,4>' --target sm_90a`: 168 registers, 0 spills, hot-loop
/// figure 0.80 with aligned views (255 registers, 0 spills, 2.69 general).
#[crate::kernel(
    warps = (TILE_ROWS / 16) as u32,
    variants(<f32, 128, 4> for [sm_90a], <bf16, 128, 4> for [sm_90a]),
    selftest = selftest,
    shapes(
        x: [N, K],
        w: [E, NO, K],
        offsets: [E1],
        tile_expert: [NT],
        sorted_token: [N, 1],
        out: [N, NO],
        E1 == E + 1,
        N == NT * 64
    ),
    grid = [1, 1, 1]
)]
pub fn moe_gemm_wg<O: RegDtype, const BN: usize, const STAGES: usize>(
    x: Gl<bf16, 2>,
    w: Gl<bf16, 3>,
    offsets: Gl<i32, 1>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    out: GlMut<O, 2>,
) {
    persistent::<O, BN, STAGES, 1>(x, w, w, offsets, tile_expert, sorted_token, out);
}

/// The body of both kernels: each block walks its tiles, `x · w1[e]ᵀ` (and `· w2[e]ᵀ` with
/// SwiGLU when `B` is 2; `w2` is not read when `B` is 1) into the rows that hold a token.
#[crate::func]
fn persistent<O: RegDtype, const BN: usize, const STAGES: usize, const B: usize>(
    x: Gl<bf16, 2>,
    w1: Gl<bf16, 3>,
    w2: Gl<bf16, 3>,
    offsets: Gl<i32, 1>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    out: GlMut<O, 2>,
) {
    assert!(
        BN % 16 == 0 && BN <= 256 && (3..=4).contains(&STAGES),
        "moe_gemm_wg: BN = {BN} must be a multiple of 16 up to 256 (one wgmma's N), STAGES = {STAGES} 3 or 4"
    );
    let a_ring: SharedArray<St<bf16, TILE_ROWS, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BN, BK>, STAGES> = alloc_shared();
    // The second weight's ring exists only in the gated instantiation (a build-time choice).
    let c_ring = (B == 2).then(alloc_shared::<SharedArray<St<bf16, BN, BK>, STAGES>>);
    let rings: Rings<TILE_ROWS, BN, BK, STAGES> = (a_ring, b_ring, c_ring);
    // Row tiles in use (a padded expert's rows are whole tiles), never past the table.
    let rows_used: Scalar<i32> = load(offsets.at(offsets.len() - 1));
    let used = ceil_div(rows_used, TILE_ROWS).min(tile_expert.len());
    let cols = ceil_div(out.cols(), BN);
    let k_tiles = ceil_div(x.cols(), BK);
    // One group in flight: the copies run STAGES − 2 steps ahead, into the slot of step
    // kt − 2, which `mma_wait::<1>` in step kt − 1 retired before step kt's barrier.
    let ahead_by = STAGES - 2;
    for i in range_step(block_idx_x(), used * cols, grid_dim_x()) {
        let (tile_m, tile_n) = banded_tile::<BAND>(i, used, cols);
        let expert: Scalar<i32> = load(tile_expert.at(tile_m));
        // Uniform over the block: its barriers are reached by every warp or by none.
        if expert.ge(0) {
            // Every warp has retired the previous tile's wgmmas before its ring is refilled.
            barrier();
            let at = (expert, tile_m, tile_n);
            for s in 0..ahead_by {
                if k_tiles.gt(s as i32) {
                    copy_stage(rings, x, w1, w2, at, lit(s as i32), lit(s as i32));
                }
                copy_commit();
            }
            let mut acc1: Rt<f32, 16, BN> = zeros();
            let mut acc2: Rt<f32, 16, BN> = zeros();
            for kt in range(0, k_tiles) {
                copy_wait(ahead_by - 1);
                barrier();
                let ahead = kt + ahead_by as i32;
                if ahead.lt(k_tiles) {
                    copy_stage(rings, x, w1, w2, at, ahead % STAGES as i32, ahead);
                }
                copy_commit();
                let cur = kt % STAGES as i32;
                acc1 = mma_async_abt_wg(acc1, a_ring.at(cur), b_ring.at(cur));
                acc2 = second_mma(c_ring, a_ring.at(cur), cur, acc2);
                mma_commit();
                mma_wait::<1>();
            }
            // The tail's masked copies: none outstanding when the tile ends.
            copy_wait(0);
            let result = retire(c_ring, acc1, acc2);
            let rows =
                rows_to_write::<16>(sorted_token, tile_m * TILE_ROWS as i32 + warp_idx() * 16);
            scatter_rows(out, result.cast::<O>(), rows, tile_n);
        }
    }
}

/// `acc + a · (stage `cur` of the second weights)ᵀ` issued asynchronously in the gated
/// instantiation, `acc` unchanged otherwise. (A plain Rust function: whether the ring exists
/// is a build-time choice.)
fn second_mma<const BN: usize, const S: usize>(
    ring: Option<SharedArray<St<bf16, BN, BK>, S>>,
    a: St<bf16, TILE_ROWS, BK>,
    cur: Scalar<i32>,
    acc: Rt<f32, 16, BN>,
) -> Rt<f32, 16, BN> {
    match ring {
        Some(ring) => mma_async_abt_wg(acc, a, ring.at(cur)),
        None => acc,
    }
}

/// Waits for the tile's last wgmma group and returns what is stored: `silu(acc1) ⊙ acc2` in
/// the gated instantiation, `acc1` otherwise.
fn retire<const BN: usize, const S: usize>(
    ring: Option<SharedArray<St<bf16, BN, BK>, S>>,
    acc1: Rt<f32, 16, BN>,
    acc2: Rt<f32, 16, BN>,
) -> Rt<f32, 16, BN> {
    match ring {
        Some(_) => {
            let (gate, up) = mma_wait_acc::<0, _>((acc1, acc2));
            gate.silu() * up
        }
        None => mma_wait_acc::<0, _>(acc1),
    }
}

// ---- self-tests ---------------------------------------------------------------------------

/// Per-expert rows of the self-tests, with the products' K and N: Mixtral-like (8 experts,
/// top-2 of 17 tokens, one expert with every token and one with none), Qwen3-like (16 experts
/// of top-8 of 17 tokens; 48 → 40), DeepSeek-like (32 experts, 130 tokens with top-8 spread,
/// one expert with all 130) and a single token.
fn selftest_shapes() -> Vec<(Vec<usize>, usize, usize)> {
    vec![
        (vec![17, 0, 5, 3, 4, 1, 2, 2], 72, 40),
        (
            vec![9, 8, 0, 17, 9, 8, 7, 9, 8, 10, 9, 8, 9, 9, 8, 8],
            48,
            40,
        ),
        (
            (0..32)
                .map(|e| match e {
                    3 => 130,
                    7 | 30 => 0,
                    _ => 26 + e % 13,
                })
                .collect(),
            40,
            200,
        ),
        (vec![0, 1, 0], 130, 17),
    ]
}

/// Block counts each self-test shape runs with: one block walking every tile, a few that
/// each take several, and more blocks than tiles.
const BLOCKS: [u32; 3] = [1, 3, 512];

/// The f32 rounding error of `Σ a·b` over `n` terms of absolute sum `abs`, any summation order.
fn f32_sum_error(n: usize, abs: f64) -> f64 {
    2.0 * (n + 2) as f64 * 2f64.powi(-24) * abs
}

/// A self-test's permuted layout: `offsets` `[E + 1]` of the host layout of
/// [`host_layout`] (experts back to back in whole tiles), two spare tiles at the end.
struct Problem {
    tile_expert: HostTensor,
    sorted_token: HostTensor,
    offsets: HostTensor,
    expert_of: Vec<i64>,
}

impl Problem {
    fn new(counts: &[usize]) -> Problem {
        let (tile_expert, sorted_token, expert_of) = host_layout(counts, 2);
        let mut starts = vec![0.0];
        for &c in counts {
            let last = starts[starts.len() - 1];
            starts.push(last + (c.div_ceil(TILE_ROWS) * TILE_ROWS) as f64);
        }
        let offsets = HostTensor::new(ScalarType::I32, &[starts.len()], &starts)
            .unwrap_or_else(|_| HostTensor::zeros(ScalarType::I32, &[0]));
        Problem {
            tile_expert,
            sorted_token,
            offsets,
            expert_of,
        }
    }
}

/// Compares the rows that hold a token (`expert_of` ≥ 0) of `got` with `want` within `bound`
/// (recorded in units of the bound), and checks that every padding row kept its poison.
fn compare(
    case: &str,
    got: &[f64],
    want: &[f64],
    bound: &[f64],
    expert_of: &[i64],
) -> Result<(), String> {
    let cols = got.len() / expert_of.len().max(1);
    let (mut g, mut w, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for (r, &ex) in expert_of.iter().enumerate() {
        let row = r * cols..(r + 1) * cols;
        if ex >= 0 {
            g.extend_from_slice(&got[row.clone()]);
            w.extend_from_slice(&want[row.clone()]);
            b.extend_from_slice(&bound[row]);
        } else if let Some(v) = got[row].iter().find(|v| !v.is_nan()) {
            return Err(format!("{case}: padding row {r} was written ({v})"));
        }
    }
    let ratio = record_bounded(case, &g, &w, &b);
    if ratio > 1.0 {
        return Err(format!("{case}: error {ratio:.2} of its bound"));
    }
    Ok(())
}

/// Both variants of [`moe_gemm_wg`] against the f64 grouped product, each element within the
/// f32 summation bound (and one bf16 rounding for the bf16 output); rows of padding must keep
/// their poison (NaN, which fails every bound).
fn selftest(device: &Device) -> Result<String, String> {
    if !crate::registry::runs_on(&["sm_90a"], device) {
        return Ok("registered for sm_90a only: nothing to run here".into());
    }
    let mut rng = Rng::fresh();
    let mut checked = 0;
    for (counts, k, no) in selftest_shapes() {
        let p = Problem::new(&counts);
        let (n, e) = (p.expert_of.len(), counts.len());
        let x = rng.tensor(ScalarType::BF16, &[n, k], -1.0, 1.0);
        let w = rng.tensor(ScalarType::BF16, &[e, no, k], -1.0, 1.0);
        let (xv, wv) = (x.to_vec(), w.to_vec());
        let abs_x: Vec<f64> = xv.iter().map(|v| v.abs()).collect();
        let abs_w: Vec<f64> = wv.iter().map(|v| v.abs()).collect();
        let mut want = vec![f64::NAN; n * no];
        let mut f32_bound = vec![0.0; n * no];
        for (r, &ex) in p.expert_of.iter().enumerate() {
            if ex >= 0 {
                let row = row_times_weights(&xv, &wv, r, ex as usize, k, no);
                let abs = row_times_weights(&abs_x, &abs_w, r, ex as usize, k, no);
                want[r * no..(r + 1) * no].copy_from_slice(&row);
                for (b, a) in f32_bound[r * no..(r + 1) * no].iter_mut().zip(abs) {
                    *b = f32_sum_error(k, a) + 1e-30;
                }
            }
        }
        for blocks in BLOCKS {
            let case = format!("{counts:?} rows, {k}→{no}, {blocks} blocks");
            for dtype in [ScalarType::F32, ScalarType::BF16] {
                let bound: Vec<f64> = match dtype {
                    ScalarType::F32 => f32_bound.clone(),
                    _ => want
                        .iter()
                        .zip(&f32_bound)
                        .map(|(v, b)| 2f64.powi(-8) * (v.abs() + b) + b)
                        .collect(),
                };
                let mut out = crate::kernels::check::poisoned(dtype, &[n, no]);
                let args = (&x, &w, &p.offsets, &p.tile_expert, &p.sorted_token);
                let grid = [blocks, 1, 1];
                let launched = match dtype {
                    ScalarType::F32 => moe_gemm_wg::<f32, DOWN_COLS, STAGES>::launch(
                        device, grid, args.0, args.1, args.2, args.3, args.4, &mut out,
                    ),
                    _ => moe_gemm_wg::<bf16, DOWN_COLS, STAGES>::launch(
                        device, grid, args.0, args.1, args.2, args.3, args.4, &mut out,
                    ),
                };
                launched.map_err(|err| format!("{case}: {err} (seed {})", rng.seed))?;
                let case = format!("{case} out {dtype}");
                compare(&case, &out.to_vec(), &want, &bound, &p.expert_of)
                    .map_err(|err| format!("{err} (seed {})", rng.seed))?;
                checked += 1;
            }
        }
    }
    Ok(format!("{checked} runs against the f64 grouped product"))
}

/// [`moe_gemm_swiglu_wg`] against `silu(x·W_gateᵀ) ⊙ (x·W_upᵀ)` in f64: each element within
/// one bf16 rounding of the f32 value, whose distance from the f64 one is bounded by the gate
/// and up sums' f32 errors (silu' ≤ 1.1), the approximate sigmoid (2⁻²⁰ relative) and the
/// product's rounding; padding rows keep their poison.
fn selftest_swiglu(device: &Device) -> Result<String, String> {
    if !crate::registry::runs_on(&["sm_90a"], device) {
        return Ok("registered for sm_90a only: nothing to run here".into());
    }
    let mut rng = Rng::fresh();
    let mut checked = 0;
    for (counts, k, f) in selftest_shapes() {
        let p = Problem::new(&counts);
        let (n, e) = (p.expert_of.len(), counts.len());
        let x = rng.tensor(ScalarType::BF16, &[n, k], -1.0, 1.0);
        let wg = rng.tensor(ScalarType::BF16, &[e, f, k], -1.0, 1.0);
        let wu = rng.tensor(ScalarType::BF16, &[e, f, k], -1.0, 1.0);
        let (xv, wgv, wuv) = (x.to_vec(), wg.to_vec(), wu.to_vec());
        let abs = |v: &[f64]| -> Vec<f64> { v.iter().map(|v| v.abs()).collect() };
        let (ax, awg, awu) = (abs(&xv), abs(&wgv), abs(&wuv));
        let mut want = vec![f64::NAN; n * f];
        let mut bound = vec![0.0; n * f];
        for (r, &ex) in p.expert_of.iter().enumerate() {
            if ex < 0 {
                continue;
            }
            let ex = ex as usize;
            let g = row_times_weights(&xv, &wgv, r, ex, k, f);
            let u = row_times_weights(&xv, &wuv, r, ex, k, f);
            let sg = row_times_weights(&ax, &awg, r, ex, k, f);
            let su = row_times_weights(&ax, &awu, r, ex, k, f);
            for j in 0..f {
                let (s, hv) = (silu(g[j]), silu(g[j]) * u[j]);
                let eps = u[j].abs() * (1.1 * f32_sum_error(k, sg[j]) + 2f64.powi(-20) * s.abs())
                    + s.abs() * f32_sum_error(k, su[j])
                    + 2f64.powi(-23) * hv.abs();
                want[r * f + j] = hv;
                bound[r * f + j] = 2f64.powi(-8) * (hv.abs() + eps) + eps + 1e-30;
            }
        }
        for blocks in BLOCKS {
            let case = format!("{counts:?} rows, {k}→{f}, {blocks} blocks");
            let mut h = crate::kernels::check::poisoned(ScalarType::BF16, &[n, f]);
            moe_gemm_swiglu_wg::<bf16, GATE_UP_COLS, STAGES>::launch(
                device,
                [blocks, 1, 1],
                &x,
                &wg,
                &wu,
                &p.offsets,
                &p.tile_expert,
                &p.sorted_token,
                &mut h,
            )
            .map_err(|err| format!("{case}: {err} (seed {})", rng.seed))?;
            compare(&case, &h.to_vec(), &want, &bound, &p.expert_of)
                .map_err(|err| format!("{err} (seed {})", rng.seed))?;
            checked += 1;
        }
    }
    Ok(format!("{checked} runs against the f64 SwiGLU"))
}
