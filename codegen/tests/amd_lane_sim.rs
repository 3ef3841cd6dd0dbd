//! A lane-level simulation of the AMD lowering rules (wave64, MFMA fragments) for load → mfma
//! → store, row reductions and broadcasts, and masks, checked against the interpreter on random
//! inputs, so that a wrong layout table or MFMA plan fails on the CPU.
//!
//! The simulation holds each of the 64 lanes' registers as the lowering does (`Frag::Mfma`):
//! global tile loads put element `tile_elem(layout, cols, e)` in register `e` (the rules NVIDIA
//! and AMD share, in `lanes`); `mma` issues one MFMA per `layout::mfma_steps` entry, whose
//! operands are turned into matrices with the CDNA ISA's operand layouts, written out here
//! independently of `layout`: for `v_mfma_f32_16x16x{16,32}_*`, with `kl` = 4 or 8 elements per
//! lane, lane `l` holds `A[l%16][kl·(l/16) + j]`, `B[kl·(l/16) + j][l%16]` and
//! `D[4·(l/16) + i][l%16]` (AMD CDNA3 and CDNA4 ISA, *Matrix Arithmetic Instructions*; the AMD
//! Matrix Instruction Calculator). Cross-lane reductions follow `ds_bpermute_b32`: each lane
//! reads the value of lane `lane ^ mask`.

mod kernels;
mod lanes;

use tilekit_codegen::layout::{mfma_steps, Frag, MfmaK, MfmaStep};
use tilekit_ir::MmaVariant;

const AMD: Frag = Frag::Mfma;
const LANES: u32 = 64;

/// Registers of one wavefront: `regs[lane][e]`.
type Wave = lanes::Registers;

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
                let (tm, tn) = (16 * mt, 16 * nt);
                // The kernel's K step is one 16-wide subtile; the gfx950 plan needs two per
                // instruction, so the simulation loads 32 of K at a time for it.
                let kstep: u32 = if k32 { 32 } else { 16 };
                let lanes::Product { m, n, k, got, want } = lanes::simulate_mma_global(
                    AMD,
                    variant,
                    (mt, nt),
                    seed,
                    1..80,
                    kstep,
                    |a, b, acc| {
                        let steps = mfma_steps(variant, a.dims, b.dims, (tm, tn), k32);
                        assert_eq!(steps.iter().filter(|s| s.k == MfmaK::K32).count() > 0, k32);
                        for step in &steps {
                            mfma(&b.regs, &a.regs, acc, step);
                        }
                    },
                );
                let what = format!(
                    "{variant:?} {mt}x{nt} tiles, k32 {k32}, m={m} n={n} k={k} (seed {seed})"
                );
                if k32 {
                    // Products of bf16 in [-2, 2] are at most 4: |error| ≤ k · 4 · 2^-23 · k.
                    let tol = (k * k) as f32 * 4.0 * f32::EPSILON;
                    for (x, y) in got.iter().zip(&want) {
                        assert!((x - y).abs() <= tol, "{what}: {x} vs {y}");
                    }
                } else {
                    assert_eq!(got, want, "{what}");
                }
            }
        }
    }
}

/// `kernels::softmax_rows` on AMD's fragments (see `lanes`).
#[test]
fn row_reductions_and_broadcasts_agree_with_the_interpreter() {
    lanes::softmax_rows_agrees_with_the_interpreter(AMD, 7);
}

/// `kernels::mask_kinds` on AMD's fragments (see `lanes`).
#[test]
fn masks_agree_with_the_interpreter_in_both_layouts() {
    lanes::mask_kinds_agree_with_the_interpreter(AMD, 13);
}
