//! FlashAttention-style forward pass on sm_90a's warpgroup `mma` (`wgmma`).
//!
//! The same computation and API as [`attention_fwd`](super::attention::attention_fwd): Q
//! `[bh_q, seq_q, D]`, K and V `[bh_kv, seq_kv, D]` (bf16; `bh_kv` divides `bh_q`, GQA/MQA as
//! there), O `[bh_q, seq_q, D]` of dtype `O` and LSE `[bh_q, seq_q]` (f32, natural log), causal
//! masks aligned bottom-right (query i sees keys `j ≤ i + seq_kv − seq_q`).
//!
//! A block of `WG` warpgroups covers `64·WG` query rows of one head; warpgroup g owns rows
//! `[64·g, 64·g + 64)` of the block, its warp w (of the block) rows `[16·w, 16·w + 16)`. The
//! block copies each warpgroup's `64 × D` Q tile into its own shared tile once, then walks its
//! key tiles of `KV` with K and V in two-slot shared rings: at the start of a tile (one wait,
//! one barrier) it starts the next tile's K and V as one copy group, which runs during the
//! tile's products and softmax. (The copies are `cp.async`: sm_90a's TMA copy groups take
//! rank-2 views, and these are `[heads, seq, D]`.) Per key tile:
//!
//! - `S = Q·Kᵀ` is one warpgroup `mma` with both operands in shared memory (Q K-major, K stored
//!   `KV × D` as Bᵀ, K-major): on sm_90a `wgmma.mma_async` × `D / 16` reading both through
//!   matrix descriptors, `S` (`16 × KV` per warp) in registers;
//! - the online softmax runs on those registers in the exp2 domain (`log2 e` folded into the
//!   scale; the row max over the raw scores, scaled once per row), masked only in the tiles
//!   that cross the diagonal or hold keys past `seq_kv`;
//! - `O += P·V` is one warpgroup `mma` whose A operand is `P` cast to bf16 **in registers** (the
//!   f32 accumulator fragment of the scores is the A fragment of the next product: no shared
//!   memory), B the `KV × D` V tile in shared memory (N-major) through a descriptor.
//!
//! Both products are synchronous warpgroup mma (sm_90a: `wgmma.fence`, the `wgmma.mma_async`s,
//! `commit_group`, `wait_group 0`): the register-A form cannot be left in flight (its
//! registers would have to stay unchanged until a wait, which the DSL's asynchronous form does
//! not promise), and the scores are read right after their product. On other targets the
//! same ops are `mma.sync`; the kernel is registered for sm_90a only (its rings of 128-key
//! tiles take up to 160 KiB of shared memory).
//!
//! The key loop is split as in [`attention_fwd`](super::attention::attention_fwd): an unmasked
//! interior and a trailing run holding the last tile (keys past `seq_kv`) and, causal, the
//! tiles crossing the block's diagonal; causal blocks run in reverse order (the longest
//! first). Scores of `-inf` get weight 0 through [`safe_max`]; a row that sees no key gets
//! O = NaN and LSE = `-inf`, as `torch` gives.
//!
//! Registered tiles (`D`, `KV`, `WG`): 64 and 128 with 128-key tiles and two warpgroups
//! (128 rows per block), causal and not; bf16 output.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::attention::{grid, positive_scale_and_kv_heads, reference_with};
use crate::kernels::attention::{ForwardOptions, HARD_MASK};
use crate::kernels::check::{poisoned, record, Rng};
use crate::kernels::softmax::safe_max;
use crate::{Device, ScalarArg};

/// Query rows per warpgroup: the M of one `wgmma`.
pub const WG_ROWS: usize = 64;

/// See the module documentation. Grid: `[⌈seq_q / (64·WG)⌉, bh_q, 1]`
/// ([`grid`] with `64·WG` rows per block).
#[crate::kernel(
    warps = (4 * WG) as u32,
    variants(
        <bf16, 64, 128, 2, false> for [sm_90a],
        <bf16, 64, 128, 2, true> for [sm_90a],
        <bf16, 128, 128, 2, false> for [sm_90a],
        <bf16, 128, 128, 2, true> for [sm_90a]
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
    grid = [ceil_div(SQ, WG * 64), BH, 1]
)]
pub fn attention_fwd_wg<
    O: RegDtype,
    const D: usize,
    const KV: usize,
    const WG: usize,
    const CAUSAL: bool,
>(
    q: Gl<bf16, 3>,
    k: Gl<bf16, 3>,
    v: Gl<bf16, 3>,
    o: GlMut<O, 3>,
    lse: GlMut<f32, 2>,
    sm_scale: Scalar<f32>,
) {
    assert!(
        D % 64 == 0 && KV % 16 == 0 && KV <= 256,
        "attention_fwd_wg: the head dim {D} must be a multiple of 64 (whole 128-byte rows) and \
         the key tile {KV} a multiple of 16 up to 256"
    );
    let q_tiles: SharedArray<St<bf16, WG_ROWS, D>, WG> = alloc_shared();
    let k_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let v_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let (q_block0, head) = (block_idx_x(), block_idx_y());
    let mut q_block = q_block0;
    if CAUSAL {
        // The longest blocks (the last query rows) launch first.
        q_block = grid_dim_x() - 1 - q_block;
    }
    let kv_head = head / (q.dim(0) / k.dim(0));
    let group = warpgroup_idx();
    // This warp's 16 rows: tile index in units of 16 rows.
    let q_tile16 = q_block * (4 * WG) as i32 + warp_idx();
    let q_row0 = q_tile16 * 16;
    let (seq_q, seq_kv) = (q.dim(1), k.dim(1));
    let mut kv_tiles = ceil_div(seq_kv, KV);
    let mut diag0: Scalar<i32> = lit(0);
    let block_row0 = q_block * (WG * WG_ROWS) as i32;
    let mut hi = seq_kv / KV as i32;
    if CAUSAL {
        // The key on the diagonal of the warp's first row (bottom-right); a warp wholly past
        // seq_q takes seq_kv (its rows are not stored).
        diag0 = (q_row0 - seq_q).min(0) + seq_kv;
        // Tiles past the block's last row's diagonal are masked for every row of the block.
        let block_last = block_row0 + (seq_q - 1 - block_row0).min((WG * WG_ROWS - 1) as i32);
        kv_tiles = kv_tiles.min(ceil_div(block_last - seq_q + seq_kv + 1, KV).max(0));
        // Tiles at or before the block's first row's diagonal need no mask.
        hi = hi.min((block_row0 - seq_q + seq_kv + 1).max(0) / KV as i32);
    }
    hi = hi.min(kv_tiles).max(0);

    // Q (every warpgroup's tile: a copy is the whole block's), then K and V of the first
    // tile: two copy groups.
    for g in 0..WG {
        copy_start(
            q_tiles.at(g),
            q.tile(head, q_block * WG as i32 + g as i32, 0),
        );
    }
    copy_commit();
    let q_s = q_tiles.at(group);
    copy_start(k_ring.at(0), k.tile(kv_head, 0, 0));
    copy_start(v_ring.at(0), v.tile(kv_head, 0, 0));
    copy_commit();

    let scale_log2 = sm_scale * std::f32::consts::LOG2_E;
    let at = TileAt {
        kv_head,
        seq_kv,
        diag0,
        scale_log2,
    };
    let mut m: Rv<f32, 16> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, 16> = zeros();
    let mut acc: Rt<f32, 16, D> = zeros();
    // The interior, unmasked: the loop the time goes to.
    for kt in range(0, hi) {
        (m, l, acc) =
            kv_tile::<D, KV, WG, false, CAUSAL>((k, v), (k_ring, v_ring), q_s, at, kt, (m, l, acc));
    }
    // The last tile (keys past seq_kv) and the tiles crossing the diagonal.
    for kt in range(hi, kv_tiles) {
        (m, l, acc) =
            kv_tile::<D, KV, WG, true, CAUSAL>((k, v), (k_ring, v_ring), q_s, at, kt, (m, l, acc));
    }
    // The copies of the tile after the last (and, with no key tile, Q's): none outstanding
    // when the block ends.
    copy_wait(0);
    store(o.tile(head, q_tile16, 0), div_row(acc, l).cast::<O>());
    store(
        lse.chunk(head, q_tile16),
        (m + l.log2()) * std::f32::consts::LN_2,
    );
}

/// What every key tile needs besides its index.
#[derive(Clone, Copy)]
struct TileAt {
    kv_head: Scalar<i32>,
    seq_kv: Scalar<i32>,
    /// The key on the diagonal of the warp's first row (read when causal).
    diag0: Scalar<i32>,
    /// From the raw scores to the exp2 domain.
    scale_log2: Scalar<f32>,
}

/// Key tile `kt` of one warp's online softmax (see the module documentation): waits for the
/// tile's K and V, starts the next tile's, computes the scores with one warpgroup mma and
/// accumulates `P·V` with one warpgroup mma whose A is `P` in registers.
/// With `MASKED` the scores of keys past seq_kv and (`CAUSAL`) after a row's diagonal are
/// `-inf`. (Plain Rust, traced inline.)
fn kv_tile<
    const D: usize,
    const KV: usize,
    const WG: usize,
    const MASKED: bool,
    const CAUSAL: bool,
>(
    (k, v): (Gl<bf16, 3>, Gl<bf16, 3>),
    (k_ring, v_ring): (
        SharedArray<St<bf16, KV, D>, 2>,
        SharedArray<St<bf16, KV, D>, 2>,
    ),
    q_s: St<bf16, WG_ROWS, D>,
    at: TileAt,
    kt: Scalar<i32>,
    (m, l, acc): (Rv<f32, 16>, Rv<f32, 16>, Rt<f32, 16, D>),
) -> (Rv<f32, 16>, Rv<f32, 16>, Rt<f32, 16, D>) {
    let (cur, next) = (kt & 1, (kt + 1) & 1);
    // K and V of this tile (and Q) have landed; after the barrier every warp is done with the
    // previous tile's, whose slots take the next tile's: its copies run during this tile.
    copy_wait(0);
    barrier();
    copy_start(k_ring.at(next), k.tile(at.kv_head, kt + 1, 0));
    copy_start(v_ring.at(next), v.tile(at.kv_head, kt + 1, 0));
    copy_commit();
    let mut s: Rt<f32, 16, KV> = mma_abt_wg(zeros(), q_s, k_ring.at(cur));
    if MASKED {
        let c0 = kt * KV as i32;
        s = mask_cols(s, c0, at.seq_kv, f64::NEG_INFINITY);
        if CAUSAL {
            s = mask_causal(s, at.diag0, c0, f64::NEG_INFINITY);
        }
    }
    let m_new = m.max(row_max(s) * at.scale_log2);
    let shift = safe_max::<16>(m_new);
    let alpha = (m - shift).exp2();
    let p = sub_row(s * at.scale_log2, shift).exp2();
    let l = l * alpha + row_sum(p);
    let acc = mma_ab_wg(mul_row(acc, alpha), p.cast::<bf16>(), v_ring.at(cur));
    (m_new, l, acc)
}

/// Launches the registered variant for head dim `d` (64 or 128) and the given causality on
/// `device` (see [`attention_fwd_wg`] for the arguments).
#[allow(clippy::too_many_arguments)]
pub fn launch(
    device: &Device,
    (d, causal): (usize, bool),
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    o: &mut HostTensor,
    lse: &mut HostTensor,
    sm_scale: ScalarArg,
) -> Result<(), crate::Error> {
    let (bh, seq_q) = (q.shape()[0], q.shape()[1]);
    let g = grid(bh, seq_q, 2 * WG_ROWS);
    let s = sm_scale;
    match (d, causal) {
        (64, false) => {
            attention_fwd_wg::<bf16, 64, 128, 2, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (64, true) => {
            attention_fwd_wg::<bf16, 64, 128, 2, true>::launch(device, g, q, k, v, o, lse, s)
        }
        (128, false) => {
            attention_fwd_wg::<bf16, 128, 128, 2, false>::launch(device, g, q, k, v, o, lse, s)
        }
        (128, true) => {
            attention_fwd_wg::<bf16, 128, 128, 2, true>::launch(device, g, q, k, v, o, lse, s)
        }
        _ => Err(crate::Error::Shape {
            kernel: "attention_fwd_wg".into(),
            message: format!(
                "head dim {d} is not supported; supported: {}",
                HEAD_DIMS.map(|d| d.to_string()).join(", ")
            ),
        }),
    }
}

/// The head dims [`attention_fwd_wg`] registers.
pub const HEAD_DIMS: [usize; 2] = [64, 128];

/// Whether `device` runs [`attention_fwd_wg`]'s variants natively (an sm_90a GPU or the sm_90a
/// emulator): where [`forward`](super::attention::forward) dispatches to it.
pub fn native_on(device: &Device) -> bool {
    matches!(device.target(), Ok(Some("sm_90a")))
}

/// One run of the registered variant `(d, causal)` at `(bh_q, bh_kv, seq_q, seq_kv)` against
/// the f64 reference; `masked` writes [`HARD_MASK`] into Q and K (rows and whole key tiles of
/// `-inf`, rows that see no key). Returns the O and LSE errors.
pub fn check_against_reference(
    device: &Device,
    rng: &mut Rng,
    (d, causal, masked): (usize, bool, bool),
    (bh_q, bh_kv, seq_q, seq_kv): (usize, usize, usize, usize),
) -> Result<(f64, f64), String> {
    let bf = ScalarType::BF16;
    let mut qv = rng.tensor(bf, &[bh_q, seq_q, d], -2.0, 2.0).to_vec();
    let mut kv = rng.tensor(bf, &[bh_kv, seq_kv, d], -2.0, 2.0).to_vec();
    let mut opts = ForwardOptions::new(1.0 / (d as f32).sqrt());
    opts.causal = causal;
    let visible = |h: usize, i: usize, j: usize| !masked || HARD_MASK.visible(h, i, j);
    if masked {
        // The mask is written per head into Q and K; with bh_q = bh_kv the heads agree.
        if bh_q != bh_kv {
            return Err(format!(
                "masked checks need as many K/V heads as query heads ({bh_q} and {bh_kv})"
            ));
        }
        HARD_MASK.apply(&mut qv, &mut kv, (bh_q, seq_q, seq_kv, d));
    }
    let tensor = |values: &[f64], shape: &[usize]| {
        HostTensor::new(bf, shape, values).map_err(|e| e.to_string())
    };
    let q = tensor(&qv, &[bh_q, seq_q, d])?;
    let k = tensor(&kv, &[bh_kv, seq_kv, d])?;
    let v = rng.tensor(bf, &[bh_kv, seq_kv, d], -1.0, 1.0);
    let mut o = poisoned(bf, &[bh_q, seq_q, d]);
    let mut lse = poisoned(ScalarType::F32, &[bh_q, seq_q]);
    let name = format!(
        "attention_fwd_wg hd {d} causal={causal}{} {bh_q}/{bh_kv} heads {seq_q}×{seq_kv} on {}",
        if masked { " masked" } else { "" },
        device.name()
    );
    launch(
        device,
        (d, causal),
        &q,
        &k,
        &v,
        &mut o,
        &mut lse,
        ScalarArg::from(opts.sm_scale),
    )
    .map_err(|e| format!("{name}: {e}"))?;
    let (q, k, v) = (q.to_vec(), k.to_vec(), v.to_vec());
    let (wo, wl) = if masked {
        // The reference's scores are -inf where the mask says (the kernel's come from the
        // 2⁷⁰ products of the masked inputs).
        masked_reference(&q, &k, &v, (bh_q, seq_q, seq_kv, d), &opts, &visible)
    } else {
        reference_with(&q, &k, &v, (bh_q, bh_kv, seq_q, seq_kv, d), &opts)
    };
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
    Ok((eo, el))
}

/// [`reference_with`] (dense heads, bottom-right causal) where row i of head h sees key j only
/// when `visible(h, i, j)`.
fn masked_reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (bh, seq_q, seq_kv, d): (usize, usize, usize, usize),
    opts: &ForwardOptions,
    visible: &dyn Fn(usize, usize, usize) -> bool,
) -> (Vec<f64>, Vec<f64>) {
    let scale = f64::from(opts.sm_scale);
    let mut o = vec![0.0; bh * seq_q * d];
    let mut lse = vec![0.0; bh * seq_q];
    for h in 0..bh {
        for i in 0..seq_q {
            let qi = &q[(h * seq_q + i) * d..][..d];
            let (lo, hi) = opts.key_range(i, seq_q, seq_kv);
            let s: Vec<f64> = (0..seq_kv)
                .map(|j| {
                    if (j as i64) < lo || (j as i64) > hi || !visible(h, i, j) {
                        return f64::NEG_INFINITY;
                    }
                    let kj = &k[(h * seq_kv + j) * d..][..d];
                    scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
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
                let vj = &v[(h * seq_kv + j) * d..][..d];
                for (oc, vc) in out.iter_mut().zip(vj) {
                    *oc += w * vc;
                }
            }
        }
    }
    (o, lse)
}

/// Every registered variant at awkward lengths (1, 17, 130; seq_q ≠ seq_kv; GQA) and with
/// masks that empty whole key tiles and rows, and hd128 causal at 1000, against the f64
/// reference.
fn selftest(device: &Device) -> Result<String, String> {
    if !crate::registry::runs_on(&["sm_90a"], device) {
        return Ok("registered for sm_90a only: nothing to run on this device".into());
    }
    let mut rng = Rng::fresh();
    let mut runs = 0;
    for d in HEAD_DIMS {
        for causal in [false, true] {
            for (shape, masked) in [
                ((1, 1, 1, 1), false),
                ((2, 1, 17, 17), false),
                ((2, 2, 130, 130), false),
                ((2, 2, 17, 130), false),
                ((3, 1, 130, 40), false),
                ((2, 2, 200, 200), true),
            ] {
                check_against_reference(device, &mut rng, (d, causal, masked), shape)?;
                runs += 1;
            }
        }
    }
    // One long sequence: several unmasked interior tiles and a ragged last one.
    check_against_reference(device, &mut rng, (128, true, false), (1, 1, 1000, 1000))?;
    runs += 1;
    Ok(format!(
        "{runs} runs (hd 64 and 128, causal and not, lengths 1, 17, 130, 200 and 1000, seq_q ≠ \
         seq_kv, GQA/MQA, -inf key tiles and rows) against the f64 reference"
    ))
}
