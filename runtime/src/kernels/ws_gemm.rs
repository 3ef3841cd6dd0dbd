//! Warp-specialized GEMM `C = A·B` (A `M×K`, B `K×N` bf16; C of dtype `O`): one producer warp
//! feeds `BM / RM` consumer warps through a ring of `STAGES` shared-memory stages, the Hopper
//! pattern (TMA + mbarriers) in Tile IR terms.
//!
//! Warp 0 is the producer; consumer c (warp c + 1) owns rows `[c·RM, (c+1)·RM)` of the block's
//! `BM × BN` tile. Per stage two semaphores: `full[s]` (the producer's arrival plus the stage's
//! bytes of async copies) and `empty[s]` (one arrival per consumer). K step `kt` uses stage
//! `kt mod STAGES` for the `r = kt / STAGES`-th time: consumers wait for parity `r & 1` of
//! `full`, the producer for parity `(r & 1) ^ 1` of `empty` (which passes at once for r = 0:
//! every stage starts empty).

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, Rng};
use crate::kernels::gemm::{grid, reference};
use crate::Device;

/// The stage and the phase parity of K step `kt`.
#[crate::func]
fn stage_of<const STAGES: usize>(kt: Scalar<i32>) -> (Scalar<i32>, Scalar<i32>) {
    (kt % STAGES as i32, (kt / STAGES as i32) & 1)
}

/// See the module documentation. Grid: `[⌈N / BN⌉, ⌈M / BM⌉, 1]`.
#[crate::kernel(
    warps = (BM / RM + 1) as u32,
    variants(<f32, 64, 64, 32, 32, 2>, <bf16, 64, 64, 32, 16, 2>, <f32, 64, 64, 32, 32, 3>),
    selftest = selftest,
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), 1]
)]
pub fn ws_gemm<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const RM: usize,
    const STAGES: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<O, 2>,
) {
    assert!(
        BM % RM == 0 && STAGES >= 2,
        "ws_gemm: consumers of {RM} rows must split BM = {BM}; the ring needs at least 2 stages"
    );
    let consumers = (BM / RM) as u32;
    let a_ring: SharedArray<St<bf16, BM, BK>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<bf16, BK, BN>, STAGES> = alloc_shared();
    let full: SharedArray<Sem, STAGES> = alloc_shared();
    let empty: SharedArray<Sem, STAGES> = alloc_shared();
    let stage_bytes = bytes_of::<St<bf16, BM, BK>>() + bytes_of::<St<bf16, BK, BN>>();

    let (tile_n, tile_m) = (block_idx_x(), block_idx_y());
    let warp = warp_idx();
    let is_producer = warp.eq(0);
    if is_producer {
        for s in 0..STAGES {
            full.at(s).init(1);
            empty.at(s).init(consumers);
        }
    }
    barrier();

    let k_tiles = ceil_div(a.cols(), BK);
    if is_producer {
        for kt in range(0, k_tiles) {
            let (s, parity) = stage_of::<STAGES>(kt);
            empty.at(s).wait(parity ^ 1);
            let full_s = full.at(s);
            // Together: PTX's `mbarrier.arrive.expect_tx`.
            full_s.expect(stage_bytes);
            full_s.arrive();
            copy_async(a_ring.at(s), a.tile(tile_m, kt), full_s);
            copy_async(b_ring.at(s), b.tile(kt, tile_n), full_s);
        }
    } else {
        let consumer = warp - 1;
        let mut acc: Rt<f32, RM, BN> = zeros();
        for kt in range(0, k_tiles) {
            let (s, parity) = stage_of::<STAGES>(kt);
            full.at(s).wait(parity);
            let a_frag: Rt<bf16, RM, BK> = load(a_ring.at(s).tile(consumer, 0));
            let b_frag: Rt<bf16, BK, BN, Col> = load(b_ring.at(s));
            acc = mma_ab(acc, a_frag, b_frag);
            empty.at(s).arrive();
        }
        let row = tile_m * (BM / RM) as i32 + consumer;
        store(c.tile(row, tile_n), acc.cast::<O>());
    }
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(64, 64, 64), (70, 33, 130)];
    if large(device) {
        shapes.extend([(1000, 1000, 520), (257, 129, 1000)]);
    }
    for (m, n, k) in shapes {
        let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        let mut c = poisoned(ScalarType::F32, &[m, n]);
        ws_gemm::<f32, 64, 64, 32, 32, 2>::launch(device, grid(m, n, 64, 64), &a, &b, &mut c)
            .map_err(|e| format!("{m}×{n}×{k}: {e}"))?;
        let err = record(format!("{m}×{n}×{k} → f32"), &c.to_vec(), &want, 1e-5);
        if err > 1e-5 {
            return Err(format!("{m}×{n}×{k}: error {err:.2e} (seed {})", rng.seed));
        }
    }
    Ok("2 shapes against the f64 reference".into())
}
