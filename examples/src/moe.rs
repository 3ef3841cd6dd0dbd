//! Mixture-of-experts projection with gathered inputs and scattered, weighted outputs.
//!
//! Tokens X `[T, d]` bf16, expert weights W `[E, d, f]` bf16 (rank 3: the expert is the leading
//! index), output Y `[T, f]` f32. Each token is routed to a few experts with a weight each (top-k
//! routing), and
//!
//! ```text
//! Y[t] = Σ_{(e, w) routed from t} w · (X[t] · W[e])
//! ```
//!
//! The routing is laid out on the host ([`Routing::from_top_k`]) as the GPU kernels of MoE
//! libraries lay it out: for each expert a run of *slots* (token indices), padded with `-1` to a
//! multiple of the block's rows, with the routing weight of each slot; every tile of slots
//! belongs to one expert (`tile_expert`).
//!
//! A block takes one tile of `warps · rows_per_warp` slots and one `block_f`-column tile of the
//! output (grid: x over slot tiles, y over column tiles). Each warp owns `rows_per_warp` slots:
//! it gathers those token rows of X (`gather_rows`; a `-1` slot gathers zeros), multiplies them
//! by the expert's weight tile over d in steps of `block_d` (the weight tile is shared by the
//! block's warps, so it is staged in shared memory with `copy @block`), scales each row by its
//! slot's routing weight (`bcast_row.mul`) and adds the rows into Y at the token indices
//! (`scatter_add_rows`; `-1` slots add nothing). A token routed to k experts receives k
//! contributions. d and f need not be multiples of the tiles: loads past them read zeros and
//! stores past them are masked.

use tilekit::ir::interp::{Arg, HostTensor, InterpError, Launch};
use tilekit::ir::{
    rt, rt_col, BcastAxis, BinaryFn, Dim3, FuncBuilder, MmaVariant, Module, ScalarType, Scope,
    Type, VecAxis,
};

use crate::tiling::{swizzle_for, tiles, tiles_ir};
use crate::{bad_input, expect_tensor, output};

/// The kernel's name in its module.
pub const KERNEL: &str = "moe_expert_proj";

/// Tiling of [`build`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MoeConfig {
    /// Slots (token rows) per warp.
    pub rows_per_warp: u32,
    /// Warps per block; a slot tile is `warps · rows_per_warp` slots.
    pub warps: u32,
    /// Output columns per block.
    pub block_f: u32,
    /// Depth of each step over d.
    pub block_d: u32,
}

impl Default for MoeConfig {
    fn default() -> Self {
        MoeConfig {
            rows_per_warp: 16,
            warps: 4,
            block_f: 64,
            block_d: 32,
        }
    }
}

impl MoeConfig {
    /// Slots per block (the padding multiple of each expert's run).
    pub fn tile_rows(&self) -> u32 {
        self.rows_per_warp * self.warps
    }

    /// The launch grid for `slot_tiles` slot tiles and `f` output columns.
    pub fn grid(&self, slot_tiles: usize, f: usize) -> [u32; 3] {
        [slot_tiles as u32, tiles(f, self.block_f), 1]
    }

    fn check(&self) {
        assert!(
            self.rows_per_warp % 16 == 0
                && self.block_f % 16 == 0
                && self.block_d % 16 == 0
                && self.warps >= 1,
            "moe: rows_per_warp ({}), block_f ({}) and block_d ({}) must be multiples of 16",
            self.rows_per_warp,
            self.block_f,
            self.block_d
        );
    }
}

/// Builds `@moe_expert_proj(%x: gl<bf16, 2>, %w: gl<bf16, 3>, %tile_expert: gl<i32, 1>,
/// %slot_token: gl<i32, 1>, %slot_weight: gl<f32, 1>, %y: gl<f32, 2, mut>)`.
///
/// # Panics
/// When the configuration is not a valid tiling (see [`MoeConfig`]'s fields).
pub fn build(cfg: &MoeConfig) -> Module {
    cfg.check();
    let (bf16, f32, i32t) = (ScalarType::BF16, ScalarType::F32, ScalarType::I32);
    let (rows, bd, bf) = (cfg.rows_per_warp, cfg.block_d, cfg.block_f);
    let mut b = FuncBuilder::kernel(KERNEL, cfg.warps);
    let x = b.param("x", Type::global(bf16, 2, false));
    let w = b.param("w", Type::global(bf16, 3, false));
    let tile_expert = b.param("tile_expert", Type::global(i32t, 1, false));
    let slot_token = b.param("slot_token", Type::global(i32t, 1, false));
    let slot_weight = b.param("slot_weight", Type::global(f32, 1, false));
    let y = b.param("y", Type::global(f32, 2, true));

    let w_smem = b.alloc_shared(Type::shared_tile(bf16, bd, bf, swizzle_for(bf16, bf)));
    b.name(w_smem, "w_smem");

    let slot_tile = b.block_idx(Dim3::X);
    let f_tile = b.block_idx(Dim3::Y);
    let warp = b.warp_idx();
    let expert = b.load(Type::scalar(i32t), tile_expert, &[slot_tile]);
    b.name(expert, "expert");
    let warps = b.const_i32(cfg.warps as i32);
    let chunk = b.mul(slot_tile, warps);
    let chunk = b.add(chunk, warp);
    let tokens = b.load(
        Type::vector(i32t, rows, VecAxis::Rows),
        slot_token,
        &[chunk],
    );
    let weights = b.load(
        Type::vector(f32, rows, VecAxis::Rows),
        slot_weight,
        &[chunk],
    );
    b.name(tokens, "tokens");

    let zero = b.const_i32(0);
    let one = b.const_i32(1);
    let d = b.dim(x, 1);
    let d_tiles = tiles_ir(&mut b, d, bd);
    b.name(d_tiles, "d_tiles");
    let acc = b.zeros(rt(f32, rows, bf));
    let acc = b.for_range(zero, d_tiles, one, &[acc], |b, kt, c| {
        b.copy(Scope::Block, w_smem, w, &[expert, kt, f_tile]);
        b.barrier();
        let x_frag = b.gather_rows(rt(bf16, rows, bd), x, tokens, kt);
        let w_frag = b.load(rt_col(bf16, bd, bf), w_smem, &[]);
        let acc = b.mma(MmaVariant::AB, x_frag, w_frag, c[0]);
        // The next step's copy overwrites the weight tile.
        b.barrier();
        vec![acc]
    })[0];
    let out = b.bcast(BcastAxis::Row, BinaryFn::Mul, acc, weights);
    b.scatter_rows(true, y, out, tokens, f_tile);

    let mut module = Module::new();
    module.push(b.finish());
    module
}

/// The slot layout of a routing, as the kernel reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Routing {
    /// The expert of each slot tile.
    pub tile_expert: Vec<i32>,
    /// The token of each slot (`-1`: padding), `tile_expert.len() · tile_rows` of them.
    pub slot_token: Vec<i32>,
    /// The routing weight of each slot (0 for padding).
    pub slot_weight: Vec<f32>,
}

impl Routing {
    /// Lays out `choices[t]` = the `(expert, weight)` pairs token t is routed to: expert by
    /// expert, tokens in order, each expert's run padded to a multiple of `tile_rows`. Experts
    /// without tokens get no tiles.
    pub fn from_top_k(
        num_experts: usize,
        choices: &[Vec<(usize, f32)>],
        tile_rows: u32,
    ) -> Routing {
        let tile_rows = tile_rows as usize;
        let mut r = Routing {
            tile_expert: Vec::new(),
            slot_token: Vec::new(),
            slot_weight: Vec::new(),
        };
        for e in 0..num_experts {
            let run: Vec<(i32, f32)> = choices
                .iter()
                .enumerate()
                .flat_map(|(t, cs)| {
                    cs.iter()
                        .filter(move |(ce, _)| *ce == e)
                        .map(move |&(_, w)| (t as i32, w))
                })
                .collect();
            let n_tiles = run.len().div_ceil(tile_rows);
            r.tile_expert.extend(std::iter::repeat_n(e as i32, n_tiles));
            for i in 0..n_tiles * tile_rows {
                let (t, w) = run.get(i).copied().unwrap_or((-1, 0.0));
                r.slot_token.push(t);
                r.slot_weight.push(w);
            }
        }
        r
    }
}

/// Runs the kernel on the interpreter: X `[T, d]` bf16, W `[E, d, f]` bf16 and a routing laid
/// out for `cfg.tile_rows()`; returns Y `[T, f]` f32.
pub fn run(
    cfg: &MoeConfig,
    x: &HostTensor,
    w: &HostTensor,
    routing: &Routing,
) -> Result<HostTensor, InterpError> {
    expect_tensor(KERNEL, "x", x, ScalarType::BF16, 2)?;
    expect_tensor(KERNEL, "w", w, ScalarType::BF16, 3)?;
    let (t, d) = (x.shape()[0], x.shape()[1]);
    let (e, f) = (w.shape()[0], w.shape()[2]);
    if w.shape()[1] != d {
        return Err(bad_input(
            KERNEL,
            format_args!(
                "x is [{t}, {d}] but w is {:?}: w needs [E, {d}, f]",
                w.shape()
            ),
        ));
    }
    let tile_rows = cfg.tile_rows() as usize;
    let slots = routing.tile_expert.len() * tile_rows;
    if routing.slot_token.len() != slots || routing.slot_weight.len() != slots {
        return Err(bad_input(
            KERNEL,
            format_args!(
                "{} slot tiles of {tile_rows} need {slots} slot tokens and weights, got {} and {}",
                routing.tile_expert.len(),
                routing.slot_token.len(),
                routing.slot_weight.len()
            ),
        ));
    }
    if let Some(bad) = routing
        .tile_expert
        .iter()
        .find(|&&x| x < 0 || x as usize >= e)
    {
        return Err(bad_input(
            KERNEL,
            format_args!("tile expert {bad} is not one of the {e} experts"),
        ));
    }
    if let Some(bad) = routing
        .slot_token
        .iter()
        .find(|&&s| s >= 0 && s as usize >= t)
    {
        return Err(bad_input(
            KERNEL,
            format_args!("slot token {bad} is not one of the {t} tokens"),
        ));
    }
    let ints = |v: &[i32]| v.iter().map(|&i| f64::from(i)).collect::<Vec<_>>();
    let weights: Vec<f64> = routing.slot_weight.iter().map(|&w| f64::from(w)).collect();
    let mut args = vec![
        Arg::Tensor(x.clone()),
        Arg::Tensor(w.clone()),
        Arg::Tensor(HostTensor::new(
            ScalarType::I32,
            &[routing.tile_expert.len()],
            &ints(&routing.tile_expert),
        )?),
        Arg::Tensor(HostTensor::new(
            ScalarType::I32,
            &[slots],
            &ints(&routing.slot_token),
        )?),
        Arg::Tensor(HostTensor::new(ScalarType::F32, &[slots], &weights)?),
        Arg::Tensor(HostTensor::zeros(ScalarType::F32, &[t, f])),
    ];
    let grid = cfg.grid(routing.tile_expert.len(), f);
    crate::execute(&build(cfg), KERNEL, Launch::grid(grid), &mut args)?;
    Ok(output(&args, 5))
}

/// `Y[t] = Σ_{(e, w) ∈ choices[t]} w · X[t]·W[e]` in f64; X row-major `[T, d]`, W `[E, d, f]`.
pub fn reference(
    x: &[f64],
    w: &[f64],
    choices: &[Vec<(usize, f32)>],
    d: usize,
    f: usize,
) -> Vec<f64> {
    let mut y = vec![0.0; choices.len() * f];
    for (t, cs) in choices.iter().enumerate() {
        for &(e, weight) in cs {
            for j in 0..f {
                let dot: f64 = (0..d).map(|k| x[t * d + k] * w[(e * d + k) * f + j]).sum();
                y[t * f + j] += f64::from(weight) * dot;
            }
        }
    }
    y
}
