//! Tiled GEMM `C = A·B` (A `M×K` bf16, B `K×N` bf16, f32 accumulation, C of dtype `O`).
//!
//! A block computes a `BM × BN` tile of C with `(BM / WM) × (BN / WN)` warps; each warp owns a
//! `WM × WN` sub-tile and keeps its accumulator in registers for the whole K loop. The K loop is
//! a multistage pipeline over a ring of `STAGES` shared stages ([`ring_stages`]: 4 where
//! they fit in 64 KiB, else 3, else 2) of `BM × BK` of A and `BK × BN`
//! of B (CUTLASS's sm80 mainloop, see [`dsl::pipeline`](crate::dsl::pipeline)): the prologue
//! starts `STAGES − 1` stages; each step waits until its own stage has landed (`copy_wait`
//! with `STAGES − 2` groups still in flight), passes one barrier (everyone's copies are visible,
//! and every warp is done with the previous stage), starts the stage `STAGES − 1` steps ahead
//! into the slot the previous step read, and multiplies the current stage. Stages past K are
//! masked copies (zeros), so every step commits one group and the counts stay right in the
//! tail. Edges are masked by the views' shapes, so M, N and K need not be multiples of the tile.
//!
//! The library's big tiles run 8 warps of 64×32 or 64×64: 128×128×32 (4 stages),
//! 128×256×32 (2 stages: 3 would take 72 KiB) and 128×256×16 (4 stages in the same 48 KiB, so
//! two stages stay in flight; on sm_80 its aligned variant has the lowest hot-loop figure).
//!
//! Blocks walk C in groups of [`GROUP_M`] tile rows ([`grouped_tile`]): consecutive blocks
//! share B's column panel and a few of A's row panels, which then stay in L2.

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
use crate::Device;

/// Tile rows of C per group of the L2-friendly block order.
pub const GROUP_M: usize = 8;

/// This block's (tile row, tile column) of C in the grouped order: the grid `[tiles_n,
/// tiles_m]` is cut into bands of `G` tile rows, and within a band consecutive blocks go down
/// a column of tiles before moving right. A bijection of the grid onto itself; no product of
/// two grid extents is formed (it could pass `i32::MAX`).
#[crate::func]
pub fn grouped_tile<const G: usize>() -> (Scalar<i32>, Scalar<i32>) {
    let (bx, by) = (block_idx_x(), block_idx_y());
    let (gx, gy) = (grid_dim_x(), grid_dim_y());
    let first_m = (by / G as i32) * G as i32;
    let band_rows = (gy - first_m).min(G as i32);
    let local = (by % G as i32) * gx + bx;
    (first_m + local % band_rows, local / band_rows)
}

/// Tile `i` of a walk over `tiles_m × tiles_n` tiles of C in [`grouped_tile`]'s order (bands of
/// `G` tile rows, column by column within a band) as `(tile row, tile column)`: the order of a
/// persistent kernel, whose blocks take tiles `b`, `b + grid`, …. `i` < `tiles_m · tiles_n`.
#[crate::func]
pub fn banded_tile<const G: usize>(
    i: Scalar<i32>,
    tiles_m: Scalar<i32>,
    tiles_n: Scalar<i32>,
) -> (Scalar<i32>, Scalar<i32>) {
    let band_tiles = tiles_n * G as i32;
    let band = i / band_tiles;
    let first_m = band * G as i32;
    let band_rows = (tiles_m - first_m).min(G as i32);
    let local = i - band * band_tiles;
    (first_m + local % band_rows, local / band_rows)
}

/// See the module documentation. Grid: `[⌈N / BN⌉, ⌈M / BM⌉, 1]` ([`grid`]).
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(
        <f32, 64, 64, 32, 32, 32>,
        <bf16, 64, 64, 32, 32, 32>,
        <f32, 64, 64, 16, 16, 64>,
        <f32, 128, 128, 32, 64, 32>,
        <f32, 128, 256, 32, 64, 64>,
        <f32, 128, 256, 16, 64, 64>
    ),
    selftest = selftest,
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), 1]
)]
pub fn gemm<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<O, 2>,
) {
    assert!(
        BM % WM == 0 && BN % WN == 0,
        "gemm: the warp tile {WM}×{WN} must divide the block tile {BM}×{BN}"
    );
    // The ring's depth is a build-time choice (a Rust `if`): one instantiation is traced.
    // So is the K slice: 32 wide where the warp tile is small enough for a stage's fragments
    // to stay in registers (gfx950's MFMA takes K = 32 in one instruction), else 16.
    let stages = ring_stages(BM, BN, BK);
    let wide = BK % 32 == 0 && WM * WN <= 32 * 32;
    match (stages, wide) {
        (4.., true) => mainloop::<O, BM, BN, BK, WM, WN, 4, 32>(a, b, c),
        (4.., false) => mainloop::<O, BM, BN, BK, WM, WN, 4, 16>(a, b, c),
        (3, true) => mainloop::<O, BM, BN, BK, WM, WN, 3, 32>(a, b, c),
        (3, false) => mainloop::<O, BM, BN, BK, WM, WN, 3, 16>(a, b, c),
        (_, true) => mainloop::<O, BM, BN, BK, WM, WN, 2, 32>(a, b, c),
        (_, false) => mainloop::<O, BM, BN, BK, WM, WN, 2, 16>(a, b, c),
    }
}

/// Shared bytes a ring may take: the LDS of a gfx9 work-group (the smallest limit of the
/// targets; NVIDIA allows more, as dynamic shared memory).
pub const RING_BYTES: usize = 64 * 1024;

/// Stages of the K loop's ring for a `BM × BN × BK` block tile: the most of 4, 3, 2 whose
/// stages of A and B fit in [`RING_BYTES`] (two stages when even two do not: the compile then
/// reports the shared memory against the target's limit).
pub const fn ring_stages(bm: usize, bn: usize, bk: usize) -> usize {
    let stage = (bm * bk + bk * bn) * 2;
    let mut s = 4;
    while s > 2 && s * stage > RING_BYTES {
        s -= 1;
    }
    s
}

/// The K loop and the store of [`gemm`], with a ring of `STAGES` (see the module
/// documentation).
#[crate::func]
fn mainloop<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const WM: usize,
    const WN: usize,
    const STAGES: usize,
    const KS: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<O, 2>,
) {
    let a_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BK, BN>, STAGES> = alloc_shared();
    let (tile_m, tile_n) = grouped_tile::<GROUP_M>();
    let warps_n = (BN / WN) as i32;
    let warp = warp_idx();
    let (warp_row, warp_col) = (warp / warps_n, warp % warps_n);
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
        // The slot of step kt − 1, which every warp has finished reading (the barrier).
        let ahead = kt + (STAGES - 1) as i32;
        let slot = ahead % STAGES as i32;
        copy_start(a_ring.at(slot), a.tile(tile_m, ahead));
        copy_start(b_ring.at(slot), b.tile(ahead, tile_n));
        copy_commit();
        let cur = kt % STAGES as i32;
        // One K slice of KS at a time: the fragments of a slice are live only for its mma
        // (at 64×64 warp tiles the whole stage's fragments and the accumulator exceed 255
        // registers, so those take slices of 16).
        for kk in 0..BK / KS {
            let a_frag: Rt<bf16, WM, KS> = load(a_ring.at(cur).tile(warp_row, kk));
            let b_frag: Rt<bf16, KS, WN, Col> = load(b_ring.at(cur).tile(kk, warp_col));
            acc = mma_ab(acc, a_frag, b_frag);
        }
    }
    // The tail's masked copies: none outstanding when the block ends.
    copy_wait(0);

    // This warp's sub-tile of C, in units of the warp tile.
    let row = tile_m * (BM / WM) as i32 + warp_row;
    let col = tile_n * warps_n + warp_col;
    store(c.tile(row, col), acc.cast::<O>());
}

/// The launch grid for an `m × n` C and a `BM × BN` block tile.
pub fn grid(m: usize, n: usize, bm: usize, bn: usize) -> [u32; 3] {
    [tiles(n, bn), tiles(m, bm), 1]
}

/// `C = A·B` in f64 with A `m×k` and B `k×n` row-major.
pub fn reference(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|kk| a[i * k + kk] * b[kk * n + j]).sum();
        }
    }
    c
}

/// Every registered variant on three shapes: one with partial tiles in M, N and K, and one
/// with more tile rows than a group of the block order ([`GROUP_M`]) and a ragged band.
fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut checked = 0;
    let mut shapes = vec![(64, 64, 64), (70, 33, 40), (650, 300, 100)];
    if large(device) {
        shapes.extend([(1000, 1000, 520), (257, 129, 1000)]);
    }
    for (m, n, k) in shapes {
        let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let run = |variant: &str,
                   out: ScalarType,
                   tol: f64,
                   launch: &dyn Fn(
            &mut crate::ir::interp::HostTensor,
        ) -> Result<(), crate::Error>| {
            let mut c = poisoned(out, &[m, n]);
            launch(&mut c).map_err(|e| format!("{m}×{n}×{k}: {e} (seed {})", rng.seed))?;
            let err = record(format!("{variant} {m}×{n}×{k}"), &c.to_vec(), &want, tol);
            if err > tol {
                return Err(format!(
                    "{m}×{n}×{k} out {out}: error {err:.2e} > {tol:.0e} (seed {})",
                    rng.seed
                ));
            }
            Ok(())
        };
        run("<f32,64,64,32,32,32>", ScalarType::F32, 1e-5, &|c| {
            gemm::<f32, 64, 64, 32, 32, 32>::launch(device, grid(m, n, 64, 64), &a, &b, c)
        })?;
        run("<bf16,64,64,32,32,32>", ScalarType::BF16, 1e-2, &|c| {
            gemm::<bf16, 64, 64, 32, 32, 32>::launch(device, grid(m, n, 64, 64), &a, &b, c)
        })?;
        run("<f32,64,64,16,16,64>", ScalarType::F32, 1e-5, &|c| {
            gemm::<f32, 64, 64, 16, 16, 64>::launch(device, grid(m, n, 64, 64), &a, &b, c)
        })?;
        run("<f32,128,128,32,64,32>", ScalarType::F32, 1e-5, &|c| {
            gemm::<f32, 128, 128, 32, 64, 32>::launch(device, grid(m, n, 128, 128), &a, &b, c)
        })?;
        run("<f32,128,256,32,64,64>", ScalarType::F32, 1e-5, &|c| {
            gemm::<f32, 128, 256, 32, 64, 64>::launch(device, grid(m, n, 128, 256), &a, &b, c)
        })?;
        run("<f32,128,256,16,64,64>", ScalarType::F32, 1e-5, &|c| {
            gemm::<f32, 128, 256, 16, 64, 64>::launch(device, grid(m, n, 128, 256), &a, &b, c)
        })?;
        checked += 6;
    }
    Ok(format!("{checked} runs against the f64 reference"))
}
