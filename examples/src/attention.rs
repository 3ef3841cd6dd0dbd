//! FlashAttention-style forward pass.
//!
//! Inputs Q `[bh, seq_q, d]`, K and V `[bh, seq_kv, d]` (bf16; the leading index is
//! batch·heads), outputs O `[bh, seq_q, d]` (bf16 or f32) and the log-sum-exp LSE `[bh, seq_q]`
//! (f32, natural log): for query row i of head h, with `s_j = scale · q_i·k_j` over the keys it
//! may see,
//!
//! ```text
//! O[h, i] = Σ_j softmax(s)_j · V[h, j]        LSE[h, i] = ln Σ_j exp(s_j)
//! ```
//!
//! Causal attention lets row i see keys `j ≤ i` (top-left aligned, as `mask.causal`).
//!
//! Each warp owns `rows_per_warp` query rows (its Q tile stays in registers) and a block has
//! `warps` warps, so a block covers `warps · rows_per_warp` rows of one head (grid: x over query
//! blocks, y over heads). The block walks the keys in tiles of `kv_block`: it stages a K and a V
//! tile in shared memory (`copy @block`, shared by all its warps), and each warp computes
//! `S = Q·Kᵀ` (`mma.abt`: K's rows are the B operand's columns), then the online softmax:
//!
//! - scores are kept in the exp2 domain: `t = s · log2(e)`, with `log2(e)` folded into the
//!   softmax scale once, so the exponentials are `exp2` (one `ex2.approx` on NVIDIA);
//! - keys at or past `seq_kv` (padding of the last tile) get `-inf` (`mask.cols`), and with
//!   `causal` keys after the row get `-inf` (`mask.causal`);
//! - with a running row max `m` and running sum `l`: `m' = max(m, rowmax(t))`,
//!   `p = exp2(t − m')`, `l' = l·exp2(m − m') + rowsum(p)`, `O' = O·exp2(m − m') + p·V`
//!   (`p` rounded to bf16 for the tensor-core `mma.ab` with V in col layout).
//!
//! Until a row has seen a finite score its running max is `-inf`, and `exp2(t − m')` would be
//! `exp2(-inf − -inf)` = NaN: the exponentials subtract `max(m', f32::MIN)` instead, which is `m'`
//! whenever `m'` is finite and makes every `-inf` score weigh 0. A row with no finite score at
//! all ends with O = NaN and LSE = `-inf`, as torch gives for a fully masked row.
//!
//! At the end `O /= l` and `LSE = (m + log2 l) · ln 2`. With `causal` the KV loop stops at the
//! block's diagonal (tiles wholly above every row of the block are never loaded); rows of the
//! block's last tiles that see none of a tile get `p = 0` there. Query rows past `seq_q` are
//! computed on zeros and masked off by the stores.

use tilekit::ir::interp::{Arg, HostTensor, InterpError, Launch};
use tilekit::ir::{
    rt, rt_col, BcastAxis, BinaryFn, Dim3, FuncBuilder, MaskKind, MmaVariant, Module, ReduceAxis,
    ReduceFn, ScalarType, Scope, Type, UnaryFn, VecAxis,
};

use crate::tiling::{swizzle_for, tiles, tiles_ir};
use crate::{bad_input, expect_tensor, output};

/// The kernel's name in its module.
pub const KERNEL: &str = "attention_fwd";

/// Shape of the tiling and the variant of [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionConfig {
    /// `d`, the head dimension (a multiple of 16; 64 and 128 are the usual ones).
    pub head_dim: u32,
    /// Query rows per warp (16, 32 or 64).
    pub rows_per_warp: u32,
    /// Warps per block.
    pub warps: u32,
    /// Keys per step of the KV loop.
    pub kv_block: u32,
    /// Whether row i sees only keys `j ≤ i`.
    pub causal: bool,
    /// O's dtype: `F32` or `BF16`.
    pub out: ScalarType,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            head_dim: 64,
            rows_per_warp: 16,
            warps: 4,
            kv_block: 64,
            causal: false,
            out: ScalarType::BF16,
        }
    }
}

impl AttentionConfig {
    /// Query rows per block.
    pub fn block_rows(&self) -> u32 {
        self.warps * self.rows_per_warp
    }

    /// The launch grid: x over query blocks, y over batch·heads.
    pub fn grid(&self, bh: usize, seq_q: usize) -> [u32; 3] {
        [tiles(seq_q, self.block_rows()), bh as u32, 1]
    }

    fn check(&self) {
        assert!(
            self.head_dim % 16 == 0 && self.rows_per_warp % 16 == 0 && self.kv_block % 16 == 0,
            "attention: head_dim ({}), rows_per_warp ({}) and kv_block ({}) must be multiples of 16",
            self.head_dim,
            self.rows_per_warp,
            self.kv_block
        );
        assert!(self.warps >= 1, "attention: at least one warp per block");
        assert!(
            matches!(self.out, ScalarType::F32 | ScalarType::BF16),
            "attention: the output dtype must be f32 or bf16, got {}",
            self.out
        );
    }
}

/// Builds `@attention_fwd(%q, %k, %v: gl<bf16, 3>, %o: gl<out, 3, mut>, %lse: gl<f32, 2, mut>,
/// %sm_scale: f32)`.
///
/// # Panics
/// When the configuration is not a valid tiling (see [`AttentionConfig`]'s fields).
pub fn build(cfg: &AttentionConfig) -> Module {
    cfg.check();
    let (bf16, f32) = (ScalarType::BF16, ScalarType::F32);
    let (rows, d, kv) = (cfg.rows_per_warp, cfg.head_dim, cfg.kv_block);
    let mut b = FuncBuilder::kernel(KERNEL, cfg.warps);
    let q = b.param("q", Type::global(bf16, 3, false));
    let k = b.param("k", Type::global(bf16, 3, false));
    let v = b.param("v", Type::global(bf16, 3, false));
    let o = b.param("o", Type::global(cfg.out, 3, true));
    let lse = b.param("lse", Type::global(f32, 2, true));
    let sm_scale = b.param("sm_scale", Type::scalar(f32));

    let k_smem = b.alloc_shared(Type::shared_tile(bf16, kv, d, swizzle_for(bf16, d)));
    let v_smem = b.alloc_shared(Type::shared_tile(bf16, kv, d, swizzle_for(bf16, d)));
    b.name(k_smem, "k_smem");
    b.name(v_smem, "v_smem");

    let q_block = b.block_idx(Dim3::X);
    let head = b.block_idx(Dim3::Y);
    let warp = b.warp_idx();
    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let warps = b.const_i32(cfg.warps as i32);
    let q_tile = b.mul(q_block, warps);
    let q_tile = b.add(q_tile, warp);
    let rows_c = b.const_i32(rows as i32);
    let q_row0 = b.mul(q_tile, rows_c);
    let seq_kv = b.dim(k, 1);
    let kv_tiles = tiles_ir(&mut b, seq_kv, kv);
    let kv_tiles = if cfg.causal {
        // The block's last row is `(q_block + 1)·block_rows − 1`: later key tiles are masked
        // for every row of the block. The bound is the block's, not the warp's, because every
        // warp takes part in each tile's `copy @block` and barriers.
        // ⌈(first + block_rows) / kv⌉ without forming first + block_rows, which passes
        // i32::MAX in the last block of a sequence near the limit.
        let block_rows = b.const_i32(cfg.block_rows() as i32);
        let first = b.mul(q_block, block_rows);
        let kv_c = b.const_i32(kv as i32);
        let whole = b.binary(BinaryFn::Div, first, kv_c);
        let rem = b.binary(BinaryFn::Rem, first, kv_c);
        let rem = b.add(rem, block_rows);
        let partial = tiles_ir(&mut b, rem, kv);
        let diag_tiles = b.add(whole, partial);
        b.min(kv_tiles, diag_tiles)
    } else {
        kv_tiles
    };
    b.name(kv_tiles, "kv_tiles");

    let q_frag = b.load(rt(bf16, rows, d), q, &[head, q_tile, zero]);
    let log2e = b.const_f32(std::f32::consts::LOG2_E);
    let scale_log2 = b.mul(sm_scale, log2e);
    b.name(head, "head");
    b.name(q_tile, "q_tile");
    b.name(q_row0, "q_row0");
    b.name(seq_kv, "seq_kv");
    b.name(q_frag, "q_frag");
    b.name(scale_log2, "scale_log2");
    let kv_c = b.const_i32(kv as i32);
    let lowest = b.const_f32(f32::MIN);

    let row_vec = Type::vector(f32, rows, VecAxis::Rows);
    let m0 = b.fill(row_vec.clone(), f64::NEG_INFINITY);
    let l0 = b.zeros(row_vec);
    let o0 = b.zeros(rt(f32, rows, d));
    let fin = b.for_range(zero, kv_tiles, one, &[m0, l0, o0], |b, kt, c| {
        let (m, l, acc) = (c[0], c[1], c[2]);
        b.name(kt, "kt");
        b.copy(Scope::Block, k_smem, k, &[head, kt, zero]);
        b.copy(Scope::Block, v_smem, v, &[head, kt, zero]);
        b.barrier();
        let k_frag = b.load(rt(bf16, kv, d), k_smem, &[]);
        let v_frag = b.load(rt_col(bf16, kv, d), v_smem, &[]);

        let s0 = b.zeros(rt(f32, rows, kv));
        let s = b.mma(MmaVariant::ABt, q_frag, k_frag, s0);
        let t = b.mul(s, scale_log2);
        let kv0 = b.mul(kt, kv_c);
        let t = b.mask(MaskKind::Cols, f64::NEG_INFINITY, t, kv0, seq_kv);
        let t = if cfg.causal {
            b.mask(MaskKind::Causal, f64::NEG_INFINITY, t, q_row0, kv0)
        } else {
            t
        };

        let tile_max = b.reduce(ReduceAxis::Row, ReduceFn::Max, t);
        let m_new = b.max(m, tile_max);
        let shift = b.max(m_new, lowest);
        let p = b.bcast(BcastAxis::Row, BinaryFn::Sub, t, shift);
        let p = b.unary(UnaryFn::Exp2, p);
        let m_diff = b.sub(m, shift);
        let alpha = b.unary(UnaryFn::Exp2, m_diff);
        let l = b.mul(l, alpha);
        let p_sum = b.reduce(ReduceAxis::Row, ReduceFn::Sum, p);
        let l = b.add(l, p_sum);
        let acc = b.bcast(BcastAxis::Row, BinaryFn::Mul, acc, alpha);
        let p16 = b.convert_dtype(p, bf16);
        let acc = b.mma(MmaVariant::AB, p16, v_frag, acc);
        // The next tile's copy overwrites K and V: every warp must be done with them.
        b.barrier();
        vec![m_new, l, acc]
    });
    let (m, l, acc) = (fin[0], fin[1], fin[2]);
    b.name(m, "row_max");
    b.name(l, "row_sum");

    let acc = b.bcast(BcastAxis::Row, BinaryFn::Div, acc, l);
    let out = if cfg.out == f32 {
        acc
    } else {
        b.convert_dtype(acc, cfg.out)
    };
    b.store(o, out, &[head, q_tile, zero]);
    let log2_l = b.unary(UnaryFn::Log2, l);
    let lse_log2 = b.add(m, log2_l);
    let ln2 = b.const_f32(std::f32::consts::LN_2);
    let lse_v = b.mul(lse_log2, ln2);
    b.store(lse, lse_v, &[head, q_tile]);

    let mut module = Module::new();
    module.push(b.finish());
    module
}

/// What [`run`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionOutput {
    /// `[bh, seq_q, d]`, of the configured dtype.
    pub o: HostTensor,
    /// `[bh, seq_q]` f32, natural log.
    pub lse: HostTensor,
}

/// Runs the kernel on the interpreter. `q`: `[bh, seq_q, d]`, `k` and `v`: `[bh, seq_kv, d]`,
/// all bf16 with `d = cfg.head_dim` and `seq_kv ≥ 1`.
pub fn run(
    cfg: &AttentionConfig,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    sm_scale: f32,
) -> Result<AttentionOutput, InterpError> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        expect_tensor(KERNEL, name, t, ScalarType::BF16, 3)?;
        if t.shape()[2] != cfg.head_dim as usize || t.shape()[0] != q.shape()[0] {
            return Err(bad_input(
                KERNEL,
                format_args!(
                    "`{name}` has shape {:?}; expected [{}, seq, {}] (batch·heads of q, head_dim)",
                    t.shape(),
                    q.shape()[0],
                    cfg.head_dim
                ),
            ));
        }
    }
    if k.shape() != v.shape() || k.shape()[1] == 0 {
        return Err(bad_input(
            KERNEL,
            format_args!(
                "k {:?} and v {:?} must have the same shape with at least one key",
                k.shape(),
                v.shape()
            ),
        ));
    }
    let (bh, seq_q, d) = (q.shape()[0], q.shape()[1], q.shape()[2]);
    let mut args = vec![
        Arg::Tensor(q.clone()),
        Arg::Tensor(k.clone()),
        Arg::Tensor(v.clone()),
        Arg::Tensor(HostTensor::zeros(cfg.out, &[bh, seq_q, d])),
        Arg::Tensor(HostTensor::zeros(ScalarType::F32, &[bh, seq_q])),
        Arg::f32(sm_scale),
    ];
    crate::execute(
        &build(cfg),
        KERNEL,
        Launch::grid(cfg.grid(bh, seq_q)),
        &mut args,
    )?;
    Ok(AttentionOutput {
        o: output(&args, 3),
        lse: output(&args, 4),
    })
}

/// Attention in f64 from the definition: for each head and query row, the full score row
/// `s_j = sm_scale · q_i·k_j` over the visible keys (`j ≤ i` when causal), `softmax(s)·V` and
/// `ln Σ exp(s_j)`. Inputs row-major `[bh, seq_q, d]` and `[bh, seq_kv, d]`; returns
/// `(O [bh, seq_q, d], LSE [bh, seq_q])`. The kernel library's reference, with the shape spelled out.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bh: usize,
    seq_q: usize,
    seq_kv: usize,
    d: usize,
    sm_scale: f64,
    causal: bool,
) -> (Vec<f64>, Vec<f64>) {
    tilekit::kernels::attention::reference(q, k, v, (bh, seq_q, seq_kv, d), sm_scale, causal)
}
