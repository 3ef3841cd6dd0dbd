//! The interpreter's index checks, through the typed launcher: a tile index loaded from memory
//! that puts the tile wholly outside its view is an error (edge tiles are not), and with
//! `check_unwritten` an output element no block wrote is an error naming the output and the
//! element. Every library kernel's self-test passes with both checks on.

use tilekit::device::CpuOptions;
use tilekit::dsl::*;
use tilekit::ir::interp::{HostTensor, InterpError};
use tilekit::ir::ScalarType::{F32, I32};
use tilekit::{Device, Error};
use tilekit_tests::random::TestRng;

/// Row tile `i` of `y` is column tile `which[i]` of row tile `i` of `x` (a gather by an index
/// from memory, as a cross-entropy picks its target's logits).
#[tilekit::kernel]
fn pick_tiles(x: Gl<f32, 2>, which: Gl<i32, 1>, y: GlMut<f32, 2>) {
    let j: Scalar<i32> = load(which.at(block_idx_x()));
    let t: Rt<f32, 16, 16> = load(x.tile(block_idx_x(), j));
    store(y.tile(block_idx_x(), 0), t);
}

/// Copies the 16×16 tiles of `x` the grid covers into `y`.
#[tilekit::kernel]
fn copy_tiles(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let t: Rt<f32, 16, 16> = load(x.tile(block_idx_y(), block_idx_x()));
    store(y.tile(block_idx_y(), block_idx_x()), t);
}

fn which(v: &[i32]) -> HostTensor {
    HostTensor::new(
        I32,
        &[v.len()],
        &v.iter().map(|&i| f64::from(i)).collect::<Vec<_>>(),
    )
    .unwrap()
}

#[test]
fn an_index_from_memory_inside_the_view_or_on_its_edge_picks_the_tile() {
    let mut rng = TestRng::fresh();
    // 20 columns: column tile 1 holds columns 16..20 and masks the rest.
    let x = rng.tensor(F32, &[32, 20], -1.0, 1.0);
    let mut y = HostTensor::zeros(F32, &[32, 16]);
    pick_tiles::launch(&Device::Cpu, [2, 1, 1], &x, &which(&[1, 0]), &mut y).unwrap();
    for r in 0..32 {
        for c in 0..16 {
            let want = match (r < 16, c < 4) {
                (true, true) => x.get(&[r, 16 + c]).unwrap(),
                (true, false) => 0.0,
                (false, _) => x.get(&[r, c]).unwrap(),
            };
            assert_eq!(y.get(&[r, c]), Some(want), "({r}, {c}), seed {}", rng.seed);
        }
    }
}

#[test]
fn an_index_from_memory_that_puts_the_tile_outside_the_view_is_an_error() {
    let x = HostTensor::full(F32, &[32, 20], 1.0);
    let mut y = HostTensor::zeros(F32, &[32, 16]);
    let err = pick_tiles::launch(&Device::Cpu, [2, 1, 1], &x, &which(&[0, 2]), &mut y).unwrap_err();
    let Error::Interp(InterpError::OutOfBounds { site, index, .. }) = &err else {
        panic!("expected an out-of-bounds error, got {err}");
    };
    assert_eq!((site.block, index.as_str()), ([1, 0, 0], "[1, 2]"), "{err}");
    assert!(err.to_string().contains("loaded from memory"), "{err}");
    // A negative index too.
    let err =
        pick_tiles::launch(&Device::Cpu, [2, 1, 1], &x, &which(&[-1, 0]), &mut y).unwrap_err();
    assert!(err.to_string().contains("[0, -1]"), "{err}");
    // With the check off the tile reads as zeros, as the IR masks it.
    let device = Device::cpu_with(without_index_check());
    let mut y = HostTensor::full(F32, &[32, 16], 5.0);
    pick_tiles::launch(&device, [2, 1, 1], &x, &which(&[0, 2]), &mut y).unwrap();
    assert_eq!(y.get(&[20, 3]), Some(0.0));
}

/// A cpu device whose runs skip the index check.
fn without_index_check() -> CpuOptions {
    CpuOptions::default().index_check(false)
}

#[test]
fn an_output_a_too_small_grid_leaves_unwritten_is_reported_with_check_unwritten() {
    let mut rng = TestRng::fresh();
    let x = rng.tensor(F32, &[40, 20], -1.0, 1.0);
    let device = Device::cpu_with(CpuOptions::default().check_unwritten(true));
    let mut y = HostTensor::full(F32, &[40, 20], 7.0);
    // 3×2 tiles cover 40×20; a grid of 2×2 leaves rows 32..40.
    let err = copy_tiles::launch(&device, [2, 2, 1], &x, &mut y).unwrap_err();
    let Error::Interp(InterpError::Unwritten {
        param,
        index,
        unwritten,
        total,
        ..
    }) = &err
    else {
        panic!("expected an unwritten output, got {err}");
    };
    assert_eq!(
        (param.as_str(), index.as_slice(), *unwritten, *total),
        ("y", &[32, 0][..], 8 * 20, 800)
    );
    // The failed launch hands nothing back: `y` holds what it held.
    assert_eq!(y.get(&[39, 19]), Some(7.0));
    // The full grid writes every element.
    copy_tiles::launch(&device, [2, 3, 1], &x, &mut y).unwrap();
    assert_eq!(y.to_vec(), x.to_vec());
    // Off by default.
    copy_tiles::launch(&Device::Cpu, [1, 1, 1], &x, &mut y).unwrap();
}

/// Kernels whose contract leaves outputs unwritten on purpose, which the unwritten-output check
/// cannot express: the grouped MoE GEMMs write only the rows of the permuted layout that hold a
/// token (padding rows and whole padding tiles keep what the caller put there; their self-tests
/// check that the poison survives). Their self-tests still run in every other test.
const LEAVE_ROWS_UNWRITTEN: &[&str] = &[
    "moe_gemm",
    "moe_gemm_swiglu",
    "moe_gemm_wg",
    "moe_gemm_swiglu_wg",
    "moe_gemm_fp8",
];

#[test]
fn every_library_self_test_passes_with_the_unwritten_output_check_on() {
    let device = Device::cpu_with(CpuOptions::default().check_unwritten(true));
    let mut ran = 0;
    for k in crate::library_kernels_and(file!()) {
        if LEAVE_ROWS_UNWRITTEN.contains(&k.name) {
            continue;
        }
        if let Some(selftest) = k.selftest {
            selftest(&device).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            ran += 1;
        }
    }
    assert!(ran >= 6, "only {ran} self-tests ran");
}
