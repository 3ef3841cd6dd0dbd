//! The interpreter's race check, through the typed launcher: a GEMM that forgets the barrier
//! after its mma is reported with both ops' source lines, under every schedule, and the same
//! kernel with the barrier passes; on global memory, two blocks storing one tile and two warps
//! handing a tile through global scratch without a barrier are reported with the tensor, the
//! blocks, the warps and both source lines.

use tilekit::device::CpuOptions;
use tilekit::dsl::*;
use tilekit::ir::interp::{HostTensor, InterpError, Schedule};
use tilekit::ir::{Loc, ScalarType};
use tilekit::kernels::gemm::reference;
use tilekit::{Device, Error};
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// The line of this file that holds `text` (the ops a race report must name).
fn line_of(text: &str) -> u32 {
    let src = include_str!("dsl_races.rs");
    let i = src
        .lines()
        .position(|l| l.trim_start().starts_with(text))
        .expect("the op is in this file");
    i as u32 + 1
}

/// A 32×16 tile of `C = A·B` by two warps (16 rows each) staging A and B in shared memory.
/// With `SYNC` false it lacks the barrier after the mma, so the next K step's copy overwrites
/// rows of A the other warp may not have read yet.
#[tilekit::kernel(warps = 2)]
fn staged_gemm<const SYNC: bool>(a: Gl<bf16, 2>, b: Gl<bf16, 2>, c: GlMut<f32, 2>) {
    let a_smem: St<bf16, 32, 16> = alloc_shared();
    let b_smem: St<bf16, 16, 16> = alloc_shared();
    let warp = warp_idx();
    let mut acc: Rt<f32, 16, 16> = zeros();
    for kt in range(0, ceil_div(a.cols(), 16)) {
        copy_block(a_smem, a.tile(block_idx_y(), kt));
        copy_block(b_smem, b.tile(kt, block_idx_x()));
        barrier();
        let a_frag: Rt<bf16, 16, 16> = load(a_smem.tile(warp, 0));
        let b_frag: Rt<bf16, 16, 16, Col> = load(b_smem);
        acc = mma_ab(acc, a_frag, b_frag);
        if SYNC {
            barrier();
        }
    }
    store(c.tile(block_idx_y() * 2 + warp, block_idx_x()), acc);
}

fn inputs(rng: &mut TestRng, m: usize, n: usize, k: usize) -> (HostTensor, HostTensor) {
    (
        rng.tensor(ScalarType::BF16, &[m, k], -1.0, 1.0),
        rng.tensor(ScalarType::BF16, &[k, n], -1.0, 1.0),
    )
}

fn schedules() -> [Schedule; 3] {
    [
        Schedule::UntilBlocked,
        Schedule::RoundRobin { quantum: 1 },
        Schedule::RoundRobin { quantum: 5 },
    ]
}

fn rust_line(loc: &Loc) -> Option<u32> {
    match loc {
        Loc::Rust { file, line, .. } if file.ends_with("dsl_races.rs") => Some(*line),
        _ => None,
    }
}

#[test]
fn a_missing_barrier_after_the_mma_is_reported_with_both_ops_under_every_schedule() {
    let mut rng = TestRng::fresh();
    let (m, n, k) = (64, 32, 64);
    let (a, b) = inputs(&mut rng, m, n, k);
    let copy_line = line_of("copy_block(a_smem");
    let load_line = line_of("let a_frag");
    for schedule in schedules() {
        let device = Device::cpu_with(CpuOptions::default().schedule(schedule));
        let mut c = HostTensor::zeros(ScalarType::F32, &[m, n]);
        let err = staged_gemm::<false>::launch(&device, [2, 2, 1], &a, &b, &mut c).unwrap_err();
        let Error::Interp(InterpError::Race {
            earlier,
            later,
            earlier_kind,
            later_kind,
            ..
        }) = &err
        else {
            panic!("{schedule:?}: expected a race, got {err}");
        };
        // One side is the copy's write of the next K step, the other a load of the stage.
        let mut pair = [
            (rust_line(&earlier.loc), earlier_kind.as_str()),
            (rust_line(&later.loc), later_kind.as_str()),
        ];
        pair.sort();
        assert_eq!(
            pair,
            [(Some(copy_line), "write"), (Some(load_line), "read")],
            "{schedule:?}: {err}"
        );
        assert_ne!(earlier.warp, later.warp, "{err}");
        let text = err.to_string();
        assert!(
            text.contains("data race")
                && text.contains(&format!("dsl_races.rs:{copy_line}:"))
                && text.contains(&format!("dsl_races.rs:{load_line}:")),
            "{text}"
        );
    }
}

#[test]
fn the_same_kernel_with_the_barrier_passes_and_matches_the_reference_under_every_schedule() {
    let mut rng = TestRng::fresh();
    for (m, n, k) in [(64, 32, 64), (50, 20, 37)] {
        let (a, b) = inputs(&mut rng, m, n, k);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        for schedule in schedules() {
            let device = Device::cpu_with(CpuOptions::default().schedule(schedule));
            let mut c = HostTensor::zeros(ScalarType::F32, &[m, n]);
            let grid = [n.div_ceil(16) as u32, m.div_ceil(32) as u32, 1];
            staged_gemm::<true>::launch(&device, grid, &a, &b, &mut c)
                .unwrap_or_else(|e| panic!("{schedule:?}, seed {}: {e}", rng.seed));
            let err = normalized_max_error(&c.to_vec(), &want);
            assert!(
                err <= 1e-5,
                "{m}×{n}×{k} {schedule:?}: error {err:.2e}, seed {}",
                rng.seed
            );
        }
    }
}

#[test]
fn the_race_check_can_be_turned_off_and_then_the_racy_kernel_runs() {
    let mut rng = TestRng::fresh();
    let (a, b) = inputs(&mut rng, 64, 32, 64);
    let device = Device::cpu_with(CpuOptions::default().race_check(false));
    let mut c = HostTensor::zeros(ScalarType::F32, &[64, 32]);
    // Without the check the default schedule runs it to the end (its numbers may be wrong).
    staged_gemm::<false>::launch(&device, [2, 2, 1], &a, &b, &mut c).unwrap();
}

#[test]
fn every_library_self_test_passes_with_the_race_check_under_a_fine_round_robin() {
    let device =
        Device::cpu_with(CpuOptions::default().schedule(Schedule::RoundRobin { quantum: 1 }));
    let mut ran = 0;
    for k in crate::library_kernels_and(file!()) {
        if let Some(selftest) = k.selftest {
            selftest(&device).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            ran += 1;
        }
    }
    assert!(ran >= 6, "only {ran} self-tests ran");
}

/// Stores a tile of `x` to `y`, then reloads row 3 of it as a vector (other lanes than the ones
/// that stored it, on a GPU) into `z`; `SAME` reloads the tile as it was stored instead.
#[tilekit::kernel]
fn store_then_reload<const SYNC: bool, const SAME: bool>(
    x: Gl<f32, 2>,
    y: GlMut<f32, 2>,
    z: GlMut<f32, 2>,
) {
    let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
    store(y.tile(0, 0), t);
    if SYNC {
        barrier();
    }
    if SAME {
        let again: Rt<f32, 16, 16> = load(y.tile(0, 0));
        store(z.tile(0, 0), again);
    } else {
        let row: Rv<f32, 16, Cols> = load(y.chunk(3, 0));
        store(z.chunk(0, 0), row);
    }
}

#[test]
fn a_warp_reloading_its_global_store_through_other_lanes_needs_a_barrier() {
    let mut rng = TestRng::fresh();
    let x = rng.tensor(ScalarType::F32, &[16, 16], -1.0, 1.0);
    let fresh = || {
        (
            HostTensor::zeros(ScalarType::F32, &[16, 16]),
            HostTensor::zeros(ScalarType::F32, &[16, 16]),
        )
    };
    let (mut y, mut z) = fresh();
    let err =
        store_then_reload::<false, false>::launch(&Device::Cpu, [1, 1, 1], &x, &mut y, &mut z)
            .unwrap_err();
    let text = err.to_string();
    let store_line = line_of("store(y.tile(0, 0), t);");
    let load_line = line_of("let row: Rv<f32, 16, Cols>");
    assert!(
        text.contains(&format!("dsl_races.rs:{store_line}:"))
            && text.contains(&format!("dsl_races.rs:{load_line}:"))
            && text.contains("another lane"),
        "{text}"
    );
    // With a barrier between, or reloading the tile as it was stored, the values come back.
    let (mut y, mut z) = fresh();
    store_then_reload::<true, false>::launch(&Device::Cpu, [1, 1, 1], &x, &mut y, &mut z).unwrap();
    assert_eq!(z.to_vec()[..16], x.to_vec()[3 * 16..4 * 16]);
    let (mut y, mut z) = fresh();
    store_then_reload::<false, true>::launch(&Device::Cpu, [1, 1, 1], &x, &mut y, &mut z).unwrap();
    assert_eq!(z.to_vec(), x.to_vec());
}

/// Block b copies row-tile b of `x` into `y`: into its own row-tile with `OWN`, else every
/// block into row-tile 0.
#[tilekit::kernel]
fn copy_rows<const OWN: bool>(x: Gl<f32, 2>, y: GlMut<f32, 2>) {
    let part: Rt<f32, 16, 16> = load(x.tile(block_idx_x(), 0));
    if OWN {
        store(y.tile(block_idx_x(), 0), part);
    } else {
        store(y.tile(0, 0), part);
    }
}

#[test]
fn two_blocks_storing_one_global_tile_race_and_own_tiles_do_not() {
    let mut rng = TestRng::fresh();
    for (rows, cols) in [(40, 9), (17, 16), (33, 1)] {
        let x = rng.tensor(ScalarType::F32, &[rows, cols], -1.0, 1.0);
        let blocks = rows.div_ceil(16) as u32;
        let mut y = HostTensor::full(ScalarType::F32, &[rows, cols], f64::NAN);
        copy_rows::<true>::launch(&Device::Cpu, [blocks, 1, 1], &x, &mut y)
            .unwrap_or_else(|e| panic!("{rows}×{cols}, seed {}: {e}", rng.seed));
        assert_eq!(y.to_vec(), x.to_vec(), "{rows}×{cols}");

        let mut y = HostTensor::zeros(ScalarType::F32, &[rows, cols]);
        let err = copy_rows::<false>::launch(&Device::Cpu, [blocks, 1, 1], &x, &mut y).unwrap_err();
        let Error::Interp(InterpError::GlobalRace {
            tensor,
            element,
            earlier,
            later,
            ..
        }) = &err
        else {
            panic!("{rows}×{cols}: expected a global race, got {err}");
        };
        let store_line = line_of("store(y.tile(0, 0), part);");
        assert_eq!(tensor, "`y`", "{err}");
        assert_eq!(element, "[0, 0], storage offset 0", "{err}");
        assert_eq!(
            (earlier.block, later.block),
            ([0, 0, 0], [1, 0, 0]),
            "{err}"
        );
        assert_eq!(rust_line(&earlier.loc), Some(store_line), "{err}");
        assert_eq!(rust_line(&later.loc), Some(store_line), "{err}");
    }
}

/// Warp 0 stages a tile of `x` in the global scratch `s`; warp 1 reads it back into `y`, after
/// a barrier with `SYNC`.
#[tilekit::kernel(warps = 2)]
fn global_scratch<const SYNC: bool>(x: Gl<f32, 2>, s: GlMut<f32, 2>, y: GlMut<f32, 2>) {
    let warp = warp_idx();
    if warp.eq(0) {
        let t: Rt<f32, 16, 16> = load(x.tile(0, 0));
        store(s.tile(0, 0), t);
    }
    if SYNC {
        barrier();
    }
    if warp.eq(1) {
        let back: Rt<f32, 16, 16> = load(s.tile(0, 0));
        store(y.tile(0, 0), back);
    }
}

#[test]
fn a_missing_barrier_between_warps_staging_global_scratch_is_reported_under_every_schedule() {
    let mut rng = TestRng::fresh();
    let store_line = line_of("store(s.tile(0, 0), t);");
    let load_line = line_of("let back: Rt<f32, 16, 16>");
    for (rows, cols) in [(16, 16), (13, 7)] {
        let x = rng.tensor(ScalarType::F32, &[rows, cols], -1.0, 1.0);
        for schedule in schedules() {
            let device = Device::cpu_with(CpuOptions::default().schedule(schedule));
            let fresh = || HostTensor::full(ScalarType::F32, &[rows, cols], f64::NAN);
            let (mut s, mut y) = (fresh(), fresh());
            let err = global_scratch::<false>::launch(&device, [1, 1, 1], &x, &mut s, &mut y)
                .unwrap_err();
            let Error::Interp(InterpError::GlobalRace {
                tensor,
                earlier,
                later,
                ..
            }) = &err
            else {
                panic!("{schedule:?}: expected a global race, got {err}");
            };
            assert_eq!(tensor, "`s`", "{err}");
            let mut pair = [
                (rust_line(&earlier.loc), earlier.warp),
                (rust_line(&later.loc), later.warp),
            ];
            pair.sort();
            let mut want = [(Some(store_line), 0), (Some(load_line), 1)];
            want.sort();
            assert_eq!(pair, want, "{schedule:?}: {err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("dsl_races.rs:{store_line}:"))
                    && text.contains(&format!("dsl_races.rs:{load_line}:")),
                "{text}"
            );

            let (mut s, mut y) = (fresh(), fresh());
            global_scratch::<true>::launch(&device, [1, 1, 1], &x, &mut s, &mut y)
                .unwrap_or_else(|e| panic!("{schedule:?}, seed {}: {e}", rng.seed));
            assert_eq!(y.to_vec(), x.to_vec(), "{rows}×{cols} {schedule:?}");
        }
    }
}
