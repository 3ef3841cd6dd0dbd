//! Warpgroup GEMM `C = A·B` (A `M×K` bf16, B `K×N` bf16, f32 accumulation, C of dtype `O`)
//! for sm_90a's `wgmma`.
//!
//! A block computes a `BM × BN` tile of C with `BM / 64` warpgroups; warpgroup g owns rows
//! `[64·g, 64·g + 64)` of the tile, and each of its 4 warps keeps a `16 × BN` quarter of the
//! accumulator in registers for the whole K loop (the `m64nBNk16` accumulator of one wgmma is
//! the 4 quarters side by side). Per K step of `BK` the group multiplies its own `64 × BK` shared
//! tile of A by the block's `BK × BN` shared tile of B with one warpgroup-scope `mma`, which
//! sm_90a lowers to `wgmma.mma_async` × `BK / 16` with both operands read from shared memory
//! through matrix descriptors: with `BK = 64` bf16 a row of A is one 128-byte swizzle atom
//! (K-major), and B's rows are 128-byte atoms side by side (N-major), wgmma's canonical layouts.
//! On sm_80 (and where a layout is not canonical) the same op is `mma.sync`.
//!
//! The K loop is a multistage `cp.async` ring of `STAGES` stages, as in [`gemm`](super::gemm):
//! each step waits for its own stage, passes one barrier, starts the copy of a stage ahead into
//! a free slot and multiplies the current one, so the copies overlap the wgmma. With 2 stages
//! each mma completes within its step (the copy runs one stage ahead, into the slot of step
//! kt − 1). With 3 or more the mma is asynchronous: step kt issues its wgmma group, commits it
//! and waits until at most one group is in flight (`mma_wait::<1>`: step kt − 1's is retired),
//! so a group runs on while the next step waits for its stage and issues its copies; the copies
//! run `STAGES − 2` stages ahead, into the slot of step kt − 2, which every warpgroup has
//! retired before the step's barrier. The accumulator starts as zeros that are never
//! materialized: the first step's wgmma does not read it (see `codegen/src/lower/wgmma.rs`;
//! ptxas serializes every wgmma of a kernel whose zeros reach the last wait). Stages past K
//! are masked copies (zeros), and edges are masked by the views' shapes: M, N and K need not
//! be multiples of the tile.
//!
//! The registered variants for every target are the ones every target of the registry compiles
//! (the registry's kernels are also built for gfx90a, gfx942 and gfx950, where the warpgroup
//! mma is MFMA on whole K×N register fragments of B): rings within 64 KiB of LDS, and fragments
//! that fit the 256 VGPRs a lane has at 8 waves — 128×128×32 and 128×256×16 with 4 stages,
//! 64×128×64 with 2, 64×256×32 with 3. 128×256×64 with 3 stages is registered for sm_90a only
//! (`for [sm_90a]`: 0 spills, no ptxas advisory, the lowest hot-loop figure of the family).
//! The K step of 64 (one 128-byte swizzle atom of A) at two warpgroups, and
//! deeper rings, are NVIDIA-only instantiations launched by type (`gemm_wg::<f32, 128, 256, 64,
//! 3>::launch`): 128×128×64 with 2 stages (64 KiB) or 4 (128 KiB), 128×256×32 with 2 (48 KiB),
//! 128×256×64 with 3 (144 KiB); all fit sm_80's 163 KiB and sm_90a's 227 KiB
//! (runtime/tests/gemm_wg.rs runs them on both emulators and reads their sm_90a K loops).

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, Rng};
use crate::kernels::gemm::{grid, grouped_tile, reference, GROUP_M};
use crate::Device;

/// Rows of C per warpgroup: the M of one `wgmma`.
pub const WG_ROWS: usize = 64;

/// See the module documentation. Grid: `[⌈N / BN⌉, ⌈M / BM⌉, 1]` ([`grid`]).
#[crate::kernel(
    warps = (BM / 16) as u32,
    variants(
        <f32, 128, 128, 32, 4>,
        <bf16, 128, 128, 32, 4>,
        <f32, 128, 256, 16, 4>,
        <f32, 64, 128, 64, 2>,
        <f32, 64, 256, 32, 3>,
        <f32, 128, 256, 64, 3> for [sm_90a]
    ),
    selftest = selftest,
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), 1]
)]
pub fn gemm_wg<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const STAGES: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<O, 2>,
) {
    // The A ring holds one 64-row tile per warpgroup and stage (each group's mma takes its own
    // whole shared tile); its length is a type-level constant, picked here among the supported
    // (warpgroups, stages) pairs.
    match (BM / WG_ROWS, STAGES) {
        (1, 2) => mainloop::<O, BM, BN, BK, 2, 2>(a, b, c),
        (1, 3) => mainloop::<O, BM, BN, BK, 3, 3>(a, b, c),
        (1, 4) => mainloop::<O, BM, BN, BK, 4, 4>(a, b, c),
        (2, 2) => mainloop::<O, BM, BN, BK, 2, 4>(a, b, c),
        (2, 3) => mainloop::<O, BM, BN, BK, 3, 6>(a, b, c),
        (2, 4) => mainloop::<O, BM, BN, BK, 4, 8>(a, b, c),
        _ => panic!(
            "gemm_wg: BM = {BM} must be 64 or 128 (one or two warpgroups of 64 rows) and STAGES = {STAGES} 2, 3 or 4"
        ),
    }
}

/// The K loop and the store of [`gemm_wg`]: `STAGES` ring stages, `AT = STAGES · BM / 64` A
/// tiles in the ring (stage s, warpgroup g at `s · BM / 64 + g`).
#[crate::func]
fn mainloop<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const STAGES: usize,
    const AT: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<O, 2>,
) {
    let groups = BM / WG_ROWS;
    assert!(
        AT == STAGES * groups && BM % WG_ROWS == 0,
        "gemm_wg: {AT} A tiles for {STAGES} stages of {groups} warpgroups"
    );
    let a_ring: SharedArray<St<bf16, WG_ROWS, BK>, AT> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BK, BN>, STAGES> = alloc_shared();
    let (tile_m, tile_n) = grouped_tile::<GROUP_M>();
    let group = warpgroup_idx();
    let k_tiles = ceil_div(a.cols(), BK);
    let g = groups as i32;

    // Stages copied ahead of the one being multiplied: all but one of the ring when each mma
    // completes before the next step (2 stages), all but two when one mma group stays in flight
    // (3 or more: the slot of step kt − 1 is still being read while step kt is issued).
    let ahead_by = if STAGES >= 3 { STAGES - 2 } else { STAGES - 1 };
    for s in 0..ahead_by {
        for i in 0..groups {
            copy_start(
                a_ring.at(s * groups + i),
                a.tile(tile_m * g + i as i32, s as i32),
            );
        }
        copy_start(b_ring.at(s), b.tile(s as i32, tile_n));
        copy_commit();
    }
    let mut acc: Rt<f32, 16, BN> = zeros();
    for kt in range(0, k_tiles) {
        copy_wait(ahead_by - 1);
        barrier();
        // The slot this step refills: with synchronous mma that of step kt − 1, with one group
        // in flight that of step kt − 2, whose mma every warpgroup has retired (its
        // `mma_wait::<1>` in step kt − 1, then the barrier).
        let ahead = kt + ahead_by as i32;
        let slot = ahead % STAGES as i32;
        for i in 0..groups {
            copy_start(
                a_ring.at(slot * g + i as i32),
                a.tile(tile_m * g + i as i32, ahead),
            );
        }
        copy_start(b_ring.at(slot), b.tile(ahead, tile_n));
        copy_commit();
        let cur = kt % STAGES as i32;
        if STAGES >= 3 {
            // Step kt's wgmma runs while step kt + 1 waits for its stage and issues copies.
            acc = mma_async_ab_wg(acc, a_ring.at(cur * g + group), b_ring.at(cur));
            mma_commit();
            mma_wait::<1>();
        } else {
            acc = mma_ab_wg(acc, a_ring.at(cur * g + group), b_ring.at(cur));
        }
    }
    if STAGES >= 3 {
        acc = mma_wait_acc::<0, _>(acc);
    }
    // The tail's masked copies: none outstanding when the block ends.
    copy_wait(0);

    // Warp w of the block owns rows [16·w, 16·w + 16) of the tile.
    let row = tile_m * (BM / 16) as i32 + warp_idx();
    store(c.tile(row, tile_n), acc.cast::<O>());
}

/// Every registered variant on awkward shapes (partial tiles in M, N and K; more tile rows
/// than a group of the block order), against the f64 reference.
fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut checked = 0;
    let mut shapes = vec![(128, 128, 64), (70, 45, 130), (650, 300, 100)];
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
            launch(&mut c)
                .map_err(|e| format!("{variant} {m}×{n}×{k}: {e} (seed {})", rng.seed))?;
            let err = record(format!("{variant} {m}×{n}×{k}"), &c.to_vec(), &want, tol);
            if err > tol {
                return Err(format!(
                    "{variant} {m}×{n}×{k} out {out}: error {err:.2e} > {tol:.0e} (seed {})",
                    rng.seed
                ));
            }
            Ok(())
        };
        run("<f32,128,128,32,4>", ScalarType::F32, 1e-5, &|c| {
            gemm_wg::<f32, 128, 128, 32, 4>::launch(device, grid(m, n, 128, 128), &a, &b, c)
        })?;
        run("<bf16,128,128,32,4>", ScalarType::BF16, 1e-2, &|c| {
            gemm_wg::<bf16, 128, 128, 32, 4>::launch(device, grid(m, n, 128, 128), &a, &b, c)
        })?;
        run("<f32,128,256,16,4>", ScalarType::F32, 1e-5, &|c| {
            gemm_wg::<f32, 128, 256, 16, 4>::launch(device, grid(m, n, 128, 256), &a, &b, c)
        })?;
        run("<f32,64,128,64,2>", ScalarType::F32, 1e-5, &|c| {
            gemm_wg::<f32, 64, 128, 64, 2>::launch(device, grid(m, n, 64, 128), &a, &b, c)
        })?;
        run("<f32,64,256,32,3>", ScalarType::F32, 1e-5, &|c| {
            gemm_wg::<f32, 64, 256, 32, 3>::launch(device, grid(m, n, 64, 256), &a, &b, c)
        })?;
        checked += 5;
        // Registered for sm_90a only (its 144 KiB ring exceeds AMD's LDS; on sm_80 it is an
        // unregistered instantiation): run where the device runs sm_90a code, or interprets.
        if crate::registry::runs_on(&["sm_90a"], device) {
            run("<f32,128,256,64,3>", ScalarType::F32, 1e-5, &|c| {
                gemm_wg::<f32, 128, 256, 64, 3>::launch(device, grid(m, n, 128, 256), &a, &b, c)
            })?;
            checked += 1;
        }
    }
    Ok(format!("{checked} runs against the f64 reference"))
}
