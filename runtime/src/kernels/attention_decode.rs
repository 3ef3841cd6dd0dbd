//! Split-KV decode attention (flash-decoding) over a paged KV cache, and its combine kernel.
//!
//! Layouts (bf16 unless said): Q `[B, q_len, Hq, D]`, the caches K and V
//! `[num_pages, page_size, Hkv, D]`, the block table `[B, max_pages]` (i32: entry p of sequence
//! b is the cache page holding its keys `p·page_size ..`), the context lengths `[B]` (i32: keys of
//! sequence b are its first `context_lens[b]` logical positions). Out: O `[B, q_len, Hq, D]` and
//! the log-sum-exp LSE `[B, q_len, Hq]` (f32, natural log). `Hkv` divides `Hq`; query head `hq`
//! reads KV head `hq / (Hq / Hkv)`. The `q_len` queries of a sequence are its last `q_len`
//! positions: with `causal`, query i sees keys `j ≤ ctx − q_len + i` (bottom-right aligned, as
//! decoding with a cache needs); without, every key `j < ctx`.
//!
//! [`attention_decode_split`]: one warp per block, one block per (split, KV head, sequence). The
//! `G = Hq / Hkv` query heads of a KV head and the `q_len` queries pack into one 16-row tile
//! (row `r` = query `r / G`, head `r % G`; `q_len · G ≤ 16`), gathered from Q by row index
//! (`gather_rows`). The split walks its range of key tiles (`KV` keys, `KV` dividing the page
//! size, so a tile never straddles two pages): each tile's page comes from the block table, and
//! its K and V rows are one strided tile of the cache viewed as `[num_pages, Hkv, page_size, D]`
//! (the caller's tensor transposed, no copy), staged through two-slot shared rings by
//! `cp.async` as the prefill kernel does ([`attention`](super::attention)). It writes the
//! split's normalized partial O `[B·Hkv, splits, 16, D]` (f32) and partial LSE
//! `[B·Hkv·splits, 16]`.
//!
//! [`attention_decode_combine`]: one warp per (sequence, KV head) merges the splits, each weighted
//! by `exp(lse_s − max)`, and scatters the rows to O and LSE in the caller's layout.
//!
//! Bounds: nothing a caller passes makes a kernel read outside its views. Context lengths are
//! clamped to `[0, max_pages · page_size]`; a block-table entry outside `[0, num_pages)` is not
//! followed: its keys are masked (as if absent; the copy reads page 0 in their place), and only
//! the entries a sequence's context reaches are looked at. A query row that sees no key (an empty context, a causal row before the first
//! key, every page invalid) gets O = NaN and LSE = `-inf`, as the prefill kernel and torch give.
//! An empty split (past its sequence's context) writes O = 0, LSE = `-inf`, which the combine
//! weighs by 0.

use std::fmt;

use crate::device::DeviceView;
use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, record, Rng};
use crate::kernels::softmax::safe_max;
use crate::{Device, LaunchArg, ScalarArg, Tensor, TensorArg};

/// Rows of the packed query tile (queries × query heads of one KV head).
pub const TILE_ROWS: usize = 16;

/// The global row of Q (viewed as `[B·q_len·Hq, D]`) behind each row of the packed tile of
/// `batch` and KV head `head`; -1 for rows past `q_len · group` (gathered as zeros, not
/// scattered).
#[crate::func]
fn query_rows(
    batch: Scalar<i32>,
    head: Scalar<i32>,
    q_len: Scalar<i32>,
    group: Scalar<i32>,
    kv_heads: Scalar<i32>,
) -> Rv<i32, 16> {
    let r: Rv<i32, 16> = iota_rows();
    let qi = r / group;
    let qg = r % group;
    let row = (qi + batch * q_len) * (kv_heads * group) + (qg + head * group);
    select(r.lt(q_len * group), row, -1)
}

/// Where key tile `kt` of sequence `batch` lives: (page, tile within the page, whether it holds
/// keys, whether it is before `t_end`). A block-table entry outside `[0, num_pages)` gives
/// page 0's first tile, an in-bounds read whose scores the caller masks; past `t_end` nothing
/// is copied.
#[crate::func]
fn tile_place(
    block_table: Gl<i32, 2>,
    batch: Scalar<i32>,
    kt: Scalar<i32>,
    t_end: Scalar<i32>,
    tiles_per_page: Scalar<i32>,
    num_pages: Scalar<i32>,
) -> (Scalar<i32>, Scalar<i32>, Scalar<bool>, Scalar<bool>) {
    let live = kt.lt(t_end);
    // Tiles past the end would index past the block table's row: read entry 0 instead.
    let slot = select(live, kt, 0) / tiles_per_page;
    let page: Scalar<i32> = load(block_table.at(batch, slot));
    let ok = live & page.ge(0) & page.lt(num_pages);
    (
        select(ok, page, 0),
        select(ok, kt % tiles_per_page, 0),
        ok,
        live,
    )
}

/// See the module documentation. Grid: `[splits, Hkv, B]`. Scalars: `sm_scale` (positive),
/// `q_len` and `group` (`q_len · group ≤ 16`), `tiles_per_split` (key tiles of `KV` per split),
/// `causal` (0 or 1).
#[crate::kernel(
    warps = 1,
    variants(<64, 16>, <64, 32>, <128, 16>, <128, 32>),
    selftest = selftest,
    check = split_args,
    shapes(
        q: [NQ, D],
        k: [NP, HKV, PS, D],
        v: [NP, HKV, PS, D],
        block_table: [B, MP],
        context_lens: [B],
        o_part: [B * HKV, S, 16, D],
        lse_part: [B * HKV * S, 16],
        NP >= 1,
        MP >= 1,
        PS >= KV,
        PS % KV == 0,
        NQ % (B * HKV) == 0
    ),
    grid = [S, HKV, B]
)]
#[allow(clippy::too_many_arguments)]
pub fn attention_decode_split<const D: usize, const KV: usize>(
    q: Gl<bf16, 2>,
    k: Gl<bf16, 4>,
    v: Gl<bf16, 4>,
    block_table: Gl<i32, 2>,
    context_lens: Gl<i32, 1>,
    o_part: GlMut<f32, 4>,
    lse_part: GlMut<f32, 2>,
    sm_scale: Scalar<f32>,
    q_len: Scalar<i32>,
    group: Scalar<i32>,
    tiles_per_split: Scalar<i32>,
    causal: Scalar<i32>,
) {
    let k_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let v_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let (split, head, batch) = (block_idx_x(), block_idx_y(), block_idx_z());
    let (num_pages, kv_heads, page_size) = (k.dim(0), k.dim(1), k.dim(2));
    let max_pages = block_table.dim(1);
    let splits = o_part.dim(1);
    let raw_ctx: Scalar<i32> = load(context_lens.at(batch));
    // At most the pages the block table has: ctx / page_size ≥ max_pages says
    // ctx ≥ max_pages · page_size without forming a product that could wrap (the product is
    // only taken where it is at most ctx).
    let nonneg_ctx = raw_ctx.max(0);
    let ctx = select(
        (nonneg_ctx / page_size).ge(max_pages),
        max_pages * page_size,
        nonneg_ctx,
    );
    let tiles_per_page = page_size / KV as i32;
    let n_tiles = ceil_div(ctx, KV);
    let t_begin = split * tiles_per_split;
    let t_end = (t_begin + tiles_per_split).min(n_tiles);

    let rows = query_rows(batch, head, q_len, group, kv_heads);
    let q_frag: Rt<bf16, 16, D> = gather_rows(q, rows, 0);
    // Row r (query r / group) sees keys ≤ lim[r]; tiles reaching past the smallest limit (the
    // last one or two: ctx − causal·(q_len − 1)) are the only ones that need the mask.
    let qi = iota_rows::<Rv<i32, 16>>() / group;
    let lim = (qi - (q_len - 1)) * causal + (ctx - 1);
    let mask_from = ctx - causal * (q_len - 1);

    let (p0, s0, ok0, live0) = tile_place(
        block_table,
        batch,
        t_begin,
        t_end,
        tiles_per_page,
        num_pages,
    );
    // Copies happen only for tiles before t_end (an empty split copies nothing); the commits
    // are unconditional, so every step has its group, empty or not.
    if live0 {
        copy_start(k_ring.at(0), k.tile(p0, head, s0, 0));
    }
    copy_commit();
    if live0 {
        copy_start(v_ring.at(0), v.tile(p0, head, s0, 0));
    }
    copy_commit();
    let scale_log2 = sm_scale * std::f32::consts::LOG2_E;

    let mut ok = ok0;
    let mut m: Rv<f32, 16> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, 16> = zeros();
    let mut acc: Rt<f32, 16, D> = zeros();
    for kt in range(t_begin, t_end) {
        let (cur, next) = ((kt - t_begin) & 1, (kt - t_begin + 1) & 1);
        let (pn, sn, ok_next, live_next) =
            tile_place(block_table, batch, kt + 1, t_end, tiles_per_page, num_pages);
        // K of this tile has landed (its V may be in flight); after the barrier the previous
        // tile's K slot is free for the next tile's.
        copy_wait(1);
        barrier();
        if live_next {
            copy_start(k_ring.at(next), k.tile(pn, head, sn, 0));
        }
        copy_commit();
        let k_frag: Rt<bf16, KV, D> = load(k_ring.at(cur));
        let kv0 = kt * KV as i32;
        let mut t = mma_abt(zeros(), q_frag, k_frag);
        if (kv0 + KV as i32).gt(mask_from) | !ok {
            // A tile of an invalid page holds another page's keys: every key of it is masked.
            let no_key: Rv<i32, 16> = fill(-1.0);
            let lim_t = select(ok, lim, no_key);
            let cols: Rt<i32, 16, KV> = iota_cols();
            t = select(sub_row(cols + kv0, lim_t).le(0), t, f64::NEG_INFINITY);
        }
        // Online softmax in the exp2 domain, as the prefill kernel (`sm_scale` > 0).
        let m_new = m.max(row_max(t) * scale_log2);
        let shift = safe_max::<16>(m_new);
        let p = sub_row(t * scale_log2, shift).exp2();
        let alpha = (m - shift).exp2();
        l = l * alpha + row_sum(p);
        m = m_new;
        copy_wait(1);
        barrier();
        if live_next {
            copy_start(v_ring.at(next), v.tile(pn, head, sn, 0));
        }
        copy_commit();
        let v_frag: Rt<bf16, KV, D, Col> = load(v_ring.at(cur));
        acc = mma_ab(mul_row(acc, alpha), p.cast::<bf16>(), v_frag);
        ok = ok_next;
    }
    copy_wait(0);
    // l = 0 only where every score was -inf, where acc is 0 too: the partial O is 0 and its
    // LSE -inf, so the combine weighs it by 0 (a NaN here would poison the other splits).
    let bh = batch * kv_heads + head;
    store(
        o_part.tile(bh, split, 0, 0),
        div_row(acc, select(l.gt(0.0), l, 1.0)),
    );
    store(
        lse_part.chunk(bh * splits + split, 0),
        (m + l.log2()) * std::f32::consts::LN_2,
    );
}

/// Columns of O that [`attention_decode_combine`] merges at a time.
pub const COMBINE_D: usize = 64;

/// Merges the splits of [`attention_decode_split`] into O `[B·q_len·Hq, D]` and LSE
/// `[B·q_len·Hq, 1]` (the caller's `[B, q_len, Hq, ·]` with its leading dimensions merged).
/// Grid: `[B·Hkv, 1, 1]`.
#[crate::kernel(
    warps = 1,
    variants(<bf16, 64>, <bf16, 128>),
    selftest = selftest,
    check = combine_args,
    shapes(
        o_part: [BH, S, 16, D],
        lse_part: [BH * S, 16],
        o: [NQ, D],
        lse: [NQ, 1],
        S >= 1,
        NQ % BH == 0
    ),
    grid = [BH, 1, 1]
)]
pub fn attention_decode_combine<O: RegDtype, const D: usize>(
    o_part: Gl<f32, 4>,
    lse_part: Gl<f32, 2>,
    o: GlMut<O, 2>,
    lse: GlMut<f32, 2>,
    q_len: Scalar<i32>,
    group: Scalar<i32>,
    kv_heads: Scalar<i32>,
) {
    let bh = block_idx_x();
    let (batch, head) = (bh / kv_heads, bh % kv_heads);
    let splits = o_part.dim(1);
    let rows = query_rows(batch, head, q_len, group, kv_heads);
    // One 64-column chunk of O at a time (the split weights are recomputed per chunk): at
    // D = 128 a 16×128 f32 accumulator beside a split's 16×128 tile does not fit one warp's
    // registers in the general compile (1248 bytes of spills on sm_80).
    for c in 0..D.div_ceil(COMBINE_D) {
        let mut m: Rv<f32, 16> = fill(f64::NEG_INFINITY);
        let mut l: Rv<f32, 16> = zeros();
        let mut acc: Rt<f32, 16, COMBINE_D> = zeros();
        for s in range(0, splits) {
            let lse_s: Rv<f32, 16> = load(lse_part.chunk(bh * splits + s, 0));
            let o_s: Rt<f32, 16, COMBINE_D> = load(o_part.tile(bh, s, 0, c as i32));
            let m_new = m.max(lse_s);
            // Empty splits have lse -inf: safe_max keeps exp(-inf − shift) at 0, never NaN.
            let shift = safe_max::<16>(m_new);
            let alpha = (m - shift).exp();
            let w = (lse_s - shift).exp();
            l = l * alpha + w;
            acc = mul_row(acc, alpha) + mul_row(o_s, w);
            m = m_new;
        }
        // A row no split saw a key for has l = 0: O = 0/0 = NaN and LSE = -inf, as documented.
        scatter_rows(o, div_row(acc, l).cast::<O>(), rows, c as i32);
        if c == 0 {
            let lse_rows: Rt<f32, 16, 16> = add_row(zeros(), m + l.log());
            // The view has one column: the tile's other columns are masked off by its shape.
            scatter_rows(lse, lse_rows, rows, 0);
        }
    }
}

/// The scalar arguments of [`attention_decode_split`]: argument indices 7..=11.
fn split_args(args: &[LaunchArg]) -> Result<(), String> {
    let scalar = |i: usize, name: &str| match args.get(i) {
        Some(LaunchArg::Scalar(_, x)) => Ok(*x),
        _ => Err(format!("`{name}` (argument {i}) must be a scalar")),
    };
    let scale = scalar(7, "sm_scale")?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(format!(
            "`sm_scale` is {scale}, but decode attention needs a positive finite scale (e.g. 1/√D)"
        ));
    }
    let (q_len, group) = (scalar(8, "q_len")?, scalar(9, "group")?);
    packing_fits(q_len, group)?;
    let tps = scalar(10, "tiles_per_split")?;
    if tps < 1.0 {
        return Err(format!("`tiles_per_split` is {tps}, expected at least 1"));
    }
    let causal = scalar(11, "causal")?;
    if causal != 0.0 && causal != 1.0 {
        return Err(format!("`causal` is {causal}, expected 0 or 1"));
    }
    // The splits times their tiles must stay inside i32 (tile indices are i32).
    let splits = crate::launch::shape_of(args, 5)
        .get(1)
        .copied()
        .unwrap_or(0) as f64;
    if splits * tps > f64::from(i32::MAX) / TILE_ROWS as f64 {
        return Err(format!(
            "{splits} splits of {tps} key tiles exceed the kernel's i32 tile indices"
        ));
    }
    let (nq, b, hkv) = (
        crate::launch::shape_of(args, 0)
            .first()
            .copied()
            .unwrap_or(0) as f64,
        crate::launch::shape_of(args, 4)
            .first()
            .copied()
            .unwrap_or(0) as f64,
        crate::launch::shape_of(args, 1)
            .get(1)
            .copied()
            .unwrap_or(0) as f64,
    );
    rows_match(nq, b * hkv, q_len, group)
}

/// The scalar arguments of [`attention_decode_combine`]: argument indices 4..=6.
fn combine_args(args: &[LaunchArg]) -> Result<(), String> {
    let scalar = |i: usize, name: &str| match args.get(i) {
        Some(LaunchArg::Scalar(_, x)) => Ok(*x),
        _ => Err(format!("`{name}` (argument {i}) must be a scalar")),
    };
    let (q_len, group, hkv) = (
        scalar(4, "q_len")?,
        scalar(5, "group")?,
        scalar(6, "kv_heads")?,
    );
    packing_fits(q_len, group)?;
    let bh = crate::launch::shape_of(args, 0)
        .first()
        .copied()
        .unwrap_or(0) as f64;
    if hkv < 1.0 || bh % hkv != 0.0 {
        return Err(format!(
            "`kv_heads` is {hkv}, expected a positive divisor of the {bh} (sequence, KV head) pairs"
        ));
    }
    let nq = crate::launch::shape_of(args, 2)
        .first()
        .copied()
        .unwrap_or(0) as f64;
    rows_match(nq, bh, q_len, group)
}

fn packing_fits(q_len: f64, group: f64) -> Result<(), String> {
    if q_len < 1.0 || group < 1.0 || q_len * group > TILE_ROWS as f64 {
        return Err(format!(
            "{q_len} queries × {group} query heads per KV head do not pack into one \
             {TILE_ROWS}-row tile (expected q_len ≥ 1, group ≥ 1, q_len·group ≤ {TILE_ROWS})"
        ));
    }
    Ok(())
}

fn rows_match(nq: f64, bh: f64, q_len: f64, group: f64) -> Result<(), String> {
    if nq != bh * q_len * group {
        return Err(format!(
            "Q has {nq} rows, expected (sequences · KV heads = {bh}) × q_len {q_len} × group {group}"
        ));
    }
    Ok(())
}

// ---- the typed API --------------------------------------------------------------------------

/// Options of [`decode`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodeOptions {
    /// Score scale; `1/√D` when `None`.
    pub sm_scale: Option<f32>,
    /// Query i of a sequence of context `ctx` sees keys `j ≤ ctx − q_len + i` (bottom-right);
    /// without, every key of the context.
    pub causal: bool,
    /// Splits of each sequence's key range; chosen from the shapes when `None` (enough blocks
    /// for a large GPU, whole key tiles per split).
    pub num_splits: Option<usize>,
}

/// What [`decode`] refused, or the launch error.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A tensor argument of the wrong dtype, rank or shape.
    #[error("attention decode: `{arg}` must be {expected}, got {found}")]
    Argument {
        arg: &'static str,
        expected: String,
        found: String,
    },
    /// A head dimension without a kernel.
    #[error("attention decode: head dim {0} is not supported; supported: 64, 128")]
    HeadDim(usize),
    /// A launch failed.
    #[error(transparent)]
    Launch(#[from] crate::Error),
}

/// A tensor passed with another shape and strides over the same elements (a reshape or a
/// permutation the caller's tensor allows; checked where made).
struct ViewAs<'a> {
    tensor: &'a Tensor,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

impl TensorArg for ViewAs<'_> {
    fn dtype(&self) -> ScalarType {
        self.tensor.dtype()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn launch_arg(&self) -> LaunchArg {
        match self.tensor.launch_arg() {
            LaunchArg::Device(view) => LaunchArg::Device(DeviceView {
                shape: self.shape.clone(),
                strides: self.strides.clone(),
                ..view
            }),
            other => other,
        }
    }
    /// Device memory is written in place.
    fn take_back(&mut self, _: LaunchArg) {}
}

/// `t` `[d0, …, dn−2, D]` as the matrix `[d0·…·dn−2, D]`, when its leading dimensions merge
/// (each stride is the next one times the next extent).
fn as_rows<'a>(arg: &'static str, t: &'a Tensor) -> Result<ViewAs<'a>, DecodeError> {
    let (shape, strides) = (t.shape(), t.strides());
    let n = shape.len();
    // Row r of the merged view is element r·strides[n−2]: every leading dimension of more
    // than one element must step by the rows after it (dimensions of one element never step).
    let merges = n >= 2
        && (0..n - 2).all(|i| {
            shape[i] <= 1
                || strides[i] == strides[n - 2] * shape[i + 1..n - 1].iter().product::<usize>()
        });
    if !merges {
        return Err(DecodeError::Argument {
            arg,
            expected: "a tensor whose leading dimensions are contiguous with each other".into(),
            found: format!("shape {shape:?} with strides {strides:?}"),
        });
    }
    Ok(ViewAs {
        tensor: t,
        shape: vec![shape[..n - 1].iter().product(), shape[n - 1]],
        strides: vec![strides[n - 2], strides[n - 1]],
    })
}

fn expect(
    arg: &'static str,
    t: &Tensor,
    dtype: ScalarType,
    shape: &[Option<usize>],
) -> Result<(), DecodeError> {
    let fits = t.dtype() == dtype
        && t.shape().len() == shape.len()
        && t.shape()
            .iter()
            .zip(shape)
            .all(|(&n, want)| want.is_none_or(|w| w == n));
    if fits {
        return Ok(());
    }
    let dims: Vec<String> = shape
        .iter()
        .map(|d| d.map_or("_".to_string(), |n| n.to_string()))
        .collect();
    Err(DecodeError::Argument {
        arg,
        expected: format!("{dtype} [{}]", dims.join(", ")),
        found: format!("{} {:?}", t.dtype(), t.shape()),
    })
}

/// The key-tile size a page size allows: the largest registered one dividing it (tiles of 64
/// keys spill on sm_80 even at head dim 64).
fn key_tile(page_size: usize) -> usize {
    if page_size % 32 == 0 {
        32
    } else {
        16
    }
}

/// How the decode splits the keys: `(splits, key tiles per split)` for `pairs` (sequence, KV
/// head) pairs and at most `max_tiles` key tiles per sequence.
pub fn split_plan(pairs: usize, max_tiles: usize, num_splits: Option<usize>) -> (usize, usize) {
    // Enough blocks to fill a large GPU (132 SMs) about twice over.
    const TARGET_BLOCKS: usize = 264;
    let max_tiles = max_tiles.max(1);
    let wanted = num_splits.unwrap_or_else(|| TARGET_BLOCKS.div_ceil(pairs.max(1)));
    let per_split = max_tiles.div_ceil(wanted.clamp(1, max_tiles));
    (max_tiles.div_ceil(per_split), per_split)
}

/// Decode attention over a paged KV cache (see the module documentation for the layouts):
/// returns O `[B, q_len, Hq, D]` (bf16) and LSE `[B, q_len, Hq]` (f32), on `device`, where every
/// tensor lives.
///
/// Contract: bf16 Q `[B, q_len, Hq, D]` with D 64 or 128, caches `[num_pages, page_size, Hkv, D]`
/// with `page_size` a multiple of 16 and `Hkv` dividing `Hq`, `q_len · Hq / Hkv ≤ 16`, i32 block
/// table `[B, max_pages]` and context lengths `[B]`.
pub fn decode(
    device: &Device,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    block_table: &Tensor,
    context_lens: &Tensor,
    opts: &DecodeOptions,
) -> Result<(Tensor, Tensor), DecodeError> {
    let bf = ScalarType::BF16;
    expect("q", q, bf, &[None; 4])?;
    let [b, q_len, hq, d] = [q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]];
    if d != 64 && d != 128 {
        return Err(DecodeError::HeadDim(d));
    }
    expect("k_cache", k_cache, bf, &[None, None, None, Some(d)])?;
    let [num_pages, page_size, hkv] = [k_cache.shape()[0], k_cache.shape()[1], k_cache.shape()[2]];
    expect(
        "v_cache",
        v_cache,
        bf,
        &[Some(num_pages), Some(page_size), Some(hkv), Some(d)],
    )?;
    expect(
        "block_table",
        block_table,
        ScalarType::I32,
        &[Some(b), None],
    )?;
    expect("context_lens", context_lens, ScalarType::I32, &[Some(b)])?;
    let max_pages = block_table.shape()[1];
    let bad = |arg, expected: &str, found: String| DecodeError::Argument {
        arg,
        expected: expected.into(),
        found,
    };
    if b == 0 || q_len == 0 || hq == 0 {
        return Err(bad(
            "q",
            "at least one sequence, query and head",
            format!("{:?}", q.shape()),
        ));
    }
    if num_pages == 0 || page_size == 0 || page_size % 16 != 0 || hkv == 0 {
        return Err(bad(
            "k_cache",
            "at least one page, a page size that is a multiple of 16 and at least one KV head",
            format!("{:?}", k_cache.shape()),
        ));
    }
    if hq % hkv != 0 || q_len * (hq / hkv) > TILE_ROWS {
        return Err(bad(
            "q",
            "query heads a multiple of the KV heads, with q_len · (Hq / Hkv) ≤ 16",
            format!("{q_len} queries, {hq} query heads over {hkv} KV heads"),
        ));
    }
    if max_pages == 0 {
        return Err(bad(
            "block_table",
            "at least one page per sequence",
            format!("{:?}", block_table.shape()),
        ));
    }
    let group = hq / hkv;
    let kv = key_tile(page_size);
    let (splits, per_split) = split_plan(b * hkv, max_pages * (page_size / kv), opts.num_splits);
    let scale = opts.sm_scale.unwrap_or(1.0 / (d as f32).sqrt());

    let q_rows = as_rows("q", q)?;
    let k_view = k_cache.transpose(1, 2)?;
    let v_view = v_cache.transpose(1, 2)?;
    let mut o_part = Tensor::zeros(ScalarType::F32, &[b * hkv, splits, TILE_ROWS, d], device)?;
    let mut lse_part = Tensor::zeros(ScalarType::F32, &[b * hkv * splits, TILE_ROWS], device)?;
    let grid = [
        u32::try_from(splits).unwrap_or(u32::MAX),
        u32::try_from(hkv).unwrap_or(u32::MAX),
        u32::try_from(b).unwrap_or(u32::MAX),
    ];
    let scalars = (
        ScalarArg::from(scale),
        ScalarArg::from(q_len as i32),
        ScalarArg::from(group as i32),
        ScalarArg::from(i32::try_from(per_split).unwrap_or(i32::MAX)),
        ScalarArg::from(i32::from(opts.causal)),
    );
    macro_rules! split {
        ($d:literal, $kv:literal) => {
            attention_decode_split::<$d, $kv>::launch(
                device,
                grid,
                &q_rows,
                &k_view,
                &v_view,
                block_table,
                context_lens,
                &mut o_part,
                &mut lse_part,
                scalars.0,
                scalars.1,
                scalars.2,
                scalars.3,
                scalars.4,
            )
        };
    }
    match (d, kv) {
        (64, 32) => split!(64, 32),
        (64, _) => split!(64, 16),
        (_, 32) => split!(128, 32),
        _ => split!(128, 16),
    }?;

    let o = Tensor::zeros(bf, &[b, q_len, hq, d], device)?;
    let lse = Tensor::zeros(ScalarType::F32, &[b, q_len, hq], device)?;
    let mut o_rows = as_rows("o", &o)?;
    let mut lse_rows = ViewAs {
        tensor: &lse,
        shape: vec![b * q_len * hq, 1],
        strides: vec![1, 1],
    };
    let grid = [u32::try_from(b * hkv).unwrap_or(u32::MAX), 1, 1];
    let (ql, g, h) = (
        ScalarArg::from(q_len as i32),
        ScalarArg::from(group as i32),
        ScalarArg::from(hkv as i32),
    );
    if d == 64 {
        attention_decode_combine::<bf16, 64>::launch(
            device,
            grid,
            &o_part,
            &lse_part,
            &mut o_rows,
            &mut lse_rows,
            ql,
            g,
            h,
        )?;
    } else {
        attention_decode_combine::<bf16, 128>::launch(
            device,
            grid,
            &o_part,
            &lse_part,
            &mut o_rows,
            &mut lse_rows,
            ql,
            g,
            h,
        )?;
    }
    Ok((o, lse))
}

// ---- reference and test inputs --------------------------------------------------------------

/// Shapes of a decode problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeShape {
    pub batch: usize,
    pub q_len: usize,
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl fmt::Display for DecodeShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "B{} q{} Hq{} Hkv{} D{}",
            self.batch, self.q_len, self.q_heads, self.kv_heads, self.head_dim
        )
    }
}

/// Decode attention in f64 from the definition, over the logical (unpaged) keys: Q
/// `[B, q_len, Hq, D]`, K and V `[B, max_ctx, Hkv, D]` row-major, `ctx[b]` keys of sequence b
/// (≤ max_ctx). Returns O `[B, q_len, Hq, D]` and LSE `[B, q_len, Hq]`; a row that sees no key
/// gets NaN and `-inf`.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    ctx: &[usize],
    max_ctx: usize,
    s: DecodeShape,
    sm_scale: f64,
    causal: bool,
) -> (Vec<f64>, Vec<f64>) {
    let (hq, hkv, d) = (s.q_heads, s.kv_heads, s.head_dim);
    let group = hq / hkv;
    let mut o = vec![0.0; s.batch * s.q_len * hq * d];
    let mut lse = vec![0.0; s.batch * s.q_len * hq];
    for (b, &ctx_b) in ctx.iter().enumerate().take(s.batch) {
        for i in 0..s.q_len {
            for h in 0..hq {
                let row = (b * s.q_len + i) * hq + h;
                let qv = &q[row * d..][..d];
                let kh = h / group;
                let keys = if causal {
                    (ctx_b + i + 1).saturating_sub(s.q_len).min(ctx_b)
                } else {
                    ctx_b
                };
                let key = |j: usize| ((b * max_ctx + j) * hkv + kh) * d;
                let scores: Vec<f64> = (0..keys)
                    .map(|j| {
                        let at = key(j);
                        sm_scale
                            * qv.iter()
                                .zip(&k[at..at + d])
                                .map(|(a, c)| a * c)
                                .sum::<f64>()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if keys == 0 {
                    o[row * d..][..d].fill(f64::NAN);
                    lse[row] = f64::NEG_INFINITY;
                    continue;
                }
                let sum: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                lse[row] = max + sum.ln();
                for (j, sj) in scores.iter().enumerate() {
                    let w = (sj - max).exp() / sum;
                    let at = key(j);
                    for c in 0..d {
                        o[row * d + c] += w * v[at + c];
                    }
                }
            }
        }
    }
    (o, lse)
}

/// A paged cache holding logical K or V `[B, max_ctx, Hkv, D]`: `pages_per_seq` pages of each
/// sequence placed at a random permutation of the `num_pages ≥ B·pages_per_seq` cache pages
/// (the others hold random values), and the block table `[B, pages_per_seq]`. Returns
/// (K cache, V cache, block table) as host tensors.
pub fn page_randomly(
    rng: &mut Rng,
    k: &[f64],
    v: &[f64],
    (batch, max_ctx, hkv, d): (usize, usize, usize, usize),
    page_size: usize,
    num_pages: usize,
) -> Result<(HostTensor, HostTensor, HostTensor), String> {
    let per_seq = max_ctx.div_ceil(page_size).max(1);
    if num_pages < batch * per_seq {
        return Err(format!("{num_pages} pages cannot hold {batch} × {per_seq}"));
    }
    // Fisher–Yates over the cache's pages.
    let mut order: Vec<usize> = (0..num_pages).collect();
    for i in (1..num_pages).rev() {
        let j = (rng.uniform(0.0, (i + 1) as f64) as usize).min(i);
        order.swap(i, j);
    }
    let page_elems = page_size * hkv * d;
    let mut kc: Vec<f64> = (0..num_pages * page_elems)
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    let mut vc: Vec<f64> = (0..num_pages * page_elems)
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    let mut table = vec![0.0; batch * per_seq];
    for b in 0..batch {
        for p in 0..per_seq {
            let page = order[b * per_seq + p];
            table[b * per_seq + p] = page as f64;
            for r in 0..page_size {
                let j = p * page_size + r;
                if j >= max_ctx {
                    break;
                }
                let src = (b * max_ctx + j) * hkv * d;
                let dst = (page * page_size + r) * hkv * d;
                kc[dst..dst + hkv * d].copy_from_slice(&k[src..src + hkv * d]);
                vc[dst..dst + hkv * d].copy_from_slice(&v[src..src + hkv * d]);
            }
        }
    }
    let shape = [num_pages, page_size, hkv, d];
    let t = |dt, s: &[usize], x: &[f64]| HostTensor::new(dt, s, x).map_err(|e| e.to_string());
    Ok((
        t(ScalarType::BF16, &shape, &kc)?,
        t(ScalarType::BF16, &shape, &vc)?,
        t(ScalarType::I32, &[batch, per_seq], &table)?,
    ))
}

/// One random decode problem, run through [`decode`] on `device` and compared with
/// [`reference()`]: returns the case's name and its (O, LSE) errors.
#[allow(clippy::too_many_arguments)]
pub fn run_case(
    device: &Device,
    rng: &mut Rng,
    s: DecodeShape,
    ctx: &[usize],
    page_size: usize,
    spare_pages: usize,
    opts: &DecodeOptions,
) -> Result<(String, f64, f64), String> {
    let bf = ScalarType::BF16;
    let max_ctx = ctx.iter().copied().max().unwrap_or(0).max(1);
    let (b, hq, hkv, d) = (s.batch, s.q_heads, s.kv_heads, s.head_dim);
    let q = rng.tensor(bf, &[b, s.q_len, hq, d], -1.0, 1.0);
    let k = rng.tensor(bf, &[b, max_ctx, hkv, d], -1.0, 1.0).to_vec();
    let v = rng.tensor(bf, &[b, max_ctx, hkv, d], -1.0, 1.0).to_vec();
    let pages = b * max_ctx.div_ceil(page_size) + spare_pages;
    let (kc, vc, table) = page_randomly(rng, &k, &v, (b, max_ctx, hkv, d), page_size, pages)?;
    let lens: Vec<f64> = ctx.iter().map(|&c| c as f64).collect();
    let lens = HostTensor::new(ScalarType::I32, &[b], &lens).map_err(|e| e.to_string())?;
    let on = |t: &HostTensor| Tensor::from_host(t, device).map_err(|e| e.to_string());
    let (o, lse) = decode(
        device,
        &on(&q)?,
        &on(&kc)?,
        &on(&vc)?,
        &on(&table)?,
        &on(&lens)?,
        opts,
    )
    .map_err(|e| e.to_string())?;
    let scale = f64::from(opts.sm_scale.unwrap_or(1.0 / (d as f32).sqrt()));
    let (wo, wl) = reference(&q.to_vec(), &k, &v, ctx, max_ctx, s, scale, opts.causal);
    let name = format!(
        "{s} ctx {ctx:?} page {page_size}{}{}",
        if opts.causal { " causal" } else { "" },
        opts.num_splits
            .map(|n| format!(" {n} splits"))
            .unwrap_or_default()
    );
    let got_o = o.to_f64_vec().map_err(|e| e.to_string())?;
    let got_l = lse.to_f64_vec().map_err(|e| e.to_string())?;
    let eo = record(format!("{name}: O"), &got_o, &wo, 1e-2);
    let el = record(format!("{name}: LSE"), &got_l, &wl, 1e-4);
    Ok((name, eo, el))
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let shape = |batch, q_len, q_heads, kv_heads, head_dim| DecodeShape {
        batch,
        q_len,
        q_heads,
        kv_heads,
        head_dim,
    };
    let mut cases = vec![
        (shape(2, 1, 4, 1, 64), vec![37, 5], 16, false, None),
        (shape(1, 3, 8, 2, 128), vec![50], 32, true, Some(2)),
    ];
    if large(device) {
        cases.push((
            shape(4, 2, 32, 4, 128),
            vec![1000, 513, 4097, 17],
            64,
            true,
            None,
        ));
        cases.push((shape(3, 1, 16, 1, 64), vec![2048, 1, 700], 128, false, None));
    }
    for (s, ctx, page, causal, splits) in cases {
        let opts = DecodeOptions {
            sm_scale: None,
            causal,
            num_splits: splits,
        };
        let (name, eo, el) = run_case(device, &mut rng, s, &ctx, page, 3, &opts)?;
        if eo > 1e-2 || el > 1e-4 {
            return Err(format!(
                "{name}: O error {eo:.2e}, LSE error {el:.2e} (seed {})",
                rng.seed
            ));
        }
    }
    Ok("paged split-KV decode with GQA packing, causal and not, against the f64 reference".into())
}
