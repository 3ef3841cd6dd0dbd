//! Mixture-of-experts layers: the place to start. The layer's pieces live in their own modules
//! and are re-exported here under one name each:
//!
//! - routing: [`route_softmax`] (Mixtral, Qwen3) and [`route_sigmoid_grouped`] (DeepSeek-V3,
//!   configured by [`GroupedRouting`]), the auxiliary-loss-free bias step [`update_bias`]
//!   ([`moe_routing`](super::moe_routing));
//! - permutation: [`permute`] into a [`Layout`] (contiguous or masked), [`combine`] back
//!   ([`moe_routing`](super::moe_routing));
//! - the bf16 layer: [`forward`] and [`backward`] over [`ExpertWeights`], routed by a
//!   [`Router`] ([`moe_gemm`](super::moe_gemm), [`moe_bwd`](super::moe_bwd));
//! - the FP8 layer with DeepSeek-V3's block scaling: [`fp8::forward`] over experts quantized
//!   once by [`fp8::Fp8Experts::quantize`] ([`moe_fp8`](super::moe_fp8)).
//!
//! Every step is a launch on the device with buffers sized for the worst case; nothing is read
//! back inside a layer. A layer in a few lines:
//!
//! ```no_run
//! use tilekit::ir::ScalarType::{BF16, F32};
//! use tilekit::kernels::moe::{self, ExpertWeights, Layout, Router};
//! use tilekit::{Device, Tensor};
//!
//! # fn main() -> Result<(), tilekit::Error> {
//! let device = Device::Cpu;
//! let (t, e, h, f) = (17, 8, 128, 256);
//! let x = Tensor::zeros(BF16, &[t, h], &device)?; // the tokens
//! let logits = Tensor::zeros(F32, &[t, e], &device)?; // the router's projection of them
//! let (gate, up) = (Tensor::zeros(BF16, &[e, f, h], &device)?, Tensor::zeros(BF16, &[e, f, h], &device)?);
//! let down = Tensor::zeros(BF16, &[e, h, f], &device)?;
//! let weights = ExpertWeights { gate: &gate, up: &up, down: &down };
//! let router = Router::Softmax { top_k: 2 };
//!
//! let out = moe::forward(&device, &x, &logits, router, weights, Layout::Contiguous)?;
//! let dy = Tensor::zeros(F32, &[t, h], &device)?; // dL/dy
//! let grads = moe::backward(&device, &x, &logits, router, weights, Layout::Contiguous, &dy)?;
//!
//! // FP8 (sm_90a and the interpreter): quantize the experts once, then run the layer.
//! let experts = moe::fp8::Fp8Experts::quantize(&device, weights)?;
//! let out8 = moe::fp8::forward(&device, &x, &logits, router, &experts, Layout::Contiguous)?;
//! # let _ = (out, grads, out8);
//! # Ok(())
//! # }
//! ```
//!
//! This module also holds the library's first MoE kernel, [`moe_expert_proj`]: one projection
//! with gathered inputs and scattered, weighted outputs,
//! `Y[t] = Σ_{(e, w) routed from t} w · (X[t] · W[e])` for X `[T, d]` bf16, W `[E, d, f]` bf16,
//! Y `[T, f]` f32.
//!
//! Its routing is laid out on the host ([`Routing`]): per expert a run of *slots* (token
//! indices, padded with -1 to whole tiles of `WARPS·R` slots) with a weight each, and the expert
//! of every slot tile. A block takes one slot tile and one `BF`-column tile of Y; each warp
//! gathers its `R` token rows of X (`gather_rows`), multiplies them by the expert's weight tile
//! (staged in shared memory, `BD` deep per step), scales the rows by the routing weights
//! (`mul_row`) and adds them into Y at the token indices (`scatter_add_rows`).

pub use super::moe_bwd::{backward, MoeGrads};
pub use super::moe_gemm::{forward, ExpertWeights, MoeOutput, Router};
pub use super::moe_routing::{
    combine, permute, permuted_rows, route_sigmoid_grouped, route_softmax, update_bias,
    GroupedRouting, Layout, Permutation, Routed,
};

/// The FP8 layer and its pieces ([`moe_fp8`](crate::kernels::moe_fp8)): DeepSeek-V3's 1×128
/// activation and 128×128 weight scaling, the grouped GEMM with periodic promotion.
///
/// **What an FP8 backward needs** (not built yet): the same block scaling on the gradients.
/// `dh = dy_p · W_down` and `dx_p = dgate·W_gate + dup·W_up` read the weights N-major, but fp8
/// `wgmma` takes K-major operands only, so they need transposed copies of the expert weights
/// quantized per 128×128 block of the transpose (`[E, H, F]` for gate and up, `[E, F, H]` for
/// down; a transpose of a 128×128 block keeps its scale, so these can be relaid from the
/// forward's codes). The weight gradients `dW[e] = Σ_rows gradᵀ·input` reduce over the
/// expert's rows, so both operands must be K-major along the rows: the saved inputs (`x_p`,
/// `h`) and the incoming gradients quantized per 128×1 column group of each expert's run of
/// rows (DeepSeek-V3 quantizes these per 1×128 along the token axis after a transpose), with
/// each expert's run padded to whole 128-row blocks rather than the forward's 64, and a K loop
/// of varying length per expert. SwiGLU's backward and the gate gradient stay f32/bf16 (they
/// are element-wise and reductions), the incoming `dy` is quantized 1×128 per token before the
/// `dh` GEMM, and the forward must keep its gate and up outputs (f32 or bf16) for them.
pub mod fp8 {
    pub use crate::kernels::moe_fp8::{
        forward, gather_quantized_rows, grouped_gemm_fp8, quantize_activations, quantize_weights,
        Fp8Experts, Quantized,
    };
}

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, record, tiles, Rng};
use crate::Device;

/// See the module documentation. Grid: `[slot tiles, ⌈f / BF⌉, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<16, 4, 64, 32>),
    selftest = selftest,
    shapes(
        x: [T, DM],
        w: [E, DM, F],
        tile_expert: [NT],
        slot_token: [NT * R * WARPS],
        slot_weight: [NT * R * WARPS],
        y: [T, F]
    ),
    grid = [NT, ceil_div(F, BF), 1]
)]
pub fn moe_expert_proj<const R: usize, const WARPS: usize, const BF: usize, const BD: usize>(
    x: Gl<bf16, 2>,
    w: Gl<bf16, 3>,
    tile_expert: Gl<i32, 1>,
    slot_token: Gl<i32, 1>,
    slot_weight: Gl<f32, 1>,
    y: GlMut<f32, 2>,
) {
    let w_smem: St<bf16, BD, BF> = alloc_shared();
    let (slot_tile, f_tile) = (block_idx_x(), block_idx_y());
    let expert: Scalar<i32> = load(tile_expert.at(slot_tile));
    let chunk = slot_tile * WARPS as i32 + warp_idx();
    let tokens: Rv<i32, R> = load(slot_token.chunk(chunk));
    let weights: Rv<f32, R> = load(slot_weight.chunk(chunk));
    let d_tiles = ceil_div(x.cols(), BD);

    let mut acc: Rt<f32, R, BF> = zeros();
    for kt in range(0, d_tiles) {
        copy_block(w_smem, w.tile(expert, kt, f_tile));
        barrier();
        let x_frag: Rt<bf16, R, BD> = gather_rows(x, tokens, kt);
        let w_frag: Rt<bf16, BD, BF, Col> = load(w_smem);
        acc = mma_ab(acc, x_frag, w_frag);
        // The next step's copy overwrites the weight tile.
        barrier();
    }
    scatter_add_rows(y, mul_row(acc, weights), tokens, f_tile);
}

/// The slot layout of a top-k routing, as MoE kernels take it.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    /// The expert of each tile of slots.
    pub tile_expert: HostTensor,
    /// The token of each slot (-1: padding).
    pub slot_token: HostTensor,
    /// The routing weight of each slot.
    pub slot_weight: HostTensor,
}

impl Routing {
    /// Lays out `choices[t]` = the (expert, weight) pairs of token t, in tiles of `tile_rows`.
    pub fn from_top_k(
        num_experts: usize,
        choices: &[Vec<(usize, f32)>],
        tile_rows: usize,
    ) -> Routing {
        let (mut experts, mut tokens, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for e in 0..num_experts {
            let run: Vec<(f64, f64)> = choices
                .iter()
                .enumerate()
                .flat_map(|(t, cs)| {
                    cs.iter()
                        .filter(move |c| c.0 == e)
                        .map(move |c| (t as f64, f64::from(c.1)))
                })
                .collect();
            let n_tiles = run.len().div_ceil(tile_rows);
            experts.extend(std::iter::repeat_n(e as f64, n_tiles));
            for i in 0..n_tiles * tile_rows {
                let (t, w) = run.get(i).copied().unwrap_or((-1.0, 0.0));
                tokens.push(t);
                weights.push(w);
            }
        }
        let t = |dtype, v: &[f64]| {
            HostTensor::new(dtype, &[v.len()], v).unwrap_or_else(|_| HostTensor::zeros(dtype, &[0]))
        };
        Routing {
            tile_expert: t(ScalarType::I32, &experts),
            slot_token: t(ScalarType::I32, &tokens),
            slot_weight: t(ScalarType::F32, &weights),
        }
    }

    /// Slot tiles (the grid's x).
    pub fn tiles(&self) -> u32 {
        u32::try_from(self.tile_expert.len()).unwrap_or(u32::MAX)
    }
}

/// Runs the default variant: Y `[T, f]` for X `[T, d]`, W `[E, d, f]`.
pub fn run(
    device: &Device,
    x: &HostTensor,
    w: &HostTensor,
    routing: &Routing,
) -> Result<HostTensor, crate::Error> {
    let (t, f) = (
        x.shape().first().copied().unwrap_or(0),
        w.shape().last().copied().unwrap_or(0),
    );
    let mut y = HostTensor::zeros(ScalarType::F32, &[t, f]);
    let grid = [routing.tiles(), tiles(f, 64), 1];
    moe_expert_proj::<16, 4, 64, 32>::launch(
        device,
        grid,
        x,
        w,
        &routing.tile_expert,
        &routing.slot_token,
        &routing.slot_weight,
        &mut y,
    )?;
    Ok(y)
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(50, 40, 70, 3)];
    if large(device) {
        shapes.extend([(1000, 256, 300, 8), (333, 130, 77, 5)]);
    }
    for (tokens, d, f, experts) in shapes {
        let x = rng.tensor(ScalarType::BF16, &[tokens, d], -1.0, 1.0);
        let w = rng.tensor(ScalarType::BF16, &[experts, d, f], -1.0, 1.0);
        let choices: Vec<Vec<(usize, f32)>> = (0..tokens)
            .map(|t| vec![(t % experts, 0.75), ((t / 3 + 1) % experts, 0.25)])
            .collect();
        let routing = Routing::from_top_k(experts, &choices, 64);
        let y = run(device, &x, &w, &routing).map_err(|e| e.to_string())?;
        let (xv, wv) = (x.to_vec(), w.to_vec());
        let mut want = vec![0.0; tokens * f];
        for (t, cs) in choices.iter().enumerate() {
            for &(e, weight) in cs {
                for j in 0..f {
                    let dot: f64 = (0..d)
                        .map(|k| xv[t * d + k] * wv[(e * d + k) * f + j])
                        .sum();
                    want[t * f + j] += f64::from(weight) * dot;
                }
            }
        }
        let case = format!("{tokens} tokens, {d}→{f}, top-2 of {experts}");
        let err = record(case.clone(), &y.to_vec(), &want, 1e-5);
        if err > 1e-5 {
            return Err(format!("{case}: error {err:.2e} (seed {})", rng.seed));
        }
    }
    Ok("top-2 routing against the f64 reference".into())
}
