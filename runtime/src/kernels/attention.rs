//! FlashAttention-style forward pass.
//!
//! Q `[bh, seq_q, D]`, K and V `[bh, seq_kv, D]` (bf16; the leading index is batch·heads); O
//! `[bh, seq_q, D]` of dtype `O` and the log-sum-exp LSE `[bh, seq_q]` (f32, natural log). With
//! `CAUSAL`, query row i sees keys `j ≤ i`.
//!
//! Each warp owns `R` query rows (its Q tile stays in registers); a block of `WARPS` warps covers
//! `WARPS·R` rows of one head (grid: x over query blocks, y over heads). The block walks the keys
//! in tiles of `KV`, staging K and V in shared memory; each warp computes `S = Q·Kᵀ` (`mma_abt`)
//! and the online softmax in the exp2 domain (`log2 e` folded into the scale), with `-inf` for
//! keys past `seq_kv` and, when causal, after the row. `O /= l` and `LSE = (m + log2 l)·ln 2` at
//! the end. Causal blocks stop at their diagonal tile.

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
use crate::launch::{shape_of, Device, LaunchArg, ScalarArg};

/// See the module documentation. Grid: `[⌈seq_q / (WARPS·R)⌉, bh, 1]` ([`grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(<bf16, 64, 16, 64, 4, false>, <bf16, 64, 16, 64, 4, true>, <f32, 64, 16, 64, 4, false>),
    selftest = selftest,
    check = shapes::<D>
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
    let k_smem: St<bf16, KV, D> = alloc_shared();
    let v_smem: St<bf16, KV, D> = alloc_shared();
    let (q_block, head) = (block_idx_x(), block_idx_y());
    let q_tile = q_block * WARPS as i32 + warp_idx();
    let q_row0 = q_tile * R as i32;
    let seq_kv = k.dim(1);
    let mut kv_tiles = (seq_kv + (KV as i32 - 1)) / KV as i32;
    if CAUSAL {
        // Key tiles past the block's last row are masked for every row of the block. The bound
        // is the block's, not the warp's: every warp takes part in each tile's copy and barriers.
        let end = (q_block + 1) * (WARPS * R) as i32;
        kv_tiles = kv_tiles.min((end + (KV as i32 - 1)) / KV as i32);
    }
    let q_frag: Rt<bf16, R, D> = load(q.tile(head, q_tile, 0));
    let scale_log2 = sm_scale * std::f32::consts::LOG2_E;

    let mut m: Rv<f32, R> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, R> = zeros();
    let mut acc: Rt<f32, R, D> = zeros();
    for kt in range(0, kv_tiles) {
        copy_block(k_smem, k.tile(head, kt, 0));
        copy_block(v_smem, v.tile(head, kt, 0));
        barrier();
        let k_frag: Rt<bf16, KV, D> = load(k_smem);
        let v_frag: Rt<bf16, KV, D, Col> = load(v_smem);
        let kv0 = kt * KV as i32;
        let s = mma_abt(zeros(), q_frag, k_frag);
        let mut t = mask_cols(s * scale_log2, kv0, seq_kv, f64::NEG_INFINITY);
        if CAUSAL {
            t = mask_causal(t, q_row0, kv0, f64::NEG_INFINITY);
        }
        let m_new = m.max(row_max(t));
        let p = sub_row(t, m_new).exp2();
        let alpha = (m - m_new).exp2();
        l = l * alpha + row_sum(p);
        acc = mma_ab(mul_row(acc, alpha), p.cast::<bf16>(), v_frag);
        m = m_new;
        // The next tile's copy overwrites K and V: every warp must be done with them.
        barrier();
    }
    store(o.tile(head, q_tile, 0), div_row(acc, l).cast::<O>());
    store(
        lse.chunk(head, q_tile),
        (m + l.log2()) * std::f32::consts::LN_2,
    );
}

/// Q and O `[bh, seq_q, D]`, K and V `[bh, seq_kv, D]` with `seq_kv ≥ 1`, LSE `[bh, seq_q]`.
pub fn shapes<const D: usize>(args: &[LaunchArg]) -> Result<(), String> {
    let [q, k, v, o, lse] = [0, 1, 2, 3, 4].map(|i| shape_of(args, i));
    let (bh, seq_q) = (q[0], q[1]);
    if q[2] != D || k != v || k[0] != bh || k[2] != D || k[1] == 0 || o != q || lse != [bh, seq_q] {
        return Err(format!(
            "q {q:?}, k {k:?}, v {v:?}, o {o:?}, lse {lse:?}: expected q and o [bh, seq_q, {D}], k and v [bh, seq_kv ≥ 1, {D}], lse [bh, seq_q]"
        ));
    }
    Ok(())
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
#[allow(clippy::too_many_arguments)]
pub fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (bh, seq_q, seq_kv, d): (usize, usize, usize, usize),
    sm_scale: f64,
    causal: bool,
) -> (Vec<f64>, Vec<f64>) {
    let mut o = vec![0.0; bh * seq_q * d];
    let mut lse = vec![0.0; bh * seq_q];
    for h in 0..bh {
        for i in 0..seq_q {
            let qi = &q[(h * seq_q + i) * d..][..d];
            let visible = if causal { seq_kv.min(i + 1) } else { seq_kv };
            let s: Vec<f64> = (0..visible)
                .map(|j| {
                    let kj = &k[(h * seq_kv + j) * d..][..d];
                    sm_scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
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

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(2, 70)];
    if large(device) {
        shapes.extend([(4, 1000), (3, 513)]);
    }
    let d = 64;
    for (bh, seq) in shapes {
        let bf = ScalarType::BF16;
        let q = rng.tensor(bf, &[bh, seq, d], -1.0, 1.0);
        let k = rng.tensor(bf, &[bh, seq, d], -1.0, 1.0);
        let v = rng.tensor(bf, &[bh, seq, d], -1.0, 1.0);
        let scale = 0.125f32;
        for causal in [false, true] {
            let mut o = poisoned(bf, &[bh, seq, d]);
            let mut lse = poisoned(ScalarType::F32, &[bh, seq]);
            let g = grid(bh, seq, 64);
            let s = ScalarArg::from(scale);
            let r = if causal {
                attention_fwd::<bf16, 64, 16, 64, 4, true>::launch(
                    device, g, &q, &k, &v, &mut o, &mut lse, s,
                )
            } else {
                attention_fwd::<bf16, 64, 16, 64, 4, false>::launch(
                    device, g, &q, &k, &v, &mut o, &mut lse, s,
                )
            };
            r.map_err(|e| format!("causal {causal}: {e}"))?;
            let (wo, wl) = reference(
                &q.to_vec(),
                &k.to_vec(),
                &v.to_vec(),
                (bh, seq, seq, d),
                f64::from(scale),
                causal,
            );
            let (eo, el) = (
                record(
                    format!("{bh}×{seq}×{d} causal={causal}: O"),
                    &o.to_vec(),
                    &wo,
                    1e-2,
                ),
                record(
                    format!("{bh}×{seq}×{d} causal={causal}: LSE"),
                    &lse.to_vec(),
                    &wl,
                    1e-5,
                ),
            );
            if eo > 1e-2 || el > 1e-5 {
                return Err(format!(
                    "causal {causal}: O error {eo:.2e}, LSE error {el:.2e} (seed {})",
                    rng.seed
                ));
            }
        }
    }
    Ok("full and causal against the f64 reference".into())
}
