//! 06 · Cross-entropy over a large vocabulary, with an ignore index: per row,
//! `loss = logsumexp(logits) − logits[target]`, and 0 where `target == ignore`.
//!
//! Each block owns 16 rows and streams the vocabulary through one 16×64 tile at a time,
//! keeping per row a running maximum and a running sum of exponentials (the online
//! logsumexp of tutorial 05, without the matrix product), and picking out the target's logit
//! as it passes: `cols.eq(target)` compares every column index of the tile with the row's
//! target and gives a mask tile, and `select(mask, t, 0.0)` keeps the logit there and zero
//! elsewhere, so a row sum yields it. At the end a second `select` writes 0 for ignored rows —
//! so a NaN in an ignored row's logits never reaches its loss (arithmetic such as
//! `loss · (target != ignore)` would give `NaN · 0 = NaN`).
//!
//! New here: comparisons giving masks (`eq`, `ne`, `lt`, …), `select`, integer tiles
//! (`iota_cols`), integer vectors loaded from memory (the targets), and a loop whose trip count
//! comes from a view's shape at run time. `gather` would read the target logits directly instead
//! (one load per row); the compare-and-select form shows the masks.
//!
//! ```sh
//! cargo run -p tilekit-examples --example 06_cross_entropy
//! ```

use anyhow::{ensure, Result};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::kernels::check::Rng;
use tilekit::Device;

const COLS: usize = 64;

/// Loss per row of `logits` (`[rows, vocab]`), 16 rows per block of one warp.
#[tilekit::kernel(
    shapes(logits: [ROWS, V], targets: [ROWS], loss: [ROWS], V >= 1),
    grid = [ceil_div(ROWS, 16), 1, 1]
)]
fn cross_entropy(
    logits: Gl<f32, 2>,
    targets: Gl<i32, 1>,
    ignore: Scalar<i32>,
    loss: GlMut<f32, 1>,
) {
    let rows = block_idx_x();
    let vocab = logits.cols();
    let target: Rv<i32, 16> = load(targets.chunk(rows));
    let mut run_max: Rv<f32, 16> = fill(f64::NEG_INFINITY);
    let mut run_sum: Rv<f32, 16> = zeros();
    let mut picked: Rv<f32, 16> = zeros();
    for k in range(0, ceil_div(vocab, COLS)) {
        let c0 = k * COLS as i32;
        let t: Rt<f32, 16, COLS> = load(logits.tile(rows, k));
        // Columns past the vocabulary: −∞ adds nothing to the sum and never is the max.
        let t = mask_cols(t, c0, vocab, f64::NEG_INFINITY);
        let cols: Rt<i32, 16, COLS> = iota_cols();
        let is_target = sub_row(cols + c0, target).eq(0);
        picked += row_sum(select(is_target, t, 0.0));
        let new_max = run_max.max(row_max(t));
        run_sum = run_sum * (run_max - new_max).exp() + row_sum(sub_row(t, new_max).exp());
        run_max = new_max;
    }
    let lse = run_max + run_sum.log();
    store(
        loss.chunk(rows),
        select(target.ne(ignore), lse - picked, 0.0),
    );
}

/// The loss per row in f64 (0 for ignored rows).
fn reference(logits: &[f64], vocab: usize, targets: &[i64], ignore: i64) -> Vec<f64> {
    targets
        .iter()
        .enumerate()
        .map(|(r, &t)| {
            if t == ignore {
                return 0.0;
            }
            let row = &logits[r * vocab..][..vocab];
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            max + row.iter().map(|z| (z - max).exp()).sum::<f64>().ln() - row[t as usize]
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
    const IGNORE: i64 = -100;
    // GPT-2's vocabulary (not a multiple of 64), and small awkward ones.
    for (rows, vocab) in [(20, 50257), (16, 64), (5, 1000)] {
        let mut x = rng.tensor(F32, &[rows, vocab], -8.0, 8.0).to_vec();
        let mut targets: Vec<i64> = (0..rows)
            .map(|_| (rng.uniform(0.0, vocab as f64) as i64).min(vocab as i64 - 1))
            .collect();
        // Row 0 targets the last column (in the partial last tile); row 1 is ignored and
        // holds a NaN.
        targets[0] = vocab as i64 - 1;
        targets[1] = IGNORE;
        x[vocab + vocab / 2] = f64::NAN;
        let logits = HostTensor::new(F32, &[rows, vocab], &x)?;
        let t: Vec<f64> = targets.iter().map(|&t| t as f64).collect();
        let target_tensor = HostTensor::new(I32, &[rows], &t)?;
        let mut loss = HostTensor::new(F32, &[rows], &vec![f64::NAN; rows])?;
        cross_entropy::launch_auto(
            &device,
            &logits,
            &target_tensor,
            (IGNORE as i32).into(),
            &mut loss,
        )?;
        let want = reference(&x, vocab, &targets, IGNORE);
        let got = loss.to_vec();
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
            .fold(0.0, f64::max);
        println!(
            "{rows}×{vocab} on {}: max relative error {err:.1e}",
            device.name()
        );
        // An f32 sum over the vocabulary rounds at about 2⁻²⁴ per term.
        ensure!(
            err <= 2e-5,
            "{rows}×{vocab}: error {err:.2e} (seed {})",
            rng.seed
        );
        ensure!(got[1] == 0.0, "the ignored row with a NaN gave {}", got[1]);
    }
    println!("06_cross_entropy: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
