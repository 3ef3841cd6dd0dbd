//! The warp-specialized GEMM on the interpreter: the library's kernel
//! (`tilekit::kernels::ws_gemm`) gives the same bits under every warp schedule, and the
//! interpreter catches its synchronization broken on purpose (this file's [`ws_gemm_fault`], the
//! library kernel with a switch for each fault). Results against the f64 reference for every
//! registered variant are in `dsl_ws_gemm.rs`.

use tilekit::device::CpuOptions;
use tilekit::dsl::*;
use tilekit::ir::interp::{HostTensor, InterpError, Schedule};
use tilekit::ir::ScalarType::{BF16, F32};
use tilekit::kernels::gemm::{grid, reference};
use tilekit::kernels::ws_gemm::ws_gemm;
use tilekit::{Device, Error};
use tilekit_tests::compare::normalized_max_error;
use tilekit_tests::random::TestRng;

/// The stage and the phase parity of K step `kt`.
#[tilekit::func]
fn stage_of<const STAGES: usize>(kt: Scalar<i32>) -> (Scalar<i32>, Scalar<i32>) {
    (kt % STAGES as i32, (kt / STAGES as i32) & 1)
}

/// `ws_gemm<f32, 64, 64, 32, 32, 2>` of the library (a producer warp, two consumers of 32
/// rows, a ring of two stages) with its synchronization broken as asked: `SKIP_FULL_WAIT`,
/// the consumers do not wait for `full[s]`; `NO_ARRIVE`, the producer announces the stage's
/// bytes but never arrives on `full[s]`.
#[tilekit::kernel(warps = 3)]
fn ws_gemm_fault<const SKIP_FULL_WAIT: bool, const NO_ARRIVE: bool>(
    a: Gl<bf16, 2>,
    b: Gl<bf16, 2>,
    c: GlMut<f32, 2>,
) {
    let a_ring: SharedArray<St<bf16, 64, 32>, 2> = alloc_shared();
    let b_ring: SharedArray<St<bf16, 32, 64>, 2> = alloc_shared();
    let full: SharedArray<Sem, 2> = alloc_shared();
    let empty: SharedArray<Sem, 2> = alloc_shared();
    let stage_bytes = bytes_of::<St<bf16, 64, 32>>() + bytes_of::<St<bf16, 32, 64>>();

    let (tile_n, tile_m) = (block_idx_x(), block_idx_y());
    let warp = warp_idx();
    let is_producer = warp.eq(0);
    if is_producer {
        for s in 0..2 {
            full.at(s).init(1);
            empty.at(s).init(2);
        }
    }
    barrier();

    let k_tiles = ceil_div(a.cols(), 32);
    if is_producer {
        for kt in range(0, k_tiles) {
            let (s, parity) = stage_of::<2>(kt);
            empty.at(s).wait(parity ^ 1);
            let full_s = full.at(s);
            full_s.expect(stage_bytes);
            if !NO_ARRIVE {
                full_s.arrive();
            }
            copy_async(a_ring.at(s), a.tile(tile_m, kt), full_s);
            copy_async(b_ring.at(s), b.tile(kt, tile_n), full_s);
        }
    } else {
        let consumer = warp - 1;
        let mut acc: Rt<f32, 32, 64> = zeros();
        for kt in range(0, k_tiles) {
            let (s, parity) = stage_of::<2>(kt);
            if !SKIP_FULL_WAIT {
                full.at(s).wait(parity);
            }
            let a_frag: Rt<bf16, 32, 32> = load(a_ring.at(s).tile(consumer, 0));
            let b_frag: Rt<bf16, 32, 64, Col> = load(b_ring.at(s));
            acc = mma_ab(acc, a_frag, b_frag);
            empty.at(s).arrive();
        }
        store(c.tile(tile_m * 2 + consumer, tile_n), acc);
    }
}

fn schedules() -> [Schedule; 3] {
    [
        Schedule::UntilBlocked,
        Schedule::RoundRobin { quantum: 1 },
        Schedule::RoundRobin { quantum: 7 },
    ]
}

#[test]
fn ws_gemm_gives_the_same_bits_under_every_schedule() {
    let mut rng = TestRng::fresh();
    let (m, n, k) = (100, 72, 130);
    let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
    let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
    let g = grid(m, n, 64, 64);
    let run = |device: &Device, two_consumers: bool| {
        let mut c = HostTensor::zeros(F32, &[m, n]);
        let r = if two_consumers {
            ws_gemm::<f32, 64, 64, 32, 32, 2>::launch(device, g, &a, &b, &mut c)
        } else {
            // Four consumers of 16 rows, bf16 output.
            c = HostTensor::zeros(BF16, &[m, n]);
            ws_gemm::<bf16, 64, 64, 32, 16, 2>::launch(device, g, &a, &b, &mut c)
        };
        r.unwrap_or_else(|e| panic!("{device:?}: {e}; seed {}", rng.seed));
        c
    };
    for two_consumers in [true, false] {
        let base = run(&Device::Cpu, two_consumers);
        // The bits are those of a correct product (not, say, all NaN under every schedule).
        let err = normalized_max_error(
            &base.to_vec(),
            &reference(&a.to_vec(), &b.to_vec(), m, k, n),
        );
        assert!(err <= 1e-2, "error {err:.3e}; seed {}", rng.seed);
        for quantum in [1, 7] {
            let device =
                Device::cpu_with(CpuOptions::default().schedule(Schedule::RoundRobin { quantum }));
            let c = run(&device, two_consumers);
            assert!(
                c == base,
                "two consumers {two_consumers}, quantum {quantum}: bits differ from the default schedule; seed {}",
                rng.seed
            );
        }
    }
}

#[test]
fn ws_gemm_without_the_consumer_wait_is_caught() {
    // Consumers that do not wait for `full[s]` read a stage before its copies land: the race
    // check reports the read against the copy, or they see shared memory nothing wrote (NaN in
    // the interpreter) or a stale tile, or they arrive on `empty` out of turn, which leaves the
    // producer waiting for a phase that never completes. One of those must come out, under every
    // schedule: K = 64 is 2 steps (the producer never has to wait), K = 160 is 5.
    let mut rng = TestRng::fresh();
    for (m, n, k) in [(64, 64, 64), (64, 64, 160)] {
        let a = rng.tensor(BF16, &[m, k], -1.0, 1.0);
        let b = rng.tensor(BF16, &[k, n], -1.0, 1.0);
        let want = reference(&a.to_vec(), &b.to_vec(), m, k, n);
        for schedule in schedules() {
            let what = format!("K {k}, {schedule:?}");
            let device = Device::cpu_with(CpuOptions::default().schedule(schedule));
            let mut c = HostTensor::zeros(F32, &[m, n]);
            match ws_gemm_fault::<true, false>::launch(&device, [1, 1, 1], &a, &b, &mut c) {
                Ok(()) => {
                    let err = normalized_max_error(&c.to_vec(), &want);
                    assert!(
                        err > 0.1,
                        "{what}: a kernel without the wait matched the reference ({err:.3e}); seed {}",
                        rng.seed
                    );
                }
                Err(Error::Interp(InterpError::Deadlock { .. } | InterpError::Race { .. })) => {}
                Err(e) if e.to_string().contains("before anything wrote it") => {}
                Err(e) => panic!(
                    "{what}: expected a race, a wrong result, a read of unwritten shared memory or a deadlock, got {e}"
                ),
            }
        }
    }
}

#[test]
fn ws_gemm_whose_producer_never_arrives_deadlocks_naming_every_warp() {
    let mut rng = TestRng::fresh();
    let a = rng.tensor(BF16, &[64, 128], -1.0, 1.0);
    let b = rng.tensor(BF16, &[128, 64], -1.0, 1.0);
    let mut c = HostTensor::zeros(F32, &[64, 64]);
    let err =
        ws_gemm_fault::<false, true>::launch(&Device::Cpu, [1, 1, 1], &a, &b, &mut c).unwrap_err();
    let Error::Interp(InterpError::Deadlock { block, waits }) = &err else {
        panic!("expected a deadlock, got {err}");
    };
    assert_eq!(*block, [0, 0, 0]);
    assert_eq!(waits.len(), 3, "{err}");
    // The producer filled both stages and waits for the consumers to free stage 0 (parity 0 of
    // `empty[0]`); the consumers wait for stage 0 to fill (parity 0 of `full[0]`).
    for (w, line) in waits.iter().enumerate() {
        assert!(
            line.contains(&format!("warp {w}: waits at @"))
                && line.contains("`sem.wait`")
                && line.contains("for parity 0 of semaphore")
                && line.contains("interp_ws_gemm.rs"),
            "{err}"
        );
    }
    // The diagnosis is in the semaphore states: no consumer ever freed a stage, and stage 0 has
    // all its bytes but not the producer's arrival.
    assert!(waits[0].contains("phase 0 has 0/2 arrivals"), "{err}");
    for line in &waits[1..] {
        assert!(
            line.contains("phase 0 has 0/1 arrivals and 8192/8192 bytes"),
            "{err}"
        );
    }
}
