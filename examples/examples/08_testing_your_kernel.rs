//! 08 · Testing your kernel: a reference on random inputs, and the interpreter's race check.
//!
//! Two warps hand a tile over through shared memory: warp 0 stores it, warp 1 loads it and
//! writes it out. Without a `barrier()` between them the handover is a race — on a GPU it
//! works or not depending on timing. The interpreter's race check orders accesses by
//! barriers, semaphores and copy completions (happens-before), not by the schedule it happened
//! to run, so the missing barrier fails every run, naming both accesses and their lines. With
//! the barrier, the kernel is checked against its reference. (Snapshots of the generated code:
//! `tilekit::testing`, feature `testing`; see the README's "Testing your kernels".)
//!
//! ```sh
//! cargo run -p tilekit-examples --example 08_testing_your_kernel
//! ```

use anyhow::{bail, ensure, Result};
use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::kernels::check::{normalized_max_error, Rng};
use tilekit::Device;

/// `y = x` for the 16×16 tile of block (0, 0), passed from warp 0 to warp 1 through shared
/// memory, with a barrier between the two when `SYNC`.
#[tilekit::kernel(warps = 2)]
fn hand_over<const SYNC: bool>(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let s: St<f32, 16, 16> = alloc_shared();
    if warp_idx().eq(0) {
        let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
        store(s, t);
    }
    if SYNC {
        barrier();
    }
    if warp_idx().eq(1) {
        let t: Rt<f32, 16, 16> = load(s);
        store(y.tile(0, 0), t);
    }
}

fn main() -> Result<()> {
    let mut rng = Rng::fresh();
    let x = rng.tensor(F32, &[16, 16], -1.0, 1.0);
    let mut y = HostTensor::new(F32, &[16, 16], &[f64::NAN; 256])?;

    // Without the barrier: the race check (on by default on the cpu device) refuses the run.
    match hand_over::<false>::launch(&Device::Cpu, 1, &x, &mut y) {
        Ok(()) => bail!("the missing barrier was not reported"),
        Err(e) => println!("without the barrier, as expected:\n  {e}\n"),
    }

    // With it: no race, and the output matches the reference (here, the input itself).
    hand_over::<true>::launch(&Device::Cpu, 1, &x, &mut y)?;
    let err = normalized_max_error(&y.to_vec(), &x.to_vec());
    ensure!(err == 0.0, "error {err:.2e} (seed {})", rng.seed);
    println!("with the barrier: no race, output equals the input");
    println!("08_testing_your_kernel: ok");
    Ok(())
}

#[test]
fn tutorial_runs() {
    main().unwrap();
}
