//! Scans along rows and columns (inclusive and exclusive; sum, product, max, min; both tile
//! layouts; f32 and i32) on the interpreter and the PTX emulator against f64 prefixes written
//! here, and compiled for the AMD targets.
#![cfg(feature = "jit")]

use tilekit::codegen::Target;
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::Device;

const C: usize = 64;
/// f32 outputs of [`scans`], each a 16×C tile side by side.
const OUTS: usize = 6;

#[tilekit::kernel]
fn scans(x: Gl<f32, 2>, out: GlMut<f32, 2>, ints: GlMut<i32, 2>) {
    let t: Rt<f32, 16, C> = load(x.tile(0, 0));
    store(out.tile(0, 0), cumsum_rows(t));
    store(out.tile(0, 1), exscan_row(Red::Sum, t));
    store(out.tile(0, 2), scan_col(Red::Sum, t));
    store(out.tile(0, 3), exscan_col(Red::Max, t));
    store(out.tile(0, 4), scan_row(Red::Prod, t));
    let tc: Rt<f32, 16, C, Col> = load(x.tile(0, 0));
    store(out.tile(0, 5), scan_row(Red::Min, tc).relayout::<Row>());
    let rows: Rt<i32, 16, C> = iota_rows();
    let cols: Rt<i32, 16, C> = iota_cols();
    store(ints.tile(0, 0), exscan_row(Red::Sum, rows * 100 + cols));
}

/// The f64 prefix of output `k` at (r, c), and the sum of |terms| it combines (for the error
/// bound of an f32 accumulation).
fn expected(x: &[f64], k: usize, r: usize, c: usize) -> (f64, f64) {
    let at = |i: usize, j: usize| x[i * C + j];
    let row = |n: usize| (0..n).map(|j| at(r, j));
    let col = |n: usize| (0..n).map(|i| at(i, c));
    let abs = |v: Vec<f64>| v.iter().map(|z| z.abs()).sum::<f64>();
    match k {
        0 => (row(c + 1).sum(), abs(row(c + 1).collect())),
        1 => (row(c).sum(), abs(row(c).collect())),
        2 => (col(r + 1).sum(), abs(col(r + 1).collect())),
        3 => (col(r).fold(f64::NEG_INFINITY, f64::max), 0.0),
        4 => {
            let p: f64 = row(c + 1).product();
            (p, p.abs() * (c + 1) as f64)
        }
        _ => (row(c + 1).fold(f64::INFINITY, f64::min), 0.0),
    }
}

fn check_on(device: &Device) {
    let mut rng = Rng::fresh();
    let what = format!("{}, seed {}", device.name(), rng.seed);
    // Factors near 1 keep the 64-element products in range.
    let x = rng.tensor(F32, &[16, C], 0.5, 1.5);
    let mut out = HostTensor::full(F32, &[16, C * OUTS], 999.0);
    let mut ints = HostTensor::full(I32, &[16, C], 999.0);
    scans::launch(device, 1, &x, &mut out, &mut ints).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (xs, o, iv) = (x.to_vec(), out.to_vec(), ints.to_vec());
    for r in 0..16 {
        for c in 0..C {
            for k in 0..OUTS {
                let got = o[r * C * OUTS + k * C + c];
                let (want, scale) = expected(&xs, k, r, c);
                // f32 accumulation: one rounding per step, each at most 2⁻²⁴ of the terms so far.
                let tol = 1.2e-7 * (C as f64) * scale;
                assert!(
                    (got - want).abs() <= tol || got == want,
                    "output {k} at ({r}, {c}): got {got}, expected {want}: {what}"
                );
            }
            let want: i64 = (0..c as i64).map(|j| 100 * r as i64 + j).sum();
            assert_eq!(
                iv[r * C + c],
                want as f64,
                "i32 exscan at ({r}, {c}): {what}"
            );
        }
    }
}

#[test]
fn scans_agree_with_f64_on_the_interpreter() {
    check_on(&Device::Cpu);
}

#[test]
fn scans_agree_with_f64_on_the_sm_80_emulator() {
    check_on(&Device::emulator("sm_80").unwrap());
}

#[test]
fn scans_agree_with_f64_on_the_sm_90a_emulator() {
    check_on(&Device::emulator("sm_90a").unwrap());
}

#[test]
fn scans_compile_for_every_amd_target() {
    for t in [Target::Gfx90a, Target::Gfx942, Target::Gfx950] {
        let c = tilekit::codegen::compile(scans::module(), scans::NAME, t)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert!(c.code_object().is_some_and(|o| !o.is_empty()), "{t}");
    }
}
