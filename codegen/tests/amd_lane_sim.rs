//! A lane-level simulation of the AMD lowering rules (wave64, MFMA fragments) for load → mfma
//! → store, row reductions and broadcasts, and masks, checked against the interpreter on random
//! inputs, so that a wrong layout table or MFMA plan fails on the CPU.
//!
//! The simulation holds each of the 64 lanes' registers as the lowering does (`Frag::Mfma`):
//! global tile loads put element `tile_elem(layout, cols, e)` in register `e`; `mma` issues one
//! MFMA per `layout::mfma_steps` entry, whose operands are turned into matrices with the CDNA
//! ISA's operand layouts, written out here independently of `layout`: for
//! `v_mfma_f32_16x16x{16,32}_*`, with `kl` = 4 or 8 elements per lane, lane `l` holds
//! `A[l%16][kl·(l/16) + j]`, `B[kl·(l/16) + j][l%16]` and `D[4·(l/16) + i][l%16]` (AMD CDNA3 and
//! CDNA4 ISA, *Matrix Arithmetic Instructions*; the AMD Matrix Instruction Calculator).
//! Cross-lane reductions follow `ds_bpermute_b32`: each lane reads the value of lane
//! `lane ^ mask`.

mod kernels;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tilekit_codegen::layout::{self, mfma_steps, Frag, MfmaK, MfmaStep};
use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::{BF16, F32};
use tilekit_ir::{Layout, MaskKind, MmaVariant};

const AMD: Frag = Frag::Mfma;
const LANES: u32 = 64;

/// Registers of one wavefront: `regs[lane][e]`.
type Wave = Vec<Vec<f32>>;

/// One MFMA on the wavefront's registers: gathers the instruction's A (16×K), B (K×16) and C
/// (16×16) from the operand layouts, computes D = A·B + C with f32 sums in order of the
/// instruction's k, and scatters D into C's registers. `a_regs` are the registers the step's
/// `src_a` indexes (the IR's B), `b_regs` those of `src_b` (the IR's A).
fn mfma(a_regs: &Wave, b_regs: &Wave, c: &mut Wave, step: &MfmaStep) {
    let kl = step.src_a.len();
    let k = 4 * kl;
    assert_eq!(kl, if step.k == MfmaK::K32 { 8 } else { 4 });
    let mut bm = vec![[0f32; 16]; k];
    let mut am_k = vec![vec![0f32; k]; 16];
    let mut cm = [[0f32; 16]; 16];
    for l in 0..LANES as usize {
        for j in 0..kl {
            let kk = kl * (l / 16) + j;
            am_k[l % 16][kk] = a_regs[l][step.src_a[j] as usize];
            bm[kk][l % 16] = b_regs[l][step.src_b[j] as usize];
        }
        for i in 0..4 {
            cm[4 * (l / 16) + i][l % 16] = c[l][step.c[i] as usize];
        }
    }
    for r in 0..16 {
        for n in 0..16 {
            let mut acc = cm[r][n];
            for kk in 0..k {
                acc += am_k[r][kk] * bm[kk][n];
            }
            cm[r][n] = acc;
        }
    }
    for l in 0..LANES as usize {
        for i in 0..4 {
            c[l][step.c[i] as usize] = cm[4 * (l / 16) + i][l % 16];
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
fn load_tile(g: &Global, i: u32, j: u32, rows: u32, cols: u32, lay: Layout) -> Wave {
    (0..LANES)
        .map(|l| {
            (0..AMD.tile_regs(rows, cols))
                .map(|e| {
                    let (r, c) = AMD.tile_elem(lay, cols, e);
                    g.get(i * rows + r.at(AMD, l), j * cols + c.at(AMD, l))
                })
                .collect()
        })
        .collect()
}

/// `store` of an f32 register tile, masked.
fn store_tile(g: &mut Global, t: &Wave, i: u32, j: u32, rows: u32, cols: u32, lay: Layout) {
    for l in 0..LANES {
        for e in 0..AMD.tile_regs(rows, cols) {
            let (r, c) = AMD.tile_elem(lay, cols, e);
            let (gr, gc) = (
                (i * rows + r.at(AMD, l)) as usize,
                (j * cols + c.at(AMD, l)) as usize,
            );
            if gr < g.rows && gc < g.cols {
                g.data[gr * g.cols + gc] = t[l as usize][e as usize];
            }
        }
    }
}

fn random_bf16(rng: &mut SmallRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| half::bf16::from_f32(rng.gen_range(-2.0f32..2.0)).to_f32())
        .collect()
}

fn tensor(g: &Global, dtype: tilekit_ir::ScalarType) -> Arg {
    let v: Vec<f64> = g.data.iter().map(|&x| f64::from(x)).collect();
    Arg::Tensor(HostTensor::new(dtype, &[g.rows, g.cols], &v).unwrap())
}

fn output(args: &[Arg], k: usize) -> Vec<f32> {
    args[k]
        .tensor()
        .unwrap()
        .to_vec()
        .iter()
        .map(|&x| x as f32)
        .collect()
}

/// `kernels::mma_global` on every variant and tile count, with the 16x16x16 plan (gfx90a,
/// gfx942) and the 16x16x32 plan (gfx950). With 16x16x16 the sums run in the interpreter's
/// order and must agree exactly; 16x16x32 feeds two k-subtiles per instruction, which changes
/// the order of the f32 sums (as the hardware may anyway), so it agrees to f32 rounding of the
/// sum of magnitudes — a layout bug moves results by whole products.
#[test]
fn mfma_from_global_agrees_with_the_interpreter() {
    for k32 in [false, true] {
        for (vi, variant) in MmaVariant::ALL.into_iter().enumerate() {
            for (mt, nt) in [(1, 1), (2, 1), (1, 2), (2, 2)] {
                let seed = 2000 + vi as u64 * 10 + mt as u64 * 3 + nt as u64;
                let mut rng = SmallRng::seed_from_u64(seed);
                let (m, n, k) = (
                    rng.gen_range(1..70usize),
                    rng.gen_range(1..70usize),
                    rng.gen_range(1..80usize),
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
                // The kernel's K step is one 16-wide subtile; the gfx950 plan needs two per
                // instruction, so the simulation loads 32 of K at a time for it.
                let kstep: u32 = if k32 { 32 } else { 16 };
                let module = kernels::mma_global(mt, nt, variant);
                let mut args = vec![
                    tensor(&a, BF16),
                    tensor(&b, BF16),
                    Arg::Tensor(HostTensor::zeros(F32, &[m, n])),
                ];
                interp::run(&module, "mma_global", grid, &mut args).expect("interpreter runs");
                let want = output(&args, 2);

                let mut c = Global {
                    rows: m,
                    cols: n,
                    data: vec![0.0; m * n],
                };
                for ti in 0..grid[1] {
                    for tj in 0..grid[0] {
                        let mut acc: Wave =
                            vec![vec![0.0; AMD.tile_regs(tm, tn) as usize]; LANES as usize];
                        for kt in 0..(k as u32).div_ceil(kstep) {
                            let (af, a_dims) = if variant.a_transposed() {
                                (load_tile(&a, kt, ti, kstep, tm, Layout::Col), (kstep, tm))
                            } else {
                                (load_tile(&a, ti, kt, tm, kstep, Layout::Row), (tm, kstep))
                            };
                            let (bf, b_dims) = if variant.b_transposed() {
                                (load_tile(&b, tj, kt, tn, kstep, Layout::Row), (tn, kstep))
                            } else {
                                (load_tile(&b, kt, tj, kstep, tn, Layout::Col), (kstep, tn))
                            };
                            let steps = mfma_steps(variant, a_dims, b_dims, (tm, tn), k32);
                            assert_eq!(steps.iter().filter(|s| s.k == MfmaK::K32).count() > 0, k32);
                            for step in &steps {
                                mfma(&bf, &af, &mut acc, step);
                            }
                        }
                        store_tile(&mut c, &acc, ti, tj, tm, tn, Layout::Row);
                    }
                }
                let what = format!(
                    "{variant:?} {mt}x{nt} tiles, k32 {k32}, m={m} n={n} k={k} (seed {seed})"
                );
                if k32 {
                    // Products of bf16 in [-2, 2] are at most 4: |error| ≤ k · 4 · 2^-23 · k.
                    let tol = (k * k) as f32 * 4.0 * f32::EPSILON;
                    for (x, y) in c.data.iter().zip(&want) {
                        assert!((x - y).abs() <= tol, "{what}: {x} vs {y}");
                    }
                } else {
                    assert_eq!(c.data, want, "{what}");
                }
            }
        }
    }
}

/// `ds_bpermute_b32` with source lane `l ^ m` (CDNA3 ISA, *LDS instructions*: DS_BPERMUTE_B32
/// reads the lane whose byte address `4·lane` the destination lane supplies).
fn bpermute_xor(v: &[f32], m: u32) -> Vec<f32> {
    (0..LANES).map(|l| v[(l ^ m) as usize]).collect()
}

/// `reduce_row` as the lowering does it on AMD.
#[allow(clippy::needless_range_loop)]
fn reduce_rows(t: &Wave, lay: Layout, cols: u32, f: fn(f32, f32) -> f32) -> Wave {
    use tilekit_ir::VecAxis::Rows;
    let vl = layout::tile_vector_layout(lay, Rows);
    let nregs = AMD.vector_regs(t[0].len() as u32 * LANES / cols, vl) as usize;
    let mut parts: Wave = vec![vec![f32::NAN; nregs]; LANES as usize];
    for l in 0..LANES as usize {
        for (e, &x) in t[l].iter().enumerate() {
            let k = AMD.vector_reg_of_tile_reg(lay, Rows, cols, e as u32) as usize;
            parts[l][k] = if parts[l][k].is_nan() {
                x
            } else {
                f(parts[l][k], x)
            };
        }
    }
    for k in 0..nregs {
        let mut v: Vec<f32> = (0..LANES as usize).map(|l| parts[l][k]).collect();
        for &m in AMD.reduce_masks(vl) {
            let o = bpermute_xor(&v, m);
            v = v.iter().zip(&o).map(|(&a, &b)| f(a, b)).collect();
        }
        for l in 0..LANES as usize {
            parts[l][k] = v[l];
        }
    }
    parts
}

/// `bcast_row` as the lowering does it on AMD.
fn bcast_rows(t: &Wave, v: &Wave, lay: Layout, cols: u32, f: fn(f32, f32) -> f32) -> Wave {
    use tilekit_ir::VecAxis::Rows;
    (0..LANES as usize)
        .map(|l| {
            t[l].iter()
                .enumerate()
                .map(|(e, &x)| {
                    let k = AMD.vector_reg_of_tile_reg(lay, Rows, cols, e as u32) as usize;
                    f(x, v[l][k])
                })
                .collect()
        })
        .collect()
}

/// `kernels::softmax_rows` in both layouts against the interpreter (to f32 rounding).
#[test]
fn row_reductions_and_broadcasts_agree_with_the_interpreter() {
    let mut rng = SmallRng::seed_from_u64(7);
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
            tensor(&x, F32),
            Arg::Tensor(HostTensor::zeros(F32, &[rows, cols])),
        ];
        interp::run(&module, "softmax_rows", grid, &mut args).unwrap();
        let want = output(&args, 1);
        let mut y = Global {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        };
        for i in 0..grid[0] {
            let t = load_tile(&x, i, 0, 16, 64, lay);
            let mx = reduce_rows(&t, lay, 64, f32::max);
            let t = bcast_rows(&t, &mx, lay, 64, |a, b| a - b);
            let t: Wave = t
                .iter()
                .map(|r| r.iter().map(|v| v.exp2()).collect())
                .collect();
            let s = reduce_rows(&t, lay, 64, |a, b| a + b);
            let t = bcast_rows(&t, &s, lay, 64, |a, b| a / b);
            store_tile(&mut y, &t, i, 0, 16, 64, lay);
        }
        for (k, (a, b)) in y.data.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5,
                "{lay:?} element {k}: {a} vs {b} (rows {rows}, cols {cols})"
            );
        }
    }
}

/// The lowering's mask rule per register (see `mask` in `lower/elementwise.rs`), on AMD's
/// lane parts.
fn mask_hit(kind: MaskKind, lay: Layout, cols: u32, lane: u32, e: u32, a: i32, b: i32) -> bool {
    let (r, c) = AMD.tile_elem(lay, cols, e);
    let lane_of = |x: layout::LaneAffine| layout::LaneAffine { base: 0, ..x }.at(AMD, lane) as i32;
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
    let mut rng = SmallRng::seed_from_u64(13);
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
            tensor(&x, F32),
            Arg::Tensor(HostTensor::zeros(F32, &[rows, 32])),
            Arg::i32(a),
            Arg::i32(b),
            Arg::i32(n),
        ];
        interp::run(&kernels::mask_kinds(lay), "mask_kinds", grid, &mut args).unwrap();
        let want = output(&args, 1);
        let mut y = Global {
            rows,
            cols: 32,
            data: vec![0.0; rows * 32],
        };
        for i in 0..grid[0] {
            let mut t = load_tile(&x, i, 0, 16, 32, lay);
            let steps = [
                (MaskKind::Causal, -1.0, a, b),
                (MaskKind::AntiCausal, -2.0, b, a),
                (MaskKind::Rows, -3.0, a, n),
                (MaskKind::Cols, -4.0, b, n),
            ];
            for (kind, v, p, q) in steps {
                for l in 0..LANES {
                    for e in 0..AMD.tile_regs(16, 32) {
                        if mask_hit(kind, lay, 32, l, e, p, q) {
                            t[l as usize][e as usize] = v;
                        }
                    }
                }
            }
            store_tile(&mut y, &t, i, 0, 16, 32, lay);
        }
        assert_eq!(y.data, want, "{lay:?} a={a} b={b} n={n} rows={rows}");
    }
}
