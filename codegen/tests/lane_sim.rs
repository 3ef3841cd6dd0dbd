//! A lane-level simulation of the NVIDIA lowering rules for load → mma → store, checked against
//! the interpreter on random inputs, so that a layout bug fails on the CPU.
//!
//! The simulation holds each lane's registers as the lowering does: global tile loads put
//! element `NV.tile_elem(layout, cols, e)` of the tile in register `e` (the rules NVIDIA and
//! AMD share, in `lanes`); shared tiles are swizzled byte arrays written by `copy` and read by
//! `ldmatrix` as the PTX ISA defines it (lanes `8q..8q+8` address the rows of matrix `q`; lane
//! `l` receives row `l/4`, elements `2(l%4), 2(l%4)+1`, or with `.trans` column `l/4`); `mma`
//! issues one `m16n8k16` per `layout::mma_steps` entry, whose fragments are turned back into
//! matrices with the PTX ISA's fragment formulas (written out here independently of `layout`).

mod kernels;
mod lanes;

use lanes::{store_tile, Global};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit_codegen::layout::{self, ldmatrix_source, mma_steps, swizzle, Frag, LdmatrixOrder};
use tilekit_ir::ScalarType::{BF16, F32};
use tilekit_ir::{Layout, MmaVariant, ScalarType, Swizzle};

/// The NVIDIA fragment geometry that this simulation follows.
const NV: Frag = Frag::MmaSync;

const LANES: u32 = 32;

/// Registers of one warp: `regs[lane][e]`.
type Warp = lanes::Registers;

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

/// `store` of an f32 accumulator tile (row layout), masked; values rounded to `out`.
fn store_rounded(g: &mut Global, t: &Warp, i: u32, j: u32, rows: u32, cols: u32, out: ScalarType) {
    let rounded: Warp = t
        .iter()
        .map(|r| {
            r.iter()
                .map(|&v| match out {
                    BF16 => half::bf16::from_f32(v).to_f32(),
                    _ => v,
                })
                .collect()
        })
        .collect();
    store_tile(NV, g, &rounded, i, j, rows, cols, Layout::Row);
}

/// `kernels::mma_global`: every variant, tiles 16·mt × 16·nt, odd sizes (masked edges).
#[test]
fn register_mma_from_global_agrees_with_the_interpreter() {
    for (vi, variant) in MmaVariant::ALL.into_iter().enumerate() {
        for (mt, nt) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
            let seed = 1000 + vi as u64 * 10 + mt as u64 * 3 + nt as u64;
            let (tm, tn) = (16 * mt, 16 * nt);
            let lanes::Product { m, n, k, got, want } =
                lanes::simulate_mma_global(NV, variant, (mt, nt), seed, 1..50, 16, |a, b, acc| {
                    for step in mma_steps(variant, a.dims, b.dims, (tm, tn)) {
                        mma_sync(&a.regs, &b.regs, acc, &step);
                    }
                });
            assert_eq!(
                got, want,
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
/// element origin (row0, col0) of the shared tile, delivering register pairs in `order`,
/// simulated per the PTX ISA.
fn ldmatrix_tile(
    s: &Shared,
    (row0, col0): (u32, u32),
    (rows, cols): (u32, u32),
    lay: Layout,
    order: LdmatrixOrder,
) -> Warp {
    let mut w = lanes::zero_tile(NV, rows, cols);
    for si in 0..rows / 16 {
        for sj in 0..cols / 16 {
            // Row addresses each lane supplies (the lowering's rule).
            let addr: Vec<u32> = (0..LANES)
                .map(|l| {
                    let (r, c) = ldmatrix_source(lay, order, l);
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
                        // Destination register q holds the order's pair for q.
                        let e = 2 * order.pairs()[q as usize] + h;
                        w[l as usize][base + e as usize] = v;
                    }
                }
            }
        }
    }
    w
}

/// One warp's step of a GEMM from shared memory: `ldmatrix` the 16×32 of A at row `a_row` and
/// the 32×16 of B at column `b_col` (`.trans`), then accumulate their product with `mma.sync`.
fn mma_from_shared(sa: &Shared, sb: &Shared, a_row: u32, b_col: u32, acc: &mut Warp) {
    let af = ldmatrix_tile(
        sa,
        (a_row, 0),
        (16, 32),
        Layout::Row,
        LdmatrixOrder::AOperand,
    );
    let bf = ldmatrix_tile(
        sb,
        (0, b_col),
        (32, 16),
        Layout::Col,
        LdmatrixOrder::BOperand,
    );
    for step in mma_steps(MmaVariant::AB, (16, 32), (32, 16), (16, 16)) {
        mma_sync(&af, &bf, acc, &step);
    }
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
        let a = Global::random_bf16(&mut rng, m, k);
        let b = Global::random_bf16(&mut rng, k, n);
        let grid = [n.div_ceil(32) as u32, m.div_ceil(32) as u32, 1];
        let module = kernels::gemm_shared(out, swz);
        let want = lanes::interpret_gemm(&module, "gemm_shared", grid, &a, &b, [m, n], out);
        let mut c = Global::zeros(m, n);
        for tm in 0..grid[1] {
            for tn in 0..grid[0] {
                for warp in 0..4u32 {
                    let (wr, wc) = (warp / 2, warp % 2);
                    let mut acc = lanes::zero_tile(NV, 16, 16);
                    for kt in 0..k.div_ceil(32) as u32 {
                        let mut sa = Shared::new(32, 32, swz);
                        let mut sb = Shared::new(32, 32, swz);
                        copy_to_shared(&a, &mut sa, tm, kt, 32, 32);
                        copy_to_shared(&b, &mut sb, kt, tn, 32, 32);
                        mma_from_shared(&sa, &sb, 16 * wr, 16 * wc, &mut acc);
                    }
                    store_rounded(&mut c, &acc, 2 * tm + wr, 2 * tn + wc, 16, 16, out);
                }
            }
        }
        assert_eq!(
            c.data, want,
            "{swz:?} → {out}, m={m} n={n} k={k} (seed {seed})"
        );
    }
}

/// `kernels::softmax_rows` on NVIDIA's fragments (see `lanes`).
#[test]
fn row_reductions_and_broadcasts_agree_with_the_interpreter() {
    lanes::softmax_rows_agrees_with_the_interpreter(NV, 5);
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
    let a = Global::random_bf16(&mut rng, m, k);
    let b = Global::random_bf16(&mut rng, k, n);
    let grid = [n.div_ceil(16) as u32, m.div_ceil(64) as u32, 1];
    let module = kernels::mma_warpgroup();
    let want = lanes::interpret_gemm(&module, "mma_warpgroup", grid, &a, &b, [m, n], F32);
    let mut c = Global::zeros(m, n);
    for ti in 0..grid[1] {
        for tj in 0..grid[0] {
            for w in 0..4u32 {
                let mut acc = lanes::zero_tile(NV, 16, 16);
                for kt in 0..k.div_ceil(32) as u32 {
                    let mut sa = Shared::new(64, 32, Swizzle::B64);
                    let mut sb = Shared::new(32, 16, Swizzle::B32);
                    copy_to_shared(&a, &mut sa, ti, kt, 64, 32);
                    copy_to_shared(&b, &mut sb, kt, tj, 32, 16);
                    mma_from_shared(&sa, &sb, 16 * w, 0, &mut acc);
                }
                store_tile(NV, &mut c, &acc, 4 * ti + w, tj, 16, 16, Layout::Row);
            }
        }
    }
    assert_eq!(c.data, want, "m={m} n={n} k={k} (seed {seed})");
}

/// `kernels::mask_kinds` on NVIDIA's fragments (see `lanes`).
#[test]
fn masks_agree_with_the_interpreter_in_both_layouts() {
    lanes::mask_kinds_agree_with_the_interpreter(NV, 11);
}
