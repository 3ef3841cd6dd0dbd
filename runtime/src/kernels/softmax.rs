//! Row softmax `Y[i][j] = exp(X[i][j]) / Σ_k exp(X[i][k])`, X `[rows, cols]` of dtype `I`, Y f32.
//!
//! Each warp owns `R` rows (a block has `WARPS` warps) and walks the columns in tiles of `C`,
//! twice: first the online statistics (a running row max `m` and a running sum `l` of
//! `exp(x − m)`, rescaled by `exp(m − m')` when the max grows), then the output
//! `exp(x − m) / l`. Every exponential is one `exp2((x − m)·log2 e)`: the scale comes after the
//! subtraction, so inputs beyond ±f32::MAX / log2 e (which would scale to ±inf) stay exact.
//! Columns past the end of the last tile are `-inf` (`mask_cols`), so they add nothing; rows
//! past the end are masked by the store.
//!
//! `-inf` inputs behave as in `torch.softmax`: they get probability 0, and a row that is `-inf`
//! everywhere is NaN everywhere. While every column seen so far is `-inf` the running max is
//! `-inf` too, and `exp(x − m)` would be `exp(-inf − -inf)` = NaN, poisoning the sum for good: the
//! exponentials subtract [`safe_max`] instead, which is the max whenever that is finite.

use crate::dsl::*;
use crate::ir::interp::HostTensor;
use crate::ir::ScalarType;
use crate::kernels::check::{large, poisoned, record, tiles, Rng};
use crate::Device;

/// Column tile `ct` of this warp's rows in f32, `-inf` past `n_cols`.
#[crate::func]
fn scores<I: RegDtype, const R: usize, const C: usize>(
    x: Gl<I, 2>,
    row_tile: Scalar<i32>,
    ct: Scalar<i32>,
    n_cols: Scalar<i32>,
) -> Rt<f32, R, C> {
    let t: Rt<I, R, C> = load(x.tile(row_tile, ct));
    mask_cols(t.cast::<f32>(), ct * C as i32, n_cols, f64::NEG_INFINITY)
}

/// What an online softmax subtracts before exponentiating, given the running max `m` of the
/// scores seen so far: `m` itself when it is finite, and the lowest finite f32 when it is `-inf`
/// (no finite score yet). Every finite f32 is at least `f32::MIN`, so the max with it changes no
/// finite `m`; for `m = -inf` it makes `exp(-inf − safe)` = 0 and `exp(m_old − safe)` = 0 instead
/// of `exp(-inf − -inf)` = NaN, so a tile whose scores are all `-inf` adds nothing to the sum.
/// (An elementwise select would need a vector condition, which the IR does not have.)
#[crate::func]
pub fn safe_max<const R: usize>(m: Rv<f32, R>) -> Rv<f32, R> {
    m.max(f32::MIN)
}

/// See the module documentation. Grid: `[⌈rows / (WARPS·R)⌉, 1, 1]`.
#[crate::kernel(
    warps = WARPS as u32,
    variants(<f32, 16, 64, 4>, <bf16, 16, 64, 4>),
    selftest = selftest,
    shapes(x: [ROWS, COLS], y: [ROWS, COLS], COLS >= 1),
    grid = [ceil_div(ROWS, WARPS * R), 1, 1]
)]
pub fn softmax_rows<I: RegDtype, const R: usize, const C: usize, const WARPS: usize>(
    x: Gl<I, 2>,
    y: GlMut<f32, 2>,
) {
    let row_tile = block_idx_x() * WARPS as i32 + warp_idx();
    let n_cols = x.cols();
    let col_tiles = ceil_div(n_cols, C);
    let log2e = std::f32::consts::LOG2_E;

    let mut m: Rv<f32, R> = fill(f64::NEG_INFINITY);
    let mut l: Rv<f32, R> = zeros();
    for ct in range(0, col_tiles) {
        let t = scores::<I, R, C>(x, row_tile, ct, n_cols);
        let m_new = m.max(row_max(t));
        let shift = safe_max::<R>(m_new);
        l = l * ((m - shift) * log2e).exp2() + row_sum((sub_row(t, shift) * log2e).exp2());
        m = m_new;
    }
    // A row that is `-inf` everywhere keeps m = -inf and l = 0: its outputs are
    // exp(-inf − -inf) / 0 = NaN, as torch gives; every other row has a finite m.
    for ct in range(0, col_tiles) {
        let t = scores::<I, R, C>(x, row_tile, ct, n_cols);
        store(
            y.tile(row_tile, ct),
            div_row((sub_row(t, m) * log2e).exp2(), l),
        );
    }
}

/// The launch grid for `rows` rows with `warps` warps of `r` rows per block.
pub fn grid(rows: usize, r: usize, warps: usize) -> [u32; 3] {
    [tiles(rows, r * warps), 1, 1]
}

/// Row softmax in f64 (shifted by the row max), X row-major `rows × cols`. As `torch.softmax`:
/// `-inf` gets probability 0, and a row of `-inf` only is NaN (`-inf − -inf`).
pub fn reference(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * cols);
    for row in x.chunks(cols).take(rows) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        y.extend(row.iter().map(|v| (v - max).exp() / sum));
    }
    y
}

/// Row `r` of a `rows × cols` input with the values an online softmax gets wrong most easily,
/// by `r mod 5`: `-inf` in the first one or two column tiles of 64 and finite after them (at
/// least the last column); `-inf` everywhere (NaN out); `-inf` sprinkled among values in ±4;
/// every value -3·10³⁸ (uniform out; scaled by log2 e before the subtraction it would be
/// `-inf`); values in ±4.
pub fn hard_row(rng: &mut Rng, r: usize, cols: usize) -> Vec<f64> {
    let mut row: Vec<f64> = (0..cols).map(|_| rng.uniform(-4.0, 4.0)).collect();
    match r % 5 {
        0 => {
            let masked = (64 * (1 + r / 5 % 2)).min(cols.saturating_sub(1));
            row[..masked].fill(f64::NEG_INFINITY);
        }
        1 => row.fill(f64::NEG_INFINITY),
        2 => row
            .iter_mut()
            .filter(|_| rng.uniform(0.0, 1.0) < 0.4)
            .for_each(|x| *x = f64::NEG_INFINITY),
        3 => row.fill(-3e38),
        _ => {}
    }
    row
}

fn selftest(device: &Device) -> Result<String, String> {
    let mut rng = Rng::fresh();
    let mut shapes = vec![(64, 64), (37, 150)];
    if large(device) {
        shapes.extend([(1000, 1000), (4096, 77)]);
    }
    let mut runs = 0;
    for (rows, cols) in shapes {
        for dtype in [ScalarType::F32, ScalarType::BF16] {
            for hard in [false, true] {
                let x = if hard {
                    let values: Vec<f64> = (0..rows)
                        .flat_map(|r| hard_row(&mut rng, r, cols))
                        .collect();
                    HostTensor::new(dtype, &[rows, cols], &values)
                        .map_err(|e| format!("{rows}×{cols} {dtype}: {e}"))?
                } else {
                    rng.tensor(dtype, &[rows, cols], -4.0, 4.0)
                };
                let mut y = poisoned(ScalarType::F32, &[rows, cols]);
                let g = grid(rows, 16, 4);
                let r = match dtype {
                    ScalarType::F32 => {
                        softmax_rows::<f32, 16, 64, 4>::launch(device, g, &x, &mut y)
                    }
                    _ => softmax_rows::<bf16, 16, 64, 4>::launch(device, g, &x, &mut y),
                };
                let case = format!(
                    "{rows}×{cols} {dtype}{}",
                    if hard { " with -inf and ±3e38" } else { "" }
                );
                r.map_err(|e| format!("{case}: {e} (seed {})", rng.seed))?;
                let want = reference(&x.to_vec(), rows, cols);
                let err = record(case.clone(), &y.to_vec(), &want, 1e-5);
                if err > 1e-5 {
                    return Err(format!("{case}: error {err:.2e} (seed {})", rng.seed));
                }
                runs += 1;
            }
        }
    }
    Ok(format!(
        "{runs} runs against the f64 reference, half of them with rows of -inf and ±3e38"
    ))
}
