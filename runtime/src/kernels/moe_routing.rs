//! Mixture-of-experts routing and permutation on the device: from router logits to the
//! expert-sorted row layout a grouped GEMM reads, and back to tokens.
//!
//! - [`moe_route_softmax`]: softmax top-k. The top `K` logits of each token (its experts) and
//!   their gates `exp(l_i − l_max) / Σ_chosen exp(l_j − l_max)`, the softmax renormalized over
//!   the chosen `K` (Mixtral; Qwen3 with `norm_topk_prob`).
//! - [`moe_route_sigmoid_grouped`]: DeepSeek-V3 routing. Scores `s = sigmoid(l)`; the biased
//!   scores `b = s + bias` (the per-expert bias enters the selection only) pick `TG` of `G`
//!   equal groups of experts by group score (the sum of the group's top-2 biased scores), then
//!   the top `K` experts by biased score within the kept groups; the gates are the unbiased
//!   scores of the chosen experts normalized over the `K` and multiplied by `scale` (the routed
//!   scaling factor, 2.5 in DeepSeek-V3).
//! - [`moe_count_tiles`] → [`moe_expert_offsets`] → [`moe_fill_layout`] → [`moe_scatter`]: the
//!   permutation (counts, prefix sums, scatter of token indices; see [`permute`]).
//! - [`moe_combine`]: unpermute + weighted combine, deterministic (no atomics: each token
//!   gathers its `K` rows in slot order).
//! - [`moe_bias_update`]: the auxiliary-loss-free bias update
//!   `bias_e += rate · sign(mean_load − load_e)`.
//!
//! **Ties** (equal scores, equal group scores): the lower expert (group) id wins, the order of
//! the IR's `topk_row` (a NaN score counts above every number). Chosen experts are listed by
//! descending (biased) score, ties by ascending id.
//!
//! **Layouts.** Rows of the permuted layout are the `(token, slot)` pairs grouped by expert, in
//! ascending token order within an expert. *Contiguous*: expert `e`'s rows start at
//! `offsets[e]`, a multiple of the GEMM tile `align`, and it has `counts[e]` of them followed
//! by padding up to the next multiple of `align`; a buffer of `T·K + E·(align − 1)` rows holds
//! any routing. *Masked* (`capacity > 0`, decode): expert `e` owns rows `[e·capacity,
//! (e+1)·capacity)` and the first `min(counts[e], capacity)` tokens (by token index) fill
//! them; the others are dropped (their `row_of` is −1 and they add nothing to the combine).
//! Padding rows hold token −1 (a gather of zeros, a scatter that writes nothing), and
//! `tile_expert[i]` is the expert of row tile `i` (rows `[i·align, (i+1)·align)`), −1 for a tile
//! with no token.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::{Device, Error, ScalarArg, TensorArg};

/// Warps per block of the per-token kernels (each warp takes 16 tokens).
pub const WARPS: usize = 4;
/// Columns of the output tile of [`moe_combine`].
pub const COMBINE_COLS: usize = 64;

/// Column `c` of `t` as a vector along rows (`i32::MIN` where `c` is outside the tile).
#[crate::func]
pub(crate) fn column_i32(t: Rt<i32, 16, 16>, c: Scalar<i32>) -> Rv<i32, 16> {
    let cols: Rt<i32, 16, 16> = iota_cols();
    reduce_row(Red::Max, select(cols.eq(c), t, i32::MIN))
}

/// Column `c` of `t` as a vector along rows (0 where `c` is outside the tile).
#[crate::func]
pub(crate) fn column_f32(t: Rt<f32, 16, 16>, c: Scalar<i32>) -> Rv<f32, 16> {
    let cols: Rt<i32, 16, 16> = iota_cols();
    reduce_row(Red::Sum, select(cols.eq(c), t, 0.0))
}

/// A tile whose row r is `v[r]` everywhere.
#[crate::func]
pub(crate) fn spread_i32(v: Rv<i32, 16>) -> Rt<i32, 16, 16> {
    let z: Rt<i32, 16, 16> = zeros();
    add_row(z, v)
}

/// Column 0 of rows `16·rt ..` of `v` `[N, 1]` (the token of each permuted row), −1 past its
/// rows: the rows vector of a gather or scatter of those 16 rows.
#[crate::func]
pub fn first_column(v: Gl<i32, 2>, rt: Scalar<i32>) -> Rv<i32, 16> {
    column_i32(load_ids(v, rt), lit::<i32>(0))
}

/// This warp's 16 tokens' expert ids (rows `16·rt ..` of `experts` `[T, K]`), −1 past the
/// view's rows and columns (a masked load reads 0, which is an expert).
#[crate::func]
pub(crate) fn load_ids(experts: Gl<i32, 2>, rt: Scalar<i32>) -> Rt<i32, 16, 16> {
    let ids: Rt<i32, 16, 16> = load(experts.tile(rt, 0));
    let ids = mask_rows(ids, rt * 16, experts.rows(), -1.0);
    mask_cols(ids, 0, experts.cols(), -1.0)
}

/// `onehot[t][e] = 1` where token t chose expert `16·j + e` in one of its `k` slots, else 0.
#[crate::func]
fn onehot(ids: Rt<i32, 16, 16>, j: Scalar<i32>, k: Scalar<i32>) -> Rt<i32, 16, 16> {
    let experts: Rt<i32, 16, 16> = iota_cols() + j * 16;
    let ones: Rt<i32, 16, 16> = fill(1.0);
    let mut oh: Rt<i32, 16, 16> = zeros();
    for c in range(0, k) {
        let id = spread_i32(column_i32(ids, c));
        oh = select(experts.eq(id), ones, oh);
    }
    oh
}

/// Softmax top-k routing (see the module documentation): `experts[t]` the top `K` logits' ids
/// (descending, ties to the lower id), `gates[t]` their softmax renormalized over the `K`.
/// Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<2, 4>, <8, 4>),
    shapes(logits: [T, E], experts: [T, K], gates: [T, K], K >= 1, K <= 16, E >= K),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_route_softmax<const K: usize, const WARPS: usize>(
    logits: Gl<f32, 2>,
    experts: GlMut<i32, 2>,
    gates: GlMut<f32, 2>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    let n_e = logits.cols();
    let mut best = topk_empty::<f32, 16, Row>();
    for j in range(0, ceil_div(n_e, 16)) {
        let l: Rt<f32, 16, 16> = load(logits.tile(rt, j));
        // Columns past E would load as 0 and compete: -inf, and their ids (≥ E) lose every
        // tie with a real expert.
        let l = mask_cols(l, j * 16, n_e, f64::NEG_INFINITY);
        let ids: Rt<i32, 16, 16> = iota_cols() + j * 16;
        best = topk_row_merge(K as u32, l, ids, best);
    }
    let (top, ids) = best;
    // Column 0 holds the maximum; the columns past K hold -inf and exponentiate to 0.
    let e = sub_row(top, row_max(top)).exp();
    let e = mask_cols(e, 0, K as i32, 0.0);
    store(gates.tile(rt, 0), div_row(e, row_sum(e)));
    store(experts.tile(rt, 0), ids);
}

/// Biased scores `sigmoid(l) + bias` of expert tile `j` of this warp's tokens, −inf outside
/// experts `[lo, hi)`.
#[crate::func]
fn biased_scores(
    logits: Gl<f32, 2>,
    bias: Gl<f32, 1>,
    rt: Scalar<i32>,
    j: Scalar<i32>,
    lo: Scalar<i32>,
    hi: Scalar<i32>,
) -> Rt<f32, 16, 16> {
    let l: Rt<f32, 16, 16> = load(logits.tile(rt, j));
    let b: Rv<f32, 16, Cols> = load(bias.chunk(j));
    let scores = add_col(l.sigmoid(), b);
    let ids: Rt<i32, 16, 16> = iota_cols() + j * 16;
    select(ids.ge(lo) & ids.lt(hi), scores, f32::NEG_INFINITY)
}

/// DeepSeek-V3 routing, first half: `kept[t]` = the groups token t keeps, one bit per group
/// (the `TG` of `G` equal groups with the largest sums of their top-2 biased scores, ties to
/// the lower group). Split from [`moe_route_sigmoid_grouped`] so that neither spills on sm_80.
/// Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
///
/// Allowed to spill: compiled for aligned views on sm_80, ptxas keeps two 32-bit values in
/// local memory across the group loop (24 bytes: two stores before it, two loads after; 72
/// registers, so not from register pressure), which is cheaper than refusing aligned launches.
/// The general variant and every other target do not spill.
#[crate::kernel(
    warps = WARPS as u32,
    allow_spills,
    variants(<8, 4, 4>),
    shapes(logits: [T, E], bias: [E], kept: [T], E % G == 0, E >= 2 * G, G <= 30, TG <= G),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_route_groups<const G: usize, const TG: usize, const WARPS: usize>(
    logits: Gl<f32, 2>,
    bias: Gl<f32, 1>,
    kept: GlMut<i32, 1>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    let width = logits.cols() / G as i32;
    // Group scores: column g = the sum of group g's top-2 biased scores (-inf past G).
    let mut group_scores: Rt<f32, 16, 16> = fill(f64::NEG_INFINITY);
    for g in range(0, G as i32) {
        let (lo, hi) = (g * width, g * width + width);
        let mut top2 = topk_empty::<f32, 16, Row>();
        for j in range(lo / 16, ceil_div(hi, 16)) {
            let b = biased_scores(logits, bias, rt, j, lo, hi);
            let ids: Rt<i32, 16, 16> = iota_cols() + j * 16;
            top2 = topk_row_merge(2, b, ids, top2);
        }
        let sum = row_sum(mask_cols(top2.0, 0, 2, 0.0));
        let z: Rt<f32, 16, 16> = zeros();
        let cols: Rt<i32, 16, 16> = iota_cols();
        group_scores = select(cols.eq(g), add_row(z, sum), group_scores);
    }
    let (_, top) = topk_row(TG as u32, group_scores, iota_cols());
    let cols: Rt<i32, 16, 16> = iota_cols();
    let ones: Rt<i32, 16, 16> = fill(1.0);
    store(
        kept.chunk(rt),
        row_sum(select(cols.lt(TG as i32), ones << top.min(30), 0)),
    );
}

/// DeepSeek-V3 routing, second half (see the module documentation): the top `K` experts by
/// biased score within the groups of `kept` ([`moe_route_groups`]); gates
/// `scale · s_i / Σ_chosen s_j` of the unbiased scores. Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<8, 8, 4>),
    shapes(
        logits: [T, E],
        bias: [E],
        kept: [T],
        experts: [T, K],
        gates: [T, K],
        E % G == 0,
        G <= 30,
        K <= 16
    ),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_route_sigmoid_grouped<const K: usize, const G: usize, const WARPS: usize>(
    logits: Gl<f32, 2>,
    bias: Gl<f32, 1>,
    kept: Gl<i32, 1>,
    scale: Scalar<f32>,
    experts: GlMut<i32, 2>,
    gates: GlMut<f32, 2>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    let n_e = logits.cols();
    let width = n_e / G as i32;
    let kept_bits: Rv<i32, 16> = load(kept.chunk(rt));
    let mut best = topk_empty::<f32, 16, Row>();
    for j in range(0, ceil_div(n_e, 16)) {
        let ids: Rt<i32, 16, 16> = iota_cols() + j * 16;
        let group = (ids / width).min(30);
        let bits: Rt<i32, 16, 16> = add_row(zeros(), kept_bits);
        let b = biased_scores(logits, bias, rt, j, lit::<i32>(0), n_e);
        let b = select(((bits >> group) & 1).gt(0), b, f32::NEG_INFINITY);
        best = topk_row_merge(K as u32, b, ids, best);
    }
    let ids = best.1;
    // Gates from the unbiased scores of the chosen experts, gathered from the logits.
    let rows: Rv<i32, 16> = iota_rows::<Rv<i32, 16>>() + rt * 16;
    let mut s: Rt<f32, 16, 16> = zeros();
    for c in range(0, K as i32) {
        let id = column_i32(ids, c);
        let l: Rv<f32, 16> = gather(logits, (rows, id));
        let z: Rt<f32, 16, 16> = zeros();
        let cols: Rt<i32, 16, 16> = iota_cols();
        s = select(cols.eq(c), add_row(z, l.sigmoid()), s);
    }
    store(gates.tile(rt, 0), div_row(s, row_sum(s)) * scale);
    store(experts.tile(rt, 0), ids);
}

/// `tile_counts[b][e]` = how many of tokens `[16·b, 16·b + 16)` chose expert e (`experts`
/// `[T, K]`; ids outside `[0, E)` count nowhere). Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<4>),
    shapes(experts: [T, K], tile_counts: [NB, E], NB == ceil_div(T, 16), K <= 16),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_count_tiles<const WARPS: usize>(experts: Gl<i32, 2>, tile_counts: GlMut<i32, 2>) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    // A vector store's row index must lie inside the view: warps past the last tile rest.
    if rt.lt(tile_counts.rows()) {
        let ids = load_ids(experts, rt);
        for j in range(0, ceil_div(tile_counts.cols(), 16)) {
            let oh = onehot(ids, j, experts.cols());
            store(tile_counts.chunk(rt, j), col_sum(oh));
        }
    }
}

/// From `tile_counts` `[NB, E]`: `counts[e]` (tokens of expert e), `offsets[e]` (its first
/// row; `offsets[E]` the rows in use) and `tile_base[b][e]` (the row of the first token of
/// tile b routed to e). Contiguous layout (`capacity` ≤ 0): experts in order, each padded to a
/// multiple of `align`; masked (`capacity` > 0): expert e at `e·capacity`. One warp.
/// Grid: `[1, 1, 1]`.
#[crate::kernel(
    warps = 1,
    shapes(
        tile_counts: [NB, E],
        counts: [E],
        offsets: [E1],
        tile_base: [NB, E],
        E1 == E + 1
    ),
    grid = [1, 1, 1]
)]
pub fn moe_expert_offsets(
    tile_counts: Gl<i32, 2>,
    align: Scalar<i32>,
    capacity: Scalar<i32>,
    counts: GlMut<i32, 1>,
    offsets: GlMut<i32, 1>,
    tile_base: GlMut<i32, 2>,
) {
    let (nb, n_e) = (tile_counts.rows(), tile_counts.cols());
    let masked = capacity.gt(0);
    let mut run: Scalar<i32> = lit(0);
    for j in range(0, ceil_div(n_e, 16)) {
        let mut total: Rv<i32, 16, Cols> = zeros();
        for b in range(0, ceil_div(nb, 16)) {
            let t: Rt<i32, 16, 16> = load(tile_counts.tile(b, j));
            total += col_sum(t);
        }
        store(counts.chunk(j), total);
        // Experts past E have no tokens and pad to 0 rows.
        let padded = (total + (align - 1)) / align * align;
        // The exclusive prefix of `padded` along the experts: a scan of a tile whose rows
        // all equal it, read back from any row.
        let z: Rt<i32, 16, 16> = zeros();
        let prefix = col_max(exscan_row(Red::Sum, add_col(z, padded)));
        let experts: Rv<i32, 16, Cols> = iota_rows::<Rv<i32, 16, Cols>>() + j * 16;
        let start = select(masked, experts * capacity, prefix + run);
        store(offsets.chunk(j), start);
        run += reduce_all(Red::Sum, padded);
        let mut base = start;
        for b in range(0, ceil_div(nb, 16)) {
            let t: Rt<i32, 16, 16> = load(tile_counts.tile(b, j));
            store(tile_base.tile(b, j), add_col(exscan_col(Red::Sum, t), base));
            base += col_sum(t);
        }
    }
    store(offsets.at(n_e), select(masked, n_e * capacity, run));
}

/// Every row of `sorted_token` `[N, 1]` set to −1 (the scatter then writes the tokens'), and
/// `tile_expert[i]` = the expert of row tile i (rows `[i·align, (i+1)·align)`), −1 for a tile
/// with no token. Grid: `[⌈N / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<4>),
    shapes(
        offsets: [E1],
        counts: [E],
        sorted_token: [N, 1],
        tile_expert: [NT],
        E1 == E + 1,
        NT <= N
    ),
    grid = [ceil_div(N, 16 * WARPS), 1, 1]
)]
pub fn moe_fill_layout<const WARPS: usize>(
    offsets: Gl<i32, 1>,
    counts: Gl<i32, 1>,
    align: Scalar<i32>,
    capacity: Scalar<i32>,
    sorted_token: GlMut<i32, 2>,
    tile_expert: GlMut<i32, 1>,
) {
    let w = block_idx_x() * WARPS as i32 + warp_idx();
    let none: Rt<i32, 16, 16> = fill(-1.0);
    store(sorted_token.tile(w, 0), none);
    // The expert of row r is the last e < E with offsets[e] ≤ r (an empty expert shares its
    // start with the next one, which comes later).
    let first_rows: Rv<i32, 16, Cols> = (iota_rows::<Rv<i32, 16, Cols>>() + w * 16) * align;
    let n_e = counts.len();
    let mut below: Rv<i32, 16, Cols> = zeros();
    for j in range(0, ceil_div(n_e, 16)) {
        let start: Rv<i32, 16> = load(offsets.chunk(j));
        let e: Rv<i32, 16> = iota_rows::<Rv<i32, 16>>() + j * 16;
        // Past E (including offsets[E] itself) a start counts as past every row.
        let start = select(e.lt(n_e), start, i32::MAX);
        let z: Rt<i32, 16, 16> = zeros();
        let starts = add_row(z, start);
        let ones: Rt<i32, 16, 16> = fill(1.0);
        below += col_sum(select(starts.le(add_col(z, first_rows)), ones, 0));
    }
    let expert = below - 1;
    let safe = expert.max(0);
    let start: Rv<i32, 16, Cols> = gather(offsets, safe);
    let count: Rv<i32, 16, Cols> = gather(counts, safe);
    let cap = select(capacity.gt(0), capacity, lit::<i32>(i32::MAX));
    let used = (first_rows - start).lt(count.min(cap)) & expert.ge(0);
    store(tile_expert.chunk(w), select(used, expert, -1));
}

/// Scatters the token indices to their rows of `sorted_token` `[N, 1]` and writes `row_of`
/// `[T, K]` (the row of each (token, slot), −1 when dropped). `tile_base` and `offsets` come
/// from [`moe_expert_offsets`]. Grid: `[⌈T / (16·WARPS)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<4>),
    shapes(
        experts: [T, K],
        tile_base: [NB, E],
        offsets: [E1],
        sorted_token: [N, 1],
        row_of: [T, K],
        NB == ceil_div(T, 16),
        E1 == E + 1,
        K <= 16
    ),
    grid = [ceil_div(T, 16 * WARPS), 1, 1]
)]
pub fn moe_scatter<const WARPS: usize>(
    experts: Gl<i32, 2>,
    tile_base: Gl<i32, 2>,
    offsets: Gl<i32, 1>,
    capacity: Scalar<i32>,
    sorted_token: GlMut<i32, 2>,
    row_of: GlMut<i32, 2>,
) {
    let rt = block_idx_x() * WARPS as i32 + warp_idx();
    if rt.lt(tile_base.rows()) {
        let k = experts.cols();
        let ids = load_ids(experts, rt);
        let cols: Rt<i32, 16, 16> = iota_cols();
        let cap = select(capacity.gt(0), capacity, lit::<i32>(i32::MAX));
        let mut dest: Rt<i32, 16, 16> = fill(-1.0);
        for j in range(0, ceil_div(tile_base.cols(), 16)) {
            let oh = onehot(ids, j, k);
            let base: Rv<i32, 16, Cols> = load(tile_base.chunk(rt, j));
            let start: Rv<i32, 16, Cols> = load(offsets.chunk(j));
            // Row of (token t, expert e): the tile's base for e plus the tokens of the tile
            // before t routed to e; kept unless past a masked expert's capacity.
            let row = add_col(exscan_col(Red::Sum, oh), base);
            let keep = oh.gt(0) & sub_col(row, start).lt(cap);
            let row = select(keep, row, -1);
            for c in range(0, k) {
                let id = spread_i32(column_i32(ids, c) - j * 16);
                let r = row_max(select(cols.eq(id), row, -1));
                dest = select(cols.eq(c), spread_i32(r), dest).max(dest);
            }
        }
        let tokens: Rt<i32, 16, 16> = iota_rows::<Rt<i32, 16, 16>>() + rt * 16;
        for c in range(0, k) {
            scatter_rows(sorted_token, tokens, column_i32(dest, c), 0);
        }
        store(row_of.tile(rt, 0), dest);
    }
}

/// `y[t] = Σ_c gates[t][c] · x[row_of[t][c]]`, slot by slot in order (deterministic; a row of
/// −1 adds nothing). `x` `[N, D]` (the permuted expert outputs), `y` `[T, D]` f32.
/// Grid: `[⌈T / (16·WARPS)⌉, ⌈D / BD⌉, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 64, 4>, <bf16, 64, 4>),
    shapes(x: [N, D], row_of: [T, K], gates: [T, K], y: [T, D], K <= 16),
    grid = [ceil_div(T, 16 * WARPS), ceil_div(D, BD), 1]
)]
pub fn moe_combine<I: RegDtype, const BD: usize, const WARPS: usize>(
    x: Gl<I, 2>,
    row_of: Gl<i32, 2>,
    gates: Gl<f32, 2>,
    y: GlMut<f32, 2>,
) {
    let (rt, dt) = (block_idx_x() * WARPS as i32 + warp_idx(), block_idx_y());
    let rows = load_ids(row_of, rt);
    let g: Rt<f32, 16, 16> = load(gates.tile(rt, 0));
    let mut acc: Rt<f32, 16, BD> = zeros();
    for c in range(0, row_of.cols()) {
        let xs: Rt<I, 16, BD> = gather_rows(x, column_i32(rows, c), dt);
        acc += mul_row(xs.cast::<f32>(), column_f32(g, c));
    }
    store(y.tile(rt, dt), acc);
}

/// The auxiliary-loss-free balance update: `bias[e] += rate · sign(mean − counts[e])` with
/// `mean = Σ counts / E` (an expert above the mean load is made less attractive). One warp.
/// Grid: `[1, 1, 1]`.
#[crate::kernel(
    warps = 1,
    shapes(counts: [E], bias: [E], E >= 1),
    grid = [1, 1, 1]
)]
pub fn moe_bias_update(counts: Gl<i32, 1>, rate: Scalar<f32>, bias: GlMut<f32, 1>) {
    let n_e = counts.len();
    let chunks = ceil_div(n_e, 16);
    let mut total: Rv<i32, 16> = zeros();
    for j in range(0, chunks) {
        let c: Rv<i32, 16> = load(counts.chunk(j));
        total += c;
    }
    let mean = reduce_all(Red::Sum, total).cast::<f32>() / n_e.cast::<f32>();
    for j in range(0, chunks) {
        let c: Rv<i32, 16> = load(counts.chunk(j));
        let err = mean - c.cast::<f32>();
        let up: Rv<f32, 16> = fill(1.0);
        let sign = select(err.gt(0.0), up, select(err.lt(0.0), -up, 0.0));
        let b: Rv<f32, 16> = load(bias.chunk(j));
        store(bias.chunk(j), b + sign * rate);
    }
}

// ---- the user-facing layer ----------------------------------------------------------------

fn shape_error(kernel: &str, message: String) -> Error {
    Error::Shape {
        kernel: kernel.into(),
        message,
    }
}

/// The 2-D shape of `t`, or an error naming `what`.
fn dims2(kernel: &str, what: &str, t: &HostTensor) -> Result<(usize, usize), Error> {
    match t.shape() {
        [a, b] => Ok((*a, *b)),
        s => Err(shape_error(
            kernel,
            format!("`{what}` must be a matrix [tokens, experts], got shape {s:?}"),
        )),
    }
}

/// The experts and gates of a routing: `[T, k]` each.
#[derive(Clone, Debug, PartialEq)]
pub struct Routed {
    /// Expert ids (i32), by descending score, ties to the lower id.
    pub experts: HostTensor,
    /// Gate weights (f32).
    pub gates: HostTensor,
}

/// `$body` with `const $k: usize` bound to the runtime `k` (1 to 16).
macro_rules! with_k {
    ($kernel:expr, $k:expr, |$kk:ident| $body:expr) => {
        match $k {
            1 => {
                const $kk: usize = 1;
                $body
            }
            2 => {
                const $kk: usize = 2;
                $body
            }
            3 => {
                const $kk: usize = 3;
                $body
            }
            4 => {
                const $kk: usize = 4;
                $body
            }
            5 => {
                const $kk: usize = 5;
                $body
            }
            6 => {
                const $kk: usize = 6;
                $body
            }
            7 => {
                const $kk: usize = 7;
                $body
            }
            8 => {
                const $kk: usize = 8;
                $body
            }
            9 => {
                const $kk: usize = 9;
                $body
            }
            10 => {
                const $kk: usize = 10;
                $body
            }
            11 => {
                const $kk: usize = 11;
                $body
            }
            12 => {
                const $kk: usize = 12;
                $body
            }
            13 => {
                const $kk: usize = 13;
                $body
            }
            14 => {
                const $kk: usize = 14;
                $body
            }
            15 => {
                const $kk: usize = 15;
                $body
            }
            16 => {
                const $kk: usize = 16;
                $body
            }
            other => Err(shape_error(
                $kernel,
                format!("top-k must be 1 to 16, got {other}"),
            )),
        }
    };
}

/// Softmax top-`k` routing of `logits` `[T, E]` (f32).
pub fn route_softmax(device: &Device, logits: &HostTensor, k: usize) -> Result<Routed, Error> {
    const NAME: &str = "moe_route_softmax";
    let (t, _) = dims2(NAME, "logits", logits)?;
    let mut experts = HostTensor::zeros(ScalarType::I32, &[t, k]);
    let mut gates = HostTensor::zeros(ScalarType::F32, &[t, k]);
    route_softmax_into(device, logits, k, &mut experts, &mut gates)?;
    Ok(Routed { experts, gates })
}

/// [`route_softmax`] into `experts` and `gates` `[T, k]` (host or device tensors).
pub(crate) fn route_softmax_into(
    device: &Device,
    logits: &dyn TensorArg,
    k: usize,
    experts: &mut dyn TensorArg,
    gates: &mut dyn TensorArg,
) -> Result<(), Error> {
    const NAME: &str = "moe_route_softmax";
    let e = logits.shape().get(1).copied().unwrap_or(0);
    if k > e {
        return Err(shape_error(
            NAME,
            format!("top-{k} of {e} experts: k must be at most E"),
        ));
    }
    with_k!(NAME, k, |KK| moe_route_softmax::<KK, WARPS>::launch_auto(
        device, logits, experts, gates
    ))
}

/// DeepSeek-V3's grouped sigmoid routing: the configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupedRouting {
    /// Experts chosen per token.
    pub top_k: usize,
    /// Groups of experts (8 in DeepSeek-V3; only 8 is instantiated).
    pub groups: usize,
    /// Groups kept per token (4 in DeepSeek-V3).
    pub topk_groups: usize,
    /// The routed scaling factor (2.5 in DeepSeek-V3).
    pub scale: f32,
}

/// Grouped sigmoid routing of `logits` `[T, E]` with the selection bias `bias` `[E]`.
pub fn route_sigmoid_grouped(
    device: &Device,
    logits: &HostTensor,
    bias: &HostTensor,
    cfg: GroupedRouting,
) -> Result<Routed, Error> {
    const NAME: &str = "moe_route_sigmoid_grouped";
    let (t, _) = dims2(NAME, "logits", logits)?;
    let k = cfg.top_k;
    let mut experts = HostTensor::zeros(ScalarType::I32, &[t, k]);
    let mut gates = HostTensor::zeros(ScalarType::F32, &[t, k]);
    let mut kept = HostTensor::zeros(ScalarType::I32, &[t]);
    route_sigmoid_grouped_into(
        device,
        logits,
        bias,
        cfg,
        &mut kept,
        &mut experts,
        &mut gates,
    )?;
    Ok(Routed { experts, gates })
}

/// [`route_sigmoid_grouped`] into `experts` and `gates` `[T, k]`, with `kept` `[T]` (i32) for
/// the groups each token keeps (host or device tensors).
pub(crate) fn route_sigmoid_grouped_into(
    device: &Device,
    logits: &dyn TensorArg,
    bias: &dyn TensorArg,
    cfg: GroupedRouting,
    kept: &mut dyn TensorArg,
    experts: &mut dyn TensorArg,
    gates: &mut dyn TensorArg,
) -> Result<(), Error> {
    const NAME: &str = "moe_route_sigmoid_grouped";
    let scale = ScalarArg::from(cfg.scale);
    macro_rules! launch {
        ($k:literal, $g:literal, $tg:literal) => {
            moe_route_groups::<$g, $tg, WARPS>::launch_auto(device, logits, bias, &mut *kept)
                .and_then(|()| {
                    moe_route_sigmoid_grouped::<$k, $g, WARPS>::launch_auto(
                        device, logits, bias, &*kept, scale, experts, gates,
                    )
                })
        };
    }
    match (cfg.top_k, cfg.groups, cfg.topk_groups) {
        (8, 8, 4) => launch!(8, 8, 4),
        (6, 8, 3) => launch!(6, 8, 3),
        (4, 8, 2) => launch!(4, 8, 2),
        (2, 8, 2) => launch!(2, 8, 2),
        (k, g, tg) => Err(shape_error(
            NAME,
            format!(
                "(top_k, groups, topk_groups) = ({k}, {g}, {tg}) is not instantiated; \
                 expected one of (8, 8, 4), (6, 8, 3), (4, 8, 2), (2, 8, 2)"
            ),
        )),
    }
}

/// The permuted layout of a routing (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct Permutation {
    /// Tokens of each expert (i32 `[E]`, before any capacity cut).
    pub counts: HostTensor,
    /// First row of each expert; `offsets[E]` = rows in use (i32 `[E + 1]`).
    pub offsets: HostTensor,
    /// The token of each row, −1 for padding (i32 `[N, 1]`).
    pub sorted_token: HostTensor,
    /// The row of each (token, slot), −1 when dropped (i32 `[T, k]`).
    pub row_of: HostTensor,
    /// The expert of each row tile of `align` rows, −1 for an empty tile (i32 `[N / align]`).
    pub tile_expert: HostTensor,
}

/// How [`permute`] lays out the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Each expert's rows padded to a multiple of the tile, experts back to back.
    Contiguous,
    /// Each expert owns `capacity` rows (a multiple of the tile); later tokens are dropped.
    Masked { capacity: usize },
}

/// Rows a permutation of `tokens · top_k` pairs over `experts` needs (the worst case).
pub fn permuted_rows(
    tokens: usize,
    top_k: usize,
    experts: usize,
    align: usize,
    layout: Layout,
) -> usize {
    match layout {
        Layout::Contiguous => tokens * top_k + experts * align.saturating_sub(1),
        Layout::Masked { capacity } => experts * capacity,
    }
    .div_ceil(align.max(1))
        * align.max(1)
}

/// Counts, offsets, the expert-sorted token order and each (token, slot)'s row, for `experts`
/// `[T, k]` (i32) over `num_experts` experts with rows in tiles of `align`.
pub fn permute(
    device: &Device,
    experts: &HostTensor,
    num_experts: usize,
    align: usize,
    layout: Layout,
) -> Result<Permutation, Error> {
    let plan = PermutePlan::new(experts.shape(), num_experts, align, layout)?;
    let i32t = ScalarType::I32;
    let (t, k, nb, n) = (plan.tokens, plan.top_k, plan.tokens.div_ceil(16), plan.rows);
    let mut tile_counts = HostTensor::zeros(i32t, &[nb, num_experts]);
    let mut tile_base = HostTensor::zeros(i32t, &[nb, num_experts]);
    let mut counts = HostTensor::zeros(i32t, &[num_experts]);
    let mut offsets = HostTensor::zeros(i32t, &[num_experts + 1]);
    let mut sorted_token = HostTensor::zeros(i32t, &[n, 1]);
    let mut row_of = HostTensor::zeros(i32t, &[t, k]);
    let mut tile_expert = HostTensor::zeros(i32t, &[n / align]);
    plan.launch(
        device,
        experts,
        PermuteBuffers {
            tile_counts: &mut tile_counts,
            tile_base: &mut tile_base,
            counts: &mut counts,
            offsets: &mut offsets,
            sorted_token: &mut sorted_token,
            row_of: &mut row_of,
            tile_expert: &mut tile_expert,
        },
    )?;
    Ok(Permutation {
        counts,
        offsets,
        sorted_token,
        row_of,
        tile_expert,
    })
}

/// A checked permutation of `[T, k]` routed pairs: the sizes of its buffers and its scalar
/// arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PermutePlan {
    pub tokens: usize,
    pub top_k: usize,
    pub experts: usize,
    pub align: usize,
    /// Rows of the layout (the worst case, a multiple of `align`).
    pub rows: usize,
    capacity: usize,
}

/// Where [`PermutePlan::launch`] writes (host or device tensors): `tile_counts`, `tile_base`
/// `[⌈T / 16⌉, E]` (scratch), then the fields of [`Permutation`].
pub(crate) struct PermuteBuffers<'a> {
    pub tile_counts: &'a mut dyn TensorArg,
    pub tile_base: &'a mut dyn TensorArg,
    pub counts: &'a mut dyn TensorArg,
    pub offsets: &'a mut dyn TensorArg,
    pub sorted_token: &'a mut dyn TensorArg,
    pub row_of: &'a mut dyn TensorArg,
    pub tile_expert: &'a mut dyn TensorArg,
}

impl PermutePlan {
    /// Checks a permutation of `experts` of shape `shape` (`[T, k]`).
    pub fn new(
        shape: &[usize],
        num_experts: usize,
        align: usize,
        layout: Layout,
    ) -> Result<PermutePlan, Error> {
        const NAME: &str = "moe_permute";
        let (t, k) = match shape {
            [t, k] => (*t, *k),
            s => {
                return Err(shape_error(
                    NAME,
                    format!("`experts` must be a matrix [tokens, top_k], got shape {s:?}"),
                ))
            }
        };
        if align == 0 || num_experts == 0 {
            return Err(shape_error(
                NAME,
                format!(
                    "align and the expert count must be positive, got {align} and {num_experts}"
                ),
            ));
        }
        let capacity = match layout {
            Layout::Contiguous => 0,
            Layout::Masked { capacity } if capacity > 0 && capacity % align == 0 => capacity,
            Layout::Masked { capacity } => {
                return Err(shape_error(
                    NAME,
                    format!(
                        "capacity must be a positive multiple of align {align}, got {capacity}"
                    ),
                ))
            }
        };
        let rows = permuted_rows(t, k, num_experts, align, layout);
        for (what, v) in [
            ("align", align),
            ("capacity", capacity),
            ("permuted rows", rows),
        ] {
            if i32::try_from(v).is_err() {
                return Err(shape_error(NAME, format!("{what} {v} exceeds i32")));
            }
        }
        Ok(PermutePlan {
            tokens: t,
            top_k: k,
            experts: num_experts,
            align,
            rows,
            capacity,
        })
    }

    /// Launches the permutation's kernels (no host reads between them).
    pub fn launch(
        &self,
        device: &Device,
        experts: &dyn TensorArg,
        b: PermuteBuffers<'_>,
    ) -> Result<(), Error> {
        // Both fit in i32 (checked by `new`).
        let align_arg = ScalarArg::from(self.align as i32);
        let cap_arg = ScalarArg::from(self.capacity as i32);
        if self.tokens > 0 {
            moe_count_tiles::<WARPS>::launch_auto(device, experts, &mut *b.tile_counts)?;
        }
        moe_expert_offsets::launch_auto(
            device,
            &*b.tile_counts,
            align_arg,
            cap_arg,
            &mut *b.counts,
            &mut *b.offsets,
            &mut *b.tile_base,
        )?;
        if self.rows > 0 {
            moe_fill_layout::<WARPS>::launch_auto(
                device,
                &*b.offsets,
                &*b.counts,
                align_arg,
                cap_arg,
                &mut *b.sorted_token,
                &mut *b.tile_expert,
            )?;
        }
        if self.tokens > 0 {
            moe_scatter::<WARPS>::launch_auto(
                device,
                experts,
                &*b.tile_base,
                &*b.offsets,
                cap_arg,
                &mut *b.sorted_token,
                &mut *b.row_of,
            )?;
        }
        Ok(())
    }
}

/// `y[t] = Σ_c gates[t][c] · x[row_of[t][c]]` for the permuted rows `x` `[N, D]` (f32 or
/// bf16): `y` `[T, D]` f32.
pub fn combine(
    device: &Device,
    x: &HostTensor,
    row_of: &HostTensor,
    gates: &HostTensor,
) -> Result<HostTensor, Error> {
    const NAME: &str = "moe_combine";
    let (_, d) = dims2(NAME, "x", x)?;
    let (t, _) = dims2(NAME, "row_of", row_of)?;
    let mut y = HostTensor::zeros(ScalarType::F32, &[t, d]);
    combine_into(device, x, row_of, gates, &mut y)?;
    Ok(y)
}

/// [`combine`] into `y` `[T, D]` f32 (host or device tensors).
pub(crate) fn combine_into(
    device: &Device,
    x: &dyn TensorArg,
    row_of: &dyn TensorArg,
    gates: &dyn TensorArg,
    y: &mut dyn TensorArg,
) -> Result<(), Error> {
    if y.shape().contains(&0) {
        return Ok(());
    }
    match x.dtype() {
        ScalarType::BF16 => {
            moe_combine::<bf16, COMBINE_COLS, WARPS>::launch_auto(device, x, row_of, gates, y)
        }
        _ => moe_combine::<f32, COMBINE_COLS, WARPS>::launch_auto(device, x, row_of, gates, y),
    }
}

/// `bias[e] += rate · sign(mean load − counts[e])`, in place on `device`.
pub fn update_bias(
    device: &Device,
    counts: &HostTensor,
    rate: f32,
    bias: &mut HostTensor,
) -> Result<(), Error> {
    moe_bias_update::launch_auto(device, counts, ScalarArg::from(rate), bias)
}
