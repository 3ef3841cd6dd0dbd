//! FlashAttention-2 backward pass of [`attention_fwd`](super::attention::attention_fwd).
//!
//! The forward computes `O = softmax(s·Q·Kᵀ [+ causal mask])·V` with `s = sm_scale` and returns
//! the natural-log `LSE` per query row. Given the output gradient dO, the backward computes
//!
//! - [`attention_bwd_preprocess`]: `Δ = rowsum(dO ∘ O)` per query row (f32), the inner product
//!   `Σ_j P_ij·dP_ij` the softmax's gradient subtracts;
//! - [`attention_bwd_dkdv`]: one block per `WARPS·16` keys (each warp owns 16 keys and keeps
//!   their K and V fragments and its dK and dV accumulators in registers) walking the query
//!   tiles of `QT` rows through two-slot shared rings of Q and dO: it recomputes the transposed
//!   scores `Sᵀ = K·Qᵀ` and probabilities `Pᵀ = exp(s·Sᵀ − LSE)`, then `dV += Pᵀ·dO`,
//!   `dPᵀ = V·dOᵀ`, `dSᵀ = Pᵀ ∘ (dPᵀ − Δ)` and `dK += dSᵀ·Q`; `dK` is scaled by `s` at the end.
//!   Working on the transposes keeps each key's row in one warp, so no warp ever reduces
//!   across another's rows;
//! - [`attention_bwd_dq`]: one block per `WARPS·R` query rows walking the key tiles of `KV`
//!   through K and V rings, as the forward does: `S = Q·Kᵀ`, `P = exp(s·S − LSE)`,
//!   `dP = dO·Vᵀ`, `dS = P ∘ (dP − Δ)`, `dQ += dS·K`, scaled by `s` at the end. dQ has its own
//!   pass instead of atomic adds from the key blocks, so it is computed in a fixed order and is
//!   bitwise the same on every run.
//!
//! Causal (aligned bottom-right as the forward: query row i sees keys `j ≤ i + seq_kv − seq_q`):
//! the key blocks start at the first query tile that reaches their first key, the query blocks
//! stop at their diagonal key tile, and only tiles that cross the diagonal are masked. Ragged edges need no
//! mask in the key-block pass: rows past `seq_q` load as zero (Q, dO, LSE and Δ), so their
//! `dPᵀ − Δ` and their dO rows are zero and they add nothing; keys past `seq_kv` only produce
//! rows that the masked store drops. The query-block pass masks keys past `seq_kv` to `-inf`
//! (as the forward) so that `exp(0 − LSE)` cannot overflow for a row with a very negative LSE.
//!
//! A causal row that sees no key (the first `seq_q − seq_kv` rows when `seq_q > seq_kv`) has
//! LSE = `-inf` and O = NaN from the forward, hence Δ = NaN: the causal kernels read its LSE as
//! `+inf` and its Δ as 0, so its P, dS and gradients are 0 (the gradient of a constant row).
//! Otherwise LSE must be finite: every row sees at least one key, as the dense layout with
//! `seq_kv ≥ 1` has. [`backward`] runs the three kernels.
//!
//! The library registers head dim 64: the key pass with query tiles of 32 and the query pass
//! with key tiles of 32 (with 64 the key pass spills on sm_80 and the query pass needs 247–256
//! registers). Head dim 128 does not fit the key pass as written: a warp's dK and dV
//! accumulators (2 × 64 f32 registers) with its K and V fragments (2 × 32) spill 136 bytes on
//! sm_80 even with query tiles of 16; reading K and V from shared memory at each use would
//! free the 64.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::attention::{reference_with, ForwardOptions};
use crate::kernels::check::{poisoned, record, tiles, Rng};
use crate::{Device, LaunchArg, ScalarArg};

/// Keys per warp in [`attention_bwd_dkdv`]: one mma row block.
pub const KEYS_PER_WARP: usize = 16;

/// `Δ = rowsum(dO ∘ O)` for O `[bh, seq_q, D]` (dtype `O`, as the forward stored it) and dO
/// (bf16); `delta` is `[bh, seq_q]` f32. Each warp takes `R` rows. Grid:
/// `[⌈seq_q / (WARPS·R)⌉, bh, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(<bf16, 64, 16, 4>, <f32, 64, 16, 4>),
    shapes(o: [BH, SQ, D], d_o: [BH, SQ, D], delta: [BH, SQ]),
    grid = [ceil_div(SQ, WARPS * R), BH, 1]
)]
pub fn attention_bwd_preprocess<O: RegDtype, const D: usize, const R: usize, const WARPS: usize>(
    o: Gl<O, 3>,
    d_o: Gl<bf16, 3>,
    delta: GlMut<f32, 2>,
) {
    let head = block_idx_y();
    let q_tile = block_idx_x() * WARPS as i32 + warp_idx();
    let o_frag: Rt<O, R, D> = load(o.tile(head, q_tile, 0));
    let do_frag: Rt<bf16, R, D> = load(d_o.tile(head, q_tile, 0));
    store(
        delta.chunk(head, q_tile),
        row_sum(o_frag.cast::<f32>() * do_frag.cast::<f32>()),
    );
}

/// dK and dV (dtype `G`) of `WARPS·16` keys per block; see the module documentation. Grid:
/// `[⌈seq_kv / (WARPS·16)⌉, bh, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 32, 4, false>,
        <f32, 64, 32, 4, true>,
        <bf16, 64, 32, 4, false>,
        <bf16, 64, 32, 4, true>
    ),
    check = finite_scale::<8>,
    shapes(
        q: [BH, SQ, D],
        k: [BH, SK, D],
        v: [BH, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dk: [BH, SK, D],
        dv: [BH, SK, D],
        SK >= 1
    ),
    grid = [ceil_div(SK, WARPS * 16), BH, 1]
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
    let q_ring: SharedArray<St<bf16, QT, D>, 2> = alloc_shared();
    let do_ring: SharedArray<St<bf16, QT, D>, 2> = alloc_shared();
    let (k_block, head) = (block_idx_x(), block_idx_y());
    let k_tile = k_block * WARPS as i32 + warp_idx();
    let k_row0 = k_tile * KEYS_PER_WARP as i32;
    let (seq_q, seq_kv) = (q.dim(1), k.dim(1));
    let q_tiles = ceil_div(seq_q, QT);
    let mut first: Scalar<i32> = lit(0);
    // The warp's first key shifted to the query row whose diagonal it is (bottom-right).
    let mut k_diag0: Scalar<i32> = lit(0);
    if CAUSAL {
        // Query rows before the one whose diagonal is the block's first key see none of its
        // keys: their tiles are skipped. The bound is the block's, not the warp's: every warp
        // takes part in each tile's copies and barriers. key − seq_kv < 0: no wrap.
        let k_first = k_block * (WARPS * KEYS_PER_WARP) as i32;
        first = (k_first - seq_kv + seq_q).max(0) / QT as i32;
        k_diag0 = k_row0 - seq_kv + seq_q;
    }
    copy_start(q_ring.at(first & 1), q.tile(head, first, 0));
    copy_start(do_ring.at(first & 1), d_o.tile(head, first, 0));
    copy_commit();
    let k_frag: Rt<bf16, 16, D> = load(k.tile(head, k_tile, 0));
    let v_frag: Rt<bf16, 16, D> = load(v.tile(head, k_tile, 0));
    let scale_log2 = sm_scale * std::f32::consts::LOG2_E;

    let mut dk_acc: Rt<f32, 16, D> = zeros();
    let mut dv_acc: Rt<f32, 16, D> = zeros();
    for qt in range(first, q_tiles) {
        let (cur, next) = (qt & 1, (qt + 1) & 1);
        // This tile's Q and dO have landed; after the barrier every warp is done with the
        // previous tile, whose slots take the next tile's.
        copy_wait(0);
        barrier();
        copy_start(q_ring.at(next), q.tile(head, qt + 1, 0));
        copy_start(do_ring.at(next), d_o.tile(head, qt + 1, 0));
        copy_commit();
        let q0 = qt * QT as i32;
        let lse_col: Rv<f32, QT, Cols> = load(lse.chunk(head, qt));
        let mut d_row: Rv<f32, QT, Cols> = load(delta.chunk(head, qt));
        let mut lse2 = lse_col * std::f32::consts::LOG2_E;
        if CAUSAL {
            // Rows that see no key (LSE −inf, Δ NaN): P = 2^(−inf − inf) = 0 and Δ = 0.
            let seen = lse_col.ne(f32::NEG_INFINITY);
            lse2 = select(seen, lse2, f32::INFINITY);
            d_row = select(seen, d_row, 0.0);
        }

        // Sᵀ (keys × queries), raw: the scale and the LSE shift are one fma per score.
        let q_frag: Rt<bf16, QT, D> = load(q_ring.at(cur));
        let mut st = mma_abt(zeros(), k_frag, q_frag);
        if CAUSAL {
            // Query q0 + c sees key k_row0 + r only when q0 + c + seq_kv − seq_q ≥ k_row0 + r.
            if q0.lt(k_diag0 + (KEYS_PER_WARP - 1) as i32) {
                st = mask_anticausal(st, k_diag0, q0, f64::NEG_INFINITY);
            }
        }
        let pt = sub_col(st * scale_log2, lse2).exp2();
        let do_col: Rt<bf16, QT, D, Col> = load(do_ring.at(cur));
        dv_acc = mma_ab(dv_acc, pt.cast::<bf16>(), do_col);
        let do_frag: Rt<bf16, QT, D> = load(do_ring.at(cur));
        let dpt = mma_abt(zeros(), v_frag, do_frag);
        let dst = pt * sub_col(dpt, d_row);
        let q_col: Rt<bf16, QT, D, Col> = load(q_ring.at(cur));
        dk_acc = mma_ab(dk_acc, dst.cast::<bf16>(), q_col);
    }
    // The copies of the tile after the last: none outstanding when the block ends.
    copy_wait(0);
    store(dk.tile(head, k_tile, 0), (dk_acc * sm_scale).cast::<G>());
    store(dv.tile(head, k_tile, 0), dv_acc.cast::<G>());
}

/// dQ (dtype `G`) of `WARPS·R` query rows per block; see the module documentation. Grid:
/// `[⌈seq_q / (WARPS·R)⌉, bh, 1]` ([`rows_grid`]).
#[crate::kernel(
    warps = WARPS as u32,
    variants(
        <f32, 64, 16, 32, 4, false>,
        <f32, 64, 16, 32, 4, true>,
        <bf16, 64, 16, 32, 4, false>,
        <bf16, 64, 16, 32, 4, true>
    ),
    selftest = selftest,
    check = finite_scale::<7>,
    shapes(
        q: [BH, SQ, D],
        k: [BH, SK, D],
        v: [BH, SK, D],
        d_o: [BH, SQ, D],
        lse: [BH, SQ],
        delta: [BH, SQ],
        dq: [BH, SQ, D],
        SK >= 1
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
    let k_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let v_ring: SharedArray<St<bf16, KV, D>, 2> = alloc_shared();
    let (q_block, head) = (block_idx_x(), block_idx_y());
    let q_tile = q_block * WARPS as i32 + warp_idx();
    let q_row0 = q_tile * R as i32;
    let (seq_q, seq_kv) = (q.dim(1), k.dim(1));
    let mut kv_tiles = ceil_div(seq_kv, KV);
    // The only key tile with columns past seq_kv (seq_kv ≥ 1, so it exists).
    let last_tile = kv_tiles - 1;
    // The diagonal key of the warp's first row (bottom-right; seq_kv for a warp past seq_q).
    let mut diag0: Scalar<i32> = lit(0);
    if CAUSAL {
        // As the forward: key tiles past the diagonal of the block's last row are masked for
        // every row of the block (none when it is before key 0); the sums stay in i32.
        let block_row0 = q_block * (WARPS * R) as i32;
        let block_last = block_row0 + (seq_q - 1 - block_row0).min((WARPS * R - 1) as i32);
        kv_tiles = kv_tiles.min(ceil_div(block_last - seq_q + seq_kv + 1, KV).max(0));
        diag0 = (q_row0 - seq_q).min(0) + seq_kv;
    }
    copy_start(k_ring.at(0), k.tile(head, 0, 0));
    copy_start(v_ring.at(0), v.tile(head, 0, 0));
    copy_commit();
    let q_frag: Rt<bf16, R, D> = load(q.tile(head, q_tile, 0));
    let do_frag: Rt<bf16, R, D> = load(d_o.tile(head, q_tile, 0));
    let lse_row: Rv<f32, R> = load(lse.chunk(head, q_tile));
    let mut d_row: Rv<f32, R> = load(delta.chunk(head, q_tile));
    let mut lse2 = lse_row * std::f32::consts::LOG2_E;
    if CAUSAL {
        // Rows that see no key (LSE −inf, Δ NaN): P = 2^(−inf − inf) = 0 and Δ = 0.
        let seen = lse_row.ne(f32::NEG_INFINITY);
        lse2 = select(seen, lse2, f32::INFINITY);
        d_row = select(seen, d_row, 0.0);
    }
    let scale_log2 = sm_scale * std::f32::consts::LOG2_E;

    let mut acc: Rt<f32, R, D> = zeros();
    for kt in range(0, kv_tiles) {
        let (cur, next) = (kt & 1, (kt + 1) & 1);
        // This tile's K and V have landed; after the barrier the previous tile's slots are free.
        copy_wait(0);
        barrier();
        copy_start(k_ring.at(next), k.tile(head, kt + 1, 0));
        copy_start(v_ring.at(next), v.tile(head, kt + 1, 0));
        copy_commit();
        let kv0 = kt * KV as i32;
        let k_frag: Rt<bf16, KV, D> = load(k_ring.at(cur));
        let mut s = mma_abt(zeros(), q_frag, k_frag);
        if kt.eq(last_tile) {
            s = mask_cols(s, kv0, seq_kv, f64::NEG_INFINITY);
        }
        if CAUSAL {
            if kv0.gt(diag0 - (KV - 1) as i32) {
                s = mask_causal(s, diag0, kv0, f64::NEG_INFINITY);
            }
        }
        let p = sub_row(s * scale_log2, lse2).exp2();
        let v_frag: Rt<bf16, KV, D> = load(v_ring.at(cur));
        let dp = mma_abt(zeros(), do_frag, v_frag);
        let ds = p * sub_row(dp, d_row);
        let k_col: Rt<bf16, KV, D, Col> = load(k_ring.at(cur));
        acc = mma_ab(acc, ds.cast::<bf16>(), k_col);
    }
    copy_wait(0);
    store(dq.tile(head, q_tile, 0), (acc * sm_scale).cast::<G>());
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

/// Head dims the backward has kernels for.
pub const HEAD_DIMS: [usize; 1] = [64];

/// Runs the backward of [`attention_fwd`](super::attention::attention_fwd) on `device`: from Q, K, V `[bh, seq, D]` (bf16), the
/// forward's O (bf16 or f32) and LSE (f32, natural log), and the output gradient dO (bf16),
/// writes dQ, dK and dV (all f32 or all bf16). `sm_scale` and `causal` must be the forward's.
/// The row sums Δ live in a scratch tensor of `bh·seq_q` f32.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    device: &Device,
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    (o, lse, d_o): (&HostTensor, &HostTensor, &HostTensor),
    sm_scale: f32,
    causal: bool,
    dq: &mut HostTensor,
    dk: &mut HostTensor,
    dv: &mut HostTensor,
) -> Result<(), crate::Error> {
    let refuse = |message: String| crate::Error::Shape {
        kernel: "attention_bwd".into(),
        message,
    };
    let (&[bh, seq_q, d], &[_, seq_kv, _]) = (q.shape(), k.shape()) else {
        return Err(refuse(format!(
            "Q and K must be [bh, seq, head dim], got {:?} and {:?}",
            q.shape(),
            k.shape()
        )));
    };
    if !HEAD_DIMS.contains(&d) {
        return Err(refuse(format!(
            "head dim {d} is not supported; supported: {HEAD_DIMS:?}"
        )));
    }
    let mut delta = HostTensor::zeros(ScalarType::F32, &[bh, seq_q]);
    let pre = rows_grid(bh, seq_q, 64);
    match o.dtype() {
        ScalarType::F32 => {
            attention_bwd_preprocess::<f32, 64, 16, 4>::launch(device, pre, o, d_o, &mut delta)?
        }
        _ => attention_bwd_preprocess::<bf16, 64, 16, 4>::launch(device, pre, o, d_o, &mut delta)?,
    }
    let s = ScalarArg::from(sm_scale);
    let kg = rows_grid(bh, seq_kv, 4 * KEYS_PER_WARP);
    let qg = rows_grid(bh, seq_q, 64);
    let delta = &delta;
    macro_rules! run {
        ($g:ty, $causal:literal) => {{
            attention_bwd_dkdv::<$g, 64, 32, 4, $causal>::launch(
                device, kg, q, k, v, d_o, lse, delta, dk, dv, s,
            )?;
            attention_bwd_dq::<$g, 64, 16, 32, 4, $causal>::launch(
                device, qg, q, k, v, d_o, lse, delta, dq, s,
            )
        }};
    }
    match (dq.dtype(), causal) {
        (ScalarType::F32, false) => run!(f32, false),
        (ScalarType::F32, true) => run!(f32, true),
        (ScalarType::BF16, false) => run!(bf16, false),
        (ScalarType::BF16, true) => run!(bf16, true),
        (other, _) => Err(refuse(format!(
            "gradients of dtype {other:?} are not supported; expected f32 or bf16"
        ))),
    }
}

/// The gradients `(dQ, dK, dV)` of `loss = Σ dO ∘ O` for `O = softmax(s·Q·Kᵀ [+ causal mask])·V`
/// (causal aligned bottom-right, as the forward),
/// in f64 from the definition, for row-major Q and dO `[bh, seq_q, d]`, K and V
/// `[bh, seq_kv, d]`: with `P` the softmax, `dV = Pᵀ·dO`, `dP = dO·Vᵀ`,
/// `dS = P ∘ (dP − rowsum(P ∘ dP))`, `dQ = s·dS·K`, `dK = s·dSᵀ·Q`.
pub fn reference_grads(
    (q, k, v, d_o): (&[f64], &[f64], &[f64], &[f64]),
    (bh, seq_q, seq_kv, d): (usize, usize, usize, usize),
    sm_scale: f64,
    causal: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dq = vec![0.0; bh * seq_q * d];
    let mut dk = vec![0.0; bh * seq_kv * d];
    let mut dv = vec![0.0; bh * seq_kv * d];
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    for h in 0..bh {
        let row = |n: usize, i: usize| (h * n + i) * d;
        for i in 0..seq_q {
            let qi = &q[row(seq_q, i)..][..d];
            let doi = &d_o[row(seq_q, i)..][..d];
            // Causal, bottom-right: keys j ≤ i + seq_kv − seq_q (none for the first
            // seq_q − seq_kv rows when seq_q > seq_kv: their gradients are 0).
            let keys = if causal {
                (i + seq_kv).saturating_sub(seq_q - 1).min(seq_kv)
            } else {
                seq_kv
            };
            let s: Vec<f64> = (0..keys)
                .map(|j| sm_scale * dot(qi, &k[row(seq_kv, j)..][..d]))
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = s.iter().map(|x| (x - max).exp()).sum();
            let p: Vec<f64> = s.iter().map(|x| (x - max).exp() / sum).collect();
            let dp: Vec<f64> = (0..keys)
                .map(|j| dot(doi, &v[row(seq_kv, j)..][..d]))
                .collect();
            let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for j in 0..keys {
                let ds = p[j] * (dp[j] - delta);
                let kj = row(seq_kv, j);
                for c in 0..d {
                    dv[kj + c] += p[j] * doi[c];
                    dq[row(seq_q, i) + c] += sm_scale * ds * k[kj + c];
                    dk[kj + c] += sm_scale * ds * qi[c];
                }
            }
        }
    }
    (dq, dk, dv)
}

/// O (bf16) and LSE (f32) as the forward stores them, from the f64 forward reference: the
/// self-test checks the backward alone, whatever state the forward kernel is in on the device.
pub fn saved_from_reference(
    (q, k, v): (&HostTensor, &HostTensor, &HostTensor),
    sm_scale: f32,
    causal: bool,
) -> Result<(HostTensor, HostTensor), String> {
    let (&[bh, seq_q, d], &[_, seq_kv, _]) = (q.shape(), k.shape()) else {
        return Err(format!(
            "Q and K must be [bh, seq, head dim], got {:?} and {:?}",
            q.shape(),
            k.shape()
        ));
    };
    let opts = ForwardOptions {
        causal,
        ..ForwardOptions::new(sm_scale)
    };
    let (o, lse) = reference_with(
        &q.to_vec(),
        &k.to_vec(),
        &v.to_vec(),
        (bh, bh, seq_q, seq_kv, d),
        &opts,
    );
    Ok((
        HostTensor::new(ScalarType::BF16, &[bh, seq_q, d], &o).map_err(|e| e.to_string())?,
        HostTensor::new(ScalarType::F32, &[bh, seq_q], &lse).map_err(|e| e.to_string())?,
    ))
}

/// Gradient tolerance (normalized max error): P and dS are rounded to bf16 for their mmas, and
/// O (bf16) enters Δ, each ≈ 2⁻⁸ relative.
pub const GRAD_TOLERANCE: f64 = 1e-2;

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let bf = ScalarType::BF16;
    // (bh, seq_q, seq_kv, gradient dtype): ragged tiles, more keys than queries, more queries
    // than keys (causal: the first 50 rows see no key, a whole 32-row query tile among them).
    let cases = [
        (2, 70, 70, ScalarType::F32),
        (1, 40, 90, ScalarType::BF16),
        (1, 90, 40, ScalarType::F32),
    ];
    for (bh, seq_q, seq_kv, gdt) in cases {
        let d = 64;
        let q = rng.tensor(bf, &[bh, seq_q, d], -1.0, 1.0);
        let k = rng.tensor(bf, &[bh, seq_kv, d], -1.0, 1.0);
        let v = rng.tensor(bf, &[bh, seq_kv, d], -1.0, 1.0);
        let d_o = rng.tensor(bf, &[bh, seq_q, d], -1.0, 1.0);
        let scale = 1.0 / (d as f32).sqrt();
        for causal in [false, true] {
            let name = format!("{bh}×{seq_q}×{seq_kv}×{d} {gdt:?} causal={causal}");
            let fail = |e: crate::Error| format!("{name}: {e}");
            let (o, lse) = saved_from_reference((&q, &k, &v), scale, causal)?;
            let mut dq = poisoned(gdt, &[bh, seq_q, d]);
            let mut dk = poisoned(gdt, &[bh, seq_kv, d]);
            let mut dv = poisoned(gdt, &[bh, seq_kv, d]);
            backward(
                device,
                (&q, &k, &v),
                (&o, &lse, &d_o),
                scale,
                causal,
                &mut dq,
                &mut dk,
                &mut dv,
            )
            .map_err(fail)?;
            let (wq, wk, wv) = reference_grads(
                (&q.to_vec(), &k.to_vec(), &v.to_vec(), &d_o.to_vec()),
                (bh, seq_q, seq_kv, d),
                f64::from(scale),
                causal,
            );
            let errs = [
                record(format!("{name}: dQ"), &dq.to_vec(), &wq, GRAD_TOLERANCE),
                record(format!("{name}: dK"), &dk.to_vec(), &wk, GRAD_TOLERANCE),
                record(format!("{name}: dV"), &dv.to_vec(), &wv, GRAD_TOLERANCE),
            ];
            // NaN errors fail too.
            if !errs.iter().all(|e| *e <= GRAD_TOLERANCE) {
                return Err(format!(
                    "{name}: dQ, dK, dV errors {:.2e}, {:.2e}, {:.2e} (seed {})",
                    errs[0], errs[1], errs[2], rng.seed
                ));
            }
        }
    }
    Ok(
        "dQ, dK, dV (f32 and bf16) from the reference forward's O and LSE, full and causal, ragged tiles and \
        seq_kv ≠ seq_q, against f64 gradients from the definition"
            .into(),
    )
}
