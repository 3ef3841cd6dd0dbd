//! FlashAttention-2 backward pass of [`attention_fwd`](super::attention::attention_fwd) and
//! [`attention_fwd_window`](super::attention::attention_fwd_window), for every option of
//! [`forward`](super::attention::forward): GQA/MQA, causal (bottom-right or top-left), sliding
//! windows and logit soft-capping, head dims 64 and 128; at head dim 96 plain and bottom-right
//! causal bf16 attention ([`PLAIN_ONLY_HEAD_DIMS`]).
//!
//! The forward computes `O = softmax(S)·V` over the keys each row sees, with `S = s·Q·Kᵀ` (or
//! `c·tanh(s·Q·Kᵀ/c)` with a cap c), `s = sm_scale`, and returns the natural-log `LSE` per query
//! row. Given the output gradient dO, the backward computes
//!
//! - [`attention_bwd_preprocess`]: `Δ = rowsum(dO ∘ O)` per query row (f32), the inner product
//!   `Σ_j P_ij·dP_ij` the softmax's gradient subtracts;
//! - [`attention_bwd_dkdv`] / [`attention_bwd_dkdv_window`]: one block per `WARPS·16` keys of
//!   one K/V head (each warp owns 16 keys and keeps its dK and dV accumulators in registers)
//!   walking the query tiles of `QT` rows through two-slot shared rings of Q and dO: it
//!   recomputes the transposed scores `Sᵀ = K·Qᵀ` and probabilities `Pᵀ = exp(Sᵀ − LSE)`, then
//!   `dV += Pᵀ·dO`, `dPᵀ = V·dOᵀ`, `dSᵀ = Pᵀ ∘ (dPᵀ − Δ)` (times `1 − tanh²` with a cap, the
//!   derivative of `c·tanh(x/c)`) and `dK += dSᵀ·Q`; `dK` is scaled by `s` at the end. Working
//!   on the transposes keeps each key's row in one warp, so no warp ever reduces across
//!   another's rows. With GQA/MQA the block walks the query tiles of every query head of its
//!   K/V head's group, head after head in order: dK and dV are summed over the group in a
//!   fixed order in registers, with no atomics and no copies of K or V;
//! - [`attention_bwd_dq`] / [`attention_bwd_dq_window`]: one block per `WARPS·R` query rows
//!   walking the key tiles of `KV` of its K/V head (`head / group`, as the forward) through K
//!   and V rings: `S = Q·Kᵀ`, `P = exp(S − LSE)`, `dP = dO·Vᵀ`, `dS = P ∘ (dP − Δ)` (times
//!   `1 − tanh²` with a cap), `dQ += dS·K`, scaled by `s` at the end. dQ has its own pass
//!   instead of atomic adds from the key blocks, so it is computed in a fixed order.
//!
//! Every gradient is therefore bitwise the same on every run.
//!
//! Masks are the forward's exactly. Causal (aligned bottom-right: query row i sees keys
//! `j ≤ i + seq_kv − seq_q`): the key blocks start at the first query tile that reaches their
//! first key, the query blocks stop at their diagonal key tile. Windows (the `_window` kernels,
//! the same `window_left`/`window_right` arguments around the bottom-right diagonal as
//! [`attention_fwd_window`](super::attention::attention_fwd_window); top-left causal is such a
//! window): key blocks walk only the query tiles of the rows that see their keys, query
//! blocks only the key tiles of their rows' windows. Only tiles that cross an edge are masked.
//! Ragged edges need no mask in the key-block pass: rows past `seq_q` load as zero (Q, dO, LSE
//! and Δ), so their `dPᵀ − Δ` and their dO rows are zero and they add nothing; keys past
//! `seq_kv` only produce rows that the masked store drops. The query-block pass masks keys past
//! `seq_kv` to `-inf` (as the forward) so that `exp(0 − LSE)` cannot overflow for a row with a
//! very negative LSE. With a cap, tanh comes before the masks (as in the forward) and its
//! derivative is taken of the unmasked value, so a masked score gives `0 · finite`.
//!
//! A row that sees no key (causal with `seq_q > seq_kv`, or a window past every key) has
//! LSE = `-inf` and O = NaN from the forward, hence Δ = NaN: the masked kernels read its LSE
//! as `+inf` and its Δ as 0, so its P, dS and gradients are 0 (the gradient of a constant
//! row). Without a mask every row sees a key (`seq_kv ≥ 1`) and LSE is finite.
//! [`backward`] runs the three kernels for a [`ForwardOptions`].
//!
//! ALiBi ([`attention_bwd_dkdv_alibi`], [`attention_bwd_dq_alibi`], run by [`backward`] for
//! [`ForwardOptions::alibi`] and by [`backward_with_slopes`]): the scores carry the forward's
//! bias `−slope·|diagonal − j|` (added to the raw scores as `−(slope/sm_scale)·|distance|`,
//! per query head: the key pass reads each head's slope as it walks the group). The bias is a
//! constant in Q and K, so dS and the gradients are the usual ones of the biased P. Window
//! arguments as the `_window` kernels; no cap; f32 gradients; head dims 64 and 128.
//!
//! f16 inputs ([`attention_bwd_preprocess_f16`], [`attention_bwd_dkdv_f16`],
//! [`attention_bwd_dq_f16`], run by [`backward`] when Q is f16): the same bodies with f16 Q,
//! K, V, O and dO and P, dS rounded to f16 for their mmas (f32 accumulation), for the options
//! the f16 forward has (plain or bottom-right causal, GQA/MQA), gradients in f32 or f16.
//!
//! Variable-length packed batches ([`attention_bwd_dkdv_varlen`], [`attention_bwd_dq_varlen`],
//! [`backward_varlen`]) at head dims 64 and 128; at 128 the dQ pass keeps Q in shared memory.
//!
//! The library registers head dim 64 with query tiles of 32 in the key pass and key tiles of
//! 32 in the query pass (with 64 the key pass spills on sm_80 and the query pass needs 247–256
//! registers), and head dim 128 with tiles of 16 in both. At 128 a warp's dK and dV
//! accumulators take 2 × 64 f32 registers; its K and V fragments (2 × 32 more) spilled 136
//! bytes on sm_80 when kept in registers, so at 128 each warp parks its K and V rows in shared
//! memory and reads them back at each use (48 KiB of shared memory per block). Head dim 96
//! runs blocks of 6 warps (96 keys or query rows: the thread count and the 96 columns divide
//! one another, which the element-wise copies of views without alignment facts need) with
//! tiles of 32 in both passes and K and V parked in shared memory as at 128. `tilekit check`,
//! 0 spill bytes on sm_80, sm_90a, gfx90a, gfx942 and gfx950, aligned and general; sm_80
//! aligned / general: key pass 230–243 / 254–255 registers (figure 0.95–1.09 / 1.64–1.78),
//! query pass 205–207 / 227–228 (0.66–0.77 / 1.22–1.34); with tiles of 16 the figures were
//! 1.11–1.30 and 0.77–0.94 aligned.
//!
//! `tilekit check` (ptxas 13.5), 0 spill bytes on sm_80, sm_90a and gfx942, aligned and
//! general, for the f16 and head-dim-128 varlen variants. The f16 kernels compile as their
//! bf16 counterparts: sm_80 aligned, key pass 224–244 registers (figure 1.02–1.49), query pass
//! 160–239 (0.77–1.13); general 168–255 (1.69–2.38). Varlen at 128 (table views: no alignment
//! fact): key pass 255 registers on sm_80 (figure 1.88; 2.10 with a cap), 244–252 on sm_90a;
//! query pass 255 on sm_80 (1.91 / 2.12), 232–233 on sm_90a; gfx942 168–234 VGPRs.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::attention::{
    alibi_bias, alibi_bias_at, head_place, packed_rows, reference_with, slopes_per_head,
    varlen_lengths, varlen_window, Alibi, Align, ForwardOptions,
};
use crate::kernels::check::{poisoned, record_bounded, tiles, Rng};
use crate::tensor_list::TensorList;
use crate::{Device, LaunchArg, ScalarArg};

/// Keys per warp in [`attention_bwd_dkdv`]: one mma row block.
pub const KEYS_PER_WARP: usize = 16;

/// `Δ = rowsum(dO ∘ O)` for O `[bh, seq_q, D]` (dtype `O`, as the forward stored it) and dO
/// (bf16); `delta` is `[bh, seq_q]` f32. Each warp takes `R` rows. Grid:
/// `[⌈seq_q / (WARPS·R)⌉, bh, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <bf16, 64, 16, 4>,
        <f32, 64, 16, 4>,
        <bf16, 96, 16, 4>,
        <f32, 96, 16, 4>,
        <bf16, 128, 16, 4>,
        <f32, 128, 16, 4>
    ),
    shapes(o: [BH, SQ, D], d_o: [BH, SQ, D], delta: [BH, SQ]),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
pub fn attention_bwd_preprocess<O: RegDtype, const D: usize, const R: usize, const WARPS: usize>(
    o: Gl<O, 3>,
    d_o: Gl<bf16, 3>,
    delta: GlMut<f32, 2>,
) {
    row_dots::<O, bf16, D, R, WARPS>(o, d_o, delta);
}

/// [`attention_bwd_preprocess`] for the f16 O of
/// [`attention_fwd_f16`](super::attention::attention_fwd_f16) and an f16 dO.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<64, 16, 4>, <128, 16, 4>),
    shapes(o: [BH, SQ, D], d_o: [BH, SQ, D], delta: [BH, SQ]),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
pub fn attention_bwd_preprocess_f16<const D: usize, const R: usize, const WARPS: usize>(
    o: Gl<f16, 3>,
    d_o: Gl<f16, 3>,
    delta: GlMut<f32, 2>,
) {
    row_dots::<f16, f16, D, R, WARPS>(o, d_o, delta);
}

/// The body of the preprocess kernels: `Δ = rowsum(dO ∘ O)` in f32, `R` rows per warp.
#[crate::func]
fn row_dots<O: RegDtype, T: RegDtype, const D: usize, const R: usize, const WARPS: usize>(
    o: Gl<O, 3>,
    d_o: Gl<T, 3>,
    delta: GlMut<f32, 2>,
) {
    let head = block_idx_y();
    let q_tile = block_idx_x() * WARPS as i32 + warp_idx();
    let o_frag: Rt<O, R, D> = load(o.tile(head, q_tile, 0));
    let do_frag: Rt<T, R, D> = load(d_o.tile(head, q_tile, 0));
    store(
        delta.chunk(head, q_tile),
        row_sum(o_frag.cast::<f32>() * do_frag.cast::<f32>()),
    );
}

/// dK and dV (dtype `G`) of `WARPS·16` keys of one K/V head per block, summed over the query
/// heads of its GQA group; see the module documentation. Grid: `[⌈seq_kv / (WARPS·16)⌉, bh_kv,
/// 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 32, 4, false>,
        <f32, 64, 32, 4, true>,
        <bf16, 64, 32, 4, false>,
        <bf16, 64, 32, 4, true>,
        <f32, 96, 32, 6, false>,
        <f32, 96, 32, 6, true>,
        <bf16, 96, 32, 6, false>,
        <bf16, 96, 32, 6, true>,
        <f32, 128, 16, 4, false>,
        <f32, 128, 16, 4, true>,
        <bf16, 128, 16, 4, false>,
        <bf16, 128, 16, 4, true>
    ),
    check = key_pass_arguments::<false>,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dk: [BHKV, SK, D],
        dv: [BHKV, SK, D],
        SK >= 1,
        BHKV >= 1
    ),
    grid = [ceil_div(SK, WARPS * 16), BHKV, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dkdv<
    G: RegDtype,
    const D: usize,
    const QT: usize,
    const WARPS: usize,
    const CAUSAL: bool,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    d_o: Gl<bf16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dk: GlMut<G, 3>,
    dv: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
) {
    // No window and no cap: their arguments are never read.
    key_tiles::<bf16, G, D, QT, WARPS, CAUSAL, false, false, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dk,
        dv,
        sm_scale,
        lit(0),
        lit(0),
        lit(1.0),
        None,
    );
}

/// [`attention_bwd_dkdv`] of [`attention_fwd_window`](super::attention::attention_fwd_window):
/// the same window (`window_left`, `window_right` around the bottom-right diagonal) and, with
/// `SOFTCAP`, the same cap (> 0; not read without `SOFTCAP`). Lengths: `seq_q + seq_kv < 2³⁰`.
/// Grid: `[⌈seq_kv / (WARPS·16)⌉, bh_kv, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 32, 4, false>,
        <f32, 64, 32, 4, true>,
        <bf16, 64, 32, 4, false>,
        <bf16, 64, 32, 4, true>,
        <f32, 128, 16, 4, false>,
        <f32, 128, 16, 4, true>,
        <bf16, 128, 16, 4, false>,
        <bf16, 128, 16, 4, true>
    ),
    check = key_pass_arguments::<SOFTCAP>,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dk: [BHKV, SK, D],
        dv: [BHKV, SK, D],
        SK >= 1,
        BHKV >= 1,
        SQ + SK < (1 << 30)
    ),
    grid = [ceil_div(SK, WARPS * 16), BHKV, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dkdv_window<
    G: RegDtype,
    const D: usize,
    const QT: usize,
    const WARPS: usize,
    const SOFTCAP: bool,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    d_o: Gl<bf16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dk: GlMut<G, 3>,
    dv: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    softcap: Scalar<f32>,
) {
    key_tiles::<bf16, G, D, QT, WARPS, false, true, SOFTCAP, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dk,
        dv,
        sm_scale,
        window_left,
        window_right,
        softcap,
        None,
    );
}

/// `R` rows of head dim `D` (elements `T`) per warp of the block, in shared memory.
type WarpRows<T, const R: usize, const D: usize, const WARPS: usize> =
    SharedArray<St<T, R, D>, WARPS>;

/// The body of [`attention_bwd_dkdv`] (`CAUSAL`, no window) and [`attention_bwd_dkdv_window`]
/// (`WINDOW`): see the module documentation.
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn key_tiles<
    T: RegDtype + MmaPair<T>,
    G: RegDtype,
    const D: usize,
    const QT: usize,
    const WARPS: usize,
    const CAUSAL: bool,
    const WINDOW: bool,
    const SOFTCAP: bool,
    const PACKED: bool,
>(
    q: Gl<T, 3>,
    k: Gl<T, 3>,
    v: Gl<T, 3>,
    d_o: Gl<T, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dk: GlMut<G, 3>,
    dv: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    softcap: Scalar<f32>,
    alibi: Option<(Gl<f32, 1>, Scalar<i32>)>,
) {
    let q_ring: SharedArray<St<T, QT, D>, 2> = alloc_shared();
    let do_ring: SharedArray<St<T, QT, D>, 2> = alloc_shared();
    let (k_block, kv_head) = (block_idx_x(), block_idx_y());
    // GQA/MQA: this K/V head serves query heads kv_head·group .. (kv_head + 1)·group − 1 (the
    // forward's head / group), walked in that order: the sum over the group is the same on
    // every run, with no atomics.
    let group = match PACKED {
        true => q.dim(2) / k.dim(2),
        false => q.dim(0) / k.dim(0),
    };
    let head0 = kv_head * group;
    let last_head = head0 + group - 1;
    let k_tile = k_block * WARPS as i32 + warp_idx();
    let k_row0 = k_tile * KEYS_PER_WARP as i32;
    let (seq_q, seq_kv) = (q.dim(1), k.dim(1));
    let q_tiles = ceil_div(seq_q, QT);
    // The block's first key and last key that exists; the query-tile bounds below are the
    // block's, not the warp's: every warp takes part in each tile's copies and barriers.
    let k_first = k_block * (WARPS * KEYS_PER_WARP) as i32;
    let k_last = k_first + (seq_kv - 1 - k_first).min((WARPS * KEYS_PER_WARP - 1) as i32);
    // Row i's diagonal key is i + off (bottom-right): key j's diagonal row is j − off.
    let off = seq_kv - seq_q;
    let mut first: Scalar<i32> = lit(0);
    let mut end = q_tiles;
    let (mut left, mut right) = (first, first);
    if CAUSAL {
        // Query rows before the one whose diagonal is the block's first key see none of its
        // keys: their tiles are skipped. k_first − seq_kv < 0: no wrap.
        first = (k_first - off).max(0) / QT as i32;
    }
    if WINDOW {
        // Clamped as the forward clamps them (every row's keys unchanged, sums in i32 by the
        // contract seq_q + seq_kv < 2³⁰). Row i sees key j when j − off − right ≤ i ≤
        // j − off + left: the block's rows run from its first key's lowest to its last key's
        // highest.
        left = window_left.min(seq_kv).max(-(seq_q + seq_kv));
        right = window_right.min(seq_q).max(-seq_kv);
        first = (k_first - off - right).max(0) / QT as i32;
        end = end.min(ceil_div(k_last - off + left + 1, QT)).max(first);
    }
    if PACKED {
        // Blocks of the grid's `max_seqlen_k` past this sequence's keys have nothing to do.
        if k_first.ge(seq_kv) {
            end = first;
        }
    }
    // Query tiles per head, and the (head, tile) pairs of the group in order.
    let per_head = end - first;
    let steps = group * per_head;
    let (z, c) = head_place(PACKED, head0, 1, 0);
    copy_start(q_ring.at(0), q.tile(z, first, c));
    copy_start(do_ring.at(0), d_o.tile(z, first, c));
    copy_commit();
    // Head dim 64 keeps the warp's K and V fragments in registers for the whole walk; at 128
    // those 64 registers beside the 128 of the dK and dV accumulators spill, so K and V wait
    // in shared memory (each warp its own 16 rows) and are read back at each use.
    let stash: Option<(WarpRows<T, 16, D, WARPS>, WarpRows<T, 16, D, WARPS>)> = match D > 64 {
        true => Some((alloc_shared(), alloc_shared())),
        false => None,
    };
    let (kv_z, kv_c) = head_place(PACKED, kv_head, 1, 0);
    let k_own: Rt<T, 16, D> = load(k.tile(kv_z, k_tile, kv_c));
    let v_own: Rt<T, 16, D> = load(v.tile(kv_z, k_tile, kv_c));
    if let Some((k_sh, v_sh)) = &stash {
        // Read back after the loop's first barrier.
        store(k_sh.at(warp_idx()), k_own);
        store(v_sh.at(warp_idx()), v_own);
    }
    // With a cap the scores are tanh values and the cap multiplies them.
    let mut scale_log2 = sm_scale * std::f32::consts::LOG2_E;
    if SOFTCAP {
        scale_log2 = softcap * std::f32::consts::LOG2_E;
    }

    let mut dk_acc: Rt<f32, 16, D> = zeros();
    let mut dv_acc: Rt<f32, 16, D> = zeros();
    let (mut head, mut qt) = (head0, first);
    for step in range(0, steps) {
        let (cur, next) = (step & 1, (step + 1) & 1);
        // The next pair: the next tile of this head, or the first of the next head. After the
        // last step it is a pair of the group again (its copy lands and is never read).
        let wrap = (qt + 1).ge(end);
        let next_qt = select(wrap, first, qt + 1);
        let next_head = select(wrap, (head + 1).min(last_head), head);
        // This tile's Q and dO have landed; after the barrier every warp is done with the
        // previous tile, whose slots take the next tile's.
        copy_wait(0);
        barrier();
        let (z, c) = head_place(PACKED, next_head, 1, 0);
        copy_start(q_ring.at(next), q.tile(z, next_qt, c));
        copy_start(do_ring.at(next), d_o.tile(z, next_qt, c));
        copy_commit();
        let q0 = qt * QT as i32;
        let lse_col: Rv<f32, QT, Cols> = load(lse.chunk(head, qt));
        let mut d_row: Rv<f32, QT, Cols> = load(delta.chunk(head, qt));
        let mut lse2 = lse_col * std::f32::consts::LOG2_E;
        if CAUSAL || WINDOW {
            // Rows that see no key (LSE −inf, Δ NaN): P = 2^(−inf − inf) = 0 and Δ = 0.
            let seen = lse_col.ne(f32::NEG_INFINITY);
            lse2 = select(seen, lse2, f32::INFINITY);
            d_row = select(seen, d_row, 0.0);
        }
        let k_frag: Rt<T, 16, D> = match &stash {
            Some((k_sh, _)) => load(k_sh.at(warp_idx())),
            None => k_own,
        };
        // Sᵀ (keys × queries), raw: the scale and the LSE shift are one fma per score.
        let q_frag: Rt<T, QT, D> = load(q_ring.at(cur));
        let mut st = mma_abt(zeros(), k_frag, q_frag);
        // The cap's tanh before the masks (tanh(−inf) = −1 would be a finite score); the
        // unmasked values give its derivative below.
        let mut th = st;
        if SOFTCAP {
            th = (st * (sm_scale / softcap)).tanh();
            st = th;
        }
        if let Some((slopes, shift)) = alibi {
            // ALiBi: element (r, c) is at distance q0 + c + off − shift − (k_row0 + r) from
            // query q0 + c's ALiBi diagonal; this head's slope in raw-score units.
            let slope: Scalar<f32> = load(slopes.at(head));
            let dist0 = q0 + off - shift - k_row0;
            st = st + alibi_bias::<16, QT, true>(dist0, slope / sm_scale);
        }
        if CAUSAL {
            // Query q0 + c sees key k_row0 + r only when q0 + c + off ≥ k_row0 + r.
            if q0.lt(k_row0 - off + (KEYS_PER_WARP - 1) as i32) {
                st = mask_anticausal(st, k_row0 - off, q0, f64::NEG_INFINITY);
            }
        }
        if WINDOW {
            // Right edge: q0 + c ≥ k_row0 + r − off − right; left edge: q0 + c ≤
            // k_row0 + r − off + left. Only tiles that reach past the warp's edges are masked.
            let lo = k_row0 - off - right;
            if q0.lt(lo + (KEYS_PER_WARP - 1) as i32) {
                st = mask_anticausal(st, lo, q0, f64::NEG_INFINITY);
            }
            let hi = k_row0 - off + left;
            if q0.gt(hi - (QT - 1) as i32) {
                st = mask_causal(st, hi, q0, f64::NEG_INFINITY);
            }
        }
        let pt = sub_col(st * scale_log2, lse2).exp2();
        let do_col: Rt<T, QT, D, Col> = load(do_ring.at(cur));
        dv_acc = mma_ab(dv_acc, pt.cast::<T>(), do_col);
        let do_frag: Rt<T, QT, D> = load(do_ring.at(cur));
        let v_frag: Rt<T, 16, D> = match &stash {
            Some((_, v_sh)) => load(v_sh.at(warp_idx())),
            None => v_own,
        };
        let dpt = mma_abt(zeros(), v_frag, do_frag);
        let mut dst = pt * sub_col(dpt, d_row);
        if SOFTCAP {
            // d(cap·tanh(x/cap))/dx = 1 − tanh²; the scale multiplies dK at the end.
            dst = dst - dst * (th * th);
        }
        let q_col: Rt<T, QT, D, Col> = load(q_ring.at(cur));
        dk_acc = mma_ab(dk_acc, dst.cast::<T>(), q_col);
        head = next_head;
        qt = next_qt;
    }
    // The copies of the pair after the last: none outstanding when the block ends.
    copy_wait(0);
    store(dk.tile(kv_z, k_tile, kv_c), (dk_acc * sm_scale).cast::<G>());
    store(dv.tile(kv_z, k_tile, kv_c), dv_acc.cast::<G>());
}

/// dQ (dtype `G`) of `WARPS·R` query rows per block; see the module documentation. Grid:
/// `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 16, 32, 4, false>,
        <f32, 64, 16, 32, 4, true>,
        <bf16, 64, 16, 32, 4, false>,
        <bf16, 64, 16, 32, 4, true>,
        <f32, 96, 16, 32, 6, false>,
        <f32, 96, 16, 32, 6, true>,
        <bf16, 96, 16, 32, 6, false>,
        <bf16, 96, 16, 32, 6, true>,
        <f32, 128, 16, 16, 4, false>,
        <f32, 128, 16, 16, 4, true>,
        <bf16, 128, 16, 16, 4, false>,
        <bf16, 128, 16, 16, 4, true>
    ),
    selftest = selftest,
    check = query_pass_arguments::<false>,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dq: [BH, SQ, D],
        SK >= 1,
        BHKV >= 1
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dq<
    G: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const CAUSAL: bool,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    d_o: Gl<bf16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dq: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
) {
    // No window and no cap: their arguments are never read.
    query_tiles::<bf16, G, D, R, KV, WARPS, CAUSAL, false, false, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dq,
        sm_scale,
        lit(0),
        lit(0),
        lit(1.0),
        None,
    );
}

/// [`attention_bwd_dq`] of [`attention_fwd_window`](super::attention::attention_fwd_window):
/// the same window and, with `SOFTCAP`, the same cap (> 0; not read without `SOFTCAP`).
/// Lengths: `seq_q + seq_kv < 2³⁰`. Grid: `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 16, 32, 4, false>,
        <f32, 64, 16, 32, 4, true>,
        <bf16, 64, 16, 32, 4, false>,
        <bf16, 64, 16, 32, 4, true>,
        <f32, 128, 16, 16, 4, false>,
        <f32, 128, 16, 16, 4, true>,
        <bf16, 128, 16, 16, 4, false>,
        <bf16, 128, 16, 16, 4, true>
    ),
    check = query_pass_arguments::<SOFTCAP>,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dq: [BH, SQ, D],
        SK >= 1,
        BHKV >= 1,
        SQ + SK < (1 << 30)
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dq_window<
    G: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const SOFTCAP: bool,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    d_o: Gl<bf16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dq: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    softcap: Scalar<f32>,
) {
    query_tiles::<bf16, G, D, R, KV, WARPS, false, true, SOFTCAP, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dq,
        sm_scale,
        window_left,
        window_right,
        softcap,
        None,
    );
}

/// [`attention_bwd_dkdv`] for f16 Q, K, V and dO, the backward of
/// [`attention_fwd_f16`](super::attention::attention_fwd_f16): the same body with P and dSᵀ
/// rounded to f16 for their mmas (f32 accumulation), plain or causal (bottom-right), dK and dV
/// in f32 or f16. Grid: `[⌈seq_kv / (WARPS·16)⌉, bh_kv, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 32, 4, false>,
        <f32, 64, 32, 4, true>,
        <f16, 64, 32, 4, false>,
        <f16, 64, 32, 4, true>,
        <f32, 128, 16, 4, false>,
        <f32, 128, 16, 4, true>,
        <f16, 128, 16, 4, false>,
        <f16, 128, 16, 4, true>
    ),
    check = key_pass_arguments::<false>,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dk: [BHKV, SK, D],
        dv: [BHKV, SK, D],
        SK >= 1,
        BHKV >= 1
    ),
    grid = [ceil_div(SK, WARPS * 16), BHKV, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dkdv_f16<
    G: RegDtype,
    const D: usize,
    const QT: usize,
    const WARPS: usize,
    const CAUSAL: bool,
>(
    q: Gl<f16, 3>,
    k: Gl<f16, 3>,
    v: Gl<f16, 3>,
    d_o: Gl<f16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dk: GlMut<G, 3>,
    dv: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
) {
    // No window and no cap: their arguments are never read.
    key_tiles::<f16, G, D, QT, WARPS, CAUSAL, false, false, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dk,
        dv,
        sm_scale,
        lit(0),
        lit(0),
        lit(1.0),
        None,
    );
}

/// [`attention_bwd_dq`] for f16 Q, K, V and dO (see [`attention_bwd_dkdv_f16`]), dQ in f32 or
/// f16. Grid: `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 16, 32, 4, false>,
        <f32, 64, 16, 32, 4, true>,
        <f16, 64, 16, 32, 4, false>,
        <f16, 64, 16, 32, 4, true>,
        <f32, 128, 16, 16, 4, false>,
        <f32, 128, 16, 16, 4, true>,
        <f16, 128, 16, 16, 4, false>,
        <f16, 128, 16, 16, 4, true>
    ),
    check = query_pass_arguments::<false>,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dq: [BH, SQ, D],
        SK >= 1,
        BHKV >= 1
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dq_f16<
    G: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const CAUSAL: bool,
>(
    q: Gl<f16, 3>,
    k: Gl<f16, 3>,
    v: Gl<f16, 3>,
    d_o: Gl<f16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dq: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
) {
    query_tiles::<f16, G, D, R, KV, WARPS, CAUSAL, false, false, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dq,
        sm_scale,
        lit(0),
        lit(0),
        lit(1.0),
        None,
    );
}

/// [`attention_bwd_dkdv_window`] of
/// [`attention_fwd_alibi`](super::attention::attention_fwd_alibi): the same window, no cap, and
/// ALiBi's bias `−slopes[h]·|i + seq_kv − seq_q − alibi_shift − j|` on the scores of query
/// head h (each K/V head walks the query heads of its group, each with its own slope). The
/// bias does not depend on Q or K: the gradients are the usual ones with the biased P.
/// `sm_scale` must be positive (the bias enters the raw scores divided by it). Grid:
/// `[⌈seq_kv / (WARPS·16)⌉, bh_kv, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 64, 32, 4>, <f32, 128, 16, 4>),
    check = alibi_key_pass_arguments,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dk: [BHKV, SK, D],
        dv: [BHKV, SK, D],
        slopes: [BH],
        SK >= 1,
        BHKV >= 1,
        SQ + SK < (1 << 30)
    ),
    grid = [ceil_div(SK, WARPS * 16), BHKV, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dkdv_alibi<
    G: RegDtype,
    const D: usize,
    const QT: usize,
    const WARPS: usize,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    d_o: Gl<bf16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dk: GlMut<G, 3>,
    dv: GlMut<G, 3>,
    slopes: Gl<f32, 1>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    alibi_shift: Scalar<i32>,
) {
    key_tiles::<bf16, G, D, QT, WARPS, false, true, false, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dk,
        dv,
        sm_scale,
        window_left,
        window_right,
        lit(1.0),
        Some((slopes, alibi_shift)),
    );
}

/// [`attention_bwd_dq_window`] of
/// [`attention_fwd_alibi`](super::attention::attention_fwd_alibi): as
/// [`attention_bwd_dkdv_alibi`], for dQ. Grid: `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]`
/// ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 64, 16, 32, 4>, <f32, 128, 16, 16, 4>),
    check = alibi_query_pass_arguments,
    shapes(
        q: [BH, SQ, D],
        k: [BHKV, SK, D],
        v: [BHKV, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dq: [BH, SQ, D],
        slopes: [BH],
        SK >= 1,
        BHKV >= 1,
        SQ + SK < (1 << 30)
    ),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dq_alibi<
    G: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    d_o: Gl<bf16, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dq: GlMut<G, 3>,
    slopes: Gl<f32, 1>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    alibi_shift: Scalar<i32>,
) {
    query_tiles::<bf16, G, D, R, KV, WARPS, false, true, false, false>(
        q,
        k,
        v,
        d_o,
        lse,
        delta,
        dq,
        sm_scale,
        window_left,
        window_right,
        lit(1.0),
        Some((slopes, alibi_shift)),
    );
}

/// The body of [`attention_bwd_dq`] (`CAUSAL`, no window) and [`attention_bwd_dq_window`]
/// (`WINDOW`): see the module documentation.
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn query_tiles<
    T: RegDtype + MmaPair<T>,
    G: RegDtype,
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
    d_o: Gl<T, 3>,
    lse: Gl<f32, 2>,
    delta: Gl<f32, 2>,
    dq: GlMut<G, 3>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    softcap: Scalar<f32>,
    alibi: Option<(Gl<f32, 1>, Scalar<i32>)>,
) {
    let k_ring: SharedArray<St<T, KV, D>, 2> = alloc_shared();
    let v_ring: SharedArray<St<T, KV, D>, 2> = alloc_shared();
    let (q_block0, head) = (block_idx_x(), block_idx_y());
    let mut q_block = q_block0;
    if CAUSAL || WINDOW {
        // Longest query blocks first, as the forward (causal balancing).
        q_block = grid_dim_x() - 1 - q_block;
    }
    // GQA/MQA: the K/V head of this query head, as the forward.
    let kv_head = match PACKED {
        true => head / (q.dim(2) / k.dim(2)),
        false => head / (q.dim(0) / k.dim(0)),
    };
    let (q_z, q_c) = head_place(PACKED, head, 1, 0);
    let (kv_z, kv_c) = head_place(PACKED, kv_head, 1, 0);
    let q_tile = q_block * WARPS as i32 + warp_idx();
    let q_row0 = q_tile * R as i32;
    let (seq_q, seq_kv) = (q.dim(1), k.dim(1));
    let mut kv_tiles = ceil_div(seq_kv, KV);
    // The only key tile with columns past seq_kv (seq_kv ≥ 1, so it exists).
    let last_tile = kv_tiles - 1;
    let mut first: Scalar<i32> = lit(0);
    let (mut diag0, mut block_row0, mut block_last) = (first, first, first);
    let (mut left, mut right) = (first, first);
    if CAUSAL || WINDOW {
        // The diagonal key of the warp's first row (bottom-right; seq_kv for a warp past
        // seq_q, whose rows are not stored: the sum stays in i32), and the block's first and
        // last rows that exist: the bounds are the block's, as every warp takes part in each
        // tile's copies and barriers.
        diag0 = (q_row0 - seq_q).min(0) + seq_kv;
        block_row0 = q_block * (WARPS * R) as i32;
        block_last = block_row0 + (seq_q - 1 - block_row0).min((WARPS * R - 1) as i32);
    }
    if CAUSAL {
        // As the forward: key tiles past the diagonal of the block's last row are masked for
        // every row of the block (none when it is before key 0).
        kv_tiles = kv_tiles.min(ceil_div(block_last - seq_q + seq_kv + 1, KV).max(0));
    }
    if WINDOW {
        // As the forward: clamped bounds, and the key tiles of the block's rows' windows.
        left = window_left.min(seq_kv).max(-(seq_q + seq_kv));
        right = window_right.min(seq_q).max(-seq_kv);
        first = (block_row0 - seq_q + seq_kv - left).max(0) / KV as i32;
        let end = ceil_div(block_last - seq_q + seq_kv + right + 1, KV);
        kv_tiles = kv_tiles.min(end).max(first);
    }
    if PACKED {
        // Blocks of the grid's `max_seqlen_q` past this sequence's rows have nothing to do.
        if block_row0.ge(seq_q) {
            kv_tiles = first;
        }
    }
    copy_start(k_ring.at(first & 1), k.tile(kv_z, first, kv_c));
    copy_start(v_ring.at(first & 1), v.tile(kv_z, first, kv_c));
    copy_commit();
    let q_own: Rt<T, R, D> = load(q.tile(q_z, q_tile, q_c));
    let do_frag: Rt<T, R, D> = load(d_o.tile(q_z, q_tile, q_c));
    // With ALiBi past head dim 64 the bias's registers beside Q, dO and dQ spill on sm_80, and
    // so do a packed batch's table addressing's (255 registers): each warp parks its Q rows in
    // shared memory and reads them back at each key tile (after the loop's first barrier).
    let q_stash: Option<WarpRows<T, R, D, WARPS>> = match (alibi.is_some() || PACKED) && D > 64 {
        true => Some(alloc_shared()),
        false => None,
    };
    if let Some(qs) = &q_stash {
        store(qs.at(warp_idx()), q_own);
    }
    let lse_row: Rv<f32, R> = load(lse.chunk(head, q_tile));
    let mut d_row: Rv<f32, R> = load(delta.chunk(head, q_tile));
    let mut lse2 = lse_row * std::f32::consts::LOG2_E;
    if CAUSAL || WINDOW {
        // Rows that see no key (LSE −inf, Δ NaN): P = 2^(−inf − inf) = 0 and Δ = 0.
        let seen = lse_row.ne(f32::NEG_INFINITY);
        lse2 = select(seen, lse2, f32::INFINITY);
        d_row = select(seen, d_row, 0.0);
    }
    let mut scale_log2 = sm_scale * std::f32::consts::LOG2_E;
    if SOFTCAP {
        scale_log2 = softcap * std::f32::consts::LOG2_E;
    }

    // ALiBi: this head's slope, and the key on the ALiBi diagonal of the warp's first row.
    let mut alibi_at: Option<(Scalar<i32>, Scalar<f32>)> = None;
    if let Some((slopes, shift)) = alibi {
        let slope: Scalar<f32> = load(slopes.at(head));
        alibi_at = Some((diag0 - shift, slope / sm_scale));
    }
    let mut acc: Rt<f32, R, D> = zeros();
    for kt in range(first, kv_tiles) {
        let (cur, next) = (kt & 1, (kt + 1) & 1);
        // This tile's K and V have landed; after the barrier the previous tile's slots are free.
        copy_wait(0);
        barrier();
        copy_start(k_ring.at(next), k.tile(kv_z, kt + 1, kv_c));
        copy_start(v_ring.at(next), v.tile(kv_z, kt + 1, kv_c));
        copy_commit();
        let kv0 = kt * KV as i32;
        let k_frag: Rt<T, KV, D> = load(k_ring.at(cur));
        let q_frag: Rt<T, R, D> = match &q_stash {
            Some(qs) => load(qs.at(warp_idx())),
            None => q_own,
        };
        let mut s = mma_abt(zeros(), q_frag, k_frag);
        // Capped before masking (tanh(−inf) = −1 would be a finite score); the unmasked values
        // give the cap's derivative.
        let mut th = s;
        if SOFTCAP {
            th = (s * (sm_scale / softcap)).tanh();
            s = th;
        }
        if let Some((alibi_diag0, coef)) = alibi_at {
            // ALiBi: element (r, c) is at distance alibi_diag0 + r − (kv0 + c).
            s = s + alibi_bias::<R, KV, false>(alibi_diag0 - kv0, coef);
        }
        if kt.eq(last_tile) {
            s = mask_cols(s, kv0, seq_kv, f64::NEG_INFINITY);
        }
        if CAUSAL {
            if kv0.gt(diag0 - (KV - 1) as i32) {
                s = mask_causal(s, diag0, kv0, f64::NEG_INFINITY);
            }
        }
        if WINDOW {
            // Keys after row r's right edge diag0 + right + r; before its left edge
            // diag0 − left + r.
            if kv0.gt(diag0 + right - (KV - 1) as i32) {
                s = mask_causal(s, diag0 + right, kv0, f64::NEG_INFINITY);
            }
            if kv0.lt(diag0 - left + (R - 1) as i32) {
                s = mask_anticausal(s, diag0 - left, kv0, f64::NEG_INFINITY);
            }
        }
        let p = sub_row(s * scale_log2, lse2).exp2();
        let v_frag: Rt<T, KV, D> = load(v_ring.at(cur));
        let dp = mma_abt(zeros(), do_frag, v_frag);
        let mut ds = p * sub_row(dp, d_row);
        if SOFTCAP {
            // d(cap·tanh(x/cap))/dx = 1 − tanh²; the scale multiplies dQ at the end.
            ds = ds - ds * (th * th);
        }
        let k_col: Rt<T, KV, D, Col> = load(k_ring.at(cur));
        acc = mma_ab(acc, ds.cast::<T>(), k_col);
    }
    copy_wait(0);
    store(dq.tile(q_z, q_tile, q_c), (acc * sm_scale).cast::<G>());
}

/// [`attention_bwd_dkdv_window`] over a variable-length packed batch, the backward of
/// [`attention_fwd_varlen`](super::attention::attention_fwd_varlen): each table holds one
/// entry per sequence (Q, dO `[1, len_q, Hq·D]`, K, V, dK, dV `[1, len_k, Hkv·D]`, LSE and Δ
/// `[Hq, len_q]`), the window around the diagonal `top_left` picks, as the forward's. Grid:
/// `[⌈max_seqlen_k / (WARPS·16)⌉, Hkv, batch]`; blocks past a sequence's keys do nothing.
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 32, 4, false>,
        <f32, 64, 32, 4, true>,
        <f32, 128, 16, 4, false>,
        <f32, 128, 16, 4, true>
    ),
    check = varlen_key_pass_arguments::<SOFTCAP>,
    shapes(
        q: [B, 4],
        k: [B, 4],
        v: [B, 4],
        d_o: [B, 4],
        lse: [B, 3],
        delta: [B, 3],
        dk: [B, 4],
        dv: [B, 4]
    )
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dkdv_varlen<
    G: RegDtype,
    const D: usize,
    const QT: usize,
    const WARPS: usize,
    const SOFTCAP: bool,
>(
    q: GlTable<bf16, 3>,
    k: GlTable<bf16, 3>,
    v: GlTable<bf16, 3>,
    d_o: GlTable<bf16, 3>,
    lse: GlTable<f32, 2>,
    delta: GlTable<f32, 2>,
    dk: GlTableMut<G, 3>,
    dv: GlTableMut<G, 3>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    top_left: Scalar<i32>,
    softcap: Scalar<f32>,
) {
    let b = block_idx_z();
    let (qb, kb) = (q.view(b), k.view(b));
    let (wl, wr) = varlen_window(qb.dim(1), kb.dim(1), window_left, window_right, top_left);
    key_tiles::<bf16, G, D, QT, WARPS, false, true, SOFTCAP, true>(
        qb,
        kb,
        v.view(b),
        d_o.view(b),
        lse.view(b),
        delta.view(b),
        dk.view(b),
        dv.view(b),
        sm_scale,
        wl,
        wr,
        softcap,
        None,
    );
}

/// [`attention_bwd_dq_window`] over a variable-length packed batch (the tables of
/// [`attention_bwd_dkdv_varlen`], dQ `[1, len_q, Hq·D]`). Grid:
/// `[⌈max_seqlen_q / (WARPS·R)⌉, Hq, batch]`; blocks past a sequence's rows do no key tile.
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 16, 32, 4, false>,
        <f32, 64, 16, 32, 4, true>,
        <f32, 128, 16, 16, 4, false>,
        <f32, 128, 16, 16, 4, true>
    ),
    check = varlen_query_pass_arguments::<SOFTCAP>,
    shapes(
        q: [B, 4],
        k: [B, 4],
        v: [B, 4],
        d_o: [B, 4],
        lse: [B, 3],
        delta: [B, 3],
        dq: [B, 4]
    )
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd_dq_varlen<
    G: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const SOFTCAP: bool,
>(
    q: GlTable<bf16, 3>,
    k: GlTable<bf16, 3>,
    v: GlTable<bf16, 3>,
    d_o: GlTable<bf16, 3>,
    lse: GlTable<f32, 2>,
    delta: GlTable<f32, 2>,
    dq: GlTableMut<G, 3>,
    sm_scale: Scalar<f32>,
    window_left: Scalar<i32>,
    window_right: Scalar<i32>,
    top_left: Scalar<i32>,
    softcap: Scalar<f32>,
) {
    let b = block_idx_z();
    let (qb, kb) = (q.view(b), k.view(b));
    let (wl, wr) = varlen_window(qb.dim(1), kb.dim(1), window_left, window_right, top_left);
    query_tiles::<bf16, G, D, R, KV, WARPS, false, true, SOFTCAP, true>(
        qb,
        kb,
        v.view(b),
        d_o.view(b),
        lse.view(b),
        delta.view(b),
        dq.view(b),
        sm_scale,
        wl,
        wr,
        softcap,
        None,
    );
}

/// The checks of [`attention_bwd_dkdv_varlen`]: a finite scale (argument 8) and, with
/// `SOFTCAP`, a positive finite cap (argument 12).
pub fn varlen_key_pass_arguments<const SOFTCAP: bool>(args: &[LaunchArg]) -> Result<(), String> {
    finite_scale::<8>(args)?;
    positive_cap::<SOFTCAP>(args, 12)
}

/// The checks of [`attention_bwd_dq_varlen`]: a finite scale (argument 7) and, with
/// `SOFTCAP`, a positive finite cap (argument 11).
pub fn varlen_query_pass_arguments<const SOFTCAP: bool>(args: &[LaunchArg]) -> Result<(), String> {
    finite_scale::<7>(args)?;
    positive_cap::<SOFTCAP>(args, 11)
}

/// The launch grid for `bh` heads of `rows` rows (queries or keys), `block_rows` per block.
pub fn rows_grid(bh: usize, rows: usize, block_rows: usize) -> [u32; 3] {
    [
        tiles(rows, block_rows),
        u32::try_from(bh).unwrap_or(u32::MAX),
        1,
    ]
}

/// `sm_scale` (argument `AT`) must be finite: a NaN or infinite scale has no gradient.
pub fn finite_scale<const AT: usize>(args: &[LaunchArg]) -> Result<(), String> {
    match args.get(AT) {
        Some(LaunchArg::Scalar(_, s)) if s.is_finite() => Ok(()),
        Some(LaunchArg::Scalar(_, s)) => Err(format!(
            "`sm_scale` is {s}, but the attention backward needs a finite scale (expected the \
             forward's, e.g. 1/√D)"
        )),
        _ => Err(format!(
            "`sm_scale` (argument {AT}) must be an f32 scalar, as expected"
        )),
    }
}

/// The checks of the key pass ([`attention_bwd_dkdv`], [`attention_bwd_dkdv_window`]): a finite
/// scale (argument 8), K/V heads dividing the query heads and, with `SOFTCAP`, a positive
/// finite cap (argument 11).
pub fn key_pass_arguments<const SOFTCAP: bool>(args: &[LaunchArg]) -> Result<(), String> {
    finite_scale::<8>(args)?;
    kv_heads_divide(args)?;
    positive_cap::<SOFTCAP>(args, 11)
}

/// The checks of the query pass ([`attention_bwd_dq`], [`attention_bwd_dq_window`]): as
/// [`key_pass_arguments`] with the scale at argument 7 and the cap at 10.
pub fn query_pass_arguments<const SOFTCAP: bool>(args: &[LaunchArg]) -> Result<(), String> {
    finite_scale::<7>(args)?;
    kv_heads_divide(args)?;
    positive_cap::<SOFTCAP>(args, 10)
}

/// A positive finite `sm_scale` at argument `AT` (ALiBi's bias is divided by it).
fn positive_scale<const AT: usize>(args: &[LaunchArg]) -> Result<(), String> {
    match args.get(AT) {
        Some(LaunchArg::Scalar(_, s)) if s.is_finite() && *s > 0.0 => Ok(()),
        Some(LaunchArg::Scalar(_, s)) => Err(format!(
            "`sm_scale` is {s}, but the ALiBi backward needs the forward's positive finite scale"
        )),
        _ => Err(format!("`sm_scale` (argument {AT}) must be an f32 scalar")),
    }
}

/// The checks of [`attention_bwd_dkdv_alibi`]: a positive finite scale (argument 9) and K/V
/// heads dividing the query heads.
pub fn alibi_key_pass_arguments(args: &[LaunchArg]) -> Result<(), String> {
    positive_scale::<9>(args)?;
    kv_heads_divide(args)
}

/// The checks of [`attention_bwd_dq_alibi`]: as [`alibi_key_pass_arguments`], the scale at
/// argument 8.
pub fn alibi_query_pass_arguments(args: &[LaunchArg]) -> Result<(), String> {
    positive_scale::<8>(args)?;
    kv_heads_divide(args)
}

/// GQA/MQA: `bh_kv` (K's first dimension, argument 1) must divide `bh_q` (Q's, argument 0).
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

fn positive_cap<const SOFTCAP: bool>(args: &[LaunchArg], at: usize) -> Result<(), String> {
    if !SOFTCAP {
        return Ok(());
    }
    match args.get(at) {
        Some(LaunchArg::Scalar(_, c)) if c.is_finite() && *c > 0.0 => Ok(()),
        Some(LaunchArg::Scalar(_, c)) => Err(format!(
            "`softcap` is {c}, but soft-capping needs a positive finite cap (the forward's, \
             e.g. 50)"
        )),
        _ => Err(format!("`softcap` (argument {at}) must be an f32 scalar")),
    }
}

/// Head dims the backward has kernels for, for every option of the forward.
pub const HEAD_DIMS: [usize; 2] = [64, 128];

/// Head dims the backward has for plain and bottom-right causal bf16 attention only (no
/// window, soft-capping, ALiBi, top-left causal alignment with `seq_q ≠ seq_kv`, or f16).
pub const PLAIN_ONLY_HEAD_DIMS: [usize; 1] = [96];

/// Head dims [`backward_varlen`] has kernels for. At 128 the varlen dQ pass keeps its Q rows
/// in shared memory (in registers beside the table addressing it spilled on sm_80: table views
/// carry no alignment fact).
pub const VARLEN_HEAD_DIMS: [usize; 2] = [64, 128];

/// Runs the backward of [`forward`](super::attention::forward) with the same options on
/// `device`: from Q `[bh_q, seq_q, D]`, K and V `[bh_kv, seq_kv, D]` (bf16, `bh_kv` dividing
/// `bh_q`), the forward's O (bf16 or f32) and LSE (f32, natural log), and the output gradient
/// dO (bf16), writes dQ `[bh_q, seq_q, D]`, dK and dV `[bh_kv, seq_kv, D]` (all f32 or all
/// bf16). `opts` must be the forward's (scale, causal mask and its alignment, window, cap).
/// Head dims [`HEAD_DIMS`], and [`PLAIN_ONLY_HEAD_DIMS`] without a window, soft-capping, ALiBi
/// or f16. The row sums Δ live in a scratch tensor of `bh_q·seq_q` f32.
///
/// Every result is the same bits on every run: dQ has its own pass, and dK, dV of a K/V head
/// sum its query heads in order in one block.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    device: &Device,
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    (o, lse, d_o): (&HostTensor, &HostTensor, &HostTensor),
    opts: &ForwardOptions,
    dq: &mut HostTensor,
    dk: &mut HostTensor,
    dv: &mut HostTensor,
) -> Result<(), crate::Error> {
    let bh_q = q.shape().first().copied().unwrap_or(0);
    let slopes = match &opts.alibi {
        Some(a) => Some(a.per_head(bh_q).map_err(|message| crate::Error::Shape {
            kernel: "attention_bwd_alibi".into(),
            message,
        })?),
        None => None,
    };
    backward_slopes(
        device,
        (q, k, v),
        (o, lse, d_o),
        (opts, slopes.as_deref()),
        (dq, dk, dv),
    )
}

/// [`backward`] of [`forward_with_slopes`](super::attention::forward_with_slopes): the same
/// slopes tensor (f32 `[heads]` or `[batch, heads]`), `opts.alibi` `None`. f32 gradients only.
#[allow(clippy::too_many_arguments)]
pub fn backward_with_slopes(
    device: &Device,
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    (o, lse, d_o): (&HostTensor, &HostTensor, &HostTensor),
    opts: &ForwardOptions,
    slopes: &HostTensor,
    dq: &mut HostTensor,
    dk: &mut HostTensor,
    dv: &mut HostTensor,
) -> Result<(), crate::Error> {
    let bh_q = q.shape().first().copied().unwrap_or(0);
    let per_head = slopes_per_head(slopes, bh_q, opts).map_err(|message| crate::Error::Shape {
        kernel: "attention_bwd_alibi".into(),
        message,
    })?;
    backward_slopes(
        device,
        (q, k, v),
        (o, lse, d_o),
        (opts, Some(&per_head)),
        (dq, dk, dv),
    )
}

/// [`backward`] with the slopes of every flattened query head when ALiBi is on.
fn backward_slopes(
    device: &Device,
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    (o, lse, d_o): (&HostTensor, &HostTensor, &HostTensor),
    (opts, slopes): (&ForwardOptions, Option<&[f32]>),
    (dq, dk, dv): (&mut HostTensor, &mut HostTensor, &mut HostTensor),
) -> Result<(), crate::Error> {
    let refuse = |message: String| crate::Error::Shape {
        kernel: "attention_bwd".into(),
        message,
    };
    let (&[bh_q, seq_q, d], &[bh_kv, seq_kv, _]) = (q.shape(), k.shape()) else {
        return Err(refuse(format!(
            "Q and K must be [batch·heads, seq, head dim], got {:?} and {:?}",
            q.shape(),
            k.shape()
        )));
    };
    if !HEAD_DIMS.contains(&d) && !PLAIN_ONLY_HEAD_DIMS.contains(&d) {
        return Err(refuse(format!(
            "head dim {d} is not supported; supported: {HEAD_DIMS:?}, and {PLAIN_ONLY_HEAD_DIMS:?} \
             without a window, soft-capping, ALiBi or f16"
        )));
    }
    if bh_kv == 0 || bh_q % bh_kv != 0 {
        return Err(refuse(format!(
            "K and V have {bh_kv} heads (batch·heads) and Q {bh_q}: with GQA/MQA the K/V heads \
             must divide the query heads"
        )));
    }
    // The plain kernels compute exactly the options with no window and no cap whose causal
    // mask (if any) is the bottom-right one (the same as top-left when seq_q = seq_kv); the
    // window kernels compute every other (top-left causal is a window).
    let plain = opts.window_left.is_none()
        && opts.window_right.is_none()
        && opts.softcap.is_none()
        && (!opts.causal || opts.align == Align::BottomRight || seq_q == seq_kv);
    let half_inputs = q.dtype() == ScalarType::F16;
    if PLAIN_ONLY_HEAD_DIMS.contains(&d) && (!plain || slopes.is_some() || half_inputs) {
        return Err(refuse(format!(
            "head dim {d} has the backward of plain or bottom-right causal bf16 attention only \
             (no window, soft-capping, ALiBi, top-left causal alignment with seq_q ≠ seq_kv or \
             f16 inputs); those are supported at head dims {HEAD_DIMS:?}"
        )));
    }
    if half_inputs {
        if !plain || slopes.is_some() {
            return Err(refuse(
                "f16 inputs have the backward of plain or bottom-right causal attention only \
                 (no window, soft-capping, ALiBi or top-left causal alignment with \
                 seq_q ≠ seq_kv), as the f16 forward; use bf16"
                    .into(),
            ));
        }
        return backward_f16(
            device,
            (q, k, v),
            (o, lse, d_o),
            opts,
            (dq, dk, dv),
            (bh_q, bh_kv, seq_q, seq_kv, d),
        );
    }
    let grads = dq.dtype();
    if ![ScalarType::F32, ScalarType::BF16].contains(&grads) {
        return Err(refuse(format!(
            "gradients of dtype {grads:?} are not supported; expected f32 or bf16"
        )));
    }
    let mut delta = HostTensor::zeros(ScalarType::F32, &[bh_q, seq_q]);
    let pre = rows_grid(bh_q, seq_q, 64);
    match (o.dtype(), d) {
        (ScalarType::F32, 64) => {
            attention_bwd_preprocess::<f32, 64, 16, 4>::launch(device, pre, o, d_o, &mut delta)
        }
        (ScalarType::F32, 96) => {
            attention_bwd_preprocess::<f32, 96, 16, 4>::launch(device, pre, o, d_o, &mut delta)
        }
        (ScalarType::F32, _) => {
            attention_bwd_preprocess::<f32, 128, 16, 4>::launch(device, pre, o, d_o, &mut delta)
        }
        (_, 64) => {
            attention_bwd_preprocess::<bf16, 64, 16, 4>::launch(device, pre, o, d_o, &mut delta)
        }
        (_, 96) => {
            attention_bwd_preprocess::<bf16, 96, 16, 4>::launch(device, pre, o, d_o, &mut delta)
        }
        _ => attention_bwd_preprocess::<bf16, 128, 16, 4>::launch(device, pre, o, d_o, &mut delta),
    }?;
    let s = ScalarArg::from(opts.sm_scale);
    let kg = rows_grid(bh_kv, seq_kv, 4 * KEYS_PER_WARP);
    let qg = rows_grid(bh_q, seq_q, 64);
    let delta = &delta;
    if let Some(slopes) = slopes {
        if opts.softcap.is_some() {
            return Err(refuse(
                "ALiBi with soft-capping is not supported (no kernel registers both)".into(),
            ));
        }
        if grads != ScalarType::F32 {
            return Err(refuse(format!(
                "gradients of dtype {grads:?} are not supported with ALiBi; expected f32"
            )));
        }
        let slopes_t = HostTensor::new(
            ScalarType::F32,
            &[bh_q],
            &slopes.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(),
        )?;
        let (left, right) = opts.kernel_window(seq_q, seq_kv);
        let (l, r) = (ScalarArg::from(left), ScalarArg::from(right));
        let shift = ScalarArg::from(crate::kernels::attention::alibi_shift(
            opts.align, seq_q, seq_kv,
        ));
        let st = &slopes_t;
        return match d {
            64 => {
                attention_bwd_dkdv_alibi::<f32, 64, 32, 4>::launch(
                    device, kg, q, k, v, d_o, lse, delta, dk, dv, st, s, l, r, shift,
                )?;
                attention_bwd_dq_alibi::<f32, 64, 16, 32, 4>::launch(
                    device, qg, q, k, v, d_o, lse, delta, dq, st, s, l, r, shift,
                )
            }
            _ => {
                attention_bwd_dkdv_alibi::<f32, 128, 16, 4>::launch(
                    device, kg, q, k, v, d_o, lse, delta, dk, dv, st, s, l, r, shift,
                )?;
                attention_bwd_dq_alibi::<f32, 128, 16, 16, 4>::launch(
                    device, qg, q, k, v, d_o, lse, delta, dq, st, s, l, r, shift,
                )
            }
        };
    }
    // Head dim 96 runs blocks of 6 warps: the thread count and the 96 columns of Q, K, V and
    // dO then divide one another, as the element-wise copies of views without alignment facts
    // need (see `attention`'s module documentation).
    macro_rules! plain {
        ($g:ty, $d:literal, $qt:literal, $kv:literal, $warps:literal, $causal:literal) => {{
            attention_bwd_dkdv::<$g, $d, $qt, $warps, $causal>::launch(
                device,
                rows_grid(bh_kv, seq_kv, $warps * KEYS_PER_WARP),
                q,
                k,
                v,
                d_o,
                lse,
                delta,
                dk,
                dv,
                s,
            )?;
            attention_bwd_dq::<$g, $d, 16, $kv, $warps, $causal>::launch(
                device,
                rows_grid(bh_q, seq_q, 16 * $warps),
                q,
                k,
                v,
                d_o,
                lse,
                delta,
                dq,
                s,
            )
        }};
    }
    if plain {
        return match (grads, d, opts.causal) {
            (ScalarType::F32, 64, false) => plain!(f32, 64, 32, 32, 4, false),
            (ScalarType::F32, 64, true) => plain!(f32, 64, 32, 32, 4, true),
            (ScalarType::F32, 96, false) => plain!(f32, 96, 32, 32, 6, false),
            (ScalarType::F32, 96, true) => plain!(f32, 96, 32, 32, 6, true),
            (ScalarType::F32, _, false) => plain!(f32, 128, 16, 16, 4, false),
            (ScalarType::F32, _, true) => plain!(f32, 128, 16, 16, 4, true),
            (_, 64, false) => plain!(bf16, 64, 32, 32, 4, false),
            (_, 64, true) => plain!(bf16, 64, 32, 32, 4, true),
            (_, 96, false) => plain!(bf16, 96, 32, 32, 6, false),
            (_, 96, true) => plain!(bf16, 96, 32, 32, 6, true),
            (_, _, false) => plain!(bf16, 128, 16, 16, 4, false),
            (_, _, true) => plain!(bf16, 128, 16, 16, 4, true),
        };
    }
    let (left, right) = opts.kernel_window(seq_q, seq_kv);
    let (l, r) = (ScalarArg::from(left), ScalarArg::from(right));
    let cap = ScalarArg::from(opts.softcap.unwrap_or(1.0));
    macro_rules! windowed {
        ($g:ty, $d:literal, $qt:literal, $kv:literal, $cap:literal) => {{
            attention_bwd_dkdv_window::<$g, $d, $qt, 4, $cap>::launch(
                device, kg, q, k, v, d_o, lse, delta, dk, dv, s, l, r, cap,
            )?;
            attention_bwd_dq_window::<$g, $d, 16, $kv, 4, $cap>::launch(
                device, qg, q, k, v, d_o, lse, delta, dq, s, l, r, cap,
            )
        }};
    }
    match (grads, d, opts.softcap.is_some()) {
        (ScalarType::F32, 64, false) => windowed!(f32, 64, 32, 32, false),
        (ScalarType::F32, 64, true) => windowed!(f32, 64, 32, 32, true),
        (ScalarType::F32, _, false) => windowed!(f32, 128, 16, 16, false),
        (ScalarType::F32, _, true) => windowed!(f32, 128, 16, 16, true),
        (_, 64, false) => windowed!(bf16, 64, 32, 32, false),
        (_, 64, true) => windowed!(bf16, 64, 32, 32, true),
        (_, _, false) => windowed!(bf16, 128, 16, 16, false),
        (_, _, true) => windowed!(bf16, 128, 16, 16, true),
    }
}

/// [`backward`] for f16 inputs, plain or bottom-right causal (checked by the caller):
/// [`attention_bwd_preprocess_f16`], [`attention_bwd_dkdv_f16`] and [`attention_bwd_dq_f16`],
/// with f32 or f16 gradients.
fn backward_f16(
    device: &Device,
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    (o, lse, d_o): (&HostTensor, &HostTensor, &HostTensor),
    opts: &ForwardOptions,
    (dq, dk, dv): (&mut HostTensor, &mut HostTensor, &mut HostTensor),
    (bh_q, bh_kv, seq_q, seq_kv, d): (usize, usize, usize, usize, usize),
) -> Result<(), crate::Error> {
    let refuse = |message: String| crate::Error::Shape {
        kernel: "attention_bwd_f16".into(),
        message,
    };
    for (name, t) in [("k", k), ("v", v), ("o", o), ("d_o", d_o)] {
        if t.dtype() != ScalarType::F16 {
            return Err(refuse(format!(
                "`q` is f16 and `{name}` {}: the f16 backward needs Q, K, V, O and dO all f16",
                t.dtype()
            )));
        }
    }
    let grads = dq.dtype();
    if ![ScalarType::F32, ScalarType::F16].contains(&grads) {
        return Err(refuse(format!(
            "gradients of dtype {grads:?} are not supported with f16 inputs; expected f32 or f16"
        )));
    }
    let mut delta = HostTensor::zeros(ScalarType::F32, &[bh_q, seq_q]);
    let pre = rows_grid(bh_q, seq_q, 64);
    match d {
        64 => attention_bwd_preprocess_f16::<64, 16, 4>::launch(device, pre, o, d_o, &mut delta),
        _ => attention_bwd_preprocess_f16::<128, 16, 4>::launch(device, pre, o, d_o, &mut delta),
    }?;
    let s = ScalarArg::from(opts.sm_scale);
    let kg = rows_grid(bh_kv, seq_kv, 4 * KEYS_PER_WARP);
    let qg = rows_grid(bh_q, seq_q, 64);
    let delta = &delta;
    macro_rules! half {
        ($g:ty, $d:literal, $qt:literal, $kv:literal, $causal:literal) => {{
            attention_bwd_dkdv_f16::<$g, $d, $qt, 4, $causal>::launch(
                device, kg, q, k, v, d_o, lse, delta, dk, dv, s,
            )?;
            attention_bwd_dq_f16::<$g, $d, 16, $kv, 4, $causal>::launch(
                device, qg, q, k, v, d_o, lse, delta, dq, s,
            )
        }};
    }
    match (grads, d, opts.causal) {
        (ScalarType::F32, 64, false) => half!(f32, 64, 32, 32, false),
        (ScalarType::F32, 64, true) => half!(f32, 64, 32, 32, true),
        (ScalarType::F32, _, false) => half!(f32, 128, 16, 16, false),
        (ScalarType::F32, _, true) => half!(f32, 128, 16, 16, true),
        (_, 64, false) => half!(f16, 64, 32, 32, false),
        (_, 64, true) => half!(f16, 64, 32, 32, true),
        (_, _, false) => half!(f16, 128, 16, 16, false),
        (_, _, true) => half!(f16, 128, 16, 16, true),
    }
}

/// The backward of [`forward_varlen`](super::attention::forward_varlen) with the same options
/// on `device`: from packed Q `[total_q, Hq, D]`, K and V `[total_k, Hkv, D]` (bf16), the
/// forward's O `[total_q, Hq, D]` (bf16) and LSE `[Hq, total_q]` (f32), dO (bf16, as O), and
/// the forward's `cu_seqlens` and maximum lengths, returns dQ `[total_q, Hq, D]`, dK and dV
/// `[total_k, Hkv, D]` in f32. Head dims: [`VARLEN_HEAD_DIMS`]. Δ is computed by
/// [`attention_bwd_preprocess`] over all packed rows at once (it is per row); dQ and dK/dV by
/// [`attention_bwd_dq_varlen`] and [`attention_bwd_dkdv_varlen`], each gradient the same bits
/// on every run, as [`backward`]'s.
#[allow(clippy::too_many_arguments)]
pub fn backward_varlen(
    device: &Device,
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    (o, lse, d_o): (&HostTensor, &HostTensor, &HostTensor),
    (cu_seqlens_q, cu_seqlens_k): (&HostTensor, &HostTensor),
    (max_seqlen_q, max_seqlen_k): (usize, usize),
    opts: &ForwardOptions,
) -> Result<(HostTensor, HostTensor, HostTensor), crate::Error> {
    let refuse = |message: String| crate::Error::Shape {
        kernel: "attention_bwd_varlen".into(),
        message,
    };
    if opts.alibi.is_some() {
        return Err(refuse(
            "ALiBi is not supported on variable-length batches (dense `backward` only)".into(),
        ));
    }
    let (&[total_q, hq, d], &[total_k, hkv, dk_]) = (q.shape(), k.shape()) else {
        return Err(refuse(format!(
            "Q and K must be [total, heads, head dim], got {:?} and {:?}",
            q.shape(),
            k.shape()
        )));
    };
    if !VARLEN_HEAD_DIMS.contains(&d) || dk_ != d {
        return Err(refuse(format!(
            "head dims {d} (Q) and {dk_} (K) are not supported; supported: \
             {VARLEN_HEAD_DIMS:?}, equal"
        )));
    }
    if hkv == 0 || hq % hkv != 0 {
        return Err(refuse(format!(
            "K and V have {hkv} heads and Q {hq}: with GQA/MQA the K/V heads must divide the \
             query heads"
        )));
    }
    for (name, t, shape, dtype) in [
        ("v", v, vec![total_k, hkv, d], ScalarType::BF16),
        ("o", o, vec![total_q, hq, d], ScalarType::BF16),
        ("d_o", d_o, vec![total_q, hq, d], ScalarType::BF16),
        ("lse", lse, vec![hq, total_q], ScalarType::F32),
    ] {
        if t.shape() != shape.as_slice() || t.dtype() != dtype {
            return Err(refuse(format!(
                "`{name}` is a {} tensor of shape {:?}; expected {dtype} {shape:?}",
                t.dtype(),
                t.shape()
            )));
        }
    }
    if max_seqlen_q + max_seqlen_k >= 1 << 30 {
        return Err(refuse(format!(
            "max_seqlen_q + max_seqlen_k is {}; at most 2^30 - 1",
            max_seqlen_q + max_seqlen_k
        )));
    }
    let len_q =
        varlen_lengths("cu_seqlens_q", cu_seqlens_q, total_q, max_seqlen_q).map_err(refuse)?;
    let len_k =
        varlen_lengths("cu_seqlens_k", cu_seqlens_k, total_k, max_seqlen_k).map_err(refuse)?;
    if len_q.len() != len_k.len() {
        return Err(refuse(format!(
            "`cu_seqlens_q` has {} sequences and `cu_seqlens_k` {}",
            len_q.len(),
            len_k.len()
        )));
    }
    let f32_ = ScalarType::F32;
    let batch = len_q.len();
    let mut dq = HostTensor::zeros(f32_, &[total_q, hq, d]);
    let mut dk = HostTensor::zeros(f32_, &[total_k, hkv, d]);
    let mut dv = HostTensor::zeros(f32_, &[total_k, hkv, d]);
    if batch == 0 || hq == 0 || total_q + total_k == 0 {
        return Ok((dq, dk, dv));
    }
    // Δ per packed row: O and dO as [Hq, total_q, D] for the dense preprocess.
    let by_head = |t: &HostTensor| {
        let x = t.to_vec();
        let mut out = Vec::with_capacity(x.len());
        for h in 0..hq {
            for r in 0..total_q {
                out.extend_from_slice(&x[(r * hq + h) * d..][..d]);
            }
        }
        HostTensor::new(ScalarType::BF16, &[hq, total_q, d], &out)
    };
    let mut delta = HostTensor::zeros(f32_, &[hq, total_q]);
    if total_q > 0 {
        let (o_h, do_h) = (by_head(o)?, by_head(d_o)?);
        let pre = rows_grid(hq, total_q, 64);
        match d {
            64 => attention_bwd_preprocess::<bf16, 64, 16, 4>::launch(
                device, pre, &o_h, &do_h, &mut delta,
            ),
            _ => attention_bwd_preprocess::<bf16, 128, 16, 4>::launch(
                device, pre, &o_h, &do_h, &mut delta,
            ),
        }?;
    }
    // One table entry per sequence (see attention_bwd_dkdv_varlen).
    let (lse_all, delta_all) = (lse.to_vec(), delta.to_vec());
    let per_head = |x: &[f64], start: usize, len: usize| {
        let mut out = Vec::with_capacity(hq * len);
        for h in 0..hq {
            out.extend_from_slice(&x[h * total_q + start..][..len]);
        }
        HostTensor::new(f32_, &[hq, len], &out)
    };
    let mut entries: [Vec<HostTensor>; 9] = Default::default();
    let (mut sq, mut sk) = (0, 0);
    for (&lq, &lk) in len_q.iter().zip(&len_k) {
        entries[0].push(packed_rows(q, sq, lq)?);
        entries[1].push(packed_rows(k, sk, lk)?);
        entries[2].push(packed_rows(v, sk, lk)?);
        entries[3].push(packed_rows(d_o, sq, lq)?);
        entries[4].push(per_head(&lse_all, sq, lq)?);
        entries[5].push(per_head(&delta_all, sq, lq)?);
        entries[6].push(HostTensor::zeros(f32_, &[1, lq, hq * d]));
        entries[7].push(HostTensor::zeros(f32_, &[1, lk, hkv * d]));
        entries[8].push(HostTensor::zeros(f32_, &[1, lk, hkv * d]));
        (sq, sk) = (sq + lq, sk + lk);
    }
    let list = |ts: &[HostTensor], dtype: ScalarType, rank: usize| {
        let refs: Vec<&dyn crate::tensor::TensorArg> = ts
            .iter()
            .map(|t| t as &dyn crate::tensor::TensorArg)
            .collect();
        TensorList::of(dtype, rank, &refs).map_err(|e| refuse(e.to_string()))
    };
    let bf = ScalarType::BF16;
    let (ql, kl, vl, dol) = (
        list(&entries[0], bf, 3)?,
        list(&entries[1], bf, 3)?,
        list(&entries[2], bf, 3)?,
        list(&entries[3], bf, 3)?,
    );
    let (ll, deltal) = (list(&entries[4], f32_, 2)?, list(&entries[5], f32_, 2)?);
    let (mut dql, mut dkl, mut dvl) = (
        list(&entries[6], f32_, 3)?,
        list(&entries[7], f32_, 3)?,
        list(&entries[8], f32_, 3)?,
    );
    // The forward's window arguments (see forward_varlen).
    let bound = |w: Option<u32>| w.map_or(i32::MAX, |w| i32::try_from(w).unwrap_or(i32::MAX));
    let left = bound(opts.window_left);
    let mut right = bound(opts.window_right);
    if opts.causal {
        right = right.min(0);
    }
    let s = ScalarArg::from(opts.sm_scale);
    let (l, r) = (ScalarArg::from(left), ScalarArg::from(right));
    let top_left = ScalarArg::from(i32::from(opts.align == Align::TopLeft));
    let cap = ScalarArg::from(opts.softcap.unwrap_or(1.0));
    let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let kg = [
        tiles(max_seqlen_k, 4 * KEYS_PER_WARP),
        to_u32(hkv),
        to_u32(batch),
    ];
    let qg = [tiles(max_seqlen_q, 64), to_u32(hq), to_u32(batch)];
    macro_rules! varlen {
        ($d:literal, $qt:literal, $kv:literal, $cap:literal) => {{
            if max_seqlen_k > 0 {
                attention_bwd_dkdv_varlen::<f32, $d, $qt, 4, $cap>::launch(
                    device, kg, &ql, &kl, &vl, &dol, &ll, &deltal, &mut dkl, &mut dvl, s, l, r,
                    top_left, cap,
                )?;
            }
            if max_seqlen_q > 0 {
                attention_bwd_dq_varlen::<f32, $d, 16, $kv, 4, $cap>::launch(
                    device, qg, &ql, &kl, &vl, &dol, &ll, &deltal, &mut dql, s, l, r, top_left, cap,
                )?;
            }
        }};
    }
    match (d, opts.softcap.is_some()) {
        (64, false) => varlen!(64, 32, 32, false),
        (64, true) => varlen!(64, 32, 32, true),
        (_, false) => varlen!(128, 16, 16, false),
        (_, true) => varlen!(128, 16, 16, true),
    }
    // Back to the packed layouts.
    let unpack = |list: &TensorList, lens: &[usize], heads: usize| {
        let total: usize = lens.iter().sum();
        let mut all = vec![0.0; total * heads * d];
        let mut start = 0;
        for (b, &n) in lens.iter().enumerate() {
            let e = list
                .host(b)
                .ok_or_else(|| refuse(format!("sequence {b}: no gradient came back")))?;
            all[start * heads * d..(start + n) * heads * d].copy_from_slice(&e.to_vec());
            start += n;
        }
        Ok::<_, crate::Error>(HostTensor::new(f32_, &[total, heads, d], &all)?)
    };
    dq = unpack(&dql, &len_q, hq)?;
    dk = unpack(&dkl, &len_k, hkv)?;
    dv = unpack(&dvl, &len_k, hkv)?;
    Ok((dq, dk, dv))
}

/// The gradients `(dQ, dK, dV)` of `loss = Σ dO ∘ O` for `O = softmax(s·Q·Kᵀ [+ causal mask])·V`
/// (causal aligned bottom-right, as the forward, dense heads): [`reference_grads_with`] with
/// only `causal` set.
pub fn reference_grads(
    (q, k, v, d_o): (&[f64], &[f64], &[f64], &[f64]),
    (bh, seq_q, seq_kv, d): (usize, usize, usize, usize),
    sm_scale: f64,
    causal: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let opts = ForwardOptions {
        causal,
        ..ForwardOptions::new(sm_scale as f32)
    };
    let ([dq, dk, dv], _) = grads_from_definition(
        (q, k, v, d_o),
        (bh, bh, seq_q, seq_kv, d),
        sm_scale,
        &opts,
        None,
        Rounding::new(ScalarType::BF16, ScalarType::F32),
    );
    (dq, dk, dv)
}

/// The gradients `(dQ, dK, dV)` of `loss = Σ dO ∘ O` for O as
/// [`reference_with`] defines it from `opts`, in f64, for
/// row-major Q and dO `[bh_q, seq_q, d]`, K and V `[bh_kv, seq_kv, d]` (query head h reads K/V
/// head `h / (bh_q / bh_kv)`). With `x = s·q·k` the raw score, `S = c·tanh(x/c)` with a cap c
/// (else `S = x`) over the keys a row sees, `P` the softmax of S: `dV = Pᵀ·dO`, `dP = dO·Vᵀ`,
/// `dS = P ∘ (dP − rowsum(P ∘ dP))`, `dX = dS ∘ (1 − tanh²(x/c))` (or dS), `dQ = s·dX·K`,
/// `dK = s·dXᵀ·Q`, the K/V head's sums over its query heads. Rows that see no key add nothing.
pub fn reference_grads_with(
    (q, k, v, d_o): (&[f64], &[f64], &[f64], &[f64]),
    dims: (usize, usize, usize, usize, usize),
    opts: &ForwardOptions,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rounding = Rounding::new(ScalarType::BF16, ScalarType::F32);
    let ([dq, dk, dv], _) = reference_grads_bounded((q, k, v, d_o), dims, opts, None, rounding);
    (dq, dk, dv)
}

/// [`reference_grads_with`] with ALiBi slopes per flattened query head (`slopes[h]`) instead of
/// `opts.alibi`: the scores carry `−slope·|diag − j|`, a constant in Q and K, so only P changes.
pub fn reference_grads_with_slopes(
    (q, k, v, d_o): (&[f64], &[f64], &[f64], &[f64]),
    dims: (usize, usize, usize, usize, usize),
    opts: &ForwardOptions,
    slopes: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rounding = Rounding::new(ScalarType::BF16, ScalarType::F32);
    let inputs = (q, k, v, d_o);
    let ([dq, dk, dv], _) = reference_grads_bounded(inputs, dims, opts, Some(slopes), rounding);
    (dq, dk, dv)
}

/// How the backward rounds, for the per-element error bounds of [`reference_grads_bounded`]:
/// the dtype of its mma operands (Q, K, V, dO and the saved O, and P and dS as the mmas take
/// them), the dtype it stores the gradients in, and the factor of headroom over the
/// first-order bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rounding {
    /// bf16 or f16: the inputs' dtype, to which P and dS are rounded for their mmas.
    pub operands: ScalarType,
    /// The stored dQ, dK, dV (f32, bf16 or f16).
    pub grads: ScalarType,
    /// The factor over the first-order bound.
    pub headroom: f64,
}

/// The headroom of [`Rounding::new`] over the first-order bound (second-order terms, f32
/// sums, the approximate `ex2`).
pub const GRAD_HEADROOM: f64 = 2.0;

impl Rounding {
    /// Operands and gradients of the given dtypes, [`GRAD_HEADROOM`].
    pub fn new(operands: ScalarType, grads: ScalarType) -> Rounding {
        Rounding {
            operands,
            grads,
            headroom: GRAD_HEADROOM,
        }
    }

    /// The unit roundoff of `dtype`, 2^−p for p bits of significand (bf16 2⁻⁸, f16 2⁻¹¹).
    fn unit(dtype: ScalarType) -> f64 {
        match dtype {
            ScalarType::BF16 => 2f64.powi(-8),
            ScalarType::F16 => 2f64.powi(-11),
            _ => 2f64.powi(-24),
        }
    }

    /// The absolute error of rounding a value near zero to `dtype`: half f16's smallest
    /// subnormal (2⁻²⁵); bf16 and f32 values below 2⁻¹²⁶ may be flushed to zero.
    fn floor(dtype: ScalarType) -> f64 {
        match dtype {
            ScalarType::F16 => 2f64.powi(-25),
            _ => 2f64.powi(-126),
        }
    }
}

/// [`reference_grads_with`] and, per element of dQ, dK and dV, a bound on the error the
/// backward's roundings can leave, from the definition. With u the operands' unit roundoff
/// and η their rounding floor near zero ([`Rounding`]), for each row i and key j it sees:
/// P_ij is off by `P·(u + ρ) + η` as its mma takes it, where `ρ = c·|t|·2^−10.987` is the
/// error of a capped score `c·t` (PTX `tanh.approx.f32`; 0 without a cap); Δ_i by
/// `u·a_i`, `a_i = 2·Σ_d |dO_id|·Σ_j P_ij·|v_jd|` (O rounded when stored and, in a forward
/// kernel, through P·V with P rounded); dS_ij = P·(dP − Δ)·(1 − t²) by
/// `P·(1 − t²)·(u·(|dP| + |Δ| + a_i) + ρ·|dP − Δ|) + P·|dP − Δ|·2t²·2^−10.987 + η`
/// (its rounding, Δ's and P's errors, the derivative's); then `dV_j ± Σ_i err(P_ij)·|dO_i|`,
/// `dQ_i ± s·Σ_j err(dS_ij)·|k_j|`, `dK_j ± s·Σ_i err(dS_ij)·|q_i|`, times the headroom, plus
/// the gradients' own rounding `u_grads·|g| + η_grads`. Unlike an error normalized by the largest
/// gradient, this holds where dS cancels (Σ_j dS_ij = 0 in every row: a one-key row, a
/// concentrated P). `slopes` (per flattened query head) override `opts.alibi`'s.
pub fn reference_grads_bounded(
    inputs: (&[f64], &[f64], &[f64], &[f64]),
    dims: (usize, usize, usize, usize, usize),
    opts: &ForwardOptions,
    slopes: Option<&[f64]>,
    rounding: Rounding,
) -> ([Vec<f64>; 3], [Vec<f64>; 3]) {
    let from_opts = opts
        .alibi
        .and_then(|a| a.per_head(dims.0).ok())
        .map(|s| s.into_iter().map(f64::from).collect::<Vec<_>>());
    grads_from_definition(
        inputs,
        dims,
        f64::from(opts.sm_scale),
        opts,
        slopes.or(from_opts.as_deref()),
        rounding,
    )
}

/// Compares dQ, dK, dV with the f64 gradients element by element, each within its bound
/// (both from [`reference_grads_bounded`]; recorded with [`record_bounded`]). Returns the
/// largest error of each in units of its bound (at most 1), or a message naming the case, the
/// gradient and its worst element.
pub fn within_bounds(
    name: &str,
    got: [&HostTensor; 3],
    (want, bounds): &([Vec<f64>; 3], [Vec<f64>; 3]),
) -> Result<[f64; 3], String> {
    let mut ratios = [0.0; 3];
    for (n, what) in ["dQ", "dK", "dV"].into_iter().enumerate() {
        let (g, w, b) = (&got[n].to_vec(), &want[n], &bounds[n]);
        ratios[n] = record_bounded(format!("{name}: {what}"), g, w, b);
        // NaN ratios fail too.
        if ratios[n] <= 1.0 {
            continue;
        }
        if g.len() != w.len() {
            return Err(format!(
                "{name}: {what} has {} elements; expected {}",
                g.len(),
                w.len()
            ));
        }
        // As record_bounded: an exact element is within any bound, a non-finite error none.
        let ratio = |x: usize| match (g[x] - w[x]).abs() {
            0.0 => 0.0,
            e if e.is_finite() => e / b[x],
            _ => f64::INFINITY,
        };
        let worst = (0..g.len())
            .max_by(|&x, &y| ratio(x).total_cmp(&ratio(y)))
            .unwrap_or(0);
        return Err(format!(
            "{name}: {what}[{worst}] = {:.6e}, f64 {:.6e}, bound {:.2e} ({:.2} of it)",
            g[worst],
            w[worst],
            b[worst],
            ratio(worst)
        ));
    }
    Ok(ratios)
}

/// [`reference_grads_bounded`] with the scale given in f64 (the options' own is not read).
fn grads_from_definition(
    (q, k, v, d_o): (&[f64], &[f64], &[f64], &[f64]),
    (bh_q, bh_kv, seq_q, seq_kv, d): (usize, usize, usize, usize, usize),
    sm_scale: f64,
    opts: &ForwardOptions,
    slopes: Option<&[f64]>,
    rounding: Rounding,
) -> ([Vec<f64>; 3], [Vec<f64>; 3]) {
    let group = (bh_q / bh_kv.max(1)).max(1);
    let mut dq = vec![0.0; bh_q * seq_q * d];
    let mut dk = vec![0.0; bh_kv * seq_kv * d];
    let mut dv = vec![0.0; bh_kv * seq_kv * d];
    let (mut bq, mut bk, mut bv) = (dq.clone(), dk.clone(), dv.clone());
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cap = opts.softcap.map(f64::from);
    let (u, eta) = (
        Rounding::unit(rounding.operands),
        Rounding::floor(rounding.operands),
    );
    let tanh_error = 2f64.powf(-10.987);
    for h in 0..bh_q {
        let hk = h / group;
        let qrow = |i: usize| (h * seq_q + i) * d;
        let krow = |j: usize| (hk * seq_kv + j) * d;
        for i in 0..seq_q {
            let qi = &q[qrow(i)..][..d];
            let doi = &d_o[qrow(i)..][..d];
            let (lo, hi) = opts.key_range(i, seq_q, seq_kv);
            let keys: Vec<usize> = (0..seq_kv)
                .filter(|&j| (j as i64) >= lo && (j as i64) <= hi)
                .collect();
            if keys.is_empty() {
                continue;
            }
            // (score, tanh of the capped raw score or 0) per key.
            let scores: Vec<(f64, f64)> = keys
                .iter()
                .map(|&j| {
                    let x = sm_scale * dot(qi, &k[krow(j)..][..d]);
                    let bias = alibi_bias_at(slopes, h, opts.align, (i, j), (seq_q, seq_kv));
                    match cap {
                        Some(c) => {
                            let t = (x / c).tanh();
                            (c * t - bias, t)
                        }
                        None => (x - bias, 0.0),
                    }
                })
                .collect();
            let max = scores.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|s| (s.0 - max).exp()).sum();
            let p: Vec<f64> = scores.iter().map(|s| (s.0 - max).exp() / sum).collect();
            let dp: Vec<f64> = keys.iter().map(|&j| dot(doi, &v[krow(j)..][..d])).collect();
            let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            // Δ's error from O rounded to the operands' dtype when stored and, in the forward
            // kernel, through P·V with P rounded: u·2·Σ_d |dO_d|·Σ_j P_j·|v_jd|.
            let o_abs: f64 = (0..d)
                .map(|x| {
                    let o: f64 = keys
                        .iter()
                        .zip(&p)
                        .map(|(&j, pj)| pj * v[krow(j) + x].abs())
                        .sum();
                    2.0 * o * doi[x].abs()
                })
                .sum();
            for (n, &j) in keys.iter().enumerate() {
                let t = scores[n].1;
                let (deriv, rho) = match cap {
                    Some(c) => (1.0 - t * t, c * t.abs() * tanh_error),
                    None => (1.0, 0.0),
                };
                let g = dp[n] - delta;
                let dx = p[n] * g * deriv;
                let p_err = p[n] * (u + rho) + eta;
                let ds_err =
                    p[n] * deriv * (u * (dp[n].abs() + delta.abs() + o_abs) + rho * g.abs())
                        + p[n] * g.abs() * 2.0 * t * t * tanh_error
                        + eta;
                let kj = krow(j);
                for c in 0..d {
                    dv[kj + c] += p[n] * doi[c];
                    dq[qrow(i) + c] += sm_scale * dx * k[kj + c];
                    dk[kj + c] += sm_scale * dx * qi[c];
                    bv[kj + c] += p_err * doi[c].abs();
                    bq[qrow(i) + c] += sm_scale * ds_err * k[kj + c].abs();
                    bk[kj + c] += sm_scale * ds_err * qi[c].abs();
                }
            }
        }
    }
    let (u_grads, eta_grads) = (
        Rounding::unit(rounding.grads),
        Rounding::floor(rounding.grads),
    );
    for (b, g) in [(&mut bq, &dq), (&mut bk, &dk), (&mut bv, &dv)] {
        for (b, g) in b.iter_mut().zip(g) {
            *b = rounding.headroom * *b + u_grads * g.abs() + eta_grads;
        }
    }
    ([dq, dk, dv], [bq, bk, bv])
}

/// O (of Q's dtype) and LSE (f32) as the forward stores them, from the f64 forward reference
/// with the same options: the tests check the backward alone, whatever state the forward
/// kernel is in on the device.
pub fn saved_from_reference(
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    opts: &ForwardOptions,
) -> Result<(HostTensor, HostTensor), String> {
    let (&[bh_q, seq_q, d], &[bh_kv, seq_kv, _]) = (q.shape(), k.shape()) else {
        return Err(format!(
            "Q and K must be [batch·heads, seq, head dim], got {:?} and {:?}",
            q.shape(),
            k.shape()
        ));
    };
    let (o, lse) = reference_with(
        &q.to_vec(),
        &k.to_vec(),
        &v.to_vec(),
        (bh_q, bh_kv, seq_q, seq_kv, d),
        opts,
    );
    Ok((
        HostTensor::new(q.dtype(), &[bh_q, seq_q, d], &o).map_err(|e| e.to_string())?,
        HostTensor::new(ScalarType::F32, &[bh_q, seq_q], &lse).map_err(|e| e.to_string())?,
    ))
}

/// Runs [`backward`] with poisoned outputs of dtype `grads` and compares each gradient with
/// [`reference_grads_bounded`] element by element ([`within_bounds`], the operands' dtype
/// Q's); returns each gradient's largest error in units of its bound, or a message naming the
/// case, the worst element and the seed.
pub fn check_against_reference(
    device: &Device,
    (q, k, v, d_o): (&HostTensor, &HostTensor, &HostTensor, &HostTensor),
    opts: &ForwardOptions,
    grads: ScalarType,
    (name, seed): (&str, u64),
) -> Result<[f64; 3], String> {
    let (&[bh_q, seq_q, d], &[bh_kv, seq_kv, _]) = (q.shape(), k.shape()) else {
        return Err(format!("{name}: Q and K must be of rank 3"));
    };
    let (o, lse) = saved_from_reference((q, k, v), opts)?;
    let mut dq = poisoned(grads, &[bh_q, seq_q, d]);
    let mut dk = poisoned(grads, &[bh_kv, seq_kv, d]);
    let mut dv = poisoned(grads, &[bh_kv, seq_kv, d]);
    backward(
        device,
        (q, k, v),
        (&o, &lse, d_o),
        opts,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .map_err(|e| format!("{name}: {e}"))?;
    let want = reference_grads_bounded(
        (&q.to_vec(), &k.to_vec(), &v.to_vec(), &d_o.to_vec()),
        (bh_q, bh_kv, seq_q, seq_kv, d),
        opts,
        None,
        Rounding::new(q.dtype(), grads),
    );
    within_bounds(name, [&dq, &dk, &dv], &want).map_err(|e| format!("{e} (seed {seed})"))
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let bf = ScalarType::BF16;
    let base = ForwardOptions::new(0.125);
    let causal = ForwardOptions {
        causal: true,
        ..base
    };
    // (bh_q, bh_kv, seq_q, seq_kv, head dim, gradient dtype, options): ragged tiles; more
    // queries than keys (causal: the first 50 rows see no key, a whole 32-row query tile among
    // them); GQA 2:1 with more keys than queries; MQA; top-left causal; a window that empties
    // whole tiles with a soft cap, at head dim 128; head dim 96 plain and causal (more queries
    // than keys).
    let cases = [
        (2, 2, 70, 70, 64, ScalarType::F32, base),
        (2, 1, 50, 70, 96, ScalarType::BF16, base),
        (2, 1, 70, 50, 96, ScalarType::F32, causal),
        (2, 2, 70, 70, 64, ScalarType::F32, causal),
        (1, 1, 90, 40, 64, ScalarType::F32, causal),
        (4, 2, 40, 90, 64, ScalarType::BF16, causal),
        (3, 1, 50, 50, 128, ScalarType::F32, base),
        (
            2,
            2,
            40,
            70,
            64,
            ScalarType::F32,
            ForwardOptions {
                align: Align::TopLeft,
                ..causal
            },
        ),
        (
            2,
            1,
            60,
            100,
            128,
            ScalarType::F32,
            ForwardOptions {
                window_left: Some(20),
                window_right: Some(3),
                softcap: Some(5.0),
                ..base
            },
        ),
        // ALiBi (the standard slopes of 4 heads) with GQA and bottom-right causal, at each
        // head dim.
        (
            4,
            2,
            40,
            70,
            64,
            ScalarType::F32,
            ForwardOptions {
                alibi: Some(Alibi::Standard { heads: 4 }),
                ..causal
            },
        ),
        (
            2,
            1,
            50,
            30,
            128,
            ScalarType::F32,
            ForwardOptions {
                alibi: Some(Alibi::Standard { heads: 2 }),
                ..base
            },
        ),
    ];
    // f16 inputs (plain or bottom-right causal, as the f16 forward), each head dim.
    let f16_cases = [
        (4, 2, 40, 70, 64, ScalarType::F32, causal),
        (2, 1, 50, 30, 128, ScalarType::F16, base),
    ];
    let inputs = cases
        .iter()
        .map(|&c| (bf, c))
        .chain(f16_cases.map(|c| (ScalarType::F16, c)));
    for (dtype, (bh_q, bh_kv, seq_q, seq_kv, d, grads, opts)) in inputs {
        let q = rng.tensor(dtype, &[bh_q, seq_q, d], -1.0, 1.0);
        let k = rng.tensor(dtype, &[bh_kv, seq_kv, d], -1.0, 1.0);
        let v = rng.tensor(dtype, &[bh_kv, seq_kv, d], -1.0, 1.0);
        let d_o = rng.tensor(dtype, &[bh_q, seq_q, d], -1.0, 1.0);
        let name = format!(
            "{bh_q}/{bh_kv} heads {seq_q}×{seq_kv}×{d} {dtype:?} in, {grads:?} out {opts:?}"
        );
        check_against_reference(device, (&q, &k, &v, &d_o), &opts, grads, (&name, rng.seed))?;
    }
    Ok(
        "dQ, dK, dV (f32, bf16 and f16) from the reference forward's O and LSE at head dims 64, \
         96 and 128: full and causal (bottom-right and top-left), ragged tiles, seq_kv ≠ seq_q, GQA \
         and MQA, a window with a soft cap, ALiBi, f16 inputs; each element within its bound \
         from the definition"
            .into(),
    )
}
