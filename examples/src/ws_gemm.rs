//! Warp-specialized GEMM: `C = A·B` (A `M×K`, B `K×N` bf16; C f32 or bf16) with one producer
//! warp feeding `consumers` consumer warps through a ring of shared-memory stages, the Hopper
//! pattern (TMA + mbarriers) in Tile IR terms.
//!
//! A block computes a `block_m × block_n` tile of C. Warp 0 is the producer; warps
//! `1..=consumers` are consumers, consumer c owning rows `[c·block_m/consumers, …)` of the block
//! tile. Shared memory holds `stages` A tiles (`block_m × block_k`) and B tiles
//! (`block_k × block_n`), and two semaphores per stage:
//!
//! - `full[s]`: one arrival (the producer's) plus the stage's bytes of async copies; completes
//!   when tile data has landed in stage s;
//! - `empty[s]`: `consumers` arrivals; completes when every consumer is done reading stage s.
//!
//! K step `kt` uses stage `s = kt mod stages` for the `r = kt / stages`-th time. Semaphores
//! count phases, and a wait names the parity of the phase it waits for (as `mbarrier`'s
//! `try_wait.parity`): consumers wait for phase r of `full[s]`, parity `r & 1`; the producer
//! waits for phase `r − 1` of `empty[s]`, parity `(r & 1) ^ 1` — for `r = 0` that is parity 1,
//! which passes at once because no phase has completed yet (every stage starts empty).
//! Semaphores are initialized by warp 0 and published to the block with a barrier.
//!
//! The producer, per K step: wait `empty[s]`; `sem.expect` the stage's bytes and arrive on
//! `full[s]` (together, PTX's `mbarrier.arrive.expect_tx`); issue `copy_async` of the A and B
//! tiles into stage s, completing on `full[s]`. A consumer, per K step: wait `full[s]`, load its
//! rows of A and all of B (col layout) from stage s, `mma.ab` into its accumulator, arrive on
//! `empty[s]`. Edges are masked as in [`gemm`](crate::gemm) (async copies of tiles that stick out
//! fill zeros and still deliver the whole tile's bytes, as TMA does).
//!
//! [`WsFault`] builds deliberately broken variants, to show the interpreter catching them.

use tilekit::ir::interp::{HostTensor, InterpError, Schedule};
use tilekit::ir::{
    rt, rt_col, BinaryFn, CmpPred, Dim3, FuncBuilder, MmaVariant, Module, ScalarType, Type, Value,
};

use crate::gemm::run_matmul;
use crate::tiling::{swizzle_for, tiles, tiles_ir};

/// The kernel's name in its module.
pub const KERNEL: &str = "ws_gemm";

/// A deliberate synchronization bug, for tests of the interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WsFault {
    /// The correct kernel.
    #[default]
    None,
    /// Consumers read a stage without waiting on its `full` semaphore.
    ConsumerSkipsFullWait,
    /// The producer issues the copies but never arrives on `full`, so no stage ever fills.
    ProducerNeverArrives,
}

/// Tiling, pipeline depth and output dtype of [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsGemmConfig {
    pub block_m: u32,
    pub block_n: u32,
    pub block_k: u32,
    /// Consumer warps (the block has one more warp, the producer).
    pub consumers: u32,
    /// Stages of the shared-memory ring (at least 2).
    pub stages: u32,
    /// C's dtype: `F32` or `BF16`.
    pub out: ScalarType,
    pub fault: WsFault,
}

impl Default for WsGemmConfig {
    fn default() -> Self {
        WsGemmConfig {
            block_m: 64,
            block_n: 64,
            block_k: 32,
            consumers: 2,
            stages: 2,
            out: ScalarType::F32,
            fault: WsFault::None,
        }
    }
}

impl WsGemmConfig {
    /// Rows of C per consumer warp.
    pub fn consumer_rows(&self) -> u32 {
        self.block_m / self.consumers
    }

    /// The launch grid for an `m × n` C: x over column tiles, y over row tiles.
    pub fn grid(&self, m: usize, n: usize) -> [u32; 3] {
        [tiles(n, self.block_n), tiles(m, self.block_m), 1]
    }

    fn check(&self) {
        let rows = self.consumer_rows();
        assert!(
            self.consumers >= 1 && rows * self.consumers == self.block_m && rows % 16 == 0,
            "ws_gemm: {} consumers must split block_m = {} into multiples of 16 rows",
            self.consumers,
            self.block_m
        );
        assert!(
            self.block_n % 16 == 0 && self.block_k % 16 == 0,
            "ws_gemm: block_n ({}) and block_k ({}) must be multiples of 16",
            self.block_n,
            self.block_k
        );
        assert!(
            self.stages >= 2,
            "ws_gemm: the ring needs at least 2 stages"
        );
        assert!(
            matches!(self.out, ScalarType::F32 | ScalarType::BF16),
            "ws_gemm: the output dtype must be f32 or bf16, got {}",
            self.out
        );
    }
}

/// Builds `@ws_gemm(%a: gl<bf16, 2>, %b: gl<bf16, 2>, %c: gl<out, 2, mut>)` with
/// `consumers + 1` warps.
///
/// # Panics
/// When the configuration is not a valid tiling (see [`WsGemmConfig`]'s fields).
pub fn build(cfg: &WsGemmConfig) -> Module {
    cfg.check();
    let bf16 = ScalarType::BF16;
    let (bm, bn, bk) = (cfg.block_m, cfg.block_n, cfg.block_k);
    let mut b = FuncBuilder::kernel(KERNEL, cfg.consumers + 1);
    let a = b.param("a", Type::global(bf16, 2, false));
    let bmat = b.param("b", Type::global(bf16, 2, false));
    let c = b.param("c", Type::global(cfg.out, 2, true));

    let a_tile = Type::shared_tile(bf16, bm, bk, swizzle_for(bf16, bk));
    let b_tile = Type::shared_tile(bf16, bk, bn, swizzle_for(bf16, bn));
    let stage_bytes =
        (a_tile.shared_bytes().unwrap_or(0) + b_tile.shared_bytes().unwrap_or(0)) as u32;
    let a_ring = b.alloc_shared(Type::shared_array(a_tile, cfg.stages));
    let b_ring = b.alloc_shared(Type::shared_array(b_tile, cfg.stages));
    let full = b.alloc_shared(Type::shared_array(Type::Semaphore, cfg.stages));
    let empty = b.alloc_shared(Type::shared_array(Type::Semaphore, cfg.stages));
    b.name(a_ring, "a_ring");
    b.name(b_ring, "b_ring");
    b.name(full, "full");
    b.name(empty, "empty");

    let tile_n = b.block_idx(Dim3::X);
    let tile_m = b.block_idx(Dim3::Y);
    let warp = b.warp_idx();
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let stages = b.const_i32(cfg.stages as i32);
    let is_producer = b.cmp(CmpPred::Eq, warp, zero);

    b.if_then(is_producer, |b| {
        for s in 0..cfg.stages {
            let i = b.const_i32(s as i32);
            let f = b.shared_index(full, i);
            b.sem_init(f, 1);
            let e = b.shared_index(empty, i);
            b.sem_init(e, cfg.consumers);
        }
    });
    b.barrier();

    let k = b.dim(a, 1);
    let k_tiles = tiles_ir(&mut b, k, bk);
    b.name(is_producer, "is_producer");
    b.name(k_tiles, "k_tiles");
    // Stage and parity of the phase that K step `kt` waits for: (kt mod stages, (kt / stages) & 1).
    let stage_of = |b: &mut FuncBuilder, kt: Value| -> (Value, Value) {
        let s = b.binary(BinaryFn::Rem, kt, stages);
        let round = b.binary(BinaryFn::Div, kt, stages);
        let parity = b.binary(BinaryFn::And, round, one);
        (s, parity)
    };

    b.if_else(
        is_producer,
        vec![],
        |b| {
            b.for_range(zero, k_tiles, one, &[], |b, kt, _| {
                let (s, parity) = stage_of(b, kt);
                let empty_s = b.shared_index(empty, s);
                let free_parity = b.binary(BinaryFn::Xor, parity, one);
                b.sem_wait(empty_s, free_parity);
                let full_s = b.shared_index(full, s);
                b.sem_expect(full_s, stage_bytes);
                if cfg.fault != WsFault::ProducerNeverArrives {
                    b.sem_arrive(full_s);
                }
                let a_s = b.shared_index(a_ring, s);
                let b_s = b.shared_index(b_ring, s);
                b.copy_async(a_s, a, full_s, &[tile_m, kt]);
                b.copy_async(b_s, bmat, full_s, &[kt, tile_n]);
                vec![]
            });
            vec![]
        },
        |b| {
            let consumer = b.sub(warp, one);
            b.name(consumer, "consumer");
            let rows = cfg.consumer_rows();
            let acc = b.zeros(rt(ScalarType::F32, rows, bn));
            let acc = b.for_range(zero, k_tiles, one, &[acc], |b, kt, carried| {
                let (s, parity) = stage_of(b, kt);
                if cfg.fault != WsFault::ConsumerSkipsFullWait {
                    let full_s = b.shared_index(full, s);
                    b.sem_wait(full_s, parity);
                }
                let a_s = b.shared_index(a_ring, s);
                let b_s = b.shared_index(b_ring, s);
                let a_frag = b.load(rt(bf16, rows, bk), a_s, &[consumer, zero]);
                let b_frag = b.load(rt_col(bf16, bk, bn), b_s, &[]);
                let acc = b.mma(MmaVariant::AB, a_frag, b_frag, carried[0]);
                let empty_s = b.shared_index(empty, s);
                b.sem_arrive(empty_s);
                vec![acc]
            })[0];
            let per_block = b.const_i32(cfg.consumers as i32);
            let row = b.mul(tile_m, per_block);
            let row = b.add(row, consumer);
            let out = if cfg.out == ScalarType::F32 {
                acc
            } else {
                b.convert_dtype(acc, cfg.out)
            };
            b.store(c, out, &[row, tile_n]);
            vec![]
        },
    );

    let mut module = Module::new();
    module.push(b.finish());
    module
}

/// Runs the kernel on the interpreter: `C = A·B` for bf16 `a` (`M×K`) and `b` (`K×N`).
pub fn run(cfg: &WsGemmConfig, a: &HostTensor, b: &HostTensor) -> Result<HostTensor, InterpError> {
    run_scheduled(cfg, Schedule::default(), a, b)
}

/// [`run`] with a chosen warp schedule.
pub fn run_scheduled(
    cfg: &WsGemmConfig,
    schedule: Schedule,
    a: &HostTensor,
    b: &HostTensor,
) -> Result<HostTensor, InterpError> {
    run_matmul(
        KERNEL,
        &build(cfg),
        |m, n| cfg.grid(m, n),
        cfg.out,
        schedule,
        a,
        b,
    )
}

/// `C = A·B` in f64: the same product as the plain GEMM's reference.
pub use crate::gemm::reference;
