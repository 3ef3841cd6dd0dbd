//! Tiled GEMM `C = A·B` (A `M×K` bf16, B `K×N` bf16, f32 accumulation, C of dtype `O`).
//!
//! A block computes a `BM × BN` tile of C with `(BM / WM) × (BN / WN)` warps; each warp owns a
//! `WM × WN` sub-tile and keeps its accumulator in registers for the whole K loop. Each K step
//! the block stages `BM × BK` of A and `BK × BN` of B in shared memory (`copy_block` splits the
//! copy among the warps), waits at a barrier, and each warp loads its rows of A (row layout) and
//! columns of B (col layout, as `mma_ab` takes them). The second barrier keeps the next copy
//! from overwriting a stage a slower warp still reads. Edges are masked by the views' shapes, so
//! M, N and K need not be multiples of the tile.

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
use crate::Device;

/// See the module documentation. Grid: `[⌈N / BN⌉, ⌈M / BM⌉, 1]` ([`grid`]).
#[crate::kernel(
    warps = ((BM / WM) * (BN / WN)) as u32,
    variants(<f32, 64, 64, 32, 32, 32>, <bf16, 64, 64, 32, 32, 32>, <f32, 64, 64, 16, 16, 64>),
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
    let a_smem: St<bf16, BM, BK> = alloc_shared();
    let b_smem: St<bf16, BK, BN> = alloc_shared();
    let (tile_m, tile_n) = (block_idx_y(), block_idx_x());
    let warps_n = (BN / WN) as i32;
    let warp = warp_idx();
    let (warp_row, warp_col) = (warp / warps_n, warp % warps_n);
    let k_tiles = ceil_div(a.cols(), BK);

    let mut acc: Rt<f32, WM, WN> = zeros();
    for kt in range(0, k_tiles) {
        copy_block(a_smem, a.tile(tile_m, kt));
        copy_block(b_smem, b.tile(kt, tile_n));
        barrier();
        let a_frag: Rt<bf16, WM, BK> = load(a_smem.tile(warp_row, 0));
        let b_frag: Rt<bf16, BK, WN, Col> = load(b_smem.tile(0, warp_col));
        acc = mma_ab(acc, a_frag, b_frag);
        // The next iteration overwrites the stage: every warp must be done reading it.
        barrier();
    }

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

/// Every registered variant on two shapes (one with partial tiles in M, N and K).
fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut checked = 0;
    let mut shapes = vec![(64, 64, 64), (70, 33, 40)];
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
        checked += 3;
    }
    Ok(format!("{checked} runs against the f64 reference"))
}
