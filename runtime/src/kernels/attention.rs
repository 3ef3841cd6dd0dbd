//! FlashAttention-style forward pass.
//!
//! Q `[bh, seq_q, D]`, K and V `[bh, seq_kv, D]` (bf16; the leading index is batch·heads); O
//! `[bh, seq_q, D]` of dtype `O` and the log-sum-exp LSE `[bh, seq_q]` (f32, natural log). With
//! `CAUSAL`, query row i sees keys `j ≤ i`.
//!
//! Each warp owns `R` query rows (its Q tile stays in registers); a block of `WARPS` warps covers
//! `WARPS·R` rows of one head (grid: x over query blocks, y over heads; the library registers 64
//! and 128 rows per block, head dims 64 and 128 — at 128 with key tiles of 16: with 64 keys the K
//! and V fragments spill on sm_80 and overflow gfx942's 256 VGPRs at 8 waves, with 32 they
//! still overflow gfx950's by 15). The
//! block walks the keys in tiles of `KV`,
//! staging K and V in a two-slot shared ring each, as separate copy groups
//! ([`dsl::pipeline`](crate::dsl::pipeline)): while a warp computes `S = Q·Kᵀ` (`mma_abt`) the
//! tile's V and the next tile's K are in flight, and while it computes `P·V` the next K is
//! (each wait leaves one group pending: `cp.async.wait_group 1`). The online softmax runs in
//! the exp2 domain (`log2 e` folded into the scale), with `-inf` for keys past `seq_kv` (only
//! the last key tile is masked for it) and, when causal, after the row (only tiles that reach
//! past the warp's first row). `O /= l` and `LSE = (m + log2 l)·ln 2` at the end. Causal blocks
//! stop at their diagonal tile. `sm_scale` must be positive: the row max is taken over the raw
//! scores and scaled once per row, and each score's scaling and shift is one `fma`.
//!
//! Scores of `-inf` (masked, or a product past f32's range) get weight 0 wherever they fall: the
//! exponentials subtract [`safe_max`] of the running max, so a key tile that is `-inf` for a row
//! before any finite score adds nothing instead of NaN. A row with no finite score gets O = NaN
//! and LSE = `-inf`, as `torch` gives for a fully masked row.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
use crate::kernels::softmax::safe_max;
use crate::{Device, LaunchArg, ScalarArg};

/// See the module documentation. Grid: `[⌈seq_q / (WARPS·R)⌉, bh, 1]` ([`grid`]).
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
    check = positive_scale,
    shapes(q: [BH, SQ, D], k: [BH, SK, D], v: [BH, SK, D], o: [BH, SQ, D], lse: [BH, SQ], SK >= 1),
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
    let k_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let v_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let (q_block, head) = (block_idx_x(), block_idx_y());
    let q_tile = q_block * WARPS as i32 + warp_idx();
    let q_row0 = q_tile * R as i32;
    let seq_kv = k.dim(1);
    let mut kv_tiles = ceil_div(seq_kv, KV);
    // The only key tile with columns past seq_kv (seq_kv ≥ 1, so it exists).
    let last_tile = kv_tiles - 1;
    if CAUSAL {
        // Key tiles past the block's last row are masked for every row of the block. The bound
        // is the block's, not the warp's: every warp takes part in each tile's copy and barriers.
        // ⌈(first + rows) / KV⌉ without forming first + rows, which passes i32::MAX in the last
        // block of a sequence near the limit: first = KV·(first / KV) + first % KV.
        let first = q_block * (WARPS * R) as i32;
        let diag_tiles = first / KV as i32 + ceil_div(first % KV as i32 + (WARPS * R) as i32, KV);
        kv_tiles = kv_tiles.min(diag_tiles);
    }
    // K and V of the first tile, one copy group each; the loop keeps one group in flight.
    copy_start(k_ring.at(0), k.tile(head, 0, 0));
    copy_commit();
    copy_start(v_ring.at(0), v.tile(head, 0, 0));
    copy_commit();
    let q_frag: Rt<bf16, R, D> = load(q.tile(head, q_tile, 0));
    let scale_log2 = sm_scale * std::f32::consts::LOG2_E;

    let mut m: Rv<f32, R> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, R> = zeros();
    let mut acc: Rt<f32, R, D> = zeros();
    for kt in range(0, kv_tiles) {
        let (cur, next) = (kt & 1, (kt + 1) & 1);
        // K of this tile has landed (V of this tile may be in flight); after the barrier every
        // warp is done with the previous tile's K, whose slot takes the next tile's.
        copy_wait(1);
        barrier();
        copy_start(k_ring.at(next), k.tile(head, kt + 1, 0));
        copy_commit();
        let k_frag: Rt<bf16, KV, D> = load(k_ring.at(cur));
        let kv0 = kt * KV as i32;
        // Raw scores: the scale goes into the exponent's argument below, one `fma` per score
        // (`t·scale_log2 − shift`), and into the row max once per row; for a scale > 0,
        // max(t)·scale rounds to exactly max(t·scale), and a masked −inf stays −inf.
        let mut t = mma_abt(zeros(), q_frag, k_frag);
        // Interior tiles need no mask: only the last tile has keys past seq_kv, and (causal)
        // only a tile reaching past this warp's first row has keys after a row.
        if kt.eq(last_tile) {
            t = mask_cols(t, kv0, seq_kv, f64::NEG_INFINITY);
        }
        if CAUSAL {
            if kv0.gt(q_row0 - (KV - 1) as i32) {
                t = mask_causal(t, q_row0, kv0, f64::NEG_INFINITY);
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
        copy_start(v_ring.at(next), v.tile(head, kt + 1, 0));
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

/// Attention in f64 from the definition: `(O, LSE)` for row-major Q `[bh, seq_q, d]`, K and V
/// `[bh, seq_kv, d]`.
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
    Ok(
        "full and causal, hd 64 and 128, 64 and 128 rows per block, with and without -inf key \
         tiles, against the f64 reference"
            .into(),
    )
}
