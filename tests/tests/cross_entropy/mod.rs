//! Cross-entropy with an ignore index, written with compare and select: no one-hot arithmetic.
//! Shared by the interpreter test (`tests/tests/dsl_cross_entropy.rs`) and the emulator test
//! (`runtime/tests/dsl_compare_select.rs`).

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;

/// Columns per tile of the vocabulary loop.
pub const COLS: usize = 64;

/// `loss[r] = logsumexp(logits[r, :]) − logits[r, targets[r]]`, or 0 where
/// `targets[r] == ignore`. One warp per 16 rows; the vocabulary is walked in tiles of
/// [`COLS`] columns with an online log-sum-exp. The target's logit is picked by
/// comparing each tile's column indices with the row's target (`cols − target == 0`) and
/// selecting, and the ignored rows are dropped by a final select, so whatever they hold (NaN
/// included) never reaches their loss.
#[tilekit::kernel]
pub fn cross_entropy(
    logits: Gl<f32, 2>,
    targets: Gl<i32, 1>,
    ignore: Scalar<i32>,
    loss: GlMut<f32, 1>,
) {
    let m = block_idx_x();
    let vocab = logits.cols();
    let target: Rv<i32, 16> = load(targets.chunk(m));
    let mut run_max: Rv<f32, 16> = fill(f64::NEG_INFINITY);
    let mut run_sum: Rv<f32, 16> = zeros();
    let mut picked: Rv<f32, 16> = zeros();
    for k in range(0, ceil_div(vocab, COLS)) {
        let c0 = k * COLS as i32;
        let t: Rt<f32, 16, COLS> = load(logits.tile(m, k));
        let t = mask_cols(t, c0, vocab, f64::NEG_INFINITY);
        let cols: Rt<i32, 16, COLS> = iota_cols();
        let is_target = sub_row(cols + c0, target).eq(0);
        picked += row_sum(select(is_target, t, 0.0));
        let new_max = run_max.max(row_max(t));
        run_sum = run_sum * (run_max - new_max).exp() + row_sum(sub_row(t, new_max).exp());
        run_max = new_max;
    }
    let lse = run_max + run_sum.log();
    store(loss.chunk(m), select(target.ne(ignore), lse - picked, 0.0));
}

/// The f64 reference: per row, the log-sum-exp minus the target's logit; 0 for ignored rows.
pub fn reference(logits: &HostTensor, targets: &[i64], ignore: i64) -> Vec<f64> {
    let x = logits.to_vec();
    let v = logits.shape()[1];
    targets
        .iter()
        .enumerate()
        .map(|(r, &t)| {
            if t == ignore {
                return 0.0;
            }
            let row = &x[r * v..(r + 1) * v];
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|&z| (z - max).exp()).sum::<f64>().ln();
            lse - row[t as usize]
        })
        .collect()
}

/// The same loss with the target's logit gathered (`logits[r, targets[r]]`, the `gather` op)
/// instead of picked by compare and select in the vocabulary loop; an ignored row's index is
/// outside the view and gathers 0, and the final select drops the row.
#[tilekit::kernel]
pub fn cross_entropy_gather(
    logits: Gl<f32, 2>,
    targets: Gl<i32, 1>,
    ignore: Scalar<i32>,
    loss: GlMut<f32, 1>,
) {
    let m = block_idx_x();
    let vocab = logits.cols();
    let target: Rv<i32, 16> = load(targets.chunk(m));
    let rows: Rv<i32, 16> = iota_rows();
    let picked = gather(logits, (rows + m * 16, target));
    let mut run_max: Rv<f32, 16> = fill(f64::NEG_INFINITY);
    let mut run_sum: Rv<f32, 16> = zeros();
    for k in range(0, ceil_div(vocab, COLS)) {
        let t: Rt<f32, 16, COLS> = load(logits.tile(m, k));
        let t = mask_cols(t, k * COLS as i32, vocab, f64::NEG_INFINITY);
        let new_max = run_max.max(row_max(t));
        run_sum = run_sum * (run_max - new_max).exp() + row_sum(sub_row(t, new_max).exp());
        run_max = new_max;
    }
    let lse = run_max + run_sum.log();
    store(loss.chunk(m), select(target.ne(ignore), lse - picked, 0.0));
}
