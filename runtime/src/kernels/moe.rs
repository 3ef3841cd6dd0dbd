//! Mixture-of-experts projection with gathered inputs and scattered, weighted outputs:
//! `Y[t] = Σ_{(e, w) routed from t} w · (X[t] · W[e])` for X `[T, d]` bf16, W `[E, d, f]` bf16,
//! Y `[T, f]` f32.
//!
//! The routing is laid out on the host ([`Routing`]): per expert a run of *slots* (token
//! indices, padded with -1 to whole tiles of `WARPS·R` slots) with a weight each, and the expert
//! of every slot tile. A block takes one slot tile and one `BF`-column tile of Y; each warp
//! gathers its `R` token rows of X (`gather_rows`), multiplies them by the expert's weight tile
//! (staged in shared memory, `BD` deep per step), scales the rows by the routing weights
//! (`mul_row`) and adds them into Y at the token indices (`scatter_add_rows`).

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
