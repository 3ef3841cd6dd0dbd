//! Row softmax `Y[i][j] = exp(X[i][j]) / Σ_k exp(X[i][k])`, X `[rows, cols]` of dtype `I`, Y f32.
//!
//! Each warp owns `R` rows (a block has `WARPS` warps) and walks the columns in tiles of `C`,
//! twice: first the online statistics (a running row max `m` and a running sum `l` of
//! `exp2(t − m)`, rescaled by `exp2(m − m')` when the max grows; scores are kept in the exp2
//! domain, `t = x·log2(e)`), then the output `exp2(t − m) / l`. Columns past the end of the last
//! tile are `-inf` (`mask_cols`), so they add nothing; rows past the end are masked by the store.

use crate::dsl::*;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
use crate::launch::{shape_of, Device, LaunchArg};

/// The scores of column tile `ct` of this warp's rows, in the exp2 domain, `-inf` past `n_cols`.
#[crate::func]
fn scores<I: RegDtype, const R: usize, const C: usize>(
    x: Gl<I, 2>,
    row_tile: Scalar<i32>,
    ct: Scalar<i32>,
    n_cols: Scalar<i32>,
) -> Rt<f32, R, C> {
    let t: Rt<I, R, C> = load(x.tile(row_tile, ct));
    let t = t.cast::<f32>() * std::f32::consts::LOG2_E;
    mask_cols(t, ct * C as i32, n_cols, f64::NEG_INFINITY)
}

/// See the module documentation. Grid: `[⌈rows / (WARPS·R)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 16, 64, 4>, <bf16, 16, 64, 4>),
    selftest = selftest,
    check = shapes
)]
pub fn softmax_rows<I: RegDtype, const R: usize, const C: usize, const WARPS: usize>(
    x: Gl<I, 2>,
    y: GlMut<f32, 2>,
) {
    let row_tile = block_idx_x() * WARPS as i32 + warp_idx();
    let n_cols = x.cols();
    let col_tiles = (n_cols + (C as i32 - 1)) / C as i32;

    let mut m: Rv<f32, R> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, R> = zeros();
    for ct in range(0, col_tiles) {
        let t = scores::<I, R, C>(x, row_tile, ct, n_cols);
        let m_new = m.max(row_max(t));
        l = l * (m - m_new).exp2() + row_sum(sub_row(t, m_new).exp2());
        m = m_new;
    }
    for ct in range(0, col_tiles) {
        let t = scores::<I, R, C>(x, row_tile, ct, n_cols);
        store(y.tile(row_tile, ct), div_row(sub_row(t, m).exp2(), l));
    }
}

/// X and Y of one shape with at least one column.
pub fn shapes(args: &[LaunchArg]) -> Result<(), String> {
    let (x, y) = (shape_of(args, 0), shape_of(args, 1));
    if x != y || x[1] == 0 {
        return Err(format!(
            "x {x:?} and y {y:?} must have one shape with at least one column"
        ));
    }
    Ok(())
}

/// The launch grid for `rows` rows with `warps` warps of `r` rows per block.
pub fn grid(rows: usize, r: usize, warps: usize) -> [u32; 3] {
    [tiles(rows, r * warps), 1, 1]
}

/// Row softmax in f64 (shifted by the row max), X row-major `rows × cols`.
pub fn reference(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * cols);
    for row in x.chunks(cols).take(rows) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        y.extend(row.iter().map(|v| (v - max).exp() / sum));
    }
    y
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(64, 64), (37, 150)];
    if large(device) {
        shapes.extend([(1000, 1000), (4096, 77)]);
    }
    for (rows, cols) in shapes {
        for dtype in [ScalarType::F32, ScalarType::BF16] {
            let x = rng.tensor(dtype, &[rows, cols], -4.0, 4.0);
            let mut y = poisoned(ScalarType::F32, &[rows, cols]);
            let g = grid(rows, 16, 4);
            let r = match dtype {
                ScalarType::F32 => softmax_rows::<f32, 16, 64, 4>::launch(device, g, &x, &mut y),
                _ => softmax_rows::<bf16, 16, 64, 4>::launch(device, g, &x, &mut y),
            };
            r.map_err(|e| format!("{rows}×{cols} {dtype}: {e} (seed {})", rng.seed))?;
            let want = reference(&x.to_vec(), rows, cols);
            let err = record(format!("{rows}×{cols} {dtype}"), &y.to_vec(), &want, 1e-5);
            if err > 1e-5 {
                return Err(format!(
                    "{rows}×{cols} {dtype}: error {err:.2e} (seed {})",
                    rng.seed
                ));
            }
        }
    }
    Ok("4 runs against the f64 reference".into())
}
