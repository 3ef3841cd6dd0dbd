//! 03 · Tiled GEMM on the tensor cores: `C = A·B` with A `M×K` and B `K×N` in bf16, C in f32.
//!
//! A block computes a 64×64 tile of C with four warps, each owning a 32×32 quarter whose
//! accumulator stays in registers for the whole K loop. Per step of 32 along K the block copies
//! a 64×32 slice of A and a 32×64 slice of B into shared tiles (`St`, `alloc_shared`, `copy`
//! split among the block's warps), waits at a `barrier()` until every warp's part has landed,
//! and each warp loads its operands from shared memory into register tiles and multiplies them
//! with `mma_ab`. A second barrier keeps the next step's copy from overwriting a slice another
//! warp is still reading.
//!
//! New here: shared tiles, block-wide copies, barriers, and the two register layouts of the
//! tensor cores: A is a row-layout tile (`Rt<bf16, 32, 32>`), B a column-layout tile
//! (`Rt<bf16, 32, 32, Col>`), which is what `mma_ab` takes; the type checker refuses the wrong
//! one. The launch contract (`shapes`, `grid`) makes a launch with mismatched K, or a grid that
//! does not cover C, an error instead of a wrong answer. The next tutorial overlaps the copies
//! with the multiplies; `tilekit::kernels::gemm` is the library's full version.
//!
//! ```sh
//! cargo run -p tilekit-examples --example 03_tiled_gemm
//! ```

use anyhow::{ensure, Result};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::kernels::gemm::reference;
use tilekit::Device;

/// `C = A·B`, one 64×64 tile of C per block (block x: tile column, block y: tile row).
#[tilekit::kernel(
    warps = 4,
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [ceil_div(N, 64), ceil_div(M, 64), 1]
)]
fn gemm64(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let a_s: St<bf16, 64, 32> = alloc_shared();
    let b_s: St<bf16, 32, 64> = alloc_shared();
    let (tile_m, tile_n) = (block_idx_y(), block_idx_x());
    // Warps 0 and 1 take the top half of the C tile, 2 and 3 the bottom half.
    let (warp_row, warp_col) = (warp_idx() / 2, warp_idx() % 2);
    let mut acc: Rt<f32, 32, 32> = zeros();
    for kt in range(0, ceil_div(a.cols(), 32)) {
        // Past the edges of A and B the copies write zeros, which add nothing to C.
        copy_block(a_s, a.tile(tile_m, kt));
        copy_block(b_s, b.tile(kt, tile_n));
        barrier();
        let a_frag: Rt<bf16, 32, 32> = load(a_s.tile(warp_row, 0));
        let b_frag: Rt<bf16, 32, 32, Col> = load(b_s.tile(0, warp_col));
        acc = mma_ab(acc, a_frag, b_frag);
        barrier();
    }
    // This warp's 32×32 sub-tile of C, in units of 32×32; rows and columns past C are dropped.
    store(c.tile(tile_m * 2 + warp_row, tile_n * 2 + warp_col), acc);
}

fn main() -> Result<()> {
    let device = if cfg!(feature = "jit") {
        Device::best()
    } else {
        Device::Cpu
    };
    let mut rng = Rng::fresh();
    // One shape of whole tiles, and ragged ones in every dimension.
    for (m, n, k) in [(64, 64, 64), (100, 70, 45), (17, 130, 33)] {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let mut c = HostTensor::new(F32, &[m, n], &vec![f64::NAN; m * n])?;
        // `launch_auto` takes the grid from the contract.
        gemm64::launch_auto(&device, &a, &b, &mut c)?;
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let err = normalized_max_error(&c.to_vec(), &want);
        println!("{m}×{n}×{k} on {}: max error {err:.1e}", device.name());
        // bf16 inputs are exact in f32 products; only the f32 sums round.
        ensure!(
            err < 1e-5,
            "{m}×{n}×{k}: error {err:.2e} (seed {})",
            rng.seed
        );
    }

    // A K mismatch is refused by the contract, naming the shapes.
    let a = rng.tensor(BF16, &[64, 32], -1.0, 1.0);
    let b = rng.tensor(BF16, &[48, 64], -1.0, 1.0);
    let mut c = HostTensor::new(F32, &[64, 64], &[0.0; 64 * 64])?;
    let refused = gemm64::launch_auto(&device, &a, &b, &mut c);
    ensure!(refused.is_err(), "a K mismatch was launched");
    println!("K mismatch, as expected:\n  {}", refused.unwrap_err());
    println!("03_tiled_gemm: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
