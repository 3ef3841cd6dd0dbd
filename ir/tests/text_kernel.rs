//! A kernel written directly in the text form, parsed, verified and run on the interpreter
//! against an f64 reference: RMS normalization of each row, `y = x / sqrt(mean(x²) + eps) · w`.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use tilekit_ir::interp::{self, Arg, HostTensor};
use tilekit_ir::ScalarType::F32;
use tilekit_ir::{parse_module, print_module, verify};

/// One warp per 16 rows; rows past the end and columns past `cols` (at most 64) are masked: the
/// padded zeros add nothing to the sum of squares, and the mean divides by the real column count.
const RMSNORM: &str = "
// y[r][c] = x[r][c] / sqrt(mean_c(x[r][c]^2) + eps) * w[c]
kernel @rmsnorm(%x: gl<f32, 2>, %w: gl<f32, 1>, %y: gl<f32, 2, mut>, %eps: f32) warps(1) {
  %row = block_idx.x () : i32
  %zero = const[0] () : i32
  %t = load (%x, %row, %zero) : rt<f32, 16x64, row>
  %sq = map.mul (%t, %t) : rt<f32, 16x64, row>
  %ss = reduce_row.sum (%sq) : rv<f32, 16, rows>
  %n = dim[1] (%x) : i32
  %nf = convert (%n) : f32
  %ms = map.div (%ss, %nf) : rv<f32, 16, rows>
  %ms_eps = map.add (%ms, %eps) : rv<f32, 16, rows>
  %inv = map.rsqrt (%ms_eps) : rv<f32, 16, rows>
  %normed = bcast_row.mul (%t, %inv) : rt<f32, 16x64, row>
  %wv = load (%w, %zero) : rv<f32, 64, cols>
  %out = bcast_col.mul (%normed, %wv) : rt<f32, 16x64, row>
  store (%y, %out, %row, %zero)
  return ()
}
";

fn reference(x: &[f64], w: &[f64], rows: usize, cols: usize, eps: f64) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mean_sq = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        y.extend(row.iter().zip(w).map(|(v, wc)| v * inv * wc));
    }
    y
}

#[test]
fn rmsnorm_written_in_text_matches_the_f64_reference() {
    let module = parse_module(RMSNORM).expect("the kernel parses");
    verify(&module).expect("the kernel verifies");
    let printed = print_module(&module);
    assert_eq!(
        print_module(&parse_module(&printed).expect("printed text parses")),
        printed
    );

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    for (rows, cols) in [(16, 64), (37, 40), (5, 17), (100, 64)] {
        let x: Vec<f64> = (0..rows * cols).map(|_| rng.gen_range(-3.0..3.0)).collect();
        let w: Vec<f64> = (0..cols).map(|_| rng.gen_range(0.5..1.5)).collect();
        let eps = 1e-5;
        let xt = HostTensor::new(F32, &[rows, cols], &x).unwrap();
        let wt = HostTensor::new(F32, &[cols], &w).unwrap();
        let want = reference(&xt.to_vec(), &wt.to_vec(), rows, cols, eps);
        let mut args = vec![
            Arg::Tensor(xt),
            Arg::Tensor(wt),
            Arg::Tensor(HostTensor::full(F32, &[rows, cols], f64::NAN)),
            Arg::f32(eps as f32),
        ];
        let grid = [rows.div_ceil(16) as u32, 1, 1];
        interp::run(&module, "rmsnorm", grid, &mut args).unwrap();
        let got = args[2].tensor().unwrap().to_vec();
        // f32 arithmetic on values of magnitude ≤ 3·1.5/rms: a few f32 ulps of relative error.
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
        assert!(
            err <= 1e-5 * scale,
            "{rows}×{cols}: max error {err:e} (scale {scale}), seed {seed}"
        );
    }
}
