//! FP8 (OCP e4m3) for the mixture-of-experts GEMMs, with DeepSeek-V3's fine-grained scaling
//! (DeepSeek-V3 technical report, section 3.3.2): activations quantized per token and per
//! 128-column group ("1×128"), each group with its own f32 scale.
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
//! fp8 lowers on sm_90a only (conversions need sm_89+; see `tilekit_codegen`'s fp8 lowering):
//! the kernels here run on the interpreter, the sm_90a emulator and sm_90a GPUs, and list no
//! variants, so the library's every-target tests do not compile them for sm_80 or AMD.

use crate::dsl::*;

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
        let xf = t.cast::<f32>();
        let amax = row_max(xf.abs()).max(AMAX_FLOOR);
        let s = amax / E4M3_MAX;
        store(q.tile(rt, g), bcast_row(Bin::Div, xf, s).cast::<f8e4m3>());
        store(scales.chunk(g, rt), s);
    }
}
