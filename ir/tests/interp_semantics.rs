//! The interpreter's semantics, op family by op family: what each op means at the edges
//! (masking, bounds, rounding), how warps synchronize, and how it reports misuse.

use tilekit_ir::interp::{self, Arg, HostTensor, InterpError, Launch, Schedule};
use tilekit_ir::ScalarType::*;
use tilekit_ir::*;

fn module(f: Func) -> Module {
    let mut m = Module::new();
    m.push(f);
    m
}

/// Deterministic but irregular values (no zeros, no constant runs).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 11) as f64) / ((1u64 << 53) as f64);
            (u - 0.5) * 4.0 + 0.01
        })
        .collect()
}

#[test]
fn tile_loads_and_stores_are_masked_by_the_view_shape() {
    // A 20×21 matrix copied through 16×16 register tiles: the second tile row and column are
    // partly outside the view. Loads read zeros there; stores write nothing there.
    let mut b = FuncBuilder::kernel("copy", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    let y = b.param("y", Type::global(F32, 2, true));
    let (i, j) = (b.block_idx(Dim3::Y), b.block_idx(Dim3::X));
    let t = b.load(rt(F32, 16, 16), x, &[i, j]);
    let s = b.reduce(ReduceAxis::All, ReduceFn::Sum, t);
    let t2 = b.add(t, s);
    b.store(y, t2, &[i, j]);
    let m = module(b.finish());

    let xv = values(20 * 21, 1);
    let x = HostTensor::new(F32, &[20, 21], &xv).unwrap();
    let y = HostTensor::full(F32, &[20, 21], 7.0);
    let mut args = vec![Arg::Tensor(x), Arg::Tensor(y)];
    interp::run(&m, "copy", [2, 2, 1], &mut args).unwrap();
    let out = args[1].tensor().unwrap();
    for r in 0..20 {
        for c in 0..21 {
            // The sum of the tile this element is in, counting only elements inside the view.
            let (r0, c0) = (r / 16 * 16, c / 16 * 16);
            let mut sum = 0.0;
            for rr in r0..(r0 + 16).min(20) {
                for cc in c0..(c0 + 16).min(21) {
                    sum += xv[rr * 21 + cc];
                }
            }
            let sum32 = f64::from(sum as f32);
            let expect = f64::from(xv[r * 21 + c] as f32 + sum32 as f32);
            let got = out.get(&[r, c]).unwrap();
            assert!(
                (got - expect).abs() <= 1e-5 * expect.abs().max(1.0),
                "({r},{c}): {got} vs {expect}"
            );
        }
    }
}

#[test]
fn scalar_load_out_of_bounds_names_the_op_index_and_bounds() {
    let mut b = FuncBuilder::kernel("peek", 1);
    let x = b.param("x", Type::global(F32, 1, true));
    let i = b.const_i32(10);
    let v = b.load(Type::scalar(F32), x, &[i]);
    let z = b.const_i32(0);
    b.store(x, v, &[z]);
    let m = module(b.finish());
    let mut args = vec![Arg::Tensor(
        HostTensor::new(F32, &[10], &values(10, 2)).unwrap(),
    )];
    let e = interp::run(&m, "peek", [1, 1, 1], &mut args).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InterpError::OutOfBounds { .. }), "{msg}");
    assert!(msg.contains("`load`"), "{msg}");
    assert!(msg.contains("[10]") && msg.contains("shape [10]"), "{msg}");
    assert!(
        msg.contains("interp_semantics.rs"),
        "the error points at the builder call: {msg}"
    );
}

#[test]
fn shared_array_index_out_of_range_is_an_error() {
    let mut b = FuncBuilder::kernel("ring", 1);
    let x = b.param("x", Type::global(F32, 2, false));
    let ring = b.alloc_shared(Type::shared_array(
        Type::shared_tile(F32, 16, 16, Swizzle::None),
        2,
    ));
    let two = b.const_i32(2);
    let s = b.shared_index(ring, two);
    let z = b.const_i32(0);
    b.copy(Scope::Warp, s, x, &[z, z]);
    let m = module(b.finish());
    let mut args = vec![Arg::Tensor(
        HostTensor::new(F32, &[16, 16], &values(256, 3)).unwrap(),
    )];
    let e = interp::run(&m, "ring", [1, 1, 1], &mut args).unwrap_err();
    assert!(
        e.to_string()
            .contains("shared array index 2 is outside 0..2"),
        "{e}"
    );
}

#[test]
fn a_barrier_some_warps_never_reach_is_a_deadlock_naming_every_warp() {
    // Warp 0 returns early; warps 1 and 2 wait at the barrier forever.
    let mut b = FuncBuilder::kernel("early_exit", 3);
    let w = b.warp_idx();
    let z = b.const_i32(0);
    let c = b.cmp(CmpPred::Gt, w, z);
    b.if_then(c, |b| b.barrier());
    let m = module(b.finish());
    let e = interp::run(&m, "early_exit", [1, 1, 1], &mut []).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InterpError::Deadlock { .. }), "{msg}");
    assert!(msg.contains("warp 0: finished"), "{msg}");
    assert!(
        msg.contains("warp 1: waits at @early_exit op 3.0.0 `barrier`"),
        "{msg}"
    );
    assert!(msg.contains("warp 2: waits at"), "{msg}");
    assert!(msg.contains("(2 of 3 warps arrived)"), "{msg}");
}

/// A producer/consumer hand-off of one tile through a semaphore and an async copy. With
/// `expect_bytes` wrong, or the consumer not waiting, the result changes.
fn handoff(expect_bytes: u32, consumer_waits: bool) -> Module {
    let mut b = FuncBuilder::kernel("handoff", 2);
    let x = b.param("x", Type::global(BF16, 2, false));
    let y = b.param("y", Type::global(BF16, 2, true));
    let st = b.alloc_shared(Type::shared_tile(BF16, 16, 32, Swizzle::B64));
    let full = b.alloc_shared(Type::Semaphore);
    let w = b.warp_idx();
    let z = b.const_i32(0);
    let one = b.const_i32(1);
    let is_producer = b.cmp(CmpPred::Eq, w, z);
    b.if_then(is_producer, |b| b.sem_init(full, 1));
    b.barrier();
    b.if_else(
        is_producer,
        vec![],
        |b| {
            b.sem_expect(full, expect_bytes);
            b.copy_async(st, x, full, &[z, z]);
            b.sem_arrive(full);
            vec![]
        },
        |b| {
            if consumer_waits {
                b.sem_wait(full, z);
            }
            let t = b.load(rt(BF16, 16, 32), st, &[]);
            b.store(y, t, &[z, z]);
            let _ = one;
            vec![]
        },
    );
    module(b.finish())
}

#[test]
fn async_copies_land_when_the_phase_completes() {
    let xv = values(16 * 32, 4);
    let x = HostTensor::new(BF16, &[16, 32], &xv).unwrap();
    for schedule in [
        Schedule::UntilBlocked,
        Schedule::RoundRobin { quantum: 1 },
        Schedule::RoundRobin { quantum: 3 },
    ] {
        let mut args = vec![
            Arg::Tensor(x.clone()),
            Arg::Tensor(HostTensor::zeros(BF16, &[16, 32])),
        ];
        let launch = Launch::grid([1, 1, 1]).schedule(schedule);
        interp::run_with(&handoff(16 * 32 * 2, true), "handoff", launch, &mut args).unwrap();
        assert_eq!(
            args[1].tensor().unwrap().to_vec(),
            x.to_vec(),
            "{schedule:?}"
        );
    }
}

#[test]
fn a_consumer_that_does_not_wait_is_caught_reading_unwritten_shared_memory() {
    // Under round-robin scheduling the consumer reaches its load before the phase completes and
    // the copy lands; reading shared memory that nothing wrote is an error naming the element.
    let x = HostTensor::new(BF16, &[16, 32], &values(16 * 32, 5)).unwrap();
    let mut args = vec![
        Arg::Tensor(x),
        Arg::Tensor(HostTensor::zeros(BF16, &[16, 32])),
    ];
    let launch = Launch::grid([1, 1, 1]).schedule(Schedule::RoundRobin { quantum: 1 });
    let e =
        interp::run_with(&handoff(16 * 32 * 2, false), "handoff", launch, &mut args).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("warp 1: @handoff op")
            && msg.contains("`load`")
            && msg.contains("reads element (0, 0) of shared object #0 before anything wrote it"),
        "{msg}"
    );
}

#[test]
fn expecting_fewer_bytes_than_the_copies_deliver_is_an_error() {
    let x = HostTensor::new(BF16, &[16, 32], &values(16 * 32, 6)).unwrap();
    let mut args = vec![
        Arg::Tensor(x),
        Arg::Tensor(HostTensor::zeros(BF16, &[16, 32])),
    ];
    let e = interp::run(&handoff(512, true), "handoff", [1, 1, 1], &mut args).unwrap_err();
    assert!(
        e.to_string()
            .contains("delivered 1024 bytes but its phase expects 512"),
        "{e}"
    );
}

#[test]
fn expecting_more_bytes_than_arrive_deadlocks_and_reports_the_semaphore() {
    let x = HostTensor::new(BF16, &[16, 32], &values(16 * 32, 7)).unwrap();
    let mut args = vec![
        Arg::Tensor(x),
        Arg::Tensor(HostTensor::zeros(BF16, &[16, 32])),
    ];
    let e = interp::run(&handoff(2048, true), "handoff", [1, 1, 1], &mut args).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InterpError::Deadlock { .. }), "{msg}");
    assert!(msg.contains("warp 0: finished"), "{msg}");
    assert!(
        msg.contains("`sem.wait`") && msg.contains("1/1 arrivals and 1024/2048 bytes"),
        "{msg}"
    );
}

#[test]
fn waiting_on_parity_one_passes_before_any_phase_completes() {
    // The "empty slot" idiom: a producer's first wait on a fresh semaphore must not block.
    let mut b = FuncBuilder::kernel("first_wait", 1);
    let y = b.param("y", Type::global(I32, 1, true));
    let s = b.alloc_shared(Type::Semaphore);
    b.sem_init(s, 1);
    let one = b.const_i32(1);
    let z = b.const_i32(0);
    b.sem_wait(s, one);
    b.sem_arrive(s); // completes phase 0
    b.sem_wait(s, z); // phase 0 (parity 0) has completed
    let seven = b.const_i32(7);
    b.store(y, seven, &[z]);
    let m = module(b.finish());
    let mut args = vec![Arg::Tensor(HostTensor::zeros(I32, &[1]))];
    interp::run(&m, "first_wait", [1, 1, 1], &mut args).unwrap();
    assert_eq!(args[0].tensor().unwrap().get(&[0]), Some(7.0));
}

#[test]
fn gather_skips_negative_indices_and_rejects_indices_past_the_rows() {
    let build = || {
        let mut b = FuncBuilder::kernel("gather", 1);
        let x = b.param("x", Type::global(F32, 2, false));
        let ids = b.param("ids", Type::global(I32, 1, false));
        let y = b.param("y", Type::global(F32, 2, true));
        let z = b.const_i32(0);
        let idx = b.load(Type::vector(I32, 16, VecAxis::Rows), ids, &[z]);
        let t = b.gather_rows(rt(F32, 16, 16), x, idx, z);
        b.scatter_rows(true, y, t, idx, z);
        module(b.finish())
    };
    let xv = values(8 * 16, 8);
    let x = HostTensor::new(F32, &[8, 16], &xv).unwrap();
    let mut ids: Vec<f64> = (0..16)
        .map(|i| if i % 3 == 0 { -1.0 } else { f64::from(i % 8) })
        .collect();
    let mut args = vec![
        Arg::Tensor(x.clone()),
        Arg::Tensor(HostTensor::new(I32, &[16], &ids).unwrap()),
        Arg::Tensor(HostTensor::zeros(F32, &[8, 16])),
    ];
    interp::run(&build(), "gather", [1, 1, 1], &mut args).unwrap();
    // Row r of y accumulates x[r] once per slot that names it.
    let y = args[2].tensor().unwrap();
    for r in 0..8 {
        let count = ids.iter().filter(|&&i| i == r as f64).count() as f64;
        for c in 0..16 {
            let expect = f64::from((xv[r * 16 + c] * count) as f32);
            assert!((y.get(&[r, c]).unwrap() - expect).abs() < 1e-5, "row {r}");
        }
    }
    ids[5] = 8.0;
    let mut args = vec![
        Arg::Tensor(x),
        Arg::Tensor(HostTensor::new(I32, &[16], &ids).unwrap()),
        Arg::Tensor(HostTensor::zeros(F32, &[8, 16])),
    ];
    let e = interp::run(&build(), "gather", [1, 1, 1], &mut args).unwrap_err();
    assert!(
        e.to_string()
            .contains("row index 8 is outside the view's 8 rows"),
        "{e}"
    );
}

#[test]
fn mma_accumulates_in_f32_over_bf16_inputs_for_every_transposition() {
    // D = op(A)·op(B) + C against an f64 reference; the only difference allowed is f32
    // accumulation rounding.
    let (m, n, k) = (32usize, 16usize, 48usize);
    let av = values(m * k, 9);
    let bv = values(k * n, 10);
    let cv = values(m * n, 11);
    for v in MmaVariant::ALL {
        let (ar, ac) = if v.a_transposed() { (k, m) } else { (m, k) };
        let (br, bc) = if v.b_transposed() { (n, k) } else { (k, n) };
        let a_layout = if v.a_transposed() {
            Layout::Col
        } else {
            Layout::Row
        };
        let b_layout = if v.b_transposed() {
            Layout::Row
        } else {
            Layout::Col
        };
        let mut b = FuncBuilder::kernel("mma", 1);
        let ga = b.param("a", Type::global(BF16, 2, false));
        let gb = b.param("b", Type::global(BF16, 2, false));
        let gc = b.param("c", Type::global(F32, 2, true));
        let z = b.const_i32(0);
        let a = b.load(
            Type::tile(BF16, ar as u32, ac as u32, a_layout),
            ga,
            &[z, z],
        );
        let bt = b.load(
            Type::tile(BF16, br as u32, bc as u32, b_layout),
            gb,
            &[z, z],
        );
        let c = b.load(rt(F32, m as u32, n as u32), gc, &[z, z]);
        let d = b.mma(v, a, bt, c);
        b.store(gc, d, &[z, z]);
        let module = module(b.finish());
        let a_t = HostTensor::new(BF16, &[ar, ac], &av).unwrap();
        let b_t = HostTensor::new(BF16, &[br, bc], &bv).unwrap();
        let c_t = HostTensor::new(F32, &[m, n], &cv).unwrap();
        let (a_h, b_h, c_h) = (a_t.to_vec(), b_t.to_vec(), c_t.to_vec());
        let mut args = vec![Arg::Tensor(a_t), Arg::Tensor(b_t), Arg::Tensor(c_t)];
        interp::run(&module, "mma", [1, 1, 1], &mut args).unwrap();
        let out = args[2].tensor().unwrap();
        for i in 0..m {
            for j in 0..n {
                let mut s = c_h[i * n + j];
                let mut mag = s.abs();
                for kk in 0..k {
                    let a = if v.a_transposed() {
                        a_h[kk * ac + i]
                    } else {
                        a_h[i * ac + kk]
                    };
                    let bb = if v.b_transposed() {
                        b_h[j * bc + kk]
                    } else {
                        b_h[kk * bc + j]
                    };
                    s += a * bb;
                    mag += (a * bb).abs();
                }
                let got = out.get(&[i, j]).unwrap();
                assert!(
                    (got - s).abs() <= mag * 1e-6,
                    "{v:?} ({i},{j}): {got} vs {s}"
                );
            }
        }
    }
}

#[test]
fn warpgroup_mma_gives_each_warp_its_quarter_of_the_rows() {
    // Four warps share A (64×32) and B (32×16) in shared memory; warp w computes rows
    // [16w, 16w+16) and stores them. The result must equal one warp-scope 64×16 mma.
    let mut b = FuncBuilder::kernel("wg", 4);
    let ga = b.param("a", Type::global(BF16, 2, false));
    let gb = b.param("b", Type::global(BF16, 2, false));
    let gd = b.param("d", Type::global(F32, 2, true));
    let gr = b.param("r", Type::global(F32, 2, true));
    let sa = b.alloc_shared(Type::shared_tile(BF16, 64, 32, Swizzle::B64));
    let sb = b.alloc_shared(Type::shared_tile(BF16, 32, 16, Swizzle::B32));
    let z = b.const_i32(0);
    b.copy(Scope::Block, sa, ga, &[z, z]);
    b.copy(Scope::Block, sb, gb, &[z, z]);
    b.barrier();
    let acc = b.zeros(rt(F32, 16, 16));
    let d = b.mma_warpgroup(MmaVariant::AB, sa, sb, acc);
    let w = b.warp_idx();
    b.store(gd, d, &[w, z]);
    // Reference path: warp 0 alone does the whole product at warp scope.
    let is0 = b.cmp(CmpPred::Eq, w, z);
    b.if_then(is0, |b| {
        let a = b.load(rt(BF16, 64, 32), sa, &[]);
        let bt = b.load(rt_col(BF16, 32, 16), sb, &[]);
        let acc = b.zeros(rt(F32, 64, 16));
        let r = b.mma(MmaVariant::AB, a, bt, acc);
        b.store(gr, r, &[z, z]);
    });
    let m = module(b.finish());
    let mut args = vec![
        Arg::Tensor(HostTensor::new(BF16, &[64, 32], &values(64 * 32, 12)).unwrap()),
        Arg::Tensor(HostTensor::new(BF16, &[32, 16], &values(32 * 16, 13)).unwrap()),
        Arg::Tensor(HostTensor::zeros(F32, &[64, 16])),
        Arg::Tensor(HostTensor::zeros(F32, &[64, 16])),
    ];
    interp::run(&m, "wg", [1, 1, 1], &mut args).unwrap();
    let d = args[2].tensor().unwrap().to_vec();
    assert_eq!(d, args[3].tensor().unwrap().to_vec());
    assert!(d.iter().all(|x| *x != 0.0));
}

#[test]
fn loops_carry_values_and_reject_a_zero_step() {
    // sum_{i in 3..17 step 2} i = 3 + 5 + … + 15 = 63, with a while loop counting down beside it.
    let build = |step: i32| {
        let mut b = FuncBuilder::kernel("loops", 1);
        let y = b.param("y", Type::global(I32, 1, true));
        let (lo, hi, st) = (b.const_i32(3), b.const_i32(17), b.const_i32(step));
        let z = b.const_i32(0);
        let r = b.for_range(lo, hi, st, &[z], |b, i, c| vec![b.add(c[0], i)]);
        let ten = b.const_i32(10);
        let w = b.while_loop(
            &[ten, z],
            |b, a| (b.cmp(CmpPred::Gt, a[0], z), a.to_vec()),
            |b, a| {
                let one = b.const_i32(1);
                vec![b.sub(a[0], one), b.add(a[1], a[0])]
            },
        );
        let one = b.const_i32(1);
        b.store(y, r[0], &[z]);
        b.store(y, w[1], &[one]);
        module(b.finish())
    };
    let mut args = vec![Arg::Tensor(HostTensor::zeros(I32, &[2]))];
    interp::run(&build(2), "loops", [1, 1, 1], &mut args).unwrap();
    assert_eq!(args[0].tensor().unwrap().to_vec(), vec![63.0, 55.0]);
    let e = interp::run(&build(0), "loops", [1, 1, 1], &mut args).unwrap_err();
    assert!(
        e.to_string().contains("`for` step must be positive, got 0"),
        "{e}"
    );
}

#[test]
fn helper_calls_bind_arguments_and_results() {
    let mut h = FuncBuilder::helper("axpy", vec![rt(F32, 16, 16)]);
    let a = h.param("a", Type::scalar(F32));
    let x = h.param("x", rt(F32, 16, 16));
    let yv = h.param("y", rt(F32, 16, 16));
    let ax = h.mul(x, a);
    let r = h.add(ax, yv);
    h.ret(&[r]);
    let mut b = FuncBuilder::kernel("k", 1);
    let gx = b.param("gx", Type::global(F32, 2, true));
    let z = b.const_i32(0);
    let t = b.load(rt(F32, 16, 16), gx, &[z, z]);
    let two = b.const_f32(2.0);
    let r = b.call("axpy", &[two, t, t], vec![rt(F32, 16, 16)]);
    b.store(gx, r[0], &[z, z]);
    let mut m = Module::new();
    m.push(h.finish());
    m.push(b.finish());
    let xv = values(256, 14);
    let mut args = vec![Arg::Tensor(HostTensor::new(F32, &[16, 16], &xv).unwrap())];
    interp::run(&m, "k", [1, 1, 1], &mut args).unwrap();
    let out = args[0].tensor().unwrap().to_vec();
    for (o, x) in out.iter().zip(&xv) {
        let x = f64::from(*x as f32);
        assert_eq!(*o, f64::from(2.0 * x as f32 + x as f32));
    }
}

#[test]
fn conversion_to_fp8_saturates_and_rounds_to_nearest_even() {
    let mut b = FuncBuilder::kernel("cvt", 1);
    let x = b.param("x", Type::global(F32, 1, false));
    let y = b.param("y", Type::global(F8E4M3, 1, true));
    let z = b.const_i32(0);
    let v = b.load(Type::vector(F32, 16, VecAxis::Rows), x, &[z]);
    let c = b.convert_dtype(v, F8E4M3);
    b.store(y, c, &[z]);
    let m = module(b.finish());
    let xs = [
        1000.0, -1000.0, 1.0625, 1.1875, 0.3, -0.0, 448.0, 464.0, 2e-3, -2e-3, 17.0, 15.5, 3.3,
        -7.9, 0.015625, 240.0,
    ];
    let mut args = vec![
        Arg::Tensor(HostTensor::new(F32, &[16], &xs).unwrap()),
        Arg::Tensor(HostTensor::zeros(F8E4M3, &[16])),
    ];
    interp::run(&m, "cvt", [1, 1, 1], &mut args).unwrap();
    let out = args[1].tensor().unwrap().to_vec();
    assert_eq!(
        out,
        vec![
            448.0,
            -448.0,
            1.0,
            1.25,
            0.3125,
            -0.0,
            448.0,
            448.0,
            0.001953125,
            -0.001953125,
            16.0,
            16.0,
            3.25,
            -8.0,
            0.015625,
            240.0
        ]
    );
}

#[test]
fn arguments_are_checked_against_the_kernel_signature() {
    let mut b = FuncBuilder::kernel("k", 1);
    b.param("x", Type::global(BF16, 2, false));
    b.param("n", Type::scalar(I32));
    let m = module(b.finish());
    let e = interp::run(&m, "k", [1, 1, 1], &mut [Arg::i32(3)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad kernel argument: kernel @k takes 2 arguments, got 1"
    );
    let mut args = vec![Arg::Tensor(HostTensor::zeros(F32, &[4, 4])), Arg::i32(3)];
    let e = interp::run(&m, "k", [1, 1, 1], &mut args).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad kernel argument: argument 0 (`x`) must be a bf16 tensor of rank 2, got a f32 tensor of rank 2"
    );
    let mut args = vec![Arg::Tensor(HostTensor::zeros(BF16, &[4, 4])), Arg::f32(3.0)];
    let e = interp::run(&m, "k", [1, 1, 1], &mut args).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bad kernel argument: argument 1 (`n`) must be a i32 scalar, got a f32 scalar"
    );
    let e = interp::run(&m, "nope", [1, 1, 1], &mut []).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no kernel named `nope` in the module (kernels: k)"
    );
}

#[test]
fn warps_passing_different_coordinates_to_a_block_copy_are_reported() {
    // Each warp names its own tile row in a `copy @block`: the copy would mix two tiles.
    let mut b = FuncBuilder::kernel("mixed", 2);
    let x = b.param("x", Type::global(F32, 2, false));
    let st = b.alloc_shared(Type::shared_tile(F32, 16, 16, Swizzle::None));
    let w = b.warp_idx();
    let z = b.const_i32(0);
    b.copy(Scope::Block, st, x, &[w, z]);
    let m = module(b.finish());
    let mut args = vec![Arg::Tensor(
        HostTensor::new(F32, &[32, 16], &values(512, 15)).unwrap(),
    )];
    let e = interp::run(&m, "mixed", [1, 1, 1], &mut args).unwrap_err();
    assert!(
        e.to_string().contains(
            "warp 1: @mixed op 3 `copy`"
        ) && e.to_string().contains(
            "warps of one block disagree on a collective op: this warp passes (shared #0, argument 0, 1, 0) but warp 0 passed (shared #0, argument 0, 0, 0)"
        ),
        "{e}"
    );
}
