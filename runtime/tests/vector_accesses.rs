//! Register tiles loaded from and stored to global views in vector accesses (runs of registers
//! at consecutive columns, one predicate each) in the variant for 16-byte aligned views, and
//! element by element in the general one: both agree with the f64 reference on the PTX
//! emulator, with ragged row counts, column counts that end inside a tile (whole runs out of
//! the view) and, for the general variant, column counts that are not whole 16-byte chunks.
#![cfg(feature = "jit")]

use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::Rng;
use tilekit::kernels::softmax;
use tilekit::Device;

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
}

#[test]
fn softmax_rows_agrees_with_the_reference_through_vector_and_element_accesses() {
    for target in ["sm_80", "sm_90a"] {
        let device = Device::emulator(target).unwrap();
        let mut rng = Rng::new(seed());
        // (rows, cols): 40 and 100 columns are whole 16-byte chunks of f32 (the aligned
        // variant) ending inside a 64-column tile; 38 and 90 are not (the general variant).
        for (rows, cols) in [(37, 40), (64, 100), (19, 38), (70, 90), (16, 64)] {
            let xv: Vec<f64> = (0..rows * cols).map(|_| rng.uniform(-4.0, 4.0)).collect();
            let x = HostTensor::new(F32, &[rows, cols], &xv).unwrap();
            let mut y = HostTensor::zeros(F32, &[rows, cols]);
            softmax::softmax_rows::<f32, 16, 64, 4>::launch(
                &device,
                softmax::grid(rows, 16, 4),
                &x,
                &mut y,
            )
            .unwrap();
            let want = softmax::reference(&xv, rows, cols);
            let got = y.to_vec();
            let case = format!("{target} {rows}×{cols} (seed {})", rng.seed);
            assert_eq!(got.len(), want.len(), "{case}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                    "{case}: y[{}, {}] = {g}, want {w}",
                    i / cols,
                    i % cols
                );
            }
        }
    }
}
