//! The README's "Writing a kernel" example, compiled and run by tests/tests/compile_fail.rs.

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::Device;

/// Row r of `y` gets s·Σ_k x[r][k] in every column, for 16-row blocks (one block per 16 rows).
#[tilekit::kernel(warps = 1)]
fn row_scale<const TILES: usize>(x: Gl<f32, 2>, s: Scalar<f32>, y: GlMut<f32, 2>) {
    let row = block_idx_x();
    let mut sum: Rv<f32, 16> = zeros();
    // A runtime loop (an IR `for`): `sum` is loop-carried.
    for k in range(0, (x.cols() + 15) / 16) {
        let t: Rt<f32, 16, 16> = load(x.tile(row, k));
        sum = sum + row_sum(t);
    }
    let sum = sum * s;
    // A comptime loop: unrolled while the kernel is built.
    for j in 0..TILES {
        let out: Rt<f32, 16, 16> = add_row(zeros(), sum);
        store(y.tile(row, j), out);
    }
}

fn main() {
    let (m, n) = (20, 40);
    let values: Vec<f64> = (0..m * n).map(|i| (i % 7) as f64).collect();
    let x = HostTensor::new(F32, &[m, n], &values).unwrap();
    let mut y = HostTensor::zeros(F32, &[m, 32]);
    // Checks dtypes and ranks (an error, never a panic), builds the IR once, runs it.
    row_scale::<2>::launch(&Device::Cpu, 2, &x, 0.5.into(), &mut y).unwrap();
    for r in 0..m {
        let want: f64 = values[r * n..(r + 1) * n].iter().sum::<f64>() * 0.5;
        assert_eq!(y.get(&[r, 31]), Some(want));
    }
    println!("{}", tilekit::ir::print_module(row_scale::<2>::module()));
}
