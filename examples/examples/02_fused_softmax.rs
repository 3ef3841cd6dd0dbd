//! 02 · Fused softmax: `y[r][c] = exp(x[r][c] − max_r) / Σ_k exp(x[r][k] − max_r)` in one pass
//! over registers, for rows of up to 64 columns.
//!
//! Each warp owns 16 rows and holds them in one 16×64 register tile: the row max, the
//! exponentials, their row sum and the division never leave registers, so x is read once and y
//! written once (an unfused version would write and re-read the intermediate three times).
//! New here: register vectors (`Rv`, one value per row) from row reductions, row broadcasts
//! (`sub_row`, `div_row`), `exp2`, and masking the columns past the end (`mask_cols` to −∞,
//! which adds nothing to the sum). `tilekit::kernels::softmax` is the full version for any width.
//!
//! ```sh
//! cargo run -p tilekit-examples --example 02_fused_softmax
//! ```

use anyhow::{ensure, Result};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::Device;

/// Row softmax of `x` (`cols ≤ 64`), 16 rows per warp, `WARPS` warps per block.
#[tilekit::kernel(warps = WARPS as u32, variants(<4>))]
fn softmax64<const WARPS: usize>(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let row_tile = block_idx_x() * WARPS as i32 + warp_idx();
    let t: Rt<f32, 16, 64> = load(x.tile(row_tile, 0));
    // Columns past the end are -inf: exp(-inf) = 0 adds nothing to the row sums.
    let t = mask_cols(t, 0, x.cols(), f64::NEG_INFINITY);
    let m = row_max(t);
    // exp(v) = exp2(v · log2 e); subtracting the row max first keeps every exponent ≤ 0.
    let e = (sub_row(t, m) * std::f32::consts::LOG2_E).exp2();
    store(y.tile(row_tile, 0), div_row(e, row_sum(e)));
}

/// Row softmax in f64.
fn reference(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            row.iter().map(move |v| (v - max).exp() / sum)
        })
        .collect()
}

fn main() -> Result<()> {
    let device = if cfg!(feature = "jit") {
        Device::best()
    } else {
        Device::Cpu
    };
    let mut rng = Rng::fresh();
    for (rows, cols) in [(64, 64), (100, 50), (7, 3)] {
        let x = rng.tensor(F32, &[rows, cols], -8.0, 8.0);
        let mut y = HostTensor::new(F32, &[rows, cols], &vec![f64::NAN; rows * cols])?;
        let grid = [rows.div_ceil(16 * 4) as u32, 1, 1];
        softmax64::<4>::launch(&device, grid, &x, &mut y)?;
        let err = normalized_max_error(&y.to_vec(), &reference(&x.to_vec(), cols));
        println!("{rows}×{cols} on {}: max error {err:.1e}", device.name());
        ensure!(
            err < 1e-5,
            "{rows}×{cols}: error {err:.2e} (seed {})",
            rng.seed
        );
    }
    println!("02_fused_softmax: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
