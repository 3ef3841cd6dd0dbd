//! The part of the lane-level simulations (`lane_sim` for NVIDIA, `amd_lane_sim` for AMD) that
//! only the fragment rules tell apart: register tiles held per lane as the lowering places them
//! ([`Frag::tile_elem`]), masked loads and stores between them and row-major global matrices,
//! row reductions and broadcasts over the lanes, masks, and the interpreter's side of each
//! comparison. Each simulation passes its target's [`Frag`]; what the vendors do differently
//! (their matrix instructions, NVIDIA's `ldmatrix` from shared memory) stays in its own file.
//!
//! The crate that declares `mod lanes;` declares `mod kernels;` too.

use std::ops::Range;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit_codegen::layout::{self, Frag};
use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::{BF16, F32};
use tilekit_ir::{Layout, MaskKind, MmaVariant, Module, ScalarType, VecAxis};

use crate::kernels;

/// Registers of one warp (NVIDIA) or wavefront (AMD): `regs[lane][e]`.
pub type Registers = Vec<Vec<f32>>;

/// The registers of a `rows × cols` tile in every lane, all zero.
pub fn zero_tile(frag: Frag, rows: u32, cols: u32) -> Registers {
    vec![vec![0.0; frag.tile_regs(rows, cols) as usize]; frag.lanes() as usize]
}

/// A row-major matrix in global memory.
pub struct Global {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Global {
    /// A `rows × cols` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Global {
        Global {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// A `rows × cols` matrix of values in [-2, 2) that bf16 represents exactly.
    pub fn random_bf16(rng: &mut SmallRng, rows: usize, cols: usize) -> Global {
        let data = (0..rows * cols)
            .map(|_| half::bf16::from_f32(rng.gen_range(-2.0f32..2.0)).to_f32())
            .collect();
        Global { rows, cols, data }
    }

    /// Element (r, c), or zero outside the matrix (as a masked load reads it).
    pub fn get(&self, r: u32, c: u32) -> f32 {
        let (r, c) = (r as usize, c as usize);
        if r < self.rows && c < self.cols {
            self.data[r * self.cols + c]
        } else {
            0.0
        }
    }

    /// The matrix as an interpreter argument of element type `dtype`.
    pub fn tensor(&self, dtype: ScalarType) -> Arg {
        let v: Vec<f64> = self.data.iter().map(|&x| f64::from(x)).collect();
        Arg::Tensor(HostTensor::new(dtype, &[self.rows, self.cols], &v).unwrap())
    }
}

/// The elements of the interpreter's tensor argument `k` after a run.
pub fn output(args: &[Arg], k: usize) -> Vec<f32> {
    args[k]
        .tensor()
        .unwrap()
        .to_vec()
        .iter()
        .map(|&x| x as f32)
        .collect()
}

/// The interpreter's `c` of a kernel `kernel(a, b, c)`: A and B as bf16 tensors, C a
/// `c_shape` tensor of `out` zeros.
pub fn interpret_gemm(
    module: &Module,
    kernel: &str,
    grid: [u32; 3],
    a: &Global,
    b: &Global,
    c_shape: [usize; 2],
    out: ScalarType,
) -> Vec<f32> {
    let mut args = vec![
        a.tensor(BF16),
        b.tensor(BF16),
        Arg::Tensor(HostTensor::zeros(out, &c_shape)),
    ];
    interp::run(module, kernel, grid, &mut args).expect("interpreter runs");
    output(&args, 2)
}

/// `load` of a register tile at tile coordinates (i, j), masked: the lowering's rule.
pub fn load_tile(
    frag: Frag,
    g: &Global,
    i: u32,
    j: u32,
    rows: u32,
    cols: u32,
    lay: Layout,
) -> Registers {
    (0..frag.lanes())
        .map(|l| {
            (0..frag.tile_regs(rows, cols))
                .map(|e| {
                    let (r, c) = frag.tile_elem(lay, cols, e);
                    g.get(i * rows + r.at(frag, l), j * cols + c.at(frag, l))
                })
                .collect()
        })
        .collect()
}

/// `store` of an f32 register tile of either layout at tile coordinates (i, j), masked.
#[allow(clippy::too_many_arguments)]
pub fn store_tile(
    frag: Frag,
    g: &mut Global,
    t: &Registers,
    i: u32,
    j: u32,
    rows: u32,
    cols: u32,
    lay: Layout,
) {
    for l in 0..frag.lanes() {
        for e in 0..frag.tile_regs(rows, cols) {
            let (r, c) = frag.tile_elem(lay, cols, e);
            let (gr, gc) = (
                (i * rows + r.at(frag, l)) as usize,
                (j * cols + c.at(frag, l)) as usize,
            );
            if gr < g.rows && gc < g.cols {
                g.data[gr * g.cols + gc] = t[l as usize][e as usize];
            }
        }
    }
}

/// A register tile of an `mma` operand with its dimensions as stored (`rows × cols` of the
/// tile that was loaded, before any transpose the variant implies).
pub struct Operand {
    pub regs: Registers,
    pub dims: (u32, u32),
}

/// The result of [`simulate_mma_global`]: the problem's sizes, the simulated C and the
/// interpreter's.
pub struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub got: Vec<f32>,
    pub want: Vec<f32>,
}

/// `kernels::mma_global(mt, nt, variant)` on random sizes (m, n in 1..70, k in `ks`, drawn
/// from `seed`) and random bf16 operands stored as the variant says (a transposed A as k × m,
/// a transposed B as n × k), simulated with tiles of 16·mt × 16·nt: per tile and step of
/// `kstep` along K, the operand tiles are loaded in the layouts of their storage and `mma`
/// accumulates A·B into the accumulator (row layout), which is stored masked.
pub fn simulate_mma_global(
    frag: Frag,
    variant: MmaVariant,
    (mt, nt): (u32, u32),
    seed: u64,
    ks: Range<usize>,
    kstep: u32,
    mut mma: impl FnMut(&Operand, &Operand, &mut Registers),
) -> Product {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (m, n, k) = (
        rng.gen_range(1..70usize),
        rng.gen_range(1..70usize),
        rng.gen_range(ks),
    );
    let a_shape = if variant.a_transposed() {
        [k, m]
    } else {
        [m, k]
    };
    let b_shape = if variant.b_transposed() {
        [n, k]
    } else {
        [k, n]
    };
    let a = Global::random_bf16(&mut rng, a_shape[0], a_shape[1]);
    let b = Global::random_bf16(&mut rng, b_shape[0], b_shape[1]);
    let (tm, tn) = (16 * mt, 16 * nt);
    let grid = [
        n.div_ceil(tn as usize) as u32,
        m.div_ceil(tm as usize) as u32,
        1,
    ];
    let module = kernels::mma_global(mt, nt, variant);
    let want = interpret_gemm(&module, "mma_global", grid, &a, &b, [m, n], F32);

    let mut c = Global::zeros(m, n);
    for ti in 0..grid[1] {
        for tj in 0..grid[0] {
            let mut acc = zero_tile(frag, tm, tn);
            for kt in 0..(k as u32).div_ceil(kstep) {
                let a_tile = if variant.a_transposed() {
                    (kt, ti, kstep, tm, Layout::Col)
                } else {
                    (ti, kt, tm, kstep, Layout::Row)
                };
                let b_tile = if variant.b_transposed() {
                    (tj, kt, tn, kstep, Layout::Row)
                } else {
                    (kt, tj, kstep, tn, Layout::Col)
                };
                let load =
                    |g: &Global, (i, j, rows, cols, lay): (u32, u32, u32, u32, Layout)| Operand {
                        regs: load_tile(frag, g, i, j, rows, cols, lay),
                        dims: (rows, cols),
                    };
                mma(&load(&a, a_tile), &load(&b, b_tile), &mut acc);
            }
            store_tile(frag, &mut c, &acc, ti, tj, tm, tn, Layout::Row);
        }
    }
    Product {
        m,
        n,
        k,
        got: c.data,
        want,
    }
}

/// A butterfly exchange over the lanes: lane `l` receives lane `l ^ m`'s value. On NVIDIA
/// `shfl.sync.bfly` with mask `m` over the whole warp (PTX ISA, *Data Movement and Conversion
/// Instructions: shfl.sync*, mode `.bfly`); on AMD `ds_bpermute_b32` with source lane `l ^ m`
/// (CDNA3 ISA, *LDS instructions*: DS_BPERMUTE_B32 reads the lane whose byte address `4·lane`
/// the destination lane supplies).
fn butterfly(v: &[f32], m: u32) -> Vec<f32> {
    (0..v.len() as u32).map(|l| v[(l ^ m) as usize]).collect()
}

/// `reduce_row` as the lowering does it: each lane folds the registers of each of its rows
/// (`vector_reg_of_tile_reg`), then butterflies over the lanes holding parts of the same row
/// (`reduce_masks` of the vector's distribution).
#[allow(clippy::needless_range_loop)]
fn reduce_rows(
    frag: Frag,
    t: &Registers,
    lay: Layout,
    cols: u32,
    f: fn(f32, f32) -> f32,
) -> Registers {
    let lanes = frag.lanes() as usize;
    let vl = layout::tile_vector_layout(lay, VecAxis::Rows);
    let nregs = frag.vector_regs(t[0].len() as u32 * frag.lanes() / cols, vl) as usize;
    let mut parts: Registers = vec![vec![f32::NAN; nregs]; lanes];
    for l in 0..lanes {
        for (e, &x) in t[l].iter().enumerate() {
            let k = frag.vector_reg_of_tile_reg(lay, VecAxis::Rows, cols, e as u32) as usize;
            parts[l][k] = if parts[l][k].is_nan() {
                x
            } else {
                f(parts[l][k], x)
            };
        }
    }
    for k in 0..nregs {
        let mut v: Vec<f32> = (0..lanes).map(|l| parts[l][k]).collect();
        for &m in frag.reduce_masks(vl) {
            let o = butterfly(&v, m);
            v = v.iter().zip(&o).map(|(&a, &b)| f(a, b)).collect();
        }
        for l in 0..lanes {
            parts[l][k] = v[l];
        }
    }
    parts
}

/// `bcast_row` as the lowering does it: register e of the tile meets register
/// `vector_reg_of_tile_reg(…, Rows, …)` of the vector in the same lane.
fn bcast_rows(
    frag: Frag,
    t: &Registers,
    v: &Registers,
    lay: Layout,
    cols: u32,
    f: fn(f32, f32) -> f32,
) -> Registers {
    (0..frag.lanes() as usize)
        .map(|l| {
            t[l].iter()
                .enumerate()
                .map(|(e, &x)| {
                    let k =
                        frag.vector_reg_of_tile_reg(lay, VecAxis::Rows, cols, e as u32) as usize;
                    f(x, v[l][k])
                })
                .collect()
        })
        .collect()
}

/// `kernels::softmax_rows`: load → reduce_row.max → bcast_row.sub → exp2 → reduce_row.sum →
/// bcast_row.div → store, in both layouts on random sizes drawn from `seed`, against the
/// interpreter (to f32 rounding: exp2 and sums differ in the last bits, a layout or shuffle bug
/// by far more).
pub fn softmax_rows_agrees_with_the_interpreter(frag: Frag, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    for case in 0..6 {
        let lay = if case % 2 == 0 {
            Layout::Row
        } else {
            Layout::Col
        };
        let (rows, cols) = (rng.gen_range(1..60usize), rng.gen_range(1..64usize));
        let x = Global {
            rows,
            cols,
            data: (0..rows * cols)
                .map(|_| rng.gen_range(-4.0f32..4.0))
                .collect(),
        };
        let module = kernels::softmax_rows_in(lay);
        let grid = [rows.div_ceil(16) as u32, 1, 1];
        let mut args = vec![
            x.tensor(F32),
            Arg::Tensor(HostTensor::zeros(F32, &[rows, cols])),
        ];
        interp::run(&module, "softmax_rows", grid, &mut args).unwrap();
        let want = output(&args, 1);

        let mut y = Global::zeros(rows, cols);
        for i in 0..grid[0] {
            let t = load_tile(frag, &x, i, 0, 16, 64, lay);
            let mx = reduce_rows(frag, &t, lay, 64, f32::max);
            let t = bcast_rows(frag, &t, &mx, lay, 64, |a, b| a - b);
            let t: Registers = t
                .iter()
                .map(|r| r.iter().map(|v| v.exp2()).collect())
                .collect();
            let s = reduce_rows(frag, &t, lay, 64, |a, b| a + b);
            let t = bcast_rows(frag, &t, &s, lay, 64, |a, b| a / b);
            store_tile(frag, &mut y, &t, i, 0, 16, 64, lay);
        }
        for (k, (a, b)) in y.data.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5,
                "{lay:?} element {k}: {a} vs {b} (rows {rows}, cols {cols})"
            );
        }
    }
}

/// The lowering's mask rule per register (see `mask` in `lower/elementwise.rs`): with the
/// tile's lane-dependent coordinates split off (`lane_r`, `lane_c`, the same for every register
/// of a layout) and the register's constants (`r_base`, `c_base`), the test
/// `d <swapped> base` where `d = bound - lane_part`.
#[allow(clippy::too_many_arguments)]
fn mask_hit(
    frag: Frag,
    kind: MaskKind,
    lay: Layout,
    cols: u32,
    lane: u32,
    e: u32,
    a: i32,
    b: i32,
) -> bool {
    let (r, c) = frag.tile_elem(lay, cols, e);
    let lane_of = |x: layout::LaneAffine| layout::LaneAffine { base: 0, ..x }.at(frag, lane) as i32;
    let (lr, lc) = (lane_of(r), lane_of(c));
    let (rb, cb) = (r.base as i32, c.base as i32);
    match kind {
        MaskKind::Causal => (a - b) - (lc - lr) < cb - rb,
        MaskKind::AntiCausal => (a - b) - (lc - lr) > cb - rb,
        MaskKind::Rows => (b - a) - lr <= rb,
        MaskKind::Cols => (b - a) - lc <= cb,
    }
}

/// `kernels::mask_kinds`: every mask kind on 16×32 tiles in both layouts, with random sizes
/// and bounds drawn from `seed`, against the interpreter.
pub fn mask_kinds_agree_with_the_interpreter(frag: Frag, seed: u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    for case in 0..8 {
        let lay = if case % 2 == 0 {
            Layout::Row
        } else {
            Layout::Col
        };
        let rows = rng.gen_range(1..50usize);
        let (a, b, n) = (
            rng.gen_range(-20..40),
            rng.gen_range(-20..40),
            rng.gen_range(0..40),
        );
        let x = Global {
            rows,
            cols: 32,
            data: (0..rows * 32).map(|k| k as f32).collect(),
        };
        let grid = [rows.div_ceil(16) as u32, 1, 1];
        let mut args = vec![
            x.tensor(F32),
            Arg::Tensor(HostTensor::zeros(F32, &[rows, 32])),
            Arg::i32(a),
            Arg::i32(b),
            Arg::i32(n),
        ];
        interp::run(&kernels::mask_kinds(lay), "mask_kinds", grid, &mut args).unwrap();
        let want = output(&args, 1);

        let mut y = Global::zeros(rows, 32);
        for i in 0..grid[0] {
            let mut t = load_tile(frag, &x, i, 0, 16, 32, lay);
            // The kernel's operands: causal (a, b), anticausal (b, a), rows (a, n), cols (b, n).
            let steps = [
                (MaskKind::Causal, -1.0, a, b),
                (MaskKind::AntiCausal, -2.0, b, a),
                (MaskKind::Rows, -3.0, a, n),
                (MaskKind::Cols, -4.0, b, n),
            ];
            for (kind, v, p, q) in steps {
                for l in 0..frag.lanes() {
                    for e in 0..frag.tile_regs(16, 32) {
                        if mask_hit(frag, kind, lay, 32, l, e, p, q) {
                            t[l as usize][e as usize] = v;
                        }
                    }
                }
            }
            store_tile(frag, &mut y, &t, i, 0, 16, 32, lay);
        }
        assert_eq!(y.data, want, "{lay:?} a={a} b={b} n={n} rows={rows}");
    }
}
