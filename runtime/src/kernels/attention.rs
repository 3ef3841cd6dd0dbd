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
//! Each warp owns `R` query rows (its Q tile stays in registers); a block of `WARPS` warps covers
//! `WARPS·R` rows of one head (grid: x over query blocks, y over query heads; the library
//! registers 64 and 128 rows per block, head dims 64 and 128 — at 128 with key tiles of 16: with
//! 64 keys the K and V fragments spill on sm_80 and overflow gfx942's 256 VGPRs at 8 waves, with
//! 32 they still overflow gfx950's by 15). The block walks its key tiles of `KV`,
//! staging K and V in a two-slot shared ring each, as separate copy groups
//! ([`dsl::pipeline`](crate::dsl::pipeline)): while a warp computes `S = Q·Kᵀ` (`mma_abt`) the
//! tile's V and the next tile's K are in flight, and while it computes `P·V` the next K is
//! (each wait leaves one group pending: `cp.async.wait_group 1`). The online softmax runs in
//! the exp2 domain (`log2 e` folded into the scale), with `-inf` for keys past `seq_kv` (only
//! the last key tile is masked for it) and for keys outside the causal or window bounds (only
//! tiles that reach past the warp's bounds). `O /= l` and `LSE = (m + log2 l)·ln 2` at the end.
//! `sm_scale` must be positive: the row max is taken over the raw scores and scaled once per
//! row, and each score's scaling and shift is one `fma`. Lengths need not be multiples of the
//! tiles: rows past `seq_q` are computed and not stored, keys past `seq_kv` masked.
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
        <bf16, 128, 16, 16, 8, false>,
        <bf16, 128, 16, 16, 8, true>
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
    forward_tiles::<O, D, R, KV, WARPS, CAUSAL, false, false>(
        q,
        k,
        v,
        o,
        lse,
        sm_scale,
        lit(0),
        lit(0),
        lit(1.0),
    );
}

/// [`attention_fwd`] with a sliding window (`window_left`, `window_right`, around the
/// bottom-right diagonal; see the module documentation) and, with `SOFTCAP`, logit soft-capping
/// by `softcap` (> 0; not read without `SOFTCAP`). Causal is `window_right = 0` with an
/// unbounded left (`i32::MAX`). Lengths are limited to `seq_q + seq_kv < 2³⁰` so that the
/// window arithmetic stays in i32. Grid: `[⌈seq_q / (WARPS·R)⌉, bh_q, 1]` ([`grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <bf16, 64, 16, 64, 4, false>,
        <bf16, 64, 16, 64, 4, true>,
        <bf16, 128, 16, 16, 8, false>,
        <bf16, 128, 16, 16, 8, true>
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
    forward_tiles::<O, D, R, KV, WARPS, false, true, SOFTCAP>(
        q,
        k,
        v,
        o,
        lse,
        sm_scale,
        window_left,
        window_right,
        softcap,
    );
}

/// The body of [`attention_fwd`] (`CAUSAL`, no window) and [`attention_fwd_window`] (`WINDOW`):
/// see the module documentation.
#[crate::func]
#[allow(clippy::too_many_arguments)]
fn forward_tiles<
    O: RegDtype,
    const D: usize,
    const R: usize,
    const KV: usize,
    const WARPS: usize,
    const CAUSAL: bool,
    const WINDOW: bool,
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
    let k_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let v_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let (q_block, head) = (block_idx_x(), block_idx_y());
    // GQA/MQA: the K/V head of this query head (see the module documentation).
    let kv_head = head / (q.dim(0) / k.dim(0));
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
    // K and V of the first tile, one copy group each; the loop keeps one group in flight.
    copy_start(k_ring.at(first & 1), k.tile(kv_head, first, 0));
    copy_commit();
    copy_start(v_ring.at(first & 1), v.tile(kv_head, first, 0));
    copy_commit();
    let q_frag: Rt<bf16, R, D> = load(q.tile(head, q_tile, 0));
    // The factor from the scores that the row max sees to the exp2 domain: with a cap the
    // scores are tanh values and the cap multiplies them.
    let mut scale_log2 = sm_scale * std::f32::consts::LOG2_E;
    if SOFTCAP {
        scale_log2 = softcap * std::f32::consts::LOG2_E;
    }

    let mut m: Rv<f32, R> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, R> = zeros();
    let mut acc: Rt<f32, R, D> = zeros();
    for kt in range(first, kv_tiles) {
        let (cur, next) = (kt & 1, (kt + 1) & 1);
        // K of this tile has landed (V of this tile may be in flight); after the barrier every
        // warp is done with the previous tile's K, whose slot takes the next tile's.
        copy_wait(1);
        barrier();
        copy_start(k_ring.at(next), k.tile(kv_head, kt + 1, 0));
        copy_commit();
        let k_frag: Rt<bf16, KV, D> = load(k_ring.at(cur));
        let kv0 = kt * KV as i32;
        // Raw scores: the scale goes into the exponent's argument below, one `fma` per score
        // (`t·scale_log2 − shift`), and into the row max once per row; for a scale > 0,
        // max(t)·scale rounds to exactly max(t·scale), and a masked −inf stays −inf.
        let mut t = mma_abt(zeros(), q_frag, k_frag);
        if SOFTCAP {
            // Capped before masking: tanh(−inf) would be −1, a finite score.
            // (The quotient is loop-invariant: LLVM hoists it.)
            t = (t * (sm_scale / softcap)).tanh();
        }
        // Interior tiles need no mask: only the last tile has keys past seq_kv, and only a tile
        // reaching past the warp's bounds has keys outside a row's.
        if kt.eq(last_tile) {
            t = mask_cols(t, kv0, seq_kv, f64::NEG_INFINITY);
        }
        if CAUSAL {
            if kv0.gt(diag0 - (KV - 1) as i32) {
                t = mask_causal(t, diag0, kv0, f64::NEG_INFINITY);
            }
        }
        if WINDOW {
            // Keys after row r's right edge diag0 + right + r; before its left edge
            // diag0 − left + r (the last row's edge is the furthest right).
            if kv0.gt(diag0 + right - (KV - 1) as i32) {
                t = mask_causal(t, diag0 + right, kv0, f64::NEG_INFINITY);
            }
            if kv0.lt(diag0 - left + (R - 1) as i32) {
                t = mask_anticausal(t, diag0 - left, kv0, f64::NEG_INFINITY);
            }
        }
        let m_new = m.max(row_max(t) * scale_log2);
        let shift = safe_max::<R>(m_new);
        let p = sub_row(t * scale_log2, shift).exp2();
        let alpha = (m - shift).exp2();
        l = l * alpha + row_sum(p);
        m = m_new;
        // V of this tile has landed (the next K may be in flight); the previous V's slot is free.
        copy_wait(1);
        barrier();
        copy_start(v_ring.at(next), v.tile(kv_head, kt + 1, 0));
        copy_commit();
        let v_frag: Rt<bf16, KV, D, Col> = load(v_ring.at(cur));
        acc = mma_ab(mul_row(acc, alpha), p.cast::<bf16>(), v_frag);
    }
    // The copies of the tile after the last: none outstanding when the block ends.
    copy_wait(0);
    store(o.tile(head, q_tile, 0), div_row(acc, l).cast::<O>());
    store(
        lse.chunk(head, q_tile),
        (m + l.log2()) * std::f32::consts::LN_2,
    );
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

/// Attention with GQA, the causal alignment, a window and soft-capping (the [`ForwardOptions`]),
/// on `device`: Q `[bh_q, seq_q, D]`, K and V `[bh_kv, seq_kv, D]` (bf16, `bh_kv` dividing
/// `bh_q`) give O `[bh_q, seq_q, D]` (bf16) and LSE `[bh_q, seq_q]` (f32). Runs
/// [`attention_fwd`] when that computes the options (no window, no cap, bottom-right or no
/// causal mask), [`attention_fwd_window`] otherwise. Head dims 64 and 128.
pub fn forward(
    device: &Device,
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    opts: &ForwardOptions,
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
    if d != 64 && d != 128 {
        return Err(shape_error(format!(
            "head dim {d} is not supported; supported: 64, 128"
        )));
    }
    let mut o = HostTensor::zeros(ScalarType::BF16, &[bh, seq_q, d]);
    let mut lse = HostTensor::zeros(ScalarType::F32, &[bh, seq_q]);
    let s = ScalarArg::from(opts.sm_scale);
    let plain = opts.window_left.is_none()
        && opts.window_right.is_none()
        && opts.softcap.is_none()
        && (!opts.causal || opts.align == Align::BottomRight || seq_q == seq_kv);
    if plain {
        let g = grid(bh, seq_q, 128);
        let (o_, l_) = (&mut o, &mut lse);
        match (d, opts.causal) {
            (64, false) => {
                attention_fwd::<bf16, 64, 16, 64, 8, false>::launch(device, g, q, k, v, o_, l_, s)
            }
            (64, true) => {
                attention_fwd::<bf16, 64, 16, 64, 8, true>::launch(device, g, q, k, v, o_, l_, s)
            }
            (_, false) => {
                attention_fwd::<bf16, 128, 16, 16, 8, false>::launch(device, g, q, k, v, o_, l_, s)
            }
            (_, true) => {
                attention_fwd::<bf16, 128, 16, 16, 8, true>::launch(device, g, q, k, v, o_, l_, s)
            }
        }?;
        return Ok((o, lse));
    }
    let (left, right) = opts.kernel_window(seq_q, seq_kv);
    let (left, right) = (ScalarArg::from(left), ScalarArg::from(right));
    let cap = ScalarArg::from(opts.softcap.unwrap_or(1.0));
    let (o_, l_) = (&mut o, &mut lse);
    match (d, opts.softcap.is_some()) {
        (64, false) => attention_fwd_window::<bf16, 64, 16, 64, 4, false>::launch(
            device,
            grid(bh, seq_q, 64),
            q,
            k,
            v,
            o_,
            l_,
            s,
            left,
            right,
            cap,
        ),
        (64, true) => attention_fwd_window::<bf16, 64, 16, 64, 4, true>::launch(
            device,
            grid(bh, seq_q, 64),
            q,
            k,
            v,
            o_,
            l_,
            s,
            left,
            right,
            cap,
        ),
        (_, false) => attention_fwd_window::<bf16, 128, 16, 16, 8, false>::launch(
            device,
            grid(bh, seq_q, 128),
            q,
            k,
            v,
            o_,
            l_,
            s,
            left,
            right,
            cap,
        ),
        (_, true) => attention_fwd_window::<bf16, 128, 16, 16, 8, true>::launch(
            device,
            grid(bh, seq_q, 128),
            q,
            k,
            v,
            o_,
            l_,
            s,
            left,
            right,
            cap,
        ),
    }?;
    Ok((o, lse))
}

/// [`forward`]'s result in f64 from the definition: `(O, LSE)` for row-major Q
/// `[bh_q, seq_q, d]`, K and V `[bh_kv, seq_kv, d]`; query head h reads K/V head
/// `h / (bh_q / bh_kv)`. A row that sees no key gets O = NaN and LSE = `-inf`.
pub fn reference_with(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (bh_q, bh_kv, seq_q, seq_kv, d): (usize, usize, usize, usize, usize),
    opts: &ForwardOptions,
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
                    match opts.softcap {
                        Some(c) => f64::from(c) * (x / f64::from(c)).tanh(),
                        None => x,
                    }
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

/// Attention in f64 from the definition, dense heads, causal aligned top-left (`j ≤ i`, what
/// the backward pass assumes): `(O, LSE)` for row-major Q `[bh, seq_q, d]`, K and V
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

/// Launches the registered bf16-output variant with head dim `d`, `rows` query rows per block
/// and the given causality.
#[allow(clippy::too_many_arguments)]
fn launch_bf16(
    device: &Device,
    (d, rows, causal): (usize, usize, bool),
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
    match (d, rows, causal) {
        (64, 64, false) => {
            attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (64, 64, true) => {
            attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (64, _, false) => {
            attention_fwd::<bf16, 64, 16, 64, 8, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (64, _, true) => {
            attention_fwd::<bf16, 64, 16, 64, 8, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (_, _, false) => {
            attention_fwd::<bf16, 128, 16, 16, 8, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (_, _, true) => {
            attention_fwd::<bf16, 128, 16, 16, 8, true>::launch(device, g, q, k, v, o, lse, s)
        }
    }
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(2, 70, false), (2, 150, true)];
    if large(device) {
        shapes.extend([(4, 1000, false), (3, 513, false), (3, 513, true)]);
    }
    // (head dim, query rows per block): every bf16 variant.
    let configs = [(64, 64), (64, 128), (128, 128)];
    for (bh, seq, masked) in shapes {
        for (d, rows) in configs {
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
                let cfg = (d, rows, causal);
                launch_bf16(device, cfg, bh, &q, &k, &v, &mut o, &mut lse, s)
                    .map_err(|e| format!("{rows} rows, hd {d}, causal {causal}: {e}"))?;
                let (wo, wl) = reference_masked(
                    &q.to_vec(),
                    &k.to_vec(),
                    &v.to_vec(),
                    shape,
                    f64::from(scale),
                    causal,
                    &|h, i, j| !masked || HARD_MASK.visible(h, i, j),
                );
                let name = format!("{bh}×{seq}×{d}{what} {rows} rows causal={causal}");
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
        "full and causal, hd 64 and 128, 64 and 128 rows per block, with and without -inf key \
         tiles; GQA/MQA, bottom-right and top-left causal, windows and soft-capping at seq_q ≠ \
         seq_kv (rows and blocks that see no key); against the f64 references"
            .into(),
    )
}

/// [`forward`]'s options against [`reference_with`] at head dims 64 and 128.
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
    ];
    let bf = ScalarType::BF16;
    for d in [64, 128] {
        for (bh_q, bh_kv, seq_q, seq_kv, opts) in cases {
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
