//! Warp-specialized warpgroup GEMM `C = A·B` (A `M×K` bf16, B `K×N` bf16, f32 accumulation, C
//! of dtype `O`) for sm_90a: one producer warpgroup feeds `BM / 64` consumer warpgroups through
//! a ring of `STAGES` shared-memory stages, CUTLASS's cooperative schedule.
//!
//! Warpgroup 0 is the producer: it gives registers up (`setmaxnreg_dec::<40>`), and its warp 0
//! fills the ring with `copy_async` on the stage's `full` semaphore. Consumer warpgroup c
//! (warpgroup c + 1) takes registers (`setmaxnreg_inc::<232>`) and owns rows `[64·c, 64·c +
//! 64)` of the block's `BM × BN` tile, each of its warps a `16 × BN` quarter of the accumulator
//! in registers for the whole K loop ([`gemm_wg`](super::gemm_wg)'s layout).
//!
//! Per stage two semaphores: `full[s]` (the producer's arrival plus the stage's bytes) and
//! `empty[s]` (one arrival per consumer warp). K step `kt` uses stage `kt mod STAGES` for the
//! `r = kt / STAGES`-th time: consumers wait for parity `r & 1` of `full`, the producer for
//! parity `(r & 1) ^ 1` of `empty` (which passes at once for r = 0: every stage starts empty).
//! A consumer step waits for its stage, issues its warpgroup `mma_async` (`wgmma` × `BK / 16`
//! from shared memory), commits it and waits until at most one group is in flight
//! (`mma_wait::<1>`): step kt − 1's wgmma has then read its stage, which the warp releases on
//! `empty`. So one wgmma group is always in flight while the next stage is awaited.
//!
//! On sm_90a, with the views aligned, each `copy_async` is a TMA load (`cp.async.bulk.tensor`,
//! issued by one elected lane of the producer warp) that completes on the `full` semaphore's
//! mbarrier by its bytes (`codegen/src/lower/tma_copy.rs`): the producer does no address or
//! bounds math per element, so 40 registers are plenty. Edges are masked by the views' shapes
//! (TMA fills zeros outside them): M, N and K need not be multiples of the tile.
//!
//! Registered for sm_90a only: its 192 KiB ring exceeds sm_80's 163 KiB of shared memory and
//! AMD's 64 KiB of LDS, and the design (TMA, register reallocation, wgmma) is Hopper's. The
//! interpreter and the sm_90a emulator run it anywhere.

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, Rng};
use crate::kernels::gemm::{grid, grouped_tile, reference, GROUP_M};
use crate::kernels::gemm_wg::WG_ROWS;
use crate::Device;

/// Registers a producer thread keeps after `setmaxnreg_dec`.
pub const PRODUCER_REGS: u32 = 40;
/// Registers a consumer thread has after `setmaxnreg_inc`.
pub const CONSUMER_REGS: u32 = 232;

/// The stage and the phase parity of K step `kt`.
#[crate::func]
fn stage_of<const STAGES: usize>(kt: Scalar<i32>) -> (Scalar<i32>, Scalar<i32>) {
    (kt % STAGES as i32, (kt / STAGES as i32) & 1)
}

/// See the module documentation. Grid: `[⌈N / BN⌉, ⌈M / BM⌉, 1]` ([`grid`]).
#[crate::kernel(
    warps = (4 * (BM / WG_ROWS + 1)) as u32,
    variants(
        <f32, 128, 256, 64, 4> for [sm_90a],
        <bf16, 128, 256, 64, 4> for [sm_90a]
    ),
    selftest = selftest,
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), 1]
)]
pub fn gemm_ws_wg<
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
    // The A ring holds one 64-row tile per consumer warpgroup and stage; its length is a
    // type-level constant, picked here among the supported (consumers, stages) pairs.
    match (BM / WG_ROWS, STAGES) {
        (1, 2) => body::<O, BM, BN, BK, 2, 2>(a, b, c),
        (1, 3) => body::<O, BM, BN, BK, 3, 3>(a, b, c),
        (1, 4) => body::<O, BM, BN, BK, 4, 4>(a, b, c),
        (2, 2) => body::<O, BM, BN, BK, 2, 4>(a, b, c),
        (2, 3) => body::<O, BM, BN, BK, 3, 6>(a, b, c),
        (2, 4) => body::<O, BM, BN, BK, 4, 8>(a, b, c),
        _ => panic!(
            "gemm_ws_wg: BM = {BM} must be 64 or 128 (one or two consumer warpgroups of 64 rows) and STAGES = {STAGES} 2, 3 or 4"
        ),
    }
}

/// The producer, the consumers and the store of [`gemm_ws_wg`]: `AT = STAGES · BM / 64` A
/// tiles in the ring (stage s, consumer c at `s · BM / 64 + c`).
#[crate::func]
fn body<
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
    let consumers = BM / WG_ROWS;
    assert!(
        AT == STAGES * consumers && BM % WG_ROWS == 0,
        "gemm_ws_wg: {AT} A tiles for {STAGES} stages of {consumers} consumer warpgroups"
    );
    let a_ring: SharedArray<St<bf16, WG_ROWS, BK>, AT> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BK, BN>, STAGES> = alloc_shared();
    let full: SharedArray<Sem, STAGES> = alloc_shared();
    let empty: SharedArray<Sem, STAGES> = alloc_shared();
    let stage_bytes =
        consumers as u32 * bytes_of::<St<bf16, WG_ROWS, BK>>() + bytes_of::<St<bf16, BK, BN>>();
    let g = consumers as i32;

    let (tile_m, tile_n) = grouped_tile::<GROUP_M>();
    let warp = warp_idx();
    if warp.eq(0) {
        for s in 0..STAGES {
            full.at(s).init(1);
            empty.at(s).init((4 * consumers) as u32);
        }
    }
    barrier();

    let k_tiles = ceil_div(a.cols(), BK);
    let group = warpgroup_idx();
    if group.eq(0) {
        setmaxnreg_dec::<PRODUCER_REGS>();
        if warp.eq(0) {
            for kt in range(0, k_tiles) {
                let (s, parity) = stage_of::<STAGES>(kt);
                empty.at(s).wait(parity ^ 1);
                let full_s = full.at(s);
                full_s.expect(stage_bytes);
                full_s.arrive();
                for i in 0..consumers {
                    copy_async(
                        a_ring.at(s * g + i as i32),
                        a.tile(tile_m * g + i as i32, kt),
                        full_s,
                    );
                }
                copy_async(b_ring.at(s), b.tile(kt, tile_n), full_s);
            }
        }
    } else {
        setmaxnreg_inc::<CONSUMER_REGS>();
        let consumer = group - 1;
        let mut acc: Rt<f32, 16, BN> = zeros();
        for kt in range(0, k_tiles) {
            let (s, parity) = stage_of::<STAGES>(kt);
            full.at(s).wait(parity);
            acc = mma_async_ab_wg(acc, a_ring.at(s * g + consumer), b_ring.at(s));
            mma_commit();
            // Step kt − 1's wgmma has read its stage: release it to the producer.
            mma_wait::<1>();
            if kt.gt(0) {
                empty
                    .at((kt + (STAGES - 1) as i32) % STAGES as i32)
                    .arrive();
            }
        }
        acc = mma_wait_acc::<0, _>(acc);
        // Consumer warp w (block warp w + 4) owns rows [16·w, 16·w + 16) of the tile.
        let row = tile_m * (BM / 16) as i32 + (warp - 4);
        store(c.tile(row, tile_n), acc.cast::<O>());
    }
}

/// Every registered variant on awkward shapes (partial tiles in M, N and K; more tile rows
/// than a group of the block order), against the f64 reference, where the device runs sm_90a
/// code or interprets.
fn selftest(device: &Device) -> Result<String, String> {
    if !crate::registry::runs_on(&["sm_90a"], device) {
        return Ok(format!(
            "skipped: registered for sm_90a only, which {} does not run",
            device.name()
        ));
    }
    let mut rng = Rng::fresh();
    let mut checked = 0;
    let mut shapes = vec![(128, 256, 64), (70, 45, 130), (300, 520, 200)];
    if large(device) {
        shapes.extend([(1000, 1000, 520), (257, 129, 1000)]);
    }
    for (m, n, k) in shapes {
        let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        for (out, tol) in [(ScalarType::F32, 1e-5), (ScalarType::BF16, 1e-2)] {
            let mut c = poisoned(out, &[m, n]);
            let g = grid(m, n, 128, 256);
            let launched = if out == ScalarType::F32 {
                gemm_ws_wg::<f32, 128, 256, 64, 4>::launch(device, g, &a, &b, &mut c)
            } else {
                gemm_ws_wg::<bf16, 128, 256, 64, 4>::launch(device, g, &a, &b, &mut c)
            };
            launched.map_err(|e| format!("{m}×{n}×{k} → {out}: {e} (seed {})", rng.seed))?;
            let err = record(format!("{m}×{n}×{k} → {out}"), &c.to_vec(), &want, tol);
            if err > tol {
                return Err(format!(
                    "{m}×{n}×{k} → {out}: error {err:.2e} > {tol:.0e} (seed {})",
                    rng.seed
                ));
            }
            checked += 1;
        }
    }
    Ok(format!("{checked} runs against the f64 reference"))
}
