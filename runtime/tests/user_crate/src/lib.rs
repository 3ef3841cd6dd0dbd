//! A crate of a tilekit user's own kernels, built outside the tilekit workspace by
//! runtime/tests/user_crate.rs (and compiled into runtime/tests/user_kernels.rs as a module):
//! the `tilekit` command over them comes from one line (src/bin/tilekit.rs), and their
//! generated code is snapshot-tested with `tilekit::testing` (tests/user_kernels.rs).

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType;
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::Device;

/// Row r of `y` gets s·Σ_k x[r][k] in its first 16·TILES columns, for 16-row blocks (grid:
/// one block per 16 rows); `x` is read in dtype `I` and summed in f32.
#[tilekit::kernel(warps = 1, variants(<f32, 1>, <bf16, 2>), selftest = selftest)]
pub fn row_scale<I: RegDtype, const TILES: usize>(x: Gl<I, 2>, s: Scalar<f32>, y: GlMut<f32, 2>) {
    let row = block_idx_x();
    let mut sum: Rv<f32, 16> = zeros();
    for k in range(0, (x.cols() + 15) / 16) {
        let t: Rt<I, 16, 16> = load(x.tile(row, k));
        sum += row_sum(t.cast::<f32>());
    }
    let sum = sum * s;
    for j in 0..TILES {
        let out: Rt<f32, 16, 16> = add_row(zeros(), sum);
        store(y.tile(row, j), out);
    }
}

/// `s·Σ_k x[r][k]` in f64, for each row of the row-major `rows × cols` `x`.
pub fn reference(x: &[f64], cols: usize, s: f64) -> Vec<f64> {
    x.chunks(cols)
        .map(|row| row.iter().sum::<f64>() * s)
        .collect()
}

/// Both variants on two shapes (one not a multiple of 16) against [`reference`].
pub fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut runs = 0;
    for (rows, cols) in [(32, 48), (37, 21)] {
        for (dtype, tiles) in [(ScalarType::F32, 1), (ScalarType::BF16, 2)] {
            let x = rng.tensor(dtype, &[rows, cols], -2.0, 2.0);
            let s = rng.uniform(0.5, 1.5);
            // Every output starts as NaN, so a column the kernel fails to write shows.
            let mut y = HostTensor::new(
                ScalarType::F32,
                &[rows, 16 * tiles],
                &vec![f64::NAN; rows * 16 * tiles],
            )
            .map_err(|e| e.to_string())?;
            let grid = [rows.div_ceil(16) as u32, 1, 1];
            let launched = if tiles == 1 {
                row_scale::<f32, 1>::launch(device, grid, &x, (s as f32).into(), &mut y)
            } else {
                row_scale::<bf16, 2>::launch(device, grid, &x, (s as f32).into(), &mut y)
            };
            let case = format!("{rows}×{cols} {dtype}, seed {}", rng.seed);
            launched.map_err(|e| format!("{case}: {e}"))?;
            let sums = reference(&x.to_vec(), cols, f64::from(s as f32));
            let want: Vec<f64> = sums
                .iter()
                .flat_map(|v| std::iter::repeat_n(*v, 16 * tiles))
                .collect();
            let err = normalized_max_error(&y.to_vec(), &want);
            if err > 1e-5 {
                return Err(format!("{case}: error {err:.2e}"));
            }
            runs += 1;
        }
    }
    Ok(format!("{runs} runs against the f64 reference"))
}
