//! Atomics of register vectors into global views (`atomic_add(g.chunk(..), v)` and the
//! returning `atomic_max`) on the interpreter and the PTX emulator against plain Rust: per-row
//! partial sums of many blocks into one vector, per-column sums of vectors loaded straight from
//! memory, and a row maximum whose old values every lane holding a copy receives; view lengths
//! that leave most of a vector outside (1, 17, 130), so its lanes there are masked.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::Rng;
use tilekit::Device;

/// Unit roundoff of f32.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// Block (j, i) adds the row sums of tile (i, j) of `x` into chunk i of `sums`.
#[tilekit::kernel]
fn row_partial_sums(x: Gl<f32, 2>, sums: GlMut<f32, 1>) {
    let (j, i) = (block_idx_x(), block_idx_y());
    let t: Rt<f32, 32, 32> = load(x.tile(i, j));
    atomic_add(sums.chunk(i), row_sum(t));
}

/// Block (k, r) adds chunk k of row r of `x` into chunk k of `sums`.
#[tilekit::kernel]
fn col_sums(x: Gl<f32, 2>, sums: GlMut<f32, 1>) {
    let (k, r) = (block_idx_x(), block_idx_y());
    let v: Rv<f32, 64, Rows> = load(x.chunk(r, k));
    atomic_add(sums.chunk(k), v);
}

/// Block (j, i) raises chunk i of `m` to the row maxima of tile (i, j) of `x`; every element
/// of tile (i, j) of `olds` receives its row's old value.
#[tilekit::kernel]
fn row_max_olds(x: Gl<f32, 2>, m: GlMut<f32, 1>, olds: GlMut<f32, 2>) {
    let (j, i) = (block_idx_x(), block_idx_y());
    let t: Rt<f32, 16, 16> = load(x.tile(i, j));
    let old = atomic_max(m.chunk(i), row_max(t));
    let z: Rt<f32, 16, 16> = zeros();
    store(olds.tile(i, j), add_row(z, old));
}

/// `init + Σ terms` in f64 and a bound on the f32 error of summing them in any order.
fn sum_and_bound(init: f64, terms: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut s, mut mag, mut n) = (init, init.abs(), 1.0);
    for t in terms {
        s += t;
        mag += t.abs();
        n += 1.0;
    }
    (s, n * U * mag)
}

fn row_sums_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    for (m, n) in [(1usize, 1usize), (17, 40), (130, 77), (33, 17)] {
        let x = rng.tensor(F32, &[m, n], -1.0, 1.0);
        let init = rng.tensor(F32, &[m], -4.0, 4.0);
        let mut sums = init.clone();
        let grid = (n.div_ceil(32) as u32, m.div_ceil(32) as u32);
        row_partial_sums::launch(device, grid, &x, &mut sums)
            .unwrap_or_else(|e| panic!("{what}, {m}x{n}: {e}"));
        let xv = x.to_vec();
        for r in 0..m {
            let base = init.get(&[r]).unwrap();
            let (want, bound) = sum_and_bound(base, xv[r * n..(r + 1) * n].iter().copied());
            let got = sums.get(&[r]).unwrap();
            assert!(
                (got - want).abs() <= bound,
                "row {r} of {m}x{n}: {got} vs {want} (bound {bound}): {what}"
            );
        }
    }
}

fn col_sums_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    for (rows, len) in [(3usize, 1usize), (5, 17), (4, 130), (1, 64)] {
        let x = rng.tensor(F32, &[rows, len], -1.0, 1.0);
        let init = rng.tensor(F32, &[len], -4.0, 4.0);
        let mut sums = init.clone();
        let grid = (len.div_ceil(64) as u32, rows as u32);
        col_sums::launch(device, grid, &x, &mut sums)
            .unwrap_or_else(|e| panic!("{what}, {rows}x{len}: {e}"));
        let xv = x.to_vec();
        for c in 0..len {
            let base = init.get(&[c]).unwrap();
            let (want, bound) = sum_and_bound(base, (0..rows).map(|r| xv[r * len + c]));
            let got = sums.get(&[c]).unwrap();
            assert!(
                (got - want).abs() <= bound,
                "column {c} of {rows}x{len}: {got} vs {want} (bound {bound}): {what}"
            );
        }
    }
}

fn row_max_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    for (m, n) in [(1usize, 16usize), (17, 40), (130, 33)] {
        let x = rng.tensor(F32, &[m, n], -100.0, 100.0);
        let init = rng.tensor(F32, &[m], -90.0, 90.0);
        let mut mx = init.clone();
        let (bx, by) = (n.div_ceil(16), m.div_ceil(16));
        let mut olds = HostTensor::full(F32, &[m, 16 * bx], 12345.0);
        row_max_olds::launch(device, (bx as u32, by as u32), &x, &mut mx, &mut olds)
            .unwrap_or_else(|e| panic!("{what}, {m}x{n}: {e}"));
        let (xv, ov) = (x.to_vec(), olds.to_vec());
        for r in 0..m {
            let base = init.get(&[r]).unwrap();
            // Block j's row maximum over its 16 columns (columns outside the view read 0).
            let block_max = |j: usize| {
                (16 * j..16 * j + 16)
                    .map(|c| if c < n { xv[r * n + c] } else { 0.0 })
                    .fold(f64::NEG_INFINITY, f64::max)
            };
            let want = (0..bx).map(block_max).fold(base, f64::max);
            assert_eq!(mx.get(&[r]), Some(want), "max of row {r}: {what}");
            let mut seen = Vec::new();
            for j in 0..bx {
                let row = &ov[r * 16 * bx + 16 * j..r * 16 * bx + 16 * j + 16];
                assert!(
                    row.iter().all(|&o| o == row[0]),
                    "row {r}, block {j}: the lanes disagree on the old value {row:?}: {what}"
                );
                let o = row[0];
                let from_other = (0..bx).any(|k| k != j && block_max(k) == o);
                assert!(
                    (o == base || from_other) && o <= want,
                    "old value {o} of row {r}, block {j}: {what}"
                );
                seen.push(o);
            }
            assert!(
                seen.contains(&base),
                "no block saw the initial {base} of row {r}: {what}"
            );
        }
    }
}

fn emu() -> Device {
    Device::emulator("sm_80").unwrap()
}

#[test]
fn row_partial_sums_of_many_blocks_match_f64_on_the_interpreter() {
    row_sums_on(&Device::Cpu);
}

#[test]
fn row_partial_sums_of_many_blocks_match_f64_on_the_sm_80_emulator() {
    row_sums_on(&emu());
}

#[test]
fn column_sums_of_loaded_vectors_match_f64_on_the_interpreter() {
    col_sums_on(&Device::Cpu);
}

#[test]
fn column_sums_of_loaded_vectors_match_f64_on_the_sm_80_emulator() {
    col_sums_on(&emu());
}

#[test]
fn every_copy_of_a_row_receives_its_old_maximum_on_the_interpreter() {
    row_max_on(&Device::Cpu);
}

#[test]
fn every_copy_of_a_row_receives_its_old_maximum_on_the_sm_80_emulator() {
    row_max_on(&emu());
}

#[test]
fn vector_atomics_compile_for_sm_90a_and_every_amd_target() {
    let kernels = [
        (row_partial_sums::module(), row_partial_sums::NAME),
        (col_sums::module(), col_sums::NAME),
        (row_max_olds::module(), row_max_olds::NAME),
    ];
    for (m, name) in kernels {
        let c = tilekit::codegen::compile(m, name, Target::Sm90a)
            .unwrap_or_else(|e| panic!("{name} sm_90a: {e}"));
        let ptx = c.ptx();
        assert!(
            (ptx.contains("red.") || ptx.contains("atom.")) && ptx.contains(".global."),
            "{name}"
        );
        for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
            let c =
                tilekit::codegen::compile(m, name, t).unwrap_or_else(|e| panic!("{name} {t}: {e}"));
            assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{name} {t}");
        }
    }
}
