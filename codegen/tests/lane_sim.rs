//! A lane-level simulation of the NVIDIA lowering rules for load → mma → store, checked against
//! the interpreter on random inputs, so that a layout bug fails on the CPU.
//!
//! The simulation holds each lane's registers as the lowering does: global tile loads put
//! element `NV.tile_elem(layout, cols, e)` of the tile in register `e`; shared tiles are
//! swizzled byte arrays written by `copy` and read by `ldmatrix` as the PTX ISA defines it
//! (lanes `8q..8q+8` address the rows of matrix `q`; lane `l` receives row `l/4`, elements
//! `2(l%4), 2(l%4)+1`, or with `.trans` column `l/4`); `mma` issues one `m16n8k16` per
//! `layout::mma_steps` entry, whose fragments are turned back into matrices with the PTX ISA's
//! fragment formulas (written out here independently of `layout`).

mod kernels;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit_codegen::layout::{self, ldmatrix_source, mma_steps, swizzle, Frag};

/// The NVIDIA fragment geometry that this simulation follows.
const NV: Frag = Frag::MmaSync;
use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::{BF16, F32};
use tilekit_ir::{Layout, MaskKind, MmaVariant, ScalarType, Swizzle};

const LANES: u32 = 32;

/// Registers of one warp: `regs[lane][e]`.
type Warp = Vec<Vec<f32>>;

/// PTX ISA, "MMA .m16n8k16 fragment layout for matrix A": (row, col) of `a_i` in lane `l`.
fn frag_a(l: u32, i: u32) -> (u32, u32) {
    let (g, t) = (l / 4, l % 4);
    let row = if i < 2 || (4..6).contains(&i) {
        g
    } else {
        g + 8
    };
    let col = t * 2 + (i & 1) + if i >= 4 { 8 } else { 0 };
    (row, col)
}

/// "… for matrix B": (row k, col n) of `b_i`.
fn frag_b(l: u32, i: u32) -> (u32, u32) {
    let (g, t) = (l / 4, l % 4);
    (t * 2 + (i & 1) + if i >= 2 { 8 } else { 0 }, g)
}

/// "… for accumulator matrix C/D": (row, col) of `c_i`.
fn frag_c(l: u32, i: u32) -> (u32, u32) {
    let (g, t) = (l / 4, l % 4);
    (if i < 2 { g } else { g + 8 }, t * 2 + (i & 1))
}

/// `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32` on the warp's registers: gathers A
/// (16×16), B (16×8) and C (16×8) from the fragments, computes D = A·B + C with f32 sums in
/// order of k (as the interpreter defines `mma`), scatters D into C's registers.
fn mma_sync(a: &Warp, b: &Warp, c: &mut Warp, step: &layout::MmaStep) {
    let mut am = [[0f32; 16]; 16];
    let mut bm = [[0f32; 8]; 16];
    let mut cm = [[0f32; 8]; 16];
    for l in 0..LANES {
        for i in 0..8 {
            let (r, k) = frag_a(l, i);
            am[r as usize][k as usize] = a[l as usize][step.a[i as usize] as usize];
        }
        for i in 0..4 {
            let (k, n) = frag_b(l, i);
            bm[k as usize][n as usize] = b[l as usize][step.b[i as usize] as usize];
            let (r, n) = frag_c(l, i);
            cm[r as usize][n as usize] = c[l as usize][step.c[i as usize] as usize];
        }
    }
    for r in 0..16 {
        for n in 0..8 {
            let mut acc = cm[r][n];
            for k in 0..16 {
                acc += am[r][k] * bm[k][n];
            }
            cm[r][n] = acc;
        }
    }
    for l in 0..LANES {
        for i in 0..4 {
            let (r, n) = frag_c(l, i);
            c[l as usize][step.c[i as usize] as usize] = cm[r as usize][n as usize];
        }
    }
}

/// A row-major matrix in global memory.
struct Global {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Global {
    fn get(&self, r: u32, c: u32) -> f32 {
        let (r, c) = (r as usize, c as usize);
        if r < self.rows && c < self.cols {
            self.data[r * self.cols + c]
        } else {
            0.0
        }
    }
}

/// `load` of a register tile at tile coordinates (i, j), masked: the lowering's rule.
fn load_tile(g: &Global, i: u32, j: u32, rows: u32, cols: u32, lay: Layout) -> Warp {
    (0..LANES)
        .map(|l| {
            (0..NV.tile_regs(rows, cols))
                .map(|e| {
                    let (r, c) = NV.tile_elem(lay, cols, e);
                    g.get(i * rows + r.at(NV, l), j * cols + c.at(NV, l))
                })
                .collect()
        })
        .collect()
}

/// `store` of an f32 register tile of either layout, masked.
fn store_tile_in(g: &mut Global, t: &Warp, i: u32, j: u32, rows: u32, cols: u32, lay: Layout) {
    for l in 0..LANES {
        for e in 0..NV.tile_regs(rows, cols) {
            let (r, c) = NV.tile_elem(lay, cols, e);
            let (gr, gc) = (
                (i * rows + r.at(NV, l)) as usize,
                (j * cols + c.at(NV, l)) as usize,
            );
            if gr < g.rows && gc < g.cols {
                g.data[gr * g.cols + gc] = t[l as usize][e as usize];
            }
        }
    }
}

/// `store` of a register tile, masked; values rounded to `out`.
fn store_tile(g: &mut Global, t: &Warp, i: u32, j: u32, rows: u32, cols: u32, out: ScalarType) {
    for l in 0..LANES {
        for e in 0..NV.tile_regs(rows, cols) {
            let (r, c) = NV.tile_elem(Layout::Row, cols, e);
            let (gr, gc) = (
                (i * rows + r.at(NV, l)) as usize,
                (j * cols + c.at(NV, l)) as usize,
            );
            if gr < g.rows && gc < g.cols {
                let v = t[l as usize][e as usize];
                g.data[gr * g.cols + gc] = match out {
                    BF16 => half::bf16::from_f32(v).to_f32(),
                    _ => v,
                };
            }
        }
    }
}

fn random_bf16(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| half::bf16::from_f32(rng.gen_range(-2.0f32..2.0)).to_f32())
        .collect()
}

fn run_interp(
    m: &tilekit_ir::Module,
    kernel: &str,
    grid: [u32; 3],
    a: (&Global, Vec<usize>),
    b: (&Global, Vec<usize>),
    c_shape: [usize; 2],
    out: ScalarType,
) -> Vec<f32> {
    let t = |g: &Global, shape: &[usize]| {
        let v: Vec<f64> = g.data.iter().map(|&x| f64::from(x)).collect();
        Arg::Tensor(HostTensor::new(BF16, shape, &v).unwrap())
    };
    let mut args = vec![
        t(a.0, &a.1),
        t(b.0, &b.1),
        Arg::Tensor(HostTensor::zeros(out, &c_shape)),
    ];
    interp::run(m, kernel, grid, &mut args).expect("interpreter runs");
    args[2]
        .tensor()
        .unwrap()
        .to_vec()
        .iter()
        .map(|&x| x as f32)
        .collect()
}

/// `kernels::mma_global`: every variant, tiles 16·mt × 16·nt, odd sizes (masked edges).
#[test]
fn register_mma_from_global_agrees_with_the_interpreter() {
    for (vi, variant) in MmaVariant::ALL.into_iter().enumerate() {
        for (mt, nt) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            let seed = 1000 + vi as u64 * 10 + mt as u64 * 3 + nt as u64;
            let mut rng = SmallRng::seed_from_u64(seed);
            let (m, n, k) = (
                rng.gen_range(1..70usize),
                rng.gen_range(1..70usize),
                rng.gen_range(1..50usize),
            );
            // Stored shapes of A and B for the variant.
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
            let a = Global {
                rows: a_shape[0],
                cols: a_shape[1],
                data: random_bf16(&mut rng, m * k),
            };
            let b = Global {
                rows: b_shape[0],
                cols: b_shape[1],
                data: random_bf16(&mut rng, k * n),
            };
            let (tm, tn) = (16 * mt, 16 * nt);
            let grid = [
                n.div_ceil(tn as usize) as u32,
                m.div_ceil(tm as usize) as u32,
                1,
            ];
            let module = kernels::mma_global(mt, nt, variant);
            let want = run_interp(
                &module,
                "mma_global",
                grid,
                (&a, a_shape.to_vec()),
                (&b, b_shape.to_vec()),
                [m, n],
                F32,
            );

            let mut c = Global {
                rows: m,
                cols: n,
                data: vec![0.0; m * n],
            };
            for ti in 0..grid[1] {
                for tj in 0..grid[0] {
                    let mut acc: Warp = vec![vec![0.0; NV.tile_regs(tm, tn) as usize]; 32];
                    for kt in 0..k.div_ceil(16) as u32 {
                        let (af, a_dims) = if variant.a_transposed() {
                            (load_tile(&a, kt, ti, 16, tm, Layout::Col), (16, tm))
                        } else {
                            (load_tile(&a, ti, kt, tm, 16, Layout::Row), (tm, 16))
                        };
                        let (bf, b_dims) = if variant.b_transposed() {
                            (load_tile(&b, tj, kt, tn, 16, Layout::Row), (tn, 16))
                        } else {
                            (load_tile(&b, kt, tj, 16, tn, Layout::Col), (16, tn))
                        };
                        for step in mma_steps(variant, a_dims, b_dims, (tm, tn)) {
                            mma_sync(&af, &bf, &mut acc, &step);
                        }
                    }
                    store_tile(&mut c, &acc, ti, tj, tm, tn, F32);
                }
            }
            assert_eq!(
                c.data, want,
                "{variant:?} {mt}x{nt} tiles, m={m} n={n} k={k} (seed {seed})"
            );
        }
    }
}

/// Shared memory as the lowering lays it out: row-major 16-bit elements, swizzled byte offsets.
struct Shared {
    cols: u32,
    swz: Swizzle,
    bytes: Vec<Option<f32>>,
}

impl Shared {
    fn new(rows: u32, cols: u32, swz: Swizzle) -> Shared {
        Shared {
            cols,
            swz,
            bytes: vec![None; (rows * cols * 2) as usize],
        }
    }

    fn addr(&self, r: u32, c: u32) -> u32 {
        swizzle(self.swz, (r * self.cols + c) * 2)
    }

    fn write(&mut self, r: u32, c: u32, v: f32) {
        let a = self.addr(r, c) as usize;
        self.bytes[a] = Some(v);
    }

    fn read_at(&self, byte: u32) -> f32 {
        self.bytes[byte as usize].expect("ldmatrix reads an element that copy wrote")
    }
}

/// `copy @block` global tile (i, j) → shared, masked to zero.
fn copy_to_shared(g: &Global, s: &mut Shared, i: u32, j: u32, rows: u32, cols: u32) {
    for r in 0..rows {
        for c in 0..cols {
            s.write(r, c, g.get(i * rows + r, j * cols + c));
        }
    }
}

/// `load` shared → registers with `ldmatrix.x4` per 16×16 subtile (`.trans` for col tiles), at
/// element origin (row0, col0) of the shared tile, simulated per the PTX ISA.
fn ldmatrix_tile(s: &Shared, row0: u32, col0: u32, rows: u32, cols: u32, lay: Layout) -> Warp {
    let mut w: Warp = vec![vec![0.0; NV.tile_regs(rows, cols) as usize]; 32];
    for si in 0..rows / 16 {
        for sj in 0..cols / 16 {
            // Row addresses each lane supplies (the lowering's rule).
            let addr: Vec<u32> = (0..LANES)
                .map(|l| {
                    let (r, c) = ldmatrix_source(lay, l);
                    s.addr(row0 + 16 * si + r, col0 + 16 * sj + c)
                })
                .collect();
            let base = (8 * (si * (cols / 16) + sj)) as usize;
            for l in 0..LANES {
                for q in 0..4u32 {
                    for h in 0..2u32 {
                        let v = match lay {
                            // Row l/4 of matrix q, element 2(l%4)+h.
                            Layout::Row => {
                                s.read_at(addr[(8 * q + l / 4) as usize] + 2 * (2 * (l % 4) + h))
                            }
                            // .trans: column l/4, row 2(l%4)+h.
                            Layout::Col => {
                                s.read_at(addr[(8 * q + 2 * (l % 4) + h) as usize] + 2 * (l / 4))
                            }
                        };
                        w[l as usize][base + (2 * q + h) as usize] = v;
                    }
                }
            }
        }
    }
    w
}

/// `kernels::gemm_shared`: copy → swizzled shared tiles → ldmatrix → mma → convert → store.
#[test]
fn shared_memory_gemm_agrees_with_the_interpreter() {
    for (case, (swz, out)) in [
        (Swizzle::None, F32),
        (Swizzle::B32, BF16),
        (Swizzle::B64, F32),
        (Swizzle::B128, BF16),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 77 + case as u64;
        let mut rng = SmallRng::seed_from_u64(seed);
        let (m, n, k) = (
            rng.gen_range(1..80usize),
            rng.gen_range(1..80usize),
            rng.gen_range(1..90usize),
        );
        let a = Global {
            rows: m,
            cols: k,
            data: random_bf16(&mut rng, m * k),
        };
        let b = Global {
            rows: k,
            cols: n,
            data: random_bf16(&mut rng, k * n),
        };
        let grid = [n.div_ceil(32) as u32, m.div_ceil(32) as u32, 1];
        let module = kernels::gemm_shared(out, swz);
        let want = run_interp(
            &module,
            "gemm_shared",
            grid,
            (&a, vec![m, k]),
            (&b, vec![k, n]),
            [m, n],
            out,
        );
        let mut c = Global {
            rows: m,
            cols: n,
            data: vec![0.0; m * n],
        };
        for tm in 0..grid[1] {
            for tn in 0..grid[0] {
                for warp in 0..4u32 {
                    let (wr, wc) = (warp / 2, warp % 2);
                    let mut acc: Warp = vec![vec![0.0; 8]; 32];
                    for kt in 0..k.div_ceil(32) as u32 {
                        let mut sa = Shared::new(32, 32, swz);
                        let mut sb = Shared::new(32, 32, swz);
                        copy_to_shared(&a, &mut sa, tm, kt, 32, 32);
                        copy_to_shared(&b, &mut sb, kt, tn, 32, 32);
                        let af = ldmatrix_tile(&sa, 16 * wr, 0, 16, 32, Layout::Row);
                        let bf = ldmatrix_tile(&sb, 0, 16 * wc, 32, 16, Layout::Col);
                        for step in mma_steps(MmaVariant::AB, (16, 32), (32, 16), (16, 16)) {
                            mma_sync(&af, &bf, &mut acc, &step);
                        }
                    }
                    store_tile(&mut c, &acc, 2 * tm + wr, 2 * tn + wc, 16, 16, out);
                }
            }
        }
        assert_eq!(
            c.data, want,
            "{swz:?} → {out}, m={m} n={n} k={k} (seed {seed})"
        );
    }
}

/// `shfl.sync.bfly` with mask `m` over the whole warp: lane l receives lane `l ^ m`'s value
/// (PTX ISA, *Data Movement and Conversion Instructions: shfl.sync*, mode `.bfly`).
fn shfl_bfly(v: &[f32], m: u32) -> Vec<f32> {
    (0..LANES).map(|l| v[(l ^ m) as usize]).collect()
}

/// `reduce_row` as the lowering does it: each lane folds the registers of each of its rows
/// (`vector_reg_of_tile_reg`), then butterflies over the lanes holding parts of the same row
/// (`reduce_masks` of the vector's distribution).
#[allow(clippy::needless_range_loop)]
fn reduce_rows(t: &Warp, lay: Layout, cols: u32, f: fn(f32, f32) -> f32) -> Warp {
    use tilekit_ir::VecAxis::Rows;
    let vl = layout::tile_vector_layout(lay, Rows);
    let nregs = NV.vector_regs(t[0].len() as u32 * 32 / cols, vl) as usize;
    let mut parts: Warp = vec![vec![f32::NAN; nregs]; 32];
    for l in 0..32 {
        for (e, &x) in t[l].iter().enumerate() {
            let k = NV.vector_reg_of_tile_reg(lay, Rows, cols, e as u32) as usize;
            parts[l][k] = if parts[l][k].is_nan() {
                x
            } else {
                f(parts[l][k], x)
            };
        }
    }
    for k in 0..nregs {
        let mut v: Vec<f32> = (0..32).map(|l| parts[l][k]).collect();
        for &m in NV.reduce_masks(vl) {
            let o = shfl_bfly(&v, m);
            v = v.iter().zip(&o).map(|(&a, &b)| f(a, b)).collect();
        }
        for l in 0..32 {
            parts[l][k] = v[l];
        }
    }
    parts
}

/// `bcast_row` as the lowering does it: register e of the tile meets register
/// `vector_reg_of_tile_reg(…, Rows, …)` of the vector in the same lane.
fn bcast_rows(t: &Warp, v: &Warp, lay: Layout, cols: u32, f: fn(f32, f32) -> f32) -> Warp {
    use tilekit_ir::VecAxis::Rows;
    (0..32)
        .map(|l| {
            t[l].iter()
                .enumerate()
                .map(|(e, &x)| {
                    let k = NV.vector_reg_of_tile_reg(lay, Rows, cols, e as u32) as usize;
                    f(x, v[l][k])
                })
                .collect()
        })
        .collect()
}

/// `kernels::softmax_rows`: load → reduce_row.max → bcast_row.sub → exp2 → reduce_row.sum →
/// bcast_row.div → store, against the interpreter (to f32 rounding: exp2 and sums differ in the
/// last bits, a layout or shuffle bug by far more).
#[test]
fn row_reductions_and_broadcasts_agree_with_the_interpreter() {
    let mut rng = SmallRng::seed_from_u64(5);
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
        let xin: Vec<f64> = x.data.iter().map(|&v| f64::from(v)).collect();
        let mut args = vec![
            Arg::Tensor(HostTensor::new(F32, &[rows, cols], &xin).unwrap()),
            Arg::Tensor(HostTensor::zeros(F32, &[rows, cols])),
        ];
        interp::run(&module, "softmax_rows", grid, &mut args).unwrap();
        let want: Vec<f32> = args[1]
            .tensor()
            .unwrap()
            .to_vec()
            .iter()
            .map(|&v| v as f32)
            .collect();

        let mut y = Global {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        };
        for i in 0..grid[0] {
            let t = load_tile(&x, i, 0, 16, 64, lay);
            let mx = reduce_rows(&t, lay, 64, f32::max);
            let t = bcast_rows(&t, &mx, lay, 64, |a, b| a - b);
            let t: Warp = t
                .iter()
                .map(|r| r.iter().map(|v| v.exp2()).collect())
                .collect();
            let s = reduce_rows(&t, lay, 64, |a, b| a + b);
            let t = bcast_rows(&t, &s, lay, 64, |a, b| a / b);
            store_tile_in(&mut y, &t, i, 0, 16, 64, lay);
        }
        for (k, (a, b)) in y.data.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5,
                "{lay:?} element {k}: {a} vs {b} (rows {rows}, cols {cols})"
            );
        }
    }
}

/// `kernels::mma_warpgroup`: at warpgroup scope (until wgmma) each warp `ldmatrix`es its 16
/// rows of the shared A and all of the shared B, then runs the warp-scope `mma.sync` steps.
#[test]
fn warpgroup_mma_from_shared_memory_agrees_with_the_interpreter() {
    let seed = 31;
    let mut rng = SmallRng::seed_from_u64(seed);
    let (m, n, k) = (
        rng.gen_range(1..150usize),
        rng.gen_range(1..40usize),
        rng.gen_range(1..70usize),
    );
    let a = Global {
        rows: m,
        cols: k,
        data: random_bf16(&mut rng, m * k),
    };
    let b = Global {
        rows: k,
        cols: n,
        data: random_bf16(&mut rng, k * n),
    };
    let grid = [n.div_ceil(16) as u32, m.div_ceil(64) as u32, 1];
    let module = kernels::mma_warpgroup();
    let want = run_interp(
        &module,
        "mma_warpgroup",
        grid,
        (&a, vec![m, k]),
        (&b, vec![k, n]),
        [m, n],
        F32,
    );
    let mut c = Global {
        rows: m,
        cols: n,
        data: vec![0.0; m * n],
    };
    for ti in 0..grid[1] {
        for tj in 0..grid[0] {
            for w in 0..4u32 {
                let mut acc: Warp = vec![vec![0.0; 8]; 32];
                for kt in 0..k.div_ceil(32) as u32 {
                    let mut sa = Shared::new(64, 32, Swizzle::B64);
                    let mut sb = Shared::new(32, 16, Swizzle::B32);
                    copy_to_shared(&a, &mut sa, ti, kt, 64, 32);
                    copy_to_shared(&b, &mut sb, kt, tj, 32, 16);
                    let af = ldmatrix_tile(&sa, 16 * w, 0, 16, 32, Layout::Row);
                    let bf = ldmatrix_tile(&sb, 0, 0, 32, 16, Layout::Col);
                    for step in mma_steps(MmaVariant::AB, (16, 32), (32, 16), (16, 16)) {
                        mma_sync(&af, &bf, &mut acc, &step);
                    }
                }
                store_tile(&mut c, &acc, 4 * ti + w, tj, 16, 16, F32);
            }
        }
    }
    assert_eq!(c.data, want, "m={m} n={n} k={k} (seed {seed})");
}

/// The lowering's mask rule per register: with the tile's lane-dependent coordinates split off
/// (`lane_r`, `lane_c`, the same for every register of a layout) and the register's constants
/// (`r_base`, `c_base`), the test `d <swapped> base` where `d = bound - lane_part`.
fn mask_hit(kind: MaskKind, lay: Layout, cols: u32, lane: u32, e: u32, a: i32, b: i32) -> bool {
    let (r, c) = NV.tile_elem(lay, cols, e);
    let lane_of = |x: layout::LaneAffine| layout::LaneAffine { base: 0, ..x }.at(NV, lane) as i32;
    let (lr, lc) = (lane_of(r), lane_of(c));
    let (rb, cb) = (r.base as i32, c.base as i32);
    match kind {
        MaskKind::Causal => (a - b) - (lc - lr) < cb - rb,
        MaskKind::AntiCausal => (a - b) - (lc - lr) > cb - rb,
        MaskKind::Rows => (b - a) - lr <= rb,
        MaskKind::Cols => (b - a) - lc <= cb,
    }
}

#[test]
fn masks_agree_with_the_interpreter_in_both_layouts() {
    let mut rng = SmallRng::seed_from_u64(11);
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
        let xin: Vec<f64> = x.data.iter().map(|&v| f64::from(v)).collect();
        let mut args = vec![
            Arg::Tensor(HostTensor::new(F32, &[rows, 32], &xin).unwrap()),
            Arg::Tensor(HostTensor::zeros(F32, &[rows, 32])),
            Arg::i32(a),
            Arg::i32(b),
            Arg::i32(n),
        ];
        interp::run(&kernels::mask_kinds(lay), "mask_kinds", grid, &mut args).unwrap();
        let want: Vec<f32> = args[1]
            .tensor()
            .unwrap()
            .to_vec()
            .iter()
            .map(|&v| v as f32)
            .collect();

        let mut y = Global {
            rows,
            cols: 32,
            data: vec![0.0; rows * 32],
        };
        for i in 0..grid[0] {
            let mut t = load_tile(&x, i, 0, 16, 32, lay);
            // The kernel's operands: causal (a, b), anticausal (b, a), rows (a, n), cols (b, n).
            let steps = [
                (MaskKind::Causal, -1.0, a, b),
                (MaskKind::AntiCausal, -2.0, b, a),
                (MaskKind::Rows, -3.0, a, n),
                (MaskKind::Cols, -4.0, b, n),
            ];
            for (kind, v, p, q) in steps {
                for l in 0..32u32 {
                    for e in 0..NV.tile_regs(16, 32) {
                        if mask_hit(kind, lay, 32, l, e, p, q) {
                            t[l as usize][e as usize] = v;
                        }
                    }
                }
            }
            store_tile_in(&mut y, &t, i, 0, 16, 32, lay);
        }
        assert_eq!(y.data, want, "{lay:?} a={a} b={b} n={n} rows={rows}");
    }
}
