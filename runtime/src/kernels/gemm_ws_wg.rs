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
//! The epilogue goes through shared memory: each consumer warp stores its strip (converted to
//! `O`) into a `16 × BN` buffer (`stmatrix` for bf16) and copies the buffer to C, a TMA store
//! where the view allows (`codegen/src/lower/tma_store.rs`). The four buffers sit beside the
//! ring: bf16 beside 4 stages (192 + 32 KiB), f32 beside 3 (144 + 64 KiB).
//! [`gemm_ws_wg_persistent`] is the same kernel on a fixed grid whose blocks walk the tiles.
//!
//! Registered for sm_90a only: its 208–225 KiB of shared memory exceed sm_80's 163 KiB and
//! AMD's 64 KiB of LDS, and the design (TMA, register reallocation, wgmma) is Hopper's. The
//! interpreter and the sm_90a emulator run it anywhere.

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, record_bounded, Rng};
use crate::kernels::gemm::{banded_tile, grid, grouped_tile, reference, GROUP_M};
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

/// Bytes of shared memory one sm_90a block may use (227 KiB, the opt-in maximum).
const SM90_SHARED_BYTES: usize = 227 * 1024;

/// What the consumers apply to their f32 accumulator before it is converted and stored: an
/// epilogue hook written in the DSL. `acc` is one consumer warp's strip of C, rows
/// `[16·tile_row, 16·tile_row + 16)` and columns `[BN·tile_col, BN·tile_col + BN)` (rows and
/// columns past C's edges hold values that are never stored).
pub trait Epilogue: Copy {
    /// The strip as it is to be stored (before the conversion to the output type).
    fn apply<const BN: usize>(
        self,
        acc: Rt<f32, 16, BN>,
        tile_row: Scalar<i32>,
        tile_col: Scalar<i32>,
    ) -> Rt<f32, 16, BN>;
}

/// The plain product: the accumulator as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Epilogue for Plain {
    fn apply<const BN: usize>(
        self,
        acc: Rt<f32, 16, BN>,
        _tile_row: Scalar<i32>,
        _tile_col: Scalar<i32>,
    ) -> Rt<f32, 16, BN> {
        acc
    }
}

/// `gelu_tanh(alpha · acc + bias[col])`: a scaled product, a bias per output column (a view
/// of N elements; columns past its end add 0) and the tanh form of GELU,
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
#[derive(Clone, Copy, Debug)]
pub struct BiasGelu {
    /// One bias per column of C.
    pub bias: Gl<f32, 1>,
    /// The scale of the product.
    pub alpha: Scalar<f32>,
}

impl Epilogue for BiasGelu {
    fn apply<const BN: usize>(
        self,
        acc: Rt<f32, 16, BN>,
        _tile_row: Scalar<i32>,
        tile_col: Scalar<i32>,
    ) -> Rt<f32, 16, BN> {
        let bias: Rv<f32, BN, Cols> = load(self.bias.chunk(tile_col));
        add_col(acc * self.alpha, bias).gelu_tanh()
    }
}

/// See the module documentation. Grid: `[⌈N / BN⌉, ⌈M / BM⌉, 1]` ([`grid`]).
#[crate::kernel(
    warps = (4 * (BM / WG_ROWS + 1)) as u32,
    variants(
        <f32, 128, 256, 64, 3> for [sm_90a],
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
    dispatch::<O, BM, BN, BK, STAGES, Plain, false>(a, b, c, Plain);
}

/// [`gemm_ws_wg`] with the [`BiasGelu`] epilogue: `C = gelu_tanh(alpha · A·B + bias)`, `bias`
/// one f32 per column of C. Grid: `[⌈N / BN⌉, ⌈M / BM⌉, 1]` ([`grid`]).
#[crate::kernel(
    warps = (4 * (BM / WG_ROWS + 1)) as u32,
    variants(<bf16, 128, 256, 64, 4> for [sm_90a]),
    selftest = bias_gelu_selftest,
    shapes(a: [M, K], b: [K, N], bias: [N], c: [M, N]),
    grid = [ceil_div(N, BN), ceil_div(M, BM), 1]
)]
pub fn gemm_ws_wg_bias_gelu<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const STAGES: usize,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    bias: Gl<f32, 1>,
    alpha: Scalar<f32>,
    c: GlMut<O, 2>,
) {
    dispatch::<O, BM, BN, BK, STAGES, BiasGelu, false>(a, b, c, BiasGelu { bias, alpha });
}

/// [`gemm_ws_wg`] as a persistent kernel: a fixed grid (one block per SM on a GPU,
/// [`persistent_grid`]) walks the tiles of C. The `⌈M / BM⌉ · ⌈N / BN⌉` tiles are numbered in
/// bands of [`GROUP_M`] tile rows, column by column within a band ([`banded_tile`]), and block
/// `b` takes tiles `b`, `b + grid`, `b + 2·grid`, …: the blocks at work at one time share a
/// band's few A panels and consecutive B panels, which stay in L2.
///
/// The ring's K steps run on across a block's tiles (its `t`-th tile's step `kt` is step
/// `t · ⌈K / BK⌉ + kt` of the ring), so the producer fills the stages of tile `t + 1` while the
/// consumers retire and store tile `t`: the loads of the next tile overlap the epilogue. Each
/// consumer releases a tile's last stage once its wgmmas are retired, and consumer 1 hands
/// warp w's epilogue buffer back to consumer 0 (`released[w]`) once its copy has read it.
/// Grid: `[blocks, 1, 1]`, any number of blocks.
#[crate::kernel(
    warps = (4 * (BM / WG_ROWS + 1)) as u32,
    variants(
        <f32, 128, 256, 64, 3> for [sm_90a],
        <bf16, 128, 256, 64, 4> for [sm_90a]
    ),
    selftest = persistent_selftest,
    shapes(a: [M, K], b: [K, N], c: [M, N]),
    grid = [1, 1, 1]
)]
pub fn gemm_ws_wg_persistent<
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
    dispatch::<O, BM, BN, BK, STAGES, Plain, true>(a, b, c, Plain);
}

/// Blocks of a persistent launch where the device does not say how many SMs it has: the
/// grouped GEMMs' (an H100 SXM's 132).
pub use crate::kernels::moe_gemm_wg::DEFAULT_BLOCKS;

/// The grid of [`gemm_ws_wg_persistent`] for an `m × n` C on `device`: one block per SM
/// ([`Device::multiprocessors`], else [`DEFAULT_BLOCKS`]), never more blocks than tiles.
pub fn persistent_grid(device: &Device, m: usize, n: usize, bm: usize, bn: usize) -> [u32; 3] {
    let tiles = u64::from(grid(m, n, bm, bn)[0]) * u64::from(grid(m, n, bm, bn)[1]);
    let sms = device.multiprocessors().unwrap_or(DEFAULT_BLOCKS);
    [u64::from(sms).min(tiles.max(1)) as u32, 1, 1]
}

/// Picks the A ring's length, a type-level constant, among the supported (consumers, stages)
/// pairs.
#[crate::func]
fn dispatch<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const STAGES: usize,
    E: Epilogue,
    const PERSISTENT: bool,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<O, 2>,
    epilogue: E,
) {
    match (BM / WG_ROWS, STAGES) {
        (1, 2) => body::<O, BM, BN, BK, 2, 2, E, PERSISTENT>(a, b, c, epilogue),
        (1, 3) => body::<O, BM, BN, BK, 3, 3, E, PERSISTENT>(a, b, c, epilogue),
        (1, 4) => body::<O, BM, BN, BK, 4, 4, E, PERSISTENT>(a, b, c, epilogue),
        (2, 2) => body::<O, BM, BN, BK, 2, 4, E, PERSISTENT>(a, b, c, epilogue),
        (2, 3) => body::<O, BM, BN, BK, 3, 6, E, PERSISTENT>(a, b, c, epilogue),
        (2, 4) => body::<O, BM, BN, BK, 4, 8, E, PERSISTENT>(a, b, c, epilogue),
        _ => panic!(
            "gemm_ws_wg: BM = {BM} must be 64 or 128 (one or two consumer warpgroups of 64 rows) and STAGES = {STAGES} 2, 3 or 4"
        ),
    }
}

/// Whether the epilogue's shared buffers (one `16 × BN` tile of `O` per warp of a consumer
/// warpgroup, handed from consumer to consumer) fit beside a ring of `STAGES` stages of
/// `stage_bytes`, with the semaphores and the swizzled tiles' 1024-byte alignment.
fn epilogue_fits<O: RegDtype, const BN: usize, const STAGES: usize>(stage_bytes: u32) -> bool {
    let buffers = 4 * 16 * BN * O::SCALAR.size_bytes() as usize;
    let semaphores = 8 * (2 * STAGES + 8);
    STAGES * stage_bytes as usize + buffers + semaphores + 1024 <= SM90_SHARED_BYTES
}

/// The shared memory of [`body`]: `AT = STAGES · BM / 64` A tiles and `STAGES` B tiles in the
/// ring (stage s, consumer c at `s · BM / 64 + c`), their semaphores, and the epilogue's
/// buffers with their hand-off semaphores (`released` only in the persistent kernel).
#[derive(Clone, Copy)]
struct Smem<O: RegDtype, const BN: usize, const BK: usize, const STAGES: usize, const AT: usize> {
    a_ring: SharedArray<St<bf16, WG_ROWS, BK>, AT>,
    b_ring: SharedArray<St<bf16, BK, BN>, STAGES>,
    full: SharedArray<Sem, STAGES>,
    empty: SharedArray<Sem, STAGES>,
    out: SharedArray<St<O, 16, BN, Swz128>, 4>,
    handoff: SharedArray<Sem, 4>,
    released: Option<SharedArray<Sem, 4>>,
    /// Bytes one stage's copies bring (the `full` semaphores expect them).
    stage_bytes: u32,
}

/// The ring's step of a tile's K step `kt`: `kt` with one tile per block (`tile` `None`), else
/// `tile · k_tiles + kt` for the block's `tile`-th tile (the ring's steps run on across tiles).
fn ring_step(tile: Option<Scalar<i32>>, k_tiles: Scalar<i32>, kt: Scalar<i32>) -> Scalar<i32> {
    match tile {
        Some(t) => t * k_tiles + kt,
        None => kt,
    }
}

/// The producer warp's K loop of tile `(tile_m, tile_n)`: waits for each step's stage to be
/// empty and copies the consumers' A tiles and the B tile into it on its `full` semaphore
/// (`tile`: the block's count of earlier tiles in the persistent kernel, see [`ring_step`]).
#[crate::func]
fn produce<O: RegDtype, const BN: usize, const BK: usize, const STAGES: usize, const AT: usize>(
    smem: Smem<O, BN, BK, STAGES, AT>,
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    at: (Scalar<i32>, Scalar<i32>),
    tile: Option<Scalar<i32>>,
    k_tiles: Scalar<i32>,
) {
    let (tile_m, tile_n) = at;
    let consumers = AT / STAGES;
    let g = consumers as i32;
    for kt in range(0, k_tiles) {
        let (s, parity) = stage_of::<STAGES>(ring_step(tile, k_tiles, kt));
        smem.empty.at(s).wait(parity ^ 1);
        let full_s = smem.full.at(s);
        full_s.expect(smem.stage_bytes);
        full_s.arrive();
        for i in 0..consumers {
            copy_async(
                smem.a_ring.at(s * g + i as i32),
                a.tile(tile_m * g + i as i32, kt),
                full_s,
            );
        }
        copy_async(smem.b_ring.at(s), b.tile(kt, tile_n), full_s);
    }
}

/// A consumer warp's work on one tile `(tile_m, tile_n)`: its K loop (its `16 × BN` strip of
/// the tile's product, in registers), then the epilogue: `epilogue` applied to the strip,
/// converted to `O`, stored into the warp's shared buffer (`stmatrix` for 16-bit outputs on
/// sm_90a) and copied to C (a TMA store where the view allows).
///
/// `who`: the block's warp and the consumer warpgroup (0 or 1). `tile` is the block's count of
/// earlier tiles in the persistent kernel (`None`: one tile per block). Warp w of consumer 1 uses the buffer of warp w of consumer 0 after that warp's copy
/// has read it (`handoff[w]`, its `tile`-th phase); in the persistent kernel consumer 0 refills
/// it for the next tile only after consumer 1's copy has read it (`released[w]`).
#[crate::func]
fn consume<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const STAGES: usize,
    const AT: usize,
    E: Epilogue,
>(
    smem: Smem<O, BN, BK, STAGES, AT>,
    c: GlMut<O, 2>,
    epilogue: E,
    at: (Scalar<i32>, Scalar<i32>),
    tile: Option<Scalar<i32>>,
    k_tiles: Scalar<i32>,
    who: (Scalar<i32>, Scalar<i32>),
) {
    let (tile_m, tile_n) = at;
    let (warp, consumer) = who;
    let g = (AT / STAGES) as i32;
    let mut acc: Rt<f32, 16, BN> = zeros();
    for kt in range(0, k_tiles) {
        let (s, parity) = stage_of::<STAGES>(ring_step(tile, k_tiles, kt));
        smem.full.at(s).wait(parity);
        acc = mma_async_ab_wg(acc, smem.a_ring.at(s * g + consumer), smem.b_ring.at(s));
        mma_commit();
        // Step kt − 1's wgmma has read its stage: release it to the producer.
        mma_wait::<1>();
        if kt.gt(0) {
            smem.empty
                .at((ring_step(tile, k_tiles, kt) + (STAGES - 1) as i32) % STAGES as i32)
                .arrive();
        }
    }
    acc = mma_wait_acc::<0, _>(acc);
    // The tile's last stage has been read too: the next tile's steps wait for it.
    if tile.is_some() {
        if k_tiles.gt(0) {
            let (last, _) = stage_of::<STAGES>(ring_step(tile, k_tiles, k_tiles - 1));
            smem.empty.at(last).arrive();
        }
    }
    // Consumer warp w (block warp w + 4) owns rows [16·w, 16·w + 16) of the tile.
    let row = tile_m * (BM / 16) as i32 + (warp - 4);
    let strip = epilogue.apply::<BN>(acc, row, tile_n).cast::<O>();
    let quarter = warp % 4;
    if consumer.gt(0) {
        match tile {
            Some(t) => smem.handoff.at(quarter).wait(t & 1),
            None => smem.handoff.at(quarter).wait(0),
        }
    }
    match (smem.released, tile) {
        (Some(released), Some(t)) => {
            if consumer.eq(0) {
                released.at(quarter).wait((t & 1) ^ 1);
            }
        }
        _ => {}
    }
    store(smem.out.at(quarter), strip);
    copy_warp(c.tile(row, tile_n), smem.out.at(quarter));
    if consumer.eq(0) {
        smem.handoff.at(quarter).arrive();
    }
    match smem.released {
        Some(released) => {
            if consumer.gt(0) {
                released.at(quarter).arrive();
            }
        }
        None => {}
    }
}

/// The producer, the consumers and the epilogue of [`gemm_ws_wg`] (one tile per block, in
/// [`grouped_tile`]'s order) and of [`gemm_ws_wg_persistent`] (`PERSISTENT`: the block walks
/// its tiles).
///
/// The epilogue's buffers, one `16 × BN` tile of `O` per warp of a consumer warpgroup, must
/// fit the shared memory beside the ring ([`epilogue_fits`]): bf16 at 4 stages of 128×256×64
/// (192 + 32 KiB), f32 at 3 stages (144 + 64 KiB).
#[crate::func]
fn body<
    O: RegDtype,
    const BM: usize,
    const BN: usize,
    const BK: usize,
    const STAGES: usize,
    const AT: usize,
    E: Epilogue,
    const PERSISTENT: bool,
>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<O, 2>,
    epilogue: E,
) {
    let consumers = BM / WG_ROWS;
    assert!(
        AT == STAGES * consumers && BM % WG_ROWS == 0 && consumers <= 2,
        "gemm_ws_wg: {AT} A tiles for {STAGES} stages of {consumers} consumer warpgroups"
    );
    let stage_bytes =
        consumers as u32 * bytes_of::<St<bf16, WG_ROWS, BK>>() + bytes_of::<St<bf16, BK, BN>>();
    assert!(
        epilogue_fits::<O, BN, STAGES>(stage_bytes),
        "gemm_ws_wg: {STAGES} stages of {stage_bytes} bytes and the epilogue's four 16 × {BN} buffers of {} exceed {SM90_SHARED_BYTES} bytes of shared memory: take fewer stages",
        O::SCALAR
    );
    let a_ring = alloc_shared();
    let b_ring = alloc_shared();
    let full = alloc_shared();
    let empty = alloc_shared();
    let out = alloc_shared();
    let handoff = alloc_shared();
    let released = PERSISTENT.then(alloc_shared::<SharedArray<Sem, 4>>);
    let smem: Smem<O, BN, BK, STAGES, AT> = Smem {
        a_ring,
        b_ring,
        full,
        empty,
        out,
        handoff,
        released,
        stage_bytes,
    };
    let one_tile = (!PERSISTENT).then(grouped_tile::<GROUP_M>);
    let warp = warp_idx();
    if warp.eq(0) {
        for s in 0..STAGES {
            smem.full.at(s).init(1);
            smem.empty.at(s).init((4 * consumers) as u32);
        }
        for w in 0..4 {
            smem.handoff.at(w).init(1);
        }
        match smem.released {
            Some(released) => {
                for w in 0..4 {
                    released.at(w).init(1);
                }
            }
            None => {}
        }
    }
    barrier();

    let k_tiles = ceil_div(a.cols(), BK);
    let group = warpgroup_idx();
    if group.eq(0) {
        setmaxnreg_dec::<PRODUCER_REGS>();
        if warp.eq(0) {
            match one_tile {
                Some(at) => produce(smem, a, b, at, None, k_tiles),
                None => {
                    let (tiles_m, tiles_n) = (ceil_div(c.rows(), BM), ceil_div(c.cols(), BN));
                    for i in range_step(block_idx_x(), tiles_m * tiles_n, grid_dim_x()) {
                        let at = banded_tile::<GROUP_M>(i, tiles_m, tiles_n);
                        produce(smem, a, b, at, Some(i / grid_dim_x()), k_tiles);
                    }
                }
            }
        }
    } else {
        setmaxnreg_inc::<CONSUMER_REGS>();
        let who = (warp, group - 1);
        match one_tile {
            Some(at) => {
                consume::<O, BM, BN, BK, STAGES, AT, E>(smem, c, epilogue, at, None, k_tiles, who)
            }
            None => {
                let (tiles_m, tiles_n) = (ceil_div(c.rows(), BM), ceil_div(c.cols(), BN));
                for i in range_step(block_idx_x(), tiles_m * tiles_n, grid_dim_x()) {
                    let at = banded_tile::<GROUP_M>(i, tiles_m, tiles_n);
                    let t = i / grid_dim_x();
                    consume::<O, BM, BN, BK, STAGES, AT, E>(
                        smem,
                        c,
                        epilogue,
                        at,
                        Some(t),
                        k_tiles,
                        who,
                    );
                }
            }
        }
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
                gemm_ws_wg::<f32, 128, 256, 64, 3>::launch(device, g, &a, &b, &mut c)
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

/// [`gemm_ws_wg_persistent`], both output types, against the f64 reference where the device
/// runs sm_90a code or interprets: partial tiles in M, N and K with fewer tiles than blocks, a
/// grid of 3 blocks walking 14 tiles (more tile rows than a band of the order, a ragged band),
/// and on GPUs a full grid over many tiles.
fn persistent_selftest(device: &Device) -> Result<String, String> {
    if !crate::registry::runs_on(&["sm_90a"], device) {
        return Ok(format!(
            "skipped: registered for sm_90a only, which {} does not run",
            device.name()
        ));
    }
    let mut rng = Rng::fresh();
    let mut shapes = vec![((70, 45, 130), None), ((1300, 264, 72), Some(3))];
    if large(device) {
        shapes.push(((2000, 3000, 520), None));
    }
    let mut checked = 0;
    for ((m, n, k), blocks) in shapes {
        for out in [ScalarType::F32, ScalarType::BF16] {
            let ratio = persistent_case(device, &mut rng, (m, n, k), blocks, out)?;
            if ratio > 1.0 {
                return Err(format!(
                    "{m}×{n}×{k} → {out}: error {ratio:.2} times its bound (seed {})",
                    rng.seed
                ));
            }
            checked += 1;
        }
    }
    Ok(format!("{checked} runs against the f64 reference"))
}

/// One run of [`gemm_ws_wg_persistent`] (`<f32, 128, 256, 64, 3>` or `<bf16, 128, 256, 64,
/// 4>`) on fresh inputs with `blocks` blocks (`None`: [`persistent_grid`]): the largest error in
/// units of a per-element bound (recorded as a case): half a unit in the last place of `out`
/// of the value plus K + 2 f32 roundings of `Σ|a||b|`, doubled.
pub fn persistent_case(
    device: &Device,
    rng: &mut Rng,
    (m, n, k): (usize, usize, usize),
    blocks: Option<u32>,
    out: ScalarType,
) -> Result<f64, String> {
    let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
    let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
    let (av, bv) = (a.to_vec(), b.to_vec());
    let want = reference(&av, &bv, m, k, n);
    let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let scale = reference(&abs(&av), &abs(&bv), m, k, n);
    let mut c = poisoned(out, &[m, n]);
    let g = match blocks {
        Some(b) => [b, 1, 1],
        None => persistent_grid(device, m, n, 128, 256),
    };
    let case = format!("persistent {m}×{n}×{k} → {out} on {} blocks", g[0]);
    let launched = if out == ScalarType::F32 {
        gemm_ws_wg_persistent::<f32, 128, 256, 64, 3>::launch(device, g, &a, &b, &mut c)
    } else {
        gemm_ws_wg_persistent::<bf16, 128, 256, 64, 4>::launch(device, g, &a, &b, &mut c)
    };
    launched.map_err(|e| format!("{case}: {e} (seed {})", rng.seed))?;
    let unit = if out == ScalarType::BF16 {
        2f64.powi(-9)
    } else {
        2f64.powi(-24)
    };
    let bound: Vec<f64> = (0..m * n)
        .map(|i| {
            let accumulation = (k as f64 + 2.0) * 2f64.powi(-24) * scale[i];
            2.0 * (unit * want[i].abs() + accumulation) + f64::MIN_POSITIVE
        })
        .collect();
    Ok(record_bounded(case, &c.to_vec(), &want, &bound))
}

/// `gelu_tanh(alpha · (A·B)[i][j] + bias[j])` in f64 (A `m×k`, B `k×n`, row-major), from the
/// definition of the tanh form of GELU.
pub fn bias_gelu_reference(
    a: &[f64],
    b: &[f64],
    bias: &[f64],
    alpha: f64,
    (m, k, n): (usize, usize, usize),
) -> Vec<f64> {
    let c = reference(a, b, m, k, n);
    c.iter()
        .enumerate()
        .map(|(i, &x)| gelu_tanh(alpha * x + bias[i % n]))
        .collect()
}

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
fn gelu_tanh(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

/// The error allowed at each element of [`bias_gelu_reference`]'s result `want` with
/// pre-activations `x = alpha · A·B + bias` and `|alpha|·Σ|a||b|` as `scale`: the output's
/// rounding (half a unit in the last place of `out`: 2⁻⁹ relative for bf16, 2⁻²⁴ for f32),
/// the f32 accumulation and the scale (K + 2 roundings of 2⁻²⁴ on `scale`, passed through
/// GELU's slope, at most 1.13), and the approximate `tanh` of the target (relative error
/// 2⁻¹⁰ at most, on `0.5·|x|`), each doubled.
pub fn bias_gelu_bound(out: ScalarType, want: f64, x: f64, scale: f64, k: usize) -> f64 {
    let unit = if out == ScalarType::BF16 {
        2f64.powi(-9)
    } else {
        2f64.powi(-24)
    };
    let rounding = unit * want.abs();
    let accumulation = 1.13 * (k as f64 + 2.0) * 2f64.powi(-24) * scale;
    let tanh = 0.5 * x.abs() * 2f64.powi(-10);
    2.0 * (rounding + accumulation + tanh) + f64::MIN_POSITIVE
}

/// [`gemm_ws_wg_bias_gelu`] on awkward shapes (partial tiles in M, N and K) against the f64
/// reference with a per-element bound ([`bias_gelu_bound`]), where the device runs sm_90a code
/// or interprets.
fn bias_gelu_selftest(device: &Device) -> Result<String, String> {
    if !crate::registry::runs_on(&["sm_90a"], device) {
        return Ok("registered for sm_90a only: nothing to run here".into());
    }
    let mut rng = Rng::fresh();
    let mut checked = 0;
    let mut shapes = vec![(70, 45, 130), (200, 264, 72)];
    if large(device) {
        shapes.push((1000, 1000, 520));
    }
    for (m, n, k) in shapes {
        let case = format!("bias + GELU {m}×{n}×{k}");
        let outcome = bias_gelu_case(device, &mut rng, (m, n, k));
        let ratio = outcome.map_err(|e| format!("{case}: {e} (seed {})", rng.seed))?;
        if ratio > 1.0 {
            return Err(format!(
                "{case}: error {ratio:.2} times its bound (seed {})",
                rng.seed
            ));
        }
        checked += 1;
    }
    Ok(format!("{checked} runs against the f64 reference"))
}

/// One run of [`gemm_ws_wg_bias_gelu`]`<bf16, 128, 256, 64, 4>` on fresh inputs: the largest
/// error in units of [`bias_gelu_bound`] (recorded as a case).
pub fn bias_gelu_case(
    device: &Device,
    rng: &mut Rng,
    (m, n, k): (usize, usize, usize),
) -> Result<f64, String> {
    let a = rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0);
    let b = rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0);
    let bias = rng.tensor(ScalarType::F32, &[n], -2.0, 2.0);
    let alpha = rng.uniform(0.25, 1.5) as f32;
    let (av, bv, biasv) = (a.to_vec(), b.to_vec(), bias.to_vec());
    let want = bias_gelu_reference(&av, &bv, &biasv, f64::from(alpha), (m, k, n));
    let mut c = poisoned(ScalarType::BF16, &[m, n]);
    gemm_ws_wg_bias_gelu::<bf16, 128, 256, 64, 4>::launch(
        device,
        grid(m, n, 128, 256),
        &a,
        &b,
        &bias,
        alpha.into(),
        &mut c,
    )
    .map_err(|e| e.to_string())?;
    let abs_a: Vec<f64> = av.iter().map(|v| v.abs()).collect();
    let abs_b: Vec<f64> = bv.iter().map(|v| v.abs()).collect();
    let sums = reference(&abs_a, &abs_b, m, k, n);
    let product = reference(&av, &bv, m, k, n);
    let alpha = f64::from(alpha);
    let bound: Vec<f64> = (0..m * n)
        .map(|i| {
            let x = alpha * product[i] + biasv[i % n];
            bias_gelu_bound(ScalarType::BF16, want[i], x, alpha * sums[i], k)
        })
        .collect();
    Ok(record_bounded(
        format!("bias + GELU {m}×{n}×{k} → bf16"),
        &c.to_vec(),
        &want,
        &bound,
    ))
}
