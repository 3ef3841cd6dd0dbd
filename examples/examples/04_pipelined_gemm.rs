//! 04 · Pipelined GEMM: the copies of the next K steps are in flight while the tensor cores
//! multiply the current one.
//!
//! Tutorial 03 copies a K slice, waits for it, multiplies it, and only then starts the next
//! copy, so the tensor cores idle during every copy. Here the shared slices form a ring of
//! `STAGES` slots (`SharedArray`) and `STAGES − 1` of them are always being filled (CUTLASS's
//! multistage mainloop; `tilekit::dsl::pipeline` has the rules):
//!
//! - the prologue starts the first `STAGES − 1` slices, one copy group each (`copy_start`,
//!   `copy_commit`);
//! - each step waits until its own slice has landed — `copy_wait(STAGES − 2)` lets the groups
//!   of the later slices stay in flight — and passes one `barrier()`: after it every warp's
//!   part of the slice is visible and every warp is done reading the previous step's slot;
//! - it then starts the slice `STAGES − 1` steps ahead into that freed slot and multiplies the
//!   current one. Slices past K are masked copies (zeros), so every step commits exactly one
//!   group and the counts stay right in the last steps.
//!
//! On sm_80 and sm_90a these are `cp.async.cg` with `cp.async.wait_group STAGES − 2`; on AMD the
//! copy is synchronous. Reading a slot before its `copy_wait`, or refilling one that a warp may
//! still read, is an error on the interpreter (the race check), so a wrong ring fails here on
//! the CPU, not on a GPU by chance. `tilekit::kernels::gemm` is this kernel with bigger tiles,
//! an L2-friendly block order and several warp-tile shapes.
//!
//! ```sh
//! cargo run -p tilekit-examples --example 04_pipelined_gemm
//! ```

use anyhow::{ensure, Result};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::kernels::gemm::reference;
use tilekit::Device;

/// `C = A·B` with a `STAGES`-slot ring of 64×32 (A) and 32×64 (B) slices, one 64×64 tile of C
/// per block of four warps (each a 32×32 quarter).
#[tilekit::kernel(
    warps = 4,
    variants(<3>),
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [ceil_div(N, 64), ceil_div(M, 64), 1]
)]
fn gemm_pipelined<const STAGES: usize>(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let a_ring: SharedArray<St<bf16, 64, 32>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, 32, 64>, STAGES> = alloc_shared();
    let (tile_m, tile_n) = (block_idx_y(), block_idx_x());
    let (warp_row, warp_col) = (warp_idx() / 2, warp_idx() % 2);
    let k_steps = ceil_div(a.cols(), 32);

    // Prologue: STAGES − 1 slices in flight, one group each.
    for s in 0..STAGES - 1 {
        copy_start(a_ring.at(s), a.tile(tile_m, s as i32));
        copy_start(b_ring.at(s), b.tile(s as i32, tile_n));
        copy_commit();
    }
    let mut acc: Rt<f32, 32, 32> = zeros();
    for kt in range(0, k_steps) {
        copy_wait(STAGES - 2);
        barrier();
        // The slot of step kt − 1, which every warp has finished reading (the barrier).
        let ahead = kt + (STAGES - 1) as i32;
        let slot = ahead % STAGES as i32;
        copy_start(a_ring.at(slot), a.tile(tile_m, ahead));
        copy_start(b_ring.at(slot), b.tile(ahead, tile_n));
        copy_commit();

        let cur = kt % STAGES as i32;
        let a_frag: Rt<bf16, 32, 32> = load(a_ring.at(cur).tile(warp_row, 0));
        let b_frag: Rt<bf16, 32, 32, Col> = load(b_ring.at(cur).tile(0, warp_col));
        acc = mma_ab(acc, a_frag, b_frag);
    }
    // The tail's masked copies: none may be outstanding when the block ends.
    copy_wait(0);
    store(c.tile(tile_m * 2 + warp_row, tile_n * 2 + warp_col), acc);
}

fn main() -> Result<()> {
    let device = if cfg!(feature = "jit") {
        Device::best()
    } else {
        Device::Cpu
    };
    let mut rng = Rng::fresh();
    // K of one step (shorter than the prologue), of several, and ragged everywhere.
    for (m, n, k) in [(64, 64, 32), (64, 64, 160), (90, 33, 77)] {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let mut c = HostTensor::new(F32, &[m, n], &vec![f64::NAN; m * n])?;
        gemm_pipelined::<3>::launch_auto(&device, &a, &b, &mut c)?;
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let err = normalized_max_error(&c.to_vec(), &want);
        println!("{m}×{n}×{k} on {}: max error {err:.1e}", device.name());
        ensure!(
            err < 1e-5,
            "{m}×{n}×{k}: error {err:.2e} (seed {})",
            rng.seed
        );
    }
    println!("04_pipelined_gemm: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
