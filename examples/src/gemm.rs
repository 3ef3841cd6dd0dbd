//! Tiled GEMM: `C = A·B` with A `M×K` bf16, B `K×N` bf16, f32 accumulation, C bf16 or f32.
//!
//! The classic shared-memory loop. A block computes a `block_m × block_n` tile of C with
//! `warps_m × warps_n` warps arranged as a grid; warp `(wr, wc)` owns the
//! `(block_m / warps_m) × (block_n / warps_n)` sub-tile at row `wr`, column `wc` of the block tile
//! and keeps its accumulator in registers for the whole K loop. Each K step the block stages a
//! `block_m × block_k` tile of A and a `block_k × block_n` tile of B in shared memory
//! (`copy @block`: the copy is split among the warps), waits at a barrier, and each warp loads its
//! rows of A (row layout) and its columns of B (col layout, as `mma.ab` wants) into registers.
//! A second barrier keeps the next iteration's copy from overwriting a stage a slower warp
//! still reads.
//!
//! Default: 64×64 block tile, 4 warps as 2×2, so each warp owns a 32×32 sub-tile (two 16-row
//! fragments by two 16-column fragments: on sm_80 that is 8 `mma.m16n8k16` per 16 of K, a good
//! ratio of tensor-core work to `ldmatrix` traffic while keeping the accumulator at 32 f32
//! registers per lane), and `block_k = 32`.
//!
//! Edges: A and B tiles that stick out of the matrices are read as zeros (global tile accesses
//! are masked by the view's shape), so padded K contributes nothing; C stores are masked, so M, N
//! and K need not be multiples of the tile.

use tilekit::ir::interp::{Arg, HostTensor, InterpError, Launch, Schedule};
use tilekit::ir::{
    rt, rt_col, BinaryFn, Dim3, FuncBuilder, MmaVariant, Module, ScalarType, Scope, Type,
};

use crate::tiling::{swizzle_for, tiles, tiles_ir};
use crate::{bad_input, expect_tensor, output};

/// The kernel's name in its module.
pub const KERNEL: &str = "gemm";

/// Tile sizes, warp arrangement and output dtype of [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmConfig {
    /// Rows of C per block.
    pub block_m: u32,
    /// Columns of C per block.
    pub block_n: u32,
    /// K per step of the main loop (the depth of the shared A and B tiles).
    pub block_k: u32,
    /// Warps along M; `block_m / warps_m` rows per warp.
    pub warps_m: u32,
    /// Warps along N; `block_n / warps_n` columns per warp.
    pub warps_n: u32,
    /// C's dtype: `F32` or `BF16` (rounded once, from the f32 accumulator).
    pub out: ScalarType,
}

impl Default for GemmConfig {
    fn default() -> Self {
        GemmConfig {
            block_m: 64,
            block_n: 64,
            block_k: 32,
            warps_m: 2,
            warps_n: 2,
            out: ScalarType::F32,
        }
    }
}

impl GemmConfig {
    /// Rows and columns of each warp's sub-tile of C.
    pub fn warp_tile(&self) -> (u32, u32) {
        (self.block_m / self.warps_m, self.block_n / self.warps_n)
    }

    /// The launch grid for an `m × n` C: x over column tiles, y over row tiles.
    pub fn grid(&self, m: usize, n: usize) -> [u32; 3] {
        [tiles(n, self.block_n), tiles(m, self.block_m), 1]
    }

    fn check(&self) {
        let (wm, wn) = self.warp_tile();
        assert!(
            self.warps_m >= 1
                && self.warps_n >= 1
                && wm * self.warps_m == self.block_m
                && wn * self.warps_n == self.block_n,
            "gemm: the warp grid {}×{} must divide the block tile {}×{}",
            self.warps_m,
            self.warps_n,
            self.block_m,
            self.block_n
        );
        assert!(
            wm % 16 == 0 && wn % 16 == 0 && self.block_k % 16 == 0,
            "gemm: warp tiles ({wm}×{wn}) and block_k ({}) must be multiples of 16",
            self.block_k
        );
        assert!(
            matches!(self.out, ScalarType::F32 | ScalarType::BF16),
            "gemm: the output dtype must be f32 or bf16, got {}",
            self.out
        );
    }
}

/// Builds `@gemm(%a: gl<bf16, 2>, %b: gl<bf16, 2>, %c: gl<out, 2, mut>)`.
///
/// # Panics
/// When the configuration is not a valid tiling (see [`GemmConfig`]'s fields).
pub fn build(cfg: &GemmConfig) -> Module {
    cfg.check();
    let bf16 = ScalarType::BF16;
    let (wm, wn) = cfg.warp_tile();
    let mut b = FuncBuilder::kernel(KERNEL, cfg.warps_m * cfg.warps_n);
    let a = b.param("a", Type::global(bf16, 2, false));
    let bm = b.param("b", Type::global(bf16, 2, false));
    let c = b.param("c", Type::global(cfg.out, 2, true));

    let sa = b.alloc_shared(Type::shared_tile(
        bf16,
        cfg.block_m,
        cfg.block_k,
        swizzle_for(bf16, cfg.block_k),
    ));
    let sb = b.alloc_shared(Type::shared_tile(
        bf16,
        cfg.block_k,
        cfg.block_n,
        swizzle_for(bf16, cfg.block_n),
    ));
    b.name(sa, "a_smem");
    b.name(sb, "b_smem");

    let tile_n = b.block_idx(Dim3::X);
    let tile_m = b.block_idx(Dim3::Y);
    let warp = b.warp_idx();
    let warps_n = b.const_i32(cfg.warps_n as i32);
    let warp_row = b.binary(BinaryFn::Div, warp, warps_n);
    let warp_col = b.binary(BinaryFn::Rem, warp, warps_n);
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let k = b.dim(a, 1);
    let k_tiles = tiles_ir(&mut b, k, cfg.block_k);
    b.name(tile_m, "tile_m");
    b.name(tile_n, "tile_n");
    b.name(warp_row, "warp_row");
    b.name(warp_col, "warp_col");
    b.name(k_tiles, "k_tiles");

    let acc = b.zeros(rt(ScalarType::F32, wm, wn));
    let acc = b.for_range(zero, k_tiles, one, &[acc], |b, kt, carried| {
        b.name(kt, "kt");
        b.copy(Scope::Block, sa, a, &[tile_m, kt]);
        b.copy(Scope::Block, sb, bm, &[kt, tile_n]);
        b.barrier();
        let a_frag = b.load(rt(bf16, wm, cfg.block_k), sa, &[warp_row, zero]);
        let b_frag = b.load(rt_col(bf16, cfg.block_k, wn), sb, &[zero, warp_col]);
        let acc = b.mma(MmaVariant::AB, a_frag, b_frag, carried[0]);
        // The next iteration overwrites the stage: every warp must be done reading it.
        b.barrier();
        vec![acc]
    })[0];
    b.name(acc, "acc");

    // This warp's sub-tile of C, in units of the warp tile.
    let wm_per_block = b.const_i32(cfg.warps_m as i32);
    let row = b.mul(tile_m, wm_per_block);
    let row = b.add(row, warp_row);
    let col = b.mul(tile_n, warps_n);
    let col = b.add(col, warp_col);
    let out = if cfg.out == ScalarType::F32 {
        acc
    } else {
        b.convert_dtype(acc, cfg.out)
    };
    b.store(c, out, &[row, col]);

    let mut m = Module::new();
    m.push(b.finish());
    m
}

/// Runs the kernel on the interpreter: `C = A·B` for bf16 `a` (`M×K`) and `b` (`K×N`).
pub fn run(cfg: &GemmConfig, a: &HostTensor, b: &HostTensor) -> Result<HostTensor, InterpError> {
    run_scheduled(cfg, Schedule::default(), a, b)
}

/// [`run`] with a chosen warp schedule.
pub fn run_scheduled(
    cfg: &GemmConfig,
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

/// Runs a `(a, b, c)` matmul kernel on the interpreter: checks the bf16 operands A `M×K` and
/// B `K×N`, allocates C `M×N` of dtype `out`, launches over `grid(M, N)` and returns C. Shared
/// by [`run_scheduled`].
pub(crate) fn run_matmul(
    kernel: &str,
    module: &Module,
    grid: impl Fn(usize, usize) -> [u32; 3],
    out: ScalarType,
    schedule: Schedule,
    a: &HostTensor,
    b: &HostTensor,
) -> Result<HostTensor, InterpError> {
    let (m, _, n) = operand_shapes(kernel, a, b)?;
    let mut args = vec![
        Arg::Tensor(a.clone()),
        Arg::Tensor(b.clone()),
        Arg::Tensor(HostTensor::zeros(out, &[m, n])),
    ];
    let launch = Launch::grid(grid(m, n)).schedule(schedule);
    crate::execute(module, kernel, launch, &mut args)?;
    Ok(output(&args, 2))
}

/// `(M, K, N)` of bf16 operands A `M×K` and B `K×N` of `kernel`, or the error saying what
/// does not fit.
fn operand_shapes(
    kernel: &str,
    a: &HostTensor,
    b: &HostTensor,
) -> Result<(usize, usize, usize), InterpError> {
    expect_tensor(kernel, "a", a, ScalarType::BF16, 2)?;
    expect_tensor(kernel, "b", b, ScalarType::BF16, 2)?;
    let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
    if b.shape()[0] != k {
        return Err(bad_input(
            kernel,
            format_args!(
                "A is {m}×{k} but B is {}×{n}: B needs {k} rows",
                b.shape()[0]
            ),
        ));
    }
    Ok((m, k, n))
}

/// `C = A·B` in f64, from the definition (the kernel library's reference).
pub use tilekit::kernels::gemm::reference;
