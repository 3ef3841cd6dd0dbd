//! Rust's comparisons and ranges in a kernel body still compare and unroll while the kernel is
//! built (the macro routes them through the DSL only to give better errors on run-time values).

use tilekit::dsl::*;
use tilekit::ir::interp::HostTensor;
use tilekit::ir::ScalarType::F32;
use tilekit::Device;

/// Column tile j of `y` gets j + 1 for j < TILES, skipping those at or past `SKIP`.
#[tilekit::kernel(warps = 1)]
fn steps<const TILES: usize, const SKIP: usize>(y: GlMut<f32, 2>) {
    for j in 0..TILES {
        if j < SKIP && (j as i32) >= 0 && TILES > 0 && j + 1 <= TILES {
            let t: Rt<f32, 16, 16> = fill((j + 1) as f64);
            store(y.tile(0, j), t);
        }
    }
    for _ in 0u8..0 {
        store(y.tile(0, 0), fill::<Rt<f32, 16, 16>>(-1.0));
    }
}

fn main() {
    let mut y = HostTensor::new(F32, &[16, 48], &vec![7.0; 16 * 48]).unwrap();
    steps::<3, 2>::launch(&Device::Cpu, 1, &mut y).unwrap();
    assert_eq!(y.get(&[5, 3]), Some(1.0));
    assert_eq!(y.get(&[5, 20]), Some(2.0));
    assert_eq!(y.get(&[5, 40]), Some(7.0));
}
