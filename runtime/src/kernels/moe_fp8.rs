//! FP8 (OCP e4m3) for the mixture-of-experts GEMMs, with DeepSeek-V3's fine-grained scaling
//! (DeepSeek-V3 technical report, section 3.3.2): activations quantized per token and per
//! 128-column group ("1×128"), each group with its own f32 scale, weights per 128×128 block,
//! and the grouped GEMM that multiplies them.
//!
//! - [`act_quant`]: `s[g][t] = max(amax, AMAX_FLOOR) / 448` with `amax` the largest magnitude
//!   of `x[t][128g .. 128g+128]`, and `q[t][c] = e4m3(x[t][c] / s[g][t])` (f32 division, then
//!   one rounding to nearest even, saturating), so `q · s` reconstructs `x` to e4m3's
//!   precision and the group's largest element maps to ±448. The floor keeps an all-zero group
//!   finite (its q are zeros whatever the scale), as DeepGEMM's reference casts do.
//!
//! **Scales are group-major, `[H/128, T]`**: group `g`'s scales of consecutive tokens are
//! contiguous, the layout a GEMM over row tiles reads (one contiguous run per row tile and K
//! group; DeepGEMM keeps activation scales column-major for the same reason). The `[T, H/128]`
//! view is `scales.transpose(0, 1)`.
//!
//! - [`weight_quant`]: the same rule per 128×128 block of each expert's K-major weights
//!   `[E, N, K]`, scales `[E, ⌈N/128⌉, K/128]`.
//! - [`moe_gemm_fp8`]: the grouped GEMM over the permuted rows of
//!   [`moe_routing`](crate::kernels::moe_routing) (`align` = [`TILE_ROWS`]) with both operands
//!   e4m3 and f32 accumulation with *periodic promotion* (DeepSeek-V3, section 3.3.2; the
//!   design of DeepGEMM): each 128-wide K block is one synchronous `wgmma` chain (4 × k32) into
//!   a fresh f32 accumulator, which is then scaled by `a_scale[row] · w_scale[block]` and added
//!   into the main accumulator with ordinary f32 FMAs. The tensor cores' fp8 accumulation
//!   (narrower than f32 on Hopper) thus never spans more than one scale group, and the scales
//!   are applied in full precision. Operands are staged by the multistage `cp.async` ring of
//!   [`moe_gemm`](crate::kernels::moe_gemm) (on aligned sm_90a builds the 2-D activation view
//!   is a TMA load; the 3-D weight view stays lane copies, as TMA plans are rank-2).
//! - [`swiglu_quant`]: `h = silu(gate) ⊙ up` of the layer's f32 gate and up projections,
//!   quantized by the 1×128 rule for the down projection.
//! - [`quantize_activations`], [`quantize_weights`], [`grouped_gemm_fp8`]: the API over
//!   [`Tensor`]s, with shape contracts and errors that name the argument.
//! - [`Fp8Experts`] and [`forward`]: the whole layer (routing, permutation, FP8 gate/up,
//!   SwiGLU, FP8 down, combine) on the device, with the experts quantized once ahead.
//!
//! Static figures of the registered variants (`tilekit check 'moe_gemm_fp8<f32, 128, 4>'
//! --target sm_90a`, registers / hot-loop non-tensor instructions per 1k tensor FLOPs, 0
//! spills): aligned 196 / 0.55, general 168 / 2.93 (the general build masks every byte of the
//! lane copies). Of the aligned figure, 0.12 is the promotion itself (one FFMA per accumulator
//! element per 128-wide K block), the rest the weight copies' addressing and the ring's waits.
//!
//! fp8 lowers on sm_90a only (conversions need sm_89+; see `tilekit_codegen`'s fp8 lowering):
//! the kernels here run on the interpreter, the sm_90a emulator and sm_90a GPUs, and list no
//! variants, so the library's every-target tests do not compile them for sm_80 or AMD.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{poisoned, record_bounded, Rng};
use crate::kernels::moe_gemm::{
    self as mg, host_layout, rows_to_write, ExpertWeights, MoeOutput, Router, GATHER_WARPS,
};
use crate::kernels::moe_routing::{combine_into, first_column, Layout};
use crate::{Device, Error, Tensor};

/// Columns of one quantization group.
pub const GROUP: usize = 128;
/// The largest finite e4m3 magnitude: a group's largest element is scaled to it.
pub const E4M3_MAX: f64 = 448.0;
/// The smallest `amax` a scale is computed from (an all-zero group gets a finite scale).
pub const AMAX_FLOOR: f64 = 1e-4;

/// 1×128 activation quantization (see the module documentation): `x` `[T, H]` (`H` a multiple of
/// 128), `q` `[T, H]` e4m3, `scales` `[H/128, T]` f32. Each warp quantizes 16 tokens of one
/// group. Grid: `[⌈T / (16·WARPS)⌉, H/128, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    shapes(x: [T, H], q: [T, H], scales: [G, T], H == G * 128),
    grid = [ceil_div(T, 16 * WARPS), G, 1]
)]
pub fn act_quant<I: FloatDtype, const WARPS: usize>(
    x: Gl<I, 2>,
    q: GlMut<f8e4m3, 2>,
    scales: GlMut<f32, 2>,
) {
    let (rt, g) = (block_idx_x() * WARPS as i32 + warp_idx(), block_idx_y());
    // Warps past the last token rest (a vector store's chunk must start inside the view).
    if (rt * 16).lt(x.rows()) {
        let t: Rt<I, 16, GROUP> = load(x.tile(rt, g));
        store_quantized(t.cast::<f32>(), q, scales, rt, g);
    }
}

/// The 1×128 rule of [`act_quant`] on 16 rows of one group, `xf`: the codes to tile `(rt, g)`
/// of `q`, the rows' scales to chunk `(g, rt)` of the group-major `scales`.
#[crate::func]
fn store_quantized(
    xf: Rt<f32, 16, GROUP>,
    q: GlMut<f8e4m3, 2>,
    scales: GlMut<f32, 2>,
    rt: Scalar<i32>,
    g: Scalar<i32>,
) {
    let amax = row_max(xf.abs()).max(AMAX_FLOOR);
    let s = amax / E4M3_MAX;
    store(q.tile(rt, g), bcast_row(Bin::Div, xf, s).cast::<f8e4m3>());
    store(scales.chunk(g, rt), s);
}

/// Columns of codes [`gather_quantized`] moves per step.
const GATHER_PART: usize = 32;

/// The permuted rows of 1×128-quantized activations, codes and scales together:
/// `q_p[r] = q[sorted_token[r]]` and `s_p[g][r] = s[g][sorted_token[r]]` for `q` `[T, H]` e4m3
/// and `s` `[H/128, T]` from [`act_quant`], `sorted_token` `[N, 1]`. A padding row (token −1)
/// gets zero codes and the scale of an all-zero group, `AMAX_FLOOR / 448`, so the result is
/// bit for bit [`act_quant`] of the gathered rows: a row's groups and scales do not depend on
/// where it lands. Grid: `[⌈N / (16·WARPS)⌉, H/128, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    shapes(
        q: [T, H],
        scales: [G, T],
        sorted_token: [N, 1],
        q_p: [N, H],
        scales_p: [G, N],
        H == G * 128
    ),
    grid = [ceil_div(N, 16 * WARPS), G, 1]
)]
pub fn gather_quantized<const WARPS: usize>(
    q: Gl<f8e4m3, 2>,
    scales: Gl<f32, 2>,
    sorted_token: Gl<i32, 2>,
    q_p: GlMut<f8e4m3, 2>,
    scales_p: GlMut<f32, 2>,
) {
    let (rt, g) = (block_idx_x() * WARPS as i32 + warp_idx(), block_idx_y());
    if (rt * 16).lt(q_p.rows()) {
        let tokens = first_column(sorted_token, rt);
        // The group's codes a quarter at a time: a whole 16×128 byte tile per warp is 64
        // loaded bytes per lane, which spills on sm_90a.
        const PARTS: usize = GROUP / GATHER_PART;
        for part in 0..PARTS {
            let j = g * PARTS as i32 + part as i32;
            let rows: Rt<f8e4m3, 16, GATHER_PART> = gather_rows(q, tokens, j);
            store(q_p.tile(rt, j), rows);
        }
        // A padding row's token is −1, outside the view: it reads 0 and takes the scale of
        // an all-zero group, computed as `act_quant` computes it (the smallest of any group).
        let s: Rv<f32, 16> = gather(scales, (splat(g), tokens));
        let floor: Rv<f32, 16> = fill(AMAX_FLOOR);
        store(scales_p.chunk(g, rt), s.max(floor / E4M3_MAX));
    }
}

/// SwiGLU of the FP8 layer's gate and up projections, quantized for the down projection:
/// `h = silu(gate) ⊙ up` in f32 for `gate`, `up` `[N, F]` f32 (the outputs of
/// [`moe_gemm_fp8`]), then the 1×128 rule of [`act_quant`]: `q` `[N, F]` e4m3, `scales`
/// `[F/128, N]` f32. Warps of a row tile whose expert is −1 (unused worst-case capacity)
/// write nothing. Grid: `[⌈N / (16·WARPS)⌉, F/128, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    shapes(
        gate: [N, F],
        up: [N, F],
        tile_expert: [NT],
        q: [N, F],
        scales: [G, N],
        F == G * 128,
        N == NT * 64
    ),
    grid = [ceil_div(N, 16 * WARPS), G, 1]
)]
pub fn swiglu_quant<const WARPS: usize>(
    gate: Gl<f32, 2>,
    up: Gl<f32, 2>,
    tile_expert: Gl<i32, 1>,
    q: GlMut<f8e4m3, 2>,
    scales: GlMut<f32, 2>,
) {
    let (rt, g) = (block_idx_x() * WARPS as i32 + warp_idx(), block_idx_y());
    if (rt * 16).lt(gate.rows()) {
        let expert: Scalar<i32> = load(tile_expert.at(rt / (TILE_ROWS / 16) as i32));
        if expert.ge(0) {
            let a: Rt<f32, 16, GROUP> = load(gate.tile(rt, g));
            let b: Rt<f32, 16, GROUP> = load(up.tile(rt, g));
            store_quantized(a.silu() * b, q, scales, rt, g);
        }
    }
}

/// 128×128 block weight quantization (DeepSeek-V3's weight scaling): for `w` `[E, N, K]`
/// (K-major expert weights, `K` a multiple of 128), block `(e, i, j)` covers rows
/// `128i .. 128i+128` (fewer in the last block when `N` is not a multiple of 128) and columns
/// `128j .. 128j+128` of `w[e]`; `scales[e][i][j] = max(amax, AMAX_FLOOR) / 448` and
/// `q = e4m3(w / s)`, rounded as in [`act_quant`]. `q` `[E, N, K]`, `scales`
/// `[E, ⌈N/128⌉, K/128]` f32. One warp per block, reading it twice (its largest magnitude,
/// then the quotients). Grid: `[⌈N/128⌉, K/128, E]`.
#[crate::kernel(
    warps = 1,
    shapes(
        w: [E, N, K],
        q: [E, N, K],
        scales: [E, NB, KB],
        K == KB * 128,
        NB == ceil_div(N, 128)
    ),
    grid = [NB, KB, E]
)]
pub fn weight_quant<I: FloatDtype>(w: Gl<I, 3>, q: GlMut<f8e4m3, 3>, scales: GlMut<f32, 3>) {
    const TILES: usize = GROUP / 16;
    let (nb, kb, e) = (block_idx_x(), block_idx_y(), block_idx_z());
    let first = nb * TILES as i32;
    // Row tiles of this block that hold rows of `w` (a tile must start inside the view).
    let tiles = ceil_div(w.dim(1), 16).min(first + TILES as i32) - first;
    let mut amax: Scalar<f32> = lit(AMAX_FLOOR as f32);
    for i in range(0, tiles) {
        let t: Rt<I, 16, GROUP> = load(w.tile(e, first + i, kb));
        amax = amax.max(reduce_all(Red::Max, t.cast::<f32>().abs()));
    }
    let s = amax / E4M3_MAX;
    for i in range(0, tiles) {
        let t: Rt<I, 16, GROUP> = load(w.tile(e, first + i, kb));
        store(
            q.tile(e, first + i, kb),
            (t.cast::<f32>() / s).cast::<f8e4m3>(),
        );
    }
    store(scales.at(e, nb, kb), s);
}

/// Rows of the output tile of [`moe_gemm_fp8`] (one warpgroup, 16 rows per warp): the `align`
/// of the permutation it reads.
pub const TILE_ROWS: usize = 64;
// The layer's permutation is the bf16 layer's, in tiles of its grouped GEMMs' rows.
const _: () = assert!(TILE_ROWS == mg::TILE_ROWS);

/// The grouped GEMM with FP8 block scaling over the permuted rows of
/// [`moe_routing`](crate::kernels::moe_routing): `out[r] = Σ_b a_s[b][r] · w_s[e][⌊j/128⌋][b] ·
/// (q_x[r, K block b] · q_w[e][j, K block b])` for every row `r` of a row tile of expert
/// `e = tile_expert[tile]` and output column `j` (see the module documentation). `x` `[N, K]`
/// e4m3 with `x_scales` `[K/128, N]` (from [`act_quant`]), `w` `[E, NO, K]` e4m3 with
/// `w_scales` `[E, ⌈NO/128⌉, K/128]` (from [`weight_quant`]), `out` `[N, NO]`; rows whose
/// `sorted_token` is −1 and tiles whose expert is −1 are not written, as in
/// [`moe_gemm`](crate::kernels::moe_gemm::moe_gemm). Grid: `[⌈NO / BN⌉, N / 64, 1]`.
#[crate::kernel(
    warps = (TILE_ROWS / 16) as u32,
    variants(<f32, 128, 4> for [sm_90a], <bf16, 128, 4> for [sm_90a]),
    selftest = selftest,
    shapes(
        x: [N, K],
        x_scales: [KB, N],
        w: [E, NO, K],
        w_scales: [E, NB, KB],
        tile_expert: [NT],
        sorted_token: [N, 1],
        out: [N, NO],
        N == NT * 64,
        K == KB * 128,
        NB == ceil_div(NO, 128)
    ),
    grid = [ceil_div(NO, BN), NT, 1]
)]
pub fn moe_gemm_fp8<O: RegDtype, const BN: usize, const STAGES: usize>(
    x: Gl<f8e4m3, 2>,
    x_scales: Gl<f32, 2>,
    w: Gl<f8e4m3, 3>,
    w_scales: Gl<f32, 3>,
    tile_expert: Gl<i32, 1>,
    sorted_token: Gl<i32, 2>,
    out: GlMut<O, 2>,
) {
    assert!(
        GROUP % BN == 0 && BN % 16 == 0 && STAGES >= 2,
        "moe_gemm_fp8: BN = {BN} must divide the 128 columns of a weight scale block (and be a multiple of 16), STAGES = {STAGES} at least 2"
    );
    // One K step is one 128-wide scale group: A a 64×128 tile, B a BN×128 tile, both K-major
    // (fp8 wgmma reads K-major operands only), each row one 128-byte swizzle atom.
    let a_ring: SharedArray<St<f8e4m3, TILE_ROWS, GROUP>, STAGES> = alloc_shared();
    let b_ring: SharedArray<St<f8e4m3, BN, GROUP>, STAGES> = alloc_shared();
    let (tile_n, tile_m) = (block_idx_x(), block_idx_y());
    let expert: Scalar<i32> = load(tile_expert.at(tile_m));
    // The expert is the same for the whole block, so the branch is uniform and its barriers
    // are reached by every warp or by none. An expert outside the weights is an unused tile
    // (the table is read on the device, where nothing can report it).
    if expert.ge(0) & expert.lt(w.dim(0)) {
        let k_blocks = ceil_div(x.cols(), GROUP);
        let n_block = tile_n / (GROUP / BN) as i32;
        let row_tile = tile_m * (TILE_ROWS / 16) as i32 + warp_idx();
        // The multistage ring of `moe_gemm`: stages past K copy nothing but still commit.
        for s in 0..STAGES - 1 {
            if k_blocks.gt(s as i32) {
                copy_start(a_ring.at(s), x.tile(tile_m, s as i32));
                copy_start(b_ring.at(s), w.tile(expert, tile_n, s as i32));
            }
            copy_commit();
        }
        let mut acc: Rt<f32, 16, BN> = zeros();
        for kb in range(0, k_blocks) {
            copy_wait(STAGES - 2);
            barrier();
            // The slot of step kb − 1, whose synchronous mma every warp has finished.
            let ahead = kb + (STAGES - 1) as i32;
            if ahead.lt(k_blocks) {
                let slot = ahead % STAGES as i32;
                copy_start(a_ring.at(slot), x.tile(tile_m, ahead));
                copy_start(b_ring.at(slot), w.tile(expert, tile_n, ahead));
            }
            copy_commit();
            let cur = kb % STAGES as i32;
            let a_scale: Rv<f32, 16> = load(x_scales.chunk(kb, row_tile));
            let w_scale: Scalar<f32> = load(w_scales.at(expert, n_block, kb));
            // Periodic promotion (DeepSeek-V3, section 3.3.2): the block's tensor-core sum,
            // over 128 products only, is scaled and added into the f32 accumulator in
            // ordinary f32 arithmetic, so the tensor cores' narrower fp8 accumulation never
            // spans more than one scale group.
            let fresh: Rt<f32, 16, BN> = zeros();
            let part = mma_abt_wg(fresh, a_ring.at(cur), b_ring.at(cur));
            acc = acc + mul_row(part, a_scale * w_scale);
        }
        // The tail's masked copies: none outstanding when the block ends.
        copy_wait(0);
        let rows = rows_to_write::<16>(sorted_token, row_tile * 16);
        scatter_rows(out, acc.cast::<O>(), rows, tile_n);
    }
}

// ---- the API -------------------------------------------------------------------------------

/// An e4m3 tensor with its f32 block scales, as [`quantize_activations`] and
/// [`quantize_weights`] make them: the value of element `i` is `q[i] · scales[block of i]`.
#[derive(Debug)]
pub struct Quantized {
    /// The e4m3 codes.
    pub q: Tensor,
    /// The f32 scale of each block (layouts: see the functions that make them).
    pub scales: Tensor,
}

fn fp8_error(message: String) -> Error {
    Error::Shape {
        kernel: "moe_fp8".into(),
        message,
    }
}

/// FP8 kernels run on the interpreter and sm_90a (see the module documentation).
fn check_device(device: &Device) -> Result<(), Error> {
    if crate::registry::runs_on(&["sm_90a"], device) {
        return Ok(());
    }
    let target = device.target()?.unwrap_or("an AMD target");
    Err(Error::UnsupportedDevice {
        device: device.name(),
        message: format!(
            "the FP8 MoE kernels run on sm_90a (fp8 wgmma) and the interpreter; {target} has no OCP e4m3 tensor-core path in tilekit"
        ),
    })
}

/// Checks that `t` has dtype `dtype` and shape `want` (`None`: any extent), naming `what`.
fn expect(
    what: &str,
    t: &Tensor,
    dtype: ScalarType,
    want: &[Option<usize>],
) -> Result<Vec<usize>, Error> {
    let shape = t.shape();
    let fits = shape.len() == want.len()
        && shape
            .iter()
            .zip(want)
            .all(|(s, w)| w.is_none_or(|w| w == *s));
    if t.dtype() != dtype || !fits {
        let want: Vec<String> = want
            .iter()
            .map(|w| w.map_or("_".to_string(), |w| w.to_string()))
            .collect();
        return Err(fp8_error(format!(
            "`{what}` must be {dtype} [{}], got {} {shape:?}",
            want.join(", "),
            t.dtype()
        )));
    }
    Ok(shape.to_vec())
}

/// `what`'s extent `k` as a multiple of the 128-column scale group.
fn whole_groups(what: &str, k: usize) -> Result<usize, Error> {
    if k == 0 || k % GROUP != 0 {
        return Err(fp8_error(format!(
            "`{what}` has {k} columns: K must be a positive multiple of {GROUP} (one scale per 128 columns)"
        )));
    }
    Ok(k / GROUP)
}

/// 1×128 activation quantization ([`act_quant`]) of `x` `[T, H]` (bf16 or f32, `H` a multiple
/// of 128): `q` `[T, H]` e4m3, `scales` `[H/128, T]` f32 (group-major).
pub fn quantize_activations(device: &Device, x: &Tensor) -> Result<Quantized, Error> {
    check_device(device)?;
    let shape = x.shape();
    let [t, h] = shape else {
        return Err(fp8_error(format!("`x` must be [T, H], got {shape:?}")));
    };
    let (t, g) = (*t, whole_groups("x", *h)?);
    let mut q = Tensor::zeros(ScalarType::F8E4M3, &[t, g * GROUP], device)?;
    let mut scales = Tensor::zeros(ScalarType::F32, &[g, t], device)?;
    if t > 0 {
        match x.dtype() {
            ScalarType::BF16 => act_quant::<bf16, 4>::launch_auto(device, x, &mut q, &mut scales),
            ScalarType::F32 => act_quant::<f32, 4>::launch_auto(device, x, &mut q, &mut scales),
            other => Err(fp8_error(format!("`x` must be bf16 or f32, got {other}"))),
        }?;
    }
    Ok(Quantized { q, scales })
}

/// The permuted rows of activations quantized by [`quantize_activations`] ([`gather_quantized`]):
/// `x.q` `[T, H]` e4m3 and `x.scales` `[H/128, T]`, `sorted_token` `[N, 1]` i32 (−1: a padding
/// row); the result is `q` `[N, H]` and `scales` `[H/128, N]`, bit for bit the quantization of
/// the gathered rows. Quantizing the `T` tokens once and gathering their codes does `1/k` of
/// the quantization work of quantizing the `T·k` routed rows.
pub fn gather_quantized_rows(
    device: &Device,
    x: &Quantized,
    sorted_token: &Tensor,
) -> Result<Quantized, Error> {
    check_device(device)?;
    let xs = expect("x.q", &x.q, ScalarType::F8E4M3, &[None, None])?;
    let (t, h) = (xs[0], xs[1]);
    let g = whole_groups("x.q", h)?;
    expect("x.scales", &x.scales, ScalarType::F32, &[Some(g), Some(t)])?;
    let n = expect(
        "sorted_token",
        sorted_token,
        ScalarType::I32,
        &[None, Some(1)],
    )?[0];
    let mut out = Quantized {
        q: Tensor::zeros(ScalarType::F8E4M3, &[n, h], device)?,
        scales: Tensor::zeros(ScalarType::F32, &[g, n], device)?,
    };
    if n > 0 {
        gather_quantized::<GATHER_WARPS>::launch_auto(
            device,
            &x.q,
            &x.scales,
            sorted_token,
            &mut out.q,
            &mut out.scales,
        )?;
    }
    Ok(out)
}

/// 128×128 block weight quantization ([`weight_quant`]) of K-major expert weights `w`
/// `[E, N, K]` (bf16 or f32, `K` a multiple of 128): `q` `[E, N, K]` e4m3, `scales`
/// `[E, ⌈N/128⌉, K/128]` f32.
pub fn quantize_weights(device: &Device, w: &Tensor) -> Result<Quantized, Error> {
    check_device(device)?;
    let shape = w.shape();
    let [e, n, k] = shape else {
        return Err(fp8_error(format!(
            "`w` must be [E, N, K] (K-major expert weights), got {shape:?}"
        )));
    };
    let (e, n, kb) = (*e, *n, whole_groups("w", *k)?);
    let mut q = Tensor::zeros(ScalarType::F8E4M3, &[e, n, kb * GROUP], device)?;
    let mut scales = Tensor::zeros(ScalarType::F32, &[e, n.div_ceil(GROUP), kb], device)?;
    if e > 0 && n > 0 {
        match w.dtype() {
            ScalarType::BF16 => weight_quant::<bf16>::launch_auto(device, w, &mut q, &mut scales),
            ScalarType::F32 => weight_quant::<f32>::launch_auto(device, w, &mut q, &mut scales),
            other => Err(fp8_error(format!("`w` must be bf16 or f32, got {other}"))),
        }?;
    }
    Ok(Quantized { q, scales })
}

/// The FP8 grouped GEMM ([`moe_gemm_fp8`]) over a permuted layout with `align` =
/// [`TILE_ROWS`] (as [`moe_routing::permute`](crate::kernels::moe_routing::permute) lays it
/// out): `out[r] = dequant(x)[r] · dequant(w)[e]ᵀ` for the rows `r` of each row tile of expert
/// `e = tile_expert[tile]`, with f32 accumulation promoted once per 128-wide K block.
///
/// Shapes: `x` from [`quantize_activations`] of the permuted rows (`q` `[N, K]`, `scales`
/// `[K/128, N]`), `w` from [`quantize_weights`] (`q` `[E, NO, K]`, `scales`
/// `[E, ⌈NO/128⌉, K/128]`), `tile_expert` `[N/64]` i32 (−1: an unused tile; an entry outside
/// `-1..E` is treated as unused), `sorted_token` `[N, 1]` i32 (−1: a padding row). `out` is
/// `[N, NO]` of `out_dtype` (f32 or bf16); rows of padding and of unused tiles are zeros.
pub fn grouped_gemm_fp8(
    device: &Device,
    x: &Quantized,
    w: &Quantized,
    tile_expert: &Tensor,
    sorted_token: &Tensor,
    out_dtype: ScalarType,
) -> Result<Tensor, Error> {
    check_device(device)?;
    let (f8, f32t, i32t) = (ScalarType::F8E4M3, ScalarType::F32, ScalarType::I32);
    let xs = expect("x.q", &x.q, f8, &[None, None])?;
    let (n, k) = (xs[0], xs[1]);
    let kb = whole_groups("x.q", k)?;
    if n % TILE_ROWS != 0 {
        return Err(fp8_error(format!(
            "`x.q` has {n} rows: the permuted layout must be padded to whole tiles of {TILE_ROWS} rows (align = {TILE_ROWS})"
        )));
    }
    expect("x.scales", &x.scales, f32t, &[Some(kb), Some(n)])?;
    let ws = expect("w.q", &w.q, f8, &[None, None, Some(k)])?;
    let (e, no) = (ws[0], ws[1]);
    expect(
        "w.scales",
        &w.scales,
        f32t,
        &[Some(e), Some(no.div_ceil(GROUP)), Some(kb)],
    )?;
    expect("tile_expert", tile_expert, i32t, &[Some(n / TILE_ROWS)])?;
    expect("sorted_token", sorted_token, i32t, &[Some(n), Some(1)])?;
    let mut out = Tensor::zeros(out_dtype, &[n, no], device)?;
    if n == 0 || no == 0 || e == 0 {
        return Ok(out);
    }
    let args = (&x.q, &x.scales, &w.q, &w.scales, tile_expert, sorted_token);
    match out_dtype {
        ScalarType::F32 => moe_gemm_fp8::<f32, 128, 4>::launch_auto(
            device, args.0, args.1, args.2, args.3, args.4, args.5, &mut out,
        ),
        ScalarType::BF16 => moe_gemm_fp8::<bf16, 128, 4>::launch_auto(
            device, args.0, args.1, args.2, args.3, args.4, args.5, &mut out,
        ),
        other => Err(fp8_error(format!(
            "the FP8 grouped GEMM writes f32 or bf16, not {other}"
        ))),
    }?;
    Ok(out)
}

// ---- the layer ----------------------------------------------------------------------------

/// A mixture-of-experts layer's expert weights in FP8, quantized once ahead of the forward
/// passes by [`Fp8Experts::quantize`]: gate and up `[E, F, H]`, down `[E, H, F]`, each as
/// e4m3 codes with 128×128 block scales ([`quantize_weights`]).
#[derive(Debug)]
pub struct Fp8Experts {
    gate: Quantized,
    up: Quantized,
    down: Quantized,
}

impl Fp8Experts {
    /// Quantizes the K-major bf16 or f32 expert weights of
    /// [`moe_gemm::forward`](crate::kernels::moe_gemm::forward) (gate and up `[E, F, H]`,
    /// down `[E, H, F]`) on `device`; `H` and `F` must be positive multiples of 128 (each is
    /// the K of a GEMM).
    pub fn quantize(device: &Device, weights: ExpertWeights<'_>) -> Result<Fp8Experts, Error> {
        let gs = weights.gate.shape();
        let &[e, f, h] = gs else {
            return Err(fp8_error(format!(
                "`gate weights` must be [E, F, H], got {gs:?}"
            )));
        };
        let dtype = weights.gate.dtype();
        expect(
            "up weights",
            weights.up,
            dtype,
            &[Some(e), Some(f), Some(h)],
        )?;
        expect(
            "down weights",
            weights.down,
            dtype,
            &[Some(e), Some(h), Some(f)],
        )?;
        whole_groups("gate weights", h)?;
        whole_groups("down weights", f)?;
        Ok(Fp8Experts {
            gate: quantize_weights(device, weights.gate)?,
            up: quantize_weights(device, weights.up)?,
            down: quantize_weights(device, weights.down)?,
        })
    }

    /// The number of experts `E`.
    pub fn experts(&self) -> usize {
        self.gate.q.shape()[0]
    }

    /// The hidden size `H` (the layer's input and output width).
    pub fn hidden(&self) -> usize {
        self.gate.q.shape()[2]
    }

    /// The expert width `F` (the SwiGLU's width).
    pub fn width(&self) -> usize {
        self.gate.q.shape()[1]
    }
}

/// The FP8 mixture-of-experts layer: `y[t] = Σ_{(e, g) chosen by t} g · W_down[e]ᵀ·(silu(
/// W_gate[e]ᵀ x[t]) ⊙ W_up[e]ᵀ x[t])` as [`moe_gemm::forward`](crate::kernels::moe_gemm::forward)
/// computes it, with DeepSeek-V3's FP8 recipe: `x` `[T, H]` bf16, the router's `logits`
/// `[T, E]` f32, the experts quantized once by [`Fp8Experts::quantize`].
///
/// Launches, in order on `device` and with no read back in between: the routing and the
/// permutation of the bf16 layer (rows in tiles of [`TILE_ROWS`], buffers for the worst case),
/// the 1×128 quantization of each token's row, once ([`act_quant`]), the gather of the codes and
/// scales into expert order ([`gather_quantized`]), the gate and the up
/// projections ([`moe_gemm_fp8`], f32 outputs), SwiGLU fused with the quantization of its
/// output ([`swiglu_quant`]), the down projection ([`moe_gemm_fp8`], f32) and the
/// deterministic combine. Every GEMM accumulates in f32 with one promotion per 128-wide K
/// block. Runs on sm_90a devices and the interpreter (see the module documentation).
///
/// The SwiGLU is a pass of its own rather than the gate/up GEMM's epilogue: a 1×128 scale
/// needs a row's whole 128-column group of `h`, so a fused kernel would hold the gate's and
/// the up's f32 accumulators of 128 columns (and their per-block partial sums) at once, twice
/// the accumulator registers of [`moe_gemm_fp8`], which takes 196 per thread with one. The
/// pass reads 8 bytes and writes about 1 per element of `h`.
pub fn forward(
    device: &Device,
    x: &Tensor,
    logits: &Tensor,
    router: Router<'_>,
    experts: &Fp8Experts,
    layout: Layout,
) -> Result<MoeOutput, Error> {
    check_device(device)?;
    let (e, h, f) = (experts.experts(), experts.hidden(), experts.width());
    let t = expect("x", x, ScalarType::BF16, &[None, Some(h)])?[0];
    expect("logits", logits, ScalarType::F32, &[Some(t), Some(e)])?;
    let k = mg::check_top_k(router, e)?;
    if t == 0 {
        return MoeOutput::empty(device, t, k, e, h);
    }
    let r = mg::route_and_permute(device, logits, router, layout)?;
    let n = r.sorted_token.shape()[0];
    let xq = gather_quantized_rows(device, &quantize_activations(device, x)?, &r.sorted_token)?;
    let project = |a: &Quantized, w: &Quantized| {
        grouped_gemm_fp8(
            device,
            a,
            w,
            &r.tile_expert,
            &r.sorted_token,
            ScalarType::F32,
        )
    };
    let (gate, up) = (project(&xq, &experts.gate)?, project(&xq, &experts.up)?);
    let mut hq = Quantized {
        q: Tensor::zeros(ScalarType::F8E4M3, &[n, f], device)?,
        scales: Tensor::zeros(ScalarType::F32, &[f / GROUP, n], device)?,
    };
    swiglu_quant::<4>::launch_auto(
        device,
        &gate,
        &up,
        &r.tile_expert,
        &mut hq.q,
        &mut hq.scales,
    )?;
    let yp = project(&hq, &experts.down)?;
    let mut y = Tensor::zeros(ScalarType::F32, &[t, h], device)?;
    combine_into(device, &yp, &r.row_of, &r.gates, &mut y)?;
    Ok(MoeOutput {
        y,
        experts: r.experts,
        gates: r.gates,
        counts: r.counts,
    })
}

// ---- self-test ----------------------------------------------------------------------------

/// Both registered variants of [`moe_gemm_fp8`] on the quantizers' outputs, against the f64
/// product of the dequantized operands (`q · s`, the same block quantization), with an
/// element-wise bound from the kernel's arithmetic; padding rows must keep their poison.
fn selftest(device: &Device) -> Result<String, String> {
    if !crate::registry::runs_on(&["sm_90a"], device) {
        return Ok("fp8 runs on sm_90a only: nothing to check here".into());
    }
    let mut rng = Rng::fresh();
    let mut checked = 0;
    // An expert with no row, one with more than a tile; NO not a multiple of the tile.
    for (counts, k, no) in [(vec![5, 0, 70], 256, 200), (vec![64, 1], 128, 64)] {
        let (tile_expert, sorted_token, expert_of) = host_layout(&counts, 1);
        let (n, e) = (expert_of.len(), counts.len());
        let case = format!("{counts:?} rows, {k}→{no}");
        let x = rng.tensor(ScalarType::BF16, &[n, k], -3.0, 3.0);
        let w = rng.tensor(ScalarType::BF16, &[e, no, k], -0.5, 0.5);
        let seed = rng.seed;
        let fail = |err: String| format!("{case}: {err} (seed {seed})");
        let on_device = |t: &HostTensor| Tensor::from_host(t, device);
        let (x, w) = (on_device(&x), on_device(&w));
        let (xq, wq) = x
            .and_then(|x| quantize_activations(device, &x))
            .and_then(|xq| Ok((xq, quantize_weights(device, &w?)?)))
            .map_err(|err| fail(err.to_string()))?;
        let host = |t: &Tensor| t.to_f64_vec().map_err(|err| fail(err.to_string()));
        let (qx, sx, qw, sw) = (
            host(&xq.q)?,
            host(&xq.scales)?,
            host(&wq.q)?,
            host(&wq.scales)?,
        );
        let (want, bound) = reference(&qx, &sx, &qw, &sw, &expert_of, (k, no));
        let (te, st) = (on_device(&tile_expert), on_device(&sorted_token));
        let (te, st) = (
            te.map_err(|e| fail(e.to_string()))?,
            st.map_err(|e| fail(e.to_string()))?,
        );
        for dtype in [ScalarType::F32, ScalarType::BF16] {
            let mut out = Tensor::from_host(&poisoned(dtype, &[n, no]), device)
                .map_err(|err| fail(err.to_string()))?;
            let args = (&xq.q, &xq.scales, &wq.q, &wq.scales, &te, &st);
            match dtype {
                ScalarType::F32 => moe_gemm_fp8::<f32, 128, 4>::launch_auto(
                    device, args.0, args.1, args.2, args.3, args.4, args.5, &mut out,
                ),
                _ => moe_gemm_fp8::<bf16, 128, 4>::launch_auto(
                    device, args.0, args.1, args.2, args.3, args.4, args.5, &mut out,
                ),
            }
            .map_err(|err| fail(err.to_string()))?;
            let got = host(&out)?;
            // bf16 rounds each element once more, by at most 2⁻⁹ of it.
            let rounding = if dtype == ScalarType::BF16 {
                2f64.powi(-8)
            } else {
                0.0
            };
            let (mut g, mut wv, mut b) = (Vec::new(), Vec::new(), Vec::new());
            for (r, &ex) in expert_of.iter().enumerate() {
                for j in r * no..(r + 1) * no {
                    if ex < 0 && !got[j].is_nan() {
                        return Err(fail(format!("{dtype}: padding row {r} was written")));
                    }
                    if ex >= 0 {
                        g.push(got[j]);
                        wv.push(want[j]);
                        b.push(bound[j] + rounding * want[j].abs());
                    }
                }
            }
            let ratio = record_bounded(format!("{case} {dtype}"), &g, &wv, &b);
            if ratio > 1.0 {
                return Err(fail(format!("{dtype}: error {ratio:.2} of its bound")));
            }
            checked += 1;
        }
    }
    Ok(format!(
        "{checked} runs against the f64 product of the dequantized operands"
    ))
}

/// The f64 grouped product of the dequantized operands, `want[r][j] = Σ_b sx[b][r] ·
/// sw[e][j/128][b] · Σ_(k in block b) qx[r][k] · qw[e][j][k]` for the rows `r` of expert
/// `e = expert_of[r]` (NaN for padding rows), and each element's error bound: the tensor
/// cores' f32 sum of one block rounds at most once per product (128), the promotion three
/// times (the scale product, its product with the block sum, the addition), and the running
/// sum once per block, each by 2⁻²⁴ of at most `Σ_b sx·sw·Σ|qx·qw|`.
pub(crate) fn reference(
    qx: &[f64],
    sx: &[f64],
    qw: &[f64],
    sw: &[f64],
    expert_of: &[i64],
    (k, no): (usize, usize),
) -> (Vec<f64>, Vec<f64>) {
    let (n, kb, nb) = (expert_of.len(), k / GROUP, no.div_ceil(GROUP));
    let mut want = vec![f64::NAN; n * no];
    let mut bound = vec![0.0; n * no];
    let units = (GROUP + 3 + kb) as f64 * 2f64.powi(-24);
    for (r, &e) in expert_of.iter().enumerate() {
        let Ok(e) = usize::try_from(e) else { continue };
        for j in 0..no {
            let (mut sum, mut mag) = (0.0, 0.0);
            for b in 0..kb {
                let scale = sx[b * n + r] * sw[(e * nb + j / GROUP) * kb + b];
                let (mut dot, mut abs) = (0.0, 0.0);
                for c in b * GROUP..(b + 1) * GROUP {
                    let p = qx[r * k + c] * qw[(e * no + j) * k + c];
                    dot += p;
                    abs += p.abs();
                }
                sum += scale * dot;
                mag += scale * abs;
            }
            want[r * no + j] = sum;
            bound[r * no + j] = units * mag;
        }
    }
    (want, bound)
}
