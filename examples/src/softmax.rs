//! Row softmax: `Y[i][j] = exp(X[i][j]) / Σ_k exp(X[i][k])`, X `[rows, cols]` f32 or bf16, Y f32.
//!
//! Each warp owns `rows_per_warp` rows (a block has `warps` warps; the grid covers the rows) and
//! walks the columns in tiles of `block_cols`, twice:
//!
//! 1. online statistics: a running row max `m` and a running sum `l` of `exp(x − m)`, rescaled
//!    by `exp(m − m')` whenever the max grows;
//! 2. the output: `exp(x − m) / l`, stored.
//!
//! Every exponential is one `exp2((x − m) · log2(e))`; scaling after the subtraction keeps
//! inputs beyond ±f32::MAX / log2(e) finite.
//!
//! Columns at or past `cols` in the last tile are set to `-inf` before the max (`mask.cols`), so
//! they contribute `exp(-inf) = 0` to the sum; rows past `rows` are computed on zeros and masked
//! off by the store. Any `cols ≥ 1` works, in one tile or many.
//!
//! `-inf` inputs give probability 0 and a row of `-inf` only gives NaN, as `torch.softmax` does.
//! Until a row has seen a finite value its running max is `-inf`, and `exp(-inf − -inf)` would be
//! NaN: the exponentials of the first pass subtract `max(m', f32::MIN)` instead, which equals `m'`
//! whenever `m'` is finite (every finite f32 is ≥ `f32::MIN`) and turns those NaNs into 0.

use tilekit::ir::interp::{Arg, HostTensor, InterpError, Launch};
use tilekit::ir::{
    rt, BcastAxis, BinaryFn, Dim3, FuncBuilder, MaskKind, Module, ReduceAxis, ReduceFn, ScalarType,
    Type, UnaryFn, Value, VecAxis,
};

use crate::tiling::{tiles, tiles_ir};
use crate::{bad_input, expect_tensor, output};

/// The kernel's name in its module.
pub const KERNEL: &str = "softmax_rows";

/// Tiling and input dtype of [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxConfig {
    /// X's dtype: `F32` or `BF16` (Y is always f32).
    pub input: ScalarType,
    /// Rows per warp (a multiple of 16).
    pub rows_per_warp: u32,
    /// Warps per block.
    pub warps: u32,
    /// Columns per tile of the column loops (a multiple of 16).
    pub block_cols: u32,
}

impl Default for SoftmaxConfig {
    fn default() -> Self {
        SoftmaxConfig {
            input: ScalarType::F32,
            rows_per_warp: 16,
            warps: 4,
            block_cols: 64,
        }
    }
}

impl SoftmaxConfig {
    /// The launch grid: x over blocks of `warps · rows_per_warp` rows.
    pub fn grid(&self, rows: usize) -> [u32; 3] {
        [tiles(rows, self.warps * self.rows_per_warp), 1, 1]
    }

    fn check(&self) {
        assert!(
            self.rows_per_warp % 16 == 0 && self.block_cols % 16 == 0 && self.warps >= 1,
            "softmax: rows_per_warp ({}) and block_cols ({}) must be multiples of 16",
            self.rows_per_warp,
            self.block_cols
        );
        assert!(
            matches!(self.input, ScalarType::F32 | ScalarType::BF16),
            "softmax: the input dtype must be f32 or bf16, got {}",
            self.input
        );
    }
}

/// Builds `@softmax_rows(%x: gl<input, 2>, %y: gl<f32, 2, mut>)`.
///
/// # Panics
/// When the configuration is not a valid tiling (see [`SoftmaxConfig`]'s fields).
pub fn build(cfg: &SoftmaxConfig) -> Module {
    cfg.check();
    let f32 = ScalarType::F32;
    let (rows, cols) = (cfg.rows_per_warp, cfg.block_cols);
    let mut b = FuncBuilder::kernel(KERNEL, cfg.warps);
    let x = b.param("x", Type::global(cfg.input, 2, false));
    let y = b.param("y", Type::global(f32, 2, true));

    let block = b.block_idx(Dim3::X);
    let warp = b.warp_idx();
    let warps = b.const_i32(cfg.warps as i32);
    let row_tile = b.mul(block, warps);
    let row_tile = b.add(row_tile, warp);
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let n_cols = b.dim(x, 1);
    let col_tiles = tiles_ir(&mut b, n_cols, cols);
    b.name(row_tile, "row_tile");
    b.name(n_cols, "n_cols");
    let log2e = b.const_f32(std::f32::consts::LOG2_E);
    let lowest = b.const_f32(f32::MIN);
    let cols_c = b.const_i32(cols as i32);

    // Column tile `ct` of this warp's rows in f32, padding columns at -inf.
    let scores = |b: &mut FuncBuilder, ct: Value| -> Value {
        let t = b.load(rt(cfg.input, rows, cols), x, &[row_tile, ct]);
        let t = if cfg.input == f32 {
            t
        } else {
            b.convert_dtype(t, f32)
        };
        let col0 = b.mul(ct, cols_c);
        b.mask(MaskKind::Cols, f64::NEG_INFINITY, t, col0, n_cols)
    };

    let row_vec = Type::vector(f32, rows, VecAxis::Rows);
    let m0 = b.fill(row_vec.clone(), f64::NEG_INFINITY);
    let l0 = b.zeros(row_vec);
    let stats = b.for_range(zero, col_tiles, one, &[m0, l0], |b, ct, c| {
        let (m, l) = (c[0], c[1]);
        let t = scores(b, ct);
        let tile_max = b.reduce(ReduceAxis::Row, ReduceFn::Max, t);
        let m_new = b.max(m, tile_max);
        // m_new where finite, f32::MIN where no finite value has been seen (see the module docs).
        let shift = b.max(m_new, lowest);
        let m_diff = b.sub(m, shift);
        let m_diff = b.mul(m_diff, log2e);
        let alpha = b.unary(UnaryFn::Exp2, m_diff);
        let l = b.mul(l, alpha);
        let e = b.bcast(BcastAxis::Row, BinaryFn::Sub, t, shift);
        let e = b.mul(e, log2e);
        let e = b.unary(UnaryFn::Exp2, e);
        let e_sum = b.reduce(ReduceAxis::Row, ReduceFn::Sum, e);
        let l = b.add(l, e_sum);
        vec![m_new, l]
    });
    let (m, l) = (stats[0], stats[1]);
    b.name(m, "row_max");
    b.name(l, "row_sum");

    b.for_range(zero, col_tiles, one, &[], |b, ct, _| {
        let t = scores(b, ct);
        // A row of -inf only keeps m = -inf and l = 0: NaN, as torch gives.
        let e = b.bcast(BcastAxis::Row, BinaryFn::Sub, t, m);
        let e = b.mul(e, log2e);
        let e = b.unary(UnaryFn::Exp2, e);
        let out = b.bcast(BcastAxis::Row, BinaryFn::Div, e, l);
        b.store(y, out, &[row_tile, ct]);
        vec![]
    });

    let mut module = Module::new();
    module.push(b.finish());
    module
}

/// Runs the kernel on the interpreter for X `[rows, cols]` (dtype `cfg.input`, `cols ≥ 1`);
/// returns Y `[rows, cols]` f32.
pub fn run(cfg: &SoftmaxConfig, x: &HostTensor) -> Result<HostTensor, InterpError> {
    expect_tensor(KERNEL, "x", x, cfg.input, 2)?;
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    if cols == 0 {
        return Err(bad_input(
            KERNEL,
            "a softmax over zero columns is undefined",
        ));
    }
    let mut args = vec![
        Arg::Tensor(x.clone()),
        Arg::Tensor(HostTensor::zeros(ScalarType::F32, &[rows, cols])),
    ];
    crate::execute(&build(cfg), KERNEL, Launch::grid(cfg.grid(rows)), &mut args)?;
    Ok(output(&args, 1))
}

/// Row softmax in f64, from the definition (the kernel library's reference).
pub use tilekit::kernels::softmax::reference;
