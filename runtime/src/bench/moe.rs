//! Mixture-of-experts rows of the benchmark (see the [module documentation](super)): at
//! DeepSeek-V3, Qwen3-30B-A3B and Mixtral 8×7B shapes with 4k and 16k tokens, the routing and
//! permutation time, the gather of the tokens' rows (GB/s), the grouped gate/up (SwiGLU) and
//! down GEMMs (TFLOP/s over the `T·k` routed rows, padding not counted, against the library's
//! dense GEMM with `M = T·k` and the same N and K) and the whole layer
//! ([`forward`]). The GEMM rows launch the kernels
//! `forward` launches, on the permutation of one routing of random logits (about balanced).

use super::{random, Bench};
use crate::dsl::bf16;
use crate::ir::ScalarType;
use crate::kernels::moe_gemm::{
    forward, moe_gather, moe_gemm, moe_gemm_swiglu, ExpertWeights, Router, GATHER_COLS,
    GATHER_WARPS, TILE_COLS, TILE_ROWS,
};
use crate::kernels::moe_routing::{self as routing, GroupedRouting, Layout};
use crate::{Device, Error, Tensor};

/// One model's MoE layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MoeShape {
    pub name: &'static str,
    pub experts: usize,
    pub top_k: usize,
    pub hidden: usize,
    pub ffn: usize,
    /// DeepSeek-V3's grouped sigmoid routing (8 groups, 4 kept, scale 2.5); else softmax top-k.
    pub grouped: bool,
}

/// The models at full size (DeepSeek-V3: 256 routed experts, top-8, 7168/2048; Qwen3-30B-A3B:
/// 128, top-8, 2048/768; Mixtral 8×7B: 8, top-2, 4096/14336), or small versions.
pub(crate) fn models(full: bool) -> [MoeShape; 3] {
    let m = |name, experts, top_k, hidden, ffn, grouped| MoeShape {
        name,
        experts,
        top_k,
        hidden,
        ffn,
        grouped,
    };
    if full {
        [
            m("DeepSeek-V3", 256, 8, 7168, 2048, true),
            m("Qwen3-30B-A3B", 128, 8, 2048, 768, false),
            m("Mixtral-8x7B", 8, 2, 4096, 14336, false),
        ]
    } else {
        [
            m("DeepSeek-V3 (small)", 16, 8, 64, 32, true),
            m("Qwen3 (small)", 12, 8, 32, 48, false),
            m("Mixtral (small)", 4, 2, 64, 96, false),
        ]
    }
}

/// The rows (each model's group noted and skipped if it fails).
pub(crate) fn rows(b: &mut Bench<'_>) {
    for m in models(b.full) {
        b.group(&format!("MoE {}", m.name), |b| model_rows(b, m));
    }
}

/// Routing (into `experts`, `gates`) and the permutation's buffers, sized as
/// [`forward`] sizes them.
struct Routed {
    plan: routing::PermutePlan,
    experts: Tensor,
    gates: Tensor,
    kept: Tensor,
    tile_counts: Tensor,
    tile_base: Tensor,
    counts: Tensor,
    offsets: Tensor,
    sorted_token: Tensor,
    row_of: Tensor,
    tile_expert: Tensor,
}

impl Routed {
    fn new(device: &Device, t: usize, m: MoeShape) -> Result<Routed, Error> {
        let (e, k) = (m.experts, m.top_k);
        let i32t = ScalarType::I32;
        let plan = routing::PermutePlan::new(&[t, k], e, TILE_ROWS, Layout::Contiguous)?;
        let (n, nb) = (plan.rows, t.div_ceil(16));
        let z = |shape: &[usize]| Tensor::zeros(i32t, shape, device);
        Ok(Routed {
            experts: z(&[t, k])?,
            gates: Tensor::zeros(ScalarType::F32, &[t, k], device)?,
            kept: z(&[t])?,
            tile_counts: z(&[nb, e])?,
            tile_base: z(&[nb, e])?,
            counts: z(&[e])?,
            offsets: z(&[e + 1])?,
            sorted_token: z(&[n, 1])?,
            row_of: z(&[t, k])?,
            tile_expert: z(&[n / TILE_ROWS])?,
            plan,
        })
    }

    /// Routes `logits` and permutes, as [`forward`] does (no host reads).
    fn run(
        &mut self,
        device: &Device,
        m: MoeShape,
        logits: &Tensor,
        bias: &Tensor,
    ) -> Result<(), Error> {
        if m.grouped {
            routing::route_sigmoid_grouped_into(
                device,
                logits,
                bias,
                grouped(m),
                &mut self.kept,
                &mut self.experts,
                &mut self.gates,
            )?;
        } else {
            routing::route_softmax_into(
                device,
                logits,
                m.top_k,
                &mut self.experts,
                &mut self.gates,
            )?;
        }
        self.plan.launch(
            device,
            &self.experts,
            routing::PermuteBuffers {
                tile_counts: &mut self.tile_counts,
                tile_base: &mut self.tile_base,
                counts: &mut self.counts,
                offsets: &mut self.offsets,
                sorted_token: &mut self.sorted_token,
                row_of: &mut self.row_of,
                tile_expert: &mut self.tile_expert,
            },
        )
    }
}

fn grouped(m: MoeShape) -> GroupedRouting {
    GroupedRouting {
        top_k: m.top_k,
        groups: 8,
        topk_groups: 4,
        scale: 2.5,
    }
}

fn model_rows(b: &mut Bench<'_>, m: MoeShape) -> Result<(), Error> {
    let device = b.device;
    let (e, k, h, f) = (m.experts, m.top_k, m.hidden, m.ffn);
    let bf = ScalarType::BF16;
    let gate = random(bf, &[e, f, h], device, 81)?;
    let up = random(bf, &[e, f, h], device, 82)?;
    let down = random(bf, &[e, h, f], device, 83)?;
    let token_counts: &[usize] = if b.full { &[4096, 16384] } else { &[40] };
    for &t in token_counts {
        let shape = format!("{} T{t}", m.name);
        let x = random(bf, &[t, h], device, 84)?;
        let logits = random(ScalarType::F32, &[t, e], device, 85)?;
        let bias = random(ScalarType::F32, &[e], device, 86)?;
        let mut r = Routed::new(device, t, m)?;
        let ms = b.time(|| r.run(device, m, &logits, &bias))?;
        b.latency_row("MoE routing + permutation", &shape, ms);

        let n = r.plan.rows;
        let rows = (t * k) as f64;
        let mut xp = Tensor::zeros(bf, &[n, h], device)?;
        let ms = b.time(|| {
            moe_gather::<GATHER_COLS, GATHER_WARPS>::launch_auto(
                device,
                &x,
                &r.sorted_token,
                &mut xp,
            )
        })?;
        // Each routed row read and written once (bf16).
        b.bytes_row("MoE gather (permute x)", &shape, ms, 4.0 * rows * h as f64);

        let mut hp = Tensor::zeros(bf, &[n, f], device)?;
        let ms = b.time(|| {
            moe_gemm_swiglu::<bf16, TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
                device,
                &xp,
                &gate,
                &up,
                &r.tile_expert,
                &r.sorted_token,
                &mut hp,
            )
        })?;
        let tf = b.flops_row(
            "MoE grouped gate/up + SwiGLU",
            &shape,
            ms,
            4.0 * rows * (h * f) as f64,
            None,
        );
        let vs = b.vs_gemm(tf, (t * k, 2 * f, h))?;
        b.set_vs(vs);

        let mut yp = Tensor::zeros(ScalarType::F32, &[n, h], device)?;
        let ms = b.time(|| {
            moe_gemm::<f32, TILE_ROWS, TILE_COLS, 32, 32, 32>::launch_auto(
                device,
                &hp,
                &down,
                &r.tile_expert,
                &r.sorted_token,
                &mut yp,
            )
        })?;
        let tf = b.flops_row(
            "MoE grouped down",
            &shape,
            ms,
            2.0 * rows * (h * f) as f64,
            None,
        );
        drop((xp, hp, yp, r));
        let vs = b.vs_gemm(tf, (t * k, h, f))?;
        b.set_vs(vs);

        let router = if m.grouped {
            Router::SigmoidGrouped {
                cfg: grouped(m),
                bias: &bias,
            }
        } else {
            Router::Softmax { top_k: k }
        };
        let weights = ExpertWeights {
            gate: &gate,
            up: &up,
            down: &down,
        };
        let ms =
            b.time(|| forward(device, &x, &logits, router, weights, Layout::Contiguous).map(drop))?;
        b.flops_row(
            "MoE layer forward (all kernels)",
            &shape,
            ms,
            6.0 * rows * (h * f) as f64,
            None,
        );
    }
    Ok(())
}
