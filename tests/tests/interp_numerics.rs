//! The interpreter's GPU numerics through the typed launcher
//! (`CpuOptions::numerics(Numerics::Approx)`): each approximate function stays within the error
//! bound `tilekit::ir::numeric` documents (the PTX ISA's) and flushes where the hardware does,
//! while the default mode is correctly rounded; and every library self-test's tolerance holds in
//! both modes.

use tilekit::device::CpuOptions;
use tilekit::dsl::*;
use tilekit::ir::interp::{HostTensor, Numerics};
use tilekit::ir::ScalarType::F32;
use tilekit::Device;
use tilekit_tests::random::TestRng;

/// `e = 2^x`, `t = tanh(x)` and `r = 1/√p`, one 16×16 tile per block.
#[tilekit::kernel(warps = 1)]
fn approx_fns(x: Gl<f32, 2>, p: Gl<f32, 2>, e: GlMut<f32, 2>, t: GlMut<f32, 2>, r: GlMut<f32, 2>) {
    let (i, j) = (block_idx_y(), block_idx_x());
    let xv: Rt<f32, 16, 16> = load(x.tile(i, j));
    let pv: Rt<f32, 16, 16> = load(p.tile(i, j));
    store(e.tile(i, j), xv.exp2());
    store(t.tile(i, j), xv.tanh());
    store(r.tile(i, j), pv.rsqrt());
}

/// The spacing of f32 values at `y` (a normal f32 magnitude).
fn ulp_f32(y: f64) -> f64 {
    2f64.powi(y.abs().log2().floor() as i32 - 23)
}

/// What one run gave: `(x, p, e, t, r)` as f64.
type Run = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

fn run(numerics: Numerics, x: &HostTensor, p: &HostTensor) -> Run {
    let device = Device::cpu_with(CpuOptions::default().numerics(numerics));
    let shape = x.shape().to_vec();
    let nan = || HostTensor::full(F32, &shape, f64::NAN);
    let (mut e, mut t, mut r) = (nan(), nan(), nan());
    let grid = [
        shape[1].div_ceil(16) as u32,
        shape[0].div_ceil(16) as u32,
        1,
    ];
    approx_fns::launch(&device, grid, x, p, &mut e, &mut t, &mut r).unwrap();
    (x.to_vec(), p.to_vec(), e.to_vec(), t.to_vec(), r.to_vec())
}

/// Inputs of `rows × cols`: x in ±20 with every 7th element in [-148, -127) (2^x is subnormal
/// in f32 there, which `ex2.approx.ftz` flushes to zero); p in [1e-3, 1e3) spread over binades.
fn inputs(rng: &mut TestRng, rows: usize, cols: usize) -> (HostTensor, HostTensor) {
    let n = rows * cols;
    let mut x = rng.uniform(n, -20.0, 20.0);
    let low = rng.uniform(n, -148.0, -127.0);
    for i in (0..n).step_by(7) {
        x[i] = low[i];
    }
    let p: Vec<f64> = rng
        .uniform(n, -3.0, 3.0)
        .iter()
        .map(|s| 10f64.powf(*s))
        .collect();
    (
        HostTensor::new(F32, &[rows, cols], &x).unwrap(),
        HostTensor::new(F32, &[rows, cols], &p).unwrap(),
    )
}

#[test]
fn approximate_functions_stay_within_their_documented_bounds_in_gpu_numerics() {
    let mut rng = TestRng::fresh();
    let seed = rng.seed;
    for (rows, cols) in [(16, 16), (37, 50)] {
        let (x, p) = inputs(&mut rng, rows, cols);
        let (xs, ps, e, t, r) = run(Numerics::Approx, &x, &p);
        let (mut e_moved, mut flushed) = (0, 0);
        for i in 0..xs.len() {
            let want = xs[i].exp2();
            let cr = f64::from(want as f32);
            if want < f64::from(f32::MIN_POSITIVE) {
                // `.ftz`: a subnormal result is a zero.
                assert_eq!(e[i], 0.0, "2^{} (seed {seed})", xs[i]);
                flushed += 1;
            } else {
                // ex2.approx: 2 ulp from the correctly rounded result.
                assert!(
                    (e[i] - cr).abs() <= 2.0 * ulp_f32(cr),
                    "2^{}: {} vs {cr} (seed {seed})",
                    xs[i],
                    e[i]
                );
                e_moved += usize::from(e[i] != cr);
            }
            // tanh.approx: relative 2^-11 (the f32 rounding of the result adds 2^-24).
            let th = xs[i].tanh();
            assert!(
                (t[i] - th).abs() <= (2f64.powi(-11) + 2f64.powi(-24)) * th.abs(),
                "tanh {}: {} vs {th} (seed {seed})",
                xs[i],
                t[i]
            );
            // rsqrt.approx: relative 2^-22.9.
            let rs = 1.0 / ps[i].sqrt();
            assert!(
                (r[i] - rs).abs() <= 2f64.powf(-22.9) * rs,
                "rsqrt {}: {} vs {rs} (seed {seed})",
                ps[i],
                r[i]
            );
        }
        assert!(flushed > 0, "no subnormal result was tried");
        // The mode reaches the launch: some results are not the correctly rounded ones.
        assert!(
            e_moved > 0,
            "GPU numerics gave every 2^x correctly rounded (seed {seed})"
        );
    }
}

#[test]
fn the_default_numerics_are_correctly_rounded() {
    let mut rng = TestRng::fresh();
    let (x, p) = inputs(&mut rng, 37, 50);
    let (xs, ps, e, t, r) = run(Numerics::Exact, &x, &p);
    for i in 0..xs.len() {
        for (what, got, want) in [
            ("2^x", e[i], xs[i].exp2()),
            ("tanh", t[i], xs[i].tanh()),
            ("rsqrt", r[i], 1.0 / ps[i].sqrt()),
        ] {
            // Half an f32 ulp, subnormal results included (their spacing is 2^-149).
            let half = 0.5 * ulp_f32(want).max(2f64.powi(-149));
            assert!(
                (got - want).abs() <= half,
                "{what} of x {} / p {}: {got} vs {want} (seed {})",
                xs[i],
                ps[i],
                rng.seed
            );
        }
    }
}

#[test]
fn every_library_self_test_passes_with_gpu_numerics() {
    let device = Device::cpu_with(CpuOptions::default().numerics(Numerics::Approx));
    let mut ran = 0;
    for k in crate::library_kernels_and(file!()) {
        if let Some(selftest) = k.selftest {
            selftest(&device).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            ran += 1;
        }
    }
    assert!(ran >= 6, "only {ran} self-tests ran");
}
