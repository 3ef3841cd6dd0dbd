//! Cross-entropy with an ignore index over a GPT-2 vocabulary (50257), written with compare and
//! select ([`cross_entropy::cross_entropy`]), against an f64 reference on the interpreter; a NaN
//! in an ignored row does not reach its loss.

mod cross_entropy;

use cross_entropy::{cross_entropy as ce, cross_entropy_gather as ce_gather, reference};
use tilekit::ir::interp::HostTensor;
use tilekit::ir::print_module;
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::Device;
use tilekit_tests::random::TestRng;

const IGNORE: i64 = -100;

/// Logits uniform in ±8 and random targets, with these rows set apart: row 0 targets column 0,
/// row 1 the last column (in the partial last tile), row 2 is ignored and holds NaN (at column 0
/// and at its would-be target), row 3 is ignored with finite logits.
fn inputs(rng: &mut TestRng, rows: usize, vocab: usize) -> (HostTensor, Vec<i64>) {
    let mut logits = rng.uniform(rows * vocab, -8.0, 8.0);
    let mut targets: Vec<i64> = rng
        .uniform(rows, 0.0, vocab as f64)
        .into_iter()
        .map(|x| (x as i64).min(vocab as i64 - 1))
        .collect();
    targets[0] = 0;
    targets[1] = vocab as i64 - 1;
    let nan_at = (targets[2] as usize, 0);
    for c in [nan_at.0, nan_at.1, vocab / 2] {
        logits[2 * vocab + c] = f64::NAN;
    }
    targets[2] = IGNORE;
    targets[3] = IGNORE;
    (
        HostTensor::new(F32, &[rows, vocab], &logits).unwrap(),
        targets,
    )
}

fn run(device: &Device, logits: &HostTensor, targets: &[i64], gathered: bool) -> Vec<f64> {
    let rows = targets.len();
    let t: Vec<f64> = targets.iter().map(|&t| t as f64).collect();
    let targets = HostTensor::new(I32, &[rows], &t).unwrap();
    // Poisoned, so that an unwritten loss shows.
    let mut loss = HostTensor::full(F32, &[rows], 12345.0);
    let blocks = rows.div_ceil(16) as u32;
    let ignore = (IGNORE as i32).into();
    if gathered {
        ce_gather::launch(device, blocks, logits, &targets, ignore, &mut loss).unwrap();
    } else {
        ce::launch(device, blocks, logits, &targets, ignore, &mut loss).unwrap();
    }
    loss.to_vec()
}

/// Absolute error against the f64 reference, relative to the loss where it is above 1. The
/// f32 sum over the vocabulary rounds at about 2⁻²⁴ per term.
pub fn check(got: &[f64], want: &[f64], what: &str) {
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(1.0);
        assert!(err <= 2e-5, "{what}: row {r}: got {g}, expected {w}");
    }
}

#[test]
fn cross_entropy_over_a_50257_vocabulary_with_ignored_rows_matches_f64() {
    let mut rng = TestRng::fresh();
    for (rows, vocab) in [(40, 50257), (16, 64), (21, 1000)] {
        let (logits, targets) = inputs(&mut rng, rows, vocab);
        let want = reference(&logits, &targets, IGNORE);
        for gathered in [false, true] {
            let got = run(&Device::Cpu, &logits, &targets, gathered);
            let what = format!("{rows}×{vocab}, gathered {gathered}, seed {}", rng.seed);
            check(&got, &want, &what);
            // The NaN row is ignored: its loss is exactly 0, not NaN.
            assert_eq!(got[2], 0.0, "the ignored NaN row leaked: {what}");
            assert_eq!(got[3], 0.0);
            assert!(got[0] > 0.0 && got.iter().all(|x| x.is_finite()), "{what}");
        }
    }
}

#[test]
fn cross_entropy_uses_compare_select_or_gather_not_one_hot_arithmetic() {
    let text = print_module(ce::module());
    for op in ["cmp.eq", "cmp.ne", "select"] {
        assert!(text.contains(op), "{op} missing from:\n{text}");
    }
    // One-hot arithmetic would take an `abs` or a `min` of index differences.
    assert!(!text.contains("map.abs"), "{text}");
    let text = print_module(ce_gather::module());
    assert!(text.contains("gather ("), "{text}");
    assert!(
        !text.contains("map.abs") && !text.contains("cmp.eq"),
        "{text}"
    );
}
