//! FlashAttention-style forward pass.
//!
//! Q `[bh_q, seq_q, D]`, K and V `[bh_kv, seq_kv, D]` (bf16; the leading index is batch·heads);
//! O `[bh_q, seq_q, D]` of dtype `O` and the log-sum-exp LSE `[bh_q, seq_q]` (f32, natural log).
//!
//! GQA/MQA: K and V may have fewer heads than Q. With `Hq` query and `Hkv` K/V heads per batch
//! (`Hkv` divides `Hq`, so `bh_kv` divides `bh_q`), query head h of batch b reads K/V head
//! `h / (Hq/Hkv)` of batch b. In the flattened index that is `(b·Hq + h) / g = b·Hkv + h/g` with
//! `g = bh_q / bh_kv`, so the kernel divides its head index by `g` and K and V are never
//! copied. The launchers refuse a `bh_kv` that does not divide `bh_q`.
//!
//! Causal masks are aligned bottom-right (as FlashAttention ≥ 2.1 and decoding with a KV cache
//! need): query row i sees keys `j ≤ i + seq_kv − seq_q`, so the last query row sees every key.
//! When `seq_q > seq_kv` the first `seq_q − seq_kv` rows see no key. For `seq_q = seq_kv` this is
//! the usual `j ≤ i`. The top-left alignment (`j ≤ i`, what `torch`'s
//! `scaled_dot_product_attention(is_causal=True)` does) is the option
//! [`Align::TopLeft`] of [`forward`], which runs it as a window of [`attention_fwd_window`].
//!
//! [`attention_fwd_window`] adds a sliding window and logit soft-capping: query row i sees keys
//! `i + off − window_left ≤ j ≤ i + off + window_right` with `off = seq_kv − seq_q` (any i32:
//! a bound at least the length is no bound; a negative one moves the edge past the diagonal),
//! and with `SOFTCAP` the scores are `softcap·tanh(sm_scale·q·k / softcap)` (as Gemma 2 and
//! FlashAttention's `softcap`) before the softmax. Blocks skip the key tiles outside their rows'
//! windows; only tiles that cross a window edge are masked.
//!
//! Each warp owns `R` query rows; a block of `WARPS` warps covers `WARPS·R` rows of one head
//! (grid: x over query blocks, y over query heads). Up to head dim 128 a warp's Q tile stays in
//! registers for the whole key loop; past it (beside the D/2 registers of O per thread) each
//! warp keeps Q in its own shared tile and reads it one k16 slice per key tile, as
//! FlashAttention-2 does at large head dims. The block walks its key tiles of `KV`,
//! staging K and V in a two-slot shared ring each, as separate copy groups
//! ([`dsl::pipeline`](crate::dsl::pipeline)): while a warp computes `S = Q·Kᵀ` (`mma_abt`) the
//! tile's V and the next tile's K are in flight, and while it computes `P·V` the next K is
//! (each wait leaves one group pending: `cp.async.wait_group 1`). Within a tile the scores are
//! computed in slices of 16 keys, K read from shared memory one 16×16 fragment and V one 16×D
//! fragment at a time right before its `mma`, so that only a slice's operands are live beside
//! Q, the scores and O. The online softmax runs in the exp2 domain (`log2 e` folded into the
//! scale). Only key tiles that need a mask are masked: the block's tiles split into a leading
//! run that crosses a window's left edge, an unmasked interior, and a trailing run holding the
//! last tile (keys past `seq_kv`) and the tiles crossing the diagonal or the window's right
//! edge, bounds taken for the block's rows; each run is its own loop. `O /= l` and
//! `LSE = (m + log2 l)·ln 2` at the end.
//! `sm_scale` must be positive: the row max is taken over the raw scores and scaled once per
//! row, and each score's scaling and shift is one `fma`. Lengths need not be multiples of the
//! tiles: rows past `seq_q` are computed and not stored, keys past `seq_kv` masked.
//!
//! Registered tiles (rows per block, key tile): head dim 64 with 128 (and 64) rows and 64 keys;
//! 128 with 128 rows and 32 keys, and for sm_80 with 64 keys ([`forward`] takes it on sm_80
//! and the interpreter): per FLOP that halves the work done once per key tile, above all the
//! 64 multiplies rescaling each warp's O (hot-loop figure 0.79 against 1.02 with 32 keys,
//! aligned). To fit 255 registers in views without alignment facts (element-wise copies),
//! its 64-key K and V tiles are copied in 16-key chunks and Q is read from shared memory (96
//! KiB of shared memory in all); its sm_90a compile still spills, and sm_90a runs
//! `attention_fwd_wg` at hd128 anyway. 256 with 64 rows and 16 keys (its K/V rings and Q tiles take 64 KiB of shared memory, all of gfx942's
//! LDS). Every registered variant compiles with 0 spills for sm_80, sm_90a, gfx90a, gfx942 and
//! gfx950, general and aligned. [`attention_fwd_window`] registers head dims 64 (64 rows, 32
//! keys: 64 keys spill 20 B on sm_80 with a cap) and 128 (as above); at 256 its aligned sm_90a
//! compile spills 8 B, so [`forward`] refuses windows there ([`WINDOW_HEAD_DIMS`]).
//!
//! Head dims 96 and 192 run blocks of 6 warps (96 rows): a block's thread count and the tile's
//! columns then divide one another, which the element-wise copies of views without alignment
//! facts need to step from element to element by constant strides (with 128 or 256 threads each
//! element's row and column are divided out, and the general compiles spilled: hd96 with 32
//! keys and 8 warps 504 B on sm_80, hd192 with 16 keys and 4 warps 2.7 KB). On sm_80 and sm_90a
//! hd96 takes 64 keys and hd192 32 (K and V copied in 16-key chunks, Q read from shared memory;
//! 66 and 84 KiB of shared memory); on AMD, whose 64 KiB of LDS does not hold those, 32 and 16
//! (hd96 keeps Q in registers). `tilekit check`, 0 spill bytes everywhere; sm_80 registers and
//! hot-loop figure, aligned / general: hd96 208–212 (0.95–0.96) / 254 (1.89), hd192 237–241
//! (0.91–0.95) / 255 (1.77); with the AMD tiles on sm_80 the figures are 1.21–1.24 and
//! 1.37 aligned.
//!
//! ALiBi ([`attention_fwd_alibi`], [`ForwardOptions::alibi`], [`forward_with_slopes`]): the
//! score of row i and key j of query head h gets `−slope_h·|i + seq_kv − seq_q − j|` after the
//! scale (FlashAttention's `alibi_slopes` convention around the bottom-right diagonal; `|i − j|`
//! with [`Align::TopLeft`]), with the paper's geometric slopes ([`alibi_slopes`]) or a slopes
//! tensor. The kernel adds `−(slope/sm_scale)·|distance|` to the raw scores of every key slice
//! (masked or not), so the row max and the one-`fma` scaling stay as they are; it composes with
//! causal masks and windows (it is [`attention_fwd_window`]'s body), not with soft-capping.
//! Registered at head dims 64 and 128 with the window kernels' tiles.
//!
//! f16 inputs ([`attention_fwd_f16`]): the same body with f16 Q, K, V and O (P rounded to f16
//! for P·V, f32 accumulation and LSE), plain or bottom-right causal, head dims 64 and 128;
//! [`forward`] dispatches on Q's dtype.
//!
//! Variable-length packed batches ([`attention_fwd_varlen`], [`forward_varlen`]): Q
//! `[total_q, Hq, D]`, K and V `[total_k, Hkv, D]` with `cu_seqlens_q/k` as FlashAttention's
//! varlen API. The kernel reads each sequence through a pointer-table entry `[1, len, heads·D]`
//! (a head is a column block of D), so every access is bounded by the sequence; the same body
//! (`forward_tiles` with `PACKED`) runs both layouts. Table views carry no alignment fact, so
//! the varlen variants compile like the general (unaligned) dense ones.
//!
//! Causal balancing: the causal and window kernels run query block `grid − 1 − block_idx.x`,
//! so the blocks with the most key tiles (the last rows, for a causal mask) launch first and
//! the short ones fill in behind them.
//!
//! Scores of `-inf` (masked, or a product past f32's range) get weight 0 wherever they fall: the
//! exponentials subtract [`safe_max`] of the running max, so a key tile that is `-inf` for a row
//! before any finite score adds nothing instead of NaN. A row with no finite score (every key
//! masked, or a block with no key tile at all) gets O = NaN and LSE = `-inf`, as `torch` gives
//! for a fully masked row.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
use crate::kernels::softmax::safe_max;
use crate::tensor_list::TensorList;
use crate::{Device, LaunchArg, ScalarArg};

/// See the module documentation. Grid: `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <bf16, 64, 16, 64, 4, false>,
        <bf16, 64, 16, 64, 4, true>,
        <f32, 64, 16, 64, 4, false>,
        <bf16, 64, 16, 64, 8, false>,
        <bf16, 64, 16, 64, 8, true>,
        <bf16, 128, 16, 32, 8, false>,
        <bf16, 128, 16, 32, 8, true>,
        <bf16, 128, 16, 64, 8, false> for [sm_80],
        <bf16, 128, 16, 64, 8, true> for [sm_80],
        <bf16, 96, 16, 64, 6, false> for [sm_80, sm_90a],
        <bf16, 96, 16, 64, 6, true> for [sm_80, sm_90a],
        <bf16, 96, 16, 32, 6, false> for [gfx90a, gfx942, gfx950],
        <bf16, 96, 16, 32, 6, true> for [gfx90a, gfx942, gfx950],
        <bf16, 192, 16, 32, 6, false> for [sm_80, sm_90a],
        <bf16, 192, 16, 32, 6, true> for [sm_80, sm_90a],
        <bf16, 192, 16, 16, 6, false> for [gfx90a, gfx942, gfx950],
        <bf16, 192, 16, 16, 6, true> for [gfx90a, gfx942, gfx950],
        <bf16, 256, 16, 16, 4, false>,
        <bf16, 256, 16, 16, 4, true>
    ),
    selftest = selftest,
    check = positive_scale_and_kv_heads,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        o: [BH, SQ, D],
        lse: [BH, SQ],
        SK >= 1,
        BHKV >= 1
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
pub fn attention_fwd<
    O: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const CAUSAL: bool,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    o: GlMut<O, 3>,
    lse: GlMut<f32, 2>,
    sm_scale: Scalar<f32>,
) {
    // No window and no cap: their arguments are never read.
    forward_tiles::<bf16, O, D, R, KV, WARPS, CAUSAL, false, false, false>(
        q,
        k,
        v,
        o,
        lse,
        sm_scale,
        lit(0),
        lit(0),
        lit(1.0),
        None,
    );
}

/// [`attention_fwd`] for f16 Q, K, V and O (f32 accumulation and LSE, as the bf16 kernel):
/// plain or causal (bottom-right), GQA/MQA, head dims 64 and 128 ([`F16_HEAD_DIMS`]; the tiles
/// of the bf16 variants). [`forward`] runs it for f16 inputs. Grid:
/// `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <64, 16, 64, 8, false>,
        <64, 16, 64, 8, true>,
        <128, 16, 32, 8, false>,
        <128, 16, 32, 8, true>
    ),
    check = positive_scale_and_kv_heads,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        o: [BH, SQ, D],
        lse: [BH, SQ],
        SK >= 1,
        BHKV >= 1
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
pub fn attention_fwd_f16<
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const CAUSAL: bool,
>(
    q: Gl<f16, 3>,
    k: Gl<f16, 3>,
    v: Gl<f16, 3>,
    o: GlMut<f16, 3>,
    lse: GlMut<f32, 2>,
    sm_scale: Scalar<f32>,
) {
    forward_tiles::<f16, f16, D, R, KV, WARPS, CAUSAL, false, false, false>(
        q,
        k,
        v,
        o,
        lse,
        sm_scale,
        lit(0),
        lit(0),
        lit(1.0),
        None,
    );
}

/// The head dims [`forward`] runs with f16 inputs.
pub const F16_HEAD_DIMS: [usize; 2] = [64, 128];

/// [`attention_fwd`] with a sliding window (`window_left`, `window_right`, around the
/// bottom-right diagonal; see the module documentation) and, with `SOFTCAP`, logit soft-capping
/// by `softcap` (> 0; not read without `SOFTCAP`). Causal is `window_right = 0` with an
/// unbounded left (`i32::MAX`). Lengths are limited to `seq_q + seq_kv < 2³⁰` so that the
/// window arithmetic stays in i32. Grid: `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <bf16, 64, 16, 32, 4, false>,
        <bf16, 64, 16, 32, 4, true>,
        <bf16, 128, 16, 32, 8, false>,
        <bf16, 128, 16, 32, 8, true>
    ),
    check = window_arguments::<SOFTCAP>,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        o: [BH, SQ, D],
        lse: [BH, SQ],
        SK >= 1,
        BHKV >= 1,
        SQ + SK < (1 << 30)
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd_window<
    O: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const SOFTCAP: bool,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    o: GlMut<O, 3>,
    lse: GlMut<f32, 2>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    softcap: Scalar<f32>,
) {
    forward_tiles::<bf16, O, D, R, KV, WARPS, false, true, SOFTCAP, false>(
        q,
        k,
        v,
        o,
        lse,
        sm_scale,
        window_left,
        window_right,
        softcap,
        None,
    );
}

/// [`attention_fwd_window`] with ALiBi: the score of query row i and key j gets the bias
/// `−slope·|i + seq_kv − seq_q − alibi_shift − j|` after the scale, `slope = slopes[head]`
/// (`slopes` `[bh_q]`, f32, one per query head of the flattened batch·heads). With
/// `alibi_shift = 0` the distance is to the bottom-right diagonal (FlashAttention's
/// `alibi_slopes`, non-causal form); with `seq_kv − seq_q` to the top-left one (`|i − j|`).
/// The window arguments are [`attention_fwd_window`]'s; there is no soft cap. The bias goes into
/// the raw scores as `−(slope/sm_scale)·|dist|`, so the row max and the one-`fma` scaling are
/// unchanged. Lengths: `seq_q + seq_kv < 2³⁰`, `|alibi_shift| < 2³⁰`. Grid:
/// `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(<bf16, 64, 16, 32, 4>, <bf16, 128, 16, 32, 8>),
    check = alibi_arguments,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        o: [BH, SQ, D],
        lse: [BH, SQ],
        slopes: [BH],
        SK >= 1,
        BHKV >= 1,
        SQ + SK < (1 << 30)
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd_alibi<
    O: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    o: GlMut<O, 3>,
    lse: GlMut<f32, 2>,
    slopes: Gl<f32, 1>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    alibi_shift: Scalar<i32>,
) {
    let slope: Scalar<f32> = load(slopes.at(block_idx_y()));
    forward_tiles::<bf16, O, D, R, KV, WARPS, false, true, false, false>(
        q,
        k,
        v,
        o,
        lse,
        sm_scale,
        window_left,
        window_right,
        lit(1.0),
        Some((slope, alibi_shift)),
    );
}

/// ALiBi's bias in raw-score units for a `R`×`C` tile whose element (r, c) is at distance
/// `off + r − c` (rows minus columns) from its row's ALiBi diagonal (or `off + c − r` with
/// `TRANSPOSED`, for key-major tiles): `−coef·|distance|`, `coef = slope / sm_scale`.
pub(crate) fn alibi_bias<const R: usize, const C: usize, const TRANSPOSED: bool>(
    off: Scalar<i32>,
    coef: Scalar<f32>,
) -> Rt<f32, R, C> {
    let (rows, cols): (Rt<f32, R, C>, Rt<f32, R, C>) = (iota_rows(), iota_cols());
    let dist = match TRANSPOSED {
        false => rows - cols,
        true => cols - rows,
    };
    -((dist + off.cast::<f32>()).abs() * coef)
}

/// [`attention_fwd_window`] over a variable-length packed batch: sequence b's queries are rows
/// `cu_seqlens_q[b] .. cu_seqlens_q[b+1]` of a packed Q `[total_q, Hq, D]`, its keys and values
/// rows `cu_seqlens_k[b] ..` of K and V `[total_k, Hkv, D]` (FlashAttention's varlen layout).
/// Each table holds one entry per sequence, the sequence's rows as `[1, len, heads·D]` (Q, K,
/// V, O) and its LSE `[Hq, len_q]`, so every access is bounded by the sequence: loads past its
/// end read 0 and stores there are dropped ([`forward_varlen`] builds the tables from the
/// `cu_seqlens`). The window (`window_left`, `window_right`) is around each sequence's
/// diagonal: bottom-right (`i + len_k − len_q`), or top-left (`i`) when `top_left` is 1.
/// With `SOFTCAP`, scores are capped by `softcap` (> 0). Every sequence needs
/// `len_q + len_k < 2³⁰`. Grid: `[⌈max_seqlen_q / (WARPS·R)⌉, Hq, batch]`; blocks past a
/// sequence's rows do no key tile, and the last query blocks of a sequence launch first.
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <bf16, 64, 16, 32, 4, false>,
        <bf16, 64, 16, 32, 4, true>,
        <bf16, 128, 16, 32, 8, false>,
        <bf16, 128, 16, 32, 8, true>
    ),
    check = varlen_arguments::<SOFTCAP>,
    shapes(q: [B, 4], k: [B, 4], v: [B, 4], o: [B, 4], lse: [B, 3])
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_fwd_varlen<
    O: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const SOFTCAP: bool,
>(
    q: GlTable<bf16, 3>,
    k: GlTable<bf16, 3>,
    v: GlTable<bf16, 3>,
    o: GlTableMut<O, 3>,
    lse: GlTableMut<f32, 2>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    top_left: Scalar<i32>,
    softcap: Scalar<f32>,
) {
    let b = block_idx_z();
    let (qb, kb) = (q.view(b), k.view(b));
    let (wl, wr) = varlen_window(qb.dim(1), kb.dim(1), window_left, window_right, top_left);
    forward_tiles::<bf16, O, D, R, KV, WARPS, false, true, SOFTCAP, true>(
        qb,
        kb,
        v.view(b),
        o.view(b),
        lse.view(b),
        sm_scale,
        wl,
        wr,
        softcap,
        None,
    );
}

/// A sequence's window bounds around its bottom-right diagonal, from bounds around the diagonal
/// `top_left` picks (1: row i's diagonal is key i, `seq_kv − seq_q` before the bottom-right
/// one). Bounds are clamped to `±(seq_q + seq_kv)` first (no row's keys change), so the shift
/// stays in i32 for `seq_q + seq_kv < 2³⁰`.
#[crate::func]
pub fn varlen_window(
    seq_q: Scalar<i32>,
    seq_kv: Scalar<i32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    top_left: Scalar<i32>,
) -> (Scalar<i32>, Scalar<i32>) {
    let span = seq_q + seq_kv;
    let shift = top_left * (seq_kv - seq_q);
    (
        window_left.min(span).max(-span) + shift,
        window_right.min(span).max(-span) - shift,
    )
}

/// The body of [`attention_fwd`] (`CAUSAL`, no window), [`attention_fwd_window`] (`WINDOW`)
/// and [`attention_fwd_varlen`] (`WINDOW`, `PACKED`), for inputs of dtype `T`: see the module
/// documentation. Dense views are `[heads, seq, D]` (a head is a matrix, tile row 0 of
/// dimension 2); `PACKED` views are one sequence's `[1, seq, heads·D]` (a head is a column
/// block of D).
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn forward_tiles<
    T: RegDtype + MmaPair<T>,
    O: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const CAUSAL: bool,
    const WINDOW: bool,
    const SOFTCAP: bool,
    const PACKED: bool,
>(
    q: Gl<T, 3>,
    k: Gl<T, 3>,
    v: Gl<T, 3>,
    o: GlMut<O, 3>,
    lse: GlMut<f32, 2>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    softcap: Scalar<f32>,
    alibi: Option<(Scalar<f32>, Scalar<i32>)>,
) {
    assert!(
        D % 16 == 0 && KV % 16 == 0,
        "attention: the head dim {D} and the key tile {KV} must be multiples of 16"
    );
    let rings = KvRings::<T, D, KV> {
        k: Ring::alloc(),
        v: Ring::alloc(),
    };
    // Past head dim 128, or beside a key tile of more than WHOLE_TILE_ELEMS, Q does not stay
    // in registers beside O (D/2 more per thread) and the scores: each warp keeps its Q tile
    // in shared memory and reads it one k16 slice at a time, as FlashAttention-2 does at large
    // head dims.
    let q_shared: Option<SharedArray<St<T, R, D>, WARPS>> =
        if D > Q_IN_REGISTERS_MAX || KV * D > WHOLE_TILE_ELEMS {
            Some(alloc_shared())
        } else {
            None
        };
    let (q_block0, head) = (block_idx_x(), block_idx_y());
    let mut q_block = q_block0;
    if CAUSAL || WINDOW {
        // Causal balancing: blocks start roughly in launch order, and a causal block's work
        // grows with its query rows, so the last query block launches first and the shortest
        // ones fill in behind it instead of leaving SMs idle at the end.
        q_block = grid_dim_x() - 1 - q_block;
    }
    // GQA/MQA: the K/V head of this query head (see the module documentation): heads are
    // dimension 0 of dense views and column blocks of D in dimension 2 of packed ones.
    let kv_head = match PACKED {
        true => head / (q.dim(2) / k.dim(2)),
        false => head / (q.dim(0) / k.dim(0)),
    };
    // Where each head's matrix lies in the views (dimension 0, column tile of D).
    let (q_z, q_c) = head_place(PACKED, head, 1, 0);
    let (kv_z, kv_c) = head_place(PACKED, kv_head, 1, 0);
    let q_tile = q_block * WARPS as i32 + warp_idx();
    let q_row0 = q_tile * R as i32;
    let (seq_q, seq_kv) = (q.dim(1), k.dim(1));
    let mut kv_tiles = ceil_div(seq_kv, KV);
    let mut first: Scalar<i32> = lit(0);
    let (mut diag0, mut block_row0, mut block_last) = (first, first, first);
    let (mut left, mut right) = (first, first);
    if CAUSAL || WINDOW {
        // The key on the diagonal of the warp's first row, q_row0 + seq_kv − seq_q
        // (bottom-right). A warp wholly past seq_q takes seq_kv (its rows are not stored): the
        // sum stays in i32.
        diag0 = (q_row0 - seq_q).min(0) + seq_kv;
        // The block's first and last rows that exist; the bounds below are the block's, not
        // the warp's: every warp takes part in each tile's copies and barriers.
        block_row0 = q_block * (WARPS * R) as i32;
        block_last = block_row0 + (seq_q - 1 - block_row0).min((WARPS * R - 1) as i32);
    }
    if CAUSAL {
        // Key tiles past the block's last row's diagonal are masked for every row of the block
        // (none at all when that diagonal is before key 0). block_last − seq_q < 0: no wrap.
        kv_tiles = kv_tiles.min(ceil_div(block_last - seq_q + seq_kv + 1, KV).max(0));
    }
    if WINDOW {
        // A left bound ≥ seq_kv reaches before key 0 from every row, one below −(seq_q + seq_kv)
        // past the last key; a right bound ≥ seq_q reaches past the last key, one below −seq_kv
        // before key 0: clamping to those keeps every row's keys and the sums in i32
        // (seq_q + seq_kv < 2³⁰ by the contract).
        left = window_left.min(seq_kv).max(-(seq_q + seq_kv));
        right = window_right.min(seq_q).max(-seq_kv);
        first = (block_row0 - seq_q + seq_kv - left).max(0) / KV as i32;
        let end = ceil_div(block_last - seq_q + seq_kv + right + 1, KV);
        kv_tiles = kv_tiles.min(end).max(first);
    }
    if PACKED {
        // Blocks of the grid's `max_seqlen_q` past this sequence's rows have nothing to do
        // (their loads read 0, their stores are dropped): no key tile.
        if block_row0.ge(seq_q) {
            kv_tiles = first;
        }
    }
    // The tiles `lo .. hi` need no mask for any row of the block: every key is before seq_kv,
    // at or before the first row's right edge (its diagonal, plus `right` with a window) and,
    // with a window, at or after the last row's left edge. The tiles before and after them
    // are masked (few: those crossing an edge).
    let mut lo = first;
    let mut hi = seq_kv / KV as i32;
    if CAUSAL {
        hi = hi.min((block_row0 - seq_q + seq_kv + 1).max(0) / KV as i32);
    }
    if WINDOW {
        lo = ceil_div((block_last - seq_q + seq_kv - left).max(0), KV).max(first);
        hi = hi.min((block_row0 - seq_q + seq_kv + right + 1).max(0) / KV as i32);
    }
    lo = lo.min(kv_tiles);
    hi = hi.min(kv_tiles).max(lo);
    // K and V of the first tile, one copy group each; the loop keeps one group in flight.
    rings.k.copy(first & 1, k, (kv_z, first, kv_c));
    copy_commit();
    rings.v.copy(first & 1, v, (kv_z, first, kv_c));
    copy_commit();
    // Q in k16 slices, the A operands of S = Q·Kᵀ: in registers for the whole loop, or in this
    // warp's shared tile (written here; the barrier of the first tile orders it before the
    // loop's reads).
    let mut q_frags: Vec<Rt<T, R, 16>> = Vec::new();
    let mut q_tile_shared: Option<St<T, R, D>> = None;
    match q_shared {
        Some(s) => {
            let own = s.at(warp_idx());
            let q_whole: Rt<T, R, D> = load(q.tile(q_z, q_tile, q_c));
            store(own, q_whole);
            q_tile_shared = Some(own);
        }
        None => {
            for j in 0..D / 16 {
                let (z, c) = head_place(PACKED, head, D / 16, j);
                q_frags.push(load(q.tile(z, q_tile, c)));
            }
        }
    }
    // The factor from the scores that the row max sees to the exp2 domain: with a cap the
    // scores are tanh values and the cap multiplies them.
    let mut scale_log2 = sm_scale * std::f32::consts::LOG2_E;
    if SOFTCAP {
        scale_log2 = softcap * std::f32::consts::LOG2_E;
    }
    let mut at = TileAt {
        kv_z,
        kv_c,
        seq_kv,
        diag0,
        left,
        right,
        scale_log2,
        cap_scale: sm_scale / softcap,
        alibi: None,
    };
    if let Some((slope, shift)) = alibi {
        // ALiBi: the key on the ALiBi diagonal of the warp's first row, and the slope in
        // raw-score units.
        at.alibi = Some((diag0 - shift, slope / sm_scale));
    }

    let mut m: Rv<f32, R> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, R> = zeros();
    let mut acc: Rt<f32, R, D> = zeros();
    // Tiles crossing the left edge of a window (none without one).
    for kt in range(first, lo) {
        (m, l, acc) = kv_tile::<T, D, R, KV, true, CAUSAL, WINDOW, SOFTCAP>(
            (k, v),
            &rings,
            at,
            kt,
            (&q_frags, q_tile_shared),
            (m, l, acc),
        );
    }
    // The interior, unmasked: the loop the time goes to.
    for kt in range(lo, hi) {
        (m, l, acc) = kv_tile::<T, D, R, KV, false, CAUSAL, WINDOW, SOFTCAP>(
            (k, v),
            &rings,
            at,
            kt,
            (&q_frags, q_tile_shared),
            (m, l, acc),
        );
    }
    // The last tile (keys past seq_kv), and those crossing the diagonal or a window's right
    // edge.
    for kt in range(hi, kv_tiles) {
        (m, l, acc) = kv_tile::<T, D, R, KV, true, CAUSAL, WINDOW, SOFTCAP>(
            (k, v),
            &rings,
            at,
            kt,
            (&q_frags, q_tile_shared),
            (m, l, acc),
        );
    }
    // The copies of the tile after the last: none outstanding when the block ends.
    copy_wait(0);
    store(o.tile(q_z, q_tile, q_c), div_row(acc, l).cast::<O>());
    store(
        lse.chunk(head, q_tile),
        (m + l.log2()) * std::f32::consts::LN_2,
    );
}

/// The largest head dim whose Q tile stays in registers for the whole key loop (with a key
/// tile of at most [`WHOLE_TILE_ELEMS`]); larger ones read it from shared memory (see
/// [`forward_tiles`]).
const Q_IN_REGISTERS_MAX: usize = 128;

/// An index of a view that is known while tracing (emitted where it is used, as a literal
/// index is) or computed at run time.
#[derive(Clone, Copy)]
pub(crate) enum HeadAt {
    Known(i32),
    Runtime(Scalar<i32>),
}

impl Idx for HeadAt {
    fn idx(self) -> crate::ir::Value {
        match self {
            HeadAt::Known(n) => n.idx(),
            HeadAt::Runtime(s) => s.idx(),
        }
    }
}

/// Where column tile `j` of head `h` lies in a `[heads, seq, D]` view (`(h, j)`) or, `packed`,
/// in a `[1, seq, heads·D]` one (`(0, h·per_head + j)`), with `per_head` tiles per head.
pub(crate) fn head_place(
    packed: bool,
    h: Scalar<i32>,
    per_head: usize,
    j: usize,
) -> (HeadAt, HeadAt) {
    match packed {
        true => (
            HeadAt::Known(0),
            HeadAt::Runtime(h * per_head as i32 + j as i32),
        ),
        false => (HeadAt::Runtime(h), HeadAt::Known(j as i32)),
    }
}

/// The two-slot shared rings of K and V tiles.
struct KvRings<T: RegDtype, const D: usize, const KV: usize> {
    k: Ring<T, D, KV>,
    v: Ring<T, D, KV>,
}

/// One two-slot ring of key tiles of KV×D: whole tiles, or, past [`WHOLE_TILE_ELEMS`] elements
/// per tile, `KV/16` rings of 16-key chunks (chunk i of a slot holds keys `16·i ..` of its
/// tile), each chunk one copy. The per-thread addresses of a copy are the same for every
/// chunk, so a large tile costs the registers of a small copy where the views carry no
/// alignment facts and copies go element by element: hd128 with 64 keys as one copy keeps
/// twice the element offsets live through the key loop and spills on sm_80.
enum Ring<T: RegDtype, const D: usize, const KV: usize> {
    Whole(SharedArray<St<T, KV, D>, 2>),
    Chunks(Vec<SharedArray<St<T, 16, D>, 2>>),
}

/// The largest key tile, in elements, that [`Ring`] copies whole (a 4096-element bf16 tile is
/// one 16-byte copy per thread of a 256-thread block).
const WHOLE_TILE_ELEMS: usize = 4096;

impl<T: RegDtype, const D: usize, const KV: usize> Ring<T, D, KV> {
    fn alloc() -> Self {
        match KV * D > WHOLE_TILE_ELEMS {
            true => Ring::Chunks((0..KV / 16).map(|_| alloc_shared()).collect()),
            false => Ring::Whole(alloc_shared()),
        }
    }

    /// Starts the copies of key tile `kt` of `src` (at `(z, kt, c)` in tiles of KV×D) into
    /// `slot`.
    fn copy(&self, slot: Scalar<i32>, src: Gl<T, 3>, (z, kt, c): (HeadAt, Scalar<i32>, HeadAt)) {
        match self {
            Ring::Whole(r) => copy_start(r.at(slot), src.tile(z, kt, c)),
            Ring::Chunks(rs) => {
                for (i, r) in rs.iter().enumerate() {
                    let row_tile = kt * rs.len() as i32 + i as i32;
                    copy_start(r.at(slot), src.tile(z, row_tile, c));
                }
            }
        }
    }

    /// Fragment `(i, j)` (16 keys `16·i ..`, column tile j) of the tile in `slot`.
    fn tile(&self, slot: Scalar<i32>, i: usize, j: usize) -> StAt<T> {
        match self {
            Ring::Whole(r) => r.at(slot).tile(i as i32, j as i32),
            Ring::Chunks(rs) => rs[i].at(slot).tile(0, j as i32),
        }
    }
}

/// What every key tile of a warp needs besides its index (see [`forward_tiles`]).
#[derive(Clone, Copy)]
struct TileAt {
    /// The K/V head's matrix: dimension 0 and column tile of D of the K and V views.
    kv_z: HeadAt,
    kv_c: HeadAt,
    seq_kv: Scalar<i32>,
    /// The key on the diagonal of the warp's first row.
    diag0: Scalar<i32>,
    /// The window's bounds, clamped (read with `WINDOW` only).
    left: Scalar<i32>,
    right: Scalar<i32>,
    /// From the scores the row max sees to the exp2 domain.
    scale_log2: Scalar<f32>,
    /// `sm_scale / softcap` (read with `SOFTCAP` only; LLVM hoists the quotient).
    cap_scale: Scalar<f32>,
    /// With ALiBi: the key on the ALiBi diagonal of the warp's first row, and the slope in
    /// raw-score units (`slope / sm_scale`).
    alibi: Option<(Scalar<i32>, Scalar<f32>)>,
}

/// Key tile `kt` of one warp's online softmax: waits for the tile's K and V, starts the next
/// tile's copies into the slots every warp is done with, and returns the running row max `m`,
/// row sum `l` and output `acc` after the tile. The scores are computed in slices of 16 keys
/// and K and V read one 16×16 (K) or 16×D (V) fragment at a time right before its `mma`, so
/// that only a slice's fragments are live beside Q, the scores and O. With `MASKED` the
/// scores of keys past seq_kv, after a row's diagonal (`CAUSAL`) or outside its window
/// (`WINDOW`) are `-inf`; without, the caller guarantees there are none.
///
/// (Plain Rust, traced inline: the tile's ops land in the caller's loop.)
#[allow(clippy::too_many_arguments)]
fn kv_tile<
    T: RegDtype + MmaPair<T>,
    const D: usize,
    const R: usize,
    const KV: usize,
    const MASKED: bool,
    const CAUSAL: bool,
    const WINDOW: bool,
    const SOFTCAP: bool,
>(
    (k, v): (Gl<T, 3>, Gl<T, 3>),
    rings: &KvRings<T, D, KV>,
    at: TileAt,
    kt: Scalar<i32>,
    (q_frags, q_shared): (&[Rt<T, R, 16>], Option<St<T, R, D>>),
    (m, l, acc): (Rv<f32, R>, Rv<f32, R>, Rt<f32, R, D>),
) -> (Rv<f32, R>, Rv<f32, R>, Rt<f32, R, D>) {
    let (cur, next) = (kt & 1, (kt + 1) & 1);
    // K of this tile has landed (V of this tile may be in flight); after the barrier every
    // warp is done with the previous tile's K, whose slot takes the next tile's.
    copy_wait(1);
    barrier();
    rings.k.copy(next, k, (at.kv_z, kt + 1, at.kv_c));
    copy_commit();
    let kv0 = kt * KV as i32;
    // Raw scores of keys kv0 + 16·i ..: the scale goes into the exponent's argument below, one
    // `fma` per score (`t·scale_log2 − shift`), and into the row max once per row; for a
    // scale > 0, max(t)·scale rounds to exactly max(t·scale), and a masked −inf stays −inf.
    let mut t: Vec<Rt<f32, R, 16>> = (0..KV / 16).map(|_| zeros()).collect();
    match q_shared {
        // Head-dim slices outermost: each Q slice is read from shared memory once per tile.
        Some(qs) => {
            for j in 0..D / 16 {
                let qj: Rt<T, R, 16> = load(qs.tile(0, j as i32));
                for (i, s) in t.iter_mut().enumerate() {
                    let kf: Rt<T, 16, 16> = load(rings.k.tile(cur, i, j));
                    *s = mma_abt(*s, qj, kf);
                }
            }
        }
        // Key slices outermost: one slice's scores accumulate at a time.
        None => {
            for (i, s) in t.iter_mut().enumerate() {
                for (j, qj) in q_frags.iter().enumerate() {
                    let kf: Rt<T, 16, 16> = load(rings.k.tile(cur, i, j));
                    *s = mma_abt(*s, *qj, kf);
                }
            }
        }
    }
    for (i, s) in t.iter_mut().enumerate() {
        if SOFTCAP {
            // Capped before masking: tanh(−inf) would be −1, a finite score.
            *s = (*s * at.cap_scale).tanh();
        }
        if let Some((diag0, coef)) = at.alibi {
            // Row r of the slice is at distance diag0 + r − (kv0 + 16·i + c) from its ALiBi
            // diagonal; a masked −inf stays −inf.
            let off = diag0 - (kv0 + (16 * i) as i32);
            *s = *s + alibi_bias::<R, 16, false>(off, coef);
        }
        if MASKED {
            let c0 = kv0 + (16 * i) as i32;
            *s = mask_cols(*s, c0, at.seq_kv, f64::NEG_INFINITY);
            if CAUSAL {
                *s = mask_causal(*s, at.diag0, c0, f64::NEG_INFINITY);
            }
            if WINDOW {
                // Keys after row r's right edge diag0 + right + r, before its left edge
                // diag0 − left + r.
                *s = mask_causal(*s, at.diag0 + at.right, c0, f64::NEG_INFINITY);
                *s = mask_anticausal(*s, at.diag0 - at.left, c0, f64::NEG_INFINITY);
            }
        }
    }
    // Row max and sum: elementwise over the slices first, so that each row is reduced across
    // lanes once per tile.
    let t_max = t[1..].iter().fold(t[0], |a, s| a.max(*s));
    let m_new = m.max(row_max(t_max) * at.scale_log2);
    let shift = safe_max::<R>(m_new);
    let alpha = (m - shift).exp2();
    let p: Vec<Rt<f32, R, 16>> = t
        .iter()
        .map(|s| sub_row(*s * at.scale_log2, shift).exp2())
        .collect();
    let p_sum = p[1..].iter().fold(p[0], |a, pi| a + *pi);
    let l = l * alpha + row_sum(p_sum);
    // V of this tile has landed (the next K may be in flight); the previous V's slot is free.
    copy_wait(1);
    barrier();
    rings.v.copy(next, v, (at.kv_z, kt + 1, at.kv_c));
    copy_commit();
    let mut acc = mul_row(acc, alpha);
    for (i, pi) in p.iter().enumerate() {
        let vf: Rt<T, 16, D, Col> = load(rings.v.tile(cur, i, 0));
        acc = mma_ab(acc, pi.cast::<T>(), vf);
    }
    (m_new, l, acc)
}

/// The launch grid for `bh` heads of `seq_q` queries, `block_rows = WARPS·R`.
pub fn grid(bh: usize, seq_q: usize, block_rows: usize) -> [u32; 3] {
    [
        tiles(seq_q, block_rows),
        u32::try_from(bh).unwrap_or(u32::MAX),
        1,
    ]
}

/// `sm_scale` must be positive and finite: the kernel takes the row max over the raw scores
/// and scales it once per row (one FMA per score), which picks the wrong max for a negative
/// scale and gives `-inf · 0 = NaN` for masked keys at zero.
pub fn positive_scale(args: &[LaunchArg]) -> Result<(), String> {
    match args.get(5) {
        Some(LaunchArg::Scalar(_, s)) if s.is_finite() && *s > 0.0 => Ok(()),
        Some(LaunchArg::Scalar(_, s)) => Err(format!(
            "`sm_scale` is {s}, but the attention kernel needs a positive finite scale (e.g. 1/√D)"
        )),
        _ => Err("`sm_scale` (argument 5) must be an f32 scalar".into()),
    }
}

/// [`positive_scale`] and GQA's head counts: `bh_kv` (K's and V's first dimension) must divide
/// `bh_q` (Q's), which holds exactly when `Hkv` divides `Hq` (`bh = batch·heads`).
pub fn positive_scale_and_kv_heads(args: &[LaunchArg]) -> Result<(), String> {
    positive_scale(args)?;
    kv_heads_divide(args)
}

/// The checks of [`attention_fwd_window`]: those of [`attention_fwd`] and, with `SOFTCAP`, a
/// positive finite `softcap` (argument 8).
pub fn window_arguments<const SOFTCAP: bool>(args: &[LaunchArg]) -> Result<(), String> {
    positive_scale_and_kv_heads(args)?;
    if !SOFTCAP {
        return Ok(());
    }
    match args.get(8) {
        Some(LaunchArg::Scalar(_, c)) if c.is_finite() && *c > 0.0 => Ok(()),
        Some(LaunchArg::Scalar(_, c)) => Err(format!(
            "`softcap` is {c}, but soft-capping needs a positive finite cap (e.g. 50)"
        )),
        _ => Err("`softcap` (argument 8) must be an f32 scalar".into()),
    }
}

/// The checks of [`attention_fwd_varlen`]: a positive finite `sm_scale` (argument 5) and, with
/// `SOFTCAP`, `softcap` (argument 9). The tables' entries are checked where they are built
/// ([`forward_varlen`]).
pub fn varlen_arguments<const SOFTCAP: bool>(args: &[LaunchArg]) -> Result<(), String> {
    positive_scale(args)?;
    if !SOFTCAP {
        return Ok(());
    }
    match args.get(9) {
        Some(LaunchArg::Scalar(_, c)) if c.is_finite() && *c > 0.0 => Ok(()),
        Some(LaunchArg::Scalar(_, c)) => Err(format!(
            "`softcap` is {c}, but soft-capping needs a positive finite cap (e.g. 50)"
        )),
        _ => Err("`softcap` (argument 9) must be an f32 scalar".into()),
    }
}

/// The checks of [`attention_fwd_alibi`]: a positive finite `sm_scale` (argument 6; the bias
/// is divided by it) and K/V heads dividing the query heads.
pub fn alibi_arguments(args: &[LaunchArg]) -> Result<(), String> {
    match args.get(6) {
        Some(LaunchArg::Scalar(_, s)) if s.is_finite() && *s > 0.0 => {}
        Some(LaunchArg::Scalar(_, s)) => {
            return Err(format!(
                "`sm_scale` is {s}, but the attention kernel needs a positive finite scale (e.g. \
                 1/√D)"
            ))
        }
        _ => return Err("`sm_scale` (argument 6) must be an f32 scalar".into()),
    }
    kv_heads_divide(args)
}

fn kv_heads_divide(args: &[LaunchArg]) -> Result<(), String> {
    let heads = |i: usize| args.get(i).and_then(|a| a.shape().first().copied());
    match (heads(0), heads(1)) {
        (Some(bh_q), Some(bh_kv)) if bh_kv >= 1 && bh_q % bh_kv == 0 => Ok(()),
        (Some(bh_q), Some(bh_kv)) => Err(format!(
            "`k` and `v` have {bh_kv} heads (batch·heads) and `q` {bh_q}: with GQA/MQA the K/V \
             heads must divide the query heads (each serves bh_q / bh_kv of them)"
        )),
        _ => Err("`q` and `k` must be tensors of rank 3".into()),
    }
}

/// Where a row's diagonal key lies when `seq_q ≠ seq_kv` (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Align {
    /// Row i's diagonal is key `i + seq_kv − seq_q` (the default, as FlashAttention ≥ 2.1).
    #[default]
    BottomRight,
    /// Row i's diagonal is key i (as `torch`'s `is_causal=True`).
    TopLeft,
}

/// The `alibi_shift` argument of [`attention_fwd_alibi`] for an alignment: 0 (bottom-right) or
/// `seq_kv − seq_q` (top-left), saturated to i32 (the kernels refuse such lengths anyway).
pub fn alibi_shift(align: Align, seq_q: usize, seq_kv: usize) -> i32 {
    match align {
        Align::BottomRight => 0,
        Align::TopLeft => {
            let shift = seq_kv as i64 - seq_q as i64;
            shift.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        }
    }
}

/// What [`forward`] computes beyond plain attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForwardOptions {
    /// The scale of the scores, positive (usually `1/√D`).
    pub sm_scale: f32,
    /// Row i sees no key after its diagonal.
    pub causal: bool,
    /// Where the diagonal lies, for `causal` and the window.
    pub align: Align,
    /// Row i sees no key before `diagonal − left` (`None`: no bound).
    pub window_left: Option<u32>,
    /// Row i sees no key after `diagonal + right` (`None`: no bound; `causal` makes it 0).
    pub window_right: Option<u32>,
    /// Scores become `cap·tanh(score / cap)` before the softmax (positive).
    pub softcap: Option<f32>,
    /// ALiBi: the score of row i and key j gets `−slope·|diagonal(i) − j|` (after the scale),
    /// the diagonal per `align` (see [`Alibi`]). [`forward_with_slopes`] takes a slopes tensor
    /// instead.
    pub alibi: Option<Alibi>,
}

/// ALiBi's slopes (Press et al., "Train Short, Test Long"), for [`ForwardOptions::alibi`]. The
/// bias of query row i and key j is `−slope·|i + seq_kv − seq_q − j|` with the default
/// bottom-right alignment: FlashAttention's `alibi_slopes` convention (its non-causal form;
/// with a causal mask FlashAttention adds `slope·j` instead, which differs by a constant per
/// row: the same O, an LSE shifted by that constant). With [`Align::TopLeft`] the distance is
/// `|i − j|`, the original paper's (and torch models') up to the same per-row constant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Alibi {
    /// The paper's geometric slopes ([`alibi_slopes`]) for `heads` query heads per batch
    /// element: query head h of the flattened batch·heads gets slope `h % heads`.
    Standard { heads: usize },
    /// The same slope for every head.
    Uniform(f32),
}

impl Alibi {
    /// The slope of each of `bh_q` flattened query heads, or why there is none.
    pub fn per_head(&self, bh_q: usize) -> Result<Vec<f32>, String> {
        match *self {
            Alibi::Standard { heads } if heads >= 1 && bh_q % heads == 0 => {
                let slopes = alibi_slopes(heads);
                Ok((0..bh_q).map(|h| slopes[h % heads]).collect())
            }
            Alibi::Standard { heads } => Err(format!(
                "ALiBi for {heads} heads per batch element, but `q` has {bh_q} heads \
                 (batch·heads): the heads must divide it"
            )),
            Alibi::Uniform(s) if s.is_finite() => Ok(vec![s; bh_q]),
            Alibi::Uniform(s) => Err(format!("the ALiBi slope is {s}; it must be finite")),
        }
    }
}

/// ALiBi's standard slopes for `heads` heads, as the paper's reference code: for a power of two
/// n, head h (from 0) gets `2^(−8(h+1)/n)`; otherwise the n' = 2^⌊log₂ n⌋ slopes of n' heads,
/// then every other slope of 2n' heads (the first n − n').
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    fn power_of_two(n: usize) -> Vec<f64> {
        (0..n)
            .map(|h| (-8.0 * (h + 1) as f64 / n as f64).exp2())
            .collect()
    }
    if heads == 0 {
        return Vec::new();
    }
    let n = 1usize << heads.ilog2();
    let mut slopes = power_of_two(n);
    if n < heads {
        slopes.extend(power_of_two(2 * n).into_iter().step_by(2).take(heads - n));
    }
    slopes.into_iter().map(|s| s as f32).collect()
}

impl ForwardOptions {
    /// Plain attention with the given scale.
    pub fn new(sm_scale: f32) -> ForwardOptions {
        ForwardOptions {
            sm_scale,
            causal: false,
            align: Align::BottomRight,
            window_left: None,
            window_right: None,
            softcap: None,
            alibi: None,
        }
    }

    /// The keys row i sees, `lo ..= hi` (before clipping to `0 .. seq_kv`), from the definition:
    /// the diagonal per `align`, the window around it, `causal` as a right bound of 0.
    pub fn key_range(&self, i: usize, seq_q: usize, seq_kv: usize) -> (i64, i64) {
        let diag = match self.align {
            Align::BottomRight => i as i64 + seq_kv as i64 - seq_q as i64,
            Align::TopLeft => i as i64,
        };
        let unbounded = (seq_q + seq_kv) as i64;
        let left = self.window_left.map_or(unbounded, i64::from);
        let mut right = self.window_right.map_or(unbounded, i64::from);
        if self.causal {
            right = right.min(0);
        }
        (diag - left, diag + right)
    }

    /// Whether these options need [`attention_fwd_window`] (a window, a cap, or top-left
    /// causal alignment with `seq_q ≠ seq_kv`) rather than [`attention_fwd`].
    pub fn needs_window_kernel(&self, seq_q: usize, seq_kv: usize) -> bool {
        !(self.window_left.is_none()
            && self.window_right.is_none()
            && self.softcap.is_none()
            && (!self.causal || self.align == Align::BottomRight || seq_q == seq_kv))
    }

    /// `window_left` and `window_right` of [`attention_fwd_window`] (around the bottom-right
    /// diagonal) for these options.
    pub fn kernel_window(&self, seq_q: usize, seq_kv: usize) -> (i32, i32) {
        // Both bounds shifted from row 0's diagonal to its bottom-right one; the kernel clamps
        // values past the lengths, so the saturation to i32 changes no row's keys.
        let diag = seq_kv as i64 - seq_q as i64;
        let (lo, hi) = self.key_range(0, seq_q, seq_kv);
        let sat = |x: i64| x.clamp(i64::from(i32::MIN) + 1, i64::from(i32::MAX)) as i32;
        (sat(diag - lo), sat(hi - diag))
    }
}

/// Attention with GQA, the causal alignment, a window, soft-capping and ALiBi (the
/// [`ForwardOptions`]), on `device`: Q `[bh_q, seq_q, D]`, K and V `[bh_kv, seq_kv, D]` (bf16,
/// `bh_kv` dividing `bh_q`) give O `[bh_q, seq_q, D]` (bf16) and LSE `[bh_q, seq_q]` (f32).
/// Runs [`attention_fwd`] when that computes the options (no window, no cap, bottom-right or no
/// causal mask), [`attention_fwd_alibi`] with ALiBi, [`attention_fwd_window`] otherwise. Head
/// dims: [`HEAD_DIMS`] ([`WINDOW_HEAD_DIMS`] for windows, caps and ALiBi). f16 Q, K and V give
/// an f16 O through [`attention_fwd_f16`] (plain or bottom-right causal; [`F16_HEAD_DIMS`]).
/// On an sm_90a device (GPU or emulator) the plain bf16 hd 64 and 128 cases run
/// [`attention_fwd_wg`](super::attention_wg::attention_fwd_wg) (warpgroup mma) instead.
pub fn forward(
    device: &Device,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    opts: &ForwardOptions,
) -> Result<(HostTensor, HostTensor), crate::Error> {
    let bh = q.shape().first().copied().unwrap_or(0);
    let slopes = match &opts.alibi {
        Some(a) => Some(a.per_head(bh).map_err(|message| crate::Error::Shape {
            kernel: "attention_fwd_alibi".into(),
            message,
        })?),
        None => None,
    };
    forward_slopes(device, (q, k, v), opts, slopes.as_deref())
}

/// [`forward`] with ALiBi slopes from a tensor (f32, `[Hq]` or `[batch, Hq]` as
/// FlashAttention's `alibi_slopes`; any `n` slopes with `n` dividing `bh_q`, query head h of
/// the flattened batch·heads taking slope `h % n`) instead of [`ForwardOptions::alibi`], which
/// must be `None`. Head dims: [`WINDOW_HEAD_DIMS`]; no soft cap with ALiBi.
pub fn forward_with_slopes(
    device: &Device,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    opts: &ForwardOptions,
    slopes: &HostTensor,
) -> Result<(HostTensor, HostTensor), crate::Error> {
    let bh = q.shape().first().copied().unwrap_or(0);
    let per_head = slopes_per_head(slopes, bh, opts).map_err(|message| crate::Error::Shape {
        kernel: "attention_fwd_alibi".into(),
        message,
    })?;
    forward_slopes(device, (q, k, v), opts, Some(&per_head))
}

/// One ALiBi slope per flattened query head (`bh_q`) from a slopes tensor, or what is wrong.
pub(crate) fn slopes_per_head(
    slopes: &HostTensor,
    bh_q: usize,
    opts: &ForwardOptions,
) -> Result<Vec<f32>, String> {
    if opts.alibi.is_some() {
        return Err("ALiBi slopes come either from the options or from a tensor, not both".into());
    }
    let n: usize = slopes.shape().iter().product();
    if slopes.dtype() != ScalarType::F32
        || !(1..=2).contains(&slopes.shape().len())
        || n == 0
        || bh_q % n != 0
    {
        return Err(format!(
            "`alibi_slopes` is a {} tensor of shape {:?}, but must be f32 [heads] or [batch, \
             heads] with its size dividing `q`'s {bh_q} heads (batch·heads)",
            slopes.dtype(),
            slopes.shape()
        ));
    }
    let values = slopes.to_vec();
    if let Some(bad) = values.iter().find(|s| !s.is_finite()) {
        return Err(format!("an ALiBi slope is {bad}; slopes must be finite"));
    }
    Ok((0..bh_q).map(|h| values[h % n] as f32).collect())
}

/// [`forward`] with the slopes of every flattened query head when ALiBi is on.
fn forward_slopes(
    device: &Device,
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    opts: &ForwardOptions,
    slopes: Option<&[f32]>,
) -> Result<(HostTensor, HostTensor), crate::Error> {
    let shape_error = |message: String| crate::Error::Shape {
        kernel: "attention_fwd".into(),
        message,
    };
    let (bh, seq_q, d) = match *q.shape() {
        [bh, seq_q, d] => (bh, seq_q, d),
        ref s => {
            return Err(shape_error(format!(
                "`q` has shape {s:?}, but attention needs [batch·heads, seq_q, head dim]"
            )))
        }
    };
    let seq_kv = k.shape().get(1).copied().unwrap_or(0);
    if !HEAD_DIMS.contains(&d) {
        return Err(shape_error(format!(
            "head dim {d} is not supported; supported: {}",
            HEAD_DIMS.map(|d| d.to_string()).join(", ")
        )));
    }
    let s = ScalarArg::from(opts.sm_scale);
    let plain = !opts.needs_window_kernel(seq_q, seq_kv);
    let dtypes = [q.dtype(), k.dtype(), v.dtype()];
    if dtypes.contains(&ScalarType::F16) {
        if dtypes != [ScalarType::F16; 3] {
            return Err(shape_error(format!(
                "`q`, `k` and `v` are {}, {} and {}: f16 attention needs all three f16",
                dtypes[0], dtypes[1], dtypes[2]
            )));
        }
        if !plain || slopes.is_some() {
            return Err(shape_error(
                "f16 inputs run plain or bottom-right causal attention only (no window, \
                 soft-capping, ALiBi or top-left causal alignment with seq_q ≠ seq_kv); use bf16"
                    .into(),
            ));
        }
        if !F16_HEAD_DIMS.contains(&d) {
            return Err(shape_error(format!(
                "head dim {d} is not supported with f16 inputs; supported: {}",
                F16_HEAD_DIMS.map(|d| d.to_string()).join(", ")
            )));
        }
        let mut o = HostTensor::zeros(ScalarType::F16, &[bh, seq_q, d]);
        let mut lse = HostTensor::zeros(ScalarType::F32, &[bh, seq_q]);
        let (o_, l_) = (&mut o, &mut lse);
        macro_rules! half {
            ($d:literal, $kv:literal, $causal:literal) => {
                attention_fwd_f16::<$d, 16, $kv, 8, $causal>::launch(
                    device,
                    grid(bh, seq_q, 128),
                    q,
                    k,
                    v,
                    o_,
                    l_,
                    s,
                )
            };
        }
        match (d, opts.causal) {
            (64, false) => half!(64, 64, false),
            (64, true) => half!(64, 64, true),
            (_, false) => half!(128, 32, false),
            (_, true) => half!(128, 32, true),
        }?;
        return Ok((o, lse));
    }
    let mut o = HostTensor::zeros(ScalarType::BF16, &[bh, seq_q, d]);
    let mut lse = HostTensor::zeros(ScalarType::F32, &[bh, seq_q]);
    if !plain && !WINDOW_HEAD_DIMS.contains(&d) {
        return Err(shape_error(format!(
            "head dim {d} is not supported with a window, soft-capping or top-left causal \
             alignment; supported: {}",
            WINDOW_HEAD_DIMS.map(|d| d.to_string()).join(", ")
        )));
    }
    let (o_, l_) = (&mut o, &mut lse);
    if let Some(slopes) = slopes {
        if opts.softcap.is_some() {
            return Err(shape_error(
                "ALiBi with soft-capping is not supported (no kernel registers both)".into(),
            ));
        }
        if !WINDOW_HEAD_DIMS.contains(&d) {
            return Err(shape_error(format!(
                "head dim {d} is not supported with ALiBi; supported: {}",
                WINDOW_HEAD_DIMS.map(|d| d.to_string()).join(", ")
            )));
        }
        let slopes_t = HostTensor::new(
            ScalarType::F32,
            &[bh],
            &slopes.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(),
        )?;
        let (left, right) = opts.kernel_window(seq_q, seq_kv);
        let (left, right) = (ScalarArg::from(left), ScalarArg::from(right));
        let shift = ScalarArg::from(alibi_shift(opts.align, seq_q, seq_kv));
        match d {
            64 => attention_fwd_alibi::<bf16, 64, 16, 32, 4>::launch(
                device,
                grid(bh, seq_q, 64),
                q,
                k,
                v,
                o_,
                l_,
                &slopes_t,
                s,
                left,
                right,
                shift,
            ),
            _ => attention_fwd_alibi::<bf16, 128, 16, 32, 8>::launch(
                device,
                grid(bh, seq_q, 128),
                q,
                k,
                v,
                o_,
                l_,
                &slopes_t,
                s,
                left,
                right,
                shift,
            ),
        }?;
        return Ok((o, lse));
    }
    // The variant per head dim (see the module documentation for the tiles): its generic
    // arguments after the output dtype, and its rows per block (WARPS·R).
    macro_rules! plain {
        ($d:literal, $kv:literal, $warps:literal, $causal:literal) => {
            attention_fwd::<bf16, $d, 16, $kv, $warps, $causal>::launch(
                device,
                grid(bh, seq_q, 16 * $warps),
                q,
                k,
                v,
                o_,
                l_,
                s,
            )
        };
    }
    if plain && crate::kernels::attention_wg::native_on(device) && matches!(d, 64 | 128) {
        // sm_90a: the warpgroup-mma kernel (hd 64 and 128; see `kernels::attention_wg`).
        crate::kernels::attention_wg::launch(device, (d, opts.causal), q, k, v, o_, l_, s)?;
        return Ok((o, lse));
    }
    if plain {
        // hd128 with 64 keys per tile is registered for sm_80 (and runs on the interpreter).
        let keys64 = crate::registry::runs_on(&["sm_80"], device);
        // hd96 and hd192 take their larger key tiles where those are registered (NVIDIA, and
        // the interpreter).
        let nvidia = crate::registry::runs_on(&WIDE_KEY_TILE_TARGETS, device);
        match (d, opts.causal) {
            (64, false) => plain!(64, 64, 8, false),
            (64, true) => plain!(64, 64, 8, true),
            (128, false) if keys64 => plain!(128, 64, 8, false),
            (128, true) if keys64 => plain!(128, 64, 8, true),
            (128, false) => plain!(128, 32, 8, false),
            (128, true) => plain!(128, 32, 8, true),
            (96, false) if nvidia => plain!(96, 64, 6, false),
            (96, true) if nvidia => plain!(96, 64, 6, true),
            (96, false) => plain!(96, 32, 6, false),
            (96, true) => plain!(96, 32, 6, true),
            (192, false) if nvidia => plain!(192, 32, 6, false),
            (192, true) if nvidia => plain!(192, 32, 6, true),
            (192, false) => plain!(192, 16, 6, false),
            (192, true) => plain!(192, 16, 6, true),
            (_, false) => plain!(256, 16, 4, false),
            (_, true) => plain!(256, 16, 4, true),
        }?;
        return Ok((o, lse));
    }
    let (left, right) = opts.kernel_window(seq_q, seq_kv);
    let (left, right) = (ScalarArg::from(left), ScalarArg::from(right));
    let cap = ScalarArg::from(opts.softcap.unwrap_or(1.0));
    macro_rules! window {
        ($d:literal, $kv:literal, $warps:literal, $cap:literal) => {
            attention_fwd_window::<bf16, $d, 16, $kv, $warps, $cap>::launch(
                device,
                grid(bh, seq_q, 16 * $warps),
                q,
                k,
                v,
                o_,
                l_,
                s,
                left,
                right,
                cap,
            )
        };
    }
    match (d, opts.softcap.is_some()) {
        (64, false) => window!(64, 32, 4, false),
        (64, true) => window!(64, 32, 4, true),
        (_, false) => window!(128, 32, 8, false),
        (_, true) => window!(128, 32, 8, true),
    }?;
    Ok((o, lse))
}

/// The head dims [`forward_varlen`] runs.
pub const VARLEN_HEAD_DIMS: [usize; 2] = [64, 128];

/// The lengths of a packed batch's sequences from `cu_seqlens` (i32 `[batch + 1]`: 0, then
/// nondecreasing, ending at `total`, each length at most `max_len`), or what is wrong with it.
pub(crate) fn varlen_lengths(
    which: &str,
    cu_seqlens: &HostTensor,
    total: usize,
    max_len: usize,
) -> Result<Vec<usize>, String> {
    if cu_seqlens.dtype() != ScalarType::I32 || cu_seqlens.shape().len() != 1 {
        return Err(format!(
            "`{which}` is a {} tensor of shape {:?}, but must be i32 of shape [batch + 1]",
            cu_seqlens.dtype(),
            cu_seqlens.shape()
        ));
    }
    let cu = cu_seqlens.to_vec();
    if cu.first() != Some(&0.0) {
        return Err(format!(
            "`{which}` must start at 0 (it is {:?})",
            cu.first()
        ));
    }
    let mut lengths = Vec::with_capacity(cu.len().saturating_sub(1));
    for (b, w) in cu.windows(2).enumerate() {
        if w[1] < w[0] {
            return Err(format!(
                "`{which}` must be nondecreasing, but entry {} is {} after {}",
                b + 1,
                w[1],
                w[0]
            ));
        }
        let len = (w[1] - w[0]) as usize;
        if len > max_len {
            return Err(format!(
                "sequence {b} has {len} rows by `{which}`, more than the maximum length {max_len}"
            ));
        }
        lengths.push(len);
    }
    let last = cu.last().copied().unwrap_or(0.0);
    if last != total as f64 {
        return Err(format!(
            "`{which}` ends at {last}, but the packed tensor has {total} rows"
        ));
    }
    Ok(lengths)
}

/// Rows `start .. start + len` of a row-major `[total, heads, d]` tensor as `[1, len, heads·d]`.
pub(crate) fn packed_rows(
    t: &HostTensor,
    start: usize,
    len: usize,
) -> Result<HostTensor, crate::Error> {
    let width = t.shape()[1] * t.shape()[2];
    let values = t.to_vec();
    Ok(HostTensor::new(
        t.dtype(),
        &[1, len, width],
        &values[start * width..(start + len) * width],
    )?)
}

/// Attention over a variable-length packed batch, as FlashAttention's `varlen` functions: Q
/// `[total_q, Hq, D]`, K and V `[total_k, Hkv, D]` (bf16, `Hkv` dividing `Hq`), sequence b's
/// queries rows `cu_seqlens_q[b] .. cu_seqlens_q[b+1]` and its keys rows `cu_seqlens_k[b] ..
/// cu_seqlens_k[b+1]` (i32 `[batch + 1]`, starting at 0, nondecreasing, ending at the totals;
/// lengths at most `max_seqlen_q` / `max_seqlen_k`, empty sequences allowed). Returns O
/// `[total_q, Hq, D]` (bf16) and LSE `[Hq, total_q]` (f32, natural log). Every option of
/// [`ForwardOptions`] applies per sequence: causal aligned bottom-right (query i sees keys
/// `j ≤ i + len_k − len_q`) or top-left, windows around that diagonal, soft-capping. A row that
/// sees no key (an empty key sequence, say) gets O = NaN and LSE = `-inf`, as [`forward`] gives.
/// Runs [`attention_fwd_varlen`]; head dims: [`VARLEN_HEAD_DIMS`].
#[allow(clippy::too_many_arguments)]
pub fn forward_varlen(
    device: &Device,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    cu_seqlens_q: &HostTensor,
    cu_seqlens_k: &HostTensor,
    (max_seqlen_q, max_seqlen_k): (usize, usize),
    opts: &ForwardOptions,
) -> Result<(HostTensor, HostTensor), crate::Error> {
    let shape_error = |message: String| crate::Error::Shape {
        kernel: "attention_fwd_varlen".into(),
        message,
    };
    let dims = |name: &str, t: &HostTensor| match *t.shape() {
        [n, h, d] if t.dtype() == ScalarType::BF16 => Ok((n, h, d)),
        ref s => Err(shape_error(format!(
            "`{name}` is a {} tensor of shape {s:?}, but varlen attention needs bf16 \
             [total, heads, head dim]",
            t.dtype()
        ))),
    };
    let (total_q, hq, d) = dims("q", q)?;
    let (total_k, hkv, dk) = dims("k", k)?;
    if opts.alibi.is_some() {
        return Err(shape_error(
            "ALiBi is not supported on variable-length batches (dense `forward` only)".into(),
        ));
    }
    if v.shape() != k.shape() || v.dtype() != k.dtype() || dk != d {
        return Err(shape_error(format!(
            "`q` {:?}, `k` {:?} and `v` {:?}: K and V must have one shape, with Q's head dim",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if !VARLEN_HEAD_DIMS.contains(&d) {
        return Err(shape_error(format!(
            "head dim {d} is not supported; supported: {}",
            VARLEN_HEAD_DIMS.map(|d| d.to_string()).join(", ")
        )));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(shape_error(format!(
            "`k` and `v` have {hkv} heads and `q` {hq}: with GQA/MQA the K/V heads must divide \
             the query heads"
        )));
    }
    if max_seqlen_q + max_seqlen_k >= 1 << 30 {
        return Err(shape_error(format!(
            "max_seqlen_q + max_seqlen_k is {}; at most 2^30 - 1 (window arithmetic in i32)",
            max_seqlen_q + max_seqlen_k
        )));
    }
    let len_q =
        varlen_lengths("cu_seqlens_q", cu_seqlens_q, total_q, max_seqlen_q).map_err(shape_error)?;
    let len_k =
        varlen_lengths("cu_seqlens_k", cu_seqlens_k, total_k, max_seqlen_k).map_err(shape_error)?;
    if len_q.len() != len_k.len() {
        return Err(shape_error(format!(
            "`cu_seqlens_q` has {} sequences and `cu_seqlens_k` {}",
            len_q.len(),
            len_k.len()
        )));
    }
    let batch = len_q.len();
    let mut o = HostTensor::zeros(ScalarType::BF16, &[total_q, hq, d]);
    let mut lse = HostTensor::zeros(ScalarType::F32, &[hq, total_q]);
    if batch == 0 || hq == 0 || max_seqlen_q == 0 {
        return Ok((o, lse));
    }
    // One table entry per sequence (see attention_fwd_varlen).
    let (mut qs, mut ks, mut vs, mut os, mut ls) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut start_q, mut start_k) = (0, 0);
    for (&lq, &lk) in len_q.iter().zip(&len_k) {
        qs.push(packed_rows(q, start_q, lq)?);
        ks.push(packed_rows(k, start_k, lk)?);
        vs.push(packed_rows(v, start_k, lk)?);
        os.push(HostTensor::zeros(ScalarType::BF16, &[1, lq, hq * d]));
        ls.push(HostTensor::zeros(ScalarType::F32, &[hq, lq]));
        (start_q, start_k) = (start_q + lq, start_k + lk);
    }
    let list = |ts: &[HostTensor], dtype: ScalarType, rank: usize| {
        let refs: Vec<&dyn crate::tensor::TensorArg> = ts
            .iter()
            .map(|t| t as &dyn crate::tensor::TensorArg)
            .collect();
        TensorList::of(dtype, rank, &refs).map_err(|e| shape_error(e.to_string()))
    };
    let bf = ScalarType::BF16;
    let (ql, kl, vl) = (list(&qs, bf, 3)?, list(&ks, bf, 3)?, list(&vs, bf, 3)?);
    let (mut ol, mut ll) = (list(&os, bf, 3)?, list(&ls, ScalarType::F32, 2)?);
    // Window bounds around the alignment's diagonal; the kernel moves them to each sequence's
    // bottom-right one. `None` is no bound (the kernel clamps to the lengths).
    let bound = |w: Option<u32>| w.map_or(i32::MAX, |w| i32::try_from(w).unwrap_or(i32::MAX));
    let left = bound(opts.window_left);
    let mut right = bound(opts.window_right);
    if opts.causal {
        right = right.min(0);
    }
    let top_left = i32::from(opts.align == Align::TopLeft);
    let args = (
        ScalarArg::from(opts.sm_scale),
        ScalarArg::from(left),
        ScalarArg::from(right),
        ScalarArg::from(top_left),
        ScalarArg::from(opts.softcap.unwrap_or(1.0)),
    );
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    macro_rules! varlen {
        ($d:literal, $kv:literal, $warps:literal, $cap:literal) => {
            attention_fwd_varlen::<bf16, $d, 16, $kv, $warps, $cap>::launch(
                device,
                [tiles(max_seqlen_q, 16 * $warps), to_u32(hq), to_u32(batch)],
                &ql,
                &kl,
                &vl,
                &mut ol,
                &mut ll,
                args.0,
                args.1,
                args.2,
                args.3,
                args.4,
            )
        };
    }
    match (d, opts.softcap.is_some()) {
        (64, false) => varlen!(64, 32, 4, false),
        (64, true) => varlen!(64, 32, 4, true),
        (_, false) => varlen!(128, 32, 8, false),
        (_, true) => varlen!(128, 32, 8, true),
    }?;
    // Back to the packed layouts.
    let (mut o_all, mut lse_all) = (o.to_vec(), lse.to_vec());
    let mut start = 0;
    for (b, &lq) in len_q.iter().enumerate() {
        let (ob, lb) = match (ol.host(b), ll.host(b)) {
            (Some(ob), Some(lb)) => (ob.to_vec(), lb.to_vec()),
            _ => return Err(shape_error(format!("sequence {b}: no output came back"))),
        };
        o_all[start * hq * d..(start + lq) * hq * d].copy_from_slice(&ob);
        for h in 0..hq {
            lse_all[h * total_q + start..][..lq].copy_from_slice(&lb[h * lq..][..lq]);
        }
        start += lq;
    }
    o = HostTensor::new(ScalarType::BF16, &[total_q, hq, d], &o_all)?;
    lse = HostTensor::new(ScalarType::F32, &[hq, total_q], &lse_all)?;
    Ok((o, lse))
}

/// The targets whose hd96 and hd192 [`attention_fwd`] variants take key tiles of 64 and 32
/// (the variant attributes name them too).
const WIDE_KEY_TILE_TARGETS: [&str; 2] = ["sm_80", "sm_90a"];

/// The targets whose hd96 and hd192 [`attention_fwd`] variants take key tiles of 32 and 16:
/// with 64 and 32 the K/V rings and the Q tiles need 66 and 84 KiB of shared memory, more than
/// the 64 KiB of LDS.
const NARROW_KEY_TILE_TARGETS: [&str; 3] = ["gfx90a", "gfx942", "gfx950"];

/// The head dims [`forward`] runs.
pub const HEAD_DIMS: [usize; 5] = [64, 96, 128, 192, 256];

/// The head dims [`forward`] runs with options that need [`attention_fwd_window`] (at 256 its
/// aligned sm_90a compile spills 8 B).
pub const WINDOW_HEAD_DIMS: [usize; 2] = [64, 128];

/// [`forward`]'s result in f64 from the definition: `(O, LSE)` for row-major Q
/// `[bh_q, seq_q, d]`, K and V `[bh_kv, seq_kv, d]`; query head h reads K/V head
/// `h / (bh_q / bh_kv)`. A row that sees no key gets O = NaN and LSE = `-inf`.
pub fn reference_with(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dims: (usize, usize, usize, usize, usize),
    opts: &ForwardOptions,
) -> (Vec<f64>, Vec<f64>) {
    let slopes = opts
        .alibi
        .and_then(|a| a.per_head(dims.0).ok())
        .map(|s| s.into_iter().map(f64::from).collect::<Vec<_>>());
    reference_with_slopes(q, k, v, dims, opts, slopes.as_deref())
}

/// [`reference_with`] with ALiBi slopes per flattened query head (`slopes[h]`, instead of
/// `opts.alibi`): the score of row i and key j is `s·q·k` (capped) minus `slope·|diag − j|`,
/// `diag` the row's diagonal key per `opts.align` (`i + seq_kv − seq_q` or `i`).
pub fn reference_with_slopes(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (bh_q, bh_kv, seq_q, seq_kv, d): (usize, usize, usize, usize, usize),
    opts: &ForwardOptions,
    slopes: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>) {
    let group = bh_q / bh_kv.max(1);
    let scale = f64::from(opts.sm_scale);
    let mut o = vec![0.0; bh_q * seq_q * d];
    let mut lse = vec![0.0; bh_q * seq_q];
    for h in 0..bh_q {
        let hk = h / group.max(1);
        for i in 0..seq_q {
            let qi = &q[(h * seq_q + i) * d..][..d];
            let (lo, hi) = opts.key_range(i, seq_q, seq_kv);
            let s: Vec<f64> = (0..seq_kv)
                .map(|j| {
                    if (j as i64) < lo || (j as i64) > hi {
                        return f64::NEG_INFINITY;
                    }
                    let kj = &k[(hk * seq_kv + j) * d..][..d];
                    let x = scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>();
                    let capped = match opts.softcap {
                        Some(c) => f64::from(c) * (x / f64::from(c)).tanh(),
                        None => x,
                    };
                    capped - alibi_bias_at(slopes, h, opts.align, (i, j), (seq_q, seq_kv))
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let out = &mut o[(h * seq_q + i) * d..][..d];
            if max == f64::NEG_INFINITY {
                out.fill(f64::NAN);
                lse[h * seq_q + i] = f64::NEG_INFINITY;
                continue;
            }
            let sum: f64 = s.iter().map(|x| (x - max).exp()).sum();
            lse[h * seq_q + i] = max + sum.ln();
            for (j, sj) in s.iter().enumerate() {
                let w = (sj - max).exp() / sum;
                if w == 0.0 {
                    continue;
                }
                let vj = &v[(hk * seq_kv + j) * d..][..d];
                for (oc, vc) in out.iter_mut().zip(vj) {
                    *oc += w * vc;
                }
            }
        }
    }
    (o, lse)
}

/// ALiBi's `slope·|diag − j|` for head h, row i and key j (0 without slopes), `diag` the row's
/// diagonal key per `align`.
pub fn alibi_bias_at(
    slopes: Option<&[f64]>,
    h: usize,
    align: Align,
    (i, j): (usize, usize),
    (seq_q, seq_kv): (usize, usize),
) -> f64 {
    let Some(slopes) = slopes else {
        return 0.0;
    };
    let diag = match align {
        Align::BottomRight => i as i64 + seq_kv as i64 - seq_q as i64,
        Align::TopLeft => i as i64,
    };
    slopes[h] * (diag - j as i64).abs() as f64
}

/// [`forward_varlen`]'s result in f64: `(O [total_q, hq, d], LSE [hq, total_q])` for packed
/// row-major Q `[total_q, hq, d]`, K and V `[total_k, hkv, d]` with the given per-sequence
/// lengths, each sequence by [`reference_with`] on its own rows.
pub fn reference_varlen(
    (q, k, v): (&[f64], &[f64], &[f64]),
    (len_q, len_k): (&[usize], &[usize]),
    (hq, hkv, d): (usize, usize, usize),
    opts: &ForwardOptions,
) -> (Vec<f64>, Vec<f64>) {
    let total_q: usize = len_q.iter().sum();
    let mut o = vec![0.0; total_q * hq * d];
    let mut lse = vec![0.0; hq * total_q];
    // Rows `start ..` of a packed `[total, heads, d]` as a dense `[heads, len, d]`.
    let dense = |t: &[f64], heads: usize, start: usize, len: usize| {
        let mut out = Vec::with_capacity(heads * len * d);
        for h in 0..heads {
            for i in 0..len {
                out.extend_from_slice(&t[((start + i) * heads + h) * d..][..d]);
            }
        }
        out
    };
    let (mut sq, mut sk) = (0, 0);
    for (&lq, &lk) in len_q.iter().zip(len_k) {
        let (ob, lb) = reference_with(
            &dense(q, hq, sq, lq),
            &dense(k, hkv, sk, lk),
            &dense(v, hkv, sk, lk),
            (hq, hkv, lq, lk, d),
            opts,
        );
        for h in 0..hq {
            for i in 0..lq {
                o[((sq + i) * hq + h) * d..][..d].copy_from_slice(&ob[(h * lq + i) * d..][..d]);
                lse[h * total_q + sq + i] = lb[h * lq + i];
            }
        }
        (sq, sk) = (sq + lq, sk + lk);
    }
    (o, lse)
}

/// Attention in f64 from the definition, dense heads, causal aligned top-left (`j ≤ i`):
/// `(O, LSE)` for row-major Q `[bh, seq_q, d]`, K and V
/// `[bh, seq_kv, d]`. [`reference_with`] covers the forward's other options.
pub fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    shape: (usize, usize, usize, usize),
    sm_scale: f64,
    causal: bool,
) -> (Vec<f64>, Vec<f64>) {
    reference_masked(q, k, v, shape, sm_scale, causal, &|_, _, _| true)
}

/// [`reference()`] where query row i of head h sees key j only when `visible(h, i, j)` (and, when
/// causal, `j ≤ i`): the other scores are `-inf`. A row that sees no key gets O = NaN and
/// LSE = `-inf`, as torch's softmax and logsumexp give for a row of `-inf`.
pub fn reference_masked(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (bh, seq_q, seq_kv, d): (usize, usize, usize, usize),
    sm_scale: f64,
    causal: bool,
    visible: &dyn Fn(usize, usize, usize) -> bool,
) -> (Vec<f64>, Vec<f64>) {
    let mut o = vec![0.0; bh * seq_q * d];
    let mut lse = vec![0.0; bh * seq_q];
    for h in 0..bh {
        for i in 0..seq_q {
            let qi = &q[(h * seq_q + i) * d..][..d];
            let keys = if causal { seq_kv.min(i + 1) } else { seq_kv };
            let s: Vec<f64> = (0..keys)
                .map(|j| {
                    if !visible(h, i, j) {
                        return f64::NEG_INFINITY;
                    }
                    let kj = &k[(h * seq_kv + j) * d..][..d];
                    sm_scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if max == f64::NEG_INFINITY {
                o[(h * seq_q + i) * d..][..d].fill(f64::NAN);
                lse[h * seq_q + i] = f64::NEG_INFINITY;
                continue;
            }
            let sum: f64 = s.iter().map(|x| (x - max).exp()).sum();
            lse[h * seq_q + i] = max + sum.ln();
            for (j, sj) in s.iter().enumerate() {
                let w = (sj - max).exp() / sum;
                for c in 0..d {
                    o[(h * seq_q + i) * d + c] += w * v[(h * seq_kv + j) * d + c];
                }
            }
        }
    }
    (o, lse)
}

/// A key mask carried by the inputs, for kernels without a mask argument: where `blocked(h, i, j)`
/// the score of query row i and key j of head h is `-inf`. Column 0 of Q becomes 2⁷⁰ in the rows
/// `query_blocked` picks (0 elsewhere) and column 0 of K becomes −2⁷⁰ in the keys `key_blocked`
/// picks (0 elsewhere): their product −2¹⁴⁰ is past f32's range, so the f32 score is `-inf`
/// exactly for blocked pairs, and every other pair's score is unchanged (a product with 0).
#[derive(Clone, Copy, Debug)]
pub struct InputMask {
    pub query_blocked: fn(usize, usize) -> bool,
    pub key_blocked: fn(usize, usize) -> bool,
}

impl InputMask {
    /// Whether row i of head h sees key j.
    pub fn visible(&self, h: usize, i: usize, j: usize) -> bool {
        !((self.query_blocked)(h, i) && (self.key_blocked)(h, j))
    }

    /// Writes the mask into row-major Q `[bh, seq_q, d]` and K `[bh, seq_kv, d]` values.
    pub fn apply(
        &self,
        q: &mut [f64],
        k: &mut [f64],
        (bh, seq_q, seq_kv, d): (usize, usize, usize, usize),
    ) {
        let big = 2f64.powi(70);
        for h in 0..bh {
            for i in 0..seq_q {
                q[(h * seq_q + i) * d] = if (self.query_blocked)(h, i) { big } else { 0.0 };
            }
            for j in 0..seq_kv {
                k[(h * seq_kv + j) * d] = if (self.key_blocked)(h, j) { -big } else { 0.0 };
            }
        }
    }
}

/// The self-test's mask (heads beyond 1 repeat head 1): in head 0 every third query row misses
/// the first two key tiles of 64 (keys 0..128), so its first tiles are all `-inf`; in head 1
/// every third row misses every key (NaN out, LSE `-inf`). With causal attention the rows of
/// head 0 before key 128 see nothing either.
pub const HARD_MASK: InputMask = InputMask {
    query_blocked: |_, i| i % 3 == 0,
    key_blocked: |h, j| h >= 1 || j < 128,
};

/// Launches the registered bf16-output variant with head dim `d`, `rows` query rows per block,
/// `keys` per key tile and the given causality.
#[allow(clippy::too_many_arguments)]
fn launch_bf16(
    device: &Device,
    (d, rows, keys, causal): (usize, usize, usize, bool),
    bh: usize,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    o: &mut HostTensor,
    lse: &mut HostTensor,
    s: ScalarArg,
) -> Result<(), crate::Error> {
    let seq = q.shape()[1];
    let g = grid(bh, seq, rows);
    match (d, rows, keys, causal) {
        (64, 64, _, false) => {
            attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (64, 64, _, true) => {
            attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (64, _, _, false) => {
            attention_fwd::<bf16, 64, 16, 64, 8, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (64, _, _, true) => {
            attention_fwd::<bf16, 64, 16, 64, 8, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (128, _, 64, false) => {
            attention_fwd::<bf16, 128, 16, 64, 8, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (128, _, 64, true) => {
            attention_fwd::<bf16, 128, 16, 64, 8, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (128, _, _, false) => {
            attention_fwd::<bf16, 128, 16, 32, 8, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (128, _, _, true) => {
            attention_fwd::<bf16, 128, 16, 32, 8, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (96, _, 64, false) => {
            attention_fwd::<bf16, 96, 16, 64, 6, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (96, _, 64, true) => {
            attention_fwd::<bf16, 96, 16, 64, 6, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (96, _, _, false) => {
            attention_fwd::<bf16, 96, 16, 32, 6, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (96, _, _, true) => {
            attention_fwd::<bf16, 96, 16, 32, 6, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (192, _, 32, false) => {
            attention_fwd::<bf16, 192, 16, 32, 6, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (192, _, 32, true) => {
            attention_fwd::<bf16, 192, 16, 32, 6, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (192, _, _, false) => {
            attention_fwd::<bf16, 192, 16, 16, 6, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (192, _, _, true) => {
            attention_fwd::<bf16, 192, 16, 16, 6, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (_, _, _, false) => {
            attention_fwd::<bf16, 256, 16, 16, 4, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (_, _, _, true) => {
            attention_fwd::<bf16, 256, 16, 16, 4, true>::launch(device, g, q, k, v, o, lse, s)
        }
    }
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(2, 70, false), (2, 150, true)];
    if large(device) {
        shapes.extend([(4, 1000, false), (3, 513, false), (3, 513, true)]);
    }
    // (head dim, query rows per block, keys per tile): every bf16 variant (hd128 with 64 keys
    // where it is registered).
    let mut configs = vec![(64, 64, 64), (64, 128, 64), (128, 128, 32), (256, 64, 16)];
    if crate::registry::runs_on(&["sm_80"], device) {
        configs.push((128, 128, 64));
    }
    if crate::registry::runs_on(&WIDE_KEY_TILE_TARGETS, device) {
        configs.extend([(96, 96, 64), (192, 96, 32)]);
    }
    if crate::registry::runs_on(&NARROW_KEY_TILE_TARGETS, device) {
        configs.extend([(96, 96, 32), (192, 96, 16)]);
    }
    for (bh, seq, masked) in shapes {
        for &(d, rows, keys) in &configs {
            let bf = ScalarType::BF16;
            let shape = (bh, seq, seq, d);
            let (mut qv, mut kv) = (
                rng.tensor(bf, &[bh, seq, d], -1.0, 1.0).to_vec(),
                rng.tensor(bf, &[bh, seq, d], -1.0, 1.0).to_vec(),
            );
            if masked {
                HARD_MASK.apply(&mut qv, &mut kv, shape);
            }
            let tensor = |values: &[f64]| {
                HostTensor::new(bf, &[bh, seq, d], values).map_err(|e| e.to_string())
            };
            let (q, k) = (tensor(&qv)?, tensor(&kv)?);
            let v = rng.tensor(bf, &[bh, seq, d], -1.0, 1.0);
            let scale = 1.0 / (d as f32).sqrt();
            let what = if masked { " masked" } else { "" };
            for causal in [false, true] {
                let mut o = poisoned(bf, &[bh, seq, d]);
                let mut lse = poisoned(ScalarType::F32, &[bh, seq]);
                let s = ScalarArg::from(scale);
                let cfg = (d, rows, keys, causal);
                launch_bf16(device, cfg, bh, &q, &k, &v, &mut o, &mut lse, s).map_err(|e| {
                    format!("{rows} rows, {keys} keys, hd {d}, causal {causal}: {e}")
                })?;
                let (wo, wl) = reference_masked(
                    &q.to_vec(),
                    &k.to_vec(),
                    &v.to_vec(),
                    shape,
                    f64::from(scale),
                    causal,
                    &|h, i, j| !masked || HARD_MASK.visible(h, i, j),
                );
                let name = format!("{bh}×{seq}×{d}{what} {rows} rows {keys} keys causal={causal}");
                let (eo, el) = (
                    record(format!("{name}: O"), &o.to_vec(), &wo, 1e-2),
                    record(format!("{name}: LSE"), &lse.to_vec(), &wl, 1e-5),
                );
                if eo > 1e-2 || el > 1e-5 {
                    return Err(format!(
                        "{name}: O error {eo:.2e}, LSE error {el:.2e} (seed {})",
                        rng.seed
                    ));
                }
            }
        }
    }
    features(device, &mut rng)?;
    Ok(
        "full and causal, hd 64, 96, 128, 192 and 256, 64, 96 and 128 rows per block, with and \
         without -inf key tiles; GQA/MQA, bottom-right and top-left causal, windows and soft-capping at seq_q ≠ \
         seq_kv (rows and blocks that see no key), ALiBi; against the f64 references"
            .into(),
    )
}

/// [`forward`]'s options against [`reference_with`] at every head dim.
fn features(device: &Device, rng: &mut Rng) -> Result<(), String> {
    let base = ForwardOptions::new(0.125);
    let causal = ForwardOptions {
        causal: true,
        ..base
    };
    // (bh_q, bh_kv, seq_q, seq_kv, options): GQA and MQA with bottom-right causal (more keys
    // than queries); more queries than keys (the first rows, and with 64-row blocks a whole
    // block, see no key); top-left causal; a window crossing tiles; a soft cap.
    let cases = [
        (4, 2, 37, 100, causal),
        (3, 1, 100, 30, causal),
        (
            2,
            2,
            50,
            130,
            ForwardOptions {
                align: Align::TopLeft,
                ..causal
            },
        ),
        (
            2,
            1,
            70,
            150,
            ForwardOptions {
                window_left: Some(20),
                window_right: Some(5),
                ..base
            },
        ),
        (
            2,
            2,
            65,
            65,
            ForwardOptions {
                softcap: Some(5.0),
                ..causal
            },
        ),
        (
            4,
            2,
            37,
            100,
            ForwardOptions {
                alibi: Some(Alibi::Standard { heads: 4 }),
                ..causal
            },
        ),
    ];
    let bf = ScalarType::BF16;
    for d in HEAD_DIMS {
        for (bh_q, bh_kv, seq_q, seq_kv, opts) in cases {
            let windowed = opts.needs_window_kernel(seq_q, seq_kv) || opts.alibi.is_some();
            if windowed && !WINDOW_HEAD_DIMS.contains(&d) {
                continue;
            }
            let q = rng.tensor(bf, &[bh_q, seq_q, d], -2.0, 2.0);
            let k = rng.tensor(bf, &[bh_kv, seq_kv, d], -2.0, 2.0);
            let v = rng.tensor(bf, &[bh_kv, seq_kv, d], -1.0, 1.0);
            let name = format!("{bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} {opts:?}");
            let (o, lse) =
                forward(device, &q, &k, &v, &opts).map_err(|e| format!("{name}: {e}"))?;
            let dims = (bh_q, bh_kv, seq_q, seq_kv, d);
            let (wo, wl) = reference_with(&q.to_vec(), &k.to_vec(), &v.to_vec(), dims, &opts);
            // tanh.approx.f32 on NVIDIA: ≈ 2⁻¹¹ relative on each capped score.
            let lse_tol = if opts.softcap.is_some() { 2e-3 } else { 1e-5 };
            let (eo, el) = (
                record(format!("{name}: O"), &o.to_vec(), &wo, 1e-2),
                record(format!("{name}: LSE"), &lse.to_vec(), &wl, lse_tol),
            );
            if eo > 1e-2 || el > lse_tol {
                return Err(format!(
                    "{name}: O error {eo:.2e}, LSE error {el:.2e} (seed {})",
                    rng.seed
                ));
            }
        }
    }
    Ok(())
}
