//! 01 · Vector add: `z = a·x + y` elementwise, one 16×16 tile per block.
//!
//! The first tilekit kernel: views of global memory (`Gl`, `GlMut`), register tiles (`Rt`),
//! `load` / `store`, tile arithmetic, and a launch whose grid has one block per tile. Shapes
//! that are not multiples of 16 need no special code: loads past the edge read zeros and stores
//! past it are dropped. Checked against a plain-Rust f64 reference on random inputs.
//!
//! ```sh
//! cargo run -p tilekit-examples --example 01_vector_add                 # the interpreter
//! cargo run -p tilekit-examples --features jit --example 01_vector_add  # a GPU, if present
//! ```

use anyhow::{ensure, Result};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::Device;

/// `z = a·x + y` for the tile of block (x: column tile, y: row tile).
#[tilekit::kernel(warps = 1)]
fn axpy(x: Gl<f32, 2>, y: Gl<f32, 2>, a: Scalar<f32>, z: GlMut<f32, 2>) {
    let (i, j) = (block_idx_y(), block_idx_x());
    let xt: Rt<f32, 16, 16> = load(x.tile(i, j));
    let yt: Rt<f32, 16, 16> = load(y.tile(i, j));
    store(z.tile(i, j), xt * a + yt);
}

fn main() -> Result<()> {
    // With the compiler (`--features jit`), a GPU if one is present: the kernel is compiled for
    // it on first launch. Otherwise the interpreter.
    let device = if cfg!(feature = "jit") {
        Device::best()
    } else {
        Device::Cpu
    };
    let mut rng = Rng::fresh();
    for (rows, cols) in [(64, 64), (100, 70), (1, 33)] {
        let x = rng.tensor(F32, &[rows, cols], -1.0, 1.0);
        let y = rng.tensor(F32, &[rows, cols], -1.0, 1.0);
        let a = rng.uniform(-2.0, 2.0) as f32;
        // NaN everywhere first: an element the kernel fails to write would show.
        let mut z = HostTensor::new(F32, &[rows, cols], &vec![f64::NAN; rows * cols])?;
        let grid = [cols.div_ceil(16) as u32, rows.div_ceil(16) as u32, 1];
        axpy::launch(&device, grid, &x, &y, a.into(), &mut z)?;

        let want: Vec<f64> = x
            .to_vec()
            .iter()
            .zip(y.to_vec())
            .map(|(x, y)| f64::from(a) * x + y)
            .collect();
        let err = normalized_max_error(&z.to_vec(), &want);
        println!("{rows}×{cols} on {}: max error {err:.1e}", device.name());
        ensure!(
            err < 1e-6,
            "{rows}×{cols}: error {err:.2e} (seed {})",
            rng.seed
        );
    }
    println!("01_vector_add: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
